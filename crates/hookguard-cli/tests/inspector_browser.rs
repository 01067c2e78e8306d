//! The inspector (`hookguard serve --ui`) in a real browser: headless Chromium driven through
//! WebDriver (chromedriver, started here on a free port and killed after) against a running
//! `serve --ui --inbox`. A delivery sent with `hookguard send` appears on the page; a dead item
//! replayed from the page (its button clicked) becomes done; a request without the token gets
//! 401. Takes a screenshot of the page (written to docs/inspector.png when
//! HOOKGUARD_UPDATE_SCREENSHOT=1).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without them the
//! test is skipped with a loud message — unless `CI` is set: then it fails.

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};

mod support;
use support::{hookguard, text, Scratch, BIN};
const SECRET: &str = "whsec_browser_test_secret";

/// The first of `names` found on `PATH`.
fn program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// Chromium and chromedriver, or `None` (after saying so loudly) when the test must be
/// skipped. Under CI a missing browser is a failure.
fn browsers() -> Option<(PathBuf, PathBuf)> {
    let chromium = program(&["chromium", "chromium-browser"]);
    let driver = program(&["chromedriver"]);
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        (c, d) => {
            let missing = format!(
                "chromium {}, chromedriver {}",
                if c.is_some() { "found" } else { "MISSING" },
                if d.is_some() { "found" } else { "MISSING" }
            );
            if std::env::var_os("CI").is_some() {
                panic!("CI is set and the browser test cannot run: {missing} (apt-get install chromium chromium-driver; .ci/run does)");
            }
            // Straight to the process's stderr: the test harness would swallow `eprintln!`.
            let _ = writeln!(
                std::io::stderr(),
                "\n##########################################################################\n\
                 ## SKIPPED inspector_in_a_real_browser: {missing}.\n\
                 ## Install them with `apt-get install chromium chromium-driver`.\n\
                 ## (With CI set this is a failure, not a skip.)\n\
                 ##########################################################################\n"
            );
            None
        }
    }
}

/// The inbox's items (JSON lines of `hookguard inbox list`).
fn items(db: &Path) -> Vec<serde_json::Value> {
    let o = hookguard(&["inbox", "list", "--inbox", db.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits (at most `limit`) until `done()`; panics naming `what` otherwise.
async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Awaits one WebDriver command, at most 30 s.
async fn within<T, E: std::fmt::Debug>(what: &str, f: impl Future<Output = Result<T, E>>) -> T {
    match tokio::time::timeout(Duration::from_secs(30), f).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{what}: {e:?}"),
        Err(_) => panic!("{what}: no answer within 30 s"),
    }
}

/// One plain HTTP/1.1 GET: (status, body).
fn get(port: u16, target: &str) -> (u16, String) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // Read until the body is complete (by Content-Length): some servers keep the connection.
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = c.read(&mut buf).expect("an answer within 10 s");
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")?
                    .trim()
                    .parse::<usize>()
                    .ok()
            });
            if n == 0 || length.is_some_and(|len| body.len() >= len) {
                let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
                return (status, body.to_owned());
            }
        }
        assert!(n > 0, "the connection closed before a complete answer: {text:?}");
    }
}

