//! One type per sender. Adding a sender is one file here and one row in the README's table.
//!
//! | type | header(s) | key | window |
//! |---|---|---|---|
//! | [`BuildWorkPro`] | `BuildWorkPro-Signature: t=…,v1=<hex>` | secret string incl. `whsec_` | ±300 s |
//! | [`Procore`] | configured header (default `Authorization`), constant-time | accepted values | none |
//! | [`Hcss`] | `GET ?challenge=` echo; URL token, shared header or a plugged-in scheme | accepted values | none |
//! | [`StandardWebhooks`] | `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<b64> …` | `whsec_` base64, decoded | ±300 s |
//! | [`Stripe`] | `Stripe-Signature: t=…,v1=…[,v1=…]` | secret string | ±300 s |
//! | [`GitHub`] | `X-Hub-Signature-256: sha256=<hex>` | secret string | none |
//! | [`Slack`] | `X-Slack-Signature: v0=<hex>`, `X-Slack-Request-Timestamp` | secret string | ±300 s |
//! | [`Aps`] | `x-adsk-signature: sha1hash=<hex HMAC-SHA1>` | the hook's secret token | none |
//!
//! ```
//! use hookguard_core::{schemes::BuildWorkPro, testing, RequestHead, Scheme, SignParams, Verdict, Verifier};
//! // Sign as the sender does, verify as the receiver does.
//! let body = bytes::Bytes::from_static(br#"{"id":"evt_1","type":"bid.accepted"}"#);
//! let signed = BuildWorkPro::new().sign("whsec_k", &body, &SignParams::now()).unwrap();
//! let (headers, uri) = testing::request_parts(signed, "/hooks");
//! let verifier = Verifier::builder(BuildWorkPro::new()).secret("whsec_k").build().unwrap();
//! let verdict = verifier.verify(&RequestHead::new(&http::Method::POST, &uri, &headers), body).unwrap();
//! assert!(matches!(verdict, Verdict::Deliver(d) if d.event_id() == Some("evt_1")));
//! ```

mod aps;
mod buildworkpro;
mod github;
mod hcss;
mod procore;
mod slack;
mod standard;
mod stripe;
mod timestamp_v1;

pub use aps::Aps;
pub use buildworkpro::BuildWorkPro;
pub use github::GitHub;
pub use hcss::{Hcss, HcssAuth};
pub use procore::Procore;
pub use slack::Slack;
pub use standard::StandardWebhooks;
pub use stripe::Stripe;

use serde::{Deserialize, Deserializer};

use crate::Rejection;

pub use crate::provider::for_provider;

/// Checks a shared token against every accepted value (constant time, no early exit).
pub(crate) fn token_check(keys: &[crate::Key], presented: Option<&[u8]>) -> Result<(), Rejection> {
    let presented = presented.ok_or(Rejection::Unauthorized)?;
    let ok = keys.iter().fold(false, |ok, k| ok | k.token_matches(presented));
    if ok {
        Ok(())
    } else {
        Err(Rejection::Unauthorized)
    }
}

/// Checks a shared token sent in header `name` (bounded; `label` names it in a rejection).
pub(crate) fn header_token(
    req: &crate::RequestHead<'_>,
    ctx: &crate::Context<'_>,
    name: &http::HeaderName,
    label: &'static str,
) -> Result<(), Rejection> {
    // The raw bytes: a token with non-ASCII characters arrives as their UTF-8 bytes, which
    // `to_str` (visible ASCII only) would read as no header at all.
    let mut values = req.headers.get_all(name).iter();
    let presented = match values.next() {
        Some(v) if v.len() <= ctx.max_header_len => Some(v.as_bytes()),
        Some(_) => return Err(Rejection::HeaderTooLarge(label)),
        None => None,
    };
    // Given twice, which one counts is ambiguous (a proxy that adds its own `Authorization`,
    // a log reading the other): no sender sends two, so neither is taken.
    if values.next().is_some() {
        return Err(Rejection::Unauthorized);
    }
    token_check(ctx.keys(), presented)
}

