//! Table tests of the translation: input manifests → expected routes, policies and reports.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::*;
use crate::model::Timeout::{After, Disabled};
use crate::model::{HashKey, LoadBalancing, NamespacedName, Policy};
use crate::source::parse_documents;

mod affinity;
mod expiry;
mod gateway;
mod incremental;
mod ownership;
mod requests;

/// Services every case can point at: `web` (named port `http` 80 → 8080, one ready and one
/// terminating endpoint), `api` (unnamed port 81 → 9090), `empty` (no endpoints).
const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.0.0.1]
  conditions: {ready: true}
- addresses: [10.0.0.2]
  conditions: {ready: false, serving: true, terminating: true}
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec: {ports: [{port: 81}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: api-1, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
ports: [{port: 9090}]
endpoints:
- addresses: [10.0.1.1]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec: {ports: [{name: http, port: 80}]}
"#;

fn built(yaml: &str) -> Built {
    let objects = parse_documents(&format!("{SERVICES}\n---\n{yaml}")).unwrap();
    build(&Snapshot::new(objects), &BuildConfig::default())
}

fn routes(yaml: &str) -> Vec<String> {
    built(yaml).table.summary()
}

/// Reports other than Info, as `Reason field` strings.
fn problems(built: &Built) -> Vec<String> {
    built
        .reports
        .iter()
        .filter(|r| r.level() != Level::Info)
        .map(|r| format!("{:?} {} {}", r.reason, r.object, r.field))
        .collect()
}

fn ingress(name: &str, body: &str) -> String {
    format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n{body}")
}

/// An Ingress of class hawser with one rule: `host`, one path to web:http.
fn simple(name: &str, host: &str, path_type: &str, path: &str) -> String {
    let host = if host.is_empty() { String::new() } else { format!("host: {host}\n    ") };
    ingress(
        name,
        &format!(
            "spec:\n  ingressClassName: hawser\n  rules:\n  - {host}http:\n      paths:\n      - {{path: {path}, pathType: {path_type}, backend: {{service: {{name: web, port: {{name: http}}}}}}}}\n"
        ),
    )
}

fn with_annotations(name: &str, annotations: &[(&str, &str)]) -> String {
    let list: String = annotations.iter().map(|(k, v)| format!("    {k}: {v:?}\n")).collect();
    let doc = simple(name, "a.com", "Prefix", "/");
    doc.replacen("metadata:\n", &format!("metadata:\n  annotations:\n{list}"), 1)
}

fn policy_of(built: &Built) -> Policy {
    built.table.lookup("a.com", "/", |_| None).expect("route").policy.as_ref().clone()
}

#[test]
fn ingress_paths_hosts_and_path_types() {
    let cases: &[(&str, Vec<&str>)] = &[
        (
            &simple("i", "a.com", "Prefix", "/foo"),
            vec!["a.com Prefix /foo -> 10.0.0.1:8080 (ingress/default/i/0/0)"],
        ),
        (
            &simple("i", "a.com", "Exact", "/foo"),
            vec!["a.com Exact /foo -> 10.0.0.1:8080 (ingress/default/i/0/0)"],
        ),
        (
            &simple("i", "a.com", "ImplementationSpecific", "/x"),
            vec!["a.com Prefix /x -> 10.0.0.1:8080 (ingress/default/i/0/0)"],
        ),
        (&simple("i", "", "Prefix", "/"), vec!["* Prefix / -> 10.0.0.1:8080 (ingress/default/i/0/0)"]),
        (
            &simple("i", "\"*.a.com\"", "Prefix", "/"),
            vec!["*.a.com Prefix / -> 10.0.0.1:8080 (ingress/default/i/0/0)"],
        ),
        (&simple("i", "a.com", "Regex", "/"), vec![]),
        (&simple("i", "A.com", "Prefix", "/"), vec![]),
        (&simple("i", "a.*.com", "Prefix", "/"), vec![]),
        (&simple("i", "a.com", "Prefix", "nope"), vec![]),
    ];
    for (yaml, want) in cases {
        assert_eq!(&routes(yaml), want, "{yaml}");
    }
    assert_eq!(
        problems(&built(&simple("i", "a.com", "Regex", "/"))),
        vec!["Invalid Ingress default/i spec.rules[0].http.paths[0].pathType"]
    );
    assert_eq!(
        problems(&built(&simple("i", "A.com", "Prefix", "/"))),
        vec!["Invalid Ingress default/i spec.rules[0].host"]
    );
}

/// An IngressClass named `name` of `controller`, the cluster's default or not; ends with `---`.
fn ingress_class_object(name: &str, controller: &str, default: bool) -> String {
    let annotation =
        if default { "  annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}\n" } else { "" };
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: {name}\n{annotation}spec: {{controller: {controller}}}\n---\n"
    )
}

/// Every timeout written as zero: off where a timeout can be off, otherwise refused (and the
/// default kept), never "at once".
#[test]
fn zero_turns_a_timeout_off_or_is_refused() {
    type Check = fn(&Policy) -> bool;
    let defaults = Policy::default();
    let off: &[(&str, &str, Check)] = &[
        ("hawser.dev/idle-timeout", "0s", |p| p.idle_timeout == Disabled),
        ("hawser.dev/max-connection-duration", "0s", |p| p.max_connection_duration == Disabled),
        ("hawser.dev/ping-interval", "0s", |p| p.ping_interval == Disabled),
        ("hawser.dev/idle-timeout", "0", |p| p.idle_timeout == Disabled),
        // nginx's read timeout is also its response wait, which cannot be off: only the idle
        // timeout goes.
        ("nginx.ingress.kubernetes.io/proxy-read-timeout", "0", |p| {
            p.idle_timeout == Disabled && p.handshake_timeout == Policy::default().handshake_timeout
        }),
        ("nginx.ingress.kubernetes.io/proxy-send-timeout", "0s", |p| p.idle_timeout == Disabled),
    ];
    for (key, value, check) in off {
        let built = built(&with_annotations("i", &[(key, value)]));
        assert!(check(&policy_of(&built)), "{key}: {value} turns it off");
        assert_eq!(problems(&built), Vec::<String>::new(), "{key}: {value}");
    }
    let refused = [
        ("hawser.dev/handshake-timeout", "0s"),
        ("hawser.dev/response-timeout", "0s"),
        ("hawser.dev/connect-timeout", "0s"),
        ("hawser.dev/ping-timeout", "0"),
        ("nginx.ingress.kubernetes.io/proxy-connect-timeout", "0"),
        ("nginx.ingress.kubernetes.io/client-body-timeout", "0"),
    ];
    for (key, value) in refused {
        let built = built(&with_annotations("i", &[(key, value)]));
        assert_eq!(problems(&built), vec![format!("Invalid Ingress default/i {key}")], "{key}: {value}");
        assert_eq!(policy_of(&built), defaults, "{key}: the defaults stay");
    }
    let route = |field: &str| {
        format!(
            "apiVersion: hawser.dev/v1alpha1\nkind: WebSocketRoute\nmetadata: {{name: ws}}\nspec:\n  hostnames: [a.com]\n  rules:\n  - backends: [{{name: api, port: 81}}]\n    {field}: 0s\n"
        )
    };
    for field in ["handshakeTimeout", "responseTimeout", "pingTimeout", "sessionAffinity: {cookie: {maxAge"] {
        let yaml = route(field).replace("{cookie: {maxAge: 0s", "{cookie: {maxAge: 0s}}");
        let field = field.split(':').next().unwrap_or_default();
        let want = format!("Invalid WebSocketRoute default/ws spec.rules[0].{field}");
        assert_eq!(problems(&built(&yaml)), vec![want], "{field}");
    }
    for field in ["idleTimeout", "maxConnectionDuration", "pingInterval"] {
        let built = built(&route(field));
        assert!(problems(&built).is_empty(), "{field} 0s: never");
        let policy = &built.table.lookup("a.com", "/", |_| None).expect("served").policy;
        let timeouts = [policy.idle_timeout, policy.max_connection_duration, policy.ping_interval];
        assert!(timeouts.contains(&Disabled), "{field} 0s: off");
    }
}

#[test]
fn ingress_class_selection() {
    let class = ingress_class_object;
    let classless = simple("i", "a.com", "Prefix", "/").replace("  ingressClassName: hawser\n", "");
    let named = |class: &str| {
        simple("i", "a.com", "Prefix", "/")
            .replace("ingressClassName: hawser", &format!("ingressClassName: {class}"))
    };
    let legacy = |class: &str| {
        classless.replacen(
            "metadata:\n",
            &format!("metadata:\n  annotations: {{kubernetes.io/ingress.class: {class}}}\n"),
            1,
        )
    };
    let cases = [
        ("ingressClassName hawser, no IngressClass object", named("hawser"), true),
        ("another controller's class", named("nginx"), false),
        (
            "our IngressClass under another name",
            format!("{}{}", class("edge", CONTROLLER_NAME, false), named("edge")),
            true,
        ),
        (
            "a class named edge of another controller",
            format!("{}{}", class("edge", "k8s.io/ingress-nginx", false), named("edge")),
            false,
        ),
        ("no class, no default", classless.clone(), false),
        (
            "no class, our class is the default",
            format!("{}{}", class("edge", CONTROLLER_NAME, true), classless),
            true,
        ),
        (
            "no class, another controller's default",
            format!("{}{}", class("nginx", "k8s.io/ingress-nginx", true), classless),
            false,
        ),
        ("legacy annotation naming hawser", legacy("hawser"), true),
        ("legacy annotation naming nginx", legacy("nginx"), false),
    ];
    for (case, yaml, served) in cases {
        assert_eq!(!routes(&yaml).is_empty(), served, "{case}");
    }
}

#[test]
fn two_installs_with_their_own_controller_names_serve_disjoint_classes() {
    let ws = |name: &str, class: &str| {
        let class = if class.is_empty() { String::new() } else { format!("  ingressClassName: {class}\n") };
        format!(
            "---\napiVersion: hawser.dev/v1alpha1\nkind: WebSocketRoute\nmetadata: {{name: {name}}}\nspec:\n{class}  hostnames: [{name}.com]\n  rules:\n  - backends: [{{name: web, port: 80}}]\n"
        )
    };
    let with_class = |name: &str, class: &str| {
        simple(name, &format!("{name}.com"), "Prefix", "/")
            .replace("ingressClassName: hawser", &format!("ingressClassName: {class}"))
    };
    let yaml = [
        ingress_class_object("hawser", CONTROLLER_NAME, false),
        ingress_class_object("internal", "example.com/internal", false),
        with_class("public", "hawser"),
        with_class("private", "internal"),
        ws("chat", ""),
        ws("ops", "internal"),
    ]
    .join("\n---\n");
    let objects = parse_documents(&format!("{SERVICES}\n---\n{yaml}")).unwrap();
    let snapshot = Snapshot::new(objects);
    let served = |config: BuildConfig| {
        build(&snapshot, &config).served.into_iter().map(|o| o.name).collect::<Vec<_>>()
    };
    assert_eq!(served(BuildConfig::default()), ["public", "chat"]);
    let internal = BuildConfig {
        controller_name: "example.com/internal".into(),
        ingress_class: "hawser".into(),
        ..BuildConfig::default()
    };
    assert_eq!(served(internal), ["private", "ops"], "the class named hawser belongs to the other install");
}

#[test]
fn default_backend_serves_the_catch_all_and_rootless_hosts() {
    let yaml = ingress(
        "i",
        "spec:\n  ingressClassName: hawser\n  defaultBackend: {service: {name: api, port: {number: 81}}}\n  rules:\n  - host: a.com\n    http:\n      paths:\n      - {path: /web, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}\n  - host: b.com\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n",
    );
    assert_eq!(
        routes(&yaml),
        vec![
            "a.com Prefix /web -> 10.0.0.1:8080 (ingress/default/i/0/0)",
            "a.com Prefix / -> 10.0.1.1:9090 (ingress/default/i/default)",
            "b.com Prefix / -> 10.0.0.1:8080 (ingress/default/i/1/0)",
            "* Prefix / -> 10.0.1.1:9090 (ingress/default/i/default)",
        ]
    );
    // An explicit catch-all path of another Ingress beats a default backend.
    let explicit = simple("z-explicit", "", "Prefix", "/");
    let both = routes(&format!("{yaml}---\n{explicit}"));
    assert!(
        both.contains(&"* Prefix / -> 10.0.0.1:8080 (ingress/default/z-explicit/0/0)".to_owned()),
        "{both:?}"
    );
}

#[test]
fn service_ports_and_endpoint_conditions() {
    let port =
        |port: &str| simple("i", "a.com", "Prefix", "/").replace("name: web, port: {name: http}", port);
    let cases = [
        ("name: web, port: {name: http}", "-> 10.0.0.1:8080", vec![]),
        ("name: web, port: {number: 80}", "-> 10.0.0.1:8080", vec![]),
        ("name: api, port: {number: 81}", "-> 10.0.1.1:9090", vec![]),
        (
            "name: web, port: {number: 81}",
            "-> (no ready endpoint)",
            vec!["UnresolvedRef Ingress default/i spec.rules[0].http.paths[0].backend.service"],
        ),
        (
            "name: web, port: {name: grpc}",
            "-> (no ready endpoint)",
            vec!["UnresolvedRef Ingress default/i spec.rules[0].http.paths[0].backend.service"],
        ),
        (
            "name: nope, port: {number: 80}",
            "-> (no ready endpoint)",
            vec!["UnresolvedRef Ingress default/i spec.rules[0].http.paths[0].backend.service"],
        ),
        (
            "name: empty, port: {name: http}",
            "-> (no ready endpoint)",
            vec!["NoEndpoints Ingress default/i spec.rules[0].http.paths[0].backend.service"],
        ),
    ];
    for (backend, target, want) in cases {
        let built = built(&port(backend));
        assert!(built.table.summary()[0].contains(target), "{backend}: {:?}", built.table.summary());
        assert_eq!(problems(&built), want, "{backend}");
    }
}

#[test]
fn conflicts_go_to_the_oldest_and_websocket_routes_beat_ingresses() {
    let dated = |name: &str, time: &str| {
        simple(name, "a.com", "Prefix", "/").replacen(
            "metadata:\n",
            &format!("metadata:\n  creationTimestamp: \"{time}\"\n"),
            1,
        )
    };
    let by_age = built(&format!(
        "{}---\n{}",
        dated("young", "2026-05-01T00:00:00Z"),
        dated("old", "2025-01-01T00:00:00Z")
    ));
    assert_eq!(by_age.table.summary(), vec!["a.com Prefix / -> 10.0.0.1:8080 (ingress/default/old/0/0)"]);
    assert_eq!(problems(&by_age), vec!["Conflict Ingress default/young spec.rules[0].http.paths[0]"]);
    // Undated (manifest files): namespace/name order.
    let built_undated = routes(&format!(
        "{}---\n{}",
        simple("b", "a.com", "Prefix", "/"),
        simple("a", "a.com", "Prefix", "/")
    ));
    assert_eq!(built_undated, vec!["a.com Prefix / -> 10.0.0.1:8080 (ingress/default/a/0/0)"]);
    let route = "apiVersion: hawser.dev/v1alpha1\nkind: WebSocketRoute\nmetadata: {name: ws}\nspec:\n  hostnames: [a.com]\n  rules:\n  - backends: [{name: api, port: 81}]\n";
    let by_kind = built(&format!("{}---\n{route}", dated("old", "2020-01-01T00:00:00Z")));
    assert_eq!(by_kind.table.summary(), vec!["a.com Prefix / -> 10.0.1.1:9090 (wsroute/default/ws/0/0)"]);
    assert_eq!(problems(&by_kind), vec!["Conflict Ingress default/old spec.rules[0].http.paths[0]"]);
}

/// A `kubernetes.io/tls` Secret holding a self-signed certificate for `names`, valid from
/// `from` to `until` (years).
fn tls_secret(name: &str, names: &[&str], (from, until): (i32, i32)) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(until, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let (crt, key) =
        (serde_json::to_string(&cert.pem()).unwrap(), serde_json::to_string(&key.serialize_pem()).unwrap());
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: {crt}\n  tls.key: {key}\n---\n"
    )
}

