//! The ureq agents, built from a trust and the proxies, and the one way
//! plinth uses them: [`Transport::call`], one exchange and its redirects,
//! then [`Followed::read_body`], the body streamed and capped.
//!
//! A `Transport` holds up to three agents that share one trust: direct,
//! through the `https:` proxy, through the `http:` proxy. Which one serves
//! a URL is decided per request from `no_proxy` ([`super::proxy`]), not
//! by ureq. Every agent has `max_redirects(0)` (redirects are
//! [`super::origin`]'s business), `http_status_as_error(false)`, and an
//! explicit proxy: ureq's default configuration would read the proxy
//! variables itself.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ureq::http::{self, Method};
use ureq::tls::TlsConfig;

use super::env::Environment;
use super::error::{NetError, from_ureq};
use super::origin::{self, Hop, Origin, PlainHttp, Scheme, redact_url};
use super::proxy::{Proxies, ProxyUrl};
use super::trust::{CaFile, Trust};
use crate::support::text::printable;

/// Timeouts and limits of one transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportOptions {
    pub connect_timeout: Duration,
    /// Longest wait for a response's head.
    pub read_timeout: Duration,
    /// Longest a request or response body may take to go through.
    pub body_timeout: Duration,
    /// Redirects followed after the first request; one `307` to object
    /// storage is the usual case.
    pub max_redirects: u32,
    pub plain_http: PlainHttp,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(600),
            max_redirects: 5,
            plain_http: PlainHttp::LoopbackOnly,
        }
    }
}

/// Agents for one trust. Cheap to clone (agents and trust are shared).
#[derive(Clone)]
pub struct Transport {
    trust: Trust,
    proxies: Arc<Proxies>,
    options: TransportOptions,
    direct: ureq::Agent,
    via_https_proxy: Option<ureq::Agent>,
    via_http_proxy: Option<ureq::Agent>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("trust", &self.trust)
            .field("proxies", &self.proxies)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The `Authorization` value of a request and the origin it belongs to:
/// it is sent to that origin only.
#[derive(Debug, Clone, Copy)]
pub struct Authorization<'a> {
    pub value: &'a str,
    pub origin: &'a Origin,
}

/// What a request sends.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    None,
    Bytes(&'a [u8]),
    /// `len` bytes of a file from `offset`, read as they are sent (and
    /// read again for a retry or a `307`), never held in memory whole.
    File {
        path: &'a Path,
        offset: u64,
        len: u64,
    },
}

/// One request for [`Transport::call`].
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    pub method: &'a str,
    pub url: &'a str,
    /// Any header but `Authorization`, `Proxy-Authorization` and `Cookie`,
    /// which are refused: credentials travel only in `authorization`.
    pub headers: &'a [(&'a str, &'a str)],
    pub authorization: Option<Authorization<'a>>,
    pub payload: Payload<'a>,
}

impl<'a> Exchange<'a> {
    /// A `GET` of `url` with nothing else.
    pub fn get(url: &'a str) -> Self {
        Exchange {
            method: "GET",
            url,
            headers: &[],
            authorization: None,
            payload: Payload::None,
        }
    }
}

/// How large a body may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLimit {
    /// Exactly this many bytes, as a signed index or a lockfile says.
    Exactly(u64),
    /// Anything up to this many bytes (an `InRelease`, a manifest).
    AtMost(u64),
}

impl BodyLimit {
    fn max(self) -> u64 {
        match self {
            BodyLimit::Exactly(n) | BodyLimit::AtMost(n) => n,
        }
    }
}

/// The final answer of an exchange, and the URL that gave it (a relative
/// `Location` in it resolves against this one, not the first).
#[derive(Debug)]
pub struct Followed {
    pub response: http::Response<ureq::Body>,
    pub url: String,
    pub redirects: u32,
}

impl Followed {
    pub fn status(&self) -> u16 {
        self.response.status().as_u16()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.response.headers().get(name)?.to_str().ok()
    }

