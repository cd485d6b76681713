//! TLS set-up from PEM, shared by the ingest's connection to the broker and the embedded
//! broker's front, which reaches rumqttd the same way.

use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

/// The certificates of `ca_pem`, to trust; at least one.
pub fn roots(ca_pem: &[u8]) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.context("the CA chain is not PEM")?).context("a CA certificate is not valid")?;
    }
    if roots.is_empty() {
        bail!("the CA chain holds no certificate");
    }
    Ok(roots)
}

/// A certificate chain and its key, from PEM.
pub fn identity(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("the certificate is not PEM")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).context("the key is not PEM")?;
    Ok((chain, key))
}

/// A client that trusts `ca_pem` and presents `cert_pem` with `key_pem`.
pub fn client_config(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<Arc<ClientConfig>> {
    let (chain, key) = identity(cert_pem, key_pem)?;
    let config = ClientConfig::builder()
        .with_root_certificates(roots(ca_pem)?)
        .with_client_auth_cert(chain, key)
        .context("the certificate and key do not go together")?;
    Ok(Arc::new(config))
}
