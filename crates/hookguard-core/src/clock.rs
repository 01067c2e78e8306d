//! Time, injectable so replay windows and expiry are testable.
//!
//! ```
//! use hookguard_core::clock::{Clock, ManualClock, SystemClock};
//! // Tests drive time by hand; a receiver uses the system's.
//! let clock = ManualClock::new(1_700_000_000);
//! clock.advance(301);
//! assert_eq!(clock.now_unix(), 1_700_000_301);
//! assert!(SystemClock.now_unix() > 1_700_000_000);
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of the current unix time in seconds, and of monotonic time for durations.
///
/// ```
/// use hookguard_core::clock::{Clock, SystemClock};
/// assert!(SystemClock.now_unix() > 1_700_000_000);
/// let a = SystemClock.monotonic();
/// assert!(SystemClock.monotonic() >= a);
/// ```
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// Seconds since the unix epoch (the wall clock: replay windows compare it with the
    /// sender's timestamps).
    ///
    /// ```
    /// use hookguard_core::clock::{Clock, ManualClock, SystemClock};
    /// assert_eq!(ManualClock::new(1_700_000_000).now_unix(), 1_700_000_000);
    /// assert!(SystemClock.now_unix() > 1_700_000_000); // after November 2023
    /// ```
    fn now_unix(&self) -> u64;

    /// Time that only moves forward, from an arbitrary origin: leases and retention are
    /// measured on it, so a wall-clock step never expires them all at once. The default is
    /// [`now_unix`](Self::now_unix) in seconds (right for test clocks that only move forward).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::clock::{Clock, ManualClock, SystemClock};
    /// // The default: `now_unix`, in seconds.
    /// assert_eq!(ManualClock::new(90).monotonic(), Duration::from_secs(90));
    /// let a = SystemClock.monotonic();
    /// assert!(SystemClock.monotonic() >= a);
    /// ```
    fn monotonic(&self) -> Duration {
        Duration::from_secs(self.now_unix())
    }
}

/// The system's wall clock.
///
/// ```
/// use hookguard_core::clock::{Clock, SystemClock};
/// let _now = SystemClock.now_unix();
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    fn monotonic(&self) -> Duration {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed()
    }
}

/// A clock that only moves when told to; clones share the same time.
///
/// ```
/// use hookguard_core::clock::{Clock, ManualClock};
/// let clock = ManualClock::new(1_000);
/// let view = clock.clone();
/// clock.advance(5);
/// assert_eq!(view.now_unix(), 1_005);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock standing at `unix` seconds.
    ///
    /// ```
    /// use hookguard_core::{clock::{Clock, ManualClock}, schemes::GitHub, Verifier};
    /// let clock = ManualClock::new(1_700_000_000);
    /// assert_eq!(clock.now_unix(), 1_700_000_000);
    /// // A verifier on it checks timestamps against this time, not the system's.
    /// let v = Verifier::builder(GitHub::new()).secret("s").clock(clock).build().unwrap();
    /// # drop(v);
    /// ```
    pub fn new(unix: u64) -> Self {
        Self(Arc::new(AtomicU64::new(unix)))
    }
    /// Sets the time.
    ///
    /// ```
    /// use hookguard_core::{clock::ManualClock, schemes::BuildWorkPro, testing, Rejection, RequestHead, Scheme, SignParams, Verifier};
    /// let clock = ManualClock::new(1_700_000_000);
    /// let v = Verifier::builder(BuildWorkPro::new()).secret("whsec_k").clock(clock.clone()).build().unwrap();
    /// # let body = br#"{"id":"evt_1","type":"bid.accepted"}"#;
    /// # let signed = BuildWorkPro::new().sign("whsec_k", body, &SignParams::new(1_700_000_000)).unwrap();
    /// # let (h, u) = testing::request_parts(signed, "/");
    /// // `h`, `u`, `body`: a delivery BuildWorkPro signed at 1_700_000_000.
    /// let verify = || v.verify(&RequestHead::new(&http::Method::POST, &u, &h), bytes::Bytes::from_static(body));
    /// assert!(verify().is_ok());
    /// clock.set(1_700_000_000 + 3_600); // an hour later, the same signed request is a replay
    /// assert_eq!(verify().unwrap_err(), Rejection::TimestampOutOfWindow);
    /// ```
    pub fn set(&self, unix: u64) {
        self.0.store(unix, Ordering::SeqCst);
    }
    /// Moves the time forward.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard_core::clock::{Clock, ManualClock};
    /// let clock = ManualClock::new(1_000);
    /// clock.advance(30);
    /// assert_eq!(clock.now_unix(), 1_030);
    /// assert_eq!(clock.monotonic(), Duration::from_secs(1_030)); // leases and retention move too
    /// ```
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
