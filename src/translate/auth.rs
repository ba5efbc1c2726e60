//! ingress-nginx's authentication annotations → route policy: `auth-type: basic` with
//! `auth-secret` (an htpasswd file under the key `auth`, or with `auth-secret-type: auth-map`
//! one key per user) and `auth-realm`; `auth-type: digest` with an htdigest file; `auth-url` with `auth-method`, `auth-signin`
//! (+ `auth-signin-redirect-param`), `auth-response-headers` and `auth-request-redirect`.
//!
//! Everything here fails closed: an auth setting hawser cannot read, a Secret it cannot find or
//! read, refuses the whole Ingress rather than serving it unprotected. `auth-tls-*` and
//! `auth-snippet` are not enforced and are left to [`super::unenforced`].

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{HeaderName, Method};
use k8s_openapi::api::core::v1::Secret;

use super::annotations::{Effect, Failure, OTHER_NAMESPACE};
use super::secret_error::SecretError;
use crate::model::{BasicAuth, DigestAuth, ExternalAuth, PasswordHash, Policy, UrlTemplate, ValueError};

/// The Secret a basic- or digest-auth Ingress names, read once the snapshot is at hand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasicAuthSecret {
    /// In the Ingress's namespace.
    pub name: String,
    /// `auth-map`: one key per user; otherwise an htpasswd file under `auth`.
    pub map: bool,
    pub realm: String,
    /// `auth-type: digest`: an htdigest file (`user:realm:HA1`) under `auth`.
    pub digest: bool,
}

/// One `auth-*` key. `None`: not one hawser enforces (the caller treats it as unenforced).
pub(super) fn apply(
    key: &str,
    value: &str,
    all: &BTreeMap<&str, &str>,
    policy: &mut Policy,
) -> Option<Result<Effect, Failure>> {
    let basic = all.get("auth-type").is_some_and(|t| matches!(t.trim(), "basic" | "digest"));
    let external = all.contains_key("auth-url");
    let result = match key {
        "auth-type" if matches!(value.trim(), "basic" | "digest") => Ok(()),
        "auth-secret" | "auth-secret-type" | "auth-realm" if basic => check_basic(key, value),
        "auth-url" => external_auth(all).map(|auth| policy.external_auth = Some(Arc::new(auth))),
        "auth-method"
        | "auth-signin"
        | "auth-signin-redirect-param"
        | "auth-response-headers"
        | "auth-request-redirect"
            if external =>
        {
            Ok(())
        }
        "auth-cache-key" | "auth-cache-duration" if external => {
            return Some(Ok(Effect::Translated("not cached: the service is asked on every request".into())));
        }
        "auth-keepalive"
        | "auth-keepalive-requests"
        | "auth-keepalive-timeout"
        | "auth-keepalive-share-vars"
            if external =>
        {
            return Some(Ok(Effect::NotNeeded));
        }
        "auth-always-set-cookie" if external => super::values::boolean(value).map(drop),
        "auth-proxy-set-headers" if external => {
            return Some(Ok(Effect::Unsupported(
                "not applied: the subrequest carries the client's headers as they are",
            )));
        }
        _ => return None,
    };
    // An auth setting hawser cannot read must not leave the route open.
    Some(result.map(|()| Effect::Honored).map_err(Failure::fatal))
}

/// The Secret to read when the Ingress asks for basic auth.
pub fn basic_auth_secret(
    all: &BTreeMap<&str, &str>,
    namespace: &str,
) -> Option<Result<BasicAuthSecret, ValueError>> {
    let digest = match all.get("auth-type").map(|t| t.trim()) {
        Some("basic") => false,
        Some("digest") => true,
        _ => return None,
    };
    let realm = all.get("auth-realm").map(|r| r.trim().to_owned()).unwrap_or_default();
    let map = all.get("auth-secret-type").is_some_and(|t| t.trim() == "auth-map");
    if digest && map {
        return Some(Err(ValueError::Incomplete(
            "auth-type: digest reads an htdigest file; auth-secret-type: auth-map is for basic",
        )));
    }
    let Some(secret) = all.get("auth-secret").map(|s| s.trim()) else {
        return Some(Err(ValueError::Incomplete("auth-type needs auth-secret")));
    };
    let name = match secret.split_once('/') {
        Some((ns, name)) if ns == namespace && !name.is_empty() => name,
        Some(_) => {
            return Some(Err(ValueError::refused(secret, OTHER_NAMESPACE)));
        }
        None => secret,
    };
    Some(Ok(BasicAuthSecret { name: name.to_owned(), map, realm, digest }))
}

