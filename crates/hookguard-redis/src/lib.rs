//! A Redis [`DedupeStore`] for hookguard: exactly-once handling across receiver replicas.
//!
//! Every replica connects to the same Redis; a delivery's dedupe key is claimed there, so of
//! all the copies a sender (or a retry storm) delivers to any replica, exactly one is handled.
//!
//! ```no_run
//! use hookguard_core::dedupe::Dedupe;
//! use hookguard_redis::RedisStore;
//! # async fn run() -> Result<(), hookguard_core::dedupe::StoreError> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
//! let dedupe = Dedupe::new(store); // fail-closed: a Redis outage answers 503
//! # let _ = dedupe; Ok(()) }
//! ```
//!
//! # How a claim is stored
//!
//! Each dedupe key is one Redis string under a prefix (default [`DEFAULT_PREFIX`]):
//!
//! * **claim** is a single round trip: one `EVALSHA` of a small Lua script that runs
//!   `SET key <token> NX PX <lease>` and, when the key exists, reads it to answer
//!   [`Claim::Done`] (value `done`) or [`Claim::InFlight`] (any other value: another holder's
//!   token). The token is a random `u128` stored as 32 hex digits.
//! * **complete** is a script that, if the key still holds the caller's token *or no longer
//!   exists* (the lease expired and no other copy claimed it since), stores `done` for the
//!   retention period. A handler that outlived its lease therefore never overwrites the claim
//!   of a copy being handled after it, and a late success is still remembered (the same
//!   semantics as the in-memory store).
//! * **release** is a script that, only if the key still holds the caller's token, deletes it.
//! * **renew** is a script that, only if the key still holds the caller's token, gives it a
//!   fresh lease: the receiver renews a claim every third of the lease while its handler runs,
//!   so a retry arriving meanwhile is answered "in flight" instead of running beside it.
//!
//! The scripts are loaded when the store connects and invoked by SHA1 (`EVALSHA`); after a
//! Redis restart has flushed the script cache they are loaded again automatically.
//!
//! Keys longer than [`MAX_KEY_LEN`] bytes (and keys that themselves begin with `sha256:`) are
//! stored as `sha256:<64 hex digits>` of the key, so Redis keys stay bounded in length
//! whatever a sender puts in its event ids.
//!
//! # Outages: fail-closed by default
//!
//! The store talks to Redis through a [`ConnectionManager`], which reconnects after the
//! connection drops. Every call is bounded by short timeouts (by default: connect 1 s,
//! response 500 ms, whole call [connect + response](RedisStoreBuilder::call_timeout)), so an
//! unreachable or hung Redis turns into a [`StoreError`] quickly rather than into piled-up
//! requests.
//!
//! What a [`StoreError`] means for a delivery is the [`Dedupe`](hookguard_core::dedupe::Dedupe)
//! policy's choice:
//!
//! * **Fail-closed (the default).** The receiver answers `503 Service Unavailable` with
//!   `Retry-After`; the sender retries later and the delivery is handled once Redis is back.
//!   Nothing runs twice and nothing is lost, as long as the sender's retry schedule outlasts
//!   the outage.
//! * **Fail-open** ([`Dedupe::fail_open(true)`](hookguard_core::dedupe::Dedupe::fail_open),
//!   an explicit opt-in). Deliveries are handled without a claim while Redis is down. The
//!   receiver stays available, but every copy that arrives during the outage (sender retries,
//!   duplicate deliveries to several replicas) is handled, so handlers **may run twice**.
//!   Choose it only when handlers are idempotent on their own.
//!
//! [`RedisStore::connect`] itself fails when Redis is unreachable at startup (so a
//! misconfigured URL is noticed at once). After that, calls fail while Redis is down and the
//! store reconnects by itself when it is back; it never needs to be rebuilt.
//!
//! A call that times out may still have been carried out by Redis. A claim whose answer never
//! arrived (timed out, failed, or dropped because the client went away) is therefore given
//! back in the background: the release script deletes the key only if it holds that claim's
//! token, and it runs after the claim on the same connection. Only when Redis cannot be
//! reached for the release either does such a claim block copies until its lease expires
//! (answered as in flight; the sender retries and the delivery is handled after the lease).
//!
//! # Operating Redis for dedupe
//!
//! Dedupe is only as durable as the Redis behind it: with `maxmemory` set, use the
//! `noeviction` policy (an evicted `done` marker lets a retry be handled again; with
//! `noeviction` a full Redis fails claims, which fail closed). A restart without persistence,
//! or a failover to a replica that had not received the latest writes, forgets recent
//! claims, so copies arriving afterwards may be handled again.
//!
//! Claims and done markers expire on the Redis server's wall clock (Redis stores an absolute
//! expiry time): a step of that clock forward (an NTP correction, a VM restored from a
//! snapshot) ends every lease shorter than the step at once — a copy arriving then runs beside
//! the handler still running — and shortens every retention by it. Keep the Redis host's clock
//! slewed, never stepped. Likewise keep the dedupe lease well above the store's
//! [`call_timeout`](RedisStoreBuilder::call_timeout) (default 1.5 s): a renewal that waits for a
//! stalled Redis for longer than two thirds of the lease arrives after the claim lapsed.
//!
//! # Errors and secrets
//!
//! [`StoreError`] messages are short descriptions such as `redis claim: timed out`; they
//! never include the URL, the password or any server-supplied text beyond an error code.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use hookguard_core::dedupe::{Claim, ClaimToken, DedupeStore, StoreError, StoreFuture};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ConnectionInfo, ErrorKind, FromRedisValue, RedisError, Script, ScriptInvocation};
use sha2::{Digest, Sha256};

