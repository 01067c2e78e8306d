//! What each sender does with our answers: its timeout, its retry schedule, which answers it
//! treats as permanent, its kill switch, and a realistic sample body. Every built-in scheme
//! declares its [`SenderProfile`] in its own file (`Scheme::profile`); the CLI's `send`, `demo`,
//! help texts and verdicts, and the sender-health warnings read it from there.
//!
//! ```
//! use std::time::Duration;
//! use hookguard_core::{schemes::Procore, Scheme};
//! let p = Procore::new().profile();
//! assert_eq!(p.timeout, Duration::from_secs(5));
//! assert!(p.retry_horizon() >= Duration::from_secs(11 * 3600)); // 23 retries over ~11 h
//! ```

use std::time::Duration;

use crate::observe::KillSwitch;

/// How a sender spaces its attempts.
///
/// ```
/// use std::time::Duration;
/// use hookguard_core::{profile::RetrySchedule, schemes::{GitHub, Procore}, Scheme};
/// assert_eq!(GitHub::new().profile().schedule, RetrySchedule::Fixed(&[])); // no retries
/// let procore = Procore::new().profile().schedule;
/// assert!(matches!(procore, RetrySchedule::Exponential { cap, .. } if cap == Duration::from_secs(3600)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetrySchedule {
    /// The waits before attempts 2, 3, …; after the last it gives up. Empty: no retries.
    Fixed(&'static [Duration]),
    /// Doubling from `base` up to `cap`, while the total stays within `horizon` of the first
    /// attempt.
    Exponential {
        /// The first wait.
        base: Duration,
        /// The longest wait.
        cap: Duration,
        /// How long after the first attempt it keeps trying.
        horizon: Duration,
    },
}

/// Which failed answers the sender never retries.
///
/// ```
/// use hookguard_core::{profile::Permanent, schemes::{BuildWorkPro, Stripe}, Scheme};
/// assert_eq!(BuildWorkPro::new().profile().permanent, Permanent::ClientErrorsExcept408And429);
/// assert_eq!(Stripe::new().profile().permanent, Permanent::Never);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Permanent {
    /// It retries every failure.
    Never,
    /// Any 4xx but 408 and 429 drops the delivery at once (BuildWorkPro).
    ClientErrorsExcept408And429,
}

/// Which id a sender puts in its headers, for `hookguard sign`/`send`.
///
/// ```
/// use hookguard_core::{profile::HeaderId, schemes::{BuildWorkPro, GitHub}, Scheme};
/// assert_eq!(BuildWorkPro::new().profile().header_id, HeaderId::FromBody("id"));
/// assert_eq!(GitHub::new().profile().header_id, HeaderId::FreshGuid);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderId {
    /// None.
    None,
    /// The body's field of this name (BuildWorkPro's `id`).
    FromBody(&'static str),
    /// A fresh id with this prefix, stable across one delivery's retries (`msg_…`).
    Fresh(&'static str),
    /// A fresh GUID, stable across one delivery's retries (GitHub, APS).
    FreshGuid,
}

/// A sender's behaviour, as its documents describe it. Where a vendor publishes no number, the
/// profile says which assumption it makes (`schedule_doc`), and hookguard makes it
/// configurable rather than relying on it.
///
/// ```
/// use std::time::Duration;
/// use hookguard_core::{profile::SampleRng, schemes::BuildWorkPro, Scheme};
/// let p = BuildWorkPro::new().profile();
/// assert_eq!((p.name, p.timeout, p.max_attempts()), ("BuildWorkPro", Duration::from_secs(10), Some(7)));
/// // A realistic body, as `hookguard send` posts it.
/// let body = (p.sample)(&mut SampleRng::new(1), Some("bid.created"), 1_700_000_000);
/// assert!(String::from_utf8(body).unwrap().contains(r#""type":"bid.created""#));
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SenderProfile {
    /// The sender's name as people write it.
    pub name: &'static str,
    /// How long it waits for an answer.
    pub timeout: Duration,
    /// The sender publishes no timeout: `timeout` is assumed (shown as such).
    pub timeout_assumed: bool,
    /// How it retries.
    pub schedule: RetrySchedule,
    /// The whole schedule in one line, with any assumption stated.
    pub schedule_doc: &'static str,
    /// What else happens while it retries (appended to "retries in …").
    pub retry_note: &'static str,
    /// Which answers it never retries.
    pub permanent: Permanent,
    /// What happens when it gives up.
    pub give_up: &'static str,
    /// After how many failures it stops delivering altogether.
    pub kill_switch: Option<KillSwitch>,
    /// Event types it documents (the first is the sample's default).
    pub event_types: &'static [&'static str],
    /// The id it sends in headers.
    pub header_id: HeaderId,
    /// The body field whose value it sends as the event-type header, if any.
    pub header_type: Option<&'static str>,
    /// A realistic body: `(rng, event type or the default, unix now)`.
    pub sample: fn(&mut SampleRng, Option<&str>, u64) -> Vec<u8>,
}

