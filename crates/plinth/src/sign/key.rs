//! ECDSA P-256 keys: loading, exporting, generating.
//!
//! Accepted private key files (PEM):
//! - PKCS#8, `-----BEGIN PRIVATE KEY-----` (what `openssl genpkey` and
//!   [`write_new_key_pair`] write);
//! - SEC1, `-----BEGIN EC PRIVATE KEY-----` (what `openssl ecparam -genkey`
//!   writes), possibly preceded by an `-----BEGIN EC PARAMETERS-----` block;
//! - cosign's encrypted key file, `-----BEGIN ENCRYPTED SIGSTORE PRIVATE
//!   KEY-----` (what `cosign generate-key-pair` writes today) or the older
//!   `ENCRYPTED COSIGN PRIVATE KEY`: the PEM body is JSON from go-securesystemslib's
//!   `encrypted` package (scrypt KDF, NaCl secretbox), whose plaintext is a
//!   PKCS#8 DER key.
//!
//! Secrets never reach `Debug`, `Display` or an error message: [`SigningKey`]
//! and [`Password`] print as redacted, errors name the file and the problem
//! only, and decoded key bytes live in [`Zeroizing`] buffers that are wiped
//! when dropped (the `p256` secret scalar wipes itself too).

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::pkcs8::{DecodePublicKey as _, EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use pkcs8::ObjectIdentifier;
use pkcs8::der::Decode as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// Where front ends read the password of an encrypted key from (else they
/// ask on the terminal).
pub const PASSWORD_ENV: &str = "PLINTH_SIGNING_PASSWORD";

/// Key files are a few hundred bytes; anything much larger is not one, and
/// reading it whole would only let a hostile path exhaust memory.
const MAX_KEY_FILE: u64 = 64 * 1024;

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// Names for the algorithm and curve OIDs a user is likely to hand us, so the
/// error says "P-384" rather than a dotted number.
fn oid_name(oid: &ObjectIdentifier) -> String {
    match oid.to_string().as_str() {
        "1.3.132.0.33" => "P-224 (secp224r1)".into(),
        "1.3.132.0.34" => "P-384 (secp384r1)".into(),
        "1.3.132.0.35" => "P-521 (secp521r1)".into(),
        "1.3.132.0.10" => "secp256k1".into(),
        "1.3.36.3.3.2.8.1.1.7" => "brainpoolP256r1".into(),
        "1.2.840.113549.1.1.1" => "RSA".into(),
        "1.2.840.113549.1.1.10" => "RSA-PSS".into(),
        "1.3.101.112" => "Ed25519".into(),
        "1.3.101.113" => "Ed448".into(),
        "1.3.101.110" => "X25519".into(),
        "1.2.840.10040.4.1" => "DSA".into(),
        other => format!("OID {other}"),
    }
}

/// What was wrong with a key file. Shown after the file name by [`KeyError`];
/// every message is one line and carries no key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyProblem {
    #[error("cannot read it: {0}")]
    Read(io::Error),
    #[error("cannot write it: {0}")]
    Write(io::Error),
    #[error("it already exists; refusing to overwrite a key file")]
    Exists,
    #[error("larger than {MAX_KEY_FILE} bytes, so not a key file")]
    TooLarge,
    #[error("not a PEM file (no -----BEGIN line)")]
    NotPem,
    #[error("malformed PEM: {0}")]
    BadPem(&'static str),
    #[error("not a private key: the file holds {0}")]
    NotPrivateKey(String),
    #[error("more than one private key in the file")]
    SeveralKeys,
    #[error("unsupported key type {0}: plinth signs with ECDSA P-256")]
    UnsupportedAlgorithm(String),
    #[error("unsupported curve {0}: plinth signs with ECDSA P-256 (prime256v1)")]
    UnsupportedCurve(String),
    #[error(
        "OpenSSL-encrypted PEM (Proc-Type header) is not supported; decrypt it with `openssl ec` or import it with `cosign import-key-pair`"
    )]
    OpensslEncrypted,
    #[error(
        "encrypted PKCS#8 (ENCRYPTED PRIVATE KEY) is not supported; decrypt it with `openssl pkcs8` or import it with `cosign import-key-pair`"
    )]
    EncryptedPkcs8,
    #[error("malformed {format} key: {detail}")]
    Malformed {
        format: &'static str,
        detail: String,
    },
    #[error("the public key in the file does not belong to its private key")]
    PublicKeyMismatch,
    #[error("encrypted cosign key needs a password, and the empty password does not open it")]
    PasswordRequired,
    #[error("wrong password (or the encrypted key was altered)")]
    WrongPassword,
    #[error("unsupported cosign key encryption: {0}")]
    UnsupportedEncryption(String),
}

