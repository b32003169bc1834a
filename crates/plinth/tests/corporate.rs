//! plinth inside a corporate network, against loopback servers only: a
//! TLS `docker-registry` and HTTPS servers whose certificates chain to a
//! CA made for the test, trusted through `SSL_CERT_FILE`, through a CA
//! file in `images/plinth.toml`, or not at all; and what a refused
//! certificate says.
//!
//! The environment is always passed as a value: CI machines set
//! `SSL_CERT_FILE` themselves. (The HTTPS mirror, the CONNECT proxy and
//! bounded bodies of the lock are in `tests/lock.rs`; publishing through a
//! proxy and a storage front, with the real binary, in
//! `xtask/tests/publish.rs`.)
//!
//! Tools: docker-registry. Missing, a test is skipped with a printed
//! reason, except under `CI=true`, where it fails.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::settings_toml;
use plinth::Project;
use plinth::net::{Environment, Exchange, Network, Transport, TransportOptions};
use plinth::oci;
use plinth::registry::{Client, ClientOptions, Target, Upload};
use plinth_testkit::registry::{REGISTRY_TOOL, Registry};
use plinth_testkit::server::Server;
use plinth_testkit::tls::TestCa;

/// A TLS registry on loopback whose certificate chains to a fresh test
/// CA, and that CA's PEM; `None` (skipped) without docker-registry.
fn tls_registry(dir: &Path) -> Option<(Registry, PathBuf)> {
    let ca = TestCa::new("plinth test registry CA");
    let cert = ca.server_cert(&["127.0.0.1", "localhost"]);
    match Registry::start_with(None, Some(&cert)) {
        Ok(registry) => Some((registry, ca.write_pem(&dir.join("ca.pem")))),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{REGISTRY_TOOL} is required in CI: {e}"
            );
            eprintln!("SKIPPED: {e}");
            None
        }
    }
}

fn client(host: &str, transport: &Transport) -> Client {
    let target = Target::parse(&format!("{host}/golden"), false).unwrap();
    Client::with_transport(target, None, ClientOptions::default(), transport)
}

/// A blob, a manifest and a tag go up and the manifest comes back.
fn round_trip(client: &Client) {
    client.ping().unwrap();
    let repo = "golden/app";
    let layer = b"a layer over TLS".as_slice();
    let layer_desc = oci::descriptor_for("application/octet-stream", layer);
    for (digest, bytes) in [
        (layer_desc.digest.as_str(), layer),
        (oci::EMPTY_DIGEST, oci::EMPTY_BLOB),
    ] {
        assert_eq!(
            client.upload_blob(repo, digest, bytes, None).unwrap(),
            Upload::Monolithic
        );
    }
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/octet-stream","digest":"{}","size":{}}}]}}"#,
        oci::MEDIA_TYPE_IMAGE_MANIFEST,
        oci::EMPTY_DIGEST,
        layer_desc.digest,
        layer.len()
    );
    client
        .put_manifest(
            repo,
            "v1",
            oci::MEDIA_TYPE_IMAGE_MANIFEST,
            manifest.as_bytes(),
        )
        .unwrap();
    let (_, bytes) = client.get_manifest(repo, "v1").unwrap().unwrap();
    assert_eq!(bytes, manifest.as_bytes());
}

/// A project whose `images/plinth.toml` ends with `connections`.
fn project_with(dir: &Path, connections: &str) -> Project {
    let images = dir.join("images");
    fs::create_dir_all(&images).unwrap();
    let settings = settings_toml(&["key.asc"], &[], &[("trixie", "debian")]);
    fs::write(images.join("plinth.toml"), settings + connections).unwrap();
    fs::write(
        images.join("static.toml"),
        "name = \"static\"\ndescription = \"A test image.\"\npackages = [\"base-files\"]\n",
    )
    .unwrap();
    Project::open(dir).unwrap()
}

#[test]
fn a_tls_registry_is_trusted_through_ssl_cert_file() {
    let dir = tempfile::tempdir().unwrap();
    let Some((registry, ca)) = tls_registry(dir.path()) else {
        return;
    };
    let env = Environment::empty().with("SSL_CERT_FILE", &ca);
    let network = Network::machine(&env);
    round_trip(&client(
        &registry.host(),
        network.registry(&registry.host()),
    ));
    assert!(registry.blob_count() >= 2);
}

