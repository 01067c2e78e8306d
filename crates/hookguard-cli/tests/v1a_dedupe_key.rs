//! `hookguard sign|verify --provider standard` with Ed25519 (`v1a`) keys, `verify --method`
//! and `--dedupe-key`, and `serve --dedupe-key`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod support;
use support::{text, BIN};

const SEED: &str = "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=";
const PUBLIC: &str = "whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=";
const BODY: &[u8] = br#"{"test": 2432232314}"#;

fn hookguard(args: &[&str], stdin: &[u8]) -> Output {
    support::hookguard(args, Some(stdin))
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {:?} {:?}", text(&o.stdout), text(&o.stderr)))
}

fn sign(secret: &str) -> Output {
    hookguard(
        &[
            "sign",
            "--provider",
            "standard",
            "--secret",
            secret,
            "--timestamp",
            "1614265330",
            "--id",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
        ],
        BODY,
    )
}

fn verify(secrets: &[&str], headers: &str, extra: &[&str]) -> Output {
    let mut args = vec!["verify", "--provider", "standard", "--now", "1614265330"];
    for s in secrets {
        args.extend(["--secret", s]);
    }
    for line in headers.lines().filter(|l| !l.starts_with("Content-Type")) {
        args.extend(["-H", line]);
    }
    args.extend_from_slice(extra);
    hookguard(&args, BODY)
}

#[test]
fn standard_signs_with_whsk_and_verifies_with_whpk() {
    let signed = sign(SEED);
    assert_eq!(signed.status.code(), Some(0), "{}", text(&signed.stderr));
    let headers = text(&signed.stdout);
    assert!(
        headers.contains(
            "webhook-signature: v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag=="
        ),
        "{headers}"
    );
    let ok = verify(&[PUBLIC], &headers, &[]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stdout));
    assert_eq!(json(&ok)["dedupe_key"], "standard:msg_p5jXN8AQM9LWM0D4loKWxJek");
    // Rotation: another public key (RFC 8032 test 1) beside the current one.
    let other = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    assert_eq!(verify(&[other, PUBLIC], &headers, &[]).status.code(), Some(0));
    // Only another key, or an HMAC secret: a mismatch, never a cross-check.
    for secrets in [&[other][..], &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]] {
        let o = verify(secrets, &headers, &[]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
        let v = json(&o);
        assert_eq!(v["error"], "signature_mismatch");
        assert_eq!(v["status"], 401);
    }
    // A v1 and a v1a entry in one header, either key kind verifies.
    let v1 = text(&sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").stdout);
    let v1_entry = v1.lines().find_map(|l| l.strip_prefix("webhook-signature: ")).unwrap();
    let mixed = headers.replace(
        "webhook-signature: v1a,",
        &format!("webhook-signature: {v1_entry} v1a,"),
    );
    for secret in [PUBLIC, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] {
        assert_eq!(verify(&[secret], &mixed, &[]).status.code(), Some(0), "{secret}");
    }
    // A public key cannot sign; a bad key is a configuration error (exit 2).
    let o = sign(PUBLIC);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("cannot sign"), "{}", text(&o.stderr));
    assert_eq!(verify(&["whpk_AAAA"], &headers, &[]).status.code(), Some(2));
}

