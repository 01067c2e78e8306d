//! HCSS (HeavyBid Pre-Construction, Setups, HeavyJob): challenge echo and shared-secret checks.

use std::sync::Arc;

use http::{HeaderName, Method};

use crate::json_struct::json_struct;
use crate::observe::KillSwitch;
use crate::profile::{q, rfc3339, secs, HeaderId, Permanent, RetrySchedule, SenderProfile};
use crate::{
    Authenticated, ChallengeRule, ConfigError, Context, DedupePolicy, DedupeScope, Described, Key, Provider, Rejection,
    RequestHead, Scheme, SignParams, Signed,
};

/// How HCSS POSTs are authenticated.
///
/// HCSS says it hashes the payload with the subscription's `secretKey` into a header, but
/// neither the header nor the algorithm is public. Until it is, authenticate with a secret
/// you control: a token in the callback URL, or a shared header; or plug in your own scheme.
///
/// ```
/// use hookguard_core::schemes::{Hcss, HcssAuth};
/// assert!(matches!(Hcss::new().auth(), HcssAuth::QueryToken("token")));
/// let by_header = Hcss::header(http::HeaderName::from_static("x-hcss-token"));
/// assert!(matches!(by_header.auth(), HcssAuth::Header(h) if h == "x-hcss-token"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum HcssAuth {
    /// A token in the callback URL's query, e.g. `https://you.example/hooks/hcss?token=…`.
    QueryToken(&'static str),
    /// A header whose value must be one of the secrets.
    Header(HeaderName),
    /// Another scheme authenticates (its keys come from the same secrets).
    Scheme(Arc<dyn Scheme>),
}

/// HCSS's scheme: answers `GET ?challenge=` with the value, authenticates POSTs with
/// [`HcssAuth`], and — since HCSS sends no event id — derives the dedupe key from a SHA-256
/// digest of the body: a retry of the same event carries the same bytes.
///
/// Pre-Construction events carry a `date`, so their digest identifies one event and is
/// remembered for the retention. Setups and HeavyJob bodies carry no id and no time: a second
/// genuine edit of the same employee is byte-identical to the first, so for those (and any
/// shape without `date`) copies coalesce only while one is in flight
/// ([`DedupeScope::WhileInFlight`](crate::DedupeScope): inline, a copy during the handler is
/// answered `429` and retried; in an inbox, only while the first is pending); an identical
/// body once the first's handler started is handled again.
///
/// ```
/// use hookguard_core::{schemes::Hcss, Verifier, RequestHead};
/// let v = Verifier::builder(Hcss::new()).secret("tok").build().unwrap();
/// let (m, u, h) = (http::Method::POST, http::Uri::from_static("/hooks?token=tok"), http::HeaderMap::new());
/// let body = br#"{"companyId":"c","eventType":"EmployeeUpdated","businessUnitId":"b","id":"e"}"#;
/// let out = v.verify(&RequestHead::new(&m, &u, &h), bytes::Bytes::from_static(body)).unwrap();
/// assert_eq!(out.delivery().unwrap().event_type(), Some("EmployeeUpdated"));
/// ```
#[derive(Debug, Clone)]
pub struct Hcss {
    auth: HcssAuth,
    /// Whether a dated (Pre-Construction) body's digest is remembered for the retention.
    remember_dated: bool,
    /// Whether a raw `+` in the challenge is a space ([`Hcss::challenge_plus_is_space`]).
    challenge_plus_is_space: bool,
}

impl Default for Hcss {
    fn default() -> Self {
        Self {
            auth: HcssAuth::QueryToken("token"),
            remember_dated: true,
            challenge_plus_is_space: false,
        }
    }
}

impl Hcss {
    /// Authenticates with the URL query parameter `token`.
    ///
    /// ```
    /// use hookguard_core::{schemes::Hcss, testing, DedupeScope, Provider};
    /// let body = br#"{"companyId":"c","eventType":"EmployeeUpdated","businessUnitId":"b","id":"e"}"#;
    /// let d = testing::deliver(Hcss::new(), "tok", body).unwrap();
    /// assert_eq!(d.provider(), Provider::Hcss);
    /// // No id and no time in a Setups body: copies coalesce only while one is in flight.
    /// assert_eq!(d.dedupe_scope(), DedupeScope::WhileInFlight);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Authenticates with another URL query parameter.
    ///
    /// ```
    /// let _ = hookguard_core::schemes::Hcss::query_token("key");
    /// ```
    pub fn query_token(param: &'static str) -> Self {
        Self {
            auth: HcssAuth::QueryToken(param),
            ..Self::default()
        }
    }

