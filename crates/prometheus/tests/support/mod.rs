//! What lull-prometheus' end-to-end tests share: a real Prometheus on 127.0.0.1 with a temporary
//! data directory, a fixture exporter whose series have the real names and labels (cAdvisor,
//! kube-state-metrics, DCGM, lull's activator histogram), a backend that records the counts it
//! is asked for, and bounded waits.

#![allow(dead_code)] // Each test binary uses a different part of the rig.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use lull_core::{
    Backend, BackendStatus, BoxFuture, DeploymentKey, EndpointSet, TrafficSnapshot, TrafficSource,
};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// The longest any wait in these tests lasts before it fails: a bound, not a measurement.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The activator's request-duration buckets (lull-activator's `LATENCY_BUCKETS`).
const BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The Prometheus binary: `LULL_PROMETHEUS`, or `prometheus` on the PATH, installed with
/// `scripts/install-prometheus` when missing and this is root. `None` (with a loud message) only
/// when it cannot be had; under CI (`CI=true`) that fails the test instead.
pub fn prometheus_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("LULL_PROMETHEUS") {
        return Some(PathBuf::from(path));
    }
    if let Some(found) = on_path("prometheus") {
        return Some(found);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/install-prometheus");
    // The script installs as root and otherwise says what to install.
    let installed = std::process::Command::new(&script)
        .status()
        .is_ok_and(|s| s.success());
    if installed && let Some(found) = on_path("prometheus") {
        return Some(found);
    }
    let message = "Prometheus is not installed and cannot be installed here (not root): \
                   run scripts/install-prometheus as root, or set LULL_PROMETHEUS";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}");
    }
    eprintln!("\n!!! SKIPPED: {message} !!!\n");
    None
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A free port on 127.0.0.1.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// A Prometheus of the test's own: 127.0.0.1, a temporary data directory, a 1 s scrape of the
/// fixture. Killed when dropped.
pub struct Prometheus {
    binary: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second, and waits until it is ready.
    pub async fn start(binary: PathBuf, target: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: fixture\n    honor_labels: true\n    \
             static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("write the config");
        let mut prometheus = Self {
            binary,
            dir,
            port: free_port(),
            child: None,
        };
        prometheus.spawn().await;
        prometheus
    }

