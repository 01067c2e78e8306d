//! The in-memory store: one process, bounded by capacity and by time.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{Claim, ClaimToken, DedupeStore, StoreError, StoreFuture};
use crate::clock::{Clock, SystemClock};

/// Keys are 128-bit keyed SipHash digests of the dedupe key, already uniformly random, so the
/// map needs no second hash. A per-process random key means nobody can craft two ids that
/// collide (a collision would drop a genuine event as a duplicate).
type Digest = (u64, u64);

#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

/// Value: expiry (seconds since the store's epoch) in the high 32 bits, claim token in the
/// low 32 bits; token 0 means done.
type Map = HashMap<Digest, u64, BuildHasherDefault<PassThrough>>;

const DONE: u32 = 0;

/// Two generations per shard: new entries go to `cur`; when `cur` holds half the shard's
/// capacity, or has been open for the maximum retention, `old` is dropped and `cur` becomes
/// `old`. Memory is therefore bounded by capacity (the oldest half is evicted first) and by
/// time (nothing outlives two maximum retentions), with no per-entry list or timer.
struct Shard {
    cur: Map,
    old: Map,
    cur_started: u32,
}

/// A thread-safe, bounded, in-memory [`DedupeStore`] for a single receiver process.
///
/// **Capacity:** keys live in two generations per shard, each sized to fill a power-of-two
/// hash table (so `capacity` is rounded down to that); when the newer generation is full the
/// older one is dropped. The store therefore remembers between half and all of its capacity,
/// the most recent keys first.
///
/// **Memory:** 25 bytes per slot (16-byte keyed digest, 8-byte expiry+token, 1 control byte),
/// slots at most 7/8 full: about 29 bytes per remembered key when full, allocated once at
/// construction and flat from then on, whatever the flood of ids (measured in `BENCHMARKS.md`).
/// Several receiver replicas need a shared store (`hookguard-redis`).
///
/// ```
/// use hookguard_core::dedupe::MemoryStore;
/// let store = MemoryStore::new(100_000);
/// assert_eq!(store.len(), 0);
/// ```
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    digest: (RandomState, RandomState),
    clock: Arc<dyn Clock>,
    epoch: u64,
    half_shard: usize,
    max_age: u32,
    next_token: AtomicU32,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.shards.len())
            .field("capacity", &(self.half_shard * 2 * self.shards.len()))
            .field("len", &self.len())
            .finish()
    }
}

/// Configures a [`MemoryStore`].
///
/// ```
/// use std::time::Duration;
/// use hookguard_core::dedupe::MemoryStore;
/// let store = MemoryStore::builder().capacity(1_000).max_retention(Duration::from_secs(3600)).build();
/// assert_eq!(store.len(), 0);
/// ```
#[derive(Debug)]
pub struct MemoryStoreBuilder {
    capacity: usize,
    max_retention: Duration,
    shards: usize,
    clock: Arc<dyn Clock>,
}

impl MemoryStoreBuilder {
    /// The most keys remembered (default 1,000,000).
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = n;
        self
    }
    /// The longest a key is remembered, whatever retention a caller asks for (default 7 days).
    pub fn max_retention(mut self, d: Duration) -> Self {
        self.max_retention = d;
        self
    }
    /// Lock shards (default 16; rounded up to a power of two).
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n;
        self
    }
    /// The clock for leases and retention.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
    /// Builds the store.
    pub fn build(self) -> MemoryStore {
        let shards = self.shards.clamp(1, 1024).next_power_of_two();
        let half_shard = table_fit(self.capacity / shards / 2);
        let epoch = self.clock.monotonic().as_secs();
        MemoryStore {
            shards: (0..shards)
                .map(|_| {
                    // Both generations are allocated once at their final size (untouched slots
                    // are not resident); rotation swaps and clears, so memory never moves again.
                    Mutex::new(Shard {
                        cur: Map::with_capacity_and_hasher(half_shard, Default::default()),
                        old: Map::with_capacity_and_hasher(half_shard, Default::default()),
                        cur_started: 0,
                    })
                })
                .collect(),
            digest: (RandomState::new(), RandomState::new()),
            clock: self.clock,
            epoch,
            half_shard,
            max_age: secs_u32(self.max_retention).max(1),
            next_token: AtomicU32::new(1),
        }
    }
}

