//! Warm requests: routing, streaming both ways, forwarded headers, the activator's own errors.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Harness, Upstream, bounded, deployment, empty, route};
use http::{Request, StatusCode, Version};
use http_body_util::BodyExt;
use http_body_util::channel::Channel;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lull_activator::ActivatorConfig;
use lull_core::EndpointSet;
use tokio::sync::watch;

/// The path the replica saw for a GET through the activator.
async fn forwarded_path(h: &Harness, path: &str, host: Option<&str>) -> String {
    let reply = h.get(path, host).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    reply.json()["path"]
        .as_str()
        .expect("the replica echoes the path")
        .to_owned()
}

#[tokio::test]
async fn routes_by_path_alias_host_and_domain() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(up.endpoints("sentiment-1"));
        let sentiment = deployment("sentiment", |s| {
            s.aliases = vec!["production".to_owned()];
            s.routing.hosts = vec!["api.example.org".to_owned(), "*.ml.example.org".to_owned()];
        });
        let kept = deployment("kept", |s| {
            s.routing.path_prefix = Some("/v1/models/kept".to_owned());
            s.routing.rewrite_path = false;
        });
        let h = Harness::with_config(
            vec![route(sentiment, &tx), route(kept, &tx)],
            ActivatorConfig {
                domain: Some("models.example.com".to_owned()),
                drain_timeout: Duration::from_secs(5),
            },
        )
        .await;

        assert_eq!(
            forwarded_path(&h, "/sentiment/predict?x=1&y=2", None).await,
            "/predict?x=1&y=2"
        );
        assert_eq!(forwarded_path(&h, "/sentiment", None).await, "/");
        assert_eq!(forwarded_path(&h, "/sentiment?q=1", None).await, "/?q=1");
        assert_eq!(
            forwarded_path(&h, "/production/predict", None).await,
            "/predict"
        );
        assert_eq!(
            forwarded_path(&h, "/v1/models/kept/infer?a", None).await,
            "/v1/models/kept/infer?a"
        );
        assert_eq!(forwarded_path(&h, "/kept/x", None).await, "/kept/x");
        // Host routes forward the path as it is.
        let hosts = [
            "sentiment.models.example.com",
            "production.models.example.com:8080",
            "api.example.org",
            "eu.ml.example.org",
        ];
        for host in hosts {
            assert_eq!(
                forwarded_path(&h, "/predict?z", Some(host)).await,
                "/predict?z",
                "{host}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn unknown_deployments_get_a_json_404_listing_the_known_ones() {
    bounded(async {
        let (tx, _) = watch::channel(EndpointSet::default());
        let h = Harness::start(vec![
            route(deployment("sentiment", |_| {}), &tx),
            route(deployment("vision", |_| {}), &tx),
        ])
        .await;
        for path in ["/nope/x", "/", "/sentimental"] {
            let reply = h.get(path, None).await;
            assert_eq!(reply.status, StatusCode::NOT_FOUND);
            assert_eq!(reply.headers["content-type"], "application/json");
            let body = reply.json();
            assert_eq!(body["error"], "unknown_deployment");
            assert_eq!(
                body["deployments"],
                serde_json::json!(["sentiment", "vision"])
            );
            assert!(body["message"].as_str().expect("a message").contains(path));
        }
        assert_eq!(h.wakes.count(), 0);
    })
    .await;
}

#[tokio::test]
async fn response_chunks_reach_the_client_one_by_one() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(up.endpoints("m-1"));
        let h = Harness::start(vec![route(deployment("m", |_| {}), &tx)]).await;
        let request = Request::get(h.url("/m/stream"))
            .body(empty())
            .expect("request");
        let (response, mut chunks) = tokio::join!(h.send(request), up.stream());
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        for i in 0..5 {
            let chunk = Bytes::from(format!("chunk {i}\n"));
            chunks
                .send_data(chunk.clone())
                .await
                .expect("the client reads");
            // The replica has not finished: the chunk can only arrive if it was passed on alone.
            let frame = body
                .frame()
                .await
                .expect("a frame before the end")
                .expect("no error");
            assert_eq!(frame.into_data().expect("data"), chunk);
        }
        drop(chunks);
        assert!(
            body.frame().await.is_none(),
            "the body ends when the replica's does"
        );
    })
    .await;
}

#[tokio::test]
async fn request_bodies_stream_through_and_large_posts_are_echoed() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(up.endpoints("m-1"));
        let h = Harness::start(vec![route(deployment("m", |_| {}), &tx)]).await;

        // Interleaved: each chunk comes back before the next is sent, so neither direction
        // waits for a whole body.
        let (mut sender, upload) = Channel::<Bytes, std::convert::Infallible>::new(1);
        let request = Request::post(h.url("/m/echo"))
            .body(upload.boxed())
            .expect("request");
        let response = tokio::spawn({
            let client = h.client.clone();
            async move { client.request(request).await }
        });
        sender
            .send_data(Bytes::from_static(b"first"))
            .await
            .expect("sent");
        let response = response.await.expect("no panic").expect("answered");
        let mut body = response.into_body();
        for chunk in ["first", "second", "third"] {
            if chunk != "first" {
                sender.send_data(Bytes::from(chunk)).await.expect("sent");
            }
            let mut got = Vec::new();
            while got.len() < chunk.len() {
                let frame = body.frame().await.expect("more").expect("no error");
                got.extend_from_slice(&frame.into_data().expect("data"));
            }
            assert_eq!(got, chunk.as_bytes());
        }
        drop(sender);
        assert!(body.frame().await.is_none());

        // 16 MiB, sent and received whole.
        let big: Vec<u8> = (0..16 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let request = Request::post(h.url("/m/echo"))
            .body(common::body(big.clone()))
            .expect("request");
        let reply = h.call(request).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(
            reply.body == big,
            "the echo matches ({} bytes back)",
            reply.body.len()
        );
    })
    .await;
}

