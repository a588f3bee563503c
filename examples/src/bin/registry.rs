//! `registry`: the service registry from the command line (until the `conduit` gateway binary
//! replaces it).
//!
//! ```text
//! registry [--dir DIR] register --name N --upstream HOST:PORT [--upstream …] [--health PATH]
//!                      [--zone Z | --domain FQDN] [--no-proxy] [--no-tls] [--overwrite]
//! registry [--dir DIR] deregister --name N
//! registry [--dir DIR] get --name N
//! registry [--dir DIR] list [--all] [--json]
//! registry [--dir DIR] watch [--since REVISION]
//! ```
//! `--flag value` and `--flag=value` both work. The directory defaults to
//! `$CONDUIT_CONFIG_DIR`, else `~/.config/qp-conduit`. Exit codes: 0 ok, 1 failure, 2 usage.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line program"
)]

use std::process::ExitCode;

use anyhow::{Context, bail};
use conduit::registry::{
    DomainName, Endpoint, FileOptions, FileRegistry, HealthCheck, ListFilter, Precondition,
    Registry, Revision, Routing, ServiceName, ServiceRecord, default_config_dir,
};

const USAGE: &str = "usage: registry [--dir DIR] <register|deregister|get|list|watch> [options]
  register   --name N --upstream HOST:PORT [--upstream …] [--health PATH]
             [--zone Z | --domain FQDN] [--no-proxy] [--no-tls] [--overwrite]
  deregister --name N
  get        --name N
  list       [--all] [--json]
  watch      [--since REVISION]";

/// A usage error (exit code 2).
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Usage {}

/// Parsed `--flag value` / `--flag=value` / `--switch` arguments.
struct Args {
    pairs: Vec<(String, Option<String>)>,
}

const SWITCHES: &[&str] = &[
    "--no-proxy",
    "--no-tls",
    "--overwrite",
    "--all",
    "--json",
    "-h",
    "--help",
];

impl Args {
    fn parse(raw: impl Iterator<Item = String>) -> Result<(Option<String>, Self), Usage> {
        let mut pairs = Vec::new();
        let mut command = None;
        let mut raw = raw.peekable();
        while let Some(a) = raw.next() {
            if let Some((k, v)) = a.split_once('=').filter(|_| a.starts_with("--")) {
                pairs.push((k.to_owned(), Some(v.to_owned())));
            } else if SWITCHES.contains(&a.as_str()) {
                pairs.push((a, None));
            } else if a.starts_with('-') {
                let v = raw
                    .next()
                    .ok_or_else(|| Usage(format!("{a} needs a value")))?;
                pairs.push((a, Some(v)));
            } else if command.is_none() {
                command = Some(a);
            } else {
                return Err(Usage(format!("unexpected argument {a:?}")));
            }
        }
        Ok((command, Self { pairs }))
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .filter_map(|(_, v)| v.as_deref())
            .collect()
    }

    fn one(&self, key: &str) -> Option<&str> {
        self.all(key).pop()
    }

    fn required(&self, key: &str) -> Result<&str, Usage> {
        self.one(key)
            .ok_or_else(|| Usage(format!("{key} is required")))
    }

