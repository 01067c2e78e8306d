//! The SQLite inbox and the worker against real SQLite files.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookguard_core::inbox::{
    now_ms, Accepted, ClaimRef, ClaimedItem, HandlerError, InboxError, InboxFuture, InboxState, InboxStore, ListFilter,
    NewItem, Outcome, RetryPolicy, Worker,
};
use hookguard_core::schemes::{BuildWorkPro, Hcss};
use hookguard_core::{testing, Delivery};
use hookguard_sqlite::SqliteInbox;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("hg-sqlite-{name}-{}-{}", std::process::id(), now_ms()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    fn file(&self) -> PathBuf {
        self.0.join("inbox.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bwp(id: &str) -> Delivery {
    let body = format!(r#"{{"id":"{id}","type":"bid.accepted"}}"#);
    testing::deliver_bytes(BuildWorkPro::new(), "whsec_k", body).unwrap()
}

fn hcss_setups(entity: &str) -> Delivery {
    let body = format!(r#"{{"companyId":"c","eventType":"EmployeeUpdated","businessUnitId":"b","id":"{entity}"}}"#);
    // HCSS's default scheme: the token travels in the URL query, as HCSS sends it.
    testing::deliver_bytes(Hcss::new(), "tok", body).unwrap()
}

fn item(d: &Delivery) -> NewItem {
    NewItem::from_delivery(d, vec![("content-type".into(), "application/json".into())], now_ms())
}

/// Retries 20–80 ms apart, `max_attempts` in all: a test's whole schedule in well under a second.
fn quick_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy::new(Duration::from_millis(20), Duration::from_millis(80), max_attempts)
}

async fn stored(inbox: &SqliteInbox, d: &Delivery) -> i64 {
    stored_item(inbox, item(d)).await
}

/// Claims every due item and fails it for good: dead items, for replays.
async fn all_dead(inbox: &SqliteInbox) {
    let t = now_ms();
    for c in inbox.claim(t, Duration::from_secs(30), 100).await.unwrap() {
        assert!(inbox.fail(c.claim(), "refused", None, t).await.unwrap());
    }
}

/// Stores `item` (received when it says), which must be new; its id.
async fn stored_item(inbox: &SqliteInbox, item: NewItem) -> i64 {
    match inbox.accept(item).await.unwrap() {
        Accepted::Stored(id) => id,
        other => panic!("expected stored, got {other:?}"),
    }
}

/// The file holds the deliveries' bodies: a new inbox and its `-wal` and `-shm` files are
/// the owner's alone, whatever the umask (they were 0644 under the usual 022).
#[cfg(unix)]
#[tokio::test]
async fn a_new_inbox_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("mode");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    stored(&inbox, &bwp("evt_private")).await;
    for suffix in ["", "-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{suffix}", dir.file().display()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}: {mode:o}", path.display());
    }
}

#[tokio::test]
async fn accepts_are_durable_and_copies_are_duplicates_across_reopen() {
    let dir = TempDir::new("durable");
    let id = {
        let inbox = SqliteInbox::open(dir.file()).unwrap();
        let id = stored(&inbox, &bwp("evt_1")).await;
        assert_eq!(
            inbox.accept(item(&bwp("evt_1"))).await.unwrap(),
            Accepted::Duplicate(id)
        );
        id
    };
    // A new process (a new connection) sees the row, with its body and headers exactly.
    let inbox = SqliteInbox::open_existing(dir.file()).unwrap();
    let rec = inbox.get(id).await.unwrap().unwrap();
    assert_eq!(rec.state, InboxState::Pending);
    assert_eq!(rec.event_id.as_deref(), Some("evt_1"));
    assert_eq!(rec.body.unwrap().as_ref(), br#"{"id":"evt_1","type":"bid.accepted"}"#);
    assert_eq!(
        rec.headers,
        vec![("content-type".to_owned(), "application/json".to_owned())]
    );
    assert_eq!(
        inbox.accept(item(&bwp("evt_1"))).await.unwrap(),
        Accepted::Duplicate(id)
    );
}

/// Dropping the last handle closes the file: checkpointed, with no `-wal` or `-shm` beside it
/// (a process exiting right after leaves one file to copy, and nothing to recover). Opened
/// read-only, the file is read where it is and nothing is written or created, and every
/// operation but list, get and stats is refused.
#[tokio::test]
async fn the_last_handle_leaves_the_file_alone_and_a_reader_changes_nothing() {
    let dir = TempDir::new("closed");
    let beside = |suffix: &str| dir.0.join(format!("inbox.db{suffix}")).exists();
    let id = {
        let inbox = SqliteInbox::open(dir.file()).unwrap();
        let id = stored(&inbox, &bwp("evt_closed")).await;
        assert!(beside("-wal"));
        let copy = inbox.clone();
        drop(inbox);
        assert!(beside("-wal"), "closed while a clone was alive");
        drop(copy);
        id
    };
    assert!(!beside("-wal") && !beside("-shm"), "the log is still beside the file");
    let before = std::fs::read(dir.file()).unwrap();

    let reader = SqliteInbox::open_read_only(dir.file()).unwrap();
    let rec = reader.get(id).await.unwrap().unwrap();
    assert_eq!(rec.event_id.as_deref(), Some("evt_closed"));
    assert_eq!(reader.list(ListFilter::default()).await.unwrap().len(), 1);
    assert_eq!(reader.stats().await.unwrap().pending, 1);
    let refused = reader.accept(item(&bwp("evt_new"))).await.unwrap_err();
    assert!(refused.to_string().contains("read-only"), "{refused}");
    assert!(reader.claim(now_ms(), Duration::from_secs(5), 8).await.is_err());
    assert!(reader.replay(id, now_ms()).await.is_err());
    drop(reader);
    assert_eq!(
        std::fs::read(dir.file()).unwrap(),
        before,
        "the reader changed the file"
    );
    assert!(!beside("-wal") && !beside("-shm"), "the reader left files beside it");
    assert!(SqliteInbox::open_read_only(dir.0.join("missing.db")).is_err());
}

#[test]
fn a_directory_or_a_missing_directory_is_named() {
    let dir = TempDir::new("paths");
    let err = |p: PathBuf| match SqliteInbox::open(&p) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{} opened", p.display()),
    };
    assert!(err(dir.0.clone()).contains("is a directory"), "{}", err(dir.0.clone()));
    let missing = dir.0.join("no-such-dir").join("inbox.db");
    assert!(err(missing.clone()).contains("does not exist"), "{}", err(missing));
}

#[tokio::test]
async fn a_missing_inbox_is_a_clear_error() {
    let dir = TempDir::new("missing");
    let err = SqliteInbox::open_existing(dir.0.join("nope.db")).unwrap_err();
    assert!(err.to_string().contains("no inbox file"), "{err}");
    // Another application's SQLite database is refused, and left untouched.
    let other = dir.0.join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let err = SqliteInbox::open_existing(&other).unwrap_err();
    assert!(err.to_string().contains("not a hookguard inbox"), "{err}");
    let tables: i64 = rusqlite::Connection::open(&other)
        .unwrap()
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(tables, 1);
    // Not a database at all.
    std::fs::write(dir.0.join("junk.db"), b"this is not sqlite, just text padding it out").unwrap();
    let err = SqliteInbox::open_existing(dir.0.join("junk.db")).unwrap_err();
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_store_one_row() {
    let dir = TempDir::new("copies");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let inbox = inbox.clone();
            tokio::spawn(async move { inbox.accept(item(&bwp("evt_copy"))).await.unwrap() })
        })
        .collect();
    let mut stored = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), Accepted::Stored(_)) {
            stored += 1;
        }
    }
    assert_eq!(stored, 1);
    assert_eq!(inbox.stats().await.unwrap().pending, 1);
}

#[tokio::test]
async fn hcss_identical_bodies_coalesce_while_pending_and_are_new_once_started() {
    let dir = TempDir::new("hcss");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let first = stored(&inbox, &hcss_setups("e1")).await;
    assert_eq!(
        inbox.accept(item(&hcss_setups("e1"))).await.unwrap(),
        Accepted::Duplicate(first),
        "a copy while pending"
    );
    let claimed = inbox.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    // Once its handler started, an identical body may be a second edit it has not seen
    // (HCSS never sends it again after our 2xx): a new item, which coalesces its own copies.
    let during = stored(&inbox, &hcss_setups("e1")).await;
    assert_ne!(first, during, "an identical body while running is a new edit");
    assert_eq!(
        inbox.accept(item(&hcss_setups("e1"))).await.unwrap(),
        Accepted::Duplicate(during),
        "a copy of the new item while it is pending"
    );
    assert!(inbox.complete(claimed[0].claim(), now_ms()).await.unwrap());
    let next = inbox.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap();
    assert_eq!(next.iter().map(|i| i.id).collect::<Vec<_>>(), [during]);
    assert!(inbox.complete(next[0].claim(), now_ms()).await.unwrap());
    let second = stored(&inbox, &hcss_setups("e1")).await;
    assert_ne!(during, second, "an identical body after done is a new edit");
    // A BuildWorkPro id stays remembered after done.
    let b = stored(&inbox, &bwp("evt_kept")).await;
    let c = inbox.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap();
    for i in &c {
        assert!(inbox.complete(i.claim(), now_ms()).await.unwrap());
    }
    assert_eq!(
        inbox.accept(item(&bwp("evt_kept"))).await.unwrap(),
        Accepted::Duplicate(b)
    );
}

