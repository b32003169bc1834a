//! Building the workspace's binaries for application images, with Cargo,
//! so that the same sources give the same bytes on any machine: locked
//! dependencies, `SOURCE_DATE_EPOCH` from the lock, every host path
//! remapped, no incremental artefacts, and a target directory of its own
//! so that these flags never disturb the developer's builds.
//!
//! It owns the Cargo invocation and the choice of Rust target per Debian
//! architecture; it never looks inside the binaries it builds.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use xshell::{Shell, cmd};

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("building {package} for {target}: {why}")]
    Cargo {
        package: String,
        target: String,
        why: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A declared architecture this machine cannot build for.
    #[error(
        "{image}: cannot build for {arch}: {why}; or leave {arch} out of this run (cargo xtask images --skip-app-arch {arch}, which records no digests)"
    )]
    Unavailable {
        image: String,
        arch: String,
        why: String,
    },
}

/// The Rust target for a Debian architecture. Always the gnu target:
/// picking musl where it happens to be installed would make the image
/// bytes depend on the machine.
pub fn rust_target(arch: &str) -> Option<&'static str> {
    match arch {
        "amd64" => Some("x86_64-unknown-linux-gnu"),
        "arm64" => Some("aarch64-unknown-linux-gnu"),
        _ => None,
    }
}

/// The cross linker Cargo needs for a target that is not the host's, and
/// the Debian package that installs it.
fn cross_linker(target: &str) -> Option<(&'static str, &'static str)> {
    match target {
        "aarch64-unknown-linux-gnu" => Some(("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")),
        "x86_64-unknown-linux-gnu" => Some(("x86_64-linux-gnu-gcc", "gcc-x86-64-linux-gnu")),
        _ => None,
    }
}

/// How to build for one architecture on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    pub cargo: PathBuf,
    pub target: &'static str,
    /// `Some` when the target is not the host's.
    pub linker: Option<&'static str>,
}

/// Whether this machine can build for `arch`: the target's standard
/// library is installed and, off the host, a cross linker is on `PATH`.
/// `Err` says what is missing.
pub fn toolchain(cargo: &Path, arch: &str) -> Result<Toolchain, String> {
    let target = rust_target(arch).ok_or_else(|| format!("no Rust target for {arch}"))?;
    let rustc = rustc_beside(cargo);
    let host = std::process::Command::new(&rustc)
        .arg("-vV")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| {
            v.lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        })
        .ok_or_else(|| format!("cannot run {}", rustc.display()))?;
    let libdir = std::process::Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", target])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()))
        .unwrap_or_default();
    let has_std = std::fs::read_dir(&libdir).is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
    });
    if !has_std {
        return Err(format!(
            "the Rust target {target} is not installed (rustup target add {target})"
        ));
    }
    if host == target {
        return Ok(Toolchain {
            cargo: cargo.to_owned(),
            target,
            linker: None,
        });
    }
    let (linker, package) =
        cross_linker(target).ok_or_else(|| format!("no cross linker known for {target}"))?;
    if !on_path(linker) {
        return Err(format!(
            "the cross linker {linker} is not on PATH (apt-get install {package})"
        ));
    }
    Ok(Toolchain {
        cargo: cargo.to_owned(),
        target,
        linker: Some(linker),
    })
}

/// The toolchain's version line, `rustc 1.95.0 (59807616e 2026-04-14)`:
/// the first line of `rustc -vV` of the rustc beside `cargo`.
pub fn rustc_version(cargo: &Path) -> Result<String, String> {
    let rustc = rustc_beside(cargo);
    std::process::Command::new(&rustc)
        .arg("-vV")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.lines().next().map(|l| l.trim().to_owned()))
        .filter(|l| l.starts_with("rustc "))
        .ok_or_else(|| format!("cannot run {} -vV", rustc.display()))
}

