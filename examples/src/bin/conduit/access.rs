//! `conduit peer …`, `conduit grant …`, `conduit access …`: who may reach what. With the
//! gateway running every change goes through its admin API (in force when the command
//! returns, audited as this process's user); without it the registry's store is changed
//! here, with the same checks, audited the same, and the gateway applies it when it starts.
//! Client certificates need the running gateway (its CA signs them).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use conduit::admin::AdminError;
use conduit::api::{AccessVerdict, GrantList};
use conduit::audited::PolicyChange;
use conduit::registry::access::{Evaluator, Grant, Label, Peer, Subject};
use conduit::registry::{Registry as _, ServiceName};

use crate::register::audited_registry;
use crate::settings::Context;

/// `conduit peer …`.
#[derive(clap::Subcommand)]
pub(crate) enum PeerCommand {
    /// Adds a peer (or replaces the one of that name): a tunnel peer by its addresses, a
    /// person or service by the client certificates it will hold.
    Add {
        /// Its name (`peer:NAME`, `cert:NAME` in grants).
        name: String,
        /// An address or network its packets come from (its WireGuard allowed IPs),
        /// repeatable.
        #[arg(long = "address", value_name = "IP|CIDR")]
        addresses: Vec<String>,
        /// A tag (`tag:TAG` in grants), repeatable.
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Its WireGuard public key (base64), for the record.
        #[arg(long)]
        wg_key: Option<String>,
    },
    /// Lists the peers.
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Removes a peer (refused while a grant names it) and revokes its certificates.
    Remove {
        /// Its name.
        name: String,
    },
    /// Issues a client certificate to the peer into DIR: NAME.crt, NAME.key (0600) and
    /// ca.crt (the root). Valid for the CA's leaf lifetime; run it again to renew.
    Cert {
        /// The peer.
        name: String,
        /// Where to write the files (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Revokes every client certificate issued to the peer (refused from the next
    /// connection on).
    Revoke {
        /// The peer.
        name: String,
    },
}

/// `conduit grant …`.
#[derive(clap::Subcommand)]
pub(crate) enum GrantCommand {
    /// Lets a subject reach a service (only these methods, only under this path).
    Add {
        /// The service.
        service: String,
        /// peer:NAME, tag:TAG, cidr:NETWORK or cert:NAME.
        #[arg(long)]
        to: String,
        /// Allowed methods, comma-separated (`GET,POST`); default all.
        #[arg(long, value_delimiter = ',')]
        methods: Vec<String>,
        /// Allowed path prefix (`/v1/`); default every path.
        #[arg(long)]
        path: Option<String>,
    },
    /// Lists the grants (of one service).
    List {
        /// Only this service's.
        service: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Removes a service's grants for a subject.
    Remove {
        /// The service.
        service: String,
        /// The subject, as given to `grant add`.
        #[arg(long)]
        to: String,
    },
}

/// `conduit access …`.
#[derive(clap::Subcommand)]
pub(crate) enum AccessCommand {
    /// Prints `allow` or `deny` and the grant (or default) that decides, as the proxy
    /// would for this request; exits 0 for allow, 1 for deny.
    Check {
        /// The client's address.
        #[arg(long)]
        from: IpAddr,
        /// With a client certificate of this peer.
        #[arg(long)]
        cert: Option<String>,
        /// The service.
        service: String,
        /// The method [default: GET].
        method: Option<String>,
        /// The path [default: /].
        path: Option<String>,
    },
    /// Makes a service require a client certificate from this site's CA (mTLS, asked
    /// for only on that service's name); `--off` undoes it.
    RequireCert {
        /// The service.
        service: String,
        /// No longer require one.
        #[arg(long)]
        off: bool,
    },
}

/// Applies `change` through the gateway (`via`), else to the store here.
async fn change<T>(
    ctx: &Context,
    via: Result<T, AdminError>,
    change: PolicyChange,
) -> anyhow::Result<()> {
    match via {
        Ok(_) => Ok(()),
        Err(AdminError::NotRunning { .. }) => {
            audited_registry(ctx).await?.change_policy(&change).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn label(kind: &'static str, s: &str) -> anyhow::Result<Label> {
    Label::new(kind, s).map_err(|e| anyhow::anyhow!("{e}"))
}

fn service(s: &str) -> anyhow::Result<ServiceName> {
    s.parse().map_err(|e| anyhow::anyhow!("service {s:?}: {e}"))
}

fn subject(s: &str) -> anyhow::Result<Subject> {
    s.parse().map_err(|e| anyhow::anyhow!("--to {e}"))
}

pub(crate) async fn peer(ctx: &Context, command: PeerCommand) -> anyhow::Result<ExitCode> {
    let admin = ctx.admin();
    match command {
        PeerCommand::Add {
            name,
            addresses,
            tags,
            wg_key,
        } => {
            let mut p = Peer::new(label("peer name", &name)?);
            for a in &addresses {
                p.addresses
                    .push(a.parse().map_err(|e| anyhow::anyhow!("--address {e}"))?);
            }
            for t in &tags {
                p.tags.push(label("tag", t)?);
            }
            p.wg_key = wg_key;
            let via = admin.add_peer(&p).await;
            change(ctx, via, PolicyChange::AddPeer(p)).await?;
            println!("peer {name} added");
        }
        PeerCommand::List { json } => {
            let list = match admin.peers().await {
                Ok(l) => l,
                Err(AdminError::NotRunning { .. }) => {
                    let p = audited_registry(ctx).await?.access_policy().await?;
                    conduit::api::PeerList {
                        revision: p.revision,
                        peers: p.policy.peers.clone(),
                    }
                }
                Err(e) => return Err(e.into()),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for p in &list.peers {
                    let addrs: Vec<String> = p.addresses.iter().map(ToString::to_string).collect();
                    let tags: Vec<&str> = p.tags.iter().map(Label::as_str).collect();
                    println!(
                        "{:<16} {:<32} tags: {:<16} certificates: {}",
                        p.name,
                        addrs.join(","),
                        if tags.is_empty() {
                            "-".to_owned()
                        } else {
                            tags.join(",")
                        },
                        p.certs.len()
                    );
                }
            }
        }
        PeerCommand::Remove { name } => {
            let peer = label("peer name", &name)?;
            match admin.remove_peer(&name).await {
                Ok(_) => {}
                Err(AdminError::NotRunning { .. }) => {
                    let s = audited_registry(ctx).await?;
                    let current = s.access_policy().await?;
                    if current
                        .policy
                        .peer(&peer)
                        .is_some_and(|p| !p.certs.is_empty())
                    {
                        anyhow::bail!(
                            "peer {name} holds client certificates, which only the running gateway can revoke: start it (`conduit serve`) and run this again"
                        );
                    }
                    s.change_policy(&PolicyChange::RemovePeer(peer)).await?;
                }
                Err(e) => return Err(e.into()),
            }
            println!("peer {name} removed");
        }
        PeerCommand::Cert { name, out } => {
            let c = admin.peer_cert(&name).await.map_err(needs_gateway)?;
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let crt = out.join(format!("{name}.crt"));
            let key = out.join(format!("{name}.key"));
            let ca = out.join("ca.crt");
            write_file(&key, c.key_pem.as_bytes(), 0o600)?;
            write_file(&crt, c.chain_pem.as_bytes(), 0o644)?;
            write_file(&ca, c.root_pem.as_bytes(), 0o644)?;
            println!(
                "client certificate for {name}: {} (key {}, root {}), serial {}, valid until {}",
                crt.display(),
                key.display(),
                ca.display(),
                c.serial,
                c.not_after
            );
        }
        PeerCommand::Revoke { name } => {
            let r = admin.revoke_peer(&name).await.map_err(needs_gateway)?;
            if r.serials.is_empty() {
                println!("peer {name} holds no client certificate");
            } else {
                println!("revoked {}: {}", name, r.serials.join(", "));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn needs_gateway(e: AdminError) -> anyhow::Error {
    match e {
        AdminError::NotRunning { .. } => anyhow::anyhow!(
            "client certificates are signed by the running gateway's CA: start it with `conduit serve`"
        ),
        e => e.into(),
    }
}

/// Writes `bytes` to `path` with `mode` through a temporary file and a rename.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

pub(crate) async fn grant(ctx: &Context, command: GrantCommand) -> anyhow::Result<ExitCode> {
    let admin = ctx.admin();
    match command {
        GrantCommand::Add {
            service: svc,
            to,
            methods,
            path,
        } => {
            let mut g = Grant::new(service(&svc)?, subject(&to)?).methods(&methods);
            if let Some(p) = path {
                g = g.path(p);
            }
            let via = admin.add_grant(&g).await;
            let text = g.to_string();
            change(ctx, via, PolicyChange::AddGrant(g)).await?;
            println!("granted {text}");
        }
        GrantCommand::List { service: svc, json } => {
            let list = grants(ctx, svc.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "default: {}{}",
                    list.default,
                    if list.hide_names {
                        ", names hidden"
                    } else {
                        ""
                    }
                );
                for g in &list.grants {
                    println!("{g}");
                }
                for s in &list.require_cert {
                    println!("{s} requires a client certificate");
                }
            }
        }
        GrantCommand::Remove { service: svc, to } => {
            let (service, subject) = (service(&svc)?, subject(&to)?);
            let via = admin.remove_grant(&svc, &to).await;
            let change_ = PolicyChange::RemoveGrant {
                service,
                to: subject,
            };
            change(ctx, via, change_).await?;
            println!("removed the grants {to} → {svc}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn grants(ctx: &Context, svc: Option<&str>) -> anyhow::Result<GrantList> {
    match ctx.admin().grants(svc).await {
        Ok(l) => Ok(l),
        Err(AdminError::NotRunning { .. }) => {
            let only = svc.map(service).transpose()?;
            let p = audited_registry(ctx).await?.access_policy().await?;
            let a = &ctx.config.access;
            Ok(GrantList::of(&p, a.default, a.hide_names, only.as_ref()))
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn access(ctx: &Context, command: AccessCommand) -> anyhow::Result<ExitCode> {
    match command {
        AccessCommand::Check {
            from,
            cert,
            service: svc,
            method,
            path,
        } => {
            let method = method
                .unwrap_or_else(|| "GET".to_owned())
                .to_ascii_uppercase();
            let path = path.unwrap_or_else(|| "/".to_owned());
            let verdict: AccessVerdict = match ctx
                .admin()
                .access_check(from, &svc, &method, &path, cert.as_deref())
                .await
            {
                Ok(v) => v,
                Err(AdminError::NotRunning { .. }) => {
                    // The same evaluator over the stored policy and this configuration.
                    let p = audited_registry(ctx).await?.access_policy().await?;
                    let eval = Evaluator::new(&p.policy, ctx.config.access.default, p.revision);
                    let cert = cert.as_deref().map(|c| label("peer name", c)).transpose()?;
                    conduit::gateway::access_verdict(
                        &eval,
                        from,
                        cert.as_ref().map(Label::as_str),
                        &service(&svc)?,
                        &method,
                        &path,
                    )
                }
                Err(e) => return Err(e.into()),
            };
            let word = if verdict.allowed { "allow" } else { "deny" };
            println!("{word}: {}", verdict.reason);
            return Ok(if verdict.allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        AccessCommand::RequireCert { service: svc, off } => {
            let via = ctx.admin().require_cert(&svc, !off).await;
            let c = PolicyChange::RequireCert {
                service: service(&svc)?,
                required: !off,
            };
            change(ctx, via, c).await?;
            if off {
                println!("{svc} no longer requires a client certificate");
            } else {
                println!("{svc} requires a client certificate from this site's CA");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
