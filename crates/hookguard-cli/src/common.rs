//! What every subcommand shares: providers, secrets and auth headers, bodies, errors.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hookguard_core::http::{HeaderName, HeaderValue};
use hookguard_core::schemes::{self, Hcss, Procore};
use hookguard_core::{Provider, Scheme};

/// Why a command could not do its job.
#[derive(Debug)]
pub enum CliError {
    /// The command line or the configuration is wrong: exit 2.
    Usage(String),
    /// Something failed at run time (bind, connect, I/O): exit 1.
    Failed(String),
    /// Stdout was closed by its reader (`hookguard send … | head -3`): exit 1 without a
    /// message, as a command killed by SIGPIPE would stop.
    StdoutClosed,
}

/// A command's result.
pub type CliResult<T> = Result<T, CliError>;

/// A usage/configuration error (exit 2).
pub fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// A configuration the core refused (exit 2), in the CLI's words: named once as invalid, and
/// without advice that only a library user can follow.
pub fn config_error(e: &hookguard_core::ConfigError) -> CliError {
    let text = e.to_string();
    let text = text.replace(
        " (allow it explicitly with .allow_unsigned_key_header(name) if you must)",
        " (--dedupe-key takes the signed headers and the body's fields only)",
    );
    usage(if text.starts_with("invalid configuration") {
        text
    } else {
        format!("invalid configuration: {text}")
    })
}

/// A GitHub ping's body (a JSON object with `zen`): the one body that may be labelled `ping`
/// when no event type is given (GitHub names the event in a header, not the body).
pub fn is_github_ping(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body).is_ok_and(|o| o.contains_key("zen"))
}

/// `body` as JSON, also when a string in it holds bytes that are not UTF-8 (read as U+FFFD: the
/// receiver delivers such a body, so a simulated sender sends it as JSON with its id and type).
pub fn json_value(body: &[u8]) -> Option<serde_json::Value> {
    serde_json::from_slice(body)
        .ok()
        .or_else(|| serde_json::from_str(&String::from_utf8_lossy(body)).ok())
}

/// The `Content-Type` `provider` puts on these bytes: JSON, or a form from the senders that
/// send forms (Slack's slash commands and interactivity, `payload=…`; GitHub's form
/// deliveries); `None` for anything else.
pub fn content_type_of(provider: &Provider, body: &[u8]) -> Option<&'static str> {
    if json_value(body).is_some() {
        return Some("application/json");
    }
    if !matches!(provider, Provider::Slack | Provider::GitHub) {
        return None;
    }
    // `name=value` pairs joined by `&`, in the characters a form encoder writes.
    let form_byte = |b: &u8| b.is_ascii_alphanumeric() || b"-._~%+*=&".contains(b);
    let is_form = !body.is_empty()
        && body.iter().all(form_byte)
        && body
            .split(|&b| b == b'&')
            .all(|pair| pair.iter().position(|&b| b == b'=').is_some_and(|at| at > 0));
    is_form.then_some("application/x-www-form-urlencoded")
}

/// A run-time failure (exit 1).
pub fn failed(msg: impl Into<String>) -> CliError {
    CliError::Failed(msg.into())
}

/// The largest write a pipe takes whole or not at all (POSIX's `PIPE_BUF` minimum is 512;
/// Linux's is 4,096).
#[cfg(target_os = "linux")]
pub const PIPE_BUF: usize = 4096;
#[cfg(not(target_os = "linux"))]
pub const PIPE_BUF: usize = 512;