    /// Authenticates with a shared header.
    ///
    /// ```
    /// let _ = hookguard_core::schemes::Hcss::header(http::HeaderName::from_static("x-hcss-token"));
    /// ```
    pub fn header(name: HeaderName) -> Self {
        Self {
            auth: HcssAuth::Header(name),
            ..Self::default()
        }
    }

    /// Authenticates with a user-supplied scheme (for HCSS's own signature, once documented).
    ///
    /// ```
    /// use std::sync::Arc;
    /// let _ = hookguard_core::schemes::Hcss::with_scheme(Arc::new(hookguard_core::schemes::GitHub::new()));
    /// ```
    pub fn with_scheme(scheme: Arc<dyn Scheme>) -> Self {
        Self {
            auth: HcssAuth::Scheme(scheme),
            ..Self::default()
        }
    }

    /// How POSTs are authenticated.
    ///
    /// ```
    /// use hookguard_core::schemes::{Hcss, HcssAuth};
    /// assert!(matches!(Hcss::query_token("key").auth(), HcssAuth::QueryToken("key")));
    /// ```
    pub fn auth(&self) -> &HcssAuth {
        &self.auth
    }

    /// Recognises copies of Pre-Construction events, too, only while one is in flight (as
    /// Setups and HeavyJob bodies always are), instead of remembering their digest for the
    /// retention. Their `date` has whole seconds: two changes of one project within a second
    /// (a bulk edit, an import) are byte-identical, and by default the second is answered
    /// `duplicate`. HCSS's events are notices to fetch the project again, so handling a late
    /// copy twice costs a fetch; use this where a missed notice would cost more.
    ///
    /// ```
    /// use hookguard_core::{schemes::Hcss, DedupePolicy, Scheme};
    /// assert_eq!(Hcss::new().coalesce_in_flight_only().dedupe_policy(), DedupePolicy::BodyDigestWhileInFlight);
    /// ```
    pub fn coalesce_in_flight_only(mut self) -> Self {
        self.remember_dated = false;
        self
    }

    /// Decodes a raw `+` in the challenge as a space (form encoding). By default it stays `+`:
    /// HCSS asks for "the exact value of the challenge query parameter" and does not say how
    /// it encodes it; a value holding `+` (base64) appended to the URL as it is — HCSS already
    /// appends `?challenge=` to a callback URL without looking at its query — would otherwise
    /// be echoed with a space, and the subscription never created. A value holding spaces
    /// sent as `+` needs this. `%2B` is `+` and `%20` a space either way.
    ///
    /// ```
    /// use hookguard_core::{schemes::Hcss, Scheme};
    /// assert!(!Hcss::new().challenges()[0].plus_is_space);
    /// assert!(Hcss::new().challenge_plus_is_space().challenges()[0].plus_is_space);
    /// ```
    pub fn challenge_plus_is_space(mut self) -> Self {
        self.challenge_plus_is_space = true;
        self
    }
}

struct Probe {
    event_type: Option<String>,
    date: Option<serde::de::IgnoredAny>,
}

json_struct! {
    Deserialize for Probe {
        event_type: "eventType" (default),
        date: "date" (default),
    }
}

impl Scheme for Hcss {
    fn provider(&self) -> Provider {
        Provider::Hcss
    }

