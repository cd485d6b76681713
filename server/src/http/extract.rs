//! Request extractors whose rejections are problem+json with stable codes, like every other
//! error of the API.

use std::net::{IpAddr, SocketAddr};

use axum::{
    body::Bytes,
    extract::{
        ConnectInfo, FromRequest, FromRequestParts, Request,
        rejection::{PathRejection, QueryRejection},
    },
    http::{HeaderMap, StatusCode, header, request::Parts},
};
use ipnet::IpNet;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::{
    error::{AppError, FieldError},
    state::AppState,
};

/// Largest request body accepted, in bytes; larger ones get 413.
pub const MAX_BODY: usize = 64 * 1024;

/// A JSON request body. Wrong content type → 415, too large → 413, not JSON → 400
/// `malformed_json`, JSON of the wrong shape → 422 naming the field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + Serialize, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| mime.trim().to_ascii_lowercase())
            .is_some_and(|mime| {
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        if !is_json {
            return Err(AppError::client(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the body as JSON, with `Content-Type: application/json`.",
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            unread_body(&rejection, || {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::client(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        format!("The request body is larger than {} KiB.", MAX_BODY / 1024),
                    )
                } else {
                    AppError::bad_request("body_unreadable", "The request body could not be read.")
                }
            })
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Why a body could not be read: 408 `body_timeout` when it did not arrive within
/// `http.body_timeout_secs` of its head ([`super::timeouts`]), else `otherwise`.
pub fn unread_body(error: &(dyn std::error::Error + 'static), otherwise: impl FnOnce() -> AppError) -> AppError {
    if !super::timeouts::timed_out(error) {
        return otherwise();
    }
    AppError::client(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        "The request body did not arrive in time (`http.body_timeout_secs`).",
    )
}

/// Every body the API takes is a JSON object, and so is every struct in it (serde would also
/// read a struct from an array); and no text it reads may hold a NUL character (PostgreSQL cannot
/// store one). Only what the body's type reads is checked: the type written back as JSON.
fn parse_json<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<T, AppError> {
    let raw: Value = serde_json::from_slice(bytes)
        .map_err(|e| AppError::bad_request("malformed_json", format!("The request body is not valid JSON: {e}.")))?;
    let invalid = |field: String, message: &str| {
        AppError::validation(vec![FieldError { field, code: "invalid".into(), message: message.into() }])
    };
    if !raw.is_object() {
        return Err(invalid(String::new(), "The request body must be a JSON object."));
    }
    let value: T = serde_path_to_error::deserialize(&raw).map_err(|error| {
        let path = error.path().to_string();
        AppError::validation(vec![field_error(&path, &error.into_inner())])
    })?;
    let read = serde_json::to_value(&value).map_err(anyhow::Error::from)?;
    if let Some(field) = array_for_object(&raw, &read, String::new()) {
        return Err(invalid(field, "Send an object here, not an array."));
    }
    if let Some(field) = nul_in(&read, String::new()) {
        return Err(invalid(field, "Text may not contain NUL characters."));
    }
    Ok(value)
}

/// A field path as serde_path_to_error spells it (`spec.public_subnets[1]`).
fn child(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// The path of the first place where `read` (the body as its type reads it) has an object and
/// `raw` (the body as sent) an array.
fn array_for_object(raw: &Value, read: &Value, path: String) -> Option<String> {
    match (raw, read) {
        (Value::Array(_), Value::Object(_)) => Some(path),
        (Value::Object(sent), Value::Object(fields)) => fields
            .iter()
            .find_map(|(key, field)| sent.get(key).and_then(|raw| array_for_object(raw, field, child(&path, key)))),
        (Value::Array(sent), Value::Array(items)) => sent
            .iter()
            .zip(items)
            .enumerate()
            .find_map(|(i, (raw, item))| array_for_object(raw, item, format!("{path}[{i}]"))),
        _ => None,
    }
}

/// The path of the first string in `value` that holds a NUL character.
fn nul_in(value: &Value, path: String) -> Option<String> {
    match value {
        Value::String(text) => text.contains('\0').then_some(path),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| nul_in(item, format!("{path}[{i}]"))),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| nul_in(item, child(&path, key))),
        _ => None,
    }
}

/// Names the field a serde data error is about: the path, or for a missing field the name
/// serde quotes in its message.
fn field_error(path: &str, error: &serde_json::Error) -> FieldError {
    let message = error.to_string();
    let text = message.split(" at line ").next().unwrap_or(&message);
    if let Some(name) = text.strip_prefix("missing field `").and_then(|rest| rest.split('`').next()) {
        let field = if path == "." { name.to_owned() } else { format!("{path}.{name}") };
        return FieldError { field, code: "required".into(), message: "This field is required.".into() };
    }
    let field = if path == "." { String::new() } else { path.to_owned() };
    FieldError { field, code: "invalid".into(), message: text.to_owned() }
}

/// Query string parameters; a malformed query is a 400 `invalid_query`.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| AppError::bad_request("invalid_query", e.body_text()))
    }
}

/// Path parameters; an id that does not parse names nothing that exists, so it is a 404.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|_: PathRejection| AppError::not_found("not_found", "Nothing exists at this address."))
    }
}

