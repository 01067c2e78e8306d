//! The worker that drains an inbox through the application's handler (feature `worker`, tokio).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use super::{now_ms, ClaimRef, ClaimedItem, InboxStore, RetryPolicy, DEFAULT_RETENTION, MIN_LEASE};

/// Why a handler attempt failed; stored as the item's `last_error` (keep secrets out of it).
///
/// ```
/// let e = hookguard_core::inbox::HandlerError::new("exit status 3");
/// assert_eq!(e.to_string(), "exit status 3");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError(String, Option<Duration>);

impl HandlerError {
    /// An error with this message (bounded to 1 KiB when stored).
    ///
    /// ```
    /// use hookguard_core::inbox::HandlerError;
    /// let e = HandlerError::new("downstream answered 502");
    /// assert_eq!(e.to_string(), "downstream answered 502");
    /// assert_eq!(e.deferred(), None);
    /// // Bounded: the message is stored with the item.
    /// assert_eq!(HandlerError::new("x".repeat(5_000)).to_string().len(), 1024);
    /// ```
    pub fn new(msg: impl Into<String>) -> Self {
        let mut m: String = msg.into();
        if m.len() > 1024 {
            let mut cut = 1024;
            while !m.is_char_boundary(cut) {
                cut -= 1;
            }
            m.truncate(cut);
        }
        Self(m, None)
    }

    /// The handler could not run now and did nothing (an output not read fast enough, a
    /// downstream queue full, shutting down): the item is given back **without counting an
    /// attempt** and tried again after `after` (at least the worker's
    /// [`poll_interval`](WorkerBuilder::poll_interval), during which its slot stays taken).
    /// Only for "not attempted": a handler that did
    /// part of its work returns [`new`](Self::new), so the retry limit still ends a loop.
    ///
    /// ```
    /// use std::time::Duration;
    /// let e = hookguard_core::inbox::HandlerError::defer("queue full", Duration::from_secs(1));
    /// assert_eq!(e.deferred(), Some(Duration::from_secs(1)));
    /// assert_eq!(hookguard_core::inbox::HandlerError::new("x").deferred(), None);
    /// ```
    pub fn defer(msg: impl Into<String>, after: Duration) -> Self {
        Self(Self::new(msg).0, Some(after))
    }

    /// When a deferred handler asked to be tried again.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::inbox::HandlerError;
    /// assert_eq!(HandlerError::defer("queue full", Duration::from_secs(5)).deferred(), Some(Duration::from_secs(5)));
    /// assert_eq!(HandlerError::new("failed").deferred(), None); // an attempt that counts
    /// ```
    pub fn deferred(&self) -> Option<Duration> {
        self.1
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error + 'static> From<E> for HandlerError {
    /// The error's text; for a typed parse that failed ([`Delivery::json`](crate::Delivery::json)'s
    /// `unexpected_payload`), with the field and place it names (its values left out), so a
    /// dead item's last error says what to fix. A `serde_json::Error` of the handler's own
    /// parse (`serde_json::from_slice(item.delivery.body())?`) has its values left out too: its
    /// text quotes the body (`invalid type: string "4111…"`), and the error is logged and stored
    /// as the item's last error.
    fn from(e: E) -> Self {
        let any = &e as &dyn std::any::Any;
        match any.downcast_ref::<crate::Rejection>() {
            Some(crate::Rejection::UnexpectedPayload { detail }) if !detail.is_empty() => {
                Self::new(format!("{e}: {detail}"))
            }
            _ if any.is::<serde_json::Error>() => Self::new(crate::delivery::redact_values(&e.to_string())),
            _ => Self::new(e.to_string()),
        }
    }
}

/// The boxed future a handler returns.
///
/// ```
/// use hookguard_core::{inbox::{HandlerError, HandlerFuture}, testing::block_on};
/// let ok: HandlerFuture = Box::pin(async { Ok(()) });
/// assert_eq!(block_on(ok), Ok(()));
/// let failed: HandlerFuture = Box::pin(async { Err(HandlerError::new("boom")) });
/// assert_eq!(block_on(failed).unwrap_err().to_string(), "boom");
/// ```
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'static>>;

/// The application's handler for stored deliveries. Any `Fn(ClaimedItem) -> impl Future<Output
/// = Result<(), HandlerError>>` is one. It runs **at least once** per item: make its effects
/// idempotent, keyed by the item's dedupe key or event id.
///
/// ```
/// use hookguard_core::inbox::{ClaimRef, ClaimedItem, HandlerError, HandlerFuture, InboxHandler};
/// use hookguard_core::testing::block_on;
/// // A closure is a handler…
/// let by_closure = |item: ClaimedItem| async move {
///     match item.delivery.event_type() {
///         Some("bid.accepted") => Ok(()),
///         _ => Err(HandlerError::new("unexpected event type")),
///     }
/// };
/// // …and so is a type of your own.
/// struct NonEmpty;
/// impl InboxHandler for NonEmpty {
///     fn handle(&self, item: ClaimedItem) -> HandlerFuture {
///         Box::pin(async move {
///             if item.delivery.body().is_empty() {
///                 return Err(HandlerError::new("empty body"));
///             }
///             Ok(())
///         })
///     }
/// }
/// let item = ClaimedItem::new(ClaimRef::new(1, 1, 0), "buildworkpro", None, None, Some("bid.accepted".into()), bytes::Bytes::from_static(b"{}"), 0);
/// assert!(block_on(by_closure.handle(item.clone())).is_ok());
/// assert!(block_on(NonEmpty.handle(item)).is_ok());
/// ```
pub trait InboxHandler: Send + Sync + 'static {
    /// Handles one attempt.
    ///
    /// ```
    /// use hookguard_core::{inbox::{ClaimRef, ClaimedItem, HandlerError, InboxHandler}, testing::block_on};
    /// let handler = |item: ClaimedItem| async move {
    ///     item.delivery.event_id().map(|_| ()).ok_or_else(|| HandlerError::new("no event id"))
    /// };
    /// let item = ClaimedItem::new(ClaimRef::new(1, 1, 0), "stripe", None, None, None, bytes::Bytes::new(), 0);
    /// assert_eq!(block_on(handler.handle(item)).unwrap_err().to_string(), "no event id");
    /// ```
    fn handle(&self, item: ClaimedItem) -> HandlerFuture;
}

impl<F, Fut> InboxHandler for F
where
    F: Fn(ClaimedItem) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    fn handle(&self, item: ClaimedItem) -> HandlerFuture {
        Box::pin(self(item))
    }
}

/// What became of one attempt, for [`WorkerBuilder::on_outcome`].
///
/// ```
/// use std::time::Duration;
/// use hookguard_core::inbox::Outcome;
/// fn line(o: &Outcome) -> String {
///     match o {
///         Outcome::Done => "done".into(),
///         Outcome::Retry { error, after } => format!("failed ({error}), retry in {after:?}"),
///         Outcome::Dead { error } => format!("dead: {error}"),
///         Outcome::Deferred { after, .. } => format!("deferred for {after:?}"),
///         Outcome::Lost => "lost".into(),
///         _ => "other".into(),
///     }
/// }
/// assert_eq!(line(&Outcome::Done), "done");
/// assert_eq!(line(&Outcome::Retry { error: "502".into(), after: Duration::from_secs(2) }), "failed (502), retry in 2s");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Handled; the item is done.
    Done,
    /// Failed; tried again after this delay.
    Retry {
        /// Why it failed.
        error: String,
        /// When it is tried again.
        after: Duration,
    },
    /// Failed on its last attempt; the item is dead.
    Dead {
        /// Why it failed.
        error: String,
    },
    /// The attempt no longer held the item (its lease expired): nothing recorded.
    Lost,
    /// The handler could not run now ([`HandlerError::defer`]): given back without counting
    /// the attempt, tried again after this delay.
    Deferred {
        /// Why.
        reason: String,
        /// When it is tried again.
        after: Duration,
    },
}

