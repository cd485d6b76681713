//! `/api/v1/deployments/{id}/fleet/...`: a fleet-telemetry deployment's own API, through
//! Fleetplane, under Fleetplane's organizations and roles.
//!
//! Fleetplane made the deployment's admin token when the deployment was created and holds it
//! sealed; the service knows only its hash (`FLEET_ADMIN_TOKEN_SHA256`). A caller never sees
//! the token: each request is checked against the caller's role in the deployment's
//! organization, then sent on with the token. Viewers read (bikes, telemetry, the live stream,
//! certificates, quarantine, the CA and CRL); operators also register bikes and issue
//! certificates; admins also revoke certificates and decommission bikes.
//!
//! Only the routes below are forwarded, each to the fleet API's route of the same shape (its
//! own OpenAPI document describes the bodies). The fleet API's answers, its problem+json errors
//! included, come back as they are, except that a refusal of Fleetplane's own token (401 or
//! 403: the token was revoked in the service) is `502 fleet_token_refused`, so that it is not
//! taken for the caller's own session ending.

use std::{sync::LazyLock, time::Duration};

use axum::{
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use sea_orm::EntityTrait;
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::ApiPath;
use crate::{
    auth::CurrentUser,
    deployments::status,
    domain::Role,
    entity::{deployments, memberships},
    error::{AppError, Problem, Result},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_bikes, register_bike))
        .routes(routes!(get_bike, decommission_bike))
        .routes(routes!(bike_certificates, issue_certificate))
        .routes(routes!(bike_telemetry))
        .routes(routes!(bike_live))
        .routes(routes!(revoke_certificate))
        .routes(routes!(quarantine))
        .routes(routes!(ca_pem))
        .routes(routes!(crl_pem))
        .routes(routes!(broker))
}

/// How long a forwarded request may take, but for the live stream, which has no end.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Response headers passed on from the fleet API.
const PASSED_ON: [header::HeaderName; 4] =
    [header::CONTENT_TYPE, header::CONTENT_DISPOSITION, header::CACHE_CONTROL, header::RETRY_AFTER];

static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap_or_default()
});

#[derive(Deserialize)]
struct FleetPath {
    id: Uuid,
}

#[derive(Deserialize)]
struct BikePath {
    id: Uuid,
    device_id: String,
}

#[derive(Deserialize)]
struct CertificatePath {
    id: Uuid,
    serial: String,
}

/// A request to forward: who asks, with which role at least, to which fleet route.
struct Forward<'a> {
    state: &'a AppState,
    caller: &'a CurrentUser,
    deployment: Uuid,
    needs: Role,
    method: Method,
    /// The fleet API's path under `/api/v1/`, as segments (each escaped when the URL is made).
    segments: Vec<&'a str>,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    body: Option<Bytes>,
    /// The live stream: no overall timeout, and its body passed on as it comes.
    stream: bool,
}

impl Forward<'_> {
    async fn send(self) -> Result<Response> {
        let (deployment, token) = fleet_of(self.state, self.caller, self.deployment, self.needs).await?;
        // A live stream counts against the caller's streams like Fleetplane's own, and ends
        // with them (the server stopping, the caller's credential revoked).
        let slot = if self.stream { Some(super::live::stream_slot(self.state, self.caller)?) } else { None };
        let base = deployment.outputs.as_ref().and_then(|o| o.get("url")).and_then(|u| u.as_str()).unwrap_or("");
        let mut url = reqwest::Url::parse(base)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && !url.cannot_be_a_base())
            .ok_or_else(|| {
                AppError::client(
                    StatusCode::BAD_GATEWAY,
                    "fleet_unreachable",
                    "The deployment reported no address for its fleet API; redeploy it.",
                )
            })?;
        url.set_query(self.query);
        url.path_segments_mut()
            .map_err(|()| AppError::Internal(anyhow::anyhow!("fleet URL cannot be a base")))?
            .pop_if_empty()
            .extend(["api", "v1"])
            .extend(&self.segments);

        let mut request = CLIENT.request(self.method, url).bearer_auth(token);
        for name in [header::ACCEPT, header::CONTENT_TYPE, header::HeaderName::from_static("last-event-id")] {
            if let Some(value) = self.headers.get(&name) {
                request = request.header(name, value);
            }
        }
        if !self.stream {
            request = request.timeout(REQUEST_TIMEOUT);
        }
        if let Some(body) = self.body {
            request = request.body(body);
        }
        let answer = request.send().await.map_err(|e| unreachable(base, &e))?;
        let status = answer.status();
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Err(AppError::client(
                StatusCode::BAD_GATEWAY,
                "fleet_token_refused",
                "The fleet API refused Fleetplane's token for it: it was revoked in the service (`fleet-telemetry \
                 admin revoke-token`), which cuts Fleetplane off this fleet.",
            ));
        }
        let mut headers = HeaderMap::new();
        for name in PASSED_ON {
            if let Some(value) = answer.headers().get(&name) {
                headers.insert(name, value.clone());
            }
        }
        if let Some(slot) = slot.filter(|_| status.is_success()) {
            use futures::StreamExt;
            // Proxies between here and the browser must not hold the stream back.
            headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
            let ended = slot.ended().clone().cancelled_owned();
            // The slot is held for as long as the stream is.
            let body = answer.bytes_stream().take_until(ended).map(move |chunk| {
                let _held = &slot;
                chunk
            });
            return Ok((status, headers, Body::from_stream(body)).into_response());
        }
        let body = answer.bytes().await.map_err(|e| unreachable(base, &e))?;
        Ok((status, headers, body).into_response())
    }
}

