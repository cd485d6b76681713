//! Fixed-window request limits, kept in memory per process.
//!
//! Each key (an action plus a client IP or an account) may make `max` requests per window.
//! With several replicas each counts on its own, which still bounds an attacker per replica.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::config::Limit;

/// Past this many tracked keys, expired windows are swept before a new key is added.
const SWEEP_AT: usize = 10_000;

#[derive(Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<String, Window>>,
}

struct Window {
    started: Instant,
    length: Duration,
    count: u32,
}

impl RateLimiter {
    /// Counts one request for `key`; `Err(retry_after)` when it is over `limit`.
    pub fn check(&self, key: &str, limit: Limit) -> Result<(), Duration> {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if windows.len() >= SWEEP_AT && !windows.contains_key(key) {
            windows.retain(|_, w| now.duration_since(w.started) < w.length);
        }
        let window = windows.entry(key.to_owned()).or_insert(Window { started: now, length: limit.window(), count: 0 });
        if now.duration_since(window.started) >= window.length {
            *window = Window { started: now, length: limit.window(), count: 0 };
        }
        if window.count >= limit.max {
            return Err(window.length.saturating_sub(now.duration_since(window.started)));
        }
        window.count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_max_per_window_then_says_when_to_retry() {
        let limiter = RateLimiter::default();
        let limit = Limit::new(3, 60);
        for _ in 0..3 {
            assert!(limiter.check("login:ip:1.2.3.4", limit).is_ok());
        }
        let retry = limiter.check("login:ip:1.2.3.4", limit).expect_err("fourth is over");
        assert!(retry > Duration::from_secs(58) && retry <= Duration::from_secs(60));
        assert!(limiter.check("login:ip:5.6.7.8", limit).is_ok(), "keys are independent");
    }

    #[test]
    fn a_new_window_starts_after_the_old_one_ends() {
        let limiter = RateLimiter::default();
        let limit = Limit::new(1, 0);
        assert!(limiter.check("k", limit).is_ok());
        assert!(limiter.check("k", limit).is_ok(), "a zero-length window is always fresh");
    }
}
