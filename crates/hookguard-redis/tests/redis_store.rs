//! Tests against a real Redis: `HOOKGUARD_REDIS_URL` (default `redis://127.0.0.1:6379`; run
//! `scripts/ensure-redis.sh` to get one), plus private `redis-server` processes the fault and
//! round-trip tests start themselves (the binary must be on `PATH`).

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookguard_core::dedupe::{Claim, ClaimToken, DedupeStore};
use hookguard_redis::{RedisStore, MAX_KEY_LEN};
use redis::aio::MultiplexedConnection;

const LEASE: Duration = Duration::from_secs(30);
const RETENTION: Duration = Duration::from_secs(120);

fn redis_url() -> String {
    std::env::var("HOOKGUARD_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A prefix no other test (or test run) shares.
fn unique_prefix(test: &str) -> String {
    format!("hookguard-test:{test}:{:016x}:", rand::random::<u64>())
}

async fn store_at(url: &str, prefix: &str) -> RedisStore {
    RedisStore::builder(url)
        .prefix(prefix)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot reach Redis at {url} (run scripts/ensure-redis.sh): {e}"))
}

async fn admin(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn new(c: Claim) -> ClaimToken {
    match c {
        Claim::New(t) => t,
        other => panic!("expected Claim::New, got {other:?}"),
    }
}

#[path = "support/private_redis.rs"]
mod private_redis;
use private_redis::PrivateRedis as Server;

/// `calls` per command from `INFO commandstats`.
async fn command_calls(conn: &mut MultiplexedConnection) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await.unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> HashMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(k, v)| *v > 0 && k != "info")
        .collect()
}

#[tokio::test]
async fn two_phase_protocol() {
    let store = store_at(&redis_url(), &unique_prefix("two-phase")).await;
    let t = new(store.claim("bwp:evt_1", LEASE).await.unwrap());
    assert_eq!(t.key(), "bwp:evt_1");
    assert_eq!(store.claim("bwp:evt_1", LEASE).await.unwrap(), Claim::InFlight);

    // Released: the retry is handled.
    assert!(store.release(&t).await.unwrap());
    assert!(!store.release(&t).await.unwrap(), "released twice");
    let t2 = new(store.claim("bwp:evt_1", LEASE).await.unwrap());
    assert!(
        !store.complete(&t, RETENTION).await.unwrap(),
        "a released token cannot complete"
    );

    // Completed: copies are answered as done, and the done key cannot be released.
    assert!(store.complete(&t2, RETENTION).await.unwrap());
    assert_eq!(store.claim("bwp:evt_1", LEASE).await.unwrap(), Claim::Done);
    assert!(!store.release(&t2).await.unwrap());
    assert_eq!(store.claim("bwp:evt_1", LEASE).await.unwrap(), Claim::Done);

    // Retention is the TTL of the done marker.
    let mut conn = admin(&redis_url()).await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(store.redis_key("bwp:evt_1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(pttl > 100_000 && pttl <= 120_000, "{pttl}");
    let value: String = redis::cmd("GET")
        .arg(store.redis_key("bwp:evt_1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(value, "done");

    // Other keys are independent.
    new(store.claim("bwp:evt_2", LEASE).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_across_replicas_under_concurrency() {
    let prefix = unique_prefix("concurrency");
    let replicas = [
        Arc::new(store_at(&redis_url(), &prefix).await),
        Arc::new(store_at(&redis_url(), &prefix).await),
    ];
    for round in 0..16 {
        let key = format!("hcss:evt_{round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(64));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..64 {
            let store = Arc::clone(&replicas[i % 2]);
            let (key, barrier) = (key.clone(), Arc::clone(&barrier));
            tasks.spawn(async move {
                barrier.wait().await;
                store.claim(&key, LEASE).await.unwrap()
            });
        }
        let claims = tasks.join_all().await;
        let winners = claims.iter().filter(|c| matches!(c, Claim::New(_))).count();
        assert_eq!(winners, 1, "round {round}: {claims:?}");
        assert!(claims.iter().all(|c| matches!(c, Claim::New(_) | Claim::InFlight)));
    }
}

/// The same semantics as `MemoryStore` (its unit test `a_late_completion_with_no_newer_claim_is_recorded`):
/// a handler that succeeded after its lease expired, with no newer claim, is remembered.
#[tokio::test]
async fn a_late_completion_with_no_newer_claim_is_recorded() {
    let store = store_at(&redis_url(), &unique_prefix("late")).await;
    let first = new(store.claim("bwp:evt_late", Duration::from_millis(200)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !store.release(&first).await.unwrap(),
        "an expired claim is no longer held"
    );
    assert!(
        store.complete(&first, RETENTION).await.unwrap(),
        "nobody else claimed it: the success counts"
    );
    assert_eq!(store.claim("bwp:evt_late", LEASE).await.unwrap(), Claim::Done);
}

#[tokio::test]
async fn an_expired_lease_lets_a_retry_in_and_the_late_completion_is_refused() {
    let store = store_at(&redis_url(), &unique_prefix("lease")).await;
    // A lease of a second: the copy right after must find it live even on a loaded machine.
    let first = new(store.claim("procore:evt_9", Duration::from_secs(1)).await.unwrap());
    assert_eq!(store.claim("procore:evt_9", LEASE).await.unwrap(), Claim::InFlight);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let second = new(store.claim("procore:evt_9", LEASE).await.unwrap());
    assert_ne!(first.token(), second.token());

    // The first handler finishes late: refused, and the second claim is untouched.
    assert!(!store.complete(&first, RETENTION).await.unwrap());
    assert!(!store.release(&first).await.unwrap());
    assert_eq!(store.claim("procore:evt_9", LEASE).await.unwrap(), Claim::InFlight);
    let mut conn = admin(&redis_url()).await;
    let value: String = redis::cmd("GET")
        .arg(store.redis_key("procore:evt_9"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(value, format!("{:032x}", second.token()));

    assert!(store.complete(&second, RETENTION).await.unwrap());
    assert_eq!(store.claim("procore:evt_9", LEASE).await.unwrap(), Claim::Done);
}

#[tokio::test]
async fn a_claim_is_one_evalsha_round_trip() {
    let server = Server::start();
    let store = store_at(&server.url(), &unique_prefix("round-trip")).await;
    let mut conn = admin(&server.url()).await;

    // New, in flight, then done: each claim must be exactly one command from the client.
    let before = command_calls(&mut conn).await;
    let t = new(store.claim("k", LEASE).await.unwrap());
    assert_eq!(store.claim("k", LEASE).await.unwrap(), Claim::InFlight);
    let mid = command_calls(&mut conn).await;
    // Inside the scripts: SET NX (both claims), GET (the losing claim). Nothing else.
    let expected: HashMap<String, u64> = [("evalsha", 2), ("set", 2), ("get", 1)]
        .map(|(k, v)| (k.into(), v))
        .into();
    assert_eq!(delta(&before, &mid), expected);

    assert!(store.complete(&t, RETENTION).await.unwrap());
    let mid = command_calls(&mut conn).await;
    assert_eq!(store.claim("k", LEASE).await.unwrap(), Claim::Done);
    let after = command_calls(&mut conn).await;
    let expected: HashMap<String, u64> = [("evalsha", 1), ("set", 1), ("get", 1)]
        .map(|(k, v)| (k.into(), v))
        .into();
    assert_eq!(delta(&mid, &after), expected);
}

/// Under an outage every failed claim gives its key back in the background (five tries over
/// seconds): the give-backs alive at once are bounded, whatever the rate of failed claims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_give_backs_are_bounded_under_an_outage() {
    let mut server = Server::start();
    let store = store_at(&server.url(), &unique_prefix("bounded")).await;
    new(store.claim("warm", LEASE).await.unwrap());
    server.kill();
    let n = hookguard_redis::MAX_BACKGROUND * 2 + 500;
    let claims: Vec<_> = (0..n)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.claim(&format!("down{i}"), LEASE).await.is_err() })
        })
        .collect();
    let mut failed = 0;
    for c in claims {
        failed += usize::from(c.await.unwrap());
    }
    assert_eq!(failed, n, "Redis is down: every claim fails");
    // The claims' own tasks have ended; what is alive is the give-backs still trying.
    let alive = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    assert!(
        alive <= hookguard_redis::MAX_BACKGROUND + 16,
        "{alive} tasks alive after {n} failed claims"
    );
}

/// The give-backs of an outage leave room for the completion of a handled delivery: it is
/// still recorded once Redis is back, so the sender's retry is a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_is_kept_when_give_backs_fill_their_places() {
    let mut server = Server::start();
    let port = server.port;
    let store = store_at(&server.url(), &unique_prefix("room")).await;
    let handled = new(store.claim("handled", LEASE).await.unwrap());
    server.kill();
    let claims: Vec<_> = (0..hookguard_redis::MAX_BACKGROUND + 200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.claim(&format!("down{i}"), LEASE).await.is_err() })
        })
        .collect();
    for c in claims {
        assert!(c.await.unwrap(), "Redis is down: every claim fails");
    }
    // The handler succeeded; its completion could not reach Redis and goes on in the background.
    store.abandon_complete(handled, RETENTION);
    let server = Server::start_on(port);
    // Its tries span about four seconds; a claim meanwhile would hold the key against it, so
    // the key is read directly until the completion lands (or a deadline well past its tries).
    let mut redis = admin(&server.url()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value: Option<String> = redis::cmd("GET")
            .arg(store.redis_key("handled"))
            .query_async(&mut redis)
            .await
            .unwrap_or(None);
        if value.as_deref() == Some("done") || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        store.claim("handled", LEASE).await.unwrap(),
        Claim::Done,
        "the completion was dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_fail_fast_and_the_store_recovers() {
    let mut server = Server::start();
    let port = server.port;
    let store = store_at(&server.url(), &unique_prefix("fault")).await;
    new(store.claim("a", LEASE).await.unwrap());

    // Redis dies: calls fail quickly, they do not hang.
    server.kill();
    for i in 0..3 {
        let started = Instant::now();
        let err = store.claim(&format!("down{i}"), LEASE).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
        assert!(err.to_string().len() < 80, "{err}");
    }

    // Redis is back (with an empty script cache): the store reconnects by itself.
    let server = Server::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    let claim = loop {
        match store.claim("after", LEASE).await {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "no recovery: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let t = new(claim);
    assert!(store.complete(&t, RETENTION).await.unwrap());
    assert_eq!(store.claim("after", LEASE).await.unwrap(), Claim::Done);

    // Redis hangs (SIGSTOP): calls time out instead of waiting.
    server.signal("-STOP");
    let started = Instant::now();
    assert!(store.claim("hung", LEASE).await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    server.signal("-CONT");
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.claim("resumed", LEASE).await.is_err() {
        assert!(Instant::now() < deadline, "no recovery after SIGCONT");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn connect_fails_when_redis_is_unreachable_without_leaking_the_password() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("redis://:hunter2-secret@127.0.0.1:{port}");
    let started = Instant::now();
    let err = RedisStore::builder(url.as_str())
        .reconnect_retries(1)
        .connect()
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let msg = format!("{err} {err:?}");
    assert!(!msg.contains("hunter2") && !msg.contains(&port.to_string()), "{msg}");
    assert!(format!("{:?}", RedisStore::builder(url.as_str()))
        .find("hunter2")
        .is_none());
}

#[tokio::test]
async fn long_keys_are_hashed_and_still_deduplicate() {
    let prefix = unique_prefix("long-keys");
    let store = store_at(&redis_url(), &prefix).await;
    let long = format!("buildworkpro:{}", "e".repeat(500));
    let other = format!("{long}2"); // same first 128 bytes, different key
    let redis_key = store.redis_key(&long);
    assert!(redis_key.starts_with(&format!("{prefix}sha256:")), "{redis_key}");
    assert_eq!(redis_key.len(), prefix.len() + "sha256:".len() + 64);
    assert_eq!(
        store.redis_key(&"k".repeat(MAX_KEY_LEN)),
        format!("{prefix}{}", "k".repeat(MAX_KEY_LEN))
    );

    let t = new(store.claim(&long, LEASE).await.unwrap());
    assert_eq!(t.key(), long, "the token keeps the caller's key");
    assert_eq!(store.claim(&long, LEASE).await.unwrap(), Claim::InFlight);
    new(store.claim(&other, LEASE).await.unwrap());
    assert!(store.complete(&t, RETENTION).await.unwrap());
    assert_eq!(store.claim(&long, LEASE).await.unwrap(), Claim::Done);

    let mut conn = admin(&redis_url()).await;
    let exists: bool = redis::cmd("EXISTS")
        .arg(&redis_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(exists);
    let raw: bool = redis::cmd("EXISTS")
        .arg(format!("{prefix}{long}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!raw, "the long key itself is never written");
}

#[tokio::test]
async fn abandon_releases_in_the_background() {
    let store = store_at(&redis_url(), &unique_prefix("abandon")).await;
    let t = new(store.claim("k", LEASE).await.unwrap());
    store.abandon(t);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match store.claim("k", LEASE).await.unwrap() {
            Claim::New(_) => break,
            Claim::InFlight if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(10)).await,
            other => panic!("not released: {other:?}"),
        }
    }
}

/// Keeps the Redis server busy for `ms` (a script runs alone), so calls sent meanwhile are
/// carried out only after it.
fn hold_redis(url: String, ms: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut conn = admin(&url).await;
        let busy = "local t = redis.call('TIME') local s = t[1] * 1000000 + t[2] \
                    repeat local n = redis.call('TIME') until n[1] * 1000000 + n[2] - s > tonumber(ARGV[1]) return 1";
        // The admin connection may stop waiting first (its own response timeout): the script
        // runs on regardless.
        let _: redis::RedisResult<i64> = redis::cmd("EVAL")
            .arg(busy)
            .arg(0)
            .arg(ms * 1000)
            .query_async(&mut conn)
            .await;
    })
}

/// Returns once Redis runs [`hold_redis`]'s script: a `PING` on `probe` goes unanswered for
/// 50 ms. `probe` is connected before the script starts (connecting waits for it to end).
async fn until_busy(probe: &mut MultiplexedConnection) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ping = redis::cmd("PING");
        if tokio::time::timeout(Duration::from_millis(50), ping.query_async::<String>(probe))
            .await
            .is_err()
        {
            return;
        }
        assert!(Instant::now() < deadline, "Redis never started the script");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A claim whose answer never arrives — timed out, or dropped because the client went away —
/// is carried out by Redis later; the store gives it back, so a retry of the delivery is not
/// answered "in flight" for the whole lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_timed_out_or_dropped_before_its_answer_is_given_back() {
    let server = Server::start();
    let prefix = unique_prefix("unanswered");
    let store = RedisStore::builder(server.url())
        .prefix(&prefix)
        .call_timeout(Duration::from_millis(150))
        .connect()
        .await
        .unwrap();
    let mut probe = admin(&server.url()).await;
    let busy = hold_redis(server.url(), 600);
    until_busy(&mut probe).await;
    // Sent while Redis is busy: the first times out, the second is dropped by its caller.
    assert!(store.claim("timed-out", LEASE).await.is_err());
    assert!(
        tokio::time::timeout(Duration::from_millis(50), store.claim("dropped", LEASE))
            .await
            .is_err()
    );
    busy.await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // the script's end
    let fresh = store_at(&server.url(), &prefix).await;
    for key in ["timed-out", "dropped"] {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match fresh.claim(key, LEASE).await.unwrap() {
                Claim::New(_) => break,
                Claim::InFlight if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
                other => panic!("{key}: still held after the answer was lost: {other:?}"),
            }
        }
    }
}

#[test]
fn abandon_outside_a_runtime_does_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(store_at(&redis_url(), &unique_prefix("abandon-no-rt")));
    let t = new(rt.block_on(store.claim("k", LEASE)).unwrap());
    store.abandon(t); // no runtime on this thread: the lease will expire instead
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(rt.block_on(store.claim("k", LEASE)).unwrap(), Claim::InFlight);
}

#[tokio::test]
async fn usable_as_a_shared_dyn_store() {
    let store: Arc<dyn DedupeStore> = Arc::new(store_at(&redis_url(), &unique_prefix("dyn")).await);
    let dedupe = hookguard_core::dedupe::Dedupe::from_arc(Arc::clone(&store));
    assert_eq!(dedupe.lease_duration(), hookguard_core::dedupe::DEFAULT_LEASE);
    new(store.claim("k", LEASE).await.unwrap());
}

/// A TCP path to Redis that can be cut: while cut, open connections are closed and new ones
/// refused at once, as when a network path or a proxy in front of Redis fails. New connections
/// can be sent to another server (`switch_to`, as a failover moves a managed Redis's address)
/// while open ones stay with the old.
struct CutProxy {
    port: u16,
    cut: tokio::sync::watch::Sender<bool>,
    target: Arc<std::sync::atomic::AtomicU16>,
    /// Connections being relayed now.
    open: Arc<std::sync::atomic::AtomicUsize>,
}

impl CutProxy {
    async fn start(target_port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, watching) = tokio::sync::watch::channel(false);
        let target = Arc::new(std::sync::atomic::AtomicU16::new(target_port));
        let targets = Arc::clone(&target);
        let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let relaying = Arc::clone(&open);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *watching.borrow() {
                    continue; // dropped: refused
                }
                let mut watching = watching.clone();
                let target_port = targets.load(std::sync::atomic::Ordering::SeqCst);
                let open = Arc::clone(&relaying);
                open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = watching.wait_for(|cut| *cut) => {}
                        }
                    }
                    drop((inbound, watching));
                    open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
        CutProxy {
            port,
            cut,
            target,
            open,
        }
    }

    /// Cuts every connection and waits (up to 5 s) until none is relayed any more: a request
    /// sent after this never reaches Redis (a cut only asked for could still pass one).
    async fn cut(&self) {
        self.set_cut(true);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.open.load(std::sync::atomic::Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn switch_to(&self, port: u16) {
        self.target.store(port, std::sync::atomic::Ordering::SeqCst);
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

/// A failover that demotes the primary without closing its clients (managed Redis does; here
/// `REPLICAOF` on it, while the address sends new connections to the new primary): the
/// store's connection then reaches a replica and every claim fails `READONLY`. The store
/// reconnects through the same URL, to the new primary: claims succeed again within seconds
/// (they failed until the connection happened to drop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_the_store_reconnects_to_the_new_primary() {
    let (old, new_primary) = (Server::start(), Server::start());
    let proxy = CutProxy::start(old.port).await;
    let store = store_at(&proxy.url(), &unique_prefix("failover")).await;
    new(store.claim("before", LEASE).await.unwrap());
    proxy.switch_to(new_primary.port);
    replica_of(&old, &new_primary).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in 0.. {
        match store.claim(&format!("after_{n}"), LEASE).await {
            Ok(c) => {
                new(c);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "claims still fail after the failover: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A URL that names a replica is refused at connect (every claim would fail `READONLY`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refuses_a_replica() {
    let (primary, replica) = (Server::start(), Server::start());
    replica_of(&replica, &primary).await;
    let e = RedisStore::builder(replica.url()).connect().await.unwrap_err();
    assert!(e.to_string().contains("replica"), "{e}");
}

/// A least-privilege user (no `@dangerous`, no `@admin`: `ROLE` and `INFO` refused with
/// `NOPERM`) still connects: the checks it may not run are skipped, and claims work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_admin_commands_connects() {
    let server = Server::start();
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "hg", "on", ">pw", "~*", "+@all", "-@dangerous", "-@admin"][..])
        .query_async(&mut admin(&server.url()).await)
        .await
        .unwrap();
    let url = format!("redis://hg:pw@127.0.0.1:{}", server.port);
    let role: Result<redis::Value, _> = redis::cmd("ROLE").query_async(&mut admin(&url).await).await;
    assert!(role.is_err(), "the user may run ROLE: {role:?}");
    let store = store_at(&url, &unique_prefix("acl")).await;
    new(store.claim("limited", LEASE).await.unwrap());
}

/// Makes `server` a replica of `primary` (`REPLICAOF`; its clients stay connected).
async fn replica_of(server: &Server, primary: &Server) {
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(primary.port)
        .query_async(&mut admin(&server.url()).await)
        .await
        .unwrap();
}

/// The handler succeeded, its completion failed (Redis out of reach for a moment): the claim
/// was left held, so every copy was answered "in flight" (429, a failure to the sender) until
/// the lease ran out, and then the delivery was handled again. The completion is now finished
/// in the background once Redis answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_that_failed_is_finished_once_redis_answers_again() {
    use hookguard_core::dedupe::{Admission, Dedupe};
    let server = Server::start();
    let proxy = CutProxy::start(server.port).await;
    let prefix = unique_prefix("failed-complete");
    let store = RedisStore::builder(proxy.url())
        .prefix(&prefix)
        .call_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let dedupe = Dedupe::new(store).lease(LEASE);
    let d = hookguard_core::testing::deliver_bytes(
        hookguard_core::schemes::BuildWorkPro::new(),
        "whsec_k",
        r#"{"id":"evt_failed_complete","type":"bid.accepted"}"#,
    )
    .unwrap();
    let Ok(Admission::New(guard)) = dedupe.admit(&d).await else {
        panic!("not claimed")
    };
    proxy.cut().await;
    assert!(guard.complete().await.is_err(), "Redis is out of reach");
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.set_cut(false);
    let direct = store_at(&server.url(), &prefix).await;
    let key = d.dedupe_key().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match direct.claim(key, LEASE).await.unwrap() {
            Claim::Done => break,
            Claim::InFlight if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("the completion was not finished: {other:?}"),
        }
    }
}

