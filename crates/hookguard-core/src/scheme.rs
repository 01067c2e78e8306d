//! The [`Scheme`] trait: how one sender authenticates and describes its deliveries.
//!
//! Every built-in sender is one type in [`crate::schemes`]; implement [`Scheme`] to add your own.
//! The provider registry is in [`crate::provider`], the challenge rule next to
//! [`crate::challenge`], and the wire parsers the schemes share in `wire.rs`.

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use crate::{ChallengeRule, ConfigError, Key, Provider, Rejection};

/// The parts of a request a scheme may look at: never the whole framework request.
///
/// ```
/// use hookguard_core::RequestHead;
/// let (method, uri, headers) = (http::Method::POST, http::Uri::from_static("/h"), http::HeaderMap::new());
/// let head = RequestHead::new(&method, &uri, &headers);
/// assert_eq!(head.uri.path(), "/h");
/// ```
#[derive(Clone, Copy)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI (path and query).
    pub uri: &'a Uri,
    /// The headers.
    pub headers: &'a HeaderMap,
}

/// Shows the method, the path and the header *names*: a header value or the query can be the
/// secret itself (Procore's `Authorization`, HCSS's `?token=`).
///
/// ```
/// use hookguard_core::RequestHead;
/// let (m, u) = (http::Method::POST, http::Uri::from_static("/h?token=s3cret"));
/// let mut h = http::HeaderMap::new();
/// h.insert("authorization", "Bearer s3cret".parse().unwrap());
/// let shown = format!("{:?}", RequestHead::new(&m, &u, &h));
/// assert!(shown.contains("/h") && shown.contains("authorization") && !shown.contains("s3cret"));
/// ```
impl fmt::Debug for RequestHead<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestHead")
            .field("method", self.method)
            .field("path", &self.uri.path())
            .field("query", &self.uri.query().map(|_| "…"))
            .field("headers", &self.headers.keys().map(|k| k.as_str()).collect::<Vec<_>>())
            .finish()
    }
}

impl<'a> RequestHead<'a> {
    /// Borrows the parts.
    ///
    /// ```
    /// use hookguard_core::RequestHead;
    /// let (m, u, mut h) = (http::Method::POST, http::Uri::from_static("/hooks?x=1"), http::HeaderMap::new());
    /// h.insert("content-type", "application/json".parse().unwrap());
    /// let head = RequestHead::new(&m, &u, &h);
    /// assert_eq!(*head.method, http::Method::POST);
    /// assert_eq!(head.uri.query(), Some("x=1"));
    /// assert_eq!(head.headers["content-type"], "application/json");
    /// ```
    pub fn new(method: &'a Method, uri: &'a Uri, headers: &'a HeaderMap) -> Self {
        Self { method, uri, headers }
    }
}

/// What a scheme gets to authenticate one request: the prepared keys and the bounds.
///
/// ```
/// use hookguard_core::{schemes::GitHub, Context, RequestHead, Scheme, SignParams};
/// // Calling a scheme directly, as the verifier does.
/// let keys = [GitHub::new().key("s").unwrap()];
/// let ctx = Context::new(&keys, None, 0);
/// let mut h = http::HeaderMap::new();
/// h.extend(GitHub::new().sign("s", b"{}", &SignParams::new(0)).unwrap().headers);
/// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
/// assert!(GitHub::new().authenticate(&RequestHead::new(&m, &u, &h), b"{}", &ctx).is_ok());
/// ```
#[derive(Debug)]
pub struct Context<'a> {
    pub(crate) keys: &'a [Key],
    pub(crate) tolerance: Option<Duration>,
    pub(crate) now: u64,
    pub(crate) max_signatures: usize,
    pub(crate) max_header_len: usize,
}

impl<'a> Context<'a> {
    /// A context for calling a scheme directly (the [`Verifier`](crate::Verifier) builds one for you).
    ///
    /// ```
    /// use hookguard_core::{Context, Key};
    /// let keys = [Key::hmac(b"s")];
    /// let ctx = Context::new(&keys, None, 0);
    /// assert_eq!(ctx.keys().len(), 1);
    /// ```
    pub fn new(keys: &'a [Key], tolerance: Option<Duration>, now: u64) -> Self {
        Self {
            keys,
            tolerance,
            now,
            max_signatures: 16,
            max_header_len: 4096,
        }
    }

