//! Slack: `X-Slack-Signature: v0=<hex>` over `"v0:{ts}:{body}"`.

use crate::json_struct::json_struct;
use crate::profile::{q, secs, HeaderId, Permanent, RetrySchedule, SenderProfile};
use crate::wire::{decode_hex_mac, header, mac_hex, parse_timestamp, Candidates};
use crate::{
    Authenticated, ConfigError, Context, Described, Provider, Rejection, RequestHead, Scheme, SignParams, Signed,
};

/// Slack's scheme: HMAC-SHA256 with the signing secret over `"v0:{ts}:{body}"`, ±300 s.
/// A signed `url_verification` POST is answered with its `challenge`; Events API deliveries
/// are deduplicated on `event_id` (Slack keeps it on retries).
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
    pub const SIGNATURE_HEADER: &'static str = "x-slack-signature";
    /// The timestamp header.
    pub const TIMESTAMP_HEADER: &'static str = "x-slack-request-timestamp";

    /// The scheme with Slack's rules.
    pub fn new() -> Self {
        Self::default()
    }
}

struct Probe {
    kind: Option<String>,
    challenge: Option<String>,
    event_id: Option<String>,
}

json_struct! {
    Deserialize for Probe {
        kind: "type" (default),
        challenge: "challenge" (default),
        event_id: "event_id" (default, with super::OptId),
    }
}

impl Scheme for Slack {
    fn provider(&self) -> Provider {
        Provider::Slack
    }

    fn signed_headers(&self) -> &[http::HeaderName] {
        &SIGNED_HEADERS
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
            event_type: p.kind,
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
