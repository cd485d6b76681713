//! The tests every telemetry store passes: each store's module runs them on itself.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use fleet_proto::{Boot, DeviceId, Fault, GpsFix, Telemetry, TripEnd, envelope::Body};

use super::*;
use crate::packet::{Packet, Quarantined, Reason};

pub fn device(n: u32) -> DeviceId {
    DeviceId::parse(&format!("bike-{n:016x}")).expect("device id")
}

/// Noon UTC on 2026-12-01.
pub fn noon() -> DateTime<Utc> {
    DateTime::from_timestamp(1_796_126_400, 0).expect("time")
}

pub fn telemetry(i: u64) -> Telemetry {
    #[allow(clippy::cast_precision_loss)]
    let x = i as f64;
    Telemetry {
        lat: 52.5 + x * 1e-5,
        lon: 13.4 - x * 1e-5,
        altitude_m: 30.0 + (i % 7) as f32,
        gps_fix: GpsFix::ThreeD.into(),
        hdop: 0.8,
        speed_kmh: (i % 30) as f32 + 0.5,
        heading_deg: (i % 360) as f32,
        battery_soc_pct: 90.0 - (i % 50) as f32 * 0.25,
        battery_voltage_v: 39.0,
        battery_current_a: 5.0 - (i % 3) as f32,
        battery_temp_c: 22.5,
        motor_power_w: 150.0 + (i % 11) as f32 * 10.0,
        motor_temp_c: 40.0,
        assist_level: (i % 4) as u32,
        cadence_rpm: 70.0,
        odometer_m: 10_000 + i * 5,
    }
}

pub fn packet(device: &DeviceId, seq: u64, recorded_at: DateTime<Utc>, body: Body) -> Packet {
    Packet { device_id: device.clone(), seq, recorded_at, received_at: recorded_at + TimeDelta::seconds(1), body }
}

/// A ride: `n` telemetry packets, one every 5 s from `start`.
pub fn ride(device: &DeviceId, n: u64, start: DateTime<Utc>) -> Vec<Packet> {
    (0..n).map(|i| packet(device, i, start + TimeDelta::seconds(5 * i as i64), Body::Telemetry(telemetry(i)))).collect()
}

fn range(from: DateTime<Utc>, to: DateTime<Utc>) -> Range {
    Range { from, to }
}

fn all_time() -> Range {
    range(noon() - TimeDelta::days(30), noon() + TimeDelta::days(30))
}

async fn everything(store: &dyn TelemetryStore, device: &DeviceId) -> Vec<Record> {
    let mut records = Vec::new();
    let mut after = None;
    loop {
        let page = store.history(device, all_time(), after, 7).await.expect("history");
        records.extend(page.records);
        match page.next {
            Some(next) => after = Some(next),
            None => return records,
        }
    }
}

pub async fn a_packet_delivered_again_is_stored_once(store: &dyn TelemetryStore) {
    let bike = device(1);
    let packets = ride(&bike, 40, noon());
    assert_eq!(store.insert(&packets).await.expect("insert"), 40);
    // Redelivered: the whole batch again, and a batch overlapping it. (What `insert` returns
    // for them is the store's to say; every answer counts them once.)
    store.insert(&packets).await.expect("insert again");
    let overlapping = ride(&bike, 50, noon());
    store.insert(&overlapping[30..]).await.expect("insert overlapping");
    assert_eq!(store.count(Some(&bike)).await.expect("count"), 50);
    assert_eq!(store.count(None).await.expect("count"), 50);
    let stored = everything(store, &bike).await;
    assert_eq!(stored.len(), 50);
    assert_eq!(stored, overlapping.iter().map(Record::from).collect::<Vec<_>>(), "stored as sent, once each");
}

