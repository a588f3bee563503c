//! [`CapsuleStore`]: the sealed chain in `capsules.db`, table and columns exactly as the
//! reference (qp-capsule 1.5.4) creates them, and its verification.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use serde_json::Value;

use crate::capsule::{content_hash, verify_signature};
use crate::{AuditError, AuditEvent, Capsule, SealKey, Sealed};

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
    conn: Connection,
    path: PathBuf,
}

fn db_err(path: &Path, e: rusqlite::Error) -> AuditError {
    AuditError::Database {
        path: path.to_path_buf(),
        source: Box::new(e),
    }
}

/// Python `datetime.isoformat()` of the current UTC time, microseconds when non-zero.
fn signed_at_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let base = now.format(&fmt).unwrap_or_default();
    match now.microsecond() {
        0 => format!("{base}+00:00"),
        us => format!("{base}.{us:06}+00:00"),
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
        conn.execute_batch(DDL).map_err(|e| db_err(&path, e))?;
        Ok(Self { conn, path })
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
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_err(&path, e))?;
        let head: Option<(i64, String)> = tx
            .query_row(
                "SELECT sequence, hash FROM capsules ORDER BY sequence DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| db_err(&path, e))?;
        let (mut seq, mut prev) = match head {
            Some((s, h)) => (u64::try_from(s).unwrap_or(0) + 1, Some(h)),
            None => (0, None),
        };
        let mut out = Vec::with_capacity(events.len());
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO capsules (id, type, sequence, previous_hash, data, hash, signature, \
                     signature_pq, signed_at, signed_by, session_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, '', ?8, ?9, NULL)",
                )
                .map_err(|e| db_err(&path, e))?;
            let signed_by = key.fingerprint();
            for ev in events {
                let capsule = Capsule::for_event(ev, seq, prev.clone());
                let data = capsule.canonical()?;
                let hash = capsule.hash()?;
                let sig = key.sign_hash(&hash);
                ins.execute(params![
                    capsule.id,
                    capsule.kind,
                    i64::try_from(seq).unwrap_or(i64::MAX),
                    prev,
                    data,
                    hash,
                    sig,
                    signed_at_now(),
                    signed_by
                ])
                .map_err(|e| db_err(&path, e))?;
                out.push(Sealed {
                    sequence: seq,
                    hash: hash.clone(),
                });
                prev = Some(hash);
                seq += 1;
            }
        }
        tx.commit().map_err(|e| db_err(&path, e))?;
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
    /// with the reference's messages.
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
        let total = rows.len() as u64;
        let mut prev_hash: Option<&str> = None;
        for (i, (data, hash, sig)) in rows.iter().enumerate() {
            let i = i as u64;
            let fail = |id: &str, error: String| VerifyReport {
                valid: false,
                level,
                capsules_verified: i,
                total_capsules: total,
                errors: vec![VerifyFailure {
                    sequence: i,
                    capsule_id: id.to_owned(),
                    error,
                }],
            };
            let doc: Value = match serde_json::from_str(data) {
                Ok(v) => v,
                Err(e) => {
                    return Ok(fail(
                        "",
                        format!("Error loading capsule at sequence {i}: {e}"),
                    ));
                }
            };
            let id = doc
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let seq = doc.get("sequence").and_then(Value::as_u64);
            if seq != Some(i) {
                let got = doc
                    .get("sequence")
                    .map_or("null".to_owned(), Value::to_string);
                return Ok(fail(&id, format!("Sequence gap: expected {i}, got {got}")));
            }
            let link = doc.get("previous_hash").and_then(Value::as_str);
            if i == 0 && !doc.get("previous_hash").is_some_and(Value::is_null) {
                return Ok(fail(
                    &id,
                    "Genesis capsule has previous_hash (should be null)".to_owned(),
                ));
            }
            if i > 0 && link != prev_hash {
                return Ok(fail(
                    &id,
                    format!("Chain broken: previous_hash mismatch at sequence {i}"),
                ));
            }
            if level != Level::Structural {
                let agrees = serde_json::from_value::<Capsule>(doc.clone())
                    .is_ok_and(|c| agree(&doc, &c.to_value()));
                if !agrees || content_hash(&doc).ok().as_deref() != Some(hash.as_str()) {
                    return Ok(fail(&id, format!("Content hash mismatch at sequence {i}")));
                }
            }
            if level == Level::Signatures {
                let checked = match public_hex {
                    Some(pk) => verify_signature(pk, hash, sig),
                    None => Err("no public key".to_owned()),
                };
                if let Err(detail) = checked {
                    return Ok(fail(
                        &id,
                        format!("Signature verification failed at sequence {i}: {detail}"),
                    ));
                }
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

/// A signed statement of the chain's head at a moment: sequence, head hash and time.
///
/// The reference cannot see records deleted from the end of a chain (spec §5). Export a
/// checkpoint now and then (to another machine, a ticket, paper); verifying the chain against
/// it later proves that it still reaches that sequence with the same hash, so nothing
/// was cut off or rewritten up to there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The head's sequence when the checkpoint was taken.
    pub sequence: u64,
    /// The head's content hash.
    pub head_hash: String,
    /// When (`YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00`).
    pub created_at: String,
    /// The sealing public key (hex).
    pub public_key: String,
    /// Ed25519 over [`Checkpoint::message`], hex.
    pub signature: String,
}

impl Checkpoint {
    /// The signed bytes: `conduit-checkpoint-v1:<sequence>:<head_hash>:<created_at>`.
    pub fn message(&self) -> String {
        format!(
            "conduit-checkpoint-v1:{}:{}:{}",
            self.sequence, self.head_hash, self.created_at
        )
    }
}

impl CapsuleStore {
    /// A checkpoint of the current head, signed with `key`; `None` for an empty chain.
    ///
    /// # Errors
    /// [`AuditError::Database`].
    pub fn checkpoint(&self, key: &SealKey) -> Result<Option<Checkpoint>, AuditError> {
        let head: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT sequence, hash FROM capsules ORDER BY sequence DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| db_err(&self.path, e))?;
        Ok(head.map(|(seq, hash)| {
            let mut c = Checkpoint {
                sequence: u64::try_from(seq).unwrap_or(0),
                head_hash: hash,
                created_at: signed_at_now(),
                public_key: key.public_hex(),
                signature: String::new(),
            };
            c.signature = key.sign_message(c.message().as_bytes());
            c
        }))
    }

    /// Checks the chain against a checkpoint: its signature, then that the record at its
    /// sequence still exists with the same hash. Run [`CapsuleStore::verify`] too: this checks
    /// the tail, `verify` the links.
    ///
    /// # Errors
    /// [`AuditError::Database`]; a failed check is `Ok(Err(reason))`.
    pub fn verify_checkpoint(&self, c: &Checkpoint) -> Result<Result<(), String>, AuditError> {
        if let Err(e) =
            crate::capsule::verify_message(&c.public_key, c.message().as_bytes(), &c.signature)
        {
            return Ok(Err(format!("checkpoint signature: {e}")));
        }
        let seq = i64::try_from(c.sequence).unwrap_or(i64::MAX);
        let found: Option<String> = self
            .conn
            .query_row(
                "SELECT hash FROM capsules WHERE sequence = ?1",
                [seq],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| db_err(&self.path, e))?;
        Ok(match found {
            None => Err(format!(
                "chain truncated: it has {} records, the checkpoint saw sequence {}",
                self.len()?,
                c.sequence
            )),
            Some(h) if h != c.head_hash => Err(format!(
                "record {} was rewritten since the checkpoint",
                c.sequence
            )),
            Some(_) => Ok(()),
        })
    }
}

/// The 1.5.4 agreement check: the stored document and the model's re-emission have the same
/// keys at every depth, arrays of the same length, and equal scalars (`1 == 1.0`, but a bool
/// is not a number).
fn agree(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| agree(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| agree(v, w))
        }
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}
