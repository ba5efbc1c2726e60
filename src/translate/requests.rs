//! ingress-nginx annotations on how requests are answered and passed on: the body size limit
//! and timeout,
//! redirects answered by hawser, `app-root`, regex paths and `rewrite-target`, CORS, request
//! rate limits, the backend's `Host` (`upstream-vhost`), `X-Forwarded-Prefix`, and how many
//! endpoints a request may try.

use std::collections::BTreeMap;

use super::annotations::{Effect, Failure};
use crate::model::{Cors, Policy, Rate, RateLimit, Redirect, ValueError};

/// One `nginx.ingress.kubernetes.io/` key of this kind. `None`: not one of them.
pub(super) fn apply(
    key: &str,
    value: &str,
    all: &BTreeMap<&str, &str>,
    policy: &mut Policy,
) -> Option<Result<Effect, Failure>> {
    let rewrites = &mut policy.rewrites;
    let result = match key {
        "proxy-body-size" => size(value).map(|limit| policy.max_body_bytes = limit),
        "client-body-timeout" => super::values::nginx_timeout(value)
            .and_then(|timeout| super::values::bounded(value, timeout))
            .map(|timeout| policy.request_body_timeout = Some(timeout)),
        "permanent-redirect" => {
            redirect(value, all.get("permanent-redirect-code"), 301).map(|r| rewrites.redirect = Some(r))
        }
        // A permanent redirect wins when both are set, as in ingress-nginx.
        "temporal-redirect" if all.contains_key("permanent-redirect") => Ok(()),
        "temporal-redirect" => {
            redirect(value, all.get("temporal-redirect-code"), 302).map(|r| rewrites.redirect = Some(r))
        }
        "permanent-redirect-code" | "temporal-redirect-code" => {
            let redirect = key.trim_end_matches("-code");
            return Some(match redirect_code(value) {
                Err(message) => Err(message.into()),
                Ok(_) if !all.contains_key(redirect) => {
                    Ok(Effect::Unsupported("has no effect without its redirect annotation"))
                }
                Ok(_) => Ok(Effect::Honored),
            });
        }
        "default-backend" => service_name(value).map(drop),
        "custom-http-errors" => {
            return Some(match status_codes(value) {
                Err(message) => Err(message.into()),
                Ok(_) if !all.contains_key("default-backend") => Ok(Effect::Unsupported(
                    "has no effect without default-backend (hawser has no global default backend)",
                )),
                Ok(_) => Ok(Effect::Honored),
            });
        }
        "app-root" => absolute_path(value).map(|path| rewrites.app_root = Some(path)),
        "rewrite-target" => rewrite_target(value).map(|target| rewrites.rewrite_target = Some(target)),
        // Read by the Ingress's path translation (`regex_paths`); here only checked.
        "use-regex" => super::values::boolean(value).map(drop),
        // Read by the backend resolution; here only checked.
        "service-upstream" => {
            return Some(super::values::boolean(value).map_err(Failure::from).map(|upstream| {
                if upstream {
                    Effect::Translated("the Service's cluster IP is the one endpoint: kube-proxy balances, and hawser's balancing, affinity, drains and rebalancing do not apply".into())
                } else {
                    Effect::Honored
                }
            }));
        }
        "upstream-vhost" => host(value).map(|host| rewrites.upstream_host = Some(host)),
        "x-forwarded-prefix" => absolute_path(value).map(|prefix| rewrites.forwarded_prefix = Some(prefix)),
        "enable-cors" => super::values::boolean(value).map(|on| policy.cors = on.then(|| cors(all))),
        key if key.starts_with("cors-") => {
            let mut check = Cors::default();
            return Some(match cors_setting(&mut check, key, value)? {
                // The origins are a security setting: a list hawser cannot read fails closed
                // (allowing every origin instead would open credentialed reads to all sites).
                Err(message) if key == "cors-allow-origin" => Err(Failure::fatal(message)),
                Err(message) => Err(message.into()),
                Ok(()) if all.get("enable-cors").is_none_or(|v| v.trim() != "true") => {
                    Ok(Effect::Unsupported("has no effect without enable-cors: \"true\""))
                }
                Ok(()) => Ok(Effect::Honored),
            });
        }
        "limit-rps" | "limit-rpm" => {
            super::values::positive(value).map(|_| policy.rate_limit = Some(rate_limit(all)))
        }
        "limit-burst-multiplier" | "limit-whitelist" | "limit-allowlist" => {
            let valid = match key {
                "limit-burst-multiplier" => super::values::positive(value).map(drop),
                _ => super::values::cidrs(super::values::list(value)).map(drop),
            };
            return Some(match valid {
                Err(message) => Err(message.into()),
                Ok(()) if !all.contains_key("limit-rps") && !all.contains_key("limit-rpm") => {
                    Ok(Effect::Unsupported("has no effect without limit-rps or limit-rpm"))
                }
                Ok(()) => Ok(Effect::Translated("per client IP and route, per hawser replica".into())),
            });
        }
        key if key.starts_with("canary") => {
            return Some(match super::canary::check(key, value)? {
                Err(message) => Err(message.into()),
                Ok(()) if key != "canary" && all.get("canary").is_none_or(|v| v.trim() != "true") => {
                    Ok(Effect::Unsupported("has no effect without canary: \"true\""))
                }
                Ok(()) => Ok(Effect::Honored),
            });
        }
        "proxy-next-upstream-tries" => match value.trim().parse::<u32>() {
            // 0 is "no limit" to nginx; hawser still stops at every endpoint tried once.
            Ok(tries) => {
                policy.max_endpoints_tried = if tries == 0 { u32::MAX } else { tries };
                Ok(())
            }
            Err(_) => Err(ValueError::malformed(value, "a whole number")),
        },
        _ => return None,
    };
    Some(result.map(|()| Effect::Honored).map_err(Failure::from))
}

