#![cfg_attr(all(feature = "libfuzzer", not(feature = "afl")), no_main)]
//! Payload probes of the token-authenticated providers (Procore, HCSS). Input: the body.
//! `signed_payload` reaches the signed providers' probes.
use hookguard_core::schemes::{Hcss, Procore};
#[macro_use]
#[path = "common.rs"]
mod common;

fuzz_main!(|data: &[u8]| {
    common::run(Procore::new(), "Bearer t", &[("authorization", b"Bearer t")], "/", data);
    common::run(Hcss::new(), "tok", &[], "/h?token=tok", data);
});
