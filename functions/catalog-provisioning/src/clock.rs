//! The clock of the custom resource's own schedule: the epoch time that answer-by and
//! first-seen times are read on, the wait budget, and the pauses between a grant's re-checks.
//! The system clock in production (`SystemTime::now`, tokio's timer); a test sets the time
//! and moves it ([`ManualClock`]), so a deadline minutes or an hour away is reached at once.
//!
//! The Lambda deadline is not on this clock: it is the runtime's `tokio::time::Instant`.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

/// The system clock (the default), or a [`ManualClock`].
#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<ManualClock>,
}

impl Clock {
    /// `SystemTime::now`, and tokio's timer for pauses.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// The time since the Unix epoch (zero before it, as on a clock set before 1970).
    pub fn now(&self) -> Duration {
        match &self.manual {
            None => SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
            Some(manual) => manual.now(),
        }
    }

    /// [`Clock::now`] in whole seconds (answer-by and first-seen times).
    pub fn unix_secs(&self) -> u64 {
        self.now().as_secs()
    }

    /// Waits `pause` on this clock.
    pub async fn sleep(&self, pause: Duration) {
        match &self.manual {
            None => tokio::time::sleep(pause).await,
            Some(manual) => manual.sleep(pause).await,
        }
    }
}

impl From<ManualClock> for Clock {
    fn from(manual: ManualClock) -> Clock {
        Clock {
            manual: Some(manual),
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::System"),
            Some(manual) => write!(f, "Clock::Manual({:?})", manual.now()),
        }
    }
}

/// Two clocks are equal when both are the system clock or both are the same manual clock.
impl PartialEq for Clock {
    fn eq(&self, other: &Clock) -> bool {
        match (&self.manual, &other.manual) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(&a.0, &b.0),
            _ => false,
        }
    }
}

impl Eq for Clock {}

/// A clock that stands still until it is set or moved (tests). A pause on it moves it forward
/// by the pause at once and lets other tasks run (so each of several tasks pausing on it moves
/// it). Clones share the time.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<Duration>>);

impl ManualClock {
    /// A clock standing at `now` (time since the Unix epoch).
    pub fn at(now: Duration) -> ManualClock {
        ManualClock(Arc::new(Mutex::new(now)))
    }

    pub fn now(&self) -> Duration {
        *self.time()
    }

    pub fn set(&self, now: Duration) {
        *self.time() = now;
    }

    pub fn advance(&self, by: Duration) {
        *self.time() += by;
    }

    /// The [`Clock`] an `App`'s configuration takes.
    pub fn clock(&self) -> Clock {
        Clock::from(self.clone())
    }

    async fn sleep(&self, pause: Duration) {
        self.advance(pause);
        tokio::task::yield_now().await;
    }

    fn time(&self) -> MutexGuard<'_, Duration> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_moves_only_when_set_advanced_or_paused_on() {
        let manual = ManualClock::at(Duration::from_secs(1_800_000_000));
        let clock = manual.clock();
        assert_eq!(clock.unix_secs(), 1_800_000_000);
        clock.sleep(Duration::from_millis(1500)).await;
        assert_eq!(clock.now(), Duration::from_millis(1_800_000_001_500));
        manual.advance(Duration::from_secs(10));
        assert_eq!(clock.unix_secs(), 1_800_000_011);
        manual.set(Duration::from_secs(5));
        assert_eq!(clock.now(), Duration::from_secs(5));
    }

    #[test]
    fn clocks_are_equal_when_they_are_the_same_clock() {
        let manual = ManualClock::at(Duration::ZERO);
        assert_eq!(Clock::system(), Clock::default());
        assert_eq!(manual.clock(), manual.clone().clock());
        assert_ne!(manual.clock(), ManualClock::at(Duration::ZERO).clock());
        assert_ne!(manual.clock(), Clock::system());
    }
}
