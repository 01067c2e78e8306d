//! [`DedupeKey`]: recognise copies of an *event* by fields of its signed content, not only by
//! the sender's delivery id.
//!
//! Some senders deliver one change as several events with distinct ids (Procore says two
//! events for one change can reach the endpoint, delayed in its pipeline). A dedupe key built
//! from the fields that identify the change — `/resource_name`, `/resource_id`, `/event_type`,
//! `/timestamp` — recognises those copies too. A field may name alternatives, the first present
//! counting (`/event_type|/reason`: Procore's v4 hooks rename `event_type` to `reason` and
//! `resource_name` to `resource_type`).
//!
//! Only signed material may make a key: JSON pointers into the body (covered by the signature,
//! or by the shared credential for senders that sign nothing) and the headers a scheme's
//! signature covers ([`Scheme::signed_headers`](crate::Scheme::signed_headers)). A header the
//! signature does not cover can be changed by anyone who replays a genuine delivery within the
//! window: keyed on it, the replay could claim the key of an event that has not arrived yet,
//! and that event would then be answered `duplicate` and never handled. Such headers are
//! refused by [`build`](crate::VerifierBuilder::build) unless allowed one by one with
//! [`allow_unsigned_key_header`](crate::VerifierBuilder::allow_unsigned_key_header).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use http::HeaderName;
use serde_json::value::RawValue;

use crate::{ConfigError, RequestHead, Scheme};

/// The most fields one dedupe key may combine.
///
/// ```
/// use hookguard_core::{schemes::GitHub, DedupeKey, Verifier, MAX_DEDUPE_KEY_FIELDS};
/// assert_eq!(MAX_DEDUPE_KEY_FIELDS, 16);
/// let key = |n: usize| (0..n).fold(DedupeKey::new(), |k, i| k.pointer(format!("/f{i}")));
/// assert!(Verifier::builder(GitHub::new()).secret("s").dedupe_key(key(MAX_DEDUPE_KEY_FIELDS)).build().is_ok());
/// assert!(Verifier::builder(GitHub::new()).secret("s").dedupe_key(key(MAX_DEDUPE_KEY_FIELDS + 1)).build().is_err());
/// ```
pub const MAX_DEDUPE_KEY_FIELDS: usize = 16;

/// Keys longer than this are replaced by a digest of themselves.
const MAX_KEY_LEN: usize = 256;

/// Which fields of a delivery identify its event, for deduplication.
///
/// Set it with [`VerifierBuilder::dedupe_key`](crate::VerifierBuilder::dedupe_key) (or the same
/// method on a receiver, tower or actix builder). The key of a delivery is
/// `"{provider}:fields:" + [values]`, the values as compact JSON in the order given (strings
/// decoded and re-encoded, numbers exactly as sent — a Procore id above 2^53 keeps every
/// digit —, objects and arrays as canonical JSON with sorted keys); a key over 256 bytes is
/// replaced by `fields:sha256:<128-bit hex>` of it. Copies are remembered for the retention
/// ([`DedupeScope::Retained`](crate::DedupeScope::Retained)): choose fields that identify one
/// event (include an id or a time), or two genuine events would be handled once.
///
/// A field may list alternatives ([`or_pointer`](Self::or_pointer), `|` in the text): the first
/// present counts, so one key serves bodies that name a field differently (Procore's v2/v3
/// and v4 hooks).
///
/// **A delivery without one of the fields** (a pointer that resolves to nothing — nor any of
/// its alternatives —, a body that is not JSON, an absent header) is never rejected: it keeps the sender's own default key and
/// scope (its event id; for senders that send none, the body digest), as if no dedupe key
/// were configured, and a warning is logged. Retries of that delivery still coalesce; only
/// the event-level copies go unrecognised — there is nothing to recognise them by.
///
/// ```
/// use hookguard_core::{schemes::Procore, testing, DedupeKey, Verifier, Verdict, RequestHead, Scheme, SignParams};
/// let key: DedupeKey = "/resource_name,/resource_id,/event_type,/timestamp".parse().unwrap();
/// let v = Verifier::builder(Procore::new()).secret("Bearer t").dedupe_key(key).build().unwrap();
/// let body = br#"{"id":5982324300946918154,"ulid":"01EDPD2J6SBY1163N77H95GW09","event_type":"update","resource_name":"RFIs","resource_id":245510722,"timestamp":"2020-07-20T15:22:01.353581Z"}"#;
/// let signed = Procore::new().sign("Bearer t", body, &SignParams::new(0)).unwrap();
/// let (headers, uri) = testing::request_parts(signed, "/webhooks");
/// let verdict = v.verify(&RequestHead::new(&http::Method::POST, &uri, &headers), bytes::Bytes::from_static(body)).unwrap();
/// assert_eq!(
///     verdict.delivery().unwrap().dedupe_key(),
///     Some(r#"procore:fields:["RFIs",245510722,"update","2020-07-20T15:22:01.353581Z"]"#)
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DedupeKey {
    /// Each field of the key: its alternatives, in order (never empty).
    fields: Vec<Vec<Field>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    /// A JSON pointer (RFC 6901) into the body.
    Pointer(String),
    /// A request header, by its lower-case name.
    Header(String),
}

