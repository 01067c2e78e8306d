//! [`WebhookMiddleware`]: the service [`Webhook`](crate::Webhook) wraps around a resource.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::Extensions;
use actix_web::dev::{forward_ready, Payload, Service, ServiceRequest, ServiceResponse};
use actix_web::web::{self, PayloadConfig};
use actix_web::{Error, HttpMessage as _, HttpResponse, ResponseError};
use bytes::Bytes;
use hookguard_core::{HandlerOutcome, Receiver, Reply};

use crate::convert::{self, Head, Recent};
use crate::future::ResponseFuture;
use hookguard_core::GivenUp;

/// The middleware service [`Webhook`](crate::Webhook) builds around the wrapped service.
///
/// The wrapped service receives the request with the verified body put back as its payload
/// (so `web::Json`, `web::Bytes` and other extractors work as usual) and the
/// [`Delivery`](hookguard_core::Delivery) in the request extensions (read it with
/// [`Verified`](crate::Verified) or [`VerifiedDelivery`](crate::VerifiedDelivery)). Its 2xx
/// completes the dedupe claim; any other status or an error releases it.
///
/// ```
/// use actix_web::{test, web, App, HttpResponse};
/// use hookguard_core::schemes::GitHub;
/// use hookguard_actix::Webhook;
/// # actix_web::rt::System::new().block_on(async {
/// let hooks = Webhook::builder(GitHub::new()).secret("s").build().unwrap();
/// let app = test::init_service(
///     App::new().service(web::resource("/gh").wrap(hooks).route(web::post().to(HttpResponse::NoContent))),
/// )
/// .await;
/// // No signature: answered by the middleware, the handler never runs.
/// let res = test::call_service(&app, test::TestRequest::post().uri("/gh").set_payload("{}").to_request()).await;
/// assert_eq!(res.status(), 401);
/// # });
/// ```
pub struct WebhookMiddleware<S> {
    service: Rc<S>,
    receiver: Arc<Receiver>,
    /// actix's default `PayloadConfig`, `web::Json`'s `JsonConfig` and `web::Form`'s
    /// `FormConfig` with their limits raised to the verifier's (see [`lifted`]), built once per
    /// worker for applications that configure none of them.
    limits: Rc<Extensions>,
    /// The extractors' limit (see [`Limits`]).
    limit: Limits,
    /// Request targets and header names already converted to `http` 1.x form, for the next
    /// requests.
    recent: RefCell<Recent>,
    /// For a request finished in the background (see [`ResponseFuture`]).
    sender: GivenUp,
}

/// actix-web's default limits of `web::Bytes`/`String` (`PayloadConfig`), `web::Json`
/// (`JsonConfig`) and `web::Form` (`FormConfig`).
const PAYLOAD_DEFAULT_LIMIT: usize = 256 * 1024;
const JSON_DEFAULT_LIMIT: usize = 2 * 1024 * 1024;
const FORM_DEFAULT_LIMIT: usize = 16 * 1024;

/// The limit each body extractor gets: the one the application set
/// ([`Webhook::extractor_limit`](crate::Webhook::extractor_limit)), else actix's default of that
/// extractor; never below the verifier's `max_body`.
#[derive(Clone, Copy, Debug)]
struct Limits {
    max_body: usize,
    set: Option<usize>,
}

impl Limits {
    fn of(self, actix_default: usize) -> usize {
        hookguard_core::extractor_limit(self.set, actix_default, self.max_body)
    }
}

/// The handler's body extractors re-limit the body: `web::Bytes` and `String` with
/// `PayloadConfig`, `web::Json` with `JsonConfig`, `web::Form` with `FormConfig`. The body was
/// read and bounded here already, so each gets at least the verifier's limit (never less than
/// actix's own default, which a compressed body's decoded size is measured against), also over
/// a smaller one the application configured around the resource: that would answer a genuine,
/// verified delivery `413`, which senders take as permanent (the delivery lost). The rest of
/// an application's config (accepted content types, error handlers) is kept: its config is
/// cloned with only the limit changed. `None` when the application configured none of the
/// three (the prebuilt `limits` then serve).
fn lifted(req: &ServiceRequest, limit: Limits) -> Option<Extensions> {
    fn own<T: Clone + 'static>(req: &ServiceRequest) -> Option<T> {
        req.app_data::<T>()
            .or_else(|| req.app_data::<web::Data<T>>().map(|d| d.as_ref()))
            .cloned()
    }
    let payload = own::<PayloadConfig>(req);
    let json = own::<web::JsonConfig>(req);
    let form = own::<web::FormConfig>(req);
    if payload.is_none() && json.is_none() && form.is_none() {
        return None;
    }
    Some(raised(payload, json, form, limit))
}