/// One signed BuildWorkPro POST of `body`: the status.
fn post_signed(port: u16, body: &[u8]) -> u16 {
    let o = hookguard(&["sign", "--provider", "buildworkpro", "--secret", SECRET], Some(body));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("POST /webhooks HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for l in text(&o.stdout).lines().filter(|l| l.contains(": ")) {
        req.push_str(l);
        req.push_str("\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    c.write_all(req.as_bytes()).unwrap();
    c.write_all(body).unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).expect("an answer within 10 s");
    answer.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status")
}

/// The processes this test started: `serve`, and chromedriver with the browsers it starts
/// (a process group of its own). Killed on drop, by the ids we hold.
#[derive(Default)]
struct Processes {
    serve: Option<Child>,
    driver: Option<(Child, u16)>,
}

impl Drop for Processes {
    fn drop(&mut self) {
        if let Some((mut d, port)) = self.driver.take() {
            // First politely (chromedriver quits its browsers and reaps them), at most 3 s.
            if let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = write!(
                    c,
                    "GET /shutdown HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
                );
                let _ = c.read(&mut [0u8; 256]);
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            while d.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            // Then the whole group it leads (its browsers), whatever is left of it. The group
            // id stays ours while any member lives.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", d.id())])
                .stderr(Stdio::null())
                .status();
            let _ = d.kill();
            let _ = d.wait();
        }
        if let Some(mut s) = self.serve.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

/// Starts `serve` and returns (webhook port, inspector port, token) from its stderr.
async fn start_serve(procs: &mut Processes, args: &[&str], log: &Arc<Mutex<Vec<String>>>) -> (u16, u16, String) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("HOOKGUARD_SECRET")
        .env_remove("HOOKGUARD_UI_TOKEN")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hookguard serve");
    let err = BufReader::new(child.stderr.take().unwrap());
    procs.serve = Some(child);
    let lines = Arc::clone(log);
    std::thread::spawn(move || {
        for l in err.lines().map_while(Result::ok) {
            lines.lock().unwrap().push(l);
        }
    });
    let find = |marker: &str| -> Option<(u16, String)> {
        log.lock().unwrap().iter().find_map(|l| {
            let rest = l.split(marker).nth(1)?;
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            Some((digits.parse().ok()?, rest[digits.len()..].to_owned()))
        })
    };
    wait_for("serve to start", Duration::from_secs(20), || {
        find("hookguard: inspector on http://127.0.0.1:").is_some()
    })
    .await;
    let (port, _) = find("listening on http://127.0.0.1:").expect("the listening line");
    let (ui, rest) = find("hookguard: inspector on http://127.0.0.1:").unwrap();
    let token = rest
        .strip_prefix("/?token=")
        .expect("a token in the URL")
        .trim()
        .to_owned();
    (port, ui, token)
}

/// Serves a page with one link (`#open`) to `target` on a free port of 127.0.0.1, to be
/// opened as `http://localhost:PORT/`: another site than `127.0.0.1`'s. Returns the port.
fn link_page(target: &str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let page = format!("<!doctype html><title>elsewhere</title><a id=\"open\" href=\"{target}\">the inspector</a>");
    std::thread::spawn(move || {
        for mut conn in listener.incoming().map_while(Result::ok) {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            // The request's head, then one answer and the connection closed.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && head.len() < 16_384 {
                match conn.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    port
}

/// Starts chromedriver on a free port and waits (at most 20 s) until it is ready.
async fn start_driver(procs: &mut Processes, driver: &Path) -> u16 {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromedriver");
    procs.driver = Some((child, port));
    wait_for("chromedriver to be ready", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok() && get(port, "/status").1.contains("\"ready\":true")
    })
    .await;
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspector_in_a_real_browser() {
    let Some((chromium, driver)) = browsers() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("hookguard-browser-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dir = Scratch(dir);
    let (db, flag) = (dir.0.join("inbox.db"), dir.0.join("fixed"));
    // The handler fails until the flag file exists; one attempt, then the item is dead.
    let cmd = format!("cat >/dev/null; test -e '{}'", flag.display());
    let mut procs = Processes::default();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (port, ui, token) = start_serve(
        &mut procs,
        &[
            "--provider",
            "buildworkpro",
            "--secret",
            SECRET,
            "--inbox",
            db.to_str().unwrap(),
            "--exec",
            &cmd,
            "--max-attempts",
            "1",
            "--ui",
            "127.0.0.1:0",
        ],
        &log,
    )
    .await;
    let base = format!("http://127.0.0.1:{ui}");

    // Without the token: 401.
    let (status, body) = get(ui, "/");
    assert_eq!(status, 401, "{body}");
    assert_eq!(get(ui, "/api/status").0, 401);

    // A delivery by the vendor simulator: accepted, then dead (the handler fails).
    let url = format!("http://127.0.0.1:{port}/webhooks");
    let sent = hookguard(
        &[
            "send",
            "--provider",
            "buildworkpro",
            "--secret",
            SECRET,
            "--url",
            &url,
            "--schedule",
            "fast",
        ],
        None,
    );
    assert!(sent.status.success(), "{}", text(&sent.stderr));
    let forged = hookguard(
        &[
            "send",
            "--provider",
            "buildworkpro",
            "--secret",
            "whsec_forged",
            "--url",
            &url,
            "--schedule",
            "fast",
        ],
        None,
    );
    assert!(!forged.status.success(), "a forged delivery is refused");
    wait_for("the delivery to be dead", Duration::from_secs(15), || {
        items(&db).first().is_some_and(|i| i["state"] == "dead")
    })
    .await;
    let item = items(&db).remove(0);
    let (id, event_id) = (
        item["id"].as_i64().unwrap(),
        item["event_id"].as_str().unwrap().to_owned(),
    );

    let drv = start_driver(&mut procs, &driver).await;
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-extensions", "--hide-scrollbars", "--window-size=1200,1300",
                format!("--user-data-dir={}", dir.0.join("profile").display()),
            ],
        },
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let c = within(
        "a WebDriver session",
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{drv}")),
    )
    .await;

    // The browser without the token: the 401 page.
    within("goto /", c.goto(&format!("{base}/"))).await;
    let source = within("the 401 page", c.source()).await;
    assert!(source.contains("401"), "{source}");
    assert!(!source.contains(&event_id), "{source}");

    // The printed URL, followed from a link on another site's page (a chat, a CI log): the
    // page itself, not a 401 (a redirect after a cross-site navigation counts as cross-site,
    // and the `SameSite=Strict` cookie it set was not sent with it); the token leaves the
    // address bar.
    let elsewhere = link_page(&format!("{base}/?token={token}"));
    within("another site's page", c.goto(&format!("http://localhost:{elsewhere}/"))).await;
    let link = within("its link", c.find(Locator::Id("open"))).await;
    within("click the link", link.click()).await;
    within(
        "the inspector",
        c.wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css("#answers-table")),
    )
    .await;
    let at = within("current url", c.current_url()).await;
    assert_eq!((at.host_str(), at.path()), (Some("127.0.0.1"), "/"), "{at}");
    assert!(!at.as_str().contains(&token), "{at}");
    // Nor is it in the history: one step back is the other site's page.
    within("back", c.back()).await;
    let before = within("current url", c.current_url()).await;
    assert_eq!(before.host_str(), Some("localhost"), "{before}");
    // Typed into the address bar: the same.
    within("goto ?token=", c.goto(&format!("{base}/?token={token}"))).await;
    let at = within("current url", c.current_url()).await;
    assert_eq!(at.path(), "/");
    assert!(!at.as_str().contains(&token), "{at}");
    // The delivery appears: its verdict among the recent answers, the item among the dead.
    let answers = within("the answers", c.find(Locator::Css("#answers-table"))).await;
    let answers = within("their text", answers.text()).await;
    assert!(answers.contains(&event_id) && answers.contains("accepted"), "{answers}");
    assert!(answers.contains("signature_mismatch"), "{answers}");
    let dead = within("the dead items", c.find(Locator::Css("#items-dead"))).await;
    let dead = within("their text", dead.text()).await;
    assert!(dead.contains(&event_id) && dead.contains("exit status: 1"), "{dead}");

    // The fix, then the replay button: the item becomes done.
    std::fs::write(&flag, b"").unwrap();
    let button = within("the replay button", c.find(Locator::Id(&format!("replay-{id}")))).await;
    within("click replay", button.click()).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        // The click navigates (POST, then 303 to the page): the table may not be there yet.
        // and an element found on the old page goes stale: both mean "not yet".
        let shown = async {
            let done = c.find(Locator::Css("#items-done")).await.ok()?;
            done.text().await.ok()
        };
        let found = tokio::time::timeout(Duration::from_secs(30), shown)
            .await
            .ok()
            .flatten()
            .is_some_and(|t| t.contains(&event_id));
        if found {
            break;
        }
        if Instant::now() >= deadline {
            let source = within("the page", c.source()).await;
            panic!("the replayed item never showed as done: {source}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        within("refresh", c.goto(&format!("{base}/"))).await;
    }
    assert_eq!(items(&db)[0]["state"], "done");
    assert_eq!(items(&db)[0]["attempts"], 1);

    // More to look at for the screenshot: a dead item again, a duplicate.
    std::fs::remove_file(&flag).unwrap();
    let body = br#"{"id":"evt_screenshot_2","type":"pay_app.submitted","created_at":"2026-04-25T17:42:01.812Z","tenant_id":17,"data":{}}"#;
    assert_eq!(post_signed(port, body), 200);
    let state_of = |event: &str| {
        items(&db)
            .into_iter()
            .find(|i| i["event_id"] == event)
            .map(|i| i["state"].clone())
    };
    wait_for("the second item to be dead", Duration::from_secs(15), || {
        state_of("evt_screenshot_2").is_some_and(|s| s == "dead")
    })
    .await;
    // The duplicate is a copy of a handled item: a copy of the dead one would run it again
    // (answered `accepted`), and a copy sent right after the first raced its one attempt.
    std::fs::write(&flag, b"").unwrap();
    let handled = br#"{"id":"evt_screenshot_3","type":"bid.accepted","created_at":"2026-04-25T17:43:01.812Z","tenant_id":17,"data":{}}"#;
    assert_eq!(post_signed(port, handled), 200);
    wait_for("the third item to be done", Duration::from_secs(15), || {
        state_of("evt_screenshot_3").is_some_and(|s| s == "done")
    })
    .await;
    assert_eq!(post_signed(port, handled), 200);
    within("reload", c.goto(&format!("{base}/"))).await;
    let answers = within("the answers", c.find(Locator::Css("#answers-table"))).await;
    assert!(within("their text", answers.text()).await.contains("duplicate"));
    let png = within("a screenshot", c.screenshot()).await;
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    std::fs::write(dir.0.join("inspector.png"), &png).unwrap();
    if std::env::var_os("HOOKGUARD_UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join("inspector.png"), &png).unwrap();
    }
    within("closing the session", c.close()).await;

    // The token is on serve's stderr once: the startup line.
    let log = log.lock().unwrap().join("\n");
    assert_eq!(log.matches(token.as_str()).count(), 1, "{log}");
    assert!(!log.contains(SECRET), "{log}");
    drop(procs);
}
