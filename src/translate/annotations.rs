//! Ingress annotations → route policy. `hawser.dev/*` keys and the ingress-nginx keys users
//! already have (`nginx.ingress.kubernetes.io/*`); every key is reported as honored,
//! translated, unsupported or ignored, and `hawser.dev/*` wins when both set the same thing.
//!
//! Security settings fail closed: an unparsable source range or Origin list, or an
//! access-restricting annotation hawser does not enforce (see [`super::unenforced`]), makes
//! every path of the Ingress answer `503` instead of serving it without the restriction.

use std::collections::BTreeMap;

use super::affinity;
use super::auth;
use super::report::{Reason, Reporter};
use super::requests;
use super::unenforced::{self, Unenforced};
use super::values;
use crate::model::{BackendProtocol, HashKey, HttpsRedirect, LoadBalancing, Policy, Timeout, ValueError};

/// Prefix of hawser's own annotations.
pub const HAWSER: &str = "hawser.dev/";
/// Prefix of ingress-nginx annotations.
pub const NGINX: &str = "nginx.ingress.kubernetes.io/";
/// ingress-nginx timeouts applied together by `apply_nginx_timeouts`.
const NGINX_TIMEOUTS: [&str; 2] = ["proxy-read-timeout", "proxy-send-timeout"];