fn unreachable(base: &str, error: &reqwest::Error) -> AppError {
    if error.is_timeout() {
        return AppError::client(
            StatusCode::GATEWAY_TIMEOUT,
            "fleet_timeout",
            format!("The fleet API at {base} did not answer within {} seconds.", REQUEST_TIMEOUT.as_secs()),
        );
    }
    AppError::client(
        StatusCode::BAD_GATEWAY,
        "fleet_unreachable",
        format!("The fleet API at {base} did not answer: {}.", error_chain(error)),
    )
}

/// An error with its causes, which is where reqwest says what went wrong.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The deployment, if the caller may reach its fleet with role `needs`, and the token for it.
/// A deployment of an organization the caller is not in does not exist, as far as the caller
/// can tell.
async fn fleet_of(
    state: &AppState,
    caller: &CurrentUser,
    id: Uuid,
    needs: Role,
) -> Result<(deployments::Model, String)> {
    let not_found = || AppError::not_found("deployment_not_found", "No such deployment.");
    let deployment = deployments::Entity::find_by_id(id).one(&state.db).await?.ok_or_else(not_found)?;
    let membership = memberships::Entity::find_by_id((deployment.org_id, caller.id()))
        .one(&state.db)
        .await?
        .ok_or_else(not_found)?;
    let role = Role::parse(&membership.role).unwrap_or(Role::Viewer);
    if role < needs {
        return Err(AppError::forbidden(
            "forbidden",
            format!("This needs the {needs} role or higher in the deployment's organization; yours is {role}."),
        ));
    }
    let Some(token) = crate::deployments::service_token(state, &deployment)? else {
        return Err(AppError::conflict(
            "not_a_fleet",
            format!("This deployment is of {}, which has no fleet API.", deployment.service),
        ));
    };
    if !matches!(deployment.status.as_str(), status::HEALTHY | status::DEGRADED) {
        return Err(AppError::conflict(
            "fleet_not_running",
            format!("The deployment is {}; its fleet API answers once it is healthy.", deployment.status),
        ));
    }
    Ok((deployment, token))
}

/// Documented answers of every forwarded route, besides the fleet API's own.
macro_rules! fleet_route {
    ($method:ident, $path:literal, $summary:literal, $params:tt, [$($extra:tt)*] $status:literal $ok:ty,
     $handler:ident ($($arg:tt)*) $body:block) => {
        #[doc = $summary]
        #[utoipa::path($method, path = $path, tag = "fleet", params $params, $($extra)*
            responses(
                (status = $status, description = "The fleet API's answer", body = $ok),
                (status = 403, description = "`forbidden`: the caller's role is too low", body = Problem, content_type = "application/problem+json"),
                (status = 404, description = "`deployment_not_found`; or the fleet API's own `not_found` codes", body = Problem, content_type = "application/problem+json"),
                (status = 409, description = "`not_a_fleet`: not a fleet-telemetry deployment; `fleet_not_running`: not healthy", body = Problem, content_type = "application/problem+json"),
                (status = 502, description = "`fleet_unreachable`, `fleet_token_refused`", body = Problem, content_type = "application/problem+json"),
                (status = 504, description = "`fleet_timeout`", body = Problem, content_type = "application/problem+json"),
            ))]
        async fn $handler($($arg)*) -> Result<Response> $body
    };
}

const ID: &str = "Deployment id";

