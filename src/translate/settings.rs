//! Connection settings (a WebSocketRoute rule's, a WebSocketPolicy's) → route policy: the
//! WebSocketRoute defaults for long-lived connections (idle timeout 1 h, handshake timeout
//! 10 s, pings every 30 s, round-robin), then each setting checked. An invalid value leaves the
//! rule out, except a security setting (`allowedOrigins`, `sourceRanges`), which refuses it
//! (fail closed).

use std::time::Duration;

use super::affinity;
use super::report::{Reason, Reporter};
use super::values::{self, rebalance};
use crate::crd::{ConnectionSettings, HashOn, LoadBalancingSpec, Strategy};
use crate::model::{HashKey, LoadBalancing, Policy, Timeout, ValueError};

/// Idle timeout of a WebSocketRoute rule that sets none.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Handshake timeout of a WebSocketRoute rule that sets none.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Ping interval of a WebSocketRoute rule that sets none.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);

/// What a refused rule does, for report messages.
pub const RULE_REFUSED: &str = "the rule answers 503 (fail closed)";

/// The policy of a rule for long-lived connections before its settings.
pub fn websocket_defaults() -> Policy {
    Policy {
        idle_timeout: Timeout::After(DEFAULT_IDLE_TIMEOUT),
        handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        ping_interval: Timeout::After(DEFAULT_PING_INTERVAL),
        ..Policy::default()
    }
}

/// `policy` with `settings` applied; `None` (reported at `field`) when a value is invalid,
/// refused (answers 503) when that value is a security setting.
pub fn policy(
    settings: &ConnectionSettings,
    mut policy: Policy,
    field: &str,
    reporter: &mut Reporter<'_>,
) -> Option<Policy> {
    match apply(settings, &mut policy) {
        Ok(()) => Some(policy),
        Err((key, message, true)) => {
            let message = format!("{message}; {RULE_REFUSED}");
            reporter.report(Reason::Invalid, format!("{field}.{key}"), message);
            Some(Policy { refused: true, ..policy })
        }
        Err((key, message, false)) => {
            let message = format!("{message}; the rule is left out");
            reporter.report(Reason::Invalid, format!("{field}.{key}"), message);
            None
        }
    }
}

/// `policy` with `settings` applied, reporting nothing (a WebSocketPolicy's own translation
/// reports its values): refused when a security setting is invalid; `None` when another value
/// is (the settings are not used).
pub fn applied_quietly(settings: &ConnectionSettings, policy: Policy) -> Option<Policy> {
    let mut applied = policy.clone();
    match apply(settings, &mut applied) {
        Ok(()) => Some(applied),
        Err((_, _, true)) => Some(Policy { refused: true, ..policy }),
        Err((_, _, false)) => None,
    }
}

/// Whether `settings` can be used at all (see [`applied_quietly`]).
pub fn usable(settings: &ConnectionSettings) -> bool {
    applied_quietly(settings, Policy::default()).is_some()
}

/// A rule value that cannot be honoured: the field, the message, and whether the rule must be
/// refused (a security setting: fail closed) rather than left out.
type RuleError = (&'static str, ValueError, bool);

fn apply(rule: &ConnectionSettings, policy: &mut Policy) -> Result<(), RuleError> {
    let at = |key: &'static str| move |error: ValueError| (key, error, false);
    let fail_closed = |key: &'static str| move |error: ValueError| (key, error, true);
    if let Some(v) = &rule.idle_timeout {
        policy.idle_timeout = values::timeout(v).map_err(at("idleTimeout"))?;
    }
    if let Some(v) = &rule.handshake_timeout {
        policy.handshake_timeout = values::bounded_timeout(v).map_err(at("handshakeTimeout"))?;
    }
    if let Some(v) = &rule.response_timeout {
        policy.response_timeout = values::bounded_timeout(v).map_err(at("responseTimeout"))?;
    }
    if let Some(v) = &rule.max_connection_duration {
        policy.max_connection_duration = values::timeout(v).map_err(at("maxConnectionDuration"))?;
    }
    if let Some(v) = &rule.ping_interval {
        policy.ping_interval = values::timeout(v).map_err(at("pingInterval"))?;
    }
    if let Some(v) = &rule.ping_timeout {
        policy.ping_timeout = values::bounded_timeout(v).map_err(at("pingTimeout"))?;
    }
    policy.max_message_bytes = rule.max_message_bytes.filter(|&n| n > 0);
    if let Some(spec) = &rule.rebalance {
        policy.rebalance = Some(rebalance(spec.max_skew, spec.closes_per_second).map_err(at("rebalance"))?);
    }
    if let Some(spec) = &rule.session_affinity {
        policy.affinity = Some(affinity::route(spec).map_err(at("sessionAffinity"))?);
    }
    if let Some(lb) = &rule.load_balancing {
        policy.load_balancing = load_balancing(lb).map_err(at("loadBalancing"))?;
    }
    policy.allowed_origins = values::origins(rule.allowed_origins.iter().map(String::as_str))
        .map_err(fail_closed("allowedOrigins"))?;
    policy.source_ranges =
        values::cidrs(rule.source_ranges.iter().map(String::as_str)).map_err(fail_closed("sourceRanges"))?;
    policy.allowed_upgrades = values::upgrade_protocols(rule.allowed_upgrades.iter().map(String::as_str))
        .map_err(at("allowedUpgrades"))?;
    policy.max_connections = rule.max_connections.filter(|&n| n > 0);
    policy.max_connections_per_client = rule.max_connections_per_client.filter(|&n| n > 0);
    let rates =
        [("rateLimit", &rule.rate_limit, false), ("handshakeRateLimit", &rule.handshake_rate_limit, true)];
    for (key, spec, upgrades_only) in rates {
        if let Some(spec) = spec {
            let rate = values::hawser_rate(&spec.rate, spec.burst, upgrades_only).map_err(at(key))?;
            super::requests::add_rate(policy, rate);
        }
    }
    Ok(())
}

fn load_balancing(spec: &LoadBalancingSpec) -> Result<LoadBalancing, ValueError> {
    match spec.strategy {
        Strategy::RoundRobin => Ok(LoadBalancing::RoundRobin),
        Strategy::LeastConnections => Ok(LoadBalancing::LeastConnections),
        Strategy::ConsistentHash => {
            spec.hash_on.as_ref().and_then(hash_key).map(LoadBalancing::ConsistentHash).ok_or(
                ValueError::Incomplete(
                    "ConsistentHash needs hashOn with exactly one of header, cookie, query, sourceIP",
                ),
            )
        }
    }
}

fn hash_key(on: &HashOn) -> Option<HashKey> {
    let keys: Vec<HashKey> = [
        on.header.as_ref().map(|h| HashKey::Header(h.to_ascii_lowercase())),
        on.cookie.clone().map(HashKey::Cookie),
        on.query.clone().map(HashKey::Query),
        (on.source_ip == Some(true)).then_some(HashKey::SourceIp),
    ]
    .into_iter()
    .flatten()
    .collect();
    match <[HashKey; 1]>::try_from(keys) {
        Ok([key]) => Some(key),
        Err(_) => None,
    }
}
