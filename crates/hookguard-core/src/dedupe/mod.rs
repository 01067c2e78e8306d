//! Deduplication with a two-phase claim, so nothing runs twice and nothing is lost.
//!
//! 1. [`DedupeStore::claim`] the delivery's key for a *lease*: the answer is
//!    [`Claim::New`] (handle it), [`Claim::InFlight`] (another copy is being handled: answer a
//!    retryable status) or [`Claim::Done`] (already handled: answer 2xx).
//! 2. After the handler **succeeded**, [`DedupeStore::complete`] marks the key done for the
//!    *retention* period; after it failed, [`DedupeStore::release`] forgets the claim so the
//!    sender's retry is handled. If the handler's future is dropped, [`ClaimGuard`] releases
//!    the claim on drop.
//!
//! A claim whose handler hangs past its lease can be claimed again; a late `complete` or
//! `release` of the old claim is refused by token, so it never clobbers the newer one.
//!
//! ```
//! use std::time::Duration;
//! use hookguard_core::dedupe::{Claim, DedupeStore, MemoryStore};
//! use hookguard_core::testing::block_on;
//! let store = MemoryStore::new(1_000);
//! let lease = Duration::from_secs(30);
//! let Claim::New(token) = block_on(store.claim("evt_1", lease)).unwrap() else { unreachable!() };
//! // A copy while the first is handled is told to come back; once completed it is a duplicate.
//! assert_eq!(block_on(store.claim("evt_1", lease)).unwrap(), Claim::InFlight);
//! assert!(block_on(store.complete(&token, Duration::from_secs(3600))).unwrap());
//! assert_eq!(block_on(store.claim("evt_1", lease)).unwrap(), Claim::Done);
//! ```

mod memory;

#[cfg(test)]
pub(crate) use memory::Observed;

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use memory::{MemoryStore, MemoryStoreBuilder};

use crate::{Delivery, Rejection};

/// The future every store method returns (boxed so stores can be used as `dyn DedupeStore`).
///
/// ```
/// use std::time::Duration;
/// use hookguard_core::dedupe::{Claim, DedupeStore, MemoryStore, StoreFuture};
/// let store = MemoryStore::new(1_000);
/// let fut: StoreFuture<'_, Claim> = store.claim("k", Duration::from_secs(30));
/// assert!(matches!(hookguard_core::testing::block_on(fut), Ok(Claim::New(_))));
/// ```
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A store could not answer (unreachable, timed out, protocol error).
///
/// ```
/// let e = hookguard_core::dedupe::StoreError::msg("timed out");
/// assert_eq!(e.to_string(), "dedupe store error: timed out");
/// ```
#[derive(Debug)]
pub struct StoreError(Box<dyn StdError + Send + Sync>);

impl StoreError {
    /// Wraps any error.
    ///
    /// ```
    /// use std::error::Error;
    /// use hookguard_core::dedupe::StoreError;
    /// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
    /// let e = StoreError::new(io);
    /// assert_eq!(e.to_string(), "dedupe store error: connection refused");
    /// assert!(e.source().is_some());
    /// ```
    pub fn new(e: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self(e.into())
    }
    /// A plain message.
    ///
    /// ```
    /// let e = hookguard_core::dedupe::StoreError::msg(format!("redis: {}", "READONLY"));
    /// assert_eq!(e.to_string(), "dedupe store error: redis: READONLY");
    /// ```
    pub fn msg(m: impl Into<String>) -> Self {
        Self(m.into().into())
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dedupe store error: {}", self.0)
    }
}

impl StdError for StoreError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.0)
    }
}

/// Proof of a claim: the key and the token only its holder knows.
///
/// ```
/// use std::time::Duration;
/// use hookguard_core::{dedupe::{Claim, ClaimToken, DedupeStore, MemoryStore}, testing::block_on};
/// let store = MemoryStore::new(1_000);
/// let Claim::New(token) = block_on(store.claim("stripe:evt_1", Duration::from_secs(30))).unwrap() else { panic!() };
/// // Only the token the claim returned settles it.
/// let guessed = ClaimToken::new("stripe:evt_1", token.token().wrapping_add(1));
/// assert!(!block_on(store.release(&guessed)).unwrap());
/// assert!(block_on(store.release(&token)).unwrap());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToken {
    key: String,
    token: u128,
}

impl ClaimToken {
    /// A token for `key` (stores create these).
    ///
    /// ```
    /// use hookguard_core::dedupe::ClaimToken;
    /// let t = ClaimToken::new("buildworkpro:evt_1", 7);
    /// assert_eq!((t.key(), t.token()), ("buildworkpro:evt_1", 7));
    /// ```
    pub fn new(key: impl Into<String>, token: u128) -> Self {
        Self { key: key.into(), token }
    }
    /// The claimed key.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{dedupe::{Claim, DedupeStore, MemoryStore}, testing::block_on};
    /// let store = MemoryStore::new(1_000);
    /// let Claim::New(token) = block_on(store.claim("github:3f2a", Duration::from_secs(30))).unwrap() else { panic!() };
    /// assert_eq!(token.key(), "github:3f2a");
    /// ```
    pub fn key(&self) -> &str {
        &self.key
    }
    /// The token value.
    ///
    /// ```
    /// use hookguard_core::dedupe::ClaimToken;
    /// let t = ClaimToken::new("k", 42);
    /// assert_eq!(t.token(), 42);
    /// assert_ne!(t, ClaimToken::new("k", 43));
    /// ```
    pub fn token(&self) -> u128 {
        self.token
    }
}

