//! Strict JSON request bodies: a JSON object and nothing else (whatever the
//! `Content-Type`: `curl -d` sends form-urlencoded by default), with errors
//! that say what is wrong and where — the field (when there is one) and
//! serde_json's line and column. Malformed JSON, a missing or mistyped field,
//! an unknown field or trailing data are all errors.

use serde::de::DeserializeOwned;

/// Parses a JSON document into `T`, rejecting trailing data.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("the request body is empty; expected a JSON object".into());
    }
    // A derived struct would also accept a JSON array of its fields in
    // order; a request body is an object, nothing else.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(not_an_object(bytes));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || inner.is_syntax() || inner.is_eof() {
            format!("invalid JSON body: {inner}")
        } else {
            format!("invalid JSON body: `{path}`: {inner}")
        }
    })?;
    de.end().map_err(|e| format!("invalid JSON body: {e}"))?;
    Ok(value)
}

/// The error for a body that does not start with `{`: serde_json's syntax
/// error if it is not JSON at all, else what kind of value it is.
fn not_an_object(bytes: &[u8]) -> String {
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return format!("invalid JSON body: {e}");
    }
    let found = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    };
    format!("invalid JSON body: expected a JSON object, found {found}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NewRelease;

    fn err(body: &str) -> String {
        match parse::<NewRelease>(body.as_bytes()) {
            Err(m) => m,
            Ok(r) => panic!("expected an error, got {r:?}"),
        }
    }

    #[test]
    fn messages_say_what_and_where() {
        let m = err(r#"{"service": "checkout""#);
        assert!(m.contains("line 1 column"), "{m}");
        let m = err(r#"{"service": "checkout"}"#);
        assert!(m.contains("missing field `version`"), "{m}");
        let m = err(r#"{"service": 5, "version": "v1"}"#);
        assert!(
            m.contains("`service`") && m.contains("line 1 column"),
            "{m}"
        );
        let m = err(r#"{"service": "a", "version": "v1", "colour": "red"}"#);
        assert!(m.contains("unknown field `colour`"), "{m}");
        let m = err(r#"{"service": "a", "version": "v1"} x"#);
        assert!(m.contains("trailing characters"), "{m}");
        let m = err("  ");
        assert!(m.contains("empty"), "{m}");
        let m = err("service=a&version=b");
        assert!(m.contains("expected value at line 1 column 1"), "{m}");
        let m = err(r#"["a", "v1"]"#);
        assert!(m.contains("expected a JSON object, found an array"), "{m}");
        let m = err("42");
        assert!(m.contains("found a number"), "{m}");
        let m = err("[1,");
        assert!(m.contains("line 1 column"), "{m}");
    }

    #[test]
    fn a_good_body_parses() {
        let r: NewRelease = parse(
            br#" {"service":"a","version":"v2","previous_version":"v1","annotations":{"pr":1}} "#,
        )
        .unwrap();
        assert_eq!(r.service, "a");
        assert_eq!(r.previous_version.as_deref(), Some("v1"));
    }
}
