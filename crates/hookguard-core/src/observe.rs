//! What the receiver tells the outside world: metrics through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`; the library installs no exporter — the application or `hookguard serve
//! --metrics` does) and sender-health warnings through `tracing` (always on).
//!
//! | metric | kind | labels | meaning |
//! |---|---|---|---|
//! | `hookguard_answers_total` | counter | `provider`, `outcome`, `code` | every answer: `outcome` is `handled`, `handler_failed`, `accepted`, `duplicate`, `ignored`, `challenge` or `rejected` (then `code` is the stable rejection code, else empty) |
//! | `hookguard_handler_outcomes_total` | counter | `provider`, `outcome` | inline handlers: `success`, `failure` (non-2xx or error), `timeout` |
//! | `hookguard_inbox_transitions_total` | counter | `provider`, `transition` | `accepted`, `done`, `retried`, `dead`, `lost`, `deferred`, `replayed`, `purged` |
//! | `hookguard_verify_seconds` | histogram | `provider` | authenticating and describing one delivery |
//! | `hookguard_handler_seconds` | histogram | `provider` | one handler run (inline or from the inbox) |
//! | `hookguard_accept_seconds` | histogram | `provider` | storing one delivery in the inbox (the durable commit) |
//! | `hookguard_inbox_items` | gauge | `state` | items per state (`pending`, `running`, `done`, `dead`), sampled by the worker |
//! | `hookguard_inbox_oldest_pending_seconds` | gauge | | age of the oldest pending item |
//! | `hookguard_sender_consecutive_failures` | gauge | `provider` | failed answers in a row (non-2xx, or a 2xx later than the sender waits), to compare with the sender's kill switch |
//!
//! Labels have bounded cardinality: providers and states are fixed sets, codes are the stable
//! rejection codes. No event id, path or secret is ever a label.
//!
//! ```
//! use hookguard_core::{schemes::Hcss, Scheme};
//! // The kill switch the sender-health warnings count towards: HCSS stops the subscription
//! // after 5 failed tries.
//! assert_eq!(Hcss::new().kill_switch().unwrap().failures, 5);
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::Provider;

/// A sender's kill switch: after how many failed answers it stops, and what it does then.
///
/// ```
/// use hookguard_core::{schemes::Hcss, Scheme};
/// let k = Hcss::new().kill_switch().unwrap();
/// assert_eq!(k.failures, 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KillSwitch {
    /// Failed answers after which the sender gives up.
    pub failures: u32,
    /// What it does then, in the sender's words ("stops this subscription after 5 failed tries").
    pub what: &'static str,
    /// What the operator should do once it has tripped.
    pub remedy: &'static str,
    /// Whether the sender counts the failed tries of *one event* (HCSS, APS): then one event
    /// that keeps failing trips it while other events succeed in between.
    pub per_event: bool,
}

impl KillSwitch {
    /// A kill switch tripping after `failures` failed answers in a row.
    ///
    /// ```
    /// use hookguard_core::observe::KillSwitch;
    /// const MINE: KillSwitch = KillSwitch::new(10, "pauses the endpoint", "resume it in the dashboard");
    /// assert_eq!((MINE.failures, MINE.per_event), (10, false));
    /// ```
    pub const fn new(failures: u32, what: &'static str, remedy: &'static str) -> Self {
        Self {
            failures,
            what,
            remedy,
            per_event: false,
        }
    }

    /// The same, counted over the tries of one event.
    ///
    /// ```
    /// use hookguard_core::{schemes::Hcss, Scheme};
    /// assert!(Hcss::new().kill_switch().unwrap().per_event);
    /// ```
    pub const fn per_event(mut self) -> Self {
        self.per_event = true;
        self
    }
}

/// How a kill switch's failures are counted, for the warning's words.
#[derive(Debug, Clone, Copy)]
enum Counted {
    InARow,
    OneEvent,
}

impl Counted {
    fn as_str(self) -> &'static str {
        match self {
            Counted::InARow => "in_a_row",
            Counted::OneEvent => "one_event",
        }
    }
}

/// The most events whose failed tries one [`SenderHealth`] tracks at once; beyond, it forgets
/// them all and starts again (a bound, not an expected case: a failing event is retried within
/// hours, and each success forgets its event).
const MAX_TRACKED_EVENTS: usize = 4096;

/// The identity of one event across its retries, for [`SenderHealth::answered_event`]: a
/// digest of its body (a retry carries the same bytes). Not a security boundary.
///
/// ```
/// use hookguard_core::observe::event_of;
/// assert_eq!(event_of(b"{}"), event_of(b"{}"));
/// assert_ne!(event_of(b"{}"), event_of(b"[]"));
/// ```
pub fn event_of(body: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = std::hash::DefaultHasher::new();
    h.write(body);
    h.finish()
}

/// Counts the failed answers (non-2xx, or a 2xx later than the sender waits) hookguard gave one sender in a row and warns before its kill
/// switch trips: a WARN at half the threshold, an ERROR when it is reached. Any `2xx` resets
/// the count. A sender whose switch counts the tries of one event (HCSS, APS) also has each
/// event's failed tries counted ([`answered_event`](Self::answered_event)), since one failing
/// event trips it while others succeed. (A forged request's `401` counts too — hookguard cannot tell it from a genuine
/// delivery refused by a wrong secret, which is exactly the case to warn about; the next
/// genuine delivery answered `2xx` resets it.)
///
/// ```
/// use hookguard_core::observe::{KillSwitch, SenderHealth};
/// let h = SenderHealth::new(hookguard_core::Provider::Hcss, Some(KillSwitch::new(5, "stops", "re-subscribe")));
/// for _ in 0..3 { h.answered(false); }
/// assert_eq!(h.consecutive_failures(), 3);
/// h.answered(true);
/// assert_eq!(h.consecutive_failures(), 0);
/// ```
#[derive(Debug)]
pub struct SenderHealth {
    provider: Provider,
    kill_switch: Option<KillSwitch>,
    failures: AtomicU32,
    /// Failed tries per event and the last one's time (per-event kill switches only), and
    /// how many it holds.
    events: Mutex<Events>,
    tracked: AtomicUsize,
    /// How long the sender retries one event; an event failed longer ago than this is
    /// forgotten at the next success (the sender has given up on it).
    retry_horizon: Option<Duration>,
    /// Requests refused in a row for carrying no credential or signature the sender writes,
    /// with no request that carried one in between (see [`SenderHealth::refused_uncredentialed`]).
    uncredentialed: AtomicU32,
}

