//! `hookguard inbox`: look into and act on the durable inbox `hookguard serve --inbox` writes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use hookguard_core::inbox::{now_ms, InboxError, InboxRecord, InboxState, InboxStore, ListFilter};
use std::sync::Arc;

use hookguard_postgres::PgInbox;
use hookguard_sqlite::SqliteInbox;
use serde_json::Value;

use crate::common::{failed, outln, usage, CliResult};
use crate::vendor::rfc3339;

const AFTER_HELP: &str = "\
Every subcommand takes --inbox PATH: the SQLite file (`PATH` or `sqlite:PATH`) that
`hookguard serve --inbox PATH` writes, or the PostgreSQL inbox `postgres://USER@HOST:PORT/DB`
(`?hookguard_schema=NAME` keeps its tables in schema NAME; default public).
They work while serve runs on the same inbox (WAL; PostgreSQL row locks). Except for
`migrate`, a missing or unreadable file is an error (exit 1); nothing is created.

Output is JSON, one object per line. Times are RFC 3339 UTC strings with milliseconds
(\"2026-11-24T09:30:12.345Z\"); ids are the inbox's integers; `event_id` is a string exactly
as the sender sent it (Procore's 5982324300946918154 keeps its digits; null for none, or
for one not kept: over 256 bytes (GitHub's and APS's delivery headers: 128), a control
character, an integer beyond 64 bits).
  list   {\"id\",\"provider\",\"event_id\",\"event_type\",\"dedupe_key\",\"state\",\"attempts\",
          \"received_at\",\"next_attempt_at\",\"last_error\"} per item, newest first
          (--state done|dead: most recently finished first);
          next_attempt_at: when a pending item is due (an item given back at a stop: the
          time it was given back, due at once, after items due earlier), when a running
          item's lease ends (then it runs again), null for done and dead items
  show   the same fields plus finished_at, body_bytes, headers ([[name, value], …]: what was
          received minus credentials — no Authorization, Cookie or shared-token header; the
          URL, and with it a URL token, is never stored), body_encoding (\"utf-8\" or \"base64\")
          and body (the raw body as a string, or base64 when it is not UTF-8)
  replay {\"replayed\":N[,\"id\":ID][,\"still_dead\":M]}: a dead or done item (or every dead one
          with --dead, until pending items fill half the cap: M stay dead) back to pending,
          attempts reset; a pending item waiting out a retry is made due now the same way (a
          running one is refused); a running serve picks it up within a second
  purge  {\"purged\":N,\"finished_before\":T}: deletes done and dead items finished before
          now − DURATION (7d, 12h, 30m, 0s); a purged item's copies are no longer recognised
  stats  {\"pending\",\"running\",\"done\",\"dead\",\"total\",\"oldest_pending_received_at\",
          \"oldest_pending_age_secs\",\"body_bytes\",\"disk_bytes\"}
Exit codes: 0 success; 1 failure (no such file or item, an item in the wrong state); 2 usage.

Examples:
  hookguard inbox stats --inbox /var/lib/hookguard/procore.db
  hookguard inbox list --state dead --inbox procore.db
  hookguard inbox list --provider procore --limit 20 --inbox sqlite:procore.db
  hookguard inbox show 42 --inbox procore.db
  hookguard inbox replay 42 --inbox procore.db
  hookguard inbox replay --dead --inbox procore.db
  hookguard inbox purge --older-than 7d --inbox procore.db";

/// `hookguard inbox`.
#[derive(clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct InboxArgs {
    #[command(subcommand)]
    command: InboxCommand,
}

#[derive(clap::Subcommand)]
enum InboxCommand {
    /// Creates the inbox (SQLite file or PostgreSQL tables), or brings its schema up to date;
    /// idempotent (`serve --inbox` does the same at start).
    #[command(after_help = "Examples:\n  hookguard inbox migrate --inbox procore.db\n  \
                            hookguard inbox migrate --inbox 'postgres://hookguard@db.internal/app'")]
    Migrate(Location),
    /// Items as JSON lines, newest first (done or dead: most recently finished first).
    #[command(after_help = "Example:\n  hookguard inbox list --state dead --inbox procore.db")]
    List(ListArgs),
    /// One item: its record, stored headers (never credentials) and body.
    #[command(after_help = "Example:\n  hookguard inbox show 42 --inbox procore.db")]
    Show(ShowArgs),
    /// A dead (or done) item back to pending, attempts reset (a pending one waiting out a retry:
    /// due now); --dead: every dead item, up to half the pending cap.
    #[command(after_help = "Examples:\n  hookguard inbox replay 42 --inbox procore.db\n  \
                            hookguard inbox replay --dead --inbox procore.db")]
    Replay(ReplayArgs),
    /// Deletes done and dead items finished before now − DURATION.
    #[command(after_help = "Example:\n  hookguard inbox purge --older-than 7d --inbox procore.db")]
    Purge(PurgeArgs),
    /// Counts per state, the oldest pending item's age, bytes.
    #[command(after_help = "Example:\n  hookguard inbox stats --inbox procore.db")]
    Stats(Location),
}

#[derive(clap::Args)]
struct Location {
    /// The inbox: the SQLite file (`PATH` or `sqlite:PATH`) or `postgres://…` URL
    /// `hookguard serve --inbox` writes.
    #[arg(long, value_name = "PATH|postgres://…")]
    inbox: String,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StateArg {
    Pending,
    Running,
    Done,
    Dead,
}

impl StateArg {
    fn state(self) -> InboxState {
        match self {
            StateArg::Pending => InboxState::Pending,
            StateArg::Running => InboxState::Running,
            StateArg::Done => InboxState::Done,
            StateArg::Dead => InboxState::Dead,
        }
    }
}

#[derive(clap::Args)]
struct ListArgs {
    /// Only items in this state.
    #[arg(long, value_enum)]
    state: Option<StateArg>,
    /// Only items from this provider, as stored: a built-in name (`procore`, `hcss`, …) or a
    /// custom scheme's name (so any name is accepted; a typo lists nothing).
    #[arg(long, value_name = "P")]
    provider: Option<String>,
    /// At most this many items (a note on stderr says when more match).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    limit: u32,
    #[command(flatten)]
    at: Location,
}

#[derive(clap::Args)]
struct ShowArgs {
    /// The item's id (from `inbox list`).
    #[arg(value_name = "ID")]
    id: i64,
    #[command(flatten)]
    at: Location,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["id", "dead"])))]
struct ReplayArgs {
    /// The item's id.
    #[arg(value_name = "ID")]
    id: Option<i64>,
    /// Every dead item (until pending items fill half the pending cap: serve's, recorded in the
    /// SQLite file or the PostgreSQL database; the rest stay dead).
    #[arg(long)]
    dead: bool,
    #[command(flatten)]
    at: Location,
}

#[derive(clap::Args)]
struct PurgeArgs {
    /// Purge done and dead items that finished more than this long ago: 7d, 12h, 30m, 45s, 0s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    older_than: Duration,
    #[command(flatten)]
    at: Location,
}

/// `7d`, `12h`, `30m`, `45s`, `2w`, `0` / `0s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("expected a duration with its unit (w, d, h, m, s) like 7d, 12h, 30m or 0s, got {s:?}");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "" if n == 0 => 1,
        _ => return Err(bad()),
    };
    n.checked_mul(unit_secs)
        .filter(|secs| *secs <= 100 * 365 * 86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration out of range: {s:?}"))
}

/// Where an inbox lives: a SQLite file, or a PostgreSQL database. Its `Debug` is
/// [`shown`](Self::shown): never the URL's password.
#[derive(Clone, PartialEq, Eq)]
pub enum InboxSpec {
    /// `PATH` or `sqlite:PATH`.
    Sqlite(PathBuf),
    /// `postgres://…` / `postgresql://…` (kept as given; shown without its password).
    Postgres(String),
}

impl std::fmt::Debug for InboxSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            InboxSpec::Sqlite(_) => "Sqlite",
            InboxSpec::Postgres(_) => "Postgres",
        };
        f.debug_tuple(kind).field(&self.shown()).finish()
    }
}

