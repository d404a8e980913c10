//! What the `up_*` end-to-end tests share: a sandbox (spec and state directories), a running
//! `lull up` whose guard stops it and every replica it was seen running, an HTTP client, and
//! checks of processes through `/proc`.
//!
//! Every process a test starts is stopped by its own pid: dropping [`Lull`] (also while a failing
//! test unwinds) sends SIGTERM to `lull up`, then SIGKILL if it has not exited, and then SIGKILLs
//! the process group of every replica that `/v1/deployments` ever showed, if one is still there.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::HeaderMap;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use tempfile::TempDir;
use tokio::time::{Instant, sleep};

/// Longest any one HTTP request of a test may take, queue waits and cold starts included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest a test waits for a state it polls for (ready replicas, a reload, scale to zero).
pub const WAIT: Duration = Duration::from_secs(60);

/// Longest a whole test may run before it fails (and its guards stop what it started).
pub const TEST_TIMEOUT: Duration = Duration::from_secs(150);

/// How often status is polled.
pub const POLL: Duration = Duration::from_millis(100);

/// Time `lull up` gets after SIGTERM to drain and exit before the guard SIGKILLs it.
const STOP_WAIT: Duration = Duration::from_secs(20);

/// Runs a test body, failing it if it takes longer than [`TEST_TIMEOUT`]. The body is dropped on
/// a timeout, so its guards stop what it started.
pub async fn bounded<F: Future<Output = ()>>(test: F) {
    if tokio::time::timeout(TEST_TIMEOUT, test).await.is_err() {
        panic!("the test did not finish within {TEST_TIMEOUT:?}");
    }
}

/// A temporary directory with a `specs/` directory and a `state/` directory.
pub struct Sandbox {
    dir: TempDir,
}

impl Sandbox {
    /// Creates both directories.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("lull-up-test-")
            .tempdir()
            .expect("a temporary directory");
        std::fs::create_dir(dir.path().join("specs")).expect("the spec directory is created");
        Self { dir }
    }

    /// Where specs are written; `lull up` is given this directory.
    pub fn specs(&self) -> PathBuf {
        self.dir.path().join("specs")
    }

    /// lull's state directory (`--state-dir`), created by lull.
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Writes `specs/<file>` and returns its path.
    pub fn write_spec(&self, file: &str, yaml: &str) -> PathBuf {
        let path = self.specs().join(file);
        std::fs::write(&path, yaml).expect("the spec is written");
        path
    }

    /// `lull up` on the spec directory and this state directory.
    pub fn up(&self) -> Up {
        Up::new(self.state()).path(self.specs())
    }
}

/// How to start `lull up`.
pub struct Up {
    state: PathBuf,
    paths: Vec<PathBuf>,
    cwd: Option<PathBuf>,
    args: Vec<String>,
}

impl Up {
    /// `lull --state-dir STATE up`; `--tick 1s --drain-timeout 5s` unless [`Up::arg`] sets them.
    pub fn new(state: PathBuf) -> Self {
        Self {
            state,
            paths: Vec::new(),
            cwd: None,
            args: Vec::new(),
        }
    }

    /// A spec file or directory.
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.paths.push(path.into());
        self
    }

    /// The working directory of `lull up` (relative spec paths resolve from it).
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Further arguments of `lull up`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// Starts `lull up` on free ports and waits until it says it is up and its admin endpoint
    /// answers. Ports are picked by binding 127.0.0.1:0; if another process takes one before
    /// lull binds it, lull is started again on new ports.
    pub async fn start(self) -> Lull {
        let mut last_error = String::new();
        for _ in 0..5 {
            let listen = free_addr();
            let admin = free_addr();
            let mut lull = self.spawn(listen, admin);
            match lull.wait_up().await {
                Ok(()) => return lull,
                Err(e) if e.contains("cannot listen") => last_error = e,
                Err(e) => panic!("`lull up` did not come up: {e}"),
            }
        }
        panic!("`lull up` found no free ports: {last_error}")
    }

    fn spawn(&self, listen: SocketAddr, admin: SocketAddr) -> Lull {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lull"));
        command.arg("--state-dir").arg(&self.state).arg("up");
        command.args(&self.paths);
        command
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--admin")
            .arg(admin.to_string());
        if !self.args.iter().any(|a| a == "--tick") {
            command.args(["--tick", "1s"]);
        }
        if !self.args.iter().any(|a| a == "--drain-timeout") {
            command.args(["--drain-timeout", "5s"]);
        }
        command.args(&self.args);
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        command
            .env(
                "RUST_LOG",
                "warn,lull=info,lull_local=info,lull_autoscaler=info",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("`lull up` starts");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("stdout is piped");
        let err = child.stderr.take().expect("stderr is piped");
        {
            let stdout = stdout.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    lock(&stdout).push(line);
                }
            });
        }
        {
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(err);
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    lock(&stderr).push_str(&line);
                    line.clear();
                }
            });
        }
        Lull {
            pid: child.id(),
            child: Some(child),
            listen,
            admin,
            stdout,
            stderr,
            seen: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }
}

