//! The bytes of `services.json`, written by every change: each record's part is
//! serialized once in the record's life (records are immutable and shared between
//! revisions) and kept, so a change to one service among thousands serializes one record,
//! not all of them. The result is byte for byte what `serde_json::to_vec_pretty` gives
//! for the whole file.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use crate::{Revision, ServiceRecord};

/// Each live record's serialized part, by the record's address (the entry holds the
/// record, so the address is not reused while it is here).
#[derive(Default)]
pub(super) struct Fragments {
    parts: Mutex<HashMap<usize, Part>>,
}

/// A record and its serialized part.
type Part = (Arc<ServiceRecord>, Box<[u8]>);

impl Fragments {
    /// The file's bytes for `records` at `revision` (schema `version`); parts of records
    /// no longer in `records` are forgotten.
    pub(super) fn encode(
        &self,
        version: u64,
        revision: Revision,
        records: &[Arc<ServiceRecord>],
    ) -> Result<Vec<u8>, serde_json::Error> {
        let mut parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = HashMap::with_capacity(records.len());
        let mut total = 64;
        for record in records {
            let key = Arc::as_ptr(record) as usize;
            let part = match parts.remove(&key) {
                Some(entry) => entry,
                None => (Arc::clone(record), part(record)?),
            };
            total += part.1.len() + 6;
            next.insert(key, part);
        }
        let mut out = Vec::with_capacity(total);
        // (Writes to a Vec cannot fail.)
        let _ = write!(out, "{{\n  \"version\": {version},\n  \"revision\": ");
        serde_json::to_writer(&mut out, &revision)?;
        out.extend_from_slice(b",\n  \"services\": [");
        for (i, record) in records.iter().enumerate() {
            out.extend_from_slice(if i == 0 { b"\n    " } else { b",\n    " });
            if let Some((_, bytes)) = next.get(&(Arc::as_ptr(record) as usize)) {
                out.extend_from_slice(bytes);
            }
        }
        if !records.is_empty() {
            out.extend_from_slice(b"\n  ");
        }
        out.extend_from_slice(b"]\n}");
        *parts = next;
        Ok(out)
    }
}

/// One record as it appears inside the file's `services` list: pretty-printed, every line
/// after the first indented by two levels. (A JSON string never holds a raw newline, so
/// every newline is the printer's.)
fn part(record: &ServiceRecord) -> Result<Box<[u8]>, serde_json::Error> {
    let alone = serde_json::to_vec_pretty(record)?;
    let mut out = Vec::with_capacity(alone.len() + alone.len() / 8);
    for &b in &alone {
        out.push(b);
        if b == b'\n' {
            out.extend_from_slice(b"    ");
        }
    }
    Ok(out.into_boxed_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::format::FileOut;
    use crate::{Endpoint, ServiceName};

    fn record(name: &str) -> Arc<ServiceRecord> {
        Arc::new(ServiceRecord::new(
            ServiceName::new(name).unwrap(),
            "10.0.1.50:3000".parse::<Endpoint>().unwrap(),
        ))
    }

    fn whole(revision: Revision, records: &[Arc<ServiceRecord>]) -> Vec<u8> {
        serde_json::to_vec_pretty(&FileOut {
            version: 2,
            revision,
            services: records.iter().map(|r| &**r).collect(),
        })
        .unwrap()
    }

    #[test]
    fn the_same_bytes_as_serializing_the_whole_file() {
        let fragments = Fragments::default();
        let mut records = Vec::new();
        for n in 0..4u64 {
            let got = fragments.encode(2, Revision(n), &records).unwrap();
            assert_eq!(got, whole(Revision(n), &records), "{n} records");
            records.push(record(&format!("svc{n}")));
        }
        // A record replaced by another of the same name: the new one's part, not the old.
        records[1] = Arc::new(
            (*records[1])
                .clone()
                .with_endpoints(vec!["10.0.9.9:80".parse().unwrap()]),
        );
        records.remove(0);
        let got = fragments.encode(2, Revision(9), &records).unwrap();
        assert_eq!(got, whole(Revision(9), &records));
        assert_eq!(fragments.parts.lock().unwrap().len(), records.len());
    }
}
