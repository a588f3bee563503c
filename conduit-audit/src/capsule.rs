//! The Capsule content model (13 keys, spec §1) and the audit-event mapping
//! (docs/audit.md). Its canonical text and hash are in `capsule_canon`, the seal (Ed25519 over
//! the hex hash) and its key in `seal`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha3::{Digest, Sha3_256};

use crate::AuditEvent;
use crate::canonical::{CanonicalError, to_canonical_string};

/// The content's `spec_version`.
pub const SPEC_VERSION: &str = "1.0";

/// `trigger` (6 keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "field names are the spec's")]
pub struct Trigger {
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub timestamp: String,
    pub request: String,
    pub correlation_id: Option<String>,
    pub user_id: Option<String>,
}

/// `context` (3 keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "field names are the spec's")]
pub struct Context {
    pub agent_id: String,
    pub session_id: Option<String>,
    pub environment: Map<String, Value>,
}

/// A reasoning option (9 keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "field names are the spec's")]
pub struct ReasoningOption {
    pub id: String,
    pub description: String,
    pub pros: Vec<String>,
    pub cons: Vec<String>,
    pub risks: Vec<String>,
    pub estimated_impact: Map<String, Value>,
    pub feasibility: f64,
    pub selected: bool,
    pub rejection_reason: String,
}

/// `reasoning` (8 keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "field names are the spec's")]
pub struct Reasoning {
    pub analysis: String,
    pub options: Vec<ReasoningOption>,
    pub options_considered: Vec<String>,
    pub selected_option: String,
    pub reasoning: String,
    pub confidence: f64,
    pub model: Option<String>,
    pub prompt_hash: Option<String>,
}

/// `authority` (5 keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "field names are the spec's")]
pub struct CapsuleAuthority {
    #[serde(rename = "type")]
    pub kind: String,
    pub approver: Option<String>,
    pub policy_reference: Option<String>,
    pub chain: Vec<Map<String, Value>>,
    pub escalation_reason: Option<String>,
}

/// A tool call (6 keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "field names are the spec's")]
pub struct ToolCall {
    pub tool: String,
    pub arguments: Map<String, Value>,
    pub result: Value,
    pub success: bool,
    pub duration_ms: i64,
    pub error: Option<String>,
}

/// `execution` (3 keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "field names are the spec's")]
pub struct Execution {
    pub tool_calls: Vec<ToolCall>,
    pub duration_ms: i64,
    pub resources_used: Map<String, Value>,
}

/// `outcome` (6 keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "field names are the spec's")]
pub struct CapsuleOutcome {
    pub status: String,
    pub result: Value,
    pub summary: String,
    pub error: Option<String>,
    pub side_effects: Vec<String>,
    pub metrics: Map<String, Value>,
}

/// A Capsule's hashed content: exactly the 13 keys of the spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "field names are the spec's")]
pub struct Capsule {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub domain: String,
    pub parent_id: Option<String>,
    pub sequence: u64,
    pub previous_hash: Option<String>,
    pub spec_version: String,
    pub trigger: Trigger,
    pub context: Context,
    pub reasoning: Reasoning,
    pub authority: CapsuleAuthority,
    pub execution: Execution,
    pub outcome: CapsuleOutcome,
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(H[usize::from(b >> 4)]));
        s.push(char::from(H[usize::from(b & 0xf)]));
    }
    s
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    // Lower case only: the spec stores lower-case hex, and accepting `A` for `a` would let a
    // changed byte in the database pass unnoticed.
    if !s.len().is_multiple_of(2)
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SSZ` → Python `isoformat()` of the aware UTC time: `…+00:00`.
pub(crate) fn z_to_offset(ts: &str) -> String {
    match ts.strip_suffix('Z') {
        Some(base) => format!("{base}+00:00"),
        None => ts.to_owned(),
    }
}

/// Python `datetime.isoformat()` of the current UTC time (`…+00:00`, with `.ffffff` only
/// when the microseconds are not zero), as the reference writes `signed_at` and `created_at`.
pub(crate) fn isoformat_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let base = now.format(&fmt).unwrap_or_default();
    match now.microsecond() {
        0 => format!("{base}+00:00"),
        us => format!("{base}.{us:06}+00:00"),
    }
}

/// SHA3-256 of the canonical text, lower-case hex.
///
/// # Errors
/// [`CanonicalError`] for a document that cannot be canonicalised.
pub fn content_hash(content: &Value) -> Result<String, CanonicalError> {
    Ok(hex(&Sha3_256::digest(
        to_canonical_string(content)?.as_bytes(),
    )))
}

impl Capsule {
    /// The Capsule recording `event` at chain position `sequence` after `previous_hash`.
    ///
    /// Mapping (documented in `docs/audit.md`): type `system`, domain `conduit`,
    /// `trigger.source` `conduit`, `trigger.request` = action, `trigger.user_id` = user,
    /// `trigger.timestamp` = the event time as `+00:00`, `outcome.status` = success|failure,
    /// `outcome.summary` = message, `outcome.result` = the whole six-field entry, everything
    /// else at the spec's defaults. The id is a version-4 UUID made of `salt` (random per
    /// store) with the sequence mixed into its last 8 bytes: unique within a chain, random
    /// across chains, and free to compute.
    pub fn for_event(
        event: &AuditEvent,
        sequence: u64,
        previous_hash: Option<String>,
        salt: [u8; 16],
    ) -> Self {
        let mut b = salt;
        for (d, s) in b[8..].iter_mut().zip(sequence.to_be_bytes()) {
            *d ^= s;
        }
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let x = hex(&b);
        let id = format!(
            "{}-{}-{}-{}-{}",
            &x[0..8],
            &x[8..12],
            &x[12..16],
            &x[16..20],
            &x[20..32]
        );
        Self {
            id,
            kind: "system".to_owned(),
            domain: "conduit".to_owned(),
            parent_id: None,
            sequence,
            previous_hash,
            spec_version: SPEC_VERSION.to_owned(),
            trigger: Trigger {
                kind: "user_request".to_owned(),
                source: "conduit".to_owned(),
                timestamp: z_to_offset(event.timestamp()),
                request: event.action().to_owned(),
                correlation_id: None,
                user_id: Some(event.user().to_owned()),
            },
            context: Context {
                agent_id: String::new(),
                session_id: None,
                environment: Map::new(),
            },
            reasoning: Reasoning {
                analysis: String::new(),
                options: Vec::new(),
                options_considered: Vec::new(),
                selected_option: String::new(),
                reasoning: String::new(),
                confidence: 0.0,
                model: None,
                prompt_hash: None,
            },
            authority: CapsuleAuthority {
                kind: "autonomous".to_owned(),
                approver: None,
                policy_reference: None,
                chain: Vec::new(),
                escalation_reason: None,
            },
            execution: Execution {
                tool_calls: Vec::new(),
                duration_ms: 0,
                resources_used: Map::new(),
            },
            outcome: CapsuleOutcome {
                status: event.status().as_str().to_owned(),
                result: event.to_value(),
                summary: event.message().to_owned(),
                error: None,
                side_effects: Vec::new(),
                metrics: Map::new(),
            },
        }
    }

    /// The content as a JSON document.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}
