//! Where the images of a diff come from: a directory of layouts (what
//! `cargo xtask images` writes), one layout, or a registry repository or
//! prefix. Every manifest and blob is checked against its digest as it is
//! read, so a layout changed in place or a registry serving other bytes
//! shows up as an error, not as a difference.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::oci::{self, ANNOTATION_REF_NAME, Descriptor, MEDIA_TYPE_IMAGE_INDEX};
use crate::registry::{Client, ClientOptions, Credentials, Target, manifest_media_type};
use crate::support::digest::sha256_digest;

/// One side of a diff, as the user named it.
pub enum Side {
    /// A directory holding one layout per image repository
    /// (`target/images`).
    Layouts(PathBuf),
    /// One image repository's layout (`target/images/base-debian13`).
    Layout(PathBuf),
    /// A registry: `client`'s target prefix is the repository itself
    /// (compared with one layout) or the prefix of every repository
    /// (compared with a directory of layouts); `tag` limits it to one tag.
    Registry {
        client: Box<Client>,
        tag: Option<String>,
    },
}

impl Side {
    /// What the user wrote: an existing directory (a layout, or a
    /// directory of layouts), else a registry reference
    /// `HOST[:PORT]/PATH[:TAG]`, read with the credentials `publish` would
    /// use; `insecure` allows plain HTTP to a loopback registry.
    pub fn parse(text: &str, insecure: bool) -> Result<Self> {
        let path = Path::new(text);
        if path.exists() {
            return Self::local(path);
        }
        let Some((host, path)) = text.split_once('/') else {
            return Err(Error::Usage(format!(
                "{text:?} is neither a directory nor a registry reference HOST[:PORT]/PATH[:TAG]"
            )));
        };
        let (path, tag) = match path.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') => (p, Some(t.to_owned())),
            _ => (path, None),
        };
        if let Some(t) = &tag {
            let valid = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !valid {
                return Err(Error::Usage(format!("{t:?} in {text:?} is not a tag")));
            }
        }
        let target = Target::parse(&format!("{host}/{path}"), insecure)
            .map_err(|e| Error::Usage(e.to_string()))?;
        if target.prefix.is_empty() {
            return Err(Error::Usage(format!(
                "{text:?} names no repository (expected HOST[:PORT]/PATH[:TAG])"
            )));
        }
        let credentials = Credentials::from_environment(&target.host)?;
        Ok(Side::Registry {
            client: Box::new(Client::new(target, credentials, ClientOptions::default())),
            tag,
        })
    }

    /// A local path: a layout when it holds `index.json`, otherwise a
    /// directory of layouts.
    pub fn local(path: &Path) -> Result<Self> {
        if !path.is_dir() {
            return Err(Error::Usage(format!(
                "{}: not a directory (expected an OCI layout or a directory of layouts)",
                path.display()
            )));
        }
        Ok(if path.join("index.json").is_file() {
            Side::Layout(path.to_owned())
        } else {
            Side::Layouts(path.to_owned())
        })
    }

    pub fn is_registry(&self) -> bool {
        matches!(self, Side::Registry { .. })
    }

    /// What to call this side in messages.
    pub fn describe(&self) -> String {
        match self {
            Side::Layouts(p) | Side::Layout(p) => p.display().to_string(),
            Side::Registry { client, tag } => match tag {
                Some(t) => format!("{}:{t}", client.target()),
                None => client.target().to_string(),
            },
        }
    }

    /// The repositories this side holds, by name; a registry knows only
    /// what it is asked for.
    pub fn repositories(&self) -> Result<Vec<String>> {
        match self {
            Side::Layouts(dir) => {
                let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
                    path: dir.clone(),
                    source,
                })?;
                let mut names: Vec<String> = entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().join("index.json").is_file())
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .collect();
                names.sort();
                Ok(names)
            }
            Side::Layout(dir) => Ok(vec![repository_name(dir)]),
            Side::Registry { .. } => Ok(Vec::new()),
        }
    }

    /// A reader of repository `name` of this side. With `single`, the two
    /// sides are one repository each and a registry's prefix names it.
    pub fn repository(&self, name: &str, single: bool) -> Repository<'_> {
        match self {
            Side::Layouts(dir) => Repository::Layout(dir.join(name)),
            Side::Layout(dir) => Repository::Layout(dir.clone()),
            Side::Registry { client, .. } => {
                let target = client.target();
                let repository = if single {
                    target.prefix.clone()
                } else {
                    target.repository(name)
                };
                Repository::Registry { client, repository }
            }
        }
    }

    /// The one tag this side was limited to, if any.
    pub fn tag(&self) -> Option<&str> {
        match self {
            Side::Registry { tag, .. } => tag.as_deref(),
            _ => None,
        }
    }
}

