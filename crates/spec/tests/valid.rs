//! Valid specs load without errors: the examples, Paperspace's documented form, display names,
//! directories of .yaml and .yml files, and files with empty documents.

use std::path::PathBuf;

use lull_spec::{
    Catalog, DeploymentSpec, Integration, MetricKind, Summary, load_paths, load_str,
    secret::ConfigValue, validate::secret_references,
};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn no_errors(catalog: &Catalog) {
    let errors: Vec<String> = catalog
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(ToString::to_string)
        .collect();
    assert!(
        errors.is_empty(),
        "unexpected errors:\n{}",
        errors.join("\n")
    );
}

#[test]
fn every_example_loads_without_errors() {
    let dir = examples();
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the examples directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    assert!(!files.is_empty(), "no example in {}", dir.display());
    for file in &files {
        let catalog = load_paths(&[file]);
        no_errors(&catalog);
        assert_eq!(
            catalog.deployments.len(),
            1,
            "{} should hold one deployment",
            file.display()
        );
    }
    let catalog = load_paths(&[&dir]);
    no_errors(&catalog);
    assert_eq!(catalog.deployments.len(), files.len());
}

/// Paperspace's documented spec, comments and all (the git-lfs `url`, left blank in the
/// documentation, is filled in).
const PAPERSPACE: &str = r#"apiVersion: v1 # required, defaults to v1
name: my cool deployment # the name of your deployment. This must be unique within your project.
image: paperspace/app-fixture:0.1.3
enabled: true # Toggle to enable or disable the app
containerRegistry: my-registry # (optional) name of the container registry to use for the app.

command: # command to run on startup
  - /bin/sh
  - '-c'
  - |
    while true
      sleep .01
    done

resources:
  ports: # ports to expose
    - 8000
  replicas: 2 # amount of static replicas for your app. We recommend 2 to ensure high availability.
  machineType: A100-80G
  autoscaling:
    enabled: true # toggle for enabling/disabling autoscaling
    maxReplicas: 5 # max replicas for autoscaling
    metrics:
      - metric: cpu
        summary: average
        value: 50 # 50% cpu utilization across all replicas
      - metric: memory
        summary: average
        value: 22 # 22% memory utilization across all replicas
      - metric: requestDuration
        summary: average
        value: 2 # 2 second request duration for the endpoint

integrations: # List of integrations. Max is 5.
  - type: git-lfs # git-lfs integration type
    name: falcon # unique name of the integration
    path: /models/ # model files will be located at /models/falcon
    url: https://huggingface.co/tiiuae/falcon-7b # hugging face model url for cloning

  - type: s3 # s3 integration type
    name: my-s3-integration
    path: /some/s3/mount/path
    url: s3://my-integration-bucket/
    region: us-east-1
    accessKeyId: AKIAVWO7J5OJSCWRJ3HJ
    secretAccessKey: secret:secretAccessKey # stored as a project or team secret. Naming is arbitrary.

healthChecks: # health checks allow you to define a set of probes to check the health of your app
  readiness:
    path: /
    port: 8000 # healthcheck port.
    initialDelaySeconds: 5
    periodSeconds: 5
    timeoutSeconds: 5
    failureThreshold: 5
    headers: # (optional) list of headers to pass to the readiness probe
      - name: Authorization
        value: some-token
basicAuthKey: secret:my_paperspace_secret # setting up a protected endpoint

env: # container environment variables
  - name: some-env
    value: some-value
  - name: secret-env
    value: secret:mySecretEnv # stored as a project or team secret. Naming is arbitrary.
"#;

