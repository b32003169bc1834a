//! Where images go: a registry host and a repository prefix
//! (`HOST[:PORT]/PREFIX`), parsed strictly, whether plain HTTP may be
//! spoken to it (loopback only), and the origin its credentials are bound
//! to. Docker Hub's names are [`super::dockerhub`]'s business.

use super::{RegistryError, Result, dockerhub};
use crate::net::origin::{Origin, Scheme, is_loopback_host};
use std::fmt;

// ---------------------------------------------------------------------------
// The target

/// Where to publish: a registry host and a repository prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host` or `host:port` as the registry is named (one name for all of
    /// Docker Hub's aliases, see [`dockerhub::canonical`]);
    /// [`api_host`](Self::api_host) is where requests go.
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
        if insecure && !is_loopback_host(host) {
            return Err(bad(format!(
                "--insecure (plain HTTP) is for loopback registries only, not {host}"
            )));
        }
        let host = match port {
            None => dockerhub::canonical(host).to_ascii_lowercase(),
            Some(_) => authority.to_ascii_lowercase(),
        };
        Ok(Target {
            host,
            prefix: prefix.to_owned(),
            insecure,
        })
    }

    /// Where API requests go: the host itself, or Docker Hub's API host.
    pub fn api_host(&self) -> &str {
        dockerhub::api_host(&self.host)
    }

    /// `http(s)://host[:port]` of the API.
    pub fn base_url(&self) -> String {
        let scheme = if self.insecure { "http" } else { "https" };
        format!("{scheme}://{}", self.api_host())
    }

    /// The origin the registry's credentials are bound to.
    pub fn origin(&self) -> Origin {
        let scheme = if self.insecure {
            Scheme::Http
        } else {
            Scheme::Https
        };
        let (host, port) = match self.api_host().rsplit_once(':') {
            // Checked when parsed.
            Some((h, p)) => (h, p.parse().unwrap_or(scheme.default_port())),
            None => (self.api_host(), scheme.default_port()),
        };
        Origin {
            scheme,
            host: host.to_owned(),
            port,
        }
    }

    /// The registry's repository name for an image repository
    /// (`library/NAME` for a one-component name on Docker Hub).
    pub fn repository(&self, name: &str) -> String {
        let path = if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        };
        dockerhub::repository(&self.host, &path)
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