#[test]
fn a_tls_registry_is_trusted_through_its_ca_file_in_the_settings() {
    let dir = tempfile::tempdir().unwrap();
    let Some((registry, ca)) = tls_registry(dir.path()) else {
        return;
    };
    fs::rename(&ca, dir.path().join("registry-ca.pem")).unwrap();
    let host = registry.host();
    let project = project_with(
        dir.path(),
        &format!("\n[connections.registry.\"{host}\"]\nca-files = [\"registry-ca.pem\"]\n"),
    );
    let network = Network::for_project(&Environment::empty(), &project).unwrap();
    round_trip(&client(&host, network.registry(&host)));

    // The CA file is for that registry only: the same server under
    // another name is another registry, and is refused.
    let other = host.replace("127.0.0.1", "localhost");
    let err = client(&other, network.registry(&other))
        .ping()
        .unwrap_err()
        .to_string();
    assert!(err.contains("refused: unknown issuer"), "{err}");

    // Or for every connection.
    let project = project_with(
        dir.path(),
        "\n[connections]\nca-files = [\"registry-ca.pem\"]\n",
    );
    let network = Network::for_project(&Environment::empty(), &project).unwrap();
    client(&other, network.registry(&other)).ping().unwrap();
}

#[test]
fn an_untrusted_registry_is_refused_in_one_line_naming_host_problem_and_trust() {
    let dir = tempfile::tempdir().unwrap();
    let Some((registry, _)) = tls_registry(dir.path()) else {
        return;
    };
    let host = registry.host();
    let network = Network::machine(&Environment::empty());
    let err = client(&host, network.registry(&host))
        .ping()
        .unwrap_err()
        .to_string();
    let expected = format!(
        "registry {host}: checking the API: TLS certificate of {host} refused: unknown issuer: no trusted CA signed it (behind a TLS-inspecting proxy, trust the proxy's CA); trusting "
    );
    assert!(err.starts_with(&expected), "{err}");
    assert!(!err.contains('\n'), "{err}");
    // Not retried: a certificate does not get better.
    assert!(!err.contains("attempts"), "{err}");
    assert_eq!(registry.blob_count(), 0);
}

#[test]
fn certificate_problems_are_named() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("x"), "x").unwrap();
    let ca = TestCa::new("plinth test CA");
    let ca_file = ca.write_pem(&dir.path().join("ca.pem"));
    let env = Environment::empty().with("SSL_CERT_FILE", &ca_file);
    let transport = Transport::from_env(&env, TransportOptions::default());
    let fetch = |server: &Server| {
        transport
            .call(Exchange::get(&format!("{}/x", server.url())))
            .map(|answer| answer.status())
            .map_err(|e| e.to_string())
    };

    let good = Server::serve_tls(dir.path(), &ca.server_cert(&["127.0.0.1"]));
    assert_eq!(fetch(&good), Ok(200));

    let expired = Server::serve_tls(dir.path(), &ca.expired_server_cert(&["127.0.0.1"]));
    let err = fetch(&expired).unwrap_err();
    let host = expired.addr().to_string();
    assert!(
        err.starts_with(&format!(
            "TLS certificate of {host} refused: expired on 2001-01-01 (it is "
        )),
        "{err}"
    );
    // SSL_CERT_FILE replaces the system bundle, not the system directory.
    assert!(
        err.contains(&format!(
            "SSL_CERT_FILE={} (1 certificate)",
            ca_file.display()
        )),
        "{err}"
    );

    let misnamed = Server::serve_tls(dir.path(), &ca.server_cert(&["registry.test"]));
    let err = fetch(&misnamed).unwrap_err();
    let host = misnamed.addr().to_string();
    assert!(
        err.starts_with(&format!(
            "TLS certificate of {host} refused: wrong name: issued for registry.test, not 127.0.0.1; trusting "
        )),
        "{err}"
    );

    // Plain HTTP where TLS was expected, and the other way round.
    let plain = Server::serve(dir.path());
    let err = transport
        .call(Exchange::get(&plain.url().replace("http://", "https://")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("the server does not speak TLS there"), "{err}");
    for server in [&good, &expired, &misnamed] {
        assert!(server.requests().len() <= 1);
    }
    assert_eq!(
        (expired.requests().len(), misnamed.requests().len()),
        (0, 0)
    );
}
