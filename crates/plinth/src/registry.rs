//! A blocking client for the OCI Distribution API: where images go when
//! they are published.
//!
//! It owns the registry target (`HOST[:PORT]/PREFIX`), credentials and
//! their sources (environment, Docker config), the authentication dance
//! (anonymous, basic, bearer tokens from a `WWW-Authenticate` challenge),
//! retries, and the individual operations: blob and manifest existence,
//! uploads (cross-repository mount, monolithic, chunked), manifest pushes
//! and reads, and the referrers-API probe. What to push in which order is
//! [`crate::publish`]'s business.
//!
//! Credentials, tokens and `Authorization` headers never reach a log line
//! or an error message: errors name the registry, the repository and what
//! failed, nothing more.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::fetch::redact;
use crate::oci::{MEDIA_TYPE_IMAGE_INDEX, MEDIA_TYPE_IMAGE_MANIFEST, sha256_digest};

/// Environment variables that take precedence over the Docker config.
pub const ENV_USERNAME: &str = "PLINTH_REGISTRY_USERNAME";
pub const ENV_PASSWORD: &str = "PLINTH_REGISTRY_PASSWORD";

/// What a manifest request accepts: plinth pushes only OCI documents.
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// One line naming the registry (and repository) and what failed. Never
/// carries a credential: messages are built from host, repository, method,
/// status and the registry's own error codes.
#[derive(Debug, thiserror::Error)]
#[error("registry {place}: {what}")]
pub struct RegistryError {
    /// `host[:port]` or `host[:port]/repository`.
    pub place: String,
    pub what: String,
    /// The registry refused the credentials (or asked for some).
    pub unauthorized: bool,
}

type Result<T, E = RegistryError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------
// The target

/// Where to publish: a registry host and a repository prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host` or `host:port`.
    pub host: String,
    /// Repository path prefix without slashes at either end; may be empty.
    pub prefix: String,
    /// Plain HTTP (loopback registries only).
    pub insecure: bool,
}

impl Target {
    /// Parses `HOST[:PORT][/PREFIX]`. `insecure` selects plain HTTP and is
    /// accepted for loopback hosts only, so credentials never cross a
    /// network in clear text.
    pub fn parse(text: &str, insecure: bool) -> Result<Self> {
        let bad = |what: String| RegistryError {
            place: "target".into(),
            what,
            unauthorized: false,
        };
        if text.contains("://") {
            return Err(bad(
                "--registry takes HOST[:PORT]/PREFIX without a scheme (use --insecure for plain HTTP)"
                    .into(),
            ));
        }
        let (authority, prefix) = text.split_once('/').unwrap_or((text, ""));
        if authority.contains('@') {
            // The text holds credentials: do not repeat it.
            return Err(bad(
                "credentials do not belong in --registry; use the environment or the Docker config"
                    .into(),
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !host_ok {
            return Err(bad(format!(
                "{authority:?} is not a registry host (expected HOST[:PORT]/PREFIX)"
            )));
        }
        if let Some(p) = port
            && p.parse::<u16>().map_or(true, |p| p == 0)
        {
            return Err(bad(format!("{p:?} in {authority:?} is not a port number")));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() && !prefix.split('/').all(valid_path_component) {
            return Err(bad(format!(
                "{prefix:?} is not a repository prefix (lower-case path components of a-z, 0-9, '.', '_', '-')"
            )));
        }
        if insecure && !is_loopback(host) {
            return Err(bad(format!(
                "--insecure (plain HTTP) is for loopback registries only, not {host}"
            )));
        }
        Ok(Target {
            host: authority.to_owned(),
            prefix: prefix.to_owned(),
            insecure,
        })
    }

    /// `http(s)://host[:port]`.
    pub fn base_url(&self) -> String {
        let scheme = if self.insecure { "http" } else { "https" };
        format!("{scheme}://{}", self.host)
    }

    /// The registry's repository name for an image repository.
    pub fn repository(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            f.write_str(&self.host)
        } else {
            write!(f, "{}/{}", self.host, self.prefix)
        }
    }
}

fn valid_path_component(c: &str) -> bool {
    let first_last_ok =
        |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    first_last_ok(c.as_bytes().first())
        && first_last_ok(c.as_bytes().last())
        && c.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.starts_with("127.")
}

// ---------------------------------------------------------------------------
// Credentials

/// A user name and password (or identity token). `Debug` never shows the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    password: String,
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

    fn basic_header(&self) -> String {
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
        let _ = stdin.write_all(host.as_bytes());
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
/// writes them). Errors never quote the file's content.
fn docker_config_credentials(text: &[u8], host: &str) -> std::result::Result<FromConfig, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Config {
        #[serde(default)]
        auths: HashMap<String, Entry>,
        #[serde(default)]
        cred_helpers: HashMap<String, String>,
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
    let matches = |key: &str| {
        let key = key.split_once("://").map_or(key, |(_, rest)| rest);
        key.split('/').next().unwrap_or_default() == host
    };
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

// ---------------------------------------------------------------------------
// Challenges

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lower-cased: `basic`, `bearer`, ...
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Parses one challenge: `Scheme k=v, k="quoted, with \"escapes\""`.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.is_empty() {
            return None;
        }
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            if rest.is_empty() {
                break;
            }
            let (key, after) = rest.split_once('=')?;
            let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
                quoted_string(quoted)?
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            };
            params.push((key.trim().to_owned(), value));
            rest = after;
        }
        Some(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }
}

/// The content of a quoted string (after its opening quote) and the rest.
fn quoted_string(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => out.push(chars.next()?.1),
            c => out.push(c),
        }
    }
    None
}