/// The answer to a claim.
///
/// ```
/// use std::time::Duration;
/// use hookguard_core::{dedupe::{Claim, DedupeStore, MemoryStore}, testing::block_on};
/// let store = MemoryStore::new(1_000);
/// let lease = Duration::from_secs(30);
/// let Claim::New(token) = block_on(store.claim("k", lease)).unwrap() else { panic!() };
/// assert_eq!(block_on(store.claim("k", lease)).unwrap(), Claim::InFlight);
/// block_on(store.complete(&token, Duration::from_secs(3600))).unwrap();
/// assert_eq!(block_on(store.claim("k", lease)).unwrap(), Claim::Done);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Nobody handled or is handling this key: handle it, then complete or release.
    New(ClaimToken),
    /// Another copy holds a live lease.
    InFlight,
    /// Handled already, within the retention period.
    Done,
}

/// Where claims live: in memory for one process ([`MemoryStore`]), or shared by replicas
/// (the `hookguard-redis` crate).
///
/// ```
/// use std::time::Duration;
/// use hookguard_core::dedupe::{Claim, DedupeStore, MemoryStore};
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output { hookguard_core::testing::block_on(f) }
/// let store = MemoryStore::new(1_000);
/// block_on(async {
///     let Claim::New(token) = store.claim("buildworkpro:evt_1", Duration::from_secs(30)).await? else { panic!() };
///     assert_eq!(store.claim("buildworkpro:evt_1", Duration::from_secs(30)).await?, Claim::InFlight);
///     assert!(store.complete(&token, Duration::from_secs(3600)).await?);
///     assert_eq!(store.claim("buildworkpro:evt_1", Duration::from_secs(30)).await?, Claim::Done);
///     Ok::<_, hookguard_core::dedupe::StoreError>(())
/// }).unwrap();
/// ```
pub trait DedupeStore: Send + Sync + 'static {
    /// Claims `key` for `lease` if nobody holds or completed it. Atomic: of concurrent
    /// claims of one key, exactly one gets [`Claim::New`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{dedupe::{Claim, DedupeStore, MemoryStore}, testing::block_on};
    /// let store = MemoryStore::new(1_000);
    /// let first = block_on(store.claim("procore:01J0", Duration::from_secs(30))).unwrap();
    /// assert!(matches!(first, Claim::New(_)));
    /// // A copy arriving while the first is handled.
    /// assert_eq!(block_on(store.claim("procore:01J0", Duration::from_secs(30))).unwrap(), Claim::InFlight);
    /// ```
    fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> StoreFuture<'a, Claim>;

    /// Marks the claimed key done for `retention`. `Ok(false)` when the token no longer
    /// holds the key (its lease expired and another claim took it): nothing is changed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{clock::ManualClock, dedupe::{Claim, DedupeStore, MemoryStore}, testing::block_on};
    /// let clock = ManualClock::new(0);
    /// let store = MemoryStore::builder().capacity(1_000).clock(clock.clone()).build();
    /// let Claim::New(old) = block_on(store.claim("k", Duration::from_secs(10))).unwrap() else { panic!() };
    /// clock.advance(12); // the lease ran out, and a retry claimed the key
    /// let Claim::New(new) = block_on(store.claim("k", Duration::from_secs(10))).unwrap() else { panic!() };
    /// assert!(!block_on(store.complete(&old, Duration::from_secs(3600))).unwrap()); // not its claim any more
    /// assert!(block_on(store.complete(&new, Duration::from_secs(3600))).unwrap());
    /// assert_eq!(block_on(store.claim("k", Duration::from_secs(10))).unwrap(), Claim::Done);
    /// ```
    fn complete<'a>(&'a self, token: &'a ClaimToken, retention: Duration) -> StoreFuture<'a, bool>;

    /// Forgets the claim so a retry is handled. `Ok(false)` when the token no longer holds it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{dedupe::{Claim, DedupeStore, MemoryStore}, testing::block_on};
    /// let store = MemoryStore::new(1_000);
    /// let Claim::New(token) = block_on(store.claim("k", Duration::from_secs(30))).unwrap() else { panic!() };
    /// assert!(block_on(store.release(&token)).unwrap());
    /// // The sender's retry is handled.
    /// assert!(matches!(block_on(store.claim("k", Duration::from_secs(30))).unwrap(), Claim::New(_)));
    /// // The old token holds nothing any more.
    /// assert!(!block_on(store.release(&token)).unwrap());
    /// ```
    fn release<'a>(&'a self, token: &'a ClaimToken) -> StoreFuture<'a, bool>;

    /// Releases without waiting: called from `Drop` when a handler's future is dropped, and
    /// after a [`release`](Self::release) that failed. Stores that cannot release
    /// synchronously may spawn the release (retrying it for a while) or let the lease expire.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{dedupe::{Claim, DedupeStore, MemoryStore}, testing::block_on};
    /// let store = MemoryStore::new(1_000);
    /// let Claim::New(token) = block_on(store.claim("k", Duration::from_secs(30))).unwrap() else { panic!() };
    /// store.abandon(token); // no `await`: callable from `Drop`
    /// assert!(matches!(block_on(store.claim("k", Duration::from_secs(30))).unwrap(), Claim::New(_)));
    /// ```
    fn abandon(&self, token: ClaimToken);

    /// Completes without waiting: the handler succeeded, but the request's future was dropped
    /// (the client went away) while [`complete`](Self::complete) was still in flight, or
    /// `complete` failed. Stores that can should finish the completion in the background (the
    /// Redis store spawns it and retries it for a few seconds); the default releases instead,
    /// so a retry runs the handler again (at least once) rather than waiting out the lease.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hookguard_core::dedupe::{Claim, ClaimToken, DedupeStore, MemoryStore, StoreFuture};
    /// # use hookguard_core::testing::block_on;
    /// // `Plain`: a store that keeps the trait's defaults (it forwards the required methods to a `MemoryStore`).
    /// # struct Plain(MemoryStore);
    /// # impl DedupeStore for Plain {
    /// #     fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> StoreFuture<'a, Claim> { self.0.claim(key, lease) }
    /// #     fn complete<'a>(&'a self, t: &'a ClaimToken, retention: Duration) -> StoreFuture<'a, bool> { self.0.complete(t, retention) }
    /// #     fn release<'a>(&'a self, t: &'a ClaimToken) -> StoreFuture<'a, bool> { self.0.release(t) }
    /// #     fn abandon(&self, t: ClaimToken) { self.0.abandon(t) }
    /// # }
    /// let retention = Duration::from_secs(3600);
    /// // The in-memory store finishes the completion: a copy is answered "done".
    /// let memory = MemoryStore::new(1_000);
    /// let Claim::New(token) = block_on(memory.claim("k", Duration::from_secs(30))).unwrap() else { panic!() };
    /// memory.abandon_complete(token, retention);
    /// assert_eq!(block_on(memory.claim("k", Duration::from_secs(30))).unwrap(), Claim::Done);
    /// // The default releases instead: the retry runs the handler again.
    /// let plain = Plain(MemoryStore::new(1_000));
    /// let Claim::New(token) = block_on(plain.claim("k", Duration::from_secs(30))).unwrap() else { panic!() };
    /// plain.abandon_complete(token, retention);
    /// assert!(matches!(block_on(plain.claim("k", Duration::from_secs(30))).unwrap(), Claim::New(_)));
    /// ```
    fn abandon_complete(&self, token: ClaimToken, retention: Duration) {
        let _ = retention;
        self.abandon(token);
    }

    /// For a store that answers without waiting (the in-memory store): what
    /// [`claim`](Self::claim) would answer, given at once, so the receiver needs no boxed
    /// future. The default, `None`, has the receiver await `claim`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hookguard_core::dedupe::{Claim, ClaimToken, DedupeStore, MemoryStore, StoreFuture};
    /// # use hookguard_core::testing::block_on;
    /// // `Plain`: a store that keeps the trait's defaults (it forwards the required methods to a `MemoryStore`).
    /// # struct Plain(MemoryStore);
    /// # impl DedupeStore for Plain {
    /// #     fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> StoreFuture<'a, Claim> { self.0.claim(key, lease) }
    /// #     fn complete<'a>(&'a self, t: &'a ClaimToken, retention: Duration) -> StoreFuture<'a, bool> { self.0.complete(t, retention) }
    /// #     fn release<'a>(&'a self, t: &'a ClaimToken) -> StoreFuture<'a, bool> { self.0.release(t) }
    /// #     fn abandon(&self, t: ClaimToken) { self.0.abandon(t) }
    /// # }
    /// let lease = Duration::from_secs(30);
    /// // The in-memory store answers at once: no future to poll.
    /// let memory = MemoryStore::new(1_000);
    /// assert!(matches!(memory.claim_at_once("k", lease), Some(Ok(Claim::New(_)))));
    /// assert!(matches!(memory.claim_at_once("k", lease), Some(Ok(Claim::InFlight))));
    /// // The default: `None`, the receiver awaits `claim`.
    /// assert!(Plain(MemoryStore::new(1_000)).claim_at_once("k", lease).is_none());
    /// ```
    fn claim_at_once(&self, key: &str, lease: Duration) -> Option<Result<Claim, StoreError>> {
        let _ = (key, lease);
        None
    }

    /// As [`claim_at_once`](Self::claim_at_once), for [`complete`](Self::complete).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hookguard_core::dedupe::{Claim, ClaimToken, DedupeStore, MemoryStore, StoreFuture};
    /// # use hookguard_core::testing::block_on;
    /// // `Plain`: a store that keeps the trait's defaults (it forwards the required methods to a `MemoryStore`).
    /// # struct Plain(MemoryStore);
    /// # impl DedupeStore for Plain {
    /// #     fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> StoreFuture<'a, Claim> { self.0.claim(key, lease) }
    /// #     fn complete<'a>(&'a self, t: &'a ClaimToken, retention: Duration) -> StoreFuture<'a, bool> { self.0.complete(t, retention) }
    /// #     fn release<'a>(&'a self, t: &'a ClaimToken) -> StoreFuture<'a, bool> { self.0.release(t) }
    /// #     fn abandon(&self, t: ClaimToken) { self.0.abandon(t) }
    /// # }
    /// let memory = MemoryStore::new(1_000);
    /// let Some(Ok(Claim::New(token))) = memory.claim_at_once("k", Duration::from_secs(30)) else { panic!() };
    /// assert!(matches!(memory.complete_at_once(&token, Duration::from_secs(3600)), Some(Ok(true))));
    /// // The default: `None`, the receiver awaits `complete`.
    /// let plain = Plain(MemoryStore::new(1_000));
    /// let Claim::New(token) = block_on(plain.claim("k", Duration::from_secs(30))).unwrap() else { panic!() };
    /// assert!(plain.complete_at_once(&token, Duration::from_secs(3600)).is_none());
    /// ```
    fn complete_at_once(&self, token: &ClaimToken, retention: Duration) -> Option<Result<bool, StoreError>> {
        let _ = (token, retention);
        None
    }

    /// Whether [`renew`](Self::renew) extends claims. The default is `false`: the receiver
    /// then never renews, and a handler that outlives the lease runs beside a retry that
    /// claimed the delivery meanwhile.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hookguard_core::dedupe::{Claim, ClaimToken, DedupeStore, MemoryStore, StoreFuture};
    /// # use hookguard_core::testing::block_on;
    /// // `Plain`: a store that keeps the trait's defaults (it forwards the required methods to a `MemoryStore`).
    /// # struct Plain(MemoryStore);
    /// # impl DedupeStore for Plain {
    /// #     fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> StoreFuture<'a, Claim> { self.0.claim(key, lease) }
    /// #     fn complete<'a>(&'a self, t: &'a ClaimToken, retention: Duration) -> StoreFuture<'a, bool> { self.0.complete(t, retention) }
    /// #     fn release<'a>(&'a self, t: &'a ClaimToken) -> StoreFuture<'a, bool> { self.0.release(t) }
    /// #     fn abandon(&self, t: ClaimToken) { self.0.abandon(t) }
    /// # }
    /// assert!(MemoryStore::new(1_000).renews());
    /// assert!(!Plain(MemoryStore::new(1_000)).renews()); // the default
    /// ```
    fn renews(&self) -> bool {
        false
    }

    /// Extends the claim to `lease` from now, while its handler still runs (the receiver
    /// calls it every third of the lease). `Ok(false)` when the token no longer holds the key.
    /// The default does nothing (see [`renews`](Self::renews)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{clock::ManualClock, dedupe::{Claim, DedupeStore, MemoryStore}, testing::block_on};
    /// let clock = ManualClock::new(0);
    /// let store = MemoryStore::builder().capacity(1_000).clock(clock.clone()).build();
    /// let lease = Duration::from_secs(30);
    /// let Claim::New(token) = block_on(store.claim("k", lease)).unwrap() else { panic!() };
    /// clock.advance(20);
    /// assert!(block_on(store.renew(&token, lease)).unwrap()); // held until 20 s + 30 s
    /// clock.advance(20); // 40 s after the claim, past its first lease
    /// assert_eq!(block_on(store.claim("k", lease)).unwrap(), Claim::InFlight);
    /// ```
    fn renew<'a>(&'a self, token: &'a ClaimToken, lease: Duration) -> StoreFuture<'a, bool> {
        let _ = (token, lease);
        Box::pin(std::future::ready(Ok(false)))
    }
}

