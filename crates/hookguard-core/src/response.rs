//! The HTTP answers every adapter gives, built once here so tower and actix answer the same.
//!
//! ```
//! use hookguard_core::{response, Rejection};
//! assert_eq!(response::accepted().body().as_ref(), br#"{"status":"accepted"}"#);
//! let forged = response::rejection(&Rejection::SignatureMismatch);
//! assert_eq!(forged.status(), 401);
//! assert!(std::str::from_utf8(forged.body()).unwrap().contains("signature_mismatch"));
//! ```

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::Rejection;

fn json(status: StatusCode, body: Bytes) -> Response<Bytes> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The answer to a rejection: its status, `{"error":code,"message":…}`, and `Retry-After`
/// when the sender should come back.
///
/// ```
/// let r = hookguard_core::response::rejection(&hookguard_core::Rejection::DuplicateInFlight);
/// assert_eq!(r.status(), 429);
/// assert_eq!(r.headers()["retry-after"], "5");
/// ```
pub fn rejection(r: &Rejection) -> Response<Bytes> {
    let mut resp = json(r.status(), r.json_body());
    if let Some(after) = r.retry_after() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(after.as_secs()));
    }
    resp
}

/// `405 method_not_allowed` naming the methods the route takes in `Allow` (RFC 9110): the
/// middleware's and the standalone extractors' answer alike.
///
/// ```
/// use http::HeaderValue;
/// let r = hookguard_core::response::method_not_allowed(HeaderValue::from_static("GET, POST"));
/// assert_eq!(r.status(), 405);
/// assert_eq!(r.headers()["allow"], "GET, POST");
/// ```
pub fn method_not_allowed(allow: HeaderValue) -> Response<Bytes> {
    let mut resp = rejection(&Rejection::MethodNotAllowed);
    resp.headers_mut().insert(header::ALLOW, allow);
    resp
}

/// Which of the receiver's own `2xx` answers a response is, in its extensions: what a layer
/// outside the receiver reads (a log, an inspector) even when the body says nothing (an
/// [`emptied`] acknowledgement).
///
/// ```
/// use hookguard_core::response::{accepted, emptied, Acknowledgement};
/// let r = emptied(accepted());
/// assert_eq!(r.extensions().get::<Acknowledgement>(), Some(&Acknowledgement::Accepted));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Acknowledgement {
    /// Stored in the inbox ([`accepted`]).
    Accepted,
    /// A copy of a handled or stored delivery ([`duplicate`]).
    Duplicate,
    /// Filtered out by configuration ([`ignored`]).
    Ignored,
}

impl Acknowledgement {
    /// The word the answer's body carries: `accepted`, `duplicate` or `ignored`.
    ///
    /// ```
    /// assert_eq!(hookguard_core::response::Acknowledgement::Duplicate.as_str(), "duplicate");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
        }
    }
}

fn acknowledgement(kind: Acknowledgement, body: &'static [u8]) -> Response<Bytes> {
    let mut r = json(StatusCode::OK, Bytes::from_static(body));
    r.extensions_mut().insert(kind);
    r
}

/// `200 {"status":"duplicate"}`: a copy of a delivery that was already handled.
///
/// ```
/// assert_eq!(hookguard_core::response::duplicate().status(), 200);
/// ```
pub fn duplicate() -> Response<Bytes> {
    acknowledgement(Acknowledgement::Duplicate, br#"{"status":"duplicate"}"#)
}

/// `200 {"status":"accepted"}`: the delivery is durably stored in the inbox and will be
/// handled by the worker. 200, not 202: Procore documents 200/204, HCSS 200.
///
/// ```
/// assert_eq!(hookguard_core::response::accepted().status(), 200);
/// ```
pub fn accepted() -> Response<Bytes> {
    acknowledgement(Acknowledgement::Accepted, br#"{"status":"accepted"}"#)
}

/// The same acknowledgement without its body: an empty `200` (no `Content-Type`), for a sender
/// that reads a `2xx` body as an answer of its own ([`Scheme::acknowledges_empty`](crate::Scheme::acknowledges_empty): Slack).
///
/// ```
/// let r = hookguard_core::response::emptied(hookguard_core::response::accepted());
/// assert_eq!(r.status(), 200);
/// assert!(r.body().is_empty());
/// assert!(r.headers().get("content-type").is_none());
/// ```
pub fn emptied(mut r: Response<Bytes>) -> Response<Bytes> {
    *r.body_mut() = Bytes::new();
    r.headers_mut().remove(header::CONTENT_TYPE);
    r
}

/// `200 {"status":"ignored"}`: a genuine delivery filtered out by configuration (loop filter).
///
/// ```
/// assert_eq!(hookguard_core::response::ignored().status(), 200);
/// ```
pub fn ignored() -> Response<Bytes> {
    acknowledgement(Acknowledgement::Ignored, br#"{"status":"ignored"}"#)
}

/// `500 {"error":code,"message":message}` + `Retry-After: 60`: a wiring mistake in the
/// application (an extractor used without its middleware), in the same shape as every
/// rejection, logged at `error`. Retryable like every fault of the receiver's own: the
/// sender's retry gets through once the wiring is fixed.
///
/// ```
/// let r = hookguard_core::response::misconfigured("missing_webhook_layer", "add the layer");
/// assert_eq!(r.status(), 500);
/// assert_eq!(r.headers()["retry-after"], "60");
/// ```
pub fn misconfigured(code: &'static str, message: &'static str) -> Response<Bytes> {
    tracing::error!(code, "{message}");
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    let mut r = json(StatusCode::INTERNAL_SERVER_ERROR, Bytes::from(body));
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(60u64));
    r
}
