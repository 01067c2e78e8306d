//! The load generator shared by the layer bench (`benches/layer_overhead.rs`) and the `serve`
//! bench (`crates/hookguard-cli/benches/serve.rs`, which includes this file by path, as the
//! tower layer's in-process bench does for the body and settings): 4 KiB
//! signed BuildWorkPro deliveries over 32 keep-alive connections, every one a new event unless
//! asked to repeat some.

// Each bench uses part of it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookguard_core::schemes::BuildWorkPro;
use hookguard_core::{Scheme, SignParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The signing secret both benches configure.
pub const SECRET: &str = "whsec_bench_secret";
/// The body size.
pub const BODY: usize = 4096;
/// Keep-alive connections.
pub const CONNECTIONS: u64 = 32;

/// A server's runtime: one tokio worker (the servers are pinned to one CPU).
pub fn one_worker() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// The 4 KiB body of event `evt_{id:016x}`.
pub fn body(id: u64) -> Vec<u8> {
    let head = format!(
        r#"{{"id":"evt_{id:016x}","type":"bid.accepted","created_at":"2026-04-25T17:42:01.812Z","tenant_id":17,"data":{{"notes":""#
    );
    let mut body = head.into_bytes();
    body.resize(BODY - 3, b'x');
    body.extend_from_slice(b"\"}}");
    body
}

/// One signed HTTP/1.1 request carrying event `evt_{id:016x}`, signed at `ts`.
pub fn request(id: u64, ts: u64) -> Vec<u8> {
    let body = body(id);
    let signed = BuildWorkPro::new().sign(SECRET, &body, &SignParams::new(ts)).unwrap();
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

/// How to load a server.
pub struct Load {
    pub port: u16,
    pub secs: u64,
    /// Keeps the event ids of different runs (warm-up, measurement) apart.
    pub run: u64,
    /// The signing time.
    pub ts: u64,
    /// Requests per second in total: paced, and every latency recorded. `None`: as fast as
    /// the server answers.
    pub rate: Option<f64>,
    /// Every k-th request of a connection repeats its previous event (a sender's retry).
    pub dup_every: Option<u64>,
}

/// What a run did: requests answered, answers that were not 2xx, latency p50 and p99 (µs,
/// 0 unless paced).
pub struct Outcome {
    pub done: u64,
    pub bad: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

impl Load {
    /// Sends until `secs` have passed, on a current-thread runtime.
    pub fn run(&self) -> Outcome {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let done = Arc::new(AtomicU64::new(0));
        let bad = Arc::new(AtomicU64::new(0));
        let lat = Arc::new(Mutex::new(Vec::<u64>::new()));
        let (port, run, ts, rate, dup_every) = (self.port, self.run, self.ts, self.rate, self.dup_every);
        rt.block_on(async {
            let start = tokio::time::Instant::now();
            let deadline = Instant::now() + Duration::from_secs(self.secs);
            let tasks: Vec<_> = (0..CONNECTIONS)
                .map(|c| {
                    let (done, bad, lat) = (done.clone(), bad.clone(), lat.clone());
                    tokio::spawn(async move {
                        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                        s.set_nodelay(true).unwrap();
                        let mut buf = vec![0u8; 64 * 1024];
                        let mut n = 0u64;
                        while Instant::now() < deadline {
                            if let Some(rate) = rate {
                                // Connection c sends its n-th request at (n * 32 + c) / rate.
                                let at = Duration::from_secs_f64((n * CONNECTIONS + c) as f64 / rate);
                                tokio::time::sleep_until(start + at).await;
                            }
                            let event = match dup_every {
                                Some(k) if n > 0 && n % k == 0 => n - 1,
                                _ => n,
                            };
                            let req = request((run << 56) | (c << 40) | event, ts);
                            n += 1;
                            let t = Instant::now();
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
                                    if !head.starts_with("http/1.1 2") {
                                        bad.fetch_add(1, Ordering::Relaxed);
                                    }
                                    break;
                                }
                            }
                            if rate.is_some() {
                                lat.lock().unwrap().push(t.elapsed().as_micros() as u64);
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
        let mut l = lat.lock().unwrap().clone();
        l.sort_unstable();
        let p = |q: f64| {
            if l.is_empty() {
                0
            } else {
                l[((l.len() as f64 * q) as usize).min(l.len() - 1)]
            }
        };
        Outcome {
            done: done.load(Ordering::Relaxed),
            bad: bad.load(Ordering::Relaxed),
            p50_us: p(0.5),
            p99_us: p(0.99),
        }
    }
}

/// A setting from the environment (`name`), or `default` when it is unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// User + system CPU ticks (1/100 s) of a process so far.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}