/// The users of an htdigest file in `secret` whose realm is the wanted one (the first line's,
/// when `auth-realm` is unset); other lines are returned as problems.
pub fn load_digest_users(
    secret: &Secret,
    wanted: &BasicAuthSecret,
) -> Result<(DigestAuth, Vec<String>), SecretError> {
    let Some(file) = secret.data.as_ref().and_then(|d| d.get("auth")) else {
        return Err(SecretError::MissingKey { key: "key \"auth\" (an htdigest file)" });
    };
    let file = String::from_utf8_lossy(&file.0);
    let lines = file.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#'));
    let mut realm = (!wanted.realm.is_empty()).then(|| wanted.realm.clone());
    let (mut users, mut problems) = (BTreeMap::new(), Vec::new());
    for line in lines {
        let mut parts = line.splitn(3, ':');
        let (Some(user), Some(line_realm), Some(ha1)) = (parts.next(), parts.next(), parts.next()) else {
            problems.push("a line is not user:realm:HA1; it is left out".to_owned());
            continue;
        };
        let realm = realm.get_or_insert_with(|| line_realm.to_owned());
        if ha1.len() != 32 || !ha1.bytes().all(|b| b.is_ascii_hexdigit()) {
            problems.push(format!("the HA1 of user {user:?} is not 32 hex digits; that user cannot log in"));
        } else if line_realm != realm {
            problems.push(format!(
                "user {user:?} is of realm {line_realm:?}, not {realm:?}; that user cannot log in"
            ));
        } else {
            users.insert(user.to_owned(), ha1.to_ascii_lowercase());
        }
    }
    match realm {
        Some(realm) if !users.is_empty() => Ok((DigestAuth { realm, users }, problems)),
        _ => Err(SecretError::Unusable("holds no user of the realm hawser can check")),
    }
}

/// The users of `secret`; unreadable lines are returned as problems (those users cannot log
/// in). No user at all is an error.
pub fn load_users(
    secret: &Secret,
    wanted: &BasicAuthSecret,
) -> Result<(BasicAuth, Vec<String>), SecretError> {
    let data = secret.data.as_ref();
    let text = |bytes: &k8s_openapi::ByteString| String::from_utf8_lossy(&bytes.0).into_owned();
    let entries: Vec<(String, String)> = if wanted.map {
        data.into_iter().flatten().map(|(user, hash)| (user.clone(), text(hash))).collect()
    } else {
        let Some(file) = data.and_then(|d| d.get("auth")) else {
            return Err(SecretError::MissingKey { key: "key \"auth\" (an htpasswd file)" });
        };
        htpasswd_lines(&text(file))
    };
    let mut users = BTreeMap::new();
    let mut problems = Vec::new();
    for (user, hash) in entries {
        match PasswordHash::parse(&hash) {
            Ok(hash) => {
                users.insert(user, hash);
            }
            Err(why) => {
                problems.push(format!("the password of user {user:?} {why}; that user cannot log in"))
            }
        }
    }
    if users.is_empty() {
        return Err(SecretError::Unusable("holds no user whose password hawser can check"));
    }
    Ok((BasicAuth { realm: wanted.realm.clone(), users }, problems))
}

/// `user:hash` lines; blank lines and `#` comments skipped.
fn htpasswd_lines(file: &str) -> Vec<(String, String)> {
    let lines = file.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#'));
    lines
        .filter_map(|line| line.split_once(':'))
        .map(|(user, hash)| (user.to_owned(), hash.to_owned()))
        .collect()
}