fleet_route!(get, "/api/v1/deployments/{id}/fleet/bikes",
"The fleet's bikes, paged, with their latest state (`?online=`, `?model=`, `?firmware_version=`, `?decommissioned=`, `?cursor=`, `?limit=`). Viewers and up.",
(("id" = Uuid, Path, description = ID)),
[] 200 fleet_api::BikePage,
list_bikes(State(state): State<AppState>, caller: CurrentUser, ApiPath(p): ApiPath<FleetPath>, uri: Uri, headers: HeaderMap) {
    Forward { state: &state, caller: &caller, deployment: p.id, needs: Role::Viewer, method: Method::GET,
        segments: vec!["bikes"], query: uri.query(), headers: &headers, body: None, stream: false }.send().await
});

fleet_route!(post, "/api/v1/deployments/{id}/fleet/bikes",
"Register a bike (`serial`, `model`, `firmware_version`, `name`). Operators and up.",
(("id" = Uuid, Path, description = ID)),
[request_body = fleet_api::NewBike,] 201 fleet_api::BikeView,
register_bike(State(state): State<AppState>, caller: CurrentUser, ApiPath(p): ApiPath<FleetPath>, headers: HeaderMap, body: Bytes) {
    Forward { state: &state, caller: &caller, deployment: p.id, needs: Role::Operator, method: Method::POST,
        segments: vec!["bikes"], query: None, headers: &headers, body: Some(body), stream: false }.send().await
});

fleet_route!(get, "/api/v1/deployments/{id}/fleet/bikes/{device_id}",
"A bike with its latest state. Viewers and up.",
(("id" = Uuid, Path, description = ID), ("device_id" = String, Path, description = "The bike's device id")),
[] 200 fleet_api::BikeView,
get_bike(State(state): State<AppState>, caller: CurrentUser, ApiPath(p): ApiPath<BikePath>, headers: HeaderMap) {
    Forward { state: &state, caller: &caller, deployment: p.id, needs: Role::Viewer, method: Method::GET,
        segments: vec!["bikes", &p.device_id], query: None, headers: &headers, body: None, stream: false }.send().await
});

fleet_route!(delete, "/api/v1/deployments/{id}/fleet/bikes/{device_id}",
"Decommission a bike: its certificates are revoked. Admins and owners.",
(("id" = Uuid, Path, description = ID), ("device_id" = String, Path, description = "The bike's device id")),
[] 200 fleet_api::BikeView,
decommission_bike(State(state): State<AppState>, caller: CurrentUser, ApiPath(p): ApiPath<BikePath>, headers: HeaderMap) {
    Forward { state: &state, caller: &caller, deployment: p.id, needs: Role::Admin, method: Method::DELETE,
        segments: vec!["bikes", &p.device_id], query: None, headers: &headers, body: None, stream: false }.send().await
});

fleet_route!(get, "/api/v1/deployments/{id}/fleet/bikes/{device_id}/certificates",
"A bike's certificates. Viewers and up.",
(("id" = Uuid, Path, description = ID), ("device_id" = String, Path, description = "The bike's device id")),
[] 200 fleet_api::CertificateList,
bike_certificates(State(state): State<AppState>, caller: CurrentUser, ApiPath(p): ApiPath<BikePath>, headers: HeaderMap) {
    Forward { state: &state, caller: &caller, deployment: p.id, needs: Role::Viewer, method: Method::GET,
        segments: vec!["bikes", &p.device_id, "certificates"], query: None, headers: &headers, body: None, stream: false }.send().await
});

fleet_route!(post, "/api/v1/deployments/{id}/fleet/bikes/{device_id}/certificates",
"Issue a certificate for a bike, from a CSR or generated (its key returned once, as a bundle). Operators and up.",
(("id" = Uuid, Path, description = ID), ("device_id" = String, Path, description = "The bike's device id")),
[request_body = fleet_api::NewCertificate,] 201 fleet_api::IssuedView,
issue_certificate(State(state): State<AppState>, caller: CurrentUser, ApiPath(p): ApiPath<BikePath>, headers: HeaderMap, body: Bytes) {
    Forward { state: &state, caller: &caller, deployment: p.id, needs: Role::Operator, method: Method::POST,
        segments: vec!["bikes", &p.device_id, "certificates"], query: None, headers: &headers, body: Some(body), stream: false }.send().await
});

