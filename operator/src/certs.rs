//! The webhook server's CA and serving certificate: pure decisions, no I/O, the clock passed in.
//!
//! The operator keeps both in one Secret (type `kubernetes.io/tls`):
//!
//! | key | content |
//! |---|---|
//! | `tls.crt`, `tls.key` | the serving certificate and its key (PEM, PKCS#8) |
//! | `ca.crt` | the CA bundle the API server must trust (`caBundle` of both webhook configurations): the current CA first, then previous CAs while they may still be needed |
//! | `ca.key` | the current CA's key |
//!
//! and the annotation [`CA_PUBLISHED_AT`] (RFC 3339): when the current CA was first written into the
//! bundle. [`Material`] is that Secret's content; [`plan`] says what to write next, and [`next_check`]
//! when to ask again.
//!
//! # Certificates
//! * CA: ECDSA P-256, self-signed, `basicConstraints: CA, pathlen 0`, key usage `keyCertSign`,
//!   `cRLSign`, `digitalSignature`, valid from `now - 1 min` ([`BACKDATE`], for clock skew) to
//!   `now + ca_validity`.
//! * Serving certificate: ECDSA P-256, fresh key each time, SANs = the settings' DNS names and IP
//!   addresses, EKU `serverAuth`, key usage `digitalSignature`, valid from `now - 1 min` to
//!   `now + cert_validity`, but never past its CA's own expiry.
//!
//! # Rules (what [`plan`] does, in this order)
//! A certificate's *lifetime* runs from its issue time (`notBefore + 1 min`) to `notAfter`; it is
//! *due* once at most a third of its lifetime remains (`now >= notAfter - lifetime / 3`).
//! A CA is *propagated* once `propagation` has passed since [`CA_PUBLISHED_AT`] (missing annotation:
//! the CA's issue time).
//!
//! 1. No Secret: a new CA and a serving certificate signed by it (`created`).
//! 2. The CA part (the first certificate of `ca.crt` and `ca.key`) is unreadable, is not a CA, is not
//!    self-signed, or does not match its key: everything is regenerated (`unreadable`). The current
//!    CA has expired: everything is regenerated (`CA expired`); nothing served can verify anyway.
//! 3. The current CA is due: a new CA is generated and put FIRST into the bundle, the old one stays
//!    behind it (bundle = new + old + still-valid older ones); `ca.key` becomes the new key and
//!    [`CA_PUBLISHED_AT`] = now (`CA expires soon`). The serving certificate is NOT switched to the
//!    new CA yet (the API server does not trust it until the caller has pushed the new `caBundle` and
//!    it has propagated). If the serving certificate needs re-issuing for any reason of rule 4 at
//!    this moment, or would become due before the new CA is propagated (`now + propagation`), it is
//!    re-issued now from the OLD CA, whose key we still hold, so that it does not have to wait.
//! 4. The serving certificate needs re-issuing when it
//!    * is unreadable or does not match `tls.key` (`unreadable`),
//!    * has expired (`serving certificate expired`),
//!    * is not signed by any CA in the bundle (`serving certificate not signed by a CA in the bundle`),
//!    * has SANs other than the settings' (`names changed`; DNS names compared case-insensitively,
//!      order and duplicates ignored),
//!    * is due (`serving certificate expires soon`),
//!    * outlives what a fresh certificate would (`notAfter > now + cert_validity + 1 min`: the
//!      validity setting was shortened) (`certificate validity changed`),
//!    * is signed by a previous CA of the bundle, not the current one (`CA rotated`).
//!
//!    It is re-issued from the current CA at once when the first three apply (it cannot work as it
//!    is), or when the current CA is propagated, or when the certificate is already signed by the
//!    current CA. Otherwise (a new CA still propagating) it waits until the CA is propagated.
//! 5. A previous CA (any but the first in the bundle) is dropped once it has expired, or once the
//!    served certificate is signed by another CA and has been issued for at least `propagation`
//!    (every replica has had time to load it; nothing signed by the old CA is served any more)
//!    (`previous CA retired`, unless a rule above already gave a reason).
//!
//! `propagation` therefore has to cover both the API server learning a new `caBundle` and every
//! replica loading a new serving certificate. [`CertSettings::validate`] checks that the validities
//! leave room for it (`ca_validity > 6 × propagation`, `cert_validity > 3 × propagation`).
//!
//! The caller writes [`Plan::Write`]'s material into the Secret (optimistic concurrency: a conflict
//! means another replica wrote first; read again and plan again), pushes `ca_bundle_pem` into the
//! webhook configurations' `caBundle`, and loads `cert_pem`/`key_pem` into the server
//! ([`crate::tls::CertResolver::update`]).

mod inspect;
mod issue;
mod plan;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::ByteString;

use inspect::CertInfo;
pub use plan::{Plan, next_check, plan};

