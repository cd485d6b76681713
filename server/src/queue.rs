//! The run queue: the `runs` table, claimed by workers with a lease.
//!
//! A worker claims the oldest claimable run (queued, or approved and waiting to apply) whose
//! cluster has no earlier unfinished run, and holds it with a lease it renews by heartbeat. A
//! worker that stops renewing loses the run to the reaper, which queues it again with a backoff
//! (or fails it after its last attempt) and releases the state lock its Terraform held.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
    sea_query::{Alias, Expr, ExprTrait, LockBehavior, LockType, Query},
};
use uuid::Uuid;

use crate::{
    auth::tokens,
    db::begin_write,
    entity::{run_logs, runs, state_locks},
    runs::status,
};

/// A claimed run and the token its Terraform uses for the state backend (shown once).
pub struct Claimed {
    pub run: runs::Model,
    pub token: String,
}

fn seconds(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// Holds for runs that no earlier unfinished run of the same cluster blocks: one active run per
/// cluster, in order. One correlated `NOT EXISTS`, served by the `(cluster_id, id)` index.
pub fn not_blocked() -> Condition {
    let earlier = Alias::new("earlier");
    let blocker = Query::select()
        .expr(Expr::val(1))
        .from_as(runs::Entity, earlier.clone())
        .and_where(
            Expr::col((earlier.clone(), runs::Column::ClusterId)).equals((runs::Entity, runs::Column::ClusterId)),
        )
        .and_where(Expr::col((earlier.clone(), runs::Column::Id)).lt(Expr::col((runs::Entity, runs::Column::Id))))
        .and_where(Expr::col((earlier, runs::Column::Status)).is_not_in(status::TERMINAL))
        .to_owned();
    Condition::all().add(Expr::exists(blocker).not())
}

/// Claims the next run for `worker`, if any is claimable.
pub async fn claim(db: &DatabaseConnection, worker: &str, lease: Duration) -> Result<Option<Claimed>, DbErr> {
    let now = Utc::now();

    // SQLite: `begin_write` takes the database's write lock first, so claims are serial.
    // PostgreSQL: `FOR UPDATE SKIP LOCKED` locks the chosen row for this transaction and makes
    // concurrent claimers pass over it to the next one, so two workers never get the same run and
    // none waits on another. The lease columns are then set in the same transaction.
    let txn = begin_write(db).await?;
    let candidate = runs::Entity::find()
        .filter(runs::Column::Status.is_in([status::QUEUED, status::APPLYING]))
        .filter(runs::Column::LeaseOwner.is_null())
        .filter(runs::Column::NotBefore.lte(now))
        .filter(not_blocked())
        .order_by_asc(runs::Column::Id)
        .limit(1)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .one(&txn)
        .await?;
    let Some(run) = candidate else {
        txn.commit().await?;
        return Ok(None);
    };
    let token = tokens::generate("fprun_");
    let starting = run.status == status::QUEUED;
    let mut update = runs::Entity::update_many()
        .col_expr(runs::Column::LeaseOwner, Expr::value(worker))
        .col_expr(runs::Column::LeaseExpiresAt, Expr::value(now + seconds(lease)))
        .col_expr(runs::Column::TokenHash, Expr::value(tokens::hash(&token)))
        .col_expr(runs::Column::UpdatedAt, Expr::value(now));
    if starting {
        update = update
            .col_expr(runs::Column::Status, Expr::value(status::RUNNING))
            .col_expr(runs::Column::Attempts, Expr::col(runs::Column::Attempts).add(1))
            .col_expr(runs::Column::StartedAt, Expr::value(run.started_at.unwrap_or(now)))
            .col_expr(runs::Column::Reason, Expr::value(Option::<String>::None));
    }
    update.filter(runs::Column::Id.eq(run.id)).filter(runs::Column::LeaseOwner.is_null()).exec(&txn).await?;
    if starting {
        crate::events::run_changed(&txn, run.id).await?;
    }
    let claimed = runs::Entity::find_by_id(run.id).one(&txn).await?;
    txn.commit().await?;
    Ok(claimed.map(|run| Claimed { run, token }))
}

/// What a heartbeat learned.
#[derive(Debug, PartialEq, Eq)]
pub enum Beat {
    /// The lease is renewed.
    Held,
    /// Renewed, and someone asked to cancel the run.
    CancelRequested,
    /// The run is no longer ours (the reaper took it, or it ended): stop working on it.
    Lost,
}

/// Renews `worker`'s lease on `run`.
pub async fn heartbeat(db: &DatabaseConnection, run: Uuid, worker: &str, lease: Duration) -> Result<Beat, DbErr> {
    let now = Utc::now();
    let renewed = runs::Entity::update_many()
        .col_expr(runs::Column::LeaseExpiresAt, Expr::value(now + seconds(lease)))
        .filter(runs::Column::Id.eq(run))
        .filter(runs::Column::LeaseOwner.eq(worker))
        .exec(db)
        .await?;
    if renewed.rows_affected == 0 {
        return Ok(Beat::Lost);
    }
    let cancel = runs::Entity::find_by_id(run)
        .select_only()
        .column(runs::Column::CancelRequestedAt)
        .into_tuple::<Option<DateTime<Utc>>>()
        .one(db)
        .await?
        .flatten();
    Ok(if cancel.is_some() { Beat::CancelRequested } else { Beat::Held })
}

/// Drops whatever state lock `run`'s Terraform still holds: an interrupted or killed Terraform
/// cannot release it itself, and a lock must never outlive its run.
pub async fn release_locks(conn: &impl ConnectionTrait, run: Uuid) -> Result<u64, DbErr> {
    Ok(state_locks::Entity::delete_many().filter(state_locks::Column::RunId.eq(run)).exec(conn).await?.rows_affected)
}

/// The wait before attempt `attempts + 1`: 15 s, 30 s, 60 s… up to 10 minutes.
pub fn backoff(attempts: i32) -> TimeDelta {
    let exponent = Ord::min(u32::try_from(attempts.saturating_sub(1)).unwrap_or(0), 6);
    TimeDelta::seconds(Ord::min(15_i64 << exponent, 600))
}

/// Appends a note of Fleetplane's own to a run's log.
pub async fn note(conn: &impl ConnectionTrait, run: &runs::Model, text: &str) -> Result<(), DbErr> {
    let last = last_log_seq(conn, run.id).await?;
    run_logs::Entity::insert(run_logs::ActiveModel {
        run_id: sea_orm::Set(run.id),
        seq: sea_orm::Set(last + 1),
        attempt: sea_orm::Set(run.attempts),
        stream: sea_orm::Set("system".into()),
        text: sea_orm::Set(text.to_owned()),
        at: sea_orm::Set(Utc::now()),
    })
    .exec(conn)
    .await
    .map(drop)
}

/// The number of `run`'s last log line, 0 when it has none.
pub async fn last_log_seq(conn: &impl ConnectionTrait, run: Uuid) -> Result<i64, DbErr> {
    Ok(run_logs::Entity::find()
        .filter(run_logs::Column::RunId.eq(run))
        .select_only()
        .column_as(run_logs::Column::Seq.max(), "seq")
        .into_tuple::<Option<i64>>()
        .one(conn)
        .await?
        .flatten()
        .unwrap_or(0))
}

/// Gives up `worker`'s hold on `run`, back to the queue: its attempt failed for reasons outside
/// Terraform (the worker is stopping, the engine is down). With attempts left it waits a backoff
/// (none when `counts` is false); otherwise it fails with `reason`.
pub async fn requeue(
    db: &DatabaseConnection,
    run: &runs::Model,
    worker: Option<&str>,
    reason: &str,
    counts: bool,
) -> Result<bool, DbErr> {
    let now = Utc::now();
    let txn = db.begin().await?;
    let attempts = if counts { run.attempts } else { run.attempts.saturating_sub(1) };
    let exhausted = counts && attempts >= run.max_attempts;
    let canceled = run.cancel_requested_at.is_some();
    let mut update = runs::Entity::update_many()
        .col_expr(runs::Column::LeaseOwner, Expr::value(Option::<String>::None))
        .col_expr(runs::Column::LeaseExpiresAt, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(runs::Column::TokenHash, Expr::value(Option::<String>::None))
        .col_expr(runs::Column::Attempts, Expr::value(attempts))
        .col_expr(runs::Column::PlanSealed, Expr::value(Option::<Vec<u8>>::None))
        .col_expr(runs::Column::PlanKeyId, Expr::value(Option::<String>::None))
        .col_expr(runs::Column::UpdatedAt, Expr::value(now));
    let (next, message) = if canceled {
        (status::CANCELED, format!("{reason}; the run was canceled"))
    } else if exhausted {
        (status::FAILED, format!("{reason}; no attempts left ({attempts} of {})", run.max_attempts))
    } else {
        let wait = if counts { backoff(attempts) } else { TimeDelta::zero() };
        update = update.col_expr(runs::Column::NotBefore, Expr::value(now + wait));
        (
            status::QUEUED,
            format!("{reason}; it will be tried again ({} of {} attempts used)", attempts, run.max_attempts),
        )
    };
    update = update
        .col_expr(runs::Column::Status, Expr::value(next))
        .col_expr(runs::Column::Reason, Expr::value(Some(message.clone())));
    if status::is_terminal(next) {
        update = update.col_expr(runs::Column::FinishedAt, Expr::value(Some(now)));
    }
    let mut update =
        update.filter(runs::Column::Id.eq(run.id)).filter(runs::Column::Status.is_not_in(status::TERMINAL));
    update = match worker {
        Some(worker) => update.filter(runs::Column::LeaseOwner.eq(worker)),
        None => update.filter(runs::Column::LeaseOwner.eq(run.lease_owner.clone())),
    };
    let changed = update.exec(&txn).await?.rows_affected == 1;
    if changed {
        release_locks(&txn, run.id).await?;
        note(&txn, run, &message).await?;
        crate::events::run_changed(&txn, run.id).await?;
    }
    txn.commit().await?;
    Ok(changed)
}

/// Takes back runs whose worker stopped renewing its lease.
pub async fn reap(db: &DatabaseConnection) -> Result<usize, DbErr> {
    let now = Utc::now();
    let expired = runs::Entity::find()
        .filter(runs::Column::LeaseOwner.is_not_null())
        .filter(runs::Column::LeaseExpiresAt.lt(now))
        .filter(runs::Column::Status.is_not_in(status::TERMINAL))
        .all(db)
        .await?;
    let mut reaped = 0;
    for run in expired {
        let owner = run.lease_owner.clone().unwrap_or_default();
        let reason = format!("Worker {owner} stopped responding during attempt {}", run.attempts);
        if requeue(db, &run, None, &reason, true).await? {
            tracing::warn!(run = %run.id, worker = %owner, "reclaimed a run whose lease expired");
            reaped += 1;
        }
    }
    Ok(reaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_ten_minutes() {
        assert_eq!(backoff(1).num_seconds(), 15);
        assert_eq!(backoff(2).num_seconds(), 30);
        assert_eq!(backoff(3).num_seconds(), 60);
        assert_eq!(backoff(20).num_seconds(), 600);
    }
}
