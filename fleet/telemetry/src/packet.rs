//! What the ingest makes of one MQTT message: the packets it stores, and what it quarantines
//! with the reason.
//!
//! A message is examined whole before anything is stored: its topic must be a bike's, its
//! payload must decode (an [`Envelope`], or a [`Batch`] on the batch topic), and each packet
//! must pass every check in [`check`]. A batch is examined packet by packet: one bad packet is
//! quarantined alone, and the rest are stored.

use std::{fmt, time::Duration};

use chrono::{DateTime, Utc};
use fleet_proto::{
    Batch, DeviceId, Envelope, Message, SCHEMA_VERSION, Telemetry,
    envelope::Body,
    topic::{Kind, Topic},
};

use crate::registry::Standing;

/// The most bytes of a quarantined payload that are kept.
pub const MAX_QUARANTINED_BYTES: usize = 4 * 1024;
/// The longest topic kept with a quarantined payload.
pub const MAX_QUARANTINED_TOPIC: usize = 256;
/// The most packets one batch may carry.
pub const MAX_BATCH: usize = 10_000;

/// Why a packet was not stored: a stable code, counted by the metrics and shown by the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The topic is not `bikes/{device_id}/telemetry|events|batch`.
    UnknownTopic,
    /// The payload does not decode as the topic's message.
    Malformed,
    /// The batch carries more than [`MAX_BATCH`] packets.
    BatchTooLarge,
    /// The envelope names a schema version this build does not know.
    UnknownSchema,
    /// The envelope's `device_id` is not the topic's.
    DeviceMismatch,
    /// The envelope has no body, or one the topic does not carry.
    WrongBody,
    /// The envelope has no `recorded_at`, or one outside what a timestamp can be.
    NoTimestamp,
    /// Recorded more than the allowed skew in the future.
    FromTheFuture,
    /// Recorded before the retention window: it would be deleted at once.
    TooOld,
    /// A value is out of its range (or not a number).
    OutOfRange,
    /// No bike with this id is registered.
    Unregistered,
    /// Every certificate the bike was issued is revoked.
    Revoked,
    /// The bike was decommissioned.
    Decommissioned,
    /// The bike holds no valid certificate (never issued one, or all expired).
    Uncertified,
}

impl Reason {
    pub const ALL: [Reason; 14] = [
        Reason::UnknownTopic,
        Reason::Malformed,
        Reason::BatchTooLarge,
        Reason::UnknownSchema,
        Reason::DeviceMismatch,
        Reason::WrongBody,
        Reason::NoTimestamp,
        Reason::FromTheFuture,
        Reason::TooOld,
        Reason::OutOfRange,
        Reason::Unregistered,
        Reason::Revoked,
        Reason::Decommissioned,
        Reason::Uncertified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UnknownTopic => "unknown_topic",
            Reason::Malformed => "malformed",
            Reason::BatchTooLarge => "batch_too_large",
            Reason::UnknownSchema => "unknown_schema",
            Reason::DeviceMismatch => "device_mismatch",
            Reason::WrongBody => "wrong_body",
            Reason::NoTimestamp => "no_timestamp",
            Reason::FromTheFuture => "from_the_future",
            Reason::TooOld => "too_old",
            Reason::OutOfRange => "out_of_range",
            Reason::Unregistered => "unregistered",
            Reason::Revoked => "revoked",
            Reason::Decommissioned => "decommissioned",
            Reason::Uncertified => "uncertified",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == code)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A packet that passed every check.
#[derive(Clone, Debug, PartialEq)]
pub struct Packet {
    pub device_id: DeviceId,
    pub seq: u64,
    pub recorded_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub body: Body,
}

/// A packet, or a whole message, that was not stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantined {
    pub received_at: DateTime<Utc>,
    /// The topic it came on, cut to [`MAX_QUARANTINED_TOPIC`] bytes.
    pub topic: String,
    /// The topic's device, when the topic names one.
    pub device_id: Option<String>,
    pub reason: Reason,
    /// What exactly was wrong, for people.
    pub detail: String,
    /// The payload (or, for one packet of a batch, that packet), cut to
    /// [`MAX_QUARANTINED_BYTES`].
    pub payload: Vec<u8>,
    /// How long the payload was before it was cut.
    pub payload_len: usize,
}

