//! Which acknowledgement is for which publish. A bike's good and bad packets share one MQTT
//! connection, and a PUBACK names only a packet id, which the client assigns when it sends
//! the publish, not when it is handed one. The ledger follows the client's events:
//!
//! - [`Ledger::queue`] when a publish is handed to the client (they are sent in that order);
//! - [`Ledger::sent`] on `Outgoing::Publish(pkid)`: the oldest queued publish got `pkid`,
//!   unless `pkid` is already in flight, which is the client sending it again after a
//!   reconnection;
//! - [`Ledger::acked`] on `PubAck(pkid)`;
//! - [`Ledger::session_lost`] when the broker kept no session: what was in flight, and the
//!   publishes the client still held, will never be sent.

use std::collections::{HashMap, VecDeque};

use crate::bad::BadKind;

/// What a publish carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// `packets` good packets (one envelope, or a batch of them).
    Good {
        packets: u32,
    },
    Bad(BadKind),
}

#[derive(Debug, Default)]
pub struct Ledger {
    queued: VecDeque<Class>,
    in_flight: HashMap<u16, Class>,
}

impl Ledger {
    /// A publish of `class` was handed to the client.
    pub fn queue(&mut self, class: Class) {
        self.queued.push_back(class);
    }

    /// The client refused the publish last queued.
    pub fn unqueue_last(&mut self) {
        self.queued.pop_back();
    }

    /// The client sent a publish with packet id `pkid`.
    pub fn sent(&mut self, pkid: u16) {
        if self.in_flight.contains_key(&pkid) {
            return;
        }
        if let Some(class) = self.queued.pop_front() {
            self.in_flight.insert(pkid, class);
        }
    }

    /// The broker acknowledged `pkid`: what it carried.
    pub fn acked(&mut self, pkid: u16) -> Option<Class> {
        self.in_flight.remove(&pkid)
    }

    /// The broker started a new session: the publishes in flight and the `never_sent` oldest
    /// queued ones are gone. Returns how many good packets were lost with them.
    pub fn session_lost(&mut self, never_sent: usize) -> u64 {
        let lost = self.in_flight.drain().map(|(_, class)| class);
        let lost: Vec<Class> = lost.chain(self.queued.drain(..never_sent.min(self.queued.len()))).collect();
        lost.into_iter().map(|class| if let Class::Good { packets } = class { u64::from(packets) } else { 0 }).sum()
    }

    /// Nothing is waiting to be sent or acknowledged.
    pub fn is_settled(&self) -> bool {
        self.queued.is_empty() && self.in_flight.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: Class = Class::Good { packets: 1 };
    const BATCH: Class = Class::Good { packets: 500 };
    const BAD: Class = Class::Bad(BadKind::Malformed);

    #[test]
    fn acknowledgements_are_matched_to_publishes_in_any_order() {
        let mut ledger = Ledger::default();
        [ONE, BAD, BATCH].into_iter().for_each(|c| ledger.queue(c));
        (1..=3).for_each(|pkid| ledger.sent(pkid));
        assert_eq!(ledger.acked(3), Some(BATCH));
        assert_eq!(ledger.acked(1), Some(ONE));
        assert!(!ledger.is_settled());
        assert_eq!(ledger.acked(2), Some(BAD));
        assert_eq!(ledger.acked(2), None, "an acknowledgement counts once");
        assert!(ledger.is_settled());
    }

    #[test]
    fn a_publish_sent_again_after_a_reconnection_is_not_a_new_one() {
        let mut ledger = Ledger::default();
        [ONE, BAD].into_iter().for_each(|c| ledger.queue(c));
        ledger.sent(1);
        // Reconnected: the client sends 1 again, then the next publish.
        ledger.sent(1);
        ledger.sent(2);
        assert_eq!(ledger.acked(1), Some(ONE));
        assert_eq!(ledger.acked(2), Some(BAD));
        // Packet ids are reused once acknowledged.
        ledger.queue(BATCH);
        ledger.sent(1);
        assert_eq!(ledger.acked(1), Some(BATCH));
    }

    #[test]
    fn a_refused_publish_leaves_no_trace() {
        let mut ledger = Ledger::default();
        ledger.queue(ONE);
        ledger.queue(BAD);
        ledger.unqueue_last();
        ledger.sent(7);
        assert_eq!(ledger.acked(7), Some(ONE));
        assert!(ledger.is_settled());
    }

    #[test]
    fn a_lost_session_loses_what_was_in_flight_and_what_the_client_held() {
        let mut ledger = Ledger::default();
        [ONE, BATCH, BAD, ONE, ONE].into_iter().for_each(|c| ledger.queue(c));
        ledger.sent(1);
        ledger.sent(2);
        // Of the three not yet sent, the client held two when the connection dropped.
        assert_eq!(ledger.session_lost(2), 502);
        ledger.sent(1);
        assert_eq!(ledger.acked(1), Some(ONE), "the one handed over after the drop is sent");
        assert!(ledger.is_settled());
    }
}
