//! The conformance table against the actix-web middleware, through a real actix-web server on
//! 127.0.0.1 (its own thread and actix system, two workers), driven by the same raw-HTTP client
//! as the tower adapter's run.

mod common;

use std::net::TcpListener;
use std::sync::mpsc;

use actix_web::{http::StatusCode, web, App, HttpResponse, HttpServer};
use common::{routes, run_all, Form, Handler, HandlerKind};
use hookguard_actix::{Verified, VerifiedDelivery, Webhook};
use hookguard_core::envelope::BuildWorkProEvent;

fn start() -> (String, Handler, actix_web::dev::ServerHandle) {
    let handler = Handler::default();
    let hooks: Vec<(&'static str, HandlerKind, Option<usize>, Webhook)> = routes()
        .into_iter()
        .map(|r| {
            (
                r.path,
                r.handler,
                r.app_limit,
                Webhook::from(
                    hookguard_core::Receiver::new(r.verifier)
                        .with_dedupe(r.dedupe)
                        .with_budget(r.budget),
                ),
            )
        })
        .collect();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    let h = handler.clone();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                let mut app = App::new().route("/health", web::get().to(|| async { "ok" }));
                for (path, kind, app_limit, hook) in &hooks {
                    let h = h.clone();
                    let post = match kind {
                        HandlerKind::Delivery => web::post().to(move |VerifiedDelivery(d): VerifiedDelivery| {
                            let h = h.clone();
                            async move { HttpResponse::new(StatusCode::from_u16(h.handle(&d).await).unwrap()) }
                        }),
                        HandlerKind::RawBody => {
                            web::post().to(move |VerifiedDelivery(d): VerifiedDelivery, body: web::Bytes| {
                                let h = h.clone();
                                async move {
                                    assert_eq!(body.len(), d.body().len());
                                    HttpResponse::new(StatusCode::from_u16(h.handle(&d).await).unwrap())
                                }
                            })
                        }
                        HandlerKind::Json => web::post().to(
                            move |VerifiedDelivery(d): VerifiedDelivery, v: web::Json<serde_json::Value>| {
                                let h = h.clone();
                                async move {
                                    assert_eq!(v["type"].as_str(), d.event_type());
                                    HttpResponse::new(StatusCode::from_u16(h.handle(&d).await).unwrap())
                                }
                            },
                        ),
                        HandlerKind::Form => {
                            web::post().to(move |VerifiedDelivery(d): VerifiedDelivery, f: web::Form<Form>| {
                                let h = h.clone();
                                async move {
                                    assert_eq!(f.payload.len() + "payload=".len(), d.body().len());
                                    HttpResponse::new(StatusCode::from_u16(h.handle(&d).await).unwrap())
                                }
                            })
                        }
                        HandlerKind::Typed => web::post().to(
                            move |VerifiedDelivery(d): VerifiedDelivery, Verified(e): Verified<BuildWorkProEvent>| {
                                let h = h.clone();
                                async move {
                                    assert_eq!(Some(e.id.as_str()), d.event_id());
                                    HttpResponse::new(StatusCode::from_u16(h.handle(&d).await).unwrap())
                                }
                            },
                        ),
                        HandlerKind::TypedValue => web::post().to(
                            move |VerifiedDelivery(d): VerifiedDelivery, Verified(v): Verified<serde_json::Value>| {
                                let h = h.clone();
                                async move {
                                    assert!(v.is_object());
                                    HttpResponse::new(StatusCode::from_u16(h.handle(&d).await).unwrap())
                                }
                            },
                        ),
                    };
                    let mut resource = web::resource(*path);
                    if let Some(n) = *app_limit {
                        resource = resource
                            .app_data(web::PayloadConfig::new(n))
                            .app_data(web::JsonConfig::default().limit(n))
                            .app_data(web::FormConfig::default().limit(n));
                    }
                    app = app.service(
                        resource
                            .wrap(hook.clone())
                            .route(post)
                            .route(web::get().to(HttpResponse::Ok)),
                    );
                }
                app
            })
            .workers(2)
            .listen(listener)
            .unwrap()
            .run();
            tx.send(server.handle()).unwrap();
            server.await.unwrap();
        });
    });
    (addr, handler, rx.recv().unwrap())
}

