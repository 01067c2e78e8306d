use std::sync::Arc;

use hookguard_core::{Receiver, ReceiverBuilder, Scheme};
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
#[derive(Clone, Debug)]
pub struct WebhookLayer {
    config: Arc<Receiver>,
}

impl WebhookLayer {
    /// Starts configuring a layer for one sender's scheme (the one way to build it; for a
    /// scheme chosen at run time, `WebhookLayerBuilder::new(Arc<dyn Scheme>)`).
    pub fn builder(scheme: impl Scheme) -> WebhookLayerBuilder {
        ReceiverBuilder::new(Arc::new(scheme))
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
/// assert_eq!(layer.receiver().verifier().max_body(), 256 * 1024);
/// ```
pub type WebhookLayerBuilder = ReceiverBuilder<WebhookLayer>;

impl From<Receiver> for WebhookLayer {
    /// The receiver gets tokio's sleep, so a slow handler's claim is renewed while it runs
    /// ([`Receiver::with_sleep`]).
    fn from(rx: Receiver) -> Self {
        let sleep: hookguard_core::Sleep = Arc::new(|d| Box::pin(tokio::time::sleep(d)));
        Self {
            config: Arc::new(rx.with_sleep(sleep)),
        }
    }
}
