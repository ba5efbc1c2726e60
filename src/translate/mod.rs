//! The translation from Kubernetes objects to the routing table: a pure function, no I/O, no
//! clock. `build(&Snapshot, &BuildConfig) -> Built { table, tls, reports, served }`.
//!
//! Order: IngressClasses and GatewayClasses decide what is served; every served Ingress,
//! WebSocketRoute, Gateway and HTTPRoute becomes candidate routes and TLS claims (each object reports its own problems); each host's claims
//! are assembled into its virtual host ([`assembly`]: candidates claiming the same path +
//! headers are settled by [`candidate::Rank`] and the losers reported). Output is sorted, so
//! equal inputs give equal tables and equal reports.
//!
//! A [`Builder`] gives the same result and remembers what it worked out: each object's
//! translation (reused while the object and everything it looked up are the same objects, see
//! [`lookup`]), each host's assembly (reused while that host's claims are the same) and each
//! parsed Secret. A change then costs the translation of the objects it touched and the
//! assembly of their hosts, not a build of everything.

mod affinity;
mod annotations;
mod assembly;
mod auth;
mod backends;
mod canary;
mod candidate;
mod class;
pub mod conditions;
mod gateway;
mod ingress;
mod lookup;
mod ownership;
pub mod report;
mod requests;
mod secret_error;
mod settings;
mod tls;
mod unenforced;
pub mod values;
mod websocket_route;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use serde::Serialize;

pub use annotations::NGINX as NGINX_ANNOTATION_PREFIX;
pub use class::CONTROLLER_NAME;
pub use gateway::facts::{self, Facts};
pub use gateway::{GATEWAY_CONTROLLER_NAME, GatewayPorts, GatewaySettings};
pub use report::{Kind, Level, ObjectRef, Reason, Report};
pub use settings::{DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT};

use assembly::AssembledHost;
use candidate::{Candidate, Rank};
use lookup::{Lookup, Reads, SecretParses};
use ownership::Delegations;
pub use ownership::HostOwnership;
use report::Reporter;

use crate::model::{Certificate, HostMatch, NamespacedName, RoutingTable};
use crate::snapshot::{Object, Snapshot};

/// Settings of the translation. The clock is an input too, so `build` stays pure.
#[derive(Clone, Debug)]
pub struct BuildConfig {
    /// The IngressClass name hawser serves even without an IngressClass object (`--ingress-class`).
    pub ingress_class: String,
    /// The `spec.controller` of the IngressClasses hawser serves (`--controller-name`).
    pub controller_name: String,
    /// The Secret served when no host's certificate fits (`--default-ssl-certificate`).
    pub default_certificate: Option<NamespacedName>,
    /// When the build happens: certificates must be valid then.
    pub now: SystemTime,
    /// Access-restricting nginx annotations served without enforcement instead of refusing
    /// the Ingress (`--ignore-annotations`). Default: none.
    pub ignore_annotations: Vec<String>,
    /// How hosts are shared between namespaces (`--host-ownership`). Default: by path.
    pub host_ownership: HostOwnership,
    /// Which Gateways are served, on which ports.
    pub gateway: GatewaySettings,
}

impl Default for BuildConfig {
    /// Class `hawser`, no default certificate, now.
    fn default() -> Self {
        Self {
            ingress_class: "hawser".to_owned(),
            controller_name: CONTROLLER_NAME.to_owned(),
            default_certificate: None,
            now: SystemTime::now(),
            ignore_annotations: Vec::new(),
            host_ownership: HostOwnership::Path,
            gateway: GatewaySettings::default(),
        }
    }
}

/// A claim that `secret` serves HTTPS for `host`.
#[derive(Clone, Debug)]
pub struct TlsClaim {
    rank: Rank,
    host: HostMatch,
    secret: NamespacedName,
    field: String,
}

