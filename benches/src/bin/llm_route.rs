//! `llm-route`: model-aware routing against power of two choices, in one run, on the engine
//! simulator (`conduit_benches::sim`: prefill 4,000 tokens/s, decode 40 tokens/s per
//! sequence, 16 sequences per batch, a 65,536-token prefix cache).
//!
//! Four simulated vLLM replicas of one model behind the proxy (in this process, its own
//! runtime on one thread). Many users, each holding conversations of several turns: a shared
//! system prompt, then a growing history, every turn streamed; between turns a think time
//! (exponential). The same workload runs twice on fresh replicas: `[llm] strategy = "p2c"`
//! (power of two choices on the same load estimate: the engine's figures plus the requests
//! sent since) and `"score"` (the default). Printed: requests and tokens per second, time
//! to first token (p50, p90, p99), the engines' prefix-cache hit rate, and the gateway's
//! decision time (look-ahead and scoring, from its histogram).
//!
//! `cargo run --release -p conduit-benches --bin llm-route -- --users 48 --duration 60`
#![allow(clippy::print_stdout, reason = "a benchmark program")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use conduit_benches::percentile;
use conduit_benches::sim::{self, Flavor, SimBody, SimParams};
use conduit_proxy::{ModelStrategy, ProxyConfig, ProxyServer};
use conduit_registry::{Engine, InMemoryRegistry, Registry as _, ServiceRecord};
use http_body_util::BodyExt as _;
use tokio::time::Instant;

#[derive(Parser, Clone)]
struct Args {
    /// Users, each in one conversation at a time.
    #[arg(long, default_value_t = 48)]
    users: u32,
    /// Turns per conversation (then the user starts another).
    #[arg(long, default_value_t = 8)]
    turns: u32,
    /// Seconds measured per strategy (after the warm-up).
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Seconds before measuring.
    #[arg(long, default_value_t = 15)]
    warmup: u64,
    /// Mean think time between turns, milliseconds.
    #[arg(long, default_value_t = 3000)]
    think_ms: u64,
    /// Bytes of the shared system prompt.
    #[arg(long, default_value_t = 4000)]
    system_bytes: usize,
    /// Bytes of each user message.
    #[arg(long, default_value_t = 2000)]
    user_bytes: usize,
    /// Tokens generated per turn.
    #[arg(long, default_value_t = 32)]
    max_tokens: u32,
    /// Replicas.
    #[arg(long, default_value_t = 4)]
    replicas: usize,
}

/// One turn as measured.
struct Turn {
    ttft: Duration,
    tokens: u32,
}

struct Outcome {
    turns: Vec<Turn>,
    seconds: f64,
    cache_hit: f64,
    decision_p99: String,
    failed: u64,
}

fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut x = *state;
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Text of `n` bytes, unique to `tag`.
fn text(tag: &str, n: usize) -> String {
    let mut s = String::with_capacity(n + tag.len());
    while s.len() < n {
        s.push_str(tag);
        s.push(' ');
    }
    s.truncate(n);
    s
}

#[derive(serde::Serialize)]
struct Msg {
    role: &'static str,
    content: String,
}

#[derive(serde::Serialize)]
struct Chat<'a> {
    model: &'static str,
    messages: &'a [Msg],
    max_tokens: u32,
    stream: bool,
}

/// A keep-alive connection to the proxy.
async fn connect(addr: SocketAddr) -> Option<hyper::client::conn::http1::SendRequest<SimBody>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (send, conn) =
        hyper::client::conn::http1::handshake::<_, SimBody>(hyper_util::rt::TokioIo::new(tcp))
            .await
            .ok()?;
    tokio::spawn(conn);
    Some(send)
}

