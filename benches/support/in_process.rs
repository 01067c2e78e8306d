//! What the tower layer's and the actix middleware's in-process benches share (each includes
//! this file by path): the receiver they measure and the bare HMAC beside it.

use std::time::Duration;

use criterion::{black_box, measurement::WallTime, BenchmarkGroup};
use hmac::{Hmac, Mac};
use hookguard_core::clock::ManualClock;
use hookguard_core::dedupe::{Claim, Dedupe, DedupeStore, MemoryStore};
use hookguard_core::schemes::BuildWorkPro;
use hookguard_core::testing::block_on;
use hookguard_core::{Receiver, Verifier};

use super::load::{body, env_or, SECRET};

/// The signing time of every request (the verifier's clock is set to it).
pub const NOW: u64 = 1_700_000_000;

/// A BuildWorkPro receiver on a manual clock at [`NOW`], its in-memory store of
/// `IN_PROCESS_CAPACITY` keys (4,000,000) holding `IN_PROCESS_FILL` (600,000) done keys, as
/// the layer bench's.
pub fn receiver() -> Receiver {
    let store = MemoryStore::new(env_or("IN_PROCESS_CAPACITY", 4_000_000));
    for i in 0..env_or("IN_PROCESS_FILL", 600_000u64) {
        let key = format!("buildworkpro:fill_{i:016x}");
        match block_on(store.claim(&key, Duration::from_secs(30))) {
            Ok(Claim::New(t)) => assert!(block_on(store.complete(&t, Duration::from_secs(86_400))).unwrap()),
            other => panic!("{other:?}"),
        }
    }
    let verifier = Verifier::builder(BuildWorkPro::new())
        .secret(SECRET)
        .clock(ManualClock::new(NOW))
        .build()
        .unwrap();
    Receiver::new(verifier).with_dedupe(Dedupe::new(store))
}

/// `bare_hmac_4096`: HMAC-SHA256 of `t.` and the 4 KiB body with the key prepared once, as
/// hookguard prepares it.
pub fn bare_hmac(g: &mut BenchmarkGroup<'_, WallTime>) {
    let keyed = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    let bytes = body(0);
    g.bench_function("bare_hmac_4096", |b| {
        b.iter(|| {
            let mut mac = keyed.clone();
            mac.update(b"1700000000.");
            mac.update(black_box(&bytes));
            black_box(mac.finalize().into_bytes())
        })
    });
}
