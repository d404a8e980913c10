//! lull on a real cluster: `kubectl apply -k manifests/`, then a LullDeployment scaled from zero
//! by its first request, up under load, and back to zero when idle.
//!
//! They need a cluster in `KUBECONFIG` that can pull the lull image, so they are ignored by
//! default and skipped when `KUBECONFIG` is unset. With kind:
//!
//! ```text
//! docker build -t lull:dev .
//! kind create cluster && kind load docker-image lull:dev
//! KUBECONFIG=~/.kube/config LULL_E2E_IMAGE=lull:dev \
//!     cargo test --test kube_e2e -- --ignored --test-threads=1
//! ```
//!
//! Requests reach the activator through `kubectl port-forward` on 127.0.0.1. Each test works in
//! its own namespace and deletes it at the end.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The image every component and the test deployments run.
fn image() -> String {
    std::env::var("LULL_E2E_IMAGE").unwrap_or_else(|_| "lull:dev".to_owned())
}

/// Whether there is a cluster to test against.
fn cluster() -> bool {
    if std::env::var_os("KUBECONFIG").is_none() {
        eprintln!("skipped: KUBECONFIG is not set");
        return false;
    }
    true
}

fn kubectl(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("kubectl")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        std::io::Write::write_all(&mut pipe, text.as_bytes()).expect("kubectl reads stdin");
    }
    let output = child.wait_with_output().expect("kubectl finishes");
    assert!(
        output.status.success(),
        "kubectl {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Applies manifests/ with the test image, once per test binary run (applying is idempotent),
/// and waits until every component runs.
fn install() {
    let root = env!("CARGO_MANIFEST_DIR");
    let overlay = format!("{root}/target/kube-e2e-overlay");
    let image = image();
    // A tag follows the last `:` after the last `/` (a registry may have a port).
    let (name, tag) = match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.to_owned(), tag.to_owned()),
        _ => (image.clone(), "latest".to_owned()),
    };
    std::fs::create_dir_all(&overlay).expect("the overlay directory");
    std::fs::write(
        format!("{overlay}/kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../manifests\nimages:\n  - name: ghcr.io/lull-dev/lull\n    newName: {name}\n    newTag: {tag}\n"
        ),
    )
    .expect("the overlay");
    kubectl(&["apply", "--server-side", "-k", &overlay], None);
    kubectl(
        &[
            "wait",
            "--for=condition=Established",
            "crd/lulldeployments.lull.dev",
            "--timeout=60s",
        ],
        None,
    );
    kubectl(
        &[
            "-n",
            "lull-system",
            "rollout",
            "status",
            "deployment/lull-activator",
            "--timeout=180s",
        ],
        None,
    );
    // The control plane's standby is never Ready: one Ready pod means a leading autoscaler.
    kubectl(
        &[
            "-n",
            "lull-system",
            "wait",
            "--for=jsonpath={.status.readyReplicas}=1",
            "deployment/lull-control",
            "--timeout=180s",
        ],
        None,
    );
}

/// A namespace for one test, deleted when dropped.
struct Namespace(String);

impl Namespace {
    fn new(name: &str) -> Self {
        let _ = Command::new("kubectl")
            .args([
                "delete",
                "namespace",
                name,
                "--wait=true",
                "--ignore-not-found",
            ])
            .status();
        kubectl(&["create", "namespace", name], None);
        kubectl(
            &[
                "-n",
                name,
                "create",
                "secret",
                "generic",
                "lull-secrets",
                "--from-literal=hfToken=e2e-not-a-token",
            ],
            None,
        );
        Self(name.to_owned())
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("kubectl")
            .args(["delete", "namespace", &self.0, "--wait=false"])
            .status();
    }
}

/// A LullDeployment running lull's model server, each request taking `sleep`.
fn deploy(namespace: &str, name: &str, sleep: &str, target: u32, idle: &str) {
    let manifest = format!(
        r#"apiVersion: lull.dev/v1alpha1
kind: LullDeployment
metadata:
  name: {name}
  namespace: {namespace}
spec:
  name: {name}
  image: {image}
  command: ["lull", "fixture", "--bind", "0.0.0.0", "--startup-delay", "1s", "--work", "5ms", "--sleep", "{sleep}"]
  env:
    - {{ name: HF_TOKEN, value: "secret:hfToken" }}
  resources:
    cpu: 100m
    memory: 64Mi
    autoscaling:
      minReplicas: 0
      maxReplicas: 4
      scaleToZeroAfter: {idle}
      metrics:
        - {{ metric: concurrency, value: {target} }}
  healthChecks:
    readiness: {{ path: /health, periodSeconds: 1 }}
  activator:
    queueTimeout: 3m
"#,
        image = image()
    );
    kubectl(&["apply", "-f", "-"], Some(&manifest));
}

