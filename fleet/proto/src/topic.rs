//! The MQTT topics of a bike: `bikes/{device_id}/telemetry`, `…/events`, `…/batch` (bike to
//! cloud) and `…/commands/#` (cloud to bike). The broker's ACL gives each bike its own
//! (`pattern readwrite bikes/%u/#`, the certificate's CN as user name); the ingest checks each
//! packet's `device_id` against the topic it came on as well.

use std::fmt;

/// The longest device id: it is a certificate CN (at most 64 characters) and part of topics.
pub const MAX_DEVICE_ID: usize = 64;

/// A bike's id: 1 to 64 ASCII letters, digits, `-`, `_` or `.`, not starting with `.` or `-`.
/// So it is safe in a topic (no `/`, `+`, `#`, `$`), a file name and a certificate CN.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(String);

/// Why a text is not a device id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidDeviceId(pub &'static str);

impl fmt::Display for InvalidDeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for InvalidDeviceId {}

impl DeviceId {
    pub fn parse(text: &str) -> Result<Self, InvalidDeviceId> {
        if text.is_empty() {
            return Err(InvalidDeviceId("a device id cannot be empty"));
        }
        if text.len() > MAX_DEVICE_ID {
            return Err(InvalidDeviceId("a device id has at most 64 characters"));
        }
        if text.starts_with(['.', '-']) {
            return Err(InvalidDeviceId("a device id cannot start with `.` or `-`"));
        }
        if !text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
            return Err(InvalidDeviceId("a device id has only ASCII letters, digits, `-`, `_` and `.`"));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a bike-to-cloud topic carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// One envelope with a telemetry body.
    Telemetry,
    /// One envelope with a trip, fault or boot body.
    Events,
    /// A batch of envelopes, buffered offline.
    Batch,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Telemetry, Kind::Events, Kind::Batch];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Telemetry => "telemetry",
            Kind::Events => "events",
            Kind::Batch => "batch",
        }
    }
}

/// A bike-to-cloud topic, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topic {
    pub device: DeviceId,
    pub kind: Kind,
}

/// Why a topic is not one a bike publishes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvalidTopic {
    /// Not `bikes/{device_id}/{telemetry|events|batch}`.
    Shape,
    Device(InvalidDeviceId),
}

impl fmt::Display for InvalidTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidTopic::Shape => f.write_str("not bikes/{device_id}/telemetry, /events or /batch"),
            InvalidTopic::Device(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for InvalidTopic {}

impl Topic {
    pub fn new(device: DeviceId, kind: Kind) -> Self {
        Self { device, kind }
    }

    pub fn parse(topic: &str) -> Result<Self, InvalidTopic> {
        let mut parts = topic.split('/');
        let (Some("bikes"), Some(device), Some(kind), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(InvalidTopic::Shape);
        };
        let kind = Kind::ALL.into_iter().find(|k| k.as_str() == kind).ok_or(InvalidTopic::Shape)?;
        let device = DeviceId::parse(device).map_err(InvalidTopic::Device)?;
        Ok(Self { device, kind })
    }

    /// The filter of every bike's `kind` topic, for a single ingest.
    pub fn filter(kind: Kind) -> String {
        format!("bikes/+/{}", kind.as_str())
    }

    /// The filter the ingest subscribes to for `kind`, shared among its replicas (MQTT 5
    /// shared subscription). Each kind has a group of its own, `{group}-{kind}`: replicas in it
    /// split that kind's messages, as in one group per filter (mosquitto's and the spec's
    /// model); rumqttd keeps one cursor per group name, and several filters in one group lose
    /// all but one filter's messages there.
    pub fn shared_filter(group: &str, kind: Kind) -> String {
        format!("$share/{group}-{kind}/bikes/+/{kind}", kind = kind.as_str())
    }

    /// The filter of everything a bike may be sent (cloud to bike).
    pub fn commands_filter(device: &DeviceId) -> String {
        format!("bikes/{device}/commands/#")
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bikes/{}/{}", self.device, self.kind.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_safe_in_topics_files_and_certificates() {
        for good in ["bike-0001", "VAN.MOOF_S5.42", "a", &"x".repeat(64)] {
            assert_eq!(DeviceId::parse(good).expect(good).as_str(), good);
        }
        for bad in ["", "a/b", "+", "#", "$SYS", "bike 1", "..", "-x", "é", &"x".repeat(65), "a\0b"] {
            assert!(DeviceId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn topics_are_parsed_and_printed_alike() {
        for kind in Kind::ALL {
            let topic = Topic::new(DeviceId::parse("bike-7").expect("id"), kind);
            assert_eq!(Topic::parse(&topic.to_string()), Ok(topic));
        }
        assert_eq!(Topic::parse("bikes/bike-7/telemetry").expect("topic").kind, Kind::Telemetry);
    }

    #[test]
    fn other_topics_are_refused_with_the_reason() {
        for bad in [
            "bikes/bike-7",
            "bikes/bike-7/telemetry/extra",
            "bikes/bike-7/commands/settings",
            "cars/bike-7/telemetry",
            "bikes//telemetry",
            "/bikes/bike-7/telemetry",
            "bikes/bike-7/Telemetry",
        ] {
            assert!(Topic::parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(Topic::parse("bikes/a+b/events"), Err(InvalidTopic::Device(_))));
        assert_eq!(Topic::parse("bikes/x/y"), Err(InvalidTopic::Shape));
    }

    #[test]
    fn filters_name_the_shared_group_and_the_commands() {
        assert_eq!(Topic::shared_filter("ingest", Kind::Batch), "$share/ingest-batch/bikes/+/batch");
        assert_eq!(Topic::filter(Kind::Events), "bikes/+/events");
        let device = DeviceId::parse("bike-7").expect("id");
        assert_eq!(Topic::commands_filter(&device), "bikes/bike-7/commands/#");
    }
}
