//! The PostgreSQL inbox against a real PostgreSQL: `$HOOKGUARD_POSTGRES_URL` (scripts/test.sh
//! sets it; default the local server), each test in its own schema. The outage test starts a
//! private server of its own, so it can stop and start it.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::{http::StatusCode, routing::post, Router};
use hookguard_core::clock::ManualClock;
use hookguard_core::inbox::{
    now_ms, Accepted, ClaimRef, ClaimedItem, HandlerError, InboxError, InboxState, InboxStore, NewItem, RetryPolicy,
    Worker,
};
use hookguard_core::schemes::{BuildWorkPro, Hcss};
use hookguard_core::{testing, Delivery, Scheme, SignParams};
use hookguard_postgres::{transactional, PgInbox, PgPool, TxFuture, TxHandler};
use hookguard_tower::WebhookLayer;
use sqlx::postgres::PgPoolOptions;

const NOW: u64 = 1_700_000_000;
const SECRET: &str = "whsec_pg";

fn url() -> String {
    std::env::var("HOOKGUARD_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A schema of its own for one test, dropped at the end of it.
struct Schema(String);

impl std::ops::Deref for Schema {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

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

fn schema(name: &str) -> Schema {
    Schema(format!("hg_{name}_{}_{}", std::process::id(), now_ms() % 1_000_000))
}

async fn pool_at(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(1))
        .connect(url)
        .await
        .expect("PostgreSQL reachable (scripts/test.sh starts one)")
}

async fn inbox(schema: &str) -> PgInbox {
    PgInbox::builder()
        .schema(schema)
        .open(pool_at(&url()).await)
        .await
        .unwrap()
}

/// [`inbox`] with a cap on pending items.
async fn capped_inbox(schema: &str, max_pending: u64) -> PgInbox {
    PgInbox::builder()
        .schema(schema)
        .max_pending(max_pending)
        .open(pool_at(&url()).await)
        .await
        .unwrap()
}

fn bwp(id: &str) -> Delivery {
    testing::deliver_bytes(
        BuildWorkPro::new(),
        "whsec_k",
        format!(r#"{{"id":"{id}","type":"bid.accepted"}}"#),
    )
    .unwrap()
}

fn hcss(entity: &str) -> Delivery {
    let body = format!(r#"{{"companyId":"c","eventType":"EmployeeUpdated","businessUnitId":"b","id":"{entity}"}}"#);
    // HCSS's default scheme: the token travels in the URL query, as HCSS sends it.
    testing::deliver_bytes(Hcss::new(), "tok", body).unwrap()
}

fn item(d: &Delivery) -> NewItem {
    NewItem::from_delivery(d, vec![("content-type".into(), "application/json".into())], now_ms())
}

/// A replay of a pending item waiting out a retry (as the SQLite inbox does it): it stays one
/// pending item against the cap, and an HCSS item (copies recognised only while it waits)
/// takes its key back, so an identical copy is a duplicate again, not a second run.
#[tokio::test]
async fn a_replayed_pending_item_counts_once_and_coalesces_again() {
    let s = schema("replay_pending");
    let a = capped_inbox(&s, 2).await;
    let id = match a.accept(item(&hcss("e_replayed"))).await.unwrap() {
        Accepted::Stored(id) => id,
        other => panic!("{other:?}"),
    };
    let c = claimed(&a, now_ms(), 10).await;
    assert!(a
        .fail(c[0].claim(), "later", Some(now_ms() + 3_600_000), now_ms())
        .await
        .unwrap());
    // Claimed and failed: its copies are new edits now (HCSS Setups carry no time).
    a.replay(id, now_ms()).await.unwrap();
    let copy = a.accept(item(&hcss("e_replayed"))).await.unwrap();
    assert!(
        matches!(copy, Accepted::Duplicate(_)),
        "a copy of the replayed item is recognised again: {copy:?}"
    );
    // One pending item: one more fits under the cap of 2, a third does not.
    assert!(matches!(
        a.accept(item(&hcss("e_second"))).await.unwrap(),
        Accepted::Stored(_)
    ));
    assert!(matches!(
        a.accept(item(&hcss("e_third"))).await,
        Err(InboxError::Full { .. })
    ));
}

/// Claims up to `limit` items for 30 s, passing `now` as a replica's clock.
/// A replay asked while the item's completion is committing replays the done item: it reads
/// the state under the row's lock, so it waits for that commit. It read the state between two
/// statements and, when the completion landed between them, refused the item as `done`
/// ("expected done, dead or pending").
#[tokio::test]
async fn a_replay_during_a_completion_replays_the_done_item() {
    let s = schema("replay_vs_done");
    let (pool, inbox) = small_inbox(&s, 4).await;
    let id = stored(&inbox, &bwp("evt_replayed_while_done")).await;
    assert_eq!(claimed(&inbox, now_ms(), 10).await.len(), 1);
    // A completion in progress: the row marked done by a transaction not yet committed.
    let mut completing = pool.begin().await.unwrap();
    sqlx::query(&format!(
        "UPDATE \"{}\".hookguard_inbox SET state = 2, finished_at = $2 WHERE id = $1",
        &*s
    ))
    .bind(id)
    .bind(now_ms())
    .execute(&mut *completing)
    .await
    .unwrap();
    let replaying = tokio::spawn({
        let inbox = inbox.clone();
        async move { inbox.replay(id, now_ms()).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let early = replaying.is_finished();
    // Committed before anything is asserted: a failed assertion must not leave the row
    // locked under the schema's drop.
    completing.commit().await.unwrap();
    let replayed = replaying.await.unwrap();
    assert!(!early, "answered before the completion committed: {replayed:?}");
    replayed.unwrap();
    let rec = inbox.get(id).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.attempts), (InboxState::Pending, 0));
}

/// A runtime apart from the test's (one of actix-web's worker threads, say).
fn another_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An inbox on a pool of `connections` (acquire 5 s), and the pool.
async fn small_inbox(schema: &str, connections: u32) -> (PgPool, PgInbox) {
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url())
        .await
        .unwrap();
    let inbox = PgInbox::builder().schema(schema).open(pool.clone()).await.unwrap();
    (pool, inbox)
}

/// An inbox shared by several runtimes, as actix-web shares it (each of its worker threads runs
/// a runtime of its own, stopped at a graceful shutdown): the connections an accept from
/// another runtime opens belong to the inbox's own runtime, and outlive the one that asked.
/// They belonged to the asking runtime and broke when it stopped, under the worker's
/// transactions on the same pool: each running item spent an attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_opened_for_another_runtime_outlive_it() {
    let s = schema("foreign_rt");
    let (pool, inbox) = small_inbox(&s, 2).await;
    // This runtime's connection stays in use: the other runtime's accept needs a second one.
    let held = pool.acquire().await.unwrap();
    let (accepted_tx, accepted) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let other = inbox.clone();
    let thread = std::thread::spawn(move || {
        let rt = another_runtime();
        rt.block_on(async move {
            let a = other.accept(item(&bwp("evt_from_another_runtime"))).await;
            accepted_tx.send(a).unwrap();
            // Running (its connections answer) until told to stop.
            let _ = stopped.await;
        });
        // Dropped: the runtime stops, as actix's worker threads' do at a graceful shutdown.
    });
    assert!(matches!(accepted.await.unwrap(), Ok(Accepted::Stored(_))));
    drop(held);
    // Both connections, each in a transaction of this runtime (a worker's handlers), taken
    // while the other runtime still runs; then it stops.
    let mut a = pool.begin().await.unwrap();
    let mut b = pool.begin().await.unwrap();
    stop.send(()).unwrap();
    tokio::task::spawn_blocking(move || thread.join().unwrap())
        .await
        .unwrap();
    for tx in [&mut a, &mut b] {
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut **tx)
            .await
            .expect("a connection of a stopped runtime");
        assert_eq!(one, 1);
    }
    a.commit().await.unwrap();
    b.commit().await.unwrap();
    // And the worker's own operations go on: the item is claimed and completed.
    let c = claimed(&inbox, now_ms(), 10).await;
    assert_eq!(c.len(), 1);
    assert!(inbox.complete(c[0].claim(), now_ms()).await.unwrap());
}

/// An inbox whose own runtime has stopped (opened in a runtime made for that, then dropped)
/// works on the runtime that uses it: nothing is sent to the stopped one, no connection opened
/// there is used again, and its background work (here: LISTEN for another replica's accepts)
/// starts again on the runtime that uses it.
#[tokio::test]
async fn an_inbox_outlives_the_runtime_it_was_opened_on() {
    let s = schema("gone_rt");
    let (home, pool, inbox) = opened_on_another_runtime(&s);
    // A runtime is dropped outside async code.
    std::thread::spawn(move || drop(home)).join().unwrap();
    // The connections opened on the stopped runtime are gone from the pool: a ping before use
    // does not always find them broken (about one run in ten failed the accept below).
    assert_eq!(
        pool.num_idle(),
        0,
        "connections of the stopped runtime left in the pool"
    );
    let id = stored(&inbox, &bwp("evt_after_its_runtime")).await;
    assert_eq!(inbox.get(id).await.unwrap().unwrap().state, InboxState::Pending);
    let c = claimed(&inbox, now_ms(), 10).await;
    assert_eq!(c.iter().map(|c| c.id).collect::<Vec<_>>(), [id]);
    assert!(inbox.complete(c[0].claim(), now_ms()).await.unwrap());
    // Another replica's accept reaches a worker here that only wakes up when told.
    let other = self::inbox(&s).await;
    woken_by_another_replica(
        &inbox,
        &other,
        "evt_from_another_replica",
        "not woken: nothing listens since its runtime stopped",
    )
    .await;
}

/// An inbox on `schema` opened on a current-thread runtime of its own, on a thread of its own,
/// and that runtime (no longer driven), with the inbox's pool.
fn opened_on_another_runtime(schema: &str) -> (tokio::runtime::Runtime, PgPool, PgInbox) {
    let name = schema.to_owned();
    std::thread::spawn(move || {
        let rt = another_runtime();
        let (pool, inbox) = rt.block_on(async move {
            let pool = pool_at(&url()).await;
            let inbox = PgInbox::builder().schema(name).open(pool.clone()).await.unwrap();
            (pool, inbox)
        });
        (rt, pool, inbox)
    })
    .join()
    .unwrap()
}

/// An inbox opened on a runtime that is kept but no longer driven (a current-thread runtime
/// nobody `block_on`s): operations from another runtime are not left waiting for that runtime
/// for ever. They wait a moment, then run where they were asked. The pool's idle connections,
/// opened on the idle runtime, never answer: they are dropped when an operation runs here, so
/// it is answered (a statement sent on one waited out its whole bound — 90 s for `stats` —
/// and, under a full suite's load, left its transaction open on the server, which hung the
/// schema's cleanup).
#[tokio::test]
async fn an_inbox_whose_runtime_is_kept_but_not_driven_still_answers() {
    let s = schema("idle_rt");
    let (home, _, inbox) = opened_on_another_runtime(&s);
    let answered = tokio::time::timeout(Duration::from_secs(15), inbox.accept(item(&bwp("evt_idle_home")))).await;
    assert!(matches!(answered, Ok(Ok(Accepted::Stored(_)))), "{answered:?}");
    let stats = tokio::time::timeout(Duration::from_secs(15), inbox.stats()).await;
    assert!(matches!(stats, Ok(Ok(ref s)) if s.pending == 1), "{stats:?}");
    // A runtime is dropped outside async code.
    std::thread::spawn(move || drop(home)).join().unwrap();
}

/// Claims and completions asked from another runtime were sent to the inbox's own alone: kept
/// but not driven, it never ran them, so no item was ever handled from there (each claim
/// failed after its bound, and the completions' queue grew). They now run where they were
/// asked once the inbox's runtime has not started them within a moment, as other operations do.
#[tokio::test]
async fn claims_and_completions_run_when_the_inbox_runtime_is_kept_but_not_driven() {
    let s = schema("idle_rt_claims");
    let (home, _, inbox) = opened_on_another_runtime(&s);
    let id = stored(&inbox, &bwp("evt_idle_home_claim")).await;
    let c = tokio::time::timeout(
        Duration::from_secs(10),
        inbox.claim(now_ms(), Duration::from_secs(60), 10),
    )
    .await
    .expect("the claim was answered")
    .expect("claimed");
    assert_eq!(c.iter().map(|c| c.id).collect::<Vec<_>>(), [id]);
    let done = tokio::time::timeout(Duration::from_secs(10), inbox.complete(c[0].claim(), now_ms())).await;
    assert!(matches!(done, Ok(Ok(true))), "{done:?}");
    std::thread::spawn(move || drop(home)).join().unwrap();
}

/// An operation the inbox's runtime took, after which that runtime stopped being driven (kept,
/// not dropped), left its caller on another runtime waiting for ever: the operation's own
/// timer lives on the idle runtime. The caller now gives up at the operation's bound.
#[tokio::test]
async fn an_operation_taken_by_a_runtime_that_then_idles_is_answered_in_time() {
    let s = schema("idling_rt");
    let (opened, inbox) = std::sync::mpsc::channel();
    let (go_idle, idle) = tokio::sync::oneshot::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let home = std::thread::spawn(move || {
        let rt = another_runtime();
        let (pool, inbox) = rt.block_on(small_inbox(&s, 1));
        opened.send((pool, inbox)).unwrap();
        // Driven until told to idle; kept (not dropped) until the test ends.
        let _ = rt.block_on(idle);
        let _ = released.recv();
        drop(rt);
    });
    let (pool, inbox) = inbox.recv().unwrap();
    // The pool's one connection is held: the accept the home takes waits for it.
    let held = pool.acquire().await.unwrap();
    let other = inbox.clone();
    let accept = tokio::spawn(async move { other.accept(item(&bwp("evt_idling_home"))).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    go_idle.send(()).unwrap();
    drop(held);
    let answered = tokio::time::timeout(Duration::from_secs(10), accept).await;
    assert!(
        matches!(answered, Ok(Ok(Err(InboxError::Storage(_))))),
        "waited for ever: {answered:?}"
    );
    release.send(()).unwrap();
    home.join().unwrap();
}

/// An accept asked from another runtime and then given up (the sender hung up, a timeout
/// layer answered) is cancelled as it would be on the inbox's own runtime: nothing is stored
/// after the caller left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accept_given_up_on_another_runtime_is_cancelled_there() {
    let s = schema("given_up");
    let (pool, inbox) = small_inbox(&s, 1).await;
    // The pool's one connection is in use: the accept waits for it.
    let held = pool.acquire().await.unwrap();
    let other = inbox.clone();
    std::thread::spawn(move || {
        let rt = another_runtime();
        rt.block_on(async move {
            let gave_up =
                tokio::time::timeout(Duration::from_millis(300), other.accept(item(&bwp("evt_given_up")))).await;
            assert!(
                gave_up.is_err(),
                "answered while the pool's connection was held: {gave_up:?}"
            );
        });
    })
    .join()
    .unwrap();
    drop(held);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{}\".hookguard_inbox", &*s))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "stored after its caller gave up");
}

