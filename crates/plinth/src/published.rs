//! Stage 5, what a consumer checks before building on a published image:
//! for every selected tag in the registry, that it points at the digest
//! `lockfiles/digests.toml` records (the tag and its per-architecture
//! tags), and that the index and each manifest carry, signed by the given
//! public key, cosign's legacy signature (`sha256-<hex>.sig`), a sigstore
//! signature bundle, and the SPDX, CycloneDX and SLSA provenance
//! attestations in both cosign's `.att` image and bundle referrers; and
//! that the provenance names the lockfile the consumer holds.
//!
//! It only reads: nothing is pushed. Each tag gets a [`TagVerdict`] listing
//! every [`Problem`] found, each one line naming the digest and what is
//! wrong (unsigned, wrong key, digest moved, payload for another image,
//! attestation missing, provenance naming another lockfile). A registry
//! that cannot be reached, or answers an error, stops the run.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::digests::{RecordedDigests, TagSummary};
use crate::error::{Error, Result};
use crate::oci::{Descriptor, Index};
use crate::project::Progress;
use crate::provenance::lockfile_named;
use crate::registry::{Client, RegistryError};
use crate::sign::bundle::BUNDLE_V03_MEDIA_TYPE;
use crate::sign::image::{self, FetchBlob};
use crate::sign::intoto::{
    PREDICATE_COSIGN_SIGN, PREDICATE_CYCLONEDX, PREDICATE_SLSA_PROVENANCE_V1, PREDICATE_SPDX,
    Statement,
};
use crate::sign::{PublicKey, SignError, bundle, simple_signing};
use crate::support::digest::{is_lower_hex, sha256_hex};

/// The attestations every signed manifest must carry, with their names.
const ATTESTATIONS: [(&str, &str); 3] = [
    (PREDICATE_SPDX, "SPDX SBOM"),
    (PREDICATE_CYCLONEDX, "CycloneDX SBOM"),
    (PREDICATE_SLSA_PROVENANCE_V1, "SLSA provenance"),
];

/// What to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Image repositories (`static-debian13`) or images (`static`); all
    /// when empty.
    pub images: Vec<String>,
    /// Recorded tags; all when empty.
    pub tags: Vec<String>,
    /// Where the lockfiles the provenance must name are
    /// (`<dir>/<distribution>.lock.toml`).
    pub lockfiles_dir: PathBuf,
}

/// Where a signature or attestation was looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// cosign's `sha256-<hex>.sig` / `.att` tags.
    Legacy,
    /// sigstore bundles stored as referrers.
    Bundle,
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Form::Legacy => "cosign .sig/.att",
            Form::Bundle => "sigstore bundle",
        })
    }
}

/// One thing wrong with a published tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The tag is not in the registry.
    Missing { tag: String },
    /// The tag points at another digest than the record.
    DigestMoved {
        tag: String,
        found: String,
        recorded: String,
    },
    /// No signature of this form at all.
    Unsigned { digest: String, form: Form },
    /// Signatures, but none verifies with the key.
    WrongKey {
        digest: String,
        form: Form,
        detail: String,
    },
    /// Signed by the key, but the payload names another image.
    PayloadMismatch {
        digest: String,
        form: Form,
        detail: String,
    },
    AttestationMissing {
        digest: String,
        what: &'static str,
        form: Form,
    },
    /// A signature or attestation that is there but malformed.
    Invalid {
        digest: String,
        form: Form,
        detail: String,
    },
    /// The signed provenance names another lockfile than the one held.
    ProvenanceLockfile { digest: String, detail: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing { tag } => write!(f, "tag missing: {tag} is not in the registry"),
            Problem::DigestMoved {
                tag,
                found,
                recorded,
            } => write!(
                f,
                "digest moved: {tag} is {found}, lockfiles/digests.toml records {recorded}"
            ),
            Problem::Unsigned { digest, form } => {
                write!(f, "unsigned: {digest} has no {form} signature")
            }
            Problem::WrongKey {
                digest,
                form,
                detail,
            } => write!(
                f,
                "wrong key: no {form} signature of {digest} verifies with the key ({detail})"
            ),
            Problem::PayloadMismatch {
                digest,
                form,
                detail,
            } => write!(f, "payload digest mismatch: {form} of {digest}: {detail}"),
            Problem::AttestationMissing { digest, what, form } => {
                write!(f, "attestation missing: {digest} has no {form} {what}")
            }
            Problem::Invalid {
                digest,
                form,
                detail,
            } => write!(f, "invalid {form} signature of {digest}: {detail}"),
            Problem::ProvenanceLockfile { digest, detail } => {
                write!(f, "provenance names another lockfile: {digest}: {detail}")
            }
        }
    }
}

