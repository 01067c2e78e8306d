//! Procore: no signature; a configured header value compared in constant time.

use http::HeaderName;

use super::{json_or_digest, non_empty, LenientId, LenientObj, LenientStr};
use crate::json_struct::json_struct;
use crate::observe::KillSwitch;
use crate::profile::{q, rfc3339, secs, HeaderId, Permanent, RetrySchedule, SenderProfile};
use crate::{
    Authenticated, ConfigError, Context, Described, Key, Provider, Rejection, RequestHead, Scheme, SignParams, Signed,
};

/// Procore's scheme. Procore sends, verbatim on every POST, the header value configured on
/// the hook (usually `Authorization: Bearer …`). Every configured secret is an accepted value
/// (several while a token rotates); each is kept as a SHA-256 digest and compared in
/// constant time. Deliveries are deduplicated on `ulid` (v2/v3) or `id` (v4 ULID).
///
/// ```
/// use hookguard_core::{schemes::Procore, Verifier, RequestHead};
/// let v = Verifier::builder(Procore::new()).secret("Bearer s3cret").build().unwrap();
/// let mut headers = http::HeaderMap::new();
/// headers.insert("authorization", "Bearer s3cret".parse().unwrap());
/// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
/// let body = br#"{"id":5982324300946918154,"ulid":"01EDPD2J6SBY1163N77H95GW09","event_type":"create","resource_name":"RFIs","resource_id":1}"#;
/// let out = v.verify(&RequestHead::new(&m, &u, &headers), bytes::Bytes::from_static(body)).unwrap();
/// let d = out.delivery().unwrap();
/// assert_eq!(d.event_id(), Some("5982324300946918154"));
/// assert_eq!(d.dedupe_key(), Some("procore:01EDPD2J6SBY1163N77H95GW09"));
/// ```
#[derive(Debug, Clone)]
pub struct Procore {
    header: HeaderName,
}

impl Default for Procore {
    fn default() -> Self {
        Self {
            header: http::header::AUTHORIZATION,
        }
    }
}

impl Procore {
    /// Accepts the values of `Authorization`.
    ///
    /// ```
    /// use hookguard_core::{schemes::Procore, testing};
    /// assert_eq!(*Procore::new().header_name(), http::header::AUTHORIZATION);
    /// let body = br#"{"id":"01J0000000000000000000000A","reason":"create","resource_type":"RFIs","resource_id":"3"}"#;
    /// let d = testing::deliver(Procore::new(), "Bearer t", body).unwrap();
    /// assert_eq!(d.event_type(), Some("RFIs.create"));
    /// assert_eq!(d.dedupe_key(), Some("procore:01J0000000000000000000000A"));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts the values of another header (Procore's `destination_headers` may name any).
    ///
    /// ```
    /// let p = hookguard_core::schemes::Procore::new().header(http::HeaderName::from_static("x-hook-token"));
    /// assert_eq!(p.header_name(), "x-hook-token");
    /// ```
    pub fn header(mut self, name: HeaderName) -> Self {
        self.header = name;
        self
    }

    /// The header checked.
    ///
    /// ```
    /// use hookguard_core::schemes::Procore;
    /// assert_eq!(Procore::new().header_name().as_str(), "authorization");
    /// ```
    pub fn header_name(&self) -> &HeaderName {
        &self.header
    }
}

struct Metadata {
    source_application_id: Option<String>,
    source_user_id: Option<String>,
}

json_struct! {
    Deserialize for Metadata {
        source_application_id: "source_application_id" (default, with LenientId),
        source_user_id: "source_user_id" (default, with LenientId),
    }
}

struct Probe {
    id: Option<String>,
    ulid: Option<String>,
    event_type: Option<String>,
    reason: Option<String>,
    resource_name: Option<String>,
    resource_type: Option<String>,
    metadata: Option<Metadata>,
    user_id: Option<String>,
}

json_struct! {
    Deserialize for Probe {
        // Every field leniently: an authentic delivery is never refused for a field of a type
        // we did not expect (a 500 pauses every delivery to the endpoint); a float `id` (never
        // read through `f64`) is no id, and the `ulid` or the body's digest keys it instead.
        id: "id" (default, with LenientId),
        ulid: "ulid" (default, with LenientStr),
        event_type: "event_type" (default, with LenientStr),
        reason: "reason" (default, with LenientStr),
        resource_name: "resource_name" (default, with LenientStr),
        resource_type: "resource_type" (default, with LenientStr),
        metadata: "metadata" (default, with LenientObj<Metadata>),
        user_id: "user_id" (default, with LenientId),
    }
}

