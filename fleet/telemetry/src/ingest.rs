//! The ingest: a shared MQTT subscription to every bike's topics, QoS 1, acknowledged by hand.
//!
//! One task polls the connection and hands each publish to the batcher; the batcher examines
//! the publishes ([`crate::packet::examine`]), stores the good packets and the quarantined ones
//! in one go, and only once the store has committed does it acknowledge them. So a crash at
//! any moment loses nothing that was acknowledged, and what the broker sends again is stored
//! once (the store keys packets by `(device_id, seq)`).
//!
//! Nothing waits in a circle. The batcher's acknowledgements travel through the poller (the
//! MQTT connection is one task's), so the batcher never waits to hand one over: it keeps the
//! acknowledgements the connection cannot take yet (a packet id each, no payload) and hands
//! them over as the poller takes them. The poller may wait on the batcher: while the queue is
//! full it stops reading the connection, and TCP holds the broker back. Memory is bounded by
//! the queue, one batch, and those packet ids; the ingest also asks the broker (MQTT 5
//! Receive Maximum) to keep no more than its inflight window unacknowledged. A store that
//! fails is retried with back-off while nothing is acknowledged, so the broker keeps what is
//! waiting.

use std::{
    collections::{HashMap, HashSet, VecDeque},
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
use rumqttc::{
    TlsConfiguration, Transport,
    v5::{
        AsyncClient, Event, EventLoop, MqttOptions,
        mqttbytes::{
            QoS,
            v5::{ConnAck, Packet as Incoming, Publish},
        },
    },
};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

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
fn subscriptions(settings: &IngestSettings) -> VecDeque<(String, QoS)> {
    let mut filters: VecDeque<(String, QoS)> = Kind::ALL
        .into_iter()
        .map(|kind| {
            let filter =
                if settings.replicated { Topic::shared_filter(&settings.group, kind) } else { Topic::filter(kind) };
            (filter, QoS::AtLeastOnce)
        })
        .collect();
    if settings.replicated {
        filters.push_back((format!("{REPLICAS_PREFIX}+/latest"), QoS::AtMostOnce));
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
        let mut options = MqttOptions::new(&settings.client_id, &settings.host, settings.port);
        options
            .set_keep_alive(Duration::from_secs(30))
            // The broker keeps the session (its subscriptions and what is unacknowledged) for
            // a day while the ingest is away.
            .set_clean_start(false)
            .set_session_expiry_interval(Some(24 * 3600))
            .set_manual_acks(true)
            .set_receive_maximum(Some(settings.inflight.max(1)))
            .set_max_packet_size(Some(u32::try_from(settings.max_message).unwrap_or(u32::MAX)))
            .set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
                ca: settings.ca_pem.clone(),
                alpn: None,
                client_auth: Some((settings.cert_pem.clone(), settings.key_pem.clone())),
            }));
        let queue = usize::from(settings.inflight).max(1);
        // The request queue also carries the subscriptions and the disconnect.
        let (client, eventloop) = AsyncClient::new(options, queue + settings.batch_size + 16);
        let (to_batcher, from_poller) = mpsc::channel(queue);
        // Which connection the broker's messages come on: a new one after every error.
        let connection = Arc::new(AtomicU64::new(0));
        let batcher = tokio::spawn({
            let ingest = self.clone();
            let settings = settings.clone();
            let client = client.clone();
            let connection = connection.clone();
            async move { ingest.batch(&settings, &client, &connection, from_poller).await }
        });
        let polled = self.poll(settings, &client, eventloop, (&connection, to_batcher), shutdown).await;
        // The poller has stopped (and dropped its end of the queue): the batcher stores and
        // acknowledges what it holds, then ends.
        batcher.await.context("the batcher panicked")?;
        polled
    }

    async fn poll(
        &self,
        settings: &IngestSettings,
        client: &AsyncClient,
        mut eventloop: EventLoop,
        (connection, to_batcher): (&AtomicU64, mpsc::Sender<(u64, Publish)>),
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(100);
        // Subscriptions the broker has yet to confirm on this connection.
        let mut unconfirmed = 0;
        // Subscriptions not yet handed to the connection. The poller never waits for room in
        // the connection's request queue: the batcher fills it with acknowledgements, and only
        // this loop, polling, empties it. (Waiting there once stopped the ingest for good.)
        let mut to_subscribe: VecDeque<(String, QoS)> = VecDeque::new();
        loop {
            while let Some((filter, qos)) = to_subscribe.front() {
                if client.try_subscribe(filter.clone(), *qos).is_err() {
                    break;
                }
                to_subscribe.pop_front();
            }
            let event = tokio::select! {
                () = shutdown.cancelled() => break,
                event = eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Incoming::Publish(publish)))
                    if publish.topic.starts_with(REPLICAS_PREFIX.as_bytes()) =>
                {
                    self.take_in_replica(settings, &publish);
                }
                Ok(Event::Incoming(Incoming::Publish(publish))) => {
                    self.stats.messages.fetch_add(1, Ordering::Relaxed);
                    if publish.dup {
                        self.stats.redelivered.fetch_add(1, Ordering::Relaxed);
                    }
                    let depth = (to_batcher.max_capacity() - to_batcher.capacity()) as u64;
                    self.stats.queue_high_water.fetch_max(depth + 1, Ordering::Relaxed);
                    // While the batcher is behind, stop reading: the broker waits.
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        sent = to_batcher.send((connection.load(Ordering::SeqCst), publish)) => {
                            if sent.is_err() {
                                anyhow::bail!("the batcher stopped");
                            }
                        }
                    }
                }
                Ok(Event::Incoming(Incoming::ConnAck(ConnAck { session_present, .. }))) => {
                    backoff = Duration::from_millis(100);
                    self.stats.connections.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(session_present, "the ingest is connected to the broker");
                    self.stats.subscribed.store(false, Ordering::Relaxed);
                    // Also when the session is present: mosquitto 2.0 restores a session from its
                    // persistence without its shared subscriptions. Subscribing again is harmless
                    // (the same filter replaces itself).
                    to_subscribe = subscriptions(settings);
                    unconfirmed = to_subscribe.len();
                }
                Ok(Event::Incoming(Incoming::SubAck(_))) => {
                    unconfirmed = unconfirmed.saturating_sub(1);
                    if unconfirmed == 0 {
                        self.stats.subscribed.store(true, Ordering::Relaxed);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    // What came on the lost connection is not acknowledged on the next: the
                    // broker sends it again there, and it is acknowledged then. An old packet
                    // id on a new connection can name another message, one not yet stored
                    // (mosquitto 2.0.11 reuses ids when it overruns the receive maximum).
                    connection.fetch_add(1, Ordering::SeqCst);
                    self.stats.subscribed.store(false, Ordering::Relaxed);
                    tracing::warn!(error = %e, retry_in = ?backoff, "the ingest lost the broker");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        // Let the batcher finish while the connection still carries its acknowledgements.
        drop(to_batcher);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.stats.acknowledged.load(Ordering::Relaxed) + self.stats.superseded.load(Ordering::Relaxed)
            < self.stats.messages.load(Ordering::Relaxed)
            && Instant::now() < deadline
        {
            if tokio::time::timeout_at(deadline, eventloop.poll()).await.is_err() {
                break;
            }
        }
        // The request queue may still be full of acknowledgements: poll until it takes the
        // DISCONNECT, then keep polling, or DISCONNECT is never sent.
        let deadline = Instant::now() + Duration::from_secs(5);
        while client.try_disconnect().is_err() && Instant::now() < deadline {
            if tokio::time::timeout_at(deadline, eventloop.poll()).await.is_err() {
                break;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), async { while eventloop.poll().await.is_ok() {} }).await;
        Ok(())
    }

    async fn batch(
        &self,
        settings: &IngestSettings,
        client: &AsyncClient,
        connection: &AtomicU64,
        mut queue: mpsc::Receiver<(u64, Publish)>,
    ) {
        let mut batch = Vec::with_capacity(settings.batch_size);
        // Which connection each message of the batch came on.
        let mut came_on = Vec::with_capacity(settings.batch_size);
        let mut unsent = VecDeque::new();
        loop {
            self.hand_over(client, connection, &mut unsent);
            let first = if unsent.is_empty() {
                queue.recv().await
            } else {
                // Come back for the acknowledgements the connection could not take yet.
                match tokio::time::timeout(Duration::from_millis(5), queue.recv()).await {
                    Ok(first) => first,
                    Err(_) => continue,
                }
            };
            let Some((on, first)) = first else { break };
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
            if settings.replicated {
                self.share(settings, client, &stored);
            }
            unsent.extend(came_on.drain(..).zip(batch.drain(..)).map(|(on, mut publish)| {
                // Only the packet id and QoS are needed to acknowledge.
                publish.payload = Default::default();
                publish.topic = Default::default();
                (on, publish)
            }));
        }
        // The poller has stopped reading; it still carries acknowledgements until its deadline.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !unsent.is_empty() && Instant::now() < deadline {
            self.hand_over(client, connection, &mut unsent);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Hands the connection as many acknowledgements as it takes now, and drops those of
    /// messages that came on an earlier connection.
    fn hand_over(&self, client: &AsyncClient, connection: &AtomicU64, unsent: &mut VecDeque<(u64, Publish)>) {
        while let Some((on, publish)) = unsent.front() {
            if *on != connection.load(Ordering::SeqCst) {
                unsent.pop_front();
                self.stats.superseded.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if client.try_ack(publish).is_err() {
                return;
            }
            unsent.pop_front();
            self.stats.acknowledged.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Publishes the newest packet of each bike in `packets`, and its newest telemetry, for the
    /// other replicas. Best effort (QoS 0, dropped when the connection's queue is full): the
    /// packets are stored already, and a replica that misses one catches up with the next.
    fn share(&self, settings: &IngestSettings, client: &AsyncClient, packets: &[Packet]) {
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
            return;
        }
        let mut envelopes = Vec::with_capacity(newest.len() * 2);
        for (packet, telemetry) in newest.into_values() {
            envelopes.push(envelope(packet));
            if let Some(telemetry) = telemetry.filter(|t| t.seq != packet.seq) {
                envelopes.push(envelope(telemetry));
            }
        }
        let payload = Batch { packets: envelopes }.encode_to_vec();
        if client.try_publish(replica_topic(&settings.client_id), QoS::AtMostOnce, false, payload).is_err() {
            tracing::debug!("the connection's queue is full; this batch's latest states are not shared");
        }
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

    #[tokio::test]
    async fn a_message_from_an_earlier_connection_is_not_acknowledged_on_this_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::sqlite::SqliteStore::open(&dir.path().join("t.db")).await.expect("store");
        let ingest = Ingest {
            store: Arc::new(store),
            standings: Standings::default(),
            latest: Latest::default(),
            stats: Arc::new(IngestStats::default()),
        };
        // Never connected: the acknowledgements only go into its request queue.
        let (client, _eventloop) = AsyncClient::new(MqttOptions::new("t", "127.0.0.1", 9), 10);
        let publish = |pkid| {
            let mut publish = Publish::new("bikes/x/telemetry", QoS::AtLeastOnce, Vec::new(), None);
            publish.pkid = pkid;
            publish
        };
        let connection = AtomicU64::new(2);
        let mut unsent: VecDeque<(u64, Publish)> = [(1, publish(7)), (2, publish(8)), (1, publish(9))].into();
        ingest.hand_over(&client, &connection, &mut unsent);
        assert!(unsent.is_empty());
        assert_eq!(ingest.stats.acknowledged.load(Ordering::Relaxed), 1, "only the one from this connection");
        assert_eq!(ingest.stats.superseded.load(Ordering::Relaxed), 2);
    }
}
