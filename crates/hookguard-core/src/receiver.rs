//! [`Receiver`]: the whole receiving protocol, shared by every framework adapter.
//!
//! An adapter only translates: it calls [`Receiver::precheck`] with the request head, reads at
//! most the returned limit of body bytes once, then calls [`Receiver::deliver`] with a closure
//! that runs the application's handler (or its two halves, [`Receiver::admit`] then
//! [`Admitted::run`], to move the request itself into the handler instead of copying its head). Everything else — verification, challenge answers,
//! dedupe claims, completing on success and releasing on failure, logging — happens here, so
//! the tower and actix adapters behave identically.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::Response;

use crate::dedupe::{Admission, ClaimGuard, Dedupe};
use crate::inbox::{stored_headers, Accepted, InboxError, InboxStore, NewItem};
use crate::observe::{self, SenderHealth};
use crate::{ConfigError, Delivery, Precheck, Rejection, RequestHead, Verdict, Verifier};

/// What the application's handler did, as the adapter saw it.
///
/// ```
/// use hookguard_core::{dedupe::MemoryStore, schemes::GitHub, testing::block_on, HandlerOutcome, Receiver, Reply, RequestHead, Scheme, SignParams};
/// let rx: Receiver = Receiver::builder(GitHub::new()).secret("s").dedupe(MemoryStore::new(1_000)).build().unwrap();
/// let body = bytes::Bytes::from_static(b"{}");
/// let mut headers = http::HeaderMap::new();
/// headers.extend(GitHub::new().sign("s", &body, &SignParams::new(0)).unwrap().headers);
/// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
/// let head = RequestHead::new(&m, &u, &headers);
/// // A non-2xx answer is passed through, and the delivery is not done: its retry runs again.
/// let failed = block_on(rx.deliver(&head, body.clone(), |_d| async {
///     HandlerOutcome::<_, ()>::Responded { response: 500, success: false }
/// }));
/// assert!(matches!(failed, Ok(Reply::Handler(500))));
/// let ok = block_on(rx.deliver(&head, body, |_d| async {
///     HandlerOutcome::<_, ()>::Responded { response: 200, success: true }
/// }));
/// assert!(matches!(ok, Ok(Reply::Handler(200))));
/// ```
#[derive(Debug)]
pub enum HandlerOutcome<R, E> {
    /// It answered; `success` is whether the answer was 2xx (only then is the delivery done).
    Responded {
        /// The answer, passed through to the sender.
        response: R,
        /// Whether it counts as handled.
        success: bool,
    },
    /// It failed with the framework's error type; the claim is released.
    Failed(E),
    /// It exceeded the handler budget; the claim is released and `503` answered.
    TimedOut,
}

impl<R, E> HandlerOutcome<R, E> {
    /// Runs the application's handler future and classifies its result: `Ok` answers count as
    /// success when `success` says so, `Err` is [`Failed`](Self::Failed), and if `deadline`
    /// completes first (e.g. `tokio::time::sleep(budget)`; the core needs no runtime) the
    /// handler is dropped and the outcome is [`TimedOut`](Self::TimedOut).
    ///
    /// ```
    /// use hookguard_core::{testing::block_on, HandlerOutcome};
    /// let ok = block_on(HandlerOutcome::of(async { Ok::<u16, ()>(204) }, None::<std::future::Ready<()>>, |s| *s < 300));
    /// assert!(matches!(ok, HandlerOutcome::Responded { response: 204, success: true }));
    /// let late = block_on(HandlerOutcome::of(std::future::pending::<Result<u16, ()>>(), Some(async {}), |_| true));
    /// assert!(matches!(late, HandlerOutcome::TimedOut));
    /// ```
    // A named future, not an `async fn`: an `async fn` would keep its arguments and their
    // pinned copies side by side, doubling the handler's future inside every request's state.
    pub fn of<F, D, S>(handler: F, deadline: Option<D>, success: S) -> impl Future<Output = Self>
    where
        F: Future<Output = Result<R, E>>,
        D: Future<Output = ()>,
        S: FnOnce(&R) -> bool,
    {
        Race {
            handler,
            deadline,
            success: Some(success),
        }
    }
}

pin_project_lite::pin_project! {
    /// [`HandlerOutcome::of`]'s future.
    struct Race<F, D, S> {
        #[pin]
        handler: F,
        #[pin]
        deadline: Option<D>,
        success: Option<S>,
    }
}

impl<F, D, S, R, E> Future for Race<F, D, S>
where
    F: Future<Output = Result<R, E>>,
    D: Future<Output = ()>,
    S: FnOnce(&R) -> bool,
{
    type Output = HandlerOutcome<R, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let this = self.project();
        match this.handler.poll(cx) {
            Poll::Ready(Ok(response)) => {
                // Polled once more after `Ready` only by a caller breaking the `Future` contract.
                let success = this.success.take().is_some_and(|s| s(&response));
                Poll::Ready(HandlerOutcome::Responded { response, success })
            }
            Poll::Ready(Err(e)) => Poll::Ready(HandlerOutcome::Failed(e)),
            Poll::Pending => match this.deadline.as_pin_mut() {
                Some(d) => d.poll(cx).map(|()| HandlerOutcome::TimedOut),
                None => Poll::Pending,
            },
        }
    }
}

/// The limit a framework's body extractors get behind the webhook layer: the one the
/// application set (`configured`), else the framework's own default for that extractor, but
/// never below the verifier's `max_body`. The body was read and bounded by the layer already;
/// a smaller extractor limit would answer a genuine, verified delivery `413`, which senders
/// take as permanent (the delivery lost). Both adapters lift their extractors' limits with it.
///
/// ```
/// use hookguard_core::extractor_limit;
/// // axum's default (2 MiB) is above the verifier's 1 MiB: kept.
/// assert_eq!(extractor_limit(None, 2 << 20, 1 << 20), 2 << 20);
/// // actix's `web::Form` default (16 KiB) or an application's 4 KiB: lifted to `max_body`.
/// assert_eq!(extractor_limit(None, 16 << 10, 1 << 20), 1 << 20);
/// assert_eq!(extractor_limit(Some(4 << 10), 2 << 20, 1 << 20), 1 << 20);
/// // The application's larger limit wins over the framework's default.
/// assert_eq!(extractor_limit(Some(8 << 20), 2 << 20, 1 << 20), 8 << 20);
/// ```
pub fn extractor_limit(configured: Option<usize>, framework_default: usize, max_body: usize) -> usize {
    configured.unwrap_or(framework_default).max(max_body)
}

/// The room to reserve for a body that arrived in more than one piece, `received` bytes so
/// far: what its sender declared (`declared`, e.g. `Content-Length`), but never more than
/// `limit`, nor more than 64 KiB beyond what arrived — not a whole large limit up front on the
/// word of an unauthenticated sender that may then send slowly (the buffer grows as bytes
/// arrive). Both adapters join bodies with it.
///
/// ```
/// use hookguard_core::join_capacity;
/// assert_eq!(join_capacity(2, 300, 1 << 20), 300);
/// assert_eq!(join_capacity(2, 1 << 20, 1 << 20), 2 + 64 * 1024);
/// assert_eq!(join_capacity(2, usize::MAX, 1 << 10), 1 << 10);
/// assert_eq!(join_capacity(500, 0, 1 << 20), 500, "never less than what arrived");
/// ```
pub fn join_capacity(received: usize, declared: usize, limit: usize) -> usize {
    /// The most room beyond the bytes so far.
    const AHEAD: usize = 64 * 1024;
    declared.min(limit).min(received.saturating_add(AHEAD)).max(received)
}

/// An error and every error under it, outermost first. An `io::Error` wrapping another error
/// is followed into that one (its own `source` skips it).
///
/// ```
/// use std::error::Error;
/// let inner = std::io::Error::from(std::io::ErrorKind::TimedOut);
/// let outer = std::io::Error::other(inner);
/// assert_eq!(hookguard_core::error_causes(&outer).count(), 2);
/// ```
pub fn error_causes<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| match e.downcast_ref::<std::io::Error>() {
        Some(io) => io.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static)),
        None => e.source(),
    })
}

/// Whether a request body's error is a time-out of this side: an I/O time-out, or
/// tower-http's `RequestBodyTimeoutLayer` (recognised by its text: hookguard does not depend
/// on it; the tower adapter's tests pin it against the real layer), anywhere in the error's
/// causes. Adapters answer it `408 body_read_timeout`, retried by every sender that retries.
///
/// ```
/// let wrapped = std::io::Error::other(std::io::Error::from(std::io::ErrorKind::TimedOut));
/// assert!(hookguard_core::body_error_timed_out(&wrapped));
/// assert!(!hookguard_core::body_error_timed_out(&std::io::Error::from(std::io::ErrorKind::ConnectionReset)));
/// ```
pub fn body_error_timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    /// tower-http's `timeout::TimeoutError` text.
    const TOWER_HTTP_TIMEOUT: &str = "data was not received within the designated timeout";
    error_causes(error).any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            || e.to_string() == TOWER_HTTP_TIMEOUT
    })
}

/// Runs `fut` unless the deadline made by `deadline` completes first (`None` then). The
/// deadline is only made when `fut` is not ready at its first poll: a body that already
/// arrived with the request head is read without arming a timer. The core needs no runtime;
/// adapters pass e.g. `|| tokio::time::sleep(read_timeout)`. Unlike `tokio::time::timeout`, the
/// deadline is not polled outside tokio's cooperative budget: a `fut` that exhausts the budget
/// again and again could postpone it (request bodies from hyper and actix do not draw on it).
///
/// ```
/// use hookguard_core::{testing::block_on, within};
/// let mut armed = false;
/// assert_eq!(block_on(within(async { 7 }, || { armed = true; async {} })), Some(7));
/// assert!(!armed, "a ready future arms no deadline");
/// assert_eq!(block_on(within(std::future::pending::<u8>(), || async {})), None);
/// ```
// A named future, not an `async fn`, for the reason given at `HandlerOutcome::of`.
pub fn within<F, D, M>(fut: F, deadline: M) -> impl Future<Output = Option<F::Output>>
where
    F: Future,
    M: FnOnce() -> D,
    D: Future<Output = ()>,
{
    Within {
        fut,
        make: Some(deadline),
        deadline: None,
    }
}

pin_project_lite::pin_project! {
    /// [`within`]'s future.
    struct Within<F, M, D> {
        #[pin]
        fut: F,
        make: Option<M>,
        #[pin]
        deadline: Option<D>,
    }
}

impl<F, M, D> Future for Within<F, M, D>
where
    F: Future,
    M: FnOnce() -> D,
    D: Future<Output = ()>,
{
    type Output = Option<F::Output>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let mut this = self.project();
        if let std::task::Poll::Ready(out) = this.fut.poll(cx) {
            return std::task::Poll::Ready(Some(out));
        }
        if let Some(make) = this.make.take() {
            this.deadline.set(Some(make()));
        }
        match this.deadline.as_pin_mut() {
            Some(d) => d.poll(cx).map(|()| None),
            None => std::task::Poll::Pending,
        }
    }
}

