//! The floor of the layer and `serve` benches: what any middleware that verifies a body MAC
//! must do, and nothing else — take the whole body, check the BuildWorkPro signature over it
//! with a bare HMAC keyed once (the same work as the benches' bare HMAC), and hand the
//! request on with the body put back. No JSON, no dedupe, no bounds, no timers. A floor server
//! minus the plain server minus the bare HMAC is the plumbing every such middleware pays in
//! that framework; hookguard's own work is what it adds on top. Included by path.

// Each bench uses part of it.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hmac::{Hmac, Mac};

use super::load::SECRET;

/// The HMAC keyed once with the benches' secret (as hookguard keys it once), cloned per use.
pub fn keyed() -> Hmac<sha2::Sha256> {
    static KEYED: std::sync::OnceLock<Hmac<sha2::Sha256>> = std::sync::OnceLock::new();
    KEYED
        .get_or_init(|| Hmac::new_from_slice(SECRET.as_bytes()).expect("any key length"))
        .clone()
}

/// Whether `header` (`t=…,v1=<64 hex>`) signs `t.` + `body`.
pub fn genuine(header: Option<&[u8]>, body: &[u8]) -> bool {
    let Some(rest) = header.and_then(|h| h.strip_prefix(b"t=")) else {
        return false;
    };
    let Some(comma) = rest.iter().position(|&b| b == b',') else {
        return false;
    };
    let (t, hex) = (&rest[..comma], &rest[comma + 1..]);
    let Some(hex) = hex.strip_prefix(b"v1=").filter(|h| h.len() == 64) else {
        return false;
    };
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut sig = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(h), Some(l)) => sig[i] = h << 4 | l,
            _ => return false,
        }
    }
    let mut mac = keyed();
    mac.update(t);
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

pub const HEADER: &str = "buildworkpro-signature";

/// The tower service: one boxed future, as most tower middlewares that await a body have.
#[derive(Clone)]
pub struct Axum<S>(pub S);

impl<S> tower_service::Service<axum::extract::Request> for Axum<S>
where
    S: tower_service::Service<axum::extract::Request, Response = axum::response::Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: axum::extract::Request) -> Self::Future {
        use axum::response::IntoResponse as _;
        use http_body_util::BodyExt as _;
        let ready = self.0.clone();
        let mut inner = std::mem::replace(&mut self.0, ready);
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let Ok(collected) = body.collect().await else {
                return Ok(http::StatusCode::BAD_REQUEST.into_response());
            };
            let body = collected.to_bytes();
            if !genuine(parts.headers.get(HEADER).map(|v| v.as_bytes()), &body) {
                return Ok(http::StatusCode::UNAUTHORIZED.into_response());
            }
            inner.call(axum::extract::Request::from_parts(parts, body.into())).await
        })
    }
}
