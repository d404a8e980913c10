//! Helpers shared by the integration tests: specs, waiting for conditions, looking at processes.
//!
//! Every wait has a generous limit and checks a condition: the machine is shared and slow, so no
//! test depends on how long anything takes.

// Each test binary uses some of these helpers, never all.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lull_core::{Backend, DeploymentKey, EndpointSet, ReplicaId, ReplicaLoad, ReplicaStatus};
use lull_local::{LocalBackend, LocalConfig, LocalDeployment};
use lull_spec::secret::{ResolvedSecrets, Secret, SecretName, SecretStore};
use tokio::sync::watch;
use tokio::time::{Instant, sleep};

/// Longest wait for anything.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// A shell line that runs a static HTTP server on `$PORT`.
pub const SERVER: &str = "exec python3 -m http.server --bind 127.0.0.1 \"$PORT\"";

/// A Python server that answers 503 on /health until `$READY_FILE` exists, 200 otherwise.
pub const GATED_SERVER: &str = r#"
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path != "/health" or os.path.exists(os.environ["READY_FILE"])
        self.send_response(200 if ok else 503)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// The YAML for `command: [/bin/sh, -c, script]`.
pub fn sh(script: &str) -> String {
    format!(
        "command: [\"/bin/sh\", \"-c\", {}]\n",
        serde_json::to_string(script).expect("a string serialises")
    )
}

/// The YAML for `command: [python3, -c, script]`.
pub fn python(script: &str) -> String {
    format!(
        "command: [\"python3\", \"-c\", {}]\n",
        serde_json::to_string(script).expect("a string serialises")
    )
}

/// A deployment named `name` with the rest of its spec in `yaml`.
pub fn deployment(name: &str, yaml: &str) -> LocalDeployment {
    deployment_with_secrets(name, yaml, &[])
}

struct MapStore(BTreeMap<String, String>);

impl SecretStore for MapStore {
    fn get(&self, name: &SecretName) -> lull_spec::secret::Result<Option<Secret>> {
        Ok(self.0.get(name.as_str()).map(|v| Secret::new(v.clone())))
    }
}

/// A deployment whose `secret:NAME` references resolve from `secrets`.
pub fn deployment_with_secrets(
    name: &str,
    yaml: &str,
    secrets: &[(&str, &str)],
) -> LocalDeployment {
    let text = format!("name: {name}\n{yaml}");
    let (mut deployments, _) = lull_spec::load_str(&text, "test.yaml")
        .into_valid()
        .expect("the test spec is valid");
    let deployment = deployments.remove(0);
    let store = MapStore(
        secrets
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    let references: Vec<(String, SecretName)> = deployment
        .spec
        .env
        .iter()
        .filter_map(|e| Some((e.name.clone(), e.value.secret()?.clone())))
        .collect();
    let secrets: ResolvedSecrets = lull_spec::secret::resolve(
        references.iter().map(|(field, name)| (field.clone(), name)),
        &store,
    )
    .expect("every test secret is given");
    LocalDeployment {
        deployment,
        secrets,
    }
}

/// A backend on `dir`.
pub async fn start(dir: &Path) -> Arc<LocalBackend> {
    LocalBackend::start(LocalConfig::new(dir))
        .await
        .expect("the backend starts")
}

/// Waits until `condition` holds, failing the test with `what` after [`PATIENCE`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let until = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < until, "timed out waiting: {what}");
        sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the endpoint set satisfies `condition`; returns it.
pub async fn endpoints_where(
    endpoints: &mut watch::Receiver<EndpointSet>,
    what: &str,
    condition: impl FnMut(&EndpointSet) -> bool,
) -> EndpointSet {
    tokio::time::timeout(PATIENCE, endpoints.wait_for(condition))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting: {what}"))
        .expect("the backend keeps the endpoint set")
        .clone()
}

/// Records every endpoint set published from now on.
pub fn record(endpoints: &watch::Receiver<EndpointSet>) -> Arc<Mutex<Vec<EndpointSet>>> {
    let seen = Arc::new(Mutex::new(vec![endpoints.borrow().clone()]));
    let mut endpoints = endpoints.clone();
    let log = seen.clone();
    tokio::spawn(async move {
        while endpoints.changed().await.is_ok() {
            let set = endpoints.borrow_and_update().clone();
            log.lock().expect("not poisoned").push(set);
        }
    });
    seen
}

/// The deployment's replicas, as status says.
pub fn replicas(backend: &LocalBackend, key: &DeploymentKey) -> Vec<ReplicaStatus> {
    backend.status(key).map(|s| s.replicas).unwrap_or_default()
}

/// The pids status shows.
pub fn pids(backend: &LocalBackend, key: &DeploymentKey) -> Vec<u32> {
    replicas(backend, key)
        .iter()
        .filter_map(|r| r.pid)
        .collect()
}

/// A process's group and state from /proc, `None` once it is gone.
fn stat(pid: u32) -> Option<(i32, char)> {
    let process = procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?;
    let stat = process.stat().ok()?;
    Some((stat.pgrp, stat.state))
}

/// Whether a process runs: it exists and is not a zombie (orphans are reaped by init, whenever
/// it gets to it).
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(_, state)| !matches!(state, 'Z' | 'X'))
}

/// The live processes of a group.
pub fn group(pgid: u32) -> Vec<u32> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    all.filter_map(|p| p.ok()?.stat().ok())
        .filter(|s| s.pgrp == pgid as i32 && !matches!(s.state, 'Z' | 'X'))
        .map(|s| s.pid as u32)
        .collect()
}

/// Sends a signal to a process the test started (through the backend), by pid.
pub fn kill(pid: u32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)
        .expect("the process exists");
}

/// A GET to 127.0.0.1:`port`, returning the status code.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// A [`ReplicaLoad`] the test sets by hand.
#[derive(Default)]
pub struct FakeLoad(pub Mutex<HashMap<ReplicaId, usize>>);

impl FakeLoad {
    /// Sets a replica's in-flight count.
    pub fn set(&self, replica: &ReplicaId, n: usize) {
        self.0
            .lock()
            .expect("not poisoned")
            .insert(replica.clone(), n);
    }
}

impl ReplicaLoad for FakeLoad {
    fn in_flight(&self, replica: &ReplicaId) -> usize {
        self.0
            .lock()
            .expect("not poisoned")
            .get(replica)
            .copied()
            .unwrap_or(0)
    }
}
