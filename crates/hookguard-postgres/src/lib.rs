//! # hookguard-postgres
//!
//! The durable inbox on PostgreSQL, for receivers running as several replicas behind a load
//! balancer: every replica accepts into one table, every replica's worker drains it.
//!
//! Built on **sqlx 0.8** (the current 0.8 line, with `runtime-tokio` and TLS by rustls with the
//! web's root certificates, `tls-rustls-ring-webpki`: `?sslmode=require` or
//! `?sslmode=verify-full&sslrootcert=…` in the URL; the default `prefer` takes TLS where the
//! server offers it). sqlx is the pool
//! most Rust services already hold, so you pass your own [`PgPool`] (and, for transactional
//! handlers, work inside the `sqlx::Transaction` hookguard gives you).
//!
//! * **Accept** is one round trip: `INSERT … ON CONFLICT DO NOTHING RETURNING id`, durable
//!   when PostgreSQL commits it (with `synchronous_commit = on`: [`PgInbox::connect`] sets it
//!   on its connections, and [`open`](PgInboxBuilder::open) warns when a pool you pass has it
//!   `off`). A copy returns no row; a second statement then puts the item it copies back to
//!   pending if that item is dead ([`Accepted::Stored`] with its id), and otherwise writes
//!   nothing: a third checks that the copy is still there (it may have been purged meanwhile:
//!   then the delivery is inserted again), and the copy is reported as
//!   [`Accepted::Duplicate`] with id 0. Each statement commits on its own. Dedupe semantics per sender are the SQLite inbox's:
//!   retained keys until purged; HCSS in-flight-only keys while pending (until the item's
//!   first claim).
//! * **Workers on every replica** claim due rows with `FOR UPDATE SKIP LOCKED` and a lease; a
//!   replica that dies mid-handler leaves a lease that expires, and another replica takes the
//!   item. Workers wake at once on an accept in their own process, on `LISTEN` for the others,
//!   with a bounded fallback poll. Due times and leases are kept on the **database's clock**
//!   (`statement_timestamp()`), never a replica's: the `now_ms` a caller passes to
//!   [`claim`](InboxStore::claim) is not used, and the times passed to `fail` and `defer` count
//!   as delays from the caller's own clock — so a replica whose clock runs ahead cannot take an
//!   item still leased to another, nor one behind retry early. (Received and finished times,
//!   shown by the CLI and used by the purge, are those of the replica that accepted or
//!   finished the item; the purge's bound is the purging replica's: keep replicas' clocks in
//!   step, as retention counts on them.) A replica that accepted something sends one `NOTIFY` per
//!   50 ms at most, outside the accept (PostgreSQL serialises the commits of notifying
//!   transactions, so notifying from every insert would cap accepts).
//!   Completions are group-committed: every completion queued while one statement runs goes
//!   into the next (up to 512), so a busy worker pays one commit per batch, not per item (a
//!   batch that waits — a lock, a slow disk — makes the ones queued behind it wait too: keep a
//!   `statement_timeout` on your pool, as [`PgInbox::connect`] does).
//! * **Transactional handlers** ([`transactional`]): the handler gets the transaction in which
//!   hookguard marks the item done, so the application's own writes commit atomically with the
//!   mark — their effects happen exactly once per event within the retention. Side effects
//!   outside this database (an e-mail, an HTTP call) are still at least once: pass the event's
//!   dedupe key downstream as an idempotency key.
//! * **Fail closed.** Pool acquire and statements are bounded (defaults 1 s and 2 s, well below
//!   every sender's timeout — Procore 5 s); an unreachable or failing database makes accepts
//!   fail, which the receiver answers `503` + `Retry-After`. Nothing is reported accepted that
//!   was not committed.
//!
//! ```no_run
//! use hookguard_postgres::PgInbox;
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let inbox = PgInbox::connect("postgres://hookguard@db.internal/app").await?; // migrates
//! # let _ = inbox; Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hookguard_core::inbox::{
    wake_every_worker, Accepted, ClaimRef, ClaimedItem, HandlerError, HandlerFuture, InboxError, InboxFuture,
    InboxHandler, InboxRecord, InboxState, InboxStats, InboxStore, ListFilter, NewItem, DEFAULT_MAX_PENDING,
};
use hookguard_core::DedupeScope;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use tokio::sync::{oneshot, Notify};

pub use sqlx::PgPool;

/// Default bound for waiting on a pooled connection.
///
/// ```
/// use std::time::Duration;
/// use hookguard_postgres::DEFAULT_ACQUIRE_TIMEOUT;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert_eq!(DEFAULT_ACQUIRE_TIMEOUT, Duration::from_secs(1));
/// // The same bound on a pool of your own for `PgInboxBuilder::open` (a lazy pool connects when first used).
/// let pool = sqlx::postgres::PgPoolOptions::new()
///     .acquire_timeout(DEFAULT_ACQUIRE_TIMEOUT)
///     .connect_lazy("postgres://hooks@db.internal/app")
///     .unwrap();
/// assert_eq!(pool.options().get_acquire_timeout(), Duration::from_secs(1));
/// # }
/// ```
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
/// Rows one purge statement deletes at most; the purge repeats it until fewer are left.
const PURGE_BATCH: u64 = 5_000;
/// Dead ids read at a time by `replay_dead`.
const REPLAY_BATCH: u64 = 5_000;

/// Default `statement_timeout` of the connections [`PgInbox::connect`] opens.
///
/// ```
/// use std::time::Duration;
/// use hookguard_postgres::{DEFAULT_OPERATION_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT};
/// assert_eq!(DEFAULT_STATEMENT_TIMEOUT, Duration::from_secs(2));
/// // The server ends a slow statement before this side gives up on the whole operation.
/// assert!(DEFAULT_STATEMENT_TIMEOUT < DEFAULT_OPERATION_TIMEOUT);
/// // The same setting on the connections of a pool of your own:
/// let opts: sqlx::postgres::PgConnectOptions = "postgres://hooks@db.internal/app".parse().unwrap();
/// let opts = opts.options([("statement_timeout", DEFAULT_STATEMENT_TIMEOUT.as_millis().to_string())]);
/// assert_eq!(opts.get_options(), Some("-c statement_timeout=2000"));
/// ```
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default bound, on this side, of one inbox operation (a connection's acquire plus its
/// statements): [`PgInboxBuilder::operation_timeout`].
///
/// ```
/// use std::time::Duration;
/// use hookguard_postgres::{PgInbox, DEFAULT_OPERATION_TIMEOUT};
/// assert_eq!(DEFAULT_OPERATION_TIMEOUT, Duration::from_secs(4));
/// // Below the senders' timeouts (Procore waits 5 s): a silent database answers `503` in time.
/// assert!(DEFAULT_OPERATION_TIMEOUT < Duration::from_secs(5));
/// let builder = PgInbox::builder().operation_timeout(DEFAULT_OPERATION_TIMEOUT / 2);
/// # drop(builder);
/// ```
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(4);
/// The bound of `stats` and of each purge batch, which may scan for longer (`stats` allows
/// itself a minute of statement time).
const LONG_OPERATION_TIMEOUT: Duration = Duration::from_secs(90);
/// The bound of a whole purge or dead replay asked from another runtime (each of their batches
/// is bounded by [`LONG_OPERATION_TIMEOUT`]; see [`PgInbox::at_home`]).
const WHOLE_LONG_OPERATION: Duration = Duration::from_secs(3600);
/// The default of [`PgInboxBuilder::migration_timeout`].
const DEFAULT_MIGRATION_TIMEOUT: Duration = Duration::from_secs(60);
/// The schema version this crate creates.
///
/// ```
/// use hookguard_postgres::SCHEMA_VERSION;
/// assert_eq!(SCHEMA_VERSION, 1);
/// // Recorded in the inbox's schema: an open refuses an inbox whose version is newer.
/// let check = format!("SELECT max(version) <= {SCHEMA_VERSION} FROM public.hookguard_schema");
/// assert_eq!(check, "SELECT max(version) <= 1 FROM public.hookguard_schema");
/// ```
pub const SCHEMA_VERSION: i32 = 1;

const NOT_A_URL: &str = "not a valid postgres:// URL";

/// Whether `name` can be the inbox's schema ([`PgInboxBuilder::schema`]): letters, digits and
/// `_`, at most 63 bytes (PostgreSQL would cut a longer name, and the inbox would look for
/// a schema of another name). What an open checks first; a command line checks it before it
/// starts (a usage error, not a run-time failure).
///
/// ```
/// assert!(hookguard_postgres::check_schema("hooks_1").is_ok());
/// assert!(hookguard_postgres::check_schema("a-b").is_err());
/// ```
///
/// # Errors
/// Why the name cannot be a schema's.
pub fn check_schema(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err("schema names are letters, digits and _");
    }
    if name.len() > 63 {
        return Err("schema names are at most 63 characters");
    }
    Ok(())
}

/// Whether `url` is a connection URL [`PgInboxBuilder::connect`] can use, read without
/// connecting. The error never contains the URL (it may carry a password).
///
/// ```
/// assert!(hookguard_postgres::check_url("postgres://hooks@127.0.0.1:5432/app").is_ok());
/// assert!(hookguard_postgres::check_url("postgres://not a url").is_err());
/// ```
///
/// # Errors
/// The URL cannot be read.
pub fn check_url(url: &str) -> Result<(), &'static str> {
    parse_url(url).map(drop)
}

/// The connection parameter of `url` whose value the driver cannot read (`sslmode=bogus`,
/// `port=x`), by its name — never its value —, for a message that says which one to fix; `None`
/// when the URL reads, or when what fails is not one parameter.
///
/// ```
/// use hookguard_postgres::bad_url_parameter;
/// assert_eq!(bad_url_parameter("postgres://u:pw@h/db?sslmode=bogus&port=5432"), Some("sslmode"));
/// assert_eq!(bad_url_parameter("postgres://u:pw@h/db?sslmode=require"), None);
/// assert_eq!(bad_url_parameter("postgres://not a url?port=x"), None);
/// ```
pub fn bad_url_parameter(url: &str) -> Option<&'static str> {
    let (url, _) = unknown_parameters_removed(url);
    if parse_url(&url).is_ok() {
        return None;
    }
    let (base, query) = url.split_once('?')?;
    if parse_url(base).is_err() {
        return None;
    }
    query.split('&').find_map(|pair| {
        let key = key_of(pair);
        let name = KNOWN_URL_PARAMETERS.iter().copied().find(|k| *k == key)?;
        parse_url(&format!("{base}?{pair}")).is_err().then_some(name)
    })
}

/// The query parameters sqlx reads from a connection URL (`sqlx-postgres`'s `options/parse.rs`).
const KNOWN_URL_PARAMETERS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// `url` without the query parameters sqlx does not read, and those parameters' names. sqlx
/// ignores them too, but logs each one with its value — a mistyped password parameter
/// (`passwd=…`) reached the log (an operator's tryout); here only the name is said.
fn unknown_parameters_removed(url: &str) -> (std::borrow::Cow<'_, str>, Vec<String>) {
    let Some((base, rest)) = url.split_once('?') else {
        return (url.into(), Vec::new());
    };
    let (query, fragment) = match rest.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (rest, None),
    };
    let mut dropped = Vec::new();
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = key_of(pair);
            // `options[NAME]=VALUE` sets one server option (`options[search_path]=hooks`).
            let option = key.starts_with("options[") && key.ends_with(']');
            let known = pair.is_empty() || option || KNOWN_URL_PARAMETERS.contains(&key.as_str());
            if !known {
                dropped.push(key);
            }
            known
        })
        .collect();
    if dropped.is_empty() {
        return (url.into(), dropped);
    }
    let mut out = base.to_owned();
    if kept.iter().any(|p| !p.is_empty()) {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    (out.into(), dropped)
}

/// The key of a query's `key=value` pair, decoded as the URL parser decodes it.
fn key_of(pair: &str) -> String {
    percent_decoded(pair.split_once('=').map_or(pair, |(k, _)| k))
}

/// A query key as the URL parser reads it (`%XX` and `+`); anything else kept as it is.
fn percent_decoded(key: &str) -> String {
    let hex = |c: Option<&u8>| c.and_then(|c| (*c as char).to_digit(16));
    let b = key.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], hex(b.get(i + 1)), hex(b.get(i + 2))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', ..) => {
                out.push(b' ');
                i += 1;
            }
            (c, ..) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a connection URL without letting sqlx log what it does not know (see
/// [`unknown_parameters_removed`]); the names of the parameters dropped.
fn parse_url(url: &str) -> Result<(PgConnectOptions, Vec<String>), &'static str> {
    let (url, dropped) = unknown_parameters_removed(url);
    let opts = url.parse::<PgConnectOptions>().map_err(|_| NOT_A_URL)?;
    Ok((opts, dropped))
}

fn storage(e: impl std::error::Error + Send + Sync + 'static) -> InboxError {
    InboxError::storage(e)
}

/// Configures a [`PgInbox`].
///
/// ```
/// use std::time::Duration;
/// use hookguard_postgres::{PgInbox, PgInboxBuilder};
/// let builder: PgInboxBuilder = PgInbox::builder()
///     .schema("hooks")
///     .max_pending(50_000)
///     .operation_timeout(Duration::from_secs(3));
/// // Nothing connects until `open` (your pool) or `connect` (a URL).
/// assert!(format!("{builder:?}").contains(r#"schema: "hooks", max_pending: 50000"#));
/// ```
#[derive(Debug, Clone)]
pub struct PgInboxBuilder {
    schema: String,
    max_pending: u64,
    existing_only: bool,
    operation_timeout: Duration,
    migration_timeout: Duration,
    unclaimed_warning: Duration,
    /// Take the cap recorded in the database (else the default) instead of `max_pending`, and
    /// record nothing (a tool's open).
    recorded_cap: bool,
}

impl Default for PgInboxBuilder {
    fn default() -> Self {
        Self {
            schema: "public".into(),
            max_pending: DEFAULT_MAX_PENDING,
            existing_only: false,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            migration_timeout: DEFAULT_MIGRATION_TIMEOUT,
            unclaimed_warning: hookguard_core::inbox::DEFAULT_UNCLAIMED_WARNING,
            recorded_cap: false,
        }
    }
}

impl PgInboxBuilder {
    /// The schema holding the table (default `public`); created if missing. Letters, digits
    /// and `_` only.
    ///
    /// ```
    /// use hookguard_postgres::PgInbox;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = sqlx::postgres::PgPoolOptions::new().connect_lazy("postgres://hooks@db.internal/app").unwrap();
    /// // `.schema("hooks")` opens `hooks.hookguard_inbox`; a name that cannot be a schema's is
    /// // refused before anything connects.
    /// let err = PgInbox::builder().schema("hooks-v2").open(pool).await.unwrap_err();
    /// assert!(err.to_string().contains("schema names are letters, digits and _"));
    /// # }
    /// ```
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The most pending and running items of the whole inbox, every sender's (default
    /// 100,000). Each replica checks a count of its own, refreshed from the database every
    /// second and moved by its own accepts and completions in between, so the cap can be
    /// passed by what the other replicas accept within that second (with R replicas, up to
    /// R − 1 replicas' second of deliveries) and by the accepts in flight when it is reached.
    ///
    /// Recorded in the database (the default too, as the SQLite inbox records it) by an open
    /// that is not [`existing_only`](Self::existing_only) — the last replica started wins —,
    /// so a tool opened with [`keep_recorded_cap`](Self::keep_recorded_cap) (the `hookguard
    /// inbox` commands) keeps to it: a replay of every dead item then stops at half of it.
    ///
    /// ```
    /// let b = hookguard_postgres::PgInbox::builder().max_pending(10_000);
    /// assert!(format!("{b:?}").contains("max_pending: 10000"));
    /// let default = hookguard_postgres::PgInbox::builder();
    /// assert!(format!("{default:?}").contains("max_pending: 100000"));
    /// ```
    pub fn max_pending(mut self, n: u64) -> Self {
        self.max_pending = n;
        self.recorded_cap = false;
        self
    }

    /// Takes the cap the serving replicas recorded (see [`max_pending`](Self::max_pending))
    /// instead of one of its own, and records none: for a tool that looks into an inbox while
    /// replicas serve it. The default cap where none is recorded (an inbox made by an earlier
    /// build, or a role that may not read the record).
    ///
    /// ```
    /// let tool = hookguard_postgres::PgInbox::builder().existing_only().keep_recorded_cap();
    /// assert!(format!("{tool:?}").contains("recorded_cap: true"));
    /// ```
    pub fn keep_recorded_cap(mut self) -> Self {
        self.recorded_cap = true;
        self
    }

    /// The longest one operation may take on this side (default 4 s), whatever the server
    /// does: `statement_timeout` is the server's and cannot end a wait for a database that
    /// went silent (a partition, a frozen host, a failover dropping packets). Past it the
    /// operation fails — an accept answers `503` + `Retry-After` while the sender still
    /// waits; the worker tries again — instead of waiting as long as TCP does. Keep it below
    /// the senders' timeouts (Procore waits 5 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = hookguard_postgres::PgInbox::builder().operation_timeout(Duration::from_secs(3));
    /// # drop(b);
    /// ```
    pub fn operation_timeout(mut self, d: Duration) -> Self {
        self.operation_timeout = d;
        self
    }

