//! Authentication before a request is proxied, upgrades included: HTTP Basic against the
//! route's users (RFC 7617) or Digest (RFC 7616, `digest.rs`), then a subrequest to the route's
//! authorisation service with nginx's `auth_request` semantics — `2xx` lets the request through
//! with the service's chosen headers, `401` and `403` are the client's answer (a `401` becomes a
//! redirect to the sign-in page when the route has one), anything else is `500`.

use std::collections::HashSet;
use std::hash::Hasher;
use std::sync::{Mutex, OnceLock, PoisonError};

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

mod digest;

use super::error::ProxyError;
use super::headers::{Client, strip_hop_by_hop};
use crate::model::{BasicAuth, ExternalAuth, PasswordHash, RequestParts, Route, escape_query_value};

/// Verified credentials remembered (as keyed hashes), so bcrypt's milliseconds are paid once
/// per user and password, not on every request. Cleared whole when full.
const REMEMBERED: usize = 4096;
/// The most of an authorisation service's answer body read (and dropped).
const MAX_AUTH_BODY: usize = 64 * 1024;

static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_SENT_FROM: HeaderName = HeaderName::from_static("x-sent-from");
static X_AUTH_REQUEST_REDIRECT: HeaderName = HeaderName::from_static("x-auth-request-redirect");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

type AuthClient = HttpClient<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The HTTP client for authorisation services and the verified-credentials memory.
#[derive(Debug)]
pub struct Authenticator {
    /// Made on the first `auth-url` request: most installs never read the system's CAs for it.
    client: OnceLock<AuthClient>,
    remembered: Mutex<HashSet<u64>>,
    key: (u64, u64),
    digests: digest::Digests,
}

impl Default for Authenticator {
    fn default() -> Self {
        let mut key = [0u8; 16];
        let _ = getrandom::fill(&mut key);
        let half = |bytes: &[u8]| u64::from_le_bytes(bytes.try_into().unwrap_or_default());
        let key = (half(&key[..8]), half(&key[8..]));
        Self {
            client: OnceLock::new(),
            remembered: Mutex::default(),
            key,
            digests: digest::Digests::new(key),
        }
    }
}

/// A pooled HTTP/1.1 client for `http://` and `https://` services, verified against the
/// system's CAs (without any, only `http://` services work).
fn auth_client() -> AuthClient {
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_native_roots().unwrap_or_else(|error| {
        tracing::warn!(%error, "no system CA certificates: https:// auth-url services cannot be verified");
        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(empty_roots())
    });
    let connector = builder.https_or_http().enable_http1().build();
    HttpClient::builder(TokioExecutor::new()).build(connector)
}

fn empty_roots() -> rustls::ClientConfig {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions();
    builder
        .map(|b| b.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth())
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        })
}

/// What a request is, for the authorisation checks.
pub struct Asking<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    /// Path and query as routed (normalised), before any rewrite.
    pub request_uri: &'a str,
    pub host: &'a str,
    pub client: &'a Client,
}

/// What an authorisation service's `2xx` carries on: headers for the backend, and cookies for
/// the client.
#[derive(Debug, Default)]
pub struct Authorized {
    /// `auth-response-headers`: each set on the request, replacing the client's (`None`: the
    /// service sent none, and the client's is removed too, so no client can pose as a user the
    /// service did not name).
    for_backend: Vec<(HeaderName, Option<HeaderValue>)>,
    /// The service's `Set-Cookie`s (with `auth-signin`, as ingress-nginx relays them).
    cookies: Vec<HeaderValue>,
    /// `auth-always-set-cookie`: on every answer, not only `2xx` and `3xx`.
    always: bool,
}

impl Authorized {
    /// Sets the service's headers on the request for the backend.
    pub fn decorate_request(&mut self, headers: &mut HeaderMap) {
        for (name, value) in self.for_backend.drain(..) {
            match value {
                Some(value) => headers.insert(name, value),
                None => headers.remove(name),
            };
        }
    }

    /// Adds the service's cookies to the client's answer (nginx's `add_header`: `2xx` and `3xx`
    /// only, unless always).
    pub fn decorate_response(self, status: StatusCode, headers: &mut HeaderMap) {
        if self.always || status.is_success() || status.is_redirection() {
            for cookie in self.cookies {
                headers.append(header::SET_COOKIE, cookie);
            }
        }
    }
}

