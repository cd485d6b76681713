//! Offline spells: when a bike loses coverage ([`Coverage`]), and what it keeps meanwhile
//! ([`Outbox`]): every packet, oldest first, sent on reconnection as [`Batch`]es.

use std::{collections::VecDeque, time::Duration};

use fleet_proto::{Batch, Envelope};
use rand::{RngExt, SeedableRng, rngs::StdRng};

use crate::duration::DurationRange;

/// The most packets one batch carries.
pub const MAX_BATCH: usize = 500;

/// When bikes lose coverage, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OfflineSettings {
    /// A spell starts after this much riding on average (spells are a Poisson process in
    /// riding time: a bike loses coverage on the move, in tunnels and dead spots); `None`
    /// for no spells.
    pub every: Option<Duration>,
    /// How long a spell lasts.
    pub length: DurationRange,
}

impl Default for OfflineSettings {
    fn default() -> Self {
        Self {
            every: Some(Duration::from_secs(60)),
            length: DurationRange { min: Duration::from_secs(10), max: Duration::from_secs(60) },
        }
    }
}

/// A change of coverage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Lost,
    Regained,
}

/// One bike's coverage over time.
pub struct Coverage {
    settings: OfflineSettings,
    rng: StdRng,
    state: State,
}

enum State {
    /// Online; coverage goes after this much more riding (s).
    Online { riding_left_s: f64 },
    /// Offline until then.
    Offline { until: Duration },
}

impl Coverage {
    pub fn new(settings: OfflineSettings, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let state = State::Online { riding_left_s: riding_until_lost(&settings, &mut rng) };
        Self { settings, rng, state }
    }

    pub fn is_online(&self) -> bool {
        matches!(self.state, State::Online { .. })
    }

    /// Moves on to `now`, `dt` after the last call, for which the bike was `riding` or not;
    /// says whether coverage went or came back.
    pub fn advance(&mut self, now: Duration, dt: Duration, riding: bool) -> Option<Change> {
        match &mut self.state {
            State::Online { riding_left_s } => {
                if riding {
                    *riding_left_s -= dt.as_secs_f64();
                }
                (*riding_left_s <= 0.0).then(|| {
                    self.state = State::Offline { until: now + self.settings.length.sample(&mut self.rng) };
                    Change::Lost
                })
            }
            State::Offline { until } => (*until <= now).then(|| self.regain()),
        }
    }

    /// Ends the spell now, if there is one (as when the simulator stops and every bike sends
    /// what it holds).
    pub fn regain_now(&mut self) -> Option<Change> {
        (!self.is_online()).then(|| self.regain())
    }

    fn regain(&mut self) -> Change {
        self.state = State::Online { riding_left_s: riding_until_lost(&self.settings, &mut self.rng) };
        Change::Regained
    }
}

fn riding_until_lost(settings: &OfflineSettings, rng: &mut StdRng) -> f64 {
    match settings.every {
        Some(every) if !every.is_zero() => -(1.0 - rng.random::<f64>()).ln() * every.as_secs_f64(),
        _ => f64::INFINITY,
    }
}

/// The packets a bike holds while it cannot send them, oldest first, up to a capacity past
/// which the oldest are dropped (and counted).
pub struct Outbox {
    packets: VecDeque<Envelope>,
    capacity: usize,
    dropped: u64,
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Self { packets: VecDeque::new(), capacity: capacity.max(1), dropped: 0 }
    }

    pub fn push(&mut self, envelope: Envelope) {
        if self.packets.len() >= self.capacity {
            self.packets.pop_front();
            self.dropped += 1;
        }
        self.packets.push_back(envelope);
    }

    pub fn len(&self) -> usize {
        self.packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// How many packets were dropped because the outbox was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The oldest packets, at most `max` (and at most [`MAX_BATCH`]), as one batch; they stay
    /// in the outbox until [`Outbox::sent`] says the batch went.
    pub fn next_batch(&self, max: usize) -> Option<Batch> {
        let n = self.packets.len().min(max.clamp(1, MAX_BATCH));
        (n > 0).then(|| Batch { packets: self.packets.range(..n).cloned().collect() })
    }

    /// Removes the `n` oldest packets: a batch of them went.
    pub fn sent(&mut self, n: usize) {
        self.packets.drain(..n.min(self.packets.len()));
    }
}

#[cfg(test)]
mod tests {
    use fleet_proto::Seq;

