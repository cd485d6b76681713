//! `fleet-telemetry`: the service connected bikes talk to. It holds the fleet's certificate
//! authority ([`pki`]) and the registry of bikes and their certificates ([`registry`]); takes
//! their packets from the broker ([`ingest`], [`broker`] when embedded), checks them
//! ([`packet`]) and stores them ([`store`]); and serves the fleet over HTTP ([`api`]).
//! [`serve`] starts it all from a [`config::Config`].

pub mod api;
pub mod broker;
pub mod config;
pub mod crl;
pub mod fleet_state;
pub mod ingest;
pub mod packet;
pub mod pki;
pub mod registry;
pub mod serve;
pub mod store;
pub mod tls;
pub mod upkeep;

/// Makes aws-lc-rs the process's TLS crypto provider (the build links ring too, through
/// dependencies, so rustls cannot pick one by itself). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
