//! End-to-end test of draining: 2,000 requests under load while a deployment goes from 4
//! replicas to 1 (its spec edited live); none fails. The three replicas chosen to stop get no
//! new request once they leave the endpoint set, and the requests they have in flight (each
//! takes 50 ms) finish before they are signalled to stop.
//!
//! A rolling restart (the spec's environment changed live) under the same load loses nothing
//! either: each new replica is ready before an old one leaves the set and drains.
//!
//! Half the requests are POSTs with a body, which the activator never sends twice: they can
//! only all succeed if the drain itself loses nothing, not because a retry covered for it.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::{Sandbox, bounded, fixture_spec, replicas};

/// Requests sent in all.
const REQUESTS: usize = 2_000;

/// Requests in flight at any time.
const CONCURRENCY: usize = 16;

/// Requests answered before the spec goes from 4 replicas to 1.
const BEFORE_SCALE_DOWN: usize = 300;

fn spec(replicas: u32, version: u32) -> String {
    fixture_spec(
        "drain",
        &["--startup-delay", "0ms", "--work", "0ms", "--sleep", "50ms"],
        &format!(
            "resources:\n  replicas: {replicas}\nenv:\n  - {{ name: VERSION, value: \"{version}\" }}\n"
        ),
    )
}

/// One request through the activator: the replica that answered, or what went wrong.
async fn call(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: &str,
    post: bool,
) -> Result<String, String> {
    let request = if post {
        hyper::Request::post(url).body(Full::new(Bytes::from_static(b"{\"inputs\": \"drain\"}")))
    } else {
        hyper::Request::get(url).body(Full::new(Bytes::new()))
    }
    .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(support::REQUEST_TIMEOUT, client.request(request))
        .await
        .map_err(|_| "no answer in time".to_owned())?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if status != 200 {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    let json: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(json["replica"].as_str().unwrap_or_default().to_owned())
}

/// Runs [`REQUESTS`] requests, [`CONCURRENCY`] at a time, over keep-alive connections; after
/// [`BEFORE_SCALE_DOWN`] are answered, writes `change` as the spec and waits until `done` says
/// the deployment got there. Returns the answers by replica and how many were answered by then.
async fn under_load(
    sandbox: &Sandbox,
    lull: &support::Lull,
    change: &str,
    done: impl FnMut(&serde_json::Value) -> Option<()>,
) -> (BTreeMap<String, usize>, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (next, answered) = (next.clone(), answered.clone());
        let url = lull.url("/drain/predict");
        workers.spawn(async move {
            // Keep-alive connections, as a real client holds them: each worker reuses its own.
            let client = Client::builder(TokioExecutor::new()).build_http();
            let mut outcomes = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= REQUESTS {
                    return outcomes;
                }
                let outcome = call(&client, &url, i % 2 == 1).await;
                answered.fetch_add(1, Ordering::SeqCst);
                outcomes.push(outcome);
            }
        });
    }

    while answered.load(Ordering::SeqCst) < BEFORE_SCALE_DOWN {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sandbox.write_spec("drain.yaml", change);
    lull.wait_for("drain", "the change done", done).await;
    let at_change = answered.load(Ordering::SeqCst);

    let mut by_replica: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    while let Some(outcomes) = workers.join_next().await {
        for outcome in outcomes.expect("the worker ran") {
            match outcome {
                Ok(replica) => *by_replica.entry(replica).or_default() += 1,
                Err(e) => failures.push(e),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {REQUESTS} requests failed while draining, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(by_replica.values().sum::<usize>(), REQUESTS);
    assert!(
        at_change < REQUESTS,
        "the change finished while the load still ran ({at_change} answered by then)"
    );
    eprintln!("answered by replica: {by_replica:?}; {at_change} answered when the change was done");
    (by_replica, at_change)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_requests_while_replicas_go_from_four_to_one_all_succeed() {
    bounded(async {
        let sandbox = Sandbox::new();
        sandbox.write_spec("drain.yaml", &spec(4, 1));
        let lull = sandbox.up().start().await;
        lull.wait_ready("drain", 4).await;
        // Until the three replicas are gone: drained, stopped, their processes reaped.
        let (by_replica, _) = under_load(&sandbox, &lull, &spec(1, 1), |d| {
            (replicas(d).len() == 1 && d["ready"] == 1).then_some(())
        })
        .await;
        assert!(
            by_replica.len() >= 4,
            "all four replicas served before the scale-down: {by_replica:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_requests_through_a_rolling_restart_all_succeed() {
    bounded(async {
        let sandbox = Sandbox::new();
        sandbox.write_spec("drain.yaml", &spec(2, 1));
        let lull = sandbox.up().start().await;
        let old: Vec<String> = {
            lull.wait_ready("drain", 2).await;
            let d = lull.deployment("drain").await;
            replicas(&d)
                .iter()
                .filter_map(|r| r["id"].as_str().map(str::to_owned))
                .collect()
        };
        // Until two replicas of the new version serve and none of the old ones is left.
        let (by_replica, _) = under_load(&sandbox, &lull, &spec(2, 2), |d| {
            let now = replicas(d);
            let renewed = now.len() == 2
                && now.iter().all(|r| {
                    r["id"]
                        .as_str()
                        .is_some_and(|id| !old.iter().any(|o| o == id))
                });
            (renewed && d["ready"] == 2).then_some(())
        })
        .await;
        assert!(
            by_replica.keys().any(|r| !old.contains(r)),
            "new replicas served after the restart: {by_replica:?}"
        );
    })
    .await;
}
