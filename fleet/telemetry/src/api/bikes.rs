//! Bikes and their certificates: register, list (with their latest state), get, decommission;
//! issue (from a CSR or with a generated key), list and revoke certificates; the CA and its CRL.

use std::time::{Duration, SystemTime};

use axum::{
    Json,
    extract::{
        FromRequest, Path, Query, Request,
        rejection::{JsonRejection, QueryRejection},
    },
    http::{StatusCode, header},
    response::IntoResponse,
};
use chrono::Utc;
use fleet_proto::DeviceId;
use fleetplane_common::problem::Problem;
use serde::{Deserialize, de::DeserializeOwned};
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    ApiError, AppState, Result,
    auth::Caller,
    model::{BikePage, BikeView, CertificateList, CertificateView, IssuedView, NewBike, NewCertificate, Revocation},
};
use crate::{
    pki::Reason,
    registry::{self, BikeFilter, DEFAULT_PAGE, MAX_PAGE, Request as IssueRequest, tokens::Scope},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register, list))
        .routes(routes!(get_bike, decommission))
        .routes(routes!(issue, certificates))
        .routes(routes!(revoke))
        .routes(routes!(ca_pem))
        .routes(routes!(crl_pem))
}

/// A JSON body whose rejections are problems: 415 without a JSON content type, 400
/// `malformed_json`, 422 `validation_failed` naming what serde could not read, 413 when too large.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::client(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the body as JSON, with `Content-Type: application/json`.",
            )),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(ApiError::bad_request(
                "malformed_json",
                format!("The request body is not valid JSON: {}", e.body_text()),
            )),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::invalid_field("body", "invalid", e.body_text())),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::client(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "The request body is larger than 64 KiB.",
            )),
            Err(e) => Err(ApiError::bad_request("body_unreadable", e.body_text())),
        }
    }
}

/// Query parameters whose rejection is a 400 `invalid_query` problem.
pub fn query<T>(query: std::result::Result<Query<T>, QueryRejection>) -> Result<T> {
    query.map(|Query(q)| q).map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
}

/// A device id from the path, or 404: no bike can have an id that is not one.
pub fn device(text: &str) -> Result<DeviceId> {
    DeviceId::parse(text).map_err(|_| ApiError::not_found("bike_not_found", format!("no bike `{text}` is registered")))
}

/// Registers a bike. It needs a certificate (POST …/certificates) before it can connect.
#[utoipa::path(post, path = "/api/v1/bikes", tag = "bikes", request_body = NewBike, responses(
    (status = 201, body = BikeView),
    (status = 409, description = "`serial_taken`", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
))]
async fn register(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    Body(new): Body<NewBike>,
) -> Result<impl IntoResponse> {
    caller.require(Scope::Write)?;
    let new = registry::NewBike {
        serial: new.serial,
        model: new.model,
        firmware_version: new.firmware_version,
        display_name: new.display_name,
    };
    let bike = state.registry.register(&caller.actor(), &new, Utc::now()).await?;
    state.standings.refresh(&state.registry).await?;
    Ok((StatusCode::CREATED, Json(super::model::bike_view(bike, None, false))))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BikeQuery {
    /// Only bikes seen (`true`) or not seen (`false`) within the online window.
    online: Option<bool>,
    model: Option<String>,
    firmware_version: Option<String>,
    /// Include decommissioned bikes.
    decommissioned: Option<bool>,
    /// At most this many (1 to 500, default 50).
    limit: Option<u64>,
    /// The `next` of the previous page.
    cursor: Option<String>,
}

/// Bikes in device-id order, with their latest state, filtered by online, model and firmware.
#[utoipa::path(get, path = "/api/v1/bikes", tag = "bikes", params(BikeQuery), responses(
    (status = 200, body = BikePage),
    (status = 400, description = "`invalid_query`", body = Problem, content_type = "application/problem+json"),
))]
async fn list(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    params: std::result::Result<Query<BikeQuery>, QueryRejection>,
) -> Result<Json<BikePage>> {
    caller.require(Scope::Read)?;
    let params = query(params)?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", format!("`limit` must be between 1 and {MAX_PAGE}")));
    }
    let filter = BikeFilter {
        model: params.model,
        firmware_version: params.firmware_version,
        decommissioned: params.decommissioned.unwrap_or(false),
    };
    let now = Utc::now();
    let window = state.settings.online_window;
    // Online is known in memory, not in the registry: read pages until this one is full.
    let mut items = Vec::new();
    let mut cursor = params.cursor;
    loop {
        let page = state.registry.bikes(&filter, cursor.as_deref(), MAX_PAGE).await?;
        let mut examined_all = true;
        for bike in page.items {
            let online = state.latest.online(&bike.device_id, now, window);
            let last = bike.device_id.to_string();
            if params.online.is_none_or(|wanted| wanted == online) {
                let latest = state.latest.get(&bike.device_id);
                items.push(super::model::bike_view(bike, latest, online));
            }
            if items.len() as u64 == limit {
                cursor = Some(last);
                examined_all = false;
                break;
            }
        }
        if !examined_all {
            // Full: another page follows if anything comes after the last bike listed.
            let rest = state.registry.bikes(&filter, cursor.as_deref(), 1).await?;
            let next = if rest.items.is_empty() { None } else { cursor };
            return Ok(Json(BikePage { items, next }));
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(Json(BikePage { items, next: None })),
        }
    }
}