/// The length of the next piece of `data` (whole lines) to write to a pipe that another
/// writer may share (`serve … 2>&1 | consumer`: stdout's JSON lines and stderr's logs):
/// everything if it fits in [`PIPE_BUF`], else the whole lines that fit, else the first line
/// alone (longer than `PIPE_BUF`). A pipe takes a write of at most `PIPE_BUF` bytes whole, so
/// one writer's line never lands inside the other's — for lines of at most `PIPE_BUF` bytes
/// (no write can keep a longer line whole; `serve`'s JSON lines and log lines are far shorter
/// but for pathological ids, and `--exec` output is forwarded in pieces of that size).
pub fn piece(data: &[u8]) -> usize {
    if data.len() <= PIPE_BUF {
        return data.len();
    }
    match data[..PIPE_BUF].iter().rposition(|&b| b == b'\n') {
        Some(end) => end + 1,
        None => data.iter().position(|&b| b == b'\n').map_or(data.len(), |end| end + 1),
    }
}

/// Writes `data` (whole lines) in [`piece`]s.
pub fn write_pieces(out: &mut impl Write, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let n = piece(data);
        out.write_all(&data[..n])?;
        data = &data[n..];
    }
    Ok(())
}

/// Writes to stdout through its lock and flushes. A reader that went away (`| head`) is
/// [`CliError::StdoutClosed`], never a panic; another write error is a failure.
pub fn write_stdout(args: std::fmt::Arguments<'_>) -> CliResult<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args).and_then(|()| out.flush()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            CliError::StdoutClosed
        } else {
            failed(format!("cannot write to stdout: {e}"))
        }
    })
}

/// Writes one line to stderr; a closed or broken stderr is ignored (never a panic). Once the
/// logs' queue runs ([`crate::logs::Logs`]) the line goes through it, in order with the logs,
/// and a stderr nobody reads never blocks the caller.
pub fn write_stderr(args: std::fmt::Arguments<'_>) {
    crate::logs::write(format!("{args}\n").as_bytes());
}

/// `println!` that returns [`CliResult`]: `outln!("…", args)?` (see [`write_stdout`]).
macro_rules! outln {
    () => {
        $crate::common::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::common::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// A provider on the command line, parsed through the core's registry
/// ([`Provider::BUILT_IN`]): adding a sender to the registry adds it to every subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProviderArg(pub Provider);

/// Short names for the senders the CLI's own code mentions (tests, the demo, sender quirks).
#[allow(non_upper_case_globals)]
impl ProviderArg {
    pub const BuildWorkPro: Self = Self(Provider::BuildWorkPro);
    pub const Procore: Self = Self(Provider::Procore);
    pub const Hcss: Self = Self(Provider::Hcss);
    pub const Slack: Self = Self(Provider::Slack);
    pub const Aps: Self = Self(Provider::Aps);
}

impl ProviderArg {
    /// The core's provider.
    pub fn provider(self) -> Provider {
        self.0
    }

    /// The sender's profile (from its scheme file).
    pub fn profile(self) -> hookguard_core::profile::SenderProfile {
        schemes::for_provider(self.0).map_or_else(
            || hookguard_core::profile::SenderProfile::unknown("custom sender"),
            |s| s.profile(),
        )
    }

    /// The vendor's name as people write it.
    pub fn display(self) -> &'static str {
        self.profile().name
    }
}

impl clap::ValueEnum for ProviderArg {
    fn value_variants<'a>() -> &'a [Self] {
        static ALL: std::sync::LazyLock<Vec<ProviderArg>> =
            std::sync::LazyLock::new(|| Provider::BUILT_IN.iter().map(|p| ProviderArg(*p)).collect());
        &ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.0.as_str()).help(self.profile().name))
    }
}

/// A `Name: value` header given on the command line. Its value is a credential (Procore's
/// `Authorization`, a shared token): `Debug` shows the name only.
#[derive(Clone)]
pub struct HeaderArg {
    /// The header name (lower case).
    pub name: HeaderName,
    /// The value, trimmed.
    pub value: String,
}

impl std::fmt::Debug for HeaderArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderArg")
            .field("name", &self.name)
            .field("value", &"***")
            .finish()
    }
}

