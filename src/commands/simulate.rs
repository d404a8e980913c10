//! `lull simulate`: replay a traffic trace through the decision engine with a model of
//! replicas, and report what the spec would cost and how long requests would wait.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use lull_autoscaler::engine::Targets;
use lull_autoscaler::simulate::{self, Model, Policy, Trace};

use super::report;

/// Arguments of `lull simulate`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Traces are CSV with a header: `time_s,rps` (optionally `,mean_duration_s`), a rate that holds
until the next row, or `arrival_s,duration_s`, one request per row. Lines starting with # are
comments. The same input always gives the same output.

Exit status: 0 with the summary on stdout, 1 when the spec or the trace cannot be used (the
trace's line and what is wrong on stderr), 2 on a usage error.

Examples:
  lull simulate --spec examples/traces/endpoint.yaml --trace examples/traces/sparse.csv
  lull simulate --spec model.yaml --trace day.csv --policy kpa --startup 30s --output json
  lull simulate --spec model.yaml --trace day.csv --timeline timeline.csv")]
pub struct Args {
    /// The deployment spec (one deployment with `resources.autoscaling`).
    #[arg(long, value_name = "FILE")]
    spec: PathBuf,
    /// The traffic to replay (CSV).
    #[arg(long, value_name = "FILE")]
    trace: PathBuf,
    /// Who decides: lull as the spec says, or the spec's targets under a plain Kubernetes HPA's
    /// or Knative's KPA's defaults.
    #[arg(long, value_enum, default_value_t = PolicyArg::Lull)]
    policy: PolicyArg,
    /// Time from starting a replica to its being ready.
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    startup: lull_spec::Duration,
    /// How long a request takes a replica when the trace does not say.
    #[arg(long, value_name = "DURATION", default_value = "100ms")]
    service_time: lull_spec::Duration,
    /// Requests a replica serves at once; 0 is any number. Default: the spec's
    /// `activator.containerConcurrency`.
    #[arg(long, value_name = "N")]
    concurrency: Option<u32>,
    /// Cpu a request in flight uses, in percent of one core (drives cpu and gpu targets).
    #[arg(long, value_name = "PERCENT", default_value_t = 100.0)]
    cpu_per_request: f64,
    /// lull's scaling tick (the HPA decides every 15 s and the KPA every 2 s regardless).
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    tick: lull_spec::Duration,
    /// Write a CSV timeline, one row per second: `time_s,desired,ready,in_flight,queued,rps`.
    #[arg(long, value_name = "FILE")]
    timeline: Option<PathBuf>,
    /// `text`: a summary for people; `json`: the summary as one JSON object.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// The policies on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PolicyArg {
    /// lull with the spec's targets and behaviour.
    Lull,
    /// A plain Kubernetes HPA: 15 s sync, 300 s scale-down window, never zero.
    Hpa,
    /// Knative's KPA defaults: 2 s tick, 60 s/6 s windows, zero after 60 s + 30 s grace.
    Kpa,
}

impl From<PolicyArg> for Policy {
    fn from(policy: PolicyArg) -> Self {
        match policy {
            PolicyArg::Lull => Policy::Lull,
            PolicyArg::Hpa => Policy::Hpa,
            PolicyArg::Kpa => Policy::Kpa,
        }
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    /// For people.
    Text,
    /// For programs.
    Json,
}

/// Runs the simulation; exit status 0, or an error (exit status 1).
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if !(args.cpu_per_request.is_finite() && args.cpu_per_request >= 0.0) {
        bail!(
            "--cpu-per-request {} must be a percentage of at least 0",
            args.cpu_per_request
        );
    }
    let catalog = lull_spec::load_paths(std::slice::from_ref(&args.spec));
    if catalog.has_errors() {
        report::print_diagnostics(&catalog.diagnostics);
        bail!("{} is not a valid spec", args.spec.display());
    }
    let deployment = match catalog.deployments.as_slice() {
        [one] => one,
        many => bail!(
            "{} holds {} deployments; simulate one at a time",
            args.spec.display(),
            many.len()
        ),
    };
    let spec = &deployment.spec;
    let Some(autoscaling) = spec.resources.autoscaling.as_ref().filter(|a| a.enabled) else {
        bail!(
            "{}: `{}` has no enabled resources.autoscaling to simulate",
            args.spec.display(),
            spec.name
        );
    };
    let targets = Targets::new(spec.resources.replicas, autoscaling);
    for skipped in targets
        .metrics
        .iter()
        .filter(|m| simulate::unmodelled(m.metric))
    {
        eprintln!(
            "warning: the simulator does not model {}; its target is left out",
            skipped.metric.as_str()
        );
    }

    let text = std::fs::read_to_string(&args.trace)
        .with_context(|| format!("cannot read the trace {}", args.trace.display()))?;
    let trace =
        Trace::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", args.trace.display()))?;

    let mut model = Model::for_spec(spec);
    model.startup = args.startup.get();
    model.service_time = args.service_time.get();
    model.cpu_per_request = args.cpu_per_request;
    model.tick = args.tick.get();
    if let Some(concurrency) = args.concurrency {
        model.concurrency = concurrency;
    }
    if model.tick.is_zero() {
        bail!("--tick must be longer than 0s");
    }

    let outcome = simulate::run(&trace, &targets, args.policy.into(), &model);

    if let Some(path) = &args.timeline {
        let file = File::create(path)
            .with_context(|| format!("cannot create the timeline {}", path.display()))?;
        let mut out = BufWriter::new(file);
        simulate::write_timeline(&outcome.timeline, &mut out)
            .and_then(|()| out.flush())
            .with_context(|| format!("cannot write the timeline {}", path.display()))?;
    }
    match args.output {
        Output::Text => println!("{}", outcome.summary),
        Output::Json => println!(
            "{}",
            serde_json::to_string(&outcome.summary).context("cannot encode the summary")?
        ),
    }
    Ok(ExitCode::SUCCESS)
}
