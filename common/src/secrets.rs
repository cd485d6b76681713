//! Secrets at rest: AES-256-GCM under a keyring of master keys.
//!
//! Each ciphertext is stored with the id of the key that sealed it, so keys can change: the
//! first key of the ring seals, every key of the ring opens, and a service's key rotation
//! re-seals everything under the first. Keys come from an environment variable (base64 keys,
//! comma-separated, newest first: `FLEETPLANE_MASTER_KEY` for the control plane) or else from
//! a key file in the data directory (one base64 key a line, newest first), generated with mode
//! 0600 on first start. The key id is derived from the key itself, so a mistyped key can never
//! be mistaken for the right one.

use std::{
    fmt, fs,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::{Engine, engine::general_purpose::STANDARD};
use sha2::{Digest, Sha256};

use crate::keyfile;

const KEY_LEN: usize = 32;

/// Where a service's master keys come from.
#[derive(Clone, Debug)]
pub struct KeySettings<'a> {
    /// The environment variable that may hold them, named in messages.
    pub variable: &'static str,
    /// Its value, if it is set.
    pub keys: Option<&'a str>,
    /// The key file used when it is not (created with one fresh key).
    pub file: PathBuf,
}

struct MasterKey {
    id: String,
    key: RandomizedNonceKey,
}

/// Sealed bytes: `nonce || ciphertext || tag`, and the id of the key that sealed them.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed {{ key_id: {}, {} bytes }}", self.key_id, self.bytes.len())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("the secret was sealed with key {0}, which is not among the configured master keys")]
    UnknownKey(String),
    #[error("the secret does not decrypt under key {0}: it was altered, or belongs to another record")]
    Corrupt(String),
}

pub struct Keyring {
    keys: Vec<MasterKey>,
    /// Where the keys came from, for messages and for `rotate-key --generate`.
    source: KeySource,
}

#[derive(Clone, Debug)]
pub enum KeySource {
    Environment,
    File(PathBuf),
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).field("source", &self.source).finish()
    }
}

/// A key's id: the start of its SHA-256, in hex. Reveals nothing usable about the key.
fn key_id(key: &[u8]) -> String {
    Sha256::digest(key).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn decode_key(text: &str, origin: &str) -> anyhow::Result<Vec<u8>> {
    let key = STANDARD.decode(text.trim()).with_context(|| format!("{origin}: a master key is not valid base64"))?;
    if key.len() != KEY_LEN {
        bail!("{origin}: a master key must be {KEY_LEN} bytes (base64 of 32 random bytes), this one is {}", key.len());
    }
    Ok(key)
}

impl Keyring {
    /// The configured keyring: the environment's keys, or the data directory's key file
    /// (created with one fresh key if it does not exist).
    pub fn load(settings: &KeySettings<'_>) -> anyhow::Result<Self> {
        if let Some(keys) = settings.keys {
            let keys = keys
                .split(',')
                .filter(|k| !k.trim().is_empty())
                .map(|k| decode_key(k, settings.variable))
                .collect::<anyhow::Result<Vec<_>>>()?;
            return Self::from_keys(keys, KeySource::Environment);
        }
        let path = &settings.file;
        if !path.exists() {
            keyfile::load_or_create(path, KEY_LEN).context("creating the master key")?;
        }
        let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let keys = text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| decode_key(line, &path.display().to_string()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Self::from_keys(keys, KeySource::File(path.clone()))
    }

    fn from_keys(keys: Vec<Vec<u8>>, source: KeySource) -> anyhow::Result<Self> {
        if keys.is_empty() {
            bail!("no master key configured");
        }
        let keys = keys
            .iter()
            .map(|key| {
                let sealing = RandomizedNonceKey::new(&AES_256_GCM, key).map_err(|_| anyhow::anyhow!("bad AES key"))?;
                Ok(MasterKey { id: key_id(key), key: sealing })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { keys, source })
    }

    /// The id of the key that seals new secrets.
    pub fn primary_id(&self) -> &str {
        &self.keys[0].id
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// Encrypts `plaintext` under the primary key. `context` (a record's id, say) is
    /// authenticated but not stored: the ciphertext only opens for the same context, so it
    /// cannot be copied onto another record.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> anyhow::Result<Sealed> {
        let primary = &self.keys[0];
        let mut in_out = plaintext.to_vec();
        let nonce = primary
            .key
            .seal_in_place_append_tag(Aad::from(context), &mut in_out)
            .map_err(|_| anyhow::anyhow!("AES-GCM sealing failed"))?;
        let mut bytes = Vec::with_capacity(NONCE_LEN + in_out.len());
        bytes.extend_from_slice(nonce.as_ref());
        bytes.extend_from_slice(&in_out);
        Ok(Sealed { key_id: primary.id.clone(), bytes })
    }

    /// Decrypts `sealed`, which must have been sealed with the same `context`.
    pub fn open(&self, sealed: &Sealed, context: &[u8]) -> Result<Vec<u8>, OpenError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| OpenError::UnknownKey(sealed.key_id.clone()))?;
        let corrupt = || OpenError::Corrupt(sealed.key_id.clone());
        if sealed.bytes.len() < NONCE_LEN {
            return Err(corrupt());
        }
        let (nonce, ciphertext) = sealed.bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| corrupt())?;
        let mut in_out = ciphertext.to_vec();
        let plaintext = key.key.open_in_place(nonce, Aad::from(context), &mut in_out).map_err(|_| corrupt())?;
        Ok(plaintext.to_vec())
    }
}

