//! A path given as a regular expression (ingress-nginx's `use-regex`, and the paths of an
//! Ingress with `rewrite-target`): matched case-insensitively from the start of the path, as
//! nginx's `location ~* "^PATH"` does, with its capture groups for `rewrite-target`.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use regex::Regex;
use serde::{Serialize, Serializer};

use super::ValueError;

/// A compiled path pattern; compared, hashed and shown by its source.
#[derive(Clone, Debug)]
pub struct RegexPath {
    source: String,
    compiled: Regex,
}

impl RegexPath {
    /// Compiles `source` (the `regex` crate's syntax: RE2-like, linear-time, no look-around or
    /// back-references). Too large or invalid patterns are an error.
    pub fn new(source: &str) -> Result<Self, ValueError> {
        regex::RegexBuilder::new(&format!("^(?:{source})"))
            .case_insensitive(true)
            .size_limit(1 << 20)
            .build()
            .map(|compiled| Self { source: source.to_owned(), compiled })
            .map_err(|error| {
                ValueError::refused(source, format!("is not a regular expression hawser can use: {error}"))
            })
    }

    /// The pattern as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether `path` starts with a match.
    pub fn matches(&self, path: &str) -> bool {
        self.compiled.is_match(path)
    }

    /// The path `target` makes of `path`, where `$1`…`$9` are the capture groups: the whole
    /// path is replaced, as nginx's `rewrite` replaces the whole URI (which is why the patterns
    /// end in `(.*)`). `None` when it does not match.
    pub fn rewrite(&self, path: &str, target: &str) -> Option<String> {
        let captures = self.compiled.captures(path)?;
        let mut out = String::with_capacity(target.len() + path.len());
        let mut rest = target;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            match after.as_bytes().first().filter(|b| b.is_ascii_digit()) {
                Some(digit) => {
                    let group = usize::from(digit - b'0');
                    out.push_str(captures.get(group).map_or("", |m| m.as_str()));
                    rest = &after[1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        Some(out)
    }
}

impl PartialEq for RegexPath {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for RegexPath {}

impl PartialOrd for RegexPath {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RegexPath {
    fn cmp(&self, other: &Self) -> Ordering {
        self.source.cmp(&other.source)
    }
}

impl Hash for RegexPath {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.source.hash(state);
    }
}

impl Serialize for RegexPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patterns_the_ingress_nginx_docs_teach() {
        let api = RegexPath::new("/api(/|$)(.*)").expect("regex");
        assert!(api.matches("/api") && api.matches("/api/orders") && api.matches("/API/orders"));
        assert!(!api.matches("/apix") && !api.matches("/v1/api/orders"));
        assert_eq!(api.rewrite("/api/orders/7", "/$2").as_deref(), Some("/orders/7"));
        assert_eq!(api.rewrite("/api", "/$2").as_deref(), Some("/"));
        let something = RegexPath::new("/something(/|$)(.*)").expect("regex");
        assert_eq!(something.rewrite("/something/new", "/$2").as_deref(), Some("/new"));
        // The whole path is replaced; a `$` without a digit is literal; unknown groups are empty.
        let prefix = RegexPath::new("/old").expect("regex");
        assert_eq!(prefix.rewrite("/old/x", "/new").as_deref(), Some("/new"));
        assert_eq!(prefix.rewrite("/old", "/$x$9").as_deref(), Some("/$x"));
        assert_eq!(prefix.rewrite("/other", "/new"), None);
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(RegexPath::new("/(unclosed").is_err());
        assert!(RegexPath::new("/(?=look-ahead)").is_err());
        assert!(RegexPath::new("/a{1000}{1000}").is_err(), "too large");
    }
}