impl InboxSpec {
    /// For messages: the file, or the URL with any password replaced by `***`.
    pub fn shown(&self) -> String {
        match self {
            InboxSpec::Sqlite(p) => p.display().to_string(),
            // The schema is no secret and tells replicas' inboxes apart: it is shown.
            InboxSpec::Postgres(url) => match split_schema(url) {
                (_, Some(schema)) if schema.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                    format!("{}?hookguard_schema={schema}", hide_password(url))
                }
                _ => hide_password(url),
            },
        }
    }

    /// A PostgreSQL URL that cannot be read, or a schema that cannot be, is a usage error
    /// (exit 2), as every other malformed `--inbox` is, before anything is bound or opened.
    /// (Checked apart from the parse, whose shown form every such value still has.)
    pub fn check(&self) -> CliResult<()> {
        let InboxSpec::Postgres(url) = self else { return Ok(()) };
        // Two schemas: which inbox is meant? (The last was taken without a word; a tryout.)
        let query = url.split_once('?').map_or("", |(_, q)| q);
        if query
            .split('&')
            .filter(|kv| kv.starts_with("hookguard_schema="))
            .count()
            > 1
        {
            return Err(usage("--inbox: hookguard_schema is given more than once"));
        }
        let (url, schema) = split_schema(url);
        hookguard_postgres::check_url(&url)
            .and_then(|()| schema.as_deref().map_or(Ok(()), hookguard_postgres::check_schema))
            .map_err(|why| {
                // Which parameter, where one is at fault (its name only; a tryout).
                let which = hookguard_postgres::bad_url_parameter(&url)
                    .map(|name| format!(": the value of its {name} parameter cannot be read"))
                    .unwrap_or_default();
                usage(format!(
                    "--inbox: {why}{which} (the value is not shown: it may hold a password)"
                ))
            })
    }

    /// Opens the inbox (creating a SQLite file or the PostgreSQL tables when `create`), with
    /// `max_pending` as its cap; without one, the cap last recorded in the file or the database
    /// (`serve --max-pending`), so the `inbox` commands never change it and keep to it.
    pub async fn open(&self, max_pending: Option<u64>, create: bool) -> CliResult<Arc<dyn InboxStore>> {
        self.check()?;
        let shown = self.shown();
        let fail = |e: InboxError| failed(format!("cannot open the inbox {shown}: {}", inbox_error(&e)));
        Ok(match self {
            InboxSpec::Sqlite(path) if create => {
                let b = SqliteInbox::builder(path);
                let b = match max_pending {
                    Some(n) => b.max_pending(n),
                    None => b.keep_recorded_cap(),
                };
                Arc::new(b.open().map_err(fail)?)
            }
            InboxSpec::Sqlite(path) => Arc::new(SqliteInbox::open_existing(path).map_err(fail)?),
            InboxSpec::Postgres(url) => {
                let (url, schema) = split_schema(url);
                let mut b = PgInbox::builder();
                b = match max_pending {
                    Some(n) => b.max_pending(n),
                    None => b.keep_recorded_cap(),
                };
                if let Some(schema) = schema {
                    b = b.schema(schema);
                }
                if !create {
                    b = b.existing_only();
                }
                Arc::new(b.connect(&url).await.map_err(fail)?)
            }
        })
    }
}

