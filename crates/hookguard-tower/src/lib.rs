//! # hookguard-tower
//!
//! A tower [`Layer`](tower_layer::Layer) that puts a webhook route behind hookguard, and axum
//! extractors for the verified delivery. Protecting one route of an existing axum server is
//! one line; the other routes are untouched.
//!
//! ```
//! use axum::{routing::post, Router, http::StatusCode};
//! use hookguard_core::{schemes::BuildWorkPro, envelope::BuildWorkProEvent, dedupe::MemoryStore};
//! use hookguard_tower::{Verified, WebhookLayer};
//!
//! async fn on_event(Verified(event): Verified<BuildWorkProEvent>) -> StatusCode {
//!     println!("{} {}", event.event_type, event.id);
//!     StatusCode::NO_CONTENT
//! }
//!
//! # fn main() -> Result<(), hookguard_core::ConfigError> {
//! let hooks = WebhookLayer::builder(BuildWorkPro::new()).secret("whsec_...").dedupe(MemoryStore::default()).build()?;
//! let app: Router = Router::new()
//!     .route("/health", axum::routing::get(|| async { "ok" }))
//!     .route("/webhooks/buildworkpro", post(on_event).layer(hooks));
//! # let _ = app; Ok(()) }
//! ```
//!
//! ## What the layer does, in order
//! 1. Answers challenges (HCSS `GET ?challenge=`) itself.
//! 2. Refuses a declared `Content-Length` over the limit with `503 body_too_large` (+
//!    `Retry-After`: a limit of yours, retried by the sender) before reading (a request
//!    with no signature is refused as unsigned instead); bounds the
//!    read of chunked bodies too (default 1 MiB).
//! 3. Reads the body once into `Bytes` and verifies it; rejections answer the core's status,
//!    stable code and a small JSON body, and are logged with `tracing` (code only — never the
//!    secret or the body).
//! 4. Claims the delivery in the dedupe store: done → `200 {"status":"duplicate"}`; in flight
//!    → `429` + `Retry-After`; new → the inner service runs; its 2xx completes the claim,
//!    anything else (an error, a panic) releases it. A request whose answer is given up (the
//!    sender hung up, so hyper drops its future) is finished in the background, at most
//!    [`MAX_DETACHED`] at once (see [`ResponseFuture`]).
//! 5. Answers `200 {"status":"ignored"}` for Procore deliveries from your own application ids.
//! 6. Hands the inner service the original body and the [`Delivery`](hookguard_core::Delivery) in
//!    the request extensions.
//! 7. Optionally answers `503` (retryable) if the inner service exceeds a budget set below the
//!    sender's timeout, releasing the claim.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "axum")]
mod extract;
mod future;
mod layer;
mod service;

#[cfg(feature = "axum")]
pub use extract::{Verified, VerifiedDelivery, VerifiedNoDedupe, VerifiedRejection};
pub use future::{finish_detached, ResponseFuture, MAX_DETACHED};
pub use layer::{WebhookLayer, WebhookLayerBuilder};
pub use service::WebhookService;