impl Scheme for Procore {
    fn provider(&self) -> Provider {
        Provider::Procore
    }

    fn profile(&self) -> SenderProfile {
        SenderProfile {
            name: "Procore",
            timeout: secs(5),
            timeout_assumed: false,
            schedule: RetrySchedule::Exponential {
                base: secs(1),
                cap: secs(3600),
                horizon: secs(12 * 3600),
            },
            schedule_doc: "any non-2xx pauses the endpoint; retries back off exponentially from 1 s up to 1 h (doubling assumed); discarded after 12 h",
            retry_note: "; meanwhile Procore pauses this endpoint (its other deliveries wait too)",
            permanent: Permanent::Never,
            give_up: "12 h of failures: Procore discards the endpoint's queued deliveries",
            kill_switch: Some(KillSwitch::new(
                1,
                "pauses every delivery to this endpoint after a failed one, and discards its queue after 12 h",
                "fix the endpoint before Procore's queue is discarded",
            )),
            event_types: &["create", "update", "delete"],
            header_id: HeaderId::None,
            header_type: None,
            sample: |rng, kind, now| {
                // Legacy v2 payload: an `id` beyond 2^53 must stay exact digits.
                let id: u64 = (1u64 << 62) + rng.next_u64() % (1u64 << 62);
                let ts = q(&rfc3339(now, (rng.next_u64() % 1000) as u32));
                format!(
                    r#"{{"api_version":"v2","company_id":6452,"event_type":{},"id":{id},"metadata":{{"source_application_id":null,"source_company_id":6452,"source_operation_id":null,"source_project_id":219542,"source_user_id":1469242}},"project_id":219542,"resource_id":245510722,"resource_name":"Purchase Order Contract Line Items","timestamp":{ts},"ulid":"{}","user_id":1469242}}"#,
                    q(kind.unwrap_or("create")),
                    rng.ulid(now * 1000)
                )
                .into_bytes()
            },
        }
    }

