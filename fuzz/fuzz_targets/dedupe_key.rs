#![cfg_attr(all(feature = "libfuzzer", not(feature = "afl")), no_main)]
//! Dedupe keys (`--dedupe-key` / `DedupeKey`): the field list's syntax and the key computed from
//! a body. Input: `SPEC \0 BODY`. Besides never panicking: a parsed list prints as text that
//! parses back to it; a key of one pointer that resolves to a plain string is that string.
use bytes::Bytes;
use hookguard_core::schemes::Procore;
use hookguard_core::{clock::ManualClock, DedupeKey, RequestHead, Verifier};
#[macro_use]
#[path = "common.rs"]
mod common;

fuzz_main!(|data: &[u8]| {
    let (spec, body) = common::split(data);
    let Ok(spec) = std::str::from_utf8(spec) else { return };
    let Ok(key) = spec.parse::<DedupeKey>() else { return };
    assert_eq!(key.to_string().parse::<DedupeKey>().as_ref(), Ok(&key), "{spec:?}");
    let Ok(v) = Verifier::builder(Procore::new())
        .secret("Bearer t")
        .clock(ManualClock::new(1_700_000_000))
        .dedupe_key(key.clone())
        .build()
    else {
        return;
    };
    let mut h = http::HeaderMap::new();
    h.insert("authorization", http::HeaderValue::from_static("Bearer t"));
    let uri: http::Uri = "/hooks".parse().unwrap();
    let head = RequestHead::new(&http::Method::POST, &uri, &h);
    let Ok(verdict) = v.verify(&head, Bytes::copy_from_slice(body)) else { return };
    let Some(delivery) = verdict.delivery() else { return };
    // A single pointer (no comma, no alternative in the list) that resolves to a plain string.
    let single = spec.trim();
    if single.starts_with('/') && !single.contains([',', '|']) {
        let plain = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|doc| doc.pointer(single).and_then(|v| v.as_str().map(str::to_owned)))
            .filter(|s| !s.is_empty() && s.len() < 64 && s.bytes().all(|b| b.is_ascii_alphanumeric()));
        if let Some(s) = plain {
            assert_eq!(delivery.dedupe_key(), Some(format!("procore:fields:[\"{s}\"]").as_str()), "{spec:?}");
        }
    }
});
