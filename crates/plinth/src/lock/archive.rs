//! The archive client: the chain of trust from a suite's `InRelease` down to
//! its `Packages` indices, as apt walks it.
//!
//! 1. `dists/<suite>/InRelease` must carry at least one good signature from
//!    a key in `keys/` (RSA and EdDSA both), and not be past `Valid-Until`.
//! 2. The signed Release body lists `SHA256` hashes and sizes of every
//!    index; `Packages.xz` is fetched (by hash where the Release offers it),
//!    checked against that list, decompressed and checked again against the
//!    uncompressed `Packages` line.
//!
//! Only verified bytes leave this module. The verified, uncompressed indices
//! are cached by hash, so a re-lock from a warm cache reads no `.xz`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use openpgp::parse::Parse;
use openpgp::parse::stream::{
    MessageLayer, MessageStructure, VerificationError, VerificationHelper, VerifierBuilder,
};
use openpgp::policy::StandardPolicy;
use sequoia_openpgp as openpgp;

use crate::debian::control;
use crate::definitions::Name;
use crate::download::cache::{Cache, CacheError};
use crate::download::http::{FetchError, Fetcher, MAX_INRELEASE_BYTES};
use crate::lockfile::LockedRelease;
use crate::net::{BodyLimit, redact_url};
use crate::support::digest::{Sha256Hex, sha256_hex};
use crate::support::size::ByteSize;
use crate::support::time::parse_rfc2822;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: cannot read key: {why}")]
    Key { path: PathBuf, why: String },
    #[error("{url}: not signed (expected a clear-signed InRelease)")]
    Unsigned { url: String },
    #[error("{url}: not a clear-signed message as apt reads it: {why}")]
    Framing { url: String, why: String },
    #[error("{url}: no valid signature from a trusted key ({why})")]
    BadSignature { url: String, why: String },
    #[error("{url}: expired: Valid-Until {valid_until} is in the past")]
    Expired { url: String, valid_until: String },
    #[error(
        "{url}: not valid yet: its Date {date} is in the future (is this machine's clock right?)"
    )]
    NotYetValid { url: String, date: String },
    #[error("{url}: {why}")]
    Release { url: String, why: String },
    #[error("{path} of suite {suite}: not listed in the Release's SHA256 section")]
    NotListed { suite: String, path: String },
    #[error("{url}: {what} mismatch: the Release says {expected}, got {actual}")]
    Mismatch {
        url: String,
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error(
        "{url}: the Release lists {size} bytes, above the ceiling of {limit} per index (limits.index in images/plinth.toml)"
    )]
    TooLarge {
        url: String,
        size: u64,
        limit: ByteSize,
    },
    #[error("{url}: corrupt xz data: {why}")]
    Corrupt { url: String, why: String },
    /// A suite's Release is older than the one the lockfile records: a
    /// mirror replaying an old, validly signed archive, or one lagging
    /// behind.
    #[error(
        "{url}: dated {date}, older than the {recorded} recorded in {}; refusing to move the lock back in time (a replayed or stale mirror); `cargo xtask lock --allow-downgrade` accepts it",
        lockfile.display()
    )]
    Downgrade {
        url: String,
        date: String,
        recorded: String,
        lockfile: PathBuf,
    },
    #[error("{}: release {suite}: unreadable date {date:?}; fix or remove the lockfile, or run `cargo xtask lock --allow-downgrade`", lockfile.display())]
    RecordedDate {
        lockfile: PathBuf,
        suite: String,
        date: String,
    },
    #[error("suite {suite}: offline and nothing cached for {what}")]
    Offline { suite: String, what: String },
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// The most memory reserved up front for an index: sizes are claims
/// until the bytes arrive.
const MAX_PREALLOC: u64 = 64 << 20;

/// How far in the future a Release `Date` may be: apt's default
/// `Acquire::Max-FutureTime`.
pub const MAX_FUTURE_SECS: u64 = 10;

/// The public keys trusted for one distribution.
pub struct Keyring {
    certs: Vec<openpgp::Cert>,
}

impl Keyring {
    /// Loads ASCII-armoured or binary certificates (one or more per file).
    pub fn load(paths: &[PathBuf]) -> Result<Self, ArchiveError> {
        let mut certs = Vec::new();
        for path in paths {
            let bad = |why: String| ArchiveError::Key {
                path: path.clone(),
                why,
            };
            let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            let parser =
                openpgp::cert::CertParser::from_bytes(&bytes).map_err(|e| bad(e.to_string()))?;
            let before = certs.len();
            for cert in parser {
                certs.push(cert.map_err(|e| bad(e.to_string()))?);
            }
            if certs.len() == before {
                return Err(bad("no OpenPGP certificate in the file".into()));
            }
        }
        Ok(Keyring { certs })
    }