    /// How long a due item may wait unclaimed before this replica, while it accepts
    /// deliveries, warns that no worker takes the inbox's items (default 5 minutes,
    /// [`hookguard_core::inbox::DEFAULT_UNCLAIMED_WARNING`]): replicas that only accept, with
    /// no [`Worker`](hookguard_core::inbox) anywhere, answer every delivery `200` and handle
    /// none. Checked in the background after accepts, at most once a minute (sooner when this
    /// is shorter), by one read of the due index on the database's clock. `Duration::MAX`
    /// turns it off.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = hookguard_postgres::PgInbox::builder().unclaimed_warning(Duration::from_secs(60));
    /// # drop(b);
    /// ```
    pub fn unclaimed_warning(mut self, d: Duration) -> Self {
        self.unclaimed_warning = d;
        self
    }

    /// The longest [`open`](Self::open) may take on this side for its checks and migration
    /// (default 60 s), whatever the pool's own timeouts: a pool built without
    /// `statement_timeout` would otherwise wait for ever behind another session's lock (another
    /// replica's migration that hangs, an operator's `ALTER TABLE`) or a database gone
    /// silent, and the process would never start nor say why. Past it `open` fails with an
    /// error saying so; the migration's statements carry the same bound on the server
    /// (`statement_timeout`, `lock_timeout`), which ends one left waiting and rolls its
    /// transaction back.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = hookguard_postgres::PgInbox::builder().migration_timeout(Duration::from_secs(20));
    /// # drop(b);
    /// ```
    pub fn migration_timeout(mut self, d: Duration) -> Self {
        self.migration_timeout = d;
        self
    }

    /// Opens only an inbox that exists (a tool reading one: a mistyped schema or database is
    /// an error, not a new empty inbox); by default a missing one is created.
    ///
    /// ```
    /// let b = hookguard_postgres::PgInbox::builder().schema("hooks").existing_only();
    /// # drop(b);
    /// ```
    pub fn existing_only(mut self) -> Self {
        self.existing_only = true;
        self
    }

    /// Opens an inbox on a pool you built (your own timeouts apply; keep them below the
    /// senders' timeouts), applying the migrations, within
    /// [`migration_timeout`](Self::migration_timeout).
    ///
    /// # Errors
    /// The database is unreachable, the migration failed, or they took longer than the
    /// migration timeout.
    ///
    /// ```no_run
    /// use hookguard_postgres::{PgInbox, DEFAULT_ACQUIRE_TIMEOUT};
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = sqlx::postgres::PgPoolOptions::new()
    ///     .max_connections(8)
    ///     .acquire_timeout(DEFAULT_ACQUIRE_TIMEOUT)
    ///     .connect("postgres://hooks@db.internal/app")
    ///     .await?;
    /// let inbox = PgInbox::builder().schema("hooks").open(pool).await?; // creates or migrates the table
    /// assert_eq!(inbox.table(), r#""hooks".hookguard_inbox"#);
    /// # Ok(()) }
    /// ```
    pub async fn open(self, pool: PgPool) -> Result<PgInbox, InboxError> {
        let limit = self.migration_timeout;
        tokio::time::timeout(limit, self.open_unbounded(pool))
            .await
            .unwrap_or_else(|_| Err(open_took_too_long(limit)))
    }

    async fn open_unbounded(self, pool: PgPool) -> Result<PgInbox, InboxError> {
        check_schema(&self.schema).map_err(InboxError::storage)?;
        if self.existing_only {
            let exists: bool =
                sqlx::query_scalar("SELECT to_regclass(format('%I.hookguard_inbox', $1::text)) IS NOT NULL")
                    .bind(&self.schema)
                    .fetch_one(&pool)
                    .await
                    .map_err(storage)?;
            if !exists {
                return Err(InboxError::storage(format!(
                    "no hookguard inbox in schema {} of this database",
                    self.schema
                )));
            }
        }
        migrate(&pool, &self.schema, self.migration_timeout).await?;
        if !self.existing_only {
            check_writable(&pool, &self.schema).await?;
        }
        // A cap read back is not recorded again: where none could be read it is the default,
        // which would overwrite the serving replicas' (`hookguard inbox migrate` on a pool
        // that timed out; a review).
        let max_pending = match self.recorded_cap {
            true => recorded_cap(&pool, &self.schema).await.unwrap_or(DEFAULT_MAX_PENDING),
            false => {
                if !self.existing_only {
                    record_cap(&pool, &self.schema, self.max_pending, self.migration_timeout).await;
                }
                self.max_pending
            }
        };
        // A 200 means the delivery is on disk: with `synchronous_commit = off` a commit is
        // reported before its WAL is flushed, and a crash loses what was answered.
        let sync: Option<String> = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&pool)
            .await
            .ok();
        if sync.as_deref() == Some("off") {
            tracing::warn!(
                "synchronous_commit is off for the inbox's connections: an accepted delivery can be lost \
                 in a database crash although it was answered 200; set it to on for this role or pool"
            );
        }
        let table = format!("\"{}\".hookguard_inbox", self.schema);
        let channel = channel_name(&self.schema);
        let notify = Arc::new(Notify::new());
        let pending = Arc::new(AtomicU64::new(0));
        let inner = Arc::new(Inner {
            sql: Sql::new(&table),
            pool,
            notify,
            pending,
            max_pending,
            unannounced: std::sync::atomic::AtomicBool::new(false),
            completions: std::sync::Mutex::default(),
            stats_turn: tokio::sync::Mutex::new(()),
            channel,
            table,
            operation_timeout: self.operation_timeout,
            unclaimed_after: self.unclaimed_warning,
            accepted: std::sync::atomic::AtomicBool::new(false),
            checking: std::sync::atomic::AtomicBool::new(false),
            home: std::sync::Mutex::new(Home::here()),
        });
        inner.refresh_pending().await?;
        spawn_background(&inner);
        Ok(PgInbox { inner })
    }
}

/// The name/value table beside the inbox (today only `max_pending`): made by the first open
/// that records a cap, not by the migration, so an inbox of an earlier build still opens for a
/// role that may not create tables (the record is then missing, and said).
fn settings_table(schema: &str) -> String {
    format!("\"{schema}\".hookguard_settings")
}

/// Records `cap` for tools that open the inbox without one ([`PgInboxBuilder::keep_recorded_cap`]),
/// making the settings table where missing (under the migration's lock: replicas starting
/// together would race on it). Never fails the open: a role that may not make or write the
/// table is warned about, since only a tool's replay of dead items needs the record.
async fn record_cap(pool: &PgPool, schema: &str, cap: u64, limit: Duration) {
    let table = settings_table(schema);
    let mut existed = None;
    let recorded = async {
        let mut tx = pool.begin().await?;
        let exists: bool = sqlx::query_scalar(&format!("SELECT to_regclass('{table}') IS NOT NULL"))
            .fetch_one(&mut *tx)
            .await?;
        existed = Some(exists);
        if !exists {
            lock_for_migration(&mut tx, limit).await?;
            sqlx::query(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (name text PRIMARY KEY, value bigint NOT NULL)"
            ))
            .execute(&mut *tx)
            .await?;
        }
        // The value it replaces, if another: replicas with different caps each refuse at their
        // own, and a replay keeps to the last one recorded (said; a tryout).
        let before: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT value FROM {table} WHERE name = 'max_pending' FOR UPDATE"
        ))
        .fetch_optional(&mut *tx)
        .await?;
        let value = i64::try_from(cap).unwrap_or(i64::MAX);
        sqlx::query(&format!(
            "INSERT INTO {table} (name, value) VALUES ('max_pending', $1)
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
        ))
        .bind(value)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(before.filter(|b| *b != value))
    };
    match recorded.await {
        Ok(Some(before)) => tracing::warn!(
            schema,
            "inbox: this replica's pending cap ({cap}) replaces {before}, recorded by another: replicas \
             of one inbox should share one cap (each refuses at its own; `hookguard inbox replay --dead` \
             keeps to half of the last one recorded)"
        ),
        Ok(None) => {}
        // The table is there: what is missing is this role's right to write it.
        Err(e) if existed == Some(true) => tracing::warn!(
            schema,
            error = %e,
            "inbox: cannot record the pending cap in {table}; `hookguard inbox replay --dead` will keep \
             to the cap recorded before (else the default, {DEFAULT_MAX_PENDING}) instead of this one. \
             Grant this role SELECT, INSERT and UPDATE on {table}"
        ),
        Err(e) => tracing::warn!(
            schema,
            error = %e,
            "inbox: cannot record the pending cap in {table}; `hookguard inbox replay --dead` will keep \
             to the default cap ({DEFAULT_MAX_PENDING}) instead of this one. Let this role create and \
             write that table, or make it once: CREATE TABLE {table} (name text PRIMARY KEY, value \
             bigint NOT NULL)"
        ),
    }
}

/// The cap the serving replicas recorded ([`record_cap`]); `None` when there is none or it
/// cannot be read (said at WARN).
async fn recorded_cap(pool: &PgPool, schema: &str) -> Option<u64> {
    let table = settings_table(schema);
    let read = async {
        let exists: bool = sqlx::query_scalar(&format!("SELECT to_regclass('{table}') IS NOT NULL"))
            .fetch_one(pool)
            .await?;
        if !exists {
            return Ok(None);
        }
        sqlx::query_scalar::<_, i64>(&format!("SELECT value FROM {table} WHERE name = 'max_pending'"))
            .fetch_optional(pool)
            .await
    };
    match read.await {
        Ok(cap) => cap.map(i64::unsigned_abs),
        Err(e) => {
            tracing::warn!(
                schema,
                error = %e,
                "inbox: cannot read the pending cap the serving replicas recorded (grant this role \
                 SELECT on the inbox's settings table); keeping to the default ({DEFAULT_MAX_PENDING}) \
                 for what uses it here: accepts and replays of every dead item"
            );
            None
        }
    }
}

/// Refuses a role that cannot write the inbox (a read-only user, a grant forgotten): such an
/// inbox answers every delivery `503`, and each counts toward the senders' kill switches
/// (Procore pauses every delivery at the first). Tools that only read open with
/// [`PgInboxBuilder::existing_only`], which skips this.
async fn check_writable(pool: &PgPool, schema: &str) -> Result<(), InboxError> {
    let table = format!("\"{schema}\".hookguard_inbox");
    // One privilege per call: given a list, `has_table_privilege` answers whether any is held.
    let missing: Vec<String> = sqlx::query_scalar(
        "SELECT p FROM unnest(ARRAY['INSERT', 'UPDATE', 'DELETE']) AS p WHERE NOT has_table_privilege($1, p)",
    )
    .bind(&table)
    .fetch_all(pool)
    .await
    .map_err(storage)?;
    if missing.is_empty() {
        return Ok(());
    }
    Err(InboxError::storage(format!(
        "this database user may not {} rows of {table}: every delivery would be answered 503 \
         (grant it INSERT, UPDATE and DELETE on the inbox's tables; tools that only read — `hookguard \
         inbox list|show|stats` — open the \
         inbox with existing_only)",
        missing.join(", ")
    )))
}

/// The PostgreSQL inbox. Cheap to clone; share one per process.
///
/// **Several runtimes** (actix-web runs each worker thread on one of its own): an operation
/// asked from another runtime than the one the inbox was opened on runs on that one while it
/// runs, so the pool's connections belong to it and outlive the runtimes that asked (a pooled
/// connection breaks when the runtime that opened it stops). Open the inbox in `main`.
///
/// ```no_run
/// use hookguard_core::inbox::{Accepted, InboxStore, NewItem};
/// use hookguard_postgres::PgInbox;
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let inbox = PgInbox::connect("postgres://hooks@db.internal/app").await?;
/// let for_worker = inbox.clone(); // the same pool and table
/// let item = NewItem::from_parts("hcss", Some("hcss:evt_1".into()), bytes::Bytes::from_static(b"{}"));
/// assert!(matches!(inbox.accept(item.clone()).await?, Accepted::Stored(_)));
/// assert_eq!(for_worker.accept(item).await?, Accepted::Duplicate(0)); // a copy: nothing stored
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgInbox {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    table: String,
    channel: String,
    sql: Sql,
    notify: Arc<Notify>,
    pending: Arc<AtomicU64>,
    max_pending: u64,
    /// Set by an accept; the background task turns it into one `NOTIFY` for the other replicas.
    unannounced: std::sync::atomic::AtomicBool,
    /// The worker's completions waiting for the next shared statement.
    completions: std::sync::Mutex<Completions>,
    /// One `stats` at a time: it may hold a connection for a while on a large inbox, and the
    /// pool's connections are for accepts.
    stats_turn: tokio::sync::Mutex<()>,
    /// [`PgInboxBuilder::operation_timeout`].
    operation_timeout: Duration,
    /// [`PgInboxBuilder::unclaimed_warning`].
    unclaimed_after: Duration,
    /// Set by every accept (stored, a copy, or refused at the cap); the announcer's unclaimed
    /// check runs only after some.
    accepted: std::sync::atomic::AtomicBool,
    /// An unclaimed check is running (never two at once).
    checking: std::sync::atomic::AtomicBool,
    /// The runtime the inbox runs its own work on (see [`Inner::home_for_caller`]): the one
    /// it was opened on, or, once that one stopped, the first that asked for something after.
    home: std::sync::Mutex<Home>,
}

/// The inbox's runtime, and whether it still runs.
struct Home {
    handle: tokio::runtime::Handle,
    /// Cleared when the runtime stops (the listener's task, which lives on it as long as the
    /// inbox, is dropped then: see [`HomeRuns`]).
    alive: Arc<std::sync::atomic::AtomicBool>,
}

impl Home {
    /// The caller's runtime (called within one).
    fn here() -> Self {
        Home {
            handle: tokio::runtime::Handle::current(),
            alive: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }
}

/// A lock a panic never made unusable: each user leaves nothing it guards half-changed.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `op` bounded by `limit` on this side: a database that stopped answering fails it.
async fn bounded<T>(limit: Duration, op: impl Future<Output = Result<T, InboxError>>) -> Result<T, InboxError> {
    tokio::time::timeout(limit, op).await.unwrap_or_else(|_| {
        Err(InboxError::storage(format!(
            "PostgreSQL did not answer within {} ms",
            limit.as_millis()
        )))
    })
}

/// How long an operation asked from another runtime waits for the inbox's own to start it
/// (see [`PgInbox::at_home`]).
const HOME_START_WAIT: Duration = Duration::from_secs(1);

/// A task aborted when its handle is dropped: the caller's cancellation reaches it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Held by a task that lives on the inbox's runtime as long as the inbox: dropped with it when
/// that runtime stops, it says so.
struct HomeRuns {
    inner: std::sync::Weak<Inner>,
    alive: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for HomeRuns {
    fn drop(&mut self) {
        // The runtime stops while the inbox lives on. The pool's idle connections were opened
        // on it (every operation ran there): their sockets break with its I/O driver, and the
        // pool's ping before handing one out does not always tell (a socket's last known
        // readiness can let a ping through, and the next statement fails). They go now, before
        // another runtime is told to take over; the pool opens new ones there.
        if let Some(inner) = self.inner.upgrade() {
            inner.drop_idle_connections();
        }
        self.alive.store(false, Ordering::Relaxed);
    }
}

impl Inner {
    /// Takes the pool's idle connections out of it (the pool opens new ones as needed, on the
    /// runtime that asks): they were opened on the inbox's runtime, which has stopped or is
    /// not driven, and a statement on one would wait for that runtime's I/O for ever.
    fn drop_idle_connections(&self) {
        for _ in 0..self.pool.size() {
            match self.pool.try_acquire() {
                Some(connection) => drop(connection.detach()),
                None => break,
            }
        }
    }

    /// The inbox's own runtime when the caller runs on another and that one still runs; `None`
    /// when the caller's is the inbox's own, or the caller runs outside any runtime (then the
    /// caller's executor runs the work, as it always did).
    ///
    /// A pooled connection belongs to the runtime of the task that opened it, and breaks when
    /// that runtime stops: actix-web runs each worker thread on a runtime of its own and stops
    /// them at a graceful shutdown, while the inbox's worker (on the application's runtime)
    /// goes on with its handlers' transactions on the same pool. So work asked from another
    /// runtime runs on the inbox's own, and every connection it opens outlives the runtime
    /// that asked.
    ///
    /// Should the inbox's runtime have stopped, the caller's becomes its home: the background
    /// work (LISTEN for other replicas, announcing this one's accepts, the pending count, the
    /// unclaimed check), which stopped with the old one, starts again there.
    fn home_for_caller(self: &Arc<Self>) -> Option<tokio::runtime::Handle> {
        let here = tokio::runtime::Handle::try_current().ok()?;
        let mut home = lock(&self.home);
        if home.alive.load(Ordering::Relaxed) {
            return (home.handle.id() != here.id()).then(|| home.handle.clone());
        }
        *home = Home::here();
        drop(home);
        tracing::debug!("inbox: its runtime stopped; its background work moves to the caller's");
        spawn_background(self);
        None
    }

