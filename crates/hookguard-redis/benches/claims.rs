//! Claims per second against a real Redis, and Redis commands per claim.
//!
//! `cargo bench -p hookguard-redis --bench claims` (Redis at `HOOKGUARD_REDIS_URL`, default
//! `redis://127.0.0.1:6379`; `HOOKGUARD_BENCH_SECS` sets the duration, default 5).
//!
//! 16 tasks share one `RedisStore` (one multiplexed connection, as in a receiver) and loop
//! claim + complete on unique keys. Then 16 tasks only claim, for a fifth of the time. The
//! server's `INFO commandstats` before and after each phase count what each claim cost:
//! `EVALSHA` calls are client round trips; `SET`/`GET` are run inside the scripts.
//!
//! Prints a Markdown table row to stdout (details to stderr). The command counts are exact
//! only if nothing else uses that Redis meanwhile; other traffic is reported as a warning.
//! Run without `--bench` (as `cargo test --benches` does) it is a short smoke run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookguard_core::dedupe::{Claim, DedupeStore};
use hookguard_redis::RedisStore;
use redis::aio::MultiplexedConnection;

const TASKS: usize = 16;
const LEASE: Duration = Duration::from_secs(30);
/// Short, so the benchmark's keys leave the shared Redis soon.
const RETENTION: Duration = Duration::from_secs(10);
const CLAIM_ONLY_LEASE: Duration = Duration::from_secs(10);

fn redis_url() -> String {
    std::env::var("HOOKGUARD_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// `calls` per command from `INFO commandstats`.
async fn command_calls(conn: &mut MultiplexedConnection) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO commandstats");
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// Commands called between two snapshots, without our own `INFO`.
fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> HashMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(k, v)| *v > 0 && k != "info")
        .collect()
}

struct Phase {
    ops: u64,
    elapsed: Duration,
    commands: HashMap<String, u64>,
}

impl Phase {
    fn per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
    fn per_op(&self, command: &str) -> f64 {
        self.commands.get(command).copied().unwrap_or(0) as f64 / self.ops.max(1) as f64
    }
    /// Commands that neither the scripts nor the client should have issued.
    fn foreign(&self) -> Vec<(String, u64)> {
        let mut v: Vec<_> = self
            .commands
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "evalsha" | "set" | "get"))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        v.sort();
        v
    }
}

/// Runs `TASKS` tasks for `duration`; each loops claiming a fresh key (and completing it).
async fn phase(
    store: &RedisStore,
    admin: &mut MultiplexedConnection,
    tag: &'static str,
    duration: Duration,
    complete: bool,
) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let before = command_calls(admin).await;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let (store, stop, ops) = (store.clone(), Arc::clone(&stop), Arc::clone(&ops));
        tasks.spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("buildworkpro:{tag}_{t:02}_{i:010}");
                i += 1;
                let lease = if complete { LEASE } else { CLAIM_ONLY_LEASE };
                match store.claim(&key, lease).await {
                    Ok(Claim::New(token)) => {
                        if complete {
                            assert!(store.complete(&token, RETENTION).await.expect("complete"));
                        }
                    }
                    Ok(other) => panic!("a unique key was not new: {other:?}"),
                    Err(e) => panic!("claim failed: {e}"),
                }
                ops.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    tasks.join_all().await;
    let elapsed = started.elapsed();
    let after = command_calls(admin).await;
    Phase {
        ops: ops.load(Ordering::Relaxed),
        elapsed,
        commands: delta(&before, &after),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let secs: f64 = std::env::var("HOOKGUARD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if bench { 5.0 } else { 0.3 });
    let duration = Duration::from_secs_f64(secs);

    let url = redis_url();
    let prefix = format!("hookguard-bench:{:016x}:", rand::random::<u64>());
    let store = RedisStore::builder(url.as_str())
        .prefix(&prefix)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot reach Redis at {url} (run scripts/ensure-redis.sh): {e}"));
    let mut admin = redis::Client::open(url.as_str())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection");
    let version: String = redis::cmd("INFO")
        .arg("server")
        .query_async::<String>(&mut admin)
        .await
        .expect("INFO server")
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:").map(str::to_owned))
        .unwrap_or_else(|| "?".into());

    // Warm up: connections, script cache, allocator.
    phase(&store, &mut admin, "warm", Duration::from_millis(200), true).await;

    let full = phase(&store, &mut admin, "full", duration, true).await;
    let claims = phase(&store, &mut admin, "claim", duration / 5, false).await;

    eprintln!(
        "claim+complete: {} claims in {:.2?} = {:.0} claims/s; per claim+complete: evalsha {:.3}, set {:.3}, get {:.3}",
        full.ops,
        full.elapsed,
        full.per_sec(),
        full.per_op("evalsha"),
        full.per_op("set"),
        full.per_op("get"),
    );
    eprintln!(
        "claim only:     {} claims in {:.2?} = {:.0} claims/s; per claim: evalsha {:.3}, set {:.3}, get {:.3}",
        claims.ops,
        claims.elapsed,
        claims.per_sec(),
        claims.per_op("evalsha"),
        claims.per_op("set"),
        claims.per_op("get"),
    );
    for (name, p) in [("claim+complete", &full), ("claim only", &claims)] {
        let foreign = p.foreign();
        if !foreign.is_empty() {
            eprintln!(
                "warning: {name}: other commands ran on this Redis meanwhile (counts are approximate): {foreign:?}"
            );
        }
    }
    eprintln!(
        "| benchmark | tasks | claims/s (claim+complete) | EVALSHA per claim+complete | claims/s (claim only) | EVALSHA per claim | Redis |"
    );
    eprintln!("|---|---|---|---|---|---|---|");
    println!(
        "| redis claim+complete, unique keys, one connection | {TASKS} | {:.0} | {:.2} | {:.0} | {:.2} | {version} |",
        full.per_sec(),
        full.per_op("evalsha"),
        claims.per_sec(),
        claims.per_op("evalsha"),
    );
}
