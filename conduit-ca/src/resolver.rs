//! [`CertResolver`]: SNI → certificate for rustls, swapped atomically.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::{CaError, IssuedCert};

/// Shared keys: the copy each change makes is of pointers, not of every name.
type Map = HashMap<Arc<str>, Arc<CertifiedKey>>;

/// A `rustls::server::ResolvesServerCert` backed by a map SNI name → certificate that is
/// replaced as a whole on every change: a handshake sees the old map or the new one, a renewed
/// or rotated certificate is served from the next handshake on, and nothing restarts.
///
/// Names are matched case-insensitively; `*.zone` entries serve one label below the zone.
///
/// A client that sends no SNI (one that reaches the server by address, `https://10.8.0.1/`)
/// gets what is served for the name set with [`CertResolver::set_no_sni`], if any.
#[derive(Default)]
pub struct CertResolver {
    map: RwLock<Arc<Map>>,
    no_sni: RwLock<Option<Arc<str>>>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver")
            .field("names", &self.snapshot().len())
            .finish()
    }
}

/// Builds a rustls `CertifiedKey` from an issued PEM chain and key.
///
/// # Errors
/// [`CaError::Pem`] naming what could not be read.
pub fn certified_key(cert: &IssuedCert) -> Result<Arc<CertifiedKey>, CaError> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| CaError::Pem {
                what: "certificate chain",
                reason: e.to_string(),
            })?;
    if chain.is_empty() {
        return Err(CaError::Pem {
            what: "certificate chain",
            reason: "no certificate".to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).map_err(|e| CaError::Pem {
        what: "private key",
        reason: e.to_string(),
    })?;
    let signer =
        rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).map_err(|e| CaError::Pem {
            what: "private key",
            reason: e.to_string(),
        })?;
    Ok(Arc::new(CertifiedKey::new(chain, signer)))
}

impl CertResolver {
    /// An empty resolver.
    pub fn new() -> Self {
        Self::default()
    }

    fn snapshot(&self) -> Arc<Map> {
        Arc::clone(&self.map.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn update(&self, f: impl FnOnce(&mut Map)) {
        let mut guard = self.map.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = Map::clone(&guard);
        f(&mut next);
        *guard = Arc::new(next);
    }

    /// Serves `key` for each of `names` (replacing what they served before).
    pub fn install(&self, names: &[String], key: Arc<CertifiedKey>) {
        self.update(|m| {
            for n in names {
                m.insert(Arc::from(n.to_ascii_lowercase()), Arc::clone(&key));
            }
        });
    }

    /// Replaces everything served in one step (start-up, or a full reload): one map build for
    /// any number of names, where `install` per name would copy the map each time.
    pub fn replace_all(&self, entries: impl IntoIterator<Item = (String, Arc<CertifiedKey>)>) {
        let next: Map = entries
            .into_iter()
            .map(|(n, k)| (Arc::from(n.to_ascii_lowercase()), k))
            .collect();
        *self.map.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
    }

    /// Stops serving `name`.
    pub fn remove(&self, name: &str) {
        self.update(|m| {
            m.remove(name.to_ascii_lowercase().as_str());
        });
    }

    /// The certificate served for `sni` (exact name, then a `*.` entry one label up).
    pub fn lookup(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        let guard = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let find = |k: &str| guard.get(k).cloned();
        if sni.bytes().any(|b| b.is_ascii_uppercase()) {
            let lower = sni.to_ascii_lowercase();
            return find(&lower).or_else(|| wildcard(&lower).and_then(|w| find(&w)));
        }
        find(sni).or_else(|| wildcard(sni).and_then(|w| find(&w)))
    }

    /// Serves what `name` serves (an address certificate's IP, `10.8.0.1`) to clients
    /// that send no SNI; `None`: they get no certificate (the handshake fails).
    pub fn set_no_sni(&self, name: Option<&str>) {
        *self.no_sni.write().unwrap_or_else(PoisonError::into_inner) =
            name.map(|n| Arc::from(n.to_ascii_lowercase()));
    }

    /// How many names are served.
    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    /// Whether no name is served.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn wildcard(name: &str) -> Option<String> {
    name.split_once('.').map(|(_, rest)| format!("*.{rest}"))
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match hello.server_name() {
            Some(sni) => self.lookup(sni),
            None => {
                let name = self
                    .no_sni
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()?;
                self.lookup(&name)
            }
        }
    }
}
