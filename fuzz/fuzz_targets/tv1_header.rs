#![no_main]
//! `t=…,v1=…` headers (BuildWorkPro, Stripe).
use hookguard_core::schemes::{BuildWorkPro, Stripe};
use libfuzzer_sys::fuzz_target;
#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (header, body) = common::split(data);
    common::run(BuildWorkPro::new(), "whsec_fuzz", &[("buildworkpro-signature", header)], "/", body);
    common::run(Stripe::new(), "whsec_fuzz", &[("stripe-signature", header)], "/", body);
});
