//! The fleet API's request and response bodies, with their OpenAPI schemas: what
//! `fleet-telemetry` serves, and what Fleetplane's UI reads through its fleet proxy. Only
//! types: no runtime, so that the browser build can take them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What registering a bike takes.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
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
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
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
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
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

/// One page of bikes; `next` is the cursor of the following page, if there is one.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BikePage {
    pub items: Vec<BikeView>,
    pub next: Option<String>,
}

/// How to issue a certificate: for the key of a CSR (the key never leaves the bike), or with a
/// key generated here and returned once.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCertificate {
    /// A PKCS#10 CSR in PEM. Left out: a key is generated and returned once in `bundle`.
    #[serde(default)]
    pub csr_pem: Option<String>,
    /// How long it is valid (default: the service's setting, 365 days).
    #[serde(default)]
    pub validity_days: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
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

/// A generated key with its certificate and the CA chain: shown once, never stored.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BundleView {
    pub cert_pem: String,
    pub key_pem: String,
    /// The issuing CA then the root.
    pub ca_chain_pem: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct IssuedView {
    pub certificate: CertificateView,
    /// Only when the key was generated here.
    pub bundle: Option<BundleView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CertificateList {
    pub items: Vec<CertificateView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// `unspecified`, `key_compromise`, `affiliation_changed`, `superseded` or
    /// `cessation_of_operation`.
    pub reason: String,
}

/// A stored packet.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
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

/// History: raw packets, oldest first and paged (`items`, `next`), or with `every` downsampled
/// into time buckets (`every_secs`, `buckets`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
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
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StatView {
    pub avg: f64,
    pub min: f64,
    pub max: f64,
}

/// One time bucket of telemetry, aggregated.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BucketView {
    pub start: DateTime<Utc>,
    pub count: u64,
    /// Per field (`speed_kmh`, `battery_soc_pct`, …).
    #[schema(value_type = std::collections::BTreeMap<String, StatView>)]
    pub stats: std::collections::BTreeMap<std::borrow::Cow<'static, str>, StatView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Count {
    pub count: u64,
}

/// A packet that was not stored, and why.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
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

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct QuarantinePage {
    pub items: Vec<QuarantineView>,
    pub next: Option<String>,
}

/// Where bikes connect.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BrokerView {
    pub url: String,
    pub host: String,
    pub port: u16,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    /// On `/readyz`: `subscribed` once the broker has confirmed the ingest's subscriptions
    /// (from then on it keeps every packet for it), `connecting` before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest: Option<String>,
}