std::thread_local! {
    /// Set while a request whose answer was given up is polled ([`answer_given_up`]).
    static GIVEN_UP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The rest of a request whose answer was given up (its sender closed the connection, so no
/// answer reaches it), run on by an adapter so its handler finishes: a `2xx` it produces is a
/// failure in the sender's health, as the sender counted one. For adapters that finish such
/// requests (the tower layer does).
///
/// ```
/// use hookguard_core::answer_given_up;
/// let rest = Box::pin(async { 7 });
/// assert_eq!(hookguard_core::testing::block_on(answer_given_up(rest)), 7);
/// ```
pub fn answer_given_up<F: Future + Unpin>(rest: F) -> impl Future<Output = F::Output> {
    /// Clears the flag however the poll ends (a panicking handler included).
    struct Polling;
    impl Drop for Polling {
        fn drop(&mut self) {
            GIVEN_UP.with(|g| g.set(false));
        }
    }
    let mut rest = rest;
    std::future::poll_fn(move |cx| {
        GIVEN_UP.with(|g| g.set(true));
        let _polling = Polling;
        std::pin::Pin::new(&mut rest).poll(cx)
    })
}

/// What an adapter finishing a request in the background needs of its receiver, and what it
/// says about it: the tower layer and the actix middleware finish the rest of a request whose
/// answer was given up (its sender hung up, its connection failed) so the handler runs to its
/// end, each with its own bound on how many at once.
///
/// ```
/// use hookguard_core::{schemes::GitHub, GivenUp, Receiver, Verifier};
/// let rx = Receiver::new(Verifier::builder(GitHub::new()).secret("s").build().unwrap());
/// let given_up = GivenUp::of(&rx);
/// assert_eq!(given_up.limit(), rx.background_limit());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct GivenUp {
    provider: crate::Provider,
    /// How long the sender waits for an answer (named in the warning).
    waits: Duration,
    /// How long the rest may go on ([`Receiver::background_limit`]).
    limit: Duration,
}

impl GivenUp {
    /// The receiver's sender, its wait and its background limit.
    ///
    /// ```
    /// use hookguard_core::{schemes::Procore, GivenUp, Receiver, Verifier};
    /// let rx = Receiver::new(Verifier::builder(Procore::new()).secret("Bearer t").build().unwrap());
    /// assert_eq!(GivenUp::of(&rx).limit(), hookguard_core::DEFAULT_BACKGROUND_LIMIT);
    /// ```
    pub fn of(rx: &Receiver) -> Self {
        Self {
            provider: rx.verifier().provider(),
            waits: rx.sender_timeout(),
            limit: rx.background_limit(),
        }
    }

    /// How long the rest of a request may go on in the background.
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, GivenUp, Receiver, Verifier};
    /// let rx = Receiver::new(Verifier::builder(GitHub::new()).secret("s").build().unwrap());
    /// assert!(GivenUp::of(&rx).limit() > std::time::Duration::ZERO);
    /// ```
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Says (WARN) that a request's answer was given up before it was ready and that it is
    /// finished in the background; `how`: what gave it up ("its sender closed the connection,
    /// or a timeout answered").
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, GivenUp, Receiver, Verifier};
    /// let rx = Receiver::new(Verifier::builder(GitHub::new()).secret("s").build().unwrap());
    /// GivenUp::of(&rx).warn_finishing("its connection failed");
    /// ```
    pub fn warn_finishing(&self, how: &str) {
        tracing::warn!(
            provider = %self.provider,
            "a request's answer was given up before it was ready ({how}): the sender counts a failure and retries; the request is finished in the background. A handler that may outlast the sender's timeout ({} s) belongs in the inbox",
            self.waits.as_secs_f64()
        );
    }

    /// Says (WARN) that a request given up is dropped as it is, `max` finishing in the
    /// background already (`of_what`: "of this process", "of this worker thread").
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, GivenUp, Receiver, Verifier};
    /// let rx = Receiver::new(Verifier::builder(GitHub::new()).secret("s").build().unwrap());
    /// GivenUp::of(&rx).warn_too_many(1024, "of this process");
    /// ```
    pub fn warn_too_many(&self, max: usize, of_what: &str) {
        tracing::warn!(
            provider = %self.provider,
            "a request's answer was given up before it was ready, and {max} requests {of_what} are finishing in the background already: this one is dropped (its claim released; the sender's retry runs it again)"
        );
    }

    /// Runs the rest of a request given up to its end, its `2xx` counted as a failure in the
    /// sender's health ([`answer_given_up`]), for at most [`limit`](Self::limit); past it the
    /// rest is dropped (its claim released), said at WARN.
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, GivenUp, Receiver, Verifier};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let rx = Receiver::new(Verifier::builder(GitHub::new()).secret("s").build().unwrap());
    /// GivenUp::of(&rx).finish(Box::pin(async { /* the handler's rest */ })).await;
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub async fn finish<F: Future + Unpin>(self, rest: F) {
        if tokio::time::timeout(self.limit, answer_given_up(rest)).await.is_err() {
            tracing::warn!(
                provider = %self.provider,
                "a request finishing in the background since its answer was given up ran for {} s: dropped (its claim released; the sender's retry runs it again)",
                self.limit.as_secs_f64()
            );
        }
    }
}

/// A request's future that its framework may drop before it is done, polled through this so
/// that an adapter can take the rest then and finish it ([`GivenUp::finish`]) — unless a poll
/// of it panicked: a future must not be polled again after that. The tower layer's and the
/// actix middleware's response futures each hold one.
///
/// ```
/// use hookguard_core::Finishable;
/// let mut f = Finishable::new(Box::pin(std::future::pending::<()>()));
/// assert!(!f.is_done());
/// assert!(f.take_rest().is_some(), "not done: the rest is there to finish");
/// assert!(f.take_rest().is_none(), "taken once");
/// ```
pub struct Finishable<F> {
    inner: Option<F>,
    /// Set while `inner` is polled: still set when the rest is asked for means a poll panicked.
    polling: bool,
}

impl<F> Finishable<F> {
    /// `f`, not polled yet.
    ///
    /// ```
    /// let f = hookguard_core::Finishable::new(Box::pin(async { 7 }));
    /// assert!(!f.is_done());
    /// ```
    pub fn new(f: F) -> Self {
        Self {
            inner: Some(f),
            polling: false,
        }
    }

    /// Whether it completed (or its rest was taken).
    ///
    /// ```
    /// let mut f = hookguard_core::Finishable::new(Box::pin(async { 7 }));
    /// assert_eq!(hookguard_core::testing::block_on(&mut f), 7);
    /// assert!(f.is_done());
    /// ```
    pub fn is_done(&self) -> bool {
        self.inner.is_none()
    }

    /// The rest of a future dropped before it was done, to finish; `None` when it completed,
    /// when a poll of it panicked, or when it was taken already.
    ///
    /// ```
    /// let mut f = hookguard_core::Finishable::new(Box::pin(async { 7 }));
    /// let _ = hookguard_core::testing::block_on(&mut f);
    /// assert!(f.take_rest().is_none(), "completed: nothing to finish");
    /// ```
    pub fn take_rest(&mut self) -> Option<F> {
        if self.polling {
            return None;
        }
        self.inner.take()
    }
}

impl<F: Future + Unpin> Future for Finishable<F> {
    type Output = F::Output;
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            panic!("ResponseFuture polled after it completed");
        };
        this.polling = true;
        let out = std::pin::Pin::new(inner).poll(cx);
        this.polling = false;
        if out.is_ready() {
            this.inner = None;
        }
        out
    }
}

/// How long a request whose sender hung up may go on in the background when nothing else
/// bounds it (see [`Receiver::background_limit`]).
///
/// ```
/// assert_eq!(hookguard_core::DEFAULT_BACKGROUND_LIMIT.as_secs(), 600);
/// ```
pub const DEFAULT_BACKGROUND_LIMIT: Duration = Duration::from_secs(600);

/// How many leases a claim is renewed for at most while its handler runs: a handler stuck for
/// longer (a deadlock, a hung call) must not hold its delivery for ever, answering every retry
/// "in flight" (429s count toward the sender's kill switch).
const MAX_RENEWALS: u32 = 30;

/// Runs `handler` while renewing `guard`'s claim every `every` (for at most [`MAX_RENEWALS`]
/// renewals), so a retry arriving after the first lease is told "in flight" rather than run
/// beside it. The first timer is armed only when the handler is not ready at its first poll: a
/// quick handler costs nothing. At most one renewal per poll, and the handler is polled again
/// after each: a sleep and a renewal that are ready at once never starve the handler.
async fn keep_claimed<T>(
    mut handler: std::pin::Pin<&mut impl Future<Output = T>>,
    guard: &ClaimGuard,
    every: Duration,
    sleep: &Sleep,
    provider: crate::Provider,
) -> T {
    use std::task::Poll;
    let every = every.max(Duration::from_millis(10));
    let mut waiting: Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>> = None;
    let mut renewing: Option<crate::dedupe::StoreFuture<'_, bool>> = None;
    let mut renewals = 0;
    let mut holding = true;
    // After a failed renewal the next comes sooner: a third of a lease later, a second failure
    // would leave the next try past the lease's end.
    let mut retry_soon = false;
    std::future::poll_fn(|cx| {
        let mut renewed_now = false;
        loop {
            if let Poll::Ready(out) = handler.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            if !holding {
                return Poll::Pending;
            }
            if let Some(r) = renewing.as_mut() {
                let Poll::Ready(renewed) = r.as_mut().poll(cx) else {
                    return Poll::Pending;
                };
                renewing = None;
                renewed_now = true;
                retry_soon = false;
                match renewed {
                    Ok(true) => {
                        renewals += 1;
                        if renewals >= MAX_RENEWALS {
                            tracing::warn!(%provider, renewals, "a handler has run for {renewals} renewals of its claim: the claim is no longer renewed, and a retry may run beside it");
                            holding = false;
                        }
                    }
                    Ok(false) => {
                        tracing::warn!(%provider, "the claim was lost while its handler ran (its lease had expired): a copy may run beside it");
                        holding = false;
                    }
                    // Tried again a twelfth of a lease later (not counted as a renewal).
                    Err(e) => {
                        tracing::warn!(%provider, error = %e, "could not renew the claim of a running handler");
                        retry_soon = true;
                    }
                }
                continue;
            }
            let w = waiting.get_or_insert_with(|| sleep(if retry_soon { every / 4 } else { every }));
            if w.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            waiting = None;
            if renewed_now {
                // A sleep that was over at once: the next renewal waits for the next poll.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            renewing = Some(guard.renew());
        }
    })
    .await
}

/// What to send back.
///
/// ```
/// use hookguard_core::{schemes::GitHub, testing::block_on, Delivery, HandlerOutcome, Receiver, Reply, RequestHead, Scheme, SignParams, Verifier};
/// let rx = Receiver::new(Verifier::builder(GitHub::new()).secret("s").build().unwrap());
/// let body = bytes::Bytes::from_static(b"{}");
/// let mut headers = http::HeaderMap::new();
/// headers.extend(GitHub::new().sign("s", &body, &SignParams::new(0)).unwrap().headers);
/// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
/// let head = RequestHead::new(&m, &u, &headers);
/// let handler = |_d: Delivery| async { HandlerOutcome::<_, ()>::Responded { response: "handled", success: true } };
/// // A genuine delivery: the handler's own answer.
/// assert!(matches!(block_on(rx.deliver(&head, body.clone(), handler)), Ok(Reply::Handler("handled"))));
/// // A request without a signature: hookguard's answer, the handler is not called.
/// let unsigned = http::HeaderMap::new();
/// match block_on(rx.deliver(&RequestHead::new(&m, &u, &unsigned), body, handler)) {
///     Ok(Reply::Respond(answer)) => assert_eq!(answer.status(), 401),
///     _ => panic!("the handler ran"),
/// }
/// ```
#[derive(Debug)]
pub enum Reply<R> {
    /// The handler's own answer.
    Handler(R),
    /// An answer hookguard produced (rejection, challenge, duplicate, ignored).
    Respond(Response<Bytes>),
}

/// What a refused request counts toward in the sender's health.
#[derive(Clone, Copy)]
enum Whose {
    /// It may be the sender's own (a wrong secret, a fault of ours): a failed answer to it,
    /// toward its kill-switch warnings.
    MaybeSenders,
    /// It carried no credential or signature the sender writes (a scanner's, or the sender's
    /// under a configuration that does not match): not a failed answer, but a streak of them is
    /// warned about ([`SenderHealth::refused_uncredentialed`]).
    Uncredentialed,
    /// No sender delivers so (another method, a challenge request without its challenge or with
    /// one over the bound): the metrics only.
    NotADelivery,
}

/// A verifier plus dedupe policy plus handler budget: everything one webhook route needs.
///
/// ```
/// use hookguard_core::{schemes::GitHub, Receiver, Reply, HandlerOutcome, Verifier, RequestHead, Scheme, SignParams};
/// use hookguard_core::dedupe::{Dedupe, MemoryStore};
/// let rx = Receiver::new(Verifier::builder(GitHub::new()).secret("s").build().unwrap())
///     .with_dedupe(Dedupe::new(MemoryStore::default()));
/// let body = bytes::Bytes::from_static(b"{}");
/// let mut headers = http::HeaderMap::new();
/// headers.extend(GitHub::new().sign("s", &body, &SignParams::new(0).id("d-1")).unwrap().headers);
/// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
/// let head = RequestHead::new(&m, &u, &headers);
/// let run = |body: bytes::Bytes| hookguard_core::testing::block_on(rx.deliver(&head, body, |_d| async {
///     HandlerOutcome::<_, ()>::Responded { response: "handled", success: true }
/// }));
/// assert!(matches!(run(body.clone()), Ok(Reply::Handler("handled"))));
/// // The same delivery again: answered 200 duplicate, handler not called.
/// assert!(matches!(run(body), Ok(Reply::Respond(r)) if r.status() == 200));
/// ```
#[derive(Clone)]
pub struct Receiver {
    verifier: Verifier,
    dedupe: Option<Dedupe>,
    budget: Option<Duration>,
    inbox: Option<std::sync::Arc<dyn InboxStore>>,
    health: std::sync::Arc<SenderHealth>,
    /// The metric keys every delivery records.
    meters: observe::Meters,
    /// How long the sender waits for an answer: a handler's 2xx later than this reached no
    /// one (the sender counted a failure).
    sender_timeout: Duration,
    /// The runtime's sleep, for renewing a claim while a slow handler runs.
    sleep: Option<Sleep>,
}

/// A runtime's sleep, boxed: the core needs no runtime, so the adapters hand it theirs (see
/// [`Receiver::with_sleep`]).
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use hookguard_core::{schemes::GitHub, testing::block_on, Receiver, Sleep, Verifier};
/// // Tokio's is `Arc::new(|d| Box::pin(tokio::time::sleep(d)))`; this one is over at once.
/// let sleep: Sleep = Arc::new(|_d: Duration| Box::pin(std::future::ready(())));
/// block_on((*sleep)(Duration::from_secs(10)));
/// let rx = Receiver::new(Verifier::builder(GitHub::new()).secret("s").build().unwrap()).with_sleep(sleep);
/// assert!(format!("{rx:?}").contains("renews_claims: true"));
/// ```
pub type Sleep = std::sync::Arc<dyn Fn(Duration) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("verifier", &self.verifier)
            .field("dedupe", &self.dedupe)
            .field("budget", &self.budget)
            .field("inbox", &self.inbox.is_some())
            .field("renews_claims", &self.sleep.is_some())
            .finish()
    }
}