/// The actix middleware passes the table, and gives every case the same answer as the tower
/// layer — status, headers (but `date`; `retry-after` by presence) and body, not only the
/// status and code the table checks.
#[test]
fn actix_adapter_passes_the_conformance_table_and_answers_as_tower_does() {
    let (actix_addr, actix_handler, server) = start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (actix_answers, tower_answers) = rt.block_on(async {
        let a = run_all(&actix_addr, &actix_handler).await;
        let (tower_addr, tower_handler) = common::start_tower().await;
        (a, run_all(&tower_addr, &tower_handler).await)
    });
    rt.block_on(server.stop(true));
    assert_eq!(actix_answers.len(), tower_answers.len());
    let differ: Vec<String> = actix_answers
        .iter()
        .zip(&tower_answers)
        .filter(|(a, t)| a != t)
        .map(|(a, t)| {
            format!(
                "{}: actix {} {:?} {:?} / tower {} {:?} {:?}",
                a.0,
                a.1,
                a.2,
                String::from_utf8_lossy(&a.3),
                t.1,
                t.2,
                String::from_utf8_lossy(&t.3)
            )
        })
        .collect();
    assert!(
        differ.is_empty(),
        "{} cases answered differently:\n{}",
        differ.len(),
        differ.join("\n")
    );
}

/// Every answer the extractors give is the tower adapter's: status, headers and body, byte for
/// byte (a wiring mistake names its own framework's middleware, with the same code).
#[tokio::test]
async fn extractor_rejections_match_tower() {
    use axum::response::IntoResponse as _;
    use hookguard_core::{ChallengeAnswer, Rejection};

    async fn tower(r: hookguard_tower::VerifiedRejection) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let res = r.into_response();
        let mut headers: Vec<_> = res
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        headers.sort();
        let status = res.status().as_u16();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        (status, headers, body.to_vec())
    }
    async fn actix(r: hookguard_actix::VerifiedRejection) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let res = actix_web::ResponseError::error_response(&r);
        let mut headers: Vec<_> = res
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        headers.sort();
        let status = res.status().as_u16();
        let body = actix_web::body::to_bytes(res.into_body()).await.unwrap();
        (status, headers, body.to_vec())
    }

    let rejections = [
        Rejection::MissingSignature("buildworkpro-signature"),
        Rejection::MalformedSignature,
        Rejection::SignatureMismatch,
        Rejection::Unauthorized,
        Rejection::MissingHeader("webhook-id"),
        Rejection::MalformedTimestamp,
        Rejection::TimestampOutOfWindow,
        Rejection::HeaderTooLarge("authorization"),
        Rejection::TooManySignatures,
        Rejection::BodyTooLarge { limit: 1024 },
        Rejection::BodyReadFailed,
        Rejection::InvalidPayload("body is not JSON"),
        Rejection::UnexpectedPayload {
            detail: "missing field `x`".into(),
        },
        Rejection::BodyReadTimeout,
        Rejection::MethodNotAllowed,
        Rejection::ChallengeMissing,
        Rejection::ChallengeTooLong { limit: 8 },
        Rejection::DuplicateInFlight,
        Rejection::StoreUnavailable,
        Rejection::InboxFull,
        Rejection::HandlerFailed,
        Rejection::HandlerTimeout,
    ];
    for r in rejections {
        let t = tower(hookguard_tower::VerifiedRejection(
            hookguard_core::extract::Refusal::Rejected(r.clone()),
        ))
        .await;
        let a = actix(hookguard_actix::VerifiedRejection(
            hookguard_core::extract::Refusal::Rejected(r.clone()),
        ))
        .await;
        assert_eq!(a, t, "{}", r.code());
    }
    let echo = ChallengeAnswer::new("<b>abc</b>");
    assert_eq!(
        actix(hookguard_actix::VerifiedRejection(
            hookguard_core::extract::Refusal::Challenge(echo.clone())
        ))
        .await,
        tower(hookguard_tower::VerifiedRejection(
            hookguard_core::extract::Refusal::Challenge(echo)
        ))
        .await
    );
    use hookguard_core::extract::Refusal;
    for refusal in [
        Refusal::Ignored,
        Refusal::MissingMiddleware,
        Refusal::MissingVerifier,
        Refusal::BodyTaken,
    ] {
        let t = tower(hookguard_tower::VerifiedRejection(refusal.clone())).await;
        let a = actix(hookguard_actix::VerifiedRejection(refusal.clone())).await;
        assert_eq!(a, t, "{refusal}");
    }
}
