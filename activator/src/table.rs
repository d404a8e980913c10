//! The live route table: one immutable [`Table`] per `apply`, swapped whole, so a request reads
//! one consistent view without a lock. Each deployment's [`DeploymentState`] (parked requests,
//! statistics, replica choice, capacity waiters) is carried from table to table while its key
//! stays routed; so are its rate-limit buckets while its limits stay the same.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use lull_core::{DeploymentKey, EndpointSet, Wake};
use lull_spec::secret::{ConfigValue, Secret, SecretStore};
use lull_spec::{DeploymentSpec, Probe as ProbeSpec};
use tokio::sync::watch;

use crate::Route;
use crate::auth::Guard;
use crate::balance::sticky::Sticky;
use crate::balance::{Balancer, Policy, Replicas};
use crate::concurrency::Gate;
use crate::forward::Limits;
use crate::health::Probe;
use crate::parking::{Lane, ParkingQueue};
use crate::ratelimit::Limiter;
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
    /// Where requests wait while every replica is at its concurrency limit.
    pub gate: Arc<Gate>,
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
    /// Timeouts and the body limit.
    pub limits: Limits,
    /// `loadBalancing.policy`.
    pub policy: Policy,
    /// `loadBalancing.stickySessions`, when enabled.
    pub sticky: Option<Sticky>,
    /// `activator.containerConcurrency`; 0 is unlimited.
    pub concurrency: usize,
    /// Who may call it.
    pub auth: Guard,
    /// `activator.rateLimit`, when set.
    pub limiter: Option<Arc<Limiter>>,
    /// How an ejected replica is probed.
    pub probe: Option<Arc<Probe>>,
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

/// What building a table needs besides the routes.
pub(crate) struct Context<'a> {
    /// `Host: <name>.<domain>` routing.
    pub domain: Option<&'a str>,
    /// Wakes deployments at zero.
    pub wake: &'a Arc<dyn Wake>,
    /// The replicas every deployment shares.
    pub replicas: &'a Arc<Replicas>,
    /// Resolves `secret:NAME` in `basicAuthKey` and probe headers.
    pub secrets: Option<&'a dyn SecretStore>,
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
        cx: &Context<'_>,
    ) -> (Table, Vec<Arc<DeploymentState>>) {
        let mut table = Table::empty(cx.domain);
        for route in routes {
            let key = DeploymentKey::new(&route.deployment.slug);
            let Entry::Vacant(slot) = table.deployments.entry(key.clone()) else {
                tracing::warn!(deployment = %key, "routed twice; the first route stays");
                continue;
            };
            let spec = &route.deployment.spec;
            let settings = &spec.activator;
            let lane = Lane {
                enabled: spec.enabled,
                capacity: settings.queue_capacity as usize,
                endpoints: route.endpoints.clone(),
            };
            let old = previous.deployments.get(&key);
            let state = match old {
                Some(old) => {
                    old.state.parking.configure(lane);
                    old.state.clone()
                }
                None => Arc::new(DeploymentState {
                    stats: Arc::new(Stats::default()),
                    parking: Arc::new(ParkingQueue::new(key.clone(), cx.wake.clone(), lane)),
                    balancer: Balancer::new(cx.replicas.clone()),
                    gate: Arc::new(Gate::default()),
                }),
            };
            let limiter = old
                .and_then(|old| old.limiter.clone())
                .filter(|l| l.implements(&settings.rate_limit))
                .or_else(|| Limiter::new(&settings.rate_limit).map(Arc::new));
            let sticky = &spec.load_balancing.sticky_sessions;
            let target = Arc::new(Target {
                enabled: spec.enabled,
                queue_timeout: settings.queue_timeout.get(),
                endpoints: route.endpoints,
                limits: Limits {
                    connect: settings.timeouts.connect.get(),
                    response_header: settings.timeouts.response_header.get(),
                    idle: settings.timeouts.idle.get(),
                    total: settings.timeouts.total.map(|t| t.get()),
                    max_request_body: usize::try_from(settings.max_request_body.ceil_u64())
                        .unwrap_or(usize::MAX),
                },
                policy: spec.load_balancing.policy.into(),
                sticky: sticky.enabled.then(|| Sticky {
                    cookie: sticky.cookie_name.as_str().into(),
                    max_age: sticky.ttl.get().as_secs(),
                }),
                concurrency: settings.container_concurrency as usize,
                auth: guard(&key, spec, cx.secrets),
                limiter,
                probe: probe(&key, spec, cx.secrets).map(Arc::new),
                state,
                key,
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

/// A spec value with its secret resolved; `None` (logged) when the secret cannot be read.
fn resolve(
    key: &DeploymentKey,
    field: &str,
    value: &ConfigValue,
    secrets: Option<&dyn SecretStore>,
) -> Option<Secret> {
    let name = match value {
        ConfigValue::Plain(text) => return Some(Secret::new(text.as_str())),
        ConfigValue::Secret(name) => name,
    };
    match secrets.map(|store| store.get(name)) {
        Some(Ok(Some(secret))) => Some(secret),
        Some(Ok(None)) | None => {
            tracing::warn!(deployment = %key, field, secret = %name, "the secret is not in any store");
            None
        }
        Some(Err(error)) => {
            tracing::warn!(deployment = %key, field, secret = %name, %error, "cannot read the secret");
            None
        }
    }
}

fn guard(key: &DeploymentKey, spec: &DeploymentSpec, secrets: Option<&dyn SecretStore>) -> Guard {
    let Some(value) = &spec.basic_auth_key else {
        return Guard::Open;
    };
    if spec.is_external {
        return Guard::Open;
    }
    match resolve(key, "basicAuthKey", value, secrets) {
        Some(secret) => Guard::Key(secret),
        None => Guard::Unavailable(value.to_string()),
    }
}

/// The readiness probe as the activator runs it on an ejected replica: HTTP probes only (a
/// command probe runs inside the replica, which the activator cannot do; a TCP connect stands in).
fn probe(
    key: &DeploymentKey,
    spec: &DeploymentSpec,
    secrets: Option<&dyn SecretStore>,
) -> Option<Probe> {
    let readiness: &ProbeSpec = spec.health_checks.readiness.as_ref()?;
    let path = readiness.path.as_deref()?.parse().ok()?;
    let mut headers = Vec::with_capacity(readiness.headers.len());
    for header in &readiness.headers {
        let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        let value = resolve(
            key,
            "healthChecks.readiness.headers",
            &header.value,
            secrets,
        )?;
        let mut value = HeaderValue::from_str(value.expose()).ok()?;
        value.set_sensitive(true);
        headers.push((name, value));
    }
    Some(Probe {
        path,
        host: readiness
            .host
            .as_deref()
            .and_then(|h| HeaderValue::from_str(h).ok()),
        headers,
        timeout: Duration::from_secs(u64::from(readiness.timeout_seconds.max(1))),
    })
}