impl KeyProblem {
    fn malformed(format: &'static str, detail: impl fmt::Display) -> Self {
        Self::Malformed {
            format,
            detail: detail.to_string(),
        }
    }
}

/// A key file problem with the file it came from: `PATH: problem`, one line.
#[derive(Debug, thiserror::Error)]
#[error("key file {}: {problem}", path.display())]
pub struct KeyError {
    pub path: PathBuf,
    pub problem: KeyProblem,
}

impl KeyError {
    fn new(path: &Path, problem: KeyProblem) -> Self {
        Self {
            path: path.to_path_buf(),
            problem,
        }
    }
}

/// The password of an encrypted key. Wiped on drop; `Debug` shows nothing.
#[derive(Clone, Default)]
pub struct Password(Zeroizing<Vec<u8>>);

impl Password {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(Zeroizing::new(bytes.into()))
    }

    fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<&str> for Password {
    fn from(s: &str) -> Self {
        Self::new(s.as_bytes())
    }
}

impl From<String> for Password {
    fn from(s: String) -> Self {
        Self::new(s.into_bytes())
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// An ECDSA P-256 private key. `Debug` shows the public key's hint only.
#[derive(Clone)]
pub struct SigningKey {
    inner: p256::ecdsa::SigningKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("secret", &"<redacted>")
            .field("public_hint", &self.public_key().hint())
            .finish()
    }
}

impl SigningKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Self {
        let secret = p256::SecretKey::random(&mut rand_core::OsRng);
        Self {
            inner: secret.into(),
        }
    }

    /// The key with this 32-byte big-endian scalar (tests and known-answer
    /// vectors; real keys come from files or [`SigningKey::generate`]).
    pub fn from_scalar_bytes(bytes: &[u8]) -> Result<Self, KeyProblem> {
        let secret = p256::SecretKey::from_slice(bytes)
            .map_err(|_| KeyProblem::malformed("raw", "not a valid P-256 scalar"))?;
        Ok(Self {
            inner: secret.into(),
        })
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(*self.inner.verifying_key())
    }

    /// ECDSA P-256 over SHA-256 of `message`, ASN.1 DER encoded.
    ///
    /// The nonce comes from RFC 6979 (the `ecdsa` crate's default), so the
    /// same key and message always give the same bytes: a re-run of a
    /// publish pushes identical signature blobs and manifests.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let signature: p256::ecdsa::Signature = self.inner.sign(message);
        signature.to_der().as_bytes().to_vec()
    }

    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), LF line endings.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyProblem> {
        let secret = p256::SecretKey::from(&self.inner);
        secret
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyProblem::malformed("PKCS#8", e))
    }

    /// cosign's encrypted key file (`ENCRYPTED SIGSTORE PRIVATE KEY`) with a
    /// random salt and nonce, scrypt N=2^16 r=8 p=1 as cosign writes today.
    pub fn to_cosign_encrypted_pem(
        &self,
        password: &Password,
    ) -> Result<Zeroizing<String>, KeyProblem> {
        use rand_core::RngCore as _;
        let mut salt = [0u8; 32];
        let mut nonce = [0u8; 24];
        rand_core::OsRng.fill_bytes(&mut salt);
        rand_core::OsRng.fill_bytes(&mut nonce);
        self.to_cosign_encrypted_pem_with(password, ScryptStrength::Standard, &salt, &nonce)
    }

    /// [`SigningKey::to_cosign_encrypted_pem`] with a given salt and nonce:
    /// for test vectors only (a reused nonce breaks secretbox).
    pub fn to_cosign_encrypted_pem_with(
        &self,
        password: &Password,
        strength: ScryptStrength,
        salt: &[u8],
        nonce: &[u8; 24],
    ) -> Result<Zeroizing<String>, KeyProblem> {
        use crypto_secretbox::aead::{Aead as _, KeyInit as _};
        let secret = p256::SecretKey::from(&self.inner);
        let der = secret
            .to_pkcs8_der()
            .map_err(|e| KeyProblem::malformed("PKCS#8", e))?;
        let (n, r, p) = strength.params();
        let box_key = scrypt_key(password.as_bytes(), salt, n, r, p)?;
        let cipher = crypto_secretbox::XSalsa20Poly1305::new(crypto_secretbox::Key::from_slice(
            &box_key[..],
        ));
        let ciphertext = cipher
            .encrypt(crypto_secretbox::Nonce::from_slice(nonce), der.as_bytes())
            .map_err(|_| KeyProblem::UnsupportedEncryption("secretbox encryption failed".into()))?;
        let file = EncryptedKeyFile {
            kdf: Kdf {
                name: KDF_SCRYPT.into(),
                params: ScryptParamsJson { n, r, p },
                salt: STANDARD.encode(salt),
            },
            cipher: Cipher {
                name: CIPHER_SECRETBOX.into(),
                nonce: STANDARD.encode(nonce),
            },
            ciphertext: STANDARD.encode(ciphertext),
        };
        let json = serde_json::to_vec(&file).map_err(|e| KeyProblem::malformed("cosign", e))?;
        Ok(Zeroizing::new(pem_encode(COSIGN_LABEL_SIGSTORE, &json)))
    }
}

