//! The ingest: a shared MQTT subscription to every bike's topics, QoS 1, acknowledged by hand.
//!
//! One task polls the connection and hands each publish to the batcher; the batcher examines
//! the publishes ([`crate::packet::examine`]), stores the good packets and the quarantined ones
//! in one go, and only once the store has committed does it acknowledge them. So a crash at
//! any moment loses nothing that was acknowledged, and what the broker sends again is stored
//! once (the store keys packets by `(device_id, seq)`).
//!
//! Nothing waits in a circle. The connection is the poller's ([`connection`]); the batcher
//! hands it each committed batch's acknowledgements through a channel it never waits on (a
//! packet id each, no payload), and the poller sends them all in one write before it reads
//! on. The poller may wait on the batcher: while the queue is full it stops reading the
//! connection, and TCP holds the broker back; it still acknowledges and pings meanwhile.
//! Memory is bounded by the queue, one batch, and those packet ids; the ingest also asks the
//! broker (MQTT 5 Receive Maximum) to keep no more than its inflight window unacknowledged. A
//! store that fails is retried with back-off while nothing is acknowledged, so the broker
//! keeps what is waiting.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use chrono::Utc;
use fleet_proto::{
    Batch, DeviceId, Envelope, Message, SCHEMA_VERSION, Timestamp,
    envelope::Body,
    topic::{Kind, Topic},
};
use rumqttc::v5::mqttbytes::{
    QoS,
    v5::{Packet as Incoming, Publish, SubscribeReasonCode},
};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

use self::connection::{Connection, Dialer};
use crate::{
    fleet_state::{Latest, Standings},
    packet::{self, Limits, Packet, Quarantined},
    store::TelemetryStore,
};

/// How the ingest connects and batches.
#[derive(Clone, Debug)]
pub struct IngestSettings {
    pub host: String,
    pub port: u16,
    /// The CA chain the broker's certificate is checked against (PEM).
    pub ca_pem: Vec<u8>,
    /// The ingest's own certificate and key (PEM), from the fleet CA.
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// Its MQTT client id: the session the broker keeps while it is away.
    pub client_id: String,
    /// The shared subscription group: replicas in one group split the messages.
    pub group: String,
    /// A batch is stored when it holds this many messages…
    pub batch_size: usize,
    /// …or this long after its first message arrived.
    pub batch_linger: Duration,
    /// The most messages the broker may have in flight to the ingest (its inflight window);
    /// the queue to the batcher is this long.
    pub inflight: u16,
    /// The most quarantine entries stored per batch; beyond, they are only counted.
    pub quarantine_per_batch: usize,
    /// The largest MQTT message accepted, in bytes.
    pub max_message: usize,
    pub limits: Limits,
    /// Whether several replicas run. They then split the packets through a shared
    /// subscription, and share their latest states: after each commit the ingest publishes the
    /// newest packets of the batch on [`replica_topic`], and takes in those of the others, so
    /// that every replica knows every bike's latest state (and its live streams follow every
    /// bike), whichever replica the broker gave the packets to.
    ///
    /// A single ingest subscribes plainly: mosquitto 2.0 restores plain subscriptions from its
    /// persistence after a restart, but not shared ones, so packets a bike publishes between a
    /// broker restart and the ingest's new SUBSCRIBE would have no subscriber and be dropped
    /// (acknowledged to the bike all the same). Replicas on mosquitto live with that window.
    pub replicated: bool,
}

/// Where replica `client_id` publishes the newest packets of each batch it commits.
pub fn replica_topic(client_id: &str) -> String {
    format!("{REPLICAS_PREFIX}{client_id}/latest")
}

const REPLICAS_PREFIX: &str = "fleet/replicas/";

/// How often the broker and the ingest must hear from each other (MQTT keep-alive).
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// The packet id of the ingest's one SUBSCRIBE per connection (it publishes at QoS 0 only,
/// so no other id is in use).
const SUBSCRIBE_ID: u16 = 1;

mod connection;