// ---------------------------------------------------------------------------
// The client

/// Timeouts, retries and upload sizes.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Tries per request for connection errors and 5xx answers. Small, so
    /// that an unreachable registry fails the command in seconds.
    pub attempts: u32,
    pub first_backoff: Duration,
    /// Blobs larger than this go up in chunks.
    pub chunk_threshold: u64,
    pub chunk_size: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(120),
            attempts: 3,
            first_backoff: Duration::from_millis(250),
            chunk_threshold: 16 << 20,
            chunk_size: 8 << 20,
        }
    }
}

/// How a blob reached the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    Mounted,
    Monolithic,
    Chunked,
}

/// A response read whole (registry responses other than blobs are small,
/// and reading them returns the connection to the pool).
struct Reply {
    status: u16,
    headers: ureq::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The registry's error codes (`{"errors":[{"code":...}]}`) or the
    /// start of a text body, for messages.
    fn reason(&self) -> String {
        #[derive(serde::Deserialize)]
        struct Errors {
            errors: Vec<ErrorEntry>,
        }
        #[derive(serde::Deserialize)]
        struct ErrorEntry {
            code: String,
            #[serde(default)]
            message: String,
        }
        let detail = match serde_json::from_slice::<Errors>(&self.body) {
            Ok(e) => e
                .errors
                .iter()
                .map(|e| format!("{} {}", e.code, e.message).trim().to_owned())
                .collect::<Vec<_>>()
                .join("; "),
            Err(_) => String::from_utf8_lossy(&self.body[..self.body.len().min(200)])
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        };
        if detail.is_empty() {
            format!("HTTP {}", self.status)
        } else {
            format!("HTTP {}: {detail}", self.status)
        }
    }
}

#[derive(Default)]
struct AuthState {
    /// Set once the registry asked for basic authentication.
    basic: bool,
    /// Tokens by repository.
    tokens: HashMap<String, String>,
}

