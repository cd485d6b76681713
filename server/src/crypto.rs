//! Secrets at rest: the shared keyring ([`fleetplane_common::secrets`]) under this server's
//! master keys, `FLEETPLANE_MASTER_KEY` or else `<data dir>/master.key`.

pub use fleetplane_common::secrets::{KeySettings, KeySource, Keyring, OpenError, Sealed, add_generated_key};

use crate::config::Config;

/// The key file in the data directory, used when `FLEETPLANE_MASTER_KEY` is not set.
pub const KEY_FILE: &str = "master.key";

/// The configured keyring.
pub fn keyring(config: &Config) -> anyhow::Result<Keyring> {
    Keyring::load(&KeySettings {
        variable: "FLEETPLANE_MASTER_KEY",
        keys: config.master_keys.as_ref().map(|keys| keys.expose()),
        file: config.data_dir.join(KEY_FILE),
    })
}
