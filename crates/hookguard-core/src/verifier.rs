//! [`Verifier`]: one sender's scheme, secrets, replay window and bounds, ready to check requests.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;

use crate::challenge::{bounded, ChallengeAnswer};
use crate::clock::{Clock, SystemClock};
use crate::dedupe_key::{Compiled as CompiledDedupeKey, DedupeKey};
use crate::{
    ChallengeRule, ConfigError, Context, DedupeScope, Delivery, Key, Provider, Rejection, RequestHead, Scheme,
};

/// Default body limit: 1 MiB.
///
/// ```
/// use hookguard_core::{schemes::GitHub, Verifier, DEFAULT_MAX_BODY};
/// assert_eq!(DEFAULT_MAX_BODY, 1024 * 1024);
/// let v = Verifier::builder(GitHub::new()).secret("s").build().unwrap();
/// assert_eq!(v.max_body(), DEFAULT_MAX_BODY);
/// ```
pub const DEFAULT_MAX_BODY: usize = 1 << 20;
/// Default bound for one header we parse.
///
/// ```
/// use hookguard_core::{schemes::GitHub, RequestHead, Verifier, DEFAULT_MAX_HEADER_LEN};
/// let v = Verifier::builder(GitHub::new()).secret("s").build().unwrap();
/// let mut h = http::HeaderMap::new();
/// // `sha256=` and more hex digits than the bound allows.
/// h.insert("x-hub-signature-256", format!("sha256={}", "0".repeat(DEFAULT_MAX_HEADER_LEN)).parse().unwrap());
/// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
/// assert_eq!(v.authenticate(&RequestHead::new(&m, &u, &h), b"{}").unwrap_err().code(), "header_too_large");
/// ```
pub const DEFAULT_MAX_HEADER_LEN: usize = 4096;
/// Default bound for signatures in one header.
///
/// ```
/// use hookguard_core::{schemes::Stripe, RequestHead, Verifier, DEFAULT_MAX_SIGNATURES};
/// let v = Verifier::builder(Stripe::new()).secret("whsec_k").build().unwrap();
/// // One `v1` more than the bound: refused before any MAC is computed.
/// let header = format!("t=1{}", ",v1=00".repeat(DEFAULT_MAX_SIGNATURES + 1));
/// let mut h = http::HeaderMap::new();
/// h.insert("stripe-signature", header.parse().unwrap());
/// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
/// assert_eq!(v.authenticate(&RequestHead::new(&m, &u, &h), b"{}").unwrap_err().code(), "too_many_signatures");
/// ```
pub const DEFAULT_MAX_SIGNATURES: usize = 16;
/// Default bound for a reflected challenge value: 1 KiB.
///
/// ```
/// use hookguard_core::{schemes::Hcss, Rejection, RequestHead, Verifier, DEFAULT_MAX_CHALLENGE};
/// let v = Verifier::builder(Hcss::new()).secret("tok").build().unwrap();
/// let uri: http::Uri = format!("/hooks?challenge={}", "a".repeat(DEFAULT_MAX_CHALLENGE + 1)).parse().unwrap();
/// let (m, h) = (http::Method::GET, http::HeaderMap::new());
/// assert_eq!(
///     v.precheck(&RequestHead::new(&m, &uri, &h)),
///     Err(Rejection::ChallengeTooLong { limit: DEFAULT_MAX_CHALLENGE })
/// );
/// ```
pub const DEFAULT_MAX_CHALLENGE: usize = 1024;
/// Default bound for reading one body: 4 s, below the senders' own timeouts (Procore 5 s,
/// APS 6 s, BuildWorkPro 10 s), so a slow-drip client is answered `408` while the sender
/// would still read the answer. A sender that waits less gets 1 s less than it waits (Slack,
/// 3 s: 2 s); see [`Verifier::read_timeout`].
///
/// ```
/// use std::time::Duration;
/// use hookguard_core::{schemes::BuildWorkPro, Verifier, DEFAULT_READ_TIMEOUT};
/// assert_eq!(DEFAULT_READ_TIMEOUT, Duration::from_secs(4));
/// // BuildWorkPro waits 10 s for an answer: the default applies.
/// let v = Verifier::builder(BuildWorkPro::new()).secret("whsec_k").build().unwrap();
/// assert_eq!(v.read_timeout(), DEFAULT_READ_TIMEOUT);
/// ```
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(4);

/// The most secrets one verifier holds (rotation needs two or three).
///
/// ```
/// use hookguard_core::{schemes::GitHub, ConfigError, Verifier, MAX_SECRETS};
/// let many: Vec<String> = (0..=MAX_SECRETS).map(|i| format!("secret-{i}")).collect();
/// let err = Verifier::builder(GitHub::new()).secrets(&many).build().unwrap_err();
/// assert_eq!(err, ConfigError::TooManySecrets(MAX_SECRETS));
/// assert!(Verifier::builder(GitHub::new()).secrets(&many[..MAX_SECRETS]).build().is_ok());
/// ```
pub const MAX_SECRETS: usize = 16;

/// What to do with a request before its body is read.
///
/// ```
/// use hookguard_core::{schemes::{GitHub, Hcss}, Precheck, RequestHead, Verifier};
/// let h = http::HeaderMap::new();
/// // A POST: read the body, at most `limit` bytes.
/// let v = Verifier::builder(GitHub::new()).secret("s").max_body(1000).build().unwrap();
/// let (post, uri) = (http::Method::POST, http::Uri::from_static("/hooks"));
/// assert_eq!(v.precheck(&RequestHead::new(&post, &uri, &h)), Ok(Precheck::ReadBody { limit: 1000 }));
/// // HCSS's subscription check: answered before any body.
/// let v = Verifier::builder(Hcss::new()).secret("tok").build().unwrap();
/// let (get, uri) = (http::Method::GET, http::Uri::from_static("/hooks?challenge=c-1"));
/// assert!(matches!(v.precheck(&RequestHead::new(&get, &uri, &h)), Ok(Precheck::Challenge(a)) if a.value().as_ref() == b"c-1"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Precheck {
    /// Answer this challenge; do not read the body or call the handler.
    Challenge(ChallengeAnswer),
    /// Read at most `limit` body bytes, then call [`Verifier::verify`].
    ReadBody {
        /// The body limit in bytes.
        limit: usize,
    },
}

/// The result of verifying a request with its body.
///
/// ```
/// use hookguard_core::{clock::ManualClock, schemes::Slack, testing, RequestHead, Scheme, SignParams, Verdict, Verifier};
/// let now = 1_700_000_000;
/// let v = Verifier::builder(Slack::new()).secret("s").clock(ManualClock::new(now)).build().unwrap();
/// // Slack's `url_verification`, signed like any delivery: answered with its challenge.
/// let body = bytes::Bytes::from_static(br#"{"type":"url_verification","challenge":"3eZbrw1a"}"#);
/// let (headers, uri) = testing::request_parts(Slack::new().sign("s", &body, &SignParams::new(now)).unwrap(), "/slack");
/// let m = http::Method::POST;
/// match v.verify(&RequestHead::new(&m, &uri, &headers), body).unwrap() {
///     Verdict::Challenge(answer) => assert_eq!(answer.value().as_ref(), b"3eZbrw1a"),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Verdict {
    /// A genuine delivery to hand to the application (after dedupe).
    Deliver(Delivery),
    /// A genuine challenge (Slack `url_verification`): answer it, call no handler.
    Challenge(ChallengeAnswer),
    /// A genuine delivery the configuration filters out (the integrator's own Procore app):
    /// answer 2xx, call no handler.
    Ignored(Delivery),
}

impl Verdict {
    /// The delivery, unless this is a challenge.
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, testing, RequestHead, Scheme, SignParams, Verifier};
    /// let v = Verifier::builder(GitHub::new()).secret("s").build().unwrap();
    /// let body = bytes::Bytes::from_static(br#"{"zen":"Keep it logically awesome."}"#);
    /// let (headers, uri) = testing::request_parts(GitHub::new().sign("s", &body, &SignParams::new(0).id("d-1")).unwrap(), "/");
    /// let m = http::Method::POST;
    /// let verdict = v.verify(&RequestHead::new(&m, &uri, &headers), body).unwrap();
    /// assert_eq!(verdict.delivery().unwrap().event_id(), Some("d-1"));
    /// ```
    pub fn delivery(&self) -> Option<&Delivery> {
        match self {
            Verdict::Deliver(d) | Verdict::Ignored(d) => Some(d),
            Verdict::Challenge(_) => None,
        }
    }
}

