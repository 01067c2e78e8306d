use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hookguard_core::dedupe::{Dedupe, DedupeStore};
use hookguard_core::{ChallengeRule, ConfigError, Receiver, Scheme, Verifier, VerifierBuilder};
use tower_layer::Layer;

use crate::service::Webhook;

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
        Self::builder_arc(std::sync::Arc::new(scheme))
    }

    /// Starts configuring for a scheme chosen at run time (e.g. from a provider name).
    ///
    /// ```
    /// use hookguard_core::{schemes, Provider};
    /// let scheme = schemes::for_provider("github".parse::<Provider>().unwrap()).unwrap();
    /// let _ = hookguard_tower::WebhookLayer::builder_arc(scheme).secret("s").build().unwrap();
    /// ```
    pub fn builder_arc(scheme: std::sync::Arc<dyn Scheme>) -> WebhookLayerBuilder {
        WebhookLayerBuilder {
            verifier: Verifier::builder_arc(scheme),
            dedupe: None,
            budget: None,
        }
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
    type Service = Webhook<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Webhook::new(inner, Arc::clone(&self.config))
    }
}

/// Configures a [`WebhookLayer`]: the verifier's settings plus dedupe and a handler budget.
pub struct WebhookLayerBuilder {
    verifier: VerifierBuilder,
    dedupe: Option<Dedupe>,
    budget: Option<Duration>,
}

impl fmt::Debug for WebhookLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookLayerBuilder")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl WebhookLayerBuilder {
    /// Adds a secret (or accepted header value / URL token). Several: any may match (rotation).
    pub fn secret(mut self, secret: impl AsRef<str>) -> Self {
        self.verifier = self.verifier.secret(secret);
        self
    }

    /// Adds several secrets.
    pub fn secrets<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, secrets: I) -> Self {
        self.verifier = self.verifier.secrets(secrets);
        self
    }

    /// The two-sided replay window (default 300 s for timestamped schemes).
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.verifier = self.verifier.tolerance(tolerance);
        self
    }

    /// The body limit (default 1 MiB).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.verifier = self.verifier.max_body(bytes);
        self
    }

    /// The bound for a reflected challenge value (default 1 KiB).
    pub fn max_challenge_len(mut self, bytes: usize) -> Self {
        self.verifier = self.verifier.max_challenge_len(bytes);
        self
    }

    /// Also answers a query-parameter challenge (e.g. Microsoft Graph `validationToken`).
    pub fn challenge(mut self, rule: ChallengeRule) -> Self {
        self.verifier = self.verifier.challenge(rule);
        self
    }

    /// The clock for the replay window.
    pub fn clock(mut self, clock: impl hookguard_core::clock::Clock) -> Self {
        self.verifier = self.verifier.clock(clock);
        self
    }

    /// Answers 2xx without calling the handler for Procore deliveries caused by `app_id`.
    pub fn ignore_source_application(mut self, app_id: impl Into<String>) -> Self {
        self.verifier = self.verifier.ignore_source_application(app_id);
        self
    }

    /// De-duplicates in `store` with the default lease (30 s) and retention (48 h), failing closed.
    pub fn dedupe(mut self, store: impl DedupeStore) -> Self {
        self.dedupe = Some(Dedupe::new(store));
        self
    }

    /// De-duplicates with a fully configured policy (lease, retention, fail-open).
    pub fn dedupe_policy(mut self, dedupe: Dedupe) -> Self {
        self.dedupe = Some(dedupe);
        self
    }

    /// Answers `503` + `Retry-After` (retryable) when the inner service has not answered
    /// within `budget`, releasing the claim. Set it below the sender's timeout
    /// (BuildWorkPro 10 s, Procore 5 s).
    pub fn handler_budget(mut self, budget: Duration) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Builds the layer.
    ///
    /// # Errors
    /// As [`VerifierBuilder::build`].
    pub fn build(self) -> Result<WebhookLayer, ConfigError> {
        let mut rx = Receiver::new(self.verifier.build()?).with_budget(self.budget);
        if let Some(d) = self.dedupe {
            rx = rx.with_dedupe(d);
        }
        Ok(WebhookLayer { config: Arc::new(rx) })
    }
}
