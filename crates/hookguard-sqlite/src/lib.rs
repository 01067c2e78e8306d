//! # hookguard-sqlite
//!
//! The embedded default [`InboxStore`]: one SQLite file, no server. A delivery is answered
//! `2xx` only after its row is committed with `journal_mode=WAL` and `synchronous=FULL`, i.e.
//! synced to disk.
//!
//! **Group commit.** One fsync per request would cap accepts at the disk's sync rate (about
//! 5,500 commits/s on the machines this was measured on). Every operation goes to one writer
//! thread instead, which takes everything queued — up to [`SqliteInboxBuilder::max_batch`]
//! operations — into one transaction and one sync, then answers each caller. Under load,
//! concurrent accepts share commits; alone, an accept costs one commit. A batch's answers reach
//! the callers' runtime with one wake-up (not one per caller: on a core shared with the
//! runtime, each would cost a context switch), and while the callers of the last batch are
//! still coming back the writer waits for them up to 200 µs, yielding its core, so the next
//! batch takes them all in one sync.
//!
//! **Bounds.** The queue to the writer is bounded (a full queue answers a storage error,
//! i.e. `503 store_unavailable` with `Retry-After`); pending and running items are capped
//! ([`max_pending`](SqliteInboxBuilder::max_pending), default 100,000); done items are purged
//! after the retention by the worker, so disk use stays flat under a flood of unique ids.
//!
//! **Other processes.** The file can be read and changed by other processes while a receiver
//! runs (`hookguard inbox list|show|replay|purge|stats`): WAL lets readers in, and writers wait
//! up to 5 s for each other.
//!
//! **Runtime.** Operations run in a Tokio runtime with its timer enabled (`#[tokio::main]` and
//! axum's and actix-web's runtimes have it): each waits for the writer at most its
//! [`operation_timeout`](SqliteInboxBuilder::operation_timeout).
//!
//! ```
//! use hookguard_core::inbox::{InboxStore, NewItem, Accepted};
//! use hookguard_core::{schemes::BuildWorkPro, testing};
//! use hookguard_sqlite::SqliteInbox;
//! # let dir = std::env::temp_dir().join(format!("hg-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let inbox = SqliteInbox::open(dir.join("inbox.db"))?;
//! let d = testing::deliver(BuildWorkPro::new(), "whsec_k", br#"{"id":"evt_1","type":"bid.accepted"}"#).unwrap();
//! let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
//! rt.block_on(async {
//!     let first = inbox.accept(NewItem::from_delivery(&d, vec![], 0)).await?;
//!     assert!(matches!(first, Accepted::Stored(_)));
//!     let copy = inbox.accept(NewItem::from_delivery(&d, vec![], 0)).await?;
//!     assert!(matches!(copy, Accepted::Duplicate(_)));
//!     Ok::<_, hookguard_core::inbox::InboxError>(())
//! })?;
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver as ChanRx, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookguard_core::inbox::{
    wake_every_worker, Accepted, ClaimRef, ClaimedItem, InboxError, InboxFuture, InboxRecord, InboxState, InboxStats,
    InboxStore, ListFilter, NewItem, DEFAULT_MAX_PENDING,
};
use hookguard_core::DedupeScope;
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{oneshot, Notify};

mod fresh;
use fresh::Fresh;
mod mailbox;
use mailbox::Mailbox;

/// The schema, applied idempotently at open. `unique_key` holds the dedupe key while it
/// recognises copies (always for retained keys; only until its first claim for in-flight-only
/// keys) and is `NULL` otherwise; a partial unique index makes the insert insert-if-absent.
///
/// Bodies live in a table of their own: the item rows stay small (dozens to a page), so the
/// claim and the completion rewrite a shared page instead of the 4 KiB page holding each body,
/// and the body is written once.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS hookguard_inbox_body (
    id   INTEGER PRIMARY KEY,
    body BLOB    NOT NULL
);
-- AUTOINCREMENT: an id is never given twice, also after the newest rows were purged (`inbox
-- show 42` and a log line naming item 42 always mean one delivery). A file made by an earlier
-- build keeps its table (ids of purged newest rows can come again there).
CREATE TABLE IF NOT EXISTS hookguard_inbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    provider        TEXT    NOT NULL,
    dedupe_key      TEXT,
    unique_key      TEXT,
    scope           INTEGER NOT NULL DEFAULT 0,
    event_id        TEXT,
    event_type      TEXT,
    state           INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    received_at     INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    finished_at     INTEGER,
    last_error      TEXT,
    headers         TEXT    NOT NULL,
    body_len        INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS hookguard_inbox_unique ON hookguard_inbox(provider, unique_key)
    WHERE unique_key IS NOT NULL;
-- Only pending and running rows are ever claimed: done and dead rows leave this index.
DROP INDEX IF EXISTS hookguard_inbox_due;
CREATE INDEX IF NOT EXISTS hookguard_inbox_due_v2 ON hookguard_inbox(next_attempt_at) WHERE state IN (0, 1);
-- Finished rows by state and time: the purge (once a minute) deletes a range instead of
-- scanning a table that holds the whole retention (millions of rows), and deletes exactly
-- those rows' bodies. A completion appends at the end of the range (finished_at grows).
DROP INDEX IF EXISTS hookguard_inbox_finished;
CREATE INDEX IF NOT EXISTS hookguard_inbox_finished_v2 ON hookguard_inbox(state, finished_at)
    WHERE state IN (2, 3);
-- Values the writer keeps across restarts: `timeline_ahead`, how far the timeline of due times
-- and leases runs ahead of the wall clock (see `Timeline`; written when it grows, rarely), and
-- `timeline_floor`, the latest wall-clock time the writer used, and `timeline_top`, the latest
-- time the timeline itself reached (both written when they moved on by a second or more);
-- `max_pending`, the cap last configured (for processes that open the file without one).
CREATE TABLE IF NOT EXISTS hookguard_inbox_meta (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// The layout of the tables [`SCHEMA`] makes, recorded in the file's `user_version` when this
/// build opens it. A file made by a newer layout is refused (its meaning of a row may not be
/// ours: an older build writing it could lose or misread deliveries); one without a recorded
/// layout (made before layouts were recorded) is checked column by column before it is used.
const SCHEMA_VERSION: i64 = 1;

/// The file's `application_id` (SQLite's header field naming the application a database
/// belongs to): `hkgd`.
const APPLICATION_ID: i64 = 0x686b_6764;

/// One batch (`?3` rows, oldest first) of the purge of one finished state (`?2`: done or
/// dead) before `?1`: a range of the finished index (the literal `state IN (2, 3)` lets the
/// planner use that partial index). Both statements pick the same rows: the bodies go first,
/// the items are unchanged in between.
const PURGE_ITEMS: &str = "DELETE FROM hookguard_inbox WHERE id IN
     (SELECT id FROM hookguard_inbox WHERE state = ?2 AND state IN (2, 3) AND finished_at < ?1
      ORDER BY finished_at LIMIT ?3)";
const PURGE_BODIES: &str = "DELETE FROM hookguard_inbox_body WHERE id IN
     (SELECT id FROM hookguard_inbox WHERE state = ?2 AND state IN (2, 3) AND finished_at < ?1
      ORDER BY finished_at LIMIT ?3)";

/// Rows per state in one purge batch: each batch is one writer transaction, so accepts go on
/// between batches however much is purged (the first purge after a long stop, `inbox purge
/// --older-than 0s` on a large file).
const PURGE_BATCH: i64 = 5_000;

const COLUMNS: &str = "id, provider, dedupe_key, event_id, event_type, state, attempts, received_at, \
                       next_attempt_at, finished_at, last_error, body_len";

/// The default of [`SqliteInboxBuilder::checkpoint_pages`].
const DEFAULT_CHECKPOINT_PAGES: u32 = 4_000;

/// Configures a [`SqliteInbox`].
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("hg-doc-b-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// let inbox = hookguard_sqlite::SqliteInbox::builder(dir.join("inbox.db")).max_pending(10_000).open()?;
/// # drop(inbox); std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), hookguard_core::inbox::InboxError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SqliteInboxBuilder {
    path: PathBuf,
    max_pending: Cap,
    max_batch: usize,
    queue: usize,
    queue_bytes: usize,
    operation_timeout: Duration,
    checkpoint_pages: u32,
    fresh_bodies: usize,
    unclaimed_warning: Duration,
}

/// Where an opened inbox's pending cap comes from.
#[derive(Debug, Clone, Copy)]
enum Cap {
    /// This one, recorded in the file.
    Set(u64),
    /// The one recorded in the file (by the last process that set one), else the default;
    /// nothing recorded: for tools that look into an inbox another process serves.
    Recorded,
}

/// Default bound of the deliveries waiting for the writer, in bytes.
///
/// ```
/// use hookguard_sqlite::{SqliteInbox, DEFAULT_QUEUE_BYTES};
/// assert_eq!(DEFAULT_QUEUE_BYTES, 64 * 1024 * 1024);
/// # let dir = std::env::temp_dir().join(format!("hg-doc-dqb-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// // Half the default where memory is tight: accepts beyond it answer `503` at once.
/// let inbox = SqliteInbox::builder(dir.join("inbox.db")).queue_bytes(DEFAULT_QUEUE_BYTES / 2).open()?;
/// # drop(inbox); std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), hookguard_core::inbox::InboxError>(())
/// ```
pub const DEFAULT_QUEUE_BYTES: usize = 64 * 1024 * 1024;
/// Default bound of the bodies kept in memory for this process's claims, in bytes.
///
/// ```
/// use hookguard_sqlite::{SqliteInbox, DEFAULT_FRESH_BODIES};
/// assert_eq!(DEFAULT_FRESH_BODIES, 16 * 1024 * 1024);
/// # let dir = std::env::temp_dir().join(format!("hg-doc-dfb-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// // A process whose worker runs elsewhere keeps none: claims read bodies from the file.
/// let inbox = SqliteInbox::builder(dir.join("inbox.db")).fresh_bodies(0).open()?;
/// # drop(inbox); std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), hookguard_core::inbox::InboxError>(())
/// ```
pub const DEFAULT_FRESH_BODIES: usize = 16 * 1024 * 1024;
/// Default bound of one operation's wait for the writer.
///
/// ```
/// use std::time::Duration;
/// use hookguard_sqlite::DEFAULT_OPERATION_TIMEOUT;
/// assert_eq!(DEFAULT_OPERATION_TIMEOUT, Duration::from_secs(4));
/// // Below the senders' timeouts (Procore waits 5 s): a stalled disk answers `503` in time.
/// assert!(DEFAULT_OPERATION_TIMEOUT < Duration::from_secs(5));
/// let builder = hookguard_sqlite::SqliteInbox::builder("inbox.db").operation_timeout(DEFAULT_OPERATION_TIMEOUT / 2);
/// # drop(builder);
/// ```
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(4);
/// How soon give-backs that did not commit are tried again when nothing else comes.
const GIVE_BACK_AFTER: Duration = Duration::from_secs(1);
/// The longest the writer waits for a batch to fill up to the size of the one before.
const GATHER_FOR: Duration = Duration::from_micros(200);
/// The most reader threads alive at once per inbox (see `Inner::readers`).
const MAX_READERS: usize = 8;

/// Creates the inbox file, if it does not exist yet, readable and writable by its owner only:
/// it holds the deliveries' bodies (SQLite gives its `-wal` and `-shm` files the same mode).
/// An existing file keeps its mode.
fn private_file(path: &Path) -> Result<(), InboxError> {
    let mut new = std::fs::OpenOptions::new();
    new.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut new, 0o600);
    match new.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(InboxError::storage(format!("cannot create {}: {e}", path.display()))),
    }
}

/// The default of [`SqliteInboxBuilder::unclaimed_warning`] (5 minutes).
///
/// ```
/// use std::time::Duration;
/// use hookguard_sqlite::DEFAULT_UNCLAIMED_WARNING;
/// assert_eq!(DEFAULT_UNCLAIMED_WARNING, Duration::from_secs(5 * 60));
/// // The same default as the PostgreSQL inbox's, from the core.
/// assert_eq!(DEFAULT_UNCLAIMED_WARNING, hookguard_core::inbox::DEFAULT_UNCLAIMED_WARNING);
/// let builder = hookguard_sqlite::SqliteInbox::builder("inbox.db").unclaimed_warning(DEFAULT_UNCLAIMED_WARNING * 2);
/// # drop(builder);
/// ```
pub const DEFAULT_UNCLAIMED_WARNING: Duration = hookguard_core::inbox::DEFAULT_UNCLAIMED_WARNING;

/// The bound of a purge batch and of a replay of every dead item (they may write for longer).
const LONG_OPERATION_TIMEOUT: Duration = Duration::from_secs(90);

impl SqliteInboxBuilder {
    /// The most pending and running items; accepts beyond it answer `503` (default 100,000).
    /// Recorded in the file (the default too), so a tool that looks into the inbox while this
    /// process serves it ([`SqliteInbox::open_existing`], the `hookguard inbox` commands)
    /// keeps to it.
    ///
    /// ```
    /// use hookguard_core::inbox::{InboxError, InboxStore, NewItem};
    /// use bytes::Bytes;
    /// # let dir = std::env::temp_dir().join(format!("hg-doc-mp-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// let inbox = hookguard_sqlite::SqliteInbox::builder(dir.join("inbox.db")).max_pending(1).open()?;
    /// let item = |id: &str| NewItem::from_parts("buildworkpro", Some(format!("buildworkpro:{id}")), Bytes::from_static(b"{}"));
    /// rt.block_on(inbox.accept(item("evt_1")))?;
    /// // The cap is reached: the next new delivery is refused (`503`), nothing stored.
    /// assert!(matches!(rt.block_on(inbox.accept(item("evt_2"))), Err(InboxError::Full { limit: 1 })));
    /// # drop(inbox); std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), InboxError>(())
    /// ```
    pub fn max_pending(mut self, n: u64) -> Self {
        self.max_pending = Cap::Set(n);
        self
    }
    /// How long a due item may wait unclaimed before this process, while it accepts
    /// deliveries, warns that no worker is taking this inbox's items (default 5 minutes,
    /// [`DEFAULT_UNCLAIMED_WARNING`]). An inbox route without a running
    /// [`Worker`](hookguard_core::inbox) answers every delivery `200` and handles none; nothing
    /// else says so until the pending cap answers `503`. Checked after a batch of accepts, at
    /// most once a minute (sooner when this is shorter), by one indexed read of the item due
    /// longest ago, so warned at most once a minute while no worker runs (once per this
    /// setting when it is shorter, at least 100 ms apart). `Duration::MAX` turns it off.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("hg-doc-uw-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// let inbox = hookguard_sqlite::SqliteInbox::builder(dir.join("inbox.db"))
    ///     .unclaimed_warning(std::time::Duration::from_secs(60))
    ///     .open()?;
    /// # drop(inbox); std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), hookguard_core::inbox::InboxError>(())
    /// ```
    pub fn unclaimed_warning(mut self, d: Duration) -> Self {
        self.unclaimed_warning = d;
        self
    }

