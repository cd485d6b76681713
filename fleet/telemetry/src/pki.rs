//! The fleet's certificate authority: a root, an issuing CA under it, and the bikes'
//! certificates it issues and revokes.
//!
//! On first start the service creates both CAs ([`Authority::create`]); their keys are kept only
//! sealed under the master keys ([`StoredAuthority`]), as the control plane keeps its secrets.
//! A bike's certificate is issued from its CSR (the factory flow: the key never leaves the bike)
//! or generated here with its key, which is returned once. Every certificate is X.509 v3 with the
//! device id as CN, the client-auth EKU and a random serial; [`Authority::crl`] lists the revoked
//! ones for the broker.
//!
//! Keys are ECDSA P-256: small, fast on a bike's MCU, and accepted by mosquitto and rustls.

use std::time::{Duration, SystemTime};

use fleet_proto::DeviceId;
use fleetplane_common::secrets::{Keyring, Sealed};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertificateSigningRequestParams,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SerialNumber,
};
use time::OffsetDateTime;

/// How long the root CA is valid.
const ROOT_VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// How long the issuing CA is valid: a bike certificate never outlives it.
const ISSUING_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// The default validity of a bike's certificate.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long a CRL is good for: it is issued again at every revocation, and before this ends.
pub const CRL_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
/// A certificate starts this long before it is issued, so that a bike whose clock is a little
/// behind accepts it.
const BACKDATE: Duration = Duration::from_secs(3600);
/// The longest CSR accepted, in bytes of PEM.
pub const MAX_CSR: usize = 16 * 1024;

/// What sealed keys are bound to: a sealed CA key opens only as that key.
const ROOT_KEY_CONTEXT: &[u8] = b"fleet-telemetry/ca/root";
const ISSUING_KEY_CONTEXT: &[u8] = b"fleet-telemetry/ca/issuing";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The CSR is not PEM, does not parse, or is not signed by its own key.
    #[error("the CSR is not a valid PKCS#10 request: {0}")]
    InvalidCsr(String),
    #[error("the CSR is larger than {MAX_CSR} bytes")]
    CsrTooLarge,
    #[error("the validity must be between 1 hour and the issuing CA's remaining lifetime")]
    InvalidValidity,
    /// The stored authority does not open under the configured master keys.
    #[error("the fleet CA's keys cannot be opened: {0}")]
    Sealed(String),
    #[error("certificate generation failed: {0}")]
    Internal(String),
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        Self::Internal(e.to_string())
    }
}

/// The CA as it is stored: certificates in the clear, keys sealed.
#[derive(Clone, Debug)]
pub struct StoredAuthority {
    pub root_cert_pem: String,
    pub root_key: Sealed,
    pub issuing_cert_pem: String,
    pub issuing_key: Sealed,
}

/// The fleet CA, ready to issue and revoke.
pub struct Authority {
    root_cert_pem: String,
    issuing_cert_pem: String,
    issuing: Issuer<'static, KeyPair>,
    issuing_not_after: SystemTime,
}

/// A certificate the CA issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// The serial, in lower-case hex: what revocation names.
    pub serial: String,
    pub cert_pem: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// A certificate with the key generated for it, handed out once.
pub struct Bundle {
    pub issued: Issued,
    pub key_pem: String,
    /// The issuing CA then the root: what the bike needs to present and to trust.
    pub chain_pem: String,
}

/// Why a certificate was revoked (RFC 5280's reason codes that apply to a bike).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Unspecified,
    KeyCompromise,
    /// The bike was sold, scrapped or stolen: the certificate is no longer its owner's.
    AffiliationChanged,
    Superseded,
    /// The bike was decommissioned.
    CessationOfOperation,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Reason::Unspecified,
        Reason::KeyCompromise,
        Reason::AffiliationChanged,
        Reason::Superseded,
        Reason::CessationOfOperation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unspecified => "unspecified",
            Reason::KeyCompromise => "key_compromise",
            Reason::AffiliationChanged => "affiliation_changed",
            Reason::Superseded => "superseded",
            Reason::CessationOfOperation => "cessation_of_operation",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == text)
    }

    fn code(self) -> RevocationReason {
        match self {
            Reason::Unspecified => RevocationReason::Unspecified,
            Reason::KeyCompromise => RevocationReason::KeyCompromise,
            Reason::AffiliationChanged => RevocationReason::AffiliationChanged,
            Reason::Superseded => RevocationReason::Superseded,
            Reason::CessationOfOperation => RevocationReason::CessationOfOperation,
        }
    }
}