/// What the translators produce before conflicts are settled.
#[derive(Clone, Debug, Default)]
pub struct Output {
    candidates: Vec<Candidate>,
    /// Paths of canary Ingresses, joined to their main routes after conflicts are settled.
    canaries: Vec<(Candidate, canary::CanaryRule)>,
    tls: Vec<TlsClaim>,
    /// What a Gateway API object's status reports.
    facts: Option<Arc<Facts>>,
}

/// The result of one build.
#[derive(Debug, Serialize)]
pub struct Built {
    /// The routing table to publish.
    pub table: RoutingTable,
    /// Which Secret serves HTTPS for which host pattern.
    pub tls: BTreeMap<String, NamespacedName>,
    /// Every finding, sorted.
    pub reports: Vec<Report>,
    /// The Ingresses and WebSocketRoutes hawser serves (their class is hawser's), sorted.
    pub served: Vec<ObjectRef>,
    /// What the Gateways and HTTPRoutes hawser serves report in their status, by object.
    #[serde(skip)]
    pub facts: BTreeMap<ObjectRef, Arc<Facts>>,
}

/// The result of one build that status is made from.
#[derive(Clone, Debug, Default)]
pub struct BuildOutcome {
    /// Every finding.
    pub reports: Vec<Report>,
    /// The Ingresses and WebSocketRoutes hawser serves.
    pub served: Vec<ObjectRef>,
    /// What the Gateways and HTTPRoutes hawser serves report in their status.
    pub facts: BTreeMap<ObjectRef, Arc<Facts>>,
}

impl Built {
    /// Whether any report is an error.
    pub fn has_errors(&self) -> bool {
        self.reports.iter().any(|r| r.level() == Level::Error)
    }
}

/// Translates `snapshot` into a table. Never fails: bad input is left out and reported.
pub fn build(snapshot: &Snapshot, config: &BuildConfig) -> Built {
    Builder::default().build(snapshot, config)
}

/// Builds tables, reusing what its earlier builds worked out where the inputs are the same:
/// each object's translation, each host's assembly and each parsed Secret. Its tables and
/// findings equal [`build`]'s.
#[derive(Debug, Default)]
pub struct Builder {
    translations: HashMap<ObjectRef, Translation>,
    /// The objects whose translations claim something for each host.
    contributors: HashMap<HostMatch, BTreeSet<ObjectRef>>,
    hosts: HashMap<HostMatch, AssembledHost>,
    /// The settings the kept translations and hosts were made with.
    made_with: Option<(Vec<String>, HostOwnership, GatewaySettings)>,
    parses: SecretParses,
    /// The endpoints the EndpointSlices list, and those slices.
    listed: (Vec<Arc<EndpointSlice>>, Arc<BTreeSet<SocketAddr>>),
}

/// One object's translation and what it depended on.
#[derive(Debug)]
struct Translation {
    object: Object,
    reads: Reads,
    output: Output,
    reports: Vec<Report>,
}

impl Translation {
    /// Whether this is the translation of `object` as `snapshot` has it.
    fn holds_for(&self, object: &Object, snapshot: &Snapshot) -> bool {
        self.object.same(object) && self.reads.still_hold(snapshot)
    }

    /// Every host it claims something for.
    fn hosts(&self) -> impl Iterator<Item = &HostMatch> {
        let out = &self.output;
        let canaries = out.canaries.iter().map(|(c, _)| &c.host);
        out.candidates.iter().map(|c| &c.host).chain(canaries).chain(out.tls.iter().map(|t| &t.host))
    }
}

impl Builder {
    /// [`Self::build`], with the source's own findings (a manifests file that does not parse)
    /// merged in and sorted.
    pub fn build_with(
        &mut self,
        snapshot: &Snapshot,
        config: &BuildConfig,
        source_reports: Vec<Report>,
    ) -> Built {
        let mut built = self.build(snapshot, config);
        if !source_reports.is_empty() {
            built.reports.extend(source_reports);
            built.reports.sort();
        }
        built
    }

