//! Request heads: the host a request is for, its size, and the head the upstream gets
//! (hop-by-hop headers removed, `Host` and the forwarding headers set by the gateway).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Uri, Version};

use crate::routes::Route;
use crate::shared::ConnInfo;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// One authority (`host[:port]`) as a host name: port and trailing dot removed; `None` when
/// it is not a plain host (user info, a bad port, characters no host name has).
fn host_of(raw: &str) -> Option<&str> {
    if raw.contains('@') {
        return None;
    }
    let host = if let Some(rest) = raw.strip_prefix('[') {
        rest.split_once(']')?.0
    } else {
        match raw.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return None,
            None => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'));
    valid.then_some(host)
}

/// The request's host, or why there is no usable one. There is at most one `Host` and no
/// user info. HTTP/2: `:authority` and `host` must not disagree (RFC 9113 §8.3.1, a
/// malformed request). HTTP/1.1 absolute form: the target's authority wins and `Host` is
/// ignored (RFC 9112 §3.2.2).
pub(crate) fn routed_host<B>(req: &Request<B>) -> Result<&str, &'static str> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let header_host = hosts.next();
    if hosts.next().is_some() {
        return Err("more than one Host header");
    }
    let header_host = match header_host {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(host_of)
                .ok_or("invalid Host header")?,
        ),
        None => None,
    };
    match (req.uri().authority(), header_host) {
        (Some(a), h) => {
            let target = host_of(a.as_str()).ok_or("invalid request target")?;
            if req.version() == Version::HTTP_2
                && h.is_some_and(|h| !h.eq_ignore_ascii_case(target))
            {
                return Err("host and :authority name different hosts");
            }
            Ok(target)
        }
        (None, Some(h)) => Ok(h),
        (None, None) => Err("missing Host"),
    }
}

/// The request's host when it has a usable one (see [`routed_host`]).
pub(crate) fn request_host<B>(req: &Request<B>) -> Option<&str> {
    routed_host(req).ok()
}

/// The size of an HTTP/1.x request head as sent: request line and header lines.
pub(crate) fn head_size<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(1, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.scheme_str().map_or(0, |s| s.len() + 3);
    // "METHOD TARGET HTTP/1.1\r\n"
    let line = req.method().as_str().len() + target + 11;
    req.headers()
        .iter()
        .fold(line + 2, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

pub(crate) fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Always hop-by-hop (RFC 9110 §7.6.1, and the legacy `Keep-Alive` and `Proxy-Connection`),
/// whatever `Connection` lists; `TE` is kept when it is only `trailers`.
const HOP_BY_HOP: [HeaderName; 7] = [
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TRAILER,
];

/// Removes hop-by-hop headers: `Connection` and what it lists, and the fixed set. One pass
/// over the names first: most heads carry none of them but `Connection` (which an upstream's
/// keep-alive response always has), and a removal of an absent name costs a lookup each.
pub(crate) fn strip_hop_by_hop(h: &mut HeaderMap) {
    let (mut connection, mut fixed) = (false, false);
    for name in h.keys() {
        if *name == header::CONNECTION {
            connection = true;
        } else if *name == header::TE || HOP_BY_HOP.contains(name) {
            fixed = true;
        }
    }
    if connection {
        // The names it lists, removed as written (a name that is not one is no header);
        // no copy of the list beyond the first value's, which is the usual one.
        let first = h.get(header::CONNECTION).cloned();
        let more: Vec<HeaderValue> = h
            .get_all(header::CONNECTION)
            .iter()
            .skip(1)
            .cloned()
            .collect();
        for v in first.iter().chain(&more) {
            for t in v.to_str().unwrap_or("").split(',') {
                h.remove(t.trim());
            }
        }
        h.remove(header::CONNECTION);
    }
    if fixed {
        for name in HOP_BY_HOP {
            h.remove(name);
        }
        if let Some(te) = h.get(header::TE)
            && !te.as_bytes().eq_ignore_ascii_case(b"trailers")
        {
            h.remove(header::TE);
        }
    }
}

/// The request head as the upstream sees it: `Host` and `X-Forwarded-Host` are the name the
/// route matched (never the client's own value, never stripped through `Connection`), and
/// the client's address is told in `X-Forwarded-For`, `X-Real-IP` and `Forwarded`; what a
/// client sent in those is dropped, unless it is a trusted proxy (then its
/// `X-Forwarded-For` is kept and ours appended).
pub(crate) fn upstream_headers(h: &mut HeaderMap, c: &ConnInfo, route: &Route) {
    strip_hop_by_hop(h);
    let host = match c.port {
        None => route.host_header.clone(),
        Some(port) => host_on_port(route, port),
    };
    h.insert(X_FORWARDED_HOST, host.clone());
    h.insert(header::HOST, host);
    let xff = match h.get(X_FORWARDED_FOR).map(HeaderValue::as_bytes) {
        Some(prev) if c.trusted && !prev.is_empty() => {
            let mut v = Vec::with_capacity(prev.len() + 2 + c.client_ip_header.len());
            v.extend_from_slice(prev);
            v.extend_from_slice(b", ");
            v.extend_from_slice(c.client_ip_header.as_bytes());
            HeaderValue::from_bytes(&v).unwrap_or_else(|_| c.client_ip_header.clone())
        }
        _ => c.client_ip_header.clone(),
    };
    h.insert(X_FORWARDED_FOR, xff);
    if !(c.trusted && h.contains_key(X_REAL_IP)) {
        h.insert(X_REAL_IP, c.client_ip_header.clone());
    }
    if !(c.trusted && h.contains_key(header::FORWARDED)) {
        h.insert(header::FORWARDED, c.forwarded_header.clone());
    }
    h.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if c.https { "https" } else { "http" }),
    );
}