#[tokio::test]
async fn an_expired_lease_is_claimed_again_and_the_stale_attempt_is_refused() {
    let dir = TempDir::new("lease");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let id = stored(&inbox, &bwp("evt_lease")).await;
    let now = now_ms();
    let first = inbox.claim(now, Duration::from_millis(100), 10).await.unwrap();
    assert_eq!((first.len(), first[0].attempt), (1, 1));
    assert!(
        inbox
            .claim(now + 50, Duration::from_secs(30), 10)
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    let second = inbox.claim(now + 200, Duration::from_secs(30), 10).await.unwrap();
    assert_eq!((second.len(), second[0].attempt), (1, 2));
    assert!(
        !inbox.complete(first[0].claim(), now_ms()).await.unwrap(),
        "stale attempt"
    );
    assert!(
        !inbox.fail(first[0].claim(), "late", None, now_ms()).await.unwrap(),
        "stale attempt"
    );
    assert!(inbox.complete(second[0].claim(), now_ms()).await.unwrap());
    assert_eq!(second[0].id, id);
    assert_eq!(inbox.get(id).await.unwrap().unwrap().state, InboxState::Done);
}

/// Ids are never given twice: after the newest items are purged, a new delivery gets a new id
/// (`inbox show ID` and the logs naming an id always mean one delivery).
#[tokio::test]
async fn ids_are_not_reused_after_a_purge() {
    let dir = TempDir::new("ids");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let first = stored(&inbox, &bwp("evt_id_1")).await;
    let claimed = inbox.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap();
    assert!(inbox.complete(claimed[0].claim(), now_ms()).await.unwrap());
    assert_eq!(inbox.purge(now_ms() + 1, false).await.unwrap(), 1);
    let second = stored(&inbox, &bwp("evt_id_2")).await;
    assert!(second > first, "{second} reuses {first}");
}

#[tokio::test]
async fn the_pending_cap_answers_full_and_frees_up() {
    let dir = TempDir::new("cap");
    let inbox = SqliteInbox::builder(dir.file()).max_pending(2).open().unwrap();
    stored(&inbox, &bwp("a")).await;
    stored(&inbox, &bwp("b")).await;
    assert!(matches!(
        inbox.accept(item(&bwp("c"))).await,
        Err(InboxError::Full { limit: 2 })
    ));
    // A copy of a stored item is still recognised at the cap.
    assert!(matches!(
        inbox.accept(item(&bwp("a"))).await,
        Ok(Accepted::Duplicate(_))
    ));
    let c = inbox.claim(now_ms(), Duration::from_secs(30), 1).await.unwrap();
    assert!(inbox.complete(c[0].claim(), now_ms()).await.unwrap());
    stored(&inbox, &bwp("c")).await;
}

#[tokio::test]
async fn purge_forgets_done_items_and_keeps_dead_ones_unless_asked() {
    let dir = TempDir::new("purge");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let done = stored(&inbox, &bwp("done")).await;
    let dead = stored(&inbox, &bwp("dead")).await;
    for c in inbox.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap() {
        if c.id == done {
            assert!(inbox.complete(c.claim(), now_ms()).await.unwrap());
        } else {
            assert!(inbox.fail(c.claim(), "boom", None, now_ms()).await.unwrap());
        }
    }
    assert_eq!(inbox.purge(now_ms() + 1, false).await.unwrap(), 1);
    assert!(inbox.get(done).await.unwrap().is_none());
    // Its body went with it: only the dead item's body is left.
    let bodies: i64 = rusqlite::Connection::open(dir.file())
        .unwrap()
        .query_row("SELECT count(*) FROM hookguard_inbox_body", [], |r| r.get(0))
        .unwrap();
    assert_eq!(bodies, 1);
    assert_eq!(inbox.get(dead).await.unwrap().unwrap().state, InboxState::Dead);
    // The purged key is forgotten: a later copy is stored again.
    stored(&inbox, &bwp("done")).await;
    assert_eq!(inbox.purge(now_ms() + 1, true).await.unwrap(), 1);
    assert!(inbox.get(dead).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_handler_backs_off_goes_dead_and_a_replay_after_the_fix_is_done() {
    let dir = TempDir::new("worker");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let id = stored(&inbox, &bwp("evt_flaky")).await;
    let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let calls = Arc::new(AtomicU32::new(0));
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let (f, c, o) = (Arc::clone(&fixed), Arc::clone(&calls), Arc::clone(&outcomes));
    let store: Arc<dyn InboxStore> = Arc::new(inbox.clone());
    let worker = Worker::builder(Arc::clone(&store), move |item: ClaimedItem| {
        let (f, c) = (Arc::clone(&f), Arc::clone(&c));
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            assert_eq!(item.delivery.event_id(), Some("evt_flaky"));
            if f.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(HandlerError::new("downstream refused"))
            }
        }
    })
    .retry(quick_retries(3))
    .poll_interval(Duration::from_millis(20))
    .on_outcome(move |_, out| o.lock().unwrap().push(out.clone()))
    .spawn();
    wait_for(&inbox, id, InboxState::Dead).await;
    let rec = inbox.get(id).await.unwrap().unwrap();
    assert_eq!(rec.attempts, 3);
    assert_eq!(rec.last_error.as_deref(), Some("downstream refused"));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    {
        let o = outcomes.lock().unwrap();
        assert!(matches!(o[0], Outcome::Retry { .. }) && matches!(o[1], Outcome::Retry { .. }));
        assert!(matches!(o[2], Outcome::Dead { .. }));
    }
    // Dead items wait; after the fix, a replay is handled.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3, "dead items are not retried");
    fixed.store(true, Ordering::SeqCst);
    inbox.replay(id, now_ms()).await.unwrap();
    wait_for(&inbox, id, InboxState::Done).await;
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert!(
        matches!(inbox.replay(id, now_ms()).await, Ok(())),
        "done items can be replayed too"
    );
    worker.shutdown().await;
}

/// A retry policy whose delay passes every clock schedules the retry far off; it neither
/// panics in the attempt's task (the item then sat running until its lease ended) nor wraps
/// around to a time in the past (retried at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_delay_beyond_any_clock_is_scheduled_far_off() {
    let dir = TempDir::new("huge_retry");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let id = stored(&inbox, &bwp("evt_huge_retry")).await;
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let o = Arc::clone(&outcomes);
    let store: Arc<dyn InboxStore> = Arc::new(inbox.clone());
    let worker = Worker::builder(store, |_item: ClaimedItem| async { Err(HandlerError::new("refused")) })
        .retry(RetryPolicy::new(Duration::from_secs(u64::MAX / 4), Duration::MAX, 3))
        .poll_interval(Duration::from_millis(20))
        .on_outcome(move |_, out| o.lock().unwrap().push(out.clone()))
        .spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while outcomes.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no outcome recorded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(matches!(outcomes.lock().unwrap()[0], Outcome::Retry { .. }));
    let rec = inbox.get(id).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.attempts), (InboxState::Pending, 1));
    const CENTURY_MS: i64 = 100 * 365 * 24 * 3_600_000;
    assert!(
        rec.next_attempt_at_ms > now_ms() + CENTURY_MS,
        "{}",
        rec.next_attempt_at_ms
    );
    worker.shutdown().await;
}

/// A delivery whose handler kills the process is claimed again after every restart. Each of
/// those claims counts an attempt; past the last one the item goes dead without running, so a
/// poison delivery cannot kill every restart (and a replay still runs it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_that_died_with_the_process_count_and_the_item_goes_dead() {
    let dir = TempDir::new("poison");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    // Received a minute ago; two runs that never reported back (the process died during
    // each): their leases expired.
    let t = now_ms();
    let id = stored_item(
        &inbox,
        NewItem::from_delivery(&bwp("evt_poison"), Vec::new(), t - 60_000),
    )
    .await;
    let first = inbox.claim(t - 20_000, Duration::from_secs(1), 10).await.unwrap();
    let second = inbox.claim(t - 10_000, Duration::from_secs(1), 10).await.unwrap();
    assert_eq!((first[0].attempt, second[0].attempt), (1, 2));
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let store: Arc<dyn InboxStore> = Arc::new(inbox.clone());
    let worker = Worker::builder(store, move |_item: ClaimedItem| {
        let c = Arc::clone(&c);
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    })
    .retry(quick_retries(2))
    .poll_interval(Duration::from_millis(20))
    .spawn();
    wait_for(&inbox, id, InboxState::Dead).await;
    let rec = inbox.get(id).await.unwrap().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 0, "not run past its last attempt");
    // Both causes are named: a restart with a lower limit gets here too (an operator's tryout:
    // the message blamed crashes only).
    let why = rec.last_error.unwrap();
    assert!(
        why.contains("no outcome recorded") && why.contains("limit was lowered"),
        "{why}"
    );
    inbox.replay(id, now_ms()).await.unwrap();
    wait_for(&inbox, id, InboxState::Done).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a replay runs it");
    worker.shutdown().await;
}

/// A deferral gives its item back without counting the attempt, so the claim after it carries
/// the same attempt number. The deferred attempt must not forget that claim when it ends (a
/// slow hook, then the deferral's wait): at shutdown a handler still running is released, its
/// attempt uncounted, not left running until its lease ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferral_does_not_forget_the_claim_that_follows_it() {
    let dir = TempDir::new("defer_then_claim");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    // The item is due again, and claimed, while the deferred attempt's hook still runs.
    deferral_then_a_running_claim(&inbox, Arc::new(inbox.clone()), Duration::from_millis(400)).await;
}

/// The same with a store whose deferral makes the item due at once (the trait's default): the
/// next claim, with the same attempt number, can come before the deferring attempt has even
/// heard back from the store. Only that attempt's own claim is forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferral_due_at_once_does_not_forget_the_claim_that_follows_it() {
    let dir = TempDir::new("defer_due_now");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let late = LateClaims(
        inbox.clone(),
        Duration::ZERO,
        Duration::from_millis(400),
        Duration::ZERO,
        Arc::default(),
    );
    deferral_then_a_running_claim(&inbox, Arc::new(late), Duration::ZERO).await;
}

/// One item: its first attempt defers (then its outcome hook takes `hook`), its second runs
/// until shutdown; after shutdown the item must be pending with no attempt counted.
async fn deferral_then_a_running_claim(inbox: &SqliteInbox, store: Arc<dyn InboxStore>, hook: Duration) {
    let id = stored(inbox, &bwp("evt_defer_then_claim")).await;
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let worker = Worker::builder(store, move |_item: ClaimedItem| {
        let first = c.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if first {
                Err(HandlerError::defer("not now", Duration::from_millis(50)))
            } else {
                // Runs until the shutdown stops it.
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            }
        }
    })
    .concurrency(2)
    .lease(Duration::from_secs(60))
    .poll_interval(Duration::from_millis(20))
    .shutdown_grace(Duration::from_millis(100))
    .on_outcome(move |_, outcome| {
        if matches!(outcome, Outcome::Deferred { .. }) {
            std::thread::sleep(hook);
        }
    })
    .spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while calls.load(Ordering::SeqCst) < 2 {
        assert!(tokio::time::Instant::now() < deadline, "not claimed again");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The deferred attempt's store call, hook and wait end while the second claim's handler runs.
    tokio::time::sleep(Duration::from_millis(700)).await;
    worker.shutdown().await;
    let rec = inbox.get(id).await.unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.attempts),
        (InboxState::Pending, 0),
        "the running claim was released at shutdown"
    );
}

