//! The actix middleware's own CPU per request, in process: no socket, no HTTP parser. A signed
//! 4 KiB BuildWorkPro delivery, a new event each time, goes through an actix `App` whose one
//! resource takes the body as `web::Bytes` and answers 204 — once wrapped in a no-op middleware
//! (`plain`, the layer bench's plain server) and once in [`Webhook`] (`hookguard`). Beside them,
//! a bare HMAC-SHA256 of the same signed bytes with the key prepared once, as hookguard prepares
//! it. `hookguard − plain − HMAC` is what the middleware adds beyond the HMAC without the
//! network's noise: the JSON validation, the dedupe claim and completion (a 4,000,000-key store
//! holding 600,000 keys, as the layer bench's), and the plumbing.
//!
//! `cargo bench -p hookguard-actix --bench in_process`; `IN_PROCESS_CAPACITY` and
//! `IN_PROCESS_FILL` change the store's capacity and how many keys it holds before the first
//! request.

use std::time::Duration;

use actix_web::dev::Service as _;
use actix_web::{test, web, App, HttpResponse};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use hmac::{Hmac, Mac};
use hookguard_actix::Webhook;
use hookguard_core::clock::ManualClock;
use hookguard_core::dedupe::{Claim, Dedupe, DedupeStore, MemoryStore};
use hookguard_core::schemes::BuildWorkPro;
use hookguard_core::testing::block_on;
use hookguard_core::{Receiver, Scheme, SignParams, Verifier};

// The layer bench's 4 KiB body, secret and settings.
#[path = "../../../benches/support/load.rs"]
mod load;
use load::{body, env_or, SECRET};

const NOW: u64 = 1_700_000_000;

/// A signed request as the layer bench sends it: the same headers, the body whole.
fn signed(id: u64) -> test::TestRequest {
    let body = body(id);
    let s = BuildWorkPro::new().sign(SECRET, &body, &SignParams::new(NOW)).unwrap();
    let mut req = test::TestRequest::post()
        .uri("/webhooks")
        .insert_header(("host", "127.0.0.1"))
        .insert_header(("content-type", "application/json"))
        .insert_header(("content-length", body.len().to_string()));
    for (k, v) in s.headers.iter() {
        req = req.insert_header((k.as_str(), v.to_str().unwrap()));
    }
    req.set_payload(body)
}

fn receiver() -> Receiver {
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

fn middleware(c: &mut Criterion) {
    let sys = actix_web::rt::System::new();
    let route = || web::post().to(|_body: web::Bytes| async { HttpResponse::NoContent().finish() });
    let plain = sys.block_on(test::init_service(
        App::new().service(
            web::resource("/webhooks")
                .wrap(actix_web::middleware::Compat::new(
                    actix_web::middleware::Identity::default(),
                ))
                .route(route()),
        ),
    ));
    let hooks = Webhook::from(receiver());
    let guarded = sys.block_on(test::init_service(
        App::new().service(web::resource("/webhooks").wrap(hooks).route(route())),
    ));
    let mut g = c.benchmark_group("in_process");
    let mut id = 0u64;
    g.bench_function("actix_plain_4096", |b| {
        b.iter_batched(
            || {
                id += 1;
                signed(id).to_request()
            },
            |req| {
                let res = sys.block_on(plain.call(req)).unwrap();
                assert_eq!(res.status(), 204);
                res
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("actix_hookguard_4096", |b| {
        b.iter_batched(
            || {
                id += 1;
                signed(id).to_request()
            },
            |req| {
                let res = sys.block_on(guarded.call(req)).unwrap();
                assert_eq!(res.status(), 204);
                res
            },
            BatchSize::PerIteration,
        )
    });
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
    g.finish();
}

criterion_group!(benches, middleware);
criterion_main!(benches);
