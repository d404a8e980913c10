//! A standalone activator in front of one replica address, for profiling the data plane alone.
//!
//! `cargo run --release -p lull-activator --example proxy -- LISTEN UPSTREAM [THREADS]` routes
//! `/bench/...` on LISTEN to UPSTREAM (a replica that is always ready). THREADS picks the
//! runtime: 0 (default) is tokio's multi-threaded runtime with one worker per core, N > 0 that
//! many workers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lull_activator::{Activator, ActivatorConfig, Route};
use lull_core::{DeploymentKey, Endpoint, EndpointSet, ReplicaId, Wake};
use lull_spec::{Deployment, DeploymentSpec};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

struct NoWake;

impl Wake for NoWake {
    fn wake(&self, _key: &DeploymentKey) {}
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
        return Err("usage: proxy LISTEN UPSTREAM [THREADS]".into());
    };
    let listen: SocketAddr = listen.parse()?;
    let upstream: SocketAddr = upstream.parse()?;
    let threads: i64 = args.get(3).map_or(Ok(0), |t| t.parse())?;
    let mut builder = if threads < 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if threads > 0 {
        builder.worker_threads(threads as usize);
    }
    builder.enable_all().build()?.block_on(async move {
        let activator = Activator::new(
            ActivatorConfig {
                domain: None,
                drain_timeout: Duration::from_secs(1),
            },
            Arc::new(NoWake),
        );
        let set = EndpointSet::new(vec![Endpoint {
            replica: ReplicaId::new("bench-1"),
            addr: upstream,
        }]);
        let (_endpoints, receiver) = watch::channel(set);
        activator.apply(vec![Route {
            deployment: Deployment {
                spec: DeploymentSpec::named("bench"),
                slug: "bench".to_owned(),
                file: "bench.yaml".to_owned(),
                at: Default::default(),
            },
            endpoints: receiver,
        }]);
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let stop = CancellationToken::new();
        let stopping = stop.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stopping.cancel();
        });
        activator.serve(listener, stop).await?;
        Ok(())
    })
}
