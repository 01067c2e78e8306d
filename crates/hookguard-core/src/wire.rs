//! The wire formats the schemes share: header pairs, strict timestamps, hex MACs, and the
//! bounded list of candidate signatures from one header.

use http::{HeaderName, HeaderValue};

use crate::{ConfigError, Key, Rejection};

/// Builds a header pair, refusing values that are not visible ASCII (and spaces), are empty,
/// or have spaces around them: the verifier reads only visible ASCII, an empty header as none
/// at all, and a value without the spaces HTTP drops around it, so any of those would sign a
/// request it then refuses (an empty `webhook-id` was `missing_header`).
pub(crate) fn header(name: &'static str, value: impl AsRef<str>) -> Result<(HeaderName, HeaderValue), ConfigError> {
    let value = value.as_ref();
    let visible = value.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
    if !visible || value.is_empty() || value.starts_with(' ') || value.ends_with(' ') {
        return Err(ConfigError::HeaderValue(name));
    }
    let v = HeaderValue::from_str(value).map_err(|_| ConfigError::Invalid("value is not valid header text"))?;
    Ok((HeaderName::from_static(name), v))
}

/// `s` without leading and trailing whitespace, exactly as `str::trim`, with a fast path for
/// the usual header text: a visible ASCII byte at both ends (every Unicode whitespace is either
/// an ASCII control or space, or starts with a byte above 0x7F).
#[inline]
pub(crate) fn trim(s: &str) -> &str {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) if f.is_ascii_graphic() && l.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

