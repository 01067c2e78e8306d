//! Challenge echo (HCSS `?challenge=`, Microsoft Graph `validationToken`, Slack
//! `url_verification`) and query-string parsing.
//!
//! A challenge value is reflected to whoever asks, so it is bounded in length and answered as
//! `text/plain` with `X-Content-Type-Options: nosniff`: a hostile value can never become HTML
//! or script in a browser.
//!
//! ```
//! use hookguard_core::challenge::query_param;
//! // HCSS's `GET ?challenge=…`: the value is read from the query and echoed as plain text.
//! let uri: http::Uri = "/hooks?challenge=abc%2B1".parse().unwrap();
//! let value = query_param(&uri, "challenge", 1024).unwrap().unwrap();
//! let answer = hookguard_core::ChallengeAnswer::new(value).into_response();
//! assert_eq!(answer.body().as_ref(), b"abc+1");
//! assert_eq!(answer.headers()["x-content-type-options"], "nosniff");
//! ```

use bytes::Bytes;
use http::{Method, Uri};

use crate::Rejection;

/// How a request must be echoed back to prove the endpoint is ours.
///
/// ```
/// use hookguard_core::ChallengeRule;
/// let rule = ChallengeRule::query(http::Method::GET, "challenge");
/// assert_eq!(rule.param, "challenge");
/// assert!(rule.plus_is_space);
/// assert!(!rule.plus_literal().plus_is_space);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChallengeRule {
    /// The method the challenge arrives with.
    pub method: Method,
    /// The query parameter that carries the value.
    pub param: &'static str,
    /// Whether a raw `+` in the value is a space (form encoding, as Microsoft Graph sends its
    /// `validationToken`) or stays `+` (a base64 value put into the URL as it is). `%2B` is
    /// `+` either way.
    pub plus_is_space: bool,
}

impl ChallengeRule {
    /// A challenge carried in query parameter `param` of a `method` request, form-decoded
    /// (`+` is a space; see [`plus_literal`](Self::plus_literal)).
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, ChallengeRule, Precheck, RequestHead, Verifier};
    /// // Microsoft Graph's subscription check: `POST ?validationToken=…`, echoed as text.
    /// let rule = ChallengeRule::query(http::Method::POST, "validationToken");
    /// let v = Verifier::builder(GitHub::new()).secret("s").challenge(rule).build().unwrap();
    /// let (m, h, u) = (http::Method::POST, http::HeaderMap::new(), http::Uri::from_static("/hooks?validationToken=a+b%2Bc"));
    /// match v.precheck(&RequestHead::new(&m, &u, &h)).unwrap() {
    ///     Precheck::Challenge(a) => assert_eq!(a.value().as_ref(), b"a b+c"),
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn query(method: Method, param: &'static str) -> Self {
        Self {
            method,
            param,
            plus_is_space: true,
        }
    }

    /// A raw `+` in the value stays `+` (only percent-escapes are decoded): for a sender that
    /// puts a value holding `+` (base64) into the URL without encoding it. The echo must be
    /// the exact value, so decoding that `+` as a space fails the sender's check (its
    /// subscription is never created).
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, ChallengeRule, Precheck, RequestHead, Verifier};
    /// let v = Verifier::builder(GitHub::new())
    ///     .secret("s")
    ///     .challenge(ChallengeRule::query(http::Method::GET, "token").plus_literal())
    ///     .build()
    ///     .unwrap();
    /// let (m, h) = (http::Method::GET, http::HeaderMap::new());
    /// let u = http::Uri::from_static("/hooks?token=ab+c/d%3D%3D");
    /// match v.precheck(&RequestHead::new(&m, &u, &h)).unwrap() {
    ///     Precheck::Challenge(a) => assert_eq!(a.value().as_ref(), b"ab+c/d=="),
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn plus_literal(mut self) -> Self {
        self.plus_is_space = false;
        self
    }

    /// The rule's value in `uri`, decoded as the rule says (see [`query_param`]).
    pub(crate) fn value(&self, uri: &Uri, max_raw: usize) -> Result<Option<Vec<u8>>, Rejection> {
        find(uri, self.param, max_raw, self.plus_is_space, false)
    }
}

/// The exact bytes to answer a challenge with.
///
/// ```
/// let a = hookguard_core::ChallengeAnswer::new("abc");
/// let resp = a.into_response();
/// assert_eq!(resp.status(), 200);
/// assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
/// assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
/// assert_eq!(resp.body().as_ref(), b"abc");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeAnswer(Bytes);

