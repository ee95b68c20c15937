//! Rate limits of channels (SPEC CHN-2): a token bucket with time passed in, and which limit a
//! project's channel has.

use std::time::{Duration, Instant};

use super::channel::{ChannelSettings, DEFAULT_RATE_PER_SECOND};
use super::endpoint::ChannelType;

/// A token bucket in its GCRA form: `rate_per_second` grants a second on average and at most
/// `burst` at once, so any window of `w` seconds holds at most `rate * w + burst` grants.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    /// Time between two grants at the steady rate.
    interval: Duration,
    /// How far ahead of `now` the theoretical arrival time may run: `(burst - 1) * interval`.
    tolerance: Duration,
    /// When the next grant would be due if every grant so far came at the steady rate.
    theoretical_arrival: Option<Instant>,
}

impl RateLimiter {
    /// A limiter of `rate_per_second` (> 0, may be fractional) with `burst` grants at once
    /// (at least one).
    pub fn new(rate_per_second: f64, burst: u32) -> Self {
        let nanos = (1e9 / rate_per_second.max(1e-9))
            .ceil()
            .min(u64::MAX as f64) as u64;
        let interval = Duration::from_nanos(nanos.max(1));
        Self {
            interval,
            tolerance: interval.saturating_mul(burst.max(1) - 1),
            theoretical_arrival: None,
        }
    }

    /// Takes one grant at `now` when the limit allows it; times must not go backwards by more
    /// than the caller accepts (an earlier `now` only ever refuses more).
    pub fn try_take(&mut self, now: Instant) -> bool {
        let arrival = self.theoretical_arrival.map_or(now, |tat| tat.max(now));
        if arrival > now + self.tolerance {
            return false;
        }
        self.theoretical_arrival = Some(arrival + self.interval);
        true
    }

    /// The first time at or after `now` when [`Self::try_take`] would grant.
    pub fn next_available(&self, now: Instant) -> Instant {
        match self.theoretical_arrival {
            Some(arrival) => arrival
                .checked_sub(self.tolerance)
                .map_or(now, |earliest| earliest.max(now)),
            None => now,
        }
    }
}

/// The cluster-wide messages per second a project may send on `channel`: the configured rate
/// of SMS and voice (SMS defaults to [`DEFAULT_RATE_PER_SECOND`] even when the project has not
/// configured it, so outbox sends are limited like real ones), `None` (unlimited) otherwise.
pub fn channel_rate(settings: &ChannelSettings, channel: ChannelType) -> Option<u32> {
    match channel {
        ChannelType::Sms => Some(
            settings
                .sms
                .as_ref()
                .map_or(DEFAULT_RATE_PER_SECOND, |sms| sms.rate_per_second),
        ),
        ChannelType::Voice => settings.voice.as_ref().map(|voice| voice.rate_per_second),
        _ => None,
    }
}

/// This node's share of a cluster-wide rate: the rate divided by the active nodes, since any
/// node may send for any project. The sum of the shares is the cluster-wide rate.
pub fn node_share(rate_per_second: u32, active_nodes: usize) -> f64 {
    f64::from(rate_per_second) / active_nodes.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A fresh limiter grants its burst at once, then refuses until time passes.
    #[test]
    fn burst_then_steady_rate() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(20.0, 20);
        assert_eq!((0..30).filter(|_| limiter.try_take(start)).count(), 20);
        assert!(!limiter.try_take(start));
        let next = limiter.next_available(start);
        assert_eq!(next, start + Duration::from_millis(50));
        assert!(!limiter.try_take(next - Duration::from_millis(1)));
        assert!(limiter.try_take(next));
    }

    /// After a quiet second, the bucket is full again but never more than full.
    #[test]
    fn refills_up_to_the_burst() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(10.0, 5);
        assert_eq!((0..5).filter(|_| limiter.try_take(start)).count(), 5);
        let later = start + Duration::from_secs(10);
        assert_eq!((0..20).filter(|_| limiter.try_take(later)).count(), 5);
    }

    /// A fractional share (20/s over 3 nodes) still grants.
    #[test]
    fn fractional_rate() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(node_share(20, 3), 1);
        assert!(limiter.try_take(start));
        assert!(!limiter.try_take(start + Duration::from_millis(100)));
        assert!(limiter.try_take(start + Duration::from_millis(151)));
    }

    /// SMS is limited by default; email is not.
    #[test]
    fn default_rates() {
        let settings = ChannelSettings::default();
        assert_eq!(channel_rate(&settings, ChannelType::Sms), Some(20));
        assert_eq!(channel_rate(&settings, ChannelType::Email), None);
        assert_eq!(channel_rate(&settings, ChannelType::Voice), None);
    }

    proptest! {
        /// In any window of `w`, never more than `rate * w + burst` grants, whatever the
        /// arrival pattern.
        #[test]
        fn never_more_than_rate_times_window_plus_burst(
            rate in 1u32..200,
            burst in 1u32..50,
            gaps in proptest::collection::vec(0u64..100_000_000, 1..400),
            window_ms in 1u64..3_000,
        ) {
            let start = Instant::now();
            let mut limiter = RateLimiter::new(f64::from(rate), burst);
            let mut now = start;
            let mut grants = Vec::new();
            for gap in gaps {
                now += Duration::from_nanos(gap);
                if limiter.try_take(now) {
                    grants.push(now);
                }
            }
            let window = Duration::from_millis(window_ms);
            let bound = f64::from(rate) * window.as_secs_f64() + f64::from(burst);
            for (i, first) in grants.iter().enumerate() {
                let inside = grants[i..].iter().take_while(|t| **t <= *first + window).count();
                prop_assert!(inside as f64 <= bound, "{inside} grants in {window:?}, bound {bound}");
            }
        }
    }
}
