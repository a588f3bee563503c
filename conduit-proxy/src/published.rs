//! Documents the proxy itself serves on its plain-HTTP listeners, whatever the `Host`
//! (unless the name is a plain-HTTP service, which keeps its own paths): a CA's CRLs at the
//! URLs its certificates name. Replaced atomically; a request reads one version.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::response_body::{ResponseBody, local};

/// One document: its body and media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The `Content-Type`, for example `application/pkix-crl`.
    pub content_type: &'static str,
    /// The body.
    pub body: Bytes,
}

/// The documents by path (`/ca/crl.der`).
#[derive(Debug, Default)]
pub(crate) struct Published {
    docs: ArcSwap<HashMap<String, Document>>,
}

impl Published {
    /// Serves `doc` at `path` from now on (`None`: no longer).
    pub(crate) fn set(&self, path: &str, doc: Option<Document>) {
        self.docs.rcu(|current| {
            let mut next = HashMap::clone(current);
            match &doc {
                Some(d) => next.insert(path.to_owned(), d.clone()),
                None => next.remove(path),
            };
            Arc::new(next)
        });
    }

    /// The answer for `path`, when a document is published there.
    pub(crate) fn answer(&self, method: &Method, path: &str) -> Option<Response<ResponseBody>> {
        let docs = self.docs.load();
        let doc = docs.get(path)?;
        if method != Method::GET && method != Method::HEAD {
            let mut r = local(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{path} is read-only: use GET"),
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Some(r);
        }
        let mut r = Response::new(ResponseBody::full(doc.body.clone()));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(doc.content_type),
        );
        // A CRL changes on every revocation: caches must ask again.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        Some(r)
    }
}
