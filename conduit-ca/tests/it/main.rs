//! Integration tests of conduit-ca: real TLS clients against a rustls server that takes its
//! certificates from `CertResolver`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test code"
)]

mod contract;
mod offline;
mod tls;
