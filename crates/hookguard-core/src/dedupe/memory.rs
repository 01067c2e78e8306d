//! The in-memory store: one process, bounded by capacity and by time.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{Claim, ClaimToken, DedupeStore, StoreError, StoreFuture};
use crate::clock::{Clock, SystemClock};

/// Entries per bucket: a bucket is four 64-bit tags then four 64-bit values, one 64-byte cache
/// line, so looking a key up reads two cache lines (its two buckets), both fetched at once.
const WAYS: usize = 4;
/// Words per bucket.
const LINE: usize = 2 * WAYS;
/// Bytes per entry: a tag and a value.
const ENTRY_BYTES: usize = LINE * 8 / WAYS;

/// A value's low 32 bits are the claim token; token 0 means done. Its high 32 bits are the
/// expiry, in seconds since the store's epoch; an entry whose expiry has passed is free.
const DONE: u32 = 0;

/// One lock shard: `buckets` buckets of [`LINE`] words, starting at word `base` of `words` (the
/// allocation is aligned to 8 bytes; `base` aligns the first bucket to a cache line, or to a
/// huge page for a table of one or more, see [`Shard::new`]).
struct Shard {
    words: Vec<u64>,
    base: usize,
    buckets: u32,
}

/// An entry's place: bucket and way.
#[derive(Clone, Copy)]
struct Slot {
    bucket: usize,
    way: usize,
}

/// Where a key lives in its shard: its 64-bit tag (never 0, which marks an empty entry) and its
/// two candidate buckets.
#[derive(Clone, Copy)]
struct Place {
    tag: u64,
    buckets: [usize; 2],
}

/// A thread-safe, bounded, in-memory [`DedupeStore`] for a single receiver process.
///
/// **Layout:** a dedupe key is placed by a 128-bit SipHash of it under a random per-store key
/// (nobody can craft ids that collide: a collision would drop a genuine event as a
/// duplicate). 63 of its bits are the stored tag; the other 64 pick a lock shard and two
/// buckets of four entries, each bucket one 64-byte cache line. A different key is taken for
/// this one only if one of the eight entries of its buckets has the same tag: about one
/// lookup in 10^18. A lookup reads both buckets' lines (independent loads, fetched together),
/// so a claim in a table far larger than the CPU's cache waits for about one memory access,
/// not a chain of them.
///
/// **Capacity:** `capacity` entries (rounded up to whole buckets), allocated once at
/// construction and never grown: 16 bytes per entry, untouched memory not resident. On Linux a
/// shard's table of 2 MiB or more (by default from 524,288 keys) is backed by 2 MiB huge
/// pages where the system allows them, so a lookup does not first walk the page tables; such
/// a table reserves 4 MiB more address space, never touched. An entry
/// whose lease or retention has passed is free for the next key. When both of a new key's
/// buckets hold only live entries, it takes the place of the done key of the eight that
/// expires soonest: the store keeps the most recent keys when a flood exceeds its capacity,
/// and memory stays flat whatever the flood of ids. A claim in flight is never evicted (a copy
/// of its delivery would run beside its handler): when all eight are claims in flight, the
/// claim fails, a store fault the receiver answers `503` + `Retry-After`. A few keys meet
/// two full buckets before the whole table is full (about a dozen of 1,000,000 at half capacity
/// in `BENCHMARKS.md`, each the oldest of its buckets): size the capacity above the keys the
/// retention must hold.
///
/// **Time:** nothing is remembered longer than `max_retention`. Leases and retention are
/// counted on the clock's monotonic time in whole seconds, rounded so that each lasts at least
/// as long as asked.
///
/// Several receiver replicas need a shared store (`hookguard-redis`).
///
/// ```
/// use hookguard_core::dedupe::MemoryStore;
/// let store = MemoryStore::new(100_000);
/// assert_eq!(store.len(), 0);
/// ```
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    /// SipHash key: per store, random (from the standard library's per-process random state).
    key: (u64, u64),
    clock: Arc<dyn Clock>,
    epoch: u64,
    max_age: u32,
    next_token: AtomicU32,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.shards.len())
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
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
    shards: Option<usize>,
    clock: Arc<dyn Clock>,
}

