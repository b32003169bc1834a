//! `cargo xtask publish`: pushes the built layouts to a registry and
//! prints, per tag, the digest and what was uploaded.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use plinth::Project;
use plinth::digests::RecordedDigests;
use plinth::net::{Environment, Network};
use plinth::publish::{PublishOptions, PublishReport};
use plinth::registry::{Client, ClientOptions, Credentials, Target};

#[derive(Args)]
pub struct PublishArgs {
    /// Where to push: HOST[:PORT]/PREFIX (e.g. 127.0.0.1:5000/golden).
    #[arg(long, value_name = "HOST[:PORT]/PREFIX")]
    registry: String,
    /// Plain HTTP, for a registry on a loopback address.
    #[arg(long)]
    insecure: bool,
    /// Say what would be uploaded, and how many bytes; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Image repositories (static-debian13) or images (static); all when empty.
    images: Vec<String>,
    /// A tag to publish (with its per-architecture tags); repeatable; all when absent.
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Where the OCI layouts are (default target/images).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Sign every pushed index and manifest with this key (ECDSA P-256 PEM,
    /// or cosign's encrypted key with PLINTH_SIGNING_PASSWORD), and attest
    /// its SBOMs and SLSA provenance.
    #[arg(long, value_name = "KEY")]
    sign: Option<PathBuf>,
}

pub fn run(root: &Path, args: PublishArgs) -> Result<()> {
    let target = Target::parse(&args.registry, args.insecure)
        .map_err(|e| plinth::Error::Usage(e.to_string()))?;
    let credentials = Credentials::from_environment(&target.host)?;
    // The machine's trust and proxies, and the CA files images/plinth.toml
    // names for this registry.
    let network = Network::for_project(&Environment::from_process(), &Project::open(root)?)?;
    let transport = network.registry(&target.host).clone();
    let client = Client::with_transport(target, credentials, ClientOptions::default(), &transport);
    let recorded = RecordedDigests::read(&RecordedDigests::path(&root.join("lockfiles")))?;
    let options = PublishOptions {
        out_dir: args.out.unwrap_or_else(|| plinth::default_out_dir(root)),
        images: args.images,
        tags: args.tags,
        dry_run: args.dry_run,
    };
    // The key first: a refused key or password fails before any work.
    let key = args
        .sign
        .as_deref()
        .map(crate::signing::signing_key)
        .transpose()?;
    let project;
    let apps;
    let signer = match key {
        Some(key) => {
            project = plinth::Project::open(root)?;
            apps = plinth::apps::discover(root, &crate::cargo(), &project.definitions)?;
            Some(crate::signing::signer(&project, &apps, key)?)
        }
        None => None,
    };
    let report = plinth::publish::publish(
        &client,
        &recorded,
        &options,
        signer.as_ref(),
        &crate::progress::Bars::new(),
    )?;
    print_report(&report);
    Ok(())
}

fn print_report(report: &PublishReport) {
    for t in &report.tags {
        let what = if t.unchanged() {
            "unchanged".to_owned()
        } else {
            let verb = if report.dry_run {
                "would upload"
            } else {
                "uploaded"
            };
            format!(
                "{verb} {} blobs ({}), mounted {}, {} manifests, {} tags",
                t.blobs_uploaded,
                megabytes(t.bytes_uploaded),
                t.blobs_mounted,
                t.manifests_pushed,
                t.tags_pushed
            )
        };
        println!("{}:{}  {}  {what}", t.repository, t.tag, t.digest);
    }
    let verb = if report.dry_run {
        "would upload"
    } else {
        "uploaded"
    };
    let referrers = match report.referrers_api {
        Some(true) => "; SBOMs through the referrers API",
        Some(false) => "; SBOMs through the referrers tag schema",
        None => "",
    };
    println!(
        "{}: {} tags, {verb} {} blobs ({}), mounted {}, {} manifests, {} tags{referrers}",
        report.registry,
        report.tags.len(),
        report.blobs_uploaded(),
        megabytes(report.bytes_uploaded()),
        report.blobs_mounted(),
        report.manifests_pushed(),
        report.tags_pushed()
    );
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// `cargo xtask bench publish`: the full set into a fresh loopback
/// registry, then again with nothing to do; the floor is `skopeo copy
/// --all` of every multi-arch tag into another fresh registry (which
/// pushes the same images, without SBOMs or per-arch tags).
pub fn bench(root: &Path) -> Result<()> {
    let recorded = RecordedDigests::read(&RecordedDigests::path(&root.join("lockfiles")))?;
    let out_dir = plinth::default_out_dir(root);
    let options = PublishOptions {
        out_dir: out_dir.clone(),
        images: Vec::new(),
        tags: Vec::new(),
        dry_run: false,
    };
    let registry = plinth_testkit::registry::Registry::start(None)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("bench publish needs Debian's docker-registry")?;
    let target = Target::parse(&format!("{}/golden", registry.host()), true)?;
    let client = Client::new(target, None, ClientOptions::default());
    let start = Instant::now();
    let cold = plinth::publish::publish(&client, &recorded, &options, None, &plinth::Silent)
        .context("publish (run `cargo xtask images` first)")?;
    let cold_time = start.elapsed();
    let start = Instant::now();
    let again = plinth::publish::publish(&client, &recorded, &options, None, &plinth::Silent)?;
    let again_time = start.elapsed();
    drop(registry);

    let floor =
        plinth_testkit::registry::Registry::start(None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let start = Instant::now();
    for t in &recorded.image {
        let status = Command::new("skopeo")
            .args(["copy", "--all", "--quiet", "--dest-tls-verify=false"])
            .arg(format!(
                "oci:{}:{}",
                out_dir.join(&t.repository).display(),
                t.tag
            ))
            .arg(format!(
                "docker://{}/golden/{}:{}",
                floor.host(),
                t.repository,
                t.tag
            ))
            .status()
            .context("running skopeo (Debian package skopeo)")?;
        anyhow::ensure!(
            status.success(),
            "skopeo copy of {}:{} failed",
            t.repository,
            t.tag
        );
    }
    let skopeo_time = start.elapsed();
    let repositories = recorded
        .image
        .iter()
        .map(|t| t.repository.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    println!(
        "cold publish ({repositories} repositories, {} tags, {} blobs {}, {} mounted, {} manifests): {:.2} s",
        cold.tags.len(),
        cold.blobs_uploaded(),
        megabytes(cold.bytes_uploaded()),
        cold.blobs_mounted(),
        cold.manifests_pushed(),
        cold_time.as_secs_f64()
    );
    println!(
        "floor: skopeo copy --all of the {} multi-arch tags: {:.2} s; ratio plinth cold / skopeo {:.2}",
        recorded.image.len(),
        skopeo_time.as_secs_f64(),
        cold_time.as_secs_f64() / skopeo_time.as_secs_f64()
    );
    println!(
        "re-publish, nothing to do ({} blobs uploaded): {:.3} s ({:.3} s per repository)",
        again.blobs_uploaded(),
        again_time.as_secs_f64(),
        again_time.as_secs_f64() / repositories.max(1) as f64
    );
    Ok(())
}
