//! Key material prepared once from a configured secret.
//!
//! Secrets are turned into keys when a [`Verifier`](crate::Verifier) is built: the HMAC key
//! schedule (inner and outer pads) is computed once, and shared tokens are kept only as their
//! SHA-256 digest, so comparisons are constant-time *and* length-independent. No key ever
//! appears in `Debug` output.

use std::fmt;

#[cfg(feature = "ed25519")]
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// HMAC-SHA256 with a pre-computed key schedule.
///
/// ```
/// use hmac::Mac;
/// use hookguard_core::HmacSha256;
/// let mut mac = HmacSha256::new_from_slice(b"It's a Secret to Everybody").unwrap();
/// mac.update(b"Hello, World!");
/// // GitHub's known answer (see `schemes::GitHub`).
/// assert_eq!(hex::encode(mac.finalize().into_bytes()), "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
/// ```
pub type HmacSha256 = Hmac<Sha256>;
type HmacSha1 = Hmac<Sha1>;

/// Prepared key material for one configured secret: an HMAC key (SHA-256, or SHA-1 for
/// senders that sign with it), a shared token, or an Ed25519 public key (Standard Webhooks
/// `v1a`, with the `ed25519` feature). Opaque, so more kinds can be added without breaking users.
///
/// Each kind only ever checks signatures of its own kind: an Ed25519 key never checks a MAC
/// and an HMAC key never checks an Ed25519 signature.
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
    /// A shared token (header value or URL token), kept as its SHA-256 digest and its length
    /// (a header carrying it must be read whole: the verifier's header bound is checked
    /// against it at build).
    Token([u8; 32], usize),
    /// An Ed25519 public key, decompressed once (verification is strict).
    #[cfg(feature = "ed25519")]
    Ed25519(Box<VerifyingKey>),
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
        Key(Kind::Token(Sha256::digest(value).into(), value.len()))
    }

    /// An Ed25519 public key (32 bytes, a compressed Edwards point), for verifying signatures
    /// such as Standard Webhooks `v1a`. Refuses bytes that are not a point on the curve and
    /// weak (small-order) keys, which strict verification would never accept anyway.
    ///
    /// Needs the `ed25519` feature.
    ///
    /// ```
    /// use hookguard_core::Key;
    /// let public = [0x66, 0x53, 0x78, 0x7a, 0x0e, 0xdd, 0x49, 0x2a, 0xa2, 0xd2, 0x6a, 0x17, 0xf6, 0x14, 0x14, 0x93,
    ///               0x7a, 0x2b, 0xac, 0xea, 0x2e, 0x2b, 0x74, 0x15, 0x41, 0x29, 0x49, 0x6b, 0x6e, 0x3c, 0x73, 0xf8];
    /// let k = Key::ed25519_public(&public).unwrap();
    /// assert_eq!(format!("{k:?}"), "Key::Ed25519(<public>)");
    /// assert!(Key::ed25519_public(&public[..31]).is_err());
    /// assert!(Key::ed25519_public(&[0u8; 32]).is_err()); // small order
    /// ```
    #[cfg(feature = "ed25519")]
    pub fn ed25519_public(bytes: &[u8]) -> Result<Self, &'static str> {
        let bytes: &[u8; 32] = bytes.try_into().map_err(|_| "an Ed25519 public key is 32 bytes")?;
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| "not an Ed25519 public key (not a curve point)")?;
        if key.is_weak() {
            return Err("a weak (small-order) Ed25519 public key");
        }
        Ok(Key(Kind::Ed25519(Box::new(key))))
    }

    /// The Ed25519 public key of a secret key: the 32-byte seed, or the 64 bytes of seed and
    /// public key (libsodium's layout; the public half must match). Only the public key is
    /// kept: a verifier never holds a key that could sign.
    ///
    /// Needs the `ed25519` feature.
    ///
    /// ```
    /// use hookguard_core::Key;
    /// let k = Key::ed25519_from_secret(b"TESTSIGNINGKEYDONOTUSETHISFORANY").unwrap();
    /// assert_eq!(format!("{k:?}"), "Key::Ed25519(<public>)");
    /// assert!(Key::ed25519_from_secret(b"short").is_err());
    /// ```
    #[cfg(feature = "ed25519")]
    pub fn ed25519_from_secret(secret: &[u8]) -> Result<Self, &'static str> {
        let signing = ed25519_signing_key(secret)?;
        Ok(Key(Kind::Ed25519(Box::new(signing.verifying_key()))))
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
            Kind::Token(digest, _) => {
                let got: [u8; 32] = Sha256::digest(presented).into();
                bool::from(digest.ct_eq(&got))
            }
            _ => false,
        }
    }

    /// A token's length in bytes; `None` for other kinds of key.
    pub(crate) fn token_len(&self) -> Option<usize> {
        match &self.0 {
            Kind::Token(_, len) => Some(*len),
            _ => None,
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
            Kind::Token(..) => f.write_str("Key::Token(<redacted>)"),
            #[cfg(feature = "ed25519")]
            Kind::Ed25519(_) => f.write_str("Key::Ed25519(<public>)"),
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
            ok |= ct_eq_32(&tag, c);
        }
    }
    bool::from(ok)
}

