//! `hookguard serve`: a receiver built on the tower layer in an axum router.

mod http_server;
mod metrics;
mod one_route;
mod stdout;
mod ui;

use std::collections::HashMap;
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::FromRequestParts as _;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hookguard_core::dedupe::{Dedupe, DedupeStore, MemoryStore, DEFAULT_LEASE};
use hookguard_core::inbox::{
    ClaimedItem, HandlerError, InboxError, InboxState, InboxStore, ListFilter, Outcome, RetryPolicy, Worker,
    WorkerHandle, DEFAULT_MAX_PENDING, MIN_LEASE,
};
use hookguard_core::{Delivery, Rejection};
use hookguard_tower::{VerifiedDelivery, WebhookLayer, WebhookService};
use one_route::{Handle, OneRoute};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot, watch};
use tower_layer::Layer as _;

use crate::common::{
    auth, failed, parse_header_arg, parse_secs, usage, write_stderr, CliError, CliResult, CoarseClock, HeaderArg,
    ProviderArg,
};
use crate::inbox::{inbox_error, parse_inbox_spec, InboxSpec};
pub use stdout::{Line, StdoutWriter};

const AFTER_HELP: &str = "\
Answers challenges on GET PATH (HCSS `?challenge=`) and receives deliveries on POST PATH.
Logs (startup, rejections with their codes) go to stderr; RUST_LOG=debug for more. A stderr
nobody reads never holds up an answer: log lines beyond a 1 MiB queue are dropped, and
their number is logged once stderr moves again.
A stderr line names the bound address: `listening on http://127.0.0.1:PORT/webhooks`.

