//! Clusters: a validated spec, a cloud account, and the runs that make it real.
//!
//! Creating, updating or deleting a cluster queues a run; the cluster's status is derived from
//! its runs (see [`refresh_status`]). Names are unique within an organization among clusters
//! that exist; a destroyed cluster frees its name.

pub mod options;
pub mod spec;

use std::net::IpAddr;

use chrono::Utc;
use fleetplane_api::{Provider, RequestedAction};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
    SqlErr,
};
use serde_json::json;
use uuid::Uuid;

use self::spec::{ClusterSpec, SpecInput};
use crate::{
    audit::Event,
    auth::{Admin, MinRole, OrgMember},
    db::begin_write,
    domain::Invalid,
    entity::{cloud_accounts, clusters, deployments, runs},
    error::{AppError, FieldErrors, Result},
    runs::{Action, RunSpec, Simulate, status as run_status},
    state::AppState,
};

/// A cluster's `status` column, as the API spells [`ClusterStatus`].
pub mod status {
    use fleetplane_api::ClusterStatus;

    pub const PENDING: &str = ClusterStatus::Pending.as_str();
    pub const PROVISIONING: &str = ClusterStatus::Provisioning.as_str();
    pub const READY: &str = ClusterStatus::Ready.as_str();
    pub const FAILED: &str = ClusterStatus::Failed.as_str();
    pub const DESTROYING: &str = ClusterStatus::Destroying.as_str();
    pub const DESTROYED: &str = ClusterStatus::Destroyed.as_str();
}

pub use fleetplane_api::CreateClusterRequest as CreateRequest;

fn not_found() -> AppError {
    AppError::not_found("cluster_not_found", "No such cluster in this organization.")
}

fn name_taken() -> AppError {
    let message = "A cluster with this name already exists in the organization.";
    AppError::conflict("cluster_name_taken", message).on_field("name_suffix", message)
}

fn check_simulate(errors: &mut FieldErrors, target: &str, simulate: Option<&Simulate>) {
    let Some(simulate) = simulate else { return };
    if target != "local" {
        errors.add("simulate", Invalid::new("local_only", "Simulation options only apply to the `local` target."));
        return;
    }
    if simulate.fail_at.as_deref().is_some_and(|f| !matches!(f, "plan" | "apply")) {
        errors.add("simulate.fail_at", Invalid::new("invalid", "Use `plan` or `apply`."));
    }
    if simulate.step_seconds.is_some_and(|s| s > 600) {
        errors.add("simulate.step_seconds", Invalid::new("range", "Use at most 600 seconds."));
    }
}

/// The result of a valid create request.
pub enum Created {
    /// `dry_run`: the spec is valid; nothing was stored.
    Valid {
        name: String,
    },
    Queued {
        cluster: Box<clusters::Model>,
        run: Box<runs::Model>,
    },
}

