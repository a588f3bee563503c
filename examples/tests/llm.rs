//! Model servers behind the gateway, with the engine simulator of `conduit_benches::sim`
//! (it speaks vLLM's and Ollama's HTTP APIs; no real engine runs here): two vLLM replicas
//! serving model A (behind an API key the probes send), one Ollama serving B, in one
//! service. Readiness per model, routing by the body's `model`, the union of models,
//! OpenAI-shaped refusals, token streams and a 10 MB body passing through unbuffered.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code driving real processes in real time"
)]

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Site;
use common::llm::{
    AccessLine, ErrorDetail, KEY, ModelList, OpenAiError, connect, frames, post, post_json,
};
use conduit_benches::sim::{self, Flavor, SimParams};
use conduit_test_support::process::{free_port, ok, wait_until};

fn chat(model: &str, max_tokens: u32, stream: bool) -> String {
    format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"hello"}}],"max_tokens":{max_tokens},"stream":{stream}}}"#
    )
}

/// `conduit status`'s line for the upstream on `port`.
fn status_line(site: &Site, port: u16) -> String {
    let out = ok(site.cmd().arg("status").output().unwrap());
    let upstream = format!("http://127.0.0.1:{port}");
    out.lines()
        .find(|l| l.starts_with("  ") && l.split_whitespace().nth(1) == Some(&upstream))
        .unwrap_or("")
        .to_owned()
}

