//! Test rig: an in-process replica, a wake that records, and an activator serving on loopback.

#![allow(dead_code)] // Each test binary uses a different part of the rig.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::channel::{Channel, Sender};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lull_activator::{Activator, ActivatorConfig, Route};
use lull_core::{DeploymentKey, Endpoint, EndpointSet, ReplicaId, Wake};
use lull_spec::{Deployment, DeploymentSpec};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The longest any test may take; a hang fails instead of blocking CI.
pub const TEST_LIMIT: Duration = Duration::from_secs(60);

/// Runs `f` within [`TEST_LIMIT`].
pub async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, f)
        .await
        .expect("the test finished within its time limit")
}

pub type UpBody = BoxBody<Bytes, hyper::Error>;
pub type ClientBody = BoxBody<Bytes, Infallible>;

/// A request as the replica saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
}

struct UpstreamState {
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    ids: Mutex<HashMap<String, usize>>,
    seen: mpsc::UnboundedSender<Seen>,
    streams: mpsc::UnboundedSender<Sender<Bytes, hyper::Error>>,
    gate: Semaphore,
}

/// A replica. Paths ending in `/echo` stream the request body back, `/stream` hands the test
/// a sender for the response body, `/slow` waits for [`Upstream::release`], `/drop` reads the
/// request whole and closes the connection without an answer, `/collect` reads the request
/// body whole and answers its length, `/ws` switches to WebSocket and
/// echoes every frame; anything else answers JSON describing the request.
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<UpstreamState>,
    seen: tokio::sync::Mutex<mpsc::UnboundedReceiver<Seen>>,
    streams: tokio::sync::Mutex<mpsc::UnboundedReceiver<Sender<Bytes, hyper::Error>>>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the replica");
        Self::serve(listener)
    }

    /// A replica on `addr` (one that was free a moment ago).
    pub async fn start_on(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr)
            .await
            .expect("bind the replica's address");
        Self::serve(listener)
    }

    fn serve(listener: TcpListener) -> Self {
        let addr = listener.local_addr().expect("replica address");
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let (streams_tx, streams) = mpsc::unbounded_channel();
        let state = Arc::new(UpstreamState {
            requests: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            ids: Mutex::new(HashMap::new()),
            seen: seen_tx,
            streams: streams_tx,
            gate: Semaphore::new(0),
        });
        let serving = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(state.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self {
            addr,
            state,
            seen: tokio::sync::Mutex::new(seen),
            streams: tokio::sync::Mutex::new(streams),
            task,
        }
    }

    /// Requests answered or being answered.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// The most requests it served at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// How often each `X-Request-Id` arrived.
    pub fn ids(&self) -> HashMap<String, usize> {
        self.state.ids.lock().expect("not poisoned").clone()
    }

    /// The next request the replica sees.
    pub async fn seen(&self) -> Seen {
        self.seen
            .lock()
            .await
            .recv()
            .await
            .expect("the replica is running")
    }

    /// The body sender of the next `/stream` request.
    pub async fn stream(&self) -> Sender<Bytes, hyper::Error> {
        self.streams
            .lock()
            .await
            .recv()
            .await
            .expect("the replica is running")
    }

    /// Lets `n` waiting or future `/slow` requests answer.
    pub fn release(&self, n: usize) {
        self.state.gate.add_permits(n);
    }

    /// This replica as the only member of an endpoint set.
    pub fn endpoints(&self, replica: &str) -> EndpointSet {
        endpoint_set(replica, self.addr)
    }
}

pub fn endpoint_set(replica: &str, addr: SocketAddr) -> EndpointSet {
    EndpointSet::new(vec![Endpoint {
        replica: ReplicaId::new(replica),
        addr,
    }])
}

/// Counts a request in flight while it lives.
struct Serving(Arc<UpstreamState>);

