//! `lull fixture`: the small model server that the examples, tests and benches run as replicas,
//! built into lull so a fresh machine needs nothing else.

use std::process::ExitCode;

use anyhow::Context;

/// Runs the fixture until SIGTERM or Ctrl-C.
pub fn run(config: lull_fixture::FixtureConfig) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(lull_fixture::run(config))?;
    Ok(ExitCode::SUCCESS)
}
