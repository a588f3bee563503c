//! `conduit setup` and `conduit serve`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use conduit::audit::AuditSink as _;
use conduit::config::Secret;
use conduit::gateway::{Gateway, GatewayConfig};
use conduit::registry::Registry as _;

use crate::settings::{Context, user};
use crate::signal::shutdown;

/// `serve`'s own flags; each replaces its key of the configuration.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// DNS listener (UDP+TCP), repeatable (`[dns] listen`).
    #[arg(long)]
    dns_listen: Vec<SocketAddr>,
    /// HTTPS listener, repeatable (`[proxy] listen`).
    #[arg(long)]
    https_listen: Vec<SocketAddr>,
    /// Plain-HTTP listener, repeatable (`[proxy] http_listen`): `--no-tls` services, and
    /// redirects to HTTPS for the others.
    #[arg(long)]
    http_listen: Vec<SocketAddr>,
    /// No plain-HTTP listener at all.
    #[arg(long, conflicts_with = "http_listen")]
    no_http: bool,
    /// The address DNS answers for proxied names, repeatable (`[dns] advertise`).
    #[arg(long)]
    advertise: Vec<IpAddr>,
    /// A resolver for names outside the zone, repeatable (`[dns] forwarders`).
    #[arg(long)]
    forward: Vec<SocketAddr>,
    /// Also serve the admin API on TCP (`[admin] listen`; requires a token).
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// A file holding the admin API's bearer token (`[admin] token_file`).
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// Keep the registry in etcd, shared with the site's other gateways:
    /// `etcd://HOST:PORT[,HOST:PORT…]/PREFIX` (`[registry] url`).
    #[arg(long, value_name = "URL")]
    registry: Option<String>,
}

impl Args {
    fn apply(self, c: &mut conduit::config::ConduitConfig) {
        let replace = |to: &mut Vec<SocketAddr>, from: Vec<SocketAddr>| {
            if !from.is_empty() {
                *to = from;
            }
        };
        replace(&mut c.dns.listen, self.dns_listen);
        replace(&mut c.proxy.listen, self.https_listen);
        replace(&mut c.proxy.http_listen, self.http_listen);
        replace(&mut c.dns.forwarders, self.forward);
        if self.no_http {
            c.proxy.http_listen.clear();
        }
        if !self.advertise.is_empty() {
            c.dns.advertise = self.advertise;
        }
        if let Some(a) = self.admin_listen {
            c.admin.listen = Some(a);
        }
        if let Some(url) = self.registry {
            c.registry.url = Some(url);
        }
        if let Some(f) = self.admin_token_file {
            c.admin.token_file = Some(f);
            c.admin.token = None::<Secret>;
        }
    }
}

/// Creates the state directory, the CA, the registry and the seal key; audited as `setup`.
/// `verbose` prints where everything is and what to do next.
pub(crate) async fn setup(ctx: &Context, verbose: bool) -> anyhow::Result<ExitCode> {
    let state = &ctx.state;
    state.create()?;
    let ca = state.open_ca(ctx.config.ca_config())?;
    if !ctx.config.registry.is_shared() {
        // A shared registry lives in its store; the state directory keeps none.
        let reg = state.open_registry()?;
        let _ = reg.revision().await?;
    }
    let key = state.seal_key_or_create()?;
    let log = state.open_audit()?;
    let event = conduit::audited::event(
        conduit::audited::Action::ConduitSetup,
        true,
        format!("Initialized {}", state.path().display()),
        &user(),
        serde_json::json!({"zone": ctx.config.zone.as_str(), "seal_key": key.fingerprint()}),
    )?;
    log.append(event).await?;
    let root = state.root_pem();
    println!("state directory: {}", state.path().display());
    println!(
        "CA root: {} (valid until {})",
        root.display(),
        conduit::ca::inspect_pem(
            ca.root_pem(),
            time::OffsetDateTime::now_utc(),
            &Default::default()
        )
        .map(|i| i.not_after)
        .unwrap_or_default()
    );
    if !verbose {
        return Ok(ExitCode::SUCCESS);
    }
    println!("\nTrust the root on each client:");
    for step in conduit::ca::trust_instructions(&root, "Conduit Internal CA") {
        println!("  {}:", step.platform);
        for c in step.commands {
            println!("    {c}");
        }
    }
    let https = ctx.config.proxy.listen.first().map(SocketAddr::port);
    println!("\nNext:\n  conduit serve");
    println!("  conduit register --name grafana --upstream 10.0.1.50:3000 --health /api/health");
    println!(
        "  curl --cacert {} https://grafana.{}{}/",
        root.display(),
        ctx.config.zone,
        https
            .filter(|p| *p != 443)
            .map(|p| format!(":{p}"))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn serve(mut ctx: Context, args: Args) -> anyhow::Result<ExitCode> {
    // Installed first: a SIGTERM while starting stops the gateway cleanly once it runs.
    let stop = shutdown();
    args.apply(&mut ctx.config);
    ctx.config.validate(&ctx.origin)?;
    if !ctx.state.is_initialized() && ctx.config.registry.is_shared() {
        // A gateway joining a site must not invent a root of its own.
        anyhow::bail!(
            "{} is not set up, and the registry is shared ({}): run `conduit setup` (this gateway's own root); to join the site's root, then `conduit ca request-intermediate`, have the root's keeper sign it (`conduit ca sign-intermediate`) and run `conduit ca install-intermediate --join FILE`; then start it again",
            ctx.state.path().display(),
            ctx.config.registry.url.as_deref().unwrap_or_default()
        );
    }
    if !ctx.state.is_initialized() {
        setup(&ctx, false)
            .await
            .with_context(|| format!("cannot set up {}", ctx.state.path().display()))?;
    }
    let mut cfg = GatewayConfig::with_settings(ctx.state.clone(), ctx.config, &ctx.origin);
    cfg.audit_user = user();
    let gw = Gateway::start(cfg).await?;
    for a in gw.dns_addrs() {
        println!("dns {a}");
    }
    for a in gw.https_addrs() {
        println!("https {a}");
    }
    for a in gw.http_addrs() {
        println!("http {a}");
    }
    if let Some(socket) = gw.admin_socket() {
        println!("admin {}", socket.display());
    }
    gw.run(stop).await?;
    Ok(ExitCode::SUCCESS)
}