/// What applying one annotation did.
pub(super) enum Effect {
    Honored,
    Translated(String),
    Unsupported(&'static str),
    /// Restricts access and is not enforced: the Ingress is refused.
    Refused,
    /// Restricts access, not enforced, and the operator opted out of refusing it.
    OptedOut,
    /// Tunes something hawser does not have.
    NotNeeded,
}

/// A failed annotation: why, and whether the Ingress must be refused (fail closed).
pub(super) struct Failure {
    error: ValueError,
    fatal: bool,
}

impl From<ValueError> for Failure {
    fn from(error: ValueError) -> Self {
        Self { error, fatal: false }
    }
}

impl Failure {
    /// A failure that refuses the whole Ingress (fail closed).
    pub(super) fn fatal(error: ValueError) -> Self {
        Self { error, fatal: true }
    }
}

/// The Secret (of the Ingress's namespace) named to verify HTTPS backends.
#[derive(Debug)]
pub struct CaSecret {
    pub name: String,
    /// The annotation that named it, for reports.
    pub annotation: String,
}

/// What an Ingress's annotations ask for.
#[derive(Debug)]
pub struct IngressSettings {
    /// The policy of every route of the Ingress; `refused` when a security annotation is
    /// invalid or not enforced.
    pub policy: Policy,
    /// A Secret whose `ca.crt` must verify HTTPS backends.
    pub backend_ca: Option<CaSecret>,
    /// The Ingress's Prefix and ImplementationSpecific paths are regular expressions.
    pub regex_paths: bool,
    /// The Ingress is a canary of the main Ingress for its hosts and paths.
    pub canary: Option<super::canary::CanaryRule>,
    /// Basic auth asked for, with the Secret of its users.
    pub basic_auth: Option<auth::BasicAuthSecret>,
    /// Route to the Services' cluster IPs instead of their endpoints.
    pub service_upstream: bool,
    /// `default-backend`'s Service and the `custom-http-errors` it renders.
    pub error_backend: Option<(String, Vec<u16>)>,
}

/// The policy of an Ingress's routes: ingress-nginx defaults, then nginx annotations, then
/// hawser annotations. `opt_outs` are the nginx keys the install serves without enforcing
/// (`--ignore-annotations`); `hawser.dev/ignore-annotations` adds the Ingress's own.
pub fn ingress_policy(
    annotations: &BTreeMap<String, String>,
    namespace: &str,
    opt_outs: &[String],
    reporter: &mut Reporter<'_>,
) -> IngressSettings {
    let mut policy = Policy::default();
    let mut rejected = false;
    let nginx: BTreeMap<&str, &str> = with_prefix(annotations, NGINX);
    let hawser: BTreeMap<&str, &str> = with_prefix(annotations, HAWSER);
    let own_opt_outs = hawser.get("ignore-annotations").copied().unwrap_or_default();
    let opted_out: Vec<&str> =
        unenforced::opt_outs(own_opt_outs).chain(opt_outs.iter().map(String::as_str)).collect();
    for (key, value) in nginx.iter().filter(|(key, _)| !NGINX_TIMEOUTS.contains(key)) {
        let outcome = apply_nginx(key, value, &nginx, &mut policy);
        let outcome = outcome.or_else(|| requests::apply(key, value, &nginx, &mut policy));
        let outcome = outcome.or_else(|| auth::apply(key, value, &nginx, &mut policy));
        let outcome = outcome.or_else(|| unenforced_effect(key, value, &opted_out));
        rejected |= record(reporter, NGINX, key, outcome);
    }
    apply_nginx_timeouts(&nginx, &mut policy, reporter);
    for (key, value) in &hawser {
        let outcome = apply_hawser(key, value, &hawser, &mut policy);
        rejected |= record(reporter, HAWSER, key, outcome);
    }
    if !matches!(policy.load_balancing, LoadBalancing::ConsistentHash(_)) && hawser.contains_key("hash-on") {
        reporter.report(
            Reason::Ignored,
            format!("{HAWSER}hash-on"),
            "has no effect unless load-balancing is consistent-hash",
        );
    }
    let backend_ca = match backend_ca(&nginx, &hawser, namespace) {
        Ok(ca) => ca,
        Err((annotation, error)) => {
            reporter.report(Reason::Invalid, annotation, format!("{error}; {REFUSED}"));
            rejected = true;
            None
        }
    };
    let basic_auth = match auth::basic_auth_secret(&nginx, namespace) {
        Some(Err(message)) => {
            reporter.report(Reason::Invalid, format!("{NGINX}auth-secret"), format!("{message}; {REFUSED}"));
            rejected = true;
            None
        }
        found => found.and_then(Result::ok),
    };
    policy.refused = rejected;
    let canary = super::canary::rule(&nginx);
    let service_upstream = nginx.get("service-upstream").is_some_and(|v| v.trim() == "true");
    let regex_paths = requests::regex_paths(&nginx);
    let error_backend = requests::error_backend(&nginx);
    IngressSettings { policy, backend_ca, regex_paths, canary, basic_auth, service_upstream, error_backend }
}

/// `rate-limit` (every request; replaces nginx's `limit-rps`/`limit-rpm` rates) or
/// `handshake-rate-limit` (upgrades only), with its `-burst` (default: the count per period).
fn rate_limit(
    key: &str,
    value: &str,
    all: &BTreeMap<&str, &str>,
    policy: &mut Policy,
) -> Result<(), ValueError> {
    let burst = all.get(format!("{key}-burst").as_str()).map(|burst| values::positive(burst)).transpose()?;
    let rate = values::hawser_rate(value, burst, key == "handshake-rate-limit")?;
    requests::add_rate(policy, rate);
    Ok(())
}

/// Why a session-cookie key does nothing on its own.
const WITHOUT_AFFINITY: &str = "has no effect without affinity: cookie";

/// Why a Secret named in another namespace is not read (completes a sentence after its name).
pub const OTHER_NAMESPACE: &str = "is in another namespace; only Secrets of the Ingress's namespace are used";

/// What a refused Ingress does, for report messages.
pub const REFUSED: &str = "every path of the Ingress answers 503 (fail closed)";

fn unenforced_effect(key: &str, value: &str, opted_out: &[&str]) -> Option<Result<Effect, Failure>> {
    Some(Ok(match unenforced::classify(key, value, opted_out.iter().copied())? {
        Unenforced::Refused => Effect::Refused,
        Unenforced::OptedOut => Effect::OptedOut,
        Unenforced::NotNeeded => Effect::NotNeeded,
    }))
}

/// `hawser.dev/backend-ca-secret: NAME`, or nginx's `proxy-ssl-secret: NAMESPACE/NAME` with
/// `proxy-ssl-verify: "on"`. Only Secrets of the Ingress's own namespace may be named.
fn backend_ca(
    nginx: &BTreeMap<&str, &str>,
    hawser: &BTreeMap<&str, &str>,
    namespace: &str,
) -> Result<Option<CaSecret>, (String, ValueError)> {
    if let Some(name) = hawser.get("backend-ca-secret") {
        return Ok(Some(CaSecret {
            name: name.trim().to_owned(),
            annotation: format!("{HAWSER}backend-ca-secret"),
        }));
    }
    let (Some(secret), Some("on")) =
        (nginx.get("proxy-ssl-secret"), nginx.get("proxy-ssl-verify").map(|v| v.trim()))
    else {
        return Ok(None);
    };
    let annotation = format!("{NGINX}proxy-ssl-secret");
    match secret.trim().split_once('/') {
        Some((ns, name)) if ns == namespace && !name.is_empty() => {
            Ok(Some(CaSecret { name: name.to_owned(), annotation }))
        }
        Some(_) => Err((annotation, ValueError::refused(secret, OTHER_NAMESPACE))),
        None => Ok(Some(CaSecret { name: secret.trim().to_owned(), annotation })),
    }
}

fn with_prefix<'a>(annotations: &'a BTreeMap<String, String>, prefix: &str) -> BTreeMap<&'a str, &'a str> {
    annotations.iter().filter_map(|(k, v)| Some((k.strip_prefix(prefix)?, v.as_str()))).collect()
}

