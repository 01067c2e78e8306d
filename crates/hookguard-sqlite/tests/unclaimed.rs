//! An inbox accepted into with no worker running says so: the WARN of
//! `SqliteInboxBuilder::unclaimed_warning`, from the writer thread, on a real file. A binary of
//! its own: the WARN is counted by a process-wide subscriber (the writer is another thread).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hookguard_core::inbox::{now_ms, Accepted, ClaimedItem, InboxStore, NewItem, Worker};
use hookguard_core::schemes::BuildWorkPro;
use hookguard_core::testing::{self, Logs};
use hookguard_sqlite::SqliteInbox;

/// The WARNs so far that said no worker claims the inbox's items.
fn unclaimed(logs: &Logs) -> Vec<String> {
    let mut warned = logs.messages(tracing::Level::WARN);
    warned.retain(|m| m.contains("no worker has claimed"));
    warned
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp(name: &str) -> TempDir {
    let p = std::env::temp_dir().join(format!("hg-unclaimed-{name}-{}-{}", std::process::id(), now_ms()));
    std::fs::create_dir_all(&p).unwrap();
    TempDir(p)
}

fn item(id: &str, received_at: i64) -> NewItem {
    let body = format!(r#"{{"id":"{id}","type":"bid.accepted"}}"#);
    let d = testing::deliver_bytes(BuildWorkPro::new(), "whsec_k", body).unwrap();
    NewItem::from_delivery(&d, Vec::new(), received_at)
}

async fn accept(inbox: &SqliteInbox, item: NewItem) {
    assert!(matches!(inbox.accept(item).await.unwrap(), Accepted::Stored(_)));
}

/// Both cases in one test: the subscriber is the process's, set once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_with_no_worker_says_so_and_one_with_a_worker_does_not() {
    let logs = Logs::default();
    tracing::subscriber::set_global_default(logs.clone()).unwrap();
    let after = Duration::from_millis(300);

    // No worker: an item due ten minutes ago (a backlog nobody takes) is warned about by the
    // first check, once `after` has passed since the open, naming the sender; the next check
    // comes only once `after` has passed again.
    let dir = temp("none");
    let inbox = SqliteInbox::builder(dir.0.join("inbox.db"))
        .unclaimed_warning(after)
        .open()
        .unwrap();
    accept(&inbox, item("evt_old", now_ms() - 600_000)).await;
    assert!(unclaimed(&logs).is_empty(), "no check before `after` has passed");
    tokio::time::sleep(after + Duration::from_millis(100)).await;
    accept(&inbox, item("evt_new_1", now_ms())).await;
    // Written by the writer once it has answered the batch.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while unclaimed(&logs).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no WARN about the unclaimed item");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let said = unclaimed(&logs);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("buildworkpro item has been due for 60"), "{said:?}");
    accept(&inbox, item("evt_new_2", now_ms())).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(unclaimed(&logs).len(), 1, "checked at most once per `after`");
    drop(inbox);

    // With a worker taking every item as it comes: accepts for three times `after`, no WARN.
    let before = unclaimed(&logs);
    let dir = temp("worker");
    let inbox = SqliteInbox::builder(dir.0.join("inbox.db"))
        .unclaimed_warning(after)
        .open()
        .unwrap();
    let store: Arc<dyn InboxStore> = Arc::new(inbox.clone());
    let worker = Worker::builder(store, |_item: ClaimedItem| async { Ok(()) })
        .poll_interval(Duration::from_millis(20))
        .spawn();
    for i in 0..45 {
        accept(&inbox, item(&format!("evt_w_{i}"), now_ms())).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown().await;
    assert_eq!(unclaimed(&logs), before);
    drop(inbox);

    // An item given back (a worker stopping, a claim whose answer nobody collected) is due
    // from its give-back: a review found it stored due at 0, read by the check as unclaimed
    // for 55 years, whatever the setting — a WARN with a worker gone a moment ago.
    let after = Duration::from_secs(1);
    let dir = temp("given_back");
    let inbox = SqliteInbox::builder(dir.0.join("inbox.db"))
        .unclaimed_warning(after)
        .open()
        .unwrap();
    accept(&inbox, item("evt_back", now_ms())).await;
    let claimed = inbox.claim(now_ms(), Duration::from_secs(60), 1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    tokio::time::sleep(after + Duration::from_millis(100)).await;
    assert!(inbox.release(claimed[0].claim()).await.unwrap());
    // The first check, after this batch of accepts: the item given back waited a moment.
    accept(&inbox, item("evt_after", now_ms())).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(unclaimed(&logs), before, "no WARN for an item given back a moment ago");
}
