//! Replica processes: a command becomes a process group of its own, and that group is signalled,
//! watched and reaped without ever touching a process that is not ours.
//!
//! A replica's leader is spawned with `process_group(0)`, so its pid is its group id and whatever
//! it forks (a shell's children, a server's workers) shares the group. Exits are noticed without
//! reaping the leader: while it is an unreaped zombie its pid, and so its group id, cannot be
//! handed to another process, which makes signalling the group afterwards safe. The leader is
//! reaped only once the rest of its group is gone.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use lull_spec::secret::Secret;
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::{Instant, sleep, timeout};

/// The program name that means lull itself, so that examples can run `lull fixture` on a machine
/// where lull is not on `PATH`.
pub(crate) const SELF_PROGRAM: &str = "lull";

/// Prefix of the variables lull reads secrets from; replicas never inherit them.
const SECRET_ENV_PREFIX: &[u8] = b"LULL_SECRET_";

/// How often exits are checked when no SIGCHLD arrives (processes that are not our children).
const EXIT_POLL: Duration = Duration::from_millis(100);

/// Longest wait for the rest of a group to die after SIGKILL; only a process stuck in the kernel
/// takes longer, and waiting for it forever would hang a shutdown.
const GROUP_GONE_WAIT: Duration = Duration::from_secs(5);

/// Errors of starting and inspecting processes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The program could not be started.
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        /// The program, as resolved.
        program: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `lull` was asked for and lull's own executable could not be found.
    #[error("cannot find lull's own executable to run `lull`: {0}")]
    CurrentExe(#[source] io::Error),
    /// /proc could not be read for a process lull just started.
    #[error("cannot read /proc/{pid}: {source}")]
    Proc {
        /// Which process.
        pid: u32,
        /// Why.
        #[source]
        source: procfs::ProcError,
    },
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The program to run for a spec's first `command` word: `lull` is lull's own executable, a
/// relative path with a directory part is taken from `dir` (the spec file's directory), and a bare
/// name is left for the `PATH` lookup.
pub(crate) fn resolve_program(program: &str, dir: Option<&Path>) -> Result<PathBuf> {
    if program == SELF_PROGRAM {
        return std::env::current_exe().map_err(Error::CurrentExe);
    }
    let path = Path::new(program);
    match dir {
        Some(dir) if path.is_relative() && path.components().count() > 1 => Ok(dir.join(path)),
        _ => Ok(path.to_path_buf()),
    }
}

/// The environment a child gets: lull's own minus its secret variables, then `env` in order
/// (later entries win).
pub(crate) fn set_env(command: &mut Command, env: &[(String, Secret)]) {
    for (name, _) in std::env::vars_os() {
        if is_secret_var(&name) {
            command.env_remove(name);
        }
    }
    for (name, value) in env {
        command.env(name, value.expose());
    }
}

/// What to start.
pub(crate) struct Launch<'a> {
    /// The program, resolved.
    pub program: &'a Path,
    /// Its arguments.
    pub args: &'a [String],
    /// Working directory; lull's own when `None`.
    pub dir: Option<&'a Path>,
    /// Environment on top of lull's own.
    pub env: &'a [(String, Secret)],
}

/// A started replica process and the ends of its output pipes.
pub(crate) struct Spawned {
    /// The process.
    pub process: ReplicaProcess,
    /// Its standard output.
    pub stdout: Option<ChildStdout>,
    /// Its standard error.
    pub stderr: Option<ChildStderr>,
}