/// A free address on 127.0.0.1: bound to port 0, then released for lull to bind.
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
    listener.local_addr().expect("the bound address")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running `lull up`. Dropping it stops it and every replica it was seen running.
pub struct Lull {
    /// Its pid.
    pub pid: u32,
    child: Option<Child>,
    /// The activator's address (`--listen`).
    pub listen: SocketAddr,
    /// The admin address (`--admin`).
    pub admin: SocketAddr,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    /// Every replica pid any status showed, with its replica id.
    seen: Arc<Mutex<BTreeMap<u32, String>>>,
}

impl Lull {
    async fn wait_up(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.try_wait() {
                // Let the reader threads take the last output.
                sleep(Duration::from_millis(200)).await;
                return Err(format!(
                    "it exited with {status} before it was up; stderr:\n{}",
                    self.stderr()
                ));
            }
            let up = self.stdout().iter().any(|l| l == "lull is up");
            if up
                && let Ok(reply) = get(&self.admin_url("/v1/deployments")).await
                && reply.status == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not up within {WAIT:?}; stdout:\n{}\nstderr:\n{}",
                    self.stdout().join("\n"),
                    self.stderr()
                ));
            }
            sleep(POLL).await;
        }
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("waiting on `lull up`"))
    }

    /// Every line it printed on standard output so far.
    pub fn stdout(&self) -> Vec<String> {
        lock(&self.stdout).clone()
    }

    /// Everything it printed on standard error so far.
    pub fn stderr(&self) -> String {
        lock(&self.stderr).clone()
    }

    /// `http://<listen><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listen)
    }

    /// `http://<admin><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// GET through the activator.
    pub async fn get(&self, path: &str) -> Reply {
        get(&self.url(path))
            .await
            .unwrap_or_else(|e| panic!("GET {path} through the activator: {e}"))
    }

    /// `GET /v1/deployments`'s `deployments`; remembers every replica pid it shows.
    pub async fn deployments(&self) -> Vec<Value> {
        let reply = get(&self.admin_url("/v1/deployments"))
            .await
            .unwrap_or_else(|e| panic!("GET /v1/deployments: {e}"));
        assert_eq!(reply.status, 200, "GET /v1/deployments: {}", reply.body);
        let deployments = match reply.json().get("deployments") {
            Some(Value::Array(list)) => list.clone(),
            _ => panic!(
                "GET /v1/deployments has no `deployments` list: {}",
                reply.body
            ),
        };
        self.remember(&deployments);
        deployments
    }

    fn remember(&self, deployments: &[Value]) {
        let mut seen = lock(&self.seen);
        for d in deployments {
            for r in replicas(d) {
                if let Some(pid) = r["pid"].as_u64() {
                    let id = r["id"].as_str().unwrap_or_default().to_owned();
                    seen.insert(pid as u32, id);
                }
            }
        }
    }

    /// The status of deployment `slug`.
    pub async fn deployment(&self, slug: &str) -> Value {
        self.deployments()
            .await
            .into_iter()
            .find(|d| d["slug"] == slug)
            .unwrap_or_else(|| panic!("no deployment `{slug}` in /v1/deployments"))
    }

    /// Polls deployment `slug`'s status until `check` returns `Some`, at most [`WAIT`].
    pub async fn wait_for<T>(
        &self,
        slug: &str,
        what: &str,
        mut check: impl FnMut(&Value) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            let d = self.deployment(slug).await;
            if let Some(found) = check(&d) {
                return found;
            }
            if Instant::now() > deadline {
                panic!(
                    "deployment `{slug}`: {what}: not within {WAIT:?}; last status:\n{d:#}\nstderr of lull:\n{}",
                    self.stderr()
                );
            }
            sleep(POLL).await;
        }
    }

    /// Waits until `slug` has `n` ready replicas and returns their pids.
    pub async fn wait_ready(&self, slug: &str, n: usize) -> Vec<u32> {
        self.wait_for(slug, &format!("{n} ready replicas"), |d| {
            let ready: Vec<u32> = replicas(d)
                .iter()
                .filter(|r| r["phase"] == "ready")
                .filter_map(|r| r["pid"].as_u64().map(|p| p as u32))
                .collect();
            (ready.len() == n && d["ready"] == n as u64).then_some(ready)
        })
        .await
    }

    /// SIGTERM, then waits for it to exit (SIGKILL after a grace time); returns its status.
    pub async fn stop(&mut self) -> ExitStatus {
        let Some(child) = self.child.as_mut() else {
            panic!("`lull up` was already stopped");
        };
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
        let deadline = Instant::now() + STOP_WAIT;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                return status;
            }
            sleep(POLL).await;
        }
        panic!(
            "`lull up` did not exit within {STOP_WAIT:?} of SIGTERM; stderr:\n{}",
            self.stderr()
        );
    }

    /// SIGKILLs `lull up` (not its replicas) and reaps it.
    pub fn kill_hard(&mut self) {
        let child = self.child.as_mut().expect("`lull up` is running");
        child.kill().expect("SIGKILL to `lull up`");
        child.wait().expect("`lull up` is reaped");
    }

    /// Every replica pid a status ever showed.
    pub fn seen_pids(&self) -> Vec<u32> {
        lock(&self.seen).keys().copied().collect()
    }
}