    fn flag(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == key)
    }

    fn check_known(&self, known: &[&str]) -> Result<(), Usage> {
        match self
            .pairs
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()) && k != "--dir")
        {
            Some((k, _)) => Err(Usage(format!("unknown option {k}"))),
            None => Ok(()),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Usage>() => {
            eprintln!("registry: {e}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("registry: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let (command, args) = Args::parse(std::env::args().skip(1))?;
    if args.flag("-h") || args.flag("--help") {
        println!("{USAGE}");
        return Ok(());
    }
    let dir = match args.one("--dir") {
        Some(d) => d.into(),
        None => default_config_dir().context("set CONDUIT_CONFIG_DIR or HOME, or pass --dir")?,
    };
    let follow = command.as_deref() == Some("watch");
    let open = move |dir: std::path::PathBuf| {
        let mut options = FileOptions::default();
        options.follow = follow;
        FileRegistry::open_with(dir, options)
    };
    let reg = tokio::task::spawn_blocking(move || open(dir)).await??;
    let name = || -> anyhow::Result<ServiceName> { Ok(args.required("--name")?.parse()?) };
    match command.as_deref() {
        Some("register") => {
            args.check_known(&[
                "--name",
                "--upstream",
                "--host",
                "--health",
                "--zone",
                "--domain",
                "--no-proxy",
                "--no-tls",
                "--overwrite",
            ])?;
            let mut ups: Vec<&str> = args.all("--upstream");
            ups.extend(args.all("--host"));
            if ups.is_empty() {
                return Err(Usage("--upstream HOST:PORT is required".into()).into());
            }
            let endpoints = ups
                .iter()
                .map(|u| u.parse::<Endpoint>())
                .collect::<Result<Vec<_>, _>>()?;
            let mut rec =
                ServiceRecord::new(name()?, endpoints[0].clone()).with_endpoints(endpoints);
            if let Some(z) = args.one("--zone") {
                rec = rec.in_zone(&z.parse::<DomainName>()?)?;
            }
            if let Some(d) = args.one("--domain") {
                rec = rec.with_domain(d.parse()?);
            }
            if let Some(h) = args.one("--health") {
                rec = rec.with_health(HealthCheck::with_path(h));
            }
            if args.flag("--no-proxy") {
                rec = rec.with_routing(Routing::Direct);
            }
            rec = rec.with_tls(!args.flag("--no-tls"));
            let exists = reg.get(rec.name()).await?.is_some_and(|r| r.is_active());
            let stored = if exists && args.flag("--overwrite") {
                reg.update(rec, Precondition::Overwrite).await?
            } else {
                reg.register(rec).await?
            };
            println!(
                "registered {} → {} (revision {})",
                stored.domain(),
                list_endpoints(&stored),
                stored.revision()
            );
        }
        Some("deregister") => {
            args.check_known(&["--name"])?;
            let r = reg.deregister(&name()?).await?;
            println!("deregistered {} (revision {})", r.domain(), r.revision());
        }
        Some("get") => {
            args.check_known(&["--name"])?;
            let n = name()?;
            match reg.get(&n).await? {
                Some(r) => println!("{}", serde_json::to_string_pretty(&*r)?),
                None => bail!("no service named {n}"),
            }
        }
        Some("list") => {
            args.check_known(&["--all", "--json"])?;
            let filter = if args.flag("--all") {
                ListFilter::All
            } else {
                ListFilter::Active
            };
            let records = reg.list(filter).await?;
            if args.flag("--json") {
                let v: Vec<&ServiceRecord> = records.iter().map(|r| &**r).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{:<20} {:<32} {:<9} {:<8} UPSTREAMS",
                    "NAME", "DOMAIN", "STATUS", "ROUTING"
                );
                for r in &records {
                    println!(
                        "{:<20} {:<32} {:<9} {:<8} {}",
                        r.name(),
                        r.domain(),
                        format!("{:?}", r.status()).to_lowercase(),
                        format!("{:?}", r.routing()).to_lowercase(),
                        list_endpoints(r)
                    );
                }
            }
        }
        Some("watch") => {
            args.check_known(&["--since"])?;
            let since = match args.one("--since") {
                Some(s) => Revision(
                    s.parse()
                        .map_err(|_| Usage(format!("--since {s:?} is not a number")))?,
                ),
                None => reg.revision().await?,
            };
            let mut w = reg.watch(since);
            loop {
                tokio::select! {
                    ev = w.next() => match ev {
                        Some(ev) => println!("{} {:?} {} {}", ev.revision, ev.kind, ev.record.name(), list_endpoints(&ev.record)),
                        None => return Ok(()),
                    },
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                }
            }
        }
        Some(other) => return Err(Usage(format!("unknown command {other:?}")).into()),
        None => return Err(Usage("a command is required".into()).into()),
    }
    Ok(())
}

fn list_endpoints(r: &ServiceRecord) -> String {
    r.endpoints()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
