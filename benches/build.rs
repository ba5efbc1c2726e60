//! The translation at cluster scale: `cargo bench --bench build [-- INGRESSES]` builds a table
//! from 10,000 Ingresses (20,000 routes) in 100 namespaces, 10,000 Services and EndpointSlices
//! and 1,000 TLS Secrets, and prints the median time of each step over several rounds: a full
//! build, and a build after one Ingress changed by a `Builder` that built the previous state.

/// The allocator the `hawser` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use hawser::snapshot::{Object, Snapshot};
use hawser::translate::{BuildConfig, Builder};
use serde_json::{Value, json};

const NAMESPACES: usize = 100;
const SECRETS_PER_NAMESPACE: usize = 10;
const ROUNDS: usize = 5;

fn main() {
    let ingresses = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10_000);
    let started = Instant::now();
    let mut objects = objects(ingresses);
    let first_ingress = NAMESPACES * SECRETS_PER_NAMESPACE;
    println!("{ingresses} Ingresses, {} objects generated in {:?}", objects.len(), started.elapsed());
    let config = BuildConfig::default();
    let snapshot = median("index a snapshot", || Snapshot::new(objects.iter().cloned()));
    let built = median("full build (a new Builder)", || Builder::default().build(&snapshot, &config));
    let routes: usize = built.table.hosts().iter().map(|h| h.routes.len()).sum();
    println!("{routes} routes on {} hosts", built.table.hosts().len());
    let mut builder = Builder::default();
    builder.build(&snapshot, &config);
    median("nothing changed, the Builder warm", || builder.build(&snapshot, &config));
    let mut change = 0;
    let snapshots: Vec<Snapshot> = (0..ROUNDS)
        .map(|_| {
            change += 1;
            let app = change * 7919 % ingresses;
            let mut changed = ingress(app);
            changed["spec"]["rules"][0]["http"]["paths"][0]["path"] = json!(format!("/v{change}"));
            objects[first_ingress + 3 * app] =
                Object::from_value(changed).ok().flatten().expect("an Ingress");
            Snapshot::new(objects.iter().cloned())
        })
        .collect();
    let mut snapshots = snapshots.iter();
    median("one Ingress changed, the Builder warm", || {
        builder.build(snapshots.next().expect("one per round"), &config)
    });
}

/// Runs `step` [`ROUNDS`] times and prints the median; returns the last result.
fn median<T>(name: &str, mut step: impl FnMut() -> T) -> T {
    let mut times: Vec<Duration> = Vec::new();
    let mut last = None;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        last = Some(step());
        times.push(started.elapsed());
    }
    times.sort();
    println!("{name}: median {:?} (min {:?}, max {:?})", times[ROUNDS / 2], times[0], times[ROUNDS - 1]);
    last.expect("at least one round")
}

fn objects(ingresses: usize) -> Vec<Object> {
    let mut values: Vec<Value> = Vec::new();
    for namespace in 0..NAMESPACES {
        for index in 0..SECRETS_PER_NAMESPACE {
            values.push(secret(namespace, index));
        }
    }
    for app in 0..ingresses {
        values.extend([ingress(app), service(app), endpoint_slice(app)]);
    }
    values.into_iter().filter_map(|v| Object::from_value(v).ok().flatten()).collect()
}

fn namespace_of(app: usize) -> String {
    format!("ns-{}", app % NAMESPACES)
}

fn ingress(app: usize) -> Value {
    let namespace = namespace_of(app);
    let host = format!("app-{app}.{namespace}.scale.test");
    let backend = json!({"service": {"name": format!("app-{app}"), "port": {"name": "http"}}});
    let paths: Vec<Value> = ["/api", "/ws"]
        .iter()
        .map(|p| json!({"path": p, "pathType": "Prefix", "backend": backend}))
        .collect();
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": format!("app-{app}"), "namespace": namespace, "annotations": {"hawser.dev/idle-timeout": "1h"}},
        "spec": {
            "ingressClassName": "hawser",
            "tls": [{"hosts": [host], "secretName": format!("tls-{}", app % SECRETS_PER_NAMESPACE)}],
            "rules": [{"host": host, "http": {"paths": paths}}]
        }
    })
}

fn service(app: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("app-{app}"), "namespace": namespace_of(app)},
        "spec": {"ports": [{"name": "http", "port": 80}]}
    })
}

fn endpoint_slice(app: usize) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("app-{app}-1"), "namespace": namespace_of(app),
                     "labels": {"kubernetes.io/service-name": format!("app-{app}")}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": [format!("10.0.{}.{}", app / 250 % 250, app % 250 + 1)], "conditions": {"ready": true}}]
    })
}

fn secret(namespace: usize, index: usize) -> Value {
    let mut params =
        rcgen::CertificateParams::new(vec![format!("*.ns-{namespace}.scale.test")]).expect("a valid name");
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    let key = rcgen::KeyPair::generate().expect("a key");
    let certificate = params.self_signed(&key).expect("a certificate");
    let encode = |pem: String| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pem);
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": format!("tls-{index}"), "namespace": format!("ns-{namespace}")},
        "data": {"tls.crt": encode(certificate.pem()), "tls.key": encode(key.serialize_pem())}
    })
}
