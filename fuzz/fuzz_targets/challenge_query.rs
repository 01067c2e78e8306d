#![cfg_attr(all(feature = "libfuzzer", not(feature = "afl")), no_main)]
//! Query strings: challenge echo and URL tokens. Input: the query (after `?`).
use hookguard_core::challenge::{query_param, query_token};
use hookguard_core::schemes::Hcss;
use hookguard_core::{RequestHead, Verifier};
#[macro_use]
#[path = "common.rs"]
mod common;

fuzz_main!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let Ok(uri) = format!("/h?{s}").parse::<http::Uri>() else {
        return;
    };
    // Decoding never lengthens a value, and `+` is a space only in the form decoding.
    for (decoded, plus_is_space) in [
        (query_param(&uri, "challenge", 1024), true),
        (query_token(&uri, "token", 1024), false),
    ] {
        if let Ok(Some(v)) = decoded {
            assert!(v.len() <= 3 * 1024);
            if !plus_is_space {
                let raw_plus = s.bytes().filter(|&b| b == b'+').count();
                assert!(
                    v.iter().filter(|&&b| b == b'+').count()
                        <= raw_plus + s.matches("%2B").count() + s.matches("%2b").count()
                );
            }
        }
    }
    // The whole HCSS precheck on that URI: a challenge answer stays within its bound, a token
    // is compared, nothing panics.
    let verifier = Verifier::builder(Hcss::new()).secret("tok").build().unwrap();
    let headers = http::HeaderMap::new();
    for method in [http::Method::GET, http::Method::POST] {
        let head = RequestHead::new(&method, &uri, &headers);
        if let Ok(hookguard_core::Precheck::Challenge(answer)) = verifier.precheck(&head) {
            assert!(!answer.value().is_empty() && answer.value().len() <= 1024);
        }
    }
});
