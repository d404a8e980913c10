//! The admin endpoint of `lull up`: `GET /v1/deployments` (JSON status) and `GET /metrics`
//! (Prometheus text). With a token, every route asks for `Authorization: Bearer <token>`,
//! compared in constant time.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lull_spec::secret::Secret;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Runtime;

/// The admin routes; only for holders of `token` when one is given.
pub fn router(runtime: Arc<Runtime>, token: Option<Secret>) -> Router {
    let router = Router::new()
        .route("/v1/deployments", get(deployments))
        .route("/metrics", get(metrics))
        .with_state(runtime);
    protect(router, token)
}

/// `router` answering only requests that carry `token`, when one is given.
fn protect(router: Router, token: Option<Secret>) -> Router {
    match token {
        Some(token) => router.layer(middleware::from_fn_with_state(
            Arc::new(token),
            require_token,
        )),
        None => router,
    }
}

/// Serves the admin routes until `shutdown`.
pub async fn serve(
    runtime: Arc<Runtime>,
    listener: TcpListener,
    token: Option<Secret>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(runtime, token))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn deployments(State(runtime): State<Arc<Runtime>>) -> Response {
    axum::Json(serde_json::json!({ "deployments": runtime.status() })).into_response()
}

async fn metrics(State(runtime): State<Arc<Runtime>>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, runtime.registry()) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response(),
    }
}

async fn require_token(State(token): State<Arc<Secret>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    match presented {
        Some(presented) if bool::from(presented.ct_eq(token.expose().as_bytes())) => {
            next.run(request).await
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, r#"Bearer realm="lull admin""#)],
            "the admin endpoint needs `Authorization: Bearer <token>` (lull up --admin-token)\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// The status line of a GET of `/x` with `authorization`, if any.
    async fn status(addr: std::net::SocketAddr, authorization: Option<&str>) -> String {
        let header = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).expect("connect");
            write!(
                stream,
                "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n{header}\r\n"
            )
            .expect("request");
            let mut answer = String::new();
            stream.read_to_string(&mut answer).expect("answer");
            answer.lines().next().unwrap_or_default().to_owned()
        })
        .await
        .expect("no panic")
    }

    #[tokio::test]
    async fn a_token_is_asked_for_when_one_is_set() {
        let routes = || Router::new().route("/x", get(|| async { "ok" }));
        let protected = protect(routes(), Some(Secret::new("s3cret")));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let stop = CancellationToken::new();
        let shutdown = stop.clone().cancelled_owned();
        let served = tokio::spawn(async move {
            axum::serve(listener, protected)
                .with_graceful_shutdown(shutdown)
                .await
        });
        assert_eq!(status(addr, None).await, "HTTP/1.1 401 Unauthorized");
        assert_eq!(
            status(addr, Some("Bearer nope")).await,
            "HTTP/1.1 401 Unauthorized"
        );
        assert_eq!(
            status(addr, Some("Basic s3cret")).await,
            "HTTP/1.1 401 Unauthorized"
        );
        assert_eq!(status(addr, Some("Bearer s3cret")).await, "HTTP/1.1 200 OK");
        stop.cancel();
        served.await.expect("no panic").expect("served");

        let open = protect(routes(), None);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let stop = CancellationToken::new();
        let shutdown = stop.clone().cancelled_owned();
        let served = tokio::spawn(async move {
            axum::serve(listener, open)
                .with_graceful_shutdown(shutdown)
                .await
        });
        assert_eq!(status(addr, None).await, "HTTP/1.1 200 OK");
        stop.cancel();
        served.await.expect("no panic").expect("served");
    }
}
