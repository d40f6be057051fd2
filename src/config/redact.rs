//! [`Redactor`]: strips the configuration's secrets out of free text before
//! it is sent (a notifier's last error may quote the webhook URL it failed
//! to reach; a hook may print a token).

use super::Settings;

/// Secrets shorter than this are not searched for: they would match
/// ordinary text and such a short secret is no secret anyway.
const MIN_SECRET_LEN: usize = 8;

const REDACTED: &str = "<redacted>";

/// Replaces every occurrence of the known secrets with `<redacted>`.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        // Longest first, so a secret that contains another is removed whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// Every secret the settings hold: notifier URLs and keys, API tokens,
    /// the sources' tokens, and the values of rollback hooks' `env`.
    pub fn from_settings(settings: &Settings) -> Self {
        let notifiers = settings
            .notifiers
            .values()
            .flat_map(|n| n.config.secrets())
            .map(|s| s.expose().to_string());
        let tokens = settings.tokens.iter().map(|t| t.token.expose().to_string());
        let webhooks = settings
            .webhooks
            .values()
            .flat_map(|w| w.secrets())
            .map(|s| s.expose().to_string());
        let sources = settings
            .sources
            .values()
            .flat_map(|s| s.config.secrets())
            .map(|s| s.expose().to_string());
        // Values handed to rollback hooks (often credentials for the tool).
        let hook_env = settings
            .services
            .iter()
            .filter_map(|s| s.rollback.as_ref())
            .flat_map(|r| {
                r.env
                    .values()
                    .cloned()
                    .chain(r.signing_key.iter().map(|k| k.expose().to_string()))
            });
        Self::new(
            notifiers
                .chain(tokens)
                .chain(sources)
                .chain(webhooks)
                .chain(hook_env),
        )
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced() {
        let r = Redactor::new([
            "https://hooks.slack.com/services/T0/B0/XYZ".to_string(),
            "short".to_string(),
        ]);
        assert_eq!(
            r.redact("error sending request for url (https://hooks.slack.com/services/T0/B0/XYZ): timed out"),
            "error sending request for url (<redacted>): timed out"
        );
        assert_eq!(r.redact("a short text"), "a short text");
    }
}
