//! The conformance table's inbox column: the same inbox cases against the tower layer (axum)
//! and the actix-web middleware, each through a real server on 127.0.0.1 with its own SQLite
//! inbox file. In inbox mode a verified delivery is stored and answered `200 accepted`; the
//! route's handler is never called.

mod common;

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc};

use common::{send, Framing, NOW};
use hookguard::clock::ManualClock;
use hookguard::inbox::{InboxState, InboxStore, ListFilter};
use hookguard::response::Acknowledgement;
use hookguard::schemes::{BuildWorkPro, Hcss, Procore, Slack};
use hookguard::sqlite::SqliteInbox;
use hookguard::{ReceiverBuilder, Scheme, SignParams};

const BWP: &str = "whsec_inbox";
const PROCORE: &str = "Bearer inbox-procore";
const HCSS: &str = "inbox-token";
const SLACK: &str = "inbox-slack";

struct Inboxes {
    bwp: SqliteInbox,
    procore: SqliteInbox,
    hcss: SqliteInbox,
    slack: SqliteInbox,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn inboxes(name: &str) -> Inboxes {
    let dir = std::env::temp_dir().join(format!("hg-inbox-conf-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Inboxes {
        bwp: SqliteInbox::builder(dir.join("bwp.db")).max_pending(40).open().unwrap(),
        procore: SqliteInbox::open(dir.join("procore.db")).unwrap(),
        hcss: SqliteInbox::open(dir.join("hcss.db")).unwrap(),
        slack: SqliteInbox::open(dir.join("slack.db")).unwrap(),
        _dir: TempDir(dir),
    }
}

fn builder<T>(scheme: impl Scheme, secret: &str, inbox: &SqliteInbox) -> ReceiverBuilder<T> {
    ReceiverBuilder::new(Arc::new(scheme))
        .secret(secret)
        .clock(ManualClock::new(NOW))
        .inbox(inbox.clone())
}

/// How often a route's own handler ran: never, in inbox mode.
#[derive(Clone, Default)]
struct Calls(Arc<AtomicU32>);

async fn start_tower(ib: &Inboxes, calls: Calls) -> String {
    use axum::{http::StatusCode, routing::post, Router};
    use hookguard::tower::WebhookLayer;
    let route = |calls: Calls| {
        post(move || async move {
            calls.0.fetch_add(1, Ordering::SeqCst);
            StatusCode::NO_CONTENT
        })
        .get(|| async { StatusCode::OK })
    };
    // Outside the webhook layer, as an application's own middleware: which acknowledgement an
    // answer is, from its extensions (Slack's carry no body to say it).
    let ack_header = |mut r: axum::response::Response| async move {
        if let Some(a) = r.extensions().get::<Acknowledgement>().copied() {
            r.headers_mut()
                .insert("x-ack", axum::http::HeaderValue::from_static(a.as_str()));
        }
        r
    };
    let app = Router::new()
        .route(
            "/bwp",
            route(calls.clone()).layer(
                builder::<WebhookLayer>(BuildWorkPro::new(), BWP, &ib.bwp)
                    .build()
                    .unwrap(),
            ),
        )
        .route(
            "/procore",
            route(calls.clone()).layer(
                builder::<WebhookLayer>(Procore::new(), PROCORE, &ib.procore)
                    .build()
                    .unwrap(),
            ),
        )
        .route(
            "/hcss",
            route(calls.clone()).layer(builder::<WebhookLayer>(Hcss::new(), HCSS, &ib.hcss).build().unwrap()),
        )
        .route(
            "/slack",
            route(calls)
                .layer(builder::<WebhookLayer>(Slack::new(), SLACK, &ib.slack).build().unwrap())
                .layer(axum::middleware::map_response(ack_header)),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn start_actix(ib: &Inboxes, calls: Calls) -> (String, actix_web::dev::ServerHandle) {
    use actix_web::dev::Service as _;
    use actix_web::{web, App, HttpResponse, HttpServer};
    use hookguard::actix::Webhook;
    let hooks: Vec<(&'static str, Webhook)> = vec![
        ("/bwp", builder(BuildWorkPro::new(), BWP, &ib.bwp).build().unwrap()),
        (
            "/procore",
            builder(Procore::new(), PROCORE, &ib.procore).build().unwrap(),
        ),
        ("/hcss", builder(Hcss::new(), HCSS, &ib.hcss).build().unwrap()),
        ("/slack", builder(Slack::new(), SLACK, &ib.slack).build().unwrap()),
    ];
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                let mut app = App::new();
                for (path, hook) in &hooks {
                    let calls = calls.clone();
                    app = app.service(
                        web::resource(*path)
                            .wrap(hook.clone())
                            // Outside the middleware, as an application's own: which
                            // acknowledgement an answer is, from its extensions.
                            .wrap_fn(|req, srv| {
                                let answer = srv.call(req);
                                async move {
                                    let mut res = answer.await?;
                                    let ack = res.response().extensions().get::<Acknowledgement>().copied();
                                    if let Some(a) = ack {
                                        res.headers_mut().insert(
                                            actix_web::http::header::HeaderName::from_static("x-ack"),
                                            actix_web::http::header::HeaderValue::from_static(a.as_str()),
                                        );
                                    }
                                    Ok(res)
                                }
                            })
                            .route(web::post().to(move || {
                                let calls = calls.clone();
                                async move {
                                    calls.0.fetch_add(1, Ordering::SeqCst);
                                    HttpResponse::NoContent().finish()
                                }
                            }))
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
    (addr, rx.recv().unwrap())
}

fn bwp(id: &str) -> (Vec<(String, String)>, Vec<u8>) {
    let body = format!(r#"{{"id":"{id}","type":"bid.accepted","data":{{"id":9}}}}"#).into_bytes();
    let signed = BuildWorkPro::new().sign(BWP, &body, &SignParams::new(NOW)).unwrap();
    let h = signed
        .headers
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    (h, body)
}

async fn post(addr: &str, path: &str, h: &[(String, String)], body: &[u8]) -> (u16, String) {
    let a = send(addr, "POST", path, h, body, Framing::Length).await;
    (a.status, String::from_utf8_lossy(&a.body).into_owned())
}

/// The inbox cases; every mismatch is collected and reported at once.
async fn run(addr: &str, ib: &Inboxes, calls: &Calls) {
    let failures = std::cell::RefCell::new(Vec::new());
    let expect = |case: &str, got: (u16, String), status: u16, has: &str| {
        if got.0 != status || !got.1.contains(has) {
            failures.borrow_mut().push(format!(
                "{case}: expected {status} containing {has:?}, got {} {}",
                got.0, got.1
            ));
        }
    };

    let (h, b) = bwp("evt_inbox_1");
    expect(
        "new delivery → stored",
        post(addr, "/bwp", &h, &b).await,
        200,
        r#""accepted""#,
    );
    expect(
        "copy → duplicate",
        post(addr, "/bwp", &h, &b).await,
        200,
        r#""duplicate""#,
    );

    // 32 concurrent copies: all 2xx, one row.
    let (h, b) = bwp("evt_inbox_32");
    let copies: Vec<_> = (0..32)
        .map(|_| {
            let (addr, h, b) = (addr.to_owned(), h.clone(), b.clone());
            tokio::spawn(async move { post(&addr, "/bwp", &h, &b).await })
        })
        .collect();
    let mut accepted = 0;
    for c in copies {
        let (status, body) = c.await.unwrap();
        if status != 200 {
            failures
                .borrow_mut()
                .push(format!("32 copies: a copy got {status} {body}"));
        }
        accepted += usize::from(body.contains("accepted"));
    }
    if accepted != 1 {
        failures
            .borrow_mut()
            .push(format!("32 copies: {accepted} answered accepted, want 1"));
    }

    // Forged deliveries are never stored.
    let before = ib.bwp.stats().await.unwrap();
    let (h, mut b) = bwp("evt_forged");
    b[8] ^= 1;
    expect(
        "forged → 401",
        post(addr, "/bwp", &h, &b).await,
        401,
        "signature_mismatch",
    );
    let (_, b) = bwp("evt_unsigned");
    expect(
        "unsigned → 401",
        post(addr, "/bwp", &[], &b).await,
        401,
        "missing_signature",
    );
    let after = ib.bwp.stats().await.unwrap();
    if after.pending != before.pending {
        failures
            .borrow_mut()
            .push(format!("forged deliveries were stored: {before:?} → {after:?}"));
    }

    // Procore: the credential header is never stored.
    let pbody = br#"{"id":"01J00000000000000000000001","timestamp":"t","reason":"create","resource_type":"RFIs","resource_id":"3"}"#;
    let ph = vec![
        ("authorization".to_owned(), PROCORE.to_owned()),
        ("content-type".to_owned(), "application/json".to_owned()),
    ];
    expect(
        "procore → stored",
        post(addr, "/procore", &ph, pbody).await,
        200,
        "accepted",
    );
    let listed = ib.procore.list(ListFilter::default()).await.unwrap();
    match listed.first() {
        Some(rec) => {
            let full = ib.procore.get(rec.id).await.unwrap().unwrap();
            if full
                .headers
                .iter()
                .any(|(k, v)| k == "authorization" || v.contains("inbox-procore"))
            {
                failures
                    .borrow_mut()
                    .push(format!("procore credential stored: {:?}", full.headers));
            }
        }
        None => failures.borrow_mut().push("procore delivery not in the inbox".into()),
    }

    // HCSS: challenge answered; identical Setups bodies coalesce while pending; the URL token
    // is not stored (the URL is not stored at all).
    let a = send(addr, "GET", "/hcss?challenge=inbox-ch", &[], b"", Framing::Length).await;
    if a.status != 200 || a.body != b"inbox-ch" {
        failures.borrow_mut().push(format!(
            "hcss challenge: {} {:?}",
            a.status,
            String::from_utf8_lossy(&a.body)
        ));
    }
    let ev = br#"{"companyId":"c","eventType":"EmployeeUpdated","businessUnitId":"b","id":"e1"}"#;
    let target = format!("/hcss?token={HCSS}");
    expect("hcss → stored", post(addr, &target, &[], ev).await, 200, "accepted");
    expect(
        "hcss copy while pending → duplicate",
        post(addr, &target, &[], ev).await,
        200,
        "duplicate",
    );
    let rec = &ib.hcss.list(ListFilter::default()).await.unwrap()[0];
    let full = ib.hcss.get(rec.id).await.unwrap().unwrap();
    if full.headers.iter().any(|(_, v)| v.contains(HCSS)) {
        failures.borrow_mut().push("hcss token stored".into());
    }

    // Slack reads a 2xx body as the app's answer (a slash command's message, a modal's
    // `response_action`): its acknowledgements are an empty 200, stored and copy alike.
    let form = b"command=%2Fdeploy&text=api&user_id=U1&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1";
    let mut sh: Vec<(String, String)> = Slack::new()
        .sign(SLACK, form, &SignParams::new(NOW))
        .unwrap()
        .headers
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    sh.push(("content-type".into(), "application/x-www-form-urlencoded".into()));
    for (case, ack) in [
        ("slack slash command → stored", "accepted"),
        ("slack copy → duplicate", "duplicate"),
    ] {
        let a = send(addr, "POST", "/slack", &sh, form, Framing::Length).await;
        if a.header("x-ack") != Some(ack) {
            failures.borrow_mut().push(format!(
                "{case}: the answer's extension says {:?}, not {ack}",
                a.header("x-ack")
            ));
        }
        if a.status != 200 || !a.body.is_empty() || a.header("content-type").is_some() {
            failures.borrow_mut().push(format!(
                "{case}: expected an empty 200, got {} {:?} {:?}",
                a.status,
                a.header("content-type"),
                String::from_utf8_lossy(&a.body)
            ));
        }
    }
    let stored = ib.slack.stats().await.unwrap().pending;
    if stored != 1 {
        failures
            .borrow_mut()
            .push(format!("slack: {stored} pending, want the one command"));
    }

    // Stored headers: never a credential, and past the cap of 64 the first by name, in name
    // order, whichever order the framework's map holds them in (actix's is hash order). Sent
    // in reverse name order, so a cap applied in arrival order keeps the wrong ones.
    let (mut h, b) = bwp("evt_inbox_headers");
    for i in (0..70).rev() {
        h.push((format!("x-extra-{i:02}"), format!("v{i}")));
    }
    h.push(("x-api-token".into(), "tok".into()));
    h.push(("cookie".into(), "a=b".into()));
    h.push(("x-forwarded-uri".into(), "/bwp?token=t".into()));
    expect(
        "70 extra headers → stored",
        post(addr, "/bwp", &h, &b).await,
        200,
        "accepted",
    );
    let mut want: Vec<(String, String)> = h
        .iter()
        .filter(|(k, _)| !["x-api-token", "cookie", "x-forwarded-uri"].contains(&k.as_str()))
        .cloned()
        .chain([
            ("host".to_owned(), addr.to_owned()),
            ("connection".to_owned(), "close".to_owned()),
            ("content-length".to_owned(), b.len().to_string()),
        ])
        .collect();
    want.sort();
    want.truncate(64);
    let listed = ib.bwp.list(ListFilter::default().limit(1000)).await.unwrap();
    match listed
        .iter()
        .find(|r| r.event_id.as_deref() == Some("evt_inbox_headers"))
    {
        Some(rec) => {
            let stored = ib.bwp.get(rec.id).await.unwrap().unwrap().headers;
            if stored != want {
                failures
                    .borrow_mut()
                    .push(format!("stored headers: got {stored:?}, want {want:?}"));
            }
        }
        None => failures.borrow_mut().push("evt_inbox_headers not in the inbox".into()),
    }

    // Over the cap: 503 + Retry-After, nothing stored, never 2xx.
    let mut full_answers = 0;
    for i in 0..60 {
        let (h, b) = bwp(&format!("evt_cap_{i}"));
        let a = send(addr, "POST", "/bwp", &h, &b, Framing::Length).await;
        match a.status {
            200 => {}
            503 => {
                full_answers += 1;
                if a.header("retry-after").is_none() || a.code().as_deref() != Some("inbox_full") {
                    failures
                        .borrow_mut()
                        .push(format!("cap: 503 without Retry-After or code: {:?}", a.code()));
                }
            }
            s => failures.borrow_mut().push(format!("cap: unexpected {s}")),
        }
    }
    let stats = ib.bwp.stats().await.unwrap();
    if full_answers == 0 || stats.pending != 40 {
        failures.borrow_mut().push(format!(
            "cap: {full_answers} answered 503, {} pending (cap 40)",
            stats.pending
        ));
    }
    if ib
        .bwp
        .list(ListFilter::default().state(InboxState::Pending).limit(1000))
        .await
        .unwrap()
        .len()
        != 40
    {
        failures.borrow_mut().push("cap: more rows than the cap".into());
    }

    if calls.0.load(Ordering::SeqCst) != 0 {
        failures
            .borrow_mut()
            .push("the route's handler ran in inbox mode".into());
    }
    let failures = failures.into_inner();
    assert!(
        failures.is_empty(),
        "{} inbox failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_inbox_column() {
    let ib = inboxes("tower");
    let calls = Calls::default();
    let addr = start_tower(&ib, calls.clone()).await;
    run(&addr, &ib, &calls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_inbox_column() {
    let ib = inboxes("actix");
    let calls = Calls::default();
    let (addr, server) = start_actix(&ib, calls.clone());
    run(&addr, &ib, &calls).await;
    server.stop(true).await;
}
