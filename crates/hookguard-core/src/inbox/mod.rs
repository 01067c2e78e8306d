//! The durable inbox: answer `2xx` only once a delivery is on disk, handle it afterwards.
//!
//! Every sender asks the same of a receiver: persist the event, answer at once, do the work
//! later (BuildWorkPro: "return 200 as soon as you've persisted the event id"; Procore: "send
//! back the 2XX as soon as possible"). With an inbox, a verified delivery is
//! [accepted](InboxStore::accept) — written durably, insert-if-absent on
//! `(provider, dedupe key)` — and answered `200 {"status":"accepted"}`; a worker then runs it
//! through the application's handler with retries on *our* schedule, so a slow or failing
//! handler never counts against the sender's kill switch.
//!
//! ## Life of an item
//!
//! ```text
//! accept ──▶ pending ──claim──▶ running ──complete──▶ done ──purge──▶ (gone)
//!               ▲                  │
//!               └── fail (retry) ──┤
//!                                  └── fail (last attempt) ──▶ dead ──replay, or a copy──▶ pending
//! ```
//!
//! A claim holds a *lease*: a process killed during a handler leaves a lease that expires,
//! and the item is claimed again (handlers run **at least once**). Every answer about a claim
//! names it by its [`ClaimRef`] (item, attempt number and the lease's end as the store wrote
//! it); an answer for a claim that no longer holds the item is refused, so a handler that
//! outlived its lease never overwrites the outcome of a later claim — also one that reuses its
//! attempt number after a deferral, a shutdown's give-back or a replay.
//!
//! ## Dedupe
//!
//! The inbox row itself is the dedupe record. A key with
//! [`DedupeScope::Retained`] (a sender's unique event id) is
//! remembered until the row is purged (default retention 7 days, longer than every sender's
//! retry horizon). A key with [`DedupeScope::WhileInFlight`]
//! (HCSS Setups and HeavyJob bodies, which carry no id and no time) coalesces copies only while
//! an item is pending, not yet started; an identical body that arrives once its handler has
//! started is a new event: it may be a second edit the running handler has not seen (it may
//! have read the entity already), and HCSS never sends an event again after a 2xx. At worst
//! the handler runs once more, as in inline handling, where such a copy is answered 429 and
//! handled on HCSS's retry.
//!
//! A copy of a **dead** item is not a duplicate of anything handled: the sender sent the event
//! again (a resend from its dashboard or replay endpoint once you fixed the handler, or a retry
//! after an answer it never got), and the event never succeeded. The copy puts the item back to
//! pending with its attempts reset, as [`replay`](InboxStore::replay) does (its body as first
//! stored), and is answered [`Accepted::Stored`] with the item's id — `200 accepted`, and the
//! worker runs it again. A copy of a pending, running or done item is
//! [`Accepted::Duplicate`]. At the pending cap a copy of a dead item is refused
//! ([`InboxError::Full`]: `503`, the sender retries), as a new item would be. The item keeps
//! its first arrival time (its pending age counts from it). A delivery that went dead because
//! it kept killing the process gets its attempts again with each such copy: as many times as
//! the sender sends it, which it does on its own only after an answer it did not get.
//!
//! ## What is stored
//!
//! The body bytes exactly as received, the event id exactly as sent, the event type, and the
//! request headers needed to inspect or re-verify the delivery — **never** a credential:
//! [`stored_headers`] drops `Authorization`, `Proxy-Authorization`, `Cookie`, the scheme's own
//! credential header (Procore's configured header, an HCSS token header), every header whose
//! name says it holds a credential (`X-Api-Key`, `X-Auth-Token`, …), and the URL (so no URL
//! token) is not stored at all.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;

use crate::{DedupeScope, Delivery, Provider};

#[cfg(feature = "worker")]
mod worker;

/// Wakes every worker waiting on an inbox store's [`notified`](InboxStore::notified) (workers
/// of different senders may share a store: each claims only its own senders' items, so one
/// woken at random could be the wrong one), and leaves a wake-up for one that is not waiting
/// yet (busy claiming: what was just stored may not have been in its claim). For stores whose
/// `notified` waits on this `Notify`, after an accept or a replay made items due. (The SQLite
/// and PostgreSQL inboxes do not wake for a give-back: the worker that gives items back is
/// stopping or deferring them, and another finds them at its next poll.)
///
/// ```
/// let notify = tokio::sync::Notify::new();
/// hookguard_core::inbox::wake_every_worker(&notify);
/// // The wake-up left for a worker not waiting yet.
/// hookguard_core::testing::block_on(notify.notified());
/// ```
#[cfg(feature = "tokio")]
pub fn wake_every_worker(notify: &tokio::sync::Notify) {
    notify.notify_waiters();
    notify.notify_one();
}
#[cfg(feature = "worker")]
pub use worker::{HandlerError, HandlerFuture, InboxHandler, Outcome, Worker, WorkerBuilder, WorkerHandle};

/// The future every inbox method returns (boxed so stores can be used as `dyn InboxStore`).
///
/// ```
/// use hookguard_core::inbox::{InboxError, InboxFuture};
/// let f: InboxFuture<'static, u64> = Box::pin(async { Err(InboxError::Full { limit: 10 }) });
/// assert!(matches!(hookguard_core::testing::block_on(f), Err(InboxError::Full { limit: 10 })));
/// ```
pub type InboxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, InboxError>> + Send + 'a>>;

/// The shortest lease a worker holds a claim for: a shorter one asked of
/// [`WorkerBuilder::lease`](crate::inbox::Worker) is raised to it.
///
/// ```
/// assert_eq!(hookguard_core::inbox::MIN_LEASE, std::time::Duration::from_millis(100));
/// ```
pub const MIN_LEASE: Duration = Duration::from_millis(100);

/// Default retention of done items: 7 days, longer than every sender's retry horizon
/// (BuildWorkPro ≈ 31 h, Procore 12 h, APS ≥ 48 h).
///
/// ```
/// use std::time::Duration;
/// assert_eq!(hookguard_core::inbox::DEFAULT_RETENTION, Duration::from_secs(7 * 24 * 3600));
/// // As long as the dedupe stores remember a key.
/// assert_eq!(hookguard_core::inbox::DEFAULT_RETENTION, hookguard_core::dedupe::DEFAULT_RETENTION);
/// ```
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default cap on pending and running items.
///
/// ```
/// assert_eq!(hookguard_core::inbox::DEFAULT_MAX_PENDING, 100_000);
/// ```
pub const DEFAULT_MAX_PENDING: u64 = 100_000;
/// The most headers stored per delivery (the first by name beyond it).
///
/// ```
/// use hookguard_core::inbox::{stored_headers, MAX_STORED_HEADERS};
/// let mut h = http::HeaderMap::new();
/// for i in 0..100 {
///     h.insert(format!("x-h{i:03}").parse::<http::HeaderName>().unwrap(), "v".parse().unwrap());
/// }
/// let kept = stored_headers(&h, None);
/// assert_eq!(kept.len(), MAX_STORED_HEADERS);
/// assert_eq!(kept[0].0, "x-h000"); // the first by name
/// ```
pub const MAX_STORED_HEADERS: usize = 64;
/// The longest header value stored.
///
/// ```
/// use hookguard_core::inbox::{stored_headers, MAX_STORED_HEADER_LEN};
/// let mut h = http::HeaderMap::new();
/// h.insert("x-long", "a".repeat(MAX_STORED_HEADER_LEN + 1).parse().unwrap());
/// h.insert("x-short", "a".parse().unwrap());
/// assert_eq!(stored_headers(&h, None), vec![("x-short".to_owned(), "a".to_owned())]);
/// ```
pub const MAX_STORED_HEADER_LEN: usize = 4096;

/// Why an inbox operation failed.
///
/// ```
/// let e = hookguard_core::inbox::InboxError::Full { limit: 10 };
/// assert_eq!(e.to_string(), "inbox is full (10 pending items)");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum InboxError {
    /// The cap on pending items is reached: answer `503` + `Retry-After`, store nothing.
    Full {
        /// The configured cap.
        limit: u64,
    },
    /// No item with this id.
    NotFound(i64),
    /// The item is not in a state the operation applies to (e.g. replaying a pending item).
    WrongState {
        /// The item.
        id: i64,
        /// Its state.
        state: InboxState,
        /// What the operation needs.
        expected: &'static str,
    },
    /// The backend failed (disk full, I/O error, database unreachable).
    Storage(Box<dyn std::error::Error + Send + Sync>),
}

impl fmt::Display for InboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full { limit } => write!(f, "inbox is full ({limit} pending items)"),
            Self::NotFound(id) => write!(f, "no inbox item {id}"),
            Self::WrongState { id, state, expected } => write!(f, "inbox item {id} is {state}, not {expected}"),
            Self::Storage(e) => write!(f, "inbox storage error: {e}"),
        }
    }
}