impl MemoryStoreBuilder {
    /// The most keys remembered (default 1,000,000; rounded up to whole buckets of four in
    /// every shard).
    ///
    /// ```
    /// use hookguard_core::dedupe::MemoryStore;
    /// // One shard of 250 buckets of four entries.
    /// let store = MemoryStore::builder().capacity(1_000).shards(1).build();
    /// assert!(format!("{store:?}").contains("capacity: 1000"));
    /// // Rounded up to whole buckets.
    /// let store = MemoryStore::builder().capacity(1_001).shards(1).build();
    /// assert!(format!("{store:?}").contains("capacity: 1004"));
    /// ```
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = n;
        self
    }
    /// The longest a key is remembered, whatever retention a caller asks for (default 7 days).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{clock::ManualClock, dedupe::{Claim, DedupeStore, MemoryStore}, testing::block_on};
    /// let clock = ManualClock::new(0);
    /// let store = MemoryStore::builder().capacity(1_000).max_retention(Duration::from_secs(60)).clock(clock.clone()).build();
    /// let Claim::New(token) = block_on(store.claim("k", Duration::from_secs(10))).unwrap() else { panic!() };
    /// // A day asked for, a minute kept.
    /// assert!(block_on(store.complete(&token, Duration::from_secs(86_400))).unwrap());
    /// clock.advance(30);
    /// assert_eq!(block_on(store.claim("k", Duration::from_secs(10))).unwrap(), Claim::Done);
    /// clock.advance(32);
    /// assert!(matches!(block_on(store.claim("k", Duration::from_secs(10))).unwrap(), Claim::New(_)));
    /// ```
    pub fn max_retention(mut self, d: Duration) -> Self {
        self.max_retention = d;
        self
    }
    /// Lock shards (rounded up to a power of two, at most 1024). By default 16; on Linux fewer
    /// for a capacity of 524,288 to 2,097,151 keys (a table of 8 to 32 MiB), so that each
    /// shard's table is at least one 2 MiB huge page: 4 shards up to 1,048,575 keys (4 for the
    /// default 1,000,000), 8 from 1,048,576. From 2,097,152 keys, 16 shards are each a huge
    /// page or more.
    ///
    /// ```
    /// use hookguard_core::dedupe::MemoryStore;
    /// let store = MemoryStore::builder().capacity(1_000).shards(3).build();
    /// assert!(format!("{store:?}").contains("shards: 4")); // rounded up to a power of two
    /// ```
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = Some(n);
        self
    }
    /// The clock for leases and retention.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{clock::ManualClock, dedupe::{Claim, DedupeStore, MemoryStore}, testing::block_on};
    /// let clock = ManualClock::new(1_700_000_000);
    /// let store = MemoryStore::builder().capacity(1_000).clock(clock.clone()).build();
    /// let lease = Duration::from_secs(30);
    /// assert!(matches!(block_on(store.claim("k", lease)).unwrap(), Claim::New(_)));
    /// assert_eq!(block_on(store.claim("k", lease)).unwrap(), Claim::InFlight);
    /// clock.advance(32); // the lease ran out: the key is free again
    /// assert!(matches!(block_on(store.claim("k", lease)).unwrap(), Claim::New(_)));
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
    /// Builds the store.
    ///
    /// ```
    /// use hookguard_core::dedupe::{DedupeStore, MemoryStore};
    /// let store = MemoryStore::builder().capacity(10_000).build();
    /// assert!(store.is_empty());
    /// assert!(store.renews()); // the claims of running handlers are extended
    /// ```
    pub fn build(self) -> MemoryStore {
        let shards = match self.shards {
            Some(n) => n.clamp(1, 1024).next_power_of_two(),
            None => default_shards(self.capacity),
        };
        let per_shard = self
            .capacity
            .div_ceil(shards)
            .div_ceil(WAYS)
            // Bucket indexes are 32-bit; the words, with the room `Shard::new` adds, must fit an
            // allocation (32-bit targets).
            .clamp(
                1,
                (u32::MAX as usize).min((isize::MAX as usize - 2 * HUGE_PAGE) / (LINE * 8) - 1),
            );
        let epoch = self.clock.monotonic().as_secs();
        MemoryStore {
            shards: (0..shards).map(|_| Mutex::new(Shard::new(per_shard as u32))).collect(),
            key: {
                let random = RandomState::new();
                (random.hash_one(0u64), random.hash_one(1u64))
            },
            clock: self.clock,
            epoch,
            max_age: secs_u32(self.max_retention).max(1),
            next_token: AtomicU32::new(1),
        }
    }
}

impl Shard {
    fn new(buckets: u32) -> Self {
        // Zeroed (every entry empty) and allocated lazily by the system: pages no key has
        // touched are not resident. A table of at least a huge page starts on a huge page's
        // boundary and is followed by room to end on one (two huge pages more, which the store
        // never touches); a smaller one starts on a cache line (one bucket more).
        let table = buckets as usize * LINE;
        let (align, room) = if table * 8 >= HUGE_PAGE {
            (HUGE_PAGE, 2 * HUGE_PAGE / 8)
        } else {
            (64, LINE)
        };
        let words = vec![0u64; table + room];
        let base = (words.as_ptr() as usize).wrapping_neg() % align / 8;
        if align == HUGE_PAGE {
            huge_pages(&words[base..]);
        }
        Shard { words, base, buckets }
    }

    /// The word of `bucket`'s first tag; its values follow its [`WAYS`] tags.
    fn line(&self, bucket: usize) -> usize {
        self.base + bucket * LINE
    }

    fn tag(&self, s: Slot) -> u64 {
        self.words[self.line(s.bucket) + s.way]
    }

    fn value(&self, s: Slot) -> u64 {
        self.words[self.line(s.bucket) + WAYS + s.way]
    }

    fn set(&mut self, s: Slot, tag: u64, value: u64) {
        let at = self.line(s.bucket);
        self.words[at + s.way] = tag;
        self.words[at + WAYS + s.way] = value;
    }

    fn set_value(&mut self, s: Slot, value: u64) {
        let at = self.line(s.bucket);
        self.words[at + WAYS + s.way] = value;
    }

