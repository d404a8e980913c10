//! Sending a request to a replica and getting its response head back.
//!
//! Bodies stream both ways: the request body goes out as the client sends it and the response
//! body comes back as the replica writes it; neither is ever held whole. Requests go to the
//! replica over HTTP/1.1 on pooled connections ([`crate::pool`]), whatever the client spoke.
//!
//! Errors say whether the request may be sent again ([`Error::retry`], as pingora's errors do):
//! a connection that failed before anything was written leaves the request untouched, so any
//! request may go to another replica; once bytes reached a replica, only a request that can be
//! replayed whole (idempotent, no body) may.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::LengthLimitError;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::balance::Replica;
use crate::body::RequestBody;
use crate::connect::{ConnectError, Sender};
use crate::response::ErrorResponse;
use crate::retry::Retry;
use crate::timeout::Expired;

/// Headers that belong to one hop (RFC 9110 section 7.6.1) and are never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Idle connections found closed in a row before a request gives up on the replica.
const MAX_STALE: usize = 8;

/// Errors of forwarding.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// No connection to the replica could be opened.
    #[error("cannot connect to the replica at {addr}: {source}")]
    Connect {
        /// The replica.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: ConnectError,
    },
    /// The replica did not send response headers in time.
    #[error(
        "the replica at {addr} sent no response within {}s; raise activator.timeouts.responseHeader if it needs longer",
        timeout.as_secs_f64()
    )]
    ResponseTimeout {
        /// The replica.
        addr: SocketAddr,
        /// `activator.timeouts.responseHeader`.
        timeout: Duration,
    },
    /// The whole request took longer than `activator.timeouts.total`.
    #[error("the request took longer than activator.timeouts.total ({}s)", timeout.as_secs_f64())]
    Total {
        /// `activator.timeouts.total`.
        timeout: Duration,
    },
    /// The request body is larger than the deployment accepts.
    #[error(
        "the request body is larger than {limit} bytes; raise activator.maxRequestBody to accept it"
    )]
    BodyTooLarge {
        /// `activator.maxRequestBody`, in bytes.
        limit: usize,
    },
    /// The client paused its request body for longer than `activator.timeouts.idle`.
    #[error("the request body stalled: {0}")]
    BodyStalled(#[source] Expired),
    /// The client's request body failed (it disconnected while sending it).
    #[error("the request body could not be read from the client: {0}")]
    ClientBody(#[source] hyper::Error),
    /// The exchange with the replica failed after the request was sent.
    #[error("the replica at {addr} failed to answer: {source}")]
    Upstream {
        /// The replica.
        addr: SocketAddr,
        /// What hyper said.
        #[source]
        source: hyper::Error,
    },
    /// The request's target cannot be sent on.
    #[error("the request target cannot be forwarded: {0}")]
    Target(#[source] http::uri::InvalidUri),
}

/// `Result` with this module's [`Error`].
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the request may be sent again, to another replica.
    pub fn retry(&self) -> Retry {
        match self {
            Error::Connect { .. } => Retry::Safe,
            Error::Upstream { .. } => Retry::IfReplayable,
            _ => Retry::Never,
        }
    }
}

impl ErrorResponse for Error {
    fn status(&self) -> StatusCode {
        match self {
            Error::Connect {
                source: ConnectError::TimedOut(_),
                ..
            }
            | Error::ResponseTimeout { .. }
            | Error::Total { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::Connect { .. } | Error::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::BodyStalled(_) => StatusCode::REQUEST_TIMEOUT,
            Error::ClientBody(_) | Error::Target(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Error::Connect {
                source: ConnectError::TimedOut(_),
                ..
            } => "upstream_connect_timeout",
            Error::Connect { .. } => "upstream_connect_failed",
            Error::ResponseTimeout { .. } => "upstream_timeout",
            Error::Total { .. } => "request_timeout",
            Error::BodyTooLarge { .. } => "request_too_large",
            Error::BodyStalled(_) => "request_body_timeout",
            Error::ClientBody(_) => "client_body_failed",
            Error::Upstream { .. } => "upstream_failed",
            Error::Target(_) => "bad_request",
        }
    }
}

/// Timeouts and limits of one deployment's forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// `activator.timeouts.connect`.
    pub connect: Duration,
    /// `activator.timeouts.responseHeader`.
    pub response_header: Duration,
    /// `activator.timeouts.idle`.
    pub idle: Duration,
    /// `activator.timeouts.total`.
    pub total: Option<Duration>,
    /// `activator.maxRequestBody`, in bytes.
    pub max_request_body: usize,
}

/// The client of one connection, as replicas are told of it.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// Its address as usually written (IPv4-mapped IPv6 as IPv4).
    pub ip: IpAddr,
    /// The same as a header value, made once per connection.
    forwarded_for: HeaderValue,
}

impl Peer {
    /// The client at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        let ip = client_ip(addr.ip());
        let forwarded_for = HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self { ip, forwarded_for }
    }
}

