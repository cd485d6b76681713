//! Runs: one Terraform execution for a cluster, and a row of the run queue.
//!
//! `queued → running → (awaiting_approval →) applying → succeeded | failed | canceled`.
//! A run is planned in `running`; a run against a `prod` cloud account then waits in
//! `awaiting_approval` until an admin approves; the saved plan is applied in `applying`. Plan-only
//! runs end after planning. One run per cluster is active at a time: later runs wait behind it.
//! Workers take runs through [`crate::queue`]; everything else goes through this module.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::{
    audit::Event,
    auth::CurrentUser,
    clusters::spec::ClusterSpec,
    db::begin_write,
    domain::Role,
    entity::{clusters, memberships, organizations, run_logs, runs, users, workers},
    error::{AppError, Result},
    state::AppState,
};

/// A run's `status` column, as the API spells [`RunStatus`](fleetplane_api::RunStatus).
pub mod status {
    use fleetplane_api::RunStatus;

    pub const QUEUED: &str = RunStatus::Queued.as_str();
    pub const RUNNING: &str = RunStatus::Running.as_str();
    pub const AWAITING_APPROVAL: &str = RunStatus::AwaitingApproval.as_str();
    pub const APPLYING: &str = RunStatus::Applying.as_str();
    pub const SUCCEEDED: &str = RunStatus::Succeeded.as_str();
    pub const FAILED: &str = RunStatus::Failed.as_str();
    pub const CANCELED: &str = RunStatus::Canceled.as_str();

    pub const TERMINAL: [&str; 3] = [SUCCEEDED, FAILED, CANCELED];

    pub fn is_terminal(status: &str) -> bool {
        TERMINAL.contains(&status)
    }
}

pub use fleetplane_api::{RunAction as Action, Simulate};

/// What a run works from, fixed when it is queued.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSpec {
    pub cluster_name: String,
    pub target: String,
    pub cloud_account_id: Option<Uuid>,
    pub spec: ClusterSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulate: Option<Simulate>,
}

/// Adds a run to the queue, inside the caller's transaction. Call [`AppState::wake_workers`]
/// after the commit.
pub async fn enqueue(
    conn: &impl ConnectionTrait,
    state: &AppState,
    cluster: &clusters::Model,
    action: Action,
    spec: &RunSpec,
    requested_by: Option<Uuid>,
) -> Result<runs::Model> {
    let spec = serde_json::to_value(spec).map_err(anyhow::Error::from)?;
    enqueue_for(conn, state, cluster, None, action, spec, requested_by).await
}

/// Adds a run of `cluster`'s queue working from `spec` (for a deployment action, on
/// `deployment`), inside the caller's transaction.
pub async fn enqueue_for(
    conn: &impl ConnectionTrait,
    state: &AppState,
    cluster: &clusters::Model,
    deployment: Option<Uuid>,
    action: Action,
    spec: serde_json::Value,
    requested_by: Option<Uuid>,
) -> Result<runs::Model> {
    let now = Utc::now();
    Ok(runs::ActiveModel {
        id: Set(Uuid::now_v7()),
        org_id: Set(cluster.org_id),
        cluster_id: Set(cluster.id),
        deployment_id: Set(deployment),
        action: Set(action.as_str().to_owned()),
        status: Set(status::QUEUED.to_owned()),
        reason: Set(None),
        spec: Set(spec),
        attempts: Set(0),
        max_attempts: Set(state.config.runs.max_attempts),
        not_before: Set(now),
        lease_owner: Set(None),
        lease_expires_at: Set(None),
        token_hash: Set(None),
        cancel_requested_at: Set(None),
        plan_summary: Set(None),
        plan_key_id: Set(None),
        plan_sealed: Set(None),
        outputs: Set(None),
        exit_code: Set(None),
        executor: Set(None),
        requested_by: Set(requested_by),
        approved_by: Set(None),
        created_at: Set(now),
        started_at: Set(None),
        finished_at: Set(None),
        updated_at: Set(now),
    }
    .insert(conn)
    .await?)
}

/// The run, and the caller's role in its organization. A run of an organization the caller is
/// not in does not exist, as far as the caller can tell.
pub async fn load_for(
    state: &AppState,
    caller: &CurrentUser,
    id: Uuid,
) -> Result<(runs::Model, organizations::Model, Role)> {
    let not_found = || AppError::not_found("run_not_found", "No such run.");
    let run = runs::Entity::find_by_id(id).one(&state.db).await?.ok_or_else(not_found)?;
    let membership =
        memberships::Entity::find_by_id((run.org_id, caller.id())).one(&state.db).await?.ok_or_else(not_found)?;
    let org = organizations::Entity::find_by_id(run.org_id).one(&state.db).await?.ok_or_else(not_found)?;
    let role = Role::parse(&membership.role).unwrap_or(Role::Viewer);
    Ok((run, org, role))
}

