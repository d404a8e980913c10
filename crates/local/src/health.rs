//! Health checks: startup, readiness and liveness probes, with Kubernetes' thresholds.
//!
//! A replica is probed fast (every 100 ms) until it first passes readiness, as Knative's activator
//! does, so a cold start is not slowed down by `periodSeconds`; after that every `periodSeconds`.
//! A startup probe is probed fast as well, and fails once `failureThreshold × periodSeconds` has
//! passed without a success, the time Kubernetes gives a slow starter. Without a readiness probe a
//! replica is ready once its port accepts a TCP connection. Liveness starts after startup passed;
//! `failureThreshold` failures in a row end [`supervise`], and the replica is restarted.

use std::convert::Infallible;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, USER_AGENT};
use http::{HeaderName, HeaderValue, Request};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use lull_spec::secret::Secret;
use nix::sys::signal::Signal;
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::time::{Instant, sleep, timeout};

use crate::process;
use crate::template::{ProbeAction, ProbeSpec, Probes};

/// Time between probes until a replica first passes.
pub(crate) const FAST_PERIOD: Duration = Duration::from_millis(100);

/// Time allowed for the TCP connection that stands in for a missing readiness probe.
const TCP_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a replica must be restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unhealthy {
    /// The startup probe did not pass in time.
    Startup(String),
    /// The liveness probe failed `failureThreshold` times in a row.
    Liveness(String),
}

impl fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unhealthy::Startup(why) => write!(f, "startup probe failed: {why}"),
            Unhealthy::Liveness(why) => write!(f, "liveness probe failed: {why}"),
        }
    }
}

/// Where and with what the probes of one replica run.
pub(crate) struct Target<'a> {
    /// The replica's `$PORT`.
    pub port: u16,
    /// Environment for exec probes: the replica's own.
    pub env: &'a [(String, Secret)],
    /// Working directory for exec probes.
    pub dir: Option<&'a Path>,
}

/// Probes a replica for as long as it runs: calls `on_ready` whenever readiness changes, and
/// returns only when the replica must be restarted.
pub(crate) async fn supervise(
    probes: &Probes,
    target: &Target<'_>,
    mut on_ready: impl FnMut(bool),
) -> Unhealthy {
    if let Some(startup) = &probes.startup
        && let Err(why) = startup_check(startup, || check(startup, target)).await
    {
        return Unhealthy::Startup(why);
    }
    let readiness = async {
        match &probes.readiness {
            Some(probe) => readiness_check(probe, || check(probe, target), &mut on_ready).await,
            None => {
                wait_for_port(target.port).await;
                on_ready(true);
                std::future::pending().await
            }
        }
    };
    let liveness = async {
        match &probes.liveness {
            Some(probe) => liveness_check(probe, || check(probe, target)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        never = readiness => match never {},
        why = liveness => Unhealthy::Liveness(why),
    }
}

/// Startup: fast until the first pass; fails once `failureThreshold × period` has gone by.
async fn startup_check<F, Fut>(probe: &ProbeSpec, mut check: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    sleep(probe.initial_delay).await;
    let allowed = probe.period * probe.failure_threshold;
    let deadline = Instant::now() + allowed;
    let mut successes = 0;
    loop {
        match check().await {
            Ok(()) => {
                successes += 1;
                if successes >= probe.success_threshold {
                    return Ok(());
                }
            }
            Err(why) => {
                successes = 0;
                if Instant::now() >= deadline {
                    return Err(format!("not passing after {}s: {why}", allowed.as_secs()));
                }
            }
        }
        sleep(FAST_PERIOD).await;
    }
}

/// Readiness: fast until `successThreshold` passes in a row, then every period with both
/// thresholds. Never returns.
async fn readiness_check<F, Fut>(
    probe: &ProbeSpec,
    mut check: F,
    on_ready: &mut impl FnMut(bool),
) -> Infallible
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    sleep(probe.initial_delay).await;
    let mut successes = 0;
    loop {
        if check().await.is_ok() {
            successes += 1;
            if successes >= probe.success_threshold {
                break;
            }
        } else {
            successes = 0;
        }
        sleep(FAST_PERIOD).await;
    }
    on_ready(true);
    let mut ready = true;
    let mut successes = 0;
    let mut failures = 0;
    loop {
        sleep(probe.period).await;
        match check().await {
            Ok(()) => {
                failures = 0;
                successes += 1;
                if !ready && successes >= probe.success_threshold {
                    ready = true;
                    on_ready(true);
                }
            }
            Err(why) => {
                successes = 0;
                failures += 1;
                if ready && failures >= probe.failure_threshold {
                    tracing::info!(%why, "readiness probe failing");
                    ready = false;
                    on_ready(false);
                }
            }
        }
    }
}

/// Liveness: every period after the initial delay; returns the last failure once
/// `failureThreshold` failures come in a row.
async fn liveness_check<F, Fut>(probe: &ProbeSpec, mut check: F) -> String
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    sleep(probe.initial_delay).await;
    let mut failures = 0;
    loop {
        match check().await {
            Ok(()) => failures = 0,
            Err(why) => {
                failures += 1;
                if failures >= probe.failure_threshold {
                    return format!("{failures} times in a row: {why}");
                }
            }
        }
        sleep(probe.period).await;
    }
}

