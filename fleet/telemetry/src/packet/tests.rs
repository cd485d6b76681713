use chrono::TimeDelta;
use fleet_proto::{Boot, Fault, GpsFix, Timestamp, TripStart};

use super::*;

const DEVICE: &str = "bike-00000000000000a1";

fn received() -> DateTime<Utc> {
    DateTime::from_timestamp(1_796_000_000, 0).expect("time")
}

fn at(time: DateTime<Utc>) -> Option<Timestamp> {
    Some(Timestamp { seconds: time.timestamp(), nanos: time.timestamp_subsec_nanos() as i32 })
}

fn telemetry() -> Telemetry {
    Telemetry {
        lat: 52.52,
        lon: 13.40,
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
    }
}

fn envelope(seq: u64, body: Body) -> Envelope {
    Envelope {
        schema_version: SCHEMA_VERSION,
        device_id: DEVICE.into(),
        seq,
        recorded_at: at(received() - TimeDelta::seconds(2)),
        body: Some(body),
    }
}

fn admitted(_: &DeviceId) -> Option<Standing> {
    Some(Standing::Admitted)
}

fn examine_on(kind: &str, payload: &[u8]) -> Examined {
    examine(&format!("bikes/{DEVICE}/{kind}"), payload, received(), &Limits::default(), admitted)
}

fn the_reason(examined: &Examined) -> (Reason, &str) {
    assert!(examined.packets.is_empty(), "nothing is stored: {:?}", examined.packets);
    assert_eq!(examined.quarantined.len(), 1, "{:?}", examined.quarantined);
    (examined.quarantined[0].reason, examined.quarantined[0].detail.as_str())
}

#[test]
fn a_good_packet_passes_on_its_topic() {
    let examined = examine_on("telemetry", &envelope(7, Body::Telemetry(telemetry())).encode_to_vec());
    assert!(examined.quarantined.is_empty(), "{:?}", examined.quarantined);
    let packet = &examined.packets[0];
    assert_eq!((packet.device_id.as_str(), packet.seq), (DEVICE, 7));
    assert_eq!(packet.recorded_at, received() - TimeDelta::seconds(2));
    assert_eq!(packet.received_at, received());

    let boot = Body::Boot(Boot { firmware_version: "1.4.2".into(), reset_reason: 1 });
    assert_eq!(examine_on("events", &envelope(8, boot).encode_to_vec()).packets.len(), 1);
}

#[test]
fn every_bad_packet_is_quarantined_with_its_reason() {
    let good = envelope(1, Body::Telemetry(telemetry()));
    let with = |change: &dyn Fn(&mut Envelope)| {
        let mut envelope = good.clone();
        change(&mut envelope);
        envelope.encode_to_vec()
    };
    let telemetry_with = |change: &dyn Fn(&mut Telemetry)| {
        with(&|e: &mut Envelope| {
            let mut t = telemetry();
            change(&mut t);
            e.body = Some(Body::Telemetry(t));
        })
    };
    let cases: Vec<(&str, Vec<u8>, Reason, &str)> = vec![
        ("telemetry", b"\xff\xff\xff not protobuf".to_vec(), Reason::Malformed, "not an Envelope"),
        ("telemetry", with(&|e| e.schema_version = 2), Reason::UnknownSchema, "schema version 2"),
        ("telemetry", with(&|e| e.device_id = "bike-other".into()), Reason::DeviceMismatch, "bike-other"),
        ("telemetry", with(&|e| e.body = None), Reason::WrongBody, "no body"),
        ("events", good.encode_to_vec(), Reason::WrongBody, "telemetry body"),
        (
            "telemetry",
            with(&|e| e.body = Some(Body::TripStart(TripStart { trip_id: "t".into(), odometer_m: 1 }))),
            Reason::WrongBody,
            "trip_start",
        ),
        ("telemetry", with(&|e| e.recorded_at = None), Reason::NoTimestamp, "recorded_at"),
        (
            "telemetry",
            with(&|e| e.recorded_at = Some(Timestamp { seconds: 1, nanos: -5 })),
            Reason::NoTimestamp,
            "recorded_at",
        ),
        (
            "telemetry",
            with(&|e| e.recorded_at = at(received() + TimeDelta::minutes(6))),
            Reason::FromTheFuture,
            "after it was received",
        ),
        ("telemetry", with(&|e| e.recorded_at = at(received() - TimeDelta::days(91))), Reason::TooOld, "retention"),
        ("telemetry", telemetry_with(&|t| t.lat = 91.0), Reason::OutOfRange, "lat is 91"),
        ("telemetry", telemetry_with(&|t| t.lon = f64::NAN), Reason::OutOfRange, "lon is NaN"),
        ("telemetry", telemetry_with(&|t| t.speed_kmh = 100.5), Reason::OutOfRange, "speed_kmh"),
        ("telemetry", telemetry_with(&|t| t.speed_kmh = -1.0), Reason::OutOfRange, "speed_kmh"),
        ("telemetry", telemetry_with(&|t| t.battery_soc_pct = 101.0), Reason::OutOfRange, "battery_soc_pct"),
        ("telemetry", telemetry_with(&|t| t.assist_level = 11), Reason::OutOfRange, "assist_level"),
    ];
    for (kind, payload, reason, detail) in cases {
        let examined = examine_on(kind, &payload);
        let (got, got_detail) = the_reason(&examined);
        assert_eq!(got, reason, "{got_detail}");
        assert!(got_detail.contains(detail), "{reason}: `{got_detail}` should mention `{detail}`");
        let quarantined = &examined.quarantined[0];
        assert_eq!(quarantined.payload, payload, "the raw bytes are kept");
        assert_eq!(quarantined.device_id.as_deref(), Some(DEVICE));
        assert_eq!(quarantined.topic, format!("bikes/{DEVICE}/{kind}"));
    }
}