/// Takes hookguard's own `hookguard_schema=NAME` query parameter (the schema holding the
/// inbox tables; default `public`) out of a PostgreSQL URL.
fn split_schema(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("hookguard_schema=") {
            Some(v) => {
                schema = Some(v.to_owned());
                false
            }
            None => true,
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, schema)
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`: the user, the host, the
/// port and the database, never the password nor the query (which may carry one). A URL whose
/// shape leaves any doubt about where its password ends (an unencoded `@`, `#`, `?` or `/` in it
/// makes the URL invalid, and then it is shown in the error) is shown as `postgres://***`.
fn hide_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "postgres://***".into();
    };
    let hidden = || format!("{scheme}://***");
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    if tail.contains('@') {
        // Legitimate only inside a query that follows the path (`/db?password=p@ss`); anywhere
        // else an `@` after the authority means the user info ran on past a `/`, `?` or `#`.
        let (before_fragment, fragment) = tail.split_once('#').unwrap_or((tail, ""));
        let (path, _query) = before_fragment.split_once('?').unwrap_or((before_fragment, ""));
        let query_after_path = tail.starts_with('/');
        let authority_may_hold_a_password = !authority.contains('@') && authority.contains(':');
        if fragment.contains('@') || path.contains('@') || !query_after_path || authority_may_hold_a_password {
            return hidden();
        }
    }
    let path = tail.split(['?', '#']).next().unwrap_or_default();
    match authority.rsplit_once('@') {
        Some((info, host)) => match info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => format!("{scheme}://{info}@{host}{path}"),
        },
        None => {
            // No user info: `host:port` — a port is digits (or an IPv6 literal's colons).
            let port_ok = authority.starts_with('[')
                || authority
                    .rsplit_once(':')
                    .is_none_or(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()));
            if port_ok {
                format!("{scheme}://{authority}{path}")
            } else {
                hidden()
            }
        }
    }
}

