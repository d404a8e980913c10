//! Loading spec files: one or more YAML documents per file, every *.yaml / *.yml in a directory.
//!
//! Loading never stops at the first problem: every error of every document is reported, each with
//! its file, line, column and field path. The YAML parser runs with a budget, so an alias bomb or a
//! huge document is refused quickly instead of eating the machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::DeploymentSpec;
use crate::capabilities::{Target, unsupported};
use crate::diagnostic::{Diagnostic, Issue, Severity};
use crate::names::slugify;
use crate::node::{Node, NodeValue, Position};
use crate::structure;
use crate::validate::validate;

/// Largest spec file read, in bytes. Real specs are a few KiB.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The help of an error that lull's schema check missed and only deserialisation found, so it
/// has no field path. Tests and the fuzzer look for it: each occurrence is a bug to fix.
pub const UNCAUGHT_HELP: &str =
    "lull could not tell which field this is about; please report it with the spec";

/// Errors of [`Catalog::into_valid`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// At least one spec has errors; all findings are kept.
    #[error("{} error(s) in the specs:\n{}", .errors, render(.diagnostics))]
    Invalid {
        /// How many of the diagnostics are errors.
        errors: usize,
        /// Every finding, errors and warnings.
        diagnostics: Vec<Diagnostic>,
    },
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A deployment spec that loaded without errors, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// The spec.
    pub spec: DeploymentSpec,
    /// The DNS-1123 label derived from the name: routes, processes and Kubernetes objects use it.
    pub slug: String,
    /// The file, as the user named it.
    pub file: String,
    /// Where the document's `name` is.
    pub at: Position,
}

/// Everything found in a set of paths.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Specs that loaded without errors.
    pub deployments: Vec<Deployment>,
    /// Errors and warnings, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Catalog {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The deployments if nothing is wrong, otherwise every finding.
    pub fn into_valid(self) -> Result<(Vec<Deployment>, Vec<Diagnostic>)> {
        let errors = self.diagnostics.iter().filter(|d| d.is_error()).count();
        if errors > 0 {
            return Err(Error::Invalid {
                errors,
                diagnostics: self.diagnostics,
            });
        }
        Ok((self.deployments, self.diagnostics))
    }

    /// Adds the warnings (and errors) of what `target` cannot honour.
    pub fn check_target(&mut self, target: Target) {
        for d in &self.deployments {
            for issue in unsupported(&d.spec, target) {
                self.diagnostics.push(Diagnostic {
                    severity: issue.severity,
                    file: d.file.clone(),
                    at: Some(d.at),
                    path: issue.path,
                    deployment: Some(d.spec.name.clone()),
                    message: format!("{} (target {})", issue.message, target.as_str()),
                    help: issue.help,
                });
            }
        }
    }
}

/// Loads every path: files as they are, directories by their *.yaml and *.yml files (not
/// recursively, in name order). Duplicate names across all of them are errors naming both files.
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Catalog {
    let mut loader = Loader::default();
    for path in paths {
        let path = path.as_ref();
        match spec_files(path) {
            Ok(files) => {
                for file in files {
                    load_file_into(&file, &mut loader);
                }
            }
            Err(message) => loader.catalog.diagnostics.push(file_error(
                &path.display().to_string(),
                message,
                None,
            )),
        }
    }
    loader.finish()
}

/// Loads the documents of one YAML text, as if read from `file`.
pub fn load_str(text: &str, file: &str) -> Catalog {
    let mut loader = Loader::default();
    load_text_into(text, file, &mut loader);
    loader.finish()
}

/// A catalog being filled, with what each loaded deployment claims to route by.
#[derive(Default)]
struct Loader {
    catalog: Catalog,
    /// The claims of each deployment, in the order of `catalog.deployments`.
    claims: Vec<Vec<Claim>>,
}

impl Loader {
    fn finish(mut self) -> Catalog {
        check_names(&mut self.catalog, &self.claims);
        self.catalog
    }
}

/// A name, alias, host or path prefix that must lead to one deployment only, and where it is.
struct Claim {
    kind: &'static str,
    value: String,
    path: String,
    at: Position,
    /// The default path prefix, derived from the name rather than written.
    derived: bool,
}

