//! `{{variable}}` substitution in queries, and where a variable may stand.
//!
//! A value is substituted as given except for the quoting the source applies
//! ([`super::RangeSource::render`]): escaped for the inside of a
//! double-quoted string. So a variable is safe only inside a double-quoted
//! label value (`service="{{service}}"`); anywhere else a value such as
//! `'}[5m])) * 0 + 1 or ...` would rewrite the query. [`misplaced_variables`]
//! finds every other placement; `check` rejects it.

use std::collections::BTreeMap;

/// Replaces every `{{name}}` (spaces inside the braces allowed) with its value.
/// Unknown names are left as they are; [`unknown_variables`] finds them at
/// config check time.
pub fn render(template: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        match after.find("}}") {
            Some(close) => {
                let name = after[..close].trim();
                match vars.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&rest[open..open + 2 + close + 2]),
                }
                rest = &after[close + 2..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The `{{names}}` in `template` that `known` does not contain.
pub fn unknown_variables(template: &str, known: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else { break };
        let name = after[..close].trim();
        if !known.contains(&name) && !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
        rest = &after[close + 2..];
    }
    out
}

/// The built-in variables every query may use, besides the service's labels.
pub const BUILTIN_VARIABLES: [&str; 4] = ["service", "environment", "version", "previous_version"];

/// Where a `{{variable}}` stands in a query, when not inside a
/// double-quoted label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// In the query text itself: a metric or label name, a number, a
    /// duration, a regex or a function argument outside quotes.
    Bare,
    /// Inside a single-quoted string (`'...'`): not escaped for it.
    SingleQuoted,
    /// Inside a backtick raw string (`` `...` ``): nothing escapes there.
    Backticked,
    /// Inside a double-quoted string that is not a label matcher's value
    /// (a function argument such as `label_replace`'s).
    DoubleQuotedNotLabelValue,
    /// Inside a `#` comment, which a line break in a value would end.
    Comment,
}

impl Placement {
    /// "inside single quotes", ...
    pub fn describe(self) -> &'static str {
        match self {
            Self::Bare => "outside any string",
            Self::SingleQuoted => "inside single quotes",
            Self::Backticked => "inside a backtick raw string",
            Self::DoubleQuotedNotLabelValue => {
                "inside a double-quoted string that is not a label value"
            }
            Self::Comment => "inside a comment",
        }
    }
}

/// One variable standing where its value would not be escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misplaced {
    /// The name between the braces, trimmed.
    pub name: String,
    pub placement: Placement,
    /// 1-based line and column (in characters) of its `{{` in the query.
    pub line: usize,
    pub col: usize,
}

/// Every `{{variable}}` of `template` that does not stand inside a
/// double-quoted label value, scanning it by PromQL's (and LogQL's) lexical
/// rules:
///
/// - `"..."` is a string with backslash escapes; `'...'` too; `` `...` `` is
///   a raw string without escapes; `#` starts a comment up to the end of the
///   line (outside strings);
/// - a double-quoted string is a label value when it stands inside a
///   selector's braces `{...}` right after a matcher operator (`=`, `!=`,
///   `=~`, `!~`; spaces allowed between);
/// - `{{` up to the next `}}` is a variable wherever it stands (an unclosed
///   `{{` is text, as [`render`] leaves it).
///
/// A variable inside a double-quoted label value is fine: the source escapes
/// its value there. Anywhere else it is listed.
pub fn misplaced_variables(template: &str) -> Vec<Misplaced> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Code,
        Double { label_value: bool },
        Single,
        Backtick,
        Comment,
    }
    let mut out = Vec::new();
    let mut state = State::Code;
    // Selector braces open, outside strings and variables.
    let mut depth = 0usize;
    // The code (outside strings and comments) since the last string, for
    // the operator before a string.
    let mut code_tail = String::new();
    let (mut line, mut col) = (1usize, 1usize);
    let mut chars = template.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let (at_line, at_col) = (line, col);
        let mut advance = |c: char| {
            if c == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
        };
        advance(c);
        if template[i..].starts_with("{{") {
            if let Some(close) = template[i + 2..].find("}}") {
                let name = template[i + 2..i + 2 + close].trim().to_string();
                let placement = match state {
                    State::Code => Some(Placement::Bare),
                    State::Double { label_value: true } => None,
                    State::Double { label_value: false } => {
                        Some(Placement::DoubleQuotedNotLabelValue)
                    }
                    State::Single => Some(Placement::SingleQuoted),
                    State::Backtick => Some(Placement::Backticked),
                    State::Comment => Some(Placement::Comment),
                };
                if let Some(placement) = placement {
                    out.push(Misplaced {
                        name,
                        placement,
                        line: at_line,
                        col: at_col,
                    });
                }
                // Skip the rest of `{{name}}`.
                let end = i + 2 + close + 2;
                while let Some(&(j, c)) = chars.peek() {
                    if j >= end {
                        break;
                    }
                    advance(c);
                    chars.next();
                }
                if state == State::Code {
                    // A variable in the code is a value, not an operator.
                    code_tail.push('x');
                }
                continue;
            }
        }
        match state {
            State::Code => match c {
                '"' => {
                    let label_value = depth > 0 && ends_with_matcher(&code_tail);
                    state = State::Double { label_value };
                    code_tail.clear();
                }
                '\'' => state = State::Single,
                '`' => state = State::Backtick,
                '#' => state = State::Comment,
                '{' => {
                    depth += 1;
                    code_tail.push(c);
                }
                '}' => {
                    depth = depth.saturating_sub(1);
                    code_tail.push(c);
                }
                c => code_tail.push(c),
            },
            State::Double { .. } | State::Single => {
                let quote = if matches!(state, State::Single) {
                    '\''
                } else {
                    '"'
                };
                if c == '\\' {
                    if let Some((_, escaped)) = chars.next() {
                        advance(escaped);
                    }
                } else if c == quote {
                    state = State::Code;
                    code_tail.clear();
                    code_tail.push('x');
                }
            }
            State::Backtick => {
                if c == '`' {
                    state = State::Code;
                    code_tail.clear();
                    code_tail.push('x');
                }
            }
            State::Comment => {
                if c == '\n' {
                    state = State::Code;
                }
            }
        }
    }
    out
}

