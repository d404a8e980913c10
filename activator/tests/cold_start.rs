//! Requests that find no ready replica: parking, waking, release, the queue's limits, and
//! disabled deployments.

mod common;

use std::time::Duration;

use common::{Harness, Upstream, bounded, deployment, route};
use http::StatusCode;
use lull_core::{DeploymentKey, EndpointSet, TrafficSource};
use tokio::sync::watch;

/// Waits until `n` requests of `key` are parked.
async fn parked(h: &Harness, key: &str, n: u32) {
    let key = DeploymentKey::new(key);
    loop {
        let snapshot = h.activator.take_snapshot(&key).expect("routed");
        if snapshot.parked >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_parked_request_is_released_when_a_replica_becomes_ready() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(EndpointSet::default());
        let h = Harness::start(vec![route(deployment("m", |_| {}), &tx)]).await;

        let request = tokio::spawn({
            let client = h.client.clone();
            let url = h.url("/m/predict");
            async move {
                let request = http::Request::get(url)
                    .body(common::empty())
                    .expect("request");
                client.request(request).await
            }
        });
        h.wakes.wait_for(1).await;
        assert_eq!(h.wakes.keys(), [DeploymentKey::new("m")]);
        assert_eq!(up.requests(), 0);
        // The backend's replica passes its readiness check a little later.
        let ready = up.endpoints("m-1");
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tx.send_replace(ready);
            tx
        });
        let response = request.await.expect("no panic").expect("answered");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(up.seen().await.path, "/predict");
        assert_eq!(h.wakes.count(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(EndpointSet::default());
        let m = deployment("m", |s| s.activator.queue_capacity = 2);
        let h = Harness::start(vec![route(m, &tx)]).await;

        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let client = h.client.clone();
                let url = h.url("/m/x");
                tokio::spawn(async move {
                    let request = http::Request::get(url)
                        .body(common::empty())
                        .expect("request");
                    client.request(request).await.map(|r| r.status())
                })
            })
            .collect();
        parked(&h, "m", 2).await;

        let reply = h.get("/m/x", None).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            reply.headers.contains_key("retry-after"),
            "{:?}",
            reply.headers
        );
        let body = reply.json();
        assert_eq!(body["error"], "queue_full");
        assert_eq!(body["deployment"], "m");

        tx.send_replace(up.endpoints("m-1"));
        for request in waiting {
            let status = request.await.expect("no panic").expect("answered");
            assert_eq!(status, StatusCode::OK);
        }
    })
    .await;
}

#[tokio::test]
async fn a_request_that_waits_past_the_queue_timeout_gets_504() {
    bounded(async {
        let (tx, _) = watch::channel(EndpointSet::default());
        let m = deployment("m", |s| {
            s.activator.queue_timeout = lull_spec::Duration::from_millis(100);
        });
        let h = Harness::start(vec![route(m, &tx)]).await;
        let reply = h.get("/m/x", None).await;
        assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
        let body = reply.json();
        assert_eq!(body["error"], "queue_timeout");
        assert!(body["message"].as_str().expect("message").contains("`m`"));
        assert!(h.wakes.count() >= 1);
    })
    .await;
}