/// The default prefix of every Redis key the store writes.
///
/// ```
/// assert_eq!(hookguard_redis::DEFAULT_PREFIX, "hookguard:dedupe:");
/// ```
pub const DEFAULT_PREFIX: &str = "hookguard:dedupe:";

/// Dedupe keys longer than this many bytes are stored as `sha256:<hex>` of the key.
///
/// ```
/// assert_eq!(hookguard_redis::MAX_KEY_LEN, 128);
/// ```
pub const MAX_KEY_LEN: usize = 128;

/// The default timeout of one attempt to connect to Redis.
///
/// ```
/// assert_eq!(hookguard_redis::DEFAULT_CONNECT_TIMEOUT, std::time::Duration::from_secs(1));
/// ```
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The default time Redis has to answer one command.
///
/// ```
/// assert_eq!(hookguard_redis::DEFAULT_RESPONSE_TIMEOUT, std::time::Duration::from_millis(500));
/// ```
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

/// The default number of retries of a failed (re)connection attempt.
///
/// Calls waiting for a reconnection fail once its retries are exhausted, and the next call
/// starts a new reconnection; so while Redis is down, calls fail after about one backoff
/// delay (≈ 100–200 ms with one retry), and the first call after Redis is back succeeds.
///
/// ```
/// assert_eq!(hookguard_redis::DEFAULT_RECONNECT_RETRIES, 1);
/// ```
pub const DEFAULT_RECONNECT_RETRIES: usize = 1;

/// Backoff between reconnection attempts: starts near this, doubles, jittered.
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(100);
/// Backoff between reconnection attempts never exceeds this, so a recovered Redis is found soon.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);

const HASHED: &str = "sha256:";
/// Longest TTL sent to Redis (≈ 8,900 years): keeps `PX` far from Redis's overflow check.
const MAX_TTL_MS: u64 = 1 << 48;

/// `KEYS[1]` key, `ARGV[1]` token, `ARGV[2]` lease in ms. 1 = claimed, 2 = done, 3 = in flight.
const CLAIM_LUA: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == 'done' then return 2 end
return 3
";

/// `KEYS[1]` key, `ARGV[1]` token, `ARGV[2]` retention in ms. 1 = completed, 0 = another
/// claim holds the key or it is done. A key that expired (lease over, nobody claimed it since)
/// records the outcome too: the handler did succeed.
const COMPLETE_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] or v == false then
  redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2])
  return 1
end
return 0
";

/// `KEYS[1]` key, `ARGV[1]` token. 1 = released, 0 = not held.
const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// Extends the claim to a fresh lease (ARGV[2] ms), only while the key holds the token.
const RENEW_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

struct Scripts {
    claim: Script,
    complete: Script,
    release: Script,
    renew: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    claim: Script::new(CLAIM_LUA),
    complete: Script::new(COMPLETE_LUA),
    release: Script::new(RELEASE_LUA),
    renew: Script::new(RENEW_LUA),
});

/// A [`DedupeStore`] in Redis, shared by every receiver replica that connects to it.
///
/// Cloning is cheap and shares the connection.
///
/// ```no_run
/// use std::time::Duration;
/// use hookguard_core::dedupe::{Claim, DedupeStore};
/// use hookguard_redis::RedisStore;
/// # async fn run() -> Result<(), hookguard_core::dedupe::StoreError> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
/// if let Claim::New(token) = store.claim("procore:evt_1", Duration::from_secs(30)).await? {
///     // ... handle the delivery, then:
///     store.complete(&token, Duration::from_secs(48 * 3600)).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Replaced when Redis answers that this connection reaches the wrong node (see
    /// [`RedisStore::reconnect`]).
    conn: std::sync::RwLock<ConnectionManager>,
    /// What a replacement connection is made from.
    client: Client,
    config: ConnectionManagerConfig,
    /// A replacement is being made; and when the last one was started (at most one a second).
    reconnecting: std::sync::atomic::AtomicBool,
    reconnected_at: std::sync::Mutex<Option<std::time::Instant>>,
    prefix: String,
    call_timeout: Duration,
    /// Background transitions alive now, by [`Transition`] (at most [`MAX_BACKGROUND`] each:
    /// under an outage every failed claim starts a give-back, and they must leave room for the
    /// completions of handled deliveries).
    background: [std::sync::atomic::AtomicUsize; 2],
}

