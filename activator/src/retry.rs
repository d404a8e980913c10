//! When a failed request is sent again, to another replica.
//!
//! A request whose connection failed before any byte was written is retried whatever its
//! method (the replica never saw it; this is the first request to a replica that just became
//! ready, or one that just went away). A request that reached a replica is retried only when it
//! can be replayed whole and doing it twice is harmless: an idempotent method (RFC 9110 section
//! 9.2.2) and no body. Everything else answers the client with the error. At most
//! [`MAX_ATTEMPTS`] attempts are made, each on a replica not yet tried while one is left.

use http::header::HeaderMap;
use http::request::Parts;
use http::{Method, Request, Uri, Version};

use crate::body::RequestBody;

/// Attempts per request, the first included.
pub(crate) const MAX_ATTEMPTS: u32 = 3;

/// Whether a failed request may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Nothing was sent: always.
    Safe,
    /// The replica may have seen it: only when it can be replayed.
    IfReplayable,
    /// Never (the replica is slow rather than gone, or the request is at fault).
    Never,
}

/// A copy of a request head that can be sent again, kept only for requests that may be.
#[derive(Debug)]
pub(crate) struct Replay {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl Replay {
    /// A copy of `parts` when a request with that head and `body` may be replayed: an
    /// idempotent method, no body, and no protocol upgrade.
    pub fn of(parts: &Parts, body: &RequestBody, upgrade: bool) -> Option<Self> {
        let replayable =
            parts.method.is_idempotent() && matches!(body, RequestBody::Empty) && !upgrade;
        replayable.then(|| Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
        })
    }

    /// The request again.
    pub fn request(&self) -> Request<RequestBody> {
        let mut request = Request::new(RequestBody::Empty);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// The request for the next attempt after one failed with `retry`, if there is one.
pub(crate) fn next(
    retry: Retry,
    unsent: Option<Request<RequestBody>>,
    replay: Option<&Replay>,
) -> Option<Request<RequestBody>> {
    match retry {
        Retry::Safe => unsent.or_else(|| replay.map(Replay::request)),
        Retry::IfReplayable => replay.map(Replay::request),
        Retry::Never => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: Method) -> Parts {
        Request::builder()
            .method(method)
            .uri("/x")
            .body(())
            .expect("request")
            .into_parts()
            .0
    }

    #[test]
    fn only_idempotent_requests_without_a_body_are_replayed() {
        let empty = RequestBody::Empty;
        assert!(Replay::of(&parts(Method::GET), &empty, false).is_some());
        assert!(Replay::of(&parts(Method::PUT), &empty, false).is_some());
        assert!(Replay::of(&parts(Method::POST), &empty, false).is_none());
        assert!(Replay::of(&parts(Method::GET), &empty, true).is_none());

        let replay = Replay::of(&parts(Method::DELETE), &empty, false);
        assert!(next(Retry::IfReplayable, None, replay.as_ref()).is_some());
        assert!(next(Retry::IfReplayable, None, None).is_none());
        assert!(next(Retry::Never, None, replay.as_ref()).is_none());
        let unsent = Request::new(RequestBody::Empty);
        assert!(next(Retry::Safe, Some(unsent), None).is_some());
    }
}
