//! Ten thousand parked requests: none lost, and each costs little memory because nothing of
//! a parked request is read or copied until it is forwarded.
//!
//! The bound is loose on purpose: this unoptimised test build holds the client's side of every
//! request in the same process. Measured on an optimised build with the client in another
//! process, a parked HTTP/2 request costs the activator about 4-5 KiB (40-50 MiB for ten
//! thousand); a parked HTTP/1.1 request on a new connection waits in the lobby before hyper
//! sees it and costs about 1.7 KiB (`benches/parked_rss.sh`).

mod common;

use std::time::Duration;

use common::{Harness, bounded, deployment, empty, route};
use http::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lull_core::{DeploymentKey, EndpointSet, TrafficSource};
use tokio::sync::watch;

const PARKED: usize = 10_000;
/// HTTP/2 connections the requests share; hyper's server takes 200 streams per connection.
const CONNECTIONS: usize = 100;
/// Client and activator together, per parked request, in a debug build.
const MAX_BYTES_PER_PARKED: u64 = 16 * 1024;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("procfs is mounted");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("statm has the resident page count");
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_parked_requests_are_cheap_and_all_answered() {
    bounded(async {
        let (tx, _) = watch::channel(EndpointSet::default());
        let m = |enabled| {
            deployment("m", move |s| {
                s.enabled = enabled;
                s.activator.queue_capacity = PARKED as u32;
            })
        };
        let h = Harness::start(vec![route(m(true), &tx)]).await;
        let before = resident_bytes();
        let mut clients = tokio::task::JoinSet::new();
        for c in 0..CONNECTIONS {
            let client: Client<_, common::ClientBody> = Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http();
            for i in 0..PARKED / CONNECTIONS {
                let client = client.clone();
                let url = h.url(&format!("/m/x?{c}-{i}"));
                clients.spawn(async move {
                    let request = Request::get(url).body(empty()).expect("request");
                    client.request(request).await.map(|r| r.status())
                });
            }
        }
        let key = DeploymentKey::new("m");
        while (h.activator.take_snapshot(&key).expect("routed").parked as usize) < PARKED {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let grown = resident_bytes().saturating_sub(before);
        assert!(
            grown < PARKED as u64 * MAX_BYTES_PER_PARKED,
            "{} MiB for {PARKED} parked requests",
            grown / (1024 * 1024)
        );
        // Parking ten thousand may take longer than the wake's resend interval here.
        assert!(h.wakes.count() >= 1);

        // Disabling answers every one of them at once; none is lost.
        h.activator.apply(vec![route(m(false), &tx)]);
        let mut answered = 0;
        while let Some(status) = clients.join_next().await {
            let status = status.expect("no panic").expect("answered");
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            answered += 1;
        }
        assert_eq!(answered, PARKED);
    })
    .await;
}
