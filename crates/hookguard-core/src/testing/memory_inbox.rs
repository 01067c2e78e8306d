//! [`MemoryInbox`]: the inbox contract kept in memory, for tests.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::inbox::{
    now_ms, Accepted, ClaimRef, ClaimedItem, InboxError, InboxFuture, InboxRecord, InboxState, InboxStats, InboxStore,
    ListFilter, NewItem, DEFAULT_MAX_PENDING,
};
use crate::DedupeScope;

/// An [`InboxStore`] that keeps its items in memory, with the contract of the SQLite and
/// PostgreSQL inboxes: insert-if-absent on `(provider, dedupe key)` (a [`DedupeScope::Retained`]
/// key until the item is purged, a [`DedupeScope::WhileInFlight`] key only until the item is
/// claimed), a copy of a dead item running it again, leases that expire, answers about a claim
/// refused once that claim no longer holds its item, a cap on pending items, `list`, `get`,
/// `replay`, `purge`, `stats`, and a wake-up of waiting workers on each accept and replay.
///
/// [`stats`](InboxStore::stats) reports no `disk_bytes` (nothing is on disk).
///
/// **Not durable: for tests only.** Whatever it holds is lost with the process, so a receiver
/// built on it answers `200 accepted` for deliveries nothing will keep: use
/// `hookguard-sqlite` or `hookguard-postgres` in production. Done and dead items stay until
/// [`purge`](InboxStore::purge)d, as in the real stores; nothing purges them on a schedule.
///
/// ```
/// use std::time::Duration;
/// use hookguard_core::inbox::{Accepted, InboxState, InboxStore, NewItem};
/// use hookguard_core::testing::{block_on, MemoryInbox};
/// let inbox = MemoryInbox::default();
/// let item = || NewItem::from_parts("buildworkpro", Some("evt_1".into()), bytes::Bytes::from_static(b"{}"));
/// assert_eq!(block_on(inbox.accept(item())).unwrap(), Accepted::Stored(1));
/// assert_eq!(block_on(inbox.accept(item())).unwrap(), Accepted::Duplicate(1));
/// let claimed = block_on(inbox.claim(1_000, Duration::from_secs(60), 10)).unwrap();
/// assert!(block_on(inbox.complete(claimed[0].claim(), 2_000)).unwrap());
/// assert_eq!(block_on(inbox.get(1)).unwrap().unwrap().state, InboxState::Done);
/// ```
#[derive(Clone, Debug)]
pub struct MemoryInbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    max_pending: u64,
    state: Mutex<State>,
    wake: Wake,
}

#[derive(Debug, Default)]
struct State {
    items: BTreeMap<i64, Item>,
    /// `(provider, key)` → the item holding that key.
    keys: HashMap<(String, String), i64>,
    last_id: i64,
    /// Pending and running items.
    live: u64,
}

#[derive(Debug)]
struct Item {
    record: InboxRecord,
    scope: DedupeScope,
    /// Whether this item holds its key in `keys`.
    holds_key: bool,
}

impl Default for MemoryInbox {
    fn default() -> Self {
        Self::with_max_pending(DEFAULT_MAX_PENDING)
    }
}

