//! A per-operation rate limiter shared by everything one container runs: every license of an
//! account is worked at once, and the limiter, not a fixed wave size, keeps License Manager
//! below the rate it tolerates (AWS publishes no request rate for License Manager's grant
//! operations, so assume a few calls per second per operation and back off, which the SDK's
//! retries still do on top; docs/design.md).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How many seconds of calls one burst may hold.
pub(crate) const BURST_SECONDS: f64 = 3.0;

/// One operation's token bucket: `tokens` may go below zero (calls already promised a slot).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bucket {
    pub tokens: f64,
    pub at: Instant,
}

/// Takes one token from `bucket` at `now` (refilled at `per_second`, holding at most `burst`)
/// and returns how long the caller must wait before its call. Pure: the arithmetic of the
/// limiter, tested without clocks.
pub(crate) fn take(bucket: &mut Bucket, now: Instant, per_second: f64, burst: f64) -> Duration {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
    bucket.at = now;
    bucket.tokens -= 1.0;
    if bucket.tokens >= 0.0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(-bucket.tokens / per_second)
    }
}

/// Token buckets by operation name.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<&'static str, Bucket>>,
}

impl RateLimiter {
    /// `per_second` calls of each operation per second on average, in bursts of up to
    /// [`BURST_SECONDS`] seconds' worth: one account's licenses go out at once (25 licenses
    /// at the default 10/s), a backfill settles at the rate.
    pub(crate) fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        RateLimiter {
            per_second,
            burst: per_second * BURST_SECONDS,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until `operation` may be called once more.
    pub(crate) async fn acquire(&self, operation: &'static str) {
        let now = Instant::now();
        let wait = match self.buckets.lock() {
            Ok(mut buckets) => {
                let bucket = buckets.entry(operation).or_insert(Bucket {
                    tokens: self.burst,
                    at: now,
                });
                take(bucket, now, self.per_second, self.burst)
            }
            // A poisoned lock only means another task panicked mid-update: do not throttle.
            Err(_) => Duration::ZERO,
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_calls_are_spaced_by_the_rate() {
        let start = Instant::now();
        let mut b = Bucket {
            tokens: 3.0,
            at: start,
        };
        let waits: Vec<Duration> = (0..6).map(|_| take(&mut b, start, 2.0, 3.0)).collect();
        assert_eq!(&waits[..3], &[Duration::ZERO; 3], "the burst");
        assert_eq!(waits[3], Duration::from_millis(500));
        assert_eq!(waits[4], Duration::from_millis(1000));
        assert_eq!(waits[5], Duration::from_millis(1500));
    }

    #[test]
    fn tokens_refill_with_time_up_to_the_burst() {
        let start = Instant::now();
        let mut b = Bucket {
            tokens: 0.0,
            at: start,
        };
        // Half a second at 2/s: one token, taken at once.
        let later = start + Duration::from_millis(500);
        assert_eq!(take(&mut b, later, 2.0, 3.0), Duration::ZERO);
        // An hour later the bucket holds the burst, not 7,200 tokens.
        let much_later = later + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(take(&mut b, much_later, 2.0, 3.0), Duration::ZERO);
        }
        assert_eq!(
            take(&mut b, much_later, 2.0, 3.0),
            Duration::from_millis(500)
        );
    }
}