/// The most background give-backs alive at once, and apart the most background completions. Each lives up to five tries
/// (about eleven seconds) while Redis does not answer; under an outage every failed claim
/// starts one, so without a bound they grew with the request rate. Beyond it the claim is left
/// to expire with its lease.
///
/// ```
/// assert_eq!(hookguard_redis::MAX_BACKGROUND, 1024);
/// ```
pub const MAX_BACKGROUND: usize = 1024;

/// A transition left to the background: each kind has its own [`MAX_BACKGROUND`] places.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Transition {
    Release,
    Completion,
}

impl Transition {
    fn name(self) -> &'static str {
        match self {
            Transition::Release => "release",
            Transition::Completion => "completion",
        }
    }
}

/// One background transition counted in [`Inner::background`] while it lives.
struct Background(Arc<Inner>, Transition);

impl Background {
    /// A place for one more, or `None` when [`MAX_BACKGROUND`] of its kind are alive.
    fn enter(inner: &Arc<Inner>, kind: Transition) -> Option<Self> {
        use std::sync::atomic::Ordering;
        inner.background[kind as usize]
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_BACKGROUND).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(Arc::clone(inner), kind))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.0.background[self.1 as usize].fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No connection details: the URL may carry a password.
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("call_timeout", &self.inner.call_timeout)
            .finish_non_exhaustive()
    }
}

/// Something a [`RedisStore`] can connect to: a URL (`&str`, `String`), a
/// [`redis::ConnectionInfo`] or a ready [`redis::Client`].
///
/// ```
/// use hookguard_redis::IntoRedisClient;
/// assert!("redis://127.0.0.1:6379".into_redis_client().is_ok());
/// assert!("not a url".into_redis_client().is_err());
/// ```
pub trait IntoRedisClient {
    /// Opens the client (no I/O happens here).
    ///
    /// ```
    /// use hookguard_redis::IntoRedisClient;
    /// // A URL with a password: the error never repeats it.
    /// let err = "redis://:hunter2@[not-a-host".into_redis_client().unwrap_err();
    /// assert!(!err.to_string().contains("hunter2"));
    /// ```
    ///
    /// # Errors
    /// The URL or connection info is invalid; the message never repeats the URL.
    fn into_redis_client(self) -> Result<Client, StoreError>;
}

fn open(info: impl redis::IntoConnectionInfo) -> Result<Client, StoreError> {
    Client::open(info).map_err(|e| StoreError::msg(format!("redis connect: {}", describe(&e))))
}

impl IntoRedisClient for &str {
    fn into_redis_client(self) -> Result<Client, StoreError> {
        open(self)
    }
}

impl IntoRedisClient for String {
    fn into_redis_client(self) -> Result<Client, StoreError> {
        open(self)
    }
}

impl IntoRedisClient for &String {
    fn into_redis_client(self) -> Result<Client, StoreError> {
        open(self.as_str())
    }
}

impl IntoRedisClient for ConnectionInfo {
    fn into_redis_client(self) -> Result<Client, StoreError> {
        open(self)
    }
}

impl IntoRedisClient for Client {
    fn into_redis_client(self) -> Result<Client, StoreError> {
        Ok(self)
    }
}

/// Configures and connects a [`RedisStore`]; see [`RedisStore::builder`].
///
/// ```no_run
/// use std::time::Duration;
/// use hookguard_redis::RedisStore;
/// # async fn run() -> Result<(), hookguard_core::dedupe::StoreError> {
/// let store = RedisStore::builder("redis://redis.internal:6379")
///     .prefix("billing:webhooks:")
///     .connect_timeout(Duration::from_millis(500))
///     .response_timeout(Duration::from_millis(250))
///     .connect()
///     .await?;
/// # let _ = store; Ok(()) }
/// ```
pub struct RedisStoreBuilder {
    client: Result<Client, StoreError>,
    prefix: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    call_timeout: Option<Duration>,
    reconnect_retries: usize,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("call_timeout", &self.effective_call_timeout())
            .field("reconnect_retries", &self.reconnect_retries)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    /// The prefix of every Redis key the store writes (default [`DEFAULT_PREFIX`]). Give
    /// receivers that must not share dedupe state different prefixes.
    ///
    /// ```
    /// let b = hookguard_redis::RedisStore::builder("redis://127.0.0.1").prefix("staging:dedupe:");
    /// assert!(format!("{b:?}").contains("staging:dedupe:"));
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one attempt to connect may take (default 1 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = hookguard_redis::RedisStore::builder("redis://127.0.0.1").connect_timeout(Duration::from_millis(300));
    /// assert!(format!("{b:?}").contains("300ms"));
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long Redis has to answer one command (default 500 ms).
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = hookguard_redis::RedisStore::builder("redis://127.0.0.1").response_timeout(Duration::from_millis(200));
    /// assert!(format!("{b:?}").contains("200ms"));
    /// ```
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// The deadline of a whole store call (claim, complete, release), including waiting for a
    /// reconnection in progress. Default: connect timeout + response timeout (1.5 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = hookguard_redis::RedisStore::builder("redis://127.0.0.1").call_timeout(Duration::from_millis(800));
    /// assert!(format!("{b:?}").contains("800ms"));
    /// ```
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }

