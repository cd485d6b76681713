//! Deployments: a catalog service on a ready cluster, its revisions, and the runs that carry
//! them out.
//!
//! Every change is a run in the cluster's queue (`deploy`, `upgrade`, `rollback`,
//! `uninstall`), so leases, approvals, cancel, retry, logs and notifications are the runs'
//! own. A deploy, upgrade or rollback makes a new revision holding the version and values it
//! installs (a rollback copies an earlier revision's). Secret values are sealed, per revision
//! and for the deployment, and never leave the server except in the run that installs them (the
//! local target's container environment, or a helm job's values file). The deployment's status
//! follows its runs ([`refresh`]), as a cluster's does.

use std::net::IpAddr;

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, Set, SqlErr,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::{
    audit::Event,
    auth::{MinRole, Operator, OrgMember},
    catalog::{self, Validated},
    db::begin_write,
    domain::Invalid,
    entity::{clusters, deployment_revisions as revisions, deployments, runs},
    error::{AppError, FieldErrors, Result},
    runs::{Action, status as run_status},
    state::AppState,
};

/// A deployment's `status` column, as the API spells [`DeploymentStatus`](fleetplane_api::DeploymentStatus).
pub mod status {
    use fleetplane_api::DeploymentStatus;

    pub const PENDING: &str = DeploymentStatus::Pending.as_str();
    pub const DEPLOYING: &str = DeploymentStatus::Deploying.as_str();
    pub const HEALTHY: &str = DeploymentStatus::Healthy.as_str();
    pub const DEGRADED: &str = DeploymentStatus::Degraded.as_str();
    pub const FAILED: &str = DeploymentStatus::Failed.as_str();
    pub const UNINSTALLING: &str = DeploymentStatus::Uninstalling.as_str();
    pub const UNINSTALLED: &str = DeploymentStatus::Uninstalled.as_str();
}

/// A revision's `status` column.
pub mod revision_status {
    pub const PENDING: &str = "pending";
    pub const DEPLOYED: &str = "deployed";
    pub const SUPERSEDED: &str = "superseded";
    pub const FAILED: &str = "failed";
}

/// What a deployment run works from, fixed when it is queued (the run's `spec`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeploymentRunSpec {
    pub deployment_id: Uuid,
    pub cluster_id: Uuid,
    pub cluster_name: String,
    /// The cluster's target: `local` runs on the Docker engine, the others with Helm.
    pub target: String,
    pub cloud_account_id: Option<Uuid>,
    pub service: String,
    pub release: String,
    /// For deploy, upgrade and rollback: the revision to install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i32>,
}

fn not_found() -> AppError {
    AppError::not_found("deployment_not_found", "No such deployment in this organization.")
}

fn release_taken(release: &str) -> AppError {
    AppError::conflict(
        "deployment_exists",
        format!("`{release}` is already deployed on this cluster: upgrade it, or uninstall it first."),
    )
}

/// The result of a valid create request.
pub enum Created {
    /// `dry_run`: valid; nothing was stored.
    Valid(Box<Validated>),
    Queued {
        deployment: Box<deployments::Model>,
        run: Box<runs::Model>,
    },
}

/// Checks what the cluster's target allows, recording problems in `errors`: whether `service`
/// runs there at all, and on the `local` target, what its values may ask for. Looks at the values
/// as given, so that these errors come with the schema's own.
fn check_target(service: Option<&str>, values: Option<&Value>, target: &str, errors: &mut FieldErrors) {
    let Some(entry) = service.map(str::trim).and_then(catalog::entry) else { return };
    if let Err(invalid) = entry.check_target(target) {
        errors.add("service", invalid);
        return;
    }
    if target != "local" {
        return;
    }
    let values = values.cloned().unwrap_or(Value::Null);
    // One container per deployment on this machine: the SQLite store, the embedded broker and a
    // generated master key belong to one process, and the Kubernetes Secrets several replicas
    // need do not exist on Docker.
    if values.get("replicaCount").and_then(Value::as_i64).is_some_and(|n| n > 1) {
        errors.add(
            "values.replicaCount",
            Invalid::new(
                "local_single_replica",
                "The local target runs one replica: several need ClickHouse, an external broker, PostgreSQL and \
                 Kubernetes Secrets, which a cluster on a cloud provides.",
            ),
        );
    }
    for pointer in ["/postgresql/existingSecret", "/masterKeys/existingSecret"] {
        if values.pointer(pointer).is_some() {
            errors.add(
                &format!("values{}", pointer.replace('/', ".")),
                Invalid::new(
                    "local_unsupported",
                    "Kubernetes Secrets do not exist on the local target; leave this unset.",
                ),
            );
        }
    }
}