/// Checks requests from one sender: challenge, body bound, authenticity, replay window.
///
/// Cheap to clone (one `Arc`). Build with [`Verifier::builder`].
///
/// ```
/// use hookguard_core::{schemes::BuildWorkPro, Verifier, Verdict, RequestHead, Scheme, SignParams, clock::ManualClock};
/// let v = Verifier::builder(BuildWorkPro::new())
///     .secret("whsec_old")
///     .secret("whsec_new") // rotation: either verifies
///     .clock(ManualClock::new(1_700_000_000))
///     .build()?;
/// let body = br#"{"id":"evt_1","type":"bid.accepted"}"#;
/// let signed = BuildWorkPro::new().sign("whsec_new", body, &SignParams::new(1_700_000_100))?;
/// let mut headers = http::HeaderMap::new();
/// headers.extend(signed.headers);
/// let (m, u) = (http::Method::POST, http::Uri::from_static("/webhooks"));
/// let verdict = v.verify(&RequestHead::new(&m, &u, &headers), bytes::Bytes::from_static(body))?;
/// assert!(matches!(verdict, Verdict::Deliver(_)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    scheme: Arc<dyn Scheme>,
    keys: Vec<Key>,
    tolerance: Option<Duration>,
    clock: Arc<dyn Clock>,
    max_body: usize,
    max_header_len: usize,
    max_signatures: usize,
    max_challenge: usize,
    read_timeout: Duration,
    challenges: Vec<ChallengeRule>,
    ignore_apps: Vec<String>,
    ignore_users: Vec<String>,
    dedupe_key: Option<CompiledDedupeKey>,
    /// `retry_signature_mismatch`: a mismatch is answered `503 signature_not_verified`.
    retry_mismatch: bool,
    /// When the last warning of an authentic delivery outside the window was logged (unix
    /// seconds, 0: never): at most one a minute.
    window_warned: std::sync::atomic::AtomicU64,
    /// The same for the warning of a body over the limit.
    too_large_warned: std::sync::atomic::AtomicU64,
}