impl std::error::Error for InboxError {}

impl InboxError {
    /// Wraps a backend error.
    ///
    /// ```
    /// let e = hookguard_core::inbox::InboxError::storage("disk full");
    /// assert!(e.to_string().contains("disk full"));
    /// ```
    pub fn storage(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Storage(e.into())
    }
}

/// Where an item is in its life.
///
/// ```
/// use hookguard_core::inbox::InboxState;
/// assert_eq!("dead".parse::<InboxState>().unwrap(), InboxState::Dead);
/// assert_eq!(InboxState::Pending.as_str(), "pending");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InboxState {
    /// Waiting for its (next) attempt.
    Pending,
    /// A worker holds its lease.
    Running,
    /// Handled.
    Done,
    /// Every attempt failed; waits for a replay or a purge.
    Dead,
}

impl InboxState {
    /// Every state, in life order.
    ///
    /// ```
    /// use hookguard_core::inbox::InboxState;
    /// let names: Vec<&str> = InboxState::ALL.iter().map(|s| s.as_str()).collect();
    /// assert_eq!(names, ["pending", "running", "done", "dead"]);
    /// ```
    pub const ALL: [InboxState; 4] = [
        InboxState::Pending,
        InboxState::Running,
        InboxState::Done,
        InboxState::Dead,
    ];

    /// The stable lower-case name.
    ///
    /// ```
    /// use hookguard_core::inbox::InboxState;
    /// assert_eq!(InboxState::Running.as_str(), "running");
    /// assert_eq!(InboxState::Dead.to_string(), InboxState::Dead.as_str());
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            InboxState::Pending => "pending",
            InboxState::Running => "running",
            InboxState::Done => "done",
            InboxState::Dead => "dead",
        }
    }

    /// The small integer backends store.
    ///
    /// ```
    /// use hookguard_core::inbox::InboxState;
    /// for s in InboxState::ALL { assert_eq!(InboxState::from_code(s.code()), Some(s)); }
    /// ```
    pub fn code(&self) -> i64 {
        match self {
            InboxState::Pending => 0,
            InboxState::Running => 1,
            InboxState::Done => 2,
            InboxState::Dead => 3,
        }
    }

    /// The state stored as `code`.
    ///
    /// ```
    /// use hookguard_core::inbox::InboxState;
    /// assert_eq!(InboxState::from_code(3), Some(InboxState::Dead));
    /// assert_eq!(InboxState::from_code(9), None);
    /// ```
    pub fn from_code(code: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }
}

impl fmt::Display for InboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for InboxState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("unknown state `{s}` (expected pending, running, done or dead)"))
    }
}

/// A verified delivery to store.
///
/// ```
/// use hookguard_core::{inbox::NewItem, schemes::BuildWorkPro, testing};
/// let d = testing::deliver(BuildWorkPro::new(), "whsec_k", br#"{"id":"evt_1","type":"bid.accepted"}"#).unwrap();
/// let item = NewItem::from_delivery(&d, Vec::new(), 1_700_000_000_000);
/// assert_eq!(item.dedupe_key.as_deref(), Some("buildworkpro:evt_1"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewItem {
    /// The sender.
    pub provider: String,
    /// The dedupe key (`None`: nothing to recognise copies by, always stored).
    pub dedupe_key: Option<String>,
    /// How long the key recognises copies.
    pub scope: DedupeScope,
    /// The event id exactly as sent.
    pub event_id: Option<String>,
    /// The event type.
    pub event_type: Option<String>,
    /// Unix time in milliseconds.
    pub received_at_ms: i64,
    /// Headers kept for inspection and re-verification (never credentials; see [`stored_headers`]).
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Bytes,
}

impl NewItem {
    /// An item from its parts (the rest empty: set the public fields), for backends, tests and
    /// benchmarks.
    ///
    /// ```
    /// let it = hookguard_core::inbox::NewItem::from_parts("hcss", None, bytes::Bytes::from_static(b"{}"));
    /// assert_eq!(it.provider, "hcss");
    /// ```
    pub fn from_parts(provider: &str, dedupe_key: Option<String>, body: Bytes) -> Self {
        Self {
            provider: provider.to_owned(),
            dedupe_key,
            scope: DedupeScope::Retained,
            event_id: None,
            event_type: None,
            received_at_ms: 0,
            headers: Vec::new(),
            body,
        }
    }

    /// The item for a verified delivery.
    ///
    /// ```
    /// use hookguard_core::{inbox::NewItem, schemes::Stripe, testing, DedupeScope};
    /// let d = testing::deliver(Stripe::new(), "whsec_k", br#"{"id":"evt_1","type":"invoice.paid"}"#).unwrap();
    /// let headers = vec![("user-agent".to_owned(), "Stripe/1.0".to_owned())];
    /// let item = NewItem::from_delivery(&d, headers, 1_700_000_000_000);
    /// assert_eq!(item.provider, "stripe");
    /// assert_eq!(item.dedupe_key.as_deref(), Some("stripe:evt_1"));
    /// assert_eq!(item.event_type.as_deref(), Some("invoice.paid"));
    /// assert_eq!(item.scope, DedupeScope::Retained);
    /// assert_eq!(&item.body, d.body());
    /// ```
    pub fn from_delivery(d: &Delivery, headers: Vec<(String, String)>, received_at_ms: i64) -> Self {
        Self {
            provider: d.provider().as_str().to_owned(),
            dedupe_key: d.dedupe_key().map(str::to_owned),
            scope: d.dedupe_scope(),
            event_id: d.event_id().map(str::to_owned),
            event_type: d.event_type().map(str::to_owned),
            received_at_ms,
            headers,
            body: d.body().clone(),
        }
    }
}

/// The answer to [`InboxStore::accept`].
///
/// ```
/// use hookguard_core::inbox::Accepted;
/// fn answer(a: Accepted) -> &'static str {
///     match a {
///         Accepted::Stored(_) => "accepted",
///         Accepted::Duplicate(_) => "duplicate",
///     }
/// }
/// assert_eq!(answer(Accepted::Stored(7)), "accepted");
/// assert_eq!(answer(Accepted::Duplicate(7)), "duplicate");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Durably stored under this id: a new item, or a dead one a copy put back to pending (see
    /// the [module docs](self#dedupe)).
    Stored(i64),
    /// A copy of an item already in the inbox (pending, running or done): nothing stored.
    Duplicate(i64),
}

/// One stored item, as listed and shown.
///
/// ```
/// use hookguard_core::inbox::{InboxRecord, InboxState};
/// let mut r = InboxRecord::empty(7, "procore".into());
/// r.state = InboxState::Dead;
/// r.attempts = 10;
/// r.last_error = Some("exit status 3".into());
/// assert_eq!((r.id, r.state, r.attempts), (7, InboxState::Dead, 10));
/// assert_eq!(r.body, None); // bodies only come with `InboxStore::get`
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InboxRecord {
    /// The inbox's id.
    pub id: i64,
    /// The sender.
    pub provider: String,
    /// The dedupe key.
    pub dedupe_key: Option<String>,
    /// The event id exactly as sent.
    pub event_id: Option<String>,
    /// The event type.
    pub event_type: Option<String>,
    /// The state.
    pub state: InboxState,
    /// Attempts started so far.
    pub attempts: u32,
    /// Unix ms when accepted.
    pub received_at_ms: i64,
    /// Unix ms of the next attempt (pending), or when the lease ends (running).
    pub next_attempt_at_ms: i64,
    /// Unix ms when it became done or dead.
    pub finished_at_ms: Option<i64>,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// Stored headers (only in [`InboxStore::get`]).
    pub headers: Vec<(String, String)>,
    /// The body (only in [`InboxStore::get`]).
    pub body: Option<Bytes>,
    /// Body size in bytes.
    pub body_len: u64,
}

impl InboxRecord {
    /// A pending record with only its id and provider set (backends fill in the rest).
    ///
    /// ```
    /// let r = hookguard_core::inbox::InboxRecord::empty(7, "hcss".into());
    /// assert_eq!((r.id, r.attempts), (7, 0));
    /// ```
    pub fn empty(id: i64, provider: String) -> Self {
        Self {
            id,
            provider,
            dedupe_key: None,
            event_id: None,
            event_type: None,
            state: InboxState::Pending,
            attempts: 0,
            received_at_ms: 0,
            next_attempt_at_ms: 0,
            finished_at_ms: None,
            last_error: None,
            headers: Vec::new(),
            body: None,
            body_len: 0,
        }
    }
}

