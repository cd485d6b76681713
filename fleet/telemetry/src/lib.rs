//! `fleet-telemetry`: the service connected bikes talk to. So far it holds the fleet's
//! certificate authority ([`pki`]) and the registry of bikes and their certificates
//! ([`registry`]); the ingest, stores and API build on them.

pub mod crl;
pub mod fleet_state;
pub mod ingest;
pub mod packet;
pub mod pki;
pub mod registry;
pub mod store;
pub mod upkeep;

/// Makes aws-lc-rs the process's TLS crypto provider (the build links ring too, through
/// dependencies, so rustls cannot pick one by itself). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