/// The least time an event's failed tries are remembered (see [`Receiver::new`]).
const MIN_EVENT_MEMORY: Duration = Duration::from_secs(24 * 3600);

impl Receiver {
    /// A receiver that verifies with `verifier`, without dedupe or budget.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{schemes::GitHub, Receiver, Verifier};
    /// let rx = Receiver::new(Verifier::builder(GitHub::new()).secret("s").build().unwrap());
    /// assert!(rx.dedupe().is_none() && rx.inbox().is_none() && rx.budget().is_none());
    /// // The sender's timeout comes from its profile: GitHub waits 10 s.
    /// assert_eq!(rx.sender_timeout(), Duration::from_secs(10));
    /// ```
    pub fn new(verifier: Verifier) -> Self {
        let profile = verifier.scheme().profile();
        let horizon = profile.retry_horizon();
        // Jitter and the sender's own delays: forget an event only well after its last retry,
        // and never within a day — a schedule we had to assume (HCSS publishes no intervals)
        // must not make us forget an event that is still being retried (at most 4,096 events
        // are held either way).
        let health = SenderHealth::new(verifier.provider(), verifier.scheme().kill_switch()).with_retry_horizon(
            horizon
                .saturating_add(horizon / 2)
                .saturating_add(Duration::from_secs(60))
                .max(MIN_EVENT_MEMORY),
        );
        let sender_timeout = profile.timeout;
        let meters = observe::Meters::new(verifier.provider());
        Self {
            verifier,
            dedupe: None,
            budget: None,
            inbox: None,
            health: std::sync::Arc::new(health),
            meters,
            sender_timeout,
            sleep: None,
        }
    }

    /// The sender's kill switch that sender health warns about, instead of the one its profile
    /// declares: for a sender whose switch is not modelled (Slack disables event
    /// subscriptions after a high share of failed deliveries within an hour; no count is
    /// published, so none is assumed), or one that differs in your contract. `None`: no
    /// warnings, and so is one with zero `failures` (the builder refuses it). Failures counted so
    /// far start again: give it when building the receiver (clones taken before keep theirs).
    ///
    /// ```
    /// use hookguard_core::{observe::KillSwitch, schemes::Slack, Receiver, Verifier};
    /// let rx = Receiver::new(Verifier::builder(Slack::new()).secret("s").build().unwrap());
    /// assert_eq!(rx.health().kill_switch(), None);
    /// let k = KillSwitch::new(20, "disables event subscriptions", "re-enable them in the app's settings");
    /// let rx = rx.with_kill_switch(Some(k));
    /// assert_eq!(rx.health().kill_switch(), Some(k));
    /// ```
    pub fn with_kill_switch(mut self, kill_switch: Option<observe::KillSwitch>) -> Self {
        let kill_switch = kill_switch.filter(|k| k.failures > 0);
        let mut health = SenderHealth::new(self.verifier.provider(), kill_switch);
        if let Some(h) = self.health.retry_horizon() {
            health = health.with_retry_horizon(h);
        }
        self.health = std::sync::Arc::new(health);
        self
    }

    /// How the receiver waits: with a runtime's sleep, a handler that runs longer than a third
    /// of the dedupe lease has its claim renewed every third of the lease until it answers
    /// (when the store renews claims, as the in-memory and Redis stores do), so a sender's
    /// retry is told "in flight" instead of running the handler a second time beside it. The
    /// tower and actix adapters set tokio's; a quick handler arms no timer.
    ///
    /// ```
    /// use std::{sync::Arc, time::Duration};
    /// use hookguard_core::{schemes::GitHub, Receiver, Sleep, Verifier};
    /// // The runtime's own sleep, e.g. `Box::pin(tokio::time::sleep(d))`; never a blocking one.
    /// let sleep: Sleep = Arc::new(|_d: Duration| Box::pin(std::future::pending::<()>()));
    /// let rx = Receiver::new(Verifier::builder(GitHub::new()).secret("s").build().unwrap()).with_sleep(sleep);
    /// assert!(format!("{rx:?}").contains("renews_claims: true"));
    /// ```
    pub fn with_sleep(mut self, sleep: Sleep) -> Self {
        self.sleep = Some(sleep);
        self
    }

