// Shared by the fuzz targets: split the input into header value and body, verify, never panic.
#![allow(dead_code)]
use bytes::Bytes;
use hookguard_core::{clock::ManualClock, RequestHead, Scheme, Verifier};

pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

pub fn run(scheme: impl Scheme, secret: &str, headers: &[(&'static str, &[u8])], uri: &str, body: &[u8]) {
    let v = Verifier::builder(scheme).secret(secret).clock(ManualClock::new(1_700_000_000)).build().unwrap();
    let mut h = http::HeaderMap::new();
    for (name, value) in headers {
        if let Ok(v) = http::HeaderValue::from_bytes(value) {
            h.insert(*name, v);
        }
    }
    let Ok(uri) = uri.parse::<http::Uri>() else { return };
    let head = RequestHead::new(&http::Method::POST, &uri, &h);
    let _ = v.precheck(&head);
    let _ = v.verify(&head, Bytes::copy_from_slice(body));
}
