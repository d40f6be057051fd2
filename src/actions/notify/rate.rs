//! A notifier's delivery rate limit (`rate_limit = "30/m"`), read by the
//! loader for every notifier kind, and the limiter the outbox holds for it
//! ([`governor`]'s GCRA: a burst of up to N messages, then one every
//! period / N). Messages over the limit wait in the durable outbox; none
//! is dropped.

use governor::clock::{Clock as _, DefaultClock};
use governor::{Quota, RateLimiter};
use serde::{Deserialize, Deserializer};
use std::num::NonZeroU32;
use std::time::Duration;

/// `N/s`, `N/m` or `N/h`: at most N deliveries per second, minute or hour
/// (a burst of up to N, then evenly spaced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl RateLimit {
    /// Parses `"1/s"`, `"30/m"`, `"100/h"` (also `sec`, `min`, `hour` and a
    /// humantime period such as `"5/10s"`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad =
            || format!("invalid rate limit {s:?}; use N/s, N/m or N/h (e.g. \"1/s\", \"30/m\")");
        let (n, per) = s.trim().split_once('/').ok_or_else(bad)?;
        let count = n
            .trim()
            .parse::<u32>()
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(bad)?;
        let per = match per.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => humantime::parse_duration(other).map_err(|_| bad())?,
        };
        if per.is_zero() || per > Duration::from_secs(24 * 3600) {
            return Err(format!(
                "{}: the period must be between 1ms and 1 day",
                bad()
            ));
        }
        Ok(Self { count, per })
    }

    /// The governor quota: `count` per `per`, bursts of up to `count`.
    fn quota(&self) -> Quota {
        self.quota_with_burst(self.count)
    }

    /// The governor quota: `count` per `per`, bursts of up to `burst`.
    pub fn quota_with_burst(&self, burst: NonZeroU32) -> Quota {
        let every = (self.per / self.count.get()).max(Duration::from_nanos(1));
        Quota::with_period(every)
            .expect("a non-zero period")
            .allow_burst(burst)
    }
}

/// An optional limit that may also be written `"off"` (none).
pub fn deserialize_opt_limit<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<RateLimit>, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    RateLimit::parse(&s)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("{e}, or \"off\"")))
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The limiter of one notifier, kept by the outbox across reloads while its
/// limit stays the same.
pub struct Limiter {
    pub limit: RateLimit,
    inner: RateLimiter<
        governor::state::NotKeyed,
        governor::state::InMemoryState,
        DefaultClock,
        governor::middleware::NoOpMiddleware,
    >,
}

impl Limiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            inner: RateLimiter::direct(limit.quota()),
        }
    }

    /// Takes one delivery slot now, or says how long to wait for one.
    pub fn take(&self) -> Result<(), Duration> {
        self.inner
            .check()
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse() {
        let l = RateLimit::parse("30/m").unwrap();
        assert_eq!((l.count.get(), l.per), (30, Duration::from_secs(60)));
        assert_eq!(
            RateLimit::parse(" 1 / s ").unwrap().per,
            Duration::from_secs(1)
        );
        assert_eq!(
            RateLimit::parse("5/10s").unwrap().per,
            Duration::from_secs(10)
        );
        for bad in ["", "0/s", "x/s", "1/fortnight", "1", "-1/s", "1/0s"] {
            assert!(RateLimit::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_limiter_lets_a_burst_through_then_spaces() {
        let l = Limiter::new(RateLimit::parse("2/s").unwrap());
        assert!(l.take().is_ok());
        assert!(l.take().is_ok());
        let wait = l.take().unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
    }
}
