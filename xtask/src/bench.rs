//! `cargo xtask bench`: timings from a warm cache, each printed beside a
//! floor measured in the same run, so the ratio means something on any
//! machine. Timings are reported, never asserted.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Subcommand;
use plinth::download::cache::Cache;
use plinth::lock::LockOptions;
use plinth::{Project, Silent};

#[derive(Subcommand)]
pub enum What {
    /// Re-lock every distribution from the warm cache (offline), and parse
    /// the largest cached Packages index.
    Lock {
        /// Timed runs; the median is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Build the whole image set from the warm download cache, against
    /// the decompress + compress floor, then rebuild with nothing changed.
    Images,
    /// Publish target/images to a loopback docker-registry, cold and then
    /// with nothing to do, against `skopeo copy --all` of every tag.
    Publish,
}

pub fn run(root: &Path, what: What) -> Result<()> {
    match what {
        What::Lock { runs } => lock(root, runs.max(1)),
        What::Images => images(root),
        What::Publish => crate::publish::bench(root),
    }
}

/// The whole image set from the warm download cache, against a floor
/// measured on the same inputs in the same run: decompressing every
/// distinct `data.tar` once plus gzip-compressing every distinct output
/// layer once, with the build's compressor and level.
fn images(root: &Path) -> Result<()> {
    let project = Project::open(root)?;
    let cache = Cache::from_env()?;
    let out = tempfile::tempdir()?;
    let layer_cache = tempfile::tempdir()?;
    let mut options = crate::build_options(
        root,
        &project,
        Vec::new(),
        Some(out.path().to_owned()),
        true,
    )?;
    options.layer_cache = None;
    // The golden set only: compiling applications has no floor here.
    options.apps.clear();
    let start = Instant::now();
    let tags = plinth::build::build(&project, &cache, &options, &Silent)
        .context("build (run `cargo xtask images` once to fill the download cache)")?;
    let full = start.elapsed();
    let peak_mb = peak_rss_kb()? / 1024;

    let mut debs = std::collections::BTreeSet::new();
    for (dist, _) in project.definitions.distributions() {
        let lock = plinth::lockfile::Lockfile::read(&project.lockfile_path(dist))?;
        for pkgs in lock.package.values() {
            debs.extend(pkgs.iter().map(|p| p.sha256.clone()));
        }
    }
    let debs: Vec<Vec<u8>> = debs
        .iter()
        .map(|sum| {
            cache
                .get(sum)
                .with_context(|| format!("{sum} is not in the download cache"))
        })
        .collect::<Result<_>>()?;
    let start = Instant::now();
    let mut unpacked = 0;
    for deb in &debs {
        unpacked += plinth::debian::deb::data_tar_size(deb)?;
    }
    let decompress = start.elapsed();

    let mut layers = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(out.path())? {
        let blobs = entry?.path().join("blobs/sha256");
        if !blobs.is_dir() {
            continue; // the SBOM folder and SHA256SUMS
        }
        for blob in std::fs::read_dir(blobs)? {
            let bytes = std::fs::read(blob?.path())?;
            if bytes.starts_with(&[0x1f, 0x8b]) {
                layers.insert(bytes);
            }
        }
    }
    let tars: Vec<Vec<u8>> = layers
        .iter()
        .map(|gz| {
            let mut tar = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut tar)?;
            Ok(tar)
        })
        .collect::<Result<_>>()?;
    let start = Instant::now();
    for tar in &tars {
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::new(6));
        std::io::Write::write_all(&mut gz, tar)?;
        std::hint::black_box(gz.finish()?);
    }
    let compress = start.elapsed();
    let floor = decompress + compress;

    options.layer_cache = Some(layer_cache.path().to_owned());
    plinth::build::build(&project, &cache, &options, &Silent)?;
    let start = Instant::now();
    plinth::build::build(&project, &cache, &options, &Silent)?;
    let second = start.elapsed();

    println!(
        "full build ({} tags, {} distinct .deb, {} distinct layers): {:.2} s",
        tags.len(),
        debs.len(),
        tars.len(),
        full.as_secs_f64()
    );
    println!(
        "floor: decompress {:.0} MB of data.tar {:.2} s + gzip {:.0} MB of layers {:.2} s = {:.2} s (single thread)",
        unpacked as f64 / 1e6,
        decompress.as_secs_f64(),
        tars.iter().map(Vec::len).sum::<usize>() as f64 / 1e6,
        compress.as_secs_f64(),
        floor.as_secs_f64()
    );
    println!(
        "ratio full build / floor: {:.2}",
        full.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "second build, nothing changed: {:.3} s",
        second.as_secs_f64()
    );
    println!("peak memory of the full build: {peak_mb} MB");
    Ok(())
}

