//! `fleet-telemetry`: the service connected bikes talk to. So far it holds the fleet's
//! certificate authority ([`pki`]) and the registry of bikes and their certificates
//! ([`registry`]); the ingest, stores and API build on them.

pub mod packet;
pub mod pki;
pub mod registry;
pub mod store;