Inline mode (default): the handler runs while the sender waits. For every first-time verified
delivery whose handling succeeded, prints one JSON line on stdout; without --exec printing is
the handling, and the 2xx (the claim then recorded as done) waits until the line is written
and flushed:
  {\"provider\":\"procore\",\"id\":\"5982324300946918154\",\"type\":\"…\",\"dedupe_key\":\"procore:01ED…\"}
Copies of a handled delivery are answered 200 {\"status\":\"duplicate\"} and not printed again
(Slack: an empty 200). HCSS bodies with no `date` (Setups, HeavyJob) carry no time, so two
genuine edits of one entity are byte-identical: their copies are recognised only while the
first is being handled (inline: 429 while its handler runs; inbox: only while it is pending,
until a worker starts it), and an identical body after that is handled as a new event.
Lines go through a queue of --stdout-queue lines to a writer that writes them in batches (a
task of the server when stdout is a pipe, else a thread of its own); a slow reader never
stalls challenges and rejections. When the queue is full, or a line is not written within
1 s (the reader stalled), the delivery is answered 503
stdout_backlog (Retry-After: 5; claim released, the sender retries; a line the writer had
already taken is then printed again with the retry — at least once, never lost): a delivery
answered 2xx always has its line. With --exec, CMD exiting 0 is the handling: the 2xx does not
wait for the line (a full queue still answers 503 before CMD runs), and a line still queued
when stdout fails is lost. If stdout is closed (the reader exited), serve stops and exits 1.

--exec CMD runs `sh -c CMD` once per first-time delivery, in a process group of its own, the
raw body on stdin and HOOKGUARD_PROVIDER, HOOKGUARD_EVENT_ID, HOOKGUARD_EVENT_TYPE,
HOOKGUARD_DEDUPE_KEY in the environment (empty when the delivery has none; its stdout goes to
stderr, at most 1 MiB of each stream per run, the rest counted and dropped). An id or type over 256 bytes (GitHub's and APS's
delivery headers: 128) or holding a control character, or an integer id beyond
64 bits (JSON readers take it as a float), is not kept (the body's digest keys the delivery), so its variable is empty; should a value still not fit the
environment (a NUL byte, or over 8 KiB), it is left out and HOOKGUARD_EVENT_ID_INVALID=1
(…_EVENT_TYPE_INVALID, …_DEDUPE_KEY_INVALID) set instead; the raw body on stdin still has
everything. Exit 0 → 204
(HCSS and Slack: 200, as their guides ask), delivery done. Non-zero exit → 500 handler_failed; past --exec-timeout → the whole process
group is killed (SIGKILL), 503 handler_timeout; either way the claim is released so the
sender's retry runs it again. On Linux the group also dies with serve, even when serve is
killed -9 (a guard process, `hookguard __exec-guard`, leads the group and kills it when its
parent goes), and what the command leaves running in the background (`job &`) is ended when
it exits: the delivery is done then, and nothing would end that work with serve.

Inbox mode (--inbox PATH): answer 2xx only once the delivery is on disk, handle it afterwards.
A verified new delivery is written to the SQLite file PATH (`sqlite:PATH` also accepted;
created if missing; WAL, synchronous=FULL) and answered 200 {\"status\":\"accepted\"} within
milliseconds; a copy of a pending, running or done one 200 {\"status\":\"duplicate\"} (a copy
of a dead one puts it back to pending, attempts reset: 200 accepted); when it cannot be stored
(disk full, over --max-pending) 503 + Retry-After, never a 2xx. Slack is answered an empty
200 for both (it posts a JSON answer to a slash command as a message). The inbox row is the dedupe
record (--store is refused). A worker in this process then handles each item, --workers at
a time: with --exec it runs CMD as above (plus HOOKGUARD_INBOX_ID and HOOKGUARD_ATTEMPT, 1 for
the first attempt); exit 0 → done; a non-zero exit, a crash or --exec-timeout → a failed
attempt, retried after an exponential backoff with jitter (--retry-base doubling per attempt,
at most --retry-max) until --max-attempts, then the item is dead until
`hookguard inbox replay` or the sender sends it again. Without --exec, handling is printing the line. The JSON line gets
\"attempts\" and is printed once the delivery is done, once per delivery, also across restarts:
  {\"provider\":\"procore\",\"id\":\"5982324300946918154\",\"type\":\"…\",\"dedupe_key\":\"…\",\"attempts\":1}
The line is written and flushed first (with --exec, after CMD exited 0), then the item is
marked done: a crash between the two prints it again (with --exec, after running CMD
again) — a delivery recorded done never misses its line. A full
or closed stdout gives the item back without using an attempt (tried again after 1 s, or after
a restart); while serve runs, a line still queued behind a slow reader is waited for, never
printed twice; nothing blocks, no line is dropped. A stop (SIGTERM) whose 10 s grace ends with
stdout still unread gives those items back: a reader that comes back later gets their lines,
and the items run (and print) again after the restart.
Handlers run at least once: a process killed during a handler (kill -9, power loss) leaves its
item running under a lease; once --lease expires the item runs again. On start, pending items
that are due and items whose lease expired are handled; an item waiting out a retry waits for
its time (`hookguard inbox replay ID` runs it now, attempts reset). Done items are kept 7 days (copies are recognised
meanwhile), then purged. Inspect and act on the file, also while serve runs, with
`hookguard inbox list|show|replay|purge|stats --inbox PATH`. Each serve runs only its own
--provider's items: receivers of several senders may share one inbox, each with its own --exec.
--inbox postgres://USER@HOST:PORT/DB (`?hookguard_schema=NAME` for a schema of its own) puts
the inbox in PostgreSQL instead: several serve replicas share it, each worker claims with
FOR UPDATE SKIP LOCKED, and a replica that dies mid-handler leaves a lease another one takes
over; a database outage answers 503 + Retry-After. The URL's password is never printed.

Authentication:
  buildworkpro, standard, stripe, github, slack: --secret (repeat it during a rotation)
  procore: --secret 'Bearer …' accepts `Authorization: Bearer …`;
           --auth-header 'X-Hook-Token: v' accepts that header instead
  hcss:    --secret TOKEN accepts the URL token (callback URL …/webhooks?token=TOKEN);
           --auth-header 'X-Hcss-Token: v' a shared header instead
  --auth-header 'X-Hook-Token:' (no value) names the header and takes the value(s) from
           HOOKGUARD_SECRET (one per line), out of other users' sight (ps)
Credentials (Authorization, the shared header; the URL is not stored) never reach the inbox.
SIGINT/SIGTERM/SIGHUP shut down gracefully (exit 0): stop accepting, let running handlers finish
(inline: each request in hand is answered, its --exec bounded by --exec-timeout; inbox: up to
10 s, then their claims are given back); pending work stays for the next start.

Observing (both off by default; ADDR is PORT on 127.0.0.1, or HOST:PORT):
  --metrics ADDR  Prometheus text format at http://ADDR/metrics: answers by provider, outcome
                  and rejection code, handler outcomes, inbox transitions and items per state,
                  verify/handler/accept times, the sender's consecutive failures. No event id,
                  path or secret is ever a label. Whatever the flags, a WARN line is logged when
                  the failures the sender counts reach half of its kill switch and an ERROR
                  line when they reach it: failed answers (non-2xx, or a 2xx later than the
                  sender waits) in a row (BuildWorkPro: 10 of 20), or for a sender counting
                  one event's tries, that event's failed tries (HCSS: 3 of 5; answers in a
                  row only get one WARN, at 5: they may be forged).
  --ui ADDR       The inspector page: recent answers and their verdicts (the last 200 to
                  new genuine deliveries and, apart, the last 200 others, in memory), sender
                  health against its kill switch, and with --inbox the items by state with
                  attempts and last error, and a replay button (dead items in the lists,
                  done items on their own page; \"Run now\" on a pending item waiting out
                  a retry); a shared inbox shows every sender's items.
                  It needs a token: a random one, printed once on stderr as the URL to open
                  (http://127.0.0.1:PORT/?token=…; the first visit sets a cookie), or
                  --ui-token. API clients send `Authorization: Bearer TOKEN` (JSON at
                  /api/status). Without it: 401.

Examples:
  hookguard serve --provider buildworkpro --secret whsec_live_123
  hookguard serve --provider procore --secret 'Bearer s3cret' --ignore-source-application 4821 \\
      --store redis://127.0.0.1:6379/0 --exec './handle-procore.sh'
  hookguard serve --provider hcss --secret hcss-url-token --listen 0.0.0.0:8080 --path /hooks/hcss
  hookguard serve --provider procore --secret 'Bearer s3cret' --inbox /var/lib/hookguard/procore.db \\
      --exec './slow-handler.sh' --exec-timeout 300 --lease 600 --workers 8 --max-attempts 12
  hookguard serve --provider buildworkpro --secret whsec_live_123 --inbox sqlite:bwp.db \\
      --retry-base 0.2 --retry-max 60
  hookguard serve --provider hcss --secret hcss-url-token --inbox hcss.db --metrics 127.0.0.1:9464 --ui 8790
  curl -s http://127.0.0.1:9464/metrics | grep hookguard_answers_total";

/// `hookguard serve`.
#[derive(clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct ServeArgs {
    /// Who sends the webhooks.
    #[arg(long, value_enum)]
    provider: ProviderArg,
    /// A signing secret, accepted header value (procore) or URL token (hcss). Repeat for rotation
    /// (in HOOKGUARD_SECRET, which keeps them out of `ps`: one per line).
    #[arg(long = "secret", value_name = "S", env = "HOOKGUARD_SECRET", hide_env_values = true)]
    secrets: Vec<String>,
    /// Accept this header instead (procore, hcss): 'Name: value'. Repeatable (same name).
    #[arg(long = "auth-header", value_name = "'NAME: VALUE'", value_parser = parse_header_arg)]
    auth_headers: Vec<HeaderArg>,
    /// The address to listen on: PORT on 127.0.0.1, or HOST:PORT (port 0: any free port,
    /// printed on stderr).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8787", value_parser = ui::parse_addr)]
    listen: String,
    /// The webhook path.
    #[arg(long, default_value = "/webhooks")]
    path: String,
    /// The replay window in seconds for timestamped schemes (default 300; 1 to 86400: a wider
    /// window is replay protection in name only).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=crate::common::MAX_TOLERANCE_SECS))]
    tolerance: Option<u64>,
    /// The body limit in bytes (503 body_too_large above it, retried: raise it if a sender needs more).
    #[arg(long, value_name = "BYTES", default_value_t = 1_048_576)]
    max_body: usize,
    /// How long the sender waits for an answer, when its figure does not fit: HCSS and Stripe
    /// publish none (10 s assumed for both). A 2xx ready later is counted as a failure in the
    /// sender's health and warned about; the body's read timeout (at most 4 s) and inline
    /// --exec's default timeout end 1 s before it (1 s at least). At least 1, at most 86400
    /// [default: the sender's; `hookguard send --help` lists them].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    sender_timeout: Option<Duration>,
    /// Inline mode's dedupe store: `memory` (the default; one process; remembers at most
    /// 1,000,000 keys, `memory:KEYS` to change that bound) or redis://HOST:PORT[/DB] (shared
    /// by replicas). Not with --inbox.
    #[arg(long, value_name = "memory[:KEYS]|redis://HOST:PORT[/DB]")]
    store: Option<String>,
    /// The Redis store's key prefix [default: hookguard:dedupe:]. Replicas of one receiver
    /// share it; receivers that must not share dedupe state need their own — also two
    /// endpoints subscribed to one sender: Stripe and Standard Webhooks (Svix) send one event
    /// id to every endpoint, so with one prefix the second endpoint would answer
    /// "duplicate" and never handle the event.
    #[arg(long, value_name = "PREFIX")]
    store_prefix: Option<String>,
    /// Inbox mode: store each verified delivery in this SQLite file (`PATH` or `sqlite:PATH`,
    /// created if missing) or PostgreSQL inbox (`postgres://…`), answer 200 once it is
    /// durable, handle it in a worker afterwards.
    #[arg(long, value_name = "PATH|postgres://…")]
    inbox: Option<String>,
    /// Run `sh -c CMD` per first-time delivery (body on stdin); with --inbox, from the worker.
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
    /// Kill --exec after this many seconds. Inline: answer 503 (keep it below the sender's
    /// timeout: Procore 5 s, BuildWorkPro 10 s) [default: 4, or 1 s below a sender that waits
    /// less: Slack 2, or --sender-timeout; 1 at least]. With --inbox: a failed attempt (it must stay below 90 % of --lease)
    /// [default: 80 % of --lease].
    #[arg(long, value_name = "SECS", value_parser = parse_secs, requires = "exec")]
    exec_timeout: Option<Duration>,
    /// With --inbox: handlers running at once [default: 4 with --exec; without it 64 (at most
    /// --stdout-queue, and 64 MiB of --max-body bodies but 4 at least): printing needs no
    /// limit, and fewer fall behind a sustained flood, each claim waiting for a commit]. As
    /// many items again may wait for their outcome (done mark) to be recorded.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    workers: Option<u32>,
    /// With --inbox: attempts before an item is dead [default: 10].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    max_attempts: Option<u32>,
    /// With --inbox: the delay bound after the first failed attempt, doubling per attempt
    /// (jittered between half and all of it); fractions allowed, a retry waits 0.05 s at least
    /// [default: 1].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    retry_base: Option<Duration>,
    /// With --inbox: the longest delay between attempts [default: 3600].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    retry_max: Option<Duration>,
    /// With --inbox: how long a claim holds an item; a process killed during a handler has its
    /// item run again once the lease expires [default: 60].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    lease: Option<Duration>,
    /// With --inbox: the most pending and running items in the inbox, every sender's (an inbox
    /// shared by several serves has one cap); beyond it deliveries are answered 503 inbox_full
    /// [default: 100000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_pending: Option<u64>,
    /// The longest a kept-alive connection may stay idle plus take to send its next request
    /// head (one limit, from the connection's start or its last answer; bytes arriving do not
    /// extend it; an answer waiting to be read counts toward --write-timeout instead); then it
    /// is closed without an answer, so a half-sent request never holds a
    /// connection for ever. Checked every second (every quarter of the limit when shorter).
    /// Senders that keep idle connections longer may see one closed under them now and then.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs)]
    header_timeout: Duration,
    /// The longest an answer may wait to be written (a client that sends requests and never
    /// reads the answers); then its connection is closed. The kernel lets a write go on only
    /// once about a third of the socket's send buffer is free, so a client that pipelines
    /// requests and reads the answers very slowly counts as not reading.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs)]
    write_timeout: Duration,
    /// Connections open at once (a delivery whose sender hung up keeps its place until its
    /// handling ends); more wait in the listen queue until one closes, so a flood of
    /// connections cannot take the file descriptors the inbox and --exec need. When someone
    /// waits, connections idle for a second are closed to make room. Each may hold a request
    /// head (up to 64 KiB) and a body (up to --max-body) in memory: memory is bounded by this
    /// many of both [default: what the open-file limit leaves after 256 (and 4 per --exec
    /// command that may run at once), at most 1024; more than the limit leaves is refused].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections: Option<u32>,
    /// JSON lines that may wait for a slow stdout reader; when full, deliveries get 503.
    #[arg(long, value_name = "LINES", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    stdout_queue: u32,
    /// Procore: answer 200 without handling deliveries caused by this application id
    /// (`metadata.source_application_id`), to avoid loops. Repeatable.
    #[arg(long = "ignore-source-application", value_name = "ID")]
    ignore_apps: Vec<String>,
    /// Procore: answer 200 without handling deliveries of changes this user made
    /// (`metadata.source_user_id`, or `user_id` when that is absent or null, as in v4
    /// payloads): the service account your integration writes with, to avoid loops.
    /// Repeatable.
    #[arg(long = "ignore-source-user", value_name = "ID")]
    ignore_users: Vec<String>,
    /// Answer a well-formed signature that no --secret produced `503 signature_not_verified`
    /// with Retry-After instead of `401 signature_mismatch`: BuildWorkPro's rotation has no
    /// overlap and never retries a 401, so deliveries signed with its new secret are retried
    /// (7 tries over about 31 h) until this receiver is restarted with it. Every 503 still
    /// counts toward its 20 consecutive failures that disable the endpoint: restart soon.
    #[arg(long)]
    retry_signature_mismatch: bool,
    /// Recognise copies of an event by these signed fields instead of the sender's own id:
    /// comma-separated JSON pointers into the body and `header:NAME` for headers the sender
    /// signs (standard: webhook-id, webhook-timestamp; an unsigned header is refused);
    /// alternatives of one field separated by `|`, the first present counting.
    ///
    /// Procore sends one change as several events with distinct ids now and then: `--dedupe-key
    /// '/resource_name|/resource_type,/resource_id,/event_type|/reason,/timestamp'` handles it
    /// once, for v2/v3 hooks and for v4 hooks (which name two of those fields otherwise). Copies
    /// are remembered for the retention, so the fields must identify one event (include a time
    /// or an id). A delivery lacking a field keeps the sender's own key (never rejected). The
    /// key in the JSON line is `PROVIDER:fields:[values…]`.
    #[arg(long, value_name = "/FIELD,…")]
    dedupe_key: Option<hookguard_core::DedupeKey>,
    /// Serve Prometheus metrics at http://ADDR/metrics (ADDR: PORT on 127.0.0.1, or HOST:PORT).
    #[arg(long, value_name = "ADDR", value_parser = ui::parse_addr)]
    metrics: Option<String>,
    /// Serve the inspector page at http://ADDR/ (ADDR: PORT on 127.0.0.1, or HOST:PORT); needs
    /// the token printed on stderr, or --ui-token.
    #[arg(long, value_name = "ADDR", value_parser = ui::parse_addr)]
    ui: Option<String>,
    /// The inspector's token instead of a random one (at least 16 of A-Z a-z 0-9 . _ -).
    #[arg(long, value_name = "TOKEN", env = "HOOKGUARD_UI_TOKEN", hide_env_values = true, value_parser = ui::parse_token)]
    ui_token: Option<String>,
}

/// The command the handler runs per delivery.
#[derive(Debug, Clone)]
pub struct Exec {
    /// The `sh -c` command.
    pub cmd: String,
    /// Its time limit.
    pub timeout: Duration,
    /// Further variables it never inherits: serve's credentials for its inbox
    /// ([`POSTGRES_CREDENTIALS`] with a PostgreSQL inbox).
    pub withheld: &'static [&'static str],
}

enum ExecError {
    Spawn(std::io::Error),
    Exit(std::process::ExitStatus),
    Io(std::io::Error),
    TimedOut,
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecError::Spawn(e) => write!(f, "could not start sh: {e}"),
            ExecError::Exit(s) => write!(f, "exited with {s}"),
            ExecError::Io(e) => write!(f, "i/o error: {e}"),
            ExecError::TimedOut => f.write_str("timed out; its process group was killed"),
        }
    }
}

/// The longest value put in the command's environment. Linux refuses a single string over
/// 128 KiB (`E2BIG`) and all of them together over the argument limit; ids and types are short.
const MAX_ENV_VALUE: usize = 8 * 1024;

/// Why a value is not put in the environment as is.
fn env_unsafe(value: &str) -> Option<&'static str> {
    if value.as_bytes().contains(&0) {
        Some("it holds a NUL byte")
    } else if value.len() > MAX_ENV_VALUE {
        Some("it is longer than 8 KiB")
    } else {
        None
    }
}

/// `sh -c 'kill -s KILL -- -PGID'`: SIGKILL to a whole process group. The crate forbids
/// `unsafe` (no `libc::kill`), and the POSIX shell the command runs in is there anyway.
fn kill_group_command(pgid: u32) -> std::process::Command {
    let mut c = std::process::Command::new("sh");
    c.arg("-c")
        .arg("kill -s KILL -- \"-$1\"")
        .arg("hookguard-exec-kill")
        .arg(pgid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Kills the process group `pgid` unless disarmed: a handler future dropped mid-run (the
/// connection closed, shutdown) leaves no stray processes behind. It must be disarmed once
/// the group leader has been reaped (its number could then be reused).
struct GroupGuard(Option<u32>);

impl GroupGuard {
    async fn kill(&mut self) {
        if let Some(pgid) = self.0 {
            let mut c = tokio::process::Command::from(kill_group_command(pgid));
            if !c.status().await.is_ok_and(|s| s.success()) {
                tracing::warn!(pgid, "could not kill the --exec process group");
            }
            // Only now: dropped while waiting for `kill`, the guard still kills on drop.
            self.0 = None;
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            // Rare path (dropped mid-run): a short blocking fork+exec is acceptable here.
            let _ = kill_group_command(pgid).status();
        }
    }
}

/// `sh -c CMD`. On Linux through `hookguard __exec-guard` (see `exec_guard.rs`), which runs it
/// and kills its whole process group when this process dies, even by kill -9: no command
/// outlives `serve` to run beside the next one.
fn command(cmd: &str) -> tokio::process::Command {
    #[cfg(target_os = "linux")]
    if guard_available() {
        // The running binary itself, even if its file was replaced or removed since it started.
        let mut c = tokio::process::Command::new(SELF_EXE);
        // `--`: a command that starts with `-` is the command, never an option of the guard.
        c.arg("__exec-guard")
            .arg("--")
            .arg(std::process::id().to_string())
            .arg(cmd);
        return c;
    }
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c").arg(cmd);
    c
}

#[cfg(target_os = "linux")]
const SELF_EXE: &str = "/proc/self/exe";

/// Whether the guard can be started (`/proc` is mounted); said once when it cannot.
#[cfg(target_os = "linux")]
fn guard_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let ok = std::fs::metadata(SELF_EXE).is_ok();
        if !ok {
            tracing::warn!("--exec: {SELF_EXE} is missing (no /proc?): commands run without a guard and outlive serve if it is killed -9");
        }
        ok
    })
}

/// Variables only inbox mode sets (removed otherwise, so none leaks from serve's environment).
const INBOX_VARIABLES: [&str; 2] = ["HOOKGUARD_INBOX_ID", "HOOKGUARD_ATTEMPT"];

/// serve's own credentials, given through its environment: the command never inherits them
/// (it gets the delivery, not the means to forge one or to open the inspector).
const CREDENTIAL_VARIABLES: [&str; 2] = ["HOOKGUARD_SECRET", "HOOKGUARD_UI_TOKEN"];

/// With a PostgreSQL inbox, the password serve's own connection reads from its environment
/// (libpq's variable, read by sqlx; `serve` tells users to put it there rather than in the
/// URL): the command never inherits the inbox database's credential either.
const POSTGRES_CREDENTIALS: [&str; 1] = ["PGPASSWORD"];

impl Exec {
    /// Runs the command once for `d` (inline handler and inbox worker alike): `sh -c CMD` in a
    /// process group of its own (led by the guard on Linux, see [`command`]), the body on stdin,
    /// env-safe variables, the whole group killed past the timeout (or when this future is
    /// dropped), the group's leader always reaped. `extra` adds variables (inbox mode:
    /// [`INBOX_VARIABLES`]).
    async fn run(&self, d: &Delivery, extra: &[(&str, String)]) -> Result<(), ExecError> {
        let mut cmd = command(&self.cmd);
        cmd.env("HOOKGUARD_PROVIDER", d.provider().as_str());
        for name in INBOX_VARIABLES.iter().chain(&CREDENTIAL_VARIABLES).chain(self.withheld) {
            cmd.env_remove(name);
        }
        for (name, value) in extra {
            cmd.env(name, value);
        }
        for (name, value) in [
            ("HOOKGUARD_EVENT_ID", d.event_id()),
            ("HOOKGUARD_EVENT_TYPE", d.event_type()),
            ("HOOKGUARD_DEDUPE_KEY", d.dedupe_key()),
        ] {
            let value = value.unwrap_or("");
            let invalid = format!("{name}_INVALID");
            match env_unsafe(value) {
                None => {
                    cmd.env(name, value).env_remove(invalid);
                }
                Some(why) => {
                    // Refusing would cost the event (a permanent 4xx) or retry it forever (5xx):
                    // the command still gets the raw body, with everything, on stdin.
                    tracing::warn!(
                        provider = %d.provider(),
                        variable = name,
                        len = value.len(),
                        "--exec: {name} left out of the environment because {why}; {invalid}=1 set"
                    );
                    cmd.env_remove(name).env(invalid, "1");
                }
            }
        }
        // A group of its own, so a timeout kills the command's children too.
        #[cfg(unix)]
        cmd.process_group(0);
        let mut child = cmd
            .stdin(Stdio::piped())
            // Keep stdout for the JSON lines: the command's output goes to stderr, through the
            // logs' queue (a stderr nobody reads must not stall the command, and with it the
            // delivery's answer).
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(ExecError::Spawn)?;
        let mut output = Forwarding(Vec::new());
        if let Some(out) = child.stdout.take() {
            output.0.push(tokio::spawn(crate::logs::forward(out, "stdout")));
        }
        if let Some(err) = child.stderr.take() {
            output.0.push(tokio::spawn(crate::logs::forward(err, "stderr")));
        }
        // Declared after `child`, so dropped first: the group dies before tokio reaps its leader.
        let mut group = GroupGuard(child.id());
        let stdin = child.stdin.take();
        let body = d.body().clone();
        let result = tokio::time::timeout(self.timeout, async {
            if let Some(mut s) = stdin {
                // A command that does not read its stdin closes the pipe: not an error.
                let _ = s.write_all(&body).await;
                drop(s);
            }
            child.wait().await
        })
        .await;
        let outcome = match result {
            Ok(Ok(status)) => {
                // The leader is reaped: its number may be reused, never signal that group again.
                group.disarm();
                if status.success() {
                    Ok(())
                } else {
                    Err(ExecError::Exit(status))
                }
            }
            Ok(Err(e)) => Err(ExecError::Io(e)),
            Err(_) => {
                // Kill the whole group while its leader is still unreaped (its number stays
                // ours), then reap the leader; the orphaned children are reaped by init.
                group.kill().await;
                let _ = child.start_kill();
                let _ = child.wait().await;
                Err(ExecError::TimedOut)
            }
        };
        output.finish().await;
        outcome
    }
}

/// The tasks copying a command's output to the logs. A process the command left running (`cmd
/// &`) holds the pipes open: past a short wait after the command ended, they are closed (the
/// copies stop), so such processes never pile up serve's file descriptors — each had kept two,
/// until `sh` itself could no longer be started. Aborted when dropped, too.
struct Forwarding(Vec<tokio::task::JoinHandle<()>>);

impl Forwarding {
    /// Lets the output already written reach the logs (at most 250 ms), then stops copying.
    async fn finish(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(250);
        for copy in &mut self.0 {
            let _ = tokio::time::timeout_at(deadline, copy).await;
        }
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        for copy in &self.0 {
            copy.abort();
        }
    }
}

/// How long an inline delivery waits for its line to be written before it is answered 503
/// `stdout_backlog` (the reader has stalled; the claim is released and the sender retries).
const LINE_WAIT: Duration = Duration::from_secs(1);

/// Where the JSON lines of handled deliveries go.
enum Output {
    /// The bounded queue the stdout writer drains.
    Stdout(mpsc::Sender<Line>),
    /// Kept in memory (the demo).
    Record(Mutex<Vec<String>>),
}

/// What the handler does with a verified, first-time delivery.
pub struct Handler {
    exec: Option<Exec>,
    output: Output,
}

impl Handler {
    /// A handler whose lines go to the stdout queue (see [`StdoutWriter`]).
    pub fn printing(exec: Option<Exec>, queue: mpsc::Sender<Line>) -> Self {
        Self {
            exec,
            output: Output::Stdout(queue),
        }
    }

    /// A handler that only records (for the demo).
    pub fn recording() -> Self {
        Self {
            exec: None,
            output: Output::Record(Mutex::new(Vec::new())),
        }
    }

    /// The JSON summaries of every delivery handled so far (recording handlers only).
    pub fn handled(&self) -> Vec<String> {
        match &self.output {
            Output::Record(h) => h.lock().map(|h| h.clone()).unwrap_or_default(),
            Output::Stdout(_) => Vec::new(),
        }
    }
}

fn rejection(r: &Rejection) -> Response {
    hookguard_core::response::rejection(r)
        .map(axum::body::Body::from)
        .into_response()
}

/// `503` + `Retry-After`: the stdout reader is behind (or gone); the claim is released.
fn stdout_unavailable(code: &'static str, message: &'static str) -> Response {
    let mut r = (
        http::StatusCode::SERVICE_UNAVAILABLE,
        [
            (http::header::CONTENT_TYPE, "application/json"),
            (http::header::RETRY_AFTER, "5"),
            (http::header::CACHE_CONTROL, "no-store"),
        ],
        serde_json::json!({ "error": code, "message": message }).to_string(),
    )
        .into_response();
    r.headers_mut().insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    r
}

/// [`on_delivery`] boxed, for the route's handler service ([`Handle`]).
fn on_delivery_boxed(h: Arc<Handler>, req: axum::extract::Request) -> one_route::Answering {
    Box::pin(on_delivery(h, req))
}

/// Handles a delivery the webhook layer verified and claimed (it is in the request's
/// extensions, taken out rather than copied: this is its only reader).
async fn on_delivery(h: Arc<Handler>, req: axum::extract::Request) -> Response {
    let (mut parts, _) = req.into_parts();
    // Held until the handling ends: a delivery whose sender hung up keeps its connection's
    // place, so --max-connections also bounds the commands run for such deliveries.
    let _share = parts.extensions.remove::<http_server::ConnectionShare>();
    let Some(d) = parts.extensions.remove::<Delivery>() else {
        // No layer in front (a routing mistake): the extractor's own refusal, logged, 500.
        return match VerifiedDelivery::from_request_parts(&mut parts, &()).await {
            Ok(VerifiedDelivery(_)) => http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            Err(refused) => refused.into_response(),
        };
    };
    // The head's bytes share the connection's read buffer: not held while the handler waits.
    drop(parts);
    // Reserve the line's place first: a 2xx must never be answered for a line that cannot be
    // printed, and a full queue must not run the command (the retry will).
    let permit = match &h.output {
        Output::Stdout(queue) => match queue.try_reserve() {
            Ok(p) => Some(p),
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    provider = %d.provider(),
                    event_id = d.event_id(),
                    "stdout is not being read fast enough (queue full); answering 503 stdout_backlog"
                );
                return stdout_unavailable("stdout_backlog", "the receiver's output is not being read; retry later");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return stdout_unavailable("stdout_closed", "the receiver is stopping; retry later");
            }
        },
        Output::Record(_) => None,
    };
    if let Some(exec) = &h.exec {
        if let Err(e) = exec.run(&d, &[]).await {
            tracing::warn!(
                provider = %d.provider(),
                event_id = d.event_id(),
                error = %e,
                "--exec failed; answering a retryable status and releasing the claim"
            );
            return rejection(&match e {
                ExecError::TimedOut => Rejection::HandlerTimeout,
                _ => Rejection::HandlerFailed,
            });
        }
    }
    // Debug: stdout's line is the delivery's record; at info this line on stderr cost about a
    // tenth of `serve`'s requests/s (formatting on the server's thread), and `--help` promises
    // startup and rejections at the default level.
    tracing::debug!(
        provider = %d.provider(),
        event_id = d.event_id(),
        event_type = d.event_type(),
        "delivery handled"
    );
    let line = d.summary_json();
    let provider = d.provider();
    // The body is a slice of the connection's read buffer: held across the wait below, hyper
    // (which reads on while the answer is pending) would have to allocate a new buffer.
    drop(d);
    match (&h.output, permit) {
        (Output::Stdout(_), Some(p)) if h.exec.is_some() => {
            // CMD exiting 0 was the handling (a 2xx must not make a stalled reader run it again
            // on every retry): the line is a report, queued in its reserved slot.
            p.send(Line {
                text: line,
                written: None,
            });
        }
        (Output::Stdout(_), Some(p)) => {
            // Printing the line is the handling: the 2xx waits until it is written and flushed
            // (a line still in our queue is lost if stdout fails or the process dies, and the
            // completed claim would then answer the sender's retry `duplicate`). If it is not
            // out in time, the answer is 503 and the claim is released: the line is printed at
            // least once, and twice only if the writer had already taken it.
            let (written, ack) = oneshot::channel();
            p.send(Line {
                text: line,
                written: Some(written),
            });
            match tokio::time::timeout(LINE_WAIT, ack).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return stdout_unavailable("stdout_closed", "the receiver's output is closed; retry later");
                }
                Err(_) => {
                    tracing::warn!(
                        %provider,
                        "stdout is not being read (the line was not written within {LINE_WAIT:?}); answering 503 stdout_backlog"
                    );
                    return stdout_unavailable(
                        "stdout_backlog",
                        "the receiver's output is not being read; retry later",
                    );
                }
            }
        }
        (Output::Record(h), _) => {
            // Only the demo records (a dozen lines); a long-running `serve` keeps nothing.
            if let Ok(mut h) = h.lock() {
                h.push(line);
            }
        }
        (Output::Stdout(_), None) => {}
    }
    success_status(provider).into_response()
}

