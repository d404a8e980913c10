//! The admin endpoint of `lull up`: `GET /v1/deployments` (JSON status) and `GET /metrics`
//! (Prometheus text).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Runtime;

/// The admin routes.
pub fn router(runtime: Arc<Runtime>) -> Router {
    Router::new()
        .route("/v1/deployments", get(deployments))
        .route("/metrics", get(metrics))
        .with_state(runtime)
}

/// Serves the admin routes until `shutdown`.
pub async fn serve(
    runtime: Arc<Runtime>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(runtime))
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
