use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::extensions::{ExtendedKeyUsage, ParsedExtension};

use super::*;

/// 2030-03-17T17:46:40Z: synthetic clocks count seconds from here.
const T0: i64 = 1_900_000_000;
const HOST: &str = "webhook.mcp-guard.svc";

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(T0 + s).expect("valid timestamp")
}

fn settings(cert: u64, ca: u64, propagation: u64) -> CertSettings {
    CertSettings {
        dns_names: vec!["webhook".into(), "webhook.mcp-guard".into(), HOST.into()],
        ip_addresses: vec!["127.0.0.1".parse().expect("ip")],
        cert_validity: Duration::from_secs(cert),
        ca_validity: Duration::from_secs(ca),
        propagation: Duration::from_secs(propagation),
    }
}

/// Serving 90 s, CA 300 s, propagation 10 s.
fn short() -> CertSettings {
    settings(90, 300, 10)
}

#[track_caller]
fn write(plan: Result<Plan, CertError>) -> (Material, &'static str) {
    match plan.expect("plan") {
        Plan::Write { material, reason } => (material, reason),
        Plan::Keep => panic!("expected a write, got Keep"),
    }
}

#[track_caller]
fn keep(plan: Result<Plan, CertError>) {
    match plan.expect("plan") {
        Plan::Keep => {}
        Plan::Write { reason, .. } => panic!("expected Keep, got a write: {reason}"),
    }
}

fn create(now: Timestamp, s: &CertSettings) -> Material {
    let (m, reason) = write(plan(now, None, s));
    assert_eq!(reason, reason::CREATED);
    m
}

fn bundle(m: &Material) -> Vec<inspect::Entry> {
    inspect::pem_certificates(&m.ca_bundle_pem).expect("bundle")
}

fn leaf(m: &Material) -> CertInfo {
    inspect::pem_certificates(&m.cert_pem)
        .expect("serving cert")
        .swap_remove(0)
        .info
}

fn serial(m: &Material) -> String {
    serial_of_pem(&m.cert_pem).expect("serial")
}

/// Index of the bundle CA that signed the serving certificate.
fn signer(m: &Material) -> Option<usize> {
    let leaf = leaf(m);
    bundle(m).iter().position(|ca| leaf.signed_by(&ca.info))
}

/// What a TLS client (the API server) would conclude at `at`, trusting `bundle_pem` and offered
/// `cert_pem`: webpki path building (signature, EKU, SANs, leaf validity) plus the validity of the
/// CA it chains to (webpki does not check a trust anchor's dates; Go's crypto/x509 does).
fn verify(bundle_pem: &str, cert_pem: &str, at: Timestamp) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(bundle_pem.as_bytes()) {
        roots
            .add(der.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| e.to_string())?;
    let leaf_der =
        CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| e.to_string())?;
    let at_secs = u64::try_from(at.as_second()).expect("after 1970");
    let name = ServerName::try_from(HOST).expect("server name");
    verifier
        .verify_server_cert(
            &leaf_der,
            &[],
            &name,
            &[],
            UnixTime::since_unix_epoch(Duration::from_secs(at_secs)),
        )
        .map_err(|e| e.to_string())?;
    let leaf = CertInfo::from_der(leaf_der.as_ref()).map_err(|e| e.to_string())?;
    let at_ns = at.as_nanosecond();
    let cas = inspect::pem_certificates(bundle_pem).map_err(|e| e.to_string())?;
    if cas.iter().any(|ca| {
        leaf.signed_by(&ca.info) && ca.info.not_before <= at_ns && at_ns < ca.info.not_after
    }) {
        Ok(())
    } else {
        Err("the CA that signed the certificate is not valid at that time".into())
    }
}

#[track_caller]
fn assert_verifies(m: &Material, at: Timestamp) {
    if let Err(e) = verify(&m.ca_bundle_pem, &m.cert_pem, at) {
        panic!("serving certificate does not verify against its bundle at {at}: {e}");
    }
}

