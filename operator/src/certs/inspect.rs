//! Reading certificates and keys: PEM blocks, validity, SANs, signatures. Times are nanoseconds
//! since the Unix epoch (`i128`, as [`jiff::Timestamp::as_nanosecond`]).

use std::collections::BTreeSet;
use std::net::IpAddr;

use rcgen::KeyPair;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::{BACKDATE, CertError, Material, duration_ns};

pub(super) const PEM_BEGIN_CERT: &str = "-----BEGIN CERTIFICATE-----";
const PEM_END_CERT: &str = "-----END CERTIFICATE-----";
const NS_PER_S: i128 = 1_000_000_000;

/// The SANs of a certificate, normalised: DNS names lowercased, both sets deduplicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Names {
    dns: BTreeSet<String>,
    ips: BTreeSet<IpAddr>,
}

impl Names {
    pub(super) fn new<'a>(
        dns: impl IntoIterator<Item = &'a str>,
        ips: impl IntoIterator<Item = IpAddr>,
    ) -> Self {
        Self {
            dns: dns.into_iter().map(str::to_ascii_lowercase).collect(),
            ips: ips.into_iter().collect(),
        }
    }
}

/// What we need to know about one certificate.
#[derive(Debug, Clone)]
pub(super) struct CertInfo {
    pub der: Vec<u8>,
    pub not_before: i128,
    pub not_after: i128,
    pub names: Names,
    pub is_ca: bool,
    /// The subject public key's bits (for ECDSA: the uncompressed point).
    pub public_key: Vec<u8>,
    pub serial_hex: String,
}

impl CertInfo {
    pub(super) fn from_der(der: &[u8]) -> Result<Self, CertError> {
        let x = parse(der)?;
        let validity = x.validity();
        let mut dns = Vec::new();
        let mut ips = Vec::new();
        let san = x
            .subject_alternative_name()
            .map_err(|e| CertError::Invalid(format!("subjectAltName: {e}")))?;
        for name in san.iter().flat_map(|ext| &ext.value.general_names) {
            match name {
                GeneralName::DNSName(n) => dns.push(*n),
                GeneralName::IPAddress(bytes) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                        ips.push(IpAddr::from(v4));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                        ips.push(IpAddr::from(v6));
                    }
                }
                _ => {}
            }
        }
        Ok(Self {
            der: der.to_vec(),
            not_before: i128::from(validity.not_before.timestamp()) * NS_PER_S,
            not_after: i128::from(validity.not_after.timestamp()) * NS_PER_S,
            names: Names::new(dns, ips),
            is_ca: x.is_ca(),
            public_key: x.public_key().subject_public_key.data.to_vec(),
            serial_hex: hex::encode(x.raw_serial()),
        })
    }

    /// When it was issued: `notBefore` + [`BACKDATE`] (for certificates too short for that, their
    /// `notBefore`).
    pub(super) fn issued(&self) -> i128 {
        let backdate = duration_ns(BACKDATE);
        if self.not_after - self.not_before > backdate {
            self.not_before + backdate
        } else {
            self.not_before
        }
    }

    /// When a third of its lifetime remains.
    pub(super) fn renew_at(&self) -> i128 {
        self.not_after - (self.not_after - self.issued()) / 3
    }

    pub(super) fn not_after_s(&self) -> i64 {
        i64::try_from(self.not_after / NS_PER_S).unwrap_or(i64::MAX)
    }

    /// True when `issuer`'s key signed this certificate and the issuer name is `issuer`'s subject.
    pub(super) fn signed_by(&self, issuer: &CertInfo) -> bool {
        let (Ok(child), Ok(parent)) = (parse(&self.der), parse(&issuer.der)) else {
            return false;
        };
        child.issuer().as_raw() == parent.subject().as_raw()
            && child.verify_signature(Some(parent.public_key())).is_ok()
    }
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
    let (_, x) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CertError::Invalid(format!("certificate: {e}")))?;
    Ok(x)
}

/// One certificate of a PEM text: its own PEM block (with a trailing newline) and what it says.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub pem: String,
    pub info: CertInfo,
}

/// Every `CERTIFICATE` block of `text`, in order; at least one. Text between blocks is ignored.
pub(super) fn pem_certificates(text: &str) -> Result<Vec<Entry>, CertError> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(PEM_BEGIN_CERT) {
        let block = &rest[start..];
        let end = block
            .find(PEM_END_CERT)
            .ok_or_else(|| CertError::Invalid("unterminated PEM certificate".into()))?
            + PEM_END_CERT.len();
        let block = &block[..end];
        let der = CertificateDer::from_pem_slice(block.as_bytes())
            .map_err(|e| CertError::Invalid(format!("PEM certificate: {e}")))?;
        out.push(Entry {
            pem: format!("{block}\n"),
            info: CertInfo::from_der(der.as_ref())?,
        });
        rest = &rest[start + end..];
    }
    if out.is_empty() {
        return Err(CertError::Invalid("no PEM certificate".into()));
    }
    Ok(out)
}

/// A PEM private key, checked against the certificate it belongs to.
pub(super) fn key_for(key_pem: &str, cert: &CertInfo) -> Result<KeyPair, CertError> {
    let key =
        KeyPair::from_pem(key_pem).map_err(|e| CertError::Invalid(format!("private key: {e}")))?;
    if key.public_key_raw() != cert.public_key.as_slice() {
        return Err(CertError::Invalid(
            "the private key does not belong to the certificate".into(),
        ));
    }
    Ok(key)
}

/// The CA part of the Secret, valid: `bundle[0]` is a self-signed CA matching `key`.
#[derive(Debug)]
pub(super) struct CaState {
    pub bundle: Vec<Entry>,
    pub key: KeyPair,
    /// When the current CA entered the bundle (the annotation, else the CA's issue time).
    pub published_at: i128,
}

impl CaState {
    pub(super) fn read(m: &Material) -> Result<Self, CertError> {
        let bundle = pem_certificates(&m.ca_bundle_pem)?;
        let current = &bundle[0].info;
        if !current.is_ca {
            return Err(CertError::Invalid(
                "the first certificate of the CA bundle is not a CA".into(),
            ));
        }
        if !current.signed_by(current) {
            return Err(CertError::Invalid(
                "the first certificate of the CA bundle is not self-signed".into(),
            ));
        }
        let key = key_for(&m.ca_key_pem, current)?;
        let published_at = m
            .ca_published_at
            .map_or_else(|| current.issued(), |t| t.as_nanosecond());
        Ok(Self {
            bundle,
            key,
            published_at,
        })
    }

    pub(super) fn current(&self) -> &CertInfo {
        &self.bundle[0].info
    }
}

/// The serving part of the Secret, readable and matching its key.
#[derive(Debug)]
pub(super) struct Serving {
    pub info: CertInfo,
    /// Index of the bundle CA that signed it, if any.
    pub signer: Option<usize>,
}

impl Serving {
    pub(super) fn read(m: &Material, bundle: &[Entry]) -> Result<Self, CertError> {
        let info = pem_certificates(&m.cert_pem)?.swap_remove(0).info;
        key_for(&m.key_pem, &info)?;
        let signer = bundle.iter().position(|ca| info.signed_by(&ca.info));
        Ok(Self { info, signer })
    }
}