#[tokio::test]
async fn a_client_that_disconnects_while_parked_frees_its_place() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(EndpointSet::default());
        let m = deployment("m", |s| s.activator.queue_capacity = 1);
        let h = Harness::start(vec![route(m, &tx)]).await;

        let gone = tokio::spawn({
            let client = h.client.clone();
            let url = h.url("/m/x");
            async move {
                let request = http::Request::get(url)
                    .body(common::empty())
                    .expect("request");
                client.request(request).await
            }
        });
        parked(&h, "m", 1).await;
        gone.abort();
        let key = DeploymentKey::new("m");
        while h.activator.take_snapshot(&key).expect("routed").parked > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let next = tokio::spawn({
            let client = h.client.clone();
            let url = h.url("/m/x");
            async move {
                let request = http::Request::get(url)
                    .body(common::empty())
                    .expect("request");
                client.request(request).await.map(|r| r.status())
            }
        });
        parked(&h, "m", 1).await;
        tx.send_replace(up.endpoints("m-1"));
        assert_eq!(
            next.await.expect("no panic").expect("answered"),
            StatusCode::OK
        );
        // The request that left was never sent on.
        assert_eq!(up.requests(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_disabled_deployment_answers_503_at_once_and_never_wakes() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(EndpointSet::default());
        let disabled = |enabled| deployment("m", move |s| s.enabled = enabled);
        let h = Harness::start(vec![route(disabled(false), &tx)]).await;

        // No replica and a queue timeout of a minute: had it parked, the test would time out.
        let reply = h.get("/m/x", None).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            reply.json(),
            serde_json::json!({
                "error": "disabled",
                "message": "deployment `m` is disabled; set enabled: true to serve it",
                "deployment": "m",
            })
        );
        // Even with a ready replica, a disabled deployment is not served.
        tx.send_replace(up.endpoints("m-1"));
        assert_eq!(
            h.get("/m/x", None).await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(h.wakes.count(), 0);
        assert_eq!(up.requests(), 0);

        // Enabling it takes effect without a restart.
        tx.send_replace(EndpointSet::default());
        h.activator.apply(vec![route(disabled(true), &tx)]);
        let waiting = tokio::spawn({
            let client = h.client.clone();
            let url = h.url("/m/x");
            async move {
                let request = http::Request::get(url)
                    .body(common::empty())
                    .expect("request");
                client.request(request).await.map(|r| r.status())
            }
        });
        h.wakes.wait_for(1).await;
        tx.send_replace(up.endpoints("m-1"));
        assert_eq!(
            waiting.await.expect("no panic").expect("answered"),
            StatusCode::OK
        );
    })
    .await;
}

#[tokio::test]
async fn disabling_a_deployment_answers_its_parked_requests() {
    bounded(async {
        let (tx, _) = watch::channel(EndpointSet::default());
        let m = |enabled| deployment("m", move |s| s.enabled = enabled);
        let h = Harness::start(vec![route(m(true), &tx)]).await;
        let waiting = tokio::spawn({
            let client = h.client.clone();
            let url = h.url("/m/x");
            async move {
                let request = http::Request::get(url)
                    .body(common::empty())
                    .expect("request");
                client.request(request).await.map(|r| r.status())
            }
        });
        parked(&h, "m", 1).await;
        h.activator.apply(vec![route(m(false), &tx)]);
        let status = waiting.await.expect("no panic").expect("answered");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    })
    .await;
}

#[tokio::test]
async fn parked_requests_survive_apply_and_follow_new_endpoints() {
    bounded(async {
        let up = Upstream::start().await;
        let (old, _) = watch::channel(EndpointSet::default());
        let h = Harness::start(vec![route(deployment("m", |_| {}), &old)]).await;
        let waiting = tokio::spawn({
            let client = h.client.clone();
            let url = h.url("/m/x");
            async move {
                let request = http::Request::get(url)
                    .body(common::empty())
                    .expect("request");
                client.request(request).await.map(|r| r.status())
            }
        });
        parked(&h, "m", 1).await;
        // A reload with a larger queue and a new endpoint source: the parked request stays
        // and is released by the new source.
        let (new, _) = watch::channel(EndpointSet::default());
        let m = deployment("m", |s| s.activator.queue_capacity = 5000);
        h.activator.apply(vec![route(m, &new)]);
        assert_eq!(
            h.activator
                .take_snapshot(&DeploymentKey::new("m"))
                .expect("still routed")
                .parked,
            1
        );
        new.send_replace(up.endpoints("m-1"));
        assert_eq!(
            waiting.await.expect("no panic").expect("answered"),
            StatusCode::OK
        );

        // Removing the deployment: new requests get 404.
        h.activator.apply(Vec::new());
        assert_eq!(h.get("/m/x", None).await.status, StatusCode::NOT_FOUND);
        assert!(
            h.activator
                .take_snapshot(&DeploymentKey::new("m"))
                .is_none()
        );
    })
    .await;
}
