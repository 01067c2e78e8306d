#![no_main]
//! Payload probes of every provider (ids, types, metadata), with valid authentication.
use hookguard_core::schemes::{Hcss, Procore};
use libfuzzer_sys::fuzz_target;
#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    common::run(Procore::new(), "Bearer t", &[("authorization", b"Bearer t")], "/", data);
    common::run(Hcss::new(), "tok", &[], "/h?token=tok", data);
});