    /// Keeps the pending cap recorded in the file (the default when none is) instead of
    /// setting one: what a tool opening an inbox another process serves wants.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("hg-doc-kr-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// let path = dir.join("inbox.db");
    /// drop(hookguard_sqlite::SqliteInbox::builder(&path).max_pending(500).open()?);
    /// let tool = hookguard_sqlite::SqliteInbox::builder(&path).keep_recorded_cap().open()?;
    /// # drop(tool); std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), hookguard_core::inbox::InboxError>(())
    /// ```
    pub fn keep_recorded_cap(mut self) -> Self {
        self.max_pending = Cap::Recorded;
        self
    }
    /// The most operations one transaction (one sync) carries (default 512).
    ///
    /// ```
    /// use hookguard_core::inbox::{InboxStore, NewItem};
    /// # let dir = std::env::temp_dir().join(format!("hg-doc-mb-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// // One sync per operation: each accept commits on its own.
    /// let inbox = hookguard_sqlite::SqliteInbox::builder(dir.join("inbox.db")).max_batch(1).open()?;
    /// for id in ["evt_1", "evt_2", "evt_3"] {
    ///     rt.block_on(inbox.accept(NewItem::from_parts("hcss", Some(format!("hcss:{id}")), bytes::Bytes::new())))?;
    /// }
    /// assert_eq!(rt.block_on(inbox.stats())?.pending, 3);
    /// # drop(inbox); std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), hookguard_core::inbox::InboxError>(())
    /// ```
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }
    /// The most operations waiting for the writer (default 16,384); beyond it callers get a
    /// storage error (an accept: `503 store_unavailable`, retried by the sender), not `Full`,
    /// which is the pending items' cap.
    ///
    /// ```
    /// use hookguard_core::inbox::{Accepted, InboxStore, NewItem};
    /// # let dir = std::env::temp_dir().join(format!("hg-doc-qn-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// let inbox = hookguard_sqlite::SqliteInbox::builder(dir.join("inbox.db")).queue(1_024).open()?;
    /// let item = NewItem::from_parts("hcss", Some("hcss:evt_1".into()), bytes::Bytes::from_static(b"{}"));
    /// // One at a time, operations never wait behind others: the bound is not reached.
    /// assert!(matches!(rt.block_on(inbox.accept(item.clone()))?, Accepted::Stored(_)));
    /// assert!(matches!(rt.block_on(inbox.accept(item))?, Accepted::Duplicate(_)));
    /// # drop(inbox); std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), hookguard_core::inbox::InboxError>(())
    /// ```
    pub fn queue(mut self, n: usize) -> Self {
        self.queue = n.max(1);
        self
    }

    /// The most bytes of deliveries (bodies and headers) waiting for the writer (default
    /// 64 MiB); beyond it an accept fails at once (`503`, the sender retries) instead of
    /// holding its body in memory behind a disk that does not keep up. One delivery alone is
    /// always queued, whatever its size. The batch the writer is committing is no longer
    /// counted: with it, up to about twice this is held.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("hg-doc-q-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// let inbox = hookguard_sqlite::SqliteInbox::builder(dir.join("inbox.db")).queue_bytes(16 << 20).open()?;
    /// # drop(inbox); std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), hookguard_core::inbox::InboxError>(())
    /// ```
    pub fn queue_bytes(mut self, n: usize) -> Self {
        self.queue_bytes = n;
        self
    }

    /// The longest an operation waits for the writer (default 4 s; a purge batch or a replay
    /// of every dead item 90 s). A disk that stalls, or another process holding the file's
    /// write lock, then fails the operation — an accept answers `503` + `Retry-After` while
    /// the sender still waits — instead of waiting for as long as the disk does. The
    /// operation may still be carried out afterwards (an accept then finds its retry a
    /// copy). Keep it below the senders' timeouts (Procore waits 5 s).
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("hg-doc-t-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// let inbox = hookguard_sqlite::SqliteInbox::builder(dir.join("inbox.db"))
    ///     .operation_timeout(std::time::Duration::from_secs(3))
    ///     .open()?;
    /// # drop(inbox); std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), hookguard_core::inbox::InboxError>(())
    /// ```
    pub fn operation_timeout(mut self, d: Duration) -> Self {
        self.operation_timeout = d;
        self
    }

    /// How many pages the write-ahead log may hold before the writer copies them into the
    /// database file (SQLite's `wal_autocheckpoint`; default 4,000 pages, a WAL of up to
    /// about 16 MiB beside the file).
    ///
    /// A page that many commits rewrite (the newest leaf of each B-tree, the index pages, the
    /// file's header page) is copied once per checkpoint, so a longer interval copies less:
    /// `serve --inbox` accepted 8–16 % more deliveries per second with 4,000 than with
    /// SQLite's 1,000 (BENCHMARKS.md). The checkpoint runs on the writer thread, so accepts
    /// wait while it copies: at half the saturation rate the p99 accept latency was 6 ms with
    /// 1,000 pages, 12 ms with 4,000 and 25 ms with 16,000. A smaller value keeps the WAL file
    /// and that wait smaller.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("hg-doc-c-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// let inbox = hookguard_sqlite::SqliteInbox::builder(dir.join("inbox.db")).checkpoint_pages(1_000).open()?;
    /// # drop(inbox); std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), hookguard_core::inbox::InboxError>(())
    /// ```
    pub fn checkpoint_pages(mut self, n: u32) -> Self {
        self.checkpoint_pages = n.max(1);
        self
    }

    /// How many bytes of bodies just stored are kept in memory until this process's worker
    /// claims their items (default 16 MiB; 0 keeps none). A worker that keeps up claims an
    /// item milliseconds after it was stored; its claim then takes the body from memory
    /// instead of reading back what was just written (about 6 % less server CPU per delivery
    /// through `hookguard serve --inbox`, BENCHMARKS.md). A body is kept at most 30 s, and handed out
    /// only to a claim of the same row; beyond the bound the oldest are dropped, and a claim
    /// reads those from the file as before.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("hg-doc-f-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// let inbox = hookguard_sqlite::SqliteInbox::builder(dir.join("inbox.db")).fresh_bodies(4 << 20).open()?;
    /// # drop(inbox); std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), hookguard_core::inbox::InboxError>(())
    /// ```
    pub fn fresh_bodies(mut self, bytes: usize) -> Self {
        self.fresh_bodies = bytes;
        self
    }

    /// Opens (creating if needed) the file and starts its writer thread.
    ///
    /// # Errors
    /// The file cannot be opened, is not a hookguard inbox, or is an inbox of a layout this
    /// build does not write (a newer hookguard's; the file is left as it was).
    ///
    /// ```
    /// use hookguard_sqlite::SqliteInbox;
    /// # let dir = std::env::temp_dir().join(format!("hg-doc-bo-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// let inbox = SqliteInbox::builder(dir.join("inbox.db")).max_pending(10_000).open()?;
    /// assert!(inbox.path().is_file());
    /// // A directory is not an inbox file, and a missing directory is not created.
    /// assert!(SqliteInbox::builder(&dir).open().is_err());
    /// assert!(SqliteInbox::builder(dir.join("missing/inbox.db")).open().is_err());
    /// # drop(inbox); std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), hookguard_core::inbox::InboxError>(())
    /// ```
    pub fn open(self) -> Result<SqliteInbox, InboxError> {
        not_a_directory(&self.path)?;
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
            return Err(InboxError::storage(format!(
                "the directory {} does not exist",
                parent.display()
            )));
        }
        // Tables go only into a new or empty database or an inbox of a layout this build
        // writes: another application's database, or an inbox it does not know, is refused
        // before anything (even its journal mode) is changed.
        if std::fs::metadata(&self.path).is_ok_and(|m| m.is_file() && m.len() > 0) {
            let found = probe(&self.path)?;
            if found.inbox == 0 && (found.others > 0 || found.application_id != 0 || found.version != 0) {
                return Err(InboxError::storage(format!(
                    "{} is a SQLite database of something else, not a hookguard inbox",
                    self.path.display(),
                )));
            }
            found.usable(&self.path)?;
        }
        private_file(&self.path)?;
        let conn = connect(&self.path)?;
        // Checked again on this connection, in the transaction that applies the schema: another
        // process (a newer build) may have changed the file since the probe. A file already
        // stamped (its schema in place) is checked in a deferred transaction, which takes no
        // write lock (the `inbox` commands open the file `serve` is writing); any other is
        // checked again and stamped under the write lock (`IMMEDIATE`, waited for as every
        // write is: a deferred transaction that read first could not wait for it).
        let apply = |write_locked: bool| -> Result<bool, InboxError> {
            conn.execute_batch(if write_locked { "BEGIN IMMEDIATE" } else { "BEGIN" })
                .map_err(storage)?;
            let done = (|| {
                let found = read_probe(&conn).map_err(storage)?;
                found.usable(&self.path)?;
                let stamped = (found.version, found.application_id) == (SCHEMA_VERSION, APPLICATION_ID);
                if !stamped && !write_locked {
                    return Ok(false);
                }
                conn.execute_batch(SCHEMA).map_err(storage)?;
                if !stamped {
                    conn.execute_batch(&format!(
                        "PRAGMA user_version = {SCHEMA_VERSION}; PRAGMA application_id = {APPLICATION_ID};"
                    ))
                    .map_err(storage)?;
                }
                conn.execute_batch("COMMIT").map_err(storage)?;
                Ok(true)
            })();
            if !matches!(done, Ok(true)) {
                let _ = conn.execute_batch("ROLLBACK");
            }
            done
        };
        if !apply(false)? {
            apply(true)?;
        }
        conn.execute_batch(&format!("PRAGMA wal_autocheckpoint={};", self.checkpoint_pages))
            .map_err(storage)?;
        let max_pending = match self.max_pending {
            Cap::Set(n) => {
                set_meta(&conn, "max_pending", i64::try_from(n).unwrap_or(i64::MAX)).map_err(storage)?;
                n
            }
            Cap::Recorded => recorded(&conn, "max_pending")
                .map_err(storage)?
                .map_or(DEFAULT_MAX_PENDING, i64::unsigned_abs),
        };
        let pending = count_pending(&conn).map_err(storage)?;
        let clock = Timeline::load(&conn).map_err(storage)?;
        let (tx, rx) = mpsc::sync_channel(self.queue);
        let notify = Arc::new(Notify::new());
        let queued = Arc::new(AtomicUsize::new(0));
        let mailbox = Arc::new(Mailbox::default());
        let writer = Writer {
            conn,
            rx,
            queued: Arc::clone(&queued),
            mailbox: Arc::clone(&mailbox),
            fresh: Fresh::new(self.fresh_bodies),
            giving_back: Vec::new(),
            last_batch: 0,
            committed_at: Instant::now(),
            failure_log: FailureLog::default(),
            files: Files::of(&self.path),
            max_pending,
            max_batch: self.max_batch,
            pending,
            counted_at: Instant::now(),
            notify: Arc::clone(&notify),
            synced: true,
            clock,
            wall: hookguard_core::inbox::now_ms,
            unclaimed: Unclaimed::new(self.unclaimed_warning),
        };
        let (closing, writer_closed) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("hookguard-sqlite".into())
            .spawn(move || {
                writer.run();
                // The connection is closed (checkpointed, its log removed) by now.
                drop(closing);
            })
            .map_err(storage)?;
        Ok(SqliteInbox {
            inner: Arc::new(Inner {
                tx: Some(tx),
                writer_closed: std::sync::Mutex::new(Some(writer_closed)),
                notify,
                path: self.path,
                stats_turn: tokio::sync::Mutex::new(()),
                list_turns: tokio::sync::Semaphore::new(4),
                readers: Arc::default(),
                queued,
                queue_bytes: self.queue_bytes,
                operation_timeout: self.operation_timeout,
                mailbox,
            }),
        })
    }
}

/// The SQLite inbox. Cheap to clone; the writer thread stops when the last clone is dropped.
///
/// ```
/// use hookguard_core::inbox::{InboxStore, NewItem};
/// use hookguard_sqlite::SqliteInbox;
/// # let dir = std::env::temp_dir().join(format!("hg-doc-si-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
/// let inbox = SqliteInbox::open(dir.join("inbox.db"))?;
/// let for_worker = inbox.clone(); // the same file and writer
/// rt.block_on(inbox.accept(NewItem::from_parts("hcss", Some("hcss:evt_1".into()), bytes::Bytes::new())))?;
/// assert_eq!(rt.block_on(for_worker.stats())?.pending, 1);
/// # drop((inbox, for_worker)); std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), hookguard_core::inbox::InboxError>(())
/// ```
#[derive(Clone)]
pub struct SqliteInbox {
    inner: Arc<Inner>,
}

struct Inner {
    /// The writer's queue; `None` once closing, and for an inbox opened read-only.
    tx: Option<SyncSender<Op>>,
    /// Disconnected once the writer thread has closed its connection.
    writer_closed: std::sync::Mutex<Option<mpsc::Receiver<()>>>,
    notify: Arc<Notify>,
    path: PathBuf,
    /// One `stats` at a time: callers (the inspector's page, the worker's gauges) wait their
    /// turn instead of each starting a thread that counts every row.
    stats_turn: tokio::sync::Mutex<()>,
    /// Lists reading at once (each on a connection and thread of its own).
    list_turns: tokio::sync::Semaphore,
    /// Reader threads alive, also those whose caller stopped waiting (a read that outlived
    /// its bound on a hung disk keeps its thread): at most [`MAX_READERS`].
    readers: Arc<AtomicUsize>,
    /// Bytes of deliveries sent to the writer and not yet taken by it.
    queued: Arc<AtomicUsize>,
    queue_bytes: usize,
    operation_timeout: Duration,
    /// The writer's answers (see [`Mailbox`]).
    mailbox: Arc<Mailbox>,
}

/// How long dropping the last handle waits for the writer to close the file.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

impl Drop for Inner {
    /// Stops the writer and waits (at most [`CLOSE_WAIT`]) until it has closed its connection,
    /// so a process that exits next leaves the file checkpointed and alone — no `-wal` or
    /// `-shm` beside it when no other process has it open — instead of a log the next open
    /// must recover.
    fn drop(&mut self) {
        drop(self.tx.take());
        let closed = self
            .writer_closed
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(closed) = closed.take() {
            let _ = closed.recv_timeout(CLOSE_WAIT);
        }
    }
}

/// The inbox file and its write-ahead log as the writer opened them (device and inode). A
/// file deleted, renamed or replaced while the writer holds it open takes every later commit
/// with it — answered `2xx`, gone at the next start — so after each commit the writer checks
/// that the path still names the same files, and once it does not, fails every operation
/// (`503`) until the process is restarted on a real inbox.
struct Files {
    path: PathBuf,
    wal_path: PathBuf,
    db: Option<(u64, u64)>,
    /// Recorded when the WAL first exists.
    wal: Option<(u64, u64)>,
    gone: Option<String>,
}

impl Files {
    fn of(path: &Path) -> Files {
        Files {
            path: path.to_owned(),
            wal_path: wal_path(path),
            db: identity(path),
            wal: None,
            gone: None,
        }
    }

    /// `Some(why)` once the file or its WAL is not the one written.
    fn check(&mut self) -> Option<String> {
        if let Some(gone) = &self.gone {
            return Some(gone.clone());
        }
        let wal_now = identity(&self.wal_path);
        let path = &self.path;
        let moved = |what: &str| {
            Some(format!("the inbox's {what} at {} was removed or replaced while the inbox was open: nothing more can be stored; restart on the inbox file", path.display()))
        };
        let why = if identity(path) != self.db {
            moved("file")
        } else if self.wal.is_some() && wal_now != self.wal {
            moved("write-ahead log")
        } else {
            self.wal = self.wal.or(wal_now);
            None
        };
        if let Some(w) = &why {
            tracing::error!("{w}");
            self.gone = why.clone();
        }
        why
    }
}

/// The write-ahead log's path: the file's with `-wal` appended.
fn wal_path(path: &Path) -> PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    wal.into()
}

#[cfg(unix)]
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn identity(path: &Path) -> Option<(u64, u64)> {
    // No inode to compare: only a file that disappeared is noticed.
    std::fs::metadata(path).ok().map(|_| (0, 0))
}

/// What a delivery weighs in the writer's queue: its body, its headers and a little more.
fn queued_size(item: &NewItem) -> usize {
    let headers: usize = item.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    item.body.len() + headers + 256
}

impl fmt::Debug for SqliteInbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteInbox").field("path", &self.inner.path).finish()
    }
}