#[test]
fn packets_of_bikes_not_in_good_standing_are_quarantined() {
    let payload = envelope(1, Body::Telemetry(telemetry())).encode_to_vec();
    for (standing, reason) in [
        (None, Reason::Unregistered),
        (Some(Standing::Revoked), Reason::Revoked),
        (Some(Standing::Decommissioned), Reason::Decommissioned),
        (Some(Standing::Uncertified), Reason::Uncertified),
    ] {
        let examined =
            examine(&format!("bikes/{DEVICE}/telemetry"), &payload, received(), &Limits::default(), |_| standing);
        assert_eq!(the_reason(&examined).0, reason);
    }
}

#[test]
fn a_message_on_a_topic_no_bike_publishes_on_is_quarantined_without_a_device() {
    for topic in ["bikes/a+b/telemetry", "bikes/x/commands", "elsewhere"] {
        let examined = examine(topic, b"x", received(), &Limits::default(), admitted);
        assert_eq!(the_reason(&examined).0, Reason::UnknownTopic, "{topic}");
        assert_eq!(examined.quarantined[0].device_id, None);
    }
    let long = format!("bikes/{}", "é".repeat(400));
    let examined = examine(&long, b"x", received(), &Limits::default(), admitted);
    assert!(examined.quarantined[0].topic.len() <= MAX_QUARANTINED_TOPIC, "the topic is cut on a char boundary");
}

#[test]
fn a_batch_stores_its_good_packets_and_quarantines_each_bad_one_alone() {
    let mut bad = envelope(2, Body::Telemetry(telemetry()));
    bad.device_id = "bike-other".into();
    let fault = Body::Fault(Fault { code: "BMS_OVERTEMP".into(), severity: 3, detail: String::new() });
    let batch = Batch { packets: vec![envelope(1, Body::Telemetry(telemetry())), bad.clone(), envelope(3, fault)] };
    let examined = examine_on("batch", &batch.encode_to_vec());
    assert_eq!(examined.packets.iter().map(|p| p.seq).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(examined.quarantined.len(), 1);
    assert_eq!(examined.quarantined[0].reason, Reason::DeviceMismatch);
    assert_eq!(examined.quarantined[0].payload, bad.encode_to_vec(), "only the bad packet is kept");

    let (reason, _) = the_reason(&examine_on("batch", b"\x0a\xff"));
    assert_eq!(reason, Reason::Malformed);
    let huge = Batch { packets: vec![Envelope::default(); MAX_BATCH + 1] };
    let examined = examine_on("batch", &huge.encode_to_vec());
    let (reason, detail) = the_reason(&examined);
    assert_eq!(reason, Reason::BatchTooLarge, "{detail}");
}

#[test]
fn a_quarantined_payload_is_kept_only_up_to_the_cap() {
    let payload = vec![0xff; MAX_QUARANTINED_BYTES * 3];
    let examined = examine_on("telemetry", &payload);
    let quarantined = &examined.quarantined[0];
    assert_eq!(quarantined.payload.len(), MAX_QUARANTINED_BYTES);
    assert_eq!(quarantined.payload_len, payload.len());
}

#[test]
fn reasons_have_stable_codes() {
    for reason in Reason::ALL {
        assert_eq!(Reason::parse(reason.as_str()), Some(reason));
    }
    assert_eq!(Reason::Revoked.as_str(), "revoked");
}
