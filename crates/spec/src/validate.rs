//! Semantic checks: what the types alone cannot say (min ≤ max, unique names, a probe port the
//! deployment exposes, ...). Each finding names its field path; the loader adds the location.

use std::collections::{BTreeMap, BTreeSet};

use crate::diagnostic::{Issue, one_of};
use crate::names::{MAX_LABEL_LEN, is_dns_label, is_dns_subdomain, slugify};
use crate::secret::{ConfigValue, SecretName};
use crate::{
    Autoscaling, DeploymentSpec, Integration, MetricKind, Probe, RolloutStrategy, machine,
};

/// Most integrations one deployment may have (Paperspace's limit).
pub const MAX_INTEGRATIONS: usize = 5;

/// Environment variables lull sets for every replica.
pub const RESERVED_ENV: [&str; 3] = ["PORT", "LULL_DEPLOYMENT", "LULL_REPLICA"];

/// Every semantic error and warning in one spec.
pub fn validate(spec: &DeploymentSpec) -> Vec<Issue> {
    let mut out = Vec::new();
    check_name(spec, &mut out);
    check_workload(spec, &mut out);
    check_env(spec, &mut out);
    check_resources(spec, &mut out);
    if let Some(autoscaling) = &spec.resources.autoscaling {
        check_autoscaling(spec, autoscaling, &mut out);
    }
    check_probes(spec, &mut out);
    check_integrations(spec, &mut out);
    check_routing(spec, &mut out);
    check_activator(spec, &mut out);
    check_rollout(spec, &mut out);
    check_auth(spec, &mut out);
    check_kubernetes(spec, &mut out);
    out
}

fn check_name(spec: &DeploymentSpec, out: &mut Vec<Issue>) {
    let slug = slugify(&spec.name);
    if slug.is_empty() {
        out.push(
            Issue::error(
                "name",
                format!(
                    "{:?} has no letters or digits to name routes and objects with",
                    spec.name
                ),
            )
            .help("use a name such as `sentiment` or `my cool deployment`"),
        );
    } else if slug.len() > MAX_LABEL_LEN {
        out.push(
            Issue::error(
                "name",
                format!(
                    "is {} characters as a slug; at most {MAX_LABEL_LEN} fit a DNS label",
                    slug.len()
                ),
            )
            .help("shorten the name"),
        );
    }
}

fn check_workload(spec: &DeploymentSpec, out: &mut Vec<Issue>) {
    if spec.command.is_empty() && spec.image.is_none() {
        out.push(
            Issue::error(
                "command",
                "neither `command` nor `image` is set: there is nothing to run",
            )
            .help("give `command` to run a process on this machine, or `image` for Kubernetes"),
        );
    }
    if spec.command.first().is_some_and(|c| c.trim().is_empty()) {
        out.push(Issue::error("command[0]", "the program to run is empty"));
    }
    if spec.container_registry.is_some() && spec.image.is_none() {
        out.push(Issue::warning(
            "containerRegistry",
            "is set but `image` is not, so nothing is pulled with it",
        ));
    }
}

fn check_env(spec: &DeploymentSpec, out: &mut Vec<Issue>) {
    check_env_list(&spec.env, "env", out);
}

fn check_env_list(env: &[crate::EnvVar], base: &str, out: &mut Vec<Issue>) {
    let mut seen = BTreeMap::new();
    for (i, var) in env.iter().enumerate() {
        let path = format!("{base}[{i}].name");
        if var.name.is_empty() || var.name.contains(['=', '\0']) {
            out.push(
                Issue::error(
                    &path,
                    format!("{:?} is not a usable variable name", var.name),
                )
                .help("use a non-empty name without `=`"),
            );
        }
        if let Some(first) = seen.insert(var.name.as_str(), i) {
            out.push(
                Issue::error(
                    &path,
                    format!("`{}` is set twice (first at {base}[{first}])", var.name),
                )
                .help("keep one of them"),
            );
        }
        if RESERVED_ENV.contains(&var.name.as_str()) {
            out.push(Issue::warning(
                &path,
                format!(
                    "`{}` is set by lull for every replica; this value is replaced",
                    var.name
                ),
            ));
        }
    }
}