/// Secret key of the serving certificate (PEM).
pub const TLS_CRT: &str = "tls.crt";
/// Secret key of the serving certificate's private key (PEM, PKCS#8).
pub const TLS_KEY: &str = "tls.key";
/// Secret key of the CA bundle (PEM, current CA first).
pub const CA_CRT: &str = "ca.crt";
/// Secret key of the current CA's private key (PEM, PKCS#8).
pub const CA_KEY: &str = "ca.key";
/// Secret annotation: when the current CA was first published in the bundle (RFC 3339).
pub const CA_PUBLISHED_AT: &str = "mcpguard.io/ca-published-at";
/// Certificates are valid from this long before they are issued (clock skew between the operator
/// and the API server).
pub const BACKDATE: Duration = Duration::from_secs(60);
/// [`next_check`] never asks to wait longer than this.
pub const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(3600);
/// Longest validity accepted for either certificate (100 years).
const MAX_VALIDITY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Why [`plan`] asks for a write; the `reason` of [`Plan::Write`] is one of these.
pub mod reason {
    /// There was no Secret.
    pub const CREATED: &str = "created";
    /// The Secret's CA or serving certificate could not be read (or keys did not match).
    pub const UNREADABLE: &str = "unreadable";
    /// The current CA had expired; everything was regenerated.
    pub const CA_EXPIRED: &str = "CA expired";
    /// A third or less of the CA's lifetime remained; a new CA was added to the bundle.
    pub const CA_EXPIRES_SOON: &str = "CA expires soon";
    /// The serving certificate had expired.
    pub const SERVING_EXPIRED: &str = "serving certificate expired";
    /// The serving certificate was signed by no CA in the bundle.
    pub const SERVING_UNTRUSTED: &str = "serving certificate not signed by a CA in the bundle";
    /// The serving certificate's SANs differed from the settings.
    pub const NAMES_CHANGED: &str = "names changed";
    /// A third or less of the serving certificate's lifetime remained.
    pub const SERVING_EXPIRES_SOON: &str = "serving certificate expires soon";
    /// The serving certificate outlived what the validity setting allows.
    pub const VALIDITY_CHANGED: &str = "certificate validity changed";
    /// The serving certificate was signed by a previous CA; the current one is propagated.
    pub const CA_ROTATED: &str = "CA rotated";
    /// A previous CA was dropped from the bundle.
    pub const PREVIOUS_CA_RETIRED: &str = "previous CA retired";
}

/// Errors of this module and of [`crate::tls`].
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The settings cannot produce a certificate.
    #[error("certificate settings: {0}")]
    Settings(String),
    /// rcgen failed to generate a key or certificate.
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A certificate or key could not be read, or they do not belong together.
    #[error("{0}")]
    Invalid(String),
}

/// What the certificates must look like, and when to rotate them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSettings {
    /// DNS SANs of the serving certificate (e.g. `svc`, `svc.ns`, `svc.ns.svc`).
    pub dns_names: Vec<String>,
    /// IP SANs of the serving certificate.
    pub ip_addresses: Vec<IpAddr>,
    /// Lifetime of a serving certificate.
    pub cert_validity: Duration,
    /// Lifetime of a CA.
    pub ca_validity: Duration,
    /// How long a new CA is in the bundle before certificates signed by it are served; also how
    /// long a previous CA stays after the serving certificate has moved off it.
    pub propagation: Duration,
}

impl CertSettings {
    /// Everything [`plan`] needs (at least one name, ASCII DNS names, validities between 1 s and
    /// 100 years), plus the margins that make rotation seamless: `ca_validity > 6 × propagation`
    /// (the old CA outlives the switch of the serving certificate and the replicas' reload) and
    /// `cert_validity > 3 × propagation` (a serving certificate that waits for a new CA to
    /// propagate does not expire meanwhile). [`plan`] itself only insists on the former group;
    /// call this once at startup.
    pub fn validate(&self) -> Result<(), CertError> {
        self.check()?;
        if self.propagation.saturating_mul(6) >= self.ca_validity {
            return Err(CertError::Settings(format!(
                "CA validity ({:?}) must be more than 6 × the propagation delay ({:?})",
                self.ca_validity, self.propagation
            )));
        }
        if self.propagation.saturating_mul(3) >= self.cert_validity {
            return Err(CertError::Settings(format!(
                "certificate validity ({:?}) must be more than 3 × the propagation delay ({:?})",
                self.cert_validity, self.propagation
            )));
        }
        Ok(())
    }

    /// What [`plan`] cannot work without.
    fn check(&self) -> Result<(), CertError> {
        if self.dns_names.is_empty() && self.ip_addresses.is_empty() {
            return Err(CertError::Settings(
                "the serving certificate needs at least one DNS name or IP address".into(),
            ));
        }
        if let Some(bad) = self
            .dns_names
            .iter()
            .find(|n| n.is_empty() || !n.is_ascii())
        {
            return Err(CertError::Settings(format!(
                "DNS name {bad:?} must be non-empty ASCII"
            )));
        }
        for (what, d) in [
            ("certificate validity", self.cert_validity),
            ("CA validity", self.ca_validity),
        ] {
            if d < Duration::from_secs(1) || d > MAX_VALIDITY {
                return Err(CertError::Settings(format!(
                    "{what} ({d:?}) must be between 1s and 100 years"
                )));
            }
        }
        if self.propagation > MAX_VALIDITY {
            return Err(CertError::Settings(format!(
                "propagation delay ({:?}) is too long",
                self.propagation
            )));
        }
        Ok(())
    }

