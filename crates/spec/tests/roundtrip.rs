//! Round trips: any valid spec, written out as YAML by serde-saphyr, loads back as the same spec
//! with no errors; durations and quantities print as text that parses back to the same value.
//!
//! The strategies build specs that pass validation (unique names, ports, paths; min ≤ max; and
//! so on) but are otherwise as awkward as possible for YAML: strings that look like numbers,
//! booleans, nulls or comments, `secret:` references, unicode, blank and multi-line text.

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;

use lull_spec::secret::{ConfigValue, SecretName};
use lull_spec::{
    Activator, ApiVersion, Autoscaling, Behavior, DeploymentSpec, Duration, EnvVar, Environment,
    ExecProbe, GitLfsIntegration, Header, HealthChecks, Integration, Kubernetes, LoadBalancing,
    LoadBalancingPolicy, MetricKind, MetricTarget, Probe, Quantity, RateLimit, RateLimits,
    RegistryIntegration, Resources, Rollout, RolloutStrategy, Routing, S3Integration, Sidecar,
    StickySessions, Timeouts, VolumeIntegration, load_str,
};

/// Strings YAML is apt to read as something else, or to mangle.
const AWKWARD: &[&str] = &[
    "",
    " ",
    "true",
    "False",
    "yes",
    "no",
    "on",
    "off",
    "y",
    "n",
    "null",
    "Null",
    "~",
    "0",
    "-0",
    "007",
    "0x1F",
    "0o17",
    "1e3",
    "1_000",
    ".5",
    "5.",
    "1.10",
    "20181002.0",
    ".inf",
    "-.Inf",
    ".nan",
    "NaN",
    "12:30",
    "2024-01-01",
    "- item",
    "key: value",
    "a #b",
    "#comment",
    "&anchor",
    "*alias",
    "!tag",
    "%directive",
    "@at",
    "`tick",
    "|",
    ">",
    "'single'",
    "\"double\"",
    "{flow}",
    "[list]",
    "a, b",
    "? q",
    "---",
    "...",
    "<<",
    "=",
    "secret:notAReference",
    "trailing ",
    " leading",
    "line\nbreak",
    "two\n\nbreaks\n",
    "tab\there",
    "carriage\rreturn",
    "back\\slash",
    "ünïcödé ✓ 日本",
    "emoji 🚀",
    "\u{feff}bom",
    "\u{85}next line",
    "\u{2028}line separator",
];

/// Any string: awkward ones, printable text, and arbitrary unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(AWKWARD).prop_map(str::to_owned),
        3 => "[ -~]{0,24}",
        1 => any::<String>(),
    ]
}

/// A string that is not blank (for fields where blank is an error).
fn non_blank() -> impl Strategy<Value = String> {
    text().prop_filter("not blank", |s| !s.trim().is_empty())
}

/// A plain value as YAML would carry it: anything except the `secret:` prefix, which makes
/// it a reference.
fn plain_value() -> impl Strategy<Value = String> {
    text().prop_filter("not a reference", |s| !s.starts_with("secret:"))
}

fn secret_name() -> impl Strategy<Value = SecretName> {
    "[A-Za-z0-9._-]{1,40}".prop_map(|s| SecretName::new(s).expect("generated names are valid"))
}

fn config_value() -> impl Strategy<Value = ConfigValue> {
    prop_oneof![
        plain_value().prop_map(ConfigValue::Plain),
        secret_name().prop_map(ConfigValue::Secret),
    ]
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..=100_000_000).prop_map(Duration::from_millis),
        (0u64..=1_000_000).prop_map(Duration::from_secs),
    ]
}

fn positive_duration() -> impl Strategy<Value = Duration> {
    duration().prop_filter("longer than 0", |d| !d.is_zero())
}

