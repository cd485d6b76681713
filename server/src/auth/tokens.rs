//! Random bearer secrets (API tokens, email links) and the hashes stored in their place: the
//! shared [`fleetplane_common::tokens`], and the prefix of Fleetplane's personal API tokens.

pub use fleetplane_common::tokens::{generate, hash};

/// Personal API tokens start with this, so they are recognisable in logs and secret scanners.
pub const API_TOKEN_PREFIX: &str = "fpat_";
