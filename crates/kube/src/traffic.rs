//! Traffic from every activator pod, for the autoscaler.
//!
//! On Kubernetes several activator pods share the traffic, so the autoscaler sees a
//! deployment's load only by adding theirs up. Each activator answers `GET /v1/traffic` on its
//! admin port with a [`TrafficReport`]: per deployment, what it saw since the previous call
//! ([`report`] builds it from the activator's [`TrafficSource`]). [`ActivatorTraffic`] finds the
//! activator pods through their Service's EndpointSlices, asks each of them every scrape
//! period, adds the reports up, and is itself the autoscaler's [`TrafficSource`]: counters
//! (arrivals, concurrency integral, latencies) accumulate until the autoscaler takes them;
//! gauges (in flight, parked) are the latest sum.
//!
//! Only the leading autoscaler scrapes: a report resets the activator's counters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lull_core::{DeploymentKey, EndpointSet, LatencyHistogram, TrafficSnapshot, TrafficSource};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Path of the activator's traffic report.
pub const TRAFFIC_PATH: &str = "/v1/traffic";

/// Name of the activator Service's admin port, where the report is served.
pub const ADMIN_PORT_NAME: &str = "admin";

/// Longest wait for one activator's report.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(1);

/// Largest report read; a report is a few hundred bytes per deployment.
const MAX_REPORT_BYTES: usize = 8 * 1024 * 1024;

/// Most requests one latency bucket of a report may claim, so a corrupt report cannot make
/// the autoscaler record for minutes.
const MAX_BUCKET_COUNT: u64 = 10_000_000;

/// Errors of asking one activator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No answer, or not a 200.
    #[error("activator {addr}: {message}")]
    Unreachable {
        /// The pod's admin address.
        addr: std::net::SocketAddr,
        /// What went wrong.
        message: String,
    },
    /// The answer is not a report.
    #[error("activator {addr} sent a report that does not parse")]
    Invalid {
        /// The pod's admin address.
        addr: std::net::SocketAddr,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
}

/// What one activator saw since the previous report, per deployment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficReport {
    /// By deployment name.
    pub deployments: BTreeMap<String, Snapshot>,
}

/// One deployment's traffic in a report: [`TrafficSnapshot`] in JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Requests in flight to replicas now.
    pub in_flight: u32,
    /// Requests waiting for a replica now.
    pub parked: u32,
    /// Requests that arrived since the previous report.
    pub arrived: u64,
    /// Integral of requests in flight or parked over the interval, in request-seconds.
    pub concurrency_seconds: f64,
    /// Latencies of requests completed in the interval: `[microseconds, count]` per bucket.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency: Vec<[u64; 2]>,
}

impl From<&TrafficSnapshot> for Snapshot {
    fn from(s: &TrafficSnapshot) -> Self {
        Self {
            in_flight: s.in_flight,
            parked: s.parked,
            arrived: s.arrived,
            concurrency_seconds: s.concurrency_seconds,
            latency: s.latency.recorded().map(|(v, n)| [v, n]).collect(),
        }
    }
}

impl Snapshot {
    /// Back into the autoscaler's form.
    pub fn to_core(&self) -> TrafficSnapshot {
        let mut latency = LatencyHistogram::default();
        for [micros, count] in &self.latency {
            for _ in 0..(*count).min(MAX_BUCKET_COUNT) {
                latency.record(*micros);
            }
        }
        TrafficSnapshot {
            in_flight: self.in_flight,
            parked: self.parked,
            arrived: self.arrived,
            concurrency_seconds: if self.concurrency_seconds.is_finite() {
                self.concurrency_seconds.max(0.0)
            } else {
                0.0
            },
            latency,
        }
    }
}

/// An activator's report on `keys`: takes a snapshot of each, which starts a new interval.
pub fn report<'a>(
    source: &dyn TrafficSource,
    keys: impl IntoIterator<Item = &'a DeploymentKey>,
) -> TrafficReport {
    TrafficReport {
        deployments: keys
            .into_iter()
            .filter_map(|key| {
                let snapshot = source.take_snapshot(key)?;
                Some((key.to_string(), Snapshot::from(&snapshot)))
            })
            .collect(),
    }
}

#[derive(Debug, Default)]
struct Pending {
    /// Counters since the autoscaler last took them; its gauges are unused.
    counters: TrafficSnapshot,
    in_flight: u32,
    parked: u32,
}

