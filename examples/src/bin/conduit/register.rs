//! `conduit register`, `conduit deregister` and `conduit service update`: registry changes.
//! With the gateway running they go through its admin API (audited there as this process's
//! user, from the kernel); without it they are written to the state directory directly,
//! with the same checks ([`ServiceSpec`]), audited as this process's real user.

use std::process::ExitCode;
use std::sync::Arc;

use conduit::admin::AdminError;
use conduit::api::ServiceView;
use conduit::audit::AuditSink;
use conduit::audited::AuditedRegistry;
use conduit::registry::{Precondition, Registry, Revision, Routing, ServiceName};
use conduit::spec::{HealthSpec, ServiceSpec};

use crate::settings::{Context, user};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The service name (a DNS label).
    #[arg(long)]
    name: String,
    #[command(flatten)]
    spec: SpecArgs,
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

/// What `register` and `service update` both take.
#[derive(clap::Args)]
pub(crate) struct SpecArgs {
    /// An upstream, HOST:PORT or http(s)://HOST:PORT, repeatable; KIND=HOST:PORT gives one
    /// upstream another kind than --kind (`ollama=10.0.0.7:11434`).
    #[arg(long, alias = "host", required = true)]
    upstream: Vec<String>,
    /// What the upstreams are: http (any HTTP server), or a model server — openai, vllm or
    /// ollama — ready per model and routed by the request's `model` [default: http].
    #[arg(long)]
    kind: Option<conduit::registry::Engine>,
    /// The health-check path [default: `[health] path`, /health].
    #[arg(long)]
    health: Option<String>,
}

/// `conduit service …`.
#[derive(clap::Subcommand)]
pub(crate) enum ServiceCommand {
    /// Replaces a service's upstreams (and health path) in place: it stays in DNS and the
    /// proxy throughout.
    Update {
        /// The service name.
        name: String,
        #[command(flatten)]
        spec: SpecArgs,
        /// Only if the service is still at this revision (as `status --json` or the API's
        /// ETag gives it).
        #[arg(long)]
        if_revision: Option<u64>,
    },
}

impl SpecArgs {
    fn spec(&self, name: &str) -> ServiceSpec {
        let mut spec = ServiceSpec::new(name, self.upstream.clone());
        spec.kind = self.kind;
        if let Some(p) = &self.health {
            let mut h = HealthSpec::default();
            h.path = Some(p.clone());
            spec.health = Some(h);
        }
        spec
    }
}

/// The configured registry (the state directory's, or the shared store), for a command
/// that runs without a gateway.
pub(crate) async fn registry(ctx: &Context) -> anyhow::Result<Arc<dyn Registry>> {
    Ok(conduit::gateway::open_registry(&ctx.state, &ctx.config, &ctx.origin).await?)
}

/// The configured registry; every change audited as this process's real user.
pub(crate) async fn audited_registry(
    ctx: &Context,
) -> anyhow::Result<AuditedRegistry<Arc<dyn Registry>>> {
    let log: Arc<dyn AuditSink> = Arc::new(ctx.state.open_audit()?);
    Ok(AuditedRegistry::new(registry(ctx).await?, log, user()))
}

/// What the running gateway said, as this command's error (its message names the problem).
fn refused(e: AdminError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn print(verb: &str, v: &ServiceView) {
    println!("{verb} {} → {}", v.domain, v.upstreams.join(", "));
}

pub(crate) async fn register(ctx: &Context, r: Args) -> anyhow::Result<ExitCode> {
    let mut spec = r.spec.spec(&r.name);
    spec.domain = r.domain;
    spec.routing = r.no_proxy.then_some(Routing::Direct);
    spec.tls = r.no_tls.then_some(false);
    match ctx.admin().register(&spec).await {
        Ok(v) => {
            print("registered", &v);
            return Ok(ExitCode::SUCCESS);
        }
        Err(AdminError::NotRunning { .. }) => {}
        Err(e) => return Err(refused(e)),
    }
    // No gateway: written here, with the same checks.
    let ssrf = ctx.config.ssrf_policy(&ctx.origin)?;
    let rec = spec.to_record(&ctx.config, &ssrf, &ctx.origin)?;
    let reg = audited_registry(ctx).await?;
    // Exit 1 unless the change is both stored and audited.
    let stored = reg.register_audited(rec).await?;
    print("registered", &ServiceView::from(&*stored));
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn deregister(ctx: &Context, name: &str) -> anyhow::Result<ExitCode> {
    match ctx.admin().deregister(name).await {
        Ok(v) => {
            println!("deregistered {}", v.domain);
            return Ok(ExitCode::SUCCESS);
        }
        Err(AdminError::NotRunning { .. }) => {}
        Err(e) => return Err(refused(e)),
    }
    let svc = ServiceName::new(name).map_err(|e| anyhow::anyhow!("--name {name:?}: {e}"))?;
    let reg = audited_registry(ctx).await?;
    let rec = reg.deregister_audited(&svc).await?;
    println!("deregistered {}", rec.domain());
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn service(ctx: &Context, command: ServiceCommand) -> anyhow::Result<ExitCode> {
    let ServiceCommand::Update {
        name,
        spec,
        if_revision,
    } = command;
    let want = spec.spec(&name);
    // The record as stored keeps what the command does not change (domain, routing, TLS,
    // and the kind unless --kind is given).
    let keep = |spec: &mut ServiceSpec, v: &ServiceView| {
        spec.domain = Some(v.domain.clone());
        spec.routing = Some(v.routing);
        spec.tls = Some(v.tls);
        spec.kind = spec.kind.or(Some(v.kind));
    };
    match ctx.admin().service(&name).await {
        Ok(current) => {
            let mut spec = want;
            keep(&mut spec, &current);
            let v = ctx
                .admin()
                .update(&name, &spec, Some(if_revision.unwrap_or(current.revision)))
                .await
                .map_err(refused)?;
            print("updated", &v);
            return Ok(ExitCode::SUCCESS);
        }
        Err(AdminError::NotRunning { .. }) => {}
        Err(e) => return Err(refused(e)),
    }
    let svc = ServiceName::new(&name).map_err(|e| anyhow::anyhow!("{name:?}: {e}"))?;
    let reg = audited_registry(ctx).await?;
    let current = reg
        .get(&svc)
        .await?
        .filter(|r| r.is_active())
        .ok_or_else(|| {
            anyhow::anyhow!("no active service {name}: register it with `conduit register`")
        })?;
    let mut spec = want;
    keep(&mut spec, &ServiceView::from(&*current));
    let ssrf = ctx.config.ssrf_policy(&ctx.origin)?;
    let rec = spec.to_record(&ctx.config, &ssrf, &ctx.origin)?;
    let expected = Revision(if_revision.unwrap_or(current.revision().0));
    let stored = reg
        .update_audited(rec, Precondition::Revision(expected))
        .await?;
    print("updated", &ServiceView::from(&*stored));
    Ok(ExitCode::SUCCESS)
}
