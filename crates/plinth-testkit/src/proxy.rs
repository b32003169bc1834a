//! A CONNECT proxy on loopback, as corporate networks put between a build
//! machine and the outside: it tunnels to loopback ports only, records
//! every `CONNECT` target and the `Proxy-Authorization` it came with, and
//! can insist on credentials (answering `407` without them).
//!
//! A tunnel carries bytes both ways untouched (TLS passes through), so
//! whatever reaches the server through it is what the client sent.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// One `CONNECT` the proxy was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// `host:port` as the client sent it.
    pub target: String,
    /// The `Proxy-Authorization` header, if any.
    pub authorization: Option<String>,
}

struct Shared {
    connects: Mutex<Vec<Connect>>,
    required: Option<String>,
    shutdown: AtomicBool,
}

/// The proxy, stopped when dropped.
pub struct ConnectProxy {
    port: u16,
    shared: Arc<Shared>,
}

impl ConnectProxy {
    /// A proxy that tunnels for anyone.
    pub fn start() -> ConnectProxy {
        Self::start_with(None)
    }

    /// A proxy that wants `Proxy-Authorization: Basic base64(user:password)`
    /// exactly (`basic` is the base64 part).
    pub fn requiring(basic: &str) -> ConnectProxy {
        Self::start_with(Some(format!("Basic {basic}")))
    }

    fn start_with(required: Option<String>) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let shared = Arc::new(Shared {
            connects: Mutex::new(Vec::new()),
            required,
            shutdown: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&shared);
        thread::Builder::new()
            .name(format!("testkit-proxy-{port}"))
            .spawn(move || {
                for client in listener.incoming() {
                    if accepting.shutdown.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let shared = Arc::clone(&accepting);
                    let _ = thread::Builder::new()
                        .name("testkit-proxy-conn".into())
                        .spawn(move || {
                            let _ = tunnel(client, &shared);
                        });
                }
            })
            .expect("spawning the proxy");
        ConnectProxy { port, shared }
    }

    /// `http://127.0.0.1:<port>`, for `https_proxy`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every `CONNECT` so far, in order, refused ones included.
    pub fn connects(&self) -> Vec<Connect> {
        self.shared
            .connects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        let _ =
            TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_secs(1));
    }
}

fn tunnel(client: TcpStream, shared: &Shared) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(client);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let target = target.to_owned();
    let mut authorization = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.trim().eq_ignore_ascii_case("proxy-authorization")
        {
            authorization = Some(value.trim().to_owned());
        }
    }
    shared
        .connects
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Connect {
            target: target.clone(),
            authorization: authorization.clone(),
        });
    let mut client = reader.into_inner();
    let answer = |client: &mut TcpStream, status: &str| {
        client.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
    };
    if method != "CONNECT" {
        return answer(&mut client, "405 Only CONNECT");
    }
    if shared.required.is_some() && authorization != shared.required {
        return client.write_all(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n",
        );
    }
    // Loopback only: a test never reaches the network through it.
    let port = target
        .rsplit_once(':')
        .filter(|(host, _)| is_loopback(host))
        .and_then(|(_, p)| p.parse::<u16>().ok());
    let Some(port) = port else {
        return answer(&mut client, "403 Loopback Only");
    };
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", port)) else {
        return answer(&mut client, "502 Bad Gateway");
    };
    client.set_read_timeout(None)?;
    client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    let (mut from_client, mut to_upstream) = (client.try_clone()?, upstream.try_clone()?);
    let up = thread::spawn(move || {
        let _ = io::copy(&mut from_client, &mut to_upstream);
        let _ = to_upstream.shutdown(Shutdown::Write);
    });
    let (mut from_upstream, mut to_client) = (upstream, client);
    let _ = io::copy(&mut from_upstream, &mut to_client);
    let _ = to_client.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
