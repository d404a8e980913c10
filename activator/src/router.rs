//! Which deployment a request is for: by host name first, then by path prefix.
//!
//! Lookups are hash-map probes, never scans over the deployments: a path is tried at each of its
//! segment boundaries from the longest prefix down, so a request costs a few probes whether ten
//! or ten thousand deployments are routed.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use http::StatusCode;
use serde_json::{Map, Value};

use crate::response::ErrorResponse;

/// Most deployment names listed in a 404 body; a catalogue of thousands would bury the message.
const MAX_LISTED: usize = 100;

/// Longest piece of a request's path or host echoed back in an error message.
const MAX_ECHOED: usize = 200;

/// The route maps: every request probes them, and their keys come from the specs, not from
/// clients, so they hash with FNV-1a rather than std's flooding-resistant SipHash, which costs
/// several times more per probe of a short key.
type HashMap<K, V> = fnv::FnvHashMap<K, V>;

/// Errors of routing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// No host or path prefix matches.
    #[error(
        "no deployment is routed at `{path}`{}; send requests to /<name>/..., where <name> is a deployment or one of its aliases",
        host.as_ref().map(|h| format!(" on host `{h}`")).unwrap_or_default()
    )]
    UnknownDeployment {
        /// The request's host, when it had one.
        host: Option<String>,
        /// The request's path.
        path: String,
        /// Some routed deployments, for the error body.
        known: Arc<[String]>,
    },
}

/// `Result` with this module's [`Error`].
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl ErrorResponse for Error {
    fn status(&self) -> StatusCode {
        match self {
            Error::UnknownDeployment { .. } => StatusCode::NOT_FOUND,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Error::UnknownDeployment { .. } => "unknown_deployment",
        }
    }

    fn details(&self, body: &mut Map<String, Value>) {
        match self {
            Error::UnknownDeployment { known, .. } => {
                let names = known.iter().map(|n| Value::String(n.clone())).collect();
                body.insert("deployments".to_owned(), Value::Array(names));
            }
        }
    }
}

/// The names one deployment answers to.
#[derive(Debug, Clone)]
pub(crate) struct Names<'a> {
    /// Its slug: `/<slug>` and `<slug>.<domain>` route to it.
    pub slug: &'a str,
    /// More names that route like the slug.
    pub aliases: &'a [String],
    /// `routing.pathPrefix`, when set.
    pub path_prefix: Option<&'a str>,
    /// Whether the matched prefix is stripped before forwarding.
    pub rewrite_path: bool,
    /// `routing.hosts`: exact names and `*.example.com` wildcards.
    pub hosts: &'a [String],
}

#[derive(Debug)]
struct PathRoute<T> {
    target: T,
    rewrite: bool,
}

/// A matched route.
#[derive(Debug)]
pub(crate) struct Resolved<'a, T> {
    /// The deployment.
    pub target: &'a T,
    /// The path and query to forward when they differ from the request's.
    pub path: Option<String>,
}

/// Host and path routes to targets of type `T`.
#[derive(Debug)]
pub(crate) struct Router<T> {
    prefixes: HashMap<Box<str>, PathRoute<T>>,
    /// Segments in the longest prefix: longer paths are only tried from there down.
    max_segments: usize,
    names: HashMap<Box<str>, T>,
    hosts: HashMap<Box<str>, T>,
    /// `*.example.com` is stored as `example.com`.
    wildcards: HashMap<Box<str>, T>,
    domain: Option<Box<str>>,
    known: Arc<[String]>,
}

