//! [`ResponseFuture`]: the middleware's future, finished on the worker's thread when actix-web
//! drops it half-way.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::Error;
use futures_util::future::LocalBoxFuture;
use hookguard_core::{Finishable, GivenUp};

/// Response future of [`WebhookMiddleware`](crate::WebhookMiddleware).
///
/// actix-web drops a request's future when its connection fails while the request runs: the
/// sender's client (or a load balancer between) resets the connection, or closes it with
/// `HttpServer::h1_allow_half_closed(false)`. Dropped before it is done, this future's rest
/// is finished as a task of the same worker thread, as the tower layer finishes one: the
/// handler runs to its end and its claim is completed, so the sender's retry is answered
/// `duplicate` instead of running the handler again from the start (handlers are rarely safe
/// to stop at any `.await`); its `2xx` counts as a failure in the sender's health
/// ([`answer_given_up`](hookguard_core::answer_given_up)): the sender got no answer. It goes
/// on for at most the receiver's
/// [`background_limit`](hookguard_core::Receiver::background_limit), then is dropped. Outside
/// an actix-web worker (no `System`), after a panic in a poll, or with [`MAX_DETACHED`]
/// requests of this worker thread finishing in the background already, it is dropped as it is (the
/// claim is released: the sender's retry runs it again). A worker that stops ends them.
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
/// // `call_service` awaits the middleware's `ResponseFuture`.
/// let res = test::call_service(&app, test::TestRequest::post().uri("/gh").set_payload("{}").to_request()).await;
/// assert_eq!(res.status(), 401);
/// # });
/// ```
pub struct ResponseFuture<R> {
    inner: Finishable<Inner<R>>,
    /// Spawns the rest of `inner` (chosen where `R` is known to be `'static`).
    finish: fn(Inner<R>, Detached, GivenUp),
    sender: GivenUp,
}

type Inner<R> = LocalBoxFuture<'static, Result<R, Error>>;

/// The most requests of one worker thread finished in the background at once: they escape
/// the server's own limits (its connection limit), so a slow dependency with senders that
/// reset their connections must not pile them up without end.
///
/// ```
/// assert_eq!(hookguard_actix::MAX_DETACHED, 1024);
/// ```
pub const MAX_DETACHED: usize = 1024;

std::thread_local! {
    /// Requests of this worker thread finishing in the background now.
    static DETACHED: Cell<usize> = const { Cell::new(0) };
}

/// One request finishing in the background, counted in [`DETACHED`] while it lives.
pub(crate) struct Detached(());

impl Detached {
    /// A place, or `None` when [`MAX_DETACHED`] are taken.
    fn enter() -> Option<Self> {
        DETACHED.with(|n| {
            (n.get() < MAX_DETACHED).then(|| {
                n.set(n.get() + 1);
                Detached(())
            })
        })
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        DETACHED.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

impl<R: 'static> ResponseFuture<R> {
    pub(crate) fn new(f: Inner<R>, sender: GivenUp) -> Self {
        Self {
            inner: Finishable::new(f),
            finish: finish_in_background::<R>,
            sender,
        }
    }
}

/// Runs the rest of a dropped request's future as a task of this worker thread
/// ([`GivenUp::finish`]).
fn finish_in_background<R: 'static>(rest: Inner<R>, place: Detached, sender: GivenUp) {
    actix_web::rt::spawn(async move {
        sender.finish(rest).await;
        drop(place);
    });
}

impl<R> fmt::Debug for ResponseFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("done", &self.inner.is_done())
            .finish_non_exhaustive()
    }
}

impl<R> Future for ResponseFuture<R> {
    type Output = Result<R, Error>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().inner).poll(cx)
    }
}

impl<R> Drop for ResponseFuture<R> {
    fn drop(&mut self) {
        // Not after a poll that panicked (see `Finishable`).
        let Some(rest) = self.inner.take_rest() else { return };
        // Outside an actix-web worker there is no thread's task set to finish it on (and
        // `spawn` would panic): dropped as it is, quietly.
        if actix_web::rt::System::try_current().is_none() {
            return;
        }
        let Some(place) = Detached::enter() else {
            self.sender.warn_too_many(MAX_DETACHED, "of this worker thread");
            return;
        };
        self.sender
            .warn_finishing("its connection failed: the sender or a proxy reset it");
        (self.finish)(rest, place, self.sender);
    }
}