/// The events a per-event kill switch tracks (see [`SenderHealth::answered_event`]).
#[derive(Debug, Default)]
struct Events {
    /// Failed tries per event and the last one's time.
    tries: HashMap<u64, (u32, Instant)>,
    /// When events the sender gave up on were last forgotten.
    swept: Option<Instant>,
}

/// How often events the sender gave up on are forgotten: at most this often, not at every
/// success (with thousands tracked after an outage, each success scanned them all under the
/// lock; a review measured +120 µs per delivery for a day).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Uncredentialed refusals in a row at which [`SenderHealth::refused_uncredentialed`] first
/// warns (and again at every tenfold).
///
/// ```
/// use hookguard_core::{observe::{SenderHealth, UNCREDENTIALED_WARN_AT}, testing::Logs, Provider};
/// let h = SenderHealth::new(Provider::Procore, None);
/// let logs = Logs::default();
/// tracing::subscriber::with_default(logs.clone(), || {
///     for _ in 0..UNCREDENTIALED_WARN_AT {
///         h.refused_uncredentialed();
///     }
/// });
/// assert_eq!(logs.count(tracing::Level::WARN), 1);
/// ```
pub const UNCREDENTIALED_WARN_AT: u32 = 10;

impl SenderHealth {
    /// Health for `provider`, with its kill switch if it has one.
    ///
    /// ```
    /// use hookguard_core::{observe::SenderHealth, schemes::BuildWorkPro, Provider, Scheme};
    /// let h = SenderHealth::new(Provider::BuildWorkPro, BuildWorkPro::new().kill_switch());
    /// assert_eq!(h.consecutive_failures(), 0);
    /// assert_eq!(h.kill_switch().map(|k| k.failures), Some(20));
    /// ```
    pub fn new(provider: Provider, kill_switch: Option<KillSwitch>) -> Self {
        // Shown from the start: a series that appears only with the first failure reads as
        // "no data" on a dashboard, and an alert on it never sees the healthy zero. Touched,
        // not set: another receiver of the same sender (a second route) keeps its count.
        gauge_touch("hookguard_sender_consecutive_failures", provider);
        Self {
            provider,
            kill_switch,
            failures: AtomicU32::new(0),
            events: Mutex::default(),
            tracked: AtomicUsize::new(0),
            retry_horizon: None,
            uncredentialed: AtomicU32::new(0),
        }
    }

    /// How long the sender retries one event (from its profile; the receiver sets it). A
    /// success forgets the events whose last failure is older (looked for at most once a
    /// minute): the sender no longer retries them, so after the operator revived the
    /// subscription the count falls back.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::observe::{event_of, KillSwitch, SenderHealth};
    /// let h = SenderHealth::new(hookguard_core::Provider::Hcss, Some(KillSwitch::new(5, "stops", "re-subscribe").per_event()))
    ///     .with_retry_horizon(Duration::ZERO);
    /// h.answered_event(false, Some(event_of(b"a")));
    /// assert_eq!(h.event_failures(), 1);
    /// h.answered_event(true, Some(event_of(b"b"))); // a later success: "a" is past its retries
    /// assert_eq!(h.event_failures(), 0);
    /// ```
    pub fn with_retry_horizon(mut self, horizon: Duration) -> Self {
        self.retry_horizon = Some(horizon);
        self
    }

    /// The retry horizon set with [`with_retry_horizon`](Self::with_retry_horizon).
    pub(crate) fn retry_horizon(&self) -> Option<Duration> {
        self.retry_horizon
    }

    /// The kill switch warned about, if the sender has one.
    ///
    /// ```
    /// use hookguard_core::{observe::SenderHealth, schemes::Hcss, Provider, Scheme};
    /// let h = SenderHealth::new(Provider::Hcss, Hcss::new().kill_switch());
    /// assert_eq!(h.kill_switch().map(|k| k.failures), Some(5));
    /// ```
    pub fn kill_switch(&self) -> Option<KillSwitch> {
        self.kill_switch
    }

    /// Whether this sender's kill switch counts the tries of one event (then answers should
    /// go through [`answered_event`](Self::answered_event)).
    ///
    /// ```
    /// use hookguard_core::{observe::SenderHealth, schemes::{BuildWorkPro, Hcss}, Provider, Scheme};
    /// // HCSS stops a subscription after one event failed 5 times.
    /// assert!(SenderHealth::new(Provider::Hcss, Hcss::new().kill_switch()).counts_events());
    /// assert!(!SenderHealth::new(Provider::BuildWorkPro, BuildWorkPro::new().kill_switch()).counts_events());
    /// ```
    pub fn counts_events(&self) -> bool {
        self.kill_switch.is_some_and(|k| k.per_event)
    }

    /// The most failed tries of any one event not answered `2xx` since (per-event kill
    /// switches; 0 otherwise).
    ///
    /// ```
    /// use hookguard_core::observe::{event_of, KillSwitch, SenderHealth};
    /// let h = SenderHealth::new(hookguard_core::Provider::Hcss, Some(KillSwitch::new(5, "stops", "re-subscribe").per_event()));
    /// let (a, b) = (Some(event_of(b"a")), Some(event_of(b"b")));
    /// for _ in 0..3 {
    ///     h.answered_event(false, a);
    ///     h.answered_event(true, b); // other events succeed in between
    /// }
    /// assert_eq!((h.consecutive_failures(), h.event_failures()), (0, 3));
    /// h.answered_event(true, a);
    /// assert_eq!(h.event_failures(), 0);
    /// ```
    pub fn event_failures(&self) -> u32 {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let m = self.events.lock().unwrap_or_else(|p| p.into_inner());
        m.tries.values().map(|&(n, _)| n).max().unwrap_or(0)
    }