#[test]
fn paperspace_documented_form_loads() {
    let catalog = load_str(PAPERSPACE, "paperspace.yaml");
    no_errors(&catalog);
    assert_eq!(catalog.deployments.len(), 1);
    let d = &catalog.deployments[0];
    assert_eq!(d.slug, "my-cool-deployment");
    assert_eq!((d.at.line, d.at.column), (2, 7));
    let spec = &d.spec;
    assert_eq!(spec.name, "my cool deployment");
    assert_eq!(spec.image.as_deref(), Some("paperspace/app-fixture:0.1.3"));
    assert_eq!(spec.container_registry.as_deref(), Some("my-registry"));
    assert_eq!(
        spec.command,
        ["/bin/sh", "-c", "while true\n  sleep .01\ndone\n"]
    );
    assert_eq!(spec.resources.replicas, 2);
    assert_eq!(spec.resources.machine(), Some("A100-80G"));
    assert_eq!(spec.resources.ports, [8000]);
    let autoscaling = spec
        .resources
        .autoscaling
        .as_ref()
        .expect("autoscaling is set");
    assert!(autoscaling.enabled);
    assert_eq!(autoscaling.max_replicas, 5);
    let targets: Vec<(MetricKind, Summary, f64)> = autoscaling
        .metrics
        .iter()
        .map(|m| (m.metric, m.summary, m.value))
        .collect();
    assert_eq!(
        targets,
        [
            (MetricKind::Cpu, Summary::Average, 50.0),
            (MetricKind::Memory, Summary::Average, 22.0),
            (MetricKind::RequestDuration, Summary::Average, 2.0),
        ]
    );
    let kinds: Vec<&str> = spec.integrations.iter().map(Integration::kind).collect();
    assert_eq!(kinds, ["git-lfs", "s3"]);
    let readiness = spec
        .health_checks
        .readiness
        .as_ref()
        .expect("readiness probe");
    assert_eq!(readiness.path.as_deref(), Some("/"));
    assert_eq!(
        (
            readiness.port,
            readiness.initial_delay_seconds,
            readiness.period_seconds,
            readiness.timeout_seconds,
            readiness.failure_threshold
        ),
        (Some(8000), 5, 5, 5, 5)
    );
    assert_eq!(
        readiness.headers[0].value,
        ConfigValue::Plain("some-token".to_owned())
    );
    let references: Vec<(String, &str)> = secret_references(spec)
        .into_iter()
        .map(|(path, name)| (path, name.as_str()))
        .collect();
    assert_eq!(
        references,
        [
            ("env[1].value".to_owned(), "mySecretEnv"),
            (
                "integrations[1].secretAccessKey".to_owned(),
                "secretAccessKey"
            ),
            ("basicAuthKey".to_owned(), "my_paperspace_secret"),
        ]
    );
}

#[test]
fn paperspace_example_matches_the_documented_form() {
    let example = load_paths(&[examples().join("paperspace.yaml")]);
    no_errors(&example);
    let documented = load_str(PAPERSPACE, "paperspace.yaml");
    let (a, b) = (
        &example.deployments[0].spec,
        &documented.deployments[0].spec,
    );
    assert_eq!(a.name, b.name);
    assert_eq!(a.resources.autoscaling, b.resources.autoscaling);
    assert_eq!(a.integrations, b.integrations);
    assert_eq!(a.basic_auth_key, b.basic_auth_key);
    assert_eq!(a.env, b.env);
}

#[test]
fn display_names_get_a_slug() {
    let catalog = load_str("name: my cool deployment\ncommand: [x]\n", "display.yaml");
    no_errors(&catalog);
    let d = &catalog.deployments[0];
    assert_eq!(d.spec.name, "my cool deployment");
    assert_eq!(d.slug, "my-cool-deployment");
}

#[test]
fn a_directory_loads_yaml_and_yml_files_in_name_order() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (name, text) in [
        ("b.yml", "name: bee\ncommand: [x]\n"),
        ("a.yaml", "name: ant\ncommand: [x]\n"),
        ("c.json", "{\"name\": \"cat\"}"),
        ("README.md", "# not a spec"),
    ] {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    std::fs::create_dir(dir.path().join("nested.yaml")).expect("a directory named like a spec");
    let catalog = load_paths(&[dir.path()]);
    no_errors(&catalog);
    let loaded: Vec<(&str, String)> = catalog
        .deployments
        .iter()
        .map(|d| (d.spec.name.as_str(), d.file.clone()))
        .collect();
    assert_eq!(
        loaded,
        [
            ("ant", dir.path().join("a.yaml").display().to_string()),
            ("bee", dir.path().join("b.yml").display().to_string()),
        ]
    );
}