/// The three configs with their limits raised (see [`lifted`]): the application's own where it
/// has one, actix's default otherwise.
fn raised(
    payload: Option<PayloadConfig>,
    json: Option<web::JsonConfig>,
    form: Option<web::FormConfig>,
    limit: Limits,
) -> Extensions {
    let mut c = Extensions::new();
    c.insert(payload.unwrap_or_default().limit(limit.of(PAYLOAD_DEFAULT_LIMIT)));
    c.insert(json.unwrap_or_default().limit(limit.of(JSON_DEFAULT_LIMIT)));
    c.insert(form.unwrap_or_default().limit(limit.of(FORM_DEFAULT_LIMIT)));
    c
}

impl<S> WebhookMiddleware<S> {
    pub(crate) fn new(service: Rc<S>, receiver: Arc<Receiver>, set: Option<usize>) -> Self {
        let sender = GivenUp::of(&receiver);
        let limit = Limits {
            max_body: receiver.verifier().max_body(),
            set,
        };
        Self {
            service,
            receiver,
            limits: Rc::new(raised(None, None, None, limit)),
            limit,
            recent: RefCell::default(),
            sender,
        }
    }
}

impl<S> fmt::Debug for WebhookMiddleware<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookMiddleware")
            .field("receiver", &self.receiver)
            .finish_non_exhaustive()
    }
}

/// Lifts a core answer (rejection, challenge, duplicate, ignored) into a response around `req`.
fn answer<B>(req: ServiceRequest, r: &http::Response<Bytes>) -> ServiceResponse<EitherBody<B>> {
    req.into_response(convert::response(r)).map_into_right_body()
}

impl<S, B> Service<ServiceRequest> for WebhookMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = ResponseFuture<Self::Response>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        let rx = Arc::clone(&self.receiver);
        let limits = Rc::clone(&self.limits);
        let extractors = self.limit;
        let head = Head::with(req.head(), Some(&mut self.recent.borrow_mut()));
        let sender = self.sender;
        ResponseFuture::new(
            Box::pin(async move {
                // The sender's timeout runs from here: reading the body counts too.
                let arrived = std::time::Instant::now();
                let head = match head {
                    Ok(head) => head,
                    Err(r) => return Ok(answer(req, &rx.reject(&r))),
                };
                let limit = match rx.precheck(&head.as_core()) {
                    Ok(limit) => limit,
                    Err(early) => return Ok(answer(req, &early)),
                };
                let mut payload = req.take_payload();
                let read_timeout = rx.verifier().read_timeout();
                let body = match convert::read_body_within(&mut payload, &head, limit, read_timeout).await {
                    Ok(body) => body,
                    Err(r) => return Ok(answer(req, &rx.reject_read(&head.as_core(), r))),
                };
                let budget = rx.budget();
                // The request goes to the handler only for a new, genuine delivery; otherwise it
                // stays here to carry hookguard's own answer.
                let mut waiting = Some(req);
                let reply = rx
                    .deliver_since(&head.as_core(), body, arrived, |delivery| {
                        let mut req = waiting.take().expect("the core calls the handler at most once");
                        req.set_payload(Payload::from(delivery.body().clone()));
                        // The extractors' limits (see `lifted`); the container added last is
                        // looked at first.
                        match lifted(&req, extractors) {
                            Some(own) => req.add_data_container(Rc::new(own)),
                            None => req.add_data_container(limits),
                        }
                        req.extensions_mut().insert(delivery);
                        let deadline = budget.map(tokio::time::sleep);
                        HandlerOutcome::of(service.call(req), deadline, |r| r.status().is_success())
                    })
                    .await?;
                match (reply, waiting) {
                    (Reply::Handler(res), _) => Ok(res.map_into_left_body()),
                    (Reply::Respond(r), Some(req)) => Ok(answer(req, &r)),
                    // Over budget: the request was dropped with the handler's future, so the answer
                    // travels as an error whose response is exactly the core's.
                    (Reply::Respond(r), None) => Err(Answered(r).into()),
                }
            }),
            sender,
        )
    }
}

/// A core answer returned as an error, because no request was left to build a response around.
struct Answered(http::Response<Bytes>);

impl fmt::Debug for Answered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Answered").field(&self.0.status()).finish()
    }
}

impl fmt::Display for Answered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "webhook answered {}", self.0.status())
    }
}

impl ResponseError for Answered {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::from_u16(self.0.status().as_u16())
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        convert::response(&self.0)
    }
}
