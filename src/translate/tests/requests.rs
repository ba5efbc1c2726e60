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
                        ..Rewrites::default()
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

#[test]
fn regex_paths_with_use_regex_or_rewrite_target() {
    let with = |path_type: &str, path: &str, pairs: &[(&str, &str)]| {
        let keyed: Vec<(String, &str)> =
            pairs.iter().map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), *v)).collect();
        let list: String = keyed.iter().map(|(k, v)| format!("    {k}: {v:?}\n")).collect();
        let doc = simple("i", "a.com", path_type, &format!("{path:?}"));
        built(&doc.replacen("metadata:\n", &format!("metadata:\n  annotations:\n{list}"), 1))
    };
    let regex = [("use-regex", "true")];
    assert_eq!(
        with("ImplementationSpecific", "/api(/|$)(.*)", &regex).table.summary(),
        vec!["a.com Regex /api(/|$)(.*) -> 10.0.0.1:8080 (ingress/default/i/0/0)"]
    );
    assert_eq!(
        with("Prefix", "/v[0-9]+/", &[("rewrite-target", "/$1")]).table.summary(),
        vec!["a.com Regex /v[0-9]+/ -> 10.0.0.1:8080 (ingress/default/i/0/0)"],
        "rewrite-target makes the paths regular expressions"
    );
    assert_eq!(
        with("Exact", "/exact", &regex).table.summary(),
        vec!["a.com Exact /exact -> 10.0.0.1:8080 (ingress/default/i/0/0)"]
    );
    assert_eq!(
        with("Prefix", "/api(", &[("use-regex", "false")]).table.summary(),
        vec!["a.com Prefix /api( -> 10.0.0.1:8080 (ingress/default/i/0/0)"]
    );
    let bad = with("ImplementationSpecific", "/api(", &regex);
    assert!(bad.table.summary().is_empty());
    assert_eq!(problems(&bad), vec!["Invalid Ingress default/i spec.rules[0].http.paths[0].path"]);
    let target = with("ImplementationSpecific", "/api(/|$)(.*)", &[("rewrite-target", "/$2")]);
    assert_eq!(policy_of_path(&target, "/api/x").rewrites.rewrite_target.as_deref(), Some("/$2"));
    assert!(problems(&with("Prefix", "/", &[("rewrite-target", "no-slash")])).len() == 1);
}

fn policy_of_path(built: &Built, path: &str) -> Policy {
    built.table.lookup("a.com", path, |_| None).expect("route").policy.as_ref().clone()
}

#[test]
fn cors_annotations() {
    let on = nginx(&[
        ("enable-cors", "true"),
        ("cors-allow-origin", "https://a.com, https://*.b.com"),
        ("cors-allow-credentials", "false"),
        ("cors-max-age", "60"),
        ("cors-allow-methods", "GET, POST"),
    ]);
    let want = crate::model::Cors {
        allow_origins: vec!["https://a.com".into(), "https://*.b.com".into()],
        allow_methods: "GET, POST".into(),
        allow_credentials: false,
        max_age: 60,
        ..crate::model::Cors::default()
    };
    assert_eq!(policy_of(&on).cors, Some(want));
    assert!(problems(&on).is_empty(), "{:?}", problems(&on));
    assert_eq!(policy_of(&nginx(&[("enable-cors", "true")])).cors, Some(crate::model::Cors::default()));
    let off = nginx(&[("cors-allow-origin", "https://a.com")]);
    assert_eq!(policy_of(&off).cors, None);
    assert_eq!(
        problems(&off),
        vec!["Unsupported Ingress default/i nginx.ingress.kubernetes.io/cors-allow-origin"]
    );
    // An origin list hawser cannot read refuses the Ingress rather than allow every origin.
    let bad = nginx(&[("enable-cors", "true"), ("cors-allow-origin", "a.com")]);
    assert!(policy_of(&bad).refused);
    assert_eq!(
        problems(&bad),
        vec!["Invalid Ingress default/i nginx.ingress.kubernetes.io/cors-allow-origin"]
    );
}

#[test]
fn rate_limit_annotations() {
    let limited = nginx(&[("limit-rps", "10"), ("limit-rpm", "300"), ("limit-whitelist", "10.0.0.0/8")]);
    let limit = policy_of(&limited).rate_limit.expect("a limit");
    assert_eq!(
        limit.rates,
        vec![
            crate::model::Rate { per_second: 10.0, burst: 50.0, upgrades_only: false },
            crate::model::Rate { per_second: 5.0, burst: 1500.0, upgrades_only: false },
        ]
    );
    assert_eq!(limit.exempt, vec!["10.0.0.0/8".parse::<ipnet::IpNet>().unwrap()]);
    assert!(problems(&limited).is_empty(), "{:?}", problems(&limited));
    let alone = nginx(&[("limit-burst-multiplier", "2")]);
    assert!(policy_of(&alone).rate_limit.is_none());
    assert_eq!(
        problems(&alone),
        vec!["Unsupported Ingress default/i nginx.ingress.kubernetes.io/limit-burst-multiplier"]
    );
    assert_eq!(
        problems(&nginx(&[("limit-rps", "fast")])),
        vec!["Invalid Ingress default/i nginx.ingress.kubernetes.io/limit-rps"]
    );
}

