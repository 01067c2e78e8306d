//! GitHub: `X-Hub-Signature-256: sha256=<hex>`.

use crate::profile::{secs, HeaderId, Permanent, RetrySchedule, SenderProfile};
use crate::wire::{decode_hex_mac, header, mac_hex, Candidates};
use crate::{
    Authenticated, ConfigError, Context, Described, Provider, Rejection, RequestHead, Scheme, SignParams, Signed,
};

/// GitHub's scheme: HMAC-SHA256 of the raw body with the secret string; no timestamp, so no
/// replay window. `X-GitHub-Delivery` is reported as the event id, but it is *not* signed, so
/// it is not the dedupe key: a captured body replayed with fresh delivery ids would run the
/// handler each time and store a new key each time. The dedupe key is a digest of the signed
/// body instead, so every replay or redelivery of one body is one event.
///
/// ```
/// use hookguard_core::{schemes::GitHub, Verifier, RequestHead};
/// // Known answer from GitHub's "Validating webhook deliveries".
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17".parse().unwrap());
/// let v = Verifier::builder(GitHub::new()).secret("It's a Secret to Everybody").build().unwrap();
/// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
/// assert!(v.verify(&RequestHead::new(&m, &u, &headers), bytes::Bytes::from_static(b"Hello, World!")).is_ok());
/// ```
#[derive(Debug, Clone, Default)]
pub struct GitHub {
    _priv: (),
}

static SIGNATURE: http::HeaderName = http::HeaderName::from_static(GitHub::SIGNATURE_HEADER);

impl GitHub {
    /// The signature header.
    pub const SIGNATURE_HEADER: &'static str = "x-hub-signature-256";

    /// The scheme with GitHub's rules.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Scheme for GitHub {
    fn provider(&self) -> Provider {
        Provider::GitHub
    }

    fn profile(&self) -> SenderProfile {
        SenderProfile {
            name: "GitHub",
            timeout: secs(10),
            schedule: RetrySchedule::Fixed(&[]),
            schedule_doc: "1 attempt: GitHub does not retry failed deliveries",
            retry_note: "",
            permanent: Permanent::Never,
            give_up: "GitHub does not retry: redeliver by hand from the webhook's Recent Deliveries",
            kill_switch: None,
            event_types: &["ping", "push"],
            header_id: HeaderId::FreshGuid,
            header_type: None,
            sample: |rng, kind, _now| {
                match kind {
                None | Some("ping") => br#"{"zen":"Keep it logically awesome.","hook_id":109948940,"hook":{"type":"Repository","id":109948940,"active":true,"events":["push"]}}"#.to_vec(),
                Some(_) => format!(
                    r#"{{"ref":"refs/heads/main","before":"{}","after":"{}","repository":{{"id":1296269,"full_name":"octocat/Hello-World"}}}}"#,
                    rng.hex(20),
                    rng.hex(20)
                )
                .into_bytes(),
            }
            },
        }
    }

    fn has_timestamp(&self) -> bool {
        false
    }

    fn authenticate(&self, req: &RequestHead<'_>, body: &[u8], ctx: &Context<'_>) -> Result<Authenticated, Rejection> {
        let value = ctx
            .header(req, &SIGNATURE)?
            .ok_or(Rejection::MissingSignature("X-Hub-Signature-256"))?;
        let hex = value
            .trim()
            .strip_prefix("sha256=")
            .ok_or(Rejection::MalformedSignature)?;
        let mut sigs = Candidates::new();
        sigs.push(decode_hex_mac(hex), ctx.max_signatures())?;
        sigs.verify(ctx.keys(), &[body])?;
        Ok(Authenticated::default())
    }

    fn dedupe_policy(&self) -> crate::DedupePolicy {
        crate::DedupePolicy::BodyDigest
    }

    fn describe(&self, req: &RequestHead<'_>, body: &[u8]) -> Result<Described, Rejection> {
        let get = |name| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty() && v.len() <= 128)
                .map(str::to_owned)
        };
        Ok(Described {
            dedupe_key: Some(super::body_digest(body)),
            event_id: get("x-github-delivery"),
            event_type: get("x-github-event"),
            ..Described::default()
        })
    }

    fn sign(&self, secret: &str, body: &[u8], params: &SignParams) -> Result<Signed, ConfigError> {
        let mac = crate::key::mac_of(secret.as_bytes(), &[body]);
        let mut headers = vec![header(Self::SIGNATURE_HEADER, format!("sha256={}", mac_hex(&mac)))?];
        if let Some(id) = &params.id {
            headers.push(header("x-github-delivery", id)?);
        }
        headers.push(header(
            "x-github-event",
            params.event_type.as_deref().unwrap_or("ping"),
        )?);
        Ok(Signed { headers, query: None })
    }
}
