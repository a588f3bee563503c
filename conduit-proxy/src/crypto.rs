//! The cryptography the proxy's TLS uses: rustls's aws-lc-rs provider, whose TLS 1.3 suites
//! derive their keys through an HKDF that prepares each key's HMAC state once.
//!
//! The provider's own HKDF (`aws_lc_rs::hkdf`) runs HKDF-Extract again inside every
//! HKDF-Expand and sets up the HMAC key (two compression-function blocks) for every output:
//! about eight SHA-384 blocks per derived secret, where two suffice once the key's inner and
//! outer states are kept. A full TLS 1.3 handshake derives some twenty secrets, and this was
//! a tenth of the proxy's CPU per handshake (`perf`, `aws_lc_rs::hkdf::Okm::fill`). The
//! values are the same (HKDF is defined on HMAC, RFC 5869); the tests below hold them equal
//! to the provider's. Everything else (ciphers, key exchange, signatures, randomness) is the
//! provider's, unchanged.

use std::sync::OnceLock;

use aws_lc_rs::hmac as lc;
use rustls::SupportedCipherSuite;
use rustls::crypto::hmac::{Hmac, Key, Tag};
use rustls::crypto::tls13::HkdfUsingHmac;
use rustls::crypto::{CipherSuiteCommon, CryptoProvider};

/// rustls's aws-lc-rs provider (`default_provider`), its TLS 1.3 suites deriving keys with
/// prepared HMAC keys; the suites, their order and every other part are unchanged.
pub(crate) fn provider() -> CryptoProvider {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    for s in &mut p.cipher_suites {
        *s = prepared(*s);
    }
    p
}

/// HMAC with one hash of aws-lc-rs, its keys prepared once.
#[derive(Debug)]
struct PreparedHmac(lc::Algorithm);

static HMAC_SHA256: PreparedHmac = PreparedHmac(lc::HMAC_SHA256);
static HMAC_SHA384: PreparedHmac = PreparedHmac(lc::HMAC_SHA384);
static HKDF_SHA256: HkdfUsingHmac<'static> = HkdfUsingHmac(&HMAC_SHA256);
static HKDF_SHA384: HkdfUsingHmac<'static> = HkdfUsingHmac(&HMAC_SHA384);

impl Hmac for PreparedHmac {
    fn with_key(&self, key: &[u8]) -> Box<dyn Key> {
        // aws-lc computes the key's inner and outer hash states here; each tag then starts
        // from a copy of them.
        Box::new(PreparedKey(lc::Key::new(self.0, key)))
    }

    fn hash_output_len(&self) -> usize {
        self.0.digest_algorithm().output_len()
    }
}

/// One HMAC key, its inner and outer hash states computed.
struct PreparedKey(lc::Key);

impl Key for PreparedKey {
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> Tag {
        let mut ctx = lc::Context::with_key(&self.0);
        ctx.update(first);
        for m in middle {
            ctx.update(m);
        }
        ctx.update(last);
        Tag::new(ctx.sign().as_ref())
    }

    fn tag_len(&self) -> usize {
        self.0.algorithm().digest_algorithm().output_len()
    }
}

/// `suite` deriving its keys with [`PreparedHmac`] (TLS 1.3 suites of SHA-256 or SHA-384);
/// any other suite as it is.
fn prepared(suite: SupportedCipherSuite) -> SupportedCipherSuite {
    use rustls::CipherSuite as C;
    static SUITES: OnceLock<Vec<rustls::Tls13CipherSuite>> = OnceLock::new();
    let SupportedCipherSuite::Tls13(original) = suite else {
        return suite;
    };
    let suites = SUITES.get_or_init(|| {
        rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES
            .iter()
            .filter_map(|s| {
                let o = s.tls13()?;
                let hkdf: &'static HkdfUsingHmac<'static> = match o.common.suite {
                    C::TLS13_AES_256_GCM_SHA384 => &HKDF_SHA384,
                    C::TLS13_AES_128_GCM_SHA256 | C::TLS13_CHACHA20_POLY1305_SHA256 => &HKDF_SHA256,
                    _ => return None,
                };
                Some(rustls::Tls13CipherSuite {
                    common: CipherSuiteCommon {
                        suite: o.common.suite,
                        hash_provider: o.common.hash_provider,
                        confidentiality_limit: o.common.confidentiality_limit,
                    },
                    hkdf_provider: hkdf,
                    aead_alg: o.aead_alg,
                    quic: o.quic,
                })
            })
            .collect()
    });
    match suites
        .iter()
        .find(|s| s.common.suite == original.common.suite)
    {
        Some(s) => SupportedCipherSuite::Tls13(s),
        None => suite,
    }
}

