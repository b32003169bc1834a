//! Debian changelogs (`usr/share/doc/<package>/changelog.Debian.gz`, Debian
//! policy 4.4): the entries, each with its version, target distribution,
//! urgency, text and the CVE identifiers it mentions; and which entries
//! lie between two versions. Pure functions over text.
//!
//! Old changelogs end in free-form history (no parsable header); the
//! reader keeps the entries it recognises and skips the rest rather than
//! failing on it.

use std::collections::BTreeSet;

use super::version::Version;

/// One changelog entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogEntry {
    /// The source package.
    pub source: String,
    pub version: String,
    /// `trixie-security`, `unstable`, ...
    pub distribution: String,
    pub urgency: String,
    /// The entry as written, from the header line to the trailer line.
    pub text: String,
    /// `CVE-YYYY-N...` identifiers the entry mentions, sorted, once each.
    pub cves: Vec<String>,
}

/// The entries of `text`, newest first (as written).
pub fn parse(text: &str) -> Vec<ChangelogEntry> {
    let mut entries = Vec::new();
    let mut current: Option<(ChangelogEntry, Vec<&str>)> = None;
    for line in text.lines() {
        if let Some(entry) = header(line) {
            if let Some((e, lines)) = current.take() {
                entries.push(finish(e, &lines));
            }
            current = Some((entry, vec![line]));
            continue;
        }
        let Some((_, lines)) = current.as_mut() else {
            continue;
        };
        if !line.is_empty() && !line.starts_with([' ', '\t']) {
            // Free-form text outside any entry (old history, Emacs
            // variables): the entry before it has ended.
            if let Some((e, lines)) = current.take() {
                entries.push(finish(e, &lines));
            }
            continue;
        }
        lines.push(line);
        if line.starts_with(" -- ")
            && let Some((e, lines)) = current.take()
        {
            entries.push(finish(e, &lines));
        }
    }
    if let Some((e, lines)) = current.take() {
        entries.push(finish(e, &lines));
    }
    entries
}

/// The entries newer than `old` up to and including `new`: what an
/// upgrade from `old` to `new` brings. Entries whose version cannot be
/// parsed are left out.
pub fn between<'a>(entries: &'a [ChangelogEntry], old: &str, new: &str) -> Vec<&'a ChangelogEntry> {
    let (Ok(old), Ok(new)) = (Version::parse(old), Version::parse(new)) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter(|e| Version::parse(&e.version).is_ok_and(|v| v > old && v <= new))
        .collect()
}

/// Every `CVE-YYYY-NNNN...` in `text`, sorted, once each.
pub fn cves(text: &str) -> Vec<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find("CVE-") {
        let start = from + i;
        from = start + 4;
        let year = &bytes[from..bytes.len().min(from + 4)];
        if year.len() < 4
            || !year.iter().all(u8::is_ascii_digit)
            || bytes.get(from + 4) != Some(&b'-')
        {
            continue;
        }
        let digits = bytes[from + 5..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits >= 4 {
            out.insert(text[start..from + 5 + digits].to_owned());
        }
    }
    out.into_iter().collect()
}

/// `source (version) distribution...; urgency=...` as an entry to fill.
fn header(line: &str) -> Option<ChangelogEntry> {
    if line.starts_with([' ', '\t']) {
        return None;
    }
    let (source, rest) = line.split_once(" (")?;
    let (version, rest) = rest.split_once(')')?;
    let (distribution, options) = rest.split_once(';')?;
    let valid_source = !source.is_empty()
        && source
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    if !valid_source || Version::validate(version).is_err() {
        return None;
    }
    let urgency = options
        .split(',')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("urgency"))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    Some(ChangelogEntry {
        source: source.to_owned(),
        version: version.to_owned(),
        distribution: distribution.trim().to_owned(),
        urgency,
        text: String::new(),
        cves: Vec::new(),
    })
}

