//! Debian control-file syntax (deb822): stanzas of `Field: value` lines,
//! as found in `Release`, `Packages`, `.deb` control files and apt's
//! `.sources` files.
//!
//! Parsing borrows from the input: a full `Packages` index has some 60,000
//! stanzas and the lock step reads several of them, so nothing is copied.

use memchr::memchr;

/// One paragraph of fields, in file order.
#[derive(Debug, Clone, Default)]
pub struct Stanza<'a> {
    fields: Vec<(&'a str, &'a str)>,
    /// 1-based line number where the stanza starts, for error messages.
    pub line: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {why}")]
pub struct SyntaxError {
    pub line: usize,
    pub why: String,
}

impl<'a> Stanza<'a> {
    /// The value of a field (names compare case-insensitively, as in deb822).
    /// Single-line values are trimmed; multi-line values keep their
    /// continuation lines, joined by `\n`, each with its leading space.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    pub fn fields(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.fields.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// Splits `text` into stanzas. Comment lines (`#`) are skipped, as apt does
/// in `.sources` files; they never occur in archive indices.
pub fn parse(text: &str) -> Result<Vec<Stanza<'_>>, SyntaxError> {
    let mut out = Vec::new();
    for_each(text, |st| out.push(st.clone()))?;
    Ok(out)
}

/// Calls `f` with each stanza in turn, reusing one buffer: the fast path
/// for large indices.
pub fn for_each<'a>(text: &'a str, mut f: impl FnMut(&Stanza<'a>)) -> Result<(), SyntaxError> {
    let mut current = Stanza::default();
    let bytes = text.as_bytes();
    let mut pos = 0;
    let mut line_no = 0;
    // (field name, start of value, end of value so far)
    let mut open: Option<(&str, usize, usize)> = None;

    while pos < bytes.len() {
        let end = memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i);
        let line = &text[pos..end];
        line_no += 1;
        let line_start = pos;
        pos = end + 1;

        if line.trim().is_empty() {
            if let Some((k, s, e)) = open.take() {
                current.fields.push((k, text[s..e].trim()));
            }
            if !current.is_empty() {
                f(&current);
                current.fields.clear();
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match open.as_mut() {
                Some((_, _, e)) => *e = end,
                None => {
                    return Err(SyntaxError {
                        line: line_no,
                        why: "continuation line without a field".into(),
                    });
                }
            }
            continue;
        }
        if let Some((k, s, e)) = open.take() {
            current.fields.push((k, text[s..e].trim()));
        }
        let Some(colon) = memchr(b':', line.as_bytes()) else {
            return Err(SyntaxError {
                line: line_no,
                why: format!("expected `Field: value`, found {:?}", truncate(line)),
            });
        };
        let name = &line[..colon];
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(SyntaxError {
                line: line_no,
                why: format!("invalid field name {:?}", truncate(name)),
            });
        }
        if current.is_empty() {
            current.line = line_no;
        }
        open = Some((name, line_start + colon + 1, end));
    }
    if let Some((k, s, e)) = open.take() {
        current.fields.push((k, text[s..e.min(text.len())].trim()));
    }
    if !current.is_empty() {
        f(&current);
    }
    Ok(())
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stanzas_and_continuations() {
        let text = "Package: a\nVersion: 1.0\nDescription: short\n long line\n .\n more\n\n\nPackage: b\r\nDepends: a (>= 1),\n c\n";
        let st = parse(text).unwrap();
        assert_eq!(st.len(), 2);
        assert_eq!(st[0].get("package"), Some("a"));
        assert_eq!(
            st[0].get("Description"),
            Some("short\n long line\n .\n more")
        );
        assert_eq!(st[1].get("Package"), Some("b"));
        assert_eq!(st[1].get("Depends"), Some("a (>= 1),\n c"));
        assert_eq!(st[1].line, 9);
    }

    #[test]
    fn rejects_bad_lines() {
        assert_eq!(parse("Package: a\nnonsense\n").unwrap_err().line, 2);
        assert_eq!(parse(" continuation\n").unwrap_err().line, 1);
    }
}