/// An ECDSA P-256 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(p256::ecdsa::VerifyingKey);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey").field(&self.hint()).finish()
    }
}

impl PublicKey {
    /// Parses a `-----BEGIN PUBLIC KEY-----` (SPKI) PEM, as cosign's
    /// `cosign.pub` and [`PublicKey::to_pem`] are.
    pub fn from_pem(pem: &str) -> Result<Self, KeyProblem> {
        let blocks = pem_blocks(pem.as_bytes())?;
        let block = blocks
            .iter()
            .find(|b| b.label == "PUBLIC KEY")
            .ok_or(KeyProblem::BadPem("no -----BEGIN PUBLIC KEY----- block"))?;
        Self::from_spki_der(&block.der)
    }

    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyProblem> {
        let spki = pkcs8::SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| KeyProblem::malformed("SPKI public", e))?;
        if spki.algorithm.oid != OID_EC_PUBLIC_KEY {
            return Err(KeyProblem::UnsupportedAlgorithm(oid_name(
                &spki.algorithm.oid,
            )));
        }
        match spki.algorithm.parameters_oid() {
            Ok(oid) if oid == OID_P256 => {}
            Ok(oid) => return Err(KeyProblem::UnsupportedCurve(oid_name(&oid))),
            Err(_) => {
                return Err(KeyProblem::UnsupportedCurve(
                    "explicit curve parameters".into(),
                ));
            }
        }
        p256::ecdsa::VerifyingKey::from_public_key_der(der)
            .map(Self)
            .map_err(|e| KeyProblem::malformed("SPKI public", e))
    }

    /// DER SubjectPublicKeyInfo, uncompressed point: the same 91 bytes Go's
    /// `x509.MarshalPKIXPublicKey` gives, which matters for [`Self::hint`].
    pub fn spki_der(&self) -> Vec<u8> {
        // Encoding a valid P-256 point into a fixed structure cannot fail.
        self.0
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default()
    }

    /// PEM `-----BEGIN PUBLIC KEY-----`, 64-column lines, LF, final newline:
    /// byte-identical to what `cosign generate-key-pair` writes to `cosign.pub`.
    pub fn to_pem(&self) -> String {
        pem_encode("PUBLIC KEY", &self.spki_der())
    }

    /// base64(SHA-256(SPKI DER)), standard alphabet with padding: the
    /// `verificationMaterial.publicKey.hint` cosign 3 writes for key-based
    /// bundles (`internal/key/svkeypair.go`).
    pub fn hint(&self) -> String {
        STANDARD.encode(Sha256::digest(self.spki_der()))
    }

    /// Checks an ASN.1 DER ECDSA signature over SHA-256 of `message`.
    /// Malformed signatures are simply invalid: this never panics.
    pub fn verify(&self, message: &[u8], der_signature: &[u8]) -> bool {
        match p256::ecdsa::Signature::from_der(der_signature) {
            Ok(sig) => self.0.verify(message, &sig).is_ok(),
            Err(_) => false,
        }
    }
}

