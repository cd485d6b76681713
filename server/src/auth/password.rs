//! argon2id password hashing, off the async runtime and with bounded concurrency.
//!
//! A hash costs tens of milliseconds of CPU and 19 MiB of memory. Hashes run on the blocking
//! pool, at most `concurrency` at a time; callers queue for a permit, and give up with a 503
//! after a while rather than piling up behind a flood of sign-ins.

use std::{sync::Arc, time::Duration};

use argon2::{Argon2, PasswordHash, PasswordHasher as _, PasswordVerifier as _, password_hash::SaltString};
use tokio::sync::Semaphore;

use crate::error::{AppError, Result};

/// How long a request waits for a hashing slot before it is told to come back later.
const MAX_WAIT: Duration = Duration::from_secs(10);

pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// Verified against when the account does not exist, so that "no such user" takes as long
    /// as "wrong password" and sign-in timing reveals nothing.
    dummy_hash: String,
}

impl PasswordHasher {
    pub fn new(concurrency: usize) -> anyhow::Result<Self> {
        let dummy_hash = hash_blocking(&format!("{:x}", rand::random::<u128>()))?;
        Ok(Self { permits: Arc::new(Semaphore::new(concurrency)), dummy_hash })
    }

    pub async fn hash(&self, password: &str) -> Result<String> {
        let password = password.to_owned();
        self.run(move || hash_blocking(&password)).await?.map_err(AppError::Internal)
    }

    /// Whether `password` matches `hash`. With no hash (no such account, or no password set)
    /// it does the same work and answers `false`.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool> {
        let (password, known) = (password.to_owned(), hash.is_some());
        let hash = hash.unwrap_or(&self.dummy_hash).to_owned();
        let matches = self.run(move || verify_blocking(&password, &hash)).await?;
        Ok(known && matches)
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let permit = tokio::time::timeout(MAX_WAIT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("password hashing task failed: {e}")))
    }
}

fn busy() -> AppError {
    AppError::Client {
        status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
        code: "server_busy",
        detail: "The server is busy. Try again in a few seconds.".into(),
        errors: Vec::new(),
        retry_after: Some(5),
    }
}

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let salt =
        SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| anyhow::anyhow!("salt encoding: {e}"))?;
    let hash =
        Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(hash.to_string())
}

fn verify_blocking(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_salted_and_verify() {
        let hasher = PasswordHasher::new(1).expect("hasher");
        let a = hasher.hash("correct horse").await.expect("hash");
        let b = hasher.hash("correct horse").await.expect("hash");
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "each hash has its own salt");
        assert!(hasher.verify("correct horse", Some(&a)).await.expect("verify"));
        assert!(!hasher.verify("wrong horse", Some(&a)).await.expect("verify"));
        assert!(!hasher.verify("correct horse", Some("not a phc string")).await.expect("verify"));
    }

    #[tokio::test]
    async fn a_missing_account_never_verifies() {
        let hasher = PasswordHasher::new(1).expect("hasher");
        assert!(!hasher.verify("anything", None).await.expect("verify"));
    }
}
