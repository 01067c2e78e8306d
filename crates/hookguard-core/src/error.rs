//! The one rejection type every adapter answers with.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

/// Why a request was not accepted as a genuine, new delivery.
///
/// Every variant has a stable machine-readable [`code`](Rejection::code), the HTTP
/// [`status`](Rejection::status) that makes the *sender* do the right thing, and a short
/// message that never contains a secret, a signature or the body.
///
/// | code | status | why this status |
/// |---|---|---|
/// | `missing_signature` | 401 | forged or misconfigured: BuildWorkPro stops on any 4xx but 408/429 |
/// | `malformed_signature` | 400 | a signature header that cannot be parsed is never genuine |
/// | `signature_mismatch` | 401 | forged, tampered, or signed with a secret we do not hold |
/// | `signature_not_verified` | 503 + `Retry-After` | the same, when the verifier is told to [retry it](crate::VerifierBuilder::retry_signature_mismatch): a sender that rotated its secret without overlap is retried until the receiver holds the new one |
/// | `unauthorized` | 401 | Procore/HCSS shared header or URL token missing or wrong |
/// | `missing_header` | 400 | a required header (timestamp, id) is absent |
/// | `repeated_header` | 400 | a signature, timestamp or id header given more than once: which value the sender signed is ambiguous, and judging by the first would make the answer depend on the order |
/// | `malformed_timestamp` | 400 | |
/// | `timestamp_out_of_window` | 503 + `Retry-After` | authentic (checked after the signature) but signed further from our clock than the tolerance: a replay, or one of the two clocks is off. Senders re-sign their retries, so once the clocks agree a retry gets through; a 400 would make BuildWorkPro drop every event while our clock is wrong |
/// | `header_too_large` | 431 | bounded header parsing |
/// | `too_many_signatures` | 400 | bounded signature lists |
/// | `body_too_large` | 503 + `Retry-After` | over the body limit (also another layer's length limit around the adapter): a limit of this side, not the sender's mistake — a `413` would make BuildWorkPro drop the event at once, where a retry gets through once the limit is raised (a WARN names it) |
/// | `body_read_failed` | 400 | the connection broke mid-body (nobody reads the answer) |
/// | `invalid_payload` | 400 | authentic but not JSON at all: the sender's mistake, the same bytes never parse |
/// | `unexpected_payload` | 500 + `Retry-After` | authentic JSON that our model (an envelope, the application's type, an id probe) cannot read: *our* gap, so retryable; logged at error level naming the field |
/// | `body_read_timeout` | 408 + `Retry-After` | the body did not arrive within the read timeout (slow drip; also another layer's body timeout or an I/O time-out); retried by every sender that retries (GitHub retries nothing) |
/// | `method_not_allowed` | 405 | deliveries are POSTs, challenges GETs |
/// | `challenge_missing` | 400 | |
/// | `challenge_too_long` | 400 | reflected values are bounded |
/// | `duplicate_in_flight` | 429 + `Retry-After` | another copy is being handled; 429 is retried by every sender that retries (GitHub retries nothing) |
/// | `store_unavailable` | 503 + `Retry-After` | fail closed: the sender retries later, nothing is lost (also: the inbox could not store the delivery) |
/// | `inbox_full` | 503 + `Retry-After` | the inbox holds its cap of pending items; nothing stored, the sender retries |
/// | `handler_failed` | 500 + `Retry-After` | the application's handler failed; the sender retries |
/// | `handler_timeout` | 503 + `Retry-After` | answered before the sender's own timeout |
///
/// A duplicate that was already handled is *not* a rejection: it is answered `200`.
///
/// ```
/// use hookguard_core::Rejection;
/// let r = Rejection::SignatureMismatch;
/// assert_eq!(r.code(), "signature_mismatch");
/// assert_eq!(r.status().as_u16(), 401);
/// assert!(!r.is_retryable());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The signature header is absent.
    MissingSignature(&'static str),
    /// The signature header could not be parsed, or held no well-formed signature.
    MalformedSignature,
    /// No configured secret produced any of the signatures in the header.
    SignatureMismatch,
    /// As [`SignatureMismatch`](Self::SignatureMismatch), answered retryable (`503` +
    /// `Retry-After`) because the verifier was told to
    /// ([`retry_signature_mismatch`](crate::VerifierBuilder::retry_signature_mismatch)): a
    /// sender that rotates its secret without overlap (BuildWorkPro) signs with a secret this
    /// receiver does not hold yet until it is redeployed, and a permanent `401` would lose
    /// those deliveries.
    SignatureNotVerified,
    /// The shared header or URL token is missing or not one of the accepted values.
    Unauthorized,
    /// A required header is absent.
    MissingHeader(&'static str),
    /// A header the signature depends on (the signature itself, its timestamp, the signed id)
    /// came more than once: which value the sender signed is ambiguous. Refused whatever the
    /// order (judged by the first value, a genuine delivery behind a proxy that added a
    /// header of the same name passed or failed by order).
    RepeatedHeader(&'static str),
    /// The timestamp is not a unix time in seconds.
    MalformedTimestamp,
    /// The delivery is authentic (its signature checked first) but its timestamp is further
    /// from now than the tolerance allows: a replay, or one of the two clocks is off.
    /// Retryable (`503`): a sender re-signs its retries, so they get through once the clocks
    /// agree, while a replay gains nothing from any answer.
    TimestampOutOfWindow,
    /// A header is longer than the configured bound, or not visible ASCII.
    HeaderTooLarge(&'static str),
    /// More signatures than the configured bound.
    TooManySignatures,
    /// The body is larger than the configured limit.
    BodyTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The body could not be read.
    BodyReadFailed,
    /// The body is authentic but not the shape the provider sends.
    InvalidPayload(&'static str),
    /// The body is authentic JSON, but not the shape our model expects (a missing or changed
    /// field). A gap in the receiver's model, not the sender's fault: retryable.
    UnexpectedPayload {
        /// Which field or type did not match (values redacted); logged, never answered.
        detail: String,
    },
    /// The body did not arrive within the read timeout.
    BodyReadTimeout,
    /// The HTTP method is not one the receiver answers.
    MethodNotAllowed,
    /// A challenge request without a value.
    ChallengeMissing,
    /// A challenge value over the bound.
    ChallengeTooLong {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// Another copy of this delivery is being handled right now.
    DuplicateInFlight,
    /// The dedupe store or the inbox could not be reached (or stored nothing); failing closed.
    StoreUnavailable,
    /// The inbox holds its cap of pending items; nothing was stored.
    InboxFull,
    /// The application's handler failed; the delivery stays retryable.
    HandlerFailed,
    /// The application's handler did not answer within its budget.
    HandlerTimeout,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingSignature(h) => write!(f, "signature header `{h}` is missing"),
            Self::MalformedSignature => f.write_str("signature header is malformed"),
            Self::SignatureMismatch => f.write_str("signature does not match"),
            Self::SignatureNotVerified => f.write_str(
                "signature does not match any secret this receiver holds (a rotation may be under way); retry later",
            ),
            Self::Unauthorized => f.write_str("credentials are missing or not accepted"),
            Self::MissingHeader(h) => write!(f, "required header `{h}` is missing"),
            Self::RepeatedHeader(h) => write!(f, "header `{h}` appears more than once"),
            Self::MalformedTimestamp => f.write_str("timestamp is malformed"),
            Self::TimestampOutOfWindow => f.write_str("timestamp is outside the accepted window"),
            Self::HeaderTooLarge(h) => write!(f, "header `{h}` is too large or not visible ASCII"),
            Self::TooManySignatures => f.write_str("too many signatures in the header"),
            Self::BodyTooLarge { limit } => write!(f, "body is larger than {limit} bytes"),
            Self::BodyReadFailed => f.write_str("body could not be read"),
            Self::InvalidPayload(why) => write!(f, "payload is invalid: {why}"),
            Self::UnexpectedPayload { .. } => f.write_str("payload does not match the receiver's model; retry later"),
            Self::BodyReadTimeout => f.write_str("body was not received in time"),
            Self::MethodNotAllowed => f.write_str("method not allowed"),
            Self::ChallengeMissing => f.write_str("challenge value is missing"),
            Self::ChallengeTooLong { limit } => write!(f, "challenge value is longer than {limit} bytes"),
            Self::DuplicateInFlight => f.write_str("a copy of this delivery is being handled; retry later"),
            Self::StoreUnavailable => f.write_str("the store (dedupe or inbox) is unavailable; retry later"),
            Self::InboxFull => f.write_str("inbox is full; retry later"),
            Self::HandlerFailed => f.write_str("handler failed; retry later"),
            Self::HandlerTimeout => f.write_str("handler did not answer in time; retry later"),
        }
    }
}

impl std::error::Error for Rejection {}

impl Rejection {
    /// The stable machine-readable code, e.g. `signature_mismatch`.
    ///
    /// ```
    /// assert_eq!(hookguard_core::Rejection::BodyTooLarge { limit: 1 }.code(), "body_too_large");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingSignature(_) => "missing_signature",
            Self::MalformedSignature => "malformed_signature",
            Self::SignatureMismatch => "signature_mismatch",
            Self::SignatureNotVerified => "signature_not_verified",
            Self::Unauthorized => "unauthorized",
            Self::MissingHeader(_) => "missing_header",
            Self::RepeatedHeader(_) => "repeated_header",
            Self::MalformedTimestamp => "malformed_timestamp",
            Self::TimestampOutOfWindow => "timestamp_out_of_window",
            Self::HeaderTooLarge(_) => "header_too_large",
            Self::TooManySignatures => "too_many_signatures",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::BodyReadFailed => "body_read_failed",
            Self::InvalidPayload(_) => "invalid_payload",
            Self::UnexpectedPayload { .. } => "unexpected_payload",
            Self::BodyReadTimeout => "body_read_timeout",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::ChallengeMissing => "challenge_missing",
            Self::ChallengeTooLong { .. } => "challenge_too_long",
            Self::DuplicateInFlight => "duplicate_in_flight",
            Self::StoreUnavailable => "store_unavailable",
            Self::InboxFull => "inbox_full",
            Self::HandlerFailed => "handler_failed",
            Self::HandlerTimeout => "handler_timeout",
        }
    }

    /// The HTTP status to answer. See the table on [`Rejection`].
    ///
    /// ```
    /// assert_eq!(hookguard_core::Rejection::StoreUnavailable.status().as_u16(), 503);
    /// ```
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingSignature(_) | Self::SignatureMismatch | Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::HeaderTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::DuplicateInFlight => StatusCode::TOO_MANY_REQUESTS,
            Self::StoreUnavailable
            | Self::HandlerTimeout
            | Self::InboxFull
            | Self::TimestampOutOfWindow
            | Self::SignatureNotVerified
            | Self::BodyTooLarge { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::HandlerFailed | Self::UnexpectedPayload { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::BodyReadTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::MalformedSignature
            | Self::MissingHeader(_)
            | Self::RepeatedHeader(_)
            | Self::MalformedTimestamp
            | Self::TooManySignatures
            | Self::BodyReadFailed
            | Self::InvalidPayload(_)
            | Self::ChallengeMissing
            | Self::ChallengeTooLong { .. } => StatusCode::BAD_REQUEST,
        }
    }

    /// The detail of an [`UnexpectedPayload`](Self::UnexpectedPayload) (for logs; it is not
    /// sent to the sender).
    ///
    /// ```
    /// assert_eq!(hookguard_core::Rejection::Unauthorized.detail(), None);
    /// ```
    pub fn detail(&self) -> Option<&str> {
        match self {
            Self::UnexpectedPayload { detail } => Some(detail),
            _ => None,
        }
    }

    /// Whether senders retry on this answer (BuildWorkPro retries 408, 429 and 5xx only).
    ///
    /// ```
    /// assert!(hookguard_core::Rejection::DuplicateInFlight.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        let s = self.status();
        s == StatusCode::TOO_MANY_REQUESTS || s == StatusCode::REQUEST_TIMEOUT || s.is_server_error()
    }

    /// Whether the request carried no credential in a form any sender writes: no signature or
    /// header at all, a malformed one, or too many. Such a refusal is judged on the head alone,
    /// whatever the body.
    pub(crate) fn is_uncredentialed(&self) -> bool {
        matches!(
            self,
            Self::MissingSignature(_)
                | Self::MalformedSignature
                | Self::MissingHeader(_)
                | Self::RepeatedHeader(_)
                | Self::MalformedTimestamp
                | Self::TooManySignatures
        )
    }

    /// The `Retry-After` hint for retryable rejections.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(hookguard_core::Rejection::StoreUnavailable.retry_after(), Some(Duration::from_secs(5)));
    /// assert_eq!(hookguard_core::Rejection::SignatureMismatch.retry_after(), None);
    /// ```
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::DuplicateInFlight
            | Self::StoreUnavailable
            | Self::HandlerTimeout
            | Self::HandlerFailed
            | Self::BodyReadTimeout => Some(Duration::from_secs(5)),
            Self::InboxFull => Some(Duration::from_secs(30)),
            // Our model's gap, or a clock: a fix, not a moment.
            Self::UnexpectedPayload { .. }
            | Self::TimestampOutOfWindow
            | Self::SignatureNotVerified
            | Self::BodyTooLarge { .. } => Some(Duration::from_secs(60)),
            _ => None,
        }
    }

    /// The small JSON body every adapter answers with: `{"error":"<code>","message":"<message>"}`.
    ///
    /// ```
    /// let body = hookguard_core::Rejection::Unauthorized.json_body();
    /// let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    /// assert_eq!(v["error"], "unauthorized");
    /// ```
    pub fn json_body(&self) -> Bytes {
        let v = serde_json::json!({ "error": self.code(), "message": self.to_string() });
        Bytes::from(v.to_string())
    }
}