    /// Translates `snapshot` into a table, like [`build`]: the objects that changed (or whose
    /// Services, EndpointSlices or Secrets did) are translated again, the hosts they claim are
    /// assembled again, and the table is put together from every host's result.
    pub fn build(&mut self, snapshot: &Snapshot, config: &BuildConfig) -> Built {
        let made_with =
            Some((config.ignore_annotations.clone(), config.host_ownership, config.gateway.clone()));
        // (Which objects are served is decided on every build, so the classes are not part of it.)
        if self.made_with != made_with {
            *self = Self { made_with, ..Self::default() };
        }
        let mut reports = Vec::new();
        let mut changed_hosts = HashSet::new();
        let (served, delegations) = self.translate(snapshot, config, &mut reports, &mut changed_hosts);
        changed_hosts.extend(
            self.hosts
                .iter()
                .filter(|(_, h)| h.recheck_at.is_some_and(|t| t <= config.now))
                .map(|(host, _)| host.clone()),
        );
        let lookup = Lookup::new(snapshot, &self.parses);
        let claims = if config.host_ownership == HostOwnership::Namespace {
            // Ownership is decided across hosts: every host is assembled again.
            changed_hosts.extend(self.contributors.keys().cloned());
            let mut all = self.claims(&changed_hosts);
            ownership::enforce(&mut all.candidates, &mut all.tls, &delegations, &mut reports);
            all
        } else {
            self.claims(&changed_hosts)
        };
        let mut by_host = by_host(claims);
        for host in changed_hosts {
            let claimed = by_host.remove(&host).unwrap_or_default();
            let assembled = assembly::assemble_host(host.clone(), claimed, &lookup, config.now);
            if assembled.vhost.is_none() && assembled.reports.is_empty() {
                self.hosts.remove(&host);
            } else {
                self.hosts.insert(host, assembled);
            }
        }
        let default_certificate = assembly::default_certificate(&lookup, config, &mut reports);
        let listed = self.listed_endpoints(snapshot);
        let built = self.table(listed, default_certificate, reports, served);
        self.parses.retain_present(snapshot);
        built
    }

