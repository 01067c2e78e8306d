#![cfg_attr(all(feature = "libfuzzer", not(feature = "afl")), no_main)]
//! Standard Webhooks `webhook-signature` lists, ids and timestamps. Input: `SIGNATURE \0 TIMESTAMP \0 BODY`.
use hookguard_core::schemes::StandardWebhooks;
#[macro_use]
#[path = "common.rs"]
mod common;

fuzz_main!(|data: &[u8]| {
    let (header, rest) = common::split(data);
    let (ts, body) = common::split(rest);
    common::run(
        StandardWebhooks::new(),
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        &[
            ("webhook-id", b"msg_1"),
            ("webhook-timestamp", ts),
            ("webhook-signature", header),
        ],
        "/",
        body,
    );
});
