//! Turns what a bike recorded into [`Envelope`]s: its device id, the schema version, the
//! time on the bike's clock, and the next [`Seq`]: the boot counter in the high half, a
//! counter since that boot in the low half, so it rises with every packet, across reboots.

use chrono::{DateTime, Utc};
use fleet_proto::{DeviceId, Envelope, SCHEMA_VERSION, Seq, Timestamp, envelope::Body};

pub struct Recorder {
    device: DeviceId,
    first_boot: u32,
    last: Option<Seq>,
}

impl Recorder {
    /// The recorder of `device`, whose first packet will be of boot `boot` (a bike straight
    /// from the factory boots for the first time: 1).
    pub fn new(device: DeviceId, boot: u32) -> Self {
        Self { device, first_boot: boot, last: None }
    }

    pub fn device(&self) -> &DeviceId {
        &self.device
    }

    /// The envelope of `body`, recorded at `at`. A [`Boot`](fleet_proto::Boot) body starts a
    /// new boot: its counter is 0.
    pub fn record(&mut self, body: Body, at: DateTime<Utc>) -> Envelope {
        let seq = match (self.last, &body) {
            (None, _) => Seq::new(self.first_boot, 0),
            (Some(last), Body::Boot(_)) => last.rebooted(),
            (Some(last), _) => last.next(),
        };
        self.last = Some(seq);
        Envelope {
            schema_version: SCHEMA_VERSION,
            device_id: self.device.as_str().to_owned(),
            seq: seq.into(),
            recorded_at: Some(timestamp(at)),
            body: Some(body),
        }
    }
}

/// `at` as a protobuf timestamp.
pub fn timestamp(at: DateTime<Utc>) -> Timestamp {
    #[allow(clippy::cast_possible_wrap)] // below a billion nanoseconds
    Timestamp { seconds: at.timestamp(), nanos: at.timestamp_subsec_nanos() as i32 }
}

#[cfg(test)]
mod tests {
    use fleet_proto::{Boot, Fault};

    use super::*;

    #[test]
    fn the_sequence_rises_across_reboots() {
        let device = DeviceId::parse("bike-1").expect("id");
        let mut recorder = Recorder::new(device, 1);
        let at = DateTime::from_timestamp(1_800_000_000, 5).expect("time");
        let boot = || Body::Boot(Boot::default());
        let fault = || Body::Fault(Fault::default());
        let seqs: Vec<Seq> = [boot(), fault(), fault(), boot(), fault()]
            .into_iter()
            .map(|b| recorder.record(b, at).seq.into())
            .collect();
        assert_eq!(seqs, [Seq::new(1, 0), Seq::new(1, 1), Seq::new(1, 2), Seq::new(2, 0), Seq::new(2, 1)]);
        let envelope = recorder.record(fault(), at);
        assert_eq!(envelope.device_id, "bike-1");
        assert_eq!(envelope.schema_version, SCHEMA_VERSION);
        assert_eq!(envelope.recorded_at, Some(Timestamp { seconds: 1_800_000_000, nanos: 5 }));
    }
}
