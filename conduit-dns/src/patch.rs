//! Small registry changes applied to the previous zone instead of a full build.
//!
//! A proxied service one label below a forward zone's apex (`grafana.internal`, what
//! `conduit register NAME` makes) owns three names: its own (the advertised addresses),
//! `_tcp` under it (an empty non-terminal) and its SRV name. No other service's records
//! or answers touch them unless another service sits below it or a direct service's CNAME
//! points at it, so registering, changing or removing such a service replaces those names
//! and nothing else, and the apex's SOA takes the new serial. Every other change (a direct
//! service, a deeper name, a name the zone itself uses, more than [`MAX_CHANGES`] services
//! at once) is left to a full build; both give the same answers, byte for byte.

use std::sync::Arc;

use conduit_registry::{DomainName, Host, Routing, ServiceRecord};
use hickory_proto::rr::{Name, RData, Record};

use crate::zone::{Map, Records, domain_to_name, proxied_names, soa_with_serial};
use crate::zone_config::ZoneConfig;

/// Beyond this many changed services in one step, a full build is as cheap.
pub(crate) const MAX_CHANGES: usize = 16;

/// The names a step replaces.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Names that go (every name of a changed service's previous version).
    pub(crate) gone: Vec<Name>,
    /// Names that come, with their data (every name of a changed service's new version).
    pub(crate) added: Vec<(Name, Vec<RData>)>,
}

/// The plan that turns the zone built from `before` into the one built from `after`, or
/// `None` when only a full build is known to be right.
pub(crate) fn plan(
    config: &ZoneConfig,
    before: &[Arc<ServiceRecord>],
    after: &[Arc<ServiceRecord>],
) -> Option<Plan> {
    let (old, new) = (index(before), index(after));
    let mut changed: Vec<(Option<&ServiceRecord>, Option<&ServiceRecord>)> = Vec::new();
    for (name, o) in &old {
        match new.get(name) {
            Some(n) if Arc::ptr_eq(o, n) || o == n => {}
            n => changed.push((Some(&***o), n.map(|n| &***n))),
        }
    }
    changed.extend(
        new.iter()
            .filter(|(name, _)| !old.contains_key(*name))
            .map(|(_, n)| (None, Some(&***n))),
    );
    if changed.len() > MAX_CHANGES {
        return None;
    }
    let mut plan = Plan::default();
    let mut touched: Vec<&DomainName> = Vec::new();
    for (o, n) in changed {
        if let Some(o) = o {
            let fqdn = simple(config, o)?;
            plan.gone.extend(
                proxied_names(config, &fqdn, o.tls())
                    .into_iter()
                    .map(|(n, _)| n),
            );
            touched.push(o.domain());
        }
        if let Some(n) = n {
            let fqdn = simple(config, n)?;
            plan.added.extend(proxied_names(config, &fqdn, n.tls()));
            touched.push(n.domain());
        }
    }
    let others = old.values().chain(new.values());
    for other in others {
        for domain in &touched {
            if depends_on(other, domain) {
                return None;
            }
        }
    }
    Some(plan)
}

/// The active services by name.
fn index(list: &[Arc<ServiceRecord>]) -> Map<&str, &Arc<ServiceRecord>> {
    list.iter()
        .filter(|r| r.is_active())
        .map(|r| (r.name().as_str(), r))
        .collect()
}

/// The service's name when it is of the kind a step can replace: active, proxied, one
/// label below a forward zone's apex, and not a name the zone itself uses (an apex, the
/// name server, the gateway's own names).
fn simple(config: &ZoneConfig, service: &ServiceRecord) -> Option<Name> {
    if !service.is_active() || service.routing() != Routing::Proxied {
        return None;
    }
    let fqdn = domain_to_name(service.domain()).ok()?;
    let parent = fqdn.base_name();
    let mut forward = config.zones.iter().filter_map(|z| domain_to_name(z).ok());
    if !forward.any(|z| z == parent) {
        return None;
    }
    let apexes = config.zones.iter().chain(&config.reverse_zones);
    if apexes.clone().any(|z| z == service.domain())
        || config.gateway_names.contains(service.domain())
    {
        return None;
    }
    let nameservers: Vec<DomainName> = match &config.nameserver {
        Some(ns) => vec![ns.clone()],
        None => config
            .zones
            .iter()
            .filter_map(|z| DomainName::new(&format!("ns.{z}")).ok())
            .collect(),
    };
    (!nameservers.iter().any(|ns| ns == service.domain())).then_some(fqdn)
}

/// Whether `other`'s names or answers involve `domain` (a changed service's): a name below
/// it (which makes it an empty non-terminal), or a direct upstream by that host name (a
/// CNAME whose answers hold its records).
fn depends_on(other: &ServiceRecord, domain: &DomainName) -> bool {
    let below = other
        .domain()
        .as_str()
        .strip_suffix(domain.as_str())
        .is_some_and(|head| head.ends_with('.'));
    let cname = other.routing() == Routing::Direct
        && other
            .endpoints()
            .iter()
            .any(|e| matches!(e.host(), Host::Name(h) if h == domain));
    below || cname
}

impl Records {
    /// These records after `plan`, at `serial`.
    pub(crate) fn patched(&self, config: &ZoneConfig, plan: &Plan, serial: u32) -> Self {
        let mut next = self.clone();
        next.serial = serial;
        next.zones = self.zones.iter().map(|z| z.with_serial(serial)).collect();
        for zone in &next.zones {
            let apex = &zone.negative_soa.name;
            if let Some(list) = next.nodes.get_mut(apex) {
                *list = list.iter().map(|r| soa_with_serial(r, serial)).collect();
            }
        }
        for name in &plan.gone {
            next.nodes.remove(name);
        }
        for (name, data) in &plan.added {
            let mut list: Vec<Record> = Vec::with_capacity(data.len());
            for rdata in data {
                let record = Record::from_rdata(name.clone(), config.ttl, rdata.clone());
                if !list.contains(&record) {
                    list.push(record);
                }
            }
            next.nodes.insert(name.clone(), list.into());
        }
        next
    }
}
