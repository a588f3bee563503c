//! Finding `model` (and the prompt's head, for affinity) in the first bytes of a JSON
//! request body that may not have fully arrived: a scanner over the top-level object that
//! skips every other value without building it, and says when it needs more bytes.

use std::hash::{Hash as _, Hasher as _};

/// What the look-ahead wants from a body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Want {
    /// Hash the prompt's head (`messages` up to the first user message, or the first
    /// `prefix_bytes` of `prompt`).
    pub(crate) affinity: bool,
    /// Bytes of a `prompt` hashed.
    pub(crate) prefix_bytes: usize,
}

/// What a scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Found {
    /// The `model` field.
    pub(crate) model: Option<String>,
    /// The hash of the prompt's head.
    pub(crate) affinity: Option<u64>,
    /// Nothing more is worth reading: everything wanted was found, the object ended, or
    /// the body is not a JSON object.
    pub(crate) finished: bool,
}

/// Why a scan stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The bytes end inside a value.
    More,
    /// Not JSON.
    Bad,
}

type R<T> = Result<T, Stop>;

struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cur<'_> {
    fn ws(&mut self) {
        while self
            .b
            .get(self.i)
            .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.i += 1;
        }
    }

    fn peek(&self) -> R<u8> {
        self.b.get(self.i).copied().ok_or(Stop::More)
    }

    fn expect(&mut self, c: u8) -> R<()> {
        self.ws();
        match self.peek()? {
            x if x == c => {
                self.i += 1;
                Ok(())
            }
            _ => Err(Stop::Bad),
        }
    }

    /// A string at the cursor: the span of its content (without the quotes).
    fn string(&mut self) -> R<(usize, usize)> {
        self.expect(b'"')?;
        let start = self.i;
        let mut j = start;
        loop {
            match self.b.get(j) {
                None => return Err(Stop::More),
                Some(b'\\') => j += 2,
                Some(b'"') => break,
                Some(_) => j += 1,
            }
        }
        self.i = j + 1;
        Ok((start, j))
    }

    /// Skips any value.
    fn skip(&mut self) -> R<()> {
        self.ws();
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Ok(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                // A number or a literal: up to the next delimiter.
                let start = self.i;
                while let Some(&c) = self.b.get(self.i) {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.i += 1;
                }
                match (self.i == start, self.i == self.b.len()) {
                    (true, _) => Err(Stop::Bad),
                    (_, true) => Err(Stop::More),
                    _ => Ok(()),
                }
            }
        }
    }

    /// A string value decoded (escapes included).
    fn decoded(&self, (start, end): (usize, usize)) -> Option<String> {
        let raw = &self.b[start..end];
        if !raw.contains(&b'\\') {
            return std::str::from_utf8(raw).ok().map(str::to_owned);
        }
        serde_json::from_slice(&self.b[start - 1..=end]).ok()
    }

    /// Inside an array of messages: the offset just past the first message whose `role`
    /// is `user` (or past the array when there is none).
    fn first_user_message_end(&mut self) -> R<usize> {
        self.expect(b'[')?;
        loop {
            self.ws();
            if self.peek()? == b']' {
                self.i += 1;
                return Ok(self.i);
            }
            let user = self.is_user_message()?;
            if user {
                return Ok(self.i);
            }
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {}
                _ => return Err(Stop::Bad),
            }
        }
    }

    /// Reads one message object; whether its `role` is `user`.
    fn is_user_message(&mut self) -> R<bool> {
        self.ws();
        if self.peek()? != b'{' {
            self.skip()?;
            return Ok(false);
        }
        self.i += 1;
        let mut user = false;
        loop {
            self.ws();
            if self.peek()? == b'}' {
                self.i += 1;
                return Ok(user);
            }
            let key = self.string()?;
            self.expect(b':')?;
            self.ws();
            if &self.b[key.0..key.1] == b"role" && self.peek()? == b'"' {
                let v = self.string()?;
                user = &self.b[v.0..v.1] == b"user";
            } else {
                self.skip()?;
            }
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {}
                _ => return Err(Stop::Bad),
            }
        }
    }
}

