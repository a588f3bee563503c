//! What each subsystem is built with, derived from the configuration: the proxy's
//! [`ProxyConfig`] and SSRF policy, the DNS [`ZoneConfig`], the CA's [`CaConfig`], the admin
//! listener's TLS and token.

use std::net::SocketAddr;
use std::sync::Arc;

use conduit_ca::CaConfig;
use conduit_dns::ZoneConfig;
use conduit_proxy::{ProxyConfig, SsrfPolicy};
use conduit_registry::DomainName;

use super::values::parse_cidr;
use super::{ConduitConfig, ConfigError, Secret};

impl ConduitConfig {
    /// Whether the admin API's TCP listener speaks TLS (`[admin] tls`, default: unless it
    /// listens on loopback).
    pub fn admin_tls(&self) -> bool {
        self.admin
            .tls
            .unwrap_or_else(|| self.admin.listen.is_some_and(|a| !a.ip().is_loopback()))
    }

    /// The admin token: `[admin] token`, else the file `[admin] token_file` names.
    ///
    /// # Errors
    /// [`ConfigError::Read`] when the token file cannot be read.
    pub fn admin_token(&self, _origin: &str) -> Result<Option<Secret>, ConfigError> {
        if let Some(t) = &self.admin.token {
            return Ok(Some(t.clone()));
        }
        match &self.admin.token_file {
            Some(path) => std::fs::read_to_string(path)
                .map(|t| Some(Secret::new(t.trim())))
                .map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                }),
            None => Ok(None),
        }
    }

    /// The DNS zone configuration: the zone, the advertised addresses and the ports SRV
    /// records give (HTTPS and plain HTTP listeners).
    pub fn zone_config(&self) -> ZoneConfig {
        let mut z =
            ZoneConfig::new(vec![self.zone.clone()]).with_advertise(self.dns.advertise.clone());
        if let Some(port) = self.proxy.listen.first().map(SocketAddr::port) {
            z = z.with_https_port(port);
        }
        if let Some(port) = self.proxy.http_listen.first().map(SocketAddr::port) {
            z = z.with_http_port(port);
        }
        if let Some(name) = self
            .dashboard_domain()
            .filter(|_| !self.proxy.listen.is_empty())
        {
            z = z.with_gateway_name(name);
        }
        z
    }

    /// The dashboard's name (`[dashboard] name` below the zone) while it is enabled: served
    /// by the proxy, answered by DNS, and no service's.
    pub fn dashboard_domain(&self) -> Option<DomainName> {
        self.dashboard.domain(&self.zone)
    }

    /// The SSRF guard for upstreams: metadata and link-local refused, loopback per
    /// `allow_loopback_upstreams`, the allow-list when given.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for an entry of `proxy.allow_upstreams` that is neither a
    /// network nor a name.
    pub fn ssrf_policy(&self, origin: &str) -> Result<SsrfPolicy, ConfigError> {
        let mut networks = Vec::new();
        let mut names = Vec::new();
        for entry in &self.proxy.allow_upstreams {
            if let Some(c) = parse_cidr(entry) {
                networks.push(c);
            } else {
                let name: DomainName = entry.parse().map_err(|e| {
                    ConfigError::invalid(
                        origin,
                        "proxy.allow_upstreams",
                        format!("{entry:?} is neither a network (10.0.0.0/8) nor a name: {e}"),
                    )
                })?;
                names.push(name);
            }
        }
        Ok(SsrfPolicy::default()
            .allow_loopback(self.proxy.allow_loopback_upstreams)
            .allow_networks(networks)
            .allow_names(names))
    }

    /// The proxy's configuration.
    ///
    /// # Errors
    /// As [`ConduitConfig::ssrf_policy`].
    pub fn proxy_config(&self, origin: &str) -> Result<ProxyConfig, ConfigError> {
        let p = &self.proxy;
        let mut c = ProxyConfig::default();
        c.tls = p.tls_versions;
        c.balance = p.balance;
        c.timeouts.upstream_first_byte = p.first_byte_timeout;
        c.timeouts.idle = p.idle_timeout;
        c.timeouts.upstream_connect = p.connect_timeout;
        c.limits.max_body_bytes = p.max_body;
        c.hsts = p.hsts;
        c.grace_period = p.grace_period;
        c.threads = p.threads;
        c.ssrf = Some(Arc::new(self.ssrf_policy(origin)?));
        c.upgrades = p.upgrades.clone();
        c.health.passive_failure_statuses = p.passive_failure_statuses.clone();
        c.trusted_proxies = p
            .trusted_proxies
            .iter()
            .map(|t| {
                parse_cidr(t).ok_or_else(|| {
                    ConfigError::invalid(
                        origin,
                        "proxy.trusted_proxies",
                        format!("{t:?} is not a network (10.0.0.0/8) or an address"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        c.llm = self.llm.model_routing(origin)?;
        c.validate().map_err(|e| match e {
            conduit_proxy::ProxyError::InvalidSetting { key, problem } => {
                // The proxy's own keys that are `[proxy]` keys of the same name.
                let key = if key == "threads" {
                    "proxy.threads"
                } else {
                    key
                };
                ConfigError::invalid(origin, key, problem)
            }
            other => ConfigError::invalid(origin, "proxy", other.to_string()),
        })?;
        Ok(c)
    }

    /// The CA's configuration: constrained to the zone.
    pub fn ca_config(&self) -> CaConfig {
        let mut c = CaConfig::default();
        c.zones = vec![self.zone.as_str().to_owned()];
        c.leaf_lifetime = self.ca.leaf_lifetime;
        c.intermediate_lifetime = self.ca.intermediate_lifetime;
        c.key_algorithm = self.ca.key_algorithm;
        if let Some((crl, root_crl)) = self.crl_urls() {
            c.crl_url = Some(crl);
            c.root_crl_url = Some(root_crl);
        }
        c
    }

    /// Where the gateway publishes its CRLs: `http://ADVERTISED:PORT/ca/crl.der` (named in
    /// every leaf) and `…/ca/root-crl.der` (named in the intermediate), on the first
    /// advertised address and the first plain-HTTP listener's port; `None` without a
    /// plain-HTTP listener (or with port 0, not known before it is bound).
    pub fn crl_urls(&self) -> Option<(String, String)> {
        let port = self
            .proxy
            .http_listen
            .first()
            .map(SocketAddr::port)
            .filter(|p| *p != 0)?;
        let ip = self.dns.advertise.iter().find(|ip| !ip.is_unspecified())?;
        let base = match ip {
            std::net::IpAddr::V4(v4) => format!("http://{v4}:{port}"),
            std::net::IpAddr::V6(v6) => format!("http://[{v6}]:{port}"),
        };
        Some((
            format!("{base}{}", crate::gateway::CRL_PATH),
            format!("{base}{}", crate::gateway::ROOT_CRL_PATH),
        ))
    }
}