async fn claimed(inbox: &PgInbox, now: i64, limit: u32) -> Vec<ClaimedItem> {
    inbox.claim(now, Duration::from_secs(30), limit).await.unwrap()
}

async fn stored(inbox: &PgInbox, d: &Delivery) -> i64 {
    match inbox.accept(item(d)).await.unwrap() {
        Accepted::Stored(id) => id,
        other => panic!("expected stored, got {other:?}"),
    }
}

/// A real full disk under the inbox's tables: a 1 MiB tmpfs as their tablespace (the WAL stays
/// on the server's own disk). Accepts fail as `Storage` errors (the receiver's `503`, never a
/// "stored" that is not), quickly, naming no URL; once space returns (the tmpfs grown), they
/// work again, on the same inbox and pool.
#[tokio::test]
async fn a_full_tablespace_refuses_accepts_and_recovers() {
    use std::os::unix::fs::MetadataExt as _;
    use std::str::FromStr as _;
    let admin = pool_at(&url()).await;
    // The tablespace's directory is the server's own: it must run on this machine.
    let data_dir: String = sqlx::query_scalar("SHOW data_directory")
        .fetch_one(&admin)
        .await
        .expect("the test role is a superuser (scripts/test.sh's server)");
    let owner = std::fs::metadata(&data_dir)
        .unwrap_or_else(|e| panic!("the PostgreSQL server runs on this machine ({data_dir}: {e})"))
        .uid();
    let s = schema("fulldisk");
    let mnt = std::env::temp_dir().join(format!("{}_mnt", &*s));
    std::fs::create_dir_all(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
        .arg(&mnt)
        .status()
        .expect("run mount");
    assert!(
        ok.success(),
        "mounting a tmpfs needs root (as on CI and these machines)"
    );
    std::os::unix::fs::chown(&mnt, Some(owner), None).unwrap();
    let space = format!("{}_ts", &*s);
    /// Drops the schema (its tables first), then the tablespace, then the mount.
    struct Cleanup(PathBuf, String, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Command::new("psql")
                .arg(url())
                .args(["-qc", &format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.1)])
                .args(["-qc", &format!("DROP TABLESPACE IF EXISTS \"{}\"", self.2)])
                .output();
            let _ = Command::new("umount").arg(&self.0).status();
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _cleanup = Cleanup(mnt.clone(), s.to_string(), space.clone());
    sqlx::query(&format!("CREATE TABLESPACE \"{space}\" LOCATION '{}'", mnt.display()))
        .execute(&admin)
        .await
        .unwrap();
    let options = sqlx::postgres::PgConnectOptions::from_str(&url())
        .unwrap()
        .options([("default_tablespace", space.as_str())]);
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(1))
        .connect_with(options)
        .await
        .unwrap();
    let inbox = PgInbox::builder().schema(&*s).open(pool).await.unwrap();
    let placed: String = sqlx::query_scalar(
        "SELECT coalesce(t.spcname, '') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace WHERE n.nspname = $1 AND c.relkind = 'r' LIMIT 1",
    )
    .bind(&*s)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(placed, space, "the inbox's tables are on the small disk");
    stored(&inbox, &bwp("before")).await;

    // Bodies that do not compress (PostgreSQL would shrink repeated bytes).
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = |n: usize| -> String {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[(x % 36) as usize])
            })
            .collect()
    };
    let mut refused = None;
    for i in 0..2_000 {
        let body = format!(r#"{{"id":"full_{i}","type":"bid.accepted","pad":"{}"}}"#, noise(4096));
        let d = testing::deliver_bytes(BuildWorkPro::new(), "whsec_k", body).unwrap();
        let started = Instant::now();
        match inbox.accept(item(&d)).await {
            Ok(Accepted::Stored(id)) => assert!(inbox.get(id).await.unwrap().is_some()),
            Ok(other) => panic!("{other:?}"),
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "took {:?}",
                    started.elapsed()
                );
                assert!(matches!(e, InboxError::Storage(_)), "{e}");
                assert!(!e.to_string().contains("postgres://"), "{e}");
                refused = Some((i, d));
                break;
            }
        }
    }
    let (at, d) = refused.expect("a full disk must refuse accepts");
    assert!(at > 0, "the first accepts fit");
    // Nothing of the refused delivery is stored: "before" and the accepts that fit. (A second
    // try while full is not asserted: the failed extension may leave room for one more row.)
    assert_eq!(inbox.stats().await.unwrap().pending, u64::try_from(at).unwrap() + 1);

    // Space returns: the same inbox takes the refused delivery (the sender's retry).
    let ok = Command::new("mount")
        .args(["-o", "remount,size=16m"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(ok.success());
    stored(&inbox, &d).await;
    stored(&inbox, &bwp("after")).await;
    let stats = inbox.stats().await.unwrap();
    assert_eq!(stats.pending, u64::try_from(at).unwrap() + 3, "{stats:?}");
}

/// `connect` to a database that refuses connections said only "pool timed out while waiting
/// for an open connection" after its second (a tryout's operator read it as a slow database).
/// It now says why, without the URL or its password.
#[tokio::test]
async fn a_connect_that_cannot_connect_says_why() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed = format!("postgres://postgres:PW5e1d@127.0.0.1:{port}/postgres");
    let Err(e) = PgInbox::connect(&closed).await else {
        panic!("connected to a closed port")
    };
    let e = e.to_string();
    assert!(e.contains("cannot connect") && e.contains("refused"), "{e}");
    assert!(!e.contains("PW5e1d"), "{e}");
}