/// A private key file read into memory (wiped on drop), so that a front end
/// can ask whether it needs a password before unlocking it.
pub struct KeyFile {
    path: PathBuf,
    bytes: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl KeyFile {
    /// Reads the file (bounded: key files are a few hundred bytes).
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let bytes = read_bounded(path).map_err(|p| KeyError::new(path, p))?;
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file is cosign's encrypted format, which needs a password.
    pub fn is_encrypted(&self) -> bool {
        let text = String::from_utf8_lossy(&self.bytes);
        text.contains(&format!("-----BEGIN {COSIGN_LABEL_SIGSTORE}-----"))
            || text.contains(&format!("-----BEGIN {COSIGN_LABEL_COSIGN}-----"))
    }

    /// The key. `password` is used for cosign's encrypted format only;
    /// `None` there tries the empty password, as cosign does.
    pub fn signing_key(&self, password: Option<&Password>) -> Result<SigningKey, KeyError> {
        parse_signing_key(&self.bytes, password).map_err(|p| KeyError::new(&self.path, p))
    }
}

/// Reads and parses a private key file (see [`KeyFile`]).
pub fn load_signing_key(path: &Path, password: Option<&Password>) -> Result<SigningKey, KeyError> {
    KeyFile::read(path)?.signing_key(password)
}

/// Reads a public key PEM file.
pub fn load_public_key(path: &Path) -> Result<PublicKey, KeyError> {
    let bytes = read_bounded(path).map_err(|p| KeyError::new(path, p))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| KeyError::new(path, KeyProblem::NotPem))?;
    PublicKey::from_pem(text).map_err(|p| KeyError::new(path, p))
}

fn read_bounded(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyProblem> {
    let file = fs::File::open(path).map_err(KeyProblem::Read)?;
    // Sized up front so reading does not reallocate and leave unwiped
    // copies of the key behind.
    let len = file
        .metadata()
        .map(|m| m.len())
        .unwrap_or(0)
        .min(MAX_KEY_FILE) as usize;
    let mut bytes = Zeroizing::new(Vec::with_capacity(len + 1));
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(KeyProblem::Read)?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(KeyProblem::TooLarge);
    }
    Ok(bytes)
}

const COSIGN_LABEL_SIGSTORE: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
const COSIGN_LABEL_COSIGN: &str = "ENCRYPTED COSIGN PRIVATE KEY";