impl MemoryInbox {
    /// An empty inbox refusing new items ([`InboxError::Full`]) once `max_pending` items are
    /// pending or running (the real stores' default is
    /// [`DEFAULT_MAX_PENDING`]).
    ///
    /// ```
    /// use hookguard_core::inbox::{InboxError, InboxStore, NewItem};
    /// use hookguard_core::testing::{block_on, MemoryInbox};
    /// let inbox = MemoryInbox::with_max_pending(1);
    /// let item = |id: &str| NewItem::from_parts("procore", Some(id.into()), bytes::Bytes::from_static(b"{}"));
    /// block_on(inbox.accept(item("1"))).unwrap();
    /// assert!(matches!(block_on(inbox.accept(item("2"))), Err(InboxError::Full { limit: 1 })));
    /// ```
    pub fn with_max_pending(max_pending: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                max_pending,
                state: Mutex::new(State::default()),
                wake: Wake::default(),
            }),
        }
    }

    /// Every item, oldest first, with its headers and body: what a test looks at after a run.
    ///
    /// ```
    /// use hookguard_core::inbox::{InboxState, InboxStore, NewItem};
    /// use hookguard_core::testing::{block_on, MemoryInbox};
    /// let inbox = MemoryInbox::default();
    /// block_on(inbox.accept(NewItem::from_parts("hcss", None, bytes::Bytes::from_static(b"{}")))).unwrap();
    /// let all = inbox.items();
    /// assert_eq!(all.len(), 1);
    /// assert_eq!((all[0].state, all[0].body.as_deref()), (InboxState::Pending, Some(&b"{}"[..])));
    /// ```
    pub fn items(&self) -> Vec<InboxRecord> {
        self.lock().items.values().map(|i| i.record.clone()).collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// The item `claim` names, while that claim still holds it.
    fn held(&mut self, claim: ClaimRef) -> Option<&mut Item> {
        self.items.get_mut(&claim.id).filter(|i| {
            i.record.state == InboxState::Running
                && i.record.attempts == claim.attempt
                && i.record.next_attempt_at_ms == claim.lease_until_ms
        })
    }

    /// Pending again, due at `due`, attempts reset; an in-flight-only key held again unless a
    /// newer copy holds it. Whether the item was finished (one more live item).
    fn replay(&mut self, id: i64, due: i64) -> Result<bool, InboxError> {
        let item = self.items.get_mut(&id).ok_or(InboxError::NotFound(id))?;
        let state = item.record.state;
        if state == InboxState::Running {
            return Err(InboxError::WrongState {
                id,
                state,
                expected: "done, dead or pending",
            });
        }
        let r = &mut item.record;
        r.state = InboxState::Pending;
        r.attempts = 0;
        r.next_attempt_at_ms = due;
        r.finished_at_ms = None;
        r.last_error = None;
        if !item.holds_key {
            if let Some(key) = r.dedupe_key.clone() {
                let slot = (r.provider.clone(), key);
                if let std::collections::hash_map::Entry::Vacant(v) = self.keys.entry(slot) {
                    v.insert(id);
                    item.holds_key = true;
                }
            }
        }
        let finished = state != InboxState::Pending;
        self.live += u64::from(finished);
        Ok(finished)
    }

    /// Forgets the key an in-flight-only item holds (it was claimed).
    fn forget_in_flight_key(&mut self, id: i64) {
        let Some(item) = self.items.get_mut(&id) else { return };
        if item.scope == DedupeScope::WhileInFlight && item.holds_key {
            item.holds_key = false;
            if let Some(key) = item.record.dedupe_key.clone() {
                self.keys.remove(&(item.record.provider.clone(), key));
            }
        }
    }

    fn accept(&mut self, item: NewItem, max_pending: u64) -> Result<(Accepted, bool), InboxError> {
        let slot = item.dedupe_key.clone().map(|k| (item.provider.clone(), k));
        let holder = slot.as_ref().and_then(|s| self.keys.get(s).copied());
        let dead = |s: &Self, id: i64| s.items.get(&id).is_some_and(|i| i.record.state == InboxState::Dead);
        match holder {
            Some(id) if !dead(self, id) => return Ok((Accepted::Duplicate(id), false)),
            _ if self.live >= max_pending => return Err(InboxError::Full { limit: max_pending }),
            // The sender sent a dead item's event again: it runs again, due at this arrival.
            Some(id) => {
                self.replay(id, item.received_at_ms)?;
                return Ok((Accepted::Stored(id), true));
            }
            None => {}
        }
        self.last_id += 1;
        let id = self.last_id;
        let mut record = InboxRecord::empty(id, item.provider);
        record.dedupe_key = item.dedupe_key;
        record.event_id = item.event_id;
        record.event_type = item.event_type;
        record.received_at_ms = item.received_at_ms;
        // Due from its arrival: first come, first served.
        record.next_attempt_at_ms = item.received_at_ms;
        record.headers = item.headers;
        record.body_len = item.body.len() as u64;
        record.body = Some(item.body);
        if let Some(slot) = slot {
            self.keys.insert(slot, id);
        }
        let holds_key = record.dedupe_key.is_some();
        self.items.insert(
            id,
            Item {
                record,
                scope: item.scope,
                holds_key,
            },
        );
        self.live += 1;
        Ok((Accepted::Stored(id), true))
    }

    fn claim(&mut self, providers: &[String], now_ms: i64, lease: Duration, limit: u32) -> Vec<ClaimedItem> {
        let until = now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let mut due: Vec<(i64, i64)> = self
            .items
            .values()
            .map(|i| &i.record)
            .filter(|r| matches!(r.state, InboxState::Pending | InboxState::Running))
            .filter(|r| r.next_attempt_at_ms <= now_ms)
            .filter(|r| providers.is_empty() || providers.contains(&r.provider))
            .map(|r| (r.next_attempt_at_ms, r.id))
            .collect();
        due.sort_unstable();
        due.truncate(limit as usize);
        let mut out = Vec::with_capacity(due.len());
        for (_, id) in due {
            self.forget_in_flight_key(id);
            let Some(item) = self.items.get_mut(&id) else { continue };
            let r = &mut item.record;
            r.state = InboxState::Running;
            r.attempts = r.attempts.saturating_add(1);
            r.next_attempt_at_ms = until;
            out.push(ClaimedItem::new(
                ClaimRef::new(id, r.attempts, until),
                &r.provider,
                r.dedupe_key.clone(),
                r.event_id.clone(),
                r.event_type.clone(),
                r.body.clone().unwrap_or_default(),
                r.received_at_ms,
            ));
        }
        out.sort_by_key(|i| i.id);
        out
    }

    /// Done (`error` None) or dead. A completion repeated by the claim that completed the item
    /// is answered `true` again.
    fn finish(&mut self, claim: ClaimRef, now_ms: i64, error: Option<&str>) -> bool {
        if let Some(item) = self.held(claim) {
            let r = &mut item.record;
            r.state = if error.is_some() {
                InboxState::Dead
            } else {
                InboxState::Done
            };
            r.finished_at_ms = Some(now_ms);
            r.last_error = error.map(str::to_owned);
            self.live = self.live.saturating_sub(1);
            return true;
        }
        error.is_none()
            && self.items.get(&claim.id).is_some_and(|i| {
                i.record.state == InboxState::Done
                    && i.record.attempts == claim.attempt
                    && i.record.next_attempt_at_ms == claim.lease_until_ms
            })
    }

    /// Back to pending at `due`: a failed attempt with its `error`, or (`None`) a give-back
    /// that does not count the attempt.
    fn give_back(&mut self, claim: ClaimRef, due: i64, error: Option<&str>) -> bool {
        let Some(item) = self.held(claim) else { return false };
        let r = &mut item.record;
        r.state = InboxState::Pending;
        r.next_attempt_at_ms = due;
        match error {
            Some(e) => r.last_error = Some(e.to_owned()),
            None => r.attempts = r.attempts.saturating_sub(1),
        }
        true
    }

    fn list(&self, f: &ListFilter) -> Vec<InboxRecord> {
        let mut out: Vec<&InboxRecord> = self
            .items
            .values()
            .map(|i| &i.record)
            .filter(|r| f.state.is_none_or(|s| r.state == s))
            .filter(|r| f.provider.as_ref().is_none_or(|p| &r.provider == p))
            .collect();
        match f.state {
            // Most recently finished first.
            Some(InboxState::Done | InboxState::Dead) => {
                out.sort_by_key(|r| std::cmp::Reverse((r.finished_at_ms, r.id)));
            }
            _ => out.sort_by_key(|r| std::cmp::Reverse(r.id)),
        }
        out.into_iter()
            .take(f.limit as usize)
            .map(|r| InboxRecord {
                headers: Vec::new(),
                body: None,
                ..r.clone()
            })
            .collect()
    }

    fn purge(&mut self, before_ms: i64, include_dead: bool) -> u64 {
        let gone: Vec<i64> = self
            .items
            .values()
            .filter(|i| {
                let r = &i.record;
                (r.state == InboxState::Done || (include_dead && r.state == InboxState::Dead))
                    && r.finished_at_ms.is_some_and(|t| t < before_ms)
            })
            .map(|i| i.record.id)
            .collect();
        for id in &gone {
            if let Some(item) = self.items.remove(id) {
                if let (true, Some(key)) = (item.holds_key, item.record.dedupe_key) {
                    self.keys.remove(&(item.record.provider, key));
                }
            }
        }
        gone.len() as u64
    }

    fn stats(&self) -> InboxStats {
        let mut s = InboxStats::default();
        for r in self.items.values().map(|i| &i.record) {
            *match r.state {
                InboxState::Pending => &mut s.pending,
                InboxState::Running => &mut s.running,
                InboxState::Done => &mut s.done,
                InboxState::Dead => &mut s.dead,
            } += 1;
            s.body_bytes += r.body_len;
            if r.state == InboxState::Pending {
                s.oldest_pending_ms = Some(
                    s.oldest_pending_ms
                        .map_or(r.received_at_ms, |t| t.min(r.received_at_ms)),
                );
            }
        }
        s
    }
}

