//! Session affinity translated: ingress-nginx's `affinity: cookie` and its `session-cookie-*`
//! keys, `hawser.dev/affinity`, and a WebSocketRoute rule's `sessionAffinity`.

use std::time::Duration;

use super::*;
use crate::model::{CookieAffinity, SameSite};

fn nginx(pairs: &[(&str, &str)]) -> Built {
    let keyed: Vec<(String, &str)> =
        pairs.iter().map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), *v)).collect();
    let refs: Vec<(&str, &str)> = keyed.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    built(&with_annotations("i", &refs))
}

fn affinity_of(built: &Built) -> Option<CookieAffinity> {
    policy_of(built).affinity
}

/// Each report as `Reason key`, the prefix left out.
fn reasons(built: &Built) -> Vec<String> {
    built
        .reports
        .iter()
        .filter(|r| r.object.kind == Kind::Ingress)
        .map(|r| format!("{:?} {}", r.reason, r.field.rsplit('/').next().unwrap_or_default()))
        .collect()
}

#[test]
fn nginx_cookie_affinity_with_every_attribute() {
    let built = nginx(&[
        ("affinity", "cookie"),
        ("affinity-mode", "balanced"),
        ("session-cookie-name", "route"),
        ("session-cookie-path", "/chat"),
        ("session-cookie-domain", ".a.com"),
        ("session-cookie-max-age", "172800"),
        ("session-cookie-expires", "3600"),
        ("session-cookie-samesite", "None"),
        ("session-cookie-conditional-samesite-none", "true"),
        ("session-cookie-secure", "true"),
        ("session-cookie-change-on-failure", "true"),
        ("session-cookie-hash", "sha1"),
    ]);
    let want = CookieAffinity {
        name: "route".into(),
        path: Some("/chat".into()),
        domain: Some(".a.com".into()),
        max_age: Some(Duration::from_secs(172_800)),
        expires: Some(Duration::from_secs(3600)),
        same_site: Some(SameSite::None),
        same_site_none_if_supported: true,
        secure: true,
        change_on_failure: true,
    };
    assert_eq!(affinity_of(&built), Some(want));
    let reasons = reasons(&built);
    assert!(reasons.contains(&"Honored affinity".to_owned()), "{reasons:?}");
    assert!(reasons.contains(&"Translated affinity-mode".to_owned()), "{reasons:?}");
    assert!(reasons.contains(&"Translated session-cookie-hash".to_owned()), "{reasons:?}");
    assert_eq!(reasons.iter().filter(|r| r.starts_with("Honored session-cookie-")).count(), 9, "{reasons:?}");
    assert!(problems(&built).is_empty(), "{:?}", problems(&built));
}

#[test]
fn nginx_defaults_and_bad_values() {
    let defaults = nginx(&[("affinity", "cookie")]);
    assert_eq!(affinity_of(&defaults), Some(CookieAffinity::named("INGRESSCOOKIE")));
    assert_eq!(policy_of(&defaults).load_balancing, LoadBalancing::RoundRobin);
    // A bad attribute is left out and reported; the affinity itself stays.
    let cases = [
        ("session-cookie-name", "a b"),
        ("session-cookie-path", "no-slash"),
        ("session-cookie-path", "/a;b"),
        ("session-cookie-domain", "a.com;x"),
        ("session-cookie-max-age", "2d"),
        ("session-cookie-samesite", "Sometimes"),
        ("session-cookie-secure", "yes"),
    ];
    for (key, value) in cases {
        let built = nginx(&[("affinity", "cookie"), (key, value)]);
        assert_eq!(affinity_of(&built), Some(CookieAffinity::named("INGRESSCOOKIE")), "{key}: {value}");
        let field = format!("Invalid Ingress default/i nginx.ingress.kubernetes.io/{key}");
        assert_eq!(problems(&built), vec![field], "{key}: {value}");
    }
    let without = nginx(&[("session-cookie-name", "route"), ("affinity-mode", "persistent")]);
    assert_eq!(affinity_of(&without), None);
    assert_eq!(
        problems(&without),
        vec![
            "Unsupported Ingress default/i nginx.ingress.kubernetes.io/affinity-mode",
            "Unsupported Ingress default/i nginx.ingress.kubernetes.io/session-cookie-name",
        ]
    );
    let bad_type = nginx(&[("affinity", "ip")]);
    assert_eq!(affinity_of(&bad_type), None);
    assert_eq!(problems(&bad_type), vec!["Invalid Ingress default/i nginx.ingress.kubernetes.io/affinity"]);
}

#[test]
fn hawser_affinity_annotation() {
    let hawser = |value: &str| {
        let built = built(&with_annotations("i", &[("hawser.dev/affinity", value)]));
        (affinity_of(&built), problems(&built))
    };
    assert_eq!(hawser("cookie"), (Some(CookieAffinity::named("hawser-affinity")), vec![]));
    assert_eq!(hawser("cookie:sid"), (Some(CookieAffinity::named("sid")), vec![]));
    assert_eq!(hawser("none"), (None, vec![]));
    let invalid = vec!["Invalid Ingress default/i hawser.dev/affinity".to_owned()];
    assert_eq!(hawser("cookie:"), (None, invalid.clone()));
    assert_eq!(hawser("header:x"), (None, invalid));
    // hawser.dev wins over the nginx key.
    let both = built(&with_annotations(
        "i",
        &[("nginx.ingress.kubernetes.io/affinity", "cookie"), ("hawser.dev/affinity", "none")],
    ));
    assert_eq!(affinity_of(&both), None);
}

#[test]
fn websocket_route_session_affinity() {
    let route = |affinity: &str| {
        built(&format!(
            "apiVersion: hawser.dev/v1alpha1\nkind: WebSocketRoute\nmetadata: {{name: chat}}\nspec:\n  hostnames: [a.com]\n  rules:\n  - backends: [{{name: web, port: http}}]\n    sessionAffinity: {affinity}\n"
        ))
    };
    let full = route(
        "{cookie: {name: sid, path: /, maxAge: 48h, sameSite: Lax, secure: true, changeOnFailure: true}}",
    );
    let want = CookieAffinity {
        path: Some("/".into()),
        max_age: Some(Duration::from_secs(48 * 3600)),
        same_site: Some(SameSite::Lax),
        secure: true,
        change_on_failure: true,
        ..CookieAffinity::named("sid")
    };
    assert_eq!(affinity_of(&full), Some(want));
    assert_eq!(affinity_of(&route("{cookie: {}}")), Some(CookieAffinity::named("hawser-affinity")));
    let bad = route("{cookie: {name: \"a;b\"}}");
    assert!(bad.table.lookup("a.com", "/", |_| None).is_none());
    assert_eq!(problems(&bad), vec!["Invalid WebSocketRoute default/chat spec.rules[0].sessionAffinity"]);
}
