//! Integration tests of conduit-audit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code; child processes report over stdout"
)]

mod chain;
mod contract;
mod sink;
mod vectors;
mod writers;
