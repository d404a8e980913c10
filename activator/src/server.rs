//! Accepting connections: HTTP/1.1 with keep-alive and HTTP/2 over cleartext (h2c), both on
//! one port, protocol upgrades, limits on request heads, and a graceful stop that lets
//! in-flight and parked requests (and open tunnels) finish.
//!
//! Connections are served thread per core: one worker thread per CPU, each with its own
//! single-threaded tokio runtime. One acceptor hands the accepted connections to the workers in
//! turn, so they share the connections evenly: when workers accepted for themselves, the first
//! to wake took whatever arrived, and a few long-lived connections (from a load balancer, or a
//! benchmark's fixed set) could all land on one core while the other idled. A connection, the
//! requests on it and the replica connections they use stay on one thread, so a request never
//! wakes a task on another core and no scheduler steals work. On this
//! machine's loopback benchmark that costs about a quarter less CPU per request than tokio's
//! work-stealing runtime. The state the workers share (route table, parking queues, counters)
//! is behind atomics and short locks, as before; only replica connection pools are per worker
//! ([`worker`]).

use std::cell::Cell;
use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::lobby::{self, Admitted};
use crate::proxy::{Proxy, Shared};
use crate::ratelimit;

/// A client that sends its request head slower than this is cut off (slowloris).
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest request head (request line and headers) accepted; a larger one gets 431. Also
/// the most an HTTP/1.1 connection buffers when reading.
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Pause after an accept error such as too many open files, so the loop does not spin while
/// the process is out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Errors of serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Some requests were still running when the drain timeout ran out; they were cut.
    #[error(
        "{connections} connection(s) still had requests in flight or parked after the drain timeout of {}s; they were closed",
        timeout.as_secs_f64()
    )]
    DrainTimeout {
        /// Connections closed.
        connections: usize,
        /// The drain timeout.
        timeout: Duration,
    },
    /// The worker threads could not be started.
    #[error("cannot start the activator's worker threads: {0}")]
    Workers(#[source] std::io::Error),
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which worker thread runs the current code.
pub(crate) mod worker {
    use super::Cell;

    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(0) };
    }

    /// Worker threads to run: one per CPU.
    pub fn count() -> usize {
        std::thread::available_parallelism().map_or(1, usize::from)
    }

    /// This thread's worker index; 0 on threads that are not workers.
    pub fn index() -> usize {
        INDEX.with(Cell::get)
    }

    pub(super) fn set_index(index: usize) {
        INDEX.with(|i| i.set(index));
    }
}

/// Where the acceptor hands a worker its connections.
type Queue = mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>;

/// A worker's end of its [`Queue`].
type Incoming = mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>;

/// What every worker needs.
#[derive(Clone)]
struct Context {
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    /// Cancelled after `shutdown`: connections finish their requests and close.
    draining: CancellationToken,
    /// Cancelled at the drain timeout: connections are cut.
    abort: CancellationToken,
    /// Cancelled last: workers end their runtimes.
    exit: CancellationToken,
    connections: TaskTracker,
}

/// Ends the workers when serving ends, however it ends (also when `serve` is dropped).
struct Workers {
    exit: CancellationToken,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.exit.cancel();
    }
}

/// Serves `listener` until `shutdown`, then drains for at most `drain_timeout`.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: CancellationToken,
    drain_timeout: Duration,
) -> Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    let context = Context {
        shared: shared.clone(),
        builder: Arc::new(builder),
        draining: CancellationToken::new(),
        abort: CancellationToken::new(),
        exit: CancellationToken::new(),
        connections: TaskTracker::new(),
    };
    let mut workers = Workers {
        exit: context.exit.clone(),
        threads: Vec::new(),
    };
    let mut queues = Vec::with_capacity(shared.workers);
    for index in 0..shared.workers {
        let (queue, incoming) = mpsc::unbounded_channel();
        let context = context.clone();
        let thread = std::thread::Builder::new()
            .name(format!("lull-activator-{index}"))
            .spawn(move || run_worker(index, incoming, context))
            .map_err(Error::Workers)?;
        workers.threads.push(thread);
        queues.push(queue);
    }
    let pruning = tokio::spawn(prune_rate_limits(shared.clone(), shutdown.clone()));

    // The listener is closed when this returns: new clients are refused rather than queued.
    accept(listener, &queues, &shutdown).await;
    // Workers serve what is queued for them and stop taking connections.
    drop(queues);
    pruning.abort();
    tracing::info!(
        connections = context.connections.len(),
        tunnels = shared.tunnels.len(),
        "stopped accepting; draining in-flight and parked requests"
    );
    context.draining.cancel();
    context.connections.close();
    let deadline = Instant::now() + drain_timeout;
    let drained = tokio::time::timeout_at(deadline, async {
        context.connections.wait().await;
        shared.tunnels.wait().await;
    })
    .await;
    let result = match drained {
        Ok(()) => Ok(()),
        Err(_) => {
            let open = context.connections.len() + shared.tunnels.len();
            context.abort.cancel();
            shared.tunnels.close_all();
            context.connections.wait().await;
            Err(Error::DrainTimeout {
                connections: open,
                timeout: drain_timeout,
            })
        }
    };
    let threads = std::mem::take(&mut workers.threads);
    drop(workers);
    // Joined off the runtime: a worker ends as soon as its runtime has dropped its tasks.
    let joined = tokio::task::spawn_blocking(move || {
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("an activator worker thread panicked");
            }
        }
    });
    if joined.await.is_err() {
        tracing::error!("could not wait for the activator's worker threads");
    }
    result
}

