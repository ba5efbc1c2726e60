//! Ingress (`networking.k8s.io/v1`) → candidate routes and TLS claims.
//!
//! - A rule without `host` serves every host not claimed elsewhere (the catch-all host).
//! - `pathType: Exact` and `Prefix` follow the specification; `ImplementationSpecific` means
//!   `Prefix` in hawser (what ingress-nginx does without regex).
//! - `spec.defaultBackend` serves the catch-all host, and `/` on each of the Ingress's hosts
//!   that has no `/` path of its own; explicit paths of any Ingress beat it.
//! - Route names are `ingress/NAMESPACE/NAME/RULE/PATH` (`…/default` for the default backend).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{HTTPIngressPath, Ingress, IngressBackend, IngressSpec};
use kube::ResourceExt;

use super::annotations::{IngressSettings, NGINX, REFUSED, ingress_policy};
use super::auth::{self, BasicAuthSecret};
use super::backends::{self, PortRef};
use super::canary::CanaryRule;
use super::candidate::{Candidate, Rank};
use super::lookup::Lookup;
use super::report::{Reason, Reporter};
use super::tls;
use super::{Output, TlsClaim};
use crate::model::{Backend, ErrorBackend, HostMatch, NamespacedName, PathMatch, Policy, RegexPath, Route};

/// Adds what `ingress` asks for to `out`, reporting into `reporter`.
/// `opt_outs` are the access-restricting nginx annotations the install serves without
/// enforcing (`--ignore-annotations`).
pub fn translate(
    ingress: &Ingress,
    snapshot: &Lookup<'_>,
    opt_outs: &[String],
    reporter: &mut Reporter<'_>,
    out: &mut Output,
) {
    let namespace = ingress.namespace().unwrap_or_default();
    let settings = ingress_policy(ingress.annotations(), &namespace, opt_outs, reporter);
    let regex = settings.regex_paths;
    let canary = settings.canary.clone();
    let service_upstream = settings.service_upstream;
    let error_backend = settings.error_backend.as_ref().and_then(|(service, codes)| {
        let ingress = ingress.name_any();
        error_backend(snapshot, (&namespace, &ingress), service, codes, reporter)
    });
    let policy = with_backend_ca(settings, snapshot, &namespace, reporter);
    let Some(spec) = ingress.spec.as_ref() else { return };
    let created = ingress.creation_timestamp().map(|t| t.0);
    let rank = |implicit| Rank::new(reporter.object().clone(), created, implicit);
    let (explicit, implicit) = (rank(false), rank(true));
    let mut translator = Translator {
        snapshot,
        namespace: &namespace,
        policy,
        policies: BTreeMap::new(),
        regex,
        canary,
        service_upstream,
        error_backend,
        reporter,
        out,
    };
    let hosts = translator.rules(spec, &explicit);
    translator.default_backend(spec, &hosts, &implicit);
    translator.tls(spec, &hosts, &explicit);
}

/// The policy with the backend CA loaded; refused (and reported) when the CA was asked for but
/// is unusable — serving without the verification that was asked for would be worse.
fn with_backend_ca(
    settings: IngressSettings,
    snapshot: &Lookup<'_>,
    namespace: &str,
    reporter: &mut Reporter<'_>,
) -> Policy {
    let mut policy = settings.policy;
    if let Some(wanted) = &settings.basic_auth {
        with_basic_auth(&mut policy, wanted, snapshot, namespace, reporter);
    }
    let Some(wanted) = settings.backend_ca else { return policy };
    match tls::backend_ca(snapshot, namespace, &wanted.name) {
        Ok(ca) => policy.backend_protocol.verify_with(ca),
        Err(problem) => {
            let message = format!("Secret {namespace}/{}: {problem}; {REFUSED}", wanted.name);
            reporter.report(Reason::Invalid, wanted.annotation, message);
            policy.refused = true;
        }
    }
    policy
}

/// The basic- or digest-auth users loaded from their Secret; refused (and reported) when there are none to
/// check against: serving without the authentication that was asked for would be worse.
fn with_basic_auth(
    policy: &mut Policy,
    wanted: &BasicAuthSecret,
    snapshot: &Lookup<'_>,
    namespace: &str,
    reporter: &mut Reporter<'_>,
) {
    let field = format!("{NGINX}auth-secret");
    let Some(secret) = snapshot.secret(namespace, &wanted.name) else {
        let message = format!("Secret {namespace}/{} not found; {REFUSED}", wanted.name);
        reporter.report(Reason::Invalid, field, message);
        policy.refused = true;
        return;
    };
    let loaded = if wanted.digest {
        auth::load_digest_users(secret, wanted).map(|(users, problems)| {
            policy.digest_auth = Some(Arc::new(users));
            problems
        })
    } else {
        auth::load_users(secret, wanted).map(|(users, problems)| {
            policy.basic_auth = Some(Arc::new(users));
            problems
        })
    };
    match loaded {
        Ok(problems) => {
            for problem in problems {
                reporter.report(Reason::Invalid, field.clone(), problem);
            }
        }
        Err(problem) => {
            let message = format!("Secret {namespace}/{}: {problem}; {REFUSED}", wanted.name);
            reporter.report(Reason::Invalid, field, message);
            policy.refused = true;
        }
    }
}

