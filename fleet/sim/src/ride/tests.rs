//! The ride model over hours of simulated time: every value within what the ingest accepts,
//! and every trip's totals consistent with the telemetry recorded on it.

use chrono::{DateTime, TimeDelta};
use fleet_proto::{DeviceId, Seq};

use super::*;
use crate::recorder::Recorder;

const HOUR: Duration = Duration::from_secs(3_600);

/// `total` of riding in steps of `step`, then parked; the outputs, in envelopes.
fn simulate(settings: RideSettings, seed: u64, total: Duration, step: Duration) -> Vec<Output> {
    let mut ride = Ride::new(settings, "1.2.3", seed);
    let mut out = Vec::new();
    while ride.now() < total {
        out.extend(ride.advance(step));
    }
    out.extend(ride.park_now());
    out
}

fn telemetry(output: &Output) -> Option<&Telemetry> {
    match &output.body {
        Body::Telemetry(t) => Some(t),
        _ => None,
    }
}

/// The ingest's ranges (fleet-telemetry's `packet::in_range`), and the model's own tighter ones.
fn assert_in_range(t: &Telemetry, settings: &RideSettings) {
    let within = |name: &str, value: f64, low: f64, high: f64| {
        assert!(value.is_finite() && (low..=high).contains(&value), "{name} = {value} not in {low}..={high}: {t:?}");
    };
    within("lat", t.lat, -90.0, 90.0);
    within("lon", t.lon, -180.0, 180.0);
    within("altitude_m", t.altitude_m.into(), -500.0, 9_000.0);
    within("hdop", t.hdop.into(), 0.0, 100.0);
    within("speed_kmh", t.speed_kmh.into(), 0.0, 45.0);
    assert!((0.0..360.0).contains(&t.heading_deg), "heading {}: {t:?}", t.heading_deg);
    within("battery_soc_pct", t.battery_soc_pct.into(), 0.0, 100.0);
    within("battery_voltage_v", t.battery_voltage_v.into(), 25.0, 45.0);
    within("battery_current_a", t.battery_current_a.into(), -100.0, 100.0);
    within("battery_temp_c", t.battery_temp_c.into(), -60.0, 120.0);
    within("motor_power_w", t.motor_power_w.into(), 0.0, 5_000.0);
    within("motor_temp_c", t.motor_temp_c.into(), -60.0, 200.0);
    within("cadence_rpm", t.cadence_rpm.into(), 0.0, 300.0);
    assert!(t.assist_level <= MAX_ASSIST, "{t:?}");
    // Within the town, give or take the block a bike finishes before it turns back.
    let frame_x = (t.lon - settings.centre.lon) * 111_320.0 * settings.centre.lat.to_radians().cos();
    let frame_y = (t.lat - settings.centre.lat) * 111_320.0;
    assert!(frame_x.hypot(frame_y) < settings.radius_m + 5.0 * settings.block_m, "{t:?}");
}

/// One trip as recorded: its start, the telemetry on it, its end.
struct RecordedTrip<'a> {
    start: (&'a Output, &'a TripStart),
    telemetry: Vec<(&'a Output, &'a Telemetry)>,
    end: (&'a Output, &'a TripEnd),
}

/// Splits the outputs into trips, checking that each start has its end and none overlap.
fn trips(outputs: &[Output]) -> Vec<RecordedTrip<'_>> {
    let mut trips = Vec::new();
    let mut open: Option<(&Output, &TripStart)> = None;
    let mut on_trip = Vec::new();
    for output in outputs {
        match &output.body {
            Body::TripStart(start) => {
                assert!(open.is_none(), "a trip starts inside another at {:?}", output.at);
                open = Some((output, start));
            }
            Body::Telemetry(t) if open.is_some() => on_trip.push((output, t)),
            Body::TripEnd(end) => {
                let start = open.take().expect("an end has its start");
                assert_eq!(end.trip_id, start.1.trip_id);
                trips.push(RecordedTrip { start, telemetry: std::mem::take(&mut on_trip), end: (output, end) });
            }
            Body::Boot(_) => assert!(open.is_none(), "a bike reboots only while parked"),
            Body::Telemetry(_) | Body::Fault(_) => {}
        }
    }
    assert!(open.is_none(), "every trip started has ended");
    trips
}