    /// [`with_sleep`](Self::with_sleep) with tokio's sleep (feature `tokio`): what the tower
    /// and actix adapters give every receiver they are built from.
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, Receiver, Verifier};
    /// let rx = Receiver::new(Verifier::builder(GitHub::new()).secret("s").build().unwrap()).with_tokio_sleep();
    /// assert!(format!("{rx:?}").contains("renews_claims: true"));
    /// ```
    #[cfg(feature = "tokio")]
    pub fn with_tokio_sleep(self) -> Self {
        self.with_sleep(std::sync::Arc::new(|d| Box::pin(tokio::time::sleep(d))))
    }

    /// How long the sender waits for an answer (default: its profile's — Procore 5 s,
    /// BuildWorkPro 10 s; HCSS publishes none, 10 s assumed). A handler that answers `2xx`
    /// later than this is counted as a failure for the sender's health and warned about: the
    /// sender gave up waiting and counts a failure (and retries).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{schemes::Hcss, Receiver, Verifier};
    /// let rx = Receiver::new(Verifier::builder(Hcss::new()).secret("t").build().unwrap())
    ///     .with_sender_timeout(Duration::from_secs(30));
    /// assert_eq!(rx.sender_timeout(), Duration::from_secs(30));
    /// ```
    ///
    /// Zero means no known timeout: no answer is counted late (the builder's
    /// [`sender_timeout`](ReceiverBuilder::sender_timeout) refuses anything under a second).
    pub fn with_sender_timeout(mut self, timeout: Duration) -> Self {
        self.sender_timeout = timeout;
        self
    }

    /// How long the sender waits for an answer (see [`with_sender_timeout`](Self::with_sender_timeout)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{schemes::{Procore, Slack}, Receiver, Verifier};
    /// let rx = Receiver::new(Verifier::builder(Procore::new()).secret("Bearer t").build().unwrap());
    /// assert_eq!(rx.sender_timeout(), Duration::from_secs(5));
    /// let rx = Receiver::new(Verifier::builder(Slack::new()).secret("s").build().unwrap());
    /// assert_eq!(rx.sender_timeout(), Duration::from_secs(3));
    /// ```
    pub fn sender_timeout(&self) -> Duration {
        self.sender_timeout
    }

    /// The longest a request may go on in the background once its sender hung up: an adapter
    /// whose framework drops such a request (the tower layer under hyper) finishes it within
    /// this, as a handler stuck for ever must not hold its request, its body and a place
    /// for ever. The [handler budget](Self::budget) when set; else as long as its dedupe
    /// claim is renewed (past that a copy may run beside it anyway); else
    /// [`DEFAULT_BACKGROUND_LIMIT`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{dedupe::{Dedupe, MemoryStore}, schemes::GitHub, Receiver, Verifier};
    /// let rx = Receiver::new(Verifier::builder(GitHub::new()).secret("s").build().unwrap());
    /// assert_eq!(rx.background_limit(), hookguard_core::DEFAULT_BACKGROUND_LIMIT);
    /// let rx = rx.with_budget(Some(Duration::from_secs(20)));
    /// assert_eq!(rx.background_limit(), Duration::from_secs(20));
    /// ```
    pub fn background_limit(&self) -> Duration {
        if let Some(budget) = self.budget() {
            return budget;
        }
        match &self.dedupe {
            Some(d) if d.store_renews() && self.sleep.is_some() => {
                // Renewed every third of a lease, MAX_RENEWALS times, then held one lease more.
                (d.lease_duration() / 3)
                    .saturating_mul(MAX_RENEWALS)
                    .saturating_add(d.lease_duration())
            }
            _ => DEFAULT_BACKGROUND_LIMIT,
        }
    }

    /// How many failed answers (non-2xx, or later than the sender waits) this receiver gave its sender in a row, against the sender's
    /// kill switch (see [`SenderHealth`]).
    ///
    /// ```
    /// use hookguard_core::{schemes::BuildWorkPro, Receiver, Rejection, Verifier};
    /// let rx = Receiver::new(Verifier::builder(BuildWorkPro::new()).secret("whsec_k").build().unwrap());
    /// assert_eq!(rx.health().kill_switch().map(|k| k.failures), Some(20));
    /// let _ = rx.reject(&Rejection::HandlerFailed);
    /// let _ = rx.reject(&Rejection::HandlerFailed);
    /// assert_eq!(rx.health().consecutive_failures(), 2);
    /// ```
    pub fn health(&self) -> &SenderHealth {
        &self.health
    }

    /// Counts one answer (metrics) and feeds the sender-health count, for the event `event`
    /// ([`observe::event_of`] its body, when the sender's kill switch counts one event's tries).
    fn answered_event(&self, outcome: &'static str, code: &'static str, success: bool, event: Option<u64>) {
        self.count_answer(outcome, code);
        self.health.answered_event(success, event);
    }

    /// The receiver's own `2xx` answer `r`, emptied for a sender that reads a `2xx` body as
    /// an answer of its own ([`Scheme::acknowledges_empty`](crate::Scheme::acknowledges_empty)).
    fn acknowledge(&self, r: Response<Bytes>) -> Response<Bytes> {
        if self.verifier.scheme().acknowledges_empty() {
            crate::response::emptied(r)
        } else {
            r
        }
    }

    /// Counts a 2xx (`outcome`: handled, stored, or a copy): a success to the sender only if it
    /// was ready before the sender stopped waiting for the request that `arrived`, and the
    /// answer was not given up ([`answer_given_up`]); otherwise the sender counted a failure
    /// and retries. `handler`: how long an inline handler ran, if one did and was timed (with
    /// the `metrics` feature).
    fn answered_2xx(
        &self,
        outcome: &'static str,
        arrived: std::time::Instant,
        handler: Option<Duration>,
        event: Option<u64>,
    ) {
        let took = arrived.elapsed();
        // The adapter warned when the answer was given up; the sender got none.
        let given_up = GIVEN_UP.with(std::cell::Cell::get);
        // (A zero timeout is refused by the builder; given to `with_sender_timeout`, it means
        // no known timeout rather than every answer late.)
        let late = given_up || (!self.sender_timeout.is_zero() && took >= self.sender_timeout);
        if late && !given_up {
            let advice = if outcome == "handled" {
                "; keep handlers short or use the inbox"
            } else {
                ""
            };
            tracing::warn!(
                provider = %self.verifier.provider(),
                outcome,
                took_ms = took.as_millis() as u64,
                handler_ms = handler.map(|h| h.as_millis() as u64),
                "the answer was ready after the sender stopped waiting ({} s): the sender counts a failure and retries{advice}",
                self.sender_timeout.as_secs_f64()
            );
        }
        self.answered_event(outcome, "", !late, event);
    }

    /// Counts an answer in the metrics only.
    fn count_answer(&self, outcome: &'static str, code: &'static str) {
        self.meters.answer(outcome, code);
    }

    /// Stores verified deliveries in `inbox` and answers `200 {"status":"accepted"}` (Slack: an
    /// empty `200`, see [`Scheme::acknowledges_empty`](crate::Scheme::acknowledges_empty)) once they
    /// are durable, instead of calling the handler inline (a worker handles them afterwards).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use hookguard_core::inbox::{Accepted, ClaimRef, ClaimedItem, InboxFuture, InboxRecord, InboxState, InboxStats, InboxStore, ListFilter, NewItem};
    /// use hookguard_core::testing::MemoryInbox;
    /// use hookguard_core::{schemes::GitHub, testing::block_on, Receiver, RequestHead, Scheme, SignParams, Verifier};
    /// let inbox = Arc::new(MemoryInbox::default());
    /// let rx = Receiver::new(Verifier::builder(GitHub::new()).secret("s").build().unwrap()).with_inbox(inbox.clone());
    /// let body = bytes::Bytes::from_static(b"{}");
    /// let mut headers = http::HeaderMap::new();
    /// headers.extend(GitHub::new().sign("s", &body, &SignParams::new(0)).unwrap().headers);
    /// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
    /// let head = RequestHead::new(&m, &u, &headers);
    /// let answer = block_on(rx.admit(&head, body)).unwrap_err();
    /// assert_eq!((answer.status(), answer.body().as_ref()), (http::StatusCode::OK, &br#"{"status":"accepted"}"#[..]));
    /// assert_eq!(inbox.items().len(), 1); // stored, for a worker to handle
    /// ```
    pub fn with_inbox(mut self, inbox: std::sync::Arc<dyn InboxStore>) -> Self {
        self.inbox = Some(inbox);
        self
    }

    /// The inbox, in inbox mode.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use hookguard_core::inbox::{Accepted, ClaimRef, ClaimedItem, InboxFuture, InboxRecord, InboxStats, InboxStore, ListFilter, NewItem};
    /// # // A placeholder inbox store (hookguard-sqlite and hookguard-postgres have real ones).
    /// # struct Stub;
    /// # impl InboxStore for Stub {
    /// #     fn accept(&self, _: NewItem) -> InboxFuture<'_, Accepted> { unimplemented!() }
    /// #     fn claim(&self, _: i64, _: Duration, _: u32) -> InboxFuture<'_, Vec<ClaimedItem>> { unimplemented!() }
    /// #     fn complete(&self, _: ClaimRef, _: i64) -> InboxFuture<'_, bool> { unimplemented!() }
    /// #     fn fail(&self, _: ClaimRef, _: &str, _: Option<i64>, _: i64) -> InboxFuture<'_, bool> { unimplemented!() }
    /// #     fn release(&self, _: ClaimRef) -> InboxFuture<'_, bool> { unimplemented!() }
    /// #     fn get(&self, _: i64) -> InboxFuture<'_, Option<InboxRecord>> { unimplemented!() }
    /// #     fn list(&self, _: ListFilter) -> InboxFuture<'_, Vec<InboxRecord>> { unimplemented!() }
    /// #     fn replay(&self, _: i64, _: i64) -> InboxFuture<'_, ()> { unimplemented!() }
    /// #     fn replay_dead(&self, _: i64) -> InboxFuture<'_, u64> { unimplemented!() }
    /// #     fn purge(&self, _: i64, _: bool) -> InboxFuture<'_, u64> { unimplemented!() }
    /// #     fn stats(&self) -> InboxFuture<'_, InboxStats> { unimplemented!() }
    /// # }
    /// use hookguard_core::{schemes::GitHub, Receiver, Verifier};
    /// let rx = Receiver::new(Verifier::builder(GitHub::new()).secret("s").build().unwrap());
    /// assert!(rx.inbox().is_none()); // handlers run inline
    /// let rx = rx.with_inbox(Arc::new(Stub));
    /// assert!(rx.inbox().is_some()); // deliveries are stored for a worker
    /// ```
    pub fn inbox(&self) -> Option<&std::sync::Arc<dyn InboxStore>> {
        self.inbox.as_ref()
    }

    /// De-duplicates with `dedupe`. Unlike the builder, which refuses them, a lease or
    /// retention under a second is not an error here: it is taken as one second (by the claims,
    /// the handler budget and the background limit alike).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{dedupe::{Dedupe, MemoryStore}, schemes::GitHub, Receiver, Verifier};
    /// let rx = Receiver::new(Verifier::builder(GitHub::new()).secret("s").build().unwrap())
    ///     .with_dedupe(Dedupe::new(MemoryStore::new(10_000)).lease(Duration::from_secs(20)));
    /// assert_eq!(rx.dedupe().map(|d| d.lease_duration()), Some(Duration::from_secs(20)));
    /// ```
    pub fn with_dedupe(mut self, dedupe: Dedupe) -> Self {
        self.dedupe = Some(dedupe);
        self
    }

    /// Sets (or clears) the handler budget the adapter enforces.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{schemes::GitHub, Receiver, Verifier};
    /// let rx = Receiver::new(Verifier::builder(GitHub::new()).secret("s").build().unwrap())
    ///     .with_budget(Some(Duration::from_secs(8)));
    /// assert_eq!(rx.budget(), Some(Duration::from_secs(8)));
    /// assert_eq!(rx.with_budget(None).budget(), None);
    /// ```
    pub fn with_budget(mut self, budget: Option<Duration>) -> Self {
        self.budget = budget;
        self
    }

    /// The verifier.
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, Provider, Receiver};
    /// let rx: Receiver = Receiver::builder(GitHub::new()).secret("s").max_body(4096).build().unwrap();
    /// assert_eq!(rx.verifier().provider(), Provider::GitHub);
    /// assert_eq!(rx.verifier().max_body(), 4096);
    /// ```
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The dedupe policy, if any.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{dedupe::MemoryStore, schemes::GitHub, Receiver};
    /// let rx: Receiver = Receiver::builder(GitHub::new()).secret("s").dedupe(MemoryStore::new(1_000)).build().unwrap();
    /// assert_eq!(rx.dedupe().map(|d| d.lease_duration()), Some(Duration::from_secs(30)));
    /// ```
    pub fn dedupe(&self) -> Option<&Dedupe> {
        self.dedupe.as_ref()
    }

    /// The handler budget, if any: adapters stop waiting for the handler after it and report
    /// [`HandlerOutcome::TimedOut`]. Never as long as the dedupe lease: a budget set at or
    /// above it with [`with_budget`](Self::with_budget) (the builder refuses that) counts as
    /// 90 % of the lease, or a retry could claim the delivery while its handler still runs
    /// (where the claim is not renewed, see [`with_sleep`](Self::with_sleep)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{dedupe::{Dedupe, MemoryStore}, schemes::GitHub, Receiver, Verifier};
    /// let rx = Receiver::new(Verifier::builder(GitHub::new()).secret("s").build().unwrap())
    ///     .with_budget(Some(Duration::from_secs(60)))
    ///     .with_dedupe(Dedupe::new(MemoryStore::default()).lease(Duration::from_secs(30)));
    /// assert_eq!(rx.budget(), Some(Duration::from_secs(27)));
    /// ```
    pub fn budget(&self) -> Option<Duration> {
        match (self.budget, &self.dedupe) {
            (Some(b), Some(d)) if b >= d.lease_duration() => Some(d.lease_duration().mul_f64(0.9)),
            (b, _) => b,
        }
    }

    /// Before the body: `Ok(limit)` to read at most `limit` bytes, or the answer to send now
    /// (a challenge, a wrong method, a declared `Content-Length` over the limit).
    ///
    /// # Errors
    /// The response to send instead of reading the body.
    ///
    /// ```
    /// use hookguard_core::{schemes::Hcss, Receiver, RequestHead, Verifier};
    /// let rx = Receiver::new(Verifier::builder(Hcss::new()).secret("tok").max_body(4096).build().unwrap());
    /// let h = http::HeaderMap::new();
    /// // A delivery with the right URL token: read at most 4096 bytes.
    /// let (post, uri) = (http::Method::POST, http::Uri::from_static("/hooks?token=tok"));
    /// assert_eq!(rx.precheck(&RequestHead::new(&post, &uri, &h)).ok(), Some(4096));
    /// // HCSS's challenge: the answer to send at once.
    /// let (get, challenge) = (http::Method::GET, http::Uri::from_static("/hooks?challenge=abc"));
    /// let answer = rx.precheck(&RequestHead::new(&get, &challenge, &h)).unwrap_err();
    /// assert_eq!(answer.body().as_ref(), b"abc");
    /// // A wrong token: refused before the body is read.
    /// let forged = http::Uri::from_static("/hooks?token=nope");
    /// assert_eq!(rx.precheck(&RequestHead::new(&post, &forged, &h)).unwrap_err().status(), 401);
    /// ```
    // The early answer is moved once to the adapter; boxing it would only add an allocation.
    #[allow(clippy::result_large_err)]
    pub fn precheck(&self, head: &RequestHead<'_>) -> Result<usize, Response<Bytes>> {
        match self.verifier.precheck(head) {
            Ok(Precheck::ReadBody { limit }) => Ok(limit),
            Ok(Precheck::Challenge(answer)) => {
                tracing::info!(provider = %self.verifier.provider(), "webhook challenge answered");
                // Anyone can ask a query challenge (HCSS's is not authenticated): counted, but
                // it proves nothing about the sender, so its health count stays as it is.
                self.count_answer("challenge", "");
                Err(answer.into_response())
            }
            Err(r) => Err(self.refuse(&r, None, self.whose(&r, head))),
        }
    }

    /// The answer when reading the body failed (`r`: too large, timed out, broken), judged
    /// with the head: a body over the limit without a signature is refused as unsigned (see
    /// [`Verifier::read_refusal`]), and counted in sender health as such.
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, Receiver, Rejection, RequestHead, Verifier};
    /// let rx = Receiver::new(Verifier::builder(GitHub::new()).secret("s").build().unwrap());
    /// let (m, u, h) = (http::Method::POST, http::Uri::from_static("/"), http::HeaderMap::new());
    /// let answer = rx.reject_read(&RequestHead::new(&m, &u, &h), Rejection::BodyTooLarge { limit: 10 });
    /// assert_eq!(answer.status(), 401);
    /// ```
    pub fn reject_read(&self, head: &RequestHead<'_>, r: Rejection) -> Response<Bytes> {
        let r = self.verifier.read_refusal(head, r);
        self.refuse(&r, None, self.whose(&r, head))
    }

    /// Whose a refused request may have been (see [`Whose`]): a wrong secret or a fault of
    /// ours may be the sender's own; another method, or a challenge request without its
    /// challenge (a browser, a health check), never is; no signature or credential at all, or
    /// one in a form the sender never writes, is a scanner's — or the sender's, misconfigured.
    fn whose(&self, r: &Rejection, head: &RequestHead<'_>) -> Whose {
        match r {
            Rejection::MethodNotAllowed | Rejection::ChallengeMissing | Rejection::ChallengeTooLong { .. } => {
                Whose::NotADelivery
            }
            r if r.is_uncredentialed() => Whose::Uncredentialed,
            // Procore and a header-token HCSS always send their header: only a wrong value
            // may be the sender's (a rotated secret).
            Rejection::Unauthorized => match self.verifier.scheme().credential_header() {
                Some(h) if !head.headers.contains_key(h) => Whose::Uncredentialed,
                _ => Whose::MaybeSenders,
            },
            _ => Whose::MaybeSenders,
        }
    }

    /// The answer to a rejection, logged with its code (never the secret or the body).
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, Receiver, Rejection, Verifier};
    /// let rx = Receiver::new(Verifier::builder(GitHub::new()).secret("s").build().unwrap());
    /// let answer = rx.reject(&Rejection::DuplicateInFlight);
    /// assert_eq!(answer.status(), 429);
    /// assert_eq!(answer.headers()["retry-after"], "5");
    /// ```
    pub fn reject(&self, r: &Rejection) -> Response<Bytes> {
        self.reject_event(r, None)
    }

    fn reject_event(&self, r: &Rejection, event: Option<u64>) -> Response<Bytes> {
        self.refuse(r, event, Whose::MaybeSenders)
    }

    /// The answer to a rejection; `whose`: what it counts toward in the sender's health.
    fn refuse(&self, r: &Rejection, event: Option<u64>, whose: Whose) -> Response<Bytes> {
        tracing::info!(
            provider = %self.verifier.provider(),
            code = r.code(),
            status = r.status().as_u16(),
            "webhook rejected"
        );
        match whose {
            Whose::MaybeSenders => self.answered_event("rejected", r.code(), false, event),
            Whose::Uncredentialed => {
                self.count_answer("rejected", r.code());
                self.health.refused_uncredentialed();
            }
            Whose::NotADelivery => self.count_answer("rejected", r.code()),
        }
        if matches!(r, Rejection::BodyTooLarge { .. }) && self.verifier.too_large_warning_due() {
            // Retried by the sender (503): it gets through once the limit is raised — unless the
            // sender retries nothing (GitHub): then the delivery is lost unless resent.
            let profile = self.verifier.scheme().profile();
            let (retried, then) = if profile.max_attempts() == Some(1) {
                (
                    "this sender does not retry it, as its profile says: see `retries`",
                    format!(", then resend it ({})", profile.give_up),
                )
            } else {
                ("503, so the sender retries it", String::new())
            };
            tracing::warn!(
                provider = %self.verifier.provider(),
                max_body = self.verifier.max_body(),
                retries = profile.schedule_doc,
                "a body over the body limit was refused ({retried}): if the sender sends bodies that large, raise the limit (max_body; serve: --max-body){then} (at most one such warning a minute)"
            );
        }
        if *r == Rejection::MethodNotAllowed {
            // A framework's own `Allow` is only added where none is set, so every adapter
            // answers alike.
            return crate::response::method_not_allowed(self.verifier.allowed_methods());
        }
        crate::response::rejection(r)
    }

    /// Verifies the complete body, claims the delivery, runs `call` for new deliveries only,
    /// and completes the claim if it succeeded or releases it otherwise: [`admit`](Self::admit)
    /// followed by [`Admitted::run`].
    ///
    /// # Errors
    /// The handler's own error ([`HandlerOutcome::Failed`]), after releasing the claim.
    ///
    /// ```
    /// use hookguard_core::{clock::ManualClock, dedupe::MemoryStore, schemes::BuildWorkPro, testing::{self, block_on}};
    /// use hookguard_core::{HandlerOutcome, Receiver, Reply, RequestHead, Scheme, SignParams};
    /// let now = 1_700_000_000;
    /// let rx: Receiver = Receiver::builder(BuildWorkPro::new()).secret("whsec_k").clock(ManualClock::new(now))
    ///     .dedupe(MemoryStore::new(1_000)).build().unwrap();
    /// let body = bytes::Bytes::from_static(br#"{"id":"evt_1","type":"bid.accepted"}"#);
    /// let signed = BuildWorkPro::new().sign("whsec_k", &body, &SignParams::new(now)).unwrap();
    /// let (headers, uri) = testing::request_parts(signed, "/hooks");
    /// let m = http::Method::POST;
    /// let head = RequestHead::new(&m, &uri, &headers);
    /// // The handler fails: its error comes back and the claim is released, so a retry is handled.
    /// let failed = block_on(rx.deliver(&head, body.clone(), |_d| async { HandlerOutcome::<(), &str>::Failed("db down") }));
    /// assert_eq!(failed.unwrap_err(), "db down");
    /// let ok = block_on(rx.deliver(&head, body, |d| async move {
    ///     HandlerOutcome::<_, &str>::Responded { response: d.event_id().map(str::to_owned), success: true }
    /// }));
    /// assert!(matches!(ok, Ok(Reply::Handler(Some(id))) if id == "evt_1"));
    /// ```
    pub async fn deliver<R, E, F, Fut>(&self, head: &RequestHead<'_>, body: Bytes, call: F) -> Result<Reply<R>, E>
    where
        F: FnOnce(Delivery) -> Fut,
        Fut: Future<Output = HandlerOutcome<R, E>>,
    {
        self.deliver_since(head, body, std::time::Instant::now(), call).await
    }

    /// As [`deliver`](Self::deliver), for a request that arrived at `arrived` (see
    /// [`admit_since`](Self::admit_since)).
    ///
    /// ```
    /// use std::time::Instant;
    /// use hookguard_core::{schemes::GitHub, testing::block_on, HandlerOutcome, Receiver, Reply, RequestHead, Scheme, SignParams};
    /// let rx = Receiver::new(hookguard_core::Verifier::builder(GitHub::new()).secret("s").build().unwrap());
    /// let body = bytes::Bytes::from_static(b"{}");
    /// let mut headers = http::HeaderMap::new();
    /// headers.extend(GitHub::new().sign("s", &body, &SignParams::new(0).id("d-1")).unwrap().headers);
    /// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
    /// let reply = block_on(rx.deliver_since(&RequestHead::new(&m, &u, &headers), body, Instant::now(), |_d| async {
    ///     HandlerOutcome::<_, ()>::Responded { response: 204, success: true }
    /// }));
    /// assert!(matches!(reply, Ok(Reply::Handler(204))));
    /// ```
    ///
    /// # Errors
    /// As [`deliver`](Self::deliver).
    pub async fn deliver_since<R, E, F, Fut>(
        &self,
        head: &RequestHead<'_>,
        body: Bytes,
        arrived: std::time::Instant,
        call: F,
    ) -> Result<Reply<R>, E>
    where
        F: FnOnce(Delivery) -> Fut,
        Fut: Future<Output = HandlerOutcome<R, E>>,
    {
        match self.admit_since(head, body, arrived).await {
            Ok(admitted) => admitted.run(call).await,
            Err(answer) => Ok(Reply::Respond(answer)),
        }
    }

    /// The first half of [`deliver`](Self::deliver): verifies the complete body and claims the
    /// delivery (or, in inbox mode, stores it). `Ok` is a new, genuine delivery for the handler
    /// — run it with [`Admitted::run`]; `Err` is the answer to send instead (a rejection, a
    /// challenge echo, a duplicate, an ignored or an accepted delivery).
    ///
    /// The result does not borrow `head`, so an adapter can move the request's parts into the
    /// handler's request instead of copying them.
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, Receiver, HandlerOutcome, Reply, RequestHead, Scheme, SignParams};
    /// use hookguard_core::dedupe::{Dedupe, MemoryStore};
    /// use hookguard_core::testing::block_on;
    /// let rx = Receiver::new(hookguard_core::Verifier::builder(GitHub::new()).secret("s").build().unwrap())
    ///     .with_dedupe(Dedupe::new(MemoryStore::default()));
    /// let body = bytes::Bytes::from_static(b"{}");
    /// let mut headers = http::HeaderMap::new();
    /// headers.extend(GitHub::new().sign("s", &body, &SignParams::new(0).id("d-1")).unwrap().headers);
    /// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
    /// let admitted = block_on(rx.admit(&RequestHead::new(&m, &u, &headers), body.clone())).unwrap();
    /// drop(headers); // the head is no longer borrowed
    /// let reply = block_on(admitted.run(|d| async move {
    ///     HandlerOutcome::<_, ()>::Responded { response: d.body().len(), success: true }
    /// }));
    /// assert!(matches!(reply, Ok(Reply::Handler(2))));
    /// ```
    // The early answer is moved once to the adapter; boxing it would only add an allocation.
    #[allow(clippy::result_large_err)]
    pub async fn admit(&self, head: &RequestHead<'_>, body: Bytes) -> Result<Admitted<'_>, Response<Bytes>> {
        self.admit_since(head, body, std::time::Instant::now()).await
    }

    /// As [`admit`](Self::admit), for a request that arrived at `arrived` (taken before its
    /// body was read, as the adapters do): the sender's timeout runs from its request, so the
    /// body's read, the verification, the store and the handler all count. A 2xx ready after
    /// the sender stopped waiting is a failure to it (it retries, and counts toward its kill
    /// switch), and sender health counts it so.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use hookguard_core::{schemes::GitHub, testing::block_on, Receiver, RequestHead, Scheme, SignParams};
    /// let rx = Receiver::new(hookguard_core::Verifier::builder(GitHub::new()).secret("s").build().unwrap());
    /// let body = bytes::Bytes::from_static(b"{}");
    /// let mut headers = http::HeaderMap::new();
    /// headers.extend(GitHub::new().sign("s", &body, &SignParams::new(0).id("d-1")).unwrap().headers);
    /// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
    /// let head = RequestHead::new(&m, &u, &headers);
    /// assert!(block_on(rx.admit_since(&head, body, Instant::now())).is_ok());
    /// ```
    #[allow(clippy::result_large_err)]
    pub async fn admit_since(
        &self,
        head: &RequestHead<'_>,
        body: Bytes,
        arrived: std::time::Instant,
    ) -> Result<Admitted<'_>, Response<Bytes>> {
        let provider = self.verifier.provider();
        // One event's tries, for a sender whose kill switch counts them (HCSS, APS); only
        // authenticated deliveries are counted (forged bodies could otherwise crowd them out).
        let event = (self.health.counts_events() && !body.is_empty()).then(|| observe::event_of(&body));
        // (No clock read without the `metrics` feature.)
        let verifying = observe::Stopwatch::start();
        let verdict = self.verifier.verify(head, body);
        self.meters.verify_time(verifying.stop());
        let delivery = match verdict {
            Ok(Verdict::Deliver(d)) => d,
            Ok(Verdict::Challenge(answer)) => {
                self.answered_event("challenge", "", true, event);
                return Err(answer.into_response());
            }
            Ok(Verdict::Ignored(d)) => {
                tracing::info!(%provider, event_id = d.event_id(), "webhook ignored: own source application or user");
                self.answered_2xx("ignored", arrived, None, event);
                return Err(self.acknowledge(crate::response::ignored()));
            }
            Err(r) => {
                // The body's own faults and the window (judged by the verifier, see
                // `Verifier::authenticate`) come after authentication; other refusals may be
                // forged.
                let authenticated = matches!(
                    r,
                    Rejection::UnexpectedPayload { .. }
                        | Rejection::InvalidPayload(_)
                        | Rejection::TimestampOutOfWindow
                );
                return Err(self.refuse(&r, event.filter(|_| authenticated), self.whose(&r, head)));
            }
        };
        if let Some(inbox) = &self.inbox {
            // Boxed: a disk write's path, kept out of the state every inline request carries.
            return Err(Box::pin(self.store(inbox.as_ref(), head, &delivery, event, arrived)).await);
        }
        let guard = match &self.dedupe {
            None => None,
            Some(dedupe) => match dedupe.admit(&delivery).await {
                Ok(Admission::New(guard)) => Some(guard),
                Ok(Admission::Done) => {
                    tracing::info!(%provider, key = delivery.dedupe_key(), "webhook duplicate of a handled delivery");
                    self.answered_2xx("duplicate", arrived, None, event);
                    return Err(self.acknowledge(crate::response::duplicate()));
                }
                Ok(Admission::FailedOpen(e)) => {
                    tracing::warn!(%provider, error = %e, "dedupe store failed; handling without a claim (fail-open)");
                    None
                }
                Ok(_) => None,
                Err(r) => return Err(self.reject_event(&r, event)),
            },
        };
        Ok(Admitted {
            rx: self,
            delivery,
            guard,
            event,
            arrived,
        })
    }
}

