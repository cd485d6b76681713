//! One simulated bike at work: the ride model moved on by the wall clock, each thing it
//! records put in an envelope and published on the bike's topic, or kept in the outbox while
//! the bike has no coverage (or no connection) and sent as batches when it is back; and the
//! bad packets it was asked to send.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use fleet_proto::{DeviceId, Envelope, Message, Topic, envelope::Body, topic::Kind};
use rand::rngs::StdRng;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::{
    bad::{self, BadKind},
    ledger::Class,
    link::Link,
    offline::{Change, Coverage, Outbox},
    recorder::Recorder,
    report::{BikeReport, BikeStats},
    ride::{Output, Ride},
};

/// A bad packet a bike is to send; `other` is the bike it names or whose topic it uses.
#[derive(Clone, Debug)]
pub struct BadOrder {
    pub kind: BadKind,
    pub other: DeviceId,
}

pub struct Bike {
    pub serial: String,
    pub ride: Ride,
    pub recorder: Recorder,
    pub coverage: Coverage,
    pub outbox: Outbox,
    pub link: Link,
    pub stats: Arc<BikeStats>,
    pub bad: VecDeque<BadOrder>,
    /// For the bad packets' bytes.
    pub rng: StdRng,
    pub batch_max: usize,
}

/// How a bike's task keeps time.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How often the ride model is moved on.
    pub tick: Duration,
    /// At shutdown: how long to send what is held and get it all acknowledged.
    pub ack_timeout: Duration,
}

