//! One-line errors for HTTP exchanges, mapped from ureq's and rustls's.
//!
//! A message names the host (never a whole URL with its query or
//! credentials), says what was wrong in words an operator can act on, and
//! for a refused certificate also where plinth looked for trust
//! ([`super::Trust::describe`]), so that the file to fix is in the message.
//!
//! ureq 3.5 hands a failed handshake back as `ureq::Error::Io` wrapping a
//! `rustls::Error`, sometimes as `ureq::Error::Rustls`; both are looked at.

use rustls::{AlertDescription, CertificateError};

use super::origin::redact_url;
use super::proxy::{ProxyError, ProxyUrl};
use super::trust::{Trust, TrustError};
use crate::support::text::printable;
use crate::support::time::rfc3339;

/// What went wrong with one exchange. Every variant prints as one line.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NetError {
    /// The server's certificate was refused.
    #[error("TLS certificate of {host}{via} refused: {problem}; {trust}")]
    Certificate {
        /// `host:port`.
        host: String,
        /// ` (through proxy http://proxy.example:3128)` or empty.
        via: String,
        problem: String,
        /// Where trust was looked for.
        trust: String,
    },
    /// The handshake failed for another reason than the certificate.
    #[error("TLS with {host}{via} failed: {why}")]
    Tls {
        host: String,
        via: String,
        why: String,
    },
    /// No connection: refused, unreachable, name not found.
    #[error("cannot connect to {host}{via}: {why}")]
    Connect {
        host: String,
        via: String,
        why: String,
    },
    #[error("{host}: timed out ({what})")]
    Timeout { host: String, what: String },
    /// The proxy failed or refused the tunnel.
    #[error("proxy {proxy} (from {from}): {why}")]
    Proxy {
        /// The proxy URL without credentials.
        proxy: String,
        /// The variable it came from.
        from: String,
        why: String,
    },
    /// A URL plinth will not reach (plain HTTP to a remote host, a scheme
    /// other than http(s)), refused before connecting.
    #[error("refusing {url}: {why}")]
    Refused { url: String, why: String },
    /// A redirect that cannot be followed.
    #[error("{url}: {why}")]
    Redirect { url: String, why: String },
    /// A body larger than allowed, or cut short. The message leaves the
    /// URL to the caller, which names it already.
    #[error("{why}")]
    Body {
        url: String,
        why: String,
        /// Cut short (the connection dropped): worth another try. A body
        /// that goes on past its size is not.
        transient: bool,
    },
    #[error("{host}: {why}")]
    Other { host: String, why: String },
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error(transparent)]
    ProxySetting(#[from] ProxyError),
}

impl NetError {
    /// Whether another attempt might succeed: connections, timeouts and
    /// bodies cut short; never a certificate, a policy refusal or a body
    /// that is too large.
    pub fn is_transient(&self) -> bool {
        match self {
            NetError::Connect { .. }
            | NetError::Timeout { .. }
            | NetError::Proxy { .. }
            | NetError::Other { .. } => true,
            NetError::Body { transient, .. } => *transient,
            NetError::Certificate { .. }
            | NetError::Tls { .. }
            | NetError::Refused { .. }
            | NetError::Redirect { .. }
            | NetError::Trust(_)
            | NetError::ProxySetting(_) => false,
        }
    }
}