    /// The prepared keys, one per configured secret (rotation: any may match).
    ///
    /// ```
    /// use hookguard_core::{Context, Key};
    /// let keys = [Key::hmac(b"old"), Key::hmac(b"new")];
    /// let ctx = Context::new(&keys, None, 0);
    /// assert_eq!(ctx.keys().len(), 2);
    /// ```
    pub fn keys(&self) -> &'a [Key] {
        self.keys
    }

    /// The most signatures one header may carry.
    ///
    /// ```
    /// use hookguard_core::{Context, DEFAULT_MAX_SIGNATURES};
    /// let ctx = Context::new(&[], None, 0);
    /// assert_eq!(ctx.max_signatures(), DEFAULT_MAX_SIGNATURES);
    /// ```
    pub fn max_signatures(&self) -> usize {
        self.max_signatures
    }

    /// A header as visible ASCII, bounded in length. `Ok(None)` when absent;
    /// [`Rejection::RepeatedHeader`] when given more than once (which value was signed would
    /// be ambiguous).
    ///
    /// ```
    /// use hookguard_core::{Context, RequestHead};
    /// static X_A: http::HeaderName = http::HeaderName::from_static("x-a");
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("x-a", "b".parse().unwrap());
    /// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
    /// let ctx = Context::new(&[], None, 0);
    /// assert_eq!(ctx.header(&RequestHead::new(&m, &u, &headers), &X_A).unwrap(), Some("b"));
    /// ```
    pub fn header<'h>(&self, req: &RequestHead<'h>, name: &'static HeaderName) -> Result<Option<&'h str>, Rejection> {
        // A pre-built `HeaderName`: a `&str` would be parsed on every request.
        self.headers(req, [name]).map(|[v]| v)
    }

    /// Several headers at once, each read exactly as [`header`](Self::header) reads it (one
    /// value of the name, visible ASCII, bounded; a name given twice is
    /// [`Rejection::RepeatedHeader`]): a request with few headers is scanned once instead of
    /// hashing every name. The names must be distinct (a repeated one is answered only in its
    /// first slot). Every value is checked, in order, before any is returned: the first
    /// malformed one is the error.
    ///
    /// ```
    /// use hookguard_core::{Context, RequestHead};
    /// static X_A: http::HeaderName = http::HeaderName::from_static("x-a");
    /// static X_B: http::HeaderName = http::HeaderName::from_static("x-b");
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("x-b", "2".parse().unwrap());
    /// headers.append("x-a", "1".parse().unwrap());
    /// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
    /// let ctx = Context::new(&[], None, 0);
    /// let [a, b] = ctx.headers(&RequestHead::new(&m, &u, &headers), [&X_A, &X_B]).unwrap();
    /// assert_eq!((a, b), (Some("1"), Some("2")));
    /// // Given twice: refused, whichever value comes first.
    /// headers.append("x-a", "2".parse().unwrap());
    /// let twice = ctx.headers(&RequestHead::new(&m, &u, &headers), [&X_A, &X_B]);
    /// assert_eq!(twice, Err(hookguard_core::Rejection::RepeatedHeader("x-a")));
    /// ```
    pub fn headers<'h, const N: usize>(
        &self,
        req: &RequestHead<'h>,
        names: [&'static HeaderName; N],
    ) -> Result<[Option<&'h str>; N], Rejection> {
        let found = Self::raw_headers(req, names);
        if let Some(name) = Self::repeated(req, &names) {
            return Err(Rejection::RepeatedHeader(name));
        }
        let mut out = [None; N];
        for ((slot, name), value) in out.iter_mut().zip(names).zip(found) {
            *slot = self.checked(name, value)?;
        }
        Ok(out)
    }

    /// The first value of each name, unchecked: a scheme that must refuse in a fixed order
    /// (a missing header before a malformed later one) checks each with
    /// [`checked`](Self::checked) in that order.
    pub(crate) fn raw_headers<'h, const N: usize>(
        req: &RequestHead<'h>,
        names: [&'static HeaderName; N],
    ) -> [Option<&'h http::HeaderValue>; N] {
        /// Up to this many header values a linear scan beats one hashed lookup per name.
        const SCAN: usize = 24;
        let mut found: [Option<&'h http::HeaderValue>; N] = [None; N];
        if req.headers.len() <= SCAN {
            let mut missing = N;
            // `iter` yields a name's first value before its others, like `get`.
            for (name, value) in req.headers.iter() {
                if let Some(i) = names.iter().position(|want| name == *want) {
                    if found[i].is_none() {
                        found[i] = Some(value);
                        missing -= 1;
                        if missing == 0 {
                            break;
                        }
                    }
                }
            }
        } else {
            for (slot, name) in found.iter_mut().zip(names) {
                *slot = req.headers.get(name);
            }
        }
        found
    }

    /// The first of `names` given more than once, if any. Free for the usual request, which
    /// repeats no header name at all (the map then holds one value per name).
    pub(crate) fn repeated(req: &RequestHead<'_>, names: &[&'static HeaderName]) -> Option<&'static str> {
        if req.headers.len() == req.headers.keys_len() {
            return None;
        }
        names
            .iter()
            .find(|name| req.headers.get_all(**name).iter().nth(1).is_some())
            .map(|name| name.as_str())
    }

    /// One header value as [`header`](Self::header) reads it: visible ASCII, bounded.
    pub(crate) fn checked<'h>(
        &self,
        name: &'static HeaderName,
        v: Option<&'h http::HeaderValue>,
    ) -> Result<Option<&'h str>, Rejection> {
        let Some(v) = v else {
            return Ok(None);
        };
        if v.len() > self.max_header_len {
            return Err(Rejection::HeaderTooLarge(name.as_str()));
        }
        v.to_str()
            .map(Some)
            .map_err(|_| Rejection::HeaderTooLarge(name.as_str()))
    }

    /// Checks a sender timestamp against the two-sided window (no-op when the window is off).
    ///
    /// Not needed in a scheme: return the signed timestamp as [`Authenticated::at`] and the
    /// [`Verifier`](crate::Verifier) judges the window once the signature has verified.
    /// [`Rejection::TimestampOutOfWindow`] is retryable (`503`), an answer only an authentic
    /// delivery may get; called before the signature, it would give it to forgeries.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{Context, Rejection};
    /// let ctx = Context::new(&[], Some(Duration::from_secs(300)), 1_000);
    /// assert!(ctx.check_timestamp(700).is_ok());
    /// assert_eq!(ctx.check_timestamp(699), Err(Rejection::TimestampOutOfWindow));
    /// assert_eq!(ctx.check_timestamp(1_301), Err(Rejection::TimestampOutOfWindow));
    /// ```
    #[deprecated(
        since = "0.1.0",
        note = "return `Authenticated::at(ts)`: the verifier judges the window after the signature"
    )]
    pub fn check_timestamp(&self, ts: u64) -> Result<(), Rejection> {
        if self.outside_window(ts) {
            return Err(Rejection::TimestampOutOfWindow);
        }
        Ok(())
    }

    /// Whether `ts` is further from now than the tolerance (never, with the window off).
    pub(crate) fn outside_window(&self, ts: u64) -> bool {
        self.tolerance.is_some_and(|tol| self.now.abs_diff(ts) > tol.as_secs())
    }
}