    /// Spawns `task` on the inbox's runtime when called from another (see
    /// [`Inner::home_for_caller`]), else on the caller's; outside any runtime (a future
    /// dropped there), nowhere. Should the inbox's runtime not start it within
    /// [`HOME_START_WAIT`] (kept but not driven), the caller's runs it, as
    /// [`PgInbox::at_home`] does: claims and completions sent only there never ran, each failed
    /// after its bound, and the completions' queue grew for good.
    fn spawn<F>(self: &Arc<Self>, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Some(home) = self.home_for_caller() else {
            if let Ok(here) = tokio::runtime::Handle::try_current() {
                here.spawn(task);
            }
            return;
        };
        let task = Handoff::new(task);
        let theirs = task.clone();
        home.spawn(async move {
            if let Some(task) = theirs.take() {
                task.await;
            }
        });
        // (`home_for_caller` answers only within a runtime: there is one here.)
        let inner = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(HOME_START_WAIT).await;
            if let Some(task) = task.take_here(&inner) {
                task.await;
            }
        });
    }
}

/// Work that the inbox's runtime and its caller's may both run, whoever takes it first: the
/// inbox's runtime's task when it starts, or the caller's once it has waited
/// [`HOME_START_WAIT`] (see [`Inner::spawn`] and [`PgInbox::at_home`]).
struct Handoff<F>(Arc<std::sync::Mutex<Option<Pin<Box<F>>>>>);

impl<F> Clone for Handoff<F> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<F> Handoff<F> {
    fn new(work: F) -> Self {
        Self(Arc::new(std::sync::Mutex::new(Some(Box::pin(work)))))
    }

    /// The work, unless taken already.
    fn take(&self) -> Option<Pin<Box<F>>> {
        lock(&self.0).take()
    }

    /// [`take`](Self::take) by the caller once the inbox's runtime has not started the work in
    /// time: that runtime is not driven, so the pool's idle connections, opened on it, are
    /// dropped first (a statement on one would wait out its whole bound).
    fn take_here(&self, inner: &Inner) -> Option<Pin<Box<F>>> {
        let work = self.take();
        if work.is_some() {
            inner.drop_idle_connections();
        }
        work
    }
}

/// Runs one claim and hands its items to the caller; items nobody took (the caller's bound
/// passed, or its future was dropped, while the statement ran) are given back at once instead
/// of waiting out their lease with an attempt used.
async fn claim_task(
    inner: Arc<Inner>,
    lease: Duration,
    limit: u32,
    providers: Option<Vec<String>>,
    answer: oneshot::Sender<Result<Vec<ClaimedItem>, InboxError>>,
) {
    let lease_ms = i64::try_from(lease.as_millis()).map_or(MAX_DELAY_MS, |ms| ms.min(MAX_DELAY_MS));
    // Bounded by the lease: past it the items are due again whatever this task does.
    let claimed = bounded(lease.max(inner.operation_timeout), async {
        let rows = sqlx::query(&inner.sql.claim)
            .bind(lease_ms)
            .bind(i64::from(limit))
            .bind(providers)
            .fetch_all(&inner.pool)
            .await
            .map_err(storage)?;
        let mut items = rows
            .iter()
            .map(|r| {
                Ok(ClaimedItem::new(
                    ClaimRef::new(
                        r.try_get("id")?,
                        u32::try_from(r.try_get::<i32, _>("attempts")?).unwrap_or(0),
                        r.try_get("next_attempt_at")?,
                    ),
                    &r.try_get::<String, _>("provider")?,
                    r.try_get("dedupe_key")?,
                    r.try_get("event_id")?,
                    r.try_get("event_type")?,
                    Bytes::from(r.try_get::<Vec<u8>, _>("body")?),
                    r.try_get("received_at")?,
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(storage)?;
        items.sort_by_key(|i| i.id);
        Ok(items)
    })
    .await;
    if let Err(Ok(items)) = answer.send(claimed) {
        give_back(&inner, &items).await;
    }
}

/// Claims as the columns the batch statements `unnest`: ids, attempts and lease ends.
struct ClaimColumns {
    ids: Vec<i64>,
    attempts: Vec<i32>,
    leases: Vec<i64>,
}

impl FromIterator<ClaimRef> for ClaimColumns {
    fn from_iter<I: IntoIterator<Item = ClaimRef>>(claims: I) -> Self {
        let mut c = Self {
            ids: Vec::new(),
            attempts: Vec::new(),
            leases: Vec::new(),
        };
        for claim in claims {
            c.ids.push(claim.id);
            c.attempts.push(claim.attempt as i32);
            c.leases.push(claim.lease_until_ms);
        }
        c
    }
}

/// Gives claimed items back to pending, due now, their attempt not counted (one statement).
async fn give_back(inner: &Inner, items: &[ClaimedItem]) {
    if items.is_empty() {
        return;
    }
    let claims: ClaimColumns = items.iter().map(ClaimedItem::claim).collect();
    let given = bounded(inner.operation_timeout, async {
        sqlx::query(&inner.sql.release_many)
            .bind(&claims.ids)
            .bind(&claims.attempts)
            .bind(&claims.leases)
            .execute(&inner.pool)
            .await
            .map_err(storage)
    })
    .await;
    match given {
        Ok(_) => tracing::debug!(items = items.len(), "claimed items nobody took were given back"),
        Err(e) => tracing::warn!(
            items = items.len(),
            error = %e,
            "claimed items nobody took could not be given back; they are due again when their lease ends"
        ),
    }
}

/// The caller's side of a claim. Dropped before it took its items (its bound passed, or its
/// future was dropped) it closes the channel, so the claim's task gives them back; items that
/// arrived in between are given back here.
struct ClaimAnswer(oneshot::Receiver<Result<Vec<ClaimedItem>, InboxError>>, Arc<Inner>);

impl ClaimAnswer {
    async fn get(mut self) -> Result<Vec<ClaimedItem>, InboxError> {
        (&mut self.0)
            .await
            .unwrap_or_else(|_| Err(InboxError::storage("the claim was dropped before it ran")))
    }
}

impl Drop for ClaimAnswer {
    fn drop(&mut self) {
        self.0.close();
        if let Ok(Ok(items)) = self.0.try_recv() {
            let inner = Arc::clone(&self.1);
            self.1.spawn(async move { give_back(&inner, &items).await });
        }
    }
}

/// The most completions one statement (one transaction, one commit) carries.
const MAX_COMPLETE_BATCH: usize = 512;

/// One completion waiting: the claim, the time, and where its answer goes.
type QueuedCompletion = (ClaimRef, i64, oneshot::Sender<Result<bool, InboxError>>);

/// Group commit for the worker's completions: every completion queued while a statement runs
/// goes into the next one, so a busy worker pays one commit (one fsync) per batch instead of
/// one per item. `running` is true while a drain task owns the queue.
#[derive(Default)]
struct Completions {
    queue: Vec<QueuedCompletion>,
    running: bool,
}

fn lock_completions(inner: &Inner) -> std::sync::MutexGuard<'_, Completions> {
    // Every update under this lock is a push, a drain or a flag: nothing is left half-done.
    lock(&inner.completions)
}

/// The drain task's ownership of the queue. Made before the task is spawned and moved into it,
/// so a task dropped before it ever ran (its runtime shutting down, or no runtime at all)
/// still hands the queue back: `running` is reset and the waiting callers get an error, retry,
/// and start a new task.
struct Draining(Arc<Inner>, bool);

impl Drop for Draining {
    fn drop(&mut self) {
        if !self.1 {
            let mut c = lock_completions(&self.0);
            c.running = false;
            c.queue.clear();
        }
    }
}

/// Runs the queued completions, a batch per statement, until the queue is empty. It runs as
/// a task of its own, so a caller that stops waiting (a worker shut down mid-await) cannot
/// strand the others; if the task itself is dropped unfinished (its runtime shut down), the
/// queued callers get an error and retry, which starts a new task.
async fn complete_queued(mut running: Draining) {
    let inner = Arc::clone(&running.0);
    loop {
        let mut batch: Vec<QueuedCompletion> = {
            let mut c = lock_completions(&inner);
            // A caller that stopped waiting (its worker shut down and gave the item back) must
            // not have its completion run later, when the item may belong to a newer attempt.
            c.queue.retain(|q| !q.2.is_closed());
            if c.queue.is_empty() {
                c.running = false;
                running.1 = true;
                return;
            }
            let n = c.queue.len().min(MAX_COMPLETE_BATCH);
            c.queue.drain(..n).collect()
        };
        // Rows locked in id order, as any other batch would lock them.
        batch.sort_unstable_by_key(|c| c.0.id);
        let claims: ClaimColumns = batch.iter().map(|c| c.0).collect();
        let times: Vec<i64> = batch.iter().map(|c| c.1).collect();
        // The claims marked done (`true`) or done already by themselves (`false`); a row that
        // fails to decode fails the batch. Bounded (both statements together): one that never
        // returns would hold every later completion.
        let claims_of = |rows: Vec<PgRow>| {
            rows.iter()
                .map(|r| {
                    let attempt = u32::try_from(r.try_get::<i32, _>(1)?).unwrap_or(0);
                    Ok(ClaimRef::new(r.try_get(0)?, attempt, r.try_get(2)?))
                })
                .collect::<Result<Vec<ClaimRef>, sqlx::Error>>()
        };
        let done = bounded(inner.operation_timeout, async {
            let now: Vec<ClaimRef> = sqlx::query(&inner.sql.complete_many)
                .bind(&claims.ids)
                .bind(&claims.attempts)
                .bind(&times)
                .bind(&claims.leases)
                .fetch_all(&inner.pool)
                .await
                .and_then(claims_of)
                .map_err(storage)?;
            let mut done: std::collections::HashMap<ClaimRef, bool> = now.into_iter().map(|c| (c, true)).collect();
            if done.len() < batch.len() {
                let rest: ClaimColumns = batch.iter().map(|c| c.0).filter(|c| !done.contains_key(c)).collect();
                let already = sqlx::query(&inner.sql.completed_already)
                    .bind(&rest.ids)
                    .bind(&rest.attempts)
                    .bind(&rest.leases)
                    .fetch_all(&inner.pool)
                    .await
                    .and_then(claims_of)
                    .map_err(storage)?;
                done.extend(already.into_iter().map(|c| (c, false)));
            }
            Ok::<_, InboxError>(done)
        })
        .await;
        match done {
            Ok(done) => {
                for (claim, _, answer) in batch {
                    let now_done = done.get(&claim).copied();
                    if now_done == Some(true) {
                        inner.finished_one();
                    }
                    let _ = answer.send(Ok(now_done.is_some()));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for (.., answer) in batch {
                    let _ = answer.send(Err(InboxError::storage(msg.clone())));
                }
            }
        }
    }
}

impl fmt::Debug for PgInbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgInbox")
            .field("table", &self.inner.table)
            .finish_non_exhaustive()
    }
}

/// The statements, with the table name filled in once.
struct Sql {
    accept: String,
    revive: String,
    copy_kept: String,
    claim: String,
    complete: String,
    completed_already: String,
    complete_many: String,
    dead: String,
    retry: String,
    release: String,
    release_many: String,
    get: String,
    list: String,
    list_active: String,
    list_finished: String,
    replay: String,
    /// `replay` of a dead item only (`replay_dead`: an item read as dead may be done by the
    /// time its turn comes).
    replay_if_dead: String,
    purge: String,
    purge_dead: String,
    stats: String,
    oldest: String,
    replay_pending: String,
    /// An item's state, its row locked for the rest of the transaction (`replay`).
    lock_state: String,
    due_longest: String,
    count_pending: String,
}

/// The database's clock in unix milliseconds, fixed for the statement: every schedule (due
/// times, leases) is kept on it, so replicas whose clocks disagree still agree on when a lease
/// ends.
const DB_NOW: &str = "(extract(epoch FROM statement_timestamp()) * 1000)::bigint";

/// The longest delay or lease added to the database's clock: far beyond any schedule, and
/// `DB_NOW + MAX_DELAY_MS` stays within `bigint`.
const MAX_DELAY_MS: i64 = i64::MAX / 4;

const COLUMNS: &str = "id, provider, dedupe_key, event_id, event_type, state, attempts, received_at, \
                       next_attempt_at, finished_at, last_error, octet_length(body)::bigint AS body_len";

impl Sql {
    fn new(t: &str) -> Self {
        // A finished item (in one of `states`) back to pending, due now, attempts reset; an
        // HCSS body's coalescing key taken back unless another row holds it.
        let replay = |states: &str| {
            format!(
                "UPDATE {t} SET state = 0, attempts = 0, next_attempt_at = {DB_NOW}, finished_at = NULL, last_error = NULL,
                        unique_key = CASE WHEN scope = 1 AND NOT EXISTS (
                            SELECT 1 FROM {t} o WHERE o.provider = {t}.provider AND o.unique_key = {t}.dedupe_key)
                            THEN dedupe_key ELSE unique_key END
                 WHERE id = $1 AND state IN ({states}) RETURNING id"
            )
        };
        Self {
            // One statement, one round trip, the same work as a plain insert-if-absent: a copy
            // conflicts on the partial unique index and returns no row (reported as
            // `Duplicate(0)`: the copy's id is not read; a copy costs a `revive` and a
            // `copy_kept` statement, see `accept`).
            // Due from its arrival (first come, first served: a retry already due goes before
            // what arrived after it). (Not `DO UPDATE … WHERE` for a dead copy, `revive`: it
            // locks every conflicting row, so each copy of a live item would write and sync.)
            accept: format!(
                "INSERT INTO {t} (provider, dedupe_key, unique_key, scope, event_id, event_type, state,
                                  attempts, received_at, next_attempt_at, headers, body)
                 VALUES ($1, $2, $2, $3, $4, $5, 0, 0, $6, {DB_NOW}, $7, $8)
                 ON CONFLICT (provider, unique_key) WHERE unique_key IS NOT NULL DO NOTHING
                 RETURNING id"
            ),
            // A copy still there (see `accept`): a duplicate is answered only then.
            copy_kept: format!("SELECT 1 FROM {t} WHERE provider = $1 AND unique_key = $2"),
            // A copy's second statement: the item it copies back to pending if it is dead,
            // attempts reset as a replay does (`hookguard_core::inbox`'s module docs); no row
            // (nothing written) for a live or done one.
            revive: format!(
                "UPDATE {t} SET state = 0, attempts = 0, next_attempt_at = {DB_NOW}, finished_at = NULL,
                        last_error = NULL
                 WHERE provider = $1 AND unique_key = $2 AND state = 3
                 RETURNING id"
            ),
            // Due and lease times are the database's (`DB_NOW`), never a replica's: a replica
            // whose clock runs ahead would otherwise take items still leased to another.
            claim: format!(
                "UPDATE {t} SET state = 1, attempts = attempts + 1, next_attempt_at = {DB_NOW} + $1,
                        unique_key = CASE scope WHEN 1 THEN NULL ELSE unique_key END
                 WHERE id IN (SELECT id FROM {t} WHERE state IN (0, 1) AND next_attempt_at <= {DB_NOW}
                                AND ($3::text[] IS NULL OR provider = ANY ($3::text[]))
                              ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING id, attempts, next_attempt_at, provider, dedupe_key, event_id, event_type, body, received_at"
            ),
            // Every answer about a claim names it by (id, attempts, the lease's end): while an
            // item runs, `next_attempt_at` is its lease's end as the claim wrote it.
            complete: format!(
                "UPDATE {t} SET state = 2, finished_at = $3, last_error = NULL,
                        unique_key = CASE scope WHEN 1 THEN NULL ELSE unique_key END
                 WHERE id = $1 AND attempts = $2 AND next_attempt_at = $4 AND state IN (1, 2)"
            ),
            // The same for a batch: the running rows it marked done come back as (id,
            // attempts, lease end), so each caller learns whether its own claim still held the
            // item (only those leave the pending count).
            complete_many: format!(
                "UPDATE {t} AS t SET state = 2, finished_at = c.now, last_error = NULL,
                        unique_key = CASE t.scope WHEN 1 THEN NULL ELSE t.unique_key END
                 FROM unnest($1::bigint[], $2::integer[], $3::bigint[], $4::bigint[]) AS c(id, attempts, now, lease)
                 WHERE t.id = c.id AND t.attempts = c.attempts AND t.next_attempt_at = c.lease
                   AND t.state = 1
                 RETURNING t.id, t.attempts, t.next_attempt_at"
            ),
            // The claims of a batch whose items are done already, by these very claims (a
            // completion sent again after its first answer was lost, perhaps still committing
            // then): answered `true`, not counted out of the pending items twice. A statement
            // of its own, after the batch's, so it sees what committed meanwhile.
            completed_already: format!(
                "SELECT t.id, t.attempts, t.next_attempt_at FROM {t} AS t
                 JOIN unnest($1::bigint[], $2::integer[], $3::bigint[]) AS c(id, attempts, lease)
                   ON t.id = c.id AND t.attempts = c.attempts AND t.next_attempt_at = c.lease
                 WHERE t.state = 2"
            ),
            dead: format!(
                "UPDATE {t} SET state = 3, finished_at = $3, last_error = $4,
                        unique_key = CASE scope WHEN 1 THEN NULL ELSE unique_key END
                 WHERE id = $1 AND attempts = $2 AND next_attempt_at = $5 AND state = 1"
            ),
            // $3: the delay before the retry (the caller's retry time minus its own now).
            retry: format!(
                "UPDATE {t} SET state = 0, next_attempt_at = {DB_NOW} + $3, last_error = $4
                 WHERE id = $1 AND attempts = $2 AND next_attempt_at = $5 AND state = 1"
            ),
            // $3: the delay before it is due again (0: due now).
            release: format!(
                "UPDATE {t} SET state = 0, attempts = attempts - 1, next_attempt_at = {DB_NOW} + $3
                 WHERE id = $1 AND attempts = $2 AND next_attempt_at = $4 AND state = 1"
            ),
            // Claims nobody took, given back as they were: due now, the attempt not counted.
            release_many: format!(
                "UPDATE {t} AS t SET state = 0, attempts = t.attempts - 1, next_attempt_at = {DB_NOW}
                 FROM unnest($1::bigint[], $2::integer[], $3::bigint[]) AS c(id, attempts, lease)
                 WHERE t.id = c.id AND t.attempts = c.attempts AND t.next_attempt_at = c.lease AND t.state = 1"
            ),
            get: format!("SELECT {COLUMNS}, headers, body FROM {t} WHERE id = $1"),
            // One statement per kind of filter, each reading an index where a state is asked
            // for (a rare state would otherwise mean reading the retention's millions): pending
            // and running from the due index, done and dead from the finished index, most
            // recently finished first.
            list: format!(
                "SELECT {COLUMNS} FROM {t}
                 WHERE ($1::smallint IS NULL) AND ($2::text IS NULL OR provider = $2)
                 ORDER BY id DESC LIMIT $3"
            ),
            list_active: format!(
                "SELECT {COLUMNS} FROM {t}
                 WHERE state = $1 AND state IN (0, 1) AND ($2::text IS NULL OR provider = $2)
                 ORDER BY id DESC LIMIT $3"
            ),
            list_finished: format!(
                "SELECT {COLUMNS} FROM {t}
                 WHERE state = $1 AND state IN (2, 3) AND ($2::text IS NULL OR provider = $2)
                 ORDER BY finished_at DESC, id DESC LIMIT $3"
            ),
            replay: replay("2, 3"),
            replay_if_dead: replay("3"),
            // The item due longest ago: the first entry of the due index, its wait on the
            // database's clock.
            due_longest: format!(
                "SELECT provider, {DB_NOW} - next_attempt_at FROM {t} WHERE state IN (0, 1)
                 ORDER BY next_attempt_at, id LIMIT 1"
            ),
            // A pending item waiting out a retry: due now, its attempts reset, and its coalescing
            // key taken back as a replay of a finished item takes it (a claim gave it up).
            lock_state: format!("SELECT state FROM {t} WHERE id = $1 FOR UPDATE"),
            replay_pending: format!(
                "UPDATE {t} SET attempts = 0, next_attempt_at = {DB_NOW}, last_error = NULL,
                        unique_key = CASE WHEN scope = 1 AND unique_key IS NULL AND NOT EXISTS (
                            SELECT 1 FROM {t} o WHERE o.provider = {t}.provider AND o.unique_key = {t}.dedupe_key)
                            THEN dedupe_key ELSE unique_key END
                 WHERE id = $1 AND state = 0 RETURNING id"
            ),
            // A batch at a time (each statement well within the statement timeout), each a
            // range of the finished index. The conditions again on the rows deleted: a row
            // replayed while the delete waited for its lock is checked anew (PostgreSQL
            // re-evaluates only the outer condition on a row changed under it), not lost.
            purge: format!(
                "DELETE FROM {t} WHERE id IN (SELECT id FROM {t}
                 WHERE state = 2 AND state IN (2, 3) AND finished_at < $1 LIMIT {PURGE_BATCH})
                 AND state = 2 AND finished_at < $1"
            ),
            purge_dead: format!(
                "DELETE FROM {t} WHERE id IN (SELECT id FROM {t}
                 WHERE state IN (2, 3) AND finished_at < $1 LIMIT {PURGE_BATCH})
                 AND state IN (2, 3) AND finished_at < $1"
            ),
            stats: format!(
                "SELECT state, count(*)::bigint, coalesce(sum(octet_length(body)), 0)::bigint FROM {t} GROUP BY state"
            ),
            oldest: format!("SELECT min(received_at) FROM {t} WHERE state = 0"),
            count_pending: format!("SELECT count(*)::bigint FROM {t} WHERE state IN (0, 1)"),
        }
    }
}

