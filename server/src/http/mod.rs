//! The HTTP surface: the JSON API under `/api/v1`, operations endpoints, the OpenAPI document
//! and the web UI, assembled into one router with the shared middleware.

mod auth;
mod catalog;
mod cloud_accounts;
mod clusters;
mod deployments;
pub mod dev;
pub mod extract;
mod fleet;
mod google;
pub(crate) mod headers;
mod health;
mod live;
mod me;
mod orgs;
mod runs;
pub(crate) mod serve;
pub(crate) use fleetplane_common::http::sse;
mod state;
pub mod timeouts;

use std::sync::Arc;

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request},
    http::{StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
    routing::{any, get},
};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        Content, OpenApi as OpenApiDoc, Ref, RefOr, ResponseBuilder,
        link::LinkBuilder,
        path::Operation,
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
    },
};
use utoipa_axum::router::OpenApiRouter;

use crate::{auth::session::SESSION_COOKIE, error::status_problem, metrics, state::AppState};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Fleetplane API",
        description = "Self-hosted multi-cloud control plane. Errors are `application/problem+json` with a stable `code`. \
            Browser sessions use the `fp_session` cookie and must send the `fp_csrf` cookie's value in `X-CSRF-Token` \
            on unsafe methods; scripts use `Authorization: Bearer <personal API token>`.",
    ),
    modifiers(&Conventions),
    components(schemas(crate::error::Problem, crate::error::FieldError)),
    tags(
        (name = "auth", description = "Sign-up, email verification, sign-in and sign-out"),
        (name = "account", description = "The signed-in account: username, password, API tokens"),
        (name = "organizations", description = "Organizations, members and roles, audit log"),
        (name = "cloud accounts", description = "Linked AWS, Azure and GCP accounts, verified with the clouds"),
        (name = "clusters", description = "Kubernetes clusters, provisioned by runs"),
        (name = "runs", description = "Terraform runs: the queue, approval, cancel, retry, logs"),
        (name = "deployments", description = "Catalog services on clusters: deploy, upgrade, rollback, uninstall, as runs"),
        (name = "fleet", description = "A fleet-telemetry deployment's own API (bikes, certificates, telemetry, quarantine), through Fleetplane under its roles"),
        (name = "catalog", description = "The services that can be deployed onto clusters: charts, versions, values schemas"),
        (name = "live", description = "Live updates (Server-Sent Events) and notifications"),
        (name = "terraform state", description = "Terraform's http state backend, for runs (LOCK and UNLOCK as well as GET and POST)"),
        (name = "operations", description = "Health, readiness and metrics"),
        (name = "development", description = "Helpers for running without SMTP"),
    )
)]
struct ApiDoc;

/// Adds what holds for every operation: authentication schemes, and problem+json errors.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme("session", SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(SESSION_COOKIE))));
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "run_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some("A run's token as the password"))
                    .build(),
            ),
        );
        components.responses.insert(
            "Problem".to_owned(),
            RefOr::T(
                ResponseBuilder::new()
                    .description("An error, as RFC 9457 problem details with a stable `code`")
                    .content("application/problem+json", Content::new(Some(Ref::from_schema_name("Problem"))))
                    .build(),
            ),
        );
        openapi.security = Some(vec![
            SecurityRequirement::new("session", Vec::<String>::new()),
            SecurityRequirement::new("token", Vec::<String>::new()),
        ]);
    }
}

/// Every operation's undocumented statuses are problem+json too.
fn add_default_problem(openapi: &mut OpenApiDoc) {
    for operation in operations_mut(openapi) {
        operation
            .responses
            .responses
            .entry("default".to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name("Problem")));
    }
}

/// Every operation of the document, whatever its method.
fn operations_mut(openapi: &mut OpenApiDoc) -> impl Iterator<Item = &mut Operation> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().flatten()
    })
}

/// Where the id a creating operation's 201 returns is used next: `(operation, target,
/// parameters)`, each parameter a runtime expression (`$response.body#/id`, `$request.path.org`). Clients and
/// generated tests follow these from a creating operation to everything that takes its id.
/// A link's parameters: each name with the runtime expression that fills it.
type LinkParameters = &'static [(&'static str, &'static str)];

