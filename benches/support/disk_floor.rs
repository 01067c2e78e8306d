//! The floor of a durable accept on this disk: raw `rusqlite`, the fewest writes any SQLite
//! inbox can do per delivery under the issue's own terms (WAL, `synchronous=FULL`, a unique
//! key per event, the 4 KiB body stored, the delivery marked done once handled).
//!
//! One table, one unique index, no headers, no due-time or finished index, no claim (the
//! handler gets the row in memory), no lease, no meta: per transaction the rows of the
//! previous transaction are marked done and the next `batch` deliveries are inserted, one
//! fsync'd commit for both. Keys come from `streams` interleaved counters, as 32 keep-alive
//! connections each sending its own sequence of ids do (each stream has its own place in the
//! index, as random ids would have theirs). Checkpoints are SQLite's own (every 1,000 pages).
//!
//! Run in a process of its own pinned to the server's core: what it reports is that core's
//! CPU per delivery for the disk alone, before any HTTP, verification or handler.

use std::path::Path;
use std::time::Instant;

/// What the floor measured.
pub struct DiskFloor {
    pub rows_per_s: f64,
    /// This process's user + system CPU per delivery (µs), fsync writeback and checkpoints
    /// included (both run in the committing thread).
    pub cpu_us_per_row: f64,
}

/// This process's CPU ticks so far (the load generator's reading, beside this module).
fn self_cpu_ticks() -> u64 {
    super::load::cpu_ticks(std::process::id())
}

/// Runs the floor in `dir` (a scratch directory) for `secs` seconds after a one-second warm-up.
pub fn run(dir: &Path, secs: f64, batch: usize, streams: u64) -> DiskFloor {
    let conn = rusqlite::Connection::open(dir.join("floor.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, state INTEGER NOT NULL, body BLOB NOT NULL);",
    )
    .unwrap();
    let body = vec![b'x'; 4096];
    let mut n = 0u64;
    let mut last: Vec<i64> = Vec::with_capacity(batch);
    let mut round = |rows: &mut u64| {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        {
            let mut done = conn.prepare_cached("UPDATE t SET state = 2 WHERE id = ?1").unwrap();
            for id in last.drain(..) {
                done.execute([id]).unwrap();
            }
            let mut ins = conn
                .prepare_cached("INSERT INTO t (k, state, body) VALUES (?1, 0, ?2)")
                .unwrap();
            for _ in 0..batch {
                let (stream, seq) = (n % streams, n / streams);
                n += 1;
                let key = format!("buildworkpro:evt_{:016x}", (stream << 40) | seq);
                ins.execute(rusqlite::params![key, body]).unwrap();
                last.push(conn.last_insert_rowid());
            }
        }
        conn.execute_batch("COMMIT").unwrap();
        *rows += batch as u64;
    };
    let warm = Instant::now();
    while warm.elapsed().as_secs_f64() < 1.0 {
        round(&mut 0);
    }
    let (start, ticks) = (Instant::now(), self_cpu_ticks());
    let mut rows = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        round(&mut rows);
    }
    let (wall, cpu) = (start.elapsed().as_secs_f64(), (self_cpu_ticks() - ticks) as f64 / 100.0);
    DiskFloor {
        rows_per_s: rows as f64 / wall,
        cpu_us_per_row: cpu * 1e6 / rows as f64,
    }
}
