//! Replicas that accept into a PostgreSQL inbox with no worker running say so: the WARN of
//! `PgInboxBuilder::unclaimed_warning`, from the inbox's background task, against a real
//! PostgreSQL (`$HOOKGUARD_POSTGRES_URL`). A binary of its own: the WARN is counted by a
//! process-wide subscriber.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookguard_core::inbox::{now_ms, Accepted, ClaimedItem, InboxStore, NewItem, Worker};
use hookguard_core::schemes::BuildWorkPro;
use hookguard_core::testing::{self, Logs};
use hookguard_postgres::PgInbox;
use sqlx::postgres::PgPoolOptions;

fn url() -> String {
    std::env::var("HOOKGUARD_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A schema of its own, dropped at the end.
struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        // Bounded: a session a failed test left in a transaction on the schema would otherwise
        // hold this drop, and the whole test binary, for ever.
        let _ = Command::new("psql")
            .arg(url())
            .env("PGOPTIONS", "-c lock_timeout=10000")
            .args(["-qc", &format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.0)])
            .output();
    }
}

/// A schema of its own for one part of the test (`hg_unclaimed_{part}_…`).
fn schema(part: &str) -> Schema {
    Schema(format!(
        "hg_unclaimed_{part}_{}_{}",
        std::process::id(),
        now_ms() % 1_000_000
    ))
}

/// The WARNs so far that said no worker claims the inbox's items.
fn unclaimed(logs: &Logs) -> Vec<String> {
    let mut warned = logs.messages(tracing::Level::WARN);
    warned.retain(|m| m.contains("no worker has claimed"));
    warned
}

async fn inbox(schema: &str, after: Duration) -> PgInbox {
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(1))
        .connect(&url())
        .await
        .expect("PostgreSQL reachable (scripts/test.sh starts one)");
    PgInbox::builder()
        .schema(schema)
        .unclaimed_warning(after)
        .open(pool)
        .await
        .unwrap()
}

fn item(id: &str) -> NewItem {
    let body = format!(r#"{{"id":"{id}","type":"bid.accepted"}}"#);
    let d = testing::deliver_bytes(BuildWorkPro::new(), "whsec_k", body).unwrap();
    NewItem::from_delivery(&d, Vec::new(), now_ms())
}

async fn accept(inbox: &PgInbox, id: &str) {
    assert!(matches!(inbox.accept(item(id)).await.unwrap(), Accepted::Stored(_)));
}

/// Both cases in one test: the subscriber is the process's, set once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_no_worker_say_so_and_with_a_worker_do_not() {
    let logs = Logs::default();
    tracing::subscriber::set_global_default(logs.clone()).unwrap();
    let after = Duration::from_millis(300);

    // No worker: an accepted item waits; a check after a later accept warns about it.
    let none = schema("none");
    let a = inbox(&none.0, after).await;
    accept(&a, "evt_waits").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    accept(&a, "evt_later").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while unclaimed(&logs).is_empty() {
        assert!(Instant::now() < deadline, "no WARN about the unclaimed item");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(a);

    // A worker taking every item as it comes: accepts for three times `after`, no WARN. Here
    // `after` is a second: a worker polling every 20 ms can lag 300 ms behind an accept on a
    // loaded machine (a slow commit), and that is no missing worker.
    let after = Duration::from_secs(1);
    let before = unclaimed(&logs);
    let with = schema("with");
    let b = inbox(&with.0, after).await;
    let store: Arc<dyn InboxStore> = Arc::new(b.clone());
    // One item's handler runs through several checks: a running item with a live lease is
    // not waiting for anyone.
    let worker = Worker::builder(store, |item: ClaimedItem| async move {
        if item.delivery.event_id() == Some("evt_slow") {
            tokio::time::sleep(Duration::from_millis(2500)).await;
        }
        Ok(())
    })
    .poll_interval(Duration::from_millis(20))
    .spawn();
    accept(&b, "evt_slow").await;
    for i in 0..150 {
        accept(&b, &format!("evt_w_{i}")).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(after).await;
    worker.shutdown().await;
    assert_eq!(unclaimed(&logs), before);
    drop(b);

    // At the pending cap with no worker, every delivery is refused (503) and none is stored: a
    // review found the checks stopped there (only a stored accept asked for one), so the
    // WARN never came — exactly when no worker runs. Checks every second from the open: the
    // one at 2 s sees the item 0.7 s old (no WARN yet), the one at 3 s, after a refused
    // accept, 1.7 s old.
    let full = schema("full");
    let pool = PgPoolOptions::new().max_connections(4).connect(&url()).await.unwrap();
    let c = PgInbox::builder()
        .schema(&full.0)
        .unclaimed_warning(Duration::from_secs(1))
        .max_pending(1)
        .open(pool)
        .await
        .unwrap();
    let opened = Instant::now();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let asked = Instant::now();
    accept(&c, "evt_capped").await;
    tokio::time::sleep(Duration::from_millis(2300).saturating_sub(opened.elapsed())).await;
    // Only while the item is surely younger than a second (a loaded machine may wake this
    // task later than asked, after a check that rightly warned).
    if asked.elapsed() < Duration::from_millis(950) {
        assert_eq!(unclaimed(&logs), before, "the item had not waited a second yet");
    }
    assert!(matches!(
        c.accept(item("evt_refused")).await,
        Err(hookguard_core::inbox::InboxError::Full { .. })
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    while unclaimed(&logs) == before {
        assert!(
            Instant::now() < deadline,
            "no WARN while every delivery is refused at the cap"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(c);

    // An inbox whose runtime stops while a check waits (here on a table lock): the check's
    // task is dropped with that runtime, and the checks go on where the inbox is used next (a
    // check left marked as running stopped them for the life of the inbox).
    let moved = schema("moved");
    let before = unclaimed(&logs);
    let (opened_tx, opened) = std::sync::mpsc::channel();
    let name = moved.0.clone();
    let home = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let pool = PgPoolOptions::new().max_connections(4).connect(&url()).await.unwrap();
            let d = PgInbox::builder()
                .schema(&name)
                .unclaimed_warning(Duration::from_millis(300))
                .operation_timeout(Duration::from_secs(30))
                .open(pool)
                .await
                .unwrap();
            opened_tx.send(d).unwrap();
            // Driven while the test makes a check start and wait.
            tokio::time::sleep(Duration::from_secs(3)).await;
        });
    });
    let d = opened.recv().unwrap();
    accept(&d, "evt_moved_1").await;
    let locker = PgPoolOptions::new().max_connections(1).connect(&url()).await.unwrap();
    let mut lock = locker.begin().await.unwrap();
    sqlx::query(&format!(
        "LOCK TABLE \"{}\".hookguard_inbox IN ACCESS EXCLUSIVE MODE",
        moved.0
    ))
    .execute(&mut *lock)
    .await
    .unwrap();
    home.join().unwrap();
    lock.commit().await.unwrap();
    assert_eq!(unclaimed(&logs), before, "the check waited on the lock");
    accept(&d, "evt_moved_2").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while unclaimed(&logs) == before {
        assert!(
            Instant::now() < deadline,
            "no WARN once the inbox's runtime stopped during a check"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