impl DedupeKey {
    /// An empty key; add fields with [`pointer`](Self::pointer) and [`header`](Self::header).
    ///
    /// ```
    /// use hookguard_core::DedupeKey;
    /// let key = DedupeKey::new().pointer("/resource_name").pointer("/resource_id").header("webhook-id");
    /// assert_eq!(key.to_string(), "/resource_name,/resource_id,header:webhook-id");
    /// assert_eq!(key, "/resource_name,/resource_id,header:webhook-id".parse().unwrap());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a JSON pointer into the body (RFC 6901: `/resource_id`, `/data/object/id`,
    /// `/items/0/id`; `~1` is `/` and `~0` is `~` in a name).
    ///
    /// ```
    /// let k = hookguard_core::DedupeKey::new().pointer("/resource_name").pointer("/resource_id");
    /// assert_eq!(k.to_string(), "/resource_name,/resource_id");
    /// ```
    pub fn pointer(mut self, pointer: impl Into<String>) -> Self {
        self.fields.push(vec![Field::Pointer(pointer.into())]);
        self
    }

    /// Adds an alternative to the last field: where the fields before it resolve to nothing,
    /// this pointer counts (on an empty key, the same as [`pointer`](Self::pointer)). The key
    /// holds the value found, wherever it was found.
    ///
    /// ```
    /// use hookguard_core::{schemes::Procore, testing, DedupeKey, Verifier, RequestHead, Scheme, SignParams};
    /// // Procore's v4 hooks name `resource_name` and `event_type` `resource_type` and `reason`.
    /// let key = DedupeKey::new()
    ///     .pointer("/resource_name").or_pointer("/resource_type")
    ///     .pointer("/resource_id")
    ///     .pointer("/event_type").or_pointer("/reason")
    ///     .pointer("/timestamp");
    /// assert_eq!(key.to_string(), "/resource_name|/resource_type,/resource_id,/event_type|/reason,/timestamp");
    /// let v = Verifier::builder(Procore::new()).secret("Bearer t").dedupe_key(key).build().unwrap();
    /// let body = br#"{"id":"01EDPD2J6SBY1163N77H95GW09","reason":"update","resource_type":"RFIs","resource_id":"245510722","timestamp":"2020-07-20T15:22:01Z"}"#;
    /// let signed = Procore::new().sign("Bearer t", body, &SignParams::new(0)).unwrap();
    /// let (headers, uri) = testing::request_parts(signed, "/webhooks");
    /// let verdict = v.verify(&RequestHead::new(&http::Method::POST, &uri, &headers), bytes::Bytes::from_static(body)).unwrap();
    /// assert_eq!(
    ///     verdict.delivery().unwrap().dedupe_key(),
    ///     Some(r#"procore:fields:["RFIs","245510722","update","2020-07-20T15:22:01Z"]"#)
    /// );
    /// ```
    pub fn or_pointer(self, pointer: impl Into<String>) -> Self {
        self.or(Field::Pointer(pointer.into()))
    }

    /// Adds a header as an alternative to the last field (see [`or_pointer`](Self::or_pointer);
    /// the same rules as [`header`](Self::header)).
    ///
    /// ```
    /// let k = hookguard_core::DedupeKey::new().pointer("/id").or_header("webhook-id");
    /// assert_eq!(k.to_string(), "/id|header:webhook-id");
    /// ```
    pub fn or_header(self, name: impl AsRef<str>) -> Self {
        self.or(Field::Header(name.as_ref().trim().to_ascii_lowercase()))
    }