fn require(role: Role, needed: Role, what: &str) -> Result<()> {
    if role < needed {
        return Err(AppError::forbidden(
            "forbidden",
            format!("{what} needs the {needed} role or higher; yours is {role}."),
        ));
    }
    Ok(())
}

fn conflict(run: &runs::Model, what: &str) -> AppError {
    AppError::conflict("run_state", format!("This run is {}; it cannot be {what}.", run.status.replace('_', " ")))
}

/// Approves a planned run waiting for approval: it goes on to apply.
pub async fn approve(state: &AppState, caller: &CurrentUser, id: Uuid, ip: IpAddr) -> Result<runs::Model> {
    let (run, org, role) = load_for(state, caller, id).await?;
    require(role, Role::Admin, "Approving a run")?;
    let txn = begin_write(&state.db).await?;
    let now = Utc::now();
    let result = runs::Entity::update_many()
        .col_expr(runs::Column::Status, status::APPLYING.into())
        .col_expr(runs::Column::ApprovedBy, caller.id().into())
        .col_expr(runs::Column::Reason, Some(format!("Approved by {}", caller.user.username)).into())
        .col_expr(runs::Column::NotBefore, now.into())
        .col_expr(runs::Column::UpdatedAt, now.into())
        .filter(runs::Column::Id.eq(run.id))
        .filter(runs::Column::Status.eq(status::AWAITING_APPROVAL))
        .exec(&txn)
        .await?;
    if result.rows_affected == 0 {
        return Err(conflict(&run, "approved"));
    }
    crate::events::run_changed(&txn, run.id).await?;
    Event::new("run.approved", Some(ip))
        .actor(&caller.user)
        .org(org.id)
        .target(run.id.to_string())
        .record(&txn)
        .await?;
    txn.commit().await?;
    state.wake_workers();
    reload(state, id).await
}

/// Cancels a run. One no worker holds ends at once; one a worker runs gets an interrupt (Terraform
/// stops cleanly and releases its lock) and ends `canceled` when its job has stopped.
pub async fn cancel(state: &AppState, caller: &CurrentUser, id: Uuid, ip: IpAddr) -> Result<runs::Model> {
    let (run, org, role) = load_for(state, caller, id).await?;
    require(role, Role::Operator, "Canceling a run")?;
    if status::is_terminal(&run.status) {
        return Err(conflict(&run, "canceled"));
    }
    let now = Utc::now();
    let txn = begin_write(&state.db).await?;
    let reason = format!("Canceled by {}", caller.user.username);
    // Not held by a worker: done now.
    let idle = runs::Entity::update_many()
        .col_expr(runs::Column::Status, status::CANCELED.into())
        .col_expr(runs::Column::Reason, Some(reason.clone()).into())
        .col_expr(runs::Column::CancelRequestedAt, Some(now).into())
        .col_expr(runs::Column::FinishedAt, Some(now).into())
        .col_expr(runs::Column::UpdatedAt, now.into())
        .col_expr(runs::Column::PlanSealed, Option::<Vec<u8>>::None.into())
        .filter(runs::Column::Id.eq(run.id))
        .filter(runs::Column::LeaseOwner.is_null())
        .filter(runs::Column::Status.is_not_in(status::TERMINAL))
        .exec(&txn)
        .await?;
    if idle.rows_affected == 0 {
        // Held by a worker: it sees the request at its next heartbeat.
        runs::Entity::update_many()
            .col_expr(runs::Column::CancelRequestedAt, Some(now).into())
            .col_expr(runs::Column::Reason, Some(format!("{reason}; stopping Terraform")).into())
            .col_expr(runs::Column::UpdatedAt, now.into())
            .filter(runs::Column::Id.eq(run.id))
            .filter(runs::Column::Status.is_not_in(status::TERMINAL))
            .exec(&txn)
            .await?;
    }
    crate::events::run_changed(&txn, run.id).await?;
    Event::new("run.canceled", Some(ip))
        .actor(&caller.user)
        .org(org.id)
        .target(run.id.to_string())
        .record(&txn)
        .await?;
    txn.commit().await?;
    reload(state, id).await
}