/// What the checks allow.
#[derive(Clone, Debug)]
pub struct Limits {
    /// How far in the future `recorded_at` may be (the bike's clock may run ahead).
    pub max_skew: Duration,
    /// How long telemetry is kept: a packet recorded before that is refused.
    pub retention: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_skew: Duration::from_secs(5 * 60), retention: Duration::from_secs(90 * 24 * 3600) }
    }
}

/// What became of one message.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Examined {
    pub packets: Vec<Packet>,
    pub quarantined: Vec<Quarantined>,
}

/// Examines the message `payload` that came on `topic` at `received_at`. `standing` says
/// where a bike stands in the registry (`None`: not registered).
pub fn examine(
    topic: &str,
    payload: &[u8],
    received_at: DateTime<Utc>,
    limits: &Limits,
    standing: impl Fn(&DeviceId) -> Option<Standing>,
) -> Examined {
    let mut examined = Examined::default();
    let quarantine = |device: Option<&DeviceId>, reason, detail: String, bytes: &[u8]| Quarantined {
        received_at,
        topic: cut_topic(topic),
        device_id: device.map(|d| d.as_str().to_owned()),
        reason,
        detail,
        payload: bytes[..bytes.len().min(MAX_QUARANTINED_BYTES)].to_vec(),
        payload_len: bytes.len(),
    };
    let topic_parsed = match Topic::parse(topic) {
        Ok(parsed) => parsed,
        Err(e) => {
            examined.quarantined.push(quarantine(None, Reason::UnknownTopic, e.to_string(), payload));
            return examined;
        }
    };
    let device = &topic_parsed.device;
    let envelopes = match topic_parsed.kind {
        Kind::Batch => match Batch::decode(payload) {
            Ok(batch) if batch.packets.len() > MAX_BATCH => {
                let detail = format!("{} packets; a batch carries at most {MAX_BATCH}", batch.packets.len());
                examined.quarantined.push(quarantine(Some(device), Reason::BatchTooLarge, detail, payload));
                return examined;
            }
            Ok(batch) => batch.packets,
            Err(e) => {
                let detail = format!("not a Batch: {e}");
                examined.quarantined.push(quarantine(Some(device), Reason::Malformed, detail, payload));
                return examined;
            }
        },
        Kind::Telemetry | Kind::Events => match Envelope::decode(payload) {
            Ok(envelope) => vec![envelope],
            Err(e) => {
                let detail = format!("not an Envelope: {e}");
                examined.quarantined.push(quarantine(Some(device), Reason::Malformed, detail, payload));
                return examined;
            }
        },
    };
    let single = envelopes.len() == 1 && topic_parsed.kind != Kind::Batch;
    for envelope in envelopes {
        match check(&envelope, &topic_parsed, received_at, limits, &standing) {
            Ok(packet) => examined.packets.push(packet),
            Err((reason, detail)) => {
                let bytes = if single { payload.to_vec() } else { envelope.encode_to_vec() };
                examined.quarantined.push(quarantine(Some(device), reason, detail, &bytes));
            }
        }
    }
    examined
}

fn cut_topic(topic: &str) -> String {
    let mut end = topic.len().min(MAX_QUARANTINED_TOPIC);
    while !topic.is_char_boundary(end) {
        end -= 1;
    }
    topic[..end].to_owned()
}

