//! Bodies of items this process's writer just stored, kept in memory until a claim of this
//! process takes them: a worker that keeps up claims an item milliseconds after it was
//! stored, and reading back the body it just wrote cost about 6 % of `serve --inbox`'s CPU per
//! delivery (BENCHMARKS.md, twenty-fifth session).
//!
//! Bounded in bytes and in age. A body is handed out only to a claim of the same item: its id
//! and a stamp of what the claim reads of the row (provider, dedupe key, arrival, body
//! length) must both match, because an id can name another item later (a file made by an
//! earlier build reuses the ids of purged newest rows) and another process may store and
//! claim items of the same file.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookguard_core::inbox::NewItem;

/// How long a body stays unclaimed before it is dropped (another process claimed its item,
/// or the worker is far behind: the claim reads it from the file then).
pub(crate) const MAX_AGE: Duration = Duration::from_secs(30);

/// What an entry costs beside its body (the map's slot, the order's element), counted
/// against the bound.
const ENTRY_COST: usize = 64;

/// What a claim reads of a row, beside its id, reduced to a number.
pub(crate) fn stamp(provider: &str, dedupe_key: Option<&str>, received_at: i64, body_len: i64) -> u64 {
    let mut h = DefaultHasher::new();
    (provider, dedupe_key, received_at, body_len).hash(&mut h);
    h.finish()
}

struct Entry {
    body: Bytes,
    stamp: u64,
    at: Instant,
}

/// The bodies kept (see the module's documentation).
pub(crate) struct Fresh {
    kept: HashMap<i64, Entry>,
    /// Ids in the order they were kept, with when (an id taken since, or kept again, leaves a
    /// stale element here, skipped when it comes to the front).
    order: VecDeque<(i64, Instant)>,
    bytes: usize,
    max_bytes: usize,
    /// Bodies of the batch being written: kept only once it commits (a batch rolled back gives
    /// its ids out again).
    staged: Vec<(i64, Bytes, u64)>,
}