impl SenderProfile {
    /// A profile for a sender nothing is known about: 10 s, no retries assumed.
    ///
    /// ```
    /// let p = hookguard_core::profile::SenderProfile::unknown("Acme");
    /// assert_eq!(p.max_attempts(), Some(1));
    /// ```
    pub fn unknown(name: &'static str) -> Self {
        Self {
            name,
            timeout: Duration::from_secs(10),
            timeout_assumed: true,
            schedule: RetrySchedule::Fixed(&[]),
            schedule_doc: "unknown: no retries assumed",
            retry_note: "",
            permanent: Permanent::Never,
            give_up: "the sender gives up",
            kill_switch: None,
            event_types: &["event"],
            header_id: HeaderId::None,
            header_type: None,
            sample: |_, _, _| b"{}".to_vec(),
        }
    }

    /// `wanted`, or less for a sender that waits less: never more than 1 s below its timeout
    /// (at least 1 s). What a receiver may spend on a part of its answer — reading the body,
    /// running an inline handler — while the sender still listens.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{schemes::{Procore, Slack}, Scheme};
    /// let four = Duration::from_secs(4);
    /// assert_eq!(Procore::new().profile().within_timeout(four), four); // waits 5 s
    /// assert_eq!(Slack::new().profile().within_timeout(four), Duration::from_secs(2)); // waits 3 s
    /// ```
    pub fn within_timeout(&self, wanted: Duration) -> Duration {
        within(self.timeout, wanted)
    }

    /// How long after the first attempt the sender still retries one delivery: the sum of a
    /// fixed schedule's waits, or an exponential schedule's horizon (jitter not included).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{schemes::Aps, Scheme};
    /// // Assumed +15 min, +1 h, +6 h, +48 h.
    /// assert_eq!(Aps::new().profile().retry_horizon(), Duration::from_secs(55 * 3600 + 900));
    /// ```
    pub fn retry_horizon(&self) -> Duration {
        match self.schedule {
            RetrySchedule::Fixed(waits) => waits.iter().fold(Duration::ZERO, |sum, w| sum.saturating_add(*w)),
            RetrySchedule::Exponential { horizon, .. } => horizon,
        }
    }

    /// The most attempts for one delivery, when the schedule has a fixed count.
    ///
    /// ```
    /// use hookguard_core::{schemes::{BuildWorkPro, GitHub, Procore}, Scheme};
    /// assert_eq!(BuildWorkPro::new().profile().max_attempts(), Some(7));
    /// assert_eq!(GitHub::new().profile().max_attempts(), Some(1)); // no retries
    /// assert_eq!(Procore::new().profile().max_attempts(), None); // retried until its horizon
    /// ```
    pub fn max_attempts(&self) -> Option<usize> {
        match self.schedule {
            RetrySchedule::Fixed(waits) => Some(waits.len() + 1),
            RetrySchedule::Exponential { .. } => None,
        }
    }