    fn profile(&self) -> SenderProfile {
        SenderProfile {
            name: "HCSS",
            // HCSS publishes no timeout: assumed 10 s.
            timeout: secs(10),
            timeout_assumed: true,
            // "5 tries with exponential backoff"; intervals unpublished: assumed 1, 2, 4, 8 s.
            schedule: RetrySchedule::Fixed(const { &[secs(1), secs(2), secs(4), secs(8)] }),
            schedule_doc: "5 tries with exponential backoff (HCSS publishes no intervals: assumed 1, 2, 4, 8 s); \
                           then the subscription is Stopped",
            retry_note: " (5 failed tries stop the subscription)",
            permanent: Permanent::Never,
            give_up: "5 tries failed: HCSS marks the subscription Stopped; only re-subscribing revives it",
            kill_switch: Some(
                KillSwitch::new(
                    5,
                    "stops this subscription after 5 failed tries",
                    "the subscription is probably stopped: re-subscribe",
                )
                .per_event(),
            ),
            // Setups: four entities × created/updated/deleted; HeavyJob: cost codes.
            event_types: &[
                "EmployeeUpdated",
                "EmployeeCreated",
                "EmployeeDeleted",
                "EquipmentCreated",
                "EquipmentUpdated",
                "EquipmentDeleted",
                "LocationCreated",
                "LocationUpdated",
                "LocationDeleted",
                "BusinessUnitCreated",
                "BusinessUnitUpdated",
                "BusinessUnitDeleted",
                "CostCodeCreated",
                "CostCodeUpdated",
                "CostCodeDeleted",
                "ProjectCreated",
                "ProjectChanged",
                "ProjectDeleted",
                "SchemaChanged",
            ],
            header_id: HeaderId::None,
            header_type: None,
            sample: |rng, kind, now| {
                let kind = kind.unwrap_or("EmployeeUpdated");
                if kind.starts_with("Project") || kind == "SchemaChanged" {
                    // Pre-Construction shape: carries a date.
                    format!(
                        r#"{{"eventSource":"HeavyBid Pre-Construction","eventType":{},"version":"1","date":{},"data":{{"companyId":"{}","businessUnitId":"{}","projectId":"{}"}}}}"#,
                        q(kind),
                        // As HCSS's document shows it: whole seconds, no fraction.
                        q(&rfc3339(now, 0).replace(".000Z", "Z")),
                        rng.guid(),
                        rng.guid(),
                        rng.guid()
                    )
                    .into_bytes()
                } else if kind.starts_with("CostCode") {
                    // HeavyJob shape: a job and a cost code, no event id, no time.
                    format!(
                        r#"{{"companyId":"{}","eventType":{},"jobId":"{}","costCodeId":"{}"}}"#,
                        rng.guid(),
                        q(kind),
                        rng.guid(),
                        rng.guid()
                    )
                    .into_bytes()
                } else {
                    // Setups shape: no event id and no time at all.
                    format!(
                        r#"{{"companyId":"{}","eventType":{},"businessUnitId":"{}","id":"{}"}}"#,
                        rng.guid(),
                        q(kind),
                        rng.guid(),
                        rng.guid()
                    )
                    .into_bytes()
                }
            },
        }
    }

