//! The login and logout forms' bodies (`application/x-www-form-urlencoded`).

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

/// The largest form read.
const MAX_FORM: usize = 4096;

/// A form body (`application/x-www-form-urlencoded`), at most [`MAX_FORM`] bytes.
pub(super) async fn read_form(body: Incoming) -> Option<Bytes> {
    http_body_util::Limited::new(body, MAX_FORM)
        .collect()
        .await
        .ok()
        .map(http_body_util::Collected::to_bytes)
}

/// The value of `key` in a form body, percent-decoded (`+` is a space).
pub(super) fn form_value(form: &[u8], key: &str) -> Option<String> {
    form.split(|b| *b == b'&').find_map(|kv| {
        let (k, v) = match kv.iter().position(|b| *b == b'=') {
            Some(i) => (&kv[..i], &kv[i + 1..]),
            None => (kv, &kv[kv.len()..]),
        };
        (k == key.as_bytes()).then(|| percent_decode(v))
    })
}

fn percent_decode(v: &[u8]) -> String {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < v.len() => {
                let hex = std::str::from_utf8(&v[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_decoded() {
        let form = b"csrf=a%2Fb&token=cdt_01+x%zz&empty=";
        assert_eq!(form_value(form, "csrf").as_deref(), Some("a/b"));
        assert_eq!(form_value(form, "token").as_deref(), Some("cdt_01 x%zz"));
        assert_eq!(form_value(form, "empty").as_deref(), Some(""));
        assert_eq!(form_value(form, "missing"), None);
        assert_eq!(percent_decode(b"%4"), "%4");
    }
}
