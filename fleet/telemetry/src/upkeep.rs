//! What the service does on a timer, besides ingesting: it reads every bike's standing again
//! (a revocation made on another replica reaches this one's ingest within one interval), and
//! signs the CRL again before the published one expires.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio_util::sync::CancellationToken;

use crate::{
    crl::CrlPublisher,
    fleet_state::Standings,
    pki::{Authority, CRL_VALIDITY},
    registry::Registry,
};

/// How often standings are read again by default.
pub const STANDINGS_INTERVAL: Duration = Duration::from_secs(5);

/// Reads the standings every `interval` until `shutdown`. A failed read is logged and tried
/// again at the next tick: the standings in memory stay as they were.
pub async fn refresh_standings(
    registry: Registry,
    standings: Standings,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = Ticks::new(interval);
    while ticks.next(&shutdown).await {
        if let Err(e) = standings.refresh(&registry).await {
            tracing::warn!(error = %e, "reading the bikes' standings failed; keeping the last ones");
        }
    }
}

/// A tick at once and then every interval (a late round delays the next, never two at once).
struct Ticks(tokio::time::Interval);

impl Ticks {
    fn new(every: Duration) -> Self {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self(ticks)
    }

    /// Waits for the next tick: `false` once `shutdown` is cancelled.
    async fn next(&mut self, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            () = shutdown.cancelled() => false,
            _ = self.0.tick() => true,
        }
    }
}

/// Whether a CRL published at `published` must be signed again at `now`: once half its
/// validity has passed, so that a broker never holds an expired one.
pub fn crl_due(published: SystemTime, now: SystemTime) -> bool {
    now.duration_since(published).is_ok_and(|age| age >= CRL_VALIDITY / 2) || now < published
}

/// Publishes the CRL now, then again whenever [`crl_due`], checking every `check` until
/// `shutdown`.
pub async fn keep_crl_fresh(
    registry: Registry,
    authority: Arc<Authority>,
    publisher: CrlPublisher,
    check: Duration,
    shutdown: CancellationToken,
) {
    let mut published: Option<SystemTime> = None;
    let mut ticks = Ticks::new(check);
    while ticks.next(&shutdown).await {
        let now = SystemTime::now();
        if published.is_some_and(|at| !crl_due(at, now)) {
            continue;
        }
        let result = match registry.crl_input(now).await {
            Ok(input) => publisher.publish(&authority, &input, now),
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(()) => published = Some(now),
            Err(e) => tracing::error!(error = format!("{e:#}"), "publishing the CRL failed; trying again"),
        }
    }
}

/// Drops the days of telemetry older than `retention`, every `interval` until `shutdown`
/// (ClickHouse 18.16 has no TTL: whole partitions go).
pub async fn keep_retention(
    store: Arc<dyn crate::store::TelemetryStore>,
    retention: Duration,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = Ticks::new(interval);
    while ticks.next(&shutdown).await {
        let keep_from = chrono::Utc::now() - chrono::TimeDelta::from_std(retention).unwrap_or(chrono::TimeDelta::MAX);
        match store.drop_days_before(keep_from.date_naive()).await {
            Ok(days) if !days.is_empty() => tracing::info!(?days, "dropped telemetry past its retention"),
            Ok(_) => {}
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "dropping telemetry past its retention failed; trying again later"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use fleetplane_common::{
        db::testing::fresh_database_url,
        secrets::{KeySettings, Keyring},
    };

    use super::*;
    use crate::{
        crl::Reload,
        pki::{DEFAULT_VALIDITY, Reason},
        registry::{NewBike, Request, Standing},
    };

    #[test]
    fn a_crl_is_signed_again_once_half_its_validity_has_passed() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert!(!crl_due(at, at));
        assert!(!crl_due(at, at + CRL_VALIDITY / 2 - Duration::from_secs(1)));
        assert!(crl_due(at, at + CRL_VALIDITY / 2));
        assert!(crl_due(at, at - Duration::from_secs(60)), "a clock that went back signs again");
    }

    async fn registry(dir: &tempfile::TempDir) -> (Registry, Keyring) {
        let url = fresh_database_url(dir.path(), "upkeep").await;
        let keyring = Keyring::load(&KeySettings { variable: "TEST_KEYS", keys: None, file: dir.path().join("keys") })
            .expect("keys");
        (Registry::open(&url, 4).await.expect("registry"), keyring)
    }

    async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !done().await {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_revocation_made_elsewhere_reaches_the_standings_and_the_crl() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (registry, keyring) = registry(&dir).await;
        let authority = Arc::new(registry.authority(&keyring, SystemTime::now()).await.expect("CA"));
        let bike = registry
            .register(
                "test",
                &NewBike { serial: "SN-1".into(), model: "M".into(), firmware_version: "1".into(), display_name: None },
                Utc::now(),
            )
            .await
            .expect("registered");
        let issued = registry
            .issue("test", &authority, &bike.device_id, Request::Generate, DEFAULT_VALIDITY, SystemTime::now())
            .await
            .expect("issued");
        let standings = Standings::default();
        let shutdown = CancellationToken::new();
        let crl_path = dir.path().join("crl.pem");
        let publisher = CrlPublisher { path: crl_path.clone(), reload: Reload::Nothing };
        let tasks = [
            tokio::spawn(refresh_standings(
                registry.clone(),
                standings.clone(),
                Duration::from_millis(50),
                shutdown.clone(),
            )),
            tokio::spawn(keep_crl_fresh(
                registry.clone(),
                authority.clone(),
                publisher,
                Duration::from_millis(50),
                shutdown.clone(),
            )),
        ];
        eventually("the bike admitted", async || standings.get(&bike.device_id) == Some(Standing::Admitted)).await;
        eventually("a first CRL published", async || crl_path.exists()).await;

        // Another replica revokes: this one learns it within an interval.
        registry
            .revoke("elsewhere", &issued.certificate.serial, Reason::KeyCompromise, SystemTime::now())
            .await
            .expect("revoked");
        eventually("the revocation seen", async || standings.get(&bike.device_id) == Some(Standing::Revoked)).await;
        shutdown.cancel();
        for task in tasks {
            task.await.expect("stopped");
        }
    }
}