/// Parses a JSON body into a small probe struct. A body that is not JSON at all is the
/// sender's mistake (`invalid_payload`, 400); JSON our probe cannot read is a gap in our model
/// (`unexpected_payload`, 500, retryable).
pub(crate) fn json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Rejection> {
    crate::json_fast::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            // Where, not what: serde_json's message quotes the body's value (a name, an
            // address), which stays out of the logs.
            tracing::error!(
                line = e.line(),
                column = e.column(),
                "verified webhook body does not match the sender's documented shape (see the body at this line and column)"
            );
            Rejection::UnexpectedPayload {
                detail: "the sender's JSON does not have the documented shape".into(),
            }
        }
        _ => Rejection::InvalidPayload("body is not JSON"),
    })
}

/// [`json`] that never refuses authentic JSON: JSON the probe cannot read (fields of other
/// types than documented where the probe is strict, or no object at all) is described by the
/// body's digest alone (`scope`), the error logged by [`json`], instead of a `500` that the
/// sender counts toward its kill switch (HCSS stops the subscription after 5 tries, seconds
/// apart; Procore pauses every delivery to the endpoint) and that every retry of the same bytes
/// would get. The delivery is authentic; the handler (or the inbox's worker) still sees it and
/// its typed parse fails there, on our side. Not JSON at all is still the sender's mistake
/// (`invalid_payload`).
pub(crate) fn json_or_digest<'a, T: Deserialize<'a>>(
    body: &'a [u8],
    scope: crate::DedupeScope,
) -> Result<Result<T, crate::Described>, Rejection> {
    let body = crate::json_fast::without_bom(body);
    // Every sender posts one object: a probe reads objects only (serde would read a struct
    // from an array by position, keying `[1,2]` as `1`).
    // JSON at all, strings left undecoded (serde_json never decodes a string it skips).
    let is_json = || serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
    let unreadable = || Err(Rejection::UnexpectedPayload { detail: String::new() });
    let parsed = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => match json(body) {
            // JSON whose strings are not all UTF-8 is read by the probe or not depending on
            // which field holds the bytes. Authentic, and JSON in every other respect: a `400`
            // for some fields only would make APS and HCSS disable the endpoint over the same
            // bytes every retry brings. Keyed by digest.
            Err(Rejection::InvalidPayload(_)) if is_json() => {
                tracing::error!("verified webhook body is JSON with a string that is not UTF-8");
                unreadable()
            }
            parsed => parsed,
        },
        _ if is_json() => {
            tracing::error!("verified webhook body is JSON but not an object, as the sender documents");
            unreadable()
        }
        _ => Err(Rejection::InvalidPayload("body is not JSON")),
    };
    match parsed {
        Ok(p) => Ok(Ok(p)),
        Err(Rejection::UnexpectedPayload { .. }) => Ok(Err(crate::Described {
            dedupe_key: Some(body_digest(body)),
            dedupe_scope: scope,
            ..crate::Described::default()
        })),
        Err(e) => Err(e),
    }
}

/// A dedupe key from signed content: 128 bits of the body's SHA-256 (collisions need 2^64
/// deliveries), prefixed so it can never equal a sender's own id.
pub(crate) fn body_digest(body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(body);
    format!("sha256:{}", crate::wire::hex_encode(&digest[..16]))
}

/// The longest event id kept.
pub(crate) const MAX_ID_LEN: usize = 256;

/// Whether a sender's id (or event type) read from its body is kept: bounded, and free of
/// ASCII control characters (an inbox row, a log line, an `--exec` environment variable,
/// PostgreSQL's text: none takes a NUL). Ids from headers cannot hold a NUL (a tab stays).
pub(crate) fn usable_id(v: &str) -> bool {
    v.len() <= MAX_ID_LEN && !has_control(v)
}

/// Whether a sender's event type is kept: as [`usable_id`], within [`MAX_TYPE_LEN`].
pub(crate) fn usable_type(t: &str) -> bool {
    t.len() <= MAX_TYPE_LEN && !has_control(t)
}

/// Whether `v` holds an ASCII control character (a byte scan: no UTF-8 decoding per request).
fn has_control(v: &str) -> bool {
    v.bytes().any(|b| b < 0x20 || b == 0x7f)
}

/// The longest event type kept (every sender's are short names): a longer one is not kept,
/// as an over-long id is not, so what a delivery carries around (inbox rows, the inspector's
/// lists, log lines) stays bounded.
pub(crate) const MAX_TYPE_LEN: usize = 256;

