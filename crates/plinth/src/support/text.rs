//! Error text: every error plinth reports is one line.

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
