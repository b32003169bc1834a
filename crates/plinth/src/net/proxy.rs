//! Proxies from the environment, and `no_proxy` matching as curl does it.
//!
//! Which variable serves which URL, as curl reads them: `https_proxy`
//! (else `HTTPS_PROXY`) for `https:` URLs, `http_proxy` (else
//! `HTTP_PROXY`) for `http:` URLs, `all_proxy` (else `ALL_PROXY`) for
//! either when the specific one is unset. A value without a scheme is an
//! `http://` proxy. Proxies are reached with `CONNECT` (ureq tunnels
//! `http:` targets too), over TCP for an `http://` proxy and over TLS,
//! with the same trust, for `https://`.
//!
//! Why not ureq's own `Proxy::try_from_env` (ureq 3.5): it takes one proxy
//! for every URL whatever its scheme, and its `NO_PROXY` matcher compares
//! the host only (an entry `host:5000` never matches), knows no address
//! blocks and keeps the space of `a, b`. It is also what every agent uses
//! unless it is told otherwise, so [`super::transport`] always sets the
//! proxy explicitly.
//!
//! `no_proxy`, per comma- or space-separated entry:
//! - `*` (anywhere in the list): no proxy at all.
//! - `example.com`, `.example.com`, `*.example.com`: that host and every
//!   host under it (curl ignores a leading dot; so does this).
//! - `10.1.2.3`, `::1`, `[::1]`: that address; `10.0.0.0/8`, `fd00::/8`:
//!   addresses in the block (curl 7.86 and later). Names never match
//!   addresses: nothing is resolved.
//! - any of those with `:PORT` (`[::1]:5000` for IPv6): that port only.
//!
//! Loopback is not exempt on its own, as in curl: list
//! `localhost,127.0.0.1,::1` in `no_proxy`. A proxy variable that cannot
//! be used fails the requests that would go through it, naming the
//! variable; credentials in a proxy URL go to the proxy in
//! `Proxy-Authorization` on `CONNECT` and are never displayed.

use std::fmt;
use std::net::IpAddr;

use super::env::Environment;
use super::origin::Scheme;
use crate::support::text::printable;

/// A proxy variable that cannot be used. Never shows credentials.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{from}={shown}: {why}")]
pub struct ProxyError {
    /// The variable.
    pub from: String,
    /// Its value without credentials.
    pub shown: String,
    pub why: String,
}

/// A proxy and the variable it came from. `Display` and `Debug` show it
/// without credentials: `http://***@proxy.example:3128`.
#[derive(Clone)]
pub struct ProxyUrl {
    proxy: ureq::Proxy,
    shown: String,
    from: &'static str,
}

impl ProxyUrl {
    /// Parses the value of variable `from`.
    pub fn parse(text: &str, from: &'static str) -> Result<ProxyUrl, ProxyError> {
        let text = text.trim();
        let (scheme, rest) = match text.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => ("http".to_owned(), text),
        };
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let hidden = if userinfo.is_some() { "***@" } else { "" };
        let fail = |why: &str| ProxyError {
            from: from.to_owned(),
            shown: printable(&format!("{scheme}://{hidden}{hostport}"), 200),
            why: why.to_owned(),
        };
        match scheme.as_str() {
            "http" | "https" => {}
            s if s.starts_with("socks") => {
                return Err(fail("SOCKS proxies are not supported; use an HTTP proxy"));
            }
            _ => return Err(fail("not an http:// or https:// proxy")),
        }
        let (host, port) = split_host_port(hostport).ok_or_else(|| fail("no host[:port] in it"))?;
        let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => {
                !host.is_empty()
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
            }
        };
        if !host_ok {
            return Err(fail("not a host name or address"));
        }
        let port = match port {
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => return Err(fail("not a port number")),
            },
            None if scheme == "https" => 443,
            // curl's default for a proxy without a port.
            None => 1080,
        };
        // ureq decodes the percent-encoded user and password once.
        let user = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        let proxy = ureq::Proxy::new(&format!("{scheme}://{user}{host}:{port}")).map_err(|_| {
            fail("not a valid proxy URL (percent-encode '@', ':' and '/' in the password)")
        })?;
        Ok(ProxyUrl {
            proxy,
            shown: format!("{scheme}://{hidden}{host}:{port}"),
            from,
        })
    }

    /// The variable it came from.
    pub fn from(&self) -> &'static str {
        self.from
    }

    pub(super) fn ureq(&self) -> ureq::Proxy {
        self.proxy.clone()
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (from {})", self.shown, self.from)
    }
}

