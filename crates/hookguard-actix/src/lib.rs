//! # hookguard-actix
//!
//! actix-web middleware that puts a webhook route behind hookguard, and extractors for the
//! verified delivery. It behaves exactly like the `hookguard-tower` layer: both only translate
//! between their framework and [`hookguard_core::Receiver`], which holds every rule.
//! Protecting one resource of an existing app is one `wrap`; the other routes are untouched.
//!
//! ```no_run
//! use actix_web::{web, App, HttpResponse, HttpServer};
//! use hookguard_core::{schemes::BuildWorkPro, envelope::BuildWorkProEvent, dedupe::MemoryStore};
//! use hookguard_actix::{Verified, Webhook};
//!
//! async fn on_event(Verified(event): Verified<BuildWorkProEvent>) -> HttpResponse {
//!     println!("{} {}", event.event_type, event.id);
//!     HttpResponse::NoContent().finish()
//! }
//!
//! #[actix_web::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let hooks = Webhook::builder(BuildWorkPro::new()).secret("whsec_...").dedupe(MemoryStore::default()).build()?;
//!     HttpServer::new(move || {
//!         App::new()
//!             .route("/health", web::get().to(|| async { "ok" }))
//!             .service(web::resource("/webhooks/buildworkpro").wrap(hooks.clone()).route(web::post().to(on_event)))
//!     })
//!     .bind("127.0.0.1:8080")?
//!     .run()
//!     .await?;
//!     Ok(())
//! }
//! ```
//!
//! ## What the middleware does, in order
//! 1. Answers challenges (HCSS `GET ?challenge=`) itself.
//! 2. Refuses a declared `Content-Length` over the limit with `503 body_too_large` (+
//!    `Retry-After`: a limit of yours, retried by the sender) before reading (a request
//!    with no signature is refused as unsigned instead); bounds the
//!    read of chunked bodies too (default 1 MiB).
//! 3. Reads the payload once into `Bytes` and verifies it; rejections answer the core's status,
//!    stable code and a small JSON body, and are logged with `tracing` (code only — never the
//!    secret or the body).
//! 4. Claims the delivery in the dedupe store: done → `200 {"status":"duplicate"}`; in flight
//!    → `429` + `Retry-After`; new → the wrapped service runs; its 2xx completes the claim,
//!    anything else (an error, a panic) releases it. A request whose connection fails while it
//!    runs (a reset: actix-web then drops its future) is finished in the background, as the
//!    tower layer does (see [`ResponseFuture`]).
//! 5. Answers `200 {"status":"ignored"}` for Procore deliveries from your own application ids.
//! 6. Puts the verified body back as the request payload (so `web::Json`, `web::Bytes` work)
//!    and the [`Delivery`](hookguard_core::Delivery) in the request extensions.
//! 7. Optionally answers `503` (retryable) if the wrapped service exceeds a budget set below
//!    the sender's timeout, releasing the claim.
//!
//! Wrap the *resource* (`web::resource(path).wrap(hooks)`), not a single route: the
//! middleware then also sees the sender's `GET` challenge and answers a wrong method with the
//! same `405 method_not_allowed` as tower.
//!
//! ## The core's `http` types
//! actix-web 4 is built on `http` 0.2, the core on `http` 1.x: the values a builder or a scheme
//! takes (`Procore::new().header(…)`, `Hcss::header`, a `ChallengeRule`'s method, the headers
//! `hookguard_core::testing::request_parts` returns) are the core's, re-exported as
//! `hookguard_core::http`. A test request is built from them by name and bytes:
//!
//! ```
//! use actix_web::test::TestRequest;
//! use hookguard_core::{schemes::GitHub, Scheme, SignParams};
//! let signed = GitHub::new().sign("s", b"{}", &SignParams::new(0)).unwrap();
//! let (headers, uri) = hookguard_core::testing::request_parts(signed, "/gh");
//! let mut req = TestRequest::post().uri(&uri.to_string()).set_payload("{}");
//! for (name, value) in &headers {
//!     req = req.insert_header((name.as_str(), value.as_bytes()));
//! }
//! assert!(req.to_http_request().headers().contains_key("x-hub-signature-256"));
//! // A scheme's option takes the core's types:
//! let procore = hookguard_core::schemes::Procore::new()
//!     .header(hookguard_core::http::HeaderName::from_static("x-procore-token"));
//! assert_eq!(procore.header_name(), "x-procore-token");
//! ```
//!
//! A handler's error converts from the core's `Rejection` (`d.json()?` in a handler returning
//! `Result<_, VerifiedRejection>`), and with a PostgreSQL inbox give the `Worker` an inbox of
//! its own (the README's "The inbox on PostgreSQL": actix's threads each run their own runtime).
//!
//! ## Without the middleware
//! [`VerifiedNoDedupe<T>`] verifies inside the handler with a `web::Data<Verifier>`; it answers the same
//! rejections and challenges but cannot de-duplicate (see its docs).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod convert;
mod extract;
mod future;
mod middleware;
mod transform;

pub use extract::{Verified, VerifiedDelivery, VerifiedNoDedupe, VerifiedRejection};
pub use future::{ResponseFuture, MAX_DETACHED};
pub use middleware::WebhookMiddleware;
pub use transform::{Webhook, WebhookBuilder};
