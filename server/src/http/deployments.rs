//! `/api/v1/orgs/{org}/clusters/{id}/deployments` and `/api/v1/orgs/{org}/deployments/{id}`:
//! catalog services on clusters, their revisions, and the runs that change them.

use std::collections::HashMap;

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use fleetplane_api as api;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    clusters::{ClusterPath, DryRun},
    extract::{ApiJson, ApiPath, ApiQuery, ClientIp},
    runs::{object, run_views},
};
use crate::{
    auth::{Operator, OrgMember, Viewer},
    deployments::{self, Created},
    entity::{clusters, deployments as entity, runs as run_entity},
    error::{AppError, Problem, Result, stored},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_deployments, create_deployment))
        .routes(routes!(get_deployment, upgrade_deployment, uninstall_deployment))
        .routes(routes!(rollback_deployment))
}

fn values_object(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    object(value).unwrap_or_default()
}

/// Views of `deployments` of organization `org`, each with its revisions and latest run.
async fn views(state: &AppState, deployments: Vec<entity::Model>, org: &str) -> Result<Vec<api::Deployment>> {
    let people: Vec<Uuid> = deployments.iter().flat_map(|d| [d.created_by, d.updated_by]).flatten().collect();
    let names = crate::runs::usernames(&state.db, people).await?;
    let cluster_ids: Vec<Uuid> = deployments.iter().map(|d| d.cluster_id).collect();
    let cluster_names: HashMap<Uuid, String> = clusters::Entity::find()
        .filter(clusters::Column::Id.is_in(cluster_ids))
        .all(&state.db)
        .await?
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect();
    let mut views = Vec::with_capacity(deployments.len());
    for deployment in deployments {
        let revisions = deployments::revisions_of(&state.db, deployment.id).await?;
        let last_run = run_entity::Entity::find()
            .filter(run_entity::Column::DeploymentId.eq(deployment.id))
            .order_by_desc(run_entity::Column::Id)
            .one(&state.db)
            .await?;
        let last_run = match last_run {
            Some(run) => run_views(state, vec![run], org).await?.pop(),
            None => None,
        };
        views.push(api::Deployment {
            id: deployment.id,
            org: org.to_owned(),
            cluster_id: deployment.cluster_id,
            cluster_name: cluster_names.get(&deployment.cluster_id).cloned().unwrap_or_default(),
            service: deployment.service,
            release: deployment.release,
            version: deployment.version,
            status: stored("deployments.status", &deployment.status, api::DeploymentStatus::parse)?,
            reason: deployment.reason,
            current_revision: deployment.current_revision.and_then(|n| u32::try_from(n).ok()),
            health_checked_at: deployment.health_checked_at,
            values: values_object(deployment.values),
            outputs: deployment.outputs.and_then(object),
            revisions: revisions
                .into_iter()
                .map(|revision| api::DeploymentRevision {
                    revision: u32::try_from(revision.revision).unwrap_or_default(),
                    version: revision.version.clone(),
                    secrets: deployments::secret_pointers(state, &revision),
                    values: values_object(revision.values),
                    run_id: revision.run_id,
                    status: revision.status,
                    rollback_of: revision.rollback_of.and_then(|n| u32::try_from(n).ok()),
                    created_at: revision.created_at,
                })
                .collect(),
            last_run,
            created_by: deployment.created_by.and_then(|id| names.get(&id).cloned()),
            created_at: deployment.created_at,
            updated_by: deployment.updated_by.and_then(|id| names.get(&id).cloned()),
            updated_at: deployment.updated_at,
        });
    }
    Ok(views)
}

async fn with_run(
    state: &AppState,
    deployment: entity::Model,
    run: run_entity::Model,
    org: &str,
) -> Result<api::DeploymentWithRun> {
    let vanished = || AppError::Internal(anyhow::anyhow!("a deployment or its run vanished"));
    let deployment = views(state, vec![deployment], org).await?.pop().ok_or_else(vanished)?;
    let run = run_views(state, vec![run], org).await?.pop().ok_or_else(vanished)?;
    Ok(api::DeploymentWithRun { deployment, run })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeploymentQuery {
    /// Page size (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    /// Only deployments older than this one (the previous page's `next_before`).
    pub before: Option<Uuid>,
}

/// The cluster's deployments, newest first, uninstalled ones included.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/clusters/{id}/deployments", tag = "deployments",
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Cluster id"), DeploymentQuery),
    responses(
        (status = 200, body = api::DeploymentPage),
        (status = 400, description = "`invalid_query`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`cluster_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_deployments(
    State(state): State<AppState>,
    member: OrgMember<Viewer>,
    ApiPath(path): ApiPath<ClusterPath>,
    ApiQuery(query): ApiQuery<DeploymentQuery>,
) -> Result<Json<api::DeploymentPage>> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=api::MAX_PAGE_SIZE).contains(&limit) {
        return Err(AppError::bad_request("invalid_query", "`limit` must be between 1 and 100."));
    }
    let found = deployments::list(&state, &member, path.id, query.before, limit + 1).await?;
    let more = found.len() as u64 > limit;
    let items = views(&state, found.into_iter().take(limit as usize).collect(), &member.org.name).await?;
    let next_before = if more { items.last().map(|d| d.id) } else { None };
    Ok(Json(api::DeploymentPage { items, next_before }))
}

