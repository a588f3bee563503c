//! [`CapsuleStore`]: the sealed chain in `capsules.db`, table and columns exactly as the
//! reference (qp-capsule 1.5.4) creates them, and its verification.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde::Serialize;
use serde_json::Value;

use crate::capsule::content_hash;
use crate::seal::verify_signature;
use crate::{AuditError, AuditEvent, SealKey, Sealed};

const DDL: &str = "CREATE TABLE IF NOT EXISTS capsules (
\tid VARCHAR(36) NOT NULL, 
\ttype VARCHAR(20) NOT NULL, 
\tsequence INTEGER NOT NULL, 
\tprevious_hash VARCHAR(64), 
\tdata TEXT NOT NULL, 
\thash VARCHAR(64) NOT NULL, 
\tsignature TEXT NOT NULL, 
\tsignature_pq TEXT NOT NULL, 
\tsigned_at VARCHAR(40), 
\tsigned_by VARCHAR(32), 
\tsession_id VARCHAR(36), 
\tPRIMARY KEY (id), 
\tCONSTRAINT uq_capsule_sequence UNIQUE (sequence)
);
CREATE INDEX IF NOT EXISTS ix_capsules_hash ON capsules (hash);
CREATE INDEX IF NOT EXISTS ix_capsules_session_id ON capsules (session_id);
CREATE INDEX IF NOT EXISTS ix_capsules_sequence ON capsules (sequence);";

/// How much `verify` checks (the reference's levels; [`Level::Full`] is the default here,
/// where the reference defaults to structural).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Sequence numbers and hash links only (does not notice edited content).
    Structural,
    /// Structural, plus each record's content re-hashed and compared.
    #[default]
    Full,
    /// Full, plus each Ed25519 signature checked against the public key.
    Signatures,
}

/// One verification failure, as the reference reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyFailure {
    /// The failing record's position.
    pub sequence: u64,
    /// Its id (from the stored content, when readable).
    pub capsule_id: String,
    /// The reference's message (`Content hash mismatch at sequence 3`).
    pub error: String,
}

/// The result of [`CapsuleStore::verify`], shaped like `capsule verify --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Whether the whole chain passed.
    pub valid: bool,
    /// The level checked.
    pub level: Level,
    /// Records verified before the first failure (all of them when valid).
    pub capsules_verified: u64,
    /// Records in the chain.
    pub total_capsules: u64,
    /// The first failure, if any (verification stops there, like the reference).
    pub errors: Vec<VerifyFailure>,
}

impl VerifyReport {
    /// The reference's exit code: 0 valid, 1 invalid.
    pub fn exit_code(&self) -> i32 {
        i32::from(!self.valid)
    }
}

/// The Capsule chain in one SQLite file. Not `Sync`: one thread owns the connection.
#[derive(Debug)]
pub struct CapsuleStore {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
    /// Random bits of this store's capsule ids (see [`Capsule::for_event`]).
    id_salt: [u8; 16],
}

pub(crate) fn db_err(path: &Path, e: rusqlite::Error) -> AuditError {
    AuditError::Database {
        path: path.to_path_buf(),
        source: Box::new(e),
    }
}

