//! Which peers an address belongs to, and per service which grants name which peers: the
//! lookups a decision makes instead of trying every grant.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::Cidr;

pub(super) type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Which peers an address belongs to: one map per prefix length in use (most sites have
/// two or three), each keyed by the masked address.
#[derive(Default)]
pub(super) struct AddressIndex {
    by_prefix: Vec<(u8, bool, Map<IpAddr, Vec<u32>>)>,
}

impl AddressIndex {
    pub(super) fn insert(&mut self, net: Cidr, peer: u32) {
        let (prefix, v4) = (net.prefix(), net.network().is_ipv4());
        let i = match self
            .by_prefix
            .iter()
            .position(|(p, f, _)| *p == prefix && *f == v4)
        {
            Some(i) => i,
            None => {
                self.by_prefix.push((prefix, v4, Map::default()));
                // Longest prefixes first: a host address is the likeliest hit.
                self.by_prefix.sort_by_key(|b| std::cmp::Reverse(b.0));
                self.by_prefix
                    .iter()
                    .position(|(p, f, _)| *p == prefix && *f == v4)
                    .unwrap_or(0)
            }
        };
        let peers = self.by_prefix[i].2.entry(net.network()).or_default();
        if !peers.contains(&peer) {
            peers.push(peer);
        }
    }

    /// The peers `ip` (canonical) belongs to.
    pub(super) fn lookup(&self, ip: IpAddr) -> Peers<'_> {
        let mut found = Peers::None;
        for (prefix, v4, map) in &self.by_prefix {
            if *v4 != ip.is_ipv4() {
                continue;
            }
            if let Some(ids) = map.get(&Cidr::masked(ip, *prefix)) {
                found = match found {
                    Peers::None => Peers::Some(ids),
                    Peers::Some(first) => Peers::Many(first.iter().chain(ids).copied().collect()),
                    Peers::Many(mut v) => {
                        v.extend_from_slice(ids);
                        Peers::Many(v)
                    }
                };
            }
        }
        found
    }
}

/// The peers a client address belongs to (usually one, borrowed from the index).
pub(super) enum Peers<'a> {
    None,
    Some(&'a [u32]),
    Many(Vec<u32>),
}

impl Peers<'_> {
    pub(super) fn as_slice(&self) -> &[u32] {
        match self {
            Self::None => &[],
            Self::Some(s) => s,
            Self::Many(v) => v,
        }
    }
}

/// A service's grants by who they name: each sorted by peer, so that a decision looks up
/// the client's peers instead of trying every grant.
#[derive(Default)]
pub(super) struct ByWho {
    /// (peer, grant position): `peer:` grants, and `tag:` grants once per tagged peer.
    pub(super) peers: Vec<(u32, u32)>,
    /// `cidr:` grants.
    pub(super) nets: Vec<(Cidr, u32)>,
    /// (certificate's peer name, grant position).
    pub(super) certs: Vec<(Box<str>, u32)>,
    /// (peer, grant position) of `cert:` grants: for DNS, which sees addresses only.
    pub(super) cert_peers: Vec<(u32, u32)>,
}

impl ByWho {
    pub(super) fn sort(&mut self) {
        self.peers.sort_unstable();
        self.cert_peers.sort_unstable();
    }

    /// The positions of the grants naming `peer` in `list`.
    pub(super) fn of(list: &[(u32, u32)], peer: u32) -> impl Iterator<Item = u32> + '_ {
        let start = list.partition_point(|(p, _)| *p < peer);
        list[start..]
            .iter()
            .take_while(move |(p, _)| *p == peer)
            .map(|(_, pos)| *pos)
    }
}
