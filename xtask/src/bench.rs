//! `cargo xtask bench`: timings from a warm cache, each printed beside a
//! floor measured in the same run, so the ratio means something on any
//! machine. Timings are reported, never asserted.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Subcommand;
use plinth::cache::Cache;
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
}

pub fn run(root: &Path, what: What, _offline: bool) -> Result<()> {
    match what {
        What::Lock { runs } => lock(root, runs.max(1)),
    }
}

fn lock(root: &Path, runs: usize) -> Result<()> {
    let project = Project::open(root)?;
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
        plinth::resolve::Universe::new("amd64", &[("bench", text.as_str())]).map(|_| ())
    })?;
    let stanzas = plinth::resolve::Universe::new("amd64", &[("bench", text.as_str())])?.len();
    // Floor for parsing: one pass over the bytes looking for line ends.
    let scan = median(runs, || {
        Ok::<_, std::convert::Infallible>(std::hint::black_box(
            memchr_count(text.as_bytes()),
        ))
        .map(|_| ())
    })?;
    let _ = project;
    println!(
        "re-lock (offline, {} distributions, {} architectures): median {:.3} s over {runs} runs",
        scratch_project.definitions.distributions().count(),
        scratch_project.definitions.settings.architectures.len(),
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