async fn ready_cluster<R: MinRole>(state: &AppState, member: &OrgMember<R>, id: Uuid) -> Result<clusters::Model> {
    let cluster = crate::clusters::get(state, member, id).await?;
    if cluster.status != crate::clusters::status::READY {
        return Err(AppError::conflict(
            "cluster_not_ready",
            format!("The cluster is {}; deployments go onto ready clusters only.", cluster.status),
        ));
    }
    Ok(cluster)
}

/// The secrets of `validated`, sealed for the record `context` names; none without secrets.
fn seal_secrets(state: &AppState, validated: &Validated, context: Uuid) -> Result<(Option<String>, Option<Vec<u8>>)> {
    let secrets: Map<String, Value> =
        validated.values.secrets().map(|(pointer, value)| (pointer.to_owned(), Value::from(value))).collect();
    if secrets.is_empty() {
        return Ok((None, None));
    }
    let plain = serde_json::to_vec(&secrets).map_err(anyhow::Error::from)?;
    let sealed = state.keyring.seal(&plain, context.as_bytes())?;
    Ok((Some(sealed.key_id), Some(sealed.bytes)))
}

/// What a deployment's service token is sealed for: not the bare id, which its secrets use.
fn token_context(deployment: Uuid) -> String {
    format!("service-token:{deployment}")
}

/// A new token for the API of the service `info` describes, sealed for deployment `id`; none
/// when the service takes no token from Fleetplane.
fn seal_service_token(state: &AppState, info: &catalog::Info, id: Uuid) -> Result<(Option<String>, Option<Vec<u8>>)> {
    let Some(catalog::OutputSource::ManagedToken { prefix, .. }) = info.managed_token() else {
        return Ok((None, None));
    };
    let token = fleetplane_common::tokens::generate(prefix);
    let sealed = state.keyring.seal(token.as_bytes(), token_context(id).as_bytes())?;
    Ok((Some(sealed.key_id), Some(sealed.bytes)))
}

/// The token Fleetplane holds for the deployment's service API, if it has one.
pub fn service_token(state: &AppState, deployment: &deployments::Model) -> Result<Option<String>> {
    let (Some(key_id), Some(bytes)) = (&deployment.service_token_key_id, &deployment.service_token_sealed) else {
        return Ok(None);
    };
    let sealed = crate::crypto::Sealed { key_id: key_id.clone(), bytes: bytes.clone() };
    let plain = state
        .keyring
        .open(&sealed, token_context(deployment.id).as_bytes())
        .map_err(|e| AppError::Internal(anyhow::anyhow!("a deployment's sealed service token: {e}")))?;
    Ok(Some(String::from_utf8(plain).map_err(anyhow::Error::from)?))
}

/// The secrets a record holds (JSON pointer → value).
fn open_secrets(
    state: &AppState,
    key_id: &Option<String>,
    bytes: &Option<Vec<u8>>,
    context: Uuid,
) -> Result<Map<String, Value>> {
    let (Some(key_id), Some(bytes)) = (key_id, bytes) else { return Ok(Map::new()) };
    let sealed = crate::crypto::Sealed { key_id: key_id.clone(), bytes: bytes.clone() };
    let plain = state
        .keyring
        .open(&sealed, context.as_bytes())
        .map_err(|e| AppError::Internal(anyhow::anyhow!("a deployment's sealed secrets: {e}")))?;
    Ok(serde_json::from_slice(&plain).map_err(anyhow::Error::from)?)
}

/// The pointers of the secrets a record holds, without opening them.
pub fn secret_pointers(state: &AppState, revision: &revisions::Model) -> Vec<String> {
    open_secrets(state, &revision.secrets_key_id, &revision.secrets_sealed, revision.id)
        .map(|secrets| secrets.keys().cloned().collect())
        .unwrap_or_default()
}

/// Sets `value` at `pointer` in `target`, making the objects on the way.
fn put(target: &mut Value, pointer: &str, value: Value) {
    let mut at = target;
    let tokens: Vec<String> = pointer.split('/').skip(1).map(|t| t.replace("~1", "/").replace("~0", "~")).collect();
    let Some((last, parents)) = tokens.split_last() else { return };
    for token in parents {
        let Value::Object(map) = at else { return };
        at = map.entry(token.clone()).or_insert_with(|| Value::Object(Map::new()));
    }
    if let Value::Object(map) = at {
        map.insert(last.clone(), value);
    }
}