/// One claim of one item: what [`InboxStore::complete`], [`fail`](InboxStore::fail),
/// [`release`](InboxStore::release) and [`defer`](InboxStore::defer) answer about.
///
/// The attempt number alone does not tell claims apart: a deferral and a shutdown give an item
/// back without counting the attempt, and a replay counts again from zero, so a later claim can
/// carry the same number. The lease's end, as the store wrote it on its own clock, does, as long
/// as the claims take leases of one length (one worker configuration): a later claim of an item
/// starts after the earlier one ended or gave the item back, so its lease ends later — or at the
/// same millisecond when it was given back and claimed again within one, which the
/// [`Worker`] tells apart by its own count. (The SQLite inbox's clock
/// never goes back; PostgreSQL's is the database's.) A store refuses an answer whose claim no
/// longer holds the item.
///
/// ```
/// use hookguard_core::inbox::ClaimRef;
/// let c = ClaimRef::new(7, 1, 1_700_000_060_000);
/// assert_ne!(c, ClaimRef::new(7, 1, 1_700_000_090_000), "same attempt, a later claim");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ClaimRef {
    /// The inbox id.
    pub id: i64,
    /// The attempt's number (1 for the first).
    pub attempt: u32,
    /// When the claim's lease ends (unix ms on the store's clock), as the store wrote it.
    pub lease_until_ms: i64,
}

impl ClaimRef {
    /// The claim of `id`'s attempt `attempt` whose lease the store set to end at
    /// `lease_until_ms` (for backends).
    ///
    /// ```
    /// use hookguard_core::inbox::ClaimRef;
    /// let c = ClaimRef::new(7, 2, 1_700_000_060_000);
    /// assert_eq!((c.id, c.attempt, c.lease_until_ms), (7, 2, 1_700_000_060_000));
    /// ```
    pub fn new(id: i64, attempt: u32, lease_until_ms: i64) -> Self {
        Self {
            id,
            attempt,
            lease_until_ms,
        }
    }
}

/// An item a worker claimed: run the handler, then [`complete`](InboxStore::complete) or
/// [`fail`](InboxStore::fail) its [`claim`](Self::claim).
///
/// ```
/// use hookguard_core::{inbox::{ClaimRef, ClaimedItem}, Provider};
/// let item = ClaimedItem::new(
///     ClaimRef::new(7, 1, 1_700_000_060_000),
///     "buildworkpro",
///     Some("buildworkpro:evt_1".into()),
///     Some("evt_1".into()),
///     Some("bid.accepted".into()),
///     bytes::Bytes::from_static(br#"{"id":"evt_1","type":"bid.accepted"}"#),
///     1_700_000_000_000,
/// );
/// assert_eq!(item.delivery.provider(), Provider::BuildWorkPro);
/// assert_eq!(item.delivery.event_id(), Some("evt_1"));
/// assert_eq!(item.delivery.timestamp(), None); // not kept in the inbox
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClaimedItem {
    /// The inbox id.
    pub id: i64,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
    /// When this claim's lease ends (unix ms on the store's clock).
    pub lease_until_ms: i64,
    /// The delivery as it was received: its provider, event id and type, dedupe key and body
    /// (read the body's own fields with [`Delivery::json`]). Not kept in the inbox, so empty
    /// here: the signed time ([`Delivery::timestamp`] is `None`; the row's
    /// [`received_at_ms`](Self::received_at_ms) is when it arrived), Procore's
    /// [`Delivery::source_application_id`] (`None`: deliveries from the application ids you
    /// ignore are answered `ignored` and never stored), and the dedupe scope
    /// ([`Delivery::dedupe_scope`] says `Retained` whatever the scheme said).
    pub delivery: Delivery,
    /// Unix ms when accepted.
    pub received_at_ms: i64,
}

impl ClaimedItem {
    /// Rebuilds the claimed delivery from stored parts (for backends).
    ///
    /// ```
    /// use hookguard_core::{inbox::{ClaimRef, ClaimedItem}, Provider};
    /// // A provider name that is no built-in one is kept as a custom provider.
    /// let item = ClaimedItem::new(ClaimRef::new(1, 1, 0), "acme-erp", None, None, None, bytes::Bytes::new(), 0);
    /// assert_eq!(item.delivery.provider(), Provider::Custom("acme-erp"));
    /// assert_eq!(item.delivery.provider().as_str(), "acme-erp");
    /// ```
    pub fn new(
        claim: ClaimRef,
        provider: &str,
        dedupe_key: Option<String>,
        event_id: Option<String>,
        event_type: Option<String>,
        body: Bytes,
        received_at_ms: i64,
    ) -> Self {
        let provider = provider
            .parse::<Provider>()
            .unwrap_or_else(|_| Provider::Custom(intern(provider)));
        Self {
            id: claim.id,
            attempt: claim.attempt,
            lease_until_ms: claim.lease_until_ms,
            delivery: Delivery {
                provider,
                event_id,
                event_type,
                timestamp: None,
                dedupe_key,
                dedupe_scope: DedupeScope::Retained,
                source_application_id: None,
                body,
            },
            received_at_ms,
        }
    }

    /// This claim, for the store's answers about it.
    ///
    /// ```
    /// use hookguard_core::inbox::{ClaimRef, ClaimedItem};
    /// let item = ClaimedItem::new(ClaimRef::new(7, 3, 1_700_000_060_000), "stripe", None, None, None, bytes::Bytes::new(), 0);
    /// assert_eq!(item.claim(), ClaimRef::new(7, 3, 1_700_000_060_000));
    /// ```
    pub fn claim(&self) -> ClaimRef {
        ClaimRef::new(self.id, self.attempt, self.lease_until_ms)
    }
}

/// Custom provider names read back from storage are few (one per configured sender): keep one
/// leaked copy of each.
fn intern(name: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    let set = names.get_or_insert_with(HashSet::new);
    if let Some(n) = set.get(name) {
        return n;
    }
    if set.len() >= 64 {
        return "custom";
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}

/// Filters for [`InboxStore::list`].
///
/// ```
/// use hookguard_core::inbox::{ListFilter, InboxState};
/// let f = ListFilter::default().state(InboxState::Dead).limit(10);
/// assert_eq!(f.limit, 10);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListFilter {
    /// Only this state.
    pub state: Option<InboxState>,
    /// Only this provider.
    pub provider: Option<String>,
    /// At most this many, newest first (done or dead: most recently finished first).
    pub limit: u32,
}

impl Default for ListFilter {
    fn default() -> Self {
        Self {
            state: None,
            provider: None,
            limit: 100,
        }
    }
}

impl ListFilter {
    /// Only items in `state`.
    ///
    /// ```
    /// use hookguard_core::inbox::{InboxState, ListFilter};
    /// assert_eq!(ListFilter::default().state, None); // every state
    /// let f = ListFilter::default().state(InboxState::Dead);
    /// assert_eq!(f.state, Some(InboxState::Dead));
    /// ```
    pub fn state(mut self, state: InboxState) -> Self {
        self.state = Some(state);
        self
    }
    /// Only items from `provider`.
    ///
    /// ```
    /// use hookguard_core::{inbox::ListFilter, Provider};
    /// let f = ListFilter::default().provider(Provider::Procore.as_str());
    /// assert_eq!(f.provider.as_deref(), Some("procore"));
    /// ```
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }
    /// At most `n` items.
    ///
    /// ```
    /// use hookguard_core::inbox::ListFilter;
    /// assert_eq!(ListFilter::default().limit, 100);
    /// assert_eq!(ListFilter::default().limit(20).limit, 20);
    /// ```
    pub fn limit(mut self, n: u32) -> Self {
        self.limit = n;
        self
    }
}

/// Counts and sizes, for `hookguard inbox stats` and metrics.
///
/// ```
/// use hookguard_core::inbox::InboxStats;
/// let mut s = InboxStats::default();
/// s.pending = 3;
/// s.oldest_pending_ms = Some(1_700_000_000_000);
/// assert_eq!(s.oldest_pending_secs(1_700_000_030_000), Some(30.0));
/// assert_eq!((s.running, s.done, s.dead), (0, 0, 0));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InboxStats {
    /// Items per state: pending, running, done, dead.
    pub pending: u64,
    /// Running items.
    pub running: u64,
    /// Done items (until purged).
    pub done: u64,
    /// Dead items.
    pub dead: u64,
    /// Unix ms when the oldest pending item was received.
    pub oldest_pending_ms: Option<i64>,
    /// Bytes of stored bodies.
    pub body_bytes: u64,
    /// Bytes the backend uses on disk, where it knows.
    pub disk_bytes: Option<u64>,
}

impl InboxStats {
    /// How long the oldest pending item has waited at `now_ms` (unix ms), in seconds: never
    /// negative (a clock behind the item's), and no overflow for a hand-edited time.
    ///
    /// ```
    /// let mut s = hookguard_core::inbox::InboxStats::default();
    /// assert_eq!(s.oldest_pending_secs(5_000), None);
    /// s.oldest_pending_ms = Some(2_500);
    /// assert_eq!(s.oldest_pending_secs(5_000), Some(2.5));
    /// assert_eq!(s.oldest_pending_secs(1_000), Some(0.0));
    /// s.oldest_pending_ms = Some(i64::MIN);
    /// assert!(s.oldest_pending_secs(5_000).unwrap() > 1e15);
    /// ```
    pub fn oldest_pending_secs(&self, now_ms: i64) -> Option<f64> {
        self.oldest_pending_ms
            .map(|t| now_ms.saturating_sub(t).max(0) as f64 / 1000.0)
    }
}

