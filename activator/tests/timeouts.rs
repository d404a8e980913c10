//! `activator.timeouts` while a response streams: `idle` cuts a body that pauses too long, and
//! `total` bounds the whole exchange, response head included.

mod common;

use bytes::Bytes;
use common::{Harness, Upstream, bounded, deployment, empty, route};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::watch;

#[tokio::test]
async fn a_response_that_pauses_longer_than_idle_is_cut() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(up.endpoints("m-1"));
        let m = deployment("m", |s| {
            s.activator.timeouts.idle = "300ms".parse().expect("duration");
        });
        let h = Harness::start(vec![route(m, &tx)]).await;
        let response = h
            .send(
                Request::get(h.url("/m/stream"))
                    .body(empty())
                    .expect("request"),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let mut events = up.stream().await;
        events
            .send_data(Bytes::from_static(b"data: first\n\n"))
            .await
            .expect("the activator reads on");
        let mut body = response.into_body();
        let first = body.frame().await.expect("a frame").expect("in time");
        assert_eq!(first.into_data().expect("data"), "data: first\n\n");
        // The replica goes quiet (its sender held open): the activator cuts the body.
        let cut = body.frame().await;
        assert!(matches!(cut, Some(Err(_))), "{cut:?}");
        drop(events);
    })
    .await;
}

#[tokio::test]
async fn a_request_over_total_gets_504() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(up.endpoints("m-1"));
        let m = deployment("m", |s| {
            s.activator.timeouts.total = Some("300ms".parse().expect("duration"));
        });
        let h = Harness::start(vec![route(m, &tx)]).await;
        // `/slow` is never released: no response head comes.
        let reply = h.get("/m/slow", None).await;
        assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(reply.json()["error"], "request_timeout");
    })
    .await;
}
