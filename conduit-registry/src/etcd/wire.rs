//! The JSON shapes of etcd's v3 gateway (`/v3/kv/range`, `/v3/kv/txn`, `/v3/watch`), as
//! etcd 3.4 speaks them: keys and values in base64, 64-bit numbers as strings, fields at
//! their zero value left out.

use serde::{Deserialize, Deserializer, Serialize};

/// Standard base64 with padding, as the gateway encodes bytes.
pub(crate) fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (k, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if k <= chunk.len() {
                out.push(char::from(A[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` on anything else.
pub(crate) fn unb64(s: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    };
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (k, &c) in chunk.iter().enumerate() {
            n |= digit(c)? << (18 - 6 * k);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

fn num<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        S(String),
        U(u64),
    }
    match N::deserialize(d)? {
        N::U(n) => Ok(n),
        N::S(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

/// `RangeRequest`: `key` up to `range_end` (both base64).
#[derive(Debug, Serialize, Default)]
pub(crate) struct RangeRequest {
    pub(crate) key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) range_end: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) revision: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) min_mod_revision: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) count_only: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The header every response carries.
#[derive(Debug, Deserialize, Default, Clone, Copy)]
pub(crate) struct Header {
    #[serde(default, deserialize_with = "num")]
    pub(crate) revision: u64,
}

/// One key and its value.
#[derive(Debug, Deserialize, Clone)]
pub(crate) struct KeyValue {
    pub(crate) key: String,
    #[serde(default)]
    pub(crate) value: String,
    #[serde(default, deserialize_with = "num")]
    pub(crate) mod_revision: u64,
}

/// `RangeResponse`.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct RangeResponse {
    #[serde(default)]
    pub(crate) header: Header,
    #[serde(default)]
    pub(crate) kvs: Vec<KeyValue>,
    #[serde(default)]
    pub(crate) more: bool,
}

/// One comparison of a transaction.
#[derive(Debug, Serialize)]
pub(crate) struct Compare {
    pub(crate) key: String,
    pub(crate) result: &'static str,
    pub(crate) target: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mod_revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<u64>,
}

/// A put inside a transaction.
#[derive(Debug, Serialize)]
pub(crate) struct Put {
    pub(crate) key: String,
    pub(crate) value: String,
}

/// One operation of a transaction's branch.
#[derive(Debug, Serialize)]
pub(crate) enum RequestOp {
    /// Store a key.
    #[serde(rename = "request_put")]
    Put(Put),
}

/// `TxnRequest`.
#[derive(Debug, Serialize)]
pub(crate) struct TxnRequest {
    pub(crate) compare: Vec<Compare>,
    pub(crate) success: Vec<RequestOp>,
}

/// `TxnResponse`.
#[derive(Debug, Deserialize)]
pub(crate) struct TxnResponse {
    #[serde(default)]
    pub(crate) header: Header,
    #[serde(default)]
    pub(crate) succeeded: bool,
}

/// `WatchCreateRequest` inside its envelope.
#[derive(Debug, Serialize)]
pub(crate) struct WatchRequest {
    pub(crate) create_request: WatchCreate,
}

/// What to watch, from which revision.
#[derive(Debug, Serialize)]
pub(crate) struct WatchCreate {
    pub(crate) key: String,
    pub(crate) range_end: String,
    pub(crate) start_revision: u64,
}

/// One message of the watch stream.
#[derive(Debug, Deserialize)]
pub(crate) struct WatchMessage {
    pub(crate) result: Option<WatchResult>,
    pub(crate) error: Option<GatewayError>,
}

/// A watch response.
#[derive(Debug, Deserialize)]
pub(crate) struct WatchResult {
    #[serde(default)]
    pub(crate) header: Header,
    #[serde(default)]
    pub(crate) canceled: bool,
    #[serde(default, deserialize_with = "num")]
    pub(crate) compact_revision: u64,
    #[serde(default)]
    pub(crate) cancel_reason: String,
    #[serde(default)]
    pub(crate) events: Vec<WatchEvent>,
}

/// A change: a put (no `type`) or a `DELETE`.
#[derive(Debug, Deserialize)]
pub(crate) struct WatchEvent {
    #[serde(default, rename = "type")]
    pub(crate) kind: Option<String>,
    pub(crate) kv: KeyValue,
}

/// An error the gateway reports instead of a response.
#[derive(Debug, Deserialize)]
pub(crate) struct GatewayError {
    #[serde(default)]
    pub(crate) message: String,
    #[serde(default)]
    pub(crate) code: u64,
}

/// The end of the range holding every key that starts with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_matches_the_standard() {
        assert_eq!(b64(b"/c/rev"), "L2MvcmV2");
        assert_eq!(b64(b"1"), "MQ==");
        assert_eq!(b64(b"ab"), "YWI=");
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(unb64(&b64(&data)).as_deref(), Some(&data[..]));
        }
        assert_eq!(unb64("L2Mv*"), None);
        assert_eq!(unb64("A"), None);
    }

    #[test]
    fn numbers_come_as_strings_or_numbers() {
        let r: RangeResponse = serde_json::from_str(
            r#"{"header":{"revision":"42"},"kvs":[{"key":"YQ==","mod_revision":7}]}"#,
        )
        .unwrap();
        assert_eq!((r.header.revision, r.kvs[0].mod_revision), (42, 7));
        assert!(r.kvs[0].value.is_empty());
    }

    #[test]
    fn prefix_end_covers_the_prefix() {
        assert_eq!(prefix_end(b"/c/"), b"/c0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
    }
}
