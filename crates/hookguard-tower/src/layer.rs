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
    /// What the application set with [`WebhookLayer::extractor_limit`].
    #[cfg(feature = "axum")]
    extractor_limit: Option<usize>,
}

impl WebhookLayer {
    /// Starts configuring a layer for one sender's scheme (the one way to build it; for a
    /// scheme chosen at run time, `WebhookLayerBuilder::new(Arc<dyn Scheme>)`).
    ///
    /// ```
    /// use hookguard_core::{schemes::Procore, Provider};
    /// use hookguard_tower::WebhookLayer;
    /// let layer = WebhookLayer::builder(Procore::new()).secret("Bearer current-token").build().unwrap();
    /// assert_eq!(layer.receiver().verifier().provider(), Provider::Procore);
    /// // Without a secret nothing could be verified: the build is refused.
    /// assert!(WebhookLayer::builder(Procore::new()).build().is_err());
    /// ```
    pub fn builder(scheme: impl Scheme) -> WebhookLayerBuilder {
        ReceiverBuilder::new(Arc::new(scheme))
    }

    /// The receiver (verifier, dedupe policy, budget) shared by every service of this layer.
    ///
    /// ```
    /// use std::{sync::Arc, time::Duration};
    /// use hookguard_core::schemes::BuildWorkPro;
    /// let layer = hookguard_tower::WebhookLayer::builder(BuildWorkPro::new())
    ///     .secret("whsec_k")
    ///     .handler_budget(Duration::from_secs(8))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(layer.receiver().budget(), Some(Duration::from_secs(8)));
    /// assert!(Arc::ptr_eq(layer.receiver(), layer.clone().receiver()), "shared, not copied");
    /// ```
    pub fn receiver(&self) -> &Arc<Receiver> {
        &self.config
    }

    /// The limit axum's body extractors (`Bytes`, `String`, `Json`, `Form`) get for a verified
    /// delivery (never below the verifier's `max_body`). By default the verifier's limit, at
    /// least axum's own 2 MiB; it replaces a `DefaultBodyLimit` set around this layer, so an
    /// application whose own is larger (a decompression layer inside this one hands on the
    /// decoded body) gives that limit here, or sets its `DefaultBodyLimit` inside this layer.
    ///
    /// ```
    /// use hookguard_core::schemes::BuildWorkPro;
    /// let layer = hookguard_tower::WebhookLayer::builder(BuildWorkPro::new())
    ///     .secret("whsec_k")
    ///     .build()
    ///     .unwrap()
    ///     .extractor_limit(16 << 20);
    /// assert_eq!(layer.body_limit(), 16 << 20);
    /// ```
    #[cfg(feature = "axum")]
    pub fn extractor_limit(mut self, limit: usize) -> Self {
        self.extractor_limit = Some(limit);
        self
    }

    /// The limit axum's body extractors get (see [`WebhookLayer::extractor_limit`]).
    ///
    /// ```
    /// use hookguard_core::schemes::BuildWorkPro;
    /// let layer = hookguard_tower::WebhookLayer::builder(BuildWorkPro::new()).secret("whsec_k").build().unwrap();
    /// assert_eq!(layer.body_limit(), 2 << 20, "axum's own default, above the verifier's 1 MiB");
    /// ```
    #[cfg(feature = "axum")]
    pub fn body_limit(&self) -> usize {
        /// axum's `DefaultBodyLimit` when nothing sets one.
        const AXUM_DEFAULT_LIMIT: usize = 2 << 20;
        hookguard_core::extractor_limit(
            self.extractor_limit,
            AXUM_DEFAULT_LIMIT,
            self.config.verifier().max_body(),
        )
    }
}

impl<S> Layer<S> for WebhookLayer {
    type Service = WebhookService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        WebhookService::new(
            inner,
            Arc::clone(&self.config),
            #[cfg(feature = "axum")]
            self.body_limit(),
        )
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
        Self {
            config: Arc::new(rx.with_tokio_sleep()),
            #[cfg(feature = "axum")]
            extractor_limit: None,
        }
    }
}
