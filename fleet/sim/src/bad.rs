//! Bad packets on demand, each of a kind the fleet must refuse without losing good ones:
//! garbage on a bike's own topic, a packet on another bike's topic, a packet naming another
//! bike, values out of range, and packets from a bike whose certificate was revoked while it
//! was connected.
//!
//! The builders here only shape the bytes; the bikes send them (see `bike.rs`), and the
//! simulator counts them apart from the good packets.

use std::{fmt, str::FromStr};

use fleet_proto::{DeviceId, Envelope, Message, Seq, Topic, envelope::Body, topic::Kind};
use rand::{Rng, RngExt};

/// A kind of bad packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BadKind {
    /// Random bytes on the bike's own telemetry topic: they do not decode.
    Malformed,
    /// A packet on another bike's topic, posing as that bike: the broker's ACL refuses it.
    WrongTopic,
    /// Telemetry with a speed of 150 km/h or a battery at 120 %.
    OutOfRange,
    /// Packets from a bike whose certificate is revoked while its session is open.
    Revoked,
    /// A packet on the bike's own topic that names another bike.
    DeviceMismatch,
}

impl BadKind {
    pub const ALL: [BadKind; 5] =
        [BadKind::Malformed, BadKind::WrongTopic, BadKind::OutOfRange, BadKind::Revoked, BadKind::DeviceMismatch];

    pub fn as_str(self) -> &'static str {
        match self {
            BadKind::Malformed => "malformed",
            BadKind::WrongTopic => "wrong-topic",
            BadKind::OutOfRange => "out-of-range",
            BadKind::Revoked => "revoked",
            BadKind::DeviceMismatch => "device-mismatch",
        }
    }

    /// Where the kind sits in [`BadKind::ALL`], for arrays of counts.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for BadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a text is not a bad-packet request; the message lists what would be.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidBadSpec(String);

/// `--bad KIND[=COUNT]`: send `count` packets of `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadSpec {
    pub kind: BadKind,
    pub count: u32,
}

impl FromStr for BadSpec {
    type Err = InvalidBadSpec;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (kind, count) = match text.split_once('=') {
            Some((kind, count)) => (kind, Some(count)),
            None => (text, None),
        };
        let kind = BadKind::ALL.into_iter().find(|k| k.as_str() == kind.trim()).ok_or_else(|| {
            let kinds: Vec<&str> = BadKind::ALL.iter().map(|k| k.as_str()).collect();
            InvalidBadSpec(format!("`{kind}` is not a kind of bad packet: use one of {}", kinds.join(", ")))
        })?;
        let count = match count {
            None => 1,
            Some(count) => count.trim().parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                InvalidBadSpec(format!("`{count}` is not a count: write {kind}=N with N a whole number above 0"))
            })?,
        };
        Ok(Self { kind, count })
    }
}

/// Random bytes that never decode as an [`Envelope`] (nor a [`Batch`](fleet_proto::Batch)):
/// the first byte's low three bits make its wire type 7, which protobuf does not have.
pub fn malformed(rng: &mut impl Rng) -> Vec<u8> {
    let mut bytes = vec![0u8; rng.random_range(8..=256)];
    rng.fill_bytes(&mut bytes);
    bytes[0] |= 0b111;
    bytes
}

/// `envelope` (a good telemetry packet) with a value no bike can measure: a speed of
/// 150 km/h or a battery at 120 %.
pub fn out_of_range(mut envelope: Envelope, rng: &mut impl Rng) -> Envelope {
    if let Some(Body::Telemetry(telemetry)) = &mut envelope.body {
        if rng.random_bool(0.5) {
            telemetry.speed_kmh = 150.0;
        } else {
            telemetry.battery_soc_pct = 120.0;
        }
    }
    envelope
}

/// `envelope` naming `other` instead of its own bike, for the bike's own topic.
pub fn device_mismatch(mut envelope: Envelope, other: &DeviceId) -> Envelope {
    envelope.device_id = other.as_str().to_owned();
    envelope
}