/// Reports one annotation's outcome; true when it must reject the Ingress.
fn record(
    reporter: &mut Reporter<'_>,
    prefix: &str,
    key: &str,
    outcome: Option<Result<Effect, Failure>>,
) -> bool {
    let field = format!("{prefix}{key}");
    match outcome {
        None => {
            reporter.report(Reason::Ignored, field, "not a setting hawser knows; it has no effect");
            false
        }
        Some(Ok(Effect::Honored)) => {
            reporter.report(Reason::Honored, field, "applied");
            false
        }
        Some(Ok(Effect::Translated(how))) => {
            reporter.report(Reason::Translated, field, how);
            false
        }
        Some(Ok(Effect::Unsupported(why))) => {
            reporter.report(Reason::Unsupported, field, why);
            false
        }
        Some(Ok(Effect::Refused)) => {
            let message = format!(
                "restricts access (or injects nginx configuration) and hawser does not enforce it; {REFUSED}. Remove it, or opt out with {HAWSER}ignore-annotations: {key} (or --ignore-annotations) to serve without it"
            );
            reporter.report(Reason::Refused, field, message);
            true
        }
        Some(Ok(Effect::OptedOut)) => {
            let message = "not enforced by hawser; served without it, as ignore-annotations asks";
            reporter.report(Reason::Ignored, field, message);
            false
        }
        Some(Ok(Effect::NotNeeded)) => {
            reporter.report(Reason::NotNeeded, field, "tunes nginx internals hawser does not have");
            false
        }
        Some(Err(failure)) => {
            let consequence = if failure.fatal { REFUSED } else { "the annotation is ignored" };
            reporter.report(Reason::Invalid, field, format!("{}; {consequence}", failure.error));
            failure.fatal
        }
    }
}

