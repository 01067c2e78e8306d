//! Stripe-style: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`.

use super::{json_or_digest, non_empty, timestamp_v1, LenientId, LenientStr};
use crate::json_struct::json_struct;
use crate::profile::{q, secs, HeaderId, Permanent, RetrySchedule, SenderProfile};
use crate::wire::header;
use crate::{
    Authenticated, ConfigError, Context, Described, Provider, Rejection, RequestHead, Scheme, SignParams, Signed,
};

/// Stripe's scheme: HMAC-SHA256 keyed by the secret string as is, over `"{t}." + body`;
/// any of several `v1` may match (a secret being rolled sends one per secret); ±300 s.
///
/// ```
/// use hookguard_core::{schemes::Stripe, Verifier, RequestHead};
/// use hookguard_core::clock::ManualClock;
/// // Known answer from stripe-dotnet's EventUtilityTest (payload ends with one newline).
/// let body = include_bytes!("../../tests/vectors/stripe_event.json");
/// let mut headers = http::HeaderMap::new();
/// headers.insert("stripe-signature", "t=1533204620,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7".parse().unwrap());
/// let v = Verifier::builder(Stripe::new()).secret("webhook_secret").clock(ManualClock::new(1_533_204_720)).build().unwrap();
/// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
/// let d = v.verify(&RequestHead::new(&m, &u, &headers), bytes::Bytes::from_static(body)).unwrap();
/// assert_eq!(d.delivery().unwrap().event_id(), Some("evt_123"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Stripe {
    _priv: (),
}

static SIGNATURE: http::HeaderName = http::HeaderName::from_static(Stripe::SIGNATURE_HEADER);

impl Stripe {
    /// The signature header.
    ///
    /// ```
    /// use hookguard_core::{schemes::Stripe, Scheme, SignParams};
    /// let s = Stripe::new().sign("whsec_k", b"{}", &SignParams::new(1_533_204_620)).unwrap();
    /// assert_eq!(s.headers[0].0, Stripe::SIGNATURE_HEADER);
    /// assert!(s.headers[0].1.to_str().unwrap().starts_with("t=1533204620,v1="));
    /// ```
    pub const SIGNATURE_HEADER: &'static str = "stripe-signature";

    /// The scheme with Stripe's rules.
    ///
    /// ```
    /// use hookguard_core::{schemes::Stripe, testing};
    /// let d = testing::deliver(Stripe::new(), "whsec_k", br#"{"id":"evt_1","type":"invoice.paid"}"#).unwrap();
    /// // `testing::deliver` signs at 1_700_000_000.
    /// assert_eq!((d.event_id(), d.timestamp()), (Some("evt_1"), Some(1_700_000_000)));
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

impl Scheme for Stripe {
    fn provider(&self) -> Provider {
        Provider::Stripe
    }

    fn profile(&self) -> SenderProfile {
        SenderProfile {
            name: "Stripe",
            // Stripe publishes no exact number: assumed 10 s.
            timeout: secs(10),
            timeout_assumed: true,
            schedule: RetrySchedule::Exponential {
                base: secs(60),
                cap: secs(12 * 3600),
                horizon: secs(72 * 3600),
            },
            schedule_doc: "retries for up to 3 days (intervals unpublished: assumed 1 min doubling, capped at 12 h)",
            retry_note: "",
            permanent: Permanent::Never,
            give_up: "Stripe gives up after 3 days",
            kill_switch: None,
            event_types: &["payment_intent.succeeded"],
            header_id: HeaderId::None,
            header_type: None,
            sample: |rng, kind, now| {
                format!(
                    r#"{{"id":"evt_{}","object":"event","api_version":"2024-06-20","created":{now},"data":{{"object":{{"id":"pi_{}","object":"payment_intent","amount":2000,"currency":"usd"}}}},"livemode":false,"type":{}}}"#,
                    rng.hex(12),
                    rng.hex(12),
                    q(kind.unwrap_or("payment_intent.succeeded"))
                )
                .into_bytes()
            },
        }
    }

    fn authenticate(&self, req: &RequestHead<'_>, body: &[u8], ctx: &Context<'_>) -> Result<Authenticated, Rejection> {
        let value = ctx
            .header(req, &SIGNATURE)?
            .ok_or(Rejection::MissingSignature("Stripe-Signature"))?;
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
        // Stripe sends an id on every event; without one (or one too long to keep), a retry
        // still carries the same bytes, so the body's digest recognises it.
        let key = id.clone().or_else(|| Some(super::body_digest(body)));
        Ok(Described {
            dedupe_key: key,
            event_id: id,
            event_type: p.kind,
            ..Described::default()
        })
    }

    fn sign(&self, secret: &str, body: &[u8], params: &SignParams) -> Result<Signed, ConfigError> {
        let headers = vec![header(
            Self::SIGNATURE_HEADER,
            timestamp_v1::sign(secret.as_bytes(), params.timestamp, body),
        )?];
        Ok(Signed { headers, query: None })
    }
}
