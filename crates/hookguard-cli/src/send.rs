//! `hookguard send`: play a vendor's sender against an endpoint, retries included.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;
use reqwest::Url;

use crate::common::{
    auth, encode_query_value, error_code, now_unix, outln, parse_header_arg, parse_secs, read_body, usage, Auth,
    CliResult, HeaderArg, ProviderArg,
};
use crate::vendor::{human, rand_hex, sample_body, sign_params, Next, Outcome, Vendor};

/// The help after the options: the schedules come from each sender's profile.
fn after_help() -> String {
    let mut schedules = String::new();
    for p in hookguard_core::Provider::BUILT_IN {
        let vendor = Vendor(ProviderArg(*p));
        schedules.push_str(&format!(
            "  {:<13} {} timeout; {}\n",
            p.as_str(),
            vendor.timeout_shown(),
            vendor.schedule_doc()
        ));
    }
    format!(
        "{HEAD}Schedules (--schedule vendor waits for real; --schedule fast makes every wait at most 100 ms,\n\
         same number and order of attempts), from each sender's profile:\n{schedules}\n{TAIL}"
    )
}

const HEAD: &str = "\
Signs a realistic sample body for the provider (or --file), POSTs it with the vendor's timeout
and follows the vendor's documented retry rules, printing every attempt and the vendor's
verdict. Every attempt is signed again with a fresh timestamp (as BuildWorkPro does); ids stay
the same across retries. Exit 0 when an attempt is accepted (2xx), 1 when the vendor gives up,
2 on usage errors.

";

const TAIL: &str = "\
--challenge sends the sender's subscription check instead of an event, and exits 0 only if
the answer is 200 with the challenge echoed: hcss GET URL?challenge=<random> (exactly that
value as the body); slack a signed url_verification POST (the value as the body, or as
{\"challenge\": …}).

HCSS sends no credential of its own: --secret TOKEN appends ?token=TOKEN to --url, and a
token already in the callback URL you registered (--url '…/webhooks?token=TOKEN') works
without --secret. Secrets are never printed: URLs are shown with every query value and any
password replaced by ***, and error messages without the URL.

Plain HTTP only: this build has no TLS stack (https:// URLs need a TLS-enabled build of
reqwest; put a local http endpoint or a tunnel in front).

Examples:
  hookguard send --provider buildworkpro --secret whsec_abc --url http://127.0.0.1:8787/webhooks
  hookguard send --provider procore --secret 'Bearer s3cret' --url http://127.0.0.1:8787/webhooks --schedule fast
  hookguard send --provider hcss --secret tok --url http://127.0.0.1:8787/webhooks --challenge
  hookguard send --provider slack --secret 8f742231b10e8888abcd99yyyzzz85a5 --url http://127.0.0.1:8787/webhooks --challenge
  hookguard send --provider hcss --secret tok --url http://127.0.0.1:8787/webhooks --event-type CostCodeUpdated
  hookguard send --provider hcss --url 'http://127.0.0.1:8787/webhooks?token=tok'
  hookguard send --provider stripe --secret whsec_x --url http://127.0.0.1:8787/webhooks --file event.json";

/// How long the sender really waits between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScheduleArg {
    /// The vendor's real intervals (minutes to hours).
    Vendor,
    /// Every wait capped at 100 ms; same attempts in the same order.
    Fast,
}

/// `hookguard send`.
#[derive(clap::Args)]
#[command(after_help = after_help())]
pub struct SendArgs {
    /// Which vendor's sender to play.
    #[arg(long, value_enum)]
    provider: ProviderArg,
    /// The signing secret (procore: the Authorization value; hcss: the URL token ?token=, optional
    /// when --url already carries it).
    #[arg(long, value_name = "S", env = "HOOKGUARD_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// procore/hcss: send this header instead: 'Name: value'.
    #[arg(long = "auth-header", value_name = "'NAME: VALUE'", value_parser = parse_header_arg)]
    auth_header: Option<HeaderArg>,
    /// The endpoint (http:// only).
    #[arg(long, value_name = "URL")]
    url: String,
    /// The event type of the sample body (e.g. project.created, CostCodeUpdated, update).
    #[arg(long, value_name = "T", value_parser = crate::common::parse_header_word)]
    event_type: Option<String>,
    /// Send this body instead of a sample.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Real vendor waits, or fast (each wait at most 100 ms).
    #[arg(long, value_enum, default_value = "vendor")]
    schedule: ScheduleArg,
    /// hcss: perform the subscription challenge (GET ?challenge=); slack: the Request URL check
    /// (url_verification); instead of a delivery.
    #[arg(long)]
    challenge: bool,
    /// Override the vendor's timeout per attempt, in seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    timeout: Option<Duration>,
}

fn parse_url(s: &str) -> CliResult<Url> {
    // The URL may carry a token: the message names the problem, never the URL.
    let url = Url::parse(s).map_err(|e| usage(format!("--url is not a valid URL: {e}")))?;
    match url.scheme() {
        "http" => Ok(url),
        "https" => Err(usage(
            "https:// needs a TLS-enabled build; this build of hookguard speaks plain HTTP only",
        )),
        other => Err(usage(format!("--url must be http://, got {other}://"))),
    }
}

fn client() -> CliResult<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| usage(format!("cannot build the HTTP client: {e}")))
}

