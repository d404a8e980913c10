//! `lull controller`: on Kubernetes, turns each LullDeployment into a Deployment and a Service
//! and keeps its status. Leader-elected: of several replicas only one reconciles.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use lull_kube::controller::{self, Context};
use lull_kube::render::DEFAULT_SECRET_NAME;
use tokio_util::sync::CancellationToken;

use crate::cluster;

/// Arguments of `lull controller`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Runs in the cluster (manifests/) with the service account that manifests/rbac.yaml binds; outside
it, KUBECONFIG's current context is used.

Examples:
  lull controller
  lull controller --namespace ml --secret-name ml-secrets")]
pub struct Args {
    /// Reconcile LullDeployments of this namespace only. Default: every namespace.
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
    /// The Secret, in each deployment's namespace, whose keys `secret:NAME` values name.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_SECRET_NAME)]
    secret_name: String,
    /// Where /healthz is served.
    #[arg(long, default_value = "0.0.0.0:9093", value_name = "ADDR")]
    health: SocketAddr,
}

/// Runs the controller until SIGTERM; exit 1 when it lost its lease or could not start.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    cluster::init_tracing();
    cluster::block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<ExitCode> {
    let client = cluster::client().await?;
    let shutdown = CancellationToken::new();
    let health = cluster::bind(args.health, "--health").await?;
    let router = Router::new().route("/healthz", get(|| async { "ok\n" }));
    tokio::spawn(cluster::serve(health, router, shutdown.clone()));

    let mut leading = cluster::campaign(client.clone(), "lull-controller", shutdown.clone());
    let waiting = tokio::select! {
        leads = cluster::until_leading(&mut leading, &shutdown) => leads,
        result = cluster::stop_signal() => { result?; false }
    };
    if !waiting {
        shutdown.cancel();
        return Ok(ExitCode::SUCCESS);
    }
    tracing::info!("leading: reconciling LullDeployments");
    let ctx = Arc::new(Context::new(
        client,
        Some(cluster::identity()),
        &args.secret_name,
    ));
    let work = controller::run(ctx, args.namespace.as_deref(), shutdown.clone());
    tokio::pin!(work);
    let code = tokio::select! {
        () = &mut work => ExitCode::SUCCESS,
        () = cluster::lost_leadership(leading) => {
            tracing::error!("lost the lease; exiting so that only the new leader reconciles");
            ExitCode::FAILURE
        }
        result = cluster::stop_signal() => { result?; ExitCode::SUCCESS }
    };
    shutdown.cancel();
    // Reconciles in flight finish; the controller stops taking new ones.
    work.await;
    Ok(code)
}