/// The failure of an open that outlived its [`PgInboxBuilder::migration_timeout`], whichever
/// side ended it: this side's timer, or the server's `statement_timeout`/`lock_timeout` of the
/// same length (which may fire first, and whose own words do not say which bound it was).
fn open_took_too_long(limit: Duration) -> InboxError {
    InboxError::storage(format!(
        "opening the inbox (its checks and migration) took longer than {} ms: another \
         session may hold a lock it needs, or the database does not answer",
        limit.as_millis()
    ))
}

/// Whether `e` is the server ending a statement at the bound the migration set on it
/// (`57014` query_canceled by `statement_timeout`, `55P03` lock_not_available by `lock_timeout`).
fn server_bound_ended(e: &InboxError) -> bool {
    let InboxError::Storage(inner) = e else { return false };
    inner
        .downcast_ref::<sqlx::Error>()
        .and_then(sqlx::Error::as_database_error)
        .and_then(|d| d.code())
        .is_some_and(|c| c == "57014" || c == "55P03")
}

/// The refusal of an inbox whose schema a newer build made.
fn newer_schema(version: i32) -> InboxError {
    InboxError::storage(format!(
        "the inbox schema is version {version}, newer than this build ({SCHEMA_VERSION})"
    ))
}

/// Bounds `tx`'s statements by `limit` on the server too and takes the global migration lock
/// (one at a time across replicas), for a transaction that may make or change tables.
async fn lock_for_migration(tx: &mut Transaction<'_, Postgres>, limit: Duration) -> Result<(), sqlx::Error> {
    // The server's own bound, as long as the caller's (`migration_timeout`): a caller that
    // gave up leaves no statement waiting behind a lock (and no DDL queued for the inbox's
    // table, which every replica's accepts would then wait behind); the transaction is rolled
    // back when its statement ends.
    // PostgreSQL takes at most `i32::MAX` ms (~24.8 days); a longer bound (`Duration::MAX`:
    // none) is no server bound at all (0), the caller's still applies.
    let ms = match limit.as_millis() {
        0 => "1ms".to_owned(),
        ms if ms <= i32::MAX as u128 => format!("{ms}ms"),
        _ => "0".to_owned(),
    };
    // (And no NOTICE for each `IF NOT EXISTS` with nothing to do: sqlx logs every one, and an
    // operator's first start read "… does not exist, skipping" as a fault.)
    sqlx::query(
        "SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $1, true),
                set_config('client_min_messages', 'warning', true)",
    )
    .bind(&ms)
    .execute(&mut **tx)
    .await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('hookguard_inbox_migrate'))")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Creates the schema, table, indexes and notify trigger if missing, under an advisory lock so
/// replicas starting together do not race. Idempotent.
async fn migrate(pool: &PgPool, schema: &str, limit: Duration) -> Result<(), InboxError> {
    let t = format!("\"{schema}\".hookguard_inbox");
    let mut tx = pool.begin().await.map_err(storage)?;
    // Every error path rolls back here, at once: sqlx only queues the rollback of a dropped
    // transaction until its connection is used again, and this one holds the global
    // migration lock (every other open waited for it) and its locks on the inbox.
    let done = async {
        lock_for_migration(&mut tx, limit).await.map_err(storage)?;
        let existed: bool = sqlx::query_scalar(&format!("SELECT to_regclass('{t}') IS NOT NULL"))
            .fetch_one(&mut *tx)
            .await
            .map_err(storage)?;
        let statements = [
            format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""),
            format!("CREATE TABLE IF NOT EXISTS \"{schema}\".hookguard_schema (version integer NOT NULL)"),
            format!(
                "CREATE TABLE IF NOT EXISTS {t} (
                    id              bigserial PRIMARY KEY,
                    provider        text      NOT NULL,
                    dedupe_key      text,
                    unique_key      text,
                    scope           smallint  NOT NULL DEFAULT 0,
                    event_id        text,
                    event_type      text,
                    state           smallint  NOT NULL,
                    attempts        integer   NOT NULL DEFAULT 0,
                    received_at     bigint    NOT NULL,
                    next_attempt_at bigint    NOT NULL,
                    finished_at     bigint,
                    last_error      text,
                    headers         text      NOT NULL,
                    body            bytea     NOT NULL)"
            ),
            // Statements that would lock the table (an index, a trigger) run only when there is
            // something to do: a migration that finds everything in place takes no lock on the
            // inbox, so it never waits behind (or makes writers wait behind) an index an operator
            // is building concurrently.
            format!(
                "DO $$ BEGIN IF to_regclass('\"{schema}\".hookguard_inbox_unique') IS NULL THEN
                   CREATE UNIQUE INDEX hookguard_inbox_unique ON {t} (provider, unique_key)
                   WHERE unique_key IS NOT NULL; END IF; END $$"
            ),
            // The first build's finished index (on finished_at alone) gave way to a scan, which
            // the statement timeout stops once the inbox holds millions of rows: the purge now
            // reads `hookguard_inbox_finished_v2` (made below).
            format!("DROP INDEX IF EXISTS \"{schema}\".hookguard_inbox_finished"),
            // An older build notified from an insert trigger: NOTIFY in every insert serialises
            // commits (PostgreSQL takes a global lock to queue notifications), so it is gone.
            format!(
                "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass('{t}')
                                        AND tgname = 'hookguard_inbox_notify') THEN
                   DROP TRIGGER hookguard_inbox_notify ON {t}; END IF; END $$"
            ),
            format!(
                "INSERT INTO \"{schema}\".hookguard_schema (version)
                 SELECT {SCHEMA_VERSION} WHERE NOT EXISTS (SELECT 1 FROM \"{schema}\".hookguard_schema)"
            ),
        ];
        // Everything in place (every start after the first): no DDL at all, so a role that may only
        // read and write the inbox's rows opens it (PostgreSQL checks the right to create before it
        // looks whether `IF NOT EXISTS` has anything to do).
        let in_place: bool = sqlx::query_scalar(&format!(
            "SELECT to_regclass('{t}') IS NOT NULL
                AND to_regclass('\"{schema}\".hookguard_inbox_unique') IS NOT NULL
                AND to_regclass('\"{schema}\".hookguard_inbox_finished') IS NULL
                AND to_regclass('\"{schema}\".hookguard_schema') IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass('{t}')
                                AND tgname = 'hookguard_inbox_notify')"
        ))
        .fetch_one(&mut *tx)
        .await
        .map_err(storage)?;
        let read_version = format!("SELECT max(version) FROM \"{schema}\".hookguard_schema");
        // A newer build's inbox is refused before any statement here could lock its table (the
        // conversions below take an exclusive lock, and every replica's accepts would wait behind
        // it until the migration timeout — an older replica started during a rollback).
        let recorded: bool = sqlx::query_scalar(&format!(
            "SELECT to_regclass('\"{schema}\".hookguard_schema') IS NOT NULL"
        ))
        .fetch_one(&mut *tx)
        .await
        .map_err(storage)?;
        let mut version: Option<i32> = None;
        if recorded {
            version = sqlx::query_scalar(&read_version)
                .fetch_one(&mut *tx)
                .await
                .map_err(storage)?;
            if let Some(newer) = version.filter(|v| *v > SCHEMA_VERSION) {
                return Err(newer_schema(newer));
            }
        }
        // Anything not in place, or no version recorded: the statements (each a no-op where
        // its object is there; the version row only where there is none).
        if !in_place || version.is_none() {
            for s in &statements {
                sqlx::query(s).execute(&mut *tx).await.map_err(storage)?;
            }
            version = sqlx::query_scalar(&read_version)
                .fetch_one(&mut *tx)
                .await
                .map_err(storage)?;
        }
        // The statements above record one when there was none.
        let version = version.ok_or_else(|| InboxError::storage("the inbox schema records no version"))?;
        if version > SCHEMA_VERSION {
            return Err(newer_schema(version));
        }
        // The first build kept the headers as `jsonb`; they are bound as text now, which PostgreSQL
        // will not turn into `jsonb` by itself: every accept of such an inbox failed (503) and no
        // record could be read. Converted once, in place (a table of that build is a small one).
        let jsonb: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = $1
               AND table_name = 'hookguard_inbox' AND column_name = 'headers' AND data_type = 'jsonb')",
        )
        .bind(schema)
        .fetch_one(&mut *tx)
        .await
        .map_err(storage)?;
        if jsonb {
            tracing::warn!(
                schema,
                "inbox: converting the headers column of an earlier build from jsonb to text"
            );
            sqlx::query(&format!(
                "ALTER TABLE {t} ALTER COLUMN headers TYPE text USING headers::text"
            ))
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        }
        // The claim orders by (next_attempt_at, id): the first build's index on next_attempt_at
        // alone left every claim to sort all due rows (a backlog of 100,000 items: 25 ms per claim,
        // against 0.06 ms with both columns). A new inbox gets the index here. An existing one is
        // not changed behind the operator's back: building an index on a table in use either
        // blocks its writes (plain) or holds a lock that every replica's migration then waits for
        // (concurrently); the warning gives the two statements to run once.
        if !existed {
            let [create, _] = claim_index_sql(schema);
            for sql in [create, purge_index_sql(schema)] {
                sqlx::query(&sql.replace(" CONCURRENTLY", ""))
                    .execute(&mut *tx)
                    .await
                    .map_err(storage)?;
            }
        } else {
            if let Some(fix) = index_fix(
                &mut tx,
                schema,
                "hookguard_inbox_finished_v2",
                vec![purge_index_sql(schema)],
            )
            .await?
            {
                tracing::warn!(
                    schema,
                    "inbox: this inbox was made by an earlier build: every purge scans the table, and \
                     fails at the statement timeout once it holds millions of rows. Run once (it does \
                     not block the inbox): {}",
                    fix.join("; ")
                );
            }
            if let Some(fix) = index_fix(
                &mut tx,
                schema,
                "hookguard_inbox_due_v2",
                claim_index_sql(schema).into(),
            )
            .await?
            {
                tracing::warn!(
                    schema,
                    "inbox: this inbox was made by an earlier build: every claim sorts the backlog. \
                     Run once (it does not block the inbox): {}",
                    fix.join("; ")
                );
            }
        }
        Ok::<(), InboxError>(())
    }
    .await;
    match done {
        Ok(()) => tx.commit().await.map_err(storage),
        Err(e) => {
            let _ = tx.rollback().await;
            // Only this transaction carries the bound: any other cancel is said as it came.
            if server_bound_ended(&e) {
                return Err(open_took_too_long(limit));
            }
            Err(e)
        }
    }
}

/// The statements that make index `name` of `schema` usable, `None` when it is: `make` when it
/// is missing, and a drop of it first when it is invalid (a concurrent build that failed
/// leaves one, and `CREATE INDEX CONCURRENTLY IF NOT EXISTS` skips it).
async fn index_fix(
    tx: &mut Transaction<'_, Postgres>,
    schema: &str,
    name: &str,
    mut make: Vec<String>,
) -> Result<Option<Vec<String>>, InboxError> {
    let valid: Option<bool> = sqlx::query_scalar(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = $1 AND c.relname = $2",
    )
    .bind(schema)
    .bind(name)
    .fetch_optional(&mut **tx)
    .await
    .map_err(storage)?;
    Ok(match valid {
        Some(true) => None,
        Some(false) => {
            make.insert(0, format!("DROP INDEX CONCURRENTLY IF EXISTS \"{schema}\".{name}"));
            Some(make)
        }
        None => Some(make),
    })
}

