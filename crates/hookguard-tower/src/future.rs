use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hookguard_core::{Finishable, GivenUp};
use http::Response;

type Inner<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

/// Response future of [`WebhookService`](crate::WebhookService).
///
/// One allocation per request: the future spans the body read, the dedupe store round trip
/// and the inner call, and is boxed once rather than nested per step.
///
/// Dropped before it is done — the sender's client hung up at its timeout (hyper then drops
/// the request's future), or a timeout layer outside this one answered — it is finished in
/// the background on the current tokio runtime, as actix-web finishes a request whose client
/// closed the connection (and `hookguard_actix::ResponseFuture` one whose connection was
/// reset): the handler runs to its end and its claim is completed, so the sender's retry
/// is answered `duplicate` instead of running the handler again from the start (handlers are
/// rarely safe to stop at any `.await`); its `2xx` counts as a failure in the sender's health
/// ([`answer_given_up`](hookguard_core::answer_given_up)): the sender got no answer. It goes
/// on for at most the receiver's
/// [`background_limit`](hookguard_core::Receiver::background_limit) (the handler budget, or
/// as long as its claim is renewed), then is dropped. Outside a runtime, after a panic in a
/// poll, or with [`MAX_DETACHED`] requests of this process finishing in the background
/// already, it is dropped as it is (the claim is released: the sender's retry runs it again).
/// At shutdown, [`finish_detached`] waits for them.
///
/// ```
/// use std::convert::Infallible;
/// use axum::{body::Body, http::{Request, Response, StatusCode}};
/// use hookguard_core::schemes::BuildWorkPro;
/// use hookguard_tower::{ResponseFuture, WebhookLayer};
/// use tower::{service_fn, Layer, Service, ServiceExt};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let layer = WebhookLayer::builder(BuildWorkPro::new()).secret("whsec_k").build().unwrap();
/// let mut svc = layer.layer(service_fn(|_: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::empty())) }));
/// let unsigned = Request::post("/hook").body(Body::from("{}")).unwrap();
/// let answer: ResponseFuture<Body, Infallible> = svc.ready().await.unwrap().call(unsigned);
/// assert_eq!(answer.await.unwrap().status(), StatusCode::UNAUTHORIZED);
/// # }
/// ```
pub struct ResponseFuture<B, E> {
    inner: Finishable<Inner<B, E>>,
    /// Spawns the rest of `inner` (chosen where `B` and `E` are known to be `'static`).
    finish: fn(&tokio::runtime::Handle, Inner<B, E>, Detached, GivenUp),
    /// The sender, how long it waits and how long the rest may go on.
    sender: GivenUp,
}

/// The most requests of this process finished in the background at once: they escape the
/// server's own limits (its connection limit, a concurrency limit outside this layer), so a
/// slow dependency with senders that hang up must not pile them up without end.
///
/// ```
/// assert_eq!(hookguard_tower::MAX_DETACHED, 1024);
/// ```
pub const MAX_DETACHED: usize = 1024;

/// Requests of this process finishing in the background now.
static DETACHED: AtomicUsize = AtomicUsize::new(0);

/// One request finishing in the background, counted in [`DETACHED`] while it lives.
pub(crate) struct Detached(());

impl Detached {
    /// A place, or `None` when [`MAX_DETACHED`] are taken.
    fn enter() -> Option<Self> {
        DETACHED
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_DETACHED).then_some(n + 1)
            })
            .ok()
            .map(|_| Detached(()))
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        DETACHED.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Waits until no request of this process is finishing in the background (requests whose
/// senders hung up, see [`ResponseFuture`]), for at most `limit`; the number still running
/// then. Call it after the server stopped (`axum::serve(..).with_graceful_shutdown(..)`
/// returned) and before the runtime ends: a runtime shut down drops them mid-`.await`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let left = hookguard_tower::finish_detached(std::time::Duration::from_secs(30)).await;
/// assert_eq!(left, 0);
/// # }
/// ```
pub async fn finish_detached(limit: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let n = DETACHED.load(Ordering::Acquire);
        if n == 0 || tokio::time::Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + Duration::from_millis(10))).await;
    }
}

/// Runs the rest of a dropped request's future on `rt` ([`GivenUp::finish`]).
fn finish_in_background<B: Send + 'static, E: Send + 'static>(
    rt: &tokio::runtime::Handle,
    rest: Inner<B, E>,
    place: Detached,
    sender: GivenUp,
) {
    rt.spawn(async move {
        sender.finish(rest).await;
        drop(place);
    });
}

impl<B: Send + 'static, E: Send + 'static> ResponseFuture<B, E> {
    pub(crate) fn new(f: impl Future<Output = Result<Response<B>, E>> + Send + 'static, sender: GivenUp) -> Self {
        Self {
            inner: Finishable::new(Box::pin(f)),
            finish: finish_in_background::<B, E>,
            sender,
        }
    }
}

impl<B, E> fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("done", &self.inner.is_done())
            .finish_non_exhaustive()
    }
}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<B>, E>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().inner).poll(cx)
    }
}

