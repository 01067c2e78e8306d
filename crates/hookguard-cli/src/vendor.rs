//! What each sender does — its timeout, retry schedule, verdicts and sample bodies — read from
//! the sender's profile in its scheme file (`hookguard_core::profile`), never from a table of
//! our own: adding a sender to the core's registry adds it here.

use std::time::Duration;

pub use hookguard_core::profile::{human, rfc3339, Attempt as Outcome, Next};
use hookguard_core::profile::{HeaderId, SampleRng};
use hookguard_core::SignParams;

use crate::common::ProviderArg;

/// One vendor's sending rules.
#[derive(Debug, Clone, Copy)]
pub struct Vendor(pub ProviderArg);

impl Vendor {
    /// How long the sender waits for an answer.
    pub fn timeout(self) -> Duration {
        self.0.profile().timeout
    }

    /// The timeout as shown: "10 s", with "(assumed)" where the sender publishes none.
    pub fn timeout_shown(self) -> String {
        let p = self.0.profile();
        let assumed = if p.timeout_assumed { " (assumed)" } else { "" };
        format!("{}{assumed}", human(p.timeout))
    }

    /// The most attempts for one delivery, when the schedule has a fixed count.
    pub fn max_attempts(self) -> Option<usize> {
        self.0.profile().max_attempts()
    }

    /// Reads the outcome of attempt number `attempts` (1-based) after `elapsed` vendor time.
    pub fn judge(self, outcome: &Outcome, attempts: usize, elapsed: Duration) -> Next {
        self.0.profile().judge(outcome, attempts, elapsed)
    }

    /// One line describing the whole schedule, for help texts and `send`'s header.
    pub fn schedule_doc(self) -> &'static str {
        self.0.profile().schedule_doc
    }
}

fn rng() -> SampleRng {
    SampleRng::new(rand::random::<u64>())
}

/// Random lower-case hex.
pub fn rand_hex(bytes: usize) -> String {
    rng().hex(bytes)
}

/// A random GUID, as HCSS sends them.
pub fn guid() -> String {
    rng().guid()
}

/// A ULID for `unix_ms` with random bits.
pub fn ulid(unix_ms: u64) -> String {
    rng().ulid(unix_ms)
}

/// A realistic body for `p` (from its profile), with fresh ids.
pub fn sample_body(p: ProviderArg, event_type: Option<&str>, now: u64) -> Vec<u8> {
    (p.profile().sample)(&mut rng(), event_type, now)
}

