#![cfg_attr(all(feature = "libfuzzer", not(feature = "afl")), no_main)]
//! `sha256=<hex>` (GitHub), `v0=<hex>` (Slack) and `sha1hash=<hex>` (APS) headers.
//! Input: `SIGNATURE \0 SLACK_TIMESTAMP \0 BODY`.
use hookguard_core::schemes::{Aps, GitHub, Slack};
#[macro_use]
#[path = "common.rs"]
mod common;

fuzz_main!(|data: &[u8]| {
    let (header, rest) = common::split(data);
    let (ts, body) = common::split(rest);
    common::run(GitHub::new(), "s", &[("x-hub-signature-256", header)], "/", body);
    common::run(
        Slack::new(),
        "s",
        &[("x-slack-signature", header), ("x-slack-request-timestamp", ts)],
        "/",
        body,
    );
    common::run(Aps::new(), "s", &[("x-adsk-signature", header)], "/", body);
});
