//! Tests of target parsing, challenges, Docker config, credential helpers,
//! redaction and the bearer flow against a loopback token server, and of
//! where credentials go: redirects and upload `Location`s on other
//! origins, against scripted loopback servers.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::client::query_escape;
use super::*;
use crate::oci::{MEDIA_TYPE_IMAGE_INDEX, MEDIA_TYPE_IMAGE_MANIFEST};
use crate::support::digest::sha256_digest;
use crate::support::retry::RetryPolicy;

#[test]
fn parses_targets_and_rejects_bad_ones_in_one_line() {
    let t = Target::parse("127.0.0.1:5000/golden/base/", true).unwrap();
    assert_eq!(t.host, "127.0.0.1:5000");
    assert_eq!(t.prefix, "golden/base");
    assert_eq!(t.base_url(), "http://127.0.0.1:5000");
    assert_eq!(t.repository("cc-debian13"), "golden/base/cc-debian13");
    assert_eq!(t.to_string(), "127.0.0.1:5000/golden/base");
    let t = Target::parse("registry.example.org", false).unwrap();
    assert_eq!(
        (t.base_url().as_str(), t.prefix.as_str()),
        ("https://registry.example.org", "")
    );
    assert_eq!(t.repository("static-debian12"), "static-debian12");

    for (text, insecure, says) in [
        ("https://registry.example.org/x", false, "without a scheme"),
        (
            "user:hunter2@registry.example.org/x",
            false,
            "credentials do not belong",
        ),
        ("", false, "not a registry host"),
        ("registry.example.org:99999/x", false, "not a port"),
        (
            "registry.example.org/Golden",
            false,
            "not a repository prefix",
        ),
        (
            "registry.example.org/a//b",
            false,
            "not a repository prefix",
        ),
        ("registry.example.org/x", true, "loopback registries only"),
    ] {
        let e = Target::parse(text, insecure).unwrap_err().to_string();
        assert!(e.contains(says), "{text}: {e}");
        assert!(!e.contains('\n') && !e.contains("hunter2"), "{e}");
    }
}

#[test]
fn parses_challenges_with_quoted_commas_and_escapes() {
    let c = Challenge::parse(
        r#"Bearer realm="https://auth.example.org/token",service="registry.example.org",scope="repository:a/b:pull,push""#,
    )
    .unwrap();
    assert_eq!(c.scheme, "bearer");
    assert_eq!(c.param("realm"), Some("https://auth.example.org/token"));
    assert_eq!(c.param("SERVICE"), Some("registry.example.org"));
    assert_eq!(c.param("scope"), Some("repository:a/b:pull,push"));
    let c = Challenge::parse(r#"Basic realm="say \"hi\"", charset=UTF-8"#).unwrap();
    assert_eq!(c.scheme, "basic");
    assert_eq!(c.param("realm"), Some(r#"say "hi""#));
    assert_eq!(c.param("charset"), Some("UTF-8"));
    assert_eq!(Challenge::parse(r#"Bearer realm="unterminated"#), None);
    assert_eq!(Challenge::parse(""), None);
}

#[test]
fn reads_docker_config_auths_in_both_forms_and_env_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let auth = BASE64.encode("alice:s3cret:with-colon");
    std::fs::write(
        &path,
        format!(
            r#"{{"auths": {{"https://127.0.0.1:5000/v2/": {{"auth": "{auth}"}},
               "registry.example.org": {{"username": "bob", "password": "pw"}}}}}}"#
        ),
    )
    .unwrap();
    let no_env = |_: &str| None;
    let c = Credentials::lookup("127.0.0.1:5000", no_env, Some(&path))
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.username.as_str(), c.password.as_str()),
        ("alice", "s3cret:with-colon")
    );
    assert_eq!(c.source, path.display().to_string());
    let c = Credentials::lookup("registry.example.org", no_env, Some(&path))
        .unwrap()
        .unwrap();
    assert_eq!((c.username.as_str(), c.password.as_str()), ("bob", "pw"));
    assert_eq!(
        Credentials::lookup("127.0.0.1:5001", no_env, Some(&path)).unwrap(),
        None
    );
    assert_eq!(
        Credentials::lookup("x", no_env, Some(&dir.path().join("none.json"))).unwrap(),
        None
    );

    let env = |k: &str| match k {
        ENV_USERNAME => Some("carol".to_owned()),
        ENV_PASSWORD => Some("envpw".to_owned()),
        _ => None,
    };
    let c = Credentials::lookup("127.0.0.1:5000", env, Some(&path))
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.username.as_str(), c.source.as_str()),
        ("carol", "the environment")
    );
    let half = |k: &str| (k == ENV_USERNAME).then(|| "carol".to_owned());
    assert!(Credentials::lookup("h", half, None).is_err());

    std::fs::write(&path, r#"{"auths": {"h": {"auth": "not base64 at all!"}}}"#).unwrap();
    let e = Credentials::lookup("h", no_env, Some(&path))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not base64") && !e.contains("at all"), "{e}");
    std::fs::write(&path, "{ \"auths\": secret-ish garbage").unwrap();
    let e = Credentials::lookup("h", no_env, Some(&path))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not a Docker config") && !e.contains("garbage"),
        "{e}"
    );
}

