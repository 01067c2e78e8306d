//! `hookguard serve`: a receiver built on the tower layer in an axum router.

use std::io::Write;
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use hookguard_core::dedupe::{Dedupe, DedupeStore, MemoryStore, DEFAULT_LEASE};
use hookguard_core::{Delivery, Rejection, Verifier};
use hookguard_tower::{VerifiedDelivery, WebhookLayer};
use tokio::io::AsyncWriteExt;

use crate::common::{auth, failed, parse_header_arg, parse_secs, usage, CliResult, HeaderArg, ProviderArg};

const AFTER_HELP: &str = "\
Answers challenges on GET PATH (HCSS `?challenge=`) and receives deliveries on POST PATH.
For every first-time verified delivery whose handling succeeded, prints one JSON line on stdout:
  {\"provider\":\"procore\",\"id\":\"5982324300946918154\",\"type\":\"…\",\"dedupe_key\":\"procore:01ED…\"}
Copies of a handled delivery are answered 200 {\"status\":\"duplicate\"} and not printed again.
Logs (startup, rejections with their codes) go to stderr; RUST_LOG=debug for more.
The first stderr line names the bound address: `listening on http://127.0.0.1:PORT/webhooks`.

--exec CMD runs `sh -c CMD` once per first-time delivery, the raw body on stdin and
HOOKGUARD_PROVIDER, HOOKGUARD_EVENT_ID, HOOKGUARD_EVENT_TYPE, HOOKGUARD_DEDUPE_KEY in the
environment (its stdout goes to stderr). Exit 0 → 204, delivery done. Non-zero exit → 500
handler_failed; past --exec-timeout → killed, 503 handler_timeout; either way the claim is
released so the sender's retry runs it again.

Authentication:
  buildworkpro, standard, stripe, github, slack: --secret (repeat it during a rotation)
  procore: --secret 'Bearer …' accepts `Authorization: Bearer …`;
           --auth-header 'X-Hook-Token: v' accepts that header instead
  hcss:    --secret TOKEN accepts the URL token (callback URL …/webhooks?token=TOKEN);
           --auth-header 'X-Hcss-Token: v' a shared header instead
SIGINT/SIGTERM shut down gracefully (exit 0).

Examples:
  hookguard serve --provider buildworkpro --secret whsec_live_123
  hookguard serve --provider procore --secret 'Bearer s3cret' --ignore-source-application 4821 \\
      --store redis://127.0.0.1:6379/0 --exec './handle-procore.sh'
  hookguard serve --provider hcss --secret hcss-url-token --listen 0.0.0.0:8080 --path /hooks/hcss";

/// `hookguard serve`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct ServeArgs {
    /// Who sends the webhooks.
    #[arg(long, value_enum)]
    provider: ProviderArg,
    /// A signing secret, accepted header value (procore) or URL token (hcss). Repeat for rotation.
    #[arg(long = "secret", value_name = "S", env = "HOOKGUARD_SECRET", hide_env_values = true)]
    secrets: Vec<String>,
    /// Accept this header instead (procore, hcss): 'Name: value'. Repeatable (same name).
    #[arg(long = "auth-header", value_name = "'NAME: VALUE'", value_parser = parse_header_arg)]
    auth_headers: Vec<HeaderArg>,
    /// The address to listen on (port 0: any free port, printed on stderr).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8787")]
    listen: String,
    /// The webhook path.
    #[arg(long, default_value = "/webhooks")]
    path: String,
    /// The replay window in seconds for timestamped schemes (default 300).
    #[arg(long, value_name = "SECS")]
    tolerance: Option<u64>,
    /// The body limit in bytes (413 above it).
    #[arg(long, value_name = "BYTES", default_value_t = 1_048_576)]
    max_body: usize,
    /// The dedupe store: `memory` (one process) or redis://HOST:PORT[/DB] (shared by replicas).
    #[arg(long, value_name = "memory|redis://HOST:PORT[/DB]", default_value = "memory")]
    store: String,
    /// Run `sh -c CMD` per first-time delivery (body on stdin).
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
    /// Kill --exec after this many seconds and answer 503 (keep it below the sender's timeout:
    /// Procore 5 s, BuildWorkPro 10 s).
    #[arg(long, value_name = "SECS", default_value = "4", value_parser = parse_secs)]
    exec_timeout: Duration,
    /// Procore: answer 200 without handling deliveries caused by this application id
    /// (`metadata.source_application_id`), to avoid loops. Repeatable.
    #[arg(long = "ignore-source-application", value_name = "ID")]
    ignore_apps: Vec<String>,
}

/// The command the handler runs per delivery.
#[derive(Debug, Clone)]
pub struct Exec {
    /// The `sh -c` command.
    pub cmd: String,
    /// Its time limit.
    pub timeout: Duration,
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
            ExecError::TimedOut => f.write_str("timed out and was killed"),
        }
    }
}

impl Exec {
    async fn run(&self, d: &Delivery) -> Result<(), ExecError> {
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&self.cmd)
            .env("HOOKGUARD_PROVIDER", d.provider().as_str())
            .env("HOOKGUARD_EVENT_ID", d.event_id().unwrap_or(""))
            .env("HOOKGUARD_EVENT_TYPE", d.event_type().unwrap_or(""))
            .env("HOOKGUARD_DEDUPE_KEY", d.dedupe_key().unwrap_or(""))
            .stdin(Stdio::piped())
            // Keep stdout for the JSON lines: the command's output goes to stderr.
            .stdout(Stdio::from(std::io::stderr()))
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(ExecError::Spawn)?;
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
        match result {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(ExecError::Exit(status)),
            Ok(Err(e)) => Err(ExecError::Io(e)),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                Err(ExecError::TimedOut)
            }
        }
    }
}

