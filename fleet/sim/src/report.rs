//! What a run counts: live, per bike ([`BikeStats`], shared with the bike's task and its MQTT
//! link), as progress lines while it runs, and at the end as a [`Report`].

use std::{
    collections::BTreeMap,
    fmt,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::Duration,
};

use fleet_proto::DeviceId;

use crate::{bad::BadKind, duration::format_duration};

/// One bike's counts, updated as it rides.
#[derive(Debug, Default)]
pub struct BikeStats {
    /// Good packets handed to the MQTT client (one per envelope, batches included).
    pub sent: AtomicU64,
    /// Good packets the broker acknowledged.
    pub acked: AtomicU64,
    /// Good packets lost with a session the broker did not keep.
    pub lost: AtomicU64,
    /// Bad packets sent, by [`BadKind::index`].
    pub bad: [AtomicU64; BadKind::ALL.len()],
    pub trips: AtomicU64,
    pub offline_spells: AtomicU64,
    pub batches: AtomicU64,
    /// Packets that went in batches.
    pub batched: AtomicU64,
    pub riding: AtomicBool,
    pub offline: AtomicBool,
}

impl BikeStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn set(flag: &AtomicBool, value: bool) {
        flag.store(value, Ordering::Relaxed);
    }
}

/// The line logged every so often while the bikes ride.
pub fn progress_line(elapsed: Duration, bikes: &[&BikeStats]) -> String {
    let sum = |counter: fn(&BikeStats) -> &AtomicU64| bikes.iter().map(|b| BikeStats::get(counter(b))).sum::<u64>();
    let count = |flag: fn(&BikeStats) -> &AtomicBool| bikes.iter().filter(|b| flag(b).load(Ordering::Relaxed)).count();
    let bad: u64 = bikes.iter().flat_map(|b| b.bad.iter()).map(BikeStats::get).sum();
    format!(
        "{}: {} bikes ({} riding, {} offline), good packets {} sent, {} acknowledged, {} batches, {} bad",
        format_duration(Duration::from_secs(elapsed.as_secs())),
        bikes.len(),
        count(|b| &b.riding),
        count(|b| &b.offline),
        sum(|b| &b.sent),
        sum(|b| &b.acked),
        sum(|b| &b.batches),
        bad,
    )
}

/// One bike's part in a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BikeReport {
    pub device_id: DeviceId,
    /// The serial it was registered with.
    pub serial: String,
    /// Good packets sent, and acknowledged by the broker.
    pub sent: u64,
    pub acknowledged: u64,
    /// Packets the API says are stored for it, with `--verify`.
    pub stored: Option<u64>,
    pub trips: u64,
    pub offline_spells: u64,
    pub batches: u64,
    pub batched_packets: u64,
    /// Packets dropped from a full outbox, or still held when the run ended: never sent.
    pub unsent: u64,
}

impl BikeReport {
    pub fn new(device_id: DeviceId, serial: String, stats: &BikeStats, unsent: u64) -> Self {
        Self {
            device_id,
            serial,
            sent: BikeStats::get(&stats.sent),
            acknowledged: BikeStats::get(&stats.acked),
            stored: None,
            trips: BikeStats::get(&stats.trips),
            offline_spells: BikeStats::get(&stats.offline_spells),
            batches: BikeStats::get(&stats.batches),
            batched_packets: BikeStats::get(&stats.batched),
            unsent,
        }
    }
}

/// What a run did, and whether it went as it should.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub run_id: String,
    /// How long the bikes rode.
    pub elapsed: Duration,
    pub bikes: Vec<BikeReport>,
    /// Bad packets sent, by kind (only the kinds asked for).
    pub bad: BTreeMap<BadKind, u64>,
    /// Whether the stored counts were checked (`--verify`).
    pub verified: bool,
}

impl Report {
    pub fn sent(&self) -> u64 {
        self.bikes.iter().map(|b| b.sent).sum()
    }

    pub fn acknowledged(&self) -> u64 {
        self.bikes.iter().map(|b| b.acknowledged).sum()
    }

    /// Packets stored, if the run was verified.
    pub fn stored(&self) -> Option<u64> {
        self.verified.then(|| self.bikes.iter().map(|b| b.stored.unwrap_or(0)).sum())
    }