/// Quantity text: `2`, `0.5`, `500m`, `16Gi`, `1.25T`.
fn quantity_text() -> impl Strategy<Value = String> {
    (
        1u64..100_000,
        option::of(1u32..1000),
        proptest::sample::select(vec!["", "m", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti"]),
    )
        .prop_map(|(whole, fraction, suffix)| match fraction {
            Some(f) => format!("{whole}.{f:03}{suffix}"),
            None => format!("{whole}{suffix}"),
        })
}

fn quantity() -> impl Strategy<Value = Quantity> {
    quantity_text().prop_map(|t| t.parse().expect("generated quantities are valid"))
}

/// A finite float above 0: round numbers, and arbitrary ones across magnitudes.
fn positive_float(max: f64) -> impl Strategy<Value = f64> {
    prop_oneof![
        (1u32..=100).prop_map(move |n| f64::from(n).min(max)),
        (1u32..=200).prop_map(move |n| (f64::from(n) / 4.0).min(max)),
        // Not so small that 1 + x or 100 + x rounds back to 1 or 100.
        (1e-6..max),
    ]
}

fn dns_label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?"
}

fn host() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        vec(dns_label(), 1..4),
        proptest::sample::select(vec!["com", "io", "dev"]),
    )
        .prop_map(|(wildcard, labels, tld)| {
            let name = format!("{}.{tld}", labels.join("."));
            if wildcard { format!("*.{name}") } else { name }
        })
}

/// A display name with a usable slug: awkward spellings that still hold letters or digits.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9][A-Za-z0-9 ._-]{0,30}",
        proptest::sample::select(vec![
            "my cool deployment",
            "true",
            "null",
            "1.10",
            "123",
            "0x1F",
            "a: b",
            "- x",
            "#1 model",
            "secret:not-a-ref",
            "ünï model",
        ])
        .prop_map(str::to_owned),
    ]
}

/// Keeps the first item of each key.
fn unique_by<T, K: Ord>(items: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut seen = std::collections::BTreeSet::new();
    items.into_iter().filter(|i| seen.insert(key(i))).collect()
}

fn env_var_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Z_][A-Z0-9_]{0,15}",
        non_blank().prop_filter("usable as a name", |s| !s.contains(['=', '\0'])),
    ]
}

fn env() -> BoxedStrategy<Vec<EnvVar>> {
    vec(
        (env_var_name(), config_value()).prop_map(|(name, value)| EnvVar { name, value }),
        0..6,
    )
    .prop_map(|vars| unique_by(vars, |v| v.name.clone()))
    .boxed()
}

fn metric_target() -> impl Strategy<Value = MetricTarget> {
    (
        proptest::sample::select(MetricKind::ALL.to_vec()),
        any::<prop::sample::Index>(),
        positive_float(100.0),
        option::of(non_blank()),
    )
        .prop_map(|(metric, summary, value, query)| MetricTarget {
            metric,
            summary: *summary.get(metric.summaries()),
            value,
            query,
        })
}

fn behavior(max_replicas: u32) -> impl Strategy<Value = Behavior> {
    (
        (0.0f64..100.0),
        positive_duration(),
        any::<prop::sample::Index>(),
        positive_float(1e6).prop_map(|p| 100.0 + p),
        option::of(duration()),
        positive_float(1e6).prop_map(|r| 1.0 + r),
        positive_float(1e3).prop_map(|r| 1.0 + r),
        1..=max_replicas,
    )
        .prop_map(
            |(
                tolerance,
                stable_window,
                panic,
                panic_threshold,
                scale_down_stabilization,
                max_scale_up_rate,
                max_scale_down_rate,
                activation_scale,
            )| {
                // A panic window from 1 ms up to the stable window.
                let stable_ms = stable_window.get().as_millis() as u64;
                let panic_window =
                    Duration::from_millis(1 + panic.index(stable_ms as usize) as u64);
                Behavior {
                    tolerance,
                    stable_window,
                    panic_window,
                    panic_threshold,
                    scale_down_stabilization,
                    max_scale_up_rate,
                    max_scale_down_rate,
                    activation_scale,
                }
            },
        )
}

/// Autoscaling whose bounds fit `replicas` (the minimum when `minReplicas` is unset).
fn autoscaling(replicas: u32) -> impl Strategy<Value = Autoscaling> {
    (1u32..=50, option::of(0u32..=50)).prop_flat_map(move |(max, min)| {
        let max = max.max(min.unwrap_or(replicas)).max(1);
        (
            any::<bool>(),
            Just(min),
            Just(max),
            positive_duration()
                .prop_map(|d| Duration::from_millis(d.get().as_millis().max(1000) as u64)),
            vec(metric_target(), 0..5),
            prop_oneof![Just(Behavior::default()), behavior(max)],
        )
            .prop_map(
                |(enabled, min_replicas, max_replicas, scale_to_zero_after, metrics, behavior)| {
                    Autoscaling {
                        enabled,
                        min_replicas,
                        max_replicas,
                        scale_to_zero_after,
                        metrics: unique_by(metrics, |m| (m.metric, m.summary)),
                        behavior,
                    }
                },
            )
    })
}