/// Whether a declared `Content-Length` is over `limit`: such a request is refused before
/// anything is read or sent.
pub(crate) fn declared_too_large(headers: &HeaderMap, limit: usize) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|len| len > limit as u64)
}

/// Turns a client's request head into the one a replica gets: `path` (path and query) as its
/// target when the route rewrote it, origin-form otherwise; HTTP/1.1; no hop-by-hop headers
/// (but `upgrade`, the protocol the client asks to switch to, is kept); `X-Forwarded-*` set.
pub(crate) fn prepare(
    parts: &mut Parts,
    path: Option<String>,
    peer: &Peer,
    upgrade: Option<&HeaderValue>,
) -> Result<()> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    // Keep the client's Host: model servers that build URLs or route virtual hosts see the
    // name the client asked for, not the replica's address. A single Host header is that
    // already and is left in place (setting it again costs a lookup per request); several
    // are cut to the first.
    let (host, set_host) = match hosts.next() {
        Some(host) => (Some(host.clone()), hosts.next().is_some()),
        // HTTP/2 names the host in the target's authority.
        None => (
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
            true,
        ),
    };
    if let Some(path) = path {
        parts.uri = Uri::try_from(path).map_err(Error::Target)?;
    } else if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let mut target = http::uri::Parts::default();
        target.path_and_query = Some(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        if let Ok(uri) = Uri::from_parts(target) {
            parts.uri = uri;
        }
    }
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    forwarded_headers(&mut parts.headers, host.as_ref(), peer);
    if set_host && let Some(host) = host {
        parts.headers.insert(header::HOST, host);
    }
    if let Some(protocol) = upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol.clone());
    }
    Ok(())
}

/// When the response head must have come.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadDeadline {
    /// `responseHeader` from now.
    pub response_header: Instant,
    /// The `total` deadline, when there is one.
    pub total: Option<Instant>,
}

/// Sends the request in `slot` to `replica` and returns the response as soon as its head
/// arrives, with the connection it came on (to give back to the pool when the body is done).
/// On failure the request is back in `slot` when nothing of it was sent. (A slot rather than
/// a value, so the request is not copied into this future, which every request allocates.)
/// Gives up on the replica when [`MAX_STALE`] connections in a row turn out closed.
pub(crate) async fn send(
    replica: &Replica,
    slot: &mut Option<Request<RequestBody>>,
    limits: &Limits,
    deadline: HeadDeadline,
) -> Result<(Response<Incoming>, Sender)> {
    let addr = replica.addr();
    let at = deadline.total.map_or(deadline.response_header, |t| {
        t.min(deadline.response_header)
    });
    for _ in 0..MAX_STALE {
        let mut sender = replica
            .pool()
            .get(limits.connect)
            .await
            .map_err(|source| Error::Connect { addr, source })?;
        // The slot is only empty if a caller passes an empty one: nothing to send.
        let Some(request) = slot.take() else {
            break;
        };
        match sender.send(request, at).await {
            Some(Ok(response)) => return Ok((response, sender)),
            Some(Err(mut failed)) => match failed.take_message() {
                // The connection was closed before the request was written (an idle
                // connection the replica had just closed): nothing was sent.
                Some(unsent) => *slot = Some(unsent),
                None => return Err(classify(failed.into_error(), addr, limits)),
            },
            None => {
                return Err(match deadline.total {
                    Some(total) if total <= deadline.response_header => Error::Total {
                        timeout: limits.total.unwrap_or_default(),
                    },
                    _ => Error::ResponseTimeout {
                        addr,
                        timeout: limits.response_header,
                    },
                });
            }
        }
    }
    Err(Error::Connect {
        addr,
        source: ConnectError::Failed(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "every connection closed before the request could be sent",
        )),
    })
}

/// What a failed exchange means: the client's body at fault, or the replica.
fn classify(error: hyper::Error, addr: SocketAddr, limits: &Limits) -> Error {
    if caused_by(&error, |e| e.is::<LengthLimitError>()) {
        return Error::BodyTooLarge {
            limit: limits.max_request_body,
        };
    }
    let mut expired = None;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = cause {
        if let Some(e) = e.downcast_ref::<Expired>() {
            expired = Some(match e {
                Expired::Idle(idle) => Expired::Idle(*idle),
                Expired::Total => Expired::Total,
            });
        }
        cause = e.source();
    }
    match expired {
        Some(Expired::Total) => Error::Total {
            timeout: limits.total.unwrap_or_default(),
        },
        Some(idle) => Error::BodyStalled(idle),
        // A user error while the request was sent is the request body's: the client left.
        None if error.is_user() => Error::ClientBody(error),
        None => Error::Upstream {
            addr,
            source: error,
        },
    }
}

