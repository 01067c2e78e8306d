#![cfg_attr(all(feature = "libfuzzer", not(feature = "afl")), no_main)]
//! Standard Webhooks `webhook-signature` lists, ids and timestamps. Input: `SIGNATURE \0 TIMESTAMP \0 BODY`.
//! The verifier holds an HMAC secret and an Ed25519 public key (`whpk_`), so both the `v1` and
//! the `v1a` paths are reached (seeds `valid` and `v1a_valid` carry a genuine entry of each).
use hookguard_core::schemes::StandardWebhooks;
#[macro_use]
#[path = "common.rs"]
mod common;

fuzz_main!(|data: &[u8]| {
    let (header, rest) = common::split(data);
    let (ts, body) = common::split(rest);
    common::run_keys(
        StandardWebhooks::new(),
        &[
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            // The public key of the `whsk_` seed in hookguard-core's Standard Webhooks tests.
            "whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=",
        ],
        &[
            ("webhook-id", b"msg_1"),
            ("webhook-timestamp", ts),
            ("webhook-signature", header),
        ],
        "/",
        body,
    );
});