fn resources() -> BoxedStrategy<Resources> {
    (
        0u32..=5,
        vec(1u16..=u16::MAX, 1..4),
        prop_oneof![
            Just((None, None)),
            proptest::sample::select(vec!["C4", "A100-80G", "A100-80Gx8", "T4", "Z9000", "1.5"])
                .prop_map(|m| (Some(m.to_owned()), None)),
            Just((None, Some("P5000".to_owned()))),
        ],
        (
            option::of(quantity()),
            option::of(quantity()),
            option::of(0u32..=8),
            option::of(non_blank()),
        ),
        any::<bool>(),
    )
        .prop_flat_map(
            |(replicas, ports, machine, (cpu, memory, gpu_count, gpu_type), scale)| {
                let ports = unique_by(ports, |p| *p);
                let autoscaling = if scale {
                    autoscaling(replicas).prop_map(Some).boxed()
                } else {
                    Just(None).boxed()
                };
                // Limits at least the requests, so that request ≤ limit holds.
                let limits = (option::of(any::<bool>()), option::of(any::<bool>()));
                (autoscaling, limits).prop_map(move |(autoscaling, (max_cpu, max_memory))| {
                    let limit = |request: &Option<Quantity>, set: Option<bool>| match (request, set)
                    {
                        (Some(r), Some(_)) => Some(r.clone()),
                        (None, Some(true)) => Some("2".parse().expect("valid")),
                        _ => None,
                    };
                    Resources {
                        replicas,
                        machine_type: machine.0.clone(),
                        instance_type: machine.1.clone(),
                        ports: ports.clone(),
                        max_cpu: limit(&cpu, max_cpu),
                        max_memory: limit(&memory, max_memory),
                        cpu: cpu.clone(),
                        memory: memory.clone(),
                        gpu_count,
                        gpu_type: gpu_type.clone(),
                        autoscaling,
                    }
                })
            },
        )
        .boxed()
}

fn header() -> impl Strategy<Value = Header> {
    ("[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}", config_value())
        .prop_map(|(name, value)| Header { name, value })
}

/// A probe; `kind` is `readiness`, `liveness` or `startup`.
fn probe(ports: Vec<u16>, readiness: bool) -> impl Strategy<Value = Probe> {
    (
        prop_oneof![
            text().prop_map(|p| (Some(format!("/{p}")), None)),
            vec(non_blank(), 1..4).prop_map(|command| (None, Some(ExecProbe { command }))),
        ],
        option::of(proptest::sample::select(ports)),
        option::of(non_blank()),
        vec(header(), 0..3),
        (0u32..=600, 1u32..=600, 1u32..=60, 1u32..=10, 1u32..=10),
    )
        .prop_map(
            move |(
                (path, exec),
                port,
                host,
                headers,
                (delay, period, timeout, failures, successes),
            )| {
                let http = path.is_some();
                Probe {
                    path,
                    port: port.filter(|_| http),
                    host: host.filter(|_| http),
                    headers: if http { headers } else { Vec::new() },
                    exec,
                    initial_delay_seconds: delay,
                    period_seconds: period,
                    timeout_seconds: timeout,
                    failure_threshold: failures,
                    success_threshold: if readiness { successes } else { 1 },
                }
            },
        )
}

fn health_checks(ports: Vec<u16>) -> impl Strategy<Value = HealthChecks> {
    (
        option::of(probe(ports.clone(), false)),
        option::of(probe(ports.clone(), true)),
        option::of(probe(ports, false)),
    )
        .prop_map(|(liveness, readiness, startup)| HealthChecks {
            liveness,
            readiness,
            startup,
        })
}

