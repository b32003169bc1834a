//! Which certificate authorities plinth's HTTPS connections trust.
//!
//! The machine's trust, read the way OpenSSL reads it, plus CA files named
//! in `images/plinth.toml`. In order:
//!
//! 1. **The CA file**: `SSL_CERT_FILE` if set, else the first existing
//!    system bundle of [`SYSTEM_CA_FILES`] (on Debian
//!    `/etc/ssl/certs/ca-certificates.crt`, which `update-ca-certificates`
//!    writes).
//! 2. **The CA directories**: `SSL_CERT_DIR` (`:`-separated) if set, else
//!    the existing [`SYSTEM_CA_DIRS`] (on Debian `/etc/ssl/certs`). Every
//!    regular file in them is read, each once however many links point to
//!    it.
//! 3. **Settings**: `[connections] ca-files`, then those of the registry
//!    or mirror being reached ([`Trust::with_ca_files`]).
//!
//! All of it is one additive set, and each variable replaces only its own
//! default: that is what OpenSSL 3 and curl do (with `SSL_CERT_FILE` set,
//! OpenSSL still looks in `/usr/lib/ssl/certs`). `rustls-native-certs`
//! drops the whole system store when either variable is set, and ureq's
//! default trusts only the roots compiled into it, so plinth reads the
//! files itself, with the parser rustls already brings.
//!
//! A CA file from the settings that cannot be read or holds no usable
//! certificate is an error naming the setting: the operator asked for it.
//! A variable naming a missing file is not (other tools on the machine
//! ignore it too), but it shows in [`Trust::describe`], which every
//! certificate error quotes. Nothing turns verification off.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use ureq::tls::{Certificate, RootCerts};

use super::env::Environment;
use crate::support::text::printable;

/// Where Linux distributions keep their CA bundle; the first that exists
/// is the default CA file (the list `openssl-probe` uses). File paths,
/// not hosts.
pub const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // RHEL, CentOS
    "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora
    "/etc/ssl/ca-bundle.pem",             // openSUSE
    "/etc/pki/tls/cacert.pem",
    "/etc/ssl/cert.pem", // Alpine
];

/// Where Linux distributions keep one file per CA.
pub const SYSTEM_CA_DIRS: &[&str] = &["/etc/ssl/certs", "/etc/pki/tls/certs"];

/// A CA file is read whole; a real bundle is about 220 KB. The bound keeps
/// a mistaken path (a disk image, a log) from filling memory.
const MAX_CA_FILE_BYTES: u64 = 16 << 20;

/// A CA file named in the settings, with the setting that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFile {
    pub path: PathBuf,
    /// For messages: `images/plinth.toml [connections] ca-files`.
    pub named_in: String,
}

/// A CA file from the settings that cannot be used. One line.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{named_in} names {}, which {why}", path.display())]
pub struct TrustError {
    pub path: PathBuf,
    pub named_in: String,
    pub why: String,
}

/// One place certificates came from, for [`Trust::describe`].
#[derive(Debug, Clone)]
struct Source {
    label: String,
    kind: SourceKind,
    /// Usable certificates found there.
    certificates: usize,
    /// Of those, how many no earlier source had.
    new: usize,
    /// Why nothing, or not everything, was read.
    problem: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceKind {
    System,
    Variable,
    Setting,
}

/// The set of trusted CAs and where it came from. Cheap to clone: the
/// certificates are shared, and agents built from one `Trust` share one
/// root store.
#[derive(Clone)]
pub struct Trust {
    der: Arc<Vec<CertificateDer<'static>>>,
    roots: RootCerts,
    sources: Arc<Vec<Source>>,
    description: Arc<str>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("certificates", &self.der.len())
            .field("description", &self.description)
            .finish()
    }
}

impl Trust {
    /// The machine's trust: the system store, `SSL_CERT_FILE` and
    /// `SSL_CERT_DIR`. Never fails: what cannot be read is noted in
    /// [`describe`](Self::describe).
    pub fn machine(env: &Environment) -> Trust {
        Self::machine_from(env, SYSTEM_CA_FILES, SYSTEM_CA_DIRS)
    }

