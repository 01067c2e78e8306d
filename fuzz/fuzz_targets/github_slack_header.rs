#![no_main]
//! `sha256=<hex>` and `v0=<hex>` headers.
use hookguard_core::schemes::{GitHub, Slack};
use libfuzzer_sys::fuzz_target;
#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (header, rest) = common::split(data);
    let (ts, body) = common::split(rest);
    common::run(GitHub::new(), "s", &[("x-hub-signature-256", header)], "/", body);
    common::run(Slack::new(), "s", &[("x-slack-signature", header), ("x-slack-request-timestamp", ts)], "/", body);
});