/// A role that may only read the inbox opened it as a writer: `serve` started and answered
/// every delivery `503` (each counting toward the senders' kill switches) with no word of why
/// (an operator's tryout). Opening it to write is now refused, saying what is missing; a tool
/// that only reads (`existing_only`) still opens it.
#[tokio::test]
async fn a_role_that_cannot_write_is_refused_as_a_writer_and_may_still_read() {
    let s = schema("readonly_role");
    let writer = inbox(&s).await;
    stored(&writer, &bwp("evt_read_only")).await;
    let role = format!("hg_ro_{}", std::process::id());
    let admin = pool_at(&url()).await;
    for sql in [
        format!("DROP ROLE IF EXISTS {role}"),
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT USAGE ON SCHEMA \"{}\" TO {role}", &*s),
        format!("GRANT SELECT ON ALL TABLES IN SCHEMA \"{}\" TO {role}", &*s),
    ] {
        sqlx::query(&sql).execute(&admin).await.unwrap();
    }
    let opts = url()
        .parse::<sqlx::postgres::PgConnectOptions>()
        .unwrap()
        .username(&role);
    let reader = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(opts)
        .await
        .unwrap();
    let refused = PgInbox::builder().schema(&*s).open(reader.clone()).await;
    let Err(e) = refused else {
        panic!("a read-only role opened the inbox to write")
    };
    assert!(e.to_string().contains("may not INSERT, UPDATE, DELETE rows"), "{e}");
    let read = PgInbox::builder()
        .schema(&*s)
        .existing_only()
        .open(reader.clone())
        .await
        .unwrap();
    assert_eq!(read.stats().await.unwrap().pending, 1);
    drop(read);
    reader.close().await;
    for sql in [format!("DROP OWNED BY {role}"), format!("DROP ROLE {role}")] {
        sqlx::query(&sql).execute(&admin).await.unwrap();
    }
}

/// A server that accepts connections and never answers was reported as "no connection within
/// 1000 ms" after twice that (the pool's attempt, then one to say why): an operator's tryout
/// timed it. The message now gives the whole time waited.
#[tokio::test]
async fn a_connect_to_a_silent_server_says_how_long_it_waited() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let started = std::time::Instant::now();
    let Err(e) = PgInbox::connect(&format!("postgres://postgres:PW9a2c@127.0.0.1:{port}/postgres")).await else {
        panic!("connected to a server that never answers")
    };
    let waited = started.elapsed().as_millis();
    let e = e.to_string();
    let said: u128 = e
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no time in {e:?}"));
    assert!(
        said <= waited && said + 500 >= waited,
        "said {said} ms, waited {waited} ms: {e}"
    );
    assert!(!e.contains("PW9a2c"), "{e}");
    drop(silent);
}

/// `open` on a pool without `statement_timeout` waited for ever behind a lock its migration
/// needs — here another session holds the migration's advisory lock, as a replica whose
/// migration hangs would — and the process never started nor said why. It now fails after
/// `migration_timeout`, saying so, and opens once the lock is free.
#[tokio::test]
async fn an_open_stuck_behind_a_lock_fails_after_the_migration_timeout() {
    let s = schema("migwait");
    let holder_pool = pool_at(&url()).await;
    let mut holder = holder_pool.acquire().await.unwrap();
    let lock = "SELECT pg_advisory_lock(hashtext('hookguard_inbox_migrate'))";
    sqlx::query(lock).execute(&mut *holder).await.unwrap();
    // The opener's connections are named, to find their statements on the server.
    let named: sqlx::postgres::PgConnectOptions = url().parse().unwrap();
    let opener = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(named.application_name("hg-migwait-test"))
        .await
        .unwrap();
    let opened = tokio::time::timeout(
        Duration::from_secs(30),
        PgInbox::builder()
            .schema(&*s)
            .migration_timeout(Duration::from_millis(500))
            .open(opener),
    )
    .await;
    // The server ended the migration's wait too (its own bound): no statement of the opener
    // is left queued behind the lock (one would take the lock, and a DDL's table lock, later).
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'hg-migwait-test'
                   AND wait_event_type = 'Lock'";
    let deadline = Instant::now() + Duration::from_secs(10);
    let left: i64 = loop {
        let n: i64 = sqlx::query_scalar(waiting).fetch_one(&holder_pool).await.unwrap();
        if n == 0 || Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    sqlx::query("SELECT pg_advisory_unlock(hashtext('hookguard_inbox_migrate'))")
        .execute(&mut *holder)
        .await
        .unwrap();
    match opened.expect("open gave up by itself") {
        Err(InboxError::Storage(e)) => assert!(e.to_string().contains("took longer than 500 ms"), "{e}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened while the migration's lock was held"),
    }
    assert_eq!(left, 0, "a migration statement still waits on the server");
    let inbox = PgInbox::builder()
        .schema(&*s)
        .open(pool_at(&url()).await)
        .await
        .unwrap();
    stored(&inbox, &bwp("evt_after_the_lock")).await;
}

/// As the SQLite inbox (`a_copy_of_a_dead_item_puts_it_back_to_pending`): a sender's copy of a
/// dead item's event puts that item back to pending, attempts reset, answered `Stored` with
/// its id; at the pending cap it is refused like a new item.
#[tokio::test]
async fn a_copy_of_a_dead_item_puts_it_back_to_pending() {
    let s = schema("deadcopy");
    let a = capped_inbox(&s, 2).await;
    let dead = stored(&a, &bwp("evt_dead")).await;
    for c in claimed(&a, now_ms(), 10).await {
        assert!(a.fail(c.claim(), "refused", None, now_ms()).await.unwrap());
    }
    let done = stored(&a, &bwp("evt_done")).await;
    for c in claimed(&a, now_ms(), 10).await {
        assert_eq!(c.id, done);
        assert!(a.complete(c.claim(), now_ms()).await.unwrap());
    }
    assert_eq!(a.accept(item(&bwp("evt_done"))).await.unwrap(), Accepted::Duplicate(0));

    assert_eq!(a.accept(item(&bwp("evt_dead"))).await.unwrap(), Accepted::Stored(dead));
    let rec = a.get(dead).await.unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.attempts, rec.last_error),
        (InboxState::Pending, 0, None)
    );
    assert_eq!(a.accept(item(&bwp("evt_dead"))).await.unwrap(), Accepted::Duplicate(0));
    let again = claimed(&a, now_ms(), 10).await;
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempt), (dead, 1));
    assert_eq!(again[0].delivery.body(), bwp("evt_dead").body());
    assert!(a.fail(again[0].claim(), "still refused", None, now_ms()).await.unwrap());

    // (The pending count is recounted every second from the table, and a recount that races
    // an accept or a failure may be one off for a second: the cap's checks below wait it out.)
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    // A copy of a live item writes nothing and waits for no lock: here another session holds
    // the row, as a claim's or a transactional handler's transaction does.
    let p1 = stored(&a, &bwp("evt_p1")).await;
    let mut holder = pool_at(&url()).await.begin().await.unwrap();
    sqlx::query(&format!(
        "SELECT id FROM \"{}\".hookguard_inbox WHERE id = $1 FOR UPDATE",
        &*s
    ))
    .bind(p1)
    .execute(&mut *holder)
    .await
    .unwrap();
    let copy = tokio::time::timeout(Duration::from_secs(3), a.accept(item(&bwp("evt_p1")))).await;
    // Released before judging: a failing test must not leave the schema's drop waiting.
    holder.rollback().await.unwrap();
    assert_eq!(
        copy.expect("not held by the row's lock").unwrap(),
        Accepted::Duplicate(0)
    );

    // At the cap (two pending), the dead item's copy is refused; a pending one's is recognised.
    let p2 = stored(&a, &bwp("evt_p2")).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(matches!(
        a.accept(item(&bwp("evt_dead"))).await,
        Err(InboxError::Full { limit: 2 })
    ));
    assert_eq!(a.accept(item(&bwp("evt_p2"))).await.unwrap(), Accepted::Duplicate(p2));
    assert_eq!(a.get(dead).await.unwrap().unwrap().state, InboxState::Dead);
}

#[tokio::test]
async fn migrations_are_idempotent_and_semantics_match_the_sqlite_inbox() {
    let s = schema("sem");
    let a = inbox(&s).await;
    let _again = inbox(&s).await; // migrating twice is fine
    let id = stored(&a, &bwp("evt_1")).await;
    assert_eq!(a.accept(item(&bwp("evt_1"))).await.unwrap(), Accepted::Duplicate(0));
    let rec = a.get(id).await.unwrap().unwrap();
    assert_eq!(rec.event_id.as_deref(), Some("evt_1"));
    assert_eq!(
        rec.headers,
        vec![("content-type".to_owned(), "application/json".to_owned())]
    );

    // HCSS in-flight-only keys: coalesce while pending; a copy once the handler started is a
    // new item (a second edit it may not have seen); new after done.
    let h1 = stored(&a, &hcss("e1")).await;
    assert_eq!(a.accept(item(&hcss("e1"))).await.unwrap(), Accepted::Duplicate(0));
    let mut claimed = a.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let during = stored(&a, &hcss("e1")).await;
    assert_ne!(during, h1, "an identical body while running is a new edit");
    assert_eq!(a.accept(item(&hcss("e1"))).await.unwrap(), Accepted::Duplicate(0));
    claimed.extend(a.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap());
    assert_eq!(claimed.len(), 3);
    for c in &claimed {
        assert!(a.complete(c.claim(), now_ms()).await.unwrap());
        assert!(
            a.complete(c.claim(), now_ms()).await.unwrap(),
            "idempotent for the same attempt"
        );
    }
    assert_ne!(stored(&a, &hcss("e1")).await, h1);
    assert_eq!(
        a.accept(item(&bwp("evt_1"))).await.unwrap(),
        Accepted::Duplicate(0),
        "retained"
    );
    assert!(a.get(id).await.unwrap().is_some());

    // Lease expiry (on the database's clock): claimed again with a new attempt; the stale
    // attempt is refused.
    let first = a.claim(now_ms(), Duration::from_millis(100), 10).await.unwrap();
    assert_eq!(first.len(), 1);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let again = a.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap();
    assert_eq!(again[0].attempt, first[0].attempt + 1);
    assert!(!a.complete(first[0].claim(), now_ms()).await.unwrap());
    assert!(a.fail(again[0].claim(), "boom", None, now_ms()).await.unwrap());
    assert_eq!(a.get(again[0].id).await.unwrap().unwrap().state, InboxState::Dead);
    a.replay(again[0].id, now_ms()).await.unwrap();
    assert!(matches!(a.replay(id, now_ms()).await, Ok(())), "done items replay too");
    // A pending item waiting out a retry (an hour) runs now, its attempts reset; a running
    // one is not replayed.
    let c = a.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap();
    let waiting = c.iter().find(|i| i.id == again[0].id).unwrap();
    for i in c.iter().filter(|i| i.id != waiting.id) {
        assert!(a.release(i.claim()).await.unwrap());
    }
    assert!(a
        .fail(waiting.claim(), "later", Some(now_ms() + 3_600_000), now_ms())
        .await
        .unwrap());
    a.replay(waiting.id, now_ms()).await.unwrap();
    let rec = a.get(waiting.id).await.unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.attempts, rec.last_error),
        (InboxState::Pending, 0, None)
    );
    let c = a.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap();
    assert!(c.iter().any(|i| i.id == waiting.id), "due now");
    assert!(matches!(
        a.replay(waiting.id, now_ms()).await,
        Err(InboxError::WrongState {
            state: InboxState::Running,
            ..
        })
    ));
    for i in &c {
        assert!(a.release(i.claim()).await.unwrap());
    }
    assert!(matches!(a.replay(-1, now_ms()).await, Err(InboxError::NotFound(-1))));

    // Purge: done only by default.
    let c = a.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap();
    for i in &c {
        assert!(a.complete(i.claim(), now_ms()).await.unwrap());
    }
    let st = a.stats().await.unwrap();
    assert!(st.done >= 2 && st.disk_bytes.unwrap() > 0, "{st:?}");
    assert_eq!(a.purge(now_ms() + 1, false).await.unwrap(), st.done);

    // Defer: given back uncounted, not due before the time asked.
    let d = stored(&a, &bwp("evt_defer")).await;
    let t = now_ms();
    let c = a.claim(t, Duration::from_secs(30), 10).await.unwrap();
    assert_eq!((c.len(), c[0].attempt), (1, 1));
    assert_eq!(c[0].id, d);
    // Deferred 3 s: the three statements after must come before it on a loaded machine.
    assert!(a.defer(c[0].claim(), now_ms() + 3_000).await.unwrap());
    assert!(
        !a.defer(c[0].claim(), now_ms() + 3_000).await.unwrap(),
        "no longer held"
    );
    let rec = a.get(d).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.attempts), (InboxState::Pending, 0));
    assert!(a.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    assert_eq!(
        a.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap()[0].attempt,
        1
    );
}

