//! An existing axum application gains one protected webhook route per vendor; its other
//! routes are untouched.
//!
//! ```sh
//! cargo run --example axum_existing_router --features axum
//! ```

use std::env;

use axum::{
    http::StatusCode,
    routing::{get, post},
    Json, Router,
};
use hookguard::dedupe::MemoryStore;
use hookguard::envelope::{BuildWorkProEvent, HcssEvent, ProcoreEvent};
use hookguard::schemes::{BuildWorkPro, Hcss, Procore};
use hookguard::tower::{Verified, WebhookLayer};
use hookguard::ConfigError;

async fn on_buildworkpro(Verified(event): Verified<BuildWorkProEvent>) -> StatusCode {
    println!("buildworkpro {} {}", event.event_type, event.id);
    StatusCode::NO_CONTENT
}

async fn on_procore(Verified(event): Verified<ProcoreEvent>) -> StatusCode {
    println!("procore {event:?}");
    StatusCode::NO_CONTENT
}

async fn on_hcss(Verified(event): Verified<HcssEvent>) -> StatusCode {
    println!("hcss {event:?}");
    StatusCode::OK
}

/// The application as it was before webhooks: a health check and a small JSON API.
fn existing_router() -> Router {
    Router::new().route("/health", get(|| async { "ok" })).route(
        "/api/echo",
        post(|Json(v): Json<serde_json::Value>| async move { Json(v) }),
    )
}

fn secret(name: &str, default: &str) -> String {
    env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The existing router plus one protected route per vendor.
pub fn app() -> Result<Router, ConfigError> {
    let bwp = WebhookLayer::builder(BuildWorkPro::new())
        .secret(secret("BUILDWORKPRO_SECRET", "whsec_example"))
        .dedupe(MemoryStore::default())
        .build()?;
    let procore = WebhookLayer::builder(Procore::new())
        .secret(secret("PROCORE_AUTHORIZATION", "Bearer example"))
        .ignore_source_application(secret("PROCORE_OWN_APP_ID", "our-app"))
        .dedupe(MemoryStore::default())
        .build()?;
    let hcss = WebhookLayer::builder(Hcss::new())
        .secret(secret("HCSS_URL_TOKEN", "example-token"))
        .dedupe(MemoryStore::default())
        .build()?;
    Ok(existing_router()
        .route("/webhooks/buildworkpro", post(on_buildworkpro).layer(bwp))
        .route("/webhooks/procore", post(on_procore).layer(procore))
        // HCSS challenges with GET on the same URL: the layer answers it.
        .route(
            "/webhooks/hcss",
            post(on_hcss).get(|| async { StatusCode::OK }).layer(hcss),
        ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8787").await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app()?).await?;
    Ok(())
}
