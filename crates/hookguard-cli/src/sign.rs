//! `hookguard sign`: the headers a vendor would send with a body.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::common::{
    display_name, encode_query_value, now_unix, parse_header_arg, read_body, usage, CliResult, HeaderArg, ProviderArg,
};
use crate::vendor::sign_params;

const AFTER_HELP: &str = "\
Prints one `Name: value` line per header the vendor would send with the body (read from stdin,
or --file), signed with `Scheme::sign`, plus `Content-Type: application/json` when the body is
JSON (`application/x-www-form-urlencoded` when it is a form: Slack's slash commands). For hcss in URL-token mode (--secret), there is no header: the line `?token=VALUE`
(percent-encoded) is the query pair the callback URL carries. Feed the output to
`hookguard verify --headers-file FILE` (it understands the `?…` line), or pass each header
with -H.

Standard Webhooks: a whsec_… secret signs a `v1` entry (HMAC-SHA256), a whsk_… secret (an
Ed25519 secret key: base64 of the 32-byte seed, or of seed and public key) a `v1a` entry;
verify the latter with the matching whpk_… public key.

The id and type in headers (BuildWorkPro-Event-Id, BuildWorkPro-Event) default to the body's
`id` and `type`; webhook-id (standard) defaults to msg_ and a digest of the body (the same
message keeps its id when signed again); X-GitHub-Delivery is
sent only with --id.

Examples:
  echo -n '{\"id\":\"evt_1\",\"type\":\"bid.accepted\"}' | hookguard sign --provider buildworkpro --secret whsec_abc
  hookguard sign --provider standard --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw --id msg_1 --file event.json
  hookguard sign --provider standard --secret whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk= --id msg_1 --file event.json
  hookguard sign --provider procore --secret 'Bearer s3cret' --file event.json
  hookguard sign --provider hcss --secret hcss-url-token --file event.json     # prints ?token=hcss-url-token (and Content-Type)";

/// `hookguard sign`.
#[derive(clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct SignArgs {
    /// Whose headers to produce.
    #[arg(long, value_enum)]
    provider: ProviderArg,
    /// The signing secret (procore: the Authorization value; hcss: the URL token; standard:
    /// whsec_… for v1, whsk_… for v1a).
    #[arg(long, value_name = "S", env = "HOOKGUARD_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// procore/hcss: send the secret in this header instead: 'Name: value'.
    #[arg(long = "auth-header", value_name = "'NAME: VALUE'", value_parser = parse_header_arg)]
    auth_header: Option<HeaderArg>,
    /// The unix timestamp to sign with (default: now; at most 12 digits, as receivers read it).
    #[arg(long, value_name = "UNIX", value_parser = clap::value_parser!(u64).range(..=999_999_999_999))]
    timestamp: Option<u64>,
    /// The event/message id for id headers (default: the body's `id` for buildworkpro).
    #[arg(long, value_name = "ID", value_parser = crate::common::parse_header_word)]
    id: Option<String>,
    /// The event type for type headers (BuildWorkPro-Event, X-GitHub-Event).
    #[arg(long, value_name = "T", value_parser = crate::common::parse_header_word)]
    event_type: Option<String>,
    /// Read the body from this file instead of stdin.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
}

/// Runs `hookguard sign`.
pub fn run(args: SignArgs) -> CliResult<ExitCode> {
    let a = crate::common::signing_auth(args.provider, args.secret.as_ref(), args.auth_header.as_ref())?;
    let body = read_body(args.file.as_deref())?;
    // GitHub names the event in a header, not the body: without --event-type only a ping
    // (its body has `zen`) may be labelled `ping`, as `send` requires for a file of one's own.
    if args.provider.provider() == hookguard_core::Provider::GitHub
        && args.event_type.is_none()
        && !crate::common::is_github_ping(&body)
    {
        return Err(usage(
            "--provider github needs --event-type unless the body is a ping (GitHub sends it as X-GitHub-Event, e.g. push)",
        ));
    }
    let ts = args.timestamp.unwrap_or_else(now_unix);
    let params = sign_params(
        args.provider,
        &body,
        ts,
        args.id.as_deref(),
        args.event_type.as_deref(),
        false,
    );
    let signed = a
        .scheme
        .sign(&a.secrets[0], &body, &params)
        .map_err(|e| usage(format!("cannot sign: {e}")))?;
    let mut out = String::new();
    for (name, value) in &signed.headers {
        let v = value
            .to_str()
            .map_err(|_| usage("a header value is not printable text"))?;
        out.push_str(&format!("{}: {v}\n", display_name(name)));
    }
    if let Some(content_type) = crate::common::content_type_of(&args.provider.provider(), &body) {
        out.push_str(&format!("Content-Type: {content_type}\n"));
    }
    if let Some((k, v)) = &signed.query {
        out.push_str(&format!("?{}={}\n", encode_query_value(k), encode_query_value(v)));
    }
    crate::common::write_stdout(format_args!("{out}"))?;
    Ok(ExitCode::SUCCESS)
}
