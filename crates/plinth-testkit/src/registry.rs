//! A real OCI registry on loopback: Debian's `docker-registry`
//! (distribution 2.8), for the publish tests and `cargo xtask bench
//! publish`.
//!
//! Owns starting it on a free port with storage in a temporary directory
//! (optionally behind htpasswd basic authentication, optionally serving
//! TLS with a certificate of the test PKI), waiting until it answers,
//! stopping and restarting it on the same port and storage, and killing it
//! when dropped.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REGISTRY_TOOL: &str = "docker-registry";

/// A running (or stopped) registry; its storage survives
/// [`stop`](Self::stop) and [`restart`](Self::restart).
pub struct Registry {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry; `auth` turns on htpasswd basic authentication
    /// with that user and password. `Err` says which tool is missing or
    /// why the server did not come up.
    pub fn start(auth: Option<(&str, &str)>) -> Result<Registry, String> {
        Self::start_with(auth, None)
    }

    /// [`start`](Self::start), serving TLS with `tls` (make it for
    /// `127.0.0.1`) when given.
    pub fn start_with(
        auth: Option<(&str, &str)>,
        tls: Option<&crate::tls::ServerCert>,
    ) -> Result<Registry, String> {
        let dir = tempfile::Builder::new()
            .prefix("plinth-registry-")
            .tempdir()
            .map_err(|e| format!("registry scratch directory: {e}"))?;
        let mut config = String::from(
            "version: 0.1\n\
             log: {level: warn, accesslog: {disabled: true}}\n",
        );
        config.push_str(&format!(
            "storage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\n\
             http:\n  addr: 127.0.0.1:@PORT@\n  secret: plinth-test\n",
            dir.path().join("storage").display()
        ));
        if let Some(cert) = tls {
            let (cert, key) = cert.write(dir.path(), "registry");
            config.push_str(&format!(
                "  tls: {{certificate: {}, key: {}}}\n",
                cert.display(),
                key.display()
            ));
        }
        if let Some((user, password)) = auth {
            // The registry invents a user when the file is missing: write it first.
            let file = dir.path().join("htpasswd");
            write_htpasswd(&file, user, password)?;
            config.push_str(&format!(
                "auth: {{htpasswd: {{realm: plinth-test, path: {}}}}}\n",
                file.display()
            ));
        }
        let mut registry = Registry {
            child: None,
            port: 0,
            dir,
        };
        // The port is free when asked for, but a test running alongside
        // may take it before the registry binds it: then try another.
        let mut last = String::new();
        for _ in 0..5 {
            registry.port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("a free loopback port: {e}"))?
                .port();
            let text = config.replace("@PORT@", &registry.port.to_string());
            fs::write(registry.dir.path().join("config.yml"), text)
                .map_err(|e| format!("write registry config: {e}"))?;
            match registry.restart() {
                Ok(()) => return Ok(registry),
                Err(e) if e.contains("address already in use") => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where the registry keeps blobs and manifests.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Number of blobs stored so far.
    pub fn blob_count(&self) -> usize {
        let root = self.storage().join("docker/registry/v2/blobs/sha256");
        fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|shard| fs::read_dir(shard.path()).into_iter().flatten().flatten())
            .filter(|blob| blob.path().join("data").is_file())
            .count()
    }

    /// Stops the server (SIGTERM, then waits); storage stays.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the server (again) on the same port and storage, and waits
    /// until it answers.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        let log_path = self.dir.path().join("registry.log");
        let log = fs::File::create(&log_path).map_err(|e| format!("registry log: {e}"))?;
        let err_log = log.try_clone().map_err(|e| format!("registry log: {e}"))?;
        let child = Command::new(REGISTRY_TOOL)
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .map_err(|e| {
                format!("cannot start {REGISTRY_TOOL} (Debian package docker-registry): {e}")
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.answers() {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some();
            if exited || Instant::now() > deadline {
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!(
                    "{REGISTRY_TOOL} did not answer on {}: {log}",
                    self.host()
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(())
    }

    /// Whether `GET /v2/` gets an HTTP answer (200, or 401 with auth; a
    /// TLS port answers plain HTTP with a 400, which is as good).
    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut head = [0u8; 12];
        s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n").is_ok()
            && s.read_exact(&mut head).is_ok()
            && head.starts_with(b"HTTP/1.")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `htpasswd -Bbn` into `file` (the registry accepts bcrypt only).
fn write_htpasswd(file: &Path, user: &str, password: &str) -> Result<(), String> {
    let out = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run htpasswd (Debian package apache2-utils): {e}"))?;
    if !out.status.success() {
        return Err(format!("htpasswd failed: {}", out.status));
    }
    fs::write(file, &out.stdout).map_err(|e| format!("write {}: {e}", file.display()))
}