/// One user's conversations until `end`; the turns started after `from`.
async fn user(id: u32, addr: SocketAddr, a: Args, from: Instant, end: Instant) -> (Vec<Turn>, u64) {
    let mut rng = u64::from(id) * 7919 + 1;
    let mut turns = Vec::new();
    let mut failed = 0;
    let system = text(
        "You are the site's assistant; answer briefly and cite the runbook.",
        a.system_bytes,
    );
    // Users do not all start at once.
    tokio::time::sleep(Duration::from_millis(next(&mut rng) % a.think_ms.max(1))).await;
    let Some(mut send) = connect(addr).await else {
        return (turns, 1);
    };
    let mut conversation = 0u32;
    'outer: while Instant::now() < end {
        conversation += 1;
        let mut messages = vec![Msg {
            role: "system",
            content: system.clone(),
        }];
        for t in 0..a.turns {
            messages.push(Msg {
                role: "user",
                content: text(&format!("u{id}c{conversation}t{t}"), a.user_bytes),
            });
            let body = serde_json::to_vec(&Chat {
                model: "A",
                messages: &messages,
                max_tokens: a.max_tokens,
                stream: true,
            })
            .unwrap_or_default();
            let req = http::Request::post("/v1/chat/completions")
                .header("host", "llm.internal")
                .header("content-type", "application/json")
                .body(SimBody::Full(Some(Bytes::from(body))));
            let Ok(req) = req else { break 'outer };
            let start = Instant::now();
            if send.ready().await.is_err() {
                // The gateway closes a connection idle for longer than its header-read
                // timeout (a long think time): open another, as a client does.
                match connect(addr).await {
                    Some(s) => send = s,
                    None => {
                        failed += 1;
                        break 'outer;
                    }
                }
            }
            let Ok(resp) = send.send_request(req).await else {
                failed += 1;
                break 'outer;
            };
            if !resp.status().is_success() {
                failed += 1;
                let _ = resp.into_body().collect().await;
                continue;
            }
            let mut body = resp.into_body();
            let mut ttft = None;
            let mut tokens = 0;
            while let Some(Ok(f)) = body.frame().await {
                let Ok(d) = f.into_data() else { continue };
                let n = d.windows(12).filter(|w| w == b"\"content\":\"w").count() as u32;
                if n > 0 && ttft.is_none() {
                    ttft = Some(start.elapsed());
                }
                tokens += n;
            }
            if let Some(ttft) = ttft
                && start >= from
                && Instant::now() <= end
            {
                turns.push(Turn { ttft, tokens });
            }
            // The assistant's answer joins the history (its text, as the engine wrote it).
            messages.push(Msg {
                role: "assistant",
                content: (1..=a.max_tokens).map(|i| format!("w{i} ")).collect(),
            });
            let u = (next(&mut rng) % 1_000_000) as f64 / 1_000_000.0;
            let think = -(1.0 - u).ln() * a.think_ms as f64;
            tokio::time::sleep(Duration::from_millis(think as u64)).await;
            if Instant::now() >= end {
                break 'outer;
            }
        }
    }
    (turns, failed)
}

