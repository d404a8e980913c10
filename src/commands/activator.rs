//! `lull activator`: the data plane on Kubernetes. Routes each LullDeployment's requests to the
//! pod IPs its Service's EndpointSlices list as ready and not terminating, parks requests at
//! zero and wakes the autoscaler over HTTP (or scales the Deployment itself when the autoscaler
//! cannot be reached). Its admin port serves the traffic report the autoscaler scrapes.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lull_activator::{Activator, ActivatorConfig, Route};
use lull_core::DeploymentKey;
use lull_kube::catalog::Catalog;
use lull_kube::endpoints::{EndpointWatch, MANAGED_SLICES};
use lull_kube::traffic::{self, TRAFFIC_PATH};
use lull_kube::wake::HttpWake;
use lull_spec::Deployment;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cluster;

/// Arguments of `lull activator`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Runs in the cluster behind the lull-activator Service (manifests/activator.yaml). Requests for
deployment NAME go to /NAME/... (or Host: NAME.DOMAIN with --domain).

Examples:
  lull activator --autoscaler-url http://lull-autoscaler.lull-system:9091")]
pub struct Args {
    /// Where requests are accepted.
    #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDR")]
    listen: SocketAddr,
    /// Where /v1/traffic (for the autoscaler), /metrics and /healthz are served.
    #[arg(long, default_value = "0.0.0.0:9090", value_name = "ADDR")]
    admin: SocketAddr,
    /// The autoscaler's wake endpoint base URL.
    #[arg(
        long,
        default_value = "http://lull-autoscaler.lull-system:9091",
        value_name = "URL"
    )]
    autoscaler_url: String,
    /// Route LullDeployments of this namespace only. Default: every namespace.
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
    /// Also route `Host: <name>.<DOMAIN>` to deployment <name>.
    #[arg(long, value_name = "DOMAIN")]
    domain: Option<String>,
    /// How long in-flight and parked requests may take to finish at shutdown.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    drain_timeout: lull_spec::Duration,
}

/// Serves until SIGTERM, then drains; exit 1 when it could not start.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    cluster::init_tracing();
    cluster::block_on(serve(args))
}

/// What the admin endpoint reads.
struct Admin {
    activator: Arc<Activator>,
    routed: Mutex<BTreeSet<DeploymentKey>>,
    registry: Registry,
}

async fn serve(args: Args) -> anyhow::Result<ExitCode> {
    let client = cluster::client().await?;
    let listener = cluster::bind(args.listen, "--listen").await?;
    let admin_listener = cluster::bind(args.admin, "--admin").await?;
    let shutdown = CancellationToken::new();
    let namespace = args.namespace.as_deref();

    let endpoints = EndpointWatch::default();
    let wake = HttpWake::new(&args.autoscaler_url, client.clone());
    let activator = Activator::new(
        ActivatorConfig {
            domain: args.domain.clone(),
            drain_timeout: args.drain_timeout.get(),
        },
        Arc::new(wake.clone()),
    );
    let mut registry = Registry::with_prefix("lull");
    activator.register_metrics(&mut registry);
    let admin = Arc::new(Admin {
        activator: activator.clone(),
        routed: Mutex::new(BTreeSet::new()),
        registry,
    });

    let (catalog, deployments) = Catalog::new();
    let watches = {
        let endpoints = endpoints
            .clone()
            .run(client.clone(), namespace, MANAGED_SLICES);
        let catalog = catalog.run(client, namespace);
        async move {
            tokio::select! {
                result = endpoints => result.context("watching EndpointSlices"),
                result = catalog => result.context("watching LullDeployments"),
            }
        }
    };
    tokio::spawn(route(
        deployments,
        activator.clone(),
        endpoints,
        wake,
        admin.clone(),
    ));
    let router = Router::new()
        .route(TRAFFIC_PATH, get(traffic_report))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(admin);
    let admin_server = tokio::spawn(cluster::serve(admin_listener, router, shutdown.clone()));
    let server = tokio::spawn(activator.serve(listener, shutdown.clone()));
    tracing::info!(listen = %args.listen, admin = %args.admin, autoscaler = %args.autoscaler_url, "activator serving");

    let code = tokio::select! {
        result = watches => {
            tracing::error!(error = ?result.err(), "a watch ended; exiting");
            ExitCode::FAILURE
        }
        result = cluster::stop_signal() => { result?; ExitCode::SUCCESS }
    };
    shutdown.cancel();
    if let Ok(Err(e)) = server.await {
        tracing::warn!(error = %e, "draining was cut short");
    }
    let _ = admin_server.await;
    Ok(code)
}

/// Applies every new set of deployments to the activator and the wake.
async fn route(
    mut deployments: watch::Receiver<Vec<Deployment>>,
    activator: Arc<Activator>,
    endpoints: EndpointWatch,
    wake: HttpWake,
    admin: Arc<Admin>,
) {
    loop {
        let current = deployments.borrow_and_update().clone();
        wake.apply(&current);
        let mut services = BTreeSet::new();
        let routes = current
            .iter()
            .map(|d| {
                let namespace = d.spec.kubernetes.namespace.clone().unwrap_or_default();
                services.insert((namespace.clone(), d.slug.clone()));
                Route {
                    deployment: d.clone(),
                    endpoints: endpoints.subscribe(&namespace, &d.slug),
                }
            })
            .collect();
        activator.apply(routes);
        endpoints.retain(&services);
        *admin.routed.lock().unwrap_or_else(PoisonError::into_inner) = current
            .iter()
            .map(|d| DeploymentKey::new(&d.slug))
            .collect();
        tracing::info!(deployments = current.len(), "routes applied");
        if deployments.changed().await.is_err() {
            return;
        }
    }
}

async fn traffic_report(State(admin): State<Arc<Admin>>) -> Response {
    let keys = admin
        .routed
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    axum::Json(traffic::report(admin.activator.as_ref(), &keys)).into_response()
}

async fn metrics(State(admin): State<Arc<Admin>>) -> Response {
    cluster::metrics(&admin.registry)
}
