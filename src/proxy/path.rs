//! Request path normalisation before routing, so that what is matched is what the backend is
//! sent: `/public/../admin` must not pass a `/public` route and then be served as `/admin` by a
//! backend that normalises (nginx normalises before matching too).
//!
//! In order: percent-encoded unreserved characters are decoded and other escapes upper-cased
//! (RFC 3986 §6.2.2.1–2, so `%2e` is a dot), repeated slashes are merged, and dot segments are
//! removed (§5.2.4; `..` never climbs above the root). Encoded slashes and backslashes (`%2F`,
//! `%5C`, `\`) would let a path mean one thing to hawser and another to a backend: they are
//! refused, or, when the operator says so, kept exactly as they are and never treated as
//! separators.

use std::borrow::Cow;

/// What to do with `%2F`, `%5C` and `\` in a request path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EncodedSlashes {
    /// `400 Bad Request` (the default).
    #[default]
    Reject,
    /// Passed through unchanged, never decoded or split on.
    Keep,
}

/// Why a path cannot be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("encoded slash or backslash in the path")]
    EncodedSlash,
    #[error("malformed percent-encoding in the path")]
    BadEscape,
    #[error("encoded NUL in the path")]
    Nul,
}

/// The normalised form of `path` (the part before `?`); borrowed when nothing changes. Paths
/// that do not start with `/` (`*` of `OPTIONS *`) are returned as they are.
pub fn normalize(path: &str, slashes: EncodedSlashes) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') || already_normal(path, slashes)? {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path, slashes)?;
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in decoded[1..].split('/') {
        trailing_slash = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(if out == path { Cow::Borrowed(path) } else { Cow::Owned(out) })
}

/// The common case, checked without allocating: no escape, no `//`, no dot segment.
fn already_normal(path: &str, slashes: EncodedSlashes) -> Result<bool, PathError> {
    if path.contains('\\') && slashes == EncodedSlashes::Reject {
        return Err(PathError::EncodedSlash);
    }
    Ok(!path.contains('%') && !path.contains("//") && !path.contains("/."))
}

/// Decodes escapes of unreserved characters (ALPHA / DIGIT / `-` `.` `_` `~`) and upper-cases
/// the others.
fn decode_unreserved(path: &str, slashes: EncodedSlashes) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            let next = bytes[i + 1..].iter().position(|&b| b == b'%').map_or(path.len(), |n| i + 1 + n);
            out.push_str(&path[i..next]);
            i = next;
            continue;
        }
        let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadEscape)?;
        let value = std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or(PathError::BadEscape)?;
        match value {
            0 => return Err(PathError::Nul),
            b'/' | b'\\' if slashes == EncodedSlashes::Reject => return Err(PathError::EncodedSlash),
            b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => out.push(char::from(b)),
            b => out.push_str(&format!("%{b:02X}")),
        }
        i += 3;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_paths() {
        let cases: &[(&str, Result<&str, PathError>)] = &[
            ("/", Ok("/")),
            ("/a/b", Ok("/a/b")),
            ("/a/b/", Ok("/a/b/")),
            ("/public/../admin", Ok("/admin")),
            ("/public/%2e%2e/admin", Ok("/admin")),
            ("/public/%2E%2E/admin", Ok("/admin")),
            ("/public/.%2e/admin", Ok("/admin")),
            ("/public/./../admin", Ok("/admin")),
            ("/../../etc/passwd", Ok("/etc/passwd")),
            ("/a/./b/.", Ok("/a/b/")),
            ("/a/..", Ok("/")),
            ("/a//b///c", Ok("/a/b/c")),
            ("//", Ok("/")),
            ("/%7Euser/%41", Ok("/~user/A")),
            ("/a%20b", Ok("/a%20b")),
            ("/a%3fb", Ok("/a%3Fb")),
            ("/.well-known/x", Ok("/.well-known/x")),
            ("/a/.hidden", Ok("/a/.hidden")),
            ("/public/..%2fadmin", Err(PathError::EncodedSlash)),
            ("/a%2Fb", Err(PathError::EncodedSlash)),
            ("/a%5cb", Err(PathError::EncodedSlash)),
            ("/a\\b", Err(PathError::EncodedSlash)),
            ("/a%2", Err(PathError::BadEscape)),
            ("/a%zz", Err(PathError::BadEscape)),
            ("/a%00", Err(PathError::Nul)),
            ("*", Ok("*")),
        ];
        for (input, want) in cases {
            let got = normalize(input, EncodedSlashes::Reject);
            assert_eq!(got.as_deref().map_err(|e| *e), *want, "{input}");
        }
    }

    #[test]
    fn keeps_encoded_slashes_when_asked() {
        let keep = |p| normalize(p, EncodedSlashes::Keep).map(Cow::into_owned);
        assert_eq!(keep("/public/..%2fadmin"), Ok("/public/..%2Fadmin".into()));
        assert_eq!(keep("/a%5cb/../c"), Ok("/c".into()));
        assert_eq!(keep("/a\\b"), Ok("/a\\b".into()));
    }

    #[test]
    fn borrows_when_nothing_changes() {
        assert!(matches!(normalize("/a/b?", EncodedSlashes::Reject), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/a/%41", EncodedSlashes::Reject), Ok(Cow::Owned(_))));
    }

    /// Paths made of the pieces that matter: segments, dots, escapes, slashes.
    fn tricky_path() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            Just("/"),
            Just("."),
            Just(".."),
            Just("%2e"),
            Just("%2E"),
            Just("%2f"),
            Just("%5C"),
            Just("\\"),
            Just("%41"),
            Just("%7e"),
            Just("%20"),
            Just("%"),
            Just("%0"),
            Just("%00"),
            Just("a"),
            Just("b"),
            Just("~"),
            Just("-"),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|pieces| format!("/{}", pieces.concat()))
    }

    proptest::proptest! {
        #[test]
        fn normal_forms_are_fixed_points_without_dot_segments(path in tricky_path()) {
            for slashes in [EncodedSlashes::Reject, EncodedSlashes::Keep] {
                let Ok(once) = normalize(&path, slashes) else { continue };
                let twice = normalize(&once, slashes).map(Cow::into_owned);
                proptest::prop_assert_eq!(twice.as_deref(), Ok(&*once), "{}", path);
                proptest::prop_assert!(once.starts_with('/'));
                proptest::prop_assert!(!once.contains("//"), "{} -> {}", path, once);
                for segment in once.split('/') {
                    proptest::prop_assert!(segment != "." && segment != "..", "{} -> {}", path, once);
                    proptest::prop_assert!(!segment.eq_ignore_ascii_case("%2e%2e"), "{} -> {}", path, once);
                }
            }
        }

        #[test]
        fn any_string_is_answered_without_panic(path in "\\PC*") {
            let _ = normalize(&path, EncodedSlashes::Reject);
            let _ = normalize(&path, EncodedSlashes::Keep);
        }
    }
}
