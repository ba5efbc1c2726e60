//! Authentication as ingress-nginx users configure it, through the proxy: `auth-type: basic`
//! with an htpasswd Secret (Apache MD5 and bcrypt, as `htpasswd` and Helm write them),
//! `auth-type: digest` with an htdigest Secret (curl as the client), and
//! `auth-url` with a real little authorisation service — `401`/`403` passed through, a sign-in
//! redirect, `2xx` proxied with the service's headers, a failing service answered `500`, and
//! WebSocket upgrades authorised the same way.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use common::*;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::Full;

/// `foo:bar` (Apache MD5, `openssl passwd -apr1`) and `helm:open sesame` (bcrypt).
const HTPASSWD: &str = "foo:$apr1$ThxqcMHd$w/xSQCerIEDF9eKiRszvZ1\nhelm:$2b$04$Jmk2Tsa.0enryOdBFTGGuOfqDauRE7YdWWM9X72wnclZxez44hZOW\n";

/// The echo Service, a Secret `users` with `data`, and an Ingress for `a.test` `/` with
/// `annotations` (the nginx prefix added).
fn yaml(echo: SocketAddr, secret: &[(&str, &str)], annotations: &[(&str, &str)]) -> String {
    let engine = base64::engine::general_purpose::STANDARD;
    let data: String = secret.iter().map(|(k, v)| format!("  {k}: {}\n", engine.encode(v))).collect();
    let annotations: String =
        annotations.iter().map(|(k, v)| format!("    nginx.ingress.kubernetes.io/{k}: {v:?}\n")).collect();
    [
        service_yaml("echo", echo),
        format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: users}}\ntype: Opaque\ndata:\n{data}"),
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\n  annotations:\n{annotations}spec:\n  ingressClassName: hawser\n  rules:\n  - host: a.test\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: echo, port: {{name: http}}}}}}}}\n"
        ),
    ]
    .join("---\n")
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

async fn get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, bytes::Bytes) {
    let mut req = Request::get(path).header("host", "a.test");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    request(addr, req.body(Full::default()).unwrap()).await
}

