//! Standard Webhooks verify: hookguard vs the `svix` and `standardwebhooks` crates, identical
//! inputs (same secret, id, timestamp, body, header).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hookguard_core::schemes::StandardWebhooks;
use hookguard_core::{RequestHead, Scheme, SignParams, Verifier};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SIZES: [usize; 4] = [256, 4 << 10, 64 << 10, 1 << 20];

fn benches(c: &mut Criterion) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let ours = Verifier::builder(StandardWebhooks::new()).secret(SECRET).build().unwrap();
    let svix = svix::webhooks::Webhook::new(SECRET).unwrap();
    let sw = standardwebhooks::Webhook::new(SECRET).unwrap();
    let mut g = c.benchmark_group("standard_webhooks_verify");
    for n in SIZES {
        let body = Bytes::from((0..n).map(|i| b'a' + (i % 26) as u8).collect::<Vec<u8>>());
        let signed = StandardWebhooks::new().sign(SECRET, &body, &SignParams::new(now).id("msg_p5jXN8AQM9LWM0D4loKWxJek")).unwrap();
        let mut headers = http::HeaderMap::new();
        headers.extend(signed.headers);
        // All three accept the same request.
        let (m, u) = (http::Method::POST, http::Uri::from_static("/webhooks"));
        let head = RequestHead::new(&m, &u, &headers);
        ours.authenticate(&head, &body).unwrap();
        svix.verify(&body, &headers).unwrap();
        sw.verify(&body, &headers).unwrap();
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_with_input(BenchmarkId::new("hookguard", n), &body, |b, body| {
            b.iter(|| ours.authenticate(black_box(&head), black_box(body)).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("svix", n), &body, |b, body| {
            b.iter(|| svix.verify(black_box(body), black_box(&headers)).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("standardwebhooks", n), &body, |b, body| {
            b.iter(|| sw.verify(black_box(body), black_box(&headers)).unwrap())
        });
    }
    g.finish();
}

criterion_group!(peers, benches);
criterion_main!(peers);
