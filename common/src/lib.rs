//! What the control plane (`server/`) and the fleet services (`fleet/`) both need, kept in one
//! place instead of copied: secrets sealed at rest ([`secrets`]), the key files they and
//! other generated secrets live in ([`keyfile`]), and, with the `db` feature, the connection to
//! SQLite or PostgreSQL ([`db`]); random bearer tokens and their stored hashes ([`tokens`]); and free loopback ports for
//! tests ([`ports`]).

#[cfg(feature = "db")]
pub mod db;
pub mod keyfile;
pub mod ports;
pub mod secrets;
pub mod tokens;
