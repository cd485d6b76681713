//! The registry: the bikes, the certificates the fleet CA issued them, the CA itself, and an
//! audit trail of every change. It lives in SQLite (the embedded default) or PostgreSQL.
//!
//! Every change is one transaction that also writes its audit event, so the trail can neither
//! miss a change nor record one that did not happen. Revoking, directly or by decommissioning a
//! bike, returns what the next CRL must list ([`CrlInput`]): the caller signs it and hands it
//! to the broker.

mod entity;
mod migrations;
pub mod tokens;

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use chrono::{DateTime, Utc};
use fleet_proto::DeviceId;
use fleetplane_common::{
    db,
    secrets::{Keyring, Sealed},
};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::NotSet,
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, SqlErr,
    sea_query::{Expr, ExprTrait},
};
use sea_orm_migration::MigratorTrait;
use serde_json::json;

use self::entity::{audit_events, authority, bikes, certificates};
use crate::pki::{Authority, Bundle, PkiError, Reason, Revoked, StoredAuthority};

/// The largest page a listing returns.
pub const MAX_PAGE: u64 = 500;
/// The page a listing returns when none is asked for.
pub const DEFAULT_PAGE: u64 = 50;
/// The longest serial, model and display name.
pub const MAX_TEXT: usize = 64;
pub const MAX_DISPLAY_NAME: usize = 100;
/// The longest firmware version.
pub const MAX_FIRMWARE: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A field of the request is not acceptable; `field` names it as the API does.
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("a bike with serial `{0}` is already registered")]
    SerialTaken(String),
    #[error("no bike `{0}` is registered")]
    BikeNotFound(String),
    #[error("no certificate `{0}` was issued by this CA")]
    CertificateNotFound(String),
    #[error("bike `{0}` is decommissioned")]
    Decommissioned(String),
    #[error("no API token `{0}`")]
    TokenNotFound(String),
    /// A certificate (by serial) or a token (`token {id}`) that is revoked already.
    #[error("{0} is already revoked")]
    AlreadyRevoked(String),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("the registry database failed: {0}")]
    Database(#[from] DbErr),
}

fn invalid(field: &'static str, message: impl Into<String>) -> RegistryError {
    RegistryError::Invalid { field, message: message.into() }
}

/// What registering a bike takes.
#[derive(Clone, Debug, Default)]
pub struct NewBike {
    pub serial: String,
    pub model: String,
    pub firmware_version: String,
    pub display_name: Option<String>,
}

impl NewBike {
    /// The request with its text trimmed, or the first field that is not acceptable.
    fn validated(&self) -> Result<Self, RegistryError> {
        let serial = text("serial", &self.serial, MAX_TEXT)?;
        let model = text("model", &self.model, MAX_TEXT)?;
        let firmware_version = self.firmware_version.trim().to_owned();
        if firmware_version.is_empty() || firmware_version.len() > MAX_FIRMWARE {
            return Err(invalid("firmware_version", format!("must be 1 to {MAX_FIRMWARE} characters")));
        }
        if !firmware_version.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'_')) {
            return Err(invalid("firmware_version", "may hold only ASCII letters, digits, `.`, `-`, `+` and `_`"));
        }
        let display_name = match self.display_name.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name) => Some(text("display_name", name, MAX_DISPLAY_NAME)?),
        };
        Ok(Self { serial, model, firmware_version, display_name })
    }
}