/// The client's address: the connection's peer, or, when the peer is one of the configured
/// reverse proxies (`trusted_proxies`), the rightmost `X-Forwarded-For` address that is not one
/// of them. Entries to the left of that one were written by the client, and prove nothing.
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip())
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("no ConnectInfo: serve with connect info")))?;
        Ok(Self(client_ip(peer, &parts.headers, &state.config.trusted_proxies)))
    }
}

/// Walks `X-Forwarded-For` from the right while the hop that wrote the entry is trusted.
fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(&ip));
    let mut client = peer;
    if !is_trusted(client) {
        return client;
    }
    // Several headers count as one list, in order.
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    for entry in entries.into_iter().rev() {
        // A hop that does not parse ends the chain: the proxy that passed it on is the client.
        let Ok(ip) = entry.trim().parse::<IpAddr>() else { break };
        client = ip;
        if !is_trusted(client) {
            break;
        }
    }
    client
}

/// Whether a request came straight from a client on this host: a loopback peer that no proxy
/// says it forwarded (a reverse proxy on this host would otherwise pass for local).
pub fn direct_loopback(peer: IpAddr, headers: &HeaderMap) -> bool {
    let forwarded = ["forwarded", "x-forwarded-for", "x-real-ip"].iter().any(|name| headers.contains_key(*name));
    peer.is_loopback() && !forwarded
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, Serialize)]
    struct Login {
        email: String,
        password: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        options: Option<Options>,
    }

    #[derive(Debug, Default, Deserialize, Serialize)]
    struct Options {
        remember: Option<bool>,
    }

    fn problem(body: &str) -> AppError {
        parse_json::<Login>(body.as_bytes()).expect_err(body)
    }

    #[test]
    fn syntax_errors_are_malformed_json() {
        for body in ["{", "not json", "{\"email\": }", r#"{"email":"a","password":"b"} trailing"#] {
            assert_eq!(problem(body).code(), Some("malformed_json"), "{body}");
        }
    }

    #[test]
    fn shape_errors_name_the_field() {
        let AppError::Client { errors, status, .. } = problem(r#"{"email":"a@b.co"}"#) else { panic!() };
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!((errors[0].field.as_str(), errors[0].code.as_str()), ("password", "required"));

        let AppError::Client { errors, .. } = problem(r#"{"email":5,"password":"x"}"#) else { panic!() };
        assert_eq!((errors[0].field.as_str(), errors[0].code.as_str()), ("email", "invalid"));

        assert_eq!(problem("[]").code(), Some("validation_failed"));
        assert_eq!(problem(r#"["a@b.co", "secret"]"#).code(), Some("validation_failed"), "an array is not an object");
    }

    #[test]
    fn nul_characters_are_refused_where_they_are() {
        let AppError::Client { errors, .. } = problem("{\"email\":\"a@b.co\",\"password\":\"x\\u0000y\"}") else {
            panic!()
        };
        assert_eq!((errors[0].field.as_str(), errors[0].code.as_str()), ("password", "invalid"));
        assert_eq!(
            nul_in(&serde_json::json!({"a": [{"b": "ok"}, {"b": "\0"}]}), String::new()).as_deref(),
            Some("a[1].b")
        );
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().expect("header value"));
        }
        headers
    }

    #[test]
    fn the_client_is_the_rightmost_address_no_trusted_proxy_wrote() {
        let ip = |text: &str| text.parse::<IpAddr>().expect("ip");
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr"), "::1/128".parse().expect("cidr")];
        let proxy = ip("10.0.0.2");
        // Behind two proxies, whatever the client wrote on the left.
        let chain = forwarded(&["127.0.0.1, 198.51.100.7, 203.0.113.9, 10.0.0.1"]);
        assert_eq!(client_ip(proxy, &chain, &trusted), ip("203.0.113.9"));
        // Several headers are one list.
        let split = forwarded(&["198.51.100.7", "203.0.113.9", "10.0.0.1"]);
        assert_eq!(client_ip(proxy, &split, &trusted), ip("203.0.113.9"));
        // A peer that is not a trusted proxy is the client, whatever it says.
        assert_eq!(client_ip(ip("203.0.113.1"), &chain, &trusted), ip("203.0.113.1"));
        assert_eq!(client_ip(ip("127.0.0.1"), &chain, &[]), ip("127.0.0.1"), "nothing trusted by default");
        // No header: the proxy itself. Only trusted hops: the leftmost of them.
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
        assert_eq!(client_ip(proxy, &forwarded(&["10.0.0.9, 10.0.0.1"]), &trusted), ip("10.0.0.9"));
        // A hop that does not parse ends the walk at the last good one.
        assert_eq!(client_ip(proxy, &forwarded(&["203.0.113.9, junk, 10.0.0.1"]), &trusted), ip("10.0.0.1"));
        assert_eq!(client_ip(ip("::1"), &forwarded(&["2001:db8::5"]), &trusted), ip("2001:db8::5"));
    }

    #[test]
    fn only_a_direct_loopback_peer_is_local() {
        let loopback = "127.0.0.1".parse().expect("ip");
        assert!(direct_loopback(loopback, &HeaderMap::new()));
        assert!(!direct_loopback(loopback, &forwarded(&["127.0.0.1"])));
        assert!(!direct_loopback("192.0.2.1".parse().expect("ip"), &HeaderMap::new()));
    }
}