/// A new, genuine delivery, claimed (when the receiver deduplicates) and waiting for the
/// handler: from [`Receiver::admit`]. Dropping it without [`run`](Self::run) releases the claim.
///
/// ```
/// use hookguard_core::{schemes::GitHub, testing::block_on, HandlerOutcome, Receiver, Reply, RequestHead, Scheme, SignParams};
/// use hookguard_core::dedupe::{Dedupe, MemoryStore};
/// let rx = Receiver::new(hookguard_core::Verifier::builder(GitHub::new()).secret("s").build().unwrap())
///     .with_dedupe(Dedupe::new(MemoryStore::default()));
/// let body = bytes::Bytes::from_static(br#"{"zen":"hi"}"#);
/// let mut headers = http::HeaderMap::new();
/// headers.extend(GitHub::new().sign("s", &body, &SignParams::new(0).id("d-1")).unwrap().headers);
/// let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
/// let head = RequestHead::new(&m, &u, &headers);
/// let admitted = block_on(rx.admit(&head, body.clone())).unwrap();
/// assert!(admitted.delivery().dedupe_key().unwrap().starts_with("github:"));
/// // Dropped unrun: the claim is released, so the same delivery is admitted again.
/// drop(admitted);
/// let again = block_on(rx.admit(&head, body.clone())).unwrap();
/// let failed = block_on(again.run(|_d| async { HandlerOutcome::<(), &str>::Failed("busy") }));
/// assert_eq!(failed.unwrap_err(), "busy");
/// // A failed handler releases the claim too; a successful one completes it.
/// let ok = block_on(block_on(rx.admit(&head, body.clone())).unwrap().run(|_d| async {
///     HandlerOutcome::<_, ()>::Responded { response: 204, success: true }
/// }));
/// assert!(matches!(ok, Ok(Reply::Handler(204))));
/// // Now a copy is answered `duplicate` without reaching a handler.
/// assert_eq!(block_on(rx.admit(&head, body)).unwrap_err().status(), 200);
/// ```
pub struct Admitted<'a> {
    rx: &'a Receiver,
    delivery: Delivery,
    guard: Option<ClaimGuard>,
    event: Option<u64>,
    arrived: std::time::Instant,
}

impl fmt::Debug for Admitted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admitted")
            .field("delivery", &self.delivery)
            .field("claim", &self.guard)
            .finish()
    }
}