/// Where deliveries wait: embedded SQLite (`hookguard-sqlite`), PostgreSQL for many replicas.
///
/// Every method is one transaction, but for the bulk ones (`purge`, `replay_dead`), which may
/// take several so that accepts go on between them, and a PostgreSQL `accept` that meets a
/// stored copy (up to three statements, each committing on its own: see that crate). `accept`
/// returns only once the item is durable (synced to disk), so the `200` it leads to is a
/// promise.
///
/// ```
/// # use std::sync::Arc;
/// # use std::time::Duration;
/// # use hookguard_core::inbox::{Accepted, ClaimRef, ClaimedItem, InboxFuture, InboxRecord, InboxState, InboxStats, InboxStore, ListFilter, NewItem};
/// use hookguard_core::testing::MemoryInbox;
/// use hookguard_core::{schemes::GitHub, testing::block_on, Receiver, RequestHead, Scheme, SignParams};
/// // In inbox mode a receiver stores each new delivery and answers at once.
/// let rx: Receiver = Receiver::builder(GitHub::new()).secret("s").inbox(MemoryInbox::default()).build().unwrap();
/// let body = bytes::Bytes::from_static(br#"{"zen":"Keep it logically awesome."}"#);
/// let mut headers = http::HeaderMap::new();
/// headers.extend(GitHub::new().sign("s", &body, &SignParams::new(0)).unwrap().headers);
/// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
/// let head = RequestHead::new(&m, &u, &headers);
/// let answer = block_on(rx.admit(&head, body.clone())).unwrap_err();
/// assert_eq!(answer.body().as_ref(), br#"{"status":"accepted"}"#);
/// // A copy: `Accepted::Duplicate`.
/// let copy = block_on(rx.admit(&head, body)).unwrap_err();
/// assert_eq!(copy.body().as_ref(), br#"{"status":"duplicate"}"#);
/// ```
pub trait InboxStore: Send + Sync + 'static {
    /// Stores `item` unless a copy is already there (see the [module docs](self#dedupe) for
    /// dedupe scope); a copy of a dead item puts that item back to pending (`Stored` with its
    /// id). Durable when it returns `Stored`.
    ///
    /// # Errors
    /// [`InboxError::Full`] over the pending cap; [`InboxError::Storage`] when nothing could be
    /// stored. Either way the receiver answers `503` + `Retry-After`, never `2xx`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::inbox::{Accepted, InboxState, InboxStore, ListFilter, NewItem};
    /// use hookguard_core::testing::{block_on, MemoryInbox};
    /// let inbox = MemoryInbox::default();
    /// let item = |key: &str| NewItem::from_parts("procore", Some(key.into()), bytes::Bytes::from_static(b"{}"));
    /// assert_eq!(block_on(inbox.accept(item("5982324300946918154"))).unwrap(), Accepted::Stored(1));
    /// // The sender's retry of the same event: recognised, not stored twice.
    /// assert_eq!(block_on(inbox.accept(item("5982324300946918154"))).unwrap(), Accepted::Duplicate(1));
    /// ```
    fn accept(&self, item: NewItem) -> InboxFuture<'_, Accepted>;

    /// Claims up to `limit` due items (pending with `next_attempt_at <= now`, or running with an
    /// expired lease) for `lease`: each becomes running with `attempts + 1`, first due first
    /// (a new item is due from its arrival). A backend shared by many processes may read its
    /// own clock instead of `now_ms` (the PostgreSQL inbox keeps every schedule on the
    /// database's clock, and takes the times given to `fail` and `defer` as delays from the
    /// caller's `now`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::inbox::{Accepted, InboxState, InboxStore, ListFilter, NewItem};
    /// use hookguard_core::testing::{block_on, MemoryInbox};
    /// let inbox = MemoryInbox::default();
    /// let item = |key: &str| NewItem::from_parts("procore", Some(key.into()), bytes::Bytes::from_static(b"{}"));
    /// block_on(inbox.accept(item("a"))).unwrap();
    /// let claimed = block_on(inbox.claim(1_000, Duration::from_secs(60), 10)).unwrap();
    /// assert_eq!((claimed[0].attempt, claimed[0].lease_until_ms), (1, 61_000));
    /// // Held by its lease: not claimed again before it ends, claimed again after.
    /// assert!(block_on(inbox.claim(60_999, Duration::from_secs(60), 10)).unwrap().is_empty());
    /// assert_eq!(block_on(inbox.claim(61_000, Duration::from_secs(60), 10)).unwrap()[0].attempt, 2);
    /// ```
    fn claim(&self, now_ms: i64, lease: Duration, limit: u32) -> InboxFuture<'_, Vec<ClaimedItem>>;

    /// Claims as [`claim`](Self::claim) does, only items of the senders named (their
    /// [`Provider::as_str`](crate::Provider::as_str) names; empty: every item), for workers
    /// that share one inbox and each run their own senders' items (`WorkerBuilder::providers`,
    /// with the `worker` feature). The default claims
    /// every item when none is named, and otherwise fails ([`InboxError::Storage`]): a store
    /// that cannot filter must not hand a worker another sender's items.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use hookguard_core::inbox::{Accepted, ClaimRef, ClaimedItem, InboxFuture, InboxRecord, InboxState, InboxStats, InboxStore, ListFilter, NewItem};
    /// use hookguard_core::testing::MemoryInbox;
    /// # // A store that keeps the trait's defaults: every required method passed on.
    /// # struct Plain(MemoryInbox);
    /// # impl InboxStore for Plain {
    /// #     fn accept(&self, i: NewItem) -> InboxFuture<'_, Accepted> { self.0.accept(i) }
    /// #     fn claim(&self, n: i64, l: Duration, k: u32) -> InboxFuture<'_, Vec<ClaimedItem>> { self.0.claim(n, l, k) }
    /// #     fn complete(&self, c: ClaimRef, n: i64) -> InboxFuture<'_, bool> { self.0.complete(c, n) }
    /// #     fn fail(&self, c: ClaimRef, e: &str, r: Option<i64>, n: i64) -> InboxFuture<'_, bool> { self.0.fail(c, e, r, n) }
    /// #     fn release(&self, c: ClaimRef) -> InboxFuture<'_, bool> { self.0.release(c) }
    /// #     fn get(&self, id: i64) -> InboxFuture<'_, Option<InboxRecord>> { self.0.get(id) }
    /// #     fn list(&self, f: ListFilter) -> InboxFuture<'_, Vec<InboxRecord>> { self.0.list(f) }
    /// #     fn replay(&self, id: i64, n: i64) -> InboxFuture<'_, ()> { self.0.replay(id, n) }
    /// #     fn replay_dead(&self, n: i64) -> InboxFuture<'_, u64> { self.0.replay_dead(n) }
    /// #     fn purge(&self, b: i64, d: bool) -> InboxFuture<'_, u64> { self.0.purge(b, d) }
    /// #     fn stats(&self) -> InboxFuture<'_, InboxStats> { self.0.stats() }
    /// # }
    /// use hookguard_core::{inbox::now_ms, testing::block_on};
    /// let store = Plain(MemoryInbox::default());
    /// block_on(store.accept(NewItem::from_parts("procore", None, bytes::Bytes::from_static(b"{}")))).unwrap();
    /// // A store that keeps the default cannot claim by sender: refused, never another sender's items.
    /// assert!(block_on(store.claim_of(&["hcss".to_owned()], now_ms(), Duration::from_secs(60), 10)).is_err());
    /// // With no sender named it is `claim`.
    /// assert_eq!(block_on(store.claim_of(&[], now_ms(), Duration::from_secs(60), 10)).unwrap().len(), 1);
    /// ```
    fn claim_of<'a>(
        &'a self,
        providers: &'a [String],
        now_ms: i64,
        lease: Duration,
        limit: u32,
    ) -> InboxFuture<'a, Vec<ClaimedItem>> {
        if providers.is_empty() {
            return self.claim(now_ms, lease, limit);
        }
        Box::pin(async {
            Err(InboxError::storage(
                "this inbox store cannot claim the items of some senders only",
            ))
        })
    }

    /// Marks the claimed item done. `Ok(false)`: that claim no longer holds the item (its
    /// lease expired and a later claim took it). Completing an item this same claim already
    /// completed answers `Ok(true)` again.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::inbox::{Accepted, InboxState, InboxStore, ListFilter, NewItem};
    /// use hookguard_core::testing::{block_on, MemoryInbox};
    /// let inbox = MemoryInbox::default();
    /// let item = |key: &str| NewItem::from_parts("procore", Some(key.into()), bytes::Bytes::from_static(b"{}"));
    /// block_on(inbox.accept(item("a"))).unwrap();
    /// let first = block_on(inbox.claim(1_000, Duration::from_secs(1), 1)).unwrap().remove(0);
    /// let second = block_on(inbox.claim(5_000, Duration::from_secs(60), 1)).unwrap().remove(0);
    /// // The first claim's lease ended and the second took the item: its answer is refused.
    /// assert!(!block_on(inbox.complete(first.claim(), 6_000)).unwrap());
    /// assert!(block_on(inbox.complete(second.claim(), 6_000)).unwrap());
    /// assert_eq!(block_on(inbox.get(1)).unwrap().unwrap().state, InboxState::Done);
    /// ```
    fn complete(&self, claim: ClaimRef, now_ms: i64) -> InboxFuture<'_, bool>;

    /// Records a failed attempt: back to pending at `retry_at_ms`, or dead when `None`.
    /// `Ok(false)` as for [`complete`](Self::complete).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::inbox::{Accepted, InboxState, InboxStore, ListFilter, NewItem};
    /// use hookguard_core::testing::{block_on, MemoryInbox};
    /// let inbox = MemoryInbox::default();
    /// let item = |key: &str| NewItem::from_parts("procore", Some(key.into()), bytes::Bytes::from_static(b"{}"));
    /// block_on(inbox.accept(item("a"))).unwrap();
    /// let c = block_on(inbox.claim(1_000, Duration::from_secs(60), 1)).unwrap().remove(0);
    /// assert!(block_on(inbox.fail(c.claim(), "downstream 502", Some(3_000), 2_000)).unwrap());
    /// assert!(block_on(inbox.claim(2_999, Duration::from_secs(60), 1)).unwrap().is_empty()); // not due yet
    /// let c = block_on(inbox.claim(3_000, Duration::from_secs(60), 1)).unwrap().remove(0);
    /// assert!(block_on(inbox.fail(c.claim(), "downstream 502", None, 4_000)).unwrap()); // the last attempt
    /// let dead = block_on(inbox.get(1)).unwrap().unwrap();
    /// assert_eq!((dead.state, dead.attempts, dead.last_error.as_deref()), (InboxState::Dead, 2, Some("downstream 502")));
    /// ```
    fn fail(&self, claim: ClaimRef, error: &str, retry_at_ms: Option<i64>, now_ms: i64) -> InboxFuture<'_, bool>;

    /// Gives a claim back without counting the attempt (graceful shutdown): pending, due now.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::inbox::{Accepted, InboxState, InboxStore, ListFilter, NewItem};
    /// use hookguard_core::testing::{block_on, MemoryInbox};
    /// let inbox = MemoryInbox::default();
    /// let item = |key: &str| NewItem::from_parts("procore", Some(key.into()), bytes::Bytes::from_static(b"{}"));
    /// block_on(inbox.accept(item("a"))).unwrap();
    /// let c = block_on(inbox.claim(1_000, Duration::from_secs(60), 1)).unwrap().remove(0);
    /// assert!(block_on(inbox.release(c.claim())).unwrap());
    /// let back = block_on(inbox.get(1)).unwrap().unwrap();
    /// assert_eq!((back.state, back.attempts), (InboxState::Pending, 0)); // the attempt not counted
    /// ```
    fn release(&self, claim: ClaimRef) -> InboxFuture<'_, bool>;

    /// Gives a claim back without counting the attempt, due again at `until_ms`: the handler
    /// could not run now ([`HandlerError::defer`](super::inbox::HandlerError::defer): an output
    /// not read fast enough, a downstream queue full). The default releases it due now;
    /// backends override it (the SQLite and PostgreSQL inboxes do).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use hookguard_core::inbox::{Accepted, ClaimRef, ClaimedItem, InboxFuture, InboxRecord, InboxState, InboxStats, InboxStore, ListFilter, NewItem};
    /// use hookguard_core::testing::MemoryInbox;
    /// # // A store that keeps the trait's defaults: every required method passed on.
    /// # struct Plain(MemoryInbox);
    /// # impl InboxStore for Plain {
    /// #     fn accept(&self, i: NewItem) -> InboxFuture<'_, Accepted> { self.0.accept(i) }
    /// #     fn claim(&self, n: i64, l: Duration, k: u32) -> InboxFuture<'_, Vec<ClaimedItem>> { self.0.claim(n, l, k) }
    /// #     fn complete(&self, c: ClaimRef, n: i64) -> InboxFuture<'_, bool> { self.0.complete(c, n) }
    /// #     fn fail(&self, c: ClaimRef, e: &str, r: Option<i64>, n: i64) -> InboxFuture<'_, bool> { self.0.fail(c, e, r, n) }
    /// #     fn release(&self, c: ClaimRef) -> InboxFuture<'_, bool> { self.0.release(c) }
    /// #     fn get(&self, id: i64) -> InboxFuture<'_, Option<InboxRecord>> { self.0.get(id) }
    /// #     fn list(&self, f: ListFilter) -> InboxFuture<'_, Vec<InboxRecord>> { self.0.list(f) }
    /// #     fn replay(&self, id: i64, n: i64) -> InboxFuture<'_, ()> { self.0.replay(id, n) }
    /// #     fn replay_dead(&self, n: i64) -> InboxFuture<'_, u64> { self.0.replay_dead(n) }
    /// #     fn purge(&self, b: i64, d: bool) -> InboxFuture<'_, u64> { self.0.purge(b, d) }
    /// #     fn stats(&self) -> InboxFuture<'_, InboxStats> { self.0.stats() }
    /// # }
    /// use hookguard_core::{inbox::now_ms, testing::block_on};
    /// let store = Plain(MemoryInbox::default());
    /// block_on(store.accept(NewItem::from_parts("hcss", None, bytes::Bytes::from_static(b"{}")))).unwrap();
    /// let item = block_on(store.claim(now_ms(), Duration::from_secs(60), 1)).unwrap().remove(0);
    /// // The default gives the claim back through `release`: due again at once.
    /// assert!(block_on(store.defer(item.claim(), now_ms() + 60_000)).unwrap());
    /// assert_eq!(block_on(store.claim(now_ms(), Duration::from_secs(60), 1)).unwrap().len(), 1);
    /// ```
    fn defer(&self, claim: ClaimRef, until_ms: i64) -> InboxFuture<'_, bool> {
        let _ = until_ms;
        self.release(claim)
    }

    /// One item with its headers and body.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::inbox::{Accepted, InboxState, InboxStore, ListFilter, NewItem};
    /// use hookguard_core::testing::{block_on, MemoryInbox};
    /// let inbox = MemoryInbox::default();
    /// let item = |key: &str| NewItem::from_parts("procore", Some(key.into()), bytes::Bytes::from_static(b"{}"));
    /// block_on(inbox.accept(item("a"))).unwrap();
    /// let rec = block_on(inbox.get(1)).unwrap().unwrap();
    /// assert_eq!((rec.dedupe_key.as_deref(), rec.body.as_deref()), (Some("a"), Some(&b"{}"[..])));
    /// assert!(block_on(inbox.get(2)).unwrap().is_none());
    /// ```
    fn get(&self, id: i64) -> InboxFuture<'_, Option<InboxRecord>>;

    /// Items matching `filter`, without bodies: newest first (filtered on done or dead:
    /// most recently finished first).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::inbox::{Accepted, InboxState, InboxStore, ListFilter, NewItem};
    /// use hookguard_core::testing::{block_on, MemoryInbox};
    /// let inbox = MemoryInbox::default();
    /// let item = |key: &str| NewItem::from_parts("procore", Some(key.into()), bytes::Bytes::from_static(b"{}"));
    /// for key in ["a", "b", "c"] {
    ///     block_on(inbox.accept(item(key))).unwrap();
    /// }
    /// let newest: Vec<i64> = block_on(inbox.list(ListFilter::default().limit(2))).unwrap().iter().map(|r| r.id).collect();
    /// assert_eq!(newest, [3, 2]);
    /// assert!(block_on(inbox.list(ListFilter::default().state(InboxState::Dead))).unwrap().is_empty());
    /// ```
    fn list(&self, filter: ListFilter) -> InboxFuture<'_, Vec<InboxRecord>>;

    /// A dead or done item back to pending, due now, with its attempts reset; a pending item
    /// waiting out a retry is made due now the same way (the handler was fixed: without this
    /// it would wait up to the retry policy's maximum).
    ///
    /// # Errors
    /// [`InboxError::NotFound`], or [`InboxError::WrongState`] for a running item (it may be
    /// running right now; once its lease ends it is claimed again anyway).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::inbox::{Accepted, InboxState, InboxStore, ListFilter, NewItem};
    /// use hookguard_core::testing::{block_on, MemoryInbox};
    /// let inbox = MemoryInbox::default();
    /// let item = |key: &str| NewItem::from_parts("procore", Some(key.into()), bytes::Bytes::from_static(b"{}"));
    /// block_on(inbox.accept(item("a"))).unwrap();
    /// let c = block_on(inbox.claim(1_000, Duration::from_secs(60), 1)).unwrap().remove(0);
    /// assert!(block_on(inbox.replay(1, 1_500)).is_err()); // running
    /// block_on(inbox.fail(c.claim(), "bug", None, 2_000)).unwrap();
    /// // The handler was fixed: the dead item runs again, its attempts reset.
    /// block_on(inbox.replay(1, 3_000)).unwrap();
    /// assert_eq!(block_on(inbox.claim(3_000, Duration::from_secs(60), 1)).unwrap()[0].attempt, 1);
    /// ```
    fn replay(&self, id: i64, now_ms: i64) -> InboxFuture<'_, ()>;

    /// Every dead item back to pending; returns how many. A store with a cap on pending items
    /// may stop before it (the SQLite and PostgreSQL inboxes stop once pending items fill half
    /// the cap: new deliveries would otherwise be refused until the replayed ones were
    /// handled), leaving the rest dead for a later replay.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::inbox::{Accepted, InboxState, InboxStore, ListFilter, NewItem};
    /// use hookguard_core::testing::{block_on, MemoryInbox};
    /// let inbox = MemoryInbox::default();
    /// let item = |key: &str| NewItem::from_parts("procore", Some(key.into()), bytes::Bytes::from_static(b"{}"));
    /// for key in ["a", "b"] {
    ///     block_on(inbox.accept(item(key))).unwrap();
    /// }
    /// for c in block_on(inbox.claim(1_000, Duration::from_secs(60), 10)).unwrap() {
    ///     block_on(inbox.fail(c.claim(), "bug", None, 2_000)).unwrap();
    /// }
    /// assert_eq!(block_on(inbox.replay_dead(3_000)).unwrap(), 2);
    /// assert_eq!(block_on(inbox.stats()).unwrap().pending, 2);
    /// ```
    fn replay_dead(&self, now_ms: i64) -> InboxFuture<'_, u64>;

    /// Deletes done items (and dead ones with `include_dead`) that finished before
    /// `before_ms`; returns how many. A purged item's dedupe key is forgotten.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::inbox::{Accepted, InboxState, InboxStore, ListFilter, NewItem};
    /// use hookguard_core::testing::{block_on, MemoryInbox};
    /// let inbox = MemoryInbox::default();
    /// let item = |key: &str| NewItem::from_parts("procore", Some(key.into()), bytes::Bytes::from_static(b"{}"));
    /// block_on(inbox.accept(item("a"))).unwrap();
    /// let c = block_on(inbox.claim(1_000, Duration::from_secs(60), 1)).unwrap().remove(0);
    /// block_on(inbox.complete(c.claim(), 2_000)).unwrap();
    /// assert_eq!(block_on(inbox.purge(2_000, false)).unwrap(), 0); // finished at the bound: kept
    /// assert_eq!(block_on(inbox.purge(2_001, false)).unwrap(), 1);
    /// // Its key is forgotten: the same id is a new delivery now.
    /// assert_eq!(block_on(inbox.accept(item("a"))).unwrap(), Accepted::Stored(2));
    /// ```
    fn purge(&self, before_ms: i64, include_dead: bool) -> InboxFuture<'_, u64>;

    /// Counts per state, oldest pending, bytes.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::inbox::{Accepted, InboxState, InboxStore, ListFilter, NewItem};
    /// use hookguard_core::testing::{block_on, MemoryInbox};
    /// let inbox = MemoryInbox::default();
    /// let item = |key: &str| NewItem::from_parts("procore", Some(key.into()), bytes::Bytes::from_static(b"{}"));
    /// let mut first = item("a");
    /// first.received_at_ms = 1_000;
    /// block_on(inbox.accept(first)).unwrap();
    /// block_on(inbox.accept(item("b"))).unwrap();
    /// let s = block_on(inbox.stats()).unwrap();
    /// assert_eq!((s.pending, s.running, s.done, s.dead, s.body_bytes), (2, 0, 0, 0, 4));
    /// assert_eq!(s.oldest_pending_secs(4_000), Some(4.0)); // item "b" arrived at 0
    /// ```
    fn stats(&self) -> InboxFuture<'_, InboxStats>;

    /// Resolves when new work may be due (an accept or a replay in this process). Workers also
    /// poll, for work added by other processes. Default: never resolves.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use hookguard_core::inbox::{Accepted, ClaimRef, ClaimedItem, InboxFuture, InboxRecord, InboxStats, InboxStore, ListFilter, NewItem};
    /// # // A placeholder inbox store (hookguard-sqlite and hookguard-postgres have real ones).
    /// # struct Stub;
    /// # impl InboxStore for Stub {
    /// #     fn accept(&self, _: NewItem) -> InboxFuture<'_, Accepted> { unimplemented!() }
    /// #     fn claim(&self, _: i64, _: Duration, _: u32) -> InboxFuture<'_, Vec<ClaimedItem>> { unimplemented!() }
    /// #     fn complete(&self, _: ClaimRef, _: i64) -> InboxFuture<'_, bool> { unimplemented!() }
    /// #     fn fail(&self, _: ClaimRef, _: &str, _: Option<i64>, _: i64) -> InboxFuture<'_, bool> { unimplemented!() }
    /// #     fn release(&self, _: ClaimRef) -> InboxFuture<'_, bool> { unimplemented!() }
    /// #     fn get(&self, _: i64) -> InboxFuture<'_, Option<InboxRecord>> { unimplemented!() }
    /// #     fn list(&self, _: ListFilter) -> InboxFuture<'_, Vec<InboxRecord>> { unimplemented!() }
    /// #     fn replay(&self, _: i64, _: i64) -> InboxFuture<'_, ()> { unimplemented!() }
    /// #     fn replay_dead(&self, _: i64) -> InboxFuture<'_, u64> { unimplemented!() }
    /// #     fn purge(&self, _: i64, _: bool) -> InboxFuture<'_, u64> { unimplemented!() }
    /// #     fn stats(&self) -> InboxFuture<'_, InboxStats> { unimplemented!() }
    /// # }
    /// use hookguard_core::{testing::block_on, within};
    /// let store = Stub;
    /// // The default never resolves: workers find other processes' work by polling.
    /// assert_eq!(block_on(within(store.notified(), || std::future::ready(()))), None);
    /// ```
    fn notified(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::pending())
    }
}