    /// Checks a clear-signed message and returns its signed text.
    pub fn verify_clearsigned(
        &self,
        url: &str,
        bytes: &[u8],
        now: SystemTime,
    ) -> Result<String, ArchiveError> {
        const HEADER: &[u8] = b"-----BEGIN PGP SIGNED MESSAGE-----";
        if !bytes.starts_with(HEADER) {
            if memchr::memmem::find(bytes, HEADER).is_some() {
                return Err(ArchiveError::Framing {
                    url: url.to_owned(),
                    why: "text before -----BEGIN PGP SIGNED MESSAGE-----".into(),
                });
            }
            return Err(ArchiveError::Unsigned {
                url: url.to_owned(),
            });
        }
        check_cleartext(bytes).map_err(|why| ArchiveError::Framing {
            url: url.to_owned(),
            why,
        })?;
        let policy = StandardPolicy::at(now);
        let problems = std::cell::RefCell::new(Vec::new());
        let helper = Helper {
            certs: &self.certs,
            problems: &problems,
        };
        let bad = |why: String| ArchiveError::BadSignature {
            url: url.to_owned(),
            why,
        };
        // The helper's own findings say more than sequoia's wrapping error.
        let explain = |e: &dyn std::fmt::Display| {
            let found = problems.borrow();
            if found.is_empty() {
                e.to_string()
            } else {
                found.join("; ")
            }
        };
        let mut verifier = VerifierBuilder::from_bytes(bytes)
            .and_then(|b| b.with_policy(&policy, Some(now), helper))
            .map_err(|e| bad(explain(&format!("{e:#}"))))?;
        let mut text = Vec::new();
        verifier
            .read_to_end(&mut text)
            .map_err(|e| bad(explain(&e)))?;
        if !verifier.message_processed() {
            return Err(bad("message not fully processed".into()));
        }
        String::from_utf8(text).map_err(|_| bad("signed text is not UTF-8".into()))
    }
}

/// The digests apt trusts for an archive signature (its gpgv method
/// refuses MD5, SHA1 and RIPEMD160): the only values a `Hash:` armor
/// header may name.
const TRUSTED_HASHES: [&str; 4] = ["SHA224", "SHA256", "SHA384", "SHA512"];

/// Checks the frame of a clear-signed message the way apt's
/// `SplitClearSignedFile` reads it, and stricter where apt leaves room:
/// the header on the first line; armor headers that are `Hash:` lines
/// naming digests apt trusts, then an empty line; signed text whose lines
/// starting with a dash are dash-escaped (so no second signed message or
/// stray armor line can hide in it); exactly one signature block; and
/// nothing after it but blank lines. Trailing spaces, tabs and CRs on a
/// line are ignored, as RFC 4880 and apt do. The OpenPGP library then
/// verifies the signatures of exactly this one block.
fn check_cleartext(bytes: &[u8]) -> Result<(), String> {
    use crate::support::text::shown;
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())?;
    let mut lines = text
        .split('\n')
        .map(|l| l.trim_end_matches(['\r', ' ', '\t']));
    if lines.next() != Some("-----BEGIN PGP SIGNED MESSAGE-----") {
        return Err("the first line is not -----BEGIN PGP SIGNED MESSAGE-----".into());
    }
    let mut hash_headers = 0;
    loop {
        let line = lines.next().ok_or("it ends inside the armor headers")?;
        if line.is_empty() {
            break;
        }
        let Some(values) = line.strip_prefix("Hash:") else {
            return Err(format!(
                "armor header {:?}: only Hash: is allowed before the signed text",
                shown(line)
            ));
        };
        for value in values.split(',').map(str::trim) {
            if !TRUSTED_HASHES.contains(&value) {
                return Err(format!(
                    "armor header Hash: {:?} is not one of {} (the digests apt trusts)",
                    shown(value),
                    TRUSTED_HASHES.join(", ")
                ));
            }
        }
        hash_headers += 1;
    }
    if hash_headers == 0 {
        return Err("no Hash: armor header".into());
    }
    loop {
        let line = lines.next().ok_or("no signature block")?;
        if line == "-----BEGIN PGP SIGNATURE-----" {
            break;
        }
        if line.starts_with('-') && !line.starts_with("- ") {
            return Err(format!(
                "a line of the signed text starts with a dash but is not dash-escaped: {:?}",
                shown(line)
            ));
        }
    }
    loop {
        let line = lines.next().ok_or("the signature block is not closed")?;
        if line == "-----END PGP SIGNATURE-----" {
            break;
        }
        if line.starts_with('-') {
            return Err(format!(
                "unexpected line in the signature block: {:?}",
                shown(line)
            ));
        }
    }
    match lines.find(|l| !l.trim().is_empty()) {
        Some(line) => Err(format!("text after the signature block: {:?}", shown(line))),
        None => Ok(()),
    }
}

