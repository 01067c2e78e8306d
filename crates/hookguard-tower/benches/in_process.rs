//! The tower layer's own CPU per request, in process: no socket, no HTTP parser, no scheduler.
//! A signed 4 KiB BuildWorkPro delivery, a new event each time, goes through `WebhookService`
//! around an inner service that answers 204 at once, polled to completion on this thread
//! (everything is ready at the first poll: the body is whole and the in-memory store never
//! waits). Beside it, a bare HMAC-SHA256 of the same signed bytes with the key prepared once,
//! as hookguard prepares it. The difference is what the layer adds beyond the HMAC without the
//! network's noise: the JSON validation, the dedupe claim and completion (a 4,000,000-key
//! store holding 600,000 keys, as the layer bench's), and the plumbing.
//!
//! `cargo bench -p hookguard-tower --bench in_process`; `IN_PROCESS_CAPACITY` and `IN_PROCESS_FILL`
//! change the store's capacity and how many keys it holds before the first request (a small
//! store that stays in the cache shows what the table's memory costs).

use std::convert::Infallible;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use hookguard_core::schemes::BuildWorkPro;
use hookguard_core::testing::block_on;
use hookguard_core::{Scheme, SignParams};
use hookguard_tower::WebhookLayer;
use http::{Request, Response};
use http_body_util::Full;
use tower::{Layer, Service};

// The layer bench's 4 KiB body, secret and settings.
#[path = "../../../benches/support/in_process.rs"]
mod in_process;
#[path = "../../../benches/support/load.rs"]
mod load;
use in_process::{receiver, NOW};
use load::{body, SECRET};

fn signed(id: u64) -> Request<Full<Bytes>> {
    let body = body(id);
    let s = BuildWorkPro::new().sign(SECRET, &body, &SignParams::new(NOW)).unwrap();
    let mut req = Request::post("/webhooks")
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    req.headers_mut().extend(s.headers);
    req
}

fn layer(c: &mut Criterion) {
    let receiver = receiver();
    let inner = tower::service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::builder().status(204).body(Full::new(Bytes::new())).unwrap())
    });
    let mut service = WebhookLayer::from(receiver).layer(inner);
    let mut g = c.benchmark_group("in_process");
    let mut id = 0u64;
    g.bench_function("tower_layer_4096", |b| {
        b.iter_batched(
            || {
                id += 1;
                signed(id)
            },
            |req| {
                block_on(std::future::poll_fn(|cx| service.poll_ready(cx))).unwrap();
                let res = block_on(service.call(req)).unwrap();
                assert_eq!(res.status(), 204);
                res
            },
            // One request made right before its call, as a server reads one: its body is in the
            // cache (a batch of 4 KiB requests made ahead would be read back from memory).
            BatchSize::PerIteration,
        )
    });
    in_process::bare_hmac(&mut g);
    g.finish();
}

criterion_group!(benches, layer);
criterion_main!(benches);