/// The id and type a sender puts in headers for `body`: `--id`/`--event-type` when given,
/// else what its profile says (BuildWorkPro's body `id`/`type`). For `send`, `stable_id` fills
/// the id of senders whose header id must stay the same across retries (`webhook-id`,
/// `X-GitHub-Delivery`, `x-adsk-delivery-id`).
pub fn sign_params(
    p: ProviderArg,
    body: &[u8],
    timestamp: u64,
    id: Option<&str>,
    event_type: Option<&str>,
    stable_id: bool,
) -> SignParams {
    let profile = p.profile();
    let json = crate::common::json_value(body);
    let field = |k: &str| {
        json.as_ref().and_then(|v| match v.get(k) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
    };
    let mut params = SignParams::new(timestamp);
    let id = id.map(str::to_owned).or_else(|| match profile.header_id {
        HeaderId::FromBody(k) => field(k),
        HeaderId::Fresh(prefix) if stable_id => Some(format!("{prefix}{}", rand_hex(12))),
        HeaderId::FreshGuid if stable_id => Some(guid()),
        _ => None,
    });
    if let Some(id) = id {
        params = params.id(id);
    }
    let kind = event_type
        .map(str::to_owned)
        .or_else(|| profile.header_type.and_then(field));
    if let Some(k) = kind {
        params = params.event_type(k);
    }
    // BuildWorkPro names each delivery attempt too ("Headers on every POST").
    if p.provider() == hookguard_core::Provider::BuildWorkPro {
        params = params.delivery_id(format!("dlv_{}", rand_hex(12)));
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulids_are_26_crockford_chars() {
        let u = ulid(1_700_000_000_000);
        assert_eq!(u.len(), 26);
        assert!(u.starts_with("01HF"), "{u}");
    }

    #[test]
    fn buildworkpro_schedule() {
        let v = Vendor(ProviderArg::BuildWorkPro);
        assert_eq!(v.judge(&Outcome::Status(204), 1, Duration::ZERO), Next::Delivered);
        assert!(matches!(
            v.judge(&Outcome::Status(401), 1, Duration::ZERO),
            Next::GiveUp { .. }
        ));
        for s in [408, 429, 500, 503] {
            assert!(matches!(
                v.judge(&Outcome::Status(s), 1, Duration::ZERO),
                Next::Retry { after, .. } if after == Duration::from_secs(30)
            ));
        }
        assert!(
            matches!(v.judge(&Outcome::Timeout, 6, Duration::ZERO), Next::Retry { after, .. } if after.as_secs() == 86_400)
        );
        assert!(matches!(
            v.judge(&Outcome::Network, 7, Duration::ZERO),
            Next::GiveUp { .. }
        ));
        assert_eq!(v.max_attempts(), Some(7));
    }

    #[test]
    fn procore_gives_up_after_12_hours() {
        let v = Vendor(ProviderArg::Procore);
        let (mut elapsed, mut attempts, mut waits) = (Duration::ZERO, 1, vec![]);
        while let Next::Retry { after, .. } = v.judge(&Outcome::Status(500), attempts, elapsed) {
            waits.push(after.as_secs());
            elapsed += after;
            attempts += 1;
        }
        assert_eq!(&waits[..4], &[1, 2, 4, 8]);
        assert!(waits.iter().all(|w| *w <= 3600));
        assert!(
            elapsed.as_secs() <= 12 * 3600 && elapsed.as_secs() > 11 * 3600,
            "{elapsed:?}"
        );
        // Procore retries every non-2xx, 4xx included.
        assert!(matches!(
            v.judge(&Outcome::Status(401), 1, Duration::ZERO),
            Next::Retry { .. }
        ));
    }

    #[test]
    fn hcss_stops_after_five_tries() {
        let v = Vendor(ProviderArg::Hcss);
        let waits: Vec<_> = (1..=5).map(|n| v.0.profile().next_wait(n, Duration::ZERO)).collect();
        assert_eq!(
            waits,
            [Some(1), Some(2), Some(4), Some(8), None].map(|s| s.map(Duration::from_secs))
        );
        assert!(
            matches!(v.judge(&Outcome::Status(500), 5, Duration::ZERO), Next::GiveUp { verdict } if verdict.contains("Stopped"))
        );
    }

    #[test]
    fn sample_bodies_verify_shape() {
        for p in hookguard_core::Provider::BUILT_IN.iter().map(|p| ProviderArg(*p)) {
            let b = sample_body(p, None, 1_700_000_000);
            assert!(serde_json::from_slice::<serde_json::Value>(&b).is_ok(), "{p:?}");
        }
        let b = sample_body(ProviderArg::BuildWorkPro, Some("project.created"), 1);
        let params = sign_params(ProviderArg::BuildWorkPro, &b, 1, None, None, true);
        assert!(params.id.unwrap().starts_with("evt_"));
        assert_eq!(params.event_type.as_deref(), Some("project.created"));
        // A string holding bytes that are not UTF-8 elsewhere in the body (the receiver
        // delivers it): the id and type still go in BuildWorkPro's headers, sent as JSON.
        let b = b"{\"id\":\"evt_bin2\",\"type\":\"bid.accepted\",\"data\":{\"n\":\"\xff\xfe caf\xe9\"}}";
        let params = sign_params(ProviderArg::BuildWorkPro, b, 1, None, None, true);
        assert_eq!(
            (params.id.as_deref(), params.event_type.as_deref()),
            (Some("evt_bin2"), Some("bid.accepted"))
        );
        assert_eq!(
            crate::common::content_type_of(&hookguard_core::Provider::BuildWorkPro, b),
            Some("application/json")
        );
    }
}