/// The last path component of a layout directory: its repository name.
pub fn repository_name(dir: &Path) -> String {
    dir.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned()
}

/// One image repository to read tags, manifests and blobs from.
pub enum Repository<'a> {
    Layout(PathBuf),
    Registry {
        client: &'a Client,
        repository: String,
    },
}

/// A tag resolved: the digest it points at and the document's bytes.
pub struct Resolved {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl Repository<'_> {
    /// The multi-arch tags of a layout (per-architecture tags such as
    /// `latest-amd64` stand for a platform of `latest` and are left out
    /// when that tag exists); a registry lists nothing.
    pub fn tags(&self) -> Result<Vec<String>> {
        let Repository::Layout(dir) = self else {
            return Ok(Vec::new());
        };
        if !dir.join("index.json").is_file() {
            return Ok(Vec::new());
        }
        let index = oci::read_layout(dir).map_err(|e| Error::Output(e.to_string()))?;
        let named: Vec<(&str, &Descriptor)> = index
            .manifests
            .iter()
            .filter_map(|d| {
                d.annotations
                    .get(ANNOTATION_REF_NAME)
                    .map(|n| (n.as_str(), d))
            })
            .collect();
        let indexes: Vec<&str> = named
            .iter()
            .filter(|(_, d)| d.media_type == MEDIA_TYPE_IMAGE_INDEX)
            .map(|(n, _)| *n)
            .collect();
        let mut tags: Vec<String> = named
            .iter()
            .filter(|(n, d)| {
                d.media_type == MEDIA_TYPE_IMAGE_INDEX
                    || !indexes
                        .iter()
                        .any(|i| n.strip_prefix(i).is_some_and(|r| r.starts_with('-')))
            })
            .map(|(n, _)| n.to_string())
            .collect();
        tags.sort();
        tags.dedup();
        Ok(tags)
    }

    /// What `tag` points at, or `None` where it does not exist.
    pub fn resolve(&self, tag: &str) -> Result<Option<Resolved>> {
        match self {
            Repository::Layout(dir) => {
                if !dir.join("index.json").is_file() {
                    return Ok(None);
                }
                let index = oci::read_layout(dir).map_err(|e| Error::Output(e.to_string()))?;
                let Some(desc) = index.find_ref(tag) else {
                    return Ok(None);
                };
                let bytes =
                    oci::read_described(dir, desc).map_err(|e| Error::Output(e.to_string()))?;
                Ok(Some(Resolved {
                    digest: desc.digest.clone(),
                    media_type: desc.media_type.clone(),
                    bytes,
                }))
            }
            Repository::Registry { client, repository } => Ok(client
                .get_manifest(repository, tag)?
                .map(|(media_type, bytes)| Resolved {
                    digest: sha256_digest(&bytes),
                    media_type: if media_type.is_empty() {
                        manifest_media_type(&bytes)
                    } else {
                        media_type
                    },
                    bytes,
                })),
        }
    }

    /// The blob (or manifest, for a registry) `desc` names, checked.
    pub fn read(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        match self {
            Repository::Layout(dir) => {
                oci::read_described(dir, desc).map_err(|e| Error::Output(e.to_string()))
            }
            Repository::Registry { client, repository } => {
                let bytes = if is_manifest(&desc.media_type) {
                    let (_, bytes) =
                        client
                            .get_manifest(repository, &desc.digest)?
                            .ok_or_else(|| {
                                Error::Output(format!(
                                    "{}: manifest {} is missing",
                                    client.place(repository),
                                    desc.digest
                                ))
                            })?;
                    bytes
                } else {
                    let bytes = client.get_blob(repository, &desc.digest)?.ok_or_else(|| {
                        Error::Output(format!(
                            "{}: blob {} is missing",
                            client.place(repository),
                            desc.digest
                        ))
                    })?;
                    if bytes.len() as u64 != desc.size {
                        return Err(Error::Output(format!(
                            "{}: blob {} has {} bytes, the descriptor says {}",
                            client.place(repository),
                            desc.digest,
                            bytes.len(),
                            desc.size
                        )));
                    }
                    bytes
                };
                let actual = sha256_digest(&bytes);
                if actual != desc.digest {
                    return Err(Error::Output(format!(
                        "{}: {} has digest {actual}",
                        client.place(repository),
                        desc.digest
                    )));
                }
                Ok(bytes)
            }
        }
    }
}

fn is_manifest(media_type: &str) -> bool {
    media_type.contains("manifest") || media_type == MEDIA_TYPE_IMAGE_INDEX
}
