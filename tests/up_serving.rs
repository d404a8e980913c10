//! End-to-end tests of `lull up` serving requests (issue 3): a cold start from zero, a full
//! queue (503 with `Retry-After`) and a queue timeout (504), a disabled deployment enabled by an
//! edit while lull runs, a replica lull did not write (`python3 -m http.server`), and the
//! README's first command on the repository's `examples/`.
//!
//! Each test runs its own `lull up` (the built binary) on free ports of 127.0.0.1 with a
//! temporary state directory; every process is stopped by pid when the test ends, passing or not.
//! These tests are light (a few idle replicas each), so they run in parallel.

mod support;

use std::collections::BTreeMap;

use support::{
    Sandbox, bounded, fixture_spec, get, replica_pids, replica_processes, replicas, repo_root,
    snapshot, wait_reaped,
};

/// A deployment at zero (minReplicas 0) answers its first request with 200 and the body of the
/// replica that woke for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_at_zero_answers_its_first_request() {
    bounded(async {
        let sandbox = Sandbox::new();
        sandbox.write_spec(
            "cold.yaml",
            &fixture_spec(
                "cold",
                &["--startup-delay", "500ms", "--work", "0ms"],
                "resources:\n  autoscaling:\n    minReplicas: 0\n    maxReplicas: 1\n    scaleToZeroAfter: 5m\n",
            ),
        );
        let mut lull = sandbox.up().start().await;

        let before = lull.deployment("cold").await;
        assert_eq!(before["ready"], 0, "at zero before any request: {before:#}");
        assert!(
            replicas(&before).is_empty(),
            "no replica runs before the first request: {before:#}"
        );

        let reply = lull.get("/cold/").await;
        assert_eq!(reply.status, 200, "the first request: {}", reply.body);
        let body = reply.json();
        assert_eq!(body["deployment"], "cold", "{body}");
        assert_eq!(body["path"], "/", "the prefix is stripped: {body}");
        let replica = body["replica"]
            .as_str()
            .expect("the fixture names its replica")
            .to_owned();
        assert!(replica.starts_with("cold-"), "replica {replica:?}");

        let after = lull.deployment("cold").await;
        assert!(
            replicas(&after).iter().any(|r| r["id"] == replica.as_str()),
            "the replica that answered is the one lull runs: {after:#}"
        );
        let processes = snapshot(&replica_pids(&after));
        assert_eq!(processes.len(), 1, "one replica process: {after:#}");

        let status = lull.stop().await;
        assert!(status.success(), "SIGTERM drains and exits 0, not {status}");
        wait_reaped(&processes, "the replica after `lull up` stopped").await;
    })
    .await;
}

/// With `queueCapacity: 5` and a replica that needs 5 s to start, 20 concurrent requests at zero
/// park 5 and answer the other 15 with 503, `Retry-After` and a JSON body; the parked 5 are
/// answered 200 once the replica is ready (none is dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after() {
    bounded(async {
        let sandbox = Sandbox::new();
        sandbox.write_spec(
            "full.yaml",
            &fixture_spec(
                "full",
                &["--startup-delay", "5s", "--work", "0ms"],
                "resources:\n  autoscaling:\n    minReplicas: 0\n    maxReplicas: 1\n    scaleToZeroAfter: 5m\n\
                 activator:\n  queueCapacity: 5\n  queueTimeout: 60s\n",
            ),
        );
        let lull = sandbox.up().start().await;
        let url = lull.url("/full/");

        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let url = url.clone();
            requests.spawn(async move { get(&url).await });
        }
        let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
        while let Some(done) = requests.join_next().await {
            let reply = done
                .expect("the request task ran")
                .unwrap_or_else(|e| panic!("every request is answered: {e}"));
            *by_status.entry(reply.status).or_default() += 1;
            match reply.status {
                200 => assert_eq!(reply.json()["deployment"], "full", "{}", reply.body),
                503 => {
                    let retry_after = reply
                        .header("retry-after")
                        .unwrap_or_else(|| panic!("a 503 without Retry-After: {reply:?}"));
                    let secs: u64 = retry_after
                        .parse()
                        .unwrap_or_else(|e| panic!("Retry-After {retry_after:?}: {e}"));
                    assert!(secs >= 1, "Retry-After {secs}");
                    assert_eq!(
                        reply.header("content-type").as_deref(),
                        Some("application/json"),
                        "{reply:?}"
                    );
                    let body = reply.json();
                    assert_eq!(body["error"], "queue_full", "{body}");
                    assert!(body["message"].is_string(), "{body}");
                }
                other => panic!("unexpected status {other}: {reply:?}"),
            }
        }
        // The 20 requests arrive within milliseconds and no replica is ready for 5 s, so exactly
        // the capacity parks and the rest is refused.
        assert_eq!(
            by_status,
            BTreeMap::from([(200, 5), (503, 15)]),
            "5 parked and served, 15 refused"
        );
    })
    .await;
}