impl<T: InboxStore + ?Sized> InboxStore for std::sync::Arc<T> {
    fn accept(&self, item: NewItem) -> InboxFuture<'_, Accepted> {
        (**self).accept(item)
    }
    fn claim(&self, now_ms: i64, lease: Duration, limit: u32) -> InboxFuture<'_, Vec<ClaimedItem>> {
        (**self).claim(now_ms, lease, limit)
    }
    fn claim_of<'a>(
        &'a self,
        providers: &'a [String],
        now_ms: i64,
        lease: Duration,
        limit: u32,
    ) -> InboxFuture<'a, Vec<ClaimedItem>> {
        (**self).claim_of(providers, now_ms, lease, limit)
    }
    fn complete(&self, claim: ClaimRef, now_ms: i64) -> InboxFuture<'_, bool> {
        (**self).complete(claim, now_ms)
    }
    fn fail(&self, claim: ClaimRef, error: &str, retry_at_ms: Option<i64>, now_ms: i64) -> InboxFuture<'_, bool> {
        (**self).fail(claim, error, retry_at_ms, now_ms)
    }
    fn release(&self, claim: ClaimRef) -> InboxFuture<'_, bool> {
        (**self).release(claim)
    }
    fn defer(&self, claim: ClaimRef, until_ms: i64) -> InboxFuture<'_, bool> {
        (**self).defer(claim, until_ms)
    }
    fn get(&self, id: i64) -> InboxFuture<'_, Option<InboxRecord>> {
        (**self).get(id)
    }
    fn list(&self, filter: ListFilter) -> InboxFuture<'_, Vec<InboxRecord>> {
        (**self).list(filter)
    }
    fn replay(&self, id: i64, now_ms: i64) -> InboxFuture<'_, ()> {
        (**self).replay(id, now_ms)
    }
    fn replay_dead(&self, now_ms: i64) -> InboxFuture<'_, u64> {
        (**self).replay_dead(now_ms)
    }
    fn purge(&self, before_ms: i64, include_dead: bool) -> InboxFuture<'_, u64> {
        (**self).purge(before_ms, include_dead)
    }
    fn stats(&self) -> InboxFuture<'_, InboxStats> {
        (**self).stats()
    }
    fn notified(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        (**self).notified()
    }
}

