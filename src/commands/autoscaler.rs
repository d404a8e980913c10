//! `lull autoscaler`: the control plane on Kubernetes. Leader-elected; the leader scrapes every
//! activator pod's traffic, reads cpu, memory and GPU from Prometheus when `--prometheus` is
//! given, decides, and writes each Deployment's scale subresource. Its `/v1/wake/NAME` takes
//! the activators' wakes; `/readyz` is ready only on the leader, so the lull-autoscaler Service
//! sends wakes to the leader alone.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lull_autoscaler::{Autoscaler, AutoscalerConfig, ChannelWaker, wake_channel};
use lull_core::{Backend, DeploymentKey, MetricSource, Wake};
use lull_kube::catalog::Catalog;
use lull_kube::crd::LastDecision;
use lull_kube::endpoints::{EndpointWatch, MANAGED_SLICES, SERVICE_NAME_LABEL};
use lull_kube::scale::{self, KubeBackend};
use lull_kube::traffic::{ADMIN_PORT_NAME, ActivatorTraffic};
use lull_prometheus::{Endpoint, PrometheusConfig, PrometheusSource};
use lull_spec::Deployment;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cluster;

/// Arguments of `lull autoscaler`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Without --prometheus only traffic (concurrency, rps, requestDuration) drives scaling; cpu,
memory and GPU targets then have no samples and never scale a deployment down.

Examples:
  lull autoscaler
  lull autoscaler --prometheus http://prometheus.monitoring:9090")]
pub struct Args {
    /// Where /v1/wake/NAME, /v1/deployments, /readyz, /healthz and /metrics are served.
    #[arg(long, default_value = "0.0.0.0:9091", value_name = "ADDR")]
    listen: SocketAddr,
    /// Scale LullDeployments of this namespace only. Default: every namespace.
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
    /// Prometheus to read cpu, memory and GPU use from.
    #[arg(long, value_name = "URL")]
    prometheus: Option<String>,
    /// The activators' Service, in the autoscaler's namespace; its ready pods are scraped.
    #[arg(long, default_value = "lull-activator", value_name = "NAME")]
    activator_service: String,
    /// How often the autoscaler decides (and scrapes the activators).
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    tick: lull_spec::Duration,
}

/// Runs until SIGTERM; exit 1 when it lost its lease or could not start.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    cluster::init_tracing();
    cluster::block_on(serve(args))
}

struct Api {
    autoscaler: Arc<Autoscaler>,
    backend: Arc<KubeBackend>,
    waker: ChannelWaker,
    leading: watch::Receiver<bool>,
    registry: Registry,
}

async fn serve(args: Args) -> anyhow::Result<ExitCode> {
    let client = cluster::client().await?;
    let listener = cluster::bind(args.listen, "--listen").await?;
    let shutdown = CancellationToken::new();
    let namespace = args.namespace.as_deref();
    let own_namespace = cluster::pod_namespace();
    let tick = args.tick.get();

    let endpoints = EndpointWatch::default();
    let backend = KubeBackend::new(client.clone(), endpoints.clone());
    let activators = EndpointWatch::on_port(ADMIN_PORT_NAME);
    let traffic =
        ActivatorTraffic::new(activators.subscribe(&own_namespace, &args.activator_service));
    let prometheus = match &args.prometheus {
        Some(url) => Some(Arc::new(
            PrometheusSource::new(PrometheusConfig::new(Endpoint::new(url.clone())))
                .context("cannot use --prometheus")?,
        )),
        None => {
            tracing::info!("no --prometheus: cpu, memory and GPU targets have no samples");
            None
        }
    };
    let (waker, wakes) = wake_channel();
    let autoscaler = Autoscaler::new(
        backend.clone(),
        traffic.clone(),
        prometheus.clone().map(|p| p as Arc<dyn MetricSource>),
        wakes,
        AutoscalerConfig { tick },
    );
    let mut registry = Registry::with_prefix("lull");
    autoscaler.register_metrics(&mut registry);
    if let Some(p) = &prometheus {
        p.register_metrics(&mut registry);
    }

    let (catalog, deployments) = Catalog::new();
    let activator_selector = format!("{SERVICE_NAME_LABEL}={}", args.activator_service);
    // The watches run on every candidate, so a new leader starts from a warm view.
    let watches = {
        let slices = endpoints
            .clone()
            .run(client.clone(), namespace, MANAGED_SLICES);
        let activator_slices =
            activators.run(client.clone(), Some(&own_namespace), &activator_selector);
        let counts = backend.clone().run(namespace);
        let catalog = catalog.run(client.clone(), namespace);
        async move {
            tokio::select! {
                result = slices => result.context("watching EndpointSlices"),
                result = activator_slices => result.context("watching the activators' EndpointSlices"),
                result = counts => result.context("watching Deployments"),
                result = catalog => result.context("watching LullDeployments"),
            }
        }
    };
    tokio::spawn(apply(
        deployments.clone(),
        autoscaler.clone(),
        backend.clone(),
        prometheus,
    ));

    let mut leading = cluster::campaign(client.clone(), "lull-autoscaler", shutdown.clone());
    let api = Arc::new(Api {
        autoscaler: autoscaler.clone(),
        backend: backend.clone(),
        waker,
        leading: leading.clone(),
        registry,
    });
    let router = Router::new()
        .route("/v1/wake/{deployment}", post(wake))
        .route("/v1/deployments", get(status))
        .route("/readyz", get(ready))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(api);
    let server = tokio::spawn(cluster::serve(listener, router, shutdown.clone()));

    let code = tokio::select! {
        result = watches => {
            tracing::error!(error = ?result.err(), "a watch ended; exiting");
            ExitCode::FAILURE
        }
        result = cluster::stop_signal() => { result?; ExitCode::SUCCESS }
        code = lead(&mut leading, &shutdown, autoscaler, traffic, deployments, client, tick) => code,
    };
    shutdown.cancel();
    let _ = server.await;
    Ok(code)
}

