//! The conformance table: the same cases, run against every adapter through a real server on
//! 127.0.0.1. An adapter's test starts its server with [`routes`]'s settings and a handler
//! built on [`Handler`], then calls [`run_all`].
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookguard_core::clock::ManualClock;
use hookguard_core::dedupe::{Dedupe, MemoryStore};
use hookguard_core::schemes::{BuildWorkPro, GitHub, Hcss, Procore, Slack};
use hookguard_core::{Delivery, Scheme, SignParams, Verifier, VerifierBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The fixed "now" of every receiver in the suite.
pub const NOW: u64 = 1_700_000_000;
pub const BWP_SECRET: &str = "whsec_conformance_new";
pub const BWP_OLD_SECRET: &str = "whsec_conformance_old";
pub const PROCORE_TOKEN: &str = "Bearer procore-conformance";
pub const OWN_APP: &str = "our-app-42";
pub const HCSS_TOKEN: &str = "hcss-url-token";
pub const GITHUB_SECRET: &str = "gh-conformance";
pub const SLACK_SECRET: &str = "slack-conformance";
pub const MAX_BODY: usize = 64 * 1024;

/// One protected route of the conformance server: path and the verifier + dedupe it uses.
pub struct Route {
    pub path: &'static str,
    pub verifier: Verifier,
    pub dedupe: Dedupe,
    pub handler: HandlerKind,
    /// The handler budget, when the route has one.
    pub budget: Option<Duration>,
    /// A body limit of the application's own around the route (axum's `DefaultBodyLimit`,
    /// actix's `PayloadConfig`, `JsonConfig` and `FormConfig` on the resource), when it has one.
    pub app_limit: Option<usize>,
}

/// The application's own body limit around `/bwp-app-limit`, below the verifier's.
pub const APP_LIMIT: usize = 16 * 1024;

/// How the route's application handler reads the delivery.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum HandlerKind {
    /// The verified delivery only.
    Delivery,
    /// The delivery and the body through the framework's own bytes extractor (axum `Bytes`,
    /// actix `web::Bytes`): the handler must see the verifier's body limit, not the framework's.
    RawBody,
    /// The typed `BuildWorkProEvent` envelope (`Verified<BuildWorkProEvent>`).
    Typed,
    /// Any JSON (`Verified<serde_json::Value>`): a JSON body of any sender reaches it.
    TypedValue,
    /// The delivery and the body through the framework's own JSON extractor (axum `Json`,
    /// actix `web::Json`) as a `serde_json::Value`.
    Json,
    /// The delivery and the body through the framework's own form extractor (axum `Form`,
    /// actix `web::Form`) as a [`Form`]: the verifier's body limit applies, not the
    /// framework's (actix's `FormConfig` defaults to 16 KiB).
    Form,
}

/// The form every `Form` route reads: Slack's interactivity POST.
#[derive(serde::Deserialize)]
pub struct Form {
    pub payload: String,
}

/// The handler budget of the `/bwp-budget` route, which a `slow` handler (1.5 s) overruns.
pub const BUDGET: Duration = Duration::from_millis(700);

/// The body limit of the `/bwp-big` route: above axum's and actix's own 2 MiB for their body
/// extractors.
pub const BIG_MAX_BODY: usize = 3 << 20;
/// The body read timeout of every route (a slow drip is answered 408 after it).
pub const READ_TIMEOUT: Duration = Duration::from_millis(800);
/// A second HCSS URL token, base64 with `+`, `/` and `=`, registered raw.
pub const HCSS_B64_TOKEN: &str = "ab+c/d==";

/// The lease of the `/bwp-lease` route, which a `long` handler outlives.
pub const SHORT_LEASE: Duration = Duration::from_secs(1);

/// The routes every adapter must serve, each with its own in-memory store.
pub fn routes() -> Vec<Route> {
    let clock = ManualClock::new(NOW);
    // The suite's read timeout and a body limit on a configured builder.
    let built =
        |b: VerifierBuilder, max_body: usize| b.max_body(max_body).body_read_timeout(READ_TIMEOUT).build().unwrap();
    let bwp = |secrets: &[&str], max_body: usize| {
        built(
            Verifier::builder(BuildWorkPro::new())
                .secrets(secrets.iter().copied())
                .clock(clock.clone()),
            max_body,
        )
    };
    // A route with its own store (30 s leases), its handler answering as [`Handler`] does.
    let route = |path: &'static str, verifier: Verifier, handler: HandlerKind| Route {
        path,
        verifier,
        dedupe: Dedupe::new(MemoryStore::new(10_000)).lease(Duration::from_secs(30)),
        handler,
        budget: None,
        app_limit: None,
    };
    vec![
        Route {
            dedupe: Dedupe::new(MemoryStore::new(10_000)).lease(SHORT_LEASE),
            ..route("/bwp-lease", bwp(&[BWP_SECRET], MAX_BODY), HandlerKind::Delivery)
        },
        route(
            "/bwp",
            bwp(&[BWP_OLD_SECRET, BWP_SECRET], MAX_BODY),
            HandlerKind::Delivery,
        ),
        route("/bwp-big", bwp(&[BWP_SECRET], BIG_MAX_BODY), HandlerKind::RawBody),
        route("/bwp-typed", bwp(&[BWP_SECRET], MAX_BODY), HandlerKind::Typed),
        route(
            "/procore",
            built(
                Verifier::builder(Procore::new())
                    .secret(PROCORE_TOKEN)
                    .ignore_source_application(OWN_APP),
                MAX_BODY,
            ),
            HandlerKind::Delivery,
        ),
        route(
            "/hcss",
            built(
                Verifier::builder(Hcss::new()).secrets([HCSS_TOKEN, HCSS_B64_TOKEN]),
                MAX_BODY,
            ),
            HandlerKind::Delivery,
        ),
        route(
            "/github",
            built(Verifier::builder(GitHub::new()).secret(GITHUB_SECRET), MAX_BODY),
            HandlerKind::Delivery,
        ),
        route(
            "/github-typed",
            built(Verifier::builder(GitHub::new()).secret(GITHUB_SECRET), MAX_BODY),
            HandlerKind::TypedValue,
        ),
        Route {
            app_limit: Some(APP_LIMIT),
            ..route("/bwp-app-limit", bwp(&[BWP_SECRET], MAX_BODY), HandlerKind::RawBody)
        },
        Route {
            app_limit: Some(APP_LIMIT),
            ..route("/bwp-app-limit-json", bwp(&[BWP_SECRET], MAX_BODY), HandlerKind::Json)
        },
        Route {
            budget: Some(BUDGET),
            ..route("/bwp-budget", bwp(&[BWP_SECRET], MAX_BODY), HandlerKind::Delivery)
        },
        route(
            "/slack-form",
            built(
                Verifier::builder(Slack::new())
                    .secret(SLACK_SECRET)
                    .clock(clock.clone()),
                MAX_BODY,
            ),
            HandlerKind::Form,
        ),
    ]
}

