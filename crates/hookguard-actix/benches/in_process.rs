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

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::{test, web, App, HttpResponse};
use criterion::{criterion_group, criterion_main, measurement::WallTime, BatchSize, BenchmarkGroup, Criterion};
use hookguard_actix::Webhook;
use hookguard_core::schemes::BuildWorkPro;
use hookguard_core::{Scheme, SignParams};

// The layer bench's 4 KiB body, secret and settings.
#[path = "../../../benches/support/in_process.rs"]
mod in_process;
#[path = "../../../benches/support/load.rs"]
mod load;
use in_process::{receiver, NOW};
use load::{body, SECRET};

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

/// `name`: requests from `make` (signed, a new event each) through `app` (answering 204).
fn bench_app<S, B, R>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    sys: &actix_web::rt::SystemRunner,
    app: &S,
    mut make: impl FnMut() -> R,
) where
    S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    g.bench_function(name, |b| {
        b.iter_batched(
            &mut make,
            |req| {
                let res = sys.block_on(app.call(req)).unwrap();
                assert_eq!(res.status(), 204);
                res
            },
            BatchSize::PerIteration,
        )
    });
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
    let mut next = || {
        id += 1;
        signed(id).to_request()
    };
    bench_app(&mut g, "actix_plain_4096", &sys, &plain, &mut next);
    bench_app(&mut g, "actix_hookguard_4096", &sys, &guarded, &mut next);
    in_process::bare_hmac(&mut g);
    g.finish();
}

criterion_group!(benches, middleware);
criterion_main!(benches);