/// An id sent as a JSON string or integer, kept as the exact digits or text.
/// Floats are refused: an id like `5982324300946918154` must never pass through `f64`.
pub(crate) fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_option(IdVisitor::<false>)
}

/// As [`OptId`], but any other JSON value (a float, a boolean, an object, an array) is no id
/// rather than a body our model cannot read — a field of another type than documented must
/// not turn every delivery into a `500`. A float is never read through `f64` (an id like
/// `5982324300946918154` would lose digits): it is no id, and where the id keys deliveries the
/// scheme falls back to another field or the body's digest.
pub(crate) struct LenientId(pub(crate) Option<String>);

impl<'de> Deserialize<'de> for LenientId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_option(IdVisitor::<true>).map(LenientId)
    }
}

/// Reads an id: a string or an integer (null: none). Any other value is refused, or with
/// `LENIENT` read as no id.
struct IdVisitor<const LENIENT: bool>;

impl<const LENIENT: bool> IdVisitor<LENIENT> {
    fn other<E: serde::de::Error>(self, what: serde::de::Unexpected<'_>) -> Result<Option<String>, E> {
        if LENIENT {
            Ok(None)
        } else {
            Err(E::invalid_type(what, &self))
        }
    }
}

impl<'de, const LENIENT: bool> serde::de::Visitor<'de> for IdVisitor<LENIENT> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an id (string or integer)")
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        // An id longer than any sender sends is not kept (bounded memory and keys), nor one
        // holding a control character (PostgreSQL's text refuses NUL: such a delivery could
        // never be stored); the delivery is then recognised by a digest of its body, never
        // refused.
        Ok(usable_id(v).then(|| v.to_owned()))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.other(serde::de::Unexpected::Float(v))
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.other(serde::de::Unexpected::Bool(v))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if !LENIENT {
            return self.other(serde::de::Unexpected::Seq);
        }
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if !LENIENT {
            return self.other(serde::de::Unexpected::Map);
        }
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(None)
    }
}

/// The visitor methods of a lenient field for the JSON values it does not read: `null` and
/// every scalar are no value, an array is skipped whole (the visitor reads strings or maps
/// itself, and skips the other of the two).
macro_rules! lenient_arms {
    ($de:lifetime) => {
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<$de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: serde::de::SeqAccess<$de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    };
}

/// A text field a probe reads only to describe a delivery (its type, a ULID beside the id):
/// a string, or no value when the sender put anything else there. An authentic delivery must
/// not be refused for a field we merely look at: Procore documents that `reason` "may hold
/// values beyond create/update/delete", and a `500` pauses every delivery to the endpoint.
pub(crate) struct LenientStr(pub(crate) Option<String>);

impl<'de> Deserialize<'de> for LenientStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Option<String>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Some(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Some(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(None)
            }
            lenient_arms!('de);
        }
        d.deserialize_option(V).map(LenientStr)
    }
}

/// An object a probe reads only to describe or filter a delivery (Procore's `metadata`): read
/// as `T` when it is an object, no value when it is anything else (see [`LenientStr`]).
pub(crate) struct LenientObj<T>(pub(crate) Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LenientObj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = Option<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(None)
            }
            lenient_arms!('de);
        }
        d.deserialize_option(V(std::marker::PhantomData)).map(LenientObj)
    }
}

/// [`opt_id`] as a type, for `json_struct!`'s `with` (what `deserialize_with = "opt_id"` was).
pub(crate) struct OptId(pub(crate) Option<String>);

impl<'de> Deserialize<'de> for OptId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        opt_id(d).map(OptId)
    }
}

/// Refuses ids that are empty, over-long or hold a control character ([`usable_id`]).
pub(crate) fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty() && usable_id(s))
}

