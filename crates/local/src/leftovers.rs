//! Reaping what an earlier lull left running: when lull is killed, its replicas live on as
//! orphans. The next lull on the same state directory stops every process group the state file
//! names, after making sure each is still the process lull started and not an unrelated one that
//! got the same pid.
//!
//! A group is ours when its leader is alive (or a zombie) with the recorded start time. A leader's
//! pid, and so its group id, cannot be reused while any process of the group lives; so if the
//! leader is gone, the processes still in the group are ours too, which is checked all the same by
//! their start time (not before the leader's) and the `LULL_REPLICA` variable they inherited.

use std::ffi::OsString;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::{Instant, sleep};

use crate::limits;
use crate::process::{signal_group, signal_process};
use crate::state::{ProcessState, State};

/// Time a leftover replica gets between SIGTERM and SIGKILL: short, as lull is starting and the
/// replica is not serving through it anyway.
const TERM_WAIT: Duration = Duration::from_secs(5);

/// Time allowed for SIGKILLed processes to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);

const POLL: Duration = Duration::from_millis(50);

/// What of a recorded replica is still ours.
#[derive(Debug, PartialEq, Eq)]
enum Owned {
    /// The whole group: its leader is the recorded process.
    Group(u32),
    /// These processes, left in the group after the leader went.
    Processes(Vec<u32>),
}

/// Stops every replica recorded in `state`, in parallel; returns how many still had processes.
pub(crate) async fn reap(state: &State) -> usize {
    let boot = procfs::boot_time_secs().ok();
    if state.boot_time.is_some() && state.boot_time != boot {
        // The machine rebooted since: nothing recorded can be running.
        return 0;
    }
    let mut reaping = tokio::task::JoinSet::new();
    for (slug, deployment) in &state.deployments {
        for replica in &deployment.replicas {
            let replica = replica.clone();
            let slug = slug.clone();
            reaping.spawn(async move {
                let found = reap_one(&replica).await;
                if found {
                    tracing::info!(deployment = %slug, replica = %replica.id, pid = replica.pid, "stopped a replica left by an earlier lull");
                }
                found
            });
        }
    }
    let mut found = 0;
    while let Some(done) = reaping.join_next().await {
        if done.unwrap_or(false) {
            found += 1;
        }
    }
    found
}

async fn reap_one(replica: &ProcessState) -> bool {
    let record = replica.clone();
    let owned = tokio::task::spawn_blocking(move || identify(&record))
        .await
        .ok()
        .flatten();
    let found = owned.is_some();
    if let Some(owned) = owned {
        signal(&owned, Signal::SIGTERM);
        if !wait_gone(replica, TERM_WAIT).await {
            signal(&owned, Signal::SIGKILL);
            wait_gone(replica, KILL_WAIT).await;
        }
    }
    if let Some(cgroup) = &replica.cgroup {
        limits::release(cgroup).await;
    }
    found
}

fn signal(owned: &Owned, signal: Signal) {
    match owned {
        Owned::Group(pgid) => signal_group(*pgid, signal),
        Owned::Processes(pids) => pids.iter().for_each(|&pid| signal_process(pid, signal)),
    }
}

/// Whether every process of the replica is gone, waiting up to `wait`.
async fn wait_gone(replica: &ProcessState, wait: Duration) -> bool {
    let until = Instant::now() + wait;
    loop {
        let record = replica.clone();
        let gone = tokio::task::spawn_blocking(move || {
            identify(&record).is_none_or(|owned| live(&owned).is_empty())
        })
        .await
        .unwrap_or(false);
        if gone {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        sleep(POLL).await;
    }
}

/// The live processes of what is owned.
fn live(owned: &Owned) -> Vec<u32> {
    match owned {
        Owned::Group(pgid) => crate::process::live_members(*pgid),
        Owned::Processes(pids) => pids.clone(),
    }
}

/// A process's group, state, start time and pid, from /proc.
struct Seen {
    pid: u32,
    pgrp: i32,
    state: char,
    start_ticks: u64,
}

fn seen(process: &procfs::process::Process) -> Option<Seen> {
    let stat = process.stat().ok()?;
    Some(Seen {
        pid: u32::try_from(stat.pid).ok()?,
        pgrp: stat.pgrp,
        state: stat.state,
        start_ticks: stat.starttime,
    })
}

/// What of `replica` still runs and is provably ours.
fn identify(replica: &ProcessState) -> Option<Owned> {
    let pgid = i32::try_from(replica.pgid).ok()?;
    let leader = procfs::process::Process::new(pgid).ok();
    if let Some(leader) = leader.as_ref().and_then(seen) {
        // A live pid with another start time is a new process: the number was free, so the
        // group it once named was gone.
        let ours = leader.start_ticks == replica.start_time_ticks && leader.pgrp == pgid;
        return ours.then_some(Owned::Group(replica.pgid));
    }
    let marker = OsString::from(&replica.id);
    let stragglers: Vec<u32> = procfs::process::all_processes()
        .ok()?
        .filter_map(|p| {
            let p = p.ok()?;
            let s = seen(&p)?;
            let candidate = s.pgrp == pgid
                && !matches!(s.state, 'Z' | 'X')
                && s.start_ticks >= replica.start_time_ticks;
            let marked = candidate
                && p.environ()
                    .ok()?
                    .get(&OsString::from("LULL_REPLICA"))
                    .is_some_and(|v| *v == marker);
            marked.then_some(s.pid)
        })
        .collect();
    (!stragglers.is_empty()).then_some(Owned::Processes(stragglers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::{Launch, has_exited, spawn, start_time_ticks};
    use lull_spec::secret::Secret;
    use std::path::Path;

    fn record(id: &str, pid: u32, start_time_ticks: u64) -> ProcessState {
        ProcessState {
            id: id.to_owned(),
            pid,
            pgid: pid,
            start_time_ticks,
            port: 1,
            cgroup: None,
        }
    }

    #[tokio::test]
    async fn a_recorded_group_is_reaped_but_a_reused_pid_is_left_alone() {
        let env = [("LULL_REPLICA".to_owned(), Secret::new("app-1"))];
        let args = ["-c".to_owned(), "sleep 1000 & wait".to_owned()];
        let spawned = spawn(&Launch {
            program: Path::new("/bin/sh"),
            args: &args,
            dir: None,
            env: &env,
        })
        .expect("sh starts");
        let process = spawned.process;
        let pid = process.pid();
        let start = start_time_ticks(pid).expect("start time");

        // Another start time: the pid names some other process, which must survive.
        let impostor = record("app-1", pid, start + 1);
        assert_eq!(identify(&impostor), None);
        assert!(!reap_one(&impostor).await);
        assert!(!has_exited(pid));

        let ours = record("app-1", pid, start);
        assert_eq!(identify(&ours), Some(Owned::Group(pid)));
        assert!(reap_one(&ours).await);
        process.exited().await;
        assert!(process.reap().await.is_some());
    }

    #[tokio::test]
    async fn another_boot_is_not_reaped() {
        let mut state = State::new(Some(1));
        state.deployments.insert(
            "app".to_owned(),
            crate::state::DeploymentState {
                enabled: true,
                desired: 1,
                replicas: vec![record("app-1", std::process::id(), 0)],
            },
        );
        assert_eq!(reap(&state).await, 0);
    }
}