/// One `nginx.ingress.kubernetes.io/` key. `None`: not a key hawser recognises.
fn apply_nginx(
    key: &str,
    value: &str,
    all: &BTreeMap<&str, &str>,
    policy: &mut Policy,
) -> Option<Result<Effect, Failure>> {
    Some(match key {
        "proxy-connect-timeout" => {
            values::nginx_timeout(value).and_then(|t| values::bounded(value, t)).map_err(Failure::from).map(|d| {
                policy.connect_timeout = d;
                Effect::Honored
            })
        }
        "load-balance" => match value.trim() {
            "round_robin" => {
                policy.load_balancing = LoadBalancing::RoundRobin;
                Ok(Effect::Honored)
            }
            "ewma" => {
                policy.load_balancing = LoadBalancing::LeastConnections;
                Ok(Effect::Translated("ewma → least-connections, the nearest hawser strategy".into()))
            }
            other => Err(ValueError::malformed(other, "round_robin or ewma").into()),
        },
        "upstream-hash-by" => nginx_hash_key(value).map_err(Failure::from).map(|key| {
            let how = format!("consistent hashing on {key:?}");
            policy.load_balancing = LoadBalancing::ConsistentHash(key);
            Effect::Translated(how)
        }),
        "affinity" => match value.trim() {
            "cookie" => {
                policy.affinity = Some(affinity::nginx_cookie(all));
                Ok(Effect::Honored)
            }
            other => Err(ValueError::malformed(other, "cookie").into()),
        },
        "affinity-mode" | "session-cookie-hash" | "affinity-canary-behavior"
            if !all.contains_key("affinity") =>
        {
            Ok(Effect::Unsupported(WITHOUT_AFFINITY))
        }
        "affinity-mode" => match value.trim() {
            "persistent" => Ok(Effect::Honored),
            "balanced" => Ok(Effect::Translated(
                "persistent: hawser's cookie names the endpoint, so sessions never move when pods are added; new sessions are balanced by the route's strategy".into(),
            )),
            other => Err(ValueError::malformed(other, "balanced or persistent").into()),
        },
        "session-cookie-hash" => {
            Ok(Effect::Translated("the cookie value is always a keyed hash of the endpoint".into()))
        }
        "affinity-canary-behavior" => Ok(Effect::Unsupported("a canary is chosen before affinity: a session cookie does not keep a client on the canary")),
        key if key.starts_with("session-cookie-") => {
            let mut check = crate::model::CookieAffinity::named(affinity::NGINX_DEFAULT_COOKIE);
            let valid = affinity::nginx_attribute(&mut check, key, value)?;
            match valid {
                Err(message) => Err(message.into()),
                Ok(()) if !all.contains_key("affinity") => Ok(Effect::Unsupported(WITHOUT_AFFINITY)),
                Ok(()) => Ok(Effect::Honored),
            }
        }
        "whitelist-source-range" | "allowlist-source-range" => {
            values::cidrs(values::list(value)).map_err(Failure::fatal).map(|ranges| {
                policy.source_ranges = ranges;
                Effect::Honored
            })
        }
        "denylist-source-range" | "blacklist-source-range" => {
            values::cidrs(values::list(value)).map_err(Failure::fatal).map(|ranges| {
                policy.denied_ranges = ranges;
                Effect::Honored
            })
        }
        "limit-connections" => values::positive(value).map_err(Failure::from).map(|limit| {
            policy.max_connections_per_client = Some(limit);
            Effect::Translated(
                "open connections per client IP, counted per route and per hawser replica".into(),
            )
        }),
        "backend-protocol" => backend_protocol(value, policy),
        "proxy-ssl-secret" | "proxy-ssl-verify" => Ok(Effect::Translated(
            "with proxy-ssl-verify: on, HTTPS backends are verified against the Secret's ca.crt (client certificates are not sent)".into(),
        )),
        "proxy-http-version" if value.trim() == "1.1" => Ok(Effect::Honored),
        "proxy-http-version" => Ok(Effect::Unsupported("hawser always speaks HTTP/1.1 to backends")),
        "ssl-redirect" => https_redirect(value, HttpsRedirect::IfTls, policy),
        "force-ssl-redirect" => https_redirect(value, HttpsRedirect::Always, policy),
        _ => return None,
    })
}

/// nginx closes a connection when either direction is silent for its timeout; hawser's idle
/// timeout counts bytes in both directions, so the larger of the two keeps every connection
/// nginx would keep. The read timeout is also how long nginx waits for a response head.
fn apply_nginx_timeouts(nginx: &BTreeMap<&str, &str>, policy: &mut Policy, reporter: &mut Reporter<'_>) {
    let mut idle: Option<Timeout> = None;
    for key in NGINX_TIMEOUTS {
        let Some(value) = nginx.get(key) else { continue };
        let field = format!("{NGINX}{key}");
        match values::nginx_timeout(value) {
            Ok(timeout) => {
                idle = Some(idle.map_or(timeout, |current| longer(current, timeout)));
                // `0` turns the idle timeout off; the handshake and response cannot be off, so
                // they keep theirs.
                if let (true, Timeout::After(wait)) = (key == "proxy-read-timeout", timeout) {
                    policy.handshake_timeout = wait;
                    policy.response_timeout = wait;
                }
                let how = "idle timeout = the larger of proxy-read-timeout and proxy-send-timeout (no byte in either direction)";
                reporter.report(Reason::Translated, field, how);
            }
            Err(error) => {
                reporter.report(Reason::Invalid, field, format!("{error}; the annotation is ignored"))
            }
        }
    }
    if let Some(idle) = idle {
        policy.idle_timeout = idle;
    }
}

