//! A registry front on loopback that behaves as registries backed by
//! object storage do: blob reads (`GET`/`HEAD`) are answered with a `307`
//! to a second listener, and upload sessions are handed out on it
//! (`Location` on another origin). The second listener, standing in for
//! the storage, forwards to the registry behind; so does the front for
//! everything else.
//!
//! The front can insist on basic credentials (`401` with a `Basic`
//! challenge otherwise), as the registry's own door; the storage never
//! asks for any. Both record every request with its `Authorization`
//! header, so a test can show that credentials reached the front and
//! never the storage. HTTP/1.1, one request per connection, request
//! bodies with a `Content-Length` only, loopback only.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// One request as a listener saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    pub authorization: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Front,
    Storage,
}

struct Shared {
    registry_port: u16,
    storage_port: u16,
    /// The whole `Authorization` value the front wants, if any.
    required: Option<String>,
    front: Mutex<Vec<Seen>>,
    storage: Mutex<Vec<Seen>>,
}

/// The front and its storage listener.
pub struct StorageFront {
    front_port: u16,
    shared: Arc<Shared>,
}

impl StorageFront {
    /// A front for the registry on `127.0.0.1:registry_port`; with
    /// `required` (`Basic ...`), requests to the front without exactly that
    /// `Authorization` get a `401`.
    pub fn start(registry_port: u16, required: Option<String>) -> StorageFront {
        let front = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let storage = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let front_port = front.local_addr().expect("local address").port();
        let shared = Arc::new(Shared {
            registry_port,
            storage_port: storage.local_addr().expect("local address").port(),
            required,
            front: Mutex::new(Vec::new()),
            storage: Mutex::new(Vec::new()),
        });
        for (listener, role) in [(front, Role::Front), (storage, Role::Storage)] {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("testkit-front".into())
                .spawn(move || {
                    for client in listener.incoming().flatten() {
                        let shared = Arc::clone(&shared);
                        let _ = thread::Builder::new()
                            .name("testkit-front-conn".into())
                            .spawn(move || {
                                let _ = serve(client, role, &shared);
                            });
                    }
                })
                .expect("spawning the front");
        }
        StorageFront { front_port, shared }
    }

    /// `127.0.0.1:<port>` of the front, for `--registry`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.front_port)
    }

    /// What the front was asked, in order.
    pub fn front_requests(&self) -> Vec<Seen> {
        self.shared
            .front
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// What the storage listener was asked, in order.
    pub fn storage_requests(&self) -> Vec<Seen> {
        self.shared
            .storage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn serve(client: TcpStream, role: Role, shared: &Shared) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client);
    let Some((method, target, headers)) = read_head(&mut reader)? else {
        return Ok(());
    };
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let authorization = header("authorization");
    let log = match role {
        Role::Front => &shared.front,
        Role::Storage => &shared.storage,
    };
    log.lock().unwrap_or_else(|e| e.into_inner()).push(Seen {
        method: method.clone(),
        target: target.clone(),
        authorization: authorization.clone(),
    });
    let storage = format!("http://127.0.0.1:{}", shared.storage_port);
    if role == Role::Front {
        if shared.required.is_some() && authorization != shared.required {
            let mut client = reader.into_inner();
            return client.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"front\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
        let path = target.split('?').next().unwrap_or_default();
        if (method == "GET" || method == "HEAD") && path.contains("/blobs/sha256:") {
            let sep = if target.contains('?') { '&' } else { '?' };
            let mut client = reader.into_inner();
            return client.write_all(
                format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: {storage}{target}{sep}X-Test-Signature=s1gn3d\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            );
        }
    }

    // Forward to the registry, without credentials (the front checked
    // them) and one request per connection.
    let mut upstream = TcpStream::connect(("127.0.0.1", shared.registry_port))?;
    upstream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    for (k, v) in &headers {
        if !["connection", "authorization", "keep-alive"]
            .iter()
            .any(|h| k.eq_ignore_ascii_case(h))
        {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    upstream.write_all(head.as_bytes())?;
    let length: u64 = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    io::copy(&mut (&mut reader).take(length), &mut upstream)?;

    let mut answer = BufReader::new(upstream);
    let mut status_line = String::new();
    answer.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let mut out = status_line;
    loop {
        let mut line = String::new();
        if answer.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((line.as_str(), ""));
        if name.eq_ignore_ascii_case("connection") {
            continue;
        }
        // Upload sessions live on the storage, whoever handed them out.
        if name.eq_ignore_ascii_case("location") && status == "202" {
            let value = value.trim();
            let path = match value.split_once("://") {
                Some((_, rest)) => &rest[rest.find('/').unwrap_or(rest.len())..],
                None => value,
            };
            out.push_str(&format!("Location: {storage}{path}\r\n"));
            continue;
        }
        out.push_str(&line);
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut client = reader.into_inner();
    client.write_all(out.as_bytes())?;
    io::copy(&mut answer, &mut client)?;
    client.flush()
}

type Head = (String, String, Vec<(String, String)>);

/// Method, target and headers, or `None` if the client went away.
fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        if headers.len() > 200 {
            return Ok(None);
        }
    }
    Ok(Some((method, target, headers)))
}
