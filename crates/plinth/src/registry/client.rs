//! The client proper: one registry, its transport and authentication
//! state, retries, and the individual operations (blob and manifest
//! existence, uploads, manifest pushes and reads, the referrers probe).
//!
//! Every request goes through [`crate::net`]: the registry's
//! `Authorization` is bound to its origin (scheme, host, port), so a
//! redirect to object storage or an upload `Location` on another host gets
//! none; plain HTTP only to loopback, after every `Location` too; replies
//! are read up to [`MAX_JSON_BYTES`].

use super::credentials::Credentials;
use super::target::Target;
use super::{RegistryError, Result};
use crate::net::origin::{check_url, resolve};
use crate::net::{
    Authorization, BodyLimit, Environment, Exchange, NetError, Origin, Payload, PlainHttp,
    Transport, TransportOptions, redact_url,
};
use crate::oci::{MEDIA_TYPE_IMAGE_INDEX, MEDIA_TYPE_IMAGE_MANIFEST};
use crate::support::digest::sha256_digest;
use crate::support::retry::{Attempt, RetryPolicy};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// What a manifest request accepts: plinth pushes only OCI documents.
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// The most a registry's JSON answer (a manifest, an index, a token) may
/// be: the distribution spec lets registries refuse manifests above 4 MiB.
pub const MAX_JSON_BYTES: u64 = 4 << 20;

/// How much of an error answer is kept for the message.
const ERROR_BODY_BYTES: u64 = 64 << 10;

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
    /// The largest blob read back (signature and attestation layers, layers
    /// `diff` compares): what comes from a registry is bounded.
    pub max_response: u64,
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
            max_response: 1 << 30,
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
    /// The URL that answered, after redirects: a relative `Location`
    /// resolves against it.
    pub(super) url: String,
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
    pub(super) transport: Transport,
    /// Where the registry's credentials and tokens may go.
    pub(super) origin: Origin,
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

/// What an upload sends: bytes at hand, or a file read as it goes.
#[derive(Clone, Copy)]
enum BlobSource<'a> {
    Bytes(&'a [u8]),
    File { path: &'a Path, size: u64 },
}

impl BlobSource<'_> {
    fn size(&self) -> u64 {
        match self {
            BlobSource::Bytes(b) => b.len() as u64,
            BlobSource::File { size, .. } => *size,
        }
    }

    /// `len` bytes from `offset`.
    fn part(&self, offset: u64, len: u64) -> Payload<'_> {
        match *self {
            BlobSource::Bytes(b) => {
                let start = usize::try_from(offset).unwrap_or(b.len()).min(b.len());
                let end = usize::try_from(offset + len)
                    .unwrap_or(b.len())
                    .min(b.len());
                Payload::Bytes(&b[start..end])
            }
            BlobSource::File { path, .. } => Payload::File { path, offset, len },
        }
    }
}

impl Client {
    /// A client for `target` that trusts what the machine trusts and uses
    /// the proxies of the process environment.
    pub fn new(target: Target, credentials: Option<Credentials>, options: ClientOptions) -> Self {
        let transport =
            Transport::from_env(&Environment::from_process(), TransportOptions::default());
        Self::with_transport(target, credentials, options, &transport)
    }

