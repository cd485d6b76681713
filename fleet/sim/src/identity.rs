//! A bike's key and the certificate request for it, as a bike makes them in the factory: the
//! private key is made here and never leaves; the fleet CA sees only the CSR.

use fleet_proto::DeviceId;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

/// A new key (ECDSA P-256) and a CSR for it whose subject CN is the device id.
pub struct KeyAndCsr {
    pub key_pem: String,
    pub csr_pem: String,
}

pub fn key_and_csr(device: &DeviceId) -> Result<KeyAndCsr, rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, device.as_str());
    params.distinguished_name = subject;
    let csr_pem = params.serialize_request(&key)?.pem()?;
    Ok(KeyAndCsr { key_pem: key.serialize_pem(), csr_pem })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bike_gets_its_own_key_and_a_pem_csr() {
        let device = DeviceId::parse("bike-1").expect("id");
        let (a, b) = (key_and_csr(&device).expect("first"), key_and_csr(&device).expect("second"));
        assert!(a.csr_pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"), "{}", a.csr_pem);
        assert!(a.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{}", a.key_pem);
        assert_ne!(a.key_pem, b.key_pem);
    }
}
