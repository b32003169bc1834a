//! Test support: inspect and run built images with real tools (skopeo,
//! umoci, runc), without a container engine.
//!
//! Adapted from the tool exploration (FINDINGS.md of the tools helper):
//! * A tool that is missing makes a test skip with a printed reason, except
//!   under CI (`CI=true`), where it is a failure.
//! * umoci 0.4.7 (Debian 12) cannot pick a platform out of an image index
//!   ("tag is ambiguous"), so [`unpack`] takes a per-architecture tag
//!   (`latest-amd64`), which plinth writes next to every multi-arch tag.
//! * `runc run` works as root here once `process.rlimits` is removed (raising
//!   RLIMIT_NOFILE above the hard limit is refused) and `process.terminal` is
//!   false (there is no tty). [`run`] writes that patched `config.json` into a
//!   private bundle directory whose `root.path` is the unpacked rootfs, so one
//!   unpacked image can serve many runs, also in parallel, and its own
//!   `config.json` stays as umoci wrote it.

#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a foreground container may run before it is killed.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// tools and the skip policy
// ---------------------------------------------------------------------------

/// True when running under CI (`CI` set to anything but "", "0" or "false").
pub fn in_ci() -> bool {
    match std::env::var("CI") {
        Ok(v) => !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false")),
        Err(_) => false,
    }
}

/// Skip (print `reason`, return false) outside CI; panic under CI.
pub fn skip(reason: &str) -> bool {
    if in_ci() {
        panic!("{reason} (CI=true: this is a failure, not a skip)");
    }
    eprintln!("SKIPPED: {reason}");
    false
}

/// Find an executable on `PATH` (plus `/usr/sbin` and `/sbin`, where Debian
/// puts `runc`, in case `PATH` lacks them).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// True when every tool in `names` is installed; otherwise [`skip`]s.
pub fn tools(names: &[&str]) -> bool {
    match names.iter().find(|n| find_tool(n).is_none()) {
        None => true,
        Some(missing) => skip(&format!("`{missing}` is not installed")),
    }
}

/// True when `path` exists; otherwise [`skip`]s, naming the Debian package.
pub fn file_from_package(path: &str, package: &str) -> bool {
    Path::new(path).exists()
        || skip(&format!(
            "{path} is missing (install the Debian package {package})"
        ))
}

/// Unpacking with ownership and running bundles with runc need root here.
/// Running the amd64 images needs an amd64 host.
pub fn can_run_containers() -> bool {
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("SKIPPED: the container tests run the amd64 images and need an x86_64 host");
        return false;
    }
    let root = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false);
    root || skip("unpacking with ownership and runc need root")
}

fn must(name: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| panic!("tool `{name}` not found (check with tools() first)"))
}

/// A command for tool `name` (which must have been checked with [`tools`]).
pub fn tool_command(name: &str) -> Command {
    let mut cmd = Command::new(must(name));
    cmd.stdin(Stdio::null());
    cmd
}

/// Run a command to completion; `Err` carries the command, status and output.
pub fn output(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(describe(&format!("{cmd:?}"), &out))
    }
}

/// Run a command to completion, panicking with its output when it fails.
pub fn check(cmd: &mut Command) -> Output {
    output(cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// A failed command's status and output, for messages.
pub fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------------------
// scratch space
// ---------------------------------------------------------------------------

/// This test process's scratch directory under `CARGO_TARGET_TMPDIR/<suite>`;
/// removes those of finished processes (statics are never dropped, so a
/// process cannot clean up after itself). Deleting tens of thousands of
/// unpacked files takes a while on this disk, so that happens beside the
/// tests.
pub fn scratch_for(suite: &str) -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join(suite);
    for entry in fs::read_dir(&base).into_iter().flatten().flatten() {
        let pid = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok());
        if !pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists()) {
            std::thread::spawn(move || fs::remove_dir_all(entry.path()));
        }
    }
    let dir = base.join(std::process::id().to_string());
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

// ---------------------------------------------------------------------------
// unpack
// ---------------------------------------------------------------------------

