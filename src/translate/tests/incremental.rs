//! A [`Builder`] that built earlier states gives exactly what a fresh build gives, through a
//! series of changes: conflicts won and lost, canaries, TLS Secrets appearing and going, a
//! Service's endpoints moving, objects deleted, settings changed.

use std::collections::BTreeMap;

use super::*;

/// The documents of one state, by name. A document that did not change keeps its parsed
/// objects (the same `Arc`s), as the manifests source and the Kubernetes stores do.
#[derive(Default)]
struct Inputs {
    documents: BTreeMap<&'static str, (String, Vec<Object>)>,
}

impl Inputs {
    fn set(&mut self, name: &'static str, yaml: &str) {
        if self.documents.get(name).is_some_and(|(kept, _)| kept == yaml) {
            return;
        }
        self.documents.insert(name, (yaml.to_owned(), parse_documents(yaml).unwrap()));
    }

    fn remove(&mut self, name: &'static str) {
        self.documents.remove(name);
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::new(self.documents.values().flat_map(|(_, objects)| objects.iter().cloned()))
    }
}

/// One change to the inputs.
type Step = Box<dyn Fn(&mut Inputs)>;

fn assert_same(incremental: &Built, fresh: &Built, step: &str) {
    assert_eq!(incremental.table, fresh.table, "{step}: table");
    assert_eq!(incremental.reports, fresh.reports, "{step}: reports");
    assert_eq!(incremental.tls, fresh.tls, "{step}: TLS");
    assert_eq!(incremental.served, fresh.served, "{step}: served");
}

#[test]
fn a_builder_gives_what_a_fresh_build_gives_after_every_change() {
    let canary = with_annotations(
        "c",
        &[
            ("nginx.ingress.kubernetes.io/canary", "true"),
            ("nginx.ingress.kubernetes.io/canary-weight", "20"),
        ],
    );
    let route = "apiVersion: hawser.dev/v1alpha1\nkind: WebSocketRoute\nmetadata: {name: ws}\nspec:\n  hostnames: [chat.com]\n  tls: {secretName: a-tls}\n  rules:\n  - backends: [{name: api, port: 81}]\n";
    let steps: Vec<(&str, Step)> = vec![
        (
            "start",
            Box::new(move |i: &mut Inputs| {
                i.set("services", SERVICES);
                i.set("a", &tls_ingress("a", "a.com", "a-tls"));
                i.set("b", &simple("b", "a.com", "Prefix", "/"));
                i.set("other", &simple("other", "b.com", "Exact", "/x"));
                i.set("canary", &canary);
                i.set("route", route);
            }),
        ),
        (
            "the Secret appears",
            Box::new(|i: &mut Inputs| i.set("secret", &tls_secret("a-tls", &["a.com", "chat.com"], VALID))),
        ),
        (
            "a's path changes: b wins /",
            Box::new(|i: &mut Inputs| {
                i.set("a", &tls_ingress("a", "a.com", "a-tls").replace("path: /,", "path: /a,"))
            }),
        ),
        ("b goes", Box::new(|i: &mut Inputs| i.remove("b"))),
        (
            "web's endpoints move",
            Box::new(|i: &mut Inputs| i.set("services", &SERVICES.replace("10.0.0.1", "10.0.0.9"))),
        ),
        ("the Secret goes", Box::new(|i: &mut Inputs| i.remove("secret"))),
        (
            "a certificate that does not cover chat.com",
            Box::new(|i: &mut Inputs| i.set("secret", &tls_secret("a-tls", &["a.com"], VALID))),
        ),
        (
            "the route moves host",
            Box::new(move |i: &mut Inputs| i.set("route", &route.replace("chat.com", "b.com"))),
        ),
        ("a goes; the canary has no main route", Box::new(|i: &mut Inputs| i.remove("a"))),
        ("nothing changes", Box::new(|_: &mut Inputs| {})),
    ];
    let mut inputs = Inputs::default();
    let mut builder = Builder::default();
    let config = BuildConfig::default();
    for (step, change) in &steps {
        change(&mut inputs);
        let snapshot = inputs.snapshot();
        assert_same(&builder.build(&snapshot, &config), &build(&snapshot, &config), step);
    }
    let config = BuildConfig { host_ownership: HostOwnership::Namespace, ..config };
    let snapshot = inputs.snapshot();
    assert_same(&builder.build(&snapshot, &config), &build(&snapshot, &config), "another setting");
}

#[test]
fn the_clock_alone_reassembles_a_host_whose_certificate_nears_expiry() {
    let mut inputs = Inputs::default();
    inputs.set("services", SERVICES);
    inputs.set("a", &tls_ingress("a", "a.com", "a-tls"));
    inputs.set("secret", &tls_secret("a-tls", &["a.com"], (2020, 2030)));
    let snapshot = inputs.snapshot();
    let mut builder = Builder::default();
    for year in [2025, 2029, 2031] {
        let seconds = rcgen::date_time_ymd(year, 12, 25).unix_timestamp();
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap());
        let config = BuildConfig { now, ..BuildConfig::default() };
        assert_same(&builder.build(&snapshot, &config), &build(&snapshot, &config), &year.to_string());
    }
}
