//! A Kubernetes API server stand-in for tests: a [`kube::Client`] over a `tower_test` mock
//! whose requests the test takes one by one, checks (method, path, query, body) and answers.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use kube::Client;
use kube::client::Body;
use serde::Serialize;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle, SendResponse};

type Error = Box<dyn std::error::Error + Send + Sync>;
type TestBody = BoxBody<Bytes, Error>;

/// Longest a test waits for the code under test to send its next request; only reached when
/// the code never sends it, which fails the test.
const PATIENCE: Duration = Duration::from_secs(30);

/// The server side of a mock client.
pub(crate) struct Mock {
    handle: tokio::sync::Mutex<Handle<Request<Body>, Response<TestBody>>>,
}

/// One request the code under test sent.
pub(crate) struct Call {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The query, `""` when there is none.
    pub query: String,
    /// The body as JSON, `Value::Null` when empty.
    pub body: Value,
    responder: SendResponse<Response<TestBody>>,
}

impl Mock {
    /// A mock server and a client whose requests it receives.
    pub fn new() -> (Self, Client) {
        let (service, handle) = mock::pair::<Request<Body>, Response<TestBody>>();
        let client = Client::new(service, "default");
        (
            Self {
                handle: tokio::sync::Mutex::new(handle),
            },
            client,
        )
    }

    /// The next request, which must have this method and path.
    pub async fn expect(&self, method: &str, path: &str) -> Call {
        let call = self.next().await;
        assert_eq!(
            (call.method.as_str(), call.path.as_str()),
            (method, path),
            "unexpected request (query {:?}, body {})",
            call.query,
            call.body
        );
        call
    }

    /// The next request, whatever it is.
    pub async fn next(&self) -> Call {
        let mut handle = self.handle.lock().await;
        let (request, responder) = tokio::time::timeout(PATIENCE, handle.next_request())
            .await
            .expect("the code under test sent no further request")
            .expect("the client is gone");
        let (parts, body) = request.into_parts();
        let bytes = body
            .collect()
            .await
            .expect("the request body reads")
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("the request body is JSON")
        };
        Call {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            body,
            responder,
        }
    }

    /// Asserts that no request is waiting.
    pub async fn assert_idle(&self) {
        let mut handle = self.handle.lock().await;
        tokio::task::yield_now().await;
        let pending = futures::FutureExt::now_or_never(handle.next_request());
        if let Some(Some((request, _))) = pending {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }
}

impl Call {
    /// Answers 200 with this JSON.
    pub fn respond(self, body: impl Serialize) {
        self.respond_with(StatusCode::OK, body);
    }

    /// Answers with this status and JSON.
    pub fn respond_with(self, status: StatusCode, body: impl Serialize) {
        let bytes = serde_json::to_vec(&body).expect("the answer serialises");
        let body = Full::new(Bytes::from(bytes)).map_err(Error::from).boxed();
        let response = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(body)
            .expect("a valid response");
        self.responder.send_response(response);
    }

    /// Answers with the API's error Status of this code and reason (`NotFound`, `Conflict`).
    pub fn fail(self, code: u16, reason: &str) {
        let status = StatusCode::from_u16(code).expect("a valid status code");
        self.respond_with(
            status,
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": format!("{reason} (mock)"),
                "reason": reason, "code": code,
            }),
        );
    }

    /// Answers 200 with a body that stays open; each line sent is one watch event.
    pub fn respond_stream(self) -> tokio::sync::mpsc::Sender<Bytes> {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(16);
        let frames = futures::stream::unfold(receiver, |mut receiver| async move {
            let chunk = receiver.recv().await?;
            Some((Ok::<_, Error>(http_body::Frame::data(chunk)), receiver))
        });
        let body = http_body_util::StreamBody::new(frames).boxed();
        let response = Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(body)
            .expect("a valid response");
        self.responder.send_response(response);
        sender
    }
}

/// One line of a watch stream.
pub(crate) fn watch_event(kind: &str, object: &impl Serialize) -> Bytes {
    let mut line = serde_json::to_vec(&json!({ "type": kind, "object": object }))
        .expect("the event serialises");
    line.push(b'\n');
    Bytes::from(line)
}
