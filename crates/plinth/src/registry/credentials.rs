//! Registry credentials and where they come from: plinth's environment
//! variables, then the Docker config as Docker reads it (credential
//! helpers, `credsStore`, `auths`). A credential never reaches a log line,
//! an error or `Debug` output.

use super::{RegistryError, Result, dockerhub};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Environment variables that take precedence over the Docker config.
pub const ENV_USERNAME: &str = "PLINTH_REGISTRY_USERNAME";

pub const ENV_PASSWORD: &str = "PLINTH_REGISTRY_PASSWORD";

// ---------------------------------------------------------------------------
// Credentials

/// A user name and password (or identity token). `Debug` never shows the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub(super) password: String,
    /// Where they came from, for error messages.
    pub source: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("source", &self.source)
            .finish()
    }
}

impl Credentials {
    pub fn new(username: &str, password: &str, source: &str) -> Self {
        Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
            source: source.to_owned(),
        }
    }

    pub(super) fn basic_header(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!("Basic {}", BASE64.encode(pair))
    }

    /// Credentials for `host`: `PLINTH_REGISTRY_USERNAME`/`_PASSWORD`, else
    /// the Docker config (`$DOCKER_CONFIG/config.json` or
    /// `~/.docker/config.json`), else none (anonymous).
    pub fn from_environment(host: &str) -> Result<Option<Self>> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let config = env("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|h| Path::new(&h).join(".docker")))
            .map(|dir| dir.join("config.json"));
        Self::lookup(host, env, config.as_deref())
    }

    /// [`from_environment`](Self::from_environment) with its inputs given.
    pub fn lookup(
        host: &str,
        env: impl Fn(&str) -> Option<String>,
        docker_config: Option<&Path>,
    ) -> Result<Option<Self>> {
        match (env(ENV_USERNAME), env(ENV_PASSWORD)) {
            (Some(u), Some(p)) => return Ok(Some(Self::new(&u, &p, "the environment"))),
            (Some(_), None) | (None, Some(_)) => {
                return Err(RegistryError {
                    place: host.to_owned(),
                    what: format!("set both {ENV_USERNAME} and {ENV_PASSWORD}, or neither"),
                    unauthorized: false,
                });
            }
            (None, None) => {}
        }
        let Some(path) = docker_config else {
            return Ok(None);
        };
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(config_error(host, path, &e.to_string())),
        };
        match docker_config_credentials(&text, host)
            .map_err(|what| config_error(host, path, &what))?
        {
            FromConfig::Inline(u, p) => Ok(Some(Self::new(&u, &p, &path.display().to_string()))),
            FromConfig::Helper(name) => credential_helper(&name, host, &env),
            FromConfig::Nothing => Ok(None),
        }
    }
}

/// What a Docker config says about a host's credentials.
#[derive(Debug, PartialEq, Eq)]
enum FromConfig {
    Inline(String, String),
    /// Ask `docker-credential-<name>`.
    Helper(String),
    Nothing,
}

/// Runs `docker-credential-<name> get` (the protocol `docker login`'s
/// helpers speak: the server on stdin, `{"Username", "Secret"}` on
/// stdout), found on the `PATH` that `env` gives. A helper that knows no
/// credentials for the host means anonymous. Errors never quote the
/// helper's output, which may hold the secret.
fn credential_helper(
    name: &str,
    host: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<Credentials>> {
    use std::io::Write as _;
    let program = format!("docker-credential-{name}");
    let fail = |what: String| RegistryError {
        place: host.to_owned(),
        what,
        unauthorized: false,
    };
    let path = env("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(&program))
                .find(|c| c.is_file())
        })
        .ok_or_else(|| {
            fail(format!(
                "the Docker config names the credential helper {program}, which is not on PATH"
            ))
        })?;
    let mut child = std::process::Command::new(&path)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("running {}: {e}", path.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is judged by its status.
        // Docker asks about Docker Hub by its legacy key, not its name.
        let _ = stdin.write_all(dockerhub::auth_key(host).as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("running {}: {e}", path.display())))?;
    if !out.status.success() {
        // "credentials not found in native keychain" and the like.
        tracing::debug!("{program} has no credentials for {host} ({})", out.status);
        return Ok(None);
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Reply {
        username: String,
        secret: String,
    }
    let reply: Reply = serde_json::from_slice(&out.stdout).map_err(|_| {
        fail(format!(
            "{program} get answered something other than {{\"Username\", \"Secret\"}}"
        ))
    })?;
    Ok(Some(Credentials::new(
        &reply.username,
        &reply.secret,
        &program,
    )))
}

fn config_error(host: &str, path: &Path, what: &str) -> RegistryError {
    RegistryError {
        place: host.to_owned(),
        what: format!("reading credentials from {}: {what}", path.display()),
        unauthorized: false,
    }
}

/// What a Docker config holds for `host`, in Docker's order: a
/// `credHelpers` entry for the host, else the `credsStore`, else the
/// `auths` entry (keys may carry a scheme or a path, as `docker login`
/// writes them; Docker Hub's aliases are one registry). The first match
/// in key order wins, so that the answer does not depend on hash order.
/// Errors never quote the file's content.
fn docker_config_credentials(text: &[u8], host: &str) -> std::result::Result<FromConfig, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Config {
        #[serde(default)]
        auths: BTreeMap<String, Entry>,
        #[serde(default)]
        cred_helpers: BTreeMap<String, String>,
        #[serde(default)]
        creds_store: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        auth: Option<String>,
        username: Option<String>,
        password: Option<String>,
    }
    let config: Config = serde_json::from_slice(text).map_err(|e| {
        format!(
            "not a Docker config (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let matches = |key: &str| dockerhub::config_key_matches(key, host);
    if let Some((_, helper)) = config.cred_helpers.iter().find(|(k, _)| matches(k)) {
        return Ok(FromConfig::Helper(helper.clone()));
    }
    if let Some(store) = config.creds_store.filter(|s| !s.is_empty()) {
        return Ok(FromConfig::Helper(store));
    }
    let Some(entry) = config
        .auths
        .iter()
        .find_map(|(k, e)| matches(k).then_some(e))
    else {
        return Ok(FromConfig::Nothing);
    };
    if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
        return Ok(FromConfig::Inline(u.clone(), p.clone()));
    }
    let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) else {
        return Ok(FromConfig::Nothing);
    };
    let decoded = BASE64
        .decode(auth.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| format!("the auth of {host} is not base64 of user:password"))?;
    let (u, p) = decoded
        .split_once(':')
        .ok_or_else(|| format!("the auth of {host} is not base64 of user:password"))?;
    Ok(FromConfig::Inline(u.to_owned(), p.to_owned()))
}