async fn run(a: &Args, strategy: ModelStrategy) -> anyhow::Result<Outcome> {
    let mut sims = Vec::new();
    for _ in 0..a.replicas {
        sims.push(sim::start(SimParams::new(Flavor::Vllm, &["A"]), "127.0.0.1:0".parse()?).await?);
    }
    let endpoints = sims
        .iter()
        .map(|s| conduit_registry::Endpoint::from_socket_addr(s.addr))
        .collect::<Result<Vec<_>, _>>()?;
    let registry = InMemoryRegistry::new();
    let rec = ServiceRecord::new("llm".parse()?, endpoints[0].clone())
        .with_endpoints(endpoints)
        .with_kind(Engine::Vllm, Vec::new())
        .with_tls(false);
    registry.register(rec).await?;
    let mut config = ProxyConfig::default();
    config.llm.strategy = strategy;
    // The proxy on its own runtime and thread, as in a gateway.
    let registry: Arc<dyn conduit_registry::Registry> = Arc::new(registry);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let proxy = std::thread::spawn(move || -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let server = ProxyServer::builder()
                .registry(registry)
                .listen_http("127.0.0.1:0".parse()?)
                .config(config)
                .bind()
                .await?;
            let addr = server.http_addrs().first().copied();
            let _ = bound_tx.send((addr, server.handle()));
            server
                .run(async {
                    let _ = stop_rx.await;
                })
                .await?;
            Ok(())
        })
    });
    let (addr, handle) = bound_rx.await.context("the proxy did not start")?;
    let addr: SocketAddr = addr.context("no HTTP listener")?;
    // Every replica loaded and probed ready.
    let ready_by = Instant::now() + Duration::from_secs(30);
    while handle.upstreams("llm.internal").is_none_or(|ups| {
        ups.iter()
            .any(|u| !u.healthy || u.models.as_ref().is_none_or(|m| !m.ready))
    }) {
        anyhow::ensure!(Instant::now() < ready_by, "the replicas never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let from = Instant::now() + Duration::from_secs(a.warmup);
    let end = from + Duration::from_secs(a.duration);
    let users: Vec<_> = (0..a.users)
        .map(|id| tokio::spawn(user(id, addr, a.clone(), from, end)))
        .collect();
    let mut turns = Vec::new();
    let mut failed = 0;
    for u in users {
        let (t, f) = u.await?;
        turns.extend(t);
        failed += f;
    }
    let (prompt, cached) = sims.iter().fold((0, 0), |(p, c), s| {
        (
            p + s
                .stats
                .prompt_tokens
                .load(std::sync::atomic::Ordering::Relaxed),
            c + s
                .stats
                .cached_tokens
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    });
    let decision_p99 = decision_p99(&handle.prometheus());
    let _ = stop_tx.send(());
    let _ = proxy.join();
    Ok(Outcome {
        turns,
        seconds: a.duration as f64,
        cache_hit: cached as f64 / prompt.max(1) as f64,
        decision_p99,
        failed,
    })
}

/// The bucket holding the 99th percentile of the decision-time histogram (`≤ 0.0001 s`).
fn decision_p99(text: &str) -> String {
    let buckets: Vec<(String, f64)> = text
        .lines()
        .filter(|l| l.starts_with("conduit_llm_decision_seconds_bucket"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?.to_owned();
            let n = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, n))
        })
        .collect();
    let total = buckets.last().map_or(0.0, |b| b.1);
    buckets
        .iter()
        .find(|(_, n)| *n >= 0.99 * total)
        .map_or_else(
            || "?".to_owned(),
            |(le, _)| {
                format!(
                    "≤ {} ms",
                    le.parse::<f64>()
                        .map_or(le.clone(), |s| (s * 1000.0).to_string())
                )
            },
        )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    println!(
        "{} replicas, {} users x {}-turn conversations, system prompt {} B, user messages {} B, {} tokens per answer, think {} ms; {} s measured after {} s",
        a.replicas,
        a.users,
        a.turns,
        a.system_bytes,
        a.user_bytes,
        a.max_tokens,
        a.think_ms,
        a.duration,
        a.warmup
    );
    println!(
        "| strategy | turns/s | tokens/s | TTFT p50 | TTFT p90 | TTFT p99 | prefix-cache hit | decision p99 | failed |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut results = Vec::new();
    for (name, s) in [
        ("p2c", ModelStrategy::PowerOfTwo),
        ("score", ModelStrategy::Score),
    ] {
        let o = run(&a, s).await?;
        let mut ttft: Vec<f64> = o
            .turns
            .iter()
            .map(|t| t.ttft.as_secs_f64() * 1000.0)
            .collect();
        let tokens: u64 = o.turns.iter().map(|t| u64::from(t.tokens)).sum();
        let rate = o.turns.len() as f64 / o.seconds;
        let p90 = percentile(&mut ttft, 0.9);
        println!(
            "| {name} | {rate:.2} | {:.0} | {:.0} ms | {p90:.0} ms | {:.0} ms | {:.1} % | {} | {} |",
            tokens as f64 / o.seconds,
            percentile(&mut ttft, 0.5),
            percentile(&mut ttft, 0.99),
            o.cache_hit * 100.0,
            o.decision_p99,
            o.failed
        );
        results.push((rate, p90));
    }
    if let [(r0, p0), (r1, p1)] = results[..] {
        println!(
            "\np90 time to first token: p2c / score = {:.2}x; throughput: score / p2c = {:.3}x",
            p0 / p1,
            r1 / r0
        );
    }
    Ok(())
}