/// The `i`th integration: names and mount paths carry `i`, so they are unique.
fn integration(i: usize) -> impl Strategy<Value = Integration> {
    let name = move |s: String| format!("{s}{i}");
    let path = move |s: String| format!("/mnt/{i}/{s}");
    let word = "[a-z][a-z0-9-]{0,10}";
    prop_oneof![
        (
            word,
            word,
            "https://[a-z]{1,10}\\.co/[a-z/]{1,20}",
            option::of(non_blank())
        )
            .prop_map(
                move |(n, p, url, r#ref)| Integration::GitLfs(GitLfsIntegration {
                    name: name(n),
                    path: path(p),
                    url,
                    r#ref,
                })
            ),
        (
            word,
            word,
            "s3://[a-z0-9.-]{1,20}/[ -~]{0,10}",
            option::of(non_blank()),
            option::of(non_blank()),
            option::of(config_value()),
            option::of(config_value()),
        )
            .prop_map(
                move |(n, p, url, region, endpoint, access_key_id, secret_access_key)| {
                    Integration::S3(S3Integration {
                        name: name(n),
                        path: path(p),
                        url,
                        region,
                        endpoint,
                        access_key_id,
                        secret_access_key,
                    })
                }
            ),
        (
            any::<bool>(),
            word,
            word,
            non_blank(),
            option::of(non_blank())
        )
            .prop_map(move |(model, n, p, id, version)| {
                let registry = RegistryIntegration {
                    name: name(n),
                    path: path(p),
                    id,
                    version,
                };
                if model {
                    Integration::Model(registry)
                } else {
                    Integration::Dataset(registry)
                }
            }),
        (
            word,
            word,
            option::of(quantity()),
            prop_oneof![
                Just((None, None)),
                non_blank().prop_map(|h| (Some(h), None)),
                dns_label().prop_map(|c| (None, Some(c))),
            ],
        )
            .prop_map(move |(n, p, size, (host_path, claim_name))| {
                Integration::Volume(VolumeIntegration {
                    name: name(n),
                    path: path(p),
                    size,
                    host_path,
                    claim_name,
                })
            }),
    ]
}

fn integrations() -> BoxedStrategy<Vec<Integration>> {
    (0usize..=5)
        .prop_flat_map(|n| (0..n).map(integration).collect::<Vec<_>>())
        .boxed()
}

fn routing() -> BoxedStrategy<Routing> {
    (
        vec(host(), 0..3),
        option::of("(/[a-zA-Z0-9._~-]{1,10}){1,3}"),
        any::<bool>(),
    )
        .prop_map(|(hosts, path_prefix, rewrite_path)| Routing {
            hosts: unique_by(hosts, Clone::clone),
            path_prefix,
            rewrite_path,
        })
        .boxed()
}

fn load_balancing() -> BoxedStrategy<LoadBalancing> {
    (
        proptest::sample::select(vec![
            LoadBalancingPolicy::RoundRobin,
            LoadBalancingPolicy::LeastConnections,
            LoadBalancingPolicy::IpHash,
            LoadBalancingPolicy::PowerOfTwoChoices,
        ]),
        any::<bool>(),
        "[A-Za-z0-9._-]{1,20}",
        duration(),
    )
        .prop_map(|(policy, enabled, cookie_name, ttl)| LoadBalancing {
            policy,
            sticky_sessions: StickySessions {
                enabled,
                cookie_name,
                ttl,
            },
        })
        .boxed()
}

fn rate_limit() -> impl Strategy<Value = RateLimit> {
    (1u32..=100_000, option::of(1u32..=100_000)).prop_map(|(requests_per_second, burst)| {
        RateLimit {
            requests_per_second,
            burst,
        }
    })
}

fn activator() -> BoxedStrategy<Activator> {
    (
        any::<u32>(),
        positive_duration(),
        any::<u32>(),
        (
            positive_duration(),
            positive_duration(),
            positive_duration(),
            option::of(positive_duration()),
        ),
        (option::of(rate_limit()), option::of(rate_limit())),
        quantity(),
    )
        .prop_map(
            |(
                queue_capacity,
                queue_timeout,
                container_concurrency,
                (connect, response_header, idle, total),
                (per_deployment, per_client_ip),
                max_request_body,
            )| Activator {
                queue_capacity,
                queue_timeout,
                container_concurrency,
                timeouts: Timeouts {
                    connect,
                    response_header,
                    idle,
                    total,
                },
                rate_limit: RateLimits {
                    per_deployment,
                    per_client_ip,
                },
                max_request_body: if max_request_body.value() < 1.0 {
                    "1".parse().expect("valid")
                } else {
                    max_request_body
                },
            },
        )
        .boxed()
}