    /// The body, streamed and cut off at `limit`: a body that announces or
    /// sends more fails at once, without reading the rest (so an endless
    /// body costs `limit` bytes); one that ends early fails as worth
    /// another try.
    pub fn read_body(self, limit: BodyLimit) -> Result<Vec<u8>, NetError> {
        let fail = |why: String, transient: bool| NetError::Body {
            url: redact_url(&self.url),
            why,
            transient,
        };
        let max = limit.max();
        if let Some(announced) = self.response.body().content_length() {
            let why = |what: &str| format!("the server announces {announced} bytes, {what}");
            match limit {
                BodyLimit::AtMost(n) if announced > n => {
                    return Err(fail(why(&format!("more than the {n} allowed")), false));
                }
                // Another file than the one expected: no retry makes it
                // this one (a body cut short on the way is retried).
                BodyLimit::Exactly(n) if announced != n => {
                    return Err(fail(why(&format!("not the {n} expected")), false));
                }
                _ => {}
            }
        }
        let mut bytes = Vec::new();
        let mut reader = self
            .response
            .into_body()
            .into_reader()
            .take(max.saturating_add(1));
        if let Err(e) = reader.read_to_end(&mut bytes) {
            let why = printable(&e.to_string(), 200);
            let why = format!("reading the body after {} bytes: {why}", bytes.len());
            return Err(fail(why, true));
        }
        let got = bytes.len() as u64;
        match limit {
            BodyLimit::AtMost(n) if got > n => Err(fail(
                format!("the body goes on past {n} bytes, the most allowed"),
                false,
            )),
            BodyLimit::Exactly(n) if got > n => Err(fail(
                format!("the body goes on past the {n} bytes expected"),
                false,
            )),
            BodyLimit::Exactly(n) if got < n => Err(fail(
                format!("the body ended after {got} of the {n} bytes expected"),
                true,
            )),
            _ => Ok(bytes),
        }
    }

    /// At most `max` bytes of the body, for an error message: a longer or
    /// broken body is cut, not an error.
    pub fn body_prefix(self, max: u64) -> Vec<u8> {
        let mut bytes = Vec::new();
        let _ = self
            .response
            .into_body()
            .into_reader()
            .take(max)
            .read_to_end(&mut bytes);
        bytes
    }
}

impl Transport {
    /// The machine's trust and the proxy variables of `env`, with
    /// `options`. A proxy variable that cannot be used fails the requests
    /// that would use it, naming it.
    pub fn from_env(env: &Environment, options: TransportOptions) -> Transport {
        Transport::new(Trust::machine(env), Proxies::from_env(env), options)
    }

    /// Agents for `trust` and `proxies`. Cheap: ureq builds the TLS
    /// configuration on an agent's first connection.
    pub fn new(trust: Trust, proxies: Proxies, options: TransportOptions) -> Transport {
        Self::build(trust, Arc::new(proxies), options)
    }

    fn build(trust: Trust, proxies: Arc<Proxies>, options: TransportOptions) -> Transport {
        let agent = |proxy: Option<&ProxyUrl>| -> ureq::Agent {
            let tls = TlsConfig::builder().root_certs(trust.root_certs()).build();
            ureq::Agent::config_builder()
                .tls_config(tls)
                .proxy(proxy.map(ProxyUrl::ureq))
                .max_redirects(0)
                .http_status_as_error(false)
                .timeout_connect(Some(options.connect_timeout))
                .timeout_recv_response(Some(options.read_timeout))
                .timeout_recv_body(Some(options.body_timeout))
                .timeout_send_body(Some(options.body_timeout))
                .user_agent(concat!("plinth/", env!("CARGO_PKG_VERSION")))
                .build()
                .into()
        };
        Transport {
            direct: agent(None),
            via_https_proxy: proxies.of(Scheme::Https).map(|p| agent(Some(p))),
            via_http_proxy: proxies.of(Scheme::Http).map(|p| agent(Some(p))),
            trust,
            proxies,
            options,
        }
    }

    /// The same trust and proxies with other timeouts and limits.
    pub fn with_options(&self, options: TransportOptions) -> Transport {
        Self::build(self.trust.clone(), Arc::clone(&self.proxies), options)
    }

    /// This transport with the `ca_files` of one registry or mirror added.
    pub fn with_ca_files(&self, ca_files: &[CaFile]) -> Result<Transport, NetError> {
        if ca_files.is_empty() {
            return Ok(self.clone());
        }
        let trust = self.trust.with_ca_files(ca_files)?;
        Ok(Self::build(trust, Arc::clone(&self.proxies), self.options))
    }

    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    pub fn options(&self) -> &TransportOptions {
        &self.options
    }

