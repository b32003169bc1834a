//! The client proper: one registry, its connections and authentication
//! state, retries, and the individual operations (blob and manifest
//! existence, uploads, manifest pushes and reads, the referrers probe).

use super::credentials::Credentials;
use super::target::Target;
use super::{RegistryError, Result};
use crate::download::http::redact;
use crate::oci::{MEDIA_TYPE_IMAGE_INDEX, MEDIA_TYPE_IMAGE_MANIFEST};
use crate::support::digest::sha256_digest;
use crate::support::retry::{Attempt, RetryPolicy};
use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// What a manifest request accepts: plinth pushes only OCI documents.
/// The most bytes one response may carry: manifests are a few KiB and a
/// distroless layer a few MiB; anything beyond is refused unread.
const MAX_RESPONSE_BYTES: u64 = 1 << 30;

const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

// ---------------------------------------------------------------------------
// The client

/// Timeouts, retries and upload sizes.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Tries per request for connection errors and 5xx answers. Few, so
    /// that an unreachable registry fails the command in seconds.
    pub retry: RetryPolicy,
    /// Blobs larger than this go up in chunks.
    pub chunk_threshold: u64,
    pub chunk_size: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(120),
            retry: RetryPolicy {
                attempts: 3,
                first_backoff: Duration::from_millis(250),
            },
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
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) headers: ureq::http::HeaderMap,
    pub(super) body: Vec<u8>,
}

impl Reply {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The registry's error codes (`{"errors":[{"code":...}]}`) or the
    /// start of a text body, for messages.
    pub(super) fn reason(&self) -> String {
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
pub(super) struct AuthState {
    /// Set once the registry asked for basic authentication.
    pub(super) basic: bool,
    /// Tokens by repository.
    pub(super) tokens: HashMap<String, String>,
}

/// One registry, with its authentication state. Safe to share between
/// threads.
pub struct Client {
    pub(super) agent: ureq::Agent,
    pub(super) target: Target,
    pub(super) credentials: Option<Credentials>,
    pub(super) options: ClientOptions,
    pub(super) auth: Mutex<AuthState>,
    pub(super) referrers_api: OnceLock<bool>,
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

    pub(super) fn error(&self, repository: &str, what: String) -> RegistryError {
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

    /// The bytes of blob `digest` in `repository`, checked against it and
    /// against the `size` its descriptor gives.
    pub fn get_blob(&self, repository: &str, digest: &str, size: u64) -> Result<Vec<u8>> {
        let url = self.url(repository, &format!("blobs/{digest}"));
        let what = format!("reading blob {digest}");
        let reply = self.request("GET", &url, repository, &[], &[], &what)?;
        if reply.status != 200 {
            return Err(self.error(repository, format!("{what}: {}", reply.reason())));
        }
        if reply.body.len() as u64 != size {
            return Err(self.error(
                repository,
                format!(
                    "{what}: the registry sent {} bytes, the descriptor says {size}",
                    reply.body.len()
                ),
            ));
        }
        let actual = sha256_digest(&reply.body);
        if actual != digest {
            return Err(self.error(repository, format!("{what}: the registry sent {actual}")));
        }
        Ok(reply.body)
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
        let label = format!("{method} {}", redact(url));
        let outcome = self.options.retry.run(&label, || {
            match self.send(method, url, repository, headers, body) {
                Ok(reply) if reply.status < 500 => Attempt::Done(reply),
                Ok(reply) => Attempt::Transient(reply.reason()),
                Err(why) => Attempt::Transient(why),
            }
        });
        outcome.map_err(|failure| RegistryError {
            place: self.place(repository),
            what: format!("{what}: {}{}", failure.error, failure.attempts_note()),
            unauthorized: false,
        })
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
                .take(MAX_RESPONSE_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("reading the response: {e}"))?;
            if bytes.len() as u64 > MAX_RESPONSE_BYTES {
                return Err(format!(
                    "the response is larger than {MAX_RESPONSE_BYTES} bytes"
                ));
            }
        }
        Ok(Reply {
            status,
            headers: parts.headers,
            body: bytes,
        })
    }
}

/// A transport error in words, without any URL (ureq's messages can hold
/// one, and upload URLs carry session state).
pub(super) fn transport_error(e: ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => io.to_string(),
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        other => redact(&other.to_string()),
    }
}

/// Percent-encodes a query value (scopes hold ':' and ',').
pub(super) fn query_escape(value: &str) -> String {
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