/// When to try a failed item again: exponential backoff, each delay drawn between half and all
/// of its bound, capped.
///
/// ```
/// use std::time::Duration;
/// use hookguard_core::inbox::RetryPolicy;
/// let p = RetryPolicy::default();
/// assert_eq!(p.max_attempts, 10);
/// // Attempt 1 failed: the next one comes within the base delay.
/// assert!(p.delay_after(1, 0.999) <= Duration::from_secs(1));
/// // Never above the cap, never after the last attempt.
/// assert!(p.delay_after(30, 0.999) <= Duration::from_secs(3600));
/// assert!(p.next_after(10, 0.5).is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// The first retry's delay bound (default 1 s).
    pub base: Duration,
    /// The longest delay (default 1 h).
    pub max: Duration,
    /// Attempts before an item is dead (default 10). Every claim that is not given back
    /// (released at shutdown, or deferred) counts, also one whose process died while the
    /// handler ran; an item claimed past its last attempt goes dead without running (a
    /// delivery that kills the process does not kill every restart).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(3600),
            max_attempts: 10,
        }
    }
}

impl RetryPolicy {
    /// A policy with these bounds.
    ///
    /// ```
    /// use std::time::Duration;
    /// let p = hookguard_core::inbox::RetryPolicy::new(Duration::from_millis(200), Duration::from_secs(5), 3);
    /// assert_eq!(p.max_attempts, 3);
    /// ```
    pub fn new(base: Duration, max: Duration, max_attempts: u32) -> Self {
        Self {
            base,
            max,
            max_attempts: max_attempts.max(1),
        }
    }

