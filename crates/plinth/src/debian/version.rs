//! Debian version strings and their ordering (Debian policy 5.6.12), the
//! same as `dpkg --compare-versions`.

use std::cmp::Ordering;
use std::fmt;

/// A Debian version `[epoch:]upstream[-revision]`, kept as written.
///
/// Ordering and equality follow dpkg, so `1.0` and `0:1.0` are equal.
#[derive(Clone, Debug)]
pub struct Version {
    text: String,
    epoch: u64,
    upstream: (usize, usize),
    revision: (usize, usize),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid Debian version {text:?}: {why}")]
pub struct VersionError {
    pub text: String,
    pub why: &'static str,
}

impl Version {
    pub fn parse(text: &str) -> Result<Self, VersionError> {
        let parts = Self::split(text)?;
        Ok(Version {
            text: parts.text.to_owned(),
            epoch: parts.epoch,
            upstream: parts.upstream,
            revision: parts.revision,
        })
    }

    /// Checks `text` without keeping it: the index fast path validates
    /// every version but compares only a few.
    pub fn validate(text: &str) -> Result<(), VersionError> {
        Self::split(text).map(|_| ())
    }

    fn split(text: &str) -> Result<Parts<'_>, VersionError> {
        let bad = |why| VersionError {
            text: text.to_owned(),
            why,
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(bad("empty"));
        }
        if trimmed.contains(char::is_whitespace) {
            return Err(bad("contains whitespace"));
        }
        let (epoch, rest_start) = match trimmed.find(':') {
            Some(i) => {
                let e = &trimmed[..i];
                if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("epoch is not a number"));
                }
                (e.parse().map_err(|_| bad("epoch too large"))?, i + 1)
            }
            None => (0, 0),
        };
        let rest = &trimmed[rest_start..];
        let (upstream, revision) = match rest.rfind('-') {
            Some(i) => (
                (rest_start, rest_start + i),
                (rest_start + i + 1, trimmed.len()),
            ),
            None => ((rest_start, trimmed.len()), (trimmed.len(), trimmed.len())),
        };
        let up = &trimmed[upstream.0..upstream.1];
        if !up.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(bad("upstream version must start with a digit"));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || ".+~-:".contains(c);
        if !trimmed[rest_start..].chars().all(allowed) {
            return Err(bad("contains a character outside [A-Za-z0-9.+~-:]"));
        }
        if revision.0 < revision.1 || rest.ends_with('-') {
            let rev = &trimmed[revision.0..revision.1];
            if rev.is_empty() || rev.contains(':') {
                return Err(bad("invalid revision"));
            }
        }
        Ok(Parts {
            text: trimmed,
            epoch,
            upstream,
            revision,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The version without its epoch, as it appears in pool file names.
    pub fn without_epoch(&self) -> &str {
        match self.text.find(':') {
            Some(i) => &self.text[i + 1..],
            None => &self.text,
        }
    }

    fn upstream(&self) -> &str {
        &self.text[self.upstream.0..self.upstream.1]
    }

    fn revision(&self) -> &str {
        &self.text[self.revision.0..self.revision.1]
    }
}

/// A checked version string: the trimmed text, the epoch, and the byte
/// ranges of the upstream version and the revision.
struct Parts<'a> {
    text: &'a str,
    epoch: u64,
    upstream: (usize, usize),
    revision: (usize, usize),
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| compare_part(self.upstream(), other.upstream()))
            .then_with(|| compare_part(self.revision(), other.revision()))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

/// dpkg's weight of a character in the non-digit parts: `~` below the end of
/// the string, the end below letters, letters below everything else.
fn order(c: Option<u8>) -> i32 {
    match c {
        Some(b'~') => -1,
        None => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        // Non-digit prefix, compared character by character with `order`.
        loop {
            let ca = a.first().copied().filter(|c| !c.is_ascii_digit());
            let cb = b.first().copied().filter(|c| !c.is_ascii_digit());
            if ca.is_none() && cb.is_none() {
                break;
            }
            let (oa, ob) = (order(ca), order(cb));
            if oa != ob {
                return oa.cmp(&ob);
            }
            a = &a[ca.is_some() as usize..];
            b = &b[cb.is_some() as usize..];
        }
        // Digit run, compared numerically without overflow.
        let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
        let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let na = trim_zeros(&a[..da]);
        let nb = trim_zeros(&b[..db]);
        let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
        if ord != Ordering::Equal {
            return ord;
        }
        a = &a[da..];
        b = &b[db..];
    }
    Ordering::Equal
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[zeros..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn ordering_table() {
        let less = [
            ("1.0~rc1", "1.0"),
            ("1.0", "1.0.1"),
            ("1.0~rc1", "1.0.1"),
            ("1.0~~", "1.0~"),
            ("1.0~", "1.0"),
            ("1.0", "1.0a"),
            ("1.0a", "1.0+"),
            ("1.0a", "1.0."),
            ("2.36-9~bpo1", "2.36-9+deb12u4"),
            ("2.36-9", "2.36-9+deb12u4"),
            ("9", "10"),
            ("1:0.1", "2:0.0"),
            ("5.0", "1:0.1"),
            ("1.2-3", "1.2-10"),
            ("1.2-3", "1.2.0-1"),
            ("3.5.7-1~deb13u3", "3.5.9-1~deb13u1"),
            ("0.9", "1.0-0"),
            ("1-1", "1-1.1"),
            ("1.0-1~bpo", "1.0-1"),
        ];
        for (a, b) in less {
            assert!(v(a) < v(b), "{a} < {b}");
            assert!(v(b) > v(a), "{b} > {a}");
        }
        assert_eq!(v("1.0"), v("0:1.0"));
        assert_eq!(v("1.00"), v("1.0"));
        assert_eq!(v("1.0-0"), v("1.0-0"));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "abc", "1.0 2", "x:1.0", "1.0_2", "1:", "1.0-"] {
            assert!(Version::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(v("1:2.3-4").without_epoch(), "2.3-4");
    }

    /// Compares with the reference implementation on generated pairs.
    #[test]
    fn agrees_with_dpkg() {
        if std::process::Command::new("dpkg")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipped: dpkg is not installed");
            return;
        }
        let parts = [
            "0", "1", "1.0", "1.0~rc1", "1.0+b1", "1a", "1.01", "2~", "10", "1:0",
        ];
        let revs = ["", "-1", "-1~bpo", "-0", "-1+deb13u1", "-10"];
        let mut versions = Vec::new();
        for p in parts {
            for r in revs {
                versions.push(format!("{p}{r}"));
            }
        }
        let mut checked = 0;
        for (i, a) in versions.iter().enumerate() {
            for b in versions.iter().skip(i).step_by(7) {
                let ours = v(a).cmp(&v(b));
                let lt = std::process::Command::new("dpkg")
                    .args(["--compare-versions", a, "lt", b])
                    .status()
                    .unwrap()
                    .success();
                let eq = std::process::Command::new("dpkg")
                    .args(["--compare-versions", a, "eq", b])
                    .status()
                    .unwrap()
                    .success();
                let theirs = if lt {
                    Ordering::Less
                } else if eq {
                    Ordering::Equal
                } else {
                    Ordering::Greater
                };
                assert_eq!(ours, theirs, "{a} vs {b}");
                checked += 1;
            }
        }
        assert!(checked > 100);
    }
}