type OutcomeHook = Arc<dyn Fn(&ClaimedItem, &Outcome) + Send + Sync>;

/// Configures a [`Worker`].
///
/// ```
/// use std::time::Duration;
/// use hookguard_core::inbox::{HandlerError, RetryPolicy, Worker, ClaimedItem};
/// # fn demo(store: std::sync::Arc<dyn hookguard_core::inbox::InboxStore>) {
/// let worker = Worker::builder(store, |item: ClaimedItem| async move {
///     println!("{:?}", item.delivery.event_id());
///     Ok::<(), HandlerError>(())
/// })
/// .concurrency(8)
/// .retry(RetryPolicy::new(Duration::from_secs(1), Duration::from_secs(3600), 10))
/// .lease(Duration::from_secs(60))
/// .build();
/// # let _ = worker; }
/// ```
#[must_use = "a worker builder does nothing until `spawn` (or `build` and `Worker::spawn`)"]
pub struct WorkerBuilder {
    store: Arc<dyn InboxStore>,
    handler: Arc<dyn InboxHandler>,
    concurrency: usize,
    retry: RetryPolicy,
    lease: Duration,
    handler_timeout: Option<Duration>,
    poll: Duration,
    retention: Duration,
    purge_every: Duration,
    grace: Duration,
    on_outcome: Option<OutcomeHook>,
    providers: Vec<String>,
}

impl fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("concurrency", &self.concurrency)
            .field("retry", &self.retry)
            .field("lease", &self.lease)
            .field("providers", &self.providers)
            .finish_non_exhaustive()
    }
}