/// Whether `code` ends with a label matcher's operator (`=`, `!=`, `=~`,
/// `!~`), spaces after it allowed; `==`, `<=`, `>=` are comparisons.
fn ends_with_matcher(code: &str) -> bool {
    let code = code.trim_end();
    if code.ends_with("=~") || code.ends_with("!~") || code.ends_with("!=") {
        return true;
    }
    match code.strip_suffix('=') {
        Some(before) => !before.ends_with(['=', '<', '>', '!']),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_known_and_keeps_unknown() {
        let vars: BTreeMap<String, String> = [("service".to_string(), "checkout".to_string())]
            .into_iter()
            .collect();
        assert_eq!(
            render(r#"up{service="{{service}}",x="{{ nope }}"}"#, &vars),
            r#"up{service="checkout",x="{{ nope }}"}"#
        );
        assert_eq!(render("a {{service", &vars), "a {{service");
        assert_eq!(
            unknown_variables("{{service}} {{ns}} {{ns}}", &["service"]),
            vec!["ns"]
        );
    }

    fn misplaced(q: &str) -> Vec<(String, Placement)> {
        misplaced_variables(q)
            .into_iter()
            .map(|m| (m.name, m.placement))
            .collect()
    }

    #[test]
    fn label_values_in_double_quotes_are_the_only_place() {
        for q in [
            r#"up{service="{{service}}"}"#,
            r#"up{service = "{{service}}", version!="{{ version }}"}"#,
            r#"up{pod=~"{{service}}-.*",v!~"{{version}}"}"#,
            r#"sum(rate(x{service="{{service}}",code=~"5.."}[5m])) / sum(rate(x{service="{{service}}"}[5m]))"#,
            r#"up{service="a\"{{service}}\"b"}"#,
            r#"{service="{{service}}"} |= "error""#,
            "up{service=\"{{service}}\"} # a comment\n",
            "up{service=\"{{service\"}",
            "no variables at all",
        ] {
            assert_eq!(misplaced(q), vec![], "{q}");
        }
    }

    #[test]
    fn every_other_placement_is_found() {
        let v = |p| vec![("version".to_string(), p)];
        use Placement::*;
        assert_eq!(misplaced(r#"up{version='{{version}}'}"#), v(SingleQuoted));
        assert_eq!(misplaced(r#"up{version=`{{version}}`}"#), v(Backticked));
        assert_eq!(misplaced("up{version={{version}}}"), v(Bare));
        assert_eq!(misplaced("{{version}}_requests_total"), v(Bare));
        assert_eq!(misplaced("rate(x[{{version}}])"), v(Bare));
        assert_eq!(misplaced("up{ {{version}}=\"x\" }"), v(Bare));
        assert_eq!(
            misplaced(r#"label_replace(up, "v", "{{version}}", "", "")"#),
            v(DoubleQuotedNotLabelValue)
        );
        assert_eq!(
            misplaced(r#"up == "{{version}}""#),
            v(DoubleQuotedNotLabelValue)
        );
        assert_eq!(misplaced("up # {{version}}\n"), v(Comment));
        // A double quote inside single quotes does not open a string.
        assert_eq!(
            misplaced(r#"up{a='"', version='{{version}}'}"#),
            v(SingleQuoted)
        );
        // An escaped quote does not close the string.
        assert_eq!(misplaced(r#"up{a='\'{{version}}'}"#), v(SingleQuoted));
        // After a string closes, what follows is code again.
        assert_eq!(
            misplaced(r#"up{service="{{service}}"} or {{version}}"#),
            v(Bare)
        );
    }

    #[test]
    fn positions_are_lines_and_columns_in_the_query() {
        let m = misplaced_variables("sum(\n  up{v='{{version}}'})");
        assert_eq!((m[0].line, m[0].col), (2, 9));
        let m = misplaced_variables("ü {{version}}");
        assert_eq!((m[0].line, m[0].col), (1, 3));
    }

    #[test]
    fn the_observed_injection_is_caught() {
        // The rendered query a single-quoted `{{version}}` gave.
        let q = "sum(rate(x{version='{{version}}'}[5m])) > 0";
        assert_eq!(
            misplaced(q),
            vec![("version".to_string(), Placement::SingleQuoted)]
        );
        let vars = [(
            "version".to_string(),
            "'}[5m])) * 0 + 1 or vector(1) #".to_string(),
        )]
        .into_iter()
        .collect();
        // What it would have become: the value's quote closes the string.
        assert!(render(q, &vars).contains("'}[5m])) * 0 + 1 or vector(1) #'"));
    }
}