#[test]
fn credential_helpers_are_asked_in_dockers_order() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    // A helper speaking the protocol: it knows one host.
    let helper = |name: &str, user: &str| {
        let path = dir.path().join(format!("docker-credential-{name}"));
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread host\n[ \"$host\" = 127.0.0.1:5000 ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\necho '{{\"ServerURL\":\"127.0.0.1:5000\",\"Username\":\"{user}\",\"Secret\":\"helper-s3cret\"}}'\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    helper("store", "from-store");
    helper("special", "from-special");
    std::fs::write(
        dir.path().join("docker-credential-garbled"),
        "#!/bin/sh\necho helper-s3cret\n",
    )
    .unwrap();
    std::fs::set_permissions(
        dir.path().join("docker-credential-garbled"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        r#"{"auths": {"127.0.0.1:5000": {}}, "credsStore": "store",
            "credHelpers": {"127.0.0.1:5000": "special", "127.0.0.1:7000": "garbled", "127.0.0.1:8000": "missing"}}"#,
    )
    .unwrap();
    let path = dir.path().to_string_lossy().into_owned();
    let env = |k: &str| (k == "PATH").then(|| path.clone());
    let c = Credentials::lookup("127.0.0.1:5000", env, Some(&config))
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.username.as_str(), c.password.as_str(), c.source.as_str()),
        ("from-special", "helper-s3cret", "docker-credential-special")
    );
    // Not in credHelpers: the store, which knows nothing of this host.
    assert_eq!(
        Credentials::lookup("127.0.0.1:6000", env, Some(&config)).unwrap(),
        None
    );
    let e = Credentials::lookup("127.0.0.1:7000", env, Some(&config))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("docker-credential-garbled get answered") && !e.contains("s3cret"),
        "{e}"
    );
    let e = Credentials::lookup("127.0.0.1:8000", env, Some(&config))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("docker-credential-missing, which is not on PATH"),
        "{e}"
    );
}

#[test]
fn credentials_never_show_in_debug_output() {
    let c = Credentials::new("alice", "hunter2", "the environment");
    let client = Client::new(
        Target::parse("127.0.0.1:1/x", true).unwrap(),
        Some(c.clone()),
        ClientOptions::default(),
    );
    for text in [format!("{c:?}"), format!("{client:?}")] {
        assert!(
            text.contains("alice") && !text.contains("hunter2"),
            "{text}"
        );
    }
}