/// Validates a deployment onto cluster `cluster_id` and, unless `dry_run`, stores it with its
/// first revision and queues its deploy run. Operators and up.
pub async fn create(
    state: &AppState,
    actor: &OrgMember<Operator>,
    cluster_id: Uuid,
    request: &fleetplane_api::CreateDeploymentRequest,
    dry_run: bool,
    ip: IpAddr,
) -> Result<Created> {
    let cluster = crate::clusters::get(state, actor, cluster_id).await?;
    let mut errors = FieldErrors::new();
    let validated =
        catalog::validate(request.service.as_deref(), request.version.as_deref(), request.values.as_ref(), &mut errors);
    check_target(request.service.as_deref(), request.values.as_ref(), &cluster.target, &mut errors);
    errors.finish()?;
    let Some(validated) = validated else {
        return Err(AppError::Internal(anyhow::anyhow!("validated deployment missing")));
    };
    let cluster = ready_cluster(state, actor, cluster.id).await?;
    let release = validated.entry.info.service.to_owned();
    if release_in_use(&state.db, cluster.id, &release).await? {
        return Err(release_taken(&release));
    }
    if dry_run {
        return Ok(Created::Valid(Box::new(validated)));
    }

    let now = Utc::now();
    let id = Uuid::now_v7();
    let (key_id, sealed) = seal_secrets(state, &validated, id)?;
    let (token_key_id, token_sealed) = seal_service_token(state, validated.entry.info, id)?;
    let txn = begin_write(&state.db).await?;
    let deployment = deployments::ActiveModel {
        id: Set(id),
        org_id: Set(actor.org.id),
        cluster_id: Set(cluster.id),
        service: Set(release.clone()),
        version: Set(validated.version.version.to_owned()),
        release: Set(release.clone()),
        release_key: Set(release.clone()),
        status: Set(status::PENDING.to_owned()),
        reason: Set(Some("Waiting for its deploy run.".into())),
        current_revision: Set(None),
        health_checked_at: Set(None),
        values: Set(validated.values.without_secrets()),
        secrets_key_id: Set(key_id),
        secrets_sealed: Set(sealed),
        service_token_key_id: Set(token_key_id),
        service_token_sealed: Set(token_sealed),
        outputs: Set(None),
        created_by: Set(Some(actor.user.id())),
        created_at: Set(now),
        updated_by: Set(Some(actor.user.id())),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await
    .map_err(|e| {
        if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
            release_taken(&release)
        } else {
            e.into()
        }
    })?;
    let run = new_revision(&txn, state, &cluster, &deployment, &validated, None, Action::Deploy, actor).await?;
    Event::new("deployment.created", Some(ip))
        .actor(&actor.user.user)
        .org(actor.org.id)
        .target(format!("{}/{}", cluster.name, release))
        .details(json!({ "deployment": id, "service": release, "version": validated.version.version, "run": run.id }))
        .record(&txn)
        .await?;
    txn.commit().await?;
    state.wake_workers();
    Ok(Created::Queued { deployment: Box::new(deployment), run: Box::new(run) })
}

async fn release_in_use(conn: &impl ConnectionTrait, cluster: Uuid, release: &str) -> Result<bool, DbErr> {
    Ok(deployments::Entity::find()
        .filter(deployments::Column::ClusterId.eq(cluster))
        .filter(deployments::Column::ReleaseKey.eq(release))
        .one(conn)
        .await?
        .is_some())
}

/// Stores revision `n + 1` from `validated` and queues the run that installs it.
#[allow(clippy::too_many_arguments)]
async fn new_revision(
    conn: &impl ConnectionTrait,
    state: &AppState,
    cluster: &clusters::Model,
    deployment: &deployments::Model,
    validated: &Validated,
    rollback_of: Option<i32>,
    action: Action,
    actor: &OrgMember<Operator>,
) -> Result<runs::Model> {
    let newest = revisions::Entity::find()
        .filter(revisions::Column::DeploymentId.eq(deployment.id))
        .order_by_desc(revisions::Column::Revision)
        .one(conn)
        .await?
        .map_or(0, |r| r.revision);
    let revision_id = Uuid::now_v7();
    let (key_id, sealed) = seal_secrets(state, validated, revision_id)?;
    let revision = revisions::ActiveModel {
        id: Set(revision_id),
        deployment_id: Set(deployment.id),
        revision: Set(newest + 1),
        version: Set(validated.version.version.to_owned()),
        values: Set(validated.values.without_secrets()),
        secrets_key_id: Set(key_id),
        secrets_sealed: Set(sealed),
        rollback_of: Set(rollback_of),
        run_id: Set(None),
        status: Set(revision_status::PENDING.to_owned()),
        created_at: Set(Utc::now()),
    }
    .insert(conn)
    .await?;
    let run = queue(conn, state, cluster, deployment, action, Some(revision.revision), Some(actor.user.id())).await?;
    let mut active = revision.into_active_model();
    active.run_id = Set(Some(run.id));
    active.update(conn).await?;
    Ok(run)
}

