//! Invalid specs: each must be refused with every error at the right line, column and field path,
//! with a message that says what is wrong and help that says what to do.
//!
//! Positions are 1-based and were worked out by reading each YAML text; a case lists every error
//! it must produce, no more (so cascades of one mistake would fail it), in the order reported.

use std::path::Path;

use lull_spec::{Catalog, Diagnostic, load_paths, load_str};

/// One expected error.
struct Expect {
    line: u64,
    column: u64,
    path: &'static str,
    /// A word or phrase the message contains.
    message: &'static str,
    /// A word or phrase the help contains; empty when the help is not checked.
    help: &'static str,
}

const fn at(
    line: u64,
    column: u64,
    path: &'static str,
    message: &'static str,
    help: &'static str,
) -> Expect {
    Expect {
        line,
        column,
        path,
        message,
        help,
    }
}

/// One invalid spec.
struct Case {
    name: &'static str,
    yaml: &'static str,
    errors: &'static [Expect],
}

/// The YAML of a case: the text after the opening line break of the raw string.
fn text(yaml: &str) -> &str {
    yaml.strip_prefix('\n').unwrap_or(yaml)
}

fn errors(catalog: &Catalog) -> Vec<&Diagnostic> {
    catalog
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .collect()
}

fn show(diagnostics: &[&Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| format!("    [{}] {d}", d.path))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What is wrong with the errors found, compared with those expected; empty when they match.
fn mismatches(found: &[&Diagnostic], expected: &[Expect]) -> Vec<String> {
    let mut out = Vec::new();
    if found.len() != expected.len() {
        out.push(format!(
            "expected {} error(s), found {}",
            expected.len(),
            found.len()
        ));
    }
    for (i, (d, e)) in found.iter().zip(expected).enumerate() {
        let position = d.at.map(|p| (p.line, p.column));
        if position != Some((e.line, e.column)) {
            out.push(format!(
                "error {i}: expected line {}, column {}; found {:?}",
                e.line, e.column, d.at
            ));
        }
        if d.path != e.path {
            out.push(format!(
                "error {i}: expected path `{}`, found `{}`",
                e.path, d.path
            ));
        }
        if !d.message.contains(e.message) {
            out.push(format!(
                "error {i}: message {:?} does not contain {:?}",
                d.message, e.message
            ));
        }
        let help = d.help.as_deref().unwrap_or("");
        if !help.contains(e.help) {
            out.push(format!(
                "error {i}: help {help:?} does not contain {:?}",
                e.help
            ));
        }
    }
    out
}

const METRIC_PRELUDE: &str = "name: a
command: [x]
resources:
  autoscaling:
    maxReplicas: 3
    metrics:
";

static CASES: &[Case] = &[
    Case {
        name: "unknown top-level field suggests the close one",
        yaml: r#"
name: a
comand: [x]
"#,
        // No "nothing to run" error: the did-you-mean already says it.
        errors: &[at(
            2,
            1,
            "comand",
            "unknown field `comand`",
            "did you mean `command`?",
        )],
    },
    Case {
        name: "unknown nested field suggests the close one",
        yaml: r#"
name: a
command: [x]
resources:
  autoscaling:
    maxReplica: 3
"#,
        // No "missing maxReplicas" error: the did-you-mean already says it.
        errors: &[at(
            5,
            5,
            "resources.autoscaling.maxReplica",
            "unknown field `maxReplica`",
            "did you mean `maxReplicas`?",
        )],
    },
    Case {
        name: "unknown field in a list item",
        yaml: r#"
name: a
command: [x]
env:
  - name: A
    valeu: b
"#,
        errors: &[at(
            5,
            5,
            "env[0].valeu",
            "unknown field `valeu`",
            "did you mean `value`?",
        )],
    },
    Case {
        name: "top-level field that belongs under resources",
        yaml: r#"
name: a
command: [x]
ports: [8000]
"#,
        errors: &[at(
            3,
            1,
            "ports",
            "unknown field `ports`",
            "`ports` belongs under `resources`",
        )],
    },
    Case {
        name: "maxReplicas one level too high",
        yaml: r#"
name: a
command: [x]
resources:
  maxReplicas: 3
"#,
        errors: &[at(
            4,
            3,
            "resources.maxReplicas",
            "unknown field `maxReplicas`",
            "belongs under `resources.autoscaling`",
        )],
    },
    Case {
        name: "probe field directly under healthChecks",
        yaml: r#"
name: a
command: [x]
healthChecks:
  path: /health
"#,
        errors: &[at(
            4,
            3,
            "healthChecks.path",
            "unknown field `path`",
            "`path` belongs under `healthChecks.liveness`, `healthChecks.readiness` or `healthChecks.startup`",
        )],
    },
    Case {
        name: "top-level field nested under resources",
        yaml: r#"
name: a
command: [x]
resources:
  env: []
"#,
        errors: &[at(
            4,
            3,
            "resources.env",
            "unknown field `env`",
            "at the top level of the spec",
        )],
    },
    Case {
        name: "string for an integer",
        yaml: r#"
name: a
command: [x]
resources:
  replicas: two
"#,
        errors: &[at(
            4,
            13,
            "resources.replicas",
            "expected a whole number, found the string \"two\"",
            "",
        )],
    },
    Case {
        name: "integer env value needs quotes",
        yaml: r#"
name: a
command: [x]
env:
  - name: WORKERS
    value: 4
"#,
        errors: &[at(
            5,
            12,
            "env[0].value",
            "expected a string, found the integer 4",
            "quote the value",
        )],
    },
    Case {
        name: "boolean env value needs quotes",
        yaml: r#"
name: a
command: [x]
env:
  - { name: DEBUG, value: true }
"#,
        errors: &[at(
            4,
            27,
            "env[0].value",
            "expected a string, found the boolean true",
            "quote the value",
        )],
    },
    Case {
        name: "command as a string instead of a list",
        yaml: r#"
name: a
command: python serve.py
"#,
        errors: &[at(
            2,
            10,
            "command",
            "expected a list, found the string \"python serve.py\"",
            "write a list",
        )],
    },
    Case {
        name: "ports as a number instead of a list",
        yaml: r#"
name: a
command: [x]
resources:
  ports: 8000
"#,
        errors: &[at(
            4,
            10,
            "resources.ports",
            "expected a list, found the integer 8000",
            "",
        )],
    },
    Case {
        name: "yes is not a boolean",
        yaml: r#"
name: a
command: [x]
enabled: yes
"#,
        errors: &[at(
            3,
            10,
            "enabled",
            "expected true or false, found the string \"yes\"",
            "",
        )],
    },
    Case {
        name: "unknown metric",
        yaml: r#"
name: a
command: [x]
resources:
  autoscaling:
    maxReplicas: 3
    metrics:
      - metric: cpus
        value: 50
"#,
        errors: &[at(
            7,
            17,
            "resources.autoscaling.metrics[0].metric",
            "the string \"cpus\" is not allowed here",
            "did you mean `cpu`?",
        )],
    },
    Case {
        name: "unknown summary",
        yaml: r#"
name: a
command: [x]
resources:
  autoscaling:
    maxReplicas: 3
    metrics:
      - metric: requestDuration
        summary: averge
        value: 2
"#,
        errors: &[at(
            8,
            18,
            "resources.autoscaling.metrics[0].summary",
            "the string \"averge\" is not allowed here",
            "did you mean `average`?",
        )],
    },
    Case {
        name: "unknown load-balancing policy",
        yaml: r#"
name: a
command: [x]
loadBalancing:
  policy: leastConnection
"#,
        errors: &[at(
            4,
            11,
            "loadBalancing.policy",
            "\"leastConnection\" is not allowed here",
            "did you mean `leastConnections`?",
        )],
    },
    Case {
        name: "rollout strategy in the wrong case",
        yaml: r#"
name: a
command: [x]
rollout:
  strategy: bluegreen
"#,
        errors: &[at(
            4,
            13,
            "rollout.strategy",
            "\"bluegreen\" is not allowed here",
            "did you mean `blueGreen`?",
        )],
    },
    Case {
        name: "apiVersion in upper case",
        yaml: r#"
apiVersion: V1
name: a
command: [x]
"#,
        errors: &[at(
            1,
            13,
            "apiVersion",
            "the string \"V1\" is not allowed here",
            "did you mean `v1`?",
        )],
    },
    Case {
        name: "unknown apiVersion lists the allowed ones",
        yaml: r#"
apiVersion: v2
name: a
command: [x]
"#,
        errors: &[at(
            1,
            13,
            "apiVersion",
            "\"v2\" is not allowed here",
            "`v0alpha0`, `v0alpha1`, `v1` or `latest`",
        )],
    },
    Case {
        name: "fractional duration",
        yaml: r#"
name: a
command: [x]
activator:
  queueTimeout: 1.5s
"#,
        errors: &[at(
            4,
            17,
            "activator.queueTimeout",
            "`1.5s` is not a duration",
            "",
        )],
    },
    Case {
        name: "duration in words",
        yaml: r#"
name: a
command: [x]
resources:
  autoscaling:
    maxReplicas: 2
    scaleToZeroAfter: 5 minutes
"#,
        errors: &[at(
            6,
            23,
            "resources.autoscaling.scaleToZeroAfter",
            "`5 minutes` is not a duration",
            "",
        )],
    },
    Case {
        name: "duration as a bare number",
        yaml: r#"
name: a
command: [x]
terminationGracePeriod: 30
"#,
        errors: &[at(
            3,
            25,
            "terminationGracePeriod",
            "expected a string, found the integer 30",
            "with a unit, for example 30s",
        )],
    },
    Case {
        name: "quantity with a decimal byte suffix",
        yaml: r#"
name: a
command: [x]
resources:
  memory: 16GB
"#,
        errors: &[at(
            4,
            11,
            "resources.memory",
            "`16GB` is not a quantity",
            "",
        )],
    },
    Case {
        name: "negative quantity",
        yaml: r#"
name: a
command: [x]
resources:
  maxCpu: -1
"#,
        errors: &[at(
            4,
            11,
            "resources.maxCpu",
            "the integer -1 is out of range",
            "",
        )],
    },
    Case {
        name: "missing name",
        yaml: r#"
command: [x]
image: x
"#,
        errors: &[at(1, 1, "name", "missing required field `name`", "")],
    },
    Case {
        name: "empty name",
        yaml: r#"
name:
command: [x]
"#,
        errors: &[at(
            1,
            5,
            "name",
            "expected a string, found nothing",
            "give a value",
        )],
    },
    Case {
        name: "missing maxReplicas",
        yaml: r#"
name: a
command: [x]
resources:
  autoscaling:
    minReplicas: 0
"#,
        errors: &[at(
            5,
            5,
            "resources.autoscaling.maxReplicas",
            "missing required field `maxReplicas`",
            "",
        )],
    },
    Case {
        name: "missing integration url",
        yaml: r#"
name: a
command: [x]
integrations:
  - type: git-lfs
    name: falcon
    path: /models
"#,
        errors: &[at(
            4,
            5,
            "integrations[0].url",
            "missing required field `url`",
            "",
        )],
    },
    Case {
        name: "nothing to run",
        yaml: r#"
name: a
description: no command, no image
"#,
        errors: &[at(
            1,
            1,
            "command",
            "neither `command` nor `image` is set",
            "give `command`",
        )],
    },
    Case {
        name: "minReplicas above maxReplicas",
        yaml: r#"
name: a
command: [x]
resources:
  autoscaling:
    minReplicas: 4
    maxReplicas: 3
"#,
        errors: &[at(
            5,
            18,
            "resources.autoscaling.minReplicas",
            "minReplicas is 4, more than maxReplicas 3",
            "at most maxReplicas",
        )],
    },
    Case {
        name: "replicas above maxReplicas when minReplicas is unset",
        yaml: r#"
name: a
command: [x]
resources:
  replicas: 4
  autoscaling:
    maxReplicas: 3
"#,
        errors: &[at(
            4,
            13,
            "resources.replicas",
            "replicas (the minimum when minReplicas is not set) is 4, more than maxReplicas 3",
            "",
        )],
    },
    Case {
        name: "maxReplicas zero",
        yaml: r#"
name: a
command: [x]
resources:
  replicas: 0
  autoscaling:
    maxReplicas: 0
"#,
        errors: &[at(
            6,
            18,
            "resources.autoscaling.maxReplicas",
            "must be at least 1",
            "enabled: false",
        )],
    },
    Case {
        name: "port 0",
        yaml: r#"
name: a
command: [x]
resources:
  ports: [0]
"#,
        errors: &[at(
            4,
            11,
            "resources.ports[0]",
            "port 0 is not a port",
            "1 to 65535",
        )],
    },
    Case {
        name: "port 70000",
        yaml: r#"
name: a
command: [x]
resources:
  ports:
    - 8000
    - 70000
"#,
        errors: &[at(
            6,
            7,
            "resources.ports[1]",
            "the integer 70000 is out of range",
            "65535",
        )],
    },
    Case {
        name: "duplicate ports",
        yaml: r#"
name: a
command: [x]
resources:
  ports: [8000, 8000]
"#,
        errors: &[at(
            4,
            17,
            "resources.ports[1]",
            "port 8000 is listed twice",
            "",
        )],
    },
    Case {
        name: "unknown integration type",
        yaml: r#"
name: a
command: [x]
integrations:
  - type: ftp
    name: data
    path: /data
"#,
        errors: &[at(
            4,
            11,
            "integrations[0].type",
            "the string \"ftp\" is not a known type",
            "`git-lfs`, `s3`, `model`, `dataset` or `volume`",
        )],
    },
    Case {
        name: "misspelt integration type",
        yaml: r#"
name: a
command: [x]
integrations:
  - { type: gitlfs, name: m, path: /m, url: "https://huggingface.co/m" }
"#,
        errors: &[at(
            4,
            13,
            "integrations[0].type",
            "\"gitlfs\" is not a known type",
            "did you mean `git-lfs`?",
        )],
    },
    Case {
        name: "integration without a type",
        yaml: r#"
name: a
command: [x]
integrations:
  - name: data
    path: /data
"#,
        errors: &[at(
            4,
            5,
            "integrations[0]",
            "missing required field `type`",
            "`git-lfs`",
        )],
    },
    Case {
        name: "more than 5 integrations",
        yaml: r#"
name: a
command: [x]
integrations:
  - { type: volume, name: v1, path: /v1 }
  - { type: volume, name: v2, path: /v2 }
  - { type: volume, name: v3, path: /v3 }
  - { type: volume, name: v4, path: /v4 }
  - { type: volume, name: v5, path: /v5 }
  - { type: volume, name: v6, path: /v6 }
"#,
        errors: &[at(
            4,
            3,
            "integrations",
            "has 6 integrations; at most 5 are allowed",
            "",
        )],
    },
    Case {
        name: "duplicate integration names and paths",
        yaml: r#"
name: a
command: [x]
integrations:
  - type: volume
    name: cache
    path: /data
  - type: volume
    name: cache
    path: /data/
"#,
        errors: &[
            at(
                8,
                11,
                "integrations[1].name",
                "`cache` is used twice (first at integrations[0])",
                "",
            ),
            at(
                9,
                11,
                "integrations[1].path",
                "`/data` is also the mount of integrations[0]",
                "its own path",
            ),
        ],
    },
    Case {
        name: "relative integration path",
        yaml: r#"
name: a
command: [x]
integrations:
  - { type: s3, name: weights, path: weights, url: "s3://bucket/w" }
"#,
        errors: &[at(
            4,
            38,
            "integrations[0].path",
            "\"weights\" is not an absolute path",
            "start it with `/`",
        )],
    },
    Case {
        name: "duplicate env names",
        yaml: r#"
name: a
command: [x]
env:
  - { name: MODEL, value: a }
  - { name: MODEL, value: b }
"#,
        errors: &[at(
            5,
            13,
            "env[1].name",
            "`MODEL` is set twice (first at env[0])",
            "keep one",
        )],
    },
    Case {
        name: "readiness port not exposed",
        yaml: r#"
name: a
command: [x]
resources:
  ports: [8000]
healthChecks:
  readiness:
    path: /health
    port: 9000
"#,
        errors: &[at(
            8,
            11,
            "healthChecks.readiness.port",
            "port 9000 is not exposed by the deployment",
            "resources.ports (8000)",
        )],
    },
    Case {
        name: "probe with neither path nor exec",
        yaml: r#"
name: a
command: [x]
healthChecks:
  liveness:
    periodSeconds: 5
"#,
        errors: &[at(
            5,
            5,
            "healthChecks.liveness",
            "says neither what to request nor what to run",
            "give `path`",
        )],
    },
    Case {
        name: "probe with both path and exec",
        yaml: r#"
name: a
command: [x]
healthChecks:
  readiness:
    path: /health
    exec: { command: [curl, localhost] }
"#,
        errors: &[at(
            6,
            11,
            "healthChecks.readiness.exec",
            "is set together with `path`",
            "keep one",
        )],
    },
    Case {
        name: "probe path without leading slash",
        yaml: r#"
name: a
command: [x]
healthChecks:
  readiness:
    path: health
"#,
        errors: &[at(
            5,
            11,
            "healthChecks.readiness.path",
            "\"health\" does not start with `/`",
            "write \"/health\"",
        )],
    },
    Case {
        name: "probe period zero",
        yaml: r#"
name: a
command: [x]
healthChecks:
  startup: { path: /ready, periodSeconds: 0 }
"#,
        errors: &[at(
            4,
            43,
            "healthChecks.startup.periodSeconds",
            "must be at least 1",
            "",
        )],
    },
    Case {
        name: "p95 is not a summary of cpu",
        yaml: r#"
name: a
command: [x]
resources:
  autoscaling:
    maxReplicas: 3
    metrics:
      - metric: cpu
        summary: p95
        value: 50
"#,
        errors: &[at(
            8,
            18,
            "resources.autoscaling.metrics[0].summary",
            "`p95` is not a summary of cpu",
            "use `average`",
        )],
    },
    Case {
        name: "memory target above 100 percent",
        yaml: r#"
name: a
command: [x]
resources:
  autoscaling:
    maxReplicas: 3
    metrics:
      - metric: memory
        value: 150
"#,
        errors: &[at(
            8,
            16,
            "resources.autoscaling.metrics[0].value",
            "150% of memory can never be reached",
            "at most 100",
        )],
    },
    Case {
        name: "target value zero",
        yaml: r#"
name: a
command: [x]
resources:
  autoscaling:
    maxReplicas: 3
    metrics:
      - metric: concurrency
        value: 0
"#,
        errors: &[at(
            8,
            16,
            "resources.autoscaling.metrics[0].value",
            "0 is not a usable target",
            "above 0",
        )],
    },
    Case {
        name: "negative target value",
        yaml: r#"
name: a
command: [x]
resources:
  autoscaling:
    maxReplicas: 3
    metrics:
      - { metric: rps, value: -5 }
"#,
        errors: &[at(
            7,
            31,
            "resources.autoscaling.metrics[0].value",
            "-5 is not a usable target",
            "above 0",
        )],
    },
    Case {
        name: "not-a-number target value",
        yaml: r#"
name: a
command: [x]
resources:
  autoscaling:
    maxReplicas: 3
    metrics:
      - { metric: rps, value: .nan }
"#,
        errors: &[at(
            7,
            31,
            "resources.autoscaling.metrics[0].value",
            "expected a finite number, found `.nan`",
            "",
        )],
    },
    Case {
        name: "duplicate metric",
        yaml: r#"
name: a
command: [x]
resources:
  autoscaling:
    maxReplicas: 3
    metrics:
      - { metric: rps, value: 10 }
      - { metric: rps, value: 20 }
"#,
        errors: &[at(
            8,
            19,
            "resources.autoscaling.metrics[1].metric",
            "rps average is targeted twice (first at metrics[0])",
            "",
        )],
    },
    Case {
        name: "name with no letters or digits",
        yaml: r#"
name: "---"
command: [x]
"#,
        errors: &[at(
            1,
            7,
            "name",
            "\"---\" has no letters or digits",
            "my cool deployment",
        )],
    },
    Case {
        name: "name too long for a DNS label",
        yaml: r#"
name: a-very-long-deployment-name-that-goes-on-and-on-past-sixty-three-characters
command: [x]
"#,
        errors: &[at(1, 7, "name", "at most 63 fit a DNS label", "shorten")],
    },
    Case {
        name: "canary without canaryPercent",
        yaml: r#"
name: a
command: [x]
rollout:
  strategy: canary
"#,
        errors: &[at(
            4,
            3,
            "rollout.canaryPercent",
            "is required with strategy canary",
            "canaryPercent: 10",
        )],
    },
    Case {
        name: "canaryPercent of 100",
        yaml: r#"
name: a
command: [x]
rollout: { strategy: canary, canaryPercent: 100 }
"#,
        errors: &[at(
            3,
            45,
            "rollout.canaryPercent",
            "100 is not a canary share",
            "1 to 99",
        )],
    },
    Case {
        name: "alias in upper case",
        yaml: r#"
name: a
command: [x]
aliases: [Production]
"#,
        errors: &[at(
            3,
            11,
            "aliases[0]",
            "\"Production\" is not a DNS label",
            "lower-case",
        )],
    },
    Case {
        name: "alias repeating the name",
        yaml: r#"
name: My App
command: [x]
aliases: [prod, my-app]
"#,
        errors: &[at(
            3,
            17,
            "aliases[1]",
            "`my-app` is already a name of this deployment",
            "",
        )],
    },
    Case {
        name: "host with a scheme",
        yaml: r#"
name: a
command: [x]
routing:
  hosts: ["https://api.example.com"]
"#,
        errors: &[at(
            4,
            11,
            "routing.hosts[0]",
            "\"https://api.example.com\" is not a host name",
            "without scheme or port",
        )],
    },
    Case {
        name: "host with a port",
        yaml: r#"
name: a
command: [x]
routing:
  hosts:
    - api.example.com
    - api.example.com:8080
"#,
        errors: &[at(
            6,
            7,
            "routing.hosts[1]",
            "\"api.example.com:8080\" is not a host name",
            "",
        )],
    },
    Case {
        name: "path prefix without a slash",
        yaml: r#"
name: a
command: [x]
routing:
  pathPrefix: api/v1
"#,
        errors: &[at(
            4,
            15,
            "routing.pathPrefix",
            "\"api/v1\" is not a path prefix",
            "/sentiment",
        )],
    },
    Case {
        name: "path prefix with a trailing slash",
        yaml: r#"
name: a
command: [x]
routing: { pathPrefix: /api/ }
"#,
        errors: &[at(
            3,
            24,
            "routing.pathPrefix",
            "\"/api/\" must not end with `/`",
            "",
        )],
    },
    Case {
        name: "secret reference without a name",
        yaml: r#"
name: a
command: [x]
basicAuthKey: "secret:"
"#,
        errors: &[at(3, 15, "basicAuthKey", "the secret name is empty", "")],
    },
    Case {
        name: "secret reference with a space",
        yaml: r#"
name: a
command: [x]
env:
  - name: TOKEN
    value: "secret:has space"
"#,
        errors: &[at(
            5,
            12,
            "env[0].value",
            "`has space` is not a valid secret name",
            "",
        )],
    },
    Case {
        name: "plain empty basicAuthKey",
        yaml: r#"
name: a
command: [x]
basicAuthKey: ""
"#,
        errors: &[at(3, 15, "basicAuthKey", "is empty", "open endpoint")],
    },
    Case {
        name: "YAML syntax error",
        yaml: r#"
name: a
command: [x
resources: {}
"#,
        errors: &[at(3, 10, "", "not valid YAML", "brackets")],
    },
    Case {
        name: "YAML indentation error",
        yaml: r#"
name: a
command: [x]
resources:
  replicas: 1
 ports: [8000]
"#,
        errors: &[at(5, 2, "", "not valid YAML", "indentation")],
    },
    Case {
        name: "tab indentation",
        yaml: "
name: a
command: [x]
resources:
\treplicas: 1
",
        // The tab itself, not the text after it.
        errors: &[at(4, 1, "", "not valid YAML", "tabs")],
    },
    Case {
        name: "duplicate YAML key",
        yaml: r#"
name: a
command: [x]
name: b
"#,
        errors: &[at(3, 1, "", "duplicate key `name`", "keep one")],
    },
    Case {
        name: "alias to no anchor",
        yaml: r#"
name: a
command: [x]
resources: *defaults
"#,
        errors: &[at(3, 12, "", "not valid YAML", "")],
    },
    Case {
        name: "null mapping key",
        yaml: r#"
name: a
image: x
kubernetes:
  labels:
    ~: canary
"#,
        errors: &[at(5, 5, "", "a mapping key is empty or null", "quote")],
    },
    Case {
        name: "list as a mapping key",
        yaml: r#"
name: a
image: x
kubernetes:
  labels:
    ? [tier]
    : web
"#,
        errors: &[at(
            5,
            7,
            "",
            "a mapping key must be plain text, not a list or a mapping",
            "",
        )],
    },
    Case {
        name: "a list instead of a spec",
        yaml: r#"
- name: a
  command: [x]
"#,
        errors: &[at(1, 1, "", "expected a mapping, found a list", "")],
    },
    Case {
        name: "kubernetes label value must be a string",
        yaml: r#"
name: a
image: x
kubernetes:
  labels: { tier: 1 }
"#,
        errors: &[at(
            4,
            19,
            "kubernetes.labels.tier",
            "expected a string, found the integer 1",
            "quote the value",
        )],
    },
    Case {
        name: "request over max cpu",
        yaml: r#"
name: a
command: [x]
resources: { cpu: 2, maxCpu: 500m }
"#,
        errors: &[at(3, 19, "resources.cpu", "more than maxCpu 500m", "")],
    },
];

#[test]
fn every_invalid_spec_reports_each_error_where_it_is() {
    assert!(
        CASES.len() >= 35,
        "only {} invalid specs are covered",
        CASES.len()
    );
    let mut failures = Vec::new();
    for case in CASES {
        let catalog = load_str(text(case.yaml), "case.yaml");
        let found = errors(&catalog);
        let mut problems = mismatches(&found, case.errors);
        if !catalog.deployments.is_empty() {
            problems.push(format!(
                "{} deployment(s) loaded despite the errors",
                catalog.deployments.len()
            ));
        }
        if found.iter().any(|d| d.file != "case.yaml") {
            problems.push("an error does not name the file".to_owned());
        }
        if !problems.is_empty() {
            failures.push(format!(
                "case `{}`:\n  {}\n  found:\n{}",
                case.name,
                problems.join("\n  "),
                show(&found)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn case_names_are_unique() {
    let mut names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "two cases share a name");
}

#[test]
fn gpu_metric_without_gpu_is_a_warning_not_an_error() {
    let yaml = format!("{METRIC_PRELUDE}      - {{ metric: gpu, value: 70 }}\n");
    let catalog = load_str(&yaml, "gpu.yaml");
    assert!(!catalog.has_errors(), "{:?}", catalog.diagnostics);
    assert_eq!(catalog.deployments.len(), 1);
    let warning = catalog
        .diagnostics
        .iter()
        .find(|d| d.path == "resources.autoscaling.metrics[0].metric")
        .expect("a warning about the missing GPU");
    let at = warning.at.expect("located");
    assert_eq!((at.line, at.column), (7, 19), "{warning}");
    assert!(warning.message.contains("no GPU"), "{warning}");
}

/// Writes `files` (name, text) into a new temporary directory.
fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write a spec file");
    }
    dir
}

fn file_in(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

#[test]
fn one_slug_in_two_files_names_both_files() {
    let dir = dir_with(&[
        ("a.yaml", "name: My App\ncommand: [x]\n"),
        (
            "b.yaml",
            "# the same deployment\nname: my_app\ncommand: [y]\n",
        ),
    ]);
    let catalog = load_paths(&[dir.path()]);
    let found = errors(&catalog);
    assert_eq!(found.len(), 1, "{}", show(&found));
    let error = found[0];
    let b = file_in(dir.path(), "b.yaml");
    let a = file_in(dir.path(), "a.yaml");
    assert_eq!(error.file, b);
    assert_eq!(error.at.map(|p| (p.line, p.column)), Some((2, 7)));
    assert_eq!(error.path, "name");
    assert_eq!(error.deployment.as_deref(), Some("my_app"));
    assert!(
        error.message.contains("name `my-app`") && error.message.contains(&format!("{a}:1:7")),
        "{error}"
    );
    // The first keeps its name; the second is refused.
    let loaded: Vec<&str> = catalog
        .deployments
        .iter()
        .map(|d| d.spec.name.as_str())
        .collect();
    assert_eq!(loaded, ["My App"]);
}

#[test]
fn one_name_in_two_files_keeps_the_first() {
    let dir = dir_with(&[
        ("a.yaml", "name: api\ncommand: [x]\n"),
        ("b.yaml", "name: api\ncommand: [y]\n"),
    ]);
    let catalog = load_paths(&[dir.path()]);
    let found = errors(&catalog);
    assert_eq!(found.len(), 1, "{}", show(&found));
    assert_eq!(found[0].file, file_in(dir.path(), "b.yaml"));
    assert!(
        found[0].message.contains(&format!(
            "name `api` is also used by deployment `api` in {}:1:7",
            file_in(dir.path(), "a.yaml")
        )),
        "{}",
        found[0]
    );
    // The deployment the error does not name is not dropped with the one it names.
    assert_eq!(catalog.deployments.len(), 1);
    assert_eq!(catalog.deployments[0].file, file_in(dir.path(), "a.yaml"));
    assert_eq!(catalog.deployments[0].spec.command, ["x"]);
}

#[test]
fn one_slug_twice_in_one_file() {
    let yaml = "name: My App\ncommand: [x]\n---\nname: my-app\ncommand: [y]\n";
    let catalog = load_str(yaml, "multi.yaml");
    let found = errors(&catalog);
    // One error: the default path prefix `/my-app` is taken only because the name is.
    assert_eq!(found.len(), 1, "{}", show(&found));
    let error = found[0];
    assert_eq!(error.at.map(|p| (p.line, p.column)), Some((4, 7)));
    assert_eq!(error.path, "name");
    assert!(
        error
            .message
            .contains("name `my-app` is also used by deployment `My App` in multi.yaml:1:7"),
        "{error}"
    );
    assert_eq!(catalog.deployments.len(), 1);
}

#[test]
fn route_conflicts_point_at_the_conflicting_field() {
    let yaml = r#"name: one
command: [x]
aliases: [prod]
routing:
  hosts: [api.example.com]
---
name: two
command: [x]
aliases: [staging, prod]
---
name: three
command: [x]
routing:
  hosts: [www.example.com, api.example.com]
  pathPrefix: /one
"#;
    let catalog = load_str(yaml, "routes.yaml");
    let found: Vec<(u64, u64, &str, &str)> = errors(&catalog)
        .iter()
        .map(|d| {
            let at = d.at.expect("located");
            (at.line, at.column, d.path.as_str(), d.message.as_str())
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                9,
                20,
                "aliases[1]",
                "name `prod` is also used by deployment `one` in routes.yaml:3:11"
            ),
            (
                14,
                28,
                "routing.hosts[1]",
                "host `api.example.com` is also used by deployment `one` in routes.yaml:5:11"
            ),
            (
                15,
                15,
                "routing.pathPrefix",
                "path prefix `/one` is also used by deployment `one` in routes.yaml:1:7"
            ),
        ]
    );
    let loaded: Vec<&str> = catalog
        .deployments
        .iter()
        .map(|d| d.spec.name.as_str())
        .collect();
    assert_eq!(loaded, ["one"]);
}

#[test]
fn a_default_prefix_taken_by_another_deployment_is_explained() {
    let yaml =
        "name: api\ncommand: [x]\nrouting: { pathPrefix: /web }\n---\nname: web\ncommand: [y]\n";
    let catalog = load_str(yaml, "prefix.yaml");
    let found = errors(&catalog);
    assert_eq!(found.len(), 1, "{}", show(&found));
    let error = found[0];
    assert_eq!(error.at.map(|p| (p.line, p.column)), Some((5, 7)));
    assert_eq!(error.path, "name");
    assert!(
        error.message.contains(
            "the default path prefix `/web` (from the name) is also used by deployment `api` in prefix.yaml:3:24"
        ),
        "{error}"
    );
    assert!(
        error
            .help
            .as_deref()
            .is_some_and(|h| h.contains("routing.pathPrefix")),
        "{error}"
    );
}

#[test]
fn all_errors_are_reported_in_one_run() {
    let yaml = r#"name: first
comand: [x]
resources:
  replicas: two
  ports: [0]
  autoscaling:
    maxReplicas: 3
    metrics:
      - metric: cpu
        summary: p95
        value: 50
env:
  - { name: A, value: 1 }
healthChecks:
  readiness:
    path: health
rollout:
  strategy: canary
---
name: second
command: [x]
aliases: [Prod]
activator:
  queueTimeout: soon
"#;
    let catalog = load_str(yaml, "many.yaml");
    let found: Vec<(u64, u64, &str)> = errors(&catalog)
        .iter()
        .map(|d| {
            let at = d.at.expect("located");
            (at.line, at.column, d.path.as_str())
        })
        .collect();
    assert_eq!(
        found,
        [
            (2, 1, "comand"),
            (4, 13, "resources.replicas"),
            (5, 11, "resources.ports[0]"),
            (10, 18, "resources.autoscaling.metrics[0].summary"),
            (13, 23, "env[0].value"),
            (16, 11, "healthChecks.readiness.path"),
            (18, 3, "rollout.canaryPercent"),
            (22, 11, "aliases[0]"),
            (24, 17, "activator.queueTimeout"),
        ],
        "{}",
        show(&errors(&catalog))
    );
    let deployments: Vec<Option<&str>> = errors(&catalog)
        .iter()
        .map(|d| d.deployment.as_deref())
        .collect();
    assert_eq!(deployments[0], Some("first"));
    assert_eq!(deployments[8], Some("second"));
    assert!(catalog.deployments.is_empty());
    assert!(catalog.clone().into_valid().is_err());
}

#[test]
fn all_errors_across_files_are_reported() {
    let dir = dir_with(&[
        (
            "a.yaml",
            "name: a\ncommand: [x]\nresources: { replicas: -1 }\n",
        ),
        ("b.yml", "name: b\ncommand: [x]\nenabled: maybe\n"),
        ("c.yaml", "name: c\ncommand: [x]\n"),
        ("notes.txt", "not a spec"),
    ]);
    let catalog = load_paths(&[dir.path()]);
    let found: Vec<(String, String)> = errors(&catalog)
        .iter()
        .map(|d| (d.file.clone(), d.path.clone()))
        .collect();
    assert_eq!(
        found,
        [
            (
                file_in(dir.path(), "a.yaml"),
                "resources.replicas".to_owned()
            ),
            (file_in(dir.path(), "b.yml"), "enabled".to_owned()),
        ]
    );
    assert_eq!(catalog.deployments.len(), 1);
    assert_eq!(catalog.deployments[0].spec.name, "c");
}

#[test]
fn unreadable_paths_are_errors_naming_the_path() {
    let dir = dir_with(&[]);
    let missing = dir.path().join("nope.yaml");
    let catalog = load_paths(&[&missing]);
    let found = errors(&catalog);
    assert_eq!(found.len(), 1, "{}", show(&found));
    assert_eq!(found[0].file, missing.display().to_string());
    assert!(found[0].message.contains("cannot read"), "{}", found[0]);

    let catalog = load_paths(&[dir.path()]);
    let found = errors(&catalog);
    assert_eq!(found.len(), 1, "{}", show(&found));
    assert!(
        found[0].message.contains("no .yaml or .yml file"),
        "{}",
        found[0]
    );
}

#[test]
fn diagnostics_render_file_line_column_path_and_help() {
    let catalog = load_str("name: a\ncomand: [x]\n", "spec.yaml");
    let rendered = catalog.diagnostics[0].to_string();
    assert_eq!(
        rendered,
        "spec.yaml:2:1: error: comand: unknown field `comand` (deployment `a`)\n  help: did you mean `command`?"
    );
}

#[test]
fn columns_count_characters_and_line_endings_do_not_matter() {
    // Three two-byte and three four-byte characters before the value: columns count characters.
    for name in ["ééé", "日本🚀"] {
        let yaml = format!("name: a\ncommand: [x]\nenv: [{{name: \"{name}\", value: 5}}]\n");
        let catalog = load_str(&yaml, "chars.yaml");
        let found = errors(&catalog);
        assert_eq!(found.len(), 1, "{}", show(&found));
        assert_eq!(
            found[0].at.map(|p| (p.line, p.column)),
            Some((3, 28)),
            "{name}"
        );
    }
    // Windows line endings and a byte-order mark leave positions as they are.
    for yaml in [
        "name: a\r\ncomand: [x]\r\n",
        "\u{feff}name: a\ncomand: [x]\n",
    ] {
        let catalog = load_str(yaml, "crlf.yaml");
        let found = errors(&catalog);
        assert_eq!(found.len(), 1, "{yaml:?}: {}", show(&found));
        assert_eq!(
            found[0].at.map(|p| (p.line, p.column)),
            Some((2, 1)),
            "{yaml:?}"
        );
        assert_eq!(found[0].path, "comand");
    }
}

#[test]
fn a_file_that_is_not_utf8_says_so() {
    let dir = dir_with(&[]);
    let path = dir.path().join("latin1.yaml");
    std::fs::write(&path, b"name: caf\xe9\ncommand: [x]\n").expect("write");
    let catalog = load_paths(&[&path]);
    let found = errors(&catalog);
    assert_eq!(found.len(), 1, "{}", show(&found));
    assert!(found[0].message.contains("UTF-8"), "{}", found[0]);
    assert_eq!(found[0].help.as_deref(), Some("save the file as UTF-8"));
}
