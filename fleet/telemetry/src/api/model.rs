//! The API's bodies are the `fleet-api` crate's, shared with Fleetplane's UI; this module
//! makes them from the service's own types.

use chrono::{DateTime, Utc};
pub use fleet_api::*;
use fleet_proto::{GpsFix, Telemetry};

use crate::{
    fleet_state::BikeState,
    packet::Quarantined,
    registry::{self, Bike, Certificate},
    store::{Bucket, QuarantineEntry, Record},
};

/// A telemetry reading as the API shows it.
pub fn telemetry_view(recorded_at: DateTime<Utc>, t: &Telemetry) -> TelemetryView {
    let gps_fix = match GpsFix::try_from(t.gps_fix).unwrap_or(GpsFix::Unspecified) {
        GpsFix::Unspecified => "unspecified",
        GpsFix::None => "none",
        GpsFix::TwoD => "2d",
        GpsFix::ThreeD => "3d",
    };
    TelemetryView {
        recorded_at,
        lat: t.lat,
        lon: t.lon,
        altitude_m: t.altitude_m,
        gps_fix: gps_fix.to_owned(),
        hdop: t.hdop,
        speed_kmh: t.speed_kmh,
        heading_deg: t.heading_deg,
        battery_soc_pct: t.battery_soc_pct,
        battery_voltage_v: t.battery_voltage_v,
        battery_current_a: t.battery_current_a,
        battery_temp_c: t.battery_temp_c,
        motor_power_w: t.motor_power_w,
        motor_temp_c: t.motor_temp_c,
        assist_level: t.assist_level,
        cadence_rpm: t.cadence_rpm,
        odometer_m: t.odometer_m,
    }
}

/// A bike as the API shows it, with its latest state.
pub fn bike_view(bike: Bike, state: Option<BikeState>, online: bool) -> BikeView {
    BikeView {
        device_id: bike.device_id.to_string(),
        serial: bike.serial,
        model: bike.model,
        firmware_version: bike.firmware_version,
        display_name: bike.display_name,
        registered_at: bike.registered_at,
        decommissioned_at: bike.decommissioned_at,
        online,
        last_seen: state.as_ref().map(|s| s.last_seen),
        latest: state.map(|s| LatestView {
            seq: s.seq,
            recorded_at: s.recorded_at,
            telemetry: s.telemetry.map(|t| telemetry_view(t.recorded_at, &t.telemetry)),
        }),
    }
}

impl From<Certificate> for CertificateView {
    fn from(c: Certificate) -> Self {
        Self {
            serial: c.serial,
            device_id: c.device_id.to_string(),
            source: c.source.as_str().to_owned(),
            cert_pem: c.cert_pem,
            not_before: c.not_before,
            not_after: c.not_after,
            issued_at: c.issued_at,
            revoked_at: c.revoked.map(|(at, _)| at),
            revocation_reason: c.revoked.map(|(_, reason)| reason.as_str().to_owned()),
        }
    }
}

impl From<registry::Issued> for IssuedView {
    fn from(issued: registry::Issued) -> Self {
        Self {
            certificate: issued.certificate.into(),
            bundle: issued.bundle.map(|b| BundleView {
                cert_pem: b.issued.cert_pem,
                key_pem: b.key_pem,
                ca_chain_pem: b.chain_pem,
            }),
        }
    }
}

/// A stored packet as the API shows it.
pub fn record_view(record: &Record) -> RecordView {
    use fleet_proto::envelope::Body;
    let body = match &record.body {
        Body::Telemetry(t) => serde_json::to_value(telemetry_view(record.recorded_at, t)),
        Body::TripStart(t) => Ok(serde_json::json!({ "trip_id": t.trip_id, "odometer_m": t.odometer_m })),
        Body::TripEnd(t) => Ok(serde_json::json!({
            "trip_id": t.trip_id, "odometer_m": t.odometer_m, "distance_m": t.distance_m,
            "duration_s": t.duration_s, "moving_s": t.moving_s, "max_speed_kmh": t.max_speed_kmh,
            "avg_speed_kmh": t.avg_speed_kmh, "energy_wh": t.energy_wh,
        })),
        Body::Fault(f) => Ok(serde_json::json!({
            "code": f.code, "severity": f.severity().as_str_name(), "detail": f.detail,
        })),
        Body::Boot(b) => Ok(serde_json::json!({
            "firmware_version": b.firmware_version, "reset_reason": b.reset_reason().as_str_name(),
        })),
    }
    .unwrap_or_default();
    RecordView {
        seq: record.seq,
        recorded_at: record.recorded_at,
        received_at: record.received_at,
        kind: record.body.kind().to_owned(),
        body,
    }
}

impl From<Bucket> for BucketView {
    fn from(b: Bucket) -> Self {
        Self {
            start: b.start,
            count: b.count,
            stats: b
                .stats
                .into_iter()
                .map(|(name, s)| (name.into(), StatView { avg: s.avg, min: s.min, max: s.max }))
                .collect(),
        }
    }
}

impl From<QuarantineEntry> for QuarantineView {
    fn from(entry: QuarantineEntry) -> Self {
        use base64::Engine;
        let Quarantined { received_at, topic, device_id, reason, detail, payload, payload_len } = entry.quarantined;
        Self {
            id: entry.id,
            received_at,
            topic,
            device_id,
            reason: reason.as_str().to_owned(),
            detail,
            payload_base64: base64::engine::general_purpose::STANDARD.encode(payload),
            payload_len,
        }
    }
}
