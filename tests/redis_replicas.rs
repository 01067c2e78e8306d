//! Several receiver replicas sharing one Redis dedupe store, end to end: real axum servers on
//! 127.0.0.1 with the tower `WebhookLayer`, each with its own `RedisStore` connection, hit
//! with raw HTTP.
//!
//! Redis: `HOOKGUARD_REDIS_URL` (default `redis://127.0.0.1:6379`; `scripts/ensure-redis.sh`
//! starts one). The outage test starts its own `redis-server` (the binary must be on `PATH`).
//! Every test writes under a key prefix of its own.

mod common;

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::{http::StatusCode, routing::post, Router};
use common::{send, Answer, Framing};
use hookguard_core::clock::ManualClock;
use hookguard_core::dedupe::Dedupe;
use hookguard_core::schemes::BuildWorkPro;
use hookguard_core::{Delivery, Scheme, SignParams, Verifier};
use hookguard_redis::RedisStore;
use hookguard_tower::{VerifiedDelivery, WebhookLayer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

const NOW: u64 = 1_700_000_000;
const SECRET: &str = "whsec_replicas";
const PATH: &str = "/webhooks/buildworkpro";

fn redis_url() -> String {
    std::env::var("HOOKGUARD_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// A prefix no other test (or test run) shares.
fn unique_prefix(test: &str) -> String {
    format!("hookguard-test:replicas:{test}:{:016x}:", random_u64())
}

async fn store(url: &str, prefix: &str) -> RedisStore {
    RedisStore::builder(url)
        .prefix(prefix)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot reach Redis at {url} (run scripts/ensure-redis.sh): {e}"))
}

/// One replica: an axum server on its own port whose webhook route is protected by the tower
/// layer with `dedupe`, and whose handler is `handler`. Returns the address.
async fn replica<H, Fut>(dedupe: Dedupe, handler: H) -> String
where
    H: Fn(Delivery) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = StatusCode> + Send + 'static,
{
    let verifier = Verifier::builder(BuildWorkPro::new())
        .secret(SECRET)
        .clock(ManualClock::new(NOW))
        .build()
        .unwrap();
    let route = post(move |VerifiedDelivery(d): VerifiedDelivery| handler(d));
    let app = Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .route(
            PATH,
            route.layer(WebhookLayer::from(
                hookguard_core::Receiver::new(verifier).with_dedupe(dedupe),
            )),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A signed BuildWorkPro delivery of event `id`: headers and body.
fn delivery(id: &str) -> (Vec<(String, String)>, Vec<u8>) {
    let body = format!(
        r#"{{"id":"{id}","type":"bid.accepted","created_at":"2026-04-25T17:42:01.812Z","tenant_id":17,"data":{{"id":9}}}}"#
    )
    .into_bytes();
    let signed = BuildWorkPro::new().sign(SECRET, &body, &SignParams::new(NOW)).unwrap();
    let mut headers: Vec<(String, String)> = signed
        .headers
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    headers.push(("content-type".into(), "application/json".into()));
    (headers, body)
}

async fn post_to(addr: &str, (headers, body): &(Vec<(String, String)>, Vec<u8>)) -> Answer {
    send(addr, "POST", PATH, headers, body, Framing::Length).await
}

fn describe(a: &Answer) -> String {
    format!(
        "{} {} (retry-after {:?})",
        a.status,
        String::from_utf8_lossy(&a.body),
        a.header("retry-after")
    )
}

fn is_duplicate(a: &Answer) -> bool {
    a.status == 200 && String::from_utf8_lossy(&a.body).contains(r#""status":"duplicate""#)
}

fn is_in_flight(a: &Answer) -> bool {
    a.status == 429 && a.code().as_deref() == Some("duplicate_in_flight") && a.header("retry-after").is_some()
}

/// The raw value of a Redis key, read with a minimal RESP client (the root package does not
/// depend on the `redis` crate). Understands `redis://[[user]:password@]host[:port][/db]`.
async fn redis_get(url: &str, key: &str) -> Option<String> {
    let rest = url
        .strip_prefix("redis://")
        .unwrap_or_else(|| panic!("raw GET supports redis:// URLs only"));
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((auth, rest)) => (Some(auth), rest),
        None => (None, rest),
    };
    let (hostport, db) = match rest.split_once('/') {
        Some((h, db)) => (h, Some(db).filter(|d| !d.is_empty())),
        None => (rest, None),
    };
    let addr = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:6379")
    };
    let mut conn = tokio::io::BufReader::new(tokio::net::TcpStream::connect(&addr).await.unwrap());
    if let Some(auth) = auth {
        let (user, password) = auth.split_once(':').unwrap_or(("", auth));
        if user.is_empty() {
            resp(&mut conn, &["AUTH", password]).await;
        } else {
            resp(&mut conn, &["AUTH", user, password]).await;
        }
    }
    if let Some(db) = db {
        resp(&mut conn, &["SELECT", db]).await;
    }
    resp(&mut conn, &["GET", key]).await
}

/// Sends one command; returns a bulk string reply (`None` for nil), panics on an error reply.
async fn resp(conn: &mut tokio::io::BufReader<tokio::net::TcpStream>, args: &[&str]) -> Option<String> {
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    conn.get_mut().write_all(cmd.as_bytes()).await.unwrap();
    let mut line = String::new();
    conn.read_line(&mut line).await.unwrap();
    let line = line.trim_end();
    match line.as_bytes().first() {
        Some(b'+') => Some(line[1..].to_owned()),
        Some(b'$') => {
            let n: i64 = line[1..].parse().unwrap();
            if n < 0 {
                return None;
            }
            let mut buf = vec![0; usize::try_from(n).unwrap() + 2];
            conn.read_exact(&mut buf).await.unwrap();
            buf.truncate(buf.len() - 2);
            Some(String::from_utf8(buf).unwrap())
        }
        _ => panic!("unexpected Redis reply to {}: {line}", args[0]),
    }
}

#[path = "../crates/hookguard-redis/tests/support/private_redis.rs"]
mod private_redis;
use private_redis::PrivateRedis;

/// 64 concurrent copies of one delivery, split between two replicas: the handler runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_across_two_replicas_are_handled_exactly_once() {
    let prefix = unique_prefix("exactly-once");
    let calls = Arc::new(AtomicU32::new(0));
    let handler = {
        let calls = Arc::clone(&calls);
        move |_d: Delivery| {
            let calls = Arc::clone(&calls);
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await; // widen the race
                StatusCode::NO_CONTENT
            }
        }
    };
    let replicas = [
        replica(Dedupe::new(store(&redis_url(), &prefix).await), handler.clone()).await,
        replica(Dedupe::new(store(&redis_url(), &prefix).await), handler).await,
    ];

    let copy = Arc::new(delivery("evt_storm"));
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64 {
        let (addr, copy, barrier) = (replicas[i % 2].clone(), Arc::clone(&copy), Arc::clone(&barrier));
        tasks.spawn(async move {
            barrier.wait().await;
            (i, post_to(&addr, &copy).await)
        });
    }
    let answers = tasks.join_all().await;

    assert_eq!(calls.load(Ordering::SeqCst), 1, "the handler must run exactly once");
    let handled = answers.iter().filter(|(_, a)| a.status == 204).count();
    assert_eq!(handled, 1, "exactly one copy is handled");
    for (i, a) in &answers {
        assert!(
            a.status == 204 || is_in_flight(a) || is_duplicate(a),
            "copy {i}: {}",
            describe(a)
        );
    }
    let in_flight: Vec<usize> = answers
        .iter()
        .filter(|(_, a)| is_in_flight(a))
        .map(|(i, _)| *i)
        .collect();
    assert!(
        !in_flight.is_empty(),
        "the race was not exercised: no copy saw the claim in flight"
    );

    // The handled copy has answered, so the key is done: every later copy, on either replica,
    // is a 200 duplicate. First the copies that were told to retry, each to the other replica.
    for i in &in_flight {
        let a = post_to(&replicas[(i + 1) % 2], &copy).await;
        assert!(is_duplicate(&a), "retry of copy {i}: {}", describe(&a));
    }
    for i in 0..8 {
        let a = post_to(&replicas[i % 2], &copy).await;
        assert!(is_duplicate(&a), "late copy {i}: {}", describe(&a));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// The handler fails on one replica; the sender's retry lands on the other and is handled; the
/// delivery is then done everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_on_one_replica_is_retried_on_the_other() {
    let prefix = unique_prefix("failover");
    let calls = Arc::new(AtomicU32::new(0));
    let handler = {
        let calls = Arc::clone(&calls);
        move |_d: Delivery| {
            let calls = Arc::clone(&calls);
            async move {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::NO_CONTENT,
                }
            }
        }
    };
    let a = replica(Dedupe::new(store(&redis_url(), &prefix).await), handler.clone()).await;
    let b = replica(Dedupe::new(store(&redis_url(), &prefix).await), handler).await;
    let copy = delivery("evt_fail_then_retry");

    let first = post_to(&a, &copy).await;
    assert_eq!(first.status, 500, "{}", describe(&first));
    // The failed claim was released: the retry on the other replica is handled, not told to wait.
    let retry = post_to(&b, &copy).await;
    assert_eq!(retry.status, 204, "{}", describe(&retry));
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    for addr in [&a, &b] {
        let again = post_to(addr, &copy).await;
        assert!(is_duplicate(&again), "{}", describe(&again));
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "handled once successfully, never again"
    );
}

/// Redis goes away: fail closed (503 + Retry-After, handler not called). Redis comes back on
/// the same port: the same store reconnects and the delivery flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_fails_closed_and_recovers() {
    let mut redis = PrivateRedis::start();
    let port = redis.port;
    let url = redis.url();
    let calls = Arc::new(Mutex::new(Vec::<String>::new()));
    let handler = {
        let calls = Arc::clone(&calls);
        move |d: Delivery| {
            let calls = Arc::clone(&calls);
            async move {
                calls.lock().unwrap().push(d.event_id().unwrap_or_default().to_owned());
                StatusCode::NO_CONTENT
            }
        }
    };
    let count = |id: &str| calls.lock().unwrap().iter().filter(|c| *c == id).count();
    let store = RedisStore::builder(url.as_str())
        .prefix(unique_prefix("outage"))
        .response_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let addr = replica(Dedupe::new(store), handler).await;

    let before = delivery("evt_before_outage");
    assert_eq!(post_to(&addr, &before).await.status, 204);
    assert_eq!(count("evt_before_outage"), 1);

    redis.kill();
    let during = delivery("evt_during_outage");
    for attempt in 0..3 {
        let started = Instant::now();
        let a = post_to(&addr, &during).await;
        assert_eq!(
            (a.status, a.code().as_deref()),
            (503, Some("store_unavailable")),
            "attempt {attempt}: {}",
            describe(&a)
        );
        assert_eq!(a.header("retry-after"), Some("5"), "attempt {attempt}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "attempt {attempt}: fail-closed answer took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(count("evt_during_outage"), 0, "fail closed: the handler must not run");

    // Redis is back, empty (no persistence): the sender's retries get through once the store
    // has reconnected, and the delivery is handled exactly once.
    let _redis = PrivateRedis::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(15);
    let answer = loop {
        let a = post_to(&addr, &during).await;
        if a.status != 503 {
            break a;
        }
        assert_eq!(a.code().as_deref(), Some("store_unavailable"), "{}", describe(&a));
        assert!(
            Instant::now() < deadline,
            "no recovery after Redis restarted: {}",
            describe(&a)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(answer.status, 204, "{}", describe(&answer));
    assert_eq!(count("evt_during_outage"), 1);
    let again = post_to(&addr, &during).await;
    assert!(is_duplicate(&again), "{}", describe(&again));
    assert_eq!(count("evt_during_outage"), 1);
}

/// A handler that outlives its lease keeps its claim: the receiver renews it every third of the
/// lease while the handler runs, so every copy meanwhile, on either replica, is told to retry
/// (before, a copy after the lease claimed the delivery and ran beside the first). The first's
/// outcome decides: a success is remembered (copies are duplicates), a failure releases the
/// claim (the next copy is handled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_outliving_its_lease_keeps_its_claim_until_it_answers() {
    let url = redis_url();
    let prefix = unique_prefix("lease");
    // Per event id: how often the handler ran. The first call of each event hangs 3.5 s (3.5
    // times the lease), then answers 204 for `evt_late_success` and 500 for `evt_late_failure`.
    let calls = Arc::new(Mutex::new(Vec::<String>::new()));
    let keys = Arc::new(Mutex::new(Vec::<String>::new()));
    let handler = {
        let (calls, keys) = (Arc::clone(&calls), Arc::clone(&keys));
        move |d: Delivery| {
            let (calls, keys) = (Arc::clone(&calls), Arc::clone(&keys));
            async move {
                let id = d.event_id().unwrap_or_default().to_owned();
                keys.lock().unwrap().push(d.dedupe_key().unwrap_or_default().to_owned());
                let first = {
                    let mut calls = calls.lock().unwrap();
                    calls.push(id.clone());
                    calls.iter().filter(|c| **c == id).count() == 1
                };
                if !first {
                    return StatusCode::NO_CONTENT;
                }
                tokio::time::sleep(Duration::from_millis(3500)).await;
                if id.contains("failure") {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }
    };
    let count = |id: &str| calls.lock().unwrap().iter().filter(|c| *c == id).count();
    let lease = Duration::from_secs(1);
    let a = replica(Dedupe::new(store(&url, &prefix).await).lease(lease), handler.clone()).await;
    let b = replica(Dedupe::new(store(&url, &prefix).await).lease(lease), handler).await;

    let run = |id: &'static str, first_status: u16| {
        let (a, b) = (a.clone(), b.clone());
        async move {
            let copy = Arc::new(delivery(id));
            let slow = tokio::spawn({
                let (a, copy) = (a.clone(), Arc::clone(&copy));
                async move { post_to(&a, &copy).await }
            });
            // Once the first copy's handler runs (it holds the claim then): within the first
            // lease, and twice after it (renewed every third of it), told to retry; the first
            // answers 1.5 s after the last copy.
            let waiting = std::time::Instant::now();
            while count(id) == 0 {
                assert!(
                    waiting.elapsed() < Duration::from_secs(10),
                    "{id}: the first copy never ran"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let started = tokio::time::Instant::now();
            for (at, addr) in [(0, &b), (1200, &b), (2000, &a)] {
                tokio::time::sleep_until(started + Duration::from_millis(at)).await;
                let early = post_to(addr, &copy).await;
                assert!(
                    is_in_flight(&early),
                    "{id}: copy at {at} ms, the first still running: {}",
                    describe(&early)
                );
            }
            let first = slow.await.unwrap();
            assert_eq!(first.status, first_status, "{id}: the first copy: {}", describe(&first));
        }
    };
    tokio::join!(run("evt_late_success", 204), run("evt_late_failure", 500));

    // The success is remembered; the failure's retry is handled, once.
    let again = post_to(&b, &delivery("evt_late_failure")).await;
    assert_eq!(again.status, 204, "the failed event's retry: {}", describe(&again));
    for id in ["evt_late_success", "evt_late_failure"] {
        for addr in [&a, &b] {
            let copy = post_to(addr, &delivery(id)).await;
            assert!(
                is_duplicate(&copy),
                "{id}: copy after it was handled: {}",
                describe(&copy)
            );
        }
    }
    assert_eq!(count("evt_late_success"), 1, "never beside the first");
    assert_eq!(count("evt_late_failure"), 2, "the failed first, then its retry");
    // ...and Redis holds the done marker under each key.
    let keys = keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 3);
    for key in keys {
        let value = redis_get(&url, &format!("{prefix}{key}")).await;
        assert_eq!(value.as_deref(), Some("done"), "{prefix}{key}");
    }
}
