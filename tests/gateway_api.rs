//! The Gateway API conformance suite's HTTP cases (kubernetes-sigs/gateway-api v1.5.1,
//! `conformance/tests/*`), ported to black-box tests of the binary in standalone mode. Each test
//! is named after the upstream test it comes from, loads the suite's base manifests (its
//! namespaces, Gateways and backends, here `hawser echo` processes named after the Services)
//! plus that test's objects, and sends that test's requests.
//!
//! Differences from upstream, all from running without a cluster: every Gateway shares hawser's
//! two listeners (HTTP port 80 → the plain listener, HTTPS 443 → the TLS one), so each test
//! loads only its own routes; the echo reports its name (the Service's) rather than a pod's;
//! status conditions are checked against the stand-in API server elsewhere, here the findings
//! of `hawser check` stand for them. `hawser echo` joins a repeated request header's values
//! with ", " where upstream's check joins them with ","; it cannot be told which response
//! headers to send (echo-basic's `X-Echo-Set-Header`), so HTTPRouteResponseHeaderModifier puts a
//! stand-in that can behind infra-backend-v1.
//!
//! Covered: HTTPRouteSimpleSameNamespace, HTTPRouteCrossNamespace, HTTPRouteExactPathMatching,
//! HTTPRouteHeaderMatching, HTTPRouteHostnameIntersection, HTTPRouteListenerHostnameMatching,
//! HTTPRouteMatchingAcrossRoutes, HTTPRouteMatching, HTTPRouteMethodMatching,
//! HTTPRouteQueryParamMatching, HTTPRoutePathMatchOrder, HTTPRouteRequestHeaderModifier,
//! HTTPRouteResponseHeaderModifier, HTTPRouteRedirectHostAndStatus, HTTPRouteRedirectPath,
//! HTTPRouteRedirectPort, HTTPRouteRedirectScheme, HTTPRouteRewriteHost, HTTPRouteRewritePath,
//! HTTPRouteWeight, HTTPRouteInvalidCrossNamespaceBackendRef, HTTPRouteInvalidReferenceGrant,
//! HTTPRouteReferenceGrant, HTTPRoutePartiallyInvalidViaInvalidReferenceGrant,
//! HTTPRouteInvalidNonExistentBackendRef, HTTPRouteInvalidBackendRefUnknownKind,
//! HTTPRouteHTTPSListener, HTTPRouteBackendProtocolWebSocket, GatewayHTTPListenerIsolation (both
//! manifests).
//!
//! Not covered, and why: HTTPRouteListenerPortMatching and GatewayPort8080 (hawser serves
//! Gateway ports 80 and 443 only); HTTPRouteHostnameIntersection's status parts (the
//! `NoMatchingListenerHostname` condition and the listeners' attachedRoutes; only the traffic of
//! the route that intersects no listener is checked); HTTPRouteRequestMirror (mirroring is not
//! served); HTTPRouteBackendProtocolH2C, the backend TLS and client-certificate tests
//! (BackendTLSPolicy, frontend validation: not served yet); the status-only tests (conditions,
//! attachedRoutes, observedGeneration: Gateway API status is not written yet);
//! HTTPRouteHTTPSListenerDetectMisdirectedRequests (421s are not sent); the timeout tests
//! (they need the echo's `?delay=`).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::process::{ANY_PORTS, Process};
use common::tls::{cert, presented, secret_yaml, tls_connect};
use common::*;
use futures_util::{SinkExt, StreamExt};
use hawser::echo::SeenRequest;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::Message;

const INFRA: &str = "gateway-conformance-infra";
const WEB: &str = "gateway-conformance-web-backend";
const APP: &str = "gateway-conformance-app-backend";