    /// The entry holding `p.tag` (live or expired), in either bucket.
    fn find(&self, p: Place) -> Option<Slot> {
        let line = |b: usize| &self.words[self.line(b)..self.line(b) + WAYS];
        let (first, second) = (line(p.buckets[0]), line(p.buckets[1]));
        let hit = |tags: &[u64]| tags.iter().position(|&t| t == p.tag);
        if let Some(way) = hit(first) {
            return Some(Slot {
                bucket: p.buckets[0],
                way,
            });
        }
        hit(second).map(|way| Slot {
            bucket: p.buckets[1],
            way,
        })
    }

    /// Where a new key goes: a free entry (empty or expired) in the emptier of its buckets;
    /// failing that, the done key of the eight that expires soonest. `None` when all eight
    /// are claims in flight: evicting one would let a copy of its delivery run beside the
    /// handler still running it.
    fn room(&self, p: Place, now: u32) -> Option<Slot> {
        let free = |bucket: usize| {
            (0..WAYS).fold(0u32, |m, way| {
                let s = Slot { bucket, way };
                m | (u32::from(self.tag(s) == 0 || !live(self.value(s), now)) << way)
            })
        };
        let (a, b) = (free(p.buckets[0]), free(p.buckets[1]));
        let (bucket, mask) = if b.count_ones() > a.count_ones() {
            (p.buckets[1], b)
        } else {
            (p.buckets[0], a)
        };
        if mask != 0 {
            return Some(Slot {
                bucket,
                way: mask.trailing_zeros() as usize,
            });
        }
        p.buckets
            .into_iter()
            .flat_map(|bucket| (0..WAYS).map(move |way| Slot { bucket, way }))
            .filter(|&s| self.value(s) as u32 == DONE)
            .min_by_key(|&s| (self.value(s) >> 32) as u32)
    }

    /// Live entries.
    fn live_count(&self, now: u32) -> usize {
        (0..self.buckets as usize)
            .flat_map(|bucket| (0..WAYS).map(move |way| Slot { bucket, way }))
            .filter(|&s| self.tag(s) != 0 && live(self.value(s), now))
            .count()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::builder().build()
    }
}

impl MemoryStore {
    /// A store remembering at most `capacity` keys, with the system clock.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{dedupe::{Claim, DedupeStore, MemoryStore}, testing::block_on};
    /// let store = MemoryStore::new(10_000);
    /// let claim = block_on(store.claim("github:3f2a", Duration::from_secs(30))).unwrap();
    /// assert!(matches!(claim, Claim::New(_)));
    /// assert_eq!(store.len(), 1);
    /// ```
    pub fn new(capacity: usize) -> Self {
        Self::builder().capacity(capacity).build()
    }

    /// Configures a store.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::dedupe::MemoryStore;
    /// let store = MemoryStore::builder()
    ///     .capacity(50_000)
    ///     .max_retention(Duration::from_secs(3 * 24 * 3600))
    ///     .build();
    /// assert!(store.is_empty());
    /// ```
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            capacity: 1_000_000,
            max_retention: Duration::from_secs(7 * 24 * 3600),
            shards: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// Keys remembered now: done, or claimed and in flight (expired entries are free). Walks
    /// the whole table (for tests and monitoring, not for every request).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{dedupe::{Claim, DedupeStore, MemoryStore}, testing::block_on};
    /// let store = MemoryStore::new(1_000);
    /// assert_eq!(store.len(), 0);
    /// let Claim::New(token) = block_on(store.claim("a", Duration::from_secs(30))).unwrap() else { panic!() };
    /// block_on(store.claim("b", Duration::from_secs(30))).unwrap();
    /// assert_eq!(store.len(), 2); // two claims in flight
    /// assert!(block_on(store.release(&token)).unwrap());
    /// assert_eq!(store.len(), 1); // a released key is forgotten
    /// ```
    pub fn len(&self) -> usize {
        let now = self.now();
        self.shards.iter().map(|s| lock(s).live_count(now)).sum()
    }

    /// Whether nothing is remembered.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{dedupe::{DedupeStore, MemoryStore}, testing::block_on};
    /// let store = MemoryStore::new(1_000);
    /// assert!(store.is_empty());
    /// block_on(store.claim("a", Duration::from_secs(30))).unwrap();
    /// assert!(!store.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys the store remembers (the builder's capacity rounded up to whole buckets).
    fn capacity(&self) -> usize {
        self.shards.iter().map(|s| lock(s).buckets as usize * WAYS).sum()
    }

    /// Seconds since the store was built, on the clock's *monotonic* time: a wall-clock step
    /// (NTP, a VM resume) never expires every claim and done marker at once.
    fn now(&self) -> u32 {
        u32::try_from(self.clock.monotonic().as_secs().saturating_sub(self.epoch)).unwrap_or(u32::MAX)
    }

