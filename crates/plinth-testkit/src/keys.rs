//! Throwaway OpenPGP archive keys and the signatures an archive carries.
//!
//! Owns key generation shaped like a Debian archive key (a
//! certification-only primary key with a separate signing subkey), and
//! producing cleartext-signed `InRelease` files and detached
//! `Release.gpg` signatures with a caller-chosen creation time.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sequoia_openpgp as openpgp;

use openpgp::Cert;
use openpgp::cert::{CertBuilder, CipherSuite};
use openpgp::crypto::KeyPair;
use openpgp::packet::signature::SignatureBuilder;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Armorer, Message, Signer};
use openpgp::serialize::{Serialize, SerializeInto};
use openpgp::types::{HashAlgorithm, KeyFlags, SignatureType};

/// When generated keys are created: 2026-01-01T00:00:00Z.
///
/// Fixed rather than "now" so that signatures made at
/// [`DEFAULT_SIGNATURE_TIME`] are always newer than the key.
pub const DEFAULT_KEY_CREATION: u64 = 1_767_225_600;

/// Creation time of signatures when none is given:
/// 2026-11-01T09:15:44Z, the same instant as [`crate::repo::DEFAULT_DATE`].
pub const DEFAULT_SIGNATURE_TIME: u64 = 1_793_524_544;