/// The largest entry count at or below `n` that fills a hash table of power-of-two buckets
/// to its maximum load (7/8): a generation never grows into a half-empty table twice its size.
fn table_fit(n: usize) -> usize {
    if n < 8 {
        return n.max(1);
    }
    let buckets = ((n * 8 / 7) + 1).next_power_of_two();
    let fit = buckets / 8 * 7;
    if fit <= n {
        fit
    } else {
        buckets / 2 / 8 * 7
    }
}

fn secs_u32(d: Duration) -> u32 {
    // Round up: a lease of 1.5 s counts as 2 s, never 1.
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    u32::try_from(s).unwrap_or(u32::MAX)
}

/// The expiry of something lasting `d` from `now` (whole seconds, rounded down): one second
/// more than `d` rounded up, for the part of the current second already gone — a lease or a
/// retention lasts at least as long as asked, at most a second and a bit longer.
fn expiry(now: u32, d: Duration, max_age: u32) -> u32 {
    now.saturating_add(secs_u32(d).min(max_age)).saturating_add(1)
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::builder().build()
    }
}

impl MemoryStore {
    /// A store remembering at most `capacity` keys, with the system clock.
    pub fn new(capacity: usize) -> Self {
        Self::builder().capacity(capacity).build()
    }

    /// Configures a store.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            capacity: 1_000_000,
            max_retention: Duration::from_secs(7 * 24 * 3600),
            shards: 16,
            clock: Arc::new(SystemClock),
        }
    }

    /// Keys remembered now (done or in flight, including expired ones not yet evicted).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = lock(s);
                s.cur.len() + s.old.len()
            })
            .sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Seconds since the store was built, on the clock's *monotonic* time: a wall-clock step
    /// (NTP, a VM resume) never expires every claim and done marker at once.
    fn now(&self) -> u32 {
        u32::try_from(self.clock.monotonic().as_secs().saturating_sub(self.epoch)).unwrap_or(u32::MAX)
    }

    fn locate(&self, key: &str) -> (Digest, MutexGuard<'_, Shard>) {
        let d = (self.digest.0.hash_one(key), self.digest.1.hash_one(key));
        let shard = &self.shards[(d.1 as usize) & (self.shards.len() - 1)];
        (d, lock(shard))
    }

    /// Claims synchronously (the [`DedupeStore`] methods call these; they never block on I/O).
    fn claim_now(&self, key: &str, lease: Duration) -> Claim {
        let now = self.now();
        let (d, mut s) = self.locate(key);
        self.maybe_rotate(&mut s, now);
        let live = |v: u64| (v >> 32) as u32 > now;
        let answer = |v: u64| if v as u32 == DONE { Claim::Done } else { Claim::InFlight };
        let token = self.token();
        let claimed = pack(expiry(now, lease, self.max_age), token);
        // Entries of the newer generation are overwritten in place, never removed and
        // re-inserted: removals leave tombstones that would make a full table grow.
        if let Some(v) = s.cur.get_mut(&d) {
            if live(*v) {
                return answer(*v);
            }
            *v = claimed;
            return Claim::New(ClaimToken::new(key, u128::from(token)));
        }
        if let Some(&v) = s.old.get(&d) {
            if live(v) {
                return answer(v);
            }
            s.old.remove(&d);
        }
        s.cur.insert(d, claimed);
        Claim::New(ClaimToken::new(key, u128::from(token)))
    }

    /// Completes synchronously: records the outcome unless another copy holds a live claim
    /// on the key or it is already done (the same semantics as the Redis store: a late
    /// completion after the lease expired, with no newer claim, is recorded).
    fn complete_now(&self, token: &ClaimToken, retention: Duration) -> bool {
        let now = self.now();
        let (d, mut s) = self.locate(token.key());
        let held_by_other = s
            .cur
            .get(&d)
            .or_else(|| s.old.get(&d))
            .is_some_and(|&v| (v >> 32) as u32 > now && u128::from(v as u32) != token.token());
        if held_by_other {
            return false;
        }
        let done = pack(expiry(now, retention, self.max_age), DONE);
        // Update in place when the claim is in the newer generation: `HashMap::insert` reserves
        // a slot even for an existing key, which would grow a full table to twice its size.
        if let Some(v) = s.cur.get_mut(&d) {
            *v = done;
            return true;
        }
        s.old.remove(&d);
        self.maybe_rotate(&mut s, now);
        s.cur.insert(d, done);
        true
    }

    /// Releases synchronously. `false` when the token no longer holds a live claim.
    fn release_now(&self, token: &ClaimToken) -> bool {
        let now = self.now();
        let (d, mut s) = self.locate(token.key());
        if !owns(&s, d, token, now) {
            return false;
        }
        // Expire in place (see `claim_now`): a released key is free to claim again.
        if let Some(v) = s.cur.get_mut(&d) {
            *v = 0;
        } else {
            s.old.remove(&d);
        }
        true
    }

    /// Renews synchronously: the claim lasts `lease` from now (never less than it had).
    /// `false` when the token no longer holds a live claim.
    fn renew_now(&self, token: &ClaimToken, lease: Duration) -> bool {
        let now = self.now();
        let (d, mut s) = self.locate(token.key());
        if !owns(&s, d, token, now) {
            return false;
        }
        let until = expiry(now, lease, self.max_age);
        let Shard { cur, old, .. } = &mut *s;
        if let Some(v) = cur.get_mut(&d).or_else(|| old.get_mut(&d)) {
            *v = pack(until.max((*v >> 32) as u32), *v as u32);
        }
        true
    }

    fn token(&self) -> u32 {
        loop {
            let t = self.next_token.fetch_add(1, Ordering::Relaxed);
            if t != DONE {
                return t;
            }
        }
    }

    fn maybe_rotate(&self, s: &mut Shard, now: u32) {
        if s.cur.len() >= self.half_shard || now.saturating_sub(s.cur_started) >= self.max_age {
            std::mem::swap(&mut s.cur, &mut s.old);
            // `clear` keeps the allocation: steady-state memory is two half-shard tables.
            s.cur.clear();
            s.cur_started = now;
        }
    }
}

