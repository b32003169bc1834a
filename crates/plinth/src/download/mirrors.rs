//! Which mirror serves each archive (`debian`, `debian-security`).
//!
//! No archive host is ever written into plinth. In order of precedence a
//! mirror comes from the environment (`PLINTH_MIRROR_DEBIAN`,
//! `PLINTH_MIRROR_DEBIAN_SECURITY`: the archive name upper-cased, `-` as
//! `_`), from `[mirrors]` in `images/plinth.toml`, or from the host's apt
//! configuration (`sources.list` one-line entries and deb822 `*.sources`
//! files). An apt entry is matched to an archive by its suites: a
//! `bookworm-security` entry tells where the security archive lives, and
//! the same mirror then serves `trixie-security`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::debian::control;
use crate::definitions::Settings;

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(
        "no mirror for archive {archive:?}: the apt configuration under {apt_dir} has no Debian entry for it; set {env} or [mirrors] {archive:?} in images/plinth.toml"
    )]
    Missing {
        archive: String,
        apt_dir: PathBuf,
        env: String,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
}

/// Debian's codenames and aliases, so that third-party apt entries
/// (`nodistro`, `jammy`) are never taken for a Debian mirror.
const DEBIAN_SUITES: &[&str] = &[
    "buzz",
    "rex",
    "bo",
    "hamm",
    "slink",
    "potato",
    "woody",
    "sarge",
    "etch",
    "lenny",
    "squeeze",
    "wheezy",
    "jessie",
    "stretch",
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "stable",
    "testing",
    "unstable",
    "oldstable",
    "oldoldstable",
    "experimental",
];

/// Mirror base URL per archive name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mirrors {
    urls: BTreeMap<String, String>,
    apt_dir: PathBuf,
}

impl Mirrors {
    /// Mirrors for every archive the settings name, from the environment,
    /// the settings, then apt's configuration in `apt_dir` (normally
    /// `/etc/apt`).
    pub fn resolve(settings: &Settings, apt_dir: &Path) -> Result<Self, MirrorError> {
        let apt = read_apt_sources(apt_dir)?;
        // The suffix after the codename (`-security`) tells the archive.
        let mut suffix_to_archive = BTreeMap::new();
        for dist in settings.distribution.values() {
            for suite in &dist.suites {
                let suffix = suite
                    .name
                    .strip_prefix(dist.codename.as_str())
                    .unwrap_or("");
                suffix_to_archive
                    .entry(suffix.to_owned())
                    .or_insert(suite.archive.to_string());
            }
        }
        let mut from_apt: BTreeMap<String, String> = BTreeMap::new();
        for entry in &apt {
            for suite in &entry.suites {
                let (codename, suffix) = match suite.find('-') {
                    Some(i) => (&suite[..i], &suite[i..]),
                    None => (suite.as_str(), ""),
                };
                if !DEBIAN_SUITES.contains(&codename) {
                    continue;
                }
                if let Some(archive) = suffix_to_archive.get(suffix) {
                    from_apt
                        .entry(archive.clone())
                        .or_insert_with(|| entry.uri.clone());
                }
            }
        }
        let mut urls = BTreeMap::new();
        for archive in suffix_to_archive.values() {
            let env = std::env::var(env_name(archive))
                .ok()
                .filter(|v| !v.is_empty());
            let url = env
                .or_else(|| settings.mirrors.get(archive).cloned())
                .or_else(|| from_apt.get(archive).cloned());
            if let Some(url) = url {
                urls.insert(archive.clone(), url.trim_end_matches('/').to_owned());
            }
        }
        Ok(Mirrors {
            urls,
            apt_dir: apt_dir.to_owned(),
        })
    }

    /// Fixed mirrors, for callers that know them (tests, other tools).
    pub fn fixed(urls: impl IntoIterator<Item = (String, String)>) -> Self {
        Mirrors {
            urls: urls.into_iter().collect(),
            apt_dir: PathBuf::new(),
        }
    }

    pub fn url(&self, archive: &str) -> Result<&str, MirrorError> {
        self.urls
            .get(archive)
            .map(String::as_str)
            .ok_or_else(|| MirrorError::Missing {
                archive: archive.to_owned(),
                apt_dir: self.apt_dir.clone(),
                env: env_name(archive),
            })
    }
}

pub fn env_name(archive: &str) -> String {
    format!(
        "PLINTH_MIRROR_{}",
        archive.to_ascii_uppercase().replace(['-', '.'], "_")
    )
}

#[derive(Debug, PartialEq, Eq)]
struct AptEntry {
    uri: String,
    suites: Vec<String>,
}

/// Binary (`deb`) entries of `sources.list`, `sources.list.d/*.list` and
/// `sources.list.d/*.sources`, in apt's reading order.
fn read_apt_sources(apt_dir: &Path) -> Result<Vec<AptEntry>, MirrorError> {
    let mut entries = Vec::new();
    let main = apt_dir.join("sources.list");
    if let Ok(text) = std::fs::read_to_string(&main) {
        entries.extend(parse_one_line(&text));
    }
    let mut parts: Vec<PathBuf> = std::fs::read_dir(apt_dir.join("sources.list.d"))
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    parts.sort();
    for path in parts {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        match path.extension().and_then(|e| e.to_str()) {
            Some("list") => entries.extend(parse_one_line(&text)),
            Some("sources") => {
                entries.extend(parse_deb822(&text).map_err(|e| MirrorError::Syntax {
                    path: path.clone(),
                    message: e.to_string(),
                })?)
            }
            _ => {}
        }
    }
    Ok(entries)
}

fn parse_one_line(text: &str) -> Vec<AptEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line
            .strip_prefix("deb ")
            .or_else(|| line.strip_prefix("deb\t"))
        else {
            continue;
        };
        let mut rest = rest.trim_start();
        if rest.starts_with('[') {
            match rest.find(']') {
                Some(i) => rest = rest[i + 1..].trim_start(),
                None => continue,
            }
        }
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            out.push(AptEntry {
                uri: uri.to_owned(),
                suites: vec![suite.to_owned()],
            });
        }
    }
    out
}

fn parse_deb822(text: &str) -> Result<Vec<AptEntry>, control::SyntaxError> {
    let mut out = Vec::new();
    for stanza in control::parse(text)? {
        let types = stanza.get("Types").unwrap_or("");
        let enabled = stanza
            .get("Enabled")
            .is_none_or(|v| !v.eq_ignore_ascii_case("no"));
        if !enabled || !types.split_whitespace().any(|t| t == "deb") {
            continue;
        }
        let suites: Vec<String> = stanza
            .get("Suites")
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        for uri in stanza.get("URIs").unwrap_or("").split_whitespace() {
            out.push(AptEntry {
                uri: uri.to_owned(),
                suites: suites.clone(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_format() {
        let text = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\ndeb-src http://src.example/debian bookworm main\ndeb http://sec.example/debian-security bookworm-security main # trailing\n";
        let e = parse_one_line(text);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].uri, "http://mirror.example/debian");
        assert_eq!(e[1].suites, ["bookworm-security"]);
    }

    #[test]
    fn deb822_format() {
        let text = "Types: deb deb-src\nURIs: http://a.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://b.example/x\nSuites: nodistro\nEnabled: no\n";
        let e = parse_deb822(text).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].suites, ["bookworm", "bookworm-updates"]);
    }
}