async fn wait_for_port(port: u16) {
    loop {
        if let Ok(Ok(_)) =
            timeout(TCP_TIMEOUT, TcpStream::connect((Ipv4Addr::LOCALHOST, port))).await
        {
            return;
        }
        sleep(FAST_PERIOD).await;
    }
}

/// One check of `probe` against `target`.
pub(crate) async fn check(probe: &ProbeSpec, target: &Target<'_>) -> Result<(), String> {
    match &probe.action {
        ProbeAction::Http {
            port,
            path,
            host,
            headers,
        } => {
            let port = port.resolve(target.port);
            let host = host.clone().unwrap_or_else(|| format!("127.0.0.1:{port}"));
            timeout(probe.timeout, http_get(port, path, &host, headers))
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "GET {path}: no answer within {}s",
                        probe.timeout.as_secs()
                    ))
                })
        }
        ProbeAction::Tcp { port } => {
            let port = port.resolve(target.port);
            match timeout(
                probe.timeout,
                TcpStream::connect((Ipv4Addr::LOCALHOST, port)),
            )
            .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("connect to port {port}: {e}")),
                Err(_) => Err(format!("connect to port {port}: timed out")),
            }
        }
        ProbeAction::Exec { program, args } => exec(program, args, probe.timeout, target).await,
    }
}

async fn http_get(
    port: u16,
    path: &str,
    host: &str,
    headers: &[(String, Secret)],
) -> Result<(), String> {
    let failed = |e: &dyn fmt::Display| format!("GET {path}: {e}");
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .map_err(|e| failed(&e))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| failed(&e))?;
    let mut request = Request::get(path)
        .header(HOST, host)
        .header(USER_AGENT, "lull-probe");
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| failed(&format!("header name `{name}` is not valid")))?;
        let mut value = HeaderValue::from_str(value.expose())
            .map_err(|_| failed(&format!("the value of header `{name}` is not valid")))?;
        value.set_sensitive(true);
        request = request.header(name, value);
    }
    let request = request.body(Empty::new()).map_err(|e| failed(&e))?;
    tokio::pin!(connection);
    let send = sender.send_request(request);
    tokio::pin!(send);
    let response = tokio::select! {
        biased;
        response = &mut send => response,
        // The connection ends once the answer is in when the server closes it; the answer (or
        // why there is none) is then waiting in `send`.
        _ = &mut connection => send.await,
    }
    .map_err(|e| failed(&e))?;
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("GET {path} answered {status}"))
    }
}

async fn exec(
    program: &Path,
    args: &[String],
    limit: Duration,
    target: &Target<'_>,
) -> Result<(), String> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    process::set_env(&mut command, target.env);
    if let Some(dir) = target.dir {
        command.current_dir(dir);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run `{}`: {e}", program.display()))?;
    let Some(pid) = child.id() else {
        return Err(format!("`{}` vanished at once", program.display()));
    };
    let guard = ProbeGroup(pid);
    let finished = timeout(limit, process::exited(pid)).await.is_ok();
    // Still unreaped, the probe's leader keeps its group id ours: kill whatever it left running.
    drop(guard);
    let status = child.wait().await;
    if !finished {
        return Err(format!(
            "`{}` did not finish within {}s",
            program.display(),
            limit.as_secs()
        ));
    }
    match status {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!(
            "`{}` {}",
            program.display(),
            process::describe_exit(Some(status))
        )),
        Err(e) => Err(format!("`{}`: {e}", program.display())),
    }
}

/// Kills an exec probe's process group when the probe ends, however it ends.
struct ProbeGroup(u32);