/// A revoked certificate, as the CRL lists it.
#[derive(Clone, Debug)]
pub struct Revoked {
    pub serial: String,
    pub at: SystemTime,
    pub reason: Reason,
}

fn name(common_name: &str, organization: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, organization);
    name.push(DnType::CommonName, common_name);
    name
}

fn ca_params(
    common_name: &str,
    constraints: BasicConstraints,
    now: SystemTime,
    validity: Duration,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name, "Fleet");
    params.is_ca = IsCa::Ca(constraints);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = OffsetDateTime::from(now - BACKDATE);
    params.not_after = OffsetDateTime::from(now + validity);
    params.serial_number = Some(random_serial());
    params.key_identifier_method = KeyIdMethod::Sha256;
    params
}

/// 16 random bytes, the first bit clear so that the serial is positive (RFC 5280: at most 20
/// octets, positive).
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    // A leading zero byte would be dropped by DER; keep the length constant.
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(2) || text.len() > 40 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

impl Authority {
    /// A new root and issuing CA, and their stored form (keys sealed under `keyring`).
    pub fn create(keyring: &Keyring, now: SystemTime) -> Result<(Self, StoredAuthority), PkiError> {
        let root_key = KeyPair::generate()?;
        let root_params = ca_params("Fleet Root CA", BasicConstraints::Constrained(1), now, ROOT_VALIDITY);
        let root_cert = root_params.self_signed(&root_key)?;
        let root = Issuer::new(root_params, &root_key);

        let issuing_key = KeyPair::generate()?;
        let mut issuing_params = ca_params("Fleet Issuing CA", BasicConstraints::Constrained(0), now, ISSUING_VALIDITY);
        // Names the root's key: strict verifiers (OpenSSL's -x509_strict) require it below a root.
        issuing_params.use_authority_key_identifier_extension = true;
        let issuing_cert = issuing_params.signed_by(&issuing_key, &root)?;

        let seal = |key: &KeyPair, context| {
            keyring.seal(&key.serialize_der(), context).map_err(|e| PkiError::Sealed(format!("{e:#}")))
        };
        let stored = StoredAuthority {
            root_cert_pem: root_cert.pem(),
            root_key: seal(&root_key, ROOT_KEY_CONTEXT)?,
            issuing_cert_pem: issuing_cert.pem(),
            issuing_key: seal(&issuing_key, ISSUING_KEY_CONTEXT)?,
        };
        let authority = Self::open(&stored, keyring)?;
        Ok((authority, stored))
    }

    /// The stored CA, its keys opened with `keyring`.
    pub fn open(stored: &StoredAuthority, keyring: &Keyring) -> Result<Self, PkiError> {
        let open = |sealed: &Sealed, context| -> Result<KeyPair, PkiError> {
            let der = keyring.open(sealed, context).map_err(|e| PkiError::Sealed(e.to_string()))?;
            KeyPair::try_from(der.as_slice()).map_err(|e| PkiError::Sealed(format!("a CA key does not parse: {e}")))
        };
        // Only opened to know it still opens: the root signs nothing until the issuing CA is renewed.
        open(&stored.root_key, ROOT_KEY_CONTEXT)?;
        let issuing_key = open(&stored.issuing_key, ISSUING_KEY_CONTEXT)?;
        let issuing_not_after = not_after(&stored.issuing_cert_pem)?;
        let issuing = Issuer::from_ca_cert_pem(&stored.issuing_cert_pem, issuing_key)?;
        Ok(Self {
            root_cert_pem: stored.root_cert_pem.clone(),
            issuing_cert_pem: stored.issuing_cert_pem.clone(),
            issuing,
            issuing_not_after,
        })
    }

