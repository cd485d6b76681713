//! The few calls of the fleet-telemetry API a bike's life needs: where the broker is, the
//! CA that vouches for it, registering a bike, getting it a certificate, revoking one, and
//! how many of a bike's packets are stored.
//!
//! Every call carries `Authorization: Bearer <token>`. A refusal comes back as an
//! `application/problem+json` body whose `code` and `detail` the errors here show.

use std::{fmt, time::Duration};

use fleet_proto::DeviceId;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::config::Token;

/// Why a call did not give what it should.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach the fleet API at {url} (is fleet-telemetry running there?)")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{call} was refused: {status} {problem}")]
    Refused { call: String, status: StatusCode, problem: Problem },
    #[error("{call} answered {status} with a body that is not the API's: {detail}")]
    Unexpected { call: String, status: StatusCode, detail: String },
}

impl ApiError {
    /// The problem's code, when the API refused the call.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Refused { problem, .. } => Some(&problem.code),
            _ => None,
        }
    }
}

/// An `application/problem+json` body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
    pub errors: Vec<FieldError>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct FieldError {
    pub field: String,
    pub code: String,
    pub message: String,
}

impl Problem {
    /// The problem in a body of a refusal with `status`; a body that is not one (a proxy's
    /// error page, say) becomes the problem's detail, cut short.
    pub fn from_body(status: StatusCode, body: &str) -> Self {
        serde_json::from_str::<Problem>(body).unwrap_or_else(|_| Problem {
            title: status.canonical_reason().unwrap_or("error").to_owned(),
            status: status.as_u16(),
            detail: body.chars().take(200).collect::<String>().trim().to_owned(),
            ..Problem::default()
        })
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.detail.is_empty() { &self.title } else { &self.detail };
        if self.code.is_empty() {
            write!(f, "{what}")?;
        } else {
            write!(f, "{}: {what}", self.code)?;
        }
        for error in &self.errors {
            write!(f, "; {}: {} ({})", error.field, error.message, error.code)?;
        }
        Ok(())
    }
}

/// Where bikes connect.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct BrokerInfo {
    pub url: String,
    pub host: String,
    pub port: u16,
}

#[derive(Clone, Debug, Serialize)]
pub struct NewBike<'a> {
    pub serial: &'a str,
    pub model: &'a str,
    pub firmware_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<&'a str>,
}

/// A registered bike (the fields the simulator uses).
#[derive(Clone, Debug, Deserialize)]
pub struct Bike {
    pub device_id: String,
    pub serial: String,
}

/// A certificate issued to a bike (the fields the simulator uses).
#[derive(Clone, Debug, Deserialize)]
pub struct Certificate {
    pub serial: String,
    pub device_id: String,
    pub cert_pem: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Issued {
    pub certificate: Certificate,
}

#[derive(Deserialize)]
struct Count {
    count: u64,
}

/// A client of one fleet-telemetry API, with one token.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Token,
}

