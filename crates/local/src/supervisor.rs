//! One deployment's replicas: how many should run, which to start and which to stop, and what is
//! published as its endpoint set.
//!
//! [`reconcile`] runs whenever something changes (a new desired count, a new spec, a replica
//! becoming ready or exiting) and compares what runs with what is wanted:
//! - scaling up starts replicas; scaling down stops the not-ready ones first, then the newest;
//! - a new version (command, env, ports, probes or limits changed) is rolled out: with the
//!   `rolling` strategy a new replica is started and an old one stopped only once a new one is
//!   ready, so capacity never drops; with `safe` every old replica is stopped before a new one
//!   starts, so two versions never run at once;
//! - a disabled or removed deployment goes to zero.
//!
//! A replica chosen to stop leaves the endpoint set at once, before it is drained and signalled.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lull_core::{
    BackendStatus, DeploymentKey, Endpoint, EndpointSet, ReplicaId, ReplicaPhase, ReplicaStatus,
};
use lull_spec::{DeploymentSpec, RolloutStrategy};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::Shared;
use crate::limits::Limits;
use crate::replica;
use crate::state;
use crate::template::{self, Template};

/// Supervises one deployment.
pub(crate) struct Supervisor {
    /// Its key.
    pub key: DeploymentKey,
    inner: Mutex<Inner>,
    endpoints: watch::Sender<EndpointSet>,
}

/// What a supervisor knows, behind its lock.
struct Inner {
    /// What replicas of the current version run; `None` when the spec could not be resolved.
    template: Option<Arc<Template>>,
    /// The current version: bumped whenever the template changes.
    version: u64,
    /// Why the spec cannot run, when it cannot.
    problem: Option<String>,
    enabled: bool,
    desired: u32,
    /// No longer in the specs: going to zero, then forgotten.
    removed: bool,
    strategy: RolloutStrategy,
    grace: Duration,
    max_memory: Option<u64>,
    replicas: BTreeMap<ReplicaId, Replica>,
    next_seq: u64,
}

/// One replica as its supervisor sees it; its task keeps it current.
pub(crate) struct Replica {
    index: u32,
    /// Creation order: higher is newer.
    seq: u64,
    version: u64,
    /// Where it is in its life.
    pub phase: ReplicaPhase,
    /// Its running process.
    pub process: Option<Running>,
    /// Restarts so far.
    pub restarts: u32,
    /// Why it last failed.
    pub last_failure: Option<String>,
    /// When a backing-off replica starts again.
    pub retry_at: Option<Instant>,
    stopping: bool,
    stop: CancellationToken,
}

/// A replica's process, as recorded.
#[derive(Debug, Clone)]
pub(crate) struct Running {
    /// Leader pid and group id.
    pub pid: u32,
    /// Leader start time in clock ticks since boot.
    pub start_ticks: u64,
    /// Its `$PORT`.
    pub port: u16,
    /// Its cgroup, if it has one.
    pub cgroup: Option<PathBuf>,
}

impl Replica {
    fn ready(&self) -> bool {
        self.phase == ReplicaPhase::Ready && !self.stopping
    }
}

/// A replica of a deployment that may receive traffic and is measured.
pub(crate) struct ReadyReplica {
    /// Which.
    pub id: ReplicaId,
    /// Its process group.
    pub pgid: u32,
}

