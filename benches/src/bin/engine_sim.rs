//! `engine-sim`: the LLM engine simulator (`conduit_benches::sim`) as a program, for trying
//! the gateway's model routing by hand: `engine-sim --flavor vllm --model A --listen
//! 127.0.0.1:8000`. It is a simulator with fixed parameters, not an engine.
#![allow(clippy::print_stdout, reason = "a program that says where it listens")]

use anyhow::Context as _;
use clap::Parser;
use conduit_benches::sim::{self, Flavor, SimParams};

#[derive(Parser)]
struct Args {
    /// `vllm` or `ollama`.
    #[arg(long, default_value = "vllm")]
    flavor: String,
    /// A model served, repeatable.
    #[arg(long, required = true)]
    model: Vec<String>,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: std::net::SocketAddr,
    /// vLLM's `--api-key`.
    #[arg(long)]
    api_key: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let flavor = match args.flavor.as_str() {
        "vllm" => Flavor::Vllm,
        "ollama" => Flavor::Ollama,
        other => anyhow::bail!("--flavor {other:?}: expected vllm or ollama"),
    };
    let models: Vec<&str> = args.model.iter().map(String::as_str).collect();
    let mut params = SimParams::new(flavor, &models);
    params.api_key = args.api_key;
    let sim = sim::start(params, args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("engine-sim ({}) on {}", args.flavor, sim.addr);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