impl Authenticator {
    /// Checks `asking` against the route's authentication; `Ok` carries what the authorisation
    /// service passes on.
    pub async fn check(&self, route: &Route, asking: &Asking<'_>) -> Result<Authorized, ProxyError> {
        if let Some(basic) = &route.policy.basic_auth {
            self.check_basic(basic, asking.headers).await?;
        }
        if let Some(digest) = &route.policy.digest_auth {
            self.digests.check(digest, asking.method, asking.request_uri, asking.headers)?;
        }
        match &route.policy.external_auth {
            Some(external) => self.ask(external, route.policy.response_timeout, asking).await,
            None => Ok(Authorized::default()),
        }
    }

    async fn check_basic(&self, auth: &BasicAuth, headers: &HeaderMap) -> Result<(), ProxyError> {
        let challenge = || {
            let value = HeaderValue::from_str(&format!("Basic realm=\"{}\"", auth.realm));
            ProxyError::Unauthorized { challenge: value.ok(), signin: None }
        };
        let (user, password) = basic_credentials(headers).ok_or_else(challenge)?;
        let hash = auth.users.get(&user).ok_or_else(challenge)?;
        if self.verify(hash, &user, password).await { Ok(()) } else { Err(challenge()) }
    }

    /// A slow hash is checked on the blocking pool, once per remembered user and password.
    async fn verify(&self, hash: &PasswordHash, user: &str, password: Vec<u8>) -> bool {
        if !hash.is_slow() {
            return hash.verify(&password);
        }
        let fingerprint = self.fingerprint(hash, user, &password);
        if self.remembered().contains(&fingerprint) {
            return true;
        }
        let checked = hash.clone();
        let valid = tokio::task::spawn_blocking(move || checked.verify(&password)).await.unwrap_or(false);
        if valid {
            let mut remembered = self.remembered();
            if remembered.len() >= REMEMBERED {
                remembered.clear();
            }
            remembered.insert(fingerprint);
        }
        valid
    }