/// Whether a warning last logged at `last` (unix seconds, 0: never) may be logged again at
/// `now`: a minute later, by one caller only.
pub(crate) fn once_a_minute(last: &std::sync::atomic::AtomicU64, now: u64) -> bool {
    use std::sync::atomic::Ordering;
    let seen = last.load(Ordering::Relaxed);
    if seen != 0 && now < seen.saturating_add(60) {
        return false;
    }
    last.compare_exchange(seen, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Verifier")
            .field("scheme", &i.scheme)
            .field("secrets", &i.keys.len())
            .field("tolerance", &i.tolerance)
            .field("max_body", &i.max_body)
            .field("dedupe_key", &i.dedupe_key.as_ref().map(CompiledDedupeKey::text))
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Starts configuring a verifier for `scheme`.
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, ConfigError, Provider, Verifier};
    /// let v = Verifier::builder(GitHub::new()).secret("It's a Secret to Everybody").build().unwrap();
    /// assert_eq!(v.provider(), Provider::GitHub);
    /// // Without a secret nothing could be verified: refused.
    /// assert_eq!(Verifier::builder(GitHub::new()).build().unwrap_err(), ConfigError::NoSecret);
    /// ```
    pub fn builder(scheme: impl Scheme) -> VerifierBuilder {
        Self::builder_arc(Arc::new(scheme))
    }

    /// Starts configuring a verifier for a shared scheme.
    ///
    /// ```
    /// use hookguard_core::{schemes, Provider, Verifier};
    /// let v = Verifier::builder_arc(schemes::for_provider(Provider::GitHub).unwrap()).secret("s").build().unwrap();
    /// assert_eq!(v.provider(), Provider::GitHub);
    /// ```
    pub fn builder_arc(scheme: Arc<dyn Scheme>) -> VerifierBuilder {
        let read_timeout = scheme.profile().within_timeout(DEFAULT_READ_TIMEOUT);
        VerifierBuilder {
            tolerance: scheme.default_tolerance(),
            challenges: scheme.challenges(),
            scheme,
            secrets: Vec::new(),
            clock: Arc::new(SystemClock),
            max_body: DEFAULT_MAX_BODY,
            max_header_len: DEFAULT_MAX_HEADER_LEN,
            max_signatures: DEFAULT_MAX_SIGNATURES,
            max_challenge: DEFAULT_MAX_CHALLENGE,
            read_timeout,
            read_timeout_given: false,
            ignore_apps: Vec::new(),
            ignore_users: Vec::new(),
            dedupe_key: None,
            unsigned_key_headers: Vec::new(),
            retry_mismatch: false,
            bad: None,
        }
    }

    /// The sender.
    ///
    /// ```
    /// use hookguard_core::{schemes::Procore, Provider, Verifier};
    /// let v = Verifier::builder(Procore::new()).secret("Bearer t").build().unwrap();
    /// assert_eq!(v.provider(), Provider::Procore);
    /// assert_eq!(v.provider().as_str(), "procore");
    /// ```
    pub fn provider(&self) -> Provider {
        self.inner.scheme.provider()
    }

    /// Whether `value` is one of the configured tokens (a header token, a URL token), with or
    /// without `Bearer ` before it (compared in constant time, as a presented token is).
    pub(crate) fn is_a_token(&self, value: &[u8]) -> bool {
        if !self.inner.keys.iter().any(|k| k.token_len().is_some()) {
            return false;
        }
        // The value as it is, the token after a `Bearer ` in any case (as RFC 9110 reads the
        // scheme's name), and that token with `Bearer ` (Procore's configured value).
        let bare = match value.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => &value[7..],
            _ => value,
        };
        let with_scheme = [b"Bearer ".as_slice(), bare].concat();
        self.inner.keys.iter().fold(false, |hit, k| {
            hit | k.token_matches(value) | k.token_matches(bare) | k.token_matches(&with_scheme)
        })
    }

    /// The body limit in bytes.
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, Verifier, DEFAULT_MAX_BODY};
    /// let v = Verifier::builder(GitHub::new()).secret("s").build().unwrap();
    /// assert_eq!(v.max_body(), DEFAULT_MAX_BODY);
    /// let v = Verifier::builder(GitHub::new()).secret("s").max_body(64 * 1024).build().unwrap();
    /// assert_eq!(v.max_body(), 64 * 1024);
    /// ```
    pub fn max_body(&self) -> usize {
        self.inner.max_body
    }

    /// How long adapters wait for the whole body before answering `408 body_read_timeout`:
    /// by default [`DEFAULT_READ_TIMEOUT`], or 1 s less than the sender waits for an answer
    /// when that is shorter (the answer must reach a sender that is still listening).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{schemes::{GitHub, Slack}, Scheme, Verifier, DEFAULT_READ_TIMEOUT};
    /// let v = Verifier::builder(GitHub::new()).secret("s").build().unwrap();
    /// assert_eq!(v.read_timeout(), DEFAULT_READ_TIMEOUT);
    /// // Slack waits 3 s for an answer.
    /// let v = Verifier::builder(Slack::new()).secret("s").build().unwrap();
    /// assert_eq!(v.read_timeout(), Duration::from_secs(2));
    /// assert!(v.read_timeout() < Slack::new().profile().timeout);
    /// ```
    pub fn read_timeout(&self) -> Duration {
        self.inner.read_timeout
    }

    /// The scheme.
    ///
    /// ```
    /// use hookguard_core::{schemes::Slack, Provider, Scheme, Verifier};
    /// let v = Verifier::builder(Slack::new()).secret("s").build().unwrap();
    /// assert_eq!(v.scheme().provider(), Provider::Slack);
    /// assert!(v.scheme().acknowledges_empty());
    /// ```
    pub fn scheme(&self) -> &Arc<dyn Scheme> {
        &self.inner.scheme
    }

    /// The current time according to the configured clock.
    ///
    /// ```
    /// use hookguard_core::{clock::ManualClock, schemes::GitHub, Verifier};
    /// let clock = ManualClock::new(1_700_000_000);
    /// let v = Verifier::builder(GitHub::new()).secret("s").clock(clock.clone()).build().unwrap();
    /// assert_eq!(v.now_unix(), 1_700_000_000);
    /// clock.advance(60);
    /// assert_eq!(v.now_unix(), 1_700_000_060);
    /// ```
    pub fn now_unix(&self) -> u64 {
        self.inner.clock.now_unix()
    }

    /// The `Allow` header of a `405`: `POST`, and the methods challenges arrive with (HCSS:
    /// `GET, POST`).
    ///
    /// ```
    /// use hookguard_core::{schemes::{BuildWorkPro, Hcss}, Verifier};
    /// assert_eq!(Verifier::builder(BuildWorkPro::new()).secret("whsec_k").build().unwrap().allowed_methods(), "POST");
    /// assert_eq!(Verifier::builder(Hcss::new()).secret("t").build().unwrap().allowed_methods(), "GET, POST");
    /// ```
    pub fn allowed_methods(&self) -> http::HeaderValue {
        let mut methods: Vec<&str> = self.inner.challenges.iter().map(|r| r.method.as_str()).collect();
        methods.push("POST");
        methods.sort_unstable();
        methods.dedup();
        http::HeaderValue::from_str(&methods.join(", ")).unwrap_or(http::HeaderValue::from_static("POST"))
    }

    /// Decides what to do before reading the body: answer a challenge, refuse the method or a
    /// declared `Content-Length` over the limit, refuse a wrong shared header or URL token
    /// (schemes that [authenticate on the head only](Scheme::authenticates_head_only): a
    /// forged request is never buffered), or read the body.
    ///
    /// ```
    /// use hookguard_core::{schemes::Hcss, Verifier, Precheck, RequestHead, Rejection};
    /// let v = Verifier::builder(Hcss::new()).secret("t").build().unwrap();
    /// let (m, h) = (http::Method::GET, http::HeaderMap::new());
    /// let u = http::Uri::from_static("/hooks?challenge=abc123");
    /// match v.precheck(&RequestHead::new(&m, &u, &h)).unwrap() {
    ///     Precheck::Challenge(a) => assert_eq!(a.value().as_ref(), b"abc123"),
    ///     other => panic!("{other:?}"),
    /// }
    /// let u = http::Uri::from_static("/hooks");
    /// assert_eq!(v.precheck(&RequestHead::new(&m, &u, &h)), Err(Rejection::ChallengeMissing));
    /// ```
    pub fn precheck(&self, head: &RequestHead<'_>) -> Result<Precheck, Rejection> {
        let i = &self.inner;
        for rule in &i.challenges {
            if head.method != rule.method {
                continue;
            }
            match rule.value(head.uri, i.max_challenge)? {
                Some(v) => return bounded(v, i.max_challenge).map(Precheck::Challenge),
                // A challenge-only method (GET) without the value is a broken challenge;
                // a POST without it is a delivery.
                None if rule.method != Method::POST => return Err(Rejection::ChallengeMissing),
                None => {}
            }
        }
        if head.method != Method::POST {
            return Err(Rejection::MethodNotAllowed);
        }
        // A forged request is refused as forged before its size is judged: an oversized body
        // without the token answered `body_too_large` (retryable, with a WARN telling the
        // operator to raise the limit, counted toward the sender's health).
        if i.scheme.authenticates_head_only() {
            self.authenticate(head, &[])?;
        }
        let mut lengths = head.headers.get_all(http::header::CONTENT_LENGTH).iter();
        if let Some(len) = lengths.next() {
            // Digits only (RFC 9110: no sign, no space), and one value: a second, different
            // length is a request smuggling attempt.
            let digits = len.as_bytes();
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) || lengths.any(|other| other != len) {
                return Err(Rejection::BodyReadFailed);
            }
            let len: u64 = len.to_str().ok().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
            if len > i.max_body as u64 {
                return Err(self.read_refusal(head, Rejection::BodyTooLarge { limit: i.max_body }));
            }
        }
        Ok(Precheck::ReadBody { limit: i.max_body })
    }

    /// What a failed body read is refused as. A body over the limit is
    /// [`BodyTooLarge`](Rejection::BodyTooLarge), retryable, with a WARN telling the operator
    /// to raise the limit — unless the head alone refuses the request: no signature, or one
    /// in a form no sender writes (a scanner's, or a misconfigured sender's), is refused as
    /// that; so is a missing or wrong token of a sender that sends one (Procore, HCSS). Any
    /// other rejection is returned as it is. The adapters call this when their read
    /// of the body fails; [`precheck`](Self::precheck) and [`verify`](Self::verify) do.
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, Rejection, RequestHead, Verifier};
    /// let v = Verifier::builder(GitHub::new()).secret("s").build().unwrap();
    /// let (m, u, h) = (http::Method::POST, http::Uri::from_static("/"), http::HeaderMap::new());
    /// let r = v.read_refusal(&RequestHead::new(&m, &u, &h), Rejection::BodyTooLarge { limit: 10 });
    /// assert_eq!(r.code(), "missing_signature");
    /// ```
    pub fn read_refusal(&self, head: &RequestHead<'_>, r: Rejection) -> Rejection {
        let i = &self.inner;
        if !matches!(r, Rejection::BodyTooLarge { .. }) {
            return r;
        }
        // A head-only scheme (a token) is judged whole by the head: a request without the
        // right token is refused as that, also where no `precheck` ran before (a caller of
        // `verify`, `Receiver::admit` or `deliver` directly). Only an oversized body pays for
        // this second look.
        if i.scheme.authenticates_head_only() {
            return self.authenticate(head, &[]).err().unwrap_or(r);
        }
        // A MAC over no body: only for a body over the limit, and never equal to the sender's.
        match i.scheme.authenticate(head, &[], &self.context()) {
            Err(refused) if refused.is_uncredentialed() => refused,
            _ => r,
        }
    }

    fn context(&self) -> Context<'_> {
        let i = &self.inner;
        Context {
            keys: &i.keys,
            tolerance: i.tolerance,
            now: i.clock.now_unix(),
            max_signatures: i.max_signatures,
            max_header_len: i.max_header_len,
        }
    }

    /// Authenticates only (signature or token, replay window), without reading the payload:
    /// the part of [`verify`](Self::verify) that costs the HMAC.
    ///
    /// The replay window is judged here, after the scheme has authenticated the request and
    /// returned its signed timestamp ([`Authenticated::at`](crate::Authenticated::at)): only an
    /// authentic delivery can be [`TimestampOutOfWindow`](Rejection::TimestampOutOfWindow), a
    /// retryable answer (a forged one is refused by its signature, permanently). A warning
    /// names the offset, at most once a minute (a replayed capture must not flood the log).
    ///
    /// # Errors
    /// The [`Rejection`] to answer with.
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, Verifier, RequestHead};
    /// let v = Verifier::builder(GitHub::new()).secret("s").build().unwrap();
    /// let (m, u, h) = (http::Method::POST, http::Uri::from_static("/"), http::HeaderMap::new());
    /// assert_eq!(v.authenticate(&RequestHead::new(&m, &u, &h), b"{}").unwrap_err().code(), "missing_signature");
    /// ```
    pub fn authenticate(&self, head: &RequestHead<'_>, body: &[u8]) -> Result<crate::Authenticated, Rejection> {
        let i = &self.inner;
        let ctx = self.context();
        let auth = match i.scheme.authenticate(head, body, &ctx) {
            Ok(auth) => auth,
            Err(Rejection::SignatureMismatch) if i.retry_mismatch => return Err(Rejection::SignatureNotVerified),
            Err(r) => return Err(r),
        };
        if let Some(t) = auth.timestamp.filter(|&t| ctx.outside_window(t)) {
            self.warn_outside_window(t, ctx.now);
            return Err(Rejection::TimestampOutOfWindow);
        }
        Ok(auth)
    }

    /// Logs an authentic delivery signed outside the window, at most once a minute.
    #[cold]
    fn warn_outside_window(&self, signed: u64, now: u64) {
        if !once_a_minute(&self.inner.window_warned, now) {
            return;
        }
        let offset = i128::from(signed) - i128::from(now);
        tracing::warn!(
            provider = %self.provider(),
            signed_at = signed,
            offset_secs = %offset,
            "an authentic delivery was signed {offset} s from this server's clock, outside the replay window: a replay of an old delivery, or one of the clocks is off (check NTP); answered 503 so the sender's re-signed retry can get through (at most one such warning a minute)"
        );
    }

    /// Whether a warning of a body over the limit may be logged now: at most one a minute per
    /// verifier (the request's head alone triggers it, so a client repeating an oversized
    /// request must not flood the log).
    pub(crate) fn too_large_warning_due(&self) -> bool {
        once_a_minute(&self.inner.too_large_warned, self.inner.clock.now_unix())
    }

    /// Verifies a request and its complete body.
    ///
    /// # Errors
    /// The [`Rejection`] to answer with.
    ///
    /// ```
    /// use hookguard_core::{clock::ManualClock, schemes::BuildWorkPro, testing, Rejection, RequestHead, Scheme, SignParams, Verdict, Verifier};
    /// let now = 1_700_000_000;
    /// let v = Verifier::builder(BuildWorkPro::new()).secret("whsec_k").clock(ManualClock::new(now)).build().unwrap();
    /// let body = bytes::Bytes::from_static(br#"{"id":"evt_1","type":"bid.accepted"}"#);
    /// let (headers, uri) = testing::request_parts(BuildWorkPro::new().sign("whsec_k", &body, &SignParams::new(now)).unwrap(), "/");
    /// let m = http::Method::POST;
    /// let head = RequestHead::new(&m, &uri, &headers);
    /// let Verdict::Deliver(d) = v.verify(&head, body).unwrap() else { panic!("not a delivery") };
    /// assert_eq!((d.event_id(), d.event_type()), (Some("evt_1"), Some("bid.accepted")));
    /// // The same signature over other bytes: refused.
    /// let tampered = bytes::Bytes::from_static(br#"{"id":"evt_1","type":"bid.rejected"}"#);
    /// assert_eq!(v.verify(&head, tampered).unwrap_err(), Rejection::SignatureMismatch);
    /// ```
    pub fn verify(&self, head: &RequestHead<'_>, body: Bytes) -> Result<Verdict, Rejection> {
        let i = &self.inner;
        if body.len() > i.max_body {
            return Err(self.read_refusal(head, Rejection::BodyTooLarge { limit: i.max_body }));
        }
        let auth = self.authenticate(head, &body)?;
        let d = i.scheme.describe(head, &body)?;
        if let Some(c) = d.challenge {
            return bounded(c.into_bytes(), i.max_challenge).map(Verdict::Challenge);
        }
        let provider = i.scheme.provider();
        let (key, scope) = match &i.dedupe_key {
            None => (d.dedupe_key, d.dedupe_scope),
            Some(fields) => match fields.compute(&*i.scheme, head, &body) {
                Some(key) => (Some(key), DedupeScope::Retained),
                None => {
                    // Never a rejection: the sender's own key still coalesces its retries.
                    tracing::warn!(
                        %provider,
                        dedupe_key = fields.text(),
                        event_id = d.event_id.as_deref(),
                        "a dedupe key field is missing from this delivery; keeping the sender's default key"
                    );
                    (d.dedupe_key, d.dedupe_scope)
                }
            },
        };
        let delivery = Delivery {
            provider,
            dedupe_key: key.map(|k| {
                let p = provider.as_str();
                let mut out = String::with_capacity(p.len() + 1 + k.len());
                out.push_str(p);
                out.push(':');
                out.push_str(&k);
                out
            }),
            dedupe_scope: scope,
            event_id: d.event_id,
            event_type: d.event_type.filter(|t| crate::schemes::usable_type(t)),
            timestamp: auth.timestamp,
            source_application_id: d.source_application_id,
            body,
        };
        let own_app = matches!(&delivery.source_application_id, Some(app) if i.ignore_apps.iter().any(|a| a == app));
        let own_user = matches!(&d.source_user_id, Some(user) if i.ignore_users.iter().any(|u| u == user));
        if own_app || own_user {
            Ok(Verdict::Ignored(delivery))
        } else {
            Ok(Verdict::Deliver(delivery))
        }
    }
}