/// With `queueTimeout: 1s` and a replica that needs 10 s to start, a request at zero waits 1 s
/// and is answered 504 with a JSON body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_past_the_queue_timeout_answers_504() {
    bounded(async {
        let sandbox = Sandbox::new();
        sandbox.write_spec(
            "slow.yaml",
            &fixture_spec(
                "slow",
                &["--startup-delay", "10s", "--work", "0ms"],
                "resources:\n  autoscaling:\n    minReplicas: 0\n    maxReplicas: 1\n    scaleToZeroAfter: 5m\n\
                 activator:\n  queueTimeout: 1s\n",
            ),
        );
        let lull = sandbox.up().start().await;

        let reply = lull.get("/slow/").await;
        assert_eq!(reply.status, 504, "{reply:?}");
        assert_eq!(
            reply.header("content-type").as_deref(),
            Some("application/json"),
            "{reply:?}"
        );
        let body = reply.json();
        assert_eq!(body["error"], "queue_timeout", "{body}");
        assert_eq!(body["deployment"], "slow", "{body}");
    })
    .await;
}

/// A disabled deployment answers 503 "disabled" at once and starts no replica; an edit of its
/// spec to `enabled: true` makes it serve without restarting lull.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_deployment_answers_503_until_an_edit_enables_it() {
    bounded(async {
        let sandbox = Sandbox::new();
        let rest = "resources:\n  replicas: 1\n";
        let args = ["--startup-delay", "0ms", "--work", "0ms"];
        let spec = sandbox.write_spec(
            "toggle.yaml",
            &format!("enabled: false\n{}", fixture_spec("toggle", &args, rest)),
        );
        let mut lull = sandbox.up().start().await;

        let reply = lull.get("/toggle/").await;
        assert_eq!(reply.status, 503, "{reply:?}");
        let body = reply.json();
        assert_eq!(body["error"], "disabled", "{body}");
        assert_eq!(body["deployment"], "toggle", "{body}");

        // Three ticks (--tick 1s) of status: no replica is ever asked for or started, although
        // the spec asks for one and a request came.
        for _ in 0..30 {
            let d = lull.deployment("toggle").await;
            assert_eq!(d["enabled"], false, "{d:#}");
            assert_eq!(d["desired"], 0, "{d:#}");
            assert_eq!(d["ready"], 0, "{d:#}");
            assert!(
                replicas(&d).is_empty(),
                "no replica of a disabled deployment: {d:#}"
            );
            tokio::time::sleep(support::POLL).await;
        }
        assert!(
            replica_processes("toggle").is_empty(),
            "no process runs for the disabled deployment"
        );

        std::fs::write(
            &spec,
            format!("enabled: true\n{}", fixture_spec("toggle", &args, rest)),
        )
        .expect("the spec is edited");

        // The edit is applied by the file watch; until then the answer stays 503 "disabled".
        let deadline = tokio::time::Instant::now() + support::WAIT;
        let served = loop {
            let reply = lull.get("/toggle/").await;
            if reply.status == 200 {
                break reply;
            }
            assert_eq!(reply.status, 503, "only 503 until enabled: {reply:?}");
            assert!(
                tokio::time::Instant::now() < deadline,
                "not serving {:?} after the edit: {reply:?}",
                support::WAIT
            );
            tokio::time::sleep(support::POLL).await;
        };
        assert_eq!(served.json()["deployment"], "toggle", "{}", served.body);
        assert!(
            lull.try_wait().is_none(),
            "the same `lull up` (pid {}) still runs",
            lull.pid
        );
        let d = lull.deployment("toggle").await;
        assert_eq!(d["enabled"], true, "{d:#}");
    })
    .await;
}

