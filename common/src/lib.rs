//! What the control plane (`server/`) and the fleet services (`fleet/`) both need, kept in one
//! place instead of copied: secrets sealed at rest ([`secrets`]) and the key files they and
//! other generated secrets live in ([`keyfile`]).

pub mod keyfile;
pub mod secrets;