/// The `default-backend` Service's endpoints on its first port; `None` (reported) when the
/// Service or its port is missing, and the routes then have no error backend.
fn error_backend(
    snapshot: &Lookup<'_>,
    (namespace, ingress): (&str, &str),
    service: &str,
    codes: &[u16],
    reporter: &mut Reporter<'_>,
) -> Option<ErrorBackend> {
    let field = format!("{NGINX}default-backend");
    let first_port = snapshot
        .service(namespace, service)
        .and_then(|s| s.spec.as_ref()?.ports.as_ref()?.first()?.port.into());
    let Some(port) = first_port else {
        let message = format!(
            "Service {namespace}/{service} (with a port) not found; the Ingress has no default backend"
        );
        reporter.report(Reason::UnresolvedRef, field, message);
        return None;
    };
    let addrs =
        backends::resolve(snapshot, namespace, (service, &PortRef::Number(port)), false, &field, reporter);
    Some(ErrorBackend {
        backend: Backend::new(backends::weighted(&[(1, addrs)])),
        codes: codes.to_vec(),
        namespace: namespace.to_owned(),
        ingress: ingress.to_owned(),
        service: String::new(),
    })
}

struct Translator<'a, 'r> {
    snapshot: &'a Lookup<'a>,
    namespace: &'a str,
    policy: Policy,
    /// The policy of the routes to each Service (it names the Service for backend TLS), made
    /// once per Service and shared by its routes.
    policies: BTreeMap<Option<String>, Arc<Policy>>,
    /// Prefix and ImplementationSpecific paths are regular expressions (`use-regex`).
    regex: bool,
    /// The Ingress is a canary: its paths join the main Ingress's routes.
    canary: Option<CanaryRule>,
    /// Route to each Service's cluster IP, not its endpoints (`service-upstream`).
    service_upstream: bool,
    /// Every route's error backend (`default-backend`), its Service name left to fill in.
    error_backend: Option<ErrorBackend>,
    reporter: &'a mut Reporter<'r>,
    out: &'a mut Output,
}

impl Translator<'_, '_> {
    /// Every rule's paths; returns each rule host and whether it has its own `/` prefix.
    fn rules(&mut self, spec: &IngressSpec, rank: &Rank) -> Vec<(HostMatch, bool)> {
        let mut hosts = Vec::new();
        for (r, rule) in spec.rules.iter().flatten().enumerate() {
            let field = format!("spec.rules[{r}]");
            let Some(host) = self.host(rule.host.as_deref().unwrap_or(""), &format!("{field}.host")) else {
                continue;
            };
            let mut has_root = false;
            for (p, path) in rule.http.iter().flat_map(|http| &http.paths).enumerate() {
                let field = format!("{field}.http.paths[{p}]");
                let Some(path_match) = self.path(path, &field) else { continue };
                has_root |= path_match == PathMatch::Prefix("/".into());
                let Some(addrs) = self.backend(&path.backend, &format!("{field}.backend")) else { continue };
                let name = format!("ingress/{}/{}/{r}/{p}", self.namespace, self.reporter.object().name);
                let service = path.backend.service.as_ref().map(|s| s.name.as_str());
                self.push(rank, host.clone(), &name, path_match, (&addrs, service), field);
            }
            hosts.push((host, has_root));
        }
        hosts
    }

    fn default_backend(&mut self, spec: &IngressSpec, hosts: &[(HostMatch, bool)], rank: &Rank) {
        let Some(backend) = spec.default_backend.as_ref() else { return };
        let field = "spec.defaultBackend".to_owned();
        let Some(addrs) = self.backend(backend, &field) else { return };
        let name = format!("ingress/{}/{}/default", self.namespace, self.reporter.object().name);
        let service = backend.service.as_ref().map(|s| s.name.clone());
        let rootless = hosts.iter().filter(|(_, has_root)| !has_root).map(|(host, _)| host.clone());
        let mut targets: Vec<HostMatch> = std::iter::once(HostMatch::Any).chain(rootless).collect();
        targets.dedup();
        for host in targets {
            self.push(
                rank,
                host,
                &name,
                PathMatch::Prefix("/".into()),
                (&addrs, service.as_deref()),
                field.clone(),
            );
        }
    }

