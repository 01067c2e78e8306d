//! `hookguard`: run a webhook receiver, play any vendor's sender, sign and verify from the shell.
#![forbid(unsafe_code)]

mod common;
mod demo;
#[cfg(target_os = "linux")]
mod exec_guard;
mod inbox;
mod logs;
mod send;
mod serve;
mod sign;
mod vendor;
mod verify;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::common::{write_stderr, CliError};

fn after_help() -> String {
    format!("Providers: {}.\n{REST}", hookguard_core::Provider::names())
}

const REST: &str = "\
Exit codes: 0 success; 1 rejected / the vendor gave up / run-time failure; 2 usage or
configuration error. A closed stdout (`hookguard send … | head -3`) stops the command at once,
quietly, with exit 1. Secrets may also come from the HOOKGUARD_SECRET environment variable
(serve and verify: one per line for a rotation, e.g. HOOKGUARD_SECRET=$'whsec_new\\nwhsec_old').
HTTP is plain (no TLS in this build). Logs go to stderr (RUST_LOG=debug for more).

Examples:
  hookguard demo
  hookguard serve --provider buildworkpro --secret whsec_abc --listen 127.0.0.1:8787
  hookguard serve --provider procore --secret 'Bearer s3cret' --inbox procore.db --exec ./handle.sh
  hookguard inbox list --state dead --inbox procore.db
  hookguard send --provider buildworkpro --secret whsec_abc --url http://127.0.0.1:8787/webhooks
  hookguard sign --provider github --secret s3cret --id d-1 --event-type push < payload.json
  hookguard verify --provider github --secret s3cret -H 'X-Hub-Signature-256: sha256=…' < payload.json";

/// Receive webhooks safely — and play every sender against your receiver.
#[derive(Parser)]
#[command(name = "hookguard", version, after_help = after_help())]
#[command(long_about = "\
Receive webhooks safely — and play every sender against your receiver.

hookguard answers the sender's challenge, proves each delivery is genuine (constant time),
rejects replays, de-duplicates retries with a two-phase claim, and answers with the status
that makes each sender do the right thing: HCSS, Procore, BuildWorkPro, Autodesk Platform
Services, plus Standard Webhooks, Stripe, GitHub and Slack. With a durable inbox (`serve --inbox`), a delivery is
answered 2xx once it is on disk and handled afterwards, retried on our schedule.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Reports a command-line error: clap's own rendering, except for a refused value of an
/// argument that may carry a secret, which is named but not shown.
fn parse_error(e: clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let secret_arg = match e.get(ContextKind::InvalidArg) {
        // The flag itself, not a longer one it begins (`--header-timeout` is not `--header`).
        Some(ContextValue::String(arg)) => SECRET_ARGS.iter().find(|s| {
            arg.strip_prefix(**s)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '=']))
        }),
        _ => None,
    };
    // A stray word on a command line that carries a secret is most likely the rest of an
    // unquoted one (`--secret Bearer abc`): named as such, never shown.
    let stray_word = e.kind() == ErrorKind::UnknownArgument
        && matches!(e.get(ContextKind::InvalidArg), Some(ContextValue::String(a)) if !a.starts_with('-'))
        && !common::flags_given(&SECRET_ARGS).is_empty();
    if stray_word {
        write_stderr(format_args!(
            "hookguard: unexpected argument (not shown: it may be part of a secret; quote a value that holds \
             spaces, e.g. --secret 'Bearer …')"
        ));
        return ExitCode::from(2);
    }
    match (e.kind(), secret_arg) {
        (ErrorKind::ValueValidation | ErrorKind::InvalidValue, Some(arg)) => {
            let reason = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            write_stderr(format_args!(
                "hookguard: invalid value for {arg}{reason} (the value is not shown: it may be a secret)"
            ));
            ExitCode::from(2)
        }
        _ => {
            let _ = e.print();
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Start a receiver on 127.0.0.1 and play HCSS, BuildWorkPro, Procore and APS senders against it.
    Demo(demo::DemoArgs),
    /// Run a receiver (tower layer in axum): verify, de-duplicate, print or --exec each delivery.
    Serve(Box<serve::ServeArgs>),
    /// Print the headers a vendor would send with a body.
    Sign(sign::SignArgs),
    /// Verify one delivery offline: JSON summary (exit 0) or the rejection code (exit 1).
    Verify(verify::VerifyArgs),
    /// Act as a vendor's sender: sign, POST, and retry by the vendor's rules.
    Send(send::SendArgs),
    /// Look into and act on a durable inbox (`serve --inbox`): list, show, replay, purge, stats, migrate.
    Inbox(inbox::InboxArgs),
    /// Internal: how `serve --exec` runs a command on Linux (it dies with `serve`).
    #[cfg(target_os = "linux")]
    #[command(name = "__exec-guard", hide = true)]
    ExecGuard(exec_guard::ExecGuardArgs),
}

/// Logs go to stderr through [`logs::Logs`]' bounded queue: a stderr nobody reads never holds
/// up an answer.
fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        // A closed stderr must not turn a log line into a panic (its fallback is eprintln!).
        .log_internal_errors(false);
    let _ = match logs::Logs::start() {
        Some(queue) => fmt.with_writer(queue).try_init(),
        None => fmt.with_writer(std::io::stderr).try_init(),
    };
}

/// Arguments whose value can be a secret: a refused value is never echoed (clap's own message
/// quotes it). `--inbox` and `--store` take URLs that may hold a database password.
const SECRET_ARGS: [&str; 7] = [
    "--auth-header",
    "--header",
    "--ui-token",
    "--secret",
    "--uri",
    "--inbox",
    "--store",
];

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return parse_error(e),
    };
    #[cfg(target_os = "linux")]
    if let Command::ExecGuard(a) = &cli.command {
        // No logging set up and no multi-threaded runtime: the guard only waits.
        return exec_guard::run(a);
    }
    init_tracing(match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    });
    // Whatever way `main` ends — a return, an early error, a panic unwinding — the queued
    // lines reach stderr first (or are given up after a second when nobody reads it).
    logs::flush_before_panic_messages();
    let _flush = logs::FlushOnExit;
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            write_stderr(format_args!("hookguard: cannot start the runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Demo(a) => demo::run(a).await,
            Command::Serve(a) => serve::run(*a).await,
            Command::Sign(a) => sign::run(a),
            Command::Verify(a) => verify::run(a),
            Command::Send(a) => send::run(a).await,
            Command::Inbox(a) => inbox::run(a).await,
            // Handled before the runtime starts.
            #[cfg(target_os = "linux")]
            Command::ExecGuard(_) => Err(CliError::Usage("__exec-guard runs on its own".into())),
        }
    });
    // Do not wait for lingering tasks (an --exec child being killed, idle connections).
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(CliError::Usage(m)) => {
            write_stderr(format_args!("hookguard: {m}"));
            ExitCode::from(2)
        }
        Err(CliError::Failed(m)) => {
            write_stderr(format_args!("hookguard: {m}"));
            ExitCode::from(1)
        }
        Err(CliError::StdoutClosed) => ExitCode::from(1),
    }
}