/// Validates a cluster and, unless `dry_run`, stores it and queues its first apply.
pub async fn create(
    state: &AppState,
    actor: &OrgMember<Admin>,
    request: &CreateRequest,
    dry_run: bool,
    ip: IpAddr,
) -> Result<Created> {
    let mut errors = FieldErrors::new();
    let local = request.target.as_deref() == Some("local");
    let account = match request.cloud_account_id {
        // The simulated target needs no cloud; with an account, its environment still counts.
        None if local => None,
        None => {
            errors.add("cloud_account_id", Invalid::new("required", "Choose a cloud account, or the local target."));
            None
        }
        Some(id) => match cloud_accounts::Entity::find_by_id(id)
            .filter(cloud_accounts::Column::OrgId.eq(actor.org.id))
            .one(&state.db)
            .await?
        {
            None => {
                errors
                    .add("cloud_account_id", Invalid::new("not_found", "No such cloud account in this organization."));
                None
            }
            Some(account) if account.status != "verified" => {
                errors.add(
                    "cloud_account_id",
                    Invalid::new(
                        "not_verified",
                        format!("The account `{}` is {}: verify it first.", account.name, account.status),
                    ),
                );
                None
            }
            Some(account) => Some(account),
        },
    };
    let target_id = request.target.clone().or_else(|| {
        account
            .as_ref()
            .and_then(|a| Provider::parse(&a.provider).and_then(options::target_for_provider))
            .map(|t| t.id.to_owned())
    });
    let target = match target_id.as_deref().map(|id| (id, options::target(id))) {
        None => None,
        Some((id, None)) => {
            errors.add("target", Invalid::new("unknown", format!("`{id}` is not a target.")));
            None
        }
        Some((_, Some(target))) if target.provider.is_none() && !state.config.runs.local_target => {
            errors.add("target", Invalid::new("disabled", "The local target is turned off on this server."));
            None
        }
        Some((_, Some(target))) => {
            if let (Some(wanted), Some(account)) = (target.provider, &account)
                && wanted.as_str() != account.provider
            {
                errors.add(
                    "target",
                    Invalid::new(
                        "provider",
                        format!("{} needs an account in {}; `{}` is not.", target.label, wanted.label(), account.name),
                    ),
                );
            }
            Some(target)
        }
    };
    let spec = target.and_then(|target| spec::validate(&request.spec, target, &mut errors));
    check_simulate(&mut errors, target_id.as_deref().unwrap_or_default(), request.simulate.as_ref());
    errors.finish()?;
    let (Some(target), Some(spec)) = (target, spec) else {
        return Err(AppError::Internal(anyhow::anyhow!("validated cluster input missing")));
    };
    let name = spec.name();
    if name_in_use(&state.db, actor.org.id, &name).await? {
        return Err(name_taken());
    }
    if dry_run {
        return Ok(Created::Valid { name });
    }

    let now = Utc::now();
    let txn = begin_write(&state.db).await?;
    let cluster = clusters::ActiveModel {
        id: Set(Uuid::now_v7()),
        org_id: Set(actor.org.id),
        cloud_account_id: Set(account.as_ref().map(|a| a.id)),
        name_key: Set(name.clone()),
        name: Set(name.clone()),
        target: Set(target.id.to_owned()),
        spec: Set(serde_json::to_value(&spec).map_err(anyhow::Error::from)?),
        status: Set(status::PENDING.to_owned()),
        outputs: Set(None),
        created_by: Set(Some(actor.user.id())),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await
    .map_err(|e| {
        if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) { name_taken() } else { e.into() }
    })?;
    crate::events::cluster_changed(&txn, &cluster).await?;
    let run = queue_run(&txn, state, &cluster, Action::Apply, request.simulate.clone(), Some(actor.user.id())).await?;
    Event::new("cluster.created", Some(ip))
        .actor(&actor.user.user)
        .org(actor.org.id)
        .target(name)
        .details(json!({ "target": target.id, "cloud_account": account.map(|a| a.name), "run": run.id }))
        .record(&txn)
        .await?;
    txn.commit().await?;
    state.wake_workers();
    Ok(Created::Queued { cluster: Box::new(cluster), run: Box::new(run) })
}

async fn name_in_use(conn: &impl ConnectionTrait, org_id: Uuid, name: &str) -> Result<bool, DbErr> {
    Ok(clusters::Entity::find()
        .filter(clusters::Column::OrgId.eq(org_id))
        .filter(clusters::Column::NameKey.eq(name))
        .one(conn)
        .await?
        .is_some())
}

pub fn spec_of(cluster: &clusters::Model) -> Result<ClusterSpec> {
    serde_json::from_value(cluster.spec.clone())
        .map_err(|e| AppError::Internal(anyhow::anyhow!("stored cluster spec: {e}")))
}

/// Queues a run of `action` for `cluster` from its current spec, inside the caller's transaction.
pub async fn queue_run(
    conn: &impl ConnectionTrait,
    state: &AppState,
    cluster: &clusters::Model,
    action: Action,
    simulate: Option<Simulate>,
    requested_by: Option<Uuid>,
) -> Result<runs::Model> {
    let spec = RunSpec {
        cluster_name: cluster.name.clone(),
        target: cluster.target.clone(),
        cloud_account_id: cluster.cloud_account_id,
        spec: spec_of(cluster)?,
        simulate,
    };
    let run = crate::runs::enqueue(conn, state, cluster, action, &spec, requested_by).await?;
    crate::events::run_changed(conn, run.id).await?;
    Ok(run)
}

pub async fn list<R: MinRole>(state: &AppState, member: &OrgMember<R>) -> Result<Vec<clusters::Model>> {
    Ok(clusters::Entity::find()
        .filter(clusters::Column::OrgId.eq(member.org.id))
        .order_by_desc(clusters::Column::Id)
        .all(&state.db)
        .await?)
}

pub async fn get<R: MinRole>(state: &AppState, member: &OrgMember<R>, id: Uuid) -> Result<clusters::Model> {
    clusters::Entity::find_by_id(id)
        .filter(clusters::Column::OrgId.eq(member.org.id))
        .one(&state.db)
        .await?
        .ok_or_else(not_found)
}

