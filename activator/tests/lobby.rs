//! The lobby: new HTTP/1.1 connections whose first request is for a cold deployment wait
//! there, counted as parked, before hyper serves them; none of them is lost.

mod common;

use std::time::Duration;

use common::{Harness, Upstream, bounded, deployment, raw, route};
use lull_core::{DeploymentKey, EndpointSet, TrafficSource};
use lull_spec::secret::ConfigValue;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Waits until exactly `n` requests of `key` are parked.
async fn parked(h: &Harness, key: &str, n: u32) {
    let key = DeploymentKey::new(key);
    while h.activator.take_snapshot(&key).expect("routed").parked != n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Opens a connection and sends `request` on it without waiting for an answer.
async fn send(h: &Harness, request: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(h.addr).await.expect("connect");
    stream.write_all(request).await.expect("request written");
    stream
}

/// Reads a whole `Connection: close` response.
async fn answer(mut stream: TcpStream) -> String {
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .await
        .expect("the answer arrives");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The value of the metric line that starts with `name`.
fn metric(h: &Harness, name: &str) -> String {
    let mut registry = Registry::default();
    h.activator.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("metrics encode");
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .to_owned()
}

const GET: &[u8] = b"GET /m/x HTTP/1.1\r\nHost: lull\r\nConnection: close\r\n\r\n";

#[tokio::test]
async fn many_cold_requests_wait_counted_as_parked_and_are_all_answered() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(EndpointSet::default());
        let h = Harness::start(vec![route(deployment("m", |_| {}), &tx)]).await;

        let mut waiting = Vec::new();
        for _ in 0..200 {
            waiting.push(send(&h, GET).await);
        }
        parked(&h, "m", 200).await;
        assert_eq!(h.wakes.count(), 1, "one wake for the whole cold period");
        assert_eq!(up.requests(), 0);

        tx.send_replace(up.endpoints("m-1"));
        for stream in waiting {
            let answer = answer(stream).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
        assert_eq!(up.requests(), 200);
        parked(&h, "m", 0).await;
        // Each one's wait, from its arrival in the lobby, is a cold-start wait.
        assert_eq!(
            metric(
                &h,
                "lull_activator_cold_start_wait_seconds_count{deployment=\"m\"}"
            ),
            "200"
        );
    })
    .await;
}

#[tokio::test]
async fn a_request_body_sent_with_the_head_reaches_the_replica_whole() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(EndpointSet::default());
        let h = Harness::start(vec![route(deployment("m", |_| {}), &tx)]).await;

        let body = "x".repeat(10_000);
        let request = format!(
            "POST /m/collect HTTP/1.1\r\nHost: lull\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let stream = send(&h, request.as_bytes()).await;
        parked(&h, "m", 1).await;
        tx.send_replace(up.endpoints("m-1"));
        let answer = answer(stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("10000"), "{answer}");
    })
    .await;
}

#[tokio::test]
async fn a_head_sent_in_pieces_is_read_whole() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(EndpointSet::default());
        let h = Harness::start(vec![route(deployment("m", |_| {}), &tx)]).await;

        let (first, rest) = GET.split_at(7);
        let mut stream = send(&h, first).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        stream.write_all(rest).await.expect("rest written");
        parked(&h, "m", 1).await;
        tx.send_replace(up.endpoints("m-1"));
        let answer = answer(stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    })
    .await;
}

#[tokio::test]
async fn a_request_without_the_key_of_a_protected_deployment_wakes_nothing() {
    bounded(async {
        let (tx, _) = watch::channel(EndpointSet::default());
        let m = deployment("m", |s| {
            s.basic_auth_key = Some(ConfigValue::parse("k3y").expect("a literal key"));
        });
        let h = Harness::start(vec![route(m, &tx)]).await;

        for wrong in ["", "Authorization: Bearer nope\r\n"] {
            let request =
                format!("GET /m/x HTTP/1.1\r\nHost: lull\r\n{wrong}Connection: close\r\n\r\n");
            let (_stream, head) = raw(h.addr, request.as_bytes()).await;
            assert!(head.starts_with("HTTP/1.1 401"), "{head}");
        }
        assert_eq!(h.wakes.count(), 0);
        parked(&h, "m", 0).await;

        // With the key it waits for a replica like any request.
        let _waiting = send(
            &h,
            b"GET /m/x HTTP/1.1\r\nHost: lull\r\nAuthorization: Bearer k3y\r\n\r\n",
        )
        .await;
        parked(&h, "m", 1).await;
        assert_eq!(h.wakes.count(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_graceful_stop_still_answers_requests_waiting_in_the_lobby() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(EndpointSet::default());
        let mut h = Harness::start(vec![route(deployment("m", |_| {}), &tx)]).await;

        let stream = send(&h, GET).await;
        parked(&h, "m", 1).await;
        h.shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send_replace(up.endpoints("m-1"));
        let answer = answer(stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let served = h.served.take().expect("serving").await.expect("no panic");
        assert!(served.is_ok(), "{served:?}");
    })
    .await;
}
