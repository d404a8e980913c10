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
    let mut catalog = Catalog::default();
    for path in paths {
        let path = path.as_ref();
        match spec_files(path) {
            Ok(files) => {
                for file in files {
                    load_file_into(&file, &mut catalog);
                }
            }
            Err(message) => {
                catalog
                    .diagnostics
                    .push(file_error(&path.display().to_string(), message, None))
            }
        }
    }
    check_names(&mut catalog);
    catalog
}

/// Loads the documents of one YAML text, as if read from `file`.
pub fn load_str(text: &str, file: &str) -> Catalog {
    let mut catalog = Catalog::default();
    load_text_into(text, file, &mut catalog);
    check_names(&mut catalog);
    catalog
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

fn load_file_into(path: &Path, catalog: &mut Catalog) {
    let file = path.display().to_string();
    let size = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) => {
            catalog
                .diagnostics
                .push(file_error(&file, format!("cannot read: {e}"), None));
            return;
        }
    };
    if size > MAX_FILE_BYTES {
        catalog.diagnostics.push(too_large(&file, size));
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(text) => load_text_into(&text, &file, catalog),
        Err(e) => catalog
            .diagnostics
            .push(file_error(&file, format!("cannot read: {e}"), None)),
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
    options.alias_limits.max_total_replayed_events = 100_000;
    options.alias_limits.max_alias_expansions_per_anchor = 100;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.strict_booleans = true;
    options.with_snippet = false;
    options
}

fn load_text_into(text: &str, file: &str, catalog: &mut Catalog) {
    if text.len() as u64 > MAX_FILE_BYTES {
        catalog.diagnostics.push(too_large(file, text.len() as u64));
        return;
    }
    let documents: Vec<Node> =
        match serde_saphyr::from_str_multiple_with_options(text, parse_options()) {
            Ok(docs) => docs,
            Err(e) => {
                let e = e.without_snippet();
                let at = e.location().map(Position::from).filter(|p| p.line > 0);
                let mut d = file_error(
                    file,
                    format!("not valid YAML or over lull's parsing limits: {e}"),
                    at,
                );
                d.help = Some(
                    "fix the YAML syntax; anchors and aliases are limited to keep loading fast"
                        .to_owned(),
                );
                catalog.diagnostics.push(d);
                return;
            }
        };
    for document in documents.iter().filter(|d| d.value != NodeValue::Null) {
        load_document(document, file, catalog);
    }
}

fn load_document(document: &Node, file: &str, catalog: &mut Catalog) {
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
            catalog
                .diagnostics
                .push(diagnostic(document.at, Issue::error("", e.to_string())));
            return;
        }
        Err(_) => {
            catalog.diagnostics[first..].sort_by_key(|d| d.at);
            return;
        }
    };
    let issues: Vec<Issue> = validate(&spec)
        .into_iter()
        .filter(|i| !broken.iter().any(|b| i.path.starts_with(b.as_str())))
        .collect();
    let failed = !structurally_valid || issues.iter().any(|i| i.severity == Severity::Error);
    catalog.diagnostics.extend(
        issues
            .into_iter()
            .map(|issue| diagnostic(document.locate(&issue.path), issue)),
    );
    catalog.diagnostics[first..].sort_by_key(|d| d.at);
    if !failed {
        catalog.deployments.push(Deployment {
            slug: slugify(&spec.name),
            at: document.locate("name"),
            file: file.to_owned(),
            spec,
        });
    }
}

/// Names, aliases, hosts and path prefixes must each lead to one deployment.
fn check_names(catalog: &mut Catalog) {
    let mut claims: BTreeMap<(&str, String), &Deployment> = BTreeMap::new();
    let mut found = Vec::new();
    for d in &catalog.deployments {
        let mut routes: Vec<(&str, String, String)> =
            vec![("name", d.slug.clone(), "name".to_owned())];
        routes.extend(
            d.spec
                .aliases
                .iter()
                .enumerate()
                .map(|(i, a)| ("name", a.clone(), format!("aliases[{i}]"))),
        );
        routes.extend(
            d.spec
                .routing
                .hosts
                .iter()
                .enumerate()
                .map(|(i, h)| ("host", h.clone(), format!("routing.hosts[{i}]"))),
        );
        let prefix = d
            .spec
            .routing
            .path_prefix
            .clone()
            .unwrap_or_else(|| format!("/{}", d.slug));
        routes.push(("path prefix", prefix, "routing.pathPrefix".to_owned()));
        for (kind, value, path) in routes {
            if let Some(first) = claims.get(&(kind, value.clone())) {
                found.push(Diagnostic {
                    severity: Severity::Error,
                    file: d.file.clone(),
                    at: Some(d.at),
                    path,
                    deployment: Some(d.spec.name.clone()),
                    message: format!(
                        "{kind} `{value}` is also used by deployment `{}` in {}:{}",
                        first.spec.name, first.file, first.at
                    ),
                    help: Some(
                        "give each deployment its own name, aliases, hosts and path prefix"
                            .to_owned(),
                    ),
                });
            } else {
                claims.insert((kind, value), d);
            }
        }
    }
    let failed: Vec<String> = found.iter().filter_map(|d| d.deployment.clone()).collect();
    catalog.diagnostics.extend(found);
    catalog
        .deployments
        .retain(|d| !failed.contains(&d.spec.name));
}
