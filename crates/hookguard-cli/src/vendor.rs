//! What each sender does: its timeout, its retry schedule, how it reads an answer, and
//! realistic sample bodies. The rules come from `PROVIDERS.md`; where a vendor publishes no
//! number, the assumption is stated here and in `hookguard send --help`.

use std::time::Duration;

use hookguard_core::SignParams;

use crate::common::ProviderArg;

/// What the sender saw of one attempt.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// An HTTP answer with this status.
    Status(u16),
    /// No answer within the vendor's timeout.
    Timeout,
    /// No connection, or the connection broke.
    Network,
}

/// What the sender does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// 2xx: the delivery is done.
    Delivered,
    /// It will try again after `after` (vendor time).
    Retry {
        /// The wait before the next attempt.
        after: Duration,
        /// What the vendor does meanwhile.
        note: String,
    },
    /// It gives up on this delivery.
    GiveUp {
        /// The vendor's verdict.
        verdict: String,
    },
}

const H: u64 = 3600;

/// One vendor's sending rules.
#[derive(Debug, Clone, Copy)]
pub struct Vendor(pub ProviderArg);

impl Vendor {
    /// How long the sender waits for an answer.
    pub fn timeout(self) -> Duration {
        Duration::from_secs(match self.0 {
            ProviderArg::BuildWorkPro => 10,
            ProviderArg::Procore => 5,
            // HCSS publishes no timeout: assume 10 s.
            ProviderArg::Hcss => 10,
            // Svix (the Standard Webhooks reference sender) waits 15 s.
            ProviderArg::Standard => 15,
            // Stripe publishes no exact number: assume 10 s.
            ProviderArg::Stripe => 10,
            ProviderArg::GitHub => 10,
            ProviderArg::Slack => 3,
        })
    }

    /// The most attempts for one delivery, when the schedule has a fixed count.
    pub fn max_attempts(self) -> Option<usize> {
        match self.0 {
            ProviderArg::Procore | ProviderArg::Stripe => None,
            _ => Some(self.fixed_waits().len() + 1),
        }
    }

    fn fixed_waits(self) -> &'static [u64] {
        match self.0 {
            ProviderArg::BuildWorkPro => &[30, 120, 900, H, 6 * H, 24 * H],
            // HCSS: "5 tries with exponential backoff"; intervals unpublished, assumed 1, 2, 4, 8 s.
            ProviderArg::Hcss => &[1, 2, 4, 8],
            // The Svix schedule the Standard Webhooks spec points to.
            ProviderArg::Standard => &[5, 300, 1800, 2 * H, 5 * H, 10 * H, 10 * H],
            // Slack: up to 3 retries — nearly immediately, after 1 min, after 5 min.
            ProviderArg::Slack => &[1, 60, 300],
            // GitHub does not retry automatically.
            ProviderArg::GitHub | ProviderArg::Procore | ProviderArg::Stripe => &[],
        }
    }

    /// The wait before attempt `attempts + 1`, given `elapsed` vendor time since the first
    /// attempt; `None` when the vendor gives up.
    pub fn next_wait(self, attempts: usize, elapsed: Duration) -> Option<Duration> {
        let exp = |base: u64, cap: u64, horizon: u64| {
            let w = base
                .saturating_mul(1u64 << (attempts.saturating_sub(1)).min(40))
                .min(cap);
            (elapsed.as_secs() + w <= horizon).then_some(Duration::from_secs(w))
        };
        match self.0 {
            // From 1 s doubling up to 1 h; the queue is discarded after 12 h.
            ProviderArg::Procore => exp(1, H, 12 * H),
            // Up to 3 days; intervals unpublished: assumed 1 min doubling, capped at 12 h.
            ProviderArg::Stripe => exp(60, 12 * H, 72 * H),
            _ => self
                .fixed_waits()
                .get(attempts.saturating_sub(1))
                .map(|s| Duration::from_secs(*s)),
        }
    }

    /// Reads the outcome of attempt number `attempts` (1-based) after `elapsed` vendor time.
    pub fn judge(self, outcome: &Outcome, attempts: usize, elapsed: Duration) -> Next {
        if let Outcome::Status(s) = outcome {
            if (200..300).contains(s) {
                return Next::Delivered;
            }
            if self.0 == ProviderArg::BuildWorkPro && (400..500).contains(s) && *s != 408 && *s != 429 {
                return Next::GiveUp {
                    verdict: format!(
                        "permanent failure: BuildWorkPro never retries a 4xx other than 408/429 (got {s})"
                    ),
                };
            }
        }
        let Some(after) = self.next_wait(attempts, elapsed) else {
            return Next::GiveUp {
                verdict: self.give_up_verdict(attempts),
            };
        };
        let w = human(after);
        let note = match self.0 {
            ProviderArg::BuildWorkPro => format!(
                "BuildWorkPro retries in {w} (±20 % jitter), attempt {} of 7",
                attempts + 1
            ),
            ProviderArg::Procore => format!(
                "Procore pauses this endpoint (its other deliveries wait too) and retries in {w}; \
                 the queue is discarded once 12 h have passed"
            ),
            ProviderArg::Hcss => {
                format!("HCSS retries in {w} (failed try {attempts} of 5; 5 failed tries stop the subscription)")
            }
            ProviderArg::Slack => format!("Slack retries in {w} (retry {attempts} of 3)"),
            p => format!("{} retries in {w}", p.display()),
        };
        Next::Retry { after, note }
    }

    fn give_up_verdict(self, attempts: usize) -> String {
        match self.0 {
            ProviderArg::BuildWorkPro => {
                "BuildWorkPro gives up after 7 attempts (20 consecutive failures disable the endpoint)".to_owned()
            }
            ProviderArg::Procore => {
                format!("12 h of failures ({attempts} attempts): Procore discards the endpoint's queued deliveries")
            }
            ProviderArg::Hcss => {
                "5 tries failed: HCSS marks the subscription Stopped; only re-subscribing revives it".to_owned()
            }
            ProviderArg::GitHub => {
                "GitHub does not retry: redeliver by hand from the webhook's Recent Deliveries".to_owned()
            }
            ProviderArg::Slack => "Slack gives up after 3 retries".to_owned(),
            ProviderArg::Standard => format!("the sender gives up after {attempts} attempts"),
            ProviderArg::Stripe => format!("Stripe gives up after 3 days ({attempts} attempts)"),
        }
    }

    /// One line describing the whole schedule, for help texts and `send`'s header.
    pub fn schedule_doc(self) -> &'static str {
        match self.0 {
            ProviderArg::BuildWorkPro => {
                "7 attempts: now, +30 s, +2 min, +15 min, +1 h, +6 h, +24 h (±20 % jitter); \
                 a 4xx other than 408/429 stops at once"
            }
            ProviderArg::Procore => {
                "any non-2xx pauses the endpoint; retries from 1 s doubling up to 1 h; discarded after 12 h"
            }
            ProviderArg::Hcss => {
                "5 tries with exponential backoff (HCSS publishes no intervals: assumed 1, 2, 4, 8 s); \
                 then the subscription is Stopped"
            }
            ProviderArg::Standard => "8 attempts: now, +5 s, +5 min, +30 min, +2 h, +5 h, +10 h, +10 h (Svix)",
            ProviderArg::Stripe => {
                "retries for up to 3 days (intervals unpublished: assumed 1 min doubling, capped at 12 h)"
            }
            ProviderArg::GitHub => "1 attempt: GitHub does not retry failed deliveries",
            ProviderArg::Slack => "4 attempts: now, nearly immediately (+1 s), +1 min, +5 min; 3 s timeout",
        }
    }
}

