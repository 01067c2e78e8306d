//! Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<b64> …`
//! (HMAC-SHA256) and `v1a,<b64>` (Ed25519, with the `ed25519` feature).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::json_struct::json_struct;
use crate::profile::{q, rfc3339, secs, HeaderId, Permanent, RetrySchedule, SenderProfile};
use crate::wire::{header, parse_timestamp, Candidates};
use crate::{
    Authenticated, ConfigError, Context, Described, Key, Provider, Rejection, RequestHead, Scheme, SignParams, Signed,
};

/// The Standard Webhooks scheme: the signed content is `"{id}.{timestamp}.{body}"`; the header
/// is a space-separated list of `v1,<base64 HMAC-SHA256>` and `v1a,<base64 Ed25519>` entries
/// (any may match); ±300 s; deduplicated on `webhook-id`.
///
/// **Svix's header names.** Svix, the reference sender, sends `svix-id`, `svix-timestamp` and
/// `svix-signature` unless its customer has paid for the `webhook-` prefix (so do the APIs
/// built on it: Clerk, Resend and others), and its own libraries accept both. A request that
/// carries none of the three `webhook-` headers is read under the `svix-` names: the same
/// signed content, the same checks, deduplicated on `svix-id`. A request with any `webhook-`
/// header is read under those names only (never a mix of the two).
///
/// What a configured secret becomes (several may be configured, for rotation):
///
/// | secret | key | checks |
/// |---|---|---|
/// | `whsec_` + base64 (or bare base64) | HMAC-SHA256 over the **decoded** bytes | `v1` entries |
/// | `whpk_` + base64 of 32 bytes | Ed25519 public key | `v1a` entries (strict verification) |
/// | `whsk_` + base64 of the 32-byte seed (or 64 bytes seed ‖ public) | its public key only | `v1a` entries |
///
/// The `whpk_` and `whsk_` rows need hookguard-core's `ed25519` feature (off by default: it
/// brings the Ed25519 implementation into the build). Without it, such a secret is refused when
/// the verifier is built ([`ConfigError::InvalidSecret`], "v1a keys need hookguard-core's
/// \`ed25519\` feature"), and a `v1a` entry is never a candidate: it is skipped like an entry
/// of an unknown version (a header of `v1a` entries only is `malformed_signature`), and only
/// counts towards [`max_signatures`](crate::VerifierBuilder::max_signatures).
///
/// A `v1` entry is only ever checked with HMAC keys and a `v1a` entry only with Ed25519 keys.
/// Signing ([`Scheme::sign`]) with a `whsec_` secret produces a `v1` entry, with a `whsk_`
/// secret a `v1a` entry; a `whpk_` public key cannot sign. Entries of both kinds count
/// towards [`max_signatures`](crate::VerifierBuilder::max_signatures); besides, a header may
/// carry at most [`MAX_V1A_ENTRIES`](Self::MAX_V1A_ENTRIES) well-formed `v1a` entries
/// (`too_many_signatures` otherwise): each costs a strict Ed25519 verification *and* a SHA-512
/// of the body per configured public key (an HMAC entry costs a 32-byte comparison), so a
/// forged header full of them must not multiply the work: entries × public keys is bounded
/// by [`MAX_V1A_CHECKS`](Self::MAX_V1A_CHECKS) as well.
///
/// ```
/// use hookguard_core::{schemes::StandardWebhooks, Scheme, SignParams};
/// // Known answer from the Standard Webhooks reference libraries.
/// let s = StandardWebhooks::new()
///     .sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", br#"{"test": 2432232314}"#,
///           &SignParams::new(1614265330).id("msg_p5jXN8AQM9LWM0D4loKWxJek"))
///     .unwrap();
/// let sig = s.headers.iter().find(|(n, _)| n == "webhook-signature").unwrap();
/// assert_eq!(sig.1, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
/// // The same message signed with Ed25519 (`whsk_` seed): a `v1a` entry.
/// # #[cfg(feature = "ed25519")] {
/// let s = StandardWebhooks::new()
///     .sign("whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=", br#"{"test": 2432232314}"#,
///           &SignParams::new(1614265330).id("msg_p5jXN8AQM9LWM0D4loKWxJek"))
///     .unwrap();
/// let sig = s.headers.iter().find(|(n, _)| n == "webhook-signature").unwrap();
/// assert_eq!(sig.1, "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag==");
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct StandardWebhooks {
    _priv: (),
}

static ID: http::HeaderName = http::HeaderName::from_static(StandardWebhooks::ID_HEADER);
static TIMESTAMP: http::HeaderName = http::HeaderName::from_static(StandardWebhooks::TIMESTAMP_HEADER);
static SIGNATURE: http::HeaderName = http::HeaderName::from_static(StandardWebhooks::SIGNATURE_HEADER);
static SVIX_ID: http::HeaderName = http::HeaderName::from_static(StandardWebhooks::SVIX_ID_HEADER);
static SVIX_TIMESTAMP: http::HeaderName = http::HeaderName::from_static("svix-timestamp");
static SVIX_SIGNATURE: http::HeaderName = http::HeaderName::from_static("svix-signature");
/// The specification's names, then Svix's (see [`StandardWebhooks`]'s "Svix's header names").
static SPEC_NAMES: [&http::HeaderName; 3] = [&ID, &TIMESTAMP, &SIGNATURE];
static SVIX_NAMES: [&http::HeaderName; 3] = [&SVIX_ID, &SVIX_TIMESTAMP, &SVIX_SIGNATURE];
/// The headers the signature covers (the signed content is `"{id}.{timestamp}.{body}"`),
/// under either set of names: a key field reads the authenticated value under both
/// ([`Scheme::key_header`]).
static SIGNED_HEADERS: [http::HeaderName; 4] = [
    http::HeaderName::from_static(StandardWebhooks::ID_HEADER),
    http::HeaderName::from_static(StandardWebhooks::TIMESTAMP_HEADER),
    http::HeaderName::from_static(StandardWebhooks::SVIX_ID_HEADER),
    http::HeaderName::from_static("svix-timestamp"),
];

