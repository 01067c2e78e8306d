#![cfg_attr(all(feature = "libfuzzer", not(feature = "afl")), no_main)]
//! `t=…,v1=…` headers (BuildWorkPro, Stripe). Input: `HEADER \0 BODY`.
use hookguard_core::schemes::{BuildWorkPro, Stripe};
#[macro_use]
#[path = "common.rs"]
mod common;

fuzz_main!(|data: &[u8]| {
    let (header, body) = common::split(data);
    common::run(
        BuildWorkPro::new(),
        "whsec_fuzz",
        &[("buildworkpro-signature", header)],
        "/",
        body,
    );
    common::run(Stripe::new(), "whsec_fuzz", &[("stripe-signature", header)], "/", body);
});