/// The application handler's behaviour, shared by every adapter: counts calls per dedupe key;
/// ids containing `fail_once` fail (500) the first time, `panic_once` panic the first time;
/// ids containing `slow` take 1.5 s, `long` 3.5 s.
#[derive(Clone, Default)]
pub struct Handler {
    calls: Arc<Mutex<HashMap<String, u32>>>,
}

impl Handler {
    /// Runs the handler for a verified delivery; returns the status to answer.
    pub async fn handle(&self, d: &Delivery) -> u16 {
        let key = d.dedupe_key().unwrap_or("none").to_owned();
        let n = {
            let mut calls = self.calls.lock().unwrap();
            let n = calls.entry(key.clone()).or_default();
            *n += 1;
            *n
        };
        if key.contains("slow") {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        if key.contains("long") {
            tokio::time::sleep(Duration::from_millis(3500)).await;
        }
        if key.contains("fail_once") && n == 1 {
            return 500;
        }
        if key.contains("panic_once") && n == 1 {
            panic!("the conformance handler panics once for {key}");
        }
        204
    }

    /// Waits (up to 10 s) until the handler has started for a dedupe key: a fixed sleep was
    /// sometimes too short on a loaded machine.
    pub async fn started(&self, key: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.calls(key) == 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// How often the handler ran for a dedupe key.
    pub fn calls(&self, key: &str) -> u32 {
        self.calls.lock().unwrap().get(key).copied().unwrap_or(0)
    }

    /// How often the handler ran for all keys matching `f`.
    pub fn calls_matching(&self, f: impl Fn(&str) -> bool) -> u32 {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| f(k))
            .map(|(_, n)| n)
            .sum()
    }
}

/// A raw HTTP/1.1 exchange, so the suite controls framing (declared lengths, chunking).
pub struct Answer {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn code(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        v.get("error").and_then(|e| e.as_str()).map(str::to_owned)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// How the body is framed on the wire.
#[derive(Clone, Copy)]
pub enum Framing {
    Length,
    Chunked,
    /// Declare this Content-Length but send no body.
    Declared(usize),
}

pub async fn send(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
    framing: Framing,
) -> Answer {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    match framing {
        Framing::Length => req.push_str(&format!("content-length: {}\r\n\r\n", body.len())),
        Framing::Chunked => req.push_str("transfer-encoding: chunked\r\n\r\n"),
        Framing::Declared(n) => req.push_str(&format!("content-length: {n}\r\n\r\n")),
    }
    let mut wire = req.into_bytes();
    match framing {
        Framing::Length => wire.extend_from_slice(body),
        Framing::Chunked => {
            for chunk in body.chunks(8 * 1024) {
                wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                wire.extend_from_slice(chunk);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
        }
        Framing::Declared(_) => {}
    }
    // The server may answer (413) and close before reading everything: ignore write errors.
    let _ = s.write_all(&wire).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    parse_response(&buf)
}

/// The answer in `buf`; status 0 when the server closed the connection without one.
fn parse_response(buf: &[u8]) -> Answer {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Answer {
            status: 0,
            headers: HashMap::new(),
            body: buf.to_vec(),
        };
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let raw = &buf[end + 4..];
    let body = if headers.get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(raw)
    } else {
        raw.to_vec()
    };
    Answer { status, headers, body }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(p) = raw.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(std::str::from_utf8(&raw[..p]).unwrap().trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&raw[p + 2..p + 2 + n]);
        raw = &raw[p + 4 + n..];
    }
    out
}

fn signed(scheme: &dyn Scheme, secret: &str, body: &[u8], ts: u64) -> Vec<(String, String)> {
    let s = scheme.sign(secret, body, &SignParams::new(ts)).unwrap();
    let mut h: Vec<(String, String)> = s
        .headers
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    h.push(("content-type".into(), "application/json".into()));
    h
}

fn bwp_body(id: &str, kind: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","type":"{kind}","created_at":"2026-04-25T17:42:01.812Z","tenant_id":17,"data":{{"id":9}}}}"#
    )
    .into_bytes()
}

fn bwp(id: &str) -> (Vec<(String, String)>, Vec<u8>) {
    let body = bwp_body(id, "bid.accepted");
    (signed(&BuildWorkPro::new(), BWP_SECRET, &body, NOW), body)
}

fn procore_body(ulid: &str, app: Option<&str>) -> Vec<u8> {
    let app = app.map(|a| format!("\"{a}\"")).unwrap_or_else(|| "null".into());
    format!(
        r#"{{"api_version":"v2","company_id":6452,"event_type":"create","id":5982324300946918154,"metadata":{{"source_application_id":{app},"source_company_id":6452,"source_operation_id":null,"source_project_id":219542,"source_user_id":1469242}},"project_id":219542,"resource_id":245510722,"resource_name":"Purchase Order Contract Line Items","timestamp":"2020-07-20T15:22:01.353581Z","ulid":"{ulid}","user_id":1469242}}"#
    )
    .into_bytes()
}

/// What one step must answer.
struct Expect {
    status: u16,
    code: Option<&'static str>,
}

const OK: Expect = Expect {
    status: 204,
    code: None,
};
const fn rej(status: u16, code: &'static str) -> Expect {
    Expect {
        status,
        code: Some(code),
    }
}

/// One checked answer, as compared across adapters: the case, the status, the headers (sorted;
/// `date` left out, `retry-after` by presence: its value counts down the lease) and the body.
pub type Transcript = Vec<(String, u16, Vec<(String, String)>, Vec<u8>)>;

/// Runs every case; panics with the list of every mismatch. Returns every checked answer.
pub async fn run_all(addr: &str, handler: &Handler) -> Transcript {
    let failures = std::cell::RefCell::new(Vec::new());
    let transcript = std::cell::RefCell::new(Transcript::new());
    let check = |case: &str, a: &Answer, e: &Expect| {
        let mut headers: Vec<(String, String)> = a
            .headers
            .iter()
            .filter(|(k, _)| k.as_str() != "date")
            .map(|(k, v)| {
                let v = if k == "retry-after" {
                    "…".to_owned()
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect();
        headers.sort();
        transcript
            .borrow_mut()
            .push((case.to_owned(), a.status, headers, a.body.clone()));
        if a.status != e.status || (e.code.is_some() && a.code().as_deref() != e.code) {
            failures.borrow_mut().push(format!(
                "{case}: expected {} {:?}, got {} {:?} ({})",
                e.status,
                e.code,
                a.status,
                a.code(),
                String::from_utf8_lossy(&a.body)
            ));
        }
    };
    let post = |path: &'static str, h: Vec<(String, String)>, body: Vec<u8>| async move {
        send(addr, "POST", path, &h, &body, Framing::Length).await
    };

    // --- BuildWorkPro: authenticity and replay window.
    let (h, b) = bwp("evt_valid");
    let a = post("/bwp", h, b).await;
    check("valid", &a, &OK);
    check(
        "valid handled once",
        &Answer {
            status: handler.calls("buildworkpro:evt_valid") as u16,
            headers: HashMap::new(),
            body: vec![],
        },
        &Expect { status: 1, code: None },
    );

    let (h, mut b) = bwp("evt_tampered_body");
    b[10] ^= 1;
    check(
        "tampered body",
        &post("/bwp", h, b).await,
        &rej(401, "signature_mismatch"),
    );

    let (mut h, b) = bwp("evt_tampered_header");
    let v = &mut h[0].1;
    let last = v.pop().unwrap();
    v.push(if last == '0' { '1' } else { '0' });
    check(
        "tampered header",
        &post("/bwp", h, b).await,
        &rej(401, "signature_mismatch"),
    );

    for (name, ts, expect) in [
        ("stale at -300 s (edge, accepted)", NOW - 300, OK),
        ("stale at -301 s", NOW - 301, rej(503, "timestamp_out_of_window")),
        ("future at +300 s (edge, accepted)", NOW + 300, OK),
        ("future at +301 s", NOW + 301, rej(503, "timestamp_out_of_window")),
    ] {
        let body = bwp_body(&format!("evt_ts_{ts}"), "bid.created");
        let h = signed(&BuildWorkPro::new(), BWP_SECRET, &body, ts);
        check(name, &post("/bwp", h, body).await, &expect);
    }

    let body = bwp_body("evt_old_secret", "bid.created");
    check(
        "rotated: old secret still accepted",
        &post(
            "/bwp",
            signed(&BuildWorkPro::new(), BWP_OLD_SECRET, &body, NOW),
            body.clone(),
        )
        .await,
        &OK,
    );
    let body = bwp_body("evt_unknown_secret", "bid.created");
    check(
        "unknown secret",
        &post("/bwp", signed(&BuildWorkPro::new(), "whsec_other", &body, NOW), body).await,
        &rej(401, "signature_mismatch"),
    );

    for (name, value, expect) in [
        ("empty v1=", format!("t={NOW},v1="), rej(400, "malformed_signature")),
        ("short v1", format!("t={NOW},v1=abcd"), rej(400, "malformed_signature")),
        ("garbage", "nonsense".to_owned(), rej(400, "malformed_signature")),
        (
            "no timestamp",
            format!("v1={}", "0".repeat(64)),
            rej(400, "malformed_signature"),
        ),
        (
            "too many signatures",
            format!("t={NOW}{}", ",v1=00".repeat(40)),
            rej(400, "too_many_signatures"),
        ),
    ] {
        let body = bwp_body("evt_bad_sig", "bid.created");
        let h = vec![("buildworkpro-signature".to_owned(), value)];
        check(name, &post("/bwp", h, body).await, &expect);
    }
    check(
        "missing signature",
        &post("/bwp", vec![], bwp_body("evt_nosig", "bid.created")).await,
        &rej(401, "missing_signature"),
    );
    check(
        "huge header",
        &post(
            "/bwp",
            vec![("buildworkpro-signature".into(), "v".repeat(5000))],
            bwp_body("e", "x"),
        )
        .await,
        &rej(431, "header_too_large"),
    );

    // --- Dedupe.
    let (h, b) = bwp("evt_dup");
    check("duplicate: first", &post("/bwp", h.clone(), b.clone()).await, &OK);
    let a = post("/bwp", h, b).await;
    check(
        "duplicate: done → 200",
        &a,
        &Expect {
            status: 200,
            code: None,
        },
    );
    if !String::from_utf8_lossy(&a.body).contains("duplicate") || handler.calls("buildworkpro:evt_dup") != 1 {
        failures.borrow_mut().push(format!(
            "duplicate: handler ran {} times, body {:?}",
            handler.calls("buildworkpro:evt_dup"),
            String::from_utf8_lossy(&a.body)
        ));
    }

    let (h, b) = bwp("evt_slow_inflight");
    let first = tokio::spawn({
        let (addr, h, b) = (addr.to_owned(), h.clone(), b.clone());
        async move { send(&addr, "POST", "/bwp", &h, &b, Framing::Length).await }
    });
    handler.started("buildworkpro:evt_slow_inflight").await;
    let second = post("/bwp", h, b).await;
    check("in flight: copy → 429", &second, &rej(429, "duplicate_in_flight"));
    if second.header("retry-after").is_none() {
        failures.borrow_mut().push("in flight: no Retry-After".into());
    }
    check("in flight: original", &first.await.unwrap(), &OK);
    if handler.calls("buildworkpro:evt_slow_inflight") != 1 {
        failures
            .borrow_mut()
            .push("in flight: handler did not run exactly once".into());
    }

    // A handler that outlives its lease (1 s on /bwp-lease) keeps its claim: renewed while it
    // runs, a copy long after the first lease is still told to retry, and it runs once.
    let (h, b) = bwp("evt_long_renewed");
    let first = tokio::spawn({
        let (addr, h, b) = (addr.to_owned(), h.clone(), b.clone());
        async move { send(&addr, "POST", "/bwp-lease", &h, &b, Framing::Length).await }
    });
    tokio::time::sleep(SHORT_LEASE * 2 + Duration::from_millis(500)).await;
    let second = post("/bwp-lease", h.clone(), b.clone()).await;
    check(
        "renewed claim: copy past the lease → 429",
        &second,
        &rej(429, "duplicate_in_flight"),
    );
    check("renewed claim: original", &first.await.unwrap(), &OK);
    check(
        "renewed claim: copy after it → 200 duplicate",
        &post("/bwp-lease", h, b).await,
        &Expect {
            status: 200,
            code: None,
        },
    );
    if handler.calls("buildworkpro:evt_long_renewed") != 1 {
        failures
            .borrow_mut()
            .push("renewed claim: handler did not run exactly once".into());
    }

    let (h, b) = bwp("evt_fail_once");
    check(
        "handler failure → 500",
        &post("/bwp", h.clone(), b.clone()).await,
        &Expect {
            status: 500,
            code: None,
        },
    );
    check(
        "retry after failure → handled",
        &post("/bwp", h.clone(), b.clone()).await,
        &OK,
    );
    check(
        "after success → duplicate",
        &post("/bwp", h, b).await,
        &Expect {
            status: 200,
            code: None,
        },
    );
    if handler.calls("buildworkpro:evt_fail_once") != 2 {
        failures.borrow_mut().push(format!(
            "failure then retry: handler ran {} times, want 2",
            handler.calls("buildworkpro:evt_fail_once")
        ));
    }

    // --- Body bounds.
    let big = bwp_body(&format!("evt_big_{}", "x".repeat(MAX_BODY)), "bid.created");
    let h = signed(&BuildWorkPro::new(), BWP_SECRET, &big, NOW);
    check(
        "declared length over limit",
        &send(addr, "POST", "/bwp", &h, &[], Framing::Declared(MAX_BODY + 1)).await,
        &rej(503, "body_too_large"),
    );
    check(
        "chunked body over limit",
        &send(addr, "POST", "/bwp", &h, &big, Framing::Chunked).await,
        &rej(503, "body_too_large"),
    );
    // Without a signature the head alone refuses it: not told to come back, in either framing.
    check(
        "unsigned body over limit",
        &send(addr, "POST", "/bwp", &[], &big, Framing::Chunked).await,
        &rej(401, "missing_signature"),
    );
    check(
        "unsigned declared length over limit",
        &send(addr, "POST", "/bwp", &[], &[], Framing::Declared(MAX_BODY + 1)).await,
        &rej(401, "missing_signature"),
    );
    let (h, b) = bwp("evt_chunked_ok");
    check(
        "chunked body within limit",
        &send(addr, "POST", "/bwp", &h, &b, Framing::Chunked).await,
        &OK,
    );

    // --- Payload shapes.
    let body = bwp_body("evt_unknown_type", "widget.exploded");
    check(
        "unknown event type reaches the handler",
        &post("/bwp", signed(&BuildWorkPro::new(), BWP_SECRET, &body, NOW), body).await,
        &OK,
    );
    let raw: Vec<u8> = vec![0xff, 0xfe, 0x00, 0x80, b'{'];
    let mut h = signed(&GitHub::new(), GITHUB_SECRET, &raw, NOW);
    h.push(("x-github-delivery".into(), "gh-non-utf8".into()));
    check(
        "non-UTF-8 body verifies (GitHub)",
        &post("/github", h, raw.clone()).await,
        &OK,
    );
    check(
        "non-UTF-8 body on a JSON provider",
        &post("/bwp", signed(&BuildWorkPro::new(), BWP_SECRET, &raw, NOW), raw).await,
        &rej(400, "invalid_payload"),
    );
    let a = send(addr, "PUT", "/bwp", &[], b"", Framing::Length).await;
    check("wrong method", &a, &rej(405, "method_not_allowed"));
    if a.header("allow") != Some("POST") {
        failures
            .borrow_mut()
            .push(format!("wrong method: Allow {:?}, expected POST", a.header("allow")));
    }

    // --- HCSS challenge echo.
    let a = send(addr, "GET", "/hcss?challenge=abc123", &[], b"", Framing::Length).await;
    check(
        "challenge echo",
        &a,
        &Expect {
            status: 200,
            code: None,
        },
    );
    if a.body != b"abc123"
        || a.header("content-type").is_none_or(|c| !c.starts_with("text/plain"))
        || a.header("x-content-type-options") != Some("nosniff")
    {
        failures.borrow_mut().push(format!(
            "challenge echo: body {:?}, headers {:?}",
            String::from_utf8_lossy(&a.body),
            a.headers
        ));
    }
    let a = send(
        addr,
        "GET",
        "/hcss?challenge=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        &[],
        b"",
        Framing::Length,
    )
    .await;
    if a.status != 200
        || a.body != b"<script>alert(1)</script>"
        || a.header("x-content-type-options") != Some("nosniff")
        || a.header("content-type").is_none_or(|c| !c.starts_with("text/plain"))
    {
        failures.borrow_mut().push(format!(
            "hostile challenge: {} {:?} {:?}",
            a.status,
            String::from_utf8_lossy(&a.body),
            a.headers
        ));
    }
    let long = format!("/hcss?challenge={}", "a".repeat(2000));
    check(
        "over-long challenge",
        &send(addr, "GET", &long, &[], b"", Framing::Length).await,
        &rej(400, "challenge_too_long"),
    );
    check(
        "missing challenge",
        &send(addr, "GET", "/hcss", &[], b"", Framing::Length).await,
        &rej(400, "challenge_missing"),
    );
    let ev = br#"{"companyId":"c","eventType":"EmployeeUpdated","businessUnitId":"b","id":"e1"}"#.to_vec();
    check(
        "HCSS event with URL token",
        &send(
            addr,
            "POST",
            &format!("/hcss?token={HCSS_TOKEN}"),
            &[],
            &ev,
            Framing::Length,
        )
        .await,
        &OK,
    );
    check(
        "HCSS Setups event again after it was handled → a new edit, handled",
        &send(
            addr,
            "POST",
            &format!("/hcss?token={HCSS_TOKEN}"),
            &[],
            &ev,
            Framing::Length,
        )
        .await,
        &OK,
    );
    check(
        "HCSS event without token",
        &send(addr, "POST", "/hcss", &[], &ev, Framing::Length).await,
        &rej(401, "unauthorized"),
    );

    // --- Procore.
    let auth = |v: &str| {
        vec![
            ("authorization".to_owned(), v.to_owned()),
            ("content-type".into(), "application/json".into()),
        ]
    };
    let b = procore_body("01EDPD2J6SBY1163N77H95GW09", None);
    check(
        "procore right Authorization",
        &post("/procore", auth(PROCORE_TOKEN), b.clone()).await,
        &OK,
    );
    check(
        "procore duplicate ULID",
        &post("/procore", auth(PROCORE_TOKEN), b.clone()).await,
        &Expect {
            status: 200,
            code: None,
        },
    );
    check(
        "procore wrong Authorization",
        &post("/procore", auth("Bearer wrong"), b.clone()).await,
        &rej(401, "unauthorized"),
    );
    check(
        "procore missing Authorization",
        &post("/procore", vec![], b).await,
        &rej(401, "unauthorized"),
    );
    let own = procore_body("01EDPD2J6SBY1163N77H95GW10", Some(OWN_APP));
    let a = post("/procore", auth(PROCORE_TOKEN), own).await;
    check(
        "procore own-app event ignored",
        &a,
        &Expect {
            status: 200,
            code: None,
        },
    );
    if handler.calls("procore:01EDPD2J6SBY1163N77H95GW10") != 0 || !String::from_utf8_lossy(&a.body).contains("ignored")
    {
        failures
            .borrow_mut()
            .push("procore own-app event reached the handler".into());
    }

    // --- Hardening (issue 16).
    // A genuine 300 KiB delivery reaches a handler that reads the body with the framework's
    // own extractor: the verifier's limit (3 MiB) applies, not the framework's 256 KiB.
    let big = format!(
        r#"{{"id":"evt_300k","type":"bid.created","data":{{"notes":"{}"}}}}"#,
        "x".repeat(300 * 1024)
    )
    .into_bytes();
    check(
        "300 KiB delivery, handler reads the body",
        &post("/bwp-big", signed(&BuildWorkPro::new(), BWP_SECRET, &big, NOW), big).await,
        &OK,
    );
    // And one of 2.5 MiB, over the frameworks' own 2 MiB default (axum answered a plain 413,
    // which BuildWorkPro never retries: the delivery was lost).
    let big = format!(
        r#"{{"id":"evt_2500k","type":"bid.created","data":{{"notes":"{}"}}}}"#,
        "x".repeat(5 << 19)
    )
    .into_bytes();
    check(
        "2.5 MiB delivery, handler reads the body",
        &post("/bwp-big", signed(&BuildWorkPro::new(), BWP_SECRET, &big, NOW), big).await,
        &OK,
    );
    // The typed envelope accepts a minimal signed body (only `id` and `type`).
    let minimal = br#"{"id":"evt_minimal","type":"bid.created"}"#.to_vec();
    check(
        "typed envelope: minimal body",
        &post(
            "/bwp-typed",
            signed(&BuildWorkPro::new(), BWP_SECRET, &minimal, NOW),
            minimal,
        )
        .await,
        &OK,
    );
    // A verified body our model cannot read is our gap: retryable 500, never a permanent 4xx.
    let odd = br#"{"id":"evt_odd","type":"bid.created","tenant_id":"seventeen"}"#.to_vec();
    check(
        "typed envelope: unexpected shape → 500",
        &post("/bwp-typed", signed(&BuildWorkPro::new(), BWP_SECRET, &odd, NOW), odd).await,
        &rej(500, "unexpected_payload"),
    );
    // A slow drip: headers announce 1000 bytes that never come.
    let (h, _) = bwp("evt_slow_drip");
    let started = std::time::Instant::now();
    check(
        "slow drip → 408",
        &send(addr, "POST", "/bwp", &h, &[], Framing::Declared(1000)).await,
        &rej(408, "body_read_timeout"),
    );
    if started.elapsed() > READ_TIMEOUT * 4 {
        failures
            .borrow_mut()
            .push(format!("slow drip answered after {:?}", started.elapsed()));
    }
    // Header-authenticated senders are refused before their body is read: a wrong token with
    // a body that never comes gets 401, not a 408 after the read timeout.
    check(
        "procore wrong token, body never sent → 401 at once",
        &send(
            addr,
            "POST",
            "/procore",
            &[("authorization".into(), "Bearer wrong".into())],
            &[],
            Framing::Declared(1000),
        )
        .await,
        &rej(401, "unauthorized"),
    );
    check(
        "hcss wrong URL token, body never sent → 401 at once",
        &send(addr, "POST", "/hcss?token=nope", &[], &[], Framing::Declared(1000)).await,
        &rej(401, "unauthorized"),
    );
    // GitHub: one signed body replayed with fresh (unsigned) delivery ids is one event.
    let gh = br#"{"action":"opened","number":7}"#.to_vec();
    for (i, id) in ["gh-replay-1", "gh-replay-2", "gh-replay-3"].iter().enumerate() {
        let mut h = signed(&GitHub::new(), GITHUB_SECRET, &gh, NOW);
        h.push(("x-github-delivery".into(), (*id).into()));
        let a = post("/github", h, gh.clone()).await;
        let want = if i == 0 {
            OK
        } else {
            Expect {
                status: 200,
                code: None,
            }
        };
        check(&format!("github replay with fresh delivery id #{i}"), &a, &want);
    }
    let handled = handler.calls_matching(|k| k.starts_with("github:sha256:"));
    if handled != 2 {
        // One for the non-UTF-8 case above, one for the replayed body.
        failures.borrow_mut().push(format!(
            "github replays: handler ran {handled} times for 2 distinct bodies"
        ));
    }
    // GitHub dispatches carry no id and no time: the same dispatch sent twice is two events
    // (a replayed body of any other event is one).
    let dispatch =
        br#"{"action":"deploy","branch":"main","client_payload":{"env":"prod"},"repository":{"id":1}}"#.to_vec();
    for round in 0..2 {
        let h = signed(&GitHub::new(), GITHUB_SECRET, &dispatch, NOW);
        check(
            &format!("github repository_dispatch identical body #{round} → handled"),
            &post("/github", h, dispatch.clone()).await,
            &OK,
        );
    }
    // HCSS Setups bodies carry no id and no time: an identical body after the first was
    // handled is a second genuine edit and is handled again.
    let setups = br#"{"companyId":"c","eventType":"EmployeeUpdated","businessUnitId":"b","id":"e-twice"}"#.to_vec();
    let target = format!("/hcss?token={HCSS_TOKEN}");
    for round in 0..2 {
        check(
            &format!("HCSS Setups identical body #{round} → handled"),
            &send(addr, "POST", &target, &[], &setups, Framing::Length).await,
            &OK,
        );
    }
    // Pre-Construction events carry a date: an identical body is a copy of one event.
    let precon = br#"{"eventSource":"HeavyBid Pre-Construction","eventType":"ProjectChanged","version":"1","date":"2019-09-10T16:12:29Z","data":{"companyId":"c","businessUnitId":"b","projectId":"p"}}"#.to_vec();
    check(
        "HCSS Pre-Construction first",
        &send(addr, "POST", &target, &[], &precon, Framing::Length).await,
        &OK,
    );
    check(
        "HCSS Pre-Construction identical → duplicate",
        &send(addr, "POST", &target, &[], &precon, Framing::Length).await,
        &Expect {
            status: 200,
            code: None,
        },
    );
    // A base64 URL token registered raw keeps its `+`; its percent-encoded form is the same.
    for (i, q) in ["token=ab+c/d==", "token=ab%2Bc%2Fd%3D%3D"].iter().enumerate() {
        let ev = format!(r#"{{"companyId":"c","eventType":"EquipmentCreated","businessUnitId":"b","id":"tok-{i}"}}"#);
        check(
            &format!("HCSS base64 URL token {q}"),
            &send(addr, "POST", &format!("/hcss?{q}"), &[], ev.as_bytes(), Framing::Length).await,
            &OK,
        );
    }
    // A challenge appended naively to a callback URL that already has a query.
    let a = send(
        addr,
        "GET",
        &format!("/hcss?token={HCSS_TOKEN}?challenge=naive42"),
        &[],
        b"",
        Framing::Length,
    )
    .await;
    if a.status != 200 || a.body != b"naive42" {
        failures.borrow_mut().push(format!(
            "naive challenge append: {} {:?}",
            a.status,
            String::from_utf8_lossy(&a.body)
        ));
    }

    // --- Handler budget (0.7 s on /bwp-budget): a handler that overruns it is answered a
    // retryable 503 with Retry-After and its claim is released, so the sender's retry runs the
    // handler again instead of hearing 429 for a copy in flight.
    let (h, b) = bwp("evt_slow_budget");
    for attempt in 1..=2 {
        let a = post("/bwp-budget", h.clone(), b.clone()).await;
        check(
            &format!("over the handler budget #{attempt} → 503"),
            &a,
            &rej(503, "handler_timeout"),
        );
        if a.header("retry-after").is_none() {
            failures
                .borrow_mut()
                .push(format!("over the handler budget #{attempt}: no Retry-After"));
        }
    }
    if handler.calls("buildworkpro:evt_slow_budget") != 2 {
        failures.borrow_mut().push(format!(
            "handler budget: the handler ran {} times for two sends, want 2",
            handler.calls("buildworkpro:evt_slow_budget")
        ));
    }
    let (h, b) = bwp("evt_within_budget");
    check(
        "within the handler budget → handled",
        &post("/bwp-budget", h, b).await,
        &OK,
    );

    // --- A handler that panics: no 2xx (the framework closes the connection), and its claim
    // is released, so the sender's retry runs the handler again instead of hearing 429.
    let (h, b) = bwp("evt_panic_once");
    check(
        "panicking handler → connection closed, no answer",
        &post("/bwp", h.clone(), b.clone()).await,
        &Expect { status: 0, code: None },
    );
    check("retry after a panic → handled", &post("/bwp", h, b).await, &OK);
    if handler.calls("buildworkpro:evt_panic_once") != 2 {
        failures.borrow_mut().push(format!(
            "panic then retry: handler ran {} times, want 2",
            handler.calls("buildworkpro:evt_panic_once")
        ));
    }

    // --- The sender's client hangs up while the handler runs (its timeout): the handler
    // finishes and its claim is completed, so the retry is a duplicate; run again from the
    // start, a handler longer than the sender's timeout would never complete, and a
    // half-done one would repeat its side effects on every try. Closed (FIN) or reset (RST,
    // as a load balancer does): actix-web dropped a reset request's future, which cut its
    // handler (a review; FIN it lets run).
    for (id, reset) in [("evt_slow_sender_gone", false), ("evt_slow_sender_reset", true)] {
        let what = if reset {
            "sender reset mid-handler"
        } else {
            "sender gone mid-handler"
        };
        let key = format!("buildworkpro:{id}");
        let (h, b) = bwp(id);
        {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let mut req = format!("POST /bwp HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\n", b.len());
            for (k, v) in &h {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
            req.push_str("\r\n");
            let mut wire = req.into_bytes();
            wire.extend_from_slice(&b);
            s.write_all(&wire).await.unwrap();
            handler.started(&key).await; // it runs (1.5 s)
            if reset {
                s.set_zero_linger().unwrap();
            }
        } // closed: the sender gave up
          // The sender's retries: told to wait (429) while the handler still runs, then a duplicate.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let retry = loop {
            let r = post("/bwp", h.clone(), b.clone()).await;
            if r.status != 429 || std::time::Instant::now() > deadline {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        check(
            &format!("{what}: its retry → duplicate"),
            &retry,
            &Expect {
                status: 200,
                code: None,
            },
        );
        if handler.calls(&key) != 1 {
            failures.borrow_mut().push(format!(
                "{what}: handler ran {} times, want 1 (finished once)",
                handler.calls(&key)
            ));
        }
    }

    // --- The application's own smaller body limit around the route (16 KiB, the verifier's
    // 64 KiB): a genuine 32 KiB delivery reaches the handler's own body extractor; a 413 there
    // would lose it (BuildWorkPro never retries a 4xx but 408 and 429).
    for (path, extractor) in [("/bwp-app-limit", "bytes"), ("/bwp-app-limit-json", "json")] {
        let body = bwp_body(
            &format!("evt_app_limit_{extractor}_{}", "x".repeat(32 << 10)),
            "bid.created",
        );
        let h = signed(&BuildWorkPro::new(), BWP_SECRET, &body, NOW);
        check(
            &format!("32 KiB past the application's own 16 KiB limit, {extractor} extractor → handled"),
            &post(path, h, body).await,
            &OK,
        );
    }

    // --- A form body (Slack interactivity, 20 KiB) read with the framework's own form
    // extractor: the verifier's 64 KiB limit applies, not the framework's (actix's 16 KiB).
    let body = format!("payload={}", "x".repeat(20 << 10)).into_bytes();
    let mut h = signed(&Slack::new(), SLACK_SECRET, &body, NOW);
    h.retain(|(k, _)| k != "content-type");
    h.push(("content-type".into(), "application/x-www-form-urlencoded".into()));
    check(
        "20 KiB form through the form extractor",
        &post("/slack-form", h.clone(), body.clone()).await,
        &OK,
    );
    // The same command again: a duplicate, answered as Slack documents an acknowledgement (an
    // empty 200: Slack would post a JSON body as the command's answer).
    let copy = post("/slack-form", h, body).await;
    if copy.status != 200 || !copy.body.is_empty() || copy.header("content-type").is_some() {
        failures.borrow_mut().push(format!(
            "form copy: expected an empty 200, got {} {:?} {:?}",
            copy.status,
            copy.header("content-type"),
            String::from_utf8_lossy(&copy.body)
        ));
    }
    if handler.calls_matching(|k| k.starts_with("slack:")) != 1 {
        failures.borrow_mut().push(format!(
            "form: the handler ran {} times, want 1",
            handler.calls_matching(|k| k.starts_with("slack:"))
        ));
    }

    // GitHub may deliver form-encoded (`payload=<JSON>`): genuine, so never a permanent 4xx
    // when the application's `Verified<T>` reads JSON; the same retryable 500 as above. The
    // route's type reads any JSON: the same delivery sent as JSON is handled.
    let json = br#"{"zen":"Keep it logically awesome."}"#.to_vec();
    let mut h = signed(&GitHub::new(), GITHUB_SECRET, &json, NOW);
    h.push(("x-github-delivery".into(), "gh-json-typed".into()));
    check(
        "typed JSON value: GitHub JSON delivery",
        &post("/github-typed", h, json).await,
        &OK,
    );
    let form = b"payload=%7B%22zen%22%3A%22Keep%20it%20logically%20awesome.%22%7D".to_vec();
    let mut h = signed(&GitHub::new(), GITHUB_SECRET, &form, NOW);
    h.push(("x-github-delivery".into(), "gh-form-typed".into()));
    h.retain(|(name, _)| name != "content-type" && name != "x-github-event");
    h.push(("x-github-event".into(), "push".into()));
    h.push(("content-type".into(), "application/x-www-form-urlencoded".into()));
    check(
        "typed envelope: GitHub form-encoded delivery → 500",
        &post("/github-typed", h, form).await,
        &rej(500, "unexpected_payload"),
    );

    let failures = failures.into_inner();
    assert!(
        failures.is_empty(),
        "{} conformance failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    transcript.into_inner()
}

/// The table's routes behind the tower layer in a real axum server on 127.0.0.1.
pub async fn start_tower() -> (String, Handler) {
    let handler = Handler::default();
    let mut app = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
    for r in routes() {
        let h = handler.clone();
        let route = match r.handler {
            HandlerKind::Delivery => axum::routing::post(
                move |hookguard_tower::VerifiedDelivery(d): hookguard_tower::VerifiedDelivery| async move {
                    axum::http::StatusCode::from_u16(h.handle(&d).await).unwrap()
                },
            ),
            HandlerKind::RawBody => axum::routing::post(
                move |hookguard_tower::VerifiedDelivery(d): hookguard_tower::VerifiedDelivery,
                      body: axum::body::Bytes| async move {
                    assert_eq!(body.len(), d.body().len());
                    axum::http::StatusCode::from_u16(h.handle(&d).await).unwrap()
                },
            ),
            HandlerKind::Json => axum::routing::post(
                move |hookguard_tower::VerifiedDelivery(d): hookguard_tower::VerifiedDelivery,
                      axum::Json(v): axum::Json<serde_json::Value>| async move {
                    assert_eq!(v["type"].as_str(), d.event_type());
                    axum::http::StatusCode::from_u16(h.handle(&d).await).unwrap()
                },
            ),
            HandlerKind::Form => axum::routing::post(
                move |hookguard_tower::VerifiedDelivery(d): hookguard_tower::VerifiedDelivery,
                      axum::extract::Form(f): axum::extract::Form<Form>| async move {
                    assert_eq!(f.payload.len() + "payload=".len(), d.body().len());
                    axum::http::StatusCode::from_u16(h.handle(&d).await).unwrap()
                },
            ),
            HandlerKind::Typed => axum::routing::post(
                move |hookguard_tower::VerifiedDelivery(d): hookguard_tower::VerifiedDelivery,
                      hookguard_tower::Verified(e): hookguard_tower::Verified<
                    hookguard_core::envelope::BuildWorkProEvent,
                >| async move {
                    assert_eq!(Some(e.id.as_str()), d.event_id());
                    axum::http::StatusCode::from_u16(h.handle(&d).await).unwrap()
                },
            ),
            HandlerKind::TypedValue => axum::routing::post(
                move |hookguard_tower::VerifiedDelivery(d): hookguard_tower::VerifiedDelivery,
                      hookguard_tower::Verified(v): hookguard_tower::Verified<serde_json::Value>| async move {
                    assert!(v.is_object());
                    axum::http::StatusCode::from_u16(h.handle(&d).await).unwrap()
                },
            ),
        }
        .get(|| async { axum::http::StatusCode::OK });
        let route = route.layer(hookguard_tower::WebhookLayer::from(
            hookguard_core::Receiver::new(r.verifier)
                .with_dedupe(r.dedupe)
                .with_budget(r.budget),
        ));
        app = match r.app_limit {
            Some(n) => app.route(r.path, route.layer(axum::extract::DefaultBodyLimit::max(n))),
            None => app.route(r.path, route),
        };
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, handler)
}
