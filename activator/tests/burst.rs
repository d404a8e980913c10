//! A burst of requests at zero replicas: one wake, every request answered once. Its own test
//! binary, so no other test competes with the burst for the machine's cores.

mod common;

use std::time::Duration;

use common::{Harness, Upstream, bounded, deployment, route};
use lull_core::{DeploymentKey, EndpointSet, TrafficSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

const BURST: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_parked_requests_wake_once_and_are_all_answered_once() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(EndpointSet::default());
        let h = Harness::start(vec![route(deployment("m", |_| {}), &tx)]).await;

        // Connect first, then send every request at once, so they all arrive together.
        let mut streams = Vec::with_capacity(BURST);
        for _ in 0..BURST {
            streams.push(TcpStream::connect(h.addr).await.expect("connect"));
        }
        let mut clients = tokio::task::JoinSet::new();
        for (i, mut stream) in streams.into_iter().enumerate() {
            clients.spawn(async move {
                let request = format!(
                    "GET /m/burst HTTP/1.1\r\nhost: localhost\r\nx-request-id: {i}\r\nconnection: close\r\n\r\n"
                );
                stream
                    .write_all(request.as_bytes())
                    .await
                    .expect("request sent");
                let mut reply = Vec::new();
                stream.read_to_end(&mut reply).await.expect("reply read");
                String::from_utf8_lossy(&reply).into_owned()
            });
        }

        let key = DeploymentKey::new("m");
        loop {
            let snapshot = h.activator.take_snapshot(&key).expect("routed");
            if snapshot.parked as usize == BURST {
                break;
            }
            assert_eq!(up.requests(), 0, "nothing reaches a replica before it is ready");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tx.send_replace(up.endpoints("m-1"));

        while let Some(reply) = clients.join_next().await {
            let reply = reply.expect("no panic");
            assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
        }
        assert_eq!(h.wakes.count(), 1, "one wake for the whole burst");
        assert_eq!(up.requests(), BURST);
        let ids = up.ids();
        assert_eq!(ids.len(), BURST);
        assert!(ids.values().all(|&n| n == 1), "no request was sent twice");
        assert_eq!(h.activator.take_snapshot(&key).expect("routed").parked, 0);
    })
    .await;
}