/// One registry, with its authentication state. Safe to share between
/// threads.
pub struct Client {
    agent: ureq::Agent,
    target: Target,
    credentials: Option<Credentials>,
    options: ClientOptions,
    auth: Mutex<AuthState>,
    referrers_api: OnceLock<bool>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("target", &self.target)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(target: Target, credentials: Option<Credentials>, options: ClientOptions) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(options.connect_timeout))
            .timeout_recv_response(Some(options.read_timeout))
            .timeout_recv_body(Some(options.read_timeout))
            .timeout_send_body(Some(options.read_timeout))
            .http_status_as_error(false)
            // A redirect would carry the Authorization header elsewhere.
            .max_redirects(0)
            .user_agent(concat!("plinth/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent: config.into(),
            target,
            credentials,
            options,
            auth: Mutex::new(AuthState::default()),
            referrers_api: OnceLock::new(),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    fn error(&self, repository: &str, what: String) -> RegistryError {
        RegistryError {
            place: self.place(repository),
            what,
            unauthorized: false,
        }
    }

    /// `host[:port]/repository`, or the host alone for registry-wide calls.
    pub fn place(&self, repository: &str) -> String {
        if repository.is_empty() {
            self.target.host.clone()
        } else {
            format!("{}/{repository}", self.target.host)
        }
    }

    fn url(&self, repository: &str, rest: &str) -> String {
        format!("{}/v2/{repository}/{rest}", self.target.base_url())
    }

    /// `GET /v2/`: reachability and credentials, before any work.
    pub fn ping(&self) -> Result<()> {
        let url = format!("{}/v2/", self.target.base_url());
        let reply = self.request("GET", &url, "", &[], &[], "checking the API")?;
        match reply.status {
            200 => Ok(()),
            _ => Err(RegistryError {
                place: self.target.host.clone(),
                what: format!("GET /v2/ answered {}", reply.reason()),
                unauthorized: false,
            }),
        }
    }

    /// Whether `repository` holds blob `digest`.
    pub fn blob_exists(&self, repository: &str, digest: &str) -> Result<bool> {
        let url = self.url(repository, &format!("blobs/{digest}"));
        let what = format!("checking blob {digest}");
        let reply = self.request("HEAD", &url, repository, &[], &[], &what)?;
        match reply.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.error(repository, format!("{what}: {}", reply.reason()))),
        }
    }

    /// Puts blob `digest` (whose content is `bytes`) into `repository`,
    /// mounting it from `mount_from` when that repository of the same
    /// registry has it.
    pub fn upload_blob(
        &self,
        repository: &str,
        digest: &str,
        bytes: &[u8],
        mount_from: Option<&str>,
    ) -> Result<Upload> {
        let what = format!("uploading blob {digest}");
        let query = match mount_from {
            Some(from) => format!("?mount={digest}&from={}", query_escape(from)),
            None => String::new(),
        };
        let url = self.url(repository, &format!("blobs/uploads/{query}"));
        let reply = self.request("POST", &url, repository, &[], &[], &what)?;
        match reply.status {
            201 if mount_from.is_some() => return Ok(Upload::Mounted),
            202 => {}
            _ => return Err(self.error(repository, format!("{what}: {}", reply.reason()))),
        }
        let mut location = self.location(repository, &reply, &what)?;
        let chunked = bytes.len() as u64 > self.options.chunk_threshold;
        let last = if chunked {
            let chunk = usize::try_from(self.options.chunk_size.max(1)).unwrap_or(usize::MAX);
            for (i, part) in bytes.chunks(chunk).enumerate() {
                let start = i * chunk;
                let range = format!("{start}-{}", start + part.len() - 1);
                let headers = [
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Range", range.as_str()),
                ];
                let reply = self.request("PATCH", &location, repository, &headers, part, &what)?;
                if reply.status != 202 {
                    return Err(self.error(repository, format!("{what}: {}", reply.reason())));
                }
                location = self.location(repository, &reply, &what)?;
            }
            &[][..]
        } else {
            bytes
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={digest}");
        let headers = [("Content-Type", "application/octet-stream")];
        let reply = self.request("PUT", &url, repository, &headers, last, &what)?;
        if reply.status != 201 {
            return Err(self.error(repository, format!("{what}: {}", reply.reason())));
        }
        Ok(if chunked {
            Upload::Chunked
        } else {
            Upload::Monolithic
        })
    }

    /// The upload session's `Location`, made absolute.
    fn location(&self, repository: &str, reply: &Reply, what: &str) -> Result<String> {
        let location = reply.header("location").ok_or_else(|| {
            self.error(repository, format!("{what}: the registry sent no Location"))
        })?;
        Ok(if location.starts_with('/') {
            format!("{}{location}", self.target.base_url())
        } else {
            location.to_owned()
        })
    }

    /// The digest `reference` (a tag or digest) resolves to in
    /// `repository`, or `None` if it does not exist.
    pub fn manifest_digest(&self, repository: &str, reference: &str) -> Result<Option<String>> {
        let url = self.url(repository, &format!("manifests/{reference}"));
        let what = format!("checking manifest {reference}");
        let headers = [("Accept", ACCEPT_MANIFESTS)];
        let reply = self.request("HEAD", &url, repository, &headers, &[], &what)?;
        match reply.status {
            200 => match reply.header("docker-content-digest") {
                Some(d) => Ok(Some(d.to_owned())),
                // Without the header only the bytes can tell.
                None => Ok(self
                    .get_manifest(repository, reference)?
                    .map(|(_, bytes)| sha256_digest(&bytes))),
            },
            404 => Ok(None),
            _ => Err(self.error(repository, format!("{what}: {}", reply.reason()))),
        }
    }

    /// The media type and exact bytes of manifest `reference`, or `None`.
    pub fn get_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<(String, Vec<u8>)>> {
        let url = self.url(repository, &format!("manifests/{reference}"));
        let what = format!("reading manifest {reference}");
        let headers = [("Accept", ACCEPT_MANIFESTS)];
        let reply = self.request("GET", &url, repository, &headers, &[], &what)?;
        match reply.status {
            200 => {
                let media_type = reply.header("content-type").unwrap_or_default().to_owned();
                Ok(Some((media_type, reply.body)))
            }
            404 => Ok(None),
            _ => Err(self.error(repository, format!("{what}: {}", reply.reason()))),
        }
    }

    /// Pushes `bytes` exactly as given under `reference` (a digest or a
    /// tag). Returns whether the registry answered `OCI-Subject`, which
    /// means it indexes referrers itself.
    pub fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<bool> {
        let url = self.url(repository, &format!("manifests/{reference}"));
        let what = format!("pushing manifest {reference}");
        let headers = [("Content-Type", media_type)];
        let reply = self.request("PUT", &url, repository, &headers, bytes, &what)?;
        if reply.status != 201 {
            return Err(self.error(repository, format!("{what}: {}", reply.reason())));
        }
        let expected = sha256_digest(bytes);
        if let Some(got) = reply.header("docker-content-digest")
            && got != expected
        {
            return Err(self.error(
                repository,
                format!("{what}: the registry stored digest {got}, expected {expected}"),
            ));
        }
        Ok(reply.header("oci-subject").is_some())
    }

    /// Whether the registry serves the referrers API, asked once per
    /// client: a `200` with an image index says yes, anything else no.
    pub fn referrers_api(&self, repository: &str, digest: &str) -> Result<bool> {
        if let Some(known) = self.referrers_api.get() {
            return Ok(*known);
        }
        let url = self.url(repository, &format!("referrers/{digest}"));
        let headers = [("Accept", MEDIA_TYPE_IMAGE_INDEX)];
        let reply = self.request("GET", &url, repository, &headers, &[], "probing referrers")?;
        let is_index =
            reply.status == 200 && serde_json::from_slice::<crate::oci::Index>(&reply.body).is_ok();
        tracing::debug!("registry {}: referrers API: {is_index}", self.target.host);
        Ok(*self.referrers_api.get_or_init(|| is_index))
    }

    /// What [`referrers_api`](Self::referrers_api) found, if it was asked.
    pub fn known_referrers_api(&self) -> Option<bool> {
        self.referrers_api.get().copied()
    }

    /// Records that a manifest push answered `OCI-Subject`.
    pub fn note_referrers_api(&self) {
        let _ = self.referrers_api.set(true);
    }

    // -- requests, retries, authentication ---------------------------------

    /// One request with retries for connection errors and 5xx, and one
    /// round of authentication when the registry answers 401.
    fn request(
        &self,
        method: &str,
        url: &str,
        repository: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        what: &str,
    ) -> Result<Reply> {
        let mut reply = self.with_retries(method, url, repository, headers, body, what)?;
        if reply.status == 401 {
            self.authenticate(repository, &reply, what)?;
            reply = self.with_retries(method, url, repository, headers, body, what)?;
            if reply.status == 401 {
                return Err(self.unauthorized(repository, what));
            }
        }
        Ok(reply)
    }

    fn with_retries(
        &self,
        method: &str,
        url: &str,
        repository: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        what: &str,
    ) -> Result<Reply> {
        let mut backoff = self.options.first_backoff;
        let mut attempt = 1;
        loop {
            let why = match self.send(method, url, repository, headers, body) {
                Ok(reply) if reply.status < 500 => return Ok(reply),
                Ok(reply) => reply.reason(),
                Err(e) => e,
            };
            if attempt >= self.options.attempts.max(1) {
                let tries = if attempt > 1 {
                    format!(" (after {attempt} attempts)")
                } else {
                    String::new()
                };
                return Err(RegistryError {
                    place: self.place(repository),
                    what: format!("{what}: {why}{tries}"),
                    unauthorized: false,
                });
            }
            tracing::debug!("{method} {}: {why}; retrying in {backoff:?}", redact(url));
            std::thread::sleep(backoff);
            backoff *= 2;
            attempt += 1;
        }
    }

    /// One exchange; `Err` is a transport failure, described without the
    /// URL's query (upload state) or any header.
    fn send(
        &self,
        method: &str,
        url: &str,
        repository: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::result::Result<Reply, String> {
        tracing::debug!("{method} {}", redact(url.split('?').next().unwrap_or(url)));
        let mut request = ureq::http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(auth) = self.authorization(repository) {
            request = request.header("Authorization", auth);
        }
        let request = request
            .body(body)
            .map_err(|_| format!("cannot form a {method} request"))?;
        let response = self.agent.run(request).map_err(transport_error)?;
        let status = response.status().as_u16();
        let (parts, body) = response.into_parts();
        let mut bytes = Vec::new();
        if method != "HEAD" {
            body.into_reader()
                .read_to_end(&mut bytes)
                .map_err(|e| format!("reading the response: {e}"))?;
        }
        Ok(Reply {
            status,
            headers: parts.headers,
            body: bytes,
        })
    }

    /// The `Authorization` value for a request to `repository`, if the
    /// registry asked for one before.
    fn authorization(&self, repository: &str) -> Option<String> {
        let state = self.auth.lock().ok()?;
        if let Some(token) = state.tokens.get(repository) {
            return Some(format!("Bearer {token}"));
        }
        if state.basic {
            return self.credentials.as_ref().map(Credentials::basic_header);
        }
        None
    }

    /// Answers a 401: basic credentials, or a bearer token for the
    /// challenge's scope.
    fn authenticate(&self, repository: &str, reply: &Reply, what: &str) -> Result<()> {
        let challenges: Vec<Challenge> = reply
            .headers
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(Challenge::parse)
            .collect();
        let challenge = challenges
            .iter()
            .find(|c| c.scheme == "bearer")
            .or_else(|| challenges.iter().find(|c| c.scheme == "basic"));
        match challenge {
            Some(c) if c.scheme == "basic" => {
                if self.credentials.is_none() {
                    return Err(self.unauthorized(repository, what));
                }
                if let Ok(mut state) = self.auth.lock() {
                    if state.basic {
                        // They were sent already and refused.
                        return Err(self.unauthorized(repository, what));
                    }
                    state.basic = true;
                }
                Ok(())
            }
            Some(c) => {
                let token = self.fetch_token(repository, c, what)?;
                if let Ok(mut state) = self.auth.lock() {
                    state.tokens.insert(repository.to_owned(), token);
                }
                Ok(())
            }
            None => Err(self.unauthorized(repository, what)),
        }
    }

    /// A token from the challenge's realm, with basic credentials if any.
    fn fetch_token(&self, repository: &str, challenge: &Challenge, what: &str) -> Result<String> {
        let realm = challenge.param("realm").ok_or_else(|| {
            self.error(
                repository,
                format!("{what}: bearer challenge without a realm"),
            )
        })?;
        // Credentials go to the realm: plain HTTP only on loopback.
        let plain_loopback = realm
            .strip_prefix("http://")
            .is_some_and(|rest| is_loopback(rest.split([':', '/']).next().unwrap_or_default()));
        if !(realm.starts_with("https://") || plain_loopback) {
            return Err(self.error(
                repository,
                format!("{what}: refusing token realm {}", redact(realm)),
            ));
        }
        let mut query = Vec::new();
        if let Some(service) = challenge.param("service") {
            query.push(format!("service={}", query_escape(service)));
        }
        let scope = challenge
            .param("scope")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("repository:{repository}:pull,push"));
        query.push(format!("scope={}", query_escape(&scope)));
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{sep}{}", query.join("&"));
        tracing::debug!("GET {} (token)", redact(realm));
        let mut request = ureq::http::Request::builder().method("GET").uri(&url);
        if let Some(c) = &self.credentials {
            request = request.header("Authorization", c.basic_header());
        }
        let request = request
            .body(())
            .map_err(|_| self.error(repository, format!("{what}: bad token realm")))?;
        let fail = |why: String| self.error(repository, format!("{what}: token request: {why}"));
        let response = self
            .agent
            .run(request)
            .map_err(|e| fail(transport_error(e)))?;
        let status = response.status().as_u16();
        if status == 401 || status == 403 {
            return Err(self.unauthorized(repository, what));
        }
        if status != 200 {
            return Err(fail(format!("HTTP {status}")));
        }
        #[derive(serde::Deserialize)]
        struct TokenReply {
            token: Option<String>,
            access_token: Option<String>,
        }
        let mut body = Vec::new();
        response
            .into_body()
            .into_reader()
            .read_to_end(&mut body)
            .map_err(|e| fail(e.to_string()))?;
        let parsed: TokenReply =
            serde_json::from_slice(&body).map_err(|_| fail("not a token response".into()))?;
        parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| fail("no token in the response".into()))
    }

    fn unauthorized(&self, repository: &str, what: &str) -> RegistryError {
        let hint = match &self.credentials {
            Some(c) => format!(
                "the credentials of user {:?} from {} were refused",
                c.username, c.source
            ),
            None => format!(
                "no credentials for {} (set {ENV_USERNAME} and {ENV_PASSWORD}, or log in with a Docker config)",
                self.target.host
            ),
        };
        let mut err = self.error(repository, format!("{what}: authentication failed: {hint}"));
        err.unauthorized = true;
        err
    }
}