impl StandardWebhooks {
    /// The id header.
    ///
    /// ```
    /// use hookguard_core::{schemes::StandardWebhooks, Scheme, SignParams};
    /// let s = StandardWebhooks::new().sign("whsec_c2VjcmV0", b"{}", &SignParams::new(1).id("msg_1")).unwrap();
    /// assert_eq!(s.headers[0].0, StandardWebhooks::ID_HEADER);
    /// assert_eq!(s.headers[0].1, "msg_1");
    /// ```
    pub const ID_HEADER: &'static str = "webhook-id";
    /// The timestamp header.
    ///
    /// ```
    /// use hookguard_core::{schemes::StandardWebhooks, Scheme, SignParams};
    /// let s = StandardWebhooks::new().sign("whsec_c2VjcmV0", b"{}", &SignParams::new(1_614_265_330).id("msg_1")).unwrap();
    /// assert_eq!(s.headers[1].0, StandardWebhooks::TIMESTAMP_HEADER);
    /// assert_eq!(s.headers[1].1, "1614265330");
    /// ```
    pub const TIMESTAMP_HEADER: &'static str = "webhook-timestamp";
    /// The signature header.
    ///
    /// ```
    /// use hookguard_core::{schemes::StandardWebhooks, Scheme, SignParams};
    /// let s = StandardWebhooks::new().sign("whsec_c2VjcmV0", b"{}", &SignParams::new(1).id("msg_1")).unwrap();
    /// assert_eq!(s.headers[2].0, StandardWebhooks::SIGNATURE_HEADER);
    /// assert!(s.headers[2].1.to_str().unwrap().starts_with("v1,"));
    /// ```
    pub const SIGNATURE_HEADER: &'static str = "webhook-signature";
    /// The id header under Svix's own names (`svix-id`, `svix-timestamp`, `svix-signature`):
    /// read when a request carries none of the specification's three.
    ///
    /// ```
    /// use hookguard_core::{clock::ManualClock, schemes::StandardWebhooks, RequestHead, Scheme, SignParams, Verifier};
    /// let body = br#"{"type":"user.created"}"#;
    /// let signed = StandardWebhooks::new().sign("whsec_c2VjcmV0", body, &SignParams::new(1_700_000_000).id("msg_1")).unwrap();
    /// // The same headers under Svix's names, as Svix sends them by default.
    /// let mut h = http::HeaderMap::new();
    /// for (name, value) in signed.headers {
    ///     let svix = name.as_str().replace("webhook-", "svix-");
    ///     h.insert(http::HeaderName::from_bytes(svix.as_bytes()).unwrap(), value);
    /// }
    /// assert!(h.contains_key(StandardWebhooks::SVIX_ID_HEADER));
    /// let v = Verifier::builder(StandardWebhooks::new()).secret("whsec_c2VjcmV0").clock(ManualClock::new(1_700_000_000)).build().unwrap();
    /// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
    /// let verdict = v.verify(&RequestHead::new(&m, &u, &h), bytes::Bytes::from_static(body)).unwrap();
    /// assert_eq!(verdict.delivery().unwrap().dedupe_key(), Some("standard:msg_1"));
    /// ```
    pub const SVIX_ID_HEADER: &'static str = "svix-id";
    /// The most well-formed `v1a` entries one header may carry: a sender signs once per active
    /// key, and a rotation needs two. (Without the `ed25519` feature `v1a` entries cost
    /// nothing and are not counted here.)
    ///
    /// ```
    /// use hookguard_core::{schemes::StandardWebhooks, RequestHead, Verifier};
    /// assert_eq!(StandardWebhooks::MAX_V1A_ENTRIES, 4);
    /// # #[cfg(feature = "ed25519")] {
    /// // Five well-formed `v1a` entries (64 bytes of base64 each): refused before any is checked.
    /// let entry = format!("v1a,{}==", "A".repeat(86));
    /// let mut h = http::HeaderMap::new();
    /// h.insert("webhook-id", "msg_1".parse().unwrap());
    /// h.insert("webhook-timestamp", "1700000000".parse().unwrap());
    /// h.insert("webhook-signature", vec![entry; 5].join(" ").parse().unwrap());
    /// let v = Verifier::builder(StandardWebhooks::new()).secret("whsec_c2VjcmV0").build().unwrap();
    /// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
    /// assert_eq!(v.authenticate(&RequestHead::new(&m, &u, &h), b"{}").unwrap_err().code(), "too_many_signatures");
    /// # }
    /// ```
    pub const MAX_V1A_ENTRIES: usize = 4;
    /// The most Ed25519 verifications one delivery may cost (`v1a` entries × `whpk_` keys held):
    /// each hashes the whole body. Eight covers a sender mid-rotation (two entries) against a
    /// receiver holding up to four keys.
    ///
    /// ```
    /// use hookguard_core::schemes::StandardWebhooks;
    /// // Two entries (a sender mid-rotation) against every Ed25519 key a verifier may hold.
    /// assert_eq!(StandardWebhooks::MAX_V1A_CHECKS, 2 * StandardWebhooks::MAX_V1A_KEYS);
    /// ```
    pub const MAX_V1A_CHECKS: usize = 8;
    /// The most Ed25519 keys (`whpk_`, `whsk_`) a verifier may hold: a sender mid-rotation
    /// (two entries) then always fits within [`MAX_V1A_CHECKS`](Self::MAX_V1A_CHECKS);
    /// [`build`](crate::VerifierBuilder::build) refuses more.
    ///
    /// ```
    /// use hookguard_core::schemes::StandardWebhooks;
    /// assert_eq!(StandardWebhooks::MAX_V1A_KEYS, 4);
    /// # #[cfg(feature = "ed25519")] {
    /// use hookguard_core::Verifier;
    /// // The Standard Webhooks reference test seed, as a `whsk_` secret.
    /// let key = "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=";
    /// let build = |n: usize| Verifier::builder(StandardWebhooks::new()).secrets(vec![key; n]).build();
    /// assert!(build(StandardWebhooks::MAX_V1A_KEYS).is_ok());
    /// assert!(build(StandardWebhooks::MAX_V1A_KEYS + 1).is_err());
    /// # }
    /// ```
    pub const MAX_V1A_KEYS: usize = Self::MAX_V1A_CHECKS / 2;