fn ensure_exists(cluster: &clusters::Model) -> Result<()> {
    if cluster.status == status::DESTROYED {
        return Err(AppError::conflict("cluster_destroyed", "This cluster has been destroyed."));
    }
    Ok(())
}

/// Changes what can change on a live cluster (Kubernetes version, node size and counts) and
/// queues the apply that makes it so.
pub async fn update(
    state: &AppState,
    actor: &OrgMember<Admin>,
    id: Uuid,
    request: &SpecInput,
    ip: IpAddr,
) -> Result<(clusters::Model, runs::Model)> {
    let cluster = get(state, actor, id).await?;
    ensure_exists(&cluster)?;
    let current = spec_of(&cluster)?;
    let mut errors = FieldErrors::new();
    let merged = SpecInput {
        name_prefix: Some(current.name_prefix.clone()),
        name_suffix: Some(current.name_suffix.clone()),
        region: Some(current.region.clone()),
        kubernetes_version: request.kubernetes_version.clone().or(Some(current.kubernetes_version.clone())),
        vpc_cidr: Some(current.vpc_cidr.clone()),
        public_subnets: Some(current.public_subnets.clone()),
        private_subnets: Some(current.private_subnets.clone()),
        node_instance_type: request.node_instance_type.clone().or(Some(current.node_instance_type.clone())),
        node_min: request.node_min.or(Some(i64::from(current.node_min))),
        node_max: request.node_max.or(Some(i64::from(current.node_max))),
        node_desired: request.node_desired.or(Some(i64::from(current.node_desired))),
        state_backend: Some(current.state_backend.clone()),
    };
    let fixed: [(&str, bool); 7] = [
        ("name_prefix", request.name_prefix.as_ref().is_some_and(|v| *v != current.name_prefix)),
        ("name_suffix", request.name_suffix.as_ref().is_some_and(|v| *v != current.name_suffix)),
        ("region", request.region.as_ref().is_some_and(|v| *v != current.region)),
        ("vpc_cidr", request.vpc_cidr.as_ref().is_some_and(|v| *v != current.vpc_cidr)),
        ("public_subnets", request.public_subnets.as_ref().is_some_and(|v| *v != current.public_subnets)),
        ("private_subnets", request.private_subnets.as_ref().is_some_and(|v| *v != current.private_subnets)),
        ("state_backend", request.state_backend.as_ref().is_some_and(|v| *v != current.state_backend)),
    ];
    for (field, changed) in fixed {
        if changed {
            errors
                .add(field, Invalid::new("immutable", "This cannot change on an existing cluster; create a new one."));
        }
    }
    let target =
        options::target(&cluster.target).ok_or_else(|| AppError::Internal(anyhow::anyhow!("unknown target")))?;
    let spec = spec::validate(&merged, target, &mut errors);
    errors.finish()?;
    let Some(spec) = spec else { return Err(AppError::Internal(anyhow::anyhow!("validated spec missing"))) };

    let txn = begin_write(&state.db).await?;
    let mut active = cluster.clone().into_active_model();
    active.spec = Set(serde_json::to_value(&spec).map_err(anyhow::Error::from)?);
    active.updated_at = Set(Utc::now());
    let updated = active.update(&txn).await?;
    let run = queue_run(&txn, state, &updated, Action::Apply, None, Some(actor.user.id())).await?;
    Event::new("cluster.updated", Some(ip))
        .actor(&actor.user.user)
        .org(actor.org.id)
        .target(updated.name.clone())
        .details(json!({ "run": run.id }))
        .record(&txn)
        .await?;
    txn.commit().await?;
    state.wake_workers();
    let updated = clusters::Entity::find_by_id(id).one(&state.db).await?.ok_or_else(not_found)?;
    Ok((updated, run))
}