/// Appends `k=v` to `url`'s query, percent-encoded (a space is `%20`, never the form
/// encoding's `+`: a receiver reading a URL token keeps `+` as it is, as `sign` shows it).
fn append_query_pair(url: &mut Url, k: &str, v: &str) {
    let pair = format!(
        "{}={}",
        crate::common::encode_query_value(k),
        crate::common::encode_query_value(v)
    );
    let query = match url.query() {
        Some(q) if !q.is_empty() => format!("{q}&{pair}"),
        _ => pair,
    };
    url.set_query(Some(&query));
}

/// What one attempt got back, for printing.
struct Attempt {
    outcome: Outcome,
    detail: String,
    took: Duration,
}

/// The most of an answer's body `send` reads: enough for an error code or a challenge echo; a
/// receiver streaming more is not held in memory.
const MAX_ANSWER_BODY: usize = 64 * 1024;

/// The start of `resp`'s body, at most [`MAX_ANSWER_BODY`] bytes, and whether it ended there.
/// The status is the answer: a body still arriving (or cut) changes nothing about it.
async fn capped_body(mut resp: reqwest::Response) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = MAX_ANSWER_BODY - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() > room {
            return Ok((body, false));
        }
    }
    Ok((body, true))
}

async fn attempt(req: reqwest::RequestBuilder, timeout: Duration, secrets: &Redact) -> Attempt {
    let started = Instant::now();
    let (outcome, detail) = match req.timeout(timeout).send().await {
        Ok(resp) => {
            let status = resp.status();
            let reason = status.canonical_reason().unwrap_or("");
            let detail = |extra: String| format!("{} {reason} {extra}", status.as_u16()).trim_end().to_owned();
            match capped_body(resp).await {
                Ok((body, complete)) => {
                    let extra = match error_code(&body) {
                        Some(code) => snippet(code.as_bytes(), secrets),
                        None if body.is_empty() => String::new(),
                        None => snippet(&body, secrets),
                    };
                    let extra = if complete {
                        extra
                    } else {
                        format!("{extra} (body cut at 64 KiB)")
                    };
                    (Outcome::Status(status.as_u16()), detail(extra))
                }
                // The status line and headers came in time: that is the answer the sender
                // judges, whatever happens to the rest of the body.
                Err(e) if e.is_timeout() => (
                    Outcome::Status(status.as_u16()),
                    detail(format!("(body unfinished after {})", human(timeout))),
                ),
                Err(e) => (
                    Outcome::Status(status.as_u16()),
                    detail(format!("(body broke off: {})", describe(e, secrets))),
                ),
            }
        }
        Err(e) if e.is_timeout() => (Outcome::Timeout, format!("no answer within {}", human(timeout))),
        Err(e) => (Outcome::Network, format!("no connection: {}", describe(e, secrets))),
    };
    Attempt {
        outcome,
        detail,
        took: started.elapsed(),
    }
}

