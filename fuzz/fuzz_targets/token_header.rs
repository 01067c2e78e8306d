#![cfg_attr(all(feature = "libfuzzer", not(feature = "afl")), no_main)]
//! Shared-token headers (Procore's `Authorization`, HCSS's token header). Input:
//! `VALUES \0 BODY`, the values separated by `\n` (each appended: repeated headers).
//! Besides never panicking: a delivery verifies only when the first value is the token exactly,
//! and a value longer than the header limit is refused as too large.
use bytes::Bytes;
use hookguard_core::schemes::{Hcss, Procore};
use hookguard_core::{clock::ManualClock, Rejection, RequestHead, Scheme, Verifier};
#[macro_use]
#[path = "common.rs"]
mod common;

const PROCORE_TOKEN: &[u8] = b"Bearer t0k";
const HCSS_TOKEN: &[u8] = b"t0k";

fn check(scheme: impl Scheme, token: &[u8], name: &'static str, values: &[&[u8]], body: &[u8]) {
    let v = Verifier::builder(scheme)
        .secret(std::str::from_utf8(token).unwrap())
        .clock(ManualClock::new(1_700_000_000))
        .build()
        .unwrap();
    let mut h = http::HeaderMap::new();
    for value in values {
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            h.append(name, value);
        }
    }
    let uri: http::Uri = "/hooks".parse().unwrap();
    let head = RequestHead::new(&http::Method::POST, &uri, &h);
    let first = h.get(name).map(|v| v.as_bytes());
    let pre = v.precheck(&head);
    let out = v.verify(&head, Bytes::copy_from_slice(body));
    if out.is_ok() {
        assert_eq!(first, Some(token), "{name}: verified with another value");
    }
    if first.is_some_and(|f| f.len() > hookguard_core::DEFAULT_MAX_HEADER_LEN) {
        assert!(
            matches!(pre, Err(Rejection::HeaderTooLarge(_))) || matches!(out, Err(Rejection::HeaderTooLarge(_))),
            "{name}: an oversized value was not refused as too large: {pre:?} {out:?}"
        );
    }
}

fuzz_main!(|data: &[u8]| {
    let (values, body) = common::split(data);
    let values: Vec<&[u8]> = values.split(|&b| b == b'\n').collect();
    check(Procore::new(), PROCORE_TOKEN, "authorization", &values, body);
    check(
        Hcss::header(http::HeaderName::from_static("x-hcss-token")),
        HCSS_TOKEN,
        "x-hcss-token",
        &values,
        body,
    );
});
