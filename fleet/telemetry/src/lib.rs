//! `fleet-telemetry`: the service connected bikes talk to. This first part holds the fleet's
//! certificate authority ([`pki`]); the registry, ingest, stores and API build on it.

pub mod pki;
