//! Origins, and the rules of where a request may go: which URLs plinth
//! connects to at all, where credentials may travel, and how a redirect is
//! followed.
//!
//! - An **origin** is scheme, host and port, compared exactly:
//!   `localhost` and `127.0.0.1` are two origins, `:443` and no port on
//!   `https` are one.
//! - **Credentials are bound to one origin**: the `Authorization` of a
//!   registry goes to that registry's origin and nowhere else, whatever a
//!   `Location` or a redirect says; once a redirect chain has left that
//!   origin it is not sent again in the chain, even if a later hop points
//!   back (the other host chose that URL).
//! - **Plain HTTP** goes to loopback only where the caller says so
//!   ([`PlainHttp::LoopbackOnly`]: registries, token realms and whatever
//!   they redirect to), checked on the first request and after every
//!   `Location`, before connecting. Debian mirrors may be plain HTTP
//!   ([`PlainHttp::Anywhere`]): what they serve is checked against signed
//!   hashes, and they carry no credentials.
//! - `307`/`308` repeat the method and body; `301`/`302`/`303` turn into
//!   `GET` without a body (`HEAD` stays `HEAD`), as curl and Go do.
//!
//! ureq's own redirect handling is off (`max_redirects(0)`): its
//! `SameHost` mode compares host names only, so it would carry a token
//! from `host:5000` to `host:6000`, and it does not follow `307` for a
//! method with a body.

use std::fmt;
use std::net::IpAddr;

use ureq::http::{Method, Uri};

use crate::support::text::printable;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// Whether plain HTTP may leave this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainHttp {
    /// `http:` to loopback hosts only (registries, token realms).
    LoopbackOnly,
    /// `http:` anywhere (Debian mirrors, whose bytes are signature-checked).
    Anywhere,
}

/// Scheme, host and port of a URL: what credentials are bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: Scheme,
    /// Lower case; an IPv6 address in brackets.
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// The origin of an absolute `http(s)` URL.
    pub fn parse(url: &str) -> Result<Origin, String> {
        // The scheme first, so that `file:///x` is refused for what it is.
        let scheme = match url
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase())
            .as_deref()
        {
            Some("https") => Scheme::Https,
            Some("http") => Scheme::Http,
            Some(other) => {
                return Err(format!(
                    "scheme {:?} is not http or https",
                    printable(other, 20)
                ));
            }
            None => return Err("not an absolute URL".into()),
        };
        let uri: Uri = url.parse().map_err(|_| "not a valid URL".to_owned())?;
        let authority = uri.authority().ok_or("no host in the URL")?;
        let host = authority.host().to_ascii_lowercase();
        if host.is_empty() {
            return Err("no host in the URL".into());
        }
        // `http::Uri` answers "no port" for an out-of-range one
        // (`h:99999`): read the text, never fall back to the default.
        let text = authority.as_str();
        let after_host = match text.rfind(']') {
            Some(i) => &text[i + 1..],
            None => text.rsplit_once('@').map_or(text, |(_, h)| h),
        };
        let port = match after_host.rsplit_once(':') {
            None | Some((_, "")) => scheme.default_port(),
            Some((_, p)) => match p.parse::<u16>() {
                Ok(n) if n != 0 => n,
                _ => return Err("not a valid port".into()),
            },
        };
        Ok(Origin { scheme, host, port })
    }

    /// `localhost`, `127.0.0.0/8` or `::1`.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.host)
    }

    /// `host:port`, for messages.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// Whether `host` (a name, an address, or `[v6]`, without a port) names
/// this machine: `localhost` or a loopback address, parsed rather than
/// matched by prefix (`127.example.org` is not loopback).
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// The origin of `url` if plinth may connect to it under `plain_http`.
pub fn check_url(url: &str, plain_http: PlainHttp) -> Result<Origin, String> {
    let origin = Origin::parse(url)?;
    if origin.scheme == Scheme::Http
        && plain_http == PlainHttp::LoopbackOnly
        && !origin.is_loopback()
    {
        return Err(
            "plain HTTP is allowed to loopback hosts only (localhost, 127.0.0.0/8, ::1); use https"
                .into(),
        );
    }
    Ok(origin)
}

