//! `hookguard serve` under load, side by side in one run: a bare axum server that only reads
//! the 4 KiB body, `serve` with the in-memory dedupe store (inline handling: the JSON line),
//! and `serve --inbox` (durable accepts, group commit; the worker prints the line afterwards).
//! BuildWorkPro deliveries, every one a new event, 32 keep-alive connections; the server is
//! pinned to CPU 0 and the load generator to CPU 1 (`taskset`); the server's stdout is read
//! and discarded by a reader thread, as a real pipeline would.
//!
//! `cargo bench -p hookguard-cli --bench serve` prints a Markdown table: requests/s, server CPU
//! µs per request, and accept latency p50/p99 at half the inbox's rate. With `-- soak` it runs
//! only the soak instead (see [`soak`]: 1,000,000 deliveries, 10 % copies, RSS and latency).
//! Internally it runs itself as `bare PORT` and `load PORT SECONDS RUN [RATE|-] [DUP_EVERY]`.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// The load generator the layer bench uses too.
#[path = "../../../benches/support/load.rs"]
mod load;
use load::{cpu_ticks, env_or, free_port, Load, SECRET};
// The floor: a bare HMAC check of the body in a minimal tower middleware.
#[path = "../../../benches/support/floor.rs"]
mod floor;
// The floor of a durable accept: raw SQLite on this disk.
#[path = "../../../benches/support/disk_floor.rs"]
mod disk_floor;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn bare(port: u16) {
    let rt = load::one_worker();
    rt.block_on(async move {
        use axum::{http::StatusCode, routing::post, Router};
        let app = Router::new().route(
            "/webhooks",
            post(|_body: axum::body::Bytes| async { StatusCode::NO_CONTENT }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        eprintln!("listening on http://127.0.0.1:{port}/webhooks");
        axum::serve(listener, app).await.unwrap();
    });
}

/// The floor of `serve` (`floor PORT`): the bare server behind the floor middleware (the body's
/// MAC checked, nothing else), and a JSON line per delivery (the signature it checked, about
/// the length of `serve`'s line) written to stdout by a thread that batches lines as `serve`'s
/// does. What `serve` costs beyond this is the JSON validation, the event id, the dedupe
/// table and its own plumbing.
fn floor_server(port: u16) {
    use std::io::Write as _;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(64 * 1024);
    std::thread::spawn(move || {
        let stdout = std::io::stdout();
        let mut batch = String::new();
        while let Some(first) = rx.blocking_recv() {
            batch.clear();
            let mut next = Some(first);
            let mut n = 0;
            while let Some(line) = next.take() {
                batch.push_str(&line);
                batch.push('\n');
                n += 1;
                if n < 1024 {
                    next = rx.try_recv().ok();
                }
            }
            let mut out = stdout.lock();
            if out.write_all(batch.as_bytes()).and_then(|()| out.flush()).is_err() {
                return;
            }
            drop(out);
            if n < 64 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    let rt = load::one_worker();
    rt.block_on(async move {
        use axum::{extract::State, http::HeaderMap, http::StatusCode, routing::post, Router};
        let handler = |State(tx): State<tokio::sync::mpsc::Sender<String>>,
                       headers: HeaderMap,
                       _body: axum::body::Bytes| async move {
            let sig = headers.get(floor::HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            match tx.try_send(format!(r#"{{"provider":"buildworkpro","signature":"{sig}"}}"#)) {
                Ok(()) => StatusCode::NO_CONTENT,
                Err(_) => StatusCode::SERVICE_UNAVAILABLE,
            }
        };
        let app = Router::new()
            .route("/webhooks", post(handler).layer(tower_layer::layer_fn(floor::Axum)))
            .with_state(tx);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        eprintln!("listening on http://127.0.0.1:{port}/webhooks");
        axum::serve(listener, app).await.unwrap();
    });
}

struct Server {
    child: Child,
    port: u16,
    /// JSON lines the server printed (one per handled delivery).
    lines: Arc<AtomicU64>,
    _dir: Option<std::path::PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(d) = &self._dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn start(exe: &str, mode: &str) -> Server {
    start_with(exe, mode, &[])
}

fn start_with(exe: &str, mode: &str, extra: &[&str]) -> Server {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut dir = None;
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0"]);
    match mode {
        "bare" | "floor" => {
            cmd.args([exe, mode, &port.to_string()]);
        }
        _ => {
            // `SERVE_BENCH_BIN` runs another build of `hookguard` (A/B experiments).
            let bin = std::env::var("SERVE_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_hookguard").to_owned());
            cmd.args([
                &bin,
                "serve",
                "--provider",
                "buildworkpro",
                "--secret",
                SECRET,
                "--listen",
                &listen,
            ]);
            if mode == "inbox" {
                let d = std::env::temp_dir().join(format!("hg-serve-bench-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&d);
                std::fs::create_dir_all(&d).unwrap();
                cmd.args([
                    "--inbox",
                    d.join("inbox.db").to_str().unwrap(),
                    "--max-pending",
                    "10000000",
                ]);
                dir = Some(d);
            }
        }
    }
    cmd.args(extra);
    // `SERVE_BENCH_ARGS="--workers 4"`: more `serve` flags (A/B experiments).
    if !matches!(mode, "bare" | "floor") {
        if let Ok(more) = std::env::var("SERVE_BENCH_ARGS") {
            cmd.args(more.split_whitespace());
        }
    }
    cmd.env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("taskset");
    // Consume stdout (the JSON lines) as a pipeline would.
    let mut out = child.stdout.take().unwrap();
    let lines = Arc::new(AtomicU64::new(0));
    let counted = lines.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64 * 1024];
        while let Ok(n @ 1..) = out.read(&mut buf) {
            let k = buf[..n].iter().filter(|&&b| b == b'\n').count();
            counted.fetch_add(k as u64, Ordering::Relaxed);
        }
    });
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "{mode}: server exited");
        if line.contains("listening on") {
            break;
        }
    }
    std::thread::spawn(move || {
        let mut sink = String::new();
        while matches!(err.read_line(&mut sink), Ok(n) if n > 0) {
            sink.clear();
        }
    });
    Server {
        child,
        port,
        lines,
        _dir: dir,
    }
}

struct Row {
    rps: f64,
    cpu_us: f64,
    /// Deliveries handled per second during the run (lines printed): for the inbox, whether
    /// its worker keeps up with the accepts or a backlog grows.
    handled: f64,
}

fn run_load(exe: &str, port: u16, secs: u64, run: u64, rate: Option<f64>) -> (u64, u64, u64, u64) {
    run_load_with(exe, port, secs, run, rate, None)
}

fn run_load_with(
    exe: &str,
    port: u16,
    secs: u64,
    run: u64,
    rate: Option<f64>,
    dup_every: Option<u64>,
) -> (u64, u64, u64, u64) {
    let mut args = vec![
        "-c".to_owned(),
        "1".into(),
        exe.to_owned(),
        "load".into(),
        port.to_string(),
        secs.to_string(),
        run.to_string(),
    ];
    args.push(rate.map_or_else(|| "-".to_owned(), |r| format!("{r}")));
    if let Some(k) = dup_every {
        args.push(k.to_string());
    }
    let v: Vec<u64> = numbers(Command::new("taskset").args(&args), 4, "load");
    (v[0], v[1], v[2], v[3])
}

/// Runs a helper process of this bench and reads the `n` numbers it prints.
fn numbers<T: std::str::FromStr>(cmd: &mut Command, n: usize, what: &str) -> Vec<T>
where
    T::Err: std::fmt::Debug,
{
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<T> = text.split_whitespace().map(|x| x.parse().unwrap()).collect();
    assert_eq!(
        v.len(),
        n,
        "{what} output: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    v
}

fn measure(exe: &str, mode: &str, secs: u64) -> Row {
    let s = start(exe, mode);
    run_load(exe, s.port, 2, 1, None); // warm up
    let (before, lines) = (cpu_ticks(s.child.id()), s.lines.load(Ordering::Relaxed));
    let (done, bad, _, _) = run_load(exe, s.port, secs, 2, None);
    let after = cpu_ticks(s.child.id());
    let printed = s.lines.load(Ordering::Relaxed) - lines;
    assert_eq!(bad, 0, "{mode}: {bad} requests were not answered 2xx");
    Row {
        rps: done as f64 / secs as f64,
        cpu_us: (after - before) as f64 / 100.0 * 1e6 / done as f64,
        // The bare server prints nothing: it has no line to count.
        handled: if mode == "bare" {
            f64::NAN
        } else {
            printed as f64 / secs as f64
        },
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("bare") => return bare(args[2].parse().unwrap()),
        Some("floor") => return floor_server(args[2].parse().unwrap()),
        Some("disk-floor") => {
            // `disk-floor DIR SECS [BATCH]`: rows per commit (32 by default, as 32 connections).
            let batch = args.get(4).map_or(32, |b| b.parse().unwrap());
            let f = disk_floor::run(Path::new(&args[2]), args[3].parse().unwrap(), batch, 32);
            return println!("{} {}", f.rows_per_s, f.cpu_us_per_row);
        }
        Some("load") => {
            let out = Load {
                port: args[2].parse().unwrap(),
                secs: args[3].parse().unwrap(),
                run: args[4].parse().unwrap(),
                ts: now(),
                rate: args.get(5).filter(|r| *r != "-").map(|r| r.parse().unwrap()),
                dup_every: args.get(6).map(|k| k.parse().unwrap()),
            }
            .run();
            return println!("{} {} {} {}", out.done, out.bad, out.p50_us, out.p99_us);
        }
        _ => {}
    }
    let exe = std::env::current_exe().unwrap();
    let exe = exe.to_str().unwrap();
    if args.iter().any(|a| a == "soak") {
        return soak(exe);
    }
    let secs = env_or("SERVE_BENCH_SECS", 10);
    // `SERVE_BENCH_RAW="inbox memory"`: one round of each mode named, raw figures, no table.
    if let Ok(raw) = std::env::var("SERVE_BENCH_RAW") {
        for m in raw.split_whitespace() {
            let r = if m == "disk" {
                disk(exe, secs)
            } else {
                measure(exe, m, secs)
            };
            let handled = if r.handled.is_nan() {
                String::new()
            } else {
                format!(" {:.0} handled/s", r.handled)
            };
            println!("{m} {:.0} req/s {:.1} us/req{handled}", r.rps, r.cpu_us);
        }
        return;
    }
    // Alternate the modes over three rounds and keep the median of each.
    let modes = ["bare", "memory", "inbox", "floor"];
    let mut rows: Vec<Vec<Row>> = modes.iter().map(|_| Vec::new()).collect();
    let mut disks = Vec::new();
    for _ in 0..3 {
        for (i, m) in modes.iter().enumerate() {
            rows[i].push(measure(exe, m, secs));
        }
        disks.push(disk(exe, secs));
    }
    // The ceiling of any SQLite inbox behind `serve`: the in-memory `serve`'s CPU per request
    // plus the disk floor's CPU per delivery, both on the one server core (per round).
    rows.push(
        rows[1]
            .iter()
            .zip(&disks)
            .map(|(m, d)| {
                let cpu_us = m.cpu_us + d.cpu_us;
                Row {
                    rps: 1e6 / cpu_us,
                    cpu_us,
                    handled: f64::NAN,
                }
            })
            .collect(),
    );
    // The ratios are taken within each round (the modes ran back to back), then the median
    // of the three: pairing medians sorted separately can match a disturbed round of one mode
    // with a quiet round of another.
    let mid = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let med: Vec<Row> = rows
        .iter()
        .map(|r| Row {
            rps: mid(r.iter().map(|x| x.rps).collect()),
            cpu_us: mid(r.iter().map(|x| x.cpu_us).collect()),
            handled: mid(r.iter().map(|x| x.handled).collect()),
        })
        .collect();
    let vs_bare: Vec<f64> = rows
        .iter()
        .map(|r| mid(r.iter().zip(&rows[0]).map(|(x, b)| x.cpu_us / b.cpu_us).collect()))
        .collect();
    let vs_memory: Vec<f64> = rows
        .iter()
        .map(|r| mid(r.iter().zip(&rows[1]).map(|(x, m)| x.rps / m.rps).collect()))
        .collect();
    // Accept latency at half the inbox's rate.
    let s = start(exe, "inbox");
    let rate = med[2].rps / 2.0;
    let (_, bad, p50, p99) = run_load(exe, s.port, secs, 3, Some(rate));
    assert_eq!(bad, 0);
    drop(s);
    println!("| server | requests/s | handled/s | server CPU µs/req | vs bare (CPU) | vs memory (requests/s) |");
    println!("|---|---|---|---|---|---|");
    let names = [
        "bare axum, reads the body",
        "hookguard serve (memory dedupe, inline)",
        "hookguard serve --inbox (durable, SQLite)",
        "floor: bare + the body's MAC checked + a line to stdout (no JSON, no dedupe)",
        "ceiling of any SQLite inbox: serve (memory)'s CPU + the disk floor's (below)",
    ];
    for (i, r) in med.iter().enumerate() {
        let handled = if r.handled.is_nan() {
            "—".to_owned()
        } else {
            format!("{:.0}", r.handled)
        };
        println!(
            "| {} | {:.0} | {handled} | {:.1} | {:.2}× | {:.2}× |",
            names[i], r.rps, r.cpu_us, vs_bare[i], vs_memory[i]
        );
    }
    let disk_rps = mid(disks.iter().map(|d| d.rps).collect());
    let disk_us = mid(disks.iter().map(|d| d.cpu_us).collect());
    println!();
    println!(
        "Disk floor (raw SQLite on the server's core, WAL, `synchronous=FULL`: per commit 32 new 4 KiB rows under a unique key and the previous 32 marked done): {disk_rps:.0} deliveries/s, {disk_us:.1} µs of CPU per delivery."
    );
    println!();
    println!(
        "Accept latency through `serve --inbox` at {rate:.0} requests/s (half its rate): p50 {:.2} ms, p99 {:.2} ms.",
        p50 as f64 / 1000.0,
        p99 as f64 / 1000.0
    );
}

/// One run of the disk floor ([`disk_floor`]) in a process of its own pinned to the server's
/// core, in a scratch directory beside the inbox's: deliveries/s and CPU µs per delivery.
fn disk(exe: &str, secs: u64) -> Row {
    let d = std::env::temp_dir().join(format!("hg-serve-bench-disk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let v: Vec<f64> = numbers(
        Command::new("taskset").args(["-c", "0", exe, "disk-floor", d.to_str().unwrap(), &secs.to_string()]),
        2,
        "disk floor",
    );
    let _ = std::fs::remove_dir_all(&d);
    Row {
        rps: v[0],
        cpu_us: v[1],
        handled: f64::NAN,
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// `cargo bench -p hookguard-cli --bench serve -- soak`: 1,000,000 deliveries through `serve`
/// (in-memory dedupe bounded at `SOAK_KEYS` keys, default 200,000) at a fixed rate, every 10th
/// a copy of the previous one; the server's RSS sampled once a second, latency p50/p99 over
/// the whole run. Prints a Markdown table.
fn soak(exe: &str) {
    let total: u64 = env_or("SOAK_DELIVERIES", 1_000_000);
    let rate: f64 = env_or("SOAK_RATE", 25_000.0);
    let keys: u64 = env_or("SOAK_KEYS", 200_000);
    let store = format!("memory:{keys}");
    let s = start_with(exe, "memory", &["--store", &store]);
    let pid = s.child.id();
    let secs = (total as f64 / rate).ceil() as u64;
    let rss0 = rss_kib(pid);
    let samples = Arc::new(Mutex::new(Vec::<(f64, u64)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (samples, stop) = (samples.clone(), stop.clone());
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                samples.lock().unwrap().push((t0.elapsed().as_secs_f64(), rss_kib(pid)));
            }
        })
    };
    let (done, bad, p50, p99) = run_load_with(exe, s.port, secs, 4, Some(rate), Some(10));
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(bad, 0, "soak: {bad} requests were not answered 2xx");
    let samples = samples.lock().unwrap();
    // Let the last lines drain before counting them.
    std::thread::sleep(Duration::from_millis(500));
    let printed = s.lines.load(Ordering::Relaxed);
    println!(
        "{done} deliveries ({} of them copies of a handled delivery) in {secs} s at {rate:.0}/s, \
         memory dedupe bounded at {keys} keys: {printed} handled (lines printed), the copies \
         answered `duplicate`; latency p50 {:.2} ms, p99 {:.2} ms; RSS before load {:.1} MiB.",
        done / 10,
        p50 as f64 / 1000.0,
        p99 as f64 / 1000.0,
        rss0 as f64 / 1024.0
    );
    println!();
    println!("| deliveries sent (≈) | server RSS (MiB) |");
    println!("|---|---|");
    // Every sample while the store fills, then one per 100,000 deliveries.
    let fill = keys * 3 / 2;
    let mut next = 0;
    for &(t, rss) in samples.iter() {
        let sent = ((t * rate) as u64).min(total);
        if sent >= next {
            println!("| {sent} | {:.1} |", rss as f64 / 1024.0);
            next = if sent < fill {
                sent + 1
            } else {
                (sent / 100_000 + 1) * 100_000
            };
        }
        if sent == total {
            break;
        }
    }
    drop(s);
}