    fn or(mut self, field: Field) -> Self {
        match self.fields.last_mut() {
            Some(last) => last.push(field),
            None => self.fields.push(vec![field]),
        }
        self
    }

    /// Adds a request header. It must be covered by the sender's signature
    /// ([`Scheme::signed_headers`](crate::Scheme::signed_headers)) or allowed explicitly with
    /// [`allow_unsigned_key_header`](crate::VerifierBuilder::allow_unsigned_key_header).
    ///
    /// ```
    /// let k = hookguard_core::DedupeKey::new().header("Webhook-Id");
    /// assert_eq!(k.to_string(), "header:webhook-id");
    /// ```
    pub fn header(mut self, name: impl AsRef<str>) -> Self {
        self.fields
            .push(vec![Field::Header(name.as_ref().trim().to_ascii_lowercase())]);
        self
    }

    /// Whether no field was added.
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, DedupeKey, Verifier};
    /// assert!(DedupeKey::new().is_empty());
    /// assert!(!DedupeKey::new().pointer("/id").is_empty());
    /// // An empty key identifies nothing: a verifier refuses it.
    /// assert!(Verifier::builder(GitHub::new()).secret("s").dedupe_key(DedupeKey::new()).build().is_err());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Checks the fields against `scheme` and prepares them.
    pub(crate) fn compile(&self, scheme: &dyn Scheme, allowed_unsigned: &[String]) -> Result<Compiled, ConfigError> {
        if self.fields.is_empty() {
            return Err(ConfigError::Invalid(
                "a dedupe key needs at least one JSON pointer or header",
            ));
        }
        if self.fields.iter().map(Vec::len).sum::<usize>() > MAX_DEDUPE_KEY_FIELDS {
            return Err(ConfigError::Invalid(
                "a dedupe key combines at most 16 fields, alternatives included",
            ));
        }
        let mut fields = Vec::with_capacity(self.fields.len());
        for alternatives in &self.fields {
            let mut compiled = Vec::with_capacity(alternatives.len());
            for f in alternatives {
                compiled.push(Self::compile_one(f, scheme, allowed_unsigned)?);
            }
            fields.push(compiled);
        }
        Ok(Compiled {
            fields,
            text: self.to_string(),
        })
    }

    fn compile_one(f: &Field, scheme: &dyn Scheme, allowed_unsigned: &[String]) -> Result<CompiledField, ConfigError> {
        Ok(match f {
            Field::Pointer(p) => CompiledField::Pointer(parse_pointer(p)?),
            Field::Header(h) => {
                let name = HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| ConfigError::Invalid("a dedupe key header name is not a valid header name"))?;
                // The key is stored, listed, logged and handed to `--exec`: never a credential
                // (the sender's own header, `Authorization`, `Cookie`, `X-Api-Key`, a copy of
                // the URL with its token…: every header the inbox never stores).
                if crate::inbox::may_hold_a_credential(&name, scheme.credential_header()) {
                    return Err(ConfigError::Invalid(
                        "a dedupe key cannot use a header that carries or may carry a credential (it would be \
                             stored and shown with every delivery)",
                    ));
                }
                let signed = scheme.signed_headers().contains(&name);
                if !signed && !allowed_unsigned.iter().any(|a| a == h) {
                    return Err(ConfigError::Invalid(
                        "a dedupe key header is not covered by the sender's signature: a replayed delivery \
                             with a forged value could make a genuine event look like a duplicate (allow it \
                             explicitly with .allow_unsigned_key_header(name) if you must)",
                    ));
                }
                CompiledField::Header(name)
            }
        })
    }
}

/// The syntax the CLI takes: comma-separated fields, each a JSON pointer (`/…`) or
/// `header:NAME`, alternatives of one field separated by `|`.
impl fmt::Display for DedupeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, alternatives) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            for (j, field) in alternatives.iter().enumerate() {
                if j > 0 {
                    f.write_str("|")?;
                }
                match field {
                    Field::Pointer(p) => f.write_str(p)?,
                    Field::Header(h) => write!(f, "header:{h}")?,
                }
            }
        }
        Ok(())
    }
}

