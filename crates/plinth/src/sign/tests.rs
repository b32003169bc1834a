//! Tests of the signing format: keys against fixtures made by OpenSSL and
//! by an independent Python writer of cosign's encrypted format
//! (`tests/fixtures/keys/make.sh`); documents by pinned bytes
//! (determinism), known answers, merging and tampered input.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use super::SignError;
use super::bundle::{self, BUNDLE_V03_MEDIA_TYPE};
use super::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE, pae};
use super::image::{self, Existing, Merge};
use super::intoto::{self, SbomFormat};
use super::key::{
    KeyProblem, Password, PublicKey, ScryptStrength, SigningKey, load_public_key, load_signing_key,
    parse_signing_key, write_new_key_pair,
};
use super::simple_signing::{self, SIGNATURE_ANNOTATION};
use crate::oci::Descriptor;
use crate::support::digest::sha256_digest;

fn b64_decode_for_tests(s: &str) -> Option<Vec<u8>> {
    super::b64::decode_lenient(s)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name)
}

fn expected_public() -> PublicKey {
    load_public_key(&fixture("pkcs8.pub")).unwrap()
}

#[test]
fn pkcs8_sec1_and_cosign_files_load() {
    let public = expected_public();
    let pw = Password::from("correct horse");
    for (name, password) in [
        ("pkcs8.pem", None),
        ("cosign_sigstore.key", Some(&pw)),
        // Empty password, older label, legacy scrypt N=2^15: None tries "".
        ("cosign_legacy_nopass.key", None),
    ] {
        let key =
            load_signing_key(&fixture(name), password).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(key.public_key(), public, "{name}");
    }
    for name in ["sec1.pem", "sec1_with_params.pem"] {
        load_signing_key(&fixture(name), None).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

fn problem(name: &str, password: Option<&Password>) -> (KeyProblem, String) {
    let err = load_signing_key(&fixture(name), password).unwrap_err();
    let line = err.to_string();
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(line.contains(name), "names the file: {line}");
    (err.problem, line)
}

#[test]
fn refusals_say_what_is_wrong() {
    let (p, line) = problem("p384_sec1.pem", None);
    assert!(matches!(p, KeyProblem::UnsupportedCurve(_)), "{line}");
    assert!(line.contains("P-384"), "{line}");
    let (p, line) = problem("p384_pkcs8.pem", None);
    assert!(
        matches!(p, KeyProblem::UnsupportedCurve(_)) && line.contains("P-384"),
        "{line}"
    );
    let (p, line) = problem("k256_sec1.pem", None);
    assert!(
        matches!(p, KeyProblem::UnsupportedCurve(_)) && line.contains("secp256k1"),
        "{line}"
    );
    let (p, line) = problem("rsa_pkcs8.pem", None);
    assert!(
        matches!(p, KeyProblem::UnsupportedAlgorithm(_)) && line.contains("RSA"),
        "{line}"
    );
    let (p, line) = problem("ed25519.pem", None);
    assert!(
        matches!(p, KeyProblem::UnsupportedAlgorithm(_)) && line.contains("Ed25519"),
        "{line}"
    );
    let (p, _) = problem("encrypted_pkcs8.pem", None);
    assert!(matches!(p, KeyProblem::EncryptedPkcs8));
    let (p, _) = problem("openssl_encrypted_sec1.pem", None);
    assert!(matches!(p, KeyProblem::OpensslEncrypted));
    let (p, line) = problem("pkcs8.pub", None);
    assert!(
        matches!(p, KeyProblem::NotPrivateKey(_)) && line.contains("PUBLIC KEY"),
        "{line}"
    );
    let (p, _) = problem("make.sh", None);
    assert!(matches!(p, KeyProblem::NotPem));
    let (p, _) = problem("does-not-exist.pem", None);
    assert!(matches!(p, KeyProblem::Read(_)));
}

#[test]
fn cosign_passwords() {
    let wrong = Password::from("battery staple");
    let (p, line) = problem("cosign_sigstore.key", Some(&wrong));
    assert!(matches!(p, KeyProblem::WrongPassword), "{line}");
    assert!(!line.contains("battery"), "password leaked: {line}");
    let (p, _) = problem("cosign_sigstore.key", None);
    assert!(matches!(p, KeyProblem::PasswordRequired));
}

#[test]
fn cosign_format_written_by_us_equals_the_python_writer() {
    // Same key, password, salt and nonce as make.sh: the files must be
    // byte-identical, which pins our JSON field order, base64 and PEM layout
    // to go-securesystemslib's as the Python writer reproduces it.
    let key = load_signing_key(&fixture("pkcs8.pem"), None).unwrap();
    let salt: Vec<u8> = (0u8..32).collect();
    let nonce: [u8; 24] = std::array::from_fn(|i| 0xa0 + i as u8);
    let ours = key
        .to_cosign_encrypted_pem_with(
            &Password::from("correct horse"),
            ScryptStrength::Standard,
            &salt,
            &nonce,
        )
        .unwrap();
    let python = std::fs::read_to_string(fixture("cosign_sigstore.key")).unwrap();
    assert_eq!(ours.as_str(), python);
    // And a random-salt file round-trips.
    let pw = Password::from("x");
    let pem = key.to_cosign_encrypted_pem(&pw).unwrap();
    assert_eq!(
        parse_signing_key(pem.as_bytes(), Some(&pw))
            .unwrap()
            .public_key(),
        key.public_key()
    );
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let key = load_signing_key(&fixture("pkcs8.pem"), None).unwrap();
    let pem = key.to_pkcs8_pem().unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let debug = format!("{key:?} {:?}", Password::from("hunter2"));
    assert!(!debug.contains("hunter2"), "{debug}");
    // No 8-character run of the PKCS#8 base64 (which holds the scalar).
    for window in body.as_bytes().windows(8) {
        assert!(
            !debug.contains(std::str::from_utf8(window).unwrap()),
            "{debug}"
        );
    }
    assert!(debug.contains("redacted"), "{debug}");
}

#[test]
fn public_key_pem_round_trips_and_matches_openssl() {
    let key = load_signing_key(&fixture("pkcs8.pem"), None).unwrap();
    let openssl_pub = std::fs::read_to_string(fixture("pkcs8.pub")).unwrap();
    assert_eq!(key.public_key().to_pem(), openssl_pub);
    assert_eq!(PublicKey::from_pem(&openssl_pub).unwrap(), key.public_key());
}

#[test]
fn keygen_writes_0600_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("plinth.key");
    let public = dir.path().join("plinth.pub");
    let pk = write_new_key_pair(&private, &public).unwrap();
    let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&private).unwrap();
    assert!(
        text.starts_with("-----BEGIN PRIVATE KEY-----\n"),
        "{text:.30}"
    );
    assert_eq!(load_signing_key(&private, None).unwrap().public_key(), pk);
    assert_eq!(load_public_key(&public).unwrap(), pk);
    let before = std::fs::read(&private).unwrap();
    let err = write_new_key_pair(&private, &dir.path().join("other.pub")).unwrap_err();
    assert!(matches!(err.problem, KeyProblem::Exists), "{err}");
    assert_eq!(std::fs::read(&private).unwrap(), before);
    assert!(!dir.path().join("other.pub").exists());
}