/// Parses the bytes of a private key file (see the module docs for formats).
pub fn parse_signing_key(
    bytes: &[u8],
    password: Option<&Password>,
) -> Result<SigningKey, KeyProblem> {
    let blocks = pem_blocks(bytes)?;
    let mut params: Option<&PemBlock> = None;
    let mut private: Option<&PemBlock> = None;
    let mut others: Vec<&str> = Vec::new();
    for block in &blocks {
        match block.label.as_str() {
            "EC PARAMETERS" => params = Some(block),
            "PRIVATE KEY"
            | "EC PRIVATE KEY"
            | COSIGN_LABEL_SIGSTORE
            | COSIGN_LABEL_COSIGN
            | "ENCRYPTED PRIVATE KEY"
            | "RSA PRIVATE KEY"
            | "DSA PRIVATE KEY"
            | "OPENSSH PRIVATE KEY" => {
                if private.is_some() {
                    return Err(KeyProblem::SeveralKeys);
                }
                private = Some(block);
            }
            other => others.push(other),
        }
    }
    let Some(block) = private else {
        let what = if others.is_empty() {
            "no key block".to_owned()
        } else {
            others
                .iter()
                .map(|l| format!("a {l} block"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(KeyProblem::NotPrivateKey(what));
    };
    if block.has_headers {
        return Err(KeyProblem::OpensslEncrypted);
    }
    if let Some(params) = params {
        check_ec_parameters(&params.der)?;
    }
    let secret = match block.label.as_str() {
        "PRIVATE KEY" => secret_from_pkcs8(&block.der, "PKCS#8")?,
        "EC PRIVATE KEY" => secret_from_sec1(&block.der, "SEC1")?,
        COSIGN_LABEL_SIGSTORE | COSIGN_LABEL_COSIGN => {
            let der = decrypt_cosign(&block.der, password)?;
            // cosign stores PKCS#8 inside; a SEC1 key there is refused by
            // cosign too (its keys_test.go expects that).
            secret_from_pkcs8(&der, "decrypted cosign (PKCS#8 expected)")?
        }
        "ENCRYPTED PRIVATE KEY" => return Err(KeyProblem::EncryptedPkcs8),
        "RSA PRIVATE KEY" => return Err(KeyProblem::UnsupportedAlgorithm("RSA".into())),
        "DSA PRIVATE KEY" => return Err(KeyProblem::UnsupportedAlgorithm("DSA".into())),
        // OpenSSH keys have their own container; P-256 ones can be converted.
        _ => {
            return Err(KeyProblem::UnsupportedAlgorithm(
                "OpenSSH private key (convert with `ssh-keygen -p -m PKCS8`)".into(),
            ));
        }
    };
    Ok(SigningKey {
        inner: secret.into(),
    })
}

fn check_ec_parameters(der: &[u8]) -> Result<(), KeyProblem> {
    match sec1::EcParameters::from_der(der) {
        Ok(sec1::EcParameters::NamedCurve(oid)) if oid == OID_P256 => Ok(()),
        Ok(sec1::EcParameters::NamedCurve(oid)) => {
            Err(KeyProblem::UnsupportedCurve(oid_name(&oid)))
        }
        // `openssl ecparam -param_enc explicit` spells the curve out; we do
        // not compare explicit parameters against P-256's.
        Err(_) => Err(KeyProblem::UnsupportedCurve(
            "explicit curve parameters".into(),
        )),
    }
}

fn secret_from_pkcs8(der: &[u8], format: &'static str) -> Result<p256::SecretKey, KeyProblem> {
    let info =
        pkcs8::PrivateKeyInfo::from_der(der).map_err(|e| KeyProblem::malformed(format, e))?;
    if info.algorithm.oid != OID_EC_PUBLIC_KEY {
        return Err(KeyProblem::UnsupportedAlgorithm(oid_name(
            &info.algorithm.oid,
        )));
    }
    match info.algorithm.parameters_oid() {
        Ok(oid) if oid == OID_P256 => {}
        Ok(oid) => return Err(KeyProblem::UnsupportedCurve(oid_name(&oid))),
        Err(_) => {
            return Err(KeyProblem::UnsupportedCurve(
                "explicit curve parameters".into(),
            ));
        }
    }
    // The inner key is a SEC1 ECPrivateKey; Go and OpenSSL leave its own
    // parameters out (they are in the AlgorithmIdentifier above).
    secret_from_sec1(info.private_key, format)
}

fn secret_from_sec1(der: &[u8], format: &'static str) -> Result<p256::SecretKey, KeyProblem> {
    let ec = sec1::EcPrivateKey::from_der(der).map_err(|e| KeyProblem::malformed(format, e))?;
    if let Some(params) = ec.parameters {
        match params.named_curve() {
            Some(oid) if oid == OID_P256 => {}
            Some(oid) => return Err(KeyProblem::UnsupportedCurve(oid_name(&oid))),
            None => {
                return Err(KeyProblem::UnsupportedCurve(
                    "explicit curve parameters".into(),
                ));
            }
        }
    }
    if ec.private_key.len() != 32 {
        // A P-256 scalar is 32 bytes (SEC1 section C.4); a different length
        // is another curve whose parameters were left out.
        return Err(KeyProblem::UnsupportedCurve(format!(
            "with a {}-byte private scalar",
            ec.private_key.len()
        )));
    }
    let secret = p256::SecretKey::from_slice(ec.private_key).map_err(|_| {
        KeyProblem::malformed(
            format,
            "private scalar is zero or not below the group order",
        )
    })?;
    // A file whose embedded public key is not the private key's would sign
    // happily and then fail every verification: say so now.
    if let Some(public) = ec.public_key {
        let embedded = p256::PublicKey::from_sec1_bytes(public).map_err(|_| {
            KeyProblem::malformed(format, "embedded public key is not a P-256 point")
        })?;
        if embedded != secret.public_key() {
            return Err(KeyProblem::PublicKeyMismatch);
        }
    }
    Ok(secret)
}

// ---------------------------------------------------------------------------
// cosign's encrypted key file (go-securesystemslib `encrypted`)

const KDF_SCRYPT: &str = "scrypt";
const CIPHER_SECRETBOX: &str = "nacl/secretbox";

/// The three scrypt parameter sets go-securesystemslib accepts when
/// decrypting; anything else is refused there (and here) so a tampered file
/// cannot make us burn gigabytes of memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScryptStrength {
    /// N=2^15, r=8, p=1: keys from older cosign versions.
    Legacy,
    /// N=2^16, r=8, p=1: what cosign writes today.
    Standard,
    /// N=2^17, r=8, p=1.
    Owasp,
}

impl ScryptStrength {
    fn params(self) -> (u64, u32, u32) {
        match self {
            Self::Legacy => (1 << 15, 8, 1),
            Self::Standard => (1 << 16, 8, 1),
            Self::Owasp => (1 << 17, 8, 1),
        }
    }

    fn from_params(n: u64, r: u32, p: u32) -> Option<Self> {
        [Self::Legacy, Self::Standard, Self::Owasp]
            .into_iter()
            .find(|s| s.params() == (n, r, p))
    }
}

// Field order and names as Go's encoding/json writes go-securesystemslib's
// structs: {"kdf":{"name","params":{"N","r","p"},"salt"},"cipher":{"name",
// "nonce"},"ciphertext"}; []byte fields are standard base64 with padding.
#[derive(Serialize, Deserialize)]
struct EncryptedKeyFile {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParamsJson,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct ScryptParamsJson {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

fn scrypt_key(
    password: &[u8],
    salt: &[u8],
    n: u64,
    r: u32,
    p: u32,
) -> Result<Zeroizing<[u8; 32]>, KeyProblem> {
    let log_n = n.trailing_zeros() as u8;
    let params = scrypt::Params::new(log_n, r, p, 32)
        .map_err(|_| KeyProblem::UnsupportedEncryption(format!("scrypt N={n} r={r} p={p}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, salt, &params, &mut key[..])
        .map_err(|_| KeyProblem::UnsupportedEncryption("scrypt output length".into()))?;
    Ok(key)
}

fn decrypt_cosign(
    json: &[u8],
    password: Option<&Password>,
) -> Result<Zeroizing<Vec<u8>>, KeyProblem> {
    use crypto_secretbox::aead::{Aead as _, KeyInit as _};
    // serde_json's error text quotes no input, only line and column.
    let file: EncryptedKeyFile =
        serde_json::from_slice(json).map_err(|e| KeyProblem::malformed("cosign encrypted", e))?;
    if file.kdf.name != KDF_SCRYPT {
        return Err(KeyProblem::UnsupportedEncryption(format!(
            "KDF {:?}",
            file.kdf.name
        )));
    }
    if file.cipher.name != CIPHER_SECRETBOX {
        return Err(KeyProblem::UnsupportedEncryption(format!(
            "cipher {:?}",
            file.cipher.name
        )));
    }
    let ScryptParamsJson { n, r, p } = file.kdf.params;
    if ScryptStrength::from_params(n, r, p).is_none() {
        return Err(KeyProblem::UnsupportedEncryption(format!(
            "scrypt N={n} r={r} p={p} (cosign accepts only N=32768/65536/131072 with r=8 p=1)"
        )));
    }
    let b64 = |field: &'static str, s: &str| {
        STANDARD.decode(s).map_err(|_| {
            KeyProblem::malformed("cosign encrypted", format!("{field} is not base64"))
        })
    };
    let salt = b64("salt", &file.kdf.salt)?;
    let nonce = b64("nonce", &file.cipher.nonce)?;
    let ciphertext = b64("ciphertext", &file.ciphertext)?;
    if nonce.len() != 24 {
        return Err(KeyProblem::malformed(
            "cosign encrypted",
            "nonce is not 24 bytes",
        ));
    }
    let attempt = |pw: &[u8]| -> Result<Option<Zeroizing<Vec<u8>>>, KeyProblem> {
        let key = scrypt_key(pw, &salt, n, r, p)?;
        let cipher =
            crypto_secretbox::XSalsa20Poly1305::new(crypto_secretbox::Key::from_slice(&key[..]));
        Ok(cipher
            .decrypt(
                crypto_secretbox::Nonce::from_slice(&nonce),
                ciphertext.as_slice(),
            )
            .ok()
            .map(Zeroizing::new))
    };
    match password {
        Some(pw) => attempt(pw.as_bytes())?.ok_or(KeyProblem::WrongPassword),
        None => attempt(b"")?.ok_or(KeyProblem::PasswordRequired),
    }
}

// ---------------------------------------------------------------------------
// Writing a new key pair (`cargo xtask keygen`)

/// Generates a key and writes it as PKCS#8 PEM to `private_path` (mode 0600,
/// created exclusively: an existing file is never overwritten) and its public
/// key PEM to `public_path` (mode 0644). Returns the public key.
pub fn write_new_key_pair(private_path: &Path, public_path: &Path) -> Result<PublicKey, KeyError> {
    let key = SigningKey::generate();
    let pem = key
        .to_pkcs8_pem()
        .map_err(|p| KeyError::new(private_path, p))?;
    let public = key.public_key();
    // Check both before writing either, so a refusal leaves nothing behind.
    for path in [private_path, public_path] {
        if path.symlink_metadata().is_ok() {
            return Err(KeyError::new(path, KeyProblem::Exists));
        }
    }
    write_exclusive(private_path, pem.as_bytes(), 0o600)
        .map_err(|p| KeyError::new(private_path, p))?;
    if let Err(p) = write_exclusive(public_path, public.to_pem().as_bytes(), 0o644) {
        // A private key without its public half is confusing; take it back.
        let _ = fs::remove_file(private_path);
        return Err(KeyError::new(public_path, p));
    }
    Ok(public)
}

fn write_exclusive(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyProblem> {
    // `mode` applies at creation, so the secret is never readable by others,
    // not even between open and a later chmod.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => KeyProblem::Exists,
            _ => KeyProblem::Write(e),
        })?;
    file.write_all(contents).map_err(KeyProblem::Write)?;
    file.sync_all().map_err(KeyProblem::Write)
}

// ---------------------------------------------------------------------------
// PEM

struct PemBlock {
    label: String,
    has_headers: bool,
    der: Zeroizing<Vec<u8>>,
}

/// Every PEM block in `bytes`, text outside blocks ignored (OpenSSL and
/// people put comments there). Lenient about line length and CRLF, strict
/// about matching BEGIN/END labels and base64.
fn pem_blocks(bytes: &[u8]) -> Result<Vec<PemBlock>, KeyProblem> {
    let text = std::str::from_utf8(bytes).map_err(|_| KeyProblem::NotPem)?;
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        // Reserved up front so the buffer never reallocates and leaves an
        // unwiped copy of the key's base64 behind.
        let mut body = Zeroizing::new(String::with_capacity(text.len()));
        let mut has_headers = false;
        let mut closed = false;
        for line in lines.by_ref() {
            if line == end {
                closed = true;
                break;
            }
            if line.starts_with("-----") {
                return Err(KeyProblem::BadPem("BEGIN and END labels differ"));
            }
            if line.contains(':') {
                // RFC 1421 headers (Proc-Type, DEK-Info): encrypted legacy PEM.
                has_headers = true;
                continue;
            }
            body.push_str(line);
        }
        if !closed {
            return Err(KeyProblem::BadPem("a BEGIN line has no matching END line"));
        }
        let der = STANDARD
            .decode(body.as_bytes())
            .map_err(|_| KeyProblem::BadPem("block body is not base64"))?;
        blocks.push(PemBlock {
            label: label.to_owned(),
            has_headers,
            der: Zeroizing::new(der),
        });
    }
    if blocks.is_empty() {
        return Err(KeyProblem::NotPem);
    }
    Ok(blocks)
}

/// PEM as Go's `pem.EncodeToMemory` writes it: 64-column base64 lines, LF.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
