//! The `t=<unix>,v1=<hex>[,v1=<hex>…]` header shared by BuildWorkPro and Stripe.

use crate::wire::{decode_hex_mac, parse_timestamp, split_ascii, split_once_ascii, trim, Candidates};
use crate::{Context, Rejection};

/// A parsed `t=…,v1=…` header: the timestamp as sent (its digits are signed) and every `v1`.
pub(crate) struct Tv1<'h> {
    pub(crate) t_raw: &'h str,
    pub(crate) t: u64,
    pub(crate) sigs: Candidates,
}

/// Parses the header. Every `v1` is kept (a secret roll sends several); other keys (`v0`)
/// are ignored; an empty or short `v1` is never a candidate.
pub(crate) fn parse<'h>(value: &'h str, ctx: &Context<'_>) -> Result<Tv1<'h>, Rejection> {
    let mut t_raw = None;
    let mut sigs = Candidates::new();
    let mut repeated_t = false;
    for item in split_ascii(value, b',') {
        let Some((k, v)) = split_once_ascii(trim(item), b'=') else {
            return Err(Rejection::MalformedSignature);
        };
        match k {
            "t" => repeated_t |= t_raw.replace(v).is_some(),
            "v1" => sigs.push(decode_hex_mac(v), ctx.max_signatures())?,
            _ => {}
        }
    }
    if repeated_t {
        return Err(Rejection::MalformedSignature);
    }
    let t_raw = t_raw.ok_or(Rejection::MalformedSignature)?;
    let t = parse_timestamp(t_raw)?;
    Ok(Tv1 {
        t_raw: trim(t_raw),
        t,
        sigs,
    })
}

/// Authenticates `"{t}." + body` against the header; returns the signed timestamp (the
/// verifier judges the window afterwards).
pub(crate) fn authenticate(value: &str, body: &[u8], ctx: &Context<'_>) -> Result<u64, Rejection> {
    let h = parse(value, ctx)?;
    h.sigs.verify(ctx.keys(), &[h.t_raw.as_bytes(), b".", body])?;
    Ok(h.t)
}

/// The header value for `secret` over `"{t}." + body`.
pub(crate) fn sign(secret: &[u8], t: u64, body: &[u8]) -> String {
    let t = t.to_string();
    let mac = crate::key::mac_of(secret, &[t.as_bytes(), b".", body]);
    format!("t={t},v1={}", crate::wire::mac_hex(&mac))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key;
    use proptest::prelude::*;

    fn ctx(keys: &[Key]) -> Context<'_> {
        Context::new(keys, None, 0)
    }

    #[test]
    fn traps() {
        let keys = [Key::hmac(b"s")];
        let c = ctx(&keys);
        for h in [
            "t=1,v1=",
            "t=1,v1",
            "v1=abc",
            "t=1",
            "",
            "t=1,v1=,v1=",
            "t=,v1=00",
            "t=1,t=2,v1=00",
        ] {
            let r = authenticate(h, b"x", &c);
            assert!(
                matches!(
                    r,
                    Err(Rejection::MalformedSignature) | Err(Rejection::MalformedTimestamp)
                ),
                "{h}: {r:?}"
            );
        }
        let good = sign(b"s", 1, b"x");
        assert_eq!(authenticate(&good, b"x", &c), Ok(1));
        assert_eq!(authenticate(&good, b"y", &c), Err(Rejection::SignatureMismatch));
    }

    #[test]
    fn any_v1_may_match() {
        let keys = [Key::hmac(b"new")];
        let old = sign(b"old", 5, b"b");
        let new = sign(b"new", 5, b"b");
        let both = format!("{},{}", old, new.split_once(',').unwrap().1);
        assert_eq!(authenticate(&both, b"b", &ctx(&keys)), Ok(5));
    }

    #[test]
    fn signature_count_is_bounded() {
        let keys = [Key::hmac(b"s")];
        let many = format!("t=1{}", ",v1=00".repeat(17));
        assert_eq!(
            authenticate(&many, b"b", &ctx(&keys)).err(),
            Some(Rejection::TooManySignatures)
        );
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,300}") {
            let keys = [Key::hmac(b"s")];
            let _ = authenticate(&s, b"body", &ctx(&keys));
        }

        #[test]
        fn only_the_true_mac_verifies(t in 0u64..4_000_000_000, body in proptest::collection::vec(any::<u8>(), 0..256), flip in 0usize..64) {
            let keys = [Key::hmac(b"whsec_k")];
            let good = sign(b"whsec_k", t, &body);
            prop_assert_eq!(authenticate(&good, &body, &ctx(&keys)), Ok(t));
            // Change one hex digit of the MAC.
            let mut bad = good.into_bytes();
            let i = bad.len() - 64 + flip;
            bad[i] = if bad[i] == b'0' { b'1' } else { b'0' };
            let bad = String::from_utf8(bad).unwrap();
            prop_assert_eq!(authenticate(&bad, &body, &ctx(&keys)), Err(Rejection::SignatureMismatch));
        }
    }
}
