//! End-to-end tests of `lull simulate`: the built binary on the example traces and on traces a
//! user gets wrong.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

/// `lull simulate ARGS`, run from the repository root so that `examples/` resolves.
fn simulate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lull"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("simulate")
        .args(args)
        .output()
        .expect("lull runs")
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("lull exits, not killed")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const SPEC: &str = "examples/traces/endpoint.yaml";

fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("the file is written");
    path
}

fn text(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

#[test]
fn the_summary_names_cost_service_waits_and_scaling() {
    let output = simulate(&["--spec", SPEC, "--trace", "examples/traces/sparse.csv"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let out = stdout(&output);
    for line in [
        "policy lull: 22500 s of traffic",
        "replica-seconds",
        "requests          563 (served 563",
        "cold-start waits",
        "added wait        p50",
        "longest queue",
        "scale events",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }
}

#[test]
fn json_output_is_one_object_and_the_same_every_time() {
    let args = [
        "--spec",
        SPEC,
        "--trace",
        "examples/traces/spike.csv",
        "--policy",
        "kpa",
        "--startup",
        "5s",
        "--service-time",
        "200ms",
        "--concurrency",
        "2",
        "--output",
        "json",
    ];
    let first = simulate(&args);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    let json: serde_json::Value =
        serde_json::from_str(stdout(&first).trim()).expect("one JSON object");
    assert_eq!(json["policy"], "kpa");
    for key in [
        "replica_seconds",
        "requests",
        "cold_waits",
        "wait_p50_s",
        "wait_p95_s",
        "wait_p99_s",
        "max_queue",
        "scale_events",
    ] {
        assert!(json[key].is_number(), "{key} in {json}");
    }
    assert!(
        json["wait_p99_s"].as_f64() > Some(0.0),
        "a 5 s start-up and 2 per replica: {json}"
    );
    assert_eq!(stdout(&simulate(&args)), stdout(&first), "deterministic");
}

#[test]
fn the_timeline_has_a_row_per_second() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let timeline = dir.path().join("timeline.csv");
    let output = simulate(&[
        "--spec",
        SPEC,
        "--trace",
        "examples/traces/step.csv",
        "--policy",
        "hpa",
        "--timeline",
        text(&timeline),
    ]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let csv = std::fs::read_to_string(&timeline).expect("the timeline is written");
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "time_s,desired,ready,in_flight,queued,rps");
    assert_eq!(rows.len(), 1 + 901, "900 s of trace, rows 0 to 900");
    assert_eq!(rows[1], "0,1,1,0,0,0", "the HPA keeps a replica");
    assert!(rows[100].starts_with("99,1,1,"), "{}", rows[100]);
    assert!(rows[100].ends_with(",10"), "10 rps: {}", rows[100]);
}

#[test]
fn a_malformed_trace_says_which_line_and_what_is_wrong() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cases = [
        (
            "time_s,rps\n0,5\n10,five\n",
            "line 3: rps `five` is not a number",
        ),
        (
            "# load test\ntime,rps\n0,5\n",
            "line 2: expected a header `time_s,rps`, `time_s,rps,mean_duration_s` or `arrival_s,duration_s`, found `time,rps`",
        ),
        (
            "arrival_s,duration_s\n1,0.1\n0.5,0.1\n",
            "line 3: arrival_s 0.5 does not come after 1 on the row above; rows must be in time order",
        ),
        (
            "time_s,rps,mean_duration_s\n0,5\n",
            "line 2: expected 3 fields (time_s,rps,mean_duration_s), found 2",
        ),
    ];
    for (trace, message) in cases {
        let path = write(&dir, "bad.csv", trace);
        let output = simulate(&["--spec", SPEC, "--trace", text(&path)]);
        assert_eq!(code(&output), 1, "{trace:?}");
        let err = stderr(&output);
        assert_eq!(
            err.trim(),
            format!("error: {}: {message}", text(&path)),
            "{trace:?}"
        );
        assert!(stdout(&output).is_empty());
    }
}

#[test]
fn specs_it_cannot_simulate_are_errors() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let fixed = write(&dir, "fixed.yaml", "name: fixed\ncommand: [serve]\n");
    let output = simulate(&[
        "--spec",
        text(&fixed),
        "--trace",
        "examples/traces/step.csv",
    ]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("`fixed` has no enabled resources.autoscaling to simulate"),
        "{}",
        stderr(&output)
    );
    let invalid = write(
        &dir,
        "invalid.yaml",
        "name: bad\ncommand: [serve]\nresources:\n  autoscaling: { maxReplicas: 0 }\n",
    );
    let output = simulate(&[
        "--spec",
        text(&invalid),
        "--trace",
        "examples/traces/step.csv",
    ]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("invalid.yaml:4:"),
        "{}",
        stderr(&output)
    );

    let memory = write(
        &dir,
        "memory.yaml",
        "name: mem\ncommand: [serve]\nresources:\n  autoscaling:\n    maxReplicas: 3\n    metrics: [{ metric: memory, value: 80 }]\n",
    );
    let output = simulate(&[
        "--spec",
        text(&memory),
        "--trace",
        "examples/traces/step.csv",
    ]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("warning: the simulator does not model memory"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn usage_errors_exit_2() {
    let output = simulate(&[
        "--spec",
        SPEC,
        "--trace",
        "examples/traces/step.csv",
        "--policy",
        "vpa",
    ]);
    assert_eq!(code(&output), 2);
    let output = simulate(&["--spec", SPEC]);
    assert_eq!(code(&output), 2);
}
