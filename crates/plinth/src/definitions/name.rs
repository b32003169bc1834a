//! Names from the definitions that become file names: images
//! (`target/images/<image>-<distribution>/`), distributions
//! (`lockfiles/<distribution>.lock.toml`), architectures (SBOM file names),
//! suites, archives and components (URL segments, cache names).

use serde::{Deserialize, Serialize};

use crate::support::text::{checked_string, shown};

/// Longest name accepted: far above any real one, short enough for every
/// file system once a suffix is added.
const MAX_LEN: usize = 100;

/// A name shaped like a Debian package name: lowercase letters, digits,
/// `+`, `-` and `.`, starting with a letter or digit, never `..`. Such a
/// name is always exactly one path component and one URL segment.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

/// A text that cannot be a [`Name`], and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid name {text:?}: {why}")]
pub struct InvalidName {
    pub text: String,
    pub why: &'static str,
}

impl Name {
    pub fn parse(text: &str) -> Result<Self, InvalidName> {
        check(text).map_err(|why| InvalidName {
            text: shown(text),
            why,
        })?;
        Ok(Name(text.to_owned()))
    }
}

checked_string!(Name, InvalidName);

fn check(text: &str) -> Result<(), &'static str> {
    let bytes = text.as_bytes();
    match bytes.first() {
        None => return Err("empty"),
        Some(b) if !(b.is_ascii_lowercase() || b.is_ascii_digit()) => {
            return Err("must start with a lowercase letter or a digit");
        }
        Some(_) => {}
    }
    if bytes.len() > MAX_LEN {
        return Err("longer than 100 characters");
    }
    let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(b);
    if !bytes.iter().all(allowed) {
        return Err("only lowercase letters, digits, `+`, `-` and `.` are allowed");
    }
    if text.contains("..") {
        return Err("contains `..`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_debian_like_names_only() {
        for good in [
            "static",
            "base-nossl",
            "debian13",
            "amd64",
            "trixie-security",
            "g++",
            "a",
        ] {
            assert_eq!(Name::parse(good).unwrap(), good);
        }
        for (bad, why) in [
            ("", "empty"),
            ("../x", "must start with a lowercase letter or a digit"),
            ("/etc", "must start with a lowercase letter or a digit"),
            (
                "a/b",
                "only lowercase letters, digits, `+`, `-` and `.` are allowed",
            ),
            ("Static", "must start with a lowercase letter or a digit"),
            (
                "base nossl",
                "only lowercase letters, digits, `+`, `-` and `.` are allowed",
            ),
            ("a..b", "contains `..`"),
            (
                "x\0",
                "only lowercase letters, digits, `+`, `-` and `.` are allowed",
            ),
        ] {
            assert_eq!(Name::parse(bad).unwrap_err().why, why, "{bad:?}");
        }
        assert!(Name::parse(&"a".repeat(101)).is_err());
        let err: Result<Name, _> = toml::from_str::<toml::Value>("n = \"../x\"")
            .unwrap()
            .get("n")
            .unwrap()
            .clone()
            .try_into();
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("invalid name \"../x\"")
        );
    }
}
