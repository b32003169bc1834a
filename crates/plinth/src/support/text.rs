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
