use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hookguard_core::{HandlerOutcome, Receiver, Rejection, Reply, RequestHead};
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use tower_service::Service;

use crate::future::ResponseFuture;

/// axum's default limit for its body extractors (`DefaultBodyLimit`).
#[cfg(feature = "axum")]
const AXUM_DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// axum's own body extractors (`Bytes`, `String`, `Json`) re-limit the body to 2 MiB unless
/// told otherwise: a verifier allowing more gives them its limit (below it, axum's default
/// already admits every body the verifier took).
#[cfg(feature = "axum")]
fn with_body_limit<B>(mut req: Request<B>, max_body: usize) -> Request<B> {
    if max_body > AXUM_DEFAULT_BODY_LIMIT {
        axum::extract::DefaultBodyLimit::max(max_body).apply(&mut req);
    }
    req
}

/// The service [`WebhookLayer`](crate::WebhookLayer) produces.
///
/// The inner service receives the request rebuilt around the verified body bytes (the body type
/// must be `From<Bytes>`, like `axum::body::Body` or `http_body_util::Full<Bytes>`) with the
/// [`Delivery`](hookguard_core::Delivery) in its extensions.
pub struct WebhookService<S> {
    inner: S,
    receiver: Arc<Receiver>,
}

impl<S: Clone> Clone for WebhookService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            receiver: Arc::clone(&self.receiver),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for WebhookService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookService")
            .field("inner", &self.inner)
            .field("receiver", &self.receiver)
            .finish()
    }
}

impl<S> WebhookService<S> {
    pub(crate) fn new(inner: S, receiver: Arc<Receiver>) -> Self {
        Self { inner, receiver }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

fn convert<B: From<Bytes>>(r: Response<Bytes>) -> Response<B> {
    r.map(B::from)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for WebhookService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: std::error::Error + Send + Sync + 'static,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // tower: the clone may not be ready; use the one we polled and leave the clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let rx = Arc::clone(&self.receiver);
        // Split before the async block: splitting inside would keep the whole request's storage
        // beside its parts in the future's state.
        let (mut parts, body) = req.into_parts();
        ResponseFuture::new(async move {
            let head = RequestHead::new(&parts.method, &parts.uri, &parts.headers);
            let limit = match rx.precheck(&head) {
                Ok(limit) => limit,
                Err(answer) => return Ok(convert(answer)),
            };
            let read_timeout = rx.verifier().read_timeout();
            let read = hookguard_core::within(Limited::new(body, limit).collect(), || tokio::time::sleep(read_timeout));
            let bytes = match read.await {
                Some(Ok(c)) => c.to_bytes(),
                None => return Ok(convert(rx.reject(&Rejection::BodyReadTimeout))),
                Some(Err(e)) => {
                    let r = if e.is::<http_body_util::LengthLimitError>() {
                        Rejection::BodyTooLarge { limit }
                    } else {
                        Rejection::BodyReadFailed
                    };
                    return Ok(convert(rx.reject(&r)));
                }
            };
            let admitted = match rx.admit(&head, bytes).await {
                Ok(admitted) => admitted,
                Err(answer) => return Ok(convert(answer)),
            };
            // The head is no longer borrowed: the request's own parts move into the handler's
            // request, nothing is copied.
            let budget = rx.budget();
            #[cfg(feature = "axum")]
            let max_body = rx.verifier().max_body();
            let reply = admitted
                .run(|delivery| {
                    let body = ReqBody::from(delivery.body().clone());
                    parts.extensions.insert(delivery);
                    let req = Request::from_parts(parts, body);
                    #[cfg(feature = "axum")]
                    let req = with_body_limit(req, max_body);
                    let deadline = budget.map(tokio::time::sleep);
                    HandlerOutcome::of(inner.call(req), deadline, |r| r.status().is_success())
                })
                .await?;
            Ok(match reply {
                Reply::Handler(r) => r,
                Reply::Respond(r) => convert(r),
            })
        })
    }
}
