//! Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<b64> …`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;

use crate::profile::{q, rfc3339, secs, HeaderId, Permanent, RetrySchedule, SenderProfile};
use crate::wire::{header, parse_timestamp, Candidates};
use crate::{
    Authenticated, ConfigError, Context, Described, Key, Provider, Rejection, RequestHead, Scheme, SignParams, Signed,
};

/// The Standard Webhooks scheme: the secret is `whsec_` + base64, **decoded** to get the HMAC
/// key; the signed content is `"{id}.{timestamp}.{body}"`; the header is a space-separated
/// list of `v1,<base64>` (any may match); ±300 s; deduplicated on `webhook-id`.
///
/// ```
/// use hookguard_core::{schemes::StandardWebhooks, Scheme, SignParams};
/// // Known answer from the Standard Webhooks reference libraries.
/// let s = StandardWebhooks::new()
///     .sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", br#"{"test": 2432232314}"#,
///           &SignParams::new(1614265330).id("msg_p5jXN8AQM9LWM0D4loKWxJek"))
///     .unwrap();
/// let sig = s.headers.iter().find(|(n, _)| n == "webhook-signature").unwrap();
/// assert_eq!(sig.1, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
/// ```
#[derive(Debug, Clone, Default)]
pub struct StandardWebhooks {
    _priv: (),
}

static ID: http::HeaderName = http::HeaderName::from_static(StandardWebhooks::ID_HEADER);
static TIMESTAMP: http::HeaderName = http::HeaderName::from_static(StandardWebhooks::TIMESTAMP_HEADER);
static SIGNATURE: http::HeaderName = http::HeaderName::from_static(StandardWebhooks::SIGNATURE_HEADER);

impl StandardWebhooks {
    /// The id header.
    pub const ID_HEADER: &'static str = "webhook-id";
    /// The timestamp header.
    pub const TIMESTAMP_HEADER: &'static str = "webhook-timestamp";
    /// The signature header.
    pub const SIGNATURE_HEADER: &'static str = "webhook-signature";

    /// The scheme with the specification's rules.
    pub fn new() -> Self {
        Self::default()
    }

    fn decode_secret(secret: &str) -> Result<Vec<u8>, &'static str> {
        let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
        let key = STANDARD.decode(b64).map_err(|_| "not base64 after the whsec_ prefix")?;
        if key.is_empty() {
            return Err("empty key");
        }
        Ok(key)
    }
}

fn decode_b64_mac(s: &str) -> Option<[u8; 32]> {
    // 32 bytes are 44 base64 characters; anything else is never a candidate.
    if s.len() != 44 {
        return None;
    }
    let mut buf = [0u8; 33];
    match STANDARD.decode_slice(s, &mut buf) {
        Ok(32) => buf[..32].try_into().ok(),
        _ => None,
    }
}

#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

impl Scheme for StandardWebhooks {
    fn provider(&self) -> Provider {
        Provider::StandardWebhooks
    }

    fn profile(&self) -> SenderProfile {
        SenderProfile {
            name: "Standard Webhooks sender",
            // Svix (the Standard Webhooks reference sender) waits 15 s.
            timeout: secs(15),
            schedule: RetrySchedule::Fixed(
                const {
                    &[
                        secs(5),
                        secs(300),
                        secs(1800),
                        secs(2 * 3600),
                        secs(5 * 3600),
                        secs(10 * 3600),
                        secs(10 * 3600),
                    ]
                },
            ),
            schedule_doc: "8 attempts: now, +5 s, +5 min, +30 min, +2 h, +5 h, +10 h, +10 h (Svix)",
            retry_note: "",
            permanent: Permanent::Never,
            give_up: "the sender gives up",
            kill_switch: None,
            event_types: &["invoice.paid"],
            header_id: HeaderId::Fresh("msg_"),
            header_type: None,
            sample: |rng, kind, now| {
                format!(
                    r#"{{"type":{},"timestamp":{},"data":{{"invoiceId":"inv_{}","amount":12500,"currency":"USD"}}}}"#,
                    q(kind.unwrap_or("invoice.paid")),
                    q(&rfc3339(now, 0)),
                    rng.hex(6)
                )
                .into_bytes()
            },
        }
    }

    fn key(&self, secret: &str) -> Result<Key, &'static str> {
        Self::decode_secret(secret).map(|k| Key::hmac(&k))
    }

    fn authenticate(&self, req: &RequestHead<'_>, body: &[u8], ctx: &Context<'_>) -> Result<Authenticated, Rejection> {
        let id = ctx.header(req, &ID)?.ok_or(Rejection::MissingHeader("webhook-id"))?;
        let ts_raw = ctx
            .header(req, &TIMESTAMP)?
            .ok_or(Rejection::MissingHeader("webhook-timestamp"))?
            .trim();
        let sig = ctx
            .header(req, &SIGNATURE)?
            .ok_or(Rejection::MissingSignature("webhook-signature"))?;
        if id.is_empty() {
            return Err(Rejection::MissingHeader("webhook-id"));
        }
        let ts = parse_timestamp(ts_raw)?;
        let mut sigs = Candidates::new();
        for entry in sig.split_ascii_whitespace() {
            let mac = match entry.split_once(',') {
                Some(("v1", b64)) => decode_b64_mac(b64),
                _ => None,
            };
            sigs.push(mac, ctx.max_signatures())?;
        }
        ctx.check_timestamp(ts)?;
        sigs.verify(ctx.keys(), &[id.as_bytes(), b".", ts_raw.as_bytes(), b".", body])?;
        Ok(Authenticated::at(ts))
    }

    fn describe(&self, req: &RequestHead<'_>, body: &[u8]) -> Result<Described, Rejection> {
        let id = req
            .headers
            .get(Self::ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // The payload is usually JSON with a `type`; the signature does not depend on it.
        let kind = serde_json::from_slice::<Probe>(body).ok().and_then(|p| p.kind);
        Ok(Described {
            dedupe_key: id.clone(),
            event_id: id,
            event_type: kind,
            ..Described::default()
        })
    }

    fn sign(&self, secret: &str, body: &[u8], params: &SignParams) -> Result<Signed, ConfigError> {
        let key = Self::decode_secret(secret).map_err(|reason| ConfigError::InvalidSecret { index: 0, reason })?;
        let id = params.id.clone().unwrap_or_else(|| format!("msg_{}", params.timestamp));
        let ts = params.timestamp.to_string();
        let mac = crate::key::mac_of(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
        let headers = vec![
            header(Self::ID_HEADER, &id)?,
            header(Self::TIMESTAMP_HEADER, &ts)?,
            header(Self::SIGNATURE_HEADER, format!("v1,{}", STANDARD.encode(mac)))?,
        ];
        Ok(Signed { headers, query: None })
    }
}
