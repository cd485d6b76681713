//! `/api/v1/orgs/{org}/clusters`, the options a cluster can take, and what runs the jobs.

use std::collections::HashMap;

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use chrono::Utc;
use fleetplane_api as api;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    extract::{ApiJson, ApiPath, ApiQuery, ClientIp},
    runs::{object, run_views},
};
use crate::{
    audit::Event,
    auth::{Admin, CurrentUser, OrgMember, Viewer},
    clusters::{self, Created, options},
    entity::{clusters as entity, runs as run_entity, workers},
    error::{AppError, Problem, Result, stored},
    state::AppState,
    terraform_state,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(cluster_options))
        .routes(routes!(system))
        .routes(routes!(list_clusters, create_cluster))
        .routes(routes!(get_cluster, update_cluster, delete_cluster))
        .routes(routes!(list_cluster_runs, request_run))
        .routes(routes!(get_state_info))
        .routes(routes!(force_unlock))
}

fn view(cluster: entity::Model, org: &str, last_run: Option<api::Run>) -> Result<api::Cluster> {
    let spec = clusters::spec_of(&cluster)?;
    Ok(api::Cluster {
        id: cluster.id,
        org: org.to_owned(),
        name: cluster.name,
        name_prefix: spec.name_prefix,
        name_suffix: spec.name_suffix,
        cloud_account_id: cluster.cloud_account_id,
        provider: options::target(&cluster.target).and_then(|t| t.provider),
        target: cluster.target,
        region: spec.region,
        kubernetes_version: spec.kubernetes_version,
        vpc_cidr: spec.vpc_cidr,
        public_subnets: spec.public_subnets,
        private_subnets: spec.private_subnets,
        node_instance_type: spec.node_instance_type,
        node_min: spec.node_min,
        node_max: spec.node_max,
        node_desired: spec.node_desired,
        state_backend: spec.state_backend,
        status: stored("clusters.status", &cluster.status, api::ClusterStatus::parse)?,
        outputs: cluster.outputs.and_then(object),
        last_run,
        created_at: cluster.created_at,
        updated_at: cluster.updated_at,
    })
}

async fn with_last_run(state: &AppState, cluster: entity::Model, org: &str) -> Result<api::Cluster> {
    let mut views = with_last_runs(state, vec![cluster], org).await?;
    views.pop().ok_or_else(|| AppError::Internal(anyhow::anyhow!("a cluster view went missing")))
}

/// The clusters' views, each with its latest run: one query for those runs, whatever the count.
async fn with_last_runs(state: &AppState, clusters: Vec<entity::Model>, org: &str) -> Result<Vec<api::Cluster>> {
    use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};

    // A cluster's latest run is the one no later run of the same cluster follows (PostgreSQL has
    // no MAX over uuids); the `(cluster_id, id)` index serves the NOT EXISTS.
    let later = Alias::new("later");
    let follower = Query::select()
        .expr(Expr::val(1))
        .from_as(run_entity::Entity, later.clone())
        .and_where(
            Expr::col((later.clone(), run_entity::Column::ClusterId))
                .equals((run_entity::Entity, run_entity::Column::ClusterId)),
        )
        .and_where(
            Expr::col((later, run_entity::Column::Id)).gt(Expr::col((run_entity::Entity, run_entity::Column::Id))),
        )
        .to_owned();
    let ids: Vec<Uuid> = clusters.iter().map(|c| c.id).collect();
    let runs = run_entity::Entity::find()
        .filter(run_entity::Column::ClusterId.is_in(ids))
        .filter(Expr::exists(follower).not())
        .all(&state.db)
        .await?;
    let mut last: HashMap<Uuid, api::Run> =
        run_views(state, runs, org).await?.into_iter().map(|run| (run.cluster_id, run)).collect();
    clusters
        .into_iter()
        .map(|cluster| {
            let run = last.remove(&cluster.id);
            view(cluster, org, run)
        })
        .collect()
}

