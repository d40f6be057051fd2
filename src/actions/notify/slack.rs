//! slack notifier.

use super::{Notifier, NotifyError};
use crate::config::Secret;
use crate::model::Message;
use async_trait::async_trait;
use std::time::Duration;

pub struct SlackNotifier {
    _http: reqwest::Client,
}

impl SlackNotifier {
    pub fn new(http: reqwest::Client, _webhook_url: Secret, _timeout: Duration) -> Self {
        Self { _http: http }
    }
}

#[async_trait]
impl Notifier for SlackNotifier {
    fn kind(&self) -> &'static str {
        "slack"
    }
    async fn send(&self, _msg: &Message) -> Result<(), NotifyError> {
        Err(NotifyError::Permanent {
            detail: "not built".into(),
        })
    }
}