struct Helper<'a> {
    certs: &'a [openpgp::Cert],
    problems: &'a std::cell::RefCell<Vec<String>>,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[openpgp::KeyHandle]) -> openpgp::Result<Vec<openpgp::Cert>> {
        Ok(self.certs.to_vec())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        let mut good = 0;
        let mut problems = self.problems.borrow_mut();
        for layer in structure {
            if let MessageLayer::SignatureGroup { results } = layer {
                for result in results {
                    match result {
                        Ok(_) => good += 1,
                        Err(e) => problems.push(describe(&e)),
                    }
                }
            }
        }
        if good > 0 {
            return Ok(());
        }
        if problems.is_empty() {
            problems.push("no signature found".into());
        }
        problems.sort();
        problems.dedup();
        Err(openpgp::Error::InvalidOperation(problems.join("; ")).into())
    }
}

fn describe(e: &VerificationError) -> String {
    match e {
        VerificationError::MissingKey { sig } => {
            let issuer = sig
                .get_issuers()
                .first()
                .map(|h| h.to_hex())
                .unwrap_or_else(|| "unknown".into());
            format!("signed by key {issuer}, which is not in the trusted keys")
        }
        VerificationError::BadSignature { ka, .. } => {
            format!("bad signature by key {}", ka.key().fingerprint().to_hex())
        }
        other => other.to_string(),
    }
}

/// The fields plinth needs from a verified Release file.
#[derive(Debug, Clone)]
pub struct Release {
    pub suite: String,
    pub codename: String,
    pub date: String,
    pub date_epoch: u64,
    pub valid_until: Option<(String, u64)>,
    pub acquire_by_hash: bool,
    /// path → (sha256, size)
    pub sha256: BTreeMap<String, (Sha256Hex, u64)>,
}

impl Release {
    pub fn parse(url: &str, text: &str) -> Result<Self, ArchiveError> {
        let bad = |why: String| ArchiveError::Release {
            url: url.to_owned(),
            why,
        };
        let stanzas = control::parse(text).map_err(|e| bad(e.to_string()))?;
        let st = stanzas.first().ok_or_else(|| bad("empty Release".into()))?;
        let date = st.get("Date").ok_or_else(|| bad("no Date field".into()))?;
        let date_epoch = parse_rfc2822(date).ok_or_else(|| bad(format!("bad Date {date:?}")))?;
        let valid_until = match st.get("Valid-Until") {
            Some(v) => Some((
                v.to_owned(),
                parse_rfc2822(v).ok_or_else(|| bad(format!("bad Valid-Until {v:?}")))?,
            )),
            None => None,
        };
        let mut sha256 = BTreeMap::new();
        for line in st.get("SHA256").unwrap_or("").lines() {
            let mut words = line.split_whitespace();
            let (Some(hash), Some(size), Some(path), None) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                if line.trim().is_empty() {
                    continue;
                }
                return Err(bad(format!("bad SHA256 line {line:?}")));
            };
            let size = size
                .parse()
                .map_err(|_| bad(format!("bad size in SHA256 line {line:?}")))?;
            let hash = Sha256Hex::parse(&hash.to_ascii_lowercase())
                .map_err(|e| bad(format!("SHA256 line for {path}: {e}")))?;
            sha256.insert(path.to_owned(), (hash, size));
        }
        if sha256.is_empty() {
            return Err(bad("no SHA256 section".into()));
        }
        Ok(Release {
            suite: st.get("Suite").unwrap_or_default().to_owned(),
            codename: st.get("Codename").unwrap_or_default().to_owned(),
            date: date.to_owned(),
            date_epoch,
            valid_until,
            acquire_by_hash: st
                .get("Acquire-By-Hash")
                .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            sha256,
        })
    }
}

/// A suite whose Release has been verified.
#[derive(Debug, Clone)]
pub struct VerifiedSuite {
    pub name: Name,
    pub archive: Name,
    pub base_url: String,
    pub release: Release,
    pub inrelease_sha256: Sha256Hex,
}