/// A bike, with its latest state.
#[utoipa::path(get, path = "/api/v1/bikes/{device_id}", tag = "bikes", responses(
    (status = 200, body = BikeView),
    (status = 404, description = "`bike_not_found`", body = Problem, content_type = "application/problem+json"),
))]
async fn get_bike(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    Path(device_id): Path<String>,
) -> Result<Json<BikeView>> {
    caller.require(Scope::Read)?;
    let device = device(&device_id)?;
    let bike = state.bike(&device).await?;
    let online = state.latest.online(&device, Utc::now(), state.settings.online_window);
    Ok(Json(super::model::bike_view(bike, state.latest.get(&device), online)))
}

/// Takes a bike out of service: it is listed no more, its certificates are revoked
/// (`cessation_of_operation`) and its packets are quarantined as `revoked` from now on.
#[utoipa::path(delete, path = "/api/v1/bikes/{device_id}", tag = "bikes", responses(
    (status = 200, body = BikeView),
    (status = 404, description = "`bike_not_found`", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "`bike_decommissioned`: it already is", body = Problem, content_type = "application/problem+json"),
))]
async fn decommission(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    Path(device_id): Path<String>,
) -> Result<Json<BikeView>> {
    caller.require(Scope::Admin)?;
    let device = device(&device_id)?;
    let now = SystemTime::now();
    let (bike, crl) = state.registry.decommission(&caller.actor(), &device, now).await?;
    state.standings.set(device.clone(), registry::Standing::Decommissioned);
    if let Some(crl) = crl {
        publish_crl(&state, &crl, now);
    }
    Ok(Json(super::model::bike_view(bike, state.latest.get(&device), false)))
}

fn publish_crl(state: &AppState, crl: &registry::CrlInput, now: SystemTime) {
    // The revocation is committed and the ingest refuses the bike already; a CRL that could
    // not be written is logged, and the upkeep signs and writes it again.
    if let Err(e) = state.crl.publish(&state.authority, crl, now) {
        tracing::error!(error = format!("{e:#}"), "publishing the CRL failed; the upkeep will try again");
    }
}

