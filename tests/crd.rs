//! The WebSocketRoute and WebSocketPolicy CRDs: the committed files are what the Rust types
//! generate; the WebSocketRoute CRD's schema
//! (structure and CEL rules, evaluated here without an API server) accepts good routes and
//! rejects bad ones with the message a user would see.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

const COMMITTED: &str = "crds/websocketroutes.hawser.dev.yaml";

#[test]
fn committed_crd_matches_the_rust_types() {
    let generated = hawser::crd::crd_yaml();
    if std::env::var_os("HAWSER_UPDATE_CRD").is_some() {
        std::fs::write(COMMITTED, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap();
    assert!(committed == generated, "{COMMITTED} is stale: run `HAWSER_UPDATE_CRD=1 cargo test --test crd`");
}

#[test]
fn committed_policy_crd_matches_the_rust_types() {
    const POLICY: &str = "crds/websocketpolicies.hawser.dev.yaml";
    let generated = hawser::crd::policy_crd_yaml();
    if std::env::var_os("HAWSER_UPDATE_CRD").is_some() {
        std::fs::write(POLICY, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(POLICY).unwrap();
    assert!(committed == generated, "{POLICY} is stale: run `HAWSER_UPDATE_CRD=1 cargo test --test crd`");
    let crd: Value = serde_yaml_ng::from_str(&generated).unwrap();
    assert_eq!(crd["metadata"]["name"], "websocketpolicies.hawser.dev");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["wsp"]));
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["required"], json!(["targetRefs"]));
    for setting in ["idleTimeout", "pingInterval", "maxMessageBytes", "allowedOrigins", "sessionAffinity"] {
        assert!(
            spec["properties"][setting].is_object(),
            "the policy reads {setting} as a WebSocketRoute rule does"
        );
    }
}

#[test]
fn crd_identity_and_printer_columns() {
    let crd: Value = serde_yaml_ng::from_str(&hawser::crd::crd_yaml()).unwrap();
    assert_eq!(crd["metadata"]["name"], "websocketroutes.hawser.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["wsr"]));
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["status"], json!({}));
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, vec!["Hosts", "Accepted", "Age"]);
}

fn schema() -> Value {
    let crd: Value = serde_yaml_ng::from_str(&hawser::crd::crd_yaml()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Everything the API server would say about `object` (structural schema, then CEL rules).
fn rejections(object: &Value) -> Vec<String> {
    let schema = schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut errors: Vec<String> =
        validator.iter_errors(object).map(|e| format!("{} at {}", e, e.instance_path)).collect();
    errors.extend(kube_cel::validate(&schema, object, None).into_iter().map(|e| e.to_string()));
    errors
}

fn route(rule: Value) -> Value {
    json!({
        "apiVersion": "hawser.dev/v1alpha1",
        "kind": "WebSocketRoute",
        "metadata": {"name": "chat", "namespace": "apps"},
        "spec": {"hostnames": ["chat.example.com", "*.example.org"], "rules": [rule]}
    })
}

fn with(mut rule: Value, key: &str, value: Value) -> Value {
    rule[key] = value;
    rule
}

fn good_rule() -> Value {
    json!({
        "matches": [{"path": {"type": "PathPrefix", "value": "/ws"}, "headers": [{"name": "X-Tenant", "value": "acme"}]}],
        "backends": [{"name": "chat", "port": 8080, "weight": 90}, {"name": "chat-canary", "port": "http", "weight": 10}],
        "idleTimeout": "1h",
        "handshakeTimeout": "10s",
        "maxConnectionDuration": "0s",
        "loadBalancing": {"strategy": "ConsistentHash", "hashOn": {"query": "room"}},
        "allowedOrigins": ["https://chat.example.com"],
        "maxConnections": 20000,
        "maxConnectionsPerClient": 100
    })
}

#[test]
fn the_schema_accepts_good_routes_and_the_examples() {
    assert_eq!(rejections(&route(good_rule())), Vec::<String>::new());
    assert_eq!(rejections(&route(json!({"backends": [{"name": "a", "port": 1}]}))), Vec::<String>::new());
    for (field, value) in [
        ("idleTimeout", "0s"),
        ("handshakeTimeout", "0.5s"),
        ("responseTimeout", "1m0s"),
        ("pingTimeout", "10ms"),
    ] {
        let rule = with(good_rule(), field, json!(value));
        assert_eq!(rejections(&route(rule)), Vec::<String>::new(), "{field}: {value}");
    }
    for entry in std::fs::read_dir("examples/quickstart").unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for document in text.split("\n---\n") {
            let object: Value = serde_yaml_ng::from_str(document).unwrap();
            if object["kind"] == "WebSocketRoute" {
                assert_eq!(rejections(&object), Vec::<String>::new(), "{document}");
            }
        }
    }
}

#[test]
fn the_schema_rejects_bad_routes() {
    let cases = [
        ("no backends", with(good_rule(), "backends", json!([]))),
        ("port 0", with(good_rule(), "backends", json!([{"name": "a", "port": 0}]))),
        ("port 70000", with(good_rule(), "backends", json!([{"name": "a", "port": 70000}]))),
        ("empty port name", with(good_rule(), "backends", json!([{"name": "a", "port": ""}]))),
        ("negative weight", with(good_rule(), "backends", json!([{"name": "a", "port": 80, "weight": -1}]))),
        ("bad duration", with(good_rule(), "idleTimeout", json!("an hour"))),
        ("unitless duration", with(good_rule(), "handshakeTimeout", json!("10"))),
        ("no handshake time", with(good_rule(), "handshakeTimeout", json!("0s"))),
        ("no response time", with(good_rule(), "responseTimeout", json!("0m0s"))),
        ("no time to answer a ping", with(good_rule(), "pingTimeout", json!("0.0s"))),
        ("hash without key", with(good_rule(), "loadBalancing", json!({"strategy": "ConsistentHash"}))),
        (
            "two hash keys",
            with(
                good_rule(),
                "loadBalancing",
                json!({"strategy": "ConsistentHash", "hashOn": {"query": "a", "header": "b"}}),
            ),
        ),
        ("unknown strategy", with(good_rule(), "loadBalancing", json!({"strategy": "Random"}))),
        ("relative path", with(good_rule(), "matches", json!([{"path": {"type": "Exact", "value": "ws"}}]))),
        ("zero connections", with(good_rule(), "maxConnections", json!(0))),
    ];
    for (case, rule) in cases {
        assert!(!rejections(&route(rule)).is_empty(), "{case} was accepted");
    }
    let mut bad_host = route(good_rule());
    bad_host["spec"]["hostnames"] = json!(["Chat.Example.com"]);
    assert!(!rejections(&bad_host).is_empty(), "upper-case host accepted");
    let mut no_rules = route(good_rule());
    no_rules["spec"]["rules"] = json!([]);
    assert!(!rejections(&no_rules).is_empty(), "no rules accepted");
    let port_message = rejections(&route(with(good_rule(), "backends", json!([{"name": "a", "port": 0}]))));
    assert!(
        port_message.iter().any(|m| m.contains("port must be a port name or a number from 1 to 65535")),
        "{port_message:?}"
    );
}