#[cfg(test)]
mod tests {
    use rustls::crypto::tls13::{Hkdf, HkdfExpander, OkmBlock};

    use super::*;

    fn suites() -> Vec<(&'static dyn Hkdf, &'static dyn Hkdf, rustls::CipherSuite)> {
        let ours = provider();
        rustls::crypto::aws_lc_rs::default_provider()
            .cipher_suites
            .iter()
            .filter_map(|s| s.tls13())
            .map(|theirs| {
                let mine = ours
                    .cipher_suites
                    .iter()
                    .filter_map(|s| s.tls13())
                    .find(|s| s.common.suite == theirs.common.suite)
                    .map(|s| s.hkdf_provider)
                    .unwrap_or(theirs.hkdf_provider);
                (mine, theirs.hkdf_provider, theirs.common.suite)
            })
            .collect()
    }

    fn outputs(h: &dyn Hkdf, secret: &[u8], salt: Option<&[u8]>) -> Vec<Vec<u8>> {
        let expanders: Vec<Box<dyn HkdfExpander>> = vec![
            h.extract_from_secret(salt, secret),
            h.extract_from_zero_ikm(salt),
            h.expander_for_okm(&OkmBlock::new(&secret[..secret.len().min(48)])),
        ];
        let mut out = Vec::new();
        for e in &expanders {
            out.push(
                e.expand_block(&[b"tls13 ", b"derived", &[0u8; 3]])
                    .as_ref()
                    .to_vec(),
            );
            for len in [12, 16, 32, 48, 100] {
                let mut buf = vec![0u8; len];
                e.expand_slice(&[b"label", secret], &mut buf)
                    .map_err(|_| "expand_slice")
                    .unwrap();
                out.push(buf);
            }
        }
        let key = OkmBlock::new(&secret[..secret.len().min(48)]);
        out.push(h.hmac_sign(&key, b"finished").as_ref().to_vec());
        out
    }

    #[test]
    fn every_tls13_suite_derives_what_the_provider_derives() {
        let all = suites();
        assert_eq!(all.len(), 3, "the provider's three TLS 1.3 suites");
        for (mine, theirs, suite) in all {
            assert!(!std::ptr::addr_eq(mine, theirs), "{suite:?} was replaced");
            for (secret, salt) in [
                (&[7u8; 48][..], None),
                (&[1u8; 32][..], Some(&[9u8; 48][..])),
                (&b"a secret longer than any block of the hash, to be hashed first: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"[..], Some(&b"salt"[..])),
                (&[][..], Some(&[][..])),
            ] {
                assert_eq!(outputs(mine, secret, salt), outputs(theirs, secret, salt), "{suite:?}");
            }
        }
    }

    #[test]
    fn rfc5869_test_case_1() {
        let ikm = [0x0bu8; 22];
        let salt: Vec<u8> = (0x00u8..=0x0c).collect();
        let info: Vec<u8> = (0xf0u8..=0xf9).collect();
        let mut okm = [0u8; 42];
        HKDF_SHA256
            .extract_from_secret(Some(&salt), &ikm)
            .expand_slice(&[&info], &mut okm)
            .map_err(|_| "expand_slice")
            .unwrap();
        let hex: String = okm.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    #[test]
    fn other_suites_are_kept() {
        let ours = provider();
        let theirs = rustls::crypto::aws_lc_rs::default_provider();
        let names = |p: &CryptoProvider| {
            p.cipher_suites
                .iter()
                .map(|s| s.suite())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&ours), names(&theirs), "same suites, same order");
        assert_eq!(ours.kx_groups.len(), theirs.kx_groups.len());
    }
}