/// Constant-time equality of two 32-byte MACs, four 64-bit words at a time: the same guarantee
/// as `subtle`'s slice comparison (no branch or early exit on the data) with a quarter of its
/// optimisation barriers.
fn ct_eq_32(a: &[u8; 32], b: &[u8; 32]) -> subtle::Choice {
    let mut diff = 0u64;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let word = |s: &[u8]| u64::from_ne_bytes(s.try_into().unwrap_or_else(|_| unreachable!()));
        diff |= word(x) ^ word(y);
    }
    diff.ct_eq(&0)
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

/// The Ed25519 signing key of a secret: the 32-byte seed, or seed and public key (64 bytes,
/// libsodium's layout; the public half must belong to the seed). Zeroized on drop.
#[cfg(feature = "ed25519")]
pub(crate) fn ed25519_signing_key(secret: &[u8]) -> Result<SigningKey, &'static str> {
    match secret.len() {
        32 => {
            let seed: &[u8; 32] = secret
                .try_into()
                .map_err(|_| "an Ed25519 secret key is 32 or 64 bytes")?;
            Ok(SigningKey::from_bytes(seed))
        }
        64 => {
            let pair: &[u8; 64] = secret
                .try_into()
                .map_err(|_| "an Ed25519 secret key is 32 or 64 bytes")?;
            SigningKey::from_keypair_bytes(pair)
                .map_err(|_| "the public half of the Ed25519 secret key does not match its seed")
        }
        _ => Err("an Ed25519 secret key is 32 bytes (seed) or 64 bytes (seed and public key)"),
    }
}

/// Ed25519 signature of `message` with `secret` (see [`ed25519_signing_key`]), for signing.
#[cfg(feature = "ed25519")]
pub(crate) fn ed25519_sign(secret: &[u8], message: &[u8]) -> Result<[u8; 64], &'static str> {
    Ok(ed25519_signing_key(secret)?.sign(message).to_bytes())
}

/// Whether any Ed25519 key among `keys` verifies any of `signatures` over `message`, with
/// strict verification (canonical `s`, no small-order `R` or key). Other kinds of key are
/// skipped: an HMAC key never checks an Ed25519 signature. Public keys and signatures are
/// not secret, so an early return leaks nothing.
#[cfg(feature = "ed25519")]
pub(crate) fn any_ed25519_matches(keys: &[Key], message: &[u8], signatures: &[[u8; 64]]) -> bool {
    keys.iter()
        .filter_map(|k| match &k.0 {
            Kind::Ed25519(vk) => Some(vk),
            _ => None,
        })
        .any(|vk| {
            signatures
                .iter()
                .any(|s| vk.verify_strict(message, &Signature::from_bytes(s)).is_ok())
        })
}

/// How many Ed25519 public keys are held.
#[cfg(feature = "ed25519")]
pub(crate) fn ed25519_count(keys: &[Key]) -> usize {
    keys.iter().filter(|k| matches!(k.0, Kind::Ed25519(_))).count()
}