/// The answer to a handled delivery: `204`, but `200` for HCSS, whose guide says its
/// deliveries "must respond with a HTTP 200 Status code" to keep the subscription, and for
/// Slack, which documents an empty `200` as the acknowledgement of a slash command, an
/// interaction or an event.
fn success_status(provider: hookguard_core::Provider) -> http::StatusCode {
    if matches!(
        provider,
        hookguard_core::Provider::Hcss | hookguard_core::Provider::Slack
    ) {
        http::StatusCode::OK
    } else {
        http::StatusCode::NO_CONTENT
    }
}

/// A router serving one webhook route behind `layer` (every method goes through the layer:
/// it answers challenges and refuses other methods itself).
pub fn route(path: &str, layer: WebhookLayer, handler: Arc<Handler>) -> Router {
    Router::new().route_service(path, layer.layer(Handle::new(handler, on_delivery_boxed)))
}

/// How `serve` serves its webhook path: with `--ui` a router, which the inspector's recording
/// middleware (an axum one) wraps; otherwise [`OneRoute`], without a router's per-request
/// work.
enum WebhookApp<T> {
    Recorded(Router),
    Direct(OneRoute<WebhookService<Handle<T>>>),
}

impl<T: Send + Sync + 'static> WebhookApp<T> {
    /// `service` at `path`. Before [`ui::Extras::start`], which takes the inspector's listener.
    fn new(
        path: &str,
        service: WebhookService<Handle<T>>,
        extras: &ui::Extras,
        receiver: &Arc<hookguard_core::Receiver>,
    ) -> Self {
        if extras.records() {
            Self::Recorded(extras.wrap(Router::new().route_service(path, service), receiver))
        } else {
            Self::Direct(OneRoute::new(path, service))
        }
    }

    /// [`serve_until_stopped`] with it.
    async fn serve(
        self,
        listener: tokio::net::TcpListener,
        signals: StopSignals,
        closed_rx: oneshot::Receiver<std::io::Error>,
        args: &ServeArgs,
    ) -> bool {
        match self {
            Self::Recorded(app) => serve_until_stopped(listener, app, signals, closed_rx, args).await,
            Self::Direct(route) => serve_until_stopped(listener, route, signals, closed_rx, args).await,
        }
    }
}