impl SqliteInbox {
    /// [`read_only`](Self::read_only) once one of the four list turns is free.
    async fn read_in_turn<T: Send + 'static>(
        &self,
        name: &str,
        read: impl Fn(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, InboxError> {
        let _turn = self
            .inner
            .list_turns
            .acquire()
            .await
            .map_err(|_| InboxError::storage("the inbox is closing"))?;
        self.read_only(name, read).await
    }

    /// Runs `read` on a read-only connection of its own, in a thread of its own: under WAL it
    /// reads a snapshot while the writer goes on, and never holds the writer up.
    async fn read_only<T: Send + 'static>(
        &self,
        name: &str,
        read: impl Fn(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, InboxError> {
        // A thread per read, counted while it lives: reads stuck on a hung disk must not pile
        // up a thread per page view.
        struct Alive(Arc<AtomicUsize>);
        impl Drop for Alive {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        if self.inner.readers.fetch_add(1, Ordering::AcqRel) >= MAX_READERS {
            self.inner.readers.fetch_sub(1, Ordering::AcqRel);
            return Err(InboxError::storage(format!(
                "{MAX_READERS} earlier reads of the inbox are still running (is its disk hung?)"
            )));
        }
        let alive = Alive(Arc::clone(&self.inner.readers));
        let (reply, answer) = oneshot::channel();
        let path = self.inner.path.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let run = || -> Result<T, InboxError> {
                    // An immutable read takes no lock: if a writer opened the file meanwhile
                    // (its log is there now, or the file changed), pages may have changed
                    // under it — read again.
                    for _ in 0..3 {
                        let before = fingerprint(&path);
                        let (conn, immutable) = reader(&path).map_err(storage)?;
                        let out = read(&conn).map_err(storage)?;
                        if !immutable || (!wal_path(&path).exists() && fingerprint(&path) == before) {
                            return Ok(out);
                        }
                    }
                    Err(InboxError::storage(
                        "the inbox changed while it was read (a writer started); try again",
                    ))
                };
                let out = run();
                // Counted out before answering: a caller that reads again at once finds the
                // thread gone.
                drop(alive);
                let _ = reply.send(out);
            })
            .map_err(storage)?;
        let stopped = |_| Err(InboxError::storage("an inbox reader stopped"));
        // Bounded like the writer's long operations where a Tokio timer is at hand (reads need
        // no runtime): a stalled disk (a hung network mount) must not hold the caller —
        // `serve`'s last count at its stop, a page view — for ever.
        if tokio::runtime::Handle::try_current().is_err() {
            return answer.await.unwrap_or_else(stopped);
        }
        match tokio::time::timeout(LONG_OPERATION_TIMEOUT, answer).await {
            Ok(answer) => answer.unwrap_or_else(stopped),
            Err(_) => Err(InboxError::storage(format!(
                "reading the inbox took longer than {LONG_OPERATION_TIMEOUT:?}"
            ))),
        }
    }

    /// Opens `path` with the default settings.
    ///
    /// # Errors
    /// As [`SqliteInboxBuilder::open`].
    ///
    /// ```
    /// use hookguard_core::inbox::{InboxStore, NewItem};
    /// use hookguard_sqlite::SqliteInbox;
    /// # let dir = std::env::temp_dir().join(format!("hg-doc-o-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// let path = dir.join("inbox.db");
    /// let inbox = SqliteInbox::open(&path)?;
    /// rt.block_on(inbox.accept(NewItem::from_parts("hcss", Some("hcss:evt_1".into()), bytes::Bytes::new())))?;
    /// drop(inbox); // a restart: the stored item is still there
    /// assert_eq!(rt.block_on(SqliteInbox::open(&path)?.stats())?.pending, 1);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), hookguard_core::inbox::InboxError>(())
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Self, InboxError> {
        Self::builder(path).open()
    }

    /// Configures an inbox at `path`. A relative path is resolved against the working
    /// directory now: the inbox stays on its file if the process changes directory later.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("hg-doc-bu-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// let path = dir.join("inbox.db");
    /// let inbox = hookguard_sqlite::SqliteInbox::builder(&path).max_pending(10_000).max_batch(256).open()?;
    /// assert_eq!(inbox.path(), path);
    /// # drop(inbox); std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), hookguard_core::inbox::InboxError>(())
    /// ```
    pub fn builder(path: impl AsRef<Path>) -> SqliteInboxBuilder {
        SqliteInboxBuilder {
            path: fixed(path.as_ref()),
            max_pending: Cap::Set(DEFAULT_MAX_PENDING),
            max_batch: 512,
            queue: 16_384,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            checkpoint_pages: DEFAULT_CHECKPOINT_PAGES,
            fresh_bodies: DEFAULT_FRESH_BODIES,
            unclaimed_warning: DEFAULT_UNCLAIMED_WARNING,
        }
    }

    /// Opens an existing inbox file, failing (rather than creating one) when it does not exist,
    /// with the pending cap last recorded in it (by the process that serves it, see
    /// [`SqliteInboxBuilder::max_pending`]): for tools that look into an inbox, as the
    /// `hookguard inbox` commands do.
    ///
    /// # Errors
    /// The file is missing, unreadable, not a hookguard inbox, or an inbox of a layout this
    /// build does not write (a newer hookguard's).
    ///
    /// ```
    /// use hookguard_core::inbox::{InboxError, InboxStore, NewItem};
    /// use hookguard_sqlite::SqliteInbox;
    /// # let dir = std::env::temp_dir().join(format!("hg-doc-oe-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// let path = dir.join("inbox.db");
    /// assert!(SqliteInbox::open_existing(&path).is_err()); // nothing there: not created
    /// drop(SqliteInbox::builder(&path).max_pending(0).open()?); // made by `serve --inbox`, say
    /// let tool = SqliteInbox::open_existing(&path)?;
    /// let item = NewItem::from_parts("hcss", Some("hcss:evt_1".into()), bytes::Bytes::new());
    /// assert!(matches!(rt.block_on(tool.accept(item)), Err(InboxError::Full { limit: 0 }))); // the recorded cap
    /// # drop(tool); std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), InboxError>(())
    /// ```
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Self, InboxError> {
        let path = path.as_ref();
        // Refuse a file that is not a hookguard inbox instead of adding tables to it.
        an_inbox(path)?;
        Self::builder(path).keep_recorded_cap().open()
    }

    /// Opens an existing inbox to read it only: [`list`](InboxStore::list),
    /// [`get`](InboxStore::get) and [`stats`](InboxStore::stats) are answered, every other
    /// operation fails. For looking into an inbox this process cannot write — another user's,
    /// a copy on a read-only mount, a file on a full disk — while `serve` runs or not. Nothing
    /// in the file or beside it is changed, and the schema is not migrated (an inbox made by
    /// an older version is read as it is).
    ///
    /// While another process has the file open (its `-wal` log is beside it) the reader
    /// shares the log; with no log beside it nothing is writing the file, and it is read as
    /// immutable, creating nothing beside it.
    ///
    /// ```
    /// use hookguard_core::inbox::{InboxStore, ListFilter, NewItem};
    /// use hookguard_core::testing::block_on;
    /// use hookguard_sqlite::SqliteInbox;
    /// # let dir = std::env::temp_dir().join(format!("hg-doc-ro-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// let path = dir.join("inbox.db");
    /// drop(SqliteInbox::open(&path).unwrap()); // made by `serve --inbox`, say
    /// let inbox = SqliteInbox::open_read_only(&path).unwrap();
    /// assert_eq!(block_on(inbox.stats()).unwrap().pending, 0);
    /// assert!(block_on(inbox.list(ListFilter::default())).unwrap().is_empty());
    /// let item = NewItem::from_parts("buildworkpro", Some("buildworkpro:evt_1".into()), bytes::Bytes::from_static(b"{}"));
    /// assert!(block_on(inbox.accept(item)).unwrap_err().to_string().contains("read-only"));
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    ///
    /// # Errors
    /// The file is missing, unreadable, not a hookguard inbox, or an inbox of a layout this
    /// build does not write (a newer hookguard's).
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, InboxError> {
        let path = &fixed(path.as_ref());
        an_inbox(path)?;
        // No writer: only reads, which never use one, are answered.
        Ok(SqliteInbox {
            inner: Arc::new(Inner {
                tx: None,
                writer_closed: std::sync::Mutex::new(None),
                notify: Arc::new(Notify::new()),
                path: path.to_owned(),
                stats_turn: tokio::sync::Mutex::new(()),
                list_turns: tokio::sync::Semaphore::new(4),
                readers: Arc::default(),
                queued: Arc::new(AtomicUsize::new(0)),
                queue_bytes: DEFAULT_QUEUE_BYTES,
                operation_timeout: DEFAULT_OPERATION_TIMEOUT,
                mailbox: Arc::default(),
            }),
        })
    }

    /// The file.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("hg-doc-p-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// let inbox = hookguard_sqlite::SqliteInbox::open(dir.join("inbox.db"))?;
    /// assert_eq!(inbox.path(), dir.join("inbox.db"));
    /// assert!(inbox.path().is_absolute());
    /// # drop(inbox); std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), hookguard_core::inbox::InboxError>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn call<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, InboxError>>) -> Op,
    ) -> InboxFuture<'_, T> {
        self.call_within(self.inner.operation_timeout, make)
    }

    /// Sends an operation to the writer and waits at most `limit` for its answer.
    /// `make`'s operation again and again, each its own transaction within the long bound
    /// (accepts go on between them), until one does fewer than a batch ([`PURGE_BATCH`]
    /// items); how many in all.
    async fn in_batches(&self, make: impl Fn(Reply<u64>) -> Op) -> Result<u64, InboxError> {
        let mut total = 0;
        loop {
            let n = self.call_within(LONG_OPERATION_TIMEOUT, &make).await?;
            total += n;
            if n < PURGE_BATCH as u64 {
                return Ok(total);
            }
        }
    }

    fn call_within<T: Send + 'static>(
        &self,
        limit: Duration,
        make: impl FnOnce(oneshot::Sender<Result<T, InboxError>>) -> Op,
    ) -> InboxFuture<'_, T> {
        let Some(tx) = &self.inner.tx else {
            return Box::pin(async {
                Err(InboxError::storage(
                    "the inbox was opened read-only (only list, get and stats are answered)",
                ))
            });
        };
        let (reply, answer) = oneshot::channel();
        let mailbox = Arc::clone(&self.inner.mailbox);
        let sent = tx.try_send(make(reply));
        if let Err(TrySendError::Full(Op::Accept(item, _)) | TrySendError::Disconnected(Op::Accept(item, _))) = &sent {
            self.inner.queued.fetch_sub(queued_size(item), Ordering::AcqRel);
        }
        Box::pin(async move {
            match sent {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => return Err(InboxError::storage("the inbox writer's queue is full")),
                Err(TrySendError::Disconnected(_)) => return Err(InboxError::storage("the inbox writer stopped")),
            }
            match tokio::time::timeout(limit, mailbox.answer(answer)).await {
                Ok(answer) => answer.unwrap_or_else(|_| Err(InboxError::storage("the inbox writer stopped"))),
                Err(_) => Err(InboxError::storage(format!(
                    "the inbox writer did not answer within {} ms (a slow disk, or another process holding the file)",
                    limit.as_millis()
                ))),
            }
        })
    }
}

fn storage(e: impl std::error::Error + Send + Sync + 'static) -> InboxError {
    InboxError::storage(e)
}

/// The inbox is one file: `--inbox PATH` names the file, not its directory.
fn not_a_directory(path: &Path) -> Result<(), InboxError> {
    if path.is_dir() {
        return Err(InboxError::storage(format!(
            "{} is a directory, not an inbox file (name a file, e.g. {})",
            path.display(),
            path.join("inbox.db").display()
        )));
    }
    Ok(())
}

/// `path` made absolute against the working directory of this moment (as it is when that
/// cannot be read): every later check of the file and every reader opens the same file, also
/// after the process changes directory. It was kept relative, and a `set_current_dir` after
/// the open made the writer judge the file removed and every accept `503`.
fn fixed(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// `Ok` when `path` is an existing file holding a hookguard inbox (read without changing it).
fn an_inbox(path: &Path) -> Result<(), InboxError> {
    not_a_directory(path)?;
    if !path.is_file() {
        return Err(InboxError::storage(format!("no inbox file at {}", path.display())));
    }
    let found = probe(path)?;
    if found.inbox == 0 {
        return Err(InboxError::storage(format!(
            "{} is not a hookguard inbox",
            path.display()
        )));
    }
    found.usable(path)
}

/// What [`probe`] found in a file.
struct Probe {
    /// Inbox tables (`hookguard_inbox`): 0 or 1.
    inbox: i64,
    /// Tables that are not hookguard's (nor SQLite's own).
    others: i64,
    /// The recorded layout (`user_version`; 0: none recorded).
    version: i64,
    application_id: i64,
    /// The inbox table has this build's columns, exactly.
    columns_match: bool,
}

impl Probe {
    /// `Ok` when an inbox with this layout can be used by this build (a file with no inbox
    /// yet can). Refused: a newer layout, and an inbox of an unrecorded layout whose columns
    /// differ from ours (the first development builds kept each body in its item's row: every
    /// accept would fail on such a file, answered `503`, until the sender's kill switch).
    fn usable(&self, path: &Path) -> Result<(), InboxError> {
        // Another application's stamp: its file, whatever tables it holds (stamping ours over
        // it would take the file over).
        if self.application_id != 0 && self.application_id != APPLICATION_ID {
            return Err(InboxError::storage(format!(
                "{} is a SQLite database of something else (application id {:#x}), not a hookguard inbox",
                path.display(),
                self.application_id
            )));
        }
        if self.version < 0 {
            return Err(InboxError::storage(format!(
                "{} records a layout no hookguard writes ({}): this build cannot use it",
                path.display(),
                self.version
            )));
        }
        if self.version > SCHEMA_VERSION {
            return Err(InboxError::storage(format!(
                "{} is an inbox of a newer hookguard (layout {}; this build knows layouts up to \
                 {SCHEMA_VERSION}): use that version with it",
                path.display(),
                self.version
            )));
        }
        if self.inbox > 0 && self.version == 0 && !self.columns_match {
            return Err(InboxError::storage(format!(
                "{} is an inbox of an early development build of hookguard, laid out differently: \
                 this build cannot use it (move it aside; a new inbox starts empty)",
                path.display()
            )));
        }
        Ok(())
    }
}

/// The columns of `hookguard_inbox` in [`SCHEMA`], in order.
const TABLE_COLUMNS: &str = "id,provider,dedupe_key,unique_key,scope,event_id,event_type,state,attempts,\
received_at,next_attempt_at,finished_at,last_error,headers,body_len";

/// Reads, without changing anything, what the file at `path` holds (see [`Probe`]).
fn probe(path: &Path) -> Result<Probe, InboxError> {
    let read = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => InboxError::storage(format!(
            "{} is not a hookguard inbox (not a SQLite database)",
            path.display()
        )),
        _ => InboxError::storage(format!("cannot read {}: {e}", path.display())),
    };
    read_probe(&reader(path).map_err(read)?.0).map_err(read)
}

/// [`probe`] on an open connection.
fn read_probe(conn: &Connection) -> rusqlite::Result<Probe> {
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('hookguard_inbox') ORDER BY cid")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    conn.query_row(
        "SELECT (SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'hookguard_inbox'),
                (SELECT count(*) FROM sqlite_master WHERE type = 'table'
                   AND name NOT LIKE 'hookguard\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'),
                (SELECT user_version FROM pragma_user_version),
                (SELECT application_id FROM pragma_application_id)",
        [],
        |r| {
            Ok(Probe {
                inbox: r.get(0)?,
                others: r.get(1)?,
                version: r.get(2)?,
                application_id: r.get(3)?,
                columns_match: columns.join(",") == TABLE_COLUMNS,
            })
        },
    )
}

/// A read-only connection to `path` that has read the schema, and whether it reads the file as
/// immutable. A file another process holds (a recovery, an exclusive lock) is waited for, as
/// the inbox's own connections wait.
///
/// SQLite keeps the `-wal` log beside the file while any connection has it open. With a log
/// there, the reader shares it (and its `-shm` index) with the writer. With none, nothing is
/// writing the file, and it is read as immutable: no lock taken and nothing created beside it
/// — a plain read-only connection would create the log and the index, which a user who cannot
/// write the directory (another user's inbox, a copy on a read-only mount) cannot do, and
/// which, made by another user in a directory both can write, would keep the owner's `serve`
/// from writing.
fn reader(path: &Path) -> rusqlite::Result<(Connection, bool)> {
    use rusqlite::OpenFlags;
    let open = |conn: Connection| -> rusqlite::Result<Connection> {
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))?;
        Ok(conn)
    };
    if !wal_path(path).exists() {
        let immutable = format!("{}?immutable=1", file_uri(path));
        if let Ok(conn) =
            Connection::open_with_flags(immutable, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI)
                .and_then(open)
        {
            return Ok((conn, true));
        }
    }
    Ok((
        open(Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?)?,
        false,
    ))
}

/// What changes when a file is written: its length and modification time.
fn fingerprint(path: &Path) -> Option<(u64, std::time::SystemTime)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// A `file:` URI naming `path`, every byte but unreserved ones and `/` percent-encoded (so
/// nothing in a path can add a URI parameter). An absolute path gets an empty authority
/// (`file:///…`): `file://x/…` would name a host.
fn file_uri(path: &Path) -> String {
    #[cfg(unix)]
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    #[cfg(not(unix))]
    let lossy = path.to_string_lossy();
    #[cfg(not(unix))]
    let bytes = lossy.as_bytes();
    let mut out = String::from(if bytes.first() == Some(&b'/') {
        "file://"
    } else {
        "file:"
    });
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn connect(path: &Path) -> Result<Connection, InboxError> {
    let conn = Connection::open(path).map_err(storage)?;
    // SQLite opens a file it cannot write read-only without a word; its first statement (the
    // journal mode) would then create a `-wal` and `-shm` owned by this user, which could keep
    // the owner's `serve` from writing. Refuse before any statement.
    if conn.is_readonly(rusqlite::DatabaseName::Main).map_err(storage)? {
        return Err(InboxError::storage(format!(
            "cannot write {} (read-only to this user or on a read-only file system)",
            path.display()
        )));
    }
    conn.busy_timeout(Duration::from_secs(5)).map_err(storage)?;
    // A new file is in rollback-journal mode until this switch, which needs the file alone:
    // another process opening it at the same moment makes SQLite answer "locked" at once (its
    // busy handler is not used where waiting could deadlock), so the switch is tried again
    // for as long as the busy timeout.
    let since = Instant::now();
    let mode: String = loop {
        match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)) {
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && since.elapsed() < Duration::from_secs(5) =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => break other.map_err(storage)?,
        }
    };
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(InboxError::storage(format!(
            "cannot use WAL on this file (journal mode {mode})"
        )));
    }
    // A WAL that a burst grew (a long purge, a flood while a reader held a snapshot) is cut
    // back to 64 MiB when it is next reset, instead of keeping its largest size on disk.
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA journal_size_limit=67108864;")
        .map_err(storage)?;
    Ok(conn)
}

fn count_pending(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT count(*) FROM hookguard_inbox WHERE state IN (0, 1)", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| u64::try_from(n).unwrap_or(0))
}

type Reply<T> = oneshot::Sender<Result<T, InboxError>>;

enum Op {
    Accept(Box<NewItem>, Reply<Accepted>),
    /// Due (on the caller's clock), lease end, most items, whose (a JSON array of provider
    /// names; `None`: everyone's).
    Claim(i64, i64, u32, Option<String>, Reply<Vec<ClaimedItem>>),
    Complete(ClaimRef, i64, Reply<bool>),
    Fail(ClaimRef, String, Option<i64>, i64, Reply<bool>),
    /// Give back without counting the attempt, due at the second field (0: now), counted from
    /// the caller's reading of the clock (the third).
    Release(ClaimRef, i64, i64, Reply<bool>),
    Get(i64, Reply<Option<InboxRecord>>),
    Replay(i64, i64, Reply<()>),
    /// Dead items back to pending: at most this many, within the pending cap.
    ReplayDead(i64, i64, Reply<u64>),
    Purge(i64, bool, Reply<u64>),
}

/// An operation's result, held until its transaction commits.
enum Done {
    Accept(Reply<Accepted>, Result<Accepted, InboxError>),
    Claim(Reply<Vec<ClaimedItem>>, Result<Vec<ClaimedItem>, InboxError>),
    Bool(Reply<bool>, Result<bool, InboxError>),
    Unit(Reply<()>, Result<(), InboxError>),
    Count(Reply<u64>, Result<u64, InboxError>),
    Get(Reply<Option<InboxRecord>>, Result<Option<InboxRecord>, InboxError>),
}

impl Done {
    fn storage_failed(&self) -> bool {
        fn bad<T>(r: &Result<T, InboxError>) -> bool {
            matches!(r, Err(InboxError::Storage(_)))
        }
        match self {
            Done::Accept(_, r) => bad(r),
            Done::Claim(_, r) => bad(r),
            Done::Bool(_, r) => bad(r),
            Done::Unit(_, r) => bad(r),
            Done::Count(_, r) => bad(r),
            Done::Get(_, r) => bad(r),
        }
    }

    /// Answers the caller. Items claimed for a caller that stopped waiting (its wait timed
    /// out) are returned, to be given back.
    fn send(self) -> Vec<ClaimRef> {
        match self {
            Done::Accept(tx, r) => drop(tx.send(r)),
            Done::Claim(tx, r) => {
                if let Err(Ok(items)) = tx.send(r) {
                    return items.iter().map(ClaimedItem::claim).collect();
                }
            }
            Done::Bool(tx, r) => drop(tx.send(r)),
            Done::Unit(tx, r) => drop(tx.send(r)),
            Done::Count(tx, r) => drop(tx.send(r)),
            Done::Get(tx, r) => drop(tx.send(r)),
        }
        Vec::new()
    }

    fn fail(self, msg: &str) {
        fn e<T>(msg: &str) -> Result<T, InboxError> {
            Err(InboxError::storage(msg.to_owned()))
        }
        match self {
            Done::Accept(tx, _) => drop(tx.send(e(msg))),
            Done::Claim(tx, _) => drop(tx.send(e(msg))),
            Done::Bool(tx, _) => drop(tx.send(e(msg))),
            Done::Unit(tx, _) => drop(tx.send(e(msg))),
            Done::Count(tx, _) => drop(tx.send(e(msg))),
            Done::Get(tx, _) => drop(tx.send(e(msg))),
        }
    }
}