/// Whether `error` or any of its sources satisfies `test`.
fn caused_by(
    error: &(dyn std::error::Error + 'static),
    test: impl Fn(&(dyn std::error::Error + 'static)) -> bool,
) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if test(e) {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Removes the hop-by-hop headers, and those the `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them: one pass of cheap name comparisons, no hashing.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Appends the client to `X-Forwarded-For`, and sets `X-Forwarded-Proto` and
/// `X-Forwarded-Host` unless a proxy in front of lull (which may have terminated TLS) set them:
/// the replica must build links with the scheme and host the client used.
fn forwarded_headers(headers: &mut HeaderMap, host: Option<&HeaderValue>, peer: &Peer) {
    // One lookup whether or not a proxy in front set it: most requests come without it.
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Vacant(entry) => {
            entry.insert(peer.forwarded_for.clone());
        }
        Entry::Occupied(mut entry) => {
            let chain = match entry.get().to_str() {
                Ok(prior) if !prior.trim().is_empty() => {
                    HeaderValue::from_str(&format!("{prior}, {}", peer.ip)).ok()
                }
                _ => Some(peer.forwarded_for.clone()),
            };
            if let Some(chain) = chain {
                entry.insert(chain);
            }
        }
    }
    headers
        .entry(X_FORWARDED_PROTO)
        .or_insert(HeaderValue::from_static("http"));
    if let Some(host) = host {
        headers
            .entry(X_FORWARDED_HOST)
            .or_insert_with(|| host.clone());
    }
}

/// The client's address as it is usually written: IPv4-mapped IPv6 addresses as IPv4.
fn client_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_named_by_connection_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn forwarded_for_appends_and_proto_and_host_are_kept_from_a_front_proxy() {
        let origin = Peer::new("[::ffff:10.0.0.7]:5000".parse().expect("address"));
        let mut headers = HeaderMap::new();
        forwarded_headers(
            &mut headers,
            Some(&HeaderValue::from_static("a.example")),
            &origin,
        );
        assert_eq!(headers[X_FORWARDED_FOR], "10.0.0.7");
        assert_eq!(headers[X_FORWARDED_PROTO], "http");
        assert_eq!(headers[X_FORWARDED_HOST], "a.example");

        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        headers.insert(X_FORWARDED_HOST, HeaderValue::from_static("public.example"));
        forwarded_headers(
            &mut headers,
            Some(&HeaderValue::from_static("inner")),
            &origin,
        );
        assert_eq!(headers[X_FORWARDED_FOR], "1.2.3.4, 10.0.0.7");
        assert_eq!(headers[X_FORWARDED_PROTO], "https");
        assert_eq!(headers[X_FORWARDED_HOST], "public.example");
    }

    #[test]
    fn targets_go_out_in_origin_form_and_upgrades_keep_their_headers() {
        let peer = Peer::new("127.0.0.1:5000".parse().expect("address"));
        let request = Request::get("http://models.example/m/predict?x=1")
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "websocket")
            .body(())
            .expect("request");
        let (mut parts, ()) = request.into_parts();
        let upgrade = HeaderValue::from_static("websocket");
        prepare(&mut parts, None, &peer, Some(&upgrade)).expect("prepared");
        assert_eq!(parts.uri, "/m/predict?x=1");
        assert_eq!(parts.headers[header::HOST], "models.example");
        assert_eq!(parts.headers[header::UPGRADE], "websocket");
        assert_eq!(parts.headers[header::CONNECTION], "upgrade");

        let (mut parts, ()) = Request::get("/m/x")
            .header(header::HOST, "a.example")
            .header(header::HOST, "b.example")
            .body(())
            .expect("request")
            .into_parts();
        prepare(&mut parts, Some("/x?y".to_owned()), &peer, None).expect("prepared");
        assert_eq!(parts.uri, "/x?y");
        assert!(!parts.headers.contains_key(header::UPGRADE));
        let hosts: Vec<_> = parts.headers.get_all(header::HOST).iter().collect();
        assert_eq!(
            hosts,
            ["a.example"],
            "several Host headers are cut to the first"
        );
        assert_eq!(parts.headers[X_FORWARDED_HOST], "a.example");
    }

    #[test]
    fn errors_map_to_gateway_statuses_and_retry_safety_by_type() {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("address");
        let timeout = Duration::from_secs(1);
        let refused = || ConnectError::Failed(std::io::ErrorKind::ConnectionRefused.into());
        let cases = [
            (
                Error::Connect {
                    addr,
                    source: refused(),
                },
                502,
                Retry::Safe,
            ),
            (
                Error::Connect {
                    addr,
                    source: ConnectError::TimedOut(timeout),
                },
                504,
                Retry::Safe,
            ),
            (Error::ResponseTimeout { addr, timeout }, 504, Retry::Never),
            (Error::Total { timeout }, 504, Retry::Never),
            (Error::BodyTooLarge { limit: 1 }, 413, Retry::Never),
            (
                Error::BodyStalled(Expired::Idle(timeout)),
                408,
                Retry::Never,
            ),
        ];
        for (error, status, retry) in cases {
            assert_eq!(error.status().as_u16(), status, "{error}");
            assert_eq!(error.retry(), retry, "{error}");
        }
    }
}
