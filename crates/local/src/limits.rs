//! Resource limits: `maxCpu` and `maxMemory` of a replica.
//!
//! Where cgroup v2 is mounted with the cpu and memory controllers and lull may manage a
//! sub-cgroup of its own (a delegated subtree, or running as root), every replica gets its own
//! cgroup under `<lull's cgroup>/lull-replicas/` with `cpu.max` and `memory.max`. Otherwise
//! `maxMemory` becomes an address-space rlimit (`RLIMIT_AS`) set on the replica right after it
//! starts, and `maxCpu` is not enforced. Status says which applies.
//!
//! Either limit is applied just after the replica is spawned (lull forbids `unsafe`, so there is
//! no pre-exec hook): what the replica does in its first instant runs unlimited.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lull_core::ReplicaId;
use rlimit::Resource;

use crate::template::LimitSpec;

/// The cgroup that holds replica cgroups, under lull's own.
const REPLICAS_CGROUP: &str = "lull-replicas";

/// Where lull moves itself when its cgroup must hand its controllers down: cgroup v2 lets a
/// cgroup with processes of its own enable no controller for its children.
const SUPERVISOR_CGROUP: &str = "lull-supervisor";

/// `cpu.max` period, in microseconds.
const CPU_PERIOD_MICROS: u64 = 100_000;

/// Text for the status of each mechanism.
pub(crate) const CGROUP_TEXT: &str = "cgroup v2 (cpu.max, memory.max)";
/// Text for the status of the rlimit fallback.
pub(crate) const RLIMIT_TEXT: &str = "rlimit (RLIMIT_AS)";
/// Text for the status without limits.
pub(crate) const NONE_TEXT: &str = "none";

/// Errors of applying limits.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The replica's cgroup could not be set up.
    #[error("cannot set up cgroup {}: {source}", .path.display())]
    Cgroup {
        /// Which file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The rlimit could not be set.
    #[error("cannot set RLIMIT_AS on pid {pid}: {source}")]
    Rlimit {
        /// Which process.
        pid: u32,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How limits are enforced on this machine.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// The cgroup replica cgroups are made in, when cgroup v2 can be used.
    replicas_cgroup: Option<PathBuf>,
}

impl Limits {
    /// Finds out what this machine allows.
    pub fn detect() -> Self {
        let found = (|| {
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
            let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
            let own = own_cgroup(&mountinfo, &cgroup)?;
            match prepare(&own) {
                Ok(dir) => Some(dir),
                Err(e) => {
                    tracing::info!(cgroup = %own.display(), error = %e, "cgroup v2 limits unavailable; using rlimits");
                    None
                }
            }
        })();
        Self {
            replicas_cgroup: found,
        }
    }

    /// No limits beyond rlimits; for machines and tests without cgroup v2.
    pub fn rlimit_only() -> Self {
        Self {
            replicas_cgroup: None,
        }
    }

    /// What status says applies to a replica with these limits.
    pub fn describe(&self, spec: &LimitSpec) -> String {
        match (spec.max_cpu, spec.max_memory, &self.replicas_cgroup) {
            (None, None, _) => NONE_TEXT.to_owned(),
            (_, _, Some(_)) => CGROUP_TEXT.to_owned(),
            (None, Some(_), None) => RLIMIT_TEXT.to_owned(),
            (Some(_), Some(_), None) => format!(
                "{RLIMIT_TEXT}; maxCpu is not enforced: no writable cgroup v2 with the cpu controller"
            ),
            (Some(_), None, None) => {
                format!("{NONE_TEXT}: maxCpu needs a writable cgroup v2 with the cpu controller")
            }
        }
    }

    /// Puts a just-started replica under its limits: in a cgroup of its own (returned, to be
    /// released when it ends) or under an rlimit.
    pub fn apply(
        &self,
        replica: &ReplicaId,
        pid: u32,
        spec: &LimitSpec,
    ) -> Result<Option<PathBuf>> {
        if !spec.any() {
            return Ok(None);
        }
        match &self.replicas_cgroup {
            Some(parent) => create_replica_cgroup(parent, replica, pid, spec).map(Some),
            None => {
                if let Some(bytes) = spec.max_memory {
                    let raw = i32::try_from(pid).map_err(|_| Error::Rlimit {
                        pid,
                        source: io::Error::from(io::ErrorKind::InvalidInput),
                    })?;
                    rlimit::prlimit(raw, Resource::AS, Some((bytes, bytes)), None)
                        .map_err(|source| Error::Rlimit { pid, source })?;
                }
                Ok(None)
            }
        }
    }
}

/// Removes a replica's cgroup once its processes are gone, killing any that are not.
pub(crate) async fn release(cgroup: &Path) {
    for _ in 0..50 {
        match tokio::fs::remove_dir(cgroup).await {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(_) => {
                // Busy: something of the replica is still in it (cgroup.kill exists from Linux 5.14).
                let _ = tokio::fs::write(cgroup.join("cgroup.kill"), "1").await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tracing::warn!(cgroup = %cgroup.display(), "cannot remove a replica cgroup");
}

/// Lull's own cgroup v2 directory: the cgroup2 mount point joined with the `0::` line of
/// /proc/self/cgroup.
fn own_cgroup(mountinfo: &str, self_cgroup: &str) -> Option<PathBuf> {
    // mountinfo: `id parent major:minor root mount-point options [tags] - fstype source options`.
    let mount = mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        (after.split_whitespace().next()? == "cgroup2")
            .then(|| before.split_whitespace().nth(4))
            .flatten()
    })?;
    let own = self_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))?;
    let own = own.trim().trim_start_matches('/');
    Some(Path::new(mount).join(own))
}