const LINKS: &[(&str, &str, LinkParameters)] = {
    const ORG: (&str, &str) = ("org", "$request.path.org");
    const NEW_ORG: LinkParameters = &[("org", "$response.body#/name")];
    const INVITATION: LinkParameters = &[ORG, ("id", "$response.body#/id")];
    const TOKEN: LinkParameters = &[("id", "$response.body#/id")];
    const ACCOUNT: LinkParameters = &[ORG, ("id", "$response.body#/id")];
    const CLUSTER: LinkParameters = &[ORG, ("id", "$response.body#/cluster/id")];
    const CLUSTER_RUN: LinkParameters = &[("id", "$response.body#/run/id")];
    const RUN: LinkParameters = &[("id", "$response.body#/id")];
    const DEPLOYMENT: LinkParameters = &[ORG, ("id", "$response.body#/deployment/id")];
    &[
        ("create_org", "get_org", NEW_ORG),
        ("create_org", "list_members", NEW_ORG),
        ("create_org", "list_invitations", NEW_ORG),
        ("create_org", "invite", NEW_ORG),
        ("create_org", "list_audit", NEW_ORG),
        ("create_org", "list_cloud_accounts", NEW_ORG),
        ("create_org", "link_cloud_account", NEW_ORG),
        ("create_org", "list_clusters", NEW_ORG),
        ("create_org", "create_cluster", NEW_ORG),
        ("invite", "revoke_invitation", INVITATION),
        ("create_token", "revoke_token", TOKEN),
        ("link_cloud_account", "get_cloud_account", ACCOUNT),
        ("link_cloud_account", "update_cloud_account", ACCOUNT),
        ("link_cloud_account", "delete_cloud_account", ACCOUNT),
        ("link_cloud_account", "rotate_credentials", ACCOUNT),
        ("link_cloud_account", "verify_cloud_account", ACCOUNT),
        ("link_cloud_account", "list_buckets", ACCOUNT),
        ("create_cluster", "get_cluster", CLUSTER),
        ("create_cluster", "update_cluster", CLUSTER),
        ("create_cluster", "delete_cluster", CLUSTER),
        ("create_cluster", "list_cluster_runs", CLUSTER),
        ("create_cluster", "request_run", CLUSTER),
        ("create_cluster", "get_state_info", CLUSTER),
        ("create_cluster", "get_run", CLUSTER_RUN),
        ("create_cluster", "cancel_run", CLUSTER_RUN),
        ("create_cluster", "run_logs", CLUSTER_RUN),
        ("request_run", "get_run", RUN),
        ("request_run", "approve_run", RUN),
        ("request_run", "cancel_run", RUN),
        ("request_run", "run_logs", RUN),
        ("retry_run", "get_run", RUN),
        ("retry_run", "cancel_run", RUN),
        ("retry_run", "run_logs", RUN),
        ("create_deployment", "get_deployment", DEPLOYMENT),
        ("create_deployment", "upgrade_deployment", DEPLOYMENT),
        ("create_deployment", "rollback_deployment", DEPLOYMENT),
        ("create_deployment", "uninstall_deployment", DEPLOYMENT),
        ("create_deployment", "get_run", CLUSTER_RUN),
        ("create_deployment", "cancel_run", CLUSTER_RUN),
        ("create_deployment", "run_logs", CLUSTER_RUN),
    ]
};

/// Adds [`LINKS`] to the 201 responses of the operations that create something.
fn add_links(openapi: &mut OpenApiDoc) {
    for operation in operations_mut(openapi) {
        let Some(id) = operation.operation_id.clone() else { continue };
        let Some(RefOr::T(created)) = operation.responses.responses.get_mut("201") else { continue };
        for (_, target, parameters) in LINKS.iter().filter(|(from, ..)| *from == id) {
            let link = parameters
                .iter()
                .fold(LinkBuilder::new().operation_id(*target), |link, (name, value)| link.parameter(*name, *value));
            created.links.insert((*target).to_owned(), RefOr::T(link.build()));
        }
    }
}

/// The API routes and their OpenAPI description, built together so neither can omit a route.
fn api() -> (Router<AppState>, OpenApiDoc) {
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::router())
        .merge(google::router())
        .merge(me::router())
        .merge(orgs::router())
        .merge(cloud_accounts::router())
        .merge(clusters::router())
        .merge(deployments::router())
        .merge(fleet::router())
        .merge(runs::router())
        .merge(catalog::router())
        .merge(live::router())
        .merge(state::router())
        .merge(dev::router())
        .merge(health::router())
        .merge(headers::router())
        .split_for_parts();
    add_default_problem(&mut openapi);
    add_links(&mut openapi);
    (router, openapi)
}

/// The OpenAPI document served at `/api/openapi.json`.
pub fn openapi() -> OpenApiDoc {
    api().1
}

pub fn router(state: AppState) -> Router {
    let (api, openapi) = api();
    let openapi = Arc::new(openapi.to_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")));
    let api = api
        .route(
            "/api/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], openapi.as_str().to_owned()) }),
        )
        // Unknown API paths get a problem, not the UI's 404 page.
        .route("/api/{*rest}", any(api_not_found))
        .method_not_allowed_fallback(method_not_allowed);

    api.merge(crate::ui::routes())
        .layer(middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
                    tracing::info_span!("request", method = %request.method(), route, path = %request.uri().path())
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
        )
        .layer(DefaultBodyLimit::max(extract::MAX_BODY))
        .layer(middleware::from_fn_with_state(state.clone(), headers::secure))
        .with_state(state)
}

async fn api_not_found() -> Response {
    status_problem(StatusCode::NOT_FOUND, "not_found", "Nothing exists at this address.")
}

async fn method_not_allowed() -> impl IntoResponse {
    status_problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "This address does not accept this method.")
}
