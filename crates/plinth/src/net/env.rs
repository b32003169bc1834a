//! The environment variables that decide how plinth connects, read once.
//!
//! Trust (`SSL_CERT_FILE`, `SSL_CERT_DIR`) and proxies (`https_proxy`,
//! `http_proxy`, `all_proxy`, `no_proxy` and their upper-case forms) come
//! from the process environment in production. Everything in [`crate::net`]
//! takes an [`Environment`] value instead of calling `std::env::var`, so
//! that tests pass their own without touching (and racing on) the process
//! environment, and one run sees one consistent snapshot. (CI machines
//! often set `SSL_CERT_FILE` already: a test that relied on the process
//! environment would test the machine, not plinth.)
//!
//! An empty value counts as unset, as curl treats an empty proxy variable.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;

/// Every variable [`Environment::from_process`] copies; nothing else is
/// ever read.
pub const VARIABLES: &[&str] = &[
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "https_proxy",
    "HTTPS_PROXY",
    "http_proxy",
    "HTTP_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// A snapshot of the [`VARIABLES`]. `Debug` never shows a proxy value
/// (it can hold `user:password@`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Environment {
    vars: BTreeMap<&'static str, OsString>,
}

impl Environment {
    /// Nothing set: the system trust store, no proxy.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The process environment's values of the [`VARIABLES`], read now.
    pub fn from_process() -> Self {
        VARIABLES
            .iter()
            .fold(Self::empty(), |env, name| match std::env::var_os(name) {
                Some(value) => env.with(name, value),
                None => env,
            })
    }

    /// This snapshot with `name` set to `value` (an empty value unsets
    /// it). Names outside [`VARIABLES`] are ignored.
    pub fn with(mut self, name: &str, value: impl Into<OsString>) -> Self {
        let value = value.into();
        if let Some(known) = VARIABLES.iter().find(|n| **n == name) {
            if value.is_empty() {
                self.vars.remove(known);
            } else {
                self.vars.insert(known, value);
            }
        }
        self
    }

    /// The value of `name`, if set and not empty.
    pub fn get(&self, name: &str) -> Option<&OsStr> {
        self.vars.get(name).map(OsString::as_os_str)
    }

    /// The first of `names` that is set, with its name (for messages).
    pub fn first_of(&self, names: &[&'static str]) -> Option<(&'static str, &OsStr)> {
        names.iter().find_map(|n| self.get(n).map(|v| (*n, v)))
    }
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in &self.vars {
            // Trust paths and host lists hold no secrets; proxy URLs may.
            if name.starts_with("SSL_") || name.eq_ignore_ascii_case("no_proxy") {
                map.entry(name, value);
            } else {
                map.entry(name, &"<set>");
            }
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_are_unset_and_unknown_names_ignored() {
        let env = Environment::empty()
            .with("HTTPS_PROXY", "")
            .with("PATH", "/bin")
            .with("no_proxy", "a");
        assert_eq!(env.get("HTTPS_PROXY"), None);
        assert_eq!(env.get("PATH"), None);
        assert_eq!(
            env.first_of(&["NO_PROXY", "no_proxy"]),
            Some(("no_proxy", OsStr::new("a")))
        );
    }

    #[test]
    fn debug_hides_proxy_values() {
        let env = Environment::empty()
            .with("https_proxy", "http://u:s3cret@proxy.example:3128")
            .with("SSL_CERT_FILE", "/ca.pem");
        let shown = format!("{env:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("u:"),
            "{shown}"
        );
        assert!(shown.contains("/ca.pem"), "{shown}");
    }
}
