//! The on-disk schema of `services.json`: version 2 (the records with their revisions),
//! and version 1 (the original tool's file) read and converted; any other version or a
//! malformed file is an error naming the file and the problem, never an empty registry.

use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

use serde::Deserialize;
#[cfg(test)]
use serde::Serialize;

use super::SCHEMA_VERSION;
use crate::registry::Clock;
use crate::table::Table;
use crate::{
    DomainName, Endpoint, HealthCheck, RegistryError, Revision, Scheme, ServiceName, ServiceRecord,
    Timestamp,
};

/// The file as serde would write it whole: the reference [`super::encode`] is tested
/// against (it writes the same bytes from each record's kept part).
#[cfg(test)]
#[derive(Serialize)]
pub(super) struct FileOut<'a> {
    pub(super) version: u64,
    pub(super) revision: Revision,
    pub(super) services: Vec<&'a ServiceRecord>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileV2 {
    #[allow(dead_code, reason = "checked through VersionProbe")]
    pub(super) version: u64,
    pub(super) revision: Revision,
    pub(super) services: Vec<ServiceRecord>,
}

#[derive(Deserialize)]
struct VersionProbe {
    version: Option<u64>,
}

/// The original tool's file (`{"version": 1, "services": [...]}`, written by jq).
#[derive(Deserialize)]
struct FileV1 {
    #[serde(default)]
    services: Vec<EntryV1>,
}

#[derive(Deserialize)]
struct EntryV1 {
    name: String,
    host: String,
    port: serde_json::Value,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    health_path: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    registered_at: Option<String>,
    #[serde(default)]
    deregistered_at: Option<String>,
    // health_status and last_health_check are runtime state: the proxy owns health now.
}

pub(super) fn corrupt(path: &Path, reason: impl Into<String>) -> RegistryError {
    RegistryError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads and validates the file; `None` when it does not exist.
pub(super) fn read_file(
    path: &Path,
    zone: &DomainName,
    clock: &Clock,
) -> Result<Option<(Table, u64)>, RegistryError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RegistryError::io("read", path, e)),
    };
    parse(path, &bytes, zone, clock).map(Some)
}

pub(super) fn parse(
    path: &Path,
    bytes: &[u8],
    zone: &DomainName,
    clock: &Clock,
) -> Result<(Table, u64), RegistryError> {
    let probe: VersionProbe = serde_json::from_slice(bytes)
        .map_err(|e| corrupt(path, format!("not a registry JSON object: {e}")))?;
    match probe.version.unwrap_or(1) {
        1 => {
            let v1: FileV1 = serde_json::from_slice(bytes)
                .map_err(|e| corrupt(path, format!("version 1: {e}")))?;
            let table = import_v1(v1, zone, clock).map_err(|r| corrupt(path, r))?;
            Ok((table, 1))
        }
        SCHEMA_VERSION => {
            let v2: FileV2 =
                serde_json::from_slice(bytes).map_err(|e| corrupt(path, e.to_string()))?;
            let table =
                Table::from_records(v2.revision, v2.services).map_err(|r| corrupt(path, r))?;
            Ok((table, SCHEMA_VERSION))
        }
        version => Err(RegistryError::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
        }),
    }
}

fn import_v1(v1: FileV1, zone: &DomainName, clock: &Clock) -> Result<Table, String> {
    let mut records = Vec::with_capacity(v1.services.len());
    for (i, e) in v1.services.into_iter().enumerate() {
        let at =
            |what: &str, err: &dyn fmt::Display| format!("entry {i} ({:?}): {what}: {err}", e.name);
        let name: ServiceName = e.name.parse().map_err(|err| at("name", &err))?;
        let port = match &e.port {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
        .ok_or_else(|| at("port", &format!("{} is not 1..=65535", e.port)))?;
        let scheme: Scheme = e
            .protocol
            .as_deref()
            .unwrap_or("http")
            .parse()
            .map_err(|err| at("protocol", &err))?;
        let endpoint = Endpoint::new(
            scheme,
            e.host.parse().map_err(|err| at("host", &err))?,
            port,
        )
        .map_err(|err| at("port", &err))?;
        let domain = zone.child(&name).map_err(|err| at("domain", &err))?;
        let ts = |s: &Option<String>| s.as_deref().map(Timestamp::parse).transpose();
        let registered = ts(&e.registered_at)
            .map_err(|err| at("registered_at", &err))?
            .unwrap_or_else(|| clock.now());
        let deregistered = ts(&e.deregistered_at).map_err(|err| at("deregistered_at", &err))?;
        let active = match e.status.as_deref().unwrap_or("active") {
            "active" => true,
            "inactive" => false,
            other => {
                return Err(at(
                    "status",
                    &format!("{other:?} is neither active nor inactive"),
                ));
            }
        };
        let rev = Revision(i as u64 + 1);
        let mut rec = ServiceRecord::new(name, endpoint)
            .with_domain(domain)
            .with_health(HealthCheck::with_path(
                e.health_path.unwrap_or_else(|| "/health".to_owned()),
            ));
        rec.stamp_registered(rev, registered);
        if !active {
            rec.stamp_deregistered(rev, deregistered.unwrap_or(registered));
        }
        records.push(rec);
    }
    Table::from_records(Revision(records.len() as u64), records)
}

/// Parses `services.json` bytes as the backend would (for the fuzz targets).
#[doc(hidden)]
pub fn fuzz_parse_services_json(bytes: &[u8]) -> bool {
    parse(
        Path::new("fuzz"),
        bytes,
        &DomainName::internal(),
        &Clock::system(),
    )
    .is_ok()
}
