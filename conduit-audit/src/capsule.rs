//! The Capsule content model (13 keys, spec §1), the audit-event mapping (docs/audit.md), the
//! seal (SHA3-256 + Ed25519 over the hex hash) and the seal key.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
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

    /// The content's canonical text, written straight from the typed fields (keys in code
    /// point order by construction; free-form maps sorted by the canonical writer).
    ///
    /// # Errors
    /// [`CanonicalError`] for a non-finite float.
    pub fn canonical(&self) -> Result<String, CanonicalError> {
        let mut w = CanonWriter {
            out: String::with_capacity(1536),
            path: String::from("$"),
        };
        w.capsule(self)?;
        Ok(w.out)
    }

    /// SHA3-256 of the canonical text, lower-case hex.
    ///
    /// # Errors
    /// [`CanonicalError`] for a non-finite float.
    pub fn hash(&self) -> Result<String, CanonicalError> {
        Ok(hex(&Sha3_256::digest(self.canonical()?.as_bytes())))
    }
}

/// Writes a typed Capsule canonically without building an intermediate `Value`.
struct CanonWriter {
    out: String,
    path: String,
}

impl CanonWriter {
    fn key(&mut self, first: bool, k: &str) {
        if !first {
            self.out.push(',');
        }
        self.out.push('"');
        self.out.push_str(k); // every fixed key is plain ASCII needing no escape
        self.out.push_str("\":");
    }
    fn str(&mut self, s: &str) {
        crate::canonical::write_string(s, &mut self.out);
    }
    fn opt(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.str(s),
            None => self.out.push_str("null"),
        }
    }
    fn int(&mut self, i: i64) {
        self.out.push_str(&i.to_string());
    }
    fn float(&mut self, f: f64, at: &str) -> Result<(), CanonicalError> {
        if !f.is_finite() {
            return Err(CanonicalError::NonFinite {
                path: at.to_owned(),
            });
        }
        crate::canonical::push_python_float(f, &mut self.out);
        Ok(())
    }
    fn bool(&mut self, b: bool) {
        self.out.push_str(if b { "true" } else { "false" });
    }
    fn strs(&mut self, v: &[String]) {
        self.out.push('[');
        for (i, s) in v.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.str(s);
        }
        self.out.push(']');
    }
    fn map(&mut self, m: &Map<String, Value>, at: &str) -> Result<(), CanonicalError> {
        self.path.clear();
        self.path.push_str(at);
        crate::canonical::write_object(m, &mut self.out, &mut self.path)
    }
    fn value(&mut self, v: &Value, at: &str) -> Result<(), CanonicalError> {
        self.path.clear();
        self.path.push_str(at);
        crate::canonical::write_value(v, &mut self.out, &mut self.path)
    }

    fn capsule(&mut self, c: &Capsule) -> Result<(), CanonicalError> {
        self.out.push('{');
        self.key(true, "authority");
        let a = &c.authority;
        self.out.push('{');
        self.key(true, "approver");
        self.opt(a.approver.as_deref());
        self.key(false, "chain");
        self.out.push('[');
        for (i, m) in a.chain.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.map(m, "$.authority.chain[]")?;
        }
        self.out.push(']');
        self.key(false, "escalation_reason");
        self.opt(a.escalation_reason.as_deref());
        self.key(false, "policy_reference");
        self.opt(a.policy_reference.as_deref());
        self.key(false, "type");
        self.str(&a.kind);
        self.out.push('}');

        self.key(false, "context");
        self.out.push('{');
        self.key(true, "agent_id");
        self.str(&c.context.agent_id);
        self.key(false, "environment");
        self.map(&c.context.environment, "$.context.environment")?;
        self.key(false, "session_id");
        self.opt(c.context.session_id.as_deref());
        self.out.push('}');

        self.key(false, "domain");
        self.str(&c.domain);

        self.key(false, "execution");
        let e = &c.execution;
        self.out.push('{');
        self.key(true, "duration_ms");
        self.int(e.duration_ms);
        self.key(false, "resources_used");
        self.map(&e.resources_used, "$.execution.resources_used")?;
        self.key(false, "tool_calls");
        self.out.push('[');
        for (i, t) in e.tool_calls.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push('{');
            self.key(true, "arguments");
            self.map(&t.arguments, "$.execution.tool_calls[].arguments")?;
            self.key(false, "duration_ms");
            self.int(t.duration_ms);
            self.key(false, "error");
            self.opt(t.error.as_deref());
            self.key(false, "result");
            self.value(&t.result, "$.execution.tool_calls[].result")?;
            self.key(false, "success");
            self.bool(t.success);
            self.key(false, "tool");
            self.str(&t.tool);
            self.out.push('}');
        }
        self.out.push_str("]}");

        self.key(false, "id");
        self.str(&c.id);

        self.key(false, "outcome");
        let o = &c.outcome;
        self.out.push('{');
        self.key(true, "error");
        self.opt(o.error.as_deref());
        self.key(false, "metrics");
        self.map(&o.metrics, "$.outcome.metrics")?;
        self.key(false, "result");
        self.value(&o.result, "$.outcome.result")?;
        self.key(false, "side_effects");
        self.strs(&o.side_effects);
        self.key(false, "status");
        self.str(&o.status);
        self.key(false, "summary");
        self.str(&o.summary);
        self.out.push('}');

        self.key(false, "parent_id");
        self.opt(c.parent_id.as_deref());
        self.key(false, "previous_hash");
        self.opt(c.previous_hash.as_deref());

        self.key(false, "reasoning");
        let r = &c.reasoning;
        self.out.push('{');
        self.key(true, "analysis");
        self.str(&r.analysis);
        self.key(false, "confidence");
        self.float(r.confidence, "$.reasoning.confidence")?;
        self.key(false, "model");
        self.opt(r.model.as_deref());
        self.key(false, "options");
        self.out.push('[');
        for (i, op) in r.options.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push('{');
            self.key(true, "cons");
            self.strs(&op.cons);
            self.key(false, "description");
            self.str(&op.description);
            self.key(false, "estimated_impact");
            self.map(
                &op.estimated_impact,
                "$.reasoning.options[].estimated_impact",
            )?;
            self.key(false, "feasibility");
            self.float(op.feasibility, "$.reasoning.options[].feasibility")?;
            self.key(false, "id");
            self.str(&op.id);
            self.key(false, "pros");
            self.strs(&op.pros);
            self.key(false, "rejection_reason");
            self.str(&op.rejection_reason);
            self.key(false, "risks");
            self.strs(&op.risks);
            self.key(false, "selected");
            self.bool(op.selected);
            self.out.push('}');
        }
        self.out.push(']');
        self.key(false, "options_considered");
        self.strs(&r.options_considered);
        self.key(false, "prompt_hash");
        self.opt(r.prompt_hash.as_deref());
        self.key(false, "reasoning");
        self.str(&r.reasoning);
        self.key(false, "selected_option");
        self.str(&r.selected_option);
        self.out.push('}');

        self.key(false, "sequence");
        self.out.push_str(&c.sequence.to_string());
        self.key(false, "spec_version");
        self.str(&c.spec_version);

        self.key(false, "trigger");
        let t = &c.trigger;
        self.out.push('{');
        self.key(true, "correlation_id");
        self.opt(t.correlation_id.as_deref());
        self.key(false, "request");
        self.str(&t.request);
        self.key(false, "source");
        self.str(&t.source);
        self.key(false, "timestamp");
        self.str(&t.timestamp);
        self.key(false, "type");
        self.str(&t.kind);
        self.key(false, "user_id");
        self.opt(t.user_id.as_deref());
        self.out.push('}');

        self.key(false, "type");
        self.str(&c.kind);
        self.out.push('}');
        Ok(())
    }
}