impl<B, E> Drop for ResponseFuture<B, E> {
    fn drop(&mut self) {
        // Not after a poll that panicked (see `Finishable`).
        if let Some(rest) = self.inner.take_rest() {
            // Outside a runtime nothing can finish it: dropped as it is, quietly.
            let Ok(rt) = tokio::runtime::Handle::try_current() else {
                return;
            };
            let Some(place) = Detached::enter() else {
                self.sender.warn_too_many(MAX_DETACHED, "of this process");
                return;
            };
            self.sender
                .warn_finishing("its sender closed the connection, or a timeout answered");
            (self.finish)(&rt, rest, place, self.sender);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// A Procore receiver's, going on in the background for at most `budget` (its handler
    /// budget), else the default limit.
    fn sender(budget: Option<Duration>) -> GivenUp {
        let v = hookguard_core::Verifier::builder(hookguard_core::schemes::Procore::new())
            .secret("Bearer t")
            .build()
            .unwrap();
        GivenUp::of(&hookguard_core::Receiver::new(v).with_budget(budget))
    }

    /// A request's future dropped half-way (its client went away) is finished in the
    /// background; one that completed, or whose poll panicked, is not run again.
    #[tokio::test]
    async fn a_dropped_response_future_finishes_in_the_background() {
        assert!(started_then_dropped().await, "the rest of the request did not run");

        // A poll that panicked: dropped as it is (a future must not be polled again then).
        let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut p = ResponseFuture::<(), ()>::new(PanicsOnSecondPoll(Arc::clone(&polls)), sender(None));
        assert!(futures_poll_once(&mut p).is_pending());
        let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| futures_poll_once(&mut p)));
        assert!(again.is_err());
        drop(p);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(polls.load(Ordering::SeqCst), 2, "polled again after its panic");

        // A completed one is not run again.
        let ready = Arc::new(std::sync::atomic::AtomicUsize::new(2));
        let mut c = ResponseFuture::<(), ()>::new(PanicsOnSecondPoll(Arc::clone(&ready)), sender(None));
        assert!(futures_poll_once(&mut c).is_ready());
        drop(c);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(ready.load(Ordering::SeqCst), 3);

        // With MAX_DETACHED finishing already, one more is dropped as it is.
        let taken: Vec<_> = std::iter::from_fn(Detached::enter).collect();
        assert_eq!(taken.len(), MAX_DETACHED);
        assert!(!started_then_dropped().await, "finished beyond the bound");
        drop(taken);
        assert_eq!(DETACHED.load(Ordering::SeqCst), 0);

        // `finish_detached` waits for them: for at most its limit, then says how many are left.
        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        let mut f = ResponseFuture::<(), ()>::new(
            async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                flag.store(true, Ordering::SeqCst);
                Ok(Response::new(()))
            },
            sender(None),
        );
        assert!(futures_poll_once(&mut f).is_pending());
        drop(f);
        assert_eq!(finish_detached(Duration::from_millis(20)).await, 1);
        assert_eq!(finish_detached(Duration::from_secs(10)).await, 0);
        assert!(ran.load(Ordering::SeqCst), "returned before the request finished");

        // One that never ends is dropped at the receiver's background limit (its claim is
        // released with it), and its place is given back.
        struct SetOnDrop(Arc<AtomicBool>);
        impl Drop for SetOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let held = SetOnDrop(Arc::clone(&dropped));
        let stuck = sender(Some(Duration::from_millis(100)));
        assert_eq!(stuck.limit(), Duration::from_millis(100));
        let mut f = ResponseFuture::<(), ()>::new(
            async move {
                let _held = held;
                std::future::pending::<()>().await;
                Ok(Response::new(()))
            },
            stuck,
        );
        assert!(futures_poll_once(&mut f).is_pending());
        drop(f);
        assert_eq!(finish_detached(Duration::from_secs(10)).await, 0);
        assert!(dropped.load(Ordering::SeqCst), "a stuck request outlived its limit");
    }

    /// Whether a request started, then dropped while it waits, ran to its end.
    async fn started_then_dropped() -> bool {
        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        let mut f = ResponseFuture::<(), ()>::new(
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                flag.store(true, Ordering::SeqCst);
                Ok(Response::new(()))
            },
            sender(None),
        );
        assert!(futures_poll_once(&mut f).is_pending());
        drop(f);
        tokio::time::sleep(Duration::from_millis(300)).await;
        ran.load(Ordering::SeqCst)
    }

    /// Pending on its first poll, panics on its second, counts every poll.
    struct PanicsOnSecondPoll(Arc<std::sync::atomic::AtomicUsize>);

    impl Future for PanicsOnSecondPoll {
        type Output = Result<Response<()>, ()>;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            match self.0.fetch_add(1, Ordering::SeqCst) {
                0 => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                1 => panic!("the handler panics"),
                _ => Poll::Ready(Ok(Response::new(()))),
            }
        }
    }

    fn futures_poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        let waker = std::task::Waker::noop();
        Pin::new(f).poll(&mut Context::from_waker(waker))
    }
}
