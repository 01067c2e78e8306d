//! Slack: `X-Slack-Signature: v0=<hex>` over `"v0:{ts}:{body}"`.

use crate::json_struct::json_struct;
use crate::profile::{q, secs, HeaderId, Permanent, RetrySchedule, SenderProfile};
use crate::wire::{decode_hex_mac, header, mac_hex, parse_timestamp, Candidates};
use crate::{
    Authenticated, ConfigError, Context, Described, Provider, Rejection, RequestHead, Scheme, SignParams, Signed,
};

/// Slack's scheme: HMAC-SHA256 with the signing secret over `"v0:{ts}:{body}"`, ±300 s.
/// A signed `url_verification` POST is answered with its `challenge`; Events API deliveries
/// are deduplicated on `event_id` (Slack keeps it on retries) and typed by their inner event
/// (`app_mention`). Slash commands and interactivity (forms) carry no id: copies are
/// recognised by the body's digest; they are typed by the `command` (`/deploy`) and by the
/// interaction's `type` (`block_actions`).
///
/// ```
/// use hookguard_core::{schemes::Slack, Scheme, SignParams};
/// let s = Slack::new().sign("secret", b"{}", &SignParams::new(1)).unwrap();
/// assert_eq!(s.headers.len(), 2);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Slack {
    _priv: (),
}

static SIGNATURE: http::HeaderName = http::HeaderName::from_static(Slack::SIGNATURE_HEADER);
static TIMESTAMP: http::HeaderName = http::HeaderName::from_static(Slack::TIMESTAMP_HEADER);
/// `v0:{ts}:{body}`: the timestamp header is signed (a dedupe key may use it).
static SIGNED_HEADERS: [http::HeaderName; 1] = [http::HeaderName::from_static(Slack::TIMESTAMP_HEADER)];

impl Slack {
    /// The signature header.
    ///
    /// ```
    /// use hookguard_core::{schemes::Slack, Scheme, SignParams};
    /// let s = Slack::new().sign("secret", b"token=x", &SignParams::new(1_700_000_000)).unwrap();
    /// assert!(s.headers.iter().any(|(n, v)| n == Slack::SIGNATURE_HEADER && v.to_str().unwrap().starts_with("v0=")));
    /// ```
    pub const SIGNATURE_HEADER: &'static str = "x-slack-signature";
    /// The timestamp header.
    ///
    /// ```
    /// use hookguard_core::{schemes::Slack, Scheme, SignParams};
    /// let s = Slack::new().sign("secret", b"token=x", &SignParams::new(1_700_000_000)).unwrap();
    /// assert!(s.headers.iter().any(|(n, v)| n == Slack::TIMESTAMP_HEADER && v == "1700000000"));
    /// ```
    pub const TIMESTAMP_HEADER: &'static str = "x-slack-request-timestamp";

    /// The scheme with Slack's rules.
    ///
    /// ```
    /// use hookguard_core::{schemes::Slack, testing};
    /// let body = br#"{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}"#;
    /// let d = testing::deliver(Slack::new(), "secret", body).unwrap();
    /// assert_eq!((d.event_id(), d.event_type()), (Some("Ev1"), Some("app_mention")));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

struct Probe {
    kind: Option<String>,
    challenge: Option<String>,
    event_id: Option<String>,
    event: Option<InnerType>,
}

json_struct! {
    Deserialize for Probe {
        kind: "type" (default),
        challenge: "challenge" (default),
        event_id: "event_id" (default, with super::OptId),
        event: "event" (default),
    }
}

/// The `type` of an Events API wrapper's `event` (`app_mention`, `message`…): the wrapper's own
/// `type` is `event_callback` for every event. Read leniently: anything but an object with a
/// string `type` is no type, never a failed probe (which would lose the `event_id`).
struct InnerType(Option<String>);

impl<'de> serde::Deserialize<'de> for InnerType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(InnerTypeVisitor)
    }
}

struct InnerTypeVisitor;