    /// A client for `target` through `transport` (for the registry's own
    /// trust: [`crate::net::Network::registry`]), with the timeouts of
    /// `options`.
    pub fn with_transport(
        target: Target,
        credentials: Option<Credentials>,
        options: ClientOptions,
        transport: &Transport,
    ) -> Self {
        let transport = transport.with_options(TransportOptions {
            connect_timeout: options.connect_timeout,
            read_timeout: options.read_timeout,
            body_timeout: options.read_timeout,
            plain_http: PlainHttp::LoopbackOnly,
            ..TransportOptions::default()
        });
        Client {
            transport,
            origin: target.origin(),
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
        let reply = self.request("GET", &url, "", &[], Payload::None, "checking the API")?;
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
        let reply = self.request("HEAD", &url, repository, &[], Payload::None, &what)?;
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
        self.upload(repository, digest, BlobSource::Bytes(bytes), mount_from)
    }

    /// Like [`upload_blob`](Self::upload_blob), with the content read from
    /// the file at `path` (of `size` bytes, whose digest the caller has
    /// checked) as it is sent, never whole in memory.
    pub fn upload_blob_file(
        &self,
        repository: &str,
        digest: &str,
        path: &Path,
        size: u64,
        mount_from: Option<&str>,
    ) -> Result<Upload> {
        self.upload(
            repository,
            digest,
            BlobSource::File { path, size },
            mount_from,
        )
    }

    fn upload(
        &self,
        repository: &str,
        digest: &str,
        blob: BlobSource<'_>,
        mount_from: Option<&str>,
    ) -> Result<Upload> {
        let what = format!("uploading blob {digest}");
        let query = match mount_from {
            Some(from) => format!("?mount={digest}&from={}", query_escape(from)),
            None => String::new(),
        };
        let url = self.url(repository, &format!("blobs/uploads/{query}"));
        let reply = self.request("POST", &url, repository, &[], Payload::None, &what)?;
        match reply.status {
            201 if mount_from.is_some() => return Ok(Upload::Mounted),
            202 => {}
            _ => return Err(self.error(repository, format!("{what}: {}", reply.reason()))),
        }
        let mut location = self.location(repository, &reply, &what)?;
        let size = blob.size();
        let chunked = size > self.options.chunk_threshold;
        let last = if chunked {
            let chunk = self.options.chunk_size.max(1);
            let mut start = 0;
            while start < size {
                let len = chunk.min(size - start);
                let range = format!("{start}-{}", start + len - 1);
                let headers = [
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Range", range.as_str()),
                ];
                let part = blob.part(start, len);
                let reply = self.request("PATCH", &location, repository, &headers, part, &what)?;
                if reply.status != 202 {
                    return Err(self.error(repository, format!("{what}: {}", reply.reason())));
                }
                location = self.location(repository, &reply, &what)?;
                start += len;
            }
            Payload::None
        } else {
            blob.part(0, size)
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

    /// The upload session's `Location`, resolved against the URL that
    /// answered. It may be on another host (object storage): that host
    /// gets the upload but never the registry's credentials, and only
    /// over https unless it is loopback.
    fn location(&self, repository: &str, reply: &Reply, what: &str) -> Result<String> {
        let location = reply.header("location").ok_or_else(|| {
            self.error(repository, format!("{what}: the registry sent no Location"))
        })?;
        let url = resolve(&reply.url, location.trim()).map_err(|why| {
            self.error(
                repository,
                format!("{what}: upload Location {}: {why}", redact_url(location)),
            )
        })?;
        check_url(&url, PlainHttp::LoopbackOnly).map_err(|why| {
            self.error(
                repository,
                format!(
                    "{what}: refusing upload Location {}: {why}",
                    redact_url(&url)
                ),
            )
        })?;
        Ok(url)
    }

    /// The digest `reference` (a tag or digest) resolves to in
    /// `repository`, or `None` if it does not exist.
    pub fn manifest_digest(&self, repository: &str, reference: &str) -> Result<Option<String>> {
        let url = self.url(repository, &format!("manifests/{reference}"));
        let what = format!("checking manifest {reference}");
        let headers = [("Accept", ACCEPT_MANIFESTS)];
        let reply = self.request("HEAD", &url, repository, &headers, Payload::None, &what)?;
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
        let reply = self.request("GET", &url, repository, &headers, Payload::None, &what)?;
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
        let reply = self.request(
            "PUT",
            &url,
            repository,
            &headers,
            Payload::Bytes(bytes),
            &what,
        )?;
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

    /// The content of blob `digest` in `repository`, checked against the
    /// digest; `None` if the registry does not have it.
    pub fn get_blob(&self, repository: &str, digest: &str) -> Result<Option<Vec<u8>>> {
        let what = format!("reading blob {digest}");
        check_digest(digest).map_err(|why| self.error(repository, format!("{what}: {why}")))?;
        let url = self.url(repository, &format!("blobs/{digest}"));
        let reply = self.request("GET", &url, repository, &[], Payload::None, &what)?;
        match reply.status {
            200 if sha256_digest(&reply.body) == digest => Ok(Some(reply.body)),
            200 => Err(self.error(
                repository,
                format!("{what}: the registry served content with another digest"),
            )),
            404 => Ok(None),
            _ => Err(self.error(repository, format!("{what}: {}", reply.reason()))),
        }
    }

    /// The referrers of `digest` as the referrers API lists them, or `None`
    /// where the registry does not serve the API (then the tag schema
    /// fallback, `sha256-<hex>`, is where they are listed).
    pub fn referrers(&self, repository: &str, digest: &str) -> Result<Option<crate::oci::Index>> {
        let what = format!("listing the referrers of {digest}");
        check_digest(digest).map_err(|why| self.error(repository, format!("{what}: {why}")))?;
        if !self.referrers_api(repository, digest)? {
            return Ok(None);
        }
        let url = self.url(repository, &format!("referrers/{digest}"));
        let headers = [("Accept", MEDIA_TYPE_IMAGE_INDEX)];
        let reply = self.request("GET", &url, repository, &headers, Payload::None, &what)?;
        match reply.status {
            200 => serde_json::from_slice(&reply.body)
                .map(Some)
                .map_err(|e| self.error(repository, format!("{what}: not an image index: {e}"))),
            404 => Ok(None),
            _ => Err(self.error(repository, format!("{what}: {}", reply.reason()))),
        }
    }

    /// Whether the registry serves the referrers API, asked once per
    /// client: a `200` with an image index says yes, anything else no.
    pub fn referrers_api(&self, repository: &str, digest: &str) -> Result<bool> {
        if let Some(known) = self.referrers_api.get() {
            return Ok(*known);
        }
        let url = self.url(repository, &format!("referrers/{digest}"));
        let headers = [("Accept", MEDIA_TYPE_IMAGE_INDEX)];
        let reply = self.request(
            "GET",
            &url,
            repository,
            &headers,
            Payload::None,
            "probing referrers",
        )?;
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
        payload: Payload<'_>,
        what: &str,
    ) -> Result<Reply> {
        let mut reply = self.with_retries(method, url, repository, headers, payload, what)?;
        if reply.status == 401 {
            self.authenticate(repository, &reply, what)?;
            reply = self.with_retries(method, url, repository, headers, payload, what)?;
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
        payload: Payload<'_>,
        what: &str,
    ) -> Result<Reply> {
        let label = format!("{method} {}", redact_url(url));
        let outcome = self.options.retry.run(&label, || {
            match self.send(method, url, repository, headers, payload) {
                Ok(reply) if reply.status < 500 => Attempt::Done(reply),
                Ok(reply) => Attempt::Transient(reply.reason()),
                Err(e) if e.is_transient() => Attempt::Transient(e.to_string()),
                Err(e) => Attempt::Final(e.to_string()),
            }
        });
        outcome.map_err(|failure| RegistryError {
            place: self.place(repository),
            what: format!("{what}: {}{}", failure.error, failure.attempts_note()),
            unauthorized: false,
        })
    }

    /// How much of a successful answer is read: manifests, indexes and
    /// other JSON up to [`MAX_JSON_BYTES`]; a blob read back (a signature
    /// or attestation layer, checked against its digest afterwards) up to
    /// `max_response`.
    fn body_limit(&self, method: &str, url: &str) -> u64 {
        let path = url.split('?').next().unwrap_or(url);
        if method == "GET" && path.contains("/blobs/sha256:") {
            self.options.max_response
        } else {
            MAX_JSON_BYTES
        }
    }

    /// One exchange and its redirects, with the registry's
    /// `Authorization` for the registry's origin only. `Err` is a
    /// transport failure, in words without query or credentials.
    fn send(
        &self,
        method: &str,
        url: &str,
        repository: &str,
        headers: &[(&str, &str)],
        payload: Payload<'_>,
    ) -> std::result::Result<Reply, NetError> {
        let authorization = self.authorization(repository);
        let answer = self.transport.call(Exchange {
            method,
            url,
            headers,
            authorization: authorization.as_deref().map(|value| Authorization {
                value,
                origin: &self.origin,
            }),
            payload,
        })?;
        read_reply(method, answer, self.body_limit(method, url))
    }
}

/// The answer read whole: up to `limit` bytes of a success (a larger one
/// is an error), the start of a failure's body for its message.
pub(super) fn read_reply(
    method: &str,
    answer: crate::net::Followed,
    limit: u64,
) -> std::result::Result<Reply, NetError> {
    let status = answer.status();
    let headers = answer.response.headers().clone();
    let url = answer.url.clone();
    let body = if method == "HEAD" {
        Vec::new()
    } else if (200..300).contains(&status) {
        answer.read_body(BodyLimit::AtMost(limit))?
    } else {
        answer.body_prefix(ERROR_BODY_BYTES)
    };
    Ok(Reply {
        status,
        headers,
        body,
        url,
    })
}

/// A digest that goes into a URL path: `sha256:` and 64 lowercase hex
/// digits, nothing that could change the path or add a query.
fn check_digest(digest: &str) -> std::result::Result<(), String> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if crate::support::digest::is_lower_hex(hex, 64) => Ok(()),
        _ => Err(format!("{digest:?} is not a sha256 digest")),
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
