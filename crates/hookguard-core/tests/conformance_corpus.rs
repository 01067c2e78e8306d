//! The published conformance corpus (`conformance/cases/*.json` at the repository root, format
//! in `conformance/README.md`), checked against the verifier case by case: the corpus can never
//! drift from the code. The same files are checked against the `hookguard verify` binary by
//! `conformance/run.py` (CI: `scripts/test.sh`).
//!
//! Cases tagged `v1a` (Standard Webhooks Ed25519) need hookguard-core's `ed25519` feature and
//! are skipped without it (`cargo test -p hookguard-core`); `--all-features`, the workspace
//! build and `run.py` (the CLI has the feature) check them.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use hookguard_core::clock::ManualClock;
use hookguard_core::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use hookguard_core::schemes::{self, Hcss, Procore};
use hookguard_core::{DedupeKey, Precheck, Provider, Rejection, RequestHead, Scheme, Verdict, Verifier};
use serde::Deserialize;
use serde_json::{Map, Value};

const FORMAT: &str = "hookguard-conformance/1";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    format: String,
    provider: String,
    #[allow(dead_code)]
    about: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[allow(dead_code)]
    description: String,
    #[serde(default)]
    #[allow(dead_code)]
    source: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    config: Config,
    request: Request,
    expect: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    secrets: Vec<String>,
    #[serde(default)]
    auth_header: Option<AuthHeader>,
    #[serde(default)]
    tolerance: Option<u64>,
    #[serde(default)]
    max_body: Option<usize>,
    #[serde(default)]
    dedupe_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthHeader {
    name: String,
    values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body_base64: String,
    now: u64,
}

/// What the verifier did, in the corpus's terms.
#[derive(Debug, PartialEq)]
enum Outcome {
    Accept {
        id: Option<String>,
        kind: Option<String>,
        dedupe_key: Option<String>,
    },
    Reject {
        code: String,
        status: u16,
    },
    Challenge(String),
    ConfigError(String),
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/cases")
}

fn rejected(r: &Rejection) -> Outcome {
    Outcome::Reject {
        code: r.code().to_owned(),
        status: r.status().as_u16(),
    }
}

/// The scheme and accepted values, as `hookguard verify` builds them from `--secret` and
/// `--auth-header`.
fn scheme(provider: Provider, config: &Config) -> (Arc<dyn Scheme>, Vec<String>) {
    let mut secrets = config.secrets.clone();
    match (&config.auth_header, provider) {
        (None, _) => (schemes::for_provider(provider).expect("a built-in provider"), secrets),
        (Some(h), Provider::Procore) => {
            let name = HeaderName::from_bytes(h.name.as_bytes()).expect("auth_header.name");
            let mut all = h.values.clone();
            all.append(&mut secrets);
            (Arc::new(Procore::new().header(name)), all)
        }
        (Some(h), Provider::Hcss) => {
            assert!(
                secrets.is_empty(),
                "hcss: the URL token and a shared header are exclusive"
            );
            let name = HeaderName::from_bytes(h.name.as_bytes()).expect("auth_header.name");
            (Arc::new(Hcss::header(name)), h.values.clone())
        }
        (Some(_), p) => panic!("auth_header applies to procore and hcss only, not {p}"),
    }
}