/// Why a secret can never equal a header value as a receiver reads it, if it cannot: HTTP
/// carries no control characters in a header (a newline, a NUL), and drops the whitespace
/// around a value. Such a token would refuse every genuine delivery (`401`, towards the
/// sender's kill switch), so it is refused at configuration. (A token longer than the
/// verifier's header bound, answered `431`, is refused by the verifier's build, which knows
/// the bound.)
pub(crate) fn header_token_problem(secret: &str) -> Option<&'static str> {
    if secret.is_empty() {
        return Some("empty header value");
    }
    if secret.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Some("a control character (such as a newline) cannot be in a header value");
    }
    if secret.starts_with([' ', '\t']) || secret.ends_with([' ', '\t']) {
        return Some("whitespace around a header value is dropped in transit");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sender's JSON with a leading UTF-8 byte order mark (RFC 8259 forbids adding one and
    /// lets readers ignore it) is read as without it: the same event id and type, and the
    /// typed parse works. It was `400 invalid_payload` — for a genuine delivery, permanent
    /// for most senders and a failed try toward HCSS's stopping the subscription. The body
    /// handed on keeps its bytes.
    #[test]
    fn a_leading_byte_order_mark_is_ignored_by_every_json_read() {
        use crate::profile::SampleRng;
        use crate::Provider;
        let secrets = [
            (Provider::BuildWorkPro, "whsec_k"),
            (Provider::Procore, "Bearer t"),
            (Provider::Hcss, "t"),
            (Provider::GitHub, "s"),
            (Provider::Stripe, "whsec_s"),
            (Provider::Slack, "s"),
            (Provider::StandardWebhooks, "whsec_c2VjcmV0"),
            (Provider::Aps, "s"),
        ];
        assert_eq!(secrets.len(), Provider::BUILT_IN.len());
        let mut rng = SampleRng::new(9);
        for (p, secret) in secrets {
            let scheme = for_provider(p).unwrap();
            let plain = (scheme.profile().sample)(&mut rng, None, 1_700_000_000);
            let mut marked = b"\xEF\xBB\xBF".to_vec();
            marked.extend_from_slice(&plain);
            let want = crate::testing::deliver_arc(scheme.clone(), secret, plain.into()).unwrap();
            let got = crate::testing::deliver_arc(scheme, secret, marked.clone().into())
                .unwrap_or_else(|r| panic!("{p}: {r:?}"));
            assert_eq!(got.event_id(), want.event_id(), "{p}");
            assert_eq!(got.event_type(), want.event_type(), "{p}");
            assert_eq!(got.body().as_ref(), &marked[..], "{p}");
            let v = got.json::<serde_json::Value>().unwrap();
            assert_eq!(v, want.json::<serde_json::Value>().unwrap(), "{p}");
        }
    }

    struct P {
        id: Option<String>,
    }

    crate::json_struct::json_struct! { Deserialize for P { id: "id" (default, with OptId) } }

    #[test]
    fn ids_keep_full_precision() {
        let p: P = serde_json::from_str(r#"{"id":5982324300946918154}"#).unwrap();
        assert_eq!(p.id.as_deref(), Some("5982324300946918154"));
        let p: P = serde_json::from_str(r#"{"id":"01EDPD2J6SBY1163N77H95GW09"}"#).unwrap();
        assert_eq!(p.id.as_deref(), Some("01EDPD2J6SBY1163N77H95GW09"));
        let p: P = serde_json::from_str(r#"{"id":null}"#).unwrap();
        assert_eq!(p.id, None);
        let p: P = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!(p.id, None);
        assert!(serde_json::from_str::<P>(r#"{"id":1.5}"#).is_err());
        let long = format!(r#"{{"id":"{}"}}"#, "x".repeat(MAX_ID_LEN + 1));
        assert_eq!(serde_json::from_str::<P>(&long).unwrap().id, None);
    }

    /// An id or event type holding a control character (a NUL, which PostgreSQL's text
    /// refuses, so such a delivery could never be stored there) is not kept: the delivery is
    /// recognised by its body's digest instead, never refused.
    #[test]
    fn ids_with_control_characters_are_not_kept() {
        let p: P = serde_json::from_str(r#"{"id":"a\u0000b"}"#).unwrap();
        assert_eq!(p.id, None);
        let d = crate::testing::deliver_bytes(
            BuildWorkPro::new(),
            "whsec_k",
            r#"{"id":"evt_\u0000","type":"bid.\u0001accepted"}"#,
        )
        .unwrap();
        assert_eq!((d.event_id(), d.event_type()), (None, None));
        assert!(
            d.dedupe_key().unwrap().starts_with("buildworkpro:sha256:"),
            "{:?}",
            d.dedupe_key()
        );
    }

    /// A signature, timestamp or signed id header given twice is refused `repeated_header`
    /// whichever value comes first, for every sender that signs: judged by the first value, a
    /// genuine delivery passed with the junk copy after it and failed `401` with it before
    /// (BuildWorkPro never retries a 401; a third party's conformance tryout).
    #[cfg(feature = "testing")]
    #[test]
    fn a_signed_header_given_twice_is_refused_whatever_the_order() {
        use crate::{clock::ManualClock, RequestHead, Scheme, SignParams, Verifier};
        const NOW: u64 = 1_700_000_000;
        let body = br#"{"id":"evt_1","type":"x","event_id":"Ev1"}"#;
        let schemes: Vec<(std::sync::Arc<dyn Scheme>, &str, &[&str])> = vec![
            (
                std::sync::Arc::new(BuildWorkPro::new()),
                "whsec_k",
                &["buildworkpro-signature"],
            ),
            (std::sync::Arc::new(Stripe::new()), "whsec_k", &["stripe-signature"]),
            (std::sync::Arc::new(GitHub::new()), "k", &["x-hub-signature-256"]),
            (std::sync::Arc::new(Aps::new()), "k", &["x-adsk-signature"]),
            (
                std::sync::Arc::new(Slack::new()),
                "k",
                &["x-slack-signature", "x-slack-request-timestamp"],
            ),
            (
                std::sync::Arc::new(StandardWebhooks::new()),
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                &["webhook-signature", "webhook-timestamp", "webhook-id"],
            ),
        ];
        for (scheme, secret, names) in schemes {
            let signed = scheme.sign(secret, body, &SignParams::new(NOW)).unwrap();
            let (headers, uri) = crate::testing::request_parts(signed, "/hooks");
            let v = Verifier::builder_arc(scheme)
                .secret(secret)
                .clock(ManualClock::new(NOW))
                .build()
                .unwrap();
            let verify = |h: &http::HeaderMap| {
                v.verify(
                    &RequestHead::new(&http::Method::POST, &uri, h),
                    bytes::Bytes::from_static(body),
                )
                .map(drop)
            };
            assert_eq!(verify(&headers), Ok(()), "{names:?}");
            for name in names.iter().copied() {
                let genuine = headers.get(name).unwrap().clone();
                let junk = http::HeaderValue::from_static("junk");
                for (first, second) in [
                    (genuine.clone(), junk.clone()),
                    (junk, genuine.clone()),
                    (genuine.clone(), genuine),
                ] {
                    let mut twice = headers.clone();
                    twice.insert(name, first);
                    twice.append(name, second);
                    let got = verify(&twice);
                    assert!(
                        matches!(got, Err(Rejection::RepeatedHeader(n)) if n.eq_ignore_ascii_case(name)),
                        "{name}: {got:?}"
                    );
                    assert_eq!(Rejection::RepeatedHeader("x").status(), http::StatusCode::BAD_REQUEST);
                }
            }
        }
    }

    /// Every sender's delivery gets a bounded dedupe key: its own id when it has a usable one,
    /// else a digest of the body (a Stripe event or a Slack form without an id was handled
    /// again on every copy; a Procore `ulid` of any length went into the key).
    #[test]
    fn every_delivery_has_a_bounded_dedupe_key() {
        use crate::testing::deliver_bytes;
        let long = format!(r#"{{"id":7,"ulid":"{}","event_type":"update"}}"#, "u".repeat(3_000));
        let cases = [
            (
                deliver_bytes(Stripe::new(), "whsec_s", r#"{"object":"event","type":"x"}"#).unwrap(),
                "stripe: no id",
            ),
            (
                deliver_bytes(Slack::new(), "s", "command=%2Fdeploy&trigger_id=1.2.3").unwrap(),
                "slack: a form",
            ),
            (
                deliver_bytes(Slack::new(), "s", r#"{"type":"event_callback"}"#).unwrap(),
                "slack: no event_id",
            ),
            (
                deliver_bytes(Procore::new(), "Bearer t", long).unwrap(),
                "procore: a long ulid",
            ),
        ];
        for (d, what) in cases {
            let key = d.dedupe_key().unwrap_or_else(|| panic!("{what}: no key"));
            assert!(key.len() <= MAX_ID_LEN + 32, "{what}: {} bytes", key.len());
        }
    }

    /// An authentic body whose fields have other types than documented is delivered with the
    /// body's digest as its key by HCSS and APS (it was a `500` that they count toward stopping
    /// the subscription or disabling the hook); a body that is not JSON at all is still
    /// refused. Procore, BuildWorkPro and Stripe read their probes field by field (below); JSON
    /// that is no object at all is keyed by its digest there too.
    #[test]
    fn authentic_json_of_unexpected_types_is_delivered_by_its_digest() {
        use crate::testing::deliver_bytes;
        let cases: [(Result<crate::Delivery, Rejection>, &str, &str, crate::DedupeScope); 2] = [
            (
                deliver_bytes(Hcss::new(), "tok", r#"{"eventType":5,"date":"d"}"#),
                "hcss",
                r#"{"eventType":5,"date":"d"}"#,
                crate::DedupeScope::WhileInFlight,
            ),
            (
                deliver_bytes(Aps::new(), "s", r#"{"hook":"x"}"#),
                "aps",
                r#"{"hook":"x"}"#,
                crate::DedupeScope::Retained,
            ),
        ];
        for (d, what, body, scope) in cases {
            let d = d.unwrap_or_else(|e| panic!("{what}: {e:?}"));
            let key = d.dedupe_key().unwrap_or_default();
            assert!(
                key.ends_with(&format!(":{}", body_digest(body.as_bytes()))),
                "{what}: {key}"
            );
            assert_eq!(d.dedupe_scope(), scope, "{what}");
        }
        for body in ["[1,2]", "5", r#""text""#, "true"] {
            for (d, what) in [
                (deliver_bytes(Procore::new(), "Bearer t", body), "procore"),
                (deliver_bytes(BuildWorkPro::new(), "whsec_t", body), "buildworkpro"),
                (deliver_bytes(Stripe::new(), "whsec_t", body), "stripe"),
            ] {
                let d = d.unwrap_or_else(|e| panic!("{what} {body}: {e:?}"));
                let key = d.dedupe_key().unwrap_or_default();
                assert!(key.ends_with(&body_digest(body.as_bytes())), "{what} {body}: {key}");
                assert_eq!(d.dedupe_scope(), crate::DedupeScope::Retained);
            }
        }
        for not_json in ["not json", "{\"eventType\":"] {
            assert_eq!(
                deliver_bytes(Hcss::new(), "tok", not_json).unwrap_err().code(),
                "invalid_payload"
            );
        }
        // A string that is not UTF-8 was `400` in a field the probe reads and delivered in one
        // it skips (APS disables the hook over the same bytes every retry brings). Keyed by
        // digest wherever it is; not JSON stays `invalid_payload`.
        let not_utf8: [&[u8]; 3] = [
            b"{\"hook\":{\"event\":\"caf\xe9\"}}",
            b"{\"id\":\"evt_\xff\",\"type\":\"x\"}",
            b"{\"id\":\"evt_1\",\"type\":\"x\xff\"}",
        ];
        for body in not_utf8 {
            for (d, what) in [
                (deliver_bytes(Aps::new(), "s", body), "aps"),
                (deliver_bytes(Stripe::new(), "whsec_t", body), "stripe"),
                (deliver_bytes(BuildWorkPro::new(), "whsec_t", body), "buildworkpro"),
                (deliver_bytes(Procore::new(), "Bearer t", body), "procore"),
                (deliver_bytes(Hcss::new(), "tok", body), "hcss"),
            ] {
                // Keyed by digest, or by an id in a field the bytes are not in.
                let d = d.unwrap_or_else(|e| panic!("{what} {body:?}: {e:?}"));
                let key = d.dedupe_key().unwrap_or_default();
                assert!(
                    key.ends_with(&body_digest(body)) || key.ends_with(":evt_1"),
                    "{what} {body:?}: {key}"
                );
            }
        }
        assert_eq!(
            deliver_bytes(Aps::new(), "s", &b"{\"hook\":\xff}"[..])
                .unwrap_err()
                .code(),
            "invalid_payload"
        );
    }

    /// A tryout's genuine Procore deliveries with one field of another type than documented
    /// (a numeric `ulid`, an array `resource_name`, a float `id`, a v4 `reason` object — Procore
    /// says `reason` "may hold values beyond create/update/delete") were `500`: Procore pauses
    /// every delivery to the endpoint on it, and the same bytes failed every retry until the
    /// queue was discarded. Stripe's and BuildWorkPro's `type` likewise. Each is delivered now,
    /// keyed by what can be read: (body, dedupe key's end, event id, event type).
    #[test]
    fn a_field_of_another_type_is_not_read_and_the_delivery_goes_through() {
        use crate::testing::deliver_bytes;
        let procore = [
            (
                r#"{"api_version":"v2","id":5982324300946918154,"ulid":12345,"event_type":"create","resource_name":"RFIs","resource_id":1}"#,
                "5982324300946918154",
                Some("5982324300946918154"),
                Some("RFIs.create"),
            ),
            (
                r#"{"id":7,"ulid":"01HZX3K7Q2V6B5N8M4C9D0E1F2","event_type":"update","resource_name":["RFIs"]}"#,
                "01HZX3K7Q2V6B5N8M4C9D0E1F2",
                Some("7"),
                Some("update"),
            ),
            (
                r#"{"id":1.0,"ulid":"01HZX3K7Q2V6B5N8M4C9D0E1F3","event_type":"delete"}"#,
                "01HZX3K7Q2V6B5N8M4C9D0E1F3",
                None,
                Some("delete"),
            ),
            (
                r#"{"id":"01J0V4ULIDV4ULIDV4ULIDV4UL","reason":{"code":"moved"},"resource_type":"RFIs"}"#,
                "01J0V4ULIDV4ULIDV4ULIDV4UL",
                Some("01J0V4ULIDV4ULIDV4ULIDV4UL"),
                Some("RFIs"),
            ),
            (r#"{"id":7,"metadata":"x"}"#, "7", Some("7"), None),
        ];
        for (body, key, id, kind) in procore {
            let d = deliver_bytes(Procore::new(), "Bearer t", body).unwrap_or_else(|e| panic!("{body}: {e:?}"));
            assert!(
                d.dedupe_key().unwrap_or_default().ends_with(key),
                "{body}: {:?}",
                d.dedupe_key()
            );
            assert_eq!((d.event_id(), d.event_type()), (id, kind), "{body}");
        }
        let typed = r#"{"id":"evt_odd_type","type":5}"#;
        for d in [
            deliver_bytes(Stripe::new(), "whsec_t", typed),
            deliver_bytes(BuildWorkPro::new(), "whsec_t", typed),
            deliver_bytes(
                BuildWorkPro::new(),
                "whsec_t",
                r#"{"id":"evt_odd_type","type":{"a":[1]}}"#,
            ),
        ] {
            let d = d.unwrap_or_else(|e| panic!("{e:?}"));
            assert!(d.dedupe_key().unwrap_or_default().ends_with("evt_odd_type"));
            assert_eq!((d.event_id(), d.event_type()), (Some("evt_odd_type"), None));
        }
        // The loop filter still reads a well-formed `metadata` beside an odd field.
        let own = r#"{"id":8,"ulid":9,"metadata":{"source_application_id":"my-app","source_user_id":[1]}}"#;
        let v = crate::Verifier::builder(Procore::new())
            .secret("Bearer t")
            .ignore_source_application("my-app")
            .build()
            .unwrap();
        let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer t"));
        let verdict = v.verify(
            &crate::RequestHead::new(&m, &u, &h),
            bytes::Bytes::from_static(own.as_bytes()),
        );
        assert!(matches!(verdict, Ok(crate::Verdict::Ignored(_))), "{verdict:?}");
    }

    /// An event type longer than any sender's is not kept (it went into inbox rows, the
    /// inspector's lists and log lines at any length); the delivery itself is still delivered.
    #[test]
    fn an_over_long_event_type_is_not_kept() {
        use crate::testing::deliver_bytes;
        let at = |n: usize| {
            let body = format!(r#"{{"id":"evt_1","type":"{}"}}"#, "t".repeat(n));
            deliver_bytes(BuildWorkPro::new(), "whsec_k", body).unwrap()
        };
        assert_eq!(at(MAX_TYPE_LEN).event_type().map(str::len), Some(MAX_TYPE_LEN));
        let long = at(1_000_000);
        assert_eq!(long.event_type(), None);
        assert_eq!(long.event_id(), Some("evt_1"));
        let github = deliver_bytes(GitHub::new(), "s", r#"{"zen":"z"}"#).unwrap();
        assert!(github.event_type().is_some_and(|t| t.len() <= MAX_TYPE_LEN));
    }
}