/// The checks of one envelope that came on `topic`, in order: schema, device, body,
/// timestamp, values, then the bike's standing.
pub fn check(
    envelope: &Envelope,
    topic: &Topic,
    received_at: DateTime<Utc>,
    limits: &Limits,
    standing: impl Fn(&DeviceId) -> Option<Standing>,
) -> Result<Packet, (Reason, String)> {
    if envelope.schema_version != SCHEMA_VERSION {
        return Err((
            Reason::UnknownSchema,
            format!("schema version {}; this service knows {SCHEMA_VERSION}", envelope.schema_version),
        ));
    }
    if envelope.device_id != topic.device.as_str() {
        return Err((
            Reason::DeviceMismatch,
            format!("the packet names `{}` but came on {topic}", truncated(&envelope.device_id)),
        ));
    }
    let Some(body) = envelope.body.clone() else {
        return Err((Reason::WrongBody, "the packet has no body".into()));
    };
    let allowed = match topic.kind {
        Kind::Batch => true,
        kind => envelope.topic_kind() == Some(kind),
    };
    if !allowed {
        return Err((Reason::WrongBody, format!("a {} body does not travel on {topic}", envelope.kind())));
    }
    let recorded_at = envelope
        .recorded_at
        .and_then(|t| u32::try_from(t.nanos).ok().and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos)))
        .ok_or((Reason::NoTimestamp, "the packet has no valid recorded_at".to_owned()))?;
    if recorded_at > received_at + limits.max_skew {
        return Err((
            Reason::FromTheFuture,
            format!("recorded at {recorded_at}, more than {:?} after it was received", limits.max_skew),
        ));
    }
    let oldest = received_at - limits.retention;
    if recorded_at < oldest {
        return Err((Reason::TooOld, format!("recorded at {recorded_at}, before the retention window ({oldest})")));
    }
    if let Body::Telemetry(telemetry) = &body {
        in_range(telemetry).map_err(|detail| (Reason::OutOfRange, detail))?;
    }
    match standing(&topic.device) {
        Some(Standing::Admitted) => {}
        None => return Err((Reason::Unregistered, format!("no bike `{}` is registered", topic.device))),
        Some(Standing::Revoked) => {
            return Err((Reason::Revoked, format!("every certificate of `{}` is revoked", topic.device)));
        }
        Some(Standing::Decommissioned) => {
            return Err((Reason::Decommissioned, format!("`{}` is decommissioned", topic.device)));
        }
        Some(Standing::Uncertified) => {
            return Err((Reason::Uncertified, format!("`{}` holds no valid certificate", topic.device)));
        }
    }
    Ok(Packet { device_id: topic.device.clone(), seq: envelope.seq, recorded_at, received_at, body })
}

fn truncated(text: &str) -> String {
    text.chars().take(80).collect()
}

/// The ranges a telemetry packet's values must fall in.
fn in_range(t: &Telemetry) -> Result<(), String> {
    fn within(name: &str, value: f64, low: f64, high: f64) -> Result<(), String> {
        if value.is_finite() && (low..=high).contains(&value) {
            Ok(())
        } else {
            Err(format!("{name} is {value}; it must be between {low} and {high}"))
        }
    }
    within("lat", t.lat, -90.0, 90.0)?;
    within("lon", t.lon, -180.0, 180.0)?;
    within("altitude_m", t.altitude_m.into(), -500.0, 9_000.0)?;
    within("hdop", t.hdop.into(), 0.0, 100.0)?;
    within("speed_kmh", t.speed_kmh.into(), 0.0, 100.0)?;
    within("heading_deg", t.heading_deg.into(), 0.0, 360.0)?;
    within("battery_soc_pct", t.battery_soc_pct.into(), 0.0, 100.0)?;
    within("battery_voltage_v", t.battery_voltage_v.into(), 0.0, 120.0)?;
    within("battery_current_a", t.battery_current_a.into(), -100.0, 100.0)?;
    within("battery_temp_c", t.battery_temp_c.into(), -60.0, 120.0)?;
    within("motor_power_w", t.motor_power_w.into(), -5_000.0, 5_000.0)?;
    within("motor_temp_c", t.motor_temp_c.into(), -60.0, 200.0)?;
    within("cadence_rpm", t.cadence_rpm.into(), 0.0, 300.0)?;
    if t.assist_level > 10 {
        return Err(format!("assist_level is {}; it must be between 0 and 10", t.assist_level));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
