//! `GET /v1/certs`: the CA's own certificates and every leaf the gateway serves, each with
//! the share of its life left (the dashboard warns under a third: renewal is due at a
//! third, so a leaf below it is one renewal late, whatever its lifetime).

use std::collections::HashSet;

use conduit_ca::CertInfo;

use super::GatewayHandle;
use crate::api::{CaCertView, CertReport, LeafView};

impl GatewayHandle {
    /// The CA and every certificate the gateway serves now.
    pub fn certificates(&self) -> CertReport {
        let now = time::OffsetDateTime::now_utc();
        let revoked = self
            .local_ca
            .as_ref()
            .map(|c| c.revoked_serials())
            .unwrap_or_default();
        let ca_cert = |pem: String| {
            conduit_ca::inspect_pem(&pem, now, &HashSet::new())
                .ok()
                .map(|i| ca_view(&i))
        };
        let root = self.local_ca.as_ref().and_then(|c| ca_cert(c.root_pem()));
        let intermediate = self
            .local_ca
            .as_ref()
            .and_then(|c| ca_cert(c.intermediate_pem()));
        let ca = self.settings.ca_config();
        let mut name_constraints: Vec<String> =
            ca.zones.iter().map(|z| format!("DNS: .{z}")).collect();
        name_constraints.extend(
            ca.ip_ranges
                .iter()
                .map(|(ip, len)| format!("IP: {ip}/{len}")),
        );
        let leaves = self
            .certs
            .expiries()
            .into_iter()
            .filter_map(|(name, _)| {
                let cert = self.certs.current(&name)?;
                let info = conduit_ca::inspect_pem(&cert.chain_pem, now, &revoked).ok()?;
                Some(leaf_view(name, &info, now))
            })
            .collect();
        let mut revoked: Vec<String> = revoked.into_iter().collect();
        revoked.sort();
        CertReport {
            ca: self.ca_status(),
            root,
            intermediate,
            name_constraints,
            leaves,
            revoked,
        }
    }
}

fn ca_view(i: &CertInfo) -> CaCertView {
    CaCertView {
        subject: i.subject.clone(),
        not_before: i.not_before.clone(),
        not_after: i.not_after.clone(),
        sha256_fingerprint: colon_hex(&i.sha256_fingerprint),
    }
}

/// `ab01ff` → `AB:01:FF`.
fn colon_hex(hex: &str) -> String {
    let hex = hex.to_ascii_uppercase();
    let pairs: Vec<&str> = (0..hex.len() / 2)
        .filter_map(|k| hex.get(2 * k..2 * k + 2))
        .collect();
    pairs.join(":")
}

/// The share of a validity period left at `now`, 0 to 1 (0 for one that cannot be read).
fn life_left(not_before: &str, not_after: &str, now: time::OffsetDateTime) -> f64 {
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    };
    match (parse(not_before), parse(not_after)) {
        (Some(from), Some(to)) if to > from => {
            ((to - now).as_seconds_f64() / (to - from).as_seconds_f64()).clamp(0.0, 1.0)
        }
        _ => 0.0,
    }
}

fn leaf_view(name: String, i: &CertInfo, now: time::OffsetDateTime) -> LeafView {
    let mut names = i.dns_names.clone();
    names.extend(i.ip_addresses.iter().map(ToString::to_string));
    LeafView {
        name,
        serial: i.serial.clone(),
        names,
        not_before: i.not_before.clone(),
        not_after: i.not_after.clone(),
        life_left: life_left(&i.not_before, &i.not_after, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_of_life_left_is_of_the_whole_validity() {
        let now = time::macros::datetime!(2026-11-07 00:00 UTC);
        let left = life_left("2026-11-01T00:00:00Z", "2026-11-11T00:00:00Z", now);
        assert!((left - 0.4).abs() < 1e-9, "{left}");
        assert_eq!(
            life_left("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", now),
            0.0
        );
        assert_eq!(
            life_left("2026-11-08T00:00:00Z", "2026-11-11T00:00:00Z", now),
            1.0
        );
        assert_eq!(life_left("garbage", "2026-11-11T00:00:00Z", now), 0.0);
    }

    #[test]
    fn a_fingerprint_is_written_as_openssl_does() {
        assert_eq!(colon_hex("ab01ff"), "AB:01:FF");
    }
}
