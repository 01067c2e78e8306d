//! Extractors: [`Verified`] and [`VerifiedDelivery`] behind the middleware, [`Verify`] on its own.

use std::fmt;
use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpMessage as _, HttpRequest, HttpResponse, ResponseError};
use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use hookguard_core::{ChallengeAnswer, Delivery, Precheck, Rejection, Verdict, Verifier};
use serde::de::DeserializeOwned;

use crate::convert::{self, Head};

/// Why an extractor could not produce a verified delivery. As an actix error it answers with
/// the same status, stable code and JSON body (`{"error":code,"message":…}`) as the
/// middleware and as the tower adapter; a genuine challenge is answered with its echo.
///
/// ```
/// use actix_web::ResponseError;
/// use hookguard_core::Rejection;
/// use hookguard_actix::VerifiedRejection;
/// let e = VerifiedRejection::Rejected(Rejection::SignatureMismatch);
/// assert_eq!(e.status_code(), 401);
/// assert_eq!(e.error_response().headers().get("content-type").unwrap(), "application/json");
/// assert_eq!(VerifiedRejection::MissingMiddleware.status_code(), 500);
/// ```
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
    /// [`Verified`] or [`VerifiedDelivery`] was used on a route without the
    /// [`Webhook`](crate::Webhook) middleware: `500` with code `missing_webhook_layer`.
    MissingMiddleware,
    /// [`Verify`] found no `web::Data<Verifier>` (nor a plain `Verifier`) in the app data:
    /// `500` with code `missing_verifier`.
    MissingVerifier,
}

const MISSING_MIDDLEWARE: &str = "Verified<T> needs the hookguard_actix::Webhook middleware on this route";
const MISSING_VERIFIER: &str = "Verify<T> needs a hookguard Verifier in the app data (web::Data<Verifier>)";

impl VerifiedRejection {
    fn core_response(&self) -> http::Response<Bytes> {
        match self {
            VerifiedRejection::Rejected(r) => hookguard_core::response::rejection(r),
            VerifiedRejection::Challenge(a) => a.clone().into_response(),
            VerifiedRejection::Ignored => hookguard_core::response::ignored(),
            VerifiedRejection::MissingMiddleware => {
                hookguard_core::response::misconfigured("missing_webhook_layer", MISSING_MIDDLEWARE)
            }
            VerifiedRejection::MissingVerifier => {
                hookguard_core::response::misconfigured("missing_verifier", MISSING_VERIFIER)
            }
        }
    }
}

impl fmt::Display for VerifiedRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifiedRejection::Rejected(r) => r.fmt(f),
            VerifiedRejection::Challenge(_) => f.write_str("challenge answered"),
            VerifiedRejection::Ignored => f.write_str("delivery ignored by configuration"),
            VerifiedRejection::MissingMiddleware => f.write_str(MISSING_MIDDLEWARE),
            VerifiedRejection::MissingVerifier => f.write_str(MISSING_VERIFIER),
        }
    }
}

impl std::error::Error for VerifiedRejection {}

impl ResponseError for VerifiedRejection {
    fn status_code(&self) -> StatusCode {
        match self {
            VerifiedRejection::Rejected(r) => {
                StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_REQUEST)
            }
            VerifiedRejection::Challenge(_) | VerifiedRejection::Ignored => StatusCode::OK,
            VerifiedRejection::MissingMiddleware | VerifiedRejection::MissingVerifier => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        convert::response(&self.core_response())
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
        ready(match req.extensions().get::<Delivery>() {
            Some(d) => d.json().map(Verified).map_err(VerifiedRejection::Rejected),
            None => Err(VerifiedRejection::MissingMiddleware),
        })
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
            req.extensions()
                .get::<Delivery>()
                .cloned()
                .map(VerifiedDelivery)
                .ok_or(VerifiedRejection::MissingMiddleware),
        )
    }
}

/// Verifies on its own, without the middleware, with the [`Verifier`] in the app data
/// (`web::Data<Verifier>`, or a plain `Verifier` via `App::app_data`): for users who want no
/// middleware. It reads the payload once (bounded by the verifier's body limit), verifies and
/// parses it, and answers challenges (through its error).
///
/// It does **not** de-duplicate: a claim may only be completed after the handler succeeded,
/// and an extractor runs *before* the handler and never sees its answer. Use the
/// [`Webhook`](crate::Webhook) middleware for dedupe.
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
/// use hookguard_actix::Verify;
///
/// async fn on_push(Verify(event): Verify<serde_json::Value>) -> &'static str {
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
pub struct Verify<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Verify<T> {
    type Error = VerifiedRejection;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let verifier = req
            .app_data::<web::Data<Verifier>>()
            .map(|d| Verifier::clone(d))
            .or_else(|| req.app_data::<Verifier>().cloned());
        let head = Head::new(req.head());
        let mut payload = payload.take();
        Box::pin(async move {
            let verifier = verifier.ok_or(VerifiedRejection::MissingVerifier)?;
            let head = head.map_err(VerifiedRejection::Rejected)?;
            let limit = match verifier
                .precheck(&head.as_core())
                .map_err(VerifiedRejection::Rejected)?
            {
                Precheck::ReadBody { limit } => limit,
                Precheck::Challenge(a) => return Err(VerifiedRejection::Challenge(a)),
                _ => return Err(VerifiedRejection::Rejected(Rejection::MethodNotAllowed)),
            };
            let body = convert::read_body_within(&mut payload, &head, limit, verifier.read_timeout())
                .await
                .map_err(VerifiedRejection::Rejected)?;
            match verifier
                .verify(&head.as_core(), body)
                .map_err(VerifiedRejection::Rejected)?
            {
                Verdict::Deliver(d) => d.json().map(Verify).map_err(VerifiedRejection::Rejected),
                Verdict::Ignored(_) => Err(VerifiedRejection::Ignored),
                Verdict::Challenge(a) => Err(VerifiedRejection::Challenge(a)),
                _ => Err(VerifiedRejection::Rejected(Rejection::MethodNotAllowed)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wiring_mistakes_answer_in_the_rejection_shape() {
        for (e, code) in [
            (VerifiedRejection::MissingMiddleware, "missing_webhook_layer"),
            (VerifiedRejection::MissingVerifier, "missing_verifier"),
        ] {
            let r = e.core_response();
            assert_eq!(r.status(), 500);
            let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
            assert_eq!(v["error"], code);
            assert_eq!(v["message"], e.to_string());
        }
    }
}