impl Supervisor {
    /// A supervisor of `spec` with `desired` replicas wanted.
    pub fn new(
        key: DeploymentKey,
        spec: &DeploymentSpec,
        template: template::Result<Template>,
        desired: u32,
    ) -> Self {
        let supervisor = Self {
            key,
            inner: Mutex::new(Inner {
                template: None,
                version: 0,
                problem: None,
                enabled: spec.enabled,
                desired,
                removed: false,
                strategy: spec.rollout.strategy,
                grace: spec.termination_grace_period.get(),
                max_memory: None,
                replicas: BTreeMap::new(),
                next_seq: 0,
            }),
            endpoints: watch::Sender::new(EndpointSet::default()),
        };
        supervisor.configure(spec, template);
        supervisor
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data that is still consistent enough to
        // stop replicas with; keep going rather than poison every later call.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a (possibly changed) spec; a changed template is a new version to roll out.
    pub fn configure(&self, spec: &DeploymentSpec, template: template::Result<Template>) {
        let mut inner = self.lock();
        inner.removed = false;
        inner.enabled = spec.enabled;
        if !spec.enabled {
            inner.desired = 0;
        }
        inner.strategy = spec.rollout.strategy;
        inner.grace = spec.termination_grace_period.get();
        match template {
            Ok(template) => {
                inner.max_memory = template.limits.max_memory;
                inner.problem = None;
                if inner.template.as_deref() != Some(&template) {
                    inner.version += 1;
                    inner.template = Some(Arc::new(template));
                }
            }
            // A disabled deployment runs nothing, so what it would need to run is no problem yet.
            Err(_) if !spec.enabled => inner.problem = None,
            Err(e) => {
                // The replicas of the last good spec keep running; nothing new starts.
                inner.problem = Some(e.to_string());
            }
        }
    }

    /// The deployment left the specs: its replicas are drained and stopped.
    pub fn remove(&self) {
        let mut inner = self.lock();
        inner.removed = true;
        inner.desired = 0;
    }

    /// Whether it left the specs.
    pub fn is_removed(&self) -> bool {
        self.lock().removed
    }

    /// Whether it left the specs and every replica is gone.
    pub fn is_finished(&self) -> bool {
        let inner = self.lock();
        inner.removed && inner.replicas.is_empty()
    }

    /// Asks for `replicas`; a disabled deployment stays at zero. Whether anything changed.
    pub fn set_desired(&self, replicas: u32) -> bool {
        let mut inner = self.lock();
        if !inner.enabled || inner.removed || inner.desired == replicas {
            return false;
        }
        inner.desired = replicas;
        true
    }

    /// The termination grace period.
    pub fn grace(&self) -> Duration {
        self.lock().grace
    }

    /// `maxMemory` in bytes, if set.
    pub fn max_memory(&self) -> Option<u64> {
        self.lock().max_memory
    }

    /// The endpoint set, as it changes.
    pub fn subscribe(&self) -> watch::Receiver<EndpointSet> {
        self.endpoints.subscribe()
    }

    /// Changes one replica's record and publishes the endpoint set if that changed it.
    pub fn update(&self, id: &ReplicaId, change: impl FnOnce(&mut Replica)) {
        let mut inner = self.lock();
        if let Some(replica) = inner.replicas.get_mut(id) {
            change(replica);
        }
        self.publish(&inner);
    }

    /// Records a readiness change; a replica chosen to stop stays out of the set.
    pub fn set_ready(&self, id: &ReplicaId, ready: bool) {
        self.update(id, |r| {
            if !r.stopping {
                r.phase = if ready {
                    ReplicaPhase::Ready
                } else {
                    ReplicaPhase::Unready
                };
            }
        });
    }

    /// Takes a replica out of the endpoint set after its process failed.
    pub fn fail(&self, id: &ReplicaId) {
        self.update(id, |r| {
            if !r.stopping {
                r.phase = ReplicaPhase::Unready;
            }
        });
    }

    /// Forgets a replica whose task has ended.
    pub fn forget(&self, id: &ReplicaId) {
        let mut inner = self.lock();
        inner.replicas.remove(id);
        self.publish(&inner);
    }

    /// Stops every replica, for shutdown.
    pub fn stop_all(&self) {
        let mut inner = self.lock();
        for replica in inner.replicas.values_mut() {
            mark_stopping(replica);
        }
        self.publish(&inner);
    }

    /// The ready replicas, for metrics.
    pub fn ready_replicas(&self) -> Vec<ReadyReplica> {
        let inner = self.lock();
        inner
            .replicas
            .iter()
            .filter(|(_, r)| r.ready())
            .filter_map(|(id, r)| {
                Some(ReadyReplica {
                    id: id.clone(),
                    pgid: r.process.as_ref()?.pid,
                })
            })
            .collect()
    }

    /// What is persisted of it.
    pub fn snapshot(&self) -> state::DeploymentState {
        let inner = self.lock();
        let mut replicas: Vec<_> = inner.replicas.iter().collect();
        replicas.sort_by_key(|(_, r)| r.index);
        state::DeploymentState {
            enabled: inner.enabled && !inner.removed,
            desired: inner.desired,
            replicas: replicas
                .into_iter()
                .filter_map(|(id, r)| {
                    let p = r.process.as_ref()?;
                    Some(state::ProcessState {
                        id: id.to_string(),
                        pid: p.pid,
                        pgid: p.pid,
                        start_time_ticks: p.start_ticks,
                        port: p.port,
                        cgroup: p.cgroup.clone(),
                    })
                })
                .collect(),
        }
    }

    /// Its status.
    pub fn status(&self, limits: &Limits) -> BackendStatus {
        let inner = self.lock();
        let mut replicas: Vec<_> = inner.replicas.iter().collect();
        replicas.sort_by_key(|(_, r)| r.index);
        let now = Instant::now();
        let crash_loop = replicas.iter().find_map(|(_, r)| {
            (r.phase == ReplicaPhase::BackingOff && !r.stopping).then(|| {
                let wait = r
                    .retry_at
                    .map(|at| at.saturating_duration_since(now))
                    .unwrap_or_default();
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                format!(
                    "crash loop: {}, retrying in {secs}s",
                    r.last_failure.as_deref().unwrap_or("failed")
                )
            })
        });
        BackendStatus {
            desired: effective_desired(&inner),
            ready: replicas.iter().filter(|(_, r)| r.ready()).count() as u32,
            replicas: replicas
                .iter()
                .map(|(id, r)| ReplicaStatus {
                    id: (*id).clone(),
                    phase: r.phase,
                    pid: r.process.as_ref().map(|p| p.pid),
                    addr: r.process.as_ref().map(|p| address(p.port)),
                    restarts: r.restarts,
                    last_failure: r.last_failure.clone(),
                })
                .collect(),
            limits: inner.template.as_ref().map(|t| limits.describe(&t.limits)),
            problem: inner.problem.clone().or(crash_loop),
        }
    }

    fn publish(&self, inner: &Inner) {
        let set = EndpointSet::new(
            inner
                .replicas
                .iter()
                .filter(|(_, r)| r.ready())
                .filter_map(|(id, r)| {
                    Some(Endpoint {
                        replica: id.clone(),
                        addr: address(r.process.as_ref()?.port),
                    })
                })
                .collect(),
        );
        self.endpoints.send_if_modified(|current| {
            if *current == set {
                false
            } else {
                *current = set;
                true
            }
        });
    }
}

fn address(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn effective_desired(inner: &Inner) -> u32 {
    if inner.enabled && !inner.removed {
        inner.desired
    } else {
        0
    }
}

fn mark_stopping(replica: &mut Replica) {
    replica.stopping = true;
    replica.phase = ReplicaPhase::Draining;
    replica.stop.cancel();
}

/// A candidate for stopping.
struct Candidate {
    id: ReplicaId,
    ready: bool,
    seq: u64,
}

/// The `n` replicas to stop: not-ready ones first, then the newest.
fn pick(mut candidates: Vec<&Candidate>, n: usize) -> Vec<ReplicaId> {
    candidates.sort_by_key(|c| (c.ready, std::cmp::Reverse(c.seq)));
    candidates
        .into_iter()
        .take(n)
        .map(|c| c.id.clone())
        .collect()
}

/// What [`reconcile`] does to a deployment's replicas.
#[derive(Debug, PartialEq)]
struct Plan {
    /// Replicas to drain and stop.
    stop: Vec<ReplicaId>,
    /// How many replicas of the current version to start.
    start: usize,
}

/// Decides which replicas to stop and how many to start, given `want` replicas, the replicas of
/// the current version (`cur`) and of older ones (`old`) that are not stopping already, and
/// whether any older one still runs at all (`old_remains`, stopping ones included).
fn plan(
    want: usize,
    strategy: RolloutStrategy,
    can_start: bool,
    old_remains: bool,
    cur: &[Candidate],
    old: &[Candidate],
) -> Plan {
    let ids = |c: &[Candidate]| c.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
    if want == 0 {
        let mut stop = ids(cur);
        stop.extend(ids(old));
        return Plan { stop, start: 0 };
    }
    if strategy == RolloutStrategy::Safe && old_remains {
        // Never two versions at once: the new one starts when the last old one is gone.
        let mut stop = ids(old);
        stop.extend(pick(cur.iter().collect(), cur.len().saturating_sub(want)));
        return Plan { stop, start: 0 };
    }
    let cur_ready = cur.iter().filter(|c| c.ready).count();
    // Old replicas go only as new ones are ready to take their place.
    let keep_old = want.saturating_sub(cur_ready).min(old.len());
    let mut stop = pick(old.iter().collect(), old.len() - keep_old);
    let mut start = 0;
    if cur.len() > want {
        stop.extend(pick(cur.iter().collect(), cur.len() - want));
    } else if can_start {
        // Fill the gap in capacity at once; during a rollout add one replica beyond it at a
        // time, so a version that does not start does not eat the machine.
        let mut running = cur.len();
        let mut starting = cur.len() - cur_ready;
        while running < want && (running + keep_old < want || starting == 0) {
            start += 1;
            running += 1;
            starting += 1;
        }
    }
    Plan { stop, start }
}

/// Brings the deployment's replicas in line with what is wanted; see the module docs.
pub(crate) fn reconcile(shared: &Arc<Shared>, supervisor: &Arc<Supervisor>) {
    let mut starts = Vec::new();
    {
        let mut inner = supervisor.lock();
        let shutting_down = shared.is_shutting_down();
        let want = if shutting_down {
            0
        } else {
            effective_desired(&inner) as usize
        };
        let current = inner.template.as_ref().map(|_| inner.version);
        let is_current = |version: u64| current.is_none_or(|v| v == version);
        let old_remains = inner.replicas.values().any(|r| !is_current(r.version));
        let mut cur = Vec::new();
        let mut old = Vec::new();
        for (id, r) in inner.replicas.iter().filter(|(_, r)| !r.stopping) {
            let candidate = Candidate {
                id: id.clone(),
                ready: r.ready(),
                seq: r.seq,
            };
            if is_current(r.version) {
                cur.push(candidate);
            } else {
                old.push(candidate);
            }
        }
        let Plan { stop, start } = plan(
            want,
            inner.strategy,
            inner.template.is_some(),
            old_remains,
            &cur,
            &old,
        );
        for id in &stop {
            if let Some(replica) = inner.replicas.get_mut(id) {
                mark_stopping(replica);
            }
        }
        if !shutting_down && let Some(template) = inner.template.clone() {
            for _ in 0..start {
                let index = (1..)
                    .find(|i| !inner.replicas.values().any(|r| r.index == *i))
                    .unwrap_or(u32::MAX);
                let id = ReplicaId::new(format!("{}-{index}", supervisor.key));
                let stop = CancellationToken::new();
                inner.next_seq += 1;
                let replica = Replica {
                    index,
                    seq: inner.next_seq,
                    version: inner.version,
                    phase: ReplicaPhase::Starting,
                    process: None,
                    restarts: 0,
                    last_failure: None,
                    retry_at: None,
                    stopping: false,
                    stop: stop.clone(),
                };
                inner.replicas.insert(id.clone(), replica);
                starts.push((id, template.clone(), stop));
            }
        }
        supervisor.publish(&inner);
    }
    for (id, template, stop) in starts {
        shared.tasks.spawn(replica::run(replica::ReplicaTask {
            shared: shared.clone(),
            supervisor: supervisor.clone(),
            id,
            template,
            stop,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: &str, ready: bool, seq: u64) -> Candidate {
        Candidate {
            id: ReplicaId::new(id),
            ready,
            seq,
        }
    }

    #[test]
    fn scale_down_stops_not_ready_replicas_first_then_the_newest() {
        let all = [
            candidate("a-1", true, 1),
            candidate("a-2", false, 2),
            candidate("a-3", true, 3),
            candidate("a-4", true, 4),
        ];
        let ids = |n| {
            pick(all.iter().collect(), n)
                .into_iter()
                .map(|id| id.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(1), ["a-2"]);
        assert_eq!(ids(3), ["a-2", "a-4", "a-3"]);
    }

    fn plan_ids(
        want: usize,
        strategy: RolloutStrategy,
        cur: &[Candidate],
        old: &[Candidate],
    ) -> (Vec<String>, usize) {
        let p = plan(want, strategy, true, !old.is_empty(), cur, old);
        (p.stop.iter().map(ToString::to_string).collect(), p.start)
    }

    #[test]
    fn scaling_starts_or_stops_the_difference() {
        let rolling = RolloutStrategy::Rolling;
        assert_eq!(plan_ids(3, rolling, &[], &[]), (vec![], 3));
        let cur = [candidate("a-1", true, 1), candidate("a-2", true, 2)];
        assert_eq!(plan_ids(2, rolling, &cur, &[]), (vec![], 0));
        assert_eq!(plan_ids(1, rolling, &cur, &[]), (vec!["a-2".to_owned()], 0));
        assert_eq!(
            plan_ids(0, rolling, &cur, &[]),
            (vec!["a-1".to_owned(), "a-2".to_owned()], 0)
        );
        let no_template = plan(2, rolling, false, false, &[], &[]);
        assert_eq!(
            no_template,
            Plan {
                stop: vec![],
                start: 0
            }
        );
    }

    #[test]
    fn a_rolling_update_replaces_one_replica_at_a_time_without_losing_capacity() {
        let rolling = RolloutStrategy::Rolling;
        let old = [candidate("a-1", true, 1), candidate("a-2", true, 2)];
        // One new replica beyond the two old ones.
        assert_eq!(plan_ids(2, rolling, &[], &old), (vec![], 1));
        // Not ready yet: nothing more.
        let starting = [candidate("a-3", false, 3)];
        assert_eq!(plan_ids(2, rolling, &starting, &old), (vec![], 0));
        // Ready: the newest old one goes, the next new one starts.
        let one_ready = [candidate("a-3", true, 3)];
        assert_eq!(
            plan_ids(2, rolling, &one_ready, &old),
            (vec!["a-2".to_owned()], 1)
        );
        // Both new ones ready: the last old one goes.
        let both = [candidate("a-3", true, 3), candidate("a-4", true, 4)];
        assert_eq!(
            plan_ids(2, rolling, &both, &old[..1]),
            (vec!["a-1".to_owned()], 0)
        );
        // Scaling up during a rollout fills the gap at once.
        assert_eq!(plan_ids(3, rolling, &[], &old[..1]), (vec![], 2));
    }

    #[test]
    fn a_safe_update_stops_every_old_replica_before_starting_new_ones() {
        let safe = RolloutStrategy::Safe;
        let old = [candidate("a-1", true, 1), candidate("a-2", true, 2)];
        assert_eq!(
            plan_ids(2, safe, &[], &old),
            (vec!["a-1".to_owned(), "a-2".to_owned()], 0)
        );
        // Old ones still stopping: wait.
        assert_eq!(
            plan(2, safe, true, true, &[], &[]),
            Plan {
                stop: vec![],
                start: 0
            }
        );
        // All gone: start.
        assert_eq!(
            plan(2, safe, true, false, &[], &[]),
            Plan {
                stop: vec![],
                start: 2
            }
        );
    }
}
