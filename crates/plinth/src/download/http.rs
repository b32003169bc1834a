//! HTTP (and `file://`) downloads with timeouts and retries with backoff.
//!
//! Blocking on purpose: the lock step fetches a handful of indices and the
//! build a few dozen packages, which a small thread pool covers without an
//! async runtime.

use std::io::Read;
use std::time::Duration;

use crate::support::retry::{Attempt, RetryPolicy};

#[derive(Debug, thiserror::Error)]
#[error("GET {url}: {why}")]
pub struct FetchError {
    /// The URL without any user information.
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
    /// Longest silence while waiting for a response or between body reads.
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

#[derive(Clone)]
pub struct Fetcher {
    agent: ureq::Agent,
    options: FetchOptions,
}

impl Fetcher {
    pub fn new(options: FetchOptions) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(options.connect_timeout))
            .timeout_recv_response(Some(options.read_timeout))
            .timeout_recv_body(Some(options.read_timeout * 10))
            .http_status_as_error(false)
            .user_agent(concat!("plinth/", env!("CARGO_PKG_VERSION")))
            .build();
        Fetcher {
            agent: config.into(),
            options,
        }
    }

    /// Downloads `url` whole, retrying transient failures (timeouts,
    /// connection errors, 5xx, and 404 too, since mirrors answer it for a
    /// short while during an update) with exponential backoff.
    pub fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        // A local file that cannot be read will not become readable.
        let transient = !url.starts_with("file:");
        let label = redact(url);
        let outcome = self.options.retry.run(&label, || match self.get_once(url) {
            Ok(bytes) => Attempt::Done(bytes),
            Err(err) if transient => Attempt::Transient(err),
            Err(err) => Attempt::Final(err),
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
    pub fn get_unless_missing(&self, url: &str) -> Result<Option<Vec<u8>>, FetchError> {
        match self.get_once(url) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.not_found => Ok(None),
            Err(_) => self.get(url).map(Some),
        }
    }

    fn get_once(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let fail = |why: String, not_found: bool| FetchError {
            url: redact(url),
            why,
            not_found,
        };
        if let Some(path) = url.strip_prefix("file://") {
            return std::fs::read(path)
                .map_err(|e| fail(e.to_string(), e.kind() == std::io::ErrorKind::NotFound));
        }
        tracing::debug!("GET {}", redact(url));
        let response = self
            .agent
            .get(url)
            .call()
            .map_err(|e| fail(e.to_string(), false))?;
        let status = response.status();
        if !status.is_success() {
            return Err(fail(format!("HTTP {status}"), status.as_u16() == 404));
        }
        let mut bytes = Vec::new();
        response
            .into_body()
            .into_reader()
            .read_to_end(&mut bytes)
            .map_err(|e| fail(format!("reading the body: {e}"), false))?;
        Ok(bytes)
    }
}

/// Strips `user:password@` so that credentials never reach logs or errors.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..scheme_end + 3], &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_credentials() {
        assert_eq!(
            super::redact("http://u:p@mirror.example/debian/x"),
            "http://mirror.example/debian/x"
        );
        assert_eq!(
            super::redact("http://m.example/a@b"),
            "http://m.example/a@b"
        );
    }
}
