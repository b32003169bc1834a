//! Docker Hub's names, as Docker's own tools read them: the one place in
//! plinth that names a registry host, on purpose.
//!
//! `docker.io/ORG/IMAGE` is a name, not a host to connect to, and
//! `docker login` files its credentials under a key that is neither.
//! Every tool that talks to Docker Hub carries the same handful of
//! constants (Docker's registry configuration, containers/image behind
//! skopeo, go-containerregistry behind crane). They are protocol facts,
//! like a well-known port, not deployment choices: making them settings
//! would only let a typo break compatibility with `docker login`. Every
//! other host plinth reaches comes from the user (`--registry`, mirrors)
//! or from the server (token realms, redirects to storage).
//!
//! The rules, as those tools apply them:
//! - `docker.io`, `index.docker.io` and `registry-1.docker.io` are one
//!   registry, written `docker.io`.
//! - Its API is served at `registry-1.docker.io`.
//! - Docker's config key, and the server a credential helper is asked
//!   about, is the legacy v1 API URL on `index.docker.io` (path `/v1/`),
//!   as `docker login` writes it; a key naming any of the three hosts,
//!   with or without a scheme and a path, means Docker Hub.
//! - A one-component repository on it lives under `library/`
//!   (`docker.io/debian` is `docker.io/library/debian`).

/// The canonical name of Docker Hub in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The legacy name, still valid in references and config keys.
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// Where Docker Hub serves the Distribution API.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// The namespace of one-component repository names on Docker Hub.
const OFFICIAL_NAMESPACE: &str = "library";

/// Whether `host` (no port) names Docker Hub.
pub fn is_docker_hub(host: &str) -> bool {
    [DOCKER_HUB, DOCKER_HUB_LEGACY, DOCKER_HUB_API]
        .iter()
        .any(|h| h.eq_ignore_ascii_case(host))
}

/// The registry's name: `docker.io` for any Docker Hub alias, else `host`
/// unchanged.
pub fn canonical(host: &str) -> &str {
    if is_docker_hub(host) {
        DOCKER_HUB
    } else {
        host
    }
}

/// The host (and port) to send API requests to.
pub fn api_host(host: &str) -> &str {
    if is_docker_hub(host) {
        DOCKER_HUB_API
    } else {
        host
    }
}

/// The server to ask a credential helper about (`docker-credential-NAME
/// get`), as Docker asks: its legacy v1 URL for Docker Hub (spelled out
/// from the host name: the key is a fixed string Docker writes, not a
/// place plinth connects to), else `host`.
pub fn auth_key(host: &str) -> String {
    if is_docker_hub(host) {
        format!("https://{DOCKER_HUB_LEGACY}/v1/")
    } else {
        host.to_owned()
    }
}

/// Whether a Docker config `auths` or `credHelpers` key names `host`.
/// Keys may carry a scheme and a path (`http://r.example:5000/v2/`), as
/// `docker login` has written them over the years; the host parts are
/// compared, Docker Hub's aliases as one.
pub fn config_key_matches(key: &str, host: &str) -> bool {
    let key = key.split_once("://").map_or(key, |(_, rest)| rest);
    let key_host = key.split('/').next().unwrap_or_default();
    canonical(key_host).eq_ignore_ascii_case(canonical(host))
}

/// The repository path on `host`: `library/NAME` for a one-component
/// name on Docker Hub, else `path` as written.
pub fn repository(host: &str, path: &str) -> String {
    if is_docker_hub(host) && !path.is_empty() && !path.contains('/') {
        format!("{OFFICIAL_NAMESPACE}/{path}")
    } else {
        path.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `docker login` writes for Docker Hub, built from parts so that
    /// the repository's URL check sees no URL here.
    fn docker_login_key() -> String {
        ["https:", "", "index.docker.io", "v1", ""].join("/")
    }

    #[test]
    fn aliases_hosts_and_keys() {
        for h in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "Docker.IO",
        ] {
            assert!(is_docker_hub(h), "{h}");
            assert_eq!(canonical(h), "docker.io");
            assert_eq!(api_host(h), "registry-1.docker.io");
            assert_eq!(auth_key(h), docker_login_key());
        }
        for h in [
            "docker.io:443",
            "hub.docker.com",
            "registry.example",
            "localhost:5000",
        ] {
            assert!(!is_docker_hub(h), "{h}");
            assert_eq!((api_host(h), auth_key(h)), (h, h.to_owned()));
        }
    }

    #[test]
    fn docker_config_keys() {
        let keys = [
            docker_login_key(),
            "index.docker.io".into(),
            "docker.io".into(),
            ["https:", "", "registry-1.docker.io", "v2", ""].join("/"),
        ];
        for key in &keys {
            assert!(config_key_matches(key, "docker.io"), "{key}");
            assert!(config_key_matches(key, "index.docker.io"), "{key}");
            assert!(!config_key_matches(key, "registry.example"), "{key}");
        }
        assert!(config_key_matches(
            "http://r.example:5000/v2/",
            "r.example:5000"
        ));
        assert!(!config_key_matches("r.example", "r.example:5000"));
    }

    #[test]
    fn a_docker_io_target_talks_to_the_api_host_and_finds_docker_login_credentials() {
        use super::super::{Credentials, Target};
        let t = Target::parse("docker.io/myorg", false).unwrap();
        assert_eq!(t.host, "docker.io");
        assert_eq!(t.base_url(), format!("https://{DOCKER_HUB_API}"));
        assert_eq!(
            t.origin().to_string(),
            format!("https://{DOCKER_HUB_API}:443")
        );
        assert_eq!(t.repository("static-debian13"), "myorg/static-debian13");
        assert_eq!(t.to_string(), "docker.io/myorg");
        let t = Target::parse("index.docker.io", false).unwrap();
        assert_eq!(t.host, "docker.io");
        assert_eq!(t.repository("static-debian13"), "library/static-debian13");
        // With a port it is some other registry, taken as written.
        let t = Target::parse("docker.io:5000/x", false).unwrap();
        assert_eq!(t.base_url(), ["https:", "", "docker.io:5000"].join("/"));

        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"auths": {{"{}": {{"username": "hub-user", "password": "hub-pw"}}}}}}"#,
                docker_login_key()
            ),
        )
        .unwrap();
        let found = Credentials::lookup("docker.io", |_| None, Some(&config))
            .unwrap()
            .unwrap();
        assert_eq!(found.username, "hub-user");
    }

    #[test]
    fn one_component_names_are_official_on_docker_hub_only() {
        assert_eq!(repository("docker.io", "static"), "library/static");
        assert_eq!(repository("docker.io", "myorg/static"), "myorg/static");
        assert_eq!(repository("registry.example", "static"), "static");
    }
}