fn pack(expires: u32, token: u32) -> u64 {
    (u64::from(expires) << 32) | u64::from(token)
}

fn owns(s: &Shard, d: Digest, token: &ClaimToken, now: u32) -> bool {
    let v = s.cur.get(&d).or_else(|| s.old.get(&d)).copied();
    matches!(v, Some(v) if v as u32 != DONE && u128::from(v as u32) == token.token() && (v >> 32) as u32 > now)
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding the lock cannot leave a shard half-updated (every update is one
    // map operation), so a poisoned lock is safe to keep using.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DedupeStore for MemoryStore {
    fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> StoreFuture<'a, Claim> {
        let r = self.claim_now(key, lease);
        Box::pin(std::future::ready(Ok::<_, StoreError>(r)))
    }

    fn complete<'a>(&'a self, token: &'a ClaimToken, retention: Duration) -> StoreFuture<'a, bool> {
        let r = self.complete_now(token, retention);
        Box::pin(std::future::ready(Ok(r)))
    }

    fn release<'a>(&'a self, token: &'a ClaimToken) -> StoreFuture<'a, bool> {
        let r = self.release_now(token);
        Box::pin(std::future::ready(Ok(r)))
    }

    fn abandon(&self, token: ClaimToken) {
        self.release_now(&token);
    }

    fn abandon_complete(&self, token: ClaimToken, retention: Duration) {
        self.complete_now(&token, retention);
    }

    fn renews(&self) -> bool {
        true
    }

    fn renew<'a>(&'a self, token: &'a ClaimToken, lease: Duration) -> StoreFuture<'a, bool> {
        let r = self.renew_now(token, lease);
        Box::pin(std::future::ready(Ok(r)))
    }
}