const VALID: (i32, i32) = (2020, 2999);

fn tls_ingress(name: &str, host: &str, secret: &str) -> String {
    simple(name, &format!("\"{host}\""), "Prefix", "/")
        .replace("  rules:", &format!("  tls: [{{hosts: [\"{host}\"], secretName: {secret}}}]\n  rules:"))
}

fn served_certificate(built: &Built, host: &str) -> bool {
    built.table.virtual_host(host).and_then(|v| v.tls.as_ref()).is_some_and(|t| t.certificate.is_some())
}

#[test]
fn tls_secrets_become_certificates_of_their_hosts() {
    let built_ok =
        built(&format!("{}{}", tls_secret("a-tls", &["a.com"], VALID), tls_ingress("i", "a.com", "a-tls")));
    assert_eq!(built_ok.tls.get("a.com"), Some(&NamespacedName::new("default", "a-tls")));
    assert!(problems(&built_ok).is_empty(), "{:?}", problems(&built_ok));
    assert!(served_certificate(&built_ok, "a.com"));
    assert!(built_ok.table.certificate("a.com").is_some());
    assert!(built_ok.table.certificate("b.com").is_none(), "no default certificate configured");
    let wildcard =
        built(&format!("{}{}", tls_secret("w", &["*.a.com"], VALID), tls_ingress("i", "*.a.com", "w")));
    assert!(wildcard.table.certificate("x.a.com").is_some());
    assert!(wildcard.table.certificate("a.com").is_none());
}

