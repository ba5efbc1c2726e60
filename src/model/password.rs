//! Password hashes as htpasswd files hold them, and checking a password against one: bcrypt
//! (`$2y$`, `$2a$`, `$2b$`: `htpasswd -B`, Helm's `htpasswd`), Apache's MD5 (`$apr1$`, what
//! `htpasswd` writes by default) and MD5-crypt (`$1$`), SHA-crypt (`$5$`, `$6$`) and `{SHA}`.
//! These are the schemes nginx reads through crypt(3) on Linux; DES crypt and plain text are
//! not accepted.

use base64::Engine;
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

/// One stored password hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$2y$…`, `$2a$…`, `$2b$…`.
    Bcrypt(String),
    /// `$apr1$salt$hash` or `$1$salt$hash`.
    Md5Crypt(String),
    /// `$5$…` or `$6$…`.
    ShaCrypt(String),
    /// `{SHA}` + base64 of the password's SHA-1 (unsalted; accepted because htpasswd writes it).
    Sha1([u8; 20]),
}

impl PasswordHash {
    /// Reads a hash from an htpasswd line; the error says why hawser cannot check it.
    pub fn parse(hash: &str) -> Result<Self, HashError> {
        let hash = hash.trim();
        if ["$2y$", "$2a$", "$2b$"].iter().any(|p| hash.starts_with(p)) {
            return Ok(Self::Bcrypt(hash.to_owned()));
        }
        if hash.starts_with("$apr1$") || hash.starts_with("$1$") {
            return md5_parts(hash).map(|_| Self::Md5Crypt(hash.to_owned())).ok_or(HashError::Malformed);
        }
        if hash.starts_with("$5$") || hash.starts_with("$6$") {
            return Ok(Self::ShaCrypt(hash.to_owned()));
        }
        if let Some(encoded) = hash.strip_prefix("{SHA}") {
            let digest = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| HashError::Malformed)?;
            return digest.try_into().map(Self::Sha1).map_err(|_| HashError::Malformed);
        }
        Err(HashError::UnknownScheme)
    }

    /// Whether `password` is the one hashed. Constant-time where the scheme's library is.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            Self::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            Self::Md5Crypt(hash) => md5_parts(hash).is_some_and(|(magic, salt, _)| {
                bool::from(md5_crypt(password, magic, salt).as_bytes().ct_eq(hash.as_bytes()))
            }),
            Self::ShaCrypt(hash) => sha_crypt_verify(password, hash),
            Self::Sha1(digest) => {
                use sha1::Digest as _;
                bool::from(sha1::Sha1::digest(password).as_slice().ct_eq(digest))
            }
        }
    }

    /// Whether checking costs milliseconds of CPU (bcrypt, SHA-crypt), so it should not run on
    /// a task that serves connections.
    pub fn is_slow(&self) -> bool {
        matches!(self, Self::Bcrypt(_) | Self::ShaCrypt(_))
    }
}

/// Why a password hash cannot be checked (completes "the password of user X ...").
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("is a malformed hash")]
    Malformed,
    #[error(
        "is not a bcrypt, $apr1$, $1$, $5$, $6$ or {{SHA}} hash (DES crypt and plain text are not accepted)"
    )]
    UnknownScheme,
}

fn sha_crypt_verify(password: &[u8], hash: &str) -> bool {
    use sha_crypt::password_hash::PasswordVerifier;
    let Ok(parsed) = sha_crypt::PasswordHashRef::new(hash) else { return false };
    sha_crypt::ShaCrypt::default().verify_password(password, parsed).is_ok()
}

/// `$magic$salt$hash` → (`$magic$`, salt, hash).
fn md5_parts(hash: &str) -> Option<(&str, &str, &str)> {
    let magic = if hash.starts_with("$apr1$") { "$apr1$" } else { "$1$" };
    let (salt, digest) = hash.strip_prefix(magic)?.split_once('$')?;
    (salt.len() <= 8 && digest.len() == 22).then_some((magic, salt, digest))
}