struct Writer {
    conn: Connection,
    rx: ChanRx<Op>,
    /// The queue's bytes of deliveries, given back as the writer takes them.
    queued: Arc<AtomicUsize>,
    /// Where committed batches' answers go (see [`Mailbox`]); it also collects the items
    /// claimed for a caller that had stopped waiting: given back (the attempt not counted)
    /// with the next batch, instead of sitting `running` for a lease unrun.
    mailbox: Arc<Mailbox>,
    /// Bodies just stored, for this process's claims (see [`Fresh`]).
    fresh: Fresh,
    /// The claims the batch being prepared gives back (see `prepare`).
    giving_back: Vec<ClaimRef>,
    /// How many operations the last batch took from the queue, and when it ended (see `run`).
    last_batch: usize,
    committed_at: Instant,
    /// Failed transactions in a row, for the log (see [`FailureLog`]).
    failure_log: FailureLog,
    /// Whether the file and its WAL are still the ones this writer writes.
    files: Files,
    max_pending: u64,
    max_batch: usize,
    /// Pending + running items, kept exact for this process's writes and recounted every
    /// second (other processes may replay or purge).
    pending: u64,
    counted_at: Instant,
    notify: Arc<Notify>,
    /// Whether the connection is at `synchronous=FULL` (it opens so).
    synced: bool,
    /// The due times' timeline (see [`Timeline`]).
    clock: Timeline,
    /// The wall clock the timeline is kept against (unix ms): read by this writer when it
    /// applies a batch, never taken from a caller (a caller's reading is as old as its wait in
    /// the queue, which would pass for a clock step back).
    wall: fn() -> i64,
    /// Whether due items wait with no worker claiming them (see [`Unclaimed`]).
    unclaimed: Unclaimed,
}

/// The item due longest ago (pending, or running with its lease's end): the first entry of the
/// due index.
const DUE_LONGEST: &str =
    "SELECT provider, next_attempt_at FROM hookguard_inbox WHERE state IN (0, 1) ORDER BY next_attempt_at LIMIT 1";

/// Warns, while this process accepts deliveries, when the item due longest ago has waited
/// longer than `after` unclaimed: an inbox route without a running worker answers every
/// delivery `200` and handles none (see [`SqliteInboxBuilder::unclaimed_warning`]).
struct Unclaimed {
    after: Duration,
    /// No check before this (`None`: never).
    next: Option<Instant>,
}

impl Unclaimed {
    /// The longest between two checks.
    const EVERY: Duration = Duration::from_secs(60);
    /// The shortest between two checks (an `after` of zero must not read after every batch).
    const SOONEST: Duration = Duration::from_millis(100);

    /// How long between two checks.
    fn every(&self) -> Duration {
        self.after.clamp(Self::SOONEST.min(Self::EVERY), Self::EVERY)
    }

    /// The first check once `after` has passed (or a minute): a worker starting beside this
    /// process gets that long to take a backlog left from before.
    fn new(after: Duration) -> Self {
        let mut u = Self { after, next: None };
        u.next = Instant::now().checked_add(u.every());
        u
    }

    /// After a committed batch of accepts, when a check is due: reads the item due longest
    /// ago (pending, or running with its lease ended) through the due index, and warns when it
    /// has waited longer than `after` by the timeline's `now`.
    fn check(&mut self, conn: &Connection, now: i64) {
        let started = Instant::now();
        if self.next.is_none_or(|next| started < next) {
            return;
        }
        self.next = started.checked_add(self.every());
        let oldest = conn.prepare_cached(DUE_LONGEST).and_then(|mut q| {
            q.query_row([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .optional()
        });
        let (provider, due) = match oldest {
            Ok(Some(found)) => found,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "inbox: cannot read the item due longest ago");
                return;
            }
        };
        let waited = Duration::from_millis(u64::try_from(now.saturating_sub(due)).unwrap_or(0));
        if waited > self.after {
            hookguard_core::inbox::warn_unclaimed(&provider, waited);
        }
    }
}

/// The timeline due times and leases are kept on: the wall clock (unix ms), moved ahead by as
/// much as it ever was behind the newest arrival stored or the time the timeline reached (so
/// it never goes back, however many steps back the clock takes). After the clock stepped back, an item
/// that arrived "in the future" is still due at once, and the timeline keeps advancing with
/// real time, so a retry or a deferral "in a second" is due a second later — neither at once
/// (every attempt spent in a few polls) nor once the clock has caught up. Every due time is on
/// it — arrivals, retries, deferrals, replays and lease ends — so the claim order stays first
/// come, first served after a step back too (an arrival stored on the wall clock would sort
/// ahead of every retry by the lead). The lead is stored with the batch that made it grow, so
/// times stored on the timeline keep their meaning across a restart.
#[derive(Debug, Clone, Copy)]
struct Timeline {
    /// The latest wall-clock time seen: the newest arrival stored, and the writer's newest
    /// reading (times counted from a clock that ran ahead for a while stay reachable once it
    /// is set right).
    floor: i64,
    /// How far the timeline runs ahead of the wall clock (never less than it once was).
    ahead: i64,
    /// The latest time the timeline reached (the wall clock plus the lead): a later step back
    /// raises the lead so the timeline goes on from here, not from the floor plus the lead it
    /// had (after a first step back the timeline is ahead of the floor, and a second step
    /// back would otherwise take it back by as much as the lead).
    top: i64,
    /// The floor and the top as last stored in `hookguard_inbox_meta` (stored once either
    /// moved on by a second in a batch that changed a row, by a minute in one that changed
    /// none: after a restart, times stored since are reached at most that late).
    saved_floor: i64,
    saved_top: i64,
    /// When the lead last grew (a step back seen), on this process's monotonic clock.
    stepped_at: Option<Instant>,
}

/// How far the timeline's floor or top move on in batches that change no row before they are
/// stored (see `Writer::commit`).
const IDLE_FLOOR_SAVE_MS: i64 = 60_000;

/// How long after a step back a caller's reading later than the writer's is taken as one read
/// before the step (far longer than an operation waits in the queue).
const STEP_WINDOW: Duration = Duration::from_secs(600);

impl Timeline {
    /// The timeline as the last writer left it in this file: its lead (times already stored
    /// on it — arrivals, retries, leases — keep their meaning after a restart, also when newer
    /// arrivals came in after the clock stepped back), and its floor: the latest wall-clock
    /// time it stored (the times of a clock that ran ahead for a while), or the newest row's
    /// arrival (ids grow with arrivals: one row read, not a scan).
    fn load(conn: &Connection) -> rusqlite::Result<Timeline> {
        let ahead = timeline_lead(conn)?;
        let saved_floor = meta(conn, "timeline_floor")?;
        let saved_top = meta(conn, "timeline_top")?;
        let newest: i64 = conn
            .query_row(
                "SELECT received_at FROM hookguard_inbox ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        Ok(Timeline {
            floor: newest.max(saved_floor),
            ahead,
            top: saved_top,
            saved_floor,
            saved_top,
            stepped_at: None,
        })
    }

    /// Moves the timeline to the wall clock's reading `wall` (the writer's own): a wall clock
    /// behind the floor or behind the timeline's top less the lead (it stepped back) raises
    /// the lead, so the timeline never goes back.
    fn shift(&mut self, wall: i64) {
        let behind = self.floor.max(self.top).saturating_sub(wall);
        if behind > self.ahead {
            self.ahead = behind;
            self.stepped_at = Some(Instant::now());
        }
        self.floor = self.floor.max(wall);
        self.top = self.top.max(wall.saturating_add(self.ahead));
    }

    /// A time `at` a caller counted from its reading `now` (a claim's now, a lease's end, a
    /// retry, a deferral), on the timeline, once it is moved to the writer's reading `wall`
    /// ([`Timeline::shift`]). Shortly after a step back, a caller's reading later than the writer's was taken
    /// before the step: counted from the writer's reading instead, so the lead that step added
    /// is not added on top of a time from before it. Otherwise the caller's reading is its own
    /// (earlier than the writer's: its wait in the queue, not a step back either).
    fn place(&mut self, at: i64, now: i64, wall: i64) -> i64 {
        self.shift(wall);
        let before_step = now > wall && self.stepped_at.is_some_and(|t| t.elapsed() < STEP_WINDOW);
        let base = if before_step { wall } else { now };
        base.saturating_add(at.saturating_sub(now)).saturating_add(self.ahead)
    }

    /// Whether the floor or the top moved on `by` milliseconds or more from the stored ones,
    /// to be stored again: both, then.
    fn unsaved(&self, by: i64) -> Option<(i64, i64)> {
        let moved = |now: i64, saved: i64| now.saturating_sub(saved) >= by;
        (moved(self.floor, self.saved_floor) || moved(self.top, self.saved_top)).then_some((self.floor, self.top))
    }

    /// The due time of an arrival at `received_at` stored when the wall clock reads `now`: its
    /// arrival on the timeline (the time the timeline read then), so arrivals and due retries
    /// keep their order. An arrival from ahead of `now` (the clock stepped back since) is placed
    /// at `now` on the timeline as the next claim will see it, so it is due at once; one a
    /// little older than the newest (arrivals reach the writer a little out of order) at the
    /// newest's. Neither moves the lead: only a claim does, when the clock is behind the newest
    /// arrival (see [`Timeline::shift`]).
    fn arrival(&self, received_at: i64, now: i64) -> i64 {
        let floor = self.floor.max(received_at);
        let at = received_at.min(now);
        at.saturating_add(self.ahead.max(floor.saturating_sub(at)))
    }

    /// Records a stored arrival.
    fn arrived(&mut self, received_at: i64) {
        self.floor = self.floor.max(received_at);
    }
}

impl Writer {
    /// Adds to `batch` what is queued, up to the batch bound.
    fn take_queued(&mut self, batch: &mut Vec<Op>) {
        while batch.len() < self.max_batch {
            match self.rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
    }

    fn run(mut self) {
        loop {
            // While something waits on the writer's own clock, it wakes for it though no
            // operation comes: answers nobody took within a moment (no caller was waiting to
            // hand them out: they had all stopped waiting, or their runtime is not polling);
            // give-backs not yet committed (a batch that carried them failed, or a caller's
            // hand-out found them after the last batch), within a second; bodies kept for
            // claims, which age out.
            let wait = if self.mailbox.holds_answers() {
                Some(mailbox::HAND_OUT_AFTER)
            } else if self.mailbox.holds_unclaimed() {
                Some(GIVE_BACK_AFTER)
            } else if !self.fresh.is_empty() {
                Some(fresh::MAX_AGE)
            } else {
                None
            };
            let first = match wait {
                None => match self.rx.recv() {
                    Ok(op) => op,
                    Err(_) => break,
                },
                Some(wait) => match self.rx.recv_timeout(wait) {
                    Ok(op) => op,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.mailbox.hand_out();
                        self.give_back_now();
                        self.fresh.expire();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
            };
            let mut batch = vec![first];
            self.take_queued(&mut batch);
            // Callers answered together come back together: the batch before had more
            // operations than have come yet, so the rest are likely on their way (their
            // answers were handed out at once, see `Mailbox`). Wait a moment for them, giving
            // the core away meanwhile (on a core shared with the callers, they are what runs):
            // committed now, the batch would take one sync for a few operations and leave the
            // others for another.
            // (Only right after a commit: after a pause, a lone operation is not kept waiting
            // for company that left.)
            let expected = self.last_batch.min(self.max_batch);
            if batch.len() < expected && self.committed_at.elapsed() < GATHER_FOR * 5 {
                let since = Instant::now();
                while batch.len() < expected && since.elapsed() < GATHER_FOR {
                    std::thread::yield_now();
                    self.take_queued(&mut batch);
                }
            }
            self.last_batch = batch.len();
            let taken: usize = batch
                .iter()
                .map(|op| match op {
                    Op::Accept(item, _) => queued_size(item),
                    _ => 0,
                })
                .sum();
            self.queued.fetch_sub(taken, Ordering::AcqRel);
            // The last batch's answers are out before this one begins (it may wait for another
            // process's write lock): no waiting caller took them yet, so the core goes to the
            // callers once, and what is still posted after that is handed out here (before
            // `prepare`, so the claims it finds unanswered are given back in this batch).
            if self.mailbox.holds_answers() {
                std::thread::yield_now();
                self.mailbox.hand_out();
            }
            self.prepare(&mut batch);
            if !batch.is_empty() {
                self.commit(batch);
            }
            self.committed_at = Instant::now();
        }
        self.mailbox.hand_out();
        // Claims whose callers had gone, found in that last hand-out: given back now rather
        // than left `running` for a lease after the next start.
        // Never waiting long for another process's write lock: the inbox's drop waits for this
        // thread at most `CLOSE_WAIT`, and those items' leases end anyway.
        if self.mailbox.holds_unclaimed() && self.conn.busy_timeout(Duration::from_millis(500)).is_ok() {
            self.give_back_now();
            self.mailbox.hand_out();
        }
    }

    /// Commits the give-backs waiting in the mailbox, if any, in a batch of their own.
    fn give_back_now(&mut self) {
        let mut batch = Vec::new();
        self.prepare(&mut batch);
        if !batch.is_empty() {
            self.commit(batch);
        }
    }

    /// Drops what callers no longer wait for and adds the give-backs. A caller that stopped
    /// waiting (its operation timed out behind a stalled batch) was told it failed: its accept
    /// is not stored (the sender retries), its claim takes no items that nobody would run; and
    /// items claimed for a caller that gave up while its batch ran go back to pending.
    fn prepare(&mut self, batch: &mut Vec<Op>) {
        batch.retain(|op| match op {
            Op::Accept(_, tx) => !tx.is_closed(),
            Op::Claim(.., tx) => !tx.is_closed(),
            _ => true,
        });
        // Not into a batch of reads only: it would take the write lock (see `commit_batch`).
        let reads_only = !batch.is_empty() && batch.iter().all(|op| matches!(op, Op::Get(..)));
        let back = if reads_only {
            Vec::new()
        } else {
            self.mailbox.take_unclaimed()
        };
        if !back.is_empty() {
            // First, so a claim in this same batch may take them.
            let releases = back.iter().map(|&claim| {
                let (tx, _) = oneshot::channel();
                Op::Release(claim, 0, 0, tx)
            });
            batch.splice(0..0, releases);
            self.giving_back = back;
        }
    }

    /// Runs `batch` in one transaction and answers its callers. Give-backs it carried (see
    /// `prepare`) that did not commit go with the next batch: otherwise their items would wait
    /// out a lease unrun.
    fn commit(&mut self, batch: Vec<Op>) {
        let giving_back = std::mem::take(&mut self.giving_back);
        // (Not once the file is gone: nothing commits any more.)
        if !self.commit_batch(batch) && !giving_back.is_empty() && self.files.gone.is_none() {
            self.mailbox.unclaim(giving_back);
        }
    }

    /// [`commit`](Self::commit) itself; whether the batch committed.
    fn commit_batch(&mut self, batch: Vec<Op>) -> bool {
        if let Some(msg) = &self.files.gone {
            for op in batch {
                op_reply(op).fail(msg);
            }
            return false;
        }
        if self.counted_at.elapsed() > Duration::from_secs(1) {
            if let Ok(n) = count_pending(&self.conn) {
                self.pending = n;
            }
            self.counted_at = Instant::now();
        }
        let pending_before = self.pending;
        // Only what a sender or an operator was told is stored must be on disk before its
        // answer: accepts, replays and purges commit with `synchronous=FULL`. A batch of the
        // worker's own transitions (claims, completions, failures) commits without the fsync
        // (`NORMAL`, still safe against a crash of this process): the next synced commit makes
        // it durable, and a power loss before that only runs an item again — at least once,
        // as always.
        let sync = batch
            .iter()
            .any(|op| matches!(op, Op::Accept(..) | Op::Replay(..) | Op::ReplayDead(..) | Op::Purge(..)));
        let accepts = batch.iter().any(|op| matches!(op, Op::Accept(..)));
        if sync != self.synced {
            let pragma = if sync {
                "PRAGMA synchronous=FULL"
            } else {
                "PRAGMA synchronous=NORMAL"
            };
            match self.conn.execute_batch(pragma) {
                Ok(()) => self.synced = sync,
                // Staying at FULL is only slower: the worker's batch goes on.
                Err(e) if !sync => {
                    tracing::warn!(error = %e, "inbox: cannot lower the sync mode; committing with FULL")
                }
                Err(e) => {
                    let msg = e.to_string();
                    tracing::error!(error = %msg, "inbox: cannot raise the sync mode to FULL; nothing in this batch is stored");
                    for op in batch {
                        op_reply(op).fail(&msg);
                    }
                    return false;
                }
            }
        }
        // A batch of reads only (`get`: `inbox show`; `list` and `stats` read on connections
        // of their own) takes no write lock: under WAL it reads a snapshot while
        // another process's writer goes on.
        let reads_only = batch.iter().all(|op| matches!(op, Op::Get(..)));
        let behavior = if reads_only {
            TransactionBehavior::Deferred
        } else {
            TransactionBehavior::Immediate
        };
        let tx = match self.conn.transaction_with_behavior(behavior) {
            Ok(tx) => tx,
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(error = %msg, "inbox: cannot begin a transaction");
                for op in batch {
                    op_reply(op).fail(&msg);
                }
                return false;
            }
        };
        let mut results = Vec::with_capacity(batch.len());
        let mut wake = false;
        let mut failed = None;
        let clock_before = self.clock;
        let changes_before = tx.total_changes();
        let wall = (self.wall)();
        for op in batch {
            // After a storage error nothing more runs: SQLite may have rolled the whole
            // transaction back already (disk full, I/O error), and a statement run after that
            // would commit on its own — half an accept, a claim nobody is told of.
            if failed.is_some() {
                results.push(op_reply(op));
                continue;
            }
            let done = apply(
                &tx,
                op,
                self.max_pending,
                &mut self.pending,
                &mut wake,
                &mut self.clock,
                &mut self.fresh,
                wall,
            );
            if done.storage_failed() {
                failed = Some("a storage error rolled back this batch".to_owned());
            } else if tx.is_autocommit() {
                failed = Some("SQLite rolled this batch back".to_owned());
            }
            results.push(done);
        }
        // The floor and top protect the times stored: a batch that changed a row stores them
        // once they moved on by a second; one that changed none (an idle inbox's empty claims,
        // second after second) only once they moved on by a minute, instead of syncing a page
        // a second for ever (a clock set back while the process is down then delays times
        // stored before an idle stretch by at most that minute).
        let wrote = tx.total_changes() != changes_before;
        if failed.is_none() && self.clock.ahead != clock_before.ahead {
            if let Err(e) = set_meta(&tx, "timeline_ahead", self.clock.ahead) {
                failed = Some(format!("cannot store the timeline's lead: {e}"));
            }
        }
        // Never from a batch of reads: it holds no write lock, and asking for one mid-read
        // fails at once while another process writes.
        let save = self
            .clock
            .unsaved(if wrote { 1_000 } else { IDLE_FLOOR_SAVE_MS })
            .filter(|_| !reads_only);
        if let (None, Some((floor, top))) = (&failed, save) {
            match set_meta(&tx, "timeline_floor", floor).and_then(|()| set_meta(&tx, "timeline_top", top)) {
                Ok(()) => (self.clock.saved_floor, self.clock.saved_top) = (floor, top),
                Err(e) => failed = Some(format!("cannot store the timeline's floor: {e}")),
            }
        }
        let outcome = match failed {
            Some(msg) => {
                drop(tx);
                Err(msg)
            }
            None => tx.commit().map_err(|e| e.to_string()),
        }
        // Committed into a file that is no longer the inbox (deleted, renamed, replaced):
        // nothing in it survives this process, so nothing is answered as stored.
        .and_then(|()| self.files.check().map_or(Ok(()), Err));
        match outcome {
            Ok(()) => {
                self.failure_log.succeeded(accepts);
                self.fresh.committed();
                if wake {
                    wake_every_worker(&self.notify);
                }
                self.mailbox.post(results);
                // After the answers: they never wait for the read or the log line.
                if accepts {
                    self.unclaimed.check(&self.conn, wall.saturating_add(self.clock.ahead));
                }
                true
            }
            Err(msg) => {
                self.failure_log.failed(&msg, accepts);
                self.pending = pending_before;
                self.clock = clock_before;
                self.fresh.rolled_back();
                for r in results {
                    r.fail(&msg);
                }
                false
            }
        }
    }
}

/// The log of failed transactions: the first of a run at ERROR, then at most one ERROR a
/// minute with how many failed meanwhile (a full disk failed the worker's transaction every
/// second, for ever, in the log that may share the disk), and a line when they succeed again.
/// A run that failed deliveries' accepts ends only when an accept commits: a batch of the
/// worker's alone may still commit on a full disk or a damaged file while every delivery is
/// refused (the log said "succeed again" between each refusal).
#[derive(Default)]
struct FailureLog {
    /// Failed in a row, when the last ERROR was written, and whether accepts failed in the run.
    failing: Option<(u64, Instant, bool)>,
}

impl FailureLog {
    /// How long failures after the first of a run are not logged one by one.
    const QUIET: Duration = Duration::from_secs(60);