#[test]
fn unusable_secrets_are_reported_and_fall_back_without_harming_other_hosts() {
    let cases = [
        ("missing", String::new(), "UnresolvedRef"),
        ("expired", tls_secret("bad", &["a.com"], (2000, 2001)), "Invalid"),
        ("not yet valid", tls_secret("bad", &["a.com"], (2990, 2999)), "Invalid"),
        ("mismatched", tls_secret("bad", &["other.com"], VALID), "Invalid"),
        ("malformed", "apiVersion: v1\nkind: Secret\nmetadata: {name: bad}\nstringData: {tls.crt: nonsense, tls.key: nonsense}\n---\n".to_owned(), "Invalid"),
        ("empty", "apiVersion: v1\nkind: Secret\nmetadata: {name: bad}\ndata: {}\n---\n".to_owned(), "Invalid"),
    ];
    let good = format!("{}{}", tls_secret("b-tls", &["b.com"], VALID), tls_ingress("good", "b.com", "b-tls"));
    for (case, secret, reason) in cases {
        let built = built(&format!("{secret}{good}---\n{}", tls_ingress("i", "a.com", "bad")));
        assert_eq!(
            problems(&built),
            vec![format!(
                "{reason} Ingress default/i spec.tls[0]{}",
                if reason == "UnresolvedRef" { ".secretName" } else { "" }
            )],
            "{case}"
        );
        let a = built
            .table
            .virtual_host("a.com")
            .and_then(|v| v.tls.as_ref())
            .expect("a.com keeps its TLS setting");
        assert!(a.certificate.is_none(), "{case}: the bad certificate is served");
        assert!(served_certificate(&built, "b.com"), "{case} broke another host");
        assert_eq!(built.table.summary().len(), 2, "{case}: plain HTTP still routes");
    }
}

