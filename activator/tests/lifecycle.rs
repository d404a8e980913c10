//! What the activator tells the other planes while it serves, and how it stops.

mod common;

use std::time::Duration;

use common::{Harness, Upstream, bounded, deployment, empty, route};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use lull_activator::{ActivatorConfig, Error};
use lull_core::{DeploymentKey, ReplicaId, ReplicaLoad, TrafficSource};
use tokio::sync::watch;

#[tokio::test]
async fn snapshots_report_arrivals_in_flight_and_latency_per_interval() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(up.endpoints("m-1"));
        let h = Harness::start(vec![route(deployment("m", |_| {}), &tx)]).await;
        let key = DeploymentKey::new("m");
        assert_eq!(h.activator.take_snapshot(&key).expect("routed").arrived, 0);
        assert!(
            h.activator
                .take_snapshot(&DeploymentKey::new("other"))
                .is_none()
        );

        for _ in 0..3 {
            assert_eq!(h.get("/m/x", None).await.status, StatusCode::OK);
        }
        let slow = tokio::spawn({
            let client = h.client.clone();
            let url = h.url("/m/slow");
            async move {
                let response = client
                    .request(Request::get(url).body(empty()).expect("request"))
                    .await
                    .expect("answered");
                response
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes()
            }
        });
        assert_eq!(up.seen().await.path, "/x");
        for _ in 0..3 {
            up.seen().await;
        }
        let during = h.activator.take_snapshot(&key).expect("routed");
        assert_eq!(during.arrived, 4);
        assert_eq!(during.in_flight, 1);
        assert_eq!(during.parked, 0);
        assert_eq!(during.latency.count(), 3);
        assert!(during.concurrency_seconds > 0.0);

        up.release(1);
        assert_eq!(slow.await.expect("no panic"), "slow done");
        let after = h.activator.take_snapshot(&key).expect("routed");
        assert_eq!(after.arrived, 0);
        assert_eq!(after.in_flight, 0);
        assert_eq!(after.latency.count(), 1);
    })
    .await;
}

#[tokio::test]
async fn replica_load_counts_in_flight_until_the_response_body_is_done() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(up.endpoints("m-1"));
        let h = Harness::start(vec![route(deployment("m", |_| {}), &tx)]).await;
        let replica = ReplicaId::new("m-1");
        assert_eq!(h.activator.in_flight(&replica), 0);

        let slow = tokio::spawn({
            let client = h.client.clone();
            let url = h.url("/m/slow");
            async move {
                client
                    .request(Request::get(url).body(empty()).expect("request"))
                    .await
                    .expect("answered")
                    .status()
            }
        });
        up.seen().await;
        assert_eq!(h.activator.in_flight(&replica), 1);
        // The backend starts draining the replica: it leaves the set, its request goes on.
        tx.send_replace(lull_core::EndpointSet::default());
        assert_eq!(h.activator.in_flight(&replica), 1);
        up.release(1);
        assert_eq!(slow.await.expect("no panic"), StatusCode::OK);

        // A streamed response stays in flight until its body ends.
        tx.send_replace(up.endpoints("m-1"));
        let request = Request::get(h.url("/m/stream"))
            .body(empty())
            .expect("request");
        let (response, mut chunks) = tokio::join!(h.send(request), up.stream());
        assert_eq!(h.activator.in_flight(&replica), 1);
        chunks.send_data("last".into()).await.expect("sent");
        drop(chunks);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(body, "last");
        // The count drops when the activator hands over the last frame, which may be just
        // after the client has read it.
        while h.activator.in_flight(&replica) != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(up.endpoints("m-1"));
        let mut h = Harness::start(vec![route(deployment("m", |_| {}), &tx)]).await;
        let slow = tokio::spawn({
            let client = h.client.clone();
            let url = h.url("/m/slow");
            async move {
                let response = client
                    .request(Request::get(url).body(empty()).expect("request"))
                    .await
                    .expect("answered");
                let status = response.status();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes();
                (status, body)
            }
        });
        up.seen().await;
        h.shutdown.cancel();
        // New connections are refused once the listener is closed.
        while tokio::net::TcpStream::connect(h.addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        up.release(1);
        let (status, body) = slow.await.expect("no panic");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "slow done");
        let served = h.served.take().expect("serving");
        served
            .await
            .expect("no panic")
            .expect("drained within the timeout");
    })
    .await;
}

#[tokio::test]
async fn shutdown_cuts_requests_that_outlast_the_drain_timeout() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(up.endpoints("m-1"));
        let mut h = Harness::with_config(
            vec![route(deployment("m", |_| {}), &tx)],
            ActivatorConfig {
                domain: None,
                drain_timeout: Duration::from_millis(100),
            },
        )
        .await;
        let slow = tokio::spawn({
            let client = h.client.clone();
            let url = h.url("/m/slow");
            async move {
                client
                    .request(Request::get(url).body(empty()).expect("request"))
                    .await
            }
        });
        up.seen().await;
        h.shutdown.cancel();
        let served = h.served.take().expect("serving");
        let error = served
            .await
            .expect("no panic")
            .expect_err("the slow request outlasts the drain");
        assert!(
            matches!(error, Error::DrainTimeout { connections: 1, .. }),
            "{error}"
        );
        assert!(
            slow.await.expect("no panic").is_err(),
            "the client sees the cut"
        );
    })
    .await;
}