    /// The scheme with the specification's rules.
    ///
    /// ```
    /// use hookguard_core::{schemes::StandardWebhooks, testing};
    /// let body = br#"{"type":"user.created","timestamp":"2026-01-01T00:00:00Z","data":{}}"#;
    /// let d = testing::deliver(StandardWebhooks::new(), "whsec_c2VjcmV0", body).unwrap();
    /// // `testing::deliver` signs with the id `msg_1`: the `webhook-id` is the dedupe key.
    /// assert_eq!(d.dedupe_key(), Some("standard:msg_1"));
    /// assert_eq!(d.event_type(), Some("user.created"));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The three headers and the names they were found under: the specification's, or
    /// Svix's when the request carries none of those.
    fn headers<'h>(req: &RequestHead<'h>) -> ([&'static http::HeaderName; 3], [Option<&'h http::HeaderValue>; 3]) {
        let spec = Context::raw_headers(req, SPEC_NAMES);
        if spec.iter().all(Option::is_none) {
            let svix = Context::raw_headers(req, SVIX_NAMES);
            if svix.iter().any(Option::is_some) {
                return (SVIX_NAMES, svix);
            }
        }
        (SPEC_NAMES, spec)
    }

    fn decode_secret(secret: &str) -> Result<Vec<u8>, &'static str> {
        let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
        let key = STANDARD.decode(b64).map_err(|_| "not base64 after the whsec_ prefix")?;
        if key.is_empty() {
            return Err("empty key");
        }
        Ok(key)
    }

    /// What a configured secret is, by its prefix.
    fn classify(secret: &str) -> Result<Secret, &'static str> {
        if secret.starts_with("whpk_") || secret.starts_with("whsk_") {
            return Self::classify_ed25519(secret);
        }
        Self::decode_secret(secret).map(Secret::Hmac)
    }

    /// A `whpk_` or `whsk_` secret.
    #[cfg(feature = "ed25519")]
    fn classify_ed25519(secret: &str) -> Result<Secret, &'static str> {
        if let Some(b64) = secret.strip_prefix("whpk_") {
            let bytes = STANDARD.decode(b64).map_err(|_| "not base64 after the whpk_ prefix")?;
            return Ok(Secret::Public(bytes));
        }
        let b64 = secret.strip_prefix("whsk_").unwrap_or(secret);
        let bytes = STANDARD.decode(b64).map_err(|_| "not base64 after the whsk_ prefix")?;
        Ok(Secret::Signing(bytes))
    }

    /// A `whpk_` or `whsk_` secret, in a build without Ed25519: refused, saying why.
    #[cfg(not(feature = "ed25519"))]
    fn classify_ed25519(_secret: &str) -> Result<Secret, &'static str> {
        Err(V1A_NEEDS_FEATURE)
    }
}

/// Why a `whpk_` or `whsk_` secret is refused in a build without the `ed25519` feature.
#[cfg(not(feature = "ed25519"))]
const V1A_NEEDS_FEATURE: &str = "v1a keys need hookguard-core's `ed25519` feature";

/// A configured secret, decoded.
enum Secret {
    /// `whsec_`: HMAC-SHA256 key bytes.
    Hmac(Vec<u8>),
    /// `whpk_`: an Ed25519 public key.
    #[cfg(feature = "ed25519")]
    Public(Vec<u8>),
    /// `whsk_`: an Ed25519 secret key (seed, or seed and public key).
    #[cfg(feature = "ed25519")]
    Signing(Vec<u8>),
}

fn decode_b64_mac(s: &str) -> Option<[u8; 32]> {
    // 32 bytes are 44 base64 characters, the last one `=`; anything else is never a candidate.
    // Decoded by hand (a table and ten 4-character groups, no length or padding dispatch): on
    // small bodies this is a visible part of a verification. Accepts exactly what the
    // `base64` crate's canonical `STANDARD` engine accepts (a property test checks it).
    const INVALID: u8 = 0xff;
    const TABLE: [u8; 256] = {
        let mut t = [INVALID; 256];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut i = 0;
        while i < 64 {
            t[alphabet[i] as usize] = i as u8;
            i += 1;
        }
        t
    };
    let b: &[u8; 44] = s.as_bytes().try_into().ok()?;
    if b[43] != b'=' {
        return None;
    }
    let mut out = [0u8; 32];
    // Valid sextets are < 64, so any invalid character sets one of the top two bits here.
    let mut bad = 0u8;
    for (g, chunk) in b[..40].chunks_exact(4).enumerate() {
        let [w, x, y, z] = [chunk[0], chunk[1], chunk[2], chunk[3]].map(|c| TABLE[usize::from(c)]);
        bad |= w | x | y | z;
        let n = u32::from(w) << 18 | u32::from(x) << 12 | u32::from(y) << 6 | u32::from(z);
        out[g * 3..g * 3 + 3].copy_from_slice(&n.to_be_bytes()[1..]);
    }
    let [w, x, y] = [b[40], b[41], b[42]].map(|c| TABLE[usize::from(c)]);
    bad |= w | x | y;
    // Canonical: the last character's two unused bits are zero.
    if bad & 0xc0 != 0 || y & 0b11 != 0 {
        return None;
    }
    let n = u32::from(w) << 18 | u32::from(x) << 12 | u32::from(y) << 6;
    out[30..].copy_from_slice(&n.to_be_bytes()[1..3]);
    Some(out)
}

#[cfg(feature = "ed25519")]
fn decode_b64_sig(s: &str) -> Option<[u8; 64]> {
    // 64 bytes are 88 base64 characters (with `==`); anything else is never a candidate.
    if s.len() != 88 {
        return None;
    }
    let mut buf = [0u8; 66];
    match STANDARD.decode_slice(s, &mut buf) {
        Ok(64) => buf[..64].try_into().ok(),
        _ => None,
    }
}

struct Probe {
    kind: Option<String>,
}

json_struct! { Deserialize for Probe { kind: "type" (default) } }

impl Scheme for StandardWebhooks {
    fn provider(&self) -> Provider {
        Provider::StandardWebhooks
    }

