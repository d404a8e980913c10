//! Opening one connection to a replica: TCP within the connect timeout, `TCP_NODELAY`, an
//! HTTP/1.1 handshake, and a task that drives the connection (upgrades included, so a WebSocket
//! can take it over).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::TrySendError;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::body::RequestBody;

/// The sending half of one connection to a replica.
#[derive(Debug)]
pub(crate) struct Sender {
    send: http1::SendRequest<RequestBody>,
    /// The response-header deadline of the request on this connection. One timer per
    /// connection, moved for each request: moving a registered timer later is one atomic
    /// update, where a timer per request is allocated, registered and cancelled every time.
    head_timer: Pin<Box<Sleep>>,
}

impl Sender {
    /// Whether the connection is closed for good.
    pub fn is_closed(&self) -> bool {
        self.send.is_closed()
    }

    /// Whether the connection can take a request now.
    pub fn is_ready(&self) -> bool {
        self.send.is_ready()
    }

    /// Waits until the connection can take a request.
    pub async fn ready(&mut self) -> hyper::Result<()> {
        self.send.ready().await
    }

    /// Sends `request` and waits for its response head until `deadline`.
    pub fn send(
        &mut self,
        request: Request<RequestBody>,
        deadline: Instant,
    ) -> HeadTimed<'_, impl Future<Output = Responded> + use<>> {
        // The request goes into the connection's queue here, not when the future is polled.
        let response = self.send.try_send_request(request);
        self.head_timer.as_mut().reset(deadline);
        HeadTimed {
            response,
            timer: self.head_timer.as_mut(),
        }
    }
}

/// A response head, or the request back when it was not sent.
pub(crate) type Responded = Result<Response<Incoming>, TrySendError<Request<RequestBody>>>;

pin_project! {
    /// A request's response head raced against its connection's timer: `None` when the
    /// timer won.
    pub(crate) struct HeadTimed<'a, F> {
        #[pin]
        response: F,
        timer: Pin<&'a mut Sleep>,
    }
}

impl<F: Future<Output = Responded>> Future for HeadTimed<'_, F> {
    type Output = Option<Responded>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(responded) = this.response.poll(cx) {
            return Poll::Ready(Some(responded));
        }
        this.timer.as_mut().poll(cx).map(|()| None)
    }
}

/// Why a connection could not be opened. Nothing of any request was sent, so a request that
/// met it may go to another replica whatever its method.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The replica refused or reset the connection, or the handshake failed.
    #[error("{0}")]
    Failed(#[source] io::Error),
    /// The replica did not accept within the connect timeout.
    #[error("no connection within {}s", .0.as_secs_f64())]
    TimedOut(Duration),
}

/// Connects to `addr` within `timeout`.
pub(crate) async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Sender, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(ConnectError::Failed(error)),
        Err(_) => return Err(ConnectError::TimedOut(timeout)),
    };
    // Requests and streamed chunks are small writes; Nagle would hold them back.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%addr, %error, "cannot set TCP_NODELAY");
    }
    let (send, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ConnectError::Failed(io::Error::other(e)))?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%addr, %error, "replica connection ended with an error");
        }
    });
    Ok(Sender {
        send,
        // Set for each request before it is polled.
        head_timer: Box::pin(tokio::time::sleep(timeout)),
    })
}