/// `host[:port]` or `[v6][:port]`; `None` if malformed.
fn split_host_port(text: &str) -> Option<(&str, Option<&str>)> {
    if text.starts_with('[') {
        let end = text.find(']')?;
        let (host, rest) = text.split_at(end + 1);
        return match rest {
            "" => Some((host, None)),
            _ => Some((host, Some(rest.strip_prefix(':')?))),
        };
    }
    match text.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h, Some(p))),
        Some(_) => None,
        None => Some((text, None)),
    }
}

/// What the variables say for one scheme.
type ProxySetting = Option<Result<ProxyUrl, ProxyError>>;

/// The proxy of each scheme and the `no_proxy` list.
#[derive(Debug, Clone, Default)]
pub struct Proxies {
    https: ProxySetting,
    http: ProxySetting,
    no_proxy: NoProxy,
}

impl Proxies {
    /// From the variables (see the module documentation for the order).
    pub fn from_env(env: &Environment) -> Proxies {
        let pick = |names: &[&'static str]| -> ProxySetting {
            let (name, value) = env.first_of(names)?;
            Some(match value.to_str() {
                Some(text) => ProxyUrl::parse(text, name),
                None => Err(ProxyError {
                    from: name.to_owned(),
                    shown: "(not UTF-8)".into(),
                    why: "not valid UTF-8".into(),
                }),
            })
        };
        Proxies {
            https: pick(&["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]),
            http: pick(&["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]),
            no_proxy: env
                .first_of(&["no_proxy", "NO_PROXY"])
                .map(|(_, v)| NoProxy::parse(&v.to_string_lossy()))
                .unwrap_or_default(),
        }
    }

    /// The proxy for a URL of `scheme` to `host` (a name, an address, or
    /// `[v6]`) on `port`; `None` to connect directly.
    pub fn for_target(
        &self,
        scheme: Scheme,
        host: &str,
        port: u16,
    ) -> Result<Option<&ProxyUrl>, ProxyError> {
        let setting = match scheme {
            Scheme::Https => &self.https,
            Scheme::Http => &self.http,
        };
        match setting {
            None => Ok(None),
            Some(_) if self.no_proxy.matches(host, port) => Ok(None),
            Some(Ok(proxy)) => Ok(Some(proxy)),
            Some(Err(e)) => Err(e.clone()),
        }
    }

    /// The usable proxy of `scheme`, if any.
    pub(super) fn of(&self, scheme: Scheme) -> Option<&ProxyUrl> {
        match scheme {
            Scheme::Https => self.https.as_ref()?.as_ref().ok(),
            Scheme::Http => self.http.as_ref()?.as_ref().ok(),
        }
    }
}

/// A parsed `no_proxy` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    all: bool,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    pattern: Pattern,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// Lower case, without a leading `*.` or `.` or a trailing `.`.
    Domain(String),
    /// An address block; a single address has the full prefix length.
    Net { addr: IpAddr, prefix: u8 },
}

impl NoProxy {
    /// Parses a list. Never fails: an entry that makes no sense matches
    /// nothing, as in curl.
    pub fn parse(text: &str) -> NoProxy {
        let mut list = NoProxy::default();
        for token in text
            .split(|c: char| c == ',' || c.is_ascii_whitespace())
            .filter(|t| !t.is_empty())
        {
            if token == "*" {
                list.all = true;
            } else if let Some(entry) = parse_entry(token) {
                list.entries.push(entry);
            } else {
                tracing::debug!("no_proxy: ignoring {:?}", printable(token, 100));
            }
        }
        list
    }

    /// Whether `host` (name, address or `[v6]`) on `port` goes direct.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.all {
            return true;
        }
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        let addr = host.parse::<IpAddr>().ok().map(canonical);
        self.entries.iter().any(|e| {
            e.port.is_none_or(|p| p == port)
                && match (&e.pattern, addr) {
                    (Pattern::Net { addr: net, prefix }, Some(a)) => in_block(a, *net, *prefix),
                    (Pattern::Domain(d), None) => {
                        host == *d
                            || host
                                .strip_suffix(d.as_str())
                                .is_some_and(|rest| rest.ends_with('.'))
                    }
                    _ => false,
                }
        })
    }

    pub fn is_empty(&self) -> bool {
        !self.all && self.entries.is_empty()
    }
}

fn parse_entry(token: &str) -> Option<Entry> {
    // Blocks first: `10.0.0.0/8`, `fd00::/8`, `[fd00::]/8`.
    if let Some((addr, bits)) = token.split_once('/') {
        let addr = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr);
        let addr = canonical(addr.parse::<IpAddr>().ok()?);
        let prefix: u8 = bits.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        return (prefix <= max).then_some(Entry {
            pattern: Pattern::Net { addr, prefix },
            port: None,
        });
    }
    // A bare address, IPv6 included (`::1` is not host `:` port `1`).
    if let Ok(addr) = token.parse::<IpAddr>() {
        return Some(Entry {
            pattern: single(addr),
            port: None,
        });
    }
    let (host, port) = split_host_port(token)?;
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0)?),
        None => None,
    };
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    if let Some(addr) = bare.map_or_else(|| host.parse().ok(), |v6| v6.parse().ok()) {
        return Some(Entry {
            pattern: single(addr),
            port,
        });
    }
    if bare.is_some() {
        return None;
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    let name = name.strip_prefix('.').unwrap_or(name);
    let name = name.strip_suffix('.').unwrap_or(name);
    (!name.is_empty()).then(|| Entry {
        pattern: Pattern::Domain(name.to_ascii_lowercase()),
        port,
    })
}

