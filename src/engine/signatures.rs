//! New error signatures: log lines reduced to their shape, and the shapes
//! seen after a release that were absent before it.
//!
//! A line's signature keeps its words and masks what varies between two
//! occurrences of the same error: UUIDs (`<uuid>`), timestamps and times of
//! day (`<ts>`), hex (`0x…` or a long hex run: `<hex>`), numbers (`<n>`) and
//! any other token mixing letters and digits (request ids, user ids, pod
//! names: `<id>`). Pure and allocation-light; no regex.

use std::collections::{BTreeMap, HashSet};

/// Longest line kept as an example (characters beyond are cut).
pub const MAX_EXAMPLE_CHARS: usize = 500;

/// A signature seen after the release and absent before it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NewSignature {
    pub signature: String,
    /// How many lines after the release reduce to it.
    pub count: u64,
    /// The first such line (cut at [`MAX_EXAMPLE_CHARS`]).
    pub example: String,
}

/// Characters that stay inside one token.
fn in_token(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '+')
}

/// The signature of one log line.
pub fn signature(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line.trim();
    while !rest.is_empty() {
        let end = rest.find(|c: char| !in_token(c)).unwrap_or(rest.len());
        if end == 0 {
            let c = rest.chars().next().unwrap_or(' ');
            // Runs of whitespace count as one space.
            if c.is_whitespace() {
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            } else {
                out.push(c);
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let (token, tail) = rest.split_at(end);
        mask_token(token, &mut out);
        rest = tail;
    }
    out
}

/// Appends the masked form of one token.
fn mask_token(token: &str, out: &mut String) {
    // Punctuation that ends a sentence or a key is not part of the value.
    let core = token.trim_end_matches(['.', ':', '-', '+']);
    let trailing = &token[core.len()..];
    let core_trim = core.trim_start_matches(['-', '+', '.']);
    let leading = &core[..core.len() - core_trim.len()];
    out.push_str(leading);
    out.push_str(classify(core_trim).unwrap_or(core_trim));
    out.push_str(trailing);
}

/// The mask of a token, or None to keep it.
fn classify(t: &str) -> Option<&'static str> {
    let b = t.as_bytes();
    let has_digit = b.iter().any(u8::is_ascii_digit);
    let all_hex = !b.is_empty() && b.iter().all(u8::is_ascii_hexdigit);
    if is_uuid(b) {
        return Some("<uuid>");
    }
    if !has_digit {
        // A long run of hex letters alone (`deadbeefcafe`) is still hex.
        return (all_hex && b.len() >= 12).then_some("<hex>");
    }
    if is_timestamp(b) {
        return Some("<ts>");
    }
    if (b.len() > 2
        && (t.starts_with("0x") || t.starts_with("0X"))
        && b[2..].iter().all(u8::is_ascii_hexdigit))
        || (all_hex && b.len() >= 8 && b.iter().any(u8::is_ascii_alphabetic))
    {
        return Some("<hex>");
    }
    if b.iter()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'+' | b':' | b'_'))
    {
        return Some("<n>");
    }
    Some("<id>")
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `2026-11-28`, `2026-11-28T21:17:20.123Z`, `21:17:20`, `21:17:20.5`.
fn is_timestamp(b: &[u8]) -> bool {
    let d = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let date = b.len() >= 10
        && (0..4).all(d)
        && b[4] == b'-'
        && d(5)
        && d(6)
        && b[7] == b'-'
        && d(8)
        && d(9);
    let time = b.len() >= 8
        && d(0)
        && d(1)
        && b[2] == b':'
        && d(3)
        && d(4)
        && b[5] == b':'
        && d(6)
        && d(7);
    date || time
}

/// The signatures of `after` absent from `before`, most frequent first
/// (ties by signature), each with its count and first line.
pub fn new_signatures<'a>(
    before: impl IntoIterator<Item = &'a str>,
    after: impl IntoIterator<Item = &'a str>,
) -> Vec<NewSignature> {
    let known: HashSet<String> = before.into_iter().map(signature).collect();
    let mut found: BTreeMap<String, NewSignature> = BTreeMap::new();
    for line in after {
        let sig = signature(line);
        if known.contains(&sig) {
            continue;
        }
        found
            .entry(sig)
            .and_modify(|n| n.count += 1)
            .or_insert_with_key(|sig| NewSignature {
                signature: sig.clone(),
                count: 1,
                example: line.chars().take(MAX_EXAMPLE_CHARS).collect(),
            });
    }
    let mut out: Vec<NewSignature> = found.into_values().collect();
    out.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.signature.cmp(&b.signature))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_what_varies_and_keeps_the_words() {
        let cases = [
            (
                "2026-11-28T21:17:20.123Z ERROR order 48213 failed: timeout after 30s",
                "<ts> ERROR order <n> failed: timeout after <id>",
            ),
            (
                "request 3f2b6c1e-9a4d-4e7b-8c21-0d5e6f7a8b9c: user u_1842 not found",
                "request <uuid>: user <id> not found",
            ),
            (
                "panic at 0x7ffd5e8c and checksum deadbeefcafe01",
                "panic at <hex> and checksum <hex>",
            ),
            (
                "db   error\tcode=-42 at 10:01:02",
                "db error code=-<n> at <ts>",
            ),
            ("connection refused.", "connection refused."),
            (
                "ERROR order 48213 failed for req a1b2c3",
                "ERROR order <n> failed for req <id>",
            ),
            (
                "ERROR order 7 failed for req f00d99",
                "ERROR order <n> failed for req <id>",
            ),
        ];
        for (line, want) in cases {
            assert_eq!(signature(line), want, "{line}");
        }
    }

    #[test]
    fn two_occurrences_of_one_error_share_a_signature() {
        assert_eq!(
            signature("payment 1234 declined for pod checkout-7d9f8-x2x at 2026-01-01T00:00:00Z"),
            signature("payment 98 declined for pod checkout-5c4a1-k8p at 2026-03-01T10:11:12Z")
        );
        assert_ne!(signature("payment declined"), signature("payment accepted"));
    }

    #[test]
    fn only_signatures_absent_before_count() {
        let before = [
            "ERROR cache miss for key 12",
            "ERROR upstream 503 from 10.0.0.7",
        ];
        let after = [
            "ERROR cache miss for key 99",
            "ERROR nil pointer in handler /cart id=7",
            "ERROR upstream 503 from 10.0.0.9",
            "ERROR nil pointer in handler /cart id=8",
            "ERROR schema mismatch column total",
        ];
        let got = new_signatures(before, after);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            got[0].signature,
            "ERROR nil pointer in handler /cart id=<n>"
        );
        assert_eq!(got[0].count, 2);
        assert_eq!(got[0].example, "ERROR nil pointer in handler /cart id=7");
        assert_eq!(got[1].signature, "ERROR schema mismatch column total");
        assert_eq!(got[1].count, 1);
        assert!(new_signatures(after, after).is_empty());
    }

    #[test]
    fn examples_are_cut() {
        let long = format!("ERROR {}", "x".repeat(2000));
        let got = new_signatures([], [long.as_str()]);
        assert_eq!(got[0].example.chars().count(), MAX_EXAMPLE_CHARS);
    }
}