/// One request of a redirect chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub method: Method,
    pub url: String,
    /// Whether the request body goes with it.
    pub with_body: bool,
    /// Whether the credentials go with it.
    pub with_credentials: bool,
}

impl Hop {
    /// The first request of a chain; credentials go if `url` is on their
    /// origin.
    pub fn first(method: Method, url: &str, credentials_for: Option<&Origin>) -> Hop {
        Hop {
            method,
            url: url.to_owned(),
            with_body: true,
            with_credentials: allows(credentials_for, url),
        }
    }
}

/// Whether credentials bound to `origin` may go to `url`.
fn allows(origin: Option<&Origin>, url: &str) -> bool {
    origin.is_some_and(|o| Origin::parse(url).is_ok_and(|u| u == *o))
}

/// The hop after `current` answered `status` with `location`, or `None`
/// when the answer is not a redirect to follow (it is then the result).
/// `Err` is a redirect that cannot be followed, in words. Bounding the
/// chain is the caller's part.
pub fn next_hop(
    current: &Hop,
    status: u16,
    location: Option<&str>,
    credentials_for: Option<&Origin>,
    plain_http: PlainHttp,
) -> Result<Option<Hop>, String> {
    let keep_method = match status {
        307 | 308 => true,
        301..=303 => false,
        // 300 (a choice), 304 (not modified), 305/306 (obsolete): answers.
        _ => return Ok(None),
    };
    let location = location.ok_or_else(|| format!("HTTP {status} without a Location"))?;
    let next_url = resolve(&current.url, location.trim())
        .map_err(|why| format!("HTTP {status} to {}: {why}", redact_url(location)))?;
    check_url(&next_url, plain_http)
        .map_err(|why| format!("HTTP {status}: refusing {}: {why}", redact_url(&next_url)))?;
    let (method, with_body) = if keep_method {
        (current.method.clone(), current.with_body)
    } else if current.method == Method::HEAD {
        (Method::HEAD, false)
    } else {
        (Method::GET, false)
    };
    Ok(Some(Hop {
        method,
        // Sticky: once dropped, never added again within the chain.
        with_credentials: current.with_credentials && allows(credentials_for, &next_url),
        url: next_url,
        with_body,
    }))
}

/// Resolves a reference (a `Location`) against the absolute URL of the
/// request that got it (RFC 3986 section 5.2; fragments dropped).
pub fn resolve(base: &str, reference: &str) -> Result<String, String> {
    let reference = reference.split('#').next().unwrap_or_default();
    if reference.chars().any(|c| c.is_control() || c == ' ') {
        return Err("not a valid URL".into());
    }
    let (scheme, base_rest) = base.split_once("://").ok_or("the base is not absolute")?;
    if has_scheme(reference) {
        let (s, rest) = reference.split_once(':').unwrap_or_default();
        let rest = rest.strip_prefix("//").ok_or("not an absolute URL")?;
        let (authority, path_query) = split_authority(rest);
        return Ok(format!(
            "{s}://{authority}{}",
            normalize_path_query(path_query)
        ));
    }
    if let Some(rest) = reference.strip_prefix("//") {
        let (authority, path_query) = split_authority(rest);
        return Ok(format!(
            "{scheme}://{authority}{}",
            normalize_path_query(path_query)
        ));
    }
    let (authority, base_path_query) = split_authority(base_rest);
    let base_path_query = base_path_query.split('#').next().unwrap_or_default();
    let base_path = base_path_query
        .split_once('?')
        .map_or(base_path_query, |(p, _)| p);
    let path_query = if reference.is_empty() {
        base_path_query.to_owned()
    } else if reference.starts_with('/') {
        normalize_path_query(reference)
    } else if let Some(query) = reference.strip_prefix('?') {
        format!("{base_path}?{query}")
    } else {
        // Merge: the base path up to its last '/', then the reference.
        let dir = base_path.rfind('/').map_or("/", |i| &base_path[..=i]);
        normalize_path_query(&format!("{dir}{reference}"))
    };
    let path_query = if path_query.is_empty() {
        "/".to_owned()
    } else {
        path_query
    };
    Ok(format!("{scheme}://{authority}{path_query}"))
}