#[test]
fn creates_a_ca_and_a_serving_certificate() {
    let s = short();
    let m = create(t(0), &s);
    assert_eq!(m.ca_published_at, Some(t(0)));

    let cas = bundle(&m);
    assert_eq!(cas.len(), 1);
    let ca = &cas[0].info;
    assert!(ca.is_ca);
    assert_eq!(ca.not_before, t(-60).as_nanosecond());
    assert_eq!(ca.not_after, t(300).as_nanosecond());

    let leaf = leaf(&m);
    assert!(!leaf.is_ca);
    assert_eq!(leaf.not_before, t(-60).as_nanosecond());
    assert_eq!(leaf.not_after, t(90).as_nanosecond());
    assert_eq!(leaf.names, s.names());
    assert!(leaf.signed_by(ca));

    // Extensions the API server relies on.
    let (_, x) = x509_parser::parse_x509_certificate(&leaf.der).expect("parse");
    let eku = x
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::ExtendedKeyUsage(ExtendedKeyUsage { server_auth, .. }) => {
                Some(*server_auth)
            }
            _ => None,
        });
    assert_eq!(eku, Some(true), "serverAuth EKU");
    let (_, x) = x509_parser::parse_x509_certificate(&ca.der).expect("parse");
    let ku = x.key_usage().expect("key usage").expect("present").value;
    assert!(ku.key_cert_sign());
    assert!(
        x.basic_constraints()
            .expect("bc")
            .expect("present")
            .value
            .ca
    );

    assert_verifies(&m, t(0));
    assert_verifies(&m, t(89));
    // Also by IP address.
    assert!(
        verify_as(
            &m.ca_bundle_pem,
            &m.cert_pem,
            ServerName::IpAddress("127.0.0.1".parse::<IpAddr>().expect("ip").into())
        )
        .is_ok()
    );
    assert!(
        verify_as(
            &m.ca_bundle_pem,
            &m.cert_pem,
            ServerName::try_from("other.example").expect("name")
        )
        .is_err()
    );
}

fn verify_as(bundle_pem: &str, cert_pem: &str, name: ServerName<'_>) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(bundle_pem.as_bytes()) {
        roots
            .add(der.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| e.to_string())?;
    let leaf = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| e.to_string())?;
    let at = u64::try_from(T0).expect("positive");
    verifier
        .verify_server_cert(
            &leaf,
            &[],
            &name,
            &[],
            UnixTime::since_unix_epoch(Duration::from_secs(at)),
        )
        .map(drop)
        .map_err(|e| e.to_string())
}

#[test]
fn keeps_a_fresh_certificate() {
    let s = short();
    let m = create(t(0), &s);
    for now in 0..60 {
        keep(plan(t(now), Some(&m), &s));
    }
}

#[test]
fn renews_the_serving_certificate_at_two_thirds() {
    let s = short();
    let m = create(t(0), &s);
    keep(plan(t(59), Some(&m), &s));
    let (m2, reason) = write(plan(t(60), Some(&m), &s));
    assert_eq!(reason, reason::SERVING_EXPIRES_SOON);
    assert_ne!(serial(&m2), serial(&m));
    assert_ne!(m2.key_pem, m.key_pem);
    // Same CA, untouched.
    assert_eq!(m2.ca_bundle_pem, m.ca_bundle_pem);
    assert_eq!(m2.ca_key_pem, m.ca_key_pem);
    assert_eq!(m2.ca_published_at, m.ca_published_at);
    assert_eq!(leaf(&m2).not_after, t(150).as_nanosecond());
    assert_verifies(&m2, t(60));
    // And again two thirds into the new one.
    keep(plan(t(119), Some(&m2), &s));
    let (_, reason) = write(plan(t(120), Some(&m2), &s));
    assert_eq!(reason, reason::SERVING_EXPIRES_SOON);
}

