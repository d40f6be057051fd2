//! Renders release objects (as the API returns them) for people: plain
//! text for `status` and the demo.

pub mod text;