/// An answer ready now.
fn ready<'a, T: Send + 'a>(v: Result<T, InboxError>) -> InboxFuture<'a, T> {
    Box::pin(std::future::ready(v))
}

impl InboxStore for MemoryInbox {
    fn accept(&self, item: NewItem) -> InboxFuture<'_, Accepted> {
        let r = self.lock().accept(item, self.inner.max_pending);
        if let Ok((_, true)) = r {
            self.inner.wake.every();
        }
        ready(r.map(|(a, _)| a))
    }

    fn claim(&self, now_ms: i64, lease: Duration, limit: u32) -> InboxFuture<'_, Vec<ClaimedItem>> {
        ready(Ok(self.lock().claim(&[], now_ms, lease, limit)))
    }

    fn claim_of<'a>(
        &'a self,
        providers: &'a [String],
        now_ms: i64,
        lease: Duration,
        limit: u32,
    ) -> InboxFuture<'a, Vec<ClaimedItem>> {
        ready(Ok(self.lock().claim(providers, now_ms, lease, limit)))
    }

    fn complete(&self, claim: ClaimRef, now_ms: i64) -> InboxFuture<'_, bool> {
        ready(Ok(self.lock().finish(claim, now_ms, None)))
    }

    fn fail(&self, claim: ClaimRef, error: &str, retry_at_ms: Option<i64>, now_ms: i64) -> InboxFuture<'_, bool> {
        let mut state = self.lock();
        let r = match retry_at_ms {
            Some(at) => state.give_back(claim, at, Some(error)),
            None => state.finish(claim, now_ms, Some(error)),
        };
        ready(Ok(r))
    }

    fn release(&self, claim: ClaimRef) -> InboxFuture<'_, bool> {
        let r = self.lock().give_back(claim, now_ms(), None);
        if r {
            self.inner.wake.every();
        }
        ready(Ok(r))
    }

    fn defer(&self, claim: ClaimRef, until_ms: i64) -> InboxFuture<'_, bool> {
        ready(Ok(self.lock().give_back(claim, until_ms, None)))
    }

    fn get(&self, id: i64) -> InboxFuture<'_, Option<InboxRecord>> {
        ready(Ok(self.lock().items.get(&id).map(|i| i.record.clone())))
    }

    fn list(&self, filter: ListFilter) -> InboxFuture<'_, Vec<InboxRecord>> {
        ready(Ok(self.lock().list(&filter)))
    }

    fn replay(&self, id: i64, now_ms: i64) -> InboxFuture<'_, ()> {
        let r = self.lock().replay(id, now_ms).map(drop);
        if r.is_ok() {
            self.inner.wake.every();
        }
        ready(r)
    }

    fn replay_dead(&self, now_ms: i64) -> InboxFuture<'_, u64> {
        let mut state = self.lock();
        // As the SQLite inbox: never past half the cap, so new deliveries keep room.
        let room = self.inner.max_pending.div_ceil(2).saturating_sub(state.live);
        let dead: Vec<i64> = state
            .items
            .values()
            .filter(|i| i.record.state == InboxState::Dead)
            .map(|i| i.record.id)
            .take(usize::try_from(room).unwrap_or(usize::MAX))
            .collect();
        for id in &dead {
            // Dead items are never running: this cannot fail.
            let _ = state.replay(*id, now_ms);
        }
        drop(state);
        if !dead.is_empty() {
            self.inner.wake.every();
        }
        ready(Ok(dead.len() as u64))
    }

    fn purge(&self, before_ms: i64, include_dead: bool) -> InboxFuture<'_, u64> {
        ready(Ok(self.lock().purge(before_ms, include_dead)))
    }

    fn stats(&self) -> InboxFuture<'_, InboxStats> {
        ready(Ok(self.lock().stats()))
    }

    fn notified(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.inner.wake.notified())
    }
}