    fn failed(&mut self, msg: &str, accepts: bool) {
        match &mut self.failing {
            None => {
                tracing::error!(error = %msg, "inbox: transaction failed; nothing in it was stored");
                self.failing = Some((1, Instant::now(), accepts));
            }
            Some((n, logged, accepts_failed)) => {
                *n += 1;
                *accepts_failed |= accepts;
                if logged.elapsed() >= Self::QUIET {
                    tracing::error!(
                        error = %msg,
                        failed_in_a_row = *n,
                        "inbox: transactions still fail; nothing in them was stored"
                    );
                    *logged = Instant::now();
                }
            }
        }
    }

    fn succeeded(&mut self, accepts: bool) {
        match self.failing {
            Some((_, _, true)) if !accepts => {}
            Some((n, _, _)) => {
                self.failing = None;
                tracing::info!(failed_in_a_row = n, "inbox: transactions succeed again");
            }
            None => {}
        }
    }
}

/// The reply slot of an operation that never ran (its transaction could not begin).
fn op_reply(op: Op) -> Done {
    fn e<T>() -> Result<T, InboxError> {
        Err(InboxError::storage("not run"))
    }
    match op {
        Op::Accept(_, tx) => Done::Accept(tx, e()),
        Op::Claim(.., tx) => Done::Claim(tx, e()),
        Op::Complete(.., tx) | Op::Fail(.., tx) | Op::Release(.., tx) => Done::Bool(tx, e()),
        Op::Get(_, tx) => Done::Get(tx, e()),
        Op::Replay(.., tx) => Done::Unit(tx, e()),
        Op::ReplayDead(.., tx) | Op::Purge(.., tx) => Done::Count(tx, e()),
    }
}

/// Applies one operation; `wall`: the writer's reading of the wall clock for this batch. A
/// caller's `now` is the base of its own due times only (on the timeline: plus the lead).
#[allow(clippy::too_many_arguments)]
fn apply(
    conn: &Connection,
    op: Op,
    max_pending: u64,
    pending: &mut u64,
    wake: &mut bool,
    clock: &mut Timeline,
    fresh: &mut Fresh,
    wall: i64,
) -> Done {
    match op {
        Op::Accept(item, tx) => {
            let r = accept(
                conn,
                &item,
                clock.arrival(item.received_at_ms, wall),
                max_pending,
                pending,
            );
            if let Ok((Accepted::Stored(id), new)) = r {
                *wake = true;
                clock.arrived(item.received_at_ms);
                // (A dead item a copy put back keeps its stored body and arrival.)
                if new {
                    fresh.stage(id, &item);
                }
            }
            // A wall clock behind the newest arrival (it stepped back) moves the lead now, so
            // it is stored with this batch: a restart before the next claim would otherwise
            // find these arrivals due only once the clock caught up.
            clock.shift(wall);
            Done::Accept(tx, r.map(|(accepted, _)| accepted))
        }
        Op::Claim(now, until, limit, providers, tx) => {
            // A new item is due at its arrival: after the wall clock stepped back, "now" is
            // never earlier than the newest arrival, or those items would wait for the clock
            // to catch up. The lease moves with it (its end compared on the same timeline).
            let (due, until) = (clock.place(now, now, wall), clock.place(until, now, wall));
            let r = claim(conn, due, until, limit, providers.as_deref(), now.min(wall), fresh).map(|(items, dead)| {
                // Items found unreadable went dead: no longer pending.
                *pending = pending.saturating_sub(dead);
                items
            });
            Done::Claim(tx, r.map_err(storage))
        }
        Op::Complete(claim, now, tx) => {
            let r = finish(conn, claim, now, None).map_err(storage);
            if matches!(r, Ok(Finished::Now)) {
                *pending = pending.saturating_sub(1);
            }
            Done::Bool(tx, r.map(|f| f != Finished::Not))
        }
        Op::Fail(claim, error, retry_at, now, tx) => {
            let r = match retry_at {
                // On the claims' timeline (see `Op::Claim`): after the clock stepped back, a
                // retry due "in a second" would otherwise be due at once, every attempt.
                Some(at) => conn
                    .execute(
                        "UPDATE hookguard_inbox SET state = 0, next_attempt_at = ?4, last_error = ?5
                         WHERE id = ?1 AND attempts = ?2 AND next_attempt_at = ?3 AND state = 1",
                        params![
                            claim.id,
                            claim.attempt,
                            claim.lease_until_ms,
                            clock.place(at, now, wall),
                            error
                        ],
                    )
                    .map(|n| n == 1)
                    .map_err(storage),
                None => {
                    let r = finish(conn, claim, now, Some(&error)).map_err(storage);
                    if matches!(r, Ok(Finished::Now)) {
                        *pending = pending.saturating_sub(1);
                    }
                    r.map(|f| f == Finished::Now)
                }
            };
            Done::Bool(tx, r)
        }
        Op::Release(claim, until, now, tx) => {
            // A deferral's end on the claims' timeline too (the worker counts it from now). A
            // give-back (0) is due now on the timeline, as the PostgreSQL inbox's is, not at 0:
            // the unclaimed check reads how long the item due longest ago has waited, and one
            // due at 0 had waited since 1970.
            let until = match until {
                0 => clock.place(wall, wall, wall),
                t => clock.place(t, now, wall),
            };
            let r = conn
                .execute(
                    "UPDATE hookguard_inbox SET state = 0, attempts = attempts - 1, next_attempt_at = ?4
                     WHERE id = ?1 AND attempts = ?2 AND next_attempt_at = ?3 AND state = 1",
                    params![claim.id, claim.attempt, claim.lease_until_ms, until],
                )
                .map(|n| n == 1)
                .map_err(storage);
            Done::Bool(tx, r)
        }
        Op::Get(id, tx) => Done::Get(tx, get(conn, id).map_err(storage)),
        Op::Replay(id, now, tx) => {
            // Due now on the claims' timeline, behind what was already due.
            let r = replay(conn, id, clock.place(now, now, wall));
            if let Ok(finished) = r {
                *pending += u64::from(finished);
                *wake = true;
            }
            Done::Unit(tx, r.map(drop))
        }
        Op::ReplayDead(now, limit, tx) => {
            // Never past half the pending cap: the other half stays for new deliveries while the
            // worker catches up (a full inbox refuses them `503`, and a sender's retries or its
            // kill switch may run out meanwhile).
            // (Rounded up: a cap of 1 still lets one item back when nothing is pending.)
            let room = i64::try_from(max_pending.div_ceil(2).saturating_sub(*pending)).unwrap_or(i64::MAX);
            let r = replay_dead(conn, clock.place(now, now, wall), limit.min(room)).map_err(storage);
            if let Ok(n) = r {
                *pending += n;
                *wake |= n > 0;
            }
            Done::Count(tx, r)
        }
        Op::Purge(before, include_dead, tx) => {
            let purge = || -> rusqlite::Result<u64> {
                // The bodies of exactly the rows purged, then the rows: both ranges of the
                // finished index, never a scan of the retained data.
                let states: &[i64] = if include_dead { &[2, 3] } else { &[2] };
                let mut n = 0;
                for &state in states {
                    conn.prepare_cached(PURGE_BODIES)?
                        .execute(params![before, state, PURGE_BATCH])?;
                    n += conn
                        .prepare_cached(PURGE_ITEMS)?
                        .execute(params![before, state, PURGE_BATCH])?;
                }
                Ok(n as u64)
            };
            Done::Count(tx, purge().map_err(storage))
        }
    }
}

/// Stores `item` due at `due` (its arrival on the writer's timeline) unless it is a copy; a
/// copy of a dead item puts that item back to pending. The flag: a new row was inserted.
fn accept(
    conn: &Connection,
    item: &NewItem,
    due: i64,
    max_pending: u64,
    pending: &mut u64,
) -> Result<(Accepted, bool), InboxError> {
    // The item holding this key, and whether it is dead.
    let existing = |conn: &Connection, key: &str| -> Result<Option<(i64, bool)>, InboxError> {
        conn.prepare_cached("SELECT id, state FROM hookguard_inbox WHERE provider = ?1 AND unique_key = ?2")
            .and_then(|mut s| {
                s.query_row(params![item.provider, key], |r| {
                    Ok((r.get(0)?, lenient_state(r.get_ref(1)?) == InboxState::Dead))
                })
                .optional()
            })
            .map_err(storage)
    };
    if *pending >= max_pending {
        // At the cap only new pending items are refused: a copy of a live or done item is
        // still recognised (a copy of a dead one would be pending again: refused too).
        if let Some((id, false)) = item
            .dedupe_key
            .as_deref()
            .map(|k| existing(conn, k))
            .transpose()?
            .flatten()
        {
            return Ok((Accepted::Duplicate(id), false));
        }
        return Err(InboxError::Full { limit: max_pending });
    }
    let scope = match item.scope {
        DedupeScope::WhileInFlight => 1,
        _ => 0,
    };
    let headers = serde_json::to_string(&item.headers).unwrap_or_else(|_| "[]".into());
    // One statement for a new delivery: insert-if-absent on the partial unique index. Due
    // from its arrival (on the timeline), so the claim order stays first come, first served:
    // a retry or a replay already due goes before what arrived after it (due at 0, every new
    // item went first, and a flood kept due retries waiting).
    let id: Option<i64> = conn
        .prepare_cached(
            "INSERT INTO hookguard_inbox
                 (provider, dedupe_key, unique_key, scope, event_id, event_type, state, attempts,
                  received_at, next_attempt_at, headers, body_len)
             VALUES (?1, ?2, ?2, ?3, ?4, ?5, 0, 0, ?6, ?9, ?7, ?8)
             ON CONFLICT DO NOTHING
             RETURNING id",
        )
        .and_then(|mut s| {
            s.query_row(
                params![
                    item.provider,
                    item.dedupe_key,
                    scope,
                    item.event_id,
                    item.event_type,
                    item.received_at_ms,
                    headers,
                    item.body.len() as i64,
                    due
                ],
                |r| r.get(0),
            )
            .optional()
        })
        .map_err(storage)?;
    match id {
        Some(id) => {
            // `OR REPLACE`: a body row at a new item's id can only be a stray (a file changed
            // by hand); refusing would fail this accept and every later one at the same id.
            conn.prepare_cached("INSERT OR REPLACE INTO hookguard_inbox_body (id, body) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(params![id, item.body.as_ref()]))
                .map_err(storage)?;
            *pending += 1;
            Ok((Accepted::Stored(id), true))
        }
        None => {
            let key = item.dedupe_key.as_deref().unwrap_or_default();
            match existing(conn, key)? {
                None => Err(InboxError::storage("insert conflicted with no row")),
                Some((id, false)) => Ok((Accepted::Duplicate(id), false)),
                // The sender sent a dead item's event again: it runs again (module docs of
                // `hookguard_core::inbox`), due at this copy's arrival.
                Some((id, true)) => {
                    replay(conn, id, due)?;
                    *pending += 1;
                    Ok((Accepted::Stored(id), false))
                }
            }
        }
    }
}

/// Claims up to `limit` items due at `now` (on the timeline) until `until`; `wall`: the wall
/// clock's time, for an item marked dead here.
/// The items claimed, and how many rows it found unreadable and marked dead instead.
fn claim(
    conn: &Connection,
    now: i64,
    until: i64,
    limit: u32,
    providers: Option<&str>,
    wall: i64,
    fresh: &mut Fresh,
) -> rusqlite::Result<(Vec<ClaimedItem>, u64)> {
    // Some senders' items only: their names as a JSON array (`json_each`), one statement for
    // any number of them; the due index still orders the scan.
    let mut stmt = conn.prepare_cached(
        "UPDATE hookguard_inbox SET state = 1, attempts = attempts + 1, next_attempt_at = ?2
         WHERE id IN (SELECT id FROM hookguard_inbox
                      WHERE state IN (0, 1) AND next_attempt_at <= ?1
                        AND (?4 IS NULL OR provider IN (SELECT value FROM json_each(?4)))
                      ORDER BY next_attempt_at LIMIT ?3)
         RETURNING id, attempts, provider, dedupe_key, event_id, event_type, received_at, body_len",
    )?;
    // The id (the primary key) always reads; a row whose other columns do not (a file changed
    // by hand: a BLOB for a provider, attempts beyond u32) is dead, with why, rather than
    // failing this claim, its batch's accepts and every later claim that reaches it.
    let rows = stmt.query_map(params![now, until, limit, providers], |r| {
        let id = r.get::<_, i64>(0)?;
        let fields = (|| {
            let attempts = r.get::<_, i64>(1)?;
            let attempt = u32::try_from(attempts).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(1, attempts))?;
            Ok::<_, rusqlite::Error>((
                attempt,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, i64>(6)?,
                // Only compared with the body kept in memory: unreadable, the body is read.
                r.get::<_, Option<i64>>(7).ok().flatten(),
            ))
        })();
        Ok((id, fields))
    })?;
    let claimed: Vec<_> = rows.collect::<Result<_, _>>()?;
    for (id, _) in &claimed {
        forget_in_flight_key(conn, *id)?;
    }
    let mut body = conn.prepare_cached("SELECT body FROM hookguard_inbox_body WHERE id = ?1")?;
    let mut items = Vec::with_capacity(claimed.len());
    let mut dead = 0;
    for (id, fields) in claimed {
        let (attempt, provider, key, event_id, event_type, received, body_len) = match fields {
            Ok(fields) => fields,
            Err(e) => {
                tracing::error!(id, error = %e, "inbox: a stored item cannot be read; marked dead");
                conn.prepare_cached(
                    "UPDATE hookguard_inbox SET state = 3, finished_at = ?3, last_error = ?4
                     WHERE id = ?1 AND next_attempt_at = ?2 AND state = 1",
                )?
                .execute(params![id, until, wall, format!("the stored item cannot be read: {e}")])?;
                dead += 1;
                continue;
            }
        };
        // The lease end this claim wrote names it (see `ClaimRef`).
        let claim = ClaimRef::new(id, attempt, until);
        // Never written apart from its item; a file changed by hand may still lack it: that
        // item is dead (and says why) rather than failing every claim that reaches it.
        // Stored by this process a moment ago: the body is still in memory.
        let kept = body_len.and_then(|len| fresh.take(id, fresh::stamp(&provider, key.as_deref(), received, len)));
        // Text is taken as its bytes (a body fixed by hand with a string literal is stored as
        // text in a BLOB column); another type (a number, NULL) is no body.
        let read = match kept {
            Some(bytes) => Some(bytes),
            None => body
                .query_row(params![id], |r| Ok(bytes_of(r.get_ref(0)?)))
                .optional()?
                .flatten()
                .map(Bytes::from),
        };
        let Some(bytes) = read else {
            tracing::error!(id, "inbox: item without a stored body; marked dead");
            finish(conn, claim, wall, Some("the stored body is missing or not bytes"))?;
            dead += 1;
            continue;
        };
        items.push(ClaimedItem::new(
            claim, &provider, key, event_id, event_type, bytes, received,
        ));
    }
    items.sort_by_key(|i| i.id);
    Ok((items, dead))
}

/// Done (`error` None) or dead: the claim must still hold the item (completing an item this
/// same claim already completed is idempotent). An in-flight-only key was forgotten by the
/// claim already. A running item's `next_attempt_at` is its lease's end, which stays as the claim wrote it.
fn finish(conn: &Connection, claim: ClaimRef, now: i64, error: Option<&str>) -> rusqlite::Result<Finished> {
    let state = if error.is_some() { 3 } else { 2 };
    let n = conn
        .prepare_cached(
            "UPDATE hookguard_inbox SET state = ?4, finished_at = ?5, last_error = ?6
             WHERE id = ?1 AND attempts = ?2 AND next_attempt_at = ?3 AND state = 1",
        )?
        .execute(params![
            claim.id,
            claim.attempt,
            claim.lease_until_ms,
            state,
            now,
            error
        ])?;
    if n == 1 {
        // An in-flight-only key was forgotten by the claim this completes.
        return Ok(Finished::Now);
    }
    // A completion repeated (its first answer was lost) finds the item done by this claim.
    let already = error.is_none()
        && conn
            .prepare_cached(
                "SELECT 1 FROM hookguard_inbox
                 WHERE id = ?1 AND attempts = ?2 AND next_attempt_at = ?3 AND state = 2",
            )?
            .exists(params![claim.id, claim.attempt, claim.lease_until_ms])?;
    Ok(if already { Finished::Already } else { Finished::Not })
}

/// An in-flight-only key (`DedupeScope::WhileInFlight`) stops recognising copies once its
/// item is claimed. A statement of its own, not a `CASE` in the claim's or the completion's
/// `SET`: naming `unique_key` there makes SQLite rewrite the unique index's entry of every
/// row, in the hot leaf pages every commit then writes again (here only a row that still
/// holds such a key is written).
fn forget_in_flight_key(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE hookguard_inbox SET unique_key = NULL WHERE id = ?1 AND scope = 1 AND unique_key IS NOT NULL",
    )?
    .execute([id])?;
    Ok(())
}