/// The receiver settings shared by `serve` and `demo`.
pub struct ReceiverSpec<'a> {
    /// The provider.
    pub provider: ProviderArg,
    /// `--secret` values.
    pub secrets: &'a [String],
    /// `--auth-header` values.
    pub auth_headers: &'a [HeaderArg],
    /// `--tolerance`.
    pub tolerance: Option<u64>,
    /// `--max-body`.
    pub max_body: usize,
    /// `--ignore-source-application`.
    pub ignore_apps: &'a [String],
    /// `--retry-signature-mismatch`.
    pub retry_mismatch: bool,
    /// `--ignore-source-user`.
    pub ignore_users: &'a [String],
    /// `--sender-timeout`: how long the sender waits, when its profile's figure does not fit.
    pub sender_timeout: Option<Duration>,
    /// The dedupe lease.
    pub lease: Duration,
}

/// What a receiver keeps deliveries in.
pub enum Keeper {
    /// Inline handling with dedupe claims in this store.
    Dedupe(Arc<dyn DedupeStore>),
    /// Inbox mode: verified deliveries are stored here; a worker handles them.
    Inbox(Arc<dyn InboxStore>),
}

/// Builds the tower layer with the core's `ReceiverBuilder`: verifier (scheme, secrets,
/// window, bounds) plus dedupe claims in a store, or `.inbox(..)`.
pub fn layer(spec: &ReceiverSpec<'_>, keeper: Keeper) -> CliResult<(WebhookLayer, String)> {
    layer_keyed(spec, keeper, None)
}

/// [`layer`] with `--dedupe-key`: copies are recognised by these signed fields.
pub fn layer_keyed(
    spec: &ReceiverSpec<'_>,
    keeper: Keeper,
    dedupe_key: Option<&hookguard_core::DedupeKey>,
) -> CliResult<(WebhookLayer, String)> {
    let a = auth(spec.provider, spec.secrets, spec.auth_headers)?;
    let mut b = hookguard_tower::WebhookLayerBuilder::new(a.scheme)
        .secrets(&a.secrets)
        .max_body(spec.max_body)
        .clock(crate::common::CoarseClock);
    if let Some(t) = spec.tolerance {
        b = b.tolerance(Duration::from_secs(t));
    }
    for app in spec.ignore_apps {
        b = b.ignore_source_application(app.clone());
    }
    for user in spec.ignore_users {
        b = b.ignore_source_user(user.clone());
    }
    b = b.retry_signature_mismatch(spec.retry_mismatch);
    if let Some(t) = spec.sender_timeout {
        b = b.sender_timeout(t);
    }
    if let Some(k) = dedupe_key {
        b = b.dedupe_key(k.clone());
    }
    b = match keeper {
        Keeper::Dedupe(store) => b.dedupe_policy(Dedupe::from_arc(store).lease(spec.lease)),
        Keeper::Inbox(inbox) => b.inbox(inbox),
    };
    let layer = b.build().map_err(|e| crate::common::config_error(&e))?;
    Ok((layer, a.mode))
}

/// Opens `--store` (Redis keys under `prefix`, or the default prefix).
pub async fn open_store(spec: &str, prefix: Option<&str>) -> CliResult<(Arc<dyn DedupeStore>, &'static str)> {
    if prefix.is_some() && !spec.starts_with("redis://") {
        return Err(usage("--store-prefix names the keys of a redis:// --store"));
    }
    if spec == "memory" {
        return Ok((Arc::new(MemoryStore::builder().clock(CoarseClock).build()), "memory"));
    }
    if let Some(keys) = spec.strip_prefix("memory:") {
        let keys: usize = keys
            .parse()
            .ok()
            .filter(|&k| k > 0)
            .ok_or_else(|| usage(format!("--store {spec}: KEYS must be a positive number of keys")))?;
        return Ok((
            Arc::new(MemoryStore::builder().capacity(keys).clock(CoarseClock).build()),
            "memory",
        ));
    }
    if spec.starts_with("redis://") {
        let store = hookguard_redis::RedisStore::builder(spec)
            .prefix(prefix.unwrap_or(hookguard_redis::DEFAULT_PREFIX))
            .connect()
            .await
            .map_err(|e| failed(format!("cannot open the Redis store: {e}")))?;
        return Ok((Arc::new(store), "redis"));
    }
    if spec.starts_with("rediss://") {
        return Err(usage(
            "--store rediss:// (TLS) is not supported by this build; use redis://",
        ));
    }
    // Not echoed: a mistyped URL can still carry a password.
    Err(usage(
        "--store must be `memory`, `memory:N` or redis://HOST:PORT[/DB] (value not shown: it may hold a password)",
    ))
}

/// The signals that stop `serve` gracefully, listened for (on Unix) from the moment this is made: made
/// before the `listening on` line, so that a supervisor's SIGTERM sent as soon as it reads
/// that line is a graceful stop (listened for only once serving had started, such a signal
/// ended the process at once).
pub(crate) struct StopSignals {
    #[cfg(unix)]
    streams: [Option<tokio::signal::unix::Signal>; 3],
}

