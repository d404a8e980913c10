//! Replica choice end to end: each load-balancing policy's distribution, sticky sessions, and
//! the per-replica concurrency limit.

mod common;

use std::time::Duration;

use common::{Harness, Upstream, bounded, deployment, empty, endpoints_of, route};
use http::{Request, StatusCode, header};
use lull_core::{DeploymentKey, TrafficSource};
use lull_spec::LoadBalancingPolicy;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Three replicas and an activator routing `/m` to them with `policy`.
async fn rig(
    policy: LoadBalancingPolicy,
    edit: impl FnOnce(&mut lull_spec::DeploymentSpec),
) -> (
    Harness,
    Vec<Upstream>,
    watch::Sender<lull_core::EndpointSet>,
) {
    let ups = vec![
        Upstream::start().await,
        Upstream::start().await,
        Upstream::start().await,
    ];
    let set = endpoints_of(&[("m-1", &ups[0]), ("m-2", &ups[1]), ("m-3", &ups[2])]);
    let (tx, _) = watch::channel(set);
    let m = deployment("m", |s| {
        s.load_balancing.policy = policy;
        edit(s);
    });
    let h = Harness::start(vec![route(m, &tx)]).await;
    (h, ups, tx)
}

fn counts(ups: &[Upstream]) -> Vec<usize> {
    ups.iter().map(Upstream::requests).collect()
}