/// Fetches and verifies suites and their indices for one distribution.
pub struct ArchiveClient<'a> {
    pub fetcher: &'a Fetcher,
    pub cache: &'a Cache,
    pub keyring: &'a Keyring,
    pub offline: bool,
    pub now: SystemTime,
    /// The Releases the current lockfile records: a suite's Release may
    /// not be older than its record (empty when a downgrade is allowed).
    pub recorded: &'a [LockedRelease],
    /// That lockfile, for messages.
    pub lockfile: &'a Path,
    /// The largest index (compressed or not) worth fetching.
    pub index_limit: ByteSize,
}

impl ArchiveClient<'_> {
    /// Fetches `dists/<suite>/InRelease` from `base_url` and verifies it.
    pub fn suite(
        &self,
        base_url: &str,
        archive: &Name,
        suite: &Name,
    ) -> Result<VerifiedSuite, ArchiveError> {
        let url = format!("{base_url}/dists/{suite}/InRelease");
        let shown = redact_url(&url);
        let cache_name = format!("InRelease-{archive}-{suite}");
        let bytes = if self.offline {
            self.cache
                .get_named(&cache_name)
                .ok_or_else(|| ArchiveError::Offline {
                    suite: suite.to_string(),
                    what: "InRelease".into(),
                })?
        } else {
            self.fetcher
                .get(archive, &url, BodyLimit::AtMost(MAX_INRELEASE_BYTES))?
        };
        let text = self.keyring.verify_clearsigned(&shown, &bytes, self.now)?;
        let release = Release::parse(&shown, &text)?;
        // A validly signed Release of another suite (an old one, or a
        // mirror's mix-up) must not stand in for the one asked for.
        if release.codename != suite.as_str() && release.suite != suite.as_str() {
            return Err(ArchiveError::Release {
                url: shown,
                why: format!(
                    "is for suite {:?} (codename {:?}), not {suite:?}",
                    release.suite, release.codename
                ),
            });
        }
        let now = self
            .now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // As apt does by default (Acquire::Check-Date, Max-FutureTime):
        // a clock that is behind would otherwise make an expired
        // Valid-Until look current, and a future Date would become the
        // lock's epoch and the bar every later Release must clear.
        if release.date_epoch > now.saturating_add(MAX_FUTURE_SECS) {
            return Err(ArchiveError::NotYetValid {
                url: shown,
                date: release.date,
            });
        }
        if let Some((text, until)) = &release.valid_until
            && *until < now
        {
            return Err(ArchiveError::Expired {
                url: shown,
                valid_until: text.clone(),
            });
        }
        self.check_not_older(&shown, suite, &release)?;
        if !self.offline {
            self.cache.put_named(&cache_name, &bytes)?;
        }
        Ok(VerifiedSuite {
            name: suite.clone(),
            archive: archive.clone(),
            base_url: base_url.to_owned(),
            release,
            inrelease_sha256: Sha256Hex::of(&bytes),
        })
    }

    /// Refuses a Release dated before the one the lockfile records for
    /// the suite: the archive moves forward or the lock stays put. Checked
    /// before anything is cached, so a refusal changes nothing.
    fn check_not_older(
        &self,
        url: &str,
        suite: &Name,
        release: &Release,
    ) -> Result<(), ArchiveError> {
        let Some(before) = self.recorded.iter().find(|r| r.suite == *suite) else {
            return Ok(());
        };
        // A recorded date plinth cannot read (a hand edit) would make the
        // check meaningless.
        let recorded = parse_rfc2822(&before.date).ok_or_else(|| ArchiveError::RecordedDate {
            lockfile: self.lockfile.to_owned(),
            suite: suite.to_string(),
            date: crate::support::text::shown(&before.date),
        })?;
        if release.date_epoch < recorded {
            return Err(ArchiveError::Downgrade {
                url: url.to_owned(),
                date: release.date.clone(),
                recorded: before.date.clone(),
                lockfile: self.lockfile.to_owned(),
            });
        }
        Ok(())
    }

    /// The uncompressed `Packages` index of `component` for `arch`, checked
    /// against the Release. A suite without that index (an empty
    /// `-updates`, an architecture it lacks) gives an empty string.
    pub fn packages(
        &self,
        suite: &VerifiedSuite,
        component: &str,
        arch: &str,
    ) -> Result<String, ArchiveError> {
        let dir = format!("{component}/binary-{arch}");
        let plain_path = format!("{dir}/Packages");
        let xz_path = format!("{dir}/Packages.xz");
        let Some((plain_sha, plain_size)) = suite.release.sha256.get(&plain_path).cloned() else {
            if suite.release.sha256.contains_key(&xz_path) {
                return Err(ArchiveError::NotListed {
                    suite: suite.name.to_string(),
                    path: plain_path,
                });
            }
            tracing::debug!("suite {} has no {plain_path}", suite.name);
            return Ok(String::new());
        };
        let url_of = |p: &str| format!("{}/dists/{}/{p}", suite.base_url, suite.name);
        let shown_of = |p: &str| redact_url(&url_of(p));
        // Sizes come from the signed Release, but they still decide how
        // much is fetched and unpacked: no more than the ceiling.
        if plain_size > self.index_limit.0 {
            return Err(ArchiveError::TooLarge {
                url: shown_of(&plain_path),
                size: plain_size,
                limit: self.index_limit,
            });
        }
        if let Some(bytes) = self.cache.get(&plain_sha) {
            return into_text(&shown_of(&plain_path), bytes);
        }
        if self.offline {
            return Err(ArchiveError::Offline {
                suite: suite.name.to_string(),
                what: plain_path,
            });
        }
        let (xz_sha, xz_size) =
            suite
                .release
                .sha256
                .get(&xz_path)
                .cloned()
                .ok_or_else(|| ArchiveError::NotListed {
                    suite: suite.name.to_string(),
                    path: xz_path.clone(),
                })?;
        if xz_size > self.index_limit.0 {
            return Err(ArchiveError::TooLarge {
                url: shown_of(&xz_path),
                size: xz_size,
                limit: self.index_limit,
            });
        }
        let by_hash = suite
            .release
            .acquire_by_hash
            .then(|| format!("{dir}/by-hash/SHA256/{xz_sha}"));
        // A mirror may lag behind on by-hash files; the plain path with the
        // same hash check is just as safe, so a by-hash 404 is not retried.
        let fetched = match &by_hash {
            Some(p) => self
                .fetcher
                .get_unless_missing(&suite.archive, &url_of(p), BodyLimit::Exactly(xz_size))?
                .map(|b| (b, p.clone())),
            None => None,
        };
        let (compressed, path) = match fetched {
            Some(found) => found,
            None => {
                let limit = BodyLimit::Exactly(xz_size);
                let bytes = self.fetcher.get(&suite.archive, &url_of(&xz_path), limit)?;
                (bytes, xz_path.clone())
            }
        };
        let url = shown_of(&path);
        check(
            &url,
            "size",
            &xz_size.to_string(),
            &compressed.len().to_string(),
        )?;
        check(&url, "sha256", xz_sha.as_str(), &sha256_hex(&compressed))?;
        // Decompressed no further than one byte past the size the Release
        // gives (enough to see it is wrong), into a buffer that grows with
        // what arrives rather than with what is claimed.
        let mut plain = Vec::with_capacity(plain_size.min(MAX_PREALLOC) as usize);
        liblzma::read::XzDecoder::new(&compressed[..])
            .take(plain_size.saturating_add(1))
            .read_to_end(&mut plain)
            .map_err(|e| ArchiveError::Corrupt {
                url: url.clone(),
                why: e.to_string(),
            })?;
        check(
            &url,
            "uncompressed size",
            &plain_size.to_string(),
            &plain.len().to_string(),
        )?;
        check(
            &url,
            "uncompressed sha256",
            plain_sha.as_str(),
            &sha256_hex(&plain),
        )?;
        self.cache.put(&plain_sha, &plain)?;
        into_text(&url, plain)
    }
}

fn check(url: &str, what: &'static str, expected: &str, actual: &str) -> Result<(), ArchiveError> {
    if expected == actual {
        Ok(())
    } else {
        Err(ArchiveError::Mismatch {
            url: url.to_owned(),
            what,
            expected: expected.to_owned(),
            actual: actual.to_owned(),
        })
    }
}

fn into_text(url: &str, bytes: Vec<u8>) -> Result<String, ArchiveError> {
    String::from_utf8(bytes).map_err(|_| ArchiveError::Corrupt {
        url: url.to_owned(),
        why: "Packages index is not UTF-8".into(),
    })
}

/// The keys of a distribution, from `keys/`.
pub fn key_paths(keys_dir: &Path, names: &[String]) -> Vec<PathBuf> {
    names.iter().map(|n| keys_dir.join(n)).collect()
}