/// The timeout that keeps a connection longer; off keeps it longest.
fn longer(a: Timeout, b: Timeout) -> Timeout {
    match (a, b) {
        (Timeout::After(a), Timeout::After(b)) => Timeout::After(a.max(b)),
        _ => Timeout::Disabled,
    }
}

/// `$remote_addr`, `$http_x_name`, `$cookie_name`, `$arg_name`.
fn nginx_hash_key(value: &str) -> Result<HashKey, ValueError> {
    let value = value.trim();
    if value == "$remote_addr" || value == "$binary_remote_addr" {
        return Ok(HashKey::SourceIp);
    }
    let key = value
        .strip_prefix("$http_")
        .map(|h| HashKey::Header(h.replace('_', "-").to_ascii_lowercase()))
        .or_else(|| value.strip_prefix("$cookie_").map(|c| HashKey::Cookie(c.to_owned())))
        .or_else(|| value.strip_prefix("$arg_").map(|a| HashKey::Query(a.to_owned())));
    match key {
        Some(key) if value.matches('$').count() == 1 && !value.contains(char::is_whitespace) => Ok(key),
        _ => Err(ValueError::malformed(value, "one of $remote_addr, $http_NAME, $cookie_NAME, $arg_NAME")),
    }
}

fn backend_protocol(value: &str, policy: &mut Policy) -> Result<Effect, Failure> {
    match value.trim().to_ascii_uppercase().as_str() {
        "HTTP" => {
            policy.backend_protocol = BackendProtocol::Http;
            Ok(Effect::Honored)
        }
        "HTTPS" => {
            policy.backend_protocol = BackendProtocol::HTTPS;
            Ok(Effect::Translated(
                "TLS to the endpoints, the Service DNS name as SNI; the certificate is verified only with proxy-ssl-verify: on and proxy-ssl-secret".into(),
            ))
        }
        "GRPC" | "GRPCS" | "FCGI" | "AUTO_HTTP" => {
            Ok(Effect::Unsupported("hawser proxies HTTP/1.1 to backends"))
        }
        other => Err(ValueError::malformed(other, "HTTP or HTTPS").into()),
    }
}