impl<T: DedupeStore + ?Sized> DedupeStore for Arc<T> {
    fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> StoreFuture<'a, Claim> {
        (**self).claim(key, lease)
    }
    fn complete<'a>(&'a self, token: &'a ClaimToken, retention: Duration) -> StoreFuture<'a, bool> {
        (**self).complete(token, retention)
    }
    fn release<'a>(&'a self, token: &'a ClaimToken) -> StoreFuture<'a, bool> {
        (**self).release(token)
    }
    fn abandon(&self, token: ClaimToken) {
        (**self).abandon(token)
    }
    fn abandon_complete(&self, token: ClaimToken, retention: Duration) {
        (**self).abandon_complete(token, retention)
    }
    fn renews(&self) -> bool {
        (**self).renews()
    }
    fn renew<'a>(&'a self, token: &'a ClaimToken, lease: Duration) -> StoreFuture<'a, bool> {
        (**self).renew(token, lease)
    }
}

/// The in-memory store as other modules' tests need it: claims answered after `claim_pause`
/// (blocking, as a slow store's would), renewals counted.
#[cfg(test)]
pub(crate) struct Observed {
    pub(crate) store: MemoryStore,
    pub(crate) claim_pause: Duration,
    pub(crate) renewals: Arc<AtomicU32>,
}