impl Bike {
    /// Rides until `stop`, then parks, sends what it holds, waits for the acknowledgements
    /// and disconnects.
    pub async fn run(mut self, stop: CancellationToken, timing: Timing) -> BikeReport {
        // The ride's time zero on the wall clock: packets are stamped with the bike's clock.
        let origin = Utc::now();
        let started = Instant::now();
        let mut last = started;
        let mut ticker = tokio::time::interval(timing.tick);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let now = Instant::now();
            let dt = now - last;
            last = now;
            for output in self.ride.advance(dt) {
                self.emit(output, origin);
            }
            BikeStats::set(&self.stats.riding, self.ride.is_riding());
            match self.coverage.advance(self.ride.now(), dt, self.ride.is_riding()) {
                Some(Change::Lost) => {
                    debug!(device = %self.recorder.device(), "lost coverage");
                    self.link.go_offline();
                    BikeStats::add(&self.stats.offline_spells, 1);
                    BikeStats::set(&self.stats.offline, true);
                }
                Some(Change::Regained) => self.regain(),
                None => {}
            }
            self.send_bad(origin);
            self.flush();
        }
        self.wind_down(origin, timing).await
    }

    async fn wind_down(mut self, origin: DateTime<Utc>, timing: Timing) -> BikeReport {
        let deadline = Instant::now() + timing.ack_timeout;
        for output in self.ride.park_now() {
            self.emit(output, origin);
        }
        BikeStats::set(&self.stats.riding, false);
        if self.coverage.regain_now().is_some() {
            self.regain();
        }
        while (!self.outbox.is_empty() || !self.bad.is_empty()) && Instant::now() < deadline {
            if self.link.wait_connected(deadline).await.is_err() {
                break;
            }
            self.send_bad(origin);
            self.flush();
            if !self.outbox.is_empty() {
                // The client holds all it can: let it send some.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.link.settle(deadline).await;
        let unsent = self.outbox.dropped() + self.outbox.len() as u64;
        let report = BikeReport::new(self.recorder.device().clone(), self.serial, &self.stats, unsent);
        self.link.close(Duration::from_secs(2)).await;
        report
    }

    /// Sends only the bad orders, as the bike whose certificate was revoked does, and waits
    /// (up to `ack_timeout`) for the broker to take them.
    pub async fn send_orders_only(mut self, ack_timeout: Duration) -> Arc<BikeStats> {
        let origin = Utc::now();
        let deadline = Instant::now() + ack_timeout;
        while !self.bad.is_empty() && self.link.wait_connected(deadline).await.is_ok() {
            self.send_bad(origin);
            if !self.bad.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.link.settle(deadline).await;
        self.link.close(Duration::from_secs(2)).await;
        self.stats
    }

    fn regain(&mut self) {
        debug!(device = %self.recorder.device(), held = self.outbox.len(), "coverage is back");
        self.link.go_online();
        BikeStats::set(&self.stats.offline, false);
    }

    /// Whether packets can go now.
    fn can_send(&self) -> bool {
        self.coverage.is_online() && self.link.is_connected()
    }

    fn topic(&self, kind: Kind) -> String {
        Topic::new(self.recorder.device().clone(), kind).to_string()
    }

    fn emit(&mut self, output: Output, origin: DateTime<Utc>) {
        if matches!(output.body, Body::TripStart(_)) {
            BikeStats::add(&self.stats.trips, 1);
        }
        let envelope = self.recorder.record(output.body, wall_clock(origin, output.at));
        // Behind a non-empty outbox a packet waits its turn: the fleet gets them in order.
        if self.can_send() && self.outbox.is_empty() {
            let topic = self.topic(envelope.topic_kind().unwrap_or(Kind::Events));
            if self.link.try_publish(topic, envelope.encode_to_vec(), Class::Good { packets: 1 }) {
                BikeStats::add(&self.stats.sent, 1);
                return;
            }
        }
        self.outbox.push(envelope);
    }

    /// Sends the outbox, as batches, while it can.
    fn flush(&mut self) {
        while self.can_send() {
            let Some(batch) = self.outbox.next_batch(self.batch_max) else { return };
            let n = batch.packets.len();
            let packets = u32::try_from(n).unwrap_or(u32::MAX);
            if !self.link.try_publish(self.topic(Kind::Batch), batch.encode_to_vec(), Class::Good { packets }) {
                return;
            }
            self.outbox.sent(n);
            BikeStats::add(&self.stats.sent, n as u64);
            BikeStats::add(&self.stats.batches, 1);
            BikeStats::add(&self.stats.batched, n as u64);
        }
    }

    fn send_bad(&mut self, origin: DateTime<Utc>) {
        while self.can_send() {
            let Some(order) = self.bad.front().cloned() else { return };
            let (topic, payload) = match order.kind {
                BadKind::Malformed => (self.topic(Kind::Telemetry), bad::malformed(&mut self.rng)),
                BadKind::OutOfRange => {
                    let envelope = bad::out_of_range(self.telemetry_now(origin), &mut self.rng);
                    (self.topic(Kind::Telemetry), envelope.encode_to_vec())
                }
                BadKind::DeviceMismatch => {
                    let envelope = bad::device_mismatch(self.telemetry_now(origin), &order.other);
                    (self.topic(Kind::Telemetry), envelope.encode_to_vec())
                }
                BadKind::WrongTopic => {
                    let n = u32::try_from(BikeStats::get(&self.stats.bad[order.kind.index()])).unwrap_or(u32::MAX);
                    let (topic, payload) = bad::wrong_topic(self.telemetry_now(origin), &order.other, n);
                    (topic.to_string(), payload)
                }
                // Sent by a bike of its own, whose certificate is revoked (see `run`): its
                // packets are good ones, but for the revocation.
                BadKind::Revoked => (self.topic(Kind::Telemetry), self.telemetry_now(origin).encode_to_vec()),
            };
            if !self.link.try_publish(topic, payload, Class::Bad(order.kind)) {
                return;
            }
            self.bad.pop_front();
            BikeStats::add(&self.stats.bad[order.kind.index()], 1);
        }
    }

    /// A telemetry packet of what the bike reads now, in its sequence.
    fn telemetry_now(&mut self, origin: DateTime<Utc>) -> Envelope {
        let telemetry = self.ride.telemetry();
        self.recorder.record(Body::Telemetry(telemetry), wall_clock(origin, self.ride.now()))
    }
}

/// The wall-clock time of `at` of ride time.
fn wall_clock(origin: DateTime<Utc>, at: Duration) -> DateTime<Utc> {
    origin + TimeDelta::from_std(at).expect("a ride lasts less than 292 million years")
}
