//! Notifiers, one per file behind [`Notifier`], and the durable outbox that
//! delivers stored messages to them with retries.

pub mod outbox;
pub mod slack;
pub mod webhook;

use crate::model::Message;
use async_trait::async_trait;

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum NotifyError {
    /// Worth retrying (network error, 429, 5xx). `retry_after` from the receiver.
    #[error("temporary failure: {detail}")]
    Temporary {
        detail: String,
        retry_after: Option<std::time::Duration>,
    },
    /// Will not succeed by retrying (4xx other than 429).
    #[error("permanent failure: {detail}")]
    Permanent { detail: String },
}

/// One destination for messages (a Slack channel, a webhook, ...).
#[async_trait]
pub trait Notifier: Send + Sync {
    /// `slack`, `webhook`, ...
    fn kind(&self) -> &'static str;
    async fn send(&self, msg: &Message) -> Result<(), NotifyError>;
}

/// Builds the notifier a config entry describes.
pub fn build(
    settings: &crate::config::NotifierSettings,
    http: &reqwest::Client,
) -> Box<dyn Notifier> {
    use crate::config::NotifierSettings as N;
    match settings {
        N::Slack {
            webhook_url,
            timeout,
            ..
        } => Box::new(slack::SlackNotifier::new(
            http.clone(),
            webhook_url.clone(),
            *timeout,
        )),
        N::Webhook { url, timeout, .. } => Box::new(webhook::WebhookNotifier::new(
            http.clone(),
            url.clone(),
            *timeout,
        )),
    }
}
