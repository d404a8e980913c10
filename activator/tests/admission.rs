//! What the activator refuses before a replica sees it: a missing or wrong key (401), too many
//! requests (429), a body over the limit (413) and a head over the limit (431).

mod common;

use base64::Engine;
use common::{Harness, Upstream, body, bounded, deployment, empty, raw, route};
use http::{Request, StatusCode, header};
use lull_spec::secret::{ConfigValue, Secret, SecretName, SecretStore};
use lull_spec::{RateLimit, RateLimits};
use std::sync::Arc;
use tokio::sync::watch;

struct OneSecret;

impl SecretStore for OneSecret {
    fn get(&self, name: &SecretName) -> lull_spec::secret::Result<Option<Secret>> {
        Ok((name.as_str() == "apiKey").then(|| Secret::new("k3y-from-the-store")))
    }
}

fn with_key(key: &str) -> Request<common::ClientBody> {
    Request::get("/")
        .header(header::AUTHORIZATION, key)
        .body(empty())
        .expect("request")
}

#[tokio::test]
async fn a_protected_deployment_needs_its_key() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(up.endpoints("m-1"));
        let protected = deployment("m", |s| {
            s.basic_auth_key = Some(ConfigValue::parse("secret:apiKey").expect("reference"));
        });
        let public = deployment("pub", |s| {
            s.basic_auth_key = Some(ConfigValue::parse("secret:apiKey").expect("reference"));
            s.is_external = true;
        });
        let h = Harness::start(vec![]).await;
        h.activator.set_secrets(Arc::new(OneSecret));
        h.activator
            .apply(vec![route(protected, &tx), route(public, &tx)]);

        let call = |authorization: Option<String>| {
            let mut request = Request::get(h.url("/m/x"));
            if let Some(value) = authorization {
                request = request.header(header::AUTHORIZATION, value);
            }
            h.call(request.body(empty()).expect("request"))
        };
        // None.
        let none = call(None).await;
        assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{}", none.text());
        assert_eq!(none.json()["error"], "unauthorized");
        let challenges: Vec<_> = none
            .headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect();
        assert!(
            challenges.iter().any(|c| c.starts_with("Basic realm=")),
            "{challenges:?}"
        );
        assert!(
            challenges.iter().any(|c| c.starts_with("Bearer realm=")),
            "{challenges:?}"
        );
        // Wrong.
        for wrong in [
            "Bearer nope",
            "Bearer k3y-from-the-stor",
            "Basic Zm9vOmJhcg==",
        ] {
            let reply = call(Some(wrong.to_owned())).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{wrong}");
        }
        assert_eq!(up.requests(), 0, "no refused request reached the replica");
        // Right, both ways; the key does not travel on to the replica.
        let basic = base64::engine::general_purpose::STANDARD.encode("anyone:k3y-from-the-store");
        for right in [
            "Bearer k3y-from-the-store".to_owned(),
            format!("Basic {basic}"),
        ] {
            let reply = call(Some(right.clone())).await;
            assert_eq!(reply.status, StatusCode::OK, "{right}: {}", reply.text());
            assert!(reply.json()["headers"].get("authorization").is_none());
        }
        // isExternal: served without a key.
        assert_eq!(h.get("/pub/x", None).await.status, StatusCode::OK);
        assert_eq!(up.requests(), 3);
    })
    .await;
}

#[tokio::test]
async fn a_key_that_cannot_be_read_refuses_everyone() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(up.endpoints("m-1"));
        let m = deployment("m", |s| {
            s.basic_auth_key = Some(ConfigValue::parse("secret:missing").expect("reference"));
        });
        let h = Harness::start(vec![]).await;
        h.activator.set_secrets(Arc::new(OneSecret));
        h.activator.apply(vec![route(m, &tx)]);
        let mut request = with_key("Bearer anything");
        *request.uri_mut() = h.url("/m/x").parse().expect("uri");
        let reply = h.call(request).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reply.json()["error"], "auth_unavailable");
        assert_eq!(up.requests(), 0);
    })
    .await;
}

