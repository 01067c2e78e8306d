//! The provider registry: one line per built-in sender, from which [`Provider`], its
//! parsing and listing, and [`schemes::for_provider`](crate::schemes::for_provider) come.
//!
//! Adding a built-in sender = its scheme file in `schemes/` + one line in `registry!` below +
//! one README row (+ its tests, a known-answer vector, a fuzz-target entry).
//!
//! ```
//! use hookguard_core::{schemes, Provider};
//! let p: Provider = "procore".parse().unwrap();
//! assert_eq!(schemes::for_provider(p).unwrap().provider().as_str(), "procore");
//! assert!("acme".parse::<Provider>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::Scheme;

macro_rules! registry {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, $scheme:ty; )*) => {
        /// Who sent a delivery.
        ///
        /// ```
        /// use hookguard_core::Provider;
        /// let p: Provider = "buildworkpro".parse().unwrap();
        /// assert_eq!(p, Provider::BuildWorkPro);
        /// assert_eq!(p.as_str(), "buildworkpro");
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Provider {
            $( $(#[$doc])* $variant, )*
            /// A user-defined sender. Its name prefixes its dedupe keys (`name:key`) in a store
            /// shared with other senders: give it a name of its own — no built-in sender's, and
            /// without `:` (`acme:v2` with key `x` and `acme` with key `v2:x` would share a key).
            Custom(&'static str),
        }

        impl Provider {
            /// Every built-in provider, in the order of the README's table.
            ///
            /// ```
            /// use hookguard_core::{schemes, Provider};
            /// assert_eq!(Provider::BUILT_IN.len(), 8);
            /// assert_eq!(Provider::BUILT_IN[0], Provider::BuildWorkPro);
            /// // Each has its scheme.
            /// assert!(Provider::BUILT_IN.iter().all(|p| schemes::for_provider(*p).is_some()));
            /// ```
            pub const BUILT_IN: &'static [Provider] = &[ $( Provider::$variant, )* ];

            /// The stable lower-case name used in dedupe keys, logs, metrics and the CLI.
            ///
            /// ```
            /// assert_eq!(hookguard_core::Provider::StandardWebhooks.as_str(), "standard");
            /// ```
            pub fn as_str(&self) -> &'static str {
                match self {
                    $( Provider::$variant => $name, )*
                    Provider::Custom(name) => name,
                }
            }
        }

        /// The built-in scheme for a provider, with its default settings.
        ///
        /// ```
        /// use hookguard_core::{schemes, Provider};
        /// let s = schemes::for_provider(Provider::Stripe).unwrap();
        /// assert_eq!(s.provider(), Provider::Stripe);
        /// assert!(schemes::for_provider(Provider::Custom("x")).is_none());
        /// ```
        pub fn for_provider(p: Provider) -> Option<Arc<dyn Scheme>> {
            match p {
                $( Provider::$variant => Some(Arc::new(<$scheme>::new())), )*
                Provider::Custom(_) => None,
            }
        }
    };
}

registry! {
    /// BuildWorkPro (`BuildWorkPro-Signature`).
    BuildWorkPro => "buildworkpro", crate::schemes::BuildWorkPro;
    /// Procore (shared `Authorization` header).
    Procore => "procore", crate::schemes::Procore;
    /// HCSS (challenge echo, shared header or URL token).
    Hcss => "hcss", crate::schemes::Hcss;
    /// Standard Webhooks (`webhook-signature`).
    StandardWebhooks => "standard", crate::schemes::StandardWebhooks;
    /// Stripe-style (`Stripe-Signature`).
    Stripe => "stripe", crate::schemes::Stripe;
    /// GitHub (`X-Hub-Signature-256`).
    GitHub => "github", crate::schemes::GitHub;
    /// Slack (`X-Slack-Signature`).
    Slack => "slack", crate::schemes::Slack;
    /// Autodesk Platform Services: ACC, BIM 360, Data Management (`x-adsk-signature`).
    Aps => "aps", crate::schemes::Aps;
}

impl Provider {
    /// The built-in providers' names, comma-separated (for help texts and errors).
    ///
    /// ```
    /// assert!(hookguard_core::Provider::names().starts_with("buildworkpro, procore"));
    /// ```
    pub fn names() -> String {
        Self::BUILT_IN
            .iter()
            .map(Provider::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown provider name.
///
/// ```
/// let e = "nope".parse::<hookguard_core::Provider>().unwrap_err();
/// assert!(e.to_string().contains("expected one of buildworkpro"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownProvider(pub String);

impl fmt::Display for UnknownProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown provider `{}` (expected one of {})",
            self.0,
            Provider::names()
        )
    }
}

impl std::error::Error for UnknownProvider {}

impl FromStr for Provider {
    type Err = UnknownProvider;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Provider::BUILT_IN
            .iter()
            .copied()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownProvider(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_parses_and_has_a_scheme_for_itself() {
        for p in Provider::BUILT_IN {
            assert_eq!(p.as_str().parse::<Provider>().unwrap(), *p);
            assert_eq!(for_provider(*p).unwrap().provider(), *p);
        }
    }
}
