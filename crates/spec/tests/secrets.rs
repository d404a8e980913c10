//! Secret references: resolved values never show in Debug output, and missing secrets are
//! reported together, each with every field that needs it.

use std::collections::BTreeMap;

use lull_spec::secret::{
    self, ChainedStore, ConfigValue, MissingSecret, Secret, SecretName, SecretStore,
};
use lull_spec::validate::secret_references;
use lull_spec::{DeploymentSpec, load_str};

/// A store over a map, as a test stand-in for the file store or a Kubernetes Secret.
struct MapStore(BTreeMap<String, String>);

impl MapStore {
    fn new(entries: &[(&str, &str)]) -> Self {
        Self(
            entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }
}

impl SecretStore for MapStore {
    fn get(&self, name: &SecretName) -> secret::Result<Option<Secret>> {
        Ok(self.0.get(name.as_str()).map(|v| Secret::new(v.clone())))
    }
}

/// A spec with a secret reference in every kind of field that takes one; `hfToken` is used twice.
const SPEC: &str = r#"name: secretive
command: [serve]
env:
  - { name: MODEL, value: distilbert }
  - { name: HF_TOKEN, value: "secret:hfToken" }
  - { name: DB_PASSWORD, value: "secret:db.password" }
healthChecks:
  readiness:
    path: /health
    headers:
      - { name: Authorization, value: "secret:probeToken" }
integrations:
  - type: s3
    name: weights
    path: /weights
    url: s3://bucket/weights
    accessKeyId: "secret:aws-key-id"
    secretAccessKey: "secret:aws-secret"
basicAuthKey: "secret:apiKey"
kubernetes:
  sidecars:
    - name: fetcher
      image: fetcher:1
      env:
        - { name: TOKEN, value: "secret:hfToken" }
"#;

/// Values that must never be printed: distinctive, so a leak cannot match by chance.
const VALUES: [(&str, &str); 7] = [
    ("hfToken", "hf_SuperSecretTokenValue123"),
    ("db.password", "correct-horse-battery-staple"),
    ("probeToken", "Bearer probe-9f8e7d6c"),
    ("aws-key-id", "AKIAEXAMPLEKEYID0000"),
    ("aws-secret", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("apiKey", "api-key-0123456789abcdef"),
    ("unused", "never-referenced-value"),
];

fn spec() -> DeploymentSpec {
    let catalog = load_str(SPEC, "secretive.yaml");
    assert!(!catalog.has_errors(), "{:?}", catalog.diagnostics);
    catalog.deployments[0].spec.clone()
}

fn assert_no_value_in(text: &str, what: &str) {
    for (name, value) in VALUES {
        assert!(
            !text.contains(value),
            "the value of secret `{name}` shows in {what}: {text}"
        );
    }
}

#[test]
fn references_are_found_with_their_field_paths() {
    let spec = spec();
    let references: Vec<(String, &str)> = secret_references(&spec)
        .into_iter()
        .map(|(path, name)| (path, name.as_str()))
        .collect();
    let expected = [
        ("env[1].value", "hfToken"),
        ("env[2].value", "db.password"),
        ("healthChecks.readiness.headers[0].value", "probeToken"),
        ("integrations[0].accessKeyId", "aws-key-id"),
        ("integrations[0].secretAccessKey", "aws-secret"),
        ("basicAuthKey", "apiKey"),
        ("kubernetes.sidecars[0].env[0].value", "hfToken"),
    ];
    let expected: Vec<(String, &str)> = expected
        .into_iter()
        .map(|(path, name)| (path.to_owned(), name))
        .collect();
    assert_eq!(references, expected);
}

#[test]
fn resolved_values_never_show_in_debug_output() {
    let spec = spec();
    let store = MapStore::new(&VALUES);
    let resolved = secret::resolve(secret_references(&spec), &store).expect("every secret is set");
    assert_eq!(resolved.len(), 6, "one entry per distinct secret");

    // The values are there for the one place that hands them on...
    let token = ConfigValue::parse("secret:hfToken").expect("a reference");
    assert_eq!(
        resolved.value_of(&token),
        Some("hf_SuperSecretTokenValue123")
    );
    assert_eq!(
        resolved.value_of(&spec.env[0].value),
        Some("distilbert"),
        "plain values resolve to themselves"
    );
    // ...and nowhere else.
    assert_no_value_in(&format!("{resolved:?}"), "Debug of the resolved secrets");
    assert_no_value_in(
        &format!("{resolved:#?}"),
        "pretty Debug of the resolved secrets",
    );
    assert_no_value_in(&format!("{spec:?}"), "Debug of the spec");
    assert_no_value_in(&format!("{spec:#?}"), "pretty Debug of the spec");
    let secret = resolved
        .get(&SecretName::new("apiKey").expect("a valid name"))
        .expect("resolved");
    assert_eq!(format!("{secret:?} {secret}"), "<redacted> <redacted>");
    let json = serde_json::to_string(secret).expect("serialises");
    assert_eq!(json, "\"<redacted>\"");
    // The spec shows the references, which is what a reader of the spec needs.
    assert!(format!("{spec:?}").contains("secret:hfToken"));
}

#[test]
fn missing_secrets_name_the_secret_and_every_field_that_needs_it() {
    let spec = spec();
    // hfToken (used twice) and aws-secret are missing; the rest are set.
    let store = MapStore::new(&[VALUES[1], VALUES[2], VALUES[3], VALUES[5], VALUES[6]]);
    let error =
        secret::resolve(secret_references(&spec), &store).expect_err("two secrets are missing");
    let text = error.to_string();
    let secret::Error::Missing(missing) = error else {
        panic!("expected missing secrets, got: {text}");
    };
    let name = |n: &str| SecretName::new(n).expect("a valid name");
    assert_eq!(
        missing,
        [
            MissingSecret {
                name: name("aws-secret"),
                fields: vec!["integrations[0].secretAccessKey".to_owned()],
            },
            MissingSecret {
                name: name("hfToken"),
                fields: vec![
                    "env[1].value".to_owned(),
                    "kubernetes.sidecars[0].env[0].value".to_owned(),
                ],
            },
        ]
    );
    assert!(
        text.contains(
            "secret `hfToken` is not set (needed by env[1].value, kubernetes.sidecars[0].env[0].value)"
        ),
        "{text}"
    );
    assert!(text.contains("lull secret set hfToken"), "{text}");
    assert!(text.contains("LULL_SECRET_HFTOKEN"), "{text}");
    assert!(text.contains("LULL_SECRET_AWS_SECRET"), "{text}");
    assert_no_value_in(&text, "the missing-secrets message");
    assert_no_value_in(&format!("{missing:?}"), "Debug of the missing secrets");
}

#[test]
fn chained_stores_ask_in_order() {
    let first = MapStore::new(&[("hfToken", "from-first")]);
    let second = MapStore::new(&VALUES);
    let chain = ChainedStore(vec![Box::new(first), Box::new(second)]);
    let spec = spec();
    let resolved = secret::resolve(secret_references(&spec), &chain).expect("all set");
    let token = ConfigValue::parse("secret:hfToken").expect("a reference");
    assert_eq!(resolved.value_of(&token), Some("from-first"));
    let key = ConfigValue::parse("secret:apiKey").expect("a reference");
    assert_eq!(resolved.value_of(&key), Some("api-key-0123456789abcdef"));
    assert_no_value_in(&format!("{resolved:?}"), "Debug of the chained resolution");
}

#[test]
fn a_spec_without_references_needs_no_store() {
    let catalog = load_str("name: open\ncommand: [x]\n", "open.yaml");
    let spec = &catalog.deployments[0].spec;
    let resolved =
        secret::resolve(secret_references(spec), &MapStore::new(&[])).expect("nothing needed");
    assert!(resolved.is_empty());
}
