//! The actix-specific parts the conformance table cannot see: the payload handed back to
//! downstream extractors, the typed extractors, the standalone `VerifiedNoDedupe<T>`, the handler budget
//! and the wrapped service's errors.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::{web, App, HttpResponse};
use hookguard_actix::{Verified, VerifiedDelivery, VerifiedNoDedupe, Webhook};
use hookguard_core::clock::ManualClock;
use hookguard_core::dedupe::MemoryStore;
use hookguard_core::envelope::BuildWorkProEvent;
use hookguard_core::schemes::{BuildWorkPro, GitHub, Hcss};
use hookguard_core::{Scheme, SignParams, Verifier};

const NOW: u64 = 1_700_000_000;
const SECRET: &str = "whsec_actix";

fn bwp_body(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","type":"bid.accepted","created_at":"2026-04-25T17:42:01.812Z","tenant_id":17,"data":{{"id":9}}}}"#
    )
}

/// A signed BuildWorkPro request to `uri`.
fn bwp_request(uri: &str, id: &str) -> TestRequest {
    signed_request(&BuildWorkPro::new(), uri, "application/json", bwp_body(id))
}

/// A POST of `body` to `uri`, signed by `scheme` with [`SECRET`] at [`NOW`].
fn signed_request(scheme: &impl Scheme, uri: &str, content_type: &str, body: String) -> TestRequest {
    let signed = scheme.sign(SECRET, body.as_bytes(), &SignParams::new(NOW)).unwrap();
    let mut req = TestRequest::post()
        .uri(uri)
        .insert_header(("content-type", content_type))
        .set_payload(body);
    for (name, value) in signed.headers.iter() {
        req = req.append_header((name.as_str(), value.to_str().unwrap()));
    }
    req
}

fn hooks() -> Webhook {
    Webhook::builder(BuildWorkPro::new())
        .secret(SECRET)
        .clock(ManualClock::new(NOW))
        .dedupe(MemoryStore::default())
        .build()
        .unwrap()
}

fn verifier() -> Verifier {
    Verifier::builder(BuildWorkPro::new())
        .secret(SECRET)
        .clock(ManualClock::new(NOW))
        .build()
        .unwrap()
}

async fn json_of<B: actix_web::body::MessageBody>(res: ServiceResponse<B>) -> serde_json::Value
where
    B::Error: std::fmt::Debug,
{
    let body = actix_web::body::to_bytes(res.into_body()).await.unwrap();
    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)
}

