//! Secrets → certificates, parsed at build time and never in a handshake: `tls.crt` (a PEM
//! chain, leaf first) and `tls.key` (PEM: PKCS#8, PKCS#1 or SEC1; RSA, ECDSA or Ed25519), read
//! from `data` or, in manifest files, `stringData`. A certificate is used only when the key
//! matches, it is valid at build time, and it covers the host that names it. One that expires
//! within [`EXPIRY_WARNING`] of the build is still used, and reported.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Secret;
use rustls::pki_types::pem::PemObject;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::time::ASN1Time;

use super::lookup::Lookup;
use super::secret_error::SecretError;
use crate::model::{BackendCa, Certificate, HostMatch};

/// A certificate, its key and the names it covers, as parsed from a Secret (whether it is valid
/// now is checked by [`load`]).
#[derive(Clone, Debug)]
pub struct Loaded {
    /// For rustls.
    pub certificate: Certificate,
    /// DNS names of the leaf (SANs; the subject CN when there are none), lower-case.
    pub names: Vec<String>,
    /// When the leaf starts being valid (its notBefore).
    pub not_before: ASN1Time,
    /// When the leaf stops being valid (its notAfter).
    pub not_after: ASN1Time,
}

/// How long before it expires a served certificate is reported: 14 days.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 60 * 60);

/// The certificate of the Secret `namespace/name`, checked at `now`; `None` when there is no
/// such Secret. Parsed once per Secret content.
pub fn load(
    snapshot: &Lookup<'_>,
    secret: (&str, &str),
    now: SystemTime,
) -> Option<Result<Loaded, SecretError>> {
    let parsed = snapshot.parsed_secret(secret, "certificate", parse)?;
    Some(parsed.and_then(|loaded| check_validity(&loaded, now).map(|()| loaded)))
}

/// The next instant after `now` at which the certificate of `secret` could be judged
/// differently ([`load`] or [`expiry_warning`]): when it becomes valid, when its expiry warning
/// starts, when it expires. `None`: never (no such Secret, or it does not parse).
pub fn next_change(snapshot: &Lookup<'_>, secret: (&str, &str), now: SystemTime) -> Option<SystemTime> {
    let loaded = snapshot.parsed_secret(secret, "certificate", parse)?.ok()?;
    let now = unix_seconds(now);
    let warn_within = i64::try_from(EXPIRY_WARNING.as_secs()).unwrap_or(i64::MAX);
    let (not_before, not_after) = (loaded.not_before.timestamp(), loaded.not_after.timestamp());
    let instants = [not_before, not_after.saturating_sub(warn_within), not_after.saturating_add(1)];
    let next = instants.into_iter().filter(|&t| t > now).min()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(next).ok()?))
}

/// Parses `secret`'s certificate chain and key, and checks they belong together.
fn parse(secret: &Secret) -> Result<Loaded, SecretError> {
    let chain_pem = field(secret, "tls.crt")?;
    let key_pem = field(secret, "tls.key")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| SecretError::unreadable("tls.crt", "PEM", e))?;
    let Some(leaf) = chain.first() else { return Err(SecretError::Unusable("tls.crt holds no certificate")) };
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| SecretError::unreadable("tls.key", "a PEM private key", e))?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| SecretError::unreadable("tls.key", "an RSA, ECDSA or Ed25519 key", e))?;
    let (_, parsed) = X509Certificate::from_der(leaf)
        .map_err(|e| SecretError::unreadable("tls.crt", "an X.509 certificate", e))?;
    let names = dns_names(&parsed);
    let (not_before, not_after) = (parsed.validity().not_before, parsed.validity().not_after);
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .map_err(|_| SecretError::Unusable("tls.key does not belong to the certificate in tls.crt"))?;
    Ok(Loaded { certificate: Certificate(Arc::new(certified)), names, not_before, not_after })
}

