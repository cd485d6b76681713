//! Fleetplane as Terraform's state backend (Terraform's `http` backend).
//!
//! A run's Terraform authenticates with the run's token (HTTP basic auth, any user name), and
//! may only touch its own cluster's state while the run is being worked on. Every state it
//! writes is kept, sealed, as a new version; the lock it takes records the run, is visible in the
//! API, is released when the run's attempt ends, and can be force-released by an admin.

use chrono::Utc;
use fleetplane_api as api;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    SqlErr,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::{
    auth::tokens,
    crypto::Sealed,
    db::begin_write,
    entity::{runs, state_locks, state_versions},
    error::{AppError, Result},
    runs::status,
    state::AppState,
};

/// The run a backend request acts for.
pub struct RunCaller {
    pub run: runs::Model,
}

/// Checks a run token for `cluster`: the run must be the cluster's and be in progress.
pub async fn authenticate(state: &AppState, cluster: Uuid, token: &str) -> Result<RunCaller> {
    let run = runs::Entity::find()
        .filter(runs::Column::TokenHash.eq(tokens::hash(token)))
        .filter(runs::Column::Status.is_in([status::RUNNING, status::APPLYING]))
        .filter(runs::Column::LeaseOwner.is_not_null())
        .one(&state.db)
        .await?
        .ok_or_else(|| {
            AppError::unauthorized("invalid_run_token", "This run token is unknown or its run has ended.")
        })?;
    if run.cluster_id != cluster {
        return Err(AppError::forbidden("wrong_cluster", "This run token is for another cluster's state."));
    }
    Ok(RunCaller { run })
}

/// Terraform's lock information, as its http backend sends it (field names as Terraform spells them).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LockInfo {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Operation", default)]
    pub operation: String,
    #[serde(rename = "Info", default)]
    pub info: String,
    #[serde(rename = "Who", default)]
    pub who: String,
    #[serde(rename = "Version", default)]
    pub version: String,
    #[serde(rename = "Created", default)]
    pub created: String,
    #[serde(rename = "Path", default)]
    pub path: String,
}

/// The outcome of a lock request.
pub enum Locking {
    Acquired,
    /// Held by someone else: their lock info, for Terraform to print.
    Held(Value),
}