impl WorkerBuilder {
    /// Handlers running at once (default 4; at least 1, at most what a semaphore can count).
    ///
    /// Also the most items one claim takes, and each claim waits for a commit of the store
    /// (under a flood of accepts, their fsync: about a millisecond on a local disk). A
    /// handler's slot is free once it returned: its outcome (the done mark, a failure) is
    /// recorded meanwhile under one of as many settling slots, so up to twice `concurrency`
    /// items (and their bodies) are held at once. The worker drains at most about
    /// `concurrency` items per commit however fast the handler is: with 4, a few hundred to a
    /// thousand items/s under a flood of accepts in `hookguard serve`'s measurements
    /// (BENCHMARKS.md). Raise it when a fast handler must keep up with a sustained flood
    /// (`serve` without `--exec` runs 64).
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
    /// use hookguard_core::inbox::{HandlerError, Worker};
    /// let store = Arc::new(Stub);
    /// let b = Worker::builder(store.clone(), |_item: ClaimedItem| async { Ok::<(), HandlerError>(()) }).concurrency(16);
    /// assert!(format!("{b:?}").contains("concurrency: 16"));
    /// // At least one handler runs.
    /// let b = Worker::builder(store, |_item: ClaimedItem| async { Ok::<(), HandlerError>(()) }).concurrency(0);
    /// assert!(format!("{b:?}").contains("concurrency: 1"));
    /// ```
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.clamp(1, Semaphore::MAX_PERMITS);
        self
    }
    /// The retry policy (default: 1 s base, 1 h cap, 10 attempts). Every item runs at least
    /// once (`max_attempts` 0 counts as 1), and a retry waits at least 50 ms (a zero delay
    /// would claim, fail and write again at full speed).
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
    /// use hookguard_core::inbox::{HandlerError, RetryPolicy, Worker};
    /// let b = Worker::builder(Arc::new(Stub), |_item: ClaimedItem| async { Ok::<(), HandlerError>(()) })
    ///     .retry(RetryPolicy::new(Duration::from_millis(200), Duration::from_secs(30), 3));
    /// assert!(format!("{b:?}").contains("max_attempts: 3"));
    /// ```
    pub fn retry(mut self, mut policy: RetryPolicy) -> Self {
        policy.max_attempts = policy.max_attempts.max(1);
        self.retry = policy;
        self
    }
    /// How long a claim holds an item (default 60 s). A handler is stopped and its attempt
    /// counted as failed at 90 % of the lease counted from the claim (a claim answered late
    /// leaves its handler less time; one answered after that point does not start the handler
    /// and gives the item back without counting an attempt), so no other process claims it
    /// while it runs.
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
    /// use hookguard_core::inbox::{HandlerError, Worker};
    /// let b = Worker::builder(Arc::new(Stub), |_item: ClaimedItem| async { Ok::<(), HandlerError>(()) }).lease(Duration::from_secs(120));
    /// assert!(format!("{b:?}").contains("lease: 120s"));
    /// // Never below `MIN_LEASE`.
    /// let b = Worker::builder(Arc::new(Stub), |_item: ClaimedItem| async { Ok::<(), HandlerError>(()) }).lease(Duration::from_millis(10));
    /// assert!(format!("{b:?}").contains("lease: 100ms"));
    /// ```
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(MIN_LEASE);
        self
    }
    /// Stops a handler after `timeout` from its claim (at most 90 % of the lease) and counts a
    /// failed attempt.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use hookguard_core::inbox::{Accepted, ClaimRef, ClaimedItem, InboxFuture, InboxRecord, InboxState, InboxStats, InboxStore, ListFilter, NewItem};
    /// use hookguard_core::testing::MemoryInbox;
    /// use hookguard_core::inbox::{HandlerError, Outcome, RetryPolicy, Worker};
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = Arc::new(MemoryInbox::default());
    /// store.accept(NewItem::from_parts("aps", None, bytes::Bytes::from_static(b"{}"))).await.unwrap();
    /// let (tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    /// let handle = Worker::builder(store.clone(), |_item: ClaimedItem| std::future::pending::<Result<(), HandlerError>>())
    ///     .handler_timeout(Duration::from_millis(100))
    ///     .retry(RetryPolicy::new(Duration::from_secs(1), Duration::from_secs(1), 1)) // one attempt
    ///     .on_outcome(move |_item, outcome| {
    ///         let _ = tx.send(outcome.clone());
    ///     })
    ///     .spawn();
    /// let outcome = outcomes.recv().await.unwrap();
    /// assert!(matches!(outcome, Outcome::Dead { ref error } if error.contains("did not finish within 100ms")));
    /// handle.shutdown().await;
    /// # });
    /// ```
    pub fn handler_timeout(mut self, timeout: Duration) -> Self {
        self.handler_timeout = Some(timeout);
        self
    }
    /// How often to look for work added by other processes or due retries (default 1 s).
    /// Work accepted in this process wakes the worker at once.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use hookguard_core::inbox::{Accepted, ClaimRef, ClaimedItem, InboxFuture, InboxRecord, InboxState, InboxStats, InboxStore, ListFilter, NewItem};
    /// use hookguard_core::testing::MemoryInbox;
    /// # // A store that wakes no worker (the trait's default `notified`): every required method passed on.
    /// # struct Silent(MemoryInbox);
    /// # impl InboxStore for Silent {
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
    /// use hookguard_core::inbox::{HandlerError, Outcome, Worker};
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // A store whose accepts wake no worker here, as another process's do not.
    /// let store = Arc::new(Silent(MemoryInbox::default()));
    /// let (tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    /// let handle = Worker::builder(store.clone(), |_item: ClaimedItem| async { Ok::<(), HandlerError>(()) })
    ///     .poll_interval(Duration::from_millis(50))
    ///     .on_outcome(move |_item, outcome| {
    ///         let _ = tx.send(outcome.clone());
    ///     })
    ///     .spawn();
    /// tokio::time::sleep(Duration::from_millis(20)).await; // the worker found nothing and waits
    /// // Stored by another process: this store wakes no worker, the next poll finds it.
    /// store.accept(NewItem::from_parts("github", None, bytes::Bytes::from_static(b"{}"))).await.unwrap();
    /// let outcome = tokio::time::timeout(Duration::from_secs(1), outcomes.recv()).await.unwrap();
    /// assert_eq!(outcome, Some(Outcome::Done));
    /// handle.shutdown().await;
    /// # });
    /// ```
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(10));
        self
    }
    /// How long done items are kept (and copies recognised) before the periodic purge
    /// deletes them (default 7 days). Dead items are never purged automatically.
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
    /// use hookguard_core::inbox::{HandlerError, Worker};
    /// let worker = Worker::builder(Arc::new(Stub), |_item: ClaimedItem| async { Ok::<(), HandlerError>(()) })
    ///     // Copies of a done item are recognised for as long as it is kept: cover your senders' retries.
    ///     .retention(Duration::from_secs(3 * 24 * 3600))
    ///     .build();
    /// # drop(worker);
    /// ```
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }
    /// How often the purge runs (default 60 s).
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
    /// use hookguard_core::inbox::{HandlerError, Worker};
    /// let worker = Worker::builder(Arc::new(Stub), |_item: ClaimedItem| async { Ok::<(), HandlerError>(()) })
    ///     .purge_every(Duration::from_secs(15 * 60))
    ///     .build();
    /// # drop(worker);
    /// ```
    pub fn purge_every(mut self, every: Duration) -> Self {
        self.purge_every = every.max(Duration::from_millis(10));
        self
    }
    /// On shutdown, how long running handlers may finish before their claims are given back
    /// (default 10 s).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use hookguard_core::inbox::{Accepted, ClaimRef, ClaimedItem, InboxFuture, InboxRecord, InboxState, InboxStats, InboxStore, ListFilter, NewItem};
    /// use hookguard_core::testing::MemoryInbox;
    /// use hookguard_core::inbox::{HandlerError, Worker};
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = Arc::new(MemoryInbox::default());
    /// store.accept(NewItem::from_parts("procore", None, bytes::Bytes::from_static(b"{}"))).await.unwrap();
    /// let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel::<()>();
    /// let handle = Worker::builder(store.clone(), move |_item: ClaimedItem| {
    ///     let started_tx = started_tx.clone();
    ///     async move {
    ///         let _ = started_tx.send(());
    ///         std::future::pending::<Result<(), HandlerError>>().await // a handler that hangs
    ///     }
    /// })
    /// .shutdown_grace(Duration::from_millis(100))
    /// .spawn();
    /// started.recv().await;
    /// handle.shutdown().await;
    /// // Not finished within the grace: its claim was given back, the item waits for the next start.
    /// assert_eq!(store.items()[0].state, InboxState::Pending);
    /// # });
    /// ```
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
    /// Runs only the items of these senders (default: every item in the inbox), for processes
    /// that share one inbox and each handle their own senders — two `hookguard serve
    /// --provider …` on one file, each with its own `--exec`. Without it, each would run the
    /// other's deliveries through its own handler. The purge and the inbox gauges still cover
    /// the whole inbox. The store must be able to claim by provider
    /// ([`InboxStore::claim_of`]; the SQLite and PostgreSQL inboxes can).
    ///
    /// ```
    /// use hookguard_core::inbox::{ClaimedItem, HandlerError, Worker};
    /// use hookguard_core::Provider;
    /// # fn demo(store: std::sync::Arc<dyn hookguard_core::inbox::InboxStore>) {
    /// let worker = Worker::builder(store, |_item: ClaimedItem| async { Ok::<(), HandlerError>(()) })
    ///     .providers([Provider::Procore])
    ///     .build();
    /// # let _ = worker; }
    /// ```
    pub fn providers(mut self, providers: impl IntoIterator<Item = crate::Provider>) -> Self {
        self.providers = providers.into_iter().map(|p| p.as_str().to_owned()).collect();
        self.providers.sort();
        self.providers.dedup();
        self
    }
    /// Called after each attempt's outcome was recorded (metrics, the CLI's output line).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use hookguard_core::inbox::{Accepted, ClaimRef, ClaimedItem, InboxFuture, InboxRecord, InboxState, InboxStats, InboxStore, ListFilter, NewItem};
    /// use hookguard_core::testing::MemoryInbox;
    /// use hookguard_core::inbox::{HandlerError, Outcome, Worker};
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = Arc::new(MemoryInbox::default());
    /// store.accept(NewItem::from_parts("stripe", None, bytes::Bytes::from_static(b"{}"))).await.unwrap();
    /// let (tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    /// let handle = Worker::builder(store.clone(), |_item: ClaimedItem| async {
    ///     Err::<(), _>(HandlerError::new("downstream answered 502"))
    /// })
    /// .on_outcome(move |item, outcome| {
    ///     let _ = tx.send((item.attempt, outcome.clone()));
    /// })
    /// .spawn();
    /// let (attempt, outcome) = outcomes.recv().await.unwrap();
    /// assert_eq!(attempt, 1);
    /// assert!(matches!(outcome, Outcome::Retry { ref error, .. } if error == "downstream answered 502"));
    /// handle.shutdown().await;
    /// # });
    /// ```
    pub fn on_outcome(mut self, f: impl Fn(&ClaimedItem, &Outcome) + Send + Sync + 'static) -> Self {
        self.on_outcome = Some(Arc::new(f));
        self
    }
    /// Builds and starts the worker on the current tokio runtime.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use hookguard_core::inbox::{Accepted, ClaimRef, ClaimedItem, InboxFuture, InboxRecord, InboxState, InboxStats, InboxStore, ListFilter, NewItem};
    /// use hookguard_core::testing::MemoryInbox;
    /// use hookguard_core::inbox::{HandlerError, Outcome, Worker};
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = Arc::new(MemoryInbox::default());
    /// store.accept(NewItem::from_parts("hcss", None, bytes::Bytes::from_static(b"{}"))).await.unwrap();
    /// let (tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    /// let handle = Worker::builder(store.clone(), |_item: ClaimedItem| async { Ok::<(), HandlerError>(()) })
    ///     .on_outcome(move |_item, outcome| {
    ///         let _ = tx.send(outcome.clone());
    ///     })
    ///     .spawn();
    /// assert_eq!(outcomes.recv().await, Some(Outcome::Done));
    /// assert_eq!(store.items()[0].state, InboxState::Done);
    /// handle.shutdown().await;
    /// # });
    /// ```
    pub fn spawn(self) -> WorkerHandle {
        self.build().spawn()
    }

    /// The worker, not yet running.
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
    /// use hookguard_core::inbox::{HandlerError, Worker};
    /// let worker = Worker::builder(Arc::new(Stub), |_item: ClaimedItem| async { Ok::<(), HandlerError>(()) })
    ///     .concurrency(2)
    ///     .lease(Duration::from_secs(30))
    ///     .build();
    /// let shown = format!("{worker:?}");
    /// assert!(shown.contains("concurrency: 2") && shown.contains("lease: 30s"));
    /// ```
    pub fn build(self) -> Worker {
        let limit = self.lease.mul_f64(0.9);
        let timeout = self.handler_timeout.map_or(limit, |t| t.min(limit));
        Worker {
            cfg: Arc::new(Config {
                store: self.store,
                handler: self.handler,
                concurrency: self.concurrency,
                retry: self.retry,
                lease: self.lease,
                timeout,
                poll: self.poll,
                retention: self.retention,
                purge_every: self.purge_every,
                grace: self.grace,
                on_outcome: self.on_outcome,
                providers: self.providers,
            }),
        }
    }
}

