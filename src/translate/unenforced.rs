//! ingress-nginx annotations hawser does not apply, sorted by what ignoring them would mean.
//!
//! - **Refused**: the annotation restricts who may reach the route (authentication, deny lists,
//!   a WAF) or injects nginx configuration hawser cannot read (snippets, which ingress-nginx
//!   itself refuses by default since v1.9). Serving the Ingress without it would turn a
//!   protected route into a public one, so the whole Ingress answers `503` instead (fail
//!   closed), unless the operator opts out by name: per Ingress with
//!   `hawser.dev/ignore-annotations: auth-url,...`, or per install with `--ignore-annotations`.
//! - **Not needed**: nginx buffering and keep-alive tuning with nothing to tune in hawser per
//!   Ingress (the backend keep-alive pool's size is process-wide,
//!   `--upstream-keepalive-connections`); reported for the record only.
//!
//! The README's annotation reference lists the same patterns; a test keeps the two equal.

/// Access-restricting or configuration-injecting annotations (without the nginx prefix). A
/// trailing `*` matches any rest, a leading `*` any start.
pub const REFUSED: &[&str] = &[
    "auth-*",
    "global-auth-*",
    "enable-global-auth",
    "satisfy",
    "*-snippet",
    "enable-modsecurity",
    "enable-owasp-core-rules",
    "modsecurity-*",
    "ssl-passthrough",
];

/// Annotations that tune nginx internals hawser does not have.
pub const NOT_NEEDED: &[&str] = &[
    "client-body-buffer-size",
    "proxy-buffering",
    "proxy-buffer-size",
    "proxy-buffers-number",
    "proxy-busy-buffers-size",
    "proxy-max-temp-file-size",
    "proxy-request-buffering",
    "proxy-next-upstream",
    "proxy-next-upstream-timeout",
    "upstream-keepalive-connections",
    "upstream-keepalive-requests",
    "upstream-keepalive-timeout",
    "http2-push-preload",
];

/// What hawser does with an nginx annotation it does not apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unenforced {
    /// Restricts access: the Ingress is refused unless opted out.
    Refused,
    /// Restricts access, but the operator said to serve without it.
    OptedOut,
    /// Harmless to ignore.
    NotNeeded,
}

/// How `key` (without the nginx prefix, with `value`) is treated when hawser does not apply it;
/// `None` for keys in neither list. `opt_outs` are the keys the operator opted out of.
pub fn classify<'a>(
    key: &str,
    value: &str,
    opt_outs: impl IntoIterator<Item = &'a str>,
) -> Option<Unenforced> {
    if key == "enable-global-auth" && value.trim() == "false" {
        // Turning global auth off where hawser has none changes nothing.
        return Some(Unenforced::NotNeeded);
    }
    if REFUSED.iter().any(|pattern| matches(pattern, key)) {
        let opted_out = opt_outs.into_iter().any(|name| name == key);
        return Some(if opted_out { Unenforced::OptedOut } else { Unenforced::Refused });
    }
    NOT_NEEDED.contains(&key).then_some(Unenforced::NotNeeded)
}

/// The keys named by an opt-out list: `auth-url, nginx.ingress.kubernetes.io/auth-signin`.
pub fn opt_outs(value: &str) -> impl Iterator<Item = &str> {
    super::values::list(value).map(|name| name.strip_prefix(super::annotations::NGINX).unwrap_or(name))
}

fn matches(pattern: &str, key: &str) -> bool {
    match (pattern.strip_suffix('*'), pattern.strip_prefix('*')) {
        (Some(prefix), _) => key.starts_with(prefix),
        (_, Some(suffix)) => key.ends_with(suffix),
        _ => pattern == key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let cases = [
            ("auth-url", "http://auth", Some(Unenforced::Refused)),
            ("auth-type", "basic", Some(Unenforced::Refused)),
            ("auth-tls-verify-client", "on", Some(Unenforced::Refused)),
            ("global-auth-url", "x", Some(Unenforced::Refused)),
            ("enable-global-auth", "true", Some(Unenforced::Refused)),
            ("enable-global-auth", "false", Some(Unenforced::NotNeeded)),
            ("configuration-snippet", "deny all;", Some(Unenforced::Refused)),
            ("server-snippet", "x", Some(Unenforced::Refused)),
            ("satisfy", "any", Some(Unenforced::Refused)),
            ("denylist-source-range", "10.0.0.0/8", None),
            ("proxy-buffering", "off", Some(Unenforced::NotNeeded)),
            ("rewrite-target", "/", None),
        ];
        for (key, value, want) in cases {
            assert_eq!(classify(key, value, []), want, "{key}");
        }
        let opted = opt_outs("auth-url, nginx.ingress.kubernetes.io/configuration-snippet");
        let opted: Vec<&str> = opted.collect();
        assert_eq!(classify("auth-url", "x", opted.iter().copied()), Some(Unenforced::OptedOut));
        assert_eq!(classify("configuration-snippet", "x", opted.iter().copied()), Some(Unenforced::OptedOut));
        assert_eq!(classify("auth-signin", "x", opted.iter().copied()), Some(Unenforced::Refused));
    }

    /// The README's annotation reference names exactly these patterns in its refused and
    /// not-needed rows, so what `hawser check` reports is what the documentation says.
    #[test]
    fn readme_lists_the_same_annotations() {
        let readme = include_str!("../../README.md");
        let row = |marker: &str| -> Vec<String> {
            let line = readme.lines().find(|l| l.contains(marker)).unwrap_or_else(|| panic!("{marker}"));
            let names = line.split('|').nth(1).unwrap_or_default();
            names.split('`').skip(1).step_by(2).map(str::to_owned).collect()
        };
        let sorted = |list: &[&str]| {
            let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
            v.sort();
            v
        };
        let mut refused = row("refused: the Ingress answers 503");
        refused.sort();
        assert_eq!(refused, sorted(REFUSED));
        let mut not_needed = row("not needed:");
        not_needed.sort();
        assert_eq!(not_needed, sorted(NOT_NEEDED));
    }
}