#[test]
fn the_default_certificate_comes_from_a_secret() {
    let config = BuildConfig {
        default_certificate: Some(NamespacedName::new("default", "fallback")),
        ..BuildConfig::default()
    };
    let objects = parse_documents(&tls_secret("fallback", &["anything.example"], VALID)).unwrap();
    let built = build(&Snapshot::new(objects), &config);
    assert!(built.table.certificate("unknown.example").is_some());
    let missing = build(&Snapshot::default(), &config);
    assert_eq!(problems(&missing), vec!["UnresolvedRef Secret default/fallback --default-ssl-certificate"]);
}

#[test]
fn redirect_annotations() {
    use crate::model::HttpsRedirect;
    let cases = [
        (vec![], HttpsRedirect::IfTls),
        (vec![("nginx.ingress.kubernetes.io/ssl-redirect", "false")], HttpsRedirect::Never),
        (vec![("nginx.ingress.kubernetes.io/force-ssl-redirect", "true")], HttpsRedirect::Always),
        (
            vec![
                ("nginx.ingress.kubernetes.io/force-ssl-redirect", "true"),
                ("nginx.ingress.kubernetes.io/ssl-redirect", "false"),
            ],
            HttpsRedirect::Always,
        ),
        (
            vec![("nginx.ingress.kubernetes.io/ssl-redirect", "false"), ("hawser.dev/ssl-redirect", "true")],
            HttpsRedirect::IfTls,
        ),
        (vec![("hawser.dev/force-ssl-redirect", "true")], HttpsRedirect::Always),
    ];
    for (annotations, want) in cases {
        assert_eq!(
            policy_of(&built(&with_annotations("i", &annotations))).https_redirect,
            want,
            "{annotations:?}"
        );
    }
}

#[test]
fn hawser_annotations() {
    type Check = Box<dyn Fn(&Policy) -> bool>;
    let cases: Vec<(&str, &str, Check)> = vec![
        ("idle-timeout", "2h", Box::new(|p| p.idle_timeout == After(Duration::from_secs(7200)))),
        ("idle-timeout", "0s", Box::new(|p| p.idle_timeout == Disabled)),
        ("handshake-timeout", "5s", Box::new(|p| p.handshake_timeout == Duration::from_secs(5))),
        ("response-timeout", "45s", Box::new(|p| p.response_timeout == Duration::from_secs(45))),
        ("connect-timeout", "500ms", Box::new(|p| p.connect_timeout == Duration::from_millis(500))),
        (
            "max-connection-duration",
            "24h",
            Box::new(|p| p.max_connection_duration == After(Duration::from_secs(86400))),
        ),
        (
            "load-balancing",
            "least-connections",
            Box::new(|p| p.load_balancing == LoadBalancing::LeastConnections),
        ),
        ("allowed-origins", "https://a.com, https://*.b.com", Box::new(|p| p.allowed_origins.len() == 2)),
        ("source-ranges", "10.0.0.0/8,192.168.0.0/16", Box::new(|p| p.source_ranges.len() == 2)),
        ("max-connections", "100", Box::new(|p| p.max_connections == Some(100))),
        ("max-connections-per-client", "5", Box::new(|p| p.max_connections_per_client == Some(5))),
        ("ping-interval", "20s", Box::new(|p| p.ping_interval == After(Duration::from_secs(20)))),
        ("ping-interval", "0s", Box::new(|p| p.ping_interval == Disabled)),
        ("ping-timeout", "5s", Box::new(|p| p.ping_timeout == Duration::from_secs(5))),
        ("max-message-bytes", "65536", Box::new(|p| p.max_message_bytes == Some(65536))),
        ("rebalance", "true", Box::new(|p| p.rebalance == Some(crate::model::Rebalance::default()))),
        ("rebalance", "false", Box::new(|p| p.rebalance.is_none())),
    ];
    // Off by default on Ingresses.
    let plain = policy_of(&built(&with_annotations("i", &[])));
    assert_eq!((plain.ping_interval, plain.max_message_bytes, plain.rebalance), (Disabled, None, None));
    for (key, value) in [("ping-timeout", "0s"), ("max-message-bytes", "0"), ("rebalance", "yes")] {
        let built = built(&with_annotations("i", &[(&format!("hawser.dev/{key}"), value)]));
        assert_eq!(problems(&built), vec![format!("Invalid Ingress default/i hawser.dev/{key}")], "{key}");
    }
    for (key, value, check) in cases {
        let built = built(&with_annotations("i", &[(&format!("hawser.dev/{key}"), value)]));
        assert!(check(&policy_of(&built)), "{key}: {value}");
        assert!(problems(&built).is_empty(), "{key}: {:?}", problems(&built));
    }
    let hashed = built(&with_annotations(
        "i",
        &[("hawser.dev/load-balancing", "consistent-hash"), ("hawser.dev/hash-on", "header:X-User")],
    ));
    assert_eq!(
        policy_of(&hashed).load_balancing,
        LoadBalancing::ConsistentHash(HashKey::Header("x-user".into()))
    );
}

#[test]
fn bad_annotation_values_are_reported_and_security_ones_fail_closed() {
    let ignored =
        ["idle-timeout=soon", "max-connections=0", "load-balancing=random", "load-balancing=consistent-hash"];
    for pair in ignored {
        let (key, value) = pair.split_once('=').unwrap();
        let built = built(&with_annotations("i", &[(&format!("hawser.dev/{key}"), value)]));
        assert_eq!(policy_of(&built), Policy::default(), "{pair} changed the policy");
        assert_eq!(problems(&built), vec![format!("Invalid Ingress default/i hawser.dev/{key}")], "{pair}");
    }
    for pair in [
        "hawser.dev/source-ranges=10.0.0.0/33",
        "hawser.dev/allowed-origins=evil",
        "nginx.ingress.kubernetes.io/whitelist-source-range=nope",
    ] {
        let (key, value) = pair.split_once('=').unwrap();
        let built = built(&with_annotations("i", &[(key, value)]));
        assert_eq!(
            built.table.summary(),
            vec!["a.com Prefix / -> (refused: 503) (ingress/default/i/0/0)"],
            "{pair}"
        );
        assert!(built.has_errors());
    }
    let unknown = built(&with_annotations("i", &[("hawser.dev/idle-timout", "1h")]));
    assert_eq!(problems(&unknown), vec!["Ignored Ingress default/i hawser.dev/idle-timout"]);
}