#[test]
fn model_servers_are_ready_per_model_and_routed_by_the_model_asked_for() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut a = SimParams::new(Flavor::Vllm, &["A"]);
    a.api_key = Some(KEY.into());
    let any = "127.0.0.1:0".parse().unwrap();
    let va1 = rt.block_on(sim::start(a.clone(), any)).unwrap();
    let ollama = rt
        .block_on(sim::start(SimParams::new(Flavor::Ollama, &["B"]), any))
        .unwrap();
    let va2_port = free_port();

    let site = Site::new(&format!(
        "[llm]\nprobe_interval = \"200ms\"\nqueue_limit = 1\nprobe_authorization = \"Bearer {KEY}\"\n"
    ));
    ok(site.cmd().arg("setup").output().unwrap());
    let _gw = site.serve();
    let (p1, p2, p3) = (va1.addr.port(), va2_port, ollama.addr.port());
    let out = ok(site
        .cmd()
        .args(["register", "--name", "llm", "--kind", "vllm"])
        .args(["--upstream", &format!("127.0.0.1:{p1}")])
        .args(["--upstream", &format!("127.0.0.1:{p2}")])
        .args(["--upstream", &format!("ollama=127.0.0.1:{p3}")])
        .output()
        .unwrap());
    assert!(
        out.contains(&format!("ollama=http://127.0.0.1:{p3}")),
        "{out}"
    );
    let https = |path: &str, args: &[&str]| {
        let resolve = format!("llm.internal:{}:127.0.0.1", site.https);
        let auth = format!("authorization: Bearer {KEY}");
        let mut all = vec!["--resolve", &resolve[..], "-H", &auth[..]];
        all.extend_from_slice(args);
        site.curl(&all, format!("https://llm.internal:{}{path}", site.https))
    };
    // The first vLLM and the Ollama load in 2 s; the second vLLM is not even up.
    wait_until(Duration::from_secs(15), || {
        status_line(&site, p1).contains("ready: A") && status_line(&site, p3).contains("ready: B")
    });
    assert!(
        status_line(&site, p2).contains("NOT READY"),
        "{}",
        status_line(&site, p2)
    );

    // The second vLLM replica starts loading: /health answers 503, /v1/models already lists A.
    let va2 = rt
        .block_on(sim::start(a, format!("127.0.0.1:{p2}").parse().unwrap()))
        .unwrap();
    wait_until(Duration::from_secs(5), || {
        status_line(&site, p2).contains("loading: /health answered 503")
    });
    let started = Instant::now();
    let mut sent_a = 0;
    while started.elapsed() < Duration::from_millis(1200) {
        let (code, body, _) = https("/v1/chat/completions", &["-d", &chat("A", 2, false)]);
        assert_eq!(code, 200, "{body}");
        assert!(body.contains(r#""content":"w1 w2 ""#), "{body}");
        sent_a += 1;
    }
    assert_eq!(
        va2.stats.total(),
        0,
        "a replica still loading got a request"
    );
    // Once it is ready, both replicas share A.
    wait_until(Duration::from_secs(10), || {
        status_line(&site, p2).contains("ready: A")
    });
    // (Each prompt its own: one prompt would rightly stay on one replica.)
    for i in 0..20 {
        let (code, body, _) = https(
            "/v1/completions",
            &[
                "-d",
                &format!(r#"{{"model":"A","prompt":"p{i}","max_tokens":1}}"#),
            ],
        );
        assert_eq!(code, 200, "{body}");
        sent_a += 1;
    }
    assert!(va2.stats.served("A") > 0, "the second replica never got A");
    // B only on Ollama (its OpenAI path and its own), A never there.
    for path in ["/v1/chat/completions", "/api/chat"] {
        let (code, body, _) = https(path, &["-d", &chat("B", 2, false)]);
        assert_eq!(code, 200, "{path}: {body}");
    }
    let (code, body, _) = https(
        "/api/generate",
        &[
            "-d",
            r#"{"model":"B","prompt":"x","stream":false,"options":{"num_predict":1}}"#,
        ],
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""response":"w1 ""#), "{body}");
    assert_eq!(ollama.stats.served("B"), 3);
    assert_eq!(ollama.stats.served("A"), 0);
    assert_eq!(va1.stats.served("B") + va2.stats.served("B"), 0);
    assert_eq!(va1.stats.served("A") + va2.stats.served("A"), sent_a);
    // Ollama's own API is Ollama's: A (a vLLM model) is not found there.
    let (code, body, _) = https("/api/chat", &["-d", &chat("A", 2, false)]);
    assert_eq!(code, 404, "{body}");

    // The union of the ready upstreams' models; an unknown model in OpenAI's error shape.
    let (code, body, _) = https("/v1/models", &[]);
    assert_eq!(code, 200);
    let list: ModelList = serde_json::from_str(&body).unwrap();
    assert_eq!(list.object, "list");
    let ids: Vec<&str> = list.data.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["A", "B"]);
    // Without the replicas' API key the gateway tells nothing either (as vLLM would).
    let resolve = format!("llm.internal:{}:127.0.0.1", site.https);
    let (code, body, _) = site.curl(
        &["--resolve", &resolve],
        format!("https://llm.internal:{}/v1/models", site.https),
    );
    assert_eq!(code, 401, "{body}");
    let err: OpenAiError = serde_json::from_str(&body).unwrap();
    assert_eq!(err.error.code, "invalid_api_key");
    let (code, body, _) = https("/v1/chat/completions", &["-d", &chat("gpt-9", 2, false)]);
    assert_eq!(code, 404);
    let err: OpenAiError = serde_json::from_str(&body).unwrap();
    assert_eq!(
        err.error,
        ErrorDetail {
            message: "The model `gpt-9` does not exist on llm.internal".into(),
            kind: "invalid_request_error".into(),
            param: Some("model".into()),
            code: "model_not_found".into(),
        }
    );

    let root = site.state.join("tls/root.pem");
    rt.block_on(async {
        // A token stream arrives token by token (40 tokens/s from the engine).
        let mut c = connect(&root, site.https, "llm.internal").await;
        let start = Instant::now();
        let resp = c
            .send_request(post_json(
                "llm.internal",
                "/v1/chat/completions",
                &chat("A", 12, true),
            ))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let got = frames(resp, start).await;
        let tokens: Vec<_> = got
            .iter()
            .filter(|(_, b)| b.windows(7).any(|w| w == b"content"))
            .collect();
        assert!(tokens.len() >= 12, "{} frames with tokens", tokens.len());
        let spread = tokens.last().unwrap().0 - tokens[0].0;
        assert!(
            spread >= Duration::from_millis(200),
            "12 tokens came within {spread:?}: buffered, not streamed"
        );
        let text: Vec<u8> = got.iter().flat_map(|(_, b)| b.to_vec()).collect();
        assert!(text.ends_with(b"data: [DONE]\n\n"));

        // A 10 MB body whose model is in its first bytes: the engine has the first 8 KiB
        // before the client sends the rest, and the whole body arrives unchanged.
        let mut body = br#"{"model":"A","input":""#.to_vec();
        body.resize(10_000_000 - 2, b'x');
        body.extend_from_slice(br#""}"#);
        let before = va1.stats.body_bytes.load(Ordering::Relaxed)
            + va2.stats.body_bytes.load(Ordering::Relaxed);
        let (req, tx) = post("llm.internal", "/v1/embeddings", body.len());
        let mut c = connect(&root, site.https, "llm.internal").await;
        let answer = tokio::spawn(async move { c.send_request(req).await });
        tx.send(Bytes::copy_from_slice(&body[..8192]))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = va1.stats.body_bytes.load(Ordering::Relaxed)
                + va2.stats.body_bytes.load(Ordering::Relaxed);
            if now - before >= 8192 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the engine got {} of the first 8 KiB",
                now - before
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for chunk in body[8192..].chunks(1 << 16) {
            tx.send(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        drop(tx);
        let resp = answer.await.unwrap().unwrap();
        assert_eq!(resp.status(), 200);
        let _ = frames(resp, start).await;
        let digest = Some((body.len(), sim::body_digest(&body)));
        let last = |s: &sim::Sim| *s.stats.last_body.lock().unwrap();
        assert!(
            last(&va1) == digest || last(&va2) == digest,
            "the body changed on the way"
        );

        // Every Ollama slot busy beyond the queue limit (1): 429 with Retry-After, in
        // OpenAI's shape, instead of piling on.
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut c = connect(&root, site.https, "llm.internal").await;
            let resp = c
                .send_request(post_json(
                    "llm.internal",
                    "/api/generate",
                    r#"{"model":"B","prompt":"x","options":{"num_predict":400}}"#,
                ))
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            held.push((c, resp));
        }
        let mut c = connect(&root, site.https, "llm.internal").await;
        let resp = c
            .send_request(post_json(
                "llm.internal",
                "/v1/chat/completions",
                &chat("B", 2, false),
            ))
            .await
            .unwrap();
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()["retry-after"], "1");
        let body: Vec<u8> = frames(resp, start)
            .await
            .into_iter()
            .flat_map(|(_, b)| b.to_vec())
            .collect();
        let err: OpenAiError = serde_json::from_slice(&body).unwrap();
        assert_eq!(err.error.code, "overloaded", "{err:?}");
        assert_eq!(err.error.kind, "rate_limit_error");
        drop(held);
    });

    // A plain OpenAI-compatible server (here Ollama's /v1, which has no /health): ready by
    // its model list alone, since it has no health endpoint to say otherwise.
    ok(site
        .cmd()
        .args(["register", "--name", "chat", "--kind", "openai"])
        .args(["--upstream", &format!("127.0.0.1:{p3}")])
        .output()
        .unwrap());
    wait_until(Duration::from_secs(10), || {
        ok(site.cmd().arg("status").output().unwrap())
            .lines()
            .any(|l| {
                l.trim_start()
                    .starts_with(&format!("openai http://127.0.0.1:{p3} ready: B"))
            })
    });

    // What the gateway shows: status, /metrics, the access log's decisions.
    let line = status_line(&site, p1);
    assert!(
        line.contains("vllm") && line.contains("ready: A") && line.contains("routed"),
        "{line}"
    );
    let metrics = common::metrics(&site);
    for want in [
        format!(
            "conduit_llm_model_ready{{service=\"llm\",upstream=\"http://127.0.0.1:{p3}\",model=\"B\"}} 1"
        ),
        format!(
            "conduit_llm_upstream_ready{{service=\"llm\",upstream=\"http://127.0.0.1:{p2}\",kind=\"vllm\"}} 1"
        ),
        "conduit_llm_refused_total{service=\"llm\",reason=\"unknown_model\"} 2".to_owned(),
        "conduit_llm_refused_total{service=\"llm\",reason=\"busy\"} 1".to_owned(),
        "conduit_llm_score{service=\"llm\"".to_owned(),
    ] {
        assert!(
            metrics.contains(&want),
            "{want} not in /metrics:\n{metrics}"
        );
    }
    wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(site.state.join("access.log"))
            .is_ok_and(|l| l.contains(r#""llm":{"model":"B""#))
    });
    let log = std::fs::read_to_string(site.state.join("access.log")).unwrap();
    let routed = log
        .lines()
        .find(|l| l.contains(r#""path":"/v1/completions""#))
        .unwrap();
    let rec: AccessLine = serde_json::from_str(routed).unwrap();
    let decision = rec.llm.unwrap();
    assert_eq!(decision.model.as_deref(), Some("A"));
    let mut candidates: Vec<&str> = decision
        .scores
        .iter()
        .map(|c| c.upstream.as_str())
        .collect();
    candidates.sort_unstable();
    let mut replicas = [
        format!("http://127.0.0.1:{p1}"),
        format!("http://127.0.0.1:{p2}"),
    ];
    replicas.sort_unstable();
    assert_eq!(candidates, replicas, "{routed}");
    // The request went to the candidate with the lowest score, and each score is at least
    // its load's share less the affinity bonus (8).
    let chosen = rec.upstream.unwrap();
    let best = decision
        .scores
        .iter()
        .map(|c| c.score)
        .fold(f64::INFINITY, f64::min);
    let score_of = |u: &str| {
        decision
            .scores
            .iter()
            .find(|c| c.upstream == u)
            .unwrap()
            .score
    };
    assert_eq!(score_of(&chosen), best, "{routed}");
    for c in &decision.scores {
        let bonus = if decision.affinity.as_deref() == Some(&c.upstream) {
            8.0
        } else {
            0.0
        };
        assert!(c.score >= c.load - bonus, "{routed}");
    }
}
