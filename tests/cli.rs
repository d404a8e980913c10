//! End-to-end tests of the `lull` command line: the built binary, run as a user would, with a
//! temporary state directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use tempfile::TempDir;

/// A scratch state directory and spec directory for one test.
struct Sandbox {
    dir: TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Writes a spec file in the sandbox and returns its path.
    fn spec(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("the spec is written");
        path
    }

    /// `lull` with this sandbox's state directory, run from the repository root so that
    /// `examples/` resolves.
    fn lull(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lull"));
        command
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("LULL_STATE_DIR", self.state());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.lull().args(args).output().expect("lull runs")
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .lull()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("lull starts");
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(stdin.as_bytes())
            .expect("stdin is written");
        child.wait_with_output().expect("lull finishes")
    }
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("lull exits, not killed")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// The Deployment and Service pairs of `lull render` output, one YAML document at a time.
fn parse_objects(yaml: &str) -> Vec<(Deployment, Service)> {
    let documents: Vec<&str> = yaml
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .collect();
    assert_eq!(
        documents.len() % 2,
        0,
        "a Deployment and a Service per spec:\n{yaml}"
    );
    documents
        .chunks(2)
        .map(|pair| {
            let deployment = serde_saphyr::from_str(pair[0]).expect("a Deployment");
            let service = serde_saphyr::from_str(pair[1]).expect("a Service");
            (deployment, service)
        })
        .collect()
}

#[test]
fn the_examples_are_valid() {
    let sandbox = Sandbox::new();
    let output = sandbox.run(&["validate", "examples/"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("3 deployments valid"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_invalid_spec_fails_with_its_location() {
    let sandbox = Sandbox::new();
    let spec = sandbox.spec(
        "bad.yaml",
        "name: bad\ncommand: [serve]\nresources:\n  replicass: 2\n",
    );
    let output = sandbox.run(&["validate", path_str(&spec)]);
    assert_eq!(code(&output), 1);
    let err = stderr(&output);
    assert!(
        err.contains(&format!(
            "{}:4:3: error: resources.replicass",
            spec.display()
        )),
        "{err}"
    );
    assert!(err.contains("did you mean `replicas`?"), "{err}");
    assert!(err.contains("1 error, 0 warnings"), "{err}");
}

#[test]
fn a_missing_path_is_a_finding_not_a_usage_error() {
    let sandbox = Sandbox::new();
    let output = sandbox.run(&["validate", "no/such/spec.yaml"]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("no/such/spec.yaml: error: cannot read"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn json_output_is_one_document() {
    let sandbox = Sandbox::new();
    let output = sandbox.run(&["validate", "examples/", "--output", "json"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    assert_eq!(report["valid"], true);
    let names: Vec<&str> = report["deployments"]
        .as_array()
        .expect("deployments")
        .iter()
        .filter_map(|d| d["slug"].as_str())
        .collect();
    assert_eq!(names, ["hello", "my-cool-deployment", "sentiment"]);
    assert!(report["diagnostics"].is_array());

    let bad = sandbox.spec("bad.yaml", "name: bad\n");
    let output = sandbox.run(&["validate", path_str(&bad), "--output", "json"]);
    assert_eq!(code(&output), 1);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    assert_eq!(report["valid"], false);
    assert_eq!(report["deployments"], serde_json::json!([]));
    let first = &report["diagnostics"][0];
    assert_eq!(first["severity"], "error");
    assert_eq!(first["file"], path_str(&bad));
    assert!(first["line"].is_u64(), "{first}");
}

#[test]
fn the_kube_target_adds_its_own_findings() {
    let sandbox = Sandbox::new();
    let output = sandbox.run(&["validate", "examples/minimal.yaml", "--target", "kube"]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("image: is required on Kubernetes"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn render_writes_a_deployment_and_a_service() {
    let sandbox = Sandbox::new();
    let output = sandbox.run(&["render", "examples/scale-to-zero.yaml", "--target", "kube"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let objects = parse_objects(&stdout(&output));
    assert_eq!(objects.len(), 1);
    let (deployment, service) = &objects[0];
    assert_eq!(deployment.metadata.name.as_deref(), Some("sentiment"));
    assert_eq!(deployment.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(
        deployment.spec.as_ref().and_then(|s| s.replicas),
        Some(0),
        "minReplicas 0 starts at zero"
    );
    assert_eq!(service.metadata.name.as_deref(), Some("sentiment"));

    let output = sandbox.run(&["render", "examples/scale-to-zero.yaml", "--namespace", "ml"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let objects = parse_objects(&stdout(&output));
    assert_eq!(objects[0].1.metadata.namespace.as_deref(), Some("ml"));
}

#[test]
fn render_refuses_invalid_specs() {
    let sandbox = Sandbox::new();
    let output = sandbox.run(&["render", "examples/minimal.yaml", "--target", "kube"]);
    assert_eq!(code(&output), 1);
    assert!(stdout(&output).is_empty(), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("nothing rendered"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn render_never_writes_secret_values() {
    let sandbox = Sandbox::new();
    let from_env = "env-value-that-must-not-leak";
    let from_store = "store-value-that-must-not-leak";
    let stored = sandbox.run_with_stdin(&["secret", "set", "hfToken"], from_store);
    assert_eq!(code(&stored), 0, "{}", stderr(&stored));
    let spec = sandbox.spec(
        "secret.yaml",
        r#"
name: llm
image: vllm:1
env:
  - { name: HF_TOKEN, value: "secret:hfToken" }
healthChecks:
  readiness: { path: /health, headers: [{ name: Authorization, value: "secret:hfToken" }] }
"#,
    );
    let output = sandbox
        .lull()
        .args(["render", path_str(&spec), "--secret-name", "ml-secrets"])
        .env("LULL_SECRET_HFTOKEN", from_env)
        .output()
        .expect("lull runs");
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let (out, err) = (stdout(&output), stderr(&output));
    for value in [from_env, from_store] {
        assert!(!out.contains(value) && !err.contains(value), "{out}\n{err}");
    }
    let objects = parse_objects(&out);
    let container = &objects[0]
        .0
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod spec")
        .containers[0];
    let reference = container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "HF_TOKEN")
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("HF_TOKEN is a secretKeyRef");
    assert_eq!(
        (reference.name.as_str(), reference.key.as_str()),
        ("ml-secrets", "hfToken")
    );
    assert!(
        err.contains("Kubernetes probes cannot read Secrets"),
        "the left-out header is reported: {err}"
    );
}

#[test]
fn secrets_round_trip_by_name_only() {
    let sandbox = Sandbox::new();
    let value = "s3cr3t-value";

    let output = sandbox.run_with_stdin(&["secret", "set", "hfToken"], &format!("{value}\n"));
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let output = sandbox.run(&["secret", "set", "apiKey", "other-value"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));

    let list = sandbox.run(&["secret", "list"]);
    assert_eq!(code(&list), 0, "{}", stderr(&list));
    assert_eq!(stdout(&list), "apiKey\nhfToken\n");
    assert!(!stderr(&list).contains(value));

    let file = sandbox.state().join("secrets.json");
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("the store exists")).expect("JSON");
    assert_eq!(
        stored["secrets"]["hfToken"], value,
        "one trailing newline from stdin is dropped"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)
            .expect("the store exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let output = sandbox.run(&["secret", "rm", "hfToken"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let output = sandbox.run(&["secret", "rm", "hfToken"]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("secret `hfToken` is not stored"),
        "{}",
        stderr(&output)
    );
    assert_eq!(stdout(&sandbox.run(&["secret", "list"])), "apiKey\n");
}

#[test]
fn an_empty_secret_is_refused() {
    let sandbox = Sandbox::new();
    let output = sandbox.run_with_stdin(&["secret", "set", "hfToken"], "\n");
    assert_eq!(code(&output), 1);
    assert!(stderr(&output).contains("is empty"), "{}", stderr(&output));
    assert!(!sandbox.state().join("secrets.json").exists());
}

#[test]
fn usage_errors_exit_2() {
    let sandbox = Sandbox::new();
    for args in [
        &["validate"][..],
        &["frobnicate"],
        &["validate", "examples/", "--output", "xml"],
        &["render", "examples/", "--target", "embedded"],
        &["render", "examples/", "--namespace", "Not_A_Namespace"],
        &["secret", "set", "bad name", "value"],
    ] {
        let output = sandbox.run(args);
        assert_eq!(code(&output), 2, "{args:?}: {}", stderr(&output));
    }
}

#[test]
fn every_command_shows_examples() {
    let sandbox = Sandbox::new();
    for args in [
        &["--help"][..],
        &["validate", "--help"],
        &["render", "--help"],
        &["secret", "--help"],
        &["secret", "set", "--help"],
        &["secret", "list", "--help"],
        &["secret", "rm", "--help"],
        &["completions", "--help"],
    ] {
        let output = sandbox.run(args);
        assert_eq!(code(&output), 0, "{args:?}");
        assert!(stdout(&output).contains("lull "), "{args:?}");
        assert!(stdout(&output).contains("Example"), "{args:?}");
    }
}

#[test]
fn completions_are_written_for_a_shell() {
    let sandbox = Sandbox::new();
    let output = sandbox.run(&["completions", "bash"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(stdout(&output).contains("_lull"), "{}", stdout(&output));
}
