//! The real `hookguard` binary: demo, serve + send for each vendor, sign | verify round trips,
//! --exec retries, and the Redis store (at `HOOKGUARD_REDIS_URL`, default redis://127.0.0.1:6379).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hookguard");

fn hookguard(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("HOOKGUARD_SECRET")
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hookguard");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().expect("wait hookguard")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

/// A private scratch directory for one test, removed on drop.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let d = std::env::temp_dir().join(format!("hookguard-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

/// What a test does with `serve`'s stdout.
#[derive(Clone, Copy, PartialEq)]
enum ServeStdout {
    /// Read every line as it comes (`Server::lines`).
    Read,
    /// A pipe nobody reads until the test takes it (`Server::unread`).
    Unread,
    /// A pipe whose reading end is closed at once.
    Closed,
}

/// A running `hookguard serve`, killed on drop.
struct Server {
    child: Child,
    port: u16,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    unread: Option<ChildStdout>,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        Server::start_with(args, ServeStdout::Read)
    }

    fn start_with(args: &[&str], mode: ServeStdout) -> Server {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("HOOKGUARD_SECRET")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hookguard serve");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stdout.take().unwrap();
        let mut unread = None;
        match mode {
            ServeStdout::Read => read_lines_into(pipe, Arc::clone(&stdout)),
            ServeStdout::Unread => unread = Some(pipe),
            ServeStdout::Closed => drop(pipe),
        }
        let err = BufReader::new(child.stderr.take().unwrap());
        let lines = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for l in err.lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            let found = stderr.lock().unwrap().iter().find_map(|l| {
                let rest = l.split("listening on http://127.0.0.1:").nth(1)?;
                rest.split('/').next()?.parse::<u16>().ok()
            });
            if let Some(p) = found {
                break p;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("serve exited with {status}: {:?}", stderr.lock().unwrap());
            }
            assert!(
                Instant::now() < deadline,
                "serve did not start: {:?}",
                stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Server {
            child,
            port,
            stdout,
            stderr,
            unread,
        }
    }

    /// Starts reading the stdout pipe nobody read so far.
    fn read_unread(&mut self) {
        let pipe = self.unread.take().expect("started with ServeStdout::Unread");
        read_lines_into(pipe, Arc::clone(&self.stdout));
    }

    /// Waits (at most `limit`) for the process to exit.
    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/webhooks", self.port)
    }

    fn lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits until stdout has `n` lines (or 5 s), then a little longer to catch extras.
    fn wait_lines(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.lines().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        self.lines()
    }

    fn json_lines(&self, n: usize) -> Vec<serde_json::Value> {
        self.wait_lines(n)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
            .collect()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_lines_into(pipe: ChildStdout, lines: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for l in BufReader::new(pipe).lines().map_while(Result::ok) {
            lines.lock().unwrap().push(l);
        }
    });
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), with 10 s socket
/// timeouts so a stalled server fails the test instead of hanging it. Returns the status and
/// the body.
fn http(port: u16, method: &str, target: &str, headers: &[(String, String)], body: &[u8]) -> (u16, Vec<u8>) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect to serve");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    c.write_all(req.as_bytes()).unwrap();
    c.write_all(body).unwrap();
    let mut answer = Vec::new();
    if let Err(e) = c.read_to_end(&mut answer) {
        panic!(
            "{method} {target}: no complete answer within 10 s ({e}); got {:?}",
            text(&answer)
        );
    }
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP answer: {:?}", text(&answer)));
    let status = text(&answer[..split])
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    (status, answer[split + 4..].to_vec())
}

