//! An example service for plinth's application images: a small HTTP
//! server with a `/healthz` endpoint, and a `--healthcheck` mode that
//! probes it. Distroless images have no shell and no curl, so the binary
//! is its own health check.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
const USAGE: &str = "usage: hello-server [--listen ADDR:PORT] [--healthcheck]";
/// Largest request head read before answering 431.
const MAX_HEAD: usize = 16 * 1024;

fn main() -> ExitCode {
    let mut listen = DEFAULT_LISTEN.to_owned();
    let mut healthcheck = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => match args.next() {
                Some(addr) => listen = addr,
                None => return usage("--listen needs ADDR:PORT"),
            },
            "--healthcheck" => healthcheck = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    let Ok(addr) = listen.parse::<SocketAddr>() else {
        return usage(&format!("{listen:?} is not ADDR:PORT"));
    };
    let result = if healthcheck {
        probe(loopback_for(addr)).map(|()| println!("healthy"))
    } else {
        serve(addr)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hello-server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(why: &str) -> ExitCode {
    eprintln!("hello-server: {why}\n{USAGE}");
    ExitCode::from(2)
}

/// The address a health check dials for a listening address: a server
/// bound to every interface is reached on loopback.
fn loopback_for(addr: SocketAddr) -> SocketAddr {
    let mut target = addr;
    if addr.ip().is_unspecified() {
        target.set_ip(if addr.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    target
}

fn serve(addr: SocketAddr) -> Result<(), String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("listening on {addr}: {e}"))?;
    eprintln!("hello-server: listening on {addr}");
    let greeting = std::env::var_os("HELLO_GREETING_FILE")
        .and_then(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_else(|| "hello\n".to_owned());
    for stream in listener.incoming().flatten() {
        let greeting = greeting.clone();
        std::thread::spawn(move || {
            if let Err(e) = answer(stream, &greeting) {
                eprintln!("hello-server: {e}");
            }
        });
    }
    Ok(())
}

fn answer(mut stream: TcpStream, greeting: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let (status, body) = loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                break route(request.method, request.path, greeting);
            }
            Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => {
                break ("431 Request Header Fields Too Large", "too large\n".into());
            }
            Err(_) => break ("400 Bad Request", "bad request\n".into()),
        }
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn route(method: Option<&str>, path: Option<&str>, greeting: &str) -> (&'static str, String) {
    match (method, path) {
        (Some("GET"), Some("/healthz")) => ("200 OK", "ok\n".into()),
        (Some("GET"), Some("/")) => ("200 OK", greeting.to_owned()),
        (Some("GET"), _) => ("404 Not Found", "not found\n".into()),
        _ => ("405 Method Not Allowed", "method not allowed\n".into()),
    }
}

/// `GET /healthz` on `addr`; healthy means a 200 within two seconds.
fn probe(addr: SocketAddr) -> Result<(), String> {
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("health check of {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| {
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        })
        .map_err(|e| format!("health check of {addr}: {e}"))?;
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .map_err(|e| format!("health check of {addr}: {e}"))?;
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(&reply) {
        Ok(httparse::Status::Complete(_)) if response.code == Some(200) => Ok(()),
        Ok(httparse::Status::Complete(_)) => Err(format!(
            "health check of {addr}: status {}",
            response.code.unwrap_or(0)
        )),
        _ => Err(format!("health check of {addr}: not an HTTP response")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthcheck_passes_against_a_running_server_and_fails_without_one() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer(stream, "hi\n");
            }
        });
        assert_eq!(probe(addr), Ok(()));
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = probe(closed).unwrap_err();
        assert!(err.contains(&closed.to_string()), "{err}");
    }

    #[test]
    fn routes() {
        assert_eq!(route(Some("GET"), Some("/healthz"), "g").0, "200 OK");
        assert_eq!(route(Some("GET"), Some("/"), "g"), ("200 OK", "g".into()));
        assert_eq!(route(Some("GET"), Some("/x"), "g").0, "404 Not Found");
        assert_eq!(
            route(Some("POST"), Some("/"), "g").0,
            "405 Method Not Allowed"
        );
    }

    #[test]
    fn unspecified_addresses_are_probed_on_loopback() {
        let a: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(loopback_for(a), "127.0.0.1:8080".parse().unwrap());
        let b: SocketAddr = "10.0.0.1:80".parse().unwrap();
        assert_eq!(loopback_for(b), b);
    }
}