/// Steps `m` one second at a time from `from` to `to` (inclusive), applying writes; returns the
/// material and the (time, reason) of each write.
fn run(
    mut m: Material,
    from: i64,
    to: i64,
    s: &CertSettings,
) -> (Material, Vec<(i64, &'static str)>) {
    let mut writes = Vec::new();
    for now in from..=to {
        if let Plan::Write { material, reason } = plan(t(now), Some(&m), s).expect("plan") {
            m = material;
            writes.push((now, reason));
        }
    }
    (m, writes)
}

#[test]
fn rotates_the_ca_in_three_steps() {
    let s = short(); // CA 300 s: due at 200; serving renewed at 60, 120, 180.
    let m = create(t(0), &s);
    let (m, writes) = run(m, 1, 199, &s);
    assert_eq!(
        writes,
        [
            (60, reason::SERVING_EXPIRES_SOON),
            (120, reason::SERVING_EXPIRES_SOON),
            (180, reason::SERVING_EXPIRES_SOON),
        ]
    );
    let old_ca = bundle(&m).swap_remove(0);

    // 1. The new CA joins the bundle, first; the serving certificate stays on the old CA.
    let (m1, reason) = write(plan(t(200), Some(&m), &s));
    assert_eq!(reason, reason::CA_EXPIRES_SOON);
    let cas = bundle(&m1);
    assert_eq!(cas.len(), 2);
    assert_ne!(cas[0].info.der, old_ca.info.der);
    assert_eq!(cas[1].info.der, old_ca.info.der);
    assert_ne!(m1.ca_key_pem, m.ca_key_pem);
    assert_eq!(m1.ca_published_at, Some(t(200)));
    assert_eq!(m1.cert_pem, m.cert_pem);
    assert_eq!(signer(&m1), Some(1));
    assert_verifies(&m1, t(200));
    // The API server, still on the old bundle, trusts what is served.
    assert!(verify(&m.ca_bundle_pem, &m1.cert_pem, t(205)).is_ok());

    // 2. Nothing until the new CA has propagated; then the serving certificate moves to it.
    for now in 201..210 {
        keep(plan(t(now), Some(&m1), &s));
    }
    assert_eq!(next_check(t(201), &m1, &s), Duration::from_secs(9));
    let (m2, reason) = write(plan(t(210), Some(&m1), &s));
    assert_eq!(reason, reason::CA_ROTATED);
    assert_eq!(m2.ca_bundle_pem, m1.ca_bundle_pem);
    assert_eq!(m2.ca_key_pem, m1.ca_key_pem);
    assert_eq!(signer(&m2), Some(0));
    assert_verifies(&m2, t(210));
    // Signed by the new CA alone.
    assert!(verify(&cas[0].pem, &m2.cert_pem, t(210)).is_ok());
    assert!(verify(&old_ca.pem, &m2.cert_pem, t(210)).is_err());

    // 3. The old CA leaves once the new serving certificate has been out for `propagation`.
    for now in 211..220 {
        keep(plan(t(now), Some(&m2), &s));
    }
    let (m3, reason) = write(plan(t(220), Some(&m2), &s));
    assert_eq!(reason, reason::PREVIOUS_CA_RETIRED);
    assert_eq!(bundle(&m3).len(), 1);
    assert_eq!(bundle(&m3)[0].info.der, cas[0].info.der);
    assert_eq!(m3.cert_pem, m2.cert_pem);
    assert_eq!(m3.ca_published_at, Some(t(200)));
    assert_verifies(&m3, t(220));
    keep(plan(t(221), Some(&m3), &s));
}

#[test]
fn a_ca_rotation_reissues_a_due_serving_certificate_from_the_old_ca() {
    // CA 270 s: due at 180, exactly when the serving certificate (issued at 120) is due too.
    let s = settings(90, 270, 10);
    let m = create(t(0), &s);
    let (m, writes) = run(m, 1, 179, &s);
    assert_eq!(writes.len(), 2);
    let (m1, reason) = write(plan(t(180), Some(&m), &s));
    assert_eq!(reason, reason::CA_EXPIRES_SOON);
    assert_ne!(m1.cert_pem, m.cert_pem);
    // From the old CA (which the API server trusts), not the new one.
    assert_eq!(signer(&m1), Some(1));
    assert!(verify(&m.ca_bundle_pem, &m1.cert_pem, t(180)).is_ok());
    // Valid for its full lifetime: the old CA lives until 270.
    assert_eq!(leaf(&m1).not_after, t(270).as_nanosecond());
}

#[test]
fn a_ca_rotation_reissues_a_serving_certificate_that_would_come_due_while_propagating() {
    // Serving 78 s: renewed at 52, 104, 156, next due at 208, inside the new CA's propagation
    // window (200..210). Re-issued from the old CA at 200 instead of waiting past its due time.
    let s = settings(78, 300, 10);
    let (m, writes) = run(create(t(0), &s), 1, 199, &s);
    assert_eq!(
        writes.iter().map(|(at, _)| *at).collect::<Vec<_>>(),
        [52, 104, 156]
    );
    let (m1, reason) = write(plan(t(200), Some(&m), &s));
    assert_eq!(reason, reason::CA_EXPIRES_SOON);
    assert_ne!(m1.cert_pem, m.cert_pem);
    assert_eq!(signer(&m1), Some(1));
    // Then it moves to the new CA as usual.
    let (_, writes) = run(m1, 201, 220, &s);
    assert_eq!(
        writes,
        [
            (210, reason::CA_ROTATED),
            (220, reason::PREVIOUS_CA_RETIRED)
        ]
    );
}

#[test]
fn a_serving_certificate_never_outlives_its_ca() {
    // CA 120 s (due at 80), serving 90 s.
    let s = settings(90, 120, 10);
    let m = create(t(0), &s);
    assert_eq!(leaf(&m).not_after, t(90).as_nanosecond());
    let (m1, reason) = write(plan(t(60), Some(&m), &s));
    assert_eq!(reason, reason::SERVING_EXPIRES_SOON);
    // Cut to the CA's expiry.
    assert_eq!(leaf(&m1).not_after, t(120).as_nanosecond());
}

#[test]
fn renames_the_serving_certificate() {
    let s = short();
    let m = create(t(0), &s);
    let mut renamed = s.clone();
    renamed
        .dns_names
        .push("mcp-guard-operator.mcp-guard.svc.cluster.local".into());
    let (m2, reason) = write(plan(t(5), Some(&m), &renamed));
    assert_eq!(reason, reason::NAMES_CHANGED);
    assert_eq!(leaf(&m2).names, renamed.names());
    assert_eq!(m2.ca_bundle_pem, m.ca_bundle_pem);
    assert_eq!(m2.ca_key_pem, m.ca_key_pem);
    assert_verifies(&m2, t(5));
    keep(plan(t(6), Some(&m2), &renamed));

    let mut readdressed = s.clone();
    readdressed.ip_addresses = vec!["10.0.0.7".parse().expect("ip")];
    let (_, reason) = write(plan(t(5), Some(&m), &readdressed));
    assert_eq!(reason, reason::NAMES_CHANGED);

    // Order, case and duplicates do not matter.
    let mut shuffled = s.clone();
    shuffled.dns_names.reverse();
    shuffled.dns_names.push(HOST.to_uppercase());
    keep(plan(t(5), Some(&m), &shuffled));
}

#[test]
fn a_rename_while_a_new_ca_propagates_waits_for_it() {
    let s = short();
    let (m, _) = run(create(t(0), &s), 1, 199, &s);
    let (m1, _) = write(plan(t(200), Some(&m), &s));
    let mut renamed = s.clone();
    renamed.dns_names.push("new.example".into());
    // The old CA's key is gone and the new CA is not trusted yet: wait.
    keep(plan(t(203), Some(&m1), &renamed));
    assert_eq!(next_check(t(203), &m1, &renamed), Duration::from_secs(7));
    let (m2, reason) = write(plan(t(210), Some(&m1), &renamed));
    assert_eq!(reason, reason::NAMES_CHANGED);
    assert_eq!(signer(&m2), Some(0));
    assert_eq!(leaf(&m2).names, renamed.names());
}

#[test]
fn a_shorter_validity_setting_renews() {
    let s = short();
    let m = create(t(0), &s);
    let mut shorter = s.clone();
    shorter.cert_validity = Duration::from_secs(20);
    // 90 s remaining > 20 s + 1 min of slack.
    let (m2, reason) = write(plan(t(0), Some(&m), &shorter));
    assert_eq!(reason, reason::VALIDITY_CHANGED);
    assert_eq!(leaf(&m2).not_after, t(20).as_nanosecond());
    keep(plan(t(1), Some(&m2), &shorter));
    // A longer setting waits for the normal renewal.
    let mut longer = s.clone();
    longer.cert_validity = Duration::from_secs(900);
    keep(plan(t(1), Some(&m), &longer));
}

#[test]
fn regenerates_what_it_cannot_read() {
    let s = short();
    let good = create(t(0), &s);
    let other = create(t(0), &s);

    // Unusable CA part: everything new.
    let garbage = [
        Material {
            ca_bundle_pem: String::new(),
            ca_key_pem: String::new(),
            cert_pem: String::new(),
            key_pem: String::new(),
            ca_published_at: None,
        },
        Material {
            ca_bundle_pem: "hello".into(),
            ..good.clone()
        },
        Material {
            ca_bundle_pem: "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"
                .into(),
            ..good.clone()
        },
        Material {
            ca_bundle_pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
            ..good.clone()
        },
        Material {
            ca_bundle_pem: "-----BEGIN CERTIFICATE-----\nAAAA".into(),
            ..good.clone()
        },
        // Key of another CA.
        Material {
            ca_key_pem: other.ca_key_pem.clone(),
            ..good.clone()
        },
        Material {
            ca_key_pem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
            ..good.clone()
        },
        // A serving certificate where the CA should be.
        Material {
            ca_bundle_pem: good.cert_pem.clone(),
            ca_key_pem: good.key_pem.clone(),
            ..good.clone()
        },
    ];
    for (i, m) in garbage.iter().enumerate() {
        let (fresh, reason) = write(plan(t(1), Some(m), &s));
        assert_eq!(reason, reason::UNREADABLE, "case {i}");
        assert_ne!(fresh.ca_key_pem, good.ca_key_pem, "case {i}");
        assert_eq!(fresh.ca_published_at, Some(t(1)));
        assert_verifies(&fresh, t(1));
        assert!(next_check(t(1), m, &s).is_zero(), "case {i}");
    }

    // Usable CA, unusable serving part: only the serving certificate is new.
    let serving_garbage = [
        Material {
            cert_pem: String::new(),
            ..good.clone()
        },
        Material {
            cert_pem: "\u{0}\u{1}garbage".into(),
            ..good.clone()
        },
        Material {
            key_pem: "garbage".into(),
            ..good.clone()
        },
        // The key of another certificate.
        Material {
            key_pem: other.key_pem.clone(),
            ..good.clone()
        },
    ];
    for (i, m) in serving_garbage.iter().enumerate() {
        let (fixed, reason) = write(plan(t(1), Some(m), &s));
        assert_eq!(reason, reason::UNREADABLE, "case {i}");
        assert_eq!(fixed.ca_bundle_pem, good.ca_bundle_pem, "case {i}");
        assert_eq!(fixed.ca_key_pem, good.ca_key_pem, "case {i}");
        assert_verifies(&fixed, t(1));
    }

    // Bytes that are not UTF-8 read as missing, and then regenerate.
    let mut data = BTreeMap::new();
    for key in [TLS_CRT, TLS_KEY, CA_CRT, CA_KEY] {
        data.insert(key.to_owned(), ByteString(vec![0xff, 0xfe, 0x00, 0x80]));
    }
    let mut annotations = BTreeMap::new();
    annotations.insert(CA_PUBLISHED_AT.to_owned(), "yesterday".to_owned());
    let m = Material::from_secret_data(&data, &annotations).expect("never fails");
    assert_eq!(m.ca_published_at, None);
    let (_, reason) = write(plan(t(1), Some(&m), &s));
    assert_eq!(reason, reason::UNREADABLE);
    let m = Material::from_secret_data(&BTreeMap::new(), &BTreeMap::new()).expect("never fails");
    let (_, reason) = write(plan(t(1), Some(&m), &s));
    assert_eq!(reason, reason::UNREADABLE);
}

#[test]
fn replaces_a_serving_certificate_from_a_foreign_ca() {
    let s = short();
    let good = create(t(0), &s);
    let other = create(t(0), &s);
    let m = Material {
        cert_pem: other.cert_pem.clone(),
        key_pem: other.key_pem.clone(),
        ..good.clone()
    };
    let (m2, reason) = write(plan(t(1), Some(&m), &s));
    assert_eq!(reason, reason::SERVING_UNTRUSTED);
    assert_eq!(m2.ca_bundle_pem, good.ca_bundle_pem);
    assert_verifies(&m2, t(1));
}

#[test]
fn an_expired_serving_certificate_is_replaced_at_once() {
    let s = short();
    let m = create(t(0), &s);
    let (m2, reason) = write(plan(t(95), Some(&m), &s));
    assert_eq!(reason, reason::SERVING_EXPIRED);
    assert_eq!(m2.ca_bundle_pem, m.ca_bundle_pem);
    assert_verifies(&m2, t(95));

    // Even while a new CA propagates (nothing verifies anyway): from the new CA.
    let mut slow = s.clone();
    slow.propagation = Duration::from_secs(100);
    let (m, _) = run(create(t(0), &slow), 1, 199, &slow);
    let (m1, _) = write(plan(t(200), Some(&m), &slow));
    // Re-issued from the old CA at 200 (it would be due at 240, before 300)...
    assert_eq!(signer(&m1), Some(1));
    assert_ne!(m1.cert_pem, m.cert_pem);
    // ... and expires at 290, still before the new CA has propagated.
    keep(plan(t(289), Some(&m1), &slow));
    let (m2, reason) = write(plan(t(290), Some(&m1), &slow));
    assert_eq!(reason, reason::SERVING_EXPIRED);
    assert_eq!(signer(&m2), Some(0));
    assert_verifies(&m2, t(290));
}

#[test]
fn an_expired_ca_regenerates_everything() {
    let s = short();
    let m = create(t(0), &s);
    let (m2, reason) = write(plan(t(300), Some(&m), &s));
    assert_eq!(reason, reason::CA_EXPIRED);
    assert_ne!(m2.ca_key_pem, m.ca_key_pem);
    assert_eq!(bundle(&m2).len(), 1);
    assert_verifies(&m2, t(300));
}

#[test]
fn expired_previous_cas_are_dropped() {
    // Propagation longer than the old CA's remaining life (a misconfiguration that `validate`
    // refuses): the old CA is dropped when it expires, whatever is served.
    let s = settings(90, 300, 120);
    let (m, _) = run(create(t(0), &s), 1, 199, &s);
    let (m1, _) = write(plan(t(200), Some(&m), &s));
    assert_eq!(bundle(&m1).len(), 2);
    let (m2, writes) = run(m1, 201, 300, &s);
    assert_eq!(
        writes,
        [
            // Re-issued from the old CA at 200, due at 260 but waiting for the new CA (320);
            // expired at 290: from the new CA at once.
            (290, reason::SERVING_EXPIRED),
            // Would stay until 290 + 120, but expires at 300.
            (300, reason::PREVIOUS_CA_RETIRED),
        ]
    );
    assert_eq!(bundle(&m2).len(), 1);
    assert_verifies(&m2, t(300));
}

#[test]
fn a_missing_annotation_counts_from_the_ca_issue_time() {
    let s = short();
    let (m, _) = run(create(t(0), &s), 1, 199, &s);
    let (m1, _) = write(plan(t(200), Some(&m), &s));
    let bare = Material {
        ca_published_at: None,
        ..m1.clone()
    };
    keep(plan(t(209), Some(&bare), &s));
    let (m2, reason) = write(plan(t(210), Some(&bare), &s));
    assert_eq!(reason, reason::CA_ROTATED);
    assert_eq!(m2.ca_published_at, Some(t(200)));
}

#[test]
fn next_check_wakes_up_for_each_event() {
    let s = short();
    let m = create(t(0), &s);
    // Propagation of the first CA and of the first serving certificate: nothing to do then,
    // but they are the earliest moments something could be due.
    assert_eq!(next_check(t(0), &m, &s), Duration::from_secs(10));
    assert_eq!(next_check(t(10), &m, &s), Duration::from_secs(50));
    assert_eq!(next_check(t(59), &m, &s), Duration::from_secs(1));
    // Due right now.
    assert_eq!(next_check(t(60), &m, &s), Duration::ZERO);
    let mut renamed = s.clone();
    renamed.dns_names = vec!["x".into()];
    assert_eq!(next_check(t(11), &m, &renamed), Duration::ZERO);

    // Long validities: capped.
    let s = settings(90 * 24 * 3600, 10 * 365 * 24 * 3600, 60);
    let m = create(t(0), &s);
    assert_eq!(next_check(t(3600), &m, &s), MAX_CHECK_INTERVAL);
}

#[test]
fn secret_round_trip() {
    let s = short();
    let m = create(t(0), &s);
    let (data, annotations) = m.to_secret_data();
    assert_eq!(
        data.keys().map(String::as_str).collect::<Vec<_>>(),
        [CA_CRT, CA_KEY, TLS_CRT, TLS_KEY]
    );
    assert_eq!(annotations[CA_PUBLISHED_AT], "2030-03-17T17:46:40Z");
    let back = Material::from_secret_data(&data, &annotations).expect("read");
    assert_eq!(back, m);
    assert_eq!(back.not_after(), Some(t(90)));
    assert_eq!(back.ca_not_after(), Some(t(300)));

    let debug = format!("{m:?}");
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    assert!(!debug.contains(&m.key_pem[30..60]), "{debug}");
}

#[test]
fn settings_are_checked() {
    assert!(short().validate().is_ok());
    let mut s = short();
    s.dns_names.clear();
    s.ip_addresses.clear();
    assert!(matches!(s.validate(), Err(CertError::Settings(_))));
    assert!(matches!(plan(t(0), None, &s), Err(CertError::Settings(_))));
    let mut s = short();
    s.dns_names.push("bücher.example".into());
    assert!(plan(t(0), None, &s).is_err());
    let mut s = short();
    s.cert_validity = Duration::ZERO;
    assert!(plan(t(0), None, &s).is_err());
    // Margins: validate() refuses, plan() still works.
    let s = settings(90, 300, 50);
    assert!(s.validate().is_err());
    assert!(plan(t(0), None, &s).is_ok());
    let s = settings(30, 300, 10);
    assert!(s.validate().is_err());
    // IP addresses alone are enough.
    let mut s = short();
    s.dns_names.clear();
    assert!(s.validate().is_ok());
}

/// What a long life looks like, one second at a time: at every step the served certificate must
/// verify for everyone involved, including those that lag by up to `propagation` (the API server's
/// caBundle, replicas that have not reloaded the serving certificate yet).
fn simulate(s: &CertSettings, seconds: i64) -> Vec<(i64, &'static str)> {
    let p = i64::try_from(s.propagation.as_secs()).expect("small");
    let mut history: Vec<(i64, Material)> = vec![(0, create(t(0), s))];
    let mut writes = vec![(0, reason::CREATED)];
    let mut last_next_check = next_check(t(0), &history[0].1, s);
    for now in 1..=seconds {
        let current = &history.last().expect("history").1;
        if let Plan::Write { material, reason } = plan(t(now), Some(current), s).expect("plan") {
            // next_check (asked one second earlier) must not have slept past this.
            assert!(
                last_next_check <= Duration::from_secs(1),
                "at {now} ({reason}): next_check said {last_next_check:?}"
            );
            history.push((now, material));
            writes.push((now, reason));
        }
        let current = &history.last().expect("history").1;
        last_next_check = next_check(t(now), current, s);
        assert!(!last_next_check.is_zero(), "at {now}: something still due");

        // Never more than two CAs.
        assert!(bundle(current).len() <= 2, "at {now}");
        // What is served verifies against what is published.
        assert_verifies(current, t(now));
        // The state as of `propagation` ago (after the first `propagation`).
        if now >= p {
            let lagging = &history
                .iter()
                .rev()
                .find(|(at, _)| *at <= now - p)
                .expect("older state")
                .1;
            // The API server still trusts the bundle of then: it must accept what is served now.
            if let Err(e) = verify(&lagging.ca_bundle_pem, &current.cert_pem, t(now)) {
                panic!("at {now}: the lagging API server rejects the new certificate: {e}");
            }
            // A replica still serves the certificate of then: the current bundle must accept it.
            if let Err(e) = verify(&current.ca_bundle_pem, &lagging.cert_pem, t(now)) {
                panic!("at {now}: a lagging replica's certificate is rejected: {e}");
            }
        }
    }
    writes
}

/// The same life, but sleeping exactly as long as `next_check` says: the same writes happen at
/// the same times.
fn simulate_sleeping(s: &CertSettings, seconds: i64) -> Vec<(i64, &'static str)> {
    let mut m = create(t(0), s);
    let mut writes = vec![(0, reason::CREATED)];
    let mut now = t(0);
    loop {
        now = now.checked_add(next_check(now, &m, s)).expect("in range");
        if now > t(seconds) {
            return writes;
        }
        if let Plan::Write { material, reason } = plan(now, Some(&m), s).expect("plan") {
            m = material;
            writes.push((now.as_second() - T0, reason));
        }
    }
}

#[test]
fn a_long_life_always_chains_to_the_bundle() {
    for s in [
        short(),
        settings(90, 270, 10), // CA and serving renewals coincide
        settings(90, 120, 10), // serving certificates cut to the CA's life
        settings(45, 600, 14), // propagation close to a third of the serving life
        settings(90, 90, 14),  // equal validities
    ] {
        let writes = simulate(&s, 1500);
        let rotations = writes
            .iter()
            .filter(|(_, r)| *r == reason::CA_EXPIRES_SOON)
            .count();
        assert!(rotations >= 2, "{s:?}: {writes:?}");
        for (_, r) in &writes {
            assert!(
                ![
                    reason::UNREADABLE,
                    reason::CA_EXPIRED,
                    reason::SERVING_EXPIRED,
                    reason::SERVING_UNTRUSTED
                ]
                .contains(r),
                "{s:?}: {writes:?}"
            );
        }
        assert_eq!(simulate_sleeping(&s, 1500), writes, "{s:?}");
    }
}