/// Starts a `/slow` request that holds its replica until released; returns once a replica
/// has it.
async fn hold(h: &Harness, ups: &[Upstream], held: &mut JoinSet<StatusCode>) -> usize {
    let before = counts(ups);
    let client = h.client.clone();
    let url = h.url("/m/slow");
    held.spawn(async move {
        let request = Request::get(url).body(empty()).expect("request");
        client.request(request).await.expect("answered").status()
    });
    loop {
        if let Some(i) = (0..ups.len()).find(|&i| ups[i].requests() > before[i]) {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn round_robin_spreads_requests_evenly() {
    bounded(async {
        let (h, ups, _tx) = rig(LoadBalancingPolicy::RoundRobin, |_| {}).await;
        for _ in 0..30 {
            assert_eq!(h.get("/m/x", None).await.status, StatusCode::OK);
        }
        assert_eq!(counts(&ups), [10, 10, 10]);
    })
    .await;
}

#[tokio::test]
async fn least_connections_avoids_busy_replicas() {
    bounded(async {
        let (h, ups, _tx) = rig(LoadBalancingPolicy::LeastConnections, |_| {}).await;
        let mut held = JoinSet::new();
        let a = hold(&h, &ups, &mut held).await;
        let b = hold(&h, &ups, &mut held).await;
        assert_ne!(a, b, "the second slow request goes to an idle replica");
        let idle = (0..3)
            .find(|i| *i != a && *i != b)
            .expect("one idle replica");
        let before = counts(&ups);
        for _ in 0..12 {
            assert_eq!(h.get("/m/x", None).await.status, StatusCode::OK);
        }
        let after = counts(&ups);
        assert_eq!(after[idle] - before[idle], 12, "{before:?} -> {after:?}");
        for up in &ups {
            up.release(1);
        }
        while let Some(status) = held.join_next().await {
            assert_eq!(status.expect("no panic"), StatusCode::OK);
        }
    })
    .await;
}

#[tokio::test]
async fn ip_hash_sends_a_client_to_one_replica() {
    bounded(async {
        let (h, ups, _tx) = rig(LoadBalancingPolicy::IpHash, |_| {}).await;
        for _ in 0..20 {
            assert_eq!(h.get("/m/x", None).await.status, StatusCode::OK);
        }
        let mut per = counts(&ups);
        per.sort_unstable();
        assert_eq!(
            per,
            [0, 0, 20],
            "every request from 127.0.0.1 on one replica"
        );
    })
    .await;
}

#[tokio::test]
async fn power_of_two_choices_spreads_idle_load_and_avoids_a_busy_replica() {
    bounded(async {
        // With two replicas both are always the two choices: the less busy one wins.
        let ups = vec![Upstream::start().await, Upstream::start().await];
        let set = endpoints_of(&[("m-1", &ups[0]), ("m-2", &ups[1])]);
        let (tx, _) = watch::channel(set);
        let m = deployment("m", |s| {
            s.load_balancing.policy = LoadBalancingPolicy::PowerOfTwoChoices;
        });
        let h = Harness::start(vec![route(m, &tx)]).await;
        for _ in 0..60 {
            assert_eq!(h.get("/m/x", None).await.status, StatusCode::OK);
        }
        let spread = counts(&ups);
        assert!(
            spread.iter().all(|&n| n > 0),
            "idle replicas both chosen: {spread:?}"
        );

        let mut held = JoinSet::new();
        let busy = hold(&h, &ups, &mut held).await;
        let before = counts(&ups);
        for _ in 0..20 {
            assert_eq!(h.get("/m/x", None).await.status, StatusCode::OK);
        }
        assert_eq!(
            counts(&ups)[busy],
            before[busy],
            "the busy replica got nothing more"
        );
        ups[busy].release(1);
        assert_eq!(
            held.join_next().await.expect("held").expect("no panic"),
            StatusCode::OK
        );
    })
    .await;
}

#[tokio::test]
async fn sticky_sessions_keep_a_client_on_its_replica() {
    bounded(async {
        let (h, ups, tx) = rig(LoadBalancingPolicy::RoundRobin, |s| {
            s.load_balancing.sticky_sessions.enabled = true;
            s.load_balancing.sticky_sessions.cookie_name = "session".to_owned();
        })
        .await;
        let first = h.get("/m/x", None).await;
        let set_cookie = first
            .headers
            .get(header::SET_COOKIE)
            .expect("the first answer sets the affinity cookie")
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(set_cookie.starts_with("session="), "{set_cookie}");
        assert!(set_cookie.contains("Max-Age=3600"), "{set_cookie}");
        let cookie = set_cookie.split(';').next().expect("name=value").to_owned();
        let home = counts(&ups)
            .iter()
            .position(|&n| n == 1)
            .expect("one replica answered");

        for _ in 0..12 {
            let request = Request::get(h.url("/m/x"))
                .header(header::COOKIE, format!("theme=dark; {cookie}"))
                .body(empty())
                .expect("request");
            let reply = h.call(request).await;
            assert_eq!(reply.status, StatusCode::OK);
            assert!(
                reply.headers.get(header::SET_COOKIE).is_none(),
                "a client already at its replica is not told again"
            );
        }
        assert_eq!(counts(&ups)[home], 13, "{:?}", counts(&ups));

        // Its replica gone, the client goes elsewhere and gets a new cookie.
        let others: Vec<(&str, &Upstream)> = [("m-1", &ups[0]), ("m-2", &ups[1]), ("m-3", &ups[2])]
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i != home)
            .map(|(_, r)| r)
            .collect();
        tx.send_replace(endpoints_of(&others));
        let request = Request::get(h.url("/m/x"))
            .header(header::COOKIE, cookie.clone())
            .body(empty())
            .expect("request");
        let moved = h.call(request).await;
        assert_eq!(moved.status, StatusCode::OK);
        let renewed = moved
            .headers
            .get(header::SET_COOKIE)
            .expect("a new cookie")
            .to_str()
            .expect("ascii");
        assert!(!renewed.starts_with(&cookie), "{renewed}");
    })
    .await;
}

#[tokio::test]
async fn requests_over_container_concurrency_wait_for_a_free_replica() {
    bounded(async {
        const REQUESTS: usize = 8;
        let ups = [Upstream::start().await, Upstream::start().await];
        let set = endpoints_of(&[("m-1", &ups[0]), ("m-2", &ups[1])]);
        let (tx, _) = watch::channel(set);
        let m = deployment("m", |s| s.activator.container_concurrency = 1);
        let h = Harness::start(vec![route(m, &tx)]).await;

        let mut requests = JoinSet::new();
        for i in 0..REQUESTS {
            let client = h.client.clone();
            let url = h.url(&format!("/m/slow?{i}"));
            requests.spawn(async move {
                let request = Request::get(url).body(empty()).expect("request");
                match client.request(request).await {
                    Ok(response) => response.status(),
                    Err(error) => panic!("no answer: {error:?}"),
                }
            });
        }
        // Two replicas, one request each: the other six wait in the queue.
        let key = DeploymentKey::new("m");
        loop {
            let snapshot = h.activator.take_snapshot(&key).expect("routed");
            let reached = ups[0].requests() + ups[1].requests();
            if snapshot.parked as usize == REQUESTS - 2 && reached == 2 {
                assert_eq!(snapshot.in_flight, 2);
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Each release lets one answer and one waiter in.
        for _ in 0..REQUESTS {
            ups[0].release(1);
            ups[1].release(1);
        }
        let mut answered = 0;
        while let Some(status) = requests.join_next().await {
            assert_eq!(status.expect("no panic"), StatusCode::OK);
            answered += 1;
        }
        assert_eq!(answered, REQUESTS);
        assert_eq!(ups[0].max_in_flight(), 1);
        assert_eq!(ups[1].max_in_flight(), 1);
        assert_eq!(ups[0].requests() + ups[1].requests(), REQUESTS);
        // Counted as parked while they waited, and not answered by the activator itself.
        let text = {
            let mut registry = prometheus_client::registry::Registry::default();
            h.activator.register_metrics(&mut registry);
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).expect("encoded");
            text
        };
        assert!(
            text.contains(
                r#"lull_activator_rejections_total{deployment="m",reason="queue_full"} 0"#
            ),
            "{text}"
        );
    })
    .await;
}
