//! Parsing the values users write in annotations and CRD fields: durations, nginx seconds,
//! CIDR lists, Origin patterns, comma lists.

use std::time::Duration;

use ipnet::IpNet;

use crate::model::Rebalance;

/// A duration such as `90s`, `1h30m`, `500ms` or `1h 30m`. Plain `0` is zero.
pub fn duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    if value == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(value).map_err(|e| format!("{value:?} is not a duration like 90s or 1h ({e})"))
}

/// A duration where zero means "off".
pub fn optional_duration(value: &str) -> Result<Option<Duration>, String> {
    duration(value).map(|d| (!d.is_zero()).then_some(d))
}

/// A duration that must be more than zero.
pub fn positive_duration(value: &str) -> Result<Duration, String> {
    match duration(value)? {
        d if d.is_zero() => Err(format!("{value:?} must be more than zero")),
        d => Ok(d),
    }
}

/// Rebalancing settings, defaults filled in: a skew of at least 1, at least one close a second.
pub fn rebalance(max_skew: Option<f64>, closes_per_second: Option<u32>) -> Result<Rebalance, String> {
    let defaults = Rebalance::default();
    let max_skew = max_skew.unwrap_or(defaults.max_skew);
    if !(max_skew.is_finite() && max_skew >= 1.0) {
        return Err(format!("maxSkew {max_skew} must be a number of at least 1"));
    }
    match closes_per_second.unwrap_or(defaults.closes_per_second) {
        0 => Err("closesPerSecond must be at least 1".to_owned()),
        closes_per_second => Ok(Rebalance { max_skew, closes_per_second }),
    }
}

/// ingress-nginx timeouts: whole seconds, optionally with an `s` (`60`, `3600s`).
pub fn nginx_seconds(value: &str) -> Result<Duration, String> {
    let trimmed = value.trim();
    let digits = trimmed.strip_suffix('s').unwrap_or(trimmed);
    digits
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("{value:?} is not a number of seconds"))
}

/// Comma-separated, trimmed, non-empty items.
pub fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|item| !item.is_empty())
}

/// CIDRs (or single addresses) separated by commas.
pub fn cidrs<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Vec<IpNet>, String> {
    values
        .into_iter()
        .map(|item| {
            let item = item.trim();
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{item:?} is not a CIDR such as 10.0.0.0/8"))
        })
        .collect()
}

/// Origins: `*`, or `scheme://host[:port]` where host may start with `*.`.
pub fn origins<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, String> {
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
                Err(format!("{origin:?} is not an origin such as https://app.example.com"))
            }
        })
        .collect()
}

/// Upgrade protocols a route may tunnel besides `websocket` (RFC 9110 §7.8 tokens, compared
/// without case). `h2c` is never allowed: a tunnelled HTTP/2 connection would reach every path
/// of the backend past hawser's routing.
pub fn upgrade_protocols<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, String> {
    values
        .into_iter()
        .map(|token| {
            let token = token.trim().to_ascii_lowercase();
            let name = token.split('/').next().unwrap_or_default();
            let valid = !name.is_empty()
                && token.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b));
            match () {
                _ if name == "h2c" => Err("h2c is never tunnelled: it would bypass routing".to_owned()),
                _ if !valid => Err(format!("{token:?} is not an upgrade protocol token")),
                _ => Ok(token),
            }
        })
        .collect()
}

/// `N/s`, `N/m` or `N/h` (N a positive whole number): N requests per that period.
pub fn rate(value: &str) -> Result<(u32, Duration), String> {
    let bad = || format!("{value:?} is not a rate such as 10/s, 600/m or 1000/h");
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
) -> Result<crate::model::Rate, String> {
    let (count, period) = self::rate(rate)?;
    let burst = f64::from(burst.unwrap_or(count));
    Ok(crate::model::Rate::new(f64::from(count), period, burst, upgrades_only))
}

/// A positive whole number.
pub fn positive(value: &str) -> Result<u32, String> {
    match value.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{value:?} is not a positive whole number")),
    }
}

/// `true` or `false`.
pub fn boolean(value: &str) -> Result<bool, String> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("{other:?} is not true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            ("90s", Some(90_000)),
            ("1h", Some(3_600_000)),
            ("1h30m", Some(5_400_000)),
            ("1h 30m", Some(5_400_000)),
            ("500ms", Some(500)),
            ("0s", Some(0)),
            ("0", Some(0)),
            ("ten", None),
            ("10", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(duration(input).ok().map(|d| d.as_millis() as u64), want, "{input:?}");
        }
        assert_eq!(optional_duration("0s"), Ok(None));
    }

    #[test]
    fn nginx_timeouts() {
        assert_eq!(nginx_seconds("3600"), Ok(Duration::from_secs(3600)));
        assert_eq!(nginx_seconds("60s"), Ok(Duration::from_secs(60)));
        assert!(nginx_seconds("1m").is_err());
        assert!(nginx_seconds("-1").is_err());
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
            proptest::prop_assert_eq!(duration(&written), Ok(want));
        }

        #[test]
        fn any_annotation_value_is_answered_without_panic(value in "\\PC{0,80}") {
            let _ = duration(&value);
            let _ = nginx_seconds(&value);
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