    /// Takes the translation of every served object (kept or made anew), adding their findings
    /// to `reports` and the hosts whose claims may have changed to `changed_hosts`. Returns the
    /// served objects and the namespaces they allow on their hosts.
    fn translate(
        &mut self,
        snapshot: &Snapshot,
        config: &BuildConfig,
        reports: &mut Vec<Report>,
        changed_hosts: &mut HashSet<HostMatch>,
    ) -> (Vec<ObjectRef>, Delegations) {
        let classes = class::Classes::new(snapshot, config);
        let mut served = Vec::new();
        let mut delegations = Delegations::new();
        let mut before = std::mem::take(&mut self.translations);
        self.translations.reserve(before.len());
        let mut take =
            |object: ObjectRef,
             annotations: &BTreeMap<String, String>,
             current: Object,
             translate: &dyn Fn(&Lookup<'_>, &mut Reporter<'_>, &mut Output)| {
                delegate(&object, annotations, &mut delegations);
                let kept = before.remove(&object);
                let translation = match kept {
                    Some(kept) if kept.holds_for(&current, snapshot) => kept,
                    kept => {
                        if let Some(kept) = &kept {
                            withdraw(&mut self.contributors, &object, kept, changed_hosts);
                        }
                        let made = translate_one(&object, current, snapshot, &self.parses, translate);
                        for host in made.hosts() {
                            self.contributors.entry(host.clone()).or_default().insert(object.clone());
                            changed_hosts.insert(host.clone());
                        }
                        made
                    }
                };
                reports.extend(translation.reports.iter().cloned());
                served.push(object.clone());
                self.translations.insert(object, translation);
            };
        for ingress in snapshot.ingresses.iter().filter(|i| classes.serves_ingress(i)) {
            let object =
                ObjectRef::new(Kind::Ingress, &ingress.namespace().unwrap_or_default(), &ingress.name_any());
            take(
                object,
                ingress.annotations(),
                Object::Ingress(ingress.clone()),
                &|lookup, reporter, out| {
                    ingress::translate(ingress, lookup, &config.ignore_annotations, reporter, out);
                },
            );
        }
        let routes =
            snapshot.routes.iter().filter(|r| classes.serves_route(r.spec.ingress_class_name.as_deref()));
        for route in routes {
            let object = ObjectRef::new(
                Kind::WebSocketRoute,
                &route.namespace().unwrap_or_default(),
                &route.name_any(),
            );
            take(
                object,
                route.annotations(),
                Object::WebSocketRoute(route.clone()),
                &|lookup, reporter, out| {
                    websocket_route::translate(route, lookup, reporter, out);
                },
            );
        }
        let gateways = snapshot.gateways().filter(|g| gateway::is_served(g, snapshot, &config.gateway));
        for gateway in gateways {
            let object =
                ObjectRef::new(Kind::Gateway, &gateway.namespace().unwrap_or_default(), &gateway.name_any());
            take(
                object,
                gateway.annotations(),
                Object::Gateway(gateway.clone()),
                &|lookup, reporter, out| {
                    gateway::translate_gateway(gateway, lookup, &config.gateway, reporter, out);
                },
            );
        }
        for route in
            snapshot.http_routes.iter().filter(|r| gateway::has_served_parent(r, snapshot, &config.gateway))
        {
            let object =
                ObjectRef::new(Kind::HttpRoute, &route.namespace().unwrap_or_default(), &route.name_any());
            take(object, route.annotations(), Object::HttpRoute(route.clone()), &|lookup, reporter, out| {
                gateway::translate_route(route, lookup, &config.gateway, reporter, out);
            });
        }
        for policy in snapshot.all_websocket_policies() {
            let object = ObjectRef::new(
                Kind::WebSocketPolicy,
                &policy.namespace().unwrap_or_default(),
                &policy.name_any(),
            );
            take(
                object,
                policy.annotations(),
                Object::WebSocketPolicy(policy.clone()),
                &|lookup, reporter, out| {
                    gateway::translate_policy(policy, (lookup, &config.gateway), reporter, out);
                },
            );
        }
        for policy in snapshot.all_backend_tls_policies() {
            let namespace = policy.namespace().unwrap_or_default();
            let object = ObjectRef::new(Kind::BackendTlsPolicy, &namespace, &policy.name_any());
            take(
                object,
                policy.annotations(),
                Object::BackendTlsPolicy(policy.clone()),
                &|lookup, reporter, out| {
                    gateway::translate_backend_tls(policy, (lookup, &config.gateway), reporter, out);
                },
            );
        }
        // Objects no longer served: what they claimed is gone.
        for (object, gone) in &before {
            withdraw(&mut self.contributors, object, gone, changed_hosts);
        }
        served.sort();
        (served, delegations)
    }

    /// What the kept translations claim for `hosts`.
    fn claims(&self, hosts: &HashSet<HostMatch>) -> Output {
        let mut claims = Output::default();
        for host in hosts {
            let objects = self.contributors.get(host).into_iter().flatten();
            for out in objects.filter_map(|o| self.translations.get(o)).map(|t| &t.output) {
                claims.candidates.extend(out.candidates.iter().filter(|c| c.host == *host).cloned());
                claims.canaries.extend(out.canaries.iter().filter(|(c, _)| c.host == *host).cloned());
                claims.tls.extend(out.tls.iter().filter(|t| t.host == *host).cloned());
            }
        }
        claims
    }

