//! For every sender that signs its body: a delivery signed with the secret verifies, and the same
//! delivery with any one byte of its body changed, or any one character of its signature header
//! changed, does not.

use hookguard_core::clock::ManualClock;
use hookguard_core::{schemes, testing, Provider, RequestHead, Scheme, SignParams, Verifier};
use proptest::prelude::*;

const SECRET: &str = "whsec_c2VjcmV0";
const NOW: u64 = 1_700_000_000;

/// The built-in senders whose signature covers the body (not the shared-token ones).
fn signing() -> Vec<(Provider, std::sync::Arc<dyn Scheme>)> {
    Provider::BUILT_IN
        .iter()
        .filter_map(|&p| schemes::for_provider(p).map(|s| (p, s)))
        .filter(|(_, s)| !s.authenticates_head_only())
        .collect()
}

proptest! {
    #[test]
    fn one_changed_byte_fails_verification(
        body in proptest::collection::vec(any::<u8>(), 1..200),
        at in any::<proptest::sample::Index>(),
        delta in 1u8..=255,
    ) {
        let senders = signing();
        prop_assert!(senders.len() >= 6, "{:?}", senders.iter().map(|(p, _)| p).collect::<Vec<_>>());
        for (p, scheme) in senders {
            let v = Verifier::builder_arc(scheme.clone())
                .secret(SECRET)
                .clock(ManualClock::new(NOW))
                .build()
                .unwrap();
            let signed = scheme.sign(SECRET, &body, &SignParams::new(NOW)).unwrap();
            let signature = signed.headers.iter().map(|(n, _)| n).find(|n| n.as_str().contains("signature")).cloned();
            let (headers, uri) = testing::request_parts(signed, "/webhooks");
            let m = http::Method::POST;
            let genuine = v.authenticate(&RequestHead::new(&m, &uri, &headers), &body);
            prop_assert!(genuine.is_ok(), "{:?}: {:?}", p, genuine);
            // One byte of the body.
            let mut changed = body.clone();
            let i = at.index(changed.len());
            changed[i] = changed[i].wrapping_add(delta);
            let r = v.authenticate(&RequestHead::new(&m, &uri, &headers), &changed);
            prop_assert!(r.is_err(), "{:?}: a changed body verified", p);
            // One character of the signature header (kept printable, so the header stays valid).
            let name = signature.expect("a signature header");
            let mut value = headers[&name].as_bytes().to_vec();
            let j = at.index(value.len());
            value[j] = if value[j] == b'a' { b'b' } else { b'a' };
            let mut forged = headers.clone();
            forged.insert(name.clone(), http::HeaderValue::from_bytes(&value).unwrap());
            let r = v.authenticate(&RequestHead::new(&m, &uri, &forged), &body);
            // Changing a character the header's syntax ignores can leave it valid: only the
            // MAC's own characters must count, and a changed MAC never verifies.
            if r.is_ok() {
                let original = headers[&name].as_bytes();
                prop_assert!(
                    !original[j].is_ascii_alphanumeric() || original[j] == value[j],
                    "{:?}: the signature {:?} with byte {} changed verified", p, headers[&name], j
                );
            }
        }
    }
}
