//! Helpers for tests and examples: sign-then-verify in one call, and a tiny executor.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;

use crate::{clock::ManualClock, Delivery, Rejection, RequestHead, Scheme, SignParams, Verdict, Verifier};

/// Signs `body` as `scheme`'s sender would with `secret`, then verifies it: the delivery a
/// handler would get. Panics on configuration errors (it is for tests).
///
/// ```
/// let d = hookguard_core::testing::deliver(hookguard_core::schemes::GitHub::new(), "s", b"{}").unwrap();
/// assert_eq!(d.provider().as_str(), "github");
/// ```
pub fn deliver(scheme: impl Scheme, secret: &str, body: &'static [u8]) -> Result<Delivery, Rejection> {
    let now = 1_700_000_000;
    let signed = scheme
        .sign(secret, body, &SignParams::new(now).id("msg_1"))
        .expect("sign");
    let v = Verifier::builder(scheme)
        .secret(secret)
        .clock(ManualClock::new(now))
        .build()
        .expect("verifier");
    let mut headers = http::HeaderMap::new();
    headers.extend(signed.headers);
    let uri: http::Uri = match signed.query {
        Some((k, val)) => format!("/?{k}={val}").parse().expect("uri"),
        None => http::Uri::from_static("/"),
    };
    match v.verify(
        &RequestHead::new(&http::Method::POST, &uri, &headers),
        Bytes::from_static(body),
    )? {
        Verdict::Deliver(d) | Verdict::Ignored(d) => Ok(d),
        Verdict::Challenge(_) => Err(Rejection::InvalidPayload("a challenge, not a delivery")),
    }
}

/// Runs a future that never waits on I/O (the in-memory store's) to completion.
///
/// ```
/// assert_eq!(hookguard_core::testing::block_on(async { 7 }), 7);
/// ```
pub fn block_on<F: Future>(f: F) -> F::Output {
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}
