//! The state file, `<state_dir>/local-state.json`: each deployment's desired replica count, and
//! every process lull started, identified well enough to be reaped by the next lull if this one is
//! killed.
//!
//! It is rewritten whenever it changes, atomically: a temporary file in the same directory is
//! written, synced and renamed over the old one, so a crash leaves the old or the new state, never
//! a torn one.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The state file's name in the state directory.
pub(crate) const FILE_NAME: &str = "local-state.json";

/// The format version written.
const FORMAT: u32 = 1;

/// Errors of reading and writing the state file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// It could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// It is not a state file lull can read.
    #[error("{} is not a lull state file ({source}); if no replica of an earlier `lull up` is still running, delete it", .path.display())]
    Parse {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// It could not be written.
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything persisted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct State {
    /// Format version.
    #[serde(default)]
    pub format: u32,
    /// When the machine booted (seconds since the epoch): processes of an earlier boot are gone
    /// and their pids mean nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_time: Option<u64>,
    /// Deployments by slug.
    #[serde(default)]
    pub deployments: BTreeMap<String, DeploymentState>,
}

/// One deployment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeploymentState {
    /// Whether the spec enabled it.
    pub enabled: bool,
    /// Replicas asked for.
    pub desired: u32,
    /// Its running processes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ProcessState>,
}

/// One replica process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProcessState {
    /// The replica, `<slug>-<n>`.
    pub id: String,
    /// The leader's pid.
    pub pid: u32,
    /// Its process group (the same as `pid`).
    pub pgid: u32,
    /// When the leader started, in clock ticks since boot: with `pid`, it names one process.
    pub start_time_ticks: u64,
    /// Its `$PORT`.
    pub port: u16,
    /// Its cgroup, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<PathBuf>,
}

impl State {
    /// A state with the current format.
    pub fn new(boot_time: Option<u64>) -> Self {
        Self {
            format: FORMAT,
            boot_time,
            deployments: BTreeMap::new(),
        }
    }
}

/// Reads the state file; a missing one is an empty state.
pub(crate) fn load(path: &Path) -> Result<State> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::default()),
        Err(source) => {
            return Err(Error::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_str(&text).map_err(|source| Error::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Replaces the state file atomically.
pub(crate) fn save(path: &Path, state: &State) -> Result<()> {
    let failed = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut text = serde_json::to_vec_pretty(state).map_err(|e| failed(io::Error::other(e)))?;
    text.push(b'\n');
    let mut temp = tempfile::Builder::new()
        .prefix(".local-state.")
        .tempfile_in(dir)
        .map_err(failed)?;
    temp.write_all(&text).map_err(failed)?;
    temp.as_file().sync_all().map_err(failed)?;
    temp.persist(path).map_err(|e| failed(e.error))?;
    // The rename is durable once the directory is synced too.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        assert_eq!(load(&path).expect("missing is fine"), State::default());
        let mut state = State::new(Some(1_700_000_000));
        state.deployments.insert(
            "app".to_owned(),
            DeploymentState {
                enabled: true,
                desired: 2,
                replicas: vec![ProcessState {
                    id: "app-1".to_owned(),
                    pid: 100,
                    pgid: 100,
                    start_time_ticks: 12345,
                    port: 40001,
                    cgroup: None,
                }],
            },
        );
        save(&path, &state).expect("saves");
        assert_eq!(load(&path).expect("loads"), state);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("\"startTimeTicks\": 12345"), "{text}");
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, [FILE_NAME]);
    }

    #[test]
    fn a_corrupt_file_says_what_to_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, "{not json").expect("write");
        let err = load(&path).expect_err("corrupt");
        assert!(err.to_string().contains("delete it"), "{err}");
    }
}
