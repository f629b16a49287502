//! Generating keys and certificates (rcgen, ring). Times are whole seconds since the Unix epoch.

use std::time::Duration;

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};

use super::{BACKDATE, CertError, CertSettings};

/// A new CA.
pub(super) struct NewCa {
    pub cert_pem: String,
    pub der: Vec<u8>,
    pub not_after_s: i64,
    pub key: KeyPair,
}

/// A new serving certificate.
pub(super) struct NewServing {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A self-signed CA valid from `now - BACKDATE` to `now + validity`.
pub(super) fn ca(now_s: i64, validity: Duration) -> Result<NewCa, CertError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "mcp-guard");
    // Unique per CA (time and a piece of the random public key), so that CAs are told apart in
    // logs and by chain building (which matches issuers by name).
    let tag = hex::encode(key.public_key_raw().get(1..5).unwrap_or_default());
    dn.push(
        DnType::CommonName,
        format!("mcp-guard webhook CA {now_s} {tag}"),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let not_after_s = add_secs(now_s, validity)?;
    set_validity(&mut params, now_s, not_after_s)?;
    let cert = params.self_signed(&key)?;
    Ok(NewCa {
        cert_pem: cert.pem(),
        der: cert.der().to_vec(),
        not_after_s,
        key,
    })
}

/// A serving certificate signed by the CA `ca_der`/`ca_key`, valid from `now - BACKDATE` to
/// `now + cert_validity`, but not past the CA's `notAfter`.
pub(super) fn serving(
    now_s: i64,
    settings: &CertSettings,
    ca_der: &[u8],
    ca_not_after_s: i64,
    ca_key: &KeyPair,
) -> Result<NewServing, CertError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "mcp-guard");
    dn.push(DnType::CommonName, "mcp-guard webhook");
    params.distinguished_name = dn;
    params.subject_alt_names = settings
        .dns_names
        .iter()
        .map(|n| {
            Ia5String::try_from(n.as_str())
                .map(SanType::DnsName)
                .map_err(|e| CertError::Settings(format!("DNS name {n:?}: {e}")))
        })
        .chain(
            settings
                .ip_addresses
                .iter()
                .map(|ip| Ok(SanType::IpAddress(*ip))),
        )
        .collect::<Result<_, _>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let not_after_s = add_secs(now_s, settings.cert_validity)?.min(ca_not_after_s);
    set_validity(&mut params, now_s, not_after_s)?;
    let issuer = Issuer::from_ca_cert_der(&ca_der.into(), ca_key)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(NewServing {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn add_secs(now_s: i64, d: Duration) -> Result<i64, CertError> {
    i64::try_from(d.as_secs())
        .ok()
        .and_then(|d| now_s.checked_add(d))
        .ok_or_else(|| CertError::Settings(format!("validity {d:?} is too long")))
}

/// `notBefore = issued - BACKDATE`, `notAfter = not_after_s`.
fn set_validity(
    params: &mut CertificateParams,
    issued_s: i64,
    not_after_s: i64,
) -> Result<(), CertError> {
    let backdate = i64::try_from(BACKDATE.as_secs()).unwrap_or(0);
    let not_before_s = issued_s.saturating_sub(backdate);
    // 9999-12-31T23:59:59Z: the last second X.509 (and `time`) can express.
    const LAST: i64 = 253_402_300_799;
    let since_epoch = |s: i64| match u64::try_from(s) {
        Ok(secs) if s <= LAST => Ok(Duration::from_secs(secs)),
        _ => Err(CertError::Settings(format!(
            "time {s} (seconds since 1970) cannot go into a certificate"
        ))),
    };
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + since_epoch(not_before_s)?;
    params.not_after = epoch + since_epoch(not_after_s.max(not_before_s))?;
    Ok(())
}
