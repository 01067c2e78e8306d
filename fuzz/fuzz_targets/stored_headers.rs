#![cfg_attr(all(feature = "libfuzzer", not(feature = "afl")), no_main)]
//! The headers an inbox keeps with a delivery (`inbox::stored_headers`). Input: lines
//! `NAME:VALUE` (the first line's name is the scheme's credential header). Besides never
//! panicking: what is kept was sent, is bounded, in name order, and holds no credential header
//! and no URL query in a value.
use hookguard_core::inbox::{stored_headers, MAX_STORED_HEADERS, MAX_STORED_HEADER_LEN};
#[macro_use]
#[path = "common.rs"]
mod common;

fuzz_main!(|data: &[u8]| {
    let mut h = http::HeaderMap::new();
    let mut credential = None;
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(&line[colon + 1..]),
        ) else {
            continue;
        };
        credential.get_or_insert_with(|| n.clone());
        h.append(n, v);
    }
    let kept = stored_headers(&h, credential.as_ref());
    assert!(kept.len() <= MAX_STORED_HEADERS);
    assert!(kept.windows(2).all(|w| w[0].0 <= w[1].0), "{kept:?}");
    for (n, v) in &kept {
        assert!(
            h.get_all(n.as_str()).iter().any(|x| x == v.as_str()),
            "{n}: {v:?} was not sent"
        );
        assert!(Some(n.as_str()) != credential.as_ref().map(|c| c.as_str()), "{n}");
        for never in [
            "authorization",
            "proxy-authorization",
            "cookie",
            "referer",
            "token",
            "secret",
            "auth",
            "url",
            "uri",
        ] {
            assert!(!n.contains(never), "{n} kept");
        }
        assert!(v.len() <= MAX_STORED_HEADER_LEN);
        assert!(!v.split_once('?').is_some_and(|(_, q)| q.contains('=')), "{n}: {v:?}");
    }
});
