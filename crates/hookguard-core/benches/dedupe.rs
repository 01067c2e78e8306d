//! In-memory dedupe store: claim+complete throughput on one thread, through the
//! `DedupeStore` methods a receiver calls (driven by `testing::block_on`: the store never waits).
//!
//! `cargo bench -p hookguard-core --bench dedupe`

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use hookguard_core::dedupe::{Claim, DedupeStore, MemoryStore};
use hookguard_core::testing::block_on;

fn benches(c: &mut Criterion) {
    let store = MemoryStore::new(1_000_000);
    let keys: Vec<String> = (0..1_000_000u32)
        .map(|i| format!("buildworkpro:evt_{i:016x}"))
        .collect();
    let mut i = 0usize;
    let mut g = c.benchmark_group("memory_store");
    g.throughput(Throughput::Elements(1));
    g.bench_function("claim_complete_unique", |b| {
        b.iter(|| {
            let key = &keys[i % keys.len()];
            i += 1;
            if let Ok(Claim::New(t)) = block_on(store.claim(black_box(key), Duration::from_secs(30))) {
                let _ = block_on(store.complete(&t, Duration::from_secs(3600)));
            }
        })
    });
    g.bench_function("claim_duplicate_done", |b| {
        b.iter(|| {
            black_box(block_on(
                store.claim(black_box(&keys[keys.len() - 1]), Duration::from_secs(30)),
            ))
        })
    });
    g.finish();
}

criterion_group!(dedupe, benches);
criterion_main!(dedupe);
