//! `hookguard verify`: check one delivery offline, as the receiver would.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use hookguard_core::bytes::Bytes;
use hookguard_core::clock::ManualClock;
use hookguard_core::http::{HeaderMap, HeaderValue, Method, Uri};
use hookguard_core::{DedupeKey, Precheck, Rejection, RequestHead, Verdict, Verifier};

use crate::common::{auth, outln, parse_header_arg, usage, CliResult, HeaderArg, ProviderArg};

const AFTER_HELP: &str = "\
Verifies the body (stdin, or --file) with the request headers given by -H (and/or
--headers-file, which reads `hookguard sign` output: `Name: value` lines and a `?name=value`
query line). Valid: prints the delivery's JSON summary
  {\"provider\":\"buildworkpro\",\"id\":\"evt_1\",\"type\":\"bid.accepted\",\"dedupe_key\":\"buildworkpro:evt_1\"}
and exits 0. A challenge (HCSS `GET ?challenge=` with --method GET, a signed Slack
url_verification) prints {\"challenge\":\"<value>\",\"provider\":…} and exits 0. Rejected: prints
{\"error\":\"<code>\",\"message\":\"…\",\"status\":<HTTP status>} on stdout and exits 1; the codes
are stable (signature_mismatch, malformed_signature, missing_signature, unauthorized,
timestamp_out_of_window, invalid_payload, body_too_large, …) and the status is what `serve`
would answer (`serve --retry-signature-mismatch` answers a signature_mismatch 503
signature_not_verified instead). Usage or configuration errors (no secret, bad flag, bad key) exit 2. The checks
are the receiver's: the pre-body checks (method, challenge, declared Content-Length, shared
header or URL token), then the signature, window and payload.

For hcss in URL-token mode the token is read from the request URI: --uri '/webhooks?token=…'.
Standard Webhooks: --secret whsec_… checks `v1` (HMAC) entries, --secret whpk_… (an Ed25519
public key) `v1a` entries; give both kinds, and several of each while rotating.
--dedupe-key prints the key `serve --dedupe-key` would use (see `hookguard serve --help`).
The conformance corpus (conformance/ in the repository) is checked against this command.

Examples:
  hookguard sign --provider buildworkpro --secret whsec_abc --file ev.json > headers.txt
  hookguard verify --provider buildworkpro --secret whsec_abc --headers-file headers.txt --file ev.json
  hookguard verify --provider github --secret s3cret --file payload.json \\
      -H 'X-Hub-Signature-256: sha256=757107ea…' -H 'X-GitHub-Delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958'
  hookguard verify --provider stripe --secret whsec_… --now 1533204720 -H 'Stripe-Signature: t=1533204620,v1=…' < event.json
  hookguard verify --provider hcss --secret tok --uri '/webhooks?token=tok' < event.json
  hookguard sign --provider standard --secret whsk_… --id msg_1 --file ev.json > headers.txt
  hookguard verify --provider standard --secret whpk_… --headers-file headers.txt --file ev.json";

/// `hookguard verify`.
#[derive(clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct VerifyArgs {
    /// Who sent the delivery.
    #[arg(long, value_enum)]
    provider: ProviderArg,
    /// A secret, accepted header value (procore) or URL token (hcss); standard: whsec_… (v1) or
    /// whpk_… (v1a, an Ed25519 public key). Repeat for rotation (in HOOKGUARD_SECRET: one per
    /// line).
    #[arg(long = "secret", value_name = "S", env = "HOOKGUARD_SECRET", hide_env_values = true)]
    secrets: Vec<String>,
    /// procore/hcss: accept this header instead: 'Name: value'. Repeatable (same name).
    #[arg(long = "auth-header", value_name = "'NAME: VALUE'", value_parser = parse_header_arg)]
    auth_headers: Vec<HeaderArg>,
    /// A request header as received: 'Name: value'. Repeatable.
    #[arg(short = 'H', long = "header", value_name = "'NAME: VALUE'", value_parser = parse_header_arg)]
    headers: Vec<HeaderArg>,
    /// Read request headers from a file in `hookguard sign` output format.
    #[arg(long, value_name = "PATH")]
    headers_file: Option<PathBuf>,
    /// The request target as received (path and query).
    #[arg(long, value_name = "URI", default_value = "/webhooks")]
    uri: String,
    /// The request method as received (GET for a challenge).
    #[arg(long, value_name = "METHOD", default_value = "POST")]
    method: String,
    /// Key copies on these signed fields, as `serve --dedupe-key` does: JSON pointers into the
    /// body and `header:NAME` for headers the sender signs, comma-separated.
    #[arg(long, value_name = "/FIELD,…")]
    dedupe_key: Option<DedupeKey>,
    /// Verify as if the time were this unix timestamp (replay window).
    #[arg(long, value_name = "UNIX")]
    now: Option<u64>,
    /// The replay window in seconds (default 300 for timestamped schemes; 1 to 86400, as
    /// `serve`'s: the checks are the receiver's).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=crate::common::MAX_TOLERANCE_SECS))]
    tolerance: Option<u64>,
    /// The body limit in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1_048_576)]
    max_body: usize,
    /// Read the body from this file instead of stdin.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
}

/// Runs `hookguard verify`.
pub fn run(args: VerifyArgs) -> CliResult<ExitCode> {
    crate::common::check_tolerance(args.provider, args.tolerance)?;
    let a = auth(args.provider, &args.secrets, &args.auth_headers)?;
    let mut b = Verifier::builder_arc(a.scheme)
        .secrets(&a.secrets)
        .max_body(args.max_body);
    if let Some(now) = args.now {
        b = b.clock(ManualClock::new(now));
    }
    if let Some(t) = args.tolerance {
        b = b.tolerance(Duration::from_secs(t));
    }
    if let Some(k) = &args.dedupe_key {
        b = b.dedupe_key(k.clone());
    }
    let method = Method::from_bytes(args.method.as_bytes())
        .map_err(|_| usage(format!("--method is not an HTTP method: {:?}", args.method)))?;
    let verifier = b.build().map_err(|e| crate::common::config_error(&e))?;

    let mut headers = HeaderMap::new();
    let mut target = args.uri.clone();
    if let Some(path) = &args.headers_file {
        let text = read_headers_file(path)?;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(pair) = line.strip_prefix('?') {
                target.push(if target.contains('?') { '&' } else { '?' });
                target.push_str(pair);
            } else {
                let h = parse_header_arg(line).map_err(|e| usage(format!("{}: {e}", path.display())))?;
                append(&mut headers, &h)?;
            }
        }
    }
    for h in &args.headers {
        append(&mut headers, h)?;
    }
    let uri: Uri = target
        .parse()
        // Not echoed: the query can carry HCSS's URL token.
        .map_err(|_| usage("--uri is not a valid request target (value not shown: its query may hold a token)"))?;
    let head = RequestHead::new(&method, &uri, &headers);
    // What the receiver checks before reading the body: method, challenge, declared length,
    // shared header or URL token.
    match verifier.precheck(&head) {
        Ok(Precheck::ReadBody { .. }) => {}
        Ok(Precheck::Challenge(answer)) => return challenge(args.provider, answer.value()),
        Ok(_) => return Err(usage("unexpected precheck")),
        Err(r) => return rejected(&r),
    }
    // One byte past the limit: the verifier then refuses it as too large, nothing more is read.
    let limit = u64::try_from(args.max_body).unwrap_or(u64::MAX).saturating_add(1);
    let body = crate::common::read_body_within(args.file.as_deref(), limit)?;
    match verifier.verify(&head, Bytes::from(body)) {
        Ok(Verdict::Deliver(d)) | Ok(Verdict::Ignored(d)) => {
            outln!("{}", d.summary_json())?;
            Ok(ExitCode::SUCCESS)
        }
        Ok(Verdict::Challenge(answer)) => challenge(args.provider, answer.value()),
        Ok(_) => Err(usage("unexpected verdict")),
        Err(r) => rejected(&r),
    }
}