/// The start of an answer's body (a receiver may echo the request URL: secrets masked).
fn snippet(body: &[u8], secrets: &Redact) -> String {
    let s = secrets.clean(String::from_utf8_lossy(body).trim().to_owned());
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

/// A transport error with its causes, without the URL reqwest attaches (it holds the token).
fn describe(e: reqwest::Error, secrets: &Redact) -> String {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    secrets.clean(msg)
}

/// The secret strings of one `send` (flags, URL password and query values), masked as `***`
/// in anything printed that the program did not write itself.
struct Redact(Vec<String>);

impl Redact {
    fn new(url: &Url, secret: Option<&str>, header: Option<&HeaderArg>) -> Self {
        let mut all: Vec<String> = secret.into_iter().map(str::to_owned).collect();
        // As it travels in a URL too (an echo of the request target shows it encoded).
        all.extend(secret.map(crate::common::encode_query_value));
        all.extend(header.map(|h| h.value.clone()));
        all.extend(url.password().map(str::to_owned));
        for (_, v) in url.query_pairs() {
            all.push(v.into_owned());
        }
        for pair in url.query().unwrap_or("").split('&') {
            all.extend(pair.split_once('=').map(|(_, v)| v.to_owned()));
        }
        // Longest first, so a secret containing another is masked whole; very short values
        // (`?page=2`) would mask unrelated digits and are left.
        all.retain(|s| s.len() >= 3);
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        all.dedup();
        Self(all)
    }

    fn clean(&self, mut s: String) -> String {
        for secret in &self.0 {
            if s.contains(secret.as_str()) {
                s = s.replace(secret.as_str(), "***");
            }
        }
        s
    }
}

/// Runs `hookguard send`.
pub async fn run(args: SendArgs) -> CliResult<ExitCode> {
    let url = parse_url(&args.url)?;
    // The receiver reads the first `token`: a second one appended would be ignored, and a
    // wrong one in the URL answered 401 although --secret was right.
    if args.provider == ProviderArg::Hcss
        && args.auth_header.is_none()
        && args.secret.is_some()
        && url.query_pairs().any(|(k, _)| k == "token")
    {
        return Err(usage(
            "--url already carries ?token=: give HCSS's URL token once, in --url or as --secret",
        ));
    }
    let client = client()?;
    let vendor = Vendor(args.provider);
    let timeout = args.timeout.unwrap_or_else(|| vendor.timeout());
    let secrets_shown = Redact::new(&url, args.secret.as_deref(), args.auth_header.as_ref());
    if args.challenge {
        return challenge(&args, url, &client, timeout, &secrets_shown).await;
    }
    // Slack's url_verification is no event: a sample event typed so would be an event_callback
    // the receiver handles as one.
    if args.provider == ProviderArg::Slack && args.event_type.as_deref() == Some("url_verification") {
        return Err(usage(
            "Slack's url_verification is the Request URL check, not an event: use --challenge",
        ));
    }
    // HCSS sends no credential of its own: without --secret/--auth-header, whatever token the
    // registered callback URL carries is the authentication, and nothing is added.
    let signer: Option<Auth> =
        if args.provider == ProviderArg::Hcss && args.secret.is_none() && args.auth_header.is_none() {
            None
        } else {
            Some(crate::common::signing_auth(
                args.provider,
                args.secret.as_ref(),
                args.auth_header.as_ref(),
            )?)
        };
    let start = now_unix();
    let body = match &args.file {
        Some(p) => read_body(Some(p))?,
        None => sample_body(args.provider, args.event_type.as_deref(), start),
    };
    // GitHub names the event in a header, not the body: a file of one's own needs its name
    // (the sample's default, `ping`, would label a push as a ping), unless it is a ping.
    if args.provider.provider() == hookguard_core::Provider::GitHub
        && args.file.is_some()
        && args.event_type.is_none()
        && !crate::common::is_github_ping(&body)
    {
        return Err(usage(
            "--provider github --file needs --event-type unless the body is a ping (GitHub sends it as X-GitHub-Event, e.g. push)",
        ));
    }
    let mut params = sign_params(args.provider, &body, start, None, args.event_type.as_deref(), true);
    // Fail on a secret the scheme cannot use before any request.
    if let Some(a) = &signer {
        a.scheme
            .sign(&a.secrets[0], &body, &params)
            .map_err(|e| usage(format!("cannot sign: {e}")))?;
    }

    let mut display = display_url(&url);
    if args.provider == ProviderArg::Hcss && args.auth_header.is_none() && args.secret.is_some() {
        display.push(if url.query().is_some() { '&' } else { '?' });
        display.push_str("token=***");
    }
    let described = [
        params.id.as_deref().map(|i| format!("id {i}")),
        params.event_type.as_deref().map(|t| format!("type {t}")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    outln!(
        "{} → POST {display} ({} bytes{}{described}); timeout {}",
        sender_named(args.provider.display()),
        body.len(),
        if described.is_empty() { "" } else { ", " },
        if args.timeout.is_some() {
            human(timeout)
        } else {
            vendor.timeout_shown()
        }
    )?;
    outln!("schedule: {}", vendor.schedule_doc())?;
    // A sender that puts the body's id or type in its headers always sends them: a body
    // without them cannot be sent as that sender would.
    let profile = args.provider.profile();
    let missing: Vec<&str> = [
        matches!(profile.header_id, hookguard_core::profile::HeaderId::FromBody(_)) && params.id.is_none(),
        profile.header_type.is_some() && params.event_type.is_none(),
    ]
    .into_iter()
    .zip(["id", "event type"])
    .filter_map(|(gone, what)| gone.then_some(what))
    .collect();
    if !missing.is_empty() {
        eprintln!(
            "hookguard send: note: the body has no {} for {}'s headers; they are left out (the real sender always sends them)",
            missing.join(" nor "),
            args.provider.display()
        );
    }

    let total = vendor.max_attempts().map(|n| format!("/{n}")).unwrap_or_default();
    let mut elapsed = Duration::ZERO;
    let mut last_reason = None;
    for n in 1.. {
        params.timestamp = now_unix();
        let mut target = url.clone();
        let mut req_headers = Vec::new();
        if let Some(a) = &signer {
            let signed = a
                .scheme
                .sign(&a.secrets[0], &body, &params)
                .map_err(|e| usage(format!("cannot sign: {e}")))?;
            if let Some((k, v)) = &signed.query {
                append_query_pair(&mut target, k, v);
            }
            req_headers = signed.headers;
        }
        // A form body (Slack's slash commands and interactivity) goes as a form, as its sender
        // sends it; anything else as JSON (a `--file` that is neither plays a sender's
        // malformed body, not another kind of request).
        let content_type =
            crate::common::content_type_of(&args.provider.provider(), &body).unwrap_or("application/json");
        let mut req = client
            .post(target)
            .body(body.clone())
            .header(CONTENT_TYPE, content_type);
        for (name, value) in req_headers {
            req = req.header(name, value);
        }
        match args.provider {
            ProviderArg::Slack if n > 1 => {
                req = req
                    .header("x-slack-retry-num", (n - 1).to_string())
                    .header("x-slack-retry-reason", last_reason.unwrap_or("http_error"));
            }
            _ => {}
        }
        let at = attempt(req, timeout, &secrets_shown).await;
        last_reason = Some(match at.outcome {
            Outcome::Timeout => "http_timeout",
            Outcome::Network => "connection_failed",
            Outcome::Status(_) => "http_error",
        });
        let next = vendor.judge(&at.outcome, n, elapsed);
        let verdict = match &next {
            Next::Delivered => "delivered".to_owned(),
            Next::Retry { .. } => "failed".to_owned(),
            Next::GiveUp { verdict } => verdict.clone(),
        };
        outln!(
            "attempt {n}{total} (+{}): {} ({} ms) → {verdict}",
            human(elapsed),
            at.detail,
            at.took.as_millis()
        )?;
        match next {
            Next::Delivered => {
                outln!("{}: delivered after {n} attempt{}", args.provider.display(), plural(n))?;
                // HCSS counts any 2xx (its "Stopped" rule), but its guide asks for 200.
                if args.provider == ProviderArg::Hcss && !matches!(at.outcome, Outcome::Status(200)) {
                    outln!("note: HCSS's guide asks deliveries to be answered 200 (\"must respond with a HTTP 200 Status code\")")?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            Next::GiveUp { .. } => {
                outln!("{}: gave up after {n} attempt{}", args.provider.display(), plural(n))?;
                return Ok(ExitCode::from(1));
            }
            Next::Retry { after, note } => {
                let wait = match args.schedule {
                    ScheduleArg::Fast => after.min(Duration::from_millis(100)),
                    ScheduleArg::Vendor if args.provider == ProviderArg::BuildWorkPro => {
                        after.mul_f64(0.8 + 0.4 * rand::random::<f64>())
                    }
                    ScheduleArg::Vendor => after,
                };
                if args.schedule == ScheduleArg::Fast {
                    outln!("  {note} [fast: waiting {} ms]", wait.as_millis())?;
                } else {
                    outln!("  {note}")?;
                }
                tokio::time::sleep(wait).await;
                elapsed += after;
            }
        }
    }
    unreachable!("the loop returns")
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The URL as printed: every query value and any password masked (a token may be in either).
fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_fragment(None);
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    if shown.query().is_some() {
        let names: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        let mut q = shown.query_pairs_mut();
        q.clear();
        for k in &names {
            q.append_pair(k, "***");
        }
    }
    shown.to_string()
}

async fn challenge(
    args: &SendArgs,
    url: Url,
    client: &reqwest::Client,
    timeout: Duration,
    secrets: &Redact,
) -> CliResult<ExitCode> {
    let value = format!("hg{}", rand_hex(16));
    match args.provider {
        ProviderArg::Hcss => {}
        ProviderArg::Slack => return slack_challenge(args, url, client, timeout, secrets, value).await,
        _ => {
            return Err(usage(
                "--challenge is the subscription check of HCSS (GET ?challenge=) and Slack (url_verification): use it with --provider hcss or slack",
            ))
        }
    }
    let mut target = url.clone();
    if args.auth_header.is_none() {
        if let Some(token) = &args.secret {
            // The token is part of the callback URL HCSS was given.
            append_query_pair(&mut target, "token", token);
        }
    }
    let mut display = display_url(&target);
    display.push(if target.query().is_some() { '&' } else { '?' });
    display.push_str(&format!("challenge={}", encode_query_value(&value)));
    target.query_pairs_mut().append_pair("challenge", &value);
    let mut req = client.get(target).timeout(timeout);
    if let Some(h) = &args.auth_header {
        req = req.header(h.name.clone(), h.value.clone());
    }
    outln!(
        "HCSS subscription challenge → GET {display}; timeout {}",
        human(timeout)
    )?;
    let verdicts = [
        "HCSS: challenge echoed exactly → subscription created",
        "HCSS: challenge not echoed exactly → the subscription is not created",
    ];
    challenge_answer(req, &value, false, timeout, secrets, verdicts).await
}

/// `name` as the sender that `send` plays: "Procore sender", but "Standard Webhooks sender"
/// (a profile named as a sender already) once.
fn sender_named(name: &str) -> String {
    if name.ends_with(" sender") {
        name.to_owned()
    } else {
        format!("{name} sender")
    }
}

/// Slack's Request URL check: a signed `url_verification` POST whose `challenge` the endpoint
/// must answer (as the body, or as `{"challenge": …}`) before Slack sends it any event.
async fn slack_challenge(
    args: &SendArgs,
    url: Url,
    client: &reqwest::Client,
    timeout: Duration,
    secrets: &Redact,
    value: String,
) -> CliResult<ExitCode> {
    let Some(secret) = &args.secret else {
        return Err(usage(
            "--provider slack --challenge needs --secret (the app's signing secret)",
        ));
    };
    crate::common::one_secret(Some(secret))?;
    let a = auth(args.provider, std::slice::from_ref(secret), &[])?;
    let body = serde_json::to_vec(&serde_json::json!({
        "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
        "challenge": value,
        "type": "url_verification",
    }))
    .expect("a JSON object serialises");
    let signed = a
        .scheme
        .sign(&a.secrets[0], &body, &hookguard_core::SignParams::new(now_unix()))
        .map_err(|e| usage(format!("cannot sign: {e}")))?;
    let mut req = client
        .post(url.clone())
        .timeout(timeout)
        .header(CONTENT_TYPE, "application/json")
        .body(body);
    for (name, v) in signed.headers {
        req = req.header(name, v);
    }
    outln!(
        "Slack Request URL check → POST {} (url_verification); timeout {}",
        display_url(&url),
        human(timeout)
    )?;
    let verdicts = [
        "Slack: challenge answered → Request URL verified",
        "Slack: challenge not answered → the Request URL is not verified",
    ];
    challenge_answer(req, &value, true, timeout, secrets, verdicts).await
}

/// Sends a challenge request and judges its answer: `200` whose body is `value` exactly, or,
/// with `json_ok` (Slack takes it, HCSS does not), `{"challenge": value}`; prints the answer
/// and `verdicts[0]` (passed, exit 0) or `verdicts[1]` (failed, exit 1).
async fn challenge_answer(
    req: reqwest::RequestBuilder,
    value: &str,
    json_ok: bool,
    timeout: Duration,
    secrets: &Redact,
    verdicts: [&str; 2],
) -> CliResult<ExitCode> {
    let started = Instant::now();
    let (ok, detail) = match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let ctype = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            match capped_body(resp).await {
                Ok((body, complete)) => (
                    status == 200
                        && complete
                        && (body == value.as_bytes() || (json_ok && echoed_in_json(&body, value))),
                    format!("{status} ({ctype}) body {:?}", snippet(&body, secrets)),
                ),
                Err(e) => (false, format!("{status}, body unreadable: {}", describe(e, secrets))),
            }
        }
        Err(e) if e.is_timeout() => (false, format!("no answer within {}", human(timeout))),
        Err(e) => (false, format!("no connection: {}", describe(e, secrets))),
    };
    outln!(
        "answer: {detail} ({} ms); expected 200 with body {value:?}",
        started.elapsed().as_millis()
    )?;
    outln!("{}", verdicts[usize::from(!ok)])?;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Whether `body` is a JSON object whose `challenge` is `value`.
fn echoed_in_json(body: &[u8], value: &str) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .is_ok_and(|v| v.get("challenge").and_then(serde_json::Value::as_str) == Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_urls_and_errors_hide_tokens() {
        let url = Url::parse("http://user:pw-secret@127.0.0.1:9/hooks?token=tok%2Fsecret&page=2#f").unwrap();
        assert_eq!(
            display_url(&url),
            "http://user:***@127.0.0.1:9/hooks?token=***&page=***"
        );
        let r = Redact::new(&url, Some("flag-secret"), None);
        let msg =
            r.clean("for url (http://127.0.0.1:9/hooks?token=tok%2Fsecret) tok/secret flag-secret pw-secret 2".into());
        for s in ["tok%2Fsecret", "tok/secret", "flag-secret", "pw-secret"] {
            assert!(!msg.contains(s), "{msg}");
        }
        assert!(msg.ends_with(" 2"), "{msg}");
    }
}