/// Starts `launch` as the leader of a new process group, stdin closed, output piped.
pub(crate) fn spawn(launch: &Launch<'_>) -> Result<Spawned> {
    let mut command = Command::new(launch.program);
    command
        .args(launch.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    set_env(&mut command, launch.env);
    if let Some(dir) = launch.dir {
        command.current_dir(dir);
    }
    let spawn_error = |source| Error::Spawn {
        program: launch.program.display().to_string(),
        source,
    };
    let mut child = command.spawn().map_err(spawn_error)?;
    let pid = child
        .id()
        .ok_or_else(|| spawn_error(io::Error::other("the process was reaped at once")))?;
    // The start time identifies this process among every process that may later get its pid.
    let start_ticks = start_time_ticks(pid).map_err(|source| Error::Proc { pid, source })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    Ok(Spawned {
        process: ReplicaProcess {
            child,
            pid,
            start_ticks,
            reaped: false,
        },
        stdout,
        stderr,
    })
}

/// A replica's group leader, owned until it is reaped. Dropping it unreaped kills its whole
/// group, so that nothing outlives a replica whose supervisor is gone.
pub(crate) struct ReplicaProcess {
    child: Child,
    pid: u32,
    start_ticks: u64,
    reaped: bool,
}

impl ReplicaProcess {
    /// The leader's pid, which is also the group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// When the leader started, in clock ticks since boot.
    pub fn start_ticks(&self) -> u64 {
        self.start_ticks
    }

    /// Resolves once the leader has exited; it is not reaped yet.
    pub async fn exited(&self) {
        exited(self.pid).await;
    }

    /// Signals the whole group.
    pub fn signal(&self, signal: Signal) {
        signal_group(self.pid, signal);
    }

    /// Stops the group: SIGTERM, up to `deadline` for the leader to exit, SIGKILL if it has not;
    /// then whatever is left of the group is killed and the leader reaped.
    pub async fn terminate(self, deadline: Instant) -> Option<ExitStatus> {
        self.signal(Signal::SIGTERM);
        if timeout_at(deadline, self.exited()).await.is_err() {
            self.signal(Signal::SIGKILL);
            self.exited().await;
        }
        self.reap().await
    }

    /// After the leader has exited: kills the rest of its group, waits for them to go and reaps
    /// the leader. The exit status, if it could be read.
    pub async fn reap(mut self) -> Option<ExitStatus> {
        // The unreaped leader keeps the group id ours, so this reaches only our processes.
        self.signal(Signal::SIGKILL);
        let pgid = self.pid;
        let until = Instant::now() + GROUP_GONE_WAIT;
        while Instant::now() < until {
            let alive = tokio::task::spawn_blocking(move || live_members(pgid))
                .await
                .map(|members| members.iter().any(|&pid| pid != pgid))
                .unwrap_or(false);
            if !alive {
                break;
            }
            sleep(Duration::from_millis(20)).await;
        }
        let status = self.child.wait().await;
        self.reaped = true;
        match status {
            Ok(status) => Some(status),
            Err(e) => {
                tracing::warn!(pid = self.pid, error = %e, "cannot read the exit status");
                None
            }
        }
    }
}

impl Drop for ReplicaProcess {
    fn drop(&mut self) {
        if !self.reaped {
            // Unreaped, the leader still holds the group id, so the group is still ours.
            signal_group(self.pid, Signal::SIGKILL);
        }
    }
}

async fn timeout_at<F: Future>(deadline: Instant, future: F) -> Result<F::Output, ()> {
    tokio::time::timeout_at(deadline, future)
        .await
        .map_err(|_| ())
}

/// Sends `signal` to every process of group `pgid`; a group that is already gone is fine.
pub(crate) fn signal_group(pgid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pgid) else {
        return;
    };
    match killpg(Pid::from_raw(raw), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pgid, %signal, error = %e, "cannot signal process group"),
    }
}

/// Sends `signal` to one process; one that is already gone is fine.
pub(crate) fn signal_process(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    match nix::sys::signal::kill(Pid::from_raw(raw), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pid, %signal, error = %e, "cannot signal process"),
    }
}

/// When a process started, in clock ticks since boot.
pub(crate) fn start_time_ticks(pid: u32) -> procfs::ProcResult<u64> {
    let raw = i32::try_from(pid).map_err(|_| procfs::ProcError::NotFound(None))?;
    Ok(procfs::process::Process::new(raw)?.stat()?.starttime)
}

/// Whether a process has exited: gone, or a zombie waiting to be reaped.
pub(crate) fn has_exited(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return true;
    };
    match procfs::process::Process::new(raw).and_then(|p| p.stat()) {
        Ok(stat) => matches!(stat.state, 'Z' | 'X'),
        Err(procfs::ProcError::NotFound(_)) => true,
        // Anything else (a read racing the exit) says nothing; the next look will tell.
        Err(_) => false,
    }
}

