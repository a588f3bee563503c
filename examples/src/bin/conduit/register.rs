//! `conduit register` and `conduit deregister`: registry changes, each audited as the OS user.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use conduit::audit::AuditSink;
use conduit::audited::AuditedRegistry;
use conduit::registry::{Endpoint, FileRegistry, Routing, ServiceName, ServiceRecord};

use crate::settings::{Context, user};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The service name (a DNS label).
    #[arg(long)]
    name: String,
    /// An upstream, HOST:PORT or http(s)://HOST:PORT, repeatable.
    #[arg(long, alias = "host", required = true)]
    upstream: Vec<String>,
    /// The health-check path [default: `[health] path`, /health].
    #[arg(long)]
    health: Option<String>,
    /// The domain [default: NAME.ZONE].
    #[arg(long)]
    domain: Option<String>,
    /// DNS answers the upstream itself; no proxy, no certificate (TCP services).
    #[arg(long)]
    no_proxy: bool,
    /// No certificate: the service is served over plain HTTP on the gateway's HTTP listener.
    #[arg(long)]
    no_tls: bool,
}

/// The state directory's registry; every change audited (as the OS user).
fn audited_registry(ctx: &Context) -> anyhow::Result<AuditedRegistry<FileRegistry>> {
    let log: Arc<dyn AuditSink> = Arc::new(ctx.state.open_audit()?);
    Ok(AuditedRegistry::new(
        ctx.state.open_registry()?,
        log,
        user(),
    ))
}

pub(crate) async fn register(ctx: &Context, r: Args) -> anyhow::Result<ExitCode> {
    let name = ServiceName::new(&r.name).with_context(|| format!("--name {:?}", r.name))?;
    let ssrf = ctx.config.ssrf_policy(&ctx.origin)?;
    let endpoints = r
        .upstream
        .iter()
        .map(|u| {
            let e = u
                .parse::<Endpoint>()
                .with_context(|| format!("--upstream {u:?}"))?;
            // Refused here, before anything is stored, looked up or checked.
            ssrf.check_endpoint(&e).map_err(|why| {
                anyhow::anyhow!(
                    "--upstream {u:?}: {why}; if this upstream is intended, list it in `[proxy] allow_upstreams` of {}",
                    ctx.origin
                )
            })?;
            Ok(e)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut health = ctx.config.health.clone();
    if let Some(p) = r.health {
        health.path = p;
    }
    health
        .validate()
        .map_err(|e| anyhow::anyhow!("--health: {e}"))?;
    let Some(first) = endpoints.first().cloned() else {
        anyhow::bail!("--upstream is required");
    };
    let mut rec = ServiceRecord::new(name, first)
        .with_endpoints(endpoints)
        .with_health(health)
        .with_routing(if r.no_proxy {
            Routing::Direct
        } else {
            Routing::Proxied
        })
        .with_tls(!r.no_tls && !r.no_proxy);
    let zone = &ctx.config.zone;
    rec = match &r.domain {
        Some(d) => rec.with_domain(d.parse().with_context(|| format!("--domain {d:?}"))?),
        None => rec.in_zone(zone)?,
    };
    // A service's name lies inside the zone, and is neither the zone itself nor the name
    // server's own name.
    let domain = rec.domain();
    if !domain.is_within(zone) || domain == zone {
        anyhow::bail!(
            "--domain {domain}: must be a name inside the zone {zone} (such as {}.{zone}); the zone is set by `zone` in {}",
            rec.name(),
            ctx.origin
        );
    }
    if domain.as_str() == format!("ns.{zone}") {
        anyhow::bail!(
            "{domain} is reserved for the gateway's name server: choose another --name or --domain"
        );
    }
    let reg = audited_registry(ctx)?;
    // Exit 1 unless the change is both stored and audited.
    let stored = reg.register_audited(rec).await?;
    let ups: Vec<String> = stored.endpoints().iter().map(ToString::to_string).collect();
    println!("registered {} → {}", stored.domain(), ups.join(", "));
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn deregister(ctx: &Context, name: &str) -> anyhow::Result<ExitCode> {
    let svc = ServiceName::new(name).with_context(|| format!("--name {name:?}"))?;
    let reg = audited_registry(ctx)?;
    let rec = reg.deregister_audited(&svc).await?;
    println!("deregistered {}", rec.domain());
    Ok(ExitCode::SUCCESS)
}