/// Deterministic byte mutations of every fixture: parsing must return an
/// error or a key, never panic. cosign files are mutated only a little,
/// since every mutation that keeps valid scrypt parameters costs a KDF run.
#[test]
fn hostile_input_never_panics() {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let names = [
        "pkcs8.pem",
        "sec1.pem",
        "sec1_with_params.pem",
        "p384_sec1.pem",
        "rsa_pkcs8.pem",
        "ed25519.pem",
        "encrypted_pkcs8.pem",
        "pkcs8.pub",
    ];
    for name in names {
        let original = std::fs::read(fixture(name)).unwrap();
        for _ in 0..300 {
            let mut bytes = original.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % bytes.len();
                bytes[i] = next() as u8;
            }
            if next() % 5 == 0 {
                bytes.truncate((next() as usize) % bytes.len());
            }
            let _ = parse_signing_key(&bytes, None);
            let _ = PublicKey::from_pem(&String::from_utf8_lossy(&bytes));
        }
    }
    // DER-level mutations: decode, flip bytes inside, re-encode as PEM.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    for name in ["pkcs8.pem", "sec1.pem"] {
        let text = std::fs::read_to_string(fixture(name)).unwrap();
        let label = text.lines().next().unwrap().to_owned();
        let end = label.replace("BEGIN", "END");
        let der = b64
            .decode(
                text.lines()
                    .filter(|l| !l.starts_with("-----"))
                    .collect::<String>(),
            )
            .unwrap();
        for _ in 0..2000 {
            let mut der = der.clone();
            let i = (next() as usize) % der.len();
            der[i] = next() as u8;
            if next() % 4 == 0 {
                der.truncate((next() as usize) % der.len());
            }
            let pem = format!("{label}\n{}\n{end}\n", b64.encode(&der));
            let _ = parse_signing_key(pem.as_bytes(), None);
        }
    }
    let cosign = std::fs::read(fixture("cosign_legacy_nopass.key")).unwrap();
    for _ in 0..10 {
        let mut bytes = cosign.clone();
        let i = 50 + (next() as usize) % (bytes.len() - 100);
        bytes[i] = b"ABCDEFabcdef0123+/"[(next() % 18) as usize];
        let _ = parse_signing_key(&bytes, None);
    }
    // Oversized and binary input.
    assert!(parse_signing_key(&vec![0xff; 100_000], None).is_err());
    assert!(parse_signing_key(b"-----BEGIN PRIVATE KEY-----\n", None).is_err());
    assert!(SigningKey::from_scalar_bytes(&[0u8; 32]).is_err());
}

// ---------------------------------------------------------------------------
// documents

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const OTHER_DIGEST: &str =
    "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
const REFERENCE: &str = "registry.example/plinth/base";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The P-256 key of RFC 6979 appendix A.2.5.
fn rfc_key() -> SigningKey {
    SigningKey::from_scalar_bytes(&hex(
        "C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721",
    ))
    .unwrap()
}