/// A verifier or scheme was configured wrongly (for example a `whsec_` secret that is not base64).
///
/// Its `Debug` and `Display` never contain the secret.
///
/// ```
/// use hookguard_core::{schemes::StandardWebhooks, Verifier};
/// let err = Verifier::builder(StandardWebhooks::new()).secret("whsec_%%hunter2%%").build().unwrap_err();
/// assert_eq!(err.to_string(), "secret #0 is invalid: not base64 after the whsec_ prefix");
/// assert!(!format!("{err:?}").contains("hunter2"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A secret could not be turned into key material.
    InvalidSecret {
        /// Position of the secret in the order it was added.
        index: usize,
        /// Why, without the secret itself.
        reason: &'static str,
    },
    /// The scheme needs at least one secret.
    NoSecret,
    /// Too many secrets for the configured bound.
    TooManySecrets(usize),
    /// Another invalid setting.
    Invalid(&'static str),
    /// A value to sign with cannot be sent in the header named as it is (a header carries
    /// visible ASCII only, an empty one reads as none, and the spaces around a value are
    /// dropped): an id or event type given, or taken from the body, that is empty, has spaces
    /// around it or holds other characters.
    HeaderValue(&'static str),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidSecret { index, reason } => write!(f, "secret #{index} is invalid: {reason}"),
            Self::NoSecret => f.write_str("no secret configured"),
            Self::TooManySecrets(max) => write!(f, "too many secrets (at most {max})"),
            Self::Invalid(why) => write!(f, "invalid configuration: {why}"),
            Self::HeaderValue(name) => write!(
                f,
                "the value for header `{name}` cannot be sent as it is: empty, spaces around it, or not \
                 visible ASCII (the only text a header carries)"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// So `build()?` works in a `main` returning `std::io::Result` (actix-web's usual `main`).
///
/// ```
/// fn main() -> std::io::Result<()> {
///     let err = hookguard_core::Receiver::builder(hookguard_core::schemes::GitHub::new()).build();
///     assert!(err.is_err());
///     let io: std::io::Error = err.unwrap_err().into();
///     assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
///     Ok(())
/// }
/// ```
impl From<ConfigError> for std::io::Error {
    fn from(e: ConfigError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_statuses_follow_sender_rules() {
        let all = [
            Rejection::MissingSignature("x"),
            Rejection::MalformedSignature,
            Rejection::SignatureMismatch,
            Rejection::SignatureNotVerified,
            Rejection::Unauthorized,
            Rejection::MissingHeader("x"),
            Rejection::RepeatedHeader("x"),
            Rejection::MalformedTimestamp,
            Rejection::TimestampOutOfWindow,
            Rejection::HeaderTooLarge("x"),
            Rejection::TooManySignatures,
            Rejection::BodyTooLarge { limit: 1 },
            Rejection::BodyReadFailed,
            Rejection::InvalidPayload("x"),
            Rejection::UnexpectedPayload { detail: "x".into() },
            Rejection::BodyReadTimeout,
            Rejection::MethodNotAllowed,
            Rejection::ChallengeMissing,
            Rejection::ChallengeTooLong { limit: 1 },
            Rejection::DuplicateInFlight,
            Rejection::StoreUnavailable,
            Rejection::InboxFull,
            Rejection::HandlerFailed,
            Rejection::HandlerTimeout,
        ];
        let mut codes: Vec<_> = all.iter().map(|r| r.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        for r in &all {
            let s = r.status();
            // Never a 2xx for a rejection; every retryable one carries a hint (500s included:
            // our own faults), no permanent one does.
            assert!(s.is_client_error() || s.is_server_error(), "{r:?}");
            assert_eq!(r.is_retryable(), r.retry_after().is_some(), "{r:?}");
        }
        // Forged or malformed deliveries are permanent for BuildWorkPro (4xx but 408/429).
        for r in [Rejection::SignatureMismatch, Rejection::MalformedSignature] {
            assert!(!r.is_retryable());
        }
        // An authentic delivery outside the window: a clock may be off, the sender's re-signed
        // retry gets through once it is fixed.
        assert!(Rejection::TimestampOutOfWindow.is_retryable());
        // Our own model's gaps and slow reads are retried, never permanent.
        assert!(Rejection::UnexpectedPayload { detail: "x".into() }.is_retryable());
        assert!(Rejection::BodyReadTimeout.is_retryable());
        // A body over this side's limit is not the sender's mistake: retried once it is raised.
        assert!(Rejection::BodyTooLarge { limit: 1 }.is_retryable());
    }
}