/// `value` trimmed, if it is 1 to `max` characters with no control characters.
fn text(field: &'static str, value: &str, max: usize) -> Result<String, RegistryError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max {
        return Err(invalid(field, format!("must be 1 to {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "cannot hold control characters"));
    }
    Ok(value.to_owned())
}

/// A registered bike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bike {
    pub device_id: DeviceId,
    pub serial: String,
    pub model: String,
    pub firmware_version: String,
    pub display_name: Option<String>,
    pub registered_at: DateTime<Utc>,
    pub decommissioned_at: Option<DateTime<Utc>>,
}

impl Bike {
    fn from_row(row: bikes::Model) -> Result<Self, RegistryError> {
        Ok(Self {
            device_id: stored_device_id(&row.device_id)?,
            serial: row.serial,
            model: row.model,
            firmware_version: row.firmware_version,
            display_name: row.display_name,
            registered_at: row.registered_at,
            decommissioned_at: row.decommissioned_at,
        })
    }
}

fn stored_device_id(text: &str) -> Result<DeviceId, RegistryError> {
    DeviceId::parse(text).map_err(|e| DbErr::Custom(format!("stored device id `{text}`: {e}")).into())
}

/// Which bikes a listing returns.
#[derive(Clone, Debug, Default)]
pub struct BikeFilter {
    pub model: Option<String>,
    pub firmware_version: Option<String>,
    /// Whether decommissioned bikes are listed too.
    pub decommissioned: bool,
}

/// One page of a listing, and the cursor of the next if there is one.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// How a certificate's key came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// From the bike's CSR: the key never left the bike.
    Csr,
    /// Generated here and handed out once.
    Generated,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Csr => "csr",
            Source::Generated => "generated",
        }
    }
}

/// A certificate the fleet CA issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    pub serial: String,
    pub device_id: DeviceId,
    pub source: Source,
    pub cert_pem: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
    pub revoked: Option<(DateTime<Utc>, Reason)>,
}

impl Certificate {
    fn from_row(row: certificates::Model) -> Result<Self, RegistryError> {
        let source = match row.source.as_str() {
            "csr" => Source::Csr,
            "generated" => Source::Generated,
            other => return Err(DbErr::Custom(format!("stored certificate source `{other}`")).into()),
        };
        let revoked = match (row.revoked_at, row.revocation_reason) {
            (Some(at), Some(reason)) => Some((
                at,
                Reason::parse(&reason).ok_or_else(|| DbErr::Custom(format!("stored revocation reason `{reason}`")))?,
            )),
            _ => None,
        };
        Ok(Self {
            device_id: stored_device_id(&row.device_id)?,
            serial: row.serial,
            source,
            cert_pem: row.cert_pem,
            not_before: row.not_before,
            not_after: row.not_after,
            issued_at: row.issued_at,
            revoked,
        })
    }
}

/// How a certificate is to be issued.
pub enum Request<'a> {
    /// For the key of this CSR (PEM).
    Csr(&'a str),
    /// With a key generated for it.
    Generate,
}

/// What a certificate was issued with: the generated key comes back once, here.
pub struct Issued {
    pub certificate: Certificate,
    pub bundle: Option<Bundle>,
}

/// What the next CRL lists, and its number.
#[derive(Clone, Debug)]
pub struct CrlInput {
    pub number: u64,
    pub revoked: Vec<Revoked>,
}

/// Where a registered bike stands with the ingest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// It holds a certificate neither revoked nor expired: its packets are stored.
    Admitted,
    /// Every certificate it was issued is revoked (or expired since).
    Revoked,
    /// It was decommissioned.
    Decommissioned,
    /// It was never issued a certificate that is still valid.
    Uncertified,
}

/// One entry of the audit trail.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub device_id: Option<String>,
    pub details: Option<serde_json::Value>,
}

const AUTHORITY_ID: i32 = 1;

/// The registry, on an open database.
#[derive(Clone)]
pub struct Registry {
    db: DatabaseConnection,
}

impl Registry {
    /// Connects to `url` (SQLite or PostgreSQL) and brings its schema up to date.
    pub async fn open(url: &str, pool_size: u32) -> anyhow::Result<Self> {
        let db = db::connect(url, pool_size).await?;
        migrations::Migrator::up(&db, None).await.map_err(|e| anyhow::anyhow!("migrating the registry: {e}"))?;
        Ok(Self { db })
    }

