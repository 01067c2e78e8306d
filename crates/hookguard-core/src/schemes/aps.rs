//! Autodesk Platform Services (APS) webhooks: Autodesk Construction Cloud, BIM 360 and Data
//! Management events. `x-adsk-signature: sha1hash=<hex HMAC-SHA1(secret token, raw body)>`.

use crate::json_struct::json_struct;
use crate::observe::KillSwitch;
use crate::profile::{q, rfc3339, secs, HeaderId, Permanent, RetrySchedule, SenderProfile};
use crate::wire::{decode_hex, header};
use crate::{
    Authenticated, ConfigError, Context, DedupePolicy, Described, Key, Provider, Rejection, RequestHead, Scheme,
    SignParams, Signed,
};

/// APS's scheme: HMAC-SHA1 of the raw body keyed with the hook's (or the app's) secret token,
/// hex in `x-adsk-signature` after `sha1hash=`, compared in constant time. SHA-1 is what APS
/// sends, not a choice of ours. Set a secret token on the hook: without one APS signs nothing
/// and a delivery cannot be told from a forgery.
///
/// No timestamp is signed (no replay window). A callback body carries no unique event id —
/// `x-adsk-delivery-id` is an unsigned header — so the dedupe key is a digest of the signed
/// body: APS's retries of one event carry the same bytes.
///
/// ```
/// use hookguard_core::{schemes::Aps, Verifier, RequestHead};
/// // Known answer: HMAC-SHA1("my-secret-token", body), computed independently (Python hmac).
/// let body = br#"{"version":"1.0","resourceUrn":"urn:adsk.wipprod:fs.file:vf.0zvdp3CoTzWDdZC_wL0kJA?version=1","hook":{"system":"data","event":"dm.version.added","hookId":"1fcd3e30-9f3f-11e7-951f-0fd5337ed5ce"},"payload":{"ext":"txt","name":"notes.txt","sizeInBytes":36}}"#;
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-adsk-signature", "sha1hash=0fb778418f832fa7dd4a3ba4cae5af3957f8c3f2".parse().unwrap());
/// let v = Verifier::builder(Aps::new()).secret("my-secret-token").build().unwrap();
/// let (m, u) = (http::Method::POST, http::Uri::from_static("/aps"));
/// let out = v.verify(&RequestHead::new(&m, &u, &headers), bytes::Bytes::from_static(body)).unwrap();
/// assert_eq!(out.delivery().unwrap().event_type(), Some("dm.version.added"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Aps {
    _priv: (),
}

static SIGNATURE: http::HeaderName = http::HeaderName::from_static(Aps::SIGNATURE_HEADER);
static DELIVERY_ID: http::HeaderName = http::HeaderName::from_static("x-adsk-delivery-id");

impl Aps {
    /// The signature header.
    ///
    /// ```
    /// use hookguard_core::{schemes::Aps, Scheme, SignParams};
    /// let s = Aps::new().sign("my-secret-token", b"{}", &SignParams::new(0)).unwrap();
    /// let (name, value) = &s.headers[0];
    /// assert_eq!(name, Aps::SIGNATURE_HEADER);
    /// assert!(value.to_str().unwrap().starts_with("sha1hash="));
    /// ```
    pub const SIGNATURE_HEADER: &'static str = "x-adsk-signature";

    /// The scheme with APS's rules.
    ///
    /// ```
    /// use hookguard_core::{schemes::Aps, testing, Provider};
    /// let d = testing::deliver(Aps::new(), "my-secret-token", br#"{"hook":{"system":"data","event":"dm.version.added"}}"#).unwrap();
    /// assert_eq!(d.provider(), Provider::Aps);
    /// assert_eq!(d.event_type(), Some("dm.version.added"));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

struct Hook {
    event: Option<String>,
}

json_struct! { Deserialize for Hook { event: "event" (default) } }

struct Probe {
    hook: Option<Hook>,
}

json_struct! { Deserialize for Probe { hook: "hook" (default) } }

impl Scheme for Aps {
    fn provider(&self) -> Provider {
        Provider::Aps
    }

    fn profile(&self) -> SenderProfile {
        SenderProfile {
            name: "APS",
            timeout: secs(6),
            timeout_assumed: false,
            // "retried four times, the last at least 48 h after the first"; intervals
            // unpublished: assumed +15 min, +1 h, +6 h, +48 h.
            schedule: RetrySchedule::Fixed(const { &[secs(900), secs(3600), secs(6 * 3600), secs(48 * 3600)] }),
            schedule_doc: "5 attempts: now, then 4 retries, the last at least 48 h after the first \
                           (intervals unpublished: assumed +15 min, +1 h, +6 h, +48 h); then the webhook is disabled",
            retry_note: " (4 retries; if the last fails the webhook is disabled)",
            permanent: Permanent::Never,
            // A hook created with `autoReactivateHook` is tried again, once, by a later event
            // (the Event Delivery Guarantees page); a default hook stays inactive.
            give_up: "APS disables the webhook until it is re-enabled through the Webhooks API \
                      (a hook created with autoReactivateHook gets a later event's one-time attempt)",
            kill_switch: Some(
                KillSwitch::new(
                    5,
                    "disables this webhook when its fourth retry fails",
                    "the webhook is probably inactive: re-enable it through the APS Webhooks API \
                     (one created with autoReactivateHook is tried again by a later event)",
                )
                .per_event(),
            ),
            event_types: &[
                "dm.version.added",
                "dm.version.modified",
                "dm.version.deleted",
                "dm.version.moved",
                "dm.folder.added",
                "dm.folder.deleted",
                "extraction.finished",
            ],
            header_id: HeaderId::FreshGuid,
            header_type: None,
            sample: |rng, kind, now| {
                let hook = rng.guid();
                let lineage = rng.hex(11);
                format!(
                    r#"{{"version":"1.0","resourceUrn":"urn:adsk.wipprod:fs.file:vf.{lineage}?version=1","hook":{{"system":"data","event":{},"hookId":"{hook}","tenant":"urn:adsk.wipprod:fs.folder:co.{}","callbackUrl":"https://hooks.example.com/aps","createdBy":"app","createdDate":{},"creatorType":"Application","hookAttribute":{{"projectId":"b.{}"}},"scope":{{"folder":"urn:adsk.wipprod:fs.folder:co.{}"}},"urn":"urn:adsk.webhooks:events.hook:{hook}","status":"active"}},"payload":{{"ext":"rvt","modifiedTime":{},"lineageUrn":"urn:adsk.wipprod:dm.lineage:{lineage}","sizeInBytes":{},"hidden":false,"indexable":true,"source":"urn:adsk.wipprod:fs.file:vf.{lineage}?version=1","version":1,"user_info":{{"id":"{}"}},"name":"Level 2 - Structural.rvt","context":{{"operation":"PostVersionedFiles"}}}}}}"#,
                    q(kind.unwrap_or("dm.version.added")),
                    rng.hex(11),
                    q(&rfc3339(now, 0)),
                    rng.guid(),
                    rng.hex(11),
                    q(&rfc3339(now, 0)),
                    rng.next_u64() % 50_000_000,
                    rng.hex(6).to_uppercase()
                )
                .into_bytes()
            },
        }
    }