/// Maps a failed ureq call to `host` (`host:port`), made directly or
/// through `proxy`, with `trust` for certificate messages.
pub(super) fn from_ureq(
    error: ureq::Error,
    host: &str,
    proxy: Option<&ProxyUrl>,
    trust: &Trust,
) -> NetError {
    let host = printable(host, 300);
    let via = proxy
        .map(|p| format!(" (through proxy {p})"))
        .unwrap_or_default();
    if let Some(tls) = rustls_error(&error) {
        return from_rustls(tls, host, via, trust);
    }
    let at_proxy = |why: String| match proxy {
        Some(p) => NetError::Proxy {
            proxy: p.to_string(),
            from: p.from().to_owned(),
            why,
        },
        None => NetError::Connect {
            host: host.clone(),
            via: String::new(),
            why,
        },
    };
    match error {
        ureq::Error::Timeout(t) => NetError::Timeout {
            host,
            what: t.to_string(),
        },
        // Through a CONNECT proxy only the proxy's name is resolved here.
        ureq::Error::HostNotFound if proxy.is_some() => {
            at_proxy("its host name was not found".into())
        }
        ureq::Error::HostNotFound => NetError::Connect {
            host,
            via,
            why: "host name not found".into(),
        },
        ureq::Error::ConnectionFailed => NetError::Connect {
            host,
            via,
            why: "connection failed".into(),
        },
        ureq::Error::ConnectProxyFailed(reason) => {
            // ureq's reason reads "proxy server responded 407/407".
            let status = reason
                .split(|c: char| !c.is_ascii_digit())
                .find(|w| w.len() == 3);
            let what = match status {
                Some(code) => format!("answered HTTP {code}"),
                None => printable(&reason, 200),
            };
            let hint = if status == Some("407") {
                " (it wants credentials: user:password@ in the proxy URL)"
            } else {
                ""
            };
            at_proxy(format!("CONNECT {host}: the proxy {what}{hint}"))
        }
        ureq::Error::Io(io) => {
            use std::io::ErrorKind;
            let why = printable(&io.to_string(), 300);
            match io.kind() {
                ErrorKind::ConnectionRefused if proxy.is_some() => {
                    at_proxy("connection refused".into())
                }
                ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::NotConnected
                | ErrorKind::HostUnreachable
                | ErrorKind::NetworkUnreachable
                | ErrorKind::AddrNotAvailable => NetError::Connect { host, via, why },
                ErrorKind::UnexpectedEof => NetError::Other {
                    host,
                    why: "the server closed the connection without an answer".into(),
                },
                _ => NetError::Other { host, why },
            }
        }
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => NetError::Refused {
            url: host,
            why: "not a valid URL".into(),
        },
        ureq::Error::Tls(why) => NetError::Tls {
            host,
            via,
            why: why.into(),
        },
        ureq::Error::InvalidProxyUrl => at_proxy("not a valid proxy URL".into()),
        other => NetError::Other {
            host,
            // Variants not mapped above could quote a URL.
            why: redact_words(&other.to_string()),
        },
    }
}

fn rustls_error(error: &ureq::Error) -> Option<&rustls::Error> {
    match error {
        ureq::Error::Rustls(e) => Some(e),
        ureq::Error::Io(io) => io.get_ref()?.downcast_ref::<rustls::Error>(),
        _ => None,
    }
}

fn from_rustls(error: &rustls::Error, host: String, via: String, trust: &Trust) -> NetError {
    let certificate = |problem: String| NetError::Certificate {
        host: host.clone(),
        via: via.clone(),
        problem,
        trust: trust.describe().to_owned(),
    };
    let tls = |why: String| NetError::Tls {
        host: host.clone(),
        via: via.clone(),
        why,
    };
    match error {
        rustls::Error::InvalidCertificate(e) => certificate(certificate_problem(e)),
        rustls::Error::NoCertificatesPresented => {
            certificate("the server sent no certificate".into())
        }
        rustls::Error::AlertReceived(alert) => tls(alert_text(*alert)),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            tls("the server does not speak TLS there (a plain HTTP port?)".into())
        }
        rustls::Error::PeerIncompatible(p) => tls(format!(
            "no TLS version or cipher suite in common ({})",
            printable(&format!("{p:?}"), 100)
        )),
        other => tls(printable(&other.to_string(), 300)),
    }
}