    fn key(&self, secret: &str) -> Result<Key, &'static str> {
        if let Some(problem) = super::header_token_problem(secret) {
            return Err(problem);
        }
        Ok(Key::token(secret.as_bytes()))
    }

    fn has_timestamp(&self) -> bool {
        false
    }

    fn authenticates_head_only(&self) -> bool {
        true
    }

    fn credential_header(&self) -> Option<&http::HeaderName> {
        Some(&self.header)
    }

    fn authenticate(&self, req: &RequestHead<'_>, _body: &[u8], ctx: &Context<'_>) -> Result<Authenticated, Rejection> {
        // The rejection names the header when it is the default; a configured one (any name)
        // is described, since the label is static.
        let label = if self.header == http::header::AUTHORIZATION {
            "authorization"
        } else {
            "procore token header"
        };
        super::header_token(req, ctx, &self.header, label)?;
        Ok(Authenticated::default())
    }

    fn describe(&self, _req: &RequestHead<'_>, body: &[u8]) -> Result<Described, Rejection> {
        // The key (`ulid`, `id`) and the loop filter (`metadata.source_application_id`) come
        // from the probe, read leniently field by field. JSON that is no object at all (never
        // sent by Procore) is keyed by its digest and delivered, logged at error level: a
        // `500` would pause every delivery to the endpoint, the same bytes failing each retry.
        let p: Probe = match json_or_digest(body, crate::DedupeScope::Retained)? {
            Ok(p) => p,
            Err(described) => return Ok(described),
        };
        let id = non_empty(p.id);
        // A `ulid` longer than any id is not kept (bounded keys: a unique index refuses very
        // long ones, which would fail every retry): the id or the digest serves instead.
        let ulid = non_empty(p.ulid).filter(|u| u.len() <= super::MAX_ID_LEN);
        let key = ulid.or_else(|| id.clone()).or_else(|| {
            // Procore documents an id on every payload version; without one, a retry still
            // carries the same bytes, so the body's digest recognises it.
            tracing::warn!(
                "Procore delivery without a usable `id` or `ulid` (absent, empty, over 256 bytes, with a \
                 control character, or a number that is no whole number within 64 bits); \
                 deduplicating on a digest of the body"
            );
            Some(super::body_digest(body))
        });
        let action = p.event_type.or(p.reason);
        let resource = p.resource_name.or(p.resource_type);
        let event_type = match (resource, action) {
            (Some(r), Some(a)) => Some(format!("{r}.{a}")),
            (r, a) => a.or(r),
        };
        let (source_application_id, source_user_id) = match p.metadata {
            Some(m) => (m.source_application_id, m.source_user_id),
            None => (None, None),
        };
        Ok(Described {
            event_id: id,
            event_type,
            dedupe_key: key,
            source_application_id,
            // v2/v3 name the source operation's user in `metadata`; v4 has only `user_id`.
            source_user_id: source_user_id.or(p.user_id),
            ..Described::default()
        })
    }

    fn sign(&self, secret: &str, _body: &[u8], _params: &SignParams) -> Result<Signed, ConfigError> {
        let mut v =
            http::HeaderValue::from_str(secret).map_err(|_| ConfigError::Invalid("value is not valid header text"))?;
        // The token itself: never shown by `Debug`.
        v.set_sensitive(true);
        Ok(Signed {
            headers: vec![(self.header.clone(), v)],
            query: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RequestHead, Verifier};

    /// A header value that can never arrive as configured (a newline in it, whitespace around
    /// it) is refused when the verifier is built, not answered `401` on every genuine delivery
    /// (Procore then pauses the endpoint); HCSS's header token likewise.
    #[test]
    fn a_token_no_header_can_carry_is_refused_at_configuration() {
        use crate::ConfigError;
        for bad in ["Bearer a\nb", "Bearer a\r", "Bearer\0a", " Bearer a", "Bearer a\t"] {
            let built = Verifier::builder(Procore::new()).secret(bad).build();
            assert!(matches!(built, Err(ConfigError::InvalidSecret { .. })), "{bad:?}");
            let hcss = super::super::Hcss::header(http::HeaderName::from_static("x-hcss-token"));
            let built = Verifier::builder(hcss).secret(bad).build();
            assert!(matches!(built, Err(ConfigError::InvalidSecret { .. })), "hcss {bad:?}");
        }
        let long = format!("Bearer {}", "a".repeat(crate::DEFAULT_MAX_HEADER_LEN));
        assert!(matches!(
            Verifier::builder(Procore::new()).secret(&long).build(),
            Err(ConfigError::InvalidSecret { .. })
        ));
        // A token that builds is accepted when the sender sends it, as its UTF-8 bytes.
        let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
        let longest = format!("Bearer {}", "a".repeat(crate::DEFAULT_MAX_HEADER_LEN - 7));
        for good in ["Bearer a", "Bearer a\tb", "Bearer caf\u{e9}", longest.as_str()] {
            let hcss = super::super::Hcss::header(http::HeaderName::from_static("x-hcss-token"));
            for (v, header) in [
                (
                    Verifier::builder(Procore::new()).secret(good).build().unwrap(),
                    "authorization",
                ),
                (Verifier::builder(hcss).secret(good).build().unwrap(), "x-hcss-token"),
            ] {
                let mut headers = http::HeaderMap::new();
                headers.insert(header, http::HeaderValue::from_bytes(good.as_bytes()).unwrap());
                let got = v.verify(
                    &RequestHead::new(&m, &u, &headers),
                    bytes::Bytes::from_static(br#"{"id":1,"ulid":"01A"}"#),
                );
                assert!(
                    got.is_ok(),
                    "{header} {:?}: {:?}",
                    &good[..good.len().min(20)],
                    got.err()
                );
            }
        }
    }

    /// Deliveries of the user named by `ignore_source_user` are ignored: v2/v3 by
    /// `metadata.source_user_id` (a number, compared as its digits), v4 by `user_id`; another
    /// user's, and a v2 body whose `metadata` names another source user, are delivered.
    #[test]
    fn a_source_users_own_changes_are_ignored() {
        use crate::Verdict;
        let v = Verifier::builder(Procore::new())
            .secret("Bearer t")
            .ignore_source_user("1469242")
            .build()
            .unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", "Bearer t".parse().unwrap());
        let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
        let verdict = |body: &'static str| {
            v.verify(
                &RequestHead::new(&m, &u, &headers),
                bytes::Bytes::from_static(body.as_bytes()),
            )
            .unwrap()
        };
        for (body, ignored) in [
            (
                r#"{"id":1,"ulid":"01A","metadata":{"source_user_id":1469242},"user_id":7}"#,
                true,
            ),
            (r#"{"id":2,"ulid":"01B","metadata":{"source_user_id":"1469242"}}"#, true),
            (r#"{"id":"01C","event_type":"update","user_id":1469242}"#, true),
            (r#"{"id":"01D","event_type":"update","user_id":7}"#, false),
            (
                r#"{"id":3,"ulid":"01E","metadata":{"source_user_id":7},"user_id":1469242}"#,
                false,
            ),
            (r#"{"id":4,"ulid":"01F"}"#, false),
            // Read only to filter: another type is no id, never a body we cannot read.
            (
                r#"{"id":5,"ulid":"01G","metadata":{"source_user_id":1.5,"source_application_id":{"a":[1]}},"user_id":true}"#,
                false,
            ),
            (
                r#"{"id":6,"ulid":"01H","metadata":{"source_user_id":[1469242]},"user_id":1469242}"#,
                true,
            ),
        ] {
            assert_eq!(matches!(verdict(body), Verdict::Ignored(_)), ignored, "{body}");
        }
    }

    /// A token longer than the header bound could never arrive whole (every genuine delivery
    /// `431`): refused at build against the bound configured, not a fixed 4096 bytes.
    #[test]
    fn a_token_must_fit_the_configured_header_bound() {
        let long = format!("Bearer {}", "t".repeat(5000));
        let refused = Verifier::builder(Procore::new())
            .secret("Bearer short")
            .secret(&long)
            .build();
        assert!(
            matches!(refused, Err(crate::ConfigError::InvalidSecret { index: 1, .. })),
            "{refused:?}"
        );
        let v = Verifier::builder(Procore::new())
            .secret(&long)
            .max_header_len(8192)
            .build()
            .unwrap();
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, long.parse().unwrap());
        let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
        let r = v.verify(&RequestHead::new(&m, &u, &h), bytes::Bytes::from_static(br#"{"id":1}"#));
        assert!(r.is_ok(), "{r:?}");
    }

    /// An oversized token is refused `431` naming the header that carried it.
    #[test]
    fn an_oversized_token_names_its_header() {
        let big = "t".repeat(5000);
        for (scheme, name, label) in [
            (Procore::new(), "authorization", "authorization"),
            (
                Procore::new().header(HeaderName::from_static("x-hook-token")),
                "x-hook-token",
                "procore token header",
            ),
        ] {
            let v = Verifier::builder(scheme).secret("Bearer t").build().unwrap();
            let mut h = http::HeaderMap::new();
            h.insert(HeaderName::from_static(name), big.parse().unwrap());
            let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
            let r = v.verify(&RequestHead::new(&m, &u, &h), bytes::Bytes::from_static(br#"{"id":1}"#));
            assert!(matches!(r, Err(Rejection::HeaderTooLarge(l)) if l == label), "{name}");
        }
    }

    /// A token header given twice is refused `401` whichever value comes first (a review's
    /// finding: the first value alone was judged, so `Bearer GOOD` then `Bearer x` passed and
    /// the other order did not). HCSS's header token shares the check.
    #[test]
    fn a_token_header_given_twice_is_refused() {
        let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
        let hcss = crate::schemes::Hcss::header(HeaderName::from_static("x-hcss-token"));
        for (v, name) in [
            (Verifier::builder(Procore::new()), "authorization"),
            (Verifier::builder(hcss), "x-hcss-token"),
        ] {
            let v = v.secret("Bearer good").build().unwrap();
            let verify = |values: &[&str]| {
                let mut h = http::HeaderMap::new();
                for value in values {
                    h.append(HeaderName::from_static(name), value.parse().unwrap());
                }
                v.verify(&RequestHead::new(&m, &u, &h), bytes::Bytes::from_static(br#"{"id":1}"#))
            };
            assert!(verify(&["Bearer good"]).is_ok(), "{name}");
            for values in [
                ["Bearer good", "Bearer x"],
                ["Bearer x", "Bearer good"],
                ["Bearer good"; 2],
            ] {
                let r = verify(&values);
                assert!(matches!(r, Err(Rejection::Unauthorized)), "{name} {values:?}: {r:?}");
            }
        }
    }
}
