//! The body of every response the activator sends: either its own JSON, or a replica's body
//! streamed through frame by frame.
//!
//! A proxied body carries the request's accounting with it, so a request counts as in flight
//! (for its deployment and for its replica) until the last frame is handed to the client or the
//! body is dropped, not merely until the response headers are out.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use crate::balance::ReplicaGuard;
use crate::stats::Tracker;

/// What a proxied response holds until its body is done.
pub(crate) type Completion = (Tracker, ReplicaGuard);

pin_project! {
    /// A response body.
    #[project = BodyProj]
    pub(crate) enum ResponseBody {
        /// Written by the activator.
        Local { #[pin] body: Full<Bytes> },
        /// Streamed from a replica.
        Proxied { #[pin] body: Incoming, done: Option<Completion> },
    }
}

impl ResponseBody {
    /// The activator's own body.
    pub fn local(bytes: Bytes) -> Self {
        Self::Local {
            body: Full::new(bytes),
        }
    }

    /// A replica's body; `done` is released when the body ends, fails or is dropped.
    pub fn proxied(body: Incoming, done: Completion) -> Self {
        Self::Proxied {
            body,
            done: Some(done),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            BodyProj::Local { body } => body.poll_frame(cx).map_err(|never| match never {}),
            BodyProj::Proxied { body, done } => {
                let frame = ready!(body.poll_frame(cx));
                if !matches!(frame, Some(Ok(_))) {
                    done.take();
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