struct Config {
    store: Arc<dyn InboxStore>,
    handler: Arc<dyn InboxHandler>,
    concurrency: usize,
    retry: RetryPolicy,
    lease: Duration,
    timeout: Duration,
    poll: Duration,
    retention: Duration,
    purge_every: Duration,
    grace: Duration,
    on_outcome: Option<OutcomeHook>,
    /// Whose items are claimed (`Provider::as_str` names; empty: everyone's).
    providers: Vec<String>,
}

/// Drains an inbox: claims due items, runs the handler with a concurrency limit, records done,
/// retry (exponential backoff with jitter) or dead; purges done items past the retention.
///
/// A handler error, a panic or a timeout is a failed attempt. Shutdown is graceful: no new
/// claims, running handlers get [`shutdown_grace`](WorkerBuilder::shutdown_grace) to finish,
/// and claims still held after it are given back, so pending work waits for the next start.
///
/// ```
/// # use std::sync::Arc;
/// # use std::time::Duration;
/// # use hookguard_core::inbox::{Accepted, ClaimRef, ClaimedItem, InboxFuture, InboxRecord, InboxState, InboxStats, InboxStore, ListFilter, NewItem};
/// use hookguard_core::testing::MemoryInbox;
/// use hookguard_core::inbox::{now_ms, HandlerError, Outcome, Worker};
/// use hookguard_core::{schemes::BuildWorkPro, testing};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = Arc::new(MemoryInbox::default());
/// let d = testing::deliver(BuildWorkPro::new(), "whsec_k", br#"{"id":"evt_1","type":"bid.accepted"}"#).unwrap();
/// store.accept(NewItem::from_delivery(&d, Vec::new(), now_ms())).await.unwrap();
/// let (tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
/// let handle = Worker::builder(store.clone(), |item: ClaimedItem| async move {
///     // Make the effect idempotent, keyed by `item.delivery.dedupe_key()`: it runs at least once.
///     assert_eq!(item.delivery.event_type(), Some("bid.accepted"));
///     Ok::<(), HandlerError>(())
/// })
/// .on_outcome(move |item, outcome| {
///     let _ = tx.send((item.id, outcome.clone()));
/// })
/// .spawn();
/// assert_eq!(outcomes.recv().await, Some((1, Outcome::Done)));
/// handle.shutdown().await;
/// # });
/// ```
#[must_use = "a worker does nothing until `spawn`: stored deliveries would wait for ever"]
pub struct Worker {
    cfg: Arc<Config>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("concurrency", &self.cfg.concurrency)
            .field("lease", &self.cfg.lease)
            .finish_non_exhaustive()
    }
}

