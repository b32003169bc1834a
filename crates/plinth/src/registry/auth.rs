//! Authentication: the `WWW-Authenticate` challenge, and how the client
//! answers a 401 (basic credentials, or a bearer token from the challenge's
//! realm for the repository's scope).
//!
//! A realm is reached over https, or plain HTTP on loopback only; the
//! basic credentials sent to it are bound to the realm's origin, so a
//! realm that redirects elsewhere does not pass them on.

use super::client::{Client, MAX_JSON_BYTES, Reply, query_escape};
use super::credentials::{Credentials, ENV_PASSWORD, ENV_USERNAME};
use super::{RegistryError, Result};
use crate::net::origin::check_url;
use crate::net::{Authorization, BodyLimit, Exchange, PlainHttp, redact_url};

// ---------------------------------------------------------------------------
// Challenges

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lower-cased: `basic`, `bearer`, ...
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Parses one challenge: `Scheme k=v, k="quoted, with \"escapes\""`.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.is_empty() {
            return None;
        }
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            if rest.is_empty() {
                break;
            }
            let (key, after) = rest.split_once('=')?;
            let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
                quoted_string(quoted)?
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            };
            params.push((key.trim().to_owned(), value));
            rest = after;
        }
        Some(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }
}

/// The content of a quoted string (after its opening quote) and the rest.
fn quoted_string(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => out.push(chars.next()?.1),
            c => out.push(c),
        }
    }
    None
}

impl Client {
    /// The `Authorization` value for a request to `repository`, if the
    /// registry asked for one before.
    pub(super) fn authorization(&self, repository: &str) -> Option<String> {
        let state = self.auth.lock().ok()?;
        if let Some(token) = state.tokens.get(repository) {
            return Some(format!("Bearer {token}"));
        }
        if state.basic {
            return self.credentials.as_ref().map(Credentials::basic_header);
        }
        None
    }

    /// Answers a 401: basic credentials, or a bearer token for the
    /// challenge's scope.
    pub(super) fn authenticate(&self, repository: &str, reply: &Reply, what: &str) -> Result<()> {
        let challenges: Vec<Challenge> = reply
            .headers
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(Challenge::parse)
            .collect();
        let challenge = challenges
            .iter()
            .find(|c| c.scheme == "bearer")
            .or_else(|| challenges.iter().find(|c| c.scheme == "basic"));
        match challenge {
            Some(c) if c.scheme == "basic" => {
                if self.credentials.is_none() {
                    return Err(self.unauthorized(repository, what));
                }
                if let Ok(mut state) = self.auth.lock() {
                    if state.basic {
                        // They were sent already and refused.
                        return Err(self.unauthorized(repository, what));
                    }
                    state.basic = true;
                }
                Ok(())
            }
            Some(c) => {
                let token = self.fetch_token(repository, c, what)?;
                if let Ok(mut state) = self.auth.lock() {
                    state.tokens.insert(repository.to_owned(), token);
                }
                Ok(())
            }
            None => Err(self.unauthorized(repository, what)),
        }
    }

    /// A token from the challenge's realm, with basic credentials if any.
    fn fetch_token(&self, repository: &str, challenge: &Challenge, what: &str) -> Result<String> {
        let realm = challenge.param("realm").ok_or_else(|| {
            self.error(
                repository,
                format!("{what}: bearer challenge without a realm"),
            )
        })?;
        // Credentials go to the realm: https, or plain HTTP on loopback.
        let realm_origin = check_url(realm, PlainHttp::LoopbackOnly).map_err(|why| {
            self.error(
                repository,
                format!("{what}: refusing token realm {}: {why}", redact_url(realm)),
            )
        })?;
        let mut query = Vec::new();
        if let Some(service) = challenge.param("service") {
            query.push(format!("service={}", query_escape(service)));
        }
        let scope = challenge
            .param("scope")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("repository:{repository}:pull,push"));
        query.push(format!("scope={}", query_escape(&scope)));
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{sep}{}", query.join("&"));
        tracing::debug!("GET {} (token)", redact_url(realm));
        let basic = self.credentials.as_ref().map(Credentials::basic_header);
        let fail = |why: String| self.error(repository, format!("{what}: token request: {why}"));
        let answer = self
            .transport
            .call(Exchange {
                authorization: basic.as_deref().map(|value| Authorization {
                    value,
                    origin: &realm_origin,
                }),
                ..Exchange::get(&url)
            })
            .map_err(|e| fail(e.to_string()))?;
        let status = answer.status();
        if status == 401 || status == 403 {
            return Err(self.unauthorized(repository, what));
        }
        if status != 200 {
            return Err(fail(format!("HTTP {status}")));
        }
        #[derive(serde::Deserialize)]
        struct TokenReply {
            token: Option<String>,
            access_token: Option<String>,
        }
        let body = answer
            .read_body(BodyLimit::AtMost(MAX_JSON_BYTES))
            .map_err(|e| fail(e.to_string()))?;
        let parsed: TokenReply =
            serde_json::from_slice(&body).map_err(|_| fail("not a token response".into()))?;
        parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| fail("no token in the response".into()))
    }

    pub(super) fn unauthorized(&self, repository: &str, what: &str) -> RegistryError {
        let hint = match &self.credentials {
            Some(c) => format!(
                "the credentials of user {:?} from {} were refused",
                c.username, c.source
            ),
            None => format!(
                "no credentials for {} (set {ENV_USERNAME} and {ENV_PASSWORD}, or log in with a Docker config)",
                self.target.host
            ),
        };
        let mut err = self.error(repository, format!("{what}: authentication failed: {hint}"));
        err.unauthorized = true;
        err
    }
}