impl Serving {
    fn new(state: Arc<UpstreamState>) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(state)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

type AnswerError = Box<dyn std::error::Error + Send + Sync>;

async fn answer(
    state: Arc<UpstreamState>,
    mut req: Request<Incoming>,
) -> Result<Response<UpBody>, AnswerError> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let _serving = Serving::new(state.clone());
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(String::new, |pq| pq.as_str().to_owned());
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    if let Some(id) = headers.get("x-request-id") {
        *state
            .ids
            .lock()
            .expect("not poisoned")
            .entry(id.clone())
            .or_insert(0) += 1;
    }
    let seen = Seen {
        method: req.method().to_string(),
        path: path.clone(),
        headers,
    };
    let _ = state.seen.send(seen.clone());
    let route = req.uri().path().rsplit('/').next().unwrap_or("").to_owned();
    let response = match route.as_str() {
        "echo" => Response::new(req.into_body().boxed()),
        "stream" => {
            let (tx, body) = Channel::<Bytes, hyper::Error>::new(1);
            let _ = state.streams.send(tx);
            let mut response = Response::new(body.boxed());
            response
                .headers_mut()
                .insert("content-type", "text/event-stream".parse().expect("static"));
            response
        }
        "slow" => {
            if let Ok(permit) = state.gate.acquire().await {
                permit.forget();
            }
            Response::new(full("slow done"))
        }
        "collect" => {
            let bytes = req.into_body().collect().await?.to_bytes();
            Response::new(full(bytes.len().to_string()))
        }
        "drop" => {
            // The whole request arrived; the replica dies before answering.
            let _ = req.into_body().collect().await;
            return Err("dropped on purpose".into());
        }
        "ws" => {
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = upgrade.await {
                    let mut io = TokioIo::new(upgraded);
                    while let Some(payload) = ws::read_frame(&mut io).await {
                        if ws::write_frame(&mut io, &payload, false).await.is_err() {
                            break;
                        }
                    }
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("upgrade", "websocket")
                .header("connection", "Upgrade")
                .body(full(""))
                .expect("a valid 101")
        }
        _ => {
            let json = serde_json::json!({
                "method": seen.method,
                "path": seen.path,
                "headers": seen.headers,
            });
            let mut response = Response::new(full(json.to_string()));
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().expect("static"));
            response
        }
    };
    Ok(response)
}

/// Just enough of WebSocket framing (RFC 6455) for an echo: short text frames, masked from the
/// client as the protocol requires.
pub mod ws {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    /// The payload of the next frame, unmasked; `None` at the end of the stream.
    pub async fn read_frame(io: &mut (impl AsyncRead + Unpin)) -> Option<Vec<u8>> {
        let mut head = [0u8; 2];
        io.read_exact(&mut head).await.ok()?;
        let masked = head[1] & 0x80 != 0;
        let len = usize::from(head[1] & 0x7f);
        assert!(len < 126, "short frames only");
        let mut mask = [0u8; 4];
        if masked {
            io.read_exact(&mut mask).await.ok()?;
        }
        let mut payload = vec![0u8; len];
        io.read_exact(&mut payload).await.ok()?;
        if masked {
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= mask[i % 4];
            }
        }
        Some(payload)
    }

    /// Writes `payload` as one text frame, masked when a client sends it.
    pub async fn write_frame(
        io: &mut (impl AsyncWrite + Unpin),
        payload: &[u8],
        masked: bool,
    ) -> std::io::Result<()> {
        assert!(payload.len() < 126, "short frames only");
        let mut frame = vec![0x81, payload.len() as u8];
        if masked {
            let mask = [0x1f, 0x2e, 0x3d, 0x4c];
            frame[1] |= 0x80;
            frame.extend_from_slice(&mask);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        } else {
            frame.extend_from_slice(payload);
        }
        io.write_all(&frame).await?;
        io.flush().await
    }
}

