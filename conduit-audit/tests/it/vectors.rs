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

/// Each vector's canonical text and SHA3-256 are ours byte for byte.
fn assert_canonical_and_hash(vectors: Vec<Fixture>) {
    for v in vectors {
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

#[test]
fn all_16_golden_vectors_canonicalise_and_hash_exactly() {
    let all = golden();
    assert_eq!(all.len(), 16);
    assert_canonical_and_hash(all);
}

#[test]
fn golden_vectors_round_trip_through_the_typed_model() {
    for v in golden() {
        let typed: conduit_audit::Capsule = serde_json::from_value(v.capsule_dict.clone())
            .unwrap_or_else(|e| panic!("vector {}: {e}", v.name));
        assert_eq!(
            typed.canonical().unwrap(),
            v.canonical_json,
            "vector {}",
            v.name
        );
        assert_eq!(typed.hash().unwrap(), v.sha3_256_hash, "vector {}", v.name);
    }
}

#[test]
fn fixed_seed_signature_matches_pynacl() {
    let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
    let key = conduit_audit::SealKey::from_seed(&seed);
    let minimal = golden().into_iter().find(|v| v.name == "minimal").unwrap();
    let sig = key.sign_hash(&minimal.sha3_256_hash);
    // PyNaCl: SigningKey(bytes(range(32))).sign(hash_hex.encode()).signature.hex()
    assert!(
        sig.starts_with("24cd72fc") && sig.ends_with("4924508"),
        "{sig}"
    );
    assert_eq!(
        sig,
        include_str!("../../../conformance/capsule/seed-00-1f-minimal.sig").trim()
    );
    conduit_audit::verify_signature(&key.public_hex(), &minimal.sha3_256_hash, &sig).unwrap();
    let mut bad = sig.into_bytes();
    bad[0] = if bad[0] == b'0' { b'1' } else { b'0' };
    let err = conduit_audit::verify_signature(
        &key.public_hex(),
        &minimal.sha3_256_hash,
        std::str::from_utf8(&bad).unwrap(),
    );
    assert_eq!(err, Err(conduit_audit::SignatureError::Mismatch));
}

#[test]
fn audit_fixtures_valid_parse_and_invalid_are_refused() {
    let all: serde_json::Value = serde_json::from_str(include_str!(
        "../../../conformance/audit/audit-fixtures.json"
    ))
    .unwrap();
    let fixtures = all["fixtures"].as_array().unwrap();
    assert_eq!(fixtures.len(), 17);
    let mut reasons = Vec::new();
    for f in fixtures {
        let got = conduit_audit::AuditEvent::from_value(&f["entry"]);
        if f["valid"] == true {
            let ev = got.unwrap_or_else(|e| panic!("{}: {e}", f["description"]));
            assert_eq!(ev.timestamp(), f["entry"]["timestamp"].as_str().unwrap());
            // the line round-trips
            assert_eq!(
                conduit_audit::AuditEvent::from_line(&ev.to_line()).unwrap(),
                ev
            );
        } else {
            reasons.push(got.unwrap_err().to_string());
        }
    }
    assert_eq!(reasons.len(), 5);
    for needle in [
        "no \"timestamp\"",
        "no \"action\"",
        "\"pending\"",
        "\"details\" must be an object",
        "is not YYYY-MM-DDTHH:MM:SSZ",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(needle)),
            "{needle} not in {reasons:?}"
        );
    }
}

#[test]
fn own_vectors_from_the_reference_canonicalise_and_hash_exactly() {
    let own = serde_json::from_str::<Fixtures>(include_str!(
        "../../../conformance/capsule/own-vectors.json"
    ))
    .unwrap()
    .fixtures;
    assert_eq!(own.len(), 4);
    assert_canonical_and_hash(own);
}

#[test]
fn all_16_invalid_vectors_get_the_validators_category_and_field() {
    let all: serde_json::Value = serde_json::from_str(include_str!(
        "../../../conformance/capsule/invalid-fixtures.json"
    ))
    .unwrap();
    let fixtures = all["fixtures"].as_array().unwrap();
    assert_eq!(fixtures.len(), 16);
    for f in fixtures {
        let err = conduit_audit::validate_capsule(&f["capsule_dict"], f["claimed_hash"].as_str())
            .expect_err(f["name"].as_str().unwrap());
        let category = serde_json::to_value(err.category).unwrap();
        assert_eq!(
            (category.as_str().unwrap(), err.field.as_str()),
            (
                f["expected_error"].as_str().unwrap(),
                f["error_field"].as_str().unwrap()
            ),
            "vector {}: {err}",
            f["name"]
        );
    }
    // and every golden vector is valid, with its own hash
    for v in golden() {
        conduit_audit::validate_capsule(&v.capsule_dict, Some(&v.sha3_256_hash))
            .unwrap_or_else(|e| panic!("vector {}: {e}", v.name));
    }
}