fn finish(mut entry: ChangelogEntry, lines: &[&str]) -> ChangelogEntry {
    let mut text = lines.join("\n");
    text.truncate(text.trim_end().len());
    entry.cves = cves(&text);
    entry.text = text;
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHANGELOG: &str = "\
libzstd (1.5.7+dfsg-1+deb13u1) trixie-security; urgency=high

  * Fix an out-of-bounds write in the decompressor (CVE-2025-11111).
  * Also CVE-2025-2222 and again CVE-2025-11111; not CVE-25-1 nor CVE-2025-12.

 -- Security Team <team@security.debian.org>  Mon, 02 Nov 2026 10:00:00 +0000

libzstd (1.5.7+dfsg-1) unstable; urgency=medium

  * New upstream release.

 -- Maintainer <m@debian.org>  Thu, 13 Mar 2025 23:58:55 +0200

libzstd (1.5.6+dfsg-2) unstable; urgency=medium, binary-only=yes

  * Older.

 -- Maintainer <m@debian.org>  Thu, 13 Mar 2024 23:58:55 +0200

Old history, kept as free text:
 1999: the first upload.

Local variables:
mode: debian-changelog
End:
";

    #[test]
    fn reads_entries_and_their_cves() {
        let entries = parse(CHANGELOG);
        let heads: Vec<(&str, &str, &str)> = entries
            .iter()
            .map(|e| {
                (
                    e.version.as_str(),
                    e.distribution.as_str(),
                    e.urgency.as_str(),
                )
            })
            .collect();
        assert_eq!(
            heads,
            [
                ("1.5.7+dfsg-1+deb13u1", "trixie-security", "high"),
                ("1.5.7+dfsg-1", "unstable", "medium"),
                ("1.5.6+dfsg-2", "unstable", "medium"),
            ]
        );
        assert_eq!(entries[0].source, "libzstd");
        assert_eq!(entries[0].cves, ["CVE-2025-11111", "CVE-2025-2222"]);
        assert!(entries[1].cves.is_empty());
        assert!(
            entries[0]
                .text
                .starts_with("libzstd (1.5.7+dfsg-1+deb13u1)")
        );
        assert!(entries[0].text.ends_with("+0000"), "{}", entries[0].text);
        assert!(!entries[2].text.contains("history"));
    }

    #[test]
    fn selects_the_entries_an_upgrade_brings() {
        let entries = parse(CHANGELOG);
        let versions = |old, new| -> Vec<String> {
            between(&entries, old, new)
                .iter()
                .map(|e| e.version.clone())
                .collect()
        };
        assert_eq!(
            versions("1.5.7+dfsg-1", "1.5.7+dfsg-1+deb13u1"),
            ["1.5.7+dfsg-1+deb13u1"]
        );
        assert_eq!(
            versions("1.5.6+dfsg-1", "1.5.7+dfsg-1+deb13u1"),
            ["1.5.7+dfsg-1+deb13u1", "1.5.7+dfsg-1", "1.5.6+dfsg-2"]
        );
        assert!(versions("1.5.7+dfsg-1+deb13u1", "1.5.7+dfsg-1").is_empty());
        assert!(versions("not a version", "1.0").is_empty());
    }

    #[test]
    fn takes_no_header_from_hostile_or_odd_lines() {
        assert!(parse("").is_empty());
        assert!(parse("  * indented (1.0) x; urgency=low\n").is_empty());
        assert!(parse("Bad Name (1.0) x; urgency=low\n").is_empty());
        assert!(parse("pkg (1 0) x; urgency=low\n").is_empty());
        assert!(parse("pkg (1.0) unstable\n").is_empty());
        let one = parse("pkg (1.0) unstable; urgency=low\n  * x\n");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].text, "pkg (1.0) unstable; urgency=low\n  * x");
        assert_eq!(cves("CVE-"), Vec::<String>::new());
        assert_eq!(cves("(CVE-2024-0001)"), ["CVE-2024-0001"]);
    }
}