/// The last error of a handler that panicked: its message (a `&str` or `String` payload, as
/// `panic!` makes), cut to [`MAX_PANIC_MESSAGE`] bytes, so the dead item says why without the
/// process's stderr.
fn panicked(payload: &(dyn std::any::Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
    match message {
        Some(m) => {
            let mut end = m.len().min(MAX_PANIC_MESSAGE);
            while !m.is_char_boundary(end) {
                end -= 1;
            }
            format!("handler panicked: {}", &m[..end])
        }
        None => "handler panicked".to_owned(),
    }
}

/// The most of a panic's message kept as an item's last error.
const MAX_PANIC_MESSAGE: usize = 512;

/// A running worker; [`shutdown`](Self::shutdown) stops it gracefully.
///
/// ```
/// # use std::sync::Arc;
/// # use std::time::Duration;
/// # use hookguard_core::inbox::{Accepted, ClaimRef, ClaimedItem, InboxFuture, InboxRecord, InboxState, InboxStats, InboxStore, ListFilter, NewItem};
/// use hookguard_core::testing::MemoryInbox;
/// use hookguard_core::inbox::{HandlerError, Worker, WorkerHandle};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let handle: WorkerHandle = Worker::builder(Arc::new(MemoryInbox::default()), |_item: ClaimedItem| async { Ok::<(), HandlerError>(()) }).spawn();
/// // ... serve deliveries; then, on shutdown:
/// handle.shutdown().await;
/// # });
/// ```
#[derive(Debug)]
pub struct WorkerHandle {
    stop: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl WorkerHandle {
    /// Stops claiming, lets running handlers finish and their outcomes be recorded within the
    /// grace period, gives back the claims of those that did not (also of an item whose handler
    /// finished but whose outcome was not recorded yet: it may run again), and returns when all is
    /// settled. An item whose outcome the store refused to record (its done mark failed five
    /// times) is left to its lease, like any claim the store cannot take back.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use hookguard_core::inbox::{Accepted, ClaimRef, ClaimedItem, InboxFuture, InboxRecord, InboxState, InboxStats, InboxStore, ListFilter, NewItem};
    /// use hookguard_core::testing::MemoryInbox;
    /// use hookguard_core::inbox::{HandlerError, Outcome, Worker};
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = Arc::new(MemoryInbox::default());
    /// store.accept(NewItem::from_parts("procore", None, bytes::Bytes::from_static(b"{}"))).await.unwrap();
    /// let (tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    /// let handle = Worker::builder(store.clone(), |_item: ClaimedItem| async { Ok::<(), HandlerError>(()) })
    ///     .on_outcome(move |_item, outcome| {
    ///         let _ = tx.send(outcome.clone());
    ///     })
    ///     .spawn();
    /// assert_eq!(outcomes.recv().await, Some(Outcome::Done));
    /// handle.shutdown().await; // returns once everything is settled
    /// assert_eq!(store.items()[0].state, InboxState::Done);
    /// # });
    /// ```
    pub async fn shutdown(self) {
        self.stop.notify_one();
        let _ = self.task.await;
    }
}

impl Worker {
    /// Starts configuring a worker for `store` and `handler`.
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
    /// use hookguard_core::inbox::{HandlerError, Worker};
    /// let b = Worker::builder(Arc::new(Stub), |item: ClaimedItem| async move {
    ///     println!("handling {:?}", item.delivery.event_id());
    ///     Ok::<(), HandlerError>(())
    /// });
    /// // The defaults: 4 handlers at once, a 60 s lease.
    /// let shown = format!("{b:?}");
    /// assert!(shown.contains("concurrency: 4") && shown.contains("lease: 60s"));
    /// ```
    pub fn builder(store: Arc<dyn InboxStore>, handler: impl InboxHandler) -> WorkerBuilder {
        WorkerBuilder {
            store,
            handler: Arc::new(handler),
            concurrency: 4,
            retry: RetryPolicy::default(),
            lease: Duration::from_secs(60),
            handler_timeout: None,
            poll: Duration::from_secs(1),
            retention: DEFAULT_RETENTION,
            purge_every: Duration::from_secs(60),
            grace: Duration::from_secs(10),
            on_outcome: None,
            providers: Vec::new(),
        }
    }

    /// Runs on the current tokio runtime until [`WorkerHandle::shutdown`].
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use hookguard_core::inbox::{Accepted, ClaimRef, ClaimedItem, InboxFuture, InboxRecord, InboxState, InboxStats, InboxStore, ListFilter, NewItem};
    /// use hookguard_core::testing::MemoryInbox;
    /// use hookguard_core::inbox::{HandlerError, Outcome, Worker};
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = Arc::new(MemoryInbox::default());
    /// store.accept(NewItem::from_parts("hcss", None, bytes::Bytes::from_static(b"{}"))).await.unwrap();
    /// let (tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    /// let worker = Worker::builder(store.clone(), |_item: ClaimedItem| async { Ok::<(), HandlerError>(()) })
    ///     .on_outcome(move |_item, outcome| {
    ///         let _ = tx.send(outcome.clone());
    ///     })
    ///     .build();
    /// // Built while configuring, started later on the runtime.
    /// let handle = worker.spawn();
    /// assert_eq!(outcomes.recv().await, Some(Outcome::Done));
    /// handle.shutdown().await;
    /// # });
    /// ```
    pub fn spawn(self) -> WorkerHandle {
        let stop = Arc::new(Notify::new());
        let task = tokio::spawn(run(self.cfg, Arc::clone(&stop)));
        WorkerHandle { stop, task }
    }
}

fn jitter() -> f64 {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(SEQ.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

async fn run(cfg: Arc<Config>, stop: Arc<Notify>) {
    let permits = Arc::new(Semaphore::new(cfg.concurrency));
    // Outcomes being recorded (done marks, failures) once their handler returned: as many as
    // handlers, so a handler's slot is free while its outcome waits for the store's commit
    // (see `attempt`), and the items held stay bounded (twice `concurrency`).
    let settling = Arc::new(Semaphore::new(cfg.concurrency));
    let wake = Arc::new(Notify::new());
    let retries = Arc::new(RetryWakes::default());
    // Item → what this worker holds of it (see `Held`).
    let running: Arc<Mutex<HashMap<i64, Held>>> = Arc::default();
    let mut claims: u64 = 0;
    // The most items the next claim asks for: halved after a failed claim, doubled back after
    // full claims once 10 s have passed without a failure. A claim too large to finish (its
    // items' bodies beyond a statement timeout, or a store's own bound) would otherwise fail
    // the same way every poll, and the worker would never handle anything again; growing back
    // at once would fail every other claim.
    let most = u32::try_from(cfg.concurrency).unwrap_or(u32::MAX);
    let mut ask = most;
    let mut failed_at: Option<tokio::time::Instant> = None;
    let mut tasks = JoinSet::new();
    // The purge and the gauges run beside the claims: a first purge of a large backlog
    // (batches until one comes back short) neither holds claims back nor delays shutdown.
    let _housekeeping = AbortOnDrop(tokio::spawn(housekeep(Arc::clone(&cfg))));
    let mut stop_wait = std::pin::pin!(stop.notified());
    // Told to the attempts once the loop stops claiming (see `attempt`'s deferral).
    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
    let mut claim_log = ClaimLog::default();
    loop {
        // A stop is looked for before every claim: under a backlog every claim comes back full
        // and, with handlers returning while it waits, a slot is free again at once, so the
        // waits below, the only other places a stop is seen, were never reached.
        if stop_wait.as_mut().now_or_never().is_some() {
            break;
        }
        while let Some(joined) = tasks.try_join_next() {
            if let Err(e) = joined {
                tracing::error!(error = %e, "inbox: an attempt's task ended abnormally; its lease will expire");
            }
        }
        let free = permits.available_permits();
        if free == 0 {
            tokio::select! {
                _ = &mut stop_wait => break,
                p = permits.acquire() => drop(p),
            }
            continue;
        }
        let limit = u32::try_from(free).unwrap_or(u32::MAX).min(ask);
        // The lease runs from the claim's start, not its answer: a claim that waited (a busy
        // store, a checkpoint) leaves its handlers that much less time.
        let claimed_at = tokio::time::Instant::now();
        let claimed = match cfg.store.claim_of(&cfg.providers, now_ms(), cfg.lease, limit).await {
            Ok(items) => {
                claim_log.succeeded();
                if limit == ask && failed_at.is_none_or(|t| t.elapsed() >= CLAIM_REGROW_AFTER) {
                    ask = ask.saturating_mul(2).min(most);
                }
                items
            }
            Err(e) => {
                failed_at = Some(tokio::time::Instant::now());
                ask = (limit / 2).max(1);
                claim_log.failed(&e);
                Vec::new()
            }
        };
        let n = claimed.len();
        for item in claimed {
            // An item whose handler still runs here, handed out again: its lease ran out on the
            // store's clock (the wall clock jumped ahead, a suspended machine resumed) while the
            // handler, timed on the monotonic clock, still had time. It does not run twice at
            // once: the running attempt takes this claim and settles under it.
            if let Some(h) = running.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&item.id) {
                if h.handling {
                    tracing::warn!(id = item.id, attempt = item.attempt, "inbox: an item was claimed again while its handler runs here (its lease ended on the store's clock); not run twice");
                    h.claim = item.claim();
                    continue;
                }
            }
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                break;
            };
            claims += 1;
            let claim = claims;
            running.lock().unwrap_or_else(|p| p.into_inner()).insert(
                item.id,
                Held {
                    claim: item.claim(),
                    count: claim,
                    handling: true,
                },
            );
            let (cfg, wake, running) = (Arc::clone(&cfg), Arc::clone(&wake), Arc::clone(&running));
            let retries = Arc::clone(&retries);
            let stopping = stopping_rx.clone();
            let slot = Slot {
                permit,
                settling: Arc::clone(&settling),
            };
            tasks.spawn(async move {
                let deadline = far_after(claimed_at, cfg.timeout);
                let id = item.id;
                let shared = Shared {
                    wake: &wake,
                    retries: &retries,
                    held: &running,
                    stopping: &stopping,
                };
                let attempted = std::panic::AssertUnwindSafe(attempt(&cfg, item, shared, deadline, claim, slot))
                    .catch_unwind()
                    .await;
                if attempted.is_err() {
                    // A panic outside the handler's own `catch_unwind` (its future panicked when
                    // dropped after a timeout, or a store's method panicked). Left marked as
                    // handled here, every later claim of the item would be skipped as a copy of
                    // a running handler: it would never run nor go dead in this process. It
                    // stays held (given back at shutdown) and runs again after its lease.
                    handler_ended(&running, id, claim);
                    tracing::error!(
                        id,
                        "inbox: an attempt panicked outside its handler; the item runs again after its lease"
                    );
                }
            });
        }
        if n > 0 && n as u32 == limit {
            continue;
        }
        let retry_due = retries.next();
        tokio::select! {
            _ = &mut stop_wait => break,
            _ = cfg.store.notified() => {}
            _ = wake.notified() => {}
            _ = tokio::time::sleep(cfg.poll) => {}
            // A failed attempt's retry falls due (sooner than the poll), or one falls due
            // sooner than the one waited for.
            _ = tokio::time::sleep_until(retry_due.unwrap_or_else(tokio::time::Instant::now)), if retry_due.is_some() => {}
            _ = retries.sooner.notified() => {}
        }
        retries.forget_due(tokio::time::Instant::now());
    }
    // Graceful shutdown: let running handlers finish, then give back what is still held.
    stopping_tx.send_replace(true);
    let drained = tokio::time::timeout(cfg.grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    // What is still held (handlers stopped by the grace, and an attempt whose task ended
    // abnormally) is given back, whichever way the attempts ended.
    {
        let held: Vec<ClaimRef> = running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, held)| held.claim)
            .collect();
        // All at once: one after another, a store with a round trip per give-back (PostgreSQL:
        // a commit each) made a worker holding many items stop that many round trips late.
        let given_back = held.into_iter().map(|held| {
            let cfg = &cfg;
            async move {
                if let Err(e) = cfg.store.release(held).await {
                    tracing::warn!(id = held.id, error = %e, "inbox: could not give back a claim at shutdown; its lease will expire");
                }
            }
        });
        futures_util::future::join_all(given_back).await;
    }
}

/// What the worker's attempts share: the wake-up for the claim loop, the items held (see
/// `Held`), and whether the loop stopped claiming.
struct Shared<'a> {
    wake: &'a Arc<Notify>,
    retries: &'a RetryWakes,
    held: &'a Mutex<HashMap<i64, Held>>,
    stopping: &'a tokio::sync::watch::Receiver<bool>,
}