fn spec_files(path: &Path) -> std::result::Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| format!("cannot list the directory: {e}"))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err("the directory holds no .yaml or .yml file".to_owned());
    }
    Ok(files)
}

fn file_error(file: &str, message: impl Into<String>, at: Option<Position>) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        file: file.to_owned(),
        at,
        path: String::new(),
        deployment: None,
        message: message.into(),
        help: None,
    }
}

fn load_file_into(path: &Path, loader: &mut Loader) {
    let file = path.display().to_string();
    let diagnostics = &mut loader.catalog.diagnostics;
    let size = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) => {
            diagnostics.push(file_error(&file, format!("cannot read: {e}"), None));
            return;
        }
    };
    if size > MAX_FILE_BYTES {
        diagnostics.push(too_large(&file, size));
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(text) => load_text_into(&text, &file, loader),
        Err(e) => {
            let mut d = file_error(&file, format!("cannot read: {e}"), None);
            if e.kind() == std::io::ErrorKind::InvalidData {
                d.help = Some("save the file as UTF-8".to_owned());
            }
            diagnostics.push(d);
        }
    }
}

fn too_large(file: &str, size: u64) -> Diagnostic {
    let mut d = file_error(
        file,
        format!("is {size} bytes; a spec file may be at most {MAX_FILE_BYTES} bytes (1 MiB)"),
        None,
    );
    d.help = Some("split it into several files, one deployment each".to_owned());
    d
}

fn parse_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = 100_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_nodes = 50_000;
    budget.max_depth = 32;
    budget.max_documents = 256;
    budget.max_total_scalar_bytes = MAX_FILE_BYTES as usize;
    budget.max_reader_input_bytes = Some(MAX_FILE_BYTES as usize);
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    // Aliases in real specs share a probe or an env list: a few dozen values. Expansion is
    // where YAML work can grow without the file growing, so it gets the tightest limit.
    options.alias_limits.max_total_replayed_events = 10_000;
    options.alias_limits.max_alias_expansions_per_anchor = 100;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.strict_booleans = true;
    // `.nan`, `.inf` and overflowing numbers reach the schema check, which reports them at
    // their field instead of refusing the whole file.
    options.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::PassThrough;
    options.with_snippet = false;
    options
}

/// A parse error as a message and help for users: what kind of problem, without the location
/// (the diagnostic has it) and without hints meant for programmers using the parser.
fn yaml_error(error: &serde_saphyr::Error) -> (String, String) {
    use serde_saphyr::budget::BudgetBreach;
    use serde_saphyr::{Error, MessageFormatter, UserMessageFormatter};
    let limits = "a spec is a few KiB; anchors and aliases may expand to a few thousand values";
    let too_big = |what: String| {
        (
            format!("the YAML is too large or too complex for a spec: {what}"),
            limits.to_owned(),
        )
    };
    match error {
        Error::WithSnippet { error, .. } => yaml_error(error),
        Error::AliasError { error, .. } => yaml_error(error),
        Error::DuplicateMappingKey { key: Some(key), .. } => (
            format!("duplicate key `{key}`"),
            "a key may appear once in a mapping; keep one of them".to_owned(),
        ),
        Error::DuplicateMappingKey { key: None, .. } => (
            "duplicate key".to_owned(),
            "a key may appear once in a mapping; keep one of them".to_owned(),
        ),
        Error::Budget { breach, .. } => too_big(match breach {
            BudgetBreach::Events { .. } => "more than 100000 parser events".to_owned(),
            BudgetBreach::Aliases { .. } => "more than 1000 aliases".to_owned(),
            BudgetBreach::Anchors { .. } => "more than 1000 anchors".to_owned(),
            BudgetBreach::Depth { .. } => "nested more than 32 levels deep".to_owned(),
            BudgetBreach::Documents { .. } => "more than 256 documents".to_owned(),
            BudgetBreach::Nodes { .. } => "more than 50000 values".to_owned(),
            BudgetBreach::ScalarBytes { .. } => "more than 1 MiB of text in values".to_owned(),
            other => format!("{other:?}"),
        }),
        Error::AliasReplayCounterOverflow { .. }
        | Error::AliasReplayLimitExceeded { .. }
        | Error::AliasExpansionLimitExceeded { .. }
        | Error::AliasReplayStackDepthExceeded { .. } => {
            too_big("aliases expand to too many values".to_owned())
        }
        // Raised by lull's own reading of the tree (keys, binary values), not by the parser.
        Error::Message { msg, .. } => (
            msg.clone(),
            "quote the text if it is meant as a string".to_owned(),
        ),
        Error::Unexpected {
            expected: "string scalar",
            ..
        } => (
            "a mapping key must be plain text, not a list or a mapping".to_owned(),
            "write the key as a name, such as `tier:`".to_owned(),
        ),
        other => (
            format!(
                "not valid YAML: {}",
                UserMessageFormatter.format_message(other)
            ),
            "check the indentation, quotes and brackets here and on the lines above".to_owned(),
        ),
    }
}

