//! `serve --ui ADDR`: a local inspector page, and what runs beside the webhook route
//! ([`Extras`]: `--metrics` and `--ui`).
//!
//! The page is server-rendered HTML (every value escaped), with one embedded stylesheet and no
//! script; a Content-Security-Policy forbids loading anything else. Access needs the token:
//! the first visit of `/?token=…` sets an `HttpOnly; SameSite=Strict` cookie and redirects to
//! `/` (the token leaves the address bar); API clients send `Authorization: Bearer …`.
//! Every state-changing request is a POST that carries the page's own form value (random, of
//! this process, never the token) or the token in the `Authorization` header: the cookie alone
//! never changes anything. Tokens are compared in
//! constant time and never logged (only the startup line the user needs shows it).
//!
//! What it shows: the last [`RECENT`] answers to new genuine deliveries and, apart, the last
//! [`RECENT`] others (time, method, status, outcome and code, and for verified deliveries the
//! event id and type — never a secret, never a body), sender health
//! against the sender's kill switch, and in inbox mode the items by state with attempts and
//! last error (a body only on an item's own page, from the inbox, truncated and escaped), with
//! a replay button for dead items.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use hookguard_core::inbox::{now_ms, InboxError, InboxRecord, InboxState, InboxStore, ListFilter};
use hookguard_core::response::Acknowledgement;
use hookguard_core::{Receiver, RequestHead, Scheme};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use http_body::{Frame, SizeHint};
use metrics_exporter_prometheus::PrometheusHandle;
use subtle::ConstantTimeEq;
use tokio::task::JoinHandle;

use super::ServeArgs;
use crate::common::{failed, write_stderr, CliResult};

/// How many recent answers the page keeps (in memory only).
pub const RECENT: usize = 200;

/// The longest body shown on an item's page.
const BODY_SHOWN: usize = 2048;

/// The embedded stylesheet (the only asset).
const STYLE: &str = include_str!("ui.css");

/// No script, no frame, nothing from another origin.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// `--ui` / `--metrics` values: `PORT` (on 127.0.0.1) or `HOST:PORT`.
pub fn parse_addr(s: &str) -> Result<String, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(format!("127.0.0.1:{port}"));
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(s.to_owned()),
        _ => Err(format!("expected PORT or HOST:PORT (e.g. 127.0.0.1:9464), got {s:?}")),
    }
}

/// Whether two `HOST:PORT` addresses (as [`parse_addr`] gives them) would take one port: the
/// same port (not 0, any free one) on the same host, or one of them on every address.
pub fn same_place(a: &str, b: &str) -> bool {
    let split = |s: &str| {
        s.rsplit_once(':')
            .map(|(h, p)| (h.to_owned(), p.parse::<u16>().unwrap_or(0)))
    };
    let (Some((ha, pa)), Some((hb, pb))) = (split(a), split(b)) else {
        return false;
    };
    // Every IPv4 address takes the port from IPv4 hosts; every IPv6 one (dual-stack) from all.
    let v6 = |h: &str| h.starts_with('[') || h.contains("::");
    let covers = |any: &str, h: &str| match any {
        "0.0.0.0" => !v6(h),
        "[::]" | "::" => true,
        _ => false,
    };
    pa != 0 && pa == pb && (ha.eq_ignore_ascii_case(&hb) || covers(&ha, &hb) || covers(&hb, &ha))
}

/// `--ui-token`: at least 16 characters of `A-Z a-z 0-9 . _ -` (they need no escaping in a
/// URL, a cookie or a form).
pub fn parse_token(s: &str) -> Result<String, String> {
    if s.len() < 16 {
        return Err("the inspector token must have at least 16 characters".into());
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err("the inspector token may only hold A-Z a-z 0-9 . _ -".into());
    }
    Ok(s.to_owned())
}

/// 32 bytes from the OS.
fn random_bytes() -> [u8; 32] {
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// 32 random bytes, lower-case hex (a cookie or a form value: no case to lose).
fn random_hex() -> String {
    random_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh random token: 32 random bytes, base64url.
fn random_token() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes())
}

/// Whether `given` is `token`, in time that depends on neither: their SHA-256 digests are
/// compared in constant time, so a user-chosen `--ui-token`'s length is not told by how soon a
/// wrong one is refused either (a comparison that stopped at a length mismatch told it).
fn ct_eq(given: &[u8], token: &[u8]) -> bool {
    use sha2::Digest as _;
    bool::from(sha2::Sha256::digest(given).ct_eq(&sha2::Sha256::digest(token)))
}

// ---------------------------------------------------------------------------------------------
// The recent answers

/// One answer the receiver gave.
#[derive(Debug, Clone)]
pub struct Answer {
    at_ms: i64,
    method: String,
    status: u16,
    outcome: &'static str,
    code: String,
    event_id: Option<String>,
    event_type: Option<String>,
    millis: u64,
    /// Kept in the ring of new genuine deliveries (see [`kept_apart`]).
    apart: bool,
}

/// The last [`RECENT`] answers to new genuine deliveries and, apart, the last [`RECENT`] other
/// answers (challenges, rejections, duplicates; see [`kept_apart`]): a flood of forged,
/// unsigned or replayed requests cannot push the genuine deliveries off the page.
#[derive(Debug, Default)]
pub struct Answers(Mutex<Rings>);

/// The two rings, each newest last; `seq` orders answers across them.
#[derive(Debug, Default)]
struct Rings {
    deliveries: VecDeque<(u64, Answer)>,
    others: VecDeque<(u64, Answer)>,
    seq: u64,
}

impl Answers {
    /// Into the ring `a.apart` names.
    fn push(&self, a: Answer) {
        let mut rings = self.0.lock().unwrap_or_else(|p| p.into_inner());
        rings.seq += 1;
        let seq = rings.seq;
        let ring = if a.apart {
            &mut rings.deliveries
        } else {
            &mut rings.others
        };
        if ring.len() == RECENT {
            ring.pop_front();
        }
        ring.push_back((seq, a));
    }

    /// Both rings, newest first.
    fn newest_first(&self) -> Vec<Answer> {
        let rings = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<&(u64, Answer)> = rings.deliveries.iter().chain(&rings.others).collect();
        all.sort_unstable_by_key(|a| std::cmp::Reverse(a.0));
        all.into_iter().map(|(_, a)| a.clone()).collect()
    }
}

/// Codes that are only ever answered after the delivery was verified (so its id is genuine).
const AFTER_VERIFY: [&str; 7] = [
    "handler_failed",
    "handler_timeout",
    "duplicate_in_flight",
    "store_unavailable",
    "inbox_full",
    "stdout_backlog",
    "stdout_closed",
];

/// Whether an answer goes to the ring of genuine deliveries: verified, and not something a
/// replay of a captured genuine request also gets (`duplicate`, `duplicate_in_flight`, an
/// `ignored` delivery) — a sender without a signed timestamp (Procore, HCSS) can be replayed
/// forever, and those answers would otherwise flood that ring too.
fn kept_apart(verified: bool, outcome: &str, code: &str) -> bool {
    verified && !matches!(outcome, "duplicate" | "ignored") && code != "duplicate_in_flight"
}

