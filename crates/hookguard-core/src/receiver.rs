//! [`Receiver`]: the whole receiving protocol, shared by every framework adapter.
//!
//! An adapter only translates: it calls [`Receiver::precheck`] with the request head, reads at
//! most the returned limit of body bytes once, then calls [`Receiver::deliver`] with a closure
//! that runs the application's handler. Everything else — verification, challenge answers,
//! dedupe claims, completing on success and releasing on failure, logging — happens here, so
//! the tower and actix adapters behave identically.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::Response;

use crate::dedupe::{Admission, Dedupe};
use crate::{Delivery, Precheck, Rejection, RequestHead, Verdict, Verifier};

/// What the application's handler did, as the adapter saw it.
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

/// What to send back.
#[derive(Debug)]
pub enum Reply<R> {
    /// The handler's own answer.
    Handler(R),
    /// An answer hookguard produced (rejection, challenge, duplicate, ignored).
    Respond(Response<Bytes>),
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
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("verifier", &self.verifier)
            .field("dedupe", &self.dedupe)
            .field("budget", &self.budget)
            .finish()
    }
}

impl Receiver {
    /// A receiver that verifies with `verifier`, without dedupe or budget.
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            dedupe: None,
            budget: None,
        }
    }

    /// De-duplicates with `dedupe`.
    pub fn with_dedupe(mut self, dedupe: Dedupe) -> Self {
        self.dedupe = Some(dedupe);
        self
    }

    /// Sets (or clears) the handler budget the adapter enforces.
    pub fn with_budget(mut self, budget: Option<Duration>) -> Self {
        self.budget = budget;
        self
    }

    /// The verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The dedupe policy, if any.
    pub fn dedupe(&self) -> Option<&Dedupe> {
        self.dedupe.as_ref()
    }

    /// The handler budget, if any: adapters stop waiting for the handler after it and report
    /// [`HandlerOutcome::TimedOut`].
    pub fn budget(&self) -> Option<Duration> {
        self.budget
    }

    /// Before the body: `Ok(limit)` to read at most `limit` bytes, or the answer to send now
    /// (a challenge, a wrong method, a declared `Content-Length` over the limit).
    ///
    /// # Errors
    /// The response to send instead of reading the body.
    // The early answer is moved once to the adapter; boxing it would only add an allocation.
    #[allow(clippy::result_large_err)]
    pub fn precheck(&self, head: &RequestHead<'_>) -> Result<usize, Response<Bytes>> {
        match self.verifier.precheck(head) {
            Ok(Precheck::ReadBody { limit }) => Ok(limit),
            Ok(Precheck::Challenge(answer)) => {
                tracing::info!(provider = %self.verifier.provider(), "webhook challenge answered");
                Err(answer.into_response())
            }
            Err(r) => Err(self.reject(&r)),
        }
    }

    /// The answer to a rejection, logged with its code (never the secret or the body).
    pub fn reject(&self, r: &Rejection) -> Response<Bytes> {
        tracing::info!(
            provider = %self.verifier.provider(),
            code = r.code(),
            status = r.status().as_u16(),
            "webhook rejected"
        );
        crate::response::rejection(r)
    }

    /// Verifies the complete body, claims the delivery, runs `call` for new deliveries only,
    /// and completes the claim if it succeeded or releases it otherwise.
    ///
    /// # Errors
    /// The handler's own error ([`HandlerOutcome::Failed`]), after releasing the claim.
    pub async fn deliver<R, E, F, Fut>(&self, head: &RequestHead<'_>, body: Bytes, call: F) -> Result<Reply<R>, E>
    where
        F: FnOnce(Delivery) -> Fut,
        Fut: Future<Output = HandlerOutcome<R, E>>,
    {
        let provider = self.verifier.provider();
        let delivery = match self.verifier.verify(head, body) {
            Ok(Verdict::Deliver(d)) => d,
            Ok(Verdict::Challenge(answer)) => return Ok(Reply::Respond(answer.into_response())),
            Ok(Verdict::Ignored(d)) => {
                tracing::info!(%provider, event_id = d.event_id(), "webhook ignored: own source application");
                return Ok(Reply::Respond(crate::response::ignored()));
            }
            Err(r) => return Ok(Reply::Respond(self.reject(&r))),
        };
        let guard = match &self.dedupe {
            None => None,
            Some(dedupe) => match dedupe.admit(&delivery).await {
                Ok(Admission::New(guard)) => Some(guard),
                Ok(Admission::Done) => {
                    tracing::info!(%provider, key = delivery.dedupe_key(), "webhook duplicate of a handled delivery");
                    return Ok(Reply::Respond(crate::response::duplicate()));
                }
                Ok(Admission::FailedOpen(e)) => {
                    tracing::warn!(%provider, error = %e, "dedupe store failed; handling without a claim (fail-open)");
                    None
                }
                Ok(_) => None,
                Err(r) => return Ok(Reply::Respond(self.reject(&r))),
            },
        };
        let key = delivery.dedupe_key().map(str::to_owned);
        match call(delivery).await {
            HandlerOutcome::Responded { response, success } => {
                if let Some(g) = guard {
                    match g.finish(success).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(%provider, ?key, "claim lease had expired before the handler finished")
                        }
                        Err(e) => tracing::warn!(%provider, ?key, error = %e, "could not record the handler's outcome"),
                    }
                }
                Ok(Reply::Handler(response))
            }
            HandlerOutcome::Failed(e) => {
                if let Some(g) = guard {
                    let _ = g.release().await;
                }
                Err(e)
            }
            HandlerOutcome::TimedOut => {
                if let Some(g) = guard {
                    let _ = g.release().await;
                }
                Ok(Reply::Respond(self.reject(&Rejection::HandlerTimeout)))
            }
        }
    }
}