fn load_text_into(text: &str, file: &str, loader: &mut Loader) {
    if text.len() as u64 > MAX_FILE_BYTES {
        loader
            .catalog
            .diagnostics
            .push(too_large(file, text.len() as u64));
        return;
    }
    let documents: Vec<Node> =
        match serde_saphyr::from_str_multiple_with_options(text, parse_options()) {
            Ok(docs) => docs,
            Err(e) => {
                let at = e.location().map(Position::from).filter(|p| p.line > 0);
                let (message, mut help) = yaml_error(&e);
                let mut at = at;
                let line = at.and_then(|at| text.lines().nth(at.line as usize - 1));
                let indent = line.map(|l| &l[..l.len() - l.trim_start_matches([' ', '\t']).len()]);
                if let (Some(at), Some(tab)) = (&mut at, indent.and_then(|i| i.find('\t'))) {
                    // Point at the tab itself; the parser notices it one column later.
                    at.column = tab as u64 + 1;
                    help = "indent with spaces: YAML does not allow tabs in indentation".to_owned();
                }
                let mut d = file_error(file, message, at);
                d.help = Some(help);
                loader.catalog.diagnostics.push(d);
                return;
            }
        };
    for document in documents.iter().filter(|d| d.value != NodeValue::Null) {
        load_document(document, file, loader);
    }
}

fn load_document(document: &Node, file: &str, loader: &mut Loader) {
    let catalog = &mut loader.catalog;
    let name = match &document.value {
        NodeValue::Map(entries) => {
            entries
                .iter()
                .find(|(k, _)| k.name == "name")
                .and_then(|(_, v)| match &v.value {
                    NodeValue::String(s) => Some(s.clone()),
                    _ => None,
                })
        }
        _ => None,
    };
    let diagnostic = |at: Position, issue: Issue| Diagnostic {
        severity: issue.severity,
        file: file.to_owned(),
        at: Some(at),
        path: issue.path,
        deployment: name.clone(),
        message: issue.message,
        help: issue.help,
    };
    let first = catalog.diagnostics.len();
    let structural = structure::check(document);
    let broken: Vec<String> = structural.iter().map(|l| l.issue.path.clone()).collect();
    // Fields the user probably meant by a misspelt one: what is said about them being absent
    // would repeat the did-you-mean.
    let meant: Vec<String> = structural.iter().filter_map(|l| l.meant.clone()).collect();
    let structurally_valid = structural.is_empty();
    catalog
        .diagnostics
        .extend(structural.into_iter().map(|l| diagnostic(l.at, l.issue)));
    // With structural errors, the semantic checks still run on the document minus the broken
    // fields when that still makes a spec, so one run reports as much as it can.
    let spec: DeploymentSpec = match serde_json::from_value(document.value.to_json_without(&broken))
    {
        Ok(spec) => spec,
        Err(e) if structurally_valid => {
            // The schema check should catch everything serde refuses, with a field path; this
            // is the fallback when it does not.
            catalog.diagnostics.push(diagnostic(
                document.at,
                Issue::error("", e.to_string()).help(UNCAUGHT_HELP),
            ));
            return;
        }
        Err(_) => {
            catalog.diagnostics[first..].sort_by_key(|d| d.at);
            return;
        }
    };
    let issues: Vec<Issue> = validate(&spec)
        .into_iter()
        .filter(|i| !broken.iter().chain(&meant).any(|b| is_within(&i.path, b)))
        .collect();
    let failed = !structurally_valid || issues.iter().any(|i| i.severity == Severity::Error);
    catalog.diagnostics.extend(
        issues
            .into_iter()
            .map(|issue| diagnostic(document.locate(&issue.path), issue)),
    );
    catalog.diagnostics[first..].sort_by_key(|d| d.at);
    if !failed {
        let slug = slugify(&spec.name);
        loader.claims.push(claims(&spec, &slug, document));
        catalog.deployments.push(Deployment {
            slug,
            at: document.locate("name"),
            file: file.to_owned(),
            spec,
        });
    }
}

