//! The wire between bikes and the fleet services: the messages of `bike.proto` (compiled with
//! protox at build time, so no system `protoc` is needed) and the MQTT topics they travel on.
//!
//! A bike publishes one [`Envelope`] per packet on [`Topic::Telemetry`] or [`Topic::Events`],
//! and a [`Batch`] of what it buffered offline on [`Topic::Batch`]. Every envelope names its
//! [`SCHEMA_VERSION`]; `(device_id, seq)` names a packet, so one delivered twice is stored once.

mod generated {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/fleet.bike.v1.rs"));
}

pub use generated::*;
pub use prost::{self, Message};
pub use prost_types::Timestamp;

mod seq;
pub mod topic;

pub use seq::Seq;
pub use topic::{DeviceId, Topic};

/// The version of `bike.proto` this build speaks: envelopes name it in `schema_version`.
pub const SCHEMA_VERSION: u32 = 1;

impl Envelope {
    /// What the body is, for logs, metrics and quarantine reasons (`none` when it has none).
    pub fn kind(&self) -> &'static str {
        self.body.as_ref().map_or("none", envelope::Body::kind)
    }

    /// The topic this envelope travels on by itself.
    pub fn topic_kind(&self) -> Option<topic::Kind> {
        match &self.body {
            Some(envelope::Body::Telemetry(_)) => Some(topic::Kind::Telemetry),
            Some(_) => Some(topic::Kind::Events),
            None => None,
        }
    }
}

impl envelope::Body {
    /// What the body is: `telemetry`, `trip_start`, `trip_end`, `fault` or `boot`.
    pub fn kind(&self) -> &'static str {
        match self {
            envelope::Body::Telemetry(_) => "telemetry",
            envelope::Body::TripStart(_) => "trip_start",
            envelope::Body::TripEnd(_) => "trip_end",
            envelope::Body::Fault(_) => "fault",
            envelope::Body::Boot(_) => "boot",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn telemetry(seq: Seq) -> Envelope {
        Envelope {
            schema_version: SCHEMA_VERSION,
            device_id: "bike-0001".into(),
            seq: seq.into(),
            recorded_at: Some(Timestamp { seconds: 1_796_000_000, nanos: 250_000_000 }),
            body: Some(envelope::Body::Telemetry(Telemetry {
                lat: 52.520_008,
                lon: 13.404_954,
                altitude_m: 34.0,
                gps_fix: GpsFix::ThreeD.into(),
                hdop: 0.9,
                speed_kmh: 21.5,
                heading_deg: 270.0,
                battery_soc_pct: 81.0,
                battery_voltage_v: 39.4,
                battery_current_a: 6.2,
                battery_temp_c: 24.0,
                motor_power_w: 240.0,
                motor_temp_c: 41.0,
                assist_level: 2,
                cadence_rpm: 72.0,
                odometer_m: 1_234_567,
            })),
        }
    }

    #[test]
    fn an_envelope_survives_the_wire_unchanged() {
        let sent = telemetry(Seq::new(3, 17));
        let received = Envelope::decode(sent.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(received, sent);
        assert_eq!(received.kind(), "telemetry");
        assert_eq!(Seq::from(received.seq), Seq::new(3, 17));
    }

    #[test]
    fn a_batch_carries_its_packets_in_order() {
        let packets: Vec<Envelope> = (0..100).map(|n| telemetry(Seq::new(1, n))).collect();
        let batch = Batch { packets: packets.clone() };
        let received = Batch::decode(batch.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(received.packets, packets);
    }

    #[test]
    fn bytes_that_are_not_an_envelope_do_not_decode() {
        assert!(Envelope::decode(&b"\xff\xff\xff\xff not protobuf"[..]).is_err());
        // Cut short in the middle of the body.
        let whole = telemetry(Seq::new(1, 1)).encode_to_vec();
        assert!(Envelope::decode(&whole[..whole.len() - 3]).is_err());
    }

    #[test]
    fn events_and_telemetry_have_their_own_topics() {
        let boot = Envelope {
            body: Some(envelope::Body::Boot(Boot {
                firmware_version: "2.4.1".into(),
                reset_reason: ResetReason::Watchdog.into(),
            })),
            ..telemetry(Seq::new(2, 0))
        };
        assert_eq!(boot.kind(), "boot");
        assert_eq!(boot.topic_kind(), Some(topic::Kind::Events));
        assert_eq!(telemetry(Seq::new(2, 1)).topic_kind(), Some(topic::Kind::Telemetry));
        assert_eq!(Envelope::default().topic_kind(), None);
        assert_eq!(Envelope::default().kind(), "none");
    }
}