fn check_resources(spec: &DeploymentSpec, out: &mut Vec<Issue>) {
    let r = &spec.resources;
    if r.ports.is_empty() {
        out.push(
            Issue::error("resources.ports", "lists no port")
                .help("list the port the service listens on, for example [8000]"),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, port) in r.ports.iter().enumerate() {
        if *port == 0 {
            out.push(
                Issue::error(format!("resources.ports[{i}]"), "port 0 is not a port")
                    .help("use a port from 1 to 65535"),
            );
        } else if !seen.insert(*port) {
            out.push(Issue::error(
                format!("resources.ports[{i}]"),
                format!("port {port} is listed twice"),
            ));
        }
    }
    if r.machine_type.is_some() && r.instance_type.is_some() {
        out.push(
            Issue::error(
                "resources.instanceType",
                "both `machineType` and `instanceType` are set",
            )
            .help("`instanceType` is the older name of `machineType`; keep one"),
        );
    }
    if let Some(name) = r.machine()
        && machine::lookup(name).is_none()
    {
        let path = if r.machine_type.is_some() {
            "resources.machineType"
        } else {
            "resources.instanceType"
        };
        let known: Vec<&str> = machine::MACHINE_TYPES.iter().map(|m| m.name).collect();
        out.push(
            Issue::warning(
                path,
                format!("`{name}` is not a machine type lull knows; it sets no cpu, memory or GPU"),
            )
            .help(format!(
                "known types: {}; or set resources.cpu, memory and gpuCount",
                known.join(", ")
            )),
        );
    }
    for (field, q) in [
        ("maxCpu", &r.max_cpu),
        ("maxMemory", &r.max_memory),
        ("cpu", &r.cpu),
        ("memory", &r.memory),
    ] {
        if q.as_ref().is_some_and(|q| q.value() <= 0.0) {
            out.push(Issue::error(
                format!("resources.{field}"),
                "must be more than 0",
            ));
        }
    }
    if let (Some(req), Some(max)) = (&r.cpu, &r.max_cpu)
        && req.value() > max.value()
    {
        out.push(Issue::error(
            "resources.cpu",
            format!("requests {req} cores, more than maxCpu {max}"),
        ));
    }
    if let (Some(req), Some(max)) = (&r.memory, &r.max_memory)
        && req.value() > max.value()
    {
        out.push(Issue::error(
            "resources.memory",
            format!("requests {req}, more than maxMemory {max}"),
        ));
    }
}

fn gpus(spec: &DeploymentSpec) -> u32 {
    spec.resources
        .gpu_count
        .or_else(|| {
            spec.resources
                .machine()
                .and_then(machine::lookup)
                .map(|m| m.gpus)
        })
        .unwrap_or(0)
}

fn check_autoscaling(spec: &DeploymentSpec, a: &Autoscaling, out: &mut Vec<Issue>) {
    let base = "resources.autoscaling";
    let min = a.min_replicas.unwrap_or(spec.resources.replicas);
    if a.max_replicas == 0 {
        out.push(
            Issue::error(format!("{base}.maxReplicas"), "must be at least 1")
                .help("to stop the deployment, set `enabled: false`"),
        );
    }
    if min > a.max_replicas {
        let (path, what) = if a.min_replicas.is_some() {
            (format!("{base}.minReplicas"), "minReplicas")
        } else {
            (
                "resources.replicas".to_owned(),
                "replicas (the minimum when minReplicas is not set)",
            )
        };
        out.push(
            Issue::error(
                path,
                format!("{what} is {min}, more than maxReplicas {}", a.max_replicas),
            )
            .help("make the minimum at most maxReplicas"),
        );
    }
    if min == 0 && a.scale_to_zero_after.get().as_secs() < 1 {
        out.push(
            Issue::error(format!("{base}.scaleToZeroAfter"), "must be at least 1s")
                .help("for example 30s or 5m"),
        );
    }
    let mut seen = BTreeMap::new();
    let gpus = gpus(spec);
    for (i, m) in a.metrics.iter().enumerate() {
        let path = format!("{base}.metrics[{i}]");
        if !m.value.is_finite() || m.value <= 0.0 {
            out.push(
                Issue::error(
                    format!("{path}.value"),
                    format!("{} is not a usable target", m.value),
                )
                .help("use a number above 0"),
            );
        } else if m.metric.is_percent() && m.metric != MetricKind::Cpu && m.value > 100.0 {
            out.push(
                Issue::error(
                    format!("{path}.value"),
                    format!("{}% of {} can never be reached", m.value, m.metric.as_str()),
                )
                .help("use a percentage above 0 and at most 100"),
            );
        }
        if !m.metric.summaries().contains(&m.summary) {
            let allowed: Vec<&str> = m.metric.summaries().iter().map(|s| s.as_str()).collect();
            out.push(
                Issue::error(
                    format!("{path}.summary"),
                    format!(
                        "`{}` is not a summary of {}",
                        m.summary.as_str(),
                        m.metric.as_str()
                    ),
                )
                .help(format!("use {}", one_of(&allowed))),
            );
        }
        if let Some(first) = seen.insert((m.metric, m.summary), i) {
            out.push(Issue::error(
                format!("{path}.metric"),
                format!(
                    "{} {} is targeted twice (first at metrics[{first}])",
                    m.metric.as_str(),
                    m.summary.as_str()
                ),
            ));
        }
        if matches!(m.metric, MetricKind::Gpu | MetricKind::GpuMemory) && gpus == 0 {
            out.push(
                Issue::warning(
                    format!("{path}.metric"),
                    format!(
                        "{} is targeted but the machine has no GPU",
                        m.metric.as_str()
                    ),
                )
                .help("set resources.machineType to a GPU machine or resources.gpuCount"),
            );
        }
        if m.query.as_deref().is_some_and(|q| q.trim().is_empty()) {
            out.push(
                Issue::error(format!("{path}.query"), "is empty")
                    .help("remove it to use lull's default query"),
            );
        }
    }
    let b = &a.behavior;
    let bb = format!("{base}.behavior");
    if !(0.0..100.0).contains(&b.tolerance) {
        out.push(
            Issue::error(
                format!("{bb}.tolerance"),
                format!("{}% is not a tolerance", b.tolerance),
            )
            .help("use a percentage from 0 to below 100"),
        );
    }
    if b.stable_window.is_zero() {
        out.push(Issue::error(
            format!("{bb}.stableWindow"),
            "must be longer than 0s",
        ));
    }
    if b.panic_window.is_zero() || b.panic_window > b.stable_window {
        out.push(Issue::error(
            format!("{bb}.panicWindow"),
            format!(
                "{} must be longer than 0s and at most stableWindow ({})",
                b.panic_window, b.stable_window
            ),
        ));
    }
    if !(b.panic_threshold > 100.0 && b.panic_threshold.is_finite()) {
        out.push(
            Issue::error(
                format!("{bb}.panicThreshold"),
                format!("{}% never panics sensibly", b.panic_threshold),
            )
            .help("use a percentage above 100, such as 200"),
        );
    }
    if !(b.max_scale_up_rate > 1.0 && b.max_scale_up_rate.is_finite()) {
        out.push(Issue::error(
            format!("{bb}.maxScaleUpRate"),
            "must be above 1 (a multiplier per decision)",
        ));
    }
    if !(b.max_scale_down_rate > 1.0 && b.max_scale_down_rate.is_finite()) {
        out.push(Issue::error(
            format!("{bb}.maxScaleDownRate"),
            "must be above 1 (a divisor per decision)",
        ));
    }
    if b.activation_scale == 0 || b.activation_scale > a.max_replicas.max(1) {
        out.push(Issue::error(
            format!("{bb}.activationScale"),
            format!(
                "{} is outside 1..=maxReplicas ({})",
                b.activation_scale, a.max_replicas
            ),
        ));
    }
}

fn check_probes(spec: &DeploymentSpec, out: &mut Vec<Issue>) {
    let hc = &spec.health_checks;
    for (name, probe) in [
        ("liveness", &hc.liveness),
        ("readiness", &hc.readiness),
        ("startup", &hc.startup),
    ] {
        if let Some(probe) = probe {
            check_probe(spec, &format!("healthChecks.{name}"), name, probe, out);
        }
    }
}

fn check_probe(spec: &DeploymentSpec, base: &str, kind: &str, p: &Probe, out: &mut Vec<Issue>) {
    match (&p.path, &p.exec) {
        (None, None) => out.push(
            Issue::error(base, "says neither what to request nor what to run")
                .help("give `path` (an HTTP GET) or `exec: { command: [...] }`"),
        ),
        (Some(_), Some(_)) => out.push(
            Issue::error(format!("{base}.exec"), "is set together with `path`")
                .help("a probe is either HTTP (`path`) or a command (`exec`); keep one"),
        ),
        (Some(path), None) if !path.starts_with('/') => {
            out.push(
                Issue::error(
                    format!("{base}.path"),
                    format!("{path:?} does not start with `/`"),
                )
                .help(format!("write \"/{path}\"")),
            );
        }
        (None, Some(exec)) if exec.command.is_empty() => {
            out.push(Issue::error(format!("{base}.exec.command"), "is empty"))
        }
        _ => {}
    }
    if let Some(port) = p.port
        && !spec.resources.ports.contains(&port)
    {
        let exposed: Vec<String> = spec.resources.ports.iter().map(u16::to_string).collect();
        out.push(
            Issue::error(
                format!("{base}.port"),
                format!("port {port} is not exposed by the deployment"),
            )
            .help(format!(
                "use one of resources.ports ({}), or add {port} there",
                exposed.join(", ")
            )),
        );
    }
    if p.exec.is_some() && (p.port.is_some() || p.host.is_some() || !p.headers.is_empty()) {
        out.push(Issue::warning(
            base,
            "port, host and headers are used by HTTP probes only; this probe runs a command",
        ));
    }
    for (field, v) in [
        ("periodSeconds", p.period_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("failureThreshold", p.failure_threshold),
        ("successThreshold", p.success_threshold),
    ] {
        if v == 0 {
            out.push(Issue::error(
                format!("{base}.{field}"),
                "must be at least 1",
            ));
        }
    }
    if kind != "readiness" && p.success_threshold > 1 {
        out.push(
            Issue::error(
                format!("{base}.successThreshold"),
                format!("must be 1 for a {kind} probe"),
            )
            .help("only readiness probes may need several successes"),
        );
    }
    for (i, h) in p.headers.iter().enumerate() {
        if h.name.is_empty() || !h.name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            out.push(Issue::error(
                format!("{base}.headers[{i}].name"),
                format!("{:?} is not an HTTP header name", h.name),
            ));
        }
    }
}

fn check_integrations(spec: &DeploymentSpec, out: &mut Vec<Issue>) {
    if spec.integrations.len() > MAX_INTEGRATIONS {
        out.push(
            Issue::error(
                "integrations",
                format!(
                    "has {} integrations; at most {MAX_INTEGRATIONS} are allowed",
                    spec.integrations.len()
                ),
            )
            .help("combine data into fewer integrations"),
        );
    }
    let mut names = BTreeMap::new();
    let mut paths = BTreeMap::new();
    for (i, integration) in spec.integrations.iter().enumerate() {
        let base = format!("integrations[{i}]");
        let name = integration.name();
        if name.is_empty() {
            out.push(Issue::error(format!("{base}.name"), "is empty"));
        } else if let Some(first) = names.insert(name, i) {
            out.push(Issue::error(
                format!("{base}.name"),
                format!("`{name}` is used twice (first at integrations[{first}])"),
            ));
        }
        let path = integration.path();
        if !path.starts_with('/') {
            out.push(
                Issue::error(
                    format!("{base}.path"),
                    format!("{path:?} is not an absolute path"),
                )
                .help("start it with `/`, for example /models/"),
            );
        }
        let full = match integration {
            Integration::GitLfs(g) => format!("{}/{}", path.trim_end_matches('/'), g.name),
            _ => path.trim_end_matches('/').to_owned(),
        };
        if let Some(first) = paths.insert(full.clone(), i) {
            out.push(
                Issue::error(
                    format!("{base}.path"),
                    format!("`{full}` is also the mount of integrations[{first}]"),
                )
                .help("give each integration its own path"),
            );
        }
        match integration {
            Integration::S3(s3) => {
                if !s3.url.starts_with("s3://") {
                    out.push(Issue::error(
                        format!("{base}.url"),
                        format!("{:?} is not an s3:// URL", s3.url),
                    ));
                }
                if let Some(ConfigValue::Plain(_)) = &s3.secret_access_key {
                    out.push(
                        Issue::warning(
                            format!("{base}.secretAccessKey"),
                            "is written in plain text",
                        )
                        .help("store it with `lull secret set` and write secret:NAME"),
                    );
                }
            }
            Integration::GitLfs(g)
                if !(g.url.starts_with("https://")
                    || g.url.starts_with("http://")
                    || g.url.starts_with("git@")) =>
            {
                out.push(
                    Issue::error(
                        format!("{base}.url"),
                        format!("{:?} is not a git URL", g.url),
                    )
                    .help("use an https:// URL, such as https://huggingface.co/org/model"),
                );
            }
            Integration::Volume(v) if v.host_path.is_some() && v.claim_name.is_some() => {
                out.push(
                    Issue::error(format!("{base}.claimName"), "is set together with hostPath")
                        .help("mount a host directory or a claim, not both"),
                );
            }
            _ => {}
        }
    }
}

fn check_routing(spec: &DeploymentSpec, out: &mut Vec<Issue>) {
    let r = &spec.routing;
    if let Some(prefix) = &r.path_prefix {
        if !prefix.starts_with('/') || prefix.len() < 2 {
            out.push(
                Issue::error(
                    "routing.pathPrefix",
                    format!("{prefix:?} is not a path prefix"),
                )
                .help("use a path such as /sentiment; `/` alone would take every request"),
            );
        } else if prefix.ends_with('/') || prefix.contains(['?', '#', ' ']) {
            out.push(Issue::error(
                "routing.pathPrefix",
                format!("{prefix:?} must not end with `/` or hold `?`, `#` or spaces"),
            ));
        }
    }
    for (i, host) in r.hosts.iter().enumerate() {
        let bare = host.strip_prefix("*.").unwrap_or(host);
        if !is_dns_subdomain(bare) {
            out.push(
                Issue::error(
                    format!("routing.hosts[{i}]"),
                    format!("{host:?} is not a host name"),
                )
                .help("use lower-case names such as api.example.com, without scheme or port"),
            );
        }
    }
    let slug = slugify(&spec.name);
    let mut seen = BTreeSet::new();
    for (i, alias) in spec.aliases.iter().enumerate() {
        if !is_dns_label(alias) {
            out.push(
                Issue::error(
                    format!("aliases[{i}]"),
                    format!("{alias:?} is not a DNS label"),
                )
                .help("use lower-case letters, digits and `-`, such as `production`"),
            );
        } else if *alias == slug || !seen.insert(alias) {
            out.push(Issue::error(
                format!("aliases[{i}]"),
                format!("`{alias}` is already a name of this deployment"),
            ));
        }
    }
    let sticky = &spec.load_balancing.sticky_sessions;
    if sticky.enabled
        && (sticky.cookie_name.is_empty()
            || !sticky
                .cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
    {
        out.push(
            Issue::error(
                "loadBalancing.stickySessions.cookieName",
                format!("{:?} is not a cookie name", sticky.cookie_name),
            )
            .help("use letters, digits, `-`, `_` and `.`"),
        );
    }
}

fn check_activator(spec: &DeploymentSpec, out: &mut Vec<Issue>) {
    let a = &spec.activator;
    if a.queue_timeout.is_zero() {
        out.push(
            Issue::error("activator.queueTimeout", "must be longer than 0s")
                .help("for example 60s; slow-starting GPU models may need several minutes"),
        );
    }
    if a.max_request_body.value() < 1.0 {
        out.push(Issue::error(
            "activator.maxRequestBody",
            "must be at least 1 byte",
        ));
    }
    let t = &a.timeouts;
    for (field, d) in [
        ("connect", t.connect),
        ("responseHeader", t.response_header),
        ("idle", t.idle),
    ] {
        if d.is_zero() {
            out.push(Issue::error(
                format!("activator.timeouts.{field}"),
                "must be longer than 0s",
            ));
        }
    }
    if t.total.is_some_and(|d| d.is_zero()) {
        out.push(
            Issue::error("activator.timeouts.total", "must be longer than 0s")
                .help("remove it for no limit"),
        );
    }
    for (field, limit) in [
        ("perDeployment", &a.rate_limit.per_deployment),
        ("perClientIp", &a.rate_limit.per_client_ip),
    ] {
        if let Some(limit) = limit {
            if limit.requests_per_second == 0 {
                out.push(
                    Issue::error(
                        format!("activator.rateLimit.{field}.requestsPerSecond"),
                        "must be at least 1",
                    )
                    .help("to refuse all traffic, set `enabled: false`"),
                );
            }
            if limit.burst == Some(0) {
                out.push(Issue::error(
                    format!("activator.rateLimit.{field}.burst"),
                    "must be at least 1",
                ));
            }
        }
    }
}

fn check_rollout(spec: &DeploymentSpec, out: &mut Vec<Issue>) {
    let r = &spec.rollout;
    match (r.strategy, r.canary_percent) {
        (RolloutStrategy::Canary, None) => out.push(
            Issue::error("rollout.canaryPercent", "is required with strategy canary")
                .help("for example canaryPercent: 10"),
        ),
        (RolloutStrategy::Canary, Some(p)) if p == 0 || p >= 100 => out.push(
            Issue::error(
                "rollout.canaryPercent",
                format!("{p} is not a canary share"),
            )
            .help("use 1 to 99"),
        ),
        (s, Some(_)) if s != RolloutStrategy::Canary => out.push(Issue::warning(
            "rollout.canaryPercent",
            "is used only with strategy canary",
        )),
        _ => {}
    }
}

fn check_auth(spec: &DeploymentSpec, out: &mut Vec<Issue>) {
    match &spec.basic_auth_key {
        Some(ConfigValue::Plain(key)) if key.is_empty() => out
            .push(Issue::error("basicAuthKey", "is empty").help("remove it for an open endpoint")),
        Some(ConfigValue::Plain(_)) => out.push(
            Issue::warning("basicAuthKey", "is written in plain text")
                .help("store it with `lull secret set NAME` and write secret:NAME"),
        ),
        _ => {}
    }
    if spec.is_external && spec.basic_auth_key.is_some() {
        out.push(Issue::warning(
            "isExternal",
            "is true, so basicAuthKey is not asked for",
        ));
    }
}

fn check_kubernetes(spec: &DeploymentSpec, out: &mut Vec<Issue>) {
    let k = &spec.kubernetes;
    if let Some(ns) = &k.namespace
        && !is_dns_label(ns)
    {
        out.push(
            Issue::error(
                "kubernetes.namespace",
                format!("{ns:?} is not a namespace name"),
            )
            .help("use a DNS label: lower-case letters, digits and `-`"),
        );
    }
    let mut names = BTreeSet::new();
    for (i, s) in k.sidecars.iter().enumerate() {
        if !is_dns_label(&s.name) {
            out.push(Issue::error(
                format!("kubernetes.sidecars[{i}].name"),
                format!("{:?} is not a container name", s.name),
            ));
        } else if !names.insert(s.name.as_str()) || s.name == slugify(&spec.name) {
            out.push(Issue::error(
                format!("kubernetes.sidecars[{i}].name"),
                format!("`{}` is already a container of this deployment", s.name),
            ));
        }
        check_env_list(&s.env, &format!("kubernetes.sidecars[{i}].env"), out);
    }
}

/// Every `secret:` reference in a spec, with its field path.
pub fn secret_references(spec: &DeploymentSpec) -> Vec<(String, &SecretName)> {
    let mut values: Vec<(String, &ConfigValue)> = Vec::new();
    for (i, e) in spec.env.iter().enumerate() {
        values.push((format!("env[{i}].value"), &e.value));
    }
    let hc = &spec.health_checks;
    for (name, probe) in [
        ("liveness", &hc.liveness),
        ("readiness", &hc.readiness),
        ("startup", &hc.startup),
    ] {
        for (i, h) in probe.iter().flat_map(|p| p.headers.iter().enumerate()) {
            values.push((format!("healthChecks.{name}.headers[{i}].value"), &h.value));
        }
    }
    for (i, integration) in spec.integrations.iter().enumerate() {
        if let Integration::S3(s3) = integration {
            if let Some(v) = &s3.access_key_id {
                values.push((format!("integrations[{i}].accessKeyId"), v));
            }
            if let Some(v) = &s3.secret_access_key {
                values.push((format!("integrations[{i}].secretAccessKey"), v));
            }
        }
    }
    if let Some(key) = &spec.basic_auth_key {
        values.push(("basicAuthKey".to_owned(), key));
    }
    for (s, sidecar) in spec.kubernetes.sidecars.iter().enumerate() {
        for (i, e) in sidecar.env.iter().enumerate() {
            values.push((format!("kubernetes.sidecars[{s}].env[{i}].value"), &e.value));
        }
    }
    values
        .into_iter()
        .filter_map(|(path, value)| value.secret().map(|name| (path, name)))
        .collect()
}
