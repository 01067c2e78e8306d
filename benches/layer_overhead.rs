//! Layer overhead: requests per second and server CPU per request of the same server with and
//! without hookguard (BuildWorkPro verify + in-memory dedupe), 4 KiB bodies, every request a
//! new event. Server pinned to CPU 0, load generator to CPU 1 (`taskset`), on 127.0.0.1.
//!
//! `cargo bench --bench layer_overhead --features axum,actix` prints a Markdown table (5 alternating
//! rounds of 6 s per server, `LAYER_BENCH_ROUNDS`/`LAYER_BENCH_SECS`; medians) (default
//! features otherwise: the opt-in `metrics` feature is off, as for a user who did not enable it).
//! Internally it runs itself as `serve MODE PORT` and `load PORT SECONDS RUN` child processes
//! (RUN keeps event ids of the warm-up and the measured run apart).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use hookguard_core::clock::ManualClock;
use hookguard_core::dedupe::MemoryStore;
use hookguard_core::schemes::BuildWorkPro;
use hookguard_core::Verifier;

#[path = "support/load.rs"]
mod load;
use load::{cpu_ticks, env_or, free_port, Load, SECRET};

const NOW: u64 = 1_700_000_000;

fn verifier() -> Verifier {
    Verifier::builder(BuildWorkPro::new())
        .secret(SECRET)
        .clock(ManualClock::new(NOW))
        .build()
        .unwrap()
}

fn serve(mode: &str, port: u16) {
    if mode.starts_with("actix") {
        return serve_actix(mode, port);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        use axum::{http::StatusCode, routing::post, Router};
        // Both servers take the body, as any receiver does.
        let route = post(|_body: axum::body::Bytes| async { StatusCode::NO_CONTENT });
        let app = match mode {
            "axum-plain" => Router::new().route("/webhooks", route),
            "axum-hookguard" => {
                let layer = hookguard_tower::WebhookLayer::from(
                    hookguard_core::Receiver::new(verifier())
                        .with_dedupe(hookguard_core::dedupe::Dedupe::new(MemoryStore::new(4_000_000))),
                );
                Router::new().route("/webhooks", route.layer(layer))
            }
            other => panic!("unknown mode {other}"),
        };
        use axum::serve::ListenerExt;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap()
            .tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
        println!("ready");
        axum::serve(listener, app).await.unwrap();
    });
}

fn serve_actix(mode: &str, port: u16) {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let guarded = match mode {
        "actix-plain" => false,
        "actix-hookguard" => true,
        other => panic!("unknown mode {other}"),
    };
    let mw = hookguard_actix::Webhook::from(
        hookguard_core::Receiver::new(verifier())
            .with_dedupe(hookguard_core::dedupe::Dedupe::new(MemoryStore::new(4_000_000))),
    );
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            // Both servers take the body, as any receiver does (and actix only keeps a
            // connection alive when the payload was read).
            let route = web::post().to(|_body: web::Bytes| async { HttpResponse::NoContent().finish() });
            let app = App::new();
            if guarded {
                app.service(web::resource("/webhooks").wrap(mw.clone()).route(route))
            } else {
                // The same resource shape, wrapped in a no-op so the only difference is hookguard.
                app.service(
                    web::resource("/webhooks")
                        .wrap(actix_web::middleware::Compat::new(
                            actix_web::middleware::Identity::default(),
                        ))
                        .route(route),
                )
            }
        })
        .workers(1)
        .bind(("127.0.0.1", port))
        .unwrap();
        println!("ready");
        server.run().await.unwrap();
    });
}

struct Row {
    rps: f64,
    cpu_us_per_req: f64,
}

