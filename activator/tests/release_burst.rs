//! Releasing a large burst of parked requests to one replica that has just become ready: the
//! connections it needs are opened a few at a time, so the replica's accept queue is not
//! flooded and no request fails on a dropped connect (Knative #9888). Opening them all at once
//! fails a share of this burst with connect timeouts. Its own test binary, so no other test
//! competes with the burst.

mod common;

use std::time::Duration;

use common::{Harness, Upstream, bounded, deployment, empty, route};
use http::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lull_core::{DeploymentKey, EndpointSet, TrafficSource};
use tokio::sync::watch;

/// Well above the replica's listen backlog (1024).
const BURST: usize = 6_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_burst_reaches_one_replica_without_failed_connects() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(EndpointSet::default());
        let m = deployment("m", |s| s.activator.queue_capacity = BURST as u32);
        let h = Harness::start(vec![route(m, &tx)]).await;
        // Over HTTP/2, so the clients need few connections of their own.
        let mut clients = tokio::task::JoinSet::new();
        for c in 0..BURST / 100 {
            let client: Client<_, common::ClientBody> = Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http();
            for i in 0..100 {
                let client = client.clone();
                let url = h.url(&format!("/m/x?{c}-{i}"));
                clients.spawn(async move {
                    let request = Request::get(url).body(empty()).expect("request");
                    client.request(request).await.map(|r| r.status())
                });
            }
        }
        let key = DeploymentKey::new("m");
        while (h.activator.take_snapshot(&key).expect("routed").parked as usize) < BURST {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tx.send_replace(up.endpoints("m-1"));
        while let Some(status) = clients.join_next().await {
            assert_eq!(status.expect("no panic").expect("answered"), StatusCode::OK);
        }
        assert_eq!(up.requests(), BURST);
    })
    .await;
}