impl<'de> serde::de::Visitor<'de> for InnerTypeVisitor {
    type Value = InnerType;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<InnerType, A::Error> {
        let mut kind = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "type" && kind.is_none() {
                kind = map
                    .next_value::<super::LenientId>()?
                    .0
                    .filter(|t| !t.is_empty() && !t.bytes().all(|b| b.is_ascii_digit()));
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(InnerType(kind))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<InnerType, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(InnerType(None))
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<InnerType, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_none<E>(self) -> Result<InnerType, E> {
        Ok(InnerType(None))
    }
    fn visit_unit<E>(self) -> Result<InnerType, E> {
        Ok(InnerType(None))
    }
    fn visit_bool<E>(self, _: bool) -> Result<InnerType, E> {
        Ok(InnerType(None))
    }
    fn visit_i64<E>(self, _: i64) -> Result<InnerType, E> {
        Ok(InnerType(None))
    }
    fn visit_u64<E>(self, _: u64) -> Result<InnerType, E> {
        Ok(InnerType(None))
    }
    fn visit_f64<E>(self, _: f64) -> Result<InnerType, E> {
        Ok(InnerType(None))
    }
    fn visit_str<E>(self, _: &str) -> Result<InnerType, E> {
        Ok(InnerType(None))
    }
}

impl Scheme for Slack {
    fn provider(&self) -> Provider {
        Provider::Slack
    }

    fn signed_headers(&self) -> &[http::HeaderName] {
        &SIGNED_HEADERS
    }

    /// Slack takes a slash command's or an interaction's `2xx` body as the app's answer (a
    /// message; a modal's `response_action`): its acknowledgement is an empty `200`.
    fn acknowledges_empty(&self) -> bool {
        true
    }

    fn profile(&self) -> SenderProfile {
        SenderProfile {
            name: "Slack",
            timeout: secs(3),
            timeout_assumed: false,
            schedule: RetrySchedule::Fixed(const { &[secs(1), secs(60), secs(300)] }),
            schedule_doc: "4 attempts: now, nearly immediately (+1 s), +1 min, +5 min",
            retry_note: "",
            permanent: Permanent::Never,
            give_up: "Slack gives up after 3 retries",
            kill_switch: None,
            event_types: &["app_mention"],
            header_id: HeaderId::None,
            header_type: None,
            sample: |rng, kind, now| {
                format!(
                    r#"{{"token":"XXYYZZ","team_id":"T123ABC456","api_app_id":"A123ABC456","event":{{"type":{},"user":"U123ABC456","text":"<@U0LAN0Z89> is it everything a river should be?","ts":"{now}.000100","channel":"C123ABC456"}},"type":"event_callback","event_id":"Ev{}","event_time":{now}}}"#,
                    q(kind.unwrap_or("app_mention")),
                    rng.hex(5).to_uppercase()
                )
                .into_bytes()
            },
        }
    }

    fn authenticate(&self, req: &RequestHead<'_>, body: &[u8], ctx: &Context<'_>) -> Result<Authenticated, Rejection> {
        let [sig, ts_raw] = Context::raw_headers(req, [&SIGNATURE, &TIMESTAMP]);
        if let Some(name) = Context::repeated(req, &[&SIGNATURE, &TIMESTAMP]) {
            return Err(Rejection::RepeatedHeader(name));
        }
        let sig = ctx
            .checked(&SIGNATURE, sig)?
            .ok_or(Rejection::MissingSignature("X-Slack-Signature"))?;
        let ts_raw = ctx
            .checked(&TIMESTAMP, ts_raw)?
            .ok_or(Rejection::MissingHeader("X-Slack-Request-Timestamp"))?
            .trim();
        let ts = parse_timestamp(ts_raw)?;
        let hex = sig.trim().strip_prefix("v0=").ok_or(Rejection::MalformedSignature)?;
        let mut sigs = Candidates::new();
        sigs.push(decode_hex_mac(hex), ctx.max_signatures())?;
        sigs.verify(ctx.keys(), &[b"v0:", ts_raw.as_bytes(), b":", body])?;
        Ok(Authenticated::at(ts))
    }

    fn describe(&self, _req: &RequestHead<'_>, body: &[u8]) -> Result<Described, Rejection> {
        // Slash commands and interactivity are form-encoded: authentic, but carry no event id;
        // a copy of the same bytes (a replay within the window) is the same request, so the
        // body's digest recognises it.
        let Ok(p) = crate::json_fast::from_slice::<Probe>(body) else {
            return Ok(Described {
                dedupe_key: Some(super::body_digest(body)),
                event_type: form_type(body),
                ..Described::default()
            });
        };
        let challenge = if p.kind.as_deref() == Some("url_verification") {
            Some(
                p.challenge
                    .filter(|c| !c.is_empty())
                    .ok_or(Rejection::ChallengeMissing)?,
            )
        } else {
            None
        };
        let id = super::non_empty(p.event_id);
        // Without an event id (or one too long to keep), the body's digest recognises copies.
        let key = match (&id, &challenge) {
            (Some(id), _) => Some(id.clone()),
            (None, None) => Some(super::body_digest(body)),
            (None, Some(_)) => None,
        };
        Ok(Described {
            dedupe_key: key,
            event_id: id,
            // An Events API delivery is typed by its event (`app_mention`); the wrapper's
            // `event_callback` says only that it is one.
            event_type: match (p.kind, p.event.and_then(|e| e.0)) {
                (Some(k), Some(inner)) if k == "event_callback" => Some(inner),
                (k, _) => k,
            },
            challenge,
            ..Described::default()
        })
    }

    fn sign(&self, secret: &str, body: &[u8], params: &SignParams) -> Result<Signed, ConfigError> {
        let ts = params.timestamp.to_string();
        let mac = crate::key::mac_of(secret.as_bytes(), &[b"v0:", ts.as_bytes(), b":", body]);
        let headers = vec![
            header(Self::SIGNATURE_HEADER, format!("v0={}", mac_hex(&mac)))?,
            header(Self::TIMESTAMP_HEADER, ts)?,
        ];
        Ok(Signed { headers, query: None })
    }
}

/// A form-encoded request's type: a slash command's `command` (`/deploy`), else an
/// interactivity `payload`'s `type` (`block_actions`, `view_submission`, `shortcut`), so an
/// application (or `--exec`) can route them as it routes Events API deliveries. Read
/// leniently: anything else (another form, a field that does not decode, a type too long or
/// holding a control character) is no type, never a refusal.
fn form_type(body: &[u8]) -> Option<String> {
    let field = |name: &[u8]| {
        body.split(|&b| b == b'&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix(b"="))
    };
    let kind = match field(b"command") {
        Some(command) => String::from_utf8(crate::challenge::percent_decode(command, true)).ok()?,
        None => {
            let payload = crate::challenge::percent_decode(field(b"payload")?, true);
            crate::json_fast::from_slice::<Probe>(&payload).ok()?.kind?
        }
    };
    (!kind.is_empty() && super::usable_type(&kind)).then_some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(body: &str) -> Described {
        let (m, u, h) = (http::Method::POST, http::Uri::from_static("/"), http::HeaderMap::new());
        Slack::new()
            .describe(&RequestHead::new(&m, &u, &h), body.as_bytes())
            .unwrap()
    }

    /// An Events API delivery is typed by its event, as Slack's own sample's `app_mention`;
    /// the wrapper's `event_callback` is the type of every one. Whatever `event` holds, the
    /// `event_id` stays the key.
    #[test]
    fn an_events_api_delivery_is_typed_by_its_event() {
        let d = described(
            r#"{"type":"event_callback","event":{"user":"U1","type":"app_mention","blocks":[{"type":"rich_text"}]},"event_id":"Ev1"}"#,
        );
        assert_eq!(d.event_type.as_deref(), Some("app_mention"));
        assert_eq!(d.dedupe_key.as_deref(), Some("Ev1"));
        for odd in [r#""x""#, "7", "null", "[1,{}]", r#"{"type":5}"#, r#"{"type":""}"#, "{}"] {
            let d = described(&format!(
                r#"{{"type":"event_callback","event":{odd},"event_id":"Ev2"}}"#
            ));
            assert_eq!(d.event_type.as_deref(), Some("event_callback"), "{odd}");
            assert_eq!(d.dedupe_key.as_deref(), Some("Ev2"), "{odd}");
        }
        // Other wrappers keep their own type.
        let d = described(r#"{"type":"app_rate_limited","event":{"type":"x"},"minute_rate_limited":1}"#);
        assert_eq!(d.event_type.as_deref(), Some("app_rate_limited"));
        // The sample's type is the one its profile names.
        let prof = Slack::new().profile();
        let body = (prof.sample)(&mut crate::profile::SampleRng::new(1), None, 1_700_000_000);
        assert_eq!(
            described(std::str::from_utf8(&body).unwrap()).event_type.as_deref(),
            Some(prof.event_types[0])
        );
    }

    /// Slash commands and interactivity are forms: typed by the command and by the payload's
    /// `type`; copies are still recognised by the body's digest, and a form that says neither
    /// (or says it unusably) has no type.
    #[test]
    fn slash_commands_and_interactivity_are_typed() {
        let command = "token=gIkuvaNzQIHg97ATvDxqgjtO&team_id=T0001&command=%2Fweather&text=94070+now&trigger_id=13345224609.738474920.8088930838d88f008e0";
        let d = described(command);
        assert_eq!(d.event_type.as_deref(), Some("/weather"));
        assert_eq!(d.event_id, None);
        assert_eq!(d.dedupe_key, Some(crate::schemes::body_digest(command.as_bytes())));
        let action = "payload=%7B%22type%22%3A%22block_actions%22%2C%22token%22%3A%22x%22%2C%22actions%22%3A%5B%7B%22type%22%3A%22button%22%7D%5D%7D";
        assert_eq!(described(action).event_type.as_deref(), Some("block_actions"));
        let spaced = "payload={\"type\":+\"view_submission\"}";
        assert_eq!(described(spaced).event_type.as_deref(), Some("view_submission"));
        for untyped in [
            "text=hi&user_id=U1",
            "commands=%2Fx",
            "command=",
            "command=%2Fa%00b",
            "command=%ff",
            "payload=%7B%22type%22%3A5%7D",
            "payload=not-json",
            "payload=%7B%22type%22%3A%22%22%7D",
        ] {
            let d = described(untyped);
            assert_eq!(d.event_type, None, "{untyped}");
            assert_eq!(
                d.dedupe_key,
                Some(crate::schemes::body_digest(untyped.as_bytes())),
                "{untyped}"
            );
        }
        let long = format!("command=%2F{}", "x".repeat(super::super::MAX_TYPE_LEN));
        assert_eq!(described(&long).event_type, None);
    }
}
