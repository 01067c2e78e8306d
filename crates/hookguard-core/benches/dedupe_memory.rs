//! In-memory dedupe store: resident memory per remembered key at 1 million keys, memory under
//! an endless flood of unique ids once capacity is reached, and one-thread claim+complete rate
//! (through the `DedupeStore` methods a receiver calls, driven by `testing::block_on`).
//!
//! `cargo bench -p hookguard-core --bench dedupe_memory` — prints a Markdown table.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hookguard_core::dedupe::{Claim, DedupeStore, MemoryStore};
use hookguard_core::testing::block_on;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn fill(store: &MemoryStore, from: u64, to: u64, key: &mut String) -> Duration {
    let start = Instant::now();
    for i in from..to {
        key.clear();
        let _ = write!(key, "buildworkpro:evt_{i:016x}");
        if let Ok(Claim::New(t)) = block_on(store.claim(key, Duration::from_secs(30))) {
            let _ = block_on(store.complete(&t, Duration::from_secs(48 * 3600)));
        }
    }
    start.elapsed()
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    const KEYS: u64 = 1_000_000;
    let mut key = String::with_capacity(64);
    let before = rss_bytes();
    // Twice the keys inserted: the table half full, where a few keys (the oldest of their two
    // buckets) may already give way (`keys remembered` counts them; see MemoryStore's docs).
    let store = MemoryStore::new(2 * KEYS as usize);
    let took = fill(&store, 0, KEYS, &mut key);
    let after_fill = rss_bytes();
    let remembered = store.len() as u64;
    let per_key = (after_fill - before) as f64 / remembered as f64;
    let rate = KEYS as f64 / took.as_secs_f64();

    // Flood: 5 million more unique ids; memory must stay flat.
    let flood_took = fill(&store, KEYS, 6 * KEYS, &mut key);
    let after_flood = rss_bytes();
    let growth = after_flood as i64 - after_fill as i64;
    let flood_rate = 5.0 * KEYS as f64 / flood_took.as_secs_f64();

    println!("| metric | value |");
    println!("|---|---|");
    println!("| store capacity | {} |", 2 * KEYS);
    println!("| keys inserted (claim+complete) | {KEYS} |");
    println!("| keys remembered after insert | {remembered} |");
    println!(
        "| RSS growth for those keys | {:.1} MiB |",
        (after_fill - before) as f64 / 1048576.0
    );
    println!("| resident bytes per remembered key | {per_key:.1} |");
    println!(
        "| RSS change over a further 5,000,000 unique ids | {:+.1} MiB |",
        growth as f64 / 1048576.0
    );
    println!("| keys remembered after the flood | {} |", store.len());
    println!(
        "| claim+complete per second, one thread (fill) | {:.2} M/s |",
        rate / 1e6
    );
    println!(
        "| claim+complete per second, one thread (flood, at capacity) | {:.2} M/s |",
        flood_rate / 1e6
    );
}