    /// Records one answer to the event `event` (from [`event_of`]; `None` when no body was
    /// read): the count in a row, and for a per-event kill switch that event's failed tries,
    /// warned about at half the threshold and logged as an error when it is reached.
    ///
    /// ```
    /// use hookguard_core::observe::{event_of, KillSwitch, SenderHealth};
    /// let k = KillSwitch::new(4, "deactivates the hook", "reactivate it").per_event();
    /// let h = SenderHealth::new(hookguard_core::Provider::Aps, Some(k));
    /// let body = br#"{"hook":{"event":"dm.version.added"}}"#;
    /// h.answered_event(false, Some(event_of(body)));
    /// h.answered_event(false, Some(event_of(body)));
    /// assert_eq!((h.consecutive_failures(), h.event_failures()), (2, 2));
    /// h.answered_event(true, Some(event_of(body)));
    /// assert_eq!((h.consecutive_failures(), h.event_failures()), (0, 0));
    /// ```
    pub fn answered_event(&self, success: bool, event: Option<u64>) {
        self.answered(success);
        let (Some(k), Some(e)) = (self.kill_switch, event) else {
            return;
        };
        if !k.per_event || (success && self.tracked.load(Ordering::Relaxed) == 0) {
            return;
        }
        let mut guard = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let Events { tries: m, swept } = &mut *guard;
        let n = if success {
            m.remove(&e);
            if let Some(h) = self.retry_horizon {
                if swept.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
                    let now = Instant::now();
                    m.retain(|_, &mut (_, last)| now.duration_since(last) <= h);
                    *swept = Some(now);
                }
            }
            0
        } else {
            if m.len() >= MAX_TRACKED_EVENTS && !m.contains_key(&e) {
                m.clear();
            }
            let c = m.entry(e).or_insert((0, Instant::now()));
            *c = (c.0.saturating_add(1), Instant::now());
            c.0
        };
        self.tracked.store(m.len(), Ordering::Relaxed);
        drop(guard);
        self.warn(k, n, Counted::OneEvent);
    }

    /// A WARN at half the kill switch's threshold, an ERROR when it is reached.
    fn warn(&self, k: KillSwitch, n: u32, counted: Counted) {
        let (tally, so_far) = match counted {
            Counted::InARow => (
                format!(
                    "{n} failed answer{} (non-2xx or late) in a row",
                    if n == 1 { "" } else { "s" }
                ),
                format!("{n} in a row so far"),
            ),
            Counted::OneEvent => (
                format!("one event failed {n} times"),
                format!("one event failed {n} times so far"),
            ),
        };
        let warn_at = k.failures.div_ceil(2).max(1);
        if n == k.failures {
            tracing::error!(
                provider = %self.provider,
                failures = n,
                counted = counted.as_str(),
                "{} {} ({tally}): {}",
                self.provider_name(),
                k.what,
                k.remedy
            );
        } else if n == warn_at && n < k.failures {
            tracing::warn!(
                provider = %self.provider,
                failures = n,
                counted = counted.as_str(),
                "{} {}; {so_far}",
                self.provider_name(),
                k.what
            );
        }
    }

    /// Failed answers (non-2xx, or later than the sender waits) in a row.
    ///
    /// ```
    /// use hookguard_core::observe::SenderHealth;
    /// let h = SenderHealth::new(hookguard_core::Provider::Stripe, None);
    /// h.answered(false);
    /// h.answered(false);
    /// assert_eq!(h.consecutive_failures(), 2);
    /// h.answered(true); // any 2xx resets it
    /// assert_eq!(h.consecutive_failures(), 0);
    /// ```
    pub fn consecutive_failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Records a refusal of a request that carried no credential or signature the sender
    /// writes (none at all, or one in a form it never sends): not a failed answer to the
    /// sender (a scanner's requests look so), but when such refusals come in a row with no
    /// credentialed request in between, it may be the sender's own deliveries under a
    /// configuration that does not match (a token in another header, a proxy dropping
    /// `Authorization`, an APS hook without a secret). A WARN says so at
    /// [`UNCREDENTIALED_WARN_AT`] in a row and at every tenfold after; any counted answer
    /// ([`answered`](Self::answered)) ends the streak.
    ///
    /// ```
    /// use hookguard_core::observe::SenderHealth;
    /// let h = SenderHealth::new(hookguard_core::Provider::Procore, None);
    /// for _ in 0..3 { h.refused_uncredentialed(); }
    /// assert_eq!((h.uncredentialed_in_a_row(), h.consecutive_failures()), (3, 0));
    /// h.answered(false);
    /// assert_eq!(h.uncredentialed_in_a_row(), 0);
    /// ```
    pub fn refused_uncredentialed(&self) {
        let n = self.uncredentialed.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let mut at = UNCREDENTIALED_WARN_AT;
        while at < n {
            at = at.saturating_mul(10);
        }
        if n == at {
            let name = self.provider_name();
            let switch = self
                .kill_switch
                .map(|k| format!(" ({name} {})", k.what))
                .unwrap_or_default();
            tracing::warn!(
                provider = %self.provider,
                refused = n,
                "{n} requests in a row came without {name}'s credential or signature, and none with it since: \
                 if these are {name}'s deliveries, its configuration does not match this receiver's (the header \
                 it sends its token in, a secret set on its side, a proxy dropping a header), and each is a failed \
                 delivery to it{switch}"
            );
        }
    }

    /// Uncredentialed refusals in a row (see [`refused_uncredentialed`](Self::refused_uncredentialed)).
    ///
    /// ```
    /// use hookguard_core::observe::SenderHealth;
    /// let h = SenderHealth::new(hookguard_core::Provider::Hcss, None);
    /// h.refused_uncredentialed();
    /// assert_eq!(h.uncredentialed_in_a_row(), 1);
    /// h.answered(true); // a request that carried the credential ends the streak
    /// assert_eq!(h.uncredentialed_in_a_row(), 0);
    /// ```
    pub fn uncredentialed_in_a_row(&self) -> u32 {
        self.uncredentialed.load(Ordering::Relaxed)
    }

    /// Records one answer.
    ///
    /// ```
    /// use hookguard_core::{observe::{KillSwitch, SenderHealth}, testing::Logs};
    /// let k = KillSwitch::new(4, "disables the endpoint", "re-enable it");
    /// let h = SenderHealth::new(hookguard_core::Provider::BuildWorkPro, Some(k));
    /// let logs = Logs::default();
    /// tracing::subscriber::with_default(logs.clone(), || {
    ///     for _ in 0..4 {
    ///         h.answered(false);
    ///     }
    /// });
    /// // A WARN at half the threshold, an ERROR when it is reached.
    /// assert_eq!((logs.count(tracing::Level::WARN), logs.count(tracing::Level::ERROR)), (1, 1));
    /// ```
    pub fn answered(&self, success: bool) {
        // A request that may be the sender's came: the uncredentialed streak ends (read first:
        // a healthy sender's answers never write it).
        if self.uncredentialed.load(Ordering::Relaxed) != 0 {
            self.uncredentialed.store(0, Ordering::Relaxed);
        }
        let n = if success {
            // Read before writing: a healthy sender's answers never write the shared counter,
            // so concurrent requests on other cores do not contend for its cache line.
            if self.failures.load(Ordering::Relaxed) == 0 || self.failures.swap(0, Ordering::Relaxed) == 0 {
                return;
            }
            0
        } else {
            self.failures.fetch_add(1, Ordering::Relaxed).saturating_add(1)
        };
        gauge_set("hookguard_sender_consecutive_failures", self.provider, f64::from(n));
        let Some(k) = self.kill_switch else { return };
        if n == 0 {
            return;
        }
        if k.per_event {
            // This sender counts each event's tries (reported by `answered_event`): answers
            // in a row are worth a warning — a wrong token or a failing handler fails every
            // event — but not the claim that the switch has tripped.
            if n == k.failures {
                tracing::warn!(
                    provider = %self.provider,
                    failures = n,
                    counted = Counted::InARow.as_str(),
                    "{n} failed answers (non-2xx or late) in a row: if they are {}'s deliveries, each is a failed try of its event ({} {})",
                    self.provider_name(),
                    self.provider_name(),
                    k.what
                );
            }
            return;
        }
        self.warn(k, n, Counted::InARow);
    }

    fn provider_name(&self) -> &'static str {
        match crate::schemes::for_provider(self.provider) {
            Some(scheme) => scheme.profile().name,
            None => self.provider.as_str(),
        }
    }
}