/// Seconds since the epoch as a [`SystemTime`].
pub fn unix_time(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Public-key algorithm of a generated key (primary and subkey alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// RSA with 2048-bit moduli: real archive keys use 4096 bits, but the
    /// code paths are the same and generation is much faster.
    Rsa2048,
    /// RSA with 3072-bit moduli.
    Rsa3072,
    /// EdDSA over Curve25519 (v4 "legacy" EdDSA, as GnuPG 2.2 makes).
    Ed25519,
}

/// Everything that can be varied about a generated key.
#[derive(Debug, Clone)]
pub struct KeySpec {
    /// The single User ID, e.g. `"Test Archive Signing Key <archive@test.invalid>"`.
    pub user_id: String,
    /// Algorithm for both the primary key and the signing subkey.
    pub algorithm: KeyAlgorithm,
    /// Creation time of both keys and of their self-signatures.
    pub created: SystemTime,
    /// How long after `created` the signing subkey stops being valid;
    /// `None` means it never expires.
    pub signing_subkey_validity: Option<Duration>,
    /// How long after `created` the whole certificate stops being valid.
    pub primary_validity: Option<Duration>,
}

impl KeySpec {
    /// A non-expiring key created at [`DEFAULT_KEY_CREATION`].
    pub fn new(user_id: &str, algorithm: KeyAlgorithm) -> Self {
        KeySpec {
            user_id: user_id.to_owned(),
            algorithm,
            created: unix_time(DEFAULT_KEY_CREATION),
            signing_subkey_validity: None,
            primary_validity: None,
        }
    }
}

/// An archive signing key: a full OpenPGP certificate including secrets.
///
/// Cloning is cheap enough for tests (it copies the certificate).
#[derive(Clone)]
pub struct SigningKey {
    cert: Cert,
    user_id: String,
    created: SystemTime,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("user_id", &self.user_id)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl SigningKey {
    /// An RSA-2048 key whose primary only certifies and whose subkey signs,
    /// like Debian's archive keys.
    ///
    /// Cached per process by user ID (use distinct user IDs for distinct
    /// keys): RSA generation takes about a second with an optimised `rsa`
    /// crate and tens of seconds without. [`SigningKey::generate`] always
    /// makes a fresh key.
    pub fn rsa(user_id: &str) -> Self {
        cached(KeySpec::new(user_id, KeyAlgorithm::Rsa2048))
    }

    /// The same layout as [`SigningKey::rsa`] with EdDSA keys; cached
    /// the same way.
    pub fn ed25519(user_id: &str) -> Self {
        cached(KeySpec::new(user_id, KeyAlgorithm::Ed25519))
    }

    /// An Ed25519 key created 2025-01-01 whose signing subkey expired 30
    /// days later, long before [`DEFAULT_SIGNATURE_TIME`]: signatures it
    /// makes at the default time must be rejected by a verifier, while the
    /// certificate itself still parses and its primary key is still valid.
    /// Cached like [`SigningKey::rsa`].
    pub fn expired(user_id: &str) -> Self {
        cached(KeySpec {
            created: unix_time(1_735_689_600),
            signing_subkey_validity: Some(Duration::from_secs(30 * 86_400)),
            ..KeySpec::new(user_id, KeyAlgorithm::Ed25519)
        })
    }

    /// Generates a key as described by `spec`.
    pub fn generate(spec: &KeySpec) -> Self {
        let suite = match spec.algorithm {
            KeyAlgorithm::Rsa2048 => CipherSuite::RSA2k,
            KeyAlgorithm::Rsa3072 => CipherSuite::RSA3k,
            KeyAlgorithm::Ed25519 => CipherSuite::Cv25519,
        };
        let (cert, _revocation) = CertBuilder::new()
            .set_cipher_suite(suite)
            .set_creation_time(spec.created)
            .set_primary_key_flags(KeyFlags::empty().set_certification())
            .set_validity_period(spec.primary_validity)
            .add_userid(spec.user_id.as_str())
            .add_subkey(
                KeyFlags::empty().set_signing(),
                spec.signing_subkey_validity,
                None,
            )
            .generate()
            .expect("generating an OpenPGP key");
        SigningKey {
            cert,
            user_id: spec.user_id.clone(),
            created: spec.created,
        }
    }

    /// The User ID the key was generated with.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The underlying certificate, secrets included, for tests that need
    /// to go beyond this API.
    pub fn cert(&self) -> &Cert {
        &self.cert
    }

    /// The public certificate, ASCII-armored, as it would be committed to
    /// a `keys/` folder.
    pub fn public_armored(&self) -> String {
        let bytes = self
            .cert
            .armored()
            .to_vec()
            .expect("armoring a certificate");
        String::from_utf8(bytes).expect("armor is ASCII")
    }

    /// The public certificate as binary OpenPGP packets (what `gpgv
    /// --keyring` and a `.gpg` keyring file hold).
    pub fn public_binary(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.cert
            .serialize(&mut out)
            .expect("serializing a certificate");
        out
    }

    /// The full key with secrets, ASCII-armored, for tests that want to
    /// sign with other tools.
    pub fn secret_armored(&self) -> String {
        let bytes = self
            .cert
            .as_tsk()
            .armored()
            .to_vec()
            .expect("armoring a secret key");
        String::from_utf8(bytes).expect("armor is ASCII")
    }

    /// The primary key's v4 fingerprint, 40 uppercase hex digits.
    pub fn fingerprint(&self) -> String {
        self.cert.fingerprint().to_hex()
    }

    /// The signing subkey's fingerprint, 40 uppercase hex digits: the
    /// issuer that signatures name.
    pub fn signing_fingerprint(&self) -> String {
        self.signing_key_pair().public().fingerprint().to_hex()
    }

    fn signing_key_pair(&self) -> KeyPair {
        let policy = StandardPolicy::new();
        // Looked up as of the creation time so that an already expired
        // subkey can still be used to make (invalid) signatures.
        let key = self
            .cert
            .keys()
            .subkeys()
            .secret()
            .with_policy(&policy, Some(self.created))
            .for_signing()
            .next()
            .expect("generated keys have a signing subkey");
        key.key()
            .clone()
            .into_keypair()
            .expect("generated keys are unencrypted")
    }
}

/// Returns the key generated earlier in this process for an identical
/// spec, or generates it.
fn cached(spec: KeySpec) -> SigningKey {
    type Slot = Arc<OnceLock<SigningKey>>;
    static CACHE: Mutex<Vec<(String, Slot)>> = Mutex::new(Vec::new());
    let id = format!("{spec:?}");
    let slot = {
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        match cache.iter().find(|(k, _)| *k == id) {
            Some((_, slot)) => Arc::clone(slot),
            None => {
                let slot = Slot::default();
                cache.push((id, Arc::clone(&slot)));
                slot
            }
        }
    };
    // Generated outside the cache lock so different keys are made in
    // parallel; the OnceLock makes concurrent callers of one spec wait.
    slot.get_or_init(|| SigningKey::generate(&spec)).clone()
}

/// Clear-signs `text` like an `InRelease` file, with signatures created at
/// [`DEFAULT_SIGNATURE_TIME`]; see [`clearsign_at`].
pub fn clearsign(text: &[u8], signers: &[&SigningKey]) -> Vec<u8> {
    clearsign_at(text, signers, unix_time(DEFAULT_SIGNATURE_TIME))
}

/// Clear-signs `text` the way GnuPG frames Debian's `InRelease`:
/// `-----BEGIN PGP SIGNED MESSAGE-----`, `Hash: SHA512`, a blank line, the
/// dash-escaped text, then directly one armored signature block holding
/// one SHA-512 text signature per signer (made with its signing subkey).
/// As the cleartext framework requires, the newline ending the last line
/// and any trailing whitespace on lines are not covered by the signatures.
///
/// With no signers the text is returned unchanged, which is what an
/// unsigned `InRelease` looks like.
pub fn clearsign_at(text: &[u8], signers: &[&SigningKey], time: SystemTime) -> Vec<u8> {
    if signers.is_empty() {
        return text.to_vec();
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let hashed: Vec<&[u8]> = body
        .split(|&b| b == b'\n')
        .map(|line| line.trim_ascii_end())
        .collect();
    let signature = sign(&hashed.join(&b"\n"[..]), signers, time, SignatureType::Text);

    let mut out = b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n".to_vec();
    for line in body.split(|&b| b == b'\n') {
        if line.starts_with(b"-") {
            out.extend_from_slice(b"- ");
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(&signature);
    out
}

/// An ASCII-armored detached binary signature over `data` (a
/// `Release.gpg`), holding one SHA-512 signature per signer. Returns an
/// empty vector with no signers.
pub fn detached_sign_at(data: &[u8], signers: &[&SigningKey], time: SystemTime) -> Vec<u8> {
    if signers.is_empty() {
        return Vec::new();
    }
    sign(data, signers, time, SignatureType::Binary)
}

fn sign(data: &[u8], signers: &[&SigningKey], time: SystemTime, typ: SignatureType) -> Vec<u8> {
    let mut out = Vec::new();
    let message = Armorer::new(Message::new(&mut out))
        .kind(openpgp::armor::Kind::Signature)
        .build()
        .expect("creating the armorer");
    let mut signer = Signer::with_template(
        message,
        signers[0].signing_key_pair(),
        SignatureBuilder::new(typ),
    )
    .expect("creating a signer")
    .detached()
    .creation_time(time);
    for key in &signers[1..] {
        signer = signer
            .add_signer(key.signing_key_pair())
            .expect("adding a signer");
    }
    let mut writer = signer
        .hash_algo(HashAlgorithm::SHA512)
        .expect("all keys can use SHA-512")
        .build()
        .expect("building the signer");
    // Text signatures hash line endings as CRLF themselves, so the LF
    // text goes in as it is.
    writer.write_all(data).expect("signing in memory");
    writer.finalize().expect("finishing the signature");
    out
}