/// When failed attempts' retries fall due, for the claim loop to wake then (sooner than its
/// poll) with one timer: a task sleeping per failure grew with the failing items (an outage
/// of the handler's downstream: up to the pending cap of tasks, each sleeping up to the
/// longest retry delay). At most [`MAX_RETRY_WAKES`] are kept, the soonest; a later retry
/// beyond them is found by the poll.
#[derive(Default)]
struct RetryWakes {
    due: Mutex<std::collections::BTreeSet<tokio::time::Instant>>,
    /// Told when a retry falls due sooner than any kept before: the loop waits for it instead.
    sooner: Notify,
}

/// The most retry wake-ups a worker keeps (see [`RetryWakes`]).
const MAX_RETRY_WAKES: usize = 1024;

impl RetryWakes {
    fn add(&self, at: tokio::time::Instant) {
        let mut due = self.due.lock().unwrap_or_else(|p| p.into_inner());
        let sooner = due.first().is_none_or(|&first| at < first);
        due.insert(at);
        if due.len() > MAX_RETRY_WAKES {
            due.pop_last();
        }
        drop(due);
        if sooner {
            self.sooner.notify_one();
        }
    }

    /// The soonest retry kept.
    fn next(&self) -> Option<tokio::time::Instant> {
        self.due.lock().unwrap_or_else(|p| p.into_inner()).first().copied()
    }

    /// Forgets the retries due by `now` (the claim that follows takes them).
    fn forget_due(&self, now: tokio::time::Instant) {
        let mut due = self.due.lock().unwrap_or_else(|p| p.into_inner());
        while due.first().is_some_and(|&first| first <= now) {
            due.pop_first();
        }
    }
}

/// A handler's slot, held by its attempt; handed over to a settling slot once the handler
/// returned (see `attempt`).
struct Slot {
    permit: tokio::sync::OwnedSemaphorePermit,
    settling: Arc<Semaphore>,
}

impl Slot {
    /// Frees the handler's slot for the next claim once a settling slot is taken (waited for
    /// while every settling slot is busy: the store is behind, and claims wait too).
    async fn settle(self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let settling = self.settling.acquire_owned().await.ok();
        drop(self.permit);
        settling
    }
}

/// The periodic purge of done items past the retention and the inbox gauges, until aborted.
async fn housekeep(cfg: Arc<Config>) {
    let mut next_purge = tokio::time::Instant::now();
    let mut next_sample = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_purge {
            next_purge = far_after(tokio::time::Instant::now(), cfg.purge_every);
            let before = now_ms() - i64::try_from(cfg.retention.as_millis()).unwrap_or(i64::MAX);
            match cfg.store.purge(before, false).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(purged = n, "inbox: done items past the retention purged");
                    crate::observe::count_by(
                        "hookguard_inbox_transitions_total",
                        &[("provider", "all"), ("transition", "purged")],
                        n,
                    );
                }
                Err(e) => tracing::warn!(error = %e, "inbox purge failed"),
            }
        }
        if tokio::time::Instant::now() >= next_sample {
            // Counting costs as much as the inbox holds: sample at most 1/20 of the time.
            let started = tokio::time::Instant::now();
            sample_gauges(cfg.store.as_ref()).await;
            next_sample = tokio::time::Instant::now() + SAMPLE_EVERY.max(started.elapsed() * 20);
        }
        tokio::time::sleep_until(next_purge.min(next_sample)).await;
    }
}

