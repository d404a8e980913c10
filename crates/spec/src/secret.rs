//! `secret:NAME` references and their resolution.
//!
//! A spec never holds secret values, only references (`value: secret:hfToken`). A [`SecretStore`]
//! turns a reference into a [`Secret`], a string whose `Debug`, `Display` and `Serialize` print
//! `<redacted>`, so a resolved value cannot leak through logs, status or rendered output by accident.
//! Resolution reports every missing secret at once, with every field that needs it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The prefix that marks a value as a reference to a secret.
pub const SECRET_PREFIX: &str = "secret:";

/// Longest secret name accepted (the Kubernetes limit for a Secret key).
pub const MAX_SECRET_NAME_LEN: usize = 253;

/// Errors of secret names and stores.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A secret name with characters that cannot be stored or used as a Kubernetes Secret key.
    #[error("{}", invalid_name_message(.0))]
    InvalidName(String),
    /// The store could not be read or written.
    #[error("secret store {location}: {message}")]
    Store {
        /// Where the store lives (a file path, an API).
        location: String,
        /// What went wrong.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Secrets that no store holds, each with the fields that need it.
    #[error("{}", missing_message(.0))]
    Missing(Vec<MissingSecret>),
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn invalid_name_message(name: &str) -> String {
    let rule = "use 1 to 253 letters, digits, `-`, `_` or `.`";
    if name.is_empty() {
        format!("the secret name is empty: {rule}, as in secret:hfToken")
    } else {
        format!("`{name}` is not a valid secret name: {rule}")
    }
}

fn missing_message(missing: &[MissingSecret]) -> String {
    let mut out = String::new();
    for (i, m) in missing.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!(
            "secret `{}` is not set (needed by {}); set it with `lull secret set {}` or the environment variable {}",
            m.name,
            m.fields.join(", "),
            m.name,
            m.name.env_var()
        ));
    }
    out
}

/// A secret that could not be found, and the spec fields that reference it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingSecret {
    /// The secret's name.
    pub name: SecretName,
    /// Field paths (`env[1].value`, `basicAuthKey`) that reference it, with their deployment.
    pub fields: Vec<String>,
}

/// The name of a secret: 1 to 253 of `[A-Za-z0-9._-]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct SecretName(String);

impl SecretName {
    /// Checks and wraps a secret name.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let valid = !name.is_empty()
            && name.len() <= MAX_SECRET_NAME_LEN
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if valid {
            Ok(Self(name))
        } else {
            Err(Error::InvalidName(name))
        }
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The environment variable that may hold this secret: `LULL_SECRET_` and the name in upper
    /// case with `-` and `.` as `_` (`hfToken` → `LULL_SECRET_HFTOKEN`).
    pub fn env_var(&self) -> String {
        let mut var = String::from("LULL_SECRET_");
        var.extend(self.0.chars().map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        }));
        var
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::new(name).map_err(serde::de::Error::custom)
    }
}

/// A string field that holds either a plain value or a `secret:NAME` reference.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum ConfigValue {
    /// A value written in the spec.
    Plain(String),
    /// A reference to a secret, resolved by a [`SecretStore`] at the edge.
    Secret(SecretName),
}

impl ConfigValue {
    /// Parses `secret:NAME` as a reference and anything else as a plain value.
    pub fn parse(text: &str) -> Result<Self> {
        match text.strip_prefix(SECRET_PREFIX) {
            Some(name) => Ok(Self::Secret(SecretName::new(name.trim())?)),
            None => Ok(Self::Plain(text.to_owned())),
        }
    }

    /// The referenced secret, if this is a reference.
    pub fn secret(&self) -> Option<&SecretName> {
        match self {
            Self::Secret(name) => Some(name),
            Self::Plain(_) => None,
        }
    }
}

impl From<&str> for ConfigValue {
    /// A plain value, even when it starts with `secret:`; use [`ConfigValue::parse`] for user text.
    fn from(value: &str) -> Self {
        Self::Plain(value.to_owned())
    }
}

impl fmt::Debug for ConfigValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain(v) => fmt::Debug::fmt(v, f),
            Self::Secret(name) => write!(f, "{SECRET_PREFIX}{name}"),
        }
    }
}

impl fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain(v) => f.write_str(v),
            Self::Secret(name) => write!(f, "{SECRET_PREFIX}{name}"),
        }
    }
}

impl Serialize for ConfigValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConfigValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for ConfigValue {
    fn schema_name() -> Cow<'static, str> {
        "ConfigValue".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "config-value",
            "description": "A plain string, or `secret:NAME` to read the value from the secret store."
        })
    }
}

