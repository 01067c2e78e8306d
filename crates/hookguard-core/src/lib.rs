//! # hookguard-core
//!
//! Framework-free verification of incoming webhooks: every sender's signature scheme, a
//! replay window with an injectable clock, challenge echo, two-phase deduplication, typed
//! envelopes, and one [`Rejection`] type that knows the HTTP status each sender needs.
//! The `hookguard-tower` and `hookguard-actix` crates wrap this core for their frameworks.
//!
//! ## Flow of one request
//! 1. [`Verifier::precheck`] before the body: answer a challenge, refuse a wrong method or an
//!    oversized `Content-Length`.
//! 2. Read at most `limit` bytes once into [`bytes::Bytes`].
//! 3. [`Verifier::verify`]: authenticate (constant-time), check the replay window, describe the
//!    delivery (id, type, dedupe key).
//! 4. [`dedupe::Dedupe::admit`]: claim the key; run the handler; complete or release.
//!
//! ## Statuses
//! See the table on [`Rejection`]. In short: forged or malformed → permanent 4xx (BuildWorkPro
//! stops retrying on any 4xx but 408/429); body too large (a limit of this side) → 503 with
//! `Retry-After`; a copy still being handled → 429 with `Retry-After`; a store outage → 503
//! with `Retry-After`; a copy already handled → 200.
//!
//! ```
//! use hookguard_core::{schemes::BuildWorkPro, Verifier, Verdict, Precheck, RequestHead, Scheme, SignParams};
//! use hookguard_core::dedupe::{Admission, Dedupe, MemoryStore};
//! # hookguard_core::testing::block_on(async {
//! let verifier = Verifier::builder(BuildWorkPro::new()).secret("whsec_abc").build()?;
//! let dedupe = Dedupe::new(MemoryStore::new(100_000));
//!
//! // A request as BuildWorkPro sends it.
//! let body = bytes::Bytes::from_static(br#"{"id":"evt_1","type":"bid.accepted"}"#);
//! let now = verifier.now_unix();
//! let mut headers = http::HeaderMap::new();
//! headers.extend(BuildWorkPro::new().sign("whsec_abc", &body, &SignParams::new(now))?.headers);
//! let (method, uri) = (http::Method::POST, http::Uri::from_static("/webhooks"));
//! let head = RequestHead::new(&method, &uri, &headers);
//!
//! assert!(matches!(verifier.precheck(&head)?, Precheck::ReadBody { .. }));
//! let Verdict::Deliver(delivery) = verifier.verify(&head, body)? else { unreachable!() };
//! match dedupe.admit(&delivery).await? {
//!     Admission::New(claim) => {
//!         // ... handle the event; on success:
//!         claim.complete().await?;
//!     }
//!     Admission::Done => { /* answer 200, already handled */ }
//!     _ => {}
//! }
//! assert!(matches!(dedupe.admit(&delivery).await?, Admission::Done));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
// One `unsafe` call in the crate: `madvise(2)` in `dedupe::memory::huge_pages` (Linux).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod challenge;
pub mod clock;
pub mod dedupe;
mod dedupe_key;
mod delivery;
pub mod envelope;
mod error;
pub mod extract;
pub mod inbox;
mod json_fast;
mod json_struct;
mod key;
pub mod observe;
pub mod profile;
pub mod provider;
mod receiver;
pub mod response;
mod scheme;
pub mod schemes;
#[cfg(feature = "testing")]
pub mod testing;
mod verifier;
mod wire;

pub use challenge::{ChallengeAnswer, ChallengeRule};
pub use dedupe_key::{DedupeKey, ParseDedupeKeyError, MAX_DEDUPE_KEY_FIELDS};
pub use delivery::Delivery;
pub use error::{ConfigError, Rejection};
pub use key::{HmacSha256, Key};
pub use provider::{Provider, UnknownProvider};
pub use receiver::{
    answer_given_up, body_error_timed_out, error_causes, extractor_limit, join_capacity, within, Admitted, Finishable,
    GivenUp, HandlerOutcome, Receiver, ReceiverBuilder, Reply, Sleep, DEFAULT_BACKGROUND_LIMIT,
};
pub use scheme::{
    Authenticated, Context, DedupePolicy, DedupeScope, Described, RequestHead, Scheme, SignParams, Signed,
};
pub use verifier::{
    Precheck, Verdict, Verifier, VerifierBuilder, DEFAULT_MAX_BODY, DEFAULT_MAX_CHALLENGE, DEFAULT_MAX_HEADER_LEN,
    DEFAULT_MAX_SIGNATURES, DEFAULT_READ_TIMEOUT, MAX_SECRETS,
};

pub use bytes;
pub use http;
