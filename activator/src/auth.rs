//! `basicAuthKey`: a protected deployment answers only requests that carry its key, as the
//! password of HTTP Basic (any user name) or as `Authorization: Bearer <key>`. The key is
//! compared in constant time; the header that carried it is not forwarded to the replica.
//! `isExternal: true` serves the deployment without this check (another gateway owns auth).
//!
//! Checked right after routing, before rate limits and parking: a request without the key
//! never wakes a deployment nor takes a place in its queue.

use std::borrow::Cow;
use std::task::{Context, Poll};

use base64::Engine;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use lull_core::DeploymentKey;
use lull_spec::secret::Secret;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;
use tower::{Layer, Service};

use crate::admit::Admit;
use crate::body::ResponseBody;
use crate::proxy::{self, Call};
use crate::response::ErrorResponse;

/// Errors of auth.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The request carries no key.
    #[error(
        "deployment `{key}` needs its key: send `Authorization: Bearer <key>`, or HTTP Basic with the key as the password"
    )]
    Missing {
        /// The deployment.
        key: DeploymentKey,
    },
    /// The request carries a key that is not the deployment's.
    #[error("the key sent is not deployment `{key}`'s")]
    Wrong {
        /// The deployment.
        key: DeploymentKey,
    },
    /// The deployment's key is a secret this activator could not read.
    #[error(
        "deployment `{key}` is protected by a key this activator cannot read; check the secret `{secret}`"
    )]
    Unavailable {
        /// The deployment.
        key: DeploymentKey,
        /// The secret's name.
        secret: String,
    },
}

impl ErrorResponse for Error {
    fn status(&self) -> StatusCode {
        match self {
            Error::Missing { .. } | Error::Wrong { .. } => StatusCode::UNAUTHORIZED,
            Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Error::Missing { .. } | Error::Wrong { .. } => "unauthorized",
            Error::Unavailable { .. } => "auth_unavailable",
        }
    }

    fn details(&self, body: &mut Map<String, Value>) {
        let (Error::Missing { key } | Error::Wrong { key } | Error::Unavailable { key, .. }) = self;
        body.insert("deployment".to_owned(), Value::from(key.as_str()));
    }

    fn headers(&self, headers: &mut HeaderMap) {
        if self.status() == StatusCode::UNAUTHORIZED {
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="lull", charset="UTF-8""#),
            );
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="lull""#),
            );
        }
    }
}

/// Who may call one deployment.
pub(crate) enum Guard {
    /// Anyone.
    Open,
    /// Holders of this key.
    Key(Secret),
    /// Nobody: the key is a secret that could not be read. Failing closed keeps a protected
    /// deployment protected when its secret store is down.
    Unavailable(String),
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Guard::Open => f.write_str("Open"),
            Guard::Key(_) => f.write_str("Key(<redacted>)"),
            Guard::Unavailable(secret) => write!(f, "Unavailable({secret})"),
        }
    }
}

impl Guard {
    /// Whether `headers` may pass; `Ok(true)` when they carried the key (and so the header
    /// is to be dropped before forwarding).
    pub fn check(&self, key: &DeploymentKey, headers: &HeaderMap) -> Result<bool, Error> {
        self.check_authorization(
            key,
            headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
        )
    }

    /// [`Guard::check`] on the raw `Authorization` value, for callers that hold no header map.
    pub fn check_authorization(
        &self,
        key: &DeploymentKey,
        authorization: Option<&[u8]>,
    ) -> Result<bool, Error> {
        let expected = match self {
            Guard::Open => return Ok(false),
            Guard::Key(secret) => secret.expose().as_bytes(),
            Guard::Unavailable(secret) => {
                return Err(Error::Unavailable {
                    key: key.clone(),
                    secret: secret.clone(),
                });
            }
        };
        let presented = authorization
            .and_then(presented_key)
            .ok_or_else(|| Error::Missing { key: key.clone() })?;
        // The length of the key is not hidden (`ct_eq` returns early on a length mismatch);
        // its content is.
        if bool::from(expected.ct_eq(&presented)) {
            Ok(true)
        } else {
            Err(Error::Wrong { key: key.clone() })
        }
    }
}