/// MD5-crypt (Poul-Henning Kamp's algorithm for FreeBSD; Apache's `$apr1$` is the same with
/// another magic string): 1,000 rounds of MD5 over the password and salt, written in crypt's
/// base-64 alphabet. The whole `magic salt $ hash` string is returned.
fn md5_crypt(password: &[u8], magic: &str, salt: &str) -> String {
    let salt = salt.as_bytes();
    let alternate = Md5::new().chain_update(password).chain_update(salt).chain_update(password).finalize();
    let mut context = Md5::new().chain_update(password).chain_update(magic).chain_update(salt);
    for chunk in password.chunks(16) {
        context.update(&alternate[..chunk.len()]);
    }
    let mut length = password.len();
    while length > 0 {
        // A zero byte for each set bit of the length, the password's first byte for each clear.
        context.update(if length & 1 == 1 { &[0u8][..] } else { &password[..1] });
        length >>= 1;
    }
    let mut digest = context.finalize();
    for round in 0..1000 {
        let mut step = Md5::new();
        step.update(if round % 2 == 1 { password } else { &digest[..] });
        if round % 3 != 0 {
            step.update(salt);
        }
        if round % 7 != 0 {
            step.update(password);
        }
        step.update(if round % 2 == 1 { &digest[..] } else { password });
        digest = step.finalize();
    }
    let mut out = format!("{magic}{}$", String::from_utf8_lossy(salt));
    for [a, b, c] in [[0, 6, 12], [1, 7, 13], [2, 8, 14], [3, 9, 15], [4, 10, 5]] {
        let bits = (u32::from(digest[a]) << 16) | (u32::from(digest[b]) << 8) | u32::from(digest[c]);
        crypt_base64(&mut out, bits, 4);
    }
    crypt_base64(&mut out, u32::from(digest[11]), 2);
    out
}

/// crypt(3)'s base 64: `count` characters of `bits`, the low six bits first.
fn crypt_base64(out: &mut String, mut bits: u32, count: usize) {
    const ALPHABET: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    for _ in 0..count {
        out.push(char::from(ALPHABET[(bits & 0x3f) as usize]));
        bits >>= 6;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hashes made by `openssl passwd` (`-apr1`, `-1`, `-5`, `-6`), Python's `bcrypt` and
    /// `openssl dgst -sha1 | base64`, each with its password.
    #[test]
    fn hashes_from_the_usual_tools_verify() {
        let cases = [
            ("$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK00", "password"),
            ("$apr1$ab$S8K6Sgp3W8c9Jb6LxgywZ.", ""),
            ("$1$saltsalt$Y.W/rxyzbusnDOkxKcE2b/", "hello world"),
            ("$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5", "Hello world!"),
            (
                "$6$8r4nd0m$RUanrkQu5cJBwT7cmig6/MJnqdeoRcfgCCEAaK6eWcRvsBZAAINdaCirX4WTfkk5YDj9aSZ6KhNYq/U46CjSd0",
                "s3cret",
            ),
            ("$2b$04$Jmk2Tsa.0enryOdBFTGGuOfqDauRE7YdWWM9X72wnclZxez44hZOW", "open sesame"),
            ("$2y$04$Jmk2Tsa.0enryOdBFTGGuOfqDauRE7YdWWM9X72wnclZxez44hZOW", "open sesame"),
            ("$2a$04$DeK47dOWicwHA.Gv5y7S.ed4TyyxojmC2R4KuCB5aSm6P.sxEWtNa", "open sesame"),
            ("{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", "secret"),
        ];
        for (hash, password) in cases {
            let parsed = PasswordHash::parse(hash).unwrap_or_else(|e| panic!("{hash}: {e}"));
            assert!(parsed.verify(password.as_bytes()), "{hash}");
            assert!(!parsed.verify(b"wrong"), "{hash} took a wrong password");
            assert!(!parsed.verify(format!("{password}x").as_bytes()), "{hash}");
        }
    }

    #[test]
    fn what_cannot_be_checked_is_refused() {
        for hash in
            ["plaintext", "abJnggxhB/yWI", "$apr1$toolongsalt$eIMz/iKDkbtys/uU7LEK00", "{SHA}!!", "$apr1$x"]
        {
            assert!(PasswordHash::parse(hash).is_err(), "{hash}");
        }
        // A malformed bcrypt or SHA-crypt hash is read but matches nothing.
        for hash in ["$2y$04$short", "$6$salt$short"] {
            let parsed = PasswordHash::parse(hash).expect("the prefix is known");
            assert!(!parsed.verify(b""), "{hash}");
        }
    }
}