    /// The wait before attempt `attempts + 1`, `elapsed` after the first; `None` when it gives up.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{schemes::Hcss, Scheme};
    /// let p = Hcss::new().profile();
    /// assert_eq!(p.next_wait(1, Duration::ZERO), Some(Duration::from_secs(1)));
    /// assert_eq!(p.next_wait(5, Duration::ZERO), None);
    /// ```
    pub fn next_wait(&self, attempts: usize, elapsed: Duration) -> Option<Duration> {
        match self.schedule {
            RetrySchedule::Fixed(waits) => waits.get(attempts.saturating_sub(1)).copied(),
            RetrySchedule::Exponential { base, cap, horizon } => {
                let exp = u32::try_from(attempts.saturating_sub(1)).unwrap_or(u32::MAX).min(40);
                let w = base.saturating_mul(1u32 << exp.min(31)).min(cap);
                (elapsed.saturating_add(w) <= horizon).then_some(w)
            }
        }
    }

    /// What the sender does after attempt `attempts` (1-based) ended with `outcome`, `elapsed`
    /// after the first attempt.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{profile::{Attempt, Next}, schemes::BuildWorkPro, Scheme};
    /// let p = BuildWorkPro::new().profile();
    /// assert_eq!(p.judge(&Attempt::Status(200), 1, Duration::ZERO), Next::Delivered);
    /// // BuildWorkPro drops a delivery on a 4xx other than 408 and 429…
    /// // (it counts toward the endpoint's 20 consecutive failures: the verdict says so)
    /// assert!(matches!(p.judge(&Attempt::Status(400), 1, Duration::ZERO), Next::GiveUp { verdict } if verdict.contains("20 consecutive")));
    /// // …and retries a 503 after 30 s.
    /// assert!(matches!(p.judge(&Attempt::Status(503), 1, Duration::ZERO), Next::Retry { after, .. } if after == Duration::from_secs(30)));
    /// ```
    pub fn judge(&self, outcome: &Attempt, attempts: usize, elapsed: Duration) -> Next {
        if let Attempt::Status(s) = outcome {
            if (200..300).contains(s) {
                return Next::Delivered;
            }
            if self.permanent == Permanent::ClientErrorsExcept408And429
                && (400..500).contains(s)
                && *s != 408
                && *s != 429
            {
                // It counts toward the endpoint's kill switch too (a wrong secret or route
                // answers every event so): said, as the retries' end says it.
                let counts = self
                    .kill_switch
                    .as_ref()
                    .map(|k| format!("; the failure counts: it {}", k.what))
                    .unwrap_or_default();
                return Next::GiveUp {
                    verdict: format!(
                        "permanent failure: {} never retries a 4xx other than 408/429 (got {s}){counts}",
                        self.name
                    ),
                };
            }
        }
        match self.next_wait(attempts, elapsed) {
            Some(after) => Next::Retry {
                after,
                note: format!("{} retries in {}{}", self.name, human(after), self.retry_note),
            },
            None => Next::GiveUp {
                verdict: format!(
                    "{} ({attempts} attempt{})",
                    self.give_up,
                    if attempts == 1 { "" } else { "s" }
                ),
            },
        }
    }
}

/// What a sender saw of one attempt.
///
/// ```
/// use std::time::Duration;
/// use hookguard_core::{profile::{Attempt, Next}, schemes::Procore, Scheme};
/// let p = Procore::new().profile();
/// // No answer within its 5 s, or no connection: retried like any failure.
/// assert!(matches!(p.judge(&Attempt::Timeout, 1, Duration::ZERO), Next::Retry { .. }));
/// assert!(matches!(p.judge(&Attempt::Network, 1, Duration::ZERO), Next::Retry { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// An HTTP answer with this status.
    Status(u16),
    /// No answer within its timeout.
    Timeout,
    /// No connection, or it broke.
    Network,
}

