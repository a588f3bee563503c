//! Any bytes as a client connection to the proxy (HTTP/1.1 when the first byte is even,
//! HTTP/2 otherwise): request parsing, host extraction and route matching must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let h2 = first % 2 == 1;
    let out = conduit_proxy::internal::fuzz_request(rest, h2);
    if !h2 {
        // an HTTP answer (1.1, or 1.0 to an HTTP/1.0 request) or a closed connection
        assert!(out.is_empty() || out.starts_with(b"HTTP/1.1 ") || out.starts_with(b"HTTP/1.0 "));
    }
    let _ = conduit_proxy::internal::fuzz_host(rest);
});