fleet_route!(get, "/api/v1/deployments/{id}/fleet/bikes/{device_id}/telemetry",
"A bike's telemetry history (`?from=`, `?to=`, `?every=`, `?cursor=`, `?limit=`), downsampled when `every` is given. Viewers and up.",
(("id" = Uuid, Path, description = ID), ("device_id" = String, Path, description = "The bike's device id")),
[] 200 fleet_api::TelemetryPage,
bike_telemetry(State(state): State<AppState>, caller: CurrentUser, ApiPath(p): ApiPath<BikePath>, uri: Uri, headers: HeaderMap) {
    Forward { state: &state, caller: &caller, deployment: p.id, needs: Role::Viewer, method: Method::GET,
        segments: vec!["bikes", &p.device_id, "telemetry"], query: uri.query(), headers: &headers, body: None, stream: false }.send().await
});

fleet_route!(get, "/api/v1/deployments/{id}/fleet/bikes/{device_id}/live",
"A bike's packets as they arrive: Server-Sent Events, resumed with `Last-Event-ID`. Viewers and up.",
(("id" = Uuid, Path, description = ID), ("device_id" = String, Path, description = "The bike's device id")),
[] 200 String,
bike_live(State(state): State<AppState>, caller: CurrentUser, ApiPath(p): ApiPath<BikePath>, uri: Uri, headers: HeaderMap) {
    Forward { state: &state, caller: &caller, deployment: p.id, needs: Role::Viewer, method: Method::GET,
        segments: vec!["bikes", &p.device_id, "live"], query: uri.query(), headers: &headers, body: None, stream: true }.send().await
});

fleet_route!(post, "/api/v1/deployments/{id}/fleet/certificates/{serial}/revoke",
"Revoke a certificate (`reason`): the CRL is regenerated and the bike's packets quarantined from now on. Admins and owners.",
(("id" = Uuid, Path, description = ID), ("serial" = String, Path, description = "The certificate's serial, in hex")),
[request_body = fleet_api::Revocation,] 200 fleet_api::CertificateView,
revoke_certificate(State(state): State<AppState>, caller: CurrentUser, ApiPath(p): ApiPath<CertificatePath>, headers: HeaderMap, body: Bytes) {
    Forward { state: &state, caller: &caller, deployment: p.id, needs: Role::Admin, method: Method::POST,
        segments: vec!["certificates", &p.serial, "revoke"], query: None, headers: &headers, body: Some(body), stream: false }.send().await
});

fleet_route!(get, "/api/v1/deployments/{id}/fleet/quarantine",
"Quarantined packets, newest first, with their reasons (`?reason=`, `?device_id=`, `?cursor=`, `?limit=`). Viewers and up.",
(("id" = Uuid, Path, description = ID)),
[] 200 fleet_api::QuarantinePage,
quarantine(State(state): State<AppState>, caller: CurrentUser, ApiPath(p): ApiPath<FleetPath>, uri: Uri, headers: HeaderMap) {
    Forward { state: &state, caller: &caller, deployment: p.id, needs: Role::Viewer, method: Method::GET,
        segments: vec!["quarantine"], query: uri.query(), headers: &headers, body: None, stream: false }.send().await
});

fleet_route!(get, "/api/v1/deployments/{id}/fleet/ca.pem",
"The fleet CA's certificate chain (PEM), which bikes check the broker against. Viewers and up.",
(("id" = Uuid, Path, description = ID)),
[] 200 String,
ca_pem(State(state): State<AppState>, caller: CurrentUser, ApiPath(p): ApiPath<FleetPath>, headers: HeaderMap) {
    Forward { state: &state, caller: &caller, deployment: p.id, needs: Role::Viewer, method: Method::GET,
        segments: vec!["ca.pem"], query: None, headers: &headers, body: None, stream: false }.send().await
});

fleet_route!(get, "/api/v1/deployments/{id}/fleet/crl.pem",
"The fleet CA's certificate revocation list (PEM). Viewers and up.",
(("id" = Uuid, Path, description = ID)),
[] 200 String,
crl_pem(State(state): State<AppState>, caller: CurrentUser, ApiPath(p): ApiPath<FleetPath>, headers: HeaderMap) {
    Forward { state: &state, caller: &caller, deployment: p.id, needs: Role::Viewer, method: Method::GET,
        segments: vec!["crl.pem"], query: None, headers: &headers, body: None, stream: false }.send().await
});

fleet_route!(get, "/api/v1/deployments/{id}/fleet/broker",
"Where bikes connect: the broker's URL and how. Viewers and up.",
(("id" = Uuid, Path, description = ID)),
[] 200 fleet_api::BrokerView,
broker(State(state): State<AppState>, caller: CurrentUser, ApiPath(p): ApiPath<FleetPath>, headers: HeaderMap) {
    Forward { state: &state, caller: &caller, deployment: p.id, needs: Role::Viewer, method: Method::GET,
        segments: vec!["broker"], query: None, headers: &headers, body: None, stream: false }.send().await
});