    /// `spec.tls`: which Secret serves which host; a missing Secret is reported, and HTTPS for
    /// those hosts falls back to the default certificate.
    fn tls(&mut self, spec: &IngressSpec, hosts: &[(HostMatch, bool)], rank: &Rank) {
        for (t, tls) in spec.tls.iter().flatten().enumerate() {
            let Some(secret) = tls.secret_name.as_deref() else { continue };
            let field = format!("spec.tls[{t}]");
            if self.snapshot.secret(self.namespace, secret).is_none() {
                let message = format!(
                    "Secret {}/{secret} not found; HTTPS for these hosts uses the default certificate",
                    self.namespace
                );
                self.reporter.report(Reason::UnresolvedRef, format!("{field}.secretName"), message);
            }
            let listed: Vec<HostMatch> = tls.hosts.iter().flatten().map(|h| HostMatch::parse(h)).collect();
            let covered =
                if listed.is_empty() { hosts.iter().map(|(h, _)| h.clone()).collect() } else { listed };
            for host in covered.into_iter().filter(|h| *h != HostMatch::Any) {
                let secret = NamespacedName::new(self.namespace, secret);
                self.out.tls.push(TlsClaim { rank: rank.clone(), host, secret, field: field.clone() });
            }
        }
    }

    fn host(&mut self, host: &str, field: &str) -> Option<HostMatch> {
        if valid_host(host) {
            return Some(HostMatch::parse(host));
        }
        let message =
            format!("{host:?} is not a host name or a *.wildcard of one label; the rule is left out");
        self.reporter.report(Reason::Invalid, field, message);
        None
    }

    fn path(&mut self, path: &HTTPIngressPath, field: &str) -> Option<PathMatch> {
        let value = path.path.clone().unwrap_or_else(|| "/".to_owned());
        if !value.starts_with('/') {
            self.reporter.report(
                Reason::Invalid,
                format!("{field}.path"),
                format!("{value:?} must start with /; the path is left out"),
            );
            return None;
        }
        match path.path_type.as_str() {
            "Exact" => Some(PathMatch::Exact(value)),
            "Prefix" | "ImplementationSpecific" if self.regex => match RegexPath::new(&value) {
                Ok(regex) => Some(PathMatch::Regex(regex)),
                Err(message) => {
                    self.reporter.report(
                        Reason::Invalid,
                        format!("{field}.path"),
                        format!("{message}; the path is left out"),
                    );
                    None
                }
            },
            "Prefix" | "ImplementationSpecific" => Some(PathMatch::Prefix(value)),
            other => {
                let message = format!(
                    "pathType {other:?} is not Exact, Prefix or ImplementationSpecific; the path is left out"
                );
                self.reporter.report(Reason::Invalid, format!("{field}.pathType"), message);
                None
            }
        }
    }

    fn backend(&mut self, backend: &IngressBackend, field: &str) -> Option<Vec<SocketAddr>> {
        let Some(service) = backend.service.as_ref() else {
            self.reporter.report(
                Reason::Unsupported,
                field,
                "only Service backends are supported; the path is left out",
            );
            return None;
        };
        let port = service.port.as_ref().and_then(|p| match (&p.name, p.number) {
            (Some(name), _) => Some(PortRef::Name(name.clone())),
            (None, Some(number)) => Some(PortRef::Number(number)),
            (None, None) => None,
        });
        let Some(port) = port else {
            self.reporter.report(
                Reason::Invalid,
                format!("{field}.service.port"),
                "a port name or number is required; the path is left out",
            );
            return None;
        };
        let field = format!("{field}.service");
        let (snapshot, namespace, upstream) = (self.snapshot, self.namespace, self.service_upstream);
        Some(backends::resolve(snapshot, namespace, (&service.name, &port), upstream, &field, self.reporter))
    }

    /// Adds a route to `service`'s `addrs`.
    fn push(
        &mut self,
        rank: &Rank,
        host: HostMatch,
        name: &str,
        path: PathMatch,
        (addrs, service): (&[SocketAddr], Option<&str>),
        field: String,
    ) {
        let backend = Backend::new(backends::weighted(&[(1, addrs.to_vec())]));
        let policy = self.policies.entry(service.map(str::to_owned)).or_insert_with(|| {
            let server_name = service.map(|service| backends::dns_name(service, self.namespace));
            let backend_protocol = self.policy.backend_protocol.with_server_name(server_name);
            Arc::new(Policy { backend_protocol, ..self.policy.clone() })
        });
        let mut route = Route::new(name, path, backend, policy.clone());
        route.error_backend = self.error_backend.as_ref().map(|errors| {
            Box::new(ErrorBackend { service: service.unwrap_or_default().to_owned(), ..errors.clone() })
        });
        let candidate = Candidate { rank: rank.clone(), host, route, field };
        match &self.canary {
            Some(rule) => self.out.canaries.push((candidate, rule.clone())),
            None => self.out.candidates.push(candidate),
        }
    }
}

/// A DNS name (lower-case labels) or `*.` followed by one; empty is the catch-all.
pub fn valid_host(host: &str) -> bool {
    let name = host.strip_prefix("*.").unwrap_or(host);
    host.is_empty()
        || name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}