    fn profile(&self) -> SenderProfile {
        SenderProfile {
            name: "Standard Webhooks sender",
            // Svix (the Standard Webhooks reference sender) waits 15 s.
            timeout: secs(15),
            timeout_assumed: false,
            schedule: RetrySchedule::Fixed(
                const {
                    &[
                        secs(5),
                        secs(300),
                        secs(1800),
                        secs(2 * 3600),
                        secs(5 * 3600),
                        secs(10 * 3600),
                        secs(10 * 3600),
                    ]
                },
            ),
            schedule_doc: "8 attempts: now, +5 s, +5 min, +30 min, +2 h, +5 h, +10 h, +10 h (Svix)",
            retry_note: "",
            permanent: Permanent::Never,
            give_up: "the sender gives up",
            kill_switch: None,
            event_types: &["invoice.paid"],
            header_id: HeaderId::Fresh("msg_"),
            header_type: None,
            sample: |rng, kind, now| {
                format!(
                    r#"{{"type":{},"timestamp":{},"data":{{"invoiceId":"inv_{}","amount":12500,"currency":"USD"}}}}"#,
                    q(kind.unwrap_or("invoice.paid")),
                    q(&rfc3339(now, 0)),
                    rng.hex(6)
                )
                .into_bytes()
            },
        }
    }

    fn key(&self, secret: &str) -> Result<Key, &'static str> {
        match Self::classify(secret)? {
            Secret::Hmac(k) => Ok(Key::hmac(&k)),
            #[cfg(feature = "ed25519")]
            Secret::Public(k) => Key::ed25519_public(&k),
            // Only the public half is kept: a verifier never holds a key that could sign.
            #[cfg(feature = "ed25519")]
            Secret::Signing(k) => Key::ed25519_from_secret(&k),
        }
    }

    fn signed_headers(&self) -> &[http::HeaderName] {
        &SIGNED_HEADERS
    }

    fn key_header<'h>(&self, head: &RequestHead<'h>, name: &http::HeaderName) -> Option<&'h http::HeaderValue> {
        // Either name of a signed header reads the value authenticated under the set in use:
        // a copy with its headers renamed has the same key.
        let at = SPEC_NAMES
            .iter()
            .position(|n| *n == name)
            .or_else(|| SVIX_NAMES.iter().position(|n| *n == name));
        match at {
            Some(i) => Self::headers(head).1[i],
            None => head.headers.get(name),
        }
    }

    fn authenticate(&self, req: &RequestHead<'_>, body: &[u8], ctx: &Context<'_>) -> Result<Authenticated, Rejection> {
        // One pass finds the three headers; each is then checked in the order that decides
        // which refusal a request with several faults gets.
        let (names, [id, ts_raw, sig]) = Self::headers(req);
        if let Some(name) = Context::repeated(req, &names) {
            return Err(Rejection::RepeatedHeader(name));
        }
        let [id_name, ts_name, sig_name] = names;
        let id = ctx
            .checked(id_name, id)?
            .ok_or(Rejection::MissingHeader(id_name.as_str()))?;
        let ts_raw = ctx
            .checked(ts_name, ts_raw)?
            .ok_or(Rejection::MissingHeader(ts_name.as_str()))?
            .trim();
        let sig = ctx
            .checked(sig_name, sig)?
            .ok_or(Rejection::MissingSignature(sig_name.as_str()))?;
        if id.is_empty() {
            return Err(Rejection::MissingHeader(id_name.as_str()));
        }
        let ts = parse_timestamp(ts_raw)?;
        // `v1` MACs go to the HMAC candidates; every entry (`v1a` too) counts towards the bound
        // there, so the Ed25519 list is bounded by it as well. It allocates only for `v1a`.
        // Without the `ed25519` feature a `v1a` entry is never a candidate, like an unknown one.
        let mut sigs = Candidates::new();
        #[cfg(feature = "ed25519")]
        let mut ed25519: Vec<[u8; 64]> = Vec::new();
        for entry in sig.split_ascii_whitespace() {
            let mac = match entry.split_once(',') {
                Some(("v1", b64)) => decode_b64_mac(b64),
                #[cfg(feature = "ed25519")]
                Some(("v1a", b64)) => {
                    ed25519.extend(decode_b64_sig(b64));
                    None
                }
                _ => None,
            };
            sigs.push(mac, ctx.max_signatures())?;
            #[cfg(feature = "ed25519")]
            if ed25519.len() > Self::MAX_V1A_ENTRIES {
                return Err(Rejection::TooManySignatures);
            }
        }
        let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts_raw.as_bytes(), b".", body];
        // `{id}.{t}.` in one piece when it fits on the stack: one hash update instead of four.
        let mut prefix = [0u8; 128];
        let n = id.len() + ts_raw.len() + 2;
        let joined: [&[u8]; 2];
        let hashed: &[&[u8]] = if n <= prefix.len() {
            prefix[..id.len()].copy_from_slice(id.as_bytes());
            prefix[id.len()] = b'.';
            prefix[id.len() + 1..n - 1].copy_from_slice(ts_raw.as_bytes());
            prefix[n - 1] = b'.';
            joined = [&prefix[..n], body];
            &joined
        } else {
            &parts
        };
        match sigs.verify(ctx.keys(), hashed) {
            Ok(()) => {}
            // Ed25519 signs the message itself (no streaming with strict verification): the
            // signed content is assembled once, only when an Ed25519 key could check it.
            #[cfg(feature = "ed25519")]
            Err(_) if !ed25519.is_empty() => {
                let keys = ctx.keys();
                // Each (entry, key) pair hashes the whole body: bound the pairs, not only the
                // entries (anyone can send well-formed entries).
                let held = crate::key::ed25519_count(keys);
                if ed25519.len() * held > Self::MAX_V1A_CHECKS {
                    return Err(Rejection::TooManySignatures);
                }
                if held == 0 || !crate::key::any_ed25519_matches(keys, &parts.concat(), &ed25519) {
                    return Err(Rejection::SignatureMismatch);
                }
            }
            // No well-formed `v1a` entry either: malformed (or a mismatch) as before.
            Err(e) => return Err(e),
        }
        // The verifier judges the window, after the signature.
        Ok(Authenticated::at(ts))
    }

    fn describe(&self, req: &RequestHead<'_>, body: &[u8]) -> Result<Described, Rejection> {
        // The id under the names the signature was checked with (`authenticate`).
        let [id, ..] = Self::headers(req).1;
        let raw = id.and_then(|v| v.to_str().ok());
        // An id longer than any sender's (bounded as body ids are) is not kept as it is: it is
        // not shown, and copies are recognised by its digest.
        let id = raw.filter(|v| v.len() <= super::MAX_ID_LEN).map(str::to_owned);
        let key = id.clone().or_else(|| raw.map(|r| super::body_digest(r.as_bytes())));
        // The payload is usually JSON with a `type`; the signature does not depend on it.
        let kind = crate::json_fast::from_slice::<Probe>(body).ok().and_then(|p| p.kind);
        Ok(Described {
            dedupe_key: key,
            event_id: id,
            event_type: kind,
            ..Described::default()
        })
    }

    fn sign(&self, secret: &str, body: &[u8], params: &SignParams) -> Result<Signed, ConfigError> {
        let invalid = |reason| ConfigError::InvalidSecret { index: 0, reason };
        let secret = Self::classify(secret).map_err(invalid)?;
        // Without one given, an id from the body: the same message keeps it when it is signed
        // again for a retry (the spec's rule), two messages signed in one second do not share
        // it (a time-based id made the second look like a copy of the first).
        let id = params.id.clone().unwrap_or_else(|| {
            use sha2::{Digest, Sha256};
            format!("msg_{}", crate::wire::hex_encode(&Sha256::digest(body)[..12]))
        });
        let ts = params.timestamp.to_string();
        let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts.as_bytes(), b".", body];
        let signature = match secret {
            Secret::Hmac(key) => format!("v1,{}", STANDARD.encode(crate::key::mac_of(&key, &parts))),
            #[cfg(feature = "ed25519")]
            Secret::Signing(key) => {
                let sig = crate::key::ed25519_sign(&key, &parts.concat()).map_err(invalid)?;
                format!("v1a,{}", STANDARD.encode(sig))
            }
            #[cfg(feature = "ed25519")]
            Secret::Public(_) => {
                return Err(invalid(
                    "a whpk_ public key cannot sign: sign with the whsk_ secret key",
                ))
            }
        };
        let headers = vec![
            header(Self::ID_HEADER, &id)?,
            header(Self::TIMESTAMP_HEADER, &ts)?,
            header(Self::SIGNATURE_HEADER, signature)?,
        ];
        Ok(Signed { headers, query: None })
    }
}