impl Fresh {
    /// At most `max_bytes` of bodies (0: none are kept).
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            kept: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            max_bytes,
            staged: Vec::new(),
        }
    }

    /// The body of `item`, stored as item `id` by the batch being written.
    pub(crate) fn stage(&mut self, id: i64, item: &NewItem) {
        // The length as the accept stores it (`body_len`), which the claim reads back.
        let len = item.body.len() as i64;
        let stamp = stamp(&item.provider, item.dedupe_key.as_deref(), item.received_at_ms, len);
        self.stage_body(id, &item.body, stamp);
    }

    /// [`stage`](Self::stage) of `body` with its row's stamp.
    ///
    /// Copied: the caller's bytes may be a slice of a larger buffer (a request's whole read
    /// buffer), which a kept reference would hold for as long as the body is kept.
    fn stage_body(&mut self, id: i64, body: &Bytes, stamp: u64) {
        if body.len() + ENTRY_COST <= self.max_bytes {
            self.staged.push((id, Bytes::copy_from_slice(body), stamp));
        }
    }

    /// The batch committed: its bodies are kept (the oldest dropped beyond the bound).
    pub(crate) fn committed(&mut self) {
        let now = Instant::now();
        for (id, body, stamp) in std::mem::take(&mut self.staged) {
            self.bytes += body.len() + ENTRY_COST;
            if let Some(old) = self.kept.insert(id, Entry { body, stamp, at: now }) {
                self.bytes -= old.body.len() + ENTRY_COST;
            }
            self.order.push_back((id, now));
        }
        self.expire();
    }

    /// Drops the oldest bodies beyond the bound or the age.
    pub(crate) fn expire(&mut self) {
        while let Some(&(id, at)) = self.order.front() {
            let live = self.kept.get(&id).is_some_and(|e| e.at == at);
            if live && self.bytes <= self.max_bytes && at.elapsed() < MAX_AGE {
                break;
            }
            self.order.pop_front();
            if live {
                self.forget(id);
            }
        }
        // Elements taken out of order (a claim skipped an item) stay behind the front: bounded
        // to about twice what is kept.
        if self.order.len() > 2 * self.kept.len() + 64 {
            let kept = &self.kept;
            self.order.retain(|(id, at)| kept.get(id).is_some_and(|e| e.at == *at));
        }
    }

    /// The batch was rolled back: nothing it stored is kept.
    pub(crate) fn rolled_back(&mut self) {
        self.staged.clear();
    }

    /// The body kept for item `id`, if its row still has the stamp it had when stored (also
    /// one stored by the batch being written: a claim in the same batch as the accept).
    pub(crate) fn take(&mut self, id: i64, stamp: u64) -> Option<Bytes> {
        if let Some(i) = self.staged.iter().position(|(staged, ..)| *staged == id) {
            let (_, body, kept) = self.staged.swap_remove(i);
            return (kept == stamp).then_some(body);
        }
        let e = self.forget(id)?;
        (e.stamp == stamp).then_some(e.body)
    }

    /// Whether any body is kept.
    pub(crate) fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    fn forget(&mut self, id: i64) -> Option<Entry> {
        let e = self.kept.remove(&id)?;
        self.bytes -= e.body.len() + ENTRY_COST;
        Some(e)
    }

    #[cfg(test)]
    fn held(&self) -> (usize, usize, usize) {
        (self.kept.len(), self.bytes, self.order.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    #[test]
    fn a_body_is_handed_out_once_and_only_to_its_own_row() {
        let mut f = Fresh::new(1 << 20);
        let s = stamp("buildworkpro", Some("evt_1"), 10, 4);
        f.stage_body(1, &body(4), s);
        f.stage_body(2, &body(4), s);
        f.committed();
        assert_eq!(f.take(1, s).as_deref(), Some(&b"xxxx"[..]));
        assert_eq!(f.take(1, s), None, "taken already");
        // Id 2 now names another row (another arrival): not its body, and dropped.
        assert_eq!(f.take(2, stamp("buildworkpro", Some("evt_1"), 11, 4)), None);
        assert_eq!(f.take(2, s), None);
        assert_eq!(f.held().0, 0);
    }

    #[test]
    fn a_batch_rolled_back_keeps_nothing() {
        let mut f = Fresh::new(1 << 20);
        f.stage_body(7, &body(4), 1);
        f.rolled_back();
        f.committed();
        assert_eq!(f.take(7, 1), None);
    }

    #[test]
    fn the_bound_drops_the_oldest() {
        let each = 4 + ENTRY_COST;
        let mut f = Fresh::new(2 * each + 2);
        for id in 1..=4 {
            f.stage_body(id, &body(4), 0);
            f.committed();
        }
        // Four offered, room for two: the two newest stay, each counted with its entry.
        assert_eq!(f.held().0, 2);
        assert_eq!(f.held().1, 2 * each);
        assert_eq!(f.take(1, 0), None);
        assert_eq!(f.take(2, 0), None);
        assert!(f.take(3, 0).is_some());
        assert!(f.take(4, 0).is_some());
        // A body beyond the whole bound is never kept; none at all with a bound of 0.
        f.stage_body(5, &body(2 * each), 0);
        f.committed();
        assert_eq!(f.take(5, 0), None);
        let mut none = Fresh::new(0);
        none.stage_body(1, &Bytes::new(), 0);
        none.committed();
        assert_eq!(none.take(1, 0), None);
    }

    /// A kept body is a copy: it never holds on to the buffer it was a slice of.
    #[test]
    fn a_kept_body_does_not_hold_the_buffer_it_came_from() {
        let mut f = Fresh::new(1 << 20);
        let buffer = Bytes::from(vec![b'x'; 64 * 1024]);
        f.stage_body(1, &buffer.slice(0..4), 0);
        f.committed();
        let kept = f.take(1, 0).unwrap();
        assert_eq!(&kept[..], b"xxxx");
        assert!(
            !std::ptr::eq(kept.as_ptr(), buffer.as_ptr()),
            "a slice of the request's buffer"
        );
    }

    /// A claim in the same batch as the accept takes the staged body (once).
    #[test]
    fn a_claim_in_the_accepts_batch_takes_the_staged_body() {
        let mut f = Fresh::new(1 << 20);
        f.stage_body(3, &body(4), 9);
        assert_eq!(f.take(3, 8), None, "another row");
        f.stage_body(3, &body(4), 9);
        assert!(f.take(3, 9).is_some());
        f.committed();
        assert_eq!(f.take(3, 9), None, "handed out already");
        assert!(f.is_empty());
    }

    #[test]
    fn ids_taken_out_of_order_do_not_pile_up() {
        let mut f = Fresh::new(1 << 30);
        // Item 0 is never claimed here (another process claimed it); every later one is.
        f.stage_body(0, &body(1), 0);
        f.committed();
        for id in 1..100_000 {
            f.stage_body(id, &body(1), 0);
            f.committed();
            assert!(f.take(id, 0).is_some());
        }
        let (kept, bytes, order) = f.held();
        assert_eq!((kept, bytes), (1, 1 + ENTRY_COST));
        assert!(order <= 2 * kept + 65, "{order} ids remembered");
    }

    #[test]
    fn a_stamp_tells_rows_apart() {
        let s = stamp("procore", Some("k"), 5, 100);
        assert_eq!(s, stamp("procore", Some("k"), 5, 100));
        assert_ne!(s, stamp("procore", None, 5, 100));
        assert_ne!(s, stamp("procore", Some("k"), 6, 100));
        assert_ne!(s, stamp("procore", Some("k"), 5, 101));
        assert_ne!(s, stamp("hcss", Some("k"), 5, 100));
    }
}
