//! The embedded secret store: one JSON file, `secrets.json`, in lull's state directory.
//!
//! The file is readable by its owner only (mode 0600, in a directory created 0700) and is
//! replaced atomically on every change: a temporary file in the same directory is written,
//! flushed to disk and renamed over the old one, so a crash leaves either the old or the new
//! store, never half of one. Writers take an exclusive lock on `secrets.lock` so two
//! `lull secret set` runs at once cannot lose each other's change.
//!
//! No error message and no `Debug` output of this module carries a secret value.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use lull_spec::secret::{Error, Result, Secret, SecretName, SecretStore};
use serde::{Deserialize, Serialize};

/// Name of the store file in the state directory.
pub const FILE_NAME: &str = "secrets.json";

/// Name of the lock file that serialises writers.
const LOCK_NAME: &str = "secrets.lock";

/// The file format this lull writes and reads.
const FORMAT_VERSION: u32 = 1;

/// Secrets kept in a file under the state directory.
#[derive(Debug, Clone)]
pub struct FileSecretStore {
    dir: PathBuf,
    file: PathBuf,
}

/// What the file holds. It has no `Debug` so that the values cannot be printed by accident.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Contents {
    version: u32,
    secrets: BTreeMap<SecretName, String>,
}

impl Default for Contents {
    fn default() -> Self {
        Self {
            version: FORMAT_VERSION,
            secrets: BTreeMap::new(),
        }
    }
}

impl FileSecretStore {
    /// The store in `state_dir`; nothing is created until a secret is set.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        let dir = state_dir.into();
        let file = dir.join(FILE_NAME);
        Self { dir, file }
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// The names of every stored secret, in order.
    pub fn names(&self) -> Result<Vec<SecretName>> {
        Ok(self.read()?.secrets.into_keys().collect())
    }

    /// Stores `value` under `name`, replacing an earlier value.
    pub fn set(&self, name: &SecretName, value: &Secret) -> Result<()> {
        let _lock = self.lock()?;
        let mut contents = self.read()?;
        contents
            .secrets
            .insert(name.clone(), value.expose().to_owned());
        self.write(&contents)
    }

    /// Removes `name`; `false` when it was not stored.
    pub fn remove(&self, name: &SecretName) -> Result<bool> {
        let _lock = self.lock()?;
        let mut contents = self.read()?;
        if contents.secrets.remove(name).is_none() {
            return Ok(false);
        }
        self.write(&contents)?;
        Ok(true)
    }

    fn error(&self, message: impl Into<String>, source: Option<io::Error>) -> Error {
        Error::Store {
            location: self.file.display().to_string(),
            message: message.into(),
            source: source.map(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
        }
    }

    fn read(&self) -> Result<Contents> {
        let bytes = match fs::read(&self.file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Contents::default()),
            Err(e) => return Err(self.error("cannot be read", Some(e))),
        };
        let contents: Contents = serde_json::from_slice(&bytes).map_err(|e| {
            // serde_json's messages can quote the value they choke on, which may be a secret;
            // only the kind of problem and its place are reported.
            let what = match e.classify() {
                serde_json::error::Category::Data => "does not hold lull's secret store format",
                _ => "is not valid JSON",
            };
            self.error(
                format!(
                    "{what} (line {}, column {}); fix it, or remove it and set the secrets again",
                    e.line(),
                    e.column()
                ),
                None,
            )
        })?;
        if contents.version != FORMAT_VERSION {
            return Err(self.error(
                format!(
                    "is in format version {}, which this lull does not read (it reads {FORMAT_VERSION}); use a newer lull",
                    contents.version
                ),
                None,
            ));
        }
        Ok(contents)
    }

