//! The look-ahead: reads a request body's first frames until its `model` is known (or the
//! limit is reached), keeping them to be sent on first; the rest of the body streams as it
//! comes. At most `lookahead_bytes` (and the frame that crosses it) are held.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use http_body::Frame;
use http_body_util::BodyExt as _;

use super::scan::{Found, Want, scan};
use crate::request_body::{BoxError, RequestBody};

/// A body whose first frames were read, and what they said.
pub(crate) struct Peeked {
    pub(crate) found: Found,
    /// The body to send on: the frames read, then the rest.
    pub(crate) body: RequestBody,
    /// Bytes held while looking.
    pub(crate) held: usize,
}

/// Reads `body` until `model` is found with what `want` asks, the body ends, or `limit`
/// bytes are held. A failure of the body itself (too large, idle, cut short) is returned
/// as the body reported it.
pub(crate) async fn peek(
    mut body: RequestBody,
    want: Want,
    limit: usize,
) -> Result<Peeked, BoxError> {
    let mut head: VecDeque<Frame<Bytes>> = VecDeque::new();
    let mut buf = BytesMut::new();
    let mut scanned = 0usize;
    let found = loop {
        let frame = body.frame().await.transpose()?;
        let ended = frame.is_none();
        if let Some(f) = frame {
            match f.data_ref() {
                Some(d) => buf.extend_from_slice(d),
                // Trailers: nothing more will come.
                None => {
                    head.push_back(f);
                    break scan(&buf, want, true);
                }
            }
            head.push_back(f);
        }
        let full = buf.len() >= limit;
        // Scanned again only when a quarter more (at least 1 KiB) has come: a body sent a
        // byte at a time costs a few scans, not one per byte.
        let grown = buf.len() >= scanned + (scanned / 4).max(1024);
        if ended || full || grown {
            let found = scan(&buf, want, ended || full);
            scanned = buf.len();
            if found.finished || ended || full {
                break found;
            }
        }
    };
    let held = buf.len();
    Ok(Peeked {
        found,
        body: RequestBody::replay(head, body),
        held,
    })
}