    /// The issuing CA then the root, in PEM: `ca.pem`, what brokers and bikes trust.
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.issuing_cert_pem, self.root_cert_pem)
    }

    pub fn root_cert_pem(&self) -> &str {
        &self.root_cert_pem
    }

    /// The issuing CA alone: what signs every bike's certificate.
    pub fn issuing_cert_pem(&self) -> &str {
        &self.issuing_cert_pem
    }

    fn leaf_params(
        &self,
        device: &DeviceId,
        now: SystemTime,
        validity: Duration,
    ) -> Result<CertificateParams, PkiError> {
        let not_after = now + validity;
        if validity < Duration::from_secs(3600) || not_after > self.issuing_not_after {
            return Err(PkiError::InvalidValidity);
        }
        let mut params = CertificateParams::default();
        // CN only: brokers name the client by it (mosquitto's `use_identity_as_username`), and
        // rumqttd would take an O as a tenant and move the bike's topics under its prefix.
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, device.as_str());
        params.distinguished_name = subject;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = OffsetDateTime::from(now - BACKDATE);
        params.not_after = OffsetDateTime::from(not_after);
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        Ok(params)
    }

    fn issued(params: &CertificateParams, cert_pem: String) -> Issued {
        let serial = params.serial_number.as_ref().map(|s| hex(&s.to_bytes())).unwrap_or_default();
        Issued { serial, cert_pem, not_before: params.not_before.into(), not_after: params.not_after.into() }
    }

    /// A certificate for `device` for the key of its CSR. Only the CSR's key is used: its
    /// subject, extensions and any CA request are ignored, so a CSR cannot ask for more.
    pub fn issue_from_csr(
        &self,
        device: &DeviceId,
        csr_pem: &str,
        now: SystemTime,
        validity: Duration,
    ) -> Result<Issued, PkiError> {
        if csr_pem.len() > MAX_CSR {
            return Err(PkiError::CsrTooLarge);
        }
        let mut csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| PkiError::InvalidCsr(e.to_string()))?;
        csr.params = self.leaf_params(device, now, validity)?;
        let cert = csr.signed_by(&self.issuing)?;
        Ok(Self::issued(&csr.params, cert.pem()))
    }

    /// A certificate for `device` with a key generated for it.
    pub fn issue_generated(&self, device: &DeviceId, now: SystemTime, validity: Duration) -> Result<Bundle, PkiError> {
        let key = KeyPair::generate()?;
        let params = self.leaf_params(device, now, validity)?;
        let cert = params.signed_by(&key, &self.issuing)?;
        Ok(Bundle {
            issued: Self::issued(&params, cert.pem()),
            key_pem: key.serialize_pem(),
            chain_pem: self.chain_pem(),
        })
    }

    /// A TLS server certificate for the broker, for the DNS names and IP addresses in
    /// `names`, with a key generated for it. Bikes trust it through [`Self::chain_pem`].
    pub fn issue_server(&self, names: &[&str], now: SystemTime, validity: Duration) -> Result<Bundle, PkiError> {
        let first = names.first().ok_or_else(|| PkiError::Internal("a server certificate names a host".into()))?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>())?;
        let leaf = self.leaf_params(&DeviceId::parse("server").expect("a valid CN"), now, validity)?;
        params.distinguished_name = name(first, "Fleet services");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = leaf.not_before;
        params.not_after = leaf.not_after;
        params.serial_number = leaf.serial_number;
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params.signed_by(&key, &self.issuing)?;
        Ok(Bundle {
            issued: Self::issued(&params, cert.pem()),
            key_pem: key.serialize_pem(),
            chain_pem: self.chain_pem(),
        })
    }

    /// The CRL of the issuing CA listing `revoked`, numbered `number` (which must grow with
    /// each CRL issued), valid from `now` for [`CRL_VALIDITY`].
    pub fn crl(&self, revoked: &[Revoked], number: u64, now: SystemTime) -> Result<String, PkiError> {
        let revoked_certs = revoked
            .iter()
            .map(|revoked| {
                let serial = unhex(&revoked.serial).ok_or_else(|| {
                    PkiError::Internal(format!("`{}` is not a serial this CA issued", revoked.serial))
                })?;
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&serial),
                    revocation_time: OffsetDateTime::from(revoked.at),
                    reason_code: Some(revoked.reason.code()),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, PkiError>>()?;
        let params = CertificateRevocationListParams {
            this_update: OffsetDateTime::from(now),
            next_update: OffsetDateTime::from(now + CRL_VALIDITY),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuing)?.pem()?)
    }
}

