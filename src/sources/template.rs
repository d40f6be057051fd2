//! `{{variable}}` substitution in queries.

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
}
