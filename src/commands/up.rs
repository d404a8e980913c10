//! `lull up`: run deployments on this machine: the activator, the autoscaler and the replicas
//! in one process, until Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use lull_prometheus::{Auth, Endpoint, PodNaming, PrometheusConfig};
use lull_spec::Deployment;
use lull_spec::secret::{ChainedStore, ConfigValue, EnvSecretStore, Secret, SecretStore};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::commands::report;
use crate::runtime::{Runtime, Settings, admin, reload};
use crate::secret_store::FileSecretStore;

/// Arguments of `lull up`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  lull up examples/
  lull up specs/ --listen 0.0.0.0:8080 --domain models.example.com
  curl http://127.0.0.1:8080/sentiment/predict")]
pub struct Args {
    /// Spec files, or directories whose *.yaml and *.yml files are loaded.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Where the activator accepts requests.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: SocketAddr,
    /// Where the admin endpoint serves /v1/deployments and /metrics. Beyond loopback it needs
    /// --admin-token (or $LULL_ADMIN_TOKEN).
    #[arg(long, default_value = "127.0.0.1:8081", value_name = "ADDR")]
    admin: SocketAddr,
    /// Token the admin endpoint asks for (`Authorization: Bearer <token>`), as a secret
    /// reference; $LULL_ADMIN_TOKEN holds the token itself instead.
    #[arg(long, value_name = "secret:NAME")]
    admin_token: Option<String>,
    /// Log every request (deployment, method, target, client, status, replica, duration) at
    /// info level under the target lull::access.
    #[arg(long)]
    access_log: bool,
    /// Also route `Host: <name>.<DOMAIN>` to deployment <name>.
    #[arg(long, value_name = "DOMAIN")]
    domain: Option<String>,
    /// How often the autoscaler decides.
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    tick: lull_spec::Duration,
    /// How long in-flight and parked requests may take to finish at shutdown.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    drain_timeout: lull_spec::Duration,
    /// Measure cpu, memory, GPU and request duration with the Prometheus at URL instead of
    /// /proc; docs/prometheus.md says which series it reads.
    #[arg(long, value_name = "URL")]
    prometheus: Option<String>,
    /// Credential for --prometheus, as a secret reference: a bearer token, or the password
    /// with --prometheus-user.
    #[arg(long, value_name = "secret:NAME", requires = "prometheus")]
    prometheus_auth: Option<String>,
    /// User for basic auth to --prometheus; the password is --prometheus-auth.
    #[arg(long, value_name = "USER", requires = "prometheus_auth")]
    prometheus_user: Option<String>,
    /// CA certificates (PEM) to trust for an https --prometheus, beside the system's.
    #[arg(long, value_name = "FILE", requires = "prometheus")]
    prometheus_ca: Option<PathBuf>,
}

/// Runs `lull up` until Ctrl-C or SIGTERM; exit 0 after a clean stop.
pub fn run(args: Args, state_dir: &Path) -> anyhow::Result<ExitCode> {
    let catalog = reload::load(&args.paths);
    report::print_diagnostics(&catalog.diagnostics);
    let deployments = match catalog.into_valid() {
        Ok((deployments, _)) => deployments,
        Err(_) => {
            eprintln!("lull: the specs have errors; nothing was started");
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.prometheus.is_some() {
        let errors = lull_prometheus::check(&deployments);
        for e in &errors {
            eprintln!("error: {e}");
        }
        if !errors.is_empty() {
            eprintln!("lull: the specs have errors; nothing was started");
            return Ok(ExitCode::FAILURE);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,lull=info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args, state_dir, deployments))
}

async fn serve(
    args: Args,
    state_dir: &Path,
    deployments: Vec<Deployment>,
) -> anyhow::Result<ExitCode> {
    let listener = TcpListener::bind(args.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (--listen); is another lull running?",
            args.listen
        )
    })?;
    let admin_listener = TcpListener::bind(args.admin)
        .await
        .with_context(|| format!("cannot listen on {} (--admin)", args.admin))?;
    let secrets = ChainedStore(vec![
        Box::new(FileSecretStore::new(state_dir)),
        Box::new(EnvSecretStore),
    ]);
    let admin_token = admin_token(&args, &secrets)?;
    if admin_token.is_none() && !args.admin.ip().is_loopback() {
        eprintln!(
            "lull: the admin endpoint {} is reachable beyond this machine; protect it with \
             --admin-token secret:NAME (stored with `lull secret set NAME`) or $LULL_ADMIN_TOKEN",
            args.admin
        );
        return Ok(ExitCode::FAILURE);
    }
    let settings = Settings {
        state_dir: state_dir.to_path_buf(),
        domain: args.domain.clone(),
        tick: args.tick.get(),
        drain_timeout: args.drain_timeout.get(),
        prometheus: prometheus_config(&args, &secrets)?,
        access_log: args.access_log,
    };
    let runtime = Runtime::start(&settings, Box::new(secrets)).await?;
    if let Err(e) = runtime.apply(deployments) {
        runtime.backend.shutdown().await;
        eprintln!("lull: {e}");
        return Ok(ExitCode::FAILURE);
    }

    let shutdown = CancellationToken::new();
    let activator = tokio::spawn(runtime.activator.clone().serve(listener, shutdown.clone()));
    let admin = tokio::spawn(admin::serve(
        runtime.clone(),
        admin_listener,
        admin_token,
        shutdown.clone(),
    ));
    let autoscaler = tokio::spawn(runtime.autoscaler.clone().run(shutdown.clone()));
    let watcher = tokio::spawn(reload::watch(
        runtime.clone(),
        args.paths.clone(),
        shutdown.clone(),
    ));

    print_summary(&runtime, &args);
    wait_for_stop_signal().await?;
    eprintln!("lull: stopping: draining requests, then stopping every replica");
    shutdown.cancel();
    if let Ok(Err(e)) = activator.await {
        eprintln!("lull: activator: {e}");
    }
    let _ = autoscaler.await;
    let _ = admin.await;
    if let Ok(Err(e)) = watcher.await {
        eprintln!("lull: watching the spec files: {e}");
    }
    runtime.backend.shutdown().await;
    eprintln!("lull: stopped");
    Ok(ExitCode::SUCCESS)
}