#[actix_web::test]
async fn downstream_extractors_get_the_body_back() {
    let app = test::init_service(
        App::new()
            .service(web::resource("/json").wrap(hooks()).route(web::post().to(
                |v: web::Json<serde_json::Value>| async move {
                    HttpResponse::Ok().body(v["id"].as_str().unwrap().to_owned())
                },
            )))
            .service(web::resource("/bytes").wrap(hooks()).route(web::post().to(
                |b: web::Bytes, VerifiedDelivery(d): VerifiedDelivery| async move {
                    assert_eq!(&b, d.body());
                    HttpResponse::Ok().body(b)
                },
            )))
            .service(web::resource("/typed").wrap(hooks()).route(
                web::post().to(|Verified(e): Verified<BuildWorkProEvent>| async move { HttpResponse::Ok().body(e.id) }),
            )),
    )
    .await;
    let res = test::call_service(&app, bwp_request("/json", "evt_json").to_request()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(test::read_body(res).await, "evt_json");
    let res = test::call_service(&app, bwp_request("/bytes", "evt_bytes").to_request()).await;
    assert_eq!(test::read_body(res).await, bwp_body("evt_bytes"));
    let res = test::call_service(&app, bwp_request("/typed", "evt_typed").to_request()).await;
    assert_eq!(test::read_body(res).await, "evt_typed");
}

/// A verifier allowing more than `web::Json`'s own 2 MiB: a genuine 2.5 MiB delivery reaches a
/// `web::Json` handler (it answered a plain 413 before, which BuildWorkPro never retries).
#[actix_web::test]
async fn web_json_reads_a_body_as_large_as_the_verifier_allows() {
    let big = Webhook::builder(BuildWorkPro::new())
        .secret(SECRET)
        .clock(ManualClock::new(NOW))
        .max_body(3 << 20)
        .dedupe(MemoryStore::default())
        .build()
        .unwrap();
    let app =
        test::init_service(App::new().service(web::resource("/json").wrap(big).route(
            web::post().to(|v: web::Json<serde_json::Value>| async move {
                HttpResponse::Ok().body(v["id"].as_str().unwrap().to_owned())
            }),
        )))
        .await;
    let body = format!(
        r#"{{"id":"evt_big_json","type":"bid.accepted","data":{{"notes":"{}"}}}}"#,
        "x".repeat(5 << 19)
    );
    let req = signed_request(&BuildWorkPro::new(), "/json", "application/json", body);
    let res = test::call_service(&app, req.to_request()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(test::read_body(res).await, "evt_big_json");
}

/// An application's own extractor config around the resource keeps its settings and gets the
/// verifier's limit: a `JsonConfig` that takes bodies without a `Content-Type`, limited to
/// 16 KiB, still takes them, now up to the verifier's limit (replacing the config lost the
/// setting: a `400`; keeping it whole kept the 16 KiB: a `413`, both permanent for senders).
#[actix_web::test]
async fn an_applications_own_extractor_config_keeps_its_settings_with_the_verifiers_limit() {
    let app = test::init_service(
        App::new().service(
            web::resource("/")
                .app_data(web::JsonConfig::default().limit(16 << 10).content_type_required(false))
                .wrap(hooks())
                .route(web::post().to(|v: web::Json<serde_json::Value>| async move {
                    HttpResponse::Ok().body(v["id"].as_str().unwrap_or_default().to_owned())
                })),
        ),
    )
    .await;
    let body = format!(
        r#"{{"id":"evt_untyped","type":"bid.accepted","pad":"{}"}}"#,
        "x".repeat(32 << 10)
    );
    let signed = BuildWorkPro::new()
        .sign(SECRET, body.as_bytes(), &SignParams::new(NOW))
        .unwrap();
    let mut req = TestRequest::post().uri("/").set_payload(body);
    for (name, value) in signed.headers.iter() {
        req = req.append_header((name.as_str(), value.to_str().unwrap()));
    }
    let res = test::call_service(&app, req.to_request()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(test::read_body(res).await, "evt_untyped");
}

/// A middleware inside this one that hands on a larger body than the one verified (as
/// decompression does) is measured against the extractors' limit: actix's default or the
/// verifier's by default (a `413`), the application's own with `extractor_limit` (the
/// application's larger configs cannot be read, so they are replaced).
#[actix_web::test]
async fn a_larger_extractor_limit_is_given_with_extractor_limit() {
    let grown = 3 << 20;
    for (limit, want) in [(None, 413), (Some(8 << 20), 200)] {
        let mut hooks = hooks();
        if let Some(l) = limit {
            hooks = hooks.extractor_limit(l);
        }
        let app = test::init_service(
            App::new().service(
                web::resource("/")
                    .app_data(web::PayloadConfig::new(16 << 20))
                    .wrap_fn(move |mut req, srv| {
                        req.set_payload(actix_web::dev::Payload::from(bytes::Bytes::from(vec![b' '; grown])));
                        srv.call(req)
                    })
                    .wrap(hooks)
                    .route(web::post().to(|b: web::Bytes| async move { HttpResponse::Ok().body(b.len().to_string()) })),
            ),
        )
        .await;
        let req = signed_request(
            &BuildWorkPro::new(),
            "/",
            "application/json",
            r#"{"id":"evt_grown","type":"t"}"#.to_owned(),
        );
        let res = test::call_service(&app, req.to_request()).await;
        assert_eq!(res.status().as_u16(), want, "{limit:?}");
    }
}

/// `web::Form` reads a body as large as the verifier allows, as axum's `Form` does: a genuine
/// 20 KiB Slack interactivity POST (form-encoded) was a plain 413 from `FormConfig`'s 16 KiB.
#[actix_web::test]
async fn web_form_reads_a_body_as_large_as_the_verifier_allows() {
    use hookguard_core::schemes::Slack;
    #[derive(serde::Deserialize)]
    struct Interaction {
        payload: String,
    }
    let slack = Webhook::builder(Slack::new())
        .secret(SECRET)
        .clock(ManualClock::new(NOW))
        .dedupe(MemoryStore::default())
        .build()
        .unwrap();
    let app = test::init_service(App::new().service(web::resource("/slack").wrap(slack).route(
        web::post().to(|f: web::Form<Interaction>| async move { HttpResponse::Ok().body(f.payload.len().to_string()) }),
    )))
    .await;
    let body = format!("payload={}", "x".repeat(20 << 10));
    let req = signed_request(&Slack::new(), "/slack", "application/x-www-form-urlencoded", body);
    let res = test::call_service(&app, req.to_request()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(test::read_body(res).await, (20 << 10).to_string());
}

#[actix_web::test]
async fn a_body_that_is_not_the_type_answers_a_retryable_unexpected_payload() {
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Other {
        missing_field: u8,
    }
    let app = test::init_service(
        App::new().service(
            web::resource("/")
                .wrap(hooks())
                .route(web::post().to(|Verified(_): Verified<Other>| async { HttpResponse::NoContent().finish() })),
        ),
    )
    .await;
    let res = test::call_service(&app, bwp_request("/", "evt_shape").to_request()).await;
    // Authentic, so the mismatch is our model's gap: retryable, never a permanent 4xx.
    assert_eq!(res.status(), 500);
    assert_eq!(json_of(res).await["error"], "unexpected_payload");
}

#[actix_web::test]
async fn verified_without_the_middleware_names_it() {
    let app = test::init_service(App::new().route(
        "/",
        web::post().to(|VerifiedDelivery(_): VerifiedDelivery| async { HttpResponse::NoContent().finish() }),
    ))
    .await;
    let res = test::call_service(&app, bwp_request("/", "evt_nolayer").to_request()).await;
    assert_eq!(res.status(), 500);
    let v = json_of(res).await;
    assert_eq!(v["error"], "missing_webhook_layer");
    assert!(v["message"].as_str().unwrap().contains("actix Webhook"));
}

#[actix_web::test]
async fn handler_budget_answers_503_and_releases_the_claim() {
    let calls = Arc::new(AtomicU32::new(0));
    let hooks = Webhook::builder(BuildWorkPro::new())
        .secret(SECRET)
        .clock(ManualClock::new(NOW))
        .dedupe(MemoryStore::default())
        .handler_budget(Duration::from_millis(50))
        .build()
        .unwrap();
    let c = Arc::clone(&calls);
    let app = test::init_service(
        App::new().service(web::resource("/").wrap(hooks).route(web::post().to(move || {
            let first = c.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                HttpResponse::NoContent().finish()
            }
        }))),
    )
    .await;
    // Over budget: the same 503 + Retry-After + JSON as tower, as an error actix renders.
    let err = app
        .call(bwp_request("/", "evt_budget").to_request())
        .await
        .map(|_| ())
        .unwrap_err();
    let res = err.error_response();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers().get("retry-after").unwrap(), "5");
    let body = actix_web::body::to_bytes(res.into_body()).await.unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["error"],
        "handler_timeout"
    );
    // The claim was released: the retry is handled, then it is a duplicate.
    let res = test::call_service(&app, bwp_request("/", "evt_budget").to_request()).await;
    assert_eq!(res.status(), 204);
    let res = test::call_service(&app, bwp_request("/", "evt_budget").to_request()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(json_of(res).await["status"], "duplicate");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[actix_web::test]
async fn a_service_error_is_passed_on_and_releases_the_claim() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let app = test::init_service(
        App::new().service(web::resource("/").wrap(hooks()).route(web::post().to(move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(actix_web::error::ErrorServiceUnavailable("db down"))
                } else {
                    Ok(HttpResponse::NoContent().finish())
                }
            }
        }))),
    )
    .await;
    let res = test::call_service(&app, bwp_request("/", "evt_err").to_request()).await;
    assert_eq!(res.status(), 503);
    let res = test::call_service(&app, bwp_request("/", "evt_err").to_request()).await;
    assert_eq!(res.status(), 204);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[actix_web::test]