    /// How many times a failed (re)connection attempt is retried, with jittered exponential
    /// backoff from 100 ms up to 1 s, before the calls waiting for it fail; the next call then
    /// starts a new reconnection (default [`DEFAULT_RECONNECT_RETRIES`]). More retries ride
    /// out longer blips, but make every call during an outage wait longer before it fails
    /// (three retries: about 1 s), still bounded by the [call timeout](Self::call_timeout).
    ///
    /// ```
    /// let b = hookguard_redis::RedisStore::builder("redis://127.0.0.1").reconnect_retries(5);
    /// assert!(format!("{b:?}").contains("reconnect_retries: 5"));
    /// ```
    pub fn reconnect_retries(mut self, retries: usize) -> Self {
        self.reconnect_retries = retries;
        self
    }

    fn effective_call_timeout(&self) -> Duration {
        self.call_timeout
            .unwrap_or(self.connect_timeout.saturating_add(self.response_timeout))
    }

    /// Connects and loads the scripts.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), hookguard_core::dedupe::StoreError> {
    /// let store = hookguard_redis::RedisStore::builder("redis://127.0.0.1:6379").connect().await?;
    /// # let _ = store; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The URL is invalid, or Redis is unreachable, refuses the credentials, or does not
    /// answer in time. Later outages do not fail the store: its calls fail until Redis is
    /// reachable again.
    pub async fn connect(self) -> Result<RedisStore, StoreError> {
        let call_timeout = self.effective_call_timeout();
        let client = self.client?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout))
            .set_number_of_retries(self.reconnect_retries)
            .set_min_delay(RECONNECT_MIN_DELAY)
            .set_max_delay(RECONNECT_MAX_DELAY);
        // The first connection retries like a reconnection; bound the whole of it.
        let attempts = u32::try_from(self.reconnect_retries)
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let deadline = call_timeout
            .saturating_add(RECONNECT_MAX_DELAY)
            .saturating_mul(attempts);
        let made = ConnectionManager::new_with_config(client.clone(), config.clone());
        let mut conn = bounded("connect", deadline, made).await?;
        // A replica (every claim would fail `READONLY`) or a cluster node (`MOVED` for most
        // keys) is a misconfigured URL: refused now, not answered 503 on every delivery.
        // A user without `@admin`/`@dangerous` (a least-privilege ACL) or a proxy may not run
        // these checks: skipped then (a replica's `READONLY` still makes the store reconnect).
        let (role, mut info) = (redis::cmd("ROLE"), redis::cmd("INFO"));
        match checked("ROLE", call_timeout, role.query_async::<redis::Value>(&mut conn)).await? {
            None => {}
            Some(redis::Value::Array(role)) => match role.first() {
                Some(redis::Value::BulkString(r)) if r == b"master" => {}
                _ => return Err(failed("connect", "the server is a read-only replica, not a primary")),
            },
            Some(_) => return Err(failed("connect", "unexpected answer to ROLE")),
        }
        let info = info.arg("cluster").query_async::<String>(&mut conn);
        if checked("INFO", call_timeout, info)
            .await?
            .is_some_and(|info| info.contains("cluster_enabled:1"))
        {
            return Err(failed(
                "connect",
                "the server runs in cluster mode, which this store does not support",
            ));
        }
        // Load the scripts now, so that every claim is one EVALSHA from the first one on.
        for script in [&SCRIPTS.claim, &SCRIPTS.complete, &SCRIPTS.release, &SCRIPTS.renew] {
            bounded("connect", call_timeout, script.load_async(&mut conn)).await?;
        }
        tracing::debug!(prefix = %self.prefix, "redis dedupe store connected");
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conn: std::sync::RwLock::new(conn),
                client,
                config,
                reconnecting: std::sync::atomic::AtomicBool::new(false),
                reconnected_at: std::sync::Mutex::new(None),
                background: Default::default(),
                prefix: self.prefix,
                call_timeout,
            }),
        })
    }
}

