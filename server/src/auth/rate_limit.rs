//! Fixed-window request limits: each key (an action plus a client IP or an account) may make
//! `max` requests per window.
//!
//! With Redis (`REDIS_URL`), the count is kept there, shared by every replica, so that a client
//! cannot multiply its limit by the number of servers. Without Redis, or while it does not
//! answer, each process counts on its own, which still bounds a client per replica.
//!
//! The local count is bounded: keys are attacker-chosen (email addresses), so it holds at most
//! [`LOCAL_MAX_KEYS`], expires windows in order of their end through a heap (amortised
//! O(log n) per new window, never a sweep of every key), and past the bound forgets the windows
//! that end soonest.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    sync::{
        Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use fred::{clients::Client as RedisClient, interfaces::LuaInterface};

use crate::config::Limit;

/// Keys counted locally at most.
const LOCAL_MAX_KEYS: usize = 100_000;
/// A count in Redis that takes longer is given up for the local one.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);
/// Counts one request and returns it with the window's remaining milliseconds; the window
/// starts with its first request.
const COUNT_SCRIPT: &str = r"
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {count, left}
";

pub struct RateLimiter {
    local: Mutex<Windows>,
    shared: Option<RedisClient>,
    /// When Redis last failed to count (Unix seconds), so that an outage is logged once a minute.
    last_warned: AtomicI64,
}

impl RateLimiter {
    /// Counts in this process only.
    pub fn local() -> Self {
        Self { local: Mutex::default(), shared: None, last_warned: AtomicI64::new(0) }
    }

    /// Counts in Redis, shared by every replica; locally while Redis does not answer.
    pub fn shared(redis: RedisClient) -> Self {
        Self { shared: Some(redis), ..Self::local() }
    }

    /// Counts one request for `key`; `Err(retry_after)` when it is over `limit`.
    pub async fn check(&self, key: &str, limit: Limit) -> Result<(), Duration> {
        if let Some(redis) = &self.shared {
            match self.count_shared(redis, key, limit).await {
                Ok(verdict) => return verdict,
                Err(e) => self.warn(&e),
            }
        }
        self.local.lock().unwrap_or_else(|p| p.into_inner()).check(key, limit, Instant::now())
    }

    async fn count_shared(&self, redis: &RedisClient, key: &str, limit: Limit) -> anyhow::Result<Result<(), Duration>> {
        let window_ms = u64::try_from(limit.window().as_millis()).unwrap_or(u64::MAX).max(1);
        let key = format!("fleetplane:rate:{key}");
        let counted = redis.eval::<(u64, u64), _, _, _>(COUNT_SCRIPT, key, window_ms);
        let (count, left_ms) = tokio::time::timeout(REDIS_TIMEOUT, counted).await??;
        Ok(match count > u64::from(limit.max) {
            true => Err(Duration::from_millis(left_ms)),
            false => Ok(()),
        })
    }

    fn warn(&self, error: &anyhow::Error) {
        let now = chrono::Utc::now().timestamp();
        let last = self.last_warned.load(Ordering::Relaxed);
        if now - last >= 60
            && self.last_warned.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::warn!(error = %error, "Redis cannot count requests; rate limits count on each replica meanwhile");
        }
    }
}

/// The local count: windows by key, and their ends in order.
#[derive(Default)]
struct Windows {
    windows: HashMap<String, Window>,
    /// When each window ends. A window that was restarted leaves its old entry behind, which is
    /// skipped when it comes up.
    ends: BinaryHeap<Reverse<(Instant, String)>>,
}

struct Window {
    started: Instant,
    length: Duration,
    count: u32,
}

impl Window {
    fn end(&self) -> Instant {
        self.started + self.length
    }
}