#[test]
fn two_hours_of_riding_stay_in_range_and_every_trip_adds_up() {
    let settings = RideSettings::default();
    for seed in 0..4 {
        let outputs = simulate(settings.clone(), seed, 2 * HOUR, Duration::from_secs(1));

        // Boot first, then a strictly rising sequence.
        let mut recorder = Recorder::new(DeviceId::parse("bike-1").expect("id"), 1);
        let origin = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let seqs: Vec<u64> = outputs
            .iter()
            .map(|o| recorder.record(o.body.clone(), origin + TimeDelta::from_std(o.at).expect("delta")).seq)
            .collect();
        assert!(matches!(outputs[0].body, Body::Boot(_)), "{:?}", outputs[0]);
        assert_eq!(Seq::from(seqs[0]), Seq::new(1, 0));
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq rises strictly");
        assert!(outputs.windows(2).all(|w| w[0].at <= w[1].at), "outputs come in time order");

        let samples: Vec<&Telemetry> = outputs.iter().filter_map(telemetry).collect();
        samples.iter().for_each(|t| assert_in_range(t, &settings));
        assert!(samples.windows(2).all(|w| w[0].odometer_m <= w[1].odometer_m), "the odometer never runs back");
        let altitudes = samples.iter().map(|t| t.altitude_m);
        let (low, high) = altitudes.fold((f32::MAX, f32::MIN), |(l, h), a| (l.min(a), h.max(a)));
        assert!(high - low > 3.0, "hills: the altitude ranges over {low}..{high}");

        let trips = trips(&outputs);
        assert!(trips.len() >= 8, "seed {seed}: {} trips in two hours", trips.len());
        let (mut distance, mut moving) = (0u64, 0u32);
        for trip in &trips {
            let (start, end) = (trip.start.1, trip.end.1);
            let first = trip.telemetry.first().expect("telemetry at the start").1;
            let last = trip.telemetry.last().expect("telemetry at the end").1;
            assert_eq!(first.odometer_m, start.odometer_m);
            assert_eq!(last.odometer_m, end.odometer_m);
            assert_eq!(end.distance_m, end.odometer_m - start.odometer_m);
            assert!(
                trip.telemetry.windows(2).all(|w| w[0].1.battery_soc_pct >= w[1].1.battery_soc_pct),
                "the charge only falls while riding"
            );
            assert!(trip.telemetry.iter().all(|(_, t)| t.speed_kmh <= end.max_speed_kmh), "no sample beats the max");
            assert!(end.avg_speed_kmh <= end.max_speed_kmh && end.max_speed_kmh < 45.0, "{end:?}");
            assert!(end.moving_s <= end.duration_s, "{end:?}");
            let took = (trip.end.0.at - trip.start.0.at).as_secs_f64();
            assert!((took - f64::from(end.duration_s)).abs() <= 0.5, "{took} s vs {end:?}");
            let used_wh = f64::from(first.battery_soc_pct - last.battery_soc_pct) * settings.battery_wh / 100.0;
            assert!((used_wh - f64::from(end.energy_wh)).abs() < 0.05, "{used_wh} Wh vs {end:?}");
            assert!(end.energy_wh > 0.0);
            assert!(
                trip.telemetry.iter().any(|(_, t)| t.speed_kmh == 0.0 && t.odometer_m > start.odometer_m)
                    || took < 60.0,
                "a trip of a few minutes stops at a light or two"
            );
            distance += end.distance_m;
            moving += end.moving_s;
        }
        #[allow(clippy::cast_precision_loss)]
        let average_kmh = distance as f64 / f64::from(moving) * 3.6;
        assert!((10.0..=26.0).contains(&average_kmh), "seed {seed}: an average of {average_kmh} km/h while moving");
    }
}