#[cfg(test)]
mod decode_tests {
    use base64::Engine as _;
    use proptest::prelude::*;

    use super::{decode_b64_mac, STANDARD};

    /// What the `base64` crate decides for a would-be 32-byte MAC.
    fn reference(s: &str) -> Option<[u8; 32]> {
        let mut buf = [0u8; 33];
        match STANDARD.decode_slice(s, &mut buf) {
            Ok(32) if s.len() == 44 => <[u8; 32]>::try_from(&buf[..32]).ok(),
            _ => None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn the_mac_decoder_accepts_exactly_what_the_base64_crate_accepts(
            bytes in proptest::array::uniform32(any::<u8>()),
            at in 0usize..46,
            with in 0u8..128,
        ) {
            let good = STANDARD.encode(bytes);
            prop_assert_eq!(decode_b64_mac(&good), Some(bytes));
            // One character changed (or the string cut or grown): decided exactly as the crate does.
            let mut v = good.into_bytes();
            match at {
                44 => { v.pop(); }
                45 => v.push(b'='),
                i => v[i] = with,
            }
            let t = String::from_utf8(v).unwrap();
            prop_assert_eq!(decode_b64_mac(&t), reference(&t), "{}", t);
        }
    }

    #[test]
    fn non_zero_unused_bits_are_not_canonical() {
        let mut s = STANDARD.encode([0u8; 32]).into_bytes();
        s[42] = b'B';
        let s = String::from_utf8(s).unwrap();
        assert_eq!(reference(&s), None);
        assert_eq!(decode_b64_mac(&s), None);
        assert_eq!(decode_b64_mac(&"A".repeat(44)), None, "no padding");
        assert_eq!(decode_b64_mac(&format!("{}==", "A".repeat(42))), None, "31 bytes");
    }
}

/// The known-answer vectors both test modules below use (one with the `ed25519` feature, one
/// without): keys, a message and its `v1` and `v1a` signatures.
#[cfg(test)]
mod vectors {
    pub(super) const SEED: &str = "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=";
    pub(super) const PUBLIC: &str = "whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=";
    pub(super) const HMAC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    pub(super) const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    pub(super) const TS: u64 = 1614265330;
    pub(super) const BODY: &[u8] = br#"{"test": 2432232314}"#;
    pub(super) const V1: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    pub(super) const V1A: &str =
        "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag==";
}

#[cfg(all(test, feature = "ed25519"))]
mod tests {
    use super::*;

