//! An actix-web application with ordinary routes gains one protected webhook resource per
//! vendor; its other routes are untouched.
//!
//! ```sh
//! cargo run --example actix_receiver --features actix
//! ```
//!
//! Secrets come from `BUILDWORKPRO_SECRET`, `PROCORE_AUTHORIZATION`, `PROCORE_OWN_APP_ID` and
//! `HCSS_URL_TOKEN` (demo values otherwise).

use std::env;

use actix_web::{web, App, HttpResponse, HttpServer};
use hookguard::actix::{Verified, Webhook};
use hookguard::dedupe::MemoryStore;
use hookguard::envelope::{BuildWorkProEvent, HcssEvent, ProcoreEvent};
use hookguard::schemes::{BuildWorkPro, Hcss, Procore};
use hookguard::ConfigError;

async fn on_buildworkpro(Verified(event): Verified<BuildWorkProEvent>) -> HttpResponse {
    println!("buildworkpro {} {}", event.event_type, event.id);
    HttpResponse::NoContent().finish()
}

async fn on_procore(Verified(event): Verified<ProcoreEvent>) -> HttpResponse {
    println!("procore {event:?}");
    HttpResponse::NoContent().finish()
}

async fn on_hcss(Verified(event): Verified<HcssEvent>) -> HttpResponse {
    println!("hcss {event:?}");
    HttpResponse::Ok().finish()
}

async fn hello() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "hello": "world" }))
}

fn secret(name: &str, default: &str) -> String {
    env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// One middleware per vendor, built once and shared by every worker (and so one dedupe store each).
struct Hooks {
    buildworkpro: Webhook,
    procore: Webhook,
    hcss: Webhook,
}

impl Hooks {
    fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            buildworkpro: Webhook::builder(BuildWorkPro::new())
                .secret(secret("BUILDWORKPRO_SECRET", "whsec_example"))
                .dedupe(MemoryStore::default())
                .build()?,
            procore: Webhook::builder(Procore::new())
                .secret(secret("PROCORE_AUTHORIZATION", "Bearer example"))
                .ignore_source_application(secret("PROCORE_OWN_APP_ID", "our-app"))
                .dedupe(MemoryStore::default())
                .build()?,
            hcss: Webhook::builder(Hcss::new())
                .secret(secret("HCSS_URL_TOKEN", "example-token"))
                .dedupe(MemoryStore::default())
                .build()?,
        })
    }

    /// The webhook resources, for `App::configure`.
    fn routes(&self, cfg: &mut web::ServiceConfig) {
        cfg.service(
            web::resource("/webhooks/buildworkpro")
                .wrap(self.buildworkpro.clone())
                .route(web::post().to(on_buildworkpro)),
        )
        .service(
            web::resource("/webhooks/procore")
                .wrap(self.procore.clone())
                .route(web::post().to(on_procore)),
        )
        // HCSS challenges with GET on the same URL: the middleware answers it.
        .service(
            web::resource("/webhooks/hcss")
                .wrap(self.hcss.clone())
                .route(web::post().to(on_hcss))
                .route(web::get().to(HttpResponse::Ok)),
        );
    }
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hooks = web::Data::new(Hooks::from_env()?);
    let server = HttpServer::new(move || {
        let hooks = hooks.clone();
        App::new()
            // The application as it was before webhooks.
            .route("/health", web::get().to(|| async { "ok" }))
            .route("/api/hello", web::get().to(hello))
            .configure(|cfg| hooks.routes(cfg))
    })
    .bind("127.0.0.1:8788")?;
    eprintln!("listening on http://127.0.0.1:8788");
    server.run().await?;
    Ok(())
}