/// What a scheme learnt while authenticating.
///
/// ```
/// use hookguard_core::Authenticated;
/// assert_eq!(Authenticated::default().timestamp, None); // a scheme without a signed time
/// assert_eq!(Authenticated::at(1_700_000_000).timestamp, Some(1_700_000_000));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Authenticated {
    /// The signed timestamp, for schemes that have one.
    pub timestamp: Option<u64>,
}

impl Authenticated {
    /// With a signed timestamp.
    ///
    /// ```
    /// use hookguard_core::{schemes::Stripe, Authenticated, Context, RequestHead, Scheme, SignParams};
    /// let mut h = http::HeaderMap::new();
    /// h.extend(Stripe::new().sign("whsec_k", b"{}", &SignParams::new(1_700_000_000)).unwrap().headers);
    /// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
    /// let keys = [Stripe::new().key("whsec_k").unwrap()];
    /// let auth = Stripe::new().authenticate(&RequestHead::new(&m, &u, &h), b"{}", &Context::new(&keys, None, 0)).unwrap();
    /// // The signed `t=`: the verifier judges the replay window with it.
    /// assert_eq!(auth, Authenticated::at(1_700_000_000));
    /// ```
    pub fn at(timestamp: u64) -> Self {
        Self {
            timestamp: Some(timestamp),
        }
    }
}

/// What a scheme reads from an authenticated delivery.
///
/// ```
/// use hookguard_core::{schemes::BuildWorkPro, DedupeScope, RequestHead, Scheme};
/// let (m, u, h) = (http::Method::POST, http::Uri::from_static("/"), http::HeaderMap::new());
/// let d = BuildWorkPro::new().describe(&RequestHead::new(&m, &u, &h), br#"{"id":"evt_1","type":"bid.accepted"}"#).unwrap();
/// assert_eq!(d.event_id.as_deref(), Some("evt_1"));
/// assert_eq!(d.event_type.as_deref(), Some("bid.accepted"));
/// assert_eq!(d.dedupe_key.as_deref(), Some("evt_1")); // the verifier prefixes the provider
/// assert_eq!(d.dedupe_scope, DedupeScope::Retained);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Described {
    /// The sender's event id exactly as sent (digits of a big integer stay digits).
    pub event_id: Option<String>,
    /// The event type.
    pub event_type: Option<String>,
    /// The key under which copies of this event are recognised (without the provider prefix).
    pub dedupe_key: Option<String>,
    /// Procore's `metadata.source_application_id`, for loop filtering.
    pub source_application_id: Option<String>,
    /// Procore's user behind the change (`metadata.source_user_id`, or `user_id` in v4
    /// payloads), for loop filtering.
    pub source_user_id: Option<String>,
    /// A value to echo back instead of handling the delivery (Slack `url_verification`).
    pub challenge: Option<String>,
    /// How long copies under `dedupe_key` are recognised.
    pub dedupe_scope: DedupeScope,
}