fn measure(exe: &str, mode: &str, secs: u64) -> Row {
    let port = free_port();
    let mut server = Command::new("taskset")
        .args(["-c", "0", exe, "serve", mode, &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("taskset");
    let mut line = String::new();
    BufReader::new(server.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let pid = server.id();
    // Warm up, then measure.
    Command::new("taskset")
        .args(["-c", "1", exe, "load", &port.to_string(), "2", "1"])
        .output()
        .unwrap();
    let before = cpu_ticks(pid);
    let out = Command::new("taskset")
        .args(["-c", "1", exe, "load", &port.to_string(), &secs.to_string(), "2"])
        .output()
        .unwrap();
    let after = cpu_ticks(pid);
    server.kill().ok();
    server.wait().ok();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|v| v.parse::<u64>().unwrap());
    let (done, bad) = (it.next().unwrap(), it.next().unwrap());
    assert_eq!(bad, 0, "{mode}: {bad} requests were not answered 2xx");
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let cpu_secs = (after - before) as f64 / ticks_per_sec;
    Row {
        rps: done as f64 / secs as f64,
        cpu_us_per_req: cpu_secs * 1e6 / done as f64,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => return serve(&args[2], args[3].parse().unwrap()),
        Some("hmac") => return hmac_child(),
        Some("load") => {
            let out = Load {
                port: args[2].parse().unwrap(),
                secs: args[3].parse().unwrap(),
                run: args[4].parse().unwrap(),
                ts: NOW,
                rate: None,
                dup_every: None,
            }
            .run();
            return println!("{} {}", out.done, out.bad);
        }
        _ => {}
    }
    let exe = std::env::current_exe().unwrap();
    let exe = exe.to_str().unwrap();
    let secs = env_or("LAYER_BENCH_SECS", 6);
    let rounds: usize = env_or("LAYER_BENCH_ROUNDS", 5);
    let hmac = bare_hmac_us();
    let pairs = [("axum-plain", "axum-hookguard"), ("actix-plain", "actix-hookguard")];
    println!("| server | requests/s (plain) | requests/s (hookguard) | ratio | server CPU µs/req plain | hookguard | added µs/req | bare HMAC µs (same run) | added beyond the HMAC | target |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (plain, guarded) in pairs {
        // Alternating rounds; medians, and the added CPU as the median of each round's pair
        // (this virtual machine's speed drifts over minutes).
        let (mut p, mut g) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            p.push(measure(exe, plain, secs));
            g.push(measure(exe, guarded, secs));
        }
        let added = median(
            p.iter()
                .zip(&g)
                .map(|(p, g)| g.cpu_us_per_req - p.cpu_us_per_req)
                .collect(),
        );
        let (prps, grps) = (
            median(p.iter().map(|r| r.rps).collect()),
            median(g.iter().map(|r| r.rps).collect()),
        );
        let beyond = added - hmac;
        println!(
            "| {} | {prps:.0} | {grps:.0} | {:.2} | {:.1} | {:.1} | {added:.1} | {hmac:.2} | {beyond:.1} | ≤ 1.0 {} |",
            plain.split('-').next().unwrap(),
            grps / prps,
            median(p.iter().map(|r| r.cpu_us_per_req).collect()),
            median(g.iter().map(|r| r.cpu_us_per_req).collect()),
            if beyond <= 1.0 { "✅" } else { "❌" }
        );
    }
}

/// One bare HMAC-SHA256 of a request's signed bytes (`t.` + the 4 KiB body), keyed from
/// scratch, in µs: the median of 31 blocks of 2,000, on CPU 0 like the servers.
fn bare_hmac_us() -> f64 {
    let out = Command::new("taskset")
        .args(["-c", "0", std::env::current_exe().unwrap().to_str().unwrap(), "hmac"])
        .output()
        .expect("taskset");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().unwrap_or_else(|_| panic!("hmac child: {text}"))
}

fn hmac_child() {
    use hmac::{Hmac, Mac};
    let body = vec![b'x'; load::BODY];
    let mut blocks: Vec<f64> = (0..31)
        .map(|_| {
            let t = std::time::Instant::now();
            for _ in 0..2_000 {
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(std::hint::black_box(SECRET.as_bytes())).unwrap();
                mac.update(b"1700000000.");
                mac.update(std::hint::black_box(&body));
                std::hint::black_box(mac.finalize().into_bytes());
            }
            t.elapsed().as_secs_f64() / 2_000.0 * 1e6
        })
        .collect();
    blocks.sort_by(f64::total_cmp);
    println!("{}", blocks[blocks.len() / 2]);
}
