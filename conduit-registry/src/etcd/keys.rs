//! The key layout under a site's prefix `P`:
//!
//! - `P/revision`: the registry revision, rewritten by every change (the compare-and-swap
//!   point: a change commits only if it is still the revision the writer read);
//! - `P/records/NNNNNNNNNNNNNNNNNNNN`: one record, keyed by its creation revision (20 digits,
//!   so keys sort in creation order); a deregistration rewrites it, nothing is deleted;
//! - `P/policy`: the access policy (peers and grants) with its own revision;
//! - `P/checkpoints/KEY`: the latest audit checkpoint of the gateway whose seal key is `KEY`
//!   (hex), for the others to witness.

use super::wire::{b64, prefix_end};

/// The keys of one site.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

/// What a key under the prefix holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// The revision counter.
    Counter,
    /// A record.
    Record,
    /// The access policy.
    Policy,
    /// A gateway's latest audit checkpoint, by its seal key.
    Checkpoint(String),
    /// Something this build does not read (a later version's, or another tool's).
    Other,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// Every key of the site: `(key, range_end)` in base64.
    pub(crate) fn all(&self) -> (String, String) {
        let p = format!("{}/", self.prefix);
        (b64(p.as_bytes()), b64(&prefix_end(p.as_bytes())))
    }

    pub(crate) fn counter(&self) -> String {
        b64(format!("{}/revision", self.prefix).as_bytes())
    }

    pub(crate) fn record(&self, create_revision: u64) -> String {
        b64(format!("{}/records/{create_revision:020}", self.prefix).as_bytes())
    }

    pub(crate) fn checkpoint(&self, signer: &str) -> String {
        b64(format!("{}/checkpoints/{signer}", self.prefix).as_bytes())
    }

    pub(crate) fn policy(&self) -> String {
        b64(format!("{}/policy", self.prefix).as_bytes())
    }

    /// What the (decoded) key holds.
    pub(crate) fn kind(&self, key: &[u8]) -> KeyKind {
        let Some(rest) = key
            .strip_prefix(self.prefix.as_bytes())
            .and_then(|r| r.strip_prefix(b"/"))
        else {
            return KeyKind::Other;
        };
        match rest {
            b"revision" => KeyKind::Counter,
            b"policy" => KeyKind::Policy,
            r if r.starts_with(b"records/") => KeyKind::Record,
            r if r.starts_with(b"checkpoints/") => {
                KeyKind::Checkpoint(String::from_utf8_lossy(&r[12..]).into_owned())
            }
            _ => KeyKind::Other,
        }
    }
}