/// A dedupe key list that could not be parsed.
///
/// ```
/// use hookguard_core::{DedupeKey, ParseDedupeKeyError};
/// let err: ParseDedupeKeyError = "/resource_id,resource_name".parse::<DedupeKey>().unwrap_err();
/// assert_eq!(err.to_string(), r#"dedupe key field "resource_name" is neither a JSON pointer (/name) nor header:NAME"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseDedupeKeyError(String);

impl fmt::Display for ParseDedupeKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dedupe key field {:?} is neither a JSON pointer (/name) nor header:NAME",
            self.0
        )
    }
}

impl std::error::Error for ParseDedupeKeyError {}

/// Parses `/resource_name|/resource_type,/resource_id,header:webhook-id` (spaces around fields
/// are ignored; `|` separates a field's alternatives; a pointer cannot contain a comma or a `|`
/// in this syntax — use [`DedupeKey::pointer`] for that).
///
/// ```
/// use hookguard_core::DedupeKey;
/// let k: DedupeKey = "/resource_name | /resource_type, /resource_id,header:webhook-id".parse().unwrap();
/// assert_eq!(
///     k,
///     DedupeKey::new().pointer("/resource_name").or_pointer("/resource_type").pointer("/resource_id").header("webhook-id")
/// );
/// assert!("resource_id".parse::<DedupeKey>().is_err());
/// assert!("/id|".parse::<DedupeKey>().is_err());
/// assert!("".parse::<DedupeKey>().is_err());
/// ```
impl FromStr for DedupeKey {
    type Err = ParseDedupeKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut key = DedupeKey::new();
        for field in s.split(',') {
            for (j, item) in field.split('|').map(str::trim).enumerate() {
                let one = if item.starts_with('/') {
                    Field::Pointer(item.to_owned())
                } else if let Some(h) = item.strip_prefix("header:").filter(|h| !h.trim().is_empty()) {
                    Field::Header(h.trim().to_ascii_lowercase())
                } else {
                    return Err(ParseDedupeKeyError(item.to_owned()));
                };
                if j == 0 {
                    key.fields.push(vec![one]);
                } else {
                    key = key.or(one);
                }
            }
        }
        Ok(key)
    }
}

/// A dedupe key checked against its scheme, ready to compute keys.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    /// Each field's alternatives, in order.
    fields: Vec<Vec<CompiledField>>,
    /// The configured fields, for logs.
    text: String,
}

#[derive(Debug, Clone)]
enum CompiledField {
    Pointer(Vec<String>),
    Header(HeaderName),
}

fn parse_pointer(p: &str) -> Result<Vec<String>, ConfigError> {
    let Some(rest) = p.strip_prefix('/') else {
        return Err(ConfigError::Invalid(
            "a dedupe key JSON pointer must start with '/' (e.g. /resource_id)",
        ));
    };
    rest.split('/')
        .map(|token| {
            // RFC 6901: `~` only in `~0` (`~`) and `~1` (`/`).
            let mut out = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                match (c, c == '~') {
                    (_, false) => out.push(c),
                    (_, true) => match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => {
                            return Err(ConfigError::Invalid(
                                "a dedupe key JSON pointer has a `~` not followed by 0 or 1",
                            ))
                        }
                    },
                }
            }
            Ok(out)
        })
        .collect()
}

/// One level of a JSON document: its members or elements stay raw (exact text, unparsed).
enum Level<'a> {
    Object(HashMap<String, &'a RawValue>),
    Array(Vec<&'a RawValue>),
    Scalar,
}

impl<'a> Level<'a> {
    fn of(raw: &'a RawValue) -> Option<Self> {
        let text = raw.get();
        Some(match text.as_bytes().first()? {
            b'{' => Level::Object(serde_json::from_str(text).ok()?),
            b'[' => Level::Array(serde_json::from_str(text).ok()?),
            _ => Level::Scalar,
        })
    }

    fn child(&self, token: &str) -> Option<&'a RawValue> {
        match self {
            Level::Object(m) => m.get(token).copied(),
            // RFC 6901: an index is `0` or digits without a leading zero.
            Level::Array(v)
                if token == "0" || (!token.starts_with('0') && token.bytes().all(|b| b.is_ascii_digit())) =>
            {
                token.parse::<usize>().ok().and_then(|i| v.get(i).copied())
            }
            _ => None,
        }
    }
}