impl RedisStore {
    /// Configures a store connecting to `target`: a URL such as `redis://127.0.0.1:6379`,
    /// `rediss://…` (if redis is built with TLS), a [`redis::ConnectionInfo`] or a
    /// [`redis::Client`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = hookguard_redis::RedisStore::builder("redis://127.0.0.1:6379")
    ///     .response_timeout(Duration::from_millis(250));
    /// # let _ = builder;
    /// ```
    pub fn builder(target: impl IntoRedisClient) -> RedisStoreBuilder {
        RedisStoreBuilder {
            client: target.into_redis_client(),
            prefix: DEFAULT_PREFIX.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            call_timeout: None,
            reconnect_retries: DEFAULT_RECONNECT_RETRIES,
        }
    }

    /// Connects with the default settings.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), hookguard_core::dedupe::StoreError> {
    /// let store = hookguard_redis::RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// # let _ = store; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`RedisStoreBuilder::connect`]: fails when Redis is unreachable now.
    pub async fn connect(target: impl IntoRedisClient) -> Result<Self, StoreError> {
        Self::builder(target).connect().await
    }

    /// The key prefix.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), hookguard_core::dedupe::StoreError> {
    /// let store = hookguard_redis::RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// assert_eq!(store.prefix(), hookguard_redis::DEFAULT_PREFIX);
    /// # Ok(()) }
    /// ```
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The Redis key under which `key` is stored: the prefix, then the key itself, or
    /// `sha256:<hex>` of it when it is longer than [`MAX_KEY_LEN`] bytes or starts with
    /// `sha256:`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), hookguard_core::dedupe::StoreError> {
    /// let store = hookguard_redis::RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// assert_eq!(store.redis_key("procore:evt_1"), "hookguard:dedupe:procore:evt_1");
    /// assert!(store.redis_key(&"x".repeat(500)).starts_with("hookguard:dedupe:sha256:"));
    /// # Ok(()) }
    /// ```
    pub fn redis_key(&self, key: &str) -> String {
        storage_key(&self.inner.prefix, key)
    }

    async fn run<T: FromRedisValue>(
        &self,
        op: &'static str,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.inner.conn.read().unwrap_or_else(|p| p.into_inner()).clone();
        match tokio::time::timeout(self.inner.call_timeout, invocation.invoke_async(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if wrong_node(&e) {
                    self.reconnect();
                }
                Err(failed(op, &describe(&e)))
            }
            Err(_) => Err(failed(op, "timed out")),
        }
    }

    /// Replaces the connection, in the background and at most once a second: Redis answered
    /// that it reaches the wrong node. After a failover that demotes the primary without
    /// closing its clients (managed Redis does), the old connection reaches a replica and every
    /// claim fails `READONLY`; the connection manager does not reconnect for that, so every
    /// delivery was answered 503 until the connection happened to drop. A new connection
    /// reaches whatever the URL names now (the new primary). Only this call fails meanwhile.
    fn reconnect(&self) {
        use std::sync::atomic::Ordering;
        {
            let mut at = self.inner.reconnected_at.lock().unwrap_or_else(|p| p.into_inner());
            if at.is_some_and(|t| t.elapsed() < Duration::from_secs(1))
                || self.inner.reconnecting.swap(true, Ordering::AcqRel)
            {
                return;
            }
            *at = Some(std::time::Instant::now());
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.reconnecting.store(false, Ordering::Release);
            return;
        };
        /// Ends the reconnection however its task ends: also dropped unrun (its runtime shut
        /// down), or the store would never reconnect again.
        struct Reconnecting(Arc<Inner>);
        impl Drop for Reconnecting {
            fn drop(&mut self) {
                self.0.reconnecting.store(false, Ordering::Release);
            }
        }
        let turn = Reconnecting(Arc::clone(&self.inner));
        runtime.spawn(async move {
            let inner = &turn.0;
            let made = ConnectionManager::new_with_config(inner.client.clone(), inner.config.clone());
            match tokio::time::timeout(inner.call_timeout.saturating_mul(4), made).await {
                Ok(Ok(conn)) => {
                    *inner.conn.write().unwrap_or_else(|p| p.into_inner()) = conn;
                    tracing::warn!("redis dedupe store: Redis answered from the wrong node (a failover?); reconnected");
                }
                Ok(Err(e)) => tracing::warn!(reason = %describe(&e), "redis dedupe store: reconnecting failed"),
                Err(_) => tracing::warn!("redis dedupe store: reconnecting timed out"),
            }
        });
    }
}