/// Cuts `s` to at most `n` bytes on a character boundary.
fn cut(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// What the answer recorder needs.
struct Recorder {
    answers: Arc<Answers>,
    scheme: Arc<dyn Scheme>,
    max_body: usize,
}

/// A request body that copies what the webhook layer reads (at most `cap` bytes, else
/// nothing), so the recorder can name a verified delivery's event. The layer still applies
/// its own limit and read timeout: the copy changes nothing it sees.
struct Tee {
    inner: Body,
    copy: Arc<Mutex<Option<Vec<u8>>>>,
    cap: usize,
}

impl http_body::Body for Tee {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let mut copy = self.copy.lock().unwrap_or_else(|p| p.into_inner());
                let over = copy.as_ref().is_some_and(|c| c.len() + data.len() > self.cap);
                if over {
                    *copy = None;
                } else if let Some(c) = copy.as_mut() {
                    c.extend_from_slice(data);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads a small JSON answer of the core (`{"status":…}` or `{"error":…}`) and puts it back.
async fn peek_json(headers: &HeaderMap, body: Body) -> (Body, Option<serde_json::Value>) {
    use http_body::Body as _;
    let json = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let small = body.size_hint().exact().is_some_and(|n| n <= 4096);
    if !(json && small) {
        return (body, None);
    }
    match axum::body::to_bytes(body, 4096).await {
        Ok(bytes) => {
            let v = serde_json::from_slice(&bytes).ok();
            (Body::from(bytes), v)
        }
        Err(_) => (Body::empty(), None),
    }
}

/// Outside the webhook layer: records every answer in the ring (after it was produced; the
/// answer itself is passed through unchanged).
async fn record(State(rec): State<Arc<Recorder>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let (method, uri, headers) = (parts.method.clone(), parts.uri.clone(), parts.headers.clone());
    let copy = Arc::new(Mutex::new(Some(Vec::new())));
    let body = Body::new(Tee {
        inner: body,
        copy: Arc::clone(&copy),
        cap: rec.max_body,
    });
    let response = next.run(Request::from_parts(parts, body)).await;
    let (parts, body) = response.into_parts();
    let (body, json) = peek_json(&parts.headers, body).await;
    let status = parts.status;
    let field = |k: &str| {
        json.as_ref()
            .and_then(|v| v.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let code = if status.is_success() {
        String::new()
    } else {
        field("error").map(|c| cut(&c, 64).to_owned()).unwrap_or_default()
    };
    // A 2xx to a POST went through verification (a GET's 2xx is a challenge answer).
    let read = method != Method::GET && method != Method::HEAD;
    let verified = (status.is_success() && read) || AFTER_VERIFY.contains(&code.as_str());
    let described = if verified {
        let bytes = copy.lock().unwrap_or_else(|p| p.into_inner()).take();
        bytes.and_then(|b| rec.scheme.describe(&RequestHead::new(&method, &uri, &headers), &b).ok())
    } else {
        None
    };
    let outcome: &'static str = if status.is_success() {
        // The core's own acknowledgements say which they are in the extensions (Slack's
        // carry no body); the body's word for any other layer's.
        let ack = parts.extensions.get::<Acknowledgement>().map(|a| a.as_str());
        match ack.or(field("status").as_deref()) {
            Some("accepted") => "accepted",
            Some("duplicate") => "duplicate",
            Some("ignored") => "ignored",
            _ if method == Method::GET || method == Method::HEAD => "challenge",
            _ if described.as_ref().is_some_and(|d| d.challenge.is_some()) => "challenge",
            _ => "handled",
        }
    } else if code == "handler_failed" {
        "handler_failed"
    } else {
        "rejected"
    };
    let (event_id, event_type) = match described {
        Some(d) if outcome != "challenge" => (
            d.event_id.map(|s| cut(&s, 200).to_owned()),
            d.event_type.map(|s| cut(&s, 200).to_owned()),
        ),
        _ => (None, None),
    };
    rec.answers.push(Answer {
        at_ms: now_ms(),
        method: cut(method.as_str(), 16).to_owned(),
        status: status.as_u16(),
        outcome,
        apart: kept_apart(verified, outcome, &code),
        code,
        event_id,
        event_type,
        millis: started.elapsed().as_millis() as u64,
    });
    Response::from_parts(parts, body)
}

// ---------------------------------------------------------------------------------------------
// --metrics and --ui beside the webhook route

/// What runs beside the webhook route: the metrics endpoint and the inspector. Their tasks
/// stop when this is dropped.
pub struct Extras {
    metrics: Option<(tokio::net::TcpListener, SocketAddr, PrometheusHandle)>,
    ui: Option<(tokio::net::TcpListener, SocketAddr, String, bool)>,
    answers: Arc<Answers>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Extras {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn bind(what: &str, addr: &str) -> CliResult<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| failed(format!("cannot listen on {addr} ({what}): {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| failed(format!("cannot read the bound address ({what}): {e}")))?;
    Ok((listener, bound))
}

/// The address a browser on this machine uses for `addr` (`0.0.0.0` → `127.0.0.1`).
fn local_url(addr: SocketAddr) -> String {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{a}")
}

impl Extras {
    /// Installs the metrics recorder (`--metrics`) and binds both listeners. Call before the
    /// receiver answers anything.
    pub async fn bind(args: &ServeArgs) -> CliResult<Self> {
        let metrics = match &args.metrics {
            Some(addr) => {
                let handle = super::metrics::install()?;
                let (l, a) = bind("--metrics", addr).await?;
                Some((l, a, handle))
            }
            None => None,
        };
        let ui = match &args.ui {
            Some(addr) => {
                let (l, a) = bind("--ui", addr).await?;
                let (token, given) = match &args.ui_token {
                    Some(t) => (t.clone(), true),
                    None => (random_token(), false),
                };
                Some((l, a, token, given))
            }
            None => None,
        };
        Ok(Self {
            metrics,
            ui,
            answers: Arc::new(Answers::default()),
            tasks: Vec::new(),
        })
    }

    /// Whether [`wrap`](Self::wrap) records answers (`--ui`; ask before [`start`](Self::start)).
    pub fn records(&self) -> bool {
        self.ui.is_some()
    }

    /// With `--ui`: records every answer of the webhook route (outermost layer).
    pub fn wrap(&self, app: Router, receiver: &Arc<Receiver>) -> Router {
        if self.ui.is_none() {
            return app;
        }
        let rec = Arc::new(Recorder {
            answers: Arc::clone(&self.answers),
            scheme: Arc::clone(receiver.verifier().scheme()),
            max_body: receiver.verifier().max_body(),
        });
        app.route_layer(axum::middleware::from_fn_with_state(rec, record))
    }

    /// Starts serving both and prints their addresses on stderr (the inspector's with its
    /// token, unless the user gave it): call after the `listening on` line.
    pub fn start(&mut self, receiver: Arc<Receiver>, inbox: Option<Arc<dyn InboxStore>>, about: String) {
        if let Some((listener, addr, handle)) = self.metrics.take() {
            self.tasks.extend(super::metrics::spawn(listener, handle));
            write_stderr(format_args!("hookguard: metrics on {}/metrics", local_url(addr)));
        }
        if let Some((listener, addr, token, given)) = self.ui.take() {
            let url = local_url(addr);
            if !addr.ip().is_loopback() {
                tracing::warn!(
                    "--ui listens on {addr}, reachable from other machines over plain HTTP: its token travels unencrypted"
                );
            }
            let ui = Arc::new(Inspector {
                hosts: loopback_hosts(addr),
                session: random_hex(),
                form: random_hex(),
                cookie: format!("hookguard_ui_{}", addr.port()),
                token,
                answers: Arc::clone(&self.answers),
                receiver,
                inbox,
                about,
                started_ms: now_ms(),
                counts: Counts::default(),
                form_timeout: FORM_READ_TIMEOUT,
            });
            let app = router(ui.clone());
            self.tasks.push(tokio::spawn(super::http_server::serve(
                listener,
                app,
                std::future::pending(),
                super::http_server::Limits::EXTRAS,
            )));
            if given {
                write_stderr(format_args!("hookguard: inspector on {url}/ (token from --ui-token)"));
            } else {
                // The one place the token is shown: the user needs it to open the page.
                write_stderr(format_args!("hookguard: inspector on {url}/?token={}", ui.token));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The inspector

struct Inspector {
    /// The `Host` values accepted when bound to a loopback address (DNS rebinding).
    hosts: Option<Vec<String>>,
    token: String,
    /// The browser's cookie value, and the value in the page's forms: random, of this process,
    /// never the token itself (a cookie is sent to every port of 127.0.0.1, a page can be
    /// saved; neither then carries what the API and scripts use).
    session: String,
    form: String,
    cookie: String,
    answers: Arc<Answers>,
    receiver: Arc<Receiver>,
    inbox: Option<Arc<dyn InboxStore>>,
    about: String,
    started_ms: i64,
    /// The inbox counts, shared by page views and `/api/status`.
    counts: Counts,
    /// How long a form's body may take ([`FORM_READ_TIMEOUT`]).
    form_timeout: std::time::Duration,
}

/// The last inbox counts, when taken and how long counting took: a count reads every row, so
/// it is reused for max(5 s, 20× its duration); a replay from the page drops it. Callers share
/// one count (the mutex is held while counting).
#[derive(Default)]
struct Counts(tokio::sync::Mutex<Option<CachedStats>>);

struct CachedStats {
    at: std::time::Instant,
    took: std::time::Duration,
    stats: Result<hookguard_core::inbox::InboxStats, String>,
}

impl Counts {
    async fn get(&self, inbox: &dyn InboxStore) -> Result<hookguard_core::inbox::InboxStats, String> {
        let mut cached = self.0.lock().await;
        if let Some(c) = cached.as_ref() {
            if c.at.elapsed() < std::time::Duration::from_secs(5).max(c.took * 20) {
                return c.stats.clone();
            }
        }
        let at = std::time::Instant::now();
        let stats = inbox.stats().await.map_err(|e| e.to_string());
        *cached = Some(CachedStats {
            at,
            took: at.elapsed(),
            stats: stats.clone(),
        });
        stats
    }

    /// Drops the cached counts (the page changed the inbox).
    async fn clear(&self) {
        *self.0.lock().await = None;
    }
}

/// How a request proved it holds the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credential {
    Bearer,
    Cookie,
}

impl Inspector {
    fn credential(&self, headers: &HeaderMap) -> Option<Credential> {
        let token = self.token.as_bytes();
        let bearer = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            // The scheme's name is case-insensitive (RFC 9110 §11.1): `bearer` too.
            .filter_map(|v| {
                let v = v.as_bytes();
                (v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ")).then(|| &v[7..])
            })
            .any(|t| ct_eq(t, token));
        if bearer {
            return Some(Credential::Bearer);
        }
        let prefix = format!("{}=", self.cookie);
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix(prefix.as_str()))
            .any(|t| ct_eq(t.as_bytes(), self.session.as_bytes()));
        cookie.then_some(Credential::Cookie)
    }
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Security headers on every inspector answer.
fn harden(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Not `no-referrer`: with it a browser sends `Origin: null` on our own form POSTs. Nothing
    // leaves the origin either way, and the token is out of the URL after the first visit.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn unauthorized() -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::WWW_AUTHENTICATE, "Bearer realm=\"hookguard inspector\""),
        ],
        page(
            "401 — token required",
            "<h1>401 — token required</h1><p>Open the URL <code>hookguard serve --ui</code> printed on \
             its stderr (it carries <code>?token=…</code>), or send <code>Authorization: Bearer TOKEN</code>.</p>",
            None,
        ),
    )
        .into_response();
    harden(&mut r);
    r
}

fn forbidden(why: &str) -> Response {
    let body = format!("<h1>403 — refused</h1><p>{}</p>", esc(why));
    let mut r = (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page("403 — refused", &body, None),
    )
        .into_response();
    harden(&mut r);
    r
}

/// Decodes `application/x-www-form-urlencoded` values (`+` and `%XX`).
fn form_value(body: &[u8], name: &str) -> Option<Vec<u8>> {
    let raw = body
        .split(|b| *b == b'&')
        .filter_map(|p| {
            let eq = p.iter().position(|b| *b == b'=')?;
            Some((&p[..eq], &p[eq + 1..]))
        })
        .find(|(k, _)| *k == name.as_bytes())?
        .1;
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = raw.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

/// The host names a page on a loopback listener can be asked for: another name that
/// resolves to 127.0.0.1 is a DNS-rebinding page, whose script would otherwise be same-origin
/// with this one. Any port (or none) goes with them: a port forwarded to this one
/// (`ssh -L 9000:127.0.0.1:8790`, `kubectl port-forward`, an editor's forwarding) arrives as
/// `localhost:9000`, and a rebinding page can never send a loopback name. `None` for a
/// non-loopback listener (names unknown).
pub fn loopback_hosts(addr: std::net::SocketAddr) -> Option<Vec<String>> {
    addr.ip().is_loopback().then(|| {
        let mut hosts: Vec<String> = ["127.0.0.1", "localhost", "[::1]"].map(String::from).into();
        // The listener's own address (`127.0.0.2`, say), as a browser writes it in `Host`.
        let own = std::net::SocketAddr::new(addr.ip(), 0).to_string();
        let own = own.trim_end_matches(":0");
        if !hosts.iter().any(|h| h == own) {
            hosts.push(own.to_owned());
        }
        hosts
    })
}

/// The name part of a `Host` value, or `None` when what follows it is not a port.
fn host_name(host: &str) -> Option<&str> {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => {
            let end = rest.find(']')? + 2;
            (&host[..end], &host[end..])
        }
        None => host.split_at(host.find(':').unwrap_or(host.len())),
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok.then_some(name)
}

/// Whether a form's `Origin` is this page's own: the `Host` it was asked for, over plain HTTP
/// or behind a front end that speaks HTTPS (the browser then names `https://`).
fn same_origin(origin: &[u8], host: &str) -> bool {
    ["http://", "https://"].iter().any(|scheme| {
        origin.len() == scheme.len() + host.len()
            && origin[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes())
            && origin[scheme.len()..].eq_ignore_ascii_case(host.as_bytes())
    })
}

/// `421` when a loopback listener is asked for another host name.
pub fn wrong_host(hosts: Option<&[String]>, headers: &HeaderMap) -> Option<Response> {
    let allowed = hosts?;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if host_name(host).is_some_and(|name| allowed.iter().any(|a| a.eq_ignore_ascii_case(name))) {
        return None;
    }
    let mut r = (
        StatusCode::MISDIRECTED_REQUEST,
        "this page answers only to 127.0.0.1, localhost and [::1] (any port)\n",
    )
        .into_response();
    harden(&mut r);
    Some(r)
}

/// How long the inspector waits for a form's body (a browser's form of a few hundred bytes).
const FORM_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Every inspector request passes here: the first visit's `?token=` becomes a cookie; any
/// other request needs the Bearer header or the cookie, and a state-changing one the token
/// itself (header or form field) and, when the browser says where it comes from, our origin.
async fn guard(State(ui): State<Arc<Inspector>>, req: Request, next: Next) -> Response {
    if let Some(r) = wrong_host(ui.hosts.as_deref(), req.headers()) {
        return r;
    }
    let safe = req.method() == Method::GET || req.method() == Method::HEAD;
    if let Some(given) = query_param(req.uri().query(), "token") {
        if !(safe && ct_eq(given.as_bytes(), ui.token.as_bytes())) {
            return unauthorized();
        }
        // Set the cookie, and take the token out of the address bar and the tab's back history
        // (the browser's list of visited pages keeps it, as it did the redirect's).
        let cookie = format!("{}={}; HttpOnly; SameSite=Strict; Path=/", ui.cookie, ui.session);
        // Back to the page asked for, only as a path of this site: `//host/?token=` would
        // otherwise redirect to another site.
        let path = req.uri().path();
        let back = if path.starts_with("//") || path.contains('\\') {
            "/"
        } else {
            path
        };
        // A page that moves on by itself, not a redirect: after a link followed from another
        // site's page (a chat, a CI log) a redirect still counts as that site's navigation,
        // and the browser would not send the `SameSite=Strict` cookie just set (401). The
        // refresh is this page's own navigation; it replaces the page in the history.
        let back = esc(back);
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta http-equiv=\"refresh\" content=\"0;url={back}\"><title>hookguard inspector</title>\
             </head><body><p><a href=\"{back}\">Open the inspector</a></p></body></html>"
        );
        let mut r = html(StatusCode::OK, body);
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        harden(&mut r);
        // The refresh must not carry this address (its token) as its `Referer`.
        r.headers_mut()
            .insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        return r;
    }
    let Some(credential) = ui.credential(req.headers()) else {
        return unauthorized();
    };
    let req = if safe || credential == Credential::Bearer {
        req
    } else {
        // A cookie is sent by the browser on its own: a POST must also prove it comes from
        // our page (the token in its form) and, where the browser names it, our origin.
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            if !same_origin(origin.as_bytes(), host) {
                return forbidden("cross-origin request");
            }
        }
        let (parts, body) = req.into_parts();
        // Bounded in time too: the connection has a request in hand, so the server's sweep of
        // stalled heads does not close it, and a body that never comes held its place for ever.
        let bytes = match tokio::time::timeout(ui.form_timeout, axum::body::to_bytes(body, 4096)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(_)) => return forbidden("the form is too large"),
            Err(_) => {
                let mut r = (StatusCode::REQUEST_TIMEOUT, "the form did not arrive in time\n").into_response();
                harden(&mut r);
                return r;
            }
        };
        let token_ok = form_value(&bytes, "token").is_some_and(|t| ct_eq(&t, ui.form.as_bytes()));
        if !token_ok {
            return forbidden("the form does not carry the inspector token; reload the page");
        }
        Request::from_parts(parts, Body::from(bytes))
    };
    let mut r = next.run(req).await;
    harden(&mut r);
    r
}

fn router(ui: Arc<Inspector>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/style.css", get(style))
        .route("/items/{id}", get(item))
        .route("/items/{id}/replay", post(replay))
        .route("/replay-dead", post(replay_dead))
        .route("/api/status", get(status))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found").into_response() })
        .layer(axum::middleware::from_fn_with_state(ui.clone(), guard))
        .with_state(ui)
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// HTML-escapes text for element content and quoted attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn opt(s: Option<&str>) -> String {
    s.map_or_else(|| "<span class=\"none\">—</span>".to_owned(), esc)
}

fn time(ms: i64) -> String {
    let ms = ms.max(0);
    hookguard_core::profile::rfc3339((ms / 1000) as u64, (ms % 1000) as u32)
}

/// A whole page around `body`.
fn page(title: &str, body: &str, refresh: Option<u32>) -> String {
    let refresh = refresh.map_or(String::new(), |s| {
        format!("<meta http-equiv=\"refresh\" content=\"{s}\">")
    });
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{refresh}\
         <title>{}</title><link rel=\"stylesheet\" href=\"/style.css\"></head><body>{body}</body></html>",
        esc(title)
    )
}

fn html(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// How close the sender is to its kill switch: `"ok"`, `"warn"` (half-way) or `"tripped"`. A
/// sender that counts one event's tries (HCSS, APS) trips on those alone: answers in a row —
/// a wrong token, a scanner's forged requests, which name no event — only warn for it.
fn health_level(k: &hookguard_core::observe::KillSwitch, in_a_row: u32, of_one_event: u32) -> &'static str {
    let counted = if k.per_event { of_one_event } else { in_a_row };
    if counted >= k.failures {
        "tripped"
    } else if in_a_row.max(of_one_event) >= k.failures.div_ceil(2).max(1) {
        "warn"
    } else {
        "ok"
    }
}

/// The sender-health block: failed answers (non-2xx or late) in a row (or, for a sender counting one event's
/// tries, the most failed tries of one event) against the kill switch.
fn health_html(ui: &Inspector, out: &mut String) {
    let scheme = ui.receiver.verifier().scheme();
    let name = scheme.profile().name;
    let health = ui.receiver.health();
    let (in_a_row, of_one_event) = (health.consecutive_failures(), health.event_failures());
    let n = in_a_row.max(of_one_event);
    out.push_str("<section id=\"health\"><h2>Sender health</h2>");
    // The receiver's own (an application may give one the profile lacks), not the profile's.
    match health.kill_switch() {
        Some(k) => {
            let level = health_level(&k, in_a_row, of_one_event);
            let _ = write!(
                out,
                "<div class=\"health {level}\" id=\"health-{level}\"><p><strong>{}</strong>: \
                 <span id=\"failures\">{n}</span> {}; kill switch at {}. \
                 {} {}.</p><meter min=\"0\" max=\"{}\" low=\"{}\" high=\"{}\" optimum=\"0\" value=\"{}\"></meter>",
                esc(name),
                if k.per_event {
                    "failed answer(s) in a row, or failed tries of one event"
                } else {
                    "failed answer(s) in a row"
                },
                k.failures,
                esc(name),
                esc(k.what),
                k.failures,
                k.failures.div_ceil(2).max(1),
                k.failures.saturating_sub(1).max(1),
                n.min(k.failures)
            );
            if level == "tripped" {
                let _ = write!(out, "<p class=\"remedy\">{}</p>", esc(k.remedy));
            }
            out.push_str("</div>");
        }
        None => {
            let _ = write!(
                out,
                "<div class=\"health ok\"><p><strong>{}</strong>: <span id=\"failures\">{n}</span> non-2xx \
                 answer(s) in a row; no kill switch is known for this sender.</p></div>",
                esc(name)
            );
        }
    }
    out.push_str("</section>");
}

fn hidden_token(ui: &Inspector) -> String {
    // The form value proves the POST comes from this page (the cookie alone does not).
    format!("<input type=\"hidden\" name=\"token\" value=\"{}\">", esc(&ui.form))
}

fn items_table(ui: &Inspector, state: InboxState, items: &[InboxRecord], out: &mut String) {
    let _ = write!(
        out,
        "<table class=\"items\" id=\"items-{s}\"><thead><tr><th>id</th><th>event id</th><th>type</th>\
         <th>attempts</th><th>received</th><th>{when}</th><th>last error</th>{act}</tr></thead><tbody>",
        s = state.as_str(),
        when = match state {
            InboxState::Pending => "next attempt",
            InboxState::Running => "lease ends",
            InboxState::Done | InboxState::Dead => "finished",
        },
        act = if state == InboxState::Dead { "<th></th>" } else { "" },
    );
    for it in items {
        let when = match state {
            InboxState::Pending | InboxState::Running => time(it.next_attempt_at_ms),
            InboxState::Done | InboxState::Dead => it.finished_at_ms.map(time).unwrap_or_default(),
        };
        let error = it.last_error.as_deref().map(|e| cut(e, 300));
        let _ = write!(
            out,
            "<tr class=\"item {s}\" data-event-id=\"{eid}\"><td><a href=\"/items/{id}\">{id}</a></td><td class=\"eid\">{eid}</td>\
             <td>{ty}</td><td class=\"num\">{att}</td><td>{rec}</td><td>{when}</td><td class=\"err\">{err}</td>",
            s = state.as_str(),
            id = it.id,
            eid = it.event_id.as_deref().map(esc).unwrap_or_default(),
            ty = opt(it.event_type.as_deref().map(|t| cut(t, 200))),
            att = it.attempts,
            rec = time(it.received_at_ms),
            when = esc(&when),
            err = opt(error),
        );
        if state == InboxState::Dead {
            let _ = write!(
                out,
                "<td><form method=\"post\" action=\"/items/{id}/replay\">{tok}\
                 <button type=\"submit\" id=\"replay-{id}\">Replay</button></form></td>",
                id = it.id,
                tok = hidden_token(ui)
            );
        }
        out.push_str("</tr>");
    }
    if items.is_empty() {
        let _ = write!(
            out,
            "<tr><td colspan=\"{}\" class=\"none\">none</td></tr>",
            if state == InboxState::Dead { 8 } else { 7 }
        );
    }
    out.push_str("</tbody></table>");
}

async fn inbox_html(ui: &Inspector, inbox: &dyn InboxStore, out: &mut String) {
    out.push_str("<section id=\"inbox\"><h2>Inbox</h2>");
    match ui.counts.get(inbox).await {
        Ok(s) => {
            let oldest = s
                .oldest_pending_secs(now_ms())
                .map(|secs| format!("; oldest pending {secs:.1} s"))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<p class=\"counts\"><span class=\"pending\">{} pending</span> · <span class=\"running\">{} running</span> · \
                 <span class=\"done\">{} done</span> · <span class=\"dead\">{} dead</span>{}</p>",
                s.pending,
                s.running,
                s.done,
                s.dead,
                esc(&oldest)
            );
            if s.dead > 0 {
                let _ = write!(
                    out,
                    "<form method=\"post\" action=\"/replay-dead\" class=\"inline\">{}\
                     <button type=\"submit\" id=\"replay-dead\" title=\"as many as half the pending cap leaves room for\">Replay every dead item</button></form>",
                    hidden_token(ui)
                );
            }
        }
        Err(e) => {
            let _ = write!(
                out,
                "<p class=\"err\">cannot read the inbox: {}</p>",
                esc(&e.to_string())
            );
        }
    }
    for (state, limit) in [
        (InboxState::Dead, 50),
        (InboxState::Pending, 50),
        (InboxState::Running, 50),
        (InboxState::Done, 20),
    ] {
        let title = match state {
            InboxState::Dead => "Dead",
            InboxState::Pending => "Pending",
            InboxState::Running => "Running",
            InboxState::Done => "Done",
        };
        let _ = write!(out, "<h3>{title} <small>(newest {limit})</small></h3>");
        match inbox.list(ListFilter::default().state(state).limit(limit)).await {
            Ok(items) => items_table(ui, state, &items, out),
            Err(e) => {
                let _ = write!(out, "<p class=\"err\">{}</p>", esc(&e.to_string()));
            }
        }
    }
    out.push_str("</section>");
}

fn answers_html(ui: &Inspector, out: &mut String) {
    let answers = ui.answers.newest_first();
    let _ = write!(
        out,
        "<section id=\"answers\"><h2>Recent answers <small>(the last {RECENT} to new genuine deliveries and the last {RECENT} others, newest first; {} shown)</small></h2>\
         <table id=\"answers-table\"><thead><tr><th>time</th><th>method</th><th>status</th><th>outcome</th>\
         <th>code</th><th>event id</th><th>type</th><th>ms</th></tr></thead><tbody>",
        answers.len()
    );
    for a in &answers {
        let _ = write!(
            out,
            "<tr class=\"answer {o}\"><td>{t}</td><td>{m}</td><td class=\"num\">{s}</td><td><span class=\"badge {o}\">{o}</span></td>\
             <td>{c}</td><td class=\"eid\">{e}</td><td>{ty}</td><td class=\"num\">{ms}</td></tr>",
            o = a.outcome,
            t = time(a.at_ms),
            m = esc(&a.method),
            s = a.status,
            c = esc(&a.code),
            e = a.event_id.as_deref().map(esc).unwrap_or_default(),
            ty = opt(a.event_type.as_deref()),
            ms = a.millis,
        );
    }
    if answers.is_empty() {
        out.push_str("<tr><td colspan=\"8\" class=\"none\">no answer yet</td></tr>");
    }
    out.push_str("</tbody></table></section>");
}

async fn index(State(ui): State<Arc<Inspector>>, req: Request) -> Response {
    let refresh = query_param(req.uri().query(), "refresh")
        .and_then(|s| s.parse::<u32>().ok())
        .map(|s| s.clamp(2, 300));
    let mut body = String::with_capacity(16 * 1024);
    let _ = write!(
        body,
        "<header><h1>hookguard inspector</h1><p class=\"meta\">{} · started {} · \
         <a href=\"/\">refresh</a> · <a href=\"/?refresh=5\">auto-refresh every 5 s</a></p></header>",
        esc(&ui.about),
        time(ui.started_ms)
    );
    health_html(&ui, &mut body);
    if let Some(inbox) = &ui.inbox {
        inbox_html(&ui, inbox.as_ref(), &mut body).await;
    }
    answers_html(&ui, &mut body);
    html(StatusCode::OK, page("hookguard inspector", &body, refresh))
}

/// The item id of `/items/{id}`: one that is no inbox id (`abc`, past i64, not UTF-8 once
/// decoded: `%FF`) is no item, 0 (the same 404 as a missing one, not axum's plain-text
/// path rejection).
fn item_id(id: Result<Path<String>, axum::extract::rejection::PathRejection>) -> i64 {
    id.ok().and_then(|Path(id)| id.parse().ok()).unwrap_or(0)
}

async fn item(
    State(ui): State<Arc<Inspector>>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    let id = item_id(id);
    let Some(inbox) = &ui.inbox else {
        return html(
            StatusCode::NOT_FOUND,
            page("no inbox", "<p>serve runs without --inbox.</p>", None),
        );
    };
    let rec = match inbox.get(id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return html(
                StatusCode::NOT_FOUND,
                page(
                    "not found",
                    &format!("<p>no inbox item {id}. <a href=\"/\">back</a></p>"),
                    None,
                ),
            )
        }
        Err(e) => {
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                page("inbox error", &format!("<p>{}</p>", esc(&e.to_string())), None),
            )
        }
    };
    let mut b = String::new();
    let _ = write!(
        b,
        "<header><h1>inbox item {id}</h1><p class=\"meta\"><a href=\"/\">back</a></p></header><table class=\"kv\">\
         <tr><th>state</th><td><span class=\"badge {s}\">{s}</span></td></tr>\
         <tr><th>provider</th><td>{p}</td></tr><tr><th>event id</th><td>{e}</td></tr><tr><th>type</th><td>{t}</td></tr>\
         <tr><th>dedupe key</th><td>{k}</td></tr><tr><th>attempts</th><td>{a}</td></tr><tr><th>received</th><td>{r}</td></tr>\
         <tr><th>finished</th><td>{f}</td></tr><tr><th>last error</th><td class=\"err\">{le}</td></tr></table>",
        s = rec.state.as_str(),
        p = esc(&rec.provider),
        e = opt(rec.event_id.as_deref()),
        t = opt(rec.event_type.as_deref().map(|t| cut(t, 200))),
        k = opt(rec.dedupe_key.as_deref().map(|k| cut(k, 200))),
        a = rec.attempts,
        r = time(rec.received_at_ms),
        f = rec.finished_at_ms.map(time).unwrap_or_default(),
        le = opt(rec.last_error.as_deref().map(|e| cut(e, 2000))),
    );
    if rec.state == InboxState::Dead || rec.state == InboxState::Done {
        let _ = write!(
            b,
            "<form method=\"post\" action=\"/items/{id}/replay\">{}<button type=\"submit\" id=\"replay-{id}\">Replay</button></form>",
            hidden_token(&ui)
        );
    } else if rec.state == InboxState::Pending && rec.attempts > 0 {
        // Waiting out a retry (up to --retry-max): once the handler is fixed, run it now.
        let _ = write!(
            b,
            "<form method=\"post\" action=\"/items/{id}/replay\">{}<button type=\"submit\" id=\"run-now-{id}\" \
             title=\"due now, attempts reset\">Run now</button></form>",
            hidden_token(&ui)
        );
    }
    b.push_str("<h2>Stored headers</h2><table class=\"kv\">");
    for (n, v) in &rec.headers {
        let _ = write!(b, "<tr><th>{}</th><td>{}</td></tr>", esc(n), esc(cut(v, 500)));
    }
    b.push_str("</table>");
    if let Some(body) = &rec.body {
        let shown = &body[..body.len().min(BODY_SHOWN)];
        let text = String::from_utf8_lossy(shown);
        let note = if body.len() > BODY_SHOWN {
            format!(" (first {BODY_SHOWN} of {} bytes)", body.len())
        } else {
            format!(" ({} bytes)", body.len())
        };
        let _ = write!(b, "<h2>Body{}</h2><pre id=\"body\">{}</pre>", esc(&note), esc(&text));
    }
    html(StatusCode::OK, page(&format!("inbox item {id}"), &b, None))
}

/// After a POST: JSON for API clients, back to the page for a browser.
fn after_post(req_headers: &HeaderMap, json: serde_json::Value) -> Response {
    let api = req_headers.contains_key(header::AUTHORIZATION);
    if api {
        ([(header::CONTENT_TYPE, "application/json")], json.to_string()).into_response()
    } else {
        (StatusCode::SEE_OTHER, [(header::LOCATION, "/#inbox")]).into_response()
    }
}

async fn replay(
    State(ui): State<Arc<Inspector>>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
) -> Response {
    let id = item_id(id);
    let Some(inbox) = &ui.inbox else {
        return (StatusCode::NOT_FOUND, "serve runs without --inbox").into_response();
    };
    let (provider, was) = match inbox.get(id).await {
        Ok(Some(r)) => (r.provider, r.state),
        Ok(None) => return (StatusCode::NOT_FOUND, format!("no inbox item {id}")).into_response(),
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    match inbox.replay(id, now_ms()).await {
        Ok(()) => {
            ui.counts.clear().await;
            // "Run now" on a pending item moves no item back to pending: not a transition (a
            // dashboard adding replays to the pending count would drift).
            if matches!(was, InboxState::Done | InboxState::Dead) {
                hookguard_core::observe::inbox_transition(&provider, "replayed");
            }
            tracing::info!(id, "inspector: inbox item replayed");
            after_post(&headers, serde_json::json!({ "replayed": 1, "id": id }))
        }
        Err(InboxError::NotFound(_)) => (StatusCode::NOT_FOUND, format!("no inbox item {id}")).into_response(),
        Err(e @ InboxError::WrongState { .. }) => (StatusCode::CONFLICT, e.to_string()).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn replay_dead(State(ui): State<Arc<Inspector>>, headers: HeaderMap) -> Response {
    let Some(inbox) = &ui.inbox else {
        return (StatusCode::NOT_FOUND, "serve runs without --inbox").into_response();
    };
    match inbox.replay_dead(now_ms()).await {
        Ok(n) => {
            ui.counts.clear().await;
            // Every sender's dead items in the file (receivers of other senders may share it):
            // counted as the purge counts, not under this receiver's sender.
            hookguard_core::observe::count_by(
                "hookguard_inbox_transitions_total",
                &[("provider", "all"), ("transition", "replayed")],
                n,
            );
            tracing::info!(
                count = n,
                "inspector: dead inbox items replayed (until pending items fill half the pending cap)"
            );
            after_post(&headers, serde_json::json!({ "replayed": n }))
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// `GET /api/status` (JSON): health, recent answers, inbox counts.
async fn status(State(ui): State<Arc<Inspector>>) -> Response {
    let k = ui.receiver.health().kill_switch();
    let answers: Vec<serde_json::Value> = ui
        .answers
        .newest_first()
        .into_iter()
        .map(|a| {
            serde_json::json!({
                "at": time(a.at_ms), "method": a.method, "status": a.status, "outcome": a.outcome,
                "code": a.code, "event_id": a.event_id, "event_type": a.event_type, "ms": a.millis,
                "ring": if a.apart { "deliveries" } else { "others" },
            })
        })
        .collect();
    let inbox = match &ui.inbox {
        Some(inbox) => match ui.counts.get(inbox.as_ref()).await {
            Ok(s) => serde_json::json!({"pending": s.pending, "running": s.running, "done": s.done, "dead": s.dead}),
            Err(e) => serde_json::json!({ "error": e }),
        },
        None => serde_json::Value::Null,
    };
    let body = serde_json::json!({
        "provider": ui.receiver.verifier().provider().as_str(),
        "health": {
            "consecutive_failures": ui.receiver.health().consecutive_failures(),
            "event_failures": ui.receiver.health().event_failures(),
            "kill_switch": k.map(|k| k.failures),
        },
        "inbox": inbox,
        "answers": answers,
    });
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--ui` or `--metrics` on `--listen`'s port is told as such, before anything binds.
    #[test]
    fn two_addresses_on_one_port_are_found() {
        assert!(same_place("127.0.0.1:8787", "127.0.0.1:8787"));
        assert!(same_place("0.0.0.0:8787", "127.0.0.1:8787"));
        assert!(same_place("127.0.0.1:8787", "[::]:8787"));
        assert!(!same_place("127.0.0.1:8787", "127.0.0.1:8788"));
        assert!(!same_place("127.0.0.1:0", "127.0.0.1:0"), "port 0 is any free port");
        assert!(!same_place("127.0.0.1:8787", "127.0.0.2:8787"));
        assert!(
            !same_place("0.0.0.0:8787", "[::1]:8787"),
            "IPv4's any and IPv6's loopback"
        );
    }

    proptest::proptest! {
        /// `PORT` is that port on 127.0.0.1; `HOST:PORT` is kept as given when PORT is a port
        /// and HOST is not empty; anything else is refused, without a panic.
        #[test]
        fn addresses_are_a_port_or_a_host_and_a_port(port: u16, host in "[a-z0-9.]{1,12}|\\[[0-9a-f:]{2,12}\\]") {
            proptest::prop_assert_eq!(parse_addr(&port.to_string()), Ok(format!("127.0.0.1:{port}")));
            let a = format!("{host}:{port}");
            proptest::prop_assert_eq!(parse_addr(&a), Ok(a.clone()));
            let (no_host, too_high) = (format!(":{port}"), format!("{host}:{}", u32::from(port) + 65_536));
            proptest::prop_assert!(parse_addr(&no_host).is_err());
            proptest::prop_assert!(parse_addr(&too_high).is_err());
        }

        #[test]
        fn any_address_is_taken_or_refused(s in r"\PC{0,24}") {
            if let Ok(a) = parse_addr(&s) {
                let (host, port) = a.rsplit_once(':').unwrap();
                proptest::prop_assert!(!host.is_empty() && port.parse::<u16>().is_ok(), "{s:?} -> {a:?}");
            }
        }

        /// Two addresses take one port or not whichever is named first; never a port of its own
        /// with itself unless that port is 0 (any free one).
        #[test]
        fn same_place_is_symmetric(
            a in "(127\\.0\\.0\\.[12]|0\\.0\\.0\\.0|\\[::\\]|\\[::1\\]|localhost):(0|80|8787)",
            b in "(127\\.0\\.0\\.[12]|0\\.0\\.0\\.0|\\[::\\]|\\[::1\\]|localhost):(0|80|8787)",
        ) {
            proptest::prop_assert_eq!(same_place(&a, &b), same_place(&b, &a));
            proptest::prop_assert_eq!(same_place(&a, &a), !a.ends_with(":0"));
        }

        /// A token is taken exactly when it has 16 or more characters, all of `A-Z a-z 0-9 . _ -`.
        #[test]
        fn tokens_are_long_and_plain(s in r"[A-Za-z0-9._-]{0,24}|\PC{0,24}") {
            let plain = s.len() >= 16 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            proptest::prop_assert_eq!(parse_token(&s).is_ok(), plain);
            if let Err(e) = parse_token(&s) {
                proptest::prop_assert!(s.len() < 4 || !e.contains(&s), "{e:?} repeats the token");
            }
        }
    }

    proptest::proptest! {
        /// Any value, percent-encoded into a form among other fields, decodes to itself; `+`
        /// is a space; a broken `%` escape refuses the value instead of guessing.
        #[test]
        fn form_values_decode_what_was_encoded(v in r"\PC{0,24}", other in "[a-z=%+&]{0,12}") {
            let body = format!("x={other}&token={}&y=1", crate::common::encode_query_value(&v));
            // `other` may itself hold `&token=…`: the first field of the name is the one read.
            if !other.contains("&token=") {
                proptest::prop_assert_eq!(form_value(body.as_bytes(), "token"), Some(v.clone().into_bytes()));
            }
            let plus = format!("token={}", crate::common::encode_query_value(&v).replace("%20", "+"));
            proptest::prop_assert_eq!(form_value(plus.as_bytes(), "token"), Some(v.into_bytes()));
        }

        #[test]
        fn broken_escapes_refuse_the_value(pre in "[a-z]{0,4}", bad in "%|%[0-9a-fA-F]|%[g-z][0-9]|%[0-9][g-z]") {
            let body = format!("token={pre}{bad}");
            proptest::prop_assert_eq!(form_value(body.as_bytes(), "token"), None);
        }

        /// `cut` keeps the longest prefix of at most `n` bytes that ends on a character.
        #[test]
        fn cut_keeps_the_longest_whole_prefix(s in r"\PC{0,16}", n in 0usize..40) {
            let c = cut(&s, n);
            proptest::prop_assert!(s.starts_with(c) && c.len() <= n);
            if c.len() < s.len() {
                let next = s[c.len()..].chars().next().unwrap().len_utf8();
                proptest::prop_assert!(c.len() + next > n);
            }
        }
    }

    /// Page views reuse one count of the inbox for a while (each reads every row); a replay
    /// from the page counts again.
    #[tokio::test]
    async fn inbox_counts_are_reused_until_the_page_changes_the_inbox() {
        use hookguard_core::inbox::{InboxStore, NewItem};
        let dir = std::env::temp_dir().join(format!("hg-ui-counts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let inbox = hookguard_sqlite::SqliteInbox::open(dir.join("inbox.db")).unwrap();
        let verifier = hookguard_core::Verifier::builder(hookguard_core::schemes::Hcss::new())
            .secret("tok")
            .build()
            .unwrap();
        let (method, uri, headers) = (
            axum::http::Method::POST,
            axum::http::Uri::from_static("/h?token=tok"),
            HeaderMap::new(),
        );
        let add = |id: &str| {
            let body = format!(r#"{{"companyId":"c","eventType":"EmployeeUpdated","businessUnitId":"b","id":"{id}"}}"#);
            let head = hookguard_core::RequestHead::new(&method, &uri, &headers);
            let Ok(hookguard_core::Verdict::Deliver(d)) = verifier.verify(&head, body.into()) else {
                panic!("not a delivery")
            };
            NewItem::from_delivery(&d, Vec::new(), now_ms())
        };
        let counts = Counts::default();
        inbox.accept(add("a")).await.unwrap();
        assert_eq!(counts.get(&inbox).await.unwrap().pending, 1);
        inbox.accept(add("b")).await.unwrap();
        assert_eq!(counts.get(&inbox).await.unwrap().pending, 1, "reused");
        counts.clear().await;
        assert_eq!(counts.get(&inbox).await.unwrap().pending, 2);
        drop(inbox);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A review's finding: a form POST whose body never came (a cookie-holding client that
    /// sent only the head) held its connection and task for ever — the server's sweep only
    /// closes connections without a request in hand. Now `408` after `FORM_READ_TIMEOUT`.
    #[tokio::test]
    async fn a_form_whose_body_never_comes_is_answered_408() {
        use tower_service::Service as _;
        /// A body that never sends a byte.
        struct Never;
        impl http_body::Body for Never {
            type Data = bytes::Bytes;
            type Error = std::io::Error;
            fn poll_frame(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
                std::task::Poll::Pending
            }
        }
        let verifier = hookguard_core::Verifier::builder(hookguard_core::schemes::Hcss::new())
            .secret("tok")
            .build()
            .unwrap();
        let ui = Arc::new(Inspector {
            hosts: None,
            token: "t".repeat(32),
            session: "s".repeat(32),
            form: "f".repeat(32),
            cookie: "hookguard_ui_1".to_owned(),
            answers: Arc::default(),
            receiver: Arc::new(Receiver::new(verifier)),
            inbox: None,
            about: String::new(),
            started_ms: 0,
            counts: Counts::default(),
            form_timeout: std::time::Duration::from_millis(200),
        });
        let req = Request::post("/replay-dead")
            .header(header::COOKIE, format!("hookguard_ui_1={}", "s".repeat(32)))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::CONTENT_LENGTH, "100")
            .body(Body::new(Never))
            .unwrap();
        let r = tokio::time::timeout(std::time::Duration::from_secs(30), router(ui).call(req))
            .await
            .expect("answered")
            .unwrap();
        assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
    }

    /// A loopback listener answers its loopback names on any port or none (port 80, a port
    /// forwarded to it: `ssh -L`, `kubectl port-forward`; was `421` unless the port was the
    /// listener's own); other names still get 421 (DNS rebinding), and so does a `Host` whose
    /// port part is no port.
    #[test]
    fn loopback_names_are_answered_on_any_port() {
        let mut h = HeaderMap::new();
        let on = |ip: [u8; 4], port: u16| loopback_hosts((ip, port).into()).unwrap();
        for (ip, port, host, ok) in [
            ([127, 0, 0, 1], 80, "127.0.0.1", true),
            ([127, 0, 0, 1], 80, "LOCALHOST", true),
            ([127, 0, 0, 1], 80, "evil.example", false),
            ([127, 0, 0, 1], 8080, "127.0.0.1", true),
            ([127, 0, 0, 1], 8080, "127.0.0.1:8080", true),
            ([127, 0, 0, 1], 8080, "localhost:9000", true),
            ([127, 0, 0, 1], 8080, "[::1]:9000", true),
            ([127, 0, 0, 1], 8080, "[::1]", true),
            ([127, 0, 0, 2], 8080, "127.0.0.2:8080", true),
            ([127, 0, 0, 1], 8080, "127.0.0.2:8080", false),
            ([127, 0, 0, 1], 8080, "evil.example:8080", false),
            ([127, 0, 0, 1], 8080, "localhost.evil.example:8080", false),
            ([127, 0, 0, 1], 8080, "localhost:", false),
            ([127, 0, 0, 1], 8080, "localhost:80a", false),
            ([127, 0, 0, 1], 8080, "localhost:123456", false),
            ([127, 0, 0, 1], 8080, "localhost:80:80", false),
            ([127, 0, 0, 1], 8080, "[::1]x", false),
            ([127, 0, 0, 1], 8080, "[::1", false),
            ([127, 0, 0, 1], 8080, "", false),
        ] {
            h.insert(header::HOST, host.parse().unwrap());
            assert_eq!(
                wrong_host(Some(&on(ip, port)), &h).is_none(),
                ok,
                "{ip:?}:{port} {host}"
            );
        }
    }

    /// A form's `Origin` is ours over HTTP or behind an HTTPS front end (every replay was
    /// `403` there); another host, or ours with something appended, is not.
    #[test]
    fn a_forms_origin_may_name_http_or_https() {
        for (origin, ok) in [
            ("http://insp.example:8790", true),
            ("https://insp.example:8790", true),
            ("HTTPS://INSP.example:8790", true),
            ("https://evil.example", false),
            ("http://insp.example:8790.evil.example", false),
            ("https://insp.example:879", false),
            ("ftp://insp.example:8790", false),
            ("null", false),
            ("", false),
        ] {
            assert_eq!(same_origin(origin.as_bytes(), "insp.example:8790"), ok, "{origin}");
        }
    }

    /// Forged requests in a row (no event named) warn about a per-event sender's switch but
    /// never show it tripped: anyone reaching the port could make the page tell the operator
    /// to re-subscribe.
    #[test]
    fn a_per_event_sender_trips_on_one_events_tries_alone() {
        use hookguard_core::observe::KillSwitch;
        let hcss = hookguard_core::schemes::Hcss::new()
            .kill_switch()
            .expect("HCSS has one");
        assert!(hcss.per_event && hcss.failures == 5);
        assert_eq!(health_level(&hcss, 6, 0), "warn");
        assert_eq!(health_level(&hcss, 100, 4), "warn");
        assert_eq!(health_level(&hcss, 0, 5), "tripped");
        assert_eq!(health_level(&hcss, 0, 2), "ok");
        let in_a_row = KillSwitch::new(20, "disables the endpoint", "re-enable it");
        assert_eq!(health_level(&in_a_row, 20, 0), "tripped");
        assert_eq!(health_level(&in_a_row, 10, 0), "warn");
        assert_eq!(health_level(&in_a_row, 9, 0), "ok");
    }

    #[test]
    fn escaping_and_form_values() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(form_value(b"a=1&token=ab%2Dc+d", "token").unwrap(), b"ab-c d");
        assert_eq!(form_value(b"token=%zz", "token"), None);
        assert_eq!(form_value(b"token=%4", "token"), None);
        assert_eq!(form_value(b"x=1", "token"), None);
        assert_eq!(cut("héllo", 2), "h");
    }

    #[test]
    fn addresses_and_tokens() {
        assert_eq!(parse_addr("9464").unwrap(), "127.0.0.1:9464");
        assert_eq!(parse_addr("0.0.0.0:80").unwrap(), "0.0.0.0:80");
        assert!(parse_addr("localhost").is_err());
        assert!(parse_token("short").is_err());
        assert!(parse_token("with space in it, long enough").is_err());
        assert!(parse_token("abcdefghijklmnop").is_ok());
        let t = random_token();
        assert_eq!(t.len(), 43);
        assert!(parse_token(&t).is_ok());
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"ab", b"abc"));
    }

    fn answer(at_ms: i64, outcome: &'static str, apart: bool) -> Answer {
        Answer {
            at_ms,
            method: "POST".into(),
            status: if outcome == "rejected" { 401 } else { 200 },
            outcome,
            code: String::new(),
            event_id: None,
            event_type: None,
            millis: 0,
            apart,
        }
    }

    #[test]
    fn the_ring_keeps_the_last_200() {
        let a = Answers::default();
        for i in 0..250 {
            a.push(answer(i, "accepted", true));
        }
        let v = a.newest_first();
        assert_eq!(v.len(), RECENT);
        assert_eq!((v[0].at_ms, v[RECENT - 1].at_ms), (249, 50));
    }

    #[test]
    fn only_new_genuine_deliveries_are_kept_apart() {
        assert!(kept_apart(true, "handled", ""));
        assert!(kept_apart(true, "accepted", ""));
        assert!(kept_apart(true, "handler_failed", "handler_failed"));
        assert!(kept_apart(true, "rejected", "store_unavailable"));
        // What a replay of a captured genuine request gets, and anything unverified.
        assert!(!kept_apart(true, "duplicate", ""));
        assert!(!kept_apart(true, "rejected", "duplicate_in_flight"));
        assert!(!kept_apart(true, "ignored", ""));
        assert!(!kept_apart(false, "rejected", "signature_mismatch"));
        assert!(!kept_apart(false, "challenge", ""));
    }

    #[test]
    fn a_flood_of_refused_requests_does_not_push_verified_answers_out() {
        let a = Answers::default();
        for i in 0..10 {
            a.push(answer(i, "accepted", true));
        }
        for i in 10..1_010 {
            a.push(answer(i, "rejected", false));
        }
        a.push(answer(1_010, "handled", true));
        let v = a.newest_first();
        assert_eq!(v.len(), 11 + RECENT);
        // Newest first across both rings: the last delivery, then the last refusals.
        assert_eq!((v[0].at_ms, v[1].at_ms), (1_010, 1_009));
        let verified: Vec<i64> = v.iter().filter(|a| a.outcome != "rejected").map(|a| a.at_ms).collect();
        assert_eq!(verified, [1_010, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
        assert_eq!(v.iter().filter(|a| a.outcome == "rejected").count(), RECENT);
    }
}
