//! The extractor protocol every adapter shares: why an extractor could not produce a verified
//! delivery ([`Refusal`], with the one answer for each case), reading the typed envelope of a
//! delivery the middleware verified ([`typed`]), and the whole standalone sequence — precheck,
//! bounded and timed body read, verify, verdict — for extractors used without the middleware
//! ([`verify_standalone`]). Adapters wrap [`Refusal`] in their framework's rejection type and
//! supply only the body read.
//!
//! ```
//! use hookguard_core::extract::{delivery, Refusal};
//! use hookguard_core::{schemes::GitHub, testing};
//! // An extractor finds the delivery the middleware verified, or says why it cannot.
//! let d = testing::deliver(GitHub::new(), "s", br#"{"zen":"x"}"#).unwrap();
//! assert_eq!(delivery(Some(&d)).unwrap().body().as_ref(), br#"{"zen":"x"}"#);
//! let refused = delivery(None).unwrap_err();
//! assert!(matches!(refused, Refusal::MissingMiddleware));
//! assert_eq!(refused.status(), 500); // our own mistake: never a permanent 4xx
//! ```

use std::fmt;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde::de::DeserializeOwned;

use crate::{ChallengeAnswer, Delivery, Precheck, Rejection, RequestHead, Verdict, Verifier};

const MISSING_MIDDLEWARE: &str =
    "Verified<T> needs the hookguard middleware (tower WebhookLayer, actix Webhook) on this route";
const MISSING_VERIFIER: &str = "VerifiedNoDedupe<T> needs a hookguard Verifier in the router state or app data";
const BODY_TAKEN: &str =
    "VerifiedNoDedupe<T> found the body already taken by an extractor before it: make it the handler's only body extractor";

/// Why an extractor could not produce a verified delivery, and the answer each case gets —
/// the same status, stable code and JSON body as the middleware, on every framework.
///
/// ```
/// use hookguard_core::{extract::Refusal, Rejection};
/// let r = Refusal::Rejected(Rejection::SignatureMismatch);
/// assert_eq!(r.status(), 401);
/// assert_eq!(Refusal::MissingMiddleware.response().status(), 500);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Refusal {
    /// Rejected: forged, malformed, too large, … or (after verification) not the type asked for.
    Rejected(Rejection),
    /// A genuine challenge: answered with the echo, not a handler call.
    Challenge(ChallengeAnswer),
    /// A genuine delivery the configuration filters out (your own Procore application's
    /// change): answered `200 {"status":"ignored"}`, not a handler call.
    Ignored,
    /// An extractor that needs the middleware was used on a route without it: `500
    /// missing_webhook_layer` (a wiring mistake, logged).
    MissingMiddleware,
    /// The standalone extractor found no [`Verifier`] in the application's state: `500
    /// missing_verifier`.
    MissingVerifier,
    /// The standalone extractor found the request's body already taken by an extractor
    /// listed before it (actix runs a handler's extractors in order): `500 body_already_taken`
    /// — never a verdict on an empty body, which would answer a genuine delivery with a
    /// permanent `401`.
    BodyTaken,
    /// A method the route does not take: `405 method_not_allowed` with the `Allow` header
    /// (the methods given), as the middleware answers.
    NotAllowed(http::HeaderValue),
}

impl Refusal {
    /// The status of the answer.
    ///
    /// ```
    /// use hookguard_core::{extract::Refusal, Rejection};
    /// assert_eq!(Refusal::Rejected(Rejection::SignatureMismatch).status(), 401);
    /// assert_eq!(Refusal::Ignored.status(), 200); // genuine, filtered out: not retried
    /// assert_eq!(Refusal::MissingVerifier.status(), 500);
    /// ```
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Rejected(r) => r.status(),
            Refusal::NotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::Challenge(_) | Refusal::Ignored => StatusCode::OK,
            Refusal::MissingMiddleware | Refusal::MissingVerifier | Refusal::BodyTaken => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The whole answer.
    ///
    /// ```
    /// use hookguard_core::extract::Refusal;
    /// let r = Refusal::NotAllowed(http::HeaderValue::from_static("POST")).response();
    /// assert_eq!(r.status(), 405);
    /// assert_eq!(r.headers()["allow"], "POST");
    /// let ignored = Refusal::Ignored.response();
    /// assert_eq!(ignored.body().as_ref(), br#"{"status":"ignored"}"#);
    /// ```
    pub fn response(&self) -> http::Response<Bytes> {
        match self {
            Refusal::Rejected(r) => crate::response::rejection(r),
            Refusal::NotAllowed(allow) => crate::response::method_not_allowed(allow.clone()),
            Refusal::Challenge(a) => a.clone().into_response(),
            Refusal::Ignored => crate::response::ignored(),
            Refusal::MissingMiddleware => crate::response::misconfigured("missing_webhook_layer", MISSING_MIDDLEWARE),
            Refusal::MissingVerifier => crate::response::misconfigured("missing_verifier", MISSING_VERIFIER),
            Refusal::BodyTaken => crate::response::misconfigured("body_already_taken", BODY_TAKEN),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Rejected(r) => r.fmt(f),
            Refusal::NotAllowed(_) => Rejection::MethodNotAllowed.fmt(f),
            Refusal::Challenge(_) => f.write_str("challenge answered"),
            Refusal::Ignored => f.write_str("delivery ignored by configuration"),
            Refusal::MissingMiddleware => f.write_str(MISSING_MIDDLEWARE),
            Refusal::MissingVerifier => f.write_str(MISSING_VERIFIER),
            Refusal::BodyTaken => f.write_str(BODY_TAKEN),
        }
    }
}