    fn write(&self, contents: &Contents) -> Result<()> {
        let json = serde_json::to_vec_pretty(contents)
            .map_err(|_| self.error("cannot be encoded as JSON", None))?;
        let mut builder = tempfile::Builder::new();
        builder.prefix(".secrets.").suffix(".tmp");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(fs::Permissions::from_mode(0o600));
        }
        let mut temp = builder
            .tempfile_in(&self.dir)
            .map_err(|e| self.error("cannot create a temporary file beside it", Some(e)))?;
        temp.write_all(&json)
            .and_then(|()| temp.as_file().sync_all())
            .map_err(|e| self.error("cannot be written", Some(e)))?;
        temp.persist(&self.file)
            .map_err(|e| self.error("cannot be replaced", Some(e.error)))?;
        // The rename is durable only once the directory itself is on disk.
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| self.error("cannot flush its directory", Some(e)))
    }

    /// Creates the state directory if needed and holds the writers' lock until dropped.
    fn lock(&self) -> Result<File> {
        let mut dir = fs::DirBuilder::new();
        dir.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            dir.mode(0o700);
        }
        dir.create(&self.dir).map_err(|e| {
            self.error(
                format!("cannot create the directory {}", self.dir.display()),
                Some(e),
            )
        })?;
        let mut options = OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let lock_path = self.dir.join(LOCK_NAME);
        let lock = options
            .open(&lock_path)
            .map_err(|e| self.error(format!("cannot open {}", lock_path.display()), Some(e)))?;
        lock.lock()
            .map_err(|e| self.error(format!("cannot lock {}", lock_path.display()), Some(e)))?;
        Ok(lock)
    }
}

impl SecretStore for FileSecretStore {
    fn get(&self, name: &SecretName) -> Result<Option<Secret>> {
        Ok(self.read()?.secrets.get(name).map(Secret::new))
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    fn name(s: &str) -> SecretName {
        SecretName::new(s).expect("a valid name")
    }

    /// The error and every source, as a user would see them.
    fn full_message(e: &Error) -> String {
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        format!("{text} {e:?}")
    }

    #[test]
    fn secrets_round_trip_through_the_file() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = FileSecretStore::new(dir.path().join("state"));
        assert!(store.names().expect("an absent store is empty").is_empty());
        assert!(store.get(&name("a")).expect("readable").is_none());

        store.set(&name("b"), &Secret::new("two")).expect("set b");
        store.set(&name("a"), &Secret::new("one")).expect("set a");
        store
            .set(&name("a"), &Secret::new("uno"))
            .expect("replace a");
        assert_eq!(store.names().expect("names"), [name("a"), name("b")]);
        assert_eq!(
            store
                .get(&name("a"))
                .expect("readable")
                .map(|s| s.expose().to_owned()),
            Some("uno".to_owned())
        );

        assert!(store.remove(&name("a")).expect("remove a"));
        assert!(!store.remove(&name("a")).expect("a is gone"));
        assert_eq!(store.names().expect("names"), [name("b")]);
    }

    #[cfg(unix)]
    #[test]
    fn only_the_owner_can_read_the_store() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().expect("a temporary directory");
        let state = dir.path().join("state");
        let store = FileSecretStore::new(&state);
        store.set(&name("a"), &Secret::new("one")).expect("set");
        let mode = |p: &Path| fs::metadata(p).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode(store.path()), 0o600);
        assert_eq!(mode(&state), 0o700);
        let leftovers: Vec<_> = fs::read_dir(&state)
            .expect("listable")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn errors_never_quote_values() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = FileSecretStore::new(dir.path());
        for broken in [
            r#"{"version": "hunter2", "secrets": {}}"#,
            r#"{"version": 1, "secrets": {"a": ["hunter2"]}}"#,
            r#"{"version": 1, "secrets": {"a": "hunter2"}, "hunter2": 1}"#,
            r#"{"version": 1, "secrets": {"a": "hunter2" "#,
            r#"{"version": 2, "secrets": {"a": "hunter2"}}"#,
        ] {
            fs::write(store.path(), broken).expect("written");
            let err = store.names().expect_err("the file is broken");
            let text = full_message(&err);
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains(FILE_NAME), "{text}");
        }
        let debug = format!("{store:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