    fn fingerprint(&self, hash: &PasswordHash, user: &str, password: &[u8]) -> u64 {
        let mut hasher = siphasher::sip::SipHasher24::new_with_keys(self.key.0, self.key.1);
        hasher.write(format!("{hash:?}").as_bytes());
        hasher.write(&[0]);
        hasher.write(user.as_bytes());
        hasher.write(&[0]);
        hasher.write(password);
        hasher.finish()
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.remembered.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The subrequest to the authorisation service and what its answer means.
    async fn ask(
        &self,
        auth: &ExternalAuth,
        timeout: std::time::Duration,
        asking: &Asking<'_>,
    ) -> Result<Authorized, ProxyError> {
        let parts =
            RequestParts { scheme: asking.client.scheme, host: asking.host, request_uri: asking.request_uri };
        let failed = |reason: String| ProxyError::AuthFailed { reason };
        let url = auth.url.expand(parts);
        let uri: Uri =
            url.parse().map_err(|_| failed(format!("auth-url expands to an invalid URL {url:?}")))?;
        let subrequest = subrequest(auth, uri, asking, parts)
            .map_err(|name| failed(format!("{name} would not be a valid header")))?;
        let answer =
            tokio::time::timeout(timeout, self.client.get_or_init(auth_client).request(subrequest)).await;
        let response = match answer {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => return Err(failed(format!("the auth service failed: {error}"))),
            Err(_) => return Err(failed(format!("the auth service did not answer within {timeout:?}"))),
        };
        let (head, body) = response.into_parts();
        // Read (bounded) so the connection can be reused; the content does not matter.
        let _ = tokio::time::timeout(timeout, Limited::new(body, MAX_AUTH_BODY).collect()).await;
        match head.status {
            status if status.is_success() => Ok(Authorized {
                for_backend: auth
                    .response_headers
                    .iter()
                    .map(|name| (name.clone(), head.headers.get(name).cloned()))
                    .collect(),
                cookies: match auth.signin {
                    Some(_) => head.headers.get_all(header::SET_COOKIE).iter().cloned().collect(),
                    None => Vec::new(),
                },
                always: auth.always_set_cookie,
            }),
            StatusCode::UNAUTHORIZED => {
                let signin =
                    auth.signin.as_ref().map(|signin| signin_location(auth, signin.expand(parts), parts));
                let challenge = head.headers.get(header::WWW_AUTHENTICATE).cloned();
                Err(ProxyError::Unauthorized {
                    challenge,
                    signin: signin.and_then(|s| HeaderValue::from_str(&s).ok()),
                })
            }
            StatusCode::FORBIDDEN => Err(ProxyError::AuthForbidden),
            status => Err(failed(format!("the auth service answered {status}"))),
        }
    }
}

/// The subrequest: the client's headers (no body, no hop-by-hop, the service's own `Host`)
/// and what ingress-nginx tells its auth services about the original request.
fn subrequest(
    auth: &ExternalAuth,
    uri: Uri,
    asking: &Asking<'_>,
    parts: RequestParts<'_>,
) -> Result<Request<Empty<Bytes>>, &'static HeaderName> {
    let mut headers = asking.headers.clone();
    strip_hop_by_hop(&mut headers, false);
    for name in [header::HOST, header::CONTENT_LENGTH, header::CONTENT_TYPE, header::EXPECT] {
        headers.remove(name);
    }
    // The backend sees an extended CONNECT as the GET it becomes.
    let method = if asking.method == Method::CONNECT { &Method::GET } else { asking.method };
    let original_url = format!("{}://{}{}", parts.scheme, parts.host, parts.request_uri);
    let redirect = auth.request_redirect.as_deref().unwrap_or(parts.request_uri);
    let ip = asking.client.ip.to_string();
    let values: [(&HeaderName, &str); 8] = [
        (&X_ORIGINAL_URL, &original_url),
        (&X_ORIGINAL_METHOD, method.as_str()),
        (&X_SENT_FROM, "hawser"),
        (&X_AUTH_REQUEST_REDIRECT, redirect),
        (&X_REAL_IP, &ip),
        (&X_FORWARDED_FOR, &ip),
        (&X_FORWARDED_HOST, parts.host),
        (&X_FORWARDED_PROTO, parts.scheme),
    ];
    for (name, value) in values {
        let value = HeaderValue::from_str(value).map_err(|_| name)?;
        headers.insert(name, value);
    }
    let mut request = Request::new(Empty::new());
    *request.method_mut() = auth.method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

/// The sign-in URL with the original URL in its redirect parameter, unless it has one
/// (ingress-nginx's rule).
fn signin_location(auth: &ExternalAuth, signin: String, parts: RequestParts<'_>) -> String {
    let param = &auth.signin_redirect_param;
    let query = signin.split_once('?').map_or("", |(_, query)| query);
    if query.split('&').any(|pair| pair.split('=').next() == Some(param.as_str())) {
        return signin;
    }
    let separator = if signin.contains('?') { '&' } else { '?' };
    let original = format!("{}://{}{}", parts.scheme, parts.host, parts.request_uri);
    format!("{signin}{separator}{param}={}", escape_query_value(&original))
}

/// User and password of an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, encoded) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim_ascii()).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_read_as_rfc_7617_writes_them() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).expect("value"));
            basic_credentials(&headers)
        };
        // "foo:bar:baz": the password may hold colons.
        assert_eq!(with("Basic Zm9vOmJhcjpiYXo="), Some(("foo".into(), b"bar:baz".to_vec())));
        assert_eq!(with("basic  Zm9vOmJhcjpiYXo= "), Some(("foo".into(), b"bar:baz".to_vec())));
        assert_eq!(with("Bearer Zm9vOmJhcjpiYXo="), None);
        assert_eq!(with("Basic !!!"), None);
        assert_eq!(with("Basic Zm9v"), None, "no colon");
    }

    #[test]
    fn the_signin_url_carries_the_original_unless_it_has_a_redirect_already() {
        let auth = ExternalAuth {
            url: crate::model::UrlTemplate::parse("http://auth/").expect("url"),
            method: Method::GET,
            signin: None,
            signin_redirect_param: "rd".into(),
            response_headers: Vec::new(),
            request_redirect: None,
            always_set_cookie: false,
        };
        let parts = RequestParts { scheme: "https", host: "app.test", request_uri: "/a?b=1" };
        assert_eq!(
            signin_location(&auth, "https://login.test/start".into(), parts),
            "https://login.test/start?rd=https%3A%2F%2Fapp.test%2Fa%3Fb%3D1"
        );
        assert_eq!(
            signin_location(&auth, "https://login.test/start?x=1".into(), parts),
            "https://login.test/start?x=1&rd=https%3A%2F%2Fapp.test%2Fa%3Fb%3D1"
        );
        let given = "https://login.test/start?rd=/home";
        assert_eq!(signin_location(&auth, given.into(), parts), given);
    }
}