/// The activators' traffic added up; the autoscaler's [`TrafficSource`] on Kubernetes.
pub struct ActivatorTraffic {
    activators: watch::Receiver<EndpointSet>,
    http: HttpClient<HttpConnector, Empty<Bytes>>,
    pending: Mutex<BTreeMap<DeploymentKey, Pending>>,
}

impl std::fmt::Debug for ActivatorTraffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivatorTraffic")
            .field("activators", &self.activators.borrow().len())
            .finish_non_exhaustive()
    }
}

impl ActivatorTraffic {
    /// Scrapes the activators whose admin endpoints `activators` lists.
    pub fn new(activators: watch::Receiver<EndpointSet>) -> Arc<Self> {
        Arc::new(Self {
            activators,
            http: HttpClient::builder(TokioExecutor::new()).build_http(),
            pending: Mutex::new(BTreeMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<DeploymentKey, Pending>> {
        // Each update is complete before the guard drops.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds one round of reports, one per activator that answered.
    pub fn merge(&self, reports: &[TrafficReport]) {
        let mut pending = self.lock();
        for p in pending.values_mut() {
            p.in_flight = 0;
            p.parked = 0;
        }
        for report in reports {
            for (name, snapshot) in &report.deployments {
                let p = pending.entry(DeploymentKey::new(name)).or_default();
                p.counters.merge(&snapshot.to_core());
                p.in_flight = p.in_flight.saturating_add(snapshot.in_flight);
                p.parked = p.parked.saturating_add(snapshot.parked);
            }
        }
        // Deployments no activator reports any more are forgotten once taken.
        let reported: std::collections::BTreeSet<&String> =
            reports.iter().flat_map(|r| r.deployments.keys()).collect();
        pending.retain(|key, p| reported.contains(&key.to_string()) || p.counters.arrived > 0);
    }

    /// Asks one activator for its report.
    pub async fn fetch(&self, addr: std::net::SocketAddr) -> Result<TrafficReport, Error> {
        let unreachable = |message: String| Error::Unreachable { addr, message };
        let uri: http::Uri = format!("http://{addr}{TRAFFIC_PATH}")
            .parse()
            .map_err(|e: http::uri::InvalidUri| unreachable(e.to_string()))?;
        let response = tokio::time::timeout(SCRAPE_TIMEOUT, self.http.get(uri))
            .await
            .map_err(|_| unreachable("no answer within 1 s".to_owned()))?
            .map_err(|e| unreachable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unreachable(format!("answered {}", response.status())));
        }
        let body = tokio::time::timeout(
            SCRAPE_TIMEOUT,
            Limited::new(response.into_body(), MAX_REPORT_BYTES).collect(),
        )
        .await
        .map_err(|_| unreachable("the report took longer than 1 s".to_owned()))?
        .map_err(|e| unreachable(e.to_string()))?
        .to_bytes();
        serde_json::from_slice(&body).map_err(|source| Error::Invalid { addr, source })
    }

    /// One round: asks every ready activator at once and adds up the answers. An activator
    /// that does not answer keeps its counters for the next round.
    pub async fn scrape(&self) {
        let activators = self.activators.borrow().clone();
        let answers =
            futures::future::join_all(activators.endpoints().iter().map(|a| self.fetch(a.addr)))
                .await;
        let mut reports = Vec::with_capacity(answers.len());
        for answer in answers {
            match answer {
                Ok(report) => reports.push(report),
                Err(error) => tracing::warn!(%error, "no traffic report this round"),
            }
        }
        self.merge(&reports);
    }

    /// Scrapes every `period` until `shutdown`.
    pub async fn run(self: Arc<Self>, period: Duration, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => self.scrape().await,
            }
        }
    }
}

impl TrafficSource for ActivatorTraffic {
    fn take_snapshot(&self, key: &DeploymentKey) -> Option<TrafficSnapshot> {
        let mut pending = self.lock();
        let p = pending.get_mut(key)?;
        let mut snapshot = std::mem::take(&mut p.counters);
        snapshot.in_flight = p.in_flight;
        snapshot.parked = p.parked;
        Some(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use lull_core::{Endpoint, ReplicaId};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    struct Fixed(TrafficSnapshot);

    impl TrafficSource for Fixed {
        fn take_snapshot(&self, key: &DeploymentKey) -> Option<TrafficSnapshot> {
            (key.as_str() == "a").then(|| self.0.clone())
        }
    }

    fn snapshot(in_flight: u32, arrived: u64, seconds: f64, latencies: &[u64]) -> TrafficSnapshot {
        let mut latency = LatencyHistogram::default();
        for l in latencies {
            latency.record(*l);
        }
        TrafficSnapshot {
            in_flight,
            parked: 1,
            arrived,
            concurrency_seconds: seconds,
            latency,
        }
    }

    #[test]
    fn reports_round_trip_through_json() {
        let source = Fixed(snapshot(3, 10, 4.5, &[1_000, 1_000, 250_000]));
        let keys = [DeploymentKey::new("a"), DeploymentKey::new("gone")];
        let report = report(&source, &keys);
        assert_eq!(
            report.deployments.len(),
            1,
            "unknown deployments are left out"
        );
        let text = serde_json::to_string(&report).expect("serialises");
        let back: TrafficReport = serde_json::from_str(&text).expect("parses");
        let core = back.deployments["a"].to_core();
        assert_eq!((core.in_flight, core.parked, core.arrived), (3, 1, 10));
        assert_eq!(core.latency.count(), 3);
        let max = core.latency.max_secs().expect("recorded");
        assert!((max - 0.25).abs() < 0.01, "{max}");
    }

    #[test]
    fn counters_add_up_until_taken_and_gauges_are_the_latest_sum() {
        let (_sender, receiver) = watch::channel(EndpointSet::default());
        let traffic = ActivatorTraffic::new(receiver);
        let one = |s: TrafficSnapshot| TrafficReport {
            deployments: BTreeMap::from([("a".to_owned(), Snapshot::from(&s))]),
        };
        traffic.merge(&[
            one(snapshot(2, 5, 1.0, &[1_000])),
            one(snapshot(1, 3, 0.5, &[2_000])),
        ]);
        traffic.merge(&[one(snapshot(4, 2, 2.0, &[]))]);
        let taken = traffic.take_snapshot(&"a".into()).expect("reported");
        assert_eq!(taken.arrived, 10);
        assert!((taken.concurrency_seconds - 3.5).abs() < 1e-9);
        assert_eq!(taken.latency.count(), 2);
        assert_eq!(
            (taken.in_flight, taken.parked),
            (4, 1),
            "the latest round's gauges"
        );
        let again = traffic.take_snapshot(&"a".into()).expect("still known");
        assert_eq!(again.arrived, 0, "counters restart when taken");
        assert!(traffic.take_snapshot(&"b".into()).is_none());

        traffic.merge(&[]);
        assert!(
            traffic.take_snapshot(&"a".into()).is_none(),
            "no activator reports it"
        );
    }

    /// An activator stand-in that answers one request with `body`.
    async fn activator(body: String) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let addr = listener.local_addr().expect("an address");
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accepts");
            let mut request = [0u8; 1024];
            let n = stream.read(&mut request).await.expect("reads");
            let head = String::from_utf8_lossy(&request[..n]).to_string();
            assert!(head.starts_with("GET /v1/traffic HTTP/1.1"), "{head}");
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).await.expect("writes");
        });
        addr
    }

    #[tokio::test]
    async fn a_scrape_asks_every_activator_and_skips_the_silent_ones() {
        let a = activator(r#"{"deployments":{"m":{"inFlight":1,"parked":0,"arrived":4,"concurrencySeconds":2.0}}}"#.to_owned()).await;
        let b = activator(r#"{"deployments":{"m":{"inFlight":2,"parked":3,"arrived":6,"concurrencySeconds":1.0,"latency":[[5000,2]]}}}"#.to_owned()).await;
        // A closed port: that activator is gone.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds")
            .local_addr()
            .expect("an address");
        let pod = |name: &str, addr| Endpoint {
            replica: ReplicaId::new(name),
            addr,
        };
        let (_sender, receiver) = watch::channel(EndpointSet::new(vec![
            pod("activator-a", a),
            pod("activator-b", b),
            pod("activator-c", silent),
        ]));
        let traffic = ActivatorTraffic::new(receiver);
        traffic.scrape().await;
        let m = traffic.take_snapshot(&"m".into()).expect("reported");
        assert_eq!((m.arrived, m.in_flight, m.parked), (10, 3, 3));
        assert_eq!(m.latency.count(), 2);
    }
}
