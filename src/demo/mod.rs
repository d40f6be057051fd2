//! The self-contained demo.
