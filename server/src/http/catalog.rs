//! `/api/v1/catalog`: what can be deployed onto clusters.

use axum::Json;
use fleetplane_api as api;
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::ApiPath;
use crate::{
    auth::CurrentUser,
    catalog,
    error::{AppError, Problem, Result},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_catalog)).routes(routes!(get_catalog_entry))
}

/// Every service in the catalog (a short, fixed list: not paged), with its chart, versions,
/// values schema, defaults, secrets, outputs and whether it runs on the `local` target.
#[utoipa::path(get, path = "/api/v1/catalog", tag = "catalog", responses((status = 200, body = [api::CatalogEntry])))]
async fn list_catalog(_caller: CurrentUser) -> Json<Vec<api::CatalogEntry>> {
    Json(catalog::entries().iter().map(catalog::Entry::view).collect())
}

#[derive(Deserialize)]
struct ServicePath {
    service: String,
}

/// One service of the catalog.
#[utoipa::path(get, path = "/api/v1/catalog/{service}", tag = "catalog",
    params(("service" = String, Path, description = "The service's id", example = "airflow")),
    responses(
        (status = 200, body = api::CatalogEntry),
        (status = 404, description = "`service_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_catalog_entry(
    _caller: CurrentUser,
    ApiPath(path): ApiPath<ServicePath>,
) -> Result<Json<api::CatalogEntry>> {
    let entry = catalog::entry(&path.service)
        .ok_or_else(|| AppError::not_found("service_not_found", "No such service in the catalog."))?;
    Ok(Json(entry.view()))
}