impl StopSignals {
    /// Listens from now: SIGTERM, SIGINT (Ctrl-C) and SIGHUP (the terminal serve ran in
    /// closed; stopping gracefully lets running handlers finish and gives back what the inbox
    /// worker holds, where the default action ended the process at once).
    pub(crate) fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            StopSignals {
                streams: [SignalKind::terminate(), SignalKind::interrupt(), SignalKind::hangup()]
                    .map(|kind| signal(kind).ok()),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Until one of the signals arrives (or arrived since [`StopSignals::listen`]); its number
    /// (15, 2 or 1), for a shell's exit status of 128 + N.
    pub(crate) async fn received(self) -> u8 {
        #[cfg(unix)]
        let number = {
            async fn one(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            let [term, int, hup] = self.streams;
            tokio::select! {
                () = one(term) => 15,
                () = one(int) => 2,
                () = one(hup) => 1,
            }
        };
        #[cfg(not(unix))]
        let number = {
            let _ = tokio::signal::ctrl_c().await;
            2
        };
        tracing::info!("signal received: shutting down gracefully");
        number
    }
}

/// `--exec-timeout` without --inbox: 4 s (below Procore's 5 s), and 1 s below a sender that
/// `waits` less (Slack's 3 s: 2 s, or `--sender-timeout`), at least 1 s.
fn inline_exec_timeout(provider: ProviderArg, waits: Duration) -> Duration {
    let mut profile = provider.profile();
    profile.timeout = waits;
    profile.within_timeout(Duration::from_secs(4))
}

/// Handlers the inbox worker runs at once without --exec when --workers is not given. Printing
/// a line needs no limit of its own (one writer prints the lines in turn), but the worker must
/// keep up with the accepts: each claim waits for a commit (under a flood, the accepts' fsync,
/// about a millisecond), so 4 items in flight drained about 1,200 items/s while `serve`
/// accepted 17,800/s, and the backlog grew until --max-pending answered 503 (BENCHMARKS,
/// twenty-fourth session). As many items again wait for their done mark's commit (the
/// worker's settling slots), so 64 hold as many items as 128 did when a done mark held its
/// handler's slot (BENCHMARKS, twenty-sixth session).
const PRINT_WORKERS: usize = 64;

/// The bodies the handlers may hold at once (each claimed item carries its body, at most
/// --max-body; as many again wait for their done marks): with the default 1 MiB, all 64.
const PRINT_BODY_BUDGET: usize = 64 << 20;

/// --workers, or when not given: 4 with --exec (commands at once); without it
/// [`PRINT_WORKERS`], at most what [`PRINT_BODY_BUDGET`] holds of --max-body bodies (but 4 at
/// least), and at most --stdout-queue (more would only wait for a place in it).
fn workers(args: &ServeArgs) -> usize {
    if let Some(n) = args.workers {
        return n as usize;
    }
    if args.exec.is_some() {
        return 4;
    }
    let bodies = (PRINT_BODY_BUDGET / args.max_body.max(1)).max(4);
    PRINT_WORKERS.min(args.stdout_queue as usize).min(bodies)
}

/// The worker settings of `serve --inbox`, checked.
struct InboxSettings {
    spec: InboxSpec,
    workers: usize,
    retry: RetryPolicy,
    lease: Duration,
    max_pending: u64,
}

/// Checks the inbox flags: they need --inbox, --inbox excludes --store, the lease outlives
/// --exec-timeout.
fn inbox_settings(args: &ServeArgs) -> CliResult<Option<InboxSettings>> {
    let Some(spec) = &args.inbox else {
        let given = [
            ("--workers", args.workers.is_some()),
            ("--max-attempts", args.max_attempts.is_some()),
            ("--retry-base", args.retry_base.is_some()),
            ("--retry-max", args.retry_max.is_some()),
            ("--lease", args.lease.is_some()),
            ("--max-pending", args.max_pending.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
            return Err(usage(format!("{flag} applies to inbox mode only: add --inbox PATH")));
        }
        return Ok(None);
    };
    if args.store.is_some() || args.store_prefix.is_some() {
        return Err(usage(
            "--store (and --store-prefix) and --inbox are exclusive: the inbox row is the dedupe record (drop --store)",
        ));
    }
    let spec = parse_inbox_spec(spec)?;
    spec.check()?;
    let defaults = RetryPolicy::default();
    let base = args.retry_base.unwrap_or(defaults.base);
    let max = args.retry_max.unwrap_or(defaults.max);
    if max < base {
        return Err(usage(format!(
            "--retry-max ({} s) is below --retry-base ({} s)",
            max.as_secs_f64(),
            base.as_secs_f64()
        )));
    }
    let lease = args.lease.unwrap_or(Duration::from_secs(60));
    // The worker holds no claim for less (it raises a shorter lease), while the command's
    // default timeout follows the value given: a tinier one killed every command, and a
    // handler that always succeeds went dead.
    if lease < MIN_LEASE {
        return Err(usage(format!(
            "--lease ({} s) is below the shortest lease, {} s",
            lease.as_secs_f64(),
            MIN_LEASE.as_secs_f64()
        )));
    }
    if let (Some(_), Some(timeout)) = (&args.exec, args.exec_timeout) {
        if timeout >= lease.mul_f64(0.9) {
            return Err(usage(format!(
                "--exec-timeout ({} s) must be below 90 % of --lease ({} s): the lease must outlive the command, \
                 or another worker could run the item while it still runs",
                timeout.as_secs_f64(),
                lease.as_secs_f64()
            )));
        }
    }
    Ok(Some(InboxSettings {
        spec,
        workers: workers(args),
        retry: RetryPolicy::new(base, max, args.max_attempts.unwrap_or(defaults.max_attempts)),
        lease,
        max_pending: args.max_pending.unwrap_or(DEFAULT_MAX_PENDING),
    }))
}

/// The inbox worker's handler and outcome hook: runs --exec (or prints), and prints the line
/// of a done item exactly when it becomes done.
struct InboxJob {
    exec: Option<Exec>,
    queue: mpsc::Sender<Line>,
    /// The line queued for an item (after --exec succeeded, if given), until the item is done
    /// or dead. A stdout read too slowly can keep a line queued past an attempt's wait; the
    /// next attempt waits for that line instead of running --exec again or queueing another
    /// (each delivery is printed once).
    printing: Mutex<HashMap<i64, Queued>>,
    /// The worker's lease: an attempt waits for its line at most half of it, and never past
    /// the worker's handler timeout (90 % of it, from the claim).
    lease: Duration,
    /// `serve` is stopping (see [`InboxJob::forget_queued`]): an attempt with no line queued
    /// starts nothing (no --exec, no line) and gives its item back for the next start.
    stopping: std::sync::atomic::AtomicBool,
    /// When `printing` was last swept of lines settled elsewhere (see [`InboxJob::sweep`]).
    swept: Mutex<Option<tokio::time::Instant>>,
    /// How long after it was written a line no attempt waits for is forgotten
    /// ([`SETTLED_AFTER`]).
    settled_after: Duration,
}

/// An inbox item's line in the stdout queue.
struct Queued {
    /// `None` while queued, then whether it was written.
    flushed: watch::Receiver<Option<bool>>,
    /// Turns the writer's acknowledgement into `flushed`. Aborted when the line must not be
    /// written any more: the writer skips a line whose acknowledgement nobody holds.
    ack: tokio::task::JoinHandle<()>,
    /// Attempts waiting for the line now.
    waiting: usize,
    /// When it was written (set once it was).
    written_at: Arc<std::sync::OnceLock<tokio::time::Instant>>,
}

/// An attempt waiting for its item's line (see [`Queued::waiting`]), until dropped.
struct Waiting<'a> {
    printing: &'a Mutex<HashMap<i64, Queued>>,
    id: i64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(q) = self
            .printing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&self.id)
        {
            q.waiting = q.waiting.saturating_sub(1);
        }
    }
}

/// How long a written line is remembered for an item no attempt here waits for (see
/// [`InboxJob::sweep`]): far longer than such an item takes to come back (it is due again a
/// second after its attempt gave up, or a lease after a failed done mark), also behind a
/// backlog, so that it is never printed twice.
const SETTLED_AFTER: Duration = Duration::from_secs(3600);

/// The stdout line of a done inbox item: the inline line plus `"attempts"`.
pub fn inbox_line(item: &ClaimedItem) -> String {
    let summary = item.delivery.summary_json();
    match summary.strip_suffix('}') {
        Some(open) if open.len() > 1 => format!("{open},\"attempts\":{}}}", item.attempt),
        _ => format!("{{\"attempts\":{}}}", item.attempt),
    }
}

