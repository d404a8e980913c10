//! `lull logs NAME [--follow]`: the output of a deployment's replicas, from their log files under
//! the state directory.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

/// Arguments of `lull logs`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  lull logs sentiment
  lull logs sentiment --follow")]
pub struct Args {
    /// The deployment's name (its slug, as in its route: `my cool deployment` is `my-cool-deployment`).
    name: String,
    /// Keep printing new lines, from new replicas too, until Ctrl-C.
    #[arg(long, short)]
    follow: bool,
}

/// Prints the logs.
pub fn run(args: &Args, state_dir: &Path) -> anyhow::Result<ExitCode> {
    let slug = lull_spec::names::slugify(&args.name);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let show = lull_local::logs::show(state_dir, &slug, args.follow, tokio::io::stdout());
        tokio::select! {
            result = show => result.map_err(anyhow::Error::from),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })?;
    Ok(ExitCode::SUCCESS)
}
