//! Checks that the keys look like Debian archive keys and that clear-signed
//! output verifies with Sequoia's own verifier (and gpgv, when present).

use std::process::Command;
use std::sync::OnceLock;

use sequoia_openpgp as openpgp;

use openpgp::Cert;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
mod common;
use common::verify;
use plinth_testkit::keys::{DEFAULT_SIGNATURE_TIME, unix_time};
use plinth_testkit::{SigningKey, clearsign, clearsign_at, detached_sign_at};

const RELEASE: &[u8] = b"Origin: Debian\nLabel: Debian\nSuite: stable\n\
Codename: trixie\nDate: Sat, 01 Nov 2026 09:15:44 UTC\nSHA256:\n \
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855        0 main/binary-amd64/Packages\n\
- a line that needs dash-escaping\n";

fn rsa() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::rsa("Test RSA Archive Key <rsa@test.invalid>"))
}

fn ed() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::ed25519("Test Ed25519 Archive Key <ed@test.invalid>"))
}

#[test]
fn keys_have_certification_only_primary_and_signing_subkey() {
    let policy = StandardPolicy::new();
    for key in [rsa(), ed()] {
        let cert = Cert::from_bytes(key.public_armored().as_bytes()).unwrap();
        assert!(!cert.is_tsk(), "public export must not carry secrets");
        assert_eq!(cert.fingerprint().to_hex(), key.fingerprint());
        assert_eq!(key.fingerprint().len(), 40);
        assert!(
            key.fingerprint()
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
        let valid = cert.with_policy(&policy, None).unwrap();
        let primary = valid.primary_key();
        assert!(primary.for_certification());
        assert!(!primary.for_signing());
        let signing: Vec<_> = valid.keys().subkeys().for_signing().collect();
        assert_eq!(signing.len(), 1);
        assert_eq!(
            signing[0].key().fingerprint().to_hex(),
            key.signing_fingerprint()
        );
        assert_eq!(signing[0].key().version(), 4);
        assert_eq!(Cert::from_bytes(&key.public_binary()).unwrap(), cert);
        assert!(
            key.public_armored()
                .starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----")
        );
    }
}

#[test]
fn clearsigned_text_has_inrelease_shape() {
    let signed = String::from_utf8(clearsign(RELEASE, &[rsa()])).unwrap();
    assert!(
        signed.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nOrigin: Debian\n")
    );
    assert!(
        signed.contains("\n- - a line that needs dash-escaping\n-----BEGIN PGP SIGNATURE-----\n")
    );
    assert!(signed.ends_with("-----END PGP SIGNATURE-----\n"));
    assert_eq!(signed.matches("-----BEGIN PGP SIGNATURE-----").count(), 1);
    // A text without a final newline gets one before the signature block.
    let signed = String::from_utf8(clearsign(b"A: b", &[ed()])).unwrap();
    assert!(signed.contains("\n\nA: b\n-----BEGIN PGP SIGNATURE-----\n"));
}

#[test]
fn clearsigned_text_verifies_with_the_right_cert_only() {
    for key in [rsa(), ed()] {
        let signed = clearsign(RELEASE, &[key]);
        let (text, good) = verify(&signed, &[&key.public_binary()]).unwrap();
        // As with GnuPG-made InRelease files, the newline ending the last
        // line is framing, not signed content.
        assert_eq!(text, RELEASE.strip_suffix(b"\n").unwrap());
        assert_eq!(good, 1);
    }
    let signed = clearsign(RELEASE, &[rsa()]);
    assert!(verify(&signed, &[&ed().public_binary()]).is_err());
}

#[test]
fn several_signers_make_one_block_with_several_signatures() {
    let signed = clearsign(RELEASE, &[rsa(), ed()]);
    let text = String::from_utf8(signed.clone()).unwrap();
    assert_eq!(text.matches("-----BEGIN PGP SIGNATURE-----").count(), 1);
    let (_, good) = verify(&signed, &[&rsa().public_binary(), &ed().public_binary()]).unwrap();
    assert_eq!(good, 2);
    // Knowing just one of the keys still gives one good signature.
    let (_, good) = verify(&signed, &[&ed().public_binary()]).unwrap();
    assert_eq!(good, 1);
}

#[test]
fn tampering_breaks_the_signature() {
    let signed = clearsign(RELEASE, &[ed()]);
    let tampered = String::from_utf8(signed)
        .unwrap()
        .replacen("Label: Debian", "Label: Xebian", 1);
    assert!(verify(tampered.as_bytes(), &[&ed().public_binary()]).is_err());
}

#[test]
fn zero_signers_leave_the_text_unchanged() {
    assert_eq!(clearsign(RELEASE, &[]), RELEASE);
    assert!(detached_sign_at(RELEASE, &[], unix_time(DEFAULT_SIGNATURE_TIME)).is_empty());
}

#[test]
fn expired_subkey_signatures_are_rejected() {
    let key = SigningKey::expired("Expired Archive Key <old@test.invalid>");
    let signed = clearsign(RELEASE, &[&key]);
    assert!(verify(&signed, &[&key.public_binary()]).is_err());
}

#[test]
fn signature_time_is_the_one_given() {
    let signed = clearsign_at(RELEASE, &[ed()], unix_time(1_790_000_000));
    let packets = openpgp::PacketPile::from_bytes(&signed).unwrap();
    let sig = packets
        .descendants()
        .find_map(|p| match p {
            openpgp::Packet::Signature(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        sig.signature_creation_time(),
        Some(unix_time(1_790_000_000))
    );
}

/// Cross-checks interoperability with GnuPG's verifier when installed.
#[test]
fn gpgv_accepts_inrelease_and_release_gpg() {
    if Command::new("gpgv").arg("--version").output().is_err() {
        eprintln!("gpgv not installed; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keyring = dir.path().join("keyring.gpg");
    std::fs::write(
        &keyring,
        [rsa().public_binary(), ed().public_binary()].concat(),
    )
    .unwrap();
    let inrelease = dir.path().join("InRelease");
    std::fs::write(&inrelease, clearsign(RELEASE, &[rsa(), ed()])).unwrap();
    let release = dir.path().join("Release");
    std::fs::write(&release, RELEASE).unwrap();
    let gpg = dir.path().join("Release.gpg");
    std::fs::write(
        &gpg,
        detached_sign_at(RELEASE, &[rsa()], unix_time(DEFAULT_SIGNATURE_TIME)),
    )
    .unwrap();
    let gpgv = |args: &[&std::path::Path]| {
        Command::new("gpgv")
            .arg("--homedir")
            .arg(dir.path())
            .arg("--keyring")
            .arg(&keyring)
            .args(args)
            .output()
            .unwrap()
    };
    let out = gpgv(&[&inrelease]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr)
            .matches("Good signature")
            .count(),
        2
    );
    let out = gpgv(&[&gpg, &release]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
