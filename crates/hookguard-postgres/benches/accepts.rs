//! The PostgreSQL inbox, measured against `pgbench` on the same server in the same run:
//! accepts per second with 16 concurrent callers and 4 KiB bodies, next to pgbench running the
//! same single-row `INSERT … ON CONFLICT DO NOTHING` with 16 clients; transactions committed
//! per accept (one statement, one round trip); worker throughput on two replicas with a no-op
//! handler; claim latency p50/p99.
//!
//! `cargo bench -p hookguard-postgres --bench accepts` (`$HOOKGUARD_POSTGRES_URL`, default the
//! local server) prints Markdown. Needs `pgbench` on PATH (Debian's postgresql-client... or
//! postgresql package).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookguard_core::inbox::{now_ms, ClaimedItem, HandlerError, InboxStore, NewItem, Worker};
use hookguard_postgres::PgInbox;
use sqlx::postgres::PgPoolOptions;

const CLIENTS: u64 = 16;

fn url() -> String {
    std::env::var("HOOKGUARD_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn body(id: u64) -> Bytes {
    let mut b = format!(r#"{{"id":"evt_{id:016x}","type":"bid.accepted","data":{{"notes":""#).into_bytes();
    b.resize(4093, b'x');
    b.extend_from_slice(b"\"}}");
    Bytes::from(b)
}

fn item(id: u64) -> NewItem {
    let mut it = NewItem::from_parts("buildworkpro", Some(format!("buildworkpro:evt_{id:016x}")), body(id));
    it.event_id = Some(format!("evt_{id:016x}"));
    it.event_type = Some("bid.accepted".into());
    it.received_at_ms = now_ms();
    it.headers = vec![("content-type".into(), "application/json".into())];
    it
}

fn pgbench(url: &str, secs: u64, schema: &str) -> f64 {
    let script = std::env::temp_dir().join(format!("hg-pgbench-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        format!(
            "\\set k random(1, 1000000000000)\n\
             INSERT INTO \"{schema}\".pgbench_inbox (provider, dedupe_key, body) \
             VALUES ('buildworkpro', 'k' || :k, convert_to(repeat('x', 4096), 'UTF8')) ON CONFLICT DO NOTHING;\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new("pgbench")
        .args([
            "-n",
            "-c",
            &CLIENTS.to_string(),
            "-j",
            "2",
            "-T",
            &secs.to_string(),
            "-f",
        ])
        .arg(&script)
        .arg(url)
        .output()
        .expect("pgbench on PATH");
    let text = String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_file(&script);
    text.lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("pgbench output: {text} {}", String::from_utf8_lossy(&out.stderr)))
}

/// A runtime of its own on this thread.
fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `callers` concurrent tasks accepting new deliveries (ids from `next`) until `deadline`:
/// how many were accepted.
async fn accept_until(inbox: PgInbox, next: Arc<AtomicU64>, deadline: Instant, callers: u64) -> u64 {
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (inbox, next) = (inbox.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    inbox.accept(item(next.fetch_add(1, Ordering::Relaxed))).await.unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.unwrap();
    }
    accepted
}

/// Accepts per second as actix-web makes them: the inbox opened on a current-thread runtime
/// of its own (actix's `System`, driven for the whole run), `CLIENTS` callers on two other
/// current-thread runtimes (actix's worker threads). Every accept is sent to the inbox's
/// runtime (`PgInbox` keeps its connections there).
fn accepts_from_other_runtimes(url: &str, schema: &str, secs: u64, first: u64) -> f64 {
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (url, schema) = (url.to_owned(), schema.to_owned());
    let home = std::thread::spawn(move || {
        let rt = current_thread();
        rt.block_on(async move {
            let pool = PgPoolOptions::new()
                .max_connections(CLIENTS as u32 + 2)
                .connect(&url)
                .await
                .unwrap();
            let inbox = PgInbox::builder()
                .schema(&schema)
                .max_pending(u64::MAX)
                .open(pool)
                .await
                .unwrap();
            ready_tx.send(inbox).unwrap();
            let _ = stopped.await;
        });
    });
    let inbox = ready.recv().unwrap();
    let next = Arc::new(AtomicU64::new(first));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (inbox, next) = (inbox.clone(), Arc::clone(&next));
            std::thread::spawn(move || {
                let rt = current_thread();
                rt.block_on(accept_until(inbox, next, deadline, CLIENTS / 2))
            })
        })
        .collect();
    let accepted: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let rate = accepted as f64 / start.elapsed().as_secs_f64();
    stop.send(()).unwrap();
    home.join().unwrap();
    rate
}

fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let secs: u64 = if quick { 3 } else { 8 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = url();
        let schema = format!("hg_bench_{}", std::process::id());
        let pool = PgPoolOptions::new().max_connections(CLIENTS as u32 + 2).connect(&url).await.unwrap();
        let inbox = PgInbox::builder().schema(&schema).max_pending(u64::MAX).open(pool.clone()).await.unwrap();
        sqlx::query(&format!(
            "CREATE TABLE \"{schema}\".pgbench_inbox (id bigserial PRIMARY KEY, provider text NOT NULL, \
             dedupe_key text NOT NULL UNIQUE, body bytea NOT NULL)"
        ))
        .execute(&pool)
        .await
        .unwrap();

        // pgbench first, then ours, then pgbench again: the median side by side.
        let pg1 = tokio::task::spawn_blocking({
            let (u, s) = (url.clone(), schema.clone());
            move || pgbench(&u, secs, &s)
        })
        .await
        .unwrap();
        let commits = |pool: sqlx::PgPool| async move {
            sqlx::query_scalar::<_, i64>("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
                .fetch_one(&pool)
                .await
                .unwrap()
        };
        // pg_stat_database is updated when backends report: busy ones at most once a second,
        // idle ones after 10 s. Wait for both before and after.
        tokio::time::sleep(Duration::from_millis(11_000)).await;
        let before = commits(pool.clone()).await;
        let deadline = Instant::now() + Duration::from_secs(secs);
        let start = Instant::now();
        let accepted = accept_until(inbox.clone(), Arc::new(AtomicU64::new(0)), deadline, CLIENTS).await;
        let ours = accepted as f64 / start.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_millis(11_000)).await;
        let after = commits(pool.clone()).await;
        let pg2 = tokio::task::spawn_blocking({
            let (u, s) = (url.clone(), schema.clone());
            move || pgbench(&u, secs, &s)
        })
        .await
        .unwrap();
        let pg = (pg1 + pg2) / 2.0;
        let foreign = tokio::task::spawn_blocking({
            let (u, s) = (url.clone(), schema.clone());
            move || accepts_from_other_runtimes(&u, &s, secs, 1 << 40)
        })
        .await
        .unwrap();

        // Worker throughput on two replicas (two pools), no-op handler.
        let total = accepted;
        let b = PgInbox::builder()
            .schema(&schema)
            .open(PgPoolOptions::new().max_connections(8).connect(&url).await.unwrap())
            .await
            .unwrap();
        let done = Arc::new(AtomicU64::new(0));
        let claim_lat = Arc::new(std::sync::Mutex::new(Vec::new()));
        let start = Instant::now();
        let workers: Vec<_> = [inbox.clone(), b.clone()]
            .into_iter()
            .map(|store| {
                let d = Arc::clone(&done);
                Worker::builder(Arc::new(store), |_i: ClaimedItem| async move { Ok::<(), HandlerError>(()) })
                    .concurrency(32)
                    .poll_interval(Duration::from_millis(20))
                    .on_outcome(move |_, _| {
                        d.fetch_add(1, Ordering::Relaxed);
                    })
                    .spawn()
            })
            .collect();
        // Claim latency, sampled beside the workers.
        let sampler = {
            let (store, lat, done) = (inbox.clone(), Arc::clone(&claim_lat), Arc::clone(&done));
            tokio::spawn(async move {
                while done.load(Ordering::Relaxed) < total {
                    let t = Instant::now();
                    let got = store.claim(now_ms(), Duration::from_secs(60), 1).await.unwrap();
                    lat.lock().unwrap().push(t.elapsed());
                    for c in got {
                        store.complete(c.claim(), now_ms()).await.unwrap();
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        while done.load(Ordering::Relaxed) < total {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let work = total as f64 / start.elapsed().as_secs_f64();
        sampler.abort();
        for w in workers {
            w.shutdown().await;
        }
        let mut lat = claim_lat.lock().unwrap().clone();
        lat.sort();
        let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;

        println!("| measure | value |");
        println!("|---|---|");
        println!("| pgbench, same single-row INSERT … ON CONFLICT DO NOTHING, 4 KiB, 16 clients | {pg:.0} tps (runs {pg1:.0}, {pg2:.0}) |");
        println!("| PgInbox accepts, 16 concurrent callers, 4 KiB | {ours:.0} accepts/s ({:.2}× pgbench) |", ours / pg);
        println!(
            "| PgInbox accepts from two other runtimes (actix's worker threads; the inbox on a current-thread runtime of its own), 16 callers | {foreign:.0} accepts/s ({:.2}× pgbench) |",
            foreign / pg
        );
        println!(
            "| transactions committed per accept (pg_stat_database.xact_commit) | {:.3} |",
            (after - before) as f64 / accepted as f64
        );
        println!("| worker throughput, two replicas, no-op handler | {work:.0} done/s |");
        println!("| claim latency (one item, beside the workers) | p50 {:.2} ms, p99 {:.2} ms |", p(0.5), p(0.99));
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&pool).await.unwrap();
    });
}
