//! The layer's edges that the conformance table does not reach: handler budget, a panicking
//! handler, a dropped request future, and the extractors without the layer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::FromRef;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use axum::Router;
use hookguard_core::clock::ManualClock;
use hookguard_core::dedupe::{Claim, DedupeStore, MemoryStore};
use hookguard_core::schemes::{BuildWorkPro, Procore};
use hookguard_core::{Scheme, SignParams, Verifier};
use hookguard_tower::{Verified, VerifiedDelivery, VerifiedNoDedupe, WebhookLayer};
use tower::ServiceExt;

const NOW: u64 = 1_700_000_000;
const SECRET: &str = "whsec_layer_tests";

fn signed(id: &str) -> Request<Body> {
    let body = format!(r#"{{"id":"{id}","type":"bid.accepted","created_at":"t","tenant_id":1,"data":{{}}}}"#);
    let s = BuildWorkPro::new()
        .sign(SECRET, body.as_bytes(), &SignParams::new(NOW))
        .unwrap();
    let mut req = Request::post("/hook").body(Body::from(body)).unwrap();
    req.headers_mut().extend(s.headers);
    req
}

async fn status_and_code(app: &Router, req: Request<Body>) -> (StatusCode, Option<String>) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    let code = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned));
    (status, code)
}

fn layer(store: Arc<MemoryStore>, budget: Option<Duration>) -> WebhookLayer {
    let mut b = WebhookLayer::builder(BuildWorkPro::new())
        .secret(SECRET)
        .clock(ManualClock::new(NOW))
        .dedupe(store);
    if let Some(d) = budget {
        b = b.handler_budget(d);
    }
    b.build().unwrap()
}