/// Makes `<own>/lull-replicas` with the cpu and memory controllers enabled for its children.
fn prepare(own: &Path) -> io::Result<PathBuf> {
    let available = std::fs::read_to_string(own.join("cgroup.controllers"))?;
    let has = |c: &str| available.split_whitespace().any(|a| a == c);
    if !has("cpu") || !has("memory") {
        return Err(io::Error::other(format!(
            "the cpu and memory controllers are not available (only `{}`)",
            available.trim()
        )));
    }
    if let Err(e) = enable_controllers(own) {
        // The no-internal-processes rule: a cgroup with processes hands no controller down.
        // When lull is the only one, it moves into a leaf of its own and tries again; other
        // processes' cgroups are not lull's to rearrange.
        let procs = std::fs::read_to_string(own.join("cgroup.procs"))?;
        let me = std::process::id().to_string();
        if procs.split_whitespace().any(|pid| pid != me) {
            return Err(e);
        }
        let leaf = own.join(SUPERVISOR_CGROUP);
        create_dir(&leaf)?;
        std::fs::write(leaf.join("cgroup.procs"), std::process::id().to_string())?;
        enable_controllers(own)?;
    }
    let replicas = own.join(REPLICAS_CGROUP);
    create_dir(&replicas)?;
    enable_controllers(&replicas)?;
    Ok(replicas)
}

fn enable_controllers(cgroup: &Path) -> io::Result<()> {
    let control = cgroup.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&control)?;
    let on = |c: &str| enabled.split_whitespace().any(|e| e == c);
    if on("cpu") && on("memory") {
        return Ok(());
    }
    std::fs::write(&control, "+cpu +memory")
}

fn create_dir(dir: &Path) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

fn create_replica_cgroup(
    parent: &Path,
    replica: &ReplicaId,
    pid: u32,
    spec: &LimitSpec,
) -> Result<PathBuf> {
    // The pid makes the name unique across restarts of the replica and across lull instances.
    let dir = parent.join(format!("{replica}-{pid}"));
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Cgroup { path, source }
    };
    create_dir(&dir).map_err(failed(&dir))?;
    if let Some(cores) = spec.max_cpu {
        let quota = ((cores * CPU_PERIOD_MICROS as f64).ceil() as u64).max(1000);
        let file = dir.join("cpu.max");
        std::fs::write(&file, format!("{quota} {CPU_PERIOD_MICROS}")).map_err(failed(&file))?;
    }
    if let Some(bytes) = spec.max_memory {
        let file = dir.join("memory.max");
        std::fs::write(&file, bytes.to_string()).map_err(failed(&file))?;
    }
    let procs = dir.join("cgroup.procs");
    std::fs::write(&procs, pid.to_string()).map_err(failed(&procs))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
24 31 0:22 / /sys rw,nosuid - sysfs sysfs rw
41 31 0:38 / /sys/fs/cgroup rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
42 31 0:39 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";

    #[test]
    fn own_cgroup_is_found_from_mountinfo_and_proc_self_cgroup() {
        let own = own_cgroup(MOUNTINFO, "4:memory:/other\n0::/user.slice/lull.service\n");
        assert_eq!(
            own,
            Some(PathBuf::from("/sys/fs/cgroup/user.slice/lull.service"))
        );
        assert_eq!(own_cgroup(MOUNTINFO, "4:memory:/x\n"), None);
        assert_eq!(
            own_cgroup("24 31 0:22 / /sys rw - sysfs sysfs rw\n", "0::/\n"),
            None
        );
    }

    #[test]
    fn a_delegated_cgroup_gets_a_replica_subtree_with_limits() {
        let root = tempfile::tempdir().expect("tempdir");
        let own = root.path();
        std::fs::write(own.join("cgroup.controllers"), "cpu io memory pids\n").expect("write");
        std::fs::write(own.join("cgroup.subtree_control"), "").expect("write");
        // A real cgroupfs creates these files itself.
        let replicas = own.join(REPLICAS_CGROUP);
        std::fs::create_dir(&replicas).expect("mkdir");
        std::fs::write(replicas.join("cgroup.subtree_control"), "").expect("write");
        let dir = prepare(own).expect("prepares");
        assert_eq!(dir, replicas);
        let control = std::fs::read_to_string(own.join("cgroup.subtree_control")).expect("read");
        assert_eq!(control, "+cpu +memory");
        let limits = Limits {
            replicas_cgroup: Some(dir),
        };
        let spec = LimitSpec {
            max_cpu: Some(1.5),
            max_memory: Some(512 * 1024 * 1024),
        };
        let cgroup = limits
            .apply(&ReplicaId::new("app-1"), 4242, &spec)
            .expect("applies")
            .expect("a cgroup");
        let read = |f: &str| std::fs::read_to_string(cgroup.join(f)).expect("read");
        assert_eq!(read("cpu.max"), "150000 100000");
        assert_eq!(read("memory.max"), "536870912");
        assert_eq!(read("cgroup.procs"), "4242");
        assert_eq!(limits.describe(&spec), CGROUP_TEXT);
    }

    #[test]
    fn without_cgroups_memory_is_an_rlimit_and_cpu_is_not_limited() {
        let limits = Limits::rlimit_only();
        let memory = LimitSpec {
            max_cpu: None,
            max_memory: Some(1 << 30),
        };
        assert_eq!(limits.describe(&memory), RLIMIT_TEXT);
        assert_eq!(limits.describe(&LimitSpec::default()), NONE_TEXT);
        let cpu = LimitSpec {
            max_cpu: Some(1.0),
            max_memory: None,
        };
        assert!(limits.describe(&cpu).starts_with("none:"));
        let controllers_missing = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            controllers_missing.path().join("cgroup.controllers"),
            "hugetlb\n",
        )
        .expect("write");
        assert!(prepare(controllers_missing.path()).is_err());
    }
}