/// The outcome for one recorded tag (with its per-architecture tags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagVerdict {
    /// `HOST[:PORT]/PREFIX/REPOSITORY:TAG`.
    pub reference: String,
    /// The recorded index digest.
    pub digest: String,
    /// Manifests and indexes whose signatures were checked.
    pub subjects: usize,
    pub problems: Vec<Problem>,
}

impl TagVerdict {
    pub fn verified(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies every selected recorded tag in the registry behind `client`
/// with `key`; one verdict per tag, in the record's order.
pub fn verify(
    client: &Client,
    recorded: &RecordedDigests,
    key: &PublicKey,
    options: &VerifyOptions,
    progress: &dyn Progress,
) -> Result<Vec<TagVerdict>> {
    let selected = recorded.select(&options.images, &options.tags)?;
    client.ping()?;
    let total = selected.values().map(|t| t.len() as u64).sum();
    progress.begin("verify", total);
    let lockfiles = Lockfiles::new(&options.lockfiles_dir);
    let verdicts = selected
        .par_iter()
        .map(|(name, tags)| {
            let repository = client.target().repository(name);
            tags.iter()
                .map(|t| {
                    let checker = Checker {
                        client,
                        key,
                        repository: &repository,
                        lockfiles: &lockfiles,
                    };
                    let verdict = checker.tag(t);
                    progress.step(&format!("{name}:{}", t.tag));
                    verdict
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    progress.end();
    Ok(verdicts)
}

/// The consumer's lockfiles, hashed once each.
struct Lockfiles {
    dir: PathBuf,
    hashes: std::sync::Mutex<BTreeMap<String, Option<String>>>,
}

impl Lockfiles {
    fn new(dir: &Path) -> Self {
        Lockfiles {
            dir: dir.to_owned(),
            hashes: Default::default(),
        }
    }

    /// The sha256 of `<dir>/<file>`, `None` if it cannot be read.
    fn sha256(&self, file: &str) -> Option<String> {
        let mut hashes = self
            .hashes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        hashes
            .entry(file.to_owned())
            .or_insert_with(|| {
                std::fs::read(self.dir.join(file))
                    .ok()
                    .map(|b| sha256_hex(&b))
            })
            .clone()
    }
}

struct Checker<'a> {
    client: &'a Client,
    key: &'a PublicKey,
    repository: &'a str,
    lockfiles: &'a Lockfiles,
}

impl Checker<'_> {
    fn tag(&self, t: &TagSummary) -> Result<TagVerdict> {
        let mut problems = Vec::new();
        let expected = std::iter::once((t.tag.clone(), t.index.clone())).chain(
            t.platform
                .iter()
                .map(|p| (format!("{}-{}", t.tag, p.architecture), p.manifest.clone())),
        );
        let mut subjects = Vec::new();
        for (tag, recorded) in expected {
            match self.client.manifest_digest(self.repository, &tag)? {
                None => problems.push(Problem::Missing { tag }),
                Some(found) if found != recorded => problems.push(Problem::DigestMoved {
                    tag,
                    found,
                    recorded,
                }),
                Some(_) => subjects.push(recorded),
            }
        }
        for digest in &subjects {
            problems.extend(self.subject(digest)?);
        }
        Ok(TagVerdict {
            reference: format!("{}:{}", self.client.place(self.repository), t.tag),
            digest: t.index.clone(),
            subjects: subjects.len(),
            problems,
        })
    }

    /// Every problem with the signatures and attestations of one digest.
    fn subject(&self, digest: &str) -> Result<Vec<Problem>> {
        let mut problems = Vec::new();
        let name = simple_signing::docker_reference(&self.client.target().host, self.repository)?;
        let mut provenance: Vec<Statement> = Vec::new();

        // cosign's legacy signature and attestations.
        match self.manifest(&image::signature_tag(digest)?)? {
            None => problems.push(Problem::Unsigned {
                digest: digest.into(),
                form: Form::Legacy,
            }),
            Some(bytes) => {
                let outcome = self.fetching(|fetch| {
                    image::verify_signature_image(&bytes, fetch, self.key, digest, Some(&name))
                })?;
                if let Err(e) = outcome {
                    problems.push(classify(e, digest, Form::Legacy, None));
                }
            }
        }
        let att = self.manifest(&image::attestation_tag(digest)?)?;
        for (predicate, what) in ATTESTATIONS {
            let Some(bytes) = &att else {
                problems.push(Problem::AttestationMissing {
                    digest: digest.into(),
                    what,
                    form: Form::Legacy,
                });
                continue;
            };
            let outcome = self.fetching(|fetch| {
                image::verify_attestation_image(bytes, fetch, self.key, digest, predicate)
            })?;
            match outcome {
                Ok(statements) if predicate == PREDICATE_SLSA_PROVENANCE_V1 => {
                    provenance.extend(statements)
                }
                Ok(_) => {}
                Err(e) => problems.push(classify(e, digest, Form::Legacy, Some(what))),
            }
        }

        // sigstore bundles among the referrers.
        let mut by_predicate: BTreeMap<String, Result<Vec<Statement>, Vec<SignError>>> =
            BTreeMap::new();
        for d in self.bundle_referrers(digest)? {
            let Some(bytes) = self.manifest(&d.digest)? else {
                continue;
            };
            let outcome = self.fetching(|fetch| {
                bundle::verify_bundle_referrer(&bytes, fetch, self.key, digest)
            })?;
            let claimed = d
                .annotations
                .get(bundle::ANNOTATION_BUNDLE_PREDICATE_TYPE)
                .cloned()
                .unwrap_or_default();
            let slot = by_predicate
                .entry(claimed)
                .or_insert_with(|| Err(Vec::new()));
            match (outcome, slot) {
                (Ok(st), Ok(list)) => list.push(st),
                (Ok(st), slot) => *slot = Ok(vec![st]),
                (Err(e), Err(errors)) => errors.push(e),
                (Err(_), Ok(_)) => {}
            }
        }
        let wanted = std::iter::once((PREDICATE_COSIGN_SIGN, "signature"))
            .chain(ATTESTATIONS)
            .collect::<Vec<_>>();
        for (predicate, what) in wanted {
            let attestation = (predicate != PREDICATE_COSIGN_SIGN).then_some(what);
            match by_predicate.remove(predicate) {
                Some(Ok(statements)) => {
                    if predicate == PREDICATE_SLSA_PROVENANCE_V1 {
                        provenance.extend(statements);
                    }
                }
                Some(Err(errors)) => {
                    let e = SignError::most_telling(errors, || SignError::Absent(String::new()));
                    problems.push(classify(e, digest, Form::Bundle, attestation));
                }
                None => problems.push(match attestation {
                    None => Problem::Unsigned {
                        digest: digest.into(),
                        form: Form::Bundle,
                    },
                    Some(what) => Problem::AttestationMissing {
                        digest: digest.into(),
                        what,
                        form: Form::Bundle,
                    },
                }),
            }
        }
        if !provenance.is_empty() {
            problems.extend(self.lockfile_problem(digest, &provenance));
        }
        Ok(problems)
    }

    /// A problem unless some verified provenance names a lockfile whose
    /// sha256 is that of the consumer's copy.
    fn lockfile_problem(&self, digest: &str, provenance: &[Statement]) -> Option<Problem> {
        let mut details = Vec::new();
        for st in provenance {
            let Some(named) = lockfile_named(st) else {
                details.push("not plinth's build type".to_owned());
                continue;
            };
            let Some(file) = named
                .path
                .strip_prefix("lockfiles/")
                .filter(|f| valid_lockfile_name(f))
            else {
                details.push(format!("names {:?}, not a lockfile", named.path));
                continue;
            };
            match self.lockfiles.sha256(file) {
                Some(held) if held == named.sha256 => return None,
                Some(held) => details.push(format!(
                    "{} with sha256 {}, but {} has sha256 {held}",
                    named.path,
                    named.sha256,
                    self.lockfiles.dir.join(file).display()
                )),
                None => details.push(format!(
                    "{}, which {} does not have",
                    named.path,
                    self.lockfiles.dir.display()
                )),
            }
        }
        details.dedup();
        Some(Problem::ProvenanceLockfile {
            digest: digest.into(),
            detail: details.join("; "),
        })
    }

    /// The manifest `reference` of the repository, if it exists.
    fn manifest(&self, reference: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .client
            .get_manifest(self.repository, reference)?
            .map(|(_, bytes)| bytes))
    }

    /// The bundle referrers of `digest`: through the referrers API, else
    /// the `sha256-<hex>` tag of the fallback schema.
    fn bundle_referrers(&self, digest: &str) -> Result<Vec<Descriptor>> {
        let index = match self.client.referrers(self.repository, digest)? {
            Some(index) => index,
            None => match self.manifest(&digest.replacen(':', "-", 1))? {
                Some(bytes) => serde_json::from_slice::<Index>(&bytes).map_err(|_| {
                    Error::Registry(RegistryError {
                        place: self.client.place(self.repository),
                        what: format!("the referrers tag of {digest} is not an image index"),
                        unauthorized: false,
                    })
                })?,
                None => return Ok(Vec::new()),
            },
        };
        Ok(index
            .manifests
            .into_iter()
            .filter(|d| d.artifact_type.as_deref() == Some(BUNDLE_V03_MEDIA_TYPE))
            .filter(|d| {
                d.digest
                    .strip_prefix("sha256:")
                    .is_some_and(|h| is_lower_hex(h, 64))
            })
            .collect())
    }

    /// Runs `verify` with a blob fetcher that reads from the registry; a
    /// registry error while fetching stops the run rather than counting as
    /// a missing blob.
    fn fetching<T>(
        &self,
        verify: impl FnOnce(&mut FetchBlob<'_>) -> Result<T, SignError>,
    ) -> Result<Result<T, SignError>> {
        let failure: RefCell<Option<RegistryError>> = RefCell::new(None);
        let mut fetch = |d: &Descriptor| match self.client.get_blob(self.repository, &d.digest) {
            Ok(blob) => blob,
            Err(e) => {
                failure.borrow_mut().get_or_insert(e);
                None
            }
        };
        let outcome = verify(&mut fetch);
        match failure.into_inner() {
            Some(e) => Err(e.into()),
            None => Ok(outcome),
        }
    }
}

/// `debian13.lock.toml`: a file name, never a path.
fn valid_lockfile_name(file: &str) -> bool {
    file.strip_suffix(".lock.toml").is_some_and(|d| {
        !d.is_empty()
            && d.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !d.starts_with('.')
    })
}

/// The problem a failed verification stands for.
fn classify(e: SignError, digest: &str, form: Form, attestation: Option<&'static str>) -> Problem {
    let digest = digest.to_owned();
    match e {
        SignError::WrongSubject { .. } => Problem::PayloadMismatch {
            digest,
            form,
            detail: e.to_string(),
        },
        SignError::BadSignature(_) => Problem::WrongKey {
            digest,
            form,
            detail: e.to_string(),
        },
        SignError::Absent(_) => match attestation {
            Some(what) => Problem::AttestationMissing { digest, what, form },
            None => Problem::Unsigned { digest, form },
        },
        other => Problem::Invalid {
            digest,
            form,
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockfile_names_are_file_names() {
        assert!(valid_lockfile_name("debian13.lock.toml"));
        for bad in [
            "../x.lock.toml",
            ".lock.toml",
            "a/b.lock.toml",
            "debian13.toml",
            "..lock.toml",
        ] {
            assert!(!valid_lockfile_name(bad), "{bad}");
        }
    }

    #[test]
    fn problems_are_one_line_and_say_what_failed() {
        let d = "sha256:ab".to_owned();
        let lines = [
            classify(SignError::BadSignature("x"), &d, Form::Legacy, None),
            classify(
                SignError::WrongSubject {
                    what: "the signed payload",
                    expected: d.clone(),
                    found: "sha256:cd".into(),
                },
                &d,
                Form::Bundle,
                None,
            ),
            classify(
                SignError::Absent(String::new()),
                &d,
                Form::Legacy,
                Some("SLSA provenance"),
            ),
            classify(SignError::Absent(String::new()), &d, Form::Bundle, None),
        ]
        .map(|p| p.to_string());
        assert!(lines[0].starts_with("wrong key: "), "{}", lines[0]);
        assert!(
            lines[1].starts_with("payload digest mismatch: "),
            "{}",
            lines[1]
        );
        assert!(
            lines[1].contains("names sha256:cd, not sha256:ab"),
            "{}",
            lines[1]
        );
        assert_eq!(
            lines[2],
            "attestation missing: sha256:ab has no cosign .sig/.att SLSA provenance"
        );
        assert_eq!(
            lines[3],
            "unsigned: sha256:ab has no sigstore bundle signature"
        );
        assert!(lines.iter().all(|l| !l.contains('\n')));
    }
}