/// A handler that could not run now (stdout not read fast enough, a queue full) gives the item
/// back without counting an attempt, due again after the delay it asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferring_handler_does_not_use_up_attempts() {
    let dir = TempDir::new("defer");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    // The store: deferred is pending again, not before the time asked, the attempt uncounted.
    let id = stored(&inbox, &bwp("evt_defer_store")).await;
    let t = now_ms();
    let first = inbox.claim(t, Duration::from_secs(30), 10).await.unwrap();
    assert_eq!((first[0].id, first[0].attempt), (id, 1));
    assert!(inbox.defer(first[0].claim(), t + 60_000).await.unwrap());
    assert!(
        !inbox.defer(first[0].claim(), t + 60_000).await.unwrap(),
        "no longer held"
    );
    let rec = inbox.get(id).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.attempts), (InboxState::Pending, 0));
    assert!(inbox
        .claim(t + 59_000, Duration::from_secs(30), 10)
        .await
        .unwrap()
        .is_empty());
    let again = inbox.claim(t + 61_000, Duration::from_secs(30), 10).await.unwrap();
    assert_eq!(again[0].attempt, 1);
    assert!(inbox.complete(again[0].claim(), now_ms()).await.unwrap());

    // The worker: three deferrals and a success, with at most 2 attempts allowed.
    let id = stored(&inbox, &bwp("evt_defer")).await;
    let calls = Arc::new(AtomicU32::new(0));
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let (c, o) = (Arc::clone(&calls), Arc::clone(&outcomes));
    let store: Arc<dyn InboxStore> = Arc::new(inbox.clone());
    let worker = Worker::builder(store, move |_item: ClaimedItem| {
        let c = Arc::clone(&c);
        async move {
            if c.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(HandlerError::defer("queue full", Duration::from_millis(30)))
            } else {
                Ok(())
            }
        }
    })
    .retry(quick_retries(2))
    .poll_interval(Duration::from_millis(20))
    .on_outcome(move |_, out| o.lock().unwrap().push(out.clone()))
    .spawn();
    wait_for(&inbox, id, InboxState::Done).await;
    assert_eq!(inbox.get(id).await.unwrap().unwrap().attempts, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    {
        let o = outcomes.lock().unwrap();
        assert!(
            o.len() == 4 && o[..3].iter().all(|x| matches!(x, Outcome::Deferred { .. })) && o[3] == Outcome::Done,
            "{o:?}"
        );
    }
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_or_slow_handler_is_a_failed_attempt() {
    let dir = TempDir::new("panic");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let p = stored(&inbox, &bwp("evt_panic")).await;
    let s = stored(&inbox, &bwp("evt_slow")).await;
    let early = stored(&inbox, &bwp("evt_panic_early")).await;
    let store: Arc<dyn InboxStore> = Arc::new(inbox.clone());
    let worker = Worker::builder(store, |item: ClaimedItem| {
        // A handler whose own call panics, before it hands back a future.
        if item.delivery.event_id() == Some("evt_panic_early") {
            panic!("handler bug before its future");
        }
        async move {
            if item.delivery.event_id() == Some("evt_panic") {
                panic!("handler bug");
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<(), HandlerError>(())
        }
    })
    .retry(RetryPolicy::new(
        Duration::from_millis(10),
        Duration::from_millis(10),
        1,
    ))
    .handler_timeout(Duration::from_millis(100))
    .poll_interval(Duration::from_millis(20))
    .spawn();
    wait_for(&inbox, p, InboxState::Dead).await;
    wait_for(&inbox, s, InboxState::Dead).await;
    wait_for(&inbox, early, InboxState::Dead).await;
    // The panic's message says why (it was only on the process's stderr).
    for (id, why) in [(p, "handler bug"), (early, "handler bug before its future")] {
        assert_eq!(
            inbox.get(id).await.unwrap().unwrap().last_error.as_deref(),
            Some(format!("handler panicked: {why}").as_str())
        );
    }
    assert!(inbox
        .get(s)
        .await
        .unwrap()
        .unwrap()
        .last_error
        .unwrap()
        .contains("did not finish"));
    worker.shutdown().await;
}

/// First come, first served: a retry that is due goes before deliveries that arrived after
/// it (new items were due at 0 and went first, so a flood kept due retries waiting).
#[tokio::test]
async fn a_due_retry_goes_before_newer_deliveries() {
    let dir = TempDir::new("fifo");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let first = stored(&inbox, &bwp("evt_first")).await;
    let c = inbox.claim(now_ms(), Duration::from_secs(30), 1).await.unwrap();
    assert!(inbox
        .fail(c[0].claim(), "boom", Some(now_ms()), now_ms())
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(5)).await;
    for i in 0..3 {
        stored(&inbox, &bwp(&format!("evt_later_{i}"))).await;
    }
    let next = inbox.claim(now_ms(), Duration::from_secs(30), 1).await.unwrap();
    assert_eq!((next[0].id, next[0].attempt), (first, 2));
}

/// After the wall clock stepped back, a delivery that arrived "in the future" is still due:
/// claims never look at a time before the newest arrival (and after a restart too).
#[tokio::test]
async fn a_clock_stepped_back_does_not_hold_new_deliveries() {
    // (id, attempt) of what a claim now takes, and the claims.
    async fn due(inbox: &SqliteInbox) -> (Vec<(i64, u32)>, Vec<ClaimRef>) {
        let claimed = inbox.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap();
        (
            claimed.iter().map(|i| (i.id, i.attempt)).collect(),
            claimed.iter().map(ClaimedItem::claim).collect(),
        )
    }
    let dir = TempDir::new("clock-back");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let ahead = now_ms() + 600_000;
    let id = stored_item(&inbox, NewItem::from_delivery(&bwp("evt_ahead"), Vec::new(), ahead)).await;
    let (taken, claims) = due(&inbox).await;
    assert_eq!(taken, [(id, 1)]);
    // Its lease runs on the same timeline: not claimable again right away.
    assert_eq!(due(&inbox).await.0, []);
    // So do its retry and a deferral: due 3 s later on that timeline, not at once (3 s: the
    // check right after must come before it on a loaded machine, with its fsyncs).
    let now = now_ms();
    assert!(inbox.fail(claims[0], "boom", Some(now + 3_000), now).await.unwrap());
    assert_eq!(due(&inbox).await.0, []);
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let (taken, claims) = due(&inbox).await;
    assert_eq!(taken, [(id, 2)]);
    assert!(inbox.defer(claims[0], now_ms() + 3_000).await.unwrap());
    assert_eq!(due(&inbox).await.0, []);
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let (taken, claims) = due(&inbox).await;
    assert_eq!(taken, [(id, 2)]);
    assert!(inbox.complete(claims[0], now_ms()).await.unwrap());
    let second = stored_item(
        &inbox,
        NewItem::from_delivery(&bwp("evt_ahead_2"), Vec::new(), ahead + 1),
    )
    .await;
    drop(inbox);
    let reopened = SqliteInbox::open(dir.file()).unwrap();
    let after_restart = reopened.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap();
    assert_eq!(after_restart.iter().map(|i| i.id).collect::<Vec<_>>(), [second]);
}

/// The timeline's lead outlives the process: a retry stored on a timeline that ran ahead after
/// the clock stepped back is due when it was meant to be after a restart, also when a newer
/// arrival (on the wall clock, so earlier than the first) is the newest row — from which alone
/// the timeline was rebuilt, with no lead, so the retry waited as long as the clock had
/// stepped back.
#[tokio::test]
async fn the_timelines_lead_survives_a_restart() {
    let dir = TempDir::new("clock-back-restart");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let id = stored_item(
        &inbox,
        NewItem::from_delivery(&bwp("evt_ahead"), Vec::new(), now_ms() + 600_000),
    )
    .await;
    let c = inbox.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap();
    assert_eq!(c[0].id, id);
    let now = now_ms();
    assert!(inbox.fail(c[0].claim(), "boom", Some(now + 1_000), now).await.unwrap());
    let newer = stored(&inbox, &bwp("evt_on_the_wall_clock")).await;
    drop(inbox);
    let reopened = SqliteInbox::open(dir.file()).unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let due = reopened.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap();
    assert_eq!(due.iter().map(|i| i.id).collect::<Vec<_>>(), [id, newer]);
}

const HOUR: i64 = 3_600_000;

/// An inbox whose first delivery came from a clock an hour ahead, which then stepped back;
/// that item claimed (the claim moves the timeline an hour ahead of the wall clock), with the
/// wall clock's time just before the claim.
async fn stepped_back_an_hour(name: &str) -> (TempDir, SqliteInbox, ClaimedItem, i64) {
    let dir = TempDir::new(name);
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let fast = NewItem::from_delivery(&bwp("evt_fast_clock"), Vec::new(), now_ms() + HOUR);
    let id = stored_item(&inbox, fast).await;
    let claimed_at = now_ms();
    let c = inbox.claim(claimed_at, Duration::from_secs(30), 10).await.unwrap();
    assert_eq!(c.iter().map(|i| i.id).collect::<Vec<_>>(), [id]);
    (dir, inbox, c.into_iter().next().unwrap(), claimed_at)
}

/// After the clock stepped back, new arrivals are stored on the same timeline as retries: a
/// retry that came due first is claimed first, before an arrival stored after it, also after
/// a restart (an arrival on the wall clock would sort ahead of every retry by the lead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_clock_stepped_back_a_due_retry_goes_before_a_newer_arrival() {
    let (dir, inbox, fast, _) = stepped_back_an_hour("clock-back-order").await;
    assert!(inbox.complete(fast.claim(), now_ms()).await.unwrap());
    let retried = stored(&inbox, &bwp("evt_retried")).await;
    let c = inbox.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap();
    assert_eq!(c.iter().map(|i| i.id).collect::<Vec<_>>(), [retried]);
    let now = now_ms();
    assert!(inbox.fail(c[0].claim(), "boom", Some(now + 10), now).await.unwrap());
    drop(inbox);
    let reopened = SqliteInbox::open(dir.file()).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let newer = stored(&reopened, &bwp("evt_newer")).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let lease = Duration::from_secs(30);
    let first = reopened.claim(now_ms(), lease, 1).await.unwrap();
    assert_eq!(first.iter().map(|i| i.id).collect::<Vec<_>>(), [retried]);
    let second = reopened.claim(now_ms(), lease, 1).await.unwrap();
    assert_eq!(second.iter().map(|i| i.id).collect::<Vec<_>>(), [newer]);
}

/// A restart keeps arrivals due at once after a second, larger step back: the floor (the
/// newest arrival, on the wall clock) moves the timeline two hours ahead — the largest step,
/// not the sum of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_an_arrival_from_a_clock_further_ahead_is_still_due_at_once() {
    let (dir, inbox, fast, _) = stepped_back_an_hour("clock-back-twice").await;
    assert!(inbox.complete(fast.claim(), now_ms()).await.unwrap());
    let later = NewItem::from_delivery(&bwp("evt_two_hours"), Vec::new(), now_ms() + 2 * HOUR);
    let later = stored_item(&inbox, later).await;
    drop(inbox);
    let reopened = SqliteInbox::open(dir.file()).unwrap();
    let c = reopened.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap();
    assert_eq!(c.iter().map(|i| i.id).collect::<Vec<_>>(), [later]);
    drop(reopened);
    let lead: i64 = rusqlite::Connection::open(dir.file())
        .unwrap()
        .query_row(
            "SELECT value FROM hookguard_inbox_meta WHERE name = 'timeline_ahead'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!((2 * HOUR - 5_000..=2 * HOUR).contains(&lead), "{lead}");
}

/// A restart with no arrival after the clock stepped back keeps a retry's delay: the lead is
/// not counted again on top of the arrival that set it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_a_retry_stays_as_far_off_as_it_was_set() {
    let (dir, inbox, fast, _) = stepped_back_an_hour("clock-back-retry").await;
    let now = now_ms();
    assert!(inbox
        .fail(fast.claim(), "boom", Some(now + 600_000), now)
        .await
        .unwrap());
    drop(inbox);
    let reopened = SqliteInbox::open(dir.file()).unwrap();
    let due = reopened.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap();
    assert!(due.is_empty(), "{due:?}");
}

/// Arrivals stored after the clock stepped back, with no claim before a restart, are due at
/// once after it: the lead the step set is stored with the accepts that saw it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_arrivals_stored_once_the_clock_stepped_back_are_due_at_once() {
    let dir = TempDir::new("clock-back-accepts");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let fast = NewItem::from_delivery(&bwp("evt_ahead"), Vec::new(), now_ms() + HOUR);
    let fast = stored_item(&inbox, fast).await;
    let wall = stored(&inbox, &bwp("evt_wall")).await;
    drop(inbox);
    let reopened = SqliteInbox::open(dir.file()).unwrap();
    let c = reopened.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap();
    let mut ids: Vec<_> = c.iter().map(|i| i.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, [fast, wall]);
}

/// Due times and lease ends are read back on the wall clock, not on the writer's timeline
/// (which runs ahead after the clock stepped back): a new arrival is shown due at its arrival,
/// a running item's lease ending a lease from its claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_times_are_shown_on_the_wall_clock_after_the_clock_stepped_back() {
    let (dir, inbox, fast, claimed_at) = stepped_back_an_hour("clock-back-shown").await;
    let after = stored(&inbox, &bwp("evt_after")).await;
    for reader in [inbox.clone(), SqliteInbox::open_read_only(dir.file()).unwrap()] {
        let shown = reader.get(after).await.unwrap().unwrap();
        let wait = shown.next_attempt_at_ms - shown.received_at_ms;
        assert!((0..1_000).contains(&wait), "{wait}");
        let running = reader.get(fast.id).await.unwrap().unwrap();
        let lease = running.next_attempt_at_ms - claimed_at;
        assert!((30_000..31_000).contains(&lease), "{lease}");
        let listed = reader.list(ListFilter::default()).await.unwrap();
        let listed = listed.iter().find(|r| r.id == after).unwrap();
        assert_eq!(listed.next_attempt_at_ms, shown.next_attempt_at_ms);
    }
}

/// `purge_every(Duration::MAX)` means "never", not a worker that dies on its first purge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_never_purges_still_works() {
    let dir = TempDir::new("never-purge");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let id = stored(&inbox, &bwp("evt_never_purge")).await;
    let store: Arc<dyn InboxStore> = Arc::new(inbox.clone());
    let worker = Worker::builder(store, |_item: ClaimedItem| async move { Ok::<(), HandlerError>(()) })
        .purge_every(Duration::MAX)
        .poll_interval(Duration::from_millis(20))
        .spawn();
    wait_for(&inbox, id, InboxState::Done).await;
    worker.shutdown().await;
}

/// A handler that counts its calls and gives `answer()` each time.
fn counting(
    answer: fn() -> Result<(), HandlerError>,
) -> (
    Arc<AtomicU32>,
    impl Fn(ClaimedItem) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static,
) {
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    (calls, move |_item: ClaimedItem| {
        c.fetch_add(1, Ordering::SeqCst);
        std::future::ready(answer())
    })
}

/// Settings at their extremes: a concurrency beyond what a semaphore counts (the worker's task
/// panicked and nothing ran) and `max_attempts` 0 set on the public field (every item went
/// dead unrun) still run an item, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_worker_settings_still_run_every_item_once() {
    let dir = TempDir::new("extreme-settings");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let id = stored(&inbox, &bwp("evt_extreme")).await;
    let (calls, handler) = counting(|| Ok(()));
    let mut none = RetryPolicy::default();
    none.max_attempts = 0;
    let store: Arc<dyn InboxStore> = Arc::new(inbox.clone());
    let worker = Worker::builder(store, handler)
        .concurrency(usize::MAX)
        .retry(none)
        .poll_interval(Duration::from_millis(20))
        .spawn();
    wait_for(&inbox, id, InboxState::Done).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    worker.shutdown().await;
}