/// A replica lull did not write — `python3 -m http.server` on `$PORT` — serves through the
/// activator: it lists and serves its working directory, which is the spec's directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_lull_did_not_write_serves_through_the_activator() {
    bounded(async {
        let sandbox = Sandbox::new();
        sandbox.write_spec(
            "static.yaml",
            "name: static\n\
             command: [\"/bin/sh\", \"-c\", \"exec python3 -m http.server --bind 127.0.0.1 $PORT\"]\n",
        );
        std::fs::write(sandbox.specs().join("hello.txt"), "hello from python\n")
            .expect("a file to serve");
        let lull = sandbox.up().start().await;
        lull.wait_ready("static", 1).await;

        let listing = lull.get("/static/").await;
        assert_eq!(listing.status, 200, "{listing:?}");
        assert!(
            listing.body.contains("hello.txt"),
            "the directory listing names the file: {}",
            listing.body
        );
        let file = lull.get("/static/hello.txt").await;
        assert_eq!(file.status, 200, "{file:?}");
        assert_eq!(file.body, "hello from python\n");
    })
    .await;
}

/// The README's first command, `lull up examples/`: every `curl` line it prints answers as the
/// README says — `hello` and `sentiment` 200, the disabled `my-cool-deployment` 503 "disabled".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_first_command_serves_every_printed_curl_line() {
    bounded(async {
        let sandbox = Sandbox::new();
        let lull = support::Up::new(sandbox.state())
            .cwd(repo_root())
            .path("examples/")
            .start()
            .await;

        let urls: Vec<String> = lull
            .stdout()
            .iter()
            .filter_map(|line| line.trim().strip_prefix("curl "))
            .map(|url| url.trim().to_owned())
            .collect();
        let mut answered = BTreeMap::new();
        for url in &urls {
            let reply = get(url)
                .await
                .unwrap_or_else(|e| panic!("the printed `curl {url}`: {e}"));
            let slug = url
                .strip_prefix(&lull.url("/"))
                .and_then(|rest| rest.split('/').next())
                .unwrap_or_else(|| panic!("{url} is not on the activator {}", lull.listen))
                .to_owned();
            match slug.as_str() {
                "my-cool-deployment" => {
                    assert_eq!(reply.status, 503, "curl {url}: {reply:?}");
                    let body = reply.json();
                    assert_eq!(body["error"], "disabled", "curl {url}: {body}");
                }
                _ => {
                    assert_eq!(reply.status, 200, "curl {url}: {reply:?}");
                    assert_eq!(reply.json()["deployment"], slug.as_str(), "curl {url}");
                }
            }
            answered.insert(slug, reply.status);
        }
        for slug in ["hello", "sentiment", "my-cool-deployment"] {
            assert!(
                answered.contains_key(slug),
                "no curl line for `{slug}` in:\n{}",
                lull.stdout().join("\n")
            );
        }
        // The disabled example's secrets are not set; that is no problem until it is enabled.
        let disabled = lull.deployment("my-cool-deployment").await;
        assert!(
            disabled["backend"]["problem"].is_null(),
            "a disabled deployment reports no problem: {disabled:#}"
        );
        assert!(
            !lull.stderr().contains("cannot run the deployment"),
            "no error is logged for the disabled example:\n{}",
            lull.stderr()
        );
    })
    .await;
}
