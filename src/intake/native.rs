//! The native format of `POST /v1/releases`:
//! `{"service", "version", "previous_version"?, "environment"?, "annotations"?}`.

use super::{json, Intake, IntakeError, IntakeFormat};
use crate::model::NewRelease;
use axum::http::HeaderMap;

/// release-guardian's own JSON body.
#[derive(Debug, Default, Clone, Copy)]
pub struct Native;

impl IntakeFormat for Native {
    fn name(&self) -> &'static str {
        "native"
    }

    fn parse(&self, _headers: &HeaderMap, body: &[u8]) -> Result<Intake, IntakeError> {
        json::parse::<NewRelease>(body)
            .map(Intake::Release)
            .map_err(IntakeError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_or_a_located_error() {
        let h = HeaderMap::new();
        match Native
            .parse(&h, br#"{"service":"checkout","version":"v2"}"#)
            .unwrap()
        {
            Intake::Release(r) => {
                assert_eq!((r.service.as_str(), r.version.as_str()), ("checkout", "v2"))
            }
            other => panic!("{other:?}"),
        }
        let IntakeError::Malformed(m) = Native.parse(&h, br#"{"service":"checkout"}"#).unwrap_err()
        else {
            panic!("malformed expected")
        };
        assert!(m.contains("missing field `version`"), "{m}");
    }
}