impl std::error::Error for Refusal {}

impl From<Rejection> for Refusal {
    fn from(r: Rejection) -> Self {
        Refusal::Rejected(r)
    }
}

/// The typed envelope of the delivery the middleware put in the request (`None`: no middleware).
///
/// ```
/// use hookguard_core::{extract::{typed, Refusal}, schemes::GitHub, testing};
/// let d = testing::deliver(GitHub::new(), "s", br#"{"zen":"x"}"#).unwrap();
/// let v: serde_json::Value = typed(Some(&d)).unwrap();
/// assert_eq!(v["zen"], "x");
/// assert!(matches!(typed::<serde_json::Value>(None), Err(Refusal::MissingMiddleware)));
/// ```
///
/// # Errors
/// [`Refusal::MissingMiddleware`], or a retryable `unexpected_payload` when the body is not `T`.
pub fn typed<T: DeserializeOwned>(delivery: Option<&Delivery>) -> Result<T, Refusal> {
    let d = delivery.ok_or_else(|| {
        tracing::error!("{MISSING_MIDDLEWARE}");
        Refusal::MissingMiddleware
    })?;
    d.json().map_err(Refusal::Rejected)
}

/// The delivery the middleware put in the request (`None`: no middleware).
///
/// # Errors
/// [`Refusal::MissingMiddleware`].
///
/// ```
/// use hookguard_core::{extract::{delivery, Refusal}, schemes::BuildWorkPro, testing};
/// let d = testing::deliver(BuildWorkPro::new(), "whsec_k", br#"{"id":"evt_1","type":"bid.accepted"}"#).unwrap();
/// assert_eq!(delivery(Some(&d)).unwrap().event_id(), Some("evt_1"));
/// // No middleware put a delivery in the request: a wiring mistake, answered 500.
/// assert!(matches!(delivery(None), Err(Refusal::MissingMiddleware)));
/// ```
pub fn delivery(delivery: Option<&Delivery>) -> Result<Delivery, Refusal> {
    delivery.cloned().ok_or_else(|| {
        tracing::error!("{MISSING_MIDDLEWARE}");
        Refusal::MissingMiddleware
    })
}

/// The standalone sequence for extractors used without the middleware: precheck (answers a
/// challenge, refuses the method, an oversized declared length or a wrong shared credential),
/// then `read(limit, timeout)` the body — the adapter reads at most `limit` bytes and answers
/// [`Rejection::BodyReadTimeout`] when the whole body has not arrived within `timeout` (it owns
/// the runtime's timer; the core has none) — then verify and parse into `T`. It does **not** de-duplicate: only the middleware sees the handler's
/// answer and can complete a claim.
///
/// ```
/// use hookguard_core::{extract::{verify_standalone, Refusal}, schemes::Hcss, Verifier, RequestHead};
/// use hookguard_core::testing::block_on;
/// let v = Verifier::builder(Hcss::new()).secret("tok").build().unwrap();
/// let (m, h) = (http::Method::GET, http::HeaderMap::new());
/// let u = http::Uri::from_static("/h?challenge=abc");
/// let r = block_on(verify_standalone::<serde_json::Value, _, _>(&v, &RequestHead::new(&m, &u, &h), |_limit, _timeout| async {
///     Ok(bytes::Bytes::new())
/// }));
/// assert!(matches!(r, Err(Refusal::Challenge(_))));
/// ```
///
/// # Errors
/// The [`Refusal`] to answer with.
pub async fn verify_standalone<T, F, Fut>(verifier: &Verifier, head: &RequestHead<'_>, read: F) -> Result<T, Refusal>
where
    T: DeserializeOwned,
    F: FnOnce(usize, Duration) -> Fut,
    Fut: Future<Output = Result<Bytes, Rejection>>,
{
    let limit = match verifier.precheck(head) {
        Ok(Precheck::ReadBody { limit }) => limit,
        Ok(Precheck::Challenge(a)) => return Err(Refusal::Challenge(a)),
        Err(Rejection::MethodNotAllowed) => return Err(Refusal::NotAllowed(verifier.allowed_methods())),
        Err(r) => return Err(Refusal::Rejected(r)),
    };
    let body = read(limit, verifier.read_timeout())
        .await
        .map_err(|r| verifier.read_refusal(head, r))?;
    match verifier.verify(head, body)? {
        Verdict::Deliver(d) => d.json().map_err(Refusal::Rejected),
        Verdict::Ignored(_) => Err(Refusal::Ignored),
        Verdict::Challenge(a) => Err(Refusal::Challenge(a)),
    }
}
