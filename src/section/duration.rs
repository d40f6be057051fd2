//! Humantime durations ("500ms", "5m", "1h30m") in config and rule packs.

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