    /// [`machine`](Self::machine) with the system locations given (an
    /// empty list stands for a machine without `ca-certificates`).
    pub fn machine_from(env: &Environment, system_files: &[&str], system_dirs: &[&str]) -> Trust {
        let mut loader = Loader::default();
        match env.get("SSL_CERT_FILE") {
            Some(path) => {
                let path = Path::new(path);
                let label = format!("SSL_CERT_FILE={}", path.display());
                loader.file(path, label, SourceKind::Variable);
            }
            None => {
                if let Some(path) = system_files.iter().map(Path::new).find(|p| p.is_file()) {
                    loader.file(path, path.display().to_string(), SourceKind::System);
                }
            }
        }
        match env.get("SSL_CERT_DIR") {
            Some(list) => {
                for dir in std::env::split_paths(list).filter(|d| !d.as_os_str().is_empty()) {
                    let label = format!("SSL_CERT_DIR={}", dir.display());
                    loader.dir(&dir, label, SourceKind::Variable);
                }
            }
            None => {
                for dir in system_dirs.iter().map(Path::new).filter(|d| d.is_dir()) {
                    loader.dir(dir, dir.display().to_string(), SourceKind::System);
                }
            }
        }
        loader.finish()
    }

    /// This trust plus the `ca_files` of one registry or mirror; without
    /// any, the same `Trust`.
    pub fn with_ca_files(&self, ca_files: &[CaFile]) -> Result<Trust, TrustError> {
        if ca_files.is_empty() {
            return Ok(self.clone());
        }
        let mut loader = Loader {
            certs: self.der.iter().map(|c| c.as_ref().to_vec()).collect(),
            sources: self.sources.as_ref().clone(),
            seen: HashSet::new(),
        };
        for ca in ca_files {
            loader.setting(ca)?;
        }
        Ok(loader.finish())
    }

    /// Distinct trusted certificates.
    pub fn len(&self) -> usize {
        self.der.len()
    }

    pub fn is_empty(&self) -> bool {
        self.der.is_empty()
    }

    /// Where trust came from, for certificate errors: `trusting the system
    /// store /etc/ssl/certs/ca-certificates.crt and /etc/ssl/certs (145
    /// certificates), images/plinth.toml [connections] ca-files
    /// certs/corp.pem (1 certificate)`.
    pub fn describe(&self) -> &str {
        &self.description
    }

    pub(super) fn root_certs(&self) -> RootCerts {
        self.roots.clone()
    }
}

/// The usable certificates of one file, and a note when some were not.
struct FileCerts {
    certs: Vec<CertificateDer<'static>>,
    problem: Option<String>,
}

#[derive(Default)]
struct Loader {
    /// DER bytes, ordered and without duplicates.
    certs: BTreeSet<Vec<u8>>,
    sources: Vec<Source>,
    /// Files read already, by device and inode: `/etc/ssl/certs` holds the
    /// bundle and two links to each CA file.
    seen: HashSet<(u64, u64)>,
}

impl Loader {
    fn file(&mut self, path: &Path, label: String, kind: SourceKind) {
        let mut source = new_source(label, kind);
        match std::fs::metadata(path)
            .map_err(|e| format!("cannot be read: {e}"))
            .and_then(|meta| self.read(path, &meta))
        {
            Ok(Some(found)) => {
                source.certificates = found.certs.len();
                source.new = self.add(found.certs);
                source.problem = found.problem;
            }
            Ok(None) => {}
            Err(why) => {
                tracing::warn!("{}: not loaded: {why}", source.label);
                source.problem = Some(why);
            }
        }
        self.sources.push(source);
    }