/// "the certificate expires on DATE (in N days)" when `not_after` is at most [`EXPIRY_WARNING`]
/// after `now`; N counts whole days left.
pub fn expiry_warning(not_after: ASN1Time, now: SystemTime) -> Option<String> {
    let left = not_after.timestamp().saturating_sub(unix_seconds(now));
    let warn_within = i64::try_from(EXPIRY_WARNING.as_secs()).unwrap_or(i64::MAX);
    (left <= warn_within).then(|| {
        let (date, days) = (not_after.to_datetime().date(), left / (24 * 60 * 60));
        let unit = if days == 1 { "day" } else { "days" };
        format!("the certificate expires on {date} (in {days} {unit})")
    })
}

fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn field(secret: &Secret, key: &'static str) -> Result<Vec<u8>, SecretError> {
    let from_data = secret.data.as_ref().and_then(|d| d.get(key)).map(|b| b.0.clone());
    let from_string_data =
        || secret.string_data.as_ref().and_then(|d| d.get(key)).map(|s| s.as_bytes().to_vec());
    from_data.or_else(from_string_data).filter(|b| !b.is_empty()).ok_or(SecretError::MissingKey { key })
}

fn check_validity(loaded: &Loaded, now: SystemTime) -> Result<(), SecretError> {
    let now = unix_seconds(now);
    if now < loaded.not_before.timestamp() {
        return Err(SecretError::NotYetValid(loaded.not_before.to_string()));
    }
    if now > loaded.not_after.timestamp() {
        return Err(SecretError::Expired(loaded.not_after.to_string()));
    }
    Ok(())
}

fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let sans: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(extension)) => extension
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if !sans.is_empty() {
        return sans;
    }
    cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_ascii_lowercase).collect()
}

/// Whether a certificate naming `names` is valid for `host` (RFC 6125 §6.4.3: a wildcard
/// covers exactly one leftmost label). Any certificate is for the catch-all (a Gateway HTTPS
/// listener without `hostname`): it is served for the names no other host has.
pub fn covers(names: &[String], host: &HostMatch) -> bool {
    if *host == HostMatch::Any {
        return true;
    }
    let host = host.to_string();
    names.iter().any(|name| {
        *name == host
            || name.strip_prefix("*.").is_some_and(|suffix| {
                host.strip_suffix(suffix)
                    .and_then(|label| label.strip_suffix('.'))
                    .is_some_and(|label| !label.is_empty() && !label.contains('.') && label != "*")
            })
    })
}

/// The CA bundle (`ca.crt`) of the Secret `namespace/name` as a verifying client configuration
/// for HTTPS backends. Parsed once per Secret content.
pub fn backend_ca(snapshot: &Lookup<'_>, namespace: &str, name: &str) -> Result<BackendCa, SecretError> {
    let parse = |secret: &Secret| parse_ca(secret, format!("{namespace}/{name}"));
    let parsed = snapshot.parsed_secret((namespace, name), "backend CA", parse);
    parsed.unwrap_or(Err(SecretError::NotFound))
}

fn parse_ca(secret: &Secret, name: String) -> Result<BackendCa, SecretError> {
    ca_bundle(&field(secret, "ca.crt")?, name)
}

/// A verifying client configuration for HTTPS backends from a PEM bundle of CA certificates
/// (the `ca.crt` of a Secret or a ConfigMap named `name`).
pub fn ca_bundle(pem: &[u8], name: String) -> Result<BackendCa, SecretError> {
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| SecretError::unreadable("ca.crt", "PEM", e))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certificates.iter().cloned());
    if added == 0 {
        return Err(SecretError::Unusable("ca.crt holds no usable CA certificate"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SecretError::unreadable("ca.crt", "usable with TLS 1.2 or 1.3", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut fingerprint = xxhash_rust::xxh3::Xxh3::new();
    certificates.iter().for_each(|certificate| fingerprint.update(certificate));
    let fingerprint = fingerprint.digest();
    Ok(BackendCa { secret: name, certificates, fingerprint, client: Arc::new(client) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_coverage() {
        let names = vec!["a.com".to_owned(), "*.b.com".to_owned()];
        let cases = [
            ("a.com", true),
            ("x.a.com", false),
            ("x.b.com", true),
            ("b.com", false),
            ("y.x.b.com", false),
            ("*.b.com", true),
            ("*.a.com", false),
        ];
        for (host, want) in cases {
            assert_eq!(covers(&names, &HostMatch::parse(host)), want, "{host}");
        }
    }
}