/// A duration as people say it: `30 s`, `2 min`, `1 h 30 min`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if d.is_zero() {
        return "0 s".to_owned();
    }
    if s == 0 {
        return format!("{} ms", d.as_millis());
    }
    if s < 60 {
        return format!("{s} s");
    }
    if s < H {
        return if s % 60 == 0 {
            format!("{} min", s / 60)
        } else {
            format!("{} min {} s", s / 60, s % 60)
        };
    }
    if s % H == 0 {
        format!("{} h", s / H)
    } else {
        format!("{} h {} min", s / H, (s % H) / 60)
    }
}

/// Random lower-case hex.
pub fn rand_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

/// A random GUID, as HCSS sends them.
pub fn guid() -> String {
    let h = rand_hex(16);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// A ULID for `unix_ms` with random bits (Crockford base32, 26 characters).
pub fn ulid(unix_ms: u64) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let rand_bits: u128 = rand::random::<u128>() & ((1u128 << 80) - 1);
    let v: u128 = (u128::from(unix_ms & ((1 << 48) - 1)) << 80) | rand_bits;
    (0..26)
        .rev()
        .map(|i| ALPHABET[((v >> (i * 5)) & 31) as usize] as char)
        .collect()
}

/// `unix` seconds as RFC 3339 UTC, with milliseconds.
pub fn rfc3339(unix: u64, millis: u32) -> String {
    let days = (unix / 86_400) as i64;
    let rem = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// A JSON string literal.
fn q(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// A realistic body for `p`, with fresh ids, keys in the order the vendor sends them.
pub fn sample_body(p: ProviderArg, event_type: Option<&str>, now: u64) -> Vec<u8> {
    let ts = q(&rfc3339(now, rand::random::<u32>() % 1000));
    let body = match p {
        ProviderArg::BuildWorkPro => format!(
            r#"{{"id":"evt_{}","type":{},"created_at":{ts},"tenant_id":17,"data":{{"bidId":48213,"projectId":913,"status":"accepted","amountCents":12450000}},"previous_attributes":{{"status":"submitted"}}}}"#,
            rand_hex(12),
            q(event_type.unwrap_or("bid.accepted"))
        ),
        ProviderArg::Procore => {
            // Legacy v2 payload: an `id` beyond 2^53 must stay exact digits.
            let id: u64 = (1u64 << 62) + rand::random::<u64>() % (1u64 << 62);
            format!(
                r#"{{"api_version":"v2","company_id":6452,"event_type":{},"id":{id},"metadata":{{"source_application_id":null,"source_company_id":6452,"source_operation_id":null,"source_project_id":219542,"source_user_id":1469242}},"project_id":219542,"resource_id":245510722,"resource_name":"Purchase Order Contract Line Items","timestamp":{ts},"ulid":"{}","user_id":1469242}}"#,
                q(event_type.unwrap_or("create")),
                ulid(now * 1000)
            )
        }
        // HCSS Setups shape: no event id at all.
        ProviderArg::Hcss => format!(
            r#"{{"companyId":"{}","eventType":{},"businessUnitId":"{}","id":"{}"}}"#,
            guid(),
            q(event_type.unwrap_or("EmployeeUpdated")),
            guid(),
            guid()
        ),
        ProviderArg::Standard => format!(
            r#"{{"type":{},"timestamp":{ts},"data":{{"invoiceId":"inv_{}","amount":12500,"currency":"USD"}}}}"#,
            q(event_type.unwrap_or("invoice.paid")),
            rand_hex(6)
        ),
        ProviderArg::Stripe => format!(
            r#"{{"id":"evt_{}","object":"event","api_version":"2024-06-20","created":{now},"data":{{"object":{{"id":"pi_{}","object":"payment_intent","amount":2000,"currency":"usd"}}}},"livemode":false,"type":{}}}"#,
            rand_hex(12),
            rand_hex(12),
            q(event_type.unwrap_or("payment_intent.succeeded"))
        ),
        ProviderArg::GitHub => match event_type {
            None | Some("ping") => r#"{"zen":"Keep it logically awesome.","hook_id":109948940,"hook":{"type":"Repository","id":109948940,"active":true,"events":["push"]}}"#.to_owned(),
            Some(_) => format!(
                r#"{{"ref":"refs/heads/main","before":"{}","after":"{}","repository":{{"id":1296269,"full_name":"octocat/Hello-World"}}}}"#,
                rand_hex(20),
                rand_hex(20)
            ),
        },
        ProviderArg::Slack => format!(
            r#"{{"token":"XXYYZZ","team_id":"T123ABC456","api_app_id":"A123ABC456","event":{{"type":{},"user":"U123ABC456","text":"<@U0LAN0Z89> is it everything a river should be?","ts":"{now}.000100","channel":"C123ABC456"}},"type":"event_callback","event_id":"Ev{}","event_time":{now}}}"#,
            q(event_type.unwrap_or("app_mention")),
            rand_hex(5).to_uppercase()
        ),
    };
    body.into_bytes()
}

/// The id and type a sender puts in headers for `body`: `--id`/`--event-type` when given,
/// else what the body says (BuildWorkPro's `id`/`type`). For `send`, `stable_id` fills the
/// id of senders whose header id must stay the same across retries (`webhook-id`,
/// `X-GitHub-Delivery`).
pub fn sign_params(
    p: ProviderArg,
    body: &[u8],
    timestamp: u64,
    id: Option<&str>,
    event_type: Option<&str>,
    stable_id: bool,
) -> SignParams {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |k: &str| {
        json.as_ref().and_then(|v| match v.get(k) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
    };
    let mut params = SignParams::new(timestamp);
    let id = id.map(str::to_owned).or_else(|| match p {
        ProviderArg::BuildWorkPro => field("id"),
        ProviderArg::Standard if stable_id => Some(format!("msg_{}", rand_hex(12))),
        ProviderArg::GitHub if stable_id => Some(guid()),
        _ => None,
    });
    if let Some(id) = id {
        params = params.id(id);
    }
    let kind = event_type.map(str::to_owned).or_else(|| match p {
        ProviderArg::BuildWorkPro => field("type"),
        _ => None,
    });
    if let Some(k) = kind {
        params = params.event_type(k);
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000, 5), "2023-11-14T22:13:20.005Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000Z");
    }

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
        let waits: Vec<_> = (1..=5).map(|n| v.next_wait(n, Duration::ZERO)).collect();
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
        for p in [
            ProviderArg::BuildWorkPro,
            ProviderArg::Procore,
            ProviderArg::Hcss,
            ProviderArg::Standard,
            ProviderArg::Stripe,
            ProviderArg::GitHub,
            ProviderArg::Slack,
        ] {
            let b = sample_body(p, None, 1_700_000_000);
            assert!(serde_json::from_slice::<serde_json::Value>(&b).is_ok(), "{p:?}");
        }
        let b = sample_body(ProviderArg::BuildWorkPro, Some("project.created"), 1);
        let params = sign_params(ProviderArg::BuildWorkPro, &b, 1, None, None, true);
        assert!(params.id.unwrap().starts_with("evt_"));
        assert_eq!(params.event_type.as_deref(), Some("project.created"));
    }
}
