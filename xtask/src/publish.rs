//! `cargo xtask publish`: pushes the built layouts to a registry and
//! prints, per tag, the digest and what was uploaded.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use plinth::digests::RecordedDigests;
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
}

pub fn run(root: &Path, args: PublishArgs) -> Result<()> {
    let target = Target::parse(&args.registry, args.insecure)
        .map_err(|e| plinth::Error::Usage(e.to_string()))?;
    let credentials = Credentials::from_environment(&target.host)?;
    let client = Client::new(target, credentials, ClientOptions::default());
    let recorded = RecordedDigests::read(&RecordedDigests::path(&root.join("lockfiles")))?;
    let options = PublishOptions {
        out_dir: args
            .out
            .unwrap_or_else(|| plinth::build::default_out_dir(root)),
        images: args.images,
        tags: args.tags,
        dry_run: args.dry_run,
    };
    let report =
        plinth::publish::publish(&client, &recorded, &options, &crate::progress::Bars::new())?;
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
