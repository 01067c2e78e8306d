//! [`Webhook`]: the middleware factory one wraps a resource with, and its builder.

use std::future::{ready, Ready};
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::Error;
use hookguard_core::{Receiver, ReceiverBuilder, Scheme};

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
#[derive(Clone, Debug)]
pub struct Webhook {
    receiver: Arc<Receiver>,
    /// What the application set with [`Webhook::extractor_limit`].
    extractor_limit: Option<usize>,
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

    /// The limit the handler's body extractors (`web::Bytes`/`String`, `web::Json`,
    /// `web::Form`) get for a verified delivery, never below the verifier's `max_body`. By
    /// default the verifier's limit, at least actix's own default of each. It replaces the
    /// limit of your own configs around the resource (actix has no way to read theirs), so an
    /// application whose configs allow more (`web::Json` measures a compressed body's decoded
    /// size) gives that limit here.
    ///
    /// ```
    /// use hookguard_core::schemes::BuildWorkPro;
    /// let hooks = hookguard_actix::Webhook::builder(BuildWorkPro::new())
    ///     .secret("whsec_k")
    ///     .build()
    ///     .unwrap()
    ///     .extractor_limit(16 << 20);
    /// # let _ = hooks;
    /// ```
    pub fn extractor_limit(mut self, limit: usize) -> Self {
        self.extractor_limit = Some(limit);
        self
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
        ready(Ok(WebhookMiddleware::new(
            Rc::new(service),
            Arc::clone(&self.receiver),
            self.extractor_limit,
        )))
    }
}

/// Configures a [`Webhook`]: the verifier's settings plus dedupe and a handler budget.
/// The same builder (from the core) configures every hookguard adapter.
///
/// With a handler budget, the `503` answered when the handler overruns travels as an
/// `actix_web::Error` whose response is exactly the core's (the request went into the dropped
/// handler future, so no response can be built around it). Outer middleware that act only on
/// successful service results (`DefaultHeaders`, `Logger`'s access line, `Compress`) therefore
/// skip that answer, where the tower layer's is an ordinary response.
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
/// assert_eq!(hooks.receiver().verifier().max_body(), 256 * 1024);
/// ```
pub type WebhookBuilder = ReceiverBuilder<Webhook>;

impl From<Receiver> for Webhook {
    /// The receiver gets tokio's sleep, so a slow handler's claim is renewed while it runs
    /// ([`Receiver::with_sleep`]).
    fn from(rx: Receiver) -> Self {
        Self {
            receiver: Arc::new(rx.with_tokio_sleep()),
            extractor_limit: None,
        }
    }
}
