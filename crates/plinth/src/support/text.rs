//! Error text: every error plinth reports is one line, and text that
//! came from outside (a server's certificate names, a header) is made
//! printable before it joins a message.

/// Folds a multi-line message (TOML errors come with a source excerpt)
/// into one line: its first line and its last line of substance.
pub fn one_line(message: &str) -> String {
    let mut lines = message.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or_default().trim().to_owned();
    let last = message
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('|') && !l.contains('^'))
        .unwrap_or_default()
        .trim();
    if last.is_empty() || last == first {
        first
    } else {
        format!("{first} {last}")
    }
}

/// Text from an untrusted source as one printable line of at most `max`
/// characters: control characters (a newline in a certificate name sent
/// by a hostile server, an escape sequence) become `?`, and a longer text
/// is cut and ends in `...`.
pub fn printable(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max + 3));
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push_str("...");
            break;
        }
        out.push(if c.is_control() { '?' } else { c });
    }
    out
}

/// At most 80 printable characters of an untrusted value, for an error
/// message: a hostile value must not turn one line into a megabyte, or
/// into several lines.
pub fn shown(text: &str) -> String {
    printable(text, 80)
}

/// The impls every checked string type shares: made only by its
/// `parse(&str) -> Result<Self, E>` (also when deserialised), read as a
/// `&str`, written as the text it holds.
macro_rules! checked_string {
    ($name:ident, $error:ty) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = $error;
            fn try_from(text: String) -> Result<Self, Self::Error> {
                $name::parse(&text)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// As the text it holds, quoted, like a `String`.
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(&self.0, f)
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<std::path::Path> for $name {
            fn as_ref(&self) -> &std::path::Path {
                std::path::Path::new(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }
    };
}
pub(crate) use checked_string;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_replaces_controls_and_cuts() {
        assert_eq!(printable("a\nb\tc\u{1b}[2J", 20), "a?b?c?[2J");
        assert_eq!(printable("ééééé", 3), "ééé...");
        assert_eq!(printable("", 3), "");
    }

    #[test]
    fn one_line_keeps_first_and_last_lines_of_substance() {
        assert_eq!(one_line("a\n  | x\n  ^\nb"), "a b");
        assert_eq!(one_line("only"), "only");
    }
}