/// Resolves once `pid` has exited (see [`has_exited`]). SIGCHLD wakes it at once for our own
/// children; other processes are polled.
pub(crate) async fn exited(pid: u32) {
    // Listening before looking, so an exit between the two is not missed.
    let mut sigchld = signal(SignalKind::child()).ok();
    loop {
        if has_exited(pid) {
            return;
        }
        match sigchld.as_mut() {
            Some(sigchld) => {
                let _ = timeout(EXIT_POLL, sigchld.recv()).await;
            }
            None => sleep(EXIT_POLL).await,
        }
    }
}

/// The live (not zombie) processes of group `pgid`.
pub(crate) fn live_members(pgid: u32) -> Vec<u32> {
    let Ok(pgid) = i32::try_from(pgid) else {
        return Vec::new();
    };
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    all.filter_map(|p| p.ok()?.stat().ok())
        .filter(|s| s.pgrp == pgid && !matches!(s.state, 'Z' | 'X'))
        .filter_map(|s| u32::try_from(s.pid).ok())
        .collect()
}

/// Says how a process ended, for status and logs: `exited with status 1`,
/// `killed by signal 9 (SIGKILL)`.
pub(crate) fn describe_exit(status: Option<ExitStatus>) -> String {
    let Some(status) = status else {
        return "exited (status unknown)".to_owned();
    };
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal() {
        Some(number) => match Signal::try_from(number) {
            Ok(signal) => format!("killed by signal {number} ({signal})"),
            Err(_) => format!("killed by signal {number}"),
        },
        None => format!("exited ({status})"),
    }
}

/// Whether an environment variable name is one lull reads secrets from.
pub(crate) fn is_secret_var(name: &OsStr) -> bool {
    name.as_bytes().starts_with(SECRET_ENV_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lull_resolves_to_the_running_executable() {
        let exe = std::env::current_exe().expect("the test binary has a path");
        assert_eq!(resolve_program("lull", None).expect("resolves"), exe);
        assert_eq!(
            resolve_program("lull", Some(Path::new("/specs"))).expect("resolves"),
            exe
        );
    }

    #[test]
    fn other_programs_resolve_by_path_or_spec_directory() {
        let dir = Some(Path::new("/specs"));
        assert_eq!(
            resolve_program("python3", dir).expect("resolves"),
            PathBuf::from("python3")
        );
        assert_eq!(
            resolve_program("./serve.sh", dir).expect("resolves"),
            PathBuf::from("/specs/./serve.sh")
        );
        assert_eq!(
            resolve_program("/usr/bin/env", dir).expect("resolves"),
            PathBuf::from("/usr/bin/env")
        );
        assert_eq!(
            resolve_program("bin/serve", None).expect("resolves"),
            PathBuf::from("bin/serve")
        );
    }

    #[test]
    fn secret_variables_are_recognised() {
        assert!(is_secret_var(OsStr::new("LULL_SECRET_HFTOKEN")));
        assert!(!is_secret_var(OsStr::new("LULL_REPLICA")));
    }

    #[test]
    fn exits_are_described_by_code_or_signal() {
        assert_eq!(
            describe_exit(Some(ExitStatus::from_raw(1 << 8))),
            "exited with status 1"
        );
        assert_eq!(
            describe_exit(Some(ExitStatus::from_raw(9))),
            "killed by signal 9 (SIGKILL)"
        );
        assert_eq!(describe_exit(None), "exited (status unknown)");
    }

    #[tokio::test]
    async fn a_group_is_killed_with_its_leader_and_reaped() {
        let env = [("LULL_TEST".to_owned(), Secret::new("1"))];
        let args = ["-c".to_owned(), "sleep 1000 & wait".to_owned()];
        let spawned = spawn(&Launch {
            program: Path::new("/bin/sh"),
            args: &args,
            dir: None,
            env: &env,
        })
        .expect("sh starts");
        let process = spawned.process;
        let pgid = process.pid();
        let until = Instant::now() + Duration::from_secs(20);
        while live_members(pgid).len() < 2 && Instant::now() < until {
            sleep(Duration::from_millis(20)).await;
        }
        let members = live_members(pgid);
        assert!(members.len() >= 2, "sleep runs in the group: {members:?}");
        let status = process
            .terminate(Instant::now() + Duration::from_secs(10))
            .await;
        assert!(status.is_some());
        for pid in members {
            assert!(has_exited(pid), "{pid} is gone");
        }
    }
}