/// Queues the destroy run that tears the cluster down.
pub async fn destroy(state: &AppState, actor: &OrgMember<Admin>, id: Uuid, ip: IpAddr) -> Result<runs::Model> {
    let cluster = get(state, actor, id).await?;
    ensure_exists(&cluster)?;
    let pending = runs::Entity::find()
        .filter(runs::Column::ClusterId.eq(id))
        .filter(runs::Column::Action.eq(Action::Destroy.as_str()))
        .filter(runs::Column::Status.is_not_in(run_status::TERMINAL))
        .one(&state.db)
        .await?;
    if let Some(run) = pending {
        return Err(AppError::conflict(
            "cluster_destroying",
            format!("Run {} is already destroying this cluster.", run.id),
        ));
    }
    let txn = begin_write(&state.db).await?;
    // Destroying the cluster would leave what is deployed on it running (on the local target,
    // its containers) with nothing left to uninstall it: uninstall first.
    let deployed = deployments::Entity::find()
        .filter(deployments::Column::ClusterId.eq(id))
        .filter(deployments::Column::Status.ne(crate::deployments::status::UNINSTALLED))
        .all(&txn)
        .await?;
    if !deployed.is_empty() {
        let names: Vec<String> = deployed.iter().map(|d| format!("{} ({})", d.release, d.status)).collect();
        return Err(AppError::conflict(
            "cluster_has_deployments",
            format!("Uninstall this cluster's deployments before destroying it: {}.", names.join(", ")),
        ));
    }
    let run = queue_run(&txn, state, &cluster, Action::Destroy, None, Some(actor.user.id())).await?;
    Event::new("cluster.destroy_requested", Some(ip))
        .actor(&actor.user.user)
        .org(actor.org.id)
        .target(cluster.name.clone())
        .details(json!({ "run": run.id }))
        .record(&txn)
        .await?;
    txn.commit().await?;
    state.wake_workers();
    Ok(run)
}

/// Queues a plan (operators and up) or an apply (admins and up) of the current spec.
pub async fn request_run<R: MinRole>(
    state: &AppState,
    member: &OrgMember<R>,
    id: Uuid,
    action: RequestedAction,
    simulate: Option<Simulate>,
    ip: IpAddr,
) -> Result<runs::Model> {
    use crate::domain::Role;
    let needed = match action {
        RequestedAction::Plan => Role::Operator,
        RequestedAction::Apply => Role::Admin,
    };
    let action = Action::from(action);
    if member.role < needed {
        return Err(AppError::forbidden(
            "forbidden",
            format!("This needs the {needed} role or higher; yours is {}.", member.role),
        ));
    }
    let cluster = get(state, member, id).await?;
    ensure_exists(&cluster)?;
    let mut errors = FieldErrors::new();
    check_simulate(&mut errors, &cluster.target, simulate.as_ref());
    errors.finish()?;
    let txn = begin_write(&state.db).await?;
    let run = queue_run(&txn, state, &cluster, action, simulate, Some(member.user.id())).await?;
    Event::new("run.requested", Some(ip))
        .actor(&member.user.user)
        .org(member.org.id)
        .target(cluster.name.clone())
        .details(json!({ "run": run.id, "action": action }))
        .record(&txn)
        .await?;
    txn.commit().await?;
    state.wake_workers();
    Ok(run)
}

/// Recomputes a cluster's status from its latest apply or destroy run (plans and deployment runs
/// change nothing).
/// A destroyed cluster frees its name. Returns whether the status changed.
pub async fn refresh_status(conn: &impl ConnectionTrait, cluster_id: Uuid) -> Result<bool, DbErr> {
    let Some(cluster) = clusters::Entity::find_by_id(cluster_id).one(conn).await? else { return Ok(false) };
    let latest = runs::Entity::find()
        .filter(runs::Column::ClusterId.eq(cluster_id))
        .filter(runs::Column::Action.is_in([Action::Apply.as_str(), Action::Destroy.as_str()]))
        .order_by_desc(runs::Column::Id)
        .one(conn)
        .await?;
    let Some(run) = latest else { return Ok(false) };
    let destroying = run.action == Action::Destroy.as_str();
    let next = match (destroying, run.status.as_str()) {
        (false, run_status::QUEUED | run_status::AWAITING_APPROVAL) if cluster.status == status::READY => status::READY,
        (false, run_status::QUEUED | run_status::AWAITING_APPROVAL) => status::PENDING,
        (false, run_status::RUNNING | run_status::APPLYING) => status::PROVISIONING,
        (false, run_status::SUCCEEDED) => status::READY,
        (true, run_status::SUCCEEDED) => status::DESTROYED,
        (true, s) if !run_status::is_terminal(s) => status::DESTROYING,
        _ => status::FAILED,
    };
    let mut active = cluster.clone().into_active_model();
    let status_changed = cluster.status != next;
    let mut changed = status_changed;
    if status_changed {
        active.status = Set(next.to_owned());
    }
    if run.status == run_status::SUCCEEDED {
        let outputs = if destroying { None } else { run.outputs.clone() };
        if cluster.outputs != outputs {
            active.outputs = Set(outputs);
            changed = true;
        }
    }
    if next == status::DESTROYED && cluster.name_key == cluster.name {
        active.name_key = Set(format!("{}~{}", cluster.name, cluster.id));
        changed = true;
    }
    if changed {
        active.updated_at = Set(Utc::now());
        active.update(conn).await?;
    }
    Ok(status_changed)
}