/// `Host` as upstreams get it for a request on listener `port` (not the scheme's default):
/// `DOMAIN:PORT`, kept on the route for the first port asked.
fn host_on_port(route: &Route, port: u16) -> HeaderValue {
    if let Some((p, v)) = route.host_port.get()
        && *p == port
    {
        return v.clone();
    }
    let v = HeaderValue::from_str(&format!("{}:{port}", route.domain))
        .unwrap_or_else(|_| route.host_header.clone());
    let _ = route.host_port.set((port, v.clone()));
    v
}

/// The request target as the upstream sees it (origin form: path and query).
pub(crate) fn origin_form(uri: &Uri) -> Uri {
    uri.path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()))
}

pub(crate) fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Whether the protocol a request asks to upgrade to is one the configuration allows
/// (`websocket` by default). Others are not tunnelled: the request goes on as a plain one,
/// its `Upgrade` header removed (RFC 9110 lets a server ignore an upgrade).
pub(crate) fn upgrade_allowed<B>(req: &Request<B>, allowed: &[String]) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',').all(|p| {
                let name = p.trim().split('/').next().unwrap_or("");
                allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
            })
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::routes::RouteTable;

    #[test]
    fn host_forms() {
        let r = |h: &str| Request::builder().header("host", h).body(()).unwrap();
        assert_eq!(request_host(&r("svc.internal")), Some("svc.internal"));
        assert_eq!(request_host(&r("svc.internal:8443")), Some("svc.internal"));
        assert_eq!(request_host(&r("svc.internal.")), Some("svc.internal"));
        assert_eq!(request_host(&r("[::1]:443")), Some("::1"));
        assert_eq!(request_host(&r("svc:abc")), None);
        assert_eq!(request_host(&r("")), None);
        assert_eq!(request_host(&r("a b")), None);
        assert_eq!(request_host(&r("a/b")), None);
        assert_eq!(
            routed_host(&r("evil@svc.internal")),
            Err("invalid Host header")
        );
        let req = |uri: &str, hosts: &[&str]| {
            let mut b = Request::builder().uri(uri);
            for h in hosts {
                b = b.header("host", *h);
            }
            b.body(()).unwrap()
        };
        // absolute form / :authority and Host must agree (case and port aside)
        assert_eq!(
            routed_host(&req("https://Svc.Internal/x", &["svc.internal:443"])),
            Ok("Svc.Internal")
        );
        // HTTP/1.1 absolute form: the target wins, Host is ignored
        assert_eq!(
            routed_host(&req("https://svc.internal/x", &["evil.example"])),
            Ok("svc.internal")
        );
        // HTTP/2: :authority and host must agree
        let mut h2 = req("https://svc.internal/x", &["evil.example"]);
        *h2.version_mut() = Version::HTTP_2;
        assert_eq!(
            routed_host(&h2),
            Err("host and :authority name different hosts")
        );
        assert_eq!(
            routed_host(&req("https://svc.internal/x", &[])),
            Ok("svc.internal")
        );
        assert_eq!(
            routed_host(&req("https://u@svc.internal/x", &[])),
            Err("invalid request target")
        );
        assert_eq!(
            routed_host(&req("/x", &["svc.internal", "svc.internal"])),
            Err("more than one Host header")
        );
        assert_eq!(routed_host(&req("/x", &[])), Err("missing Host"));
    }

    #[test]
    fn hop_by_hop_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(h.contains_key("te") && h.contains_key("x-kept"));
        // Several `Connection` values, names in any case, tokens that are no header name.
        let mut h = HeaderMap::new();
        h.append("connection", HeaderValue::from_static("X-One , close"));
        h.append(
            "connection",
            HeaderValue::from_static("bad name, a/b,,x-two"),
        );
        for n in ["x-one", "x-two", "close", "upgrade", "x-kept"] {
            h.insert(n, HeaderValue::from_static("1"));
        }
        h.insert("te", HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-kept"], "{h:?}");
        // Only a fixed one, and none at all.
        let mut h = HeaderMap::new();
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-kept"]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }

    fn route(domain: &str) -> Arc<Route> {
        let rec = conduit_registry::ServiceRecord::new(
            domain.split('.').next().unwrap().parse().unwrap(),
            "10.0.0.1:80".parse().unwrap(),
        );
        let t = RouteTable::build(
            &RouteTable::default(),
            &[Arc::new(rec)],
            crate::routes::NewBackend::healthy(true),
            |_| None,
            |_, _| true,
        );
        Arc::clone(t.get(domain).unwrap())
    }

    #[test]
    fn forwarded_headers() {
        let c = ConnInfo::new(
            "::ffff:10.8.0.5".parse().unwrap(),
            Some("svc.internal"),
            true,
        );
        let r = route("svc.internal");
        let client_says = || {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", HeaderValue::from_static("192.0.2.1"));
            h.insert("x-real-ip", HeaderValue::from_static("192.0.2.1"));
            h.insert("forwarded", HeaderValue::from_static("for=192.0.2.1"));
            h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
            h.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
            h.insert("host", HeaderValue::from_static("evil.example"));
            h.insert(
                "connection",
                HeaderValue::from_static("host, x-forwarded-for"),
            );
            h
        };
        // an ordinary client: its own values are replaced, Host is the routed name
        let mut h = client_says();
        upstream_headers(&mut h, &c, &r);
        assert_eq!(h["x-forwarded-for"], "10.8.0.5");
        assert_eq!(h["x-real-ip"], "10.8.0.5");
        assert_eq!(h["forwarded"], "for=10.8.0.5;proto=https");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["host"], "svc.internal");
        assert_eq!(h["x-forwarded-host"], "svc.internal");
        assert_eq!(h.get_all("host").iter().count(), 1);
        // a trusted proxy in front: its chain is kept and extended
        let trusted = ConnInfo::new("10.8.0.5".parse().unwrap(), None, true)
            .trusting(&[crate::Cidr::new("10.8.0.0".parse().unwrap(), 24).unwrap()]);
        let mut h = client_says();
        h.remove("connection");
        upstream_headers(&mut h, &trusted, &r);
        assert_eq!(h["x-forwarded-for"], "192.0.2.1, 10.8.0.5");
        assert_eq!(h["x-real-ip"], "192.0.2.1");
        assert_eq!(h["forwarded"], "for=192.0.2.1");
        assert_eq!(h["host"], "svc.internal");
        let v6 = ConnInfo::new("fd00::5".parse().unwrap(), None, false);
        assert_eq!(v6.forwarded_header, "for=\"[fd00::5]\";proto=http");
    }

    #[test]
    fn host_carries_the_listener_port_with_or_without_sni() {
        let r = route("svc.internal");
        let host_on = |sni: Option<&str>, port: u16| {
            let c = ConnInfo::new("10.8.0.5".parse().unwrap(), sni, true).on_port(port);
            let mut h = HeaderMap::new();
            upstream_headers(&mut h, &c, &r);
            assert_eq!(h["host"], h["x-forwarded-host"]);
            h["host"].clone()
        };
        assert_eq!(host_on(None, 443), "svc.internal");
        // The route's own DOMAIN:PORT, with SNI or without (a client that connected by
        // address): kept for the first port, built afresh for another.
        for _ in 0..2 {
            assert_eq!(host_on(None, 8443), "svc.internal:8443");
            assert_eq!(host_on(None, 9443), "svc.internal:9443");
        }
        assert_eq!(host_on(Some("svc.internal"), 8443), "svc.internal:8443");
    }
}
