//! `lull validate`: load specs, check them for a backend, and report every finding.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use lull_spec::{Catalog, Diagnostic, Target};
use serde::Serialize;

use super::report;

/// Arguments of `lull validate`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit status: 0 when every spec is valid (warnings allowed), 1 when any has an error, 2 on a usage error.

Examples:
  lull validate examples/
  lull validate sentiment.yaml llm.yaml --target kube
  lull validate specs/ --output json | jq '.diagnostics[] | select(.severity == \"error\")'")]
pub struct Args {
    /// Spec files, or directories whose *.yaml and *.yml files are read.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// The backend the specs will run on; fields it cannot honour are warnings or errors.
    #[arg(long, value_enum, default_value_t = TargetArg::Embedded)]
    target: TargetArg,
    /// `text`: findings on stderr, one per entry; `json`: one JSON object on stdout.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// The backends on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetArg {
    /// `lull up`: replicas are processes on this machine.
    Embedded,
    /// Kubernetes: replicas are pods.
    Kube,
}

impl From<TargetArg> for Target {
    fn from(target: TargetArg) -> Self {
        match target {
            TargetArg::Embedded => Target::Embedded,
            TargetArg::Kube => Target::Kubernetes,
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

/// The `--output json` document.
#[derive(Serialize)]
struct JsonReport<'a> {
    valid: bool,
    deployments: Vec<JsonDeployment<'a>>,
    diagnostics: &'a [Diagnostic],
}

#[derive(Serialize)]
struct JsonDeployment<'a> {
    name: &'a str,
    slug: &'a str,
    file: &'a str,
}

/// Loads and checks `args.paths`; exit status 0 when valid, 1 when not.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let mut catalog = lull_spec::load_paths(&args.paths);
    catalog.check_target(args.target.into());
    let valid = !catalog.has_errors();
    let deployments = valid_deployments(&catalog);
    match args.output {
        Output::Text => {
            report::print_diagnostics(&catalog.diagnostics);
            eprintln!(
                "{}",
                report::summary(deployments.len(), &catalog.diagnostics)
            );
        }
        Output::Json => {
            let json = serde_json::to_string(&JsonReport {
                valid,
                deployments,
                diagnostics: &catalog.diagnostics,
            })
            .context("cannot encode the report as JSON")?;
            println!("{json}");
        }
    }
    Ok(if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The deployments that loaded and have no error for the target either.
fn valid_deployments(catalog: &Catalog) -> Vec<JsonDeployment<'_>> {
    let failed: BTreeSet<(&str, &str)> = catalog
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .filter_map(|d| Some((d.file.as_str(), d.deployment.as_deref()?)))
        .collect();
    catalog
        .deployments
        .iter()
        .filter(|d| !failed.contains(&(d.file.as_str(), d.spec.name.as_str())))
        .map(|d| JsonDeployment {
            name: &d.spec.name,
            slug: &d.slug,
            file: &d.file,
        })
        .collect()
}
