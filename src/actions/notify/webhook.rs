//! webhook notifier.

use super::{Notifier, NotifyError};
use crate::config::Secret;
use crate::model::Message;
use async_trait::async_trait;
use std::time::Duration;

pub struct WebhookNotifier {
    _http: reqwest::Client,
}

impl WebhookNotifier {
    pub fn new(http: reqwest::Client, _url: Secret, _timeout: Duration) -> Self {
        Self { _http: http }
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn kind(&self) -> &'static str {
        "webhook"
    }
    async fn send(&self, _msg: &Message) -> Result<(), NotifyError> {
        Err(NotifyError::Permanent {
            detail: "not built".into(),
        })
    }
}
