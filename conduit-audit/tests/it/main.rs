//! Integration tests of conduit-audit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

mod chain;
mod vectors;
