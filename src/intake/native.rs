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
        let new = json::parse::<NewRelease>(request.body).map_err(IntakeError::Malformed)?;
        let names = [
            ("service", Some(&new.service)),
            ("version", Some(&new.version)),
            ("environment", new.environment.as_ref()),
            ("previous_version", new.previous_version.as_ref()),
        ];
        for (field, value) in names {
            if let Some(c) = value.and_then(|v| v.chars().find(|&c| is_format_char(c))) {
                return Err(IntakeError::Malformed(format!(
                    "`{field}` contains the invisible Unicode format character U+{:04X}; names and versions must not contain format characters (bidi overrides, zero-width characters)",
                    u32::from(c)
                )));
            }
        }
        Ok(Intake::Release(new))
    }
}

/// Unicode general category Cf (format): bidi controls (U+202A–202E,
/// U+2066–2069), zero-width characters (U+200B–200D, U+2060, U+FEFF), the
/// soft hyphen, tags... They make a name display as something else than it
/// is (`checkout` followed by a right-to-left override, say).
pub fn is_format_char(c: char) -> bool {
    // Every Cf range of Unicode 15.1.
    const CF: &[(u32, u32)] = &[
        (0xAD, 0xAD),
        (0x600, 0x605),
        (0x61C, 0x61C),
        (0x6DD, 0x6DD),
        (0x70F, 0x70F),
        (0x890, 0x891),
        (0x8E2, 0x8E2),
        (0x180E, 0x180E),
        (0x200B, 0x200F),
        (0x202A, 0x202E),
        (0x2060, 0x2064),
        (0x2066, 0x206F),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
    ];
    let c = u32::from(c);
    CF.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
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
        for (body, code) in [
            (
                &br#"{"service":"check\u202eout","version":"v2"}"#[..],
                "U+202E",
            ),
            (br#"{"service":"checkout","version":"v2\u200b"}"#, "U+200B"),
            (
                br#"{"service":"checkout","version":"v2","environment":"prod\ufeff"}"#,
                "U+FEFF",
            ),
            (
                br#"{"service":"checkout","version":"v2","previous_version":"\u2066v1"}"#,
                "U+2066",
            ),
        ] {
            let IntakeError::Malformed(m) = receive(&Native, &request(body)).unwrap_err() else {
                panic!("malformed expected")
            };
            assert!(m.contains(code) && m.contains("format character"), "{m}");
        }
        // Visible non-ASCII text is fine.
        assert!(receive(
            &Native,
            &request(r#"{"service":"checkout","version":"v2-été-日本"}"#.as_bytes())
        )
        .is_ok());
    }
}
