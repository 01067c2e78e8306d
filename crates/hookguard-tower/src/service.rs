use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Buf;
use bytes::Bytes;
use hookguard_core::{HandlerOutcome, Receiver, Rejection, Reply, RequestHead};
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::future::ResponseFuture;

/// axum's own body extractors (`Bytes`, `String`, `Json`, `Form`) re-limit the body (2 MiB
/// unless a `DefaultBodyLimit` says otherwise). The body was read and bounded here already, so
/// the verifier's limit is theirs too, whatever the application set around the route: a
/// smaller limit of its own would answer a genuine, verified delivery `413`, which senders take
/// as permanent (the delivery lost). Never less than axum's default, as the actix middleware
/// never goes below actix's: a layer inside this one may hand on a larger body than the one
/// verified (a decompression layer measures the decoded body against this limit); more with
/// [`WebhookLayer::extractor_limit`](crate::WebhookLayer::extractor_limit). A
/// `DefaultBodyLimit` layered inside this layer, on the handler itself, is applied after this
/// one and still wins.
#[cfg(feature = "axum")]
fn with_body_limit<B>(mut req: Request<B>, limit: usize) -> Request<B> {
    axum::extract::DefaultBodyLimit::max(limit).apply(&mut req);
    req
}

/// The service [`WebhookLayer`](crate::WebhookLayer) produces.
///
/// The inner service receives the request rebuilt around the verified body bytes (the body type
/// must be `From<Bytes>`, like `axum::body::Body` or `http_body_util::Full<Bytes>`) with the
/// [`Delivery`](hookguard_core::Delivery) in its extensions.
///
/// ```
/// use std::convert::Infallible;
/// use axum::{body::Body, http::{Request, Response}};
/// use hookguard_core::{clock::ManualClock, schemes::BuildWorkPro, Delivery, Scheme, SignParams};
/// use hookguard_tower::WebhookLayer;
/// use tower::{service_fn, Layer, ServiceExt};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # const NOW: u64 = 1_700_000_000;
/// # let body = r#"{"id":"evt_1","type":"bid.accepted"}"#;
/// # let signed = BuildWorkPro::new().sign("whsec_k", body.as_bytes(), &SignParams::new(NOW)).unwrap();
/// # let mut req = Request::post("/hook").body(Body::from(body)).unwrap();
/// # req.headers_mut().extend(signed.headers);
/// let layer = WebhookLayer::builder(BuildWorkPro::new()).secret("whsec_k").clock(ManualClock::new(NOW)).build().unwrap();
/// let svc = layer.layer(service_fn(|req: Request<Body>| async move {
///     let id = req.extensions().get::<Delivery>().and_then(|d| d.event_id()).unwrap_or_default().to_owned();
///     Ok::<_, Infallible>(Response::new(Body::from(id)))
/// }));
/// let res = svc.oneshot(req).await.unwrap(); // `req`: a delivery signed as BuildWorkPro signs it
/// assert_eq!(axum::body::to_bytes(res.into_body(), 1024).await.unwrap(), "evt_1");
/// # }
/// ```
pub struct WebhookService<S> {
    inner: S,
    receiver: Arc<Receiver>,
    /// The sender, how long it waits and how long a request whose sender hung up may go on
    /// (read once here, not per request).
    sender: hookguard_core::GivenUp,
    /// The limit axum's extractors get (see `with_body_limit`).
    #[cfg(feature = "axum")]
    body_limit: usize,
}

impl<S: Clone> Clone for WebhookService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            receiver: Arc::clone(&self.receiver),
            sender: self.sender,
            #[cfg(feature = "axum")]
            body_limit: self.body_limit,
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
    pub(crate) fn new(inner: S, receiver: Arc<Receiver>, #[cfg(feature = "axum")] body_limit: usize) -> Self {
        Self {
            inner,
            sender: hookguard_core::GivenUp::of(&receiver),
            receiver,
            #[cfg(feature = "axum")]
            body_limit,
        }
    }

    /// The inner service.
    ///
    /// ```
    /// use axum::{http::StatusCode, routing::post, Router};
    /// use hookguard_core::schemes::BuildWorkPro;
    /// use tower::Layer;
    /// let layer = hookguard_tower::WebhookLayer::builder(BuildWorkPro::new()).secret("whsec_k").build().unwrap();
    /// let router: Router = Router::new().route("/hook", post(|| async { StatusCode::NO_CONTENT }));
    /// let svc = layer.layer(router);
    /// assert!(svc.get_ref().has_routes());
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// Reads a whole body of at most `limit` bytes (the layer's read, and the standalone
/// extractor's). A body that came in one frame (a delivery
/// that arrived with its head, the usual case) is that frame's bytes as they are — no list of
/// frames, no copy; one of several frames is joined once.
pub(crate) async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, Rejection>
where
    B: Body,
    B::Error: std::error::Error + 'static,
{
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut joined: Option<bytes::BytesMut> = None;
    let mut len = 0usize;
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let Ok(mut data) = frame.map_err(|e| body_error(&e, len))?.into_data() else {
            continue; // trailers: not part of the signed bytes
        };
        len = len.saturating_add(data.remaining());
        if len > limit {
            return Err(Rejection::BodyTooLarge { limit });
        }
        let chunk = data.copy_to_bytes(data.remaining());
        match (&mut joined, first.take()) {
            (Some(all), _) => all.extend_from_slice(&chunk),
            (None, None) => first = Some(chunk),
            (None, Some(one)) => {
                // Room for what the sender declared (the bytes so far and what it says is
                // left), within bounds.
                let hint = usize::try_from(body.size_hint().lower()).unwrap_or(0);
                let room = hookguard_core::join_capacity(len, len.saturating_add(hint), limit);
                let mut all = bytes::BytesMut::with_capacity(room);
                all.extend_from_slice(&one);
                all.extend_from_slice(&chunk);
                joined = Some(all);
            }
        }
        if body.is_end_stream() {
            break;
        }
    }
    Ok(joined.map_or_else(|| first.unwrap_or_default(), bytes::BytesMut::freeze))
}

