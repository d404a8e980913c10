//! `lull render`: the Kubernetes objects of valid specs, as YAML for `kubectl apply`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use lull_kube::render::{DEFAULT_NAMESPACE, DEFAULT_SECRET_NAME};
use lull_kube::{RenderOptions, render_yaml};
use lull_spec::Target;
use lull_spec::names::{is_dns_label, is_dns_subdomain};

use super::report;

/// Arguments of `lull render`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
#[command(after_help = "\
Secret references (`secret:NAME`) become secretKeyRefs to key NAME of one Kubernetes Secret;
no secret value is ever written. Create that Secret yourself, for example:
  kubectl create secret generic lull-secrets --from-literal=hfToken=...

Exit status: 0 with the YAML on stdout, 1 when a spec has an error (findings on stderr), 2 on a
usage error.

Examples:
  lull render examples/scale-to-zero.yaml --target kube
  lull render specs/ --namespace ml --secret-name ml-secrets | kubectl apply -f -
  lull render crd > manifests/crd.yaml")]
pub struct Args {
    /// Something other than the objects of specs.
    #[command(subcommand)]
    what: Option<What>,
    /// Spec files, or directories whose *.yaml and *.yml files are read.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// What to render for; only Kubernetes objects exist today.
    #[arg(long, value_enum, default_value_t = RenderTarget::Kube)]
    target: RenderTarget,
    /// Namespace for specs that set no `kubernetes.namespace`.
    #[arg(long, value_name = "NS", default_value = DEFAULT_NAMESPACE, value_parser = namespace)]
    namespace: String,
    /// The Kubernetes Secret whose keys `secret:NAME` references read.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_SECRET_NAME, value_parser = secret_object)]
    secret_name: String,
}

/// What `render` writes besides the objects of specs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
enum What {
    /// The LullDeployment CustomResourceDefinition (manifests/crd.yaml).
    Crd,
}

/// What `render` can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RenderTarget {
    /// An apps/v1 Deployment and a core/v1 Service per spec.
    Kube,
}

fn namespace(text: &str) -> Result<String, String> {
    if is_dns_label(text) {
        Ok(text.to_owned())
    } else {
        Err("a namespace is a DNS label: 1 to 63 lower-case letters, digits and `-`".to_owned())
    }
}

fn secret_object(text: &str) -> Result<String, String> {
    if is_dns_subdomain(text) {
        Ok(text.to_owned())
    } else {
        Err(
            "a Secret's name is a DNS subdomain: lower-case letters, digits, `-` and `.`"
                .to_owned(),
        )
    }
}

/// Loads `args.paths` and writes their objects to stdout; exit status 1 when a spec is invalid.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if let Some(What::Crd) = args.what {
        print!(
            "{}",
            lull_kube::crd::crd_yaml().context("cannot render the CustomResourceDefinition")?
        );
        return Ok(ExitCode::SUCCESS);
    }
    // One target today; a second one will not compile until it is handled here.
    let RenderTarget::Kube = args.target;
    let mut catalog = lull_spec::load_paths(&args.paths);
    catalog.check_target(Target::Kubernetes);
    report::print_diagnostics(&catalog.diagnostics);
    let (deployments, _warnings) = match catalog.into_valid() {
        Ok(valid) => valid,
        Err(lull_spec::load::Error::Invalid { diagnostics, .. }) => {
            eprintln!("{}; nothing rendered", report::summary(0, &diagnostics));
            return Ok(ExitCode::FAILURE);
        }
    };
    let options = RenderOptions {
        namespace: args.namespace.clone(),
        secret_name: args.secret_name.clone(),
        ..RenderOptions::default()
    };
    let yaml = render_yaml(&deployments, &options).context("cannot render the specs")?;
    print!("{yaml}");
    Ok(ExitCode::SUCCESS)
}
