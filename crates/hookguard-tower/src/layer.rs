use std::fmt;
use std::sync::Arc;

use hookguard_core::dedupe::Dedupe;
use hookguard_core::{Receiver, ReceiverBuilder, Scheme, Verifier};
use tower_layer::Layer;

use crate::service::WebhookService;

/// Verifies, de-duplicates and answers webhooks in front of an inner service.
///
/// ```
/// use hookguard_core::schemes::Procore;
/// use hookguard_tower::WebhookLayer;
/// let layer = WebhookLayer::builder(Procore::new())
///     .secret("Bearer current-token")
///     .secret("Bearer previous-token")
///     .ignore_source_application("my-app-id")
///     .build()
///     .unwrap();
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct WebhookLayer {
    config: Arc<Receiver>,
}

impl fmt::Debug for WebhookLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookLayer").field("receiver", &self.config).finish()
    }
}

impl WebhookLayer {
    /// Starts configuring a layer for one sender's scheme.
    pub fn builder(scheme: impl Scheme) -> WebhookLayerBuilder {
        ReceiverBuilder::new(Arc::new(scheme))
    }

    /// Starts configuring for a scheme chosen at run time (e.g. from a provider name).
    ///
    /// ```
    /// use hookguard_core::{schemes, Provider};
    /// let scheme = schemes::for_provider("github".parse::<Provider>().unwrap()).unwrap();
    /// let _ = hookguard_tower::WebhookLayer::builder_arc(scheme).secret("s").build().unwrap();
    /// ```
    pub fn builder_arc(scheme: Arc<dyn Scheme>) -> WebhookLayerBuilder {
        ReceiverBuilder::new(scheme)
    }

    /// A layer around an already built verifier, without dedupe.
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, Verifier};
    /// let v = Verifier::builder(GitHub::new()).secret("s").build().unwrap();
    /// let _layer = hookguard_tower::WebhookLayer::new(v);
    /// ```
    pub fn new(verifier: Verifier) -> Self {
        Self {
            config: Arc::new(Receiver::new(verifier)),
        }
    }

    /// The same layer, de-duplicating with `dedupe`.
    ///
    /// ```
    /// use hookguard_core::{schemes::GitHub, Verifier, dedupe::{Dedupe, MemoryStore}};
    /// let v = Verifier::builder(GitHub::new()).secret("s").build().unwrap();
    /// let _layer = hookguard_tower::WebhookLayer::new(v).with_dedupe(Dedupe::new(MemoryStore::default()));
    /// ```
    pub fn with_dedupe(self, dedupe: Dedupe) -> Self {
        Self {
            config: Arc::new((*self.config).clone().with_dedupe(dedupe)),
        }
    }

    /// The verifier.
    pub fn verifier(&self) -> &Verifier {
        self.config.verifier()
    }

    /// The receiver (verifier, dedupe policy, budget) shared by every service of this layer.
    pub fn receiver(&self) -> &Arc<Receiver> {
        &self.config
    }
}

impl<S> Layer<S> for WebhookLayer {
    type Service = WebhookService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        WebhookService::new(inner, Arc::clone(&self.config))
    }
}

/// Configures a [`WebhookLayer`]: the verifier's settings plus dedupe and a handler budget.
/// The same builder (from the core) configures every hookguard adapter.
///
/// ```
/// use std::time::Duration;
/// use hookguard_core::{schemes::BuildWorkPro, dedupe::MemoryStore};
/// let layer = hookguard_tower::WebhookLayer::builder(BuildWorkPro::new())
///     .secrets(["whsec_old", "whsec_new"])
///     .max_body(256 * 1024)
///     .dedupe(MemoryStore::default())
///     .handler_budget(Duration::from_secs(8))
///     .build()
///     .unwrap();
/// assert_eq!(layer.verifier().max_body(), 256 * 1024);
/// ```
pub type WebhookLayerBuilder = ReceiverBuilder<WebhookLayer>;

impl From<Receiver> for WebhookLayer {
    fn from(rx: Receiver) -> Self {
        Self { config: Arc::new(rx) }
    }
}
