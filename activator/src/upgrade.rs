//! Protocol upgrades (WebSocket) passed through: the client's `Upgrade` request goes to the
//! replica with its `Connection: upgrade`; when the replica answers 101 Switching Protocols, the
//! activator answers the client 101 too and then copies bytes both ways between the two
//! connections until either side closes. The request counts as in flight, for its deployment
//! and its replica, for as long as the tunnel is open, so a draining replica keeps its
//! WebSockets until they end or the grace period does.
//!
//! Tunnels outlive the HTTP connections they came from, so they are tracked here: at shutdown
//! the activator waits for them with the drain timeout, then closes them.

use std::future::Future;

use http::header::{self, HeaderMap, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::balance::ReplicaGuard;
use crate::forward::strip_hop_by_hop;
use crate::stats::Tracker;

/// The protocol a request asks to switch to: its `Upgrade` header, when its `Connection`
/// header names `upgrade`.
pub(crate) fn requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let protocol = headers.get(header::UPGRADE)?;
    let asked = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    asked.then(|| protocol.clone())
}

/// The headers of a 101 for the client: hop-by-hop ones removed but the switch itself.
pub(crate) fn switching_headers(headers: &mut HeaderMap) {
    let protocol = headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(headers);
    if let Some(protocol) = protocol {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
}

/// The open tunnels.
#[derive(Debug, Default)]
pub(crate) struct Tunnels {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Tunnels {
    /// Joins the client's upgraded connection to the replica's once both switched, holding
    /// the request's accounting until the tunnel closes.
    pub fn open(&self, client: OnUpgrade, replica: OnUpgrade, held: (Tracker, ReplicaGuard)) {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            let _held = held;
            let (client, replica) = match tokio::try_join!(client, replica) {
                Ok(both) => both,
                Err(error) => {
                    tracing::debug!(%error, "an upgrade did not complete");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut replica = TokioIo::new(replica);
            tokio::select! {
                copied = tokio::io::copy_bidirectional(&mut client, &mut replica) => {
                    if let Err(error) = copied {
                        tracing::debug!(%error, "a tunnel ended with an error");
                    }
                }
                () = stop.cancelled() => {}
            }
        });
    }

    /// Tunnels open now.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Waits until every tunnel has closed (no new one opens once serving stopped).
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        self.tracker.close();
        self.tracker.wait()
    }

    /// Closes every tunnel.
    pub fn close_all(&self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upgrade_needs_both_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(requested(&headers).is_none());
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(
            requested(&headers).expect("asked"),
            HeaderValue::from_static("websocket")
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        switching_headers(&mut headers);
        assert_eq!(headers[header::CONNECTION], "upgrade");
        assert_eq!(headers[header::UPGRADE], "websocket");
        assert!(!headers.contains_key("keep-alive"));
    }
}