impl DedupeStore for RedisStore {
    fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> StoreFuture<'a, Claim> {
        Box::pin(async move {
            let token: u128 = rand::random();
            let mut invocation = SCRIPTS.claim.prepare_invoke();
            invocation
                .key(self.redis_key(key))
                .arg(token_hex(token))
                .arg(ttl_ms(lease));
            // Until Redis has answered, the script may have taken the key with this token (or
            // may still take it): a claim dropped meanwhile (the client went away), timed out or
            // failed gives it back, or every retry would be answered "in flight" for the lease.
            let mut unanswered = ClaimGuard {
                store: self,
                token: Some(ClaimToken::new(key, token)),
            };
            let reply = self.run::<i64>("claim", &invocation).await?;
            let token = unanswered.token.take();
            match (reply, token) {
                (1, Some(token)) => Ok(Claim::New(token)),
                (2, _) => Ok(Claim::Done),
                (3, _) => Ok(Claim::InFlight),
                (_, token) => {
                    unanswered.token = token;
                    Err(failed("claim", "unexpected reply"))
                }
            }
        })
    }

    fn complete<'a>(&'a self, token: &'a ClaimToken, retention: Duration) -> StoreFuture<'a, bool> {
        Box::pin(self.for_holder("complete", &SCRIPTS.complete, token, Some(retention)))
    }

    fn renews(&self) -> bool {
        true
    }

    fn renew<'a>(&'a self, token: &'a ClaimToken, lease: Duration) -> StoreFuture<'a, bool> {
        Box::pin(self.for_holder("renew", &SCRIPTS.renew, token, Some(lease)))
    }

    fn release<'a>(&'a self, token: &'a ClaimToken) -> StoreFuture<'a, bool> {
        Box::pin(self.for_holder("release", &SCRIPTS.release, token, None))
    }

    /// Spawns the release on the current Tokio runtime; outside one, or with
    /// [`MAX_BACKGROUND`] alive already, does nothing and the claim expires with its lease.
    fn abandon(&self, token: ClaimToken) {
        if let Some((handle, place)) = self.background(Transition::Release) {
            let store = self.clone();
            handle.spawn(async move {
                let _place = place;
                store.persist(Transition::Release, || store.release(&token)).await
            });
        }
    }

    /// Spawns the completion on the current Tokio runtime (the script is idempotent for a
    /// token: a completion that did reach Redis is simply recorded again); outside one, or
    /// with [`MAX_BACKGROUND`] alive already, the claim expires with its lease.
    fn abandon_complete(&self, token: ClaimToken, retention: Duration) {
        if let Some((handle, place)) = self.background(Transition::Completion) {
            let store = self.clone();
            handle.spawn(async move {
                let _place = place;
                store
                    .persist(Transition::Completion, || store.complete(&token, retention))
                    .await
            });
        }
    }
}

impl RedisStore {
    /// The runtime and a place for a background transition, if both are there.
    fn background(&self, kind: Transition) -> Option<(tokio::runtime::Handle, Background)> {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(
                "no tokio runtime: the abandoned {} is left to the claim's lease",
                kind.name()
            );
            return None;
        };
        let Some(place) = Background::enter(&self.inner, kind) else {
            if kind == Transition::Completion {
                // A handled delivery not marked done: a retry after the lease runs it again.
                tracing::warn!(
                    "{MAX_BACKGROUND} background completions are waiting for Redis: this one is left to the claim's lease (a retry after it runs the handler again)"
                );
            } else {
                tracing::debug!(
                    "{MAX_BACKGROUND} background give-backs are waiting for Redis: this one is left to the claim's lease"
                );
            }
            return None;
        };
        Some((handle, place))
    }

    /// Runs one of the scripts that act only for the token's holder (complete, renew,
    /// release), with the time it sets when it sets one: whether it acted.
    async fn for_holder(
        &self,
        what: &'static str,
        script: &'static Script,
        token: &ClaimToken,
        time: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.redis_key(token.key()))
            .arg(token_hex(token.token()));
        if let Some(d) = time {
            invocation.arg(ttl_ms(d));
        }
        Ok(self.run::<i64>(what, &invocation).await? == 1)
    }

    /// Runs a transition left to the background until Redis answers it: a few tries over about
    /// eight seconds (a reconnect, a failover), after which the lease decides. The scripts act
    /// only for the token's holder, so a try that did reach Redis is harmless to repeat.
    async fn persist<'a>(&'a self, kind: Transition, op: impl Fn() -> StoreFuture<'a, bool>) {
        let mut wait = Duration::from_millis(250);
        for tries_left in (0..5).rev() {
            match op().await {
                Ok(_) => return,
                Err(e) if tries_left == 0 => {
                    tracing::warn!(error = %e, "the background {} of a claim failed; the claim expires with its lease", kind.name())
                }
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }
}

/// Gives back a claim whose answer never arrived (see [`RedisStore`]'s `claim`).
struct ClaimGuard<'a> {
    store: &'a RedisStore,
    token: Option<ClaimToken>,
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            // The release script deletes the key only if it holds this token.
            self.store.abandon(token);
        }
    }
}