/// The answers' `outcome` labels whose key a [`Meters`] prepares (`code` empty); `rejected`
/// carries a code and builds its key when it happens.
#[cfg(feature = "metrics")]
const PREPARED_ANSWERS: [&str; 6] = [
    "handled",
    "handler_failed",
    "accepted",
    "duplicate",
    "ignored",
    "challenge",
];

/// `hookguard_handler_outcomes_total`'s outcomes.
#[cfg(feature = "metrics")]
const HANDLER_OUTCOMES: [&str; 3] = ["success", "failure", "timeout"];

/// One receiver's metric keys for what every delivery records, built once: recording through
/// a prepared key allocates nothing, where the `metrics` macros build a key (and its list of
/// labels) on every call — even with no recorder installed. Each record still goes to
/// whichever recorder is installed at that moment, as the macros' would. Without the
/// `metrics` feature it is empty.
#[derive(Clone)]
pub(crate) struct Meters {
    provider: Provider,
    #[cfg(feature = "metrics")]
    keys: std::sync::Arc<MeterKeys>,
}

#[cfg(feature = "metrics")]
struct MeterKeys {
    answers: [metrics::Key; PREPARED_ANSWERS.len()],
    handler_outcomes: [metrics::Key; HANDLER_OUTCOMES.len()],
    verify: metrics::Key,
    handler: metrics::Key,
    accept: metrics::Key,
}

/// The metadata the `metrics` macros of this module give their metrics.
#[cfg(feature = "metrics")]
static METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

