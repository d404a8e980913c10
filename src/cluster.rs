//! What `lull controller`, `lull activator` and `lull autoscaler` share on Kubernetes: the
//! client, where the pod runs, logging, stop signals, leadership and the small HTTP endpoints
//! each serves beside its work.

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use lull_kube::lease::{LeaderElector, LeaseConfig};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// File a pod's service account token sits beside, naming the pod's namespace.
const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Namespace of the components when neither `POD_NAMESPACE` nor the service account says.
const FALLBACK_NAMESPACE: &str = "lull-system";

/// Starts logging to stderr, `info` for lull unless `RUST_LOG` says otherwise.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,lull=info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Runs `future` on a multi-threaded runtime.
pub fn block_on<T>(future: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}

/// A client from the pod's service account, or from `KUBECONFIG` outside the cluster.
pub async fn client() -> anyhow::Result<kube::Client> {
    kube::Client::try_default().await.context(
        "cannot reach the Kubernetes API: no in-cluster service account and no usable KUBECONFIG",
    )
}

/// The namespace this pod runs in: `POD_NAMESPACE` (the manifests set it from the downward
/// API), else the service account's, else `lull-system`.
pub fn pod_namespace() -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|ns| !ns.is_empty())
        .or_else(|| {
            std::fs::read_to_string(NAMESPACE_FILE)
                .ok()
                .map(|ns| ns.trim().to_owned())
        })
        .unwrap_or_else(|| FALLBACK_NAMESPACE.to_owned())
}

/// This pod's name (`POD_NAME`, else the host name, which is the pod name in a pod).
pub fn identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("lull-{}", std::process::id()))
}

/// Resolves when SIGTERM or Ctrl-C arrives.
pub async fn stop_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("listening for Ctrl-C")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

/// Campaigns for the Lease `name` in the pod's namespace until `shutdown`; the receiver says
/// whether this pod leads.
pub fn campaign(
    client: kube::Client,
    name: &str,
    shutdown: CancellationToken,
) -> watch::Receiver<bool> {
    let (leading, receiver) = watch::channel(false);
    let config = LeaseConfig::new(&pod_namespace(), name, &identity());
    tracing::info!(lease = name, identity = %config.identity, namespace = %config.namespace, "campaigning for leadership");
    tokio::spawn(LeaderElector::new(client, config).run(leading, shutdown));
    receiver
}

/// Waits until this pod leads; `false` when `shutdown` came first.
pub async fn until_leading(
    leading: &mut watch::Receiver<bool>,
    shutdown: &CancellationToken,
) -> bool {
    tokio::select! {
        result = leading.wait_for(|l| *l) => result.is_ok(),
        () = shutdown.cancelled() => false,
    }
}

/// Resolves when this pod stops leading. A pod that lost its lease exits, so that it never acts
/// beside the new leader; Kubernetes restarts it as a candidate.
pub async fn lost_leadership(mut leading: watch::Receiver<bool>) {
    // An error means the elector is gone, which also ends leadership.
    let _ = leading.wait_for(|l| !*l).await;
}

/// Binds `addr`, naming the flag in the error.
pub async fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({flag})"))
}

/// Serves `router` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("the HTTP endpoint failed")
}

/// `registry` in the Prometheus text format.
pub fn metrics(registry: &Registry) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, registry) {
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
