//! Integration tests of conduit-dns: the packet path on its own, then real clients (`dig`,
//! `kdig`) against a running server, and a differential test against NSD.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test code"
)]

mod common;
mod contract;
mod dig;
mod hidden;
mod nsd;
mod reuseport;
mod tcp_starvation;
mod wire;