/// Redis full (`maxmemory` reached under `noeviction`, or a failed background save with
/// `stop-writes-on-bgsave-error`): a claim fails, fast and with a short error naming it (the
/// receiver answers `503`, never a `2xx` for a delivery it could not remember); a completion
/// that failed for it is finished in the background once memory frees, and claims work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_fails_claims_and_recovers_once_memory_frees() {
    use hookguard_core::dedupe::{Admission, Dedupe};
    let server = Server::start();
    let mut admin = admin(&server.url()).await;
    let prefix = unique_prefix("full");
    let store = RedisStore::builder(server.url())
        .prefix(&prefix)
        .call_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let other = store_at(&server.url(), &prefix).await;
    let dedupe = Dedupe::new(store).lease(LEASE);
    let d = hookguard_core::testing::deliver_bytes(
        hookguard_core::schemes::BuildWorkPro::new(),
        "whsec_k",
        r#"{"id":"evt_full","type":"bid.accepted"}"#,
    )
    .unwrap();
    let Ok(Admission::New(guard)) = dedupe.admit(&d).await else {
        panic!("not claimed")
    };
    let set = |name: &'static str, value: &'static str| redis::cmd("CONFIG").arg("SET").arg(name).arg(value).clone();
    let () = set("maxmemory-policy", "noeviction")
        .query_async(&mut admin)
        .await
        .unwrap();
    let () = set("maxmemory", "1").query_async(&mut admin).await.unwrap();

    let started = Instant::now();
    let err = other.claim("evt_another", LEASE).await.unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.contains("OOM") && err.len() < 200, "{err}");
    assert!(guard.complete().await.is_err(), "Redis is full");
    // Copies meanwhile are not new: the claim is still held.
    assert!(matches!(
        other.claim(d.dedupe_key().unwrap(), LEASE).await,
        Ok(Claim::InFlight) | Err(_)
    ));

    let () = set("maxmemory", "0").query_async(&mut admin).await.unwrap();
    let key = d.dedupe_key().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match other.claim(key, LEASE).await.unwrap() {
            Claim::Done => break,
            Claim::InFlight if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            c => panic!("the completion was not finished: {c:?}"),
        }
    }
    new(other.claim("evt_another", LEASE).await.unwrap());
}

/// A renewed claim outlives its first lease; only its holder renews it, and a claim that
/// expired or was released is not brought back.
#[tokio::test]
async fn a_renewed_claim_outlives_its_first_lease() {
    let store = store_at(&redis_url(), &unique_prefix("renew")).await;
    assert!(store.renews());
    // Renewed every second for 4 s (past the 3 s lease): 2 s of slack for a late wake.
    let lease = Duration::from_secs(3);
    let held = new(store.claim("k", lease).await.unwrap());
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(store.renew(&held, lease).await.unwrap());
        assert_eq!(store.claim("k", lease).await.unwrap(), Claim::InFlight);
    }
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let next = new(store.claim("k", lease).await.unwrap());
    assert!(!store.renew(&held, lease).await.unwrap(), "another copy holds it now");
    assert!(store.release(&next).await.unwrap());
    assert!(
        !store.renew(&next, lease).await.unwrap(),
        "a released claim is not brought back"
    );
    assert!(matches!(store.claim("k", lease).await.unwrap(), Claim::New(_)));
}
