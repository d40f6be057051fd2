//! The demo's stand-in for Slack: a local incoming-webhook receiver that
//! answers `ok` like Slack does and hands every message to the narrator.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use tokio::sync::mpsc;

/// Routes `POST /services/{*path}` to a channel of message texts.
pub fn router(tx: mpsc::UnboundedSender<String>) -> Router {
    Router::new()
        .route("/services/{*path}", post(receive))
        .with_state(tx)
}

async fn receive(
    State(tx): State<mpsc::UnboundedSender<String>>,
    Json(body): Json<serde_json::Value>,
) -> &'static str {
    let text = body
        .get("text")
        .and_then(|t| t.as_str())
        .unwrap_or("(no text)")
        .to_string();
    let _ = tx.send(text);
    "ok"
}