/// When the PEM certificate `cert_pem` expires.
fn not_after(cert_pem: &str) -> Result<SystemTime, PkiError> {
    let unreadable = || PkiError::Sealed("the stored issuing CA certificate does not parse".into());
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|_| unreadable())?;
    let cert = pem.parse_x509().map_err(|_| unreadable())?;
    let seconds = u64::try_from(cert.validity().not_after.timestamp()).map_err(|_| unreadable())?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use std::{path::Path, process::Command};

    use fleetplane_common::secrets::KeySettings;
    use x509_parser::{certificate::X509Certificate, prelude::FromDer};

    use super::*;

    fn keyring(byte: u8) -> Keyring {
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
        let settings = KeySettings { variable: "TEST_MASTER_KEY", keys: Some(&key), file: "/nonexistent".into() };
        Keyring::load(&settings).expect("keyring")
    }

    fn device(id: &str) -> DeviceId {
        DeviceId::parse(id).expect("device id")
    }

    fn der(pem: &str) -> Vec<u8> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
        pem.contents
    }

    fn with_cert<T>(pem: &str, read: impl FnOnce(&X509Certificate<'_>) -> T) -> T {
        let der = der(pem);
        let (_, cert) = X509Certificate::from_der(&der).expect("X.509");
        read(&cert)
    }

    fn common_name(cert: &X509Certificate<'_>) -> String {
        cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).expect("CN").to_owned()
    }

    #[test]
    fn the_authority_reopens_from_its_stored_form_and_its_keys_are_sealed() {
        let ring = keyring(1);
        let now = SystemTime::now();
        let (created, stored) = Authority::create(&ring, now).expect("created");
        let reopened = Authority::open(&stored, &ring).expect("reopened");
        assert_eq!(reopened.chain_pem(), created.chain_pem());
        reopened.issue_generated(&device("bike-1"), now, DEFAULT_VALIDITY).expect("the reopened CA issues");

        assert!(matches!(Authority::open(&stored, &keyring(2)), Err(PkiError::Sealed(_))), "another master key");
        let swapped = StoredAuthority { issuing_key: stored.root_key.clone(), ..stored.clone() };
        assert!(matches!(Authority::open(&swapped, &ring), Err(PkiError::Sealed(_))), "a key sealed as another");
        // Sealed: the key's bytes appear nowhere in the stored form.
        let key = ring.open(&stored.issuing_key, ISSUING_KEY_CONTEXT).expect("opens");
        let stored_bytes = [&stored.root_key.bytes[..], &stored.issuing_key.bytes[..]].concat();
        assert!(!stored_bytes.windows(32).any(|w| key.windows(32).any(|k| k == w)), "a key is stored in the clear");
    }

    #[test]
    fn a_generated_certificate_is_v3_for_client_auth_with_the_device_as_cn() {
        let now = SystemTime::now();
        let (authority, _) = Authority::create(&keyring(1), now).expect("created");
        let bundle = authority.issue_generated(&device("bike-0042"), now, DEFAULT_VALIDITY).expect("issued");
        with_cert(&bundle.issued.cert_pem, |cert| {
            assert_eq!(cert.version(), x509_parser::x509::X509Version::V3);
            assert_eq!(common_name(cert), "bike-0042");
            let eku = cert.extended_key_usage().expect("EKU parses").expect("EKU present").value;
            assert!(eku.client_auth && !eku.server_auth && !eku.any);
            assert!(!cert.is_ca());
            assert_eq!(hex(cert.raw_serial()), bundle.issued.serial);
            let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
            assert_eq!(u64::try_from(lifetime).expect("positive"), (DEFAULT_VALIDITY + BACKDATE).as_secs());
        });
        assert!(bundle.key_pem.contains("PRIVATE KEY"));
        assert_eq!(bundle.chain_pem, authority.chain_pem());
        assert_eq!(bundle.chain_pem.matches("BEGIN CERTIFICATE").count(), 2);
    }

    #[test]
    fn a_server_certificate_is_for_server_auth_with_its_names() {
        let now = SystemTime::now();
        let (authority, _) = Authority::create(&keyring(1), now).expect("created");
        let bundle = authority.issue_server(&["localhost", "127.0.0.1"], now, DEFAULT_VALIDITY).expect("issued");
        with_cert(&bundle.issued.cert_pem, |cert| {
            assert_eq!(common_name(cert), "localhost");
            let eku = cert.extended_key_usage().expect("EKU parses").expect("EKU present").value;
            assert!(eku.server_auth && !eku.client_auth);
            let names = cert.subject_alternative_name().expect("SAN parses").expect("SAN present").value;
            let names: Vec<String> = names.general_names.iter().map(ToString::to_string).collect();
            assert_eq!(names, ["DNSName(localhost)", "IPAddress(7f:00:00:01)"], "an address is an IP SAN");
        });
        assert!(matches!(authority.issue_server(&[], now, DEFAULT_VALIDITY), Err(PkiError::Internal(_))));
    }

    #[test]
    fn serials_are_random_and_distinct() {
        let now = SystemTime::now();
        let (authority, _) = Authority::create(&keyring(1), now).expect("created");
        let mut serials: Vec<String> = (0..20)
            .map(|_| authority.issue_generated(&device("bike-1"), now, DEFAULT_VALIDITY).expect("issued").issued.serial)
            .collect();
        assert!(serials.iter().all(|s| s.len() == 32), "{serials:?}");
        serials.sort();
        serials.dedup();
        assert_eq!(serials.len(), 20);
    }

    #[test]
    fn a_csr_gets_a_certificate_for_its_key_and_nothing_it_asked_for_besides() {
        let now = SystemTime::now();
        let (authority, _) = Authority::create(&keyring(1), now).expect("created");
        let key = KeyPair::generate().expect("bike key");
        let mut asked = CertificateParams::new(vec!["evil.example".to_owned()]).expect("params");
        asked.distinguished_name = name("someone-else", "Evil");
        asked.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let csr = asked.serialize_request(&key).expect("CSR").pem().expect("PEM");

        let issued = authority.issue_from_csr(&device("bike-7"), &csr, now, DEFAULT_VALIDITY).expect("issued");
        with_cert(&issued.cert_pem, |cert| {
            assert_eq!(common_name(cert), "bike-7");
            assert!(!cert.is_ca());
            assert!(cert.subject_alternative_name().expect("parses").is_none());
            assert_eq!(cert.public_key().subject_public_key.data.as_ref(), key.public_key_raw());
        });
    }

    #[test]
    fn bad_csrs_and_validities_are_refused() {
        let now = SystemTime::now();
        let (authority, _) = Authority::create(&keyring(1), now).expect("created");
        let bike = device("bike-7");
        for garbage in
            ["", "not a CSR", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"]
        {
            let refused = authority.issue_from_csr(&bike, garbage, now, DEFAULT_VALIDITY);
            assert!(matches!(refused, Err(PkiError::InvalidCsr(_))), "{garbage:?}: {refused:?}");
        }
        // A CSR whose signature is not its key's.
        let key = KeyPair::generate().expect("key");
        let csr = CertificateParams::default().serialize_request(&key).expect("CSR");
        let mut der = csr.der().to_vec();
        let last = der.len() - 1;
        der[last] ^= 0x55;
        let tampered = pem_of("CERTIFICATE REQUEST", &der);
        assert!(matches!(
            authority.issue_from_csr(&bike, &tampered, now, DEFAULT_VALIDITY),
            Err(PkiError::InvalidCsr(_))
        ));
        let huge = "x".repeat(MAX_CSR + 1);
        assert!(matches!(authority.issue_from_csr(&bike, &huge, now, DEFAULT_VALIDITY), Err(PkiError::CsrTooLarge)));

        for validity in [Duration::from_secs(60), ISSUING_VALIDITY + Duration::from_secs(86_400)] {
            let refused = authority.issue_generated(&bike, now, validity).err();
            assert!(matches!(refused, Some(PkiError::InvalidValidity)), "{validity:?}");
        }
    }

    #[test]
    fn a_crl_lists_only_serials_this_ca_could_have_issued() {
        let now = SystemTime::now();
        let (authority, _) = Authority::create(&keyring(1), now).expect("created");
        for bad in ["", "abc", "zz", &"ab".repeat(21)] {
            let revoked = Revoked { serial: bad.to_owned(), at: now, reason: Reason::Unspecified };
            assert!(matches!(authority.crl(&[revoked], 1, now), Err(PkiError::Internal(_))), "{bad:?}");
        }
        assert_eq!(unhex("00ff10"), Some(vec![0, 255, 16]));
    }

    #[test]
    fn reasons_are_named_both_ways() {
        for reason in Reason::ALL {
            assert_eq!(Reason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(Reason::parse("stolen"), None);
    }

    fn pem_of(label: &str, der: &[u8]) -> String {
        use base64::Engine;
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("ascii")).collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
    }

    /// `openssl verify` of `cert` as a TLS client certificate under the fleet's chain, with
    /// `crl` checked when given: its verdict and what it printed.
    fn openssl_verify(dir: &Path, authority: &Authority, cert: &str, crl: Option<&str>) -> (bool, String) {
        std::fs::write(dir.join("root.pem"), authority.root_cert_pem()).expect("root");
        std::fs::write(dir.join("issuing.pem"), &authority.issuing_cert_pem).expect("issuing");
        std::fs::write(dir.join("bike.pem"), cert).expect("cert");
        let mut command = Command::new("openssl");
        command.current_dir(dir).args(["verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", "root.pem"]);
        command.args(["-untrusted", "issuing.pem"]);
        if let Some(crl) = crl {
            std::fs::write(dir.join("crl.pem"), crl).expect("crl");
            command.args(["-crl_check", "-CRLfile", "crl.pem"]);
        }
        let output = command.arg("bike.pem").output().expect("openssl (apt-get install openssl)");
        let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), printed)
    }

    #[test]
    #[ignore = "needs openssl: run `cargo xtask test`"]
    fn openssl_accepts_the_certificates_and_refuses_them_once_revoked() {
        let dir = tempfile::tempdir().expect("dir");
        let now = SystemTime::now();
        let (authority, _) = Authority::create(&keyring(1), now).expect("created");
        let bike = authority.issue_generated(&device("bike-1"), now, DEFAULT_VALIDITY).expect("issued").issued;
        let other = authority.issue_generated(&device("bike-2"), now, DEFAULT_VALIDITY).expect("issued").issued;

        let (ok, printed) = openssl_verify(dir.path(), &authority, &bike.cert_pem, None);
        assert!(ok, "{printed}");
        let nobody_revoked = authority.crl(&[], 1, now).expect("CRL");
        let (ok, printed) = openssl_verify(dir.path(), &authority, &bike.cert_pem, Some(&nobody_revoked));
        assert!(ok, "an empty CRL: {printed}");

        let revoked = Revoked { serial: bike.serial.clone(), at: now, reason: Reason::KeyCompromise };
        let crl = authority.crl(&[revoked], 2, now).expect("CRL");
        let (ok, printed) = openssl_verify(dir.path(), &authority, &bike.cert_pem, Some(&crl));
        assert!(!ok && printed.contains("certificate revoked"), "{printed}");
        let (ok, printed) = openssl_verify(dir.path(), &authority, &other.cert_pem, Some(&crl));
        assert!(ok, "another bike's certificate stays good: {printed}");

        // A certificate from another fleet's CA is not trusted.
        let (stranger, _) = Authority::create(&keyring(1), now).expect("another CA");
        let foreign = stranger.issue_generated(&device("bike-1"), now, DEFAULT_VALIDITY).expect("issued").issued;
        let (ok, _) = openssl_verify(dir.path(), &authority, &foreign.cert_pem, None);
        assert!(!ok, "a stranger's certificate passed");
    }
}