async fn other_routes_are_untouched() {
    let app = test::init_service(
        App::new().route("/health", web::get().to(|| async { "ok" })).service(
            web::resource("/hook")
                .wrap(hooks())
                .route(web::post().to(HttpResponse::NoContent)),
        ),
    )
    .await;
    let res = test::call_service(&app, TestRequest::get().uri("/health").to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(test::read_body(res).await, "ok");
}

#[actix_web::test]
async fn verify_stands_alone_with_a_verifier_in_app_data() {
    let app = test::init_service(App::new().app_data(web::Data::new(verifier())).route(
        "/bwp",
        web::post().to(|VerifiedNoDedupe(e): VerifiedNoDedupe<BuildWorkProEvent>| async move {
            HttpResponse::Ok().body(e.id)
        }),
    ))
    .await;

    let res = test::call_service(&app, bwp_request("/bwp", "evt_verify").to_request()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(test::read_body(res).await, "evt_verify");
    // Not deduplicated: the same delivery reaches the handler again.
    let res = test::call_service(&app, bwp_request("/bwp", "evt_verify").to_request()).await;
    assert_eq!(res.status(), 200);

    let forged = TestRequest::post()
        .uri("/bwp")
        .insert_header(("buildworkpro-signature", format!("t={NOW},v1={}", "0".repeat(64))))
        .set_payload(bwp_body("evt_forged"))
        .to_request();
    let res = test::call_service(&app, forged).await;
    assert_eq!(res.status(), 401);
    assert_eq!(json_of(res).await["error"], "signature_mismatch");

    let big = bwp_request("/bwp", &"x".repeat(2 << 20)).to_request();
    let res = test::call_service(&app, big).await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(json_of(res).await["error"], "body_too_large");

    // A plain `Verifier` in app data works too; the challenge is echoed by the error.
    let hcss = Verifier::builder(Hcss::new())
        .secret("tok")
        .max_challenge_len(8)
        .build()
        .unwrap();
    let app = test::init_service(App::new().app_data(hcss).route(
        "/plain/hcss",
        web::route().to(|VerifiedNoDedupe(_): VerifiedNoDedupe<serde_json::Value>| async {
            HttpResponse::NoContent().finish()
        }),
    ))
    .await;
    let res = test::call_service(&app, TestRequest::get().uri("/plain/hcss?challenge=abc").to_request()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers().get("x-content-type-options").unwrap(), "nosniff");
    assert!(res
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(test::read_body(res).await, "abc");
    let res = test::call_service(
        &app,
        TestRequest::get().uri("/plain/hcss?challenge=123456789").to_request(),
    )
    .await;
    assert_eq!(res.status(), 400);
    assert_eq!(json_of(res).await["error"], "challenge_too_long");
    let res = test::call_service(&app, TestRequest::put().uri("/plain/hcss").to_request()).await;
    assert_eq!(res.status(), 405);
    // RFC 9110: a 405 names the methods, as the middleware's does.
    assert_eq!(res.headers().get("allow").unwrap(), "GET, POST");
    assert_eq!(json_of(res).await["error"], "method_not_allowed");
    let res = test::call_service(
        &app,
        TestRequest::post()
            .uri("/plain/hcss?token=tok")
            .set_payload(r#"{"companyId":"c","eventType":"EmployeeUpdated","businessUnitId":"b","id":"e1"}"#)
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), 204);
}

/// A GitHub delivery to `/`, signed with secret `s` at `NOW`.
fn signed_github_post() -> TestRequest {
    let body = br#"{"a":1}"#;
    let signed = GitHub::new().sign("s", body, &SignParams::new(NOW).id("d1")).unwrap();
    let mut req = TestRequest::post().uri("/").set_payload(&body[..]);
    for (name, value) in signed.headers.iter() {
        req = req.append_header((name.as_str(), value.to_str().unwrap()));
    }
    req
}

/// A body extractor listed before `VerifiedNoDedupe` takes the body: the standalone extractor
/// names that wiring mistake (500) instead of verifying an empty body, which refused a genuine
/// delivery with a permanent 401.
#[actix_web::test]
async fn a_body_taken_before_the_standalone_extractor_is_a_wiring_error() {
    let verifier = Verifier::builder(GitHub::new())
        .secret("s")
        .clock(hookguard_core::clock::ManualClock::new(NOW))
        .build()
        .unwrap();
    let app = test::init_service(App::new().app_data(web::Data::new(verifier)).route(
        "/",
        web::post().to(
            |_raw: web::Bytes, VerifiedNoDedupe(_): VerifiedNoDedupe<serde_json::Value>| async {
                HttpResponse::NoContent().finish()
            },
        ),
    ))
    .await;
    let res = test::call_service(&app, signed_github_post().to_request()).await;
    assert_eq!(res.status(), 500);
    assert_eq!(json_of(res).await["error"], "body_already_taken");
    // HTTP/2 needs no Content-Length: the body taken is still told apart (a verdict on the
    // empty rest was a permanent 401 for a genuine delivery).
    let mut h2 = signed_github_post()
        .version(actix_web::http::Version::HTTP_2)
        .to_request();
    h2.headers_mut().remove(actix_web::http::header::CONTENT_LENGTH);
    let res = test::call_service(&app, h2).await;
    assert_eq!(res.status(), 500);
    assert_eq!(json_of(res).await["error"], "body_already_taken");
}

#[actix_web::test]
async fn verify_without_a_verifier_names_it() {
    let app = test::init_service(App::new().route(
        "/",
        web::post().to(|VerifiedNoDedupe(_): VerifiedNoDedupe<serde_json::Value>| async {
            HttpResponse::NoContent().finish()
        }),
    ))
    .await;
    let res = test::call_service(&app, signed_github_post().to_request()).await;
    assert_eq!(res.status(), 500);
    assert_eq!(json_of(res).await["error"], "missing_verifier");
}