#[test]
fn nginx_annotations_are_translated() {
    let nginx = |pairs: &[(&str, &str)]| {
        let keyed: Vec<(String, &str)> =
            pairs.iter().map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), *v)).collect();
        let refs: Vec<(&str, &str)> = keyed.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        built(&with_annotations("i", &refs))
    };
    let timeouts = nginx(&[
        ("proxy-read-timeout", "3600"),
        ("proxy-send-timeout", "120"),
        ("proxy-connect-timeout", "2"),
    ]);
    let policy = policy_of(&timeouts);
    assert_eq!(policy.idle_timeout, After(Duration::from_secs(3600)));
    assert_eq!(policy.handshake_timeout, Duration::from_secs(3600));
    assert_eq!(policy.response_timeout, Duration::from_secs(3600));
    assert_eq!(policy.connect_timeout, Duration::from_secs(2));
    let send_only = policy_of(&nginx(&[("proxy-send-timeout", "30")]));
    assert_eq!(send_only.idle_timeout, After(Duration::from_secs(30)));
    let cases: Vec<(&str, &str, LoadBalancing)> = vec![
        ("upstream-hash-by", "$remote_addr", LoadBalancing::ConsistentHash(HashKey::SourceIp)),
        (
            "upstream-hash-by",
            "$http_x_user_id",
            LoadBalancing::ConsistentHash(HashKey::Header("x-user-id".into())),
        ),
        ("upstream-hash-by", "$cookie_sid", LoadBalancing::ConsistentHash(HashKey::Cookie("sid".into()))),
        ("upstream-hash-by", "$arg_room", LoadBalancing::ConsistentHash(HashKey::Query("room".into()))),
        ("load-balance", "ewma", LoadBalancing::LeastConnections),
        ("load-balance", "round_robin", LoadBalancing::RoundRobin),
    ];
    for (key, value, want) in cases {
        assert_eq!(policy_of(&nginx(&[(key, value)])).load_balancing, want, "{key}: {value}");
    }
    let ranges = policy_of(&nginx(&[("allowlist-source-range", "10.0.0.0/8, 172.16.0.0/12")]));
    assert_eq!(ranges.source_ranges.len(), 2);
    let denied = nginx(&[("denylist-source-range", "192.0.2.0/24")]);
    assert_eq!(policy_of(&denied).denied_ranges, vec!["192.0.2.0/24".parse::<ipnet::IpNet>().unwrap()]);
    assert!(!policy_of(&denied).refused);
    let unreadable = nginx(&[("denylist-source-range", "10.0.0.0/33")]);
    assert!(policy_of(&unreadable).refused, "an unreadable deny list fails closed");
    assert_eq!(policy_of(&nginx(&[("limit-connections", "7")])).max_connections_per_client, Some(7));
    let bad_hash = nginx(&[("upstream-hash-by", "$request_uri$host")]);
    assert_eq!(
        problems(&bad_hash),
        vec!["Invalid Ingress default/i nginx.ingress.kubernetes.io/upstream-hash-by"]
    );
    let unknown = nginx(&[("server-alias", "b.com"), ("backend-protocol", "GRPC")]);
    assert_eq!(
        problems(&unknown),
        vec![
            "Unsupported Ingress default/i nginx.ingress.kubernetes.io/backend-protocol",
            "Ignored Ingress default/i nginx.ingress.kubernetes.io/server-alias"
        ]
    );
    let reasons: Vec<Reason> = timeouts.reports.iter().map(|r| r.reason).collect();
    assert!(reasons.iter().all(|r| *r == Reason::Translated || *r == Reason::Honored), "{reasons:?}");
}

#[test]
fn hawser_annotations_win_over_nginx_ones() {
    let built = built(&with_annotations(
        "i",
        &[
            ("nginx.ingress.kubernetes.io/proxy-read-timeout", "60"),
            ("hawser.dev/idle-timeout", "2h"),
            ("nginx.ingress.kubernetes.io/load-balance", "ewma"),
            ("hawser.dev/load-balancing", "round-robin"),
        ],
    ));
    let policy = policy_of(&built);
    assert_eq!(policy.idle_timeout, After(Duration::from_secs(7200)));
    assert_eq!(policy.load_balancing, LoadBalancing::RoundRobin);
}