/// How a receiver deduplicates: the store, the lease and retention, and what to do when the
/// store fails.
///
/// ```
/// use std::time::Duration;
/// use hookguard_core::dedupe::{Dedupe, MemoryStore};
/// let d = Dedupe::new(MemoryStore::new(10_000)).lease(Duration::from_secs(20));
/// assert_eq!(d.lease_duration(), Duration::from_secs(20));
/// ```
#[derive(Clone)]
pub struct Dedupe {
    store: Arc<dyn DedupeStore>,
    lease: Duration,
    retention: Duration,
    fail_open: bool,
}

impl fmt::Debug for Dedupe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dedupe")
            .field("lease", &self.lease)
            .field("retention", &self.retention)
            .field("fail_open", &self.fail_open)
            .finish_non_exhaustive()
    }
}

/// Default lease: longer than any sender waits (BuildWorkPro 10 s, Procore 5 s).
///
/// ```
/// use std::time::Duration;
/// use hookguard_core::dedupe::{Dedupe, MemoryStore, DEFAULT_LEASE};
/// assert_eq!(DEFAULT_LEASE, Duration::from_secs(30));
/// assert_eq!(Dedupe::new(MemoryStore::new(1_000)).lease_duration(), DEFAULT_LEASE);
/// ```
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Default retention: 7 days (as the inbox's), longer than every built-in sender's retry
/// horizon: Stripe 3 days, APS ≥ 48 h after the first attempt, BuildWorkPro ≈ 31 h (+20 %
/// jitter), Procore's 12 h queue. A shared store (Redis) holds each key that long; a receiver
/// of only short-horizon senders can lower it with [`Dedupe::retention`].
///
/// ```
/// use std::time::Duration;
/// use hookguard_core::dedupe::{Dedupe, MemoryStore, DEFAULT_RETENTION};
/// assert_eq!(DEFAULT_RETENTION, Duration::from_secs(7 * 24 * 3600));
/// assert_eq!(Dedupe::new(MemoryStore::new(1_000)).retention_duration(), DEFAULT_RETENTION);
/// ```
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// What the receiver should do with a verified delivery.
///
/// ```
/// use hookguard_core::{dedupe::{Admission, Dedupe, MemoryStore}, schemes::BuildWorkPro, testing::{self, block_on}};
/// let dedupe = Dedupe::new(MemoryStore::new(1_000));
/// let d = testing::deliver(BuildWorkPro::new(), "whsec_k", br#"{"id":"evt_1","type":"bid.accepted"}"#).unwrap();
/// let Admission::New(claim) = block_on(dedupe.admit(&d)).unwrap() else { panic!() };
/// // ... the handler succeeded:
/// assert!(block_on(claim.complete()).unwrap());
/// assert!(matches!(block_on(dedupe.admit(&d)).unwrap(), Admission::Done));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Admission {
    /// Handle it; then [`ClaimGuard::complete`] on success, [`ClaimGuard::release`] on failure.
    New(ClaimGuard),
    /// Handle it: it carries no dedupe key.
    Unkeyed,
    /// Handle it without a claim: the store failed and the policy is fail-open.
    FailedOpen(StoreError),
    /// Already handled: answer 2xx, do not call the handler.
    Done,
}

