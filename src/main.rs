//! `lull`: a serverless-style autoscaler and scale-to-zero runtime for HTTP services.
//!
//! This file holds the command line and dispatches to one module per subcommand in
//! [`commands`]. Exit status: 0 on success, 1 when the command fails (invalid specs, a missing
//! secret, an unreadable store), 2 on a usage error.

mod cluster;
mod commands;
mod runtime;
mod secret_store;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Keeps HTTP services between their min and max replicas, shuts them down when idle and wakes
/// them on the first request.
#[derive(Debug, Parser)]
#[command(
    name = "lull",
    version,
    after_help = "\
Examples:
  lull up examples/
  lull validate examples/
  lull render examples/scale-to-zero.yaml --target kube | kubectl apply -f -
  lull secret set hfToken < token.txt
  lull completions bash > ~/.local/share/bash-completion/completions/lull"
)]
pub struct Cli {
    /// Directory for lull's state, such as the secret store.
    /// Default: the platform's data directory plus `lull` (~/.local/share/lull on Linux).
    #[arg(long, global = true, env = "LULL_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run deployments on this machine: activator, autoscaler and replicas, until Ctrl-C.
    Up(commands::up::Args),
    /// Show the output of a deployment's replicas.
    Logs(commands::logs::Args),
    /// Check spec files and report every error and warning with its file, line and column.
    Validate(commands::validate::Args),
    /// Write the Kubernetes objects of spec files as YAML.
    Render(commands::render::Args),
    /// Replay a traffic trace through the autoscaler with a model of replicas: cost and waits.
    Simulate(commands::simulate::Args),
    /// Store, list and remove the secrets that specs reference as `secret:NAME`.
    #[command(
        subcommand,
        after_help = "\
Secrets live in DIR/secrets.json (see --state-dir), readable by you only; values are never
printed.

Examples:
  lull secret set hfToken < token.txt
  lull secret list
  lull secret rm hfToken"
    )]
    Secret(commands::secret::Command),
    /// Write a shell completion script.
    Completions(commands::completions::Args),
    /// Run the small model server the examples use as replicas (/health, /predict, /stream).
    Fixture(lull_fixture::FixtureConfig),
    /// On Kubernetes: turn LullDeployments into Deployments and Services (leader-elected).
    Controller(commands::controller::Args),
    /// On Kubernetes: route requests to ready pods, park them at zero, wake the autoscaler.
    Activator(commands::activator::Args),
    /// On Kubernetes: scale Deployments from the activators' traffic and Prometheus (leader-elected).
    Autoscaler(commands::autoscaler::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up(args) => commands::up::run(args, &state_dir(cli.state_dir)?),
        Command::Logs(args) => commands::logs::run(&args, &state_dir(cli.state_dir)?),
        Command::Fixture(config) => commands::fixture::run(config),
        Command::Validate(args) => commands::validate::run(&args),
        Command::Render(args) => commands::render::run(&args),
        Command::Simulate(args) => commands::simulate::run(&args),
        Command::Secret(command) => commands::secret::run(command, &state_dir(cli.state_dir)?),
        Command::Completions(args) => Ok(commands::completions::run(&args)),
        Command::Controller(args) => commands::controller::run(args),
        Command::Activator(args) => commands::activator::run(args),
        Command::Autoscaler(args) => commands::autoscaler::run(args),
    }
}

/// `--state-dir`, else the platform's data directory, else ~/.local/share/lull.
fn state_dir(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir);
    }
    dirs::data_dir()
        .map(|dir| dir.join("lull"))
        .or_else(|| dirs::home_dir().map(|home| home.join(".local/share/lull")))
        .context("cannot find a home directory to keep lull's state in; pass --state-dir DIR or set LULL_STATE_DIR")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
