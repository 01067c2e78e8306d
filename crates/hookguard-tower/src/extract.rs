//! axum extractors: [`Verified`] and [`VerifiedDelivery`] behind the layer (deduplicated),
//! [`VerifiedNoDedupe`] on its own. The protocol (what each refusal answers, the standalone
//! sequence) is the core's [`hookguard_core::extract`]; this file only translates it to axum.

use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use hookguard_core::extract::{self, Refusal};
use hookguard_core::{Delivery, Rejection, RequestHead, Verifier};
use http::request::Parts;
use serde::de::DeserializeOwned;

/// Why an extractor could not produce a verified delivery: the core's [`Refusal`], answered
/// with the same status, stable code and JSON body as the layer (and as the actix adapter).
///
/// ```
/// use axum::response::IntoResponse;
/// use hookguard_core::{extract::Refusal, Rejection};
/// use hookguard_tower::VerifiedRejection;
/// let r = VerifiedRejection::from(Refusal::Rejected(Rejection::SignatureMismatch));
/// assert_eq!(r.into_response().status(), 401);
/// ```
#[derive(Debug)]
pub struct VerifiedRejection(pub Refusal);

impl From<Refusal> for VerifiedRejection {
    fn from(r: Refusal) -> Self {
        Self(r)
    }
}

/// A handler taking the [`Delivery`] reads its body with `?` ([`Delivery::json`] fails with
/// a [`Rejection`]): a body that is not the application's type is answered as
/// [`Verified<T>`] answers it (`500 unexpected_payload` + `Retry-After`, retried by the sender).
///
/// ```
/// use axum::{http::StatusCode, Extension};
/// use hookguard_core::{schemes::GitHub, testing, Delivery};
/// use hookguard_tower::VerifiedRejection;
/// #[derive(serde::Deserialize)]
/// struct Push { r#ref: String }
/// async fn on_push(Extension(d): Extension<Delivery>) -> Result<StatusCode, VerifiedRejection> {
///     let push: Push = d.json()?;
///     Ok(if push.r#ref.is_empty() { StatusCode::ACCEPTED } else { StatusCode::NO_CONTENT })
/// }
/// let d = testing::deliver(GitHub::new(), "s", br#"{"zen":"x"}"#).unwrap();
/// let refused = testing::block_on(on_push(Extension(d))).unwrap_err();
/// assert_eq!(axum::response::IntoResponse::into_response(refused).status(), 500);
/// ```
impl From<Rejection> for VerifiedRejection {
    fn from(r: Rejection) -> Self {
        Self(Refusal::from(r))
    }
}

impl IntoResponse for VerifiedRejection {
    fn into_response(self) -> Response {
        self.0.response().map(axum::body::Body::from)
    }
}

impl std::fmt::Display for VerifiedRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for VerifiedRejection {}

/// The typed envelope of a delivery the [`WebhookLayer`](crate::WebhookLayer) verified and
/// claimed (deduplicated). A body that is not `T` answers a retryable `500 unexpected_payload`
/// (the body is authentic: our model's gap). Without the layer: `500 missing_webhook_layer`.
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
        Ok(Verified(extract::typed(parts.extensions.get::<Delivery>())?))
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
        Ok(VerifiedDelivery(extract::delivery(parts.extensions.get::<Delivery>())?))
    }
}

/// Verifies on its own, without the layer, with the [`Verifier`] in router state: for users
/// who want no middleware. It answers challenges (through its rejection) but does **not**
/// de-duplicate — hence its name: only the layer sees the handler's answer and can complete
/// a claim.
///
/// ```
/// use axum::{routing::post, Router, extract::FromRef};
/// use hookguard_core::{schemes::GitHub, Verifier};
/// use hookguard_tower::VerifiedNoDedupe;
///
/// #[derive(Clone)]
/// struct AppState { github: Verifier }
/// impl FromRef<AppState> for Verifier {
///     fn from_ref(s: &AppState) -> Verifier { s.github.clone() }
/// }
/// async fn on_push(VerifiedNoDedupe(event): VerifiedNoDedupe<serde_json::Value>) -> &'static str {
///     let _ = event;
///     "ok"
/// }
/// let state = AppState { github: Verifier::builder(GitHub::new()).secret("s").build().unwrap() };
/// let app: Router = Router::new().route("/gh", post(on_push)).with_state(state);
/// # let _ = app;
/// ```
#[derive(Debug, Clone)]
pub struct VerifiedNoDedupe<T>(pub T);

impl<T, S> FromRequest<S> for VerifiedNoDedupe<T>
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
        let read = |limit: usize, timeout| async move {
            tokio::time::timeout(timeout, crate::service::read_body(body, limit))
                .await
                .unwrap_or(Err(Rejection::BodyReadTimeout))
        };
        Ok(VerifiedNoDedupe(
            extract::verify_standalone(&verifier, &head, read).await?,
        ))
    }
}