const ROUTE: &str = r#"
apiVersion: hawser.dev/v1alpha1
kind: WebSocketRoute
metadata: {name: chat, namespace: default}
spec:
  hostnames: [chat.a.com, "*.chat.b.com"]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /ws}
      headers: [{name: X-Tenant, value: acme}]
    - path: {type: Exact, value: /live}
    backends:
    - {name: web, port: http, weight: 3}
    - {name: api, port: 81, weight: 1}
  - matches: [{path: {value: /slow}}]
    backends: [{name: web, port: 80}]
    idleTimeout: 90s
    handshakeTimeout: 2s
    responseTimeout: 25s
    maxConnectionDuration: 24h
    loadBalancing: {strategy: ConsistentHash, hashOn: {query: room}}
    allowedOrigins: [https://chat.a.com]
    sourceRanges: [10.0.0.0/8]
    maxConnections: 100
    maxConnectionsPerClient: 3
"#;

#[test]
fn websocket_routes_with_defaults_weights_and_policy() {
    let built = built(ROUTE);
    assert_eq!(
        built.table.summary(),
        vec![
            "chat.a.com Exact /live -> 10.0.0.1:8080*3, 10.0.1.1:9090 (wsroute/default/chat/0/1)",
            "chat.a.com Prefix /slow -> 10.0.0.1:8080 (wsroute/default/chat/1/0)",
            "chat.a.com Prefix /ws [x-tenant=acme] -> 10.0.0.1:8080*3, 10.0.1.1:9090 (wsroute/default/chat/0/0)",
            "*.chat.b.com Exact /live -> 10.0.0.1:8080*3, 10.0.1.1:9090 (wsroute/default/chat/0/1)",
            "*.chat.b.com Prefix /slow -> 10.0.0.1:8080 (wsroute/default/chat/1/0)",
            "*.chat.b.com Prefix /ws [x-tenant=acme] -> 10.0.0.1:8080*3, 10.0.1.1:9090 (wsroute/default/chat/0/0)",
        ]
    );
    assert!(problems(&built).is_empty(), "{:?}", problems(&built));
    let header = |name: &str| (name == "x-tenant").then_some("acme");
    let first = built.table.lookup("chat.a.com", "/ws/room", header).unwrap();
    assert_eq!(first.policy.idle_timeout, After(DEFAULT_IDLE_TIMEOUT));
    assert_eq!(first.policy.handshake_timeout, DEFAULT_HANDSHAKE_TIMEOUT);
    assert_eq!(first.policy.response_timeout, Duration::from_secs(60), "long polls fit");
    assert_eq!(first.policy.max_connection_duration, Disabled);
    // WebSocketRoutes ping quiet sides every 30 s unless told otherwise.
    assert_eq!(first.policy.ping_interval, After(Duration::from_secs(30)));
    assert_eq!(first.policy.ping_timeout, Duration::from_secs(30));
    let slow = &built.table.lookup("chat.a.com", "/slow", |_| None).unwrap().policy;
    assert_eq!(
        (slow.idle_timeout, slow.handshake_timeout),
        (After(Duration::from_secs(90)), Duration::from_secs(2))
    );
    assert_eq!(slow.max_connection_duration, After(Duration::from_secs(86400)));
    assert_eq!(slow.response_timeout, Duration::from_secs(25));
    assert_eq!(slow.load_balancing, LoadBalancing::ConsistentHash(HashKey::Query("room".into())));
    assert_eq!((slow.max_connections, slow.max_connections_per_client), (Some(100), Some(3)));
    assert_eq!((slow.allowed_origins.len(), slow.source_ranges.len()), (1, 1));
}

#[test]
fn a_bad_rule_is_left_out_and_the_others_keep_working() {
    let cases = [
        ("idleTimeout: 90s", "idleTimeout: soon", "spec.rules[1].idleTimeout"),
        (
            "{strategy: ConsistentHash, hashOn: {query: room}}",
            "{strategy: ConsistentHash}",
            "spec.rules[1].loadBalancing",
        ),
        (
            "{strategy: ConsistentHash, hashOn: {query: room}}",
            "{strategy: ConsistentHash, hashOn: {query: a, cookie: b}}",
            "spec.rules[1].loadBalancing",
        ),
    ];
    for (good, bad, field) in cases {
        let built = built(&ROUTE.replace(good, bad));
        assert_eq!(built.table.summary().len(), 4, "{bad}: the first rule must still serve");
        assert_eq!(problems(&built), vec![format!("Invalid WebSocketRoute default/chat {field}")], "{bad}");
    }
    // Security settings fail closed: the rule stays, answering 503, so no other route takes its paths.
    let refused = [
        ("sourceRanges: [10.0.0.0/8]", "sourceRanges: [10.0.0.0/99]", "spec.rules[1].sourceRanges"),
        ("allowedOrigins: [https://chat.a.com]", "allowedOrigins: [chat]", "spec.rules[1].allowedOrigins"),
        (
            "maxConnections: 100",
            "maxConnections: 100\n    backendCASecret: missing",
            "spec.rules[1].backendCASecret",
        ),
    ];
    for (good, bad, field) in refused {
        let built = built(&ROUTE.replace(good, bad));
        let summary = built.table.summary();
        assert_eq!(summary.len(), 6, "{bad}: {summary:?}");
        assert_eq!(summary.iter().filter(|r| r.contains("(refused: 503)")).count(), 2, "{bad}: {summary:?}");
        assert_eq!(problems(&built), vec![format!("Invalid WebSocketRoute default/chat {field}")], "{bad}");
    }
    let foreign = built(&ROUTE.replace("spec:\n", "spec:\n  ingressClassName: nginx\n"));
    assert!(foreign.table.summary().is_empty());
}

#[test]
fn route_conditions_follow_the_reports() {
    let object = ObjectRef::new(Kind::WebSocketRoute, "default", "chat");
    let ok = built(ROUTE);
    let [accepted, resolved] = conditions::route_conditions(&object, &ok.reports);
    assert_eq!((accepted.status, resolved.status), ("True", "True"));
    let broken = built(
        &ROUTE
            .replace("idleTimeout: 90s", "idleTimeout: soon")
            .replace("name: api, port: 81", "name: gone, port: 81"),
    );
    let [accepted, resolved] = conditions::route_conditions(&object, &broken.reports);
    assert_eq!((accepted.status, accepted.reason), ("False", "Invalid"));
    assert!(accepted.message.contains("idleTimeout"), "{}", accepted.message);
    assert_eq!((resolved.status, resolved.reason), ("False", "RefNotFound"));
    assert!(resolved.message.contains("Service default/gone not found"), "{}", resolved.message);
}

#[test]
fn equal_inputs_give_identical_output_whatever_their_order() {
    let documents = [
        simple("b", "a.com", "Prefix", "/"),
        simple("a", "a.com", "Prefix", "/x"),
        ROUTE.to_owned(),
        with_annotations("c", &[("hawser.dev/idle-timeout", "soon")]).replace("a.com", "c.com"),
    ];
    let forward = built(&documents.join("---\n"));
    let mut reversed_docs = documents.to_vec();
    reversed_docs.reverse();
    let reversed = built(&reversed_docs.join("---\n"));
    assert_eq!(forward.table, reversed.table);
    assert_eq!(forward.reports, reversed.reports);
    assert_eq!(forward.table.summary(), reversed.table.summary());
}

#[test]
fn websocket_route_backend_protocol() {
    use crate::model::BackendProtocol;
    let built =
        built(&ROUTE.replace("maxConnections: 100", "maxConnections: 100\n    backendProtocol: HTTPS"));
    let slow = &built.table.lookup("chat.a.com", "/slow", |_| None).unwrap().policy;
    let server_name = Some("web.default.svc".to_owned());
    assert_eq!(slow.backend_protocol, BackendProtocol::Https { server_name, ca: None });
    let plain = &built.table.lookup("chat.a.com", "/live", |_| None).unwrap().policy;
    assert_eq!(plain.backend_protocol, BackendProtocol::Http);
}

#[test]
fn unenforced_access_annotations_refuse_the_ingress_unless_opted_out() {
    let auth = [
        ("nginx.ingress.kubernetes.io/auth-tls-verify-client", "on"),
        ("nginx.ingress.kubernetes.io/auth-tls-secret", "default/ca"),
    ];
    let refused = built(&with_annotations("i", &auth));
    assert_eq!(refused.table.summary(), vec!["a.com Prefix / -> (refused: 503) (ingress/default/i/0/0)"]);
    assert_eq!(
        problems(&refused),
        vec![
            "Refused Ingress default/i nginx.ingress.kubernetes.io/auth-tls-secret",
            "Refused Ingress default/i nginx.ingress.kubernetes.io/auth-tls-verify-client",
        ]
    );
    assert!(refused.has_errors());
    for (key, value) in [
        ("nginx.ingress.kubernetes.io/configuration-snippet", "deny all;"),
        ("nginx.ingress.kubernetes.io/auth-snippet", "return 200;"),
        ("nginx.ingress.kubernetes.io/global-auth-url", "http://auth"),
        ("nginx.ingress.kubernetes.io/satisfy", "any"),
        ("nginx.ingress.kubernetes.io/enable-global-auth", "true"),
    ] {
        let built = built(&with_annotations("i", &[(key, value)]));
        assert!(policy_of(&built).refused, "{key}");
        assert_eq!(problems(&built), vec![format!("Refused Ingress default/i {key}")]);
    }
    // Opting out, per Ingress or per install, serves it without the restriction, with a warning.
    let mut opted = auth.to_vec();
    opted.push((
        "hawser.dev/ignore-annotations",
        "auth-tls-verify-client, nginx.ingress.kubernetes.io/auth-tls-secret",
    ));
    let served = built(&with_annotations("i", &opted));
    assert!(!policy_of(&served).refused);
    assert_eq!(
        problems(&served),
        vec![
            "Ignored Ingress default/i nginx.ingress.kubernetes.io/auth-tls-secret",
            "Ignored Ingress default/i nginx.ingress.kubernetes.io/auth-tls-verify-client",
        ]
    );
    let objects = parse_documents(&format!("{SERVICES}\n---\n{}", with_annotations("i", &auth))).unwrap();
    let config =
        BuildConfig { ignore_annotations: vec!["auth-tls-verify-client".into()], ..BuildConfig::default() };
    let partly = build(&Snapshot::new(objects), &config);
    assert!(policy_of(&partly).refused, "auth-tls-secret is still refused");
    // Harmless nginx tuning is reported for the record only.
    let tuning = built(&with_annotations("i", &[("nginx.ingress.kubernetes.io/proxy-buffering", "off")]));
    assert!(!policy_of(&tuning).refused);
    assert_eq!(problems(&tuning), Vec::<String>::new());
    assert_eq!(tuning.reports.iter().filter(|r| r.reason == Reason::NotNeeded).count(), 1);
}

#[test]
fn basic_and_external_auth_are_enforced_and_anything_unreadable_refuses_the_ingress() {
    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: users}\ntype: Opaque\ndata:\n  auth: Zm9vOiRhcHIxJE9GRzNYeWJwJGNrTDBGSERBa29YWUlsSDkuY3lzVDAK\n";
    let basic = [
        ("nginx.ingress.kubernetes.io/auth-type", "basic"),
        ("nginx.ingress.kubernetes.io/auth-secret", "users"),
        ("nginx.ingress.kubernetes.io/auth-realm", "Staff"),
    ];
    let served = built(&format!("{}---\n{secret}", with_annotations("i", &basic)));
    let auth = policy_of(&served).basic_auth.clone().expect("basic auth");
    assert_eq!(
        (auth.realm.as_str(), auth.users.keys().map(String::as_str).collect::<Vec<_>>()),
        ("Staff", vec!["foo"])
    );
    assert!(!policy_of(&served).refused);
    assert_eq!(problems(&served), Vec::<String>::new());
    // (annotations, the problem reported): each refuses the Ingress.
    let url = ("nginx.ingress.kubernetes.io/auth-url", "http://auth.svc/check");
    let refusing: [(&[(&str, &str)], &str); 5] = [
        (&basic, "Invalid Ingress default/i nginx.ingress.kubernetes.io/auth-secret"),
        (&basic[..1], "Invalid Ingress default/i nginx.ingress.kubernetes.io/auth-secret"),
        (
            &[("nginx.ingress.kubernetes.io/auth-url", "auth.svc/check")],
            "Invalid Ingress default/i nginx.ingress.kubernetes.io/auth-url",
        ),
        (
            &[("nginx.ingress.kubernetes.io/auth-url", "https://$remote_addr/")],
            "Invalid Ingress default/i nginx.ingress.kubernetes.io/auth-url",
        ),
        (
            &[url, ("nginx.ingress.kubernetes.io/auth-response-headers", "X-Ok, Bad Name")],
            "Invalid Ingress default/i nginx.ingress.kubernetes.io/auth-url",
        ),
    ];
    for (annotations, problem) in refusing {
        let refused = built(&with_annotations("i", annotations));
        assert!(policy_of(&refused).refused, "{annotations:?}");
        assert_eq!(problems(&refused), vec![problem.to_owned()], "{annotations:?}");
    }
    let external = [
        url,
        ("nginx.ingress.kubernetes.io/auth-signin", "https://$host/oauth2/start?rd=$escaped_request_uri"),
        ("nginx.ingress.kubernetes.io/auth-response-headers", "X-Auth-Request-User, X-Auth-Request-Email"),
        ("nginx.ingress.kubernetes.io/auth-method", "POST"),
        ("nginx.ingress.kubernetes.io/auth-cache-key", "$remote_user"),
    ];
    let served = built(&with_annotations("i", &external));
    let auth = policy_of(&served).external_auth.clone().expect("external auth");
    assert_eq!(auth.method, http::Method::POST);
    assert_eq!(auth.response_headers.len(), 2);
    assert!(!policy_of(&served).refused);
    assert_eq!(problems(&served), Vec::<String>::new());
    let translated = served.reports.iter().filter(|r| r.reason == Reason::Translated).count();
    assert_eq!(translated, 1, "auth-cache-key: not cached");
}