    /// Every endpoint the EndpointSlices list, worked out again only when a slice's endpoints
    /// or ports changed.
    fn listed_endpoints(&mut self, snapshot: &Snapshot) -> Arc<BTreeSet<SocketAddr>> {
        let kept = &self.listed.0;
        let same = |a: &Arc<EndpointSlice>, b: &Arc<EndpointSlice>| {
            Arc::ptr_eq(a, b) || (a.endpoints == b.endpoints && a.ports == b.ports)
        };
        let unchanged = snapshot.all_endpoint_slices().count() == kept.len()
            && snapshot.all_endpoint_slices().zip(kept).all(|(a, b)| same(a, b));
        if !unchanged {
            self.listed =
                (snapshot.all_endpoint_slices().cloned().collect(), Arc::new(snapshot.listed_endpoints()));
        }
        self.listed.1.clone()
    }

    /// The table of every assembled host, and every finding.
    fn table(
        &self,
        listed_endpoints: Arc<BTreeSet<SocketAddr>>,
        default_certificate: Option<Certificate>,
        mut reports: Vec<Report>,
        served: Vec<ObjectRef>,
    ) -> Built {
        let mut vhosts = Vec::with_capacity(self.hosts.len());
        let mut tls = BTreeMap::new();
        for (host, assembled) in &self.hosts {
            vhosts.extend(assembled.vhost.clone());
            reports.extend(assembled.reports.iter().cloned());
            if let Some(secret) = &assembled.secret {
                tls.insert(host.to_string(), secret.clone());
            }
        }
        vhosts.sort_by(|a, b| a.host.cmp(&b.host));
        let facts = self
            .translations
            .iter()
            .filter_map(|(object, t)| Some((object.clone(), t.output.facts.clone()?)))
            .collect();
        let table = RoutingTable::new(vhosts)
            .with_default_certificate(default_certificate)
            .with_listed_endpoints(listed_endpoints);
        reports.sort();
        reports.dedup();
        Built { table, tls, reports, served, facts }
    }
}

/// Takes `object`'s claims (those of `translation`) off the hosts it claimed, marking them changed.
fn withdraw(
    contributors: &mut HashMap<HostMatch, BTreeSet<ObjectRef>>,
    object: &ObjectRef,
    translation: &Translation,
    changed_hosts: &mut HashSet<HostMatch>,
) {
    for host in translation.hosts() {
        if let Some(objects) = contributors.get_mut(host) {
            objects.remove(object);
            if objects.is_empty() {
                contributors.remove(host);
            }
        }
        changed_hosts.insert(host.clone());
    }
}

/// A new translation of `object`, recording what it looked up.
fn translate_one(
    reference: &ObjectRef,
    object: Object,
    snapshot: &Snapshot,
    parses: &SecretParses,
    translate: &dyn Fn(&Lookup<'_>, &mut Reporter<'_>, &mut Output),
) -> Translation {
    let (mut output, mut reports) = (Output::default(), Vec::new());
    let lookup = Lookup::new(snapshot, parses);
    translate(&lookup, &mut Reporter::new(reference.clone(), &mut reports), &mut output);
    Translation { object, reads: lookup.into_reads(), output, reports }
}

/// `claims` grouped by host.
fn by_host(claims: Output) -> HashMap<HostMatch, Output> {
    let mut hosts: HashMap<HostMatch, Output> = HashMap::new();
    for candidate in claims.candidates {
        hosts.entry(candidate.host.clone()).or_default().candidates.push(candidate);
    }
    for (candidate, rule) in claims.canaries {
        hosts.entry(candidate.host.clone()).or_default().canaries.push((candidate, rule));
    }
    for claim in claims.tls {
        hosts.entry(claim.host.clone()).or_default().tls.push(claim);
    }
    hosts
}

/// Notes the namespaces `object` allows on its hosts (its `hawser.dev/allowed-namespaces`; an
/// invalid value allows none, and an Ingress reports it with its other annotations).
fn delegate(object: &ObjectRef, annotations: &BTreeMap<String, String>, delegations: &mut Delegations) {
    if let Some(Ok(allowed)) =
        annotations.get(ownership::ALLOWED_NAMESPACES).map(|v| ownership::parse_allowed(v))
    {
        delegations.insert(object.clone(), allowed);
    }
}

#[cfg(test)]
mod tests;
