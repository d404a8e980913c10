//! Answers the activator makes itself: a JSON body with a machine-readable `error` code and a
//! `message` that says what is wrong and what to do.
//!
//! The status comes from the error's type, never from the call site (as in pingora): each
//! module's error implements [`ErrorResponse`], so one kind of failure always answers the same.

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde_json::{Map, Value};

use crate::body::ResponseBody;

/// An error that the activator answers with a JSON body.
pub(crate) trait ErrorResponse: std::error::Error {
    /// The HTTP status.
    fn status(&self) -> StatusCode;

    /// The `error` field: a stable, machine-readable code.
    fn code(&self) -> &'static str;

    /// Seconds after which a retry may succeed, sent as `Retry-After`.
    fn retry_after(&self) -> Option<u64> {
        None
    }

    /// Adds fields beside `error` and `message`.
    fn details(&self, _body: &mut Map<String, Value>) {}

    /// Adds headers the status calls for, such as `WWW-Authenticate` with a 401.
    fn headers(&self, _headers: &mut HeaderMap) {}
}

/// The response for `error`.
pub(crate) fn error_response(error: &dyn ErrorResponse) -> Response<ResponseBody> {
    let mut body = Map::new();
    body.insert("error".to_owned(), Value::from(error.code()));
    body.insert("message".to_owned(), Value::from(error.to_string()));
    error.details(&mut body);
    let text = Value::Object(body).to_string();
    let mut response = Response::new(ResponseBody::local(text.into()));
    *response.status_mut() = error.status();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // An error about a deployment's state must not be served from a cache once it is warm.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(secs) = error.retry_after() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    error.headers(headers);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[derive(Debug, thiserror::Error)]
    #[error("the queue is full")]
    struct Full;

    impl ErrorResponse for Full {
        fn status(&self) -> StatusCode {
            StatusCode::SERVICE_UNAVAILABLE
        }
        fn code(&self) -> &'static str {
            "queue_full"
        }
        fn retry_after(&self) -> Option<u64> {
            Some(5)
        }
        fn details(&self, body: &mut Map<String, Value>) {
            body.insert("capacity".to_owned(), Value::from(3));
        }
    }

    #[tokio::test]
    async fn errors_answer_json_with_their_status_and_retry_after() {
        let response = error_response(&Full);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("a local body cannot fail")
            .to_bytes();
        let body: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(
            body,
            serde_json::json!({"error": "queue_full", "message": "the queue is full", "capacity": 3})
        );
    }
}