    fn key(&self, secret: &str) -> Result<Key, &'static str> {
        if secret.is_empty() {
            return Err("empty secret token");
        }
        Ok(Key::hmac_sha1(secret.as_bytes()))
    }

    fn has_timestamp(&self) -> bool {
        false
    }

    fn dedupe_policy(&self) -> DedupePolicy {
        DedupePolicy::BodyDigest
    }

    fn authenticate(&self, req: &RequestHead<'_>, body: &[u8], ctx: &Context<'_>) -> Result<Authenticated, Rejection> {
        let value = ctx
            .header(req, &SIGNATURE)?
            .ok_or(Rejection::MissingSignature("x-adsk-signature"))?;
        let hex = value
            .trim()
            .strip_prefix("sha1hash=")
            .ok_or(Rejection::MalformedSignature)?;
        let candidate = decode_hex::<20>(hex).ok_or(Rejection::MalformedSignature)?;
        // Every key is tried (no early exit), each comparison constant-time.
        let ok = ctx
            .keys()
            .iter()
            .fold(false, |ok, k| ok | k.sha1_matches(body, &candidate));
        if ok {
            Ok(Authenticated::default())
        } else {
            Err(Rejection::SignatureMismatch)
        }
    }

    fn describe(&self, req: &RequestHead<'_>, body: &[u8]) -> Result<Described, Rejection> {
        let p: Probe = match super::json_or_digest(body, crate::DedupeScope::Retained)? {
            Ok(p) => p,
            Err(described) => return Ok(described),
        };
        let delivery_id = req
            .headers
            .get(&DELIVERY_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .map(str::to_owned);
        Ok(Described {
            event_id: delivery_id,
            event_type: p.hook.and_then(|h| h.event),
            dedupe_key: Some(super::body_digest(body)),
            ..Described::default()
        })
    }

    fn sign(&self, secret: &str, body: &[u8], params: &SignParams) -> Result<Signed, ConfigError> {
        let mac = crate::key::sha1_mac_of(secret.as_bytes(), body);
        let mut headers = vec![header(
            Self::SIGNATURE_HEADER,
            format!("sha1hash={}", crate::wire::hex_encode(&mac)),
        )?];
        if let Some(id) = &params.id {
            headers.push(header("x-adsk-delivery-id", id)?);
        }
        Ok(Signed { headers, query: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn round_trip_rotation_and_traps() {
        let body = br#"{"hook":{"event":"dm.folder.added"},"payload":{}}"#;
        let d = testing::deliver(Aps::new(), "tok", body).unwrap();
        assert_eq!(d.event_type(), Some("dm.folder.added"));
        assert!(d.dedupe_key().unwrap().starts_with("aps:sha256:"));
        let v = crate::Verifier::builder(Aps::new())
            .secrets(["old", "new"])
            .build()
            .unwrap();
        let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
        let check = |sig: &str| {
            let mut h = http::HeaderMap::new();
            h.insert("x-adsk-signature", sig.parse().unwrap());
            v.authenticate(&RequestHead::new(&m, &u, &h), body).map(|_| ())
        };
        let good = format!(
            "sha1hash={}",
            crate::wire::hex_encode(&crate::key::sha1_mac_of(b"new", body))
        );
        assert_eq!(check(&good), Ok(()));
        let wrong = format!(
            "sha1hash={}",
            crate::wire::hex_encode(&crate::key::sha1_mac_of(b"other", body))
        );
        assert_eq!(check(&wrong), Err(Rejection::SignatureMismatch));
        for bad in ["sha1hash=", "sha1hash=abc", "sha256=00", &good.replace("sha1hash=", "")] {
            assert_eq!(check(bad), Err(Rejection::MalformedSignature), "{bad}");
        }
        // An HMAC-SHA256 key never verifies an APS signature.
        let v256 = crate::Verifier::builder(super::super::GitHub::new())
            .secret("new")
            .build()
            .unwrap();
        let mut h = http::HeaderMap::new();
        h.insert("x-adsk-signature", good.parse().unwrap());
        assert!(Aps::new()
            .authenticate(
                &RequestHead::new(&m, &u, &h),
                body,
                &Context::new(&[Key::hmac(b"new")], None, 0)
            )
            .is_err());
        drop(v256);
    }
}
