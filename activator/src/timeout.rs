//! The time limits of `activator.timeouts` that run while bodies stream: `idle`, the longest
//! pause between two body chunks (request body to the replica, response body to the client),
//! and `total`, the whole exchange from the moment it is forwarded (queue wait excluded).
//! `connect` is enforced by [`crate::connect`] and `responseHeader` by [`crate::forward`].
//!
//! A body is timed by wrapping it in [`Timed`]. Its timer is only created when the body first
//! has to wait for data, and only reset when it has to wait again after a chunk came, so a
//! small response that arrives whole with its head never touches the timer wheel.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

/// Boxed error of a body.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `activator.timeouts.idle` and `activator.timeouts.total` for one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Longest pause between two chunks.
    pub idle: Duration,
    /// When the whole exchange must be over, if ever.
    pub deadline: Option<Instant>,
}

/// A body that waited too long.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Expired {
    /// No chunk for longer than `idle`.
    #[error(
        "no body data for {}s; raise activator.timeouts.idle if the replica pauses longer",
        .0.as_secs_f64()
    )]
    Idle(Duration),
    /// The exchange outlasted `total`.
    #[error("the request took longer than activator.timeouts.total")]
    Total,
}

pin_project! {
    /// A body held to [`Limits`].
    #[derive(Debug)]
    pub(crate) struct Timed<B> {
        #[pin]
        inner: B,
        limits: Limits,
        // A chunk arrived since the timer was last set.
        progressed: bool,
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

impl<B> Timed<B> {
    /// `inner` held to `limits`.
    pub fn new(inner: B, limits: Limits) -> Self {
        Self {
            inner,
            limits,
            progressed: false,
            sleep: None,
        }
    }
}

impl<B> Body for Timed<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            *this.progressed = true;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.sleep.is_none() || *this.progressed {
            let idle_at = Instant::now() + this.limits.idle;
            let at = this.limits.deadline.map_or(idle_at, |d| d.min(idle_at));
            match this.sleep {
                Some(sleep) => sleep.as_mut().reset(at),
                None => *this.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
            }
            *this.progressed = false;
        }
        let Some(sleep) = this.sleep else {
            return Poll::Pending;
        };
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let expired = match this.limits.deadline {
            Some(deadline) if sleep.deadline() >= deadline => Expired::Total,
            _ => Expired::Idle(this.limits.idle),
        };
        Poll::Ready(Some(Err(expired.into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use http_body_util::channel::Channel;

    #[tokio::test(start_paused = true)]
    async fn a_pause_longer_than_idle_fails_the_body_and_chunks_reset_it() {
        let (mut tx, body) = Channel::<Bytes, BoxError>::new(1);
        let idle = Duration::from_secs(10);
        let mut timed = Timed::new(
            body,
            Limits {
                idle,
                deadline: None,
            },
        );
        let feeder = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(9)).await;
                tx.send_data(Bytes::from_static(b"x")).await.expect("open");
            }
            tokio::time::sleep(Duration::from_secs(11)).await;
            drop(tx);
        });
        for _ in 0..3 {
            let frame = timed.frame().await.expect("a frame").expect("in time");
            assert_eq!(frame.into_data().expect("data"), "x");
        }
        let error = timed.frame().await.expect("an error").expect_err("idle");
        assert!(error.is::<Expired>(), "{error}");
        assert!(error.to_string().contains("activator.timeouts.idle"));
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn the_total_deadline_cuts_a_body_that_keeps_streaming() {
        let (mut tx, body) = Channel::<Bytes, BoxError>::new(1);
        let mut timed = Timed::new(
            body,
            Limits {
                idle: Duration::from_secs(10),
                deadline: Some(Instant::now() + Duration::from_secs(27)),
            },
        );
        let feeder = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                if tx.send_data(Bytes::from_static(b"x")).await.is_err() {
                    return;
                }
            }
        });
        let mut chunks = 0;
        let error = loop {
            match timed.frame().await.expect("a frame or an error") {
                Ok(_) => chunks += 1,
                Err(error) => break error,
            }
        };
        assert_eq!(chunks, 5);
        assert!(matches!(
            error.downcast_ref::<Expired>(),
            Some(Expired::Total)
        ));
        feeder.abort();
    }
}