#[test]
fn escapes_query_values_and_finds_media_types() {
    assert_eq!(
        query_escape("repository:a/b:pull,push"),
        "repository:a/b:pull%2Cpush"
    );
    assert_eq!(query_escape("a b&c"), "a%20b%26c");
    assert_eq!(
        manifest_media_type(br#"{"schemaVersion":2,"manifests":[]}"#),
        MEDIA_TYPE_IMAGE_INDEX
    );
    assert_eq!(
        manifest_media_type(br#"{"mediaType":"application/x","manifests":[]}"#),
        "application/x"
    );
    assert_eq!(manifest_media_type(b"{}"), MEDIA_TYPE_IMAGE_MANIFEST);
}

/// A registry that wants a bearer token from its own token endpoint,
/// which wants basic credentials; one request per connection.
struct TokenRegistry {
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

const TOKEN: &str = "tok-9f8e7d";

impl TokenRegistry {
    fn start(user: &'static str, password: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&log);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                let mut auth = String::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':')
                        && k.eq_ignore_ascii_case("authorization")
                    {
                        auth = v.trim().to_owned();
                    }
                }
                let basic = format!("Basic {}", BASE64.encode(format!("{user}:{password}")));
                let (status, extra, body) = if target.starts_with("/token?") {
                    seen.lock().unwrap().push(target.clone());
                    if auth == basic {
                        (
                            "200 OK",
                            String::new(),
                            format!(r#"{{"access_token":"{TOKEN}"}}"#),
                        )
                    } else {
                        ("401 Unauthorized", String::new(), String::new())
                    }
                } else if auth == format!("Bearer {TOKEN}") {
                    seen.lock().unwrap().push(format!("authorised {target}"));
                    ("404 Not Found", String::new(), String::new())
                } else {
                    let challenge = format!(
                        "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"test\",scope=\"repository:golden/x:pull\"\r\n"
                    );
                    ("401 Unauthorized", challenge, String::new())
                };
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TokenRegistry { port, log }
    }

    fn client(&self, password: &str) -> Client {
        Client::new(
            Target::parse(&format!("127.0.0.1:{}/golden", self.port), true).unwrap(),
            Some(Credentials::new("alice", password, "the environment")),
            ClientOptions {
                retry: RetryPolicy {
                    attempts: 1,
                    first_backoff: Duration::ZERO,
                },
                ..ClientOptions::default()
            },
        )
    }
}

#[test]
fn bearer_challenge_fetches_a_token_with_basic_credentials_and_reuses_it() {
    let server = TokenRegistry::start("alice", "right-pw");
    let client = server.client("right-pw");
    let digest = sha256_digest(b"x");
    assert!(!client.blob_exists("golden/x", &digest).unwrap());
    assert!(!client.blob_exists("golden/x", &digest).unwrap());
    let log = server.log.lock().unwrap().clone();
    assert_eq!(
        log,
        [
            "/token?service=test&scope=repository:golden/x:pull".to_owned(),
            format!("authorised /v2/golden/x/blobs/{digest}"),
            format!("authorised /v2/golden/x/blobs/{digest}"),
        ]
    );
}

#[test]
fn refused_credentials_name_the_registry_and_never_the_secret() {
    let server = TokenRegistry::start("alice", "right-pw");
    let client = server.client("wrong-pw-5ecret");
    let err = client
        .blob_exists("golden/x", &sha256_digest(b"x"))
        .unwrap_err();
    let text = err.to_string();
    assert!(err.unauthorized);
    assert!(
        text.starts_with(&format!("registry 127.0.0.1:{}/golden/x: ", server.port)),
        "{text}"
    );
    assert!(text.contains("authentication failed"), "{text}");
    assert!(!text.contains("5ecret") && !text.contains(TOKEN) && !text.contains('\n'));
}

#[test]
fn an_unreachable_registry_fails_quickly_naming_it() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::new(
        Target::parse(&format!("127.0.0.1:{port}/golden"), true).unwrap(),
        None,
        ClientOptions {
            retry: RetryPolicy {
                attempts: 3,
                first_backoff: Duration::from_millis(1),
            },
            ..ClientOptions::default()
        },
    );
    let text = client.ping().unwrap_err().to_string();
    assert!(
        text.starts_with(&format!("registry 127.0.0.1:{port}: checking the API: ")),
        "{text}"
    );
    assert!(text.ends_with("(after 3 attempts)"), "{text}");
}

/// Every upload path and manifest call against the real
/// docker-registry: chunked and monolithic uploads, a mount from
/// another repository, exact manifest bytes back.
#[test]
fn uploads_mounts_and_manifests_against_docker_registry() {
    use plinth_testkit::registry::{REGISTRY_TOOL, Registry};
    let registry = match Registry::start(None) {
        Ok(r) => r,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{REGISTRY_TOOL} is required in CI: {e}"
            );
            eprintln!("skipped: {e}");
            return;
        }
    };
    let client = Client::new(
        Target::parse(&format!("{}/t", registry.host()), true).unwrap(),
        None,
        ClientOptions {
            chunk_threshold: 64 << 10,
            chunk_size: 50_000,
            ..ClientOptions::default()
        },
    );
    client.ping().unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let small = crate::oci::EMPTY_BLOB;
    let (big_digest, small_digest) = (sha256_digest(&big), sha256_digest(small));
    assert!(!client.blob_exists("t/a", &big_digest).unwrap());
    let how = client.upload_blob("t/a", &big_digest, &big, None).unwrap();
    assert_eq!(how, Upload::Chunked);
    let how = client
        .upload_blob("t/a", &small_digest, small, None)
        .unwrap();
    assert_eq!(how, Upload::Monolithic);
    assert!(client.blob_exists("t/a", &big_digest).unwrap());
    let how = client
        .upload_blob("t/b", &big_digest, &big, Some("t/a"))
        .unwrap();
    assert_eq!(how, Upload::Mounted);
    // Not there to mount: the session turns into an ordinary upload.
    let how = client
        .upload_blob("t/b", &small_digest, small, Some("t/c"))
        .unwrap();
    assert_eq!(how, Upload::Monolithic);

    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MEDIA_TYPE_IMAGE_MANIFEST}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{small_digest}","size":2}},"layers":[{{"mediaType":"application/octet-stream","digest":"{big_digest}","size":{}}}]}}"#,
        big.len()
    );
    let digest = sha256_digest(manifest.as_bytes());
    assert_eq!(client.manifest_digest("t/b", &digest).unwrap(), None);
    client
        .put_manifest(
            "t/b",
            &digest,
            MEDIA_TYPE_IMAGE_MANIFEST,
            manifest.as_bytes(),
        )
        .unwrap();
    client
        .put_manifest("t/b", "v1", MEDIA_TYPE_IMAGE_MANIFEST, manifest.as_bytes())
        .unwrap();
    assert_eq!(
        client.manifest_digest("t/b", "v1").unwrap(),
        Some(digest.clone())
    );
    let (media_type, bytes) = client.get_manifest("t/b", "v1").unwrap().unwrap();
    assert_eq!(
        (media_type.as_str(), bytes.as_slice()),
        (MEDIA_TYPE_IMAGE_MANIFEST, manifest.as_bytes())
    );
    assert!(!client.referrers_api("t/b", &digest).unwrap());
    assert_eq!(client.referrers("t/b", &digest).unwrap(), None);
    // Blobs come back checked and bounded.
    assert_eq!(
        client.get_blob("t/b", &big_digest).unwrap(),
        Some(big.clone())
    );
    assert_eq!(client.get_blob("t/c", &big_digest).unwrap(), None);
    let e = client.get_blob("t/b", "sha256:../../x").unwrap_err();
    assert!(e.to_string().contains("is not a sha256 digest"), "{e}");
    let bounded = Client::new(
        Target::parse(&format!("{}/t", registry.host()), true).unwrap(),
        None,
        ClientOptions {
            max_response: 1000,
            retry: RetryPolicy {
                attempts: 1,
                first_backoff: Duration::ZERO,
            },
            ..ClientOptions::default()
        },
    );
    let e = bounded.get_blob("t/b", &big_digest).unwrap_err();
    assert!(e.to_string().contains("more than the 1000 allowed"), "{e}");
    // Children first: a manifest whose blob is missing is refused.
    let missing = sha256_digest(b"missing");
    let orphan = manifest.replace(&big_digest, &missing);
    let e = client
        .put_manifest("t/b", "v2", MEDIA_TYPE_IMAGE_MANIFEST, orphan.as_bytes())
        .unwrap_err()
        .to_string();
    let start = format!(
        "registry {}/t/b: pushing manifest v2: HTTP 400: MANIFEST_BLOB_UNKNOWN",
        registry.host()
    );
    assert!(e.starts_with(&start), "{e}");
}