/// Takes the lock for `caller`'s run, unless someone else holds it.
pub async fn lock(state: &AppState, cluster: Uuid, caller: &RunCaller, info: &LockInfo, raw: Value) -> Result<Locking> {
    let txn = begin_write(&state.db).await?;
    if let Some(existing) = state_locks::Entity::find_by_id(cluster).one(&txn).await? {
        txn.commit().await?;
        return Ok(if existing.lock_id == info.id { Locking::Acquired } else { Locking::Held(existing.info) });
    }
    let inserted = state_locks::ActiveModel {
        cluster_id: Set(cluster),
        lock_id: Set(info.id.clone()),
        info: Set(raw),
        run_id: Set(Some(caller.run.id)),
        created_at: Set(Utc::now()),
    }
    .insert(&txn)
    .await;
    match inserted {
        Ok(_) => {
            txn.commit().await?;
            Ok(Locking::Acquired)
        }
        // Another locker won a race on PostgreSQL (SQLite serialises writers).
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            drop(txn);
            let holder = state_locks::Entity::find_by_id(cluster).one(&state.db).await?;
            Ok(Locking::Held(holder.map(|l| l.info).unwrap_or(Value::Null)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Releases the lock if `info` names it. `Err(holder)` when someone else holds it.
pub async fn unlock(state: &AppState, cluster: Uuid, info: &LockInfo) -> Result<Result<(), Value>> {
    let Some(existing) = state_locks::Entity::find_by_id(cluster).one(&state.db).await? else { return Ok(Ok(())) };
    if existing.lock_id != info.id {
        return Ok(Err(existing.info));
    }
    state_locks::Entity::delete_many()
        .filter(state_locks::Column::ClusterId.eq(cluster))
        .filter(state_locks::Column::LockId.eq(&info.id))
        .exec(&state.db)
        .await?;
    Ok(Ok(()))
}

/// The latest state, decrypted.
pub async fn latest(state: &AppState, cluster: Uuid) -> Result<Option<Vec<u8>>> {
    let Some(version) = state_versions::Entity::find()
        .filter(state_versions::Column::ClusterId.eq(cluster))
        .order_by_desc(state_versions::Column::Id)
        .one(&state.db)
        .await?
    else {
        return Ok(None);
    };
    let sealed = Sealed { key_id: version.key_id.clone(), bytes: version.ciphertext.clone() };
    let plaintext = state.keyring.open(&sealed, version.id.as_bytes()).map_err(|e| {
        AppError::client(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "secret_unavailable",
            format!("The stored state cannot be opened: {e}."),
        )
    })?;
    Ok(Some(plaintext))
}

/// Stores a new state version. While a lock is held, writes must name it (`ID`): a Terraform
/// whose lock was taken from it must not overwrite state.
pub async fn store(
    state: &AppState,
    cluster: Uuid,
    caller: &RunCaller,
    lock_id: Option<&str>,
    body: &[u8],
) -> Result<()> {
    let document: Value = serde_json::from_slice(body)
        .map_err(|_| AppError::bad_request("invalid_state", "The state is not a JSON document."))?;
    let serial = document.get("serial").and_then(Value::as_i64).unwrap_or(0);
    let lineage = document.get("lineage").and_then(Value::as_str).unwrap_or_default().to_owned();
    let txn = begin_write(&state.db).await?;
    let lock = state_locks::Entity::find_by_id(cluster).one(&txn).await?;
    match (&lock, lock_id) {
        (Some(lock), Some(id)) if lock.lock_id == id => {}
        (None, None) => {}
        (Some(_), _) => {
            return Err(AppError::client(
                axum::http::StatusCode::LOCKED,
                "state_locked",
                "Another lock holds this state.",
            ));
        }
        (None, Some(_)) => {
            return Err(AppError::conflict("lock_lost", "This state's lock was released: the write is refused."));
        }
    }
    let id = Uuid::now_v7();
    let sealed = state.keyring.seal(body, id.as_bytes())?;
    state_versions::ActiveModel {
        id: Set(id),
        cluster_id: Set(cluster),
        serial: Set(serial),
        lineage: Set(lineage),
        run_id: Set(Some(caller.run.id)),
        size: Set(i32::try_from(body.len()).unwrap_or(i32::MAX)),
        key_id: Set(sealed.key_id),
        ciphertext: Set(sealed.bytes),
        created_at: Set(Utc::now()),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(())
}

/// The cluster's newest state versions (at most 50) and who holds its lock.
pub async fn info(conn: &impl ConnectionTrait, cluster: Uuid) -> Result<api::StateInfo, DbErr> {
    let versions = state_versions::Entity::find()
        .filter(state_versions::Column::ClusterId.eq(cluster))
        .order_by_desc(state_versions::Column::Id)
        .limit(50)
        .all(conn)
        .await?
        .into_iter()
        .map(|v| api::StateVersion {
            id: v.id,
            serial: u64::try_from(v.serial).unwrap_or_default(),
            run_id: v.run_id,
            size: u64::try_from(v.size).unwrap_or_default(),
            created_at: v.created_at,
        })
        .collect();
    let lock = state_locks::Entity::find_by_id(cluster).one(conn).await?.map(|lock| {
        let text = |key: &str| lock.info.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        api::StateLock {
            id: lock.lock_id.clone(),
            run_id: lock.run_id,
            operation: text("Operation"),
            who: text("Who"),
            created_at: lock.created_at,
        }
    });
    Ok(api::StateInfo { versions, lock })
}

/// Drops the lock whoever holds it (admins, for a lock whose Terraform is gone).
pub async fn force_unlock(conn: &impl ConnectionTrait, cluster: Uuid) -> Result<bool, DbErr> {
    Ok(state_locks::Entity::delete_by_id(cluster).exec(conn).await?.rows_affected > 0)
}