/// A retry policy with no delay does not claim, fail and write again at full speed: a retry
/// waits 50 ms at least.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_retry_delay_is_no_busy_loop() {
    let dir = TempDir::new("zero-delay");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    stored(&inbox, &bwp("evt_zero_delay")).await;
    let (calls, handler) = counting(|| Err(HandlerError::new("boom")));
    let store: Arc<dyn InboxStore> = Arc::new(inbox.clone());
    let worker = Worker::builder(store, handler)
        .retry(RetryPolicy::new(Duration::ZERO, Duration::ZERO, u32::MAX))
        .poll_interval(Duration::from_millis(20))
        .spawn();
    tokio::time::sleep(Duration::from_secs(1)).await;
    worker.shutdown().await;
    let n = calls.load(Ordering::SeqCst);
    assert!((1..=30).contains(&n), "{n} attempts in a second");
}

/// A deferral holds no claim: a stop does not wait it out (it took the whole grace period,
/// and with an unbounded grace the whole delay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_does_not_wait_out_a_deferral() {
    let dir = TempDir::new("stop-deferral");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let id = stored(&inbox, &bwp("evt_deferred_at_stop")).await;
    let store: Arc<dyn InboxStore> = Arc::new(inbox.clone());
    let worker = Worker::builder(store, |_item: ClaimedItem| async move {
        Err::<(), HandlerError>(HandlerError::defer("downstream full", Duration::from_secs(60)))
    })
    .shutdown_grace(Duration::from_secs(30))
    .poll_interval(Duration::from_millis(20))
    .spawn();
    // Deferred: pending again, the attempt not counted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rec = inbox.get(id).await.unwrap().unwrap();
        if rec.state == InboxState::Pending && rec.last_error.is_none() && rec.next_attempt_at_ms > now_ms() + 30_000 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not deferred: {rec:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopping = std::time::Instant::now();
    worker.shutdown().await;
    assert!(stopping.elapsed() < Duration::from_secs(5), "{:?}", stopping.elapsed());
}

/// A handler still running when its lease ends on the store's clock (the wall clock jumped
/// ahead, a suspended machine resumed) is not run a second time beside it: the worker's next
/// claim hands the item to the running attempt, which settles it under that claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_ended_by_a_clock_jump_does_not_run_the_handler_twice_at_once() {
    let dir = TempDir::new("clock-jump");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let id = stored(&inbox, &bwp("evt_jump")).await;
    let jump = Arc::new(AtomicI64::new(0));
    let z = Duration::ZERO;
    let store: Arc<dyn InboxStore> = Arc::new(LateClaims(inbox.clone(), z, z, z, Arc::clone(&jump)));
    let (runs, now_running, peak) = (
        Arc::new(AtomicU32::new(0)),
        Arc::new(AtomicU32::new(0)),
        Arc::new(AtomicU32::new(0)),
    );
    let (r, n, p) = (Arc::clone(&runs), Arc::clone(&now_running), Arc::clone(&peak));
    let worker = Worker::builder(store, move |_item: ClaimedItem| {
        let (r, n, p) = (Arc::clone(&r), Arc::clone(&n), Arc::clone(&p));
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            p.fetch_max(n.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(600)).await;
            n.fetch_sub(1, Ordering::SeqCst);
            Ok::<(), HandlerError>(())
        }
    })
    .lease(Duration::from_secs(30))
    .poll_interval(Duration::from_millis(20))
    .spawn();
    while runs.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Ten minutes ahead: the 30 s lease has ended on the store's clock.
    jump.store(600_000, Ordering::SeqCst);
    wait_for(&inbox, id, InboxState::Done).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    worker.shutdown().await;
    assert_eq!((runs.load(Ordering::SeqCst), peak.load(Ordering::SeqCst)), (1, 1));
    let rec = inbox.get(id).await.unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.attempts),
        (InboxState::Done, 2),
        "settled under the second claim"
    );
}

/// The real inbox whose answers arrive late (a busy file, a long checkpoint, a large purge):
/// claims that found items by `.1` (the lease is taken when the claim runs), deferrals by `.2`
/// after the item was given back — due at once, as the trait's default `defer` does — and
/// purges by `.3` after they ran. Claims see the wall clock `.4` ms ahead (a clock that jumped).
struct LateClaims(SqliteInbox, Duration, Duration, Duration, Arc<AtomicI64>);

impl InboxStore for LateClaims {
    fn accept(&self, item: NewItem) -> InboxFuture<'_, Accepted> {
        self.0.accept(item)
    }
    fn claim(&self, now_ms: i64, lease: Duration, limit: u32) -> InboxFuture<'_, Vec<ClaimedItem>> {
        Box::pin(async move {
            let now_ms = now_ms.saturating_add(self.4.load(Ordering::SeqCst));
            let items = self.0.claim(now_ms, lease, limit).await?;
            if !items.is_empty() {
                tokio::time::sleep(self.1).await;
            }
            Ok(items)
        })
    }
    fn complete(&self, claim: ClaimRef, now_ms: i64) -> InboxFuture<'_, bool> {
        self.0.complete(claim, now_ms)
    }
    fn fail(&self, claim: ClaimRef, error: &str, retry_at_ms: Option<i64>, now_ms: i64) -> InboxFuture<'_, bool> {
        self.0.fail(claim, error, retry_at_ms, now_ms)
    }
    fn release(&self, claim: ClaimRef) -> InboxFuture<'_, bool> {
        self.0.release(claim)
    }
    fn defer(&self, claim: ClaimRef, _until_ms: i64) -> InboxFuture<'_, bool> {
        Box::pin(async move {
            let given = self.0.release(claim).await?;
            tokio::time::sleep(self.2).await;
            Ok(given)
        })
    }
    fn get(&self, id: i64) -> InboxFuture<'_, Option<hookguard_core::inbox::InboxRecord>> {
        self.0.get(id)
    }
    fn list(&self, filter: ListFilter) -> InboxFuture<'_, Vec<hookguard_core::inbox::InboxRecord>> {
        self.0.list(filter)
    }
    fn replay(&self, id: i64, now_ms: i64) -> InboxFuture<'_, ()> {
        self.0.replay(id, now_ms)
    }
    fn replay_dead(&self, now_ms: i64) -> InboxFuture<'_, u64> {
        self.0.replay_dead(now_ms)
    }
    fn purge(&self, before_ms: i64, include_dead: bool) -> InboxFuture<'_, u64> {
        Box::pin(async move {
            let n = self.0.purge(before_ms, include_dead).await?;
            tokio::time::sleep(self.3).await;
            Ok(n)
        })
    }
    fn stats(&self) -> InboxFuture<'_, hookguard_core::inbox::InboxStats> {
        self.0.stats()
    }
}

/// An answer about a claim that lost its item never settles a later claim carrying the same
/// attempt number: a completion retried after its lease ended, while the item was claimed
/// again, went dead, was replayed (its count back to zero) and claimed once more; a claim
/// given back (a deferral, a shutdown) and claimed again.
#[tokio::test]
async fn a_late_answer_never_settles_a_later_claim_with_the_same_attempt_number() {
    let dir = TempDir::new("late-answer");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let id = stored(&inbox, &bwp("evt_late_answer")).await;
    let t = now_ms();
    let first = inbox.claim(t, Duration::from_millis(100), 1).await.unwrap();
    let second = inbox.claim(t + 200, Duration::from_secs(30), 1).await.unwrap();
    assert_eq!((first[0].attempt, second[0].attempt), (1, 2));
    assert!(inbox.fail(second[0].claim(), "boom", None, t + 300).await.unwrap());
    inbox.replay(id, t + 400).await.unwrap();
    let third = inbox.claim(t + 500, Duration::from_secs(30), 1).await.unwrap();
    assert_eq!(
        (third[0].id, third[0].attempt),
        (id, 1),
        "the first claim's number again"
    );
    assert!(
        !inbox.complete(first[0].claim(), t + 600).await.unwrap(),
        "late completion"
    );
    assert!(!inbox.fail(first[0].claim(), "late", None, t + 600).await.unwrap());
    assert!(!inbox.defer(first[0].claim(), t + 60_000).await.unwrap());
    assert_eq!(inbox.get(id).await.unwrap().unwrap().state, InboxState::Running);
    // Given back uncounted and claimed again: the same number, a later lease.
    assert!(inbox.release(third[0].claim()).await.unwrap());
    let fourth = inbox.claim(t + 700, Duration::from_secs(30), 1).await.unwrap();
    assert_eq!(fourth[0].attempt, third[0].attempt);
    assert!(!inbox.complete(third[0].claim(), t + 800).await.unwrap(), "given back");
    assert_eq!(inbox.get(id).await.unwrap().unwrap().state, InboxState::Running);
    assert!(inbox.complete(fourth[0].claim(), t + 800).await.unwrap());
    assert_eq!(inbox.get(id).await.unwrap().unwrap().state, InboxState::Done);
}

/// The periodic purge runs beside the claims: a purge that takes long (a first purge of a
/// large backlog runs batches until one comes back short) holds back neither deliveries nor
/// shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_purge_holds_back_neither_deliveries_nor_shutdown() {
    let dir = TempDir::new("long-purge");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let done = stored(&inbox, &bwp("evt_purged")).await;
    let c = inbox.claim(now_ms(), Duration::from_secs(30), 1).await.unwrap();
    assert!(inbox.complete(c[0].claim(), now_ms()).await.unwrap());
    // Past a retention of zero once the clock has moved on.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let late = LateClaims(
        inbox.clone(),
        Duration::ZERO,
        Duration::ZERO,
        Duration::from_secs(60),
        Arc::default(),
    );
    let store: Arc<dyn InboxStore> = Arc::new(late);
    let worker = Worker::builder(store, |_item: ClaimedItem| async move { Ok::<(), HandlerError>(()) })
        .retention(Duration::ZERO)
        .poll_interval(Duration::from_millis(20))
        .spawn();
    // The purge ran (it answers a minute later) …
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while inbox.get(done).await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the worker did not purge");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // … and meanwhile a new delivery is handled, and shutdown does not wait for the purge.
    let id = stored(&inbox, &bwp("evt_beside_purge")).await;
    wait_for(&inbox, id, InboxState::Done).await;
    tokio::time::timeout(Duration::from_secs(5), worker.shutdown())
        .await
        .expect("shutdown waited for the purge");
}

/// A handler must end within 90 % of the lease counted from its claim, not from the claim's
/// answer: a claim answered 0.6 s late under a 1 s lease leaves a 0.5 s handler too little
/// time (it would still run when the lease ends and another worker may claim the item).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_deadline_counts_from_the_claim() {
    let dir = TempDir::new("late-claim");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let id = stored(&inbox, &bwp("evt_late_claim")).await;
    let store: Arc<dyn InboxStore> = Arc::new(LateClaims(
        inbox.clone(),
        Duration::from_millis(600),
        Duration::ZERO,
        Duration::ZERO,
        Arc::default(),
    ));
    let worker = Worker::builder(store, |_item: ClaimedItem| async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok::<(), HandlerError>(())
    })
    .lease(Duration::from_secs(1))
    .retry(quick_retries(1))
    .poll_interval(Duration::from_millis(20))
    .spawn();
    wait_for(&inbox, id, InboxState::Dead).await;
    let error = inbox.get(id).await.unwrap().unwrap().last_error.unwrap();
    assert!(error.contains("did not finish"), "{error}");
    worker.shutdown().await;
}

/// A claim answered after the handler's deadline (here 1.2 s late under a 1 s lease, whose
/// deadline is 0.9 s: the lease is over, another process may have claimed the item) does not
/// start the handler: `handle` and its future's first poll ran before the timeout could stop
/// them (a review; `--exec` spawned its command there). Given back without counting an
/// attempt, never dead; a claim answered in time runs it, once.
#[test]
fn a_claim_answered_past_the_deadline_does_not_start_the_handler() {
    // On this thread alone (a current-thread runtime), so its log is this test's.
    let logs = hookguard_core::testing::Logs::default();
    tracing::subscriber::with_default(logs.clone(), || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(past_the_deadline());
    });
    // Said, since nothing runs while claims answer that late.
    let warned = logs.messages(tracing::Level::WARN);
    assert!(
        warned.iter().any(|m| m.contains("after its handler's deadline")),
        "{warned:?}"
    );
}