/// Wakes every waiting worker, and leaves one wake-up for a worker not waiting yet (as
/// [`wake_every_worker`](crate::inbox::wake_every_worker) does with tokio's `Notify`), without
/// a runtime.
#[derive(Debug, Default)]
struct Wake(Mutex<WakeState>);

#[derive(Debug, Default)]
struct WakeState {
    /// Counts wake-ups: a waiter created before the latest one is woken.
    generation: u64,
    /// A wake-up left for a worker not waiting yet (the next future to poll takes it).
    permit: bool,
    /// The waiting futures' wakers, by the future's number: one entry per future, removed
    /// when it is dropped, so bounded by the futures alive.
    wakers: Vec<(u64, Waker)>,
    next: u64,
}

impl Wake {
    fn lock(&self) -> MutexGuard<'_, WakeState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn every(&self) {
        let waiting = {
            let mut s = self.lock();
            s.generation = s.generation.wrapping_add(1);
            // Left also when some waited: a worker busy claiming (no future alive) may be the
            // one whose sender's item this is.
            s.permit = true;
            std::mem::take(&mut s.wakers)
        };
        for (_, w) in waiting {
            w.wake();
        }
    }

    fn notified(&self) -> Notified<'_> {
        let mut s = self.lock();
        s.next = s.next.wrapping_add(1);
        Notified {
            wake: self,
            generation: s.generation,
            number: s.next,
        }
    }
}

