//! Paths as grants see them: the upstream's reading (escapes decoded, dot segments
//! resolved) and segment-wise prefixes.

use std::borrow::Cow;

/// Whether `path` is `prefix` or below it (segment-wise: `/api/gen` is not under
/// `/api/generate`, and `/api/generatex` is not under it either).
pub(super) fn under(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

/// The path as the upstream will read it: percent-escapes of unreserved characters and `/`
/// decoded, `.` and `..` segments resolved, the query left out. A plain path is borrowed.
pub(super) fn normalize(path: &str) -> Cow<'_, str> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if !path.contains('%') && !path.contains("/.") && !path.contains("//") {
        return Cow::Borrowed(path);
    }
    let decoded = percent_decode(path);
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut s = String::with_capacity(decoded.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if decoded.ends_with('/') || s.is_empty() {
        s.push('/');
    }
    Cow::Owned(s)
}

/// `s` with its `%XX` escapes decoded (invalid ones kept as they are; invalid UTF-8
/// replaced): how the evaluator reads a path before matching grants.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