/// A copy of a dead item whose stored row goes away between the copy's insert (which met it)
/// and its revive (an operator's purge of dead items, here holding the row while the revive
/// waits for it) is stored anew. It was answered `Duplicate` — a `200` for a delivery stored
/// nowhere, which the sender never sends again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_whose_stored_row_vanishes_meanwhile_is_stored_anew() {
    let s = schema("vanish");
    let a = inbox(&s).await;
    let dead = stored(&a, &bwp("evt_vanish")).await;
    for c in claimed(&a, now_ms(), 10).await {
        assert!(a.fail(c.claim(), "refused", None, now_ms()).await.unwrap());
    }
    let admin = pool_at(&url()).await;
    let mut purger = admin.begin().await.unwrap();
    let table = format!("\"{}\".hookguard_inbox", &*s);
    sqlx::query(&format!("SELECT id FROM {table} WHERE id = $1 FOR UPDATE"))
        .bind(dead)
        .execute(&mut *purger)
        .await
        .unwrap();
    let copy = tokio::spawn({
        let a = a.clone();
        async move { a.accept(item(&bwp("evt_vanish"))).await }
    });
    // The copy's insert met the row (no wait: it does not lock it); its revive now waits for
    // the row's lock.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE%attempts = 0%'",
        )
        .fetch_one(&admin)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        if std::time::Instant::now() > deadline {
            purger.rollback().await.unwrap();
            panic!("the copy's revive never waited for the row");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sqlx::query(&format!("DELETE FROM {table} WHERE id = $1"))
        .bind(dead)
        .execute(&mut *purger)
        .await
        .unwrap();
    purger.commit().await.unwrap();
    let answer = copy.await.unwrap().unwrap();
    let Accepted::Stored(id) = answer else {
        panic!("answered {answer:?} for a delivery no longer stored");
    };
    assert_ne!(id, dead);
    assert_eq!(a.get(id).await.unwrap().unwrap().state, InboxState::Pending);
}

/// An inbox of a newer build (its schema version above this build's, its layout not this
/// build's: here without the unique index) is refused before this build's migration touches
/// it: the migration's DDL waited behind the replicas' row locks (and made their accepts wait
/// behind it) until the migration timeout, and only then said why.
#[tokio::test]
async fn an_inbox_of_a_newer_build_is_refused_before_any_ddl() {
    let s = schema("newer");
    drop(inbox(&s).await);
    let admin = pool_at(&url()).await;
    sqlx::raw_sql(&format!(
        "UPDATE \"{s}\".hookguard_schema SET version = 99; DROP INDEX \"{s}\".hookguard_inbox_unique",
        s = &*s
    ))
    .execute(&admin)
    .await
    .unwrap();
    // A replica's transaction writing a row holds the table in ROW EXCLUSIVE mode.
    let mut replica = admin.begin().await.unwrap();
    let replica_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *replica)
        .await
        .unwrap();
    sqlx::query(&format!("LOCK TABLE \"{}\".hookguard_inbox IN ROW EXCLUSIVE MODE", &*s))
        .execute(&mut *replica)
        .await
        .unwrap();
    let opened = PgInbox::builder()
        .schema(&*s)
        .migration_timeout(Duration::from_secs(2))
        .open(pool_at(&url()).await)
        .await;
    // Looked at before this test yields to its runtime again: the refused open's transaction
    // must be over already. Left to sqlx's rollback on drop (queued until its connection is
    // used again, by a task of this runtime), it held the global migration lock — and on a
    // runtime blocked in a synchronous wait (this schema's drop below), for ever: every later
    // open of any schema waited for it (found by CI).
    let leaked = Command::new("psql")
        .arg(url())
        .args([
            "-tAc",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' \
                 AND query LIKE '%{}%' AND pid <> {replica_pid}",
                &*s
            ),
        ])
        .output()
        .unwrap();
    replica.rollback().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&leaked.stdout).trim(),
        "0",
        "the refused open left its transaction open"
    );
    match opened {
        Err(InboxError::Storage(e)) => assert!(e.to_string().contains("newer than this build"), "{e}"),
        other => panic!("{:?}", other.map(drop)),
    }
    // And later opens (any schema) get the migration lock.
    let other = schema("newer_after");
    PgInbox::builder()
        .schema(&*other)
        .migration_timeout(Duration::from_secs(5))
        .open(pool_at(&url()).await)
        .await
        .expect("the refused open left the migration lock held");
}

/// `migration_timeout(Duration::MAX)` (no bound) opens: PostgreSQL refuses a
/// `statement_timeout` beyond `i32::MAX` ms, and every open failed.
#[tokio::test]
async fn an_unbounded_migration_timeout_still_opens() {
    let s = schema("migmax");
    let a = PgInbox::builder()
        .schema(&*s)
        .migration_timeout(Duration::MAX)
        .open(pool_at(&url()).await)
        .await
        .unwrap();
    stored(&a, &bwp("evt_migmax")).await;
}

/// Receivers of different senders may share one inbox: a claim naming senders takes only their
/// items (first due first), one naming none takes every item.
#[tokio::test]
async fn a_claim_of_some_senders_takes_only_their_items() {
    let s = schema("claim_of");
    let a = inbox(&s).await;
    let h = stored(&a, &hcss("emp-1")).await;
    let b1 = stored(&a, &bwp("evt_of_1")).await;
    let b2 = stored(&a, &bwp("evt_of_2")).await;
    let lease = Duration::from_secs(30);
    let ids = |v: Vec<ClaimedItem>| v.iter().map(|i| i.id).collect::<Vec<_>>();
    let none = a.claim_of(&["procore".to_owned()], now_ms(), lease, 10).await.unwrap();
    assert!(none.is_empty());
    let own = a
        .claim_of(&["buildworkpro".to_owned()], now_ms(), lease, 10)
        .await
        .unwrap();
    assert_eq!(ids(own), [b1, b2]);
    let rest = a.claim_of(&[], now_ms(), lease, 10).await.unwrap();
    assert_eq!(ids(rest), [h]);
}

/// First come, first served: a retry that is due goes before deliveries that arrived after it.
#[tokio::test]
async fn a_due_retry_goes_before_newer_deliveries() {
    let s = schema("fifo");
    let a = inbox(&s).await;
    let first = stored(&a, &bwp("evt_first")).await;
    let c = claimed(&a, now_ms(), 1).await;
    assert!(a.fail(c[0].claim(), "boom", Some(now_ms()), now_ms()).await.unwrap());
    tokio::time::sleep(Duration::from_millis(5)).await;
    for i in 0..3 {
        stored(&a, &bwp(&format!("evt_later_{i}"))).await;
    }
    let next = claimed(&a, now_ms(), 1).await;
    assert_eq!((next[0].id, next[0].attempt), (first, 2));
}

/// A claim the caller stopped waiting for may still commit: dropping a query's future cancels
/// nothing on the server. Its items must be given back, not left running under a lease nobody
/// holds (60 s by default, an attempt used) until it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_timed_out_gives_back_what_it_claimed_late() {
    let s = schema("late_claim");
    let inbox = PgInbox::builder()
        .schema(&*s)
        .operation_timeout(Duration::from_millis(300))
        .open(pool_at(&url()).await)
        .await
        .unwrap();
    // Stored through an inbox with the default bound: 300 ms is for the claim under test, and a
    // slow commit on a loaded machine must not fail the setup.
    let id = stored(&self::inbox(&s).await, &bwp("evt_late_claim")).await;
    // Another session holds the table, so the claim's statement waits on the server past the
    // caller's bound, then runs and commits once the lock goes.
    let pool = pool_at(&url()).await;
    let mut lock = pool.begin().await.unwrap();
    sqlx::query(&format!(
        "LOCK TABLE \"{}\".hookguard_inbox IN ACCESS EXCLUSIVE MODE",
        &*s
    ))
    .execute(&mut *lock)
    .await
    .unwrap();
    let started = Instant::now();
    let timed_out = inbox.claim(now_ms(), Duration::from_secs(60), 10).await;
    assert!(timed_out.is_err(), "the claim waited on the lock: {timed_out:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    tokio::time::sleep(Duration::from_millis(200)).await;
    lock.commit().await.unwrap();
    // Due again within moments, the attempt that never ran not counted.
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        let c = inbox.claim(now_ms(), Duration::from_secs(60), 10).await;
        if let Ok(c) = c.as_deref() {
            if !c.is_empty() {
                break c.to_vec();
            }
        }
        assert!(Instant::now() < deadline, "still held by the claim nobody took: {c:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(again.iter().map(|i| (i.id, i.attempt)).collect::<Vec<_>>(), [(id, 1)]);
}

/// Where an owner runs the migrations and the application's role may only read and write the
/// inbox's rows, that role opens an existing inbox and uses it: opening ran `CREATE SCHEMA IF
/// NOT EXISTS` and the like every time, which PostgreSQL refuses to a role without the right
/// to create before it looks whether there is anything to do.
#[tokio::test]
async fn a_role_that_may_only_read_and_write_rows_uses_an_existing_inbox() {
    let s = schema("dml_only");
    let owner = inbox(&s).await;
    let role = format!("{}_app", &*s);
    let admin = pool_at(&url()).await;
    for sql in [
        format!("CREATE ROLE \"{role}\" LOGIN"),
        format!("GRANT USAGE ON SCHEMA \"{}\" TO \"{role}\"", &*s),
        format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"{}\" TO \"{role}\"",
            &*s
        ),
        format!("GRANT USAGE ON ALL SEQUENCES IN SCHEMA \"{}\" TO \"{role}\"", &*s),
    ] {
        sqlx::query(&sql).execute(&admin).await.unwrap();
    }
    let options: sqlx::postgres::PgConnectOptions = url().parse().unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(1))
        .connect_with(options.username(&role))
        .await
        .unwrap();
    let opened = PgInbox::builder().schema(&*s).open(pool.clone()).await;
    let app = opened.as_ref().map_err(ToString::to_string).cloned();
    let used = async {
        let app = app?;
        let id = stored(&app, &bwp("evt_dml_only")).await;
        let c = claimed(&app, now_ms(), 10).await;
        assert!(app.complete(c[0].claim(), now_ms()).await.unwrap());
        assert_eq!(owner.get(id).await.unwrap().unwrap().state, InboxState::Done);
        Ok::<_, String>(())
    }
    .await;
    drop(opened);
    pool.close().await;
    for sql in [format!("DROP OWNED BY \"{role}\""), format!("DROP ROLE \"{role}\"")] {
        sqlx::query(&sql).execute(&admin).await.unwrap();
    }
    used.expect("the application's role opens and uses the inbox");
}