/// How long a delivery's dedupe key keeps recognising copies.
///
/// ```
/// use hookguard_core::DedupeScope;
/// assert_eq!(DedupeScope::default(), DedupeScope::Retained);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DedupeScope {
    /// The key identifies one event: once handled, copies are answered `duplicate` for the
    /// retention period.
    #[default]
    Retained,
    /// The key identifies content, not an event: two genuine events can carry identical bytes
    /// (HCSS Setups and HeavyJob bodies carry no id and no time). Copies coalesce only while
    /// one is in flight (in an inbox: pending, not yet started); an identical body after that
    /// is a new event.
    WhileInFlight,
}

/// Where a scheme's dedupe key comes from: documented per sender in the providers table.
///
/// ```
/// use hookguard_core::{schemes::{GitHub, Hcss, BuildWorkPro}, DedupePolicy, Scheme};
/// assert_eq!(BuildWorkPro::new().dedupe_policy(), DedupePolicy::EventId);
/// assert_eq!(GitHub::new().dedupe_policy(), DedupePolicy::BodyDigest);
/// assert_eq!(Hcss::new().dedupe_policy(), DedupePolicy::BodyDigestRetainedIfDated);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DedupePolicy {
    /// The sender's own event id, covered by its signature (or by its shared credential),
    /// stable across retries; remembered for the retention.
    EventId,
    /// A digest of the signed body (the sender has no signed id); remembered for the retention.
    BodyDigest,
    /// A digest of the body; remembered for the retention when the body carries a time,
    /// otherwise copies coalesce only while one is in flight ([`DedupeScope::WhileInFlight`]).
    BodyDigestRetainedIfDated,
    /// A digest of the body; copies coalesce only while one is in flight
    /// ([`DedupeScope::WhileInFlight`]), whatever the body carries.
    BodyDigestWhileInFlight,
    /// No dedupe key.
    None,
}

impl DedupePolicy {
    /// A short human description, used by the CLI and the README table.
    ///
    /// ```
    /// assert!(hookguard_core::DedupePolicy::EventId.describe().contains("event id"));
    /// ```
    pub fn describe(&self) -> &'static str {
        match self {
            DedupePolicy::EventId => "the sender's event id, remembered for the retention",
            DedupePolicy::BodyDigest => "a SHA-256 digest of the signed body, remembered for the retention",
            DedupePolicy::BodyDigestRetainedIfDated => {
                "a SHA-256 digest of the body: remembered when the body carries a time, else only while a copy is in flight"
            }
            DedupePolicy::BodyDigestWhileInFlight => {
                "a SHA-256 digest of the body, recognising copies only while one is in flight"
            }
            DedupePolicy::None => "none",
        }
    }
}

/// Inputs for producing a sender's headers.
///
/// ```
/// let p = hookguard_core::SignParams::new(1_700_000_000).id("evt_1");
/// assert_eq!(p.timestamp, 1_700_000_000);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignParams {
    /// The unix timestamp to sign with.
    pub timestamp: u64,
    /// The message/event id, for schemes that send one in a header.
    pub id: Option<String>,
    /// The event type, for schemes that send one in a header.
    pub event_type: Option<String>,
    /// The delivery (attempt) id, for schemes that send one in a header.
    pub delivery_id: Option<String>,
}

