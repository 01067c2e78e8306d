//! [`Webhook`]: the middleware factory one wraps a resource with, and its builder.

use std::fmt;
use std::future::{ready, Ready};
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::Error;
use hookguard_core::dedupe::Dedupe;
use hookguard_core::{Receiver, ReceiverBuilder, Scheme, Verifier};

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
        ReceiverBuilder::new(Arc::new(scheme))
    }

    /// Starts configuring for a scheme chosen at run time (e.g. from a provider name).
    ///
    /// ```
    /// use hookguard_core::{schemes, Provider};
    /// let scheme = schemes::for_provider("github".parse::<Provider>().unwrap()).unwrap();
    /// let _ = hookguard_actix::Webhook::builder_arc(scheme).secret("s").build().unwrap();
    /// ```
    pub fn builder_arc(scheme: Arc<dyn Scheme>) -> WebhookBuilder {
        ReceiverBuilder::new(scheme)
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
/// The same builder (from the core) configures every hookguard adapter.
///
/// With a handler budget, the `503` answered when the handler overruns travels as an
/// `actix_web::Error` whose response is exactly the core's (the request went into the dropped
/// handler future, so no response can be built around it).
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
pub type WebhookBuilder = ReceiverBuilder<Webhook>;

impl From<Receiver> for Webhook {
    fn from(rx: Receiver) -> Self {
        Self { receiver: Arc::new(rx) }
    }
}