fn check_basic(key: &str, value: &str) -> Result<(), ValueError> {
    match key {
        "auth-secret-type" if !matches!(value.trim(), "auth-file" | "auth-map") => {
            Err(ValueError::malformed(value, "auth-file or auth-map"))
        }
        "auth-realm" if value.contains('"') || value.contains(['\r', '\n']) => {
            Err(ValueError::refused(value, "cannot be a realm: it holds a double quote or a line break"))
        }
        _ => Ok(()),
    }
}

/// `auth-url` and its companions.
fn external_auth(all: &BTreeMap<&str, &str>) -> Result<ExternalAuth, ValueError> {
    let get = |key: &str| all.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
    let url = UrlTemplate::parse(get("auth-url").unwrap_or_default())?;
    let method = match get("auth-method") {
        Some(method) => Method::from_bytes(method.as_bytes())
            .map_err(|_| ValueError::malformed(method, "an HTTP method"))?,
        None => Method::GET,
    };
    let signin = get("auth-signin").map(UrlTemplate::parse).transpose()?;
    let response_headers = super::values::list(get("auth-response-headers").unwrap_or_default())
        .map(|name| {
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| ValueError::malformed(name, "a header name"))
        })
        .collect::<Result<_, _>>()?;
    Ok(ExternalAuth {
        url,
        method,
        signin,
        signin_redirect_param: get("auth-signin-redirect-param").unwrap_or("rd").to_owned(),
        response_headers,
        request_redirect: get("auth-request-redirect").map(str::to_owned),
        always_set_cookie: get("auth-always-set-cookie") == Some("true"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(data: &[(&str, &str)]) -> Secret {
        let data =
            data.iter().map(|(k, v)| ((*k).to_owned(), k8s_openapi::ByteString(v.as_bytes().to_vec())));
        Secret { data: Some(data.collect()), ..Secret::default() }
    }

    #[test]
    fn htpasswd_files_and_maps_give_their_users() {
        let wanted = BasicAuthSecret { name: "s".into(), map: false, realm: "r".into(), digest: false };
        let file = "# admins\nfoo:$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK00\n\nbar:plain\nbaz:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n";
        let (auth, problems) = load_users(&secret(&[("auth", file)]), &wanted).expect("users");
        assert_eq!(auth.users.keys().collect::<Vec<_>>(), ["baz", "foo"]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("\"bar\""));
        let map = BasicAuthSecret { map: true, ..wanted.clone() };
        let (auth, _) =
            load_users(&secret(&[("foo", "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=")]), &map).expect("map");
        assert!(auth.users["foo"].verify(b"secret"));
        assert!(
            load_users(&secret(&[("other", file)]), &wanted)
                .expect_err("refused")
                .to_string()
                .contains("no key \"auth\"")
        );
        assert!(
            load_users(&secret(&[("auth", "bar:plain")]), &wanted)
                .expect_err("refused")
                .to_string()
                .contains("no user")
        );
    }

    #[test]
    fn the_secret_must_be_named_and_in_the_ingress_namespace() {
        let annotations =
            |pairs: &[(&'static str, &'static str)]| pairs.iter().copied().collect::<BTreeMap<_, _>>();
        let basic = [("auth-type", "basic"), ("auth-secret", "web/users"), ("auth-realm", "Staff")];
        let found = basic_auth_secret(&annotations(&basic), "web").expect("basic").expect("valid");
        assert_eq!(
            found,
            BasicAuthSecret { name: "users".into(), map: false, realm: "Staff".into(), digest: false }
        );
        assert!(basic_auth_secret(&annotations(&basic), "other").expect("basic").is_err());
        assert!(basic_auth_secret(&annotations(&[("auth-type", "basic")]), "web").expect("basic").is_err());
        assert!(basic_auth_secret(&annotations(&[("auth-type", "ntlm")]), "web").is_none());
        let digest_map = [("auth-type", "digest"), ("auth-secret", "s"), ("auth-secret-type", "auth-map")];
        assert!(basic_auth_secret(&annotations(&digest_map), "web").expect("digest").is_err());
    }
}
