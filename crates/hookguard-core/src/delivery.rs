//! A verified delivery.

use std::fmt;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::{DedupeScope, Provider, Rejection};

/// The longest detail kept from a serde error message, in bytes.
const MAX_DETAIL: usize = 256;

/// A serde error message with the body's content taken out: quoted strings become `"…"`
/// (escaped quotes inside them included) and backtick-quoted values `` `…` `` (serde quotes
/// numbers, unknown variants and unknown field names that way) — except the field named by
/// "missing field" and "duplicate field", which is the application's own. It names the field
/// and the position, never the body's content; at most 256 bytes, cut on a character boundary.
pub(crate) fn redact_values(msg: &str) -> String {
    let keep_ticks = msg.starts_with("missing field `") || msg.starts_with("duplicate field `");
    let mut out = String::with_capacity(msg.len().min(MAX_DETAIL + 8));
    let mut chars = msg.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push_str("\"…\"");
                while let Some(d) = chars.next() {
                    match d {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '`' if !keep_ticks => {
                out.push_str("`…`");
                for d in chars.by_ref() {
                    if d == '`' {
                        break;
                    }
                }
            }
            c => out.push(c),
        }
        if out.len() > MAX_DETAIL {
            break;
        }
    }
    if out.len() > MAX_DETAIL {
        let mut cut = MAX_DETAIL;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// A delivery whose authenticity was proven: who sent it, what it is, and the raw body.
///
/// The body is the exact bytes received, shared (`Bytes`), never copied again. `Debug` shows
/// its length, not its content.
///
/// ```
/// use hookguard_core::{schemes::BuildWorkPro, envelope::BuildWorkProEvent, testing};
/// let body = br#"{"id":"evt_1","type":"bid.accepted","created_at":"2026-04-25T17:42:01.812Z","tenant_id":17,"data":{"id":9}}"#;
/// let d = testing::deliver(BuildWorkPro::new(), "whsec_k", body).unwrap();
/// assert_eq!(d.event_id(), Some("evt_1"));
/// assert_eq!(d.dedupe_key(), Some("buildworkpro:evt_1"));
/// let ev: BuildWorkProEvent = d.json().unwrap();
/// assert_eq!(ev.tenant_id, Some(17));
/// ```
#[derive(Clone)]
pub struct Delivery {
    pub(crate) provider: Provider,
    pub(crate) event_id: Option<String>,
    pub(crate) event_type: Option<String>,
    pub(crate) timestamp: Option<u64>,
    pub(crate) dedupe_key: Option<String>,
    pub(crate) dedupe_scope: DedupeScope,
    pub(crate) source_application_id: Option<String>,
    pub(crate) body: Bytes,
}

impl Delivery {
    /// The sender.
    ///
    /// ```
    /// use hookguard_core::{schemes::BuildWorkPro, testing, Provider};
    /// let d = testing::deliver(BuildWorkPro::new(), "whsec_k", br#"{"id":"evt_1","type":"bid.accepted"}"#).unwrap();
    /// assert_eq!(d.provider(), Provider::BuildWorkPro);
    /// assert_eq!(d.provider().as_str(), "buildworkpro");
    /// ```
    pub fn provider(&self) -> Provider {
        self.provider
    }
    /// The sender's event id exactly as sent (`None` for senders that send none, like HCSS).
    ///
    /// ```
    /// use hookguard_core::{schemes::{BuildWorkPro, Hcss}, testing};
    /// let d = testing::deliver(BuildWorkPro::new(), "whsec_k", br#"{"id":"evt_1","type":"bid.accepted"}"#).unwrap();
    /// assert_eq!(d.event_id(), Some("evt_1"));
    /// let hcss = testing::deliver(Hcss::new(), "tok", br#"{"companyId":"c","eventType":"EmployeeUpdated"}"#).unwrap();
    /// assert_eq!(hcss.event_id(), None);
    /// ```
    pub fn event_id(&self) -> Option<&str> {
        self.event_id.as_deref()
    }
    /// The event type.
    ///
    /// ```
    /// use hookguard_core::{schemes::BuildWorkPro, testing};
    /// let d = testing::deliver(BuildWorkPro::new(), "whsec_k", br#"{"id":"evt_1","type":"bid.accepted"}"#).unwrap();
    /// assert_eq!(d.event_type(), Some("bid.accepted"));
    /// ```
    pub fn event_type(&self) -> Option<&str> {
        self.event_type.as_deref()
    }
    /// The signed timestamp, for schemes that sign one.
    ///
    /// ```
    /// use hookguard_core::{schemes::{BuildWorkPro, Procore}, testing};
    /// // `testing::deliver` signs at 1_700_000_000; Procore sends a bearer token, no timestamp.
    /// let d = testing::deliver(BuildWorkPro::new(), "whsec_k", br#"{"id":"evt_1","type":"bid.accepted"}"#).unwrap();
    /// assert_eq!(d.timestamp(), Some(1_700_000_000));
    /// let p = testing::deliver(Procore::new(), "Bearer t", br#"{"id":8,"ulid":"01EDPD2J6SBY1163N77H95GW09"}"#).unwrap();
    /// assert_eq!(p.timestamp(), None);
    /// ```
    pub fn timestamp(&self) -> Option<u64> {
        self.timestamp
    }
    /// The dedupe key, `"{provider}:{key}"`; `None` when the delivery carries nothing to
    /// recognise copies by (it is then handled every time).
    ///
    /// ```
    /// use hookguard_core::{schemes::{BuildWorkPro, Hcss}, testing};
    /// let d = testing::deliver(BuildWorkPro::new(), "whsec_k", br#"{"id":"evt_1","type":"bid.accepted"}"#).unwrap();
    /// assert_eq!(d.dedupe_key(), Some("buildworkpro:evt_1"));
    /// // HCSS sends no id: the key is a digest of the body.
    /// let hcss = testing::deliver(Hcss::new(), "tok", br#"{"companyId":"c","eventType":"EmployeeUpdated"}"#).unwrap();
    /// assert!(hcss.dedupe_key().unwrap().starts_with("hcss:"));
    /// ```
    pub fn dedupe_key(&self) -> Option<&str> {
        self.dedupe_key.as_deref()
    }
    /// How long the dedupe key recognises copies (see [`DedupeScope`]).
    ///
    /// ```
    /// use hookguard_core::{schemes::{BuildWorkPro, Hcss}, testing, DedupeScope};
    /// let d = testing::deliver(BuildWorkPro::new(), "whsec_k", br#"{"id":"evt_1","type":"bid.accepted"}"#).unwrap();
    /// assert_eq!(d.dedupe_scope(), DedupeScope::Retained); // an event id: copies known for the retention
    /// let hcss = testing::deliver(Hcss::new(), "tok", br#"{"companyId":"c","eventType":"EmployeeUpdated"}"#).unwrap();
    /// assert_eq!(hcss.dedupe_scope(), DedupeScope::WhileInFlight); // no id, no date
    /// ```
    pub fn dedupe_scope(&self) -> DedupeScope {
        self.dedupe_scope
    }
    /// Procore's `metadata.source_application_id`.
    ///
    /// ```
    /// use hookguard_core::{schemes::Procore, testing};
    /// let body = br#"{"id":8,"ulid":"01EDPD2J6SBY1163N77H95GW09","metadata":{"source_application_id":"my-app"}}"#;
    /// let d = testing::deliver(Procore::new(), "Bearer t", body).unwrap();
    /// assert_eq!(d.source_application_id(), Some("my-app")); // a change your own application made
    /// ```
    pub fn source_application_id(&self) -> Option<&str> {
        self.source_application_id.as_deref()
    }
    /// The raw body.
    ///
    /// ```
    /// use hookguard_core::{schemes::BuildWorkPro, testing};
    /// let body = br#"{"id":"evt_1","type":"bid.accepted"}"#;
    /// let d = testing::deliver(BuildWorkPro::new(), "whsec_k", body).unwrap();
    /// assert_eq!(d.body().as_ref(), body); // the exact bytes that were verified
    /// assert_eq!(d.body().clone().as_ptr(), d.body().as_ptr(), "shared, not copied");
    /// ```
    pub fn body(&self) -> &Bytes {
        &self.body
    }
    /// Takes the raw body.
    ///
    /// ```
    /// use hookguard_core::{bytes::Bytes, schemes::BuildWorkPro, testing};
    /// let d = testing::deliver(BuildWorkPro::new(), "whsec_k", br#"{"id":"evt_1","type":"bid.accepted"}"#).unwrap();
    /// let body: Bytes = d.into_body();
    /// assert_eq!(body, r#"{"id":"evt_1","type":"bid.accepted"}"#);
    /// ```
    pub fn into_body(self) -> Bytes {
        self.body
    }
    /// Parses the body into a typed envelope (see [`crate::envelope`]) or any serde type.
    ///
    /// The body is authentic, so a mismatch is a gap in *our* model (a field the sender
    /// omitted or changed), not the sender's fault: it is logged at error level naming the
    /// field, and answered with a retryable `500 unexpected_payload` so the event is not lost
    /// while the model is fixed.
    ///
    /// # Errors
    /// [`Rejection::UnexpectedPayload`] when the body is not that shape.
    ///
    /// ```
    /// use hookguard_core::{schemes::BuildWorkPro, testing};
    /// #[derive(serde::Deserialize)]
    /// #[derive(Debug)]
    /// struct Mine { #[allow(dead_code)] amount: u64 }
    /// let d = testing::deliver(BuildWorkPro::new(), "whsec_k", br#"{"id":"evt_1","type":"bid.accepted"}"#).unwrap();
    /// let err = d.json::<Mine>().unwrap_err();
    /// assert_eq!((err.code(), err.status().as_u16()), ("unexpected_payload", 500));
    /// assert!(err.detail().unwrap().contains("amount"));
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Rejection> {
        serde_json::from_slice(crate::json_fast::without_bom(&self.body)).map_err(|e| {
            let detail = redact_values(&e.to_string());
            tracing::error!(
                provider = %self.provider,
                event_id = self.event_id(),
                target_type = std::any::type_name::<T>(),
                error = %detail,
                "verified webhook body does not match the application's type (inline: answered 500, so the sender retries; inbox: a failed attempt, retried)"
            );
            Rejection::UnexpectedPayload { detail }
        })
    }
    /// The one-line JSON summary the CLI prints: provider, id (a string exactly as sent), type, dedupe key.
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, testing};
    /// let d = testing::deliver(GitHub::new(), "s", b"{}").unwrap();
    /// assert!(d.summary_json().starts_with(r#"{"provider":"github""#));
    /// ```
    pub fn summary_json(&self) -> String {
        struct Summary<'a>(&'a Delivery);
        impl serde::Serialize for Summary<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeStruct;
                let mut s = serializer.serialize_struct("Summary", 4)?;
                s.serialize_field("provider", self.0.provider.as_str())?;
                s.serialize_field("id", &self.0.event_id())?;
                s.serialize_field("type", &self.0.event_type())?;
                s.serialize_field("dedupe_key", &self.0.dedupe_key())?;
                s.end()
            }
        }
        serde_json::to_string(&Summary(self)).unwrap_or_default()
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("provider", &self.provider)
            .field("event_id", &self.event_id)
            .field("event_type", &self.event_type)
            .field("timestamp", &self.timestamp)
            .field("dedupe_key", &self.dedupe_key)
            .field("body_len", &self.body.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_json_names_order_and_nulls() {
        let d = Delivery {
            provider: Provider::Procore,
            event_id: Some("5982324300946918154".into()),
            event_type: None,
            timestamp: Some(1),
            dedupe_key: Some("procore:a\"b".into()),
            dedupe_scope: DedupeScope::Retained,
            source_application_id: None,
            body: Bytes::new(),
        };
        assert_eq!(
            d.summary_json(),
            r#"{"provider":"procore","id":"5982324300946918154","type":null,"dedupe_key":"procore:a\"b"}"#
        );
    }

    fn detail_of<T: serde::de::DeserializeOwned + std::fmt::Debug>(body: &str) -> String {
        let d = crate::testing::deliver_bytes(crate::schemes::GitHub::new(), "s", body.to_owned()).unwrap();
        d.json::<T>().unwrap_err().detail().unwrap().to_owned()
    }

    /// The detail of a body that is not the application's type names the field, never the
    /// body's content — strings, numbers, unknown variants or keys — and a long non-ASCII value
    /// is cut on a character boundary (it panicked).
    #[test]
    fn payload_errors_never_show_the_bodys_content() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        enum Kind {
            A,
            B,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Card {
            card: String,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Count {
            n: u64,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Typed {
            kind: Kind,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Strict {
            n: u64,
        }
        let secret = "4111111111111111";
        for detail in [
            detail_of::<Card>(&format!(r#"{{"card":{secret}}}"#)),
            detail_of::<Count>(&format!(r#"{{"n":"a\" {secret}"}}"#)),
            detail_of::<Typed>(&format!(r#"{{"kind":"{secret}"}}"#)),
            detail_of::<Strict>(&format!(r#"{{"n":1,"{secret}":2}}"#)),
        ] {
            assert!(!detail.contains("4111"), "{detail}");
        }
        let long = detail_of::<Typed>(&format!(r#"{{"kind":"{}"}}"#, "é".repeat(130)));
        assert!(long.len() <= MAX_DETAIL && !long.contains('é'), "{long}");
        assert!(detail_of::<Count>("{}").contains("missing field `n`"));
    }

    #[test]
    fn redaction_cuts_on_a_character_boundary() {
        let msg = format!("prefix {}", "é".repeat(200));
        let out = redact_values(&msg);
        assert!(out.len() <= MAX_DETAIL && out.starts_with("prefix é"), "{out}");
    }
}