impl InboxJob {
    async fn handle(&self, item: ClaimedItem) -> Result<(), HandlerError> {
        let entered = tokio::time::Instant::now();
        let queued = self
            .printing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&item.id)
            .map(|q| {
                q.waiting += 1;
                q.flushed.clone()
            });
        if let Some(flushed) = queued {
            return self.wait_printed(item.id, flushed, entered).await;
        }
        // A claim already under way when the stop began: the item's earlier line may have
        // been forgotten while the writer still writes it, so a new one could print it twice.
        if self.stopping.load(std::sync::atomic::Ordering::Acquire) {
            return Err(HandlerError::defer(
                "serve is stopping; handled after a restart",
                Duration::from_secs(1),
            ));
        }
        // The line's place first: a full queue gives the item back (not an attempt: nothing
        // ran) instead of blocking a worker or dropping a line; so does a closed stdout (serve
        // is stopping: the item waits for the next start).
        let permit = match self.queue.clone().try_reserve_owned() {
            Ok(p) => p,
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err(HandlerError::defer(
                    "stdout is not being read fast enough (queue full)",
                    Duration::from_secs(1),
                ))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(HandlerError::defer(
                    "stdout is closed; handled after a restart",
                    Duration::from_secs(1),
                ))
            }
        };
        if let Some(exec) = &self.exec {
            let extra = [
                ("HOOKGUARD_INBOX_ID", item.id.to_string()),
                ("HOOKGUARD_ATTEMPT", item.attempt.to_string()),
            ];
            exec.run(&item.delivery, &extra).await.map_err(|e| match e {
                // Our fault, not the delivery's (out of processes or file descriptors):
                // tried again without using up an attempt.
                ExecError::Spawn(_) => HandlerError::defer(format!("--exec {e}"), Duration::from_secs(1)),
                e => HandlerError::new(format!("--exec {e}")),
            })?;
        }
        // The line is written and flushed, then the worker marks the item done: a crash in
        // between prints it again after the restart (with --exec, after running it again),
        // but no delivery recorded done ever misses its line.
        let (written, ack) = oneshot::channel();
        permit.send(Line {
            text: inbox_line(&item),
            written: Some(written),
        });
        let (tx, flushed) = watch::channel(None);
        let written_at = Arc::new(std::sync::OnceLock::new());
        let at = Arc::clone(&written_at);
        let ack = tokio::spawn(async move {
            let written = ack.await.is_ok();
            if written {
                let _ = at.set(tokio::time::Instant::now());
            }
            let _ = tx.send(Some(written));
        });
        let queued = Queued {
            flushed: flushed.clone(),
            ack,
            waiting: 1,
            written_at,
        };
        {
            let mut printing = self.printing.lock().unwrap_or_else(|p| p.into_inner());
            self.sweep(&mut printing);
            printing.insert(item.id, queued);
        }
        self.wait_printed(item.id, flushed, entered).await
    }

    /// Waits for an item's queued line to be written: at most half the lease, and never past
    /// the worker's handler timeout (90 % of the lease) after the attempt began less a tenth of
    /// it (after a long --exec, the worker would otherwise stop the attempt mid-wait and count
    /// it as failed; given back in time, the next attempt waits for the same line without
    /// running the command again).
    async fn wait_printed(
        &self,
        id: i64,
        mut flushed: watch::Receiver<Option<bool>>,
        entered: tokio::time::Instant,
    ) -> Result<(), HandlerError> {
        let _waiting = Waiting {
            printing: &self.printing,
            id,
        };
        let handler_limit = self.lease.mul_f64(0.9);
        let left = handler_limit
            .mul_f64(0.9)
            .saturating_sub(entered.elapsed())
            .min(self.lease / 2);
        let written = tokio::time::timeout(left, flushed.wait_for(Option::is_some)).await;
        match written {
            Ok(Ok(v)) if *v == Some(true) => Ok(()),
            // A write that failed printed nothing: not an attempt (serve is stopping).
            Ok(_) => {
                self.printing.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                Err(HandlerError::defer(
                    "stdout is closed: the line could not be written; handled after a restart",
                    Duration::from_secs(1),
                ))
            }
            // Still queued: given back, and the next attempt waits for this same line.
            Err(_) => Err(HandlerError::defer(
                "stdout is not being read fast enough: the line waits in the queue",
                Duration::from_secs(1),
            )),
        }
    }

    /// `serve` is stopping and its worker claims no more: a line queued for an item that no
    /// attempt waits for (`all`: for any item) is not written. Its item was given back and
    /// stays pending; written now, its line would be printed again when the next start
    /// handles the item. Returns once the writer will skip those lines.
    async fn forget_queued(&self, all: bool) {
        self.stopping.store(true, std::sync::atomic::Ordering::Release);
        let acks: Vec<tokio::task::JoinHandle<()>> = {
            let mut printing = self.printing.lock().unwrap_or_else(|p| p.into_inner());
            let ids: Vec<i64> = printing
                .iter()
                .filter(|(_, q)| all || q.waiting == 0)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| printing.remove(id)).map(|q| q.ack).collect()
        };
        for ack in &acks {
            ack.abort();
        }
        for ack in acks {
            let _ = ack.await;
        }
    }

    /// Forgets, at most once per lease, the lines written [`SETTLED_AFTER`] ago that no
    /// attempt waits for. An item whose attempt gave up waiting for its line, whose done mark
    /// failed here or whose claim was lost (its lease ran out) is claimed again soon — here,
    /// its next attempt waits for this line instead of printing another — but with replicas
    /// on one PostgreSQL inbox another one may have finished it, and its entry would stay
    /// until the restart.
    fn sweep(&self, printing: &mut HashMap<i64, Queued>) {
        let now = tokio::time::Instant::now();
        let mut swept = self.swept.lock().unwrap_or_else(|p| p.into_inner());
        if swept.is_some_and(|at| now.duration_since(at) < self.lease) {
            return;
        }
        *swept = Some(now);
        let settled = self.settled_after;
        printing.retain(|_, q| q.waiting > 0 || q.written_at.get().is_none_or(|&at| now.duration_since(at) < settled));
    }

    fn outcome(&self, item: &ClaimedItem, outcome: &Outcome) {
        if matches!(outcome, Outcome::Done | Outcome::Dead { .. }) {
            self.printing.lock().unwrap_or_else(|p| p.into_inner()).remove(&item.id);
        }
        if let Outcome::Done = outcome {
            // Debug, as inline: stdout's line is the record.
            tracing::debug!(
                id = item.id,
                attempt = item.attempt,
                provider = %item.delivery.provider(),
                event_id = item.delivery.event_id(),
                event_type = item.delivery.event_type(),
                "delivery handled"
            );
        }
    }
}

/// Binds `--listen`.
async fn bind(listen: &str) -> CliResult<(tokio::net::TcpListener, std::net::SocketAddr)> {
    let (reserved, addr) = reserve(listen).await?;
    Ok((self::listen(reserved, addr)?, addr))
}

/// Starts listening on a socket [`reserve`] bound to `addr`.
fn listen(reserved: tokio::net::TcpSocket, addr: std::net::SocketAddr) -> CliResult<tokio::net::TcpListener> {
    reserved
        .listen(LISTEN_BACKLOG)
        .map_err(|e| failed(format!("cannot listen on {addr}: {e}")))
}

/// The listen queue's length (tokio's own for `TcpListener::bind`).
const LISTEN_BACKLOG: u32 = 1024;

/// Binds a socket to `listen` without listening yet: the port is taken (a port in use fails
/// here), and connections are refused until [`tokio::net::TcpSocket::listen`].
async fn reserve(listen: &str) -> CliResult<(tokio::net::TcpSocket, std::net::SocketAddr)> {
    let cannot = |e: std::io::Error| failed(format!("cannot listen on {listen}: {e}"));
    let mut last = None;
    for addr in tokio::net::lookup_host(listen).await.map_err(cannot)? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .map_err(cannot)?;
        // As `TcpListener::bind` does on Unix: a restart does not wait out TIME_WAIT.
        #[cfg(unix)]
        socket.set_reuseaddr(true).map_err(cannot)?;
        match socket.bind(addr) {
            Ok(()) => {
                let bound = socket
                    .local_addr()
                    .map_err(|e| failed(format!("cannot read the bound address: {e}")))?;
                return Ok((socket, bound));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(cannot(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on")
    })))
}

/// Serves until SIGTERM or Ctrl-C, or until stdout's reader is gone; `true` in that last case.
async fn serve_until_stopped<S>(
    listener: tokio::net::TcpListener,
    app: S,
    signals: StopSignals,
    closed_rx: oneshot::Receiver<std::io::Error>,
    args: &ServeArgs,
) -> bool
where
    S: http_server::App,
{
    let stdout_closed = Arc::new(Mutex::new(None::<std::io::Error>));
    http_server::serve(
        listener,
        app,
        stop_signal(signals, closed_rx, Arc::clone(&stdout_closed)),
        http_server::Limits {
            head_timeout: args.header_timeout,
            write_timeout: args.write_timeout,
            max_connections: args.max_connections.map_or_else(
                || {
                    let (per_connection, workers) = descriptors(args);
                    http_server::default_max_connections(per_connection, workers)
                },
                |n| n as usize,
            ),
        },
    )
    .await;
    // A delivery whose sender hung up is finished in the background by the tower layer; its
    // connection's share is given back when its handler returns, before the layer completes
    // its claim. Waited for (briefly: only the store's answer is left), so that a stop does
    // not cut a completion in flight and the retry run the handler again.
    let left = hookguard_tower::finish_detached(DETACHED_WAIT).await;
    if left > 0 {
        tracing::warn!(
            left,
            "stopping with deliveries still finishing in the background (their senders hung up): their claims are released, and the senders' retries run them again"
        );
    }
    stdout_closed.lock().map(|s| s.is_some()).unwrap_or(false)
}

/// How long a stop of `serve --inbox` waits for running handlers and their lines (the help's
/// "up to 10 s").
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long a stop waits for deliveries finishing in the background once every connection's
/// share is back (see `serve_until_stopped`).
const DETACHED_WAIT: Duration = Duration::from_secs(10);

/// File descriptors an `--exec` command holds in `serve` while it runs (its stdin, stdout and
/// stderr pipes, and one to spare).
const EXEC_DESCRIPTORS: u64 = 4;

/// What stops the server: a signal, or stdout closed by its reader (then `seen` holds the error).
async fn stop_signal(
    signals: StopSignals,
    closed_rx: oneshot::Receiver<std::io::Error>,
    seen: Arc<Mutex<Option<std::io::Error>>>,
) {
    tokio::select! {
        _ = signals.received() => {}
        Ok(e) = closed_rx => {
            tracing::error!(error = %e, "stdout is closed (its reader exited): no delivery can be printed; shutting down");
            if let Ok(mut s) = seen.lock() {
                *s = Some(e);
            }
        }
    }
}

/// A secret given as an argument is readable by every local user (`ps`, `/proc/PID/cmdline`);
/// serve's environment is readable by its owner only. Said once, naming the flags, never the
/// values.
fn warn_secrets_on_the_command_line() {
    let flags = crate::common::flags_given(&["--secret", "--ui-token"]);
    if !flags.is_empty() {
        tracing::warn!(
            "{} given on the command line: other local users can read it (ps); prefer the environment \
             (HOOKGUARD_SECRET, HOOKGUARD_UI_TOKEN)",
            flags.join(" and ")
        );
    }
    if std::env::args_os()
        .skip(1)
        .any(|a| a.to_str().is_some_and(crate::common::url_has_password))
    {
        tracing::warn!(
            "a URL holding a password is given on the command line (--inbox or --store): other local \
             users can read it (ps); for PostgreSQL leave the password out of the URL and set PGPASSWORD \
             or use ~/.pgpass"
        );
    }
}