/// What the handler does with a verified, first-time delivery.
pub struct Handler {
    exec: Option<Exec>,
    print: bool,
    handled: Mutex<Vec<String>>,
}

impl Handler {
    /// A handler that prints each done delivery's JSON line on stdout.
    pub fn printing(exec: Option<Exec>) -> Self {
        Self {
            exec,
            print: true,
            handled: Mutex::new(Vec::new()),
        }
    }

    /// A handler that only records (for the demo).
    pub fn recording() -> Self {
        Self {
            exec: None,
            print: false,
            handled: Mutex::new(Vec::new()),
        }
    }

    /// The JSON summaries of every delivery handled so far (recording handlers only).
    pub fn handled(&self) -> Vec<String> {
        self.handled.lock().map(|h| h.clone()).unwrap_or_default()
    }

    fn done(&self, d: &Delivery) {
        let line = d.summary_json();
        tracing::info!(
            provider = %d.provider(),
            event_id = d.event_id(),
            event_type = d.event_type(),
            "delivery handled"
        );
        if self.print {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        } else if let Ok(mut h) = self.handled.lock() {
            // Only the demo records (a dozen lines); a long-running `serve` keeps nothing.
            h.push(line);
        }
    }
}

fn rejection(r: &Rejection) -> Response {
    hookguard_core::response::rejection(r)
        .map(axum::body::Body::from)
        .into_response()
}

async fn on_delivery(State(h): State<Arc<Handler>>, VerifiedDelivery(d): VerifiedDelivery) -> Response {
    if let Some(exec) = &h.exec {
        if let Err(e) = exec.run(&d).await {
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
    h.done(&d);
    http::StatusCode::NO_CONTENT.into_response()
}

/// A router serving one webhook route behind `layer` (every method goes through the layer:
/// it answers challenges and refuses other methods itself).
pub fn route(path: &str, layer: WebhookLayer, handler: Arc<Handler>) -> Router {
    Router::new()
        .route(path, any(on_delivery).layer(layer))
        .with_state(handler)
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
    /// The dedupe lease.
    pub lease: Duration,
}

/// Builds the tower layer: verifier (scheme, secrets, window, bounds) plus dedupe in `store`.
pub fn layer(spec: &ReceiverSpec<'_>, store: Arc<dyn DedupeStore>) -> CliResult<(WebhookLayer, String)> {
    let a = auth(spec.provider, spec.secrets, spec.auth_headers)?;
    let mut b = Verifier::builder_arc(a.scheme)
        .secrets(&a.secrets)
        .max_body(spec.max_body);
    if let Some(t) = spec.tolerance {
        b = b.tolerance(Duration::from_secs(t));
    }
    for app in spec.ignore_apps {
        b = b.ignore_source_application(app.clone());
    }
    let verifier = b.build().map_err(|e| usage(format!("invalid configuration: {e}")))?;
    let dedupe = Dedupe::from_arc(store).lease(spec.lease);
    Ok((WebhookLayer::new(verifier).with_dedupe(dedupe), a.mode))
}

/// Opens `--store`.
pub async fn open_store(spec: &str) -> CliResult<(Arc<dyn DedupeStore>, &'static str)> {
    if spec == "memory" {
        return Ok((Arc::new(MemoryStore::default()), "memory"));
    }
    if spec.starts_with("redis://") {
        let store = hookguard_redis::RedisStore::connect(spec)
            .await
            .map_err(|e| failed(format!("cannot open the Redis store: {e}")))?;
        return Ok((Arc::new(store), "redis"));
    }
    if spec.starts_with("rediss://") {
        return Err(usage(
            "--store rediss:// (TLS) is not supported by this build; use redis://",
        ));
    }
    Err(usage(format!(
        "--store must be `memory` or redis://HOST:PORT[/DB], got {spec:?}"
    )))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("signal received: shutting down gracefully");
}

/// Runs `hookguard serve`.
pub async fn run(args: ServeArgs) -> CliResult<ExitCode> {
    if !args.path.starts_with('/') {
        return Err(usage(format!("--path must start with '/', got {:?}", args.path)));
    }
    if !args.ignore_apps.is_empty() && args.provider != ProviderArg::Procore {
        tracing::warn!("--ignore-source-application only applies to procore deliveries");
    }
    let exec = args.exec.clone().map(|cmd| Exec {
        cmd,
        timeout: args.exec_timeout,
    });
    let spec = ReceiverSpec {
        provider: args.provider,
        secrets: &args.secrets,
        auth_headers: &args.auth_headers,
        tolerance: args.tolerance,
        max_body: args.max_body,
        ignore_apps: &args.ignore_apps,
        // The lease outlives the handler's budget, so no copy runs while the first still does.
        lease: DEFAULT_LEASE.max(args.exec_timeout + Duration::from_secs(5)),
    };
    // Check the configuration before touching the network.
    let (probe, _) = layer(&spec, Arc::new(MemoryStore::new(1)))?;
    drop(probe);
    let (store, store_name) = open_store(&args.store).await?;
    let (layer, mode) = layer(&spec, store)?;
    let app = route(&args.path, layer, Arc::new(Handler::printing(exec)));
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| failed(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| failed(format!("cannot read the bound address: {e}")))?;
    eprintln!(
        "hookguard: listening on http://{addr}{} (provider {}, auth {mode}, store {store_name}{})",
        args.path,
        args.provider.provider(),
        if args.exec.is_some() { ", --exec" } else { "" }
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| failed(format!("server error: {e}")))?;
    eprintln!("hookguard: stopped");
    Ok(ExitCode::SUCCESS)
}
