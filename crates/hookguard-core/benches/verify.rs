//! Verify cost against the hardware limit: a bare `hmac`+`sha2` HMAC-SHA256 of the same bytes;
//! for Standard Webhooks `v1a` (group `standard_v1a`), a bare `ed25519-dalek` `verify_strict`
//! of the same signed content (needs the `ed25519` feature).
//!
//! `cargo bench -p hookguard-core --bench verify` (`--features ed25519 -- standard` for both
//! Standard Webhooks groups)

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hmac::{Hmac, Mac};
use hookguard_core::schemes::{BuildWorkPro, GitHub, StandardWebhooks};
use hookguard_core::{RequestHead, Scheme};
use sha2::Sha256;

const SIZES: [usize; 4] = [256, 4 << 10, 64 << 10, 1 << 20];
mod support;
use support::signed;

fn body(n: usize) -> Bytes {
    Bytes::from((0..n).map(|i| b'a' + (i % 26) as u8).collect::<Vec<u8>>())
}

fn bench_scheme(c: &mut Criterion, name: &str, scheme: impl Scheme + Clone, secret: &str, key: &[u8]) {
    let mut g = c.benchmark_group(name);
    for n in SIZES {
        let body = body(n);
        let (headers, v) = signed(scheme.clone(), secret, &body);
        let (m, u) = (http::Method::POST, http::Uri::from_static("/webhooks"));
        let head = RequestHead::new(&m, &u, &headers);
        assert!(v.authenticate(&head, &body).is_ok());
        g.throughput(Throughput::Bytes(n as u64));
        // The limit: one HMAC-SHA256 over the same bytes (prefix + body), keyed from scratch.
        let prefix: &[u8] = match name {
            "buildworkpro" => b"1700000000.",
            "standard" => b"msg_2Kx1.1700000000.",
            _ => b"",
        };
        g.bench_with_input(BenchmarkId::new("bare_hmac", n), &body, |b, body| {
            b.iter(|| {
                let mut mac = Hmac::<Sha256>::new_from_slice(black_box(key)).unwrap();
                mac.update(prefix);
                mac.update(black_box(body));
                black_box(mac.finalize().into_bytes())
            })
        });
        g.bench_with_input(BenchmarkId::new("hookguard_verify", n), &body, |b, body| {
            b.iter(|| black_box(v.authenticate(black_box(&head), black_box(body)).unwrap()))
        });
    }
    g.finish();
}

