//! [`Snapshot`]: everything a registry holds, as one value a gateway can keep on disk and
//! start from when its shared store is unreachable (its last-known-good).

use serde::{Deserialize, Serialize};

use crate::access::StoredPolicy;
use crate::{Revision, ServiceRecord};

/// A registry's records (history included), its access policy and the revision of the
/// shared store they were read at. The caller signs and stores it; the registry only
/// produces and accepts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[non_exhaustive]
pub struct Snapshot {
    /// The registry revision.
    pub revision: Revision,
    /// Every record, in creation order.
    pub records: Vec<ServiceRecord>,
    /// The access policy.
    #[serde(default)]
    pub policy: StoredPolicy,
    /// The store's own revision these were read at (etcd's), where changes resume from.
    #[serde(default)]
    pub store_revision: u64,
}
