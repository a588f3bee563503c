//! The login and logout forms' bodies (`application/x-www-form-urlencoded`).

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

use crate::gateway::admin::unescape;

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
        (k == key.as_bytes()).then(|| unescape(&String::from_utf8_lossy(v)))
    })
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
        assert_eq!(unescape("%4"), "%4");
    }
}
