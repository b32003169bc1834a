//! Fixture pieces shared by the integration tests of the lock and build
//! stages: the settings file of a generated project and small helpers.

#![allow(dead_code)]

use sha2::{Digest, Sha256};

/// `images/plinth.toml` for a `debian13` project: trusted `keys`, the
/// `(archive, base URL)` mirrors (none: the apt configuration decides), and
/// `(suite, archive)` suites.
pub fn settings_toml(keys: &[&str], mirrors: &[(&str, String)], suites: &[(&str, &str)]) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
    let mirrors: String = mirrors
        .iter()
        .map(|(archive, url)| format!("{archive} = {url:?}\n"))
        .collect();
    let suites: String = suites
        .iter()
        .map(|(name, archive)| format!("  {{ name = {name:?}, archive = {archive:?} }},\n"))
        .collect();
    format!(
        r#"architectures = ["amd64", "arm64"]
debug-packages = ["busybox-static"]

[mirrors]
{mirrors}
[os-release]
pretty-name = "Distroless"
home-url = "https://example.invalid/"
support-url = "https://example.invalid/support"
bug-report-url = "https://example.invalid/issues"

[distribution.debian13]
codename = "trixie"
version = "13"
components = ["main"]
keys = [{}]
suites = [
{suites}]
"#,
        keys.join(", ")
    )
}

pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