fn has_scheme(reference: &str) -> bool {
    reference.split_once(':').is_some_and(|(s, _)| {
        let mut bytes = s.bytes();
        bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
            && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    })
}

fn split_authority(rest: &str) -> (&str, &str) {
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    rest.split_at(end)
}

/// Removes `.` and `..` segments from the path part (RFC 3986 5.2.4).
fn normalize_path_query(path_query: &str) -> String {
    let (path, query) = match path_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_query, None),
    };
    let segments: Vec<&str> = path.split('/').collect();
    let mut out: Vec<&str> = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." | ".." => {
                if *seg == ".." && out.len() > 1 {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut path = out.join("/");
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
}

/// A URL fit for a log line or an error: no `user:password@`, no query (an
/// upload session or a signed object-storage URL carries its secrets
/// there), no fragment, printable and bounded.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return printable(url.split(['?', '#']).next().unwrap_or_default(), 300);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let path = rest[end..].split(['?', '#']).next().unwrap_or_default();
    printable(&format!("{scheme}://{host}{path}"), 300)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let o = Origin::parse("HTTPS://Registry.Example/v2/").unwrap();
        assert_eq!(o.to_string(), "https://registry.example:443");
        assert_eq!(o, Origin::parse("https://registry.example:443/x").unwrap());
        assert_ne!(o, Origin::parse("https://registry.example:5000/").unwrap());
        assert_ne!(o, Origin::parse("http://registry.example:443/").unwrap());
        assert_eq!(Origin::parse("http://[::1]:5000/").unwrap().host, "[::1]");
        for bad in [
            "",
            "/v2/",
            "ftp://h/",
            "https://",
            "https://:80/",
            "http://h.example:99999/",
            "https://h.example o/",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_is_parsed_not_prefixed() {
        for (host, want) in [
            ("localhost", true),
            ("LOCALHOST", true),
            ("127.0.0.1", true),
            ("127.9.9.9", true),
            ("[::1]", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("127.example.com", false),
            ("127.0.0.1.example.org", false),
            ("localhost.example.com", false),
            ("10.0.0.1", false),
            ("", false),
        ] {
            assert_eq!(is_loopback_host(host), want, "{host}");
        }
        assert!(check_url("http://127.0.0.1:5000/v2/", PlainHttp::LoopbackOnly).is_ok());
        assert!(check_url("http://mirror.example/debian", PlainHttp::Anywhere).is_ok());
        let e = check_url("http://127.example.com/v2/", PlainHttp::LoopbackOnly).unwrap_err();
        assert!(
            e.contains("plain HTTP is allowed to loopback hosts only"),
            "{e}"
        );
    }

    #[test]
    fn resolves_locations_as_rfc_3986_says() {
        let base = "https://r.example/v2/a/blobs/uploads/?mount=x";
        for (reference, want) in [
            (
                "https://s3.example/b?X-Sig=1",
                "https://s3.example/b?X-Sig=1",
            ),
            ("//cdn.example/x", "https://cdn.example/x"),
            (
                "/v2/a/blobs/uploads/u1?_state=s",
                "https://r.example/v2/a/blobs/uploads/u1?_state=s",
            ),
            ("u2", "https://r.example/v2/a/blobs/uploads/u2"),
            ("../../x/./y", "https://r.example/v2/a/x/y"),
            ("?q=1", "https://r.example/v2/a/blobs/uploads/?q=1"),
            ("", "https://r.example/v2/a/blobs/uploads/?mount=x"),
            ("/a/b/../../../..", "https://r.example/"),
            ("#frag", "https://r.example/v2/a/blobs/uploads/?mount=x"),
        ] {
            assert_eq!(resolve(base, reference).unwrap(), want, "{reference}");
        }
        assert!(resolve(base, "/a\nb").is_err());
        assert!(resolve(base, "https:no-slashes").is_err());
        assert_eq!(
            resolve("https://h.example", "x").unwrap(),
            "https://h.example/x"
        );
    }

    fn hop(method: Method, url: &str, creds: bool) -> Hop {
        Hop {
            method,
            url: url.into(),
            with_body: true,
            with_credentials: creds,
        }
    }

    #[test]
    fn credentials_stay_on_their_origin_and_never_come_back() {
        let registry = Origin::parse("https://r.example/v2/").unwrap();
        let creds = Some(&registry);
        let next = |from: &Hop, status, to| {
            next_hop(from, status, Some(to), creds, PlainHttp::LoopbackOnly)
                .unwrap()
                .unwrap()
        };
        let first = Hop::first(Method::GET, "https://r.example/v2/a/blobs/sha256:1", creds);
        assert!(first.with_credentials);
        assert!(!Hop::first(Method::GET, "https://s3.example/x", creds).with_credentials);
        assert!(next(&first, 307, "/v2/a/blobs/other").with_credentials);
        assert!(!next(&first, 307, "https://r.example:8443/x").with_credentials);
        let away = next(&first, 307, "https://s3.example/b?sig=1");
        assert!(!away.with_credentials);
        assert_eq!(away.method, Method::GET);
        let back = next(&away, 302, "https://r.example/v2/");
        assert!(
            !back.with_credentials,
            "dropped credentials are not added again"
        );
    }

    #[test]
    fn methods_bodies_and_refusals() {
        let put = hop(Method::PUT, "https://r.example/up", true);
        let follow =
            |status, to: Option<&str>| next_hop(&put, status, to, None, PlainHttp::LoopbackOnly);
        let h = follow(307, Some("/up2")).unwrap().unwrap();
        assert_eq!(
            (h.method.clone(), h.with_body, h.with_credentials),
            (Method::PUT, true, false)
        );
        let h = follow(303, Some("/done")).unwrap().unwrap();
        assert_eq!((h.method, h.with_body), (Method::GET, false));
        let head = hop(Method::HEAD, "https://r.example/b", false);
        let h = next_hop(&head, 302, Some("/c"), None, PlainHttp::LoopbackOnly);
        assert_eq!(h.unwrap().unwrap().method, Method::HEAD);
        for status in [200, 201, 202, 300, 304, 404] {
            assert!(follow(status, Some("/x")).unwrap().is_none(), "{status}");
        }
        let e = follow(307, None).unwrap_err();
        assert!(e.contains("without a Location"), "{e}");
        let e = follow(307, Some("http://s3.example/b?sig=SECRET")).unwrap_err();
        assert!(
            e.contains("plain HTTP is allowed to loopback hosts only"),
            "{e}"
        );
        assert!(!e.contains("SECRET"), "{e}");
        let e = follow(301, Some("file:///etc/passwd")).unwrap_err();
        assert!(e.contains("not http or https"), "{e}");
        // Loopback plain HTTP is fine, from https too; a mirror may go
        // anywhere over plain HTTP.
        assert!(follow(307, Some("http://127.0.0.1:9/x")).is_ok());
        let mirror = hop(Method::GET, "https://m.example/debian/x", false);
        assert!(
            next_hop(
                &mirror,
                302,
                Some("http://other.example/x"),
                None,
                PlainHttp::Anywhere
            )
            .is_ok()
        );
    }

    #[test]
    fn redacted_urls_have_no_userinfo_query_or_fragment() {
        assert_eq!(
            redact_url("https://u:p@r.example:5000/v2/x/blobs/uploads/abc?_state=SECRET#f"),
            "https://r.example:5000/v2/x/blobs/uploads/abc"
        );
        assert_eq!(redact_url("http://h.example?x=1"), "http://h.example");
        assert_eq!(redact_url("garbage?token=1"), "garbage");
        // An '@' in the path is not userinfo.
        assert_eq!(redact_url("http://m.example/a@b"), "http://m.example/a@b");
    }
}