/// A value that is meant as a PostgreSQL URL but is not one (`postgres:user:pw@host`,
/// `postgres//user:pw@host`, `user:pw@host/db` without a scheme): taken as a file name, it
/// would put its password in the file's name, in `serve`'s first line and in every error about
/// the file. Any path segment holding a `:` and, after it, an `@` is such a value.
fn looks_like_a_database_url(spec: &str) -> bool {
    let lower = spec.to_ascii_lowercase();
    lower.starts_with("postgres:")
        || lower.starts_with("postgresql:")
        || lower.starts_with("postgres@")
        || spec
            .split('/')
            .any(|segment| segment.find(':').is_some_and(|colon| segment[colon..].contains('@')))
}

/// `--inbox PATH`, `sqlite:PATH` or `postgres://USER@HOST:PORT/DB`. The value is never echoed
/// in errors (a URL could carry a password).
pub fn parse_inbox_spec(spec: &str) -> CliResult<InboxSpec> {
    let lower = spec.trim().to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        return Ok(InboxSpec::Postgres(spec.trim().to_owned()));
    }
    let explicit = spec.strip_prefix("sqlite://").or_else(|| spec.strip_prefix("sqlite:"));
    if explicit.is_none() && looks_like_a_database_url(spec) {
        return Err(usage(
            "--inbox looks like a PostgreSQL URL but is not one (the value is not shown: it may hold a \
             password); write postgres://USER:PASSWORD@HOST/DB, or sqlite:PATH for a file of that name",
        ));
    }
    let path = explicit.unwrap_or(spec);
    if path.is_empty() {
        return Err(usage(
            "--inbox needs a file path (PATH or sqlite:PATH) or a postgres:// URL",
        ));
    }
    if let Some((scheme, _)) = path.split_once("://") {
        if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c)) {
            return Err(usage(format!(
                "--inbox takes a SQLite file (PATH or sqlite:PATH) or a postgres:// URL; `{scheme}://` is not supported"
            )));
        }
    }
    Ok(InboxSpec::Sqlite(PathBuf::from(path)))
}

