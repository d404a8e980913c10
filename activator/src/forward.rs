//! Sending a request to a replica and getting its response head back.
//!
//! Bodies stream both ways: the request body goes out as the client sends it and the response
//! body comes back as the replica writes it; neither is ever held whole. Connections are pooled
//! per deployment, HTTP/1.1 to the replica.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::connect::Connector;
use crate::response::ErrorResponse;

/// Idle pooled connections kept per replica; enough for a burst, bounded.
const MAX_IDLE_PER_REPLICA: usize = 256;

/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

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

/// Errors of forwarding.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The replica refused or reset the connection.
    #[error("cannot connect to the replica at {addr}: {source}")]
    Connect {
        /// The replica.
        addr: SocketAddr,
        /// What the connector said.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The replica did not accept a connection in time.
    #[error("the replica at {addr} did not accept a connection within {}s", timeout.as_secs_f64())]
    ConnectTimeout {
        /// The replica.
        addr: SocketAddr,
        /// `activator.timeouts.connect`.
        timeout: Duration,
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
    /// The request body is larger than the deployment accepts.
    #[error(
        "the request body is larger than {limit} bytes; raise activator.maxRequestBody to accept it"
    )]
    BodyTooLarge {
        /// `activator.maxRequestBody`, in bytes.
        limit: usize,
    },
    /// The exchange with the replica failed after connecting.
    #[error("the replica at {addr} failed to answer: {source}")]
    Upstream {
        /// The replica.
        addr: SocketAddr,
        /// What the client said.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The request's target cannot be sent on.
    #[error("the request target cannot be forwarded: {0}")]
    Target(#[source] http::Error),
}

/// `Result` with this module's [`Error`].
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl ErrorResponse for Error {
    fn status(&self) -> StatusCode {
        match self {
            Error::Connect { .. } | Error::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Error::ConnectTimeout { .. } | Error::ResponseTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Target(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Error::Connect { .. } => "upstream_connect_failed",
            Error::ConnectTimeout { .. } => "upstream_connect_timeout",
            Error::ResponseTimeout { .. } => "upstream_timeout",
            Error::BodyTooLarge { .. } => "request_too_large",
            Error::Upstream { .. } => "upstream_failed",
            Error::Target(_) => "bad_request",
        }
    }
}

/// The body sent to a replica: the client's, cut off past the deployment's limit.
pub(crate) type UpstreamBody = Limited<Incoming>;

/// Timeouts and limits of one deployment's forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// `activator.timeouts.connect`.
    pub connect_timeout: Duration,
    /// `activator.timeouts.responseHeader`.
    pub response_header_timeout: Duration,
    /// `activator.maxRequestBody`, in bytes.
    pub max_request_body: usize,
}

/// Forwards one deployment's requests to its replicas.
#[derive(Debug, Clone)]
pub(crate) struct Forwarder {
    client: Client<Connector, UpstreamBody>,
    limits: Limits,
}

impl Forwarder {
    /// A forwarder with its own connection pool.
    pub fn new(limits: Limits) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(MAX_IDLE_PER_REPLICA)
            .build(Connector::new(limits.connect_timeout));
        Self { client, limits }
    }

    /// A forwarder with new limits that keeps this one's pooled connections when it can.
    pub fn with_limits(&self, limits: Limits) -> Self {
        if limits.connect_timeout == self.limits.connect_timeout {
            Self {
                client: self.client.clone(),
                limits,
            }
        } else {
            Self::new(limits)
        }
    }

    /// Sends `request` from the client at `peer` to the replica at `addr`, with `path` (path
    /// and query) as its target when the route rewrote it, and returns the response as soon as
    /// its head arrives.
    pub async fn forward(
        &self,
        request: Request<Incoming>,
        addr: SocketAddr,
        path: Option<String>,
        peer: SocketAddr,
    ) -> Result<Response<Incoming>> {
        let limit = self.limits.max_request_body;
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(Error::BodyTooLarge { limit });
        }
        let (mut parts, body) = request.into_parts();
        let host = parts.headers.get(header::HOST).cloned().or_else(|| {
            let authority = parts.uri.authority()?;
            HeaderValue::from_str(authority.as_str()).ok()
        });
        let target = match path {
            Some(path) => path,
            None => parts
                .uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned()),
        };
        parts.uri = Uri::builder()
            .scheme("http")
            .authority(addr.to_string())
            .path_and_query(target)
            .build()
            .map_err(Error::Target)?;
        // The replica is spoken to in HTTP/1.1 whatever the client used.
        parts.version = Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        forwarded_headers(&mut parts.headers, host, peer);
        let request = Request::from_parts(parts, Limited::new(body, limit));

        let sent = tokio::time::timeout(
            self.limits.response_header_timeout,
            self.client.request(request),
        );
        let mut response = match sent.await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Err(self.classify(e, addr)),
            Err(_) => {
                return Err(Error::ResponseTimeout {
                    addr,
                    timeout: self.limits.response_header_timeout,
                });
            }
        };
        strip_hop_by_hop(response.headers_mut());
        Ok(response)
    }

    fn classify(&self, error: hyper_util::client::legacy::Error, addr: SocketAddr) -> Error {
        if caused_by(&error, |e| e.is::<LengthLimitError>()) {
            return Error::BodyTooLarge {
                limit: self.limits.max_request_body,
            };
        }
        if !error.is_connect() {
            return Error::Upstream {
                addr,
                source: error,
            };
        }
        let timed_out = caused_by(&error, |e| {
            e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        });
        if timed_out {
            Error::ConnectTimeout {
                addr,
                timeout: self.limits.connect_timeout,
            }
        } else {
            Error::Connect {
                addr,
                source: error,
            }
        }
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
fn forwarded_headers(headers: &mut HeaderMap, host: Option<HeaderValue>, peer: SocketAddr) {
    let client = client_ip(peer.ip()).to_string();
    let chain = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.trim().is_empty() => format!("{prior}, {client}"),
        _ => client,
    };
    if let Ok(chain) = HeaderValue::from_str(&chain) {
        headers.insert(X_FORWARDED_FOR, chain);
    }
    if !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if let Some(host) = host {
        if !headers.contains_key(X_FORWARDED_HOST) {
            headers.insert(X_FORWARDED_HOST, host.clone());
        }
        // Keep the client's Host: model servers that build URLs or route virtual hosts see
        // the name the client asked for, not the replica's address.
        headers.insert(header::HOST, host);
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
        let origin: SocketAddr = "[::ffff:10.0.0.7]:5000".parse().expect("address");
        let mut headers = HeaderMap::new();
        forwarded_headers(
            &mut headers,
            Some(HeaderValue::from_static("a.example")),
            origin,
        );
        assert_eq!(headers[X_FORWARDED_FOR], "10.0.0.7");
        assert_eq!(headers[X_FORWARDED_PROTO], "http");
        assert_eq!(headers[X_FORWARDED_HOST], "a.example");
        assert_eq!(headers[header::HOST], "a.example");

        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        headers.insert(X_FORWARDED_HOST, HeaderValue::from_static("public.example"));
        forwarded_headers(
            &mut headers,
            Some(HeaderValue::from_static("inner")),
            origin,
        );
        assert_eq!(headers[X_FORWARDED_FOR], "1.2.3.4, 10.0.0.7");
        assert_eq!(headers[X_FORWARDED_PROTO], "https");
        assert_eq!(headers[X_FORWARDED_HOST], "public.example");
    }

    #[test]
    fn errors_map_to_gateway_statuses_by_type() {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("address");
        let timeout = Duration::from_secs(1);
        let cases = [
            (Error::ConnectTimeout { addr, timeout }, 504),
            (Error::ResponseTimeout { addr, timeout }, 504),
            (Error::BodyTooLarge { limit: 1 }, 413),
        ];
        for (error, status) in cases {
            assert_eq!(error.status().as_u16(), status, "{error}");
        }
    }
}