impl ChallengeAnswer {
    /// An answer with exactly `value` as the body.
    ///
    /// ```
    /// use hookguard_core::ChallengeAnswer;
    /// // Slack's `url_verification`: the `challenge` field of the body, echoed.
    /// let a = ChallengeAnswer::new(String::from("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"));
    /// assert_eq!(a, ChallengeAnswer::new("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"));
    /// assert_eq!(a.into_response().body().len(), 52);
    /// ```
    pub fn new(value: impl Into<Bytes>) -> Self {
        Self(value.into())
    }

    /// The value echoed.
    ///
    /// ```
    /// use hookguard_core::{schemes::Hcss, Precheck, RequestHead, Verifier};
    /// let v = Verifier::builder(Hcss::new()).secret("tok").build().unwrap();
    /// let (m, h, u) = (http::Method::GET, http::HeaderMap::new(), http::Uri::from_static("/hooks?challenge=abc123"));
    /// let Ok(Precheck::Challenge(answer)) = v.precheck(&RequestHead::new(&m, &u, &h)) else { panic!() };
    /// assert_eq!(answer.value().as_ref(), b"abc123");
    /// ```
    pub fn value(&self) -> &Bytes {
        &self.0
    }

    /// `200`, `text/plain`, `nosniff`, `Cache-Control: no-store`, the value as the whole body.
    /// The charset is named only for a value that is UTF-8 (a percent-encoded challenge may
    /// decode to any bytes, echoed as they are).
    ///
    /// ```
    /// let resp = hookguard_core::ChallengeAnswer::new(&b"\xff\xfe"[..]).into_response();
    /// assert_eq!(resp.headers()["content-type"], "text/plain");
    /// assert_eq!(resp.body().as_ref(), b"\xff\xfe");
    /// ```
    pub fn into_response(self) -> http::Response<Bytes> {
        let utf8 = std::str::from_utf8(&self.0).is_ok();
        let mut r = http::Response::new(self.0);
        let h = r.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(if utf8 {
                "text/plain; charset=utf-8"
            } else {
                "text/plain"
            }),
        );
        h.insert(
            http::header::X_CONTENT_TYPE_OPTIONS,
            http::HeaderValue::from_static("nosniff"),
        );
        h.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
        r
    }
}

/// Checks a challenge value against the bound.
pub(crate) fn bounded(value: Vec<u8>, max: usize) -> Result<ChallengeAnswer, Rejection> {
    if value.is_empty() {
        return Err(Rejection::ChallengeMissing);
    }
    if value.len() > max {
        return Err(Rejection::ChallengeTooLong { limit: max });
    }
    Ok(ChallengeAnswer::new(value))
}

/// The first value of query parameter `name`, percent-decoded (`+` is a space, as in
/// `application/x-www-form-urlencoded`). `Ok(None)` when absent; `Err` when the raw value is
/// longer than `max_raw` (checked before decoding, so a huge query costs nothing).
///
/// Pairs are separated by `&`, and also by a second `?`: a sender that appends
/// `?challenge=…` naively to a callback URL that already has a query (`…?token=T`) produces
/// `token=T?challenge=…`, and the challenge must still be found.
///
/// ```
/// let uri = http::Uri::from_static("/h?a=1&challenge=x%2By+z");
/// assert_eq!(hookguard_core::challenge::query_param(&uri, "challenge", 1024).unwrap().unwrap(), b"x+y z");
/// assert_eq!(hookguard_core::challenge::query_param(&uri, "missing", 1024).unwrap(), None);
/// let naive = http::Uri::from_static("/h?token=T?challenge=abc");
/// assert_eq!(hookguard_core::challenge::query_param(&naive, "challenge", 1024).unwrap().unwrap(), b"abc");
/// ```
pub fn query_param(uri: &Uri, name: &str, max_raw: usize) -> Result<Option<Vec<u8>>, Rejection> {
    find(uri, name, max_raw, true, false)
}