    fn locate(&self, key: &str) -> (Place, MutexGuard<'_, Shard>) {
        let (tag, h) = sip::<1, 3, true>(self.key, key.as_bytes());
        let tag = tag | 1;
        // The top bits pick the shard, two 32-bit windows of the rest the buckets (multiply and
        // shift: uniform over any bucket count, no modulo).
        let shard = lock(&self.shards[(h >> 54) as usize & (self.shards.len() - 1)]);
        let n = u64::from(shard.buckets);
        let pick = |x: u64| (((x & 0xffff_ffff) * n) >> 32) as usize;
        let place = Place {
            tag,
            buckets: [pick(h), pick(h >> 22)],
        };
        (place, shard)
    }

    /// Claims synchronously (the [`DedupeStore`] methods call these; they never block on I/O).
    /// `Err` when the key's entries all hold claims in flight (a retryable store fault: the
    /// capacity is too small for the deliveries handled at once).
    fn try_claim_now(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        let now = self.now();
        let (p, mut s) = self.locate(key);
        let slot = match s.find(p) {
            Some(slot) => {
                let v = s.value(slot);
                if live(v, now) {
                    return Ok(if v as u32 == DONE { Claim::Done } else { Claim::InFlight });
                }
                slot
            }
            None => s.room(p, now).ok_or_else(|| {
                StoreError::msg(
                    "the in-memory store is full of deliveries in flight where this key goes: its capacity is too small for the deliveries handled at once",
                )
            })?,
        };
        let token = self.token();
        // A lease is not a retention: `max_retention` bounds what is remembered, not how
        // long a running handler holds its key (copies meanwhile are told "in flight").
        s.set(slot, p.tag, pack(expiry(now, lease, u32::MAX), token));
        Ok(Claim::New(ClaimToken::new(key, u128::from(token))))
    }

    /// [`try_claim_now`](Self::try_claim_now) where a test knows there is room.
    #[cfg(test)]
    fn claim_now(&self, key: &str, lease: Duration) -> Claim {
        self.try_claim_now(key, lease).expect("room for the claim")
    }

    /// Completes synchronously: records the outcome unless another copy holds a live claim
    /// on the key or it is already done (the same semantics as the Redis store: a late
    /// completion after the lease expired, with no newer claim, is recorded).
    fn complete_now(&self, token: &ClaimToken, retention: Duration) -> bool {
        let now = self.now();
        let done = pack(expiry(now, retention, self.max_age), DONE);
        let (p, mut s) = self.locate(token.key());
        match s.find(p) {
            Some(slot) => {
                let v = s.value(slot);
                if live(v, now) && u128::from(v as u32) != token.token() {
                    return false;
                }
                s.set_value(slot, done);
            }
            None => {
                // No room beside claims in flight: the done mark is not kept (a copy would
                // run the handler again, as after the retention).
                let Some(slot) = s.room(p, now) else {
                    return false;
                };
                s.set(slot, p.tag, done);
            }
        }
        true
    }

    /// Releases synchronously. `false` when the token no longer holds a live claim.
    fn release_now(&self, token: &ClaimToken) -> bool {
        let now = self.now();
        let (p, mut s) = self.locate(token.key());
        match owned(&s, p, token, now) {
            Some(slot) => {
                // A released key is free to claim again.
                s.set(slot, 0, 0);
                true
            }
            None => false,
        }
    }

    /// Renews synchronously: the claim lasts `lease` from now (never less than it had).
    /// `false` when the token no longer holds a live claim.
    fn renew_now(&self, token: &ClaimToken, lease: Duration) -> bool {
        let now = self.now();
        let (p, mut s) = self.locate(token.key());
        match owned(&s, p, token, now) {
            Some(slot) => {
                let v = s.value(slot);
                let until = expiry(now, lease, u32::MAX).max((v >> 32) as u32);
                s.set_value(slot, pack(until, v as u32));
                true
            }
            None => false,
        }
    }

    fn token(&self) -> u32 {
        loop {
            let t = self.next_token.fetch_add(1, Ordering::Relaxed);
            if t != DONE {
                return t;
            }
        }
    }
}

/// The size of a transparent huge page on x86-64 and (with 4 KiB base pages) AArch64.
const HUGE_PAGE: usize = 2 << 20;

/// The default lock shards for `capacity` keys: 16, and on Linux halved while a shard's table
/// would be smaller than a huge page, down to 4 (at 16 bytes an entry, a table of 8 MiB or
/// more). Elsewhere no huge pages are asked for, so fewer locks would gain nothing.
fn default_shards(capacity: usize) -> usize {
    if cfg!(not(target_os = "linux")) {
        return 16;
    }
    let bytes = capacity.saturating_mul(ENTRY_BYTES);
    let mut shards = 16;
    while shards > 4 && bytes / shards < HUGE_PAGE && bytes >= 4 * HUGE_PAGE {
        shards /= 2;
    }
    shards
}