/// What [`finish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finished {
    /// The running item is done (or dead) now: one pending item fewer.
    Now,
    /// It was already done by this claim (a completion repeated): nothing changed.
    Already,
    /// The claim no longer holds the item.
    Not,
}

/// The timeline's lead as the file holds it (0 before it first grew).
fn timeline_lead(conn: &Connection) -> rusqlite::Result<i64> {
    meta(conn, "timeline_ahead")
}

/// A value as stored (`None` when never stored).
fn recorded(conn: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT value FROM hookguard_inbox_meta WHERE name = ?1", [name], |r| {
        r.get::<_, i64>(0)
    })
    .optional()
}

/// A value the writer keeps across restarts (0 when never stored, never negative).
fn meta(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    recorded(conn, name).map(|v| v.unwrap_or(0).max(0))
}

fn set_meta(conn: &Connection, name: &str, value: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO hookguard_inbox_meta (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        params![name, value],
    )
    .map(drop)
}

/// Reads a record's due time back on the wall clock: stored on the writer's timeline (see
/// `Timeline`), a time is reached when the wall clock reaches it less the lead. 0 (an item
/// given back, due at once) stays 0.
fn on_the_wall_clock(mut rec: InboxRecord, lead: i64) -> InboxRecord {
    if rec.next_attempt_at_ms != 0 {
        rec.next_attempt_at_ms = rec.next_attempt_at_ms.saturating_sub(lead);
    }
    rec
}

/// A record as stored, read leniently: a row changed by hand (a BLOB for a provider, attempts
/// beyond `u32`, a number for a time) still shows, as near as it reads, so that it can be looked
/// at, replayed or purged. Only SQLite's own failures are errors: a `get` failing on such a row
/// failed the writer's batch, and with it the accepts in it (`503`), each time the inspector
/// showed the item.
fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<InboxRecord> {
    let int = |i: usize| -> rusqlite::Result<Option<i64>> { Ok(lenient_int(r.get_ref(i)?)) };
    let text = |i: usize| -> rusqlite::Result<Option<String>> {
        Ok(match r.get_ref(i)? {
            ValueRef::Null => None,
            ValueRef::Integer(n) => Some(n.to_string()),
            ValueRef::Real(f) => Some(f.to_string()),
            ValueRef::Text(b) | ValueRef::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
        })
    };
    let mut rec = InboxRecord::empty(r.get(0)?, text(1)?.unwrap_or_default());
    rec.dedupe_key = text(2)?;
    rec.event_id = text(3)?;
    rec.event_type = text(4)?;
    rec.state = lenient_state(r.get_ref(5)?);
    rec.attempts = int(6)?.map_or(0, |n| u32::try_from(n.max(0)).unwrap_or(u32::MAX));
    rec.received_at_ms = int(7)?.unwrap_or(0);
    rec.next_attempt_at_ms = int(8)?.unwrap_or(0);
    rec.finished_at_ms = int(9)?;
    rec.last_error = text(10)?;
    rec.body_len = int(11)?.map_or(0, |n| u64::try_from(n).unwrap_or(0));
    Ok(rec)
}

/// An integer column as a row changed by hand may hold it: an integer, or a number with a
/// fraction (a time: its whole milliseconds); `None` for another type.
fn lenient_int(value: ValueRef<'_>) -> Option<i64> {
    match value {
        ValueRef::Integer(n) => Some(n),
        ValueRef::Real(f) if f.is_finite() => Some(f as i64),
        _ => None,
    }
}

/// A state column as a row changed by hand may hold it, read as [`lenient_int`]: a code no
/// state has, or a value that is no number, is dead (the item is shown, never claimed).
fn lenient_state(value: ValueRef<'_>) -> InboxState {
    lenient_int(value)
        .and_then(InboxState::from_code)
        .unwrap_or(InboxState::Dead)
}

/// A stored body's bytes: a BLOB, or text (written by hand as a string literal); `None` for
/// another type.
fn bytes_of(value: ValueRef<'_>) -> Option<Vec<u8>> {
    match value {
        ValueRef::Blob(b) | ValueRef::Text(b) => Some(b.to_vec()),
        _ => None,
    }
}

fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<InboxRecord>> {
    // 0 also in a file made before the lead was kept: a reader does not migrate the schema.
    let lead = timeline_lead(conn).unwrap_or(0);
    conn.query_row(
        &format!(
            "SELECT {COLUMNS}, headers, (SELECT body FROM hookguard_inbox_body b WHERE b.id = i.id)
             FROM hookguard_inbox i WHERE id = ?1"
        ),
        params![id],
        |r| {
            let mut rec = record(r)?;
            rec.headers = match r.get_ref(12)? {
                ValueRef::Text(b) | ValueRef::Blob(b) => serde_json::from_slice(b).unwrap_or_default(),
                _ => Vec::new(),
            };
            rec.body = Some(Bytes::from(bytes_of(r.get_ref(13)?).unwrap_or_default()));
            Ok(on_the_wall_clock(rec, lead))
        },
    )
    .optional()
}

/// The list statements, each reading an index where a state is asked for (a rare state in a
/// large file would otherwise mean reading the whole table): pending and running from the due
/// index; done and dead from the finished index, most recently finished first.
fn list_sql(state: Option<InboxState>) -> String {
    let provider = "(?2 IS NULL OR provider = ?2)";
    match state {
        None => format!("SELECT {COLUMNS} FROM hookguard_inbox WHERE {provider} ORDER BY id DESC LIMIT ?3"),
        Some(InboxState::Pending | InboxState::Running) => format!(
            "SELECT {COLUMNS} FROM hookguard_inbox WHERE state = ?1 AND state IN (0, 1) AND {provider}
             ORDER BY +id DESC LIMIT ?3"
        ),
        Some(_) => format!(
            "SELECT {COLUMNS} FROM hookguard_inbox WHERE state = ?1 AND state IN (2, 3) AND {provider}
             ORDER BY finished_at DESC, id DESC LIMIT ?3"
        ),
    }
}

fn list(conn: &Connection, f: &ListFilter) -> rusqlite::Result<Vec<InboxRecord>> {
    // 0 also in a file made before the lead was kept: a reader does not migrate the schema.
    let lead = timeline_lead(conn).unwrap_or(0);
    let mut stmt = conn.prepare_cached(&list_sql(f.state))?;
    let rows = stmt.query_map(params![f.state.map(|s| s.code()), f.provider, f.limit], |r| {
        record(r).map(|rec| on_the_wall_clock(rec, lead))
    })?;
    rows.collect()
}

/// Puts item `id` back to pending, due at `due` (on the writer's timeline), attempts reset; whether it was finished (done
/// or dead: one more pending item). A pending item (waiting out a retry) is made due now.
fn replay(conn: &Connection, id: i64, due: i64) -> Result<bool, InboxError> {
    // Read as leniently as `record` reads a row changed by hand (an unknown state is dead).
    let row: Option<(InboxState, Option<i64>)> = conn
        .query_row(
            "SELECT state, scope FROM hookguard_inbox WHERE id = ?1",
            params![id],
            |r| Ok((lenient_state(r.get_ref(0)?), lenient_int(r.get_ref(1)?))),
        )
        .optional()
        .map_err(storage)?;
    let Some((state, scope)) = row else {
        return Err(InboxError::NotFound(id));
    };
    let scope = scope.unwrap_or(0);
    if !matches!(state, InboxState::Done | InboxState::Dead | InboxState::Pending) {
        return Err(InboxError::WrongState {
            id,
            state,
            expected: "done, dead or pending",
        });
    }
    let reset = "UPDATE hookguard_inbox SET state = 0, attempts = 0, next_attempt_at = ?2, finished_at = NULL, \
                 last_error = NULL WHERE id = ?1";
    conn.execute(reset, params![id, due]).map_err(storage)?;
    if scope == 1 {
        // An in-flight-only key recognises copies again while pending, unless a newer copy
        // holds it already (then this replay simply runs beside it).
        // (`OR IGNORE` answers that conflict; any error is a real one.)
        conn.execute(
            "UPDATE OR IGNORE hookguard_inbox SET unique_key = dedupe_key WHERE id = ?1",
            params![id],
        )
        .map_err(storage)?;
    }
    Ok(state != InboxState::Pending)
}