pub async fn history_orders_late_packets_by_recorded_at_across_days(store: &dyn TelemetryStore) {
    let bike = device(2);
    let midnight = DateTime::from_timestamp(1_796_169_600, 0).expect("2026-12-02T00:00Z");
    let before = ride(&bike, 5, midnight - TimeDelta::seconds(12));
    // The offline buffer arrives later than newer packets, oldest last.
    let mut offline: Vec<Packet> = (100..110)
        .map(|seq| {
            packet(
                &bike,
                seq,
                midnight - TimeDelta::hours(3) + TimeDelta::seconds(seq as i64),
                Body::Telemetry(telemetry(seq)),
            )
        })
        .collect();
    offline.reverse();
    let events = vec![
        packet(
            &bike,
            200,
            midnight + TimeDelta::minutes(1),
            Body::Boot(Boot { firmware_version: "1.5.0".into(), reset_reason: 5 }),
        ),
        packet(
            &bike,
            201,
            midnight + TimeDelta::minutes(2),
            Body::Fault(Fault { code: "BMS_OVERTEMP".into(), severity: 3, detail: "cell 4".into() }),
        ),
        packet(
            &bike,
            202,
            midnight + TimeDelta::minutes(3),
            Body::TripEnd(TripEnd {
                trip_id: "t-9".into(),
                distance_m: 5_400,
                duration_s: 1_260,
                ..TripEnd::default()
            }),
        ),
    ];
    store.insert(&before).await.expect("insert");
    store.insert(&events).await.expect("insert events");
    store.insert(&offline).await.expect("insert offline");
    let stored = everything(store, &bike).await;
    let mut expected: Vec<Record> = before.iter().chain(&events).chain(&offline).map(Record::from).collect();
    expected.sort_by_key(|r| (r.recorded_at, r.seq));
    assert_eq!(stored, expected, "every packet, events included, in recorded_at order across the day boundary");

    // A range takes only what was recorded within it, `to` excluded.
    let page = store.history(&bike, range(midnight, midnight + TimeDelta::minutes(3)), None, 100).await.expect("page");
    assert_eq!(page.records.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 4, 200, 201]);
    let empty = store.history(&bike, range(midnight, midnight), None, 100).await.expect("empty");
    assert!(empty.records.is_empty());
    assert!(store.history(&device(99), all_time(), None, 10).await.expect("other").records.is_empty());
}

pub async fn downsampled_history_matches_the_raw_rows(store: &dyn TelemetryStore) {
    let bike = device(3);
    let start = noon() - TimeDelta::minutes(10) + TimeDelta::seconds(17);
    let packets = ride(&bike, 200, start);
    store.insert(&packets).await.expect("insert");
    // An event in the range is not telemetry and is not aggregated.
    store
        .insert(&[packet(&bike, 9_999, start, Body::Boot(Boot { firmware_version: "1".into(), reset_reason: 1 }))])
        .await
        .expect("insert event");
    let every = Duration::from_secs(60);
    let window = range(start, start + TimeDelta::seconds(5 * 150));
    let buckets = store.downsampled(&bike, window, every).await.expect("downsampled");
    assert_eq!(buckets.iter().map(|b| b.count).sum::<u64>(), 150);
    assert_matches_raw(store, &bike, window, every, &buckets).await;
    assert!(store.downsampled(&bike, window, Duration::ZERO).await.is_err(), "a bucket has a width");
}

/// Every width and every kind of range edge, across midnight, after redeliveries.
pub async fn downsampled_history_matches_the_raw_rows_at_any_width_and_edge(store: &dyn TelemetryStore) {
    let bike = device(4);
    let midnight = noon() + TimeDelta::hours(12);
    let start = midnight - TimeDelta::minutes(20) + TimeDelta::milliseconds(2_345);
    // One packet every 5 s over 40 minutes, sent in three batches, the middle one twice and
    // overlapping the others (redeliveries must not be counted twice), and another bike's
    // packets at the same times.
    let packets = ride(&bike, 480, start);
    store.insert(&packets[..200]).await.expect("insert");
    store.insert(&packets[150..350]).await.expect("insert overlapping");
    store.insert(&packets[150..350]).await.expect("insert again");
    store.insert(&packets[300..]).await.expect("insert the rest");
    store.insert(&ride(&device(40), 480, start)).await.expect("another bike");
    let end = start + TimeDelta::seconds(5 * 480);
    let ranges = [
        range(start - TimeDelta::hours(1), end + TimeDelta::hours(1)),
        range(start, end),
        range(midnight - TimeDelta::minutes(7), midnight + TimeDelta::minutes(3)),
        range(start + TimeDelta::seconds(61), midnight + TimeDelta::seconds(59)),
        range(midnight + TimeDelta::seconds(10), midnight + TimeDelta::seconds(50)),
        range(midnight + TimeDelta::seconds(10), midnight + TimeDelta::seconds(70)),
        // Ragged ends whose minutes' rows all lie inside the range, and were delivered twice:
        // minute 15's packets come from 15:02.345 (from is a second before), minute 25's up to
        // 25:57.345 (to is two seconds after).
        range(
            start + TimeDelta::minutes(15) - TimeDelta::milliseconds(1_345),
            start + TimeDelta::minutes(26) - TimeDelta::milliseconds(2_845),
        ),
    ];
    for window in ranges {
        for every in [7, 60, 90, 300, 3_600].map(Duration::from_secs) {
            let buckets = store.downsampled(&bike, window, every).await.expect("downsampled");
            assert_matches_raw(store, &bike, window, every, &buckets).await;
        }
    }
}