/// Each nested level is parsed again from its own text: the bytes parsed for one key are
/// bounded by a multiple of the body's size plus a floor that any small nested value fits in
/// (beyond it: no key, the sender's default is kept).
const PARSE_BUDGET_PER_BODY_BYTE: usize = 4;
const PARSE_BUDGET_FLOOR: usize = 64 * 1024;

/// Takes `text`'s length from the budget; `None` once it is spent.
fn spend(budget: &mut usize, text: &str) -> Option<()> {
    *budget = budget.checked_sub(text.len())?;
    Some(())
}

/// How deep [`canonical`] follows nested objects and arrays. Each level is a recursion and
/// parses the rest of the value again, so an unbounded depth would let one deeply nested body
/// overflow the stack. A deeper value has no key: the sender's default key is kept.
const MAX_DEPTH: usize = 64;

/// Canonical JSON of a value: strings decoded and re-encoded, numbers, `true`, `false` and
/// `null` exactly as sent, objects with sorted keys, no whitespace. `None` beyond
/// [`MAX_DEPTH`] levels of nesting.
fn canonical(raw: &RawValue, out: &mut String, depth: usize, budget: &mut usize) -> Option<()> {
    if depth > MAX_DEPTH {
        return None;
    }
    let text = raw.get();
    spend(budget, text)?;
    match text.as_bytes().first()? {
        b'"' => {
            let s: String = serde_json::from_str(text).ok()?;
            out.push_str(&serde_json::to_string(&s).ok()?);
        }
        b'{' => {
            let m: HashMap<String, &RawValue> = serde_json::from_str(text).ok()?;
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).ok()?);
                out.push(':');
                canonical(m[k], out, depth + 1, budget)?;
            }
            out.push('}');
        }
        b'[' => {
            let v: Vec<&RawValue> = serde_json::from_str(text).ok()?;
            out.push('[');
            for (i, e) in v.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(e, out, depth + 1, budget)?;
            }
            out.push(']');
        }
        _ => out.push_str(text.trim()),
    }
    Some(())
}

impl Compiled {
    /// The configured fields, as given (`/a,/b,header:x`).
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// The key of one delivery (without the provider prefix), or `None` when a field is
    /// missing (the caller keeps the sender's default key).
    pub(crate) fn compute(&self, scheme: &dyn crate::Scheme, head: &RequestHead<'_>, body: &[u8]) -> Option<String> {
        let needs_body = self
            .fields
            .iter()
            .flatten()
            .any(|f| matches!(f, CompiledField::Pointer(_)));
        // A body that is not JSON has no pointer's value (a header may still be an alternative).
        let root: Option<&RawValue> = if needs_body {
            serde_json::from_slice(crate::json_fast::without_bom(body)).ok()
        } else {
            None
        };
        // The top level is parsed once for all pointers; deeper levels only along each path.
        let top = match root {
            Some(r) => Level::of(r),
            None => None,
        };
        let mut budget = body
            .len()
            .saturating_mul(PARSE_BUDGET_PER_BODY_BYTE)
            .saturating_add(PARSE_BUDGET_FLOOR);
        let mut out = String::from("[");
        for (i, alternatives) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            // The first alternative present counts. One present but unreadable (too deep, over
            // the parse budget, a header that is not visible ASCII) leaves the delivery its
            // default key, as a single field would: falling through to the next alternative
            // would give two different events that share the next one the same key (a review).
            let mut found = false;
            for f in alternatives {
                match value(f, scheme, head, top.as_ref(), &mut out, &mut budget) {
                    Lookup::Found => {
                        found = true;
                        break;
                    }
                    Lookup::Absent => continue,
                    Lookup::Unreadable => return None,
                }
            }
            if !found {
                return None;
            }
        }
        out.push(']');
        if out.len() > MAX_KEY_LEN {
            use sha2::{Digest, Sha256};
            let digest = Sha256::digest(out.as_bytes());
            return Some(format!("fields:sha256:{}", crate::wire::hex_encode(&digest[..16])));
        }
        Some(format!("fields:{out}"))
    }
}