    /// One request and its redirects, at most
    /// [`TransportOptions::max_redirects`], each hop decided by
    /// [`origin::next_hop`]: `Authorization` to its own origin only,
    /// plain HTTP only where the options allow it. A `3xx` that is not a
    /// redirect to follow is the answer.
    pub fn call(&self, exchange: Exchange<'_>) -> Result<Followed, NetError> {
        let method =
            Method::from_bytes(exchange.method.as_bytes()).map_err(|_| NetError::Refused {
                url: redact_url(exchange.url),
                why: "not an HTTP method".into(),
            })?;
        let credentials_for = exchange.authorization.map(|a| a.origin);
        let mut hop = Hop::first(method, exchange.url, credentials_for);
        let mut redirects = 0;
        loop {
            let response = self.send(&hop, &exchange)?;
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .map(|v| v.to_str().unwrap_or("\u{fffd}"));
            let next = origin::next_hop(
                &hop,
                status,
                location,
                credentials_for,
                self.options.plain_http,
            )
            .map_err(|why| NetError::Redirect {
                url: redact_url(&hop.url),
                why,
            })?;
            let Some(next) = next else {
                return Ok(Followed {
                    response,
                    url: hop.url,
                    redirects,
                });
            };
            if redirects >= self.options.max_redirects {
                return Err(NetError::Redirect {
                    url: redact_url(exchange.url),
                    why: format!("more than {} redirects", self.options.max_redirects),
                });
            }
            tracing::debug!(
                "{} {} -> {status} -> {} {} (credentials: {})",
                hop.method,
                redact_url(&hop.url),
                next.method,
                redact_url(&next.url),
                if next.with_credentials { "yes" } else { "no" }
            );
            redirects += 1;
            hop = next;
        }
    }

    /// One request of a chain.
    fn send(
        &self,
        hop: &Hop,
        exchange: &Exchange<'_>,
    ) -> Result<http::Response<ureq::Body>, NetError> {
        let refuse = |why: String| NetError::Refused {
            url: redact_url(&hop.url),
            why,
        };
        let origin = origin::check_url(&hop.url, self.options.plain_http).map_err(refuse)?;
        let proxy = self
            .proxies
            .for_target(origin.scheme, &origin.host, origin.port)?;
        let agent = match (proxy, origin.scheme) {
            (None, _) => &self.direct,
            (Some(_), Scheme::Https) => self.via_https_proxy.as_ref().unwrap_or(&self.direct),
            (Some(_), Scheme::Http) => self.via_http_proxy.as_ref().unwrap_or(&self.direct),
        };
        tracing::debug!("{} {}", hop.method, redact_url(&hop.url));
        let mut request = http::Request::builder()
            .method(hop.method.clone())
            .uri(hop.url.as_str());
        for (name, value) in exchange.headers {
            if ["authorization", "proxy-authorization", "cookie"]
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h))
            {
                return Err(refuse(format!(
                    "{name} goes only in Exchange::authorization"
                )));
            }
            request = request.header(*name, *value);
        }
        if hop.with_credentials
            && let Some(auth) = exchange.authorization
        {
            request = request.header(http::header::AUTHORIZATION, auth.value);
        }
        let payload = if hop.with_body {
            exchange.payload
        } else {
            Payload::None
        };
        let bad_request = || refuse("cannot form the request (a header is invalid)".into());
        let sent = match payload {
            // ureq sends a bodiless POST, PUT or PATCH as an empty
            // chunked body; an explicit `Content-Length: 0` is what
            // registries and the proxies in front of them expect.
            Payload::None if [Method::POST, Method::PUT, Method::PATCH].contains(&hop.method) => {
                agent.run(request.body(&[][..]).map_err(|_| bad_request())?)
            }
            Payload::None => agent.run(request.body(()).map_err(|_| bad_request())?),
            Payload::Bytes(bytes) => agent.run(request.body(bytes).map_err(|_| bad_request())?),
            Payload::File { path, offset, len } => {
                let reader = open_part(path, offset, len).map_err(|e| NetError::Other {
                    host: origin.authority(),
                    why: format!("reading {} to send it: {e}", path.display()),
                })?;
                let request = request
                    .header(http::header::CONTENT_LENGTH, len)
                    .body(ureq::SendBody::from_owned_reader(reader))
                    .map_err(|_| bad_request())?;
                agent.run(request)
            }
        };
        sent.map_err(|e| from_ureq(e, &origin.authority(), proxy, &self.trust))
    }
}

/// `len` bytes of the file at `path` from `offset`.
fn open_part(path: &Path, offset: u64, len: u64) -> std::io::Result<impl Read + Send + 'static> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    Ok(file.take(len))
}