/// Leases and due times are the database's: a replica whose clock runs an hour ahead (its
/// worker passes its own `now_ms`) takes neither an item leased to another replica nor a retry
/// that is not due, and one an hour behind does not see a due item as early.
#[tokio::test]
async fn a_replica_with_a_wrong_clock_keeps_to_the_databases() {
    const HOUR: i64 = 3_600_000;
    let s = schema("skew");
    let (a, b) = (inbox(&s).await, inbox(&s).await);
    let id = stored(&a, &bwp("evt_skew")).await;
    let held = claimed(&b, now_ms() - HOUR, 10).await;
    assert!(held.len() == 1 && held[0].id == id, "due now");
    // Replica B holds it for 30 s; A's clock is an hour ahead.
    assert!(claimed(&a, now_ms() + HOUR, 10).await.is_empty(), "leased to B");
    // B fails the attempt with a 3 s backoff, on a clock an hour behind.
    let behind = now_ms() - HOUR;
    assert!(b
        .fail(held[0].claim(), "boom", Some(behind + 3_000), behind)
        .await
        .unwrap());
    assert!(claimed(&a, now_ms() + HOUR, 10).await.is_empty(), "not due yet");
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let again = claimed(&a, now_ms() + HOUR, 10).await;
    assert_eq!((again.len(), again[0].attempt), (1, 2));
}

/// An answer about a claim that lost its item never settles a later claim carrying the same
/// attempt number: a completion retried after its lease ended, while the item was claimed
/// again, went dead, was replayed (its count back to zero) and claimed once more; a claim
/// given back (a shutdown, a deferral) and claimed again.
#[tokio::test]
async fn a_late_answer_never_settles_a_later_claim_with_the_same_attempt_number() {
    let s = schema("late_answer");
    let a = inbox(&s).await;
    let id = stored(&a, &bwp("evt_late_answer")).await;
    let first = a.claim(now_ms(), Duration::from_millis(100), 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let second = claimed(&a, now_ms(), 1).await;
    assert_eq!((first[0].attempt, second[0].attempt), (1, 2));
    assert!(a.fail(second[0].claim(), "boom", None, now_ms()).await.unwrap());
    a.replay(id, now_ms()).await.unwrap();
    let third = claimed(&a, now_ms(), 1).await;
    assert_eq!(
        (third[0].id, third[0].attempt),
        (id, 1),
        "the first claim's number again"
    );
    assert!(
        !a.complete(first[0].claim(), now_ms()).await.unwrap(),
        "late completion"
    );
    assert!(!a.fail(first[0].claim(), "late", None, now_ms()).await.unwrap());
    assert!(!a.defer(first[0].claim(), now_ms() + 60_000).await.unwrap());
    assert_eq!(a.get(id).await.unwrap().unwrap().state, InboxState::Running);
    // Given back uncounted and claimed again: the same number, a later lease.
    assert!(a.release(third[0].claim()).await.unwrap());
    tokio::time::sleep(Duration::from_millis(5)).await;
    let fourth = claimed(&a, now_ms(), 1).await;
    assert_eq!(fourth[0].attempt, third[0].attempt);
    assert!(!a.complete(third[0].claim(), now_ms()).await.unwrap(), "given back");
    assert_eq!(a.get(id).await.unwrap().unwrap().state, InboxState::Running);
    assert!(a.complete(fourth[0].claim(), now_ms()).await.unwrap());
    assert_eq!(a.get(id).await.unwrap().unwrap().state, InboxState::Done);
}

/// Completions from many handlers at once share statements (group commit), and each caller
/// still learns whether its own claim held the item: another attempt number, or the same
/// number with another lease end (a claim before a deferral or a replay), of an item completed
/// in the same batch is refused; a repeated completion of a done claim is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_completions_each_get_the_answer_for_their_own_attempt() {
    let s = schema("completions");
    let inbox = inbox(&s).await;
    for i in 0..300 {
        stored(&inbox, &bwp(&format!("evt_c{i}"))).await;
    }
    let claimed = inbox.claim(now_ms(), Duration::from_secs(60), 300).await.unwrap();
    assert_eq!(claimed.len(), 300);
    let mut calls = Vec::new();
    for (n, c) in claimed.iter().enumerate() {
        let tries: &[(u32, i64)] = if n % 10 == 0 {
            &[(1, 0), (0, 1), (0, 0)]
        } else {
            &[(0, 0)]
        };
        for &(later, longer) in tries {
            let claim = ClaimRef::new(c.id, c.attempt + later, c.lease_until_ms + longer);
            let inbox = inbox.clone();
            calls.push(tokio::spawn(async move {
                (claim, inbox.complete(claim, now_ms()).await.unwrap())
            }));
        }
    }
    for call in calls {
        let (claim, done) = call.await.unwrap();
        let held = claimed.iter().find(|c| c.id == claim.id).unwrap().claim();
        assert_eq!(done, claim == held, "{claim:?} (held by {held:?})");
    }
    assert!(inbox.complete(claimed[0].claim(), now_ms()).await.unwrap());
    let st = inbox.stats().await.unwrap();
    assert_eq!((st.done, st.running, st.pending), (300, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_copies_on_two_replicas_store_one_row() {
    let s = schema("copies");
    let (a, b) = (inbox(&s).await, inbox(&s).await);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { store.accept(item(&bwp("evt_64"))).await.unwrap() })
        })
        .collect();
    let mut stored = 0;
    for t in tasks {
        stored += usize::from(matches!(t.await.unwrap(), Accepted::Stored(_)));
    }
    assert_eq!(stored, 1);
    assert_eq!(a.stats().await.unwrap().pending, 1);
}