fn replay_dead(conn: &Connection, due: i64, limit: i64) -> rusqlite::Result<u64> {
    if limit <= 0 {
        return Ok(0);
    }
    let ids: Vec<i64> = conn
        // (`state IN (2, 3)`: read from the finished index, not the whole table.)
        .prepare("SELECT id FROM hookguard_inbox WHERE state = 3 AND state IN (2, 3) LIMIT ?1")?
        .query_map([limit], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &ids {
        replay(conn, *id, due).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    }
    Ok(ids.len() as u64)
}

fn stats(conn: &Connection) -> rusqlite::Result<InboxStats> {
    let mut s = InboxStats::default();
    // Read as leniently as `record` reads a row: a state or time changed by hand to another
    // type counts as `record` shows it (an unknown state is dead), and `total` (a float) sums
    // sizes that `sum` would overflow on.
    let mut stmt =
        conn.prepare_cached("SELECT state, count(*), total(max(body_len, 0)) FROM hookguard_inbox GROUP BY state")?;
    let rows = stmt.query_map([], |r| {
        Ok((lenient_state(r.get_ref(0)?), r.get::<_, i64>(1)?, r.get::<_, f64>(2)?))
    })?;
    for row in rows {
        let (state, n, bytes) = row?;
        let n = u64::try_from(n).unwrap_or(0);
        let count = match state {
            InboxState::Pending => &mut s.pending,
            InboxState::Running => &mut s.running,
            InboxState::Done => &mut s.done,
            InboxState::Dead => &mut s.dead,
        };
        *count = count.saturating_add(n);
        // A float to an integer saturates (NaN is 0); a negative size counts nothing.
        s.body_bytes = s.body_bytes.saturating_add(bytes as u64);
    }
    s.oldest_pending_ms = conn.query_row(
        "SELECT min(received_at) FROM hookguard_inbox WHERE state = 0",
        [],
        |r| Ok(lenient_int(r.get_ref(0)?)),
    )?;
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let wal = conn
        .path()
        .and_then(|p| std::fs::metadata(format!("{p}-wal")).ok())
        .map_or(0, |m| m.len());
    s.disk_bytes = Some(u64::try_from(pages * size).unwrap_or(0) + wal);
    Ok(s)
}

impl InboxStore for SqliteInbox {
    fn accept(&self, item: NewItem) -> InboxFuture<'_, Accepted> {
        let size = queued_size(&item);
        let before = self.inner.queued.fetch_add(size, Ordering::AcqRel);
        if before > 0 && before + size > self.inner.queue_bytes {
            self.inner.queued.fetch_sub(size, Ordering::AcqRel);
            return Box::pin(std::future::ready(Err(InboxError::storage(format!(
                "the inbox writer is behind: {} MiB of deliveries wait for the disk",
                before >> 20
            )))));
        }
        self.call(|tx| Op::Accept(Box::new(item), tx))
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
        let until = now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let names = (!providers.is_empty()).then(|| serde_json::to_string(providers).unwrap_or_default());
        self.call(move |tx| Op::Claim(now_ms, until, limit, names, tx))
    }
    fn complete(&self, claim: ClaimRef, now_ms: i64) -> InboxFuture<'_, bool> {
        self.call(move |tx| Op::Complete(claim, now_ms, tx))
    }
    fn fail(&self, claim: ClaimRef, error: &str, retry_at_ms: Option<i64>, now_ms: i64) -> InboxFuture<'_, bool> {
        let error = error.to_owned();
        self.call(move |tx| Op::Fail(claim, error, retry_at_ms, now_ms, tx))
    }
    fn release(&self, claim: ClaimRef) -> InboxFuture<'_, bool> {
        self.call(move |tx| Op::Release(claim, 0, 0, tx))
    }
    fn defer(&self, claim: ClaimRef, until_ms: i64) -> InboxFuture<'_, bool> {
        let now = hookguard_core::inbox::now_ms();
        self.call(move |tx| Op::Release(claim, until_ms, now, tx))
    }
    fn get(&self, id: i64) -> InboxFuture<'_, Option<InboxRecord>> {
        if self.inner.tx.is_none() {
            // A turn among the lists': reads wait for one rather than find every reader
            // thread taken.
            return Box::pin(self.read_in_turn("hookguard-sqlite-get", move |conn| get(conn, id)));
        }
        self.call(move |tx| Op::Get(id, tx))
    }
    /// On a read-only connection and thread of its own (at most four at once), like `stats`:
    /// a list may read far (the inspector's pages, a provider filter), and the writer must
    /// not wait for it.
    fn list(&self, filter: ListFilter) -> InboxFuture<'_, Vec<InboxRecord>> {
        Box::pin(self.read_in_turn("hookguard-sqlite-list", move |conn| list(conn, &filter)))
    }
    fn replay(&self, id: i64, now_ms: i64) -> InboxFuture<'_, ()> {
        self.call(move |tx| Op::Replay(id, now_ms, tx))
    }
    /// In batches of 5,000 items, each its own transaction (accepts go on between them), and
    /// only until pending items fill half the pending cap, so new deliveries are still
    /// accepted: dead items past it stay dead (replay them once the worker has caught up).
    fn replay_dead(&self, now_ms: i64) -> InboxFuture<'_, u64> {
        Box::pin(self.in_batches(move |tx| Op::ReplayDead(now_ms, PURGE_BATCH, tx)))
    }
    /// In batches of 5,000 rows per state, each its own transaction (accepts go on between
    /// them), until a batch finds fewer.
    fn purge(&self, before_ms: i64, include_dead: bool) -> InboxFuture<'_, u64> {
        Box::pin(self.in_batches(move |tx| Op::Purge(before_ms, include_dead, tx)))
    }
    /// Counts every row (the retention's millions, at times): on a read-only connection of
    /// its own, in a thread of its own, so the writer (and every accept) never waits for it —
    /// under WAL a reader sees a snapshot while writes go on. One call at a time.
    fn stats(&self) -> InboxFuture<'_, InboxStats> {
        Box::pin(async move {
            let _turn = self.inner.stats_turn.lock().await;
            self.read_only("hookguard-sqlite-stats", stats).await
        })
    }
    fn notified(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.inner.notify.notified())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full disk failed the worker's transaction every second, each an ERROR, for ever (a
    /// tryout's finding): the first of a run is logged, then one a minute, and the recovery.
    #[test]
    fn failed_transactions_in_a_row_are_logged_once_a_minute() {
        use tracing::Level;
        let logs = hookguard_core::testing::Logs::default();
        let counts = || (logs.count(Level::ERROR), logs.count(Level::INFO));
        let mut log = FailureLog::default();
        tracing::subscriber::with_default(logs.clone(), || {
            for _ in 0..100 {
                log.failed("database or disk is full", false);
            }
            assert_eq!(counts(), (1, 0));
            // A minute later (the last ERROR's time moved back), one more with the count.
            if let Some((_, at, _)) = &mut log.failing {
                *at = at.checked_sub(FailureLog::QUIET).expect("a machine up for a minute");
            }
            log.failed("database or disk is full", false);
            log.failed("database or disk is full", false);
            assert_eq!(counts(), (2, 0));
            log.succeeded(false);
            log.succeeded(false);
            assert_eq!(counts(), (2, 1));
            log.failed("again", false);
            assert_eq!(counts(), (3, 1), "a new run is logged at once");
            log.succeeded(false);
            // Accepts refused (a damaged file): the worker's batches committing between them
            // neither end the run nor start a new one; the first accept stored does.
            log.failed("database disk image is malformed", true);
            assert_eq!(counts(), (4, 2));
            for _ in 0..10 {
                log.succeeded(false);
                log.failed("database disk image is malformed", true);
            }
            assert_eq!(counts(), (4, 2), "no 'succeed again' while accepts fail");
            log.succeeded(true);
            assert_eq!(counts(), (4, 3));
        });
    }

    #[test]
    fn file_uris_name_the_path_and_nothing_else() {
        assert_eq!(file_uri(Path::new("/var/lib/x.db")), "file:///var/lib/x.db");
        // `file://tmp/x.db` would name the host `tmp`.
        assert_eq!(file_uri(Path::new("//tmp/x.db")), "file:////tmp/x.db");
        assert_eq!(file_uri(Path::new("data/x.db")), "file:data/x.db");
        assert_eq!(
            file_uri(Path::new("/a b/x?mode=rwc#y%z.db")),
            "file:///a%20b/x%3Fmode%3Drwc%23y%25z.db"
        );
    }

    /// A directory of its own under the system temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        /// The directory, and a connection to `inbox.db` in it with the schema made.
        fn new(name: &str) -> (Self, Connection) {
            let dir = std::env::temp_dir().join(format!("hg-sqlite-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let scratch = Self(dir);
            let conn = connect(&scratch.file()).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            (scratch, conn)
        }

        fn file(&self) -> PathBuf {
            self.0.join("inbox.db")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Rows in the items and the bodies tables.
    fn row_counts(conn: &Connection) -> (i64, i64) {
        conn.query_row(
            "SELECT (SELECT count(*) FROM hookguard_inbox), (SELECT count(*) FROM hookguard_inbox_body)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    /// `EXPLAIN QUERY PLAN` of `sql` with `params`, its steps joined by `; `.
    fn plan(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt.query_map(params, |r| r.get::<_, String>(3)).unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    }

    /// The check for unclaimed items runs beside accepts: one entry of the due index, never a
    /// scan or a sort of the pending items.
    #[test]
    fn the_unclaimed_check_reads_one_entry_of_the_due_index() {
        let (_scratch, conn) = Scratch::new("plan-due");
        let p = plan(&conn, DUE_LONGEST, []);
        assert_eq!(p, "SCAN hookguard_inbox USING INDEX hookguard_inbox_due_v2");
    }

    /// The purge runs every minute against the whole retention (millions of rows): each of its
    /// statements must be a range of the finished index, never a scan of the items or bodies.
    #[test]
    fn the_purge_reads_ranges_of_the_finished_index() {
        let (_scratch, conn) = Scratch::new("plan");
        for sql in [PURGE_ITEMS, PURGE_BODIES] {
            let p = plan(&conn, sql, params![0i64, 2i64, 10i64]);
            assert!(
                p.contains("INDEX hookguard_inbox_finished_v2 (state=? AND finished_at<?)"),
                "{p}"
            );
            assert!(!p.contains("SCAN"), "{p}");
        }
    }

    /// A purge larger than one batch goes on batch after batch until everything past the cut
    /// is gone, bodies with their items; nothing else is touched.
    #[tokio::test]
    async fn a_purge_larger_than_a_batch_removes_everything_past_the_cut() {
        let (scratch, conn) = Scratch::new("purge-batches");
        let file = scratch.file();
        let old = 2 * PURGE_BATCH + 345;
        conn.execute_batch(&format!(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {all})
             INSERT INTO hookguard_inbox (provider, dedupe_key, unique_key, scope, state, attempts, received_at,
                                          next_attempt_at, finished_at, headers, body_len)
             SELECT 'buildworkpro', 'k' || n, 'k' || n, 0, CASE WHEN n <= {old} THEN 2 ELSE 0 END, 1, n, n,
                    CASE WHEN n <= {old} THEN n ELSE NULL END, '[]', 1 FROM g;
             INSERT INTO hookguard_inbox_body (id, body) SELECT id, x'00' FROM hookguard_inbox;",
            all = old + 10
        ))
        .unwrap();
        drop(conn);
        let inbox = SqliteInbox::open(&file).unwrap();
        // One writer transaction deletes one batch; the purge goes on until all are gone.
        let first = inbox.call(move |tx| Op::Purge(old + 1, false, tx)).await.unwrap();
        assert_eq!(first, PURGE_BATCH as u64);
        assert_eq!(inbox.purge(old + 1, false).await.unwrap(), (old - PURGE_BATCH) as u64);
        assert_eq!(row_counts(&connect(&file).unwrap()), (10, 10));
        drop(inbox);
    }

    /// A list of one state reads an index, never the whole table (the inspector lists every
    /// state on each refresh; dead and running items are few among a retention's millions).
    #[test]
    fn lists_of_a_state_read_an_index() {
        let (_scratch, conn) = Scratch::new("list-plan");
        for (state, index) in [
            (InboxState::Pending, "hookguard_inbox_due_v2"),
            (InboxState::Running, "hookguard_inbox_due_v2"),
            (InboxState::Done, "hookguard_inbox_finished_v2 (state=?)"),
            (InboxState::Dead, "hookguard_inbox_finished_v2 (state=?)"),
        ] {
            let p = plan(&conn, &list_sql(Some(state)), params![state.code(), None::<String>, 10]);
            assert!(p.contains(index), "{state:?}: {p}");
            assert!(
                !p.split("; ").any(|step| step == "SCAN hookguard_inbox"),
                "{state:?}: {p}"
            );
        }
    }

    impl Writer {
        /// Commits and answers at once (as a waiting caller would).
        fn commit_answered(&mut self, batch: Vec<Op>) {
            self.commit(batch);
            self.mailbox.hand_out();
        }
    }

    /// A writer on `conn` driven by the test's own `commit` calls (its queue unused).
    fn test_writer(conn: Connection) -> Writer {
        test_writer_fed(conn).0
    }

    /// Stores a BuildWorkPro delivery with event id `event`, received at `received_at`,
    /// through `writer`; its item's id.
    fn store(writer: &mut Writer, event: &str, received_at: i64) -> i64 {
        let d = hookguard_core::testing::deliver_bytes(
            hookguard_core::schemes::BuildWorkPro::new(),
            "whsec_k",
            format!(r#"{{"id":"{event}","type":"bid.accepted"}}"#),
        )
        .unwrap();
        let (reply, mut stored) = oneshot::channel();
        let item = NewItem::from_delivery(&d, Vec::new(), received_at);
        writer.commit_answered(vec![Op::Accept(Box::new(item), reply)]);
        match stored.try_recv() {
            Ok(Ok(Accepted::Stored(id))) => id,
            other => panic!("not stored: {other:?}"),
        }
    }

    /// An accept of a BuildWorkPro delivery padded by `pad` bytes, and its answer.
    fn padded_accept(event: &str, pad: usize) -> (Op, oneshot::Receiver<Result<Accepted, InboxError>>) {
        let body = format!(
            r#"{{"id":"{event}","type":"bid.accepted","pad":"{}"}}"#,
            "x".repeat(pad)
        );
        let d = hookguard_core::testing::deliver_bytes(hookguard_core::schemes::BuildWorkPro::new(), "whsec_k", body)
            .unwrap();
        let (reply, answer) = oneshot::channel();
        let item = NewItem::from_delivery(&d, Vec::new(), 1);
        (Op::Accept(Box::new(item), reply), answer)
    }

    /// A test writer and its queue's sender (while it lives, `run` waits for operations).
    fn test_writer_fed(conn: Connection) -> (Writer, SyncSender<Op>) {
        let (tx, rx) = mpsc::sync_channel(1);
        let files = Files::of(Path::new(conn.path().expect("a file")));
        (
            Writer {
                conn,
                rx,
                queued: Arc::default(),
                mailbox: Arc::default(),
                fresh: Fresh::new(DEFAULT_FRESH_BODIES),
                giving_back: Vec::new(),
                last_batch: 0,
                committed_at: Instant::now(),
                failure_log: FailureLog::default(),
                files,
                max_pending: 1_000,
                max_batch: 16,
                pending: 0,
                counted_at: Instant::now(),
                notify: Arc::new(Notify::new()),
                synced: true,
                clock: Timeline {
                    floor: 0,
                    ahead: 0,
                    top: 0,
                    saved_floor: 0,
                    saved_top: 0,
                    stepped_at: None,
                },
                wall: hookguard_core::inbox::now_ms,
                unclaimed: Unclaimed::new(DEFAULT_UNCLAIMED_WARNING),
            },
            tx,
        )
    }

    #[test]
    fn items_claimed_for_a_caller_that_gave_up_go_back_to_pending() {
        let (_scratch, conn) = Scratch::new("gave-up");
        let mut writer = test_writer(conn);
        let id = store(&mut writer, "evt_g", 1);
        let state = |w: &Writer| -> (i64, i64) {
            w.conn
                .query_row("SELECT state, attempts FROM hookguard_inbox WHERE id = ?1", [id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap()
        };
        // The claim runs, but its caller stopped waiting while the batch ran (on the wall
        // clock, as the accept's).
        let (reply, answer) = oneshot::channel();
        drop(answer);
        let until = hookguard_core::inbox::now_ms() + 60_000;
        writer.commit_answered(vec![Op::Claim(until - 60_000, until, 10, None, reply)]);
        assert_eq!(state(&writer), (1, 1), "claimed");
        // Named by its lease's end: the claim's `until` (no clock step here).
        assert_eq!(writer.mailbox.unclaimed(), vec![ClaimRef::new(id, 1, until)]);
        // The next batch gives it back, the attempt not counted.
        let mut next = Vec::new();
        writer.prepare(&mut next);
        writer.commit_answered(next);
        assert_eq!(state(&writer), (0, 0), "pending again");
        // And a claim whose caller gave up before its batch takes nothing.
        let (reply, answer) = oneshot::channel();
        drop(answer);
        let mut late = vec![Op::Claim(10, 60_000, 10, None, reply)];
        writer.prepare(&mut late);
        assert!(late.is_empty());
    }

    /// A give-back of a claim whose caller gave up, carried by a batch that failed, goes with
    /// the next batch instead of leaving the item `running` unrun for its lease.
    #[test]
    fn a_give_back_lost_with_a_failed_batch_goes_with_the_next() {
        let (_scratch, conn) = Scratch::new("give-back-retry");
        let mut writer = test_writer(conn);
        let (a, mut stored) = padded_accept("evt_held", 10);
        writer.commit_answered(vec![a]);
        let Ok(Ok(Accepted::Stored(id))) = stored.try_recv() else {
            panic!("not stored")
        };
        // Claimed for a caller that stopped waiting: to be given back.
        let (reply, answer) = oneshot::channel();
        drop(answer);
        let now = hookguard_core::inbox::now_ms();
        writer.commit_answered(vec![Op::Claim(now, now + 60_000, 10, None, reply)]);
        assert_eq!(writer.mailbox.unclaimed().len(), 1);
        // The next batch carries the give-back and fails (the file's page cap).
        let pages: i64 = writer.conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        writer
            .conn
            .execute_batch(&format!("PRAGMA max_page_count={}", pages + 2))
            .unwrap();
        let (big, mut refused) = padded_accept("evt_big", 64 * 1024);
        let mut batch = vec![big];
        writer.prepare(&mut batch);
        assert_eq!(batch.len(), 2, "the give-back and the accept");
        writer.commit_answered(batch);
        assert!(matches!(refused.try_recv(), Ok(Err(InboxError::Storage(_)))));
        let state = |w: &Writer| -> i64 {
            w.conn
                .query_row("SELECT state FROM hookguard_inbox WHERE id = ?1", [id], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(state(&writer), 1, "still running: the batch failed");
        // The next batch gives it back.
        writer.conn.execute_batch("PRAGMA max_page_count=1000000").unwrap();
        let mut next = Vec::new();
        writer.prepare(&mut next);
        assert_eq!(next.len(), 1, "the give-back, again");
        writer.commit_answered(next);
        assert_eq!(state(&writer), 0, "pending again");
    }

    /// A claim answered after its caller had gone, found only when the writer stops, is given
    /// back before the writer closes the file (not left `running` for a lease after the next
    /// start).
    #[test]
    fn claims_found_unanswered_at_exit_are_given_back() {
        let (scratch, conn) = Scratch::new("exit-give-back");
        let mut writer = test_writer(conn);
        let id = store(&mut writer, "evt_exit", 1);
        // Claimed and posted; its caller goes before anyone hands the answer out.
        let (reply, answer) = oneshot::channel();
        let now = hookguard_core::inbox::now_ms();
        writer.commit(vec![Op::Claim(now, now + 60_000, 10, None, reply)]);
        drop(answer);
        // The test writer's queue has no sender left: `run` stops at once.
        writer.run();
        let state: (i64, i64) = Connection::open(scratch.file())
            .unwrap()
            .query_row("SELECT state, attempts FROM hookguard_inbox WHERE id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(state, (0, 0), "given back, the attempt not counted");
    }

    /// Give-backs found after the writer's last batch (here: by a caller's hand-out) are
    /// committed within about a second though no operation comes.
    #[test]
    fn give_backs_found_while_idle_are_committed_without_another_operation() {
        let (scratch, conn) = Scratch::new("idle-give-back");
        let (mut writer, queue) = test_writer_fed(conn);
        let id = store(&mut writer, "evt_idle", 1);
        // Claimed and answered to a caller that has gone: a give-back waits in the mailbox.
        let (reply, answer) = oneshot::channel();
        drop(answer);
        let now = hookguard_core::inbox::now_ms();
        writer.commit_answered(vec![Op::Claim(now, now + 60_000, 10, None, reply)]);
        assert!(writer.mailbox.holds_unclaimed());
        // A batch of reads only does not carry them (it would take the write lock).
        let (reply, _answer) = oneshot::channel();
        let mut reads = vec![Op::Get(id, reply)];
        writer.prepare(&mut reads);
        assert_eq!(reads.len(), 1);
        assert!(writer.mailbox.holds_unclaimed());
        let running = std::thread::spawn(move || writer.run());
        let state = || -> i64 {
            Connection::open(scratch.file())
                .unwrap()
                .query_row("SELECT state FROM hookguard_inbox WHERE id = ?1", [id], |r| r.get(0))
                .unwrap()
        };
        let since = Instant::now();
        while state() != 0 && since.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(state(), 0, "given back while the queue stayed empty");
        drop(queue);
        running.join().unwrap();
    }

    /// Drives `writer` one operation per batch, as the inbox's callers do.
    struct Driven(Writer);

    impl Driven {
        /// A writer on `conn` reading the test's wall clock ([`set_wall`]), set to `T`.
        fn on_test_wall(conn: Connection) -> Self {
            let mut w = Driven(test_writer(conn));
            w.0.wall = test_wall;
            set_wall(T);
            w
        }

        /// What a restart keeps of the timeline: only what the file stored.
        fn restart(&mut self) {
            self.0.clock = Timeline::load(&self.0.conn).unwrap();
        }

        fn accept(&mut self, id: &str, received_at: i64) -> i64 {
            store(&mut self.0, id, received_at)
        }

        fn claim(&mut self, now: i64) -> Vec<ClaimedItem> {
            let (reply, mut claimed) = oneshot::channel();
            self.0
                .commit_answered(vec![Op::Claim(now, now + 30_000, 10, None, reply)]);
            claimed.try_recv().unwrap().unwrap()
        }

        fn fail(&mut self, c: &ClaimedItem, retry_at: i64, now: i64) {
            let (reply, mut failed) = oneshot::channel();
            self.0
                .commit_answered(vec![Op::Fail(c.claim(), "boom".into(), Some(retry_at), now, reply)]);
            assert!(failed.try_recv().unwrap().unwrap());
        }

        fn defer(&mut self, c: &ClaimedItem, until: i64, now: i64) {
            let (reply, mut deferred) = oneshot::channel();
            self.0.commit_answered(vec![Op::Release(c.claim(), until, now, reply)]);
            assert!(deferred.try_recv().unwrap().unwrap());
        }
    }

    const T: i64 = 1_700_000_000_000;
    const HOUR: i64 = 3_600_000;

    thread_local! {
        /// The wall clock a test's writer reads (each test runs on a thread of its own, and
        /// `Driven` applies batches on it).
        static WALL: std::cell::Cell<i64> = const { std::cell::Cell::new(T) };
    }

    fn test_wall() -> i64 {
        WALL.with(std::cell::Cell::get)
    }

    fn set_wall(ms: i64) {
        WALL.with(|w| w.set(ms));
    }

    /// The system clock ran a year ahead while no delivery arrived; a retry set then ("in two
    /// seconds") is due two seconds after it was set once the clock is set right — also after a
    /// restart in between — not a year later.
    #[test]
    fn a_retry_set_while_the_clock_ran_ahead_is_due_once_the_clock_is_set_right() {
        const YEAR: i64 = 365 * 24 * 3_600_000;
        for restart in [false, true] {
            let (_scratch, conn) = Scratch::new(if restart { "ahead-restart" } else { "ahead" });
            let mut w = Driven::on_test_wall(conn);
            let id = w.accept("evt_ahead", T);
            set_wall(T + YEAR);
            let c = w.claim(T + YEAR);
            assert_eq!(c.iter().map(|i| i.id).collect::<Vec<_>>(), [id]);
            w.fail(&c[0], T + YEAR + 2_000, T + YEAR);
            if restart {
                w.restart();
            }
            set_wall(T + 10);
            assert!(w.claim(T + 10).is_empty(), "due early (restart: {restart})");
            set_wall(T + 2_100);
            let c = w.claim(T + 2_100);
            assert_eq!(c.iter().map(|i| i.id).collect::<Vec<_>>(), [id], "restart: {restart}");
        }
    }

    /// Readings taken just before the clock stepped back an hour (the writer reads the clock
    /// after the step) are not moved by the lead that step adds: a claim does not take a lease
    /// an hour early, and a retry or deferral "in two seconds" is not an hour late — also when
    /// an earlier batch saw the step first.
    #[test]
    fn a_callers_reading_from_before_a_step_back_is_not_counted_twice() {
        for deferral in [false, true] {
            let (_scratch, conn) = Scratch::new(if deferral { "back-defer" } else { "back-fail" });
            let mut w = Driven::on_test_wall(conn);
            let id = w.accept("evt_before_step", T);
            let c = w.claim(T);
            assert_eq!(c.len(), 1);
            // Read T + 5; the clock steps back before the writer reads it.
            set_wall(T - HOUR + 5);
            assert!(w.claim(T + 5).is_empty(), "the lease was taken an hour early");
            if deferral {
                w.defer(&c[0], T + 2_005, T + 5);
            } else {
                w.fail(&c[0], T + 2_005, T + 5);
            }
            set_wall(T - HOUR + 2_200);
            let again = w.claim(T - HOUR + 2_200);
            assert_eq!(
                again.iter().map(|i| i.id).collect::<Vec<_>>(),
                [id],
                "deferral: {deferral}"
            );
        }
    }

    /// A row changed by hand so that it no longer reads (a BLOB for its provider, attempts
    /// beyond u32) is dead, saying why, instead of failing every claim that reaches it (and
    /// the accepts in those batches); a stray body row at a new item's id does not fail the
    /// accept.
    #[test]
    fn an_unreadable_row_is_dead_and_the_inbox_goes_on() {
        let (_scratch, conn) = Scratch::new("unreadable");
        let mut w = Driven(test_writer(conn));
        let good = w.accept("evt_readable", T);
        let blob = w.accept("evt_blob_provider", T);
        let huge = w.accept("evt_huge_attempts", T);
        w.0.conn
            .execute("UPDATE hookguard_inbox SET provider = x'00ff' WHERE id = ?1", [blob])
            .unwrap();
        w.0.conn
            .execute("UPDATE hookguard_inbox SET attempts = 5000000000 WHERE id = ?1", [huge])
            .unwrap();
        w.0.conn
            .execute(
                "INSERT INTO hookguard_inbox_body (id, body) VALUES (?1, x'00')",
                [huge + 1],
            )
            .unwrap();
        let stray = w.accept("evt_after_a_stray_body", T);
        assert_eq!(stray, huge + 1);
        let now = hookguard_core::inbox::now_ms();
        let ids: Vec<i64> = w.claim(now).iter().map(|i| i.id).collect();
        assert_eq!(ids, [good, stray]);
        assert_eq!(w.0.pending, 2, "the dead ones are no longer pending");
        for id in [blob, huge] {
            let (state, error): (i64, String) =
                w.0.conn
                    .query_row(
                        "SELECT state, last_error FROM hookguard_inbox WHERE id = ?1",
                        [id],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .unwrap();
            assert_eq!(state, 3, "{id}");
            assert!(error.starts_with("the stored item cannot be read"), "{error}");
        }
        assert!(w.claim(now + 1).is_empty());
        // Such a row can be looked at (the inspector's `get` goes through the writer): it reads
        // as near as it can, and the accept in the same batch is stored, not failed with it.
        for (id, provider, attempts) in [(blob, "\0\u{fffd}", 1), (huge, "buildworkpro", u32::MAX)] {
            let (got, mut shown) = oneshot::channel();
            let (accept, mut stored) = padded_accept(&format!("evt_beside_{id}"), 0);
            w.0.commit_answered(vec![Op::Get(id, got), accept]);
            let rec = shown.try_recv().unwrap().unwrap().unwrap();
            assert_eq!(
                (rec.provider.as_str(), rec.attempts, rec.state),
                (provider, attempts, InboxState::Dead)
            );
            assert!(matches!(stored.try_recv(), Ok(Ok(Accepted::Stored(_)))));
        }
    }

    /// Any SQLite value: NULL, integers (the extremes included), reals (NaN and infinities
    /// included), text, BLOBs.
    fn any_sql_value() -> impl proptest::strategy::Strategy<Value = rusqlite::types::Value> {
        use proptest::prelude::*;
        use rusqlite::types::Value;
        prop_oneof![
            Just(Value::Null),
            prop_oneof![
                Just(i64::MIN),
                Just(i64::MAX),
                -3i64..5,
                any::<i64>(),
                T - HOUR..T + HOUR
            ]
            .prop_map(Value::Integer),
            any::<f64>().prop_map(Value::Real),
            r"\PC{0,12}|[0-9]{1,20}|\[\]|\[\[\]\]|\{\}".prop_map(Value::Text),
            proptest::collection::vec(any::<u8>(), 0..12).prop_map(Value::Blob),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]
        /// Whatever an operator writes into an item's columns by hand (the sqlite3 shell takes
        /// any type in any column), reading it (`get`, `list` under every filter, `stats`) and
        /// claiming never fail nor panic, and the rows beside it are still claimed.
        #[test]
        fn any_value_written_by_hand_is_read_and_claimed(
            changes in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "provider", "dedupe_key", "unique_key", "scope", "event_id", "event_type", "state",
                        "attempts", "received_at", "next_attempt_at", "finished_at", "last_error",
                        "headers", "body_len", "body",
                    ]),
                    any_sql_value(),
                ),
                1..4,
            ),
            twice in proptest::bool::ANY,
        ) {
            static CASE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let case = CASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (_scratch, conn) = Scratch::new(&format!("by-hand-{case}"));
            let mut w = Driven(test_writer(conn));
            let changed = w.accept("evt_changed", T);
            // A second row changed alike: sums over both (`stats`) meet the extremes twice.
            let also = w.accept("evt_changed_too", T);
            let good = w.accept("evt_untouched", T);
            for (column, value) in &changes {
                let table = if *column == "body" { "hookguard_inbox_body" } else { "hookguard_inbox" };
                for id in std::iter::once(changed).chain(twice.then_some(also)) {
                    // A value the schema refuses (NULL where NOT NULL) is refused to the operator too.
                    let _ = w.0.conn.execute(&format!("UPDATE {table} SET {column} = ?1 WHERE id = ?2"), rusqlite::params![value, id]);
                }
            }
            let conn = &w.0.conn;
            proptest::prop_assert!(get(conn, changed).is_ok());
            for state in [None, Some(InboxState::Pending), Some(InboxState::Running), Some(InboxState::Done), Some(InboxState::Dead)] {
                let filter = state.map_or_else(ListFilter::default, |s| ListFilter::default().state(s));
                proptest::prop_assert!(list(conn, &filter).is_ok(), "{:?}", state);
            }
            proptest::prop_assert!(stats(conn).is_ok(), "{:?}", stats(conn));
            let now = hookguard_core::inbox::now_ms();
            let (reply, mut claimed) = oneshot::channel();
            w.0.commit_answered(vec![Op::Claim(now, now + 30_000, 10, None, reply)]);
            let claimed = claimed.try_recv().unwrap();
            proptest::prop_assert!(claimed.is_ok(), "{:?}", claimed.err());
            proptest::prop_assert!(claimed.unwrap().iter().any(|c| c.id == good));
            // A sender's copy of the changed delivery, and a replay of it, are answered (stored,
            // a duplicate, not found, a wrong state) without failing their batch.
            let (copy, mut answer) = padded_accept("evt_changed", 0);
            let (replayed, mut replay) = oneshot::channel();
            w.0.commit_answered(vec![copy, Op::Replay(changed, now, replayed)]);
            let answer = answer.try_recv().unwrap();
            proptest::prop_assert!(!matches!(answer, Err(InboxError::Storage(_))), "copy: {:?}", answer);
            let replay = replay.try_recv().unwrap();
            proptest::prop_assert!(!matches!(replay, Err(InboxError::Storage(_))), "replay: {:?}", replay);
        }
    }

    /// A body stored as text (an operator fixed a dead item's payload with a string literal in
    /// the sqlite3 shell, then replayed it) is handed out as its bytes. It used to fail every
    /// claim that reached it, and the accepts in those claims' batches (`503`).
    #[test]
    fn a_body_stored_as_text_is_handed_out_as_its_bytes() {
        let (_scratch, conn) = Scratch::new("text-body");
        let mut w = Driven(test_writer(conn));
        let id = w.accept("evt_text_body", T);
        w.0.fresh = Fresh::new(0);
        w.0.conn
            .execute(
                r#"UPDATE hookguard_inbox_body SET body = '{"id":"evt_text_body","fixed":true}' WHERE id = ?1"#,
                [id],
            )
            .unwrap();
        let now = hookguard_core::inbox::now_ms();
        let claimed = w.claim(now);
        assert_eq!(claimed.len(), 1);
        assert_eq!(
            claimed[0].delivery.body().as_ref(),
            br#"{"id":"evt_text_body","fixed":true}"#
        );
    }

    /// Reads stuck on the disk (here: held at a gate) keep their threads; past
    /// [`MAX_READERS`] of them a new read is refused at once instead of adding a thread, and
    /// once they end, reads go on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stuck_reads_are_bounded_in_threads() {
        let (scratch, conn) = Scratch::new("stuck-reads");
        drop(conn);
        let inbox = SqliteInbox::open(scratch.file()).unwrap();
        let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let mut stuck = Vec::new();
        for _ in 0..MAX_READERS {
            let (inbox, gate) = (inbox.clone(), Arc::clone(&gate));
            stuck.push(tokio::spawn(async move {
                inbox
                    .read_only("stuck", move |_| {
                        let (open, turn) = &*gate;
                        let mut open = open.lock().unwrap();
                        while !*open {
                            open = turn.wait(open).unwrap();
                        }
                        Ok(())
                    })
                    .await
            }));
        }
        while inbox.inner.readers.load(Ordering::SeqCst) < MAX_READERS {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let refused = inbox.stats().await.unwrap_err();
        assert!(refused.to_string().contains("still running"), "{refused}");
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        for read in stuck {
            read.await.unwrap().unwrap();
        }
        assert_eq!(inbox.stats().await.unwrap().pending, 0);
        // Each thread leaves the count as it ends, just after answering.
        let deadline = Instant::now() + Duration::from_secs(10);
        while inbox.inner.readers.load(Ordering::SeqCst) > 0 {
            assert!(Instant::now() < deadline, "reader threads never ended");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A completion sent again (its first answer was lost) is answered `true` and counts the
    /// item out of the pending cap once, not twice.
    #[test]
    fn a_repeated_completion_counts_the_item_out_once() {
        let (_scratch, conn) = Scratch::new("repeat-complete");
        let mut w = Driven(test_writer(conn));
        w.accept("evt_repeat_a", T);
        w.accept("evt_repeat_b", T);
        assert_eq!(w.0.pending, 2);
        let c = w.claim(hookguard_core::inbox::now_ms());
        assert_eq!(c.len(), 2);
        for _ in 0..2 {
            let (reply, mut done) = oneshot::channel();
            w.0.commit_answered(vec![Op::Complete(c[0].claim(), hookguard_core::inbox::now_ms(), reply)]);
            assert!(done.try_recv().unwrap().unwrap());
        }
        assert_eq!(w.0.pending, 1, "the other item still counts");
    }

    /// A second step back, after the timeline ran on ahead of the floor, does not take the
    /// timeline back: a retry "in two seconds" set before it is due two seconds later, not
    /// as much later as the second step — also after a restart between the two.
    #[test]
    fn a_second_step_back_does_not_take_the_timeline_back() {
        for restart in [false, true] {
            let (_scratch, conn) = Scratch::new(if restart { "two-steps-restart" } else { "two-steps" });
            let mut w = Driven::on_test_wall(conn);
            let id = w.accept("evt_two_steps", T);
            // The first step back: an hour.
            set_wall(T - HOUR);
            let c = w.claim(T - HOUR);
            assert_eq!(c.iter().map(|i| i.id).collect::<Vec<_>>(), [id]);
            // Twenty seconds on, the handler fails; the retry is due in two seconds.
            set_wall(T - HOUR + 20_000);
            w.fail(&c[0], T - HOUR + 22_000, T - HOUR + 20_000);
            if restart {
                w.restart();
            }
            // The second step back: ten seconds.
            set_wall(T - HOUR + 10_000);
            assert!(w.claim(T - HOUR + 10_000).is_empty(), "due early (restart: {restart})");
            set_wall(T - HOUR + 12_100);
            let again = w.claim(T - HOUR + 12_100);
            assert_eq!(
                again.iter().map(|i| i.id).collect::<Vec<_>>(),
                [id],
                "restart: {restart}"
            );
        }
    }

    /// An idle inbox writes little: a worker's empty claims, second after second, change no
    /// row and store the floor once a minute (it synced a page a second, for ever); the next
    /// batch that stores a row stores the floor it reached.
    #[test]
    fn empty_claims_leave_the_file_alone() {
        let (_scratch, conn) = Scratch::new("idle");
        let mut w = Driven::on_test_wall(conn);
        let id = w.accept("evt_leased", T);
        assert_eq!(w.claim(T).iter().map(|i| i.id).collect::<Vec<_>>(), [id]);
        let (changes, floor) = (w.0.conn.total_changes(), meta(&w.0.conn, "timeline_floor").unwrap());
        for s in 1..=10 {
            set_wall(T + s * 1_500);
            assert!(w.claim(T + s * 1_500).is_empty(), "the lease ended early");
        }
        assert_eq!(w.0.conn.total_changes(), changes, "an empty claim wrote");
        assert_eq!(meta(&w.0.conn, "timeline_floor").unwrap(), floor);
        set_wall(T + 20_000);
        w.accept("evt_later", T + 20_000);
        assert_eq!(meta(&w.0.conn, "timeline_floor").unwrap(), T + 20_000);
        // Both items waiting out a long retry; idle a minute on, the floor is stored once.
        set_wall(T + 79_000);
        let both = w.claim(T + 79_000);
        assert_eq!(both.len(), 2, "the first lease has ended");
        for c in &both {
            w.fail(c, T + 10 * HOUR, T + 79_000);
        }
        let changes = w.0.conn.total_changes();
        set_wall(T + 79_000 + IDLE_FLOOR_SAVE_MS - 1);
        assert!(w.claim(T + 79_000 + IDLE_FLOOR_SAVE_MS - 1).is_empty());
        assert_eq!(w.0.conn.total_changes(), changes);
        set_wall(T + 79_000 + IDLE_FLOOR_SAVE_MS);
        assert!(w.claim(T + 79_000 + IDLE_FLOOR_SAVE_MS).is_empty());
        assert_eq!(
            meta(&w.0.conn, "timeline_floor").unwrap(),
            T + 79_000 + IDLE_FLOOR_SAVE_MS
        );
    }

    /// A caller's `now` read before its operation waited in the queue behind a long batch is
    /// not a clock step back: the lead stays, and a lease is not ended early.
    #[test]
    fn a_callers_reading_from_before_its_wait_does_not_move_the_lead() {
        let (_scratch, conn) = Scratch::new("stale-now");
        let mut w = Driven::on_test_wall(conn);
        let id = w.accept("evt_leased", T);
        assert_eq!(w.claim(T).len(), 1);
        set_wall(T + 40_000);
        w.accept("evt_later", T + 40_000);
        // Read 40 s ago, before a long batch.
        let stale = w.claim(T);
        assert!(stale.iter().all(|i| i.id != id), "the lease ended early");
        assert_eq!(w.0.clock.ahead, 0);
    }

    /// An answer no caller hands out (none waits through the mailbox: here the caller only
    /// holds its channel) is handed out by the writer within a moment.
    #[test]
    fn the_writer_hands_out_answers_nobody_took() {
        let (_scratch, _conn) = Scratch::new("untaken");
        let inbox = SqliteInbox::open(_scratch.file()).unwrap();
        let (reply, answer) = oneshot::channel();
        inbox.inner.tx.as_ref().unwrap().send(Op::Get(1, reply)).unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || drop(done_tx.send(answer.blocking_recv())));
        let got = done_rx.recv_timeout(Duration::from_secs(5)).expect("never answered");
        assert!(matches!(got, Ok(Ok(None))));
    }

    /// A claim right after the accept takes the body kept in memory, not the file's; a row
    /// that changed since (here by hand: in an old file, a reused id) gets the file's.
    #[test]
    fn a_fresh_claim_takes_the_body_kept_for_that_same_row() {
        let (_scratch, conn) = Scratch::new("fresh");
        let mut writer = test_writer(conn);
        let claim = |writer: &mut Writer| -> Vec<ClaimedItem> {
            let (reply, mut claimed) = oneshot::channel();
            let now = hookguard_core::inbox::now_ms();
            writer.commit_answered(vec![Op::Claim(now, now + 60_000, 10, None, reply)]);
            claimed.try_recv().unwrap().unwrap()
        };
        let same = store(&mut writer, "evt_same", 1);
        let changed = store(&mut writer, "evt_changed", 1);
        // The file's bodies replaced by hand; one row's arrival too.
        writer
            .conn
            .execute_batch(&format!(
                "UPDATE hookguard_inbox_body SET body = CAST('from the file' AS BLOB);
                 UPDATE hookguard_inbox SET received_at = received_at + 1 WHERE id = {changed};"
            ))
            .unwrap();
        let items = claim(&mut writer);
        let body = |id: i64| items.iter().find(|i| i.id == id).unwrap().delivery.body().to_vec();
        assert_eq!(
            body(same),
            br#"{"id":"evt_same","type":"bid.accepted"}"#,
            "kept in memory"
        );
        assert_eq!(body(changed), b"from the file", "another row now: read from the file");
        // Handed out once: a later claim of the same item (after a give-back) reads the file.
        for item in &items {
            let (tx, _) = oneshot::channel();
            writer.commit_answered(vec![Op::Release(item.claim(), 0, 0, tx)]);
        }
        assert!(claim(&mut writer)
            .iter()
            .all(|i| &i.delivery.body()[..] == b"from the file"));
    }

    /// A storage error mid-batch stops the batch: SQLite answers a full database (here its
    /// page cap) by rolling the whole transaction back, and an operation run after that would
    /// commit on its own while its caller is told the batch failed.
    #[test]
    fn a_storage_error_stops_the_batch_and_nothing_after_it_is_stored() {
        let (_scratch, conn) = Scratch::new("full-batch");
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        conn.execute_batch(&format!("PRAGMA max_page_count={}", pages + 4))
            .unwrap();
        let mut writer = test_writer(conn);
        // The missing body below must be looked for in the file.
        writer.fresh = Fresh::new(0);
        let (a, mut ra) = padded_accept("small_a", 10);
        let (b, mut rb) = padded_accept("big_b", 64 * 1024); // needs more pages than the cap leaves
        let (c, mut rc) = padded_accept("small_c", 10);
        writer.commit_answered(vec![a, b, c]);
        for answer in [&mut ra, &mut rb, &mut rc] {
            assert!(matches!(answer.try_recv(), Ok(Err(InboxError::Storage(_)))));
        }
        assert_eq!(
            row_counts(&writer.conn),
            (0, 0),
            "an operation after the failure was stored on its own"
        );

        // An item whose body is gone (a file changed by hand) is dead, not a failing claim.
        writer.conn.execute_batch("PRAGMA max_page_count=1000000").unwrap();
        let (a, mut ra) = padded_accept("no_body", 10);
        writer.commit_answered(vec![a]);
        let Ok(Ok(Accepted::Stored(id))) = ra.try_recv() else {
            panic!("not stored")
        };
        writer
            .conn
            .execute("DELETE FROM hookguard_inbox_body WHERE id = ?1", [id])
            .unwrap();
        let (reply, mut claimed) = oneshot::channel();
        let now = hookguard_core::inbox::now_ms();
        writer.commit_answered(vec![Op::Claim(now, now + 60_000, 10, None, reply)]);
        assert!(matches!(claimed.try_recv(), Ok(Ok(v)) if v.is_empty()));
        let (state, error): (i64, String) = writer
            .conn
            .query_row(
                "SELECT state, last_error FROM hookguard_inbox WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((state, error.as_str()), (3, "the stored body is missing or not bytes"));
    }
}