#[tokio::test]
async fn requests_over_the_rate_limit_get_429_with_retry_after() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(up.endpoints("m-1"));
        let limit = |n| RateLimit {
            requests_per_second: 1,
            burst: Some(n),
        };
        let per_deployment = deployment("d", |s| {
            s.activator.rate_limit = RateLimits {
                per_deployment: Some(limit(3)),
                per_client_ip: None,
            };
        });
        let per_client = deployment("c", |s| {
            s.activator.rate_limit = RateLimits {
                per_deployment: None,
                per_client_ip: Some(limit(2)),
            };
        });
        let h = Harness::start(vec![route(per_deployment, &tx), route(per_client, &tx)]).await;
        for (path, burst, code) in [
            ("/d/x", 3, "rate_limited"),
            ("/c/x", 2, "client_rate_limited"),
        ] {
            for _ in 0..burst {
                assert_eq!(h.get(path, None).await.status, StatusCode::OK, "{path}");
            }
            let over = h.get(path, None).await;
            assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS, "{path}");
            assert_eq!(over.json()["error"], code);
            let retry_after: u64 = over.headers[header::RETRY_AFTER]
                .to_str()
                .expect("ascii")
                .parse()
                .expect("seconds");
            assert!((1..=2).contains(&retry_after), "{retry_after}");
        }
        assert_eq!(up.requests(), 5);
    })
    .await;
}

#[tokio::test]
async fn bodies_over_max_request_body_get_413() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(up.endpoints("m-1"));
        let m = deployment("m", |s| {
            s.activator.max_request_body = "1Ki".parse().expect("quantity");
        });
        let h = Harness::start(vec![route(m, &tx)]).await;
        // Declared too large: refused before anything is read or sent.
        let declared = Request::post(h.url("/m/echo"))
            .body(body(vec![b'x'; 4096]))
            .expect("request");
        let reply = h.call(declared).await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(reply.json()["error"], "request_too_large");
        assert_eq!(up.requests(), 0);
        // Streamed without a length: cut off once past the limit.
        let (mut sender, streamed) =
            http_body_util::channel::Channel::<bytes::Bytes, std::convert::Infallible>::new(4);
        let feeder = tokio::spawn(async move {
            for _ in 0..8 {
                if sender
                    .send_data(bytes::Bytes::from(vec![b'y'; 512]))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        let chunked = Request::post(h.url("/m/collect"))
            .body(http_body_util::BodyExt::boxed(streamed))
            .expect("request");
        let reply = h.call(chunked).await;
        assert_eq!(
            reply.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{}",
            reply.text()
        );
        feeder.abort();
        // Within the limit, it passes.
        let fits = Request::post(h.url("/m/collect"))
            .body(body(vec![b'z'; 1024]))
            .expect("request");
        let reply = h.call(fits).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.text(), "1024");
    })
    .await;
}

#[tokio::test]
async fn a_request_head_over_the_limit_gets_431() {
    bounded(async {
        let up = Upstream::start().await;
        let (tx, _) = watch::channel(up.endpoints("m-1"));
        let h = Harness::start(vec![route(deployment("m", |_| {}), &tx)]).await;
        let big = "a".repeat(80 * 1024);
        let head = format!("GET /m/x HTTP/1.1\r\nHost: m\r\nX-Big: {big}\r\n\r\n");
        let (_, answer) = raw(h.addr, head.as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 431"),
            "{}",
            answer.lines().next().unwrap_or_default()
        );
        // A head within the limit is served.
        let fine = format!(
            "GET /m/x HTTP/1.1\r\nHost: m\r\nX-Big: {}\r\n\r\n",
            &big[..8192]
        );
        let (_, answer) = raw(h.addr, fine.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(up.requests(), 1);
    })
    .await;
}