/// The key in an `Authorization` value: a Bearer token, or the password of Basic credentials.
fn presented_key(value: &[u8]) -> Option<Cow<'_, [u8]>> {
    let (scheme, rest) = split_scheme(value)?;
    if scheme.eq_ignore_ascii_case(b"bearer") {
        return Some(Cow::Borrowed(rest));
    }
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest)
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some(Cow::Owned(decoded[colon + 1..].to_vec()))
}

fn split_scheme(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = value.iter().position(|&b| b == b' ')?;
    let rest = value[space..].trim_ascii();
    Some((&value[..space], rest))
}

/// Checks each request against its deployment's [`Guard`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AuthLayer;

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth { inner }
    }
}

/// The service of [`AuthLayer`].
#[derive(Debug, Clone)]
pub(crate) struct Auth<S> {
    inner: S,
}

impl<S> Service<Call> for Auth<S>
where
    S: Service<Call, Response = Response<ResponseBody>, Error = proxy::Error>,
{
    type Response = Response<ResponseBody>;
    type Error = proxy::Error;
    type Future = Admit<S::Future, proxy::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), proxy::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut call: Call) -> Self::Future {
        // A disabled deployment serves nothing and its secrets need not be set, so its clear
        // 503 "disabled" comes before any key is asked for.
        if !call.target.enabled {
            return Admit::admitted(self.inner.call(call));
        }
        match call
            .target
            .auth
            .check(&call.target.key, &call.parts.headers)
        {
            Ok(carried_key) => {
                if carried_key {
                    call.parts.headers.remove(header::AUTHORIZATION);
                }
                Admit::admitted(self.inner.call(call))
            }
            Err(error) => Admit::rejected(proxy::Error::unauthorized(error, &mut call)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(value).expect("header"),
            );
        }
        headers
    }

    fn basic(user_pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    }

    #[test]
    fn the_key_passes_as_bearer_or_basic_password_and_nothing_else_does() {
        let key = DeploymentKey::new("m");
        let guard = Guard::Key(Secret::new("s3cret:x"));
        for ok in [
            "Bearer s3cret:x".to_owned(),
            "bearer   s3cret:x ".to_owned(),
            basic("anyone:s3cret:x"),
            basic(":s3cret:x"),
        ] {
            assert!(
                matches!(guard.check(&key, &headers(Some(&ok))), Ok(true)),
                "{ok}"
            );
        }
        assert!(matches!(
            guard.check(&key, &headers(None)),
            Err(Error::Missing { .. })
        ));
        for wrong in [
            "Bearer s3cret".to_owned(),
            "Bearer s3cret:xx".to_owned(),
            basic("s3cret:x"),
            "Token s3cret:x".to_owned(),
            "Basic !!!".to_owned(),
        ] {
            let result = guard.check(&key, &headers(Some(&wrong)));
            assert!(result.is_err(), "{wrong}");
            assert_eq!(
                result.expect_err("rejected").status(),
                StatusCode::UNAUTHORIZED
            );
        }
        assert!(matches!(Guard::Open.check(&key, &headers(None)), Ok(false)));
        let closed = Guard::Unavailable("apiKey".to_owned());
        let error = closed
            .check(&key, &headers(Some("Bearer s3cret:x")))
            .expect_err("fails closed");
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(format!("{:?}", Guard::Key(Secret::new("s3cret:x"))).contains("redacted"));
    }

    #[test]
    fn a_401_names_both_schemes() {
        let mut headers = HeaderMap::new();
        Error::Missing {
            key: DeploymentKey::new("m"),
        }
        .headers(&mut headers);
        let challenges: Vec<_> = headers.get_all(header::WWW_AUTHENTICATE).iter().collect();
        assert_eq!(challenges.len(), 2);
        assert!(challenges[0].to_str().expect("ascii").starts_with("Basic "));
    }
}
