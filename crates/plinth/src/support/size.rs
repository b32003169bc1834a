//! Byte sizes as people write them in settings (`"16 GiB"`, `512`) and
//! read them in messages.

use std::fmt;

/// A number of bytes. Written in TOML as an integer (bytes) or a string
/// with a binary unit: `"512 KiB"`, `"16 GiB"`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "SizeText", into = "u64")]
pub struct ByteSize(pub u64);

/// What a size may be written as.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum SizeText {
    Bytes(u64),
    Text(String),
}

const UNITS: [(&str, u64); 5] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

impl ByteSize {
    pub const fn gib(n: u64) -> Self {
        ByteSize(n << 30)
    }

    pub const fn mib(n: u64) -> Self {
        ByteSize(n << 20)
    }

    /// `"16 GiB"`, `"512KiB"` or `"1024"` (bytes).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let (number, unit) = text.split_at(digits);
        let bad = || format!("invalid size {text:?}: expected a number of B, KiB, MiB, GiB or TiB");
        let number: u64 = number.parse().map_err(|_| bad())?;
        let unit = unit.trim();
        let factor = if unit.is_empty() {
            1
        } else {
            UNITS.iter().find(|(u, _)| *u == unit).ok_or_else(bad)?.1
        };
        number.checked_mul(factor).map(ByteSize).ok_or_else(bad)
    }
}

impl TryFrom<SizeText> for ByteSize {
    type Error = String;
    fn try_from(text: SizeText) -> Result<Self, String> {
        match text {
            SizeText::Bytes(n) => Ok(ByteSize(n)),
            SizeText::Text(t) => ByteSize::parse(&t),
        }
    }
}

impl From<ByteSize> for u64 {
    fn from(size: ByteSize) -> u64 {
        size.0
    }
}

/// The largest unit that divides the size exactly (`16 GiB`), else one
/// decimal of the largest unit below it (`371.1 MiB`).
impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, factor) = UNITS
            .iter()
            .rev()
            .find(|(_, factor)| self.0 >= *factor)
            .copied()
            .unwrap_or(UNITS[0]);
        if self.0.is_multiple_of(factor) {
            write!(f, "{} {unit}", self.0 / factor)
        } else {
            write!(f, "{:.1} {unit}", self.0 as f64 / factor as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_shows_sizes() {
        assert_eq!(ByteSize::parse("16 GiB").unwrap(), ByteSize::gib(16));
        assert_eq!(ByteSize::parse("512KiB").unwrap(), ByteSize(512 << 10));
        assert_eq!(ByteSize::parse("1000").unwrap(), ByteSize(1000));
        for bad in ["", "GiB", "1 GB", "-1 MiB", "99999999999 TiB", "1.5 GiB"] {
            assert!(ByteSize::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(ByteSize::gib(16).to_string(), "16 GiB");
        assert_eq!(ByteSize(0).to_string(), "0 B");
        assert_eq!(ByteSize(1536).to_string(), "1.5 KiB");
        let v: toml::Value = toml::from_str("a = \"2 MiB\"\nb = 3").unwrap();
        assert_eq!(
            v["a"].clone().try_into::<ByteSize>().unwrap(),
            ByteSize::mib(2)
        );
        assert_eq!(v["b"].clone().try_into::<ByteSize>().unwrap(), ByteSize(3));
    }
}
