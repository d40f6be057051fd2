//! HTTP probes of a service's endpoints.

use super::ProbeResult;
use crate::config::ProbeConfig;

pub struct Prober {
    _http: reqwest::Client,
}

impl Prober {
    pub fn new(http: reqwest::Client) -> Self {
        Self { _http: http }
    }

    pub async fn probe(&self, _cfg: &ProbeConfig) -> ProbeResult {
        ProbeResult {
            ok: false,
            status: None,
            latency: std::time::Duration::ZERO,
            error: Some("not built".into()),
        }
    }
}