/// `umoci unpack --image LAYOUT:TAG BUNDLE` (as root: ownership is kept).
/// `tag` must point straight at an image manifest (a per-arch tag such as
/// `nonroot-amd64`); `bundle` must not exist yet. Checks that the image is
/// for `arch` (umoci records it as an annotation in `config.json`).
pub fn unpack(layout: &Path, tag: &str, arch: &str, bundle: &Path) -> Result<(), String> {
    output(
        tool_command("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:{tag}", layout.display()))
            .arg(bundle),
    )?;
    let cfg = read_config(bundle)?;
    let got = cfg["annotations"]["org.opencontainers.image.architecture"].as_str();
    if got != Some(arch) {
        return Err(format!(
            "unpacked {}:{tag} is for {got:?}, not {arch}",
            layout.display()
        ));
    }
    Ok(())
}

/// The bundle's `config.json`.
pub fn read_config(bundle: &Path) -> Result<serde_json::Value, String> {
    let p = bundle.join("config.json");
    let text = fs::read(&p).map_err(|e| format!("read {}: {e}", p.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("parse {}: {e}", p.display()))
}

// ---------------------------------------------------------------------------
// run
// ---------------------------------------------------------------------------

/// A host directory bind-mounted read-only into the container.
pub struct Mount<'a> {
    pub host: &'a Path,
    pub container: &'a str,
}

/// Run `args` (the full argv) as the image's user in the unpacked `bundle`,
/// with `mounts`, and wait for it; stdout and stderr are captured and the
/// exit status is the container process's. Killed after [`RUN_TIMEOUT`].
///
/// The bundle itself is not modified except for mount points runc creates
/// in its rootfs: the patched `config.json` goes into a private directory.
pub fn run(bundle: &Path, args: &[&str], mounts: &[Mount]) -> Output {
    let dir = tempfile::Builder::new()
        .prefix("plinth-run-")
        .tempdir()
        .expect("create runc bundle dir");
    let mut cfg = read_config(bundle).unwrap_or_else(|e| panic!("{e}"));
    patch_config(&mut cfg, &bundle.join("rootfs"), args, mounts);
    let text = serde_json::to_vec_pretty(&cfg).expect("serialise config.json");
    fs::write(dir.path().join("config.json"), text).expect("write config.json");
    run_bundle(dir.path(), RUN_TIMEOUT)
}

/// Make umoci's config runnable here: no rlimits, no terminal, `args` as
/// the process, the rootfs by absolute path, extra read-only bind mounts.
fn patch_config(cfg: &mut serde_json::Value, rootfs: &Path, args: &[&str], mounts: &[Mount]) {
    let process = cfg["process"]
        .as_object_mut()
        .expect("config.json has no process object");
    process.remove("rlimits");
    process.insert("terminal".into(), false.into());
    process.insert("args".into(), serde_json::json!(args));
    cfg["root"] = serde_json::json!({ "path": rootfs, "readonly": false });
    let list = cfg["mounts"]
        .as_array_mut()
        .expect("config.json has no mounts list");
    for m in mounts {
        list.push(serde_json::json!({
            "destination": m.container,
            "type": "bind",
            "source": m.host,
            "options": ["rbind", "ro"],
        }));
    }
}

/// A container id no other container on the machine has: runc names the
/// container's cgroups after it, whatever its state directory, so
/// containers of parallel tests (or of two test runs) must not share one.
fn unique_id(kind: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("plinth-{kind}-{}-{n}", std::process::id())
}

