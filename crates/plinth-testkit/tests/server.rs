//! Exercises the loopback server with a minimal raw HTTP client, so the
//! exact bytes on the wire (lengths, cut-off bodies) can be checked.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use plinth_testkit::Server;

struct Response {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Response {
    fn content_length(&self) -> usize {
        self.headers
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .expect("Content-Length header")
            .parse()
            .unwrap()
    }
}

fn request(
    server: &Server,
    method: &str,
    path: &str,
    timeout: Duration,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(server.addr())?;
    stream.set_read_timeout(Some(timeout))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: testkit\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let headers = String::from_utf8(raw[..split].to_vec()).unwrap();
    let status = headers[9..12].parse().unwrap();
    Ok(Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

fn get(server: &Server, path: &str) -> Response {
    request(server, "GET", path, Duration::from_secs(10)).unwrap()
}

fn served_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("dists/trixie")).unwrap();
    std::fs::write(dir.path().join("dists/trixie/InRelease"), b"0123456789").unwrap();
    std::fs::write(dir.path().join("pool+1~x.deb"), b"deb").unwrap();
    dir
}

#[test]
fn serves_files_with_get_and_head() {
    let dir = served_dir();
    let server = Server::serve(dir.path());
    assert!(server.url().starts_with("http://127.0.0.1:"));

    let r = get(&server, "/dists/trixie/InRelease");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_length(), 10);
    assert_eq!(r.body, b"0123456789");

    let r = request(
        &server,
        "HEAD",
        "/dists/trixie/InRelease",
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.content_length(), 10);
    assert!(r.body.is_empty());

    assert_eq!(get(&server, "/pool%2B1~x.deb").body, b"deb");
    assert_eq!(get(&server, "/pool+1~x.deb?x=1").body, b"deb");
    assert_eq!(get(&server, "/missing").status, 404);
    assert_eq!(
        get(&server, "/dists/trixie").status,
        404,
        "no directory listings"
    );
    assert_eq!(get(&server, "/../etc/passwd").status, 404);
    assert_eq!(
        request(
            &server,
            "POST",
            "/dists/trixie/InRelease",
            Duration::from_secs(10)
        )
        .unwrap()
        .status,
        405
    );
    assert_eq!(
        server.requests(),
        [
            "/dists/trixie/InRelease",
            "/dists/trixie/InRelease",
            "/pool%2B1~x.deb",
            "/pool+1~x.deb?x=1",
            "/missing",
            "/dists/trixie",
            "/../etc/passwd",
            "/dists/trixie/InRelease",
        ]
    );
    assert_eq!(server.requests_with_method()[1].0, "HEAD");
    assert_eq!(server.hits("/InRelease"), 3);
    server.clear_requests();
    assert!(server.requests().is_empty());
}

#[test]
fn fail_answers_the_status_n_times_then_serves() {
    let dir = served_dir();
    let server = Server::serve(dir.path());
    server.fail("/InRelease", 503, 2);
    server.fail("/InRelease", 500, 1);
    let statuses: Vec<u16> = (0..5)
        .map(|_| get(&server, "/dists/trixie/InRelease").status)
        .collect();
    assert_eq!(statuses, [503, 503, 500, 200, 200]);
    // Other paths are unaffected.
    server.fail("/InRelease", 404, 1);
    assert_eq!(get(&server, "/pool+1~x.deb").status, 200);
    assert_eq!(get(&server, "/dists/trixie/InRelease").status, 404);
    server.fail("/InRelease", 404, 5);
    server.clear_faults();
    assert_eq!(get(&server, "/dists/trixie/InRelease").status, 200);
    assert_eq!(server.hits("/dists/trixie/InRelease"), 7);
}

#[test]
fn stall_provokes_client_timeouts_then_serves() {
    let dir = served_dir();
    let server = Server::serve(dir.path());
    server.stall("/InRelease", Duration::from_secs(2), 1);
    let started = Instant::now();
    let err = request(
        &server,
        "GET",
        "/dists/trixie/InRelease",
        Duration::from_millis(200),
    )
    .err()
    .expect("the client times out");
    assert!(matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    assert!(started.elapsed() < Duration::from_secs(2));
    let started = Instant::now();
    assert_eq!(get(&server, "/dists/trixie/InRelease").status, 200);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn truncate_sends_half_the_promised_body() {
    let dir = served_dir();
    let server = Server::serve(dir.path());
    server.truncate("InRelease", 1);
    let r = get(&server, "/dists/trixie/InRelease");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_length(), 10);
    assert_eq!(r.body, b"01234");
    assert_eq!(get(&server, "/dists/trixie/InRelease").body, b"0123456789");
}

#[test]
fn handles_concurrent_connections() {
    let dir = served_dir();
    let server = Server::serve(dir.path());
    // One stalled request must not hold up the others.
    server.stall("/slow", Duration::from_secs(1), 1);
    let slow = {
        let addr = server.addr();
        thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /slow HTTP/1.1\r\n\r\n").unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).unwrap();
            out
        })
    };
    thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| get(&server, "/dists/trixie/InRelease").status))
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), 200);
        }
    });
    assert!(started.elapsed() < Duration::from_millis(900));
    assert!(slow.join().unwrap().starts_with(b"HTTP/1.1 404"));
    assert_eq!(server.hits("/InRelease"), 8);
}

#[test]
fn drop_stops_listening_even_during_a_stall() {
    let dir = served_dir();
    let server = Server::serve(dir.path());
    let addr = server.addr();
    server.stall("/InRelease", Duration::from_secs(30), 1);
    let stalled = thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /dists/trixie/InRelease HTTP/1.1\r\n\r\n")
            .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    });
    while server.hits("/InRelease") == 0 {
        thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    drop(server);
    assert!(TcpStream::connect(addr).is_err());
    // The stalled connection is closed without an answer, promptly.
    assert!(stalled.join().unwrap().is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
}