/// A task aborted when this is dropped (the worker's run ended, or its task was aborted).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `from + after`, or a time far off when that overflows (`purge_every(Duration::MAX)`: never;
/// a lease of `Duration::MAX`: no deadline).
fn far_after(from: tokio::time::Instant, after: Duration) -> tokio::time::Instant {
    from.checked_add(after)
        .or_else(|| from.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(from)
}

/// What the worker holds of an item it claimed: the store's claim (the newest, see `run`), this
/// worker's count of its claims, which tells apart two claims the store may name alike (a
/// deferral does not count an attempt, so the claim after it carries the same number, and a
/// lease taken within the same millisecond ends at the same time), and whether its handler
/// still runs.
#[derive(Debug, Clone, Copy)]
struct Held {
    claim: ClaimRef,
    count: u64,
    handling: bool,
}

/// Marks item `id`'s handler as no longer running here, if this worker's claim number `claim`
/// still holds it (a later claim of it may not run twice at once before this): a claim of the
/// item from now on runs it again. Returns the newest claim of the item taken meanwhile.
fn handler_ended(held: &Mutex<HashMap<i64, Held>>, id: i64, claim: u64) -> Option<ClaimRef> {
    let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
    let h = held.get_mut(&id).filter(|h| h.count == claim)?;
    h.handling = false;
    Some(h.claim)
}

/// Says (at WARN, at most once a minute in the process) that claims are answered after their
/// handlers' deadline: such items are given back unrun and uncounted, so a store that always
/// answers that late would run nothing, and nothing else would say why (a review).
fn warn_late_claims(id: i64) {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now_secs = u64::try_from(now_ms() / 1000).unwrap_or(0);
    if crate::verifier::once_a_minute(&LAST, now_secs) {
        tracing::warn!(
            id,
            "inbox: a claim was answered after its handler's deadline (90 % of the lease): the item is \
             given back unrun; a store this slow runs nothing — lengthen the lease, or look at the store"
        );
    }
}

/// Runs one claimed attempt; the handler must finish by `deadline` (90 % of the lease after the
/// claim began).
async fn attempt(
    cfg: &Config,
    mut item: ClaimedItem,
    shared: Shared<'_>,
    deadline: tokio::time::Instant,
    claim: u64,
    slot: Slot,
) {
    let Shared {
        wake,
        retries,
        held,
        stopping,
    } = shared;
    let started = std::time::Instant::now();
    // Every claim counts an attempt; only a recorded failure decides `dead`. A claim past the
    // last attempt means the earlier ones ended with no outcome recorded: the process died (or
    // the lease ran out) while the handler ran — perhaps because of this very delivery. It is
    // not run again: it goes dead, to wait for a replay, instead of killing every restart. (Or
    // the limit was lowered since, a restart with a smaller `--max-attempts`: said so too.)
    // A claim answered after its handler's deadline (a store that stalled, a runtime too busy
    // to start the task) leaves the handler no time: its lease may have ended, and another
    // process may run the item now. Not started — `handle` and a future's first poll run
    // before any timeout could stop them (a review: `--exec` spawned its command there) —
    // but given back like a deferral, which counts no attempt.
    let late = tokio::time::Instant::now() >= deadline;
    let ran = !late && item.attempt <= cfg.retry.max_attempts;
    // `Err((why, Some(after)))`: the handler deferred (not an attempt).
    let result: Result<(), (String, Option<Duration>)> = if late {
        warn_late_claims(item.id);
        Err((
            "not run: the claim was answered after the handler's deadline (90 % of the lease)".to_owned(),
            Some(cfg.poll),
        ))
    } else if ran {
        // `handle` itself may panic before it returns its future (work done outside `async`).
        let started_handler =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cfg.handler.handle(item.clone())));
        match started_handler {
            Err(panic) => Err((panicked(&*panic), None)),
            Ok(handler) => {
                match tokio::time::timeout_at(deadline, std::panic::AssertUnwindSafe(handler).catch_unwind()).await {
                    Ok(Ok(Ok(()))) => Ok(()),
                    Ok(Ok(Err(e))) => Err((e.to_string(), e.deferred())),
                    Ok(Err(panic)) => Err((panicked(&*panic), None)),
                    Err(_) => Err((
                        format!("handler did not finish within {:?} of its claim", cfg.timeout),
                        None,
                    )),
                }
            }
        }
    } else {
        Err((
            format!(
                "not run: attempt {}, past the last of {}: the limit was lowered since the earlier \
                 attempts, or they ended with no outcome recorded (the process stopped, or the lease \
                 expired, while the handler ran)",
                item.attempt, cfg.retry.max_attempts
            ),
            None,
        ))
    };
    let elapsed = started.elapsed();
    // The handler is done: a claim of this item from now on runs it again. Settled under the
    // newest claim taken while it ran.
    if let Some(newest) = handler_ended(held, item.id, claim) {
        (item.attempt, item.lease_until_ms) = (newest.attempt, newest.lease_until_ms);
    }
    // The handler's slot goes to the next claim while this outcome is recorded (it waits for
    // a commit of the store: under a flood of accepts, about a millisecond — with the slot
    // held, `concurrency` items took two commits each), unless the handler deferred: a
    // deferral holds its slot for its delay (see `give_back`).
    let slots = if matches!(result, Err((_, Some(_)))) {
        (Some(slot), None)
    } else {
        (None, slot.settle().await)
    };
    let now = now_ms();
    let outcome = match result {
        Ok(()) => match complete_with_retries(cfg, &item).await {
            Ok(true) => Some(Outcome::Done),
            Ok(false) => Some(Outcome::Lost),
            Err(e) => {
                // Not recorded: the lease expires and the item runs again (at least once).
                tracing::warn!(id = item.id, error = %e, "inbox: could not mark an item done; it runs again after its lease");
                None
            }
        },
        Err((reason, Some(after))) => give_back(cfg, &item, reason, after).await,
        Err((error, None)) => {
            let next = cfg
                .retry
                .next_after(item.attempt, jitter())
                .map(|d| d.max(MIN_RETRY_DELAY));
            let retry_at = next.map(|d| now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
            match cfg.store.fail(item.claim(), &error, retry_at, now).await {
                Ok(true) => match next {
                    Some(after) => {
                        // The claim loop is woken when the retry is due (sooner than its poll).
                        retries.add(far_after(tokio::time::Instant::now(), after));
                        tracing::info!(id = item.id, attempt = item.attempt, %error, ?after, "inbox: attempt failed; retrying");
                        Some(Outcome::Retry { error, after })
                    }
                    None => {
                        tracing::error!(id = item.id, attempt = item.attempt, %error, "inbox: last attempt failed; the item is dead until replayed (fix the handler, then: hookguard inbox replay ID, or --dead for all, with --inbox; InboxStore::replay in code)");
                        Some(Outcome::Dead { error })
                    }
                },
                Ok(false) => Some(Outcome::Lost),
                Err(e) => {
                    tracing::warn!(id = item.id, error = %e, "inbox: could not record a failed attempt");
                    None
                }
            }
        }
    };
    // This attempt holds the item no longer (its outcome is recorded, or left to the lease):
    // forgotten now, before the hook and a deferral's wait. The item may already be claimed
    // again under the same attempt number (a deferral does not count one; a store's default
    // `defer` makes it due at once): only this claim's own entry goes, so the newer claim is
    // still released at shutdown.
    {
        let mut running = held.lock().unwrap_or_else(|p| p.into_inner());
        if running
            .get(&item.id)
            .is_some_and(|h| h.claim == item.claim() && h.count == claim)
        {
            running.remove(&item.id);
        }
    }
    let Some(outcome) = outcome else { return };
    let provider = item.delivery.provider();
    if ran && !matches!(outcome, Outcome::Deferred { .. }) {
        crate::observe::handler_time(provider, elapsed);
    }
    let transition = match &outcome {
        Outcome::Done => "done",
        Outcome::Retry { .. } => "retried",
        Outcome::Dead { .. } => "dead",
        Outcome::Lost => "lost",
        Outcome::Deferred { .. } => "deferred",
    };
    crate::observe::inbox_transition_of(provider, transition);
    if let Some(hook) = &cfg.on_outcome {
        // The outcome is recorded already: a hook that panics changes nothing of the item (it
        // was reported as an attempt panicking outside its handler, to run again after its
        // lease, for an item that was done; a review). Said as what it is; a deferral still
        // holds its slot below.
        let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&item, &outcome)));
        if let Err(panic) = called {
            tracing::error!(
                id = item.id,
                transition,
                panic = %panicked(&*panic),
                "inbox: the on_outcome hook panicked (the outcome was recorded before it)"
            );
        }
    }
    // A deferral holds the handler's slot for its delay (see `give_back`), but not a stop:
    // it holds no claim, so there is nothing to wait for.
    if let Outcome::Deferred { after, .. } = outcome {
        let mut stopping = stopping.clone();
        tokio::select! {
            _ = tokio::time::sleep(after) => wake.notify_one(),
            _ = stopping.wait_for(|s| *s) => {}
        }
    }
    drop(slots);
}

/// Gives a deferred item back, due again after `after` (at least the poll interval), without
/// counting the attempt; `attempt` then holds the handler's slot for that long. A handler that
/// defers everything (its downstream full) therefore slows the worker to `concurrency` items
/// per `after` instead of claiming and giving back at full speed — also with a store whose
/// `defer` makes the item due at once (the trait's default). `None`: nothing was recorded.
async fn give_back(cfg: &Config, item: &ClaimedItem, reason: String, after: Duration) -> Option<Outcome> {
    let after = after.max(cfg.poll);
    let until = now_ms().saturating_add(i64::try_from(after.as_millis()).unwrap_or(i64::MAX));
    match cfg.store.defer(item.claim(), until).await {
        Ok(true) => {
            tracing::debug!(id = item.id, %reason, ?after, "inbox: handler deferred; the attempt does not count");
            Some(Outcome::Deferred { reason, after })
        }
        Ok(false) => Some(Outcome::Lost),
        Err(e) => {
            tracing::warn!(id = item.id, error = %e, "inbox: could not give a deferred item back; its lease will expire");
            None
        }
    }
}

/// How long the worker keeps claims at the size that worked after one failed (see `run`).
/// Short: a store outage also fails claims, and its smaller claims should not outlast it long
/// (under a flood a worker draining too little fills the pending cap).
const CLAIM_REGROW_AFTER: Duration = Duration::from_secs(10);

/// The shortest wait before a retry (see [`WorkerBuilder::retry`]).
const MIN_RETRY_DELAY: Duration = Duration::from_millis(50);

/// Tries of the done mark (see [`complete_with_retries`]).
const DONE_MARK_TRIES: u32 = 5;

