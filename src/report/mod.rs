//! Renders releases for people: plain text for `status` and the demo
//! ([`text`], [`terminal`]), and the post-release report ([`mod@build`] the
//! data and its JSON, [`markdown`], [`html`]) with its charts ([`chart`]).
//! Everything here is pure: it renders what the API says (JSON values) and
//! what it is handed, and reads nothing itself.

pub mod build;
pub mod chart;
pub mod html;
pub mod markdown;
pub mod terminal;
pub mod text;

pub use build::{build, CheckInfo, Report, ReportInput};