/// Asks Linux to back the table with transparent huge pages (2 MiB), where the system allows
/// them on request (`/sys/kernel/mm/transparent_hugepage/enabled` at `madvise` or `always`).
///
/// A lookup lands on a random line of a table far larger than the CPU's address cache (a
/// 1,000,000-key store is 16 MiB; a TLB holds a few thousand 4 KiB pages): with small pages
/// nearly every claim first walks the page tables, which under a virtual machine's nested
/// paging costs more than the line itself. Only whole 2 MiB-aligned stretches are advised (a
/// shard's table of a huge page or more is placed to start on one). The memory stays zeroed
/// and lazily allocated, but in 2 MiB steps: a large store holding a few keys is resident in
/// up to one huge page per key touched. Elsewhere, or when the kernel refuses, nothing
/// changes. The advice is not taken back when the store is dropped (Linux has no way to
/// return a range to the system's default): should the allocator reuse that memory, it
/// keeps huge pages.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn huge_pages(words: &[u64]) {
    // The C library's `madvise(2)`, which the standard library already links on Linux;
    // declared here rather than through the `libc` crate, which would add a crate and about a
    // third of a second to the core's cold build for one call. `MADV_HUGEPAGE` is 14 in
    // Linux's generic `mman-common.h` and in every architecture's own `mman.h` that Rust
    // builds for (a wrong value would be refused, EINVAL, not misread; the unit test
    // `a_large_table_is_placed_and_advised_for_huge_pages` checks that it took).
    extern "C" {
        fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: std::ffi::c_int) -> std::ffi::c_int;
    }
    const MADV_HUGEPAGE: std::ffi::c_int = 14;
    let start = words.as_ptr() as usize;
    let end = start + std::mem::size_of_val(words);
    let from = start.next_multiple_of(HUGE_PAGE);
    let to = end / HUGE_PAGE * HUGE_PAGE;
    if to > from {
        // SAFETY: `from..to` lies inside `words`' own allocation (rounded inwards to whole
        // huge pages), which lives for this call; MADV_HUGEPAGE only changes how the kernel
        // backs those pages, never their contents or their mapping, so no reference into the
        // vector is affected. A failure (THP disabled, an old kernel) leaves small pages.
        unsafe {
            madvise(from as *mut std::ffi::c_void, to - from, MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn huge_pages(_: &[u64]) {}

fn secs_u32(d: Duration) -> u32 {
    // Round up: a lease of 1.5 s counts as 2 s, never 1.
    let s = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    u32::try_from(s).unwrap_or(u32::MAX)
}

/// The expiry of something lasting `d` from `now` (whole seconds, rounded down): one second
/// more than `d` rounded up, for the part of the current second already gone — a lease or a
/// retention lasts at least as long as asked, at most a second and a bit longer.
fn expiry(now: u32, d: Duration, max_age: u32) -> u32 {
    now.saturating_add(secs_u32(d).min(max_age)).saturating_add(1)
}

fn pack(expires: u32, token: u32) -> u64 {
    (u64::from(expires) << 32) | u64::from(token)
}

fn live(v: u64, now: u32) -> bool {
    (v >> 32) as u32 > now
}

/// The entry `token` holds a live claim on, if it still does.
fn owned(s: &Shard, p: Place, token: &ClaimToken, now: u32) -> Option<Slot> {
    let slot = s.find(p)?;
    let v = s.value(slot);
    (v as u32 != DONE && u128::from(v as u32) == token.token() && live(v, now)).then_some(slot)
}

/// SipHash (Aumasson and Bernstein) with `C` compression and `D` finalization rounds of `m`
/// under key `k`: the 64-bit output in the first word, or with `WIDE` the 128-bit variant (two
/// words, the first eight bytes of its output in the first). SipHash-1-3-128 places a key: one
/// pass for its tag and its buckets, where two keyed 64-bit hashes took two.
fn sip<const C: usize, const D: usize, const WIDE: bool>(k: (u64, u64), m: &[u8]) -> (u64, u64) {
    let mut v = [
        k.0 ^ 0x736f_6d65_7073_6575,
        k.1 ^ 0x646f_7261_6e64_6f6d ^ if WIDE { 0xee } else { 0 },
        k.0 ^ 0x6c79_6765_6e65_7261,
        k.1 ^ 0x7465_6462_7974_6573,
    ];
    let round = |v: &mut [u64; 4]| {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    };
    let compress = |v: &mut [u64; 4], w: u64| {
        v[3] ^= w;
        for _ in 0..C {
            round(v);
        }
        v[0] ^= w;
    };
    let words = m.chunks_exact(8);
    let tail = words.remainder();
    for w in words {
        compress(&mut v, u64::from_le_bytes(w.try_into().unwrap_or_default()));
    }
    let mut last = [0u8; 8];
    last[..tail.len()].copy_from_slice(tail);
    compress(&mut v, u64::from_le_bytes(last) | (m.len() as u64) << 56);
    let finish = |v: &mut [u64; 4], x: u64| {
        v[2] ^= x;
        for _ in 0..D {
            round(v);
        }
        v[0] ^ v[1] ^ v[2] ^ v[3]
    };
    let first = finish(&mut v, if WIDE { 0xee } else { 0xff });
    if !WIDE {
        return (first, 0);
    }
    v[1] ^= 0xdd;
    (first, finish(&mut v, 0))
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding the lock cannot leave a shard half-updated (every update writes
    // one entry), so a poisoned lock is safe to keep using.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DedupeStore for MemoryStore {
    fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> StoreFuture<'a, Claim> {
        Box::pin(std::future::ready(self.try_claim_now(key, lease)))
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

    fn claim_at_once(&self, key: &str, lease: Duration) -> Option<Result<Claim, StoreError>> {
        Some(self.try_claim_now(key, lease))
    }

    fn complete_at_once(&self, token: &ClaimToken, retention: Duration) -> Option<Result<bool, StoreError>> {
        Some(Ok(self.complete_now(token, retention)))
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
    fn claim_at_once(&self, key: &str, lease: Duration) -> Option<Result<Claim, StoreError>> {
        (**self).claim_at_once(key, lease)
    }
    fn complete_at_once(&self, token: &ClaimToken, retention: Duration) -> Option<Result<bool, StoreError>> {
        (**self).complete_at_once(token, retention)
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
    /// How long a completion or a release takes.
    pub(crate) settle_pause: Duration,
    pub(crate) renewals: Arc<AtomicU32>,
}

#[cfg(test)]
impl DedupeStore for Observed {
    fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> StoreFuture<'a, Claim> {
        std::thread::sleep(self.claim_pause);
        self.store.claim(key, lease)
    }
    fn complete<'a>(&'a self, token: &'a ClaimToken, retention: Duration) -> StoreFuture<'a, bool> {
        std::thread::sleep(self.settle_pause);
        self.store.complete(token, retention)
    }
    fn release<'a>(&'a self, token: &'a ClaimToken) -> StoreFuture<'a, bool> {
        std::thread::sleep(self.settle_pause);
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

    /// Fewer shards only for tables of 8 MiB and more, each then at least a huge page.
    #[cfg(target_os = "linux")]
    #[test]
    fn default_shards_give_each_large_table_whole_huge_pages() {
        for (capacity, shards) in [
            (1_000, 16),
            (100_000, 16),
            (524_287, 16),
            (524_288, 4),
            (600_000, 4),
            (1_000_000, 4),
            (2_000_000, 8),
            (4_000_000, 16),
            (usize::MAX, 16),
        ] {
            assert_eq!(default_shards(capacity), shards, "{capacity}");
        }
        let s = MemoryStore::builder().capacity(1_000_000).build();
        assert_eq!(s.shards.len(), 4);
        assert_eq!(
            MemoryStore::builder()
                .capacity(1_000_000)
                .shards(3)
                .build()
                .shards
                .len(),
            4
        );
    }

    /// A shard's table of a huge page or more starts on a huge page and is advised as huge
    /// pages (the VMA's `hg` flag in `/proc/self/smaps`); a smaller one starts on a cache line.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_large_table_is_placed_and_advised_for_huge_pages() {
        if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
            eprintln!("skipped: this kernel has no transparent huge pages");
            return;
        }
        let big = MemoryStore::builder().capacity(1_000_000).build();
        let small = MemoryStore::builder().capacity(1_000).build();
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        // The `VmFlags` line of the mapping holding `at`.
        let flags = |at: usize| {
            let mut inside = false;
            for line in smaps.lines() {
                if let Some((range, _)) = line.split_once(' ') {
                    if let Some((a, b)) = range.split_once('-') {
                        if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                            inside = (a..b).contains(&at);
                            continue;
                        }
                    }
                }
                if inside {
                    if let Some(f) = line.strip_prefix("VmFlags:") {
                        return f.to_owned();
                    }
                }
            }
            panic!("no mapping holds {at:#x}");
        };
        for shard in big.shards.iter() {
            let s = lock(shard);
            let at = s.words.as_ptr() as usize + s.base * 8;
            assert_eq!(at % HUGE_PAGE, 0, "starts on a huge page");
            assert!(s.words.len() >= s.base + s.buckets as usize * LINE, "the table fits");
            assert!(
                flags(at).split_whitespace().any(|f| f == "hg"),
                "advised: {}",
                flags(at)
            );
        }
        let s = lock(&small.shards[0]);
        assert_eq!((s.words.as_ptr() as usize + s.base * 8) % 64, 0, "starts on a line");
        assert_eq!(s.words.len(), (s.buckets as usize + 1) * LINE);
    }

    /// The SipHash above against the reference implementation's 128-bit vectors (key 00..0f,
    /// message 00..len-1) and, for the 64-bit output over messages of every length up to 100,
    /// against the standard library's SipHash-2-4.
    #[test]
    fn siphash_matches_the_reference() {
        let key = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        let msg: Vec<u8> = (0..100).collect();
        let wide = [
            (0, "a3817f04ba25a8e66df67214c7550293"),
            (1, "da87c1d86b99af44347659119b22fc45"),
            (2, "8177228da4a45dc7fca38bdef60affe4"),
            (3, "9c70b60c5267a94e5f33b6b02985ed51"),
            (4, "f88164c12d9c8faf7d0f6e7c7bcd5579"),
            (15, "5493e99933b0a8117e08ec0f97cfc3d9"),
        ];
        for (len, want) in wide {
            let (a, b) = sip::<2, 4, true>(key, &msg[..len]);
            let got: String = [a.to_le_bytes(), b.to_le_bytes()]
                .concat()
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect();
            assert_eq!(got, want, "length {len}");
        }
        for len in 0..=100 {
            #[allow(deprecated)]
            let mut std = std::hash::SipHasher::new_with_keys(key.0, key.1);
            std::hash::Hasher::write(&mut std, &msg[..len]);
            assert_eq!(
                sip::<2, 4, false>(key, &msg[..len]).0,
                std::hash::Hasher::finish(&std),
                "length {len}"
            );
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

    /// A token counts only for its own key and its whole value: one made for another key, or
    /// with other high bits, changes nothing of the claim it copies.
    #[test]
    fn a_token_counts_only_for_its_own_key_and_value() {
        let (s, _) = store(100);
        let a = new(s.claim_now("a", L));
        let crossed = ClaimToken::new("b", a.token());
        assert!(
            s.complete_now(&crossed, R),
            "b had no claim: its completion is recorded"
        );
        assert_eq!(s.claim_now("a", L), Claim::InFlight);
        assert_eq!(s.claim_now("b", L), Claim::Done);
        let high = ClaimToken::new("a", (1 << 64) | a.token());
        assert!(!s.release_now(&high));
        assert!(!s.renew_now(&high, L));
        assert!(!s.complete_now(&high, R));
        assert_eq!(s.claim_now("a", L), Claim::InFlight);
        assert!(s.complete_now(&a, R));
    }

    /// `Duration::MAX` as a retention (or a lease) is "as long as can be counted", not an
    /// overflow (a panic in debug builds, about a second in release ones).
    #[test]
    fn unbounded_durations_are_the_longest_counted() {
        let s = MemoryStore::builder().max_retention(Duration::MAX).shards(1).build();
        let t = new(s.claim_now("k", Duration::MAX));
        assert_eq!(s.claim_now("k", L), Claim::InFlight);
        assert!(s.complete_now(&t, Duration::MAX));
        assert_eq!(s.claim_now("k", L), Claim::Done);
    }

    /// `max_retention` bounds how long a key is remembered, not a running handler's lease: a
    /// copy 10 s into a 30 s lease is told "in flight" also when keys are kept only 5 s.
    #[test]
    fn a_short_retention_does_not_shorten_a_lease() {
        let clock = Millis::default();
        let s = MemoryStore::builder()
            .max_retention(Duration::from_secs(5))
            .shards(1)
            .clock(clock.clone())
            .build();
        let t = new(s.claim_now("k", Duration::from_secs(30)));
        clock.0.store(10_000, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(s.claim_now("k", L), Claim::InFlight);
        assert!(s.renew_now(&t, Duration::from_secs(30)));
        clock.0.store(35_000, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(s.claim_now("k", L), Claim::InFlight, "renewed");
        // The retention itself is still bounded: done, then forgotten after 5 s.
        assert!(s.complete_now(&t, Duration::from_secs(3600)));
        clock.0.store(42_000, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(s.claim_now("k", L), Claim::New(_)));
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

    /// Past capacity, a new key replaces the soonest-expiring entry of its two buckets: the
    /// most recent keys are remembered, the oldest forgotten first, and the table never grows.
    #[test]
    fn capacity_bounds_memory_and_evicts_oldest_first() {
        let (s, clock) = store(1000);
        let words = lock(&s.shards[0]).words.len();
        assert_eq!(s.capacity(), 1000);
        for i in 0..20_000 {
            if i % 100 == 0 {
                clock.advance(1);
            }
            let t = new(s.claim_now(&format!("k{i}"), L));
            assert!(s.complete_now(&t, R));
        }
        assert!(s.len() <= 1000, "{}", s.len());
        assert_eq!(lock(&s.shards[0]).words.len(), words, "allocated once");
        let done = |range: std::ops::Range<i32>| {
            range
                .filter(|i| matches!(s.try_claim_now(&format!("k{i}"), L), Ok(Claim::Done)))
                .count()
        };
        // The newest 500 (half the capacity) are remembered, nearly all of the oldest 10,000
        // forgotten.
        assert!(done(19_500..20_000) >= 490, "{}", done(19_500..20_000));
        assert_eq!(done(0..10_000), 0);
    }

    /// When every entry a key may take holds a claim in flight, the claim is refused (a
    /// retryable store fault) instead of evicting one: its delivery's copy would run beside
    /// the handler still running it.
    #[test]
    fn a_claim_never_evicts_a_claim_in_flight() {
        let (s, _) = store(4);
        assert_eq!(s.capacity(), 4, "one bucket: both of a key's choices");
        // Fill both buckets of one key with claims in flight: claim keys until one is refused.
        let mut held = Vec::new();
        let refused = (0..10_000).find_map(|i| {
            let key = format!("f{i}");
            match s.try_claim_now(&key, L) {
                Ok(Claim::New(t)) => {
                    held.push((key, t));
                    None
                }
                Ok(other) => panic!("{key}: {other:?}"),
                Err(e) => Some((key, e)),
            }
        });
        let (key, e) = refused.expect("a key whose two buckets are full of claims");
        assert!(e.to_string().contains("in flight"), "{e}");
        for (k, t) in &held {
            assert_eq!(s.claim_now(k, L), Claim::InFlight, "{k} lost its claim to {key}");
            assert!(s.complete_now(t, R));
        }
        // Done keys give way.
        assert!(matches!(s.try_claim_now(&key, L), Ok(Claim::New(_))));
    }

    /// A done key is evicted before a claim in flight, whatever their expiries.
    #[test]
    fn claims_in_flight_outlast_done_keys() {
        let (s, clock) = store(8);
        // Leases far shorter than the done keys' retention: by expiry alone they would go first.
        // Three claims, fewer than a bucket's four entries: whatever buckets the store's random
        // key gives them, every pair of buckets keeps a done key to give way (with four, all
        // four could share the one bucket some key's two choices both name).
        let held: Vec<_> = (0..3).map(|i| new(s.claim_now(&format!("f{i}"), L))).collect();
        for i in 0..10_000 {
            if i % 1000 == 0 {
                clock.advance(1);
            }
            let t = new(s.claim_now(&format!("d{i}"), L));
            s.complete_now(&t, R);
        }
        for (i, t) in held.iter().enumerate() {
            assert_eq!(s.claim_now(&format!("f{i}"), L), Claim::InFlight, "f{i}");
            assert!(s.complete_now(t, R));
        }
    }

    /// The store against a model of its semantics (a map of key → expiry and token), below
    /// capacity, where nothing is evicted: every answer and `len()` agree.
    mod model {
        use super::*;
        use proptest::prelude::*;
        use std::collections::HashMap;

        #[derive(Debug, Clone)]
        enum Op {
            Claim(u8, u8),
            Complete(u8, u8, u8),
            Release(u8, u8),
            Renew(u8, u8, u8),
            Advance(u8),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (0u8..24, 1u8..20).prop_map(|(k, l)| Op::Claim(k, l)),
                (0u8..24, 1u8..40, any::<u8>()).prop_map(|(k, r, p)| Op::Complete(k, r, p)),
                (0u8..24, any::<u8>()).prop_map(|(k, p)| Op::Release(k, p)),
                (0u8..24, 1u8..20, any::<u8>()).prop_map(|(k, l, p)| Op::Renew(k, l, p)),
                (0u8..30).prop_map(Op::Advance),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]
            #[test]
            fn agrees_with_the_model(ops in proptest::collection::vec(op(), 1..300)) {
                let (s, clock) = store(1000);
                let mut now = 0u32;
                // key → (expiry, token); token 0 = done.
                let mut m: HashMap<u8, (u32, u32)> = HashMap::new();
                // Every token handed out per key (stale ones included); ops pick one.
                let mut tokens: HashMap<u8, Vec<ClaimToken>> = HashMap::new();
                let pick = |tokens: &HashMap<u8, Vec<ClaimToken>>, k: u8, p: u8| {
                    tokens.get(&k).map(|v| v[usize::from(p) % v.len()].clone())
                };
                let secs = |n: u8| Duration::from_secs(u64::from(n));
                let exp = |now: u32, n: u8| now + u32::from(n) + 1;
                for o in ops {
                    match o {
                        Op::Claim(k, l) => {
                            let got = s.claim_now(&format!("k{k}"), secs(l));
                            match m.get(&k) {
                                Some(&(e, t)) if e > now => {
                                    let want = if t == 0 { Claim::Done } else { Claim::InFlight };
                                    prop_assert_eq!(got, want);
                                }
                                _ => {
                                    let Claim::New(tok) = got else { return Err(TestCaseError::fail("expected New")) };
                                    m.insert(k, (exp(now, l), tok.token() as u32));
                                    tokens.entry(k).or_default().push(tok);
                                }
                            }
                        }
                        Op::Complete(k, r, p) => {
                            let Some(tok) = pick(&tokens, k, p) else { continue };
                            let want = !matches!(m.get(&k), Some(&(e, t)) if e > now && u128::from(t) != tok.token());
                            prop_assert_eq!(s.complete_now(&tok, secs(r)), want);
                            if want {
                                m.insert(k, (exp(now, r), 0));
                            }
                        }
                        Op::Release(k, p) => {
                            let Some(tok) = pick(&tokens, k, p) else { continue };
                            let want = matches!(m.get(&k), Some(&(e, t)) if e > now && t != 0 && u128::from(t) == tok.token());
                            prop_assert_eq!(s.release_now(&tok), want);
                            if want {
                                m.remove(&k);
                            }
                        }
                        Op::Renew(k, l, p) => {
                            let Some(tok) = pick(&tokens, k, p) else { continue };
                            let want = matches!(m.get(&k), Some(&(e, t)) if e > now && t != 0 && u128::from(t) == tok.token());
                            prop_assert_eq!(s.renew_now(&tok, secs(l)), want);
                            if want {
                                let e = m[&k].0.max(exp(now, l));
                                m.insert(k, (e, m[&k].1));
                            }
                        }
                        Op::Advance(n) => {
                            clock.advance(u64::from(n));
                            now += u32::from(n);
                        }
                    }
                    let live = m.values().filter(|&&(e, _)| e > now).count();
                    prop_assert_eq!(s.len(), live);
                }
            }
        }
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