/// An inbox error for people: the backend's own words, without the type's prefix.
pub fn inbox_error(e: &InboxError) -> String {
    match e {
        InboxError::Storage(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

async fn open(at: &Location) -> CliResult<(Arc<dyn InboxStore>, String)> {
    let spec = parse_inbox_spec(&at.inbox)?;
    // An existing inbox only (nothing is created: a mistyped path, database or schema is an
    // error); an existing PostgreSQL inbox is migrated idempotently, as `serve` does.
    let inbox = spec.open(None, false).await?;
    Ok((inbox, spec.shown()))
}

/// For `list`, `show` and `stats`: [`open`], or — when that fails on a SQLite file (this user
/// cannot write it or its directory, its disk is full, another process holds the lock) — the
/// file opened read-only, which changes nothing. The first error when neither works.
async fn open_to_read(at: &Location) -> CliResult<(Arc<dyn InboxStore>, String)> {
    let opened = open(at).await;
    if let (Err(_), Ok(InboxSpec::Sqlite(path))) = (&opened, parse_inbox_spec(&at.inbox)) {
        if let Ok(reader) = SqliteInbox::open_read_only(&path) {
            return Ok((Arc::new(reader), path.display().to_string()));
        }
    }
    opened
}

/// RFC 3339 UTC with milliseconds.
fn time(ms: i64) -> Value {
    let ms = ms.max(0);
    Value::from(rfc3339((ms / 1000) as u64, (ms % 1000) as u32))
}

fn opt_str(s: Option<&str>) -> Value {
    s.map_or(Value::Null, Value::from)
}

/// A JSON object with its keys in this order.
fn object(fields: &[(&str, Value)]) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::from(*k).to_string());
        out.push(':');
        out.push_str(&v.to_string());
    }
    out.push('}');
    out
}

fn record_fields(r: &InboxRecord) -> Vec<(&'static str, Value)> {
    let next = match r.state {
        InboxState::Pending | InboxState::Running => time(r.next_attempt_at_ms),
        InboxState::Done | InboxState::Dead => Value::Null,
    };
    vec![
        ("id", Value::from(r.id)),
        ("provider", Value::from(r.provider.as_str())),
        ("event_id", opt_str(r.event_id.as_deref())),
        ("event_type", opt_str(r.event_type.as_deref())),
        ("dedupe_key", opt_str(r.dedupe_key.as_deref())),
        ("state", Value::from(r.state.as_str())),
        ("attempts", Value::from(r.attempts)),
        ("received_at", time(r.received_at_ms)),
        ("next_attempt_at", next),
        ("last_error", opt_str(r.last_error.as_deref())),
    ]
}

fn store_failed(path: &str, e: &InboxError) -> crate::common::CliError {
    match e {
        InboxError::NotFound(_) | InboxError::WrongState { .. } => failed(e.to_string()),
        _ => failed(format!("inbox {path}: {}", inbox_error(e))),
    }
}

