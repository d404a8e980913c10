//! Cpu and memory of ready replicas, from /proc: the embedded backend's
//! [`lull_core::MetricSource`].
//!
//! A replica is its whole process group, so a server's workers count with it. Cpu is the group's
//! cpu time between two samples over the wall time between them, in percent of one core (a
//! replica busy on two cores shows 200); a replica's first sample has nothing to compare with and
//! gives no cpu figure. Memory is the group's resident set over `maxMemory`, or over the machine's
//! memory when the spec sets no limit. Each deployment's figure is the average over its replicas
//! that have one; a metric no replica has is left out, so the autoscaler never scales down on it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use lull_core::{
    BoxFuture, DeploymentKey, MetricSource, ReplicaId, ResourceMetric, ResourceSample,
};
use procfs::Current;
use tokio::time::Instant;

use crate::backend::LocalBackend;

/// Shortest time between two cpu readings that is compared: below it the clock-tick granularity
/// of /proc makes the figure noise, so the older reading is kept for the next sample.
const MIN_WINDOW: Duration = Duration::from_millis(500);

/// A replica's cpu time at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuReading {
    pgid: u32,
    ticks: u64,
    at: Instant,
}

/// What /proc says of one process group.
#[derive(Debug, Default, Clone, Copy)]
struct GroupUsage {
    /// User and system time of its processes and of the children they reaped, in clock ticks.
    ticks: u64,
    /// Resident pages.
    rss_pages: u64,
}

/// Sums cpu time and resident memory of every process in `groups`; also the machine's memory.
fn scan(groups: &HashSet<u32>) -> (HashMap<u32, GroupUsage>, Option<u64>) {
    let mut usage: HashMap<u32, GroupUsage> = HashMap::new();
    if let Ok(all) = procfs::process::all_processes() {
        for stat in all.filter_map(|p| p.ok()?.stat().ok()) {
            let Ok(pgrp) = u32::try_from(stat.pgrp) else {
                continue;
            };
            if !groups.contains(&pgrp) {
                continue;
            }
            let group = usage.entry(pgrp).or_default();
            // A child's time moves into its parent's cutime/cstime when reaped, so counting both
            // keeps the group's total steady as short-lived children come and go.
            let children = u64::try_from(stat.cutime + stat.cstime).unwrap_or(0);
            group.ticks += stat.utime + stat.stime + children;
            group.rss_pages += stat.rss;
        }
    }
    let total = procfs::Meminfo::current().ok().map(|m| m.mem_total);
    (usage, total)
}

fn average(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

impl MetricSource for LocalBackend {
    fn sample<'a>(
        &'a self,
        keys: &'a [DeploymentKey],
    ) -> BoxFuture<'a, lull_core::Result<BTreeMap<DeploymentKey, Vec<ResourceSample>>>> {
        Box::pin(async move {
            let shared = self.shared();
            let wanted: Vec<_> = keys
                .iter()
                .filter_map(|key| {
                    let supervisor = shared.supervisor(key)?;
                    Some((
                        key.clone(),
                        supervisor.ready_replicas(),
                        supervisor.max_memory(),
                    ))
                })
                .collect();
            let groups: HashSet<u32> = wanted
                .iter()
                .flat_map(|(_, replicas, _)| replicas.iter().map(|r| r.pgid))
                .collect();
            let (usage, total_memory) = tokio::task::spawn_blocking(move || scan(&groups))
                .await
                .map_err(|e| lull_core::Error::Unavailable {
                    what: "reading /proc".to_owned(),
                    message: e.to_string(),
                    source: Some(Box::new(e)),
                })?;
            let now = Instant::now();
            let ticks_per_second = procfs::ticks_per_second() as f64;
            let page_size = procfs::page_size();
            let mut readings = shared
                .cpu
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Readings of deployments that are gone are not needed again.
            readings.retain(|key, _| shared.supervisor(key).is_some());
            let mut samples = BTreeMap::new();
            for (key, replicas, max_memory) in wanted {
                let previous = readings.remove(&key).unwrap_or_default();
                let mut kept: HashMap<ReplicaId, CpuReading> = HashMap::new();
                let mut cpu = Vec::new();
                let mut memory = Vec::new();
                for replica in replicas {
                    let Some(group) = usage.get(&replica.pgid) else {
                        continue;
                    };
                    let reading = CpuReading {
                        pgid: replica.pgid,
                        ticks: group.ticks,
                        at: now,
                    };
                    let reading = match previous.get(&replica.id) {
                        Some(before) if before.pgid == replica.pgid => {
                            let window = now.saturating_duration_since(before.at);
                            if window < MIN_WINDOW {
                                *before
                            } else {
                                let used = group.ticks.saturating_sub(before.ticks) as f64
                                    / ticks_per_second;
                                cpu.push(used / window.as_secs_f64() * 100.0);
                                reading
                            }
                        }
                        _ => reading,
                    };
                    kept.insert(replica.id, reading);
                    if let Some(limit) = max_memory.or(total_memory).filter(|l| *l > 0) {
                        let rss = group.rss_pages * page_size;
                        memory.push(rss as f64 / limit as f64 * 100.0);
                    }
                }
                readings.insert(key.clone(), kept);
                let mut found = Vec::new();
                for (metric, values) in
                    [(ResourceMetric::Cpu, cpu), (ResourceMetric::Memory, memory)]
                {
                    if !values.is_empty() {
                        found.push(ResourceSample {
                            metric,
                            percent: average(&values),
                            replicas: values.len() as u32,
                        });
                    }
                }
                if !found.is_empty() {
                    samples.insert(key, found);
                }
            }
            Ok(samples)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_group_has_cpu_time_and_memory() {
        let pgid = u32::try_from(nix::unistd::getpgrp().as_raw()).expect("positive");
        let (usage, total) = scan(&HashSet::from([pgid]));
        let group = usage.get(&pgid).expect("the test runs in its group");
        assert!(group.rss_pages > 0);
        assert!(total.is_some_and(|t| t > 0));
    }
}