/// Waits for the lease, then scales until it is lost (exit 1: only the new leader may act).
async fn lead(
    leading: &mut watch::Receiver<bool>,
    shutdown: &CancellationToken,
    autoscaler: Arc<Autoscaler>,
    traffic: Arc<ActivatorTraffic>,
    deployments: watch::Receiver<Vec<Deployment>>,
    client: kube::Client,
    tick: std::time::Duration,
) -> ExitCode {
    if !cluster::until_leading(leading, shutdown).await {
        return ExitCode::SUCCESS;
    }
    tracing::info!("leading: scaling");
    let stop = shutdown.child_token();
    tokio::spawn(traffic.run(tick, stop.clone()));
    tokio::spawn(record_decisions(
        autoscaler.clone(),
        deployments,
        client,
        tick,
        stop.clone(),
    ));
    tokio::spawn(autoscaler.run(stop));
    cluster::lost_leadership(leading.clone()).await;
    tracing::error!("lost the lease; exiting so that only the new leader scales");
    ExitCode::FAILURE
}

/// Applies every new set of deployments to the backend, the metric source and the autoscaler.
async fn apply(
    mut deployments: watch::Receiver<Vec<Deployment>>,
    autoscaler: Arc<Autoscaler>,
    backend: Arc<KubeBackend>,
    prometheus: Option<Arc<PrometheusSource>>,
) {
    loop {
        let current = deployments.borrow_and_update().clone();
        backend.apply(&current);
        if let Some(p) = &prometheus
            && let Err(error) = p.apply(&current)
        {
            tracing::warn!(%error, "a query: override is wrong; the previous queries stay");
        }
        autoscaler.apply(&current);
        if deployments.changed().await.is_err() {
            return;
        }
    }
}

/// Writes each deployment's latest change of count into its LullDeployment's status.
async fn record_decisions(
    autoscaler: Arc<Autoscaler>,
    deployments: watch::Receiver<Vec<Deployment>>,
    client: kube::Client,
    tick: std::time::Duration,
    stop: CancellationToken,
) {
    let mut recorded: BTreeMap<DeploymentKey, u32> = BTreeMap::new();
    let mut ticks = tokio::time::interval(tick);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let current = deployments.borrow().clone();
        for d in &current {
            let key = DeploymentKey::new(&d.slug);
            let Some(decision) = autoscaler.status(&key).and_then(|s| s.last_decision) else {
                continue;
            };
            // Only a new count is news; the reason's numbers change every tick.
            if recorded.get(&key) == Some(&decision.desired) {
                continue;
            }
            let namespace = d.spec.kubernetes.namespace.clone().unwrap_or_default();
            let last = LastDecision::now(decision.desired, decision.reason.to_string());
            match scale::record_decision(client.clone(), &namespace, &d.slug, &last).await {
                Ok(()) => {
                    recorded.insert(key, decision.desired);
                }
                Err(error) => {
                    tracing::warn!(deployment = %key, %error, "cannot record the decision")
                }
            }
        }
        recorded.retain(|key, _| current.iter().any(|d| d.slug == key.as_str()));
    }
}

async fn wake(State(api): State<Arc<Api>>, Path(deployment): Path<String>) -> Response {
    if !*api.leading.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not the leader\n").into_response();
    }
    let key = DeploymentKey::new(&deployment);
    if !api.autoscaler.deployments().contains(&key) {
        return (
            StatusCode::NOT_FOUND,
            format!("no deployment `{deployment}`\n"),
        )
            .into_response();
    }
    api.waker.wake(&key);
    (StatusCode::ACCEPTED, "waking\n").into_response()
}

/// What the autoscaler last did for each deployment, and what the backend sees of it.
async fn status(State(api): State<Arc<Api>>) -> Response {
    let deployments: Vec<serde_json::Value> = api
        .autoscaler
        .deployments()
        .iter()
        .map(|key| {
            serde_json::json!({
                "name": key,
                "scaling": api.autoscaler.status(key),
                "backend": api.backend.status(key),
            })
        })
        .collect();
    axum::Json(serde_json::json!({
        "leading": *api.leading.borrow(),
        "deployments": deployments,
    }))
    .into_response()
}

async fn ready(State(api): State<Arc<Api>>) -> Response {
    if *api.leading.borrow() {
        (StatusCode::OK, "leading\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "standby\n").into_response()
    }
}

async fn metrics(State(api): State<Arc<Api>>) -> Response {
    cluster::metrics(&api.registry)
}
