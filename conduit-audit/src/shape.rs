//! The shape a stored Capsule document must have: exactly the 13 keys, every nested key, the
//! JSON types the reference model loads. This is the reference 1.5.4 "agreement" check
//! (spec §6.3) done as one walk over the parsed document, a little stricter: unknown
//! top-level keys and a missing `spec_version`, which 1.5.4 tolerates for old records, are
//! refused (no Conduit or 1.5.4 writer produces them).

use serde_json::Value;

#[derive(Clone, Copy)]
enum T {
    Str,
    OptStr,
    Num,
    Int,
    Bool,
    /// A free-form object.
    Obj,
    Any,
    StrArr,
    /// An array of free-form objects.
    ObjArr,
    /// An array of objects with exactly these keys.
    Arr(&'static [(&'static str, Self)]),
    /// An object with exactly these keys.
    Sec(&'static [(&'static str, Self)]),
}

const OPTION: &[(&str, T)] = &[
    ("id", T::Str),
    ("description", T::Str),
    ("pros", T::StrArr),
    ("cons", T::StrArr),
    ("risks", T::StrArr),
    ("estimated_impact", T::Obj),
    ("feasibility", T::Num),
    ("selected", T::Bool),
    ("rejection_reason", T::Str),
];

const TOOL_CALL: &[(&str, T)] = &[
    ("tool", T::Str),
    ("arguments", T::Obj),
    ("result", T::Any),
    ("success", T::Bool),
    ("duration_ms", T::Int),
    ("error", T::OptStr),
];

const CAPSULE: &[(&str, T)] = &[
    ("id", T::Str),
    ("type", T::Str),
    ("domain", T::Str),
    ("parent_id", T::OptStr),
    ("sequence", T::Int),
    ("previous_hash", T::OptStr),
    ("spec_version", T::Str),
    (
        "trigger",
        T::Sec(&[
            ("type", T::Str),
            ("source", T::Str),
            ("timestamp", T::Str),
            ("request", T::Str),
            ("correlation_id", T::OptStr),
            ("user_id", T::OptStr),
        ]),
    ),
    (
        "context",
        T::Sec(&[
            ("agent_id", T::Str),
            ("session_id", T::OptStr),
            ("environment", T::Obj),
        ]),
    ),
    (
        "reasoning",
        T::Sec(&[
            ("analysis", T::Str),
            ("options", T::Arr(OPTION)),
            ("options_considered", T::StrArr),
            ("selected_option", T::Str),
            ("reasoning", T::Str),
            ("confidence", T::Num),
            ("model", T::OptStr),
            ("prompt_hash", T::OptStr),
        ]),
    ),
    (
        "authority",
        T::Sec(&[
            ("type", T::Str),
            ("approver", T::OptStr),
            ("policy_reference", T::OptStr),
            ("chain", T::ObjArr),
            ("escalation_reason", T::OptStr),
        ]),
    ),
    (
        "execution",
        T::Sec(&[
            ("tool_calls", T::Arr(TOOL_CALL)),
            ("duration_ms", T::Int),
            ("resources_used", T::Obj),
        ]),
    ),
    (
        "outcome",
        T::Sec(&[
            ("status", T::Str),
            ("result", T::Any),
            ("summary", T::Str),
            ("error", T::OptStr),
            ("side_effects", T::StrArr),
            ("metrics", T::Obj),
        ]),
    ),
];

/// The Capsule types the reference loads.
const TYPES: &[&str] = &[
    "agent", "tool", "system", "kill", "workflow", "chat", "vault", "auth",
];

fn fits(v: &Value, t: T) -> bool {
    match t {
        T::Str => v.is_string(),
        T::OptStr => v.is_string() || v.is_null(),
        T::Num => v.is_number(),
        T::Int => v.is_i64() || v.is_u64(),
        T::Bool => v.is_boolean(),
        T::Obj => v.is_object(),
        T::Any => true,
        T::StrArr => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        T::ObjArr => v.as_array().is_some_and(|a| a.iter().all(Value::is_object)),
        T::Arr(keys) => v
            .as_array()
            .is_some_and(|a| a.iter().all(|x| fits(x, T::Sec(keys)))),
        T::Sec(keys) => v.as_object().is_some_and(|m| {
            m.len() == keys.len()
                && keys
                    .iter()
                    .all(|(k, t)| m.get(*k).is_some_and(|x| fits(x, *t)))
        }),
    }
}