impl Windows {
    fn check(&mut self, key: &str, limit: Limit, now: Instant) -> Result<(), Duration> {
        // Every window still here is current.
        self.expire(now);
        if !self.windows.contains_key(key) {
            if self.windows.len() >= LOCAL_MAX_KEYS {
                self.forget_soonest();
            }
            let window = Window { started: now, length: limit.window(), count: 0 };
            self.ends.push(Reverse((window.end(), key.to_owned())));
            self.windows.insert(key.to_owned(), window);
        }
        let Some(window) = self.windows.get_mut(key) else { unreachable!("the window was just made") };
        if window.count >= limit.max {
            return Err(window.end().saturating_duration_since(now));
        }
        window.count += 1;
        Ok(())
    }

    /// Drops the windows that have ended.
    fn expire(&mut self, now: Instant) {
        while let Some(Reverse((end, _))) = self.ends.peek()
            && *end <= now
        {
            self.pop_soonest();
        }
    }

    /// Drops the window that ends soonest, to make room.
    fn forget_soonest(&mut self) {
        while let Some(went) = self.pop_soonest() {
            if went {
                return;
            }
        }
    }

    /// Takes the soonest end off the heap, and its window if that end is still the window's;
    /// `Some(true)` when a window went.
    fn pop_soonest(&mut self) -> Option<bool> {
        let Reverse((end, key)) = self.ends.pop()?;
        let current = self.windows.get(&key).is_some_and(|window| window.end() == end);
        if current {
            self.windows.remove(&key);
        }
        Some(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn allows_max_per_window_then_says_when_to_retry() {
        let limiter = RateLimiter::local();
        let limit = Limit::new(3, 60);
        for _ in 0..3 {
            assert!(limiter.check("login:ip:1.2.3.4", limit).await.is_ok());
        }
        let retry = limiter.check("login:ip:1.2.3.4", limit).await.expect_err("fourth is over");
        assert!(retry > Duration::from_secs(58) && retry <= Duration::from_secs(60));
        assert!(limiter.check("login:ip:5.6.7.8", limit).await.is_ok(), "keys are independent");
    }

    #[test]
    fn a_new_window_starts_after_the_old_one_ends() {
        let mut windows = Windows::default();
        let limit = Limit::new(1, 60);
        let start = Instant::now();
        assert!(windows.check("k", limit, start).is_ok());
        assert!(windows.check("k", limit, start + Duration::from_secs(59)).is_err());
        assert!(windows.check("k", limit, start + Duration::from_secs(60)).is_ok(), "a fresh window");
        assert!(windows.check("k", limit, start + Duration::from_secs(61)).is_err());
    }

    #[test]
    fn ended_windows_are_forgotten_in_order_without_a_sweep() {
        let mut windows = Windows::default();
        let start = Instant::now();
        for n in 0..1000 {
            let limit = Limit::new(1, if n % 2 == 0 { 60 } else { 3600 });
            assert!(windows.check(&format!("k{n}"), limit, start).is_ok());
        }
        windows.check("late", Limit::new(1, 60), start + Duration::from_secs(61)).expect("counted");
        // The 60-second windows went; the hour-long ones stay, and so does the new one.
        assert_eq!(windows.windows.len(), 501);
        assert_eq!(windows.ends.len(), 501);
        assert!(windows.check("k1", Limit::new(1, 3600), start + Duration::from_secs(61)).is_err());
        assert!(windows.check("k0", Limit::new(1, 60), start + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn past_the_bound_the_windows_that_end_soonest_go() {
        let mut windows = Windows::default();
        let start = Instant::now();
        for n in 0..LOCAL_MAX_KEYS {
            windows.check(&format!("k{n}"), Limit::new(1, 3600), start + Duration::from_millis(n as u64)).expect("ok");
        }
        windows.check("one more", Limit::new(1, 3600), start + Duration::from_secs(200)).expect("counted");
        assert_eq!(windows.windows.len(), LOCAL_MAX_KEYS);
        assert!(!windows.windows.contains_key("k0"), "the soonest to end went");
        assert!(windows.windows.contains_key("k1") && windows.windows.contains_key("one more"));
    }
}