/// The admin endpoint's token: `--admin-token secret:NAME` resolved from the secret stores,
/// else `$LULL_ADMIN_TOKEN`. A token written on the command line is refused: every local user
/// could read it in the process list.
fn admin_token(args: &Args, secrets: &dyn SecretStore) -> anyhow::Result<Option<Secret>> {
    if let Some(reference) = &args.admin_token {
        let value = ConfigValue::parse(reference).context("--admin-token")?;
        let name = value.secret().context(
            "--admin-token takes a secret reference, such as secret:adminToken, or use $LULL_ADMIN_TOKEN",
        )?;
        let token = secrets.get(name)?.with_context(|| {
            format!("--admin-token: no secret `{name}`; store it with `lull secret set {name}`")
        })?;
        return Ok(Some(token));
    }
    match std::env::var("LULL_ADMIN_TOKEN") {
        Ok(token) if !token.is_empty() => Ok(Some(Secret::new(token))),
        _ => Ok(None),
    }
}

/// The Prometheus source of `--prometheus`, its credential resolved from the secret stores.
fn prometheus_config(
    args: &Args,
    secrets: &dyn SecretStore,
) -> anyhow::Result<Option<PrometheusConfig>> {
    let Some(url) = &args.prometheus else {
        return Ok(None);
    };
    let mut endpoint = Endpoint::new(url.clone());
    if let Some(reference) = &args.prometheus_auth {
        let value = ConfigValue::parse(reference).context("--prometheus-auth")?;
        let name = value
            .secret()
            .context("--prometheus-auth takes a secret reference, such as secret:promToken")?;
        let secret = secrets.get(name)?.with_context(|| {
            format!(
                "secret `{name}` (--prometheus-auth) is not set; set it with `lull secret set {name}` or the environment variable {}",
                name.env_var()
            )
        })?;
        endpoint.auth = match &args.prometheus_user {
            Some(user) => Auth::Basic {
                user: user.clone(),
                password: secret,
            },
            None => Auth::Bearer(secret),
        };
    }
    if let Some(ca) = &args.prometheus_ca {
        let pem = std::fs::read(ca)
            .with_context(|| format!("reading --prometheus-ca {}", ca.display()))?;
        endpoint.ca_pem = Some(pem);
    }
    let mut config = PrometheusConfig::new(endpoint);
    // Replicas of `lull up` are `<slug>-<n>`, which is what `{{selector}}` matches.
    config.pods = PodNaming::Embedded;
    Ok(Some(config))
}

async fn wait_for_stop_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("listening for Ctrl-C")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

fn print_summary(runtime: &Arc<Runtime>, args: &Args) {
    let base = format!("http://{}", args.listen);
    println!("lull is up");
    println!("  activator  {base}");
    println!("  admin      http://{}/v1/deployments", args.admin);
    let deployments = runtime.deployments();
    let width = deployments.iter().map(|d| d.slug.len()).max().unwrap_or(0);
    for d in &deployments {
        let spec = &d.spec;
        let state = if !spec.enabled {
            "disabled: answers 503".to_owned()
        } else {
            match &spec.resources.autoscaling {
                Some(a) if a.enabled && a.min_replicas == Some(0) => {
                    format!(
                        "0 to {} replicas, wakes on the first request",
                        a.max_replicas
                    )
                }
                Some(a) if a.enabled => format!(
                    "{} to {} replicas",
                    a.min_replicas.unwrap_or(spec.resources.replicas),
                    a.max_replicas
                ),
                _ if spec.resources.replicas == 1 => "1 replica".to_owned(),
                _ => format!("{} replicas", spec.resources.replicas),
            }
        };
        let prefix = spec
            .routing
            .path_prefix
            .clone()
            .unwrap_or_else(|| format!("/{}", d.slug));
        println!("  {:width$}  {state}", d.slug);
        println!("  {:width$}  curl {base}{prefix}/", "");
    }
    println!("Ctrl-C drains requests, stops every replica and exits.");
}
