//! Secrets generated on first start and kept in the data directory, readable by the owner only.

use std::{
    fs,
    io::{self, Write},
    path::Path,
};

use base64::{Engine, engine::general_purpose::STANDARD};

/// Reads the base64 key at `path`, or creates it with `len` random bytes (mode 0600).
pub fn load_or_create(path: &Path, len: usize) -> io::Result<Vec<u8>> {
    match fs::read_to_string(path) {
        Ok(text) => STANDARD.decode(text.trim()).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{} is not a base64 key: {e}", path.display()))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
            let key: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(path) {
                Ok(mut file) => {
                    file.write_all(STANDARD.encode(&key).as_bytes())?;
                    file.sync_all()?;
                    tracing::info!(path = %path.display(), "generated a new key");
                    Ok(key)
                }
                // Another process created it between our read and our create: use theirs.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => load_or_create(path, len),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_with_owner_only_mode_then_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/session.key");
        let first = load_or_create(&path, 32).expect("create");
        assert_eq!(first.len(), 32);
        assert_eq!(load_or_create(&path, 32).expect("read"), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("session.key");
        fs::write(&path, "not base64 !!!").expect("write");
        assert!(load_or_create(&path, 32).is_err());
    }
}