fn challenge(provider: ProviderArg, value: &[u8]) -> CliResult<ExitCode> {
    let value = String::from_utf8_lossy(value).into_owned();
    outln!(
        "{}",
        serde_json::json!({"provider": provider.provider().as_str(), "challenge": value})
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `{"error":"<code>","message":"…","status":<HTTP status>}`, exit 1.
fn rejected(r: &Rejection) -> CliResult<ExitCode> {
    let v = serde_json::json!({ "error": r.code(), "message": r.to_string(), "status": r.status().as_u16() });
    outln!("{v}")?;
    Ok(ExitCode::from(1))
}

fn append(headers: &mut HeaderMap, h: &HeaderArg) -> CliResult<()> {
    let v = HeaderValue::from_str(&h.value).map_err(|_| usage(format!("invalid value for header `{}`", h.name)))?;
    headers.append(h.name.clone(), v);
    Ok(())
}

/// The most a headers file may hold (`hookguard sign` writes a few hundred bytes).
const MAX_HEADERS_FILE: u64 = 1024 * 1024;

/// A headers file, read up to [`MAX_HEADERS_FILE`] (a huge or endless file — a wrong path,
/// `/dev/zero` — is a usage error, not a process growing without bound).
fn read_headers_file(path: &std::path::Path) -> CliResult<String> {
    let bytes = crate::common::read_file_within(path, MAX_HEADERS_FILE + 1)?;
    if bytes.len() as u64 > MAX_HEADERS_FILE {
        return Err(usage(format!(
            "{} is larger than {} KiB: not a headers file",
            path.display(),
            MAX_HEADERS_FILE / 1024
        )));
    }
    String::from_utf8(bytes).map_err(|_| usage(format!("cannot read {}: not UTF-8 text", path.display())))
}