#[test]
fn only_loopback_registries_may_be_insecure() {
    let err = Target::parse("127.example.org:5000/golden", true).unwrap_err();
    assert!(
        err.to_string()
            .contains("--insecure (plain HTTP) is for loopback registries only"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// Credentials bound to the registry's origin, redirects, bounded replies

/// A request as a scripted server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    authorization: Option<String>,
    /// `Content-Length`, or `chunked` for `Transfer-Encoding: chunked`.
    framing: Option<String>,
}

/// What a scripted server answers: a whole response, or a `200` head
/// followed by a body that never ends.
enum Answer {
    Whole(String),
    Endless,
}

/// A loopback server answering each request as `script` says, one request
/// per connection, recording every request.
struct Scripted {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    fn start(script: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let script = Arc::new(script);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (log, script) = (Arc::clone(&log), Arc::clone(&script));
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or("").to_owned();
                    let target = parts.next().unwrap_or("").to_owned();
                    let (mut authorization, mut length, mut framing) = (None, 0usize, None);
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            match k.trim().to_ascii_lowercase().as_str() {
                                "authorization" => authorization = Some(v.trim().to_owned()),
                                "content-length" => {
                                    length = v.trim().parse().unwrap_or(0);
                                    framing = Some(v.trim().to_owned());
                                }
                                "transfer-encoding" => framing = Some(v.trim().to_owned()),
                                _ => {}
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    let _ = std::io::Read::read_exact(&mut reader, &mut body);
                    let request = Seen {
                        method,
                        target,
                        authorization,
                        framing,
                    };
                    log.lock().unwrap().push(request.clone());
                    let mut stream = stream;
                    match script(&request) {
                        Answer::Whole(text) => {
                            let _ = stream.write_all(text.as_bytes());
                        }
                        Answer::Endless => {
                            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nConnection: close\r\n\r\n");
                            let chunk = vec![b' '; 64 << 10];
                            while stream.write_all(&chunk).is_ok() {}
                        }
                    }
                });
            }
        });
        Scripted { port, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn reply(status: &str, headers: &str) -> Answer {
    Answer::Whole(format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    ))
}