async fn past_the_deadline() {
    let dir = TempDir::new("past-deadline");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let id = stored(&inbox, &bwp("evt_past_deadline")).await;
    let calls = Arc::new(AtomicU32::new(0));
    let handler = |calls: Arc<AtomicU32>| {
        move |_item: ClaimedItem| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<(), HandlerError>(()) }
        }
    };
    let late: Arc<dyn InboxStore> = Arc::new(LateClaims(
        inbox.clone(),
        Duration::from_millis(1200),
        Duration::ZERO,
        Duration::ZERO,
        Arc::default(),
    ));
    let worker = Worker::builder(late, handler(Arc::clone(&calls)))
        .lease(Duration::from_secs(1))
        .retry(quick_retries(1))
        .poll_interval(Duration::from_millis(20))
        .spawn();
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    worker.shutdown().await;
    assert_eq!(calls.load(Ordering::SeqCst), 0, "started past its deadline");
    assert_ne!(inbox.get(id).await.unwrap().unwrap().state, InboxState::Dead);
    let store: Arc<dyn InboxStore> = Arc::new(inbox.clone());
    let worker = Worker::builder(store, handler(Arc::clone(&calls)))
        .lease(Duration::from_secs(1))
        .poll_interval(Duration::from_millis(20))
        .spawn();
    wait_for(&inbox, id, InboxState::Done).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_back_claims_of_handlers_that_do_not_finish() {
    let dir = TempDir::new("shutdown");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let id = stored(&inbox, &bwp("evt_long")).await;
    let store: Arc<dyn InboxStore> = Arc::new(inbox.clone());
    let worker = Worker::builder(store, |_item: ClaimedItem| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<(), HandlerError>(())
    })
    .shutdown_grace(Duration::from_millis(100))
    .poll_interval(Duration::from_millis(20))
    .spawn();
    wait_for(&inbox, id, InboxState::Running).await;
    worker.shutdown().await;
    let rec = inbox.get(id).await.unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.attempts),
        (InboxState::Pending, 0),
        "given back, attempt not counted"
    );
}

/// At shutdown the claims of handlers that did not finish are given back all at once, not one
/// round trip after another: here each give-back waits until all four are under way.
#[tokio::test]
async fn shutdown_gives_back_every_held_claim_at_once() {
    let dir = TempDir::new("shutdown-all");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(stored(&inbox, &bwp(&format!("evt_long_{i}"))).await);
    }
    let faulty = Arc::new(Faulty {
        releases_meet: Some(tokio::sync::Barrier::new(4)),
        ..Faulty::new(&inbox)
    });
    let store: Arc<dyn InboxStore> = faulty.clone();
    let worker = Worker::builder(store, |_item: ClaimedItem| async move {
        tokio::time::sleep(Duration::from_secs(300)).await;
        Ok::<(), HandlerError>(())
    })
    .concurrency(4)
    .shutdown_grace(Duration::from_millis(100))
    .poll_interval(Duration::from_millis(20))
    .spawn();
    for &id in &ids {
        wait_for(&inbox, id, InboxState::Running).await;
    }
    // A hang guard, not a timing assertion: given back one at a time, the first never returns.
    tokio::time::timeout(Duration::from_secs(20), worker.shutdown())
        .await
        .expect("the give-backs never met: they ran one at a time");
    for id in ids {
        assert_eq!(inbox.get(id).await.unwrap().unwrap().state, InboxState::Pending);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accept_wakes_the_worker_without_waiting_for_a_poll() {
    let dir = TempDir::new("wake");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let store: Arc<dyn InboxStore> = Arc::new(inbox.clone());
    let worker = Worker::builder(store, |_item: ClaimedItem| async move { Ok::<(), HandlerError>(()) })
        .poll_interval(Duration::from_secs(3600))
        .spawn();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let id = stored(&inbox, &bwp("evt_wake")).await;
    tokio::time::timeout(Duration::from_secs(5), wait_for(&inbox, id, InboxState::Done))
        .await
        .expect("handled without a poll");
    worker.shutdown().await;
}

/// A failed item waiting out a long retry (an hour, `--retry-max`'s default) is run now by a
/// replay, its attempts reset — the operator fixed the handler — and it is still one pending
/// item against the cap; a running item is not replayed (it may be running right now).
#[tokio::test]
async fn a_replay_runs_an_item_waiting_for_its_retry_now() {
    let dir = TempDir::new("replay-pending");
    let inbox = SqliteInbox::builder(dir.file()).max_pending(2).open().unwrap();
    let id = stored(&inbox, &bwp("evt_waits")).await;
    let t = now_ms();
    let c = inbox.claim(t, Duration::from_secs(30), 10).await.unwrap();
    assert!(inbox
        .fail(c[0].claim(), "downstream refused", Some(t + 3_600_000), t)
        .await
        .unwrap());
    assert!(inbox
        .claim(now_ms(), Duration::from_secs(30), 10)
        .await
        .unwrap()
        .is_empty());
    inbox.replay(id, now_ms()).await.unwrap();
    let rec = inbox.get(id).await.unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.attempts, rec.last_error),
        (InboxState::Pending, 0, None)
    );
    // Still one pending item: one more fits under the cap of 2, a third does not.
    stored(&inbox, &bwp("evt_second")).await;
    assert!(matches!(
        inbox.accept(item(&bwp("evt_third"))).await,
        Err(InboxError::Full { .. })
    ));
    let c = inbox.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap();
    assert_eq!(c.len(), 2, "due now");
    let running = c.iter().find(|i| i.id == id).unwrap();
    assert_eq!(running.attempt, 1);
    assert!(matches!(
        inbox.replay(id, now_ms()).await,
        Err(InboxError::WrongState {
            state: InboxState::Running,
            ..
        })
    ));
}

/// An HCSS item (copies recognised only while it waits) waiting out a retry takes its key
/// back when replayed, as the PostgreSQL inbox does: an identical copy is a duplicate again.
#[tokio::test]
async fn a_replayed_pending_hcss_item_coalesces_copies_again() {
    let dir = TempDir::new("replay-pending-hcss");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let id = stored(&inbox, &hcss_setups("e_replayed")).await;
    let t = now_ms();
    let c = inbox.claim(t, Duration::from_secs(30), 10).await.unwrap();
    assert!(inbox.fail(c[0].claim(), "later", Some(t + 3_600_000), t).await.unwrap());
    inbox.replay(id, now_ms()).await.unwrap();
    let copy = inbox.accept(item(&hcss_setups("e_replayed"))).await.unwrap();
    assert!(matches!(copy, Accepted::Duplicate(d) if d == id), "{copy:?}");
}

/// `hookguard inbox list|show|stats` open a second handle on the file while `serve` writes to
/// it. Their reads must never take SQLite's write lock: `serve`'s writer would wait for it and
/// answer deliveries 503 meanwhile. Here a raw connection holds the write lock (as `serve`'s
/// writer does mid-batch) for as long as the reads take; a read that needed it would fail
/// after the busy timeout.
#[tokio::test]
async fn reads_from_a_second_handle_never_take_the_write_lock() {
    let dir = TempDir::new("readers");
    let serving = SqliteInbox::open(dir.file()).unwrap();
    let id = stored(&serving, &bwp("evt_read_1")).await;
    let writer = rusqlite::Connection::open(dir.file()).unwrap();
    writer.execute_batch("BEGIN IMMEDIATE").unwrap();
    let cli = SqliteInbox::open_existing(dir.file()).unwrap();
    assert!(cli.get(id).await.unwrap().is_some());
    assert_eq!(cli.list(ListFilter::default()).await.unwrap().len(), 1);
    assert_eq!(cli.stats().await.unwrap().pending, 1);
    writer.execute_batch("COMMIT").unwrap();
    // Writes still go through (once the lock is free).
    cli.replay(id, now_ms()).await.unwrap();
}

/// The same on a file whose timeline floor was never stored (made before it was kept): the
/// first read of a new handle stored it, asking for the write lock another process held.
#[tokio::test]
async fn a_first_read_of_an_older_file_takes_no_write_lock_either() {
    let dir = TempDir::new("readers-older");
    let serving = SqliteInbox::open(dir.file()).unwrap();
    let id = stored(&serving, &bwp("evt_read_old")).await;
    let writer = rusqlite::Connection::open(dir.file()).unwrap();
    writer
        .execute("DELETE FROM hookguard_inbox_meta WHERE name = 'timeline_floor'", [])
        .unwrap();
    writer.execute_batch("BEGIN IMMEDIATE").unwrap();
    let cli = SqliteInbox::open_existing(dir.file()).unwrap();
    assert!(cli.get(id).await.unwrap().is_some());
    writer.execute_batch("COMMIT").unwrap();
}