/// Whether the field path `path` is `field` or lies below it.
fn is_within(path: &str, field: &str) -> bool {
    path.strip_prefix(field)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// The routes a deployment claims: its slug, aliases, hosts and path prefix.
fn claims(spec: &DeploymentSpec, slug: &str, document: &Node) -> Vec<Claim> {
    let claim = |kind, value: &str, path: String, derived| Claim {
        kind,
        value: value.to_owned(),
        at: document.locate(&path),
        path,
        derived,
    };
    let mut claims = vec![claim("name", slug, "name".to_owned(), false)];
    for (i, alias) in spec.aliases.iter().enumerate() {
        claims.push(claim("name", alias, format!("aliases[{i}]"), false));
    }
    for (i, host) in spec.routing.hosts.iter().enumerate() {
        claims.push(claim("host", host, format!("routing.hosts[{i}]"), false));
    }
    claims.push(match &spec.routing.path_prefix {
        Some(prefix) => claim(
            "path prefix",
            prefix,
            "routing.pathPrefix".to_owned(),
            false,
        ),
        None => claim("path prefix", &format!("/{slug}"), "name".to_owned(), true),
    });
    claims
}

/// Names, aliases, hosts and path prefixes must each lead to one deployment. Each conflict is
/// reported at the later claim, naming the deployment, file, line and column of the first.
fn check_names(catalog: &mut Catalog, claims: &[Vec<Claim>]) {
    let mut first: BTreeMap<(&str, &str), (&Deployment, &Claim)> = BTreeMap::new();
    let mut found = Vec::new();
    let mut failed = Vec::new();
    for (i, (d, claims)) in catalog.deployments.iter().zip(claims).enumerate() {
        let mut name_taken = false;
        for claim in claims {
            let Some((other, earlier)) = first.get(&(claim.kind, claim.value.as_str())) else {
                first.insert((claim.kind, &claim.value), (d, claim));
                continue;
            };
            // A default prefix taken because the name is taken says nothing new.
            if claim.derived && name_taken {
                continue;
            }
            name_taken |= claim.kind == "name";
            failed.push(i);
            let what = if claim.derived {
                format!("the default path prefix `{}` (from the name)", claim.value)
            } else {
                format!("{} `{}`", claim.kind, claim.value)
            };
            found.push(Diagnostic {
                severity: Severity::Error,
                file: d.file.clone(),
                at: Some(claim.at),
                path: claim.path.clone(),
                deployment: Some(d.spec.name.clone()),
                message: format!(
                    "{what} is also used by deployment `{}` in {}:{}",
                    other.spec.name, other.file, earlier.at
                ),
                help: Some(if claim.derived {
                    "set routing.pathPrefix, or give each deployment its own name".to_owned()
                } else {
                    "give each deployment its own name, aliases, hosts and path prefix".to_owned()
                }),
            });
        }
    }
    catalog.diagnostics.extend(found);
    // Only the later claimants fail: the first keeps its name (two may share a display name).
    let mut index = 0;
    catalog.deployments.retain(|_| {
        index += 1;
        !failed.contains(&(index - 1))
    });
}
