//! Opening one connection to a replica: TCP within the connect timeout, `TCP_NODELAY`, an
//! HTTP/1.1 handshake, and a task that drives the connection (upgrades included, so a WebSocket
//! can take it over).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::RequestBody;

/// The sending half of one connection to a replica.
pub(crate) type Sender = http1::SendRequest<RequestBody>;

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
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ConnectError::Failed(io::Error::other(e)))?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%addr, %error, "replica connection ended with an error");
        }
    });
    Ok(sender)
}