/// `kubectl port-forward` to the activator Service on a free loopback port; stopped on drop.
struct Activator {
    child: Child,
    port: u16,
}

impl Activator {
    fn forward() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("kubectl")
            .args([
                "-n",
                "lull-system",
                "port-forward",
                "--address",
                "127.0.0.1",
                "service/lull-activator",
                &format!("{port}:80"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl port-forward runs");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "port-forward did not open"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Self { child, port }
    }

    async fn get(&self, path: &str) -> u16 {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let uri = format!("http://127.0.0.1:{}{path}", self.port)
            .parse()
            .expect("a URI");
        match client.get(uri).await {
            Ok(response) => {
                let status = response.status().as_u16();
                // Read the whole answer, so the request really finished.
                let _ = response.into_body().collect().await;
                status
            }
            Err(_) => 0,
        }
    }
}

impl Drop for Activator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn replicas(namespace: &str, name: &str) -> Option<u32> {
    let out = Command::new("kubectl")
        .args([
            "-n",
            namespace,
            "get",
            "deployment",
            name,
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn condition(namespace: &str, name: &str, type_: &str) -> String {
    kubectl(
        &[
            "-n",
            namespace,
            "get",
            "lulldeployment",
            name,
            "-o",
            &format!("jsonpath={{.status.conditions[?(@.type==\"{type_}\")].status}}"),
        ],
        None,
    )
    .trim()
    .to_owned()
}

/// Polls `check` every second until it holds, failing after `limit`.
fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a cluster"]
async fn the_first_request_wakes_a_deployment_at_zero() {
    if !cluster() {
        return;
    }
    install();
    let ns = Namespace::new("lull-e2e-cold");
    deploy(&ns.0, "cold", "0ms", 4, "5m");
    wait_until("the Deployment at zero", Duration::from_secs(60), || {
        replicas(&ns.0, "cold") == Some(0)
    });
    assert_eq!(condition(&ns.0, "cold", "ScaledToZero"), "True");

    let activator = Activator::forward();
    // Parked in the activator until a replica is ready, then answered.
    assert_eq!(activator.get("/cold/predict").await, 200);
    assert!(replicas(&ns.0, "cold").is_some_and(|r| r >= 1));
    wait_until("Active=True", Duration::from_secs(60), || {
        condition(&ns.0, "cold", "Active") == "True"
    });
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a cluster"]
async fn load_above_the_target_adds_replicas() {
    if !cluster() {
        return;
    }
    install();
    let ns = Namespace::new("lull-e2e-load");
    // Each request holds a replica for 500 ms; at a target of 2 in flight per replica, 16
    // clients ask for 4 replicas (the maximum).
    deploy(&ns.0, "load", "500ms", 2, "5m");
    let activator = std::sync::Arc::new(Activator::forward());
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let activator = activator.clone();
        clients.spawn(async move {
            let mut answered = 0u32;
            while Instant::now() < deadline {
                if activator.get("/load/predict").await == 200 {
                    answered += 1;
                }
                if replicas("lull-e2e-load", "load").is_some_and(|r| r >= 2) && answered > 0 {
                    break;
                }
            }
            answered
        });
    }
    let mut answered = 0;
    while let Some(result) = clients.join_next().await {
        answered += result.expect("a client does not panic");
    }
    assert!(answered > 0, "no request was answered");
    let scaled = replicas(&ns.0, "load").unwrap_or(0);
    assert!(scaled >= 2, "still {scaled} replica(s) under load");
    let reason = kubectl(
        &[
            "-n",
            &ns.0,
            "get",
            "lulldeployment",
            "load",
            "-o",
            "jsonpath={.status.lastDecision.reason}",
        ],
        None,
    );
    assert!(
        !reason.trim().is_empty(),
        "the decision's reason is in the status"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a cluster"]
async fn an_idle_deployment_goes_back_to_zero() {
    if !cluster() {
        return;
    }
    install();
    let ns = Namespace::new("lull-e2e-idle");
    deploy(&ns.0, "idle", "0ms", 4, "20s");
    let activator = Activator::forward();
    assert_eq!(activator.get("/idle/predict").await, 200);
    assert!(replicas(&ns.0, "idle").is_some_and(|r| r >= 1));
    // 20 s without a request, plus the stable window and the pod's termination.
    wait_until("zero replicas", Duration::from_secs(240), || {
        replicas(&ns.0, "idle") == Some(0)
    });
    wait_until("ScaledToZero=True", Duration::from_secs(60), || {
        condition(&ns.0, "idle", "ScaledToZero") == "True"
    });
}
