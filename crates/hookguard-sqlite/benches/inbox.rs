//! The SQLite inbox, measured: the disk's own commit rates (single-row and batched commits with
//! WAL + `synchronous=FULL`), durable accepts per second through the group-committing store
//! with 32 concurrent callers, accept latency at half that rate, worker throughput with a no-op
//! handler, bytes on disk per stored 4 KiB delivery, and disk use under a flood once purged.
//!
//! `cargo bench -p hookguard-sqlite --bench inbox` prints Markdown tables (run in a scratch
//! directory under the system temp dir, on the same disk as the project's target/ usually).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookguard_core::inbox::{now_ms, ClaimedItem, HandlerError, InboxStore, NewItem, Worker};
use hookguard_core::DedupeScope;
use hookguard_sqlite::SqliteInbox;

const BODY: usize = 4096;

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("INBOX_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("hg-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn body(id: u64) -> Bytes {
    let mut b = format!(r#"{{"id":"evt_{id:016x}","type":"bid.accepted","data":{{"notes":""#).into_bytes();
    b.resize(BODY - 3, b'x');
    b.extend_from_slice(b"\"}}");
    Bytes::from(b)
}

fn item(id: u64) -> NewItem {
    let mut it = NewItem::from_parts("buildworkpro", Some(format!("buildworkpro:evt_{id:016x}")), body(id));
    it.scope = DedupeScope::Retained;
    it.event_id = Some(format!("evt_{id:016x}"));
    it.event_type = Some("bid.accepted".into());
    it.received_at_ms = now_ms();
    it.headers = vec![
        (
            "buildworkpro-signature".into(),
            format!("t=1700000000,v1={}", "a".repeat(64)),
        ),
        ("content-type".into(), "application/json".into()),
    ];
    it
}

/// Raw rusqlite: rows per second with one commit per row, and with 64 rows per commit.
fn disk_baseline(secs: f64) -> (f64, f64) {
    let dir = scratch("disk");
    let conn = rusqlite::Connection::open(dir.join("raw.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT UNIQUE, body BLOB);",
    )
    .unwrap();
    let b = body(0);
    let mut n = 0u64;
    let run = |batch: usize, n: &mut u64| {
        let start = Instant::now();
        let mut rows = 0u64;
        while start.elapsed().as_secs_f64() < secs {
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            for _ in 0..batch {
                *n += 1;
                conn.execute(
                    "INSERT INTO t (k, body) VALUES (?1, ?2)",
                    rusqlite::params![n.to_string(), b.as_ref()],
                )
                .unwrap();
            }
            conn.execute_batch("COMMIT").unwrap();
            rows += batch as u64;
        }
        rows as f64 / start.elapsed().as_secs_f64()
    };
    let single = run(1, &mut n);
    let batched = run(64, &mut n);
    drop(conn);
    let _ = std::fs::remove_dir_all(&dir);
    (single, batched)
}

async fn accepts(inbox: &SqliteInbox, total: u64, tasks: u64, base: u64) -> f64 {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (inbox, next) = (inbox.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    inbox.accept(item(base + i)).await.unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

async fn latency(inbox: &SqliteInbox, rate: f64, secs: f64, base: u64) -> (f64, f64) {
    let gap = Duration::from_secs_f64(1.0 / rate);
    let n = (rate * secs) as u64;
    let mut handles = Vec::with_capacity(n as usize);
    let start = tokio::time::Instant::now();
    for i in 0..n {
        tokio::time::sleep_until(start + gap * i as u32).await;
        let inbox = inbox.clone();
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            inbox.accept(item(base + i)).await.unwrap();
            t.elapsed()
        }));
    }
    let mut lat = Vec::with_capacity(handles.len());
    for h in handles {
        lat.push(h.await.unwrap());
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    (p(0.5), p(0.99))
}

async fn worker_throughput(inbox: &SqliteInbox, total: u64, concurrency: usize) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let d = Arc::clone(&done);
    let start = Instant::now();
    let w = Worker::builder(Arc::new(inbox.clone()), |_item: ClaimedItem| async move {
        Ok::<(), HandlerError>(())
    })
    .concurrency(concurrency)
    .poll_interval(Duration::from_millis(5))
    .on_outcome(move |_, _| {
        d.fetch_add(1, Ordering::Relaxed);
    })
    .spawn();
    while done.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    w.shutdown().await;
    rate
}

fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let secs = if quick { 1.0 } else { 3.0 };
    let total: u64 = if quick { 10_000 } else { 40_000 };
    let (single, batched) = disk_baseline(secs);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = scratch("store");
        let inbox = SqliteInbox::builder(dir.join("inbox.db"))
            .max_pending(10_000_000)
            .open()
            .unwrap();
        let _ = accepts(&inbox, 2_000, 32, 1 << 40).await; // warm up
        let rate = accepts(&inbox, total, 32, 0).await;
        let (p50, p99) = latency(&inbox, rate / 2.0, secs, 1 << 41).await;
        let stats = inbox.stats().await.unwrap();
        let stored = stats.pending;
        let per_item = stats.disk_bytes.unwrap_or(0) as f64 / stored as f64;
        let work = worker_throughput(&inbox, stored, 64).await;
        // The worker's default concurrency, on a backlog of its own.
        let few = total / 4;
        let _ = accepts(&inbox, few, 32, 1 << 42).await;
        let work_default = worker_throughput(&inbox, few, 4).await;
        println!("| measure | value |");
        println!("|---|---|");
        println!("| disk: single-row commits (WAL, synchronous=FULL, 4 KiB rows) | {single:.0} rows/s |");
        println!("| disk: 64 rows per commit | {batched:.0} rows/s |");
        println!("| SqliteInbox accepts, 32 concurrent callers (group commit) | {rate:.0} accepts/s |");
        println!(
            "| accept latency at {:.0}/s (half that rate) | p50 {p50:.2} ms, p99 {p99:.2} ms |",
            rate / 2.0
        );
        println!("| worker, no-op handler, concurrency 64 | {work:.0} done/s |");
        println!("| worker, no-op handler, concurrency 4 (the default) | {work_default:.0} done/s |");
        println!("| bytes on disk per stored 4 KiB delivery (db + WAL) | {per_item:.0} B |");
        drop(inbox);
        let _ = std::fs::remove_dir_all(&dir);

        // A flood of unique ids with the purge applied after each round: disk use stays flat.
        let dir = scratch("flood");
        let inbox = SqliteInbox::builder(dir.join("inbox.db"))
            .max_pending(10_000_000)
            .open()
            .unwrap();
        let round = total / 4;
        let mut sizes = Vec::new();
        for r in 0..5u64 {
            accepts(&inbox, round, 32, (r + 10) << 40).await;
            let now = now_ms();
            loop {
                let claimed = inbox.claim(now_ms(), Duration::from_secs(60), 1000).await.unwrap();
                if claimed.is_empty() {
                    break;
                }
                for c in claimed {
                    inbox.complete(c.claim(), now).await.unwrap();
                }
            }
            inbox.purge(now_ms() + 1, false).await.unwrap();
            sizes.push(inbox.stats().await.unwrap().disk_bytes.unwrap_or(0));
        }
        let mib: Vec<String> = sizes.iter().map(|b| format!("{:.1}", *b as f64 / 1048576.0)).collect();
        println!(
            "| disk after each of 5 floods of {round} unique deliveries, handled and purged | {} MiB |",
            mib.join(" → ")
        );
        drop(inbox);
        let _ = std::fs::remove_dir_all(&dir);
    });
}
