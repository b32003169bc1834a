//! JSON bytes as Go's `encoding/json` writes them.
//!
//! cosign builds the simple-signing payload, the `.sig`/`.att` image config
//! and the DSSE envelope in `.att` layers with `encoding/json`, which differs
//! from `serde_json` in one way that matters for our documents: it escapes
//! `<`, `>`, `&`, U+2028 and U+2029 inside strings (`\u003c` ...). Key order
//! is the caller's job (struct field order, `BTreeMap` for Go maps, which Go
//! sorts). Compact output, no trailing newline, like `json.Marshal`.
//!
//! Documents cosign writes with `protojson` (in-toto statements, the bundle)
//! do not HTML-escape and use plain `serde_json` instead.

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;

struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escape = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escape.as_bytes())?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// `json.Marshal(value)` for a value whose Go twin has the same field order.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    value.serialize(&mut ser)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_like_go() {
        let s = "a<b>&c\u{2028}d\u{2029}\"\\\n\u{1}é";
        let out = super::to_vec(&s).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a\\u003cb\\u003e\\u0026c\\u2028d\\u2029\\\"\\\\\\n\\u0001é\""
        );
    }
}
