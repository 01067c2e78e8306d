#![cfg_attr(all(feature = "libfuzzer", not(feature = "afl")), no_main)]
//! The probes' JSON parser against serde_json: the same value or an error of the same
//! category for every input, and the fast path taken for a usual body. Input: the body.
#[macro_use]
#[path = "common.rs"]
mod common;

fuzz_main!(|data: &[u8]| {
    hookguard_core::testing::check_json_fast(data);
});
