//! What the verify benches share: a signed request and the verifier that accepts it.

use hookguard_core::{clock::ManualClock, Scheme, SignParams, Verifier};

/// The signing time, and the verifiers' clock.
pub const NOW: u64 = 1_700_000_000;

/// `body` signed by `scheme` with `secret` at [`NOW`] (id `msg_2Kx1` where the scheme sends
/// one): the request's headers, and a verifier for `secret` whose clock reads [`NOW`].
pub fn signed(scheme: impl Scheme + Clone, secret: &str, body: &[u8]) -> (http::HeaderMap, Verifier) {
    let signed = scheme.sign(secret, body, &SignParams::new(NOW).id("msg_2Kx1")).unwrap();
    let mut headers = http::HeaderMap::new();
    headers.extend(signed.headers);
    let v = Verifier::builder(scheme)
        .secret(secret)
        .clock(ManualClock::new(NOW))
        .build()
        .unwrap();
    (headers, v)
}