/// `envelope` made over as `other`'s, on `other`'s topic of its kind: what a bike would send
/// to pose as another. Its seq is from a boot `other` never reaches, so that, were it let
/// through, it would not be mistaken for (nor hide) one of `other`'s real packets.
pub fn wrong_topic(mut envelope: Envelope, other: &DeviceId, n: u32) -> (Topic, Vec<u8>) {
    let kind = envelope.topic_kind().unwrap_or(Kind::Telemetry);
    envelope.device_id = other.as_str().to_owned();
    envelope.seq = Seq::new(u32::MAX, n).into();
    (Topic::new(other.clone(), kind), envelope.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use fleet_proto::{Batch, SCHEMA_VERSION, Telemetry, Timestamp};
    use rand::{SeedableRng, rngs::StdRng};

    use super::*;

    fn good() -> Envelope {
        Envelope {
            schema_version: SCHEMA_VERSION,
            device_id: "bike-1".into(),
            seq: Seq::new(1, 4).into(),
            recorded_at: Some(Timestamp { seconds: 1_800_000_000, nanos: 0 }),
            body: Some(Body::Telemetry(Telemetry { speed_kmh: 18.0, battery_soc_pct: 70.0, ..Telemetry::default() })),
        }
    }

    #[test]
    fn bad_packet_requests_name_a_kind_and_a_count() {
        assert_eq!("malformed".parse(), Ok(BadSpec { kind: BadKind::Malformed, count: 1 }));
        assert_eq!("out-of-range=3".parse(), Ok(BadSpec { kind: BadKind::OutOfRange, count: 3 }));
        for kind in BadKind::ALL {
            assert_eq!(kind.as_str().parse::<BadSpec>().map(|s| s.kind), Ok(kind));
            assert_eq!(BadKind::ALL[kind.index()], kind);
        }
        let unknown = "nonsense".parse::<BadSpec>().expect_err("unknown").to_string();
        assert!(unknown.contains("malformed, wrong-topic, out-of-range, revoked, device-mismatch"), "{unknown}");
        for bad_count in ["revoked=0", "revoked=-1", "revoked=many", "revoked="] {
            let error = bad_count.parse::<BadSpec>().expect_err(bad_count).to_string();
            assert!(error.contains("not a count"), "{bad_count}: {error}");
        }
    }

    #[test]
    fn malformed_bytes_never_decode() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..10_000 {
            let bytes = malformed(&mut rng);
            assert!(Envelope::decode(bytes.as_slice()).is_err(), "{bytes:?}");
            assert!(Batch::decode(bytes.as_slice()).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn out_of_range_packets_decode_with_a_value_past_its_limit() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut seen = (false, false);
        for _ in 0..100 {
            let bytes = out_of_range(good(), &mut rng).encode_to_vec();
            let decoded = Envelope::decode(bytes.as_slice()).expect("decodes");
            let Some(Body::Telemetry(t)) = decoded.body else { panic!("telemetry") };
            assert!(t.speed_kmh > 100.0 || t.battery_soc_pct > 100.0, "{t:?}");
            seen = (seen.0 || t.speed_kmh > 100.0, seen.1 || t.battery_soc_pct > 100.0);
        }
        assert_eq!(seen, (true, true), "both kinds of bad value are sent");
    }

    #[test]
    fn a_mismatched_packet_decodes_and_names_the_other_bike() {
        let other = DeviceId::parse("bike-2").expect("id");
        let bytes = device_mismatch(good(), &other).encode_to_vec();
        let decoded = Envelope::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(decoded.device_id, "bike-2");
        assert_eq!(decoded.body, good().body);
    }

    #[test]
    fn a_wrong_topic_packet_poses_as_the_other_bike_on_its_topic() {
        let other = DeviceId::parse("bike-2").expect("id");
        let (topic, bytes) = wrong_topic(good(), &other, 3);
        assert_eq!(topic.to_string(), "bikes/bike-2/telemetry");
        let decoded = Envelope::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(decoded.device_id, "bike-2");
        assert_eq!(Seq::from(decoded.seq), Seq::new(u32::MAX, 3));
    }
}