/// An id or event type that `sign` and `send` put in a header (clap value parser): not empty,
/// no whitespace around it, visible ASCII. An empty one printed `webhook-id: ` with nothing
/// after it, which `verify` then read as no header at all.
pub fn parse_header_word(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("empty (leave the flag out to use the default)".into());
    }
    if s.trim() != s {
        return Err("starts or ends with whitespace, which a header drops".into());
    }
    if !s.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return Err("not visible ASCII, the only text a header carries".into());
    }
    Ok(s.to_owned())
}

/// Parses `Name: value` (clap value parser: a bad one is a usage error, exit 2).
pub fn parse_header_arg(s: &str) -> Result<HeaderArg, String> {
    let (name, value) = s.split_once(':').ok_or_else(|| "expected 'Name: value'".to_owned())?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| "invalid header name (the part before ':'; not shown: it may hold a secret)".to_owned())?;
    let value = value.trim().to_owned();
    HeaderValue::from_str(&value).map_err(|_| format!("invalid value for header `{name}`"))?;
    Ok(HeaderArg { name, value })
}

/// Parses seconds, fractions allowed (`4`, `0.5`): more than 0, at most 86400 (a day).
pub fn parse_secs(s: &str) -> Result<std::time::Duration, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("expected seconds, got {s:?}"))?;
    // The range is said (an operator's tryout: `--lease 86401` left the bound to be guessed).
    let out_of_range = || format!("{s} is not in the range of more than 0 and at most 86400 seconds (a day)");
    if !v.is_finite() || v <= 0.0 || v > 86_400.0 {
        return Err(out_of_range());
    }
    // A positive value too small for a nanosecond would be a zero wait: refused like 0.
    match std::time::Duration::from_secs_f64(v) {
        std::time::Duration::ZERO => Err(out_of_range()),
        d => Ok(d),
    }
}

/// How a provider's deliveries are authenticated, ready for a verifier or a sender.
pub struct Auth {
    /// The scheme, configured (Procore header name, HCSS mode).
    pub scheme: Arc<dyn Scheme>,
    /// Accepted secrets / header values / tokens, in order.
    pub secrets: Vec<String>,
    /// A human description of the mode, for logs.
    pub mode: String,
}