/// Whether the Ingress's Prefix and ImplementationSpecific paths are regular expressions:
/// `use-regex: "true"`, or a `rewrite-target` (whose capture groups need one), as in
/// ingress-nginx.
pub(super) fn regex_paths(nginx: &BTreeMap<&str, &str>) -> bool {
    nginx.get("use-regex").is_some_and(|v| v.trim() == "true") || nginx.contains_key("rewrite-target")
}

/// A rewrite target: a path (with `$N` groups) or a lone group such as `$1`.
fn rewrite_target(value: &str) -> Result<String, ValueError> {
    let target = value.trim();
    if (target.starts_with('/') || target.starts_with('$')) && target.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(target.to_owned())
    } else {
        Err(ValueError::malformed(value, "a path (with $1…$9 for the capture groups)"))
    }
}

/// ingress-nginx's defaults, with the `cors-*` keys of `all` that are valid (each invalid one
/// is reported on its own key).
fn cors(all: &BTreeMap<&str, &str>) -> Cors {
    let mut cors = Cors::default();
    for (key, value) in all {
        let _ = cors_setting(&mut cors, key, value);
    }
    cors
}

/// Applies one `cors-*` key. `None`: not one.
fn cors_setting(cors: &mut Cors, key: &str, value: &str) -> Option<Result<(), ValueError>> {
    let header_list = |value: &str| {
        let value = value.trim();
        if value.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            Ok(value.to_owned())
        } else {
            Err(ValueError::malformed(value, "a header value"))
        }
    };
    Some(match key {
        "cors-allow-origin" => {
            super::values::origins(super::values::list(value)).map(|o| cors.allow_origins = o)
        }
        "cors-allow-methods" => header_list(value).map(|v| cors.allow_methods = v),
        "cors-allow-headers" => header_list(value).map(|v| cors.allow_headers = v),
        "cors-expose-headers" => header_list(value).map(|v| cors.expose_headers = v),
        "cors-allow-credentials" => super::values::boolean(value).map(|on| cors.allow_credentials = on),
        "cors-max-age" => match value.trim().parse::<u64>() {
            Ok(seconds) => {
                cors.max_age = seconds;
                Ok(())
            }
            Err(_) => Err(ValueError::malformed(value, "a number of seconds")),
        },
        _ => return None,
    })
}

/// ingress-nginx's request limits from `all`: `limit-rps` and `limit-rpm`, each with a burst of
/// `limit-burst-multiplier` (default 5) times its rate, and the exempt `limit-whitelist`.
/// Invalid values are left out (each reported on its own key).
fn rate_limit(all: &BTreeMap<&str, &str>) -> RateLimit {
    let number = |key: &str| all.get(key).and_then(|v| super::values::positive(v).ok());
    let multiplier = f64::from(number("limit-burst-multiplier").unwrap_or(5));
    let rates = [("limit-rps", 1), ("limit-rpm", 60)]
        .into_iter()
        .filter_map(|(key, seconds)| {
            let per_period = f64::from(number(key)?);
            let period = std::time::Duration::from_secs(seconds);
            Some(Rate::new(per_period, period, per_period * multiplier, false))
        })
        .collect();
    let exempt = ["limit-whitelist", "limit-allowlist"]
        .iter()
        .filter_map(|key| all.get(key))
        .filter_map(|value| super::values::cidrs(super::values::list(value)).ok())
        .flatten()
        .collect();
    RateLimit { rates, exempt }
}