/// Queues a deployment run, inside the caller's transaction.
async fn queue(
    conn: &impl ConnectionTrait,
    state: &AppState,
    cluster: &clusters::Model,
    deployment: &deployments::Model,
    action: Action,
    revision: Option<i32>,
    requested_by: Option<Uuid>,
) -> Result<runs::Model> {
    let spec = DeploymentRunSpec {
        deployment_id: deployment.id,
        cluster_id: cluster.id,
        cluster_name: cluster.name.clone(),
        target: cluster.target.clone(),
        cloud_account_id: cluster.cloud_account_id,
        service: deployment.service.clone(),
        release: deployment.release.clone(),
        revision,
    };
    let spec = serde_json::to_value(&spec).map_err(anyhow::Error::from)?;
    let run = crate::runs::enqueue_for(conn, state, cluster, Some(deployment.id), action, spec, requested_by).await?;
    crate::events::run_changed(conn, run.id).await?;
    Ok(run)
}

/// Queues the same deployment run again (a retry of a failed or canceled one): a new revision
/// for deploy, upgrade and rollback, copied from the failed one, so the history shows both.
pub async fn retry(
    conn: &impl ConnectionTrait,
    state: &AppState,
    run: &runs::Model,
    requested_by: Uuid,
) -> Result<runs::Model> {
    let spec: DeploymentRunSpec = serde_json::from_value(run.spec.clone()).map_err(anyhow::Error::from)?;
    let deployment = deployments::Entity::find_by_id(spec.deployment_id).one(conn).await?.ok_or_else(not_found)?;
    let cluster = clusters::Entity::find_by_id(deployment.cluster_id)
        .one(conn)
        .await?
        .ok_or_else(|| AppError::not_found("cluster_not_found", "The deployment's cluster no longer exists."))?;
    let action = Action::parse(&run.action).unwrap_or(Action::Deploy);
    let revision = match spec.revision {
        Some(number) => {
            let failed = revision(conn, deployment.id, number).await?.ok_or_else(not_found)?;
            let newest = revisions::Entity::find()
                .filter(revisions::Column::DeploymentId.eq(deployment.id))
                .order_by_desc(revisions::Column::Revision)
                .one(conn)
                .await?
                .map_or(0, |r| r.revision);
            // The copy's secrets are sealed again for their new row.
            let secrets = open_secrets(state, &failed.secrets_key_id, &failed.secrets_sealed, failed.id)?;
            let copy_id = Uuid::now_v7();
            let (key_id, sealed) = if secrets.is_empty() {
                (None, None)
            } else {
                let sealed = state
                    .keyring
                    .seal(&serde_json::to_vec(&secrets).map_err(anyhow::Error::from)?, copy_id.as_bytes())?;
                (Some(sealed.key_id), Some(sealed.bytes))
            };
            let copy = revisions::ActiveModel {
                id: Set(copy_id),
                deployment_id: Set(deployment.id),
                revision: Set(newest + 1),
                version: Set(failed.version.clone()),
                values: Set(failed.values.clone()),
                secrets_key_id: Set(key_id),
                secrets_sealed: Set(sealed),
                rollback_of: Set(failed.rollback_of),
                run_id: Set(None),
                status: Set(revision_status::PENDING.to_owned()),
                created_at: Set(Utc::now()),
            }
            .insert(conn)
            .await?;
            Some(copy)
        }
        None => None,
    };
    let queued =
        queue(conn, state, &cluster, &deployment, action, revision.as_ref().map(|r| r.revision), Some(requested_by))
            .await?;
    if let Some(revision) = revision {
        let mut active = revision.into_active_model();
        active.run_id = Set(Some(queued.id));
        active.update(conn).await?;
    }
    Ok(queued)
}

async fn revision(conn: &impl ConnectionTrait, deployment: Uuid, number: i32) -> Result<Option<revisions::Model>> {
    Ok(revisions::Entity::find()
        .filter(revisions::Column::DeploymentId.eq(deployment))
        .filter(revisions::Column::Revision.eq(number))
        .one(conn)
        .await?)
}