/// The claim's index, as an operator runs it on an inbox an earlier build made (a new inbox
/// gets it in its migration), and the earlier build's index it replaces.
///
/// ```
/// let [create, drop] = hookguard_postgres::claim_index_sql("hookguard");
/// assert!(create.starts_with("CREATE INDEX CONCURRENTLY IF NOT EXISTS hookguard_inbox_due_v2"));
/// assert!(drop.starts_with("DROP INDEX CONCURRENTLY IF EXISTS"));
/// ```
pub fn claim_index_sql(schema: &str) -> [String; 2] {
    [
        format!(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS hookguard_inbox_due_v2 \
             ON \"{schema}\".hookguard_inbox (next_attempt_at, id) WHERE state IN (0, 1)"
        ),
        format!("DROP INDEX CONCURRENTLY IF EXISTS \"{schema}\".hookguard_inbox_due"),
    ]
}

/// The purge's index (finished rows by state and time), as an operator runs it on an inbox an
/// earlier build made (a new inbox gets it in its migration).
///
/// ```
/// let create = hookguard_postgres::purge_index_sql("hookguard");
/// assert!(create.starts_with("CREATE INDEX CONCURRENTLY IF NOT EXISTS hookguard_inbox_finished_v2"));
/// ```
pub fn purge_index_sql(schema: &str) -> String {
    format!(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS hookguard_inbox_finished_v2 \
         ON \"{schema}\".hookguard_inbox (state, finished_at) WHERE state IN (2, 3)"
    )
}

/// The LISTEN/NOTIFY channel of the inbox in `schema`: `hookguard_inbox_<schema>` when that
/// fits PostgreSQL's 63-byte identifiers, else `hookguard_inbox_` and a stable 64-bit hash of
/// the schema (`pg_notify` refuses a longer name while `LISTEN` shortens it, so replicas would
/// never hear each other).
fn channel_name(schema: &str) -> String {
    let plain = format!("hookguard_inbox_{schema}");
    if plain.len() <= 63 {
        return plain;
    }
    // FNV-1a: the same on every build and platform, as replicas of different builds must agree.
    let hash = schema.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("hookguard_inbox_{hash:016x}")
}

/// Announces this replica's accepts to the others: one `NOTIFY` per 50 ms at most. After
/// accepts, at most once a minute, it also looks for items nobody claims (see
/// [`PgInboxBuilder::unclaimed_warning`]).
fn spawn_announcer(inner: &Arc<Inner>) {
    let weak = Arc::downgrade(inner);
    // Between 100 ms (an `unclaimed_after` of zero must not read every 50 ms) and a minute.
    let every = inner
        .unclaimed_after
        .clamp(Duration::from_millis(100), Duration::from_secs(60));
    tokio::spawn(async move {
        // The first check once `every` has passed: a worker starting beside this replica gets
        // that long to take a backlog left from before.
        let mut check_at = tokio::time::Instant::now().checked_add(every);
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let Some(inner) = weak.upgrade() else { return };
            if let Some(at) = check_at.filter(|at| at.elapsed() > Duration::ZERO) {
                check_at = at.checked_add(every).map(|next| next.max(tokio::time::Instant::now()));
                // One check at a time: against a slow database they must not pile up on the
                // pool the accepts need.
                if !inner.checking.load(Ordering::Acquire) && inner.accepted.swap(false, Ordering::Relaxed) {
                    // A task of its own: a slow database must not hold up the announcements.
                    inner.checking.store(true, Ordering::Release);
                    // Cleared however the task ends: also dropped unfinished, with the runtime
                    // it runs on (the announcer restarted elsewhere then checks again).
                    let checking = Checking(Arc::clone(&inner));
                    tokio::spawn(async move {
                        checking.0.check_unclaimed().await;
                        drop(checking);
                    });
                }
            }
            if inner.unannounced.swap(false, Ordering::Relaxed) {
                // Bounded as every operation (a pool without `statement_timeout`): a stuck
                // notify would silence this replica's announcements for good.
                let notify = sqlx::query("SELECT pg_notify($1, '')")
                    .bind(&inner.channel)
                    .execute(&inner.pool);
                let _ = tokio::time::timeout(inner.operation_timeout, notify).await;
            }
        }
    });
}

/// Held by a running unclaimed check: says it ended when dropped.
struct Checking(Arc<Inner>);

impl Drop for Checking {
    fn drop(&mut self) {
        self.0.checking.store(false, Ordering::Release);
    }
}

/// How long the LISTEN connection may hear nothing before it is asked whether it still works.
const LISTEN_SILENCE: Duration = Duration::from_secs(10);

/// LISTEN for other replicas' accepts and recount pending items every second, on the caller's
/// runtime, the inbox's home (the listener's task says when it stops: see [`HomeRuns`]).
fn spawn_background(inner: &Arc<Inner>) {
    spawn_announcer(inner);
    let weak = Arc::downgrade(inner);
    // The listener keeps its connection for its whole life: one of its own, outside the
    // inbox's pool, which stays whole for accepts, claims and transactional handlers (a pool
    // of 2 otherwise had none left for accepts while a handler ran). A pool of one for each
    // connection: a connection found dead goes with its pool, never handed back to the next
    // listener.
    let acquire = inner
        .operation_timeout
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    let (channel, notify) = (inner.channel.clone(), Arc::clone(&inner.notify));
    let home = HomeRuns {
        inner: Arc::downgrade(inner),
        alive: Arc::clone(&lock(&inner.home).alive),
    };
    tokio::spawn(async move {
        let _home = home;
        loop {
            // The pool's options as they are now: an application that rotates credentials
            // (`PgPool::set_connect_options`) reconnects with the new ones.
            let Some(options) = weak.upgrade().map(|inner| (*inner.pool.connect_options()).clone()) else {
                return;
            };
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(acquire)
                .connect_lazy_with(options);
            let listening = async {
                let mut listener = PgListener::connect_with(&pool).await.ok()?;
                listener.listen(&channel).await.ok()?;
                Some(listener)
            };
            let Ok(Some(mut listener)) = tokio::time::timeout(acquire.saturating_mul(2), listening).await else {
                // Not listening: the pending count is still kept from the database (other
                // replicas' completions lower it), or a replica that only accepts would count
                // up to its cap and refuse every delivery.
                let Some(inner) = weak.upgrade() else { return };
                let _ = inner.refresh_pending().await;
                drop(inner);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            // Work another replica accepted while this one was not listening (at the start, or
            // while the connection was lost) was announced to nobody here: look once now
            // rather than at the next poll.
            wake_every_worker(&notify);
            // The count once a second, not after every notification: each replica announces up
            // to 20 a second, and a count of a large backlog takes milliseconds.
            let mut counted = tokio::time::Instant::now();
            let mut heard = tokio::time::Instant::now();
            loop {
                match tokio::time::timeout_at(counted + Duration::from_secs(1), listener.try_recv()).await {
                    Ok(Ok(Some(_))) => {
                        wake_every_worker(&notify);
                        heard = tokio::time::Instant::now();
                    }
                    Ok(Ok(None)) | Ok(Err(_)) => break, // connection lost: reconnect
                    Err(_) => {}
                }
                // A connection that went half-open (a NAT's or a balancer's idle timeout, a
                // vanished host) fails nothing: the listener only reads. Asked something after
                // a silence, it answers or is replaced.
                if heard.elapsed() >= LISTEN_SILENCE {
                    let Some(inner) = weak.upgrade() else { return };
                    let ping = sqlx::query("SELECT 1").execute(&mut listener);
                    if !matches!(tokio::time::timeout(inner.operation_timeout, ping).await, Ok(Ok(_))) {
                        tracing::warn!("inbox: the LISTEN connection did not answer; reconnecting");
                        break;
                    }
                    heard = tokio::time::Instant::now();
                }
                let Some(inner) = weak.upgrade() else { return };
                if counted.elapsed() >= Duration::from_secs(1) {
                    let _ = inner.refresh_pending().await;
                    counted = tokio::time::Instant::now();
                }
            }
        }
    });
}

impl Inner {
    /// Warns when the item due longest ago (pending, or running with its lease ended) has
    /// waited longer than `unclaimed_after`, by the database's clock: one entry of the due
    /// index.
    async fn check_unclaimed(&self) {
        let oldest = bounded(self.operation_timeout, async {
            sqlx::query(&self.sql.due_longest)
                .fetch_optional(&self.pool)
                .await
                .map_err(storage)
        })
        .await;
        let row = match oldest {
            Ok(Some(row)) => row,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "inbox: cannot read the item due longest ago");
                return;
            }
        };
        let (Ok(provider), Ok(waited)) = (row.try_get::<String, _>(0), row.try_get::<i64, _>(1)) else {
            return;
        };
        let waited = Duration::from_millis(u64::try_from(waited).unwrap_or(0));
        if waited > self.unclaimed_after {
            hookguard_core::inbox::warn_unclaimed(&provider, waited);
        }
    }

    /// A transaction whose statements may run for a minute: for work that takes longer than
    /// the connections' statement timeout allows an accept (counting a large inbox, deleting
    /// a batch of large bodies stored out of line).
    async fn long_transaction(&self) -> Result<Transaction<'static, Postgres>, InboxError> {
        let mut tx = self.pool.begin().await.map_err(storage)?;
        sqlx::query("SET LOCAL statement_timeout = '60s'")
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        Ok(tx)
    }

    /// One item left the pending and running ones (done or dead), before the next recount.
    fn finished_one(&self) {
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    async fn refresh_pending(&self) -> Result<(), InboxError> {
        let n: i64 = bounded(self.operation_timeout, async {
            sqlx::query_scalar(&self.sql.count_pending)
                .fetch_one(&self.pool)
                .await
                .map_err(storage)
        })
        .await?;
        self.pending.store(u64::try_from(n).unwrap_or(0), Ordering::Relaxed);
        Ok(())
    }
}

impl PgInbox {
    /// Connects with hookguard's bounded defaults (pool of 16, acquire 1 s, statement timeout
    /// 2 s) and opens the inbox in schema `public`.
    ///
    /// # Errors
    /// The URL is invalid, the database unreachable, or the migration failed.
    ///
    /// ```no_run
    /// use hookguard_postgres::PgInbox;
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let inbox = PgInbox::connect("postgres://hooks@db.internal/app").await?; // migrates
    /// assert_eq!(inbox.table(), r#""public".hookguard_inbox"#);
    /// assert_eq!(inbox.pool().options().get_max_connections(), 16);
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, InboxError> {
        Self::builder().connect(url).await
    }

    /// Configures an inbox (schema, pending cap) to open on your own pool.
    ///
    /// ```no_run
    /// use hookguard_postgres::PgInbox;
    /// # async fn run(pool: hookguard_postgres::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    /// // `pool`: the application's own `PgPool`.
    /// let inbox = PgInbox::builder().schema("hooks").max_pending(50_000).open(pool).await?;
    /// assert_eq!(inbox.table(), r#""hooks".hookguard_inbox"#);
    /// # Ok(()) }
    /// ```
    pub fn builder() -> PgInboxBuilder {
        PgInboxBuilder::default()
    }
}

impl PgInboxBuilder {
    /// Connects with hookguard's bounded defaults (pool of 16, acquire 1 s, statement timeout
    /// 2 s) and opens the inbox.
    ///
    /// # Errors
    /// The URL is invalid, the database unreachable, or the migration failed. The error never
    /// contains the URL (it may carry a password).
    ///
    /// ```
    /// use hookguard_postgres::PgInbox;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // A URL that cannot be read fails before anything connects, without repeating the password.
    /// let err = PgInbox::builder().schema("hooks").connect("postgres://hooks:s3cret@db internal/app").await.unwrap_err();
    /// assert!(err.to_string().contains("not a valid postgres:// URL"));
    /// assert!(!err.to_string().contains("s3cret"));
    /// # }
    /// ```
    pub async fn connect(self, url: &str) -> Result<PgInbox, InboxError> {
        let (opts, dropped) = parse_url(url).map_err(InboxError::storage)?;
        if !dropped.is_empty() {
            tracing::warn!(
                parameters = %dropped.join(", "),
                "ignoring connection parameters of the URL that the PostgreSQL driver does not read \
                 (their values are not shown: one may be a mistyped password); it reads {} and options[NAME]",
                KNOWN_URL_PARAMETERS.join(", ")
            );
        }
        // `synchronous_commit = on` whatever the role's or database's default: an accept is
        // answered 200 only once its commit is on disk.
        let opts = opts.options([
            (
                "statement_timeout",
                format!("{}", DEFAULT_STATEMENT_TIMEOUT.as_millis()),
            ),
            ("synchronous_commit", "on".to_owned()),
        ]);
        let started = tokio::time::Instant::now();
        let pool = match PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(DEFAULT_ACQUIRE_TIMEOUT)
            .connect_with(opts.clone())
            .await
        {
            Ok(pool) => pool,
            // The pool retries a failing connection until its timeout and then says only that
            // it timed out ("connection refused" or a wrong password read as a slow database):
            // one connection of its own says why.
            Err(sqlx::Error::PoolTimedOut) => return Err(why_no_connection(&opts, started).await),
            Err(e) => return Err(storage(e)),
        };
        self.open(pool).await
    }
}

/// Why no connection to `opts` can be made, from one attempt bounded as the pool's acquire;
/// the error never names the URL (sqlx's connection errors do not). `started`: when the pool
/// began trying, so a silent server is reported with the whole time waited (the pool's
/// attempts and this one).
async fn why_no_connection(opts: &PgConnectOptions, started: tokio::time::Instant) -> InboxError {
    use sqlx::ConnectOptions;
    let why = match tokio::time::timeout(DEFAULT_ACQUIRE_TIMEOUT, opts.connect()).await {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(_)) => "connections were refused while the pool opened, and one succeeded just after: retry".to_owned(),
        Err(_) => format!(
            "the server accepted no connection's start-up within {} ms (two attempts)",
            started.elapsed().as_millis()
        ),
    };
    InboxError::storage(format!("cannot connect to PostgreSQL: {why}"))
}

impl PgInbox {
    /// The pool.
    ///
    /// ```no_run
    /// # async fn run(inbox: hookguard_postgres::PgInbox) -> Result<(), sqlx::Error> {
    /// // The application's own queries can share the inbox's bounded pool.
    /// let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(inbox.pool()).await?;
    /// assert_eq!(one, 1);
    /// # Ok(()) }
    /// ```
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The qualified table name.
    ///
    /// ```no_run
    /// use hookguard_postgres::PgInbox;
    /// # async fn run(pool: hookguard_postgres::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let inbox = PgInbox::builder().schema("hooks").open(pool).await?;
    /// assert_eq!(inbox.table(), r#""hooks".hookguard_inbox"#);
    /// let dead: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {} WHERE state = 3", inbox.table()))
    ///     .fetch_one(inbox.pool())
    ///     .await?;
    /// # let _ = dead; Ok(()) }
    /// ```
    pub fn table(&self) -> &str {
        &self.inner.table
    }

    /// Marks the claimed item done inside `tx` (the transactional handler's transaction).
    /// `Ok(false)`: that claim no longer holds the item; roll back.
    ///
    /// # Errors
    /// The statement failed.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use hookguard_core::inbox::{now_ms, InboxStore};
    /// # async fn run(inbox: hookguard_postgres::PgInbox) -> Result<(), Box<dyn std::error::Error>> {
    /// for item in inbox.claim(now_ms(), Duration::from_secs(30), 10).await? {
    ///     let mut tx = inbox.pool().begin().await?;
    ///     sqlx::query("INSERT INTO events (key) VALUES ($1)").bind(item.delivery.dedupe_key()).execute(&mut *tx).await?;
    ///     assert!(inbox.complete_in(&mut tx, item.claim()).await?, "the lease expired: roll back");
    ///     tx.commit().await?; // the event's row and the done mark together
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn complete_in(&self, tx: &mut Transaction<'_, Postgres>, claim: ClaimRef) -> Result<bool, InboxError> {
        let r = sqlx::query(&self.inner.sql.complete)
            .bind(claim.id)
            .bind(claim.attempt as i32)
            .bind(hookguard_core::inbox::now_ms())
            .bind(claim.lease_until_ms)
            .execute(&mut **tx)
            .await
            .map_err(storage)?;
        Ok(r.rows_affected() == 1)
    }
}

fn record(r: &PgRow) -> Result<InboxRecord, sqlx::Error> {
    let mut rec = InboxRecord::empty(r.try_get("id")?, r.try_get("provider")?);
    rec.dedupe_key = r.try_get("dedupe_key")?;
    rec.event_id = r.try_get("event_id")?;
    rec.event_type = r.try_get("event_type")?;
    rec.state = InboxState::from_code(i64::from(r.try_get::<i16, _>("state")?)).unwrap_or(InboxState::Dead);
    rec.attempts = u32::try_from(r.try_get::<i32, _>("attempts")?).unwrap_or(0);
    rec.received_at_ms = r.try_get("received_at")?;
    rec.next_attempt_at_ms = r.try_get("next_attempt_at")?;
    rec.finished_at_ms = r.try_get("finished_at")?;
    rec.last_error = r.try_get("last_error")?;
    rec.body_len = u64::try_from(r.try_get::<i64, _>("body_len")?).unwrap_or(0);
    Ok(rec)
}