/// The secrets a `--secret` value or `HOOKGUARD_SECRET` holds: one per line (a rotation's
/// two secrets in the environment, where `serve` asks them to be, instead of two `--secret`
/// on the command line), a line's `\r` and empty lines dropped. No secret or header value
/// holds a line break (it could not be sent in a header).
pub fn secret_lines(secrets: &[String]) -> Vec<String> {
    secrets
        .iter()
        .flat_map(|s| s.split('\n'))
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `sign` and `send` sign with one secret: a `--secret` or `HOOKGUARD_SECRET` of several lines
/// (a receiver's rotation list) is refused rather than one of them picked.
pub fn one_secret(secret: Option<&String>) -> CliResult<()> {
    match secret.map(|s| secret_lines(std::slice::from_ref(s)).len()) {
        Some(n) if n > 1 => Err(usage(format!(
            "the secret holds {n} lines (HOOKGUARD_SECRET may list a receiver's secrets, one per line): \
             signing takes one; pass it with --secret"
        ))),
        _ => Ok(()),
    }
}

/// [`auth`] for `sign` and `send`, which sign with one value: `--auth-header 'Name: value'`
/// beside `--secret` (or `HOOKGUARD_SECRET`) gave two, and the secret was dropped unsaid (an
/// operator's tryout). `--auth-header 'Name:'` takes its value from the secret.
pub fn signing_auth(p: ProviderArg, secret: Option<&String>, header: Option<&HeaderArg>) -> CliResult<Auth> {
    one_secret(secret)?;
    let a = auth(
        p,
        secret.map(std::slice::from_ref).unwrap_or_default(),
        header.map(std::slice::from_ref).unwrap_or_default(),
    )?;
    if a.secrets.len() > 1 {
        return Err(usage(
            "signing takes one value: --auth-header 'Name: value' and --secret (or HOOKGUARD_SECRET) \
             each give one; give the header as 'Name:' to send the secret's value in it",
        ));
    }
    Ok(a)
}

/// The widest `--tolerance` (`serve` and `verify` alike): one day. A wider replay window is
/// replay protection in name only.
pub const MAX_TOLERANCE_SECS: u64 = 86_400;

/// `--tolerance` for a sender whose signatures carry no timestamp (GitHub, Procore, HCSS, APS)
/// would change nothing: refused, so nobody believes in a replay window that is not there (a
/// tryout's finding: it was taken silently).
pub fn check_tolerance(p: ProviderArg, tolerance: Option<u64>) -> CliResult<()> {
    let timestamped = schemes::for_provider(p.provider()).is_some_and(|s| s.has_timestamp());
    if tolerance.is_some() && !timestamped {
        return Err(usage(format!(
            "--tolerance applies to senders that sign a timestamp; {} signs no timestamp, so there is no \
             replay window to set (copies are recognised by their event id or body digest)",
            p.provider()
        )));
    }
    Ok(())
}

/// Builds the scheme and the list of accepted secrets from `--secret` and `--auth-header`
/// (each `--secret` value may hold several, one per line: [`secret_lines`]).
///
/// - procore: `--secret V` accepts `Authorization: V`; `--auth-header 'Name: V'` accepts
///   `Name: V` (`Procore::new().header(Name)`); both together add values for that header.
/// - hcss: `--secret T` is the URL token `?token=T`; `--auth-header 'Name: V'` a shared
///   header (`Hcss::header(Name)`); the two modes are exclusive.
/// - `--auth-header 'Name:'` (no value) names the header and takes its values from `--secret`
///   (or `HOOKGUARD_SECRET`, which stays out of `ps`), for procore and hcss alike.
/// - the signing providers take `--secret` only.
pub fn auth(p: ProviderArg, secrets: &[String], headers: &[HeaderArg]) -> CliResult<Auth> {
    let lines = secret_lines(secrets);
    let secrets = &lines[..];
    if let Some(first) = headers.first() {
        if let Some(other) = headers.iter().find(|h| h.name != first.name) {
            return Err(usage(format!(
                "all --auth-header values must name the same header (got `{}` and `{}`)",
                first.name, other.name
            )));
        }
    }
    // `--auth-header 'Name:'` names the header only: its values come from --secret (or
    // HOOKGUARD_SECRET, kept out of `ps`).
    let name_only = !headers.is_empty() && headers.iter().all(|h| h.value.is_empty());
    let header_values = headers.iter().map(|h| h.value.clone()).filter(|v| !v.is_empty());
    let (scheme, all, mode): (Arc<dyn Scheme>, Vec<String>, String) = match p {
        ProviderArg::Procore => {
            let name = headers
                .first()
                .map(|h| h.name.clone())
                .unwrap_or(hookguard_core::http::header::AUTHORIZATION);
            let mode = format!("header `{name}`");
            let all = header_values.chain(secrets.iter().cloned()).collect();
            (Arc::new(Procore::new().header(name)), all, mode)
        }
        ProviderArg::Hcss => match headers.first() {
            Some(h) if !secrets.is_empty() && !name_only => {
                return Err(usage(format!(
                    "hcss: --secret (URL token ?token=) and --auth-header (shared header `{}`) are exclusive",
                    h.name
                )))
            }
            Some(h) => (
                Arc::new(Hcss::header(h.name.clone())),
                header_values.chain(secrets.iter().cloned()).collect(),
                format!("shared header `{}`", h.name),
            ),
            None => (Arc::new(Hcss::new()), secrets.to_vec(), "URL token ?token=".to_owned()),
        },
        other => {
            if !headers.is_empty() {
                return Err(usage(format!(
                    "--auth-header applies to procore and hcss only; {} signs with --secret",
                    other.provider()
                )));
            }
            let scheme = schemes::for_provider(other.provider()).ok_or_else(|| usage("unknown provider"))?;
            (scheme, secrets.to_vec(), "signature".to_owned())
        }
    };
    if all.is_empty() {
        let hint = match p {
            ProviderArg::Procore => "--secret 'Bearer …' (the Authorization value) or --auth-header 'Name: value'",
            ProviderArg::Hcss => "--secret TOKEN (URL token ?token=) or --auth-header 'Name: value'",
            _ => "--secret SECRET",
        };
        return Err(usage(format!("{}: no secret given; pass {hint}", p.provider())));
    }
    if all.iter().any(String::is_empty) {
        return Err(usage("a secret or header value is empty"));
    }
    // A newline or a space around it (read from a file, an environment file) is never part of
    // what a sender sends: every delivery would be refused as forged.
    if all.iter().any(|s| s.trim() != s) {
        return Err(usage(
            "a secret or header value starts or ends with whitespace (a newline from a file?); \
             remove it (the value is not shown)",
        ));
    }
    // Said on `serve`'s first line: a value from HOOKGUARD_SECRET beside `--auth-header`'s is
    // accepted too (a rotation), which the line did not show (an operator's tryout).
    let mode = match all.len() {
        1 => mode,
        n => format!("{mode}, {n} accepted values"),
    };
    Ok(Auth {
        scheme,
        secrets: all,
        mode,
    })
}

/// Reads the body from `--file` (or `-`), else from stdin, as raw bytes.
pub fn read_body(file: Option<&Path>) -> CliResult<Vec<u8>> {
    let body = read_body_within(file, MAX_BODY_READ + 1)?;
    if body.len() as u64 > MAX_BODY_READ {
        return Err(usage("the body is larger than 64 MiB (no sender sends that much)"));
    }
    Ok(body)
}

/// The most `sign` and `send` read of a body (a larger one is refused, not held).
pub const MAX_BODY_READ: u64 = 64 * 1024 * 1024;

/// [`read_body`], reading at most `limit` bytes: a longer body is cut there (`verify` reads one
/// byte past its `--max-body`, so the verifier refuses it as too large) — never read whole.
pub fn read_body_within(file: Option<&Path>, limit: u64) -> CliResult<Vec<u8>> {
    let mut body = Vec::new();
    match file {
        Some(p) if p != Path::new("-") => return read_file_within(p, limit),
        _ => {
            std::io::stdin()
                .lock()
                .take(limit)
                .read_to_end(&mut body)
                .map_err(|e| failed(format!("cannot read stdin: {e}")))?;
        }
    }
    Ok(body)
}

/// The file at `path`, read up to `limit` bytes (never whole: a huge or endless file is cut
/// there, for the caller to refuse).
pub fn read_file_within(path: &Path, limit: u64) -> CliResult<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit).read_to_end(&mut bytes))
        .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    Ok(bytes)
}

