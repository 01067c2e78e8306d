//! Extractors: [`Verified`] and [`VerifiedDelivery`] behind the middleware (deduplicated),
//! [`VerifiedNoDedupe`] on its own. The protocol (what each refusal answers, the standalone
//! sequence) is the core's [`hookguard_core::extract`]; this file only translates it to actix.

use std::fmt;
use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpMessage as _, HttpRequest, HttpResponse, ResponseError};
use futures_util::future::LocalBoxFuture;
use hookguard_core::extract::{self, Refusal};
use hookguard_core::{Delivery, Rejection, Verifier};
use serde::de::DeserializeOwned;

use crate::convert::{self, Head};

/// Why an extractor could not produce a verified delivery: the core's [`Refusal`]. As an actix
/// error it answers with the same status, stable code and JSON body as the middleware and as
/// the tower adapter; a genuine challenge is answered with its echo.
///
/// ```
/// use actix_web::ResponseError;
/// use hookguard_core::{extract::Refusal, Rejection};
/// use hookguard_actix::VerifiedRejection;
/// let e = VerifiedRejection(Refusal::Rejected(Rejection::SignatureMismatch));
/// assert_eq!(e.status_code(), 401);
/// assert_eq!(e.error_response().headers().get("content-type").unwrap(), "application/json");
/// assert_eq!(VerifiedRejection(Refusal::MissingMiddleware).status_code(), 500);
/// ```
#[derive(Debug)]
pub struct VerifiedRejection(pub Refusal);

impl From<Refusal> for VerifiedRejection {
    fn from(r: Refusal) -> Self {
        Self(r)
    }
}

/// A handler taking the [`Delivery`] reads its body with `?` ([`Delivery::json`] fails with
/// a [`Rejection`], which actix cannot answer by itself): a body that is not the
/// application's type is answered as [`Verified<T>`](crate::Verified) answers it
/// (`500 unexpected_payload` + `Retry-After`, retried by the sender).
///
/// ```
/// use actix_web::{HttpResponse, ResponseError};
/// use hookguard_actix::{VerifiedDelivery, VerifiedRejection};
/// use hookguard_core::{schemes::GitHub, testing};
/// #[derive(serde::Deserialize)]
/// struct Push { r#ref: String }
/// async fn on_push(VerifiedDelivery(d): VerifiedDelivery) -> Result<HttpResponse, VerifiedRejection> {
///     let push: Push = d.json()?;
///     Ok(HttpResponse::Ok().body(push.r#ref))
/// }
/// let d = testing::deliver(GitHub::new(), "s", br#"{"zen":"x"}"#).unwrap();
/// let refused = testing::block_on(on_push(VerifiedDelivery(d))).unwrap_err();
/// assert_eq!(refused.status_code(), 500);
/// assert!(refused.error_response().headers().contains_key("retry-after"));
/// ```
impl From<Rejection> for VerifiedRejection {
    fn from(r: Rejection) -> Self {
        Self(Refusal::from(r))
    }
}

impl fmt::Display for VerifiedRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for VerifiedRejection {}

impl ResponseError for VerifiedRejection {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status().as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        convert::response(&self.0.response())
    }
}

/// The typed envelope of a delivery the [`Webhook`](crate::Webhook) middleware verified.
///
/// Parses the body kept with the [`Delivery`]; a body that is not `T` answers
/// a retryable `500 unexpected_payload` (logged at error level with the field: the body is
/// authentic, so the mismatch is our model's gap). Without the middleware on the route it answers
/// `500 missing_webhook_layer` (and logs the mistake).
///
/// ```
/// use actix_web::HttpResponse;
/// use hookguard_core::envelope::ProcoreEvent;
/// use hookguard_actix::Verified;
/// async fn on_procore(Verified(event): Verified<ProcoreEvent>) -> HttpResponse {
///     let _ = event;
///     HttpResponse::NoContent().finish()
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Verified<T>(pub T);

impl<T: DeserializeOwned> FromRequest for Verified<T> {
    type Error = VerifiedRejection;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            extract::typed(req.extensions().get::<Delivery>())
                .map(Verified)
                .map_err(VerifiedRejection),
        )
    }
}