/// The steps of one request through the layer, on the 4 KiB BuildWorkPro delivery of the layer
/// and `serve` benches (group `breakdown`): authenticate (header parse, replay window, HMAC with
/// the prepared key, compare), describe (the JSON probe: the whole body is validated, `id` and
/// `type` read), the whole `verify`, and `serve`'s JSON line. The dedupe claim+complete is the
/// `dedupe` bench.
fn breakdown(c: &mut Criterion) {
    let secret = "whsec_bench_secret";
    let head = r#"{"id":"evt_00000000000000a1","type":"bid.accepted","created_at":"2026-04-25T17:42:01.812Z","tenant_id":17,"data":{"notes":""#;
    let mut raw = head.as_bytes().to_vec();
    raw.resize(4096 - 3, b'x');
    raw.extend_from_slice(b"\"}}");
    let body = Bytes::from(raw);
    let (headers, v) = signed(BuildWorkPro::new(), secret, &body);
    let (m, u) = (http::Method::POST, http::Uri::from_static("/webhooks"));
    let head = RequestHead::new(&m, &u, &headers);
    let mut g = c.benchmark_group("breakdown");
    g.bench_function("authenticate_4096", |b| {
        b.iter(|| black_box(v.authenticate(black_box(&head), black_box(&body)).unwrap()))
    });
    // The same probe on a dense event of the same size: short strings, numbers, nested
    // objects (the layer bench's body is one long string, which a fast string scan flatters).
    let mut dense = String::from(
        r#"{"id":"evt_00000000000000a1","type":"bid.accepted","created_at":"2026-04-25T17:42:01.812Z","data":{"items":["#,
    );
    for i in 0.. {
        let item = format!(
            r#"{{"lineId":{i},"qty":{}.5,"unit":"ea","costCode":"03-300","description":"Concrete forms","approved":true,"notes":null}},"#,
            i * 7
        );
        if dense.len() + item.len() + 3 > 4096 {
            break;
        }
        dense.push_str(&item);
    }
    dense.pop();
    dense.push_str("]}}");
    let dense = Bytes::from(dense);
    for (name, probed) in [("describe_4096", &body), ("describe_4096_dense", &dense)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                black_box(
                    BuildWorkPro::new()
                        .describe(black_box(&head), black_box(probed))
                        .unwrap(),
                )
            })
        });
    }
    g.bench_function("verify_4096", |b| {
        b.iter(|| black_box(v.verify(black_box(&head), black_box(body.clone())).unwrap()))
    });
    let delivery = match v.verify(&head, body.clone()).unwrap() {
        hookguard_core::Verdict::Deliver(d) => d,
        other => panic!("{other:?}"),
    };
    g.bench_function("summary_json", |b| {
        b.iter(|| black_box(black_box(&delivery).summary_json()))
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_scheme(
        c,
        "buildworkpro",
        BuildWorkPro::new(),
        "whsec_5f3c1b2a9d",
        b"whsec_5f3c1b2a9d",
    );
    let std_key = b"0123456789abcdef0123456789abcdef";
    let std_secret = format!(
        "whsec_{}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, std_key)
    );
    bench_scheme(c, "standard", StandardWebhooks::new(), &std_secret, std_key);
    bench_scheme(c, "github", GitHub::new(), "gh-secret", b"gh-secret");
}

/// Standard Webhooks `v1a`: Ed25519 with a `whpk_` public key, next to `v1` (group `standard`).
#[cfg(feature = "ed25519")]
fn bench_v1a(c: &mut Criterion) {
    use base64::Engine;
    use hookguard_core::{clock::ManualClock, SignParams, Verifier};
    use support::NOW;
    let b64 = &base64::engine::general_purpose::STANDARD;
    let seed = [7u8; 32];
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
    let public = signing.verifying_key();
    let whsk = format!("whsk_{}", b64.encode(seed));
    let whpk = format!("whpk_{}", b64.encode(public.as_bytes()));
    let mut g = c.benchmark_group("standard_v1a");
    for n in SIZES {
        let body = body(n);
        let signed = StandardWebhooks::new()
            .sign(&whsk, &body, &SignParams::new(NOW).id("msg_2Kx1"))
            .unwrap();
        let mut headers = http::HeaderMap::new();
        headers.extend(signed.headers);
        let v = Verifier::builder(StandardWebhooks::new())
            .secret(&whpk)
            .clock(ManualClock::new(NOW))
            .build()
            .unwrap();
        let (m, u) = (http::Method::POST, http::Uri::from_static("/webhooks"));
        let head = RequestHead::new(&m, &u, &headers);
        assert!(v.authenticate(&head, &body).is_ok());
        let message = [b"msg_2Kx1.1700000000.".as_slice(), &body].concat();
        let sig = ed25519_dalek::Signer::sign(&signing, &message);
        g.throughput(Throughput::Bytes(n as u64));
        // The limit: one strict Ed25519 verification of the signed content, already assembled.
        g.bench_with_input(BenchmarkId::new("bare_ed25519", n), &message, |b, message| {
            b.iter(|| black_box(public.verify_strict(black_box(message), black_box(&sig)).is_ok()))
        });
        g.bench_with_input(BenchmarkId::new("hookguard_verify", n), &body, |b, body| {
            b.iter(|| black_box(v.authenticate(black_box(&head), black_box(body)).unwrap()))
        });
    }
    g.finish();
}

#[cfg(feature = "ed25519")]
criterion_group!(verify, benches, breakdown, bench_v1a);
#[cfg(not(feature = "ed25519"))]
criterion_group!(verify, benches, breakdown);
criterion_main!(verify);