const BASIC_ALICE: &str = "Basic YWxpY2U6cHctNWVjcmV0"; // alice:pw-5ecret

/// A registry door: basic credentials first, then `route`.
fn registry(route: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Scripted {
    Scripted::start(move |r| {
        if r.authorization.as_deref() != Some(BASIC_ALICE) {
            return reply(
                "401 Unauthorized",
                "WWW-Authenticate: Basic realm=\"t\"\r\n",
            );
        }
        route(r)
    })
}

fn client_for(port: u16, options: ClientOptions) -> Client {
    Client::with_transport(
        Target::parse(&format!("127.0.0.1:{port}/t"), true).unwrap(),
        Some(Credentials::new("alice", "pw-5ecret", "the environment")),
        options,
        &crate::net::Transport::from_env(
            &crate::net::Environment::empty(),
            crate::net::TransportOptions::default(),
        ),
    )
}

fn quick() -> ClientOptions {
    ClientOptions {
        retry: RetryPolicy {
            attempts: 2,
            first_backoff: Duration::from_millis(1),
        },
        ..ClientOptions::default()
    }
}

#[test]
fn an_upload_location_on_another_origin_gets_the_upload_but_no_credentials() {
    let storage = Scripted::start(|r| match r.method.as_str() {
        "PATCH" => reply("202 Accepted", "Location: /upload/2?state=after-patch\r\n"),
        "PUT" => reply("201 Created", ""),
        _ => reply("405 Method Not Allowed", ""),
    });
    let storage_port = storage.port;
    let front = registry(move |r| match r.method.as_str() {
        "POST" => reply(
            "202 Accepted",
            &format!("Location: http://127.0.0.1:{storage_port}/upload/1?state=s3cr3t-state\r\n"),
        ),
        _ => reply("404 Not Found", ""),
    });
    let digest = sha256_digest(b"small");
    let client = client_for(front.port, quick());
    assert_eq!(
        client.upload_blob("t/a", &digest, b"small", None).unwrap(),
        Upload::Monolithic
    );
    // Chunked: the PATCH answers a relative Location, on the storage too.
    let chunked = client_for(
        front.port,
        ClientOptions {
            chunk_threshold: 4,
            chunk_size: 4,
            ..quick()
        },
    );
    assert_eq!(
        chunked.upload_blob("t/a", &digest, b"small", None).unwrap(),
        Upload::Chunked
    );

    let at_storage = storage.seen();
    let targets: Vec<String> = at_storage
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    assert_eq!(
        targets,
        [
            format!("PUT /upload/1?state=s3cr3t-state&digest={digest}"),
            "PATCH /upload/1?state=s3cr3t-state".to_owned(),
            "PATCH /upload/2?state=after-patch".to_owned(),
            format!("PUT /upload/2?state=after-patch&digest={digest}"),
        ]
    );
    assert!(
        at_storage.iter().all(|r| r.authorization.is_none()),
        "{at_storage:?}"
    );
    // The registry itself got them.
    assert!(
        front
            .seen()
            .iter()
            .any(|r| r.method == "POST" && r.authorization.as_deref() == Some(BASIC_ALICE))
    );
    // A bodiless POST says so with a length, not as an empty chunked body
    // (which a proxy or front that only knows lengths would wait on).
    let posts: Vec<_> = front
        .seen()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert!(!posts.is_empty());
    assert!(
        posts.iter().all(|r| r.framing.as_deref() == Some("0")),
        "{posts:?}"
    );
}

#[test]
fn an_upload_location_over_plain_http_to_another_host_is_refused() {
    let front = registry(|_| {
        reply(
            "202 Accepted",
            "Location: http://storage.example:9000/upload?sig=SECRET\r\n",
        )
    });
    let client = client_for(front.port, quick());
    let err = client
        .upload_blob("t/a", &sha256_digest(b"x"), b"x", None)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "registry 127.0.0.1:{}/t/a: uploading blob {}: refusing upload Location http://storage.example:9000/upload: plain HTTP is allowed to loopback hosts only (localhost, 127.0.0.0/8, ::1); use https",
            front.port,
            sha256_digest(b"x")
        )
    );
}