impl Drop for Lull {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- `lull up` (pid {}) stdout:\n{}\n--- stderr:\n{}",
                self.pid,
                self.stdout().join("\n"),
                self.stderr()
            );
        }
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                // One last look at its replicas, so the ones started since the last poll are known.
                if let Some(body) = get_blocking(self.admin, "/v1/deployments")
                    && let Ok(Value::Object(status)) = serde_json::from_str::<Value>(&body)
                    && let Some(Value::Array(deployments)) = status.get("deployments")
                {
                    self.remember(deployments);
                }
                let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
                let deadline = std::time::Instant::now() + STOP_WAIT;
                while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                    std::thread::sleep(POLL);
                }
                if matches!(child.try_wait(), Ok(None)) {
                    let _ = child.kill();
                }
            }
            let _ = child.wait();
        }
        // Replicas left behind (a killed lull, a failing test): SIGKILL their groups.
        for (pid, _) in lock(&self.seen).iter() {
            kill_replica_group(*pid);
        }
    }
}

/// SIGKILLs process group `pgid` if a replica of lull (a process with `LULL_REPLICA` in its
/// environment) is still in it; never anything else.
fn kill_replica_group(pgid: u32) {
    let ours = processes().into_iter().any(|p| {
        p.pgrp == pgid
            && p.state != 'Z'
            && environ(p.pid)
                .iter()
                .any(|v| v.starts_with("LULL_REPLICA="))
    });
    if ours {
        let _ = killpg(Pid::from_raw(pgid as i32), Signal::SIGKILL);
    }
}

/// The replicas in a deployment's status.
pub fn replicas(deployment: &Value) -> Vec<Value> {
    match &deployment["backend"]["replicas"] {
        Value::Array(list) => list.clone(),
        _ => Vec::new(),
    }
}

/// The pids of the replicas in a deployment's status.
pub fn replica_pids(deployment: &Value) -> Vec<u32> {
    replicas(deployment)
        .iter()
        .filter_map(|r| r["pid"].as_u64().map(|p| p as u32))
        .collect()
}