impl PgInbox {
    /// [`InboxStore::replay`]: whether the item was finished (done or dead: one more pending
    /// item) or pending (waiting out a retry: made due now).
    ///
    /// The state is read under the row's lock, in the transaction that changes it: a
    /// completion committing meanwhile is waited for (the item is then replayed as done),
    /// never seen half-way (two statements in a row refused an item done between them).
    async fn replay_item(&self, id: i64) -> Result<bool, InboxError> {
        bounded(self.inner.operation_timeout, async move {
            let mut raced = 0;
            let finished = loop {
                let mut tx = self.inner.pool.begin().await.map_err(storage)?;
                let state: Option<i16> = sqlx::query_scalar(&self.inner.sql.lock_state)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(storage)?;
                let state = match state {
                    None => return Err(InboxError::NotFound(id)),
                    Some(code) => InboxState::from_code(i64::from(code)).unwrap_or(InboxState::Dead),
                };
                let wrong_state = || InboxError::WrongState {
                    id,
                    state,
                    expected: "done, dead or pending",
                };
                let sql = match state {
                    InboxState::Done | InboxState::Dead => &self.inner.sql.replay,
                    InboxState::Pending => &self.inner.sql.replay_pending,
                    InboxState::Running => return Err(wrong_state()),
                };
                // Taking the coalescing key can meet another transaction's uncommitted copy
                // (see `replay_statement`): run again, it sees the row.
                match sqlx::query(sql).bind(id).fetch_optional(&mut *tx).await {
                    Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") && raced < 3 => {
                        raced += 1;
                        continue;
                    }
                    r => {
                        let changed = r.map_err(storage)?.is_some();
                        tx.commit().await.map_err(storage)?;
                        if !changed {
                            // A state no statement takes (a code written by hand).
                            return Err(wrong_state());
                        }
                        break state != InboxState::Pending;
                    }
                }
            };
            if finished {
                self.inner.pending.fetch_add(1, Ordering::Relaxed);
            }
            wake_every_worker(&self.inner.notify);
            Ok(finished)
        })
        .await
    }

    /// `replay_dead`'s part after reading a batch of dead ids: each one replayed only if it is
    /// still dead (a review's finding: replayed as `replay` does, an item done meanwhile — by
    /// another replica's replay and its worker, or a sender's copy reviving it — ran again,
    /// and one waiting out a retry had its attempts reset). Returns how many it replayed.
    async fn replay_still_dead(&self, ids: &[i64]) -> Result<u64, InboxError> {
        let mut n = 0;
        for &id in ids {
            let replayed = bounded(
                self.inner.operation_timeout,
                replay_statement(&self.inner.pool, &self.inner.sql.replay_if_dead, id),
            )
            .await?;
            if replayed {
                self.inner.pending.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }
        if n > 0 {
            wake_every_worker(&self.inner.notify);
        }
        Ok(n)
    }
}

/// Runs one of the replay statements on item `id`: whether it changed the item. Each takes
/// the coalescing key only when no other row holds it, but it cannot see a row another
/// transaction has not committed yet (a replay or an accept of the same HCSS body): it then
/// waits on the unique index and fails once that commits. Run again, it sees the row and
/// leaves the key alone.
async fn replay_statement(pool: &PgPool, sql: &str, id: i64) -> Result<bool, InboxError> {
    let mut raced = 0;
    loop {
        match sqlx::query(sql).bind(id).fetch_optional(pool).await {
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") && raced < 3 => raced += 1,
            r => break r.map(|row| row.is_some()).map_err(storage),
        }
    }
}

/// The inbox's operations as they run on the runtime that runs them: [`PgInbox`]'s
/// [`InboxStore`] runs them on the inbox's own runtime when asked from another (see
/// [`Inner::home_for_caller`]).
struct Local(PgInbox);

impl std::ops::Deref for Local {
    type Target = PgInbox;
    fn deref(&self) -> &PgInbox {
        &self.0
    }
}

impl PgInbox {
    /// `op` on `Local(self)`, on the inbox's own runtime when called from another (see
    /// [`Inner::home_for_caller`]). Cancelled as it would be where it was asked: dropping the returned
    /// future aborts it there. Should that runtime not start it within [`HOME_START_WAIT`] (a
    /// runtime kept but not driven, a current-thread one nobody `block_on`s), it runs where it
    /// was asked, as before.
    ///
    /// From another runtime the caller waits at most `limit` from this call, wherever `op` runs:
    /// `op`'s own bound starts when it is first polled (up to [`HOME_START_WAIT`] later, which
    /// made an accept take 5 s, past Procore's timeout, instead of a `503` within 4 s), and its
    /// timer lives on the runtime that runs it (a home that stopped being driven after taking
    /// `op` left the caller waiting for ever).
    fn at_home<T, Fut>(&self, limit: Duration, op: impl FnOnce(Local) -> Fut) -> InboxFuture<'static, T>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T, InboxError>> + Send + 'static,
    {
        let run = op(Local(self.clone()));
        let Some(home) = self.inner.home_for_caller() else {
            return Box::pin(run);
        };
        let run = Handoff::new(run);
        let theirs = run.clone();
        let inner = Arc::clone(&self.inner);
        let mut task = AbortOnDrop(home.spawn(async move {
            match theirs.take() {
                Some(run) => Some(run.await),
                None => None,
            }
        }));
        let waited = async move {
            let outcome = match tokio::time::timeout(HOME_START_WAIT, &mut task.0).await {
                Ok(outcome) => outcome,
                Err(_) => match run.take_here(&inner) {
                    Some(run) => return run.await,
                    None => (&mut task.0).await,
                },
            };
            match outcome {
                Ok(Some(r)) => r,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // Cancelled (the inbox's runtime stopped) or found taken: here if it never ran.
                Ok(None) | Err(_) => match run.take() {
                    Some(run) => run.await,
                    None => Err(InboxError::storage("the inbox's runtime stopped during the operation")),
                },
            }
        };
        // Timed from now, not from the first poll (`timeout` saturates a `limit` too far away:
        // `operation_timeout(Duration::MAX)` turns the bound off).
        let waited = tokio::time::timeout(limit, waited);
        Box::pin(async move {
            waited.await.unwrap_or_else(|_| {
                Err(InboxError::storage(format!(
                    "the inbox operation did not finish within {} ms",
                    limit.as_millis()
                )))
            })
        })
    }
}

impl InboxStore for PgInbox {
    fn accept(&self, item: NewItem) -> InboxFuture<'_, Accepted> {
        self.at_home(
            self.inner.operation_timeout,
            move |l| async move { l.accept(item).await },
        )
    }
    fn claim(&self, now_ms: i64, lease: Duration, limit: u32) -> InboxFuture<'_, Vec<ClaimedItem>> {
        self.claim_of(&[], now_ms, lease, limit)
    }
    fn claim_of<'a>(
        &'a self,
        providers: &'a [String],
        now_ms: i64,
        lease: Duration,
        limit: u32,
    ) -> InboxFuture<'a, Vec<ClaimedItem>> {
        // `now_ms` is the replica's clock: the database's decides instead (see `DB_NOW`).
        let _ = now_ms;
        let providers = (!providers.is_empty()).then(|| providers.to_vec());
        // The statement runs in a task of its own (on the inbox's runtime, see `Inner::spawn`):
        // dropping a query's future cancels nothing on the server, so a claim this caller
        // stopped waiting for (its bound passed, or its worker shut down) may still commit. The
        // task sees that nobody took the items and gives them back, as the SQLite inbox drops a
        // claim whose caller left.
        let inner = Arc::clone(&self.inner);
        Box::pin(bounded(self.inner.operation_timeout, async move {
            let (answer, answered) = oneshot::channel();
            let answered = ClaimAnswer(answered, Arc::clone(&inner));
            Arc::clone(&inner).spawn(claim_task(inner, lease, limit, providers, answer));
            answered.get().await
        }))
    }
    fn complete(&self, claim: ClaimRef, now_ms: i64) -> InboxFuture<'_, bool> {
        // Completions are drained by a task of their own, spawned on the inbox's runtime.
        Box::pin(bounded(self.inner.operation_timeout.saturating_mul(2), async move {
            let (answer, answered) = oneshot::channel();
            let start = {
                let mut c = lock_completions(&self.inner);
                c.queue.push((claim, now_ms, answer));
                !std::mem::replace(&mut c.running, true)
            };
            if start {
                // On the inbox's runtime while it runs, else the caller's: an inbox shared by
                // several runtimes keeps working.
                self.inner
                    .spawn(complete_queued(Draining(Arc::clone(&self.inner), false)));
            }
            answered
                .await
                .unwrap_or_else(|_| Err(InboxError::storage("the completion was dropped before it ran")))
        }))
    }
    fn fail(&self, claim: ClaimRef, error: &str, retry_at_ms: Option<i64>, now_ms: i64) -> InboxFuture<'_, bool> {
        let error = error.to_owned();
        self.at_home(self.inner.operation_timeout, move |l| async move {
            l.fail(claim, &error, retry_at_ms, now_ms).await
        })
    }
    fn release(&self, claim: ClaimRef) -> InboxFuture<'_, bool> {
        self.at_home(
            self.inner.operation_timeout,
            move |l| async move { l.release(claim).await },
        )
    }
    fn defer(&self, claim: ClaimRef, until_ms: i64) -> InboxFuture<'_, bool> {
        self.at_home(self.inner.operation_timeout, move |l| async move {
            l.defer(claim, until_ms).await
        })
    }
    fn get(&self, id: i64) -> InboxFuture<'_, Option<InboxRecord>> {
        self.at_home(self.inner.operation_timeout, move |l| async move { l.get(id).await })
    }
    fn list(&self, filter: ListFilter) -> InboxFuture<'_, Vec<InboxRecord>> {
        self.at_home(
            self.inner.operation_timeout,
            move |l| async move { l.list(filter).await },
        )
    }
    fn replay(&self, id: i64, now_ms: i64) -> InboxFuture<'_, ()> {
        self.at_home(self.inner.operation_timeout, move |l| async move {
            l.replay(id, now_ms).await
        })
    }
    fn replay_dead(&self, now_ms: i64) -> InboxFuture<'_, u64> {
        self.at_home(
            WHOLE_LONG_OPERATION,
            move |l| async move { l.replay_dead(now_ms).await },
        )
    }
    fn purge(&self, before_ms: i64, include_dead: bool) -> InboxFuture<'_, u64> {
        self.at_home(WHOLE_LONG_OPERATION, move |l| async move {
            l.purge(before_ms, include_dead).await
        })
    }
    fn stats(&self) -> InboxFuture<'_, InboxStats> {
        self.at_home(LONG_OPERATION_TIMEOUT, move |l| async move { l.stats().await })
    }
    fn notified(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.inner.notify.notified())
    }
}

impl InboxStore for Local {
    fn accept(&self, item: NewItem) -> InboxFuture<'_, Accepted> {
        Box::pin(bounded(self.inner.operation_timeout, async move {
            let inner = &self.inner;
            // Every accept asks for the unclaimed check, stored or not: at the pending cap
            // none is stored, and that is when a missing worker matters most.
            inner.accepted.store(true, Ordering::Relaxed);
            if inner.pending.load(Ordering::Relaxed) >= inner.max_pending {
                // The cap only refuses new pending items; a copy of a live or done item is
                // still recognised (a copy of a dead one would be pending again: refused too).
                if let Some(key) = &item.dedupe_key {
                    let id: Option<i64> = sqlx::query_scalar(&format!(
                        "SELECT id FROM {} WHERE provider = $1 AND unique_key = $2 AND state <> 3",
                        inner.table
                    ))
                    .bind(&item.provider)
                    .bind(key)
                    .fetch_optional(&inner.pool)
                    .await
                    .map_err(storage)?;
                    if let Some(id) = id {
                        return Ok(Accepted::Duplicate(id));
                    }
                }
                return Err(InboxError::Full {
                    limit: inner.max_pending,
                });
            }
            let scope: i16 = match item.scope {
                DedupeScope::WhileInFlight => 1,
                _ => 0,
            };
            let headers = serde_json::to_string(&item.headers).unwrap_or_else(|_| "[]".into());
            let mut vanished = 0;
            let id: i64 = loop {
                let row = sqlx::query(&inner.sql.accept)
                    .bind(&item.provider)
                    .bind(&item.dedupe_key)
                    .bind(scope)
                    .bind(&item.event_id)
                    .bind(&item.event_type)
                    .bind(item.received_at_ms)
                    .bind(&headers)
                    .bind(item.body.as_ref())
                    .fetch_optional(&inner.pool)
                    .await
                    .map_err(storage)?;
                if let Some(r) = row {
                    break r.try_get(0).map_err(storage)?;
                }
                // The insert conflicted: a copy is already there. A dead one is pending again.
                let revived: Option<i64> = sqlx::query_scalar(&inner.sql.revive)
                    .bind(&item.provider)
                    .bind(&item.dedupe_key)
                    .fetch_optional(&inner.pool)
                    .await
                    .map_err(storage)?;
                if let Some(id) = revived {
                    break id;
                }
                // Nothing revived: a live or done copy — or none any more (the copy the insert
                // met was purged or its key freed since, each statement committing on its own).
                // A duplicate only while a copy is there, read in a statement of its own (a
                // newer snapshot than the revive's); else the delivery is inserted again.
                let kept: Option<i32> = sqlx::query_scalar(&inner.sql.copy_kept)
                    .bind(&item.provider)
                    .bind(&item.dedupe_key)
                    .fetch_optional(&inner.pool)
                    .await
                    .map_err(storage)?;
                if kept.is_some() {
                    return Ok(Accepted::Duplicate(0));
                }
                vanished += 1;
                if vanished == 3 {
                    return Err(InboxError::storage(
                        "the stored copy of this delivery vanished three times while it was accepted; not stored",
                    ));
                }
            };
            inner.pending.fetch_add(1, Ordering::Relaxed);
            inner.unannounced.store(true, Ordering::Relaxed);
            wake_every_worker(&inner.notify);
            Ok(Accepted::Stored(id))
        }))
    }

    // Claims, completions and the wake-ups are `PgInbox`'s own: they spawn their tasks on the
    // inbox's runtime themselves.
    fn claim(&self, now_ms: i64, lease: Duration, limit: u32) -> InboxFuture<'_, Vec<ClaimedItem>> {
        self.0.claim(now_ms, lease, limit)
    }

    fn claim_of<'a>(
        &'a self,
        providers: &'a [String],
        now_ms: i64,
        lease: Duration,
        limit: u32,
    ) -> InboxFuture<'a, Vec<ClaimedItem>> {
        self.0.claim_of(providers, now_ms, lease, limit)
    }

    fn complete(&self, claim: ClaimRef, now_ms: i64) -> InboxFuture<'_, bool> {
        self.0.complete(claim, now_ms)
    }

    fn fail(&self, claim: ClaimRef, error: &str, retry_at_ms: Option<i64>, now_ms: i64) -> InboxFuture<'_, bool> {
        // PostgreSQL's text refuses NUL: a handler error carrying one would never be recorded
        // (and the item would run again every lease instead of backing off).
        let error = error.replace('\0', "\u{fffd}");
        Box::pin(bounded(self.inner.operation_timeout, async move {
            let q = match retry_at_ms {
                // A delay on the caller's clock, placed on the database's.
                Some(at) => sqlx::query(&self.inner.sql.retry)
                    .bind(claim.id)
                    .bind(claim.attempt as i32)
                    .bind(at.saturating_sub(now_ms).clamp(0, MAX_DELAY_MS)),
                None => sqlx::query(&self.inner.sql.dead)
                    .bind(claim.id)
                    .bind(claim.attempt as i32)
                    .bind(now_ms),
            };
            let r = q
                .bind(error)
                .bind(claim.lease_until_ms)
                .execute(&self.inner.pool)
                .await
                .map_err(storage)?;
            let failed = r.rows_affected() == 1;
            if failed && retry_at_ms.is_none() {
                // Dead: no longer pending (as a completion, not waiting for the recount).
                self.inner.finished_one();
            }
            Ok(failed)
        }))
    }

    fn release(&self, claim: ClaimRef) -> InboxFuture<'_, bool> {
        self.defer(claim, 0)
    }

    fn defer(&self, claim: ClaimRef, until_ms: i64) -> InboxFuture<'_, bool> {
        // A delay on this replica's clock, placed on the database's.
        let delay = until_ms
            .saturating_sub(hookguard_core::inbox::now_ms())
            .clamp(0, MAX_DELAY_MS);
        Box::pin(bounded(self.inner.operation_timeout, async move {
            let r = sqlx::query(&self.inner.sql.release)
                .bind(claim.id)
                .bind(claim.attempt as i32)
                .bind(delay)
                .bind(claim.lease_until_ms)
                .execute(&self.inner.pool)
                .await
                .map_err(storage)?;
            Ok(r.rows_affected() == 1)
        }))
    }

    fn get(&self, id: i64) -> InboxFuture<'_, Option<InboxRecord>> {
        Box::pin(bounded(self.inner.operation_timeout, async move {
            let Some(r) = sqlx::query(&self.inner.sql.get)
                .bind(id)
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(storage)?
            else {
                return Ok(None);
            };
            let mut rec = record(&r).map_err(storage)?;
            let headers: String = r.try_get("headers").map_err(storage)?;
            rec.headers = serde_json::from_str(&headers).unwrap_or_default();
            rec.body = Some(Bytes::from(r.try_get::<Vec<u8>, _>("body").map_err(storage)?));
            Ok(Some(rec))
        }))
    }

    fn list(&self, filter: ListFilter) -> InboxFuture<'_, Vec<InboxRecord>> {
        Box::pin(bounded(self.inner.operation_timeout, async move {
            let sql = match filter.state {
                None => &self.inner.sql.list,
                Some(InboxState::Pending | InboxState::Running) => &self.inner.sql.list_active,
                Some(_) => &self.inner.sql.list_finished,
            };
            let rows = sqlx::query(sql)
                .bind(filter.state.map(|s| s.code() as i16))
                .bind(filter.provider)
                .bind(i64::from(filter.limit))
                .fetch_all(&self.inner.pool)
                .await
                .map_err(storage)?;
            rows.iter().map(record).collect::<Result<_, _>>().map_err(storage)
        }))
    }

    fn replay(&self, id: i64, now_ms: i64) -> InboxFuture<'_, ()> {
        let _ = now_ms; // due now on the database's clock
        Box::pin(async move { self.replay_item(id).await.map(drop) })
    }

    /// One bounded statement per item (each `replay` is bounded itself), not one bound for
    /// them all: thousands of dead items take longer than one operation's bound.
    fn replay_dead(&self, now_ms: i64) -> InboxFuture<'_, u64> {
        let _ = now_ms; // due now on the database's clock
        Box::pin(async move {
            // Until pending items fill half the cap (as the SQLite inbox does): the other half
            // stays for new deliveries while the workers catch up.
            // (Counted once: the recount each second may land between two replays.)
            let room = self
                .inner
                .max_pending
                .div_ceil(2)
                .saturating_sub(self.inner.pending.load(Ordering::Relaxed));
            let mut n = 0;
            // Read a batch of ids at a time (oldest first), never every dead id at once.
            let mut after = 0i64;
            while n < room {
                let want = i64::try_from((room - n).min(REPLAY_BATCH)).unwrap_or(i64::MAX);
                let ids: Vec<i64> = bounded(LONG_OPERATION_TIMEOUT, async {
                    sqlx::query_scalar(&format!(
                        "SELECT id FROM {} WHERE state = 3 AND id > $1 ORDER BY id LIMIT $2",
                        self.inner.table
                    ))
                    .bind(after)
                    .bind(want)
                    .fetch_all(&self.inner.pool)
                    .await
                    .map_err(storage)
                })
                .await?;
                let Some(&last) = ids.last() else { break };
                after = last;
                // Items no longer dead (replayed, revived, purged meanwhile) are left as they
                // are; a database failure is said (the items replayed before it stay
                // replayed) rather than a partial count reported as success.
                n += self.replay_still_dead(&ids).await?;
            }
            Ok(n)
        })
    }

    /// Each batch bounded on its own (a large backlog takes many).
    fn purge(&self, before_ms: i64, include_dead: bool) -> InboxFuture<'_, u64> {
        Box::pin(async move {
            let sql = if include_dead {
                &self.inner.sql.purge_dead
            } else {
                &self.inner.sql.purge
            };
            let mut purged = 0;
            loop {
                // A batch of large bodies (stored out of line) can take longer to delete than
                // the connections' statement timeout allows an accept.
                let n = bounded(LONG_OPERATION_TIMEOUT, async {
                    let mut tx = self.inner.long_transaction().await?;
                    let r = sqlx::query(sql)
                        .bind(before_ms)
                        .execute(&mut *tx)
                        .await
                        .map_err(storage)?;
                    tx.commit().await.map_err(storage)?;
                    Ok::<_, InboxError>(r)
                })
                .await?
                .rows_affected();
                purged += n;
                if n < PURGE_BATCH {
                    return Ok(purged);
                }
            }
        })
    }

    fn stats(&self) -> InboxFuture<'_, InboxStats> {
        Box::pin(bounded(LONG_OPERATION_TIMEOUT, async move {
            let _turn = self.inner.stats_turn.lock().await;
            let mut s = InboxStats::default();
            // Counting every row of a large inbox takes longer than the connections' statement
            // timeout allows an accept (the worker samples the gauges at most 1/20 of the time
            // counting takes).
            let mut tx = self.inner.long_transaction().await?;
            let rows = sqlx::query(&self.inner.sql.stats)
                .fetch_all(&mut *tx)
                .await
                .map_err(storage)?;
            for r in rows {
                let state: i16 = r.try_get(0).map_err(storage)?;
                let n = u64::try_from(r.try_get::<i64, _>(1).map_err(storage)?).unwrap_or(0);
                let bytes = u64::try_from(r.try_get::<i64, _>(2).map_err(storage)?).unwrap_or(0);
                match InboxState::from_code(i64::from(state)) {
                    Some(InboxState::Pending) => s.pending = n,
                    Some(InboxState::Running) => s.running = n,
                    Some(InboxState::Done) => s.done = n,
                    Some(InboxState::Dead) => s.dead = n,
                    None => {}
                }
                s.body_bytes += bytes;
            }
            s.oldest_pending_ms = sqlx::query_scalar(&self.inner.sql.oldest)
                .fetch_one(&mut *tx)
                .await
                .map_err(storage)?;
            let size: Option<i64> = sqlx::query_scalar("SELECT pg_total_relation_size($1::regclass)")
                .bind(&self.inner.table)
                .fetch_one(&mut *tx)
                .await
                .map_err(storage)?;
            tx.commit().await.map_err(storage)?;
            s.disk_bytes = size.and_then(|n| u64::try_from(n).ok());
            Ok(s)
        }))
    }

    fn notified(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.0.notified()
    }
}