#[tokio::test]
async fn list_filters_by_state_and_provider() {
    let dir = TempDir::new("list");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    for i in 0..5 {
        stored(&inbox, &bwp(&format!("evt_{i}"))).await;
    }
    stored(&inbox, &hcss_setups("x")).await;
    let all = inbox.list(ListFilter::default()).await.unwrap();
    assert_eq!(all.len(), 6);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let hcss = inbox.list(ListFilter::default().provider("hcss")).await.unwrap();
    assert_eq!(hcss.len(), 1);
    assert_eq!(hcss[0].event_type.as_deref(), Some("EmployeeUpdated"));
    assert!(inbox
        .list(ListFilter::default().state(InboxState::Dead))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(inbox.list(ListFilter::default().limit(2)).await.unwrap().len(), 2);
}

/// A real full disk: a 1 MiB tmpfs. Accepts fail (never "stored") while it is full, and work
/// again once space returns.
#[tokio::test]
async fn a_full_disk_refuses_accepts_and_recovers() {
    let dir = TempDir::new("full");
    let mnt = dir.0.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .status()
        .expect("run mount");
    assert!(
        ok.success(),
        "mounting a tmpfs needs root (as on CI and these machines)"
    );
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let inbox = SqliteInbox::open(mnt.join("inbox.db")).unwrap();
    stored(&inbox, &bwp("before")).await;
    // Fill the disk.
    let filler = mnt.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        while f.write_all(&chunk).and_then(|_| f.sync_all()).is_ok() {}
    }
    let mut refused = 0;
    for i in 0..50 {
        let body = format!(
            r#"{{"id":"full_{i}","type":"bid.accepted","pad":"{}"}}"#,
            "x".repeat(4096)
        );
        let d = testing::deliver_bytes(BuildWorkPro::new(), "whsec_k", body).unwrap();
        match inbox.accept(item(&d)).await {
            Ok(Accepted::Stored(id)) => {
                // Whatever was answered "stored" must really be there.
                assert!(inbox.get(id).await.unwrap().is_some());
            }
            Ok(other) => panic!("{other:?}"),
            Err(e) => {
                assert!(matches!(e, InboxError::Storage(_)), "{e}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "a full disk must refuse accepts");
    std::fs::remove_file(&filler).unwrap();
    stored(&inbox, &bwp("after")).await;
    let stats = inbox.stats().await.unwrap();
    assert!(stats.pending >= 2, "{stats:?}");
}

/// The WAL is copied into the file once it holds `checkpoint_pages` pages, not at SQLite's
/// 1,000, and never grows far beyond the setting.
#[tokio::test]
async fn the_wal_is_checkpointed_at_the_configured_size() {
    async fn wal_after_300_accepts(dir: &TempDir, pages: Option<u32>) -> u64 {
        let mut b = SqliteInbox::builder(dir.file());
        if let Some(p) = pages {
            b = b.checkpoint_pages(p);
        }
        let inbox = b.open().unwrap();
        for i in 0..300 {
            let body = format!(
                r#"{{"id":"wal_{i}","type":"bid.accepted","pad":"{}"}}"#,
                "x".repeat(4096)
            );
            let d = testing::deliver_bytes(BuildWorkPro::new(), "whsec_k", body).unwrap();
            stored(&inbox, &d).await;
        }
        let wal = std::fs::metadata(format!("{}-wal", dir.file().display()))
            .unwrap()
            .len();
        drop(inbox);
        wal
    }
    // 300 accepts one at a time write about 1,900 WAL frames of 4,120 bytes (the body's
    // overflow page and the leaves each commit rewrites): SQLite's default would stop at
    // about 1,000.
    let small = wal_after_300_accepts(&TempDir::new("wal-small"), Some(50)).await;
    assert!(small < 100 * 4200, "a 50-page interval kept a WAL of {small} bytes");
    let default = wal_after_300_accepts(&TempDir::new("wal-default"), None).await;
    assert!(
        default > 1_400 * 4120,
        "the default interval (4,000 pages) should let the WAL pass SQLite's 1,000 pages here: {default} bytes"
    );
}

async fn wait_for(inbox: &SqliteInbox, id: i64, state: InboxState) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rec = inbox.get(id).await.unwrap().unwrap();
        if rec.state == state {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "item {id} stuck in {} (want {state})",
            rec.state
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A BuildWorkPro delivery of about `pad` bytes.
fn bwp_padded(id: &str, pad: usize) -> Delivery {
    let body = format!(r#"{{"id":"{id}","type":"bid.accepted","pad":"{}"}}"#, "x".repeat(pad));
    testing::deliver_bytes(BuildWorkPro::new(), "whsec_k", body).unwrap()
}

/// Another process's connection holding the file's write lock until dropped.
struct WriteLock(rusqlite::Connection);

impl WriteLock {
    fn take(file: &std::path::Path) -> WriteLock {
        let c = rusqlite::Connection::open(file).unwrap();
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        WriteLock(c)
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        let _ = self.0.execute_batch("COMMIT");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_held_up_fails_accepts_within_the_bound_and_goes_on() {
    // Another process holding the write lock makes the writer wait its busy timeout (5 s)
    // per batch, and an accept queued behind a waiting batch waited for both: past Procore's
    // 5 s, so the sender counted a timeout instead of getting 503 + Retry-After.
    let dir = TempDir::new("held-up");
    let inbox = SqliteInbox::builder(dir.file())
        .operation_timeout(Duration::from_secs(1))
        .open()
        .unwrap();
    stored(&inbox, &bwp("evt_before")).await;
    let lock = WriteLock::take(&dir.file());
    let started = std::time::Instant::now();
    let first = inbox.accept(item(&bwp("evt_held_1")));
    let second = inbox.accept(item(&bwp("evt_held_2")));
    let claim = inbox.claim(now_ms(), Duration::from_secs(60), 10);
    assert!(first.await.is_err());
    assert!(second.await.is_err());
    assert!(claim.await.is_err());
    // Each within its bound (1 s), far from the two busy waits (10 s) they sat behind.
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    drop(lock);
    // The writer goes on: the retries are stored (or found stored, had a batch got through).
    for id in ["evt_held_1", "evt_held_2", "evt_after"] {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match inbox.accept(item(&bwp(id))).await {
                Ok(Accepted::Stored(_) | Accepted::Duplicate(_)) => break,
                other => assert!(std::time::Instant::now() < deadline, "{id}: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The claim that timed out took nothing: evt_before is not left `running` for a lease
    // that nobody holds.
    let claimed = inbox.claim(now_ms(), Duration::from_secs(60), 10).await.unwrap();
    let ids: Vec<&str> = claimed.iter().filter_map(|i| i.delivery.event_id()).collect();
    assert!(ids.contains(&"evt_before"), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_waiting_for_the_writer_are_bounded_in_bytes() {
    // The queue held 16,384 operations, each with its whole body: behind a stalled disk, up to
    // 16 GiB of 1 MiB deliveries. Now a byte budget refuses at once what does not fit.
    let dir = TempDir::new("queue-bytes");
    let inbox = SqliteInbox::builder(dir.file())
        .queue_bytes(1 << 20)
        .operation_timeout(Duration::from_secs(30))
        .open()
        .unwrap();
    let lock = WriteLock::take(&dir.file());
    // The first is taken by the writer, which then waits for the lock; the rest queue up.
    let mut waiting = vec![tokio::spawn({
        let inbox = inbox.clone();
        async move { inbox.accept(item(&bwp_padded("evt_0", 64 * 1024))).await }
    })];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = 0;
    for i in 1..40 {
        let accept = inbox.accept(item(&bwp_padded(&format!("evt_{i}"), 64 * 1024)));
        match tokio::time::timeout(Duration::from_millis(20), accept).await {
            Ok(Err(InboxError::Storage(e))) if e.to_string().contains("behind") => refused += 1,
            Ok(other) => panic!("{i}: {other:?}"),
            // Queued: its answer comes once the lock is gone.
            Err(_) => {}
        }
    }
    // About 1 MiB of 64 KiB deliveries (16) queued; the other 23 or so refused at once.
    assert!((20..=26).contains(&refused), "{refused}");
    drop(lock);
    waiting.pop().unwrap().await.unwrap().unwrap();
    // Once the writer took them, there is room again.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while inbox.accept(item(&bwp_padded("evt_after", 64 * 1024))).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the budget was not given back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_inbox_file_removed_while_open_stores_nothing_more() {
    // SQLite goes on writing into a file deleted or renamed under it: every accept after that
    // was answered "stored" and was gone at the next start.
    for victim in ["inbox.db", "inbox.db-wal"] {
        let dir = TempDir::new("removed");
        let inbox = SqliteInbox::open(dir.file()).unwrap();
        stored(&inbox, &bwp("evt_kept")).await;
        std::fs::rename(dir.0.join(victim), dir.0.join(format!("{victim}.moved"))).unwrap();
        for id in ["evt_lost_1", "evt_lost_2"] {
            match inbox.accept(item(&bwp(id))).await {
                Err(InboxError::Storage(e)) => assert!(e.to_string().contains("removed or replaced"), "{e}"),
                other => panic!("{victim} moved: {id} answered {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn another_applications_database_is_refused_unchanged() {
    // `serve --inbox app.db` pointed at the application's own database added the inbox's
    // tables to it and switched it to WAL for good.
    let dir = TempDir::new("foreign");
    let app = dir.0.join("app.db");
    let c = rusqlite::Connection::open(&app).unwrap();
    c.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('a');")
        .unwrap();
    drop(c);
    match SqliteInbox::open(&app) {
        Err(InboxError::Storage(e)) => assert!(e.to_string().contains("something else"), "{e}"),
        other => panic!("{other:?}"),
    }
    let c = rusqlite::Connection::open(&app).unwrap();
    let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "delete", "the journal mode was changed");
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(tables, ["users"]);
    // An empty file, and a database with no tables yet, become inboxes.
    std::fs::write(dir.0.join("empty.db"), b"").unwrap();
    stored(&SqliteInbox::open(dir.0.join("empty.db")).unwrap(), &bwp("evt_e")).await;
    drop(rusqlite::Connection::open(dir.0.join("blank.db")).unwrap());
    stored(&SqliteInbox::open(dir.0.join("blank.db")).unwrap(), &bwp("evt_b")).await;
    // And an inbox opens again.
    let again = SqliteInbox::open(dir.0.join("empty.db")).unwrap();
    assert!(matches!(
        again.accept(item(&bwp("evt_e"))).await,
        Ok(Accepted::Duplicate(_))
    ));
}

/// Processes opening one new file at once (replicas of `serve` started together, an `inbox`
/// command beside a starting `serve`) all open it: the layout check and the stamp wait for the
/// write lock as every write does (a transaction that read first could not wait for it, and
/// failed "database is locked").
#[test]
fn openers_of_one_new_file_at_once_all_open_it() {
    for round in 0..5 {
        let dir = TempDir::new(&format!("openers-{round}"));
        let path = dir.file();
        let barrier = Arc::new(std::sync::Barrier::new(6));
        let openers: Vec<_> = (0..6)
            .map(|_| {
                let (path, barrier) = (path.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    SqliteInbox::open(&path).map(drop)
                })
            })
            .collect();
        for opener in openers {
            if let Err(e) = opener.join().unwrap() {
                panic!("round {round}: {e}");
            }
        }
    }
}

/// A sender's copy of a dead item's event (a resend from its dashboard once the handler was
/// fixed, or its retry after an answer it never got) runs the event again: the item is pending
/// again with its attempts reset, answered `Stored` with its id. It was answered `duplicate`
/// and stayed dead, so the resend did nothing. Copies of pending, running or done items stay
/// duplicates; at the pending cap a copy of a dead item is refused like a new item.
#[tokio::test]
async fn a_copy_of_a_dead_item_puts_it_back_to_pending() {
    let dir = TempDir::new("dead-copy");
    let inbox = SqliteInbox::builder(dir.file()).max_pending(2).open().unwrap();
    let dead = stored(&inbox, &bwp("evt_dead")).await;
    all_dead(&inbox).await;
    let done = stored(&inbox, &bwp("evt_done")).await;
    for c in inbox.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap() {
        assert!(inbox.complete(c.claim(), now_ms()).await.unwrap());
    }
    assert_eq!(
        inbox.accept(item(&bwp("evt_done"))).await.unwrap(),
        Accepted::Duplicate(done)
    );

    assert_eq!(
        inbox.accept(item(&bwp("evt_dead"))).await.unwrap(),
        Accepted::Stored(dead)
    );
    let rec = inbox.get(dead).await.unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.attempts, rec.last_error),
        (InboxState::Pending, 0, None)
    );
    assert_eq!(inbox.stats().await.unwrap().pending, 1);
    // Pending again: a further copy is a duplicate, and the claim hands out the stored body.
    assert_eq!(
        inbox.accept(item(&bwp("evt_dead"))).await.unwrap(),
        Accepted::Duplicate(dead)
    );
    let claimed = inbox.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!((claimed[0].id, claimed[0].attempt), (dead, 1));
    assert_eq!(claimed[0].delivery.body(), bwp("evt_dead").body());
    assert!(inbox
        .fail(claimed[0].claim(), "still refused", None, now_ms())
        .await
        .unwrap());

    // At the cap (two pending), the dead item's copy is refused; a pending one's is recognised.
    stored(&inbox, &bwp("evt_p1")).await;
    let p2 = stored(&inbox, &bwp("evt_p2")).await;
    assert!(matches!(
        inbox.accept(item(&bwp("evt_dead"))).await,
        Err(InboxError::Full { limit: 2 })
    ));
    assert_eq!(
        inbox.accept(item(&bwp("evt_p2"))).await.unwrap(),
        Accepted::Duplicate(p2)
    );
    assert_eq!(inbox.get(dead).await.unwrap().unwrap().state, InboxState::Dead);
}

/// Every open names the file's layout (`user_version`): an inbox of a layout this build does
/// not write is refused with a clear error and left as it was. The first development builds
/// kept each body in its item's row; such a file opened, then failed every accept (`503`
/// until the sender's kill switch), and a newer layout could be misread by an older build.
#[tokio::test]
async fn an_inbox_of_a_layout_this_build_does_not_know_is_refused_unchanged() {
    let dir = TempDir::new("layouts");
    let facts = |path: &std::path::Path| {
        let c = rusqlite::Connection::open(path).unwrap();
        let get = |q: &str| c.query_row(q, [], |r| r.get::<_, i64>(0)).unwrap();
        let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        (
            get("PRAGMA user_version"),
            get("PRAGMA application_id"),
            get("SELECT count(*) FROM sqlite_master"),
            mode,
        )
    };
    let refused = |path: &std::path::Path, says: &str| {
        let before = facts(path);
        for (how, opened) in [
            ("open", SqliteInbox::open(path).map(drop)),
            ("open_existing", SqliteInbox::open_existing(path).map(drop)),
            ("open_read_only", SqliteInbox::open_read_only(path).map(drop)),
        ] {
            match opened {
                Err(InboxError::Storage(e)) => assert!(e.to_string().contains(says), "{how}: {e}"),
                other => panic!("{how}: {other:?}"),
            }
        }
        assert_eq!(facts(path), before, "the file was changed");
    };

    // A newer hookguard's inbox.
    let newer = dir.0.join("newer.db");
    drop(SqliteInbox::open(&newer).unwrap());
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute_batch("PRAGMA user_version = 2")
        .unwrap();
    refused(&newer, "newer hookguard (layout 2");

    // An inbox's tables in a file another application stamped as its own, and a layout no
    // hookguard writes: neither is taken over nor re-stamped.
    for (name, pragma, says) in [
        (
            "foreign.db",
            "PRAGMA application_id = 1234",
            "something else (application id 0x4d2)",
        ),
        (
            "negative.db",
            "PRAGMA user_version = -1",
            "layout no hookguard writes (-1)",
        ),
    ] {
        let path = dir.0.join(name);
        drop(SqliteInbox::open(&path).unwrap());
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(pragma)
            .unwrap();
        refused(&path, says);
    }

    // The first development builds' layout: each body in its item's row, no body table.
    let early = dir.0.join("early.db");
    rusqlite::Connection::open(&early)
        .unwrap()
        .execute_batch(
            "CREATE TABLE hookguard_inbox (id INTEGER PRIMARY KEY, provider TEXT NOT NULL, dedupe_key TEXT,
                 unique_key TEXT, scope INTEGER NOT NULL DEFAULT 0, event_id TEXT, event_type TEXT,
                 state INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, received_at INTEGER NOT NULL,
                 next_attempt_at INTEGER NOT NULL, finished_at INTEGER, last_error TEXT,
                 headers TEXT NOT NULL, body BLOB NOT NULL);
             INSERT INTO hookguard_inbox (provider, state, received_at, next_attempt_at, headers, body)
                 VALUES ('buildworkpro', 0, 1, 1, '[]', x'7b7d');",
        )
        .unwrap();
    refused(&early, "early development build");

    // An inbox of this layout made before layouts were recorded opens, keeps its deliveries,
    // and is stamped; a new file is stamped at once.
    let current = dir.0.join("current.db");
    let inbox = SqliteInbox::open(&current).unwrap();
    let (version, app, ..) = facts(&current);
    assert_eq!((version, app), (1, 0x686b_6764));
    stored(&inbox, &bwp("evt_kept")).await;
    drop(inbox);
    rusqlite::Connection::open(&current)
        .unwrap()
        .execute_batch("PRAGMA user_version = 0; PRAGMA application_id = 0;")
        .unwrap();
    let inbox = SqliteInbox::open_existing(&current).unwrap();
    assert!(matches!(
        inbox.accept(item(&bwp("evt_kept"))).await,
        Ok(Accepted::Duplicate(_))
    ));
    let (version, app, ..) = facts(&current);
    assert_eq!((version, app), (1, 0x686b_6764));
}

/// A delivery stored after its sender stopped waiting (the body came slowly, the disk was
/// slow) is answered `200 accepted`, but the sender counted a timeout: sender health counts a
/// failure toward its kill switch, from the request's arrival, not from the end of its body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_after_the_sender_stopped_waiting_counts_as_a_failure() {
    use hookguard_core::http;
    use hookguard_core::{Receiver, RequestHead, Scheme, SignParams};
    let dir = TempDir::new("late-accept");
    let rx: Receiver = Receiver::builder(BuildWorkPro::new())
        .secret("whsec_k")
        .inbox(SqliteInbox::open(dir.file()).unwrap())
        .build()
        .unwrap()
        // Below the builder's 1 s minimum, so the test is quick: set on the receiver itself.
        .with_sender_timeout(Duration::from_millis(200));
    let (m, u) = (http::Method::POST, http::Uri::from_static("/webhooks"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let answer = |id: &str, arrived: std::time::Instant| {
        let body = hookguard_core::bytes::Bytes::from(format!(r#"{{"id":"{id}","type":"bid.accepted"}}"#));
        let signed = BuildWorkPro::new()
            .sign("whsec_k", &body, &SignParams::new(now))
            .unwrap();
        let rx = &rx;
        let (m, u) = (&m, &u);
        async move {
            let mut headers = http::HeaderMap::new();
            headers.extend(signed.headers);
            let head = RequestHead::new(m, u, &headers);
            match rx.admit_since(&head, body, arrived).await {
                Err(answer) => answer.status(),
                Ok(_) => panic!("inbox mode answers without a handler"),
            }
        }
    };
    assert_eq!(answer("evt_in_time", std::time::Instant::now()).await, 200);
    assert_eq!(rx.health().consecutive_failures(), 0);
    let long_ago = std::time::Instant::now() - Duration::from_millis(300);
    assert_eq!(answer("evt_late", long_ago).await, 200);
    assert_eq!(
        rx.health().consecutive_failures(),
        1,
        "stored, but after the sender's timeout"
    );
    assert_eq!(answer("evt_late", long_ago).await, 200, "a copy, as late");
    assert_eq!(rx.health().consecutive_failures(), 2);
    assert_eq!(answer("evt_again_in_time", std::time::Instant::now()).await, 200);
    assert_eq!(rx.health().consecutive_failures(), 0);
}

/// A real inbox with faults put in: a claim asking for more than `claims_up_to` items fails (as
/// one whose items' bodies outlast a statement timeout would), and every done mark fails when
/// `done_marks_fail`. The limit of every claim and the time of every done mark are recorded.
struct Faulty {
    inbox: SqliteInbox,
    claims_up_to: u32,
    /// Each claim waits this long before the store claims (a busy store).
    claims_take: Duration,
    done_marks_fail: bool,
    /// Give-backs wait here until as many are under way as the barrier counts.
    releases_meet: Option<tokio::sync::Barrier>,
    limits: Mutex<Vec<u32>>,
    done_marks: Mutex<Vec<std::time::Instant>>,
}

impl Faulty {
    fn new(inbox: &SqliteInbox) -> Self {
        Faulty {
            inbox: inbox.clone(),
            claims_up_to: u32::MAX,
            claims_take: Duration::ZERO,
            done_marks_fail: false,
            releases_meet: None,
            limits: Mutex::default(),
            done_marks: Mutex::default(),
        }
    }
}

impl InboxStore for Faulty {
    fn accept(&self, item: NewItem) -> InboxFuture<'_, Accepted> {
        self.inbox.accept(item)
    }
    fn claim(&self, now_ms: i64, lease: Duration, limit: u32) -> InboxFuture<'_, Vec<ClaimedItem>> {
        self.limits.lock().unwrap().push(limit);
        if limit > self.claims_up_to {
            return Box::pin(async {
                Err(InboxError::Storage(
                    "canceling statement due to statement timeout".into(),
                ))
            });
        }
        if self.claims_take.is_zero() {
            return self.inbox.claim(now_ms, lease, limit);
        }
        Box::pin(async move {
            tokio::time::sleep(self.claims_take).await;
            self.inbox.claim(now_ms, lease, limit).await
        })
    }
    fn complete(&self, claim: ClaimRef, now_ms: i64) -> InboxFuture<'_, bool> {
        self.done_marks.lock().unwrap().push(std::time::Instant::now());
        if self.done_marks_fail {
            return Box::pin(async { Err(InboxError::Storage("disk I/O error".into())) });
        }
        self.inbox.complete(claim, now_ms)
    }
    fn fail(&self, claim: ClaimRef, error: &str, retry_at_ms: Option<i64>, now_ms: i64) -> InboxFuture<'_, bool> {
        self.inbox.fail(claim, error, retry_at_ms, now_ms)
    }
    fn release(&self, claim: ClaimRef) -> InboxFuture<'_, bool> {
        Box::pin(async move {
            if let Some(meet) = &self.releases_meet {
                meet.wait().await;
            }
            self.inbox.release(claim).await
        })
    }
    fn defer(&self, claim: ClaimRef, until_ms: i64) -> InboxFuture<'_, bool> {
        self.inbox.defer(claim, until_ms)
    }
    fn get(&self, id: i64) -> InboxFuture<'_, Option<hookguard_core::inbox::InboxRecord>> {
        self.inbox.get(id)
    }
    fn list(&self, filter: ListFilter) -> InboxFuture<'_, Vec<hookguard_core::inbox::InboxRecord>> {
        self.inbox.list(filter)
    }
    fn replay(&self, id: i64, now_ms: i64) -> InboxFuture<'_, ()> {
        self.inbox.replay(id, now_ms)
    }
    fn replay_dead(&self, now_ms: i64) -> InboxFuture<'_, u64> {
        self.inbox.replay_dead(now_ms)
    }
    fn purge(&self, before_ms: i64, include_dead: bool) -> InboxFuture<'_, u64> {
        self.inbox.purge(before_ms, include_dead)
    }
    fn stats(&self) -> InboxFuture<'_, hookguard_core::inbox::InboxStats> {
        self.inbox.stats()
    }
    fn notified(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        self.inbox.notified()
    }
}

/// A claim that fails for its size (more items than the store can return within its bounds)
/// is asked again for fewer items, so the worker goes on handling the backlog instead of
/// failing the same claim every poll forever; and it keeps to the size that worked for a
/// while (growing back at once would fail every other claim: on PostgreSQL, a statement
/// timeout each).
#[tokio::test]
async fn a_claim_that_fails_is_asked_again_for_fewer_items() {
    let dir = TempDir::new("claim-size");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    for i in 0..12 {
        stored(&inbox, &bwp(&format!("evt_claim_size_{i}"))).await;
    }
    let faulty = Arc::new(Faulty {
        claims_up_to: 2,
        ..Faulty::new(&inbox)
    });
    let handled = Arc::new(AtomicU32::new(0));
    let h = Arc::clone(&handled);
    let store: Arc<dyn InboxStore> = faulty.clone();
    let worker = Worker::builder(store, move |_item: ClaimedItem| {
        let h = Arc::clone(&h);
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            Ok::<(), HandlerError>(())
        }
    })
    .concurrency(8)
    .poll_interval(Duration::from_millis(20))
    .spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while handled.load(Ordering::SeqCst) < 12 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of 12 handled; the last claims asked for {:?}",
            handled.load(Ordering::SeqCst),
            faulty.limits.lock().unwrap().iter().rev().take(5).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.shutdown().await;
    let limits = faulty.limits.lock().unwrap().clone();
    assert_eq!(limits[..3], [8, 4, 2], "{limits:?}");
    assert!(
        limits[3..].iter().all(|&l| l <= 2),
        "no claim too large again: {limits:?}"
    );
    assert_eq!(inbox.stats().await.unwrap().done, 12);
}

/// Receivers of different senders may share one inbox, each with its own handler: a worker
/// told its providers claims only their items (it used to run every item, the other sender's
/// through its own handler), and a claim naming none takes every item as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_only_the_items_of_its_own_senders() {
    let dir = TempDir::new("providers");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let hcss = stored(&inbox, &hcss_setups("emp-1")).await;
    let bwp_ids = [
        stored(&inbox, &bwp("evt_own_1")).await,
        stored(&inbox, &bwp("evt_own_2")).await,
    ];
    // The store: only the named senders' items, first due first; the others stay pending.
    let now = hookguard_core::inbox::now_ms();
    let named = ["buildworkpro".to_owned()];
    let claimed = inbox.claim_of(&named, now, Duration::from_secs(60), 10).await.unwrap();
    assert_eq!(claimed.iter().map(|i| i.id).collect::<Vec<_>>(), bwp_ids);
    for c in &claimed {
        assert!(inbox.release(c.claim()).await.unwrap());
    }
    assert!(inbox
        .claim_of(&["procore".to_owned()], now, Duration::from_secs(60), 10)
        .await
        .unwrap()
        .is_empty());

    // The worker: BuildWorkPro's items handled, HCSS's left for its own receiver.
    let ran: Arc<Mutex<Vec<String>>> = Arc::default();
    let r = Arc::clone(&ran);
    let store: Arc<dyn InboxStore> = Arc::new(inbox.clone());
    let worker = Worker::builder(store, move |item: ClaimedItem| {
        let r = Arc::clone(&r);
        async move {
            r.lock().unwrap().push(item.delivery.provider().as_str().to_owned());
            Ok::<(), HandlerError>(())
        }
    })
    .providers([hookguard_core::Provider::BuildWorkPro])
    .poll_interval(Duration::from_millis(20))
    .spawn();
    for id in bwp_ids {
        wait_for(&inbox, id, InboxState::Done).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    worker.shutdown().await;
    assert_eq!(*ran.lock().unwrap(), ["buildworkpro", "buildworkpro"]);
    assert_eq!(inbox.get(hcss).await.unwrap().unwrap().state, InboxState::Pending);

    // With no providers named, every item is claimed, as before.
    let claimed = inbox.claim(now_ms_now(), Duration::from_secs(60), 10).await.unwrap();
    assert_eq!(claimed.iter().map(|i| i.id).collect::<Vec<_>>(), [hcss]);
}

/// Workers of different senders on one inbox are each woken by an accept: with one woken (the
/// first to wait), the other sender's worker claimed nothing and the right one slept until its
/// poll (here an hour).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accept_wakes_the_worker_of_its_own_sender() {
    let dir = TempDir::new("wake-own");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let start = |p: hookguard_core::Provider| {
        let store: Arc<dyn InboxStore> = Arc::new(inbox.clone());
        Worker::builder(store, |_item: ClaimedItem| async { Ok::<(), HandlerError>(()) })
            .providers([p])
            .poll_interval(Duration::from_secs(3600))
            .spawn()
    };
    // HCSS's worker waits first.
    let other = start(hookguard_core::Provider::Hcss);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let own = start(hookguard_core::Provider::BuildWorkPro);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id = stored(&inbox, &bwp("evt_wake_own")).await;
    let handled = tokio::time::timeout(Duration::from_secs(5), wait_for(&inbox, id, InboxState::Done)).await;
    other.shutdown().await;
    own.shutdown().await;
    handled.expect("its own sender's worker was not woken");
}

fn now_ms_now() -> i64 {
    hookguard_core::inbox::now_ms()
}

/// A stop is seen under a backlog too: there every claim comes back full and, with handlers
/// returning while the next claim waits for the store, a handler slot is free again at once,
/// so the claim loop never reached the waits where it looked for a stop and `shutdown` waited
/// for the whole backlog. Here claims take 20 ms and are cut to 2 of the 4 slots (the claim
/// size after a failed claim, as a statement timeout makes it on PostgreSQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_under_a_backlog_stops_claiming() {
    let dir = TempDir::new("stop-backlog");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    for i in 0..300 {
        stored(&inbox, &bwp(&format!("evt_stop_backlog_{i}"))).await;
    }
    let faulty = Arc::new(Faulty {
        claims_up_to: 2,
        claims_take: Duration::from_millis(20),
        ..Faulty::new(&inbox)
    });
    let store: Arc<dyn InboxStore> = faulty.clone();
    let worker = Worker::builder(store, |_item: ClaimedItem| async move { Ok::<(), HandlerError>(()) })
        .concurrency(4)
        .poll_interval(Duration::from_millis(20))
        .spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while inbox.stats().await.unwrap().done < 6 {
        assert!(std::time::Instant::now() < deadline, "the worker never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.shutdown().await;
    let stats = inbox.stats().await.unwrap();
    assert!(
        stats.pending > 200,
        "shutdown waited for the backlog: {} done, {} pending",
        stats.done,
        stats.pending
    );
    assert_eq!(stats.running, 0, "every claim settled or given back");
}

/// A handler's future that panics when it is dropped (after its timeout: outside the handler's
/// own `catch_unwind`).
struct PanicsWhenDropped;

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        panic!("the handler's future panicked when dropped");
    }
}