/// Issues a bike a certificate: for the key of a CSR, or with a key generated here and
/// returned once in `bundle`.
#[utoipa::path(post, path = "/api/v1/bikes/{device_id}/certificates", tag = "certificates", request_body = NewCertificate, responses(
    (status = 201, body = IssuedView),
    (status = 404, description = "`bike_not_found`", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "`bike_decommissioned`", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`: `csr_pem` (`invalid_csr`, `csr_too_large`) or `validity_days`", body = Problem, content_type = "application/problem+json"),
))]
async fn issue(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    Path(device_id): Path<String>,
    Body(request): Body<NewCertificate>,
) -> Result<impl IntoResponse> {
    caller.require(Scope::Write)?;
    let device = device(&device_id)?;
    let validity = match request.validity_days {
        None => state.settings.certificate_validity,
        Some(days) if (1..=3650).contains(&days) => Duration::from_secs(u64::from(days) * 24 * 3600),
        Some(_) => {
            return Err(ApiError::invalid_field("validity_days", "invalid_validity", "must be between 1 and 3650"));
        }
    };
    let how = match request.csr_pem.as_deref() {
        Some(csr) => IssueRequest::Csr(csr),
        None => IssueRequest::Generate,
    };
    let issued =
        state.registry.issue(&caller.actor(), &state.authority, &device, how, validity, SystemTime::now()).await?;
    state.standings.refresh(&state.registry).await?;
    Ok((StatusCode::CREATED, Json(IssuedView::from(issued))))
}

/// A bike's certificates, newest first, revoked ones included.
#[utoipa::path(get, path = "/api/v1/bikes/{device_id}/certificates", tag = "certificates", responses(
    (status = 200, body = CertificateList),
    (status = 404, description = "`bike_not_found`", body = Problem, content_type = "application/problem+json"),
))]
async fn certificates(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    Path(device_id): Path<String>,
) -> Result<Json<CertificateList>> {
    caller.require(Scope::Read)?;
    let device = device(&device_id)?;
    state.bike(&device).await?;
    let items = state.registry.certificates(&device).await?.into_iter().map(CertificateView::from).collect();
    Ok(Json(CertificateList { items }))
}

/// Revokes a certificate: the CRL is signed again and written for the broker (which is told to
/// reload it), and the bike's packets are quarantined as `revoked` from now on, even on a
/// connection opened before.
#[utoipa::path(post, path = "/api/v1/certificates/{serial}/revoke", tag = "certificates", request_body = Revocation, responses(
    (status = 200, body = CertificateView),
    (status = 404, description = "`certificate_not_found`", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "`already_revoked`", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`: `reason`", body = Problem, content_type = "application/problem+json"),
))]
async fn revoke(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    Path(serial): Path<String>,
    Body(revocation): Body<Revocation>,
) -> Result<Json<CertificateView>> {
    caller.require(Scope::Admin)?;
    let Some(reason) = Reason::parse(&revocation.reason) else {
        let all: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        return Err(ApiError::invalid_field("reason", "invalid_reason", format!("must be one of {}", all.join(", "))));
    };
    if serial.is_empty() || serial.len() > 64 || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::not_found(
            "certificate_not_found",
            format!("no certificate `{serial}` was issued by this CA"),
        ));
    }
    let now = SystemTime::now();
    let (certificate, crl) = state.registry.revoke(&caller.actor(), &serial, reason, now).await?;
    // The ingest refuses the bike from this moment, before the periodic refresh.
    state.standings.refresh(&state.registry).await?;
    publish_crl(&state, &crl, now);
    Ok(Json(certificate.into()))
}

fn pem(text: String) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/x-pem-file")], text)
}

/// The fleet CA: the issuing CA then the root, in PEM. Brokers and bikes trust it.
#[utoipa::path(get, path = "/api/v1/ca.pem", tag = "certificates", responses(
    (status = 200, description = "PEM", body = String, content_type = "application/x-pem-file"),
))]
async fn ca_pem(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse> {
    caller.require(Scope::Read)?;
    Ok(pem(state.authority.chain_pem()))
}

/// The current CRL, signed now by the issuing CA, in PEM.
#[utoipa::path(get, path = "/api/v1/crl.pem", tag = "certificates", responses(
    (status = 200, description = "PEM", body = String, content_type = "application/x-pem-file"),
))]
async fn crl_pem(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse> {
    caller.require(Scope::Read)?;
    let now = SystemTime::now();
    let input = state.registry.crl_input(now).await?;
    let crl = state.authority.crl(&input.revoked, input.number, now).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(pem(crl))
}