impl CapsuleStore {
    /// Opens (creating with mode 0600 if needed) the chain at `path`.
    ///
    /// # Errors
    /// [`AuditError::Io`] or [`AuditError::Database`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, AuditError> {
        let path = path.as_ref().to_path_buf();
        if !path.exists() {
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create(true).truncate(false);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            o.open(&path).map_err(|e| AuditError::Io {
                op: "create",
                path: path.clone(),
                source: e,
            })?;
        }
        let conn = Connection::open(&path).map_err(|e| db_err(&path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| db_err(&path, e))?;
        // WAL with synchronous=FULL: every commit is durable, with one sequential WAL write
        // instead of a rollback journal plus database pages. Readers (the reference
        // included) see committed records as usual.
        // A 2 MB page cache: with 16 MB, SQLite's truncation of the cache at the end of
        // every transaction (a scan of its hash table) was 5 % of the sealing CPU; reads are
        // sequential (verification) or of the last page (the head).
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size=-2048; PRAGMA wal_autocheckpoint=8192;",
        )
            .map_err(|e| db_err(&path, e))?;
        conn.execute_batch(DDL).map_err(|e| db_err(&path, e))?;
        let mut id_salt = [0u8; 16];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut id_salt))
            .map_err(|e| AuditError::Io {
                op: "read random bytes from",
                path: "/dev/urandom".into(),
                source: e,
            })?;
        Ok(Self {
            conn,
            path,
            id_salt,
        })
    }

    /// Seals `events` in order after the current head, in one IMMEDIATE transaction (so the
    /// chain stays strictly ordered even with other writers, the Python reference included).
    /// Durable when this returns.
    ///
    /// # Errors
    /// [`AuditError::Database`]; nothing is written on error.
    pub fn append(
        &mut self,
        events: &[AuditEvent],
        key: &SealKey,
    ) -> Result<Vec<Sealed>, AuditError> {
        // Prepared inside the transaction, on its head.
        self.commit_prepared(events, Vec::new(), key)
            .map(|(sealed, _)| sealed)
    }

    /// Random bits of this store's capsule ids.
    pub(crate) fn id_salt(&self) -> [u8; 16] {
        self.id_salt
    }

    /// Every record's audit event (the six-field entry a capsule carries in
    /// `outcome.result`), in chain order, with its sequence; `None` for a record whose
    /// content is not one (`verify` says what is wrong with it).
    ///
    /// # Errors
    /// [`AuditError::Database`].
    pub fn events(&self) -> Result<Vec<(u64, Option<AuditEvent>)>, AuditError> {
        let mut stmt = self
            .conn
            .prepare("SELECT sequence, data FROM capsules ORDER BY sequence")
            .map_err(|e| db_err(&self.path, e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| db_err(&self.path, e))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, data) = row.map_err(|e| db_err(&self.path, e))?;
            let event = serde_json::from_str::<Value>(&data).ok().and_then(|v| {
                v.pointer("/outcome/result")
                    .and_then(|r| AuditEvent::from_value(r).ok())
            });
            out.push((u64::try_from(seq).unwrap_or(0), event));
        }
        Ok(out)
    }

    /// Number of records.
    ///
    /// # Errors
    /// [`AuditError::Database`].
    pub fn len(&self) -> Result<u64, AuditError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM capsules", [], |r| r.get::<_, i64>(0))
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(|e| db_err(&self.path, e))
    }

    /// Whether the chain is empty.
    ///
    /// # Errors
    /// [`AuditError::Database`].
    pub fn is_empty(&self) -> Result<bool, AuditError> {
        self.len().map(|n| n == 0)
    }

    /// Verifies the chain at `level`, checking signatures against `public_hex` (64 hex
    /// characters) at [`Level::Signatures`]. Stops at the first failure, like the reference,
    /// with the reference's messages. The per-record work (parsing, the shape check,
    /// hashing, signatures) runs on all cores; the checks are then applied in chain order.
    ///
    /// # Errors
    /// [`AuditError::Database`] when the file cannot be read at all (the reference's exit 2).
    pub fn verify(
        &self,
        level: Level,
        public_hex: Option<&str>,
    ) -> Result<VerifyReport, AuditError> {
        let mut stmt = self
            .conn
            .prepare("SELECT data, hash, signature FROM capsules ORDER BY sequence")
            .map_err(|e| db_err(&self.path, e))?;
        let rows: Vec<(String, String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(Iterator::collect)
            .map_err(|e| db_err(&self.path, e))?;
        let checked = check_rows(&rows, level, public_hex);
        let total = rows.len() as u64;
        let mut prev_hash: Option<&str> = None;
        for (i, ((_, hash, _), row)) in rows.iter().zip(&checked).enumerate() {
            let i = i as u64;
            let fail = |error: String| {
                Ok(VerifyReport {
                    valid: false,
                    level,
                    capsules_verified: i,
                    total_capsules: total,
                    errors: vec![VerifyFailure {
                        sequence: i,
                        capsule_id: row.id.clone(),
                        error,
                    }],
                })
            };
            if let Some(e) = &row.load_error {
                return fail(format!("Error loading capsule at sequence {i}: {e}"));
            }
            if row.sequence.as_deref() != Some(i.to_string().as_str()) {
                let got = row.sequence.clone().unwrap_or_else(|| "null".to_owned());
                return fail(format!("Sequence gap: expected {i}, got {got}"));
            }
            if i == 0 && row.previous_hash.is_some() {
                return fail("Genesis capsule has previous_hash (should be null)".to_owned());
            }
            if i > 0 && row.previous_hash.as_deref() != prev_hash {
                return fail(format!(
                    "Chain broken: previous_hash mismatch at sequence {i}"
                ));
            }
            if level != Level::Structural && !row.content_ok {
                return fail(format!("Content hash mismatch at sequence {i}"));
            }
            if let Some(detail) = &row.signature_error {
                return fail(format!(
                    "Signature verification failed at sequence {i}: {detail}"
                ));
            }
            prev_hash = Some(hash);
        }
        Ok(VerifyReport {
            valid: true,
            level,
            capsules_verified: total,
            total_capsules: total,
            errors: Vec::new(),
        })
    }
}

