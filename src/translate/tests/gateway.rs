//! Gateway API translation: which HTTPRoutes attach where, on which hosts and listeners, with
//! which matches and backends, and what is reported.

use super::*;

/// A GatewayClass of hawser's, another controller's, and Gateways in `infra`:
/// `same` (HTTP :80, routes from its namespace), `all` (HTTP :80 for `*.all.com`, from every
/// namespace), `picky` (HTTP :80, namespaces labelled `team: web`), `tls` (HTTPS :443 for
/// `secure.com`), `odd` (HTTP :8080 and TCP), `foreign` (another controller's).
const GATEWAYS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: hawser}
spec: {controllerName: hawser.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: other}
spec: {controllerName: example.com/other}
---
apiVersion: v1
kind: Namespace
metadata: {name: web, labels: {team: web}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: same, namespace: infra}
spec:
  gatewayClassName: hawser
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: Gateway
metadata: {name: all, namespace: infra}
spec:
  gatewayClassName: hawser
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: "*.all.com", allowedRoutes: {namespaces: {from: All}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: picky, namespace: infra}
spec:
  gatewayClassName: hawser
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    hostname: picky.com
    allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {team: web}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: tls, namespace: infra}
spec:
  gatewayClassName: hawser
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    hostname: secure.com
    tls: {certificateRefs: [{name: cert, namespace: default}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: odd, namespace: infra}
spec:
  gatewayClassName: hawser
  listeners:
  - {name: http-8080, port: 8080, protocol: HTTP}
  - {name: tcp, port: 80, protocol: TCP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: foreign, namespace: infra}
spec:
  gatewayClassName: other
  listeners: [{name: http, port: 80, protocol: HTTP}]
"#;

/// The problems (as [`problems`] gives them) that mention `needle`.
fn problems_about(built: &Built, needle: &str) -> Vec<String> {
    problems(built).into_iter().filter(|p| p.contains(needle)).collect()
}

fn http_route(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}"
    )
}

/// A route with one rule to `web` (in `default`) on the parents and host names given.
fn simple_route(namespace: &str, name: &str, parents: &str, hostnames: &str) -> String {
    http_route(
        namespace,
        name,
        &format!(
            "  parentRefs: {parents}\n  hostnames: {hostnames}\n  rules:\n  - backendRefs: [{{name: web, namespace: default, port: 80}}]\n"
        ),
    )
}

const GRANT_WEB_TO_ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: routes-to-web, namespace: default}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: infra}, {group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: web}]
  to: [{group: "", kind: Service, name: web}]
"#;

fn gateway_built(yaml: &str) -> Built {
    built(&format!("{GATEWAYS}\n---\n{GRANT_WEB_TO_ROUTES}\n---\n{yaml}"))
}