/// What [`value`] found of one field.
enum Lookup {
    /// Written to the key.
    Found,
    /// Not in the delivery (nothing written): the next alternative may be.
    Absent,
    /// There, but it cannot be read into a key (too deep, over the parse budget, not visible
    /// ASCII); part of it may have been written.
    Unreadable,
}

/// Writes one field's value to `out`.
fn value(
    f: &CompiledField,
    scheme: &dyn crate::Scheme,
    head: &RequestHead<'_>,
    top: Option<&Level<'_>>,
    out: &mut String,
    budget: &mut usize,
) -> Lookup {
    match f {
        CompiledField::Header(name) => {
            let Some(v) = scheme.key_header(head, name) else {
                return Lookup::Absent;
            };
            // Not lossy: two different byte strings must not share a key (a value that is not
            // visible ASCII has no key; the sender's default is kept).
            match v.to_str().ok().and_then(|v| serde_json::to_string(v).ok()) {
                Some(json) => out.push_str(&json),
                None => return Lookup::Unreadable,
            }
        }
        CompiledField::Pointer(tokens) => {
            // (A body that is not JSON has none of its pointers.)
            let Some(mut cur) = tokens.split_first().and_then(|(first, _)| top?.child(first)) else {
                return Lookup::Absent;
            };
            for t in &tokens[1..] {
                if spend(budget, cur.get()).is_none() {
                    return Lookup::Unreadable;
                }
                let Some(level) = Level::of(cur) else {
                    return Lookup::Unreadable;
                };
                match level.child(t) {
                    Some(next) => cur = next,
                    None => return Lookup::Absent,
                }
            }
            if canonical(cur, out, 0, budget).is_none() {
                return Lookup::Unreadable;
            }
        }
    }
    Lookup::Found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schemes::{BuildWorkPro, Procore, StandardWebhooks};

    fn key(spec: &str, body: &[u8]) -> Option<String> {
        let c = spec
            .parse::<DedupeKey>()
            .unwrap()
            .compile(&Procore::new(), &[])
            .unwrap();
        let (m, u, h) = (http::Method::POST, http::Uri::from_static("/"), http::HeaderMap::new());
        c.compute(&crate::schemes::GitHub::new(), &RequestHead::new(&m, &u, &h), body)
    }

    #[test]
    fn deeply_nested_values_have_no_key_and_do_not_overflow_the_stack() {
        let nested = |n: usize| format!(r#"{{"id":"x","data":{}7{}}}"#, "[".repeat(n), "]".repeat(n));
        assert_eq!(key("/data", nested(3).as_bytes()).unwrap(), "fields:[[[[7]]]]");
        assert!(key("/data", nested(MAX_DEPTH).as_bytes()).is_some());
        assert_eq!(key("/data", nested(MAX_DEPTH + 1).as_bytes()), None);
        // An authenticated sender's absurd body: no key (the default is kept), no crash.
        assert_eq!(key("/data", nested(100_000).as_bytes()), None);
        let objects = format!(r#"{{"data":{}1{}}}"#, r#"{"a":"#.repeat(100_000), "}".repeat(100_000));
        assert_eq!(key("/data", objects.as_bytes()), None);
        // Within the depth bound, a large leaf would be parsed once per level: the parse budget
        // (a few times the body) ends that; a small leaf at the same depth still has a key.
        let big = format!(
            r#"{{"id":1,"data":{}"{}"{}}}"#,
            "[".repeat(60),
            "x".repeat(100_000),
            "]".repeat(60)
        );
        assert_eq!(key("/data", big.as_bytes()), None);
        assert!(key("/data", nested(60).as_bytes()).is_some());
    }

    /// Two different header byte strings never share a key: a value that is not visible
    /// ASCII has none (the sender's default key is kept).
    #[test]
    fn header_values_are_not_decoded_lossily() {
        let c = "header:x-hop-id"
            .parse::<DedupeKey>()
            .unwrap()
            .compile(&Procore::new(), &["x-hop-id".to_owned()])
            .unwrap();
        let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
        let with = |v: &[u8]| {
            let mut h = http::HeaderMap::new();
            h.insert("x-hop-id", http::HeaderValue::from_bytes(v).unwrap());
            c.compute(&crate::schemes::GitHub::new(), &RequestHead::new(&m, &u, &h), b"{}")
        };
        assert_eq!(with(b"hop-1").unwrap(), r#"fields:["hop-1"]"#);
        assert_eq!(with(b"\xff1"), None);
        assert_eq!(with(b"\xfe1"), None);
    }

    #[test]
    fn values_are_exact_and_canonical() {
        let body = br#"{"id":5982324300946918154,"big":123456789012345678901234567890,"f":1.50,"s":"a\u0041\"","n":null,"t":true,
            "o":{"b":1,"a":[2, "x"]},"a":[{"id":"first"},{"id":"second"}],"we/ird":{"ti~lde":7},"":"empty"}"#;
        assert_eq!(key("/id", body).unwrap(), "fields:[5982324300946918154]");
        // Digits beyond any float's precision stay digits (two such ids never collide).
        assert_eq!(key("/big", body).unwrap(), "fields:[123456789012345678901234567890]");
        assert_eq!(key("/f,/n,/t", body).unwrap(), "fields:[1.50,null,true]");
        assert_eq!(key("/s", body).unwrap(), r#"fields:["aA\""]"#);
        assert_eq!(key("/o", body).unwrap(), r#"fields:[{"a":[2,"x"],"b":1}]"#);
        assert_eq!(key("/a/1/id", body).unwrap(), r#"fields:["second"]"#);
        assert_eq!(key("/we~1ird/ti~0lde", body).unwrap(), "fields:[7]");
        assert_eq!(key("/", body).unwrap(), r#"fields:["empty"]"#);
        // Missing: the caller falls back, never rejects.
        for missing in ["/nope", "/a/2/id", "/a/01/id", "/a/x", "/id/deeper", "/s/0"] {
            assert_eq!(key(missing, body), None, "{missing}");
        }
        assert_eq!(key("/id", b"not json"), None);
        assert_eq!(key("/id", b"\xff\xfe"), None);
        // Long keys become a digest.
        let long = format!(r#"{{"x":"{}"}}"#, "y".repeat(300));
        assert!(key("/x", long.as_bytes()).unwrap().starts_with("fields:sha256:"));
    }

    /// A field's alternatives: the first present counts, whichever position it is in; a field
    /// none of whose alternatives is present leaves no key; one present but unreadable (too
    /// deep) leaves no key either, rather than falling through to the next (two events sharing
    /// the next one would share a key).
    #[test]
    fn the_first_alternative_present_counts() {
        let spec = "/resource_name|/resource_type,/resource_id,/event_type|/reason";
        let v2 = br#"{"resource_name":"RFIs","resource_id":245510722,"event_type":"update"}"#;
        let v4 = br#"{"resource_type":"RFIs","resource_id":"245510722","reason":"update"}"#;
        assert_eq!(key(spec, v2).unwrap(), r#"fields:["RFIs",245510722,"update"]"#);
        assert_eq!(key(spec, v4).unwrap(), r#"fields:["RFIs","245510722","update"]"#);
        // Both present: the first listed, not the last.
        let both = br#"{"resource_name":"A","resource_type":"B","resource_id":1,"event_type":"x","reason":"y"}"#;
        assert_eq!(key(spec, both).unwrap(), r#"fields:["A",1,"x"]"#);
        // `null` is present.
        assert_eq!(key("/a|/b", br#"{"a":null,"b":2}"#).unwrap(), "fields:[null]");
        assert_eq!(key(spec, br#"{"resource_type":"RFIs","resource_id":1}"#), None);
        let deep = format!(
            r#"{{"a":{}1{},"b":"ok"}}"#,
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(key("/a|/b", deep.as_bytes()), None);
        assert_eq!(key("/b|/a", deep.as_bytes()).unwrap(), r#"fields:["ok"]"#);
        // A header alternative serves a body that is not JSON.
        let c = "/id|header:x-hop-id"
            .parse::<DedupeKey>()
            .unwrap()
            .compile(&Procore::new(), &["x-hop-id".to_owned()])
            .unwrap();
        let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
        let mut h = http::HeaderMap::new();
        h.insert("x-hop-id", http::HeaderValue::from_static("hop-1"));
        let head = RequestHead::new(&m, &u, &h);
        let gh = crate::schemes::GitHub::new();
        assert_eq!(c.compute(&gh, &head, b"not json").unwrap(), r#"fields:["hop-1"]"#);
        assert_eq!(c.compute(&gh, &head, br#"{"id":7}"#).unwrap(), "fields:[7]");
        // Alternatives count toward the bound on fields; every alternative is checked.
        let many = (0..8).fold(DedupeKey::new(), |k, i| {
            k.pointer(format!("/f{i}")).or_pointer(format!("/g{i}"))
        });
        assert!(many.compile(&Procore::new(), &[]).is_ok());
        assert!(many.or_pointer("/h").compile(&Procore::new(), &[]).is_err());
        let unsigned = DedupeKey::new().pointer("/id").or_header("buildworkpro-event-id");
        assert!(unsigned.compile(&BuildWorkPro::new(), &[]).is_err());
        assert!(DedupeKey::new().or_pointer("/a").compile(&Procore::new(), &[]).is_ok());
        for bad in ["/a|", "|/a", "/a||/b", "/a|b", "/a|header:"] {
            assert!(bad.parse::<DedupeKey>().is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_must_be_signed_or_allowed() {
        let k = DedupeKey::new().header("webhook-id").pointer("/type");
        assert!(k.compile(&StandardWebhooks::new(), &[]).is_ok());
        let k = DedupeKey::new().header("BuildWorkPro-Event-Id");
        assert!(
            matches!(k.compile(&BuildWorkPro::new(), &[]), Err(ConfigError::Invalid(m)) if m.contains("not covered"))
        );
        assert!(k
            .compile(&BuildWorkPro::new(), &["buildworkpro-event-id".into()])
            .is_ok());
        assert!(DedupeKey::new().compile(&Procore::new(), &[]).is_err());
        assert!(DedupeKey::new().pointer("id").compile(&Procore::new(), &[]).is_err());
        assert!(DedupeKey::new().pointer("/a~2").compile(&Procore::new(), &[]).is_err());
        assert!(DedupeKey::new()
            .header("bad header")
            .compile(&Procore::new(), &["bad header".into()])
            .is_err());
        let many = (0..17).fold(DedupeKey::new(), |k, i| k.pointer(format!("/f{i}")));
        assert!(many.compile(&Procore::new(), &[]).is_err());
        // The credential's header, even explicitly allowed, would put the secret in the key.
        let cred = DedupeKey::new().header("authorization");
        assert!(matches!(
            cred.compile(&Procore::new(), &["authorization".into()]),
            Err(ConfigError::Invalid(m)) if m.contains("credential")
        ));
        // Nor any header the inbox never stores because it may hold one, allowed or not (the key
        // is stored, logged and handed to `--exec`); a header merely named like a delivery's is
        // fine.
        for name in [
            "cookie",
            "proxy-authorization",
            "x-api-key",
            "x-auth-token",
            "referer",
            "x-original-uri",
        ] {
            let k = DedupeKey::new().header(name);
            assert!(
                matches!(k.compile(&BuildWorkPro::new(), &[name.into()]), Err(ConfigError::Invalid(m)) if m.contains("credential")),
                "{name}"
            );
        }
        let k = DedupeKey::new().header("x-request-id");
        assert!(k.compile(&BuildWorkPro::new(), &["x-request-id".into()]).is_ok());
    }

    proptest::proptest! {
        /// Any text parses or is refused without a panic; a parsed key prints as text that
        /// parses back to it (the CLI's `--dedupe-key` and logs), and compiling it against a
        /// scheme never panics.
        #[test]
        fn parsing_round_trips_and_never_panics(
            spec in "((/[a-z~0-9 ]{0,6}){1,3}|header:[ a-zA-Z-]{0,8}|[a-z: ]{0,5})([,|] ?((/[a-z~01]{0,4}){1,2}|header:[a-z-]{1,8}|[ -~]{0,3})){0,4}",
        ) {
            if let Ok(key) = spec.parse::<DedupeKey>() {
                proptest::prop_assert_eq!(key.to_string().parse::<DedupeKey>(), Ok(key.clone()), "{}", spec);
                let _ = key.compile(&StandardWebhooks::new(), &["x-a".into()]);
            }
        }
    }
}