    /// The delay after failed attempt `attempt` (1-based): a random point (`jitter` in
    /// `[0, 1)`) between half and all of `base × 2^(attempt-1)`, capped at `max`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::inbox::RetryPolicy;
    /// let p = RetryPolicy::new(Duration::from_secs(1), Duration::from_secs(60), 10);
    /// // After attempt 3 the bound is 4 s: the delay is between 2 and 4 s.
    /// assert_eq!(p.delay_after(3, 0.0), Duration::from_secs(2));
    /// assert_eq!(p.delay_after(3, 1.0), Duration::from_secs(4));
    /// // Capped.
    /// assert_eq!(p.delay_after(20, 1.0), Duration::from_secs(60));
    /// ```
    pub fn delay_after(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let ceiling = self.base.saturating_mul(1u32 << exp).min(self.max);
        let factor = 0.5 + 0.5 * jitter.clamp(0.0, 1.0);
        // Not `mul_f64`: near `Duration::MAX` the product rounds past it and panics.
        Duration::try_from_secs_f64(ceiling.as_secs_f64() * factor).map_or(ceiling, |d| d.min(ceiling))
    }

    /// The delay before the next attempt, or `None` when `attempt` was the last.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::inbox::RetryPolicy;
    /// let p = RetryPolicy::new(Duration::from_secs(1), Duration::from_secs(60), 3);
    /// assert_eq!(p.next_after(1, 0.0), Some(Duration::from_millis(500)));
    /// assert_eq!(p.next_after(3, 0.0), None); // the third attempt was the last
    /// ```
    pub fn next_after(&self, attempt: u32, jitter: f64) -> Option<Duration> {
        (attempt < self.max_attempts).then(|| self.delay_after(attempt, jitter))
    }
}

/// The headers of a request worth keeping with a stored delivery: everything but credentials
/// (`Authorization`, `Proxy-Authorization`, `Cookie`, `credential`: the scheme's own token
/// header, and any header whose name holds `token`, `secret`, `password`, `passwd`, `api-key`,
/// `apikey`, `api_key`, `auth`, `session` or `cookie`, such as a gateway's `X-Api-Key`; no
/// sender signs with such a header), bounded in count and length. Values that are not visible ASCII are dropped, and so
/// is every header that may carry the request's URL, where a URL token travels (HCSS's
/// `?token=`): `Referer`, a proxy's copy of the original URI (`X-Original-URI`,
/// `X-Original-URL`, `X-Rewrite-URL`, `X-Forwarded-Uri`, `X-Envoy-Original-Path`, and any
/// header whose name holds `query`, `uri`, `url` or `path`), and any value holding a query
/// string (`?` … `=`) or a parameter named as a credential (`token=`, `secret=`, …). (The
/// receiver also drops any value equal to a configured token.)
///
/// ```
/// use hookguard_core::inbox::stored_headers;
/// let mut h = http::HeaderMap::new();
/// h.insert("authorization", "Bearer s3cret".parse().unwrap());
/// h.insert("x-hcss-token", "t0ken".parse().unwrap());
/// h.insert("buildworkpro-signature", "t=1,v1=ab".parse().unwrap());
/// let kept = stored_headers(&h, Some(&http::HeaderName::from_static("x-hcss-token")));
/// assert_eq!(kept, vec![("buildworkpro-signature".to_owned(), "t=1,v1=ab".to_owned())]);
/// ```
pub fn stored_headers(headers: &HeaderMap, credential: Option<&http::HeaderName>) -> Vec<(String, String)> {
    // A query string (`?` … `=`), or a parameter named as a credential (`token=…`) anywhere.
    let has_query = |v: &[u8]| {
        v.iter()
            .position(|&b| b == b'?')
            .is_some_and(|q| v[q..].contains(&b'='))
            || v.windows(2).enumerate().any(|(i, w)| {
                // A parameter's name starts the value or follows a separator (never inside a
                // base64 signature that happens to end in `…auth=`).
                w[1] == b'='
                    && CREDENTIAL_WORDS.iter().any(|c| {
                        let Some(start) = (i + 1).checked_sub(c.len()) else {
                            return false;
                        };
                        v[start..=i].eq_ignore_ascii_case(c.as_bytes())
                            && (start == 0 || b"&;, ?\t".contains(&v[start - 1]))
                    })
            })
    };
    let mut kept: Vec<_> = headers
        .iter()
        .filter(|(name, _)| !may_hold_a_credential(name, credential))
        .filter(|(_, v)| v.len() <= MAX_STORED_HEADER_LEN && !has_query(v.as_bytes()))
        .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
        .collect();
    // By name (a name's values in their order): which headers are kept past the cap, and their
    // order, must not depend on the framework's map (actix's iterates in hash order).
    kept.sort_by_key(|(n, _)| *n);
    kept.into_iter()
        .take(MAX_STORED_HEADERS)
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

/// Words in a header's name that say it holds a credential (`X-Api-Key`, `X-Auth-Token`).
const CREDENTIAL_WORDS: [&str; 10] = [
    "token", "secret", "password", "passwd", "api-key", "apikey", "api_key", "auth", "session", "cookie",
];

/// Whether a header, by its name, may hold a credential: `Authorization`,
/// `Proxy-Authorization`, `Cookie`, the scheme's own `credential` header, a name with a
/// credential word in it, or a copy of the URL (which may carry a URL token: `Referer`, a
/// proxy's `X-Original-Uri` or `X-Forwarded-Query`). Such a header is never stored with a
/// delivery ([`stored_headers`]) and never part of a dedupe key (which is stored, listed,
/// logged and handed to `--exec`).
pub(crate) fn may_hold_a_credential(name: &http::HeaderName, credential: Option<&http::HeaderName>) -> bool {
    use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, REFERER};
    const URL_COPIES: [&str; 5] = [
        "x-original-uri",
        "x-original-url",
        "x-rewrite-url",
        "x-forwarded-uri",
        "x-envoy-original-path",
    ];
    // A proxy's copy of the URL, its query or its path under any other name (a tryout's
    // `X-Forwarded-Query: token=…`); no sender's own header is named so.
    const URL_WORDS: [&str; 4] = ["query", "uri", "url", "path"];
    *name == AUTHORIZATION
        || *name == PROXY_AUTHORIZATION
        || *name == COOKIE
        || *name == REFERER
        || URL_COPIES.contains(&name.as_str())
        || Some(name) == credential
        || CREDENTIAL_WORDS
            .iter()
            .chain(&URL_WORDS)
            .any(|w| name.as_str().contains(w))
}

/// How long an inbox lets a due item wait unclaimed before it warns that no worker takes its
/// items (the SQLite and PostgreSQL inboxes' `unclaimed_warning` default): 5 minutes.
///
/// ```
/// use hookguard_core::{inbox::{warn_unclaimed, DEFAULT_UNCLAIMED_WARNING}, testing::Logs};
/// assert_eq!(DEFAULT_UNCLAIMED_WARNING.as_secs(), 300);
/// let logs = Logs::default();
/// tracing::subscriber::with_default(logs.clone(), || warn_unclaimed("hcss", DEFAULT_UNCLAIMED_WARNING));
/// assert!(logs.messages(tracing::Level::WARN)[0].contains("due for 300s"));
/// ```
pub const DEFAULT_UNCLAIMED_WARNING: std::time::Duration = std::time::Duration::from_secs(300);

