//! The demo's inbox act: the delivery is on disk before the 2xx, handlers run afterwards and
//! are retried on our schedule, and a receiver killed -9 loses nothing.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use axum::routing::any;
use axum::Router;
use hookguard_core::http::{HeaderName, HeaderValue};
use hookguard_core::inbox::{ClaimedItem, HandlerError, Outcome as Work, RetryPolicy, Worker, WorkerHandle};
use hookguard_core::Provider;
use hookguard_sqlite::SqliteInbox;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{bwp_headers, procore_body, procore_headers, short, Demo, BWP_SECRET, HCSS_TOKEN, OWN_APP, PROCORE_TOKEN};
use crate::common::{display_name, failed, now_unix, outln, CliResult, ProviderArg};
use crate::serve::{inbox_line, layer, Keeper, ReceiverSpec};
use crate::vendor::{rand_hex, sample_body, ulid, Next, Outcome, Vendor};

/// How long the slow Procore handler takes: more than Procore's 5 s timeout.
const SLOW: Duration = Duration::from_secs(6);
/// The lease of the receiver that is killed -9: its item runs again once it expires.
const KILL9_LEASE: &str = "2";
const KILL9_EXEC: &str = "cat >/dev/null; sleep 0.5";

/// One attempt the in-process worker finished.
struct Attempt {
    provider: Provider,
    attempt: u32,
    outcome: Work,
    at: Instant,
    line: String,
}

/// The in-process inbox (a SQLite file in a temporary directory) and its worker.
pub(super) struct Lab {
    dir: PathBuf,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    worker: Option<WorkerHandle>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                crate::common::write_stderr(format_args!(
                    "hookguard demo: cannot remove {}: {e}\n",
                    self.dir.display()
                ));
            }
        }
    }
}

