#![no_main]
//! Standard Webhooks `webhook-signature` lists, ids and timestamps.
use hookguard_core::schemes::StandardWebhooks;
use libfuzzer_sys::fuzz_target;
#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (header, rest) = common::split(data);
    let (ts, body) = common::split(rest);
    common::run(
        StandardWebhooks::new(),
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        &[("webhook-id", b"msg_1"), ("webhook-timestamp", ts), ("webhook-signature", header)],
        "/",
        body,
    );
});
