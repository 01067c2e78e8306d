#![cfg_attr(all(feature = "libfuzzer", not(feature = "afl")), no_main)]
//! Query strings: challenge echo and URL tokens. Input: the query (after `?`).
use hookguard_core::challenge::query_param;
#[macro_use]
#[path = "common.rs"]
mod common;

fuzz_main!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let Ok(uri) = format!("/h?{s}").parse::<http::Uri>() else {
        return;
    };
    if let Ok(Some(v)) = query_param(&uri, "challenge", 1024) {
        assert!(v.len() <= 3 * 1024);
    }
});
