//! `GET /v1/dns/resolve?name=NAME&type=A|AAAA`: what the running DNS server answers, asked
//! over UDP as any client would (the dashboard's resolver box).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// One question to the gateway's DNS server and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsLookup {
    /// The server asked (`ADDRESS:PORT`).
    pub server: String,
    /// The name asked for.
    pub name: String,
    /// `A` or `AAAA`.
    #[serde(rename = "type")]
    pub rtype: String,
    /// The response code: `NOERROR`, `NXDOMAIN`, `REFUSED`, `SERVFAIL`, …
    pub code: String,
    /// The addresses in the answer.
    pub addresses: Vec<IpAddr>,
}
