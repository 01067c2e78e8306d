//! In-memory dedupe store: claim+complete throughput on one thread.
//!
//! `cargo bench -p hookguard-core --bench dedupe`

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use hookguard_core::dedupe::{Claim, MemoryStore};

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
            if let Claim::New(t) = store.claim_now(black_box(key), Duration::from_secs(30)) {
                store.complete_now(&t, Duration::from_secs(3600));
            }
        })
    });
    g.bench_function("claim_duplicate_done", |b| {
        b.iter(|| black_box(store.claim_now(black_box(&keys[keys.len() - 1]), Duration::from_secs(30))))
    });
    g.finish();
}

criterion_group!(dedupe, benches);
criterion_main!(dedupe);