    fn dir(&mut self, dir: &Path, label: String, kind: SourceKind) {
        let mut source = new_source(label, kind);
        let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                tracing::warn!("{}: not read: {e}", source.label);
                source.problem = Some(e.to_string());
                self.sources.push(source);
                return;
            }
        };
        // Sorted, so that a problem report names the same file every run.
        paths.sort();
        let mut unreadable = 0usize;
        for path in paths {
            // Dangling links, sub-directories (`java/`) and sockets are not
            // CA files; an unreadable file among hundreds is noted, not
            // fatal. One stat per entry: Debian has about 290.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            match self.read(&path, &meta) {
                Ok(Some(found)) => {
                    source.certificates += found.certs.len();
                    source.new += self.add(found.certs);
                }
                Ok(None) => {}
                Err(why) => {
                    tracing::debug!("{}: skipped: {why}", path.display());
                    unreadable += 1;
                }
            }
        }
        if unreadable > 0 {
            source.problem = Some(format!("{unreadable} unreadable files skipped"));
        }
        self.sources.push(source);
    }

    fn setting(&mut self, ca: &CaFile) -> Result<(), TrustError> {
        let fail = |why: String| TrustError {
            path: ca.path.clone(),
            named_in: ca.named_in.clone(),
            why,
        };
        let label = format!("{} {}", ca.named_in, ca.path.display());
        let meta = std::fs::metadata(&ca.path).map_err(|e| fail(format!("cannot be read: {e}")))?;
        let Some(found) = self.read(&ca.path, &meta).map_err(fail)? else {
            // Named twice (globally and for a registry): counted once.
            return Ok(());
        };
        if found.certs.is_empty() {
            return Err(fail(match found.problem {
                Some(p) => format!("holds no usable certificate ({p})"),
                None => "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
            }));
        }
        let mut source = new_source(label, SourceKind::Setting);
        source.certificates = found.certs.len();
        source.new = self.add(found.certs);
        source.problem = found.problem;
        self.sources.push(source);
        Ok(())
    }

    /// Adds `certs`; returns how many were not there yet.
    fn add(&mut self, certs: Vec<CertificateDer<'static>>) -> usize {
        certs
            .into_iter()
            .filter(|c| self.certs.insert(c.as_ref().to_vec()))
            .count()
    }

    /// The usable certificates of the file at `path`; `None` if this file
    /// was read already.
    fn read(&mut self, path: &Path, meta: &std::fs::Metadata) -> Result<Option<FileCerts>, String> {
        use std::os::unix::fs::MetadataExt as _;
        if !meta.is_file() {
            // A device (`/dev/zero`) or a pipe would never end.
            return Err("is not a regular file".into());
        }
        if meta.len() > MAX_CA_FILE_BYTES {
            return Err(format!(
                "is {} bytes, more than a CA file can be ({MAX_CA_FILE_BYTES})",
                meta.len()
            ));
        }
        if !self.seen.insert((meta.dev(), meta.ino())) {
            return Ok(None);
        }
        let bytes = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
        let mut certs = Vec::new();
        let mut problem = None;
        for item in CertificateDer::pem_slice_iter(&bytes) {
            match item {
                Ok(cert) => certs.push(cert),
                Err(e) => {
                    // The rest of the file cannot be trusted to parse.
                    problem = Some(format!(
                        "PEM damaged after {} certificates: {}",
                        certs.len(),
                        printable(&e.to_string(), 100)
                    ));
                    break;
                }
            }
        }
        // Keep what rustls can use as a trust anchor, so that the counts
        // in messages are what is really trusted (ureq would drop the rest
        // silently). A certificate already in the set passed before.
        let total = certs.len();
        certs.retain(|c| {
            self.certs.contains(c.as_ref()) || rustls::RootCertStore::empty().add(c.clone()).is_ok()
        });
        if certs.len() < total && problem.is_none() {
            problem = Some(format!("{} certificates unusable", total - certs.len()));
        }
        Ok(Some(FileCerts { certs, problem }))
    }

    fn finish(self) -> Trust {
        let der: Vec<CertificateDer<'static>> =
            self.certs.into_iter().map(CertificateDer::from).collect();
        let for_ureq: Vec<Certificate<'static>> = der
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        let description = describe(&self.sources, der.len());
        Trust {
            roots: RootCerts::Specific(Arc::new(for_ureq)),
            der: Arc::new(der),
            sources: Arc::new(self.sources),
            description: description.into(),
        }
    }
}

fn new_source(label: String, kind: SourceKind) -> Source {
    Source {
        label,
        kind,
        certificates: 0,
        new: 0,
        problem: None,
    }
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 certificate".into()
    } else {
        format!("{n} certificates")
    }
}

