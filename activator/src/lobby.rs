//! The lobby: where a new HTTP/1.1 connection's first request waits while its deployment is
//! cold, before any HTTP machinery exists for it.
//!
//! hyper gives an HTTP/1.1 connection read and write buffers and per-request state the moment
//! a request arrives: about 24 KiB measured, so ten thousand requests parked on a cold
//! deployment would hold a quarter of a GiB while doing nothing. The activator therefore reads
//! a new connection's first request head itself, into a buffer of its exact size, and looks up
//! its deployment. When the deployment has no ready replica, the connection takes a place in
//! the deployment's parking queue (which wakes the deployment, as for any parked request)
//! holding only its socket and those bytes. When the wait ends, however it ends, hyper gets
//! the connection with the bytes put back in front ([`Prefixed`]) and serves it as any other;
//! the request's deadline and cold-start wait count from its arrival in the lobby.
//!
//! A client that closes its connection while it waits here frees its place at once.
//!
//! Everything else goes to hyper straight away: HTTP/2 (many requests on a connection),
//! heads that do not parse (hyper answers them) or are large, requests for deployments that
//! are warm, disabled (503 without a wake) or rate limited (the limit is counted once, in the
//! stack), and requests without the key of a protected deployment (401 without a wake).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use http::Uri;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::prefixed::Prefixed;
use crate::proxy::Shared;
use crate::table::Target;

/// Most header lines of a head the lobby parses; a head with more goes to hyper.
const MAX_HEADERS: usize = 64;

/// Most bytes the lobby reads of a head; a longer head goes to hyper, which holds its own
/// limit.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Bytes read from the socket at once, on the stack: the lobby keeps only what it read.
const READ_CHUNK: usize = 4096;

/// A connection ready for hyper.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// The connection, with what the lobby read of it in front.
    pub io: Prefixed<TcpStream>,
    /// Set once hyper has read those bytes again.
    pub replayed: Arc<AtomicBool>,
    /// When its first request began to wait here, if it did.
    pub parked_since: Option<Instant>,
}

/// What the lobby makes of a head read so far.
enum Verdict {
    /// Incomplete: read more.
    Partial,
    /// Hand the connection to hyper now.
    Serve,
    /// Wait for this deployment to have a ready replica first.
    Park(Arc<Target>),
}

/// Reads the first request head of `stream` and holds the connection while its deployment is
/// cold. `None` when the connection is to be closed: the client closed it or was too slow
/// with its head (`header_timeout`), serving stopped before it sent anything, or `abort`.
pub(crate) async fn enter(
    stream: TcpStream,
    shared: &Shared,
    header_timeout: Duration,
    draining: &CancellationToken,
    abort: &CancellationToken,
) -> Option<Admitted> {
    let head_deadline = Instant::now() + header_timeout;
    let mut head = Vec::new();
    let target = loop {
        let readable = tokio::select! {
            biased;
            () = abort.cancelled() => return None,
            // Like hyper's graceful stop: a connection that has not started a request closes.
            () = draining.cancelled(), if head.is_empty() => return None,
            readable = tokio::time::timeout_at(head_deadline, stream.readable()) => readable,
        };
        match readable {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(%error, "connection failed before its request head");
                return None;
            }
            Err(_) => {
                tracing::debug!("client sent no complete request head in time; closing");
                return None;
            }
        }
        match read_some(&stream, &mut head) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(error) => {
                tracing::debug!(%error, "connection failed before its request head");
                return None;
            }
        }
        match inspect(&head, shared) {
            Verdict::Partial if head.len() < MAX_HEAD_BYTES => {}
            Verdict::Partial | Verdict::Serve => break None,
            Verdict::Park(target) => break Some(target),
        }
    };
    let parked_since = match target {
        Some(target) => Some(wait(&stream, &target, abort).await?),
        None => None,
    };
    let (io, replayed) = Prefixed::new(head.into_boxed_slice(), stream);
    Some(Admitted {
        io,
        replayed,
        parked_since,
    })
}

/// Holds the connection in `target`'s parking queue until it has a ready replica or the wait
/// ends otherwise (the stack then answers the request as it would any, 504 or 503). Returns
/// when the wait began; `None` when the client left or `abort`.
async fn wait(stream: &TcpStream, target: &Target, abort: &CancellationToken) -> Option<Instant> {
    let since = Instant::now();
    let parked = target.state.parking.park(since + target.queue_timeout);
    let mut parked = std::pin::pin!(parked);
    // Whether the client's side can still tell us it left: once it has sent more than the
    // head (a body), the socket stays readable and only reading would tell.
    let mut watching = true;
    let mut probe = [0u8; 1];
    loop {
        tokio::select! {
            biased;
            () = abort.cancelled() => return None,
            _ = parked.as_mut() => return Some(since),
            peeked = stream.peek(&mut probe), if watching => match peeked {
                Ok(0) | Err(_) => {
                    tracing::debug!(deployment = %target.key, "client left while its request waited for a replica");
                    return None;
                }
                Ok(_) => watching = false,
            },
        }
    }
}

/// Reads what the socket has, at most a chunk, onto the end of `head`.
fn read_some(stream: &TcpStream, head: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; READ_CHUNK];
    let n = stream.try_read(&mut chunk)?;
    head.reserve_exact(n);
    head.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Whether the connection whose first bytes are `head` parks here.
fn inspect(head: &[u8], shared: &Shared) -> Verdict {
    // HTTP/2 with prior knowledge starts with its preface, `PRI * HTTP/2.0`.
    if head.starts_with(b"PRI ") {
        return Verdict::Serve;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Verdict::Partial,
        Err(_) => return Verdict::Serve,
    }
    let Some(target) = request.path else {
        return Verdict::Serve;
    };
    let find = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let host = find("host").and_then(|v| std::str::from_utf8(v).ok());
    // An absolute-form target (`GET http://host/path`) names its host and path inside.
    let absolute;
    let (host, path) = if target.starts_with('/') {
        (host, target)
    } else {
        let Ok(uri) = target.parse::<Uri>() else {
            return Verdict::Serve;
        };
        absolute = uri;
        (
            host.or_else(|| absolute.authority().map(|a| a.as_str())),
            absolute.path_and_query().map_or("/", |pq| pq.as_str()),
        )
    };
    let table = shared.table.load();
    let Ok(resolved) = table.router.resolve(host, path) else {
        return Verdict::Serve;
    };
    let target = resolved.target;
    if !target.enabled || target.limiter.is_some() || !target.endpoints.borrow().is_empty() {
        return Verdict::Serve;
    }
    if target
        .auth
        .check_authorization(&target.key, find("authorization"))
        .is_err()
    {
        return Verdict::Serve;
    }
    Verdict::Park(target.clone())
}
