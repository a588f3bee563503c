//! The Capsule golden vectors: canonical bytes and SHA3-256 of each.

use conduit_audit::canonical::to_canonical_string;
use serde::Deserialize;
use sha3::{Digest, Sha3_256};

#[derive(Deserialize)]
pub(crate) struct Fixture {
    pub(crate) name: String,
    pub(crate) capsule_dict: serde_json::Value,
    pub(crate) canonical_json: String,
    pub(crate) sha3_256_hash: String,
}

#[derive(Deserialize)]
pub(crate) struct Fixtures {
    pub(crate) fixtures: Vec<Fixture>,
}

pub(crate) fn golden() -> Vec<Fixture> {
    serde_json::from_str::<Fixtures>(include_str!("../../../conformance/capsule/fixtures.json"))
        .unwrap()
        .fixtures
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn all_16_golden_vectors_canonicalise_and_hash_exactly() {
    let all = golden();
    assert_eq!(all.len(), 16);
    for v in all {
        let got = to_canonical_string(&v.capsule_dict).unwrap();
        assert_eq!(got, v.canonical_json, "vector {}", v.name);
        assert_eq!(
            hex(&Sha3_256::digest(got.as_bytes())),
            v.sha3_256_hash,
            "vector {}",
            v.name
        );
    }
}
