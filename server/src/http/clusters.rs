//! `/api/v1/orgs/{org}/clusters`, the options a cluster can take, and what runs the jobs.

use std::collections::HashMap;

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    extract::{ApiJson, ApiPath, ApiQuery, ClientIp},
    runs::{RunView, run_views},
};
use crate::{
    audit::Event,
    auth::{Admin, CurrentUser, OrgMember, Viewer},
    clusters::{
        self, CreateRequest, Created, options,
        spec::{SpecInput, StateBackend},
    },
    entity::{clusters as entity, runs as run_entity, workers},
    error::{AppError, Problem, Result},
    runs::{Action, Simulate},
    state::AppState,
    terraform_state::{self, StateInfo},
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

#[derive(Serialize, ToSchema)]
pub struct ClusterView {
    pub id: Uuid,
    /// The organization's name.
    pub org: String,
    pub name: String,
    pub name_prefix: String,
    pub name_suffix: String,
    /// None for a local simulation created without an account.
    pub cloud_account_id: Option<Uuid>,
    /// `aws`, `azure`, `gcp`; none for the local simulation.
    pub provider: Option<&'static str>,
    pub target: String,
    pub region: String,
    pub kubernetes_version: String,
    pub vpc_cidr: String,
    pub public_subnets: Vec<String>,
    pub private_subnets: Vec<String>,
    pub node_instance_type: String,
    pub node_min: u32,
    pub node_max: u32,
    pub node_desired: u32,
    pub state_backend: StateBackend,
    /// `pending`, `provisioning`, `ready`, `failed`, `destroying`, `destroyed`.
    pub status: String,
    /// Terraform's non-sensitive outputs of the last successful apply (endpoint, CA data, kubeconfig).
    #[schema(value_type = Object)]
    pub outputs: Option<serde_json::Value>,
    pub last_run: Option<RunView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn view(cluster: entity::Model, org: &str, last_run: Option<RunView>) -> Result<ClusterView> {
    let spec = clusters::spec_of(&cluster)?;
    Ok(ClusterView {
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
        status: cluster.status,
        outputs: cluster.outputs,
        last_run,
        created_at: cluster.created_at,
        updated_at: cluster.updated_at,
    })
}

async fn with_last_run(state: &AppState, cluster: entity::Model, org: &str) -> Result<ClusterView> {
    let mut views = with_last_runs(state, vec![cluster], org).await?;
    views.pop().ok_or_else(|| AppError::Internal(anyhow::anyhow!("a cluster view went missing")))
}

/// The clusters' views, each with its latest run: one query for those runs, whatever the count.
async fn with_last_runs(state: &AppState, clusters: Vec<entity::Model>, org: &str) -> Result<Vec<ClusterView>> {
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
    let mut last: HashMap<Uuid, RunView> =
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
#[utoipa::path(get, path = "/api/v1/cluster-options", tag = "clusters", responses((status = 200, body = options::ClusterOptions)))]
async fn cluster_options(State(state): State<AppState>, _caller: CurrentUser) -> Json<options::ClusterOptions> {
    Json(options::options(state.config.runs.local_target))
}

#[derive(Serialize, ToSchema)]
pub struct SystemView {
    /// What runs this server's jobs: `docker`, `process` (no Docker engine), or `none` (no
    /// embedded workers).
    pub executor: &'static str,
    /// Workers seen alive, on any machine.
    pub workers: u64,
}

/// How runs are carried out.
#[utoipa::path(get, path = "/api/v1/system", tag = "clusters", responses((status = 200, body = SystemView)))]
async fn system(State(state): State<AppState>, _caller: CurrentUser) -> Result<Json<SystemView>> {
    use sea_orm::PaginatorTrait;
    let workers = workers::Entity::find()
        .filter(workers::Column::StoppedAt.is_null())
        .filter(workers::Column::LastSeenAt.gt(Utc::now() - crate::runs::WORKER_LIVENESS))
        .count(&state.db)
        .await?;
    Ok(Json(SystemView { executor: state.executor.get().copied().unwrap_or("none"), workers }))
}

/// The organization's clusters, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/clusters", tag = "clusters",
    params(("org" = String, Path, description = "Organization name")),
    responses((status = 200, body = [ClusterView])))]
async fn list_clusters(State(state): State<AppState>, member: OrgMember<Viewer>) -> Result<Json<Vec<ClusterView>>> {
    let clusters = clusters::list(&state, &member).await?;
    Ok(Json(with_last_runs(&state, clusters, &member.org.name).await?))
}

#[derive(Deserialize, IntoParams)]
pub struct DryRun {
    /// Only validate; store nothing.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedView {
    pub cluster: ClusterView,
    pub run: RunView,
}

#[derive(Serialize, ToSchema)]
pub struct ValidView {
    /// The name the cluster would get.
    pub name: String,
}

/// Create a cluster: validates the spec field by field and queues the first apply. With
/// `?dry_run=true`, only validates. Admins and owners.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/clusters", tag = "clusters", request_body = CreateRequest,
    params(("org" = String, Path, description = "Organization name"), DryRun),
    responses(
        (status = 201, description = "Created; its first run is queued", body = CreatedView),
        (status = 200, description = "Dry run: the spec is valid", body = ValidView),
        (status = 409, description = "`cluster_name_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, with a field error per problem", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_cluster(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Admin>,
    ApiQuery(query): ApiQuery<DryRun>,
    ApiJson(body): ApiJson<CreateRequest>,
) -> Result<axum::response::Response> {
    match clusters::create(&state, &actor, &body, query.dry_run, ip).await? {
        Created::Valid { name } => Ok(Json(ValidView { name }).into_response()),
        Created::Queued { cluster, run } => {
            let run = run_views(&state, vec![*run], &actor.org.name)
                .await?
                .pop()
                .ok_or_else(|| AppError::Internal(anyhow::anyhow!("the queued run vanished")))?;
            let cluster = view(*cluster, &actor.org.name, Some(run.clone()))?;
            Ok((StatusCode::CREATED, Json(CreatedView { cluster, run })).into_response())
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
        (status = 200, body = ClusterView),
        (status = 404, description = "`cluster_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_cluster(
    State(state): State<AppState>,
    member: OrgMember<Viewer>,
    ApiPath(path): ApiPath<ClusterPath>,
) -> Result<Json<ClusterView>> {
    let cluster = clusters::get(&state, &member, path.id).await?;
    Ok(Json(with_last_run(&state, cluster, &member.org.name).await?))
}

/// Change the Kubernetes version, node size or node counts; queues the apply. Admins and owners.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/clusters/{id}", tag = "clusters", request_body = SpecInput,
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Cluster id")),
    responses(
        (status = 200, body = CreatedView),
        (status = 422, description = "`validation_failed`; `immutable` for fields that cannot change", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_cluster(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Admin>,
    ApiPath(path): ApiPath<ClusterPath>,
    ApiJson(body): ApiJson<SpecInput>,
) -> Result<Json<CreatedView>> {
    let (cluster, run) = clusters::update(&state, &actor, path.id, &body, ip).await?;
    let run = run_views(&state, vec![run], &actor.org.name)
        .await?
        .pop()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("run vanished")))?;
    Ok(Json(CreatedView { cluster: view(cluster, &actor.org.name, Some(run.clone()))?, run }))
}

/// Destroy the cluster: queues a destroy run. Admins and owners.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/clusters/{id}", tag = "clusters",
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Cluster id")),
    responses(
        (status = 202, description = "The destroy run is queued", body = RunView),
        (status = 409, description = "`cluster_destroyed` or `cluster_destroying`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_cluster(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Admin>,
    ApiPath(path): ApiPath<ClusterPath>,
) -> Result<(StatusCode, Json<RunView>)> {
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
    responses((status = 200, body = [RunView])))]
async fn list_cluster_runs(
    State(state): State<AppState>,
    member: OrgMember<Viewer>,
    ApiPath(path): ApiPath<ClusterPath>,
) -> Result<Json<Vec<RunView>>> {
    let cluster = clusters::get(&state, &member, path.id).await?;
    let runs = run_entity::Entity::find()
        .filter(run_entity::Column::ClusterId.eq(cluster.id))
        .order_by_desc(run_entity::Column::Id)
        .limit(100)
        .all(&state.db)
        .await?;
    Ok(Json(run_views(&state, runs, &member.org.name).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct RunRequest {
    /// `plan` (operators and up) or `apply` (admins and up).
    pub action: Action,
    /// Options of the simulated `local` target.
    pub simulate: Option<Simulate>,
}

/// Queue a plan or an apply of the cluster's current spec.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/clusters/{id}/runs", tag = "clusters", request_body = RunRequest,
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Cluster id")),
    responses(
        (status = 201, body = RunView),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn request_run(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    member: OrgMember<Viewer>,
    ApiPath(path): ApiPath<ClusterPath>,
    ApiJson(body): ApiJson<RunRequest>,
) -> Result<(StatusCode, Json<RunView>)> {
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
    responses((status = 200, body = StateInfo)))]
async fn get_state_info(
    State(state): State<AppState>,
    member: OrgMember<Viewer>,
    ApiPath(path): ApiPath<ClusterPath>,
) -> Result<Json<StateInfo>> {
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