/// What a cluster can be: targets, regions, node sizes, versions, defaults and limits.
#[utoipa::path(get, path = "/api/v1/cluster-options", tag = "clusters", responses((status = 200, body = api::ClusterOptions)))]
async fn cluster_options(State(state): State<AppState>, _caller: CurrentUser) -> Json<api::ClusterOptions> {
    Json(options::options(state.config.runs.local_target))
}

/// How runs are carried out.
#[utoipa::path(get, path = "/api/v1/system", tag = "clusters", responses((status = 200, body = api::System)))]
async fn system(State(state): State<AppState>, _caller: CurrentUser) -> Result<Json<api::System>> {
    use sea_orm::PaginatorTrait;
    let workers = workers::Entity::find()
        .filter(workers::Column::StoppedAt.is_null())
        .filter(workers::Column::LastSeenAt.gt(Utc::now() - crate::runs::WORKER_LIVENESS))
        .count(&state.db)
        .await?;
    // What runs jobs now: an `auto` executor moves to containers once an engine answers.
    let executor = state.executor.get().and_then(|executor| api::Executor::parse(executor.current_kind()));
    Ok(Json(api::System { executor: executor.unwrap_or(api::Executor::None), workers }))
}

/// The organization's clusters, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/clusters", tag = "clusters",
    params(("org" = String, Path, description = "Organization name")),
    responses((status = 200, body = [api::Cluster])))]