/// What a body's error answers. Another layer outside this one may have failed the body:
/// a length limit (`http_body_util::Limited`, under tower-http's `RequestBodyLimitLayer` and
/// axum's `DefaultBodyLimit`) is `503 body_too_large` like the layer's own limit (`limit` is
/// what had been read: the body is larger), a timeout (tower-http's `RequestBodyTimeoutLayer`, or an I/O time-out) is `408
/// body_read_timeout`, which every sender retries. A plain `400 body_read_failed` for those
/// would make BuildWorkPro drop the event for a fault of this side. Anything else (the
/// connection broke: nobody reads the answer) stays `400 body_read_failed`.
fn body_error(error: &(dyn std::error::Error + 'static), read: usize) -> Rejection {
    if hookguard_core::error_causes(error).any(|e| e.is::<http_body_util::LengthLimitError>()) {
        Rejection::BodyTooLarge { limit: read }
    } else if hookguard_core::body_error_timed_out(error) {
        Rejection::BodyReadTimeout
    } else {
        Rejection::BodyReadFailed
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
        #[cfg(feature = "axum")]
        let body_limit = self.body_limit;
        // Split before the async block: splitting inside would keep the whole request's storage
        // beside its parts in the future's state.
        let (mut parts, body) = req.into_parts();
        let sender = self.sender;
        ResponseFuture::new(
            async move {
                // The sender's timeout runs from here: reading the body counts too.
                let arrived = std::time::Instant::now();
                let head = RequestHead::new(&parts.method, &parts.uri, &parts.headers);
                let limit = match rx.precheck(&head) {
                    Ok(limit) => limit,
                    Err(answer) => return Ok(convert(answer)),
                };
                let read_timeout = rx.verifier().read_timeout();
                let read = hookguard_core::within(read_body(body, limit), || tokio::time::sleep(read_timeout));
                let bytes = match read.await {
                    Some(Ok(bytes)) => bytes,
                    None => return Ok(convert(rx.reject(&Rejection::BodyReadTimeout))),
                    Some(Err(r)) => return Ok(convert(rx.reject_read(&head, r))),
                };
                let admitted = match rx.admit_since(&head, bytes, arrived).await {
                    Ok(admitted) => admitted,
                    Err(answer) => return Ok(convert(answer)),
                };
                // The head is no longer borrowed: the request's own parts move into the handler's
                // request, nothing is copied.
                let budget = rx.budget();
                let reply = admitted
                    .run(|delivery| {
                        let body = ReqBody::from(delivery.body().clone());
                        parts.extensions.insert(delivery);
                        let req = Request::from_parts(parts, body);
                        #[cfg(feature = "axum")]
                        let req = with_body_limit(req, body_limit);
                        let deadline = budget.map(tokio::time::sleep);
                        HandlerOutcome::of(inner.call(req), deadline, |r| r.status().is_success())
                    })
                    .await?;
                Ok(match reply {
                    Reply::Handler(r) => r,
                    Reply::Respond(r) => convert(r),
                })
            },
            sender,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;

    use hookguard_core::testing::block_on;
    use http_body::Frame;

    use super::*;

    /// A body handing out the given frames one per poll.
    struct Frames(VecDeque<Result<Bytes, std::io::Error>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|f| f.map(Frame::data)))
        }
        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }
    }

    fn frames(parts: &[&'static [u8]]) -> Frames {
        Frames(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect())
    }

    #[test]
    fn a_body_in_one_frame_is_that_frame_and_several_are_joined() {
        let one = Bytes::from(vec![7u8; 4096]);
        let read = block_on(read_body(Frames(VecDeque::from([Ok(one.clone())])), 4096)).unwrap();
        assert_eq!(read.as_ptr(), one.as_ptr(), "the frame was copied");
        assert_eq!(
            block_on(read_body(frames(&[b"ab", b"", b"cd", b"e"]), 5)).unwrap(),
            "abcde"
        );
        assert_eq!(block_on(read_body(frames(&[]), 5)).unwrap(), "");
    }

    #[test]
    fn a_body_over_the_limit_or_failing_is_refused() {
        assert_eq!(
            block_on(read_body(frames(&[b"abc", b"def"]), 5)),
            Err(Rejection::BodyTooLarge { limit: 5 })
        );
        assert_eq!(
            block_on(read_body(frames(&[b"abcdef"]), 5)),
            Err(Rejection::BodyTooLarge { limit: 5 })
        );
        let failing = Frames(VecDeque::from([
            Ok(Bytes::from_static(b"ab")),
            Err(std::io::Error::other("reset")),
        ]));
        assert_eq!(block_on(read_body(failing, 5)), Err(Rejection::BodyReadFailed));
    }
}