/// One `hawser.dev/` key. `None`: not a key hawser recognises.
fn apply_hawser(
    key: &str,
    value: &str,
    all: &BTreeMap<&str, &str>,
    policy: &mut Policy,
) -> Option<Result<Effect, Failure>> {
    let honored = |result: Result<(), ValueError>| result.map(|()| Effect::Honored).map_err(Failure::from);
    Some(match key {
        "idle-timeout" => honored(values::timeout(value).map(|t| policy.idle_timeout = t)),
        "handshake-timeout" => honored(values::bounded_timeout(value).map(|d| policy.handshake_timeout = d)),
        "response-timeout" => honored(values::bounded_timeout(value).map(|d| policy.response_timeout = d)),
        "connect-timeout" => honored(values::bounded_timeout(value).map(|d| policy.connect_timeout = d)),
        "max-connection-duration" => {
            honored(values::timeout(value).map(|t| policy.max_connection_duration = t))
        }
        "load-balancing" => {
            honored(load_balancing(value, all.get("hash-on").copied()).map(|lb| policy.load_balancing = lb))
        }
        "hash-on" => Ok(Effect::Honored),
        "affinity" => honored(affinity::hawser(value).map(|a| policy.affinity = a)),
        "allowed-origins" => values::origins(values::list(value)).map_err(Failure::fatal).map(|origins| {
            policy.allowed_origins = origins;
            Effect::Honored
        }),
        "source-ranges" => values::cidrs(values::list(value)).map_err(Failure::fatal).map(|ranges| {
            policy.source_ranges = ranges;
            Effect::Honored
        }),
        "max-connections" => honored(values::positive(value).map(|n| policy.max_connections = Some(n))),
        "max-connections-per-client" => {
            honored(values::positive(value).map(|n| policy.max_connections_per_client = Some(n)))
        }
        "backend-protocol" => backend_protocol(value, policy),
        "ssl-redirect" => https_redirect(value, HttpsRedirect::IfTls, policy),
        "force-ssl-redirect" => https_redirect(value, HttpsRedirect::Always, policy),
        "allowed-upgrades" => {
            values::upgrade_protocols(values::list(value)).map_err(Failure::from).map(|protocols| {
                policy.allowed_upgrades = protocols;
                Effect::Honored
            })
        }
        "ignore-annotations" => Ok(Effect::Honored),
        "allowed-namespaces" => super::ownership::parse_allowed(value)
            .map(|_| {
                Effect::Translated(
                    "namespaces allowed on this Ingress's hosts under --host-ownership=namespace".into(),
                )
            })
            .map_err(Failure::from),
        "ping-interval" => honored(values::timeout(value).map(|t| policy.ping_interval = t)),
        "ping-timeout" => honored(values::bounded_timeout(value).map(|d| policy.ping_timeout = d)),
        "max-message-bytes" => {
            honored(values::positive(value).map(|n| policy.max_message_bytes = Some(u64::from(n))))
        }
        "rate-limit" | "handshake-rate-limit" => honored(rate_limit(key, value, all, policy)),
        "rate-limit-burst" | "handshake-rate-limit-burst" => {
            return Some(match values::positive(value) {
                Err(message) => Err(message.into()),
                Ok(_) if !all.contains_key(key.trim_end_matches("-burst")) => {
                    Ok(Effect::Unsupported("has no effect without its rate annotation"))
                }
                Ok(_) => Ok(Effect::Honored),
            });
        }
        "rebalance" => honored(values::boolean(value).and_then(|on| {
            policy.rebalance = if on { Some(values::rebalance(None, None)?) } else { None };
            Ok(())
        })),
        _ => return None,
    })
}

/// `true` sets `when_true`; `false` turns redirects off unless a force already applies.
fn https_redirect(value: &str, when_true: HttpsRedirect, policy: &mut Policy) -> Result<Effect, Failure> {
    let on = values::boolean(value)?;
    policy.https_redirect = match (on, policy.https_redirect) {
        (true, HttpsRedirect::Always) => HttpsRedirect::Always,
        (true, _) => when_true,
        (false, HttpsRedirect::Always) if when_true == HttpsRedirect::IfTls => HttpsRedirect::Always,
        (false, _) if when_true == HttpsRedirect::Always => HttpsRedirect::IfTls,
        (false, _) => HttpsRedirect::Never,
    };
    Ok(Effect::Honored)
}

/// `round-robin`, `least-connections`, or `consistent-hash` with `hash-on`.
pub fn load_balancing(value: &str, hash_on: Option<&str>) -> Result<LoadBalancing, ValueError> {
    match value.trim() {
        "round-robin" => Ok(LoadBalancing::RoundRobin),
        "least-connections" => Ok(LoadBalancing::LeastConnections),
        "consistent-hash" => match hash_on {
            Some(hash_on) => hash_key(hash_on).map(LoadBalancing::ConsistentHash),
            None => Err(ValueError::Incomplete(
                "consistent-hash needs hawser.dev/hash-on (header:NAME, cookie:NAME, query:NAME or source-ip)",
            )),
        },
        other => Err(ValueError::malformed(other, "round-robin, least-connections or consistent-hash")),
    }
}

/// `header:NAME`, `cookie:NAME`, `query:NAME` or `source-ip`.
fn hash_key(value: &str) -> Result<HashKey, ValueError> {
    let value = value.trim();
    let key = match value.split_once(':') {
        _ if value == "source-ip" => Some(HashKey::SourceIp),
        Some(("header", name)) if !name.is_empty() => Some(HashKey::Header(name.to_ascii_lowercase())),
        Some(("cookie", name)) if !name.is_empty() => Some(HashKey::Cookie(name.to_owned())),
        Some(("query", name)) if !name.is_empty() => Some(HashKey::Query(name.to_owned())),
        _ => None,
    };
    key.ok_or_else(|| ValueError::malformed(value, "header:NAME, cookie:NAME, query:NAME or source-ip"))
}
