//! Retries: a request whose connection failed before anything was sent goes to another
//! replica whatever its method; one that reached a replica is sent again only when it is
//! idempotent and has no body.

mod common;

use common::{Harness, Upstream, body, bounded, deployment, empty, endpoints_of, route};
use http::{Request, StatusCode};
use lull_core::{Endpoint, EndpointSet, ReplicaId};
use tokio::sync::watch;

/// An address where nothing listens.
async fn dead_addr() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    listener.local_addr().expect("address")
}

fn metrics(h: &Harness) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    h.activator.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encoded");
    text
}

#[tokio::test]
async fn a_request_whose_connect_fails_goes_to_another_replica() {
    bounded(async {
        let live = Upstream::start().await;
        let dead = dead_addr().await;
        let set = EndpointSet::new(vec![
            Endpoint {
                replica: ReplicaId::new("m-1"),
                addr: dead,
            },
            Endpoint {
                replica: ReplicaId::new("m-2"),
                addr: live.addr,
            },
        ]);
        let (tx, _) = watch::channel(set);
        let h = Harness::start(vec![route(deployment("m", |_| {}), &tx)]).await;
        // POSTs with bodies: never sent to the dead replica, so safe to send elsewhere.
        for i in 0..10 {
            let request = Request::post(h.url("/m/echo"))
                .body(body(format!("payload {i}")))
                .expect("request");
            let reply = h.call(request).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
            assert_eq!(reply.text(), format!("payload {i}"));
        }
        assert_eq!(live.requests(), 10);
        let text = metrics(&h);
        // Round robin sent every other first attempt to the dead replica until three failed
        // connects in a row ejected it; after that none went there.
        assert!(
            text.contains(r#"lull_activator_retries_total{deployment="m"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"lull_activator_ejections_total{deployment="m"} 1"#),
            "{text}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_post_that_reached_a_replica_is_not_sent_again_but_a_get_is() {
    bounded(async {
        let ups = [Upstream::start().await, Upstream::start().await];
        let (tx, _) = watch::channel(endpoints_of(&[("m-1", &ups[0]), ("m-2", &ups[1])]));
        let h = Harness::start(vec![route(deployment("m", |_| {}), &tx)]).await;
        let seen = || ups.iter().map(Upstream::requests).sum::<usize>();

        let post = Request::post(h.url("/m/drop"))
            .body(body("charge the card once"))
            .expect("request");
        let reply = h.call(post).await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
        assert_eq!(reply.json()["error"], "upstream_failed");
        assert_eq!(
            seen(),
            1,
            "the POST reached one replica and was not sent again"
        );

        let get = Request::get(h.url("/m/drop"))
            .body(empty())
            .expect("request");
        let reply = h.call(get).await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
        assert_eq!(
            seen(),
            1 + 3,
            "the GET was tried three times, on both replicas"
        );
        assert!(ups.iter().all(|u| u.requests() >= 1));
    })
    .await;
}

#[tokio::test]
async fn an_ejected_replica_is_probed_and_comes_back_when_it_listens_again() {
    bounded(async {
        let live = Upstream::start().await;
        let dead = dead_addr().await;
        let set = EndpointSet::new(vec![
            Endpoint {
                replica: ReplicaId::new("m-1"),
                addr: dead,
            },
            Endpoint {
                replica: ReplicaId::new("m-2"),
                addr: live.addr,
            },
        ]);
        let (tx, _) = watch::channel(set);
        let h = Harness::start(vec![route(deployment("m", |_| {}), &tx)]).await;
        while !metrics(&h).contains(r#"lull_activator_ejections_total{deployment="m"} 1"#) {
            assert_eq!(h.get("/m/x", None).await.status, StatusCode::OK);
        }
        // The replica comes back on its address; the prober's TCP connect finds it, and round
        // robin sends to it again.
        let back = Upstream::start_on(dead).await;
        while back.requests() == 0 {
            assert_eq!(h.get("/m/x", None).await.status, StatusCode::OK);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}
