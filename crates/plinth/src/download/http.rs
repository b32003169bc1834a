//! Downloads from the mirrors: HTTP(S) through [`crate::net`] (the
//! machine's trust and proxies, the mirror's own CA files, redirects) and
//! `file://`, with retries and bodies capped by what is known of them.
//!
//! Blocking on purpose: the lock step fetches a handful of indices and the
//! build a few dozen packages, which a small thread pool covers without an
//! async runtime.
//!
//! Every body has a limit: the size a signed Release gives an index, the
//! size the lock gives a `.deb` ([`BodyLimit::Exactly`]), a fixed ceiling
//! for the `InRelease` itself ([`MAX_INRELEASE_BYTES`]). A body that
//! announces or sends more fails at once and is not fetched again; one cut
//! short is retried.

use std::io::Read;
use std::time::Duration;

use crate::net::{BodyLimit, Exchange, NetError, Network, PlainHttp, TransportOptions, redact_url};
use crate::support::retry::{Attempt, RetryPolicy};

/// The most an `InRelease` may be. Debian's are about 50-200 KB; the
/// bound only keeps an endless answer from filling memory.
pub const MAX_INRELEASE_BYTES: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
#[error("GET {url}: {why}")]
pub struct FetchError {
    /// The URL without user information or query.
    pub url: String,
    pub why: String,
    /// Whether the server answered 404 (a missing index is not a retry case
    /// for callers that have fallbacks, such as by-hash paths).
    pub not_found: bool,
}

/// Timeouts and retry policy for one client.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub connect_timeout: Duration,
    /// Longest silence while waiting for a response.
    pub read_timeout: Duration,
    pub retry: RetryPolicy,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
            retry: RetryPolicy {
                attempts: 4,
                first_backoff: Duration::from_millis(500),
            },
        }
    }
}

/// Downloads for the mirrors of a run: each archive through its own
/// transport ([`Network::mirror`]). Cheap to clone.
#[derive(Clone)]
pub struct Fetcher {
    network: Network,
    options: FetchOptions,
}

/// One failed attempt, and whether another might do better.
struct Failed {
    error: FetchError,
    transient: bool,
}

impl Fetcher {
    pub fn new(network: &Network, options: FetchOptions) -> Self {
        let transport = TransportOptions {
            connect_timeout: options.connect_timeout,
            read_timeout: options.read_timeout,
            // A package takes its time on a slow mirror; silence does not.
            body_timeout: options.read_timeout * 10,
            // Mirrors are plain HTTP often: what they serve is checked
            // against signed hashes, and they get no credentials.
            plain_http: PlainHttp::Anywhere,
            ..TransportOptions::default()
        };
        Fetcher {
            network: network.with_options(transport),
            options,
        }
    }

    /// Downloads `url` of the mirror of `archive`, at most as large as
    /// `limit` says, retrying transient failures (timeouts, connection
    /// errors, 5xx, and 404 too, since mirrors answer it for a short while
    /// during an update) with exponential backoff.
    pub fn get(&self, archive: &str, url: &str, limit: BodyLimit) -> Result<Vec<u8>, FetchError> {
        let label = redact_url(url);
        let outcome = self
            .options
            .retry
            .run(&label, || match self.get_once(archive, url, limit) {
                Ok(bytes) => Attempt::Done(bytes),
                Err(f) if f.transient => Attempt::Transient(f.error),
                Err(f) => Attempt::Final(f.error),
            });
        outcome.map_err(|failure| {
            let note = failure.attempts_note();
            let mut err = failure.error;
            err.why.push_str(&note);
            err
        })
    }

    /// Like [`get`](Self::get), but a 404 answers `None` at once: for
    /// optional paths that have a fallback.
    pub fn get_unless_missing(
        &self,
        archive: &str,
        url: &str,
        limit: BodyLimit,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        match self.get_once(archive, url, limit) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(f) if f.error.not_found => Ok(None),
            Err(f) if !f.transient => Err(f.error),
            Err(_) => self.get(archive, url, limit).map(Some),
        }
    }

    fn get_once(&self, archive: &str, url: &str, limit: BodyLimit) -> Result<Vec<u8>, Failed> {
        let fail = |why: String, transient: bool, not_found: bool| Failed {
            error: FetchError {
                url: redact_url(url),
                why,
                not_found,
            },
            transient,
        };
        let net = |e: NetError| {
            let transient = e.is_transient();
            fail(e.to_string(), transient, false)
        };
        if let Some(path) = url.strip_prefix("file://") {
            // A local file that cannot be read will not become readable.
            return read_file(path, limit).map_err(|(why, not_found)| fail(why, false, not_found));
        }
        let answer = self
            .network
            .mirror(archive)
            .call(Exchange::get(url))
            .map_err(net)?;
        let status = answer.response.status();
        if !status.is_success() {
            return Err(fail(format!("HTTP {status}"), true, status.as_u16() == 404));
        }
        answer.read_body(limit).map_err(net)
    }
}

/// A `file://` download, held to the same limit.
fn read_file(path: &str, limit: BodyLimit) -> Result<Vec<u8>, (String, bool)> {
    let file = std::fs::File::open(path)
        .map_err(|e| (e.to_string(), e.kind() == std::io::ErrorKind::NotFound))?;
    let (max, exact) = match limit {
        BodyLimit::Exactly(n) => (n, true),
        BodyLimit::AtMost(n) => (n, false),
    };
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| (e.to_string(), false))?;
    let got = bytes.len() as u64;
    if got > max || (exact && got != max) {
        let size = if got > max {
            format!("more than {max}")
        } else {
            got.to_string()
        };
        return Err((
            format!(
                "is {size} bytes, expected {}{max}",
                if exact { "" } else { "at most " }
            ),
            false,
        ));
    }
    Ok(bytes)
}
