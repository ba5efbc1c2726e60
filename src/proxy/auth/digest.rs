//! HTTP Digest authentication (RFC 7616) as nginx's auth_digest module does it for
//! ingress-nginx's `auth-type: digest`: MD5 with `qop=auth` against an htdigest file's HA1
//! values. Nonces are stateless (a time and a keyed hash of it), valid for a minute (`stale=true`
//! after, so browsers retry without asking the user), and each nonce's count (`nc`) must grow:
//! a captured `Authorization` header cannot be replayed.

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method, header};
use md5::{Digest as _, Md5};
use subtle::ConstantTimeEq;

use super::super::error::ProxyError;
use crate::model::DigestAuth;

/// How long a nonce is accepted.
const NONCE_LIFETIME: Duration = Duration::from_secs(60);
/// Nonces whose counts are remembered; beyond it, expired ones are forgotten.
const REMEMBERED_NONCES: usize = 4096;

/// Nonces made and the highest count seen for each.
#[derive(Debug)]
pub struct Digests {
    key: (u64, u64),
    counts: Mutex<HashMap<String, (u32, u64)>>,
}

impl Digests {
    pub fn new(key: (u64, u64)) -> Self {
        Self { key, counts: Mutex::default() }
    }

    /// `Ok` when `headers` carry a valid Digest response for `method` and `request_uri`.
    pub fn check(
        &self,
        auth: &DigestAuth,
        method: &Method,
        request_uri: &str,
        headers: &HeaderMap,
    ) -> Result<(), ProxyError> {
        match self.verify(auth, method, request_uri, headers) {
            Verdict::Valid => Ok(()),
            Verdict::Stale => Err(self.challenge(&auth.realm, true)),
            Verdict::Invalid => Err(self.challenge(&auth.realm, false)),
        }
    }

    fn verify(&self, auth: &DigestAuth, method: &Method, request_uri: &str, headers: &HeaderMap) -> Verdict {
        let Some(p) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(params)
        else {
            return Verdict::Invalid;
        };
        let field = |name: &str| p.get(name).map(String::as_str).unwrap_or_default();
        let algorithm_ok = matches!(field("algorithm"), "" | "MD5" | "md5");
        if field("realm") != auth.realm
            || field("qop") != "auth"
            || !algorithm_ok
            || field("cnonce").is_empty()
        {
            return Verdict::Invalid;
        }
        // The response covers the URI the client names; it must be this request's.
        if field("uri") != request_uri {
            return Verdict::Invalid;
        }
        let Some(ha1) = auth.users.get(field("username")) else { return Verdict::Invalid };
        let (nonce, nc) = (field("nonce"), field("nc"));
        let Some(issued) = self.issued(nonce) else { return Verdict::Invalid };
        let Some(count) = (nc.len() == 8).then(|| u32::from_str_radix(nc, 16).ok()).flatten() else {
            return Verdict::Invalid;
        };
        let ha2 = md5_hex(&format!("{method}:{}", field("uri")));
        let expected = md5_hex(&format!("{ha1}:{nonce}:{nc}:{}:auth:{ha2}", field("cnonce")));
        if !bool::from(expected.as_bytes().ct_eq(field("response").to_ascii_lowercase().as_bytes())) {
            return Verdict::Invalid;
        }
        if now_secs().saturating_sub(issued) > NONCE_LIFETIME.as_secs() {
            return Verdict::Stale;
        }
        if self.count_grows(nonce, count, issued) { Verdict::Valid } else { Verdict::Invalid }
    }

    /// `401` with a fresh nonce.
    fn challenge(&self, realm: &str, stale: bool) -> ProxyError {
        let nonce = self.nonce(now_secs());
        let stale = if stale { ", stale=true" } else { "" };
        let value =
            format!("Digest realm=\"{realm}\", qop=\"auth\", algorithm=MD5, nonce=\"{nonce}\"{stale}");
        ProxyError::Unauthorized { challenge: HeaderValue::from_str(&value).ok(), signin: None }
    }

    fn nonce(&self, secs: u64) -> String {
        format!("{secs:016x}{:016x}", self.mac(secs))
    }

    /// When `nonce` was made, if hawser made it.
    fn issued(&self, nonce: &str) -> Option<u64> {
        let secs = u64::from_str_radix(nonce.get(..16)?, 16).ok()?;
        bool::from(self.nonce(secs).as_bytes().ct_eq(nonce.as_bytes())).then_some(secs)
    }

    fn mac(&self, secs: u64) -> u64 {
        let mut hasher = siphasher::sip::SipHasher24::new_with_keys(self.key.0, self.key.1);
        hasher.write(b"digest-nonce");
        hasher.write_u64(secs);
        hasher.finish()
    }