#[test]
fn verify_runs_the_receivers_prechecks_and_computes_dedupe_keys() {
    // A GET challenge is answered as serve would.
    let o = hookguard(
        &[
            "verify",
            "--provider",
            "hcss",
            "--secret",
            "tok",
            "--method",
            "GET",
            "--uri",
            "/webhooks?challenge=abc123",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    assert_eq!(json(&o)["challenge"], "abc123");
    let o = hookguard(
        &["verify", "--provider", "github", "--secret", "s", "--method", "PUT"],
        b"{}",
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["status"], 405);

    let body = br#"{"id":5982324300946918154,"ulid":"01EDPD2J6SBY1163N77H95GW09","event_type":"update","resource_name":"RFIs","resource_id":245510722,"timestamp":"2020-07-20T15:22:01.353581Z"}"#;
    let o = hookguard(
        &[
            "verify",
            "--provider",
            "procore",
            "--secret",
            "Bearer t",
            "-H",
            "Authorization: Bearer t",
            "--dedupe-key",
            "/resource_name,/resource_id,/event_type,/timestamp",
        ],
        body,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    assert_eq!(
        json(&o)["dedupe_key"],
        r#"procore:fields:["RFIs",245510722,"update","2020-07-20T15:22:01.353581Z"]"#
    );
    // One key with alternatives for v2 and v4 hooks (v4 renames `resource_name` and
    // `event_type`); the v2 recipe alone keys a v4 body on its own id.
    let v4 = br#"{"id":"01EDPD2J6SBY1163N77H95GW09","reason":"update","resource_type":"RFIs","resource_id":"245510722","timestamp":"2020-07-20T15:22:01.353581Z"}"#;
    for (key, body, want) in [
        (
            "/resource_name|/resource_type,/resource_id,/event_type|/reason,/timestamp",
            &v4[..],
            r#"procore:fields:["RFIs","245510722","update","2020-07-20T15:22:01.353581Z"]"#,
        ),
        (
            "/resource_name|/resource_type,/resource_id,/event_type|/reason,/timestamp",
            &body[..],
            r#"procore:fields:["RFIs",245510722,"update","2020-07-20T15:22:01.353581Z"]"#,
        ),
        (
            "/resource_name,/resource_id,/event_type,/timestamp",
            &v4[..],
            "procore:01EDPD2J6SBY1163N77H95GW09",
        ),
    ] {
        let args = [
            "verify",
            "--provider",
            "procore",
            "--secret",
            "Bearer t",
            "-H",
            "Authorization: Bearer t",
        ];
        let o = hookguard(&[&args[..], &["--dedupe-key", key]].concat(), body);
        assert_eq!(o.status.code(), Some(0), "{key}: {}", text(&o.stderr));
        assert_eq!(json(&o)["dedupe_key"], want, "{key}");
    }
    let keyed = |key: &str| {
        let o = hookguard(
            &[
                "verify",
                "--provider",
                "procore",
                "--secret",
                "Bearer t",
                "--dedupe-key",
                key,
            ],
            body,
        );
        assert_eq!(o.status.code(), Some(2), "{key}: {}", text(&o.stderr));
        text(&o.stderr)
    };
    for bad in [
        "resource_id",
        "header:authorization",
        "/id|",
        "/id|header:authorization",
    ] {
        keyed(bad);
    }
    // An unsigned header: said once, with advice the CLI's user can follow.
    let err = keyed("header:x-hop");
    assert_eq!(err.matches("invalid configuration").count(), 1, "{err}");
    assert!(!err.contains("allow_unsigned_key_header"), "{err}");
    assert!(err.contains("signed headers"), "{err}");
}

/// A running `hookguard serve`, killed on drop.
struct Server {
    child: Child,
    port: u16,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("HOOKGUARD_SECRET")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hookguard serve");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&stdout);
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::<String>::new()));
        let lines = Arc::clone(&stderr);
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
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
        Server { child, port, stdout }
    }

    fn post(&self, headers: &[(&str, &str)], body: &[u8]) -> u16 {
        let mut c = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to serve");
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req = format!(
            "POST /webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        c.write_all(req.as_bytes()).unwrap();
        c.write_all(body).unwrap();
        let mut answer = Vec::new();
        c.read_to_end(&mut answer).expect("an answer");
        text(&answer)
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status")
    }

    /// Waits until stdout has `n` lines (or 5 s), then a little longer to catch extras.
    fn lines(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.stdout.lock().unwrap().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        self.stdout.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_dedupe_key_handles_one_procore_change_once() {
    let server = Server::start(&[
        "--provider",
        "procore",
        "--secret",
        "Bearer t",
        "--dedupe-key",
        "/resource_name,/resource_id,/event_type,/timestamp",
    ]);
    let event = |id: u64, ulid: &str, ts: &str| {
        format!(
            r#"{{"id":{id},"ulid":"{ulid}","event_type":"update","resource_name":"RFIs","resource_id":245510722,"timestamp":"{ts}","metadata":{{"source_application_id":null}}}}"#
        )
    };
    let auth = [("Authorization", "Bearer t"), ("Content-Type", "application/json")];
    let first = event(
        5982324300946918154,
        "01EDPD2J6SBY1163N77H95GW09",
        "2020-07-20T15:22:01.353581Z",
    );
    let copy = event(
        5982324300946918155,
        "01EDPD2J6SBY1163N77H95GW0A",
        "2020-07-20T15:22:01.353581Z",
    );
    let later = event(
        5982324300946918156,
        "01EDPD2J6SBY1163N77H95GW0B",
        "2020-07-20T15:30:00.000000Z",
    );
    assert_eq!(server.post(&auth, first.as_bytes()), 204);
    assert_eq!(
        server.post(&auth, copy.as_bytes()),
        200,
        "the same change with another id"
    );
    assert_eq!(server.post(&auth, later.as_bytes()), 204);
    let lines = server.lines(2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(v["id"], "5982324300946918154");
    assert_eq!(
        v["dedupe_key"],
        r#"procore:fields:["RFIs",245510722,"update","2020-07-20T15:22:01.353581Z"]"#
    );

    // An unsigned header as a key source is refused before listening (exit 2).
    let o = hookguard(
        &[
            "serve",
            "--provider",
            "buildworkpro",
            "--secret",
            "whsec_x",
            "--listen",
            "127.0.0.1:0",
            "--dedupe-key",
            "header:buildworkpro-event-id",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("not covered by the sender's signature"),
        "{}",
        text(&o.stderr)
    );
}