async fn list_clusters(State(state): State<AppState>, member: OrgMember<Viewer>) -> Result<Json<Vec<api::Cluster>>> {
    let clusters = clusters::list(&state, &member).await?;
    Ok(Json(with_last_runs(&state, clusters, &member.org.name).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DryRun {
    /// Only validate; store nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// Create a cluster: validates the spec field by field and queues the first apply. With
/// `?dry_run=true`, only validates. Admins and owners.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/clusters", tag = "clusters", request_body = api::CreateClusterRequest,
    params(("org" = String, Path, description = "Organization name"), DryRun),
    responses(
        (status = 201, description = "Created; its first run is queued", body = api::CreatedCluster),
        (status = 200, description = "Dry run: the spec is valid", body = api::CheckedCluster),
        (status = 409, description = "`cluster_name_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, with a field error per problem", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_cluster(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Admin>,
    ApiQuery(query): ApiQuery<DryRun>,
    ApiJson(body): ApiJson<api::CreateClusterRequest>,
) -> Result<axum::response::Response> {
    match clusters::create(&state, &actor, &body, query.dry_run, ip).await? {
        Created::Valid { name } => Ok(Json(api::CheckedCluster { name }).into_response()),
        Created::Queued { cluster, run } => {
            let run = run_views(&state, vec![*run], &actor.org.name)
                .await?
                .pop()
                .ok_or_else(|| AppError::Internal(anyhow::anyhow!("the queued run vanished")))?;
            let cluster = view(*cluster, &actor.org.name, Some(run.clone()))?;
            Ok((StatusCode::CREATED, Json(api::CreatedCluster { cluster, run })).into_response())
        }
    }
}

/// `/orgs/{org}/clusters/{id}`; the organization is resolved by [`OrgMember`].
#[derive(Deserialize)]
pub struct ClusterPath {
    pub id: Uuid,
}

/// One cluster, with its latest run.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/clusters/{id}", tag = "clusters",
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Cluster id")),
    responses(
        (status = 200, body = api::Cluster),
        (status = 404, description = "`cluster_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_cluster(
    State(state): State<AppState>,
    member: OrgMember<Viewer>,
    ApiPath(path): ApiPath<ClusterPath>,
) -> Result<Json<api::Cluster>> {
    let cluster = clusters::get(&state, &member, path.id).await?;
    Ok(Json(with_last_run(&state, cluster, &member.org.name).await?))
}

/// Change the Kubernetes version, node size or node counts; queues the apply. Admins and owners.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/clusters/{id}", tag = "clusters", request_body = api::SpecInput,
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Cluster id")),
    responses(
        (status = 200, body = api::CreatedCluster),
        (status = 422, description = "`validation_failed`; `immutable` for fields that cannot change", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_cluster(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Admin>,
    ApiPath(path): ApiPath<ClusterPath>,
    ApiJson(body): ApiJson<api::SpecInput>,
) -> Result<Json<api::CreatedCluster>> {
    let (cluster, run) = clusters::update(&state, &actor, path.id, &body, ip).await?;
    let run = run_views(&state, vec![run], &actor.org.name)
        .await?
        .pop()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("run vanished")))?;
    Ok(Json(api::CreatedCluster { cluster: view(cluster, &actor.org.name, Some(run.clone()))?, run }))
}

/// Destroy the cluster: queues a destroy run. Admins and owners.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/clusters/{id}", tag = "clusters",
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Cluster id")),
    responses(
        (status = 202, description = "The destroy run is queued", body = api::Run),
        (status = 409, description = "`cluster_destroyed`, `cluster_destroying`, or `cluster_has_deployments`: uninstall them first", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_cluster(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Admin>,
    ApiPath(path): ApiPath<ClusterPath>,
) -> Result<(StatusCode, Json<api::Run>)> {
    let run = clusters::destroy(&state, &actor, path.id, ip).await?;
    let run = run_views(&state, vec![run], &actor.org.name)
        .await?
        .pop()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("run vanished")))?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

/// The cluster's runs, newest first (at most 100).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/clusters/{id}/runs", tag = "clusters",
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Cluster id")),
    responses((status = 200, body = [api::Run])))]
async fn list_cluster_runs(
    State(state): State<AppState>,
    member: OrgMember<Viewer>,
    ApiPath(path): ApiPath<ClusterPath>,
) -> Result<Json<Vec<api::Run>>> {
    let cluster = clusters::get(&state, &member, path.id).await?;
    let runs = run_entity::Entity::find()
        .filter(run_entity::Column::ClusterId.eq(cluster.id))
        .order_by_desc(run_entity::Column::Id)
        .limit(100)
        .all(&state.db)
        .await?;
    Ok(Json(run_views(&state, runs, &member.org.name).await?))
}

/// Queue a plan or an apply of the cluster's current spec.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/clusters/{id}/runs", tag = "clusters", request_body = api::RunRequest,
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Cluster id")),
    responses(
        (status = 201, body = api::Run),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn request_run(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    member: OrgMember<Viewer>,
    ApiPath(path): ApiPath<ClusterPath>,
    ApiJson(body): ApiJson<api::RunRequest>,
) -> Result<(StatusCode, Json<api::Run>)> {
    let run = clusters::request_run(&state, &member, path.id, body.action, body.simulate, ip).await?;
    let run = run_views(&state, vec![run], &member.org.name)
        .await?
        .pop()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("run vanished")))?;
    Ok((StatusCode::CREATED, Json(run)))
}

/// The cluster's Terraform state: versions (newest first) and who holds the lock.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/clusters/{id}/state", tag = "clusters",
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Cluster id")),
    responses((status = 200, body = api::StateInfo)))]
async fn get_state_info(
    State(state): State<AppState>,
    member: OrgMember<Viewer>,
    ApiPath(path): ApiPath<ClusterPath>,
) -> Result<Json<api::StateInfo>> {
    let cluster = clusters::get(&state, &member, path.id).await?;
    Ok(Json(terraform_state::info(&state.db, cluster.id).await?))
}

/// Release the state lock, whoever holds it. For a lock whose Terraform is gone. Admins and owners.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/clusters/{id}/state/lock", tag = "clusters",
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Cluster id")),
    responses(
        (status = 204, description = "Released"),
        (status = 404, description = "`not_locked`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn force_unlock(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Admin>,
    ApiPath(path): ApiPath<ClusterPath>,
) -> Result<StatusCode> {
    let cluster = clusters::get(&state, &actor, path.id).await?;
    let lock = terraform_state::info(&state.db, cluster.id).await?.lock;
    if !terraform_state::force_unlock(&state.db, cluster.id).await? {
        return Err(AppError::not_found("not_locked", "The state is not locked."));
    }
    Event::new("cluster.state_unlocked", Some(ip))
        .actor(&actor.user.user)
        .org(actor.org.id)
        .target(cluster.name)
        .details(serde_json::json!({ "lock": lock.map(|l| l.id), "run": None::<Uuid> }))
        .record(&state.db)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
