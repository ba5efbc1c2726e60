use std::time::Duration;

use http::header;

use super::*;

fn endpoint(last: u8) -> Endpoint {
    Endpoint { addr: SocketAddr::from(([10, 1, 2, last], 8080)), weight: 1 }
}

fn backend() -> Backend {
    Backend::new((1..=3).map(endpoint).collect())
}

fn cookie_header(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::COOKIE, HeaderValue::from_str(value).expect("cookie"));
    headers
}

fn issued(affinity: &CookieAffinity, https: bool, user_agent: Option<&str>) -> String {
    let path = PathMatch::Prefix("/socket.io".into());
    let context = CookieContext { https, user_agent, route_path: &path };
    let value = set_cookie(&AffinityKey::from_secret("s3cret"), affinity, endpoint(2).addr, &context);
    value.expect("a valid header").to_str().expect("ascii").to_owned()
}

/// The value part of `NAME=VALUE; ...`.
fn value_of(set_cookie: &str) -> &str {
    set_cookie.split(';').next().and_then(|pair| pair.split_once('=')).map_or("", |(_, v)| v)
}

#[test]
fn a_cookie_names_its_endpoint_and_reveals_no_address() {
    let key = AffinityKey::from_secret("s3cret");
    let affinity = CookieAffinity::named("INGRESSCOOKIE");
    let set = issued(&affinity, false, None);
    let value = value_of(&set);
    assert_eq!(value.len(), 16);
    assert!(value.bytes().all(|b| b.is_ascii_hexdigit()));
    for revealing in ["10", "8080", "1f90", "0a01"] {
        assert!(!set.contains(&format!("={revealing}")), "{set}");
    }
    let backend = backend();
    let headers = cookie_header(&format!("other=1; INGRESSCOOKIE={value}"));
    let chosen = sticky_endpoint(&key, &affinity, &headers, &backend);
    assert_eq!(chosen.map(|e| e.addr), Some(endpoint(2).addr));
    // Another key (another install) does not read it; nor is an unlisted endpoint found.
    let stranger = AffinityKey::from_secret("other");
    assert!(sticky_endpoint(&stranger, &affinity, &headers, &backend).is_none());
    let without_2 = Backend::new(vec![endpoint(1), endpoint(3)]);
    assert!(sticky_endpoint(&key, &affinity, &headers, &without_2).is_none());
}

#[test]
fn the_same_secret_gives_the_same_cookie_and_random_keys_differ() {
    let affinity = CookieAffinity::named("c");
    assert_eq!(value_of(&issued(&affinity, false, None)), value_of(&issued(&affinity, false, None)));
    let (a, b) = (AffinityKey::random(), AffinityKey::random());
    assert_ne!(a.token(endpoint(1).addr), b.token(endpoint(1).addr));
}

#[test]
fn malformed_or_missing_cookies_name_nothing() {
    let key = AffinityKey::from_secret("s3cret");
    let affinity = CookieAffinity::named("c");
    let backend = backend();
    for header in ["", "c=", "c=zz", "c=10.1.2.2:8080", "c=0123456789abcdef0", "d=0123456789abcdef"] {
        let headers = cookie_header(header);
        assert!(sticky_endpoint(&key, &affinity, &headers, &backend).is_none(), "{header:?}");
    }
}

#[test]
fn attributes_follow_the_configuration() {
    let plain = CookieAffinity::named("INGRESSCOOKIE");
    let set = issued(&plain, false, None);
    assert!(set.ends_with("; Path=/socket.io; HttpOnly"), "{set}");
    assert!(issued(&plain, true, None).ends_with("; Secure; HttpOnly"));

    let full = CookieAffinity {
        path: Some("/".into()),
        domain: Some("example.com".into()),
        max_age: Some(Duration::from_secs(172_800)),
        expires: Some(Duration::from_secs(3600)),
        same_site: Some(SameSite::Lax),
        secure: true,
        ..CookieAffinity::named("route")
    };
    let set = issued(&full, false, None);
    let attributes: Vec<&str> = set.split("; ").skip(1).collect();
    assert_eq!(attributes[..3], ["Path=/", "Domain=example.com", "Max-Age=172800"]);
    let expires = attributes[3].strip_prefix("Expires=").expect("Expires");
    let at = httpdate::parse_http_date(expires).expect("an HTTP date");
    let ahead = at.duration_since(SystemTime::now()).expect("in the future");
    assert!(ahead > Duration::from_secs(3500) && ahead <= Duration::from_secs(3600), "{ahead:?}");
    assert_eq!(attributes[4..], ["SameSite=Lax", "Secure", "HttpOnly"]);

    let strict = CookieAffinity { same_site: Some(SameSite::Strict), ..CookieAffinity::named("c") };
    assert!(issued(&strict, false, None).contains("; SameSite=Strict;"));
    let semicolon = PathMatch::Prefix("/a;b".into());
    let context = CookieContext { https: false, user_agent: None, route_path: &semicolon };
    let set = set_cookie(&AffinityKey::random(), &plain, endpoint(1).addr, &context).expect("header");
    assert!(!set.to_str().expect("ascii").contains("Path="), "a path with ';' is left out");
}

#[test]
fn same_site_none_is_left_out_only_for_browsers_that_reject_it() {
    const OLD_CHROME: &str = "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/62.0.3202.94 Safari/537.36";
    const NEW_CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    const IOS_12: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 12_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1.2 Mobile/15E148 Safari/604.1";
    const MAC_SAFARI: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1.2 Safari/605.1.15";
    const MAC_CHROME: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const OLD_UC: &str = "Mozilla/5.0 (Linux; U; Android 8.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/57.0.2987.108 UCBrowser/12.10.8.1172 Mobile Safari/537.36";
    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    for (ua, rejects) in [
        (OLD_CHROME, true),
        (NEW_CHROME, false),
        (IOS_12, true),
        (MAC_SAFARI, true),
        (MAC_CHROME, false),
        (OLD_UC, true),
        (FIREFOX, false),
    ] {
        assert_eq!(rejects_same_site_none(Some(ua)), rejects, "{ua}");
    }
    assert!(!rejects_same_site_none(None));

    let conditional = CookieAffinity {
        same_site: Some(SameSite::None),
        same_site_none_if_supported: true,
        ..CookieAffinity::named("c")
    };
    assert!(!issued(&conditional, true, Some(OLD_CHROME)).contains("SameSite"));
    assert!(issued(&conditional, true, Some(NEW_CHROME)).contains("; SameSite=None; Secure"));
    let always = CookieAffinity { same_site_none_if_supported: false, ..conditional };
    assert!(issued(&always, true, Some(OLD_CHROME)).contains("SameSite=None"));
}
