//! What the control plane (`server/`) and the fleet services (`fleet/`) both need, kept in one
//! place instead of copied:
//!
//! - error bodies as problem+json ([`problem`], always; rendered as responses with `http`);
//! - with `crypto` (the default): secrets sealed at rest ([`secrets`]), random bearer tokens and
//!   their stored hashes ([`tokens`]);
//! - the key files secrets live in ([`keyfile`]) and free loopback ports for tests ([`ports`]);
//! - with `db`: the connection to SQLite or PostgreSQL ([`db`]);
//! - with `config`: a TOML file under environment variables ([`config`]);
//! - with `http`: Server-Sent Events, request metrics, logs and graceful shutdown ([`http`]).

#[cfg(feature = "config")]
pub mod config;
#[cfg(feature = "db")]
pub mod db;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "crypto")]
pub mod keyfile;
pub mod ports;
pub mod problem;
#[cfg(feature = "crypto")]
pub mod secrets;
#[cfg(feature = "crypto")]
pub mod tokens;
