//! [`ServiceSpec`]: a service as a client asks for it — the admin API's `POST` and `PUT`
//! body, `conduit register`'s flags — and the one place it becomes a [`ServiceRecord`]: the
//! name and upstreams parsed, every upstream through the SSRF policy before anything is
//! stored or looked up, the health check on top of `[health]`, the domain inside the zone.

use std::time::Duration;

use conduit_proxy::SsrfPolicy;
use conduit_registry::{
    DomainName, Endpoint, Engine, EngineOverride, HealthCheckError, NameError, Routing,
    ServiceName, ServiceRecord,
};
use serde::{Deserialize, Serialize};

use crate::config::ConduitConfig;

/// What a client gives for a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServiceSpec {
    /// The service name (a DNS label).
    pub name: String,
    /// Its upstreams, `HOST:PORT` or `http(s)://HOST:PORT` (at least one), each optionally
    /// prefixed with a kind other than the service's (`ollama=HOST:PORT`).
    pub upstreams: Vec<String>,
    /// The kind of its upstreams: `http` (default), `openai`, `vllm` or `ollama`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Engine>,
    /// Its domain (default `NAME.ZONE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The health check, on top of `[health]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSpec>,
    /// `proxied` (default) or `direct` (DNS answers the upstream itself; no proxy, no
    /// certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<Routing>,
    /// Whether the proxy serves it over TLS (default: yes when proxied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
}

/// The parts of a health check a client may set; the rest comes from `[health]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HealthSpec {
    /// The path requested on each upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Time between checks (`"10s"`).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub interval: Option<Duration>,
    /// Time allowed for one check (`"2s"`).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
}

/// Why a spec cannot become a record. [`SpecError::is_refused_by_policy`] tells a refusal
/// (the request is well formed, the configuration forbids it) from bad input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The name is not a DNS label.
    #[error("name {input:?}: {source}")]
    Name {
        /// What was given.
        input: String,
        /// Why.
        source: NameError,
    },
    /// No upstream given.
    #[error("at least one upstream is required")]
    NoUpstream,
    /// An upstream's `KIND=` prefix names no kind.
    #[error("upstream {input:?}: {source}")]
    Kind {
        /// What was given.
        input: String,
        /// Why.
        source: conduit_registry::EngineError,
    },
    /// An upstream cannot be read.
    #[error("upstream {input:?}: {source}")]
    Upstream {
        /// What was given.
        input: String,
        /// Why.
        source: conduit_registry::EndpointError,
    },
    /// An upstream the SSRF policy refuses (metadata, link-local, loopback when not allowed).
    #[error(
        "upstream {input:?}: {reason}; if this upstream is intended, list it in `[proxy] allow_upstreams` of {origin}"
    )]
    Refused {
        /// What was given.
        input: String,
        /// The policy's reason.
        reason: Box<conduit_proxy::ProxyError>,
        /// The configuration that decides (`/etc/conduit/conduit.toml`).
        origin: String,
    },
    /// The health check is invalid.
    #[error("health: {0}")]
    Health(#[from] HealthCheckError),
    /// The domain cannot be read.
    #[error("domain {input:?}: {source}")]
    Domain {
        /// What was given.
        input: String,
        /// Why.
        source: NameError,
    },
    /// A `PUT /v1/services/{name}` body that names another service.
    #[error("the body names {body:?}, the path {path:?}: a service cannot be renamed")]
    Renamed {
        /// The name in the path.
        path: String,
        /// The name in the body.
        body: String,
    },
    /// The domain is outside the zone, the zone itself, or the name server's name.
    #[error("domain {domain}: {problem}")]
    DomainNotServed {
        /// The domain.
        domain: String,
        /// Why (naming the zone and how to choose another).
        problem: String,
    },
}

impl SpecError {
    /// Whether the configuration refuses a well-formed request (HTTP 422), rather than the
    /// request being malformed (HTTP 400).
    pub fn is_refused_by_policy(&self) -> bool {
        matches!(self, Self::Refused { .. })
    }
}

impl ServiceSpec {
    /// A spec with a name and upstreams, everything else default.
    pub fn new(name: impl Into<String>, upstreams: Vec<String>) -> Self {
        Self {
            name: name.into(),
            upstreams,
            kind: None,
            domain: None,
            health: None,
            routing: None,
            tls: None,
        }
    }

