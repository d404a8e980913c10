//! The bodies the activator streams: a request's on its way to a replica, and every response
//! it sends (its own JSON, or a replica's body passed through frame by frame).
//!
//! A proxied response carries the request's accounting with it ([`Done`]), so a request counts
//! as in flight (for its deployment and for its replica) until the last frame is handed to the
//! client or the body is dropped, not merely until the response headers are out. When the body
//! ends cleanly the replica connection goes back to its pool; cut short, it is closed.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Full, Limited};
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use crate::access::Entry;
use crate::balance::ReplicaGuard;
use crate::connect::Sender;
use crate::stats::Tracker;
use crate::timeout::{self, BoxError, Timed};

pin_project! {
    /// A request body as sent to a replica.
    #[project = RequestProj]
    #[derive(Debug)]
    pub(crate) enum RequestBody {
        /// The request has no body (most GETs): nothing to stream, nothing to time.
        Empty,
        /// The client's body, cut off past `maxRequestBody` and held to the idle and total
        /// timeouts.
        Client { #[pin] body: Timed<Limited<Incoming>> },
    }
}

impl RequestBody {
    /// The body of a client's request; [`RequestBody::Empty`] when it has none.
    pub fn client(body: Incoming, max: usize, limits: timeout::Limits) -> Self {
        if body.is_end_stream() {
            return Self::Empty;
        }
        Self::Client {
            body: Timed::new(Limited::new(body, max), limits),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            RequestProj::Empty => Poll::Ready(None),
            RequestProj::Client { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Client { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Client { body } => body.size_hint(),
        }
    }
}

/// What a proxied response holds until its body is done.
#[derive(Debug)]
pub(crate) struct Done {
    /// The deployment's accounting of the request, held until the body is done.
    pub _tracker: Tracker,
    /// The replica's.
    pub replica: ReplicaGuard,
    /// The connection the response came on, for its pool.
    pub conn: Option<Sender>,
    /// The access log line, when the log is on.
    pub access: Option<Box<Entry>>,
}

impl Done {
    /// The exchange is over: `clean` when the body was read to its end, so the connection can
    /// carry another request.
    fn finish(mut self, clean: bool) {
        if let Some(conn) = self.conn.take()
            && clean
        {
            self.replica.replica().pool().put(conn);
        }
        if let Some(entry) = self.access.take() {
            entry.log(if clean { "done" } else { "cut" });
        }
    }
}

pin_project! {
    /// A response body.
    #[project = ResponseProj]
    pub(crate) enum ResponseBody {
        /// Written by the activator.
        Local { #[pin] body: Full<Bytes> },
        /// Streamed from a replica.
        Proxied { #[pin] body: Timed<Incoming>, done: Option<Done> },
    }
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResponseBody::Local { .. } => f.write_str("Local"),
            ResponseBody::Proxied { done, .. } => f
                .debug_struct("Proxied")
                .field("done", &done.is_none())
                .finish(),
        }
    }
}

impl ResponseBody {
    /// The activator's own body.
    pub fn local(bytes: Bytes) -> Self {
        Self::Local {
            body: Full::new(bytes),
        }
    }

    /// A replica's body; `done` is finished when the body ends, fails or is dropped.
    pub fn proxied(body: Incoming, limits: timeout::Limits, done: Done) -> Self {
        // A body that is over before it starts (HEAD, 204, 304, a zero length) is never
        // polled; its exchange is done now.
        let done = if body.is_end_stream() {
            done.finish(true);
            None
        } else {
            Some(done)
        };
        Self::Proxied {
            body: Timed::new(body, limits),
            done,
        }
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        // Finished already, or dropped mid-body: the connection (if still here) is closed
        // with it, and the log line says the response was cut.
        if let Some(entry) = self.access.take() {
            entry.log("cut");
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            ResponseProj::Local { body } => body.poll_frame(cx).map_err(|never| match never {}),
            ResponseProj::Proxied { mut body, done } => {
                let frame = ready!(body.as_mut().poll_frame(cx));
                let over = match &frame {
                    // The server stops polling once the body says it is over, so the last data
                    // frame is where a clean end is seen.
                    Some(Ok(_)) => body.is_end_stream().then_some(true),
                    None => Some(true),
                    Some(Err(_)) => Some(false),
                };
                if let Some(clean) = over
                    && let Some(done) = done.take()
                {
                    done.finish(clean);
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Local { body } => body.is_end_stream(),
            ResponseBody::Proxied { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Local { body } => body.size_hint(),
            ResponseBody::Proxied { body, .. } => body.size_hint(),
        }
    }
}
