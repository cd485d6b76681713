//! The API's request and response bodies, with their OpenAPI schemas.

use chrono::{DateTime, Utc};
use fleet_proto::{GpsFix, Telemetry};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    fleet_state::BikeState,
    packet::Quarantined,
    registry::{self, Bike, Certificate},
    store::{Bucket, QuarantineEntry, Record},
};

/// What registering a bike takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBike {
    /// The manufacturer's serial, unique in the fleet (1 to 64 characters).
    pub serial: String,
    pub model: String,
    /// ASCII letters, digits, `.`, `-`, `+` and `_`, up to 32.
    pub firmware_version: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// A bike, with where it stands now.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BikeView {
    /// The bike's id: its certificate's CN and its topics' `{device_id}`.
    pub device_id: String,
    pub serial: String,
    pub model: String,
    pub firmware_version: String,
    pub display_name: Option<String>,
    pub registered_at: DateTime<Utc>,
    pub decommissioned_at: Option<DateTime<Utc>>,
    /// Seen within the online window.
    pub online: bool,
    /// When its newest packet reached the service.
    pub last_seen: Option<DateTime<Utc>>,
    /// Its newest packet and telemetry, if it has sent any since the service started.
    pub latest: Option<LatestView>,
}

/// A bike's newest packet and newest telemetry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LatestView {
    pub seq: u64,
    pub recorded_at: DateTime<Utc>,
    pub telemetry: Option<TelemetryView>,
}

/// One telemetry reading.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TelemetryView {
    pub recorded_at: DateTime<Utc>,
    pub lat: f64,
    pub lon: f64,
    pub altitude_m: f32,
    /// `none`, `2d`, `3d` or `unspecified`.
    pub gps_fix: String,
    pub hdop: f32,
    pub speed_kmh: f32,
    pub heading_deg: f32,
    pub battery_soc_pct: f32,
    pub battery_voltage_v: f32,
    pub battery_current_a: f32,
    pub battery_temp_c: f32,
    pub motor_power_w: f32,
    pub motor_temp_c: f32,
    pub assist_level: u32,
    pub cadence_rpm: f32,
    pub odometer_m: u64,
}

impl TelemetryView {
    pub fn new(recorded_at: DateTime<Utc>, t: &Telemetry) -> Self {
        let gps_fix = match GpsFix::try_from(t.gps_fix).unwrap_or(GpsFix::Unspecified) {
            GpsFix::Unspecified => "unspecified",
            GpsFix::None => "none",
            GpsFix::TwoD => "2d",
            GpsFix::ThreeD => "3d",
        };
        Self {
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
}

impl BikeView {
    pub fn new(bike: Bike, state: Option<BikeState>, online: bool) -> Self {
        Self {
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
                telemetry: s.telemetry.map(|t| TelemetryView::new(t.recorded_at, &t.telemetry)),
            }),
        }
    }
}

/// One page of bikes; `next` is the cursor of the following page, if there is one.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BikePage {
    pub items: Vec<BikeView>,
    pub next: Option<String>,
}

/// How to issue a certificate: for the key of a CSR (the key never leaves the bike), or with a
/// key generated here and returned once.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCertificate {
    /// A PKCS#10 CSR in PEM. Left out: a key is generated and returned once in `bundle`.
    #[serde(default)]
    pub csr_pem: Option<String>,
    /// How long it is valid (default: the service's setting, 365 days).
    #[serde(default)]
    pub validity_days: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CertificateView {
    /// Lower-case hex: what revocation names.
    pub serial: String,
    pub device_id: String,
    /// `csr` or `generated`.
    pub source: String,
    pub cert_pem: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revocation_reason: Option<String>,
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

/// A generated key with its certificate and the CA chain: shown once, never stored.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BundleView {
    pub cert_pem: String,
    pub key_pem: String,
    /// The issuing CA then the root.
    pub ca_chain_pem: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IssuedView {
    pub certificate: CertificateView,
    /// Only when the key was generated here.
    pub bundle: Option<BundleView>,
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

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CertificateList {
    pub items: Vec<CertificateView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// `unspecified`, `key_compromise`, `affiliation_changed`, `superseded` or
    /// `cessation_of_operation`.
    pub reason: String,
}

/// A stored packet.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecordView {
    pub seq: u64,
    pub recorded_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    /// `telemetry`, `trip_start`, `trip_end`, `fault` or `boot`.
    pub kind: String,
    /// The body's fields (as in `bike.proto`).
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
}

impl RecordView {
    pub fn new(record: &Record) -> Self {
        use fleet_proto::envelope::Body;
        let body = match &record.body {
            Body::Telemetry(t) => serde_json::to_value(TelemetryView::new(record.recorded_at, t)),
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
        Self {
            seq: record.seq,
            recorded_at: record.recorded_at,
            received_at: record.received_at,
            kind: record.body.kind().to_owned(),
            body,
        }
    }
}

/// History: raw packets, oldest first and paged (`items`, `next`), or with `every` downsampled
/// into time buckets (`every_secs`, `buckets`).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct TelemetryPage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<RecordView>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<BucketView>>,
}

/// One field's average, least and greatest value in a bucket.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatView {
    pub avg: f64,
    pub min: f64,
    pub max: f64,
}

/// One time bucket of telemetry, aggregated.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BucketView {
    pub start: DateTime<Utc>,
    pub count: u64,
    /// Per field (`speed_kmh`, `battery_soc_pct`, …).
    #[schema(value_type = std::collections::BTreeMap<String, StatView>)]
    pub stats: std::collections::BTreeMap<std::borrow::Cow<'static, str>, StatView>,
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

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Count {
    pub count: u64,
}

/// A packet that was not stored, and why.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QuarantineView {
    pub id: i64,
    pub received_at: DateTime<Utc>,
    pub topic: String,
    pub device_id: Option<String>,
    /// A stable code: `malformed`, `revoked`, `device_mismatch`, `out_of_range`, …
    pub reason: String,
    pub detail: String,
    /// The payload as it came (cut to 4 KiB), base64.
    pub payload_base64: String,
    pub payload_len: usize,
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

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QuarantinePage {
    pub items: Vec<QuarantineView>,
    pub next: Option<String>,
}

/// Where bikes connect.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BrokerView {
    pub url: String,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    /// On `/readyz`: `subscribed` once the broker has confirmed the ingest's subscriptions
    /// (from then on it keeps every packet for it), `connecting` before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest: Option<String>,
}
