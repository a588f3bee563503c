//! conduit-proxy against real clients (curl, Python `ssl`/`http.client`, Python
//! `websockets`) and real upstream servers on loopback.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::field_reassign_with_default,
    reason = "test code"
)]

mod common;
mod contract;
mod hostile;
mod local;
mod proxy;
mod shutdown;
mod threads;
mod wire;