/// What the sender does next.
///
/// ```
/// use std::time::Duration;
/// use hookguard_core::{profile::{Attempt, Next}, schemes::GitHub, Scheme};
/// // GitHub does not retry.
/// match GitHub::new().profile().judge(&Attempt::Status(500), 1, Duration::ZERO) {
///     Next::GiveUp { verdict } => assert!(verdict.contains("1 attempt")),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// 2xx: the delivery is done.
    Delivered,
    /// It tries again after `after`.
    Retry {
        /// The wait.
        after: Duration,
        /// What it does meanwhile, in words.
        note: String,
    },
    /// It gives up on this delivery.
    GiveUp {
        /// Its verdict, in words.
        verdict: String,
    },
}

/// A duration as people say it: `30 s`, `2 min`, `1 h 30 min`, `250 ms`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(hookguard_core::profile::human(Duration::from_secs(5400)), "1 h 30 min");
/// ```
pub fn human(d: Duration) -> String {
    const H: u64 = 3600;
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

/// A small random source for sample bodies (xorshift; not for secrets).
///
/// ```
/// let mut r = hookguard_core::profile::SampleRng::new(7);
/// assert_eq!(r.hex(4).len(), 8);
/// assert_eq!(r.guid().len(), 36);
/// assert_eq!(r.ulid(1_700_000_000_000).len(), 26);
/// ```
#[derive(Debug, Clone)]
pub struct SampleRng(u64);

impl SampleRng {
    /// Seeded (the CLI seeds from the OS).
    ///
    /// ```
    /// use hookguard_core::profile::SampleRng;
    /// // The same seed, the same bodies.
    /// assert_eq!(SampleRng::new(7).hex(8), SampleRng::new(7).hex(8));
    /// assert_ne!(SampleRng::new(7).hex(8), SampleRng::new(8).hex(8));
    /// ```
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// The next 64 random bits.
    ///
    /// ```
    /// let mut r = hookguard_core::profile::SampleRng::new(1);
    /// let (a, b) = (r.next_u64(), r.next_u64());
    /// assert_ne!(a, b);
    /// ```
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// `bytes` random bytes as lower-case hex.
    ///
    /// ```
    /// let h = hookguard_core::profile::SampleRng::new(1).hex(20);
    /// assert_eq!(h.len(), 40);
    /// assert!(h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    /// ```
    pub fn hex(&mut self, bytes: usize) -> String {
        (0..bytes).map(|_| format!("{:02x}", self.next_u64() as u8)).collect()
    }

    /// A random GUID, as HCSS and APS send them.
    ///
    /// ```
    /// let g = hookguard_core::profile::SampleRng::new(1).guid();
    /// assert_eq!(g.split('-').map(str::len).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
    /// ```
    pub fn guid(&mut self) -> String {
        let h = self.hex(16);
        format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
    }

    /// A ULID for `unix_ms` (Crockford base32, 26 characters).
    ///
    /// ```
    /// use hookguard_core::profile::SampleRng;
    /// let u = SampleRng::new(1).ulid(1_700_000_000_000);
    /// assert_eq!(u.len(), 26);
    /// // The first ten characters are the time: ULIDs of the same millisecond share them.
    /// assert_eq!(u[..10], SampleRng::new(2).ulid(1_700_000_000_000)[..10]);
    /// ```
    pub fn ulid(&mut self, unix_ms: u64) -> String {
        const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        let rand_bits = (u128::from(self.next_u64()) << 64 | u128::from(self.next_u64())) & ((1u128 << 80) - 1);
        let v: u128 = (u128::from(unix_ms & ((1 << 48) - 1)) << 80) | rand_bits;
        (0..26)
            .rev()
            .map(|i| ALPHABET[((v >> (i * 5)) & 31) as usize] as char)
            .collect()
    }
}

/// `unix` seconds as RFC 3339 UTC with milliseconds.
///
/// ```
/// assert_eq!(hookguard_core::profile::rfc3339(1_700_000_000, 5), "2023-11-14T22:13:20.005Z");
/// ```
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
pub(crate) fn q(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Seconds, as a `Duration` constant.
pub(crate) const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// `wanted`, or less when the sender waits `timeout` for an answer: never more than 1 s below
/// it (at least 1 s). See [`SenderProfile::within_timeout`].
pub(crate) fn within(timeout: Duration, wanted: Duration) -> Duration {
    wanted.min(
        timeout
            .saturating_sub(Duration::from_secs(1))
            .max(Duration::from_secs(1)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A custom sender's profile may name any schedule: one that never ends (`Duration::MAX`)
    /// is a horizon of `Duration::MAX`, never an overflow.
    #[test]
    fn endless_schedules_saturate() {
        let mut p = SenderProfile::unknown("endless");
        static WAITS: [Duration; 2] = [Duration::MAX, Duration::from_secs(1)];
        p.schedule = RetrySchedule::Fixed(&WAITS);
        assert_eq!(p.retry_horizon(), Duration::MAX);
        assert_eq!(p.next_wait(2, Duration::MAX), Some(Duration::from_secs(1)));
        p.schedule = RetrySchedule::Exponential {
            base: Duration::from_secs(1),
            cap: Duration::MAX,
            horizon: Duration::MAX,
        };
        assert_eq!(p.retry_horizon(), Duration::MAX);
        assert_eq!(
            p.next_wait(80, Duration::MAX - Duration::from_secs(1)),
            Some(Duration::from_secs(1 << 31))
        );
        p.schedule = RetrySchedule::Exponential {
            base: Duration::from_secs(1),
            cap: Duration::MAX,
            horizon: Duration::from_secs(3600),
        };
        assert_eq!(p.next_wait(3, Duration::MAX), None);
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn every_built_in_has_a_profile_whose_sample_parses() {
        let mut rng = SampleRng::new(42);
        for p in crate::Provider::BUILT_IN {
            let scheme = crate::schemes::for_provider(*p).unwrap();
            let prof = scheme.profile();
            let body = (prof.sample)(&mut rng, None, 1_700_000_000);
            assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok(), "{p}");
            assert!(!prof.event_types.is_empty(), "{p}");
            assert!(prof.timeout > Duration::ZERO, "{p}");
        }
    }

    /// BuildWorkPro's sample carries the fields its guide's receiver reads (`data.id`: "bid
    /// accepted: ${event.data.id}"), so a handler written against it reads the real ones.
    #[test]
    fn the_buildworkpro_sample_has_the_fields_its_guide_reads() {
        use crate::Scheme;
        let prof = crate::schemes::BuildWorkPro::new().profile();
        let body = (prof.sample)(&mut SampleRng::new(3), Some("bid.accepted"), 1_700_000_000);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["data"]["id"].is_u64(), "{v}");
        assert_eq!(v["type"], "bid.accepted");
        assert!(v["id"].as_str().is_some_and(|id| id.starts_with("evt_")), "{v}");
    }

    /// Every HCSS event type's sample has its product's documented shape (a HeavyJob cost code
    /// was sent in the Setups shape, so an application's HeavyJob type refused it).
    #[test]
    fn every_hcss_sample_parses_as_its_product() {
        use crate::envelope::HcssEvent;
        use crate::Scheme;
        let mut rng = SampleRng::new(7);
        let prof = crate::schemes::Hcss::new().profile();
        for kind in prof.event_types {
            let body = (prof.sample)(&mut rng, Some(kind), 1_700_000_000);
            let e: HcssEvent = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{kind}: {e}"));
            let right = match *kind {
                k if k.starts_with("CostCode") => matches!(e, HcssEvent::HeavyJob(_)),
                k if k.starts_with("Project") || k == "SchemaChanged" => matches!(e, HcssEvent::PreConstruction(_)),
                _ => matches!(e, HcssEvent::Setups(_)),
            };
            assert!(right, "{kind}: {e:?}");
        }
    }
}