/// A resolved secret value. It prints and serialises as `<redacted>`; only
/// [`Secret::expose`] gives the value, at the one place that hands it to a replica or compares it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value read from a store.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself. Call only where it leaves lull for its rightful user.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// Somewhere secrets live: lull's embedded file store, the environment, a Kubernetes Secret.
pub trait SecretStore: Send + Sync {
    /// The secret's value, `None` when this store does not hold it.
    fn get(&self, name: &SecretName) -> Result<Option<Secret>>;
}

/// Reads `LULL_SECRET_<NAME>` from the process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct EnvSecretStore;

impl SecretStore for EnvSecretStore {
    fn get(&self, name: &SecretName) -> Result<Option<Secret>> {
        Ok(std::env::var(name.env_var()).ok().map(Secret::new))
    }
}

/// Asks each store in turn; the first that holds the secret wins.
pub struct ChainedStore(pub Vec<Box<dyn SecretStore>>);

impl SecretStore for ChainedStore {
    fn get(&self, name: &SecretName) -> Result<Option<Secret>> {
        for store in &self.0 {
            if let Some(secret) = store.get(name)? {
                return Ok(Some(secret));
            }
        }
        Ok(None)
    }
}

/// The secret values a set of references needs, by name.
#[derive(Debug, Default, Clone)]
pub struct ResolvedSecrets(BTreeMap<SecretName, Secret>);

impl ResolvedSecrets {
    /// The value of one secret.
    pub fn get(&self, name: &SecretName) -> Option<&Secret> {
        self.0.get(name)
    }

    /// The value a field resolves to: itself when plain, the secret when a reference.
    pub fn value_of<'a>(&'a self, value: &'a ConfigValue) -> Option<&'a str> {
        match value {
            ConfigValue::Plain(v) => Some(v),
            ConfigValue::Secret(name) => self.get(name).map(Secret::expose),
        }
    }

    /// How many secrets were resolved.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no secret was needed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Resolves every reference in `references` (field path → reference) against `store`.
/// All missing secrets are reported together, each with every field that needs it.
pub fn resolve<'a>(
    references: impl IntoIterator<Item = (String, &'a SecretName)>,
    store: &dyn SecretStore,
) -> Result<ResolvedSecrets> {
    let mut needed: BTreeMap<&SecretName, Vec<String>> = BTreeMap::new();
    for (field, name) in references {
        needed.entry(name).or_default().push(field);
    }
    let mut resolved = BTreeMap::new();
    let mut missing = Vec::new();
    for (name, fields) in needed {
        match store.get(name)? {
            Some(secret) => {
                resolved.insert(name.clone(), secret);
            }
            None => missing.push(MissingSecret {
                name: name.clone(),
                fields,
            }),
        }
    }
    if missing.is_empty() {
        Ok(ResolvedSecrets(resolved))
    } else {
        Err(Error::Missing(missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct MapStore(BTreeMap<String, String>);

    impl SecretStore for MapStore {
        fn get(&self, name: &SecretName) -> Result<Option<Secret>> {
            Ok(self.0.get(name.as_str()).map(|v| Secret::new(v.clone())))
        }
    }

    #[test]
    fn references_parse_and_print_back() {
        let v = ConfigValue::parse("secret:hfToken").expect("valid");
        assert_eq!(v.secret().map(SecretName::as_str), Some("hfToken"));
        assert_eq!(v.to_string(), "secret:hfToken");
        assert_eq!(ConfigValue::parse("plain").expect("plain").secret(), None);
        assert!(ConfigValue::parse("secret:").is_err());
        assert!(ConfigValue::parse("secret:has space").is_err());
    }

    #[test]
    fn resolved_secrets_never_print_their_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "<redacted> <redacted>");
        let json = serde_json::to_string(&secret).expect("serialises");
        assert!(!json.contains("hunter2"));
    }

    #[test]
    fn missing_secrets_name_every_field_that_needs_them() {
        let store = MapStore(BTreeMap::from([("present".to_owned(), "x".to_owned())]));
        let a = SecretName::new("absent").expect("valid");
        let p = SecretName::new("present").expect("valid");
        let err = resolve(
            [
                ("env[0].value".to_owned(), &a),
                ("basicAuthKey".to_owned(), &a),
                ("env[1].value".to_owned(), &p),
            ],
            &store,
        )
        .expect_err("absent is missing");
        let text = err.to_string();
        assert!(text.contains("`absent`"), "{text}");
        assert!(text.contains("env[0].value, basicAuthKey"), "{text}");
        assert!(text.contains("LULL_SECRET_ABSENT"), "{text}");
        assert!(!text.contains("present"), "{text}");
    }

    #[test]
    fn env_var_names_are_upper_snake_case() {
        let name = SecretName::new("my-token.v2").expect("valid");
        assert_eq!(name.env_var(), "LULL_SECRET_MY_TOKEN_V2");
    }
}
