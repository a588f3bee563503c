//! The dashboard's pages: the login form, the application shell (server-rendered, the
//! views filled in by the embedded script from the admin API), and the embedded assets.
//! Every answer carries a strict Content-Security-Policy: nothing but this origin's own
//! script, styles and API, and no framing.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};

use crate::gateway::admin::Body;

/// The embedded assets by path: the views, the page's script and the styles (no build
/// step, no CDN).
pub(super) const ASSETS: [(&str, &str, &str); 3] = [
    (
        "/assets/views.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/views.js"),
    ),
    (
        "/assets/app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "/assets/app.css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    ),
];

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// `text` with `&<>"'` escaped for HTML text and attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A response with the dashboard's security headers.
pub(super) fn page(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// An embedded asset, revalidated by its ETag (the binary's content hash).
pub(super) fn asset(
    content_type: &'static str,
    text: &'static str,
    etag: &str,
    if_none_match: Option<&str>,
) -> Response<Body> {
    let fresh = if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut r = if fresh {
        page(StatusCode::NOT_MODIFIED, content_type, Bytes::new())
    } else {
        page(
            StatusCode::OK,
            content_type,
            Bytes::from_static(text.as_bytes()),
        )
    };
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    r
}

/// `"HASH"`: the ETag of an embedded asset (the first 64 bits of its SHA-256).
pub(super) fn etag_of(text: &str) -> String {
    let hex = crate::tokens::hash_of(text);
    format!("\"{}\"", hex.get(..16).unwrap_or(&hex))
}

/// The login form; `problem` says why the last try failed.
pub(super) fn login(zone: &str, problem: Option<&str>) -> String {
    let problem = problem.map_or_else(String::new, |p| {
        format!(
            r#"<p class="problem" role="alert" id="login-problem">{}</p>"#,
            escape(p)
        )
    });
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Conduit · log in</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/assets/app.css"></head>
<body class="login"><main id="main">
<form method="post" action="/login" class="card login-card" aria-labelledby="login-title">
<h1 id="login-title">Conduit <span class="muted">{zone}</span></h1>
<p>Log in with an admin API token (<code>conduit token add NAME</code> makes one; <code>--read-only</code> for one that can only look).</p>
{problem}<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus spellcheck="false">
<button type="submit">Log in</button>
</form></main></body></html>
"##,
        zone = escape(zone)
    )
}

/// The application shell for a logged-in session.
pub(super) fn shell(zone: &str, user: &str, admin: bool, csrf: &str) -> String {
    let scope = if admin { "admin" } else { "read" };
    let views = [
        ("dashboard", "Dashboard"),
        ("services", "Services"),
        ("dns", "DNS"),
        ("tls", "TLS"),
        ("servers", "Servers"),
        ("routing", "Routing"),
        ("audit", "Audit"),
        ("events", "Events"),
    ];
    let mut nav = String::new();
    let mut sections = String::new();
    for (i, (id, label)) in views.iter().enumerate() {
        nav.push_str(&format!(
            r##"<a href="#{id}" id="nav-{id}" data-view="{id}"><kbd>{n}</kbd> {label}</a>"##,
            n = i + 1
        ));
        sections.push_str(&format!(
            r#"<section id="view-{id}" class="view" aria-labelledby="h-{id}" hidden><h2 id="h-{id}">{label}</h2><div class="body" aria-live="polite"></div></section>"#
        ));
    }
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{csrf}">
<title>Conduit · {zone}</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/assets/app.css"><script src="/assets/views.js" defer></script><script src="/assets/app.js" defer></script></head>
<body data-user="{user}" data-scope="{scope}" data-zone="{zone}">
<a class="skip" href="#main">Skip to the view</a>
<header class="top"><span class="brand">Conduit <span class="muted">{zone}</span></span>
<span id="live" class="live" role="status" aria-live="polite">connecting…</span>
<span class="who">{user} <span class="tag">{scope}</span></span>
<form method="post" action="/logout" class="logout"><input type="hidden" name="csrf" value="{csrf}"><button type="submit">Log out</button></form>
</header>
<div id="banner" class="banner" role="alert" hidden></div>
<nav class="views" aria-label="Views">{nav}</nav>
<main id="main" tabindex="-1">{sections}</main>
<div id="panel" class="panel" role="dialog" aria-modal="true" aria-labelledby="panel-title" hidden><div class="panel-inner"><h2 id="panel-title"></h2><div class="panel-body"></div><button type="button" class="close" data-close>Close (Esc)</button></div></div>
</body></html>
"##,
        csrf = escape(csrf),
        zone = escape(zone),
        user = escape(user),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_is_escaped() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let html = shell("internal", "token:<b>", false, "c");
        assert!(html.contains("token:&lt;b&gt;"), "{html}");
        assert!(!html.contains("token:<b>"));
    }

    #[test]
    fn an_unchanged_asset_is_not_sent_again() {
        let (_, kind, text) = ASSETS[0];
        let etag = etag_of(text);
        let r = asset(kind, text, &etag, Some(&etag));
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        let r = asset(kind, text, &etag, Some("\"other\""));
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::ETAG], etag.as_str());
    }
}