/// The boxed future a transactional handler returns.
///
/// ```
/// use hookguard_core::inbox::HandlerError;
/// use hookguard_postgres::TxFuture;
/// // `Ok` commits the handler's writes with the done mark; an error rolls them back.
/// let refused: TxFuture<'static> = Box::pin(async { Err(HandlerError::new("unknown project")) });
/// let err = hookguard_core::testing::block_on(refused).unwrap_err();
/// assert_eq!(err.to_string(), "unknown project");
/// ```
pub type TxFuture<'t> = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 't>>;

/// A handler that does its database work inside the transaction that marks the item done.
///
/// ```no_run
/// use hookguard_core::inbox::{ClaimedItem, Worker};
/// use hookguard_postgres::{transactional, PgInbox, TxFuture, TxHandler};
/// struct Record;
/// impl TxHandler for Record {
///     fn handle<'t>(&'t self, item: &'t ClaimedItem, tx: &'t mut sqlx::Transaction<'static, sqlx::Postgres>) -> TxFuture<'t> {
///         Box::pin(async move {
///             sqlx::query("INSERT INTO events (key) VALUES ($1)").bind(item.delivery.dedupe_key()).execute(&mut **tx).await?;
///             Ok(())
///         })
///     }
/// }
/// # async fn run(inbox: PgInbox) {
/// let worker = Worker::builder(std::sync::Arc::new(inbox.clone()), transactional(inbox, Record)).spawn();
/// # worker.shutdown().await; }
/// ```
pub trait TxHandler: Send + Sync + 'static {
    /// Handles one attempt inside `tx`; hookguard commits `tx` with the done mark when it
    /// returns `Ok`, and rolls it back otherwise.
    ///
    /// ```
    /// use hookguard_core::inbox::ClaimedItem;
    /// use hookguard_postgres::{TxFuture, TxHandler};
    /// use sqlx::{Postgres, Transaction};
    /// // A closure of this shape is a `TxHandler` too.
    /// fn count<'t>(_item: &'t ClaimedItem, tx: &'t mut Transaction<'static, Postgres>) -> TxFuture<'t> {
    ///     Box::pin(async move {
    ///         sqlx::query("UPDATE counters SET n = n + 1").execute(&mut **tx).await?;
    ///         Ok(())
    ///     })
    /// }
    /// fn is_handler(_: &impl TxHandler) {}
    /// is_handler(&count);
    /// ```
    fn handle<'t>(&'t self, item: &'t ClaimedItem, tx: &'t mut Transaction<'static, Postgres>) -> TxFuture<'t>;
}

impl<F> TxHandler for F
where
    F: for<'t> Fn(&'t ClaimedItem, &'t mut Transaction<'static, Postgres>) -> TxFuture<'t> + Send + Sync + 'static,
{
    fn handle<'t>(&'t self, item: &'t ClaimedItem, tx: &'t mut Transaction<'static, Postgres>) -> TxFuture<'t> {
        self(item, tx)
    }
}

/// Wraps a [`TxHandler`] into an [`InboxHandler`] for the [`Worker`](hookguard_core::inbox::Worker):
/// each attempt opens a transaction, runs the handler in it, marks the item done in it, and
/// commits — the application's writes and the done mark together, or neither.
///
/// What this promises: for writes made through `tx`, exactly once per item (per event key
/// within the retention). A crash before the commit leaves neither; the retry writes again
/// into a fresh transaction. What it does not: effects outside this database (an e-mail, an
/// HTTP call) still happen at least once — pass the item's dedupe key as an idempotency key.
///
/// Each running handler holds one of the inbox pool's connections for its whole run. At most
/// half of the pool's connections go to handlers' transactions (one with a pool of 2 or 3;
/// a pool of 1 leaves accepts none while a handler runs — give the inbox a pool of at least 2),
/// whatever the worker's `concurrency`: the rest stay for accepts, claims and completions, so
/// slow handlers never make an accept wait out its acquire timeout (and answer `503`). An item
/// claimed while every turn is taken is given back without counting an attempt and claimed
/// again after the worker's poll interval (1 s by default).
///
/// ```no_run
/// use hookguard_core::inbox::{ClaimedItem, Worker};
/// use hookguard_postgres::{transactional, PgInbox, TxFuture};
/// # async fn run(inbox: PgInbox) {
/// fn record<'t>(item: &'t ClaimedItem, tx: &'t mut sqlx::Transaction<'static, sqlx::Postgres>) -> TxFuture<'t> {
///     Box::pin(async move {
///         sqlx::query("INSERT INTO events (key) VALUES ($1)")
///             .bind(item.delivery.dedupe_key())
///             .execute(&mut **tx)
///             .await?;
///         Ok(())
///     })
/// }
/// let worker = Worker::builder(std::sync::Arc::new(inbox.clone()), transactional(inbox, record)).spawn();
/// # worker.shutdown().await; }
/// ```
pub fn transactional(inbox: PgInbox, handler: impl TxHandler) -> impl InboxHandler {
    let turns = (inbox.pool().options().get_max_connections() / 2).max(1) as usize;
    TxAdapter {
        inbox,
        handler: Arc::new(handler),
        turns: Arc::new(tokio::sync::Semaphore::new(turns)),
    }
}

struct TxAdapter {
    inbox: PgInbox,
    handler: Arc<dyn TxHandler>,
    /// Connections handlers may hold at once: half the pool (see [`transactional`]).
    turns: Arc<tokio::sync::Semaphore>,
}