#[tokio::test]
async fn handler_over_budget_answers_503_and_the_retry_is_handled() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let app = Router::new().route(
        "/hook",
        post(move |VerifiedDelivery(_): VerifiedDelivery| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                StatusCode::NO_CONTENT
            }
        })
        .layer(layer(Arc::new(MemoryStore::new(100)), Some(Duration::from_millis(100)))),
    );
    assert_eq!(
        status_and_code(&app, signed("evt_slow")).await,
        (StatusCode::SERVICE_UNAVAILABLE, Some("handler_timeout".into()))
    );
    assert_eq!(
        status_and_code(&app, signed("evt_slow")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        status_and_code(&app, signed("evt_slow")).await.0,
        StatusCode::OK,
        "now a duplicate"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_panicking_handler_releases_its_claim() {
    let store = Arc::new(MemoryStore::new(100));
    let app = Router::new().route(
        "/hook",
        post(|| async {
            panic!("handler bug");
            #[allow(unreachable_code)]
            StatusCode::OK
        })
        .layer(layer(store.clone(), None)),
    );
    let r = tokio::spawn({
        let app = app.clone();
        async move { app.oneshot(signed("evt_panic")).await }
    })
    .await;
    assert!(r.is_err(), "the handler panicked");
    assert!(matches!(
        store
            .claim("buildworkpro:evt_panic", Duration::from_secs(1))
            .await
            .unwrap(),
        Claim::New(_)
    ));
}

#[tokio::test]
async fn a_dropped_request_future_finishes_its_handler() {
    let store = Arc::new(MemoryStore::new(100));
    let l = layer(store.clone(), None);
    let rx = Arc::clone(l.receiver());
    let health = rx.health();
    let app = Router::new().route(
        "/hook",
        post(|| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            StatusCode::OK
        })
        .layer(l),
    );
    let fut = app.clone().oneshot(signed("evt_dropped"));
    assert!(tokio::time::timeout(Duration::from_millis(100), fut).await.is_err());
    // Dropped while the handler ran (the sender hung up): the handler goes on, holding its
    // claim, and its delivery is done once it ends, so the sender's retry is a duplicate.
    let claim = |key| {
        let store = store.clone();
        async move { store.claim(key, Duration::from_secs(1)).await.unwrap() }
    };
    assert_eq!(claim("buildworkpro:evt_dropped").await, Claim::InFlight);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(claim("buildworkpro:evt_dropped").await, Claim::Done);
    // The sender got no answer: a failure to it, whatever the handler answered in the end.
    assert_eq!(health.consecutive_failures(), 1);
}

#[tokio::test]
async fn verified_without_the_layer_names_the_missing_layer() {
    let app = Router::new().route(
        "/hook",
        post(|Verified(_): Verified<serde_json::Value>| async { StatusCode::OK }),
    );
    assert_eq!(
        status_and_code(&app, signed("evt_x")).await,
        (StatusCode::INTERNAL_SERVER_ERROR, Some("missing_webhook_layer".into()))
    );
}

#[derive(Clone)]
struct State {
    procore: Verifier,
}

impl FromRef<State> for Verifier {
    fn from_ref(s: &State) -> Verifier {
        s.procore.clone()
    }
}

#[tokio::test]
async fn standalone_verify_extractor() {
    let state = State {
        procore: Verifier::builder(Procore::new())
            .secret("Bearer t")
            .ignore_source_application("own")
            .build()
            .unwrap(),
    };
    let app = Router::new()
        .route(
            "/hook",
            post(|VerifiedNoDedupe(_): VerifiedNoDedupe<serde_json::Value>| async { StatusCode::NO_CONTENT }),
        )
        .with_state(state);
    let req = |auth: &str, app_id: &str| {
        let body = format!(
            r#"{{"id":1,"ulid":"01EDPD2J6SBY1163N77H95GW09","metadata":{{"source_application_id":"{app_id}"}}}}"#
        );
        Request::post("/hook")
            .header("authorization", auth)
            .body(Body::from(body))
            .unwrap()
    };
    assert_eq!(
        status_and_code(&app, req("Bearer t", "other")).await,
        (StatusCode::NO_CONTENT, None)
    );
    assert_eq!(
        status_and_code(&app, req("Bearer x", "other")).await,
        (StatusCode::UNAUTHORIZED, Some("unauthorized".into()))
    );
    // The integrator's own change: answered 200 ignored, the handler is not called.
    assert_eq!(
        status_and_code(&app, req("Bearer t", "own")).await,
        (StatusCode::OK, None)
    );
    // A method the route takes only for the extractor to refuse: 405 with `Allow`, as the
    // layer answers (RFC 9110).
    let any = Router::new()
        .route(
            "/hook",
            axum::routing::any(|VerifiedNoDedupe(_): VerifiedNoDedupe<serde_json::Value>| async {
                StatusCode::NO_CONTENT
            }),
        )
        .with_state(State {
            procore: Verifier::builder(Procore::new()).secret("Bearer t").build().unwrap(),
        });
    let res = any
        .oneshot(Request::put("/hook").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers().get("allow").unwrap(), "POST");
}

/// A marker an outer layer puts in the request's extensions.
#[derive(Clone)]
struct Outer(&'static str);

#[tokio::test]
async fn the_handler_gets_the_original_request_head_and_extensions() {
    // The layer moves the request's own parts into the handler's request: the method, the
    // URI with its query, every header, the version and what outer layers put in the
    // extensions all arrive, next to the verified delivery and the body.
    let app = Router::new()
        .route(
            "/hook",
            post(|req: Request<Body>| async move {
                let (parts, body) = req.into_parts();
                assert_eq!(parts.method, axum::http::Method::POST);
                assert_eq!(parts.uri, "/hook?tenant=7");
                assert_eq!(parts.headers["x-request-id"], "r-1");
                assert!(parts.headers.contains_key("buildworkpro-signature"));
                assert_eq!(parts.extensions.get::<Outer>().map(|o| o.0), Some("outer"));
                let delivery = parts
                    .extensions
                    .get::<hookguard_core::Delivery>()
                    .expect("the delivery");
                assert_eq!(delivery.event_id(), Some("evt_head"));
                let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                assert_eq!(&bytes[..], &delivery.body()[..]);
                StatusCode::NO_CONTENT
            })
            .layer(layer(Arc::new(MemoryStore::default()), None)),
        )
        .layer(axum::middleware::map_request(|mut req: Request<Body>| async move {
            req.extensions_mut().insert(Outer("outer"));
            req
        }));
    let mut req = signed("evt_head");
    *req.uri_mut() = "/hook?tenant=7".parse().unwrap();
    req.headers_mut().insert("x-request-id", "r-1".parse().unwrap());
    assert_eq!(status_and_code(&app, req).await.0, StatusCode::NO_CONTENT);
}

/// An application's own larger limit set around the layer is replaced (axum cannot tell it);
/// `extractor_limit` gives it, so a body grown inside to 3 MiB reaches the handler.
#[tokio::test]
async fn a_larger_extractor_limit_is_given_with_extractor_limit() {
    let grown = 3 << 20;
    for (limit, want) in [(None, StatusCode::PAYLOAD_TOO_LARGE), (Some(8 << 20), StatusCode::OK)] {
        let mut hooks = layer(Arc::new(MemoryStore::default()), None);
        if let Some(l) = limit {
            hooks = hooks.extractor_limit(l);
        }
        let app = Router::new()
            .route(
                "/hook",
                post(|body: axum::body::Bytes| async move { body.len().to_string() })
                    .layer::<_, std::convert::Infallible>(axum::middleware::map_request(
                        move |req: Request<Body>| async move {
                            let (parts, _) = req.into_parts();
                            Request::from_parts(parts, Body::from(vec![b' '; grown]))
                        },
                    ))
                    .layer(hooks),
            )
            .layer(axum::extract::DefaultBodyLimit::disable());
        let res = app.oneshot(signed("evt_grown_more")).await.unwrap();
        assert_eq!(res.status(), want, "{limit:?}");
    }
}

#[tokio::test]
async fn a_layer_inside_that_grows_the_body_keeps_axums_own_limit() {
    // A layer between hookguard and the handler may hand on a larger body than the one read
    // and verified (a decompression layer does: a 300 KiB gzip body decodes to 1.5 MiB).
    // hookguard hands axum's extractors its own limit, but never less than axum's default
    // (2 MiB), so such a body still reaches a `Bytes` handler instead of a permanent 413.
    let grown = 3 << 19;
    let app = Router::new().route(
        "/hook",
        post(|body: axum::body::Bytes| async move { body.len().to_string() })
            .layer::<_, std::convert::Infallible>(axum::middleware::map_request(move |req: Request<Body>| async move {
                let (parts, _) = req.into_parts();
                Request::from_parts(parts, Body::from(vec![b' '; grown]))
            }))
            .layer(layer(Arc::new(MemoryStore::default()), None)),
    );
    let res = app.oneshot(signed("evt_grown")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 10).await.unwrap();
    assert_eq!(&bytes[..], grown.to_string().as_bytes());
}

#[tokio::test]
async fn body_errors_of_layers_outside_are_answered_as_what_they_are() {
    // tower-http's body layers outside hookguard's fail the body it reads: a length limit is
    // `body_too_large` (503: a limit of this side; not a 400 "connection broke"), a timeout 408
    // — retried by every sender, where a 400 makes BuildWorkPro drop the event at once.
    use futures_util::StreamExt;
    let app = || {
        Router::new().route(
            "/hook",
            post(|VerifiedDelivery(_): VerifiedDelivery| async { "ok" })
                .layer(layer(Arc::new(MemoryStore::default()), None)),
        )
    };
    let limited = app().layer(tower_http::limit::RequestBodyLimitLayer::new(16));
    assert_eq!(
        status_and_code(&limited, signed("evt_outer_limit")).await,
        (StatusCode::SERVICE_UNAVAILABLE, Some("body_too_large".into()))
    );
    // Ten bytes of the body, then `rest`.
    let partly = |id: &str, rest: Result<axum::body::Bytes, std::io::Error>| {
        let (parts, _) = signed(id).into_parts();
        let first = futures_util::stream::iter([Ok(axum::body::Bytes::from_static(b"{\"id\":\"evt"))]);
        let stream = first.chain(futures_util::stream::once(async move { rest }));
        Request::from_parts(parts, Body::from_stream(stream))
    };

    let timed = app().layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        Duration::from_millis(50),
    ));
    let (parts, _) = signed("evt_outer_timeout").into_parts();
    let drip = futures_util::stream::iter([Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"{"))])
        .chain(futures_util::stream::pending());
    let req = Request::from_parts(parts, Body::from_stream(drip));
    assert_eq!(
        status_and_code(&timed, req).await,
        (StatusCode::REQUEST_TIMEOUT, Some("body_read_timeout".into()))
    );
    let timed_out = std::io::Error::from(std::io::ErrorKind::TimedOut);
    assert_eq!(
        status_and_code(&app(), partly("evt_io_timeout", Err(timed_out))).await,
        (StatusCode::REQUEST_TIMEOUT, Some("body_read_timeout".into()))
    );
    // Any other failure of the body is still a broken connection's 400.
    let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    assert_eq!(
        status_and_code(&app(), partly("evt_broken", Err(reset))).await,
        (StatusCode::BAD_REQUEST, Some("body_read_failed".into()))
    );
}