/// Whether `doc` has exactly the Capsule shape, with a known type and a UUID-shaped id.
#[cfg_attr(
    not(feature = "sqlite"),
    allow(dead_code, reason = "used by the chain verifier")
)]
pub(crate) fn is_capsule(doc: &Value) -> bool {
    fits(doc, T::Sec(CAPSULE))
        && doc["type"].as_str().is_some_and(|t| TYPES.contains(&t))
        && doc["id"].as_str().is_some_and(|id| {
            id.len() == 36
                && id.bytes().enumerate().all(|(i, b)| match i {
                    8 | 13 | 18 | 23 => b == b'-',
                    _ => b.is_ascii_hexdigit(),
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_vectors_have_the_shape_and_mutations_do_not() {
        let f: Value =
            serde_json::from_str(include_str!("../../conformance/capsule/fixtures.json")).unwrap();
        for v in f["fixtures"].as_array().unwrap() {
            let doc = &v["capsule_dict"];
            assert!(is_capsule(doc), "{}", v["name"]);
            let mut missing = doc.clone();
            missing["outcome"]
                .as_object_mut()
                .unwrap()
                .remove("metrics");
            assert!(!is_capsule(&missing));
            let mut extra = doc.clone();
            extra["trigger"]["extra"] = Value::Null;
            assert!(!is_capsule(&extra));
            let mut wrong = doc.clone();
            wrong["sequence"] = Value::from("0");
            assert!(!is_capsule(&wrong));
            let mut ty = doc.clone();
            ty["type"] = Value::from("banana");
            assert!(!is_capsule(&ty));
        }
    }
}

/// The class of a validation failure, as the reference validator names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Category {
    /// A required key is absent.
    MissingField,
    /// A value has the wrong JSON type.
    WrongType,
    /// A value is out of its allowed set or range.
    InvalidValue,
    /// The genesis / link rules are broken.
    ChainViolation,
    /// The content does not hash to the claimed hash.
    IntegrityViolation,
}

/// Why a Capsule content document is invalid: the category, the field (dotted path) and a
/// message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The class of failure.
    pub category: Category,
    /// The field, dotted (`reasoning.confidence`); empty for the root.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn fail(
    category: Category,
    field: impl Into<String>,
    message: impl Into<String>,
) -> Result<(), ValidationError> {
    Err(ValidationError {
        category,
        field: field.into(),
        message: message.into(),
    })
}

fn type_name(t: T) -> &'static str {
    match t {
        T::Str => "a string",
        T::OptStr => "a string or null",
        T::Num => "a number",
        T::Int => "an integer",
        T::Bool => "a boolean",
        T::Obj | T::Sec(_) => "an object",
        T::Any => "any value",
        T::StrArr => "an array of strings",
        T::ObjArr | T::Arr(_) => "an array of objects",
    }
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Validates a Capsule content document (the 13-key dict, before sealing), reporting the
/// first problem in this order: the root is an object; top-level keys present in declaration
/// order; top-level types and values; the genesis rules; each section (keys present, then
/// types and ranges); finally, when `claimed_hash` is given, the content hash.
///
/// # Errors
/// [`ValidationError`] naming the category and field of the first problem.
pub fn validate_capsule(doc: &Value, claimed_hash: Option<&str>) -> Result<(), ValidationError> {
    let Some(m) = doc.as_object() else {
        return fail(
            Category::WrongType,
            "",
            "capsule root must be a JSON object",
        );
    };
    for (k, _) in CAPSULE {
        if !m.contains_key(*k) {
            return fail(
                Category::MissingField,
                *k,
                format!("missing required field {k:?}"),
            );
        }
    }
    let id = &m["id"];
    match id.as_str() {
        None => return fail(Category::WrongType, "id", "id must be a UUID string"),
        Some(s) if !is_uuid(s) => {
            return fail(Category::InvalidValue, "id", "id must be a UUID string");
        }
        Some(_) => {}
    }
    match m["type"].as_str() {
        None => return fail(Category::WrongType, "type", "type must be a string"),
        Some(t) if !TYPES.contains(&t) => {
            return fail(
                Category::InvalidValue,
                "type",
                format!("type {t:?} is not a Capsule type"),
            );
        }
        Some(_) => {}
    }
    for (k, t) in [
        ("domain", T::Str),
        ("parent_id", T::OptStr),
        ("previous_hash", T::OptStr),
        ("spec_version", T::Str),
    ] {
        if !fits(&m[k], t) {
            return fail(
                Category::WrongType,
                k,
                format!("{k} must be {}", type_name(t)),
            );
        }
    }
    let seq = &m["sequence"];
    if !(seq.is_i64() || seq.is_u64()) {
        return fail(
            Category::WrongType,
            "sequence",
            "sequence must be an integer",
        );
    }
    if seq.as_i64().is_some_and(|s| s < 0) {
        return fail(
            Category::InvalidValue,
            "sequence",
            "sequence must not be negative",
        );
    }
    if let Some(h) = m["previous_hash"].as_str()
        && !(h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    {
        return fail(
            Category::InvalidValue,
            "previous_hash",
            "previous_hash must be 64 lower-case hex characters",
        );
    }
    let genesis = seq.as_u64() == Some(0);
    match (genesis, m["previous_hash"].is_null()) {
        (true, false) => {
            return fail(
                Category::ChainViolation,
                "previous_hash",
                "the genesis capsule has a previous_hash",
            );
        }
        (false, true) => {
            return fail(
                Category::ChainViolation,
                "previous_hash",
                "a non-genesis capsule needs a previous_hash",
            );
        }
        _ => {}
    }
    for (section, t) in &CAPSULE[7..] {
        let T::Sec(keys) = t else { continue };
        let Some(sm) = m[*section].as_object() else {
            return fail(
                Category::WrongType,
                *section,
                format!("{section} must be an object"),
            );
        };
        for (k, _) in *keys {
            if !sm.contains_key(*k) {
                return fail(
                    Category::MissingField,
                    format!("{section}.{k}"),
                    format!("missing required field {k:?}"),
                );
            }
        }
        for (k, kt) in *keys {
            if !fits(&sm[*k], *kt) {
                return fail(
                    Category::WrongType,
                    format!("{section}.{k}"),
                    format!("{k} must be {}", type_name(*kt)),
                );
            }
        }
    }
    if m["reasoning"]["confidence"]
        .as_f64()
        .is_some_and(|c| !(0.0..=1.0).contains(&c))
    {
        return fail(
            Category::InvalidValue,
            "reasoning.confidence",
            "confidence must be between 0.0 and 1.0",
        );
    }
    if let Some(claimed) = claimed_hash {
        let actual = crate::content_hash(doc).map_err(|e| ValidationError {
            category: Category::InvalidValue,
            field: String::new(),
            message: e.to_string(),
        })?;
        if actual != claimed {
            return fail(
                Category::IntegrityViolation,
                "hash",
                format!("content hashes to {actual}, not {claimed}"),
            );
        }
    }
    Ok(())
}