fn single(addr: IpAddr) -> Pattern {
    let addr = canonical(addr);
    Pattern::Net {
        addr,
        prefix: if addr.is_ipv4() { 32 } else { 128 },
    }
}

/// `::ffff:10.1.2.3` is `10.1.2.3`.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn in_block(addr: IpAddr, net: IpAddr, prefix: u8) -> bool {
    let masked = |bytes: &[u8]| -> Vec<u8> {
        bytes
            .iter()
            .enumerate()
            .map(
                |(i, b)| match (usize::from(prefix)).saturating_sub(i * 8).min(8) {
                    0 => 0,
                    bits => b & (0xffu8 << (8 - bits)),
                },
            )
            .collect()
    };
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => masked(&a.octets()) == masked(&n.octets()),
        (IpAddr::V6(a), IpAddr::V6(n)) => masked(&a.octets()) == masked(&n.octets()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_match_themselves_and_below_like_curl() {
        let n = NoProxy::parse("example.com, .corp.example ,*.svc.local,localhost.");
        for (host, want) in [
            ("example.com", true),
            ("www.example.com", true),
            ("WWW.Example.COM.", true),
            ("notexample.com", false),
            ("example.com.evil", false),
            ("corp.example", true),
            ("a.b.corp.example", true),
            ("svc.local", true),
            ("x.svc.local", true),
            ("localhost", true),
            ("127.0.0.1", false),
        ] {
            assert_eq!(n.matches(host, 443), want, "{host}");
        }
    }

    #[test]
    fn addresses_blocks_and_ports() {
        let n = NoProxy::parse(
            "127.0.0.1,10.0.0.0/8 fd00::/8,[::1]:5000,registry.corp:5000,192.168.1.7:80,::2",
        );
        assert!(n.matches("127.0.0.1", 1));
        assert!(!n.matches("127.0.0.2", 1));
        assert!(n.matches("10.200.3.4", 443));
        assert!(!n.matches("11.0.0.1", 443));
        assert!(n.matches("[fd12::1]", 443));
        assert!(n.matches("::ffff:10.1.1.1", 443));
        assert!(n.matches("[::1]", 5000));
        assert!(!n.matches("[::1]", 5001));
        assert!(n.matches("::2", 9));
        assert!(n.matches("registry.corp", 5000));
        assert!(!n.matches("registry.corp", 443));
        assert!(n.matches("192.168.1.7", 80));
        assert!(!n.matches("192.168.1.7", 443));
    }

    #[test]
    fn star_and_nonsense() {
        assert!(NoProxy::parse("a.example, *").matches("anything", 1));
        let n = NoProxy::parse(",,  ,:80,[::1,10.0.0.0/99,1.2.3.4/x,host:0,host:99999,*.,.,[zz]:1");
        assert!(n.is_empty(), "{n:?}");
        assert!(!NoProxy::parse("").matches("", 0));
        // Long input and odd bytes: no panic.
        let long = "é.".repeat(10_000) + ",\u{0}";
        assert!(!NoProxy::parse(&long).matches("é", 1));
    }

    #[test]
    fn proxy_urls_parse_and_never_show_credentials() {
        let p = ProxyUrl::parse("http://user:s%40cret@proxy.example:3128/", "https_proxy").unwrap();
        assert_eq!(p.to_string(), "http://***@proxy.example:3128");
        assert_eq!(p.ureq().password(), Some("s@cret"));
        assert!(!format!("{p:?}").contains("s%40cret"));
        assert_eq!(
            ProxyUrl::parse("proxy.example", "http_proxy")
                .unwrap()
                .to_string(),
            "http://proxy.example:1080"
        );
        assert_eq!(
            ProxyUrl::parse("https://[::1]", "HTTPS_PROXY")
                .unwrap()
                .to_string(),
            "https://[::1]:443"
        );
        for bad in [
            "socks5://u:s3cret@p:1080",
            "ftp://u:s3cret@p",
            "http://u:s3cret@",
            "http://u:s3cret@p:0",
            "http://u:s3cret@p:x",
            "http://u:s3cret@p q",
            "http://u:s3cret@[zz]:1",
        ] {
            let e = ProxyUrl::parse(bad, "https_proxy").unwrap_err().to_string();
            assert!(!e.contains("s3cret") && !e.contains("u:"), "{e}");
            assert!(e.starts_with("https_proxy="), "{e}");
        }
    }

    #[test]
    fn one_variable_per_scheme_lower_case_first_and_broken_ones_named() {
        let env = Environment::empty()
            .with("HTTPS_PROXY", "http://upper.example:1")
            .with("https_proxy", "http://lower.example:2")
            .with("ALL_PROXY", "http://all.example:3")
            .with("NO_PROXY", "direct.example");
        let p = Proxies::from_env(&env);
        let https = p
            .for_target(Scheme::Https, "r.example", 443)
            .unwrap()
            .unwrap();
        assert_eq!(
            (https.to_string().as_str(), https.from()),
            ("http://lower.example:2", "https_proxy")
        );
        let http = p
            .for_target(Scheme::Http, "m.example", 80)
            .unwrap()
            .unwrap();
        assert_eq!(
            (http.to_string().as_str(), http.from()),
            ("http://all.example:3", "ALL_PROXY")
        );
        assert!(
            p.for_target(Scheme::Https, "direct.example", 443)
                .unwrap()
                .is_none()
        );
        let none = Proxies::from_env(&Environment::empty());
        assert!(none.for_target(Scheme::Https, "x", 1).unwrap().is_none());

        let broken = Proxies::from_env(
            &Environment::empty()
                .with("https_proxy", "socks5://u:s3cret@p:1")
                .with("no_proxy", "direct.example"),
        );
        let e = broken
            .for_target(Scheme::Https, "r.example", 443)
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("https_proxy=socks5://***@p:1: SOCKS"),
            "{e}"
        );
        assert!(
            broken
                .for_target(Scheme::Https, "direct.example", 443)
                .unwrap()
                .is_none()
        );
        assert!(
            broken
                .for_target(Scheme::Http, "m.example", 80)
                .unwrap()
                .is_none()
        );
    }
}
