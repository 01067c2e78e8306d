//! Layer overhead: requests per second and server CPU per request of the same server with and
//! without hookguard (BuildWorkPro verify + in-memory dedupe), 4 KiB bodies, every request a
//! new event. Server pinned to CPU 0, load generator to CPU 1 (`taskset`), on 127.0.0.1.
//!
//! `cargo bench --bench layer_overhead --features axum,actix` prints a Markdown table (default
//! features otherwise: the opt-in `metrics` feature is off, as for a user who did not enable it).
//! Internally it runs itself as `serve MODE PORT` and `load PORT SECONDS RUN` child processes
//! (RUN keeps event ids of the warm-up and the measured run apart).

use std::io::{BufRead, BufReader};
use std::net::TcpListener as StdListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookguard_core::clock::ManualClock;
use hookguard_core::dedupe::MemoryStore;
use hookguard_core::schemes::BuildWorkPro;
use hookguard_core::{Scheme, SignParams, Verifier};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NOW: u64 = 1_700_000_000;
const SECRET: &str = "whsec_bench_secret";
const BODY: usize = 4096;
const CONNECTIONS: usize = 32;

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

fn request(id: u64) -> Vec<u8> {
    let head = format!(
        r#"{{"id":"evt_{id:016x}","type":"bid.accepted","created_at":"2026-04-25T17:42:01.812Z","tenant_id":17,"data":{{"notes":""#
    );
    let mut body = head.into_bytes();
    body.resize(BODY - 3, b'x');
    body.extend_from_slice(b"\"}}");
    let signed = BuildWorkPro::new().sign(SECRET, &body, &SignParams::new(NOW)).unwrap();
    let mut req = format!(
        "POST /webhooks HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in signed.headers {
        req.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
    }
    req.push_str("\r\n");
    let mut out = req.into_bytes();
    out.extend_from_slice(&body);
    out
}

fn load(port: u16, secs: u64, run: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let tasks: Vec<_> = (0..CONNECTIONS as u64)
            .map(|c| {
                let (done, bad) = (done.clone(), bad.clone());
                tokio::spawn(async move {
                    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                    s.set_nodelay(true).unwrap();
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let req = request((run << 56) | (c << 40) | n);
                        n += 1;
                        s.write_all(&req).await.unwrap();
                        let mut have = 0;
                        loop {
                            let r = s.read(&mut buf[have..]).await.unwrap();
                            assert!(r > 0, "server closed");
                            have += r;
                            if let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                                let head = std::str::from_utf8(&buf[..end]).unwrap().to_ascii_lowercase();
                                let len: usize = head
                                    .lines()
                                    .find_map(|l| l.strip_prefix("content-length:"))
                                    .map(|v| v.trim().parse().unwrap())
                                    .unwrap_or(0);
                                while have < end + 4 + len {
                                    have += s.read(&mut buf[have..]).await.unwrap();
                                }
                                if !head.starts_with("http/1.1 204") {
                                    bad.fetch_add(1, Ordering::Relaxed);
                                }
                                break;
                            }
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    println!("{} {}", done.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Row {
    mode: String,
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
    assert_eq!(bad, 0, "{mode}: {bad} requests were not answered 204");
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let cpu_secs = (after - before) as f64 / ticks_per_sec;
    Row {
        mode: mode.to_owned(),
        rps: done as f64 / secs as f64,
        cpu_us_per_req: cpu_secs * 1e6 / done as f64,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => return serve(&args[2], args[3].parse().unwrap()),
        Some("load") => {
            return load(
                args[2].parse().unwrap(),
                args[3].parse().unwrap(),
                args[4].parse().unwrap(),
            )
        }
        _ => {}
    }
    let exe = std::env::current_exe().unwrap();
    let exe = exe.to_str().unwrap();
    let secs = std::env::var("LAYER_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let pairs = [("axum-plain", "axum-hookguard"), ("actix-plain", "actix-hookguard")];
    println!("| server | requests/s (plain) | requests/s (hookguard) | ratio | server CPU µs/req plain | hookguard | added µs/req |");
    println!("|---|---|---|---|---|---|---|");
    for (plain, guarded) in pairs {
        let p = measure(exe, plain, secs);
        let g = measure(exe, guarded, secs);
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.1} | {:.1} | {:.1} |",
            p.mode.split('-').next().unwrap(),
            p.rps,
            g.rps,
            g.rps / p.rps,
            p.cpu_us_per_req,
            g.cpu_us_per_req,
            g.cpu_us_per_req - p.cpu_us_per_req
        );
        let _ = &g.mode;
    }
}