/// What was wrong with the server's certificate, in words.
// rustls keeps the context-free variants for older verifiers; they are
// still matched, so a verifier that reports them is still explained.
#[allow(deprecated)]
fn certificate_problem(error: &CertificateError) -> String {
    match error {
        CertificateError::UnknownIssuer => {
            "unknown issuer: no trusted CA signed it (behind a TLS-inspecting proxy, trust the proxy's CA)"
                .into()
        }
        CertificateError::BadSignature => "bad signature: the chain does not verify".into(),
        CertificateError::Expired => "expired".into(),
        CertificateError::ExpiredContext { time, not_after } => format!(
            "expired on {} (it is {} here)",
            date(not_after.as_secs()),
            date(time.as_secs())
        ),
        CertificateError::NotValidYet => "not valid yet (check this machine's clock)".into(),
        CertificateError::NotValidYetContext { time, not_before } => format!(
            "not valid before {} (it is {} here: check the clock)",
            date(not_before.as_secs()),
            date(time.as_secs())
        ),
        CertificateError::NotValidForName => "wrong name: issued for other host names".into(),
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let mut names: Vec<String> = presented
                .iter()
                .take(5)
                .map(|n| printable(bare_name(n), 80))
                .collect();
            if presented.len() > 5 {
                names.push(format!("and {} more", presented.len() - 5));
            }
            let names = if names.is_empty() {
                "no host name at all".to_owned()
            } else {
                names.join(", ")
            };
            format!(
                "wrong name: issued for {names}, not {}",
                printable(&expected.to_str(), 80)
            )
        }
        CertificateError::Revoked => "revoked".into(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "not issued for TLS servers (extended key usage)".into()
        }
        CertificateError::UnhandledCriticalExtension => {
            "carries a critical extension rustls does not know".into()
        }
        CertificateError::BadEncoding => "malformed: cannot be parsed".into(),
        CertificateError::UnsupportedSignatureAlgorithm
        | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "signed with an algorithm rustls does not support".into()
        }
        CertificateError::UnknownRevocationStatus
        | CertificateError::ExpiredRevocationList
        | CertificateError::ExpiredRevocationListContext { .. } => {
            "revocation status unknown".into()
        }
        other => printable(&format!("{other:?}"), 200),
    }
}

/// rustls-webpki hands presented names over as `DnsName("a.b")` and
/// `IpAddress(10.0.0.1)`; the name alone reads better.
fn bare_name(presented: &str) -> &str {
    match presented.split_once('(') {
        Some((kind, rest)) if kind.bytes().all(|b| b.is_ascii_alphabetic()) => rest
            .strip_suffix(')')
            .map_or(presented, |inner| inner.trim_matches('"')),
        _ => presented,
    }
}

fn alert_text(alert: AlertDescription) -> String {
    match alert {
        AlertDescription::CertificateRequired => {
            "the server requires a client certificate".to_owned()
        }
        AlertDescription::HandshakeFailure => {
            "the server refused the handshake (no common TLS version or cipher?)".to_owned()
        }
        AlertDescription::UnrecognisedName => "the server does not serve that host name".to_owned(),
        other => printable(&format!("the server sent alert {other:?}"), 200),
    }
}

/// Seconds since 1970 as a UTC date, `2024-03-01`.
fn date(secs: u64) -> String {
    match rfc3339(secs) {
        Ok(text) => text[..10].to_owned(),
        Err(_) => format!("{secs} s after 1970"),
    }
}

/// Every word that looks like a URL, redacted.
fn redact_words(text: &str) -> String {
    let words: Vec<String> = text
        .split(' ')
        .map(|w| {
            if w.contains("://") {
                redact_url(w)
            } else {
                w.to_owned()
            }
        })
        .collect();
    printable(&words.join(" "), 300)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_certificate_names_stay_on_one_line() {
        let e = CertificateError::NotValidForNameContext {
            expected: rustls::pki_types::ServerName::try_from("r.example").unwrap(),
            presented: (0..9).map(|i| format!("evil{i}\n.example")).collect(),
        };
        let text = certificate_problem(&e);
        assert!(!text.contains('\n'), "{text}");
        assert!(text.contains("and 4 more"), "{text}");
        assert!(text.ends_with("not r.example"), "{text}");
        assert_eq!(bare_name("DnsName(\"a.example\")"), "a.example");
        assert_eq!(bare_name("IpAddress(10.0.0.1)"), "10.0.0.1");
        assert_eq!(bare_name("(x"), "(x");
    }

    #[test]
    fn dates_and_url_words() {
        assert_eq!(date(951_782_400), "2000-02-29");
        assert!(date(u64::MAX).ends_with("after 1970"));
        assert_eq!(
            redact_words("bad https://u:p@h.example/x?sig=1 here"),
            "bad https://h.example/x here"
        );
    }
}
