//! The conformance table against the tower layer, through a real axum server on 127.0.0.1.

mod common;

use axum::body::Bytes;
use axum::{http::StatusCode, routing::post, Router};
use common::{routes, run_all, Handler, HandlerKind};
use hookguard_core::envelope::BuildWorkProEvent;
use hookguard_tower::{Verified, VerifiedDelivery, WebhookLayer};

async fn start() -> (String, Handler) {
    let handler = Handler::default();
    let mut app = Router::new().route("/health", axum::routing::get(|| async { "ok" }));
    for r in routes() {
        let h = handler.clone();
        let route = match r.handler {
            HandlerKind::Delivery => post(move |VerifiedDelivery(d): VerifiedDelivery| async move {
                StatusCode::from_u16(h.handle(&d).await).unwrap()
            }),
            HandlerKind::RawBody => post(move |VerifiedDelivery(d): VerifiedDelivery, body: Bytes| async move {
                assert_eq!(body.len(), d.body().len());
                StatusCode::from_u16(h.handle(&d).await).unwrap()
            }),
            HandlerKind::Typed => post(
                move |VerifiedDelivery(d): VerifiedDelivery, Verified(e): Verified<BuildWorkProEvent>| async move {
                    assert_eq!(Some(e.id.as_str()), d.event_id());
                    StatusCode::from_u16(h.handle(&d).await).unwrap()
                },
            ),
        }
        .get(|| async { StatusCode::OK });
        app = app.route(
            r.path,
            route.layer(WebhookLayer::from(
                hookguard_core::Receiver::new(r.verifier).with_dedupe(r.dedupe),
            )),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, handler)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_adapter_passes_the_conformance_table() {
    let (addr, handler) = start().await;
    run_all(&addr, &handler).await;
}