fn full(text: impl Into<Bytes>) -> UpBody {
    Full::new(text.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A wake that records every call.
#[derive(Default)]
pub struct Wakes {
    keys: Mutex<Vec<DeploymentKey>>,
    notify: Notify,
}

impl Wake for Wakes {
    fn wake(&self, key: &DeploymentKey) {
        self.keys.lock().expect("not poisoned").push(key.clone());
        self.notify.notify_waiters();
    }
}

impl Wakes {
    pub fn count(&self) -> usize {
        self.keys.lock().expect("not poisoned").len()
    }

    pub fn keys(&self) -> Vec<DeploymentKey> {
        self.keys.lock().expect("not poisoned").clone()
    }

    /// Waits until at least `n` wakes were sent.
    pub async fn wait_for(&self, n: usize) {
        loop {
            let notified = self.notify.notified();
            if self.count() >= n {
                return;
            }
            notified.await;
        }
    }
}

/// A deployment named `name` with the default spec, changed by `edit`.
pub fn deployment(name: &str, edit: impl FnOnce(&mut DeploymentSpec)) -> Deployment {
    let mut spec = DeploymentSpec::named(name);
    edit(&mut spec);
    Deployment {
        spec,
        slug: name.to_owned(),
        file: format!("{name}.yaml"),
        at: Default::default(),
    }
}

pub fn route(deployment: Deployment, endpoints: &watch::Sender<EndpointSet>) -> Route {
    Route {
        deployment,
        endpoints: endpoints.subscribe(),
    }
}

/// A reply read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An activator serving on loopback.
pub struct Harness {
    pub activator: Arc<Activator>,
    pub addr: SocketAddr,
    pub wakes: Arc<Wakes>,
    pub shutdown: CancellationToken,
    pub served: Option<JoinHandle<lull_activator::Result<()>>>,
    pub client: Client<HttpConnector, ClientBody>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Harness {
    pub async fn start(routes: Vec<Route>) -> Self {
        Self::with_config(
            routes,
            ActivatorConfig {
                domain: None,
                drain_timeout: Duration::from_secs(10),
            },
        )
        .await
    }

    pub async fn with_config(routes: Vec<Route>, config: ActivatorConfig) -> Self {
        let wakes = Arc::new(Wakes::default());
        let activator = Activator::new(config, wakes.clone());
        activator.apply(routes);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the activator");
        let addr = listener.local_addr().expect("activator address");
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(activator.clone().serve(listener, shutdown.clone()));
        Self {
            activator,
            addr,
            wakes,
            shutdown,
            served: Some(served),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends a request and returns the response with its body unread.
    pub async fn send(&self, request: Request<ClientBody>) -> Response<Incoming> {
        self.client
            .request(request)
            .await
            .expect("the activator answers")
    }

    /// Sends a request and reads the whole reply.
    pub async fn call(&self, request: Request<ClientBody>) -> Reply {
        let response = self.send(request).await;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .expect("the body arrives whole")
            .to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// GET `path` with an optional Host header.
    pub async fn get(&self, path: &str, host: Option<&str>) -> Reply {
        let mut request = Request::get(self.url(path));
        if let Some(host) = host {
            request = request.header("host", host);
        }
        self.call(request.body(empty()).expect("a valid request"))
            .await
    }
}

pub fn empty() -> ClientBody {
    Empty::new().boxed()
}

pub fn body(bytes: impl Into<Bytes>) -> ClientBody {
    Full::new(bytes.into()).boxed()
}

/// An endpoint set of several replicas.
pub fn endpoints_of(replicas: &[(&str, &Upstream)]) -> EndpointSet {
    EndpointSet::new(
        replicas
            .iter()
            .map(|(id, up)| Endpoint {
                replica: ReplicaId::new(id),
                addr: up.addr,
            })
            .collect(),
    )
}

/// Sends `head` (a whole request head, and body if any) on a new connection and returns the
/// connection with everything the activator answered up to the end of its response head.
pub async fn raw(addr: SocketAddr, head: &[u8]) -> (tokio::net::TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the activator");
    stream.write_all(head).await.expect("request written");
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.expect("read the answer");
        assert!(n > 0, "closed before a full head: {answer:?}");
        answer.push(byte[0]);
    }
    (stream, String::from_utf8_lossy(&answer).into_owned())
}
