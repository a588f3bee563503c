//! Canonical JSON exactly as the Capsule reference writes it (its own serializer, spec §2):
//! keys sorted by code point at every depth, no whitespace, minimal string escapes with raw
//! UTF-8, floats as Python `repr(float)`, integers in plain decimal.

use serde_json::{Map, Number, Value};

/// Why a document cannot be canonicalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CanonicalError {
    /// NaN or an infinity: not JSON, and forbidden by the Capsule spec.
    #[error("non-finite number at {path} cannot be sealed")]
    NonFinite {
        /// JSON path of the value (`$.outcome.metrics.x`).
        path: String,
    },
}

/// The canonical text of `value`.
///
/// # Errors
/// [`CanonicalError::NonFinite`] for NaN or an infinity anywhere in the document.
pub fn to_canonical_string(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::with_capacity(1024);
    write_value(value, &mut out, &mut String::from("$"))?;
    Ok(out)
}

pub(crate) fn write_value(
    v: &Value,
    out: &mut String,
    path: &mut String,
) -> Result<(), CanonicalError> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(n, out, path)?,
        Value::String(s) => write_string(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                write_value(item, out, path)?;
                path.truncate(len);
            }
            out.push(']');
        }
        Value::Object(m) => write_object(m, out, path)?,
    }
    Ok(())
}

pub(crate) fn write_object(
    m: &Map<String, Value>,
    out: &mut String,
    path: &mut String,
) -> Result<(), CanonicalError> {
    // serde_json's map iterates in key order, unless its `preserve_order` feature is on
    // somewhere in the build; then sort explicitly. Rust's `str` order is UTF-8 byte order,
    // which equals code point order.
    let in_order = m.keys().zip(m.keys().skip(1)).all(|(a, b)| a < b);
    let mut keys: Vec<&String> = Vec::new();
    if !in_order {
        keys = m.keys().collect();
        keys.sort_unstable();
    }
    let ordered: Box<dyn Iterator<Item = &String>> = if in_order {
        Box::new(m.keys())
    } else {
        Box::new(keys.into_iter())
    };
    out.push('{');
    for (i, k) in ordered.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(k, out);
        out.push(':');
        let len = path.len();
        path.push('.');
        path.push_str(k);
        if let Some(v) = m.get(k) {
            write_value(v, out, path)?;
        }
        path.truncate(len);
    }
    out.push('}');
    Ok(())
}

fn write_number(n: &Number, out: &mut String, path: &str) -> Result<(), CanonicalError> {
    if let Some(i) = n.as_i64() {
        out.push_str(&i.to_string());
    } else if let Some(u) = n.as_u64() {
        out.push_str(&u.to_string());
    } else if let Some(f) = n.as_f64() {
        if !f.is_finite() {
            return Err(CanonicalError::NonFinite {
                path: path.to_owned(),
            });
        }
        push_python_float(f, out);
    }
    Ok(())
}

/// Appends `s` as a JSON string: `\"`, `\\`, the five short escapes, `\u00xx` (lower-case
/// hex) for other controls, everything else raw.
pub(crate) fn write_string(s: &str, out: &mut String) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends a finite `f` exactly as Python's `repr(float)` writes it.
///
/// The shortest round-trip digits come from `ryu` (which, like Python, rounds ties to even;
/// Rust's `{}` does not); the layout is Python's: positional for decimal exponents in
/// `-4..16` (always with a fractional digit), otherwise `d[.ddd]e±XX`.
pub fn push_python_float(f: f64, out: &mut String) {
    if f == 0.0 {
        out.push_str(if f.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    if f.is_sign_negative() {
        out.push('-');
    }
    let mut buf = ryu::Buffer::new();
    let s = buf.format_finite(f.abs());
    let (mantissa, exp10) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (s, 0),
    };
    let int_len = mantissa.find('.').unwrap_or(mantissa.len());
    let all: String = mantissa.chars().filter(|c| *c != '.').collect();
    let lead = all.bytes().take_while(|&b| b == b'0').count();
    let digits = all[lead..].trim_end_matches('0');
    // value = 0.<all> × 10^(int_len + exp10) ⇒ first significant digit at exponent:
    let e = i32::try_from(int_len).unwrap_or(0) + exp10 - 1 - i32::try_from(lead).unwrap_or(0);
    let nd = i32::try_from(digits.len()).unwrap_or(0);
    if (-4..16).contains(&e) {
        if e >= 0 {
            let int_digits = usize::try_from(e + 1).unwrap_or(0);
            if digits.len() > int_digits {
                out.push_str(&digits[..int_digits]);
                out.push('.');
                out.push_str(&digits[int_digits..]);
            } else {
                out.push_str(digits);
                for _ in 0..(e + 1 - nd) {
                    out.push('0');
                }
                out.push_str(".0");
            }
        } else {
            out.push_str("0.");
            for _ in 0..(-e - 1) {
                out.push('0');
            }
            out.push_str(digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if e < 0 { '-' } else { '+' });
        let a = e.unsigned_abs();
        if a < 10 {
            out.push('0');
        }
        out.push_str(&a.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn py(f: f64) -> String {
        let mut s = String::new();
        push_python_float(f, &mut s);
        s
    }

    #[test]
    fn floats_look_like_python() {
        for (f, want) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (-0.0, "-0.0"),
            (872_173_932_668_810.2, "872173932668810.2"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (123.456, "123.456"),
        ] {
            assert_eq!(py(f), want, "{f:e}");
        }
    }

    #[test]
    fn matches_python_repr_on_recorded_values() {
        #[derive(serde::Deserialize)]
        struct Case {
            bits: u64,
            repr: String,
        }
        #[derive(serde::Deserialize)]
        struct File {
            cases: Vec<Case>,
        }
        let f: File =
            serde_json::from_str(include_str!("../../conformance/capsule/float-repr.json"))
                .unwrap();
        assert!(f.cases.len() > 3000);
        for c in f.cases {
            let x = f64::from_bits(c.bits);
            assert_eq!(py(x), c.repr, "bits {:#x}", c.bits);
            // and the reader gets the same f64 back from Python's text
            assert_eq!(
                serde_json::from_str::<f64>(&c.repr).unwrap().to_bits(),
                c.bits,
                "{}",
                c.repr
            );
        }
    }

    #[test]
    fn strings_escape_minimally() {
        let v = serde_json::json!({"b": "a\"\\\n\r\t\u{8}\u{c}\u{1}\u{1f}/<>&\u{7f}\u{2028}é😀", "a": [1, 2.0, -0.0]});
        assert_eq!(
            to_canonical_string(&v).unwrap(),
            "{\"a\":[1,2.0,-0.0],\"b\":\"a\\\"\\\\\\n\\r\\t\\b\\f\\u0001\\u001f/<>&\u{7f}\u{2028}é😀\"}"
        );
    }

    #[test]
    fn non_finite_is_refused_with_its_path() {
        let mut m = Map::new();
        m.insert("x".into(), Value::Number(Number::from_f64(1.0).unwrap()));
        let v = serde_json::json!({"outcome": {"metrics": m}});
        assert_eq!(
            to_canonical_string(&v).unwrap(),
            r#"{"outcome":{"metrics":{"x":1.0}}}"#
        );
        // serde_json cannot even hold NaN in a Value; the writer still guards f64 input paths.
        assert_eq!(Number::from_f64(f64::NAN), None);
    }
}