/// Adds hawser's own `rate` to the route's limit. A rate for every request replaces
/// ingress-nginx's (`hawser.dev/` wins); handshake rates add to whatever is there.
pub fn add_rate(policy: &mut Policy, rate: Rate) {
    let limit = policy.rate_limit.get_or_insert_with(|| RateLimit { rates: Vec::new(), exempt: Vec::new() });
    if !rate.upgrades_only {
        limit.rates.retain(|r| r.upgrades_only);
    }
    limit.rates.push(rate);
}

/// `default-backend`'s Service and the `custom-http-errors` codes it renders, when both read.
pub fn error_backend(all: &BTreeMap<&str, &str>) -> Option<(String, Vec<u16>)> {
    let service = service_name(all.get("default-backend")?).ok()?;
    let codes = all.get("custom-http-errors").and_then(|v| status_codes(v).ok()).unwrap_or_default();
    Some((service, codes))
}

/// A Service name (a DNS label) of the Ingress's namespace.
fn service_name(value: &str) -> Result<String, ValueError> {
    let name = value.trim();
    let label = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if label {
        Ok(name.to_owned())
    } else {
        Err(ValueError::malformed(value, "a Service name of this namespace"))
    }
}

/// `404,503`: statuses from 400 to 599.
fn status_codes(value: &str) -> Result<Vec<u16>, ValueError> {
    let code = |item: &str| item.parse::<u16>().ok().filter(|c| (400..=599).contains(c));
    super::values::list(value)
        .map(|item| code(item).ok_or_else(|| ValueError::malformed(item, "a status from 400 to 599")))
        .collect()
}

/// nginx's size: bytes, or with `k`/`m`/`g` (1024-based); `0` is unlimited.
fn size(value: &str) -> Result<Option<u64>, ValueError> {
    let value = value.trim();
    let (digits, unit) = match value.char_indices().last() {
        Some((at, c)) if c.is_ascii_alphabetic() => (&value[..at], c.to_ascii_lowercase()),
        _ => (value, 'b'),
    };
    let scale: u64 = match unit {
        'b' => 1,
        'k' => 1 << 10,
        'm' => 1 << 20,
        'g' => 1 << 30,
        _ => return Err(ValueError::malformed(value, "a size (bytes, or with k, m or g)")),
    };
    let number: u64 =
        digits.parse().map_err(|_| ValueError::malformed(value, "a size (bytes, or with k, m or g)"))?;
    Ok(Some(number.saturating_mul(scale)).filter(|&limit| limit > 0))
}

/// A redirect to `location` with the status `code` names (or `default`).
fn redirect(location: &str, code: Option<&&str>, default: u16) -> Result<Redirect, ValueError> {
    let location = location.trim();
    let status = code.map_or(Ok(default), |code| redirect_code(code))?;
    let absolute =
        location.starts_with("https://") || location.starts_with("http://") || location.starts_with('/');
    if !absolute || location.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(ValueError::malformed(location, "an absolute URL or path"));
    }
    Ok(Redirect { status, location: location.to_owned() })
}

/// A redirect status: 300–308 (ingress-nginx's range).
fn redirect_code(value: &str) -> Result<u16, ValueError> {
    match value.trim().parse::<u16>() {
        Ok(code) if (300..=308).contains(&code) => Ok(code),
        _ => Err(ValueError::malformed(value, "a redirect status (300-308)")),
    }
}

/// A path starting with `/`, without spaces or control characters.
fn absolute_path(value: &str) -> Result<String, ValueError> {
    let path = value.trim();
    if path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(path.to_owned())
    } else {
        Err(ValueError::malformed(value, "an absolute path"))
    }
}

/// A host name with an optional port.
fn host(value: &str) -> Result<String, ValueError> {
    let host = value.trim();
    let (name, port) = host.rsplit_once(':').map_or((host, None), |(n, p)| (n, Some(p)));
    let name_ok =
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok());
    if name_ok && port_ok { Ok(host.to_owned()) } else { Err(ValueError::malformed(value, "a host name")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_nginx_sizes() {
        assert_eq!(size("1m"), Ok(Some(1 << 20)));
        assert_eq!(size("8K"), Ok(Some(8192)));
        assert_eq!(size("100"), Ok(Some(100)));
        assert_eq!(size("0"), Ok(None));
        assert!(size("1x").is_err() && size("m").is_err() && size("-1").is_err());
    }
}
