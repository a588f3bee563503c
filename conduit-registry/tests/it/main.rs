//! Integration tests of conduit-registry: one binary, one module per area.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test"
)]

mod contract;
#[cfg(feature = "etcd")]
mod etcd;
mod file;
mod process;