impl InboxHandler for TxAdapter {
    fn handle(&self, item: ClaimedItem) -> HandlerFuture {
        let (inbox, handler, turns) = (self.inbox.clone(), Arc::clone(&self.handler), Arc::clone(&self.turns));
        Box::pin(async move {
            // No free turn: given back without an attempt (waiting here would spend the
            // attempt's lease, and count a failure for a handler that never ran).
            let Ok(_turn) = turns.try_acquire_owned() else {
                return Err(HandlerError::defer(
                    "every connection handlers may hold is in use; tried again shortly",
                    Duration::from_millis(200),
                ));
            };
            let mut tx = inbox.pool().begin().await?;
            handler.handle(&item, &mut tx).await?;
            if !inbox
                .complete_in(&mut tx, item.claim())
                .await
                .map_err(|e| HandlerError::new(e.to_string()))?
            {
                tx.rollback().await?;
                return Err(HandlerError::new("the claim was lost (lease expired); rolled back"));
            }
            tx.commit().await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> String {
        std::env::var("HOOKGUARD_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    async fn run(pool: &PgPool, sql: &str) {
        sqlx::query(sql)
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// A pool, and schema `hg_{name}_{pid}` dropped if an earlier run left it; also its inbox
    /// table's quoted name.
    async fn fresh_schema(name: &str) -> (PgPool, String, String) {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&url())
            .await
            .expect("PostgreSQL reachable (scripts/test.sh starts one)");
        let schema = format!("hg_{name}_{}", std::process::id());
        let t = format!("\"{schema}\".hookguard_inbox");
        run(&pool, &format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await;
        (pool, schema, t)
    }

    /// The migration's server bound and this side's timer have the same length, and either may
    /// end an open first (CI saw the server's "canceling statement due to statement timeout"
    /// where the test expected the open's own words): both ends are told apart from other
    /// errors and said the same way.
    #[tokio::test]
    async fn the_servers_end_of_a_migrations_wait_is_told_as_the_open_timing_out() {
        let pool = PgPoolOptions::new().max_connections(2).connect(&url()).await.unwrap();
        let failed = |sql: &'static str| {
            let pool = pool.clone();
            async move {
                let mut tx = pool.begin().await.unwrap();
                sqlx::query(
                    "SELECT set_config('statement_timeout', '50ms', true), set_config('lock_timeout', '50ms', true)",
                )
                .execute(&mut *tx)
                .await
                .unwrap();
                storage(sqlx::query(sql).execute(&mut *tx).await.unwrap_err())
            }
        };
        assert!(server_bound_ended(&failed("SELECT pg_sleep(5)").await));
        let mut holder = pool.acquire().await.unwrap();
        sqlx::query("SELECT pg_advisory_lock(hashtext('hg_unit_bound_test'))")
            .execute(&mut *holder)
            .await
            .unwrap();
        let behind_a_lock = failed("SELECT pg_advisory_xact_lock(hashtext('hg_unit_bound_test'))").await;
        sqlx::query("SELECT pg_advisory_unlock(hashtext('hg_unit_bound_test'))")
            .execute(&mut *holder)
            .await
            .unwrap();
        assert!(server_bound_ended(&behind_a_lock), "{behind_a_lock}");
        assert!(!server_bound_ended(&failed("SELECT no_such_column").await));
        assert!(!server_bound_ended(&InboxError::storage("took longer")));
        assert!(open_took_too_long(Duration::from_millis(500))
            .to_string()
            .contains("took longer than 500 ms"));
    }

    /// A 200 means the delivery is on disk: the connections `connect` opens commit
    /// synchronously even when the URL (or the role, or the database) turns it off.
    #[tokio::test]
    async fn connect_commits_synchronously_whatever_the_url_asks() {
        let (_pool, schema, _) = fresh_schema("sync_commit").await;
        let sep = if url().contains('?') { '&' } else { '?' };
        let off = format!("{}{sep}options=-c%20synchronous_commit%3Doff", url());
        let plain = PgPoolOptions::new().max_connections(1).connect(&off).await.unwrap();
        let s: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&plain)
            .await
            .unwrap();
        assert_eq!(s, "off", "the URL's setting applies to a plain pool");
        let inbox = PgInbox::builder().schema(schema.clone()).connect(&off).await.unwrap();
        for _ in 0..3 {
            let s: String = sqlx::query_scalar("SHOW synchronous_commit")
                .fetch_one(inbox.pool())
                .await
                .unwrap();
            assert_eq!(s, "on");
        }
        run(&plain, &format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await;
    }

    /// The first build kept the headers as `jsonb`; bound as text since, every accept of such
    /// an inbox failed and no record could be read, until the migration converts the column.
    #[tokio::test]
    async fn an_inbox_with_the_first_builds_jsonb_headers_keeps_working() {
        let (pool, schema, t) = fresh_schema("jsonb_headers").await;
        migrate(&pool, &schema, Duration::from_secs(60)).await.unwrap();
        run(
            &pool,
            &format!("ALTER TABLE {t} ALTER COLUMN headers TYPE jsonb USING headers::jsonb"),
        )
        .await;
        let old: i64 = sqlx::query_scalar(&format!(
            "INSERT INTO {t} (provider, dedupe_key, unique_key, event_id, state, received_at, next_attempt_at,
                              headers, body)
             VALUES ('buildworkpro', 'k_old', 'k_old', 'e_old', 0, 1, 0,
                     '[[\"content-type\", \"application/json\"]]', '\\x7b7d') RETURNING id"
        ))
        .fetch_one(&pool)
        .await
        .unwrap();
        let inbox = PgInbox::builder().schema(&schema).open(pool.clone()).await.unwrap();
        let record = inbox.get(old).await.unwrap().expect("the old record");
        assert_eq!(
            record.headers,
            [("content-type".to_owned(), "application/json".to_owned())]
        );
        let new = NewItem::from_parts("buildworkpro", Some("k_new".into()), Bytes::from_static(b"{}"));
        assert!(matches!(inbox.accept(new).await, Ok(Accepted::Stored(_))));
        drop(inbox);
        run(&pool, &format!("DROP SCHEMA \"{schema}\" CASCADE")).await;
    }

    /// `replay_dead` reads a batch of dead ids, then replays them one by one: an item done or
    /// waiting out a retry by its turn (another replica's replay and worker, a sender's copy
    /// reviving it) is left alone. A review found it replayed as `replay` does: the done item
    /// ran again, the pending one's attempts were reset, and both were counted.
    #[tokio::test]
    async fn replay_dead_leaves_items_no_longer_dead() {
        let (pool, schema, t) = fresh_schema("replay_dead_race").await;
        let inbox = PgInbox::builder().schema(&schema).open(pool.clone()).await.unwrap();
        let ids: Vec<i64> = sqlx::query_scalar(&format!(
            "INSERT INTO {t} (provider, dedupe_key, unique_key, scope, state, attempts, received_at,
                              next_attempt_at, finished_at, headers, body)
             VALUES ('buildworkpro', 'done', 'done', 0, 2, 1, 1, 0, 1, '[]', '\\x7b7d'),
                    ('buildworkpro', 'dead', 'dead', 0, 3, 10, 1, 0, 1, '[]', '\\x7b7d'),
                    ('buildworkpro', 'retry', 'retry', 0, 0, 2, 1, {DB_NOW} + 3600000, NULL, '[]', '\\x7b7d')
             RETURNING id"
        ))
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(inbox.replay_still_dead(&ids).await.unwrap(), 1);
        let rows: Vec<(i16, i32)> = sqlx::query_as(&format!("SELECT state, attempts FROM {t} ORDER BY id"))
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(
            rows,
            [(2, 1), (0, 0), (0, 2)],
            "done stays done, the retry keeps its attempts"
        );
        drop(inbox);
        run(&pool, &format!("DROP SCHEMA \"{schema}\" CASCADE")).await;
    }

    /// A purge waiting for a row's lock while a replay of that row commits does not delete the
    /// replayed (now pending) item: the delete checks its conditions on the row as it is then.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_purge_racing_a_replay_keeps_the_replayed_item() {
        let (pool, schema, t) = fresh_schema("purge_race").await;
        let inbox = PgInbox::builder().schema(&schema).open(pool.clone()).await.unwrap();
        // The worker's purge of done items, and `inbox purge --dead`.
        for include_dead in [false, true] {
            let id: i64 = sqlx::query_scalar(&format!(
                "INSERT INTO {t} (provider, dedupe_key, unique_key, scope, state, received_at, next_attempt_at,
                                  finished_at, headers, body)
                 VALUES ('buildworkpro', 'k', NULL, 0, 2, 1, 0, 1, '[]', '\\x7b7d') RETURNING id"
            ))
            .fetch_one(&pool)
            .await
            .unwrap();
            let mut replaying = pool.begin().await.unwrap();
            sqlx::query(&Sql::new(&t).replay)
                .bind(id)
                .fetch_optional(&mut *replaying)
                .await
                .unwrap()
                .expect("replayed");
            let purge = tokio::spawn({
                let inbox = inbox.clone();
                async move { inbox.purge(100, include_dead).await }
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
            replaying.commit().await.unwrap();
            assert_eq!(purge.await.unwrap().unwrap(), 0, "nothing purged ({include_dead})");
            let state: i16 = sqlx::query_scalar(&format!("SELECT state FROM {t} WHERE id = $1"))
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(state, 0, "the replayed item is pending ({include_dead})");
        }
        drop(inbox);
        run(&pool, &format!("DROP SCHEMA \"{schema}\" CASCADE")).await;
    }

    /// HCSS bodies without a time coalesce only while pending or running: a replayed one takes
    /// the key back unless another row holds it. Two replays of such bodies at once (or a
    /// replay beside an accept of the same body) cannot see each other's row before it commits:
    /// the second failed on the unique index, and `replay --dead` stopped there.
    #[tokio::test]
    async fn replays_racing_on_one_coalescing_key_both_succeed() {
        let (pool, schema, t) = fresh_schema("replay_race").await;
        let inbox = PgInbox::builder().schema(&schema).open(pool.clone()).await.unwrap();
        run(
            &pool,
            &format!(
                "INSERT INTO {t} (provider, dedupe_key, unique_key, scope, state, received_at, next_attempt_at,
                                  finished_at, headers, body)
                 SELECT 'hcss', 'same', NULL, 1, 3, 1, 0, 1, '[]', '\\x7b7d' FROM generate_series(1, 2)"
            ),
        )
        .await;
        let ids: Vec<i64> = sqlx::query_scalar(&format!("SELECT id FROM {t} ORDER BY id"))
            .fetch_all(&pool)
            .await
            .unwrap();
        let mut first = pool.begin().await.unwrap();
        sqlx::query(&Sql::new(&t).replay)
            .bind(ids[0])
            .fetch_optional(&mut *first)
            .await
            .unwrap()
            .expect("replayed");
        let second = tokio::spawn({
            let (inbox, id) = (inbox.clone(), ids[1]);
            async move { inbox.replay(id, hookguard_core::inbox::now_ms()).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        first.commit().await.unwrap();
        second
            .await
            .unwrap()
            .expect("the second replay, once the first committed");
        let (pending, keyed): (i64, i64) = sqlx::query_as(&format!(
            "SELECT count(*) FILTER (WHERE state = 0), count(unique_key) FROM {t}"
        ))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!((pending, keyed), (2, 1), "both pending, one holding the key");
        drop(inbox);
        run(&pool, &format!("DROP SCHEMA \"{schema}\" CASCADE")).await;
    }

    /// The driver logs a parameter it does not read with its value: such parameters are taken
    /// out first (names only, decoded as the URL parser decodes them); the rest of the URL is
    /// left byte for byte.
    #[test]
    fn parameters_the_driver_does_not_read_are_taken_out_by_name() {
        let strip = |u: &str| {
            let (url, dropped) = unknown_parameters_removed(u);
            (url.into_owned(), dropped)
        };
        let plain = "postgres://u:p%3Fw@h:5432/db?sslmode=disable&application_name=a%20b";
        assert_eq!(strip(plain), (plain.to_owned(), vec![]));
        assert_eq!(strip("postgres://u@h/db"), ("postgres://u@h/db".to_owned(), vec![]));
        assert_eq!(
            strip("postgres://u@h/db?passwd=hunter2&sslmode=disable&pass%77ord=x&connect_timeout=3"),
            (
                // `pass%77ord` is `password` to the driver: kept.
                "postgres://u@h/db?sslmode=disable&pass%77ord=x".to_owned(),
                vec!["passwd".to_owned(), "connect_timeout".to_owned()]
            )
        );
        assert_eq!(
            strip("postgres://u@h/db?passwd=hunter2#f"),
            ("postgres://u@h/db#f".to_owned(), vec!["passwd".to_owned()])
        );
        assert_eq!(percent_decoded("ssl%6dode+x%2"), "sslmode x%2");
        // One server option by name, as the driver reads it (it was dropped; a review).
        for kept in [
            "postgres://u@h/db?options[search_path]=hooks",
            "postgres://u@h/db?options%5Block_timeout%5D=2s",
        ] {
            assert_eq!(strip(kept), (kept.to_owned(), vec![]));
        }
        let (opts, dropped) = parse_url("postgres://u@h/db?passwd=hunter2&port=6000").unwrap();
        assert_eq!((opts.get_port(), dropped), (6000, vec!["passwd".to_owned()]));
        assert_eq!(check_url("postgres://u@h/db?passwd=hunter2"), Ok(()));
    }

    #[test]
    fn channel_names_fit_postgres_identifiers() {
        assert_eq!(channel_name("hookguard"), "hookguard_inbox_hookguard");
        let long = "s".repeat(63);
        let other = format!("{}t", "s".repeat(62));
        let (a, b) = (channel_name(&long), channel_name(&other));
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        assert_eq!(a, channel_name(&long), "stable");
        // The longest name that still fits is kept as it is.
        assert_eq!(channel_name(&"s".repeat(47)).len(), 63);
    }

    /// The purge runs once a minute against the whole retention: each statement deletes a
    /// batch read from the finished index (never a scan, which the statement timeout stops
    /// once the inbox holds millions of rows), repeated until nothing is left before the cut.
    #[tokio::test]
    async fn the_purge_deletes_batches_read_from_the_finished_index() {
        let (pool, schema, t) = fresh_schema("purge_plan").await;
        let inbox = PgInbox::builder().schema(&schema).open(pool.clone()).await.unwrap();
        // 12,000 done and 3,000 dead rows finished at 1..; 1,000 pending.
        run(
            &pool,
            &format!(
                "INSERT INTO {t} (provider, dedupe_key, unique_key, event_id, state, received_at,
                                  next_attempt_at, finished_at, headers, body)
                 SELECT 'buildworkpro', 'k' || g, 'k' || g, 'e' || g,
                        CASE WHEN g <= 12000 THEN 2 WHEN g <= 15000 THEN 3 ELSE 0 END, 1, 0,
                        CASE WHEN g <= 15000 THEN g END, '[]', '\\x00'
                 FROM generate_series(1, 16000) g"
            ),
        )
        .await;
        run(&pool, &format!("ANALYZE {t}")).await;
        // On a table this small a scan is cheaper, so the planner is told to avoid one where it
        // can: a plan that still scans means the index cannot serve the purge's conditions.
        let sql = Sql::new(&t);
        let mut conn = pool.acquire().await.unwrap();
        sqlx::raw_sql("SET enable_seqscan = off")
            .execute(&mut *conn)
            .await
            .unwrap();
        for purge in [&sql.purge, &sql.purge_dead] {
            let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {purge}"))
                .bind(100_i64)
                .fetch_all(&mut *conn)
                .await
                .unwrap();
            let plan = plan.join("\n");
            assert!(
                plan.contains("hookguard_inbox_finished_v2") && !plan.contains("Seq Scan"),
                "the purge scans instead of reading the finished index:\n{plan}"
            );
        }
        sqlx::raw_sql("RESET enable_seqscan").execute(&mut *conn).await.unwrap();
        drop(conn);
        // Done rows finished before 11,001: one statement deletes one batch, the purge repeats
        // it until the rest is gone.
        let one = sqlx::query(&sql.purge).bind(11_001_i64).execute(&pool).await.unwrap();
        assert_eq!(one.rows_affected(), PURGE_BATCH, "one statement, one batch");
        assert_eq!(inbox.purge(11_001, false).await.unwrap(), 11_000 - PURGE_BATCH);
        assert_eq!(
            inbox.purge(20_000, true).await.unwrap(),
            4_000,
            "the last done and every dead row"
        );
        let left: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {t}"))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(left, 1_000, "pending rows stay");
        drop(inbox);
        run(&pool, &format!("DROP SCHEMA \"{schema}\" CASCADE")).await;
    }

    /// A backlog must not make every claim sort every due row: the claim walks an index in
    /// its own order (next_attempt_at, id) and stops at the limit. A new inbox gets the index
    /// in its migration; one made by the first build (an index on next_attempt_at alone) is
    /// left alone by the migration and fixed by the two statements of [`claim_index_sql`]; a
    /// migration that finds everything in place takes no lock on the table.
    #[tokio::test]
    async fn a_claim_walks_the_due_index_instead_of_sorting_the_backlog() {
        let (pool, schema, t) = fresh_schema("claim_plan").await;
        let state = "SELECT (SELECT coalesce(bool_and(i.indisvalid), false) FROM pg_index i
                        JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = $1 AND c.relname = 'hookguard_inbox_due_v2'),
                       to_regclass(quote_ident($1) || '.hookguard_inbox_due') IS NOT NULL";
        let index_state = || async {
            sqlx::query_as::<_, (bool, bool)>(state)
                .bind(&schema)
                .fetch_one(&pool)
                .await
                .unwrap()
        };
        migrate(&pool, &schema, Duration::from_secs(60)).await.unwrap();
        assert_eq!(
            index_state().await,
            (true, false),
            "(claim index valid, old index there)"
        );
        run(
            &pool,
            &format!(
                "INSERT INTO {t} (provider, dedupe_key, unique_key, event_id, state, received_at,
                                  next_attempt_at, headers, body)
                 SELECT 'buildworkpro', 'k' || g, 'k' || g, 'e' || g, 0, 1, 0, '[]', '\\x00'
                 FROM generate_series(1, 20000) g"
            ),
        )
        .await;
        run(&pool, &format!("ANALYZE {t}")).await;

        // Everything in place: a migration while a concurrent index build's lock is held.
        let mut holder = pool.begin().await.unwrap();
        sqlx::query(&format!("LOCK TABLE {t} IN SHARE UPDATE EXCLUSIVE MODE"))
            .execute(&mut *holder)
            .await
            .unwrap();
        let again = tokio::time::timeout(
            Duration::from_secs(10),
            migrate(&pool, &schema, Duration::from_secs(60)),
        )
        .await;
        holder.rollback().await.unwrap();
        assert!(
            matches!(again, Ok(Ok(()))),
            "a migration with nothing to do waited for the table: {again:?}"
        );

        // An inbox of the first build: left as it is, then fixed by the operator's statements.
        run(&pool, &format!("DROP INDEX \"{schema}\".hookguard_inbox_due_v2")).await;
        run(
            &pool,
            &format!("CREATE INDEX hookguard_inbox_due ON {t} (next_attempt_at) WHERE state IN (0, 1)"),
        )
        .await;
        migrate(&pool, &schema, Duration::from_secs(60)).await.unwrap();
        assert_eq!(index_state().await, (false, true));
        for s in claim_index_sql(&schema) {
            run(&pool, &s).await;
        }
        assert_eq!(index_state().await, (true, false));
        // A concurrent build that failed leaves an invalid index, which `IF NOT EXISTS` skips:
        // the statements given then drop it first.
        run(
            &pool,
            &format!(
                "UPDATE pg_index SET indisvalid = false
                 WHERE indexrelid = to_regclass('\"{schema}\".hookguard_inbox_due_v2')"
            ),
        )
        .await;
        assert_eq!(index_state().await, (false, false));
        let mut tx = pool.begin().await.unwrap();
        let fix = index_fix(
            &mut tx,
            &schema,
            "hookguard_inbox_due_v2",
            claim_index_sql(&schema).into(),
        )
        .await
        .unwrap()
        .expect("an invalid index needs fixing");
        tx.rollback().await.unwrap();
        for s in fix {
            run(&pool, &s).await;
        }
        assert_eq!(index_state().await, (true, false));

        let sql = Sql::new(&t);
        let claim = &sql.claim;
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {claim}"))
            .bind(60_000_i64)
            .bind(1_i64)
            .bind(None::<Vec<String>>)
            .fetch_all(&pool)
            .await
            .unwrap();
        // The plan a prepared statement settles on after a few runs (generic: no values).
        let mut conn = pool.acquire().await.unwrap();
        for s in [
            format!("PREPARE hg_claim(bigint, bigint, text[]) AS {claim}"),
            "SET plan_cache_mode = force_generic_plan".to_owned(),
        ] {
            sqlx::raw_sql(&s).execute(&mut *conn).await.unwrap();
        }
        let generic: Vec<String> = sqlx::query_scalar("EXPLAIN EXECUTE hg_claim(60000, 1, NULL)")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        // Also when the claim names its senders (receivers sharing one inbox).
        let generic_of: Vec<String> = sqlx::query_scalar("EXPLAIN EXECUTE hg_claim(60000, 1, ARRAY['buildworkpro'])")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        sqlx::raw_sql("DEALLOCATE hg_claim; RESET plan_cache_mode")
            .execute(&mut *conn)
            .await
            .unwrap();
        drop(conn);
        // A list of dead items reads the finished index, not the table (20,000 pending rows
        // here, no dead one). (Pending and running lists may read the due index; which plan is
        // cheaper depends on the statistics, so it is not pinned here.)
        let mut lists = Vec::new();
        for (list, state) in [(&sql.list_finished, 3_i16)] {
            let p: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {list}"))
                .bind(state)
                .bind(None::<String>)
                .bind(50_i64)
                .fetch_all(&pool)
                .await
                .unwrap();
            lists.push(p.join("\n"));
        }
        run(&pool, &format!("DROP SCHEMA \"{schema}\" CASCADE")).await;
        for (plan, index) in lists.iter().zip(["hookguard_inbox_finished_v2"]) {
            assert!(
                plan.contains(index) && !plan.contains("Seq Scan"),
                "the list reads the table:\n{plan}"
            );
        }
        for plan in [plan.join("\n"), generic.join("\n"), generic_of.join("\n")] {
            assert!(
                plan.contains("hookguard_inbox_due_v2") && !plan.contains("Sort"),
                "the claim sorts instead of walking the index:\n{plan}"
            );
        }
    }
}