impl Dedupe {
    /// Deduplicates in `store`, failing closed, with the default lease and retention.
    ///
    /// ```
    /// use hookguard_core::dedupe::{Dedupe, MemoryStore, DEFAULT_LEASE};
    /// let d = Dedupe::new(MemoryStore::new(10_000));
    /// assert_eq!(d.lease_duration(), DEFAULT_LEASE);
    /// assert!(format!("{d:?}").contains("fail_open: false"));
    /// ```
    pub fn new(store: impl DedupeStore) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// Deduplicates in a shared store.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use hookguard_core::dedupe::{Dedupe, DedupeStore, MemoryStore};
    /// // One store shared by two routes' policies.
    /// let store: Arc<dyn DedupeStore> = Arc::new(MemoryStore::new(10_000));
    /// let a = Dedupe::from_arc(Arc::clone(&store));
    /// let b = Dedupe::from_arc(store);
    /// assert!(Arc::ptr_eq(a.store(), b.store()));
    /// ```
    pub fn from_arc(store: Arc<dyn DedupeStore>) -> Self {
        Self {
            store,
            lease: DEFAULT_LEASE,
            retention: DEFAULT_RETENTION,
            fail_open: false,
        }
    }

    /// How long a claim blocks copies while its handler runs (default 30 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::dedupe::{Dedupe, MemoryStore};
    /// let d = Dedupe::new(MemoryStore::new(1_000)).lease(Duration::from_secs(15));
    /// assert_eq!(d.lease_duration(), Duration::from_secs(15));
    /// ```
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a handled key is remembered (default 7 days, [`DEFAULT_RETENTION`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::dedupe::{Dedupe, MemoryStore};
    /// let three_days = Duration::from_secs(3 * 24 * 3600);
    /// let d = Dedupe::new(MemoryStore::new(1_000)).retention(three_days);
    /// assert_eq!(d.retention_duration(), three_days);
    /// ```
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// **Risky opt-in**: when the store fails, handle the delivery anyway instead of answering
    /// 503. Copies arriving while the store is down may then be handled twice.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::dedupe::{Admission, Claim, ClaimToken, Dedupe, DedupeStore, StoreError, StoreFuture};
    /// use hookguard_core::{schemes::GitHub, testing::{self, block_on}, Rejection};
    /// // A store that is down.
    /// struct Down;
    /// impl DedupeStore for Down {
    ///     fn claim<'a>(&'a self, _: &'a str, _: Duration) -> StoreFuture<'a, Claim> {
    ///         Box::pin(async { Err(StoreError::msg("connection refused")) })
    ///     }
    ///     fn complete<'a>(&'a self, _: &'a ClaimToken, _: Duration) -> StoreFuture<'a, bool> { Box::pin(async { Ok(false) }) }
    ///     fn release<'a>(&'a self, _: &'a ClaimToken) -> StoreFuture<'a, bool> { Box::pin(async { Ok(false) }) }
    ///     fn abandon(&self, _: ClaimToken) {}
    /// }
    /// let d = testing::deliver(GitHub::new(), "s", b"{}").unwrap();
    /// // Failing closed (the default): 503, the sender retries later.
    /// assert_eq!(block_on(Dedupe::new(Down).admit(&d)).unwrap_err(), Rejection::StoreUnavailable);
    /// // Failing open: handled without a claim.
    /// assert!(matches!(block_on(Dedupe::new(Down).fail_open(true).admit(&d)), Ok(Admission::FailedOpen(_))));
    /// ```
    pub fn fail_open(mut self, yes: bool) -> Self {
        self.fail_open = yes;
        self
    }

    /// Whether its store renews the claims of running handlers.
    pub(crate) fn store_renews(&self) -> bool {
        self.store.renews()
    }

    /// The lease (at least a second, however it was set).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::dedupe::{Dedupe, MemoryStore, DEFAULT_LEASE};
    /// let d = Dedupe::new(MemoryStore::new(1_000));
    /// assert_eq!(d.lease_duration(), DEFAULT_LEASE);
    /// let d = d.lease(Duration::from_secs(10));
    /// assert_eq!(d.lease_duration(), Duration::from_secs(10));
    /// assert_eq!(d.lease(Duration::ZERO).lease_duration(), Duration::from_secs(1));
    /// ```
    pub fn lease_duration(&self) -> Duration {
        // At least a second, however it was set (see `admit`): the receiver's budget and
        // background limit are derived from it too.
        self.lease.max(MIN_LEASE)
    }

    /// Whether the lease or the retention was set under a second (the receiver's builder
    /// refuses that; the getters and claims take a second).
    pub(crate) fn below_a_second(&self) -> bool {
        self.lease < MIN_LEASE || self.retention < MIN_LEASE
    }

    /// How long a handled key is remembered (at least a second, however it was set).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::dedupe::{Dedupe, MemoryStore, DEFAULT_RETENTION};
    /// assert_eq!(Dedupe::new(MemoryStore::default()).retention_duration(), DEFAULT_RETENTION);
    /// ```
    pub fn retention_duration(&self) -> Duration {
        self.retention.max(MIN_LEASE)
    }

    /// The store.
    ///
    /// ```
    /// use hookguard_core::{dedupe::{Admission, Claim, Dedupe, DedupeStore, MemoryStore}, schemes::BuildWorkPro, testing::{self, block_on}};
    /// let dedupe = Dedupe::new(MemoryStore::new(1_000));
    /// let d = testing::deliver(BuildWorkPro::new(), "whsec_k", br#"{"id":"evt_1","type":"bid.accepted"}"#).unwrap();
    /// let Admission::New(_claim) = block_on(dedupe.admit(&d)).unwrap() else { panic!() };
    /// // The store holds the claim under the delivery's key.
    /// let seen = block_on(dedupe.store().claim("buildworkpro:evt_1", dedupe.lease_duration())).unwrap();
    /// assert_eq!(seen, Claim::InFlight);
    /// ```
    pub fn store(&self) -> &Arc<dyn DedupeStore> {
        &self.store
    }

    /// Claims the delivery's key.
    ///
    /// # Errors
    /// [`Rejection::DuplicateInFlight`] while another copy is handled;
    /// [`Rejection::StoreUnavailable`] when the store fails and the policy is fail-closed.
    ///
    /// ```
    /// use hookguard_core::{dedupe::{Admission, Dedupe, MemoryStore}, schemes::BuildWorkPro, testing::{self, block_on}, Rejection};
    /// let dedupe = Dedupe::new(MemoryStore::new(1_000));
    /// let d = testing::deliver(BuildWorkPro::new(), "whsec_k", br#"{"id":"evt_1","type":"bid.accepted"}"#).unwrap();
    /// let Admission::New(claim) = block_on(dedupe.admit(&d)).unwrap() else { panic!() };
    /// // A copy while the first is handled: a retryable 429.
    /// assert_eq!(block_on(dedupe.admit(&d)).unwrap_err(), Rejection::DuplicateInFlight);
    /// block_on(claim.complete()).unwrap();
    /// assert!(matches!(block_on(dedupe.admit(&d)).unwrap(), Admission::Done));
    /// ```
    pub async fn admit(&self, delivery: &Delivery) -> Result<Admission, Rejection> {
        let Some(key) = delivery.dedupe_key() else {
            return Ok(Admission::Unkeyed);
        };
        // At least a second each, whatever was set: the receiver's builder refuses less, but a
        // `Receiver::with_dedupe` is not checked, and a lease that ends before any copy could
        // see it lets every copy run beside the first (a review).
        let (lease, retention) = (self.lease_duration(), self.retention_duration());
        let claimed = match self.store.claim_at_once(key, lease) {
            Some(answer) => answer,
            None => self.store.claim(key, lease).await,
        };
        match claimed {
            Ok(Claim::New(token)) => Ok(Admission::New(ClaimGuard {
                store: Arc::clone(&self.store),
                token: Some(token),
                lease,
                retention,
                remember: delivery.dedupe_scope() == crate::DedupeScope::Retained,
                completing: false,
            })),
            Ok(Claim::InFlight) => Err(Rejection::DuplicateInFlight),
            Ok(Claim::Done) => Ok(Admission::Done),
            Err(e) if self.fail_open => Ok(Admission::FailedOpen(e)),
            Err(_) => Err(Rejection::StoreUnavailable),
        }
    }
}

/// A held claim. Complete it after the handler succeeded, release it after it failed; if it
/// is dropped unresolved (the request future was dropped, the handler panicked), it releases.
///
/// ```
/// use hookguard_core::{dedupe::{Admission, Dedupe, MemoryStore}, schemes::BuildWorkPro, testing::{self, block_on}};
/// let dedupe = Dedupe::new(MemoryStore::new(1_000));
/// let d = testing::deliver(BuildWorkPro::new(), "whsec_k", br#"{"id":"evt_1","type":"bid.accepted"}"#).unwrap();
/// let Admission::New(claim) = block_on(dedupe.admit(&d)).unwrap() else { panic!() };
/// drop(claim); // the handler panicked, or its request was dropped: released
/// assert!(matches!(block_on(dedupe.admit(&d)).unwrap(), Admission::New(_)));
/// ```
pub struct ClaimGuard {
    store: Arc<dyn DedupeStore>,
    /// Held until the store has answered: a guard dropped while completing or releasing
    /// finishes that in the background.
    token: Option<ClaimToken>,
    lease: Duration,
    retention: Duration,
    remember: bool,
    /// Whether the store is completing (rather than releasing) the claim right now.
    completing: bool,
}

impl fmt::Debug for ClaimGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaimGuard")
            .field("key", &self.token.as_ref().map(ClaimToken::key))
            .field("remember", &self.remember)
            .finish()
    }
}