    fn key(&self, secret: &str) -> Result<Key, &'static str> {
        match &self.auth {
            HcssAuth::Scheme(s) => s.key(secret),
            HcssAuth::Header(_) => {
                super::header_token_problem(secret).map_or_else(|| Ok(Key::token(secret.as_bytes())), Err)
            }
            _ if secret.is_empty() => Err("empty token"),
            _ => Ok(Key::token(secret.as_bytes())),
        }
    }

    fn has_timestamp(&self) -> bool {
        matches!(&self.auth, HcssAuth::Scheme(s) if s.has_timestamp())
    }

    fn dedupe_policy(&self) -> DedupePolicy {
        if self.remember_dated {
            DedupePolicy::BodyDigestRetainedIfDated
        } else {
            DedupePolicy::BodyDigestWhileInFlight
        }
    }

    fn authenticates_head_only(&self) -> bool {
        !matches!(&self.auth, HcssAuth::Scheme(_))
    }

    /// A wrapped scheme's signed headers are signed here too (a review's finding: HCSS over
    /// Standard Webhooks could not key on `webhook-id` without allowing it as unsigned).
    fn signed_headers(&self) -> &[HeaderName] {
        match &self.auth {
            HcssAuth::Scheme(s) => s.signed_headers(),
            _ => &[],
        }
    }

    fn key_header<'h>(&self, head: &RequestHead<'h>, name: &HeaderName) -> Option<&'h http::HeaderValue> {
        match &self.auth {
            HcssAuth::Scheme(s) => s.key_header(head, name),
            _ => head.headers.get(name),
        }
    }

    fn credential_header(&self) -> Option<&HeaderName> {
        match &self.auth {
            HcssAuth::Header(name) => Some(name),
            HcssAuth::Scheme(s) => s.credential_header(),
            HcssAuth::QueryToken(_) => None,
        }
    }

    fn challenges(&self) -> Vec<ChallengeRule> {
        let rule = ChallengeRule::query(Method::GET, "challenge");
        vec![if self.challenge_plus_is_space {
            rule
        } else {
            rule.plus_literal()
        }]
    }

    fn authenticate(&self, req: &RequestHead<'_>, body: &[u8], ctx: &Context<'_>) -> Result<Authenticated, Rejection> {
        match &self.auth {
            HcssAuth::QueryToken(param) => {
                let token = crate::challenge::query_token(req.uri, param, ctx.max_header_len)
                    .map_err(|_| Rejection::Unauthorized)?;
                super::token_check(ctx.keys(), token.as_deref())?;
                Ok(Authenticated::default())
            }
            HcssAuth::Header(name) => {
                super::header_token(req, ctx, name, "hcss token header")?;
                Ok(Authenticated::default())
            }
            HcssAuth::Scheme(s) => s.authenticate(req, body, ctx),
        }
    }

    fn describe(&self, _req: &RequestHead<'_>, body: &[u8]) -> Result<Described, Rejection> {
        // Whether the body carries `date` is unknown when it does not parse: copies then
        // coalesce only while in flight (a genuine later edit is never taken for a copy).
        let p: Probe = match super::json_or_digest(body, DedupeScope::WhileInFlight)? {
            Ok(p) => p,
            Err(described) => return Ok(described),
        };
        let scope = if p.date.is_some() && self.remember_dated {
            DedupeScope::Retained
        } else {
            DedupeScope::WhileInFlight
        };
        Ok(Described {
            event_type: p.event_type,
            dedupe_key: Some(super::body_digest(body)),
            dedupe_scope: scope,
            ..Described::default()
        })
    }

    fn sign(&self, secret: &str, body: &[u8], params: &SignParams) -> Result<Signed, ConfigError> {
        match &self.auth {
            HcssAuth::QueryToken(param) => Ok(Signed {
                headers: vec![],
                query: Some(((*param).to_owned(), secret.to_owned())),
            }),
            HcssAuth::Header(name) => {
                let mut v = http::HeaderValue::from_str(secret)
                    .map_err(|_| ConfigError::Invalid("value is not valid header text"))?;
                // The token itself: never shown by `Debug`.
                v.set_sensitive(true);
                Ok(Signed {
                    headers: vec![(name.clone(), v)],
                    query: None,
                })
            }
            HcssAuth::Scheme(s) => s.sign(secret, body, params),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A URL token with characters a URL gives meaning to (`&`, `=`, `%`, `/`, `?`, a space,
    /// `+`) survives the test helpers' request: `request_parts` encodes it (it was appended raw:
    /// `401` for genuine tokens, a panic for a space).
    #[test]
    fn test_requests_carry_any_url_token_intact() {
        for token in ["a%41b", "a&b=c", "a/b?c", "a b", "ab+c/d==", "tok"] {
            let d = crate::testing::deliver_bytes(Hcss::new(), token, r#"{"eventType":"x"}"#);
            assert!(d.is_ok(), "{token}: {d:?}");
        }
    }

    /// A URL token given twice was judged by its first value alone (an operator's tryout:
    /// `?token=GOOD&token=x` passed, `?token=x&token=GOOD` did not): a proxy or log reading the
    /// other would disagree with the receiver. Refused `401`, as a doubled token header is.
    #[test]
    fn a_url_token_given_twice_is_refused() {
        use crate::{Rejection, Verifier};
        let v = Verifier::builder(Hcss::new()).secret("good").build().unwrap();
        let verify = |uri: &'static str| {
            let (m, u, h) = (http::Method::POST, http::Uri::from_static(uri), http::HeaderMap::new());
            v.verify(
                &RequestHead::new(&m, &u, &h),
                bytes::Bytes::from_static(br#"{"eventType":"x"}"#),
            )
            .map(drop)
        };
        assert_eq!(verify("/h?token=good"), Ok(()));
        for twice in [
            "/h?token=good&token=x",
            "/h?token=x&token=good",
            "/h?token=good&token=good",
        ] {
            assert_eq!(verify(twice), Err(Rejection::Unauthorized), "{twice}");
        }
    }

    /// What `sign` returns for a token mode holds the token itself: its `Debug` (a caller's
    /// `tracing::debug!(?signed)`) shows neither the URL token nor the header's, while the
    /// values themselves are the token.
    #[test]
    fn a_signed_token_is_never_shown_by_debug() {
        let p = SignParams::new(1);
        let q = Hcss::query_token("token").sign("t0ken-q", b"{}", &p).unwrap();
        assert_eq!(q.query, Some(("token".to_owned(), "t0ken-q".to_owned())));
        let h = Hcss::header(HeaderName::from_static("x-hcss-token"))
            .sign("t0ken-h", b"{}", &p)
            .unwrap();
        assert_eq!(h.headers[0].1, "t0ken-h");
        for (signed, token) in [(q, "t0ken-q"), (h, "t0ken-h")] {
            let shown = format!("{signed:?}");
            assert!(!shown.contains(token) && shown.contains("Signed"), "{shown}");
        }
    }

    /// HCSS over another scheme signs what that scheme signs: a dedupe key on Standard
    /// Webhooks' `webhook-id` is accepted (it was refused as unsigned), and read as the
    /// wrapped scheme reads it (from `svix-id` too).
    #[test]
    fn a_wrapped_schemes_signed_headers_are_signed_here() {
        use crate::schemes::StandardWebhooks;
        use crate::{DedupeKey, Verifier};
        let wrapped = Hcss::with_scheme(Arc::new(StandardWebhooks::new()));
        assert_eq!(wrapped.signed_headers(), StandardWebhooks::new().signed_headers());
        let mut h = http::HeaderMap::new();
        h.insert("svix-id", http::HeaderValue::from_static("msg_1"));
        let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
        let id = HeaderName::from_static("webhook-id");
        assert_eq!(wrapped.key_header(&RequestHead::new(&m, &u, &h), &id).unwrap(), "msg_1");
        let key = DedupeKey::new().header("webhook-id");
        assert!(Verifier::builder(wrapped)
            .secret("whsec_c2VjcmV0")
            .dedupe_key(key.clone())
            .build()
            .is_ok());
        assert!(Hcss::new().signed_headers().is_empty());
        assert!(Verifier::builder(Hcss::new())
            .secret("t")
            .dedupe_key(key)
            .build()
            .is_err());
    }

    /// A dated (Pre-Construction) body's digest is remembered by default, and only coalesces
    /// copies in flight with `coalesce_in_flight_only`; an undated body only coalesces either
    /// way.
    #[test]
    fn dated_bodies_are_remembered_unless_told_otherwise() {
        let head = |uri| (http::Method::POST, http::Uri::from_static(uri), http::HeaderMap::new());
        let (m, u, h) = head("/");
        let dated = br#"{"eventSource":"HeavyBid Pre-Construction","eventType":"ProjectChanged","version":"1","date":"2019-09-10T16:12:29Z","data":{"companyId":"c","businessUnitId":"b","projectId":"p"}}"#;
        let undated = br#"{"companyId":"c","eventType":"EmployeeUpdated","businessUnitId":"b","id":"e"}"#;
        let scope = |s: &Hcss, body: &[u8]| s.describe(&RequestHead::new(&m, &u, &h), body).unwrap().dedupe_scope;
        assert_eq!(scope(&Hcss::new(), dated), DedupeScope::Retained);
        assert_eq!(
            scope(&Hcss::new().coalesce_in_flight_only(), dated),
            DedupeScope::WhileInFlight
        );
        for s in [Hcss::new(), Hcss::new().coalesce_in_flight_only()] {
            assert_eq!(scope(&s, undated), DedupeScope::WhileInFlight);
        }
    }

    /// The challenge is echoed exactly: a raw `+` (a base64 value appended as it is) stays
    /// `+` by default (it was echoed as a space: HCSS's check failed and the subscription was
    /// never created); form decoding on request; escapes decoded either way.
    #[test]
    fn a_raw_plus_in_the_challenge_is_echoed_as_sent() {
        use crate::{Precheck, Verifier};
        let echo = |scheme: Hcss, uri: &'static str| {
            let v = Verifier::builder(scheme).secret("tok").build().unwrap();
            let (m, u, h) = (http::Method::GET, http::Uri::from_static(uri), http::HeaderMap::new());
            match v.precheck(&RequestHead::new(&m, &u, &h)).unwrap() {
                Precheck::Challenge(a) => a.value().clone(),
                other => panic!("{other:?}"),
            }
        };
        let raw = "/hooks?token=tok?challenge=q+8/Zw==";
        assert_eq!(echo(Hcss::new(), raw).as_ref(), b"q+8/Zw==");
        assert_eq!(echo(Hcss::new().challenge_plus_is_space(), raw).as_ref(), b"q 8/Zw==");
        for scheme in [Hcss::new(), Hcss::new().challenge_plus_is_space()] {
            assert_eq!(echo(scheme.clone(), "/hooks?challenge=q%2B8%20Z").as_ref(), b"q+8 Z");
        }
    }
}