/// `buckets` are `window`'s raw telemetry aggregated by hand into buckets `every` wide.
pub async fn assert_matches_raw(
    store: &dyn TelemetryStore,
    bike: &DeviceId,
    window: Range,
    every: Duration,
    buckets: &[Bucket],
) {
    let width = i64::try_from(every.as_millis()).expect("width");
    let raw = store.history(bike, window, None, MAX_RECORDS).await.expect("raw").records;
    let mut expected: BTreeMap<i64, Vec<&Telemetry>> = BTreeMap::new();
    for record in &raw {
        if let Body::Telemetry(t) = &record.body {
            let ms = record.recorded_at.timestamp_millis();
            expected.entry(ms - ms.rem_euclid(width)).or_default().push(t);
        }
    }
    let context = format!("{window:?} every {every:?}");
    assert_eq!(
        buckets.iter().map(|b| b.start.timestamp_millis()).collect::<Vec<_>>(),
        expected.keys().copied().collect::<Vec<_>>(),
        "bucket starts, {context}"
    );
    for (bucket, rows) in buckets.iter().zip(expected.values()) {
        assert_eq!(bucket.count, rows.len() as u64, "count of {}, {context}", bucket.start);
        for field in AGGREGATED {
            let values: Vec<f64> = rows.iter().map(|t| value_of(t, field).expect("a field")).collect();
            let avg = values.iter().sum::<f64>() / values.len() as f64;
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let stat = bucket.stats[field];
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
            assert!(
                close(stat.avg, avg) && close(stat.min, min) && close(stat.max, max),
                "{field} at {}, {context}: {stat:?} vs {avg} {min} {max}",
                bucket.start
            );
        }
    }
}

pub async fn the_quarantine_keeps_the_newest_up_to_its_cap(store: &dyn TelemetryStore, cap: u64) {
    let entry = |i: u64, reason| Quarantined {
        received_at: noon() + TimeDelta::seconds(i as i64),
        topic: format!("bikes/{}/telemetry", device(i as u32 % 2)),
        device_id: Some(device(i as u32 % 2).as_str().to_owned()),
        reason,
        detail: format!("entry {i}"),
        payload: vec![i as u8; 3],
        payload_len: 3,
    };
    let entries: Vec<Quarantined> =
        (0..cap + 5).map(|i| entry(i, if i % 3 == 0 { Reason::Revoked } else { Reason::Malformed })).collect();
    store.quarantine(&entries[..4]).await.expect("quarantine");
    store.quarantine(&entries[4..]).await.expect("quarantine");
    let listed = store.quarantined(&QuarantineFilter::default(), None, 10_000).await.expect("listed");
    assert_eq!(listed.len() as u64, cap, "bounded");
    assert_eq!(listed[0].quarantined, entries[entries.len() - 1], "newest first, as kept");
    assert_eq!(listed.last().expect("oldest").quarantined, entries[5], "the oldest beyond the cap are gone");

    let revoked = QuarantineFilter { reason: Some(Reason::Revoked), ..QuarantineFilter::default() };
    let listed = store.quarantined(&revoked, None, 10_000).await.expect("revoked");
    assert!(!listed.is_empty() && listed.iter().all(|e| e.quarantined.reason == Reason::Revoked));
    let one = QuarantineFilter { device_id: Some(device(1).as_str().to_owned()), ..QuarantineFilter::default() };
    let page = store.quarantined(&one, None, 2).await.expect("page");
    assert_eq!(page.len(), 2);
    let next = store.quarantined(&one, Some(page[1].id), 2).await.expect("next page");
    assert!(next[0].id < page[1].id);
    assert!(next.iter().chain(&page).all(|e| e.quarantined.device_id.as_deref() == Some(device(1).as_str())));
}

pub async fn retention_drops_whole_days(store: &dyn TelemetryStore) {
    let bike = device(4);
    for days_ago in [3, 2, 1, 0] {
        store.insert(&ride(&bike, 3, noon() - TimeDelta::days(days_ago))).await.expect("insert");
    }
    let cutoff = (noon() - TimeDelta::days(1)).date_naive();
    let dropped = store.drop_days_before(cutoff).await.expect("dropped");
    assert_eq!(
        dropped,
        [NaiveDate::from_ymd_opt(2026, 11, 28).expect("day"), NaiveDate::from_ymd_opt(2026, 11, 29).expect("day")]
    );
    assert_eq!(store.count(Some(&bike)).await.expect("count"), 6);
    assert!(store.drop_days_before(cutoff).await.expect("again").is_empty());
    // A day dropped can be written again (a late packet within retention of a new cut-off).
    store.insert(&ride(&bike, 1, noon() - TimeDelta::days(3))).await.expect("insert");
    assert_eq!(store.count(Some(&bike)).await.expect("count"), 7);
}
