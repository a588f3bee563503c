//! Split-horizon answers: names of services a client may not reach are NXDOMAIN for it.

use std::net::IpAddr;
use std::sync::Arc;

use conduit_registry::ServiceRecord;
use hickory_proto::rr::RData;

use super::Authority;
use crate::wire::{CLASS_IN, Disposition, Transport, limit, name_from_wire, read_query};

/// Each service's domain in lower-case wire form, with the service's name.
pub(super) type Owners = std::collections::HashMap<Box<[u8]>, conduit_registry::ServiceName>;

fn owners_of(services: &[Arc<ServiceRecord>]) -> Owners {
    services
        .iter()
        .filter_map(|s| {
            let name = crate::zone::domain_to_name(s.domain()).ok()?;
            Some((
                crate::zone::name_wire(&name).into_boxed_slice(),
                s.name().clone(),
            ))
        })
        .collect()
}

impl Authority {
    /// [`respond`](Self::respond) for the client at `client`, with names it may not reach
    /// hidden: a name of a service `policy` does not let it reach (the service's domain, the
    /// names under it, a PTR name pointing at it) gets NXDOMAIN, for every type.
    pub fn respond_to(
        &self,
        client: IpAddr,
        policy: &conduit_registry::access::Evaluator,
        packet: &[u8],
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> Disposition {
        if let Ok((q, edns)) = read_query(packet, out)
            && q.qclass == CLASS_IN
            && edns.is_none_or(|e| e.version == 0)
            && let Some(service) = self.owner(q.lower())
            && !policy.visible(client, service)
            && let Some((zone, offset)) = self.zone_of(q.lower())
            && self.negative(packet, &q, edns, zone, offset, limit(transport, edns), out)
        {
            return Disposition::Reply;
        }
        self.respond(packet, transport, out)
    }

    /// The service a lower-case wire name belongs to: the service's domain or a name under
    /// it (its SRV names), or a PTR name whose target is one.
    fn owner(&self, lower: &[u8]) -> Option<&conduit_registry::ServiceName> {
        let owners = self.owners.get_or_init(|| owners_of(&self.services));
        let mut i = 0;
        while i < lower.len() && lower[i] != 0 {
            if let Some(s) = owners.get(&lower[i..]) {
                return Some(s);
            }
            i += 1 + usize::from(lower[i]);
        }
        let records = self.records.nodes.get(&name_from_wire(lower))?;
        records.iter().find_map(|r| match &r.data {
            RData::PTR(target) => owners.get(crate::zone::name_wire(&target.0).as_slice()),
            _ => None,
        })
    }
}