/// A `lull fixture` spec: `name`, the fixture's arguments, then further YAML.
pub fn fixture_spec(name: &str, fixture_args: &[&str], rest: &str) -> String {
    let mut command = vec!["\"lull\"".to_owned(), "\"fixture\"".to_owned()];
    command.extend(fixture_args.iter().map(|a| format!("\"{a}\"")));
    format!("name: {name}\ncommand: [{}]\n{rest}", command.join(", "))
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// An HTTP answer, body read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as text.
    pub body: String,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {:?}", self.body))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// GET `url` on a new connection, within [`REQUEST_TIMEOUT`]. Connections are not pooled, so a
/// client lives no longer than its request and tests share nothing.
pub async fn get(url: &str) -> Result<Reply, String> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let request = async {
        let response = client
            .get(uri)
            .await
            .map_err(|e| format!("GET {url}: {e:?}"))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("GET {url}: reading the body: {e}"))?
            .to_bytes();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, request)
        .await
        .map_err(|_| format!("GET {url}: no answer within {REQUEST_TIMEOUT:?}"))?
}

/// A plain blocking GET for the guard, which may run while the async runtime shuts down: the
/// body of a 200, or `None`.
fn get_blocking(addr: SocketAddr, path: &str) -> Option<String> {
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// The value of `name` in a Prometheus text exposition (first sample, labels ignored).
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        let key = key.split('{').next()?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

// ---------------------------------------------------------------------------------------------
// Processes

/// One process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, Copy)]
pub struct Proc {
    /// Its pid.
    pub pid: u32,
    /// `R`, `S`, `Z`, ...
    pub state: char,
    /// Parent pid.
    pub ppid: u32,
    /// Process group.
    pub pgrp: u32,
    /// Start time in clock ticks since boot: with the pid, it names one process for good.
    pub start: u64,
}

/// `/proc/<pid>/stat`, if the process exists.
pub fn proc_stat(pid: u32) -> Option<Proc> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields follow the last `)`.
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Proc {
        pid,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Whether `process` still runs: its pid exists, is not a zombie, and is the same process (same
/// start time), not a new one that got the pid.
pub fn still_runs(process: &Proc) -> bool {
    proc_stat(process.pid).is_some_and(|p| p.state != 'Z' && p.start == process.start)
}

/// Every process on the machine.
pub fn processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter_map(proc_stat)
        .collect()
}

/// The environment of `pid` (empty if unreadable).
pub fn environ(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|bytes| {
            bytes
                .split(|b| *b == 0)
                .filter(|v| !v.is_empty())
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Running (not zombie) processes that lull started as replicas of deployment `slug`: leaders
/// of their own group with `LULL_DEPLOYMENT=<slug>` in their environment.
pub fn replica_processes(slug: &str) -> Vec<Proc> {
    let wanted = format!("LULL_DEPLOYMENT={slug}");
    processes()
        .into_iter()
        .filter(|p| p.state != 'Z' && p.pgrp == p.pid)
        .filter(|p| environ(p.pid).contains(&wanted))
        .collect()
}

/// Waits until none of `processes` runs (a zombie no longer runs: an orphan's zombie waits for
/// pid 1 to reap it), at most [`WAIT`]; panics naming the ones that still run.
pub async fn wait_gone(processes: &[Proc], what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let running: Vec<u32> = processes
            .iter()
            .filter(|p| still_runs(p))
            .map(|p| p.pid)
            .collect();
        if running.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!("{what}: pids {running:?} still run after {WAIT:?}");
        }
        sleep(POLL).await;
    }
}

/// Waits until none of `processes` exists any more, not even as a zombie (its parent reaped it),
/// at most [`WAIT`]: `/proc/<pid>` is absent, or names a newer process that got the pid.
pub async fn wait_reaped(processes: &[Proc], what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left: Vec<Proc> = processes
            .iter()
            .filter_map(|p| proc_stat(p.pid).filter(|now| now.start == p.start))
            .collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!("{what}: still in /proc after {WAIT:?}: {left:?}");
        }
        sleep(POLL).await;
    }
}

/// Snapshots of `pids` (those that exist) for [`still_runs`] and [`wait_gone`].
pub fn snapshot(pids: &[u32]) -> Vec<Proc> {
    pids.iter().filter_map(|p| proc_stat(*p)).collect()
}

/// Path of the repository root (for `examples/`).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}