/// The headers `hookguard sign` produces for `body`, as (name, value) pairs.
fn signed_headers(args: &[&str], body: &[u8]) -> Vec<(String, String)> {
    let mut all = vec!["sign"];
    all.extend_from_slice(args);
    let o = hookguard(&all, Some(body));
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    text(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

/// A 127.0.0.1 port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn send(args: &[&str]) -> Output {
    let mut all = vec!["send"];
    all.extend_from_slice(args);
    hookguard(&all, None)
}

#[test]
fn demo_plays_every_vendor_and_exits_0() {
    let o = hookguard(&["demo"], None);
    let out = text(&o.stdout);
    assert_eq!(code(&o), 0, "{out}\n{}", text(&o.stderr));
    assert!(out.contains("12/12 steps behaved as expected"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    for needle in [
        "signature_mismatch",
        "timestamp_out_of_window",
        "unauthorized",
        "\"status\":\"duplicate\"",
        "\"status\":\"ignored\"",
        "\"id\":\"5982324300946918154\"",
        "subscription created",
        "permanent failure",
        "Procore pauses this endpoint",
    ] {
        assert!(out.contains(needle), "demo output lacks {needle:?}:\n{out}");
    }
}

#[test]
fn buildworkpro_sender_delivers_to_serve() {
    let s = Server::start(&["--provider", "buildworkpro", "--secret", "whsec_cli_test"]);
    let o = send(&[
        "--provider",
        "buildworkpro",
        "--secret",
        "whsec_cli_test",
        "--url",
        &s.url(),
        "--schedule",
        "fast",
        "--event-type",
        "project.created",
    ]);
    let out = text(&o.stdout);
    assert_eq!(code(&o), 0, "{out}\n{}", s.stderr());
    assert!(out.contains("attempt 1/7") && out.contains("delivered"), "{out}");
    let lines = s.json_lines(1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["provider"], "buildworkpro");
    assert_eq!(lines[0]["type"], "project.created");
    let id = lines[0]["id"].as_str().unwrap();
    assert!(id.starts_with("evt_"), "{id}");
    assert_eq!(lines[0]["dedupe_key"], format!("buildworkpro:{id}"));
}

#[test]
fn procore_sender_delivers_and_big_ids_keep_their_digits() {
    let dir = scratch("procore");
    let body = dir.join("event.json");
    std::fs::write(
        &body,
        br#"{"api_version":"v2","company_id":6452,"event_type":"update","id":5982324300946918154,"metadata":{"source_application_id":null,"source_company_id":6452,"source_operation_id":null,"source_project_id":219542,"source_user_id":1469242},"project_id":219542,"resource_id":245510722,"resource_name":"RFIs","timestamp":"2020-07-20T15:22:01.353581Z","ulid":"01EDPD2J6SBY1163N77H95GW09","user_id":1469242}"#,
    )
    .unwrap();
    let s = Server::start(&["--provider", "procore", "--secret", "Bearer cli-procore"]);
    let args = |secret: &'static str| {
        vec![
            "--provider".to_owned(),
            "procore".into(),
            "--secret".into(),
            secret.into(),
            "--url".into(),
            s.url(),
            "--schedule".into(),
            "fast".into(),
            "--file".into(),
            body.to_string_lossy().into_owned(),
        ]
    };
    let run = |a: Vec<String>| send(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let o = run(args("Bearer cli-procore"));
    assert_eq!(code(&o), 0, "{}\n{}", text(&o.stdout), s.stderr());
    let lines = s.wait_lines(1);
    assert_eq!(
        lines,
        [
            r#"{"provider":"procore","id":"5982324300946918154","type":"RFIs.update","dedupe_key":"procore:01EDPD2J6SBY1163N77H95GW09"}"#
        ]
    );
    // The same ULID again: a duplicate, answered 200, not printed again.
    let o = run(args("Bearer cli-procore"));
    assert_eq!(code(&o), 0);
    assert!(text(&o.stdout).contains("duplicate"), "{}", text(&o.stdout));
    assert_eq!(s.wait_lines(1).len(), 1);
    // A sample body with the default sender.
    let o = send(&[
        "--provider",
        "procore",
        "--secret",
        "Bearer cli-procore",
        "--url",
        &s.url(),
        "--schedule",
        "fast",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o.stdout));
    let lines = s.json_lines(2);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["provider"], "procore");
    assert!(lines[1]["id"].as_str().unwrap().bytes().all(|b| b.is_ascii_digit()));
}

#[test]
fn procore_wrong_token_is_retried_until_discarded() {
    let s = Server::start(&["--provider", "procore", "--secret", "Bearer right"]);
    let started = Instant::now();
    let o = send(&[
        "--provider",
        "procore",
        "--secret",
        "Bearer wrong",
        "--url",
        &s.url(),
        "--schedule",
        "fast",
    ]);
    let out = text(&o.stdout);
    assert_eq!(code(&o), 1, "{out}");
    assert!(out.contains("discards the endpoint's queued deliveries"), "{out}");
    let attempts = out.lines().filter(|l| l.starts_with("attempt ")).count();
    assert!(attempts > 15 && attempts < 30, "{attempts} attempts:\n{out}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(s.wait_lines(0).is_empty());
}

#[test]
fn hcss_challenge_and_event() {
    let s = Server::start(&["--provider", "hcss", "--secret", "hcss-cli-token"]);
    let o = send(&[
        "--provider",
        "hcss",
        "--secret",
        "hcss-cli-token",
        "--url",
        &s.url(),
        "--challenge",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o.stdout));
    assert!(text(&o.stdout).contains("subscription created"));
    let o = send(&[
        "--provider",
        "hcss",
        "--secret",
        "hcss-cli-token",
        "--url",
        &s.url(),
        "--schedule",
        "fast",
        "--event-type",
        "CostCodeUpdated",
    ]);
    assert_eq!(code(&o), 0, "{}\n{}", text(&o.stdout), s.stderr());
    let lines = s.json_lines(1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["provider"], "hcss");
    assert_eq!(lines[0]["type"], "CostCodeUpdated");
    assert!(lines[0]["dedupe_key"].as_str().unwrap().starts_with("hcss:"));
    // A wrong token: 5 failed tries, then the subscription is stopped.
    let o = send(&[
        "--provider",
        "hcss",
        "--secret",
        "nope",
        "--url",
        &s.url(),
        "--schedule",
        "fast",
    ]);
    let out = text(&o.stdout);
    assert_eq!(code(&o), 1, "{out}");
    assert!(out.contains("attempt 5/5") && out.contains("Stopped"), "{out}");
    assert!(!out.contains("attempt 6"), "{out}");
}

#[test]
fn shared_header_modes_for_procore_and_hcss() {
    let s = Server::start(&["--provider", "hcss", "--auth-header", "X-Hcss-Token: shared-1"]);
    let ok = send(&[
        "--provider",
        "hcss",
        "--auth-header",
        "X-Hcss-Token: shared-1",
        "--url",
        &s.url(),
        "--schedule",
        "fast",
    ]);
    assert_eq!(code(&ok), 0, "{}", text(&ok.stdout));
    assert_eq!(s.json_lines(1).len(), 1);
    drop(s);

    let s = Server::start(&[
        "--provider",
        "procore",
        "--auth-header",
        "X-Hook-Token: new",
        "--auth-header",
        "X-Hook-Token: old",
    ]);
    for value in ["X-Hook-Token: old", "X-Hook-Token: new"] {
        let o = send(&[
            "--provider",
            "procore",
            "--auth-header",
            value,
            "--url",
            &s.url(),
            "--schedule",
            "fast",
        ]);
        assert_eq!(code(&o), 0, "{value}: {}", text(&o.stdout));
    }
    assert_eq!(s.json_lines(2).len(), 2);
}

#[test]
fn wrong_secret_is_a_permanent_failure_after_one_attempt() {
    let s = Server::start(&["--provider", "buildworkpro", "--secret", "whsec_right"]);
    let started = Instant::now();
    // The real vendor schedule: a 401 must stop at once, without waiting 30 s.
    let o = send(&[
        "--provider",
        "buildworkpro",
        "--secret",
        "whsec_wrong",
        "--url",
        &s.url(),
    ]);
    let out = text(&o.stdout);
    assert_eq!(code(&o), 1, "{out}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        out.contains("attempt 1/7") && out.contains("signature_mismatch"),
        "{out}"
    );
    assert!(out.contains("permanent failure"), "{out}");
    assert!(!out.contains("attempt 2"), "{out}");
    assert!(s.wait_lines(0).is_empty());
    assert!(s.stderr().contains("signature_mismatch"), "{}", s.stderr());
}

#[test]
fn exec_failing_once_is_retried_and_printed_once() {
    let dir = scratch("exec");
    let marker = dir.join("marker");
    let seen = dir.join("seen");
    let cmd = format!(
        "cat > '{body}'; echo \"$HOOKGUARD_PROVIDER $HOOKGUARD_EVENT_ID $HOOKGUARD_EVENT_TYPE\" >> '{seen}'; \
         if [ -e '{marker}' ]; then exit 0; fi; touch '{marker}'; exit 7",
        body = dir.join("body.json").display(),
        seen = seen.display(),
        marker = marker.display(),
    );
    let s = Server::start(&["--provider", "buildworkpro", "--secret", "whsec_exec", "--exec", &cmd]);
    let o = send(&[
        "--provider",
        "buildworkpro",
        "--secret",
        "whsec_exec",
        "--url",
        &s.url(),
        "--schedule",
        "fast",
    ]);
    let out = text(&o.stdout);
    assert_eq!(code(&o), 0, "{out}\n{}", s.stderr());
    assert!(out.contains("attempt 1/7") && out.contains("500"), "{out}");
    assert!(out.contains("attempt 2/7") && out.contains("delivered"), "{out}");
    let lines = s.json_lines(1);
    assert_eq!(lines.len(), 1, "printed exactly once: {lines:?}");
    let id = lines[0]["id"].as_str().unwrap().to_owned();
    let runs = std::fs::read_to_string(&seen).unwrap();
    assert_eq!(
        runs.lines().collect::<Vec<_>>(),
        [
            format!("buildworkpro {id} bid.accepted"),
            format!("buildworkpro {id} bid.accepted")
        ]
    );
    let body = std::fs::read_to_string(dir.join("body.json")).unwrap();
    assert!(body.contains(&format!("\"id\":\"{id}\"")), "{body}");
    assert!(s.stderr().contains("--exec failed"), "{}", s.stderr());
}

#[test]
fn exec_timeout_answers_503_and_the_retry_runs_again() {
    let dir = scratch("exec-timeout");
    let marker = dir.join("marker");
    let cmd = format!(
        "cat >/dev/null; if [ -e '{m}' ]; then exit 0; fi; touch '{m}'; sleep 5",
        m = marker.display()
    );
    let s = Server::start(&[
        "--provider",
        "hcss",
        "--secret",
        "t",
        "--exec",
        &cmd,
        "--exec-timeout",
        "0.5",
    ]);
    let o = send(&[
        "--provider",
        "hcss",
        "--secret",
        "t",
        "--url",
        &s.url(),
        "--schedule",
        "fast",
    ]);
    let out = text(&o.stdout);
    assert_eq!(code(&o), 0, "{out}");
    assert!(out.contains("503") && out.contains("handler_timeout"), "{out}");
    assert_eq!(s.json_lines(1).len(), 1);
}

/// Signs the body with `sign`, then verifies it with `verify` (-H flags and --headers-file).
fn round_trip(provider: &str, secret: &str, body: &[u8], extra_sign: &[&str]) -> serde_json::Value {
    let dir = scratch(&format!("rt-{provider}"));
    let file = dir.join("body");
    std::fs::write(&file, body).unwrap();
    let mut sign = vec![
        "sign",
        "--provider",
        provider,
        "--secret",
        secret,
        "--timestamp",
        "1700000000",
    ];
    sign.extend_from_slice(extra_sign);
    let signed = hookguard(&sign, Some(body));
    assert_eq!(code(&signed), 0, "{}", text(&signed.stderr));
    let headers = text(&signed.stdout);
    let headers_file = dir.join("headers.txt");
    std::fs::write(&headers_file, &headers).unwrap();

    // 1. With -H flags (and --uri for a query line), body on stdin.
    let mut verify: Vec<String> = [
        "verify",
        "--provider",
        provider,
        "--secret",
        secret,
        "--now",
        "1700000100",
    ]
    .map(String::from)
    .to_vec();
    for line in headers.lines() {
        if let Some(q) = line.strip_prefix('?') {
            verify.push("--uri".into());
            verify.push(format!("/webhooks?{q}"));
        } else {
            verify.push("-H".into());
            verify.push(line.into());
        }
    }
    let v = hookguard(&verify.iter().map(String::as_str).collect::<Vec<_>>(), Some(body));
    assert_eq!(code(&v), 0, "{provider}: {}\n{headers}", text(&v.stdout));
    let summary: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(summary["provider"], provider);

    // 2. With --headers-file and --file.
    let v2 = hookguard(
        &[
            "verify",
            "--provider",
            provider,
            "--secret",
            secret,
            "--now",
            "1700000100",
            "--headers-file",
            path(&headers_file),
            "--file",
            path(&file),
        ],
        None,
    );
    assert_eq!(code(&v2), 0, "{provider}: {}", text(&v2.stdout));
    assert_eq!(v.stdout, v2.stdout);

    // 3. Tampered body: rejected with a stable code, exit 1.
    let mut tampered = body.to_vec();
    let i = tampered.iter().rposition(|b| b.is_ascii_digit()).unwrap();
    tampered[i] = if tampered[i] == b'9' { b'1' } else { tampered[i] + 1 };
    let bad = hookguard(
        &[
            "verify",
            "--provider",
            provider,
            "--secret",
            secret,
            "--now",
            "1700000100",
            "--headers-file",
            path(&headers_file),
        ],
        Some(&tampered),
    );
    let err: serde_json::Value = serde_json::from_slice(&bad.stdout).unwrap_or_default();
    match provider {
        // Shared-token senders do not sign the body: a changed body still authenticates.
        "procore" | "hcss" => assert_eq!(code(&bad), 0, "{}", text(&bad.stdout)),
        _ => {
            assert_eq!(code(&bad), 1, "{provider}: {}", text(&bad.stdout));
            assert_eq!(err["error"], "signature_mismatch", "{provider}");
            assert!(err["message"].is_string());
        }
    }
    summary
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn sign_verify_round_trips_for_every_provider() {
    let bwp = br#"{"id":"evt_rt_1","type":"bid.accepted","created_at":"2026-04-25T17:42:01.812Z","tenant_id":17,"data":{"bidId":9}}"#;
    let s = round_trip("buildworkpro", "whsec_round_trip", bwp, &[]);
    assert_eq!(s["id"], "evt_rt_1");
    assert_eq!(s["type"], "bid.accepted");
    assert_eq!(s["dedupe_key"], "buildworkpro:evt_rt_1");

    let s = round_trip(
        "standard",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        br#"{"type":"invoice.paid","amount":12500}"#,
        &["--id", "msg_rt_1"],
    );
    assert_eq!(s["dedupe_key"], "standard:msg_rt_1");

    let s = round_trip(
        "stripe",
        "whsec_stripe_rt",
        br#"{"id":"evt_stripe_1","object":"event","type":"payment_intent.succeeded","created":1700000000}"#,
        &[],
    );
    assert_eq!(s["id"], "evt_stripe_1");

    let s = round_trip(
        "github",
        "gh-secret",
        br#"{"zen":"Design for failure.","hook_id":42}"#,
        &["--id", "72d3162e-cc78-11e3-81ab-4c9367dc0958", "--event-type", "ping"],
    );
    assert_eq!(s["id"], "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    assert_eq!(s["type"], "ping");

    let s = round_trip(
        "slack",
        "slack-signing-secret",
        br#"{"type":"event_callback","event_id":"Ev08MFMKH6","event_time":1700000000,"event":{"type":"app_mention"}}"#,
        &[],
    );
    assert_eq!(s["dedupe_key"], "slack:Ev08MFMKH6");

    let procore = br#"{"api_version":"v2","company_id":6452,"event_type":"create","id":5982324300946918154,"metadata":{"source_application_id":null},"project_id":219542,"resource_id":245510722,"resource_name":"RFIs","timestamp":"2020-07-20T15:22:01.353581Z","ulid":"01EDPD2J6SBY1163N77H95GW09","user_id":1469242}"#;
    let s = round_trip("procore", "Bearer rt", procore, &[]);
    assert_eq!(s["id"], "5982324300946918154");

    let hcss = br#"{"companyId":"c1","eventType":"EmployeeUpdated","businessUnitId":"b1","id":"e1"}"#;
    let s = round_trip("hcss", "hcss token/with space", hcss, &[]);
    assert_eq!(s["type"], "EmployeeUpdated");
}

#[test]
fn verify_reports_stable_codes_and_usage_errors() {
    let body = br#"{"id":"evt_v","type":"bid.accepted"}"#;
    let signed = hookguard(
        &[
            "sign",
            "--provider",
            "buildworkpro",
            "--secret",
            "whsec_v",
            "--timestamp",
            "1700000000",
        ],
        Some(body),
    );
    let sig = text(&signed.stdout).lines().next().unwrap().to_owned();
    assert!(sig.starts_with("BuildWorkPro-Signature: t=1700000000,v1="), "{sig}");
    let verify = |extra: &[&str], secret: &str| {
        let mut a = vec!["verify", "--provider", "buildworkpro", "--secret", secret, "-H", &sig];
        a.extend_from_slice(extra);
        hookguard(&a, Some(body))
    };
    let check = |o: Output, exit: i32, code_: &str| {
        assert_eq!(code(&o), exit, "{}", text(&o.stdout));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["error"], code_);
    };
    assert_eq!(code(&verify(&["--now", "1700000300"], "whsec_v")), 0);
    check(
        verify(&["--now", "1700000301"], "whsec_v"),
        1,
        "timestamp_out_of_window",
    );
    check(verify(&["--now", "1700000000"], "whsec_other"), 1, "signature_mismatch");
    assert_eq!(
        code(&verify(&["--now", "1700000301", "--tolerance", "600"], "whsec_v")),
        0
    );
    // Without --now the real clock is far from 1700000000.
    check(verify(&[], "whsec_v"), 1, "timestamp_out_of_window");
    // A forged signature that is just `v1=`.
    let o = hookguard(
        &[
            "verify",
            "--provider",
            "buildworkpro",
            "--secret",
            "whsec_v",
            "-H",
            "BuildWorkPro-Signature: t=1700000000,v1=",
            "--now",
            "1700000000",
        ],
        Some(body),
    );
    check(o, 1, "malformed_signature");
    let o = hookguard(&["verify", "--provider", "github", "--secret", "s"], Some(b"{}"));
    check(o, 1, "missing_signature");

    // Usage and configuration errors exit 2.
    assert_eq!(code(&hookguard(&["verify", "--provider", "github"], Some(b"{}"))), 2);
    assert_eq!(
        code(&hookguard(&["verify", "--provider", "nope", "--secret", "s"], None)),
        2
    );
    assert_eq!(
        code(&hookguard(
            &["verify", "--provider", "github", "--secret", "s", "-H", "no colon"],
            None
        )),
        2
    );
    assert_eq!(
        code(&hookguard(
            &["verify", "--provider", "standard", "--secret", "whsec_%%"],
            Some(b"{}")
        )),
        2
    );
    assert_eq!(
        code(&hookguard(
            &["serve", "--provider", "stripe", "--listen", "127.0.0.1:0"],
            None
        )),
        2
    );
    assert_eq!(
        code(&hookguard(
            &[
                "serve",
                "--provider",
                "stripe",
                "--secret",
                "s",
                "--store",
                "mongodb://x"
            ],
            None
        )),
        2
    );
    assert_eq!(
        code(&hookguard(
            &[
                "send",
                "--provider",
                "github",
                "--secret",
                "s",
                "--url",
                "https://example.invalid/"
            ],
            None
        )),
        2
    );
    assert_eq!(
        code(&hookguard(
            &[
                "send",
                "--provider",
                "github",
                "--secret",
                "s",
                "--url",
                "http://127.0.0.1:9/",
                "--challenge"
            ],
            None
        )),
        2
    );
}

#[test]
fn sign_prints_the_hcss_query_pair_and_procore_header() {
    let o = hookguard(&["sign", "--provider", "hcss", "--secret", "a b&c"], Some(b"{}"));
    assert_eq!(code(&o), 0);
    assert_eq!(text(&o.stdout), "Content-Type: application/json\n?token=a%20b%26c\n");
    let o = hookguard(
        &["sign", "--provider", "procore", "--auth-header", "X-Hook-Token: v1"],
        Some(b"{}"),
    );
    assert_eq!(text(&o.stdout), "X-Hook-Token: v1\nContent-Type: application/json\n");
}

#[test]
fn redis_store_is_shared_by_two_receivers() {
    let url = std::env::var("HOOKGUARD_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let dir = scratch("redis");
    let file = dir.join("event.json");
    let id = format!(
        "evt_redis_{}_{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );
    std::fs::write(
        &file,
        format!(r#"{{"id":"{id}","type":"bid.accepted","created_at":"2026-04-25T17:42:01.812Z","tenant_id":17,"data":{{}}}}"#),
    )
    .unwrap();
    let a = Server::start(&["--provider", "buildworkpro", "--secret", "whsec_r", "--store", &url]);
    let b = Server::start(&["--provider", "buildworkpro", "--secret", "whsec_r", "--store", &url]);
    assert!(a.stderr().contains("store redis"), "{}", a.stderr());
    for s in [&a, &b] {
        let o = send(&[
            "--provider",
            "buildworkpro",
            "--secret",
            "whsec_r",
            "--url",
            &s.url(),
            "--schedule",
            "fast",
            "--file",
            path(&file),
        ]);
        assert_eq!(code(&o), 0, "{}\n{}", text(&o.stdout), s.stderr());
    }
    let first = a.json_lines(1);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["id"], id.as_str());
    // The second replica saw a copy of a handled delivery: 200 duplicate, not printed.
    assert!(b.wait_lines(0).is_empty(), "{:?}", b.lines());
    assert!(b.stderr().contains("duplicate"), "{}", b.stderr());

    // An unreachable Redis fails at startup (exit 1), not at the first delivery.
    let o = hookguard(
        &[
            "serve",
            "--provider",
            "github",
            "--secret",
            "s",
            "--store",
            "redis://127.0.0.1:1",
        ],
        None,
    );
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
}

#[test]
fn serve_shuts_down_gracefully_on_sigterm() {
    let mut s = Server::start(&["--provider", "github", "--secret", "s"]);
    let killed = Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn every_subcommand_has_complete_help_with_an_example() {
    for sub in ["demo", "serve", "sign", "verify", "send"] {
        let o = hookguard(&[sub, "--help"], None);
        assert_eq!(code(&o), 0);
        let h = text(&o.stdout);
        assert!(h.contains("Example"), "{sub} --help has no example:\n{h}");
        assert!(h.contains(&format!("hookguard {sub}")), "{sub}:\n{h}");
    }
    let h = text(&hookguard(&["serve", "--help"], None).stdout);
    for flag in [
        "--provider",
        "--secret",
        "--auth-header",
        "--listen",
        "--path",
        "--tolerance",
        "--max-body",
        "--store",
        "--exec",
        "--exec-timeout",
        "--ignore-source-application",
        "--stdout-queue",
        "stdout_backlog",
        "127.0.0.1:8787",
        "/webhooks",
        "1048576",
    ] {
        assert!(h.contains(flag), "serve --help lacks {flag}");
    }
    let h = text(&hookguard(&["send", "--help"], None).stdout);
    for needle in ["--schedule", "--challenge", "+24 h", "12 h", "Stopped", "TLS"] {
        assert!(h.contains(needle), "send --help lacks {needle}");
    }
}

/// `/proc/PID/stat` fields 3 (state) and 4 (parent), or `None` once the process is gone.
fn proc_state(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: read after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split(' ');
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid))
}

/// The zombie children of `parent` (processes it has not reaped).
fn zombie_children(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| proc_state(*pid) == Some(('Z', parent)))
        .collect()
}

#[test]
fn exec_timeout_kills_the_whole_process_group() {
    let dir = scratch("exec-group");
    let pid_file = dir.join("child.pid");
    // sh starts a child of its own and waits for it: the timeout must kill both.
    let cmd = format!(
        "cat >/dev/null; sleep 60 & echo $! > '{p}.tmp'; mv '{p}.tmp' '{p}'; wait",
        p = pid_file.display()
    );
    let s = Server::start(&[
        "--provider",
        "hcss",
        "--secret",
        "t",
        "--exec",
        &cmd,
        "--exec-timeout",
        "1",
    ]);
    let body = br#"{"companyId":"c","eventType":"CostCodeUpdated","jobId":"j","costCodeId":"k"}"#;
    let (status, answer) = http(s.port, "POST", "/webhooks?token=t", &[], body);
    assert_eq!(status, 503, "{}", text(&answer));
    assert!(text(&answer).contains("handler_timeout"), "{}", text(&answer));
    let pid = read_pid(&pid_file);
    // The child was killed with its group. Its new parent (init) reaps it; until then it may
    // show as a zombie, which is dead, but never as a zombie of serve.
    let server = s.child.id();
    assert_dies(pid, server);
    // sh itself (and the kill helper) were reaped by serve: no zombie children.
    assert_eq!(zombie_children(server), Vec::<u32>::new());
    assert!(s.stderr().contains("process group was killed"), "{}", s.stderr());
}

/// Waits (at most 10 s) until `pid` is dead: gone, or a zombie waiting for a parent other
/// than `server` (orphans are reaped by init).
fn assert_dies(pid: u32, server: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match proc_state(pid) {
            None => return,
            Some(('Z', parent)) if parent != server => return,
            Some(st) => assert!(Instant::now() < deadline, "process {pid} still runs: {st:?}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (at most 10 s) for the pid an --exec command wrote.
fn read_pid(file: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = std::fs::read_to_string(file).ok().and_then(|s| s.trim().parse().ok()) {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "the command wrote no pid to {}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn exec_children_die_when_the_sender_hangs_up() {
    let dir = scratch("exec-hangup");
    let pid_file = dir.join("child.pid");
    let cmd = format!(
        "cat >/dev/null; sleep 60 & echo $! > '{p}.tmp'; mv '{p}.tmp' '{p}'; wait",
        p = pid_file.display()
    );
    let s = Server::start(&[
        "--provider",
        "hcss",
        "--secret",
        "t",
        "--exec",
        &cmd,
        "--exec-timeout",
        "30",
    ]);
    let body = br#"{"companyId":"c","eventType":"CostCodeUpdated","jobId":"j","costCodeId":"k"}"#;
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    write!(
        c,
        "POST /webhooks?token=t HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    c.write_all(body).unwrap();
    let pid = read_pid(&pid_file);
    // The sender gives up (its own timeout) and closes the connection: the handler is
    // dropped, and the command's whole group with it.
    drop(c);
    assert_dies(pid, s.child.id());
}

#[test]
fn exec_leaves_nul_and_oversized_values_out_of_the_environment() {
    let dir = scratch("exec-env");
    let env_log = dir.join("env.log");
    let body_file = dir.join("body");
    let cmd = format!(
        "cat > '{b}'; {{ env | grep '^HOOKGUARD_' | sort; echo ---; }} >> '{e}'",
        b = body_file.display(),
        e = env_log.display()
    );
    let s = Server::start(&["--provider", "buildworkpro", "--secret", "whsec_env", "--exec", &cmd]);
    // (JSON id, JSON type, variables left out, variables kept with their value)
    let long_type = format!("bid.{}", "a".repeat(200_000));
    let cases = [
        // An id holding a NUL byte (JSON "\u0000"): the id and the key built from it.
        (
            r"evt_nul\u0000x".to_owned(),
            "bid.accepted".to_owned(),
            &["HOOKGUARD_EVENT_ID", "HOOKGUARD_DEDUPE_KEY"][..],
            vec!["HOOKGUARD_EVENT_TYPE=bid.accepted".to_owned()],
        ),
        // A type far over the environment's per-string limit (Linux: 128 KiB, E2BIG).
        (
            "evt_long_type".to_owned(),
            long_type.clone(),
            &["HOOKGUARD_EVENT_TYPE"][..],
            vec![
                "HOOKGUARD_EVENT_ID=evt_long_type".to_owned(),
                "HOOKGUARD_DEDUPE_KEY=buildworkpro:evt_long_type".to_owned(),
            ],
        ),
    ];
    for (n, (json_id, kind, left_out, kept)) in cases.iter().enumerate() {
        let body = format!(
            r#"{{"id":"{json_id}","type":"{kind}","created_at":"2026-04-25T17:42:01.812Z","tenant_id":17,"data":{{}}}}"#
        );
        // The unsigned BuildWorkPro-Event(-Id) headers get plain values (a header cannot hold
        // a NUL); the id, type and dedupe key come from the signed body.
        let headers = signed_headers(
            &[
                "--provider",
                "buildworkpro",
                "--secret",
                "whsec_env",
                "--id",
                "evt_header",
                "--event-type",
                "bid.header",
            ],
            body.as_bytes(),
        );
        let (status, answer) = http(s.port, "POST", "/webhooks", &headers, body.as_bytes());
        assert_eq!(status, 204, "case {n}: {}\n{}", text(&answer), s.stderr());
        let log = std::fs::read_to_string(&env_log).unwrap();
        let block = log.split("---\n").nth(n).expect("one environment per run");
        let vars: Vec<&str> = block.lines().collect();
        for name in *left_out {
            assert!(
                vars.contains(&format!("{name}_INVALID=1").as_str()),
                "case {n}: {vars:?}"
            );
            assert!(
                !vars.iter().any(|v| v.starts_with(&format!("{name}="))),
                "case {n}: {vars:?}"
            );
        }
        for v in kept
            .iter()
            .map(String::as_str)
            .chain(["HOOKGUARD_PROVIDER=buildworkpro"])
        {
            assert!(vars.contains(&v), "case {n}: {v} not in {vars:?}");
        }
        assert_eq!(
            vars.iter().filter(|v| v.contains("_INVALID=")).count(),
            left_out.len(),
            "case {n}: {vars:?}"
        );
        // The raw body, with the exact values, still reaches the command on stdin.
        assert_eq!(std::fs::read(&body_file).unwrap(), body.as_bytes(), "case {n}");
        // Done once: a copy is a duplicate, not run again.
        let (status, answer) = http(s.port, "POST", "/webhooks", &headers, body.as_bytes());
        assert_eq!(status, 200, "case {n}: {}", text(&answer));
    }
    let lines = s.json_lines(2);
    assert_eq!(lines.len(), 2, "{}", s.stderr());
    assert_eq!(lines[0]["id"], "evt_nul\u{0}x");
    assert_eq!(lines[1]["type"], long_type.as_str());
    assert_eq!(std::fs::read_to_string(&env_log).unwrap().matches("---").count(), 2);
    assert!(s.stderr().contains("left out of the environment"), "{}", s.stderr());
}

#[test]
fn send_never_prints_a_token_or_secret() {
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/webhooks?token=URLTOKEN4f7a");
    let secrets = ["URLTOKEN4f7a", "FLAGSECRET9c1e", "PASSWORD3b8d"];
    let runs: Vec<Vec<String>> = vec![
        vec![
            "--provider".into(),
            "hcss".into(),
            "--secret".into(),
            "FLAGSECRET9c1e".into(),
            "--url".into(),
            url.clone(),
            "--schedule".into(),
            "fast".into(),
        ],
        vec![
            "--provider".into(),
            "hcss".into(),
            "--url".into(),
            url.clone(),
            "--schedule".into(),
            "fast".into(),
        ],
        vec![
            "--provider".into(),
            "hcss".into(),
            "--secret".into(),
            "FLAGSECRET9c1e".into(),
            "--url".into(),
            url.clone(),
            "--challenge".into(),
        ],
        vec![
            "--provider".into(),
            "github".into(),
            "--secret".into(),
            "FLAGSECRET9c1e".into(),
            "--url".into(),
            format!("http://user:PASSWORD3b8d@127.0.0.1:{port}/hooks?key=URLTOKEN4f7a"),
        ],
    ];
    for args in &runs {
        let o = send(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let (out, err) = (text(&o.stdout), text(&o.stderr));
        assert_eq!(code(&o), 1, "{args:?}\n{out}\n{err}");
        assert!(out.contains("no connection"), "{args:?}: {out}");
        for secret in secrets {
            assert!(
                !out.contains(secret) && !err.contains(secret),
                "{args:?} printed {secret}:\n{out}\n{err}"
            );
        }
        assert!(out.contains("token=***") || out.contains("key=***"), "{out}");
    }
    // A URL that does not parse is not echoed either.
    let o = send(&["--provider", "hcss", "--url", "http://[::1/webhooks?token=URLTOKEN4f7a"]);
    assert_eq!(code(&o), 2);
    assert!(!text(&o.stderr).contains("URLTOKEN4f7a"), "{}", text(&o.stderr));
}

#[test]
fn hcss_send_needs_no_secret_when_the_url_carries_the_token() {
    let s = Server::start(&["--provider", "hcss", "--secret", "URLTOKEN61d2"]);
    let url = format!("{}?token=URLTOKEN61d2", s.url());
    let o = send(&["--provider", "hcss", "--url", &url, "--challenge"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stdout));
    let o = send(&["--provider", "hcss", "--url", &url, "--schedule", "fast"]);
    let out = text(&o.stdout);
    assert_eq!(code(&o), 0, "{out}\n{}", s.stderr());
    assert!(out.contains("attempt 1/5") && out.contains("delivered"), "{out}");
    assert!(
        !out.contains("URLTOKEN61d2") && !text(&o.stderr).contains("URLTOKEN61d2"),
        "{out}"
    );
    assert_eq!(s.json_lines(1).len(), 1);
    // Without the token anywhere, the receiver refuses it (and the sender says so).
    let o = send(&["--provider", "hcss", "--url", &s.url(), "--schedule", "fast"]);
    assert_eq!(code(&o), 1);
    assert!(text(&o.stdout).contains("unauthorized"), "{}", text(&o.stdout));
}

#[test]
fn a_stalled_stdout_reader_stalls_nothing_and_loses_no_line() {
    // The default queue (1024 lines) plus a 64 KiB pipe nobody reads.
    let mut s = Server::start_with(&["--provider", "hcss", "--secret", "t"], ServeStdout::Unread);
    // Longer event types make longer JSON lines: a few dozen fill the pipe.
    let body = |i: usize| {
        format!(
            r#"{{"eventSource":"HeavyBid Pre-Construction","eventType":"T{i}-{}","version":"1","date":"2026-04-25T17:42:01Z","data":{{"projectId":"p{i}"}}}}"#,
            "x".repeat(2048),
        )
    };
    let mut delivered = Vec::new();
    let mut refused = None;
    for i in 0..5000 {
        let (status, answer) = http(s.port, "POST", "/webhooks?token=t", &[], body(i).as_bytes());
        match status {
            204 => delivered.push(i),
            503 => {
                assert!(text(&answer).contains("stdout_backlog"), "{}", text(&answer));
                refused = Some(i);
                break;
            }
            other => panic!("delivery {i}: {other} {}", text(&answer)),
        }
    }
    let refused = refused.expect("a full stdout queue answers 503");
    assert!(delivered.len() >= 1024, "{}", delivered.len());
    // Challenges and rejections are still answered while stdout is stuck.
    let (status, answer) = http(s.port, "GET", "/webhooks?token=t&challenge=still-here", &[], b"");
    assert_eq!((status, text(&answer).as_str()), (200, "still-here"));
    let (status, _) = http(s.port, "POST", "/webhooks?token=wrong", &[], body(9999).as_bytes());
    assert_eq!(status, 401);

    // Once the reader catches up, every 2xx delivery has its line, exactly once, and the
    // refused one was released: its retry is handled and printed.
    s.read_unread();
    let lines = s.json_lines(delivered.len());
    let (status, _) = http(s.port, "POST", "/webhooks?token=t", &[], body(refused).as_bytes());
    assert_eq!(status, 204, "{}", s.stderr());
    // A line is printed only once its delivery is recorded as done: a copy is a duplicate.
    let (status, answer) = http(s.port, "POST", "/webhooks?token=t", &[], body(delivered[0]).as_bytes());
    assert_eq!((status, text(&answer).contains("duplicate")), (200, true));
    let lines_after = s.json_lines(delivered.len() + 1);
    let kinds = |ls: &[serde_json::Value]| -> Vec<usize> {
        ls.iter()
            .map(|l| {
                let t = l["type"].as_str().unwrap();
                t[1..t.find('-').unwrap()].parse().unwrap()
            })
            .collect()
    };
    let mut printed = kinds(&lines);
    printed.sort_unstable();
    assert_eq!(printed, delivered);
    let mut all = kinds(&lines_after);
    all.sort_unstable();
    let mut expected = delivered.clone();
    expected.push(refused);
    expected.sort_unstable();
    assert_eq!(all, expected);
}

/// Runs the binary with stdout a pipe whose reader is closed before it writes (stdin is
/// written only after closing); returns the exit status and stderr.
fn run_with_closed_stdout(args: &[&str], stdin: &[u8]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("HOOKGUARD_SECRET")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    drop(input);
    let o = wait_bounded(child, Duration::from_secs(30));
    (o.status.code(), text(&o.stderr))
}

fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    // `hookguard send … | head -1`: the reader goes away after one line, mid-retries.
    let url = format!("http://127.0.0.1:{}/webhooks", closed_port());
    let mut child = Command::new(BIN)
        .args([
            "send",
            "--provider",
            "procore",
            "--secret",
            "Bearer x",
            "--url",
            &url,
            "--schedule",
            "fast",
        ])
        .env_remove("HOOKGUARD_SECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("Procore sender"), "{first}");
    let o = wait_bounded(child, Duration::from_secs(30));
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");

    let bwp = br#"{"id":"evt_1","type":"bid.accepted"}"#;
    for args in [
        &["sign", "--provider", "buildworkpro", "--secret", "whsec_x"][..],
        &["verify", "--provider", "github", "--secret", "s"][..],
        &["demo"][..],
    ] {
        let (status, err) = run_with_closed_stdout(args, bwp);
        assert_eq!(status, Some(1), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
    }

    // serve: a reader that exits stops the receiver (exit 1), no panic, no silent 2xx after.
    let mut s = Server::start_with(&["--provider", "hcss", "--secret", "t"], ServeStdout::Closed);
    let body = br#"{"companyId":"c","eventType":"EmployeeUpdated","businessUnitId":"b","id":"e"}"#;
    let (status, _) = http(s.port, "POST", "/webhooks?token=t", &[], body);
    assert_eq!(status, 204);
    let st = s
        .wait_exit(Duration::from_secs(15))
        .expect("serve stops when stdout is closed");
    assert_eq!(st.code(), Some(1), "{}", s.stderr());
    assert!(!s.stderr().contains("panicked"), "{}", s.stderr());
    assert!(s.stderr().contains("stdout is closed"), "{}", s.stderr());
}
