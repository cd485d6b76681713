//! Random bearer secrets (API tokens, email links) and the hashes stored in their place.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

/// 256 random bits, URL-safe, after `prefix`.
pub fn generate(prefix: &str) -> String {
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()))
}

/// The stored form of a token. A fast hash is right here: the tokens have 256 bits of entropy,
/// so there is nothing to brute-force, and look-ups stay a single indexed query.
pub fn hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_hash_stably() {
        let (a, b) = (generate("fpat_"), generate("fpat_"));
        assert_ne!(a, b);
        assert!(a.starts_with("fpat_") && a.len() == "fpat_".len() + 43);
        assert_eq!(hash(&a), hash(&a));
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
