//! When a failed request is sent again, to another replica.
//!
//! A request whose connection failed before any byte was written is retried whatever its
//! method (the replica never saw it; this is the first request to a replica that just became
//! ready, or one that just went away). A request that reached a replica is retried only when it
//! can be replayed whole and doing it twice is harmless: an idempotent method (RFC 9110 section
//! 9.2.2) and no body. Everything else answers the client with the error. At most
//! [`MAX_ATTEMPTS`] attempts are made, each on a replica not yet tried while one is left.

use http::header::{HeaderName, HeaderValue};
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
///
/// The target and the headers are copied as bytes into one buffer. Copying them as `Uri` and
/// header values would count a reference per value (an atomic write, and an allocation for a
/// value not yet shared) and count it down again when the copy is dropped, for every GET, while
/// the copy is almost never used; a replay parses them back instead.
#[derive(Debug)]
pub(crate) struct Replay {
    method: Method,
    version: Version,
    /// The target, then per header its name and value, each after its length (4 bytes,
    /// little-endian), and a byte that says whether the value is sensitive.
    head: Vec<u8>,
    /// The target's length.
    target: usize,
}

impl Replay {
    /// A copy of `parts` when a request with that head and `body` may be replayed: an
    /// idempotent method, no body, and no protocol upgrade.
    pub fn of(parts: &Parts, body: &RequestBody, upgrade: bool) -> Option<Self> {
        let replayable =
            parts.method.is_idempotent() && matches!(body, RequestBody::Empty) && !upgrade;
        if !replayable {
            return None;
        }
        let uri = &parts.uri;
        let size: usize = parts
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 9)
            .sum();
        let mut head =
            Vec::with_capacity(size + uri.path_and_query().map_or(64, |pq| pq.as_str().len()));
        match uri.path_and_query() {
            // Forwarded targets are in origin form: no scheme, no authority.
            Some(pq) if uri.scheme().is_none() && uri.authority().is_none() => {
                head.extend_from_slice(pq.as_str().as_bytes());
            }
            _ => head.extend_from_slice(uri.to_string().as_bytes()),
        }
        let target = head.len();
        for (name, value) in &parts.headers {
            put(&mut head, name.as_str().as_bytes())?;
            put(&mut head, value.as_bytes())?;
            head.push(u8::from(value.is_sensitive()));
        }
        Some(Self {
            method: parts.method.clone(),
            version: parts.version,
            head,
            target,
        })
    }

    /// The request again; `None` only if the copy does not parse back, which a head that was
    /// valid to send cannot cause.
    pub fn request(&self) -> Option<Request<RequestBody>> {
        let (target, mut rest) = self.head.split_at(self.target);
        let mut request = Request::new(RequestBody::Empty);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = Uri::try_from(target).ok()?;
        *request.version_mut() = self.version;
        let headers = request.headers_mut();
        while !rest.is_empty() {
            let (name, after) = take(rest)?;
            let (value, after) = take(after)?;
            let (&sensitive, after) = after.split_first()?;
            rest = after;
            let mut value = HeaderValue::from_bytes(value).ok()?;
            value.set_sensitive(sensitive != 0);
            headers.append(HeaderName::from_bytes(name).ok()?, value);
        }
        Some(request)
    }
}

/// Appends `bytes` after their length.
fn put(head: &mut Vec<u8>, bytes: &[u8]) -> Option<()> {
    head.extend_from_slice(&u32::try_from(bytes.len()).ok()?.to_le_bytes());
    head.extend_from_slice(bytes);
    Some(())
}

/// The bytes [`put`] appended at the start of `head`, and what follows them.
fn take(head: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = head.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// The request for the next attempt after one failed with `retry`, if there is one.
pub(crate) fn next(
    retry: Retry,
    unsent: Option<Request<RequestBody>>,
    replay: Option<&Replay>,
) -> Option<Request<RequestBody>> {
    match retry {
        Retry::Safe => unsent.or_else(|| replay.and_then(Replay::request)),
        Retry::IfReplayable => replay.and_then(Replay::request),
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

        let mut head = parts(Method::DELETE);
        head.uri = Uri::from_static("/x/y?z=1&w");
        head.headers.append("x-a", HeaderValue::from_static("1"));
        head.headers.append("x-a", HeaderValue::from_static("2"));
        let mut secret = HeaderValue::from_static("Bearer k");
        secret.set_sensitive(true);
        head.headers.append(http::header::AUTHORIZATION, secret);
        head.headers.append("x-empty", HeaderValue::from_static(""));
        let replay = Replay::of(&head, &empty, false);
        let again = replay
            .as_ref()
            .expect("replayable")
            .request()
            .expect("parses back");
        assert_eq!(again.method(), Method::DELETE);
        assert_eq!(again.uri(), "/x/y?z=1&w");
        assert_eq!(again.version(), head.version);
        assert_eq!(again.headers(), &head.headers);
        assert!(again.headers()[http::header::AUTHORIZATION].is_sensitive());
        assert!(next(Retry::IfReplayable, None, replay.as_ref()).is_some());
        assert!(next(Retry::IfReplayable, None, None).is_none());
        assert!(next(Retry::Never, None, replay.as_ref()).is_none());
        let unsent = Request::new(RequestBody::Empty);
        assert!(next(Retry::Safe, Some(unsent), None).is_some());
    }
}
