//! Parsing the values users write in annotations and CRD fields: durations, nginx seconds,
//! CIDR lists, Origin patterns, comma lists.

use std::time::Duration;

use ipnet::IpNet;

use crate::model::{Rebalance, Timeout, ValueError};

const DURATION: &str = "a duration like 90s or 1h";

/// A duration such as `90s`, `1h30m`, `500ms` or `1h 30m`. Plain `0` is zero.
fn duration(value: &str) -> Result<Duration, ValueError> {
    let trimmed = value.trim();
    if trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(trimmed).map_err(|_| ValueError::malformed(value, DURATION))
}

/// A timeout: `0s` (or `0`) turns it off. The one reading of every timeout hawser takes.
pub fn timeout(value: &str) -> Result<Timeout, ValueError> {
    duration(value).map(Timeout::from_duration)
}

/// A wait that cannot be turned off (a handshake, a response, a connect that might take
/// forever; "at once" would fail every request): `0s` is refused.
pub fn bounded(value: &str, timeout: Timeout) -> Result<Duration, ValueError> {
    timeout.duration().ok_or_else(|| ValueError::Zero { value: value.to_owned() })
}

/// [`timeout`], then [`bounded`].
pub fn bounded_timeout(value: &str) -> Result<Duration, ValueError> {
    bounded(value, timeout(value)?)
}

/// Rebalancing settings, defaults filled in: a skew of at least 1, at least one close a second.
pub fn rebalance(max_skew: Option<f64>, closes_per_second: Option<u32>) -> Result<Rebalance, ValueError> {
    let defaults = Rebalance::default();
    let max_skew = max_skew.unwrap_or(defaults.max_skew);
    if !(max_skew.is_finite() && max_skew >= 1.0) {
        return Err(ValueError::malformed(&max_skew.to_string(), "a maxSkew of at least 1"));
    }
    match closes_per_second.unwrap_or(defaults.closes_per_second) {
        0 => Err(ValueError::malformed("0", "a closesPerSecond of at least 1")),
        closes_per_second => Ok(Rebalance { max_skew, closes_per_second }),
    }
}

/// ingress-nginx timeouts: whole seconds, optionally with an `s` (`60`, `3600s`); `0` turns the
/// timeout off, as `0s` does in hawser's own.
pub fn nginx_timeout(value: &str) -> Result<Timeout, ValueError> {
    let trimmed = value.trim();
    let digits = trimmed.strip_suffix('s').unwrap_or(trimmed);
    digits
        .parse::<u64>()
        .map(|seconds| Timeout::from_duration(Duration::from_secs(seconds)))
        .map_err(|_| ValueError::malformed(value, "a number of seconds"))
}

/// Comma-separated, trimmed, non-empty items.
pub fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|item| !item.is_empty())
}

/// CIDRs (or single addresses) separated by commas.
pub fn cidrs<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Vec<IpNet>, ValueError> {
    values
        .into_iter()
        .map(|item| {
            let item = item.trim();
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| ValueError::malformed(item, "a CIDR such as 10.0.0.0/8"))
        })
        .collect()
}

/// Origins: `*`, or `scheme://host[:port]` where host may start with `*.`.
pub fn origins<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, ValueError> {
    values
        .into_iter()
        .map(|origin| {
            let origin = origin.trim().trim_end_matches('/');
            let valid = origin == "*"
                || origin.split_once("://").is_some_and(|(scheme, host)| {
                    !scheme.is_empty() && !host.is_empty() && !host.contains('/')
                });
            if valid {
                Ok(origin.to_owned())
            } else {
                Err(ValueError::malformed(origin, "an origin such as https://app.example.com"))
            }
        })
        .collect()
}

/// Upgrade protocols a route may tunnel besides `websocket` (RFC 9110 §7.8 tokens, compared
/// without case). `h2c` is never allowed: a tunnelled HTTP/2 connection would reach every path
/// of the backend past hawser's routing.
pub fn upgrade_protocols<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, ValueError> {
    values
        .into_iter()
        .map(|token| {
            let token = token.trim().to_ascii_lowercase();
            let name = token.split('/').next().unwrap_or_default();
            let valid = !name.is_empty()
                && token.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b));
            match () {
                _ if name == "h2c" => {
                    Err(ValueError::refused(&token, "is never tunnelled: it would bypass routing"))
                }
                _ if !valid => Err(ValueError::malformed(&token, "an upgrade protocol token")),
                _ => Ok(token),
            }
        })
        .collect()
}

/// `N/s`, `N/m` or `N/h` (N a positive whole number): N requests per that period.
pub fn rate(value: &str) -> Result<(u32, Duration), ValueError> {
    let bad = || ValueError::malformed(value, "a rate such as 10/s, 600/m or 1000/h");
    let (count, unit) = value.trim().split_once('/').ok_or_else(bad)?;
    let period = match unit.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    Ok((positive(count).map_err(|_| bad())?, period))
}

/// A rate limit as hawser writes it: `rate` (see [`rate`]), `burst` requests at once (default:
/// the count per period); counting upgrade handshakes only when `upgrades_only`.
pub fn hawser_rate(
    rate: &str,
    burst: Option<u32>,
    upgrades_only: bool,
) -> Result<crate::model::Rate, ValueError> {
    let (count, period) = self::rate(rate)?;
    let burst = f64::from(burst.unwrap_or(count));
    Ok(crate::model::Rate::new(f64::from(count), period, burst, upgrades_only))
}

