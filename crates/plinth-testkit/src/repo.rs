//! A Debian-style archive tree on disk, and the ways to break it.
//!
//! Owns the layout a client sees on a mirror: `pool/main/<prefix>/<source>/`
//! for packages, and per suite `dists/<suite>/{Release,InRelease,Release.gpg}`
//! plus `main/binary-<arch>/{Packages,Packages.xz,Release}` with optional
//! `by-hash/SHA256/` copies. Also owns the fault helpers that rewrite an
//! already written tree (wrong keys, unsigned, tampered, corrupt or
//! truncated indices, corrupt packages) so tests can check each is caught.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::compress::Compression;
use crate::deb::{hex, read_control, strip_epoch};
use crate::keys::{DEFAULT_SIGNATURE_TIME, SigningKey, clearsign_at, detached_sign_at, unix_time};

/// The default `Date:` of a suite, the same instant as
/// [`crate::keys::DEFAULT_SIGNATURE_TIME`].
pub const DEFAULT_DATE: &str = "Sat, 01 Nov 2026 09:15:44 UTC";

/// The only component the fixtures publish.
const COMPONENT: &str = "main";

/// What goes into one suite's `Release` and how it is signed.
#[derive(Debug, Clone)]
pub struct SuiteSpec {
    /// Directory under `dists/`, and the name used to refer to the suite
    /// in [`Archive`] calls, e.g. `trixie` or `trixie-security`.
    pub name: String,
    /// The `Suite:` value, e.g. `stable`.
    pub suite: String,
    /// The `Codename:` value.
    pub codename: String,
    /// The `Version:` value; omitted when empty.
    pub version: String,
    /// The `Date:` value, RFC 2822 style in UTC.
    pub date: String,
    /// The `Valid-Until:` value, if any.
    pub valid_until: Option<String>,
    /// Binary architectures (without `all`).
    pub architectures: Vec<String>,
    /// Whether `all` is listed in `Architectures:` and gets its own
    /// `binary-all` indices, as on Debian's mirrors; `Architecture: all`
    /// packages are in every architecture's `Packages` either way.
    pub binary_all: bool,
    /// Whether `Acquire-By-Hash: yes` is set and `by-hash/` copies written.
    pub acquire_by_hash: bool,
    /// Keys that sign `InRelease` and `Release.gpg`; none means both are
    /// unsigned (`InRelease` is then the plain `Release` text).
    pub signers: Vec<SigningKey>,
    /// Creation time of the signatures.
    pub signature_time: SystemTime,
}

impl SuiteSpec {
    /// A suite named `name` (also its Suite and Codename), version `13`,
    /// dated [`DEFAULT_DATE`], for amd64 and arm64 plus `binary-all`, with
    /// by-hash, no Valid-Until and no signers.
    pub fn new(name: &str) -> Self {
        SuiteSpec {
            name: name.to_owned(),
            suite: name.to_owned(),
            codename: name.to_owned(),
            version: "13".to_owned(),
            date: DEFAULT_DATE.to_owned(),
            valid_until: None,
            architectures: vec!["amd64".to_owned(), "arm64".to_owned()],
            binary_all: true,
            acquire_by_hash: true,
            signers: Vec::new(),
            signature_time: unix_time(DEFAULT_SIGNATURE_TIME),
        }
    }

    /// The same suite signed by `signers`.
    pub fn signed_by(mut self, signers: &[&SigningKey]) -> Self {
        self.signers = signers.iter().map(|k| (*k).clone()).collect();
        self
    }
}

/// A package placed in the pool, as its `Packages` stanza describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolEntry {
    /// Package name.
    pub package: String,
    /// Version, epoch included.
    pub version: String,
    /// Architecture, possibly `all`.
    pub architecture: String,
    /// The `Filename:` value, relative to the archive root.
    pub filename: String,
    /// Where the file is (or will be, before [`Archive::write`]) on disk.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex MD5.
    pub md5: String,
    /// Lowercase hex SHA-256.
    pub sha256: String,
    /// The full `Packages` stanza, ending in a newline.
    pub stanza: String,
}

#[derive(Debug, Clone)]
struct Suite {
    spec: SuiteSpec,
    /// (package, architecture, stanza), in the order added.
    stanzas: Vec<(String, String, String)>,
}

