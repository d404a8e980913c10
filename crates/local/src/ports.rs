//! Ports for replicas: each replica gets a port on 127.0.0.1 that nothing listens on, in `$PORT`.
//!
//! A port is found by binding port 0 and reading what the kernel picked; the listener is dropped
//! before the replica binds the port itself. Ports handed out are leased until the replica's
//! process ends, so two replicas starting at once never get the same one. Another program could
//! still take a port in between; the replica then fails to bind, exits, and is restarted on a
//! new port.

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Arc, Mutex};

/// Tries at finding a port not leased already before giving up.
const ATTEMPTS: usize = 32;

/// Errors of finding a port.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No port could be bound.
    #[error("cannot pick a free port on 127.0.0.1: {0}")]
    Bind(#[source] io::Error),
    /// Every port the kernel offered is leased to another replica.
    #[error(
        "cannot pick a free port on 127.0.0.1: every port offered is already given to a replica"
    )]
    Exhausted,
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A port on 127.0.0.1 that nothing listens on now.
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(Error::Bind)?;
    Ok(listener.local_addr().map_err(Error::Bind)?.port())
}

/// The ports leased to replicas.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ports(Arc<Mutex<HashSet<u16>>>);

/// A port leased to one run of a replica; dropping it gives the port back.
#[derive(Debug)]
pub(crate) struct Lease {
    port: u16,
    ports: Ports,
}

impl Ports {
    fn leased(&self) -> std::sync::MutexGuard<'_, HashSet<u16>> {
        // A set of numbers cannot be left inconsistent by a panic.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Leases a free port no other replica holds.
    pub fn lease(&self) -> Result<Lease> {
        for _ in 0..ATTEMPTS {
            let port = free_port()?;
            if self.leased().insert(port) {
                return Ok(Lease {
                    port,
                    ports: self.clone(),
                });
            }
        }
        Err(Error::Exhausted)
    }
}

impl Lease {
    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.ports.leased().remove(&self.port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leased_ports_are_distinct_until_given_back() {
        let ports = Ports::default();
        let leases: Vec<Lease> = (0..20).map(|_| ports.lease().expect("a port")).collect();
        let distinct: HashSet<u16> = leases.iter().map(Lease::port).collect();
        assert_eq!(distinct.len(), 20);
        drop(leases);
        assert!(ports.leased().is_empty());
    }
}
