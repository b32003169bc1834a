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
//! [`target`] parses where to push, [`credentials`] finds the login,
//! [`auth`] answers challenges, [`client`] speaks the API through
//! [`crate::net`], and [`dockerhub`] holds Docker Hub's names (the only
//! registry host plinth knows by name).
//!
//! Credentials, tokens and `Authorization` headers never reach a log line
//! or an error message: errors name the registry, the repository and what
//! failed, nothing more.

mod auth;
mod client;
mod credentials;
pub mod dockerhub;
mod target;

pub use auth::Challenge;
pub use client::{Client, ClientOptions, MAX_JSON_BYTES, Upload, manifest_media_type};
pub use credentials::{Credentials, ENV_PASSWORD, ENV_USERNAME};
pub use target::Target;

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

#[cfg(test)]
mod tests;
