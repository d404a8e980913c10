//! [`LocalBackend`]: the embedded backend's entry point, and its [`lull_core::Backend`] impl.
//!
//! It owns the state directory (locked against a second lull), reaps what an earlier lull left
//! running, keeps one [`Supervisor`] per deployment, and persists the state file whenever replicas
//! or desired counts change.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use lull_core::{
    Backend, BackendStatus, BoxFuture, DeploymentKey, EndpointSet, ReplicaId, ReplicaLoad,
};
use lull_spec::Deployment;
use lull_spec::secret::ResolvedSecrets;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::leftovers;
use crate::limits::Limits;
use crate::ports::Ports;
use crate::proc_metrics::CpuReading;
use crate::state::{self, State};
use crate::supervisor::{Supervisor, reconcile};
use crate::template::Template;

/// The lock file that keeps two lulls off one state directory.
const LOCK_FILE: &str = "lull.lock";

/// Errors of starting the backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A directory could not be created.
    #[error("cannot create {}: {source}", .path.display())]
    CreateDir {
        /// Which.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Another lull holds the state directory.
    #[error("another lull is running with the state directory {}: stop it first, or give this one another state directory", .path.display())]
    Locked {
        /// The state directory.
        path: PathBuf,
    },
    /// The lock file could not be used.
    #[error("cannot lock {}: {source}", .path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The state file could not be read.
    #[error(transparent)]
    State(#[from] state::Error),
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the embedded backend keeps its state.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The state directory: `local-state.json`, the lock file and `logs/`.
    pub state_dir: PathBuf,
}

impl LocalConfig {
    /// A configuration with this state directory.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
        }
    }
}

/// A deployment to run, with the secrets its spec references.
#[derive(Debug, Clone)]
pub struct LocalDeployment {
    /// The loaded spec.
    pub deployment: Deployment,
    /// The values of every `secret:NAME` the spec references.
    pub secrets: ResolvedSecrets,
}

/// Runs replicas as child processes of this lull; see the crate docs.
///
/// [`Backend::set_desired`] returns as soon as the change is decided: replicas chosen to stop
/// have left the endpoint set by then, and starting, draining and stopping go on in the
/// background (a drain may take the whole grace period, which a scaling loop must not wait for).
/// [`LocalBackend::shutdown`] is the call that waits for every process to be gone.
pub struct LocalBackend {
    shared: Arc<Shared>,
}

/// What the backend's tasks share.
pub(crate) struct Shared {
    state_dir: PathBuf,
    logs_dir: PathBuf,
    state_path: PathBuf,
    boot_time: Option<u64>,
    limits: Limits,
    ports: Ports,
    load: RwLock<Option<Arc<dyn ReplicaLoad>>>,
    deployments: Mutex<BTreeMap<DeploymentKey, Arc<Supervisor>>>,
    /// Desired counts of the previous run, until the first [`LocalBackend::apply`].
    restored: Mutex<Option<BTreeMap<String, state::DeploymentState>>>,
    /// One writer of the state file at a time; each writes the state as it is then.
    persisting: tokio::sync::Mutex<()>,
    shutting_down: AtomicBool,
    /// Every replica task.
    pub tasks: TaskTracker,
    /// The last cpu reading of each ready replica, by deployment.
    pub cpu: Mutex<HashMap<DeploymentKey, HashMap<ReplicaId, CpuReading>>>,
    /// Held for the backend's life.
    _lock: File,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind these locks stays consistent between statements; a panic elsewhere must
    // not stop replicas from being stopped.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// Where replica logs go.
    pub fn logs_dir(&self) -> &Path {
        &self.logs_dir
    }