/// How a header is usually written (`BuildWorkPro-Signature`, `X-GitHub-Delivery`).
pub fn display_name(name: &HeaderName) -> String {
    let known = [
        ("x-github-delivery", "X-GitHub-Delivery"),
        ("x-github-event", "X-GitHub-Event"),
        ("webhook-id", "webhook-id"),
        ("webhook-timestamp", "webhook-timestamp"),
        ("webhook-signature", "webhook-signature"),
    ];
    let n = name.as_str();
    if let Some((_, d)) = known.iter().find(|(k, _)| *k == n) {
        return (*d).to_owned();
    }
    n.split('-')
        .map(|part| match part {
            "buildworkpro" => "BuildWorkPro".to_owned(),
            "id" => "Id".to_owned(),
            p => {
                let mut c = p.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The flags of `flags` on this process's command line: an argument that starts with one
/// (`--secret`, `--secret=…`), read as OS strings (a non-UTF-8 argument is no panic).
pub fn flags_given<'a>(flags: &[&'a str]) -> Vec<&'a str> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    flags
        .iter()
        .copied()
        .filter(|f| args.iter().any(|a| a.as_encoded_bytes().starts_with(f.as_bytes())))
        .collect()
}

/// Whether a command-line value is a URL that carries a password: in its user info
/// (`scheme://user:pw@host`) or as a query parameter (`?password=`).
pub fn url_has_password(arg: &str) -> bool {
    let Some((_, rest)) = arg.split_once("://") else {
        return false;
    };
    let in_user_info = rest.rsplit_once('@').is_some_and(|(info, _)| info.contains(':'));
    let in_query = rest
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|kv| kv.to_ascii_lowercase().starts_with("password=")));
    in_user_info || in_query
}