/// `--path` is one literal route: axum would panic on a route parameter or wildcard (`:id`,
/// `*rest`, `{id}`), so those are a usage error.
fn check_path(path: &str) -> CliResult<()> {
    if !path.starts_with('/') {
        return Err(usage(format!("--path must start with '/', got {path:?}")));
    }
    let param = path.contains(['{', '}']) || path.split('/').any(|seg| seg.starts_with([':', '*']));
    // A query or a fragment is not part of the path a request is routed by: the route would
    // never be reached.
    let not_path = path.contains(['?', '#']);
    if param || not_path || path.contains("//") || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(usage(format!(
            "--path must be one literal path (no ':', '*', '{{', '}}' segments, no empty segment, no space, no '?' or '#'), got {path:?}"
        )));
    }
    // A request's path is ASCII (other characters travel percent-encoded) and is matched as
    // it arrives: `/ünï` could never be reached (every delivery 404, which BuildWorkPro drops).
    let path_char = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()+,;=:@/%".contains(&b);
    if !path.bytes().all(path_char) {
        let encoded: String = path
            .bytes()
            .map(|b| {
                if path_char(b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        return Err(usage(format!(
            "--path must be written as requests carry it, percent-encoded where a URL needs it: --path '{encoded}' (senders must then be given that URL), got {path:?}"
        )));
    }
    Ok(())
}

/// Runs `hookguard serve`.
/// The descriptors a connection takes, and those kept for the worker's commands: a command run
/// per delivery holds its three pipes — inline, one per connection; from the inbox's worker,
/// one per worker.
fn descriptors(args: &ServeArgs) -> (u64, u64) {
    match (&args.exec, &args.inbox) {
        (None, _) => (1, 0),
        (Some(_), None) => (1 + EXEC_DESCRIPTORS, 0),
        (Some(_), Some(_)) => (1, workers(args) as u64 * EXEC_DESCRIPTORS),
    }
}

pub async fn run(args: ServeArgs) -> CliResult<ExitCode> {
    check_path(&args.path)?;
    // More connections than descriptors: accepts fail and idle connections are never closed
    // to make room (an operator's tryout: deliveries waited 15 s behind 400 idle sockets).
    if let Some(n) = args.max_connections {
        let (per_connection, workers) = descriptors(&args);
        // Where the limit can be read, and as it is (not the default's 64–65,536).
        if let Some(most) = http_server::descriptor_room(per_connection, workers).filter(|most| u64::from(n) > *most) {
            return Err(usage(format!(
                "--max-connections {n} is more than the open-file limit allows here ({most}, after the \
                 descriptors kept for the inbox and --exec): raise the limit (ulimit -n) or lower the value"
            )));
        }
    }
    crate::common::check_tolerance(args.provider, args.tolerance)?;
    // `sh -c ''` exits 0: every delivery would be marked handled with nothing run (an unset
    // variable in `--exec "$HANDLER"`).
    if args.exec.as_deref().is_some_and(|c| c.trim().is_empty()) {
        return Err(usage(
            "--exec is empty: every delivery would count as handled with nothing run",
        ));
    }
    warn_secrets_on_the_command_line();
    if args.auth_headers.iter().any(|h| !h.value.is_empty()) {
        tracing::warn!(
            "--auth-header given with its value on the command line: other local users can read it (ps); \
             prefer --auth-header 'NAME:' with the value in HOOKGUARD_SECRET"
        );
    }
    for (flag, given) in [
        ("--ignore-source-application", &args.ignore_apps),
        ("--ignore-source-user", &args.ignore_users),
    ] {
        if !given.is_empty() && args.provider != ProviderArg::Procore {
            tracing::warn!("{flag} only applies to procore deliveries");
        }
    }
    if args.retry_signature_mismatch && matches!(args.provider, ProviderArg::Procore | ProviderArg::Hcss) {
        tracing::warn!(
            "--retry-signature-mismatch has no effect for {}: its token check answers 401 unauthorized, never a signature mismatch",
            args.provider.display()
        );
    }
    for (flag, addr) in [("--metrics", &args.metrics), ("--ui", &args.ui)] {
        if addr.as_deref().is_some_and(|a| ui::same_place(a, &args.listen)) {
            return Err(usage(format!(
                "{flag} and --listen name the same port: give each its own"
            )));
        }
    }
    if let (Some(m), Some(u)) = (&args.metrics, &args.ui) {
        if ui::same_place(m, u) {
            return Err(usage("--metrics and --ui name the same port: give each its own"));
        }
    }
    let inbox = inbox_settings(&args)?;
    // Inline, the command runs inside the sender's timeout; from the inbox's worker, inside
    // the lease (the sender has its answer already).
    // How long the sender waits for an answer.
    let waits = args.sender_timeout.unwrap_or(args.provider.profile().timeout);
    let exec_timeout = args.exec_timeout.unwrap_or_else(|| match &inbox {
        Some(settings) => settings.lease.mul_f64(0.8),
        None => inline_exec_timeout(args.provider, waits),
    });
    if inbox.is_none() && args.exec.is_some() && exec_timeout >= waits {
        tracing::warn!(
            "--exec-timeout ({} s{}) is not below the {} s {} waits for an answer: a command that runs that long is answered after the sender gave up, which counts a failure and retries; keep it shorter or use --inbox",
            exec_timeout.as_secs_f64(),
            if args.exec_timeout.is_some() { "" } else { ", its default" },
            waits.as_secs_f64(),
            args.provider.display()
        );
    }
    let postgres = matches!(inbox.as_ref().map(|s| &s.spec), Some(InboxSpec::Postgres(_)));
    let exec = args.exec.clone().map(|cmd| Exec {
        cmd,
        timeout: exec_timeout,
        withheld: if postgres { &POSTGRES_CREDENTIALS } else { &[] },
    });
    let spec = ReceiverSpec {
        provider: args.provider,
        secrets: &args.secrets,
        auth_headers: &args.auth_headers,
        tolerance: args.tolerance,
        max_body: args.max_body,
        ignore_apps: &args.ignore_apps,
        retry_mismatch: args.retry_signature_mismatch,
        ignore_users: &args.ignore_users,
        sender_timeout: args.sender_timeout,
        // The lease outlives the handler's budget, so no copy runs while the first still does.
        lease: DEFAULT_LEASE.max(exec_timeout + Duration::from_secs(5)),
    };
    // Check the configuration before touching the network or the disk.
    let (probe, _) = layer_keyed(
        &spec,
        Keeper::Dedupe(Arc::new(MemoryStore::new(1))),
        args.dedupe_key.as_ref(),
    )?;
    drop(probe);
    match inbox {
        Some(settings) => run_inbox(&args, &spec, exec, settings).await,
        None => run_inline(&args, &spec, exec).await,
    }
}

async fn run_inline(args: &ServeArgs, spec: &ReceiverSpec<'_>, exec: Option<Exec>) -> CliResult<ExitCode> {
    let (store, store_name) =
        open_store(args.store.as_deref().unwrap_or("memory"), args.store_prefix.as_deref()).await?;
    // The metrics recorder first: the receiver's sender-health gauge is set to 0 when it is
    // built, and set before the recorder it was missing until the first failure (a review).
    let mut extras = ui::Extras::bind(args).await?;
    let (layer, mode) = layer_keyed(spec, Keeper::Dedupe(store), args.dedupe_key.as_ref())?;
    let receiver = Arc::clone(layer.receiver());
    let (closed_tx, closed_rx) = oneshot::channel();
    let (writer, queue) = StdoutWriter::start(args.stdout_queue as usize, closed_tx)?;
    let handler = Arc::new(Handler::printing(exec, queue));
    let (listener, addr) = bind(&args.listen).await?;
    let signals = StopSignals::listen();
    write_stderr(format_args!(
        "hookguard: listening on http://{addr}{} (provider {}, auth {mode}, store {store_name}{})",
        args.path,
        args.provider.provider(),
        if args.exec.is_some() { ", --exec" } else { "" }
    ));
    let about = format!(
        "{} at http://{addr}{} · inline, store {store_name}",
        args.provider.provider(),
        args.path
    );
    // The route holds the handler, and with it the queue's only sender: the writer finishes
    // once serving ends.
    let app = WebhookApp::new(
        &args.path,
        layer.layer(Handle::new(handler, on_delivery_boxed)),
        &extras,
        &receiver,
    );
    extras.start(Arc::clone(&receiver), None, about);
    if app.serve(listener, signals, closed_rx, args).await {
        return Err(CliError::StdoutClosed);
    }
    // Lines of deliveries already answered 2xx are written before exiting (bounded: a reader
    // that stopped reading must not keep the process alive).
    if !writer.finish(Duration::from_secs(10)).await {
        tracing::warn!("stdout is not being read: queued lines may not have been written");
    }
    write_stderr(format_args!("hookguard: stopped"));
    Ok(ExitCode::SUCCESS)
}

/// The most items [`own_counts`] counts in a state; beyond, it says `10000+`.
const OWN_COUNT_CAP: u32 = 10_000;

/// How many of `provider`'s items are in each of `states` (up to [`OWN_COUNT_CAP`] each): the
/// start and stop lines count what this serve runs, not the items of other senders' serves
/// sharing its inbox. When a list is slower than its bound (a large inbox), the inbox's
/// totals instead, every sender's: then the second value is `false`.
async fn own_counts(
    inbox: &dyn InboxStore,
    provider: &str,
    states: &[InboxState],
) -> Result<(Vec<String>, bool), InboxError> {
    let mut counts = Vec::with_capacity(states.len());
    for &state in states {
        let filter = ListFilter::default()
            .state(state)
            .provider(provider)
            .limit(OWN_COUNT_CAP + 1);
        match inbox.list(filter).await {
            Ok(items) if items.len() > OWN_COUNT_CAP as usize => counts.push(format!("{OWN_COUNT_CAP}+")),
            Ok(items) => counts.push(items.len().to_string()),
            Err(_) => {
                let totals = inbox.stats().await?;
                let total = |state| match state {
                    InboxState::Pending => totals.pending,
                    InboxState::Running => totals.running,
                    InboxState::Done => totals.done,
                    InboxState::Dead => totals.dead,
                };
                return Ok((states.iter().map(|&s| total(s).to_string()).collect(), false));
            }
        }
    }
    Ok((counts, true))
}

/// Inbox mode: the route stores; it never calls an inner handler.
fn never_called(_: Arc<()>, _: axum::extract::Request) -> one_route::Answering {
    Box::pin(async { http::StatusCode::INTERNAL_SERVER_ERROR.into_response() })
}

async fn run_inbox(
    args: &ServeArgs,
    spec: &ReceiverSpec<'_>,
    exec: Option<Exec>,
    settings: InboxSettings,
) -> CliResult<ExitCode> {
    let path = settings.spec.shown();
    // The ports first: a port in use fails the start before the inbox file or schema is made.
    // The webhook port is only bound until the inbox is open (a PostgreSQL migration may wait
    // up to a minute): a sender or a load balancer's check meanwhile gets a refused connection
    // (tried again, or elsewhere), not a backlog nobody answers within the sender's timeout.
    let mut extras = ui::Extras::bind(args).await?;
    let (reserved, addr) = reserve(&args.listen).await?;
    let inbox = settings.spec.open(Some(settings.max_pending), true).await?;
    let listener = listen(reserved, addr)?;
    // This serve's sender's items only: an inbox may be shared with other senders' serves,
    // whose items this one never runs.
    let own = args.provider.provider().as_str();
    let (c, mine) = own_counts(
        &*inbox,
        own,
        &[InboxState::Pending, InboxState::Running, InboxState::Dead],
    )
    .await
    .map_err(|e| failed(format!("cannot read the inbox {path}: {}", inbox_error(&e))))?;
    let whose = if mine { own } else { "every sender" };
    let counts = format!("{} pending, {} running, {} dead of {whose}", c[0], c[1], c[2]);
    let (layer, mode) = layer_keyed(spec, Keeper::Inbox(inbox.clone()), args.dedupe_key.as_ref())?;
    let receiver = Arc::clone(layer.receiver());
    let (closed_tx, closed_rx) = oneshot::channel();
    let (writer, queue) = StdoutWriter::start(args.stdout_queue as usize, closed_tx)?;

    let job = Arc::new(InboxJob {
        exec,
        queue,
        printing: Mutex::new(HashMap::new()),
        lease: settings.lease,
        stopping: Default::default(),
        swept: Mutex::new(None),
        settled_after: SETTLED_AFTER,
    });
    let (run_job, hook_job) = (Arc::clone(&job), Arc::clone(&job));
    let store: Arc<dyn InboxStore> = Arc::clone(&inbox);
    let worker: WorkerHandle = Worker::builder(store, move |item: ClaimedItem| {
        let job = Arc::clone(&run_job);
        async move { job.handle(item).await }
    })
    .concurrency(settings.workers)
    .retry(settings.retry)
    .lease(settings.lease)
    // Only this receiver's sender: another `serve` on the same inbox (another --provider, its
    // own --exec) runs its own items.
    .providers([args.provider.provider()])
    .shutdown_grace(STOP_GRACE)
    .on_outcome(move |item, outcome| hook_job.outcome(item, outcome))
    .spawn();

    let signals = StopSignals::listen();
    write_stderr(format_args!(
        "hookguard: listening on http://{addr}{} (provider {}, auth {mode}, inbox {path}: {counts}; worker: {} at \
         once{})",
        args.path,
        args.provider.provider(),
        settings.workers,
        if args.exec.is_some() { ", --exec" } else { "" }
    ));
    let about = format!(
        "{} at http://{addr}{} · inbox {path}",
        args.provider.provider(),
        args.path
    );
    let app = WebhookApp::new(
        &args.path,
        layer.layer(Handle::new(Arc::new(()), never_called)),
        &extras,
        &receiver,
    );
    extras.start(Arc::clone(&receiver), Some(Arc::clone(&inbox)), about);
    // Stop accepting first; then let the worker finish or give back what it holds. Lines of
    // items given back are not written after: the next start prints them (once).
    let stdout_closed = app.serve(listener, signals, closed_rx, args).await;
    let stopping = std::time::Instant::now();
    job.forget_queued(false).await;
    worker.shutdown().await;
    job.forget_queued(true).await;
    // The last sender of the stdout queue: the writer finishes once it is gone.
    drop(job);
    if stdout_closed {
        return Err(CliError::StdoutClosed);
    }
    // One grace for the whole stop (a stalled reader once made it the worker's 10 s and then
    // the writer's 10 s): a line not written by now belongs to an item given back, printed
    // after the restart; only a line being written is worth the rest of the grace.
    let rest = STOP_GRACE
        .saturating_sub(stopping.elapsed())
        .max(Duration::from_secs(1));
    if !writer.finish(rest).await {
        tracing::warn!("stdout is not being read: queued lines may not have been written");
    }
    let left = own_counts(&*inbox, own, &[InboxState::Pending, InboxState::Running])
        .await
        .map(|(c, mine)| (c[0].clone(), c[1].clone(), if mine { own } else { "(every sender's)" }));
    match left {
        Ok((pending, running, whose)) if (&*pending, &*running) != ("0", "0") => write_stderr(format_args!(
            "hookguard: stopped; {pending} pending and {running} running {whose} item(s) in {path}, for the next \
             start or another serve of {own} on it"
        )),
        Ok(_) => write_stderr(format_args!("hookguard: stopped")),
        // Not "stopped" alone: the inbox may be gone or broken (a file removed while serving).
        Err(e) => write_stderr(format_args!(
            "hookguard: stopped; could not read {path} to count what waits in it: {e}"
        )),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inline, --exec ends before the sender stops waiting (Slack waits 3 s).
    #[test]
    fn the_inline_exec_timeout_ends_before_the_sender_stops_waiting() {
        for (p, want) in [
            (ProviderArg::Procore, 4),
            (ProviderArg(hookguard_core::Provider::BuildWorkPro), 4),
            (ProviderArg::Slack, 2),
        ] {
            let t = inline_exec_timeout(p, p.profile().timeout);
            assert_eq!(t, Duration::from_secs(want), "{p:?}");
            assert!(t < p.profile().timeout, "{p:?}");
        }
    }

    /// Without --exec the inbox worker holds many items at once (printing needs no limit), or
    /// a sustained flood outruns it; with --exec, or --workers given, the flags decide.
    #[test]
    fn without_exec_the_inbox_worker_holds_enough_items_to_keep_up() {
        #[derive(clap::Parser)]
        struct Cmd {
            #[command(flatten)]
            args: ServeArgs,
        }
        let workers = |extra: &[&str]| {
            let mut argv = vec![
                "serve",
                "--provider",
                "buildworkpro",
                "--secret",
                "s",
                "--inbox",
                "x.db",
            ];
            argv.extend_from_slice(extra);
            let cmd = <Cmd as clap::Parser>::try_parse_from(argv).unwrap();
            inbox_settings(&cmd.args).unwrap().unwrap().workers
        };
        assert_eq!(workers(&[]), 64);
        assert_eq!(workers(&["--stdout-queue", "50"]), 50);
        assert_eq!(workers(&["--max-body", "4194304"]), 16, "64 MiB of 4 MiB bodies");
        assert_eq!(workers(&["--max-body", "1073741824"]), 4);
        assert_eq!(workers(&["--exec", "true"]), 4);
        assert_eq!(workers(&["--workers", "2"]), 2);
        assert_eq!(workers(&["--workers", "2", "--exec", "true"]), 2);
    }
}

#[cfg(test)]
mod stopping_tests {
    use super::*;

    fn job(queue: mpsc::Sender<Line>) -> InboxJob {
        InboxJob {
            exec: None,
            queue,
            printing: Mutex::new(HashMap::new()),
            lease: Duration::from_millis(200),
            stopping: Default::default(),
            swept: Mutex::new(None),
            settled_after: Duration::from_millis(800),
        }
    }

    fn item(id: i64) -> ClaimedItem {
        let claim = hookguard_core::inbox::ClaimRef::new(id, 1, 0);
        let body = bytes::Bytes::from_static(b"{}");
        ClaimedItem::new(claim, "buildworkpro", None, Some(format!("evt_{id}")), None, body, 0)
    }

    /// At a stop, the queued line of an item given back (its attempt stopped waiting: stdout is
    /// read too slowly) is not written: the item stays pending, and the next start prints it.
    /// A line an attempt still waits for is kept until the worker has stopped.
    #[tokio::test]
    async fn a_stop_drops_the_queued_lines_of_items_given_back() {
        let (tx, mut rx) = mpsc::channel(8);
        let job = Arc::new(job(tx));
        // Nobody writes: the attempt's wait ends and the item is given back.
        assert!(job.handle(item(1)).await.unwrap_err().deferred().is_some());
        let given_back = rx.try_recv().unwrap().written.unwrap();
        // Another item's attempt still waits for its line.
        let waiting = tokio::spawn({
            let job = Arc::clone(&job);
            async move { job.handle(item(2)).await }
        });
        let still_waited = loop {
            if let Ok(line) = rx.try_recv() {
                break line.written.unwrap();
            }
            tokio::task::yield_now().await;
        };
        assert!(!given_back.is_closed() && !still_waited.is_closed());
        job.forget_queued(false).await;
        assert!(given_back.is_closed(), "the writer skips the given-back item's line");
        assert!(!still_waited.is_closed(), "the waiting attempt's line is kept");
        job.forget_queued(true).await;
        assert!(still_waited.is_closed());
        assert!(waiting.await.unwrap().unwrap_err().deferred().is_some());
    }

    /// An attempt of a claim that was under way when the stop began starts nothing: the
    /// item's forgotten line may still be written (the writer had taken it), and a second one
    /// would print the delivery twice.
    #[tokio::test]
    async fn after_a_stop_began_an_attempt_queues_no_second_line() {
        let (tx, mut rx) = mpsc::channel(8);
        let job = job(tx);
        assert!(job.handle(item(1)).await.unwrap_err().deferred().is_some());
        // The writer has taken the line (it may still write it).
        let _taken = rx.try_recv().unwrap();
        job.forget_queued(false).await;
        assert!(job.handle(item(1)).await.unwrap_err().deferred().is_some());
        assert!(rx.try_recv().is_err(), "a second line was queued");
        assert!(job.handle(item(3)).await.unwrap_err().deferred().is_some());
        assert!(rx.try_recv().is_err(), "a new attempt started during the stop");
    }

    /// A written line whose item this process holds no more (its done mark failed or its
    /// claim was lost, and a replica finished it) is forgotten after a few leases, not kept
    /// until the restart; a line still queued, or waited for, is kept.
    #[tokio::test]
    async fn written_lines_of_items_settled_elsewhere_are_forgotten() {
        let (tx, mut rx) = mpsc::channel(8);
        let job = Arc::new(job(tx));
        // The writer writes item 1's line at once and keeps the others queued until told.
        let (write_tx, mut write_rx) = mpsc::unbounded_channel::<()>();
        let writer = tokio::spawn(async move {
            let mut kept = Vec::new();
            loop {
                tokio::select! {
                    Some(line) = rx.recv() => {
                        if line.text.contains("evt_1") {
                            let _ = line.written.unwrap().send(());
                        } else {
                            kept.push(line);
                        }
                    }
                    Some(()) = write_rx.recv() => {
                        for line in kept.drain(..) {
                            let _ = line.written.unwrap().send(());
                        }
                    }
                }
            }
        });
        // Item 1's line is written; the worker's done mark then fails (no outcome recorded).
        job.handle(item(1)).await.unwrap();
        // Item 2's line stays queued; its attempt gives up waiting.
        assert!(job.handle(item(2)).await.unwrap_err().deferred().is_some());
        let held = |id| job.printing.lock().unwrap().contains_key(&id);
        assert!(held(1) && held(2));
        tokio::time::sleep(job.settled_after + job.lease).await;
        job.handle(item(3)).await.unwrap_err();
        assert!(!held(1), "the written line of an item settled elsewhere is kept");
        assert!(held(2), "a line still queued was forgotten");
        // Queued long ago, written only now: kept (its item's next attempt finds it and does
        // not print it again).
        write_tx.send(()).unwrap();
        while job.printing.lock().unwrap()[&2].written_at.get().is_none() {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(job.lease).await;
        job.handle(item(4)).await.unwrap_err();
        assert!(held(2), "a line written just now was forgotten");
        job.handle(item(2)).await.unwrap();
        writer.abort();
    }
}
