//! axum extractors: [`Verified`] behind the layer, [`Verify`] on its own.

use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use hookguard_core::{ChallengeAnswer, Delivery, Precheck, Rejection, RequestHead, Verdict, Verifier};
use http::request::Parts;
use serde::de::DeserializeOwned;

/// Why an extractor could not produce a verified delivery. Answers with the same status,
/// stable code and JSON body as the layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum VerifiedRejection {
    /// The request was rejected (forged, malformed, too large, …) or the body is not `T`.
    Rejected(Rejection),
    /// A genuine challenge: answered with the echo, not a handler call.
    Challenge(ChallengeAnswer),
    /// A genuine delivery the configuration filters out (your own Procore application's
    /// change): answered `200 {"status":"ignored"}`, not a handler call.
    Ignored,
    /// [`Verified`] was used on a route without [`WebhookLayer`](crate::WebhookLayer).
    MissingLayer,
}

const MISSING_LAYER: &str = "Verified<T> needs hookguard_tower::WebhookLayer on this route";

impl IntoResponse for VerifiedRejection {
    fn into_response(self) -> Response {
        let r = match self {
            VerifiedRejection::Rejected(r) => hookguard_core::response::rejection(&r),
            VerifiedRejection::Challenge(a) => a.into_response(),
            VerifiedRejection::Ignored => hookguard_core::response::ignored(),
            VerifiedRejection::MissingLayer => {
                hookguard_core::response::misconfigured("missing_webhook_layer", MISSING_LAYER)
            }
        };
        r.map(axum::body::Body::from)
    }
}

impl std::fmt::Display for VerifiedRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifiedRejection::Rejected(r) => r.fmt(f),
            VerifiedRejection::Challenge(_) => f.write_str("challenge answered"),
            VerifiedRejection::Ignored => f.write_str("delivery ignored by configuration"),
            VerifiedRejection::MissingLayer => f.write_str(MISSING_LAYER),
        }
    }
}

impl std::error::Error for VerifiedRejection {}

/// The typed envelope of a delivery the [`WebhookLayer`](crate::WebhookLayer) verified.
///
/// ```
/// use axum::http::StatusCode;
/// use hookguard_core::envelope::ProcoreEvent;
/// use hookguard_tower::Verified;
/// async fn on_procore(Verified(event): Verified<ProcoreEvent>) -> StatusCode {
///     let _ = event;
///     StatusCode::NO_CONTENT
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Verified<T>(pub T);

impl<T, S> FromRequestParts<S> for Verified<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = VerifiedRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let d = parts
            .extensions
            .get::<Delivery>()
            .ok_or(VerifiedRejection::MissingLayer)?;
        d.json().map(Verified).map_err(VerifiedRejection::Rejected)
    }
}

/// The verified [`Delivery`] itself (id, type, dedupe key, raw body) from the layer.
///
/// ```
/// use hookguard_tower::VerifiedDelivery;
/// async fn on_any(VerifiedDelivery(d): VerifiedDelivery) -> String {
///     d.event_type().unwrap_or("unknown").to_owned()
/// }
/// ```
#[derive(Debug, Clone)]
pub struct VerifiedDelivery(pub Delivery);

impl<S: Send + Sync> FromRequestParts<S> for VerifiedDelivery {
    type Rejection = VerifiedRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Delivery>()
            .cloned()
            .map(VerifiedDelivery)
            .ok_or(VerifiedRejection::MissingLayer)
    }
}

/// Verifies on its own, without the layer, with the [`Verifier`] in router state: for users
/// who want no middleware. It answers challenges (through its rejection) but does **not**
/// de-duplicate — only the layer can complete a claim after the handler succeeded.
///
/// ```
/// use axum::{routing::post, Router, extract::FromRef};
/// use hookguard_core::{schemes::GitHub, Verifier};
/// use hookguard_tower::Verify;
///
/// #[derive(Clone)]
/// struct AppState { github: Verifier }
/// impl FromRef<AppState> for Verifier {
///     fn from_ref(s: &AppState) -> Verifier { s.github.clone() }
/// }
/// async fn on_push(Verify(event): Verify<serde_json::Value>) -> &'static str {
///     let _ = event;
///     "ok"
/// }
/// let state = AppState { github: Verifier::builder(GitHub::new()).secret("s").build().unwrap() };
/// let app: Router = Router::new().route("/gh", post(on_push)).with_state(state);
/// # let _ = app;
/// ```
#[derive(Debug, Clone)]
pub struct Verify<T>(pub T);

impl<T, S> FromRequest<S> for Verify<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
    Verifier: FromRef<S>,
{
    type Rejection = VerifiedRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let verifier = Verifier::from_ref(state);
        let (parts, body) = req.into_parts();
        let head = RequestHead::new(&parts.method, &parts.uri, &parts.headers);
        let limit = match verifier.precheck(&head).map_err(VerifiedRejection::Rejected)? {
            Precheck::ReadBody { limit } => limit,
            Precheck::Challenge(a) => return Err(VerifiedRejection::Challenge(a)),
            _ => return Err(VerifiedRejection::Rejected(Rejection::MethodNotAllowed)),
        };
        let read = tokio::time::timeout(verifier.read_timeout(), axum::body::to_bytes(body, limit));
        let bytes = read
            .await
            .map_err(|_| VerifiedRejection::Rejected(Rejection::BodyReadTimeout))?
            .map_err(|e| {
                let too_large = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                    || e.to_string().contains("length limit");
                VerifiedRejection::Rejected(if too_large {
                    Rejection::BodyTooLarge { limit }
                } else {
                    Rejection::BodyReadFailed
                })
            })?;
        match verifier.verify(&head, bytes).map_err(VerifiedRejection::Rejected)? {
            Verdict::Deliver(d) => d.json().map(Verify).map_err(VerifiedRejection::Rejected),
            Verdict::Ignored(_) => Err(VerifiedRejection::Ignored),
            Verdict::Challenge(a) => Err(VerifiedRejection::Challenge(a)),
            _ => Err(VerifiedRejection::Rejected(Rejection::MethodNotAllowed)),
        }
    }
}
