//! Signing on the command line: `publish --sign KEY` (the key, its
//! password from `PLINTH_SIGNING_PASSWORD` or the terminal, the provenance
//! inputs), `keygen`, and `verify --published`.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use plinth::Project;
use plinth::digests::RecordedDigests;
use plinth::provenance::{BuildInputs, Provenance};
use plinth::publish::Signer;
use plinth::published::{TagVerdict, VerifyOptions};
use plinth::registry::{Client, ClientOptions, Credentials, Target};
use plinth::sign::key::{PASSWORD_ENV, load_public_key, write_new_key_pair};
use plinth::sign::{KeyFile, Password, SigningKey};

/// The signing key of `publish --sign KEY`: a cosign key's password comes
/// from `PLINTH_SIGNING_PASSWORD`, else from a prompt when there is a
/// terminal. Neither is ever printed.
pub fn signing_key(path: &Path) -> Result<SigningKey> {
    let file = KeyFile::read(path)?;
    let password = match std::env::var(PASSWORD_ENV) {
        Ok(p) => Some(Password::from(p)),
        Err(_) if file.is_encrypted() && std::io::stdin().is_terminal() => {
            let prompt = format!("password for {}: ", path.display());
            Some(Password::from(
                rpassword::prompt_password(prompt).context("reading the password")?,
            ))
        }
        Err(_) => None,
    };
    let key = file.signing_key(password.as_ref());
    if key.is_err() && password.is_none() && file.is_encrypted() {
        anyhow::bail!(
            "{}: the key is encrypted; set {PASSWORD_ENV} (there is no terminal to ask on)",
            path.display()
        );
    }
    Ok(key?)
}

/// The signer of a publish: the key, and the provenance of this project's
/// images (lockfiles, git state, toolchain of the application images).
pub fn signer<'a>(
    project: &'a Project,
    apps: &'a [plinth::apps::AppImage],
    key: SigningKey,
) -> Result<Signer<'a>> {
    let cargo = crate::cargo();
    let inputs = BuildInputs::gather(project, apps, &cargo, crate::source_date_epoch()?)?;
    if inputs.source.as_ref().is_some_and(|s| !s.clean) {
        tracing::warn!("the work tree has uncommitted changes; the provenance says so");
    }
    Ok(Signer {
        key,
        provenance: Provenance::new(project, apps, inputs)?,
    })
}

#[derive(Args)]
pub struct KeygenArgs {
    /// Where to write the private key (PKCS#8 PEM, mode 0600; never overwritten).
    #[arg(long, value_name = "PATH", default_value = "plinth.key")]
    private: PathBuf,
    /// Where to write the public key (PEM), which consumers verify with.
    #[arg(long, value_name = "PATH", default_value = "plinth.pub")]
    public: PathBuf,
}

pub fn keygen(args: KeygenArgs) -> Result<()> {
    let public = write_new_key_pair(&args.private, &args.public)?;
    println!(
        "wrote {} (private, mode 0600) and {} (public, hint {})",
        args.private.display(),
        args.public.display(),
        public.hint()
    );
    Ok(())
}

#[derive(Args)]
pub struct PublishedArgs {
    /// The registry to check: HOST[:PORT]/PREFIX, as it was published to.
    #[arg(long = "published", value_name = "HOST[:PORT]/PREFIX")]
    pub registry: Option<String>,
    /// The platform team's public key (PEM).
    #[arg(long, value_name = "PUBKEY", requires = "registry")]
    key: Option<PathBuf>,
    /// Plain HTTP, for a registry on a loopback address.
    #[arg(long, requires = "registry")]
    insecure: bool,
    /// Where digests.toml and the lockfiles the images were built from are
    /// (default: this repository's lockfiles/).
    #[arg(long, value_name = "DIR", requires = "registry")]
    lockfiles: Option<PathBuf>,
    /// A recorded tag (with its per-architecture tags); repeatable; all when absent.
    #[arg(long = "tag", value_name = "TAG", requires = "registry")]
    tags: Vec<String>,
    /// Image repositories (static-debian13) or images (static); all when empty.
    #[arg(requires = "registry")]
    images: Vec<String>,
}

/// `verify --published`: one line per tag; fails naming what failed.
pub fn verify_published(root: &Path, args: PublishedArgs) -> Result<()> {
    let registry = args.registry.unwrap_or_default();
    let key_path = args.key.ok_or_else(|| {
        plinth::Error::Usage("--published needs --key PUBKEY, the signer's public key".into())
    })?;
    let target =
        Target::parse(&registry, args.insecure).map_err(|e| plinth::Error::Usage(e.to_string()))?;
    let key = load_public_key(&key_path)?;
    let credentials = Credentials::from_environment(&target.host)?;
    let client = Client::new(target, credentials, ClientOptions::default());
    let lockfiles = args.lockfiles.unwrap_or_else(|| root.join("lockfiles"));
    let recorded = RecordedDigests::read(&RecordedDigests::path(&lockfiles))?;
    let options = VerifyOptions {
        images: args.images,
        tags: args.tags,
        lockfiles_dir: lockfiles,
    };
    let verdicts = plinth::published::verify(
        &client,
        &recorded,
        &key,
        &options,
        &crate::progress::Bars::new(),
    )?;
    for v in &verdicts {
        println!("{}", verdict_line(v));
    }
    let failed = verdicts.iter().filter(|v| !v.verified()).count();
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} tags failed verification against {}",
            verdicts.len(),
            key_path.display()
        );
    }
    println!(
        "verified: {} tags in {registry} are as recorded, signed and attested by {}",
        verdicts.len(),
        key_path.display()
    );
    Ok(())
}

fn verdict_line(v: &TagVerdict) -> String {
    match v.problems.as_slice() {
        [] => format!(
            "{}  {}  verified: {} manifests signed, SBOMs and provenance attested",
            v.reference, v.digest, v.subjects
        ),
        [first, rest @ ..] => {
            let more = if rest.is_empty() {
                String::new()
            } else {
                format!(" (and {} more problems)", rest.len())
            };
            format!("{}  {}  FAILED {first}{more}", v.reference, v.digest)
        }
    }
}