#[cfg(test)]
impl DedupeStore for Observed {
    fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> StoreFuture<'a, Claim> {
        std::thread::sleep(self.claim_pause);
        self.store.claim(key, lease)
    }
    fn complete<'a>(&'a self, token: &'a ClaimToken, retention: Duration) -> StoreFuture<'a, bool> {
        self.store.complete(token, retention)
    }
    fn release<'a>(&'a self, token: &'a ClaimToken) -> StoreFuture<'a, bool> {
        self.store.release(token)
    }
    fn abandon(&self, token: ClaimToken) {
        self.store.abandon(token)
    }
    fn renews(&self) -> bool {
        true
    }
    fn renew<'a>(&'a self, token: &'a ClaimToken, lease: Duration) -> StoreFuture<'a, bool> {
        self.renewals.fetch_add(1, Ordering::SeqCst);
        self.store.renew(token, lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const L: Duration = Duration::from_secs(30);
    const R: Duration = Duration::from_secs(3600);

    fn store(cap: usize) -> (MemoryStore, ManualClock) {
        let clock = ManualClock::new(1_000_000);
        let s = MemoryStore::builder()
            .capacity(cap)
            .shards(1)
            .max_retention(Duration::from_secs(86_400))
            .clock(clock.clone())
            .build();
        (s, clock)
    }

    fn new(c: Claim) -> ClaimToken {
        match c {
            Claim::New(t) => t,
            other => panic!("expected New, got {other:?}"),
        }
    }

    #[test]
    fn two_phase() {
        let (s, _) = store(100);
        let t = new(s.claim_now("k", L));
        assert_eq!(s.claim_now("k", L), Claim::InFlight);
        assert!(s.release_now(&t));
        let t2 = new(s.claim_now("k", L));
        assert!(!s.complete_now(&t, R), "a released token cannot complete");
        assert!(s.complete_now(&t2, R));
        assert_eq!(s.claim_now("k", L), Claim::Done);
        assert!(!s.release_now(&t2), "done keys are not released");
        assert_eq!(s.claim_now("k", L), Claim::Done);
    }

    /// A clock with millisecond monotonic time.
    #[derive(Debug, Clone, Default)]
    struct Millis(Arc<std::sync::atomic::AtomicU64>);
    impl Clock for Millis {
        fn now_unix(&self) -> u64 {
            1_700_000_000
        }
        fn monotonic(&self) -> Duration {
            Duration::from_millis(self.0.load(std::sync::atomic::Ordering::SeqCst))
        }
    }

    /// The store counts whole seconds; a lease taken late in a second still lasts as long as
    /// asked (a copy arriving within the lease while the handler runs is told "in flight").
    #[test]
    fn a_lease_lasts_at_least_as_long_as_asked() {
        let clock = Millis::default();
        let s = MemoryStore::builder().shards(1).clock(clock.clone()).build();
        for (start, lease_ms) in [(900, 1_000), (999, 1_000), (1_500, 1_500), (2_999, 2_000)] {
            let key = format!("k{start}");
            clock.0.store(start, std::sync::atomic::Ordering::SeqCst);
            let _t = new(s.claim_now(&key, Duration::from_millis(lease_ms)));
            clock.0.store(start + lease_ms - 1, std::sync::atomic::Ordering::SeqCst);
            assert_eq!(
                s.claim_now(&key, L),
                Claim::InFlight,
                "claimed at {start} ms for {lease_ms} ms"
            );
            clock
                .0
                .store(start + lease_ms + 2_000, std::sync::atomic::Ordering::SeqCst);
            assert!(matches!(s.claim_now(&key, L), Claim::New(_)), "expired by then");
        }
    }

    /// A renewed claim lasts a lease from its renewal; only its holder renews it, and a
    /// released or expired claim is not brought back.
    #[test]
    fn a_renewed_claim_outlives_its_first_lease() {
        let clock = Millis::default();
        let s = MemoryStore::builder().shards(1).clock(clock.clone()).build();
        let at = |ms: u64| clock.0.store(ms, std::sync::atomic::Ordering::SeqCst);
        let lease = Duration::from_secs(2);
        let held = new(s.claim_now("k", lease));
        for ms in [1_500, 3_000, 4_500, 6_000] {
            at(ms);
            assert!(s.renew_now(&held, lease), "renewed at {ms} ms");
            assert_eq!(s.claim_now("k", lease), Claim::InFlight, "at {ms} ms");
        }
        at(6_000 + 4_000);
        assert!(
            matches!(s.claim_now("k", lease), Claim::New(_)),
            "expired once not renewed"
        );
        assert!(!s.renew_now(&held, lease), "an expired claim is not brought back");
        let other = new(s.claim_now("k2", lease));
        let forged = ClaimToken::new("k2", other.token() + 1);
        assert!(!s.renew_now(&forged, lease), "only the holder renews");
        assert!(s.release_now(&other));
        assert!(!s.renew_now(&other, lease), "a released claim is not brought back");
    }

    #[test]
    fn lease_expiry_lets_a_retry_in_and_the_late_completion_is_refused() {
        let (s, clock) = store(100);
        let first = new(s.claim_now("k", L));
        clock.advance(31);
        let second = new(s.claim_now("k", L));
        assert!(!s.complete_now(&first, R));
        assert!(!s.release_now(&first));
        assert_eq!(s.claim_now("k", L), Claim::InFlight);
        assert!(s.complete_now(&second, R));
        assert_eq!(s.claim_now("k", L), Claim::Done);
    }

    #[test]
    fn a_late_completion_with_no_newer_claim_is_recorded() {
        let (s, clock) = store(100);
        let first = new(s.claim_now("k", L));
        clock.advance(31);
        assert!(!s.release_now(&first), "an expired claim is no longer held");
        assert!(s.complete_now(&first, R), "nobody else claimed it: the success counts");
        assert_eq!(s.claim_now("k", L), Claim::Done);
    }

    /// A clock whose wall time steps while its monotonic time stands still.
    #[derive(Debug, Clone, Default)]
    struct SteppingWall(Arc<std::sync::atomic::AtomicU64>);
    impl Clock for SteppingWall {
        fn now_unix(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
        fn monotonic(&self) -> Duration {
            Duration::from_secs(500)
        }
    }

    #[test]
    fn a_wall_clock_step_does_not_expire_claims_or_done_markers() {
        let clock = SteppingWall::default();
        clock.0.store(1_700_000_000, Ordering::SeqCst);
        let s = MemoryStore::builder()
            .capacity(100)
            .shards(1)
            .clock(clock.clone())
            .build();
        let t = new(s.claim_now("a", L));
        let done = new(s.claim_now("b", L));
        s.complete_now(&done, R);
        clock.0.fetch_add(365 * 86_400, Ordering::SeqCst);
        assert_eq!(s.claim_now("a", L), Claim::InFlight);
        assert_eq!(s.claim_now("b", L), Claim::Done);
        assert!(s.complete_now(&t, R));
    }

    #[test]
    fn retention_expires() {
        let (s, clock) = store(100);
        let t = new(s.claim_now("k", L));
        s.complete_now(&t, R);
        clock.advance(3600);
        assert_eq!(s.claim_now("k", L), Claim::Done, "at least the retention");
        clock.advance(1);
        assert!(matches!(s.claim_now("k", L), Claim::New(_)), "at most a second more");
    }

    #[test]
    fn table_fit_rounds_down_to_full_tables() {
        assert_eq!(table_fit(31_250), 28_672);
        assert_eq!(table_fit(28_672), 28_672);
        assert_eq!(table_fit(57_344), 57_344);
        assert_eq!(table_fit(3), 3);
        for n in [8, 9, 100, 1000, 12345, 1 << 20] {
            let f = table_fit(n);
            assert!(f <= n && f * 2 > n / 2, "{n} -> {f}");
        }
    }

    #[test]
    fn capacity_bounds_memory_and_evicts_oldest_first() {
        let (s, _) = store(1000);
        for i in 0..100_000 {
            let t = new(s.claim_now(&format!("k{i}"), L));
            s.complete_now(&t, R);
        }
        assert!(s.len() <= 1000, "{}", s.len());
        assert_eq!(s.claim_now("k99999", L), Claim::Done);
        assert!(matches!(s.claim_now("k0", L), Claim::New(_)));
    }

    #[test]
    fn tables_never_grow_past_their_first_size() {
        let (s, _) = store(100_000);
        let cap = |s: &MemoryStore| {
            let sh = lock(&s.shards[0]);
            (sh.cur.capacity(), sh.old.capacity())
        };
        let initial = cap(&s);
        for i in 0..1_000_000 {
            let t = new(s.claim_now(&format!("k{i}"), L));
            if i % 10 == 0 {
                s.release_now(&t);
            } else {
                s.complete_now(&t, R);
            }
        }
        assert_eq!(cap(&s), initial);
    }

    #[test]
    fn time_bounds_memory() {
        let (s, clock) = store(1_000_000);
        for i in 0..100 {
            let t = new(s.claim_now(&format!("k{i}"), L));
            s.complete_now(&t, R);
        }
        clock.advance(2 * 86_400);
        let _ = s.claim_now("x", L);
        clock.advance(86_400);
        let _ = s.claim_now("y", L);
        assert!(s.len() <= 2, "{}", s.len());
    }

    #[test]
    fn concurrent_claims_have_one_winner() {
        let s = Arc::new(MemoryStore::new(10_000));
        let winners: usize = (0..8)
            .map(|_| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    (0..100)
                        .filter(|i| matches!(s.claim_now(&format!("k{i}"), L), Claim::New(_)))
                        .count()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(winners, 100);
    }
}
