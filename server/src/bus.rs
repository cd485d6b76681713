//! The bus: small signals that something durable changed, delivered to every part of this
//! process and, with Redis, to every other replica.
//!
//! Nothing is ever only on the bus. Whatever a signal announces was committed to the database
//! first (events, log lines, queued runs); a signal only says "look now". A lost signal (Redis
//! restarting, a slow subscriber) costs latency, never data: every reader also looks on a
//! timer, and a reconnecting client catches up from the database.
//!
//! Two implementations behind one type: in-process (a broadcast channel, the embedded default)
//! and Redis pub/sub through `fred` when `REDIS_URL` is set, which also delivers locally at once.

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use fred::{
    clients::{Client as RedisClient, SubscriberClient},
    interfaces::{ClientLike, EventInterface, PubsubInterface},
    types::{
        Builder,
        config::{Config as RedisConfig, ReconnectPolicy},
    },
};
use tokio::sync::broadcast;
use uuid::Uuid;

/// The Redis channel every replica publishes to and listens on.
const CHANNEL: &str = "fleetplane:signals";
/// Signals waiting for a slow local subscriber before it starts missing them (it then falls
/// back to reading the database).
const LOCAL_CAPACITY: usize = 4096;
/// A publish to Redis that takes longer than this is given up (the readers' timers cover it).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);

/// What changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// New rows in `events` (status changes, notifications).
    Events,
    /// New log lines for a run.
    Logs(Uuid),
    /// A run may be claimable.
    Queue,
    /// A user's account, sessions or API tokens changed: cached copies are stale, and streams
    /// whose session or token was revoked end.
    Account(Uuid),
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Events => f.write_str("events"),
            Self::Logs(run) => write!(f, "logs:{run}"),
            Self::Queue => f.write_str("queue"),
            Self::Account(user) => write!(f, "account:{user}"),
        }
    }
}

impl FromStr for Signal {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        match text {
            "events" => Ok(Self::Events),
            "queue" => Ok(Self::Queue),
            _ => {
                let id = |prefix| text.strip_prefix(prefix).and_then(|id: &str| id.parse::<Uuid>().ok());
                id("logs:").map(Self::Logs).or_else(|| id("account:").map(Self::Account)).ok_or(())
            }
        }
    }
}

pub struct Bus {
    local: broadcast::Sender<Signal>,
    redis: Option<Redis>,
}

struct Redis {
    publisher: RedisClient,
    _subscriber: SubscriberClient,
    /// This process's id: its own signals come back from Redis and are skipped (they were
    /// delivered locally already).
    origin: Arc<str>,
}

impl Bus {
    /// The embedded default: signals reach this process only.
    pub fn in_process() -> Self {
        Self { local: broadcast::channel(LOCAL_CAPACITY).0, redis: None }
    }

    /// Signals through Redis pub/sub as well, so that every replica gets them. Connecting
    /// happens in the background and is retried for ever: the server starts, and serves,
    /// whether or not Redis is up.
    pub fn redis(url: &str) -> anyhow::Result<Self> {
        let config = RedisConfig::from_url(url).map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
        let policy = ReconnectPolicy::new_exponential(0, 100, 5_000, 2);
        let builder = {
            let mut builder = Builder::from_config(config);
            builder.set_policy(policy).with_connection_config(|connection| {
                connection.connection_timeout = Duration::from_secs(5);
                connection.internal_command_timeout = Duration::from_secs(5);
                // Fail commands at once while disconnected instead of queueing them.
                connection.max_command_attempts = 1;
            });
            builder.with_config(|config| config.fail_fast = true);
            builder
        };
        let publisher = builder.build()?;
        let subscriber = builder.build_subscriber_client()?;
        let (local, _) = broadcast::channel(LOCAL_CAPACITY);
        let origin: Arc<str> = Uuid::new_v4().simple().to_string().into();

        publisher.connect();
        subscriber.connect();
        // Re-subscribes after every reconnect (the task runs on its own).
        drop(subscriber.manage_subscriptions());
        let mut messages = subscriber.message_rx();
        let forward = local.clone();
        let own = origin.clone();
        tokio::spawn(async move {
            loop {
                match messages.recv().await {
                    Ok(message) => {
                        let Some(text) = message.value.as_str() else { continue };
                        let Some((from, signal)) = text.split_once(' ') else { continue };
                        if from == &*own {
                            continue;
                        }
                        if let Ok(signal) = signal.parse() {
                            let _ = forward.send(signal);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "fell behind on Redis signals; readers catch up on their timers");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let mut errors = subscriber.error_rx();
        let mut reconnects = subscriber.reconnect_rx();
        let first = subscriber.clone();
        tokio::spawn(async move {
            if let Err(e) = first.wait_for_connect().await {
                tracing::warn!(error = %e, "Redis is not reachable yet; retrying in the background");
            }
            if let Err(e) = first.subscribe(CHANNEL).await {
                tracing::warn!(error = %e, "could not subscribe to Redis yet; retried on reconnect");
            }
        });
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    error = errors.recv() => match error {
                        Ok((error, _)) => tracing::warn!(error = %error, "Redis connection error"),
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    reconnect = reconnects.recv() => match reconnect {
                        Ok(_) => tracing::info!("Redis connected"),
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        });
        Ok(Self { local, redis: Some(Redis { publisher, _subscriber: subscriber, origin }) })
    }

    /// Announces `signal` here at once and, with Redis, to the other replicas (in the
    /// background: the caller never waits for Redis).
    pub fn publish(&self, signal: Signal) {
        let _ = self.local.send(signal);
        if let Some(redis) = &self.redis {
            let publisher = redis.publisher.clone();
            let message = format!("{} {signal}", redis.origin);
            tokio::spawn(async move {
                let sent = tokio::time::timeout(PUBLISH_TIMEOUT, publisher.publish::<(), _, _>(CHANNEL, message)).await;
                match sent {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(error = %e, %signal, "signal not sent to Redis"),
                    Err(_) => tracing::debug!(%signal, "signal to Redis timed out"),
                }
            });
        }
    }

    /// The Redis connection, when the bus goes through Redis; others may use it too.
    pub fn redis_client(&self) -> Option<&RedisClient> {
        self.redis.as_ref().map(|redis| &redis.publisher)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Signal> {
        self.local.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_read_back_as_written() {
        let run = Uuid::now_v7();
        for signal in [Signal::Events, Signal::Queue, Signal::Logs(run), Signal::Account(run)] {
            assert_eq!(signal.to_string().parse::<Signal>(), Ok(signal));
        }
        assert!("logs:nope".parse::<Signal>().is_err());
        assert!("".parse::<Signal>().is_err());
    }

    #[tokio::test]
    async fn in_process_signals_reach_every_subscriber() {
        let bus = Bus::in_process();
        let (mut a, mut b) = (bus.subscribe(), bus.subscribe());
        bus.publish(Signal::Queue);
        assert_eq!(a.recv().await.ok(), Some(Signal::Queue));
        assert_eq!(b.recv().await.ok(), Some(Signal::Queue));
    }
}
