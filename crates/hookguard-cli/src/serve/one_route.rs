//! `serve`'s webhook route without a router.
//!
//! `serve` listens for one path. An axum `Router` with that one route costs about eight
//! allocations per request of its own — the route layer's boxing of the service and of its
//! future, the path parameters put in the request's extensions, the method router — which
//! this does not: the path is compared, and the webhook layer's service is called directly.
//! (With `--ui` the inspector's recording middleware is an axum one, so that case keeps the
//! router.)

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use tower_service::Service;

/// `service` at one path, for every method (the webhook layer answers challenges and refuses
/// other methods itself); any other path is `404`, as a router's would be.
#[derive(Clone)]
pub struct OneRoute<S> {
    path: Arc<str>,
    service: S,
}

impl<S> OneRoute<S> {
    /// `service` at `path`.
    pub fn new(path: &str, service: S) -> Self {
        Self {
            path: path.into(),
            service,
        }
    }
}

impl<S> Service<http::Request<Body>> for OneRoute<S>
where
    S: Service<http::Request<Body>, Response = Response, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = Infallible;
    type Future = RouteFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if same_path(req.uri().path(), &self.path) {
            RouteFuture(Some(self.service.call(req)))
        } else {
            RouteFuture(None)
        }
    }
}

/// Whether a request's path is the route's: byte for byte, but for the case of the hex digits
/// of a percent-encoded byte (`%c3%bc` is `%C3%BC`: senders encode either way).
fn same_path(got: &str, want: &str) -> bool {
    if got == want {
        return true;
    }
    let (got, want) = (got.as_bytes(), want.as_bytes());
    if got.len() != want.len() {
        return false;
    }
    let mut hex_left = 0;
    got.iter().zip(want).all(|(g, w)| {
        let same = if hex_left > 0 {
            hex_left -= 1;
            g.eq_ignore_ascii_case(w)
        } else {
            g == w
        };
        if *w == b'%' && same {
            hex_left = 2;
        }
        same
    })
}

/// The route's answer, or `404` for another path.
pub struct RouteFuture<F>(Option<F>);

impl<F> Future for RouteFuture<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            Some(f) => Pin::new(f).poll(cx),
            None => Poll::Ready(Ok(http::StatusCode::NOT_FOUND.into_response())),
        }
    }
}

/// A handler's boxed answer.
pub type Answering = Pin<Box<dyn Future<Output = Response> + Send>>;

/// A handler: its state and the request in, the answer out.
pub type HandleFn<T> = fn(Arc<T>, http::Request<Body>) -> Answering;

/// An inner service that answers with `handle(request)` (one boxed future per request, as an
/// axum handler's).
pub struct Handle<T> {
    state: Arc<T>,
    handle: HandleFn<T>,
}

impl<T> Clone for Handle<T> {
    fn clone(&self) -> Self {
        Self {
            state: Arc::clone(&self.state),
            handle: self.handle,
        }
    }
}

impl<T> Handle<T> {
    /// Calls `handle` with `state` and each request.
    pub fn new(state: Arc<T>, handle: HandleFn<T>) -> Self {
        Self { state, handle }
    }
}

impl<T> Service<http::Request<Body>> for Handle<T> {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Answer {
        Answer((self.handle)(Arc::clone(&self.state), req))
    }
}

/// A [`Handle`]'s answer.
pub struct Answer(Answering);

impl Future for Answer {
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx).map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tryout's review: `--path /%C3%BC…` answered `404` to a sender encoding `%c3%bc`.
    #[test]
    fn a_percent_encoded_byte_matches_in_either_case_and_nothing_else_does() {
        assert!(same_path("/webhooks", "/webhooks"));
        assert!(same_path("/%c3%bcn", "/%C3%BCn"));
        assert!(same_path("/%C3%BCn", "/%c3%bcn"));
        assert!(!same_path("/Webhooks", "/webhooks"));
        assert!(!same_path("/%c3%bcN", "/%C3%BCn"), "only the two hex digits");
        assert!(!same_path("/%c3%bc", "/%C3%BCn"));
    }

    fn answer(route: &mut OneRoute<Handle<()>>, method: &str, target: &str) -> (u16, String) {
        let req = http::Request::builder()
            .method(method)
            .uri(target)
            .body(Body::empty())
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let r = route.call(req).await.unwrap();
            let status = r.status().as_u16();
            let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
            (status, String::from_utf8(body.to_vec()).unwrap())
        })
    }

    #[test]
    fn the_path_is_served_for_every_method_and_every_other_path_is_404() {
        let echo = Handle::new(Arc::new(()), |_, req| {
            Box::pin(async move { format!("{} {}", req.method(), req.uri()).into_response() })
        });
        let mut route = OneRoute::new("/webhooks", echo);
        assert_eq!(answer(&mut route, "POST", "/webhooks"), (200, "POST /webhooks".into()));
        assert_eq!(
            answer(&mut route, "GET", "/webhooks?challenge=x"),
            (200, "GET /webhooks?challenge=x".into())
        );
        assert_eq!(answer(&mut route, "PUT", "/webhooks"), (200, "PUT /webhooks".into()));
        for other in ["/", "/webhooks/", "/webhook", "/webhooks/x", "/Webhooks"] {
            assert_eq!(answer(&mut route, "POST", other).0, 404, "{other}");
        }
    }
}