/// Percent-encodes a query value (unreserved characters stay): the core's, as its test
/// requests encode a URL token.
pub use hookguard_core::challenge::percent_encode as encode_query_value;

/// The current unix time in seconds.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The `error` code of a rejection body, if it is one.
pub fn error_code(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("error").and_then(|e| e.as_str()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_too_small_for_a_nanosecond_are_refused_like_zero() {
        use std::time::Duration;
        assert_eq!(parse_secs("0.2"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_secs("1e-9"), Ok(Duration::from_nanos(1)));
        for bad in ["0", "1E-10", "4e-10", "-1", "86400.5", "inf", "NaN", ""] {
            assert!(parse_secs(bad).is_err(), "{bad}");
        }
        // Out of range: the range is said.
        for bad in ["0", "1E-10", "86401"] {
            let why = parse_secs(bad).unwrap_err();
            assert!(why.contains("more than 0 and at most 86400"), "{bad}: {why}");
        }
        assert_eq!(parse_secs("86400"), Ok(Duration::from_secs(86_400)));
    }

    #[test]
    fn pieces_fit_a_pipe_write_and_end_at_a_line_end() {
        let line = |n: usize| format!("{}\n", "x".repeat(n - 1));
        // Small batches go whole.
        assert_eq!(piece(b"a\nb\n"), 4);
        assert_eq!(piece(line(PIPE_BUF).as_bytes()), PIPE_BUF);
        // Whole lines up to PIPE_BUF.
        let two = format!("{}{}", line(PIPE_BUF - 10), line(20));
        assert_eq!(piece(two.as_bytes()), PIPE_BUF - 10);
        // A line longer than PIPE_BUF goes alone, then the rest.
        let long = format!("{}{}", line(PIPE_BUF + 5), line(3));
        assert_eq!(piece(long.as_bytes()), PIPE_BUF + 5);
        assert_eq!(piece(&long.as_bytes()[PIPE_BUF + 5..]), 3);
        // No line end at all: everything.
        assert_eq!(piece("y".repeat(PIPE_BUF * 2).as_bytes()), PIPE_BUF * 2);
        // Every piece of a batch of lines of any length is whole lines.
        let batch: String = (1..200).map(|i| line(i * 37 % 5000 + 1)).collect();
        let mut data = batch.as_bytes();
        while !data.is_empty() {
            let n = piece(data);
            assert!(data[..n].ends_with(b"\n"));
            assert!(n <= PIPE_BUF || !data[..n - 1].contains(&b'\n'), "{n}");
            data = &data[n..];
        }
    }

    #[test]
    fn urls_with_passwords_are_recognised() {
        for yes in [
            "postgres://app:pw@db/hooks",
            "redis://:pw@127.0.0.1:6379",
            "postgres://app@db/hooks?sslmode=require&Password=pw",
            "postgres://app:p@w@db/hooks",
        ] {
            assert!(url_has_password(yes), "{yes}");
        }
        for no in [
            "postgres://app@db/hooks",
            "postgres://db:5432/hooks",
            "inbox.db",
            "redis://127.0.0.1",
        ] {
            assert!(!url_has_password(no), "{no}");
        }
    }
    #[test]
    fn a_header_args_value_is_never_debug_printed() {
        let h = parse_header_arg("Authorization: Bearer s3cr3t-value").unwrap();
        let shown = format!("{h:?} {:?}", vec![h.clone()]);
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("authorization"), "{shown}");
    }

    #[test]
    fn header_args_parse() {
        let h = parse_header_arg("Authorization: Bearer x y").unwrap();
        assert_eq!(h.name, "authorization");
        assert_eq!(h.value, "Bearer x y");
        assert!(parse_header_arg("no colon").is_err());
        assert!(parse_header_arg("bad name: v").is_err());
    }

    #[test]
    fn display_names() {
        assert_eq!(
            display_name(&HeaderName::from_static("buildworkpro-event-id")),
            "BuildWorkPro-Event-Id"
        );
        assert_eq!(
            display_name(&HeaderName::from_static("x-hub-signature-256")),
            "X-Hub-Signature-256"
        );
        assert_eq!(display_name(&HeaderName::from_static("authorization")), "Authorization");
    }

    proptest::proptest! {
        /// `Name: value` with a valid name and any visible value is that lower-cased name and
        /// the value trimmed; no text panics; a refusal never repeats the value, nor the part
        /// before the first `:` when that is not a header name (either may be a credential).
        #[test]
        fn header_args_are_a_name_and_a_trimmed_value(
            name in "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,24}",
            pad in "[ \t]{0,3}",
            value in "[!-~]([ !-~]{0,30}[!-~])?|",
        ) {
            let arg = parse_header_arg(&format!("{name}:{pad}{value}{pad}")).unwrap();
            proptest::prop_assert_eq!(arg.name.as_str(), name.to_ascii_lowercase());
            proptest::prop_assert_eq!(arg.value, value);
        }

        /// Any text is taken (as its name and trimmed value) or refused with a message that
        /// holds neither a refused value nor a part before the `:` that is no header name.
        #[test]
        fn any_header_arg_is_taken_or_refused_without_repeating_it(
            s in r"\PC{0,40}|[^:]{0,8}S3CR3T[^:]{0,8}(:.{0,12})?|[!-~&&[^:]]{1,8}:[ -~]{0,4}S3CR3T[\x00-\x08\x0a-\x1f\x7f]"
        ) {
            match parse_header_arg(&s) {
                Ok(arg) => {
                    let (name, value) = s.split_once(':').unwrap();
                    proptest::prop_assert_eq!(arg.name.as_str(), name.trim().to_ascii_lowercase());
                    proptest::prop_assert_eq!(arg.value.as_str(), value.trim());
                }
                // Shown names are lower-cased: the upper-case marker is never shown.
                Err(e) => proptest::prop_assert!(!e.contains("S3CR3T"), "{e:?} repeats part of {s:?}"),
            }
        }
    }

    #[test]
    fn auth_rules() {
        let h = parse_header_arg("X-Token: abc").unwrap();
        assert!(auth(ProviderArg(Provider::GitHub), &[], std::slice::from_ref(&h)).is_err());
        assert!(auth(ProviderArg::Hcss, &["t".into()], std::slice::from_ref(&h)).is_err());
        assert!(auth(ProviderArg(Provider::Stripe), &[], &[]).is_err());
        let a = auth(ProviderArg::Procore, &["second".into()], &[h]).unwrap();
        assert_eq!(a.secrets, ["abc", "second"]);
        // Both accepted, and the start line says so (a HOOKGUARD_SECRET left in the
        // environment beside --auth-header was accepted unseen).
        assert_eq!(a.mode, "header `x-token`, 2 accepted values");
        // A header named without a value takes its values from --secret / HOOKGUARD_SECRET
        // (kept out of `ps`): for Procore and for HCSS's shared header alike.
        let named = parse_header_arg("X-Hook-Token:").unwrap();
        let a = auth(
            ProviderArg::Procore,
            &["tok1\ntok2".into()],
            std::slice::from_ref(&named),
        )
        .unwrap();
        assert_eq!(
            (a.secrets.as_slice(), a.mode.as_str()),
            (
                &["tok1".to_owned(), "tok2".to_owned()][..],
                "header `x-hook-token`, 2 accepted values"
            )
        );
        let a = auth(ProviderArg::Hcss, &["tok".into()], std::slice::from_ref(&named)).unwrap();
        assert_eq!(
            (a.secrets.as_slice(), a.mode.as_str()),
            (&["tok".to_owned()][..], "shared header `x-hook-token`")
        );
        // Named, with no value anywhere: still no secret.
        assert!(auth(ProviderArg::Procore, &[], std::slice::from_ref(&named)).is_err());
        assert!(auth(ProviderArg::Hcss, &[], std::slice::from_ref(&named)).is_err());
    }

    #[test]
    fn query_encoding() {
        assert_eq!(encode_query_value("a b/c~"), "a%20b%2Fc~");
    }
}

/// The receiver's clock in `serve`: the kernel's coarse clocks (Linux), which the vDSO answers
/// from a value the kernel updates every tick, without reading the CPU's counter and scaling
/// it. Every consumer counts whole seconds (the replay window, the dedupe store's leases and
/// retention), so a tick's resolution (1–4 ms) loses nothing. Elsewhere, the system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoarseClock;

impl hookguard_core::clock::Clock for CoarseClock {
    fn now_unix(&self) -> u64 {
        #[cfg(target_os = "linux")]
        if let Some(t) = coarse(rustix::time::ClockId::RealtimeCoarse) {
            return t.as_secs();
        }
        hookguard_core::clock::SystemClock.now_unix()
    }

    fn monotonic(&self) -> Duration {
        // One origin for the process's life: the coarse clock when it answers at first (should
        // it ever fail later, the precise one it ticks with, which counts from the same boot),
        // else the system's (never a mix, whose origins differ).
        #[cfg(target_os = "linux")]
        {
            static COARSE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
            let id = rustix::time::ClockId::MonotonicCoarse;
            if *COARSE.get_or_init(|| coarse(id).is_some()) {
                if let Some(t) = coarse(id).or_else(|| coarse(rustix::time::ClockId::Monotonic)) {
                    return t;
                }
            }
        }
        hookguard_core::clock::SystemClock.monotonic()
    }
}

/// A coarse clock's time (Linux), or `None` where the kernel refuses it (a sandbox): the
/// caller falls back to the system clock rather than panicking.
#[cfg(target_os = "linux")]
fn coarse(id: rustix::time::ClockId) -> Option<Duration> {
    let t = rustix::time::clock_gettime_dynamic(rustix::time::DynamicClockId::Known(id)).ok()?;
    Some(Duration::new(
        u64::try_from(t.tv_sec).ok()?,
        u32::try_from(t.tv_nsec).ok()?,
    ))
}

#[cfg(test)]
mod coarse_clock_tests {
    use hookguard_core::clock::{Clock, SystemClock};

    use super::CoarseClock;

    #[test]
    fn the_coarse_clock_agrees_with_the_system_clock_to_the_second_and_never_goes_back() {
        let (system, coarse) = (SystemClock.now_unix(), CoarseClock.now_unix());
        assert!(system.abs_diff(coarse) <= 1, "{system} {coarse}");
        // Each coarse read between two precise ones: a thread preempted beside a read widens
        // the bounds instead of failing the test.
        let bracket = || {
            let before = std::time::Instant::now();
            let t = CoarseClock.monotonic();
            (before, t, std::time::Instant::now())
        };
        let (start_before, first, start_after) = bracket();
        let mut last = first;
        while start_after.elapsed() < std::time::Duration::from_millis(30) {
            let now = CoarseClock.monotonic();
            assert!(now >= last, "{now:?} < {last:?}");
            last = now;
        }
        let (end_before, last, end_after) = bracket();
        // It moves with real time, to a tick (at most 10 ms at either end): a clock standing
        // still or running at another rate fails here.
        let moved = last.saturating_sub(first);
        let (shortest, longest) = (end_before - start_after, end_after - start_before);
        let tick = std::time::Duration::from_millis(20);
        assert!(
            moved + tick >= shortest && moved <= longest + tick,
            "{moved:?} against {shortest:?}..{longest:?}"
        );
    }
}