impl Admitted<'_> {
    /// The delivery the handler will receive.
    ///
    /// ```
    /// use hookguard_core::{clock::ManualClock, dedupe::MemoryStore, schemes::BuildWorkPro, testing::{self, block_on}};
    /// use hookguard_core::{HandlerOutcome, Receiver, Reply, RequestHead, Scheme, SignParams};
    /// let now = 1_700_000_000;
    /// let rx: Receiver = Receiver::builder(BuildWorkPro::new()).secret("whsec_k").clock(ManualClock::new(now))
    ///     .dedupe(MemoryStore::new(1_000)).build().unwrap();
    /// let body = bytes::Bytes::from_static(br#"{"id":"evt_1","type":"bid.accepted"}"#);
    /// let signed = BuildWorkPro::new().sign("whsec_k", &body, &SignParams::new(now)).unwrap();
    /// let (headers, uri) = testing::request_parts(signed, "/hooks");
    /// let m = http::Method::POST;
    /// let head = RequestHead::new(&m, &uri, &headers);
    /// let admitted = block_on(rx.admit(&head, body)).unwrap();
    /// assert_eq!(admitted.delivery().event_type(), Some("bid.accepted"));
    /// assert_eq!(admitted.delivery().dedupe_key(), Some("buildworkpro:evt_1"));
    /// ```
    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    /// Runs `call` with the delivery, then completes the claim if it succeeded or releases it
    /// otherwise; the answer is the handler's, or `503 handler_timeout` over the budget.
    ///
    /// # Errors
    /// The handler's own error ([`HandlerOutcome::Failed`]), after releasing the claim.
    ///
    /// ```
    /// use hookguard_core::{clock::ManualClock, dedupe::MemoryStore, schemes::BuildWorkPro, testing::{self, block_on}};
    /// use hookguard_core::{HandlerOutcome, Receiver, Reply, RequestHead, Scheme, SignParams};
    /// let now = 1_700_000_000;
    /// let rx: Receiver = Receiver::builder(BuildWorkPro::new()).secret("whsec_k").clock(ManualClock::new(now))
    ///     .dedupe(MemoryStore::new(1_000)).build().unwrap();
    /// let body = bytes::Bytes::from_static(br#"{"id":"evt_1","type":"bid.accepted"}"#);
    /// let signed = BuildWorkPro::new().sign("whsec_k", &body, &SignParams::new(now)).unwrap();
    /// let (headers, uri) = testing::request_parts(signed, "/hooks");
    /// let m = http::Method::POST;
    /// let head = RequestHead::new(&m, &uri, &headers);
    /// // Over the budget: answered `503 handler_timeout`, the claim released.
    /// let admitted = block_on(rx.admit(&head, body.clone())).unwrap();
    /// match block_on(admitted.run(|_d| async { HandlerOutcome::<(), ()>::TimedOut })) {
    ///     Ok(Reply::Respond(answer)) => assert_eq!(answer.status(), 503),
    ///     _ => panic!("expected hookguard's answer"),
    /// }
    /// let admitted = block_on(rx.admit(&head, body.clone())).unwrap();
    /// let reply = block_on(admitted.run(|d| async move {
    ///     HandlerOutcome::<_, ()>::Responded { response: d.event_id().unwrap_or_default().to_owned(), success: true }
    /// }));
    /// assert!(matches!(reply, Ok(Reply::Handler(ref id)) if id == "evt_1"));
    /// // Completed: a copy no longer reaches a handler.
    /// assert_eq!(block_on(rx.admit(&head, body)).unwrap_err().status(), 200);
    /// ```
    pub async fn run<R, E, F, Fut>(self, call: F) -> Result<Reply<R>, E>
    where
        F: FnOnce(Delivery) -> Fut,
        Fut: Future<Output = HandlerOutcome<R, E>>,
    {
        let Admitted {
            rx,
            delivery,
            guard,
            event,
            arrived,
        } = self;
        let provider = rx.verifier.provider();
        // (No clock read without the `metrics` feature: the sender's timeout is checked from
        // `arrived` once, when the answer is ready.)
        let timer = observe::Stopwatch::start();
        // Pinned here once: the renewing path borrows it rather than moving it.
        let handler = std::pin::pin!(call(delivery));
        let renewal = guard
            .as_ref()
            .and_then(|g| Some((g, g.renew_every()?, rx.sleep.as_ref()?)));
        let outcome = match renewal {
            Some((g, every, sleep)) => keep_claimed(handler, g, every, sleep, provider).await,
            None => handler.await,
        };
        let took = timer.timed();
        if let Some(took) = took {
            rx.meters.handler_time(took);
        }
        let handled = |what: &'static str| rx.meters.handler_outcome(what);
        match outcome {
            HandlerOutcome::Responded { response, success } => {
                handled(if success { "success" } else { "failure" });
                if let Some(g) = guard {
                    match g.settle(success).await {
                        (Ok(true), _) => {}
                        (Ok(false), token) => {
                            let key = token.key();
                            tracing::warn!(%provider, key, "claim lease had expired before the handler finished")
                        }
                        (Err(e), token) => {
                            let key = token.key();
                            tracing::warn!(%provider, key, error = %e, "could not record the handler's outcome")
                        }
                    }
                }
                // Read after the claim's completion, which the sender waits for too.
                if success {
                    rx.answered_2xx("handled", arrived, took, event);
                } else {
                    rx.answered_event("handler_failed", "", false, event);
                }
                Ok(Reply::Handler(response))
            }
            HandlerOutcome::Failed(e) => {
                handled("failure");
                rx.answered_event("handler_failed", "", false, event);
                if let Some(g) = guard {
                    let _ = g.release().await;
                }
                Err(e)
            }
            HandlerOutcome::TimedOut => {
                handled("timeout");
                if let Some(g) = guard {
                    let _ = g.release().await;
                }
                Ok(Reply::Respond(rx.reject_event(&Rejection::HandlerTimeout, event)))
            }
        }
    }
}

impl Receiver {
    /// Inbox mode: stores the delivery durably and answers; never calls the handler.
    async fn store(
        &self,
        inbox: &dyn InboxStore,
        head: &RequestHead<'_>,
        delivery: &Delivery,
        event: Option<u64>,
        arrived: std::time::Instant,
    ) -> Response<Bytes> {
        let provider = self.verifier.provider();
        let mut headers = stored_headers(head.headers, self.verifier.scheme().credential_header());
        // A token copied into a header of any name (a proxy, a test harness) is not stored
        // either (a header-token sender's value, or HCSS's URL token).
        headers.retain(|(_, v)| !self.verifier.is_a_token(v.as_bytes()));
        let item = NewItem::from_delivery(delivery, headers, crate::inbox::now_ms());
        let timer = observe::Stopwatch::start();
        let accepted = inbox.accept(item).await;
        self.meters.accept_time(timer.stop());
        match accepted {
            Ok(Accepted::Stored(id)) => {
                // Debug: one line per delivery; the inbox row is the record.
                tracing::debug!(%provider, id, event_id = delivery.event_id(), "webhook accepted into the inbox");
                self.answered_2xx("accepted", arrived, None, event);
                observe::inbox_transition_of(provider, "accepted");
                self.acknowledge(crate::response::accepted())
            }
            Ok(Accepted::Duplicate(id)) => {
                tracing::info!(%provider, id, key = delivery.dedupe_key(), "webhook duplicate of an inbox item");
                self.answered_2xx("duplicate", arrived, None, event);
                self.acknowledge(crate::response::duplicate())
            }
            Err(InboxError::Full { limit }) => {
                tracing::warn!(%provider, limit, "inbox full: answering 503 so the sender retries (items wait faster than the worker finishes them: a slow or stuck handler, or a pending cap too small; serve: --max-pending)");
                self.reject_event(&Rejection::InboxFull, event)
            }
            Err(e) => {
                tracing::error!(%provider, error = %e, "inbox could not store the delivery: answering 503");
                self.reject_event(&Rejection::StoreUnavailable, event)
            }
        }
    }
}

/// Configures a [`Receiver`] — the verifier's settings plus dedupe and a handler budget — and
/// builds it into `T`: the receiver itself, or an adapter's middleware (`hookguard_tower`'s
/// `WebhookLayerBuilder` and `hookguard_actix`'s `WebhookBuilder` are this type), so every
/// framework is configured with the same methods.
///
/// The verifier's settings (`secret`, `tolerance`, `max_body`, `dedupe_key`, …) are exactly
/// [`VerifierBuilder`](crate::VerifierBuilder)'s setters: both builders get them from one list,
/// so neither can lack one the other has.
///
/// ```
/// use std::time::Duration;
/// use hookguard_core::{schemes::BuildWorkPro, dedupe::MemoryStore, Receiver};
/// let rx: Receiver = Receiver::builder(BuildWorkPro::new())
///     .secrets(["whsec_old", "whsec_new"])
///     .tolerance(Duration::from_secs(300))
///     .max_body(256 * 1024)
///     .dedupe(MemoryStore::default())
///     .handler_budget(Duration::from_secs(8))
///     .build()
///     .unwrap();
/// assert_eq!(rx.verifier().max_body(), 256 * 1024);
/// assert_eq!(rx.budget(), Some(Duration::from_secs(8)));
/// ```
pub struct ReceiverBuilder<T = Receiver> {
    verifier: crate::VerifierBuilder,
    dedupe: Option<Dedupe>,
    budget: Option<Duration>,
    inbox: Option<std::sync::Arc<dyn InboxStore>>,
    sender_timeout: Option<Duration>,
    kill_switch: Option<Option<observe::KillSwitch>>,
    out: std::marker::PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for ReceiverBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiverBuilder")
            .field("verifier", &self.verifier)
            .field("dedupe", &self.dedupe)
            .field("budget", &self.budget)
            .field("inbox", &self.inbox.is_some())
            .field("sender_timeout", &self.sender_timeout)
            .field("kill_switch", &self.kill_switch)
            .finish()
    }
}

// The verifier settings: `VerifierBuilder`'s setters, emitted from their one list (see
// `verifier_setters!` in verifier.rs), each applied to the inner verifier builder.
crate::verifier::verifier_setters!(ReceiverBuilder);

impl Receiver {
    /// Starts configuring a receiver for one sender's scheme.
    ///
    /// ```
    /// use hookguard_core::{dedupe::MemoryStore, schemes::Stripe, Provider, Receiver};
    /// let rx: Receiver = Receiver::builder(Stripe::new()).secret("whsec_k").dedupe(MemoryStore::new(10_000)).build().unwrap();
    /// assert_eq!(rx.verifier().provider(), Provider::Stripe);
    /// assert!(rx.dedupe().is_some());
    /// ```
    pub fn builder(scheme: impl crate::Scheme) -> ReceiverBuilder {
        ReceiverBuilder::new(std::sync::Arc::new(scheme))
    }
}

impl<T> ReceiverBuilder<T> {
    /// Starts configuring for a shared scheme (e.g. one chosen at run time).
    ///
    /// ```
    /// use hookguard_core::{schemes, Provider, Receiver, ReceiverBuilder};
    /// let scheme = schemes::for_provider(Provider::GitHub).unwrap();
    /// let rx: Receiver = ReceiverBuilder::new(scheme).secret("s").build().unwrap();
    /// # let _ = rx;
    /// ```
    pub fn new(scheme: std::sync::Arc<dyn crate::Scheme>) -> Self {
        Self {
            verifier: Verifier::builder_arc(scheme),
            dedupe: None,
            budget: None,
            inbox: None,
            sender_timeout: None,
            kill_switch: None,
            out: std::marker::PhantomData,
        }
    }

    /// How long the sender waits for an answer, when its profile's figure does not fit (see
    /// [`Receiver::with_sender_timeout`]): e.g. HCSS, which publishes none (10 s assumed).
    /// The body's read timeout follows it as it follows a profile's figure (unless
    /// [`body_read_timeout`](Self::body_read_timeout) sets it): at most
    /// [`DEFAULT_READ_TIMEOUT`](crate::DEFAULT_READ_TIMEOUT), 1 s below a shorter timeout (at
    /// least 1 s), so a slow body is answered while the sender still listens.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{schemes::Hcss, Receiver};
    /// let rx: Receiver = Receiver::builder(Hcss::new()).secret("t").sender_timeout(Duration::from_secs(30)).build().unwrap();
    /// assert_eq!(rx.sender_timeout(), Duration::from_secs(30));
    /// assert_eq!(rx.verifier().read_timeout(), hookguard_core::DEFAULT_READ_TIMEOUT);
    /// let short: Receiver = Receiver::builder(Hcss::new()).secret("t").sender_timeout(Duration::from_secs(3)).build().unwrap();
    /// assert_eq!(short.verifier().read_timeout(), Duration::from_secs(2));
    /// // A read timeout given with `.body_read_timeout(..)` stays as given.
    /// let given: Receiver = Receiver::builder(Hcss::new()).secret("t")
    ///     .body_read_timeout(Duration::from_millis(1500)).sender_timeout(Duration::from_secs(30)).build().unwrap();
    /// assert_eq!(given.verifier().read_timeout(), Duration::from_millis(1500));
    /// // Under a second is refused: every answer would count as late.
    /// let zero: Result<Receiver, _> = Receiver::builder(Hcss::new()).secret("t").sender_timeout(Duration::ZERO).build();
    /// assert!(zero.is_err());
    /// ```
    pub fn sender_timeout(mut self, timeout: Duration) -> Self {
        self.sender_timeout = Some(timeout);
        self
    }

    /// The sender's kill switch, when its profile's does not fit or is not modelled (see
    /// [`Receiver::with_kill_switch`]).
    ///
    /// ```
    /// use hookguard_core::{observe::KillSwitch, schemes::Slack, Receiver};
    /// let k = KillSwitch::new(20, "disables event subscriptions", "re-enable them in the app's settings");
    /// let rx: Receiver = Receiver::builder(Slack::new()).secret("s").kill_switch(Some(k)).build().unwrap();
    /// assert_eq!(rx.health().kill_switch(), Some(k));
    /// // One that would trip at no failure is refused.
    /// let never = KillSwitch::new(0, "x", "y");
    /// let refused: Result<Receiver, _> = Receiver::builder(Slack::new()).secret("s").kill_switch(Some(never)).build();
    /// assert!(refused.is_err());
    /// ```
    pub fn kill_switch(mut self, kill_switch: Option<observe::KillSwitch>) -> Self {
        self.kill_switch = Some(kill_switch);
        self
    }