/// An attempt that panics outside the handler's own `catch_unwind` (here the handler's future
/// panics when it is dropped after its timeout) leaves the item to its lease, and the item
/// runs again after it. The worker used to keep the item marked as running here, and skipped
/// every later claim of it as a copy of a running handler: it never ran again nor went dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_that_panics_outside_its_handler_runs_again_after_the_lease() {
    let dir = TempDir::new("panic-drop");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let id = stored(&inbox, &bwp("evt_panic_drop")).await;
    let store: Arc<dyn InboxStore> = Arc::new(inbox.clone());
    let runs = Arc::new(AtomicU32::new(0));
    let r = Arc::clone(&runs);
    let worker = Worker::builder(store, move |_item: ClaimedItem| {
        let first = r.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if first {
                let _guard = PanicsWhenDropped;
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            Ok::<(), HandlerError>(())
        }
    })
    .lease(Duration::from_millis(300))
    .handler_timeout(Duration::from_millis(100))
    .poll_interval(Duration::from_millis(20))
    .spawn();
    wait_for(&inbox, id, InboxState::Done).await;
    worker.shutdown().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(inbox.get(id).await.unwrap().unwrap().attempts, 2);
}

/// The claim of an attempt that panicked outside its handler is given back at shutdown (it was
/// given back only when the shutdown's grace ran out, and otherwise waited out its lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_back_the_claim_of_an_attempt_that_panicked() {
    let dir = TempDir::new("panic-give-back");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let id = stored(&inbox, &bwp("evt_panic_give_back")).await;
    let store: Arc<dyn InboxStore> = Arc::new(inbox.clone());
    let dropped = Arc::new(AtomicU32::new(0));
    let d = Arc::clone(&dropped);
    let worker = Worker::builder(store, move |_item: ClaimedItem| {
        let d = Arc::clone(&d);
        async move {
            struct Count(Arc<AtomicU32>);
            impl Drop for Count {
                fn drop(&mut self) {
                    self.0.fetch_add(1, Ordering::SeqCst);
                }
            }
            let _guard = PanicsWhenDropped;
            let _count = Count(d);
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<(), HandlerError>(())
        }
    })
    .lease(Duration::from_secs(60))
    .handler_timeout(Duration::from_millis(100))
    .poll_interval(Duration::from_millis(20))
    .spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while dropped.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "the handler never timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.shutdown().await;
    let rec = inbox.get(id).await.unwrap().unwrap();
    assert_eq!(rec.state, InboxState::Pending, "given back at shutdown");
}

