//! Live reload: spec files are watched, and a valid edit is applied while lull runs. An edit
//! with errors is reported and changes nothing that runs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lull_spec::{Catalog, Target};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Runtime;

/// Editors write a file in several steps; changes this close together are one edit.
const SETTLE: Duration = Duration::from_millis(300);

/// Loads `paths` for the embedded target, as at start-up.
pub fn load(paths: &[PathBuf]) -> Catalog {
    let mut catalog = lull_spec::load_paths(paths);
    catalog.check_target(Target::Embedded);
    catalog
}

/// Watches `paths` until `shutdown`, applying each valid edit to `runtime`.
pub async fn watch(
    runtime: Arc<Runtime>,
    paths: Vec<PathBuf>,
    shutdown: CancellationToken,
) -> notify::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            // The receiver is gone only when lull is stopping.
            let _ = tx.send(());
        }
    })?;
    // Files are watched through their directory: editors often replace a file by renaming a
    // new one over it, which a watch on the old file would miss.
    let dirs: BTreeSet<PathBuf> = paths.iter().map(|p| watched_dir(p)).collect();
    for dir in &dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            event = rx.recv() => if event.is_none() { return Ok(()) },
        }
        // Let the edit settle, then take every event it caused as one.
        tokio::time::sleep(SETTLE).await;
        while rx.try_recv().is_ok() {}
        reload(&runtime, &paths);
    }
}

fn watched_dir(path: &Path) -> PathBuf {
    if path.is_dir() {
        return path.to_path_buf();
    }
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn reload(runtime: &Runtime, paths: &[PathBuf]) {
    let catalog = load(paths);
    for diagnostic in &catalog.diagnostics {
        eprintln!("{diagnostic}");
    }
    let deployments = match catalog.into_valid() {
        Ok((deployments, _)) => deployments,
        Err(_) => {
            eprintln!("lull: the edit has errors; nothing that runs was changed");
            return;
        }
    };
    if deployments == runtime.deployments() {
        return;
    }
    match runtime.apply(deployments) {
        Ok(()) => eprintln!("lull: applied the edited specs"),
        Err(e) => eprintln!("lull: {e}; nothing that runs was changed"),
    }
}
