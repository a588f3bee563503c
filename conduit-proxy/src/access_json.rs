//! The access log's line, written by hand into a reused buffer: the same bytes serde_json
//! writes for an [`AccessRecord`] (a test holds them equal), at a fraction of the cost on
//! the writer thread (which shares the proxy's core).

use std::io::Write as _;

use crate::access::AccessRecord;

/// Appends `r` as one JSON object and a newline to `out`.
pub(crate) fn encode(r: &AccessRecord, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":\"");
    time(r.time, out);
    out.extend_from_slice(b"\",\"client\":\"");
    ip(r.client, out);
    out.push(b'"');
    if let Some(p) = &r.peer {
        out.extend_from_slice(b",\"peer\":");
        string(p, out);
    }
    out.extend_from_slice(b",\"host\":");
    string(&r.host, out);
    out.extend_from_slice(b",\"upstream\":");
    match &r.upstream {
        Some(u) => string(u, out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"method\":");
    string(r.method.as_str(), out);
    out.extend_from_slice(b",\"path\":");
    string(&r.path, out);
    for (key, n) in [
        (&b",\"status\":"[..], u64::from(r.status)),
        (b",\"bytes\":", r.bytes),
        (b",\"ttfb_us\":", r.ttfb_us),
        (b",\"duration_us\":", r.duration_us),
    ] {
        out.extend_from_slice(key);
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }
    if let Some(e) = &r.llm {
        llm(e, out);
    }
    out.extend_from_slice(b"}\n");
}

/// `,"llm":{…}`: a model decision.
fn llm(e: &crate::RouteExplanation, out: &mut Vec<u8>) {
    let text = |v: &Option<std::sync::Arc<str>>, out: &mut Vec<u8>| match v {
        Some(v) => string(v, out),
        None => out.extend_from_slice(b"null"),
    };
    out.extend_from_slice(b",\"llm\":{\"model\":");
    text(&e.model, out);
    out.extend_from_slice(b",\"affinity\":");
    text(&e.affinity, out);
    out.extend_from_slice(b",\"scores\":[");
    for (i, s) in e.scores.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"upstream\":");
        string(&s.upstream, out);
        out.extend_from_slice(b",\"score\":");
        number(s.score, out);
        out.extend_from_slice(b",\"load\":");
        number(s.load, out);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

/// A float as serde_json writes one (`null` when not finite).
fn number(v: f64, out: &mut Vec<u8>) {
    if v.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// An address as `Display` writes it; IPv4 (the usual one) without the formatting machinery.
fn ip(a: std::net::IpAddr, out: &mut Vec<u8>) {
    match a {
        std::net::IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(itoa::Buffer::new().format(o).as_bytes());
            }
        }
        std::net::IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

thread_local! {
    /// The last second formatted (`YYYY-MM-DDTHH:MM:SS`): records of the same second reuse it.
    static SECOND: std::cell::Cell<(i64, [u8; 19])> = const { std::cell::Cell::new((i64::MIN, [0; 19])) };
}

/// `YYYY-MM-DDTHH:MM:SS` of `t` (in UTC) into `out`.
fn date_time(t: time::OffsetDateTime, out: &mut impl std::io::Write) -> std::io::Result<()> {
    let (y, m, d) = t.to_calendar_date();
    let (h, min, s) = t.to_hms();
    write!(
        out,
        "{y:04}-{:02}-{d:02}T{h:02}:{min:02}:{s:02}",
        u8::from(m)
    )
}

/// RFC 3339 in UTC to the microsecond, trailing zeros of the fraction left out (as the
/// `time` crate writes it).
fn time(t: time::OffsetDateTime, out: &mut Vec<u8>) {
    let t = t.to_offset(time::UtcOffset::UTC);
    let second = t.unix_timestamp();
    match SECOND.try_with(std::cell::Cell::get) {
        Ok((last, text)) if last == second => out.extend_from_slice(&text),
        _ => {
            let mut text = [0u8; 19];
            if date_time(t, &mut &mut text[..]).is_ok() {
                let _ = SECOND.try_with(|c| c.set((second, text)));
                out.extend_from_slice(&text);
            } else {
                // A year outside 0000-9999 is longer: written as it is, not kept.
                let _ = date_time(t, out);
            }
        }
    }
    let micro = t.microsecond();
    if micro != 0 {
        let mut digits = [b'0'; 6];
        let mut n = micro;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        let keep = 6 - digits.iter().rev().take_while(|&&d| d == b'0').count();
        out.push(b'.');
        out.extend_from_slice(&digits[..keep]);
    }
    out.push(b'Z');
}

/// A JSON string, escaped as serde_json escapes it.
fn string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                let _ = write!(out, "\\u{b:04x}");
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn record(path: &str, nanos: i128, peer: Option<&str>, upstream: Option<&str>) -> AccessRecord {
        AccessRecord {
            time: time::OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap(),
            client: if nanos % 2 == 0 {
                "10.8.0.2".parse().unwrap()
            } else {
                "fd00::2".parse().unwrap()
            },
            peer: peer.map(Into::into),
            host: "web.internal".into(),
            upstream: upstream.map(Arc::from),
            method: http::Method::POST,
            path: path.into(),
            status: 503,
            bytes: u64::MAX,
            ttfb_us: 0,
            duration_us: 1_234_567,
            llm: None,
        }
    }

    #[test]
    fn the_same_bytes_as_serde_json() {
        let paths = [
            "/",
            "/a\"b\\c",
            "/ctl\u{1}\u{8}\u{c}\n\r\t\u{1f}\u{7f}",
            "/ünïcödé/☃",
        ];
        let times = [
            0,
            1_764_417_600_000_000_000,
            1_764_417_600_123_456_789,
            1_764_417_600_100_000_000,
            1_764_417_600_000_001_000,
            253_402_300_799_999_999_999,
        ];
        for path in paths {
            for &t in &times {
                for peer in [None, Some("alice"), Some("o\"dd")] {
                    for up in [None, Some("http://127.0.0.1:9000")] {
                        let mut r = record(path, t, peer, up);
                        if t % 3 == 0 {
                            r.llm = Some(Arc::new(crate::RouteExplanation {
                                model: up.map(|_| Arc::from("meta/llama \"3\"")),
                                affinity: peer.map(Arc::from),
                                scores: vec![
                                    crate::UpstreamScore {
                                        upstream: Arc::from("http://127.0.0.1:9000"),
                                        score: -6.25,
                                        load: 2.0,
                                    },
                                    crate::UpstreamScore {
                                        upstream: Arc::from(path),
                                        score: 1e21,
                                        load: f64::NAN,
                                    },
                                ],
                            }));
                        }
                        let mut ours = Vec::new();
                        encode(&r, &mut ours);
                        let mut theirs = serde_json::to_vec(&r).unwrap();
                        theirs.push(b'\n');
                        assert_eq!(
                            String::from_utf8_lossy(&ours),
                            String::from_utf8_lossy(&theirs)
                        );
                    }
                }
            }
        }
    }
}
