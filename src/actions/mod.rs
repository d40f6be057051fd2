//! What the daemon does about a decision: notify people (the outbox and its
//! notifiers) and run the rollback hook.

pub mod hook_supervisor;
pub mod notify;
pub mod rollback;
pub mod rollback_http;