impl SignParams {
    /// Sign at `timestamp`.
    ///
    /// ```
    /// use hookguard_core::SignParams;
    /// let p = SignParams::new(1_700_000_000);
    /// assert_eq!(p.timestamp, 1_700_000_000);
    /// assert_eq!((p.id, p.event_type, p.delivery_id), (None, None, None));
    /// ```
    pub fn new(timestamp: u64) -> Self {
        Self {
            timestamp,
            ..Self::default()
        }
    }
    /// Sign at the current system time: what a sender does, and what a verifier on the
    /// default [`SystemClock`](crate::clock::SystemClock) accepts within its replay window
    /// (for tests of your own receiver; a fixed time such as `new(1_700_000_000)` needs a
    /// verifier on a [`ManualClock`](crate::clock::ManualClock) set to it).
    ///
    /// ```
    /// use hookguard_core::{schemes::BuildWorkPro, RequestHead, Scheme, SignParams, Verdict, Verifier};
    /// let body = br#"{"id":"evt_1","type":"bid.accepted"}"#;
    /// let signed = BuildWorkPro::new().sign("whsec_k", body, &SignParams::now()).unwrap();
    /// let mut headers = http::HeaderMap::new();
    /// headers.extend(signed.headers);
    /// let (method, uri) = (http::Method::POST, http::Uri::from_static("/hooks"));
    /// let verifier = Verifier::builder(BuildWorkPro::new()).secret("whsec_k").build().unwrap();
    /// let verdict = verifier.verify(&RequestHead::new(&method, &uri, &headers), bytes::Bytes::from_static(body));
    /// assert!(matches!(verdict, Ok(Verdict::Deliver(_))));
    /// ```
    pub fn now() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self::new(secs)
    }
    /// With a message/event id.
    ///
    /// ```
    /// use hookguard_core::{schemes::StandardWebhooks, Scheme, SignParams};
    /// let p = SignParams::new(1).id("msg_1");
    /// assert_eq!(p.id.as_deref(), Some("msg_1"));
    /// let s = StandardWebhooks::new().sign("whsec_c2VjcmV0", b"{}", &p).unwrap();
    /// assert!(s.headers.iter().any(|(n, v)| n == "webhook-id" && v == "msg_1"));
    /// ```
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
    /// With an event type.
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, Scheme, SignParams};
    /// let p = SignParams::new(0).event_type("push");
    /// assert_eq!(p.event_type.as_deref(), Some("push"));
    /// let s = GitHub::new().sign("s", b"{}", &p).unwrap();
    /// assert!(s.headers.iter().any(|(n, v)| n == "x-github-event" && v == "push"));
    /// ```
    pub fn event_type(mut self, t: impl Into<String>) -> Self {
        self.event_type = Some(t.into());
        self
    }
    /// With a delivery id (one attempt's id, apart from the event's: BuildWorkPro's
    /// `BuildWorkPro-Delivery-Id`).
    ///
    /// ```
    /// use hookguard_core::{schemes::BuildWorkPro, Scheme, SignParams};
    /// let s = BuildWorkPro::new().sign("whsec_k", b"{}", &SignParams::new(1).delivery_id("dlv_1")).unwrap();
    /// assert!(s.headers.iter().any(|(n, v)| n == "buildworkpro-delivery-id" && v == "dlv_1"));
    /// ```
    pub fn delivery_id(mut self, id: impl Into<String>) -> Self {
        self.delivery_id = Some(id.into());
        self
    }
}

/// What a sender would add to a request: headers, and for URL-token schemes a query pair.
///
/// For the token senders (Procore, HCSS) these hold the secret itself: its `Debug` shows
/// neither the query's value nor a token header's (marked
/// [sensitive](HeaderValue::set_sensitive)).
///
/// ```
/// use hookguard_core::{schemes::Procore, Scheme, SignParams};
/// let s = Procore::new().sign("Bearer s3cret", b"{}", &SignParams::new(1)).unwrap();
/// assert_eq!(s.headers[0].1, "Bearer s3cret");
/// assert!(!format!("{s:?}").contains("s3cret"));
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct Signed {
    /// Headers to send.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// A `name=value` query pair to append to the URL, as it is: percent-encode the value
    /// when appending it (as `hookguard_core::testing::request_parts` and `hookguard send`
    /// do).
    pub query: Option<(String, String)>,
}

impl fmt::Debug for Signed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed")
            .field("headers", &self.headers)
            .field("query", &self.query.as_ref().map(|(name, _)| (name, "<redacted>")))
            .finish()
    }
}