/// How many threads sign or verify at once: the available cores, at most 8. Asked once
/// (the answer reads cgroup files, and sealing asks per batch).
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(8)
    })
}

/// Ed25519 signatures of `hashes`, in order, spread over the available cores.
pub(crate) fn sign_all(key: &SealKey, hashes: &[&str]) -> Vec<String> {
    let threads = cores();
    if threads < 2 || hashes.len() < crate::signers::SHARED_FROM {
        return hashes.iter().map(|h| key.sign_hash(h)).collect();
    }
    let chunk = hashes.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = hashes
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || part.iter().map(|h| key.sign_hash(h)).collect::<Vec<_>>())
            })
            .collect();
        let mut out = Vec::with_capacity(hashes.len());
        for (h, part) in handles.into_iter().zip(hashes.chunks(chunk)) {
            // A panicking signer thread cannot happen short of a bug; sign here then.
            out.extend(
                h.join()
                    .unwrap_or_else(|_| part.iter().map(|x| key.sign_hash(x)).collect()),
            );
        }
        out
    })
}

/// What verification learned about one row, before the ordered checks.
#[derive(Default)]
struct RowCheck {
    load_error: Option<String>,
    id: String,
    /// `data.sequence` as JSON text (`"3"`, `"\"3\""`, …).
    sequence: Option<String>,
    previous_hash: Option<String>,
    content_ok: bool,
    signature_error: Option<String>,
}

fn check_row(
    data: &str,
    hash: &str,
    sig: &str,
    level: Level,
    public_hex: Option<&str>,
) -> RowCheck {
    let doc: Value = match serde_json::from_str(data) {
        Ok(v) => v,
        Err(e) => {
            return RowCheck {
                load_error: Some(e.to_string()),
                ..RowCheck::default()
            };
        }
    };
    let mut r = RowCheck {
        id: doc
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        sequence: doc.get("sequence").map(|v| match v.as_u64() {
            Some(n) => n.to_string(),
            None => v.to_string(),
        }),
        previous_hash: doc
            .get("previous_hash")
            .and_then(Value::as_str)
            .map(str::to_owned),
        ..RowCheck::default()
    };
    if doc
        .get("previous_hash")
        .is_some_and(|v| !v.is_null() && !v.is_string())
    {
        r.previous_hash = Some(String::new());
    }
    if level != Level::Structural {
        r.content_ok =
            crate::shape::is_capsule(&doc) && content_hash(&doc).ok().as_deref() == Some(hash);
    }
    if level == Level::Signatures {
        r.signature_error = match public_hex {
            Some(pk) => verify_signature(pk, hash, sig).err().map(|e| e.to_string()),
            None => Some("no public key".to_owned()),
        };
    }
    r
}

fn check_rows(
    rows: &[(String, String, String)],
    level: Level,
    public_hex: Option<&str>,
) -> Vec<RowCheck> {
    let threads = cores();
    if threads < 2 || rows.len() < 512 {
        return rows
            .iter()
            .map(|(d, h, s)| check_row(d, h, s, level, public_hex))
            .collect();
    }
    let chunk = rows.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = rows
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(d, h, s)| check_row(d, h, s, level, public_hex))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    vec![RowCheck {
                        load_error: Some("verifier thread failed".to_owned()),
                        ..RowCheck::default()
                    }]
                })
            })
            .collect()
    })
}