/// Queues a new run like a failed or canceled one, from the cluster's current spec.
pub async fn retry(state: &AppState, caller: &CurrentUser, id: Uuid, ip: IpAddr) -> Result<runs::Model> {
    let (run, org, role) = load_for(state, caller, id).await?;
    let action = Action::parse(&run.action).unwrap_or(Action::Apply);
    let needed = if action == Action::Plan || action.is_deployment() { Role::Operator } else { Role::Admin };
    require(role, needed, "Retrying this run")?;
    if !matches!(run.status.as_str(), status::FAILED | status::CANCELED) {
        return Err(conflict(&run, "retried (only failed or canceled runs are)"));
    }
    let cluster = clusters::Entity::find_by_id(run.cluster_id)
        .one(&state.db)
        .await?
        .ok_or_else(|| AppError::not_found("cluster_not_found", "The run's cluster no longer exists."))?;
    let txn = begin_write(&state.db).await?;
    let retried = if action.is_deployment() {
        crate::deployments::retry(&txn, state, &run, caller.id()).await?
    } else {
        crate::clusters::queue_run(&txn, state, &cluster, action, None, Some(caller.id())).await?
    };
    Event::new("run.retried", Some(ip))
        .actor(&caller.user)
        .org(org.id)
        .target(retried.id.to_string())
        .details(json!({ "retry_of": run.id }))
        .record(&txn)
        .await?;
    txn.commit().await?;
    state.wake_workers();
    Ok(retried)
}

async fn reload(state: &AppState, id: Uuid) -> Result<runs::Model> {
    runs::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or_else(|| AppError::not_found("run_not_found", "No such run."))
}

/// A page of a run's log after `after`.
pub async fn logs(state: &AppState, run_id: Uuid, after: i64, limit: u64) -> Result<Vec<run_logs::Model>, DbErr> {
    run_logs::Entity::find()
        .filter(run_logs::Column::RunId.eq(run_id))
        .filter(run_logs::Column::Seq.gt(after))
        .order_by_asc(run_logs::Column::Seq)
        .limit(limit)
        .all(&state.db)
        .await
}

/// Workers that have checked in within this window count as running.
pub const WORKER_LIVENESS: chrono::TimeDelta = chrono::TimeDelta::seconds(20);

/// Where a run stands in the queue, and why it waits. `None` for runs that do not wait.
pub async fn queue_position(
    conn: &impl ConnectionTrait,
    run: &runs::Model,
    now: DateTime<Utc>,
) -> Result<Option<(Option<u64>, String)>, DbErr> {
    match run.status.as_str() {
        status::AWAITING_APPROVAL => {
            return Ok(Some((None, "Waiting for an admin to approve the plan.".to_owned())));
        }
        status::QUEUED | status::APPLYING if run.lease_owner.is_none() => {}
        _ => return Ok(None),
    }
    // Behind an earlier run of the same cluster?
    let ahead_on_cluster = runs::Entity::find()
        .filter(runs::Column::ClusterId.eq(run.cluster_id))
        .filter(runs::Column::Id.lt(run.id))
        .filter(runs::Column::Status.is_not_in(status::TERMINAL))
        .order_by_asc(runs::Column::Id)
        .one(conn)
        .await?;
    if let Some(blocker) = ahead_on_cluster {
        return Ok(Some((
            None,
            format!("Waiting behind run {} on the same cluster ({}).", blocker.id, blocker.status.replace('_', " ")),
        )));
    }
    if run.not_before > now {
        return Ok(Some((
            None,
            format!("Retrying after a failed attempt, not before {}.", run.not_before.format("%H:%M:%S UTC")),
        )));
    }
    // Runs ahead of it in the queue's order that a worker could take now.
    let ahead = runs::Entity::find()
        .filter(runs::Column::Status.is_in([status::QUEUED, status::APPLYING]))
        .filter(runs::Column::LeaseOwner.is_null())
        .filter(runs::Column::Id.lt(run.id))
        .filter(runs::Column::NotBefore.lte(now))
        .filter(crate::queue::not_blocked())
        .count(conn)
        .await?;
    let live_workers = workers::Entity::find()
        .filter(workers::Column::StoppedAt.is_null())
        .filter(workers::Column::LastSeenAt.gt(now - WORKER_LIVENESS))
        .count(conn)
        .await?;
    let reason = if live_workers == 0 {
        "No worker is running: start `fleetplane serve` with workers, or `fleetplane worker`.".to_owned()
    } else if ahead == 0 {
        "Next in line for a free worker.".to_owned()
    } else {
        format!("Waiting for a free worker ({ahead} ahead).")
    };
    Ok(Some((Some(ahead + 1), reason)))
}

/// Usernames by id, for showing who requested and approved runs.
pub async fn usernames(
    conn: &impl ConnectionTrait,
    ids: Vec<Uuid>,
) -> Result<std::collections::HashMap<Uuid, String>, DbErr> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    Ok(users::Entity::find()
        .filter(users::Column::Id.is_in(ids))
        .all(conn)
        .await?
        .into_iter()
        .map(|u| (u.id, u.username))
        .collect())
}
