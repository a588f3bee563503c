//! What the CA may certify: its zones and IP ranges, written into the root as name
//! constraints and checked on every request before anything is signed.

use std::net::IpAddr;

use rcgen::{CidrSubnet, GeneralSubtree, NameConstraints};

use super::{CaConfig, LocalCa};
use crate::{CaError, IssueRequest};

pub(super) fn name_constraints(config: &CaConfig) -> NameConstraints {
    NameConstraints {
        permitted_subtrees: config
            .zones
            .iter()
            .map(|z| GeneralSubtree::DnsName(z.clone()))
            .chain(config.ip_ranges.iter().map(|(ip, len)| {
                GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(*ip, *len))
            }))
            .collect(),
        excluded_subtrees: Vec::new(),
    }
}

impl LocalCa {
    /// Checks a request against the CA's zones and IP ranges.
    ///
    /// # Errors
    /// [`CaError::InvalidName`], [`CaError::OutsideConstraints`], [`CaError::NoNames`].
    pub fn check_request(&self, req: &IssueRequest) -> Result<(), CaError> {
        if req.dns_names.is_empty() && req.ip_addresses.is_empty() {
            return Err(CaError::NoNames);
        }
        for n in &req.dns_names {
            let bare = n.strip_prefix("*.").unwrap_or(n);
            check_dns_name(bare).map_err(|p| CaError::InvalidName {
                name: n.clone(),
                reason: p.to_string(),
            })?;
            let inside = self
                .config
                .zones
                .iter()
                .any(|z| bare == z || bare.ends_with(&format!(".{z}")));
            if !inside {
                return Err(CaError::OutsideConstraints { name: n.clone() });
            }
        }
        for ip in &req.ip_addresses {
            let inside = self
                .config
                .ip_ranges
                .iter()
                .any(|(net, len)| in_range(*ip, *net, *len));
            if !inside {
                return Err(CaError::OutsideConstraints {
                    name: ip.to_string(),
                });
            }
        }
        Ok(())
    }
}

pub(super) fn in_range(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len.min(32)))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len.min(128)))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Why a name is not a DNS name this CA certifies.
#[derive(Debug, thiserror::Error)]
pub(super) enum NameProblem {
    #[error("length {0} is not 1-253")]
    Length(usize),
    #[error("label {0:?} is not 1-63 characters")]
    LabelLength(String),
    #[error("character {0:?} is not allowed (lower-case a-z, 0-9, '-')")]
    Character(char),
    #[error("label {0:?} starts or ends with '-'")]
    Hyphen(String),
}

/// DNS-name rules for SANs and zones: lower-case labels of `[a-z0-9-]`, 1-63 characters, no
/// leading or trailing `-`, at most 253 characters.
pub(super) fn check_dns_name(n: &str) -> Result<(), NameProblem> {
    if n.is_empty() || n.len() > 253 {
        return Err(NameProblem::Length(n.len()));
    }
    for label in n.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(NameProblem::LabelLength(label.to_owned()));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(NameProblem::Character(c));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(NameProblem::Hyphen(label.to_owned()));
        }
    }
    Ok(())
}