fn storage_key(prefix: &str, key: &str) -> String {
    if key.len() > MAX_KEY_LEN || key.starts_with(HASHED) {
        format!("{prefix}{HASHED}{}", hex::encode(Sha256::digest(key.as_bytes())))
    } else {
        format!("{prefix}{key}")
    }
}

fn token_hex(token: u128) -> String {
    format!("{token:032x}")
}

/// Milliseconds for `PX`: rounded up (a 1.5 ms lease lasts 2 ms), at least 1, capped.
fn ttl_ms(d: Duration) -> u64 {
    let ms = d.as_millis() + u128::from(d.subsec_nanos() % 1_000_000 != 0);
    u64::try_from(ms).unwrap_or(u64::MAX).clamp(1, MAX_TTL_MS)
}

/// `call`'s answer within `limit`, or the store's error for `op`: a timeout, or Redis's error
/// (described without URL or credentials).
async fn bounded<T>(
    op: &'static str,
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, RedisError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(failed(op, &describe(&e))),
        Err(_) => Err(failed(op, "timed out")),
    }
}

/// A check at connect that the server may not allow: `Ok(None)` (with a warning) when this
/// user lacks the permission (`NOPERM`) or the server (a proxy) does not know the command.
async fn checked<T>(
    command: &'static str,
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, RedisError>>,
) -> Result<Option<T>, StoreError> {
    let allowed = async {
        match call.await {
            Err(e) if not_allowed(&e) => {
                tracing::warn!(
                    command,
                    "redis dedupe store: the server does not let this user run the check at connect (a replica or a cluster node is then found by its first refusal)"
                );
                Ok(None)
            }
            r => r.map(Some),
        }
    };
    bounded("connect", limit, allowed).await
}

/// The user may not run the command (`NOPERM`), or the server does not know it.
fn not_allowed(e: &RedisError) -> bool {
    use redis::ServerErrorKind as K;
    match e.kind() {
        ErrorKind::Server(K::NoPerm) => true,
        ErrorKind::Server(K::ResponseError) => e.detail().is_some_and(|d| d.starts_with("unknown command")),
        _ => false,
    }
}

fn failed(op: &'static str, reason: &str) -> StoreError {
    tracing::warn!(op, reason, "redis dedupe store call failed");
    StoreError::msg(format!("redis {op}: {reason}"))
}

/// Redis answered from a node that cannot take this store's writes: a replica (`READONLY`,
/// after a failover), a cluster node for other keys (`MOVED`, `ASK`), a cluster or primary
/// that is down for it (`CLUSTERDOWN`, `MASTERDOWN`). Before Redis 7 a replica's refusal of
/// a write inside a script comes wrapped in the script's error (`ERR Error running script …
/// -READONLY You can't write against a read only replica.`).
fn wrong_node(e: &RedisError) -> bool {
    use redis::ServerErrorKind as K;
    match e.kind() {
        ErrorKind::Server(K::ReadOnly | K::Moved | K::Ask | K::ClusterDown | K::MasterDown) => true,
        ErrorKind::Server(K::ResponseError) => e
            .detail()
            .is_some_and(|d| d.contains("READONLY You can't write against a read only")),
        _ => false,
    }
}