    async fn spawn(&mut self) {
        let dir = self.dir.path();
        let child = Command::new(&self.binary)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start prometheus");
        self.child = Some(child);
        let ready = format!("{}/-/ready", self.url());
        wait_for("Prometheus to be ready", || {
            let ready = ready.clone();
            async move { get(&ready).await.is_some_and(|(status, _)| status == 200) }
        })
        .await;
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills it with SIGKILL, by its pid, and reaps it.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().expect("a running Prometheus has a pid");
            let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits i32"));
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL)
                .expect("kill prometheus");
            child.wait().await.expect("reap prometheus");
        }
    }

    /// Starts it again on the same port and data directory.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    /// Instant queries it has received so far, by its own count.
    pub async fn queries_received(&self) -> u64 {
        let (_, text) = get(&format!("{}/metrics", self.url()))
            .await
            .expect("Prometheus' own /metrics");
        text.lines()
            .filter(|l| {
                l.starts_with("prometheus_http_requests_total{")
                    && l.contains(r#"handler="/api/v1/query""#)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

/// GET `url`: status and body, `None` when it cannot be reached.
pub async fn get(url: &str) -> Option<(u16, String)> {
    lull_prometheus::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let response = client.get(url).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// Polls `condition` every 100 ms until it holds; fails the test after [`PATIENCE`].
pub async fn wait_for<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !condition().await {
        assert!(start.elapsed() < PATIENCE, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one deployment's pods use, as the fixture exports it; changed by the test over time.
#[derive(Debug, Clone)]
pub struct Load {
    /// Cpu cores each pod uses (its request is 0.5).
    pub cpu_cores: f64,
    /// Working set bytes of each pod (limit 1 GiB, request 512 MiB).
    pub memory_bytes: f64,
    /// GPU utilisation percent of each pod's GPU.
    pub gpu_percent: f64,
    /// Framebuffer MiB in use of each pod's GPU (of 16384).
    pub gpu_memory_mib: f64,
    /// Requests per second through the activator, and how long each takes.
    pub rps: f64,
    /// Seconds per request.
    pub latency: f64,
}

impl Load {
    /// Everything at a quarter or less of the targets the tests use.
    pub fn low() -> Self {
        Self {
            cpu_cores: 0.05,
            memory_bytes: 50e6,
            gpu_percent: 5.0,
            gpu_memory_mib: 800.0,
            rps: 10.0,
            latency: 0.04,
        }
    }

    /// Everything at well over the targets.
    pub fn high() -> Self {
        Self {
            cpu_cores: 0.45,
            memory_bytes: 900e6,
            gpu_percent: 95.0,
            gpu_memory_mib: 15000.0,
            rps: 10.0,
            latency: 3.0,
        }
    }
}

#[derive(Debug)]
struct Exported {
    namespace: String,
    pods: u32,
    load: Load,
    cpu_seconds: f64,
    buckets: [f64; BUCKETS.len()],
    sum: f64,
    count: f64,
}

#[derive(Debug, Default)]
struct Exporter {
    deployments: BTreeMap<String, Exported>,
    last: Option<Instant>,
}

impl Exporter {
    /// Advances the counters to now and writes every series.
    fn scrape(&mut self) -> String {
        let now = Instant::now();
        let elapsed = self
            .last
            .map_or(0.0, |last| now.duration_since(last).as_secs_f64());
        self.last = Some(now);
        let mut out = String::new();
        for (slug, d) in &mut self.deployments {
            d.cpu_seconds += d.load.cpu_cores * elapsed;
            let requests = d.load.rps * elapsed;
            for (i, bound) in BUCKETS.iter().enumerate() {
                if d.load.latency <= *bound {
                    d.buckets[i] += requests;
                }
            }
            d.sum += requests * d.load.latency;
            d.count += requests;
            write_deployment(&mut out, slug, d);
        }
        out
    }
}

fn write_deployment(out: &mut String, slug: &str, d: &Exported) {
    let ns = &d.namespace;
    // `fmt::Write` for a String cannot fail.
    let mut line = |text: String| {
        let _ = writeln!(out, "{text}");
    };
    for i in 0..d.pods {
        let pod = format!("{slug}-5f6b7c8d9-p{i:04}");
        let p = format!(r#"namespace="{ns}",pod="{pod}""#);
        let c = format!(r#"{p},container="{slug}""#);
        line(format!(
            r#"kube_pod_labels{{{p},label_app_kubernetes_io_name="{slug}",label_app_kubernetes_io_managed_by="lull"}} 1"#
        ));
        line(format!(
            r#"kube_pod_container_resource_requests{{{c},node="n1",resource="cpu",unit="core"}} 0.5"#
        ));
        line(format!(
            r#"kube_pod_container_resource_requests{{{c},node="n1",resource="memory",unit="byte"}} 536870912"#
        ));
        line(format!(
            r#"kube_pod_container_resource_limits{{{c},node="n1",resource="memory",unit="byte"}} 1073741824"#
        ));
        // cAdvisor also reports the pod's cgroup (container="") and the pause container; the
        // default queries must not count them twice.
        for container in [slug, "", "POD"] {
            let cpu = if container == "POD" {
                0.0
            } else {
                d.cpu_seconds
            };
            let memory = if container == "POD" {
                1e6
            } else {
                d.load.memory_bytes
            };
            let labels = format!(r#"{p},container="{container}",id="/kubepods/{pod}/{container}""#);
            line(format!(
                "container_cpu_usage_seconds_total{{{labels}}} {cpu}"
            ));
            line(format!(
                "container_memory_working_set_bytes{{{labels}}} {memory}"
            ));
        }
        let gpu = format!(
            r#"gpu="0",UUID="GPU-{i:08}-0000",device="nvidia0",modelName="NVIDIA A100-SXM4-80GB",Hostname="n1",{c}"#
        );
        line(format!(
            "DCGM_FI_DEV_GPU_UTIL{{{gpu}}} {}",
            d.load.gpu_percent
        ));
        line(format!(
            "DCGM_FI_DEV_FB_USED{{{gpu}}} {}",
            d.load.gpu_memory_mib
        ));
        line(format!(
            "DCGM_FI_DEV_FB_FREE{{{gpu}}} {}",
            16384.0 - d.load.gpu_memory_mib
        ));
    }
    let name = "lull_activator_request_duration_seconds";
    let dep = format!(r#"deployment="{slug}""#);
    for (bound, count) in BUCKETS.iter().zip(d.buckets) {
        line(format!(r#"{name}_bucket{{{dep},le="{bound}"}} {count}"#));
    }
    line(format!(r#"{name}_bucket{{{dep},le="+Inf"}} {}"#, d.count));
    line(format!("{name}_sum{{{dep}}} {}", d.sum));
    line(format!("{name}_count{{{dep}}} {}", d.count));
}

/// An exporter of cAdvisor-, kube-state-metrics-, DCGM- and activator-shaped series on
/// 127.0.0.1, serving until dropped.
pub struct Fixture {
    addr: SocketAddr,
    state: Arc<Mutex<Exporter>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Fixture {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let state = Arc::new(Mutex::new(Exporter::default()));
        let served = state.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_: Request<hyper::body::Incoming>| {
                        let text = state.lock().expect("fixture state").scrape();
                        async move {
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .header("content-type", "text/plain; version=0.0.4")
                                    .body(Full::new(Bytes::from(text)))
                                    .expect("a response"),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            state,
            server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Exports a deployment with `pods` pods in `namespace` under `load`.
    pub fn add(&self, slug: &str, namespace: &str, pods: u32, load: Load) {
        self.state
            .lock()
            .expect("fixture state")
            .deployments
            .insert(
                slug.to_owned(),
                Exported {
                    namespace: namespace.to_owned(),
                    pods,
                    load,
                    cpu_seconds: 0.0,
                    buckets: [0.0; BUCKETS.len()],
                    sum: 0.0,
                    count: 0.0,
                },
            );
    }

    /// Changes what a deployment's pods use from now on.
    pub fn set_load(&self, slug: &str, load: Load) {
        let mut state = self.state.lock().expect("fixture state");
        let d = state
            .deployments
            .get_mut(slug)
            .expect("an exported deployment");
        d.load = load;
    }
}

/// A backend that records the counts it is asked for; every replica asked for is ready at once.
#[derive(Debug, Default)]
pub struct RecordingBackend {
    desired: Mutex<BTreeMap<DeploymentKey, u32>>,
}

impl RecordingBackend {
    pub fn with(replicas: &[(&str, u32)]) -> Arc<Self> {
        Arc::new(Self {
            desired: Mutex::new(
                replicas
                    .iter()
                    .map(|(k, n)| (DeploymentKey::new(k), *n))
                    .collect(),
            ),
        })
    }

    pub fn desired(&self, key: &str) -> u32 {
        self.desired
            .lock()
            .expect("backend state")
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

impl Backend for RecordingBackend {
    fn set_desired<'a>(
        &'a self,
        key: &'a DeploymentKey,
        replicas: u32,
    ) -> BoxFuture<'a, lull_core::Result<()>> {
        self.desired
            .lock()
            .expect("backend state")
            .insert(key.clone(), replicas);
        Box::pin(async { Ok(()) })
    }

    fn endpoints(&self, _key: &DeploymentKey) -> Option<watch::Receiver<EndpointSet>> {
        None
    }

    fn status(&self, key: &DeploymentKey) -> Option<BackendStatus> {
        let desired = self.desired(key.as_str());
        Some(BackendStatus {
            desired,
            ready: desired,
            ..BackendStatus::default()
        })
    }
}

/// No activator: request duration can come only from Prometheus.
#[derive(Debug)]
pub struct NoTraffic;

impl TrafficSource for NoTraffic {
    fn take_snapshot(&self, _key: &DeploymentKey) -> Option<TrafficSnapshot> {
        None
    }
}

/// Loads one spec document.
pub fn deployment(yaml: &str) -> lull_spec::Deployment {
    let (mut deployments, _) = lull_spec::load_str(yaml, "test.yaml")
        .into_valid()
        .expect("a valid spec");
    deployments.pop().expect("one deployment")
}

/// The source as the tests run it: rates over 5 s (five scrapes), quick back-off.
pub fn config(url: String) -> lull_prometheus::PrometheusConfig {
    let mut config = lull_prometheus::PrometheusConfig::new(lull_prometheus::Endpoint::new(url));
    config.rate_window = Duration::from_secs(5);
    config.query_timeout = Duration::from_secs(2);
    config.backoff = lull_prometheus::BackoffConfig {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
    };
    config
}

/// The source's own metrics as Prometheus text.
pub fn metrics_text(source: &lull_prometheus::PrometheusSource) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    source.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode metrics");
    text
}

/// A spec autoscaled between 1 and `max` on one metric, quick to scale down.
pub fn autoscaled(name: &str, max: u32, metric: &str) -> lull_spec::Deployment {
    deployment(&format!(
        "name: {name}
command: [\"true\"]
resources:
  replicas: 1
  autoscaling:
    enabled: true
    minReplicas: 1
    maxReplicas: {max}
    metrics:
      - {metric}
    behavior:
      scaleDownStabilization: 1s
      stableWindow: 2s
      panicWindow: 1s
"
    ))
}