#[test]
fn empty_documents_are_skipped() {
    let yaml = "# a header comment\n---\n---\nname: one\ncommand: [x]\n---\n# only a comment\n---\n...\n---\nname: two\ncommand: [y]\n---\n";
    let catalog = load_str(yaml, "docs.yaml");
    no_errors(&catalog);
    assert!(catalog.diagnostics.is_empty(), "{:?}", catalog.diagnostics);
    let names: Vec<&str> = catalog
        .deployments
        .iter()
        .map(|d| d.spec.name.as_str())
        .collect();
    assert_eq!(names, ["one", "two"]);
    assert_eq!(
        catalog.deployments[1].at.line, 11,
        "positions count every line"
    );
    for empty in ["", "\n", "# nothing here\n", "---\n", "---\n...\n"] {
        let catalog = load_str(empty, "empty.yaml");
        assert!(
            catalog.diagnostics.is_empty() && catalog.deployments.is_empty(),
            "{empty:?}: {:?}",
            catalog.diagnostics
        );
    }
}

#[test]
fn a_minimal_spec_gets_the_documented_defaults() {
    let catalog = load_str("name: hello\ncommand: [x]\n", "minimal.yaml");
    no_errors(&catalog);
    let mut expected = DeploymentSpec::named("hello");
    expected.command = vec!["x".to_owned()];
    assert_eq!(catalog.deployments[0].spec, expected);
    let spec = &catalog.deployments[0].spec;
    assert!(spec.enabled);
    assert_eq!(spec.resources.replicas, 1);
    assert_eq!(spec.resources.ports, [8000]);
    assert_eq!(spec.termination_grace_period.to_string(), "30s");
    assert_eq!(spec.activator.queue_capacity, 1000);
    assert_eq!(spec.activator.queue_timeout.to_string(), "1m");
    assert_eq!(spec.routing.path_prefix, None);
    assert!(spec.routing.rewrite_path);
}

#[test]
fn anchors_and_merge_keys_within_limits_are_fine() {
    let yaml = r#"name: a
command: &cmd [serve, --port, "8000"]
kubernetes:
  sidecars:
    - name: helper
      image: helper:1
      command: *cmd
healthChecks:
  readiness: &probe { path: /health, periodSeconds: 2 }
  liveness:
    <<: *probe
    periodSeconds: 10
"#;
    let catalog = load_str(yaml, "anchors.yaml");
    no_errors(&catalog);
    let spec = &catalog.deployments[0].spec;
    assert_eq!(spec.kubernetes.sidecars[0].command, spec.command);
    let liveness = spec.health_checks.liveness.as_ref().expect("liveness");
    assert_eq!(liveness.path.as_deref(), Some("/health"));
    assert_eq!(liveness.period_seconds, 10);
}

#[test]
fn quoted_numbers_and_secret_values_stay_strings() {
    let yaml = r#"name: "1234"
command: ["8000", "true", "1.5"]
env:
  - { name: PORT_HINT, value: "8080" }
  - { name: TOKEN, value: "secret:hf-token.v2" }
  - { name: LITERAL, value: "not secret: at all" }
"#;
    let catalog = load_str(yaml, "quoted.yaml");
    no_errors(&catalog);
    let spec = &catalog.deployments[0].spec;
    assert_eq!(spec.name, "1234");
    assert_eq!(catalog.deployments[0].slug, "1234");
    assert_eq!(spec.command, ["8000", "true", "1.5"]);
    assert_eq!(spec.env[0].value, ConfigValue::Plain("8080".to_owned()));
    assert_eq!(
        spec.env[1].value.secret().map(|s| s.as_str()),
        Some("hf-token.v2")
    );
    assert_eq!(
        spec.env[2].value,
        ConfigValue::Plain("not secret: at all".to_owned())
    );
}

#[test]
fn mapping_keys_keep_their_spelling() {
    // As values these would be numbers, booleans or one and the same number; as keys they are
    // the text written, so no label is renamed or lost.
    let yaml = r#"name: a
image: x
kubernetes:
  labels: { 1.10: a, 0x1F: b, 1e3: c, 1_000: d, true: e, 007: f, "~": g, "null": h }
"#;
    let catalog = load_str(yaml, "keys.yaml");
    no_errors(&catalog);
    let keys: Vec<&str> = catalog.deployments[0]
        .spec
        .kubernetes
        .labels
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["007", "0x1F", "1.10", "1_000", "1e3", "null", "true", "~"]
    );
}
