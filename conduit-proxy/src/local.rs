//! A site the proxy answers itself, in-process: the gateway's own pages (its dashboard) on
//! the HTTPS listeners, under a name of its own, with the listeners' TLS, limits, access
//! log and counters, and no upstream.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use conduit_registry::DomainName;
use http::{Request, Response};
use hyper::body::Incoming;

/// A local site's response body (any body that cannot fail: a whole page, an event stream).
pub type LocalBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// What a local site's answer is: a future the proxy awaits on the connection's task.
pub type LocalFuture = Pin<Box<dyn Future<Output = Response<LocalBody>> + Send>>;

/// Who sent a request to a local site, as the listener saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalClient {
    /// The address of the connection's peer.
    pub ip: IpAddr,
}

/// A site served by the proxy itself (see [`ProxyHandle::set_local_site`]). A site that
/// answers without reading a request's body hands it to [`discard_body`]: over HTTP/2 an
/// unread body makes the client see a reset stream instead of the answer.
///
/// [`ProxyHandle::set_local_site`]: crate::ProxyHandle::set_local_site
pub trait LocalSite: Send + Sync + std::fmt::Debug + 'static {
    /// Answers one request for the site's name, received over HTTPS.
    fn serve(&self, req: Request<Incoming>, client: LocalClient) -> LocalFuture;
}

/// Reads and discards what is left of a request body answered without being read (at most
/// 8 MiB, for at most 5 s, on its own task), so that the client gets the answer rather than
/// a reset: what the proxy does with every body it refuses.
pub fn discard_body(body: Incoming) {
    crate::request_body::drain(body);
}

/// The local site in force and its name.
#[derive(Debug)]
pub(crate) struct Mounted {
    /// Lower case, no trailing dot.
    pub(crate) host: Box<str>,
    pub(crate) site: Arc<dyn LocalSite>,
}

impl Mounted {
    pub(crate) fn new(name: &DomainName, site: Arc<dyn LocalSite>) -> Self {
        Self {
            host: name
                .as_str()
                .trim_end_matches('.')
                .to_ascii_lowercase()
                .into(),
            site,
        }
    }

    /// Whether `host` (any case, no port) is this site's.
    pub(crate) fn is(&self, host: &str) -> bool {
        self.host.eq_ignore_ascii_case(host)
    }
}