#[test]
fn telemetry_follows_the_rate_while_riding_and_the_heartbeat_while_parked() {
    let settings = RideSettings {
        sample_every: Duration::from_millis(500),
        heartbeat_every: Some(Duration::from_secs(30)),
        ..RideSettings::default()
    };
    let outputs = simulate(settings, 7, HOUR, Duration::from_millis(1_300));
    let mut riding = false;
    let mut last: Option<Duration> = None;
    for output in &outputs {
        match &output.body {
            Body::TripStart(_) => (riding, last) = (true, None),
            Body::TripEnd(_) => (riding, last) = (false, Some(output.at)),
            Body::Telemetry(_) => {
                if let Some(last) = last {
                    let gap = output.at - last;
                    if riding {
                        assert!(gap <= Duration::from_millis(500), "{gap:?} between samples while riding");
                    } else {
                        assert_eq!(gap, Duration::from_secs(30), "heartbeats while parked");
                    }
                }
                last = Some(output.at);
            }
            _ => {}
        }
    }

    let silent = RideSettings { heartbeat_every: None, ..RideSettings::default() };
    let outputs = simulate(silent, 7, HOUR, Duration::from_secs(1));
    let mut riding = false;
    for output in &outputs {
        match &output.body {
            Body::TripStart(_) => riding = true,
            Body::TripEnd(_) => riding = false,
            Body::Telemetry(_) => assert!(riding, "no telemetry while parked without a heartbeat"),
            _ => {}
        }
    }
}

#[test]
fn the_same_seed_rides_the_same_day() {
    let ride = |seed| simulate(RideSettings::default(), seed, HOUR / 2, Duration::from_millis(700));
    assert_eq!(ride(11), ride(11));
    assert_ne!(ride(11), ride(12));
}

#[test]
fn faults_come_at_their_rate_and_reboots_only_while_parked() {
    let settings = RideSettings { faults_per_hour: 60.0, reboots_per_hour: 6.0, ..RideSettings::default() };
    let outputs = simulate(settings, 3, 2 * HOUR, Duration::from_secs(1));
    let faults = outputs.iter().filter(|o| matches!(o.body, Body::Fault(_))).count();
    assert!((60..=200).contains(&faults), "{faults} faults in two hours at 60 an hour");
    let reboots: Vec<&Boot> =
        outputs.iter().skip(1).filter_map(|o| if let Body::Boot(b) = &o.body { Some(b) } else { None }).collect();
    assert!(!reboots.is_empty());
    assert!(reboots.iter().all(|b| b.reset_reason() != ResetReason::PowerOn && b.firmware_version == "1.2.3"));
    trips(&outputs); // checks that no reboot falls inside a trip

    let quiet = RideSettings { faults_per_hour: 0.0, reboots_per_hour: 0.0, ..RideSettings::default() };
    let outputs = simulate(quiet, 3, 2 * HOUR, Duration::from_secs(1));
    assert!(
        outputs.iter().skip(1).all(|o| !matches!(o.body, Body::Fault(_) | Body::Boot(_))) || {
            // The only fault without a rate: the battery running low.
            outputs.iter().all(|o| match &o.body {
                Body::Fault(f) => f.code == "BMS_LOW_CHARGE",
                Body::Boot(_) => o.at.is_zero(),
                _ => true,
            })
        }
    );
}

#[test]
fn a_flat_battery_warns_stops_assisting_and_charges_on_the_dock() {
    // A small pack, so that it runs down within the test.
    let settings = RideSettings { battery_wh: 40.0, ..RideSettings::default() };
    let outputs = simulate(settings.clone(), 5, 4 * HOUR, Duration::from_secs(1));
    assert!(outputs.iter().any(|o| matches!(&o.body, Body::Fault(f) if f.code == "BMS_LOW_CHARGE")));
    let samples: Vec<&Telemetry> = outputs.iter().filter_map(telemetry).collect();
    samples.iter().for_each(|t| assert_in_range(t, &settings));
    assert!(samples.iter().any(|t| t.battery_current_a < 0.0), "a parked bike charges");
    assert!(
        samples.iter().all(|t| t.battery_soc_pct >= RESERVE_PCT as f32 || t.motor_power_w == 0.0),
        "no assist from the reserve"
    );
    trips(&outputs);
}

#[test]
fn parking_now_ends_the_trip_at_once() {
    let mut ride = Ride::new(RideSettings::default(), "1.2.3", 9);
    let mut outputs = Vec::new();
    while !ride.is_riding() {
        outputs.extend(ride.advance(Duration::from_secs(1)));
    }
    outputs.extend(ride.advance(Duration::from_secs(30)));
    let end = ride.park_now();
    assert!(!ride.is_riding());
    assert!(
        matches!(end.as_slice(), [Output { body: Body::Telemetry(t), .. }, Output { body: Body::TripEnd(_), .. }] if t.speed_kmh == 0.0)
    );
    assert_eq!(ride.park_now(), []);
    outputs.extend(end);
    assert_eq!(trips(&outputs).len(), 1);
}
