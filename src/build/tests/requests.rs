//! ingress-nginx's request annotations translated: body size, redirects, app-root, upstream
//! Host, X-Forwarded-Prefix, next-upstream tries.

use super::*;
use crate::model::{Redirect, Rewrites};

fn nginx(pairs: &[(&str, &str)]) -> Built {
    let keyed: Vec<(String, &str)> =
        pairs.iter().map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), *v)).collect();
    let refs: Vec<(&str, &str)> = keyed.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    built(&with_annotations("i", &refs))
}

/// Annotations, and what the policy they give must satisfy.
type Case = (Vec<(&'static str, &'static str)>, Box<dyn Fn(&Policy) -> bool>);

#[test]
fn request_annotations_become_policy() {
    let cases: Vec<Case> = vec![
        (vec![("proxy-body-size", "8m")], Box::new(|p| p.max_body_bytes == Some(8 << 20))),
        (vec![("proxy-body-size", "0")], Box::new(|p| p.max_body_bytes.is_none())),
        (vec![("proxy-next-upstream-tries", "1")], Box::new(|p| p.max_endpoints_tried == 1)),
        (vec![("proxy-next-upstream-tries", "0")], Box::new(|p| p.max_endpoints_tried == u32::MAX)),
        (
            vec![("permanent-redirect", "https://b.com/x")],
            Box::new(|p| {
                p.rewrites.redirect == Some(Redirect { status: 301, location: "https://b.com/x".into() })
            }),
        ),
        (
            vec![("temporal-redirect", "/down"), ("temporal-redirect-code", "307")],
            Box::new(|p| p.rewrites.redirect == Some(Redirect { status: 307, location: "/down".into() })),
        ),
        (
            vec![("permanent-redirect", "/p"), ("temporal-redirect", "/t")],
            Box::new(|p| p.rewrites.redirect.as_ref().is_some_and(|r| r.location == "/p")),
        ),
        (
            vec![("app-root", "/app"), ("upstream-vhost", "in.svc:8080"), ("x-forwarded-prefix", "/shop")],
            Box::new(|p| {
                p.rewrites
                    == Rewrites {
                        redirect: None,
                        app_root: Some("/app".into()),
                        upstream_host: Some("in.svc:8080".into()),
                        forwarded_prefix: Some("/shop".into()),
                    }
            }),
        ),
    ];
    for (pairs, check) in cases {
        let built = nginx(&pairs);
        assert!(check(&policy_of(&built)), "{pairs:?}: {:?}", policy_of(&built));
        assert!(problems(&built).is_empty(), "{pairs:?}: {:?}", problems(&built));
    }
}

#[test]
fn bad_request_annotations_are_reported_and_left_out() {
    for (key, value) in [
        ("proxy-body-size", "lots"),
        ("permanent-redirect", "example.com"),
        ("permanent-redirect", "https://a b"),
        ("app-root", "app"),
        ("upstream-vhost", "a/b"),
        ("x-forwarded-prefix", "shop"),
        ("proxy-next-upstream-tries", "-1"),
    ] {
        let built = nginx(&[(key, value)]);
        assert_eq!(
            problems(&built),
            vec![format!("Invalid Ingress default/i nginx.ingress.kubernetes.io/{key}")],
            "{key}: {value}"
        );
        assert_eq!(policy_of(&built).rewrites, Rewrites::default(), "{key}: {value}");
    }
    let code_alone = nginx(&[("permanent-redirect-code", "308")]);
    assert_eq!(
        problems(&code_alone),
        vec!["Unsupported Ingress default/i nginx.ingress.kubernetes.io/permanent-redirect-code"]
    );
    let bad_code = nginx(&[("permanent-redirect", "/p"), ("permanent-redirect-code", "200")]);
    assert!(
        problems(&bad_code).len() == 2,
        "the code and the redirect that needs it: {:?}",
        problems(&bad_code)
    );
}
