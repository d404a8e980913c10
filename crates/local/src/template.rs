//! What a deployment's replicas run, resolved from the spec and its secrets: program, arguments,
//! environment, probes and limits.
//!
//! A template is resolved once per spec load. Two templates that differ are two versions, and the
//! supervisor rolls replicas of the old one over to the new one; fields that do not change what a
//! replica runs (replica counts, autoscaling, the grace period) are not part of it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lull_spec::secret::{ConfigValue, ResolvedSecrets, Secret};
use lull_spec::{Deployment, Probe};

use crate::process::{self, resolve_program};

/// Errors of resolving a spec into a template.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec has no command.
    #[error(
        "`command` is empty: the embedded backend runs a process; give the command that starts the server"
    )]
    EmptyCommand,
    /// An exec probe has no command.
    #[error("`healthChecks.{probe}.exec.command` is empty")]
    EmptyProbeCommand {
        /// Which probe.
        probe: &'static str,
    },
    /// A secret reference was not resolved by the caller.
    #[error("secret `{secret}` needed by `{field}` is not set")]
    Unresolved {
        /// The field that references it.
        field: String,
        /// The secret's name.
        secret: String,
    },
    /// A program could not be resolved.
    #[error(transparent)]
    Program(#[from] process::Error),
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a replica of one version runs with.
#[derive(Debug, PartialEq)]
pub(crate) struct Template {
    /// The program, resolved (`lull` is lull's own executable).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Working directory: the spec file's directory, when it has one.
    pub dir: Option<PathBuf>,
    /// The spec's environment, secrets resolved. `Secret` keeps values out of Debug output.
    pub env: Vec<(String, Secret)>,
    /// Every port of the spec; the first is the serving port that `$PORT` stands for.
    pub ports: Vec<u16>,
    /// Health checks.
    pub probes: Probes,
    /// Resource limits.
    pub limits: LimitSpec,
}

/// The three probes of a replica.
#[derive(Debug, PartialEq, Default)]
pub(crate) struct Probes {
    /// Passes once; liveness and readiness wait for it.
    pub startup: Option<ProbeSpec>,
    /// Gates traffic.
    pub readiness: Option<ProbeSpec>,
    /// Restarts the replica when it fails.
    pub liveness: Option<ProbeSpec>,
}

/// One probe, resolved.
#[derive(Debug, PartialEq, Clone)]
pub(crate) struct ProbeSpec {
    /// What it checks.
    pub action: ProbeAction,
    /// Wait after start before the first check.
    pub initial_delay: Duration,
    /// Time between checks.
    pub period: Duration,
    /// Time before one check counts as failed.
    pub timeout: Duration,
    /// Consecutive failures that fail it.
    pub failure_threshold: u32,
    /// Consecutive successes that pass it.
    pub success_threshold: u32,
}

/// What a probe checks.
#[derive(Debug, PartialEq, Clone)]
pub(crate) enum ProbeAction {
    /// GET `path`; 2xx and 3xx pass.
    Http {
        /// The port.
        port: ProbePort,
        /// Path and query.
        path: String,
        /// Host header; `127.0.0.1:<port>` when `None`.
        host: Option<String>,
        /// Further headers, secrets resolved.
        headers: Vec<(String, Secret)>,
    },
    /// Run a command; exit 0 passes.
    Exec {
        /// The program, resolved.
        program: PathBuf,
        /// Its arguments.
        args: Vec<String>,
    },
    /// Open a TCP connection: for a probe that gives neither `path` nor `exec`.
    Tcp {
        /// The port.
        port: ProbePort,
    },
}

/// Which port a probe goes to.
#[derive(Debug, PartialEq, Clone, Copy)]
pub(crate) enum ProbePort {
    /// The replica's `$PORT`, which the spec's first port stands for.
    Serving,
    /// Another port on 127.0.0.1, as written.
    Fixed(u16),
}

impl ProbePort {
    /// The port number for a replica serving on `serving`.
    pub fn resolve(self, serving: u16) -> u16 {
        match self {
            ProbePort::Serving => serving,
            ProbePort::Fixed(port) => port,
        }
    }
}

/// `maxCpu` and `maxMemory`.
#[derive(Debug, PartialEq, Clone, Copy, Default)]
pub(crate) struct LimitSpec {
    /// Cores.
    pub max_cpu: Option<f64>,
    /// Bytes.
    pub max_memory: Option<u64>,
}

impl LimitSpec {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.max_cpu.is_some() || self.max_memory.is_some()
    }
}

impl Template {
    /// Resolves a loaded spec with its secrets.
    pub fn new(deployment: &Deployment, secrets: &ResolvedSecrets) -> Result<Self> {
        let spec = &deployment.spec;
        let (program, args) = spec.command.split_first().ok_or(Error::EmptyCommand)?;
        let dir = Path::new(&deployment.file)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map(Path::to_path_buf);
        let env = spec
            .env
            .iter()
            .enumerate()
            .map(|(i, var)| {
                let value = resolve(secrets, &var.value, || format!("env[{i}].value"))?;
                Ok((var.name.clone(), value))
            })
            .collect::<Result<Vec<_>>>()?;
        let serving = spec.resources.serving_port();
        let checks = &spec.health_checks;
        let probe = |name: &'static str, probe: &Option<Probe>| {
            probe
                .as_ref()
                .map(|p| ProbeSpec::new(name, p, serving, dir.as_deref(), secrets))
                .transpose()
        };
        Ok(Self {
            program: resolve_program(program, dir.as_deref())?,
            args: args.to_vec(),
            env,
            ports: spec.resources.ports.clone(),
            probes: Probes {
                startup: probe("startup", &checks.startup)?,
                readiness: probe("readiness", &checks.readiness)?,
                liveness: probe("liveness", &checks.liveness)?,
            },
            limits: LimitSpec {
                max_cpu: spec.resources.max_cpu.as_ref().map(|q| q.value()),
                max_memory: spec.resources.max_memory.as_ref().map(|q| q.ceil_u64()),
            },
            dir,
        })
    }
}

