//! The future of a layer that may answer a request itself before the inner service sees it
//! (auth, rate limits): either the layer's rejection, ready at once, or the inner future. An
//! enum rather than a box, so a layer costs no allocation per request.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

pin_project! {
    /// A rejection or the inner service's future.
    #[project = AdmitProj]
    pub(crate) enum Admit<F, E> {
        /// Refused by the layer; taken when polled.
        Rejected { error: Option<E> },
        /// Passed on.
        Admitted { #[pin] inner: F },
    }
}

impl<F, E> Admit<F, E> {
    /// A refusal.
    pub fn rejected(error: impl Into<E>) -> Self {
        Self::Rejected {
            error: Some(error.into()),
        }
    }

    /// The inner service's answer.
    pub fn admitted(inner: F) -> Self {
        Self::Admitted { inner }
    }
}

impl<F, T, E> Future for Admit<F, E>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AdmitProj::Admitted { inner } => inner.poll(cx),
            AdmitProj::Rejected { error } => match error.take() {
                Some(error) => Poll::Ready(Err(error)),
                // Polled again after it finished: a caller's bug, answered as pending forever
                // rather than with a panic in the data plane.
                None => Poll::Pending,
            },
        }
    }
}