async fn replica(inbox: &PgInbox) -> String {
    let hooks: WebhookLayer = hookguard_core::ReceiverBuilder::new(Arc::new(BuildWorkPro::new()))
        .secret(SECRET)
        .clock(ManualClock::new(NOW))
        .inbox(inbox.clone())
        .build()
        .unwrap();
    let app = Router::new().route("/bwp", post(|| async { StatusCode::OK }).layer(hooks));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn signed(id: &str) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let body = format!(r#"{{"id":"{id}","type":"bid.accepted"}}"#).into_bytes();
    let s = BuildWorkPro::new().sign(SECRET, &body, &SignParams::new(NOW)).unwrap();
    let mut h = reqwest::header::HeaderMap::new();
    for (k, v) in s.headers {
        h.insert(k, v);
    }
    (h, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_64_copies_all_2xx_one_row_handled_once() {
    let s = schema("replicas");
    let (a, b) = (inbox(&s).await, inbox(&s).await);
    let (addr_a, addr_b) = (replica(&a).await, replica(&b).await);
    let calls = Arc::new(AtomicU32::new(0));
    let worker = |store: PgInbox| {
        let calls = Arc::clone(&calls);
        Worker::builder(Arc::new(store), move |_item: ClaimedItem| {
            let calls = Arc::clone(&calls);
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        })
        .poll_interval(Duration::from_millis(50))
        .spawn()
    };
    let (wa, wb) = (worker(a.clone()), worker(b.clone()));
    let client = reqwest::Client::new();
    let (h, body) = signed("evt_two_replicas");
    let sends: Vec<_> = (0..64)
        .map(|i| {
            let url = format!("http://{}/bwp", if i % 2 == 0 { &addr_a } else { &addr_b });
            let (client, h, body) = (client.clone(), h.clone(), body.clone());
            tokio::spawn(async move { client.post(url).headers(h).body(body).send().await.unwrap().status() })
        })
        .collect();
    for t in sends {
        assert_eq!(t.await.unwrap(), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.stats().await.unwrap().done != 1 {
        assert!(Instant::now() < deadline, "not handled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let st = a.stats().await.unwrap();
    assert_eq!(st.pending + st.running + st.done + st.dead, 1, "one row");
    wa.shutdown().await;
    wb.shutdown().await;
}

/// Work accepted on one replica wakes the other replica's worker through LISTEN/NOTIFY, with
/// no polling at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accept_on_one_replica_wakes_the_other_through_listen() {
    wakes_through_listen(&schema("listen")).await;
    // A schema whose plain channel name would pass PostgreSQL's 63 bytes.
    let mut long = schema("listen_long_schema_name");
    long.0 = format!("{}{}", long.0, "x".repeat(63 - long.0.len()));
    wakes_through_listen(&long).await;
}

/// A worker on `inbox` that polls once an hour (it finds work by wake-ups alone), counting the
/// items it handles.
fn waking_worker(inbox: &PgInbox) -> (hookguard_core::inbox::WorkerHandle, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let worker = Worker::builder(Arc::new(inbox.clone()), move |_item: ClaimedItem| {
        let c = Arc::clone(&c);
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            Ok::<(), HandlerError>(())
        }
    })
    .poll_interval(Duration::from_secs(3600))
    .spawn();
    (worker, calls)
}

async fn wakes_through_listen(s: &str) {
    let (a, b) = (inbox(s).await, inbox(s).await);
    woken_by_another_replica(&b, &a, "evt_listen", "replica B was not woken").await;
}

/// An accept on `other` is handled, once, by a worker on `listening` that finds work by
/// wake-ups alone (see [`waking_worker`]).
async fn woken_by_another_replica(listening: &PgInbox, other: &PgInbox, event: &str, not_woken: &str) {
    let (worker, calls) = waking_worker(listening);
    // Let the worker's first (empty) claim pass and the listener connect.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = stored(other, &bwp(event)).await;
    until_done(listening, id, Duration::from_secs(5), not_woken).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    worker.shutdown().await;
}

/// Waits (at most `limit`, else fails saying `what`) until item `id` is done.
async fn until_done(inbox: &PgInbox, id: i64, limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    while inbox.get(id).await.unwrap().unwrap().state != InboxState::Done {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each replica announces its accepts (up to 20 notifications a second), and every replica
/// listens: the pending count (a read of the backlog) runs once a second whatever arrives, not
/// once per notification, which grew with the square of the replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_do_not_each_recount_the_backlog() {
    let s = schema("recount");
    let pool = pool_at(&url()).await;
    let inbox = PgInbox::builder().schema(&*s).open(pool.clone()).await.unwrap();
    stored(&inbox, &bwp("evt_recount")).await;
    // Let the LISTEN connect.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let other = pool_at(&url()).await;
    let started = Instant::now();
    for _ in 0..300 {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(format!("hookguard_inbox_{}", &*s))
            .execute(&other)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    // Backends publish their statistics when they exit: close every connection that read.
    drop(inbox);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    pool.close().await;
    let reads: i64 = sqlx::query_scalar(
        "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables
         WHERE schemaname = $1 AND relname = 'hookguard_inbox'",
    )
    .bind(&*s)
    .fetch_one(&other)
    .await
    .unwrap();
    // A count a second over the notifications and the wait after them, plus the migration's
    // and the accept's own reads; 300 and more when each notification counted.
    assert!(
        (reads as f64) < seconds + 20.0,
        "{reads} reads of the table in {seconds:.1} s of notifications"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_dies_mid_handler_leaves_a_lease_the_other_takes_over() {
    let s = schema("takeover");
    let (a, b) = (inbox(&s).await, inbox(&s).await);
    let id = stored(&a, &bwp("evt_takeover")).await;
    // Replica A claims and "dies": the claim is never completed, failed or given back.
    let claimed = a.claim(now_ms(), Duration::from_millis(300), 1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let wb = Worker::builder(Arc::new(b.clone()), move |item: ClaimedItem| {
        let c = Arc::clone(&c);
        async move {
            assert_eq!(item.attempt, 2);
            c.fetch_add(1, Ordering::SeqCst);
            Ok::<(), HandlerError>(())
        }
    })
    .poll_interval(Duration::from_millis(50))
    .spawn();
    until_done(&b, id, Duration::from_secs(10), "not taken over").await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(
        !a.complete(claimed[0].claim(), now_ms()).await.unwrap(),
        "the dead replica's late completion is refused"
    );
    wb.shutdown().await;
}

fn record_event<'t>(item: &'t ClaimedItem, tx: &'t mut sqlx::Transaction<'static, sqlx::Postgres>) -> TxFuture<'t> {
    Box::pin(async move {
        let table = std::env::var("HG_TX_TABLE").unwrap();
        sqlx::query(&format!("INSERT INTO {table} (key, attempt) VALUES ($1, $2)"))
            .bind(item.delivery.dedupe_key())
            .bind(item.attempt as i32)
            .execute(&mut **tx)
            .await?;
        // The first attempt "crashes" after its write and before the done mark.
        if item.attempt == 1 {
            return Err(HandlerError::new("crash between the write and the done mark"));
        }
        Ok(())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_handler_commits_its_write_with_the_done_mark() {
    let s = schema("tx");
    let a = inbox(&s).await;
    let table = format!("\"{}\".events", &*s);
    sqlx::query(&format!("CREATE TABLE {table} (key text PRIMARY KEY, attempt int)"))
        .execute(a.pool())
        .await
        .unwrap();
    // SAFETY of the test: one test uses this variable.
    std::env::set_var("HG_TX_TABLE", &table);
    let id = stored(&a, &bwp("evt_tx")).await;
    let worker = Worker::builder(Arc::new(a.clone()), transactional(a.clone(), record_event))
        .retry(RetryPolicy::new(
            Duration::from_millis(20),
            Duration::from_millis(20),
            5,
        ))
        .poll_interval(Duration::from_millis(20))
        .spawn();
    until_done(&a, id, Duration::from_secs(10), "not done").await;
    worker.shutdown().await;
    let rows: Vec<(String, i32)> = sqlx::query_as(&format!("SELECT key, attempt FROM {table}"))
        .fetch_all(a.pool())
        .await
        .unwrap();
    // The first attempt's write rolled back with it; the retry wrote the row once.
    assert_eq!(rows, vec![("buildworkpro:evt_tx".to_owned(), 2)]);
    assert_eq!(a.get(id).await.unwrap().unwrap().attempts, 2);
}

static SLOW_TX_STARTED: AtomicU32 = AtomicU32::new(0);
static SMALL_POOL_TX_STARTED: AtomicU32 = AtomicU32::new(0);

/// A transactional handler that holds its transaction 2.5 s, counting its starts.
struct SlowTx(&'static AtomicU32);

impl TxHandler for SlowTx {
    fn handle<'t>(
        &'t self,
        _item: &'t ClaimedItem,
        tx: &'t mut sqlx::Transaction<'static, sqlx::Postgres>,
    ) -> TxFuture<'t> {
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&mut **tx).await?;
            self.0.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            Ok(())
        })
    }
}

/// With the smallest pool the documentation allows (2), a transactional handler's turn leaves
/// a connection for accepts: the replica's LISTEN has one of its own (it took one of the two,
/// and every accept during a handler waited out the acquire timeout: a 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_two_leaves_a_connection_for_accepts_while_a_handler_runs() {
    let s = schema("txpool2");
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(1))
        .connect(&url())
        .await
        .unwrap();
    let a = PgInbox::builder().schema(&*s).open(pool).await.unwrap();
    stored(&a, &bwp("evt_small_pool")).await;
    let worker = Worker::builder(
        Arc::new(a.clone()),
        transactional(a.clone(), SlowTx(&SMALL_POOL_TX_STARTED)),
    )
    .poll_interval(Duration::from_millis(20))
    .spawn();
    let deadline = Instant::now() + Duration::from_secs(10);
    while SMALL_POOL_TX_STARTED.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the handler did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The LISTEN task is connected by now (it starts with the inbox).
    let during = a.accept(item(&bwp("evt_during_small_pool"))).await;
    assert!(matches!(during, Ok(Accepted::Stored(_))), "{during:?}");
    worker.shutdown().await;
}

/// Slow transactional handlers, more of them than the pool has connections, leave connections
/// for accepts: every accept made while they run is stored (the pool's acquire timeout is 1 s;
/// with every connection held by a handler, accepts failed and the receiver answered 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_transactional_handlers_leave_connections_for_accepts() {
    let s = schema("txpool");
    let a = inbox(&s).await; // a pool of 8
    for i in 0..16 {
        stored(&a, &bwp(&format!("evt_slow_{i}"))).await;
    }
    let worker = Worker::builder(Arc::new(a.clone()), transactional(a.clone(), SlowTx(&SLOW_TX_STARTED)))
        .concurrency(16)
        .lease(Duration::from_secs(60))
        .poll_interval(Duration::from_millis(20))
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(10);
    while SLOW_TX_STARTED.load(Ordering::SeqCst) < 4 {
        assert!(Instant::now() < deadline, "handlers did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give every other claimed handler the time to ask for its connection.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let accepts: Vec<_> = (0..8)
        .map(|i| {
            let a = a.clone();
            tokio::spawn(async move { a.accept(item(&bwp(&format!("evt_during_{i}")))).await })
        })
        .collect();
    for t in accepts {
        assert!(
            matches!(t.await.unwrap(), Ok(Accepted::Stored(_))),
            "an accept waited for a connection"
        );
    }
    assert_eq!(SLOW_TX_STARTED.load(Ordering::SeqCst), 4, "half the pool at a time");
    worker.shutdown().await;
}

/// A private PostgreSQL server (so it can be stopped), run as the `postgres` user when root.
struct PrivatePg {
    bindir: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl PrivatePg {
    fn start() -> Self {
        let bindir = std::fs::read_dir("/usr/lib/postgresql")
            .expect("Debian's postgresql (scripts/ensure-postgres.sh installs it)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("initdb");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("hg-pg-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pg = Self { bindir, dir, port };
        pg.run("initdb", &["-D", &pg.data(), "-U", "postgres", "--auth=trust"]);
        pg.ctl("start");
        pg
    }
    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
    fn run(&self, tool: &str, args: &[&str]) {
        let root = is_root();
        if root {
            Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&self.dir)
                .status()
                .unwrap();
        }
        let mut cmd = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bindir.join(tool));
            c
        } else {
            Command::new(self.bindir.join(tool))
        };
        let out = cmd.args(args).output().unwrap();
        assert!(out.status.success(), "{tool}: {}", String::from_utf8_lossy(&out.stderr));
    }
    fn ctl(&self, action: &str) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log").display().to_string();
        match action {
            "start" => self.run("pg_ctl", &["-D", &self.data(), "-l", &log, "-o", &opts, "-w", "start"]),
            _ => self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]),
        }
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bindir.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_answers_503_never_2xx_and_recovers() {
    let pg = PrivatePg::start();
    let inbox = PgInbox::connect(&pg.url()).await.unwrap();
    let addr = replica(&inbox).await;
    let client = reqwest::Client::new();
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let worker = Worker::builder(Arc::new(inbox.clone()), move |_item: ClaimedItem| {
        let c = Arc::clone(&c);
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            Ok::<(), HandlerError>(())
        }
    })
    .poll_interval(Duration::from_millis(50))
    .spawn();
    let post = |id: &str| {
        let (h, body) = signed(id);
        let (client, url) = (client.clone(), format!("http://{addr}/bwp"));
        async move { client.post(url).headers(h).body(body).send().await.unwrap() }
    };
    assert_eq!(post("evt_before").await.status(), 200);
    // Let the worker finish it first: a completion lost to the outage would wait for its lease.
    let deadline = Instant::now() + Duration::from_secs(10);
    while inbox.stats().await.unwrap().done < 1 {
        assert!(Instant::now() < deadline, "not handled before the outage");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    pg.ctl("stop");
    let started = Instant::now();
    let r = post("evt_outage").await;
    assert_eq!(r.status(), 503, "never 2xx while the database is down");
    assert!(r.headers().contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered within the sender's timeout: {:?}",
        started.elapsed()
    );

    pg.ctl("start");
    // The sender's retry after the outage is accepted and handled once.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = post("evt_outage").await;
        if r.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not accepted after the restart: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(post("evt_outage").await.text().await.unwrap().contains("duplicate"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while inbox.stats().await.map(|s| s.done).unwrap_or(0) < 2 {
        assert!(Instant::now() < deadline, "not handled after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    worker.shutdown().await;
}

/// A TCP proxy in front of PostgreSQL that can go silent: while paused it keeps every
/// connection open and forwards nothing, as a partitioned network or a frozen host does (a
/// stopped server, by contrast, closes its connections and is noticed at once).
struct SilentProxy {
    url: String,
    paused: Arc<std::sync::atomic::AtomicBool>,
    /// The pause of each connection that sent `LISTEN` (see [`SilentProxy::silence_listeners`]).
    listeners: Listeners,
}

/// One pause per connection.
type Pause = Arc<std::sync::atomic::AtomicBool>;
/// The pauses of the connections that sent `LISTEN`.
type Listeners = Arc<Mutex<Vec<Pause>>>;

impl SilentProxy {
    async fn start() -> SilentProxy {
        let real = url();
        let (head, rest) = real.split_once("://").unwrap();
        let (user, rest) = rest.rsplit_once('@').map_or(("", rest), |(u, r)| (u, r));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let upstream = tokio::net::lookup_host(authority).await.unwrap().next().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let at = if user.is_empty() {
            String::new()
        } else {
            format!("{user}@")
        };
        let paused = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pause = Arc::clone(&paused);
        let listeners: Listeners = Arc::default();
        let marks = Arc::clone(&listeners);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let own = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let outbound = (Arc::clone(&own), Some(Arc::clone(&marks)));
                tokio::spawn(Self::pump(cr, sw, Arc::clone(&pause), outbound));
                tokio::spawn(Self::pump(sr, cw, Arc::clone(&pause), (own, None)));
            }
        });
        // In plain text: the proxy recognises a `LISTEN` by its bytes (TLS would hide them).
        let sep = if path.contains('?') { '&' } else { '?' };
        SilentProxy {
            url: format!("{head}://{at}127.0.0.1:{port}/{path}{sep}sslmode=disable"),
            paused,
            listeners,
        }
    }

    /// Copies `from` to `to` while neither every connection (`paused`) nor this one (`own.0`)
    /// is silenced; `own.1`: the client's side, which marks the connection a listener once it
    /// sends `LISTEN`.
    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        paused: Arc<std::sync::atomic::AtomicBool>,
        own: (Pause, Option<Listeners>),
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0u8; 16 * 1024];
        let (own, mut marks) = own;
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if marks.is_some() && buf[..n].windows(7).any(|w| w.eq_ignore_ascii_case(b"LISTEN ")) {
                if let Some(m) = marks.take() {
                    m.lock().unwrap().push(Arc::clone(&own));
                }
            }
            // Bytes read just before a pause are held until it ends, like everything after.
            while paused.load(Ordering::SeqCst) || own.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    fn silent(&self, on: bool) {
        self.paused.store(on, Ordering::SeqCst);
    }

    /// An inbox in `schema` reached through this proxy: a pool of 4 (1 s to acquire; `ping`:
    /// a connection is tested before it is handed out) and a 1 s operation timeout.
    async fn inbox(&self, schema: &str, ping: bool) -> PgInbox {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(1))
            .test_before_acquire(ping)
            .connect(&self.url)
            .await
            .unwrap();
        PgInbox::builder()
            .schema(schema)
            .operation_timeout(Duration::from_secs(1))
            .open(pool)
            .await
            .unwrap()
    }

    /// Silences, for good, the connections that sent `LISTEN` so far (a half-open connection:
    /// nothing arrives, nothing fails); later connections are untouched.
    fn silence_listeners(&self) {
        for l in self.listeners.lock().unwrap().iter() {
            l.store(true, Ordering::SeqCst);
        }
    }
}

/// A replica's LISTEN connection that goes half-open (nothing arrives, nothing fails) is asked
/// after a silence, found dead and replaced: another replica's accept wakes this one's worker
/// again (it waited for its poll, here an hour, for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_listen_connection_is_replaced() {
    let s = schema("halfopen");
    let proxy = SilentProxy::start().await;
    let b = proxy.inbox(&s, true).await;
    let a = inbox(&s).await;
    let (worker, handled) = waking_worker(&b);
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.listeners.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "replica b did not LISTEN");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.silence_listeners();
    stored(&a, &bwp("evt_after_half_open")).await;
    let deadline = Instant::now() + Duration::from_secs(40);
    while handled.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "replica b never woke for the other replica's accept"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.shutdown().await;
}

/// The LISTEN sessions of the application `app`, by backend pid.
async fn listen_sessions(admin: &PgPool, app: &str) -> Vec<i32> {
    sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN %'")
        .bind(app)
        .fetch_all(admin)
        .await
        .unwrap()
}

/// Ends these backends (their clients see the connection lost).
async fn terminate(admin: &PgPool, pids: Vec<i32>) {
    for pid in pids {
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(admin)
            .await
            .unwrap();
    }
}

/// Waits up to 10 s for `app` to hold a LISTEN session; its pids.
async fn listening_as(admin: &PgPool, app: &str) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = listen_sessions(admin, app).await;
        if !pids.is_empty() {
            return pids;
        }
        assert!(Instant::now() < deadline, "no LISTEN session as {app}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A lost LISTEN connection is made again with the pool's options as they are then: an
/// application that rotates credentials (`PgPool::set_connect_options`: IAM tokens, Vault)
/// listened with the first ones for ever, so after the first loss it never listened again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listen_connection_reconnects_with_the_pools_current_options() {
    let s = schema("rotated");
    let (before, after) = (format!("{}_before", &*s), format!("{}_after", &*s));
    let options: sqlx::postgres::PgConnectOptions = url().parse().unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options.clone().application_name(&before))
        .await
        .unwrap();
    let inbox = PgInbox::builder().schema(&*s).open(pool.clone()).await.unwrap();
    let admin = pool_at(&url()).await;
    let first = listening_as(&admin, &before).await;
    pool.set_connect_options(options.application_name(&after));
    terminate(&admin, first).await;
    listening_as(&admin, &after).await;
    drop(inbox);
}

