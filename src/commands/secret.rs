//! `lull secret`: the embedded secret store, by name. Values go in and never come out on the
//! command line.

use std::io::{self, BufRead, IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use lull_spec::secret::{Secret, SecretName};

use crate::secret_store::FileSecretStore;

/// Largest secret value accepted, in bytes: what one Kubernetes Secret can hold.
const MAX_VALUE_BYTES: u64 = 1024 * 1024;

/// `lull secret` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Store a secret; specs read it as `secret:NAME`.
    #[command(after_help = "\
Without VALUE the value is read from stdin (one trailing newline is dropped), so it does not
land in the shell's history; on a terminal it is asked for.

Examples:
  lull secret set hfToken < token.txt
  printf '%s' \"$TOKEN\" | lull secret set apiKey
  lull secret set probeToken   # asks for the value")]
    Set {
        /// The secret's name: letters, digits, `-`, `_` and `.`.
        #[arg(value_parser = secret_name)]
        name: SecretName,
        /// The value; prefer stdin, as arguments are visible in the shell history and to `ps`.
        value: Option<String>,
    },
    /// List the names of the stored secrets (never their values).
    #[command(after_help = "Example:\n  lull secret list")]
    List,
    /// Remove a stored secret.
    #[command(
        visible_alias = "remove",
        after_help = "Exit status 1 when no such secret is stored.\n\nExample:\n  lull secret rm hfToken"
    )]
    Rm {
        /// The secret's name.
        #[arg(value_parser = secret_name)]
        name: SecretName,
    },
}

fn secret_name(text: &str) -> Result<SecretName, String> {
    SecretName::new(text).map_err(|e| e.to_string())
}

/// Runs one `lull secret` subcommand against the store in `state_dir`.
pub fn run(command: Command, state_dir: &Path) -> anyhow::Result<ExitCode> {
    let store = FileSecretStore::new(state_dir);
    match command {
        Command::Set { name, value } => {
            let value = match value {
                Some(value) => Secret::new(value),
                None => read_value(&name)?,
            };
            if value.expose().is_empty() {
                bail!("the value of secret `{name}` is empty; nothing was stored");
            }
            store.set(&name, &value)?;
            eprintln!("stored secret `{name}` in {}", store.path().display());
        }
        Command::List => {
            let names = store.names()?;
            if names.is_empty() {
                eprintln!("no secrets in {}", store.path().display());
            }
            for name in names {
                println!("{name}");
            }
        }
        Command::Rm { name } => {
            if !store.remove(&name)? {
                bail!(
                    "secret `{name}` is not stored in {}; `lull secret list` shows the names",
                    store.path().display()
                );
            }
            eprintln!("removed secret `{name}`");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The value from stdin: a line on a terminal, everything up to end of file otherwise.
fn read_value(name: &SecretName) -> anyhow::Result<Secret> {
    let stdin = io::stdin();
    let mut text = String::new();
    if stdin.is_terminal() {
        eprint!("value of secret `{name}` (shown as typed), then Enter: ");
        stdin
            .lock()
            .take(MAX_VALUE_BYTES + 1)
            .read_line(&mut text)
            .context("cannot read the value from the terminal")?;
    } else {
        stdin
            .lock()
            .take(MAX_VALUE_BYTES + 1)
            .read_to_string(&mut text)
            .context("cannot read the value from stdin (it must be UTF-8 text)")?;
    }
    if text.len() as u64 > MAX_VALUE_BYTES {
        bail!("the value of secret `{name}` is over {MAX_VALUE_BYTES} bytes; nothing was stored");
    }
    Ok(Secret::new(strip_one_newline(text)))
}

/// `printf 'x\n'`, `echo x` and a typed line all end in one newline that is not part of the value.
fn strip_one_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_trailing_newline_is_dropped() {
        assert_eq!(strip_one_newline("tok\n".to_owned()), "tok");
        assert_eq!(strip_one_newline("tok\r\n".to_owned()), "tok");
        assert_eq!(strip_one_newline("tok\n\n".to_owned()), "tok\n");
        assert_eq!(strip_one_newline("tok".to_owned()), "tok");
    }
}