/// The suite's base manifests, with `hawser` as the GatewayClass.
const BASE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: gateway-conformance-infra, labels: {gateway-conformance: infra}}
---
apiVersion: v1
kind: Namespace
metadata: {name: gateway-conformance-app-backend, labels: {gateway-conformance: backend}}
---
apiVersion: v1
kind: Namespace
metadata: {name: gateway-conformance-web-backend, labels: {gateway-conformance: backend}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: hawser}
spec: {controllerName: hawser.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: Gateway
metadata: {name: same-namespace, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: hawser
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: Gateway
metadata: {name: same-namespace-with-https-listener, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: hawser
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    allowedRoutes: {namespaces: {from: Same}}
    tls: {certificateRefs: [{group: "", kind: Secret, name: tls-validity-checks-certificate, namespace: gateway-conformance-infra}]}
  - name: https-with-hostname
    port: 443
    protocol: HTTPS
    hostname: second-example.org
    allowedRoutes: {namespaces: {from: Same}}
    tls: {certificateRefs: [{group: "", kind: Secret, name: tls-validity-checks-certificate, namespace: gateway-conformance-infra}]}
  - name: https-with-wildcard-hostname
    port: 443
    protocol: HTTPS
    hostname: "*.wildcard.org"
    allowedRoutes: {namespaces: {from: Same}}
    tls: {certificateRefs: [{group: "", kind: Secret, name: tls-validity-checks-certificate, namespace: gateway-conformance-infra}]}
  - name: https-with-hostname-matching-wildcard
    port: 443
    protocol: HTTPS
    hostname: fourth-example.wildcard.org
    allowedRoutes: {namespaces: {from: Same}}
    tls: {certificateRefs: [{group: "", kind: Secret, name: tls-validity-checks-certificate, namespace: gateway-conformance-infra}]}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: Gateway
metadata: {name: all-namespaces, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: hawser
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: Gateway
metadata: {name: backend-namespaces, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: hawser
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {gateway-conformance: backend}}}}
"#;

/// The suite's HTTP backends: (namespace, Service).
const BACKENDS: [(&str, &str); 6] = [
    (INFRA, "infra-backend-v1"),
    (INFRA, "infra-backend-v2"),
    (INFRA, "infra-backend-v3"),
    (APP, "app-backend-v1"),
    (APP, "app-backend-v2"),
    (WEB, "web-backend"),
];

/// A Service `namespace/name` on port 8080 (and 8082 with `appProtocol: kubernetes.io/ws`)
/// whose one endpoint is `backend`.
fn service(namespace: &str, name: &str, backend: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
         spec: {{ports: [{{name: first-port, port: 8080}}, {{name: third-port, port: 8082, appProtocol: kubernetes.io/ws}}]}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {name}-1, namespace: {namespace}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nports: [{{name: first-port, port: {port}}}, {{name: third-port, port: {port}}}]\n\
         endpoints: [{{addresses: [\"{ip}\"]}}]\n",
        port = backend.port(),
        ip = backend.ip()
    )
}

/// hawser serving the base manifests plus `manifests`, and the backends.
struct Suite {
    hawser: Process,
    _backends: Vec<Server>,
    dir: PathBuf,
    /// The HTTPS listeners' certificate (`tls-validity-checks-certificate`).
    certificate: rustls::pki_types::CertificateDer<'static>,
}

/// A request of a test case: method, `Host`, path with query, headers.
struct Case<'a> {
    method: Method,
    host: &'a str,
    target: &'a str,
    headers: Headers<'a>,
}

fn get_case<'a>(host: &'a str, target: &'a str) -> Case<'a> {
    Case { method: Method::GET, host, target, headers: &[] }
}

/// Request headers of a case, or headers a backend or client must see.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// A redirect case: path, status, and the `Location`'s scheme, host (`None`: any), port
/// (`None`: the scheme's default, written or not) and path.
type Redirect<'a> = (&'a str, u16, &'a str, Option<&'a str>, Option<u16>, &'a str);

impl Suite {
    async fn start(manifests: &str) -> Self {
        Self::start_with(manifests, Vec::new()).await
    }

    /// Like [`Self::start`], with `custom` servers standing in for the echoes of these names.
    async fn start_with(manifests: &str, mut custom: Vec<(&str, Server)>) -> Self {
        let dir = tempdir();
        let mut backends = Vec::new();
        let mut services = Vec::new();
        for (namespace, name) in BACKENDS {
            let server = match custom.iter().position(|(n, _)| *n == name) {
                Some(i) => custom.swap_remove(i).1,
                None => echo(name).await,
            };
            services.push(service(namespace, name, server.addr));
            backends.push(server);
        }
        let certificate = cert(&["example.org", "second-example.org", "*.wildcard.org"]);
        let secret = secret_yaml("tls-validity-checks-certificate", &certificate).replacen(
            "metadata: {name: tls-validity-checks-certificate}",
            &format!("metadata: {{name: tls-validity-checks-certificate, namespace: {INFRA}}}"),
            1,
        );
        write(&dir, "base.yaml", &format!("{BASE}\n---\n{secret}\n---\n{}", services.join("---\n")));
        write(&dir, "test.yaml", manifests);
        let hawser =
            Process::start(&[&["run"][..], &ANY_PORTS, &["--manifests", dir.to_str().unwrap()]].concat(), 3);
        let admin = hawser.addr("admin");
        eventually_async(|| async { get(admin, "admin", "/readyz").await.0 == StatusCode::OK }).await;
        Self { hawser, _backends: backends, dir, certificate: certificate.der }
    }

    fn proxy(&self) -> SocketAddr {
        self.hawser.addr("proxy")
    }

    /// The answer to one case over plain HTTP.
    async fn send(&self, case: &Case<'_>) -> (StatusCode, HeaderMap, Bytes) {
        let mut req =
            Request::builder().method(case.method.clone()).uri(case.target).header("host", case.host);
        for (name, value) in case.headers {
            req = req.header(*name, *value);
        }
        request(self.proxy(), req.body(Full::default()).unwrap()).await
    }

    /// The answer to a GET over HTTPS, with `host` as both SNI and `Host`.
    async fn send_tls(&self, host: &str, target: &str) -> (StatusCode, HeaderMap, Bytes) {
        let stream = tls_connect(self.hawser.addr("proxy-tls"), host, &[b"http/1.1"]).await;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        let req = Request::get(target).header("host", host).body(Full::<Bytes>::default()).unwrap();
        let (parts, body) = sender.send_request(req).await.unwrap().into_parts();
        (parts.status, parts.headers, body.collect().await.unwrap().to_bytes())
    }

    /// What the backend saw of one case (`Err`: not 200, with the status).
    async fn answer(&self, case: &Case<'_>) -> Result<SeenRequest, StatusCode> {
        let (status, _, body) = self.send(case).await;
        if status == StatusCode::OK { Ok(seen(&body)) } else { Err(status) }
    }

    /// Which backend answered (`None`: not 200, with the status).
    async fn backend(&self, case: &Case<'_>) -> Result<String, StatusCode> {
        self.answer(case).await.map(|seen| seen.name)
    }

    /// Asserts which backend (or which status) `case` gets, as [`Self::reach`] does for a 200.
    async fn expect(&self, case: &Case<'_>, want: Result<&str, u16>) {
        match want {
            Ok(backend) => drop(self.reach(case, backend).await),
            Err(status) => {
                let got = self.backend(case).await.map_err(|s| s.as_u16());
                assert_eq!(got, Err(status), "{}", describe(case));
            }
        }
    }

    /// What `backend` saw of `case`, which must get a 200 and reach it with its method, path and
    /// query unchanged (upstream's default expected request).
    async fn reach(&self, case: &Case<'_>, backend: &str) -> SeenRequest {
        let what = describe(case);
        let seen = self.answer(case).await.unwrap_or_else(|status| panic!("{what}: {status}"));
        assert_eq!(seen.name, backend, "{what}");
        assert_eq!(seen.method, case.method.as_str(), "{what}");
        assert_eq!(target(&seen), case.target, "{what}");
        seen
    }

    /// Asserts which backend (or which status) each GET gets.
    async fn expect_gets(&self, cases: &[(&str, &str, Result<&str, u16>)]) {
        for (host, target, want) in cases {
            self.expect(&get_case(host, target), *want).await;
        }
    }

    /// Asserts the redirect each GET to 127.0.0.1 gets.
    async fn expect_redirects(&self, cases: &[Redirect<'_>]) {
        for &(target, status, scheme, host, port, path) in cases {
            let (got, headers, _) = self.send(&get_case("127.0.0.1", target)).await;
            assert_eq!(got.as_u16(), status, "GET {target}");
            let location = headers.get("location").unwrap_or_else(|| panic!("GET {target}: no Location"));
            let uri: http::Uri = location.to_str().unwrap().parse().unwrap();
            let what = format!("GET {target} → Location {uri}");
            assert_eq!(uri.scheme_str(), Some(scheme), "{what}");
            if let Some(host) = host {
                assert_eq!(uri.host(), Some(host), "{what}");
            }
            match port {
                Some(port) => assert_eq!(uri.port_u16(), Some(port), "{what}"),
                None => {
                    let default = if scheme == "https" { 443 } else { 80 };
                    assert!(uri.port_u16().is_none_or(|p| p == default), "{what}");
                }
            }
            assert_eq!(uri.path(), path, "{what}");
        }
    }
}

fn write(dir: &Path, file: &str, content: &str) {
    std::fs::write(dir.join(file), content).unwrap();
}

/// A case as assertion messages name it.
fn describe(case: &Case<'_>) -> String {
    format!("{} {}{} {:?}", case.method, case.host, case.target, case.headers)
}

/// The path and query a backend saw.
fn target(seen: &SeenRequest) -> String {
    match &seen.query {
        Some(query) => format!("{}?{query}", seen.path),
        None => seen.path.clone(),
    }
}

/// Asserts that the echo saw each of `want` (this echo joins repeated headers with ", ") and
/// none of `absent`.
fn assert_seen_headers(seen: &SeenRequest, want: Headers<'_>, absent: &[&str], what: &str) {
    for (name, value) in want {
        assert_eq!(
            seen.headers.get(&name.to_ascii_lowercase()).map(String::as_str),
            Some(*value),
            "{what}: {name}"
        );
    }
    for name in absent {
        assert!(!seen.headers.contains_key(&name.to_ascii_lowercase()), "{what}: {name} reached the backend");
    }
}

/// An HTTPRoute in `namespace` with `spec` (YAML, indented two spaces).
fn route(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}\n---\n"
    )
}

/// A Gateway in infra whose listeners, (name, hostname), are all HTTP on port 80 and admit
/// routes `from` (`Same`, `All`).
fn gateway(name: &str, from: &str, listeners: &[(&str, Option<&str>)]) -> String {
    let listeners: String = listeners
        .iter()
        .map(|(listener, hostname)| {
            let hostname = hostname.map(|h| format!(" hostname: \"{h}\",")).unwrap_or_default();
            format!("  - {{name: {listener}, port: 80, protocol: HTTP,{hostname} allowedRoutes: {{namespaces: {{from: {from}}}}}}}\n")
        })
        .collect();
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {INFRA}}}\nspec:\n  gatewayClassName: hawser\n  listeners:\n{listeners}---\n"
    )
}

/// A ReferenceGrant `namespace/name` from `from` (group, kind, namespace) to `to` (group, kind,
/// name).
fn grant(namespace: &str, name: &str, from: (&str, &str, &str), to: (&str, &str, &str)) -> String {
    let ((fg, fk, fns), (tg, tk, tn)) = (from, to);
    format!(
        "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
         spec:\n  from: [{{group: \"{fg}\", kind: {fk}, namespace: {fns}}}]\n  to: [{{group: \"{tg}\", kind: {tk}, name: {tn}}}]\n---\n"
    )
}

/// A stand-in for echo-basic's `X-Echo-Set-Header` (`Name:Value,Name:Value`), which
/// `hawser echo` does not read: answers as the echo `name` would, with those response headers.
async fn header_echo(name: &'static str) -> Server {
    backend(move |req: Request<Incoming>| async move {
        let mut headers = BTreeMap::<String, String>::new();
        for (header, value) in req.headers() {
            let value = value.to_str().unwrap().to_owned();
            headers.entry(header.to_string()).and_modify(|v| *v = format!("{v}, {value}")).or_insert(value);
        }
        let seen = SeenRequest {
            name: name.to_owned(),
            method: req.method().to_string(),
            path: req.uri().path().to_owned(),
            query: req.uri().query().map(str::to_owned),
            host: headers.get("host").cloned(),
            version: format!("{:?}", req.version()),
            headers,
            body_bytes: 0,
            connection: 0,
        };
        let mut response = Response::new(full_body(serde_json::to_vec(&seen).unwrap()));
        let out = response.headers_mut();
        out.insert("content-type", HeaderValue::from_static("application/json"));
        let set = req.headers().get("x-echo-set-header").map(|v| v.to_str().unwrap()).unwrap_or_default();
        for item in set.split(',').filter(|item| !item.is_empty()) {
            let (header, value) = item.split_once(':').unwrap();
            out.append(
                HeaderName::from_bytes(header.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        response
    })
    .await
}

const V1: &str = "infra-backend-v1";
const V2: &str = "infra-backend-v2";
const V3: &str = "infra-backend-v3";

#[tokio::test]
async fn http_route_simple_same_namespace() {
    let suite = Suite::start(&route(
        INFRA,
        "gateway-conformance-infra-test",
        "  parentRefs: [{name: same-namespace}]\n  rules: [{backendRefs: [{name: infra-backend-v1, port: 8080}]}]",
    ))
    .await;
    suite.expect_gets(&[("127.0.0.1", "/", Ok("infra-backend-v1"))]).await;
}

#[tokio::test]
async fn http_route_cross_namespace() {
    let suite = Suite::start(&route(
        WEB,
        "cross-namespace",
        "  parentRefs: [{name: backend-namespaces, namespace: gateway-conformance-infra}]\n  rules: [{backendRefs: [{name: web-backend, port: 8080}]}]",
    ))
    .await;
    suite.expect_gets(&[("127.0.0.1", "/", Ok("web-backend"))]).await;
}

#[tokio::test]
async fn http_route_exact_path_matching() {
    let suite = Suite::start(&route(
        INFRA,
        "exact-matching",
        r#"  parentRefs: [{name: same-namespace}]
  rules:
  - {matches: [{path: {type: Exact, value: /one}}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{path: {type: Exact, value: /two}}], backendRefs: [{name: infra-backend-v2, port: 8080}]}"#,
    ))
    .await;
    let h = "127.0.0.1";
    suite
        .expect_gets(&[
            (h, "/one", Ok("infra-backend-v1")),
            (h, "/two", Ok("infra-backend-v2")),
            (h, "/", Err(404)),
            (h, "/one/example", Err(404)),
            (h, "/two/", Err(404)),
            (h, "/Two", Err(404)),
        ])
        .await;
}

#[tokio::test]
async fn http_route_header_matching() {
    let suite = Suite::start(&route(
        INFRA,
        "header-matching",
        r#"  parentRefs: [{name: same-namespace}]
  rules:
  - {matches: [{headers: [{name: version, value: one}]}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{headers: [{name: version, value: two}]}], backendRefs: [{name: infra-backend-v2, port: 8080}]}
  - {matches: [{headers: [{name: version, value: two}, {name: color, value: orange}]}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{headers: [{name: color, value: blue}]}, {headers: [{name: color, value: green}]}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{headers: [{name: color, value: red}]}, {headers: [{name: color, value: yellow}]}], backendRefs: [{name: infra-backend-v2, port: 8080}]}"#,
    ))
    .await;
    let cases: [(Headers, Result<&str, StatusCode>); 11] = [
        (&[("Version", "one")], Ok("infra-backend-v1")),
        (&[("Version", "two")], Ok("infra-backend-v2")),
        (&[("Version", "two"), ("Color", "orange")], Ok("infra-backend-v1")),
        (&[("Version", "two"), ("Color", "blue")], Ok("infra-backend-v2")),
        (&[("Color", "orange")], Err(StatusCode::NOT_FOUND)),
        (&[("Some-Other-Header", "one")], Err(StatusCode::NOT_FOUND)),
        (&[("Color", "blue")], Ok("infra-backend-v1")),
        (&[("Color", "green")], Ok("infra-backend-v1")),
        (&[("Color", "red")], Ok("infra-backend-v2")),
        (&[("Color", "yellow")], Ok("infra-backend-v2")),
        (&[("Color", "purple")], Err(StatusCode::NOT_FOUND)),
    ];
    for (headers, want) in cases {
        let case = Case { method: Method::GET, host: "127.0.0.1", target: "/", headers };
        assert_eq!(suite.backend(&case).await, want.map(str::to_owned), "headers {headers:?}");
    }
}

#[tokio::test]
async fn http_route_hostname_intersection() {
    let gw = "httproute-hostname-intersection";
    let parent = format!("  parentRefs: [{{name: {gw}, namespace: gateway-conformance-infra}}]");
    let spec = |hostnames: &str, prefix: &str, backend: &str| {
        format!(
            "{parent}\n  hostnames: [{hostnames}]\n  rules: [{{matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}], backendRefs: [{{name: {backend}, port: 8080}}]}}]"
        )
    };
    let manifests = [
        gateway(
            gw,
            "Same",
            &[
                ("listener-1", Some("very.specific.com")),
                ("listener-2", Some("*.wildcard.io")),
                ("listener-3", Some("*.anotherwildcard.io")),
            ],
        ),
        gateway("httproute-hostname-intersection-all", "Same", &[("listener-1", None)]),
        route(
            INFRA,
            "specific-host-matches-listener-specific-host",
            &spec(r#"non.matching.com, "*.nonmatchingwildcard.io", very.specific.com"#, "/s1", V1),
        ),
        route(
            INFRA,
            "specific-host-matches-listener-wildcard-host",
            &spec(
                "non.matching.com, wildcard.io, foo.wildcard.io, bar.wildcard.io, foo.bar.wildcard.io",
                "/s2",
                V2,
            ),
        ),
        route(
            INFRA,
            "wildcard-host-matches-listener-specific-host",
            &spec(r#"non.matching.com, "*.specific.com""#, "/s3", V3),
        ),
        route(
            INFRA,
            "wildcard-host-matches-listener-wildcard-host",
            &spec(r#""*.anotherwildcard.io""#, "/s4", V1),
        ),
        route(INFRA, "no-intersecting-hosts", &spec("specific.but.wrong.com, wildcard.io", "/s5", V2)),
        route(
            INFRA,
            "httproute-hostname-intersection-all",
            "  parentRefs: [{name: httproute-hostname-intersection-all, namespace: gateway-conformance-infra}]\n  hostnames: [first.com, sub.first.com, second.com, sub.second.com]\n  rules: [{backendRefs: [{name: infra-backend-v2, port: 8080}]}]",
        ),
    ];
    let suite = Suite::start(&manifests.concat()).await;
    suite
        .expect_gets(&[
            // Part A.
            ("very.specific.com", "/s1", Ok(V1)),
            ("very.specific.com:1234", "/s1", Ok(V1)),
            ("non.matching.com", "/s1", Err(404)),
            ("foo.nonmatchingwildcard.io", "/s1", Err(404)),
            ("foo.wildcard.io", "/s1", Err(404)),
            ("very.specific.com", "/non-matching-prefix", Err(404)),
            ("foo.wildcard.io", "/s2", Ok(V2)),
            ("bar.wildcard.io", "/s2", Ok(V2)),
            ("foo.bar.wildcard.io", "/s2", Ok(V2)),
            ("non.matching.com", "/s2", Err(404)),
            ("wildcard.io", "/s2", Err(404)),
            ("very.specific.com", "/s2", Err(404)),
            ("foo.wildcard.io", "/non-matching-prefix", Err(404)),
            ("very.specific.com", "/s3", Ok(V3)),
            ("non.matching.com", "/s3", Err(404)),
            ("foo.specific.com", "/s3", Err(404)),
            ("foo.wildcard.io", "/s3", Err(404)),
            ("foo.anotherwildcard.io", "/s4", Ok(V1)),
            ("bar.anotherwildcard.io", "/s4", Ok(V1)),
            ("foo.bar.anotherwildcard.io", "/s4", Ok(V1)),
            ("anotherwildcard.io", "/s4", Err(404)),
            ("foo.wildcard.io", "/s4", Err(404)),
            ("very.specific.com", "/s4", Err(404)),
            ("foo.anotherwildcard.io", "/non-matching-prefix", Err(404)),
            // Part B: the route that intersects no listener serves nothing.
            ("specific.but.wrong.com", "/s5", Err(404)),
            ("wildcard.io", "/s5", Err(404)),
            // Part D.
            ("first.com", "/", Ok(V2)),
            ("sub.first.com", "/", Ok(V2)),
            ("second.com", "/", Ok(V2)),
            ("sub.second.com", "/", Ok(V2)),
            ("third.com", "/", Err(404)),
            ("sub.third.com", "/", Err(404)),
        ])
        .await;
}

#[tokio::test]
async fn http_route_listener_hostname_matching() {
    let gw = "httproute-listener-hostname-matching";
    let manifests = [
        gateway(
            gw,
            "Same",
            &[
                ("listener-1", Some("bar.com")),
                ("listener-2", Some("foo.bar.com")),
                ("listener-3", Some("*.bar.com")),
                ("listener-4", Some("*.foo.com")),
            ],
        ),
        route(
            INFRA,
            "backend-v1",
            &format!(
                "  parentRefs: [{{name: {gw}, namespace: gateway-conformance-infra, sectionName: listener-1}}]\n  rules: [{{backendRefs: [{{name: infra-backend-v1, port: 8080}}]}}]"
            ),
        ),
        route(
            INFRA,
            "backend-v2",
            &format!(
                "  parentRefs: [{{name: {gw}, namespace: gateway-conformance-infra, sectionName: listener-2}}]\n  rules: [{{backendRefs: [{{name: infra-backend-v2, port: 8080}}]}}]"
            ),
        ),
        route(
            INFRA,
            "backend-v3",
            &format!(
                "  parentRefs:\n  - {{name: {gw}, namespace: gateway-conformance-infra, sectionName: listener-3}}\n  - {{name: {gw}, namespace: gateway-conformance-infra, sectionName: listener-4}}\n  rules: [{{backendRefs: [{{name: infra-backend-v3, port: 8080}}]}}]"
            ),
        ),
    ];
    let suite = Suite::start(&manifests.concat()).await;
    suite
        .expect_gets(&[
            ("bar.com", "/", Ok(V1)),
            ("foo.bar.com", "/", Ok(V2)),
            ("baz.bar.com", "/", Ok(V3)),
            ("boo.bar.com", "/", Ok(V3)),
            ("multiple.prefixes.bar.com", "/", Ok(V3)),
            ("multiple.prefixes.foo.com", "/", Ok(V3)),
            ("foo.com", "/", Err(404)),
            ("no.matching.host", "/", Err(404)),
        ])
        .await;
}

#[tokio::test]
async fn http_route_matching_across_routes() {
    let manifests = [
        route(
            INFRA,
            "matching-part1",
            r#"  parentRefs: [{name: same-namespace}]
  hostnames: [example.com, example.net]
  rules: [{matches: [{path: {type: PathPrefix, value: /}}, {headers: [{name: version, value: one}]}], backendRefs: [{name: infra-backend-v1, port: 8080}]}]"#,
        ),
        route(
            INFRA,
            "matching-part2",
            r#"  parentRefs: [{name: same-namespace}]
  hostnames: [example.com]
  rules: [{matches: [{path: {type: PathPrefix, value: /v2}}, {headers: [{name: version, value: two}]}], backendRefs: [{name: infra-backend-v2, port: 8080}]}]"#,
        ),
    ];
    let suite = Suite::start(&manifests.concat()).await;
    let cases: [(&str, &str, Headers, &str); 8] = [
        ("example.com", "/", &[], V1),
        ("example.com", "/example", &[], V1),
        ("example.net", "/example", &[], V1),
        ("example.com", "/example", &[("Version", "one")], V1),
        ("example.com", "/v2", &[], V2),
        ("example.net", "/v2", &[], V1),
        ("example.com", "/v2/example", &[], V2),
        ("example.com", "/", &[("Version", "two")], V2),
    ];
    for (host, target, headers, want) in cases {
        suite.expect(&Case { method: Method::GET, host, target, headers }, Ok(want)).await;
    }
}

#[tokio::test]
async fn http_route_matching() {
    let suite = Suite::start(&route(
        INFRA,
        "matching",
        r#"  parentRefs: [{name: same-namespace}]
  rules:
  - {matches: [{path: {type: PathPrefix, value: /}}, {headers: [{name: version, value: one}]}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{path: {type: PathPrefix, value: /v2}}, {headers: [{name: version, value: two}]}], backendRefs: [{name: infra-backend-v2, port: 8080}]}"#,
    ))
    .await;
    let cases: [(&str, Headers, &str); 9] = [
        ("/", &[], V1),
        ("/example", &[], V1),
        ("/", &[("Version", "one")], V1),
        ("/v2", &[], V2),
        ("/v2/example", &[], V2),
        ("/", &[("Version", "two")], V2),
        ("/v2/", &[], V2),
        ("/v2example", &[], V1),
        ("/foo/v2/example", &[], V1),
    ];
    for (target, headers, want) in cases {
        suite.expect(&Case { method: Method::GET, host: "127.0.0.1", target, headers }, Ok(want)).await;
    }
}

#[tokio::test]
async fn http_route_method_matching() {
    let suite = Suite::start(&route(
        INFRA,
        "method-matching",
        r#"  parentRefs: [{name: same-namespace}]
  rules:
  - {matches: [{method: POST}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{method: GET}], backendRefs: [{name: infra-backend-v2, port: 8080}]}
  - {matches: [{path: {type: PathPrefix, value: /path1}, method: GET}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{headers: [{name: version, value: one}], method: PUT}], backendRefs: [{name: infra-backend-v2, port: 8080}]}
  - {matches: [{path: {type: PathPrefix, value: /path2}, headers: [{name: version, value: two}], method: POST}], backendRefs: [{name: infra-backend-v3, port: 8080}]}
  - matches:
    - {path: {type: PathPrefix, value: /path3}, method: PATCH}
    - {path: {type: PathPrefix, value: /path4}, headers: [{name: version, value: three}], method: DELETE}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - {matches: [{path: {type: PathPrefix, value: /path5}}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{method: PATCH}], backendRefs: [{name: infra-backend-v2, port: 8080}]}
  - {matches: [{headers: [{name: version, value: four}]}], backendRefs: [{name: infra-backend-v3, port: 8080}]}"#,
    ))
    .await;
    let cases: [(Method, &str, Headers, Result<&str, u16>); 12] = [
        (Method::POST, "/", &[], Ok(V1)),
        (Method::GET, "/", &[], Ok(V2)),
        (Method::HEAD, "/", &[], Err(404)),
        (Method::GET, "/path1", &[], Ok(V1)),
        (Method::PUT, "/", &[("version", "one")], Ok(V2)),
        (Method::POST, "/path2", &[("version", "two")], Ok(V3)),
        (Method::PATCH, "/path3", &[], Ok(V1)),
        (Method::DELETE, "/path4", &[("version", "three")], Ok(V1)),
        (Method::PUT, "/", &[], Err(404)),
        (Method::DELETE, "/path4", &[], Err(404)),
        (Method::PATCH, "/path5", &[], Ok(V1)),
        (Method::PATCH, "/", &[("version", "four")], Ok(V2)),
    ];
    for (method, target, headers, want) in cases {
        suite.expect(&Case { method, host: "127.0.0.1", target, headers }, want).await;
    }
}

#[tokio::test]
async fn http_route_query_param_matching() {
    let suite = Suite::start(&route(
        INFRA,
        "query-param-matching",
        r#"  parentRefs: [{name: same-namespace}]
  rules:
  - {matches: [{queryParams: [{name: animal, value: whale}]}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{queryParams: [{name: animal, value: dolphin}]}], backendRefs: [{name: infra-backend-v2, port: 8080}]}
  - matches:
    - {queryParams: [{name: animal, value: dolphin}, {name: color, value: blue}]}
    - {queryParams: [{name: ANIMAL, value: Whale}]}
    backendRefs: [{name: infra-backend-v3, port: 8080}]
  - {matches: [{path: {type: PathPrefix, value: /path1}, queryParams: [{name: animal, value: whale}]}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{headers: [{name: version, value: one}], queryParams: [{name: animal, value: whale}]}], backendRefs: [{name: infra-backend-v2, port: 8080}]}
  - {matches: [{path: {type: PathPrefix, value: /path2}, headers: [{name: version, value: two}], queryParams: [{name: animal, value: whale}]}], backendRefs: [{name: infra-backend-v3, port: 8080}]}
  - matches:
    - {path: {type: PathPrefix, value: /path3}, queryParams: [{name: animal, value: shark}]}
    - {path: {type: PathPrefix, value: /path4}, headers: [{name: version, value: three}], queryParams: [{name: animal, value: kraken}]}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - {matches: [{path: {type: PathPrefix, value: /path5}}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{queryParams: [{name: animal, value: hydra}]}], backendRefs: [{name: infra-backend-v2, port: 8080}]}
  - {matches: [{headers: [{name: version, value: four}]}], backendRefs: [{name: infra-backend-v3, port: 8080}]}"#,
    ))
    .await;
    let cases: [(&str, Headers, Result<&str, u16>); 19] = [
        ("/?animal=whale", &[], Ok(V1)),
        ("/?animal=dolphin", &[], Ok(V2)),
        ("/?animal=dolphin&color=blue", &[], Ok(V3)),
        ("/?ANIMAL=Whale", &[], Ok(V3)),
        ("/?animal=whale&otherparam=irrelevant", &[], Ok(V1)),
        ("/?animal=dolphin&color=yellow", &[], Ok(V2)),
        ("/?color=blue", &[], Err(404)),
        ("/?animal=dog", &[], Err(404)),
        ("/?animal=whaledolphin", &[], Err(404)),
        ("/", &[], Err(404)),
        ("/path1?animal=whale", &[], Ok(V1)),
        ("/?animal=whale", &[("version", "one")], Ok(V2)),
        ("/path2?animal=whale", &[("version", "two")], Ok(V3)),
        ("/path3?animal=shark", &[], Ok(V1)),
        ("/path4?animal=kraken", &[("version", "three")], Ok(V1)),
        ("/?animal=shark", &[], Err(404)),
        ("/path4?animal=kraken", &[], Err(404)),
        ("/path5?animal=hydra", &[], Ok(V1)),
        ("/?animal=hydra", &[("version", "four")], Ok(V3)),
    ];
    for (target, headers, want) in cases {
        suite.expect(&Case { method: Method::GET, host: "127.0.0.1", target, headers }, want).await;
    }
}

#[tokio::test]
async fn http_route_path_match_order() {
    let suite = Suite::start(&route(
        INFRA,
        "path-matching-order",
        r#"  parentRefs: [{name: same-namespace}]
  rules:
  - {matches: [{path: {type: Exact, value: /match}}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{path: {type: Exact, value: /match/exact}}], backendRefs: [{name: infra-backend-v2, port: 8080}]}
  - {matches: [{path: {type: Exact, value: /match/exact/one}}], backendRefs: [{name: infra-backend-v3, port: 8080}]}
  - {matches: [{path: {type: PathPrefix, value: /match/}}], backendRefs: [{name: infra-backend-v3, port: 8080}]}
  - {matches: [{path: {type: PathPrefix, value: /match/prefix/}}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{path: {type: PathPrefix, value: /match/prefix/one}}], backendRefs: [{name: infra-backend-v2, port: 8080}]}"#,
    ))
    .await;
    let h = "127.0.0.1";
    suite
        .expect_gets(&[
            (h, "/match/exact/one", Ok(V3)),
            (h, "/match/exact", Ok(V2)),
            (h, "/match", Ok(V1)),
            (h, "/match/prefix/one/any", Ok(V2)),
            (h, "/match/prefix/any", Ok(V1)),
            (h, "/match/any", Ok(V3)),
        ])
        .await;
}

/// A rule on PathPrefix `prefix` with `filters` (YAML flow), to `backend` (none: no backendRefs).
fn filter_rule(prefix: &str, filters: &str, backend: Option<&str>) -> String {
    let backend = backend.map(|b| format!(", backendRefs: [{{name: {b}, port: 8080}}]")).unwrap_or_default();
    format!(
        "  - {{matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}], filters: [{filters}]{backend}}}\n"
    )
}

/// `spec` of a route on `same-namespace` with these rules.
fn rules_spec(rules: &[String]) -> String {
    format!("  parentRefs: [{{name: same-namespace}}]\n  rules:\n{}", rules.concat().trim_end())
}

#[tokio::test]
async fn http_route_request_header_modifier() {
    let modify = |spec: &str| format!("{{type: RequestHeaderModifier, requestHeaderModifier: {spec}}}");
    let rules = [
        filter_rule("/set", &modify("{set: [{name: X-Header-Set, value: set-overwrites-values}]}"), Some(V1)),
        filter_rule("/add", &modify("{add: [{name: X-Header-Add, value: add-appends-values}]}"), Some(V1)),
        filter_rule("/remove", &modify("{remove: [X-Header-Remove]}"), Some(V1)),
        filter_rule(
            "/multiple",
            &modify(
                "{set: [{name: X-Header-Set-1, value: header-set-1}, {name: X-Header-Set-2, value: header-set-2}], \
                 add: [{name: X-Header-Add-1, value: header-add-1}, {name: X-Header-Add-2, value: header-add-2}, {name: X-Header-Add-3, value: header-add-3}], \
                 remove: [X-Header-Remove-1, X-Header-Remove-2]}",
            ),
            Some(V1),
        ),
        filter_rule(
            "/case-insensitivity",
            &modify(
                "{set: [{name: X-Header-Set, value: header-set}], add: [{name: X-Header-Add, value: header-add}], remove: [X-Header-Remove]}",
            ),
            Some(V1),
        ),
    ];
    let suite = Suite::start(&route(INFRA, "request-header-modifier", &rules_spec(&rules))).await;
    // (path, request headers, headers the backend must see, headers it must not). Upstream
    // expects an added value as "old,new"; this echo joins repeated headers with ", ".
    let cases: [(&str, Headers, Headers, &[&str]); 7] = [
        (
            "/set",
            &[("Some-Other-Header", "val")],
            &[("Some-Other-Header", "val"), ("X-Header-Set", "set-overwrites-values")],
            &[],
        ),
        (
            "/set",
            &[("Some-Other-Header", "val"), ("X-Header-Set", "some-other-value")],
            &[("Some-Other-Header", "val"), ("X-Header-Set", "set-overwrites-values")],
            &[],
        ),
        (
            "/add",
            &[("Some-Other-Header", "val")],
            &[("Some-Other-Header", "val"), ("X-Header-Add", "add-appends-values")],
            &[],
        ),
        (
            "/add",
            &[("Some-Other-Header", "val"), ("X-Header-Add", "some-other-value")],
            &[("Some-Other-Header", "val"), ("X-Header-Add", "some-other-value, add-appends-values")],
            &[],
        ),
        ("/remove", &[("X-Header-Remove", "val")], &[], &["X-Header-Remove"]),
        (
            "/multiple",
            &[
                ("X-Header-Set-2", "set-val-2"),
                ("X-Header-Add-2", "add-val-2"),
                ("X-Header-Remove-2", "remove-val-2"),
                ("Another-Header", "another-header-val"),
            ],
            &[
                ("X-Header-Set-1", "header-set-1"),
                ("X-Header-Set-2", "header-set-2"),
                ("X-Header-Add-1", "header-add-1"),
                ("X-Header-Add-2", "add-val-2, header-add-2"),
                ("X-Header-Add-3", "header-add-3"),
                ("Another-Header", "another-header-val"),
            ],
            &["X-Header-Remove-1", "X-Header-Remove-2"],
        ),
        (
            "/case-insensitivity",
            &[
                ("x-header-set", "original-val-set"),
                ("x-header-add", "original-val-add"),
                ("x-header-remove", "original-val-remove"),
                ("Another-Header", "another-header-val"),
            ],
            &[
                ("X-Header-Set", "header-set"),
                ("X-Header-Add", "original-val-add, header-add"),
                ("Another-Header", "another-header-val"),
            ],
            &["X-Header-Remove"],
        ),
    ];
    for (path, headers, want, absent) in cases {
        let case = Case { method: Method::GET, host: "127.0.0.1", target: path, headers };
        let seen = suite.reach(&case, V1).await;
        assert_seen_headers(&seen, want, absent, &describe(&case));
    }
}

#[tokio::test]
async fn http_route_response_header_modifier() {
    let modify = |spec: &str| format!("{{type: ResponseHeaderModifier, responseHeaderModifier: {spec}}}");
    let rules = [
        filter_rule("/set", &modify("{set: [{name: X-Header-Set, value: set-overwrites-values}]}"), Some(V1)),
        filter_rule("/add", &modify("{add: [{name: X-Header-Add, value: add-appends-values}]}"), Some(V1)),
        filter_rule("/remove", &modify("{remove: [X-Header-Remove]}"), Some(V1)),
        filter_rule(
            "/multiple",
            &modify(
                "{set: [{name: X-Header-Set-1, value: header-set-1}, {name: X-Header-Set-2, value: header-set-2}], \
                 add: [{name: X-Header-Add-1, value: header-add-1}, {name: X-Header-Add-2, value: header-add-2}, {name: X-Header-Add-3, value: header-add-3}], \
                 remove: [X-Header-Remove-1, X-Header-Remove-2]}",
            ),
            Some(V1),
        ),
        filter_rule(
            "/case-insensitivity",
            &modify(
                "{set: [{name: X-Header-Set, value: header-set}], \
                 add: [{name: X-Header-Add, value: header-add}, {name: x-lowercase-add, value: lowercase-add}, {name: x-Mixedcase-ADD-1, value: mixedcase-add-1}, \
                 {name: X-mixeDcase-add-2, value: mixedcase-add-2}, {name: X-UPPERCASE-ADD, value: uppercase-add}], \
                 remove: [X-Header-Remove]}",
            ),
            Some(V1),
        ),
        filter_rule(
            "/response-and-request-header-modifiers",
            &format!(
                "{}, {{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: X-Header-Set, value: set-overwrites-values}}], \
                 add: [{{name: X-Header-Add, value: header-val-1}}, {{name: X-Header-Add-Append, value: header-val-2}}], remove: [X-Header-Remove]}}}}",
                modify(
                    "{set: [{name: X-Header-Set-1, value: header-set-1}, {name: X-Header-Set-2, value: header-set-2}], \
                     add: [{name: X-Header-Add-1, value: header-add-1}, {name: X-Header-Add-2, value: header-add-2}], \
                     remove: [X-Header-Remove-1, X-Header-Remove-2]}"
                )
            ),
            Some(V1),
        ),
    ];
    // hawser's echo cannot be told which response headers to send: v1 is a stand-in that can.
    let suite = Suite::start_with(
        &route(INFRA, "response-header-modifier", &rules_spec(&rules)),
        vec![(V1, header_echo(V1).await)],
    )
    .await;
    // (path, what the backend sets in `X-Echo-Set-Header` form, other request headers, response
    // headers the client must see, with values joined by "," as upstream does, and must not see).
    let cases: [(&str, &str, Headers, Headers, &[&str]); 8] = [
        (
            "/set",
            "Some-Other-Header:val",
            &[],
            &[("Some-Other-Header", "val"), ("X-Header-Set", "set-overwrites-values")],
            &[],
        ),
        (
            "/set",
            "Some-Other-Header:val,X-Header-Set:some-other-value",
            &[],
            &[("Some-Other-Header", "val"), ("X-Header-Set", "set-overwrites-values")],
            &[],
        ),
        (
            "/add",
            "Some-Other-Header:val",
            &[],
            &[("Some-Other-Header", "val"), ("X-Header-Add", "add-appends-values")],
            &[],
        ),
        (
            "/add",
            "Some-Other-Header:val,X-Header-Add:some-other-value",
            &[],
            &[("Some-Other-Header", "val"), ("X-Header-Add", "some-other-value,add-appends-values")],
            &[],
        ),
        ("/remove", "X-Header-Remove:val", &[], &[], &["X-Header-Remove"]),
        (
            "/multiple",
            "X-Header-Set-2:set-val-2,X-Header-Add-2:add-val-2,X-Header-Remove-2:remove-val-2,Another-Header:another-header-val,X-Header-Remove-1:val",
            &[],
            &[
                ("X-Header-Set-1", "header-set-1"),
                ("X-Header-Set-2", "header-set-2"),
                ("X-Header-Add-1", "header-add-1"),
                ("X-Header-Add-2", "add-val-2,header-add-2"),
                ("X-Header-Add-3", "header-add-3"),
                ("Another-Header", "another-header-val"),
            ],
            &["X-Header-Remove-1", "X-Header-Remove-2"],
        ),
        (
            "/case-insensitivity",
            "x-header-set:original-val-set,x-header-add:original-val-add,x-header-remove:original-val-remove,Another-Header:another-header-val",
            &[],
            &[
                ("X-Header-Set", "header-set"),
                ("X-Header-Add", "original-val-add,header-add"),
                ("X-Lowercase-Add", "lowercase-add"),
                ("X-Mixedcase-Add-1", "mixedcase-add-1"),
                ("X-Mixedcase-Add-2", "mixedcase-add-2"),
                ("X-Uppercase-Add", "uppercase-add"),
                ("Another-Header", "another-header-val"),
            ],
            &["X-Header-Remove"],
        ),
        (
            "/response-and-request-header-modifiers",
            "X-Header-Set-2:set-val-2,X-Header-Add-2:add-val-2,X-Header-Remove-2:remove-val-2,Another-Header:another-header-val,X-Header-Remove-1:remove-val-1,X-Header-Echo:echo",
            &[
                ("X-Header-Remove", "remove-val"),
                ("X-Header-Add-Append", "append-val-1"),
                ("X-Header-Echo", "echo"),
            ],
            &[
                ("X-Header-Set-1", "header-set-1"),
                ("X-Header-Set-2", "header-set-2"),
                ("X-Header-Add-1", "header-add-1"),
                ("X-Header-Add-2", "add-val-2,header-add-2"),
                ("Another-Header", "another-header-val"),
                ("X-Header-Echo", "echo"),
            ],
            &["X-Header-Remove-1", "X-Header-Remove-2"],
        ),
    ];
    for (path, sets, extra, want, absent) in cases {
        let headers = [&[("X-Echo-Set-Header", sets)][..], extra].concat();
        let case = Case { method: Method::GET, host: "127.0.0.1", target: path, headers: &headers };
        let what = describe(&case);
        let (status, response, body) = suite.send(&case).await;
        assert_eq!(status, StatusCode::OK, "{what}");
        let seen = seen(&body);
        assert_eq!((seen.name.as_str(), target(&seen).as_str()), (V1, path), "{what}");
        for (name, value) in want {
            let values: Vec<&str> = response.get_all(*name).iter().map(|v| v.to_str().unwrap()).collect();
            assert_eq!(values.join(","), *value, "{what}: response header {name}");
        }
        for name in absent {
            assert!(!response.contains_key(*name), "{what}: response header {name} not removed");
        }
        if !extra.is_empty() {
            // Upstream's "append-val-1,header-val-2": this echo joins with ", ".
            let want = [
                ("X-Header-Add", "header-val-1"),
                ("X-Header-Set", "set-overwrites-values"),
                ("X-Header-Add-Append", "append-val-1, header-val-2"),
                ("X-Header-Echo", "echo"),
            ];
            assert_seen_headers(&seen, &want, &["X-Header-Remove"], &what);
        }
    }
}

/// `RequestRedirect` with `spec` (YAML flow mapping).
fn redirect(spec: &str) -> String {
    format!("{{type: RequestRedirect, requestRedirect: {spec}}}")
}

#[tokio::test]
async fn http_route_redirect_host_and_status() {
    let rules = [
        filter_rule("/hostname-redirect", &redirect("{hostname: example.org}"), None),
        filter_rule("/host-and-status", &redirect("{statusCode: 301, hostname: example.org}"), None),
    ];
    let suite = Suite::start(&route(INFRA, "redirect-host-and-status", &rules_spec(&rules))).await;
    let org = Some("example.org");
    suite
        .expect_redirects(&[
            ("/hostname-redirect", 302, "http", org, None, "/hostname-redirect"),
            ("/host-and-status", 301, "http", org, None, "/host-and-status"),
        ])
        .await;
}

#[tokio::test]
async fn http_route_redirect_path() {
    let rules = [
        filter_rule(
            "/original-prefix",
            &redirect("{path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}"),
            None,
        ),
        filter_rule(
            "/full",
            &redirect("{path: {type: ReplaceFullPath, replaceFullPath: /full-path-replacement}}"),
            None,
        ),
        filter_rule(
            "/path-and-host",
            &redirect(
                "{hostname: example.org, path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}",
            ),
            None,
        ),
        filter_rule(
            "/path-and-status",
            &redirect(
                "{path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}, statusCode: 301}",
            ),
            None,
        ),
        filter_rule(
            "/full-path-and-host",
            &redirect(
                "{hostname: example.org, path: {type: ReplaceFullPath, replaceFullPath: /replacement-full}}",
            ),
            None,
        ),
        filter_rule(
            "/full-path-and-status",
            &redirect("{path: {type: ReplaceFullPath, replaceFullPath: /replacement-full}, statusCode: 301}"),
            None,
        ),
    ];
    let suite = Suite::start(&route(INFRA, "redirect-path", &rules_spec(&rules))).await;
    let org = Some("example.org");
    suite
        .expect_redirects(&[
            ("/original-prefix/lemon", 302, "http", None, None, "/replacement-prefix/lemon"),
            ("/full/path/original", 302, "http", None, None, "/full-path-replacement"),
            ("/path-and-host", 302, "http", org, None, "/replacement-prefix"),
            ("/path-and-status", 301, "http", None, None, "/replacement-prefix"),
            ("/full-path-and-host", 302, "http", org, None, "/replacement-full"),
            ("/full-path-and-status", 301, "http", None, None, "/replacement-full"),
        ])
        .await;
}

#[tokio::test]
async fn http_route_redirect_port() {
    let rules = [
        filter_rule("/port", &redirect("{port: 8083}"), None),
        filter_rule("/port-and-host", &redirect("{hostname: example.org, port: 8083}"), None),
        filter_rule("/port-and-status", &redirect("{port: 8083, statusCode: 301}"), None),
        filter_rule(
            "/port-and-host-and-status",
            &redirect("{port: 8083, hostname: example.org, statusCode: 302}"),
            None,
        ),
    ];
    let suite = Suite::start(&route(INFRA, "redirect-port", &rules_spec(&rules))).await;
    let (org, port) = (Some("example.org"), Some(8083));
    suite
        .expect_redirects(&[
            ("/port", 302, "http", None, port, "/port"),
            ("/port-and-host", 302, "http", org, port, "/port-and-host"),
            ("/port-and-status", 301, "http", None, port, "/port-and-status"),
            ("/port-and-host-and-status", 302, "http", org, port, "/port-and-host-and-status"),
        ])
        .await;
}

#[tokio::test]
async fn http_route_redirect_scheme() {
    let rules = [
        filter_rule("/scheme", &redirect("{scheme: https}"), None),
        filter_rule("/scheme-and-host", &redirect("{hostname: example.org, scheme: https}"), None),
        filter_rule("/scheme-and-status", &redirect("{scheme: https, statusCode: 301}"), None),
        filter_rule(
            "/scheme-and-host-and-status",
            &redirect("{scheme: https, statusCode: 302, hostname: example.org}"),
            None,
        ),
    ];
    let suite = Suite::start(&route(INFRA, "redirect-scheme", &rules_spec(&rules))).await;
    let org = Some("example.org");
    suite
        .expect_redirects(&[
            ("/scheme", 302, "https", None, None, "/scheme"),
            ("/scheme-and-host", 302, "https", org, None, "/scheme-and-host"),
            ("/scheme-and-status", 301, "https", None, None, "/scheme-and-status"),
            ("/scheme-and-host-and-status", 302, "https", org, None, "/scheme-and-host-and-status"),
        ])
        .await;
}

/// The `RequestHeaderModifier` the rewrite tests pair with a rewrite.
const MODIFY_HEADERS: &str = "{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Header-Set, value: set-overwrites-values}], \
     add: [{name: X-Header-Add, value: header-val-1}, {name: X-Header-Add-Append, value: header-val-2}], remove: [X-Header-Remove]}}";

/// What the backend must see after [`MODIFY_HEADERS`] (upstream's "append-val-1,header-val-2":
/// this echo joins repeated headers with ", ").
const MODIFIED: Headers<'static> = &[
    ("X-Header-Add", "header-val-1"),
    ("X-Header-Add-Append", "append-val-1, header-val-2"),
    ("X-Header-Set", "set-overwrites-values"),
];

#[tokio::test]
async fn http_route_rewrite_host() {
    let rewrite = |host: &str| format!("{{type: URLRewrite, urlRewrite: {{hostname: {host}}}}}");
    let spec = format!(
        "  parentRefs: [{{name: same-namespace}}]\n  hostnames: [rewrite.example]\n  rules:\n{}  - {{filters: [{}], backendRefs: [{{name: infra-backend-v2, port: 8080}}]}}\n{}",
        filter_rule("/one", &rewrite("one.example.org"), Some(V1)),
        rewrite("example.org"),
        filter_rule(
            "/rewrite-host-and-modify-headers",
            &format!("{}, {MODIFY_HEADERS}", rewrite("test.example.org")),
            Some(V2)
        )
        .trim_end(),
    );
    let suite = Suite::start(&route(INFRA, "rewrite-host", &spec)).await;
    // (path, request headers, backend, the Host it sees, headers it must see).
    let cases: [(&str, Headers, &str, &str, Headers); 3] = [
        ("/one", &[], V1, "one.example.org", &[]),
        ("/two", &[], V2, "example.org", &[]),
        (
            "/rewrite-host-and-modify-headers",
            &[("X-Header-Remove", "remove-val"), ("X-Header-Add-Append", "append-val-1")],
            V2,
            "test.example.org",
            MODIFIED,
        ),
    ];
    for (path, headers, backend, host, want) in cases {
        let case = Case { method: Method::GET, host: "rewrite.example", target: path, headers };
        let seen = suite.reach(&case, backend).await;
        assert_eq!(seen.host.as_deref(), Some(host), "{}", describe(&case));
        assert_seen_headers(&seen, want, &["X-Header-Remove"], &describe(&case));
    }
}

#[tokio::test]
async fn http_route_rewrite_path() {
    let prefix = |to: &str| {
        format!(
            "{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: {to}}}}}}}"
        )
    };
    let full = |to: &str| {
        format!(
            "{{type: URLRewrite, urlRewrite: {{path: {{type: ReplaceFullPath, replaceFullPath: {to}}}}}}}"
        )
    };
    let rules = [
        filter_rule("/prefix/one", &prefix("/one"), Some(V1)),
        filter_rule("/strip-prefix", &prefix("/"), Some(V1)),
        filter_rule("/full/one", &full("/one"), Some(V1)),
        filter_rule(
            "/full/rewrite-path-and-modify-headers",
            &format!("{}, {MODIFY_HEADERS}", full("/test")),
            Some(V1),
        ),
        filter_rule(
            "/prefix/rewrite-path-and-modify-headers",
            &format!("{}, {MODIFY_HEADERS}", prefix("/prefix")),
            Some(V1),
        ),
    ];
    let suite = Suite::start(&route(INFRA, "rewrite-path", &rules_spec(&rules))).await;
    let modify: Headers = &[
        ("X-Header-Remove", "remove-val"),
        ("X-Header-Add-Append", "append-val-1"),
        ("X-Header-Set", "set-val"),
    ];
    // (path, request headers, the path the backend sees, headers it must see).
    let cases: [(&str, Headers, &str, Headers); 6] = [
        ("/prefix/one/two", &[], "/one/two", &[]),
        ("/strip-prefix/three", &[], "/three", &[]),
        ("/strip-prefix", &[], "/", &[]),
        ("/full/one/two", &[], "/one", &[]),
        ("/full/rewrite-path-and-modify-headers/test", modify, "/test", MODIFIED),
        ("/prefix/rewrite-path-and-modify-headers/one", modify, "/prefix/one", MODIFIED),
    ];
    for (path, headers, rewritten, want) in cases {
        let case = Case { method: Method::GET, host: "127.0.0.1", target: path, headers };
        let what = describe(&case);
        let seen = suite.answer(&case).await.unwrap_or_else(|status| panic!("{what}: {status}"));
        assert_eq!((seen.name.as_str(), target(&seen).as_str()), (V1, rewritten), "{what}");
        assert_seen_headers(&seen, want, &["X-Header-Remove"], &what);
    }
}

#[tokio::test]
async fn http_route_weight() {
    let suite = Suite::start(&route(
        INFRA,
        "weighted-backends",
        r#"  parentRefs: [{name: same-namespace}]
  rules:
  - backendRefs:
    - {name: infra-backend-v1, port: 8080, weight: 70}
    - {name: infra-backend-v2, port: 8080, weight: 30}
    - {name: infra-backend-v3, port: 8080, weight: 0}"#,
    ))
    .await;
    // Upstream sends 500 requests and allows ±0.05 of each share; 200 here, with ±0.1.
    const REQUESTS: usize = 200;
    let mut counts = BTreeMap::<String, usize>::new();
    for _ in 0..REQUESTS {
        let name = suite
            .backend(&get_case("127.0.0.1", "/"))
            .await
            .unwrap_or_else(|status| panic!("GET /: {status}"));
        *counts.entry(name).or_default() += 1;
    }
    for (backend, share) in [(V1, 0.7), (V2, 0.3)] {
        let got = counts.remove(backend).unwrap_or_default() as f64 / REQUESTS as f64;
        assert!((got - share).abs() <= 0.1, "{backend} got {got} of the requests, not about {share}");
    }
    assert!(counts.is_empty(), "weight 0 or unknown backends were sent requests: {counts:?}");
}

/// A route in infra on `same-namespace` with one rule to `backend_ref` (YAML flow mapping).
fn one_backend_route(name: &str, backend_ref: &str) -> String {
    route(
        INFRA,
        name,
        &format!("  parentRefs: [{{name: same-namespace}}]\n  rules: [{{backendRefs: [{backend_ref}]}}]"),
    )
}

const GW_GROUP: &str = "gateway.networking.k8s.io";

#[tokio::test]
async fn http_route_invalid_cross_namespace_backend_ref() {
    let route = one_backend_route(
        "invalid-cross-namespace-backend-ref",
        "{name: web-backend, namespace: gateway-conformance-web-backend, port: 8080}",
    );
    let suite = Suite::start(&route).await;
    suite.expect_gets(&[("127.0.0.1", "/", Err(500))]).await;
}

#[tokio::test]
async fn http_route_invalid_reference_grant() {
    let from = (GW_GROUP, "HTTPRoute", INFRA);
    let to = ("", "Service", "web-backend");
    let manifests = [
        one_backend_route(
            "reference-grant",
            "{name: web-backend, namespace: gateway-conformance-web-backend, port: 8080}",
        ),
        grant(INFRA, "reference-grant-wrong-namespace", from, to),
        grant(
            WEB,
            "reference-grant-wrong-from-group",
            ("not-the-group-youre-looking-for", "HTTPRoute", INFRA),
            to,
        ),
        grant(WEB, "reference-grant-wrong-from-kind", (GW_GROUP, "Gateway", INFRA), to),
        grant(
            WEB,
            "reference-grant-wrong-from-namespace",
            (GW_GROUP, "HTTPRoute", "not-the-namespace-youre-looking-for"),
            to,
        ),
        grant(
            WEB,
            "reference-grant-wrong-to-group",
            from,
            ("not-the-group-youre-looking-for", "Service", "web-backend"),
        ),
        grant(WEB, "reference-grant-wrong-to-kind", from, ("", "Secret", "web-backend")),
        grant(
            WEB,
            "reference-grant-wrong-to-name",
            from,
            ("", "Secret", "not-the-service-youre-looking-for"),
        ),
    ];
    let suite = Suite::start(&manifests.concat()).await;
    suite.expect_gets(&[("127.0.0.1", "/", Err(500))]).await;
}

#[tokio::test]
async fn http_route_reference_grant() {
    let route = one_backend_route(
        "reference-grant",
        "{name: web-backend, namespace: gateway-conformance-web-backend, port: 8080}",
    );
    let grant = grant(WEB, "reference-grant", (GW_GROUP, "HTTPRoute", INFRA), ("", "Service", "web-backend"));
    let suite = Suite::start(&format!("{route}{grant}")).await;
    suite.expect_gets(&[("127.0.0.1", "/", Ok("web-backend"))]).await;
    // Upstream then deletes the ReferenceGrant.
    write(&suite.dir, "test.yaml", &route);
    let suite = &suite;
    eventually_async(|| async move {
        suite.backend(&get_case("127.0.0.1", "/")).await == Err(StatusCode::INTERNAL_SERVER_ERROR)
    })
    .await;
}

#[tokio::test]
async fn http_route_partially_invalid_via_invalid_reference_grant() {
    let manifests = [
        grant(
            APP,
            "invalid-reference-grant",
            (GW_GROUP, "HTTPRoute", INFRA),
            ("", "Service", "app-backend-v1"),
        ),
        route(
            INFRA,
            "invalid-reference-grant",
            r#"  parentRefs: [{name: same-namespace}]
  rules:
  - {matches: [{path: {type: PathPrefix, value: /v2}}], backendRefs: [{name: app-backend-v2, namespace: gateway-conformance-app-backend, port: 8080}]}
  - {backendRefs: [{name: app-backend-v1, namespace: gateway-conformance-app-backend, port: 8080}]}"#,
        ),
    ];
    let suite = Suite::start(&manifests.concat()).await;
    suite.expect_gets(&[("127.0.0.1", "/v2", Err(500)), ("127.0.0.1", "/", Ok("app-backend-v1"))]).await;
}

#[tokio::test]
async fn http_route_invalid_non_existent_backend_ref() {
    let route = one_backend_route(
        "invalid-nonexistent-backend-ref",
        "{name: nonexistent, namespace: gateway-conformance-infra, port: 8080}",
    );
    let suite = Suite::start(&route).await;
    suite.expect_gets(&[("127.0.0.1", "/", Err(500))]).await;
}

#[tokio::test]
async fn http_route_invalid_backend_ref_unknown_kind() {
    let route = one_backend_route(
        "invalid-backend-ref-unknown-kind",
        "{group: unknownkind.example.com, kind: NonExistent, name: infra-backend-v1, port: 8080}",
    );
    let suite = Suite::start(&route).await;
    suite.expect_gets(&[("127.0.0.1", "/v2", Err(500))]).await;
}

#[tokio::test]
async fn http_route_https_listener() {
    let manifests = [
        route(
            INFRA,
            "httproute-https-test",
            "  parentRefs: [{name: same-namespace-with-https-listener}]\n  hostnames: [example.org]\n  rules: [{backendRefs: [{name: infra-backend-v1, port: 8080}]}]",
        ),
        route(
            INFRA,
            "httproute-https-test-no-hostname",
            "  parentRefs: [{name: same-namespace-with-https-listener, sectionName: https-with-hostname}]\n  rules: [{backendRefs: [{name: infra-backend-v2, port: 8080}]}]",
        ),
    ];
    let suite = Suite::start(&manifests.concat()).await;
    for (host, want) in
        [("example.org", Ok(V1)), ("unknown-example.org", Err(404)), ("second-example.org", Ok(V2))]
    {
        let (status, _, body) = suite.send_tls(host, "/").await;
        let got = if status == StatusCode::OK { Ok(seen(&body).name) } else { Err(status.as_u16()) };
        assert_eq!(got, want.map(str::to_owned), "GET https://{host}/");
        // The listener's certificate (upstream checks it with the suite's CA), even for the
        // listener without a hostname, whose certificate is served for names no other has.
        let stream = tls_connect(suite.hawser.addr("proxy-tls"), host, &[b"http/1.1"]).await;
        assert_eq!(presented(&stream), suite.certificate, "certificate for {host}");
    }
}

#[tokio::test]
async fn http_route_backend_protocol_web_socket() {
    let suite =
        Suite::start(&one_backend_route("backend-protocol-ws", "{name: infra-backend-v1, port: 8082}")).await;
    let origin = [("origin", "ws://gateway/HTTPRouteBackendProtocolWebSocket")];
    // Upstream wants 3 passes in a row.
    for _ in 0..3 {
        let (mut ws, _) = ws_connect(suite.proxy(), "127.0.0.1", "/ws", &origin).await.unwrap();
        for message in [Message::text("Websocket Support!"), Message::binary(vec![1u8, 2, 3, 4, 5, 6, 7])] {
            ws.send(message.clone()).await.unwrap();
            let reply =
                tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("no reply within 5 s");
            assert_eq!(reply.unwrap().unwrap(), message);
        }
    }
}

#[tokio::test]
async fn gateway_http_listener_isolation() {
    let listeners = [
        ("empty-hostname", None),
        ("wildcard-example-com", Some("*.example.com")),
        ("wildcard-foo-example-com", Some("*.foo.example.com")),
        ("abc-foo-example-com", Some("abc.foo.example.com")),
    ];
    // Upstream's two manifests: routes without hostnames, and routes whose hostnames intersect
    // every listener's.
    let variants = [
        ("http-listener-isolation", "", ""),
        (
            "http-listener-isolation-with-hostname-intersection",
            "-with-hostname-intersection",
            r#"  hostnames: [bar.com, "*.example.com", "*.foo.example.com", abc.foo.example.com]
"#,
        ),
    ];
    for (gw, suffix, hostnames) in variants {
        let mut manifests = gateway(gw, "All", &listeners);
        for (listener, _) in listeners {
            manifests += &route(
                INFRA,
                &format!("attaches-to-{listener}{suffix}"),
                &format!(
                    "  parentRefs: [{{name: {gw}, namespace: gateway-conformance-infra, sectionName: {listener}}}]\n{hostnames}  rules: [{{matches: [{{path: {{type: PathPrefix, value: /{listener}}}}}], backendRefs: [{{name: infra-backend-v1, port: 8080}}]}}]"
                ),
            );
        }
        let suite = Suite::start(&manifests).await;
        // Each host is served only by its most specific listener's route.
        for (host, served) in [
            ("bar.com", "empty-hostname"),
            ("bar.example.com", "wildcard-example-com"),
            ("bar.foo.example.com", "wildcard-foo-example-com"),
            ("abc.foo.example.com", "abc-foo-example-com"),
        ] {
            for (listener, _) in listeners {
                let path = format!("/{listener}");
                let want = if listener == served { Ok(V1) } else { Err(404) };
                suite.expect(&get_case(host, &path), want).await;
            }
        }
    }
}
