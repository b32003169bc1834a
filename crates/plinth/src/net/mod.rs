//! The one way plinth talks HTTP: every request to a Debian mirror, an OCI
//! registry, a token realm, or the object storage a registry redirects to
//! goes through a [`Transport`].
//!
//! What it owns, and why each part exists:
//!
//! - [`env`]: the variables that decide trust and proxies, read once into
//!   an [`Environment`] value that everything takes (tests pass their own).
//! - [`trust`]: the CAs every HTTPS connection trusts: the machine's store
//!   as OpenSSL reads it (`SSL_CERT_FILE`, `SSL_CERT_DIR`, else
//!   `/etc/ssl/certs`) plus the CA files of `[connections]` in
//!   `images/plinth.toml`. ureq's default trusts only the roots compiled
//!   into it, which knows nothing of an organisation's CA.
//! - [`proxy`]: `https_proxy`, `http_proxy`, `all_proxy`, `no_proxy`
//!   (either case), with `no_proxy` matched as curl matches it.
//! - [`origin`]: origins, plain HTTP only to loopback where it matters,
//!   redirects followed one hop at a time so that `Authorization` only
//!   ever reaches the origin it belongs to.
//! - [`transport`]: the agents, one exchange with its redirects, and
//!   bodies streamed and capped ([`BodyLimit`]).
//! - [`error`]: one-line errors; a refused certificate names the host,
//!   what was wrong and where trust was looked for.
//!
//! [`Network`] puts it together for a project: one transport for the
//! machine and the global CA files, and one for each registry and mirror
//! that has CA files of its own.
//!
//! The CAs here are for plinth's own connections only; the CAs an image
//! carries come from its packages and definitions, never from here.

pub mod env;
pub mod error;
pub mod origin;
pub mod proxy;
pub mod transport;
pub mod trust;

use std::collections::BTreeMap;

pub use env::Environment;
pub use error::NetError;
pub use origin::{Origin, PlainHttp, redact_url};
pub use transport::{
    Authorization, BodyLimit, Exchange, Followed, Payload, Transport, TransportOptions,
};
pub use trust::{CaFile, Trust, TrustError};

use crate::definitions::SETTINGS_FILE;
use crate::project::Project;
use proxy::Proxies;

/// The transports of one run: the machine's trust with the global CA
/// files, and per registry (`HOST[:PORT]`) and per archive (`debian`)
/// the same plus their own.
#[derive(Debug, Clone)]
pub struct Network {
    default: Transport,
    registries: BTreeMap<String, Transport>,
    mirrors: BTreeMap<String, Transport>,
}

impl Network {
    /// The machine's trust and proxies from `env`, no settings.
    pub fn machine(env: &Environment) -> Network {
        Network {
            default: Transport::from_env(env, TransportOptions::default()),
            registries: BTreeMap::new(),
            mirrors: BTreeMap::new(),
        }
    }

    /// The machine's trust and proxies from `env`, plus the CA files of
    /// `[connections]` in the project's `images/plinth.toml` (relative
    /// paths are relative to the repository). A CA file that cannot be
    /// used is an error naming the setting, before anything connects.
    pub fn for_project(env: &Environment, project: &Project) -> Result<Network, NetError> {
        let settings = &project.definitions.settings.connections;
        let files = |paths: &[std::path::PathBuf], table: &str| -> Vec<CaFile> {
            paths
                .iter()
                .map(|p| CaFile {
                    path: project.root.join(p),
                    named_in: format!("images/{SETTINGS_FILE} {table} ca-files"),
                })
                .collect()
        };
        let machine =
            Trust::machine(env).with_ca_files(&files(&settings.ca_files, "[connections]"))?;
        let default = Transport::new(machine, Proxies::from_env(env), TransportOptions::default());
        let scoped = |table: &str, scopes: &BTreeMap<String, crate::definitions::CaFiles>| {
            scopes
                .iter()
                .map(|(name, scope)| {
                    let table = format!("[connections.{table}.{name:?}]");
                    let transport = default.with_ca_files(&files(&scope.ca_files, &table))?;
                    Ok((name.to_ascii_lowercase(), transport))
                })
                .collect::<Result<BTreeMap<_, _>, NetError>>()
        };
        Ok(Network {
            registries: scoped("registry", &settings.registry)?,
            mirrors: scoped("mirror", &settings.mirror)?,
            default,
        })
    }

    /// The same trust and proxies with other timeouts and limits.
    pub fn with_options(&self, options: TransportOptions) -> Network {
        let all = |map: &BTreeMap<String, Transport>| {
            map.iter()
                .map(|(k, t)| (k.clone(), t.with_options(options)))
                .collect()
        };
        Network {
            default: self.default.with_options(options),
            registries: all(&self.registries),
            mirrors: all(&self.mirrors),
        }
    }

    /// The transport for registry `host` (`host[:port]`, as `--registry`
    /// names it).
    pub fn registry(&self, host: &str) -> &Transport {
        self.registries
            .get(&host.to_ascii_lowercase())
            .unwrap_or(&self.default)
    }

    /// The transport for the mirror of `archive` (`debian`).
    pub fn mirror(&self, archive: &str) -> &Transport {
        self.mirrors
            .get(&archive.to_ascii_lowercase())
            .unwrap_or(&self.default)
    }
}
