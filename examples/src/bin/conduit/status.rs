//! `conduit status`: live from the running gateway (where the configuration says its admin
//! socket is), else what the registry holds.

use std::process::ExitCode;

use conduit::admin::AdminError;
use conduit::api::{
    AccessStatus, CaStatus, DnsCheck, IssuanceState, RegistryStore, ServiceStatus, UpstreamHealth,
};
use conduit::registry::{ListFilter, Registry as _, Routing};
use serde::Serialize;

use crate::settings::Context;

/// What `status --json` prints.
#[derive(Serialize)]
struct View {
    /// `running` or `stopped`.
    gateway: &'static str,
    /// The CA, as the running gateway sees it (`null` when it is stopped).
    ca: Option<CaStatus>,
    /// The access policy in force (`null` when the gateway is stopped).
    access: Option<AccessStatus>,
    /// The dashboard's URL (`null` when the gateway is stopped or serves none).
    dashboard: Option<String>,
    /// The shared registry store (`null` when the registry is the state directory's, or
    /// the gateway is stopped).
    registry_store: Option<RegistryStore>,
    services: Vec<ServiceStatus>,
}

pub(crate) async fn status(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    let view = match ctx.admin().status().await {
        Ok(report) => View {
            gateway: "running",
            ca: Some(report.ca),
            access: Some(report.access),
            dashboard: report.dashboard,
            registry_store: report.registry_store,
            services: report.services,
        },
        Err(AdminError::NotRunning { .. }) => View {
            gateway: "stopped",
            ca: None,
            access: None,
            dashboard: None,
            registry_store: None,
            services: from_registry(ctx).await?,
        },
        Err(e) => return Err(e.into()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("gateway: {}", view.gateway);
    if let Some(url) = &view.dashboard {
        println!("dashboard: {url}");
    }
    if let Some(r) = &view.registry_store {
        if r.reachable {
            println!("registry: {} (reachable since {})", r.url, r.since);
        } else {
            println!(
                "registry: {} UNREACHABLE since {} ({}): serving the last-known registry, changes refused",
                r.url,
                r.since,
                r.reason.as_deref().unwrap_or("no answer")
            );
        }
    }
    if let Some(ca) = &view.ca {
        let state = match ca.issuance {
            IssuanceState::Ready => "issuing",
            IssuanceState::Expiring => "issuing, ATTENTION",
            IssuanceState::Blocked => "ISSUANCE BLOCKED",
        };
        let root = match ca.root_key_present {
            Some(false) => ", root key offline",
            _ => "",
        };
        println!(
            "ca: {state}{root}, intermediate until {}",
            ca.intermediate_not_after.as_deref().unwrap_or("-")
        );
        if let Some(m) = &ca.message {
            println!("  {m}");
        }
    }
    if let Some(a) = &view.access {
        println!(
            "access: default {}{}, policy revision {}: {} peers, {} grants{}; {} refused since start",
            a.default,
            if a.hide_names { ", names hidden" } else { "" },
            a.revision,
            a.peers,
            a.grants,
            if a.require_cert.is_empty() {
                String::new()
            } else {
                format!(
                    "; client certificate required by {}",
                    a.require_cert.join(", ")
                )
            },
            a.denied
        );
    }
    for s in &view.services {
        let health = match s.healthy {
            Some(true) => "healthy",
            Some(false) => "UNHEALTHY",
            None => "-",
        };
        let ups: Vec<&str> = s.upstreams.iter().map(|u| u.endpoint.as_str()).collect();
        let dns = match &s.dns {
            Some(DnsCheck::Addresses(a)) => format!(
                "dns {}",
                a.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Some(DnsCheck::Outcome(o)) => format!("dns {}", o.as_str()),
            None => "dns -".to_owned(),
        };
        println!(
            "{:<16} {:<28} {:<10} {:<28} {:<20} cert until {}",
            s.name,
            s.domain,
            health,
            ups.join(","),
            dns,
            s.certificate_not_after.as_deref().unwrap_or("-")
        );
        for u in &s.upstreams {
            if let Some(e) = &u.engine {
                println!("  {}", engine_line(&u.endpoint, e));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `  vllm http://10.0.0.5:8000 ready: A, B (load 3, KV 0.42, score 2.5, 120 routed)`.
fn engine_line(endpoint: &str, e: &conduit::api::EngineState) -> String {
    let models: Vec<String> = e
        .models
        .iter()
        .map(|m| match m.loaded {
            true => m.id.clone(),
            false => format!("{} (not loaded)", m.id),
        })
        .collect();
    let mut figures = vec![format!("load {}", e.load)];
    if let Some(kv) = e.kv_cache_use {
        figures.push(format!("KV {kv:.2}"));
    }
    if let Some(s) = e.last_score {
        figures.push(format!("score {s}"));
    }
    figures.push(format!("{} routed", e.routed));
    match e.ready {
        true => format!(
            "{} {endpoint} ready: {} ({})",
            e.kind,
            models.join(", "),
            figures.join(", ")
        ),
        false => format!("{} {endpoint} NOT READY: {}", e.kind, e.reason),
    }
}

async fn from_registry(ctx: &Context) -> anyhow::Result<Vec<ServiceStatus>> {
    let reg = crate::register::registry(ctx).await?;
    Ok(reg
        .list(ListFilter::Active)
        .await?
        .iter()
        .map(|r| ServiceStatus {
            name: r.name().as_str().to_owned(),
            domain: r.domain().as_str().to_owned(),
            dns: None,
            kind: r.kind(),
            routing: r.routing(),
            tls: r.tls() && r.routing() == Routing::Proxied,
            health_path: r.health().path.clone(),
            healthy: None,
            upstreams: r
                .endpoints()
                .iter()
                .map(|e| UpstreamHealth::unchecked(e.to_string()))
                .collect(),
            certificate_not_after: None,
        })
        .collect())
}
