use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

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
/// went away: the handler runs to its end and its claim is completed, so the sender's retry
/// is answered `duplicate` instead of running the handler again from the start (handlers are
/// rarely safe to stop at any `.await`); its `2xx` counts as a failure in the sender's health
/// ([`answer_given_up`](hookguard_core::answer_given_up)): the sender got no answer. Outside a runtime, after a panic in a poll, or with [`MAX_DETACHED`]
/// requests of this process finishing in the background already, it is dropped as it is (the
/// claim is released: the sender's retry runs it again).
pub struct ResponseFuture<B, E> {
    inner: Option<Inner<B, E>>,
    /// Set while `inner` is polled: still set at drop means a poll panicked, and such a
    /// future must not be polled again.
    polling: bool,
    /// Spawns the rest of `inner` (chosen where `B` and `E` are known to be `'static`).
    finish: fn(Inner<B, E>, Detached),
    /// The sender and how long it waits, for the warning when the answer is given up.
    sender: (hookguard_core::Provider, std::time::Duration),
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

/// Runs the rest of a dropped request's future on the current runtime, if any.
fn finish_in_background<B: Send + 'static, E: Send + 'static>(rest: Inner<B, E>, place: Detached) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            // Its 2xx, if any, is a failure to the sender, which got no answer.
            let _ = hookguard_core::answer_given_up(rest).await;
            drop(place);
        });
    }
}

impl<B: Send + 'static, E: Send + 'static> ResponseFuture<B, E> {
    pub(crate) fn new(
        f: impl Future<Output = Result<Response<B>, E>> + Send + 'static,
        sender: (hookguard_core::Provider, std::time::Duration),
    ) -> Self {
        Self {
            inner: Some(Box::pin(f)),
            polling: false,
            finish: finish_in_background::<B, E>,
            sender,
        }
    }
}

impl<B, E> fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("done", &self.inner.is_none())
            .finish_non_exhaustive()
    }
}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<B>, E>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            panic!("ResponseFuture polled after it completed");
        };
        this.polling = true;
        let out = inner.as_mut().poll(cx);
        this.polling = false;
        if out.is_ready() {
            this.inner = None;
        }
        out
    }
}

impl<B, E> Drop for ResponseFuture<B, E> {
    fn drop(&mut self) {
        if let Some(rest) = self.inner.take() {
            if !self.polling {
                let (provider, waits) = self.sender;
                let Some(place) = Detached::enter() else {
                    tracing::warn!(
                        %provider,
                        "a request's answer was given up before it was ready, and {MAX_DETACHED} requests are finishing in the background already: this one is dropped (its claim released; the sender's retry runs it again)"
                    );
                    return;
                };
                tracing::warn!(
                    %provider,
                    "a request's answer was given up before it was ready (its sender closed the connection, or a timeout answered): the sender counts a failure and retries; the request is finished in the background. A handler that may outlast the sender's timeout ({} s) belongs in the inbox",
                    waits.as_secs_f64()
                );
                (self.finish)(rest, place);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    const SENDER: (hookguard_core::Provider, Duration) = (hookguard_core::Provider::Procore, Duration::from_secs(5));

    /// A request's future dropped half-way (its client went away) is finished in the
    /// background; one that completed, or whose poll panicked, is not run again.
    #[tokio::test]
    async fn a_dropped_response_future_finishes_in_the_background() {
        assert!(started_then_dropped().await, "the rest of the request did not run");

        // A poll that panicked: dropped as it is (a future must not be polled again then).
        let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut p = ResponseFuture::<(), ()>::new(PanicsOnSecondPoll(Arc::clone(&polls)), SENDER);
        assert!(futures_poll_once(&mut p).is_pending());
        let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| futures_poll_once(&mut p)));
        assert!(again.is_err());
        drop(p);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(polls.load(Ordering::SeqCst), 2, "polled again after its panic");

        // A completed one is not run again.
        let ready = Arc::new(std::sync::atomic::AtomicUsize::new(2));
        let mut c = ResponseFuture::<(), ()>::new(PanicsOnSecondPoll(Arc::clone(&ready)), SENDER);
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
            SENDER,
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