impl Meters {
    pub(crate) fn new(provider: Provider) -> Self {
        #[cfg(feature = "metrics")]
        let keys = {
            let p = provider.as_str();
            let key = |name: &'static str, labels: &[(&'static str, &'static str)]| {
                metrics::Key::from_parts(
                    name,
                    labels
                        .iter()
                        .map(|&(k, v)| metrics::Label::from_static_parts(k, v))
                        .collect::<Vec<_>>(),
                )
            };
            std::sync::Arc::new(MeterKeys {
                answers: PREPARED_ANSWERS.map(|o| {
                    key(
                        "hookguard_answers_total",
                        &[("provider", p), ("outcome", o), ("code", "")],
                    )
                }),
                handler_outcomes: HANDLER_OUTCOMES
                    .map(|o| key("hookguard_handler_outcomes_total", &[("provider", p), ("outcome", o)])),
                verify: key("hookguard_verify_seconds", &[("provider", p)]),
                handler: key("hookguard_handler_seconds", &[("provider", p)]),
                accept: key("hookguard_accept_seconds", &[("provider", p)]),
            })
        };
        Self {
            provider,
            #[cfg(feature = "metrics")]
            keys,
        }
    }

    /// Counts an answer in `hookguard_answers_total`.
    pub(crate) fn answer(&self, outcome: &'static str, code: &'static str) {
        #[cfg(feature = "metrics")]
        if code.is_empty() {
            if let Some(i) = PREPARED_ANSWERS.iter().position(|&o| o == outcome) {
                return metrics::with_recorder(|r| r.register_counter(&self.keys.answers[i], &METADATA).increment(1));
            }
        }
        count(
            "hookguard_answers_total",
            &[
                ("provider", self.provider.as_str()),
                ("outcome", outcome),
                ("code", code),
            ],
        );
    }

    /// Counts an inline handler's outcome (`success`, `failure` or `timeout`).
    pub(crate) fn handler_outcome(&self, outcome: &'static str) {
        #[cfg(feature = "metrics")]
        if let Some(i) = HANDLER_OUTCOMES.iter().position(|&o| o == outcome) {
            return metrics::with_recorder(|r| {
                r.register_counter(&self.keys.handler_outcomes[i], &METADATA)
                    .increment(1)
            });
        }
        count(
            "hookguard_handler_outcomes_total",
            &[("provider", self.provider.as_str()), ("outcome", outcome)],
        );
    }

    /// Records the time to verify one delivery (a [`Stopwatch`]'s: without the `metrics`
    /// feature no clock is read).
    pub(crate) fn verify_time(&self, d: Duration) {
        #[cfg(feature = "metrics")]
        record(&self.keys.verify, d);
        #[cfg(not(feature = "metrics"))]
        let _ = d;
    }

    /// Records one inline handler's run time.
    pub(crate) fn handler_time(&self, d: Duration) {
        #[cfg(feature = "metrics")]
        record(&self.keys.handler, d);
        #[cfg(not(feature = "metrics"))]
        let _ = d;
    }

    /// Records the time to store one delivery in the inbox.
    pub(crate) fn accept_time(&self, d: Duration) {
        #[cfg(feature = "metrics")]
        record(&self.keys.accept, d);
        #[cfg(not(feature = "metrics"))]
        let _ = d;
    }
}

#[cfg(feature = "metrics")]
fn record(key: &metrics::Key, d: Duration) {
    metrics::with_recorder(|r| r.register_histogram(key, &METADATA).record(d.as_secs_f64()));
}

/// Increments a counter (no-op without the `metrics` feature).
pub(crate) fn count(name: &'static str, labels: &[(&'static str, &'static str)]) {
    count_by(name, labels, 1);
}

/// Adds `n` to a counter.
///
/// ```
/// // Recorded by the installed `metrics` recorder (feature `metrics`); otherwise nothing happens.
/// hookguard_core::observe::count_by(
///     "hookguard_inbox_transitions_total",
///     &[("provider", "all"), ("transition", "purged")],
///     3,
/// );
/// ```
pub fn count_by(name: &'static str, labels: &[(&'static str, &'static str)], n: u64) {
    // The key builds its label list from the pairs directly (no list of our own first).
    #[cfg(feature = "metrics")]
    metrics::counter!(name, labels).increment(n);
    #[cfg(not(feature = "metrics"))]
    let _ = (name, labels, n);
}

/// Records a duration in seconds.
pub(crate) fn time(name: &'static str, provider: Provider, d: Duration) {
    #[cfg(feature = "metrics")]
    metrics::histogram!(name, "provider" => provider.as_str()).record(d.as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = (name, provider, d);
}

/// Times one step for a histogram. Without the `metrics` feature it is empty and reads no
/// clock: a receiver that exports no metrics pays nothing for them on every request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stopwatch {
    #[cfg(feature = "metrics")]
    started: std::time::Instant,
}

impl Stopwatch {
    pub(crate) fn start() -> Self {
        Self {
            #[cfg(feature = "metrics")]
            started: std::time::Instant::now(),
        }
    }

    /// The time since [`start`](Self::start), or `None` without the `metrics` feature.
    pub(crate) fn timed(self) -> Option<Duration> {
        #[cfg(feature = "metrics")]
        return Some(self.started.elapsed());
        #[cfg(not(feature = "metrics"))]
        None
    }

    /// The time since [`start`](Self::start) (zero without the `metrics` feature).
    pub(crate) fn stop(self) -> Duration {
        self.timed().unwrap_or_default()
    }
}

fn gauge_set(name: &'static str, provider: Provider, v: f64) {
    #[cfg(feature = "metrics")]
    metrics::gauge!(name, "provider" => provider.as_str()).set(v);
    #[cfg(not(feature = "metrics"))]
    let _ = (name, provider, v);
}

/// Makes a gauge's series exist (0 when new) without changing its value.
fn gauge_touch(name: &'static str, provider: Provider) {
    #[cfg(feature = "metrics")]
    metrics::gauge!(name, "provider" => provider.as_str()).increment(0.0);
    #[cfg(not(feature = "metrics"))]
    let _ = (name, provider);
}

