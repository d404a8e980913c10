//! Wakes: how the activator tells the autoscaler, at once, that a request waits at zero.
//!
//! [`wake_channel`] gives the activator's end, a [`ChannelWaker`] that never blocks, and the
//! autoscaler's end, a [`WakeReceiver`]. Wakes are deduplicated per deployment until the
//! autoscaler takes them, so a burst of cold requests costs one decision, and the channel holds
//! at most one entry per deployment.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use lull_core::{DeploymentKey, Wake};
use tokio::sync::Notify;

/// A channel for wakes: the [`ChannelWaker`] goes to the activator, the [`WakeReceiver`] to the
/// [`crate::Autoscaler`].
pub fn wake_channel() -> (ChannelWaker, WakeReceiver) {
    let shared = Arc::new(Shared::default());
    (
        ChannelWaker {
            shared: Arc::clone(&shared),
        },
        WakeReceiver { shared },
    )
}

#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<BTreeSet<DeploymentKey>>,
    notify: Notify,
}

impl Shared {
    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeSet<DeploymentKey>> {
        // The set stays consistent whatever a panicking holder did: every operation on it is a
        // single insert or take.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The activator's end of a [`wake_channel`]. Cheap to clone; [`Wake::wake`] never blocks.
#[derive(Debug, Clone)]
pub struct ChannelWaker {
    shared: Arc<Shared>,
}

impl Wake for ChannelWaker {
    fn wake(&self, key: &DeploymentKey) {
        let newly = self.shared.pending().insert(key.clone());
        if newly {
            self.shared.notify.notify_one();
        }
    }
}

/// The autoscaler's end of a [`wake_channel`].
#[derive(Debug)]
pub struct WakeReceiver {
    shared: Arc<Shared>,
}

impl WakeReceiver {
    /// Waits for wakes and takes every pending one, each deployment once. Cancel-safe: wakes
    /// that were not returned stay pending.
    pub async fn recv(&mut self) -> Vec<DeploymentKey> {
        loop {
            let keys = self.try_recv();
            if !keys.is_empty() {
                return keys;
            }
            self.shared.notify.notified().await;
        }
    }

    /// Takes every pending wake without waiting; empty when there is none.
    pub fn try_recv(&mut self) -> Vec<DeploymentKey> {
        std::mem::take(&mut *self.shared.pending())
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_are_deduplicated_until_taken() {
        let (waker, mut receiver) = wake_channel();
        let other = waker.clone();
        waker.wake(&DeploymentKey::new("a"));
        other.wake(&DeploymentKey::new("a"));
        waker.wake(&DeploymentKey::new("b"));
        assert_eq!(
            receiver.recv().await,
            vec![DeploymentKey::new("a"), DeploymentKey::new("b")]
        );
        assert!(receiver.try_recv().is_empty());
        waker.wake(&DeploymentKey::new("a"));
        assert_eq!(receiver.recv().await, vec![DeploymentKey::new("a")]);
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken() {
        let (waker, mut receiver) = wake_channel();
        let waiting = tokio::spawn(async move { receiver.recv().await });
        tokio::task::yield_now().await;
        waker.wake(&DeploymentKey::new("a"));
        let keys = waiting.await.expect("the receiver task does not panic");
        assert_eq!(keys, vec![DeploymentKey::new("a")]);
    }
}