/// One sender's authentication and payload rules.
///
/// A scheme is stateless apart from its configuration; key material comes from the
/// [`Context`], prepared once by [`Scheme::key`].
///
/// ```
/// use hookguard_core::{schemes::GitHub, Scheme, Provider};
/// assert_eq!(GitHub::new().provider(), Provider::GitHub);
/// ```
pub trait Scheme: fmt::Debug + Send + Sync + 'static {
    /// Who this scheme is for.
    ///
    /// ```
    /// use hookguard_core::{schemes::{Hcss, Stripe}, Provider, Scheme};
    /// assert_eq!(Stripe::new().provider(), Provider::Stripe);
    /// assert_eq!(Hcss::new().provider().as_str(), "hcss");
    /// ```
    fn provider(&self) -> Provider;

    /// Turns a configured secret into key material. Default: HMAC-SHA256 keyed with the
    /// secret's UTF-8 bytes as is.
    ///
    /// ```
    /// use hookguard_core::{schemes::{GitHub, Procore}, Scheme};
    /// assert!(GitHub::new().key("s").is_ok());
    /// // Procore sends the configured value as a header: a newline can never be part of it.
    /// assert!(Procore::new().key("Bearer a\nb").is_err());
    /// // A key never shows its material.
    /// assert!(!format!("{:?}", GitHub::new().key("s3cret").unwrap()).contains("s3cret"));
    /// ```
    fn key(&self, secret: &str) -> Result<Key, &'static str> {
        Ok(Key::hmac(secret.as_bytes()))
    }

    /// Whether deliveries carry a signed timestamp (so a replay window applies).
    ///
    /// ```
    /// use hookguard_core::{schemes::{BuildWorkPro, GitHub}, Scheme};
    /// assert!(BuildWorkPro::new().has_timestamp());
    /// assert!(!GitHub::new().has_timestamp()); // GitHub signs the body only
    /// ```
    fn has_timestamp(&self) -> bool {
        true
    }

    /// The default replay tolerance for this sender; `None` turns the window off.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{schemes::{GitHub, Slack}, Scheme};
    /// assert_eq!(Slack::new().default_tolerance(), Some(Duration::from_secs(300)));
    /// assert_eq!(GitHub::new().default_tolerance(), None);
    /// ```
    fn default_tolerance(&self) -> Option<Duration> {
        self.has_timestamp().then_some(Duration::from_secs(300))
    }

    /// Where this sender's dedupe key comes from (default: its event id).
    ///
    /// ```
    /// use hookguard_core::{schemes::{Aps, Stripe}, DedupePolicy, Scheme};
    /// assert_eq!(Stripe::new().dedupe_policy(), DedupePolicy::EventId);
    /// assert_eq!(Aps::new().dedupe_policy(), DedupePolicy::BodyDigest); // APS signs no event id
    /// ```
    fn dedupe_policy(&self) -> DedupePolicy {
        DedupePolicy::EventId
    }

    /// Whether [`authenticate`](Self::authenticate) looks at the headers and URI only (a shared
    /// header or URL token). Such requests are authenticated before the body is read, so a
    /// forged one is refused without buffering it.
    ///
    /// ```
    /// use hookguard_core::{schemes::{GitHub, Hcss, Procore}, Scheme};
    /// assert!(Procore::new().authenticates_head_only()); // a header token
    /// assert!(Hcss::new().authenticates_head_only()); // a URL token
    /// assert!(!GitHub::new().authenticates_head_only()); // a MAC over the body
    /// ```
    fn authenticates_head_only(&self) -> bool {
        false
    }

    /// The request headers this sender's signature covers (Standard Webhooks: `webhook-id` and
    /// `webhook-timestamp`, which are part of the signed content), so a
    /// [`DedupeKey`](crate::DedupeKey) may be built from them. Default: none. A header outside
    /// the signature can be set by anyone who replays a genuine delivery, so it is refused as
    /// a dedupe key source unless explicitly allowed.
    ///
    /// ```
    /// use hookguard_core::{schemes::{GitHub, StandardWebhooks}, Scheme};
    /// assert!(GitHub::new().signed_headers().is_empty());
    /// assert_eq!(StandardWebhooks::new().signed_headers().len(), 4); // webhook-id, -timestamp; svix-id, -timestamp
    /// ```
    fn signed_headers(&self) -> &[HeaderName] {
        &[]
    }

    /// The value a [`DedupeKey`](crate::DedupeKey)'s `header:NAME` field reads from a request
    /// this scheme authenticated. Default: the request's own header `name`. A scheme that
    /// accepts its signed headers under more than one set of names (Standard Webhooks:
    /// `webhook-*` or Svix's `svix-*`) answers with the value it authenticated under either
    /// name, so renaming the headers of a captured delivery cannot change its key.
    ///
    /// ```
    /// use hookguard_core::{schemes::StandardWebhooks, RequestHead, Scheme};
    /// let mut h = http::HeaderMap::new();
    /// h.insert("svix-id", "msg_1".parse().unwrap());
    /// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
    /// let head = RequestHead::new(&m, &u, &h);
    /// let id = http::HeaderName::from_static("webhook-id");
    /// assert_eq!(StandardWebhooks::new().key_header(&head, &id).unwrap(), "msg_1");
    /// ```
    fn key_header<'h>(&self, head: &RequestHead<'h>, name: &HeaderName) -> Option<&'h http::HeaderValue> {
        head.headers.get(name)
    }

    /// Whether this sender reads the body of a `2xx` as an answer of its own, so the
    /// receiver's own acknowledgements (`accepted`, `duplicate`, `ignored`) must be an empty
    /// `200`. Slack does: a slash command's JSON answer is posted as a message, a modal
    /// submission's must be a `response_action`; Slack documents an empty `200` as the
    /// acknowledgement. Default: `false` (the answers carry `{"status":…}`). (The standalone
    /// extractors' [`Refusal::Ignored`](crate::extract::Refusal::Ignored) keeps its body: only
    /// Procore's loop filter ignores deliveries.)
    ///
    /// ```
    /// use hookguard_core::{schemes::{BuildWorkPro, Slack}, Scheme};
    /// assert!(Slack::new().acknowledges_empty());
    /// assert!(!BuildWorkPro::new().acknowledges_empty());
    /// ```
    fn acknowledges_empty(&self) -> bool {
        false
    }

    /// The header that carries this sender's shared credential, if any (Procore's configured
    /// header, an HCSS token header): never stored in an inbox, never logged.
    ///
    /// ```
    /// use hookguard_core::{schemes::{GitHub, Hcss, Procore}, Scheme};
    /// assert_eq!(Procore::new().credential_header(), Some(&http::header::AUTHORIZATION));
    /// assert_eq!(GitHub::new().credential_header(), None);
    /// assert_eq!(Hcss::new().credential_header(), None); // a URL token by default
    /// ```
    fn credential_header(&self) -> Option<&HeaderName> {
        None
    }

    /// What this sender does with our answers: timeout, retries, kill switch, sample body.
    /// Default: a profile for an unknown sender.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{schemes::{Procore, Stripe}, Scheme};
    /// let p = Procore::new().profile();
    /// assert_eq!((p.name, p.timeout), ("Procore", Duration::from_secs(5)));
    /// assert_eq!(Stripe::new().profile().name, "Stripe");
    /// ```
    fn profile(&self) -> crate::profile::SenderProfile {
        crate::profile::SenderProfile::unknown("custom sender")
    }

    /// After how many failed answers this sender stops delivering, and what it does then (for
    /// [`SenderHealth`](crate::observe::SenderHealth) warnings). Default: from the profile.
    ///
    /// ```
    /// use hookguard_core::{schemes::{BuildWorkPro, GitHub}, Scheme};
    /// assert_eq!(BuildWorkPro::new().kill_switch().map(|k| k.failures), Some(20));
    /// assert_eq!(GitHub::new().kill_switch(), None);
    /// ```
    fn kill_switch(&self) -> Option<crate::observe::KillSwitch> {
        self.profile().kill_switch
    }

    /// Challenges this sender sends before deliveries.
    ///
    /// ```
    /// use hookguard_core::{schemes::{GitHub, Hcss}, Scheme};
    /// let rules = Hcss::new().challenges();
    /// assert_eq!((rules.len(), rules[0].method.as_str(), rules[0].param), (1, "GET", "challenge"));
    /// assert!(GitHub::new().challenges().is_empty());
    /// ```
    fn challenges(&self) -> Vec<ChallengeRule> {
        Vec::new()
    }

    /// Authenticates a request against the keys in `ctx`. Must be constant-time in the MAC or
    /// token. A scheme that signs a timestamp returns it ([`Authenticated::at`]); the verifier
    /// then judges the replay window.
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, Context, Rejection, RequestHead, Scheme, SignParams};
    /// let scheme = GitHub::new();
    /// let keys = [scheme.key("s").unwrap()];
    /// let ctx = Context::new(&keys, None, 0);
    /// let mut h = http::HeaderMap::new();
    /// h.extend(scheme.sign("s", b"{}", &SignParams::new(0)).unwrap().headers);
    /// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
    /// let head = RequestHead::new(&m, &u, &h);
    /// assert!(scheme.authenticate(&head, b"{}", &ctx).is_ok());
    /// assert_eq!(scheme.authenticate(&head, b"{ }", &ctx), Err(Rejection::SignatureMismatch));
    /// ```
    fn authenticate(&self, req: &RequestHead<'_>, body: &[u8], ctx: &Context<'_>) -> Result<Authenticated, Rejection>;

    /// Reads the event id, type and dedupe key of an authenticated delivery.
    ///
    /// ```
    /// use hookguard_core::{schemes::Stripe, RequestHead, Scheme};
    /// let (m, u, h) = (http::Method::POST, http::Uri::from_static("/"), http::HeaderMap::new());
    /// let d = Stripe::new().describe(&RequestHead::new(&m, &u, &h), br#"{"id":"evt_1","type":"invoice.paid"}"#).unwrap();
    /// assert_eq!((d.event_id.as_deref(), d.event_type.as_deref()), (Some("evt_1"), Some("invoice.paid")));
    /// ```
    fn describe(&self, req: &RequestHead<'_>, body: &[u8]) -> Result<Described, Rejection>;

    /// Produces the headers the sender would send for `body` (for tests, the CLI and load tests).
    ///
    /// ```
    /// use hookguard_core::{clock::ManualClock, schemes::Stripe, testing, RequestHead, Scheme, SignParams, Verifier};
    /// let body = br#"{"id":"evt_1","type":"invoice.paid"}"#;
    /// let signed = Stripe::new().sign("whsec_k", body, &SignParams::new(1_700_000_000)).unwrap();
    /// assert!(signed.headers[0].1.to_str().unwrap().starts_with("t=1700000000,v1="));
    /// // What it signs, the verifier accepts.
    /// let v = Verifier::builder(Stripe::new()).secret("whsec_k").clock(ManualClock::new(1_700_000_000)).build().unwrap();
    /// let (h, u) = testing::request_parts(signed, "/");
    /// let m = http::Method::POST;
    /// assert!(v.verify(&RequestHead::new(&m, &u, &h), bytes::Bytes::from_static(body)).is_ok());
    /// ```
    fn sign(&self, secret: &str, body: &[u8], params: &SignParams) -> Result<Signed, ConfigError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(deprecated)]
    fn window_is_inclusive_at_the_edge() {
        let ctx = Context::new(&[], Some(Duration::from_secs(300)), 10_000);
        assert!(ctx.check_timestamp(9_700).is_ok());
        assert!(ctx.check_timestamp(10_300).is_ok());
        assert!(ctx.check_timestamp(9_699).is_err());
        assert!(ctx.check_timestamp(10_301).is_err());
        let off = Context::new(&[], None, 10_000);
        assert!(off.check_timestamp(0).is_ok());
    }

    #[test]
    fn a_missing_header_is_refused_before_a_malformed_later_one() {
        // The order of the checks decides which refusal a request with two faults gets; one
        // pass over the headers must not change it.
        let bad = http::HeaderValue::from_bytes(b"v1,\xe9").unwrap();
        let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
        let mut h = http::HeaderMap::new();
        h.insert("webhook-timestamp", "1700000000".parse().unwrap());
        h.insert("webhook-signature", bad.clone());
        let v = crate::Verifier::builder(crate::schemes::StandardWebhooks::new())
            .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .build()
            .unwrap();
        assert_eq!(
            v.authenticate(&RequestHead::new(&m, &u, &h), b"{}"),
            Err(Rejection::MissingHeader("webhook-id"))
        );
        let mut h = http::HeaderMap::new();
        h.insert("x-slack-request-timestamp", bad);
        let v = crate::Verifier::builder(crate::schemes::Slack::new())
            .secret("s")
            .build()
            .unwrap();
        assert_eq!(
            v.authenticate(&RequestHead::new(&m, &u, &h), b"{}"),
            Err(Rejection::MissingSignature("X-Slack-Signature"))
        );
    }

    static A: HeaderName = HeaderName::from_static("webhook-id");
    static B: HeaderName = HeaderName::from_static("webhook-signature");
    static C: HeaderName = HeaderName::from_static("content-type");

    proptest::proptest! {
        /// The one-pass read of several headers answers exactly what one hashed lookup per
        /// name answers — values, absence, duplicates (refused), over-long and non-ASCII
        /// values — on both sides of the scan limit.
        #[test]
        fn reading_several_headers_at_once_equals_one_read_per_name(
            entries in proptest::collection::vec((0usize..6, proptest::collection::vec(0x20u8..0xff, 0..40)), 0..40),
        ) {
            let pool = ["webhook-id", "webhook-signature", "content-type", "x-a", "x-b", "user-agent"];
            let mut headers = http::HeaderMap::new();
            for (name, value) in &entries {
                if let Ok(v) = http::HeaderValue::from_bytes(value) {
                    headers.append(pool[*name], v);
                }
            }
            let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
            let head = RequestHead::new(&m, &u, &headers);
            let mut ctx = Context::new(&[], None, 0);
            ctx.max_header_len = 24;
            // The reference: a name given twice is refused (the first such name); otherwise a
            // hashed `get` per name, checked alone.
            let twice = |n: &'static HeaderName| headers.get_all(n).iter().count() > 1;
            let one_by_one: Result<Vec<Option<&str>>, Rejection> = match [&A, &B, &C].into_iter().find(|n| twice(n)) {
                Some(n) => Err(Rejection::RepeatedHeader(n.as_str())),
                None => [&A, &B, &C].into_iter().map(|n| ctx.checked(n, headers.get(n))).collect(),
            };
            let one = if twice(&B) { Err(Rejection::RepeatedHeader("webhook-signature")) } else { ctx.checked(&B, headers.get(&B)) };
            proptest::prop_assert_eq!(ctx.header(&head, &B), one);
            let at_once = ctx.headers(&head, [&A, &B, &C]).map(|v| v.to_vec());
            proptest::prop_assert_eq!(at_once, one_by_one);
        }
    }
}
