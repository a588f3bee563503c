//! [`cross_check`]: `audit.log` (what `conduit logs` and the admin API show) against the
//! sealed chain (what proves it). Every line must be a sealed record and every sealed record
//! a line; a line removed, changed or never sealed is named.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::Path;

use crate::{AuditError, AuditEvent, CapsuleStore};

/// One line of `audit.log`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// 1-based line number.
    pub line: usize,
    /// The event on it.
    pub event: AuditEvent,
}

/// One record of the sealed chain.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedRecord {
    /// Its position in the chain.
    pub sequence: u64,
    /// The event it seals.
    pub event: AuditEvent,
}

/// What differs between the log and the chain.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct CrossCheck {
    /// Lines in both.
    pub matched: usize,
    /// The number of the last line that matched a sealed record (0 when none did): lines
    /// after it that are unsealed are the sealing backlog.
    pub last_matched_line: usize,
    /// Lines with no sealed record: never sealed (a crash or a lock during sealing), or
    /// added to the file afterwards.
    pub unsealed: Vec<LogLine>,
    /// Sealed records with no line: the line was removed from `audit.log`.
    pub missing: Vec<SealedRecord>,
    /// A line that differs from the sealed record of the same time, action, user and
    /// subject (`details.name`): the line was changed.
    pub altered: Vec<(LogLine, SealedRecord)>,
    /// Lines that are not audit records at all (line number, why).
    pub unreadable: Vec<(usize, String)>,
}

impl CrossCheck {
    /// Whether the log and the chain hold exactly the same records.
    pub fn is_consistent(&self) -> bool {
        self.unsealed.is_empty()
            && self.missing.is_empty()
            && self.altered.is_empty()
            && self.unreadable.is_empty()
    }

    /// One line per difference, for people.
    pub fn problems(&self) -> Vec<String> {
        let show = |e: &AuditEvent| {
            format!(
                "{} {} by {}: {}",
                e.timestamp(),
                e.action(),
                e.user(),
                e.message()
            )
        };
        let mut out = Vec::new();
        for m in &self.missing {
            out.push(format!(
                "sealed record #{} is missing from audit.log ({})",
                m.sequence,
                show(&m.event)
            ));
        }
        for (l, r) in &self.altered {
            out.push(format!(
                "audit.log line {} was altered: it says {:?}, sealed record #{} says {:?}",
                l.line,
                l.event.to_line(),
                r.sequence,
                r.event.to_line()
            ));
        }
        for l in &self.unsealed {
            out.push(format!(
                "audit.log line {} is not sealed ({})",
                l.line,
                show(&l.event)
            ));
        }
        for (line, why) in &self.unreadable {
            out.push(format!(
                "audit.log line {line} is not an audit record: {why}"
            ));
        }
        out
    }
}

/// Compares `audit.log` at `log` with the chain in `store`.
///
/// # Errors
/// [`AuditError::Io`] or [`AuditError::Database`] when either cannot be read.
pub fn cross_check(log: &Path, store: &CapsuleStore) -> Result<CrossCheck, AuditError> {
    let mut out = CrossCheck::default();
    // The sealed records, by their exact line.
    let mut sealed: HashMap<String, Vec<SealedRecord>> = HashMap::new();
    let mut order = Vec::new();
    for (sequence, event) in store.events()? {
        match event {
            Some(event) => {
                let line = event.to_line();
                order.push(line.clone());
                sealed
                    .entry(line)
                    .or_default()
                    .push(SealedRecord { sequence, event });
            }
            // a capsule that is not one of our events: `verify` reports the chain itself
            None => continue,
        }
    }
    let mut unmatched = Vec::new();
    match File::open(log) {
        Ok(f) => {
            for (i, line) in BufReader::new(f).lines().enumerate() {
                let line = line.map_err(|e| AuditError::Io {
                    op: "read",
                    path: log.to_path_buf(),
                    source: e,
                })?;
                if line.trim().is_empty() {
                    continue;
                }
                let event = match AuditEvent::from_line(&line) {
                    Ok(e) => e,
                    Err(e) => {
                        out.unreadable.push((i + 1, e.to_string()));
                        continue;
                    }
                };
                match sealed
                    .get_mut(&event.to_line())
                    .and_then(|v| (!v.is_empty()).then(|| v.remove(0)))
                {
                    Some(_) => {
                        out.matched += 1;
                        out.last_matched_line = i + 1;
                    }
                    None => unmatched.push(LogLine { line: i + 1, event }),
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(AuditError::Io {
                op: "open",
                path: log.to_path_buf(),
                source: e,
            });
        }
    }
    // What is left of the chain, in chain order.
    let mut left: Vec<SealedRecord> = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for line in &order {
        let k = seen.entry(line.as_str()).or_default();
        if let Some(records) = sealed.get(line)
            && let Some(r) = records.get(*k)
        {
            left.push(r.clone());
        }
        *k += 1;
    }
    left.sort_by_key(|r| r.sequence);
    left.dedup_by_key(|r| r.sequence);
    // A changed line: same time, action and user as a record no line matched.
    for l in unmatched {
        // (the same subject too: two writers in the same second, one killed before sealing
        // and the other before logging, are not an edit)
        let twin = left.iter().position(|r| {
            r.event.timestamp() == l.event.timestamp()
                && r.event.action() == l.event.action()
                && r.event.user() == l.event.user()
                && r.event.details().get("name") == l.event.details().get("name")
        });
        match twin {
            Some(i) => out.altered.push((l, left.remove(i))),
            None => out.unsealed.push(l),
        }
    }
    out.missing = left;
    Ok(out)
}