/// While the inbox cannot LISTEN (here: the pool's options name a database that does not
/// exist, for new connections only), its pending count still follows the database: a replica
/// that only accepts, while others complete, counted up to its cap and refused every delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_listen_connection_the_pending_count_still_follows_the_database() {
    let s = schema("nolisten");
    let app = format!("{}_app", &*s);
    let options: sqlx::postgres::PgConnectOptions = url().parse().unwrap();
    // Connections made up front: accepts below reuse them, only new ones meet the broken
    // options.
    let pool = PgPoolOptions::new()
        .max_connections(6)
        .min_connections(6)
        .connect_with(options.clone().application_name(&app))
        .await
        .unwrap();
    let accepting = PgInbox::builder()
        .schema(&*s)
        .max_pending(2)
        .open(pool.clone())
        .await
        .unwrap();
    let admin = pool_at(&url()).await;
    let first = listening_as(&admin, &app).await;
    stored(&accepting, &bwp("evt_nolisten_1")).await;
    stored(&accepting, &bwp("evt_nolisten_2")).await;
    pool.set_connect_options(options.database("hg_no_such_database").application_name(&app));
    terminate(&admin, first).await;
    // Another replica handles both.
    let working = inbox(&s).await;
    for c in claimed(&working, now_ms(), 10).await {
        assert!(working.complete(c.claim(), now_ms()).await.unwrap());
    }
    assert!(listen_sessions(&admin, &app).await.is_empty(), "it listens again");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match accepting.accept(item(&bwp("evt_nolisten_3"))).await {
            Ok(Accepted::Stored(_)) => break,
            Err(InboxError::Full { .. }) => {
                assert!(
                    Instant::now() < deadline,
                    "still full: the count never followed the database"
                )
            }
            // A connection the pool had to make anew meets the broken options: not what
            // is tested here; tried again.
            Err(InboxError::Storage(e)) => {
                assert!(Instant::now() < deadline, "no connection to accept with: {e}")
            }
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `op`'s answer, or a failed test when it waits 30 s (far beyond any bound under test).
async fn answered<T>(
    what: &str,
    op: impl std::future::Future<Output = Result<T, InboxError>>,
) -> Result<T, InboxError> {
    tokio::time::timeout(Duration::from_secs(30), op)
        .await
        .unwrap_or_else(|_| panic!("{what} waited for the silent database"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_database_fails_each_operation_within_its_bound_and_recovers() {
    // `statement_timeout` is the server's: it cannot end a wait for a database that stopped
    // answering. Without a bound on this side an accept waited until the sender gave up (its
    // timeout counted against the kill switch, no 503 + Retry-After) and a completion stuck in
    // the group commit held every completion after it.
    let s = schema("silent");
    let proxy = SilentProxy::start().await;
    // No ping before a connection is handed out, so the silence meets the statements
    // themselves, as it does when a partition starts while they run (a pinging pool would
    // fail at its acquire timeout instead, which says nothing about the bound under test).
    let inbox = proxy.inbox(&s, false).await;
    stored(&inbox, &bwp("evt_before")).await;
    let item_held = claimed(&inbox, now_ms(), 1).await.remove(0);

    proxy.silent(true);
    let started = Instant::now();
    assert!(answered("accept", inbox.accept(item(&bwp("evt_silent"))))
        .await
        .is_err());
    assert!(answered("claim", inbox.claim(now_ms(), Duration::from_secs(30), 1))
        .await
        .is_err());
    let complete = inbox.complete(item_held.claim(), now_ms());
    assert!(answered("complete", complete).await.is_err());
    // Each answered in about its bound (1 s, 2 s for a completion behind the group commit).
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());

    proxy.silent(false);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match inbox.accept(item(&bwp("evt_after"))).await {
            Ok(Accepted::Stored(_)) => break,
            other => assert!(Instant::now() < deadline, "no recovery: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The completion that failed is made again, as the worker would.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(inbox.complete(item_held.claim(), now_ms()).await, Ok(true)) {
        assert!(Instant::now() < deadline, "completions did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `operation_timeout(Duration::MAX)` turns the bound off: a completion (bounded by twice the
/// timeout) does not overflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbounded_operation_timeout_still_completes() {
    let s = schema("unbounded");
    let a = PgInbox::builder()
        .schema(&*s)
        .operation_timeout(Duration::MAX)
        .open(pool_at(&url()).await)
        .await
        .unwrap();
    let id = stored(&a, &bwp("evt_unbounded")).await;
    let c = a.claim(now_ms(), Duration::from_secs(30), 10).await.unwrap();
    assert_eq!(c.iter().map(|i| i.id).collect::<Vec<_>>(), [id]);
    assert!(a.complete(c[0].claim(), now_ms()).await.unwrap());
    // Also asked from another runtime (an actix-web worker's), where the caller's wait is
    // bounded from the call: a deadline `Duration::MAX` away panicked there.
    let other = a.clone();
    let asked = std::thread::spawn(move || {
        another_runtime().block_on(async move { other.accept(item(&bwp("evt_unbounded_elsewhere"))).await })
    })
    .join();
    assert!(matches!(asked, Ok(Ok(Accepted::Stored(_)))), "{asked:?}");
}

/// A completion sent again (its first answer was lost) is answered `true` and counts its item
/// out of the pending cap once, not twice (accepts past the cap until the next recount).
#[tokio::test]
async fn a_repeated_completion_counts_the_item_out_once() {
    let s = schema("repeat_complete");
    let inbox = capped_inbox(&s, 2).await;
    stored(&inbox, &bwp("evt_repeat_1")).await;
    stored(&inbox, &bwp("evt_repeat_2")).await;
    let c = claimed(&inbox, now_ms(), 10).await;
    assert_eq!(c.len(), 2);
    for _ in 0..2 {
        assert!(inbox.complete(c[0].claim(), now_ms()).await.unwrap());
    }
    // One item running, one new: the cap of 2 is reached.
    stored(&inbox, &bwp("evt_repeat_3")).await;
    assert!(matches!(
        inbox.accept(item(&bwp("evt_repeat_4"))).await,
        Err(InboxError::Full { limit: 2 })
    ));
}

/// A completion sent again while its first try is still committing (the first outlived its
/// client-side bound) is answered `true` once the first commits: the retry's own statement
/// waited for the row and found it done by the same claim.
#[tokio::test]
async fn a_completion_retried_while_the_first_commits_is_answered_true() {
    let s = schema("complete_race");
    let inbox = inbox(&s).await;
    stored(&inbox, &bwp("evt_complete_race")).await;
    let c = claimed(&inbox, now_ms(), 1).await;
    let claim = c[0].claim();
    let mut first = inbox.pool().begin().await.unwrap();
    assert!(inbox.complete_in(&mut first, claim).await.unwrap());
    let retry = {
        let inbox = inbox.clone();
        tokio::spawn(async move { inbox.complete(claim, now_ms()).await })
    };
    // The retry's statement starts and waits for the row the first holds.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!retry.is_finished(), "the retry did not wait for the row");
    first.commit().await.unwrap();
    assert!(
        retry.await.unwrap().unwrap(),
        "a completion by the same claim is answered true"
    );
}

/// A handler error holding a NUL (PostgreSQL's text refuses it) is still recorded, the NUL
/// replaced: the item backs off or goes dead instead of running again every lease.
#[tokio::test]
async fn a_handler_error_with_a_nul_is_recorded() {
    let s = schema("nul_error");
    let inbox = inbox(&s).await;
    let id = stored(&inbox, &bwp("evt_nul_error")).await;
    let c = claimed(&inbox, now_ms(), 1).await;
    assert!(inbox.fail(c[0].claim(), "bad\0byte", None, now_ms()).await.unwrap());
    let rec = inbox.get(id).await.unwrap().unwrap();
    assert_eq!(rec.state, InboxState::Dead);
    assert_eq!(rec.last_error.as_deref(), Some("bad\u{fffd}byte"));
}

/// A schema name PostgreSQL would cut to 63 bytes is refused rather than created under
/// another name than the one every later check looks for.
#[tokio::test]
async fn a_schema_name_over_63_bytes_is_refused() {
    let base = schema("long");
    let at_most = Schema(format!("{}{}", &*base, "x".repeat(63 - base.len())));
    let over = format!("{}x", &*at_most);
    let opened = PgInbox::builder().schema(&over).open(pool_at(&url()).await).await;
    assert!(
        matches!(opened, Err(InboxError::Storage(ref e)) if e.to_string().contains("63")),
        "{:?}",
        opened.err()
    );
    assert!(PgInbox::builder()
        .schema(&*at_most)
        .open(pool_at(&url()).await)
        .await
        .is_ok());
}

/// Replaying every dead item stops where pending items fill half the pending cap, as on
/// SQLite: new deliveries are still accepted.
#[tokio::test]
async fn replaying_dead_items_leaves_half_the_pending_cap_for_new_deliveries() {
    let s = schema("replay_half");
    let inbox = capped_inbox(&s, 4).await;
    for i in 0..6 {
        stored(&inbox, &bwp(&format!("evt_replay_half_{i}"))).await;
        let c = claimed(&inbox, now_ms(), 10).await;
        assert!(inbox.fail(c[0].claim(), "refused", None, now_ms()).await.unwrap());
    }
    assert_eq!(inbox.replay_dead(now_ms()).await.unwrap(), 2);
    stored(&inbox, &bwp("evt_replay_half_new")).await;
}

/// A tool that opens the inbox without a cap of its own (`hookguard inbox replay --dead`)
/// keeps to the one the serving replica recorded: it used to take the default (100,000), so
/// its replay filled the serving replica's cap and every new delivery was refused `503`
/// (SQLite records its cap in the file). An inbox of an earlier build (no record) gets its
/// record from the next serving open; a tool's open records nothing of its own.
#[tokio::test]
async fn a_tool_without_a_cap_keeps_to_the_one_the_serving_replica_recorded() {
    let s = schema("recorded_cap");
    let serving = capped_inbox(&s, 4).await;
    for i in 0..6 {
        stored(&serving, &bwp(&format!("evt_recorded_cap_{i}"))).await;
        let c = claimed(&serving, now_ms(), 10).await;
        assert!(serving.fail(c[0].claim(), "refused", None, now_ms()).await.unwrap());
    }
    let tool = || async {
        PgInbox::builder()
            .schema(&*s)
            .existing_only()
            .keep_recorded_cap()
            .open(pool_at(&url()).await)
            .await
            .unwrap()
    };
    assert_eq!(tool().await.replay_dead(now_ms()).await.unwrap(), 2);
    // An explicit cap on a tool's open (existing only) records nothing.
    drop(
        PgInbox::builder()
            .schema(&*s)
            .existing_only()
            .max_pending(1_000)
            .open(pool_at(&url()).await)
            .await
            .unwrap(),
    );
    assert_eq!(
        tool().await.replay_dead(now_ms()).await.unwrap(),
        0,
        "the cap is still 4"
    );
    // Nor does a writing open that keeps the recorded cap (`hookguard inbox migrate`).
    drop(
        PgInbox::builder()
            .schema(&*s)
            .keep_recorded_cap()
            .open(pool_at(&url()).await)
            .await
            .unwrap(),
    );
    assert_eq!(tool().await.replay_dead(now_ms()).await.unwrap(), 0, "still 4");
    // An earlier build's inbox (no record): the next serving open records its cap (6: room
    // for 1 beside the 2 pending), and without it a tool keeps to the default (all 3 left).
    let psql = |sql: String| {
        let o = Command::new("psql").arg(url()).args(["-qAtc", &sql]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    psql(format!("DROP TABLE \"{}\".hookguard_settings", &*s));
    drop(capped_inbox(&s, 6).await);
    assert_eq!(
        psql(format!(
            "SELECT value FROM \"{}\".hookguard_settings WHERE name = 'max_pending'",
            &*s
        )),
        "6"
    );
    assert_eq!(tool().await.replay_dead(now_ms()).await.unwrap(), 1);
    psql(format!("DROP TABLE \"{}\".hookguard_settings", &*s));
    assert_eq!(tool().await.replay_dead(now_ms()).await.unwrap(), 3, "the default cap");
    // A replica with another cap than the one recorded says so (replicas should share one).
    drop(capped_inbox(&s, 6).await);
    let logs = hookguard_core::testing::Logs::default();
    {
        let _on_this_thread = tracing::subscriber::set_default(logs.clone());
        drop(capped_inbox(&s, 7).await);
        drop(capped_inbox(&s, 7).await);
    }
    let warned: Vec<String> = logs
        .messages(tracing::Level::WARN)
        .into_iter()
        .filter(|m| m.contains("pending cap"))
        .collect();
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains("(7) replaces 6"), "{warned:?}");
}

/// The inbox speaks TLS to PostgreSQL: `sslmode=require` connects (it failed: "SQLx was built
/// without TLS support"), and by default (`prefer`) a server that offers TLS gets it — the
/// delivery bodies and the role's login no longer cross the network in clear, without a word
/// (an operator's tryout found six plain connections to a server with `ssl = on`).
#[tokio::test]
async fn the_inbox_connects_over_tls_when_the_server_offers_it() {
    let psql = |sql: &str| {
        let o = Command::new("psql").arg(url()).args(["-qAtc", sql]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    if psql("SHOW ssl") != "on" {
        // scripts/ensure-postgres.sh starts its own server with TLS; a server of the caller's
        // without it cannot show this.
        assert!(std::env::var_os("CI").is_none(), "the test server offers no TLS");
        eprintln!("skipped: this PostgreSQL offers no TLS");
        return;
    }
    let s = schema("tls");
    let sep = if url().contains('?') { '&' } else { '?' };
    for (mode, query) in [("require", "sslmode=require&"), ("the default", "")] {
        let app = format!("hg_tls_{}_{}", std::process::id(), query.len());
        let inbox = PgInbox::builder()
            .schema(&*s)
            .connect(&format!("{}{sep}{query}application_name={app}", url()))
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        stored(&inbox, &bwp(&format!("evt_tls_{}", query.len()))).await;
        let (encrypted, plain) = {
            let row = psql(&format!(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) FROM pg_stat_ssl s \
                 JOIN pg_stat_activity a USING (pid) WHERE a.application_name = '{app}'"
            ));
            let (a, b) = row.split_once('|').unwrap();
            (a.parse::<u32>().unwrap(), b.parse::<u32>().unwrap())
        };
        assert!(
            encrypted >= 1 && plain == 0,
            "{mode}: {encrypted} encrypted, {plain} plain"
        );
        drop(inbox);
    }
}