/// Puts a newly generated key first in the key file, keeping the older keys after it so that
/// existing secrets still open until they are re-sealed. Returns the new key's id.
pub fn add_generated_key(path: &Path) -> anyhow::Result<String> {
    let existing = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let key: [u8; KEY_LEN] = rand::random();
    let contents = format!("{}\n{}", STANDARD.encode(key), existing.trim_start());
    let temporary = path.with_extension("key.new");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary).with_context(|| format!("writing {}", temporary.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    fs::rename(&temporary, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(key_id(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(keys: &[[u8; 32]]) -> Keyring {
        Keyring::from_keys(keys.iter().map(|k| k.to_vec()).collect(), KeySource::Environment).expect("ring")
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_context() {
        let keyring = ring(&[[1; 32]]);
        let sealed = keyring.seal(b"hunter2", b"record-1").expect("seal");
        assert!(!sealed.bytes.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(keyring.open(&sealed, b"record-1").expect("open"), b"hunter2");
        assert!(matches!(keyring.open(&sealed, b"record-2"), Err(OpenError::Corrupt(_))));

        let mut tampered = sealed.clone();
        let last = tampered.bytes.len() - 1;
        tampered.bytes[last] ^= 1;
        assert!(matches!(keyring.open(&tampered, b"record-1"), Err(OpenError::Corrupt(_))));
        assert!(matches!(ring(&[[2; 32]]).open(&sealed, b"record-1"), Err(OpenError::UnknownKey(_))));
        assert_ne!(keyring.seal(b"hunter2", b"record-1").expect("seal").bytes, sealed.bytes, "random nonces");
    }

    #[test]
    fn the_first_key_seals_and_every_key_opens() {
        let old = ring(&[[1; 32]]);
        let sealed_old = old.seal(b"s", b"c").expect("seal");
        let rotated = ring(&[[2; 32], [1; 32]]);
        assert_ne!(rotated.primary_id(), old.primary_id());
        assert_eq!(rotated.open(&sealed_old, b"c").expect("old secrets still open"), b"s");
        assert_eq!(rotated.seal(b"s", b"c").expect("seal").key_id, rotated.primary_id());
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let shown = format!("{:?}", ring(&[[7; 32]]));
        assert!(shown.contains(&key_id(&[7; 32])));
        assert!(!shown.contains(&STANDARD.encode([7u8; 32])));
    }

    #[test]
    fn keys_from_the_environment_come_newest_first_and_bad_ones_name_the_variable() {
        let (new, old) = (STANDARD.encode([2u8; 32]), STANDARD.encode([1u8; 32]));
        let keys = format!("{new}, {old},");
        let settings =
            KeySettings { variable: "TEST_MASTER_KEY", keys: Some(&keys), file: PathBuf::from("/nonexistent") };
        let ring = Keyring::load(&settings).expect("loaded");
        assert_eq!(ring.primary_id(), key_id(&[2; 32]));
        assert!(matches!(ring.source(), KeySource::Environment));
        let bad = KeySettings { keys: Some("short"), ..settings };
        assert!(Keyring::load(&bad).unwrap_err().to_string().contains("TEST_MASTER_KEY"));
    }

    #[test]
    fn bad_keys_are_explained() {
        assert!(decode_key("not base64!", "X").unwrap_err().to_string().contains("base64"));
        assert!(decode_key(&STANDARD.encode([1u8; 16]), "X").unwrap_err().to_string().contains("32 bytes"));
    }

    #[test]
    fn a_key_file_with_several_keys_loads_newest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = KeySettings { variable: "TEST_MASTER_KEY", keys: None, file: dir.path().join("master.key") };
        let first = Keyring::load(&settings).expect("created");
        let added = add_generated_key(&settings.file).expect("add");
        let reloaded = Keyring::load(&settings).expect("reloaded");
        assert_eq!(reloaded.primary_id(), added);
        let sealed = first.seal(b"s", b"c").expect("seal");
        assert_eq!(reloaded.open(&sealed, b"c").expect("old key still opens"), b"s");
    }

    #[test]
    fn a_generated_key_goes_first_and_keeps_the_old_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("master.key");
        keyfile::load_or_create(&path, 32).expect("create");
        let first = fs::read_to_string(&path).expect("read");
        let id = add_generated_key(&path).expect("add");
        let text = fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1], first.trim());
        assert_eq!(key_id(&STANDARD.decode(lines[0]).expect("b64")), id);
    }
}
