//! `lull completions`: shell completion scripts.

use std::io;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

/// Arguments of `lull completions`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  lull completions bash > ~/.local/share/bash-completion/completions/lull
  lull completions zsh > \"${fpath[1]}/_lull\"
  lull completions fish > ~/.config/fish/completions/lull.fish")]
pub struct Args {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    shell: Shell,
}

/// Writes the completion script for `args.shell` to stdout.
pub fn run(args: &Args) -> ExitCode {
    let mut command = crate::Cli::command();
    let name = command.get_name().to_owned();
    clap_complete::generate(args.shell, &mut command, name, &mut io::stdout());
    ExitCode::SUCCESS
}