/// A positive whole number.
pub fn positive(value: &str) -> Result<u32, ValueError> {
    match value.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ValueError::malformed(value, "a positive whole number")),
    }
}

/// `true` or `false`.
pub fn boolean(value: &str) -> Result<bool, ValueError> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(ValueError::malformed(other, "true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        use Timeout::{After, Disabled};
        let secs = Duration::from_secs;
        let cases = [
            ("90s", Some(After(secs(90)))),
            ("1h", Some(After(secs(3600)))),
            ("1h30m", Some(After(secs(5400)))),
            ("1h 30m", Some(After(secs(5400)))),
            (" 500ms ", Some(After(Duration::from_millis(500)))),
            ("1.5s", Some(After(Duration::from_millis(1500)))),
            ("0s", Some(Disabled)),
            ("0", Some(Disabled)),
            ("0ms", Some(Disabled)),
            ("0h0m", Some(Disabled)),
            ("ten", None),
            ("10", None),
            ("-5s", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(timeout(input).ok(), want, "{input:?}");
        }
    }

    /// `0s` turns a timeout off wherever it is read; where a wait cannot be off, it is refused,
    /// never taken as "at once".
    #[test]
    fn zero_is_off_or_refused_never_at_once() {
        assert_eq!(bounded_timeout("0s"), Err(ValueError::Zero { value: "0s".into() }));
        assert_eq!(bounded_timeout("0"), Err(ValueError::Zero { value: "0".into() }));
        assert_eq!(bounded_timeout("2s"), Ok(Duration::from_secs(2)));
        assert!(matches!(bounded_timeout("x"), Err(ValueError::Malformed { .. })));
        assert_eq!(nginx_timeout("0"), Ok(Timeout::Disabled));
        assert_eq!(bounded("0", Timeout::Disabled), Err(ValueError::Zero { value: "0".into() }));
    }

    #[test]
    fn nginx_timeouts() {
        assert_eq!(nginx_timeout("3600"), Ok(Timeout::After(Duration::from_secs(3600))));
        assert_eq!(nginx_timeout("60s"), Ok(Timeout::After(Duration::from_secs(60))));
        assert_eq!(nginx_timeout("0s"), Ok(Timeout::Disabled));
        assert!(nginx_timeout("1m").is_err());
        assert!(nginx_timeout("-1").is_err());
    }

    #[test]
    fn cidr_lists() {
        assert_eq!(cidrs(list("10.0.0.0/8, 192.168.1.1,::1/128")).map(|v| v.len()), Ok(3));
        assert!(cidrs(list("10.0.0.0/33")).is_err());
        assert!(cidrs(list("example.com")).is_err());
    }

    #[test]
    fn origin_lists() {
        assert_eq!(
            origins(list("https://a.com/, *, https://*.b.com")),
            Ok(vec!["https://a.com".into(), "*".into(), "https://*.b.com".into()])
        );
        assert!(origins(list("a.com")).is_err());
        assert!(origins(list("https://a.com/path")).is_err());
    }

    #[test]
    fn upgrade_protocol_lists() {
        assert_eq!(upgrade_protocols(list("Foo, bar/2")), Ok(vec!["foo".into(), "bar/2".into()]));
        assert!(upgrade_protocols(list("h2c")).is_err());
        assert!(upgrade_protocols(list("H2C")).is_err());
        assert!(upgrade_protocols(list("a b")).is_err());
    }

    #[test]
    fn numbers_and_booleans() {
        assert_eq!(positive("20"), Ok(20));
        assert!(positive("0").is_err() && positive("-1").is_err() && positive("x").is_err());
        assert_eq!(boolean("false"), Ok(false));
        assert!(boolean("no").is_err());
    }

    proptest::proptest! {
        #[test]
        fn durations_read_what_was_written(h in 0u64..1000, m in 0u64..60, secs in 0u64..60, ms in 0u64..1000) {
            let written = format!("{h}h{m}m{secs}s{ms}ms");
            let want = Duration::from_millis(((h * 60 + m) * 60 + secs) * 1000 + ms);
            proptest::prop_assert_eq!(timeout(&written), Ok(Timeout::from_duration(want)));
        }

        #[test]
        fn any_annotation_value_is_answered_without_panic(value in "\\PC{0,80}") {
            let _ = timeout(&value);
            let _ = nginx_timeout(&value);
            let _ = cidrs(list(&value));
            let _ = origins(list(&value));
            let _ = upgrade_protocols(list(&value));
            let _ = positive(&value);
            let _ = super::super::ownership::parse_allowed(&value);
            let mut cookie = crate::model::CookieAffinity::named("c");
            for key in ["session-cookie-name", "session-cookie-path", "session-cookie-domain", "session-cookie-max-age", "session-cookie-samesite"] {
                let _ = super::super::affinity::nginx_attribute(&mut cookie, key, &value);
            }
        }

        #[test]
        fn accepted_origins_and_ranges_are_well_formed(host in "[a-z]{1,10}(\\.[a-z]{1,10}){0,3}", port in proptest::option::of(1u16..)) {
            let origin = match port { Some(p) => format!("https://{host}:{p}"), None => format!("https://{host}") };
            proptest::prop_assert_eq!(origins(list(&origin)), Ok(vec![origin.clone()]));
            let with_path = format!("{origin}/path");
            proptest::prop_assert!(origins(list(&with_path)).is_err());
        }
    }
}