fn rollout() -> BoxedStrategy<Rollout> {
    prop_oneof![
        (1u32..=99).prop_map(|p| Rollout {
            strategy: RolloutStrategy::Canary,
            canary_percent: Some(p),
        }),
        (
            proptest::sample::select(vec![
                RolloutStrategy::Rolling,
                RolloutStrategy::BlueGreen,
                RolloutStrategy::Safe,
            ]),
            option::of(0u32..=200),
        )
            .prop_map(|(strategy, canary_percent)| Rollout {
                strategy,
                canary_percent,
            }),
    ]
    .boxed()
}

fn string_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map(text(), text(), 0..4)
}

fn kubernetes() -> BoxedStrategy<Kubernetes> {
    (
        option::of(dns_label()),
        string_map(),
        string_map(),
        string_map(),
        option::of(non_blank()),
        vec(
            (dns_label(), non_blank(), vec(text(), 0..3), env()).prop_map(
                |(name, image, command, env)| Sidecar {
                    name: format!("side-{name}"),
                    image,
                    command,
                    env,
                },
            ),
            0..3,
        ),
    )
        .prop_map(
            |(namespace, labels, annotations, node_selector, service_account_name, sidecars)| {
                Kubernetes {
                    namespace,
                    labels,
                    annotations,
                    node_selector,
                    service_account_name,
                    sidecars: unique_by(sidecars, |s| s.name.clone()),
                }
            },
        )
        .boxed()
}

fn api_version() -> impl Strategy<Value = ApiVersion> {
    proptest::sample::select(vec![
        ApiVersion::V0Alpha0,
        ApiVersion::V0Alpha1,
        ApiVersion::V1,
        ApiVersion::Latest,
    ])
}

fn environment() -> impl Strategy<Value = Environment> {
    proptest::sample::select(vec![
        Environment::Development,
        Environment::Staging,
        Environment::Production,
    ])
}

/// A valid deployment spec.
fn spec() -> BoxedStrategy<DeploymentSpec> {
    let head = (
        api_version(),
        name(),
        option::of(text()),
        any::<bool>(),
        // Something to run: a command, an image, or both.
        prop_oneof![
            (vec(non_blank(), 1..4), option::of(non_blank())),
            (vec(text(), 0..1), non_blank().prop_map(Some)),
        ]
        .prop_filter("a program to run", |(command, image)| {
            command.first().is_none_or(|c| !c.trim().is_empty())
                && (!command.is_empty() || image.is_some())
        }),
        option::of(non_blank()),
        env(),
    );
    let body = resources().prop_flat_map(|resources| {
        let ports = resources.ports.clone();
        (Just(resources), health_checks(ports))
    });
    let tail = (
        integrations(),
        option::of(prop_oneof![
            non_blank()
                .prop_filter("not a reference", |s| !s.starts_with("secret:"))
                .prop_map(ConfigValue::Plain),
            secret_name().prop_map(ConfigValue::Secret),
        ]),
        any::<bool>(),
        routing(),
        load_balancing(),
        activator(),
        rollout(),
    );
    let rest = (
        duration(),
        environment(),
        option::of(text()),
        vec(dns_label(), 0..3),
        kubernetes(),
    );
    (head, body, tail, rest)
        .prop_map(
            |(
                (
                    api_version,
                    name,
                    description,
                    enabled,
                    (command, image),
                    container_registry,
                    env,
                ),
                (resources, health_checks),
                (
                    integrations,
                    basic_auth_key,
                    is_external,
                    routing,
                    load_balancing,
                    activator,
                    rollout,
                ),
                (termination_grace_period, environment, version, aliases, kubernetes),
            )| {
                let slug = lull_spec::names::slugify(&name);
                let mut kubernetes = kubernetes;
                kubernetes.sidecars.retain(|s| s.name != slug);
                DeploymentSpec {
                    api_version,
                    description,
                    enabled,
                    image,
                    container_registry,
                    command,
                    env,
                    resources,
                    health_checks,
                    integrations,
                    basic_auth_key,
                    is_external,
                    routing,
                    load_balancing,
                    activator,
                    rollout,
                    termination_grace_period,
                    environment,
                    version,
                    aliases: unique_by(aliases, Clone::clone)
                        .into_iter()
                        .filter(|a| *a != slug)
                        .collect(),
                    kubernetes,
                    name,
                }
            },
        )
        .boxed()
}