    pub fn database(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The fleet CA: the stored one opened under `keyring`, or, on the first start, a new one.
    /// When two replicas start together, one creates it and the other opens that one.
    pub async fn authority(&self, keyring: &Keyring, now: SystemTime) -> Result<Authority, RegistryError> {
        if let Some(row) = authority::Entity::find_by_id(AUTHORITY_ID).one(&self.db).await? {
            return Ok(Authority::open(&stored_authority(row), keyring)?);
        }
        let (created, stored) = Authority::create(keyring, now)?;
        let row = authority::ActiveModel {
            id: Set(AUTHORITY_ID),
            root_cert_pem: Set(stored.root_cert_pem),
            root_key_id: Set(stored.root_key.key_id),
            root_key: Set(stored.root_key.bytes),
            issuing_cert_pem: Set(stored.issuing_cert_pem),
            issuing_key_id: Set(stored.issuing_key.key_id),
            issuing_key: Set(stored.issuing_key.bytes),
            crl_number: Set(0),
            created_at: Set(now.into()),
        };
        match authority::Entity::insert(row).exec(&self.db).await {
            Ok(_) => Ok(created),
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                let row = authority::Entity::find_by_id(AUTHORITY_ID)
                    .one(&self.db)
                    .await?
                    .ok_or_else(|| DbErr::RecordNotFound("the fleet CA another replica created".into()))?;
                Ok(Authority::open(&stored_authority(row), keyring)?)
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn register(&self, actor: &str, bike: &NewBike, now: DateTime<Utc>) -> Result<Bike, RegistryError> {
        let bike = bike.validated()?;
        let device_id = new_device_id();
        let tx = db::begin_write(&self.db).await?;
        let row = bikes::ActiveModel {
            device_id: Set(device_id.as_str().to_owned()),
            serial: Set(bike.serial.clone()),
            model: Set(bike.model.clone()),
            firmware_version: Set(bike.firmware_version.clone()),
            display_name: Set(bike.display_name.clone()),
            registered_at: Set(now),
            decommissioned_at: Set(None),
        };
        let row = match row.insert(&tx).await {
            Ok(row) => row,
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                return Err(RegistryError::SerialTaken(bike.serial));
            }
            Err(e) => return Err(e.into()),
        };
        audit(
            &tx,
            now,
            actor,
            "bike.register",
            Some(&device_id),
            json!({ "serial": bike.serial, "model": bike.model, "firmware_version": bike.firmware_version }),
        )
        .await?;
        tx.commit().await?;
        Bike::from_row(row)
    }

    pub async fn bike(&self, device_id: &DeviceId) -> Result<Bike, RegistryError> {
        let row = bikes::Entity::find_by_id(device_id.as_str())
            .one(&self.db)
            .await?
            .ok_or_else(|| RegistryError::BikeNotFound(device_id.to_string()))?;
        Bike::from_row(row)
    }

    /// Bikes in device-id order, from after the cursor `after`, at most `limit` of them.
    pub async fn bikes(
        &self,
        filter: &BikeFilter,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Page<Bike>, RegistryError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut query = bikes::Entity::find().order_by_asc(bikes::Column::DeviceId);
        if let Some(after) = after {
            query = query.filter(bikes::Column::DeviceId.gt(after));
        }
        if let Some(model) = &filter.model {
            query = query.filter(bikes::Column::Model.eq(model.as_str()));
        }
        if let Some(firmware) = &filter.firmware_version {
            query = query.filter(bikes::Column::FirmwareVersion.eq(firmware.as_str()));
        }
        if !filter.decommissioned {
            query = query.filter(bikes::Column::DecommissionedAt.is_null());
        }
        let mut rows = query.limit(limit + 1).all(&self.db).await?;
        let next = (rows.len() as u64 > limit).then(|| {
            rows.truncate(limit as usize);
            rows.last().map(|row| row.device_id.clone()).unwrap_or_default()
        });
        let items = rows.into_iter().map(Bike::from_row).collect::<Result<_, _>>()?;
        Ok(Page { items, next })
    }

    /// How many bikes are in service (registered, not decommissioned).
    pub async fn bikes_in_service(&self) -> Result<u64, RegistryError> {
        Ok(bikes::Entity::find().filter(bikes::Column::DecommissionedAt.is_null()).count(&self.db).await?)
    }

    /// Issues `device_id` a certificate valid for `validity` from `now`.
    pub async fn issue(
        &self,
        actor: &str,
        authority: &Authority,
        device_id: &DeviceId,
        request: Request<'_>,
        validity: Duration,
        now: SystemTime,
    ) -> Result<Issued, RegistryError> {
        let tx = db::begin_write(&self.db).await?;
        let bike = bikes::Entity::find_by_id(device_id.as_str())
            .one(&tx)
            .await?
            .ok_or_else(|| RegistryError::BikeNotFound(device_id.to_string()))?;
        if bike.decommissioned_at.is_some() {
            return Err(RegistryError::Decommissioned(device_id.to_string()));
        }
        let (source, issued, bundle) = match request {
            Request::Csr(csr) => (Source::Csr, authority.issue_from_csr(device_id, csr, now, validity)?, None),
            Request::Generate => {
                let bundle = authority.issue_generated(device_id, now, validity)?;
                (Source::Generated, bundle.issued.clone(), Some(bundle))
            }
        };
        let row = certificates::ActiveModel {
            serial: Set(issued.serial.clone()),
            device_id: Set(device_id.as_str().to_owned()),
            source: Set(source.as_str().to_owned()),
            cert_pem: Set(issued.cert_pem.clone()),
            not_before: Set(issued.not_before.into()),
            not_after: Set(issued.not_after.into()),
            issued_at: Set(now.into()),
            revoked_at: Set(None),
            revocation_reason: Set(None),
        }
        .insert(&tx)
        .await?;
        let not_after: DateTime<Utc> = issued.not_after.into();
        audit(
            &tx,
            now.into(),
            actor,
            "certificate.issue",
            Some(device_id),
            json!({ "serial": issued.serial, "source": source.as_str(), "not_after": not_after }),
        )
        .await?;
        tx.commit().await?;
        Ok(Issued { certificate: Certificate::from_row(row)?, bundle })
    }

    /// The certificates issued to `device_id`, newest first.
    pub async fn certificates(&self, device_id: &DeviceId) -> Result<Vec<Certificate>, RegistryError> {
        self.bike(device_id).await?;
        certificates::Entity::find()
            .filter(certificates::Column::DeviceId.eq(device_id.as_str()))
            .order_by_desc(certificates::Column::IssuedAt)
            .order_by_desc(certificates::Column::Serial)
            .all(&self.db)
            .await?
            .into_iter()
            .map(Certificate::from_row)
            .collect()
    }

    pub async fn certificate(&self, serial: &str) -> Result<Certificate, RegistryError> {
        let row = certificates::Entity::find_by_id(serial.to_ascii_lowercase())
            .one(&self.db)
            .await?
            .ok_or_else(|| RegistryError::CertificateNotFound(serial.to_owned()))?;
        Certificate::from_row(row)
    }

    /// Revokes the certificate `serial` for `reason`, and returns it with what the next CRL lists.
    pub async fn revoke(
        &self,
        actor: &str,
        serial: &str,
        reason: Reason,
        now: SystemTime,
    ) -> Result<(Certificate, CrlInput), RegistryError> {
        let serial = serial.to_ascii_lowercase();
        let tx = db::begin_write(&self.db).await?;
        let row = certificates::Entity::find_by_id(serial.as_str())
            .one(&tx)
            .await?
            .ok_or_else(|| RegistryError::CertificateNotFound(serial.clone()))?;
        if row.revoked_at.is_some() {
            return Err(RegistryError::AlreadyRevoked(format!("certificate {serial}")));
        }
        let device_id = stored_device_id(&row.device_id)?;
        let mut row: certificates::ActiveModel = row.into();
        row.revoked_at = Set(Some(now.into()));
        row.revocation_reason = Set(Some(reason.as_str().to_owned()));
        let row = row.update(&tx).await?;
        audit(
            &tx,
            now.into(),
            actor,
            "certificate.revoke",
            Some(&device_id),
            json!({ "serial": serial, "reason": reason.as_str() }),
        )
        .await?;
        let crl = next_crl(&tx, now).await?;
        tx.commit().await?;
        Ok((Certificate::from_row(row)?, crl))
    }

    /// Takes `device_id` out of service: it is listed no more and every certificate it still
    /// holds is revoked (`cessationOfOperation`). Returns the bike, and what the next CRL lists
    /// if a certificate was revoked.
    pub async fn decommission(
        &self,
        actor: &str,
        device_id: &DeviceId,
        now: SystemTime,
    ) -> Result<(Bike, Option<CrlInput>), RegistryError> {
        let tx = db::begin_write(&self.db).await?;
        let row = bikes::Entity::find_by_id(device_id.as_str())
            .one(&tx)
            .await?
            .ok_or_else(|| RegistryError::BikeNotFound(device_id.to_string()))?;
        if row.decommissioned_at.is_some() {
            return Err(RegistryError::Decommissioned(device_id.to_string()));
        }
        let mut row: bikes::ActiveModel = row.into();
        row.decommissioned_at = Set(Some(now.into()));
        let row = row.update(&tx).await?;
        let held = certificates::Entity::find()
            .filter(certificates::Column::DeviceId.eq(device_id.as_str()))
            .filter(certificates::Column::RevokedAt.is_null())
            .all(&tx)
            .await?;
        let revoked: Vec<String> = held.iter().map(|c| c.serial.clone()).collect();
        if !revoked.is_empty() {
            certificates::Entity::update_many()
                .col_expr(certificates::Column::RevokedAt, Expr::value(DateTime::<Utc>::from(now)))
                .col_expr(certificates::Column::RevocationReason, Expr::value(Reason::CessationOfOperation.as_str()))
                .filter(certificates::Column::Serial.is_in(revoked.iter().map(String::as_str)))
                .exec(&tx)
                .await?;
        }
        audit(&tx, now.into(), actor, "bike.decommission", Some(device_id), json!({ "revoked": revoked })).await?;
        let crl = if revoked.is_empty() { None } else { Some(next_crl(&tx, now).await?) };
        tx.commit().await?;
        Ok((Bike::from_row(row)?, crl))
    }

    /// What the current CRL lists, with the next number: for re-signing it before it expires,
    /// and on start.
    pub async fn crl_input(&self, now: SystemTime) -> Result<CrlInput, RegistryError> {
        let tx = db::begin_write(&self.db).await?;
        let crl = next_crl(&tx, now).await?;
        tx.commit().await?;
        Ok(crl)
    }

    /// Where every registered bike stands, for the ingest: it stores the packets of admitted
    /// bikes only. A bike's MQTT session does not say which certificate opened it, so a bike
    /// is admitted while it holds at least one certificate neither revoked nor expired.
    pub async fn standings(&self, now: SystemTime) -> Result<HashMap<DeviceId, Standing>, RegistryError> {
        let bikes = bikes::Entity::find()
            .select_only()
            .column(bikes::Column::DeviceId)
            .column(bikes::Column::DecommissionedAt)
            .into_tuple::<(String, Option<DateTime<Utc>>)>()
            .all(&self.db)
            .await?;
        let now_utc: DateTime<Utc> = now.into();
        let certificates = certificates::Entity::find()
            .select_only()
            .column(certificates::Column::DeviceId)
            .column(certificates::Column::RevokedAt)
            .filter(certificates::Column::NotAfter.gt(now_utc))
            .into_tuple::<(String, Option<DateTime<Utc>>)>()
            .all(&self.db)
            .await?;
        let mut standings = HashMap::with_capacity(bikes.len());
        for (device_id, decommissioned_at) in bikes {
            let standing = if decommissioned_at.is_some() { Standing::Decommissioned } else { Standing::Uncertified };
            standings.insert(device_id, standing);
        }
        for (device_id, revoked_at) in certificates {
            if let Some(standing) = standings.get_mut(&device_id) {
                *standing = match (*standing, revoked_at) {
                    (Standing::Decommissioned, _) => Standing::Decommissioned,
                    (_, None) | (Standing::Admitted, _) => Standing::Admitted,
                    (_, Some(_)) => Standing::Revoked,
                };
            }
        }
        standings.into_iter().map(|(device_id, standing)| Ok((stored_device_id(&device_id)?, standing))).collect()
    }

    /// The audit trail, newest first; of one bike if `device_id` is given.
    pub async fn audit_events(
        &self,
        device_id: Option<&DeviceId>,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Page<AuditEvent>, RegistryError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut query = audit_events::Entity::find().order_by_desc(audit_events::Column::Id);
        if let Some(device_id) = device_id {
            query = query.filter(audit_events::Column::DeviceId.eq(device_id.as_str()));
        }
        if let Some(before) = before {
            query = query.filter(audit_events::Column::Id.lt(before));
        }
        let mut rows = query.limit(limit + 1).all(&self.db).await?;
        let next = (rows.len() as u64 > limit).then(|| {
            rows.truncate(limit as usize);
            rows.last().map(|row| row.id.to_string()).unwrap_or_default()
        });
        let items = rows
            .into_iter()
            .map(|row| AuditEvent {
                id: row.id,
                at: row.at,
                actor: row.actor,
                action: row.action,
                device_id: row.device_id,
                details: row.details,
            })
            .collect();
        Ok(Page { items, next })
    }
}

fn stored_authority(row: authority::Model) -> StoredAuthority {
    StoredAuthority {
        root_cert_pem: row.root_cert_pem,
        root_key: Sealed { key_id: row.root_key_id, bytes: row.root_key },
        issuing_cert_pem: row.issuing_cert_pem,
        issuing_key: Sealed { key_id: row.issuing_key_id, bytes: row.issuing_key },
    }
}

/// A fresh device id: `bike-` and 16 random hex digits.
fn new_device_id() -> DeviceId {
    let bytes: [u8; 8] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    DeviceId::parse(&format!("bike-{hex}")).expect("a generated device id is valid")
}

async fn audit(
    tx: &impl ConnectionTrait,
    at: DateTime<Utc>,
    actor: &str,
    action: &str,
    device_id: Option<&DeviceId>,
    details: serde_json::Value,
) -> Result<(), DbErr> {
    audit_events::ActiveModel {
        id: NotSet,
        at: Set(at),
        actor: Set(actor.to_owned()),
        action: Set(action.to_owned()),
        device_id: Set(device_id.map(|d| d.as_str().to_owned())),
        details: Set(Some(details)),
    }
    .insert(tx)
    .await
    .map(drop)
}

/// Takes the next CRL number and reads what it lists: every revoked certificate that has not
/// expired (an expired one is refused anyway).
async fn next_crl(tx: &impl ConnectionTrait, now: SystemTime) -> Result<CrlInput, RegistryError> {
    authority::Entity::update_many()
        .col_expr(authority::Column::CrlNumber, Expr::col(authority::Column::CrlNumber).add(1))
        .filter(authority::Column::Id.eq(AUTHORITY_ID))
        .exec(tx)
        .await?;
    let number = authority::Entity::find_by_id(AUTHORITY_ID)
        .select_only()
        .column(authority::Column::CrlNumber)
        .into_tuple::<i64>()
        .one(tx)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the fleet CA (it is created on first start)".into()))?;
    let now_utc: DateTime<Utc> = now.into();
    let rows = certificates::Entity::find()
        .filter(certificates::Column::RevokedAt.is_not_null())
        .filter(certificates::Column::NotAfter.gt(now_utc))
        .order_by_asc(certificates::Column::Serial)
        .all(tx)
        .await?;
    let revoked = rows
        .into_iter()
        .filter_map(|row| {
            let reason = Reason::parse(row.revocation_reason.as_deref()?)?;
            Some(Revoked { serial: row.serial, at: row.revoked_at?.into(), reason })
        })
        .collect();
    Ok(CrlInput { number: number as u64, revoked })
}

#[cfg(test)]
pub(crate) mod tests;