impl<T: Clone> Router<T> {
    /// A router that also routes `Host: <name>.<domain>` when `domain` is set.
    pub fn new(domain: Option<&str>) -> Self {
        let domain = domain
            .map(|d| d.trim_matches('.').to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .map(String::into_boxed_str);
        Self {
            prefixes: HashMap::default(),
            max_segments: 0,
            names: HashMap::default(),
            hosts: HashMap::default(),
            wildcards: HashMap::default(),
            domain,
            known: Arc::from(Vec::new()),
        }
    }

    /// Adds a deployment's routes. A name, prefix or host already taken by an earlier deployment
    /// stays with it, so the outcome does not depend on hash order; the conflict is logged.
    pub fn add(&mut self, names: &Names<'_>, target: T) {
        let slug_prefix = format!("/{}", names.slug);
        let mut prefixes: Vec<Cow<'_, str>> = vec![Cow::Owned(slug_prefix)];
        prefixes.extend(names.aliases.iter().map(|a| Cow::Owned(format!("/{a}"))));
        prefixes.extend(names.path_prefix.map(Cow::Borrowed));
        for prefix in prefixes {
            let segments = prefix.matches('/').count();
            match self.prefixes.entry(prefix.as_ref().into()) {
                Entry::Occupied(_) => conflict(names.slug, "path prefix", &prefix),
                Entry::Vacant(slot) => {
                    slot.insert(PathRoute {
                        target: target.clone(),
                        rewrite: names.rewrite_path,
                    });
                    self.max_segments = self.max_segments.max(segments);
                }
            }
        }
        for name in std::iter::once(names.slug).chain(names.aliases.iter().map(String::as_str)) {
            insert(&mut self.names, name, &target, names.slug, "name");
        }
        for host in names.hosts {
            let host = host.to_ascii_lowercase();
            match host.strip_prefix("*.") {
                Some(parent) => insert(&mut self.wildcards, parent, &target, names.slug, "host"),
                None => insert(&mut self.hosts, &host, &target, names.slug, "host"),
            }
        }
        let mut known = self.known.to_vec();
        if known.len() < MAX_LISTED {
            known.push(names.slug.to_owned());
            known.sort();
            self.known = known.into();
        }
    }

    /// The deployment a request is for. Host routes forward the path unchanged; path routes
    /// strip the matched prefix unless the deployment says not to. The query is always kept.
    pub fn resolve(&self, host: Option<&str>, path_and_query: &str) -> Result<Resolved<'_, T>> {
        if let Some(target) = host.and_then(|h| self.by_host(&normalize_host(h))) {
            return Ok(Resolved { target, path: None });
        }
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let Some((route, end)) = self.by_path(path) else {
            return Err(Error::UnknownDeployment {
                host: host.map(|h| echo(h).into_owned()),
                path: echo(path).into_owned(),
                known: self.known.clone(),
            });
        };
        if !route.rewrite {
            return Ok(Resolved {
                target: &route.target,
                path: None,
            });
        }
        let rest = match &path[end..] {
            "" => "/",
            rest => rest,
        };
        let path = match query {
            Some(query) => format!("{rest}?{query}"),
            None => rest.to_owned(),
        };
        Ok(Resolved {
            target: &route.target,
            path: Some(path),
        })
    }

    fn by_host(&self, host: &str) -> Option<&T> {
        if let Some(target) = self.hosts.get(host) {
            return Some(target);
        }
        let (label, parent) = host.split_once('.')?;
        if let Some(domain) = self.domain.as_deref()
            && parent == domain
            && let Some(target) = self.names.get(label)
        {
            return Some(target);
        }
        self.wildcards.get(parent)
    }

    /// The longest routed prefix of `path` that ends at a segment boundary, and where it ends.
    fn by_path(&self, path: &str) -> Option<(&PathRoute<T>, usize)> {
        if !path.starts_with('/') || self.max_segments == 0 {
            return None;
        }
        let mut end = path
            .match_indices('/')
            .nth(self.max_segments)
            .map_or(path.len(), |(i, _)| i);
        loop {
            let candidate = &path[..end];
            if let Some(route) = self.prefixes.get(candidate) {
                return Some((route, end));
            }
            match candidate.rfind('/') {
                Some(0) | None => return None,
                Some(i) => end = i,
            }
        }
    }
}

fn insert<T: Clone>(map: &mut HashMap<Box<str>, T>, key: &str, target: &T, slug: &str, what: &str) {
    match map.entry(key.into()) {
        Entry::Occupied(_) => conflict(slug, what, key),
        Entry::Vacant(slot) => {
            slot.insert(target.clone());
        }
    }
}

fn conflict(slug: &str, what: &str, value: &str) {
    tracing::warn!(
        deployment = slug,
        "{what} `{value}` is already routed to another deployment; it stays there"
    );
}