/// A transport error in words, without any URL (ureq's messages can hold
/// one, and upload URLs carry session state).
fn transport_error(e: ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => io.to_string(),
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        other => redact(&other.to_string()),
    }
}

/// Percent-encodes a query value (scopes hold ':' and ',').
fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The media type to send with a manifest: its own `mediaType`, or what
/// its shape says.
pub fn manifest_media_type(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Shape {
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Shape>(bytes) {
        Ok(Shape {
            media_type: Some(m),
            ..
        }) => m,
        Ok(Shape {
            manifests: Some(_), ..
        }) => MEDIA_TYPE_IMAGE_INDEX.to_owned(),
        _ => MEDIA_TYPE_IMAGE_MANIFEST.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::Arc;

    #[test]
    fn parses_targets_and_rejects_bad_ones_in_one_line() {
        let t = Target::parse("127.0.0.1:5000/golden/base/", true).unwrap();
        assert_eq!(t.host, "127.0.0.1:5000");
        assert_eq!(t.prefix, "golden/base");
        assert_eq!(t.base_url(), "http://127.0.0.1:5000");
        assert_eq!(t.repository("cc-debian13"), "golden/base/cc-debian13");
        assert_eq!(t.to_string(), "127.0.0.1:5000/golden/base");
        let t = Target::parse("registry.example.org", false).unwrap();
        assert_eq!(
            (t.base_url().as_str(), t.prefix.as_str()),
            ("https://registry.example.org", "")
        );
        assert_eq!(t.repository("static-debian12"), "static-debian12");

        for (text, insecure, says) in [
            ("https://registry.example.org/x", false, "without a scheme"),
            (
                "user:hunter2@registry.example.org/x",
                false,
                "credentials do not belong",
            ),
            ("", false, "not a registry host"),
            ("registry.example.org:99999/x", false, "not a port"),
            (
                "registry.example.org/Golden",
                false,
                "not a repository prefix",
            ),
            (
                "registry.example.org/a//b",
                false,
                "not a repository prefix",
            ),
            ("registry.example.org/x", true, "loopback registries only"),
        ] {
            let e = Target::parse(text, insecure).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
            assert!(!e.contains('\n') && !e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn parses_challenges_with_quoted_commas_and_escapes() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example.org/token",service="registry.example.org",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.example.org/token"));
        assert_eq!(c.param("SERVICE"), Some("registry.example.org"));
        assert_eq!(c.param("scope"), Some("repository:a/b:pull,push"));
        let c = Challenge::parse(r#"Basic realm="say \"hi\"", charset=UTF-8"#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.param("realm"), Some(r#"say "hi""#));
        assert_eq!(c.param("charset"), Some("UTF-8"));
        assert_eq!(Challenge::parse(r#"Bearer realm="unterminated"#), None);
        assert_eq!(Challenge::parse(""), None);
    }

    #[test]
    fn reads_docker_config_auths_in_both_forms_and_env_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let auth = BASE64.encode("alice:s3cret:with-colon");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths": {{"https://127.0.0.1:5000/v2/": {{"auth": "{auth}"}},
                   "registry.example.org": {{"username": "bob", "password": "pw"}}}}}}"#
            ),
        )
        .unwrap();
        let no_env = |_: &str| None;
        let c = Credentials::lookup("127.0.0.1:5000", no_env, Some(&path))
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3cret:with-colon")
        );
        assert_eq!(c.source, path.display().to_string());
        let c = Credentials::lookup("registry.example.org", no_env, Some(&path))
            .unwrap()
            .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("bob", "pw"));
        assert_eq!(
            Credentials::lookup("127.0.0.1:5001", no_env, Some(&path)).unwrap(),
            None
        );
        assert_eq!(
            Credentials::lookup("x", no_env, Some(&dir.path().join("none.json"))).unwrap(),
            None
        );

        let env = |k: &str| match k {
            ENV_USERNAME => Some("carol".to_owned()),
            ENV_PASSWORD => Some("envpw".to_owned()),
            _ => None,
        };
        let c = Credentials::lookup("127.0.0.1:5000", env, Some(&path))
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_str(), c.source.as_str()),
            ("carol", "the environment")
        );
        let half = |k: &str| (k == ENV_USERNAME).then(|| "carol".to_owned());
        assert!(Credentials::lookup("h", half, None).is_err());

        std::fs::write(&path, r#"{"auths": {"h": {"auth": "not base64 at all!"}}}"#).unwrap();
        let e = Credentials::lookup("h", no_env, Some(&path))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not base64") && !e.contains("at all"), "{e}");
        std::fs::write(&path, "{ \"auths\": secret-ish garbage").unwrap();
        let e = Credentials::lookup("h", no_env, Some(&path))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not a Docker config") && !e.contains("garbage"),
            "{e}"
        );
    }

    #[test]
    fn credential_helpers_are_asked_in_dockers_order() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        // A helper speaking the protocol: it knows one host.
        let helper = |name: &str, user: &str| {
            let path = dir.path().join(format!("docker-credential-{name}"));
            std::fs::write(
                &path,
                format!(
                    "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread host\n[ \"$host\" = 127.0.0.1:5000 ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\necho '{{\"ServerURL\":\"127.0.0.1:5000\",\"Username\":\"{user}\",\"Secret\":\"helper-s3cret\"}}'\n"
                ),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        helper("store", "from-store");
        helper("special", "from-special");
        std::fs::write(
            dir.path().join("docker-credential-garbled"),
            "#!/bin/sh\necho helper-s3cret\n",
        )
        .unwrap();
        std::fs::set_permissions(
            dir.path().join("docker-credential-garbled"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let config = dir.path().join("config.json");
        std::fs::write(
            &config,
            r#"{"auths": {"127.0.0.1:5000": {}}, "credsStore": "store",
                "credHelpers": {"127.0.0.1:5000": "special", "127.0.0.1:7000": "garbled", "127.0.0.1:8000": "missing"}}"#,
        )
        .unwrap();
        let path = dir.path().to_string_lossy().into_owned();
        let env = |k: &str| (k == "PATH").then(|| path.clone());
        let c = Credentials::lookup("127.0.0.1:5000", env, Some(&config))
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str(), c.source.as_str()),
            ("from-special", "helper-s3cret", "docker-credential-special")
        );
        // Not in credHelpers: the store, which knows nothing of this host.
        assert_eq!(
            Credentials::lookup("127.0.0.1:6000", env, Some(&config)).unwrap(),
            None
        );
        let e = Credentials::lookup("127.0.0.1:7000", env, Some(&config))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("docker-credential-garbled get answered") && !e.contains("s3cret"),
            "{e}"
        );
        let e = Credentials::lookup("127.0.0.1:8000", env, Some(&config))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("docker-credential-missing, which is not on PATH"),
            "{e}"
        );
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let c = Credentials::new("alice", "hunter2", "the environment");
        let client = Client::new(
            Target::parse("127.0.0.1:1/x", true).unwrap(),
            Some(c.clone()),
            ClientOptions::default(),
        );
        for text in [format!("{c:?}"), format!("{client:?}")] {
            assert!(
                text.contains("alice") && !text.contains("hunter2"),
                "{text}"
            );
        }
    }

    #[test]
    fn escapes_query_values_and_finds_media_types() {
        assert_eq!(
            query_escape("repository:a/b:pull,push"),
            "repository:a/b:pull%2Cpush"
        );
        assert_eq!(query_escape("a b&c"), "a%20b%26c");
        assert_eq!(
            manifest_media_type(br#"{"schemaVersion":2,"manifests":[]}"#),
            MEDIA_TYPE_IMAGE_INDEX
        );
        assert_eq!(
            manifest_media_type(br#"{"mediaType":"application/x","manifests":[]}"#),
            "application/x"
        );
        assert_eq!(manifest_media_type(b"{}"), MEDIA_TYPE_IMAGE_MANIFEST);
    }

    /// A registry that wants a bearer token from its own token endpoint,
    /// which wants basic credentials; one request per connection.
    struct TokenRegistry {
        port: u16,
        log: Arc<Mutex<Vec<String>>>,
    }

    const TOKEN: &str = "tok-9f8e7d";

    impl TokenRegistry {
        fn start(user: &'static str, password: &'static str) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let log = Arc::new(Mutex::new(Vec::new()));
            let seen = Arc::clone(&log);
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        continue;
                    }
                    let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let mut auth = String::new();
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':')
                            && k.eq_ignore_ascii_case("authorization")
                        {
                            auth = v.trim().to_owned();
                        }
                    }
                    let basic = format!("Basic {}", BASE64.encode(format!("{user}:{password}")));
                    let (status, extra, body) = if target.starts_with("/token?") {
                        seen.lock().unwrap().push(target.clone());
                        if auth == basic {
                            (
                                "200 OK",
                                String::new(),
                                format!(r#"{{"access_token":"{TOKEN}"}}"#),
                            )
                        } else {
                            ("401 Unauthorized", String::new(), String::new())
                        }
                    } else if auth == format!("Bearer {TOKEN}") {
                        seen.lock().unwrap().push(format!("authorised {target}"));
                        ("404 Not Found", String::new(), String::new())
                    } else {
                        let challenge = format!(
                            "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"test\",scope=\"repository:golden/x:pull\"\r\n"
                        );
                        ("401 Unauthorized", challenge, String::new())
                    };
                    let mut stream = stream;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
            TokenRegistry { port, log }
        }

        fn client(&self, password: &str) -> Client {
            Client::new(
                Target::parse(&format!("127.0.0.1:{}/golden", self.port), true).unwrap(),
                Some(Credentials::new("alice", password, "the environment")),
                ClientOptions {
                    attempts: 1,
                    ..ClientOptions::default()
                },
            )
        }
    }

    #[test]
    fn bearer_challenge_fetches_a_token_with_basic_credentials_and_reuses_it() {
        let server = TokenRegistry::start("alice", "right-pw");
        let client = server.client("right-pw");
        let digest = sha256_digest(b"x");
        assert!(!client.blob_exists("golden/x", &digest).unwrap());
        assert!(!client.blob_exists("golden/x", &digest).unwrap());
        let log = server.log.lock().unwrap().clone();
        assert_eq!(
            log,
            [
                "/token?service=test&scope=repository:golden/x:pull".to_owned(),
                format!("authorised /v2/golden/x/blobs/{digest}"),
                format!("authorised /v2/golden/x/blobs/{digest}"),
            ]
        );
    }

    #[test]
    fn refused_credentials_name_the_registry_and_never_the_secret() {
        let server = TokenRegistry::start("alice", "right-pw");
        let client = server.client("wrong-pw-5ecret");
        let err = client
            .blob_exists("golden/x", &sha256_digest(b"x"))
            .unwrap_err();
        let text = err.to_string();
        assert!(err.unauthorized);
        assert!(
            text.starts_with(&format!("registry 127.0.0.1:{}/golden/x: ", server.port)),
            "{text}"
        );
        assert!(text.contains("authentication failed"), "{text}");
        assert!(!text.contains("5ecret") && !text.contains(TOKEN) && !text.contains('\n'));
    }

    #[test]
    fn an_unreachable_registry_fails_quickly_naming_it() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = Client::new(
            Target::parse(&format!("127.0.0.1:{port}/golden"), true).unwrap(),
            None,
            ClientOptions {
                first_backoff: Duration::from_millis(1),
                ..ClientOptions::default()
            },
        );
        let text = client.ping().unwrap_err().to_string();
        assert!(
            text.starts_with(&format!("registry 127.0.0.1:{port}: checking the API: ")),
            "{text}"
        );
        assert!(text.ends_with("(after 3 attempts)"), "{text}");
    }

    /// Every upload path and manifest call against the real
    /// docker-registry: chunked and monolithic uploads, a mount from
    /// another repository, exact manifest bytes back.
    #[test]
    fn uploads_mounts_and_manifests_against_docker_registry() {
        use plinth_testkit::registry::{REGISTRY_TOOL, Registry};
        let registry = match Registry::start(None) {
            Ok(r) => r,
            Err(e) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "{REGISTRY_TOOL} is required in CI: {e}"
                );
                eprintln!("skipped: {e}");
                return;
            }
        };
        let client = Client::new(
            Target::parse(&format!("{}/t", registry.host()), true).unwrap(),
            None,
            ClientOptions {
                chunk_threshold: 64 << 10,
                chunk_size: 50_000,
                ..ClientOptions::default()
            },
        );
        client.ping().unwrap();
        let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let small = crate::oci::EMPTY_BLOB;
        let (big_digest, small_digest) = (sha256_digest(&big), sha256_digest(small));
        assert!(!client.blob_exists("t/a", &big_digest).unwrap());
        let how = client.upload_blob("t/a", &big_digest, &big, None).unwrap();
        assert_eq!(how, Upload::Chunked);
        let how = client
            .upload_blob("t/a", &small_digest, small, None)
            .unwrap();
        assert_eq!(how, Upload::Monolithic);
        assert!(client.blob_exists("t/a", &big_digest).unwrap());
        let how = client
            .upload_blob("t/b", &big_digest, &big, Some("t/a"))
            .unwrap();
        assert_eq!(how, Upload::Mounted);
        // Not there to mount: the session turns into an ordinary upload.
        let how = client
            .upload_blob("t/b", &small_digest, small, Some("t/c"))
            .unwrap();
        assert_eq!(how, Upload::Monolithic);

        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MEDIA_TYPE_IMAGE_MANIFEST}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{small_digest}","size":2}},"layers":[{{"mediaType":"application/octet-stream","digest":"{big_digest}","size":{}}}]}}"#,
            big.len()
        );
        let digest = sha256_digest(manifest.as_bytes());
        assert_eq!(client.manifest_digest("t/b", &digest).unwrap(), None);
        client
            .put_manifest(
                "t/b",
                &digest,
                MEDIA_TYPE_IMAGE_MANIFEST,
                manifest.as_bytes(),
            )
            .unwrap();
        client
            .put_manifest("t/b", "v1", MEDIA_TYPE_IMAGE_MANIFEST, manifest.as_bytes())
            .unwrap();
        assert_eq!(
            client.manifest_digest("t/b", "v1").unwrap(),
            Some(digest.clone())
        );
        let (media_type, bytes) = client.get_manifest("t/b", "v1").unwrap().unwrap();
        assert_eq!(
            (media_type.as_str(), bytes.as_slice()),
            (MEDIA_TYPE_IMAGE_MANIFEST, manifest.as_bytes())
        );
        assert!(!client.referrers_api("t/b", &digest).unwrap());
        // Children first: a manifest whose blob is missing is refused.
        let missing = sha256_digest(b"missing");
        let orphan = manifest.replace(&big_digest, &missing);
        let e = client
            .put_manifest("t/b", "v2", MEDIA_TYPE_IMAGE_MANIFEST, orphan.as_bytes())
            .unwrap_err()
            .to_string();
        let start = format!(
            "registry {}/t/b: pushing manifest v2: HTTP 400: MANIFEST_BLOB_UNKNOWN",
            registry.host()
        );
        assert!(e.starts_with(&start), "{e}");
    }
}