/// The shortest lease and retention a claim gets (see [`Dedupe::admit`]).
const MIN_LEASE: Duration = Duration::from_secs(1);

impl ClaimGuard {
    /// How often the claim is renewed while its handler runs (a third of the lease), or
    /// `None` when the store does not renew claims.
    pub(crate) fn renew_every(&self) -> Option<Duration> {
        self.store.renews().then(|| self.lease / 3)
    }

    /// Extends the claim to a full lease from now (see [`DedupeStore::renew`]).
    pub(crate) fn renew(&self) -> StoreFuture<'_, bool> {
        match &self.token {
            Some(token) => self.store.renew(token, self.lease),
            None => Box::pin(std::future::ready(Ok(false))),
        }
    }

    /// Marks the delivery done. `Ok(false)` if the lease had expired and another claim took it.
    ///
    /// For a delivery whose key only coalesces copies in flight
    /// ([`DedupeScope::WhileInFlight`](crate::DedupeScope::WhileInFlight)), completing
    /// forgets the key instead: an identical body later is a new event.
    ///
    /// # Errors
    /// The store failed; the lease will expire and a retry will be handled again.
    ///
    /// ```
    /// use hookguard_core::{dedupe::{Admission, Dedupe, MemoryStore}, schemes::{BuildWorkPro, Hcss}, testing::{self, block_on}};
    /// let dedupe = Dedupe::new(MemoryStore::new(1_000));
    /// let d = testing::deliver(BuildWorkPro::new(), "whsec_k", br#"{"id":"evt_1","type":"bid.accepted"}"#).unwrap();
    /// let Admission::New(claim) = block_on(dedupe.admit(&d)).unwrap() else { panic!() };
    /// assert!(block_on(claim.complete()).unwrap());
    /// assert!(matches!(block_on(dedupe.admit(&d)).unwrap(), Admission::Done));
    /// // A key that only coalesces copies in flight (an HCSS Setups body) is forgotten instead.
    /// let h = testing::deliver(Hcss::new(), "tok", br#"{"companyId":"c","eventType":"EmployeeUpdated"}"#).unwrap();
    /// let Admission::New(claim) = block_on(dedupe.admit(&h)).unwrap() else { panic!() };
    /// assert!(block_on(claim.complete()).unwrap());
    /// assert!(matches!(block_on(dedupe.admit(&h)).unwrap(), Admission::New(_)));
    /// ```
    pub async fn complete(self) -> Result<bool, StoreError> {
        self.settle(true).await.0
    }

    /// Forgets the claim so the sender's retry is handled.
    ///
    /// # Errors
    /// The store failed; the lease will expire and a retry will be handled then.
    ///
    /// ```
    /// use hookguard_core::{dedupe::{Admission, Dedupe, MemoryStore}, schemes::BuildWorkPro, testing::{self, block_on}};
    /// let dedupe = Dedupe::new(MemoryStore::new(1_000));
    /// let d = testing::deliver(BuildWorkPro::new(), "whsec_k", br#"{"id":"evt_1","type":"bid.accepted"}"#).unwrap();
    /// let Admission::New(claim) = block_on(dedupe.admit(&d)).unwrap() else { panic!() };
    /// // ... the handler failed:
    /// assert!(block_on(claim.release()).unwrap());
    /// // The sender's retry is handled.
    /// assert!(matches!(block_on(dedupe.admit(&d)).unwrap(), Admission::New(_)));
    /// ```
    pub async fn release(self) -> Result<bool, StoreError> {
        self.settle(false).await.0
    }

    /// Completes on success, releases otherwise.
    ///
    /// # Errors
    /// As [`complete`](Self::complete) and [`release`](Self::release).
    ///
    /// ```
    /// use hookguard_core::{dedupe::{Admission, Dedupe, MemoryStore}, schemes::BuildWorkPro, testing::{self, block_on}};
    /// let dedupe = Dedupe::new(MemoryStore::new(1_000));
    /// let d = testing::deliver(BuildWorkPro::new(), "whsec_k", br#"{"id":"evt_1","type":"bid.accepted"}"#).unwrap();
    /// let Admission::New(claim) = block_on(dedupe.admit(&d)).unwrap() else { panic!() };
    /// block_on(claim.finish(false)).unwrap(); // released
    /// let Admission::New(claim) = block_on(dedupe.admit(&d)).unwrap() else { panic!() };
    /// block_on(claim.finish(true)).unwrap(); // completed
    /// assert!(matches!(block_on(dedupe.admit(&d)).unwrap(), Admission::Done));
    /// ```
    pub async fn finish(self, success: bool) -> Result<bool, StoreError> {
        self.settle(success).await.0
    }

    /// [`finish`](Self::finish), handing back the token so a warning can name its key without
    /// copying the key on every request.
    pub(crate) async fn settle(mut self, success: bool) -> (Result<bool, StoreError>, ClaimToken) {
        // The token stays in the guard while the store works: if this future is dropped
        // meanwhile, `Drop` finishes the same transition in the background.
        self.completing = success && self.remember;
        let r = match self.token.as_ref() {
            Some(token) if self.completing => match self.store.complete_at_once(token, self.retention) {
                Some(answer) => answer,
                None => self.store.complete(token, self.retention).await,
            },
            Some(token) => self.store.release(token).await,
            None => unreachable!("a claim is settled once"),
        };
        let token = self.token.take().expect("a claim is settled once");
        if r.is_err() {
            // Left held, the claim would answer every copy "in flight" until its lease ends,
            // and then let the delivery be handled again: the store finishes the same
            // transition in the background once it can (the Redis store retries it).
            if self.completing {
                self.store.abandon_complete(token.clone(), self.retention);
            } else {
                self.store.abandon(token.clone());
            }
        }
        (r, token)
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            if self.completing {
                self.store.abandon_complete(token, self.retention);
            } else {
                self.store.abandon(token);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The in-memory store, recording the lease and retention each claim and completion asks.
    #[derive(Default)]
    struct Asked {
        store: MemoryStore,
        asked: std::sync::Mutex<Vec<Duration>>,
    }

    impl DedupeStore for Asked {
        fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> StoreFuture<'a, Claim> {
            self.asked.lock().unwrap().push(lease);
            self.store.claim(key, lease)
        }
        fn complete<'a>(&'a self, token: &'a ClaimToken, retention: Duration) -> StoreFuture<'a, bool> {
            self.asked.lock().unwrap().push(retention);
            self.store.complete(token, retention)
        }
        fn release<'a>(&'a self, token: &'a ClaimToken) -> StoreFuture<'a, bool> {
            self.store.release(token)
        }
        fn abandon(&self, token: ClaimToken) {
            self.store.abandon(token)
        }
    }

    /// A lease or retention under a second, which the receiver's builder refuses, still gets a
    /// second per claim when set without it (`Receiver::with_dedupe`): a zero lease ended before
    /// any copy could see it (a review).
    #[test]
    fn claims_get_at_least_a_second_however_the_policy_was_set() {
        use crate::testing::block_on;
        let store = Arc::new(Asked::default());
        let dedupe = Dedupe::new(Arc::clone(&store))
            .lease(Duration::ZERO)
            .retention(Duration::from_millis(1));
        let d = crate::testing::deliver(
            crate::schemes::BuildWorkPro::new(),
            "whsec_k",
            br#"{"id":"evt_short","type":"bid.accepted"}"#,
        )
        .unwrap();
        let Admission::New(claim) = block_on(dedupe.admit(&d)).unwrap() else {
            panic!("a new delivery")
        };
        assert_eq!(block_on(dedupe.admit(&d)).unwrap_err(), Rejection::DuplicateInFlight);
        block_on(claim.complete()).unwrap();
        let asked = store.asked.lock().unwrap().clone();
        assert_eq!(
            asked,
            [Duration::from_secs(1), Duration::from_secs(1), Duration::from_secs(1)]
        );
        // The receiver's budget follows (from a zero lease it was zero: every handler cut).
        let v = crate::Verifier::builder(crate::schemes::BuildWorkPro::new())
            .secret("whsec_k")
            .build()
            .unwrap();
        let rx = crate::Receiver::new(v)
            .with_budget(Some(Duration::from_secs(10)))
            .with_dedupe(Dedupe::new(MemoryStore::default()).lease(Duration::ZERO));
        assert_eq!(rx.budget(), Some(Duration::from_millis(900)));
    }

    /// The in-memory store whose `complete` never answers (a store mid-call when the client
    /// goes away); everything else is the real store. With `at_once`, it answers claims and
    /// completions at once instead, and its boxed `claim` never answers either.
    struct Stalled {
        store: MemoryStore,
        at_once: bool,
    }

    impl Stalled {
        fn new(at_once: bool) -> Self {
            Self {
                store: MemoryStore::new(100),
                at_once,
            }
        }
    }

    impl DedupeStore for Stalled {
        fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> StoreFuture<'a, Claim> {
            if self.at_once {
                return Box::pin(std::future::pending());
            }
            self.store.claim(key, lease)
        }
        fn complete<'a>(&'a self, _token: &'a ClaimToken, _retention: Duration) -> StoreFuture<'a, bool> {
            Box::pin(std::future::pending())
        }
        fn release<'a>(&'a self, token: &'a ClaimToken) -> StoreFuture<'a, bool> {
            self.store.release(token)
        }
        fn abandon(&self, token: ClaimToken) {
            self.store.abandon(token)
        }
        fn abandon_complete(&self, token: ClaimToken, retention: Duration) {
            self.store.abandon_complete(token, retention)
        }
        fn claim_at_once(&self, key: &str, lease: Duration) -> Option<Result<Claim, StoreError>> {
            self.at_once.then(|| self.store.claim_at_once(key, lease)).flatten()
        }
        fn complete_at_once(&self, token: &ClaimToken, retention: Duration) -> Option<Result<bool, StoreError>> {
            self.at_once
                .then(|| self.store.complete_at_once(token, retention))
                .flatten()
        }
    }

    /// A completion dropped while the store was still at it (the request's future dropped
    /// when the client went away) is finished in the background: the claim was left held, and
    /// every retry answered "in flight" until the lease ran out — then handled again.
    #[test]
    fn a_completion_dropped_mid_call_is_finished_in_the_background() {
        use std::future::Future;
        let dedupe = Dedupe::new(Stalled::new(false));
        let d = crate::testing::deliver(crate::schemes::GitHub::new(), "s", b"{}").unwrap();
        let Ok(Admission::New(guard)) = crate::testing::block_on(dedupe.admit(&d)) else {
            panic!("not claimed")
        };
        let mut completing = Box::pin(guard.complete());
        let waker = std::task::Waker::noop();
        let polled = completing.as_mut().poll(&mut std::task::Context::from_waker(waker));
        assert!(polled.is_pending());
        drop(completing);
        assert!(matches!(
            crate::testing::block_on(dedupe.admit(&d)),
            Ok(Admission::Done)
        ));
    }

    /// A store that answers at once is never awaited: its boxed-future methods are not called
    /// for a claim or a completion (here they would never answer), through an `Arc` too.
    #[test]
    fn stores_that_answer_at_once_are_not_awaited() {
        use std::future::Future;
        let d = crate::testing::deliver(crate::schemes::GitHub::new(), "s", b"{}").unwrap();
        let dedupe = Dedupe::new(Arc::new(Stalled::new(true)));
        fn once<F: Future>(f: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
            f.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        }
        let std::task::Poll::Ready(Ok(Admission::New(guard))) = once(std::pin::pin!(dedupe.admit(&d))) else {
            panic!("not claimed at the first poll")
        };
        assert!(matches!(
            once(std::pin::pin!(guard.complete())),
            std::task::Poll::Ready(Ok(true))
        ));
        assert!(matches!(
            once(std::pin::pin!(dedupe.admit(&d))),
            std::task::Poll::Ready(Ok(Admission::Done))
        ));
    }

    /// A copy sent on a sender's last retry is still recognised: the default retention outlasts
    /// every built-in sender's whole retry schedule (with 20 % for jitter).
    #[test]
    fn the_default_retention_outlasts_every_senders_retries() {
        for &p in crate::Provider::BUILT_IN {
            let horizon = crate::schemes::for_provider(p).unwrap().profile().retry_horizon();
            assert!(
                horizon.mul_f64(1.2) < DEFAULT_RETENTION,
                "{p:?}: retries for {horizon:?}"
            );
        }
        assert_eq!(DEFAULT_RETENTION, crate::inbox::DEFAULT_RETENTION);
    }
}