    /// Signed without an id, a message gets one from its body: kept when the same message is
    /// signed again later (a retry), different for another message in the same second.
    #[test]
    fn a_default_id_stays_with_its_message() {
        let id = |body: &[u8], t: u64| {
            let signed = StandardWebhooks::new()
                .sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", body, &SignParams::new(t))
                .unwrap();
            let (_, v) = signed.headers.iter().find(|(n, _)| n == "webhook-id").unwrap();
            v.to_str().unwrap().to_owned()
        };
        assert_eq!(
            id(br#"{"type":"a"}"#, 1_700_000_000),
            id(br#"{"type":"a"}"#, 1_700_000_060)
        );
        assert_ne!(
            id(br#"{"type":"a"}"#, 1_700_000_000),
            id(br#"{"type":"b"}"#, 1_700_000_000)
        );
        assert!(id(b"{}", 0).starts_with("msg_"));
    }
    use crate::clock::ManualClock;
    use crate::{Verdict, Verifier};

    use super::vectors::{BODY, HMAC, ID, PUBLIC, SEED, TS, V1, V1A};

    fn verifier(secrets: &[&str]) -> Verifier {
        Verifier::builder(StandardWebhooks::new())
            .secrets(secrets)
            .clock(ManualClock::new(TS))
            .build()
            .unwrap()
    }

    fn check(v: &Verifier, signature: &str) -> Result<Verdict, Rejection> {
        let mut h = http::HeaderMap::new();
        h.insert("webhook-id", ID.parse().unwrap());
        h.insert("webhook-timestamp", TS.to_string().parse().unwrap());
        h.insert("webhook-signature", signature.parse().unwrap());
        let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
        v.verify(&RequestHead::new(&m, &u, &h), bytes::Bytes::from_static(BODY))
    }

    fn sign_with(secret: &str) -> String {
        let s = StandardWebhooks::new()
            .sign(secret, BODY, &SignParams::new(TS).id(ID))
            .unwrap();
        let (_, v) = s.headers.into_iter().find(|(n, _)| n == "webhook-signature").unwrap();
        v.to_str().unwrap().to_owned()
    }

    fn seed_b64(seed: [u8; 32]) -> String {
        format!("whsk_{}", STANDARD.encode(seed))
    }

    fn public_of(seed: [u8; 32]) -> String {
        let sk = crate::key::ed25519_signing_key(&seed).unwrap();
        format!("whpk_{}", STANDARD.encode(sk.verifying_key().as_bytes()))
    }

    #[test]
    fn v1a_known_answer_and_signing() {
        assert_eq!(sign_with(SEED), V1A);
        assert_eq!(sign_with(HMAC), V1);
        assert!(check(&verifier(&[PUBLIC]), V1A).is_ok());
        // A whsk_ secret given to a verifier keeps only its public key, and verifies.
        assert!(check(&verifier(&[SEED]), V1A).is_ok());
        // The 64-byte layout (seed ‖ public) signs the same.
        let mut pair = STANDARD.decode(&SEED[5..]).unwrap();
        pair.extend(STANDARD.decode(&PUBLIC[5..]).unwrap());
        assert_eq!(sign_with(&format!("whsk_{}", STANDARD.encode(&pair))), V1A);
        let last = pair.len() - 1;
        pair[last] ^= 1;
        let bad = format!("whsk_{}", STANDARD.encode(&pair));
        assert!(StandardWebhooks::new().sign(&bad, BODY, &SignParams::new(TS)).is_err());
        // A public key cannot sign.
        let err = StandardWebhooks::new()
            .sign(PUBLIC, BODY, &SignParams::new(TS))
            .unwrap_err();
        assert!(err.to_string().contains("cannot sign"), "{err}");
    }

    #[test]
    fn mixed_headers_accept_either_kind_and_never_cross_check() {
        let mixed = format!("{V1} {V1A}");
        let reversed = format!("{V1A} {V1}");
        for secrets in [&[HMAC][..], &[PUBLIC], &[HMAC, PUBLIC], &[PUBLIC, HMAC]] {
            assert!(check(&verifier(secrets), &mixed).is_ok(), "{secrets:?}");
            assert!(check(&verifier(secrets), &reversed).is_ok(), "{secrets:?}");
        }
        // A v1a entry is never checked with an HMAC key, a v1 entry never with an Ed25519 key.
        assert_eq!(
            check(&verifier(&[HMAC]), V1A).unwrap_err(),
            Rejection::SignatureMismatch
        );
        assert_eq!(
            check(&verifier(&[PUBLIC]), V1).unwrap_err(),
            Rejection::SignatureMismatch
        );
        // The public key's bytes used as an HMAC secret: still only a v1 entry, and the
        // verifier holds no HMAC key.
        let public_bytes = STANDARD.decode(&PUBLIC[5..]).unwrap();
        let forged = sign_with(&format!("whsec_{}", STANDARD.encode(&public_bytes)));
        assert_eq!(
            check(&verifier(&[PUBLIC]), &forged).unwrap_err(),
            Rejection::SignatureMismatch
        );
        // An Ed25519 signature labelled v1, or a MAC labelled v1a: never a candidate.
        let as_v1 = format!("v1,{}", &V1A[4..]);
        assert_eq!(
            check(&verifier(&[PUBLIC]), &as_v1).unwrap_err(),
            Rejection::MalformedSignature
        );
        let as_v1a = format!("v1a,{}", &V1[3..]);
        assert_eq!(
            check(&verifier(&[HMAC]), &as_v1a).unwrap_err(),
            Rejection::MalformedSignature
        );
    }

    /// An id longer than any sender's is not shown, and copies are still recognised (by its
    /// digest).
    #[test]
    fn a_long_webhook_id_is_kept_as_a_digest() {
        let v = verifier(&[HMAC]);
        let deliver = |id: &str| {
            let signed = StandardWebhooks::new()
                .sign(HMAC, BODY, &SignParams::new(TS).id(id))
                .unwrap();
            let mut h = http::HeaderMap::new();
            h.extend(signed.headers);
            let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
            match v
                .verify(&RequestHead::new(&m, &u, &h), bytes::Bytes::from_static(BODY))
                .unwrap()
            {
                Verdict::Deliver(d) => d,
                other => panic!("{other:?}"),
            }
        };
        let long = "m".repeat(300);
        let (a, b, short) = (deliver(&long), deliver(&long), deliver("msg_1"));
        assert_eq!(a.event_id(), None);
        assert!(
            a.dedupe_key().unwrap().starts_with("standard:sha256:"),
            "{:?}",
            a.dedupe_key()
        );
        assert_eq!(a.dedupe_key(), b.dedupe_key());
        assert_eq!(short.dedupe_key(), Some("standard:msg_1"));
    }

    /// Each (entry, key) pair hashes the body: a forged header cannot buy more than
    /// `MAX_V1A_CHECKS` of them, whatever the number of keys held.
    #[test]
    fn v1a_work_is_bounded_by_entries_times_keys() {
        let seeds = [[1u8; 32], [2u8; 32], [3u8; 32]];
        let publics: Vec<String> = seeds.iter().map(|s| public_of(*s)).collect();
        let forged = |n: usize| {
            let entry = sign_with(&seed_b64([9u8; 32]));
            vec![entry; n].join(" ")
        };
        let three = verifier(&[&publics[0], &publics[1], &publics[2]]);
        assert_eq!(
            check(&three, &forged(3)).unwrap_err(),
            Rejection::TooManySignatures,
            "9 checks"
        );
        assert_eq!(
            check(&three, &forged(2)).unwrap_err(),
            Rejection::SignatureMismatch,
            "6 checks"
        );
        let two = verifier(&[&publics[0], &publics[1]]);
        assert_eq!(
            check(&two, &forged(4)).unwrap_err(),
            Rejection::SignatureMismatch,
            "8 checks"
        );
        // A genuine sender mid-rotation (two entries) against three keys still passes.
        let both = format!("{} {}", sign_with(&seed_b64(seeds[0])), sign_with(&seed_b64(seeds[1])));
        assert!(check(&three, &both).is_ok());
        // More keys than a rotation fits in the bound is refused when building (it would
        // refuse every genuine two-entry delivery with too_many_signatures).
        let five: Vec<String> = (1u8..=5).map(|i| public_of([i; 32])).collect();
        let built = crate::Verifier::builder(StandardWebhooks::new())
            .secrets(five.iter().map(String::as_str))
            .build();
        assert!(matches!(built, Err(crate::ConfigError::Invalid(m)) if m.contains("at most 4")));
        let four = crate::Verifier::builder(StandardWebhooks::new())
            .secrets(five[..4].iter().map(String::as_str))
            .build();
        assert!(four.is_ok());
    }

    #[test]
    fn v1a_rotation_and_strictness() {
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let v = verifier(&[&public_of(a), &public_of(b)]);
        assert!(check(&v, &sign_with(&seed_b64(a))).is_ok());
        assert!(check(&v, &sign_with(&seed_b64(b))).is_ok());
        assert_eq!(
            check(&v, &sign_with(&seed_b64(c))).unwrap_err(),
            Rejection::SignatureMismatch
        );
        // Junk beside a valid signature.
        let junk = format!(
            "v1a,{} v1a, v1a,AAAA v1,xyz {}",
            "A".repeat(88),
            sign_with(&seed_b64(b))
        );
        assert!(check(&v, &junk).is_ok());
        // Only malformed entries: malformed; well-formed but wrong: mismatch.
        for sig in [
            "v1a,",
            "v1a",
            "v1a,AAAA",
            &format!("v1a,{}", &V1A[4..90]),
            &format!("v1a,{}=", &V1A[4..]),
        ] {
            assert_eq!(check(&v, sig).unwrap_err(), Rejection::MalformedSignature, "{sig}");
        }
        // s + L (the group order): the same signature to a lax verifier, refused by strict
        // verification.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut sig = STANDARD.decode(&V1A[4..]).unwrap();
        let mut carry = 0u16;
        for (i, l) in L.iter().enumerate() {
            let x = u16::from(sig[32 + i]) + u16::from(*l) + carry;
            sig[32 + i] = x as u8;
            carry = x >> 8;
        }
        assert_eq!(carry, 0);
        let malleated = format!("v1a,{}", STANDARD.encode(&sig));
        assert_eq!(
            check(&verifier(&[PUBLIC]), &malleated).unwrap_err(),
            Rejection::SignatureMismatch
        );
        // A tampered message.
        let other = StandardWebhooks::new()
            .sign(SEED, b"{}", &SignParams::new(TS).id(ID))
            .unwrap();
        let (_, s) = other
            .headers
            .into_iter()
            .find(|(n, _)| n == "webhook-signature")
            .unwrap();
        assert_eq!(
            check(&verifier(&[PUBLIC]), s.to_str().unwrap()).unwrap_err(),
            Rejection::SignatureMismatch
        );
    }

    #[test]
    fn every_entry_counts_towards_the_bound() {
        let v = Verifier::builder(StandardWebhooks::new())
            .secret(PUBLIC)
            .max_signatures(2)
            .clock(ManualClock::new(TS))
            .build()
            .unwrap();
        assert!(check(&v, &format!("v1,AAAA {V1A}")).is_ok());
        assert_eq!(
            check(&v, &format!("v1a,AAAA v1,AAAA {V1A}")).unwrap_err(),
            Rejection::TooManySignatures
        );
        assert_eq!(
            check(&v, &format!("{V1A} {V1A} {V1A}")).unwrap_err(),
            Rejection::TooManySignatures
        );
        // At most four well-formed v1a entries, whatever the overall bound; malformed ones
        // cost nothing and are not counted.
        let v = verifier(&[PUBLIC]);
        let four = [V1A; 4].join(" ");
        assert!(check(&v, &format!("v1a, v1a,AAAA {four}")).is_ok());
        assert_eq!(
            check(&v, &format!("{four} {V1A}")).unwrap_err(),
            Rejection::TooManySignatures
        );
    }

    #[test]
    fn bad_keys_are_configuration_errors() {
        for (secret, reason) in [
            ("whpk_%%", "not base64 after the whpk_ prefix"),
            ("whpk_AAAA", "an Ed25519 public key is 32 bytes"),
            (
                "whpk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                "a weak (small-order) Ed25519 public key",
            ),
            ("whsk_%%", "not base64 after the whsk_ prefix"),
            (
                "whsk_AAAA",
                "an Ed25519 secret key is 32 bytes (seed) or 64 bytes (seed and public key)",
            ),
        ] {
            let err = Verifier::builder(StandardWebhooks::new())
                .secret(secret)
                .build()
                .unwrap_err();
            assert_eq!(err, ConfigError::InvalidSecret { index: 0, reason }, "{secret}");
        }
        // Not a point on the curve (y = 2 has no x).
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        let secret = format!("whpk_{}", STANDARD.encode(not_a_point));
        assert!(Verifier::builder(StandardWebhooks::new())
            .secret(secret)
            .build()
            .is_err());
        assert!(!format!("{:?}", verifier(&[PUBLIC, SEED])).contains("ZlN4"));
    }
}

/// Svix's header names, with or without the `ed25519` feature.
#[cfg(test)]
mod svix_names {
    use super::vectors::{BODY, HMAC, ID, TS, V1};
    use super::*;
    use crate::clock::ManualClock;
    use crate::{Verdict, Verifier};

    /// Verifies the vectors' body, signed with the HMAC vector key, with these headers.
    pub(super) fn verify(headers: &[(&'static str, &str)]) -> Result<Verdict, Rejection> {
        let v = Verifier::builder(StandardWebhooks::new())
            .secret(HMAC)
            .clock(ManualClock::new(TS))
            .build()
            .unwrap();
        let mut h = http::HeaderMap::new();
        for (name, value) in headers {
            h.append(*name, value.parse().unwrap());
        }
        let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
        v.verify(&RequestHead::new(&m, &u, &h), bytes::Bytes::from_static(BODY))
    }

    /// Svix's default `svix-*` headers (Clerk, Resend and most Svix-powered senders) verify and
    /// key the delivery by `svix-id`, as the `webhook-*` ones do; a request with any `webhook-*`
    /// header is read under those names only: a `svix-*` header never fills in for a missing one.
    #[test]
    fn svix_header_names_are_read_when_the_specifications_are_absent() {
        let ts = TS.to_string();
        let svix = [("svix-id", ID), ("svix-timestamp", &ts), ("svix-signature", V1)];
        let Ok(Verdict::Deliver(d)) = verify(&svix) else {
            panic!("{:?}", verify(&svix));
        };
        assert_eq!(d.event_id(), Some(ID));
        assert_eq!(d.dedupe_key(), Some(format!("standard:{ID}").as_str()));
        let spec = [
            ("webhook-id", ID),
            ("webhook-timestamp", &ts),
            ("webhook-signature", V1),
        ];
        let Ok(Verdict::Deliver(same)) = verify(&spec) else {
            panic!("{:?}", verify(&spec));
        };
        assert_eq!(same.dedupe_key(), d.dedupe_key());
        // Another id under Svix's name is another signed content: refused.
        assert_eq!(
            verify(&[("svix-id", "msg_other"), svix[1], svix[2]]).unwrap_err(),
            Rejection::SignatureMismatch
        );
        assert_eq!(
            verify(&[("webhook-id", ID), svix[1], svix[2]]).unwrap_err(),
            Rejection::MissingHeader("webhook-timestamp")
        );
        assert_eq!(
            verify(&[svix[0], svix[1]]).unwrap_err(),
            Rejection::MissingSignature("svix-signature")
        );
        assert_eq!(verify(&[]).unwrap_err(), Rejection::MissingHeader("webhook-id"));
    }

    /// A configured `header:` key field reads the authenticated id under either set of names:
    /// a captured delivery resent with its headers renamed (`webhook-*` ↔ `svix-*`) verifies,
    /// and must keep its key (it fell back to the default key: a second run).
    #[test]
    fn renamed_headers_keep_a_configured_key() {
        let ts = TS.to_string();
        let spec = [
            ("webhook-id", ID),
            ("webhook-timestamp", ts.as_str()),
            ("webhook-signature", V1),
        ];
        let svix = [("svix-id", ID), ("svix-timestamp", ts.as_str()), ("svix-signature", V1)];
        for field in ["webhook-id", "svix-id"] {
            let v = Verifier::builder(StandardWebhooks::new())
                .secret(HMAC)
                .clock(ManualClock::new(TS))
                .dedupe_key(crate::DedupeKey::new().header(field))
                .build()
                .unwrap();
            let key = |headers: &[(&'static str, &str)]| {
                let mut h = http::HeaderMap::new();
                for (name, value) in headers {
                    h.append(*name, value.parse().unwrap());
                }
                let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
                match v.verify(&RequestHead::new(&m, &u, &h), bytes::Bytes::from_static(BODY)) {
                    Ok(Verdict::Deliver(d)) => d.dedupe_key().map(str::to_owned),
                    other => panic!("{other:?}"),
                }
            };
            let want = Some(format!(r#"standard:fields:["{ID}"]"#));
            assert_eq!(key(&spec), want, "{field}");
            assert_eq!(key(&svix), want, "{field}");
        }
    }
}

/// A build without the `ed25519` feature: `v1a` keys are refused, `v1` works as ever.
#[cfg(all(test, not(feature = "ed25519")))]
mod without_ed25519 {
    use super::*;
    use crate::{Verdict, Verifier};

    use super::vectors::{BODY, HMAC, ID, PUBLIC, SEED, TS, V1, V1A};

    fn check(signature: &str) -> Result<Verdict, Rejection> {
        let ts = TS.to_string();
        super::svix_names::verify(&[
            ("webhook-id", ID),
            ("webhook-timestamp", &ts),
            ("webhook-signature", signature),
        ])
    }

    #[test]
    fn v1a_keys_are_refused_saying_which_feature() {
        for (secrets, index) in [
            (&[PUBLIC][..], 0),
            (&[SEED], 0),
            (&[HMAC, PUBLIC], 1),
            (&[HMAC, "whpk_%%"], 1),
        ] {
            let err = Verifier::builder(StandardWebhooks::new())
                .secrets(secrets)
                .build()
                .unwrap_err();
            assert_eq!(
                err,
                ConfigError::InvalidSecret {
                    index,
                    reason: V1A_NEEDS_FEATURE
                },
                "{secrets:?}"
            );
            assert_eq!(
                err.to_string(),
                format!("secret #{index} is invalid: v1a keys need hookguard-core's `ed25519` feature")
            );
        }
        for secret in [SEED, PUBLIC] {
            let err = StandardWebhooks::new()
                .sign(secret, BODY, &SignParams::new(TS).id(ID))
                .unwrap_err();
            assert!(err.to_string().contains("`ed25519` feature"), "{err}");
        }
    }

    #[test]
    fn v1a_entries_are_never_candidates() {
        assert!(check(V1).is_ok());
        assert!(check(&format!("{V1A} {V1}")).is_ok());
        assert!(check(&format!("{V1} {V1A}")).is_ok());
        // Only v1a entries: no well-formed signature, as for an unknown version.
        assert_eq!(check(V1A).unwrap_err(), Rejection::MalformedSignature);
        assert_eq!(
            check(&format!("{V1A} {V1A}")).unwrap_err(),
            Rejection::MalformedSignature
        );
        // They still count towards the overall bound.
        let many = vec![V1A; 16].join(" ");
        assert_eq!(
            check(&format!("{many} {V1}")).unwrap_err(),
            Rejection::TooManySignatures
        );
    }
}
