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
