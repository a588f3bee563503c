//! The admin API's server: listeners (`listen`), who is calling (`auth`), what each path
//! does (`routes`) and how it answers (`respond`).

mod auth;
mod listen;
mod policy;
mod respond;
mod routes;

use std::time::Duration;

pub(crate) use auth::{Auth, Caller};
pub(crate) use listen::{Listener, bind_tcp, bind_unix, serve};
pub(crate) use respond::{Body, error, query_value, unescape};
pub(crate) use routes::answer;

/// How long a client may take to send a request head (slow clients hold no connection).
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once per TCP listener; further ones are closed at once.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// Connections served at once on the unix socket (only the gateway's user reaches it; event
/// stream clients hold theirs open).
pub(crate) const MAX_UNIX_CONNECTIONS: usize = 1024;
