//! The native format of `POST /v1/releases`:
//! `{"service", "version", "previous_version"?, "environment"?, "annotations"?}`,
//! authenticated by the API's bearer tokens.

use super::{json, Intake, IntakeError, IntakeFormat, IntakeRequest};
use crate::model::NewRelease;

/// release-guardian's own JSON body.
#[derive(Debug, Default, Clone, Copy)]
pub struct Native;

impl IntakeFormat for Native {
    fn name(&self) -> &'static str {
        "native"
    }

    fn route(&self) -> &'static str {
        "/v1/releases"
    }

    fn parse(&self, request: &IntakeRequest<'_>) -> Result<Intake, IntakeError> {
        json::parse::<NewRelease>(request.body)
            .map(Intake::Release)
            .map_err(IntakeError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::receive;
    use axum::http::HeaderMap;

    #[test]
    fn a_release_or_a_located_error() {
        let headers = HeaderMap::new();
        let request = |body: &'static [u8]| IntakeRequest {
            headers: &headers,
            body,
            config: None,
        };
        match receive(
            &Native,
            &request(br#"{"service":"checkout","version":"v2"}"#),
        )
        .unwrap()
        {
            Intake::Release(r) => {
                assert_eq!((r.service.as_str(), r.version.as_str()), ("checkout", "v2"))
            }
            other => panic!("{other:?}"),
        }
        let IntakeError::Malformed(m) =
            receive(&Native, &request(br#"{"service":"checkout"}"#)).unwrap_err()
        else {
            panic!("malformed expected")
        };
        assert!(m.contains("missing field `version`"), "{m}");
    }
}
