//! `cargo xtask`: the command line of plinth. Parses arguments, draws
//! progress, reports errors; every decision is made in the library.

mod bench;
mod progress;
mod publish;
mod signing;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use plinth::Project;
use plinth::changes::ChangeReport;
use plinth::download::cache::Cache;
use plinth::download::http::Fetcher;
use plinth::download::mirrors::Mirrors;
use plinth::download::pool::Pool;
use plinth::lock::LockOptions;
use plinth::net::Network;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build and maintain golden distroless base images"
)]
struct Cli {
    /// More logging (-v: what is happening, -vv: every request).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Use only the download cache; never reach the network.
    #[arg(long, global = true)]
    offline: bool,
    /// Worker threads (default: the number of CPUs). Outputs never depend on it.
    #[arg(long, global = true, value_name = "N")]
    jobs: Option<usize>,
    /// The repository to work in (its images/, keys/, lockfiles/); default:
    /// this workspace.
    #[arg(long, global = true, value_name = "DIR")]
    project: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Resolve the images' packages against the signed archive and write lockfiles/.
    Lock {
        /// Without the network: fail if the lockfiles do not match images/.
        #[arg(long, conflicts_with_all = ["check_upstream", "report"])]
        check: bool,
        /// Accept a Release older than the one the lockfile records (going
        /// back to an older snapshot on purpose); without it such a Release
        /// is refused as a replay.
        #[arg(long, conflicts_with = "check")]
        allow_downgrade: bool,
        /// Re-resolve against the archive and write no lockfile: exit 0 when
        /// the lockfiles are current, 1 (with what changed) when the archive
        /// has moved.
        #[arg(long)]
        check_upstream: bool,
        /// Write the change report to FILE.md and FILE.json (a .md or .json
        /// extension on FILE is replaced).
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
    },
    /// Build every image (or the named ones and what they stand on) from the lockfiles.
    Images {
        /// Image names from images/ (static, base, ...); all when empty.
        names: Vec<String>,
        /// Output directory for the OCI layouts (default target/images). Builds
        /// elsewhere do not rewrite lockfiles/digests.toml.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Build every layer anew instead of reusing target/plinth-layers.
        #[arg(long)]
        no_layer_cache: bool,
        /// Leave an architecture the application images declare out of this
        /// run (a machine without its Rust target or cross linker);
        /// repeatable. Such a build records no digests.
        #[arg(long, value_name = "ARCH")]
        skip_app_arch: Vec<String>,
    },
    /// Rebuild everything from scratch in a fresh directory and compare with
    /// lockfiles/digests.toml; with --published, check a registry instead:
    /// digests as recorded, signed and attested by --key.
    Verify {
        /// Layouts to explain differences against, file by file (default: target/images if present).
        #[arg(long, value_name = "DIR", conflicts_with = "registry")]
        against: Option<PathBuf>,
        #[command(flatten)]
        published: signing::PublishedArgs,
    },
    /// Create a signing key pair for `publish --sign`.
    Keygen(signing::KeygenArgs),
    /// Push the built images, their tags and SBOMs to an OCI registry, exactly as built.
    Publish(publish::PublishArgs),
    /// Which tags differ between two sets of images, and per architecture
    /// how: digests, sizes, packages and files.
    Diff {
        /// The older images: a layout directory, a directory of layouts
        /// (target/images) or a registry reference HOST[:PORT]/PATH[:TAG].
        old: String,
        /// The newer images, likewise.
        new: String,
        /// Add the differences to the change report FILE.md / FILE.json
        /// (made by `lock --report`), or start one.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Plain HTTP, for a registry on a loopback address.
        #[arg(long)]
        insecure: bool,
    },
    /// Benchmarks from a warm cache, each beside a floor measured in the same run.
    Bench {
        #[command(subcommand)]
        what: bench::What,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    if let Err(err) = run(cli) {
        eprintln!("error: {}", one_line(&err));
        // A request that cannot mean anything (an unknown image) is a usage error.
        let usage = matches!(err.downcast_ref(), Some(plinth::Error::Usage(_)));
        return ExitCode::from(if usage { 2 } else { 1 });
    }
    ExitCode::SUCCESS
}

fn run(cli: Cli) -> Result<()> {
    if let Some(jobs) = cli.jobs {
        rayon::ThreadPoolBuilder::new()
            .num_threads(jobs.max(1))
            .build_global()
            .context("setting up worker threads")?;
    }
    let root = match &cli.project {
        Some(dir) => {
            std::path::absolute(dir).with_context(|| format!("--project {}", dir.display()))?
        }
        None => project_root(),
    };
    match cli.command {
        Command::Lock { check: true, .. } => {
            let project = Project::open(&root)?;
            project.lockfiles()?;
            println!("lockfiles match the image definitions");
        }
        Command::Lock {
            check: false,
            allow_downgrade,
            check_upstream,
            report,
        } => lock(
            &root,
            cli.offline,
            allow_downgrade,
            check_upstream,
            report.as_deref(),
        )?,
        Command::Images {
            names,
            out,
            no_layer_cache,
            skip_app_arch,
        } => {
            let project = Project::open(&root)?;
            let cache = Cache::from_env()?;
            let record = out.is_none() && skip_app_arch.is_empty();
            let mut options = build_options(&root, &project, names, out, cli.offline)?;
            if no_layer_cache {
                options.layer_cache = None;
            }
            options.skip_app_architectures = skip_app_arch;
            let tags = plinth::build::build(&project, &cache, &options, &progress::Bars::new())?;
            print_summary(&tags);
            if !options.skip_app_architectures.is_empty() {
                println!(
                    "digests not recorded: application images left out {}",
                    options.skip_app_architectures.join(", ")
                );
            }
            if !record {
                return Ok(());
            }
            let path = plinth::digests::RecordedDigests::path(&project.lockfiles_dir());
            let mut recorded = plinth::digests::RecordedDigests::read(&path)?;
            recorded.merge(&tags);
            if recorded.write(&path)? {
                println!(
                    "recorded digests changed: {}",
                    path.strip_prefix(&root).unwrap_or(&path).display()
                );
            }
        }
        Command::Verify { published, .. } if published.registry.is_some() => {
            signing::verify_published(&root, published)?;
        }
        Command::Keygen(args) => signing::keygen(args)?,
        Command::Verify { against, .. } => {
            let project = Project::open(&root)?;
            let cache = Cache::from_env()?;
            let scratch = tempfile::tempdir().context("creating a scratch directory")?;
            let mut options = build_options(
                &root,
                &project,
                Vec::new(),
                Some(scratch.path().join("images")),
                cli.offline,
            )?;
            // Application binaries are compiled afresh too.
            options.app_target_dir = scratch.path().join("apps");
            let reference = against.unwrap_or_else(|| plinth::default_out_dir(&root));
            let report = plinth::verify::verify(
                &project,
                &cache,
                &options,
                Some(&reference),
                &progress::Bars::new(),
            )?;
            for line in &report.differences {
                eprintln!("{line}");
            }
            if !report.explanations.is_empty() {
                eprintln!("against the layouts in {}:", reference.display());
                for line in &report.explanations {
                    eprintln!("{line}");
                }
            }
            if !report.differences.is_empty() {
                anyhow::bail!(
                    "{} differences between the rebuild and the recorded digests",
                    report.differences.len()
                );
            }
            println!(
                "verified: {} tags rebuilt from scratch match lockfiles/digests.toml",
                report.tags
            );
        }
        Command::Diff {
            old,
            new,
            report,
            insecure,
        } => {
            let old = plinth::diff::source::Side::parse(&old, insecure)?;
            let new = plinth::diff::source::Side::parse(&new, insecure)?;
            let diff = plinth::diff::diff(&old, &new, &progress::Bars::new())?;
            print!("{diff}");
            if let Some(path) = report {
                let mut changes = ChangeReport::read(&path)?.unwrap_or_default();
                changes.images = Some(diff);
                let (md, json) = changes.write(&path)?;
                println!("wrote {} and {}", md.display(), json.display());
            }
        }
        Command::Bench { what } => bench::run(&root, what)?,
        Command::Publish(args) => publish::run(&root, args)?,
    }
    Ok(())
}

/// `cargo xtask lock`: re-resolve, say what changed, write the report if
/// asked; then write the lockfiles, or with `check_upstream` fail if any
/// is behind the archive.
fn lock(
    root: &std::path::Path,
    offline: bool,
    allow_downgrade: bool,
    check_upstream: bool,
    report: Option<&std::path::Path>,
) -> Result<()> {
    let project = Project::open(root)?;
    let cache = Cache::from_env()?;
    let options = LockOptions {
        offline,
        allow_downgrade,
        ..LockOptions::default()
    };
    let relock = plinth::lock::relock(&project, &cache, &options, &progress::Bars::new())?;
    for w in &relock.warnings {
        eprintln!("warning: {w}");
    }
    for diff in relock.diffs() {
        print!("{diff}");
    }
    if let Some(path) = report {
        let apps = plinth::apps::discover(root, &cargo(), &project.definitions)?;
        let fetcher = match offline {
            true => None,
            false => Some(Fetcher::new(
                &Network::for_project(&options.network, &project)?,
                options.fetch.clone(),
            )),
        };
        let pool = Pool::new(
            &cache,
            Mirrors::resolve(&project.definitions.settings, &options.apt_dir)?,
            fetcher,
        );
        let changes = ChangeReport::new(
            &project,
            &relock.distributions,
            &apps,
            &pool,
            &progress::Bars::new(),
        );
        let (md, json) = changes.write(path)?;
        println!("wrote {} and {}", md.display(), json.display());
    }
    if check_upstream {
        let behind: Vec<&str> = relock
            .distributions
            .iter()
            .filter(|d| !d.is_current())
            .map(|d| d.distribution.as_str())
            .collect();
        anyhow::ensure!(
            behind.is_empty(),
            "the archive has moved since the lockfiles of {} were made; `cargo xtask lock` updates them",
            behind.join(", ")
        );
        println!("lockfiles are current with the archive");
        return Ok(());
    }
    for path in relock.write()? {
        println!(
            "wrote {}",
            path.strip_prefix(root).unwrap_or(&path).display()
        );
    }
    Ok(())
}

fn build_options(
    root: &std::path::Path,
    project: &Project,
    images: Vec<String>,
    out: Option<PathBuf>,
    offline: bool,
) -> Result<plinth::build::BuildOptions> {
    let cargo = cargo();
    let apps = plinth::apps::discover(root, &cargo, &project.definitions)?;
    let source_date_epoch = source_date_epoch()?;
    Ok(plinth::build::BuildOptions {
        out_dir: out.unwrap_or_else(|| plinth::default_out_dir(root)),
        layer_cache: Some(root.join("target/plinth-layers")),
        offline,
        images,
        source_date_epoch,
        fetch: Default::default(),
        network: plinth::net::Environment::from_process(),
        apt_dir: PathBuf::from("/etc/apt"),
        apps,
        app_target_dir: root.join("target/plinth-apps"),
        cargo,
        skip_app_architectures: Vec::new(),
    })
}

/// The cargo that runs this xtask; it builds the applications too.
fn cargo() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

/// `SOURCE_DATE_EPOCH`, if set.
fn source_date_epoch() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => {
            Ok(Some(v.parse().with_context(|| {
                format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds")
            })?))
        }
        _ => Ok(None),
    }
}

fn print_summary(tags: &[plinth::digests::TagSummary]) {
    println!(
        "{:<22} {:<14} {:<20} {:>16} {:>7}",
        "IMAGE", "TAG", "INDEX DIGEST", "MB (PER ARCH)", "LAYERS"
    );
    for t in tags {
        let size = t.platform.iter().map(|p| p.size).max().unwrap_or(0);
        let layers = t.platform.iter().map(|p| p.layers.len()).max().unwrap_or(0);
        println!(
            "{:<22} {:<14} {:<20} {:>16.1} {:>7}",
            t.repository,
            t.tag,
            &t.index[..t.index.len().min(19)],
            size as f64 / 1e6,
            layers
        );
    }
}

/// The workspace root: xtask lives one level below it.
fn project_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,plinth={level},xtask={level}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
}

/// Errors are reported on one line: the causes joined by `: `.
fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}").replace('\n', " ")
}