#[test]
fn blob_reads_follow_redirects_to_storage_without_credentials_and_not_forever() {
    let storage = Scripted::start(|_| reply("200 OK", ""));
    let storage_port = storage.port;
    let front = registry(move |r| {
        if r.target.ends_with("/loop") || r.target.contains("sha256:0000") {
            reply("307 Temporary Redirect", "Location: /v2/t/a/blobs/loop\r\n")
        } else {
            reply(
                "307 Temporary Redirect",
                &format!("Location: http://127.0.0.1:{storage_port}/blob?X-Signature=1\r\n"),
            )
        }
    });
    let client = client_for(front.port, quick());
    assert!(client.blob_exists("t/a", &sha256_digest(b"x")).unwrap());
    let at_storage = storage.seen();
    assert_eq!(at_storage.len(), 1);
    assert_eq!(at_storage[0].method, "HEAD");
    assert_eq!(at_storage[0].authorization, None);

    let looping = format!("sha256:{}", "0".repeat(64));
    let err = client.blob_exists("t/a", &looping).unwrap_err().to_string();
    assert!(err.ends_with(": more than 5 redirects"), "{err}");
    // Not retried: a loop stays a loop.
    assert!(!err.contains("attempts"), "{err}");
}

#[test]
fn an_endless_registry_reply_is_cut_off_and_not_asked_again() {
    let front = registry(|r| match r.method.as_str() {
        "GET" => Answer::Endless,
        _ => reply("404 Not Found", ""),
    });
    let client = client_for(front.port, quick());
    let err = client.get_manifest("t/a", "v1").unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "registry 127.0.0.1:{}/t/a: reading manifest v1: the body goes on past 4194304 bytes, the most allowed",
            front.port
        )
    );
    let gets = front.seen().iter().filter(|r| r.method == "GET").count();
    // One unauthenticated try, one with credentials; no retry.
    assert_eq!(gets, 2);
}