/// The organization's deployment `id`.
pub async fn get<R: MinRole>(state: &AppState, member: &OrgMember<R>, id: Uuid) -> Result<deployments::Model> {
    deployments::Entity::find_by_id(id)
        .filter(deployments::Column::OrgId.eq(member.org.id))
        .one(&state.db)
        .await?
        .ok_or_else(not_found)
}

/// A page of cluster `cluster_id`'s deployments, newest first, before `before`.
pub async fn list<R: MinRole>(
    state: &AppState,
    member: &OrgMember<R>,
    cluster_id: Uuid,
    before: Option<Uuid>,
    limit: u64,
) -> Result<Vec<deployments::Model>> {
    let cluster = crate::clusters::get(state, member, cluster_id).await?;
    let mut query = deployments::Entity::find().filter(deployments::Column::ClusterId.eq(cluster.id));
    if let Some(before) = before {
        query = query.filter(deployments::Column::Id.lt(before));
    }
    Ok(query.order_by_desc(deployments::Column::Id).limit(limit).all(&state.db).await?)
}

/// A deployment's revisions, newest first.
pub async fn revisions_of(conn: &impl ConnectionTrait, deployment: Uuid) -> Result<Vec<revisions::Model>, DbErr> {
    revisions::Entity::find()
        .filter(revisions::Column::DeploymentId.eq(deployment))
        .order_by_desc(revisions::Column::Revision)
        .all(conn)
        .await
}

fn ensure_installed(deployment: &deployments::Model) -> Result<()> {
    match deployment.status.as_str() {
        status::UNINSTALLED => {
            Err(AppError::conflict("deployment_uninstalled", "This deployment has been uninstalled."))
        }
        status::UNINSTALLING => {
            Err(AppError::conflict("deployment_uninstalling", "This deployment is being uninstalled."))
        }
        _ => Ok(()),
    }
}

/// Records what a new revision changes on the deployment row, inside the caller's transaction.
async fn point_at(
    conn: &impl ConnectionTrait,
    state: &AppState,
    deployment: &deployments::Model,
    validated: &Validated,
    actor: &OrgMember<Operator>,
) -> Result<()> {
    let (key_id, sealed) = seal_secrets(state, validated, deployment.id)?;
    let mut active = deployment.clone().into_active_model();
    active.version = Set(validated.version.version.to_owned());
    active.values = Set(validated.values.without_secrets());
    active.secrets_key_id = Set(key_id);
    active.secrets_sealed = Set(sealed);
    active.updated_by = Set(Some(actor.user.id()));
    active.updated_at = Set(Utc::now());
    active.update(conn).await?;
    Ok(())
}

/// Upgrades to new values and/or a new version: a new revision and its `upgrade` run. Values,
/// when given, replace the current ones whole; secrets they leave out keep their stored value.
pub async fn upgrade(
    state: &AppState,
    actor: &OrgMember<Operator>,
    id: Uuid,
    request: &fleetplane_api::UpgradeDeploymentRequest,
    ip: IpAddr,
) -> Result<(deployments::Model, runs::Model)> {
    let deployment = get(state, actor, id).await?;
    ensure_installed(&deployment)?;
    let cluster = crate::clusters::get(state, actor, deployment.cluster_id).await?;
    let mut values = request.values.clone().unwrap_or_else(|| deployment.values.clone());
    let stored = open_secrets(state, &deployment.secrets_key_id, &deployment.secrets_sealed, deployment.id)?;
    if values.is_object() {
        for (pointer, secret) in stored {
            if values.pointer(&pointer).is_none() {
                put(&mut values, &pointer, secret);
            }
        }
    }
    let version = request.version.clone().unwrap_or_else(|| deployment.version.clone());
    let mut errors = FieldErrors::new();
    let validated = catalog::validate(Some(&deployment.service), Some(&version), Some(&values), &mut errors);
    check_target(Some(&deployment.service), Some(&values), &cluster.target, &mut errors);
    errors.finish()?;
    let Some(validated) = validated else {
        return Err(AppError::Internal(anyhow::anyhow!("validated upgrade missing")));
    };
    let cluster = ready_cluster(state, actor, cluster.id).await?;
    let txn = begin_write(&state.db).await?;
    point_at(&txn, state, &deployment, &validated, actor).await?;
    let run = new_revision(&txn, state, &cluster, &deployment, &validated, None, Action::Upgrade, actor).await?;
    Event::new("deployment.upgraded", Some(ip))
        .actor(&actor.user.user)
        .org(actor.org.id)
        .target(format!("{}/{}", cluster.name, deployment.release))
        .details(json!({ "deployment": id, "version": validated.version.version, "run": run.id }))
        .record(&txn)
        .await?;
    txn.commit().await?;
    state.wake_workers();
    Ok((reload(state, id).await?, run))
}