/// The verified [`Delivery`] itself (id, type, dedupe key, raw body) from the middleware.
///
/// ```
/// use hookguard_actix::VerifiedDelivery;
/// async fn on_any(VerifiedDelivery(d): VerifiedDelivery) -> String {
///     d.event_type().unwrap_or("unknown").to_owned()
/// }
/// ```
#[derive(Debug, Clone)]
pub struct VerifiedDelivery(pub Delivery);

impl FromRequest for VerifiedDelivery {
    type Error = VerifiedRejection;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            extract::delivery(req.extensions().get::<Delivery>())
                .map(VerifiedDelivery)
                .map_err(VerifiedRejection),
        )
    }
}

/// Verifies on its own, without the middleware, with the [`Verifier`] in the app data
/// (`web::Data<Verifier>`, or a plain `Verifier` via `App::app_data`): for users who want no
/// middleware. It reads the payload once (bounded by the verifier's body limit), verifies and
/// parses it, and answers challenges (through its error).
///
/// It does **not** de-duplicate — hence its name: a claim may only be completed after the
/// handler succeeded, and an extractor runs *before* the handler and never sees its answer.
/// Use the [`Webhook`](crate::Webhook) middleware for dedupe.
///
/// The verifier is looked up as `web::Data<Verifier>` first (innermost scope first), then as a
/// plain `Verifier`: give each webhook route its own with `Resource::app_data` or
/// `Scope::app_data`.
///
/// Register the route for every method the sender uses (HCSS challenges with `GET`), or
/// actix answers `405` before the extractor runs.
///
/// ```no_run
/// use actix_web::{web, App, HttpServer};
/// use hookguard_core::{schemes::GitHub, Verifier};
/// use hookguard_actix::VerifiedNoDedupe;
///
/// async fn on_push(VerifiedNoDedupe(event): VerifiedNoDedupe<serde_json::Value>) -> &'static str {
///     let _ = event;
///     "ok"
/// }
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     let github = web::Data::new(Verifier::builder(GitHub::new()).secret("s").build().unwrap());
///     HttpServer::new(move || App::new().app_data(github.clone()).route("/gh", web::post().to(on_push)))
///         .bind("127.0.0.1:8080")?
///         .run()
///         .await
/// }
/// ```
#[derive(Debug, Clone)]
pub struct VerifiedNoDedupe<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for VerifiedNoDedupe<T> {
    type Error = VerifiedRejection;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let verifier = req
            .app_data::<web::Data<Verifier>>()
            .map(|d| Verifier::clone(d))
            .or_else(|| req.app_data::<Verifier>().cloned());
        let head = Head::new(req.head());
        let mut payload = payload.take();
        // An extractor before this one (`web::Bytes`, `web::Json`) took the body: what is left
        // reads as empty, and verifying that would refuse a genuine delivery for good.
        let declares_body = req.headers().contains_key(actix_web::http::header::TRANSFER_ENCODING)
            || req
                .headers()
                .get(actix_web::http::header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0");
        // HTTP/2 and 3 need no Content-Length, and actix gives every such request a payload
        // of its own: none left means an extractor before this one took it.
        let streams = req.version() >= actix_web::http::Version::HTTP_2;
        let taken = matches!(payload, Payload::None) && (declares_body || streams);
        Box::pin(async move {
            if taken {
                tracing::error!("{}", Refusal::BodyTaken);
                return Err(VerifiedRejection(Refusal::BodyTaken));
            }
            let verifier = verifier.ok_or(VerifiedRejection(Refusal::MissingVerifier))?;
            let head = head.map_err(|r| VerifiedRejection(Refusal::Rejected(r)))?;
            let head_ref = &head;
            let read = move |limit, timeout| async move {
                convert::read_body_within(&mut payload, head_ref, limit, timeout).await
            };
            extract::verify_standalone(&verifier, &head.as_core(), read)
                .await
                .map(VerifiedNoDedupe)
                .map_err(VerifiedRejection)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wiring_mistakes_answer_in_the_rejection_shape() {
        for (e, code) in [
            (VerifiedRejection(Refusal::MissingMiddleware), "missing_webhook_layer"),
            (VerifiedRejection(Refusal::MissingVerifier), "missing_verifier"),
            (VerifiedRejection(Refusal::BodyTaken), "body_already_taken"),
        ] {
            let r = e.0.response();
            assert_eq!(r.status(), 500);
            let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
            assert_eq!(v["error"], code);
            assert_eq!(v["message"], e.to_string());
        }
    }
}
