//! A read-only HTTP/1.1 file server on loopback, with injectable faults.
//!
//! Owns serving a directory to the code under test over
//! `127.0.0.1:<ephemeral port>` (GET and HEAD, one thread per connection,
//! `Connection: close`), in plain HTTP or over TLS with a certificate of
//! the test PKI ([`crate::tls`]), recording which paths were asked for
//! (and how many TLS handshakes the client refused), and misbehaving on
//! request: error statuses, stalls, cut-off bodies and endless ones.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a connection may take to send its request head; bounds the
/// life of a thread serving a client that never speaks.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, Clone)]
enum FaultKind {
    Status(u16),
    Stall(Duration),
    Truncate,
    Endless,
}

/// The most an endless body sends before giving up on a client that
/// keeps reading: far more than any limit plinth sets.
const ENDLESS_CAP: u64 = 8 << 30;

#[derive(Debug, Clone)]
struct Fault {
    suffix: String,
    kind: FaultKind,
    remaining: usize,
}

#[derive(Debug, Default)]
struct State {
    requests: Vec<(String, String)>,
    faults: Vec<Fault>,
}

struct Shared {
    root: PathBuf,
    shutdown: AtomicBool,
    state: Mutex<State>,
    tls: Option<Arc<rustls::ServerConfig>>,
    failed_handshakes: AtomicUsize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("root", &self.root)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking connection thread must not take the test down with
        // a poisoned lock; the state stays usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A file server for one directory, stopped when dropped.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::write(dir.path().join("hello"), b"hi").unwrap();
/// let server = plinth_testkit::server::Server::serve(dir.path());
/// server.fail("/hello", 503, 2);
/// assert!(server.url().starts_with("http://127.0.0.1:"));
/// ```
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts serving `root` on `127.0.0.1` at an ephemeral port.
    pub fn serve(root: impl Into<PathBuf>) -> Server {
        Self::start(root.into(), None)
    }

    /// Starts serving `root` over TLS with `cert` (make it for `127.0.0.1`
    /// and `localhost`).
    pub fn serve_tls(root: impl Into<PathBuf>, cert: &crate::tls::ServerCert) -> Server {
        Self::start(root.into(), Some(cert.server_config()))
    }

    fn start(root: PathBuf, tls: Option<Arc<rustls::ServerConfig>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            root,
            shutdown: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            tls,
            failed_handshakes: AtomicUsize::new(0),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("testkit-http-{}", addr.port()))
                .spawn(move || accept_loop(listener, shared))
                .expect("spawning the acceptor")
        };
        Server {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:<port>` (`https://` over TLS), without a
    /// trailing slash.
    pub fn url(&self) -> String {
        let scheme = if self.shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// TLS handshakes that did not complete (the client refused the
    /// certificate, or spoke plain HTTP).
    pub fn failed_handshakes(&self) -> usize {
        self.shared.failed_handshakes.load(Ordering::SeqCst)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next `times` requests whose path ends with `path_suffix` are
    /// answered with `status` (and a short text body) instead of the file.
    pub fn fail(&self, path_suffix: &str, status: u16, times: usize) {
        self.add_fault(path_suffix, FaultKind::Status(status), times);
    }

    /// The next `times` requests whose path ends with `path_suffix` wait
    /// `duration` before any byte of the answer is sent, then are served
    /// normally (if the client is still there).
    pub fn stall(&self, path_suffix: &str, duration: Duration, times: usize) {
        self.add_fault(path_suffix, FaultKind::Stall(duration), times);
    }

    /// The next `times` requests whose path ends with `path_suffix` get
    /// the full `Content-Length` header but only the first half of the
    /// body before the connection is closed.
    pub fn truncate(&self, path_suffix: &str, times: usize) {
        self.add_fault(path_suffix, FaultKind::Truncate, times);
    }

    /// The next `times` requests whose path ends with `path_suffix` get a
    /// `200` without a length whose body never ends (until the client goes
    /// away, or after 8 GiB).
    pub fn endless(&self, path_suffix: &str, times: usize) {
        self.add_fault(path_suffix, FaultKind::Endless, times);
    }

    /// Forgets all faults not yet used up.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// The paths of all requests so far (as sent, query included), in
    /// arrival order, including failed ones.
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .lock()
            .requests
            .iter()
            .map(|(_, path)| path.clone())
            .collect()
    }

    /// Like [`Server::requests`], as `(method, path)` pairs.
    pub fn requests_with_method(&self) -> Vec<(String, String)> {
        self.shared.lock().requests.clone()
    }

    /// How many requests had a path ending with `path_suffix`.
    pub fn hits(&self, path_suffix: &str) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|(_, path)| path.ends_with(path_suffix))
            .count()
    }

    /// Forgets the requests seen so far.
    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    fn add_fault(&self, suffix: &str, kind: FaultKind, times: usize) {
        self.shared.lock().faults.push(Fault {
            suffix: suffix.to_owned(),
            kind,
            remaining: times,
        });
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        // The acceptor is blocked in accept(); a connection wakes it up
        // to see the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.shutdown.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let shared = Arc::clone(&shared);
        // Connection threads are detached: a stalled one notices the
        // shutdown flag on its own, and the others finish quickly.
        let _ = thread::Builder::new()
            .name("testkit-http-conn".to_owned())
            .spawn(move || serve_connection(stream, &shared));
    }
}

