//! Simulated bikes (fleet-sim, in-process) riding against a running service, and the checks
//! every ride must pass: each acknowledged packet stored once, each bike's latest state its
//! newest packet, downsampled history equal to what the raw rows give.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use fleet_sim::{SimConfig, Token, duration::DurationRange, offline::OfflineSettings};
use serde_json::Value;

use super::service::Service;

/// `bikes` ride for `ride`, with offline spells a few seconds apart, so that batches come too.
pub async fn ride(service: &Service, token: &str, bikes: usize, ride: Duration) -> fleet_sim::Report {
    let mut config = SimConfig {
        api: service.url(""),
        token: Token::new(token),
        bikes,
        duration: Some(ride),
        seed: Some(7),
        verify: true,
        progress_every: Duration::from_secs(3600),
        offline: OfflineSettings {
            every: Some(Duration::from_secs(4)),
            length: DurationRange { min: Duration::from_secs(1), max: Duration::from_secs(3) },
        },
        ..SimConfig::default()
    };
    config.ride.first_trip_within = Duration::from_secs(1);
    config.ride.sample_every = Duration::from_millis(500);
    let report = fleet_sim::run(config, std::future::pending()).await.expect("the simulator runs");
    assert!(report.is_success(), "{report}\n{:?}\n{}", report.failures(), service.log());
    report
}

/// Every check of a ride, for each bike the simulator rode.
pub async fn check(service: &Service, token: &str, report: &fleet_sim::Report) {
    let from = (Utc::now() - TimeDelta::hours(2)).to_rfc3339();
    let to = (Utc::now() + TimeDelta::minutes(10)).to_rfc3339();
    let mut batched = 0;
    for bike in &report.bikes {
        let device = bike.device_id.as_str();
        batched += bike.batched_packets;
        let count = service.get(&format!("/api/v1/bikes/{device}/telemetry/count"), token).await["count"].as_u64();
        assert_eq!(count, Some(bike.acknowledged), "{device}: every acknowledged packet stored, once");

        let mut records = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/bikes/{device}/telemetry?from={}&to={}&limit=1000", enc(&from), enc(&to));
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = service.get(&path, token).await;
            records.extend(page["items"].as_array().expect("items").iter().cloned());
            match page["next"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(records.len() as u64, bike.acknowledged, "{device}: the history holds every packet");
        let key = |r: &Value| (time(&r["recorded_at"]), r["seq"].as_u64().expect("seq"));
        assert!(records.windows(2).all(|w| key(&w[0]) <= key(&w[1])), "{device}: history is in recorded_at order");

        let newest = records.iter().max_by_key(|r| key(r)).expect("a packet");
        let view = service.get(&format!("/api/v1/bikes/{device}"), token).await;
        assert_eq!(view["latest"]["seq"], newest["seq"], "{device}: the latest state is the newest packet");
        let newest_telemetry =
            records.iter().filter(|r| r["kind"] == "telemetry").max_by_key(|r| key(r)).expect("telemetry");
        assert_eq!(view["latest"]["telemetry"]["odometer_m"], newest_telemetry["body"]["odometer_m"], "{device}");

        // Downsampled by the minute: each bucket's count and speed stats are those of its raw rows.
        let buckets = service
            .get(&format!("/api/v1/bikes/{device}/telemetry?from={}&to={}&every=1m", enc(&from), enc(&to)), token)
            .await;
        let telemetry: Vec<&Value> = records.iter().filter(|r| r["kind"] == "telemetry").collect();
        let mut total = 0;
        for bucket in buckets["buckets"].as_array().expect("buckets") {
            let start = time(&bucket["start"]);
            let rows: Vec<f64> = telemetry
                .iter()
                .filter(|r| (start..start + TimeDelta::minutes(1)).contains(&time(&r["recorded_at"])))
                .map(|r| r["body"]["speed_kmh"].as_f64().expect("speed"))
                .collect();
            assert_eq!(bucket["count"].as_u64(), Some(rows.len() as u64), "{device}: bucket {start}");
            let stats = &bucket["stats"]["speed_kmh"];
            let max = rows.iter().copied().fold(f64::MIN, f64::max);
            let min = rows.iter().copied().fold(f64::MAX, f64::min);
            #[allow(clippy::cast_precision_loss)]
            let avg = rows.iter().sum::<f64>() / rows.len() as f64;
            assert!((stats["max"].as_f64().expect("max") - max).abs() < 1e-3, "{device}: {stats} vs max {max}");
            assert!((stats["min"].as_f64().expect("min") - min).abs() < 1e-3, "{device}: {stats} vs min {min}");
            assert!((stats["avg"].as_f64().expect("avg") - avg).abs() < 1e-3, "{device}: {stats} vs avg {avg}");
            total += rows.len();
        }
        assert_eq!(total, telemetry.len(), "{device}: every telemetry row is in one bucket");
    }
    assert!(batched > 0, "offline spells sent batches: {report}");
}

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().expect("a time")).expect("RFC 3339").with_timezone(&Utc)
}

fn enc(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}
