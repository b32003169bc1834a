//! Values from archive indices that become file names: package names
//! (`/var/lib/dpkg/status.d/<package>` in every image) and pool paths
//! (the URL a `.deb` is fetched from). Each is a type that only a check
//! can make, so the lock, the lockfile and the build hold nothing else.

use serde::{Deserialize, Serialize};

use crate::support::text::{checked_string, shown};

/// A value that cannot be a [`PackageName`] or a [`PoolPath`], and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {text:?}: {why}")]
pub struct InvalidValue {
    pub what: &'static str,
    pub text: String,
    pub why: &'static str,
}

/// A binary package name as Debian policy 5.6.1 defines it: at least two
/// characters, lowercase letters, digits, `+`, `-` and `.`, starting with
/// a letter or digit. Always one path component.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PackageName(String);

impl PackageName {
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        Self::validate(text)?;
        Ok(PackageName(text.to_owned()))
    }

    /// Checks `text` without keeping it (no allocation unless it fails):
    /// the index fast path checks every stanza's name.
    pub fn validate(text: &str) -> Result<(), InvalidValue> {
        check_package_name(text).map_err(|why| InvalidValue {
            what: "package name",
            text: shown(text),
            why,
        })
    }
}

fn check_package_name(text: &str) -> Result<(), &'static str> {
    let bytes = text.as_bytes();
    if bytes.len() < 2 {
        return Err("shorter than two characters");
    }
    if bytes.len() > 200 {
        return Err("longer than 200 characters");
    }
    if !(bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit()) {
        return Err("must start with a lowercase letter or a digit");
    }
    if !bytes.iter().all(|b| is_name_byte(*b)) {
        return Err("only lowercase letters, digits, `+`, `-` and `.` are allowed");
    }
    Ok(())
}

checked_string!(PackageName, InvalidValue);

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b)
}

/// A `.deb`'s `Filename` below the archive root: `pool/` then plain
/// components (letters, digits, `.`, `_`, `+`, `~`, `-`; never empty, `.`
/// or `..`), ending in `.deb`. It can name nothing outside the pool, and
/// nothing that changes the meaning of the URL it is appended to.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PoolPath(String);

impl PoolPath {
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        Self::validate(text)?;
        Ok(PoolPath(text.to_owned()))
    }

    /// Checks `text` without keeping it (no allocation unless it fails).
    pub fn validate(text: &str) -> Result<(), InvalidValue> {
        check_pool_path(text).map_err(|why| InvalidValue {
            what: "pool path",
            text: shown(text),
            why,
        })
    }
}

fn check_pool_path(text: &str) -> Result<(), &'static str> {
    if text.len() > 1000 {
        return Err("longer than 1000 characters");
    }
    let mut components = text.split('/');
    if components.next() != Some("pool") {
        return Err("expected a path below pool/");
    }
    let mut last = "";
    for component in components {
        if component.is_empty() || component == "." || component == ".." {
            return Err("empty, `.` or `..` component");
        }
        let allowed = |b: &u8| b.is_ascii_alphanumeric() || b"._+~-".contains(b);
        if !component.as_bytes().iter().all(allowed) {
            return Err(
                "only letters, digits, `.`, `_`, `+`, `~` and `-` are allowed in a component",
            );
        }
        last = component;
    }
    if !last.ends_with(".deb") {
        return Err("expected a .deb file");
    }
    Ok(())
}

checked_string!(PoolPath, InvalidValue);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_follow_policy() {
        for good in ["libc6", "libstdc++6", "g++-14", "0ad", "python3.13"] {
            assert_eq!(PackageName::parse(good).unwrap(), good);
        }
        for bad in [
            "",
            "a",
            "../../usr/bin/x",
            "-x",
            ".x",
            "Libc6",
            "a b",
            "a/b",
            "a_b",
        ] {
            assert!(PackageName::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            PackageName::parse("../../usr/bin/x")
                .unwrap_err()
                .to_string(),
            "invalid package name \"../../usr/bin/x\": must start with a lowercase letter or a digit"
        );
    }

    #[test]
    fn pool_paths_stay_in_the_pool() {
        for good in [
            "pool/main/g/gcc-14/libstdc++6_14.2.0-19_amd64.deb",
            "pool/main/b/busybox/busybox-static_1.37.0-6_amd64.deb",
            "pool/updates/main/o/openssl/libssl3t64_3.5.1-1~deb13u1_amd64.deb",
        ] {
            assert_eq!(PoolPath::parse(good).unwrap(), good);
        }
        for bad in [
            "",
            "/pool/main/x.deb",
            "pool/../../etc/passwd.deb",
            "pool/main//x.deb",
            "pool/./x.deb",
            "dists/x.deb",
            "pool/main/x.deb?y",
            "pool/main/x.deb#y",
            "pool/main/x%2e.deb",
            "pool/main/x",
            "pool",
        ] {
            assert!(PoolPath::parse(bad).is_err(), "{bad:?}");
        }
    }
}
