//! End-to-end test of a burst at zero (issue 3): 500 concurrent requests reach a deployment at
//! zero replicas whose replica needs 2 s to start; every one is answered 200, none is lost and
//! none is sent twice (the replica counts exactly 500).
//!
//! A test binary of its own: it opens 500 connections at once and should not share the machine
//! with the other end-to-end tests.

mod support;

use std::collections::BTreeMap;

use support::{Sandbox, bounded, fixture_spec, get, metric, replicas};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_requests_at_zero_are_each_served_once() {
    const BURST: usize = 500;
    bounded(async {
        let sandbox = Sandbox::new();
        // One replica at most, so that its own counter sees every request; the default queue
        // (1000 requests, 60 s) holds the whole burst while it starts.
        sandbox.write_spec(
            "burst.yaml",
            &fixture_spec(
                "burst",
                &["--startup-delay", "2s", "--work", "0ms"],
                "resources:\n  autoscaling:\n    minReplicas: 0\n    maxReplicas: 1\n    scaleToZeroAfter: 5m\n",
            ),
        );
        let lull = sandbox.up().start().await;
        let before = lull.deployment("burst").await;
        assert!(replicas(&before).is_empty(), "at zero: {before:#}");

        let url = lull.url("/burst/predict");
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..BURST {
            let url = url.clone();
            requests.spawn(async move { get(&url).await });
        }
        let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
        let mut by_replica: BTreeMap<String, usize> = BTreeMap::new();
        let mut errors = Vec::new();
        while let Some(done) = requests.join_next().await {
            match done.expect("the request task ran") {
                Ok(reply) => {
                    *by_status.entry(reply.status).or_default() += 1;
                    if reply.status == 200 {
                        let body = reply.json();
                        assert_eq!(body["path"], "/predict", "{body}");
                        let replica = body["replica"].as_str().unwrap_or_default().to_owned();
                        *by_replica.entry(replica).or_default() += 1;
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        assert!(
            errors.is_empty(),
            "{} requests got no answer, first: {:?}",
            errors.len(),
            errors.first()
        );
        assert_eq!(by_status, BTreeMap::from([(200, BURST)]), "every request 200");
        assert_eq!(by_replica.len(), 1, "one replica answered all: {by_replica:?}");

        // The replica's own count: exactly the burst, so no request was lost or forwarded twice.
        let d = lull.deployment("burst").await;
        let all = replicas(&d);
        assert_eq!(all.len(), 1, "one replica: {d:#}");
        let addr = all[0]["addr"].as_str().expect("the replica's address");
        let metrics = get(&format!("http://{addr}/metrics"))
            .await
            .expect("the replica's /metrics");
        assert_eq!(metrics.status, 200, "{metrics:?}");
        let served = metric(&metrics.body, "fixture_requests_total")
            .unwrap_or_else(|| panic!("no fixture_requests_total in:\n{}", metrics.body));
        assert_eq!(served, BURST as f64, "the replica served each request once");
    })
    .await;
}
