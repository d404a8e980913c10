//! Sticky sessions (`loadBalancing.stickySessions`): a cookie names the replica a client was
//! sent to, and the client's next requests go there while it is ready, healthy and below its
//! concurrency limit; otherwise the policy chooses and the cookie is set anew.
//!
//! The cookie's value is a hash of the replica id, not the id: it is the same on every
//! activator (so sessions survive an activator restart and work behind several of them) and
//! does not show replica names to clients.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};

use super::Replica;

/// A deployment's affinity cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sticky {
    /// `stickySessions.cookieName`.
    pub cookie: Box<str>,
    /// `stickySessions.ttl` in seconds, sent as `Max-Age`.
    pub max_age: u64,
}

impl Sticky {
    /// The replica token the request's cookie carries, if any.
    pub fn affinity(&self, headers: &HeaderMap) -> Option<u64> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                (name == &*self.cookie).then(|| u64::from_str_radix(value.trim(), 16).ok())?
            })
    }

    /// The `Set-Cookie` that sends the client back to `replica`.
    pub fn set_cookie(&self, replica: &Replica) -> Option<HeaderValue> {
        let value = format!(
            "{}={:016x}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
            self.cookie, replica.token, self.max_age
        );
        HeaderValue::from_str(&value).ok()
    }
}

/// The token of replica `id`: FNV-1a, stable across processes and versions.
pub(super) fn token(id: &lull_core::ReplicaId) -> u64 {
    id.as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

/// The member whose token is `token`.
pub(super) fn find(replicas: &[Arc<Replica>], token: u64) -> Option<usize> {
    replicas.iter().position(|r| r.token == token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lull_core::ReplicaId;

    #[test]
    fn the_cookie_names_a_replica_and_is_read_back() {
        let sticky = Sticky {
            cookie: "lull-affinity".into(),
            max_age: 3600,
        };
        let replica = Replica::new(
            ReplicaId::new("m-2"),
            "127.0.0.1:9".parse().expect("addr"),
            1,
        );
        let set = sticky.set_cookie(&replica).expect("a valid header");
        let text = set.to_str().expect("ascii");
        assert!(
            text.ends_with("; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax"),
            "{text}"
        );
        let pair = text.split(';').next().expect("name=value");

        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("theme=dark; {pair}; x=1")).expect("header"),
        );
        assert_eq!(sticky.affinity(&headers), Some(replica.token));
        assert_eq!(token(&ReplicaId::new("m-2")), replica.token);
        assert_ne!(token(&ReplicaId::new("m-3")), replica.token);

        headers.insert(header::COOKIE, HeaderValue::from_static("lull-affinity=zz"));
        assert_eq!(sticky.affinity(&headers), None);
    }
}
