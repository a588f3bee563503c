//! What several process-driving suites share.

use std::path::Path;

use conduit::registry::{Endpoint, FileRegistry, Registry as _, ServiceRecord};

/// Registers `name` → `upstream` straight into the state directory's `services.json`, the
/// way another process might write it: no command, no SSRF guard, no audit record.
pub(crate) fn write_behind_the_back(dir: &Path, name: &str, upstream: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let registry = FileRegistry::open(dir).unwrap();
        let upstream: Endpoint = upstream.parse().unwrap();
        registry
            .register(ServiceRecord::new(name.parse().unwrap(), upstream))
            .await
            .unwrap();
    });
}