/// `runc run` on a prepared bundle directory, with a private state root.
fn run_bundle(dir: &Path, timeout: Duration) -> Output {
    let id = unique_id("run");
    let id = id.as_str();
    let state = dir.join("state");
    let runc = |args: &[&str]| {
        let mut cmd = tool_command("runc");
        cmd.arg("--root").arg(&state).args(args);
        cmd
    };
    let mut child = runc(&["run", "--bundle"])
        .arg(dir)
        .arg(id)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start runc: {e}"));

    // Drain both pipes on threads so a chatty container cannot block.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = r.read_to_end(&mut b);
            b
        })
    };
    let t_out = drain(Box::new(child.stdout.take().expect("stdout pipe")));
    let t_err = drain(Box::new(child.stderr.take().expect("stderr pipe")));

    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status: ExitStatus = loop {
        if let Some(st) = child.try_wait().expect("wait for runc") {
            break st;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = runc(&["kill", id, "KILL"]).status();
            let _ = child.kill();
            break child.wait().expect("wait for runc");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = t_out.join().unwrap_or_default();
    let mut stderr = t_err.join().unwrap_or_default();
    // `runc run` deletes the container when it exits; make sure anyway.
    let _ = runc(&["delete", "-f", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if timed_out {
        stderr.extend_from_slice(format!("\n[support: killed after {timeout:?}]\n").as_bytes());
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

// ---------------------------------------------------------------------------
// background containers
// ---------------------------------------------------------------------------

/// A container running in the background (`runc run --detach`) in its own
/// namespaces, network included: it has a loopback of its own, reached
/// with [`Container::exec`]. Dropping it kills and deletes it.
pub struct Container {
    id: String,
    /// The private bundle directory; runc's state lives in `state/`.
    dir: tempfile::TempDir,
    pub pid: u32,
}

impl Container {
    /// Starts `args` (the full argv) as the image's user in the unpacked
    /// `bundle`. The process's output goes to a log file: with `--detach`
    /// runc hands its own stdio to the container, and a pipe would never
    /// reach end-of-file while the container lives.
    pub fn start(bundle: &Path, args: &[&str]) -> Result<Container, String> {
        let dir = tempfile::Builder::new()
            .prefix("plinth-bg-")
            .tempdir()
            .map_err(|e| format!("create bundle dir: {e}"))?;
        let mut cfg = read_config(bundle)?;
        patch_config(&mut cfg, &bundle.join("rootfs"), args, &[]);
        let text = serde_json::to_vec_pretty(&cfg).map_err(|e| e.to_string())?;
        fs::write(dir.path().join("config.json"), text).map_err(|e| e.to_string())?;
        let log = fs::File::create(dir.path().join("log")).map_err(|e| e.to_string())?;
        let id = unique_id("bg");
        let pid_file = dir.path().join("pid");
        let status = tool_command("runc")
            .arg("--root")
            .arg(dir.path().join("state"))
            .args(["run", "--detach", "--pid-file"])
            .arg(&pid_file)
            .arg("--bundle")
            .arg(dir.path())
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .status()
            .map_err(|e| format!("cannot start runc: {e}"))?;
        let pid = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let container = Container { id, dir, pid };
        if !status.success() {
            return Err(format!(
                "runc run --detach failed ({status}): {}",
                container.log()
            ));
        }
        Ok(container)
    }

    fn runc(&self, args: &[&str]) -> Command {
        let mut cmd = tool_command("runc");
        cmd.arg("--root")
            .arg(self.dir.path().join("state"))
            .args(args);
        cmd
    }

    /// Runs `args` inside the container (same namespaces, same user) and
    /// waits for it.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut cmd = self.runc(&["exec", &self.id]);
        cmd.args(args).stdin(Stdio::null());
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run runc exec: {e}"))
    }

    /// What the container wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // PID 1 without a SIGTERM handler ignores TERM; -f sends SIGKILL.
        let _ = self
            .runc(&["delete", "-f", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

// ---------------------------------------------------------------------------
// a registry on loopback
// ---------------------------------------------------------------------------

#[allow(unused_imports)] // each test binary uses part of it
pub use plinth_testkit::registry::{REGISTRY_TOOL, Registry};

/// Debian's `docker-registry` on a free loopback port with temporary
/// storage; `auth` turns on htpasswd basic authentication. Check [`tools`]
/// for `docker-registry` (and `htpasswd` with `auth`) first.
pub fn start_registry(auth: Option<(&str, &str)>) -> Registry {
    Registry::start(auth).unwrap_or_else(|e| panic!("{e}"))
}