fn rustc_beside(cargo: &Path) -> PathBuf {
    if let Some(rustc) = std::env::var_os("RUSTC") {
        return rustc.into();
    }
    match cargo.parent() {
        Some(dir) if dir.join("rustc").is_file() => dir.join("rustc"),
        _ => "rustc".into(),
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// What to build.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub package: &'a str,
    pub binaries: &'a [String],
    pub static_link: bool,
    pub epoch: u64,
    /// Only crates already downloaded (`--offline`).
    pub offline: bool,
}

/// Builds `request`'s binaries in release mode and returns their bytes,
/// in the order asked for. `root` is the workspace, `target_dir` the
/// directory these builds own.
pub fn build_binaries(
    root: &Path,
    toolchain: &Toolchain,
    target_dir: &Path,
    request: &Request<'_>,
) -> Result<Vec<Vec<u8>>, CompileError> {
    let err = |why: String| CompileError::Cargo {
        package: request.package.to_owned(),
        target: toolchain.target.to_owned(),
        why,
    };
    // Static and dynamic builds differ in flags; separate directories
    // keep each from invalidating the other.
    let dir = target_dir.join(if request.static_link {
        "static"
    } else {
        "dynamic"
    });
    std::fs::create_dir_all(&dir).map_err(|source| CompileError::Io {
        path: dir.clone(),
        source,
    })?;
    let sh = Shell::new().map_err(|e| err(e.to_string()))?;
    sh.change_dir(root);
    let cargo = &toolchain.cargo;
    let target = toolchain.target;
    let package = request.package;
    let bins: Vec<String> = request
        .binaries
        .iter()
        .flat_map(|b| ["--bin".to_owned(), b.clone()])
        .collect();
    let mut bin_args = bins.clone();
    if request.offline {
        bin_args.push("--offline".into());
    }
    let mut command = cmd!(
        sh,
        "{cargo} build --quiet --release --locked --target {target} --target-dir {dir} --package {package} {bin_args...}"
    )
    .quiet()
    .env("SOURCE_DATE_EPOCH", request.epoch.to_string())
    .env("CARGO_INCREMENTAL", "0")
    .env("CARGO_ENCODED_RUSTFLAGS", rustflags(root, &dir, request.static_link))
    .env_remove("RUSTFLAGS")
    .env_remove("CARGO_BUILD_RUSTFLAGS")
    .env_remove("CARGO_TARGET_DIR")
    .env_remove("CARGO_BUILD_TARGET_DIR");
    if let Some(linker) = toolchain.linker {
        let var = format!(
            "CARGO_TARGET_{}_LINKER",
            target.to_uppercase().replace('-', "_")
        );
        command = command.env(var, linker);
    }
    tracing::info!(
        "cargo build --release --locked --target {target} --package {package} {} ({} linking)",
        bins.join(" "),
        if request.static_link {
            "static"
        } else {
            "dynamic"
        }
    );
    command.run().map_err(|e| err(e.to_string()))?;
    request
        .binaries
        .iter()
        .map(|b| {
            let path = dir.join(target).join("release").join(b);
            std::fs::read(&path).map_err(|source| CompileError::Io { path, source })
        })
        .collect()
}

/// Flags that keep host paths out of the binary. A later remap wins, so
/// the target directory (inside the workspace by default) comes last.
fn rustflags(root: &Path, target_dir: &Path, static_link: bool) -> OsString {
    let mut flags: Vec<OsString> = Vec::new();
    let mut remap = |from: &Path, to: &str| {
        let mut f = OsString::from("--remap-path-prefix=");
        f.push(from.as_os_str());
        f.push("=");
        f.push(to);
        flags.push(f);
    };
    if let Some(home) = cargo_home() {
        remap(&home, "/cargo");
    }
    remap(root, "/workspace");
    remap(target_dir, "/target");
    if static_link {
        flags.push("-Ctarget-feature=+crt-static".into());
    }
    flags.join(&OsString::from("\u{1f}"))
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_remap_every_host_path_and_the_target_dir_last() {
        let flags = rustflags(Path::new("/src/ws"), Path::new("/src/ws/target/apps"), true);
        let flags = flags.to_string_lossy();
        let parts: Vec<&str> = flags.split('\u{1f}').collect();
        assert!(parts.contains(&"--remap-path-prefix=/src/ws=/workspace"));
        assert_eq!(
            parts[parts.len() - 2],
            "--remap-path-prefix=/src/ws/target/apps=/target"
        );
        assert_eq!(parts[parts.len() - 1], "-Ctarget-feature=+crt-static");
        let dynamic = rustflags(Path::new("/w"), Path::new("/t"), false);
        assert!(!dynamic.to_string_lossy().contains("crt-static"));
    }

    #[test]
    fn a_missing_target_says_how_to_install_it() {
        use std::os::unix::fs::PermissionsExt;
        // A rustc that is on x86_64 and has no standard library for any
        // other target: what a fresh machine with only rustup's default has.
        let dir = tempfile::tempdir().unwrap();
        let libdir = dir.path().join("empty-libdir");
        std::fs::create_dir(&libdir).unwrap();
        let rustc = dir.path().join("rustc");
        std::fs::write(
            &rustc,
            format!(
                "#!/bin/sh\ncase \"$1\" in -vV) echo 'host: x86_64-unknown-linux-gnu';; *) echo {};; esac\n",
                libdir.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&rustc, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = toolchain(&dir.path().join("cargo"), "arm64").unwrap_err();
        assert_eq!(
            err,
            "the Rust target aarch64-unknown-linux-gnu is not installed (rustup target add aarch64-unknown-linux-gnu)"
        );
        assert!(toolchain(&dir.path().join("cargo"), "riscv64").is_err());
    }
}
