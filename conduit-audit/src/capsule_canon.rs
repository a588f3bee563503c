//! The canonical text of a typed Capsule, written straight from its fields (keys in code
//! point order by construction; free-form maps sorted by the canonical writer), without
//! building an intermediate `Value`: what is hashed and sealed.

use serde_json::{Map, Value};
use sha3::{Digest, Sha3_256};

use crate::canonical::CanonicalError;
use crate::capsule::{Capsule, hex};

impl Capsule {
    /// The content's canonical text, written straight from the typed fields (keys in code
    /// point order by construction; free-form maps sorted by the canonical writer).
    ///
    /// # Errors
    /// [`CanonicalError`] for a non-finite float.
    pub fn canonical(&self) -> Result<String, CanonicalError> {
        write(self)
    }

    /// SHA3-256 of the canonical text, lower-case hex.
    ///
    /// # Errors
    /// [`CanonicalError`] for a non-finite float.
    pub fn hash(&self) -> Result<String, CanonicalError> {
        Ok(hex(&Sha3_256::digest(self.canonical()?.as_bytes())))
    }
}

/// The canonical text of `c`.
fn write(c: &Capsule) -> Result<String, CanonicalError> {
    let mut w = CanonWriter {
        out: String::with_capacity(1536),
        path: String::from("$"),
    };
    w.capsule(c)?;
    Ok(w.out)
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
