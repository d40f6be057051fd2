//! Humantime durations ("500ms", "5m", "1h30m") in config and rule packs,
//! the bounds `check` holds them to, and their saturating conversion to
//! milliseconds.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// Deserializes a humantime string into a [`Duration`].
pub fn deserialize_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s).map_err(serde::de::Error::custom)
}

/// Like [`deserialize_duration`], for optional fields.
pub fn deserialize_opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    s.map(|s| parse(&s).map_err(serde::de::Error::custom))
        .transpose()
}

/// Parses a humantime duration, with a message that names the value.
pub fn parse(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("invalid duration {s:?} ({e}); use e.g. \"500ms\", \"15s\", \"5m\", \"1h\"")
    })
}

const DAY: u64 = 24 * 3600;

/// Longest watch: a cadence tier's `until` and `every` (ten years of
/// 365.25 days, humantime's `10y`).
pub const MAX_WATCH: Duration = Duration::from_secs(10 * 365 * DAY + 10 * DAY / 4);
/// Longest rule window: a level's `for` and a check's `step` (30 days).
pub const MAX_RULE_WINDOW: Duration = Duration::from_secs(30 * DAY);
/// Longest rollback hook `timeout` (24 hours).
pub const MAX_HOOK_TIMEOUT: Duration = Duration::from_secs(DAY);
/// Longest probe or query `timeout` (1 hour).
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);

/// `Err` with a message naming `key` and the bound when `d` is longer than
/// `max` ("`timeout` must be at most 1day").
pub fn at_most(key: &str, d: Duration, max: Duration) -> Result<(), String> {
    if d <= max {
        return Ok(());
    }
    Err(format!(
        "`{key}` must be at most {}",
        humantime::format_duration(max)
    ))
}

/// Whole milliseconds of `d` as an `i64`, saturating at `i64::MAX` (never
/// wrapping, as `d.as_millis() as i64` does past 292 million years).
pub fn saturating_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_saturate() {
        assert_eq!(saturating_millis(Duration::from_millis(1500)), 1500);
        assert_eq!(saturating_millis(Duration::MAX), i64::MAX);
        // The observed `until = "18446744073709552s"`, which `as i64`
        // wrapped to 384 ms.
        let huge = parse("18446744073709552s").unwrap();
        assert_eq!((huge.as_millis() as i64), 384);
        assert_eq!(saturating_millis(huge), i64::MAX);
    }

    #[test]
    fn bounds_name_the_key_value_and_limit() {
        assert_eq!(
            at_most("timeout", MAX_HOOK_TIMEOUT, MAX_HOOK_TIMEOUT),
            Ok(())
        );
        assert_eq!(
            at_most("timeout", parse("25h").unwrap(), MAX_HOOK_TIMEOUT),
            Err("`timeout` must be at most 1day".into())
        );
        // The observed hook timeout parses, and is refused.
        let absurd = parse("500000000000y").unwrap();
        assert!(at_most("timeout", absurd, MAX_HOOK_TIMEOUT).is_err());
    }
}