    /// Why the run failed: good packets not acknowledged, or (verified) not stored. Bad
    /// packets never fail a run.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        let (sent, acknowledged) = (self.sent(), self.acknowledged());
        if acknowledged < sent {
            failures
                .push(format!("{} of {sent} good packets were never acknowledged by the broker", sent - acknowledged));
        }
        for bike in &self.bikes {
            match bike.stored {
                Some(stored) if stored < bike.acknowledged => failures
                    .push(format!("{}: {} acknowledged but only {stored} stored", bike.device_id, bike.acknowledged)),
                None if self.verified => failures.push(format!("{}: its stored count is unknown", bike.device_id)),
                _ => {}
            }
        }
        failures
    }

    /// Bikes with more packets stored than they sent: something got in under their name
    /// (a wrong-topic packet the broker let through?). Worth a look, but no failure.
    pub fn surplus(&self) -> Vec<(&DeviceId, u64)> {
        self.bikes.iter().filter_map(|b| b.stored.filter(|&s| s > b.sent).map(|s| (&b.device_id, s - b.sent))).collect()
    }

    pub fn is_success(&self) -> bool {
        self.failures().is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = |field: fn(&BikeReport) -> u64| self.bikes.iter().map(field).sum::<u64>();
        let elapsed = format_duration(Duration::from_secs(self.elapsed.as_secs_f64().round() as u64));
        writeln!(f, "run {}: {} bikes rode for {elapsed}", self.run_id, self.bikes.len())?;
        write!(f, "  good packets  {} sent, {} acknowledged", self.sent(), self.acknowledged())?;
        match self.stored() {
            Some(stored) => writeln!(f, ", {stored} stored")?,
            None => writeln!(f)?,
        }
        writeln!(f, "  trips         {}", total(|b| b.trips))?;
        writeln!(
            f,
            "  offline       {} spells, {} batches carrying {} packets, {} never sent",
            total(|b| b.offline_spells),
            total(|b| b.batches),
            total(|b| b.batched_packets),
            total(|b| b.unsent),
        )?;
        if !self.bad.is_empty() {
            let kinds: Vec<String> = self.bad.iter().map(|(kind, n)| format!("{kind} {n}")).collect();
            writeln!(f, "  bad packets   {} (sent, not counted as good)", kinds.join(", "))?;
        }
        for (device, surplus) in self.surplus() {
            writeln!(f, "  warning: {device} has {surplus} more packets stored than it sent")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bike(name: &str, sent: u64, acknowledged: u64, stored: Option<u64>) -> BikeReport {
        BikeReport {
            device_id: DeviceId::parse(name).expect("id"),
            serial: format!("sim-test-{name}"),
            sent,
            acknowledged,
            stored,
            trips: 2,
            offline_spells: 1,
            batches: 1,
            batched_packets: 40,
            unsent: 0,
        }
    }

    fn report(bikes: Vec<BikeReport>, verified: bool) -> Report {
        Report {
            run_id: "test".into(),
            elapsed: Duration::from_secs(90),
            bikes,
            bad: BTreeMap::from([(BadKind::Malformed, 2)]),
            verified,
        }
    }

    #[test]
    fn a_run_succeeds_when_everything_sent_is_acknowledged_and_stored() {
        let ok = report(vec![bike("a", 10, 10, Some(10)), bike("b", 5, 5, Some(5))], true);
        assert!(ok.is_success(), "{:?}", ok.failures());
        let text = ok.to_string();
        assert!(text.contains("15 sent, 15 acknowledged, 15 stored"), "{text}");
        assert!(text.contains("malformed 2"), "{text}");
        assert!(text.contains("rode for 1m30s"), "{text}");
    }

    #[test]
    fn unacknowledged_or_unstored_packets_fail_the_run_but_bad_ones_do_not() {
        let unacked = report(vec![bike("a", 10, 9, None)], false);
        assert_eq!(unacked.failures(), ["1 of 10 good packets were never acknowledged by the broker"]);
        let unstored = report(vec![bike("a", 10, 10, Some(8)), bike("b", 1, 1, None)], true);
        assert_eq!(unstored.failures(), ["a: 10 acknowledged but only 8 stored", "b: its stored count is unknown"]);
        let surplus = report(vec![bike("a", 3, 3, Some(4))], true);
        assert!(surplus.is_success());
        let unacknowledged_but_stored = report(vec![bike("a", 3, 2, Some(3))], true);
        assert!(unacknowledged_but_stored.surplus().is_empty(), "sent, stored, its PUBACK lost: no surplus");
        assert!(surplus.to_string().contains("warning: a has 1 more packets stored than it sent"));
    }

    #[test]
    fn progress_sums_the_bikes() {
        let (a, b) = (BikeStats::default(), BikeStats::default());
        BikeStats::add(&a.sent, 3);
        BikeStats::add(&b.sent, 4);
        BikeStats::add(&b.acked, 4);
        BikeStats::add(&b.bad[BadKind::Revoked.index()], 1);
        BikeStats::set(&a.riding, true);
        let line = progress_line(Duration::from_millis(10_400), &[&a, &b]);
        assert_eq!(line, "10s: 2 bikes (1 riding, 0 offline), good packets 7 sent, 4 acknowledged, 0 batches, 1 bad");
    }
}
