//! BuildWorkPro: `BuildWorkPro-Signature: t=<unix>,v1=<hex>`.

use super::{json_or_digest, non_empty, timestamp_v1, LenientId, LenientStr};
use crate::json_struct::json_struct;
use crate::observe::KillSwitch;
use crate::profile::{q, rfc3339, secs, HeaderId, Permanent, RetrySchedule, SenderProfile};
use crate::wire::header;
use crate::{
    Authenticated, ConfigError, Context, Described, Provider, Rejection, RequestHead, Scheme, SignParams, Signed,
};

/// BuildWorkPro's scheme.
///
/// HMAC-SHA256 keyed by the signing secret's UTF-8 bytes **including** the `whsec_` prefix
/// (it is not base64-decoded), over `"{t}." + raw body`; ±300 s. Deduplicated on the body's
/// `id` (signed), not on `BuildWorkPro-Delivery-Id`, which changes when a delivery is replayed.
///
/// ```
/// use hookguard_core::{schemes::BuildWorkPro, Scheme, SignParams};
/// let signed = BuildWorkPro::new().sign("whsec_test", br#"{"id":"evt_1","type":"bid.accepted"}"#, &SignParams::new(1_700_000_000)).unwrap();
/// assert_eq!(signed.headers[0].0, "buildworkpro-signature");
/// assert!(signed.headers[0].1.to_str().unwrap().starts_with("t=1700000000,v1="));
/// ```
#[derive(Debug, Clone, Default)]
pub struct BuildWorkPro {
    _priv: (),
}

static SIGNATURE: http::HeaderName = http::HeaderName::from_static(BuildWorkPro::SIGNATURE_HEADER);

impl BuildWorkPro {
    /// The signature header.
    ///
    /// ```
    /// use hookguard_core::{schemes::BuildWorkPro, Scheme, SignParams};
    /// let s = BuildWorkPro::new().sign("whsec_k", b"{}", &SignParams::new(1)).unwrap();
    /// assert_eq!(s.headers[0].0, BuildWorkPro::SIGNATURE_HEADER);
    /// ```
    pub const SIGNATURE_HEADER: &'static str = "buildworkpro-signature";

    /// The scheme with BuildWorkPro's rules.
    ///
    /// ```
    /// use hookguard_core::{schemes::BuildWorkPro, testing, Provider, Scheme};
    /// assert_eq!(BuildWorkPro::new().provider(), Provider::BuildWorkPro);
    /// let d = testing::deliver(BuildWorkPro::new(), "whsec_k", br#"{"id":"evt_1","type":"bid.accepted"}"#).unwrap();
    /// assert_eq!(d.dedupe_key(), Some("buildworkpro:evt_1"));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

struct Probe {
    id: Option<String>,
    kind: Option<String>,
}

json_struct! {
    Deserialize for Probe {
        // Leniently (see `LenientStr`): a `type` that is no string is no type, an `id`
        // that is no string or integer no id (the body's digest keys the delivery).
        id: "id" (default, with LenientId),
        kind: "type" (default, with LenientStr),
    }
}

impl Scheme for BuildWorkPro {
    fn provider(&self) -> Provider {
        Provider::BuildWorkPro
    }

    fn profile(&self) -> SenderProfile {
        SenderProfile {
            name: "BuildWorkPro",
            timeout: secs(10),
            timeout_assumed: false,
            schedule: RetrySchedule::Fixed(
                const {
                    &[
                        secs(30),
                        secs(120),
                        secs(900),
                        secs(3600),
                        secs(6 * 3600),
                        secs(24 * 3600),
                    ]
                },
            ),
            schedule_doc: "7 attempts: now, +30 s, +2 min, +15 min, +1 h, +6 h, +24 h (±20 % jitter); \
                           a 4xx other than 408/429 stops at once",
            retry_note: " (±20 % jitter)",
            permanent: Permanent::ClientErrorsExcept408And429,
            give_up: "BuildWorkPro gives up on this event (20 consecutive failures disable the endpoint)",
            kill_switch: Some(KillSwitch::new(
                20,
                "disables this endpoint after 20 consecutive failed deliveries",
                "the endpoint is probably disabled: re-enable it in BuildWorkPro",
            )),
            event_types: &[
                "bid.accepted",
                "bid.created",
                "bid.rejected",
                "project.created",
                "project.status_changed",
                "pay_app.submitted",
                "pay_app.approved",
                "change_order.submitted",
                "change_order.approved",
                "contact.created",
            ],
            header_id: HeaderId::FromBody("id"),
            header_type: Some("type"),
            sample: |rng, kind, now| {
                let ts = q(&rfc3339(now, (rng.next_u64() % 1000) as u32));
                format!(
                    r#"{{"id":"evt_{}","type":{},"created_at":{ts},"tenant_id":17,"data":{{"id":48213,"projectId":913,"status":"accepted","amountCents":12450000}},"previous_attributes":{{"status":"submitted"}}}}"#,
                    rng.hex(12),
                    q(kind.unwrap_or("bid.accepted"))
                )
                .into_bytes()
            },
        }
    }

    fn authenticate(&self, req: &RequestHead<'_>, body: &[u8], ctx: &Context<'_>) -> Result<Authenticated, Rejection> {
        let value = ctx
            .header(req, &SIGNATURE)?
            .ok_or(Rejection::MissingSignature("BuildWorkPro-Signature"))?;
        timestamp_v1::authenticate(value, body, ctx).map(Authenticated::at)
    }

    fn describe(&self, _req: &RequestHead<'_>, body: &[u8]) -> Result<Described, Rejection> {
        // JSON that is no object (never sent) is keyed by its digest and delivered, logged at
        // error level, instead of a `500` that every retry of the same bytes would get.
        let p: Probe = match json_or_digest(body, crate::DedupeScope::Retained)? {
            Ok(p) => p,
            Err(described) => return Ok(described),
        };
        let id = non_empty(p.id);
        // BuildWorkPro documents `id` on every event; should one arrive without it, a retry
        // still carries the same signed bytes, so the body's digest recognises it.
        let key = match &id {
            Some(id) => id.clone(),
            None => {
                tracing::warn!(
                    "BuildWorkPro delivery without a usable `id` (absent, empty, over 256 bytes, with a \
                     control character, or a number that is no whole number within 64 bits); \
                     deduplicating on a digest of the body"
                );
                super::body_digest(body)
            }
        };
        Ok(Described {
            dedupe_key: Some(key),
            event_id: id,
            event_type: p.kind,
            ..Described::default()
        })
    }

    fn sign(&self, secret: &str, body: &[u8], params: &SignParams) -> Result<Signed, ConfigError> {
        let mut headers = vec![header(
            Self::SIGNATURE_HEADER,
            timestamp_v1::sign(secret.as_bytes(), params.timestamp, body),
        )?];
        if let Some(id) = &params.id {
            headers.push(header("buildworkpro-event-id", id)?);
        }
        if let Some(t) = &params.event_type {
            headers.push(header("buildworkpro-event", t)?);
        }
        if let Some(d) = &params.delivery_id {
            headers.push(header("buildworkpro-delivery-id", d)?);
        }
        headers.push(header("user-agent", "BuildWorkPro-Webhooks/1.0")?);
        Ok(Signed { headers, query: None })
    }
}