#[test]
fn hawser_rate_limits_replace_nginx_rates_and_handshake_rates_add() {
    use crate::model::Rate;
    let hawser = |pairs: &[(&str, &str)]| {
        let prefixed: Vec<(String, &str)> =
            pairs.iter().map(|(k, v)| (format!("hawser.dev/{k}"), *v)).collect();
        let pairs: Vec<(&str, &str)> = prefixed.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        built(&with_annotations(
            "i",
            &[&pairs[..], &[("nginx.ingress.kubernetes.io/limit-rps", "100")]].concat(),
        ))
    };
    let both =
        hawser(&[("rate-limit", "600/m"), ("rate-limit-burst", "20"), ("handshake-rate-limit", "2/s")]);
    assert_eq!(
        policy_of(&both).rate_limit.expect("a limit").rates,
        vec![
            Rate { per_second: 2.0, burst: 2.0, upgrades_only: true },
            Rate { per_second: 10.0, burst: 20.0, upgrades_only: false },
        ]
    );
    assert!(problems(&both).is_empty(), "{:?}", problems(&both));
    let handshakes = hawser(&[("handshake-rate-limit", "30/h")]);
    let rates = policy_of(&handshakes).rate_limit.expect("a limit").rates;
    assert_eq!(rates.len(), 2, "nginx's limit-rps stays beside a handshake rate: {rates:?}");
    for (pairs, problem) in [
        (&[("rate-limit", "10 per second")][..], "Invalid Ingress default/i hawser.dev/rate-limit"),
        (&[("rate-limit-burst", "5")][..], "Unsupported Ingress default/i hawser.dev/rate-limit-burst"),
    ] {
        assert_eq!(problems(&hawser(pairs)), vec![problem.to_owned()]);
    }
    let route = built(&ROUTE.replace(
        "    maxConnectionsPerClient: 3\n",
        "    maxConnectionsPerClient: 3\n    rateLimit: {rate: 5/s}\n    handshakeRateLimit: {rate: 60/m, burst: 3}\n",
    ));
    let slow = &route.table.lookup("chat.a.com", "/slow", |_| None).expect("route").policy;
    assert_eq!(
        slow.rate_limit.as_ref().expect("a limit").rates,
        vec![
            Rate { per_second: 5.0, burst: 5.0, upgrades_only: false },
            Rate { per_second: 1.0, burst: 3.0, upgrades_only: true },
        ]
    );
}

#[test]
fn canary_ingresses_join_their_main_route() {
    let main = with_annotations("main", &[]);
    let canary = with_annotations(
        "canary",
        &[
            ("nginx.ingress.kubernetes.io/canary", "true"),
            ("nginx.ingress.kubernetes.io/canary-weight", "30"),
            ("nginx.ingress.kubernetes.io/canary-by-header", "X-Canary"),
        ],
    )
    .replace("name: web", "name: api")
    .replace("port: {name: http}", "port: {number: 81}");
    let both = built(&format!("{main}---\n{canary}"));
    assert_eq!(both.table.summary(), vec!["a.com Prefix / -> 10.0.0.1:8080 (ingress/default/main/0/0)"]);
    let route = both.table.lookup("a.com", "/", |_| None).expect("route");
    let joined = route.canary.as_ref().expect("the canary joined the main route");
    assert_eq!((joined.weight, joined.weight_total, joined.header.as_deref()), (30, 100, Some("x-canary")));
    assert_eq!(joined.backend.endpoints().len(), 1);
    assert!(problems(&both).is_empty(), "{:?}", problems(&both));
    // Without a main Ingress the canary is reported and serves nothing.
    let alone = built(&canary);
    assert!(alone.table.summary().is_empty());
    assert_eq!(problems(&alone), vec!["Invalid Ingress default/canary spec.rules[0].http.paths[0]"]);
    // Canary keys without canary: "true" do nothing, and say so.
    let stray = nginx(&[("canary-weight", "50")]);
    assert!(!policy_of(&stray).refused && built_route(&stray).canary.is_none());
    assert_eq!(
        problems(&stray),
        vec!["Unsupported Ingress default/i nginx.ingress.kubernetes.io/canary-weight"]
    );
}

fn built_route(built: &Built) -> std::sync::Arc<crate::model::Route> {
    built.table.lookup("a.com", "/", |_| None).expect("route").clone()
}

#[test]
fn default_backend_and_custom_http_errors() {
    let routed = nginx(&[("default-backend", "web"), ("custom-http-errors", "404, 503")]);
    let route = routed.table.lookup("a.com", "/", |_| None).expect("route");
    let errors = route.error_backend.as_ref().expect("an error backend");
    assert_eq!(errors.codes, vec![404, 503]);
    assert_eq!(
        (errors.namespace.as_str(), errors.ingress.as_str(), errors.service.as_str()),
        ("default", "i", "web")
    );
    assert_eq!(errors.backend.endpoints().len(), route.backend.endpoints().len());
    assert!(problems(&routed).is_empty(), "{:?}", problems(&routed));
    for (pairs, problem) in [
        (
            &[("custom-http-errors", "404")][..],
            "Unsupported Ingress default/i nginx.ingress.kubernetes.io/custom-http-errors",
        ),
        (
            &[("default-backend", "web"), ("custom-http-errors", "200")][..],
            "Invalid Ingress default/i nginx.ingress.kubernetes.io/custom-http-errors",
        ),
        (
            &[("default-backend", "Not/A/Name")][..],
            "Invalid Ingress default/i nginx.ingress.kubernetes.io/default-backend",
        ),
        (
            &[("default-backend", "absent")][..],
            "UnresolvedRef Ingress default/i nginx.ingress.kubernetes.io/default-backend",
        ),
    ] {
        assert_eq!(problems(&nginx(pairs)), vec![problem.to_owned()], "{pairs:?}");
    }
}