/// Configures a [`Verifier`]. Secrets are turned into keys as they are added and are never
/// kept as text, printed or logged.
///
/// [`ReceiverBuilder`](crate::ReceiverBuilder) has the same setters: both builders get them from
/// one list, so neither can lack one the other has.
///
/// ```
/// use hookguard_core::{schemes::Stripe, Verifier, VerifierBuilder};
/// let builder: VerifierBuilder = Verifier::builder(Stripe::new()).secret("whsec_a");
/// // Its `Debug` counts the secrets; it never shows one.
/// let shown = format!("{builder:?}");
/// assert!(shown.contains("secrets: 1") && !shown.contains("whsec_a"));
/// assert!(builder.build().is_ok());
/// ```
pub struct VerifierBuilder {
    scheme: Arc<dyn Scheme>,
    secrets: Vec<Key>,
    tolerance: Option<Duration>,
    clock: Arc<dyn Clock>,
    max_body: usize,
    max_header_len: usize,
    max_signatures: usize,
    max_challenge: usize,
    /// The scheme's, or set by [`ReceiverBuilder::sender_timeout`](crate::ReceiverBuilder::sender_timeout).
    pub(crate) read_timeout: Duration,
    /// Set by [`body_read_timeout`](Self::body_read_timeout): a sender timeout leaves it.
    pub(crate) read_timeout_given: bool,
    challenges: Vec<ChallengeRule>,
    ignore_apps: Vec<String>,
    ignore_users: Vec<String>,
    dedupe_key: Option<DedupeKey>,
    unsigned_key_headers: Vec<String>,
    retry_mismatch: bool,
    bad: Option<(usize, &'static str)>,
}

impl fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("scheme", &self.scheme)
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

/// The verifier settings, listed once for both builders that offer them.
///
/// [`VerifierBuilder`] and [`ReceiverBuilder`](crate::ReceiverBuilder) (and through it the
/// adapters' `WebhookLayerBuilder` and `WebhookBuilder`) offer the same setters with the same
/// signatures and docs. They come from the one list below: each entry is a documented
/// operation on `&mut VerifierBuilder`; `verifier_setters!(VerifierBuilder)` emits
/// `fn name(mut self, ..) -> Self` applying it, and `verifier_setters!(ReceiverBuilder)` emits
/// the same method on `ReceiverBuilder<T>`, applied to its inner verifier builder. A new
/// setter is added here, once, and exists on both builders; neither can fall behind.
///
/// An entry reads `fn name[generics](b, arg: Type, ..) { body }`: `[generics]` is optional,
/// `b` names the `&mut VerifierBuilder` inside `body`. Types are written with full paths (the
/// methods are emitted in `receiver.rs` too).
macro_rules! verifier_setters {
    (@emit VerifierBuilder $(
        $(#[$attr:meta])*
        fn $name:ident $([$($gen:tt)*])? ($b:ident $(, $arg:ident: $ty:ty)*) $body:block
    )*) => {
        impl VerifierBuilder {
            $(
                $(#[$attr])*
                pub fn $name $(<$($gen)*>)? (mut self $(, $arg: $ty)*) -> Self {
                    let $b: &mut $crate::VerifierBuilder = &mut self;
                    $body
                    self
                }
            )*
        }
    };
    (@emit ReceiverBuilder $(
        $(#[$attr:meta])*
        fn $name:ident $([$($gen:tt)*])? ($b:ident $(, $arg:ident: $ty:ty)*) $body:block
    )*) => {
        impl<T> ReceiverBuilder<T> {
            $(
                $(#[$attr])*
                pub fn $name $(<$($gen)*>)? (mut self $(, $arg: $ty)*) -> Self {
                    self.verifier = self.verifier.$name($($arg),*);
                    self
                }
            )*
        }
    };
    ($builder:ident) => {
        $crate::verifier::verifier_setters! { @emit $builder

        /// Adds a secret (a signing secret, or an accepted header value / URL token). With
        /// several, any may match: keep the old one during a rotation. Secrets become keys at
        /// once and are never kept as text, printed or logged.
        ///
        /// ```
        /// use hookguard_core::{schemes::GitHub, Verifier};
        /// let v = Verifier::builder(GitHub::new()).secret("old").secret("new").build().unwrap();
        /// assert!(!format!("{v:?}").contains("old"));
        /// ```
        fn secret(b, secret: impl AsRef<str>) {
            b.add_secret(secret.as_ref());
        }

        /// Adds several secrets.
        ///
        /// ```
        /// use hookguard_core::{schemes::GitHub, Verifier};
        /// assert!(Verifier::builder(GitHub::new()).secrets(["a", "b"]).build().is_ok());
        /// ```
        fn secrets[I: IntoIterator<Item = S>, S: AsRef<str>](b, secrets: I) {
            for s in secrets {
                b.add_secret(s.as_ref());
            }
        }

        /// The two-sided replay window (default: 300 s for timestamped schemes).
        ///
        /// ```
        /// use std::time::Duration;
        /// use hookguard_core::{clock::ManualClock, schemes::BuildWorkPro, testing, Rejection, RequestHead, Scheme, SignParams, Verifier};
        /// let clock = ManualClock::new(1_700_000_000);
        /// let v = Verifier::builder(BuildWorkPro::new()).secret("whsec_k").clock(clock.clone())
        ///     .tolerance(Duration::from_secs(60)).build().unwrap();
        /// let body = bytes::Bytes::from_static(br#"{"id":"evt_1","type":"bid.accepted"}"#);
        /// let (h, u) = testing::request_parts(BuildWorkPro::new().sign("whsec_k", &body, &SignParams::new(1_700_000_000)).unwrap(), "/");
        /// let m = http::Method::POST;
        /// let head = RequestHead::new(&m, &u, &h);
        /// clock.advance(60);
        /// assert!(v.verify(&head, body.clone()).is_ok());
        /// clock.advance(1); // 61 s after it was signed
        /// assert_eq!(v.verify(&head, body).unwrap_err(), Rejection::TimestampOutOfWindow);
        /// ```
        fn tolerance(b, tolerance: ::std::time::Duration) {
            b.tolerance = Some(tolerance);
        }

        /// Turns the replay window off (only for schemes without a signed timestamp, or tests).
        ///
        /// ```
        /// use hookguard_core::{clock::ManualClock, schemes::BuildWorkPro, testing, RequestHead, Scheme, SignParams, Verifier};
        /// let clock = ManualClock::new(1_700_000_000);
        /// let v = Verifier::builder(BuildWorkPro::new()).secret("whsec_k").clock(clock.clone()).no_replay_window().build().unwrap();
        /// let body = bytes::Bytes::from_static(br#"{"id":"evt_1","type":"bid.accepted"}"#);
        /// let (h, u) = testing::request_parts(BuildWorkPro::new().sign("whsec_k", &body, &SignParams::new(1_700_000_000)).unwrap(), "/");
        /// clock.advance(24 * 3600); // a day later: still accepted (a test fixture, a captured delivery)
        /// let m = http::Method::POST;
        /// assert!(v.verify(&RequestHead::new(&m, &u, &h), body).is_ok());
        /// ```
        fn no_replay_window(b) {
            b.tolerance = None;
        }

        /// The clock for the replay window (tests inject a
        /// [`ManualClock`](crate::clock::ManualClock)).
        ///
        /// ```
        /// use hookguard_core::{clock::ManualClock, schemes::GitHub, Verifier};
        /// let v = Verifier::builder(GitHub::new()).secret("s").clock(ManualClock::new(42)).build().unwrap();
        /// assert_eq!(v.now_unix(), 42);
        /// ```
        fn clock(b, clock: impl $crate::clock::Clock) {
            b.clock = ::std::sync::Arc::new(clock);
        }

        /// The body limit in bytes (default 1 MiB).
        ///
        /// ```
        /// use hookguard_core::{schemes::GitHub, Rejection, RequestHead, Verifier};
        /// let v = Verifier::builder(GitHub::new()).secret("s").max_body(1024).build().unwrap();
        /// assert_eq!(v.max_body(), 1024);
        /// // A signed request declaring a larger body is refused before it is read (503: retried
        /// // once the limit is raised).
        /// let mut h = http::HeaderMap::new();
        /// h.insert("x-hub-signature-256", format!("sha256={}", "0".repeat(64)).parse().unwrap());
        /// h.insert("content-length", "2048".parse().unwrap());
        /// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
        /// assert_eq!(v.precheck(&RequestHead::new(&m, &u, &h)), Err(Rejection::BodyTooLarge { limit: 1024 }));
        /// ```
        fn max_body(b, bytes: usize) {
            b.max_body = bytes;
        }

        /// The bound for one parsed header (default 4096 bytes).
        ///
        /// ```
        /// use hookguard_core::{schemes::GitHub, RequestHead, Verifier};
        /// let v = Verifier::builder(GitHub::new()).secret("s").max_header_len(64).build().unwrap();
        /// let mut h = http::HeaderMap::new();
        /// // `sha256=` and 64 hex digits: 71 bytes, over the bound.
        /// h.insert("x-hub-signature-256", format!("sha256={}", "0".repeat(64)).parse().unwrap());
        /// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
        /// assert_eq!(v.authenticate(&RequestHead::new(&m, &u, &h), b"{}").unwrap_err().code(), "header_too_large");
        /// ```
        fn max_header_len(b, bytes: usize) {
            b.max_header_len = bytes;
        }

        /// The bound for signatures in one header (default 16).
        ///
        /// ```
        /// use hookguard_core::{schemes::Stripe, RequestHead, Verifier};
        /// let v = Verifier::builder(Stripe::new()).secret("whsec_k").max_signatures(2).build().unwrap();
        /// let mut h = http::HeaderMap::new();
        /// h.insert("stripe-signature", "t=1,v1=00,v1=00,v1=00".parse().unwrap());
        /// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
        /// assert_eq!(v.authenticate(&RequestHead::new(&m, &u, &h), b"{}").unwrap_err().code(), "too_many_signatures");
        /// ```
        fn max_signatures(b, n: usize) {
            b.max_signatures = n;
        }

        /// The bound for a reflected challenge value (default 1 KiB).
        ///
        /// ```
        /// use hookguard_core::{schemes::Hcss, Precheck, Rejection, RequestHead, Verifier};
        /// let v = Verifier::builder(Hcss::new()).secret("tok").max_challenge_len(8).build().unwrap();
        /// let (m, h) = (http::Method::GET, http::HeaderMap::new());
        /// let ok = http::Uri::from_static("/hooks?challenge=12345678");
        /// assert!(matches!(v.precheck(&RequestHead::new(&m, &ok, &h)), Ok(Precheck::Challenge(_))));
        /// let long = http::Uri::from_static("/hooks?challenge=123456789");
        /// assert_eq!(v.precheck(&RequestHead::new(&m, &long, &h)), Err(Rejection::ChallengeTooLong { limit: 8 }));
        /// ```
        fn max_challenge_len(b, bytes: usize) {
            b.max_challenge = bytes;
        }

        /// How long an adapter waits for the whole body before answering `408 body_read_timeout`
        /// (default [`DEFAULT_READ_TIMEOUT`](crate::DEFAULT_READ_TIMEOUT), 4 s: below every
        /// sender's own timeout).
        ///
        /// ```
        /// use std::time::Duration;
        /// use hookguard_core::{schemes::GitHub, Verifier};
        /// let v = Verifier::builder(GitHub::new()).secret("s").body_read_timeout(Duration::from_secs(2)).build().unwrap();
        /// assert_eq!(v.read_timeout(), Duration::from_secs(2));
        /// ```
        fn body_read_timeout(b, timeout: ::std::time::Duration) {
            b.read_timeout = timeout;
            b.read_timeout_given = true;
        }

        /// Also answers a challenge carried in a query parameter, e.g. Microsoft Graph's
        /// `POST ?validationToken=`.
        ///
        /// ```
        /// use hookguard_core::{schemes::GitHub, ChallengeRule, Verifier};
        /// let v = Verifier::builder(GitHub::new()).secret("s")
        ///     .challenge(ChallengeRule::query(http::Method::POST, "validationToken")).build().unwrap();
        /// # let _ = v;
        /// ```
        fn challenge(b, rule: $crate::ChallengeRule) {
            b.challenges.push(rule);
        }

        /// Answers a signature that no secret of this receiver produced `503
        /// signature_not_verified` with `Retry-After: 60` instead of `401 signature_mismatch`
        /// (off by default). For a sender that rotates its secret without overlap (BuildWorkPro:
        /// the old secret stops at once, and a `401` is never retried), deliveries signed with
        /// the new secret before the receiver is redeployed with it are retried instead of lost.
        /// Each `503` still counts toward the sender's kill switch (BuildWorkPro disables the
        /// endpoint after 20 consecutive failures): give the receiver the new secret soon. A
        /// forger gains nothing from either answer; malformed and missing signatures keep their
        /// `400`/`401`.
        ///
        /// ```
        /// use hookguard_core::{clock::ManualClock, schemes::BuildWorkPro, testing, RequestHead, Scheme, SignParams, Verifier};
        /// let now = 1_700_000_000;
        /// let v = Verifier::builder(BuildWorkPro::new()).secret("whsec_old").clock(ManualClock::new(now))
        ///     .retry_signature_mismatch(true).build().unwrap();
        /// // Signed with the secret the sender rotated to, which this receiver lacks yet.
        /// let body = bytes::Bytes::from_static(br#"{"id":"e","type":"t"}"#);
        /// let signed = BuildWorkPro::new().sign("whsec_new", &body, &SignParams::new(now)).unwrap();
        /// let (headers, uri) = testing::request_parts(signed, "/");
        /// let r = v.verify(&RequestHead::new(&http::Method::POST, &uri, &headers), body).unwrap_err();
        /// assert_eq!((r.code(), r.status().as_u16()), ("signature_not_verified", 503));
        /// ```
        fn retry_signature_mismatch(b, retry: bool) {
            b.retry_mismatch = retry;
        }

        /// Answers 2xx without calling the handler for Procore deliveries caused by this
        /// application id (`metadata.source_application_id`): your own writes, which would loop.
        ///
        /// ```
        /// use hookguard_core::{schemes::Procore, RequestHead, Verdict, Verifier};
        /// let v = Verifier::builder(Procore::new()).secret("Bearer t").ignore_source_application("4b2f").build().unwrap();
        /// let mut headers = http::HeaderMap::new();
        /// headers.insert("authorization", "Bearer t".parse().unwrap());
        /// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
        /// let head = RequestHead::new(&m, &u, &headers);
        /// let ours = br#"{"id":1,"ulid":"01EDPD2J6SBY1163N77H95GW09","event_type":"update","resource_name":"RFIs","metadata":{"source_application_id":"4b2f"}}"#;
        /// assert!(matches!(v.verify(&head, bytes::Bytes::from_static(ours)).unwrap(), Verdict::Ignored(_)));
        /// let theirs = br#"{"id":2,"ulid":"01EDPD2J6SBY1163N77H95GW10","event_type":"update","resource_name":"RFIs","metadata":{"source_application_id":"9e1c"}}"#;
        /// assert!(matches!(v.verify(&head, bytes::Bytes::from_static(theirs)).unwrap(), Verdict::Deliver(_)));
        /// ```
        fn ignore_source_application(b, app_id: impl Into<String>) {
            b.ignore_apps.push(app_id.into());
        }

        /// Answers 2xx without calling the handler for Procore deliveries whose change this
        /// user made (`metadata.source_user_id`, or the payload's `user_id` where that is
        /// absent, null or neither a string nor a number, as in v4 payloads; compared as
        /// written: `"1469242"` for `1469242`): the service account your integration writes
        /// with, which Procore's guide names, beside the application id, for filtering your
        /// own changes.
        ///
        /// ```
        /// use hookguard_core::{schemes::Procore, RequestHead, Verdict, Verifier};
        /// let v = Verifier::builder(Procore::new()).secret("Bearer t").ignore_source_user("1469242").build().unwrap();
        /// let mut headers = http::HeaderMap::new();
        /// headers.insert("authorization", "Bearer t".parse().unwrap());
        /// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
        /// let ours = br#"{"id":"01J0","event_type":"update","resource_name":"RFIs","user_id":1469242}"#;
        /// let out = v.verify(&RequestHead::new(&m, &u, &headers), bytes::Bytes::from_static(ours)).unwrap();
        /// assert!(matches!(out, Verdict::Ignored(_)));
        /// ```
        fn ignore_source_user(b, user_id: impl Into<String>) {
            b.ignore_users.push(user_id.into());
        }

        /// Recognises copies of an event by these signed fields instead of the sender's own id
        /// (see [`DedupeKey`](crate::DedupeKey): JSON pointers into the body, headers the
        /// scheme signs); remembered for the retention. A delivery missing one of the fields
        /// keeps the sender's default key; it is never rejected.
        ///
        /// ```
        /// use hookguard_core::{schemes::{BuildWorkPro, Procore, StandardWebhooks}, dedupe::MemoryStore};
        /// use hookguard_core::{ConfigError, DedupeKey, Receiver, Verifier};
        /// let fields: DedupeKey = "/resource_name|/resource_type,/resource_id,/event_type|/reason,/timestamp".parse().unwrap();
        /// assert!(Verifier::builder(BuildWorkPro::new()).secret("s").dedupe_key(fields.clone()).build().is_ok());
        /// let rx: Receiver = Receiver::builder(Procore::new())
        ///     .secret("Bearer t")
        ///     .dedupe_key(fields)
        ///     .dedupe(MemoryStore::default())
        ///     .build()
        ///     .unwrap();
        /// # let _ = rx;
        /// // `webhook-id` is part of the Standard Webhooks signed content: accepted.
        /// let signed = DedupeKey::new().header("webhook-id").pointer("/type");
        /// assert!(Verifier::builder(StandardWebhooks::new()).secret("whsec_c2VjcmV0").dedupe_key(signed).build().is_ok());
        /// // BuildWorkPro's event-id header is not signed: refused.
        /// let unsigned = DedupeKey::new().header("BuildWorkPro-Event-Id");
        /// let err = Verifier::builder(BuildWorkPro::new()).secret("s").dedupe_key(unsigned).build().unwrap_err();
        /// assert!(matches!(err, ConfigError::Invalid(m) if m.contains("not covered by the sender's signature")));
        /// ```
        fn dedupe_key(b, key: $crate::DedupeKey) {
            b.dedupe_key = Some(key);
        }

        /// Allows a header the sender's signature does **not** cover as a
        /// [`DedupeKey`](crate::DedupeKey) field. Only for headers a trusted hop sets: anyone
        /// who replays a genuine delivery can change such a header and make a genuine event
        /// that has not arrived yet look like a duplicate.
        ///
        /// ```
        /// use hookguard_core::{schemes::BuildWorkPro, DedupeKey, Verifier};
        /// let key = DedupeKey::new().header("x-relay-id");
        /// // Refused by default: anyone replaying a delivery could rewrite this header.
        /// assert!(Verifier::builder(BuildWorkPro::new()).secret("whsec_k").dedupe_key(key.clone()).build().is_err());
        /// let v = Verifier::builder(BuildWorkPro::new()).secret("whsec_k")
        ///     .dedupe_key(key)
        ///     .allow_unsigned_key_header("X-Relay-Id") // set by a hop you trust
        ///     .build();
        /// assert!(v.is_ok());
        /// ```
        fn allow_unsigned_key_header(b, name: impl AsRef<str>) {
            b.unsigned_key_headers.push(name.as_ref().trim().to_ascii_lowercase());
        }

        }
    };
}
pub(crate) use verifier_setters;

verifier_setters!(VerifierBuilder);

impl VerifierBuilder {
    /// Turns `secret` into a key, or remembers (without the secret) that it is unusable: a
    /// poisoned slot that [`build`](Self::build) reports by position.
    fn add_secret(&mut self, secret: &str) {
        // An empty secret is a missing one (an unset environment variable read with
        // `unwrap_or_default`): with HMAC, anyone could sign with the empty key.
        if secret.is_empty() {
            self.bad.get_or_insert((self.secrets.len(), "empty"));
            return;
        }
        match self.scheme.key(secret) {
            Ok(k) => self.secrets.push(k),
            Err(reason) => {
                self.bad.get_or_insert((self.secrets.len(), reason));
            }
        }
    }

    /// Builds the verifier.
    ///
    /// # Errors
    /// No secret, too many, or one the scheme cannot use (named by position, never by value);
    /// a [`DedupeKey`] that is empty, malformed, or names a header the sender does not sign
    /// (unless [allowed](Self::allow_unsigned_key_header)).
    ///
    /// ```
    /// use hookguard_core::{schemes::StandardWebhooks, ConfigError, Verifier};
    /// assert!(Verifier::builder(StandardWebhooks::new()).secret("whsec_c2VjcmV0").build().is_ok());
    /// // A secret it cannot use is named by its position, never by its value.
    /// let err = Verifier::builder(StandardWebhooks::new()).secret("whsec_c2VjcmV0").secret("").build().unwrap_err();
    /// assert_eq!(err, ConfigError::InvalidSecret { index: 1, reason: "empty" });
    /// ```
    pub fn build(self) -> Result<Verifier, ConfigError> {
        if let Some((index, reason)) = self.bad {
            return Err(ConfigError::InvalidSecret { index, reason });
        }
        if self.secrets.is_empty() {
            return Err(ConfigError::NoSecret);
        }
        if self.secrets.len() > MAX_SECRETS {
            return Err(ConfigError::TooManySecrets(MAX_SECRETS));
        }
        // Every `v1a` entry is checked against every Ed25519 key, within a bounded number of
        // checks: more keys than that bound allows for a sender mid-rotation (two entries)
        // would refuse genuine deliveries.
        #[cfg(feature = "ed25519")]
        if crate::key::ed25519_count(&self.secrets) > crate::schemes::StandardWebhooks::MAX_V1A_KEYS {
            return Err(ConfigError::Invalid(
                "at most 4 Ed25519 keys (whpk_/whsk_): each v1a entry is checked against every one",
            ));
        }
        if self.read_timeout.is_zero() {
            return Err(ConfigError::Invalid("the body read timeout must be above zero"));
        }
        if self.max_signatures == 0 || self.max_challenge == 0 || self.max_header_len == 0 {
            return Err(ConfigError::Invalid("bounds must be at least 1"));
        }
        // A token sent in a header longer than the header bound is answered `431` on every
        // genuine delivery (Procore, HCSS): refused here, naming the bound it must fit.
        if self.scheme.credential_header().is_some() {
            let long = (self.secrets.iter()).position(|k| k.token_len().is_some_and(|n| n > self.max_header_len));
            if let Some(index) = long {
                return Err(ConfigError::InvalidSecret {
                    index,
                    reason: "longer than the longest header value read (raise max_header_len)",
                });
            }
        }
        // A window under a second refuses every genuine delivery not stamped in the second it
        // arrives (the stamps are whole seconds): each one a retryable 503 until the sender gives up.
        if self.tolerance.is_some_and(|t| t < Duration::from_secs(1)) {
            return Err(ConfigError::Invalid(
                "the replay window must be at least 1 s (no_replay_window turns it off)",
            ));
        }
        // A body limit of 0 refuses every delivery (`body_too_large`): nothing could ever get through.
        if self.max_body == 0 {
            return Err(ConfigError::Invalid("the body limit must be at least 1 byte"));
        }
        let dedupe_key = match &self.dedupe_key {
            Some(k) => Some(k.compile(self.scheme.as_ref(), &self.unsigned_key_headers)?),
            None => None,
        };
        Ok(Verifier {
            inner: Arc::new(Inner {
                scheme: self.scheme,
                keys: self.secrets,
                tolerance: self.tolerance,
                clock: self.clock,
                max_body: self.max_body,
                max_header_len: self.max_header_len,
                max_signatures: self.max_signatures,
                max_challenge: self.max_challenge,
                read_timeout: self.read_timeout,
                challenges: self.challenges,
                ignore_apps: self.ignore_apps,
                ignore_users: self.ignore_users,
                dedupe_key,
                retry_mismatch: self.retry_mismatch,
                window_warned: std::sync::atomic::AtomicU64::new(0),
                too_large_warned: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::schemes::BuildWorkPro;
    use crate::Receiver;

    /// An authentic stale delivery is warned of at most once a minute per verifier (a replayed
    /// capture in a loop must not flood the log); a forged one never.
    #[test]
    fn the_window_warning_is_rate_limited_and_only_for_authentic_deliveries() {
        use crate::{Scheme, SignParams};
        use std::sync::atomic::Ordering;
        let clock = ManualClock::new(1_000_000);
        let v = Verifier::builder(BuildWorkPro::new())
            .secret("whsec_k")
            .clock(clock.clone())
            .build()
            .unwrap();
        let body = br#"{"id":"evt_1","type":"bid.created"}"#;
        let attempt = |secret: &str| {
            let signed = BuildWorkPro::new()
                .sign(secret, body, &SignParams::new(1_000_000 - 3_600))
                .unwrap();
            let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
            let headers: http::HeaderMap = signed.headers.into_iter().collect();
            v.authenticate(&RequestHead::new(&m, &u, &headers), body).unwrap_err()
        };
        let warned = || v.inner.window_warned.load(Ordering::Relaxed);
        assert_eq!(attempt("whsec_forged"), Rejection::SignatureMismatch);
        assert_eq!(warned(), 0);
        clock.set(1_000_000);
        assert_eq!(attempt("whsec_k"), Rejection::TimestampOutOfWindow);
        assert_eq!(warned(), 1_000_000);
        clock.set(1_000_059);
        assert_eq!(attempt("whsec_k"), Rejection::TimestampOutOfWindow);
        assert_eq!(warned(), 1_000_000, "a second warning within the minute");
        clock.set(1_000_060);
        assert_eq!(attempt("whsec_k"), Rejection::TimestampOutOfWindow);
        assert_eq!(warned(), 1_000_060);
    }

    /// `Content-Length` is digits only, and one value (two different ones: smuggling).
    #[test]
    fn zero_bounds_are_refused() {
        let build = |f: fn(VerifierBuilder) -> VerifierBuilder| {
            f(Verifier::builder(BuildWorkPro::new()).secret("whsec_k"))
                .build()
                .map(drop)
        };
        assert!(build(|b| b).is_ok());
        for (what, f) in [
            ("body", (|b| b.max_body(0)) as fn(VerifierBuilder) -> VerifierBuilder),
            ("header", |b| b.max_header_len(0)),
            ("signatures", |b| b.max_signatures(0)),
            // (Accepted silently before: every delivery not stamped in its arrival second, 503.)
            ("window", |b| b.tolerance(Duration::ZERO)),
            ("window under a second", |b| b.tolerance(Duration::from_millis(999))),
        ] {
            assert!(matches!(build(f), Err(ConfigError::Invalid(_))), "{what}");
        }
        assert!(build(|b| b.max_body(1)).is_ok());
        assert!(build(|b| b.tolerance(Duration::from_secs(1))).is_ok());
        assert!(build(|b| b.no_replay_window()).is_ok());
    }

    /// The headers of a signed BuildWorkPro delivery (of another body: a MAC over the body does
    /// not change what the head alone decides).
    fn signed_head() -> http::HeaderMap {
        use crate::SignParams;
        let signed = BuildWorkPro::new()
            .sign("whsec_k", b"{}", &SignParams::new(SystemClock.now_unix()))
            .unwrap();
        let mut h = http::HeaderMap::new();
        h.extend(signed.headers);
        h
    }

    #[test]
    fn content_length_is_strict() {
        let v = Verifier::builder(BuildWorkPro::new())
            .secret("whsec_k")
            .build()
            .unwrap();
        let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
        let pre = |values: &[&'static str]| {
            let mut h = signed_head();
            for x in values {
                h.append(http::header::CONTENT_LENGTH, http::HeaderValue::from_static(x));
            }
            v.precheck(&crate::RequestHead::new(&m, &u, &h))
        };
        assert!(pre(&["5"]).is_ok());
        assert!(pre(&["5", "5"]).is_ok());
        for bad in [&["+5"][..], &["5 "], &[""], &["-1"], &["0x5"], &["5", "6"]] {
            assert_eq!(pre(bad).unwrap_err(), Rejection::BodyReadFailed, "{bad:?}");
        }
        assert!(matches!(
            pre(&["99999999999999999999999"]),
            Err(Rejection::BodyTooLarge { .. })
        ));
    }

    proptest::proptest! {
        /// For any `Content-Length` values: the precheck lets the body be read exactly when
        /// every value is one same non-empty digit string whose number is within `max_body`;
        /// over it is `body_too_large`, anything else a malformed request.
        #[test]
        fn any_content_length_is_judged_by_its_digits(values in proptest::collection::vec("[0-9]{1,3}|[0-9+\\- ,]{0,5}|[0-9]{20,24}", 0..4)) {
            let v = Verifier::builder(BuildWorkPro::new()).secret("whsec_k").max_body(500).build().unwrap();
            let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
            let mut h = signed_head();
            for x in &values {
                h.append(http::header::CONTENT_LENGTH, http::HeaderValue::from_str(x).unwrap());
            }
            let got = v.precheck(&crate::RequestHead::new(&m, &u, &h));
            let want = match values.first() {
                None => Ok(()),
                Some(first) if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) || values.iter().any(|x| x != first) => {
                    Err(Rejection::BodyReadFailed)
                }
                Some(first) if first.parse::<u64>().map_or(true, |n| n > 500) => Err(Rejection::BodyTooLarge { limit: 500 }),
                Some(_) => Ok(()),
            };
            proptest::prop_assert_eq!(got.map(|_| ()), want, "{:?}", values);
        }
    }

    /// A slow-drip request is answered `408` while its sender still listens, for every sender.
    #[test]
    fn the_default_read_timeout_ends_before_the_sender_stops_waiting() {
        for &p in crate::Provider::BUILT_IN {
            let scheme = crate::schemes::for_provider(p).unwrap();
            let waits = scheme.profile().timeout;
            let v = Verifier::builder_arc(scheme).secret("whsec_c2VjcmV0").build().unwrap();
            assert!(v.read_timeout() < waits, "{p:?}: {:?} vs {waits:?}", v.read_timeout());
            assert!(v.read_timeout() <= DEFAULT_READ_TIMEOUT);
        }
    }

    /// Everything a built verifier holds, comparable.
    type Settings = (
        usize,
        Option<Duration>,
        u64,
        [usize; 4],
        Duration,
        Vec<ChallengeRule>,
        Vec<String>,
        Option<String>,
        bool,
        Vec<String>,
    );

    fn settings(v: &Verifier) -> Settings {
        let i = &v.inner;
        (
            i.keys.len(),
            i.tolerance,
            i.clock.now_unix(),
            [i.max_body, i.max_header_len, i.max_signatures, i.max_challenge],
            i.read_timeout,
            i.challenges.clone(),
            i.ignore_apps.clone(),
            i.dedupe_key.as_ref().map(|k| k.text().to_owned()),
            i.retry_mismatch,
            i.ignore_users.clone(),
        )
    }

    /// A request over the limit that its head alone refuses is refused as such, not told to
    /// come back (`503 body_too_large`, whose WARN told the operator to raise the limit): a
    /// forged Procore token (`401`), an HMAC sender's request with no signature or one no
    /// sender writes (`401`/`400`). A genuine head is still `body_too_large`.
    #[test]
    fn a_request_its_head_refuses_is_refused_before_its_size() {
        let procore = Verifier::builder(crate::schemes::Procore::new())
            .secret("Bearer t")
            .max_body(100)
            .build()
            .unwrap();
        let bwp = Verifier::builder(BuildWorkPro::new())
            .secret("whsec_k")
            .max_body(100)
            .build()
            .unwrap();
        let mut procore_ok = http::HeaderMap::new();
        procore_ok.insert(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer t"));
        let mut bwp_malformed = http::HeaderMap::new();
        bwp_malformed.insert("buildworkpro-signature", http::HeaderValue::from_static("v1=zz"));
        let cases = [
            (&procore, http::HeaderMap::new(), Err(Rejection::Unauthorized)),
            (&procore, procore_ok, Err(Rejection::BodyTooLarge { limit: 100 })),
            (
                &bwp,
                http::HeaderMap::new(),
                Err(Rejection::MissingSignature("BuildWorkPro-Signature")),
            ),
            (&bwp, bwp_malformed, Err(Rejection::MalformedSignature)),
            (&bwp, signed_head(), Err(Rejection::BodyTooLarge { limit: 100 })),
        ];
        let (m, u) = (Method::POST, http::Uri::from_static("/"));
        for (v, mut h, want) in cases {
            h.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from_static("10000000"));
            assert_eq!(v.precheck(&RequestHead::new(&m, &u, &h)).map(|_| ()), want, "{h:?}");
        }
    }

    /// Every setter, once, on any builder that has them (they come from one list, so both do).
    macro_rules! every_setter {
        ($builder:expr) => {
            $builder
                .secret("s")
                .secrets(["a", "b"])
                .tolerance(Duration::from_secs(42))
                .clock(ManualClock::new(1_234))
                .max_body(1000)
                .max_header_len(100)
                .max_signatures(3)
                .max_challenge_len(50)
                .body_read_timeout(Duration::from_secs(2))
                .challenge(ChallengeRule::query(Method::POST, "validationToken"))
                .ignore_source_application("my-app")
                .dedupe_key(DedupeKey::new().header("x-hop-id").pointer("/id"))
                .allow_unsigned_key_header("X-Hop-Id")
                .retry_signature_mismatch(true)
                .ignore_source_user("42")
        };
    }

    /// `retry_signature_mismatch`: only a well-formed signature that no secret produced turns
    /// retryable; genuine deliveries still verify, malformed and missing signatures keep their
    /// answers, and the receiver answers `503` with `Retry-After: 60`.
    #[test]
    fn a_mismatch_is_answered_retryable_only_when_asked() {
        use crate::{testing, Scheme, SignParams};
        let now = 1_700_000_000;
        let verifier = |retry: bool| {
            Verifier::builder(BuildWorkPro::new())
                .secret("whsec_old")
                .clock(ManualClock::new(now))
                .retry_signature_mismatch(retry)
                .build()
                .unwrap()
        };
        let body = Bytes::from_static(br#"{"id":"evt_rot","type":"bid.accepted"}"#);
        let request = |secret: &str| {
            testing::request_parts(
                BuildWorkPro::new().sign(secret, &body, &SignParams::new(now)).unwrap(),
                "/",
            )
        };
        let verify = |v: &Verifier, headers: &http::HeaderMap| {
            let uri = http::Uri::from_static("/");
            v.verify(&RequestHead::new(&Method::POST, &uri, headers), body.clone())
        };
        let (new, _) = request("whsec_new");
        let (old, _) = request("whsec_old");
        assert_eq!(
            verify(&verifier(false), &new).unwrap_err(),
            Rejection::SignatureMismatch
        );
        assert_eq!(
            verify(&verifier(true), &new).unwrap_err(),
            Rejection::SignatureNotVerified
        );
        assert!(verify(&verifier(true), &old).is_ok());
        let mut malformed = new.clone();
        malformed.insert("buildworkpro-signature", "t=1700000000,v1=zz".parse().unwrap());
        assert_eq!(
            verify(&verifier(true), &malformed).unwrap_err(),
            Rejection::MalformedSignature
        );
        assert!(matches!(
            verify(&verifier(true), &http::HeaderMap::new()).unwrap_err(),
            Rejection::MissingSignature(_)
        ));
        let rx = Receiver::new(verifier(true));
        let uri = http::Uri::from_static("/");
        let answer =
            testing::block_on(rx.admit(&RequestHead::new(&Method::POST, &uri, &new), body.clone())).unwrap_err();
        assert_eq!(answer.status(), 503);
        assert_eq!(answer.headers()["retry-after"], "60");
        assert!(std::str::from_utf8(answer.body())
            .unwrap()
            .contains("signature_not_verified"));
    }

    #[test]
    fn both_builders_have_every_setter_and_apply_it_alike() {
        let direct = every_setter!(Verifier::builder(BuildWorkPro::new())).build().unwrap();
        let rx: Receiver = every_setter!(Receiver::builder(BuildWorkPro::new())).build().unwrap();
        let set = settings(&direct);
        assert_eq!(settings(rx.verifier()), set);
        let default = settings(&Verifier::builder(BuildWorkPro::new()).secret("s").build().unwrap());
        assert_eq!(set.0, 3, "secret + secrets");
        assert_eq!(set.1, Some(Duration::from_secs(42)));
        assert_eq!(set.2, 1_234);
        assert_eq!(set.3, [1000, 100, 3, 50]);
        assert_eq!(set.4, Duration::from_secs(2));
        assert_eq!(
            set.5.last(),
            Some(&ChallengeRule::query(Method::POST, "validationToken"))
        );
        assert_eq!(set.5.len(), default.5.len() + 1);
        assert_eq!(set.6, ["my-app"]);
        // The unsigned `x-hop-id` is accepted only because `allow_unsigned_key_header` ran.
        assert!(set.7.is_some());
        assert!(set.8 && !default.8);
        assert_eq!(set.9, ["42"]);

        let timeless = Verifier::builder(BuildWorkPro::new())
            .secret("s")
            .no_replay_window()
            .build()
            .unwrap();
        let rx: Receiver = Receiver::builder(BuildWorkPro::new())
            .secret("s")
            .no_replay_window()
            .build()
            .unwrap();
        assert_eq!((settings(&timeless).1, settings(rx.verifier()).1), (None, None));
        assert!(default.1.is_some());
    }
}
