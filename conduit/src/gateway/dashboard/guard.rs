//! What keeps the dashboard's logins and changes honest: failed logins limited per client
//! address, and every change checked to come from the dashboard's own page (same origin,
//! with the session's CSRF token).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, header};
use tokio::time::Instant;

/// The window failed logins are counted in.
const WINDOW: Duration = Duration::from_secs(60);
/// Client addresses tracked at once (older entries are dropped first).
const MAX_CLIENTS: usize = 16_384;

/// Failed logins per client address in the last minute.
#[derive(Debug)]
pub(super) struct LoginLimiter {
    per_minute: usize,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

/// A login refused before its token is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TooMany {
    /// When the client may try again.
    pub(super) retry_after: Duration,
}

impl LoginLimiter {
    pub(super) fn new(per_minute: u32) -> Self {
        Self {
            per_minute: usize::try_from(per_minute).unwrap_or(usize::MAX).max(1),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `client` may try now.
    pub(super) fn check(&self, client: IpAddr) -> Result<(), TooMany> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(list) = map.get_mut(&client) else {
            return Ok(());
        };
        while list
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            list.pop_front();
        }
        match list.front() {
            Some(oldest) if list.len() >= self.per_minute => Err(TooMany {
                retry_after: WINDOW.saturating_sub(now.duration_since(*oldest)),
            }),
            _ => Ok(()),
        }
    }

    /// Counts a failed login; returns whether this one used up the client's tries (the
    /// one refusal worth its own audit record).
    pub(super) fn fail(&self, client: IpAddr) -> bool {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_CLIENTS && !map.contains_key(&client) {
            map.retain(|_, l| l.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
            if map.len() >= MAX_CLIENTS {
                return false;
            }
        }
        let list = map.entry(client).or_default();
        list.push_back(now);
        while list.len() > self.per_minute {
            list.pop_front();
        }
        list.len() == self.per_minute
    }
}

/// Why a change is refused as not coming from the dashboard's page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum CrossSite {
    /// No `Origin` (every browser sends one with a POST, PUT or DELETE).
    #[error("the request has no Origin header: changes are made from the dashboard's own page")]
    NoOrigin,
    /// Another origin.
    #[error("the request comes from another site (Origin does not match this dashboard)")]
    OtherOrigin,
    /// No CSRF token, or not the session's.
    #[error("the request lacks this session's CSRF token: reload the dashboard")]
    Token,
}

/// The request's `Origin` is this dashboard's: `https://` and the host the request names.
/// Where a browser withholds the origin (`Origin: null`), its `Sec-Fetch-Site:
/// same-origin` (a header no page can set) stands for it.
pub(super) fn same_origin<B>(req: &Request<B>) -> Result<(), CrossSite> {
    let text = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let origin = text(header::ORIGIN).filter(|o| *o != "null");
    let Some(origin) = origin else {
        return match text(HeaderName::from_static("sec-fetch-site")) {
            Some("same-origin") => Ok(()),
            Some(_) => Err(CrossSite::OtherOrigin),
            None => Err(CrossSite::NoOrigin),
        };
    };
    let host = req
        .uri()
        .authority()
        .map(http::uri::Authority::as_str)
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
        })
        .ok_or(CrossSite::OtherOrigin)?;
    let theirs = origin
        .strip_prefix("https://")
        .ok_or(CrossSite::OtherOrigin)?;
    let default_port = |h: &str| {
        h.strip_suffix(":443")
            .map(str::to_owned)
            .unwrap_or_else(|| h.to_owned())
    };
    if default_port(theirs).eq_ignore_ascii_case(&default_port(host)) {
        Ok(())
    } else {
        Err(CrossSite::OtherOrigin)
    }
}

/// The request is a change from the dashboard's page for this session: same origin, and
/// its `X-CSRF-Token` (or `form_token`, from a form) is the session's.
pub(super) fn check_change<B>(
    req: &Request<B>,
    csrf: &str,
    form_token: Option<&str>,
) -> Result<(), CrossSite> {
    same_origin(req)?;
    let given = req
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .or(form_token)
        .ok_or(CrossSite::Token)?;
    if crate::tokens::same(given, csrf) {
        Ok(())
    } else {
        Err(CrossSite::Token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(origin: Option<&str>, host: &str) -> Request<()> {
        let mut b = Request::builder().method("POST").header("host", host);
        if let Some(o) = origin {
            b = b.header("origin", o);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn only_the_dashboards_own_origin_may_change_things() {
        let host = "conduit.internal:8443";
        assert_eq!(
            same_origin(&req(Some("https://conduit.internal:8443"), host)),
            Ok(())
        );
        assert_eq!(
            same_origin(&req(
                Some("https://conduit.internal"),
                "conduit.internal:443"
            )),
            Ok(())
        );
        assert_eq!(
            same_origin(&req(Some("https://evil.example"), host)),
            Err(CrossSite::OtherOrigin)
        );
        assert_eq!(
            same_origin(&req(Some("http://conduit.internal:8443"), host)),
            Err(CrossSite::OtherOrigin)
        );
        assert_eq!(same_origin(&req(None, host)), Err(CrossSite::NoOrigin));
        let mut withheld = req(Some("null"), host);
        assert_eq!(same_origin(&withheld), Err(CrossSite::NoOrigin));
        withheld
            .headers_mut()
            .insert("sec-fetch-site", "same-origin".parse().unwrap());
        assert_eq!(same_origin(&withheld), Ok(()));
        withheld
            .headers_mut()
            .insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert_eq!(same_origin(&withheld), Err(CrossSite::OtherOrigin));
        let mut r = req(Some("https://conduit.internal:8443"), host);
        assert_eq!(check_change(&r, "t0k", None), Err(CrossSite::Token));
        assert_eq!(check_change(&r, "t0k", Some("t0k")), Ok(()));
        r.headers_mut()
            .insert("x-csrf-token", "bad".parse().unwrap());
        assert_eq!(check_change(&r, "t0k", None), Err(CrossSite::Token));
    }

    #[tokio::test(start_paused = true)]
    async fn failed_logins_are_limited_per_address_for_a_minute() {
        let l = LoginLimiter::new(3);
        let a: IpAddr = "10.8.0.2".parse().unwrap();
        let b: IpAddr = "10.8.0.3".parse().unwrap();
        assert_eq!([l.fail(a), l.fail(a), l.fail(a)], [false, false, true]);
        let refused = l.check(a).unwrap_err();
        assert_eq!(refused.retry_after, WINDOW);
        assert_eq!(l.check(b), Ok(()), "another address is not affected");
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(l.check(a).unwrap_err().retry_after, Duration::from_secs(30));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(l.check(a), Ok(()));
    }
}
