//! `hawser migrate` through the binary, on a directory of ingress-nginx Ingresses: each one's
//! verdict, the groups of findings, the totals, the exit code, and that other classes are left
//! alone. (`tests/cluster.rs` runs it against an API server.)
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use serde_json::Value;

fn ingress(name: &str, class: &str, annotations: &[(&str, &str)]) -> String {
    let annotations: String =
        annotations.iter().map(|(k, v)| format!("    nginx.ingress.kubernetes.io/{k}: {v:?}\n")).collect();
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations:\n{annotations}    x: y\nspec:\n  ingressClassName: {class}\n  rules:\n  - host: {name}.test\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: api, port: {{name: http}}}}}}}}\n"
    )
}

fn migrate(dir: &std::path::Path, extra: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_hawser"))
        .args([&["migrate", dir.to_str().unwrap()][..], extra].concat())
        .output()
        .unwrap();
    (output.status.code(), String::from_utf8(output.stdout).unwrap())
}

#[test]
fn each_ingress_of_the_class_being_left_gets_a_verdict() {
    let dir = common::tempdir();
    let objects = [
        common::service_yaml("api", "127.0.0.1:9".parse().unwrap()),
        ingress("same", "nginx", &[("proxy-body-size", "8m"), ("proxy-buffering", "off")]),
        ingress("changed", "nginx", &[("load-balance", "ewma"), ("server-alias", "x.test")]),
        ingress("refused", "nginx", &[("auth-tls-verify-client", "on"), ("auth-tls-secret", "default/ca")]),
        ingress("invalid", "nginx", &[("proxy-connect-timeout", "soon")]),
        ingress("elsewhere", "traefik", &[("auth-tls-verify-client", "on")]),
    ];
    std::fs::write(dir.join("all.yaml"), objects.join("---\n")).unwrap();
    let (code, json) = migrate(&dir, &["--output", "json"]);
    assert_eq!(code, Some(1), "something is refused: {json}");
    let plan: Value = serde_json::from_str(&json).unwrap();
    let verdicts: Vec<(&str, &str)> = plan["ingresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap(), i["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(
        verdicts,
        [("changed", "changes"), ("invalid", "partly_left_out"), ("refused", "refused"), ("same", "same")]
    );
    let same = &plan["ingresses"][3];
    assert_eq!(same["same"].as_array().unwrap().len(), 2, "{same}");
    let changed = plan["ingresses"][0]["changes"].to_string();
    assert!(changed.contains("load-balance") && changed.contains("server-alias"), "{changed}");
    assert_eq!(plan["totals"]["refused"], 1);

    let (_, text) = migrate(&dir, &[]);
    assert!(text.contains("Ingress default/refused: REFUSED"), "{text}");
    assert!(
        text.ends_with("4 Ingresses: 1 the same, 1 with changes, 1 partly left out, 1 refused\n"),
        "{text}"
    );
    // Opting out of the refused keys, and a class with only sound Ingresses, exit 0.
    let (code, text) =
        migrate(&dir, &["--from-class", "traefik", "--ignore-annotations", "auth-tls-verify-client"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("Ingress default/elsewhere: served, with changes"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}
