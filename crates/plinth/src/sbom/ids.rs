//! Identifiers: package URLs (`pkg:deb`, `pkg:oci`) and the name-based
//! UUIDs that make SPDX namespaces and CycloneDX serial numbers a function
//! of the document's content.

use super::PackageSbom;
use crate::support::digest::hex;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------
// Identifiers, purls, hashes, time.

/// `pkg:deb/debian/<name>@<version>?arch=..&distro=..[&upstream=..]`.
/// `upstream` names the source package when it differs, as syft writes it:
/// vulnerability data for Debian is keyed by source package.
pub(super) fn deb_purl(p: &PackageSbom, distro: &str) -> String {
    let mut q = vec![("arch", p.arch.clone()), ("distro", distro.to_owned())];
    let (source, source_version) = (p.source_name(), p.source_version());
    if source != p.name || source_version != p.version {
        let upstream = if source_version != p.version {
            format!("{source}@{source_version}")
        } else {
            source.to_owned()
        };
        q.push(("upstream", upstream));
    }
    purl("deb", Some("debian"), &p.name, &p.version, &q)
}

pub(super) fn oci_purl(
    name: &str,
    digest: &str,
    arch: Option<&str>,
    repository: Option<&str>,
    tag: &str,
) -> String {
    let mut q = Vec::new();
    if let Some(a) = arch {
        q.push(("arch", a.to_owned()));
    }
    if let Some(r) = repository {
        q.push((
            "repository_url",
            format!("{}/{name}", r.trim_end_matches('/')),
        ));
    }
    q.push(("tag", tag.to_owned()));
    purl("oci", None, name, digest, &q)
}

/// A purl in canonical form: qualifiers sorted by key, each part
/// percent-encoded except for unreserved characters and `:` (the purl
/// specification says `:` is never encoded), `/` kept in qualifier values.
pub(super) fn purl(
    ty: &str,
    namespace: Option<&str>,
    name: &str,
    version: &str,
    qualifiers: &[(&str, String)],
) -> String {
    let mut s = format!("pkg:{ty}/");
    if let Some(ns) = namespace {
        s.push_str(&pct(ns, false));
        s.push('/');
    }
    s.push_str(&pct(name, false));
    s.push('@');
    s.push_str(&pct(version, false));
    let mut q: Vec<&(&str, String)> = qualifiers.iter().filter(|(_, v)| !v.is_empty()).collect();
    q.sort_by(|a, b| a.0.cmp(b.0));
    for (i, (k, v)) in q.iter().enumerate() {
        s.push(if i == 0 { '?' } else { '&' });
        s.push_str(k);
        s.push('=');
        s.push_str(&pct(v, true));
    }
    s
}

pub(super) fn pct(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~' | b':')
            || (keep_slash && b == b'/');
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A UUID from the SHA-256 of `bytes`, with the version nibble 8 (RFC 9562:
/// custom, here "derived from content") and the RFC variant bits.
pub(super) fn uuid_from(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let mut u = [0u8; 16];
    u.copy_from_slice(&d[..16]);
    u[6] = (u[6] & 0x0f) | 0x80;
    u[8] = (u[8] & 0x3f) | 0x80;
    let h = hex(&u);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