    /// De-duplicates in `store` with the default lease (30 s) and retention (7 days), failing closed.
    ///
    /// ```
    /// use hookguard_core::{dedupe::{MemoryStore, DEFAULT_LEASE, DEFAULT_RETENTION}, schemes::GitHub, Receiver};
    /// let rx: Receiver = Receiver::builder(GitHub::new()).secret("s").dedupe(MemoryStore::new(10_000)).build().unwrap();
    /// let d = rx.dedupe().unwrap();
    /// assert_eq!((d.lease_duration(), d.retention_duration()), (DEFAULT_LEASE, DEFAULT_RETENTION));
    /// ```
    pub fn dedupe(mut self, store: impl crate::dedupe::DedupeStore) -> Self {
        self.dedupe = Some(Dedupe::new(store));
        self
    }

    /// De-duplicates with a fully configured policy (lease, retention, fail-open).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{dedupe::{Dedupe, MemoryStore}, schemes::GitHub, Receiver};
    /// let policy = Dedupe::new(MemoryStore::new(10_000))
    ///     .lease(Duration::from_secs(20))
    ///     .retention(Duration::from_secs(24 * 3600));
    /// let rx: Receiver = Receiver::builder(GitHub::new()).secret("s").dedupe_policy(policy).build().unwrap();
    /// assert_eq!(rx.dedupe().unwrap().lease_duration(), Duration::from_secs(20));
    /// assert_eq!(rx.dedupe().unwrap().retention_duration(), Duration::from_secs(24 * 3600));
    /// ```
    pub fn dedupe_policy(mut self, dedupe: Dedupe) -> Self {
        self.dedupe = Some(dedupe);
        self
    }

    /// Inbox mode: a verified, new delivery is stored durably in `inbox` and answered
    /// `200 {"status":"accepted"}`; a copy is answered `200 {"status":"duplicate"}` (Slack: an
    /// empty `200` both, see [`Scheme::acknowledges_empty`](crate::Scheme::acknowledges_empty)); when it
    /// cannot be stored (disk full, cap reached, database down) the answer is `503` +
    /// `Retry-After`, never `2xx`. The route's handler is **not** called: run a
    /// [`Worker`](crate::inbox) on the same inbox. The inbox is the dedupe record, so no
    /// separate [`dedupe`](Self::dedupe) store is needed (configuring both is refused).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use hookguard_core::inbox::{Accepted, ClaimRef, ClaimedItem, InboxFuture, InboxRecord, InboxStats, InboxStore, ListFilter, NewItem};
    /// # // A placeholder inbox store (hookguard-sqlite and hookguard-postgres have real ones).
    /// # struct Stub;
    /// # impl InboxStore for Stub {
    /// #     fn accept(&self, _: NewItem) -> InboxFuture<'_, Accepted> { unimplemented!() }
    /// #     fn claim(&self, _: i64, _: Duration, _: u32) -> InboxFuture<'_, Vec<ClaimedItem>> { unimplemented!() }
    /// #     fn complete(&self, _: ClaimRef, _: i64) -> InboxFuture<'_, bool> { unimplemented!() }
    /// #     fn fail(&self, _: ClaimRef, _: &str, _: Option<i64>, _: i64) -> InboxFuture<'_, bool> { unimplemented!() }
    /// #     fn release(&self, _: ClaimRef) -> InboxFuture<'_, bool> { unimplemented!() }
    /// #     fn get(&self, _: i64) -> InboxFuture<'_, Option<InboxRecord>> { unimplemented!() }
    /// #     fn list(&self, _: ListFilter) -> InboxFuture<'_, Vec<InboxRecord>> { unimplemented!() }
    /// #     fn replay(&self, _: i64, _: i64) -> InboxFuture<'_, ()> { unimplemented!() }
    /// #     fn replay_dead(&self, _: i64) -> InboxFuture<'_, u64> { unimplemented!() }
    /// #     fn purge(&self, _: i64, _: bool) -> InboxFuture<'_, u64> { unimplemented!() }
    /// #     fn stats(&self) -> InboxFuture<'_, InboxStats> { unimplemented!() }
    /// # }
    /// use hookguard_core::{dedupe::MemoryStore, schemes::GitHub, Receiver};
    /// let rx: Receiver = Receiver::builder(GitHub::new()).secret("s").inbox(Stub).build().unwrap();
    /// assert!(rx.inbox().is_some());
    /// // The inbox is the dedupe record: a dedupe store beside it is refused.
    /// let both: Result<Receiver, _> = Receiver::builder(GitHub::new()).secret("s")
    ///     .inbox(Stub)
    ///     .dedupe(MemoryStore::new(1_000))
    ///     .build();
    /// assert!(both.is_err());
    /// ```
    pub fn inbox(mut self, inbox: impl InboxStore) -> Self {
        self.inbox = Some(std::sync::Arc::new(inbox));
        self
    }