impl Api {
    /// A client of the API at `base` (e.g. `http://127.0.0.1:8090`).
    pub fn new(base: &str, token: Token) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned(), token })
    }

    /// The same API with another token.
    pub fn with_token(&self, token: Token) -> Self {
        Self { token, ..self.clone() }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn broker(&self) -> Result<BrokerInfo, ApiError> {
        self.json(Method::GET, "/api/v1/broker", None::<&()>).await
    }

    /// The fleet CA's chain (PEM): it verifies the broker's certificate.
    pub async fn ca_pem(&self) -> Result<String, ApiError> {
        let (call, status, body) = self.call(Method::GET, "/api/v1/ca.pem", None::<&()>).await?;
        if !body.contains("-----BEGIN CERTIFICATE-----") {
            return Err(ApiError::Unexpected { call, status, detail: "no PEM certificate in it".into() });
        }
        Ok(body)
    }

    pub async fn register_bike(&self, bike: &NewBike<'_>) -> Result<Bike, ApiError> {
        self.json(Method::POST, "/api/v1/bikes", Some(bike)).await
    }

    /// A certificate for `device`'s key, from its CSR; the key never leaves the bike.
    pub async fn issue_certificate(&self, device: &DeviceId, csr_pem: &str) -> Result<Issued, ApiError> {
        let path = format!("/api/v1/bikes/{device}/certificates");
        self.json(Method::POST, &path, Some(&serde_json::json!({ "csr_pem": csr_pem }))).await
    }

    pub async fn revoke_certificate(&self, serial: &str, reason: &str) -> Result<Certificate, ApiError> {
        let path = format!("/api/v1/certificates/{serial}/revoke");
        self.json(Method::POST, &path, Some(&serde_json::json!({ "reason": reason }))).await
    }

    /// How many of `device`'s packets are stored.
    pub async fn telemetry_count(&self, device: &DeviceId) -> Result<u64, ApiError> {
        let path = format!("/api/v1/bikes/{device}/telemetry/count");
        self.json::<Count>(Method::GET, &path, None::<&()>).await.map(|c| c.count)
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ApiError> {
        let (call, status, text) = self.call(method, path, body).await?;
        serde_json::from_str(&text).map_err(|e| ApiError::Unexpected { call, status, detail: e.to_string() })
    }

    /// Makes the call; a success's status and body, or the refusal.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<(String, StatusCode, String), ApiError> {
        let call = format!("{method} {path}");
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(self.token.expose());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response =
            request.send().await.map_err(|source| ApiError::Unreachable { url: self.base.clone(), source })?;
        let status = response.status();
        let text = response.text().await.map_err(|source| ApiError::Unreachable { url: self.base.clone(), source })?;
        if !status.is_success() {
            return Err(ApiError::Refused { call, status, problem: Problem::from_body(status, &text) });
        }
        Ok((call, status, text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_shows_the_problems_code_and_detail() {
        let body = r#"{"type":"about:blank","title":"Unauthorized","status":401,
            "detail":"the token is not valid","code":"token_invalid","errors":[]}"#;
        let error = ApiError::Refused {
            call: "GET /api/v1/broker".into(),
            status: StatusCode::UNAUTHORIZED,
            problem: Problem::from_body(StatusCode::UNAUTHORIZED, body),
        };
        assert_eq!(error.code(), Some("token_invalid"));
        assert_eq!(
            error.to_string(),
            "GET /api/v1/broker was refused: 401 Unauthorized token_invalid: the token is not valid"
        );
    }

    #[test]
    fn field_errors_are_listed() {
        let body = r#"{"title":"Unprocessable","status":422,"detail":"the bike is not valid","code":"invalid",
            "errors":[{"field":"serial","code":"too_long","message":"at most 64 characters"}]}"#;
        let problem = Problem::from_body(StatusCode::UNPROCESSABLE_ENTITY, body);
        assert_eq!(problem.to_string(), "invalid: the bike is not valid; serial: at most 64 characters (too_long)");
    }

    #[test]
    fn a_body_that_is_no_problem_becomes_the_detail() {
        let problem = Problem::from_body(StatusCode::BAD_GATEWAY, "<html>upstream down</html>\n");
        assert_eq!(problem.status, 502);
        assert_eq!(problem.to_string(), "<html>upstream down</html>");
        let empty = Problem::from_body(StatusCode::NOT_FOUND, "");
        assert_eq!(empty.to_string(), "Not Found");
    }

    #[test]
    fn a_new_bike_leaves_out_a_missing_display_name() {
        let bike = NewBike { serial: "sim-a-0001", model: "M", firmware_version: "1.0", display_name: None };
        assert_eq!(
            serde_json::to_value(&bike).expect("json"),
            serde_json::json!({"serial": "sim-a-0001", "model": "M", "firmware_version": "1.0"})
        );
    }
}
