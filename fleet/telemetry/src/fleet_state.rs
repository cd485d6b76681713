//! What the ingest and the API know about the fleet in memory: where each bike stands in the
//! registry ([`Standings`]), and each bike's latest packet ([`Latest`]).

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use chrono::{DateTime, Utc};
use fleet_proto::{DeviceId, Telemetry, envelope::Body};
use tokio::sync::broadcast;

use crate::{
    packet::Packet,
    registry::{Registry, RegistryError, Standing},
};

/// Every registered bike's standing, read from the registry on start, after each change made
/// here, and periodically (for changes made by another replica).
#[derive(Clone, Default)]
pub struct Standings(Arc<RwLock<HashMap<DeviceId, Standing>>>);

impl Standings {
    pub fn get(&self, device_id: &DeviceId) -> Option<Standing> {
        self.0.read().expect("standings lock").get(device_id).copied()
    }

    /// Reads every standing from the registry again.
    pub async fn refresh(&self, registry: &Registry) -> Result<(), RegistryError> {
        let standings = registry.standings(SystemTime::now()).await?;
        *self.0.write().expect("standings lock") = standings;
        Ok(())
    }

    /// Sets one bike's standing at once, before the next refresh: a revocation takes effect
    /// in the ingest from the moment it is committed.
    pub fn set(&self, device_id: DeviceId, standing: Standing) {
        self.0.write().expect("standings lock").insert(device_id, standing);
    }
}

/// A bike's latest state: its newest packet by `recorded_at`, and its newest telemetry.
#[derive(Clone, Debug, PartialEq)]
pub struct BikeState {
    pub seq: u64,
    pub recorded_at: DateTime<Utc>,
    /// When the newest packet (by arrival) reached the service: what "online" is judged by.
    pub last_seen: DateTime<Utc>,
    pub telemetry: Option<NewestTelemetry>,
}

/// A bike's newest telemetry packet.
#[derive(Clone, Debug, PartialEq)]
pub struct NewestTelemetry {
    pub seq: u64,
    pub recorded_at: DateTime<Utc>,
    pub telemetry: Telemetry,
}

/// How many committed batches the live feed holds for a stream that is slow to take them;
/// one further behind resumes from the store.
const FEED_BATCHES: usize = 1024;

/// Every bike's latest state, updated by the ingest after each commit, and the feed of what
/// was committed, for live streams.
#[derive(Clone)]
pub struct Latest(Arc<LatestInner>);

struct LatestInner {
    states: RwLock<HashMap<DeviceId, BikeState>>,
    feed: broadcast::Sender<Arc<[Packet]>>,
}

impl Default for Latest {
    fn default() -> Self {
        let (feed, _) = broadcast::channel(FEED_BATCHES);
        Self(Arc::new(LatestInner { states: RwLock::default(), feed }))
    }
}

impl Latest {
    pub fn get(&self, device_id: &DeviceId) -> Option<BikeState> {
        self.0.states.read().expect("latest lock").get(device_id).cloned()
    }

    /// Every batch committed from now on, as the ingest commits it.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<[Packet]>> {
        self.0.feed.subscribe()
    }

    /// Takes in packets just stored. Out-of-order packets (an offline batch) never replace
    /// newer state; they count as the bike being seen.
    pub fn update(&self, packets: &[Packet]) {
        self.update_states(packets);
        if !packets.is_empty() && self.0.feed.receiver_count() > 0 {
            // No stream listening: nothing to copy. One that lags is told so by the channel.
            let _ = self.0.feed.send(packets.into());
        }
    }

    fn update_states(&self, packets: &[Packet]) {
        let mut latest = self.0.states.write().expect("latest lock");
        for packet in packets {
            let state = latest.entry(packet.device_id.clone()).or_insert_with(|| BikeState {
                seq: packet.seq,
                recorded_at: packet.recorded_at,
                last_seen: packet.received_at,
                telemetry: None,
            });
            state.last_seen = state.last_seen.max(packet.received_at);
            if (packet.recorded_at, packet.seq) >= (state.recorded_at, state.seq) {
                state.recorded_at = packet.recorded_at;
                state.seq = packet.seq;
            }
            if let Body::Telemetry(telemetry) = &packet.body
                && state.telemetry.as_ref().is_none_or(|t| (packet.recorded_at, packet.seq) >= (t.recorded_at, t.seq))
            {
                state.telemetry =
                    Some(NewestTelemetry { seq: packet.seq, recorded_at: packet.recorded_at, telemetry: *telemetry });
            }
        }
    }

    /// Whether `device_id` was seen within `window` of `now`.
    pub fn online(&self, device_id: &DeviceId, now: DateTime<Utc>, window: Duration) -> bool {
        let window = chrono::TimeDelta::from_std(window).unwrap_or(chrono::TimeDelta::MAX);
        self.get(device_id).is_some_and(|state| now - state.last_seen <= window)
    }

    pub fn len(&self) -> usize {
        self.0.states.read().expect("latest lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::store::tests::{device, noon, packet, telemetry};

    #[test]
    fn the_latest_state_is_the_newest_packet_and_a_late_batch_does_not_replace_it() {
        let latest = Latest::default();
        let bike = device(1);
        latest.update(&[packet(&bike, 10, noon(), Body::Telemetry(telemetry(10)))]);
        // An offline batch, recorded earlier, arrives later.
        let mut late = packet(&bike, 3, noon() - TimeDelta::hours(1), Body::Telemetry(telemetry(3)));
        late.received_at = noon() + TimeDelta::minutes(5);
        latest.update(&[late]);
        let state = latest.get(&bike).expect("state");
        assert_eq!(state.seq, 10);
        assert_eq!(state.telemetry, Some(NewestTelemetry { seq: 10, recorded_at: noon(), telemetry: telemetry(10) }));
        assert_eq!(state.last_seen, noon() + TimeDelta::minutes(5), "the late batch shows the bike is here");

        let window = Duration::from_secs(120);
        assert!(latest.online(&bike, noon() + TimeDelta::minutes(6), window));
        assert!(!latest.online(&bike, noon() + TimeDelta::minutes(8), window));
        assert!(!latest.online(&device(2), noon(), window), "never seen");
    }
}