fn other_key() -> SigningKey {
    SigningKey::from_scalar_bytes(&[7u8; 32]).unwrap()
}

fn subject() -> Descriptor {
    Descriptor {
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        digest: DIGEST.into(),
        size: 1234,
        platform: None,
        annotations: BTreeMap::new(),
        artifact_type: None,
    }
}

#[test]
fn rfc6979_known_answer() {
    // RFC 6979 A.2.5, SHA-256, message "sample": r and s as published.
    let der = rfc_key().sign(b"sample");
    let expected_r = "efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716";
    let expected_s = "f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8";
    // DER: 30 46 02 21 00 <r> 02 21 00 <s> (both have the high bit set).
    assert_eq!(
        der,
        hex(&format!("3046022100{expected_r}022100{expected_s}"))
    );
    let der = rfc_key().sign(b"test");
    assert!(
        hex_string(&der)
            .contains("f1abb023518351cd71d881567b1ea663ed3efcf6c5132b354f28d3b0b7d38367")
    );
    assert!(
        hex_string(&der)
            .contains("019f4113742a2b14bd25926b49c649155f267e60d3814b4c0cc84250e46f0083")
    );
}

fn hex_string(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn simple_signing_payload_and_signature_are_pinned() {
    let layer = simple_signing::sign(&rfc_key(), REFERENCE, DIGEST, &BTreeMap::new()).unwrap();
    assert_eq!(
        String::from_utf8(layer.payload.clone()).unwrap(),
        r#"{"critical":{"identity":{"docker-reference":"registry.example/plinth/base"},"image":{"docker-manifest-digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},"type":"cosign container image signature"},"optional":null}"#
    );
    // Pinned: any change in payload bytes, hashing or nonce generation shows here.
    assert_eq!(
        layer.signature,
        "MEQCIB/y7R/RcnZbEQVx94h8g5mIxXiZk/XmTGPNWKxErAz8AiAJzzrOV0biWQ5Ty/0kGdzxzLQn7k9Jjgx3U0nhvz+ttw=="
    );
    let again = simple_signing::sign(&rfc_key(), REFERENCE, DIGEST, &BTreeMap::new()).unwrap();
    assert_eq!(layer, again);
}

#[test]
fn optional_annotations_are_sorted_and_go_escaped() {
    let optional = BTreeMap::from([
        ("z".to_owned(), "a<b&c>".to_owned()),
        ("a".to_owned(), "1".to_owned()),
    ]);
    let payload = simple_signing::payload(REFERENCE, DIGEST, &optional).unwrap();
    let text = String::from_utf8(payload).unwrap();
    assert!(
        text.ends_with(r#""optional":{"a":"1","z":"a\u003cb\u0026c\u003e"}}"#),
        "{text}"
    );
}

#[test]
fn docker_reference_is_the_repository_as_pushed() {
    for (host, repo) in [
        ("registry.example", "org/app"),
        ("127.0.0.1:5000", "golden/static-debian13"),
        ("localhost", "app"),
        ("[::1]:5000", "a/b/c"),
    ] {
        assert_eq!(
            simple_signing::docker_reference(host, repo).unwrap(),
            format!("{host}/{repo}")
        );
    }
    for (host, repo) in [
        ("registry.example", "org/app:tag"),
        ("registry.example", "org/app@sha256:00"),
        ("registry.example", "Org/app"),
        ("registry.example", ""),
        ("", "app"),
        ("https://registry.example", "app"),
        ("registry example", "app"),
    ] {
        assert!(
            simple_signing::docker_reference(host, repo).is_err(),
            "{host} {repo}"
        );
    }
}

#[test]
fn simple_signing_verification() {
    let key = rfc_key();
    let public = key.public_key();
    let layer = simple_signing::sign(&key, REFERENCE, DIGEST, &BTreeMap::new()).unwrap();
    simple_signing::verify(
        &layer.payload,
        &layer.signature,
        &public,
        DIGEST,
        Some(REFERENCE),
    )
    .unwrap();
    // Another key's signature.
    let other = simple_signing::sign(&other_key(), REFERENCE, DIGEST, &BTreeMap::new()).unwrap();
    let e = simple_signing::verify(&other.payload, &other.signature, &public, DIGEST, None)
        .unwrap_err();
    assert!(matches!(e, SignError::BadSignature(_)), "{e}");
    // A correctly signed payload for another image.
    let e = simple_signing::verify(
        &layer.payload,
        &layer.signature,
        &public,
        OTHER_DIGEST,
        None,
    )
    .unwrap_err();
    assert!(matches!(e, SignError::WrongSubject { .. }), "{e}");
    // Claimed for another repository.
    let e = simple_signing::verify(
        &layer.payload,
        &layer.signature,
        &public,
        DIGEST,
        Some("evil.example/x"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("docker-reference"), "{e}");
    // One byte of the payload changed.
    let mut tampered = layer.payload.clone();
    tampered[20] ^= 1;
    assert!(simple_signing::verify(&tampered, &layer.signature, &public, DIGEST, None).is_err());
    // Garbage signatures.
    for sig in [
        "",
        "!!!",
        "AAAA",
        "MEQCIB/y7R/RcnZbEQVx94h8g5mIxXiZk/XmTGPNWKxErAz8AiAJzzrOV0biWQ5Ty/0kGdzxzLQn7k9Jjgx3U0nhvz+tt",
    ] {
        assert!(
            simple_signing::verify(&layer.payload, sig, &public, DIGEST, None).is_err(),
            "{sig}"
        );
    }
}

fn blobs(layers: &[Vec<u8>]) -> impl FnMut(&Descriptor) -> Option<Vec<u8>> + '_ {
    move |d: &Descriptor| {
        layers
            .iter()
            .find(|b| sha256_digest(b) == d.digest)
            .cloned()
    }
}

#[test]
fn sig_image_layout_and_merge() {
    let first = simple_signing::sign(&rfc_key(), REFERENCE, DIGEST, &BTreeMap::new()).unwrap();
    let second = simple_signing::sign(&other_key(), REFERENCE, DIGEST, &BTreeMap::new()).unwrap();
    let Merge::Updated(one) =
        image::merge_signature(None, &first, &rfc_key().public_key()).unwrap()
    else {
        panic!("new image expected")
    };
    assert_eq!(
        String::from_utf8(one.config.clone()).unwrap(),
        r#"{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":["sha256:bc3001639bdd5b737d61ef2f500a43980b6e387250fc3a2ce6d98fa28b028904"]},"config":{}}"#
    );
    // Pinned digest of the whole `.sig` manifest.
    assert_eq!(
        one.digest(),
        "sha256:516eb73adc45a805b1104e441ec100c07322149da3ce150ce31a57638a18a663",
        "update the pin only if the .sig layout was meant to change"
    );
    let existing = Existing {
        manifest: &one.manifest_bytes,
        config: &one.config,
    };
    // Same signer, same payload: nothing to push.
    assert_eq!(
        image::merge_signature(Some(existing), &first, &rfc_key().public_key()).unwrap(),
        Merge::Unchanged
    );
    // A second signer is appended after the first.
    let Merge::Updated(two) =
        image::merge_signature(Some(existing), &second, &other_key().public_key()).unwrap()
    else {
        panic!("second signer must be added")
    };
    assert_eq!(two.manifest.layers.len(), 2);
    assert_eq!(two.manifest.layers[0], one.manifest.layers[0]);
    assert_eq!(
        two.manifest.layers[1].annotations[SIGNATURE_ANNOTATION],
        second.signature
    );
    let config: serde_json::Value = serde_json::from_slice(&two.config).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    assert_eq!(config["history"].as_array().unwrap().len(), 2);
    // Both signers verify, each with their own key.
    let payloads = vec![first.payload.clone(), second.payload.clone()];
    for key in [rfc_key(), other_key()] {
        let found = image::verify_signature_image(
            &two.manifest_bytes,
            &mut blobs(&payloads),
            &key.public_key(),
            DIGEST,
            Some(REFERENCE),
        )
        .unwrap();
        assert_eq!(found.len(), 1);
    }
    // Idempotent after the merge too.
    let existing2 = Existing {
        manifest: &two.manifest_bytes,
        config: &two.config,
    };
    assert_eq!(
        image::merge_signature(Some(existing2), &second, &other_key().public_key()).unwrap(),
        Merge::Unchanged
    );
    assert_eq!(
        image::merge_signature(Some(existing2), &first, &rfc_key().public_key()).unwrap(),
        Merge::Unchanged
    );
    // Wrong image digest, or a blob that does not match its descriptor.
    assert!(
        image::verify_signature_image(
            &two.manifest_bytes,
            &mut blobs(&payloads),
            &rfc_key().public_key(),
            OTHER_DIGEST,
            None
        )
        .is_err()
    );
    // (Both signers signed the same payload bytes, so the two layers share
    // one blob and differ only in their signature annotation.)
    assert_eq!(two.manifest.layers[0].digest, two.manifest.layers[1].digest);
    let e = image::verify_signature_image(
        &one.manifest_bytes,
        &mut blobs(&[]),
        &rfc_key().public_key(),
        DIGEST,
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
    let wrong_blob = |_: &Descriptor| Some(b"{}".to_vec());
    let e = image::verify_signature_image(
        &one.manifest_bytes,
        &mut { wrong_blob },
        &rfc_key().public_key(),
        DIGEST,
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("layer blob digest"), "{e}");
    // A config that does not match the manifest is refused for merging.
    let bad = Existing {
        manifest: &one.manifest_bytes,
        config: b"{}",
    };
    assert!(image::merge_signature(Some(bad), &second, &other_key().public_key()).is_err());
}

#[test]
fn merges_into_a_sig_image_written_by_go() {
    // A `.sig` manifest and config as go-containerregistry serialises them
    // (descriptor keys mediaType, size, digest; a `created` time set by
    // `--record-creation-timestamp`): parsed, kept, appended to.
    let first = simple_signing::sign(&rfc_key(), REFERENCE, DIGEST, &BTreeMap::new()).unwrap();
    let layer_digest = sha256_digest(&first.payload);
    let config = format!(
        r#"{{"architecture":"","created":"2024-05-06T07:08:09Z","history":[{{"created":"0001-01-01T00:00:00Z"}}],"os":"","rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}},"config":{{}}}}"#
    );
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":{},"digest":"{}"}},"layers":[{{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":{},"digest":"{layer_digest}","annotations":{{"dev.cosignproject.cosign/signature":"{}"}}}}]}}"#,
        config.len(),
        sha256_digest(config.as_bytes()),
        first.payload.len(),
        first.signature
    );
    let existing = Existing {
        manifest: manifest.as_bytes(),
        config: config.as_bytes(),
    };
    assert_eq!(
        image::merge_signature(Some(existing), &first, &rfc_key().public_key()).unwrap(),
        Merge::Unchanged
    );
    let second = simple_signing::sign(&other_key(), REFERENCE, DIGEST, &BTreeMap::new()).unwrap();
    let Merge::Updated(two) =
        image::merge_signature(Some(existing), &second, &other_key().public_key()).unwrap()
    else {
        panic!()
    };
    let text = String::from_utf8(two.config).unwrap();
    assert!(text.starts_with(r#"{"architecture":"","created":"2024-05-06T07:08:09Z","history":[{"created":"0001-01-01T00:00:00Z"},{"created":"0001-01-01T00:00:00Z"}]"#), "{text}");
}

#[test]
fn dsse_pae_and_envelope() {
    // The DSSE specification's example.
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    );
    assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    let env = Envelope::sign(&rfc_key(), IN_TOTO_PAYLOAD_TYPE, b"{}".to_vec());
    let json = String::from_utf8(env.to_json().unwrap()).unwrap();
    assert!(json.starts_with(r#"{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"#), "{json}");
    assert!(!json.contains("keyid"));
    let back = Envelope::from_json(json.as_bytes()).unwrap();
    assert_eq!(
        back.verify(&rfc_key().public_key(), IN_TOTO_PAYLOAD_TYPE)
            .unwrap(),
        b"{}"
    );
    assert!(
        back.verify(&other_key().public_key(), IN_TOTO_PAYLOAD_TYPE)
            .is_err()
    );
    assert!(back.verify(&rfc_key().public_key(), "text/plain").is_err());
    // A changed payload type changes the PAE, so the signature fails.
    let mut retyped = back.clone();
    retyped.payload_type = "application/vnd.in-toto+jsoN".into();
    assert!(
        retyped
            .verify(&rfc_key().public_key(), "application/vnd.in-toto+jsoN")
            .is_err()
    );
    // URL-safe, unpadded base64 is accepted on input (DSSE allows either).
    let urlsafe = json.replace("e30=", "e30");
    assert!(Envelope::from_json(urlsafe.as_bytes()).is_ok());
    assert_eq!(b64_decode_for_tests("-_8"), Some(vec![0xfb, 0xff]));
}

#[test]
fn statements_have_cosign_shapes() {
    let sign = intoto::cosign_sign_statement(DIGEST).unwrap();
    assert_eq!(
        String::from_utf8(sign.to_json().unwrap()).unwrap(),
        r#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},"annotations":{}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}"#
    );
    let sbom = br#"{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","name":"x & y","packages":[{"name":"b","SPDXID":"SPDXRef-b"}]}"#;
    let st = intoto::sbom_statement(
        SbomFormat::SpdxJson,
        REFERENCE,
        DIGEST,
        sbom,
        intoto::STATEMENT_V01,
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(st.to_json().unwrap()).unwrap(),
        r#"{"_type":"https://in-toto.io/Statement/v0.1","subject":[{"name":"registry.example/plinth/base","digest":{"sha256":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}],"predicateType":"https://spdx.dev/Document","predicate":{"SPDXID":"SPDXRef-DOCUMENT","name":"x & y","packages":[{"SPDXID":"SPDXRef-b","name":"b"}],"spdxVersion":"SPDX-2.3"}}"#
    );
    let cdx = intoto::sbom_statement(
        SbomFormat::CycloneDx,
        REFERENCE,
        DIGEST,
        br#"{"bomFormat":"CycloneDX","specVersion":"1.6","version":1}"#,
        intoto::STATEMENT_V1,
    )
    .unwrap();
    assert_eq!(cdx.predicate_type, "https://cyclonedx.org/bom");
    assert!(
        intoto::sbom_statement(
            SbomFormat::CycloneDx,
            REFERENCE,
            DIGEST,
            b"[1]",
            intoto::STATEMENT_V1
        )
        .is_err()
    );
    assert!(
        intoto::sbom_statement(
            SbomFormat::CycloneDx,
            REFERENCE,
            DIGEST,
            b"{",
            intoto::STATEMENT_V1
        )
        .is_err()
    );

    let provenance = intoto::Provenance {
        build_definition: intoto::BuildDefinition {
            build_type: "https://plinth.example/image/v1".into(),
            external_parameters: serde_json::json!({"image": "base", "lockfile": "lockfiles/base.lock"}),
            internal_parameters: None,
            resolved_dependencies: vec![intoto::ResourceDescriptor {
                uri: Some("pkg:deb/debian/libc6@2.36-9+deb12u4?arch=amd64".into()),
                digest: BTreeMap::from([("sha256".into(), "ab".repeat(32))]),
                ..Default::default()
            }],
        },
        run_details: intoto::RunDetails {
            builder: intoto::Builder {
                id: "https://plinth.example/builder".into(),
                version: BTreeMap::new(),
                builder_dependencies: vec![],
            },
            metadata: Some(intoto::BuildMetadata {
                invocation_id: None,
                started_on: Some("2025-01-01T00:00:00Z".into()),
                finished_on: None,
            }),
            byproducts: vec![],
        },
    };
    let st = intoto::provenance_statement(
        vec![intoto::ResourceDescriptor::image(Some(REFERENCE), DIGEST).unwrap()],
        &provenance,
    )
    .unwrap();
    let text = String::from_utf8(st.to_json().unwrap()).unwrap();
    assert!(text.contains(r#""predicateType":"https://slsa.dev/provenance/v1","predicate":{"buildDefinition":{"buildType":"https://plinth.example/image/v1","externalParameters":{"image":"base","lockfile":"lockfiles/base.lock"},"resolvedDependencies":[{"digest":{"sha256":"abab"#), "{text}");
    assert!(text.contains(r#""runDetails":{"builder":{"id":"https://plinth.example/builder"},"metadata":{"startedOn":"2025-01-01T00:00:00Z"}}"#), "{text}");
}

#[test]
fn attestation_image_layout_merge_and_verify() {
    let sbom = br#"{"spdxVersion":"SPDX-2.3"}"#;
    let st = intoto::sbom_statement(
        SbomFormat::SpdxJson,
        REFERENCE,
        DIGEST,
        sbom,
        intoto::STATEMENT_V01,
    )
    .unwrap();
    let layer = image::attest(&rfc_key(), &st).unwrap();
    assert_eq!(
        layer,
        image::attest(&rfc_key(), &st).unwrap(),
        "deterministic"
    );
    let d = layer.descriptor();
    assert_eq!(d.media_type, "application/vnd.dsse.envelope.v1+json");
    assert_eq!(d.annotations["predicateType"], "https://spdx.dev/Document");
    assert_eq!(d.annotations["dev.cosignproject.cosign/signature"], "");
    let Merge::Updated(one) = image::merge_attestation(None, &layer, &mut |_| false).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        image::attestation_tag(DIGEST).unwrap(),
        "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.att"
    );
    let existing = Existing {
        manifest: &one.manifest_bytes,
        config: &one.config,
    };
    assert_eq!(
        image::merge_attestation(Some(existing), &layer, &mut |_| false).unwrap(),
        Merge::Unchanged
    );
    let cdx = intoto::sbom_statement(
        SbomFormat::CycloneDx,
        REFERENCE,
        DIGEST,
        br#"{"bomFormat":"CycloneDX"}"#,
        intoto::STATEMENT_V01,
    )
    .unwrap();
    let layer2 = image::attest(&rfc_key(), &cdx).unwrap();
    let Merge::Updated(two) =
        image::merge_attestation(Some(existing), &layer2, &mut |_| false).unwrap()
    else {
        panic!()
    };
    assert_eq!(two.manifest.layers.len(), 2);
    let blobs_v = vec![layer.envelope.clone(), layer2.envelope.clone()];
    for predicate in [intoto::PREDICATE_SPDX, intoto::PREDICATE_CYCLONEDX] {
        let only = image::verify_attestation_image(
            &two.manifest_bytes,
            &mut blobs(&blobs_v),
            &rfc_key().public_key(),
            DIGEST,
            predicate,
        )
        .unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].predicate_type, predicate);
    }
    let e = image::verify_attestation_image(
        &two.manifest_bytes,
        &mut blobs(&blobs_v),
        &rfc_key().public_key(),
        DIGEST,
        intoto::PREDICATE_SLSA_PROVENANCE_V1,
    )
    .unwrap_err();
    assert!(matches!(e, SignError::Absent(_)), "{e}");
    let e = image::verify_attestation_image(
        &two.manifest_bytes,
        &mut blobs(&blobs_v),
        &other_key().public_key(),
        DIGEST,
        intoto::PREDICATE_SPDX,
    )
    .unwrap_err();
    assert!(matches!(e, SignError::BadSignature(_)), "{e}");
    let e = image::verify_attestation_image(
        &two.manifest_bytes,
        &mut blobs(&blobs_v),
        &rfc_key().public_key(),
        OTHER_DIGEST,
        intoto::PREDICATE_SPDX,
    )
    .unwrap_err();
    assert!(matches!(e, SignError::WrongSubject { .. }), "{e}");
    // --replace: a new SPDX statement replaces the old SPDX layer only.
    let st2 = intoto::sbom_statement(
        SbomFormat::SpdxJson,
        REFERENCE,
        DIGEST,
        br#"{"spdxVersion":"SPDX-2.3","name":"v2"}"#,
        intoto::STATEMENT_V01,
    )
    .unwrap();
    let layer3 = image::attest(&rfc_key(), &st2).unwrap();
    let existing2 = Existing {
        manifest: &two.manifest_bytes,
        config: &two.config,
    };
    let Merge::Updated(three) =
        image::merge_attestation(Some(existing2), &layer3, &mut |_| true).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        three.manifest.layers,
        vec![layer2.descriptor(), layer3.descriptor()]
    );
}

#[test]
fn bundle_bytes_are_pinned_and_verify() {
    let st = intoto::cosign_sign_statement(DIGEST).unwrap();
    let bundle_json = bundle::sign_bundle(&rfc_key(), &st).unwrap();
    assert_eq!(bundle_json, bundle::sign_bundle(&rfc_key(), &st).unwrap());
    let text = String::from_utf8(bundle_json.clone()).unwrap();
    assert!(text.starts_with(r#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":"Wnp4zKSg9CDZvGK7Zpw8J1njn3I9OuENy+DwgVoH7NQ="}},"dsseEnvelope":{"payload":""#), "{text}");
    assert!(text.ends_with(r#""payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"MEYCIQCwc61qEMa+ug5W+6ePalHBG8ii7+buLrqhvZiMihfGGQIhAOnVtXuPFBqzntmkg/nhdADYGTza4N086l23BB/14olR"}]}}"#), "{text}");
    assert_eq!(
        rfc_key().public_key().hint(),
        "Wnp4zKSg9CDZvGK7Zpw8J1njn3I9OuENy+DwgVoH7NQ="
    );

    let public = rfc_key().public_key();
    let got = bundle::verify_bundle(
        &bundle_json,
        &public,
        DIGEST,
        Some(intoto::PREDICATE_COSIGN_SIGN),
    )
    .unwrap();
    assert_eq!(got, st);
    assert!(bundle::verify_bundle(&bundle_json, &other_key().public_key(), DIGEST, None).is_err());
    assert!(bundle::verify_bundle(&bundle_json, &public, OTHER_DIGEST, None).is_err());
    assert!(
        bundle::verify_bundle(
            &bundle_json,
            &public,
            DIGEST,
            Some("https://spdx.dev/Document")
        )
        .is_err()
    );
    // Tampering: payload re-encoded with another digest, signature flipped,
    // a second signature, media type changed, certificate instead of key.
    let mut v: serde_json::Value = serde_json::from_slice(&bundle_json).unwrap();
    let forged = intoto::cosign_sign_statement(OTHER_DIGEST)
        .unwrap()
        .to_json()
        .unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut t = v.clone();
    t["dsseEnvelope"]["payload"] = b64.encode(&forged).into();
    assert!(matches!(
        bundle::verify_bundle(
            &serde_json::to_vec(&t).unwrap(),
            &public,
            OTHER_DIGEST,
            None
        ),
        Err(SignError::BadSignature(_))
    ));
    let mut t = v.clone();
    let sig = t["dsseEnvelope"]["signatures"][0]["sig"]
        .as_str()
        .unwrap()
        .replacen('M', "N", 1);
    t["dsseEnvelope"]["signatures"][0]["sig"] = sig.into();
    assert!(
        bundle::verify_bundle(&serde_json::to_vec(&t).unwrap(), &public, DIGEST, None).is_err()
    );
    let mut t = v.clone();
    let first = t["dsseEnvelope"]["signatures"][0].clone();
    t["dsseEnvelope"]["signatures"]
        .as_array_mut()
        .unwrap()
        .push(first);
    assert!(
        bundle::verify_bundle(&serde_json::to_vec(&t).unwrap(), &public, DIGEST, None).is_err()
    );
    let mut t = v.clone();
    t["mediaType"] = "application/vnd.dev.sigstore.bundle.v0.1+json".into();
    assert!(matches!(
        bundle::verify_bundle(&serde_json::to_vec(&t).unwrap(), &public, DIGEST, None),
        Err(SignError::Unsupported(_))
    ));
    v["verificationMaterial"] = serde_json::json!({"certificate": {"rawBytes": "AAAA"}});
    assert!(matches!(
        bundle::verify_bundle(&serde_json::to_vec(&v).unwrap(), &public, DIGEST, None),
        Err(SignError::Unsupported(_))
    ));
    assert!(bundle::verify_bundle(b"{", &public, DIGEST, None).is_err());
    assert!(bundle::verify_bundle(b"null", &public, DIGEST, None).is_err());
}

#[test]
fn bundle_referrer_manifest() {
    let st = intoto::cosign_sign_statement(DIGEST).unwrap();
    let bundle_json = bundle::sign_bundle(&rfc_key(), &st).unwrap();
    let r = bundle::bundle_referrer(
        bundle_json.clone(),
        &subject(),
        intoto::PREDICATE_COSIGN_SIGN,
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(r.manifest_bytes.clone()).unwrap(),
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json"},"layers":[{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","digest":"sha256:c891b5523bcfc167de9b7a02595bb7201018b869d844dab2e85639af7a76e7d3","size":659}],"subject":{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","size":1234},"annotations":{"dev.sigstore.bundle.content":"dsse-envelope","dev.sigstore.bundle.predicateType":"https://sigstore.dev/cosign/sign/v1"}}"#
    );
    let idx = r.index_descriptor();
    assert_eq!(idx.artifact_type.as_deref(), Some(BUNDLE_V03_MEDIA_TYPE));
    assert_eq!(idx.digest, r.digest());
    let store = vec![bundle_json.clone()];
    let got = bundle::verify_bundle_referrer(
        &r.manifest_bytes,
        &mut blobs(&store),
        &rfc_key().public_key(),
        DIGEST,
    )
    .unwrap();
    assert_eq!(got.predicate_type, intoto::PREDICATE_COSIGN_SIGN);
    assert!(
        bundle::verify_bundle_referrer(
            &r.manifest_bytes,
            &mut blobs(&store),
            &rfc_key().public_key(),
            OTHER_DIGEST
        )
        .is_err()
    );
    assert!(
        bundle::verify_bundle_referrer(
            &r.manifest_bytes,
            &mut blobs(&[]),
            &rfc_key().public_key(),
            DIGEST
        )
        .is_err()
    );
    // No creation time: the same inputs give the same bytes.
    let r2 =
        bundle::bundle_referrer(bundle_json, &subject(), intoto::PREDICATE_COSIGN_SIGN).unwrap();
    assert_eq!(r2, r);
}

#[test]
fn hostile_documents_never_panic() {
    let public = rfc_key().public_key();
    let inputs: [&[u8]; 10] = [
        b"", b"null", b"[]", b"{}", b"{\"critical\":null}", b"{\"layers\":[{}]}",
        b"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"y\",\"size\":1},\"layers\":[{\"mediaType\":\"application/vnd.dev.cosign.simplesigning.v1+json\",\"digest\":\"z\",\"size\":18446744073709551615}]}",
        b"{\"mediaType\":\"application/vnd.dev.sigstore.bundle.v0.3+json\",\"verificationMaterial\":{\"publicKey\":{}},\"dsseEnvelope\":{\"payload\":\"\",\"payloadType\":\"\",\"signatures\":[]}}",
        b"{\"payload\":\"!!\",\"payloadType\":1}",
        &[0xff, 0xfe, 0x00],
    ];
    for input in inputs {
        let _ = simple_signing::verify(input, "MEQ=", &public, DIGEST, None);
        let _ = image::verify_signature_image(input, &mut |_| Some(vec![]), &public, DIGEST, None);
        let _ = image::verify_attestation_image(
            input,
            &mut |_| None,
            &public,
            DIGEST,
            intoto::PREDICATE_SPDX,
        );
        let _ = image::verify_attestation(input, &public, DIGEST);
        let _ = bundle::verify_bundle(input, &public, DIGEST, None);
        let _ =
            bundle::verify_bundle_referrer(input, &mut |_| Some(input.to_vec()), &public, DIGEST);
        let _ = image::merge_signature(
            Some(Existing {
                manifest: input,
                config: input,
            }),
            &simple_signing::sign(&rfc_key(), REFERENCE, DIGEST, &BTreeMap::new()).unwrap(),
            &public,
        );
        let _ = Envelope::from_json(input);
    }
    assert!(simple_signing::payload(REFERENCE, "sha256:ABC", &BTreeMap::new()).is_err());
    assert!(image::signature_tag("md5:00").is_err());
}

#[test]
fn sbom_attestation_in_a_bundle_referrer() {
    // cosign 3's `attest` default: the attest statement (still `_type`
    // v0.1) signed into a bundle, stored as a referrer whose predicateType
    // annotation is the SBOM's.
    let st = intoto::sbom_statement(
        SbomFormat::CycloneDx,
        REFERENCE,
        DIGEST,
        br#"{"bomFormat":"CycloneDX","specVersion":"1.6"}"#,
        intoto::STATEMENT_V01,
    )
    .unwrap();
    let b = bundle::sign_bundle(&rfc_key(), &st).unwrap();
    let r = bundle::bundle_referrer(b.clone(), &subject(), intoto::PREDICATE_CYCLONEDX).unwrap();
    assert_eq!(
        r.manifest.annotations["dev.sigstore.bundle.predicateType"],
        "https://cyclonedx.org/bom"
    );
    let store = vec![b];
    let got = bundle::verify_bundle_referrer(
        &r.manifest_bytes,
        &mut blobs(&store),
        &rfc_key().public_key(),
        DIGEST,
    )
    .unwrap();
    assert_eq!(got, st);
    // The annotation must agree with the signed statement.
    let lying =
        bundle::bundle_referrer(store[0].clone(), &subject(), intoto::PREDICATE_SPDX).unwrap();
    assert!(
        bundle::verify_bundle_referrer(
            &lying.manifest_bytes,
            &mut blobs(&store),
            &rfc_key().public_key(),
            DIGEST
        )
        .is_err()
    );
}