/// One archive root (what a mirror URL points at), holding any number of
/// suites. Tests typically make two: `root/debian` and
/// `root/debian-security`.
///
/// Nothing touches the disk until [`Archive::write`]; the fault helpers
/// rewrite what `write` produced. All methods panic on I/O errors or
/// misuse, since they only run inside tests.
#[derive(Debug, Clone)]
pub struct Archive {
    root: PathBuf,
    origin: String,
    label: String,
    suites: Vec<Suite>,
    pool: BTreeMap<String, Vec<u8>>,
}

impl Archive {
    /// An empty archive rooted at `root` with Origin and Label `Debian`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Archive {
            root: root.into(),
            origin: "Debian".to_owned(),
            label: "Debian".to_owned(),
            suites: Vec::new(),
            pool: BTreeMap::new(),
        }
    }

    /// Sets the `Origin:` and `Label:` of every suite.
    pub fn origin(&mut self, origin: &str, label: &str) -> &mut Self {
        self.origin = origin.to_owned();
        self.label = label.to_owned();
        self
    }

    /// Adds a suite, or replaces the spec of one with the same name.
    pub fn suite(&mut self, spec: SuiteSpec) -> &mut Self {
        match self.suites.iter_mut().find(|s| s.spec.name == spec.name) {
            Some(suite) => suite.spec = spec,
            None => self.suites.push(Suite {
                spec,
                stanzas: Vec::new(),
            }),
        }
        self
    }

    /// The archive root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/dists/<suite>`.
    pub fn suite_dir(&self, suite: &str) -> PathBuf {
        self.root.join("dists").join(suite)
    }

    /// `root/dists/<suite>/main/binary-<arch>/Packages<ext>`, e.g. with
    /// `Compression::Xz` the `Packages.xz` clients fetch.
    pub fn packages_path(&self, suite: &str, arch: &str, compression: Compression) -> PathBuf {
        self.suite_dir(suite).join(packages_rel(arch, compression))
    }

    /// `root/dists/<suite>/main/binary-<arch>/by-hash/SHA256/<sha256>`.
    pub fn by_hash_path(&self, suite: &str, arch: &str, sha256: &str) -> PathBuf {
        self.suite_dir(suite)
            .join(format!("{COMPONENT}/binary-{arch}/by-hash/SHA256/{sha256}"))
    }

    /// Places `deb` in the pool and lists it in `suite`, reading its
    /// control stanza from the package itself. `Architecture: all`
    /// packages are listed for every architecture.
    pub fn add(&mut self, suite: &str, deb: &[u8]) -> PoolEntry {
        let control = read_control(deb).expect("reading the control file of a .deb");
        self.add_with_control(suite, deb, &control)
    }

    /// Like [`Archive::add`], but the stanza is built from `control`
    /// instead of the package's own control file, so the pool file can be
    /// anything (a broken `.deb`, or one whose metadata lies).
    pub fn add_with_control(&mut self, suite: &str, file: &[u8], control: &str) -> PoolEntry {
        let package = stanza_field(control, "Package").expect("control has a Package field");
        let version = stanza_field(control, "Version").expect("control has a Version field");
        let architecture =
            stanza_field(control, "Architecture").expect("control has an Architecture field");
        let source = stanza_field(control, "Source")
            .map(|s| s.split_whitespace().next().unwrap_or_default().to_owned())
            .unwrap_or_else(|| package.clone());
        let filename = format!(
            "pool/{COMPONENT}/{}/{source}/{package}_{}_{architecture}.deb",
            pool_prefix(&source),
            strip_epoch(&version)
        );
        if let Some(existing) = self.pool.get(&filename) {
            assert!(
                existing == file,
                "{filename} is already in the pool with other contents"
            );
        }
        let md5 = hex(&Md5::digest(file));
        let sha256 = hex(&Sha256::digest(file));
        let mut stanza = control.trim_end_matches('\n').to_owned();
        stanza.push_str(&format!(
            "\nFilename: {filename}\nSize: {}\nMD5sum: {md5}\nSHA256: {sha256}\n",
            file.len()
        ));
        let suite_state = self.suite_mut(suite);
        let archs = &suite_state.spec.architectures;
        assert!(
            architecture == "all" || archs.contains(&architecture),
            "suite {suite} has no architecture {architecture}"
        );
        suite_state
            .stanzas
            .retain(|(p, a, s)| !(p == &package && a == &architecture && s.contains(&filename)));
        suite_state
            .stanzas
            .push((package.clone(), architecture.clone(), stanza.clone()));
        self.pool.insert(filename.clone(), file.to_vec());
        PoolEntry {
            package,
            version,
            architecture,
            path: self.root.join(&filename),
            filename,
            size: file.len() as u64,
            md5,
            sha256,
            stanza,
        }
    }

    /// Lists a hand-written stanza for `arch` (`all` meaning every
    /// architecture) without putting anything in the pool, e.g. one whose
    /// `Filename` does not exist.
    pub fn add_stanza(&mut self, suite: &str, arch: &str, stanza: &str) {
        let package = stanza_field(stanza, "Package").unwrap_or_default();
        let mut text = stanza.trim_end_matches('\n').to_owned();
        text.push('\n');
        self.suite_mut(suite)
            .stanzas
            .push((package, arch.to_owned(), text));
    }

    /// The `Packages` text of one architecture of a suite, sorted by
    /// package name (stable for equal names).
    pub fn packages_text(&self, suite: &str, arch: &str) -> String {
        let suite = self.suite_ref(suite);
        let mut selected: Vec<&(String, String, String)> = suite
            .stanzas
            .iter()
            .filter(|(_, a, _)| a == arch || a == "all")
            .collect();
        selected.sort_by(|x, y| x.0.cmp(&y.0));
        selected
            .iter()
            .map(|(_, _, s)| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Writes the pool and every suite's indices and Release files.
    pub fn write(&self) {
        for (filename, bytes) in &self.pool {
            write_file(&self.root.join(filename), bytes);
        }
        for suite in &self.suites {
            let spec = &suite.spec;
            let dir = self.suite_dir(&spec.name);
            for arch in index_archs(spec) {
                let text = self.packages_text(&spec.name, &arch);
                let files = [
                    (
                        packages_rel(&arch, Compression::None),
                        text.clone().into_bytes(),
                    ),
                    (
                        packages_rel(&arch, Compression::Xz),
                        Compression::Xz.compress(text.as_bytes()),
                    ),
                    (
                        format!("{COMPONENT}/binary-{arch}/Release"),
                        self.arch_release(spec, &arch).into_bytes(),
                    ),
                ];
                for (rel, bytes) in files {
                    write_file(&dir.join(&rel), &bytes);
                    if spec.acquire_by_hash {
                        let sha = hex(&Sha256::digest(&bytes));
                        write_file(&self.by_hash_path(&spec.name, &arch, &sha), &bytes);
                    }
                }
            }
            self.refresh_release(&spec.name);
        }
    }

    /// Rebuilds `Release` from the index files now on disk and signs it
    /// again with the suite's own signers, so that an index changed
    /// behind the archive's back is consistently described and signed.
    pub fn refresh_release(&self, suite: &str) {
        let spec = &self.suite_ref(suite).spec;
        let release = self.release_text(spec);
        write_file(&self.suite_dir(suite).join("Release"), release.as_bytes());
        let signers: Vec<&SigningKey> = spec.signers.iter().collect();
        self.sign_release(suite, &signers);
    }

    /// The `Release` file of a suite as last written.
    pub fn release(&self, suite: &str) -> String {
        fs::read_to_string(self.suite_dir(suite).join("Release")).expect("reading Release")
    }

    /// The `InRelease` file of a suite as last written.
    pub fn inrelease(&self, suite: &str) -> Vec<u8> {
        fs::read(self.suite_dir(suite).join("InRelease")).expect("reading InRelease")
    }

    // ---- fault helpers: each rewrites files after `write` ----

    /// Signs the current `Release` again, for `InRelease` and
    /// `Release.gpg`, with `signers` instead of the suite's keys (e.g. an
    /// unknown key, or several keys of which only one is trusted).
    pub fn resign(&self, suite: &str, signers: &[&SigningKey]) {
        self.sign_release(suite, signers);
    }

    /// Makes `InRelease` the plain, unsigned `Release` text and removes
    /// `Release.gpg`.
    pub fn unsign(&self, suite: &str) {
        self.sign_release(suite, &[]);
    }

    /// Changes one byte of the signed text of `InRelease` (the first
    /// letter of the `Label:` value) and keeps the signature, so only
    /// signature verification can notice.
    pub fn tamper_inrelease(&self, suite: &str) {
        let text = String::from_utf8(self.inrelease(suite)).expect("InRelease is UTF-8");
        let at = text.find("\nLabel: ").expect("InRelease has a Label") + "\nLabel: ".len();
        let mut bytes = text.into_bytes();
        bytes[at] = if bytes[at] == b'X' { b'Y' } else { b'X' };
        write_file(&self.suite_dir(suite).join("InRelease"), &bytes);
    }

    /// Replaces `from` with `to` (first occurrence) in `InRelease`,
    /// leaving the signature as it was.
    pub fn edit_inrelease(&self, suite: &str, from: &str, to: &str) {
        let text = String::from_utf8(self.inrelease(suite)).expect("InRelease is UTF-8");
        assert!(text.contains(from), "InRelease does not contain {from:?}");
        let text = text.replacen(from, to, 1);
        write_file(&self.suite_dir(suite).join("InRelease"), text.as_bytes());
    }

    /// Overwrites `Packages.xz` of one architecture (and its by-hash copy
    /// under the old hash) with `bytes`, leaving `Release` as it was: a
    /// hash and probably size mismatch.
    pub fn replace_packages_xz(&self, suite: &str, arch: &str, bytes: &[u8]) {
        let path = self.packages_path(suite, arch, Compression::Xz);
        let old = fs::read(&path).expect("reading Packages.xz");
        write_file(&path, bytes);
        let by_hash = self.by_hash_path(suite, arch, &hex(&Sha256::digest(&old)));
        if by_hash.exists() {
            write_file(&by_hash, bytes);
        }
    }

    /// Flips one byte in the middle of `Packages.xz` (and its by-hash
    /// copy): same size, different hash, `Release` unchanged.
    pub fn corrupt_packages_xz(&self, suite: &str, arch: &str) {
        let path = self.packages_path(suite, arch, Compression::Xz);
        let mut bytes = fs::read(&path).expect("reading Packages.xz");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        self.replace_packages_xz(suite, arch, &bytes);
    }

    /// Cuts `Packages.xz` (and its by-hash copy) to its first `len` bytes,
    /// leaving `Release` as it was: a size and hash mismatch.
    pub fn truncate_packages_xz(&self, suite: &str, arch: &str, len: usize) {
        let path = self.packages_path(suite, arch, Compression::Xz);
        let bytes = fs::read(&path).expect("reading Packages.xz");
        self.replace_packages_xz(suite, arch, &bytes[..len.min(bytes.len())]);
    }

    /// Cuts `Packages.xz` to `len` bytes and then describes and signs the
    /// cut file in `Release` and by-hash, as a broken but honest mirror
    /// would: hashes match, so only decompression can catch it.
    pub fn truncate_packages_xz_signed(&self, suite: &str, arch: &str, len: usize) {
        self.truncate_packages_xz(suite, arch, len);
        let bytes = fs::read(self.packages_path(suite, arch, Compression::Xz))
            .expect("reading Packages.xz");
        if self.suite_ref(suite).spec.acquire_by_hash {
            let sha = hex(&Sha256::digest(&bytes));
            write_file(&self.by_hash_path(suite, arch, &sha), &bytes);
        }
        self.refresh_release(suite);
    }

    /// Flips one byte in the middle of a pool file (`filename` as in
    /// [`PoolEntry::filename`]), so its Packages hash no longer matches.
    pub fn corrupt_pool_file(&self, filename: &str) {
        let path = self.root.join(filename);
        let mut bytes = fs::read(&path).expect("reading a pool file");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        write_file(&path, &bytes);
    }

    // ---- internals ----

    fn suite_ref(&self, name: &str) -> &Suite {
        self.suites
            .iter()
            .find(|s| s.spec.name == name)
            .unwrap_or_else(|| panic!("no suite {name}"))
    }

    fn suite_mut(&mut self, name: &str) -> &mut Suite {
        self.suites
            .iter_mut()
            .find(|s| s.spec.name == name)
            .unwrap_or_else(|| panic!("no suite {name}"))
    }

    fn sign_release(&self, suite: &str, signers: &[&SigningKey]) {
        let spec = &self.suite_ref(suite).spec;
        let dir = self.suite_dir(suite);
        let release = fs::read(dir.join("Release")).expect("reading Release");
        let inrelease = clearsign_at(&release, signers, spec.signature_time);
        write_file(&dir.join("InRelease"), &inrelease);
        let gpg = dir.join("Release.gpg");
        if signers.is_empty() {
            if gpg.exists() {
                fs::remove_file(&gpg).expect("removing Release.gpg");
            }
        } else {
            write_file(
                &gpg,
                &detached_sign_at(&release, signers, spec.signature_time),
            );
        }
    }

    fn arch_release(&self, spec: &SuiteSpec, arch: &str) -> String {
        let mut out = format!(
            "Archive: {}\nOrigin: {}\nLabel: {}\n",
            spec.suite, self.origin, self.label
        );
        if !spec.version.is_empty() {
            out.push_str(&format!("Version: {}\n", spec.version));
        }
        if spec.acquire_by_hash {
            out.push_str("Acquire-By-Hash: yes\n");
        }
        out.push_str(&format!("Component: {COMPONENT}\nArchitecture: {arch}\n"));
        out
    }

    fn release_text(&self, spec: &SuiteSpec) -> String {
        let mut out = format!(
            "Origin: {}\nLabel: {}\nSuite: {}\n",
            self.origin, self.label, spec.suite
        );
        if !spec.version.is_empty() {
            out.push_str(&format!("Version: {}\n", spec.version));
        }
        out.push_str(&format!(
            "Codename: {}\nDate: {}\n",
            spec.codename, spec.date
        ));
        if let Some(valid_until) = &spec.valid_until {
            out.push_str(&format!("Valid-Until: {valid_until}\n"));
        }
        if spec.acquire_by_hash {
            out.push_str("Acquire-By-Hash: yes\n");
        }
        out.push_str("No-Support-for-Architecture-all: Packages\n");
        let archs: Vec<String> = index_archs(spec);
        out.push_str(&format!(
            "Architectures: {}\nComponents: {COMPONENT}\nDescription: Test archive {} {}\n",
            archs.join(" "),
            spec.codename,
            spec.version
        ));

        let dir = self.suite_dir(&spec.name);
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        for arch in &archs {
            for rel in [
                packages_rel(arch, Compression::None),
                packages_rel(arch, Compression::Xz),
                format!("{COMPONENT}/binary-{arch}/Release"),
            ] {
                let bytes = fs::read(dir.join(&rel))
                    .unwrap_or_else(|e| panic!("reading {rel} of {}: {e}", spec.name));
                files.push((rel, bytes));
            }
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let width = files
            .iter()
            .map(|(_, b)| b.len().to_string().len())
            .max()
            .unwrap_or(1);
        out.push_str("MD5Sum:\n");
        for (rel, bytes) in &files {
            let size = bytes.len();
            out.push_str(&format!(
                " {} {size:>width$} {rel}\n",
                hex(&Md5::digest(bytes))
            ));
        }
        out.push_str("SHA256:\n");
        for (rel, bytes) in &files {
            let size = bytes.len();
            out.push_str(&format!(
                " {} {size:>width$} {rel}\n",
                hex(&Sha256::digest(bytes))
            ));
        }
        out
    }
}

/// Architectures that get their own `binary-<arch>` indices.
fn index_archs(spec: &SuiteSpec) -> Vec<String> {
    let mut archs = Vec::new();
    if spec.binary_all {
        archs.push("all".to_owned());
    }
    archs.extend(spec.architectures.iter().cloned());
    archs
}

fn packages_rel(arch: &str, compression: Compression) -> String {
    format!(
        "{COMPONENT}/binary-{arch}/Packages{}",
        compression.extension()
    )
}

/// Debian pools `lib*` sources under four letters (`libz/libzstd`) and
/// everything else under its first letter.
fn pool_prefix(source: &str) -> &str {
    if source.starts_with("lib") && source.len() > 3 {
        &source[..4]
    } else {
        &source[..source.chars().next().map_or(0, char::len_utf8)]
    }
}

/// The first line of a field's value in a deb822 stanza.
fn stanza_field(stanza: &str, name: &str) -> Option<String> {
    stanza.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (!line.starts_with([' ', '\t']) && key.eq_ignore_ascii_case(name))
            .then(|| value.trim().to_owned())
    })
}

fn write_file(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
    }
    fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_prefixes_follow_debian() {
        assert_eq!(pool_prefix("glibc"), "g");
        assert_eq!(pool_prefix("libzstd"), "libz");
        assert_eq!(pool_prefix("lib"), "l");
    }

    #[test]
    fn stanza_fields_ignore_continuations() {
        let s = "Package: a\nDescription: x\n Source: no\nSource: b (1.0)\n";
        assert_eq!(stanza_field(s, "source").as_deref(), Some("b (1.0)"));
        assert_eq!(stanza_field(s, "Depends"), None);
    }
}