/// A host without port or trailing dot, in lower case, as routes are stored.
fn normalize_host(host: &str) -> Cow<'_, str> {
    let host = if host.starts_with('[') {
        host.split_once(']').map_or(host, |(v6, _)| v6)
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    let host = host.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// `text` cut to a length fit for an error message.
fn echo(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_ECHOED {
        return Cow::Borrowed(text);
    }
    let mut end = MAX_ECHOED;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}...", &text[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names<'a>(slug: &'a str, aliases: &'a [String], hosts: &'a [String]) -> Names<'a> {
        Names {
            slug,
            aliases,
            path_prefix: None,
            rewrite_path: true,
            hosts,
        }
    }

    fn router() -> Router<&'static str> {
        let mut router = Router::new(Some("Models.Example.com."));
        let aliases = vec!["production".to_owned()];
        let hosts = vec!["api.example.org".to_owned(), "*.ml.example.org".to_owned()];
        router.add(&names("sentiment", &aliases, &hosts), "sentiment");
        router.add(
            &Names {
                path_prefix: Some("/v1/models/vision"),
                rewrite_path: false,
                ..names("vision", &[], &[])
            },
            "vision",
        );
        router
    }

    fn resolve(router: &Router<&'static str>, host: Option<&str>, path: &str) -> (String, String) {
        let resolved = router.resolve(host, path).expect("routed");
        let forwarded = resolved.path.unwrap_or_else(|| path.to_owned());
        ((*resolved.target).to_owned(), forwarded)
    }

    #[test]
    fn path_prefixes_are_stripped_at_segment_boundaries() {
        let r = router();
        let cases = [
            ("/sentiment/predict?x=1", "/predict?x=1"),
            ("/sentiment", "/"),
            ("/sentiment?x=1", "/?x=1"),
            ("/sentiment/", "/"),
            ("/production/a/b", "/a/b"),
        ];
        for (path, forwarded) in cases {
            assert_eq!(
                resolve(&r, None, path),
                ("sentiment".to_owned(), forwarded.to_owned()),
                "{path}"
            );
        }
        assert!(r.resolve(None, "/sentimental").is_err());
        assert!(r.resolve(None, "/").is_err());
        assert!(r.resolve(None, "*").is_err());
    }

    #[test]
    fn custom_prefixes_match_longest_first_and_may_keep_the_path() {
        let r = router();
        assert_eq!(
            resolve(&r, None, "/v1/models/vision/infer?q"),
            ("vision".to_owned(), "/v1/models/vision/infer?q".to_owned())
        );
        // The slug still routes too, and a longer unrelated path falls back to no match.
        assert_eq!(resolve(&r, None, "/vision/x").0, "vision");
        assert!(r.resolve(None, "/v1/models/other").is_err());
    }

    #[test]
    fn hosts_route_before_paths_and_keep_the_path() {
        let r = router();
        let cases = [
            (Some("sentiment.models.example.com"), "sentiment"),
            (Some("PRODUCTION.models.example.com:8080"), "sentiment"),
            (Some("vision.models.example.com."), "vision"),
            (Some("api.example.org"), "sentiment"),
            (Some("eu.ml.example.org"), "sentiment"),
        ];
        for (host, deployment) in cases {
            assert_eq!(
                resolve(&r, host, "/sentiment/x"),
                (deployment.to_owned(), "/sentiment/x".to_owned()),
                "{host:?}"
            );
        }
        // A wildcard covers one label; an unknown host falls back to the path.
        assert_eq!(
            resolve(&r, Some("a.b.ml.example.org"), "/vision/x").0,
            "vision"
        );
        assert_eq!(resolve(&r, Some("[::1]:80"), "/vision/x").0, "vision");
    }

    #[test]
    fn unknown_paths_list_the_deployments() {
        let r = router();
        let err = r
            .resolve(Some("x.example"), "/nope")
            .expect_err("nothing routed at /nope");
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
        let mut body = Map::new();
        err.details(&mut body);
        assert_eq!(
            body["deployments"],
            serde_json::json!(["sentiment", "vision"])
        );
        assert!(
            err.to_string().contains("`/nope` on host `x.example`"),
            "{err}"
        );
    }

    #[test]
    fn first_claim_wins() {
        let mut r = Router::new(None);
        let aliases = vec!["shared".to_owned()];
        r.add(&names("a", &aliases, &[]), "a");
        r.add(&names("b", &aliases, &[]), "b");
        assert_eq!(resolve(&r, None, "/shared").0, "a");
        assert_eq!(resolve(&r, None, "/b").0, "b");
    }

    #[test]
    fn long_paths_are_echoed_cut() {
        let r = router();
        let long = format!("/{}", "é".repeat(300));
        let err = r.resolve(None, &long).expect_err("not routed");
        assert!(err.to_string().len() < 400);
    }
}