/// One connection, over TLS when the server has a certificate.
fn serve_connection(stream: TcpStream, shared: &Shared) {
    if stream.set_read_timeout(Some(REQUEST_TIMEOUT)).is_err() {
        return;
    }
    match &shared.tls {
        None => {
            let mut stream = stream;
            // A TLS ClientHello on the plain port: answer in HTTP, as
            // nginx and Go's server do, instead of waiting for a head.
            let mut first = [0u8; 1];
            if stream.peek(&mut first).is_ok_and(|n| n == 1) && first[0] == 0x16 {
                let _ = respond_text(&mut stream, 400, false);
            } else {
                let _ = handle(&mut stream, shared);
            }
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
        Some(config) => {
            let Ok(conn) = rustls::ServerConnection::new(Arc::clone(config)) else {
                return;
            };
            let mut tls = rustls::StreamOwned::new(conn, stream);
            if tls.conn.complete_io(&mut tls.sock).is_err() {
                shared.failed_handshakes.fetch_add(1, Ordering::SeqCst);
                return;
            }
            let _ = handle(&mut tls, shared);
            tls.conn.send_close_notify();
            let _ = tls.conn.complete_io(&mut tls.sock);
            let _ = tls.sock.shutdown(std::net::Shutdown::Write);
        }
    }
}

fn handle(stream: &mut (impl Read + Write), shared: &Shared) -> io::Result<()> {
    let Some(head) = read_head(stream)? else {
        return Ok(());
    };
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();

    let fault = {
        let mut state = shared.lock();
        state.requests.push((method.clone(), target.clone()));
        let path = target.split(['?', '#']).next().unwrap_or_default();
        state
            .faults
            .iter_mut()
            .find(|f| f.remaining > 0 && path.ends_with(&f.suffix))
            .map(|f| {
                f.remaining -= 1;
                f.kind.clone()
            })
    };

    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond_text(stream, 405, head_only);
    }
    match fault {
        Some(FaultKind::Status(status)) => return respond_text(stream, status, head_only),
        Some(FaultKind::Endless) => return respond_endless(stream, shared),
        Some(FaultKind::Stall(duration)) => {
            if !sleep_unless_shutdown(duration, shared) {
                return Ok(());
            }
        }
        Some(FaultKind::Truncate) | None => {}
    }
    let Some(file) = resolve(&shared.root, &target) else {
        return respond_text(stream, 404, head_only);
    };
    let body = match std::fs::read(&file) {
        Ok(body) => body,
        Err(_) => return respond_text(stream, 404, head_only),
    };
    let header = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes())?;
    if !head_only {
        let send = if matches!(fault, Some(FaultKind::Truncate)) {
            body.len() / 2
        } else {
            body.len()
        };
        stream.write_all(&body[..send])?;
    }
    stream.flush()
}

/// A `200` whose body goes on until the client leaves.
fn respond_endless(stream: &mut impl Write, shared: &Shared) -> io::Result<()> {
    stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
    )?;
    let chunk = vec![b'x'; 64 << 10];
    let mut sent = 0u64;
    while sent < ENDLESS_CAP && !shared.shutdown.load(Ordering::SeqCst) {
        stream.write_all(&chunk)?;
        sent += chunk.len() as u64;
    }
    stream.flush()
}

/// Reads up to the blank line ending the request head; `None` if the
/// client went away first.
fn read_head(stream: &mut impl Read) -> io::Result<Option<String>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(Some(String::from_utf8_lossy(&head).into_owned()))
}

fn respond_text(stream: &mut impl Write, status: u16, head_only: bool) -> io::Result<()> {
    let reason = reason(status);
    let body = format!("{status} {reason}\n");
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(&body);
    }
    stream.write_all(out.as_bytes())?;
    stream.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Injected Fault",
    }
}

/// Returns false if the server shut down during the wait.
fn sleep_unless_shutdown(duration: Duration, shared: &Shared) -> bool {
    let deadline = Instant::now() + duration;
    loop {
        if shared.shutdown.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}

/// Maps a request target to a regular file under `root`, refusing
/// anything that could climb out of it.
fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next()?;
    let decoded = percent_decode(path.strip_prefix('/')?)?;
    let relative = Path::new(&decoded);
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return None;
    }
    let full = root.join(relative);
    full.is_file().then_some(full)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(out).ok()?;
    (!decoded.contains('\0')).then_some(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a b"), b"x").unwrap();
        assert!(resolve(dir.path(), "/a%20b").is_some());
        assert!(resolve(dir.path(), "/a%20b?x=1").is_some());
        assert!(resolve(dir.path(), "/../etc/passwd").is_none());
        assert!(resolve(dir.path(), "/%2e%2e/etc/passwd").is_none());
        assert!(resolve(dir.path(), "//etc/passwd").is_none());
        assert!(resolve(dir.path(), "/").is_none());
        assert!(resolve(dir.path(), "relative").is_none());
    }
}