/// What a case is, the route's namespace, parentRefs and hostnames, then the routes and the
/// route's problems expected.
type AttachCase<'a> = (&'a str, &'a str, &'a str, &'a str, &'a [&'a str], &'a [&'a str]);

#[test]
fn routes_attach_where_their_listeners_let_them() {
    let cases: [AttachCase; 9] = [
        (
            "the same namespace, no host names: any host, plain listener only",
            "infra",
            "[{name: same}]",
            "[]",
            &["* Prefix / on=plain -> 10.0.0.1:8080 (httproute/infra/r/0/0)"],
            &[],
        ),
        (
            "another namespace on a Same listener",
            "web",
            "[{name: same, namespace: infra}]",
            "[]",
            &[],
            &["NotAttached HTTPRoute web/r spec.parentRefs[0]"],
        ),
        (
            "From: All, host names intersected with the listener's wildcard",
            "web",
            "[{name: all, namespace: infra}]",
            "[a.all.com, b.c.all.com, other.com]",
            &[
                "a.all.com Prefix / on=plain -> 10.0.0.1:8080 (httproute/web/r/0/0)",
                "b.c.all.com Prefix / on=plain -> 10.0.0.1:8080 (httproute/web/r/0/0)",
            ],
            &[],
        ),
        (
            "no host name in common",
            "web",
            "[{name: all, namespace: infra}]",
            "[other.com]",
            &[],
            &["NotAttached HTTPRoute web/r spec.parentRefs[0]"],
        ),
        (
            "a namespace selector that matches",
            "web",
            "[{name: picky, namespace: infra}]",
            "[]",
            &["picky.com Prefix / on=plain -> 10.0.0.1:8080 (httproute/web/r/0/0)"],
            &[],
        ),
        (
            "a namespace selector that does not match",
            "infra",
            "[{name: picky}]",
            "[]",
            &[],
            &["NotAttached HTTPRoute infra/r spec.parentRefs[0]"],
        ),
        (
            "an HTTPS listener serves on TLS only",
            "infra",
            "[{name: tls, sectionName: https}]",
            "[]",
            &["secure.com Prefix / on=tls -> 10.0.0.1:8080 (httproute/infra/r/0/0)"],
            &[],
        ),
        (
            "a sectionName no listener has, and listeners hawser cannot serve",
            "infra",
            "[{name: tls, sectionName: nope}, {name: odd}]",
            "[]",
            &[],
            &[
                "NotAttached HTTPRoute infra/r spec.parentRefs[0]",
                "NotAttached HTTPRoute infra/r spec.parentRefs[1]",
            ],
        ),
        (
            "another controller's Gateway: not ours, nothing said",
            "infra",
            "[{name: foreign}]",
            "[]",
            &[],
            &[],
        ),
    ];
    for (what, namespace, parents, hostnames, want_routes, want_problems) in cases {
        let built = gateway_built(&simple_route(namespace, "r", parents, hostnames));
        let route_problems: Vec<String> = problems_about(&built, "HTTPRoute");
        assert_eq!(built.table.summary(), want_routes, "{what}");
        assert_eq!(route_problems, want_problems, "{what}");
    }
}

#[test]
fn gateway_listeners_hawser_cannot_serve_are_reported_and_https_listeners_claim_certificates() {
    let ungranted = gateway_built("");
    let gateway_problems: Vec<String> = problems_about(&ungranted, "Gateway ");
    assert_eq!(
        gateway_problems,
        [
            "Unsupported Gateway infra/odd spec.listeners[0]",
            "Unsupported Gateway infra/odd spec.listeners[1]",
            "UnresolvedRef Gateway infra/tls spec.listeners[0].tls.certificateRefs",
        ]
    );
    let granted = format!(
        "{GATEWAYS}\n---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: certs, namespace: default}}\nspec:\n  from: [{{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}}]\n  to: [{{group: \"\", kind: Secret}}]\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: cert}}\ntype: kubernetes.io/tls\n"
    );
    let granted = built(&granted);
    assert_eq!(granted.tls.get("secure.com"), Some(&NamespacedName::new("default", "cert")));
}

#[test]
fn matches_become_routes_in_gateway_precedence() {
    let route = http_route(
        "infra",
        "r",
        r#"  parentRefs: [{name: same}]
  hostnames: [m.com]
  rules:
  - matches:
    - {path: {type: PathPrefix, value: /}, method: POST}
    - {path: {type: Exact, value: /x}, headers: [{name: X-Env, value: canary}, {name: x-env, value: ignored}]}
    - {queryParams: [{name: animal, value: whale}]}
    - {path: {type: RegularExpression, value: "/r.*"}}
    backendRefs: [{name: web, namespace: default, port: 80, weight: 3}, {name: api, namespace: infra, port: 81}]
"#,
    );
    let built = gateway_built(&route);
    assert_eq!(
        built.table.summary(),
        [
            "m.com Exact /x [x-env=canary] on=plain -> 10.0.0.1:8080 + 500 for 25% (httproute/infra/r/0/1)",
            "m.com Prefix / method=POST on=plain -> 10.0.0.1:8080 + 500 for 25% (httproute/infra/r/0/0)",
            "m.com Prefix / ?animal=whale on=plain -> 10.0.0.1:8080 + 500 for 25% (httproute/infra/r/0/2)",
        ]
    );
    assert_eq!(
        problems_about(&built, "HTTPRoute"),
        [
            "UnresolvedRef HTTPRoute infra/r spec.rules[0].backendRefs[1]",
            "Unsupported HTTPRoute infra/r spec.rules[0].matches[3]",
        ],
        "`api` is not in infra; regular expressions are not served"
    );
}

#[test]
fn cross_namespace_backends_need_a_reference_grant() {
    let route =
        |namespace: &str| simple_route(namespace, "r", "[{name: all, namespace: infra}]", "[x.all.com]");
    let granted = gateway_built(&route("web"));
    assert_eq!(
        granted.table.summary(),
        ["x.all.com Prefix / on=plain -> 10.0.0.1:8080 (httproute/web/r/0/0)"]
    );
    let refused = gateway_built(&route("elsewhere"));
    assert_eq!(
        refused.table.summary(),
        ["x.all.com Prefix / on=plain -> (answers 500) (httproute/elsewhere/r/0/0)"]
    );
    assert_eq!(
        problems_about(&refused, "HTTPRoute"),
        ["UnresolvedRef HTTPRoute elsewhere/r spec.rules[0].backendRefs[0]"]
    );
}

fn websocket_policy(name: &str, created: &str, targets: &str, settings: &str) -> String {
    format!(
        "apiVersion: hawser.dev/v1alpha1\nkind: WebSocketPolicy\nmetadata: {{name: {name}, namespace: infra, creationTimestamp: \"{created}\"}}\nspec:\n  targetRefs: {targets}\n{settings}"
    )
}

#[test]
fn websocket_policies_set_the_rules_they_target() {
    let route = http_route(
        "infra",
        "chat",
        r#"  parentRefs: [{name: same}]
  hostnames: [chat.com]
  rules:
  - {name: ws, matches: [{path: {value: /ws}}], backendRefs: [{name: web, namespace: default, port: 80}]}
  - {name: poll, matches: [{path: {value: /poll}}], backendRefs: [{name: web, namespace: default, port: 80}]}
  - {matches: [{path: {value: /plain}}], backendRefs: [{name: web, namespace: default, port: 80}]}
"#,
    );
    let whole = "[{group: gateway.networking.k8s.io, kind: HTTPRoute, name: chat}]";
    let one_rule = "[{group: gateway.networking.k8s.io, kind: HTTPRoute, name: chat, sectionName: ws}]";
    let missing = "[{group: gateway.networking.k8s.io, kind: HTTPRoute, name: nope}]";
    let policies = [
        websocket_policy(
            "route-wide",
            "2026-01-01T00:00:00Z",
            whole,
            "  idleTimeout: 5m\n  maxMessageBytes: 1024\n",
        ),
        websocket_policy(
            "ws-rule",
            "2026-01-02T00:00:00Z",
            one_rule,
            "  idleTimeout: 10m\n  pingInterval: 0s\n",
        ),
        websocket_policy("late", "2026-01-03T00:00:00Z", whole, "  idleTimeout: 1m\n"),
        websocket_policy("lost", "2026-01-01T00:00:00Z", missing, "  idleTimeout: 1m\n"),
        websocket_policy("bad", "2026-01-01T00:00:00Z", one_rule, "  idleTimeout: soon\n"),
    ];
    let built = gateway_built(&format!("{route}\n---\n{}", policies.join("\n---\n")));
    let policy = |path: &str| built.table.lookup("chat.com", path, |_| None).expect("served").policy.clone();
    let ws = policy("/ws");
    assert_eq!(
        (ws.idle_timeout, ws.ping_interval, ws.max_message_bytes),
        (After(Duration::from_secs(600)), Disabled, None)
    );
    let poll = policy("/poll");
    assert_eq!(
        (poll.idle_timeout, poll.ping_interval, poll.max_message_bytes),
        (After(Duration::from_secs(300)), After(Duration::from_secs(30)), Some(1024)),
        "the route-wide policy, over the WebSocketRoute defaults"
    );
    assert_eq!(policy("/poll").https_redirect, crate::model::HttpsRedirect::Never);
    let policy_problems: Vec<String> = problems_about(&built, "WebSocketPolicy");
    assert_eq!(
        policy_problems,
        [
            "Invalid WebSocketPolicy infra/bad spec.idleTimeout",
            "Conflict WebSocketPolicy infra/late spec.targetRefs[0]",
            "UnresolvedRef WebSocketPolicy infra/lost spec.targetRefs[0]",
        ]
    );
}

#[test]
fn an_ingress_and_an_http_route_on_one_host_and_path_conflict_on_the_listeners_both_serve() {
    let ingress = |created: &str| {
        simple("web-ingress", "a.com", "Prefix", "/").replacen(
            "metadata:\n  name: web-ingress\n",
            &format!("metadata:\n  name: web-ingress\n  creationTimestamp: \"{created}\"\n"),
            1,
        )
    };
    let route = |created: &str| {
        simple_route("infra", "r", "[{name: same}]", "[a.com]").replacen(
            "namespace: infra}",
            &format!("namespace: infra, creationTimestamp: \"{created}\"}}"),
            1,
        )
    };
    let older_ingress = gateway_built(&format!(
        "{}\n---\n{}",
        ingress("2026-01-01T00:00:00Z"),
        route("2026-02-01T00:00:00Z")
    ));
    assert_eq!(
        older_ingress.table.summary(),
        ["a.com Prefix / -> 10.0.0.1:8080 (ingress/default/web-ingress/0/0)"]
    );
    assert_eq!(problems_about(&older_ingress, "Conflict "), ["Conflict HTTPRoute infra/r spec.rules[0]"]);
    let older_route = gateway_built(&format!(
        "{}\n---\n{}",
        ingress("2026-03-01T00:00:00Z"),
        route("2026-02-01T00:00:00Z")
    ));
    assert_eq!(
        older_route.table.summary(),
        [
            "a.com Prefix / on=plain -> 10.0.0.1:8080 (httproute/infra/r/0/0)",
            "a.com Prefix / on=tls -> 10.0.0.1:8080 (ingress/default/web-ingress/0/0)",
        ],
        "the route takes plain HTTP, the Ingress keeps HTTPS"
    );
    assert_eq!(
        problems_about(&older_route, "Conflict "),
        ["Conflict Ingress default/web-ingress spec.rules[0].http.paths[0]"]
    );
}

#[test]
fn strict_host_ownership_leaves_gateway_api_objects_to_allowed_routes() {
    let gateway = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shared, namespace: infra, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  gatewayClassName: hawser
  listeners:
  - {name: https, port: 443, protocol: HTTPS, hostname: shared.com, allowedRoutes: {namespaces: {from: All}}, tls: {certificateRefs: [{name: cert}]}}
---
apiVersion: v1
kind: Secret
metadata: {name: cert, namespace: infra}
type: kubernetes.io/tls
"#;
    let route = simple_route("web", "r", "[{name: shared, namespace: infra}]", "[]");
    let objects = parse_documents(&format!(
        "{SERVICES}\n---\n{GATEWAYS}\n---\n{GRANT_WEB_TO_ROUTES}\n---\n{gateway}\n---\n{route}"
    ))
    .unwrap();
    let config = BuildConfig { host_ownership: HostOwnership::Namespace, ..BuildConfig::default() };
    let built = build(&Snapshot::new(objects), &config);
    assert_eq!(built.table.summary(), ["shared.com Prefix / on=tls -> 10.0.0.1:8080 (httproute/web/r/0/0)"]);
    assert!(problems(&built).iter().all(|p| !p.contains("HTTPRoute web/r")), "{:?}", problems(&built));
}

#[test]
fn listener_facts_say_conflicts_and_kinds_hawser_does_not_serve() {
    let gateway = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: busy, namespace: infra}
spec:
  gatewayClassName: hawser
  listeners:
  - {name: first, port: 80, protocol: HTTP, hostname: a.com}
  - {name: second, port: 80, protocol: HTTP, hostname: a.com}
  - {name: mixed, port: 80, protocol: HTTP, hostname: b.com, allowedRoutes: {kinds: [{kind: HTTPRoute}, {kind: TCPRoute}]}}
  - {name: tcp-only, port: 80, protocol: HTTP, hostname: c.com, allowedRoutes: {kinds: [{kind: TCPRoute}]}}
"#;
    let built = gateway_built(gateway);
    let object = ObjectRef::new(Kind::Gateway, "infra", "busy");
    let Some(Facts::Gateway(facts)) = built.facts.get(&object).map(|f| &**f) else {
        panic!("no facts for {object}")
    };
    let summary: Vec<(&str, bool, bool, Option<&str>)> = facts
        .listeners
        .iter()
        .map(|l| {
            (
                l.name.as_str(),
                l.conflicted.is_some(),
                l.takes_http_routes,
                l.resolved.as_ref().err().map(|(r, _)| *r),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("first", true, true, None),
            ("second", true, true, None),
            ("mixed", false, true, Some("InvalidRouteKinds")),
            ("tcp-only", false, false, Some("InvalidRouteKinds")),
        ]
    );
}

#[test]
fn the_share_of_invalid_backends_fails_and_the_rest_is_served() {
    let route = http_route(
        "infra",
        "r",
        r#"  parentRefs: [{name: same}]
  hostnames: [half.com]
  rules:
  - backendRefs: [{name: web, namespace: default, port: 80}, {name: nowhere, port: 80}]
"#,
    );
    let built = gateway_built(&route);
    let served = built.table.lookup("half.com", "/", |_| None).expect("served");
    let fails = (0..10).filter(|_| served.backend.fails_now()).count();
    assert_eq!(fails, 5, "weights 1 and 1: every other request gets 500");
    assert_eq!(served.policy.rewrites.status, None, "a valid backend remains");
    assert_eq!(
        built.table.summary(),
        ["half.com Prefix / on=plain -> 10.0.0.1:8080 + 500 for 50% (httproute/infra/r/0/0)"]
    );
}

#[test]
fn of_two_backend_tls_policies_for_one_service_the_older_applies_and_the_other_is_conflicted() {
    let policy = |name: &str, created: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {{name: {name}, creationTimestamp: \"{created}\"}}\nspec:\n  targetRefs: [{{group: \"\", kind: Service, name: web}}]\n  validation: {{hostname: web.internal, caCertificateRefs: [{{group: \"\", kind: ConfigMap, name: ca}}]}}\n"
        )
    };
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = serde_json::to_string(&params.self_signed(&key).unwrap().pem()).unwrap();
    let built = gateway_built(&format!(
        "{}\n---\n{}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ca}}\ndata:\n  ca.crt: {ca}\n",
        policy("second", "2026-02-01T00:00:00Z"),
        policy("first", "2026-01-01T00:00:00Z")
    ));
    let verdict = |name: &str| match built
        .facts
        .get(&ObjectRef::new(Kind::BackendTlsPolicy, "default", name))
        .map(|f| &**f)
    {
        Some(Facts::BackendTls(facts)) => facts.targets[0].accepted.clone().err().map(|(reason, _)| reason),
        other => panic!("no facts for {name}: {other:?}"),
    };
    assert_eq!(verdict("first"), None, "the older applies");
    assert_eq!(verdict("second"), Some("Conflicted"));
}