/// The WARN an inbox store writes when the item of `provider` due longest ago has `waited`
/// with no worker claiming it: an inbox route without a running [`Worker`] answers every
/// delivery `200` and handles none, and nothing else says so until the pending cap answers
/// `503`. One wording for every backend.
///
/// ```
/// hookguard_core::inbox::warn_unclaimed("procore", std::time::Duration::from_secs(400));
/// ```
pub fn warn_unclaimed(provider: &str, waited: std::time::Duration) {
    tracing::warn!(
        provider,
        waited_s = waited.as_secs(),
        "inbox: a {provider} item has been due for {}s and no worker has claimed it: is a worker \
         running on this inbox for {provider} (hookguard's inbox Worker; `serve --inbox` runs \
         one)? With none, deliveries are stored and answered 200 but never handled; with \
         workers too slow or too few for the backlog, it grows. At the pending cap every \
         delivery is answered 503",
        waited.as_secs()
    );
}

/// The current unix time in milliseconds.
///
/// ```
/// assert!(hookguard_core::inbox::now_ms() > 1_700_000_000_000);
/// ```
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_near_the_largest_duration_does_not_panic() {
        let p = RetryPolicy::new(Duration::MAX, Duration::MAX, 3);
        for j in [0.0, 0.5, 1.0, f64::NAN] {
            let d = p.delay_after(1, j);
            assert!(d >= Duration::MAX / 2 - Duration::from_secs(1), "{j}: {d:?}");
        }
        let p = RetryPolicy::new(Duration::from_secs(u64::MAX / 2), Duration::MAX, 3);
        assert!(p.delay_after(30, 1.0) <= Duration::MAX);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::new(Duration::from_secs(1), Duration::from_secs(60), 10);
        assert_eq!(p.delay_after(1, 0.0), Duration::from_millis(500));
        assert_eq!(p.delay_after(2, 0.0), Duration::from_secs(1));
        assert_eq!(p.delay_after(3, 0.999_999), Duration::from_secs(4).mul_f64(0.999_999_5));
        assert_eq!(
            p.delay_after(40, 0.999_999),
            Duration::from_secs(60).mul_f64(0.999_999_5)
        );
        assert!(p.next_after(9, 0.5).is_some());
        assert!(p.next_after(10, 0.5).is_none());
    }

    #[test]
    fn credentials_are_never_stored() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer x".parse().unwrap());
        h.insert("proxy-authorization", "Basic y".parse().unwrap());
        h.insert("cookie", "a=b".parse().unwrap());
        h.insert("x-token", "z".parse().unwrap());
        h.insert("content-type", "application/json".parse().unwrap());
        let kept = stored_headers(&h, Some(&http::HeaderName::from_static("x-token")));
        assert_eq!(kept, vec![("content-type".to_owned(), "application/json".to_owned())]);
    }

    /// A gateway's or an operator's own credential headers (not the scheme's) are not kept
    /// either; every sender's signature headers are.
    #[test]
    fn headers_named_as_credentials_are_never_stored() {
        let mut h = HeaderMap::new();
        for name in [
            "x-api-key",
            "api-key",
            "x-apikey",
            "x-auth-token",
            "x-access-token",
            "x-amz-security-token",
            "x-webhook-secret",
            "x-session-id",
            "x-authentication",
            "x-db-password",
        ] {
            h.insert(http::HeaderName::from_static(name), "s3cr3t".parse().unwrap());
        }
        let signatures = [
            "buildworkpro-signature",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "stripe-signature",
            "x-hub-signature-256",
            "x-github-delivery",
            "x-slack-signature",
            "x-slack-request-timestamp",
            "x-adsk-signature",
        ];
        for name in signatures {
            h.insert(http::HeaderName::from_static(name), "v".parse().unwrap());
        }
        let kept: Vec<String> = stored_headers(&h, None).into_iter().map(|(n, _)| n).collect();
        let mut by_name = signatures.to_vec();
        by_name.sort_unstable();
        assert_eq!(kept, by_name);
    }

    /// A URL token (HCSS's `?token=`) also travels in the headers a proxy copies the URL into.
    #[test]
    fn headers_that_may_carry_the_url_are_never_stored() {
        let mut h = HeaderMap::new();
        for name in [
            "referer",
            "x-original-uri",
            "x-original-url",
            "x-rewrite-url",
            "x-forwarded-uri",
            "x-envoy-original-path",
        ] {
            h.insert(http::HeaderName::from_static(name), "/webhooks".parse().unwrap());
        }
        h.insert("x-request-uri", "/webhooks/hcss?token=T0K3N".parse().unwrap());
        h.insert("x-request-id", "abc?def".parse().unwrap());
        // (A tryout's: a proxy's copy of the query alone, and a parameter in another header.)
        h.insert("x-forwarded-query", "token=T0K3N".parse().unwrap());
        h.insert("x-forwarded-path", "/webhooks/hcss".parse().unwrap());
        h.insert("x-trace", "span=1;Token=T0K3N".parse().unwrap());
        h.insert("x-note", "t=1,v1=ab".parse().unwrap());
        // A signature whose base64 ends in a credential word before its padding is kept.
        h.insert(
            "webhook-signature",
            "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/auth=".parse().unwrap(),
        );
        h.insert("content-type", "application/json".parse().unwrap());
        let kept = stored_headers(&h, None);
        assert_eq!(
            kept,
            vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                (
                    "webhook-signature".to_owned(),
                    "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/auth=".to_owned()
                ),
                ("x-note".to_owned(), "t=1,v1=ab".to_owned()),
                ("x-request-id".to_owned(), "abc?def".to_owned())
            ]
        );
    }

    /// Past the cap, which headers are kept does not depend on the map's order (actix's
    /// iterates in hash order): the first by name, a name's values in their order.
    #[test]
    fn the_headers_kept_past_the_cap_are_the_first_by_name_whatever_the_maps_order() {
        let names: Vec<String> = (0..MAX_STORED_HEADERS + 6).map(|i| format!("x-h{i:03}")).collect();
        let map = |order: &mut dyn Iterator<Item = &String>| {
            let mut h = HeaderMap::new();
            for n in order {
                h.insert(
                    http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    "v".parse().unwrap(),
                );
            }
            h.append("x-h000", "second".parse().unwrap());
            h
        };
        let (forward, backward) = (map(&mut names.iter()), map(&mut names.iter().rev()));
        let kept = stored_headers(&forward, None);
        assert_eq!(kept, stored_headers(&backward, None));
        assert_eq!(kept.len(), MAX_STORED_HEADERS);
        assert_eq!(
            kept[..2],
            [
                ("x-h000".to_owned(), "v".to_owned()),
                ("x-h000".to_owned(), "second".to_owned())
            ]
        );
        assert_eq!(kept.last().unwrap().0, format!("x-h{:03}", MAX_STORED_HEADERS - 2));
    }

    proptest::proptest! {
        /// Whatever a request carries, what is kept came from it, is bounded in count and
        /// length, is in name order, and holds no header that may hold a credential and no
        /// query or credential parameter in a value.
        #[test]
        fn stored_headers_keep_only_what_may_be_shown(
            pairs in proptest::collection::vec(
                (
                    "(x-|)(api-key|auth|token|session|uri|path|query|webhook-id|signature|a|b|c)[a-z0-9-]{0,6}",
                    "(token=|secret=|[?]a=|sha256=|v1,|)[ -~]{0,40}",
                ),
                0..80,
            ),
            credential in proptest::option::of("(x-|)[a-z]{1,6}"),
        ) {
            let mut h = HeaderMap::new();
            for (n, v) in &pairs {
                if let (Ok(n), Ok(v)) = (http::HeaderName::try_from(n.as_str()), http::HeaderValue::try_from(v.as_str())) {
                    h.append(n, v);
                }
            }
            let credential = credential.and_then(|c| http::HeaderName::try_from(c).ok());
            let kept = stored_headers(&h, credential.as_ref());
            proptest::prop_assert!(kept.len() <= MAX_STORED_HEADERS);
            proptest::prop_assert!(kept.windows(2).all(|w| w[0].0 <= w[1].0));
            for (n, v) in &kept {
                let name = http::HeaderName::try_from(n.as_str()).unwrap();
                proptest::prop_assert!(h.get_all(&name).iter().any(|x| x == v.as_str()), "{n}: {v} was not sent");
                proptest::prop_assert!(!may_hold_a_credential(&name, credential.as_ref()), "{n} kept");
                proptest::prop_assert!(v.len() <= MAX_STORED_HEADER_LEN);
                let lower = v.to_ascii_lowercase();
                proptest::prop_assert!(!(lower.starts_with("token=") || lower.starts_with("secret=")), "{n}: {v}");
                proptest::prop_assert!(!v.split_once('?').is_some_and(|(_, q)| q.contains('=')), "{n}: {v}");
            }
        }
    }
}