/// `trusting the system store A and B (N certificates), SSL_CERT_FILE=X
/// (not loaded: ...), images/plinth.toml [connections] ca-files Y (1
/// certificate)`.
fn describe(sources: &[Source], total: usize) -> String {
    let mut parts = Vec::new();
    let system: Vec<&Source> = sources
        .iter()
        .filter(|s| s.kind == SourceKind::System)
        .collect();
    if !system.is_empty() {
        let labels: Vec<&str> = system.iter().map(|s| s.label.as_str()).collect();
        // Distinct certificates: on Debian the bundle and the directory
        // hold the same CAs.
        let n: usize = system.iter().map(|s| s.new).sum();
        let mut part = format!("the system store {} ({})", labels.join(" and "), count(n));
        for problem in system.iter().filter_map(|s| s.problem.as_deref()) {
            let _ = write!(part, " [{problem}]");
        }
        parts.push(part);
    } else if !sources.iter().any(|s| s.kind == SourceKind::Variable) {
        parts.push(
            "no system store (install ca-certificates, or set SSL_CERT_FILE or [connections] ca-files)"
                .to_owned(),
        );
    }
    for s in sources.iter().filter(|s| s.kind != SourceKind::System) {
        parts.push(match (&s.problem, s.certificates) {
            (Some(p), 0) => format!("{} (not loaded: {p})", s.label),
            (Some(p), n) => format!("{} ({}; {p})", s.label, count(n)),
            (None, n) => format!("{} ({})", s.label, count(n)),
        });
    }
    let mut line = format!("trusting {}", parts.join(", "));
    if total == 0 {
        line.push_str("; no certificate is trusted at all");
    }
    printable(&line, 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plinth_testkit::tls::TestCa;

    const NONE: &[&str] = &[];

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn ca(name: &str) -> String {
        TestCa::new(name).pem()
    }

    #[test]
    fn each_variable_replaces_only_its_own_default() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let bundle = write(dir, "bundle.crt", &(ca("a") + &ca("b")));
        let sysdir = dir.join("sysdir");
        std::fs::create_dir(&sysdir).unwrap();
        write(&sysdir, "c.pem", &ca("c"));
        let env_file = write(dir, "env.pem", &ca("d"));
        let files = [bundle.to_str().unwrap()];
        let dirs = [sysdir.to_str().unwrap()];

        let t = Trust::machine_from(&Environment::empty(), &files, &dirs);
        assert_eq!(t.len(), 3, "{}", t.describe());
        assert!(t.describe().starts_with("trusting the system store "));

        // SSL_CERT_FILE replaces the bundle; the system directory stays.
        let env = Environment::empty().with("SSL_CERT_FILE", env_file.as_os_str());
        let t = Trust::machine_from(&env, &files, &dirs);
        assert_eq!(t.len(), 2, "{}", t.describe());
        assert!(t.describe().contains("SSL_CERT_FILE="), "{}", t.describe());

        // SSL_CERT_DIR replaces the directories; the bundle stays. A
        // missing one is noted, not fatal.
        let env = Environment::empty().with("SSL_CERT_DIR", dir.join("nowhere").as_os_str());
        let t = Trust::machine_from(&env, &files, &dirs);
        assert_eq!(t.len(), 2, "{}", t.describe());
        assert!(t.describe().contains("(not loaded: "), "{}", t.describe());
    }

    #[test]
    fn links_in_a_directory_and_the_bundle_inside_it_count_once() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let a = write(dir, "a.pem", &ca("a"));
        std::os::unix::fs::symlink(&a, dir.join("0a1b2c3d.0")).unwrap();
        std::os::unix::fs::symlink(dir.join("missing"), dir.join("dangling.0")).unwrap();
        std::fs::create_dir(dir.join("java")).unwrap();
        let files = [a.to_str().unwrap()];
        let dirs = [dir.to_str().unwrap()];
        let t = Trust::machine_from(&Environment::empty(), &files, &dirs);
        assert_eq!(t.len(), 1);
        assert!(t.describe().contains("(1 certificate)"), "{}", t.describe());
    }

    #[test]
    fn a_settings_file_must_exist_and_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let named = "images/plinth.toml [connections] ca-files";
        let load = |path: PathBuf| {
            Trust::machine_from(&Environment::empty(), NONE, NONE).with_ca_files(&[CaFile {
                path,
                named_in: named.into(),
            }])
        };
        let err = load(dir.join("missing.pem")).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{named} names "))
                && err.contains("missing.pem, which cannot be read"),
            "{err}"
        );
        let err = load(write(dir, "empty.pem", "not a certificate\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        let err = load("/dev/zero".into()).unwrap_err().to_string();
        assert!(err.contains("is not a regular file"), "{err}");

        let good = write(dir, "corp.pem", &ca("corp"));
        let t = load(good.clone()).unwrap();
        assert_eq!(t.len(), 1);
        assert!(t.describe().contains("no system store"), "{}", t.describe());
        assert!(t.describe().contains("corp.pem (1 certificate)"));
        let scoped = t
            .with_ca_files(&[CaFile {
                path: write(dir, "registry.pem", &ca("registry")),
                named_in: "images/plinth.toml [connections.registry.\"r.example\"] ca-files".into(),
            }])
            .unwrap();
        assert_eq!((t.len(), scoped.len()), (1, 2));
        assert!(scoped.describe().contains("registry.pem (1 certificate)"));
    }

    #[test]
    fn damaged_pem_keeps_what_came_before() {
        let dir = tempfile::tempdir().unwrap();
        let text = ca("a") + "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let path = write(dir.path(), "mixed.pem", &text);
        let t = Trust::machine_from(&Environment::empty(), NONE, NONE)
            .with_ca_files(&[CaFile {
                path,
                named_in: "ca-files".into(),
            }])
            .unwrap();
        assert_eq!(t.len(), 1);
        assert!(t.describe().contains("damaged"), "{}", t.describe());
    }
}