struct Notified<'a> {
    wake: &'a Wake,
    generation: u64,
    number: u64,
}

impl Future for Notified<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.wake.lock();
        if s.generation != self.generation {
            return Poll::Ready(());
        }
        if s.permit {
            s.permit = false;
            return Poll::Ready(());
        }
        match s.wakers.iter_mut().find(|(n, _)| *n == self.number) {
            Some((_, w)) => w.clone_from(cx.waker()),
            None => s.wakers.push((self.number, cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for Notified<'_> {
    fn drop(&mut self) {
        self.wake.lock().wakers.retain(|(n, _)| *n != self.number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::block_on;
    use bytes::Bytes;

    const LEASE: Duration = Duration::from_secs(60);

    fn item(key: Option<&str>, scope: DedupeScope) -> NewItem {
        let mut i = NewItem::from_parts("hcss", key.map(str::to_owned), Bytes::from_static(b"{\"a\":1}"));
        i.scope = scope;
        i.received_at_ms = 1_000;
        i
    }

    fn state(inbox: &MemoryInbox, id: i64) -> InboxState {
        block_on(inbox.get(id)).unwrap().unwrap().state
    }

    #[test]
    fn a_retained_key_is_a_duplicate_until_purged() {
        let inbox = MemoryInbox::default();
        let copy = || item(Some("k"), DedupeScope::Retained);
        assert_eq!(block_on(inbox.accept(copy())).unwrap(), Accepted::Stored(1));
        let c = block_on(inbox.claim(2_000, LEASE, 10)).unwrap().remove(0);
        assert_eq!(
            block_on(inbox.accept(copy())).unwrap(),
            Accepted::Duplicate(1),
            "running"
        );
        assert!(block_on(inbox.complete(c.claim(), 3_000)).unwrap());
        assert_eq!(block_on(inbox.accept(copy())).unwrap(), Accepted::Duplicate(1), "done");
        assert_eq!(block_on(inbox.purge(3_000, false)).unwrap(), 0, "finished at the bound");
        assert_eq!(block_on(inbox.purge(3_001, false)).unwrap(), 1);
        assert_eq!(
            block_on(inbox.accept(copy())).unwrap(),
            Accepted::Stored(2),
            "forgotten"
        );
    }

    #[test]
    fn an_in_flight_key_coalesces_only_until_claimed() {
        let inbox = MemoryInbox::default();
        let copy = || item(Some("k"), DedupeScope::WhileInFlight);
        assert_eq!(block_on(inbox.accept(copy())).unwrap(), Accepted::Stored(1));
        assert_eq!(block_on(inbox.accept(copy())).unwrap(), Accepted::Duplicate(1));
        let c = block_on(inbox.claim(2_000, LEASE, 10)).unwrap().remove(0);
        assert_eq!(
            block_on(inbox.accept(copy())).unwrap(),
            Accepted::Stored(2),
            "started: a new event"
        );
        assert!(block_on(inbox.complete(c.claim(), 3_000)).unwrap());
        // Replayed, item 1 does not take the key item 2 holds: both run.
        block_on(inbox.replay(1, 4_000)).unwrap();
        assert_eq!(block_on(inbox.accept(copy())).unwrap(), Accepted::Duplicate(2));
        assert_eq!(block_on(inbox.claim(5_000, LEASE, 10)).unwrap().len(), 2);
    }

    #[test]
    fn items_without_a_key_are_never_copies() {
        let inbox = MemoryInbox::default();
        assert_eq!(
            block_on(inbox.accept(item(None, DedupeScope::Retained))).unwrap(),
            Accepted::Stored(1)
        );
        assert_eq!(
            block_on(inbox.accept(item(None, DedupeScope::Retained))).unwrap(),
            Accepted::Stored(2)
        );
    }

    #[test]
    fn a_copy_of_a_dead_item_runs_it_again() {
        let inbox = MemoryInbox::default();
        block_on(inbox.accept(item(Some("k"), DedupeScope::Retained))).unwrap();
        let c = block_on(inbox.claim(2_000, LEASE, 10)).unwrap().remove(0);
        assert!(block_on(inbox.fail(c.claim(), "boom", None, 3_000)).unwrap());
        let dead = block_on(inbox.get(1)).unwrap().unwrap();
        assert_eq!(
            (dead.state, dead.last_error.as_deref(), dead.finished_at_ms),
            (InboxState::Dead, Some("boom"), Some(3_000))
        );
        let mut copy = item(Some("k"), DedupeScope::Retained);
        copy.received_at_ms = 9_000;
        assert_eq!(block_on(inbox.accept(copy)).unwrap(), Accepted::Stored(1));
        let again = block_on(inbox.get(1)).unwrap().unwrap();
        assert_eq!(
            (again.state, again.attempts, again.next_attempt_at_ms),
            (InboxState::Pending, 0, 9_000)
        );
        assert_eq!(again.received_at_ms, 1_000, "keeps its first arrival");
    }

    #[test]
    fn leases_expire_and_a_stale_claim_is_refused() {
        let inbox = MemoryInbox::default();
        block_on(inbox.accept(item(Some("k"), DedupeScope::Retained))).unwrap();
        let first = block_on(inbox.claim(2_000, LEASE, 10)).unwrap().remove(0);
        assert_eq!(first.lease_until_ms, 62_000);
        assert!(
            block_on(inbox.claim(61_999, LEASE, 10)).unwrap().is_empty(),
            "lease held"
        );
        let second = block_on(inbox.claim(62_000, LEASE, 10)).unwrap().remove(0);
        assert_eq!(second.attempt, 2);
        assert!(!block_on(inbox.complete(first.claim(), 70_000)).unwrap(), "stale");
        assert!(!block_on(inbox.fail(first.claim(), "x", Some(80_000), 70_000)).unwrap());
        assert!(block_on(inbox.complete(second.claim(), 70_000)).unwrap());
        assert!(
            block_on(inbox.complete(second.claim(), 70_001)).unwrap(),
            "repeated: true again"
        );
        assert!(!block_on(inbox.fail(second.claim(), "x", None, 70_001)).unwrap());
        assert_eq!(state(&inbox, 1), InboxState::Done);
    }

    #[test]
    fn retries_wait_until_due_and_give_backs_do_not_count() {
        let inbox = MemoryInbox::default();
        block_on(inbox.accept(item(Some("a"), DedupeScope::Retained))).unwrap();
        let c = block_on(inbox.claim(2_000, LEASE, 10)).unwrap().remove(0);
        assert!(block_on(inbox.fail(c.claim(), "later", Some(5_000), 3_000)).unwrap());
        assert!(block_on(inbox.claim(4_999, LEASE, 10)).unwrap().is_empty());
        let c = block_on(inbox.claim(5_000, LEASE, 10)).unwrap().remove(0);
        assert_eq!(c.attempt, 2);
        assert!(block_on(inbox.defer(c.claim(), 7_000)).unwrap());
        assert!(block_on(inbox.claim(6_999, LEASE, 10)).unwrap().is_empty());
        let c = block_on(inbox.claim(7_000, LEASE, 10)).unwrap().remove(0);
        assert_eq!(c.attempt, 2, "a deferral is no attempt");
        assert!(block_on(inbox.release(c.claim())).unwrap());
        let rec = block_on(inbox.get(1)).unwrap().unwrap();
        assert_eq!(
            (rec.state, rec.attempts, rec.last_error.as_deref()),
            (InboxState::Pending, 1, Some("later"))
        );
    }

    #[test]
    fn claims_go_first_due_first_and_by_sender() {
        let inbox = MemoryInbox::default();
        for (key, at) in [("a", 3_000), ("b", 1_000), ("c", 2_000)] {
            let mut i = item(Some(key), DedupeScope::Retained);
            i.received_at_ms = at;
            if key == "c" {
                i.provider = "procore".into();
            }
            block_on(inbox.accept(i)).unwrap();
        }
        let ids = |v: Vec<ClaimedItem>| v.iter().map(|i| i.id).collect::<Vec<_>>();
        assert_eq!(
            ids(block_on(inbox.claim_of(&["hcss".into()], 9_000, LEASE, 1)).unwrap()),
            [2]
        );
        assert_eq!(ids(block_on(inbox.claim(9_000, LEASE, 10)).unwrap()), [1, 3]);
    }

    #[test]
    fn the_cap_refuses_new_items_and_still_knows_copies() {
        let inbox = MemoryInbox::with_max_pending(2);
        block_on(inbox.accept(item(Some("a"), DedupeScope::Retained))).unwrap();
        block_on(inbox.accept(item(Some("b"), DedupeScope::Retained))).unwrap();
        assert!(matches!(
            block_on(inbox.accept(item(Some("c"), DedupeScope::Retained))),
            Err(InboxError::Full { limit: 2 })
        ));
        assert_eq!(
            block_on(inbox.accept(item(Some("a"), DedupeScope::Retained))).unwrap(),
            Accepted::Duplicate(1)
        );
        // A dead item's copy at the cap would be pending again: refused too.
        let c = block_on(inbox.claim(2_000, LEASE, 1)).unwrap().remove(0);
        block_on(inbox.fail(c.claim(), "x", None, 3_000)).unwrap();
        block_on(inbox.accept(item(Some("c"), DedupeScope::Retained))).unwrap();
        assert!(matches!(
            block_on(inbox.accept(item(Some("a"), DedupeScope::Retained))),
            Err(InboxError::Full { .. })
        ));
        // `replay_dead` keeps half the cap for new deliveries.
        assert_eq!(block_on(inbox.replay_dead(4_000)).unwrap(), 0);
    }

    #[test]
    fn replay_lists_stats_and_purge() {
        let inbox = MemoryInbox::default();
        for key in ["a", "b", "c"] {
            block_on(inbox.accept(item(Some(key), DedupeScope::Retained))).unwrap();
        }
        let claimed = block_on(inbox.claim(2_000, LEASE, 10)).unwrap();
        assert!(matches!(
            block_on(inbox.replay(1, 2_500)),
            Err(InboxError::WrongState { id: 1, .. })
        ));
        assert!(matches!(block_on(inbox.replay(9, 2_500)), Err(InboxError::NotFound(9))));
        block_on(inbox.fail(claimed[0].claim(), "x", None, 3_000)).unwrap();
        block_on(inbox.complete(claimed[1].claim(), 4_000)).unwrap();
        block_on(inbox.fail(claimed[2].claim(), "y", None, 5_000)).unwrap();
        let ids = |f: ListFilter| {
            block_on(inbox.list(f))
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(ListFilter::default()), [3, 2, 1]);
        assert_eq!(
            ids(ListFilter::default().state(InboxState::Dead)),
            [3, 1],
            "most recently finished first"
        );
        assert!(block_on(inbox.list(ListFilter::default()))
            .unwrap()
            .iter()
            .all(|r| r.body.is_none()));
        let s = block_on(inbox.stats()).unwrap();
        assert_eq!((s.pending, s.running, s.done, s.dead, s.body_bytes), (0, 0, 1, 2, 21));
        assert_eq!(block_on(inbox.replay_dead(6_000)).unwrap(), 2);
        assert_eq!(block_on(inbox.stats()).unwrap().oldest_pending_ms, Some(1_000));
        assert_eq!(block_on(inbox.purge(i64::MAX, true)).unwrap(), 1, "only the done item");
        assert_eq!(inbox.items().len(), 2);
    }

    #[test]
    fn accepts_and_replays_wake_workers_even_one_not_waiting_yet() {
        let inbox = MemoryInbox::default();
        let pending = |inbox: &MemoryInbox| {
            let mut f = inbox.notified();
            f.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending()
        };
        assert!(pending(&inbox), "nothing happened yet");
        block_on(inbox.accept(item(None, DedupeScope::Retained))).unwrap();
        assert!(!pending(&inbox), "a wake-up was left");
        assert!(pending(&inbox), "and taken");
        // A waiter created before a replay is woken by it, and a worker not waiting then
        // (busy claiming) still finds a wake-up: it may be the one the item is for.
        let mut waiting = inbox.notified();
        assert!(waiting
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending());
        block_on(inbox.replay(1, 5_000)).unwrap();
        assert!(waiting
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready());
        assert!(!pending(&inbox), "a wake-up left for the worker not waiting");
    }
}