/// Sets a gauge with one label (the worker's inbox gauges).
///
/// ```
/// use hookguard_core::observe::gauge;
/// gauge("hookguard_inbox_items", Some(("state", "pending")), 12.0);
/// gauge("hookguard_inbox_oldest_pending_seconds", None, 4.5);
/// ```
pub fn gauge(name: &'static str, label: Option<(&'static str, &'static str)>, v: f64) {
    #[cfg(feature = "metrics")]
    match label {
        Some((k, val)) => metrics::gauge!(name, k => val).set(v),
        None => metrics::gauge!(name).set(v),
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (name, label, v);
}

/// Counts an inbox transition of an item stored under the sender's name `provider` (a
/// record's `provider`).
///
/// ```
/// use hookguard_core::observe::inbox_transition;
/// inbox_transition("procore", "done");
/// // A name no built-in sender has is counted as `custom`: a stored name may come from any
/// // process writing the inbox, and labels stay a bounded set.
/// inbox_transition("acme-erp", "dead");
/// ```
pub fn inbox_transition(provider: &str, transition: &'static str) {
    let provider = provider.parse::<Provider>().unwrap_or(Provider::Custom("custom"));
    inbox_transition_of(provider, transition);
}

/// [`inbox_transition`] for a sender this process knows (the receiver's, the worker's): a
/// custom sender is labelled with its own name, as its answers and handler times are (it was
/// `custom` here alone, so the series could not be joined; a review).
pub(crate) fn inbox_transition_of(provider: Provider, transition: &'static str) {
    count(
        "hookguard_inbox_transitions_total",
        &[("provider", provider.as_str()), ("transition", transition)],
    );
}

/// Records a handler's run time.
///
/// ```
/// use std::time::{Duration, Instant};
/// let started = Instant::now();
/// // ... the handler runs ...
/// hookguard_core::observe::handler_time(hookguard_core::Provider::Hcss, started.elapsed());
/// hookguard_core::observe::handler_time(hookguard_core::Provider::Hcss, Duration::from_millis(120));
/// ```
pub fn handler_time(provider: Provider, d: Duration) {
    time("hookguard_handler_seconds", provider, d);
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

    use crate::dedupe::{Dedupe, MemoryStore};
    use crate::schemes::Hcss;
    use crate::testing::block_on;
    use crate::{HandlerOutcome, Receiver, RequestHead, Verifier};

    /// Records counter increments by `name{labels}`.
    #[derive(Default, Clone)]
    struct Counts(Arc<Mutex<HashMap<String, u64>>>);

    struct Handle(Arc<Mutex<HashMap<String, u64>>>, String);
    impl metrics::CounterFn for Handle {
        fn increment(&self, n: u64) {
            *self.0.lock().unwrap().entry(self.1.clone()).or_default() += n;
        }
        fn absolute(&self, n: u64) {
            self.0.lock().unwrap().insert(self.1.clone(), n);
        }
    }
    impl metrics::GaugeFn for Handle {
        fn increment(&self, v: f64) {
            *self.0.lock().unwrap().entry(self.1.clone()).or_default() += v as u64;
        }
        fn decrement(&self, _: f64) {}
        fn set(&self, v: f64) {
            self.0.lock().unwrap().insert(self.1.clone(), v as u64);
        }
    }

    fn render(key: &Key) -> String {
        let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        format!("{}{{{}}}", key.name(), labels.join(","))
    }

    impl Recorder for Counts {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(Arc::new(Handle(Arc::clone(&self.0), render(key))))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(Arc::new(Handle(Arc::clone(&self.0), render(key))))
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    /// A custom sender's inbox transitions counted by the receiver and the worker carry its
    /// own name, as its answers do (they were all `custom`); a stored name no sender of this
    /// process has stays `custom`.
    #[test]
    fn a_custom_senders_transitions_carry_its_name() {
        let counts = Counts::default();
        metrics::with_local_recorder(&counts, || {
            super::inbox_transition_of(crate::Provider::Custom("acme-erp"), "accepted");
            super::inbox_transition("someone-elses", "replayed");
        });
        let c = counts.0.lock().unwrap();
        assert_eq!(
            c.get("hookguard_inbox_transitions_total{provider=acme-erp,transition=accepted}"),
            Some(&1)
        );
        assert_eq!(
            c.get("hookguard_inbox_transitions_total{provider=custom,transition=replayed}"),
            Some(&1)
        );
    }

    /// The gauge was absent from `/metrics` until the first failure (a tryout's finding).
    #[test]
    fn the_health_gauge_is_zero_from_the_start() {
        let counts = Counts::default();
        let key = "hookguard_sender_consecutive_failures{provider=hcss}";
        metrics::with_local_recorder(&counts, || {
            Receiver::new(Verifier::builder(Hcss::new()).secret("tok").build().unwrap());
        });
        assert_eq!(counts.0.lock().unwrap().get(key), Some(&0));
        // A second receiver of the same sender does not reset the first one's count.
        counts.0.lock().unwrap().insert(key.to_owned(), 3);
        metrics::with_local_recorder(&counts, || {
            Receiver::new(Verifier::builder(Hcss::new()).secret("tok").build().unwrap());
        });
        assert_eq!(counts.0.lock().unwrap().get(key), Some(&3));
    }

    #[test]
    fn answers_are_counted_by_provider_outcome_and_code_and_health_follows() {
        let counts = Counts::default();
        let rx = Receiver::new(Verifier::builder(Hcss::new()).secret("tok").build().unwrap())
            .with_dedupe(Dedupe::new(MemoryStore::new(100)));
        let body = bytes::Bytes::from_static(
            br#"{"companyId":"c","eventType":"EmployeeUpdated","businessUnitId":"b","id":"e"}"#,
        );
        let headers = http::HeaderMap::new();
        let post = |uri: &'static str| {
            let (m, u) = (http::Method::POST, http::Uri::from_static(uri));
            let head = RequestHead::new(&m, &u, &headers);
            match rx.precheck(&head) {
                Err(_) => {}
                Ok(_) => {
                    let _ = block_on(rx.deliver(&head, body.clone(), |_d| async {
                        HandlerOutcome::<_, ()>::Responded {
                            response: (),
                            success: true,
                        }
                    }));
                }
            }
        };
        metrics::with_local_recorder(&counts, || {
            post("/h?token=wrong");
            post("/h?token=wrong");
            post("/h?token=wrong");
            assert_eq!(rx.health().consecutive_failures(), 3);
            post("/h?token=tok");
            assert_eq!(rx.health().consecutive_failures(), 0);
        });
        let c = counts.0.lock().unwrap();
        assert_eq!(
            c["hookguard_answers_total{provider=hcss,outcome=rejected,code=unauthorized}"],
            3
        );
        assert_eq!(c["hookguard_answers_total{provider=hcss,outcome=handled,code=}"], 1);
        assert_eq!(c["hookguard_handler_outcomes_total{provider=hcss,outcome=success}"], 1);
        assert_eq!(c["hookguard_sender_consecutive_failures{provider=hcss}"], 0);
        // Bounded labels: no event id, token or path anywhere.
        assert!(c
            .keys()
            .all(|k| !k.contains("tok") && !k.contains("/h") && !k.contains("EmployeeUpdated")));
    }
}

#[cfg(test)]
mod health_tests {
    use crate::dedupe::{Dedupe, MemoryStore};
    use crate::schemes::{BuildWorkPro, Hcss};
    use crate::testing::block_on;
    use crate::{HandlerOutcome, Receiver, RequestHead, Scheme, Verifier};
    use std::time::Duration;

    /// An HCSS event body.
    fn hcss_event(id: &str) -> bytes::Bytes {
        format!(r#"{{"companyId":"c","eventType":"EmployeeUpdated","businessUnitId":"b","id":"{id}"}}"#).into()
    }

    /// Delivers HCSS event `id` with the right token (`tok`); the handler takes `pause`, then
    /// answers `success`.
    fn deliver_hcss(rx: &Receiver, id: &str, pause: Duration, success: bool) {
        let headers = http::HeaderMap::new();
        let (m, u) = (http::Method::POST, http::Uri::from_static("/h?token=tok"));
        let head = RequestHead::new(&m, &u, &headers);
        let _ = block_on(rx.deliver(&head, hcss_event(id), |_d| async move {
            std::thread::sleep(pause);
            HandlerOutcome::<_, ()>::Responded { response: (), success }
        }));
    }

    /// HCSS stops a subscription after 5 failed tries of one event, whatever other events do
    /// in between: the receiver counts each event's failed tries, not only failures in a row.
    #[test]
    fn one_event_failing_between_successes_is_counted_per_event() {
        let rx = Receiver::new(Verifier::builder(Hcss::new()).secret("tok").build().unwrap())
            .with_dedupe(Dedupe::new(MemoryStore::new(100)));
        let post = |id: &str, ok: bool| deliver_hcss(&rx, id, Duration::ZERO, ok);
        for i in 0..5 {
            post("poison", false);
            post(&format!("fine-{i}"), true);
        }
        assert_eq!(rx.health().consecutive_failures(), 0);
        assert_eq!(rx.health().event_failures(), 5);
        post("poison", true);
        assert_eq!(rx.health().event_failures(), 0, "its success forgets it");
    }

    /// Refusals that may be forged are not an event's tries (they could crowd out a real one);
    /// the body's own faults, after authentication, are.
    #[test]
    fn only_authenticated_deliveries_count_as_an_events_tries() {
        let rx = Receiver::new(Verifier::builder(Hcss::new()).secret("tok").build().unwrap());
        let headers = http::HeaderMap::new();
        let (m, wrong) = (http::Method::POST, http::Uri::from_static("/h?token=wrong"));
        for i in 0..6 {
            let r = block_on(rx.admit(&RequestHead::new(&m, &wrong, &headers), hcss_event(&format!("f{i}"))));
            assert_eq!(r.unwrap_err().status(), 401);
        }
        assert_eq!(
            (rx.health().consecutive_failures(), rx.health().event_failures()),
            (6, 0)
        );
        let right = http::Uri::from_static("/h?token=tok");
        for _ in 0..2 {
            let r = block_on(rx.admit(&RequestHead::new(&m, &right, &headers), "not json".into()));
            assert_eq!(r.unwrap_err().status(), 400);
        }
        assert_eq!(rx.health().event_failures(), 2);
    }

    /// HCSS publishes no retry intervals (the profile assumes 1, 2, 4, 8 s): an event's failed
    /// tries are remembered for a day at least, so retries spaced wider than assumed still add
    /// up to HCSS's 5; a published schedule longer than that (APS) keeps its own horizon.
    #[test]
    fn an_assumed_schedule_never_shortens_an_events_memory_below_a_day() {
        let hcss = Receiver::new(Verifier::builder(Hcss::new()).secret("tok").build().unwrap());
        assert_eq!(hcss.health().retry_horizon(), Some(Duration::from_secs(24 * 3600)));
        let aps = Receiver::new(
            Verifier::builder(crate::schemes::Aps::new())
                .secret("s")
                .build()
                .unwrap(),
        );
        let own = crate::schemes::Aps::new().profile().retry_horizon().mul_f64(1.5) + Duration::from_secs(60);
        assert_eq!(aps.health().retry_horizon(), Some(own));
    }

    /// A handler's 2xx after the sender stopped waiting reached no one: the sender counted a
    /// timeout, so health counts a failure too.
    #[test]
    fn a_2xx_after_the_senders_timeout_counts_as_a_failure() {
        let rx = Receiver::new(Verifier::builder(Hcss::new()).secret("tok").build().unwrap())
            .with_sender_timeout(Duration::from_millis(500));
        deliver_hcss(&rx, "slow", Duration::from_millis(800), true);
        assert_eq!(rx.health().consecutive_failures(), 1);
        deliver_hcss(&rx, "fast", Duration::ZERO, true);
        assert_eq!(rx.health().consecutive_failures(), 0);
    }

    /// A genuine delivery filtered out (Procore's own source application) answered `200
    /// ignored` after the sender stopped waiting reached no one either.
    #[test]
    fn an_ignored_delivery_answered_after_the_senders_timeout_counts_as_a_failure() {
        use crate::schemes::Procore;
        let rx = Receiver::new(
            Verifier::builder(Procore::new())
                .secret("Bearer s")
                .ignore_source_application("mine")
                .build()
                .unwrap(),
        )
        .with_sender_timeout(Duration::from_secs(5));
        let body = r#"{"id":7,"event_type":"update","metadata":{"source_application_id":"mine"}}"#;
        let signed = Procore::new()
            .sign("Bearer s", body.as_bytes(), &crate::SignParams::new(0))
            .unwrap();
        let (headers, uri) = crate::testing::request_parts(signed, "/h");
        let head = RequestHead::new(&http::Method::POST, &uri, &headers);
        let answer = |arrived| {
            block_on(rx.admit_since(&head, bytes::Bytes::from(body), arrived))
                .err()
                .unwrap()
        };
        let late = std::time::Instant::now() - Duration::from_secs(6);
        assert_eq!(answer(late).body().as_ref(), br#"{"status":"ignored"}"#);
        assert_eq!(rx.health().consecutive_failures(), 1);
        assert_eq!(answer(std::time::Instant::now()).status(), 200);
        assert_eq!(rx.health().consecutive_failures(), 0);
    }

    /// A receiver given no known timeout (zero) counts no answer late.
    #[test]
    fn a_zero_sender_timeout_counts_no_answer_late() {
        let rx = Receiver::new(Verifier::builder(Hcss::new()).secret("tok").build().unwrap())
            .with_sender_timeout(Duration::ZERO);
        deliver_hcss(&rx, "any", Duration::from_millis(5), true);
        assert_eq!(rx.health().consecutive_failures(), 0);
    }

    /// The sender's timeout runs from its request, not from the handler's start: a dedupe store
    /// slow to answer delays the 2xx as much as a slow handler does.
    #[test]
    fn time_in_the_dedupe_store_counts_toward_the_senders_timeout() {
        let rx = Receiver::new(Verifier::builder(Hcss::new()).secret("tok").build().unwrap())
            .with_dedupe(Dedupe::new(crate::dedupe::Observed {
                store: MemoryStore::new(100),
                claim_pause: Duration::from_millis(80),
                settle_pause: Duration::ZERO,
                renewals: Default::default(),
            }))
            .with_sender_timeout(Duration::from_millis(50));
        deliver_hcss(&rx, "slow-store", Duration::ZERO, true);
        assert_eq!(rx.health().consecutive_failures(), 1);
    }

    /// Settling the claim (recording it done, or letting it go for a body that only coalesces
    /// copies in flight) is part of the wait too: the 2xx reached the sender only after it.
    #[test]
    fn time_settling_the_claim_counts_toward_the_senders_timeout() {
        let rx = Receiver::new(Verifier::builder(Hcss::new()).secret("tok").build().unwrap())
            .with_dedupe(Dedupe::new(crate::dedupe::Observed {
                store: MemoryStore::new(100),
                claim_pause: Duration::ZERO,
                settle_pause: Duration::from_millis(80),
                renewals: Default::default(),
            }))
            .with_sender_timeout(Duration::from_millis(50));
        deliver_hcss(&rx, "slow-completion", Duration::ZERO, true);
        assert_eq!(rx.health().consecutive_failures(), 1);
    }

    /// An unauthenticated query challenge (anyone can send HCSS's) answered 200 does not reset
    /// the count of refusals in a row: it says nothing about the sender.
    #[test]
    fn a_challenge_does_not_reset_the_senders_health() {
        let rx = Receiver::new(Verifier::builder(Hcss::new()).secret("tok").build().unwrap());
        let headers = http::HeaderMap::new();
        let wrong = http::Uri::from_static("/h?token=wrong");
        for _ in 0..3 {
            let r = block_on(rx.admit(
                &RequestHead::new(&http::Method::POST, &wrong, &headers),
                hcss_event("e"),
            ));
            assert_eq!(r.unwrap_err().status(), 401);
        }
        let challenge = http::Uri::from_static("/h?challenge=x");
        let answer = rx.precheck(&RequestHead::new(&http::Method::GET, &challenge, &headers));
        assert_eq!(answer.unwrap_err().status(), 200);
        assert_eq!(rx.health().consecutive_failures(), 3);
        // Nor does a challenge refused for its length count as a failed delivery (it did: six
        // such GETs, no token needed, read as HCSS's failed tries; a review).
        let long: http::Uri = format!("/h?challenge={}", "a".repeat(1_100)).parse().unwrap();
        for _ in 0..3 {
            let answer = rx.precheck(&RequestHead::new(&http::Method::GET, &long, &headers));
            assert_eq!(answer.unwrap_err().status(), 400);
        }
        assert_eq!(rx.health().consecutive_failures(), 3);
    }

    /// Events the sender gave up on are looked for at most once a minute, not at every
    /// success: with thousands tracked after an outage, each success scanned them all under
    /// the lock (+120 µs per delivery for a day, measured by a review).
    #[test]
    fn given_up_events_are_swept_at_most_once_a_minute() {
        use super::{event_of, KillSwitch, SenderHealth, SWEEP_EVERY};
        use crate::Provider;
        use std::time::Instant;
        let k = KillSwitch::new(5, "stops", "re-subscribe").per_event();
        let h = SenderHealth::new(Provider::Hcss, Some(k)).with_retry_horizon(Duration::ZERO);
        h.answered_event(false, Some(event_of(b"a")));
        h.answered_event(true, Some(event_of(b"b")));
        assert_eq!(h.event_failures(), 0, "the first success sweeps");
        h.answered_event(false, Some(event_of(b"c")));
        h.answered_event(true, Some(event_of(b"d")));
        assert_eq!(h.event_failures(), 1, "not again within the minute");
        // A minute on: swept again.
        h.events.lock().unwrap().swept = Instant::now().checked_sub(SWEEP_EVERY);
        h.answered_event(true, Some(event_of(b"d")));
        assert_eq!(h.event_failures(), 0);
    }

    /// A sender whose switch counts failures in a row (BuildWorkPro) tracks no events.
    #[test]
    fn consecutive_kill_switches_track_no_events() {
        assert!(!BuildWorkPro::new().kill_switch().unwrap().per_event);
        let rx = Receiver::new(
            Verifier::builder(BuildWorkPro::new())
                .secret("whsec_k")
                .build()
                .unwrap(),
        );
        assert!(!rx.health().counts_events());
    }
}
