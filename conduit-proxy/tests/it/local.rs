//! A local site: a name the proxy answers itself (an embedder's own pages), over the HTTPS
//! listener with its certificates; plain HTTP to it redirected; unmounted, the name is
//! routed like any other again.

use std::sync::Arc;

use bytes::Bytes;
use conduit_proxy::{LocalClient, LocalFuture, LocalSite, ProxyConfig};
use conduit_registry::DomainName;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;

use crate::common::*;

/// Answers with the path, the method and who asked (the body unread, discarded).
#[derive(Debug)]
struct Hello;

impl LocalSite for Hello {
    fn serve(&self, req: Request<Incoming>, client: LocalClient) -> LocalFuture {
        let text = format!("{} {} from {}", req.method(), req.uri().path(), client.ip);
        conduit_proxy::discard_body(req.into_body());
        Box::pin(async move { Response::new(Full::new(Bytes::from(text)).boxed()) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_site_is_answered_by_the_proxy_itself() {
    if !have("curl") {
        return;
    }
    let p = Proxy::start(ProxyConfig::default()).await;
    p.certify("conduit.internal").await;
    let name: DomainName = "conduit.internal".parse().unwrap();
    let (code, _, _) = fetch(p.curl("conduit.internal", "/x")).await;
    assert_eq!(code, 404, "nothing is mounted yet");

    p.handle.set_local_site(Some((&name, Arc::new(Hello))));
    let (code, _, body) = fetch(p.curl("conduit.internal", "/x?y=1")).await;
    assert_eq!((code, body.as_str()), (200, "GET /x from 127.0.0.1"));
    let mut post = p.curl("conduit.internal", "/form");
    post.args(["--data", "a=b"]);
    let (code, _, body) = fetch(post).await;
    assert_eq!((code, body.as_str()), (200, "POST /form from 127.0.0.1"));
    // Plain HTTP to the name is sent to HTTPS.
    let mut plain = tokio::process::Command::new("curl");
    plain
        .args(["-sS", "--max-time", "10", "-o", "/dev/null", "-D", "-"])
        .arg(format!("http://127.0.0.1:{}/x", p.http_addr.port()));
    plain.args(["-H", "Host: Conduit.Internal"]);
    let (code, _, head) = fetch(plain).await;
    assert_eq!(code, 308, "{head}");
    let location = format!("location: https://conduit.internal:{}/x", p.addr.port());
    assert!(
        head.lines().any(|l| l.eq_ignore_ascii_case(&location)),
        "{head}"
    );

    // Unmounted: an unknown name again.
    p.handle.set_local_site(None);
    let (code, _, body) = fetch(p.curl("conduit.internal", "/x")).await;
    assert_eq!(code, 404, "{body}");
    assert!(
        body.starts_with("no service is registered for conduit.internal"),
        "{body}"
    );
    p.stop().await;
}