/// What the batcher hands the poller to send.
enum Outgoing {
    /// A committed batch's acknowledgements: which connection each message came on, and its
    /// packet id.
    Acks(Vec<(u64, u16)>),
    /// The newest packets of a batch, for the other replicas.
    Share(Publish),
}

/// The connection being served, and what the poller knows of it.
struct Link<'c> {
    connection: &'c mut Connection,
    /// Its number: one more for every connection opened.
    on: u64,
    keep_alive: Duration,
}

impl IngestSettings {
    pub fn new(host: impl Into<String>, port: u16, ca_pem: Vec<u8>, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Self {
        Self {
            host: host.into(),
            port,
            ca_pem,
            cert_pem,
            key_pem,
            client_id: "fleet-ingest".into(),
            group: "ingest".into(),
            batch_size: 2_000,
            batch_linger: Duration::from_millis(50),
            inflight: 1_000,
            quarantine_per_batch: 200,
            max_message: 1024 * 1024,
            limits: Limits::default(),
            replicated: false,
        }
    }
}

/// What the ingest has done since it started, for metrics and tests.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub messages: AtomicU64,
    pub stored: AtomicU64,
    /// Packets the store already held: redelivered.
    pub duplicates: AtomicU64,
    pub quarantined: AtomicU64,
    /// Quarantined beyond the per-batch cap: counted, not kept.
    pub quarantine_dropped: AtomicU64,
    pub acknowledged: AtomicU64,
    /// Acknowledgements not sent because their message came on an earlier connection: the
    /// broker sends it again on this one (DUP), and it is acknowledged then.
    pub superseded: AtomicU64,
    pub batches: AtomicU64,
    pub store_failures: AtomicU64,
    pub connections: AtomicU64,
    /// Messages the broker marked as sent again (DUP).
    pub redelivered: AtomicU64,
    /// The most messages waiting for the batcher at once.
    pub queue_high_water: AtomicU64,
    /// Per quarantine reason, in the order of [`packet::Reason::ALL`].
    pub by_reason: [AtomicU64; 14],
    /// Whether the ingest is connected and the broker has confirmed all its subscriptions:
    /// from then on, the broker keeps every packet for it, also while it is away.
    pub subscribed: AtomicBool,
}

impl IngestStats {
    /// The packet ids of `acks` that came on connection `on`; the others are counted as
    /// superseded.
    fn current(&self, acks: Vec<(u64, u16)>, on: u64) -> impl Iterator<Item = u16> + use<'_> {
        acks.into_iter().filter_map(move |(came_on, pkid)| {
            if came_on == on {
                Some(pkid)
            } else {
                self.superseded.fetch_add(1, Ordering::Relaxed);
                None
            }
        })
    }
}

fn envelope(packet: &Packet) -> Envelope {
    Envelope {
        schema_version: SCHEMA_VERSION,
        device_id: packet.device_id.to_string(),
        seq: packet.seq,
        recorded_at: Some(Timestamp {
            seconds: packet.recorded_at.timestamp(),
            nanos: i32::try_from(packet.recorded_at.timestamp_subsec_nanos()).unwrap_or(0),
        }),
        body: Some(packet.body.clone()),
    }
}

/// What the ingest subscribes to on each connection: the bikes' topics (shared among the
/// replicas when there are several), and the other replicas' latest states.
fn subscriptions(settings: &IngestSettings) -> Vec<(String, QoS)> {
    let mut filters: Vec<(String, QoS)> = Kind::ALL
        .into_iter()
        .map(|kind| {
            let filter =
                if settings.replicated { Topic::shared_filter(&settings.group, kind) } else { Topic::filter(kind) };
            (filter, QoS::AtLeastOnce)
        })
        .collect();
    if settings.replicated {
        filters.push((format!("{REPLICAS_PREFIX}+/latest"), QoS::AtMostOnce));
    }
    filters
}

/// The ingest's shared parts.
#[derive(Clone)]
pub struct Ingest {
    pub store: Arc<dyn TelemetryStore>,
    pub standings: Standings,
    pub latest: Latest,
    pub stats: Arc<IngestStats>,
}