fn run(provider: Provider, case: &Case) -> Outcome {
    let (scheme, secrets) = scheme(provider, &case.config);
    let r = &case.request;
    let mut b = Verifier::builder_arc(scheme)
        .secrets(&secrets)
        .clock(ManualClock::new(r.now));
    if let Some(t) = case.config.tolerance {
        b = b.tolerance(Duration::from_secs(t));
    }
    if let Some(n) = case.config.max_body {
        b = b.max_body(n);
    }
    if let Some(k) = &case.config.dedupe_key {
        match k.parse::<DedupeKey>() {
            Ok(k) => b = b.dedupe_key(k),
            Err(e) => return Outcome::ConfigError(e.to_string()),
        }
    }
    let v = match b.build() {
        Ok(v) => v,
        Err(e) => return Outcome::ConfigError(e.to_string()),
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &r.headers {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    let uri: Uri = r.target.parse().expect("target");
    let method = Method::from_bytes(r.method.as_bytes()).expect("method");
    let body = base64::engine::general_purpose::STANDARD
        .decode(&r.body_base64)
        .expect("body_base64");
    let head = RequestHead::new(&method, &uri, &headers);
    // The receiver's order: the pre-body checks, then the body.
    match v.precheck(&head) {
        Ok(Precheck::ReadBody { .. }) => {}
        Ok(Precheck::Challenge(a)) => return Outcome::Challenge(String::from_utf8_lossy(a.value()).into_owned()),
        Ok(other) => panic!("unexpected precheck {other:?}"),
        Err(r) => return rejected(&r),
    }
    match v.verify(&head, Bytes::from(body)) {
        Ok(Verdict::Deliver(d)) | Ok(Verdict::Ignored(d)) => Outcome::Accept {
            id: d.event_id().map(str::to_owned),
            kind: d.event_type().map(str::to_owned),
            dedupe_key: d.dedupe_key().map(str::to_owned),
        },
        Ok(Verdict::Challenge(a)) => Outcome::Challenge(String::from_utf8_lossy(a.value()).into_owned()),
        Ok(other) => panic!("unexpected verdict {other:?}"),
        Err(r) => rejected(&r),
    }
}

fn string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

/// `None` when `got` is what `expect` says; otherwise why not.
fn mismatch(expect: &Map<String, Value>, got: &Outcome) -> Option<String> {
    let outcome = expect.get("outcome").and_then(Value::as_str).unwrap_or("?");
    let ok = match (outcome, got) {
        ("accept", Outcome::Accept { id, kind, dedupe_key }) => {
            // A field that is absent is not checked; `null` means "none".
            let field = |name: &str, got: &Option<String>| expect.get(name).is_none_or(|v| string(v) == *got);
            field("id", id) && field("type", kind) && field("dedupe_key", dedupe_key)
        }
        ("reject", Outcome::Reject { code, status }) => {
            expect.get("code").and_then(Value::as_str) == Some(code.as_str())
                && expect.get("status").and_then(Value::as_u64) == Some(u64::from(*status))
        }
        ("challenge", Outcome::Challenge(value)) => expect.get("value").and_then(Value::as_str) == Some(value.as_str()),
        ("config_error", Outcome::ConfigError(_)) => true,
        _ => false,
    };
    (!ok).then(|| format!("expected {}, got {got:?}", Value::Object(expect.clone())))
}

#[test]
fn every_case_of_the_corpus_holds() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("conformance/cases")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut seen_providers = HashSet::new();
    let mut tags = BTreeSet::new();
    let mut failures = Vec::new();
    let mut total = 0;
    let mut skipped = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let file: CaseFile =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not a case file: {e}", path.display()));
        assert_eq!(file.format, FORMAT, "{}", path.display());
        let provider: Provider = file.provider.parse().unwrap();
        assert_eq!(
            path.file_stem().unwrap().to_str(),
            Some(provider.as_str()),
            "a file is named after its provider"
        );
        assert!(seen_providers.insert(provider), "{provider}: two files");
        let mut names = BTreeSet::new();
        for case in &file.cases {
            assert!(names.insert(&case.name), "{provider}: case {} twice", case.name);
            tags.extend(case.tags.iter().cloned());
            total += 1;
            if !cfg!(feature = "ed25519") && case.tags.iter().any(|t| t == "v1a") {
                skipped += 1;
                continue;
            }
            if let Some(why) = mismatch(&case.expect, &run(provider, case)) {
                failures.push(format!("{provider}/{}: {why}", case.name));
            }
        }
    }
    for p in Provider::BUILT_IN {
        assert!(seen_providers.contains(p), "no conformance cases for {p}");
    }
    for tag in [
        "vector",
        "rotation",
        "window",
        "malformed",
        "junk",
        "non-utf8",
        "v1a",
        "dedupe",
        "challenge",
        "policy",
    ] {
        assert!(tags.contains(tag), "no case tagged {tag}");
    }
    assert!(total >= 150, "only {total} cases");
    if skipped > 0 {
        eprintln!("{skipped} of {total} cases tagged v1a skipped: no `ed25519` feature");
    }
    assert!(
        failures.is_empty(),
        "{} of {total} conformance cases fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