#[tokio::test]
async fn forwarded_headers_are_set_and_hop_by_hop_ones_dropped() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(up.endpoints("m-1"));
        let h = Harness::start(vec![route(deployment("m", |_| {}), &tx)]).await;

        let request = Request::get(h.url("/m/headers"))
            .header("host", "public.example")
            .header("x-forwarded-for", "203.0.113.9")
            .header("connection", "keep-alive, x-hop")
            .header("x-hop", "1")
            .header("proxy-authorization", "Basic eA==")
            .header("authorization", "Bearer kept")
            .body(empty())
            .expect("request");
        let reply = h.call(request).await;
        assert_eq!(reply.status, StatusCode::OK);
        let headers = &reply.json()["headers"];
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "public.example");
        assert_eq!(headers["host"], "public.example");
        assert_eq!(headers["authorization"], "Bearer kept");
        assert!(headers.get("x-hop").is_none(), "{headers}");
        assert!(headers.get("proxy-authorization").is_none(), "{headers}");

        let reply = h.get("/m/plain", None).await;
        assert_eq!(reply.json()["headers"]["x-forwarded-for"], "127.0.0.1");
    })
    .await;
}

#[tokio::test]
async fn h2c_clients_are_served() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(up.endpoints("m-1"));
        let h = Harness::start(vec![route(deployment("m", |_| {}), &tx)]).await;
        let client: Client<_, common::ClientBody> = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http();
        let request = Request::get(h.url("/m/over-h2?x=1"))
            .body(empty())
            .expect("request");
        let response = client.request(request).await.expect("answered over h2c");
        assert_eq!(response.version(), Version::HTTP_2);
        assert_eq!(response.status(), StatusCode::OK);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(json["path"], "/over-h2?x=1");
        assert_eq!(json["headers"]["x-forwarded-host"], format!("{}", h.addr));
    })
    .await;
}

#[tokio::test]
async fn replica_failures_answer_502_and_504() {
    bounded(async {
        // A port with nothing listening: connection refused.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let dead = closed.local_addr().expect("address");
        drop(closed);
        let (dead_tx, _) = watch::channel(common::endpoint_set("dead-1", dead));
        let up = Upstream::start().await;
        let (slow_tx, _) = watch::channel(up.endpoints("slow-1"));
        let slow = deployment("slow", |s| {
            s.activator.timeouts.response_header = lull_spec::Duration::from_millis(200);
        });
        let small = deployment("small", |s| {
            s.activator.max_request_body = "1Ki".parse().expect("quantity");
        });
        let h = Harness::start(vec![
            route(deployment("dead", |_| {}), &dead_tx),
            route(slow, &slow_tx),
            route(small, &slow_tx),
        ])
        .await;

        let reply = h.get("/dead/x", None).await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
        assert_eq!(reply.json()["error"], "upstream_connect_failed");

        let reply = h.get("/slow/slow", None).await;
        assert_eq!(
            reply.status,
            StatusCode::GATEWAY_TIMEOUT,
            "{}",
            reply.text()
        );
        assert_eq!(reply.json()["error"], "upstream_timeout");

        let request = Request::post(h.url("/small/echo"))
            .body(common::body(vec![0u8; 4096]))
            .expect("request");
        let reply = h.call(request).await;
        assert_eq!(
            reply.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{}",
            reply.text()
        );
        assert_eq!(reply.json()["error"], "request_too_large");
    })
    .await;
}

#[tokio::test]
async fn metrics_are_registered_under_lull_names() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(up.endpoints("m-1"));
        let h = Harness::start(vec![route(deployment("m", |_| {}), &tx)]).await;
        assert_eq!(h.get("/m/x", None).await.status, StatusCode::OK);
        let mut registry = prometheus_client::registry::Registry::default();
        h.activator.register_metrics(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        for line in [
            "lull_activator_requests_total{deployment=\"m\"} 1",
            "lull_activator_responses_total{deployment=\"m\",class=\"2xx\"} 1",
            "lull_activator_in_flight{deployment=\"m\"} 0",
            "lull_activator_parked{deployment=\"m\"} 0",
            "lull_activator_wakes_total{deployment=\"m\"} 0",
            "lull_activator_request_duration_seconds_count{deployment=\"m\"} 1",
            "lull_activator_cold_start_wait_seconds_count{deployment=\"m\"} 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    })
    .await;
}
