//! Helpers for tests and benches (feature `testing`, off by default): sign-then-verify in one
//! call, a tiny executor, a `tracing` subscriber that keeps what is logged, and an inbox kept in
//! memory ([`MemoryInbox`]).
//!
//! ```
//! use hookguard_core::{schemes::BuildWorkPro, testing};
//! // The delivery a handler would get from a genuine BuildWorkPro request.
//! let d = testing::deliver(BuildWorkPro::new(), "whsec_k", br#"{"id":"evt_1","type":"bid.accepted"}"#).unwrap();
//! assert_eq!(d.event_id(), Some("evt_1"));
//! ```

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

mod memory_inbox;
pub use memory_inbox::MemoryInbox;

use crate::{clock::ManualClock, Delivery, Rejection, RequestHead, Scheme, SignParams, Signed, Verdict, Verifier};

/// Signs `body` as `scheme`'s sender would with `secret`, then verifies it: the delivery a
/// handler would get. Panics on configuration errors (it is for tests).
///
/// ```
/// let d = hookguard_core::testing::deliver(hookguard_core::schemes::GitHub::new(), "s", b"{}").unwrap();
/// assert_eq!(d.provider().as_str(), "github");
/// ```
pub fn deliver(scheme: impl Scheme, secret: &str, body: &'static [u8]) -> Result<Delivery, Rejection> {
    deliver_bytes(scheme, secret, Bytes::from_static(body))
}

/// [`deliver`] for a body built at run time (e.g. with `format!`).
///
/// ```
/// let body = format!(r#"{{"id":"evt_{}","type":"bid.accepted"}}"#, 7);
/// let d = hookguard_core::testing::deliver_bytes(hookguard_core::schemes::BuildWorkPro::new(), "whsec_k", body).unwrap();
/// assert_eq!(d.event_id(), Some("evt_7"));
/// ```
pub fn deliver_bytes(scheme: impl Scheme, secret: &str, body: impl Into<Bytes>) -> Result<Delivery, Rejection> {
    deliver_arc(std::sync::Arc::new(scheme), secret, body.into())
}

/// [`deliver_bytes`] for a scheme shared behind an `Arc` (`schemes::for_provider`'s).
pub(crate) fn deliver_arc(
    scheme: std::sync::Arc<dyn Scheme>,
    secret: &str,
    body: Bytes,
) -> Result<Delivery, Rejection> {
    let now = 1_700_000_000;
    let signed = scheme
        .sign(secret, &body, &SignParams::new(now).id("msg_1"))
        .expect("sign");
    let v = Verifier::builder_arc(scheme)
        .secret(secret)
        .clock(ManualClock::new(now))
        .build()
        .expect("verifier");
    let (headers, uri) = request_parts(signed, "/");
    match v.verify(&RequestHead::new(&http::Method::POST, &uri, &headers), body)? {
        Verdict::Deliver(d) | Verdict::Ignored(d) => Ok(d),
        Verdict::Challenge(_) => Err(Rejection::InvalidPayload("a challenge, not a delivery")),
    }
}

/// The headers and URI a sender sends to `path` (`Signed::query`, the URL token of HCSS's
/// default scheme, is appended to the path, its value percent-encoded as a sender encodes it:
/// a token with `&`, `/`, `%` or a space reaches the receiver intact). Panics on an invalid
/// path (it is for tests).
///
/// ```
/// use hookguard_core::{schemes::Hcss, Scheme, SignParams};
/// let signed = Hcss::new().sign("tok", b"{}", &SignParams::new(0)).unwrap();
/// let (_headers, uri) = hookguard_core::testing::request_parts(signed, "/hooks");
/// assert_eq!(uri, "/hooks?token=tok");
/// let signed = Hcss::new().sign("a b&c=d", b"{}", &SignParams::new(0)).unwrap();
/// let (_headers, uri) = hookguard_core::testing::request_parts(signed, "/hooks");
/// assert_eq!(uri, "/hooks?token=a%20b%26c%3Dd");
/// ```
pub fn request_parts(signed: Signed, path: &str) -> (http::HeaderMap, http::Uri) {
    let mut headers = http::HeaderMap::new();
    headers.extend(signed.headers);
    let uri = match signed.query {
        Some((k, val)) => format!("{path}?{k}={}", crate::challenge::percent_encode(&val)),
        None => path.to_owned(),
    };
    (headers, uri.parse().expect("uri"))
}

/// Runs a future that never waits on I/O (the in-memory store's) to completion.
///
/// ```
/// assert_eq!(hookguard_core::testing::block_on(async { 7 }), 7);
/// ```
pub fn block_on<F: Future>(f: F) -> F::Output {
    // No allocation per call: benches drive the in-memory store through it.
    let mut cx = Context::from_waker(Waker::noop());
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

/// Panics unless the probes' JSON parser answers `body` exactly as `serde_json::from_slice`
/// does (the same value, or an error of the same category), and takes its fast path for a
/// usual body serde_json reads. The `json_fast` fuzz target runs this on arbitrary input.
///
/// ```
/// hookguard_core::testing::check_json_fast(br#"{"id":"evt_1","type":"bid.accepted","date":"x"}"#);
/// hookguard_core::testing::check_json_fast(b"{\"id\":1,}");
/// ```
pub fn check_json_fast(body: &[u8]) {
    if let Err(disagreement) = crate::json_fast::check::agrees(body) {
        panic!(
            "json_fast disagrees with serde_json on {:?}: {disagreement}",
            String::from_utf8_lossy(body)
        );
    }
}

/// A `tracing` subscriber that keeps every event's level and message, for tests that check
/// what is logged: set it for one thread with `tracing::subscriber::with_default`, or for the
/// process (`set_global_default`) for events written by other threads (an inbox's writer).
///
/// ```
/// use hookguard_core::testing::Logs;
/// let logs = Logs::default();
/// tracing::subscriber::with_default(logs.clone(), || tracing::warn!("disk {}", "full"));
/// assert_eq!(logs.messages(tracing::Level::WARN), ["disk full"]);
/// assert_eq!(logs.count(tracing::Level::ERROR), 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<Vec<(tracing::Level, String)>>>);

impl Logs {
    /// The messages of the events at `level`, oldest first.
    ///
    /// ```
    /// use hookguard_core::testing::Logs;
    /// let logs = Logs::default();
    /// tracing::subscriber::with_default(logs.clone(), || {
    ///     tracing::info!("first");
    ///     tracing::info!(id = 7, "second");
    ///     tracing::warn!("another level");
    /// });
    /// assert_eq!(logs.messages(tracing::Level::INFO), ["first", "second"]);
    /// ```
    pub fn messages(&self, level: tracing::Level) -> Vec<String> {
        let all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// How many events at `level` were written.
    ///
    /// ```
    /// use hookguard_core::testing::Logs;
    /// let logs = Logs::default();
    /// tracing::subscriber::with_default(logs.clone(), || {
    ///     for i in 0..3 {
    ///         tracing::error!(i, "failed");
    ///     }
    /// });
    /// assert_eq!(logs.count(tracing::Level::ERROR), 3);
    /// assert_eq!(logs.count(tracing::Level::WARN), 0);
    /// ```
    pub fn count(&self, level: tracing::Level) -> usize {
        let all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().filter(|(l, _)| *l == level).count()
    }
}

/// Reads an event's `message` field.
struct Message<'a>(&'a mut String);

impl tracing::field::Visit for Message<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            *self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for Logs {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        let mut msg = String::new();
        e.record(&mut Message(&mut msg));
        let level = *e.metadata().level();
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push((level, msg));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
