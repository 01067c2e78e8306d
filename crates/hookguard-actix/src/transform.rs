//! [`Webhook`]: the middleware factory one wraps a resource with, and its builder.

use std::fmt;
use std::future::{ready, Ready};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::Error;
use hookguard_core::dedupe::{Dedupe, DedupeStore};
use hookguard_core::{ChallengeRule, ConfigError, Receiver, Scheme, Verifier, VerifierBuilder};

use crate::middleware::WebhookMiddleware;

/// Verifies, de-duplicates and answers webhooks in front of a resource, scope or app.
///
/// Built once and cloned into every worker's `App` (cheap: one `Arc`), so all workers share
/// the verifier and the dedupe store.
///
/// ```no_run
/// use actix_web::{web, App, HttpResponse, HttpServer};
/// use hookguard_core::{schemes::BuildWorkPro, envelope::BuildWorkProEvent, dedupe::MemoryStore};
/// use hookguard_actix::{Verified, Webhook};
///
/// async fn on_event(Verified(event): Verified<BuildWorkProEvent>) -> HttpResponse {
///     println!("{} {}", event.event_type, event.id);
///     HttpResponse::NoContent().finish()
/// }
///
/// #[actix_web::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let hooks = Webhook::builder(BuildWorkPro::new()).secret("whsec_...").dedupe(MemoryStore::default()).build()?;
///     HttpServer::new(move || {
///         App::new()
///             .route("/health", web::get().to(|| async { "ok" }))
///             .service(web::resource("/webhooks/buildworkpro").wrap(hooks.clone()).route(web::post().to(on_event)))
///     })
///     .bind("127.0.0.1:8080")?
///     .run()
///     .await?;
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct Webhook {
    receiver: Arc<Receiver>,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook").field("receiver", &self.receiver).finish()
    }
}

impl Webhook {
    /// Starts configuring the middleware for one sender's scheme.
    ///
    /// ```
    /// use hookguard_core::schemes::Procore;
    /// use hookguard_actix::Webhook;
    /// let hooks = Webhook::builder(Procore::new())
    ///     .secret("Bearer current-token")
    ///     .secret("Bearer previous-token")
    ///     .ignore_source_application("my-app-id")
    ///     .build()
    ///     .unwrap();
    /// # let _ = hooks;
    /// ```
    pub fn builder(scheme: impl Scheme) -> WebhookBuilder {
        Self::builder_arc(std::sync::Arc::new(scheme))
    }

    /// Starts configuring for a scheme chosen at run time (e.g. from a provider name).
    ///
    /// ```
    /// use hookguard_core::{schemes, Provider};
    /// let scheme = schemes::for_provider("github".parse::<Provider>().unwrap()).unwrap();
    /// let _ = hookguard_actix::Webhook::builder_arc(scheme).secret("s").build().unwrap();
    /// ```
    pub fn builder_arc(scheme: std::sync::Arc<dyn Scheme>) -> WebhookBuilder {
        WebhookBuilder {
            verifier: Verifier::builder_arc(scheme),
            dedupe: None,
            budget: None,
        }
    }

    /// The middleware around an already built verifier, without dedupe.
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, Verifier};
    /// let v = Verifier::builder(GitHub::new()).secret("s").build().unwrap();
    /// let _hooks = hookguard_actix::Webhook::new(v);
    /// ```
    pub fn new(verifier: Verifier) -> Self {
        Self {
            receiver: Arc::new(Receiver::new(verifier)),
        }
    }

    /// The same middleware, de-duplicating with `dedupe`.
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, Verifier, dedupe::{Dedupe, MemoryStore}};
    /// let v = Verifier::builder(GitHub::new()).secret("s").build().unwrap();
    /// let _hooks = hookguard_actix::Webhook::new(v).with_dedupe(Dedupe::new(MemoryStore::default()));
    /// ```
    pub fn with_dedupe(self, dedupe: Dedupe) -> Self {
        Self {
            receiver: Arc::new((*self.receiver).clone().with_dedupe(dedupe)),
        }
    }

    /// The verifier.
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, Provider};
    /// let hooks = hookguard_actix::Webhook::builder(GitHub::new()).secret("s").build().unwrap();
    /// assert_eq!(hooks.verifier().provider(), Provider::GitHub);
    /// ```
    pub fn verifier(&self) -> &Verifier {
        self.receiver.verifier()
    }

    /// The receiver (verifier, dedupe policy, budget) shared by every worker's middleware.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::schemes::GitHub;
    /// let hooks = hookguard_actix::Webhook::builder(GitHub::new()).secret("s")
    ///     .handler_budget(Duration::from_secs(4)).build().unwrap();
    /// assert_eq!(hooks.receiver().budget(), Some(Duration::from_secs(4)));
    /// ```
    pub fn receiver(&self) -> &Arc<Receiver> {
        &self.receiver
    }
}

