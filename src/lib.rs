//! # hookguard
//!
//! Receive webhooks safely: answer challenges, prove each delivery is genuine, reject replays,
//! survive retries and duplicates, and answer fast — for HCSS, Procore, BuildWorkPro, Autodesk
//! Platform Services and the generic schemes (Standard Webhooks, Stripe, GitHub, Slack).
//!
//! This crate re-exports [`hookguard_core`] and, behind features, the adapters:
//! `tower` / `axum` (`tower` module), `actix` (`actix` module), `redis` (`redis` module),
//! `sqlite` (`sqlite` module: the durable inbox, with `inbox::Worker`), `postgres`
//! (`postgres` module: the inbox for many replicas), `metrics` (counters and histograms through
//! the `metrics` facade), `ed25519` (Standard Webhooks `v1a`); `full` is all of them.
//!
//! ```
//! use hookguard::{schemes::BuildWorkPro, Verifier};
//! let verifier = Verifier::builder(BuildWorkPro::new()).secret("whsec_...").build().unwrap();
//! assert_eq!(verifier.provider().as_str(), "buildworkpro");
//! ```
#![forbid(unsafe_code)]
// The README's Rust snippets are compiled as doctests, so they can never drift from the API.
#![cfg_attr(all(doctest, feature = "full"), doc = include_str!("../README.md"))]
#![warn(missing_docs)]

pub use hookguard_core::*;

/// The tower layer and axum extractors (feature `tower`; extractors with `axum`).
///
/// ```
/// use hookguard::{schemes::GitHub, tower::WebhookLayer};
/// let layer = WebhookLayer::builder(GitHub::new()).secret("s").build().unwrap();
/// let app: axum::Router = axum::Router::new().route("/gh", axum::routing::post(|| async { "ok" }).layer(layer));
/// # let _ = app;
/// ```
#[cfg(feature = "tower")]
pub mod tower {
    pub use hookguard_tower::*;
}

/// The actix-web middleware and extractors (feature `actix`).
///
/// ```
/// use actix_web::{web, App, HttpResponse};
/// use hookguard::{actix::Webhook, schemes::GitHub};
/// let hooks = Webhook::builder(GitHub::new()).secret("s").build().unwrap();
/// let app = App::new().service(web::resource("/gh").wrap(hooks).route(web::post().to(HttpResponse::NoContent)));
/// # let _ = app;
/// ```
#[cfg(feature = "actix")]
pub mod actix {
    pub use hookguard_actix::*;
}

/// The embedded durable inbox on SQLite, and the inbox worker (feature `sqlite`).
///
/// ```
/// use hookguard::sqlite::SqliteInbox;
/// # let dir = std::env::temp_dir().join(format!("hg-facade-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// let inbox = SqliteInbox::open(dir.join("inbox.db")).unwrap(); // one file, no server
/// # drop(inbox); std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[cfg(feature = "sqlite")]
pub mod sqlite {
    pub use hookguard_sqlite::*;
}

/// The durable inbox on PostgreSQL, for many replicas (feature `postgres`).
///
/// ```no_run
/// use hookguard::postgres::PgInbox;
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let inbox = PgInbox::connect("postgres://hookguard@db.internal/app").await?; // migrates
/// # let _ = inbox; Ok(()) }
/// ```
#[cfg(feature = "postgres")]
pub mod postgres {
    pub use hookguard_postgres::*;
}

/// The Redis dedupe store for several receiver replicas (feature `redis`).
///
/// ```no_run
/// use hookguard::{dedupe::Dedupe, redis::RedisStore};
/// # async fn run() -> Result<(), hookguard::dedupe::StoreError> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
/// let dedupe = Dedupe::new(store); // fail-closed: a Redis outage answers 503
/// # let _ = dedupe; Ok(()) }
/// ```
#[cfg(feature = "redis")]
pub mod redis {
    pub use hookguard_redis::*;
}