/// 256 cases per property, or `PROPTEST_CASES` for a longer hunt.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 256;
    }
    config
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn generated_specs_are_valid(spec in spec()) {
        let errors: Vec<_> = lull_spec::validate::validate(&spec)
            .into_iter()
            .filter(|i| i.severity == lull_spec::Severity::Error)
            .collect();
        prop_assert!(errors.is_empty(), "the strategy made an invalid spec: {errors:?}");
    }

    #[test]
    fn specs_survive_a_yaml_round_trip(spec in spec()) {
        let yaml = serde_saphyr::to_string(&spec).expect("a spec serialises");
        let catalog = load_str(&yaml, "roundtrip.yaml");
        let errors: Vec<String> = catalog
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(ToString::to_string)
            .collect();
        prop_assert!(errors.is_empty(), "errors:\n{}\nin:\n{yaml}", errors.join("\n"));
        prop_assert_eq!(catalog.deployments.len(), 1, "in:\n{}", yaml);
        prop_assert_eq!(&catalog.deployments[0].spec, &spec, "in:\n{}", yaml);
    }

    #[test]
    fn several_specs_survive_as_one_multi_document_file(
        specs in vec(spec(), 1..4),
    ) {
        // Distinct names, aliases, hosts and prefixes, so they do not collide.
        let specs: Vec<DeploymentSpec> = specs
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                s.name = format!("deployment {i}");
                s.aliases = s.aliases.iter().map(|a| format!("{a}-{i}")).filter(|a| a.len() <= 63).collect();
                s.routing.hosts = s
                    .routing
                    .hosts
                    .iter()
                    .map(|h| match h.strip_prefix("*.") {
                        Some(rest) => format!("*.d{i}.{rest}"),
                        None => format!("d{i}.{h}"),
                    })
                    .collect();
                s.routing.path_prefix = s.routing.path_prefix.as_ref().map(|p| format!("/d{i}{p}"));
                s.kubernetes.sidecars.retain(|c| c.name != format!("deployment-{i}"));
                s
            })
            .collect();
        let yaml: String = specs
            .iter()
            .map(|s| format!("---\n{}", serde_saphyr::to_string(s).expect("a spec serialises")))
            .collect();
        let catalog = load_str(&yaml, "many.yaml");
        prop_assert!(!catalog.has_errors(), "{:?}\nin:\n{}", catalog.diagnostics, yaml);
        let loaded: Vec<&DeploymentSpec> = catalog.deployments.iter().map(|d| &d.spec).collect();
        prop_assert_eq!(loaded, specs.iter().collect::<Vec<_>>());
    }

    #[test]
    fn durations_print_as_text_that_parses_back(ms in any::<u64>()) {
        let d = Duration::from_millis(ms);
        let text = d.to_string();
        let back: Duration = text.parse().expect("a printed duration parses");
        prop_assert_eq!(back, d, "{}", text);
        prop_assert_eq!(back.to_string(), text);
    }

    #[test]
    fn duration_text_parses_to_its_value(
        parts in vec((0u64..10_000, proptest::sample::select(vec![("d", 86_400_000u64), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)])), 1..5),
    ) {
        let text: String = parts.iter().map(|(n, (unit, _))| format!("{n}{unit}")).collect();
        let expected: u64 = parts.iter().map(|(n, (_, size))| n * size).sum();
        let d: Duration = text.parse().expect("valid duration text");
        prop_assert_eq!(d.get().as_millis(), u128::from(expected), "{}", text);
        // The canonical form is the same duration, though it may be spelt differently.
        prop_assert_eq!(d.to_string().parse::<Duration>().expect("canonical form parses"), d);
    }

    #[test]
    fn quantities_print_as_written_and_parse_back(text in quantity_text()) {
        let q: Quantity = text.parse().expect("valid quantity text");
        prop_assert_eq!(q.to_string(), text.clone());
        let back: Quantity = q.to_string().parse().expect("a printed quantity parses");
        prop_assert_eq!(&back, &q);
        prop_assert!(back.value().is_finite() && back.value() > 0.0);
    }

    #[test]
    fn units_survive_yaml_as_strings(q in quantity(), d in duration()) {
        let yaml = serde_saphyr::to_string(&(q.clone(), d)).expect("serialises");
        let (q2, d2): (Quantity, Duration) = serde_saphyr::from_str(&yaml).expect("deserialises");
        prop_assert_eq!(q2, q);
        prop_assert_eq!(d2, d);
    }
}