impl<S, B> Transform<S, ServiceRequest> for Webhook
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = WebhookMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(WebhookMiddleware::new(Rc::new(service), Arc::clone(&self.receiver))))
    }
}

/// Configures a [`Webhook`]: the verifier's settings plus dedupe and a handler budget.
///
/// ```
/// use std::time::Duration;
/// use hookguard_core::{schemes::BuildWorkPro, dedupe::MemoryStore};
/// let hooks = hookguard_actix::Webhook::builder(BuildWorkPro::new())
///     .secrets(["whsec_old", "whsec_new"])
///     .tolerance(Duration::from_secs(300))
///     .max_body(256 * 1024)
///     .dedupe(MemoryStore::default())
///     .handler_budget(Duration::from_secs(8))
///     .build()
///     .unwrap();
/// assert_eq!(hooks.verifier().max_body(), 256 * 1024);
/// ```
pub struct WebhookBuilder {
    verifier: VerifierBuilder,
    dedupe: Option<Dedupe>,
    budget: Option<Duration>,
}

impl fmt::Debug for WebhookBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookBuilder")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl WebhookBuilder {
    /// Adds a secret (or accepted header value / URL token). Several: any may match (rotation).
    ///
    /// ```
    /// use hookguard_core::schemes::GitHub;
    /// let hooks = hookguard_actix::Webhook::builder(GitHub::new()).secret("old").secret("new").build().unwrap();
    /// assert!(!format!("{hooks:?}").contains("old"));
    /// ```
    pub fn secret(mut self, secret: impl AsRef<str>) -> Self {
        self.verifier = self.verifier.secret(secret);
        self
    }

    /// Adds several secrets.
    ///
    /// ```
    /// use hookguard_core::schemes::GitHub;
    /// assert!(hookguard_actix::Webhook::builder(GitHub::new()).secrets(["a", "b"]).build().is_ok());
    /// ```
    pub fn secrets<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, secrets: I) -> Self {
        self.verifier = self.verifier.secrets(secrets);
        self
    }

    /// The two-sided replay window (default 300 s for timestamped schemes).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::schemes::Stripe;
    /// let _ = hookguard_actix::Webhook::builder(Stripe::new()).secret("whsec_x").tolerance(Duration::from_secs(60)).build();
    /// ```
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.verifier = self.verifier.tolerance(tolerance);
        self
    }

    /// The body limit (default 1 MiB): a larger declared `Content-Length` or streamed body is
    /// answered `413 body_too_large`.
    ///
    /// ```
    /// use hookguard_core::schemes::GitHub;
    /// let hooks = hookguard_actix::Webhook::builder(GitHub::new()).secret("s").max_body(64 * 1024).build().unwrap();
    /// assert_eq!(hooks.verifier().max_body(), 64 * 1024);
    /// ```
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.verifier = self.verifier.max_body(bytes);
        self
    }

    /// The bound for a reflected challenge value (default 1 KiB).
    ///
    /// ```
    /// use hookguard_core::schemes::Hcss;
    /// let _ = hookguard_actix::Webhook::builder(Hcss::new()).secret("t").max_challenge_len(256).build().unwrap();
    /// ```
    pub fn max_challenge_len(mut self, bytes: usize) -> Self {
        self.verifier = self.verifier.max_challenge_len(bytes);
        self
    }

    /// Also answers a query-parameter challenge (e.g. Microsoft Graph `validationToken`).
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, ChallengeRule, http::Method};
    /// let _ = hookguard_actix::Webhook::builder(GitHub::new()).secret("s")
    ///     .challenge(ChallengeRule::query(Method::POST, "validationToken")).build().unwrap();
    /// ```
    pub fn challenge(mut self, rule: ChallengeRule) -> Self {
        self.verifier = self.verifier.challenge(rule);
        self
    }

    /// The clock for the replay window (tests inject a `ManualClock`).
    ///
    /// ```
    /// use hookguard_core::{schemes::BuildWorkPro, clock::ManualClock};
    /// let hooks = hookguard_actix::Webhook::builder(BuildWorkPro::new()).secret("whsec_k")
    ///     .clock(ManualClock::new(1_700_000_000)).build().unwrap();
    /// assert_eq!(hooks.verifier().now_unix(), 1_700_000_000);
    /// ```
    pub fn clock(mut self, clock: impl hookguard_core::clock::Clock) -> Self {
        self.verifier = self.verifier.clock(clock);
        self
    }

    /// Answers 2xx without calling the handler for Procore deliveries caused by `app_id`.
    ///
    /// ```
    /// use hookguard_core::schemes::Procore;
    /// let _ = hookguard_actix::Webhook::builder(Procore::new()).secret("Bearer t")
    ///     .ignore_source_application("our-app").build().unwrap();
    /// ```
    pub fn ignore_source_application(mut self, app_id: impl Into<String>) -> Self {
        self.verifier = self.verifier.ignore_source_application(app_id);
        self
    }

    /// De-duplicates in `store` with the default lease (30 s) and retention (48 h), failing closed.
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, dedupe::MemoryStore};
    /// let hooks = hookguard_actix::Webhook::builder(GitHub::new()).secret("s").dedupe(MemoryStore::new(10_000)).build().unwrap();
    /// assert!(hooks.receiver().dedupe().is_some());
    /// ```
    pub fn dedupe(mut self, store: impl DedupeStore) -> Self {
        self.dedupe = Some(Dedupe::new(store));
        self
    }

    /// De-duplicates with a fully configured policy (lease, retention, fail-open).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::{schemes::GitHub, dedupe::{Dedupe, MemoryStore}};
    /// let policy = Dedupe::new(MemoryStore::default()).lease(Duration::from_secs(20));
    /// let hooks = hookguard_actix::Webhook::builder(GitHub::new()).secret("s").dedupe_policy(policy).build().unwrap();
    /// assert_eq!(hooks.receiver().dedupe().unwrap().lease_duration(), Duration::from_secs(20));
    /// ```
    pub fn dedupe_policy(mut self, dedupe: Dedupe) -> Self {
        self.dedupe = Some(dedupe);
        self
    }

    /// Answers `503` + `Retry-After` (retryable) when the wrapped service has not answered
    /// within `budget`, releasing the claim. Set it below the sender's timeout
    /// (BuildWorkPro 10 s, Procore 5 s).
    ///
    /// That answer is returned as an `actix_web::Error` whose response is the 503 (the request
    /// went into the abandoned handler future, so no `ServiceResponse` can be built around it);
    /// outer middleware sees it as an error, the sender sees the same 503 as with tower.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::schemes::Procore;
    /// let _ = hookguard_actix::Webhook::builder(Procore::new()).secret("Bearer t")
    ///     .handler_budget(Duration::from_secs(4)).build().unwrap();
    /// ```
    pub fn handler_budget(mut self, budget: Duration) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Builds the middleware.
    ///
    /// # Errors
    /// As [`VerifierBuilder::build`]: no secret, too many, or one the scheme cannot use.
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, ConfigError};
    /// assert_eq!(hookguard_actix::Webhook::builder(GitHub::new()).build().unwrap_err(), ConfigError::NoSecret);
    /// ```
    pub fn build(self) -> Result<Webhook, ConfigError> {
        let mut rx = Receiver::new(self.verifier.build()?).with_budget(self.budget);
        if let Some(d) = self.dedupe {
            rx = rx.with_dedupe(d);
        }
        Ok(Webhook { receiver: Arc::new(rx) })
    }
}