/// Deploys an earlier revision's version and values again, as a new revision.
pub async fn rollback(
    state: &AppState,
    actor: &OrgMember<Operator>,
    id: Uuid,
    request: &fleetplane_api::RollbackRequest,
    ip: IpAddr,
) -> Result<(deployments::Model, runs::Model)> {
    let deployment = get(state, actor, id).await?;
    ensure_installed(&deployment)?;
    let Some(number) = request.revision else {
        return Err(AppError::invalid_field("revision", "required", "Name the revision to roll back to."));
    };
    let number = i32::try_from(number).unwrap_or(i32::MAX);
    let Some(target) = revision(&state.db, deployment.id, number).await? else {
        return Err(AppError::invalid_field(
            "revision",
            "unknown_revision",
            format!("This deployment has no revision {number}."),
        ));
    };
    let cluster = ready_cluster(state, actor, deployment.cluster_id).await?;
    // The stored values with their secrets put back, checked again: the catalog may have moved on.
    let mut values = target.values.clone();
    for (pointer, secret) in open_secrets(state, &target.secrets_key_id, &target.secrets_sealed, target.id)? {
        put(&mut values, &pointer, secret);
    }
    let mut errors = FieldErrors::new();
    let validated = catalog::validate(Some(&deployment.service), Some(&target.version), Some(&values), &mut errors);
    if errors.finish().is_err() {
        return Err(AppError::invalid_field(
            "revision",
            "revision_unavailable",
            format!("Revision {number}'s version or values are no longer offered by the catalog."),
        ));
    }
    let Some(validated) = validated else {
        return Err(AppError::Internal(anyhow::anyhow!("validated rollback missing")));
    };
    let txn = begin_write(&state.db).await?;
    point_at(&txn, state, &deployment, &validated, actor).await?;
    let run =
        new_revision(&txn, state, &cluster, &deployment, &validated, Some(number), Action::Rollback, actor).await?;
    Event::new("deployment.rolled_back", Some(ip))
        .actor(&actor.user.user)
        .org(actor.org.id)
        .target(format!("{}/{}", cluster.name, deployment.release))
        .details(json!({ "deployment": id, "revision": number, "run": run.id }))
        .record(&txn)
        .await?;
    txn.commit().await?;
    state.wake_workers();
    Ok((reload(state, id).await?, run))
}

/// Queues the run that removes the deployment.
pub async fn uninstall(
    state: &AppState,
    actor: &OrgMember<Operator>,
    id: Uuid,
    ip: IpAddr,
) -> Result<(deployments::Model, runs::Model)> {
    let deployment = get(state, actor, id).await?;
    ensure_installed(&deployment)?;
    let pending = runs::Entity::find()
        .filter(runs::Column::DeploymentId.eq(id))
        .filter(runs::Column::Action.eq(Action::Uninstall.as_str()))
        .filter(runs::Column::Status.is_not_in(run_status::TERMINAL))
        .one(&state.db)
        .await?;
    if let Some(run) = pending {
        return Err(AppError::conflict(
            "deployment_uninstalling",
            format!("Run {} is already uninstalling this deployment.", run.id),
        ));
    }
    let cluster = crate::clusters::get(state, actor, deployment.cluster_id).await?;
    let txn = begin_write(&state.db).await?;
    let run = queue(&txn, state, &cluster, &deployment, Action::Uninstall, None, Some(actor.user.id())).await?;
    Event::new("deployment.uninstall_requested", Some(ip))
        .actor(&actor.user.user)
        .org(actor.org.id)
        .target(format!("{}/{}", cluster.name, deployment.release))
        .details(json!({ "deployment": id, "run": run.id }))
        .record(&txn)
        .await?;
    txn.commit().await?;
    state.wake_workers();
    Ok((reload(state, id).await?, run))
}

async fn reload(state: &AppState, id: Uuid) -> Result<deployments::Model> {
    deployments::Entity::find_by_id(id).one(&state.db).await?.ok_or_else(not_found)
}