/// The Ed25519 key that seals the chain: the 32-byte seed the reference stores in `key`.
pub struct SealKey {
    key: SigningKey,
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealKey")
            .field("fingerprint", &self.fingerprint())
            .field("seed", &"<redacted>")
            .finish()
    }
}

impl SealKey {
    /// From the 32-byte seed (PyNaCl `bytes(SigningKey)`).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The public key, 64 hex characters.
    pub fn public_hex(&self) -> String {
        hex(self.key.verifying_key().as_bytes())
    }

    /// `qp_key_` + the first 4 hex characters of the public key (the reference's `signed_by`).
    pub fn fingerprint(&self) -> String {
        format!("qp_key_{}", &self.public_hex()[..4])
    }

    /// Ed25519 over the 64 ASCII bytes of the hex hash; 128 hex characters.
    pub fn sign_hash(&self, hash_hex: &str) -> String {
        self.sign_message(hash_hex.as_bytes())
    }

    /// Ed25519 over `msg`; 128 hex characters.
    pub fn sign_message(&self, msg: &[u8]) -> String {
        hex(&self.key.sign(msg).to_bytes())
    }
}

/// One sealed record as appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Its chain position.
    pub sequence: u64,
    /// Its content hash (hex).
    pub hash: String,
}

/// Why a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The public key is not 32 bytes of hex.
    #[error("public key is not 64 hex characters")]
    KeyFormat,
    /// The public key is not a valid Ed25519 point.
    #[error("public key is invalid")]
    KeyInvalid,
    /// The signature is not 64 bytes of hex.
    #[error("signature is not 128 hex characters")]
    SignatureFormat,
    /// The signature does not match the message and key.
    #[error("invalid signature")]
    Mismatch,
}

/// Checks an Ed25519 signature (hex) of a hex hash against a public key (hex).
///
/// # Errors
/// [`SignatureError`] naming what is wrong (malformed key or signature, or an invalid
/// signature).
pub fn verify_signature(
    public_hex: &str,
    hash_hex: &str,
    signature_hex: &str,
) -> Result<(), SignatureError> {
    verify_message(public_hex, hash_hex.as_bytes(), signature_hex)
}

pub(crate) fn verify_message(
    public_hex: &str,
    msg: &[u8],
    signature_hex: &str,
) -> Result<(), SignatureError> {
    let pk: [u8; 32] = unhex(public_hex)
        .and_then(|v| v.try_into().ok())
        .ok_or(SignatureError::KeyFormat)?;
    let pk = VerifyingKey::from_bytes(&pk).map_err(|_| SignatureError::KeyInvalid)?;
    let sig: [u8; 64] = unhex(signature_hex)
        .and_then(|v| v.try_into().ok())
        .ok_or(SignatureError::SignatureFormat)?;
    pk.verify(msg, &Signature::from_bytes(&sig))
        .map_err(|_| SignatureError::Mismatch)
}
