//! GitHub: `X-Hub-Signature-256: sha256=<hex>`.

use crate::json_struct::json_struct;
use crate::profile::{secs, HeaderId, Permanent, RetrySchedule, SenderProfile};
use crate::wire::{decode_hex_mac, header, mac_hex, Candidates};
use crate::{
    Authenticated, ConfigError, Context, Described, Provider, Rejection, RequestHead, Scheme, SignParams, Signed,
};

/// GitHub's scheme: HMAC-SHA256 of the raw body with the secret string; no timestamp, so no
/// replay window. `X-GitHub-Delivery` is reported as the event id, but it is *not* signed, so
/// it is not the dedupe key: a captured body replayed with fresh delivery ids would run the
/// handler each time and store a new key each time. The dedupe key is a digest of the signed
/// body instead, so every replay or redelivery of one body is one event — except dispatches
/// (`repository_dispatch`, `workflow_dispatch`): their bodies carry no id and no time, so a
/// second dispatch with the same inputs is byte-identical to the first and is a new event.
/// Their copies coalesce only while one is in flight
/// ([`DedupeScope::WhileInFlight`](crate::DedupeScope)), as HCSS's undated bodies do.
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
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, Scheme, SignParams};
    /// let s = GitHub::new().sign("s", b"{}", &SignParams::new(0)).unwrap();
    /// let (name, value) = &s.headers[0];
    /// assert_eq!(name, GitHub::SIGNATURE_HEADER);
    /// assert!(value.to_str().unwrap().starts_with("sha256="));
    /// ```
    pub const SIGNATURE_HEADER: &'static str = "x-hub-signature-256";

    /// The scheme with GitHub's rules.
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, testing};
    /// let d = testing::deliver(GitHub::new(), "s", br#"{"zen":"Keep it logically awesome."}"#).unwrap();
    /// assert!(d.dedupe_key().unwrap().starts_with("github:")); // a digest of the signed body
    /// assert_eq!(d.timestamp(), None); // GitHub signs no time
    /// ```
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
            timeout_assumed: false,
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
        let dedupe_scope = if is_dispatch(body) {
            crate::DedupeScope::WhileInFlight
        } else {
            crate::DedupeScope::Retained
        };
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
            dedupe_scope,
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

/// Whether a key is in a JSON object, whatever its value (`null` too).
#[derive(Default)]
struct Present(bool);

impl<'de> serde::Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}

/// The top-level keys that tell a dispatch (read from the signed body; the event header is not
/// signed).
#[derive(Default)]
struct Dispatch {
    client_payload: Present,
    inputs: Present,
    workflow: Present,
    workflow_run: Present,
}

json_struct! {
    Deserialize for Dispatch {
        client_payload: "client_payload" (default),
        inputs: "inputs" (default),
        workflow: "workflow" (default),
        workflow_run: "workflow_run" (default),
    }
}

/// A `repository_dispatch` (its `client_payload`) or a `workflow_dispatch` (`inputs` and
/// `workflow`, which `workflow_run` bodies also have, with the run). A body that is not a JSON
/// object (a form-encoded delivery) is not told apart: remembered, as before.
fn is_dispatch(body: &[u8]) -> bool {
    // An object only (the struct would also be read from an array, by position).
    let body = crate::json_fast::without_bom(body);
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return false;
    }
    match crate::json_fast::from_slice::<Dispatch>(body) {
        Ok(d) => d.client_payload.0 || (d.inputs.0 && d.workflow.0 && !d.workflow_run.0),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DedupeScope;

    fn scope(body: &str) -> DedupeScope {
        let (m, u, h) = (http::Method::POST, http::Uri::from_static("/"), http::HeaderMap::new());
        GitHub::new()
            .describe(&RequestHead::new(&m, &u, &h), body.as_bytes())
            .unwrap()
            .dedupe_scope
    }

    /// Two dispatches with the same inputs are byte-identical and both genuine: they coalesce
    /// only while one is in flight; every other body is remembered (a replayed body is one
    /// event).
    #[test]
    fn dispatches_coalesce_only_in_flight_and_other_bodies_are_remembered() {
        for dispatch in [
            r#"{"action":"deploy","branch":"main","client_payload":{"env":"prod"},"repository":{"id":1}}"#,
            r#"{"action":"deploy","client_payload":null,"repository":{"id":1}}"#,
            r#"{"inputs":{"env":"prod"},"ref":"refs/heads/main","repository":{"id":1},"workflow":".github/workflows/deploy.yml"}"#,
            r#"{"inputs":null,"ref":"refs/heads/main","workflow":".github/workflows/deploy.yml"}"#,
        ] {
            assert_eq!(scope(dispatch), DedupeScope::WhileInFlight, "{dispatch}");
        }
        for other in [
            r#"{"ref":"refs/heads/main","before":"a","after":"b","repository":{"id":1}}"#,
            r#"{"action":"completed","workflow_run":{"id":9},"workflow":{"id":3},"inputs":{}}"#,
            r#"{"zen":"Keep it logically awesome.","hook_id":1}"#,
            "payload=%7B%22client_payload%22%3A%7B%7D%7D",
            "not json",
            "[1]",
            r#"[{}, {"client_payload":{}}]"#,
            r#"{"repository":{"client_payload":{}}}"#,
        ] {
            assert_eq!(scope(other), DedupeScope::Retained, "{other}");
        }
    }
}