/// Every value of revision `number`, secrets included, and the SHA-256 of the deployment's
/// service token where its chart takes it: what the run that installs it needs. Only a worker
/// calls this.
pub async fn install_values(state: &AppState, deployment: Uuid, number: i32) -> anyhow::Result<(String, Value)> {
    let row = deployments::Entity::find_by_id(deployment)
        .one(&state.db)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the deployment is gone"))?;
    let revision = revision(&state.db, deployment, number)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .ok_or_else(|| anyhow::anyhow!("revision {number} of the deployment is gone"))?;
    let mut values = revision.values.clone();
    let secrets = open_secrets(state, &revision.secrets_key_id, &revision.secrets_sealed, revision.id)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (pointer, secret) in secrets {
        put(&mut values, &pointer, secret);
    }
    let managed = catalog::entry(&row.service).and_then(|entry| entry.info.managed_token());
    if let (Some(catalog::OutputSource::ManagedToken { chart_value, .. }), Some(token)) =
        (managed, service_token(state, &row).map_err(|e| anyhow::anyhow!("{e}"))?)
    {
        put(&mut values, chart_value, Value::from(fleetplane_common::tokens::hash(&token)));
    }
    Ok((revision.version, values))
}

/// Secret values of revision `number`, for scrubbing them from the run's log.
pub async fn secret_values(state: &AppState, deployment: Uuid, number: i32) -> Vec<String> {
    let Ok(Some(revision)) = revision(&state.db, deployment, number).await else { return Vec::new() };
    open_secrets(state, &revision.secrets_key_id, &revision.secrets_sealed, revision.id)
        .map(|s| s.values().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Records that the deployment's service answered ready now.
pub async fn health_checked(conn: &impl ConnectionTrait, deployment: Uuid) -> Result<(), DbErr> {
    deployments::Entity::update_many()
        .col_expr(deployments::Column::HealthCheckedAt, sea_orm::sea_query::Expr::value(Some(Utc::now())))
        .filter(deployments::Column::Id.eq(deployment))
        .exec(conn)
        .await
        .map(drop)
}

/// Recomputes the deployment's status (and its revisions') from run `run`, inside the caller's
/// transaction. Returns the deployment when its status changed.
pub async fn refresh(conn: &impl ConnectionTrait, run: &runs::Model) -> Result<Option<deployments::Model>, DbErr> {
    let Some(id) = run.deployment_id else { return Ok(None) };
    let Some(deployment) = deployments::Entity::find_by_id(id).one(conn).await? else { return Ok(None) };
    let Some(action) = Action::parse(&run.action) else { return Ok(None) };
    let spec: Option<DeploymentRunSpec> = serde_json::from_value(run.spec.clone()).ok();
    let number = spec.and_then(|s| s.revision);
    let uninstall = action == Action::Uninstall;
    let reason = run.reason.clone();
    let (next, reason) = match (uninstall, run.status.as_str()) {
        (_, run_status::QUEUED | run_status::AWAITING_APPROVAL) => {
            (deployment.status.clone(), deployment.reason.clone())
        }
        (false, run_status::RUNNING | run_status::APPLYING) => (status::DEPLOYING.to_owned(), reason),
        (true, run_status::RUNNING | run_status::APPLYING) => (status::UNINSTALLING.to_owned(), reason),
        (false, run_status::SUCCEEDED) => (status::HEALTHY.to_owned(), reason),
        (true, run_status::SUCCEEDED) => (status::UNINSTALLED.to_owned(), reason),
        // A canceled run that had not started changed nothing, unless nothing was ever deployed.
        (_, run_status::CANCELED)
            if run.started_at.is_none()
                && !matches!(
                    deployment.status.as_str(),
                    status::PENDING | status::DEPLOYING | status::UNINSTALLING
                ) =>
        {
            (deployment.status.clone(), deployment.reason.clone())
        }
        _ => (status::FAILED.to_owned(), reason),
    };
    let mut active = deployment.clone().into_active_model();
    let changed = next != deployment.status || reason != deployment.reason;
    active.status = Set(next.clone());
    active.reason = Set(reason);
    if let (Some(number), false) = (number, uninstall) {
        let revision_next = match run.status.as_str() {
            run_status::SUCCEEDED => Some(revision_status::DEPLOYED),
            run_status::FAILED | run_status::CANCELED => Some(revision_status::FAILED),
            _ => None,
        };
        if let Some(revision_next) = revision_next {
            if revision_next == revision_status::DEPLOYED {
                revisions::Entity::update_many()
                    .col_expr(revisions::Column::Status, sea_orm::sea_query::Expr::value(revision_status::SUPERSEDED))
                    .filter(revisions::Column::DeploymentId.eq(id))
                    .filter(revisions::Column::Status.eq(revision_status::DEPLOYED))
                    .exec(conn)
                    .await?;
                active.current_revision = Set(Some(number));
                active.outputs = Set(run.outputs.clone());
                active.health_checked_at = Set(run.finished_at.or(Some(Utc::now())));
            }
            revisions::Entity::update_many()
                .col_expr(revisions::Column::Status, sea_orm::sea_query::Expr::value(revision_next))
                .filter(revisions::Column::DeploymentId.eq(id))
                .filter(revisions::Column::Revision.eq(number))
                .exec(conn)
                .await?;
        }
    }
    if next == status::UNINSTALLED {
        active.release_key = Set(format!("{}~{}", deployment.release, deployment.id));
        active.outputs = Set(None);
        active.current_revision = Set(None);
    }
    active.updated_at = Set(Utc::now());
    let updated = active.update(conn).await?;
    Ok(changed.then_some(updated))
}

/// Re-seals every deployment's and revision's secrets, and the deployments' service tokens,
/// under the newest master key (`fleetplane admin rotate-key`). Returns how many were re-sealed
/// and how many already used it.
pub async fn reseal_all(state: &AppState) -> anyhow::Result<(usize, usize)> {
    use sea_orm::sea_query::Expr;
    let primary = state.keyring.primary_id().to_owned();
    let (mut resealed, mut current) = (0, 0);
    let reseal = |key_id: &Option<String>, bytes: &Option<Vec<u8>>, context: Uuid| -> anyhow::Result<_> {
        let secrets = open_secrets(state, key_id, bytes, context).map_err(|e| anyhow::anyhow!("{e}"))?;
        let sealed = state.keyring.seal(&serde_json::to_vec(&secrets)?, context.as_bytes())?;
        Ok(sealed)
    };
    for deployment in
        deployments::Entity::find().filter(deployments::Column::SecretsKeyId.is_not_null()).all(&state.db).await?
    {
        if deployment.secrets_key_id.as_deref() == Some(primary.as_str()) {
            current += 1;
            continue;
        }
        let sealed = reseal(&deployment.secrets_key_id, &deployment.secrets_sealed, deployment.id)?;
        deployments::Entity::update_many()
            .col_expr(deployments::Column::SecretsKeyId, Expr::value(Some(sealed.key_id)))
            .col_expr(deployments::Column::SecretsSealed, Expr::value(Some(sealed.bytes)))
            .filter(deployments::Column::Id.eq(deployment.id))
            .filter(deployments::Column::SecretsKeyId.eq(deployment.secrets_key_id.clone()))
            .exec(&state.db)
            .await?;
        resealed += 1;
    }
    for deployment in
        deployments::Entity::find().filter(deployments::Column::ServiceTokenKeyId.is_not_null()).all(&state.db).await?
    {
        if deployment.service_token_key_id.as_deref() == Some(primary.as_str()) {
            current += 1;
            continue;
        }
        let Some(token) = service_token(state, &deployment).map_err(|e| anyhow::anyhow!("{e}"))? else { continue };
        let sealed = state.keyring.seal(token.as_bytes(), token_context(deployment.id).as_bytes())?;
        deployments::Entity::update_many()
            .col_expr(deployments::Column::ServiceTokenKeyId, Expr::value(Some(sealed.key_id)))
            .col_expr(deployments::Column::ServiceTokenSealed, Expr::value(Some(sealed.bytes)))
            .filter(deployments::Column::Id.eq(deployment.id))
            .filter(deployments::Column::ServiceTokenKeyId.eq(deployment.service_token_key_id.clone()))
            .exec(&state.db)
            .await?;
        resealed += 1;
    }
    for revision in
        revisions::Entity::find().filter(revisions::Column::SecretsKeyId.is_not_null()).all(&state.db).await?
    {
        if revision.secrets_key_id.as_deref() == Some(primary.as_str()) {
            current += 1;
            continue;
        }
        let sealed = reseal(&revision.secrets_key_id, &revision.secrets_sealed, revision.id)?;
        revisions::Entity::update_many()
            .col_expr(revisions::Column::SecretsKeyId, Expr::value(Some(sealed.key_id)))
            .col_expr(revisions::Column::SecretsSealed, Expr::value(Some(sealed.bytes)))
            .filter(revisions::Column::Id.eq(revision.id))
            .filter(revisions::Column::SecretsKeyId.eq(revision.secrets_key_id.clone()))
            .exec(&state.db)
            .await?;
        resealed += 1;
    }
    Ok((resealed, current))
}