/// Deploy a catalog service onto a ready cluster: checks the service, version and values field
/// by field, stores revision 1 and queues its `deploy` run. With `?dry_run=true`, only checks.
/// Operators and up.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/clusters/{id}/deployments", tag = "deployments",
    request_body = api::CreateDeploymentRequest,
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Cluster id"), DryRun),
    responses(
        (status = 201, description = "Stored; its deploy run is queued", body = api::DeploymentWithRun),
        (status = 200, description = "Dry run: valid; the values with their defaults, without secrets", body = api::CheckedDeployment),
        (status = 403, description = "`forbidden`: viewers cannot deploy", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`cluster_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`cluster_not_ready` or `deployment_exists`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `service`, `version` and `values.<path>` errors, `local_unsupported`, `local_single_replica`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_deployment(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Operator>,
    ApiPath(path): ApiPath<ClusterPath>,
    ApiQuery(query): ApiQuery<DryRun>,
    ApiJson(body): ApiJson<api::CreateDeploymentRequest>,
) -> Result<axum::response::Response> {
    match deployments::create(&state, &actor, path.id, &body, query.dry_run, ip).await? {
        Created::Valid(validated) => Ok(Json(api::CheckedDeployment {
            service: validated.entry.info.service.to_owned(),
            version: validated.version.version.to_owned(),
            values: values_object(validated.values.without_secrets()),
            secrets: validated.values.secrets().map(|(pointer, _)| pointer.to_owned()).collect(),
        })
        .into_response()),
        Created::Queued { deployment, run } => {
            let created = with_run(&state, *deployment, *run, &actor.org.name).await?;
            Ok((StatusCode::CREATED, Json(created)).into_response())
        }
    }
}

/// `/orgs/{org}/deployments/{id}`; the organization is resolved by [`OrgMember`].
#[derive(Deserialize)]
pub struct DeploymentPath {
    pub id: Uuid,
}

/// One deployment: status, health, outputs, its revisions (newest first) and latest run.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/deployments/{id}", tag = "deployments",
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Deployment id")),
    responses(
        (status = 200, body = api::Deployment),
        (status = 404, description = "`deployment_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_deployment(
    State(state): State<AppState>,
    member: OrgMember<Viewer>,
    ApiPath(path): ApiPath<DeploymentPath>,
) -> Result<Json<api::Deployment>> {
    let deployment = deployments::get(&state, &member, path.id).await?;
    let view = views(&state, vec![deployment], &member.org.name)
        .await?
        .pop()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("a deployment view went missing")))?;
    Ok(Json(view))
}

/// Upgrade: new values (replacing the current ones whole; secrets left out keep their stored
/// value) and/or a new version make a new revision and its `upgrade` run. Operators and up.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/deployments/{id}", tag = "deployments",
    request_body = api::UpgradeDeploymentRequest,
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Deployment id")),
    responses(
        (status = 200, body = api::DeploymentWithRun),
        (status = 409, description = "`cluster_not_ready`, `deployment_uninstalled` or `deployment_uninstalling`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn upgrade_deployment(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Operator>,
    ApiPath(path): ApiPath<DeploymentPath>,
    ApiJson(body): ApiJson<api::UpgradeDeploymentRequest>,
) -> Result<Json<api::DeploymentWithRun>> {
    let (deployment, run) = deployments::upgrade(&state, &actor, path.id, &body, ip).await?;
    Ok(Json(with_run(&state, deployment, run, &actor.org.name).await?))
}

/// Roll back: deploys an earlier revision's version and values again, as a new revision.
/// Operators and up.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/deployments/{id}/rollback", tag = "deployments",
    request_body = api::RollbackRequest,
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Deployment id")),
    responses(
        (status = 200, body = api::DeploymentWithRun),
        (status = 409, description = "`cluster_not_ready`, `deployment_uninstalled` or `deployment_uninstalling`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `revision` is `required`, `unknown_revision` or `revision_unavailable`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn rollback_deployment(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Operator>,
    ApiPath(path): ApiPath<DeploymentPath>,
    ApiJson(body): ApiJson<api::RollbackRequest>,
) -> Result<Json<api::DeploymentWithRun>> {
    let (deployment, run) = deployments::rollback(&state, &actor, path.id, &body, ip).await?;
    Ok(Json(with_run(&state, deployment, run, &actor.org.name).await?))
}

/// Uninstall: queues the run that removes the deployment's workloads and data. Operators and up.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/deployments/{id}", tag = "deployments",
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Deployment id")),
    responses(
        (status = 202, description = "The uninstall run is queued", body = api::DeploymentWithRun),
        (status = 409, description = "`deployment_uninstalled` or `deployment_uninstalling`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn uninstall_deployment(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Operator>,
    ApiPath(path): ApiPath<DeploymentPath>,
) -> Result<(StatusCode, Json<api::DeploymentWithRun>)> {
    let (deployment, run) = deployments::uninstall(&state, &actor, path.id, ip).await?;
    Ok((StatusCode::ACCEPTED, Json(with_run(&state, deployment, run, &actor.org.name).await?)))
}