    /// The SANs, normalised for comparison.
    fn names(&self) -> inspect::Names {
        inspect::Names::new(
            self.dns_names.iter().map(String::as_str),
            self.ip_addresses.iter().copied(),
        )
    }
}

/// The content of the certificate Secret.
///
/// Its `Debug` shows sizes, never the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct Material {
    /// `ca.crt`: current CA first, then previous CAs.
    pub ca_bundle_pem: String,
    /// `ca.key`: the current CA's key.
    pub ca_key_pem: String,
    /// `tls.crt`: the serving certificate.
    pub cert_pem: String,
    /// `tls.key`: the serving certificate's key.
    pub key_pem: String,
    /// Annotation [`CA_PUBLISHED_AT`]: when the current CA entered the bundle.
    pub ca_published_at: Option<Timestamp>,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let certs = |pem: &str| pem.matches(inspect::PEM_BEGIN_CERT).count();
        f.debug_struct("Material")
            .field("ca_bundle_certificates", &certs(&self.ca_bundle_pem))
            .field("ca_key_pem", &"<redacted>")
            .field("cert_certificates", &certs(&self.cert_pem))
            .field("key_pem", &"<redacted>")
            .field("ca_published_at", &self.ca_published_at)
            .finish()
    }
}

impl Material {
    /// Reads a Secret's `data` and `metadata.annotations`.
    ///
    /// Does not judge the content: missing keys and bytes that are not UTF-8 become empty strings,
    /// an unparsable annotation `None`, and [`plan`] then decides (usually `unreadable`, which
    /// regenerates). So this currently never fails, and an existing Secret never turns into "no
    /// Secret" (which would make [`plan`] answer `created`).
    pub fn from_secret_data(
        data: &BTreeMap<String, ByteString>,
        annotations: &BTreeMap<String, String>,
    ) -> Result<Self, CertError> {
        let text = |key: &str| {
            data.get(key)
                .and_then(|b| std::str::from_utf8(&b.0).ok())
                .unwrap_or_default()
                .to_owned()
        };
        Ok(Self {
            ca_bundle_pem: text(CA_CRT),
            ca_key_pem: text(CA_KEY),
            cert_pem: text(TLS_CRT),
            key_pem: text(TLS_KEY),
            ca_published_at: annotations
                .get(CA_PUBLISHED_AT)
                .and_then(|s| s.parse().ok()),
        })
    }

    /// When the serving certificate (`cert_pem`) expires; `None` if it is unreadable.
    pub fn not_after(&self) -> Option<Timestamp> {
        let entries = inspect::pem_certificates(&self.cert_pem).ok()?;
        Some(ns_to_timestamp(entries.first()?.info.not_after))
    }

    /// When the current CA (the first of `ca_bundle_pem`) expires; `None` if it is unreadable.
    pub fn ca_not_after(&self) -> Option<Timestamp> {
        let entries = inspect::pem_certificates(&self.ca_bundle_pem).ok()?;
        Some(ns_to_timestamp(entries.first()?.info.not_after))
    }

    /// The Secret's `data` (the four keys) and the annotations to set on it.
    pub fn to_secret_data(&self) -> (BTreeMap<String, ByteString>, BTreeMap<String, String>) {
        let data = [
            (TLS_CRT, &self.cert_pem),
            (TLS_KEY, &self.key_pem),
            (CA_CRT, &self.ca_bundle_pem),
            (CA_KEY, &self.ca_key_pem),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), ByteString(v.clone().into_bytes())))
        .collect();
        let annotations = self
            .ca_published_at
            .map(|t| (CA_PUBLISHED_AT.to_owned(), t.to_string()))
            .into_iter()
            .collect();
        (data, annotations)
    }
}

/// The serial number of the first certificate in `cert_pem`, as lowercase hex of its DER bytes.
pub fn serial_of_pem(cert_pem: &str) -> Result<String, CertError> {
    let entries = inspect::pem_certificates(cert_pem)?;
    entries
        .first()
        .map(|e| e.info.serial_hex.clone())
        .ok_or_else(|| CertError::Invalid("no certificate".into()))
}

/// The serial number of a DER certificate, as lowercase hex of its DER bytes.
pub fn serial_of_der(der: &[u8]) -> Result<String, CertError> {
    Ok(CertInfo::from_der(der)?.serial_hex)
}

fn duration_ns(d: Duration) -> i128 {
    i128::try_from(d.as_nanos()).unwrap_or(i128::MAX)
}

fn ns_to_timestamp(ns: i128) -> Timestamp {
    Timestamp::from_nanosecond(ns).unwrap_or(Timestamp::UNIX_EPOCH)
}
