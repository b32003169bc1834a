//! Hex strings and the digests plinth writes: `sha256:<hex>` for OCI
//! content, bare hex for Debian and SBOM fields, SHA-1 where SPDX 2.3
//! demands it.

use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use super::text::{checked_string, shown};

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

/// Lowercase hex of the SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// `sha256:<hex>` of `bytes`: an OCI digest.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// Lowercase hex of the SHA-1 of `bytes`. Only for formats that require
/// it (SPDX 2.3 file checksums); never for anything that needs collision
/// resistance.
pub fn sha1_hex(bytes: &[u8]) -> String {
    hex(&Sha1::digest(bytes))
}

/// Whether `s` is exactly `len` lowercase hex digits.
pub fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A SHA-256 written as 64 lowercase hex digits: the only form in which a
/// hash may name a file (a download cache entry, a blob). Parsing is the
/// only way to make one, so a value that could climb out of a directory
/// (`../x`, `/etc/passwd`) or name another file than its own cannot be
/// held.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Hex(String);

/// A value that is not 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sha256 {0:?}: expected 64 lowercase hex digits")]
pub struct InvalidSha256(pub String);

impl Sha256Hex {
    /// `text`, if it is 64 lowercase hex digits.
    pub fn parse(text: &str) -> Result<Self, InvalidSha256> {
        if is_lower_hex(text, 64) {
            Ok(Sha256Hex(text.to_owned()))
        } else {
            Err(InvalidSha256(shown(text)))
        }
    }

    /// The SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Sha256Hex(sha256_hex(bytes))
    }
}

checked_string!(Sha256Hex, InvalidSha256);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert!(is_lower_hex(&sha256_hex(b"x"), 64));
        assert!(!is_lower_hex("ABCD", 4));
        assert!(!is_lower_hex("../x", 4));
    }

    #[test]
    fn sha256_hex_holds_only_64_lowercase_hex_digits() {
        let good = sha256_hex(b"x");
        assert_eq!(Sha256Hex::parse(&good).unwrap().as_str(), good);
        assert_eq!(Sha256Hex::of(b"x").as_str(), good);
        for bad in [
            "",
            "../../somewhere/file",
            "/etc/passwd",
            &good.to_uppercase(),
            &good[1..],
            &format!("{good}0"),
            &format!("{}/{}", &good[..31], &good[32..]),
        ] {
            let err = Sha256Hex::parse(bad).unwrap_err().to_string();
            assert!(err.ends_with("expected 64 lowercase hex digits"), "{err}");
        }
        let long = "a".repeat(500);
        assert!(Sha256Hex::parse(&long).unwrap_err().to_string().len() < 200);
    }
}
