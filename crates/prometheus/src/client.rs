//! The HTTP client for the Prometheus API: TLS, credentials and time limits.
//!
//! TLS is rustls with the ring crypto provider, the one provider in lull's build (the Kubernetes
//! client uses it too); [`install_crypto_provider`] makes it the process default. The credential
//! arrives resolved from a `secret:` reference and goes into a header marked sensitive, so it
//! never shows in logs or `Debug` output.

use std::time::Duration;

use base64::Engine as _;
use lull_spec::secret::Secret;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

/// Errors of building the client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is not an http(s) URL.
    #[error("`{url}` is not a Prometheus URL: {message}; use one such as http://prometheus:9090")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// The CA bundle holds no usable certificate.
    #[error("the CA bundle for Prometheus is not PEM certificates")]
    Ca {
        /// The parser's error.
        #[source]
        source: reqwest::Error,
    },
    /// The credential cannot be sent in an HTTP header.
    #[error("the Prometheus credential has characters an HTTP header cannot carry (a line break?)")]
    Credential,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client for Prometheus")]
    Build {
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How lull proves who it is to Prometheus (or the proxy in front of it).
#[derive(Clone, Default)]
pub enum Auth {
    /// No credential.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// `Authorization: Basic`, user and password.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: Secret,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Auth::Basic { user, .. } => write!(f, "Basic({user}:<redacted>)"),
        }
    }
}

/// Where Prometheus is and how to reach it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Base URL: `http://prometheus:9090`, or a path prefix behind a proxy.
    pub url: String,
    /// Credential.
    pub auth: Auth,
    /// Extra CA certificates (PEM) trusted for an `https` URL, beside the system's.
    pub ca_pem: Option<Vec<u8>>,
}

impl Endpoint {
    /// Prometheus at `url`, without a credential.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            auth: Auth::None,
            ca_pem: None,
        }
    }
}

/// Makes rustls' ring provider the process default, once; a provider installed earlier stays.
pub fn install_crypto_provider() {
    // Err means a provider is installed already, which is what is needed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client for the API at `endpoint`, giving up on a request after `timeout`.
pub(crate) fn build(
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<prometheus_http_query::Client> {
    install_crypto_provider();
    let parsed = reqwest::Url::parse(&endpoint.url).map_err(|e| Error::Url {
        url: endpoint.url.clone(),
        message: e.to_string(),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::Url {
            url: endpoint.url.clone(),
            message: format!("the scheme is `{}`", parsed.scheme()),
        });
    }
    let mut headers = HeaderMap::new();
    if let Some(value) = authorization(&endpoint.auth) {
        let mut value = HeaderValue::from_str(&value).map_err(|_| Error::Credential)?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    let mut builder = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(timeout)
        .connect_timeout(timeout);
    if let Some(pem) = &endpoint.ca_pem {
        let certs =
            reqwest::Certificate::from_pem_bundle(pem).map_err(|source| Error::Ca { source })?;
        builder = builder.tls_certs_merge(certs);
    }
    let client = builder.build().map_err(|source| Error::Build { source })?;
    prometheus_http_query::Client::from(client, &endpoint.url).map_err(|e| Error::Url {
        url: endpoint.url.clone(),
        message: e.to_string(),
    })
}

/// The `Authorization` header value of a credential.
fn authorization(auth: &Auth) -> Option<String> {
    match auth {
        Auth::None => None,
        Auth::Bearer(token) => Some(format!("Bearer {}", token.expose())),
        Auth::Basic { user, password } => {
            let pair = format!("{user}:{}", password.expose());
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_become_authorization_headers() {
        assert_eq!(authorization(&Auth::None), None);
        assert_eq!(
            authorization(&Auth::Bearer(Secret::new("t0k"))).as_deref(),
            Some("Bearer t0k")
        );
        // RFC 7617's example.
        let basic = Auth::Basic {
            user: "Aladdin".to_owned(),
            password: Secret::new("open sesame"),
        };
        assert_eq!(
            authorization(&basic).as_deref(),
            Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
        );
        assert_eq!(format!("{basic:?}"), "Basic(Aladdin:<redacted>)");
    }

    #[test]
    fn only_http_urls_are_accepted() {
        let timeout = Duration::from_secs(1);
        build(&Endpoint::new("http://127.0.0.1:9090"), timeout)
            .map(drop)
            .expect("http");
        build(&Endpoint::new("https://prometheus.example/prom"), timeout)
            .map(drop)
            .expect("https");
        for url in ["prometheus:9090", "ftp://x", "not a url"] {
            let e = build(&Endpoint::new(url), timeout)
                .map(drop)
                .expect_err("not http");
            assert!(e.to_string().contains(url), "{e}");
        }
        let mut bad_ca = Endpoint::new("https://x");
        bad_ca.ca_pem =
            Some(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".to_vec());
        assert!(matches!(build(&bad_ca, timeout), Err(Error::Ca { .. })));
        let mut newline = Endpoint::new("http://x");
        newline.auth = Auth::Bearer(Secret::new("a\nb"));
        assert!(matches!(build(&newline, timeout), Err(Error::Credential)));
    }
}