/// One worker: a single-threaded runtime that serves the connections it is handed until told
/// to exit.
fn run_worker(index: usize, incoming: Incoming, context: Context) {
    worker::set_index(index);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(worker = index, %error, "cannot start an activator worker");
            return;
        }
    };
    runtime.block_on(async move {
        serve_handed(incoming, &context).await;
        context.exit.cancelled().await;
    });
}

/// Accepts connections until `shutdown`, handing them to the workers in turn.
async fn accept(listener: TcpListener, queues: &[Queue], shutdown: &CancellationToken) {
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // A client that gave up before its connection was accepted is its own
                // problem; anything else (out of descriptors, out of memory) needs a pause.
                if !matches!(
                    error.kind(),
                    ErrorKind::ConnectionAborted
                        | ErrorKind::ConnectionReset
                        | ErrorKind::Interrupted
                ) {
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
                continue;
            }
        };
        // Out of this runtime's reactor, into the worker's.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%peer, %error, "cannot hand a connection to a worker");
                continue;
            }
        };
        if queues[next].send((stream, peer)).is_err() {
            tracing::error!(
                worker = next,
                "an activator worker has stopped; closing a connection"
            );
        }
        next = (next + 1) % queues.len();
    }
}

/// Serves the connections handed to this worker until the acceptor stops.
async fn serve_handed(mut incoming: Incoming, context: &Context) {
    // Connections of one worker wait on the worker's own tokens: their polls then never
    // contend with another core's for the tokens' locks.
    let draining = context.draining.child_token();
    let abort = context.abort.child_token();
    while let Some((stream, peer)) = incoming.recv().await {
        let stream = match TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%peer, %error, "cannot serve a connection on this worker");
                continue;
            }
        };
        // Responses are streamed in small chunks; Nagle would hold them back.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        let (shared, builder) = (context.shared.clone(), context.builder.clone());
        let (draining, abort) = (draining.clone(), abort.clone());
        context.connections.spawn(async move {
            let Some(admitted) =
                lobby::enter(stream, &shared, HEADER_READ_TIMEOUT, &draining, &abort).await
            else {
                return;
            };
            let Admitted {
                io,
                replayed,
                parked_since,
            } = admitted;
            let service = Proxy::new(shared, peer, parked_since);
            // Boxed: a connection waiting in the lobby then costs no room for hyper's state.
            let mut connection = Box::pin(
                builder
                    .serve_connection_with_upgrades(TokioIo::new(io), service)
                    .into_owned(),
            );
            // hyper takes a connection that has read nothing for idle, and a graceful stop
            // would close it with the request the lobby read unanswered: let it read first.
            let ended = std::future::poll_fn(|cx| match connection.as_mut().poll(cx) {
                Poll::Ready(ended) => Poll::Ready(Some(ended)),
                Poll::Pending if replayed.load(Ordering::Acquire) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            });
            let ended = match tokio::select! {
                biased;
                ended = ended => ended,
                () = abort.cancelled() => return,
            } {
                Some(ended) => Some(ended),
                None => tokio::select! {
                    biased;
                    ended = connection.as_mut() => Some(ended),
                    () = draining.cancelled() => None,
                },
            };
            let ended = match ended {
                Some(ended) => ended,
                None => {
                    // Finish the requests in flight (parked ones included), take no new one.
                    connection.as_mut().graceful_shutdown();
                    tokio::select! {
                        ended = connection.as_mut() => ended,
                        () = abort.cancelled() => return,
                    }
                }
            };
            if let Err(error) = ended {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
}

/// Prunes every deployment's client rate-limit buckets on a timer until `shutdown`.
async fn prune_rate_limits(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(ratelimit::PRUNE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let table = shared.table.load();
        for limiter in table
            .deployments
            .values()
            .filter_map(|t| t.limiter.as_ref())
        {
            limiter.prune();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_acceptor_hands_connections_to_the_workers_in_turn() {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind on loopback");
        let addr = listener.local_addr().expect("bound address");
        let (first, mut to_first) = mpsc::unbounded_channel();
        let (second, mut to_second) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let acceptor = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { accept(listener, &[first, second], &shutdown).await }
        });

        let mut clients = Vec::new();
        for _ in 0..6 {
            clients.push(TcpStream::connect(addr).await.expect("connect"));
        }
        // A worker whose turn never comes fails the test rather than hanging it.
        let mut handed = [0, 0];
        tokio::time::timeout(Duration::from_secs(30), async {
            for _ in 0..3 {
                to_first.recv().await.expect("the first worker's turn");
                handed[0] += 1;
                to_second.recv().await.expect("the second worker's turn");
                handed[1] += 1;
            }
        })
        .await
        .expect("six connections handed out, three to each worker");
        assert_eq!(handed, [3, 3]);

        shutdown.cancel();
        acceptor.await.expect("the acceptor stops");
        // Stopped, it has closed the listener: new clients are refused, not queued.
        assert!(TcpStream::connect(addr).await.is_err());
        assert!(to_first.try_recv().is_err() && to_second.try_recv().is_err());
    }
}