async fn never_called() -> axum::response::Response {
    http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

impl Lab {
    /// Opens the inbox, starts its worker and returns the two inbox routes.
    pub(super) fn start() -> CliResult<(Lab, Router)> {
        let dir = std::env::temp_dir().join(format!("hookguard-demo-{}-{}", std::process::id(), rand_hex(4)));
        // Not `create_dir_all`: a TMPDIR that does not exist is an error, not made and left.
        std::fs::create_dir(&dir).map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
        let mut lab = Lab {
            dir,
            attempts: Arc::default(),
            worker: None,
        };
        let inbox = SqliteInbox::open(lab.dir.join("inbox.db"))
            .map_err(|e| failed(format!("cannot open the demo inbox: {e}")))?;
        let mk = |provider, secret: &str, ignore: &[String]| {
            layer(
                &ReceiverSpec {
                    provider,
                    secrets: &[secret.to_owned()],
                    auth_headers: &[],
                    tolerance: None,
                    max_body: 1 << 20,
                    ignore_apps: ignore,
                    retry_mismatch: false,
                    ignore_users: &[],
                    sender_timeout: None,
                    lease: hookguard_core::dedupe::DEFAULT_LEASE,
                },
                Keeper::Inbox(Arc::new(inbox.clone())),
            )
            .map(|(l, _)| l)
        };
        let router = Router::new()
            .route(
                "/webhooks/procore-inbox",
                any(never_called).layer(mk(ProviderArg::Procore, PROCORE_TOKEN, &[OWN_APP.into()])?),
            )
            .route(
                "/webhooks/buildworkpro-inbox",
                any(never_called).layer(mk(ProviderArg::BuildWorkPro, BWP_SECRET, &[])?),
            );
        let log = Arc::clone(&lab.attempts);
        let worker = Worker::builder(Arc::new(inbox), |item: ClaimedItem| async move {
            if item.delivery.provider() == Provider::Procore {
                tokio::time::sleep(SLOW).await;
                return Ok(());
            }
            if item.attempt <= 2 {
                return Err(HandlerError::new(format!(
                    "downstream API answered 503 (demo failure {} of 2)",
                    item.attempt
                )));
            }
            Ok(())
        })
        .retry(RetryPolicy::new(Duration::from_millis(200), Duration::from_secs(1), 5))
        // An interrupted demo does not wait out the 6 s handler: stopped after half a second
        // (its claim given back), the worker is gone before the files are removed.
        .shutdown_grace(Duration::from_millis(500))
        .on_outcome(move |item, outcome| {
            if let Ok(mut log) = log.lock() {
                log.push(Attempt {
                    provider: item.delivery.provider(),
                    attempt: item.attempt,
                    outcome: outcome.clone(),
                    at: Instant::now(),
                    line: inbox_line(item),
                });
            }
        })
        .spawn();
        lab.worker = Some(worker);
        Ok((lab, router))
    }

    /// Stops the worker: running handlers get half a second (the worker's shutdown grace),
    /// then their claims are given back; bounded all the same.
    pub(super) async fn stop(mut self) {
        if let Some(w) = self.worker.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), w.shutdown()).await;
        }
    }

    fn of(&self, provider: Provider) -> Vec<(u32, Work, Instant, String)> {
        self.attempts
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|a| a.provider == provider)
                    .map(|a| (a.attempt, a.outcome.clone(), a.at, a.line.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits (at most `limit`) until `provider`'s item is done or dead.
    async fn settled(&self, provider: Provider, limit: Duration) -> Vec<(u32, Work, Instant, String)> {
        let deadline = Instant::now() + limit;
        loop {
            let seen = self.of(provider);
            let finished = seen
                .iter()
                .any(|(_, o, ..)| matches!(o, Work::Done | Work::Dead { .. }));
            if finished || Instant::now() >= deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A `hookguard serve` child process (this very binary), killed on drop.
struct Receiver {
    child: tokio::process::Child,
    pid: u32,
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    stdout_done: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(args: &[String]) -> CliResult<Receiver> {
        let exe = std::env::current_exe().map_err(|e| failed(format!("cannot find this program: {e}")))?;
        let mut child = tokio::process::Command::new(exe)
            .args(args)
            .env("HOOKGUARD_SECRET", PROCORE_TOKEN)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed(format!("cannot start a receiver: {e}")))?;
        let pid = child.id().unwrap_or(0);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().ok_or_else(|| failed("no stdout pipe"))?;
        let err = child.stderr.take().ok_or_else(|| failed("no stderr pipe"))?;
        let sink = Arc::clone(&lines);
        let stdout_done = tokio::spawn(async move {
            let mut out = BufReader::new(out).lines();
            while let Ok(Some(l)) = out.next_line().await {
                if let Ok(mut s) = sink.lock() {
                    s.push(l);
                }
            }
        });
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut port_tx = Some(port_tx);
            let mut err = BufReader::new(err).lines();
            while let Ok(Some(l)) = err.next_line().await {
                let port = l
                    .split("listening on http://127.0.0.1:")
                    .nth(1)
                    .and_then(|r| r.split('/').next())
                    .and_then(|p| p.parse::<u16>().ok());
                if let (Some(p), Some(tx)) = (port, port_tx.take()) {
                    let _ = tx.send(p);
                }
            }
        });
        let port = match tokio::time::timeout(Duration::from_secs(15), port_rx).await {
            Ok(Ok(p)) => p,
            _ => return Err(failed("the demo's receiver process did not start")),
        };
        Ok(Receiver {
            child,
            pid,
            port,
            lines,
            stdout_done,
        })
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    async fn wait_line(&self, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(l) = self.lines().first() {
                return Some(l.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL; returns every line it printed.
    async fn kill9(mut self) -> Vec<String> {
        let _ = self.child.kill().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.stdout_done).await;
        self.lines()
    }

    /// SIGTERM; returns whether it exited 0 within 10 s.
    async fn terminate(mut self) -> bool {
        let sent = tokio::process::Command::new("kill")
            .args(["-s", "TERM", &self.pid.to_string()])
            .status()
            .await
            .is_ok_and(|s| s.success());
        sent && matches!(
            tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await,
            Ok(Ok(st)) if st.success()
        )
    }
}

impl Demo {
    /// POSTs `body` to `url`; returns the status, the answer and how long it took (waiting
    /// longer than any sender here: [`in_time`] says whether the sender would have waited).
    async fn post(&self, url: &str, headers: &[(HeaderName, HeaderValue)], body: &[u8]) -> (u16, String, Duration) {
        let started = Instant::now();
        let mut rb = self
            .client
            .post(url)
            .body(body.to_vec())
            .timeout(Duration::from_secs(10));
        for (n, v) in headers {
            rb = rb.header(n.clone(), v.clone());
        }
        match rb.send().await {
            Ok(resp) => {
                let s = resp.status().as_u16();
                let took = started.elapsed();
                let b = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
                (s, String::from_utf8_lossy(&b).into_owned(), took)
            }
            Err(e) => (0, format!("request failed: {}", e.without_url()), started.elapsed()),
        }
    }

    /// Prints one step in the demo's format and records its mismatches.
    fn report(&mut self, title: &str, lines: &[(&str, String)], problems: Vec<String>) -> CliResult<()> {
        self.step += 1;
        let ok = problems.is_empty();
        outln!("  [{}] {}. {title}", if ok { "ok" } else { "FAIL" }, self.step)?;
        for (label, text) in lines {
            outln!("       {label:<10}{text}")?;
        }
        if !ok {
            let p = problems.join("; ");
            outln!("       MISMATCH  {p}")?;
            self.failures.push(format!("step {} ({title}): {p}", self.step));
        }
        Ok(())
    }
}

fn sent(path: &str, headers: &[(HeaderName, HeaderValue)]) -> String {
    let mut s = format!("POST {}", path.replace(HCSS_TOKEN, "***"));
    for (n, v) in headers {
        if n == reqwest::header::CONTENT_TYPE || n == "user-agent" || n == "buildworkpro-event" {
            continue;
        }
        s.push_str(&format!(
            "  {}: {}",
            display_name(n),
            short(v.to_str().unwrap_or("?"), 34)
        ));
    }
    s
}

fn answered(status: u16, text: &str) -> String {
    let reason = hookguard_core::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!("{status} {reason}  {}", short(text, 60))
}

fn vendor(p: ProviderArg, status: u16) -> (bool, String) {
    match Vendor(p).judge(&Outcome::Status(status), 1, Duration::ZERO) {
        Next::Delivered => (true, format!("{}: delivered (2xx) — done, no retry", p.display())),
        Next::Retry { note, .. } => (false, note),
        Next::GiveUp { verdict } => (false, verdict),
    }
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Plays the inbox act against the lab's routes and a receiver process of its own.
pub(super) async fn act(demo: &mut Demo, lab: &Lab) -> CliResult<()> {
    outln!(
        "\nInbox — the delivery is on disk (SQLite, WAL, synchronous=FULL) before the 2xx; \
         handlers run afterwards, retried on our schedule"
    )?;
    let now = now_unix();

    // 1. A handler slower than the sender's timeout.
    let slow_body = procore_body(&ulid(now * 1000 + 2), None);
    let slow_headers = procore_headers(PROCORE_TOKEN);
    let url = format!("{}/webhooks/procore-inbox", demo.base);
    let (status, text, took) = demo.post(&url, &slow_headers, &slow_body).await;
    let answered_at = Instant::now();
    let (delivered, next) = vendor(ProviderArg::Procore, status);
    let mut problems = Vec::new();
    if status != 200 || !text.contains("\"accepted\"") {
        problems.push(format!("answered {status} {text}, expected 200 accepted"));
    }
    in_time(ProviderArg::Procore, took, &mut problems);
    if !delivered {
        problems.push("Procore would not count it as delivered".into());
    }
    demo.report(
        "inbox: a handler that takes 6 s, behind Procore's 5 s timeout",
        &[
            ("sent", sent("/webhooks/procore-inbox", &slow_headers)),
            ("", format!("body {}", short(&String::from_utf8_lossy(&slow_body), 96))),
            (
                "answered",
                format!(
                    "{} in {} (Procore waits 5 s): stored before answering",
                    answered(status, &text),
                    ms(took)
                ),
            ),
            (
                "handler",
                "runs in the background for 6 s (inline, Procore would time out, pause the endpoint and retry)".into(),
            ),
            ("vendor", next),
        ],
        problems,
    )?;

    // 2. A handler failing twice, then succeeding: retried by us, unseen by the sender.
    let body = sample_body(ProviderArg::BuildWorkPro, Some("bid.accepted"), now);
    let id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let headers = bwp_headers(BWP_SECRET, &body, now_unix(), &id);
    let url = format!("{}/webhooks/buildworkpro-inbox", demo.base);
    let (status, text, took) = demo.post(&url, &headers, &body).await;
    let runs = lab.settled(Provider::BuildWorkPro, Duration::from_secs(10)).await;
    let (delivered, next) = vendor(ProviderArg::BuildWorkPro, status);
    let mut problems = Vec::new();
    if status != 200 || !text.contains("\"accepted\"") {
        problems.push(format!("answered {status} {text}, expected 200 accepted"));
    }
    if !delivered {
        problems.push("BuildWorkPro would not count it as delivered".into());
    }
    in_time(ProviderArg::BuildWorkPro, took, &mut problems);
    let shape: Vec<(u32, &str)> = runs
        .iter()
        .map(|(a, o, ..)| {
            (
                *a,
                match o {
                    Work::Done => "done",
                    Work::Retry { .. } => "retry",
                    Work::Dead { .. } => "dead",
                    _ => "lost",
                },
            )
        })
        .collect();
    if shape != [(1, "retry"), (2, "retry"), (3, "done")] {
        problems.push(format!("attempts {shape:?}, expected two retries then done"));
    }
    let mut lines = vec![
        ("sent", sent("/webhooks/buildworkpro-inbox", &headers)),
        ("answered", format!("{} in {}", answered(status, &text), ms(took))),
    ];
    for (attempt, outcome, _, line) in &runs {
        lines.push((
            "handler",
            match outcome {
                Work::Retry { error, after } => {
                    format!("attempt {attempt} failed: {error} → retry in {}", ms(*after))
                }
                Work::Done => format!("attempt {attempt} done → printed {line}"),
                Work::Dead { error } => format!("attempt {attempt} failed: {error} → dead"),
                _ => format!("attempt {attempt}: its lease was lost"),
            },
        ));
    }
    lines.push((
        "vendor",
        format!("{next} (the retries were ours: the sender saw one 200)"),
    ));
    demo.report("inbox: a handler failing twice, then succeeding", &lines, problems)?;

    // 3. A receiver process killed -9 right after answering, restarted on the same file.
    kill9(demo, lab, now).await?;

    // 4. The slow handler finishes; the sender's copy is a duplicate.
    let runs = lab.settled(Provider::Procore, SLOW + Duration::from_secs(10)).await;
    let (status, text, took) = demo
        .post(
            &format!("{}/webhooks/procore-inbox", demo.base),
            &slow_headers,
            &slow_body,
        )
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after = lab.of(Provider::Procore).len();
    let mut problems = Vec::new();
    in_time(ProviderArg::Procore, took, &mut problems);
    let done = match runs.as_slice() {
        [(1, Work::Done, at, line)] => {
            format!(
                "ran once, done {} after the 200: {line}",
                secs(at.saturating_duration_since(answered_at))
            )
        }
        other => {
            problems.push(format!("{} attempt(s) recorded, expected one done", other.len()));
            "did not finish once".into()
        }
    };
    if status != 200 || !text.contains("\"duplicate\"") {
        problems.push(format!("copy answered {status} {text}, expected 200 duplicate"));
    }
    if after != runs.len() {
        problems.push("the copy ran the handler again".into());
    }
    demo.report(
        "inbox: the 6 s handler finished; then Procore re-sends the same delivery",
        &[
            ("handler", done),
            (
                "sent",
                format!("{}  (the same ULID)", sent("/webhooks/procore-inbox", &slow_headers)),
            ),
            ("answered", answered(status, &text)),
            ("handler", "not called again: the inbox row is the dedupe record".into()),
            ("vendor", vendor(ProviderArg::Procore, status).1),
        ],
        problems,
    )?;
    Ok(())
}

async fn kill9(demo: &mut Demo, lab: &Lab, now: u64) -> CliResult<()> {
    let file = lab.dir.join("kill9.db");
    let args: Vec<String> = [
        "serve",
        "--provider",
        "procore",
        "--listen",
        "127.0.0.1:0",
        "--inbox",
        &file.display().to_string(),
        "--lease",
        KILL9_LEASE,
        "--exec",
        KILL9_EXEC,
    ]
    .map(String::from)
    .to_vec();
    let title = "inbox: a receiver killed -9 right after answering, restarted on the same file";
    // The command as run (the token, not shown, travels in the environment).
    let command = format!(
        "HOOKGUARD_SECRET='Bearer …' hookguard serve --provider procore --listen 127.0.0.1:0 --inbox {} \
         --lease {KILL9_LEASE} --exec '{KILL9_EXEC}'",
        file.display()
    );
    let first = match Receiver::start(&args).await {
        Ok(r) => r,
        Err(e) => {
            let why = match e {
                crate::common::CliError::Failed(m) | crate::common::CliError::Usage(m) => m,
                crate::common::CliError::StdoutClosed => "stdout closed".into(),
            };
            return demo.report(title, &[("receiver", command)], vec![why]);
        }
    };
    let body = procore_body(&ulid(now * 1000 + 3), None);
    let headers = procore_headers(PROCORE_TOKEN);
    let url = |port: u16| format!("http://127.0.0.1:{port}/webhooks");
    let first_pid = first.pid;
    let (status, text, took) = demo.post(&url(first.port), &headers, &body).await;
    let answered_at = Instant::now();
    let printed_first = first.kill9().await;
    let killed_after = answered_at.elapsed();

    let mut problems = Vec::new();
    if status != 200 || !text.contains("\"accepted\"") {
        problems.push(format!("answered {status} {text}, expected 200 accepted"));
    }
    in_time(ProviderArg::Procore, took, &mut problems);
    let mut lines = vec![
        ("receiver", format!("{command} (pid {first_pid})")),
        ("sent", sent("/webhooks", &headers)),
        ("answered", format!("{} in {}", answered(status, &text), ms(took))),
        (
            "killed",
            format!(
                "kill -9 {} after the answer; it had printed {} line(s)",
                ms(killed_after),
                printed_first.len()
            ),
        ),
    ];
    let second = match Receiver::start(&args).await {
        Ok(r) => r,
        Err(_) => {
            problems.push("the receiver did not restart".into());
            return demo.report(title, &lines, problems);
        }
    };
    let line = if printed_first.is_empty() {
        second.wait_line(Duration::from_secs(15)).await
    } else {
        tokio::time::sleep(Duration::from_secs(3)).await;
        None
    };
    let attempts = line
        .as_deref()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["attempts"].as_u64());
    lines.push((
        "restarted",
        match attempts {
            Some(n) if n > 1 => format!(
                "on the same file (pid {}): the dead receiver's claim expired after its lease ({KILL9_LEASE} s); \
                 attempt {n} ran",
                second.pid
            ),
            Some(_) => format!(
                "on the same file (pid {}): the item was still pending; it ran",
                second.pid
            ),
            None => format!("on the same file (pid {})", second.pid),
        },
    ));
    let (copy_status, copy_text, copy_took) = demo.post(&url(second.port), &headers, &body).await;
    in_time(ProviderArg::Procore, copy_took, &mut problems);
    let printed_second = second.lines();
    let stopped = second.terminate().await;
    let total = printed_first.len() + printed_second.len();
    match printed_first.iter().chain(&printed_second).next() {
        Some(l) if total == 1 => lines.push(("handler", format!("done once, printed once: {l}"))),
        _ => {
            problems.push(format!("{total} line(s) printed across both runs, expected exactly 1"));
            lines.push(("handler", format!("{total} line(s) printed")));
        }
    }
    if copy_status != 200 || !copy_text.contains("\"duplicate\"") {
        problems.push(format!(
            "copy answered {copy_status} {copy_text}, expected 200 duplicate"
        ));
    }
    lines.push((
        "copy",
        format!(
            "the same delivery again → {}: the inbox row survived kill -9",
            answered(copy_status, &copy_text)
        ),
    ));
    if !stopped {
        problems.push("the restarted receiver did not exit 0 on SIGTERM".into());
    }
    lines.push((
        "stopped",
        if stopped {
            "SIGTERM → exit 0".to_owned()
        } else {
            "SIGTERM → no clean exit".to_owned()
        },
    ));
    lines.push(("vendor", vendor(ProviderArg::Procore, status).1));
    demo.report(title, &lines, problems)
}

/// Records a problem when an answer came later than `p`'s sender waits: it would have counted
/// the delivery as failed whatever the answer said.
fn in_time(p: ProviderArg, took: Duration, problems: &mut Vec<String>) {
    let waits = Vendor(p).timeout();
    if took >= waits {
        problems.push(format!(
            "answered after {}, beyond {}'s {} timeout",
            ms(took),
            p.display(),
            crate::vendor::human(waits)
        ));
    }
}