    /// Records `count` for `nonce`; false when it does not exceed the last one (a replay).
    fn count_grows(&self, nonce: &str, count: u32, issued: u64) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.len() >= REMEMBERED_NONCES {
            let oldest = now_secs().saturating_sub(NONCE_LIFETIME.as_secs());
            counts.retain(|_, (_, made)| *made >= oldest);
        }
        match counts.get_mut(nonce) {
            Some((last, _)) if count <= *last => false,
            Some((last, _)) => {
                *last = count;
                true
            }
            None => {
                counts.insert(nonce.to_owned(), (count, issued));
                true
            }
        }
    }
}

enum Verdict {
    Valid,
    /// Right credentials on an expired nonce.
    Stale,
    Invalid,
}

/// The parameters of an `Authorization: Digest` header (names lower-cased).
fn params(value: &str) -> Option<HashMap<String, String>> {
    let (scheme, mut rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case("digest ") {
        return None;
    }
    let mut out = HashMap::new();
    loop {
        rest = rest.trim_start_matches([' ', ',', '\t']);
        if rest.is_empty() {
            return Some(out);
        }
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => quoted_string(quoted)?,
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            }
        };
        out.insert(key.trim().to_ascii_lowercase(), value);
        rest = remaining;
    }
}

/// A quoted string's content (RFC 9110 §5.6.4: `\` escapes the next character) and what follows
/// its closing quote.
fn quoted_string(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match (escaped, c) {
            (true, _) => {
                value.push(c);
                escaped = false;
            }
            (false, '\\') => escaped = true,
            (false, '"') => return Some((value, &text[at + 1..])),
            (false, _) => value.push(c),
        }
    }
    None
}

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5's example: Mufasa, "Circle Of Life", realm testrealm@host.com.
    #[test]
    fn a_client_response_verifies_once_and_never_again() {
        let digests = Digests::new((1, 2));
        let ha1 = md5_hex("Mufasa:testrealm@host.com:Circle Of Life");
        let auth = DigestAuth {
            realm: "testrealm@host.com".into(),
            users: [("Mufasa".to_owned(), ha1.clone())].into(),
        };
        let nonce = digests.nonce(now_secs());
        let response = |nc: &str, uri: &str| {
            let ha2 = md5_hex(&format!("GET:{uri}"));
            md5_hex(&format!("{ha1}:{nonce}:{nc}:0a4f113b:auth:{ha2}"))
        };
        let header = |nc: &str, uri: &str, response: &str| {
            let value = format!(
                "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", nonce=\"{nonce}\", uri=\"{uri}\", qop=auth, nc={nc}, cnonce=\"0a4f113b\", response=\"{response}\", opaque=\"x\""
            );
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&value).expect("value"));
            headers
        };
        let check =
            |headers: &HeaderMap| digests.check(&auth, &Method::GET, "/dir/index.html", headers).is_ok();
        assert!(check(&header("00000001", "/dir/index.html", &response("00000001", "/dir/index.html"))));
        assert!(
            !check(&header("00000001", "/dir/index.html", &response("00000001", "/dir/index.html"))),
            "replayed"
        );
        assert!(check(&header("00000002", "/dir/index.html", &response("00000002", "/dir/index.html"))));
        assert!(!check(&header("00000003", "/dir/index.html", "0".repeat(32).as_str())), "wrong response");
        assert!(!check(&header("00000004", "/other", &response("00000004", "/other"))), "another URI");
        // A nonce hawser did not make is refused; an expired one of its own is stale, so the
        // client may retry at once with the fresh nonce of the challenge.
        let forged = format!("{:016x}{:016x}", now_secs(), 7);
        assert!(digests.issued(&forged).is_none());
        let then = now_secs() - 120;
        let old = digests.nonce(then);
        assert_eq!(digests.issued(&old), Some(then));
        let ha2 = md5_hex("GET:/dir/index.html");
        let stale_response = md5_hex(&format!("{ha1}:{old}:00000001:0a4f113b:auth:{ha2}"));
        let value = format!(
            "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", nonce=\"{old}\", uri=\"/dir/index.html\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"{stale_response}\""
        );
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&value).expect("value"));
        match digests.check(&auth, &Method::GET, "/dir/index.html", &headers) {
            Err(ProxyError::Unauthorized { challenge: Some(challenge), .. }) => {
                assert!(challenge.to_str().expect("text").ends_with(", stale=true"), "{challenge:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parameters_are_read_with_quotes_and_escapes() {
        let read = params(r#"Digest username="a\"b", qop=auth, nc=00000001 ,uri="/x,y""#).expect("params");
        assert_eq!(read["username"], "a\"b");
        assert_eq!(read["qop"], "auth");
        assert_eq!(read["nc"], "00000001");
        assert_eq!(read["uri"], "/x,y");
        assert!(params("Basic abc").is_none());
        assert!(params(r#"Digest username="unterminated"#).is_none());
    }
}
