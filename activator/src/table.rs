//! The live route table: one immutable [`Table`] per `apply`, swapped whole, so a request reads
//! one consistent view without a lock. Each deployment's [`DeploymentState`] (parked requests,
//! statistics, replica counters) is carried from table to table while its key stays routed.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use lull_core::{DeploymentKey, EndpointSet, Wake};
use tokio::sync::watch;

use crate::Route;
use crate::balance::{Balancer, Replicas};
use crate::forward::{Forwarder, Limits};
use crate::parking::{Lane, ParkingQueue};
use crate::router::{Names, Router};
use crate::stats::Stats;

/// What outlives a route table: one deployment's live state.
pub(crate) struct DeploymentState {
    /// Request statistics.
    pub stats: Arc<Stats>,
    /// Where requests wait while nothing is ready.
    pub parking: Arc<ParkingQueue>,
    /// Replica choice.
    pub balancer: Balancer,
}

impl fmt::Debug for DeploymentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeploymentState")
            .field("stats", &self.stats)
            .field("parked", &self.parking.parked())
            .finish_non_exhaustive()
    }
}

/// One routed deployment as of one `apply`.
#[derive(Debug)]
pub(crate) struct Target {
    /// The deployment.
    pub key: DeploymentKey,
    /// `enabled` of its spec.
    pub enabled: bool,
    /// `activator.queueTimeout`.
    pub queue_timeout: Duration,
    /// Its ready endpoints.
    pub endpoints: watch::Receiver<EndpointSet>,
    /// How requests reach its replicas.
    pub forwarder: Forwarder,
    /// Its live state.
    pub state: Arc<DeploymentState>,
}

/// Every routed deployment.
#[derive(Debug)]
pub(crate) struct Table {
    /// Host and path routes.
    pub router: Router<Arc<Target>>,
    /// By key.
    pub deployments: BTreeMap<DeploymentKey, Arc<Target>>,
}

impl Table {
    /// A table that routes nothing.
    pub fn empty(domain: Option<&str>) -> Self {
        Self {
            router: Router::new(domain),
            deployments: BTreeMap::new(),
        }
    }

    /// The table for `routes`, carrying over the state of keys routed in `previous`. Returns
    /// it with the states of the keys no longer routed.
    pub fn build(
        previous: &Table,
        routes: Vec<Route>,
        domain: Option<&str>,
        wake: &Arc<dyn Wake>,
        replicas: &Arc<Replicas>,
    ) -> (Table, Vec<Arc<DeploymentState>>) {
        let mut table = Table::empty(domain);
        for route in routes {
            let key = DeploymentKey::new(&route.deployment.slug);
            let Entry::Vacant(slot) = table.deployments.entry(key.clone()) else {
                tracing::warn!(deployment = %key, "routed twice; the first route stays");
                continue;
            };
            let spec = &route.deployment.spec;
            let settings = &spec.activator;
            let limits = Limits {
                connect_timeout: settings.timeouts.connect.get(),
                response_header_timeout: settings.timeouts.response_header.get(),
                max_request_body: usize::try_from(settings.max_request_body.ceil_u64())
                    .unwrap_or(usize::MAX),
            };
            let lane = Lane {
                enabled: spec.enabled,
                capacity: settings.queue_capacity as usize,
                endpoints: route.endpoints.clone(),
            };
            let (state, forwarder) = match previous.deployments.get(&key) {
                Some(old) => {
                    old.state.parking.configure(lane);
                    (old.state.clone(), old.forwarder.with_limits(limits))
                }
                None => {
                    let state = DeploymentState {
                        stats: Arc::new(Stats::default()),
                        parking: Arc::new(ParkingQueue::new(key.clone(), wake.clone(), lane)),
                        balancer: Balancer::new(replicas.clone()),
                    };
                    (Arc::new(state), Forwarder::new(limits))
                }
            };
            let target = Arc::new(Target {
                key,
                enabled: spec.enabled,
                queue_timeout: settings.queue_timeout.get(),
                endpoints: route.endpoints,
                forwarder,
                state,
            });
            table.router.add(
                &Names {
                    slug: &route.deployment.slug,
                    aliases: &spec.aliases,
                    path_prefix: spec.routing.path_prefix.as_deref(),
                    rewrite_path: spec.routing.rewrite_path,
                    hosts: &spec.routing.hosts,
                },
                target.clone(),
            );
            slot.insert(target);
        }
        let removed = previous
            .deployments
            .iter()
            .filter(|(key, _)| !table.deployments.contains_key(*key))
            .map(|(_, target)| target.state.clone())
            .collect();
        (table, removed)
    }
}