/// A brief storage hiccup should not cost a whole lease and a second run: try the done mark a
/// few times (0.1, 0.2, 0.4, 0.8 s apart) before leaving it to the lease.
async fn complete_with_retries(cfg: &Config, item: &ClaimedItem) -> Result<bool, super::InboxError> {
    let mut delay = Duration::from_millis(100);
    let mut tries = 1;
    loop {
        match cfg.store.complete(item.claim(), now_ms()).await {
            Ok(done) => return Ok(done),
            // No wait after the last try: the slot is freed at once.
            Err(e) if tries == DONE_MARK_TRIES => return Err(e),
            Err(_) => {}
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
        tries += 1;
    }
}

/// How often the worker samples the inbox gauges (less often when counting takes longer than
/// 1/20 of it).
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

async fn sample_gauges(store: &dyn InboxStore) {
    let Ok(s) = store.stats().await else { return };
    for (state, n) in [
        ("pending", s.pending),
        ("running", s.running),
        ("done", s.done),
        ("dead", s.dead),
    ] {
        crate::observe::gauge("hookguard_inbox_items", Some(("state", state)), n as f64);
    }
    let age = s.oldest_pending_secs(now_ms()).unwrap_or(0.0);
    crate::observe::gauge("hookguard_inbox_oldest_pending_seconds", None, age);
}

/// The log of failed claims: the first of a run at WARN, then at most one a minute with how
/// many failed meanwhile, and a line when a claim succeeds again (a full disk or a database
/// down fails every poll — a WARN a second, for as long as it lasts).
#[derive(Default)]
struct ClaimLog {
    /// Failed in a row, and when the last WARN was written.
    failing: Option<(u64, std::time::Instant)>,
}

impl ClaimLog {
    /// How long failures after the first of a run are not logged one by one.
    const QUIET: Duration = Duration::from_secs(60);

    fn failed(&mut self, e: &super::InboxError) {
        match &mut self.failing {
            None => {
                tracing::warn!(error = %e, "inbox claim failed; trying again after the poll interval");
                self.failing = Some((1, std::time::Instant::now()));
            }
            Some((n, logged)) => {
                *n += 1;
                if logged.elapsed() >= Self::QUIET {
                    tracing::warn!(error = %e, failed_in_a_row = *n, "inbox claims still fail; trying again after the poll interval");
                    *logged = std::time::Instant::now();
                }
            }
        }
    }

    fn succeeded(&mut self) {
        if let Some((n, _)) = self.failing.take() {
            tracing::info!(failed_in_a_row = n, "inbox claims succeed again");
        }
    }
}

#[cfg(test)]
mod tests {
    /// A handler's own `serde_json` parse that fails keeps the field and place, not the body's
    /// values (they were logged and stored as the item's last error; a review).
    #[test]
    fn a_handlers_own_json_error_keeps_no_value_of_the_body() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Card {
            number: u64,
        }
        let e = serde_json::from_slice::<Card>(br#"{"number":"4111111111111111"}"#).unwrap_err();
        let text = HandlerError::from(e).to_string();
        assert!(!text.contains("4111"), "{text}");
        assert!(text.contains("invalid type") && text.contains("line 1"), "{text}");
        // Other errors keep their text.
        assert_eq!(
            HandlerError::from(std::io::Error::other("disk \"full\"")).to_string(),
            "disk \"full\""
        );
    }

    use super::*;

    /// An `on_outcome` hook that panics is said as such: the panic reached the attempt's outer
    /// guard, which reported an attempt panicking outside its handler, "to run again after its
    /// lease", for an item already done (a review).
    #[cfg(feature = "testing")]
    #[test]
    fn a_panicking_outcome_hook_is_said_as_such() {
        use crate::inbox::{InboxState, InboxStore, NewItem};
        use crate::testing::MemoryInbox;
        let logs = crate::testing::Logs::default();
        let inbox = Arc::new(MemoryInbox::default());
        tracing::subscriber::with_default(logs.clone(), || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let item = NewItem::from_parts("github", None, bytes::Bytes::from_static(b"{}"));
                let id = match inbox.accept(item).await.unwrap() {
                    crate::inbox::Accepted::Stored(id) => id,
                    other => panic!("{other:?}"),
                };
                let store: Arc<dyn InboxStore> = inbox.clone();
                let worker = Worker::builder(store, |_item: ClaimedItem| async { Ok::<(), HandlerError>(()) })
                    .on_outcome(|_, _| panic!("the hook fails"))
                    .poll_interval(Duration::from_millis(10))
                    .spawn();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while inbox.get(id).await.unwrap().map(|r| r.state) != Some(InboxState::Done) {
                    assert!(tokio::time::Instant::now() < deadline, "never done");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                worker.shutdown().await;
            });
        });
        let errors = logs.messages(tracing::Level::ERROR);
        assert!(
            errors.iter().any(|m| m.contains("on_outcome hook panicked")),
            "{errors:?}"
        );
        assert!(!errors.iter().any(|m| m.contains("outside its handler")), "{errors:?}");
    }

    /// A tryout's finding: on a full disk the worker wrote a WARN for every poll, each second,
    /// for as long as the disk stayed full. Now the first of a run, then one a minute with the
    /// count, and the recovery.
    #[test]
    fn failed_claims_in_a_row_are_logged_once_a_minute() {
        use tracing::Level;
        let logs = crate::testing::Logs::default();
        let counts = || (logs.count(Level::WARN), logs.count(Level::INFO));
        let mut log = ClaimLog::default();
        let full = super::super::InboxError::storage("database or disk is full");
        tracing::subscriber::with_default(logs.clone(), || {
            for _ in 0..100 {
                log.failed(&full);
            }
            assert_eq!(counts(), (1, 0));
            if let Some((_, at)) = &mut log.failing {
                *at = at.checked_sub(ClaimLog::QUIET).expect("a machine up for a minute");
            }
            log.failed(&full);
            log.failed(&full);
            assert_eq!(counts(), (2, 0));
            log.succeeded();
            log.succeeded();
            assert_eq!(counts(), (2, 1));
            log.failed(&full);
            assert_eq!(counts(), (3, 1), "a new run is logged at once");
        });
    }

    /// A typed parse's failure as a handler error (`item.delivery.json::<T>()?`) keeps the
    /// field and place it names: a dead item's last error was only "payload does not match
    /// the receiver's model; retry later".
    #[test]
    fn a_typed_parse_failure_keeps_what_it_names() {
        let parse = crate::Rejection::UnexpectedPayload {
            detail: "missing field `amount` at line 1 column 30".into(),
        };
        let e = HandlerError::from(parse);
        assert!(
            e.to_string().contains("missing field `amount` at line 1 column 30"),
            "{e}"
        );
        let other = HandlerError::from(std::io::Error::other("disk"));
        assert_eq!(other.to_string(), "disk");
    }

    /// A panic's message is kept, bounded on a character boundary; another payload is named
    /// as a panic alone.
    #[test]
    fn a_panics_message_is_kept_bounded() {
        let long = "é".repeat(MAX_PANIC_MESSAGE);
        let kept = panicked(&long);
        assert!(kept.starts_with("handler panicked: é"), "{kept}");
        assert!(
            kept.len() <= "handler panicked: ".len() + MAX_PANIC_MESSAGE,
            "{}",
            kept.len()
        );
        assert_eq!(panicked(&"static"), "handler panicked: static");
        assert_eq!(panicked(&42_u32), "handler panicked");
    }

    /// The soonest retries are kept, at most `MAX_RETRY_WAKES`; one sooner than all is told.
    #[tokio::test]
    async fn retry_wake_ups_keep_the_soonest_and_are_bounded() {
        let wakes = RetryWakes::default();
        let t0 = tokio::time::Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        for ms in (10..10 + 3 * MAX_RETRY_WAKES as u64).rev() {
            wakes.add(at(ms));
        }
        let due = wakes.due.lock().unwrap().clone();
        assert_eq!(due.len(), MAX_RETRY_WAKES);
        assert_eq!(due.first(), Some(&at(10)));
        assert_eq!(due.last(), Some(&at(10 + MAX_RETRY_WAKES as u64 - 1)));
        // Each add above was sooner than all before it: the loop was told (one stored permit).
        assert!(wakes.sooner.notified().now_or_never().is_some());
        wakes.add(at(5_000));
        assert!(
            wakes.sooner.notified().now_or_never().is_none(),
            "a later retry woke the loop"
        );
        wakes.forget_due(at(20));
        assert_eq!(wakes.next(), Some(at(21)));
    }
}
