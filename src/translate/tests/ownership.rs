//! Strict host ownership (`--host-ownership=namespace`): the first namespace on a host owns all
//! of it; other namespaces join only where its objects allow them.

use super::*;
use crate::translate::HostOwnership;

fn built_owned(yaml: &str) -> Built {
    let objects = parse_documents(&format!("{SERVICES}\n---\n{yaml}")).unwrap();
    let config = BuildConfig { host_ownership: HostOwnership::Namespace, ..BuildConfig::default() };
    build(&Snapshot::new(objects), &config)
}

/// `claim` on another path than `/`.
fn claim_on(path: &str, kind: &str, namespace: &str, name: &str, host: &str, time: &str) -> String {
    let yaml = claim(kind, namespace, name, host, time);
    match kind {
        "Ingress" => yaml.replace("{path: /,", &format!("{{path: {path},")),
        _ => yaml
            .replace("  - backends:", &format!("  - matches: [{{path: {{value: {path}}}}}]\n    backends:")),
    }
}

fn allow(yaml: &str, namespaces: &str) -> String {
    yaml.replacen(
        "metadata:\n",
        &format!("metadata:\n  annotations: {{hawser.dev/allowed-namespaces: \"{namespaces}\"}}\n"),
        1,
    )
}

#[test]
fn the_first_namespace_owns_the_whole_host() {
    let bank = claim("Ingress", "bank", "web", "bank.test", "2025-01-01T00:00:00Z");
    let newcomer = claim_on("/other", "WebSocketRoute", "evil", "grab", "bank.test", "2026-01-01T00:00:00Z");
    let yaml = format!("{bank}---\n{newcomer}");
    // By path (the default), another path on the host is free to take.
    let by_path = built(&yaml);
    assert_eq!(by_path.table.summary().len(), 2, "{:?}", by_path.table.summary());
    // By namespace, the whole host is bank's: the newcomer's route and TLS are left out.
    let owned = built_owned(&yaml);
    let summary = owned.table.summary();
    assert_eq!(summary.len(), 1, "{summary:?}");
    assert!(summary[0].ends_with("(ingress/bank/web/0/0)"), "{summary:?}");
    let conflicts: Vec<&Report> = owned.reports.iter().filter(|r| r.reason == Reason::Conflict).collect();
    assert!(!conflicts.is_empty());
    assert!(
        conflicts
            .iter()
            .all(|r| r.object.namespace == "evil" && r.message.contains("belongs to namespace bank"))
    );
    assert!(owned.tls.get("bank.test").is_none_or(|secret| secret.namespace == "bank"));
    // Its own namespace adds to it freely; other hosts are untouched.
    let sibling = claim_on("/chat", "WebSocketRoute", "bank", "chat", "bank.test", "2026-01-01T00:00:00Z");
    let elsewhere = claim_on("/", "WebSocketRoute", "evil", "own", "evil.test", "2026-01-01T00:00:00Z");
    let both = built_owned(&format!("{bank}---\n{newcomer}---\n{sibling}---\n{elsewhere}"));
    let summary = both.table.summary();
    assert_eq!(summary.len(), 3, "{summary:?}");
    assert!(summary.iter().any(|s| s.ends_with("(wsroute/bank/chat/0/0)")));
    assert!(summary.iter().any(|s| s.ends_with("(wsroute/evil/own/0/0)")));
}

#[test]
fn the_owner_allows_other_namespaces_by_annotation() {
    let bank = claim("Ingress", "bank", "web", "bank.test", "2025-01-01T00:00:00Z");
    let guest = claim_on("/other", "WebSocketRoute", "partner", "api", "bank.test", "2026-01-01T00:00:00Z");
    for (allowed, served) in [("partner", true), ("*", true), ("other, partner", true), ("other", false)] {
        let built = built_owned(&format!("{}---\n{guest}", allow(&bank, allowed)));
        let summary = built.table.summary();
        assert_eq!(
            summary.iter().any(|s| s.ends_with("(wsroute/partner/api/0/0)")),
            served,
            "{allowed}: {summary:?}"
        );
    }
    // A guest never takes the owner's own paths: the path rule still applies among those allowed.
    let grab = claim("WebSocketRoute", "partner", "grab", "bank.test", "2026-01-01T00:00:00Z");
    let built = built_owned(&format!("{}---\n{grab}", allow(&bank, "*")));
    assert!(built.table.summary()[0].ends_with("(ingress/bank/web/0/0)"));
    // An invalid list allows nobody and is reported on the Ingress.
    let bad = built_owned(&format!("{}---\n{guest}", allow(&bank, "Not_A_Namespace")));
    assert_eq!(bad.table.summary().len(), 1);
    assert!(
        problems(&bad).contains(&"Invalid Ingress bank/web hawser.dev/allowed-namespaces".to_owned()),
        "{:?}",
        problems(&bad)
    );
}