    /// How limits are enforced.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The ports leased to replicas.
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// The activators' view of in-flight requests, once set.
    pub fn replica_load(&self) -> Option<Arc<dyn ReplicaLoad>> {
        self.load
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether [`LocalBackend::shutdown`] has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// The supervisor of a deployment that is in the specs.
    pub fn supervisor(&self, key: &DeploymentKey) -> Option<Arc<Supervisor>> {
        lock(&self.deployments)
            .get(key)
            .filter(|s| !s.is_removed())
            .cloned()
    }

    /// Every supervisor, removed ones still stopping included.
    pub fn supervisors(&self) -> Vec<Arc<Supervisor>> {
        lock(&self.deployments).values().cloned().collect()
    }

    /// Drops a removed deployment once its last replica is gone.
    pub fn forget_if_finished(&self, supervisor: &Arc<Supervisor>) {
        let mut deployments = lock(&self.deployments);
        let same = deployments
            .get(&supervisor.key)
            .is_some_and(|s| Arc::ptr_eq(s, supervisor));
        if same && supervisor.is_finished() {
            deployments.remove(&supervisor.key);
        }
    }

    fn snapshot(&self) -> State {
        let mut state = State::new(self.boot_time);
        if let Some(restored) = lock(&self.restored).as_ref() {
            state.deployments.extend(restored.iter().map(|(slug, d)| {
                (
                    slug.clone(),
                    state::DeploymentState {
                        replicas: Vec::new(),
                        ..d.clone()
                    },
                )
            }));
        }
        for supervisor in self.supervisors() {
            state
                .deployments
                .insert(supervisor.key.to_string(), supervisor.snapshot());
        }
        state
    }

    /// Writes the state file as things are now.
    pub async fn persist(&self) {
        let _one_writer = self.persisting.lock().await;
        let snapshot = self.snapshot();
        let path = self.state_path.clone();
        match tokio::task::spawn_blocking(move || state::save(&path, &snapshot)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot persist lull's state"),
            Err(e) => tracing::error!(error = %e, "persisting lull's state failed"),
        }
    }
}

impl LocalBackend {
    /// Takes the state directory: creates it, locks it, reads the state an earlier lull left and
    /// stops every replica process it recorded, so nothing runs twice and nothing is orphaned.
    pub async fn start(config: LocalConfig) -> Result<Arc<Self>> {
        let state_dir = config.state_dir;
        let logs_dir = state_dir.join("logs");
        for dir in [&state_dir, &logs_dir] {
            std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
                path: dir.clone(),
                source,
            })?;
        }
        let lock_path = state_dir.join(LOCK_FILE);
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| Error::Lock {
                path: lock_path.clone(),
                source,
            })?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: state_dir.clone(),
                });
            }
            Err(TryLockError::Error(source)) => {
                return Err(Error::Lock {
                    path: lock_path,
                    source,
                });
            }
        }
        let state_path = state_dir.join(state::FILE_NAME);
        let previous = state::load(&state_path)?;
        let reaped = leftovers::reap(&previous).await;
        if reaped > 0 {
            tracing::info!(reaped, "stopped replicas left by an earlier lull");
        }
        let limits = tokio::task::spawn_blocking(Limits::detect)
            .await
            .unwrap_or_else(|_| Limits::rlimit_only());
        let shared = Arc::new(Shared {
            state_dir,
            logs_dir,
            state_path,
            boot_time: procfs::boot_time_secs().ok(),
            limits,
            ports: Ports::default(),
            load: RwLock::new(None),
            deployments: Mutex::new(BTreeMap::new()),
            restored: Mutex::new(Some(previous.deployments)),
            persisting: tokio::sync::Mutex::new(()),
            shutting_down: AtomicBool::new(false),
            tasks: TaskTracker::new(),
            cpu: Mutex::new(HashMap::new()),
            _lock: lock_file,
        });
        // The reaped processes leave the file now, not at the first change.
        shared.persist().await;
        Ok(Arc::new(Self { shared }))
    }

    /// Sets the deployments to run. New ones start with no replica (or as many as the previous
    /// run wanted, if they are enabled) until [`Backend::set_desired`]; ones that are gone are
    /// drained and stopped; changed ones are rolled over to the new spec by their rollout
    /// strategy; disabled ones go to zero. Call it within a Tokio runtime: it starts tasks.
    pub fn apply(&self, deployments: Vec<LocalDeployment>) {
        let restored = lock(&self.shared.restored).take().unwrap_or_default();
        let mut changed = Vec::new();
        {
            let mut map = lock(&self.shared.deployments);
            let mut listed = Vec::new();
            for LocalDeployment {
                deployment,
                secrets,
            } in deployments
            {
                let key = DeploymentKey::new(&deployment.slug);
                let template = Template::new(&deployment, &secrets);
                if let Err(e) = &template
                    && deployment.spec.enabled
                {
                    tracing::error!(deployment = %key, error = %e, "cannot run the deployment");
                }
                let supervisor = match map.get(&key) {
                    Some(supervisor) => {
                        supervisor.configure(&deployment.spec, template);
                        supervisor.clone()
                    }
                    None => {
                        let desired = restored
                            .get(&deployment.slug)
                            .filter(|_| deployment.spec.enabled)
                            .map_or(0, |d| d.desired);
                        let supervisor = Arc::new(Supervisor::new(
                            key.clone(),
                            &deployment.spec,
                            template,
                            desired,
                        ));
                        map.insert(key.clone(), supervisor.clone());
                        supervisor
                    }
                };
                listed.push(key);
                changed.push(supervisor);
            }
            for (key, supervisor) in map.iter() {
                if !listed.contains(key) && !supervisor.is_removed() {
                    supervisor.remove();
                    changed.push(supervisor.clone());
                }
            }
        }
        for supervisor in &changed {
            reconcile(&self.shared, supervisor);
            self.shared.forget_if_finished(supervisor);
        }
        let shared = self.shared.clone();
        tokio::spawn(async move { shared.persist().await });
    }

    /// Tells the backend how many requests the activators have in flight to each replica, so
    /// that it drains a replica before stopping it.
    pub fn set_replica_load(&self, load: Arc<dyn ReplicaLoad>) {
        *self
            .shared
            .load
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(load);
    }

    /// Drains and stops every replica in parallel and returns once all are gone; the desired
    /// counts stay persisted for the next start.
    pub async fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        for supervisor in self.shared.supervisors() {
            supervisor.stop_all();
        }
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
        self.shared.persist().await;
    }

    /// Where replica logs are written: `<state_dir>/logs/<slug>/<replica>.log`.
    pub fn logs_dir(&self) -> PathBuf {
        self.shared.logs_dir.clone()
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.shared.state_dir
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Backend for LocalBackend {
    fn set_desired<'a>(
        &'a self,
        key: &'a DeploymentKey,
        replicas: u32,
    ) -> BoxFuture<'a, lull_core::Result<()>> {
        Box::pin(async move {
            let supervisor = self
                .shared
                .supervisor(key)
                .ok_or_else(|| lull_core::Error::UnknownDeployment(key.clone()))?;
            // While shutting down, the counts of the running lull stay what the next one restores.
            if !self.shared.is_shutting_down() && supervisor.set_desired(replicas) {
                reconcile(&self.shared, &supervisor);
                self.shared.persist().await;
            }
            Ok(())
        })
    }

    fn endpoints(&self, key: &DeploymentKey) -> Option<watch::Receiver<EndpointSet>> {
        self.shared.supervisor(key).map(|s| s.subscribe())
    }

    fn status(&self, key: &DeploymentKey) -> Option<BackendStatus> {
        self.shared
            .supervisor(key)
            .map(|s| s.status(&self.shared.limits))
    }
}