#[test]
fn allowed_upgrades_annotation() {
    let allowed = built(&with_annotations("i", &[("hawser.dev/allowed-upgrades", "Foo, bar/2")]));
    assert_eq!(policy_of(&allowed).allowed_upgrades, vec!["foo".to_owned(), "bar/2".to_owned()]);
    let h2c = built(&with_annotations("i", &[("hawser.dev/allowed-upgrades", "h2c")]));
    assert!(policy_of(&h2c).allowed_upgrades.is_empty());
    assert_eq!(problems(&h2c), vec!["Invalid Ingress default/i hawser.dev/allowed-upgrades"]);
}

/// An object in `namespace` claiming `host` `/`, created at `time` (empty: undated).
fn claim(kind: &str, namespace: &str, name: &str, host: &str, time: &str) -> String {
    let created = if time.is_empty() { String::new() } else { format!("  creationTimestamp: \"{time}\"\n") };
    let metadata = format!("metadata:\n  name: {name}\n  namespace: {namespace}\n{created}");
    match kind {
        "Ingress" => {
            simple(name, host, "Prefix", "/").replacen(&format!("metadata:\n  name: {name}\n"), &metadata, 1)
        }
        _ => format!(
            "apiVersion: hawser.dev/v1alpha1\nkind: WebSocketRoute\n{metadata}spec:\n  hostnames: [{host}]\n  tls: {{secretName: {name}-tls}}\n  rules:\n  - backends: [{{name: web, port: 80}}]\n"
        ),
    }
}