/// The process's peak resident set so far (`VmHWM`), in kB.
fn peak_rss_kb() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")
}

fn lock(root: &Path, runs: usize) -> Result<()> {
    let cache = Cache::from_env()?;
    let options = LockOptions {
        offline: true,
        ..LockOptions::default()
    };
    // A scratch copy of the project, so the benchmark never rewrites the
    // committed lockfiles.
    let scratch = tempfile::tempdir()?;
    copy_dir(&root.join("images"), &scratch.path().join("images"))?;
    copy_dir(&root.join("keys"), &scratch.path().join("keys"))?;
    let scratch_project = Project::open(scratch.path())?;
    plinth::lock::lock(&scratch_project, &cache, &options, &Silent)
        .context("warm-up lock (run `cargo xtask lock` once to fill the cache)")?;
    let relock = median(runs, || {
        plinth::lock::lock(&scratch_project, &cache, &options, &Silent).map(|_| ())
    })?;

    // The largest cached index stands for "a full Packages file".
    let index = largest_index(&cache)?;
    let text = std::fs::read_to_string(&index)?;
    let parse = median(runs, || {
        plinth::lock::resolve::Universe::new("amd64", &[("bench", text.as_str())]).map(|_| ())
    })?;
    let stanzas = plinth::lock::resolve::Universe::new("amd64", &[("bench", text.as_str())])?.len();
    // Floor for parsing: one pass over the bytes looking for line ends.
    let scan = median(runs, || {
        Ok::<_, std::convert::Infallible>(std::hint::black_box(memchr_count(text.as_bytes())))
            .map(|_| ())
    })?;
    println!(
        "re-lock (offline, {} distributions, {} architectures): median {:.3} s over {runs} runs",
        scratch_project.definitions.distributions().count(),
        scratch_project
            .definitions
            .distributions()
            .flat_map(|(d, _)| scratch_project.definitions.architectures(d))
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        relock.as_secs_f64()
    );
    println!(
        "parse Packages ({} MB, {stanzas} amd64/all stanzas): median {:.3} s; floor (count lines) {:.3} s; ratio {:.1}",
        text.len() / 1_000_000,
        parse.as_secs_f64(),
        scan.as_secs_f64(),
        parse.as_secs_f64() / scan.as_secs_f64().max(1e-9)
    );
    Ok(())
}

fn memchr_count(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

fn median<E>(runs: usize, mut f: impl FnMut() -> Result<(), E>) -> Result<Duration>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

fn largest_index(cache: &Cache) -> Result<std::path::PathBuf> {
    let mut best: Option<(u64, std::path::PathBuf)> = None;
    for shard in std::fs::read_dir(cache.root().join("sha256"))? {
        for f in std::fs::read_dir(shard?.path())? {
            let f = f?;
            let len = f.metadata()?.len();
            let mut head = [0u8; 9];
            let is_index = std::fs::File::open(f.path())
                .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut head))
                .is_ok()
                && &head == b"Package: ";
            if is_index && best.as_ref().is_none_or(|(l, _)| len > *l) {
                best = Some((len, f.path()));
            }
        }
    }
    best.map(|(_, p)| p)
        .context("no Packages index in the cache; run `cargo xtask lock` first")
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        std::fs::copy(e.path(), to.join(e.file_name()))?;
    }
    Ok(())
}