/// A short description of a Redis error, free of URLs, credentials and server-supplied text.
fn describe(e: &RedisError) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    if e.is_connection_refusal() {
        return "connection refused".into();
    }
    if e.is_io_error() || e.is_connection_dropped() {
        return "connection failed".into();
    }
    match e.kind() {
        ErrorKind::AuthenticationFailed => "authentication failed".into(),
        ErrorKind::InvalidClientConfig => "invalid url or configuration".into(),
        // A reply the client names (`NOPERM`, `READONLY`) or not (`OOM`, `MISCONF`: an
        // "extension").
        ErrorKind::Server(_) | ErrorKind::Extension => {
            // The code is the reply's first word (`ERR`, `NOPERM`, `READONLY`, `OOM`...).
            let code: String = e
                .code()
                .unwrap_or("ERR")
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(24)
                .collect();
            let why = match code.as_str() {
                "OOM" => " (Redis is full: maxmemory reached under a noeviction policy)",
                "MISCONF" => " (Redis refuses writes: it could not save to disk)",
                _ => "",
            };
            format!("server error {code}{why}")
        }
        _ => format!("{} error", e.category()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_the_wire(line: &str) -> RedisError {
        redis::parse_redis_value(format!("-{line}\r\n").as_bytes())
            .and_then(redis::Value::extract_error)
            .unwrap_err()
    }

    /// Redis 6 wraps a replica's refusal inside a script in the script's error; Redis 7
    /// answers it as it is. Both mean the connection reaches a replica.
    #[test]
    fn a_replicas_refusal_is_found_also_inside_a_script_error() {
        for line in [
            "READONLY You can't write against a read only replica.",
            "ERR Error running script (call to f_0123): @user_script:1: @user_script: 1: -READONLY You can't write against a read only replica.",
            "MOVED 3999 127.0.0.1:6381",
        ] {
            assert!(wrong_node(&from_the_wire(line)), "{line}");
        }
        for line in [
            "ERR unknown command 'FOO'",
            "NOSCRIPT No matching script",
            "OOM command not allowed",
        ] {
            assert!(!wrong_node(&from_the_wire(line)), "{line}");
        }
    }

    /// Replies the client has no kind for are named by their code, never "extension error".
    #[test]
    fn every_server_reply_is_named_by_its_code() {
        for (line, said) in [
            (
                "OOM command not allowed when used memory > 'maxmemory'.",
                "server error OOM (Redis is full",
            ),
            (
                "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.",
                "server error MISCONF (Redis refuses writes",
            ),
            ("NOPERM this user has no permissions", "server error NOPERM"),
            ("WEIRD something new", "server error WEIRD"),
        ] {
            let d = describe(&from_the_wire(line));
            assert!(d.starts_with(said), "{line}: {d}");
            assert!(
                !d.contains("persist") && !d.contains("used memory"),
                "no server text: {d}"
            );
        }
    }

    #[test]
    fn a_check_the_user_may_not_run_is_told_apart() {
        assert!(not_allowed(&from_the_wire(
            "NOPERM User hg has no permissions to run the 'role' command"
        )));
        assert!(not_allowed(&from_the_wire(
            "ERR unknown command 'ROLE', with args beginning with: "
        )));
        assert!(!not_allowed(&from_the_wire("ERR syntax error")));
        assert!(!not_allowed(&from_the_wire(
            "LOADING Redis is loading the dataset in memory"
        )));
    }

    /// A reconnection whose task never ran (its runtime shut down first) does not leave the
    /// store unable to reconnect again.
    #[test]
    fn a_reconnection_dropped_unrun_ends() {
        let url = std::env::var("HOOKGUARD_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let main = tokio::runtime::Runtime::new().unwrap();
        let store = main
            .block_on(RedisStore::builder(url.as_str()).connect())
            .unwrap_or_else(|e| panic!("cannot reach Redis at {url} (run scripts/ensure-redis.sh): {e}"));
        let other = tokio::runtime::Builder::new_current_thread().build().unwrap();
        {
            let _in = other.enter();
            store.reconnect();
        }
        assert!(store.inner.reconnecting.load(std::sync::atomic::Ordering::Acquire));
        drop(other);
        assert!(!store.inner.reconnecting.load(std::sync::atomic::Ordering::Acquire));
        drop(main);
    }

    #[test]
    fn keys_are_prefixed_and_bounded() {
        assert_eq!(storage_key("p:", "hcss:1"), "p:hcss:1");
        let exact = "k".repeat(MAX_KEY_LEN);
        assert_eq!(storage_key("p:", &exact), format!("p:{exact}"));
        let long = storage_key("p:", &"k".repeat(MAX_KEY_LEN + 1));
        assert!(long.starts_with("p:sha256:"));
        assert_eq!(long.len(), "p:sha256:".len() + 64);
        assert_ne!(long, storage_key("p:", &"k".repeat(MAX_KEY_LEN + 2)));
        // A short key that looks hashed is hashed too, so it cannot alias a long key's digest.
        let lookalike = format!("sha256:{}", &long["p:sha256:".len()..]);
        assert_ne!(storage_key("p:", &lookalike), long);
        assert!(storage_key("p:", &lookalike).starts_with("p:sha256:"));
    }

    #[test]
    fn tokens_are_32_hex_digits_and_never_done() {
        assert_eq!(token_hex(0), "0".repeat(32));
        assert_eq!(token_hex(u128::MAX), "f".repeat(32));
        // The done marker is `done`: never 32 characters long.
        assert_ne!(token_hex(0xd0e), "done");
    }

    #[test]
    fn ttls_round_up_and_stay_in_range() {
        assert_eq!(ttl_ms(Duration::ZERO), 1);
        assert_eq!(ttl_ms(Duration::from_micros(1)), 1);
        assert_eq!(ttl_ms(Duration::from_micros(1500)), 2);
        assert_eq!(ttl_ms(Duration::from_secs(30)), 30_000);
        assert_eq!(ttl_ms(Duration::MAX), MAX_TTL_MS);
    }

    #[test]
    fn bad_urls_fail_without_echoing_them() {
        let e = "redis://:hunter2@".into_redis_client().unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        let e = "http://user:hunter2@example.com"
            .into_redis_client()
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
