//! Protocols passed through: WebSocket upgrades, and server-sent events flushed event by
//! event.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Harness, Upstream, bounded, deployment, empty, raw, route, ws};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use lull_core::{ReplicaId, ReplicaLoad};
use tokio::sync::watch;

#[tokio::test]
async fn websocket_frames_are_echoed_through_the_activator() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(up.endpoints("m-1"));
        let h = Harness::start(vec![route(deployment("m", |_| {}), &tx)]).await;
        let head = "GET /m/ws HTTP/1.1\r\nHost: m\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        let (mut socket, answer) = raw(h.addr, head.as_bytes()).await;
        let lower = answer.to_ascii_lowercase();
        assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
        assert!(lower.contains("upgrade: websocket"), "{answer}");
        assert!(lower.contains("connection: upgrade"), "{answer}");
        for message in ["hello", "world", "token by token"] {
            ws::write_frame(&mut socket, message.as_bytes(), true)
                .await
                .expect("frame sent");
            let echoed = ws::read_frame(&mut socket).await.expect("frame echoed");
            assert_eq!(echoed, message.as_bytes());
        }
        // The open tunnel counts as a request in flight to its replica, so a drain waits for it.
        let replica = ReplicaId::new("m-1");
        assert_eq!(h.activator.in_flight(&replica), 1);
        drop(socket);
        while h.activator.in_flight(&replica) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn server_sent_events_arrive_one_by_one_before_the_stream_ends() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(up.endpoints("m-1"));
        let h = Harness::start(vec![route(deployment("m", |_| {}), &tx)]).await;
        let request = Request::get(h.url("/m/stream"))
            .header(header::ACCEPT, "text/event-stream")
            .body(empty())
            .expect("request");
        let response = h.send(request).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        let mut events = up.stream().await;
        let mut body = response.into_body();
        // Each token is sent only after the previous one reached the client: an activator that
        // buffered the response would hang here (and hit the test's time limit).
        for i in 0..5 {
            let event = format!("data: token-{i}\n\n");
            events
                .send_data(Bytes::from(event.clone()))
                .await
                .expect("the activator reads on");
            let frame = body
                .frame()
                .await
                .expect("a frame before the end")
                .expect("no error");
            assert_eq!(frame.into_data().expect("data"), event.as_bytes());
        }
        drop(events);
        assert!(
            body.frame().await.is_none(),
            "the stream ends after its sender"
        );
    })
    .await;
}
