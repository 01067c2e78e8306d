//! The axum example: the layer protects only its routes; the existing ones are untouched.

#[path = "../examples/axum_existing_router.rs"]
#[allow(dead_code)]
mod example;

mod common;

use common::{send, Framing};
use hookguard::{schemes::BuildWorkPro, Scheme, SignParams};

#[tokio::test]
async fn unrelated_routes_are_untouched_and_webhook_routes_are_protected() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, example::app().unwrap()).await.unwrap() });

    let health = send(&addr, "GET", "/health", &[], b"", Framing::Length).await;
    assert_eq!((health.status, health.body.as_slice()), (200, b"ok".as_slice()));

    // An unsigned POST to an existing JSON route still works, body intact.
    let json = [("content-type".to_owned(), "application/json".to_owned())];
    let echo = send(&addr, "POST", "/api/echo", &json, br#"{"a":1}"#, Framing::Length).await;
    assert_eq!(echo.status, 200);
    assert_eq!(echo.body, br#"{"a":1}"#);

    // The same unsigned POST to a webhook route is refused by the layer.
    let hook = send(
        &addr,
        "POST",
        "/webhooks/buildworkpro",
        &json,
        br#"{"a":1}"#,
        Framing::Length,
    )
    .await;
    assert_eq!((hook.status, hook.code().as_deref()), (401, Some("missing_signature")));

    // A genuine delivery reaches the typed handler (204), a copy is answered as a duplicate.
    let body =
        br#"{"id":"evt_ex","type":"bid.accepted","created_at":"2026-04-25T17:42:01.812Z","tenant_id":1,"data":{}}"#;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signed = BuildWorkPro::new()
        .sign("whsec_example", body, &SignParams::new(now))
        .unwrap();
    let h: Vec<(String, String)> = signed
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        send(&addr, "POST", "/webhooks/buildworkpro", &h, body, Framing::Length)
            .await
            .status,
        204
    );
    assert_eq!(
        send(&addr, "POST", "/webhooks/buildworkpro", &h, body, Framing::Length)
            .await
            .status,
        200
    );

    // HCSS challenge on the same URL.
    let c = send(&addr, "GET", "/webhooks/hcss?challenge=xyz", &[], b"", Framing::Length).await;
    assert_eq!((c.status, c.body.as_slice()), (200, b"xyz".as_slice()));
}