    /// The record this spec asks for, checked against the configuration: every upstream
    /// through `ssrf` (refused before anything is stored, resolved or checked), the health
    /// check on top of `[health]`, the domain inside `zone` and not reserved.
    ///
    /// # Errors
    /// The first [`SpecError`] found.
    pub fn to_record(
        &self,
        config: &ConduitConfig,
        ssrf: &SsrfPolicy,
        origin: &str,
    ) -> Result<ServiceRecord, SpecError> {
        let name = ServiceName::new(&self.name).map_err(|source| SpecError::Name {
            input: self.name.clone(),
            source,
        })?;
        let kind = self.kind.unwrap_or_default();
        let mut endpoints = Vec::with_capacity(self.upstreams.len());
        let mut overrides = Vec::new();
        for u in &self.upstreams {
            let (own, address) = split_kind(u)?;
            let e: Endpoint = address.parse().map_err(|source| SpecError::Upstream {
                input: u.clone(),
                source,
            })?;
            if let Some(k) = own.filter(|k| *k != kind) {
                overrides.push(EngineOverride {
                    endpoint: e.clone(),
                    kind: k,
                });
            }
            ssrf.check_endpoint(&e)
                .map_err(|reason| SpecError::Refused {
                    input: u.clone(),
                    reason: Box::new(reason),
                    origin: origin.to_owned(),
                })?;
            endpoints.push(e);
        }
        let Some(first) = endpoints.first().cloned() else {
            return Err(SpecError::NoUpstream);
        };
        let mut health = config.health.clone();
        if let Some(h) = &self.health {
            if let Some(p) = &h.path {
                health.path.clone_from(p);
            }
            if let Some(i) = h.interval {
                health.interval = i;
            }
            if let Some(t) = h.timeout {
                health.timeout = t;
            }
        }
        health.validate()?;
        let routing = self.routing.unwrap_or(Routing::Proxied);
        let proxied = routing == Routing::Proxied;
        let mut rec = ServiceRecord::new(name, first)
            .with_endpoints(endpoints)
            .with_health(health)
            .with_routing(routing)
            .with_kind(kind, overrides)
            .with_tls(proxied && self.tls.unwrap_or(true));
        let zone = &config.zone;
        rec = match &self.domain {
            Some(d) => {
                let domain: DomainName = d.parse().map_err(|source| SpecError::Domain {
                    input: d.clone(),
                    source,
                })?;
                rec.with_domain(domain)
            }
            None => rec.in_zone(zone).map_err(|source| SpecError::Domain {
                input: format!("{}.{zone}", self.name),
                source,
            })?,
        };
        check_domain(rec.domain(), rec.name(), zone, origin)?;
        if let Some(own) = config.dashboard_domain()
            && (rec.domain() == &own || rec.name().as_str() == config.dashboard.name)
        {
            return Err(SpecError::DomainNotServed {
                domain: rec.domain().to_string(),
                problem: format!(
                    "the name {:?} is reserved for the gateway's dashboard ({own}): choose another name, or move the dashboard with `[dashboard] name` in {origin}",
                    config.dashboard.name
                ),
            });
        }
        Ok(rec)
    }
}

/// `KIND=ADDRESS` → the kind and the address; a plain address has no kind of its own.
fn split_kind(upstream: &str) -> Result<(Option<Engine>, &str), SpecError> {
    match upstream.split_once('=') {
        Some((kind, address)) => {
            let kind = kind.parse().map_err(|source| SpecError::Kind {
                input: upstream.to_owned(),
                source,
            })?;
            Ok((Some(kind), address))
        }
        None => Ok((None, upstream)),
    }
}

/// A service's name lies inside the zone, and is neither the zone itself nor the name
/// server's own name.
fn check_domain(
    domain: &DomainName,
    name: &ServiceName,
    zone: &DomainName,
    origin: &str,
) -> Result<(), SpecError> {
    if !domain.is_within(zone) || domain == zone {
        return Err(SpecError::DomainNotServed {
            domain: domain.to_string(),
            problem: format!(
                "must be a name inside the zone {zone} (such as {name}.{zone}); the zone is set by `zone` in {origin}"
            ),
        });
    }
    if domain.as_str() == format!("ns.{zone}") {
        return Err(SpecError::DomainNotServed {
            domain: domain.to_string(),
            problem: "is reserved for the gateway's name server: choose another name or domain"
                .to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ConduitConfig {
        ConduitConfig::default()
    }

    fn policy() -> SsrfPolicy {
        config().ssrf_policy("test").unwrap()
    }

    #[test]
    fn a_spec_becomes_a_checked_record() {
        let mut spec = ServiceSpec::new("grafana", vec!["10.0.1.50:3000".into()]);
        spec.health = Some(HealthSpec {
            path: Some("/api/health".into()),
            interval: Some(Duration::from_secs(10)),
            timeout: None,
        });
        let rec = spec.to_record(&config(), &policy(), "test").unwrap();
        assert_eq!(rec.domain().as_str(), "grafana.internal");
        assert_eq!(rec.health().path, "/api/health");
        assert_eq!(rec.health().interval, Duration::from_secs(10));
        assert!(rec.tls());

        let json = r#"{"name":"db","upstreams":["10.0.1.60:5432"],"routing":"direct"}"#;
        let direct: ServiceSpec = serde_json::from_str(json).unwrap();
        let rec = direct.to_record(&config(), &policy(), "test").unwrap();
        assert!(!rec.tls(), "a direct service gets no certificate");
        let unknown =
            serde_json::from_str::<ServiceSpec>(r#"{"name":"x","upstreams":[],"bogus":1}"#)
                .unwrap_err();
        assert!(unknown.to_string().contains("bogus"), "{unknown}");
    }

    #[test]
    fn refusals_and_bad_input_are_told_apart() {
        let meta = ServiceSpec::new("meta", vec!["169.254.169.254:80".into()]);
        let e = meta
            .to_record(&config(), &policy(), "conduit.toml")
            .unwrap_err();
        assert!(e.is_refused_by_policy(), "{e}");
        assert!(e.to_string().contains("allow_upstreams"), "{e}");
        for bad in [
            ServiceSpec::new("Bad_Name", vec!["10.0.0.1:80".into()]),
            ServiceSpec::new("ok", vec![]),
            ServiceSpec::new("ok", vec!["10.0.0.1:99999".into()]),
        ] {
            let e = bad.to_record(&config(), &policy(), "t").unwrap_err();
            assert!(!e.is_refused_by_policy(), "{e}");
        }
        let mut outside = ServiceSpec::new("x", vec!["10.0.0.1:80".into()]);
        outside.domain = Some("x.example.com".into());
        assert!(matches!(
            outside.to_record(&config(), &policy(), "t"),
            Err(SpecError::DomainNotServed { .. })
        ));
        let ns = ServiceSpec::new("ns", vec!["10.0.0.1:80".into()]);
        assert!(matches!(
            ns.to_record(&config(), &policy(), "t"),
            Err(SpecError::DomainNotServed { .. })
        ));
    }
}