/// A done mark that keeps failing is tried five times, 0.1, 0.2, 0.4 and 0.8 s apart, and
/// then its settling slot is freed at once for the next item's outcome (it used to wait 1.6 s
/// more after the last try); the item is left to its lease. The handler's own slot is free
/// while the outcome is recorded: the next item runs meanwhile, and no further one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_done_mark_is_tried_five_times_then_frees_its_slot_at_once() {
    let dir = TempDir::new("done-mark");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let first = stored(&inbox, &bwp("evt_done_mark_1")).await;
    stored(&inbox, &bwp("evt_done_mark_2")).await;
    stored(&inbox, &bwp("evt_done_mark_3")).await;
    let faulty = Arc::new(Faulty {
        done_marks_fail: true,
        ..Faulty::new(&inbox)
    });
    let started: Arc<Mutex<Vec<(String, std::time::Instant)>>> = Arc::default();
    let store: Arc<dyn InboxStore> = faulty.clone();
    let s = Arc::clone(&started);
    let worker = Worker::builder(store, move |item: ClaimedItem| {
        let s = Arc::clone(&s);
        async move {
            let id = item.delivery.event_id().unwrap_or_default().to_owned();
            s.lock().unwrap().push((id, std::time::Instant::now()));
            Ok::<(), HandlerError>(())
        }
    })
    .concurrency(1)
    .lease(Duration::from_secs(60))
    .poll_interval(Duration::from_millis(20))
    .spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while faulty.done_marks.lock().unwrap().len() < 6 {
        assert!(
            std::time::Instant::now() < deadline,
            "the second item's done mark never came"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.shutdown().await;
    let tries = faulty.done_marks.lock().unwrap().clone();
    let started = started.lock().unwrap().clone();
    let gaps: Vec<Duration> = tries[..5].windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, want) in gaps.iter().zip([100, 200, 400, 800]) {
        assert!(*gap >= Duration::from_millis(want), "{gaps:?}");
    }
    // The second item ran while the first's outcome was still being recorded (its handler's
    // slot was free), and its own done mark came right after the first's fifth try.
    assert!(started[1].1 < tries[4], "the next handler waited for the done mark");
    // Bounded: one handler and one outcome at once (concurrency 1), so the third item waited
    // until the second's outcome could be recorded.
    assert!(
        started[2..].iter().all(|(_, at)| *at > tries[4]),
        "more items held than one handler and one outcome: {started:?}"
    );
    assert!(
        tries[5] - tries[4] < Duration::from_millis(600),
        "settling slot freed {:?} after the last try",
        tries[5] - tries[4]
    );
    assert_eq!(
        inbox.get(first).await.unwrap().unwrap().state,
        InboxState::Running,
        "left to its lease"
    );
}

/// Replaying every dead item stops where pending items fill half the pending cap, so new
/// deliveries are still accepted; the rest stay dead for a later replay. The cap is recorded
/// in the file: opened again without one (as the `hookguard inbox` commands do), it holds.
#[tokio::test]
async fn replaying_dead_items_leaves_half_the_pending_cap_for_new_deliveries() {
    let dir = TempDir::new("replay-cap");
    let inbox = SqliteInbox::builder(dir.file()).max_pending(10).open().unwrap();
    for round in 0..2 {
        for i in 0..3 {
            stored(&inbox, &bwp(&format!("evt_replay_cap_{round}_{i}"))).await;
        }
        all_dead(&inbox).await;
    }
    assert_eq!(inbox.stats().await.unwrap().dead, 6);
    stored(&inbox, &bwp("evt_replay_cap_new")).await;
    drop(inbox);
    // As the `hookguard inbox` commands open it: with the cap recorded by the one serving it.
    let inbox = SqliteInbox::open_existing(dir.file()).unwrap();
    assert_eq!(
        inbox.replay_dead(now_ms()).await.unwrap(),
        4,
        "up to half the cap of 10"
    );
    let s = inbox.stats().await.unwrap();
    assert_eq!((s.pending, s.dead), (5, 2));
    for i in 0..5 {
        stored(&inbox, &bwp(&format!("evt_replay_cap_after_{i}"))).await;
    }
    assert!(matches!(
        inbox.accept(item(&bwp("evt_replay_cap_over"))).await,
        Err(InboxError::Full { limit: 10 })
    ));
}

/// Half an odd cap is rounded up: a cap of 1 still lets one dead item back when nothing is
/// pending, a cap of 3 two.
#[tokio::test]
async fn half_an_odd_pending_cap_is_rounded_up() {
    for (cap, replayed) in [(1, 1), (3, 2)] {
        let dir = TempDir::new(&format!("replay-odd-{cap}"));
        let inbox = SqliteInbox::builder(dir.file()).max_pending(cap).open().unwrap();
        for i in 0..3 {
            stored(&inbox, &bwp(&format!("evt_odd_{cap}_{i}"))).await;
            all_dead(&inbox).await;
        }
        assert_eq!(inbox.replay_dead(now_ms()).await.unwrap(), replayed, "cap {cap}");
    }
}

/// The cap recorded in the file binds only a tool that opens the inbox to look into it
/// (`open_existing`, `keep_recorded_cap`): an application opening it with its own settings
/// (the default included) sets its own. A recorded cap of 0 is kept as 0.
#[tokio::test]
async fn only_tools_keep_the_recorded_pending_cap() {
    let dir = TempDir::new("recorded-cap");
    drop(SqliteInbox::builder(dir.file()).max_pending(0).open().unwrap());
    let tool = SqliteInbox::open_existing(dir.file()).unwrap();
    assert!(matches!(
        tool.accept(item(&bwp("evt_cap_zero"))).await,
        Err(InboxError::Full { limit: 0 })
    ));
    drop(tool);
    let app = SqliteInbox::open(dir.file()).unwrap();
    stored(&app, &bwp("evt_cap_default")).await;
    drop(app);
    let tool = SqliteInbox::builder(dir.file()).keep_recorded_cap().open().unwrap();
    for i in 0..3 {
        stored(&tool, &bwp(&format!("evt_cap_recorded_{i}"))).await;
    }
}

/// Failed attempts' retries wake the claim loop when due, long before its poll, without a
/// sleeping task per failure: an outage of the handler's downstream failing hundreds of items
/// left as many tasks alive, each sleeping up to the longest retry delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_retry_when_due_without_a_task_each() {
    let dir = TempDir::new("retry-wakes");
    let inbox = SqliteInbox::open(dir.file()).unwrap();
    let n = 300u32;
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(stored(&inbox, &bwp(&format!("evt_retry_wake_{i}"))).await);
    }
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let store: Arc<dyn InboxStore> = Arc::new(inbox.clone());
    let worker = Worker::builder(store, move |item: ClaimedItem| {
        c.fetch_add(1, Ordering::SeqCst);
        // The first attempt of each fails; its retry succeeds.
        let answer = if item.attempt == 1 {
            Err(HandlerError::new("downstream down"))
        } else {
            Ok(())
        };
        std::future::ready(answer)
    })
    .concurrency(8)
    .retry(RetryPolicy::new(Duration::from_secs(2), Duration::from_secs(2), 3))
    .poll_interval(Duration::from_secs(600))
    .spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while calls.load(Ordering::SeqCst) < n {
        assert!(tokio::time::Instant::now() < deadline, "first attempts not made");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Every first attempt failed and waits for its retry, about 2 s off.
    let alive = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    assert!(alive < 50, "{alive} tasks alive for {n} retries waiting");
    // The poll is 10 minutes off: only the retries' wake-ups bring them back.
    for id in ids {
        wait_for(&inbox, id, InboxState::Done).await;
    }
    worker.shutdown().await;
}