    /// Answers `503` + `Retry-After` (retryable) when the handler has not answered within
    /// `budget`, releasing the claim. Set it below the sender's timeout (BuildWorkPro 10 s,
    /// Procore 5 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{schemes::Procore, Receiver};
    /// // Procore waits 5 s: answer before it gives up.
    /// let rx: Receiver = Receiver::builder(Procore::new()).secret("Bearer t").handler_budget(Duration::from_secs(4)).build().unwrap();
    /// assert_eq!(rx.budget(), Some(Duration::from_secs(4)));
    /// ```
    pub fn handler_budget(mut self, budget: Duration) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Builds the receiver and turns it into `T`.
    ///
    /// # Errors
    /// As [`VerifierBuilder::build`](crate::VerifierBuilder::build): no secret, too many, or one
    /// the scheme cannot use (named by position, never by value). Also a handler budget at or
    /// above the dedupe lease: a retry could claim the delivery while the first handler still
    /// runs.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{schemes::GitHub, dedupe::MemoryStore, ConfigError, Receiver};
    /// assert_eq!(Receiver::builder(GitHub::new()).build().unwrap_err(), ConfigError::NoSecret);
    /// let too_long = Receiver::builder(GitHub::new()).secret("s")
    ///     .dedupe(MemoryStore::default()) // lease 30 s
    ///     .handler_budget(Duration::from_secs(30))
    ///     .build();
    /// assert!(matches!(too_long, Err(ConfigError::Invalid(_))));
    /// // A lease (or retention) under a second is refused.
    /// let zero = Receiver::builder(GitHub::new()).secret("s")
    ///     .dedupe_policy(hookguard_core::dedupe::Dedupe::new(MemoryStore::default()).lease(Duration::ZERO))
    ///     .build();
    /// assert!(matches!(zero, Err(ConfigError::Invalid(_))));
    /// ```
    pub fn build(self) -> Result<T, ConfigError>
    where
        T: From<Receiver>,
    {
        if self.inbox.is_some() && self.dedupe.is_some() {
            return Err(ConfigError::Invalid(
                "an inbox is the dedupe record: configure either .inbox(..) or .dedupe(..), not both",
            ));
        }
        if let Some(d) = &self.dedupe {
            // A zero lease ended before any copy could see it (Redis keeps it a millisecond):
            // every copy then ran beside the first.
            if d.below_a_second() {
                return Err(ConfigError::Invalid(
                    "the dedupe lease and retention must be at least 1 s (copies arriving later would run the handler again)",
                ));
            }
        }
        if let (Some(budget), Some(d)) = (self.budget, &self.dedupe) {
            if budget >= d.lease_duration() {
                return Err(ConfigError::Invalid(
                    "the handler budget must be shorter than the dedupe lease (a retry could claim the delivery while its handler still runs)",
                ));
            }
        }
        let mut verifier = self.verifier;
        if let Some(t) = self.sender_timeout {
            // No sender waits less (Slack: 3 s); a tinier figure counted every answer late.
            if t < Duration::from_secs(1) {
                return Err(ConfigError::Invalid(
                    "the sender timeout must be at least 1 s (a shorter one counts every answer as late)",
                ));
            }
            // The body must be read, and the answer sent, while this sender still listens
            // (unless the application chose the read timeout itself).
            if !verifier.read_timeout_given {
                verifier.read_timeout = crate::profile::within(t, crate::DEFAULT_READ_TIMEOUT);
            }
        }
        let mut rx = Receiver::new(verifier.build()?).with_budget(self.budget);
        if let Some(t) = self.sender_timeout {
            rx = rx.with_sender_timeout(t);
        }
        if let Some(k) = self.kill_switch {
            if k.is_some_and(|k| k.failures == 0) {
                return Err(ConfigError::Invalid(
                    "a kill switch trips after one failure at least (for none, give None)",
                ));
            }
            rx = rx.with_kill_switch(k);
        }
        if let Some(d) = self.dedupe {
            rx = rx.with_dedupe(d);
        }
        if let Some(inbox) = self.inbox {
            rx = rx.with_inbox(inbox);
        }
        Ok(T::from(rx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedupe::MemoryStore;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    /// A future holding 1 KiB across an await, like a framework's handler future.
    async fn holding_a_kilobyte() -> Result<u8, ()> {
        let pad = [7u8; 1024];
        std::future::ready(()).await;
        Ok(pad[1023])
    }

    /// A review's finding: a caller of `admit` (no `precheck` before it, as its own example
    /// shows) had a Procore POST without the token but with an oversized body answered
    /// `503 body_too_large` (retried by whoever sent it, with the WARN to raise the limit,
    /// counted toward Procore's kill switch) where any other tokenless POST is a `401`. With
    /// the token, the body's size is what is refused.
    #[test]
    fn an_oversized_body_without_the_token_is_refused_for_the_token_also_without_precheck() {
        use crate::schemes::Procore;
        let v = crate::Verifier::builder(Procore::new())
            .secret("Bearer t")
            .max_body(100)
            .build()
            .unwrap();
        let rx = Receiver::new(v);
        let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
        let status = |headers: &http::HeaderMap| {
            let admitted =
                crate::testing::block_on(rx.admit(&RequestHead::new(&m, &u, headers), Bytes::from(vec![b' '; 200])));
            match admitted {
                Ok(_) => panic!("an oversized body was admitted"),
                Err(answer) => answer.status().as_u16(),
            }
        };
        assert_eq!(status(&http::HeaderMap::new()), 401);
        let mut wrong = http::HeaderMap::new();
        wrong.insert(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer x"));
        assert_eq!(status(&wrong), 401);
        let mut right = http::HeaderMap::new();
        right.insert(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer t"));
        assert_eq!(status(&right), 503);
    }

    /// A review's finding: the WARN of a body over the limit is triggered by the head alone
    /// (a declared length, a well-formed but forged signature), so a client repeating such a
    /// request wrote one WARN per request. Now at most one a minute, as the replay window's.
    #[test]
    fn the_oversized_body_warning_is_logged_at_most_once_a_minute() {
        use crate::clock::ManualClock;
        use crate::schemes::BuildWorkPro;
        let clock = ManualClock::new(1_000_000);
        let v = crate::Verifier::builder(BuildWorkPro::new())
            .secret("whsec_k")
            .clock(clock.clone())
            .build()
            .unwrap();
        let rx = Receiver::new(v);
        let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
        let mut h = http::HeaderMap::new();
        h.insert(
            "buildworkpro-signature",
            http::HeaderValue::from_str(&format!("t=1000000,v1={}", "ab".repeat(32))).unwrap(),
        );
        let logs = crate::testing::Logs::default();
        let warned = || {
            logs.messages(tracing::Level::WARN)
                .iter()
                .filter(|m| m.contains("over the body limit"))
                .count()
        };
        tracing::subscriber::with_default(logs.clone(), || {
            let refuse = || rx.reject_read(&RequestHead::new(&m, &u, &h), Rejection::BodyTooLarge { limit: 10 });
            for _ in 0..5 {
                assert_eq!(refuse().status(), 503);
            }
            assert_eq!(warned(), 1);
            clock.set(1_000_059);
            refuse();
            assert_eq!(warned(), 1, "a second warning within the minute");
            clock.set(1_000_060);
            refuse();
            assert_eq!(warned(), 2);
        });
    }

    /// A custom sender whose profile retries for ever: the receiver is built (the event memory's
    /// horizon, 1.5× the sender's plus a minute, once overflowed and panicked).
    #[test]
    fn a_sender_that_retries_for_ever_is_not_an_overflow() {
        use crate::profile::{RetrySchedule, SenderProfile};
        use crate::schemes::BuildWorkPro;
        use crate::{Authenticated, ConfigError, Context, Described, Provider, Rejection, Scheme, SignParams, Signed};
        #[derive(Debug)]
        struct Endless(BuildWorkPro);
        impl Scheme for Endless {
            fn provider(&self) -> Provider {
                self.0.provider()
            }
            fn profile(&self) -> SenderProfile {
                let mut p = SenderProfile::unknown("endless");
                p.schedule = RetrySchedule::Exponential {
                    base: Duration::from_secs(1),
                    cap: Duration::MAX,
                    horizon: Duration::MAX,
                };
                p
            }
            fn authenticate(
                &self,
                req: &RequestHead<'_>,
                body: &[u8],
                ctx: &Context<'_>,
            ) -> Result<Authenticated, Rejection> {
                self.0.authenticate(req, body, ctx)
            }
            fn describe(&self, req: &RequestHead<'_>, body: &[u8]) -> Result<Described, Rejection> {
                self.0.describe(req, body)
            }
            fn sign(&self, secret: &str, body: &[u8], params: &SignParams) -> Result<Signed, ConfigError> {
                self.0.sign(secret, body, params)
            }
        }
        let verifier = crate::Verifier::builder(Endless(BuildWorkPro::new()))
            .secret("whsec_x")
            .build()
            .unwrap();
        let rx = Receiver::new(verifier);
        assert_eq!(rx.health().retry_horizon(), Some(Duration::MAX));
    }

    /// A browser's GET on the webhook path (a 405), HCSS's challenge URL opened without its
    /// challenge (a 400), a POST with no credential or signature at all, or with a signature no
    /// sender writes, is no sender's request: a tryout's single GET (and later a single bare
    /// POST) logged Procore's kill-switch ERROR ("pauses every delivery"), 21 malformed POSTs
    /// BuildWorkPro's "endpoint disabled". Such answers are counted in the metrics only; a
    /// refusal the sender may get (a wrong token or secret) still counts toward its health.
    #[test]
    fn requests_no_sender_makes_leave_the_senders_health_alone() {
        use crate::schemes::{BuildWorkPro, Hcss, Procore};
        use http::{HeaderMap, HeaderValue, Method, Uri};
        let procore = Receiver::new(
            Verifier::builder(Procore::new())
                .secret("Bearer s3cret")
                .build()
                .unwrap(),
        );
        let hcss = Receiver::new(Verifier::builder(Hcss::new()).secret("tok").build().unwrap());
        let bwp = Receiver::new(
            Verifier::builder(BuildWorkPro::new())
                .secret("whsec_k")
                .build()
                .unwrap(),
        );
        let path = Uri::from_static("/webhooks");
        let post = |rx: &Receiver, headers: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in headers {
                h.insert(*k, HeaderValue::from_str(v).unwrap());
            }
            let head = RequestHead::new(&Method::POST, &path, &h);
            let answer = crate::testing::block_on(rx.deliver(&head, Bytes::from_static(b"{}"), |_| async {
                HandlerOutcome::<(), ()>::Responded {
                    response: (),
                    success: true,
                }
            }));
            match answer {
                Ok(Reply::Respond(r)) => r.status().as_u16(),
                _ => panic!("a refused POST was handled"),
            }
        };
        for rx in [&procore, &hcss, &bwp] {
            let headers = HeaderMap::new();
            for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::PUT, Method::DELETE] {
                for _ in 0..25 {
                    let answer = rx.precheck(&RequestHead::new(&method, &path, &headers)).unwrap_err();
                    let expected = if method == Method::GET && std::ptr::eq(rx, &hcss) {
                        400
                    } else {
                        405
                    };
                    assert_eq!(answer.status().as_u16(), expected, "{method}");
                }
            }
            assert_eq!(rx.health().consecutive_failures(), 0, "{}", rx.verifier().provider());
            assert_eq!(rx.health().uncredentialed_in_a_row(), 0, "never a delivery");
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let forged = format!("t={now},v1={}", "ab".repeat(32));
        // (receiver, a POST no sender makes, one the sender may make with a wrong secret)
        type Headers<'a> = Vec<(&'static str, &'a str)>;
        let cases: [(&Receiver, Headers<'_>, Headers<'_>); 3] = [
            (&procore, vec![], vec![("authorization", "Bearer rotated")]),
            (
                &bwp,
                vec![("buildworkpro-signature", "t=1,v1=zz")],
                vec![("buildworkpro-signature", &forged)],
            ),
            // HCSS's URL token: a POST without it cannot be told from the sender's.
            (&hcss, vec![("x-unrelated", "1")], vec![]),
        ];
        for (rx, no_sender, maybe_sender) in cases {
            let provider = rx.verifier().provider();
            if provider != crate::Provider::Hcss {
                for _ in 0..30 {
                    assert!(matches!(post(rx, &no_sender), 400 | 401), "{provider}");
                }
                assert_eq!(post(rx, &[]), 401, "{provider}");
                assert_eq!(rx.health().consecutive_failures(), 0, "{provider}");
                // Still a streak worth a WARN: it may be the sender, misconfigured.
                assert_eq!(rx.health().uncredentialed_in_a_row(), 31, "{provider}");
            }
            assert_eq!(post(rx, &maybe_sender), 401, "{provider}");
            assert_eq!(rx.health().consecutive_failures(), 1, "{provider}");
            assert_eq!(rx.health().uncredentialed_in_a_row(), 0, "{provider}");
        }
    }

    #[test]
    fn the_racing_futures_hold_what_they_race_once() {
        let handler = holding_a_kilobyte();
        let n = std::mem::size_of_val(&handler);
        assert!(n >= 1024);
        // An `async fn` kept its arguments and their pinned copies side by side: twice `n`.
        let of = HandlerOutcome::of(handler, None::<std::future::Ready<()>>, |_| true);
        assert!(
            std::mem::size_of_val(&of) < n + 64,
            "{} for {n}",
            std::mem::size_of_val(&of)
        );
        let within = within(holding_a_kilobyte(), || std::future::ready(()));
        assert!(std::mem::size_of_val(&within) < n + 64);
        // And they still answer.
        let outcome = crate::testing::block_on(HandlerOutcome::of(
            holding_a_kilobyte(),
            None::<std::future::Ready<()>>,
            |&r| r == 7,
        ));
        assert!(matches!(
            outcome,
            HandlerOutcome::Responded {
                response: 7,
                success: true
            }
        ));
        assert_eq!(crate::testing::block_on(within), Some(Ok(7)));
    }

    /// The given-up mark holds only while such a request is polled, also when its poll
    /// panics: the next request on the thread is judged as usual.
    #[test]
    fn a_given_up_answer_is_marked_only_while_polled() {
        let seen = crate::testing::block_on(answer_given_up(Box::pin(async { GIVEN_UP.with(std::cell::Cell::get) })));
        assert!(seen);
        assert!(!GIVEN_UP.with(std::cell::Cell::get));
        let panicked = std::panic::catch_unwind(|| {
            crate::testing::block_on(answer_given_up(Box::pin(async { panic!("the handler panics") })))
        });
        assert!(panicked.is_err());
        assert!(!GIVEN_UP.with(std::cell::Cell::get), "left set after a panic");
    }

    /// A store whose first `fail` renewals fail (a store that is briefly down).
    struct RenewFails {
        store: MemoryStore,
        fail: AtomicU32,
    }

    impl crate::dedupe::DedupeStore for RenewFails {
        fn claim<'a>(&'a self, key: &'a str, lease: Duration) -> crate::dedupe::StoreFuture<'a, crate::dedupe::Claim> {
            self.store.claim(key, lease)
        }
        fn complete<'a>(
            &'a self,
            t: &'a crate::dedupe::ClaimToken,
            r: Duration,
        ) -> crate::dedupe::StoreFuture<'a, bool> {
            self.store.complete(t, r)
        }
        fn release<'a>(&'a self, t: &'a crate::dedupe::ClaimToken) -> crate::dedupe::StoreFuture<'a, bool> {
            self.store.release(t)
        }
        fn abandon(&self, t: crate::dedupe::ClaimToken) {
            self.store.abandon(t)
        }
        fn renews(&self) -> bool {
            true
        }
        fn renew<'a>(
            &'a self,
            t: &'a crate::dedupe::ClaimToken,
            lease: Duration,
        ) -> crate::dedupe::StoreFuture<'a, bool> {
            if self
                .fail
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Box::pin(std::future::ready(Err(crate::dedupe::StoreError::msg("down"))));
            }
            self.store.renew(t, lease)
        }
    }

    /// A failed renewal is tried again soon (a twelfth of the lease), not a third of a lease
    /// later: with two failures in a row the third try came after the lease had ended, and a
    /// retry then ran beside the handler. Failed tries do not count as renewals.
    /// A request going on after its sender hung up is bounded by the budget, else by as long
    /// as its claim is renewed, else by the default.
    #[test]
    fn the_background_limit_is_the_budget_or_the_claims_renewed_life() {
        let rx = || {
            Receiver::new(
                Verifier::builder(crate::schemes::GitHub::new())
                    .secret("s")
                    .build()
                    .unwrap(),
            )
        };
        let sleep: Sleep = Arc::new(|_| Box::pin(std::future::ready(())));
        let lease = Duration::from_secs(30);
        let renewed = rx()
            .with_dedupe(Dedupe::new(MemoryStore::new(100)).lease(lease))
            .with_sleep(Arc::clone(&sleep));
        assert_eq!(renewed.background_limit(), Duration::from_secs(10 * 30 + 30));
        // Nothing renews the claim without a sleep: the default.
        let unrenewed = rx().with_dedupe(Dedupe::new(MemoryStore::new(100)).lease(lease));
        assert_eq!(unrenewed.background_limit(), DEFAULT_BACKGROUND_LIMIT);
        let budgeted = renewed.with_budget(Some(Duration::from_secs(7)));
        assert_eq!(budgeted.background_limit(), Duration::from_secs(7));
    }

    #[test]
    fn a_failed_renewal_is_tried_again_soon() {
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&asked);
        let sleep: Sleep = Arc::new(move |d| {
            log.lock().unwrap().push(d);
            Box::pin(std::future::ready(()))
        });
        let rx = Receiver::new(
            Verifier::builder(crate::schemes::GitHub::new())
                .secret("s")
                .build()
                .unwrap(),
        )
        .with_dedupe(Dedupe::new(RenewFails {
            store: MemoryStore::new(100),
            fail: AtomicU32::new(2),
        }))
        .with_sleep(sleep);
        let body = Bytes::from_static(br#"{"n":"renew-fails"}"#);
        let mut headers = http::HeaderMap::new();
        use crate::Scheme as _;
        let signed = crate::schemes::GitHub::new()
            .sign("s", &body, &crate::SignParams::new(0))
            .unwrap();
        headers.extend(signed.headers);
        let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
        let head = RequestHead::new(&m, &u, &headers);
        let r = crate::testing::block_on(rx.deliver(&head, body, |_d| pending_for(40)));
        assert!(matches!(r, Ok(Reply::Handler(()))), "{r:?}");
        let asked = asked.lock().unwrap().clone();
        let every = asked[0];
        // (A sleep over at once is asked for again at the next poll: each wait shows twice.)
        let soon = every / 4;
        assert_eq!(&asked[..6], &[every, soon, soon, soon, soon, every], "{asked:?}");
    }

    /// A handler pending for `polls` polls (waking itself each time), then answering.
    fn pending_for(polls: u32) -> impl Future<Output = HandlerOutcome<(), ()>> {
        let mut left = polls;
        std::future::poll_fn(move |cx| {
            if left == 0 {
                return std::task::Poll::Ready(HandlerOutcome::Responded {
                    response: (),
                    success: true,
                });
            }
            left -= 1;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        })
    }

    /// A sleep that is over at once and a renewal that answers at once (the in-memory store's)
    /// never starve the handler: one renewal per poll at most, the handler polled after each;
    /// and a handler that never seems to end stops being renewed after `MAX_RENEWALS`.
    #[test]
    fn renewals_never_starve_the_handler_and_end() {
        let renewed = Arc::new(AtomicU32::new(0));
        let sleep: Sleep = Arc::new(|_| Box::pin(std::future::ready(())));
        let rx = Receiver::new(
            Verifier::builder(crate::schemes::GitHub::new())
                .secret("s")
                .build()
                .unwrap(),
        )
        .with_dedupe(Dedupe::new(crate::dedupe::Observed {
            store: MemoryStore::new(100),
            claim_pause: Duration::ZERO,
            settle_pause: Duration::ZERO,
            renewals: Arc::clone(&renewed),
        }))
        .with_sleep(sleep);
        let deliver = |id: &str, polls: u32| {
            let body = Bytes::from(format!(r#"{{"n":"{id}"}}"#));
            let mut headers = http::HeaderMap::new();
            use crate::Scheme as _;
            let signed = crate::schemes::GitHub::new()
                .sign("s", &body, &crate::SignParams::new(0).id(id))
                .unwrap();
            headers.extend(signed.headers);
            let (m, u) = (http::Method::POST, http::Uri::from_static("/"));
            let head = RequestHead::new(&m, &u, &headers);
            crate::testing::block_on(rx.deliver(&head, body, |_d| pending_for(polls)))
        };
        assert!(matches!(deliver("d-quick", 0), Ok(Reply::Handler(()))));
        assert_eq!(renewed.load(Ordering::SeqCst), 0, "a quick handler renews nothing");
        let r = deliver("d-some", 10);
        assert!(matches!(r, Ok(Reply::Handler(()))), "{r:?}");
        let some = renewed.load(Ordering::SeqCst);
        assert!((1..=10).contains(&some), "{some} renewals over 10 polls");
        assert!(matches!(deliver("d-long", 1_000), Ok(Reply::Handler(()))));
        assert_eq!(renewed.load(Ordering::SeqCst) - some, MAX_RENEWALS);
    }
}