impl ProbeSpec {
    fn new(
        name: &'static str,
        probe: &Probe,
        serving: u16,
        dir: Option<&Path>,
        secrets: &ResolvedSecrets,
    ) -> Result<Self> {
        let port = match probe.port {
            None => ProbePort::Serving,
            Some(p) if p == serving => ProbePort::Serving,
            Some(p) => ProbePort::Fixed(p),
        };
        let action = if let Some(exec) = &probe.exec {
            let (program, args) = exec
                .command
                .split_first()
                .ok_or(Error::EmptyProbeCommand { probe: name })?;
            ProbeAction::Exec {
                program: resolve_program(program, dir)?,
                args: args.to_vec(),
            }
        } else if let Some(path) = &probe.path {
            let headers = probe
                .headers
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let value = resolve(secrets, &h.value, || {
                        format!("healthChecks.{name}.headers[{i}].value")
                    })?;
                    Ok((h.name.clone(), value))
                })
                .collect::<Result<Vec<_>>>()?;
            ProbeAction::Http {
                port,
                path: path.clone(),
                host: probe.host.clone(),
                headers,
            }
        } else {
            ProbeAction::Tcp { port }
        };
        Ok(Self {
            action,
            initial_delay: Duration::from_secs(probe.initial_delay_seconds.into()),
            period: Duration::from_secs(probe.period_seconds.max(1).into()),
            timeout: Duration::from_secs(probe.timeout_seconds.max(1).into()),
            failure_threshold: probe.failure_threshold.max(1),
            success_threshold: probe.success_threshold.max(1),
        })
    }
}

fn resolve(
    secrets: &ResolvedSecrets,
    value: &ConfigValue,
    field: impl FnOnce() -> String,
) -> Result<Secret> {
    secrets
        .value_of(value)
        .map(Secret::new)
        .ok_or_else(|| Error::Unresolved {
            field: field(),
            secret: value.secret().map(|s| s.to_string()).unwrap_or_default(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lull_spec::load_str;

    fn deployment(yaml: &str) -> Deployment {
        let catalog = load_str(yaml, "specs/app.yaml");
        let (mut deployments, _) = catalog.into_valid().expect("valid spec");
        deployments.remove(0)
    }

    #[test]
    fn a_spec_resolves_into_what_a_replica_runs() {
        let d = deployment(
            "name: app\ncommand: [\"./serve.sh\", \"--fast\"]\nenv:\n  - { name: MODEL, value: tiny }\n\
             resources: { ports: [9000, 9100], maxCpu: \"1.5\", maxMemory: 512Mi }\n\
             healthChecks:\n  readiness: { path: /health, port: 9000 }\n  liveness: { path: /live, port: 9100 }\n  startup: { exec: { command: [lull, check] } }\n",
        );
        let t = Template::new(&d, &ResolvedSecrets::default()).expect("resolves");
        assert_eq!(t.program, PathBuf::from("specs/./serve.sh"));
        assert_eq!(t.args, ["--fast"]);
        assert_eq!(t.dir, Some(PathBuf::from("specs")));
        assert_eq!(t.env[0].0, "MODEL");
        assert_eq!(t.env[0].1.expose(), "tiny");
        assert_eq!(t.limits.max_cpu, Some(1.5));
        assert_eq!(t.limits.max_memory, Some(512 * 1024 * 1024));
        let readiness = t.probes.readiness.as_ref().expect("readiness");
        assert!(matches!(
            &readiness.action,
            ProbeAction::Http { port: ProbePort::Serving, path, .. } if path == "/health"
        ));
        let liveness = t.probes.liveness.as_ref().expect("liveness");
        assert!(matches!(
            liveness.action,
            ProbeAction::Http {
                port: ProbePort::Fixed(9100),
                ..
            }
        ));
        let startup = t.probes.startup.as_ref().expect("startup");
        assert!(matches!(
            &startup.action,
            ProbeAction::Exec { program, .. } if *program == std::env::current_exe().expect("exe")
        ));
    }

    #[test]
    fn an_unresolved_secret_names_its_field() {
        let d = deployment(
            "name: app\ncommand: [server]\nenv:\n  - { name: TOKEN, value: \"secret:hfToken\" }\n",
        );
        let err = Template::new(&d, &ResolvedSecrets::default()).expect_err("missing secret");
        let text = err.to_string();
        assert!(
            text.contains("hfToken") && text.contains("env[0].value"),
            "{text}"
        );
    }

    #[test]
    fn templates_differ_when_what_runs_differs() {
        let a = deployment("name: app\ncommand: [server]\nresources: { replicas: 2 }\n");
        let b = deployment("name: app\ncommand: [server]\nresources: { replicas: 5 }\n");
        let c = deployment("name: app\ncommand: [server, --v2]\n");
        let secrets = ResolvedSecrets::default();
        let ta = Template::new(&a, &secrets).expect("a");
        assert_eq!(ta, Template::new(&b, &secrets).expect("b"));
        assert_ne!(ta, Template::new(&c, &secrets).expect("c"));
    }
}