/// Runs `hookguard inbox …`.
pub async fn run(args: InboxArgs) -> CliResult<ExitCode> {
    match args.command {
        InboxCommand::List(a) => {
            let (inbox, path) = open_to_read(&a.at).await?;
            // One more than asked: a cut list says so on stderr (a script replaying what it
            // lists must not take 100 for all).
            let mut filter = ListFilter::default().limit(a.limit.saturating_add(1));
            if let Some(s) = a.state {
                filter = filter.state(s.state());
            }
            if let Some(p) = &a.provider {
                filter = filter.provider(p.clone());
            }
            let mut items = inbox.list(filter.clone()).await.map_err(|e| store_failed(&path, &e))?;
            // A built-in sender's name in another case (`HCSS`): its items are stored under the
            // lower-case name (an operator's tryout: it listed nothing, not even the note below).
            let built_in = a.provider.as_deref().and_then(|p| {
                let b = p.parse::<hookguard_core::Provider>().ok()?;
                (b.as_str() != p).then(|| b.as_str().to_owned())
            });
            if let Some(name) = built_in.filter(|_| items.is_empty()) {
                items = inbox
                    .list(filter.provider(name))
                    .await
                    .map_err(|e| store_failed(&path, &e))?;
            }
            // A mistyped sender lists nothing, like a sender with no items: said when the name
            // is no built-in sender's (an application's own senders keep their names).
            if let Some(p) = a
                .provider
                .as_deref()
                .filter(|p| items.is_empty() && p.parse::<hookguard_core::Provider>().is_err())
            {
                crate::common::write_stderr(format_args!(
                    "hookguard: no item of provider {p:?}, which is no built-in sender ({})",
                    hookguard_core::Provider::names()
                ));
            }
            for r in items.iter().take(a.limit as usize) {
                outln!("{}", object(&record_fields(r)))?;
            }
            if items.len() > a.limit as usize {
                crate::common::write_stderr(format_args!(
                    "hookguard: more items match than --limit {} (the newest are listed); pass a larger --limit to see them",
                    a.limit
                ));
            }
        }
        InboxCommand::Show(a) => {
            let (inbox, path) = open_to_read(&a.at).await?;
            let r = inbox
                .get(a.id)
                .await
                .map_err(|e| store_failed(&path, &e))?
                .ok_or_else(|| failed(InboxError::NotFound(a.id).to_string()))?;
            let mut fields = record_fields(&r);
            fields.push(("finished_at", r.finished_at_ms.map_or(Value::Null, time)));
            fields.push(("body_bytes", Value::from(r.body_len)));
            let headers: Vec<Value> = r
                .headers
                .iter()
                .map(|(n, v)| Value::from(vec![Value::from(n.as_str()), Value::from(v.as_str())]))
                .collect();
            fields.push(("headers", Value::from(headers)));
            let body = r.body.clone().unwrap_or_default();
            match std::str::from_utf8(&body) {
                Ok(text) => {
                    fields.push(("body_encoding", Value::from("utf-8")));
                    fields.push(("body", Value::from(text)));
                }
                Err(_) => {
                    fields.push(("body_encoding", Value::from("base64")));
                    fields.push((
                        "body",
                        Value::from(base64::engine::general_purpose::STANDARD.encode(&body)),
                    ));
                }
            }
            outln!("{}", object(&fields))?;
        }
        InboxCommand::Replay(a) => {
            let (inbox, path) = open(&a.at).await?;
            match a.id {
                Some(id) => {
                    inbox.replay(id, now_ms()).await.map_err(|e| store_failed(&path, &e))?;
                    outln!("{}", object(&[("replayed", Value::from(1)), ("id", Value::from(id))]))?;
                }
                None => {
                    let n = inbox.replay_dead(now_ms()).await.map_err(|e| store_failed(&path, &e))?;
                    // Stopped at the pending cap: say how many are left for a later replay.
                    let left = inbox.stats().await.map(|s| s.dead).unwrap_or(0);
                    let mut fields = vec![("replayed", Value::from(n))];
                    if left > 0 {
                        fields.push(("still_dead", Value::from(left)));
                    }
                    outln!("{}", object(&fields))?;
                }
            }
        }
        InboxCommand::Purge(a) => {
            let (inbox, path) = open(&a.at).await?;
            let age = i64::try_from(a.older_than.as_millis()).unwrap_or(i64::MAX);
            let before = now_ms().saturating_sub(age);
            let n = inbox.purge(before, true).await.map_err(|e| store_failed(&path, &e))?;
            outln!(
                "{}",
                object(&[("purged", Value::from(n)), ("finished_before", time(before))])
            )?;
        }
        InboxCommand::Migrate(at) => {
            let spec = parse_inbox_spec(&at.inbox)?;
            // Opening creates or migrates (idempotently, under a lock on PostgreSQL).
            let inbox = spec.open(None, true).await?;
            let s = inbox.stats().await.map_err(|e| store_failed(&spec.shown(), &e))?;
            outln!(
                "{}",
                object(&[
                    ("migrated", Value::from(true)),
                    ("inbox", Value::from(spec.shown())),
                    ("items", Value::from(s.pending + s.running + s.done + s.dead)),
                ])
            )?;
        }
        InboxCommand::Stats(at) => {
            let (inbox, path) = open_to_read(&at).await?;
            let s = inbox.stats().await.map_err(|e| store_failed(&path, &e))?;
            let age = s.oldest_pending_secs(now_ms()).map_or(Value::Null, Value::from);
            outln!(
                "{}",
                object(&[
                    ("pending", Value::from(s.pending)),
                    ("running", Value::from(s.running)),
                    ("done", Value::from(s.done)),
                    ("dead", Value::from(s.dead)),
                    ("total", Value::from(s.pending + s.running + s.done + s.dead)),
                    (
                        "oldest_pending_received_at",
                        s.oldest_pending_ms.map_or(Value::Null, time)
                    ),
                    ("oldest_pending_age_secs", age),
                    ("body_bytes", Value::from(s.body_bytes)),
                    ("disk_bytes", s.disk_bytes.map_or(Value::Null, Value::from)),
                ])
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        for bad in ["", "7", "d", "-1d", "1.5h", "7days", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn inbox_specs() {
        let file = |s: &str| InboxSpec::Sqlite(PathBuf::from(s));
        assert_eq!(parse_inbox_spec("a.db").unwrap(), file("a.db"));
        assert_eq!(parse_inbox_spec("sqlite:a.db").unwrap(), file("a.db"));
        assert_eq!(parse_inbox_spec("sqlite:///tmp/a.db").unwrap(), file("/tmp/a.db"));
        let pg = parse_inbox_spec("postgres://u:pw@h:5432/db?sslmode=disable&password=pw2").unwrap();
        assert!(matches!(pg, InboxSpec::Postgres(_)));
        assert_eq!(pg.shown(), "postgres://u:***@h:5432/db");
        // A password in the query, holding an `@`, without one in the user info.
        for (url, shown) in [
            ("postgres://u@h/db?password=p@ss", "postgres://u@h/db"),
            ("postgres:///db?host=/tmp&password=p@x", "postgres:///db"),
            ("postgres://u:p@w@h/db", "postgres://u:***@h/db"),
            ("postgres://h:5432/db", "postgres://h:5432/db"),
            ("postgres://[::1]:5432/db", "postgres://[::1]:5432/db"),
            // Unencoded `#`, `?`, `/` or `@` in a password: where it ends is unknown, nothing
            // of it is shown (each of these once showed part of it).
            ("postgres://app:S3CR#ETPW@localhost/db", "postgres://***"),
            ("postgres://app:S3CR?ETPW@localhost/db", "postgres://***"),
            ("postgres://app:S3CR/ETPW@localhost/db", "postgres://***"),
            ("postgres://app:1234?x@h/db", "postgres://***"),
            ("postgres://u:p@q?x@h/db", "postgres://***"),
            ("postgres://u:p@q#x@h/db", "postgres://***"),
            ("postgres://u:p@w@h/db#p@rt", "postgres://***"),
            ("postgres://app:S3CR", "postgres://***"),
        ] {
            assert_eq!(parse_inbox_spec(url).unwrap().shown(), shown);
        }
        assert_eq!(
            split_schema("postgres://h/db?sslmode=disable&hookguard_schema=hg1"),
            ("postgres://h/db?sslmode=disable".to_owned(), Some("hg1".to_owned()))
        );
        assert_eq!(
            split_schema("postgres://h/db?hookguard_schema=x"),
            ("postgres://h/db".to_owned(), Some("x".to_owned()))
        );
        // A parameter whose value cannot be read is named (not its value).
        for (url, name) in [
            ("postgres://u:s3cr3t@h/db?sslmode=bogus", "sslmode"),
            ("postgres://u:s3cr3t@h/db?hookguard_schema=a&port=notaport", "port"),
        ] {
            match parse_inbox_spec(url).unwrap().check() {
                Err(crate::common::CliError::Usage(m)) => {
                    assert!(
                        m.contains(&format!("its {name} parameter")) && !m.contains("s3cr3t"),
                        "{m}"
                    )
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        // Two schemas are refused, not the last taken.
        let twice = parse_inbox_spec("postgres://h/db?hookguard_schema=a&hookguard_schema=b").unwrap();
        assert!(matches!(twice.check(), Err(crate::common::CliError::Usage(m)) if m.contains("more than once")));
        assert!(parse_inbox_spec("postgres://h/db?hookguard_schema=a")
            .unwrap()
            .check()
            .is_ok());
        assert_eq!(
            parse_inbox_spec("postgresql://h/db").unwrap().shown(),
            "postgresql://h/db"
        );
        for bad in [
            "",
            "sqlite:",
            "mysql://u:pw@h/db",
            // Meant as PostgreSQL URLs: as file names their passwords would be shown.
            "postgres:app:pw@dbhost",
            "postgres:/app:pw@h/db",
            "PostgreSQL:app:pw@h",
            "app:pw@dbhost/db",
            // The colon after the scheme forgotten: the user info is a later segment.
            "postgres//app:pw@dbhost/db",
            "//app:pw@dbhost/db",
            "postgres/app:pw@dbhost",
        ] {
            match parse_inbox_spec(bad) {
                Err(crate::common::CliError::Usage(m)) => assert!(!m.contains("pw"), "{m}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        // A file may have such a name when it says so, and ordinary names stay files.
        assert_eq!(parse_inbox_spec("sqlite:app:pw@dbhost").unwrap(), file("app:pw@dbhost"));
        for name in ["inbox@2026.db", "./data/a:b.db", "/srv/x@y/inbox.db", "postgres.db"] {
            assert_eq!(parse_inbox_spec(name).unwrap(), file(name), "{name}");
        }
        // Debug never shows a password either.
        let pg = parse_inbox_spec("postgres://u:pw-9f@h/db").unwrap();
        assert!(!format!("{pg:?}").contains("pw-9f"), "{pg:?}");
    }

    proptest::proptest! {
        /// Whatever a password holds (`@ # ? / :` unencoded included), no part of it is shown
        /// by `shown()` or `Debug`; no value of `--inbox` panics.
        #[test]
        fn a_urls_password_is_never_shown(
            scheme in "postgres|postgresql|POSTGRES",
            user in "[a-z]{0,5}",
            pw in "PWX[a-zA-Z0-9@#?/:%]{0,8}",
            host in "[a-z]{1,5}(:[0-9]{1,5})?",
            db in "(/[a-z]{0,4})?",
            query in r"(\?[a-z=&@]{0,10})?",
        ) {
            let url = format!("{scheme}://{user}:{pw}@{host}{db}{query}");
            let spec = parse_inbox_spec(&url).unwrap();
            proptest::prop_assert!(matches!(spec, InboxSpec::Postgres(_)));
            let (shown, debug) = (spec.shown(), format!("{spec:?}"));
            proptest::prop_assert!(!shown.contains("PWX"), "{} shown as {}", url, shown);
            proptest::prop_assert!(!debug.contains("PWX"), "{} as {}", url, debug);
        }

        #[test]
        fn any_inbox_value_is_taken_or_refused(s in r"\PC{0,40}") {
            if let Ok(spec) = parse_inbox_spec(&s) {
                let _ = spec.shown();
            }
        }

        /// `N` and a unit is N times the unit up to 100 years; anything else is an error.
        #[test]
        fn durations_are_a_number_and_a_unit(n in 0u64..2_000_000_000, unit in "[smhdw]|x|") {
            let secs = match unit.as_str() {
                "s" => Some(1),
                "m" => Some(60),
                "h" => Some(3600),
                "d" => Some(86_400),
                "w" => Some(604_800),
                "" if n == 0 => Some(1),
                _ => None,
            };
            let want = secs
                .and_then(|u| n.checked_mul(u))
                .filter(|s| *s <= 100 * 365 * 86_400)
                .map(Duration::from_secs);
            proptest::prop_assert_eq!(parse_duration(&format!("{n}{unit}")).ok(), want);
        }

        /// Seconds (`--retry-base 0.2`): any text is refused or a duration in (0, 1 day].
        #[test]
        fn seconds_are_positive_and_at_most_a_day(s in r"[0-9.eE+\-]{0,12}|inf|NaN|\PC{0,12}") {
            if let Ok(d) = crate::common::parse_secs(&s) {
                proptest::prop_assert!(d > Duration::ZERO && d <= Duration::from_secs(86_400), "{} → {:?}", s, d);
            }
        }
    }

    #[test]
    fn objects_keep_their_key_order() {
        assert_eq!(
            object(&[
                ("b", Value::from(1)),
                ("a", Value::Null),
                ("id", Value::from("5982324300946918154"))
            ]),
            r#"{"b":1,"a":null,"id":"5982324300946918154"}"#
        );
    }
}