impl Drop for ProbeGroup {
    fn drop(&mut self) {
        process::signal_group(self.0, Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::template::ProbePort;

    fn probe(action: ProbeAction) -> ProbeSpec {
        ProbeSpec {
            action,
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            failure_threshold: 3,
            success_threshold: 1,
        }
    }

    fn tcp() -> ProbeSpec {
        probe(ProbeAction::Tcp {
            port: ProbePort::Serving,
        })
    }

    /// A check that answers from a script, then keeps the last answer.
    fn scripted(
        answers: &[bool],
    ) -> (
        impl FnMut() -> std::future::Ready<Result<(), String>>,
        Arc<Mutex<u32>>,
    ) {
        let calls = Arc::new(Mutex::new(0));
        let counter = calls.clone();
        let mut queue: VecDeque<bool> = answers.iter().copied().collect();
        let mut last = false;
        let check = move || {
            if let Some(next) = queue.pop_front() {
                last = next;
            }
            *counter.lock().expect("not poisoned") += 1;
            std::future::ready(if last { Ok(()) } else { Err("down".to_owned()) })
        };
        (check, calls)
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_is_probed_fast_until_ready_then_by_period() {
        let (check, calls) = scripted(&[false, false, true]);
        let probe = tcp();
        let mut changes = Vec::new();
        let _ = timeout(
            Duration::from_secs(1),
            readiness_check(&probe, check, &mut |r| changes.push(r)),
        )
        .await;
        assert_eq!(changes, [true]);
        // Three fast probes reach readiness; the next comes only after the 10 s period.
        assert_eq!(*calls.lock().expect("not poisoned"), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_drops_after_failure_threshold_and_returns_after_success_threshold() {
        let (check, _) = scripted(&[true, false, false, false, true, true]);
        let mut probe = tcp();
        probe.success_threshold = 1;
        let changes = Arc::new(Mutex::new(Vec::new()));
        let seen = changes.clone();
        let _ = timeout(
            Duration::from_secs(100),
            readiness_check(&probe, check, &mut |r| {
                seen.lock().expect("not poisoned").push(r)
            }),
        )
        .await;
        assert_eq!(*changes.lock().expect("not poisoned"), [true, false, true]);
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_fails_after_failure_threshold_in_a_row() {
        let (check, calls) = scripted(&[false, false, true, false, false, false]);
        let why = liveness_check(&tcp(), check).await;
        assert!(why.contains("3 times"), "{why}");
        assert_eq!(*calls.lock().expect("not poisoned"), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn startup_gets_failure_threshold_times_period() {
        let (check, _) = scripted(&[false]);
        let started = Instant::now();
        let why = startup_check(&tcp(), check)
            .await
            .expect_err("never passes");
        assert!(started.elapsed() >= Duration::from_secs(30), "{why}");
        let (check, _) = scripted(&[false, false, true]);
        startup_check(&tcp(), check)
            .await
            .expect("passes on the third try");
    }

    async fn serve_status(status: u16) -> (u16, Arc<Mutex<String>>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(String::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = vec![0; 4096];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                *record.lock().expect("not poisoned") =
                    String::from_utf8_lossy(&buf[..n]).into_owned();
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        (port, seen)
    }

    #[tokio::test]
    async fn http_probes_pass_on_2xx_and_3xx_and_send_host_and_headers() {
        for (status, passes) in [(200, true), (302, true), (404, false), (503, false)] {
            let (port, seen) = serve_status(status).await;
            let p = probe(ProbeAction::Http {
                port: ProbePort::Serving,
                path: "/health".to_owned(),
                host: Some("model.example".to_owned()),
                headers: vec![("Authorization".to_owned(), Secret::new("Bearer s3cret"))],
            });
            let target = Target {
                port,
                env: &[],
                dir: None,
            };
            let result = check(&p, &target).await;
            assert_eq!(result.is_ok(), passes, "{status}: {result:?}");
            let request = seen.lock().expect("not poisoned").to_lowercase();
            assert!(request.starts_with("get /health http/1.1"), "{request}");
            assert!(request.contains("host: model.example"), "{request}");
            assert!(
                request.contains("authorization: bearer s3cret"),
                "{request}"
            );
        }
    }

    #[tokio::test]
    async fn http_probes_fail_when_nothing_listens() {
        let port = crate::ports::free_port().expect("port");
        let p = probe(ProbeAction::Http {
            port: ProbePort::Fixed(port),
            path: "/".to_owned(),
            host: None,
            headers: Vec::new(),
        });
        let target = Target {
            port: 1,
            env: &[],
            dir: None,
        };
        assert!(check(&p, &target).await.is_err());
    }

    #[tokio::test]
    async fn exec_probes_pass_on_exit_zero_and_are_killed_on_timeout() {
        let env = [("WANT".to_owned(), Secret::new("yes"))];
        let target = Target {
            port: 1,
            env: &env,
            dir: None,
        };
        let sh = |script: &str| {
            probe(ProbeAction::Exec {
                program: "/bin/sh".into(),
                args: vec!["-c".to_owned(), script.to_owned()],
            })
        };
        assert!(check(&sh("test \"$WANT\" = yes"), &target).await.is_ok());
        let failed = check(&sh("exit 3"), &target).await.expect_err("fails");
        assert!(failed.contains("status 3"), "{failed}");
        let mut slow = sh("sleep 1000");
        slow.timeout = Duration::from_secs(1);
        let failed = check(&slow, &target).await.expect_err("times out");
        assert!(failed.contains("did not finish"), "{failed}");
    }
}