impl Ingest {
    /// Runs until `shutdown`: connects (and reconnects), subscribes, and stores. On shutdown
    /// it stops taking messages, stores and acknowledges what it holds, then disconnects.
    pub async fn run(&self, settings: &IngestSettings, shutdown: CancellationToken) -> anyhow::Result<()> {
        crate::install_crypto_provider();
        let dialer = Dialer::new(settings)?;
        let (to_batcher, from_poller) = mpsc::channel(usize::from(settings.inflight).max(1));
        // Unbounded, yet bounded all the same: it holds at most one acknowledgement per
        // message the batcher was handed, and the poller empties it before reading on.
        let (to_poller, outgoing) = mpsc::unbounded_channel();
        let batcher = tokio::spawn({
            let ingest = self.clone();
            let settings = settings.clone();
            async move { ingest.batch(&settings, &to_poller, from_poller).await }
        });
        let polled = self.poll(settings, &dialer, to_batcher, outgoing, shutdown).await;
        // The poller has stopped (and dropped its end of the queue): the batcher stores what it
        // holds, then ends.
        batcher.await.context("the batcher panicked")?;
        polled
    }

    /// Holds the connection: connects again after every error, and on shutdown sends the
    /// batcher's last acknowledgements before it says goodbye.
    async fn poll(
        &self,
        settings: &IngestSettings,
        dialer: &Dialer,
        to_batcher: mpsc::Sender<(u64, Publish)>,
        mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(100);
        // Which connection the broker's messages come on. What came on a lost connection is
        // not acknowledged on the next: the broker sends it again there, and it is
        // acknowledged then. An old packet id on a new connection can name another message,
        // one not yet stored (mosquitto 2.0.11 reuses ids when it overruns the receive maximum).
        let mut on = 0;
        let mut open = None;
        while !shutdown.is_cancelled() {
            let opened = tokio::select! {
                () = shutdown.cancelled() => break,
                opened = Connection::open(dialer, settings, KEEP_ALIVE) => opened,
            };
            let served = match opened {
                Ok((mut connection, accepted)) => {
                    on += 1;
                    backoff = Duration::from_millis(100);
                    self.stats.connections.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(session_present = accepted.session_present, "the ingest is connected to the broker");
                    let link =
                        Link { connection: &mut connection, on, keep_alive: accepted.keep_alive.unwrap_or(KEEP_ALIVE) };
                    let served = self.serve(settings, link, &to_batcher, &mut outgoing, &shutdown).await;
                    if served.is_ok() {
                        open = Some(connection);
                    }
                    served
                }
                Err(e) => Err(e),
            };
            self.stats.subscribed.store(false, Ordering::Relaxed);
            if let Err(e) = served {
                tracing::warn!(error = format!("{e:#}"), retry_in = ?backoff, "the ingest lost the broker");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        // The batcher stores what it holds and hands over its acknowledgements; they go out
        // while the connection lasts, until the batcher ends.
        drop(to_batcher);
        let Some(mut connection) = open else { return Ok(()) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Ok(Some(first)) = tokio::time::timeout_at(deadline, outgoing.recv()).await {
            let sent = async {
                self.stage_waiting(&mut connection, first, &mut outgoing, on)?;
                connection.send().await
            };
            if !matches!(tokio::time::timeout_at(deadline, sent).await, Ok(Ok(()))) {
                break;
            }
        }
        connection.close().await;
        Ok(())
    }

    /// Serves one connection until it fails (an error) or `shutdown` (`Ok`).
    async fn serve(
        &self,
        settings: &IngestSettings,
        Link { connection, on, keep_alive }: Link<'_>,
        to_batcher: &mpsc::Sender<(u64, Publish)>,
        outgoing: &mut mpsc::UnboundedReceiver<Outgoing>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        // Also when the session is present: mosquitto 2.0 restores a session from its
        // persistence without its shared subscriptions. Subscribing again is harmless (the
        // same filter replaces itself).
        connection.subscribe(SUBSCRIBE_ID, subscriptions(settings))?;
        connection.send().await?;
        // A message read while the batcher's queue is full: nothing more is read until it is
        // taken, and TCP holds the broker back.
        let mut held: Option<Publish> = None;
        // When the broker was last heard from while the ingest was listening.
        let mut heard = Instant::now();
        let mut ping = tokio::time::interval_at(Instant::now() + keep_alive / 2, keep_alive / 2);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while held.is_none() {
                let Some(packet) = connection.next_buffered()? else { break };
                held = self.take(settings, packet, on, to_batcher)?;
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                out = outgoing.recv() => {
                    self.stage_waiting(connection, out.context("the batcher stopped")?, outgoing, on)?;
                    tokio::time::timeout(keep_alive, connection.send()).await.context("the broker stopped reading")??;
                }
                permit = to_batcher.reserve(), if held.is_some() => {
                    permit.context("the batcher stopped")?.send((on, held.take().expect("a message is held")));
                    // The broker waited on the ingest, not the other way round.
                    heard = Instant::now();
                }
                read = connection.read_more(), if held.is_none() => {
                    read?;
                    heard = Instant::now();
                }
                _ = ping.tick() => {
                    if held.is_none() && heard.elapsed() > keep_alive {
                        anyhow::bail!("the broker has not answered for {keep_alive:?}, pings included");
                    }
                    connection.ping()?;
                    tokio::time::timeout(keep_alive, connection.send()).await.context("the broker stopped reading")??;
                }
            }
        }
    }

    /// Takes in one packet from the broker. A message the batcher has no room for yet comes
    /// back, to be held.
    fn take(
        &self,
        settings: &IngestSettings,
        packet: Incoming,
        on: u64,
        to_batcher: &mpsc::Sender<(u64, Publish)>,
    ) -> anyhow::Result<Option<Publish>> {
        match packet {
            Incoming::Publish(publish) if publish.topic.starts_with(REPLICAS_PREFIX.as_bytes()) => {
                self.take_in_replica(settings, &publish);
            }
            Incoming::Publish(publish) => {
                self.stats.messages.fetch_add(1, Ordering::Relaxed);
                if publish.dup {
                    self.stats.redelivered.fetch_add(1, Ordering::Relaxed);
                }
                let depth = (to_batcher.max_capacity() - to_batcher.capacity()) as u64;
                self.stats.queue_high_water.fetch_max(depth + 1, Ordering::Relaxed);
                return match to_batcher.try_send((on, publish)) {
                    Ok(()) => Ok(None),
                    Err(mpsc::error::TrySendError::Full((_, publish))) => Ok(Some(publish)),
                    Err(mpsc::error::TrySendError::Closed(_)) => anyhow::bail!("the batcher stopped"),
                };
            }
            Incoming::SubAck(suback) => {
                let refused: Vec<_> = suback
                    .return_codes
                    .iter()
                    .filter(|code| !matches!(code, SubscribeReasonCode::Success(_)))
                    .collect();
                if !refused.is_empty() {
                    anyhow::bail!("the broker refused the ingest's subscriptions: {refused:?}");
                }
                // From now on the broker keeps every packet for the ingest, also while it is away.
                self.stats.subscribed.store(true, Ordering::Relaxed);
            }
            Incoming::Disconnect(disconnect) => {
                anyhow::bail!("the broker disconnected the ingest: {:?}", disconnect.reason_code);
            }
            _ => {}
        }
        Ok(None)
    }

    /// Encodes `first` and whatever else the batcher has handed over by now, to go out in the
    /// connection's next write.
    fn stage_waiting(
        &self,
        connection: &mut Connection,
        first: Outgoing,
        outgoing: &mut mpsc::UnboundedReceiver<Outgoing>,
        on: u64,
    ) -> anyhow::Result<()> {
        std::iter::once(first)
            .chain(std::iter::from_fn(|| outgoing.try_recv().ok()))
            .try_for_each(|out| self.stage(connection, out, on))
    }

    /// Encodes what the batcher handed over, to go with the connection's next write.
    fn stage(&self, connection: &mut Connection, out: Outgoing, on: u64) -> anyhow::Result<()> {
        match out {
            Outgoing::Acks(acks) => {
                for pkid in self.stats.current(acks, on) {
                    connection.acknowledge(pkid)?;
                    self.stats.acknowledged.fetch_add(1, Ordering::Relaxed);
                }
            }
            Outgoing::Share(publish) => {
                // Best effort: the only way encoding a publish fails is being larger than the
                // broker takes.
                if let Err(e) = connection.queue(&Incoming::Publish(publish)) {
                    tracing::debug!(error = format!("{e:#}"), "this batch's latest states are not shared");
                }
            }
        }
        Ok(())
    }

    async fn batch(
        &self,
        settings: &IngestSettings,
        to_poller: &mpsc::UnboundedSender<Outgoing>,
        mut queue: mpsc::Receiver<(u64, Publish)>,
    ) {
        let mut batch = Vec::with_capacity(settings.batch_size);
        // Which connection each message of the batch came on.
        let mut came_on = Vec::with_capacity(settings.batch_size);
        while let Some((on, first)) = queue.recv().await {
            batch.push(first);
            came_on.push(on);
            let deadline = Instant::now() + settings.batch_linger;
            while batch.len() < settings.batch_size {
                match tokio::time::timeout_at(deadline, queue.recv()).await {
                    Ok(Some((on, publish))) => {
                        batch.push(publish);
                        came_on.push(on);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            let stored = self.flush(settings, &mut batch).await;
            if settings.replicated
                && let Some(share) = self.share(settings, &stored)
            {
                let _ = to_poller.send(Outgoing::Share(share));
            }
            let acks = came_on
                .drain(..)
                .zip(batch.drain(..))
                .filter(|(_, publish)| publish.qos != QoS::AtMostOnce)
                .map(|(on, publish)| (on, publish.pkid))
                .collect();
            // Only a stopping ingest has no poller: the broker sends these again.
            let _ = to_poller.send(Outgoing::Acks(acks));
        }
    }

    /// Publishes the newest packet of each bike in `packets`, and its newest telemetry, for the
    /// other replicas. Best effort (QoS 0): the packets are stored already, and a replica that
    /// misses one catches up with the next.
    fn share(&self, settings: &IngestSettings, packets: &[Packet]) -> Option<Publish> {
        let mut newest: HashMap<&DeviceId, (&Packet, Option<&Packet>)> = HashMap::new();
        for packet in packets {
            let key = |p: &Packet| (p.recorded_at, p.seq);
            let entry = newest.entry(&packet.device_id).or_insert((packet, None));
            if key(packet) > key(entry.0) {
                entry.0 = packet;
            }
            if matches!(packet.body, Body::Telemetry(_)) && entry.1.is_none_or(|t| key(packet) > key(t)) {
                entry.1 = Some(packet);
            }
        }
        if newest.is_empty() {
            return None;
        }
        let mut envelopes = Vec::with_capacity(newest.len() * 2);
        for (packet, telemetry) in newest.into_values() {
            envelopes.push(envelope(packet));
            if let Some(telemetry) = telemetry.filter(|t| t.seq != packet.seq) {
                envelopes.push(envelope(telemetry));
            }
        }
        let payload = Batch { packets: envelopes }.encode_to_vec();
        Some(Publish::new(replica_topic(&settings.client_id), QoS::AtMostOnce, payload, None))
    }

    /// Takes in another replica's newest packets: its bikes' latest states, and its live feed.
    fn take_in_replica(&self, settings: &IngestSettings, publish: &Publish) {
        let topic = String::from_utf8_lossy(&publish.topic);
        if topic == replica_topic(&settings.client_id) {
            return;
        }
        let Ok(batch) = Batch::decode(&publish.payload[..]) else {
            tracing::warn!(%topic, "a replica's latest states do not decode; ignored");
            return;
        };
        let received_at = Utc::now();
        let packets: Vec<Packet> = batch
            .packets
            .into_iter()
            .filter_map(|e| {
                let device_id = DeviceId::parse(&e.device_id).ok()?;
                let at = e.recorded_at?;
                let recorded_at = chrono::DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).ok()?)?;
                Some(Packet { device_id, seq: e.seq, recorded_at, received_at, body: e.body? })
            })
            .collect();
        self.latest.update(&packets);
    }

    /// Examines and stores `batch`, retrying until the store takes it; returns what was stored.
    async fn flush(&self, settings: &IngestSettings, batch: &mut [Publish]) -> Vec<Packet> {
        let received_at = Utc::now();
        let mut packets: Vec<Packet> = Vec::new();
        let mut quarantined: Vec<Quarantined> = Vec::new();
        for publish in batch.iter() {
            let topic = String::from_utf8_lossy(&publish.topic);
            let examined = packet::examine(&topic, &publish.payload, received_at, &settings.limits, |device| {
                self.standings.get(device)
            });
            packets.extend(examined.packets);
            quarantined.extend(examined.quarantined);
        }
        // The same packet twice in one batch (redelivered before the first was acknowledged).
        let mut seen = HashSet::with_capacity(packets.len());
        packets.retain(|p| seen.insert((p.device_id.clone(), p.seq)));
        for entry in &quarantined {
            if let Some(i) = packet::Reason::ALL.iter().position(|r| *r == entry.reason) {
                self.stats.by_reason[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.stats.quarantined.fetch_add(quarantined.len() as u64, Ordering::Relaxed);
        if quarantined.len() > settings.quarantine_per_batch {
            let dropped = quarantined.len() - settings.quarantine_per_batch;
            self.stats.quarantine_dropped.fetch_add(dropped as u64, Ordering::Relaxed);
            quarantined.truncate(settings.quarantine_per_batch);
        }

        let mut backoff = Duration::from_millis(100);
        let stored = loop {
            let stored = async {
                let stored = self.store.insert(&packets).await?;
                self.store.quarantine(&quarantined).await?;
                anyhow::Ok(stored)
            };
            match stored.await {
                Ok(stored) => break stored,
                Err(e) => {
                    self.stats.store_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = format!("{e:#}"), retry_in = ?backoff, "storing a batch failed; nothing of it is acknowledged");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        };
        self.stats.stored.fetch_add(stored, Ordering::Relaxed);
        self.stats.duplicates.fetch_add(packets.len() as u64 - stored, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.latest.update(&packets);
        packets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// mosquitto 2.0.11 grants a subscription its ACL denies (and delivers nothing on it), so
    /// a refusal is taken here as the broker would send it.
    #[tokio::test]
    async fn refused_subscriptions_end_the_connection_and_leave_the_ingest_unsubscribed() {
        use rumqttc::v5::mqttbytes::v5::SubAck;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::sqlite::SqliteStore::open(&dir.path().join("t.db")).await.expect("store");
        let ingest = Ingest {
            store: Arc::new(store),
            standings: Standings::default(),
            latest: Latest::default(),
            stats: Arc::new(IngestStats::default()),
        };
        let settings = IngestSettings::new("127.0.0.1", 8883, Vec::new(), Vec::new(), Vec::new());
        let (to_batcher, _queue) = mpsc::channel(1);
        let suback = |return_codes| Incoming::SubAck(SubAck { pkid: SUBSCRIBE_ID, return_codes, properties: None });
        let refused = suback(vec![SubscribeReasonCode::Success(QoS::AtLeastOnce), SubscribeReasonCode::NotAuthorized]);
        let error = ingest.take(&settings, refused, 1, &to_batcher).expect_err("refused");
        assert!(format!("{error:#}").contains("refused the ingest's subscriptions"), "{error:#}");
        assert!(!ingest.stats.subscribed.load(Ordering::Relaxed));
        let granted = suback(vec![SubscribeReasonCode::Success(QoS::AtLeastOnce); 3]);
        assert!(ingest.take(&settings, granted, 1, &to_batcher).expect("granted").is_none());
        assert!(ingest.stats.subscribed.load(Ordering::Relaxed));
    }

    #[test]
    fn a_message_from_an_earlier_connection_is_not_acknowledged_on_this_one() {
        let stats = IngestStats::default();
        let acks = vec![(1, 7), (2, 8), (1, 9)];
        assert_eq!(stats.current(acks, 2).collect::<Vec<_>>(), [8], "only the one from this connection");
        assert_eq!(stats.superseded.load(Ordering::Relaxed), 2);
    }
}