/// Like [`query_param`] for a secret token in the URL: percent-decoded, but `+` stays `+`.
/// A base64 token registered raw (`?token=ab+c/d==`) and its percent-encoded form
/// (`?token=ab%2Bc%2Fd%3D%3D`) are the same token; form decoding would turn the raw `+` into
/// a space and refuse every delivery.
///
/// A token given twice is refused ([`Rejection::Unauthorized`]), as a doubled credential
/// header is: which of the two counts is ambiguous (a proxy or a log reading the other one
/// would disagree with the receiver), and no sender sends two.
///
/// ```
/// use hookguard_core::challenge::query_token;
/// let raw = http::Uri::from_static("/h?token=ab+c/d==");
/// let enc = http::Uri::from_static("/h?token=ab%2Bc%2Fd%3D%3D");
/// assert_eq!(query_token(&raw, "token", 1024).unwrap().unwrap(), b"ab+c/d==");
/// assert_eq!(query_token(&enc, "token", 1024).unwrap().unwrap(), b"ab+c/d==");
/// let twice = http::Uri::from_static("/h?token=good&token=other");
/// assert_eq!(query_token(&twice, "token", 1024), Err(hookguard_core::Rejection::Unauthorized));
/// ```
pub fn query_token(uri: &Uri, name: &str, max_raw: usize) -> Result<Option<Vec<u8>>, Rejection> {
    find(uri, name, max_raw, false, true)
}

/// The first value of `name`; with `once`, the whole query is read and a second value is
/// refused ([`Rejection::Unauthorized`]) before the first's length is judged.
fn find(uri: &Uri, name: &str, max_raw: usize, plus_is_space: bool, once: bool) -> Result<Option<Vec<u8>>, Rejection> {
    let Some(q) = uri.query() else { return Ok(None) };
    let mut found = None;
    for pair in q.split(['&', '?']) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != name {
            continue;
        }
        if found.is_some() {
            return Err(Rejection::Unauthorized);
        }
        found = Some(v);
        if !once {
            break;
        }
    }
    let Some(v) = found else { return Ok(None) };
    if v.len() > max_raw.saturating_mul(3) {
        return Err(Rejection::ChallengeTooLong { limit: max_raw });
    }
    Ok(Some(percent_decode(v.as_bytes(), plus_is_space)))
}

/// `v` percent-encoded for a URL's query: every byte but the unreserved ones (letters,
/// digits, `-`, `.`, `_`, `~`) as `%XX` — what a sender does with a URL token, and what
/// [`query_token`] undoes.
///
/// ```
/// use hookguard_core::challenge::{percent_encode, query_token};
/// assert_eq!(percent_encode("a b/c~+"), "a%20b%2Fc~%2B");
/// let uri: http::Uri = format!("/h?token={}", percent_encode("a&b=c d")).parse().unwrap();
/// assert_eq!(query_token(&uri, "token", 64).unwrap().unwrap(), b"a&b=c d");
/// ```
pub fn percent_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `s` with its `%XX` escapes decoded (and `+` as a space when `plus_is_space`); malformed
/// escapes stay as they are.
pub(crate) fn percent_decode(s: &[u8], plus_is_space: bool) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < s.len() => match (hex(s[i + 1]), hex(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes() {
        assert_eq!(percent_decode(b"a%41%4a", true), b"aAJ");
        assert_eq!(percent_decode(b"%", true), b"%");
        assert_eq!(percent_decode(b"%4", true), b"%4");
        assert_eq!(percent_decode(b"%zz", true), b"%zz");
        assert_eq!(percent_decode(b"%3Cscript%3E", true), b"<script>");
        assert_eq!(percent_decode(b"%ff", true), [0xff]);
    }

    #[test]
    fn tokens_keep_plus_and_challenges_survive_a_naive_append() {
        assert_eq!(percent_decode(b"a+b", false), b"a+b");
        assert_eq!(percent_decode(b"a+b", true), b"a b");
        let uri = Uri::from_static("/h?token=ab+c/d==?challenge=x%20y");
        assert_eq!(query_token(&uri, "token", 64).unwrap().unwrap(), b"ab+c/d==");
        assert_eq!(query_param(&uri, "challenge", 64).unwrap().unwrap(), b"x y");
    }

    #[test]
    fn bounds() {
        assert_eq!(bounded(vec![], 4), Err(Rejection::ChallengeMissing));
        assert_eq!(bounded(vec![b'a'; 5], 4), Err(Rejection::ChallengeTooLong { limit: 4 }));
        assert!(bounded(vec![b'a'; 4], 4).is_ok());
    }

    proptest! {
        #[test]
        fn query_parsing_never_panics(q in "[a-z%=&+0-9A-F]{0,64}") {
            let uri: Uri = format!("/h?{q}").parse().unwrap();
            let _ = query_param(&uri, "challenge", 16);
        }

        #[test]
        fn round_trips_any_bytes(v in proptest::collection::vec(any::<u8>(), 1..64)) {
            let enc: String = v.iter().map(|b| format!("%{b:02X}")).collect();
            let uri: Uri = format!("/h?challenge={enc}").parse().unwrap();
            prop_assert_eq!(query_param(&uri, "challenge", 64).unwrap().unwrap(), v);
        }
    }
}