    use super::*;

    fn envelope(counter: u32) -> Envelope {
        Envelope { seq: Seq::new(1, counter).into(), ..Envelope::default() }
    }

    fn drain(outbox: &mut Outbox, max: usize) -> Vec<Vec<u32>> {
        let mut batches = Vec::new();
        while let Some(batch) = outbox.next_batch(max) {
            outbox.sent(batch.packets.len());
            batches.push(batch.packets.iter().map(|p| Seq::from(p.seq).counter).collect());
        }
        batches
    }

    #[test]
    fn the_outbox_goes_out_in_batches_of_at_most_500_oldest_first() {
        let mut outbox = Outbox::new(100_000);
        (0..1_234).for_each(|n| outbox.push(envelope(n)));
        let batches = drain(&mut outbox, 10_000);
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [500, 500, 234]);
        assert_eq!(batches.concat(), (0..1_234).collect::<Vec<_>>(), "every packet once, in order");
        assert!(outbox.is_empty());
        assert_eq!(outbox.next_batch(500), None, "nothing to send, no empty batch");

        (0..500).for_each(|n| outbox.push(envelope(n)));
        assert_eq!(drain(&mut outbox, 500).len(), 1, "exactly 500 is one batch");
        (0..7).for_each(|n| outbox.push(envelope(n)));
        assert_eq!(drain(&mut outbox, 3), [vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    }

    #[test]
    fn a_batch_not_sent_stays_in_the_outbox() {
        let mut outbox = Outbox::new(10);
        (0..4).for_each(|n| outbox.push(envelope(n)));
        let first = outbox.next_batch(500).expect("batch");
        assert_eq!(outbox.next_batch(500), Some(first), "the same packets until they are sent");
        outbox.sent(4);
        assert!(outbox.is_empty());
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_and_counts_them() {
        let mut outbox = Outbox::new(3);
        (0..5).for_each(|n| outbox.push(envelope(n)));
        assert_eq!(outbox.dropped(), 2);
        assert_eq!(drain(&mut outbox, 500), [vec![2, 3, 4]]);
    }

    #[test]
    fn spells_come_within_a_couple_of_minutes_of_riding_and_last_as_set() {
        let settings = OfflineSettings::default();
        let tick = Duration::from_secs(1);
        let mut soon = 0;
        for seed in 0..200 {
            let mut coverage = Coverage::new(settings, seed);
            let mut now = Duration::ZERO;
            let (mut lost_at, mut first_lost) = (None, None);
            while now < Duration::from_secs(3_600) {
                now += tick;
                match coverage.advance(now, tick, true) {
                    Some(Change::Lost) => {
                        lost_at = Some(now);
                        first_lost = first_lost.or(lost_at);
                    }
                    Some(Change::Regained) => {
                        let spell = now - lost_at.expect("lost first");
                        assert!(spell >= settings.length.min && spell <= settings.length.max + tick, "{spell:?}");
                        lost_at = None;
                    }
                    None => {}
                }
            }
            if first_lost.is_some_and(|at| at <= Duration::from_secs(120)) {
                soon += 1;
            }
        }
        // With a spell every 60 s of riding on average, 1 − e⁻² (86 %) of bikes have had one
        // by 2 min.
        assert!(soon > 150, "{soon} of 200 bikes lost coverage within 2 min");
    }

    #[test]
    fn parked_bikes_keep_coverage_and_no_spells_means_none() {
        let tick = Duration::from_secs(1);
        let mut parked = Coverage::new(OfflineSettings::default(), 3);
        let mut never = Coverage::new(OfflineSettings { every: None, ..OfflineSettings::default() }, 3);
        for s in 1..=36_000 {
            let now = Duration::from_secs(s);
            assert_eq!(parked.advance(now, tick, false), None);
            assert_eq!(never.advance(now, tick, true), None);
        }
        assert!(parked.is_online() && never.is_online());
    }

    #[test]
    fn a_spell_can_be_ended_at_once() {
        let mut coverage =
            Coverage::new(OfflineSettings { every: Some(Duration::from_millis(1)), ..OfflineSettings::default() }, 1);
        assert_eq!(coverage.advance(Duration::from_secs(1), Duration::from_secs(1), true), Some(Change::Lost));
        assert_eq!(coverage.regain_now(), Some(Change::Regained));
        assert_eq!(coverage.regain_now(), None);
        assert!(coverage.is_online());
    }
}