/// Raw YAML that may stand anywhere a value does: edge numbers, nulls, look-alikes, empty and
/// non-empty collections, bad units and references.
const REPLACEMENTS: &[&str] = &[
    "-0.0",
    "-0",
    "0",
    "1",
    "-1",
    "1.5",
    "0.0000001",
    "1e20",
    "1e999",
    "-.inf",
    ".nan",
    "4294967295",
    "4294967296",
    "65535",
    "65536",
    "70000",
    "99999999999999999999999",
    "-99999999999999999999999",
    "0x1F",
    "0o17",
    "~",
    "null",
    "''",
    "\"\"",
    "yes",
    "true",
    "false",
    "[]",
    "{}",
    "[1, 2]",
    "[a, '']",
    "{a: 1}",
    "{type: s3}",
    "\"secret:\"",
    "\"secret:a b\"",
    "secret:ok",
    "1m",
    "5x",
    "0s",
    "/x",
    "x",
    "\"\\t\"",
    "12:30",
    "2024-01-01",
    "!!str 5",
    "'  '",
];

/// Every value in a JSON tree, containers included: its field path (`resources.ports[0]`) and
/// its JSON pointer (`/resources/ports/0`), which also copes with keys holding `.` or `[`.
fn value_paths(
    value: &serde_json::Value,
    path: &str,
    pointer: &str,
    out: &mut Vec<(String, String)>,
) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let escaped = key.replace('~', "~0").replace('/', "~1");
                value_paths(child, &child_path, &format!("{pointer}/{escaped}"), out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                value_paths(
                    child,
                    &format!("{path}[{i}]"),
                    &format!("{pointer}/{i}"),
                    out,
                );
            }
        }
        _ => {}
    }
    if !path.is_empty() {
        out.push((path.to_owned(), pointer.to_owned()));
    }
}

proptest! {
    #![proptest_config(config())]

    /// Whatever value a field is given, every error names a field path and a position, and an
    /// error about the field itself points at the value written there.
    #[test]
    fn any_value_anywhere_is_reported_at_its_field(
        spec in spec(),
        pick in any::<prop::sample::Index>(),
        replacement in proptest::sample::select(REPLACEMENTS),
    ) {
        const MARKER: &str = "lullmarker7f3a";
        let mut tree = serde_json::to_value(&spec).expect("a spec converts to JSON");
        let mut paths = Vec::new();
        value_paths(&tree, "", "", &mut paths);
        let (path, pointer) = pick.get(&paths).clone();
        *tree.pointer_mut(&pointer).expect("the pointer was just made") =
            serde_json::Value::String(MARKER.to_owned());
        let yaml = serde_saphyr::to_string(&tree).expect("JSON serialises");
        let offset = yaml.find(MARKER).expect("the marker is written plainly");
        let before = &yaml[..offset];
        let line = before.matches('\n').count() as u64 + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() as u64 + 1;
        // A tagged value (`!!str 5`) is placed at its scalar, after the tag.
        let column = column
            + replacement
                .strip_prefix('!')
                .and_then(|r| r.find(' '))
                .map_or(0, |i| i as u64 + 2);
        let yaml = yaml.replacen(MARKER, replacement, 1);
        let catalog = load_str(&yaml, "mutated.yaml");
        for d in catalog.diagnostics.iter().filter(|d| d.is_error()) {
            prop_assert!(!d.path.is_empty(), "{} has no field path\nin:\n{}", d, yaml);
            prop_assert!(d.at.is_some(), "{} has no position\nin:\n{}", d, yaml);
            if d.path == path {
                let at = d.at.map(|p| (p.line, p.column));
                prop_assert_eq!(at, Some((line, column)), "{}\nin:\n{}", d, yaml);
            }
        }
    }
}