#[test]
fn another_namespace_never_takes_a_served_host_and_path() {
    let bank = claim("Ingress", "bank", "web", "bank.test", "2025-01-01T00:00:00Z");
    let bank_tls = bank.replace("  rules:", "  tls: [{hosts: [bank.test], secretName: bank-tls}]\n  rules:");
    for (kind, time) in [
        ("WebSocketRoute", "2026-01-01T00:00:00Z"),
        ("Ingress", "2026-01-01T00:00:00Z"),
        ("WebSocketRoute", ""),
    ] {
        let evil = claim(kind, "evil", "grab", "bank.test", time);
        let built = built(&format!("{bank_tls}---\n{evil}"));
        let summary = built.table.summary();
        assert_eq!(summary.len(), 1, "{kind} {time}: {summary:?}");
        assert!(summary[0].ends_with("(ingress/bank/web/0/0)"), "{kind} {time}: {summary:?}");
        let conflicts: Vec<String> =
            problems(&built).into_iter().filter(|p| p.starts_with("Conflict")).collect();
        assert!(!conflicts.is_empty() && conflicts.iter().all(|c| c.contains("evil/grab")), "{conflicts:?}");
        assert_eq!(built.tls.get("bank.test"), Some(&NamespacedName::new("bank", "bank-tls")), "{kind}");
    }
    // Within one namespace a WebSocketRoute still beats an older Ingress.
    let own = claim("WebSocketRoute", "bank", "chat", "bank.test", "2026-01-01T00:00:00Z");
    let same_namespace = built(&format!("{bank}---\n{own}"));
    let summary = same_namespace.table.summary();
    assert!(summary[0].ends_with("(wsroute/bank/chat/0/0)"), "{summary:?}");
    // The older claim keeps its host and path whatever its kind.
    let older_route = claim("WebSocketRoute", "evil", "grab", "bank.test", "2024-01-01T00:00:00Z");
    let older = built(&format!("{bank}---\n{older_route}"));
    assert!(older.table.summary()[0].ends_with("(wsroute/evil/grab/0/0)"));
}

#[test]
fn a_mistyped_rule_leaves_out_that_rule_only() {
    let built =
        built(&ROUTE.replace("    maxConnectionsPerClient: 3\n", "    maxConnectionsPerClient: lots\n"));
    assert_eq!(
        problems(&built),
        vec!["Invalid WebSocketRoute default/chat spec.rules[1]"],
        "the other rule stays"
    );
    let summary = built.table.summary();
    assert!(summary.iter().all(|s| s.contains("(wsroute/default/chat/0/")), "{summary:?}");
    assert_eq!(summary.len(), 4, "rule 0 on both hosts, two matches each: {summary:?}");
}

#[test]
fn websocket_route_lifecycle_fields() {
    let rule = "    maxConnectionsPerClient: 3\n    pingInterval: 10s\n    pingTimeout: 2s\n    maxMessageBytes: 1048576\n    rebalance: {maxSkew: 1.5, closesPerSecond: 2}\n";
    let built = built(&ROUTE.replace("    maxConnectionsPerClient: 3\n", rule));
    let slow = &built.table.lookup("chat.a.com", "/slow", |_| None).unwrap().policy;
    assert_eq!(slow.ping_interval, After(Duration::from_secs(10)));
    assert_eq!(slow.ping_timeout, Duration::from_secs(2));
    assert_eq!(slow.max_message_bytes, Some(1_048_576));
    assert_eq!(slow.rebalance, Some(crate::model::Rebalance { max_skew: 1.5, closes_per_second: 2 }));
    let off = built_route_with("    pingInterval: 0s\n");
    assert_eq!(off.table.lookup("chat.a.com", "/slow", |_| None).unwrap().policy.ping_interval, Disabled);
    for (bad, field) in [
        ("    pingTimeout: 0s\n", "spec.rules[1].pingTimeout"),
        ("    rebalance: {maxSkew: 0.5}\n", "spec.rules[1].rebalance"),
    ] {
        assert_eq!(
            problems(&built_route_with(bad)),
            vec![format!("Invalid WebSocketRoute default/chat {field}")]
        );
    }
}

/// [`ROUTE`] with `fields` added to its second rule.
fn built_route_with(fields: &str) -> Built {
    built(
        &ROUTE.replace(
            "    maxConnectionsPerClient: 3\n",
            &format!("    maxConnectionsPerClient: 3\n{fields}"),
        ),
    )
}

#[test]
fn service_upstream_routes_to_the_cluster_ip_and_client_body_timeout_is_per_route() {
    let service = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 80}]}\n";
    let upstream = [("nginx.ingress.kubernetes.io/service-upstream", "true")];
    let objects = parse_documents(&format!("{service}---\n{}", with_annotations("i", &upstream))).unwrap();
    let upstream_built = build(&Snapshot::new(objects), &BuildConfig::default());
    let route = upstream_built.table.lookup("a.com", "/", |_| None).expect("route");
    let addrs: Vec<String> = route.backend.endpoints().iter().map(|e| e.addr.to_string()).collect();
    assert_eq!(addrs, ["10.96.0.10:80"]);
    assert_eq!(upstream_built.reports.iter().filter(|r| r.reason == Reason::Translated).count(), 1);
    // A headless Service (or one written without its cluster IP) keeps its endpoints.
    let headless = built(&with_annotations("i", &upstream));
    let route = headless.table.lookup("a.com", "/", |_| None).expect("route");
    assert_eq!(route.backend.endpoints()[0].addr.to_string(), "10.0.0.1:8080");
    assert_eq!(
        problems(&headless),
        vec!["Unsupported Ingress default/i spec.rules[0].http.paths[0].backend.service"]
    );

    let timeout = built(&with_annotations("i", &[("nginx.ingress.kubernetes.io/client-body-timeout", "5")]));
    assert_eq!(policy_of(&timeout).request_body_timeout, Some(std::time::Duration::from_secs(5)));
    let zero = built(&with_annotations("i", &[("nginx.ingress.kubernetes.io/client-body-timeout", "0")]));
    assert_eq!(policy_of(&zero).request_body_timeout, None);
    assert_eq!(
        problems(&zero),
        vec!["Invalid Ingress default/i nginx.ingress.kubernetes.io/client-body-timeout"]
    );
}
