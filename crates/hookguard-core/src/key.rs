//! Key material prepared once from a configured secret.
//!
//! Secrets are turned into keys when a [`Verifier`](crate::Verifier) is built: the HMAC key
//! schedule (inner and outer pads) is computed once, and shared tokens are kept only as their
//! SHA-256 digest, so comparisons are constant-time *and* length-independent. No key ever
//! appears in `Debug` output.

use std::fmt;

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// HMAC-SHA256 with a pre-computed key schedule.
pub type HmacSha256 = Hmac<Sha256>;
type HmacSha1 = Hmac<Sha1>;

/// Prepared key material for one configured secret: an HMAC key (SHA-256, or SHA-1 for
/// senders that sign with it), or a shared token. Opaque, so more kinds (Ed25519 public keys)
/// can be added without breaking users.
///
/// ```
/// use hookguard_core::Key;
/// let k = Key::hmac(b"whsec_abc");
/// assert_eq!(format!("{k:?}"), "Key::Hmac(<redacted>)");
/// ```
#[derive(Clone)]
pub struct Key(Kind);

#[derive(Clone)]
enum Kind {
    /// An HMAC-SHA256 key, keyed once.
    Hmac(Box<HmacSha256>),
    /// An HMAC-SHA1 key, keyed once (APS signs with it; not a choice of ours).
    HmacSha1(Box<HmacSha1>),
    /// A shared token (header value or URL token), kept as its SHA-256 digest.
    Token([u8; 32]),
}

impl Key {
    /// An HMAC-SHA256 key over the given bytes.
    ///
    /// ```
    /// let _ = hookguard_core::Key::hmac(b"secret");
    /// ```
    pub fn hmac(secret: &[u8]) -> Self {
        // `new_from_slice` accepts any key length for HMAC.
        let mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
        Key(Kind::Hmac(Box::new(mac)))
    }

    /// An HMAC-SHA1 key over the given bytes, for senders that sign with SHA-1 (APS).
    ///
    /// ```
    /// let k = hookguard_core::Key::hmac_sha1(b"secret");
    /// assert_eq!(format!("{k:?}"), "Key::HmacSha1(<redacted>)");
    /// ```
    pub fn hmac_sha1(secret: &[u8]) -> Self {
        let mac = HmacSha1::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
        Key(Kind::HmacSha1(Box::new(mac)))
    }

    /// A shared token compared in constant time.
    ///
    /// ```
    /// let k = hookguard_core::Key::token(b"Bearer abc");
    /// assert!(k.token_matches(b"Bearer abc"));
    /// assert!(!k.token_matches(b"Bearer abd"));
    /// ```
    pub fn token(value: &[u8]) -> Self {
        Key(Kind::Token(Sha256::digest(value).into()))
    }

    /// The keyed HMAC-SHA256 state, ready for `update`; `None` for other kinds of key.
    ///
    /// ```
    /// use hmac::Mac;
    /// let k = hookguard_core::Key::hmac(b"k");
    /// let mut mac = k.mac().unwrap();
    /// mac.update(b"body");
    /// assert_eq!(mac.finalize().into_bytes().len(), 32);
    /// ```
    pub fn mac(&self) -> Option<HmacSha256> {
        match &self.0 {
            Kind::Hmac(m) => Some((**m).clone()),
            _ => None,
        }
    }

    /// Constant-time check of a presented token; always false for HMAC keys.
    ///
    /// ```
    /// assert!(!hookguard_core::Key::hmac(b"x").token_matches(b"x"));
    /// ```
    pub fn token_matches(&self, presented: &[u8]) -> bool {
        match &self.0 {
            Kind::Token(digest) => {
                let got: [u8; 32] = Sha256::digest(presented).into();
                bool::from(digest.ct_eq(&got))
            }
            _ => false,
        }
    }

    /// HMAC-SHA1 of `body` with this key, compared with `candidate` in constant time; false
    /// for other kinds of key.
    pub(crate) fn sha1_matches(&self, body: &[u8], candidate: &[u8; 20]) -> bool {
        match &self.0 {
            Kind::HmacSha1(m) => {
                let mut mac = (**m).clone();
                mac.update(body);
                let tag: [u8; 20] = mac.finalize().into_bytes().into();
                bool::from(tag.ct_eq(candidate))
            }
            _ => false,
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Hmac(_) => f.write_str("Key::Hmac(<redacted>)"),
            Kind::HmacSha1(_) => f.write_str("Key::HmacSha1(<redacted>)"),
            Kind::Token(_) => f.write_str("Key::Token(<redacted>)"),
        }
    }
}

/// HMAC-SHA256 of `parts` concatenated, with every key; true if any result equals any
/// candidate, compared in constant time. Candidates must be exactly 32 bytes to be tried.
///
/// The body is hashed once per key, never copied.
pub(crate) fn any_mac_matches<'c>(
    keys: &[Key],
    parts: &[&[u8]],
    candidates: impl Iterator<Item = &'c [u8; 32]> + Clone,
) -> bool {
    let mut ok = subtle::Choice::from(0u8);
    for key in keys {
        let Some(mut mac) = key.mac() else { continue };
        for p in parts {
            mac.update(p);
        }
        let tag: [u8; 32] = mac.finalize().into_bytes().into();
        for c in candidates.clone() {
            ok |= tag.ct_eq(c);
        }
    }
    bool::from(ok)
}

/// HMAC-SHA1 of `body` with `secret`, for signing (APS).
pub(crate) fn sha1_mac_of(secret: &[u8], body: &[u8]) -> [u8; 20] {
    let mut mac = HmacSha1::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA256 of `parts` with `secret`, for signing.
pub(crate) fn mac_of(secret: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}