/// A hash of `bytes`, stable within this process.
pub(crate) fn hash(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Scans `buf`, the body's first bytes; `all` when they are all there will be (the body
/// ended, or the look-ahead's limit was reached: then a prompt head cut short is hashed
/// as far as it goes).
pub(crate) fn scan(buf: &[u8], want: Want, all: bool) -> Found {
    let mut found = Found::default();
    let mut c = Cur { b: buf, i: 0 };
    let outcome = (|| -> R<()> {
        c.expect(b'{')?;
        loop {
            c.ws();
            if c.peek()? == b'}' {
                return Ok(());
            }
            let key = c.string()?;
            c.expect(b':')?;
            c.ws();
            match &buf[key.0..key.1] {
                b"model" if c.peek()? == b'"' => {
                    let v = c.string()?;
                    found.model = c.decoded(v);
                }
                b"messages" if want.affinity && found.affinity.is_none() => {
                    let start = c.i;
                    let mut m = Cur { b: buf, i: start };
                    match m.first_user_message_end() {
                        Ok(end) => found.affinity = Some(hash(&buf[start..end])),
                        Err(Stop::More) if all => found.affinity = Some(hash(&buf[start..])),
                        Err(e) => return Err(e),
                    }
                    c.skip()?;
                }
                b"prompt" if want.affinity && found.affinity.is_none() => {
                    let start = c.i;
                    let head = |end: usize| &buf[start..end.min(start + want.prefix_bytes)];
                    match c.skip() {
                        Ok(()) => found.affinity = Some(hash(head(c.i))),
                        Err(Stop::More) if all || buf.len() - start >= want.prefix_bytes => {
                            found.affinity = Some(hash(head(buf.len())));
                            return Err(Stop::More);
                        }
                        Err(e) => return Err(e),
                    }
                }
                _ => c.skip()?,
            }
            if found.model.is_some() && (found.affinity.is_some() || !want.affinity) {
                return Ok(());
            }
            c.ws();
            match c.peek()? {
                b',' => c.i += 1,
                b'}' => {}
                _ => return Err(Stop::Bad),
            }
        }
    })();
    found.finished = !matches!(outcome, Err(Stop::More));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const WANT: Want = Want {
        affinity: true,
        prefix_bytes: 16,
    };

    fn model(body: &str) -> Option<String> {
        scan(body.as_bytes(), WANT, true).model
    }

    #[test]
    fn finds_the_model_anywhere_at_the_top_level() {
        assert_eq!(
            model(r#"{"model":"A","messages":[]}"#).as_deref(),
            Some("A")
        );
        assert_eq!(
            model(r#" { "stream" : true, "n": -1.5e3, "x": null, "o": {"model":"no"}, "model" : "B" } "#)
                .as_deref(),
            Some("B")
        );
        assert_eq!(model(r#"{"model":"a\"b\u00e9"}"#).as_deref(), Some("a\"bé"));
        assert_eq!(
            model(r#"{"messages":[{"content":"\"model\":\"x\""}]}"#),
            None
        );
        assert_eq!(model(r#"{"model":7}"#), None);
        assert_eq!(model("not json"), None);
        assert!(scan(b"not json", WANT, false).finished);
    }

    #[test]
    fn asks_for_more_until_the_model_is_there() {
        let body = br#"{"messages":[{"role":"user","content":"hi"}],"model":"llama"}"#;
        for cut in 0..body.len() - 1 {
            let f = scan(&body[..cut], WANT, false);
            // The model's closing quote is the body's last byte but one: never in a cut.
            assert_eq!(f.model, None, "cut {cut}");
            assert!(!f.finished, "cut {cut}: {f:?}");
        }
        let f = scan(body, WANT, false);
        assert_eq!(f.model.as_deref(), Some("llama"));
        assert!(f.finished);
        // The conversation through its first user message (the array's `]` not included).
        assert_eq!(
            f.affinity,
            Some(hash(br#"[{"role":"user","content":"hi"}"#))
        );
    }

    #[test]
    fn affinity_is_the_conversation_up_to_its_first_user_message() {
        let turn1 = r#"{"model":"A","messages":[{"role":"system","content":"S"},{"role":"user","content":"u1"}]}"#;
        let turn2 = r#"{"model":"A","messages":[{"role":"system","content":"S"},{"role":"user","content":"u1"},{"role":"assistant","content":"a1"},{"role":"user","content":"u2"}]}"#;
        let other = r#"{"model":"A","messages":[{"role":"system","content":"S"},{"role":"user","content":"v1"}]}"#;
        let a = |b: &str| scan(b.as_bytes(), WANT, true).affinity;
        assert_eq!(a(turn1), a(turn2));
        assert_ne!(a(turn1), a(other));
        // A prompt: its first bytes.
        let p1 = r#"{"model":"A","prompt":"0123456789abcdefXYZ"}"#;
        let p2 = r#"{"model":"A","prompt":"0123456789abcdefQQQ and more"}"#;
        assert_eq!(a(p1), a(p2));
        assert_ne!(a(p1), a(r#"{"model":"A","prompt":"0123456789abcZef"}"#));
        // Found before the prompt ends, when its head is there.
        let f = scan(
            br#"{"model":"A","prompt":"0123456789abcdefghij"#,
            WANT,
            false,
        );
        // The head: the prompt's first 16 bytes from its opening quote.
        assert_eq!(f.affinity, Some(hash(br#""0123456789abcde"#)));
    }

    #[test]
    fn stops_when_the_model_is_found_and_no_affinity_is_wanted() {
        let want = Want {
            affinity: false,
            prefix_bytes: 16,
        };
        let f = scan(
            br#"{"model":"A","input":"an endless embedding input"#,
            want,
            false,
        );
        assert_eq!(f.model.as_deref(), Some("A"));
        assert!(f.finished);
    }
}