/// The pieces of `s` between `sep` bytes, as `s.split(sep as char)` for an ASCII `sep` (an
/// ASCII byte never sits inside a multi-byte character, so every cut is a boundary).
pub(crate) fn split_ascii(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    debug_assert!(sep.is_ascii());
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.bytes().position(|b| b == sep) {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// `s.split_once(sep as char)` for an ASCII `sep`.
pub(crate) fn split_once_ascii(s: &str, sep: u8) -> Option<(&str, &str)> {
    debug_assert!(sep.is_ascii());
    let i = s.bytes().position(|b| b == sep)?;
    Some((&s[..i], &s[i + 1..]))
}

/// Parses a unix-seconds timestamp: ASCII digits only, at most 12 of them.
pub(crate) fn parse_timestamp(s: &str) -> Result<u64, Rejection> {
    let s = trim(s);
    if s.is_empty() || s.len() > 12 {
        return Err(Rejection::MalformedTimestamp);
    }
    // At most 12 digits: no overflow in a u64.
    s.bytes().try_fold(0u64, |n, b| match b {
        b'0'..=b'9' => Ok(n * 10 + u64::from(b - b'0')),
        _ => Err(Rejection::MalformedTimestamp),
    })
}

/// Decodes a 64-hex-digit MAC (either case). Anything else (empty, short, odd, non-hex) is `None`.
pub(crate) fn decode_hex_mac(s: &str) -> Option<[u8; 32]> {
    decode_hex::<32>(s)
}

/// Decodes exactly `N` bytes of hex (either case), in constant time over the digits.
pub(crate) fn decode_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    const fn table() -> [u8; 256] {
        let mut t = [0xff; 256];
        let mut i = 0;
        while i < 10 {
            t[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            t[b'a' as usize + i] = 10 + i as u8;
            t[b'A' as usize + i] = 10 + i as u8;
            i += 1;
        }
        t
    }
    static HEX: [u8; 256] = table();
    let b = trim(s).as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let (h, l) = (HEX[pair[0] as usize], HEX[pair[1] as usize]);
        bad |= h | l;
        *o = (h << 4) | (l & 0x0f);
    }
    // Any 0xff lookup sets the high bits: one check, no early exit.
    (bad & 0xf0 == 0).then_some(out)
}

pub(crate) fn mac_hex(mac: &[u8; 32]) -> String {
    hex_encode(mac)
}

/// Lower-case hex of `bytes` (the core needs no hex crate for this).
pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// The candidate MACs of one header, bounded by `max`. The first four live inline: a header
/// carries one or two, and verifying must not allocate.
pub(crate) struct Candidates {
    inline: [[u8; 32]; 4],
    len: usize,
    spill: Vec<[u8; 32]>,
    seen: usize,
}

impl Candidates {
    pub(crate) fn new() -> Self {
        Self {
            inline: [[0; 32]; 4],
            len: 0,
            spill: Vec::new(),
            seen: 0,
        }
    }
    /// Records one signature entry; malformed ones count towards the bound but are never tried.
    pub(crate) fn push(&mut self, mac: Option<[u8; 32]>, max: usize) -> Result<(), Rejection> {
        self.seen += 1;
        if self.seen > max {
            return Err(Rejection::TooManySignatures);
        }
        if let Some(m) = mac {
            if self.len < self.inline.len() {
                self.inline[self.len] = m;
                self.len += 1;
            } else {
                self.spill.push(m);
            }
        }
        Ok(())
    }
    /// Malformed when no entry was a well-formed MAC: an empty `v1=` never verifies anything.
    pub(crate) fn verify(&self, keys: &[Key], parts: &[&[u8]]) -> Result<(), Rejection> {
        if self.len == 0 {
            return Err(Rejection::MalformedSignature);
        }
        let macs = self.inline[..self.len].iter().chain(&self.spill);
        if crate::key::any_mac_matches(keys, parts, macs) {
            Ok(())
        } else {
            Err(Rejection::SignatureMismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_refuses_header_values_the_verifier_would_refuse() {
        // Found by the `signed_payload` fuzz target: an id `é` was signed, then refused (431).
        assert!(header("webhook-id", "é").is_err());
        assert!(header("webhook-id", "a\tb").is_err());
        assert!(header("webhook-id", "msg_1 ok").is_ok());
        // Empty (read as no header: `missing_header`) or with spaces around it (dropped in
        // transit: the signed id is not the one read), named in the error.
        for bad in ["", " ", " msg_1", "msg_1 "] {
            assert_eq!(
                header("webhook-id", bad).unwrap_err(),
                ConfigError::HeaderValue("webhook-id"),
                "{bad:?}"
            );
        }
        // Through a scheme: the SDK's `SignParams::id("")` as the CLI's `--id ''`.
        use crate::{schemes::StandardWebhooks, Scheme, SignParams};
        let signed = StandardWebhooks::new().sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            b"{}",
            &SignParams::new(1_700_000_000).id(""),
        );
        assert_eq!(signed.unwrap_err(), ConfigError::HeaderValue("webhook-id"));
    }

    #[test]
    fn timestamps_are_strict() {
        assert_eq!(parse_timestamp("1700000000"), Ok(1_700_000_000));
        for bad in ["", "-1", "1e9", "0x10", "１２", "1234567890123", "12 34"] {
            assert_eq!(parse_timestamp(bad), Err(Rejection::MalformedTimestamp), "{bad}");
        }
    }

    #[test]
    fn hex_macs_must_be_exactly_their_length() {
        assert!(decode_hex_mac(&"ab".repeat(32)).is_some());
        let mixed = "0123456789abcdefABCDEF".repeat(3);
        assert_eq!(
            decode_hex_mac(&mixed[..64]).map(hex::encode),
            hex::decode(&mixed[..64]).ok().map(hex::encode)
        );
        for i in 0..64 {
            let mut bad = "ab".repeat(32).into_bytes();
            bad[i] = b'g';
            assert!(decode_hex_mac(std::str::from_utf8(&bad).unwrap()).is_none());
        }
        for bad in ["", "ab", &"ab".repeat(31), &"ab".repeat(33), &"zz".repeat(32)] {
            assert!(decode_hex_mac(bad).is_none());
        }
        assert!(decode_hex::<20>(&"ab".repeat(20)).is_some());
        assert!(decode_hex::<20>(&"ab".repeat(32)).is_none());
    }

    proptest::proptest! {
        /// The byte-level helpers answer exactly as `str`'s own, whitespace of every kind and
        /// multi-byte characters around the separators included.
        #[test]
        fn ascii_helpers_match_str(s in "[ \t\r\n\u{a0}\u{2003}\u{85}é,=ta1v]{0,24}") {
            proptest::prop_assert_eq!(trim(&s), s.trim());
            proptest::prop_assert_eq!(split_ascii(&s, b',').collect::<Vec<_>>(), s.split(',').collect::<Vec<_>>());
            proptest::prop_assert_eq!(split_once_ascii(&s, b'='), s.split_once('='));
        }

        /// A timestamp is 1 to 12 ASCII digits after `str::trim`, read as `u64`'s own parser
        /// reads them; anything else (signs, inner spaces, 13+ digits, other scripts' digits)
        /// is malformed.
        #[test]
        fn timestamps_are_one_to_twelve_ascii_digits(s in "[ \t0-9+\\-a\u{663}]{0,16}|[0-9]{10,14}") {
            let t = s.trim();
            let reference = (!t.is_empty() && t.len() <= 12 && t.bytes().all(|b| b.is_ascii_digit()))
                .then(|| t.parse::<u64>().unwrap());
            proptest::prop_assert_eq!(parse_timestamp(&s).ok(), reference);
        }
    }
}