#[tokio::test]
async fn basic_auth_asks_for_credentials_and_lets_the_right_ones_through() {
    let echo = echo("a").await;
    let annotations = [("auth-type", "basic"), ("auth-secret", "users"), ("auth-realm", "Staff only")];
    let proxy = TestProxy::start(build_table(&yaml(echo.addr, &[("auth", HTPASSWD)], &annotations))).await;
    let (status, headers, _) = get_with(proxy.addr, "/", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Basic realm=\"Staff only\"");
    for wrong in [basic("foo", "baz"), basic("nobody", "bar"), "Bearer x".to_owned(), "Basic !!".to_owned()] {
        assert_eq!(
            get_with(proxy.addr, "/", &[("authorization", &wrong)]).await.0,
            StatusCode::UNAUTHORIZED,
            "{wrong}"
        );
    }
    let (status, _, body) = get_with(proxy.addr, "/x", &[("authorization", &basic("foo", "bar"))]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen(&body).path, "/x");
    // bcrypt, twice: the second answer comes from the remembered check, and is the same.
    for _ in 0..2 {
        let helm = basic("helm", "open sesame");
        assert_eq!(get_with(proxy.addr, "/", &[("authorization", &helm)]).await.0, StatusCode::OK);
    }
    assert_eq!(
        get_with(proxy.addr, "/", &[("authorization", &basic("helm", "open"))]).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A WebSocket handshake needs the credentials too.
    assert_eq!(ws_refused(proxy.addr, "a.test", "/", &[]).await.status(), StatusCode::UNAUTHORIZED);
    let authorized = basic("foo", "bar");
    assert!(ws_connect(proxy.addr, "a.test", "/", &[("authorization", &authorized)]).await.is_ok());
}

/// curl's status for `url` with `args`, as a user would call it.
fn curl(args: &[&str], url: &str) -> String {
    let output = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "-H", "Host: a.test"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn digest_auth_with_an_htdigest_secret_and_curl_as_the_client() {
    let echo = echo("a").await;
    // `htdigest -c auth Staff foo` with password bar: MD5("foo:Staff:bar").
    let htdigest =
        "foo:Staff:924b159c8d9e88ffb55a413b07d5be0f\nother:Elsewhere:924b159c8d9e88ffb55a413b07d5be0f\n";
    let annotations = [("auth-type", "digest"), ("auth-secret", "users"), ("auth-realm", "Staff")];
    let proxy = TestProxy::start(build_table(&yaml(echo.addr, &[("auth", htdigest)], &annotations))).await;
    let (status, headers, _) = get_with(proxy.addr, "/", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.starts_with("Digest realm=\"Staff\", qop=\"auth\", algorithm=MD5, nonce=\""),
        "{challenge}"
    );
    let url = format!("http://{}/private?x=1", proxy.addr);
    let addr = proxy.addr;
    let statuses = tokio::task::spawn_blocking(move || {
        [
            curl(&["--digest", "-u", "foo:bar"], &url),
            curl(&["--digest", "-u", "foo:wrong"], &url),
            curl(&["--digest", "-u", "other:bar"], &url),
            curl(&["--basic", "-u", "foo:bar"], &format!("http://{addr}/")),
        ]
    })
    .await
    .unwrap();
    assert_eq!(statuses, ["200", "401", "401", "401"]);
}

#[tokio::test]
async fn an_auth_map_secret_and_a_missing_secret() {
    let echo = echo("a").await;
    let map = [("auth-type", "basic"), ("auth-secret", "users"), ("auth-secret-type", "auth-map")];
    let users = [("foo", "$apr1$ThxqcMHd$w/xSQCerIEDF9eKiRszvZ1")];
    let proxy = TestProxy::start(build_table(&yaml(echo.addr, &users, &map))).await;
    assert_eq!(get_with(proxy.addr, "/", &[("authorization", &basic("foo", "bar"))]).await.0, StatusCode::OK);
    assert_eq!(get_with(proxy.addr, "/", &[]).await.0, StatusCode::UNAUTHORIZED);
    // Named but not there (or without the `auth` key): never served without the check.
    let other = [("auth-type", "basic"), ("auth-secret", "missing")];
    proxy.publish(build_table(&yaml(echo.addr, &users, &other)));
    assert_eq!(
        get_with(proxy.addr, "/", &[("authorization", &basic("foo", "bar"))]).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let no_auth_key = [("auth-type", "basic"), ("auth-secret", "users")];
    proxy.publish(build_table(&yaml(echo.addr, &users, &no_auth_key)));
    assert_eq!(get_with(proxy.addr, "/", &[]).await.0, StatusCode::SERVICE_UNAVAILABLE);
}

/// What the authorisation service saw: `X-Original-URL`, `X-Original-Method`, `Host`.
type Asked = Arc<Mutex<Vec<(String, String, String)>>>;

/// An authorisation service: `Bearer good` → 200 naming alice, `Bearer bad` → 403, `Bearer
/// broken` → 502, anything else → 401 with a Bearer challenge.
async fn auth_service() -> (Server, Asked) {
    let asked: Asked = Arc::default();
    let recorded = asked.clone();
    let server = backend(move |req| {
        let recorded = recorded.clone();
        async move {
            let header = |name: &str| {
                req.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
            };
            recorded.lock().unwrap().push((
                header("x-original-url"),
                header("x-original-method"),
                header("host"),
            ));
            let (status, user) = match header("authorization").as_str() {
                "Bearer good" => (StatusCode::OK, Some("alice")),
                "Bearer bad" => (StatusCode::FORBIDDEN, None),
                "Bearer broken" => (StatusCode::BAD_GATEWAY, None),
                _ => (StatusCode::UNAUTHORIZED, None),
            };
            let mut response = http::Response::builder().status(status);
            if let Some(user) = user {
                response = response
                    .header("x-auth-request-user", user)
                    .header("set-cookie", "_oauth2_proxy=refreshed; Path=/");
            }
            if status == StatusCode::UNAUTHORIZED {
                response = response.header("www-authenticate", "Bearer realm=\"api\"");
            }
            response.body(full_body("from the auth service")).unwrap()
        }
    })
    .await;
    (server, asked)
}

#[tokio::test]
async fn auth_url_decides_with_a_real_service_for_requests_and_upgrades() {
    let echo = echo("a").await;
    let (service, asked) = auth_service().await;
    let url = format!("http://{}/check", service.addr);
    let annotations = [("auth-url", url.as_str()), ("auth-response-headers", "X-Auth-Request-User")];
    let proxy = TestProxy::start(build_table(&yaml(echo.addr, &[], &annotations))).await;
    let (status, headers, _) = get_with(proxy.addr, "/orders?page=2", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer realm=\"api\"");
    let (original_url, method, host) = asked.lock().unwrap()[0].clone();
    assert_eq!(original_url, "http://a.test/orders?page=2");
    assert_eq!((method.as_str(), host), ("GET", service.addr.to_string()));
    assert_eq!(get_with(proxy.addr, "/", &[("authorization", "Bearer bad")]).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        get_with(proxy.addr, "/", &[("authorization", "Bearer broken")]).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    // Let through, with the user the service named, whatever the client claimed.
    let good = [("authorization", "Bearer good"), ("x-auth-request-user", "mallory")];
    let (status, _, body) = get_with(proxy.addr, "/orders", &good).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen(&body).headers["x-auth-request-user"], "alice");
    // A WebSocket handshake is authorised the same way.
    assert_eq!(ws_refused(proxy.addr, "a.test", "/live", &[]).await.status(), StatusCode::UNAUTHORIZED);
    assert!(ws_connect(proxy.addr, "a.test", "/live", &[("authorization", "Bearer good")]).await.is_ok());
    // A service that cannot be reached: 500, never the route unprotected.
    let dead = format!("http://{}/check", dead_addr().await);
    proxy.publish(build_table(&yaml(echo.addr, &[], &[("auth-url", dead.as_str())])));
    assert_eq!(get_with(proxy.addr, "/", &[]).await.0, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn auth_signin_turns_a_401_into_a_redirect_carrying_the_original_url() {
    let echo = echo("a").await;
    let (service, _) = auth_service().await;
    let url = format!("http://{}/oauth2/auth", service.addr);
    let annotations =
        [("auth-url", url.as_str()), ("auth-signin", "https://$host/oauth2/start?rd=$escaped_request_uri")];
    let proxy = TestProxy::start(build_table(&yaml(echo.addr, &[], &annotations))).await;
    let (status, headers, _) = get_with(proxy.addr, "/app?x=1", &[]).await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(headers[header::LOCATION], "https://a.test/oauth2/start?rd=%2Fapp%3Fx%3D1");
    let plain = [("auth-url", url.as_str()), ("auth-signin", "https://login.test/start")];
    proxy.publish(build_table(&yaml(echo.addr, &[], &plain)));
    let (_, headers, _) = get_with(proxy.addr, "/app", &[]).await;
    assert_eq!(headers[header::LOCATION], "https://login.test/start?rd=http%3A%2F%2Fa.test%2Fapp");
    // With a sign-in page, the service's cookies (a refreshed session) reach the client.
    let (status, headers, _) = get_with(proxy.addr, "/app", &[("authorization", "Bearer good")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::SET_COOKIE], "_oauth2_proxy=refreshed; Path=/");
    assert_eq!(get_with(proxy.addr, "/", &[("authorization", "Bearer bad")]).await.0, StatusCode::FORBIDDEN);
}
