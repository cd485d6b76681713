//! Personal API tokens: shown once, stored hashed, accepted as Bearer, revocable, expiring.

use fleetplane::entity::api_tokens;
use reqwest::{Method, StatusCode};
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};
use serde_json::json;

use crate::support::{Client, TestApp};

async fn bearer(client: &Client, method: Method, path: &str, token: &str) -> crate::support::Resp {
    let url = client.base.join(path).expect("url");
    // A script: no cookies, no CSRF header.
    let script = reqwest::Client::new();
    client.send(script.request(method, url).bearer_auth(token)).await
}

#[tokio::test]
async fn a_token_is_shown_once_stored_hashed_and_works_as_bearer() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let created = ada
        .post("/api/v1/me/tokens", json!({ "name": "ci", "expires_in_days": 30 }))
        .await
        .expect_status(StatusCode::CREATED)
        .json();
    let token = created["token"].as_str().expect("token").to_owned();
    assert!(token.starts_with("fpat_"));
    assert!(token.starts_with(created["prefix"].as_str().expect("prefix")));

    let stored = api_tokens::Entity::find().all(app.db()).await.expect("tokens");
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0].token_hash, token, "only a hash is stored");
    assert!(!stored[0].token_hash.contains(&token[5..]));

    let listed = ada.get("/api/v1/me/tokens").await.expect_status(StatusCode::OK);
    assert!(!listed.text.contains(&token), "a list never shows the token");
    assert_eq!(listed.json()[0]["name"], "ci");

    let me = bearer(&ada, Method::GET, "/api/v1/me", &token).await.expect_status(StatusCode::OK);
    assert_eq!(me.json()["username"], "ada");
    // Bearer requests are not subject to CSRF checks: no cookie is involved.
    bearer(&ada, Method::POST, "/api/v1/orgs", &token)
        .await
        .expect_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let url = ada.base.join("/api/v1/orgs").expect("url");
    let made = ada.send(reqwest::Client::new().post(url).bearer_auth(&token).json(&json!({ "name": "acme" }))).await;
    made.expect_status(StatusCode::CREATED);
    let used = ada.get("/api/v1/me/tokens").await.json();
    assert!(used[0]["last_used_at"].is_string(), "use is recorded");
}

#[tokio::test]
async fn a_revoked_token_stops_working_at_once() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let created = ada.post("/api/v1/me/tokens", json!({ "name": "laptop" })).await.json();
    let (id, token) = (created["id"].as_str().expect("id"), created["token"].as_str().expect("token"));
    bearer(&ada, Method::GET, "/api/v1/me", token).await.expect_status(StatusCode::OK);

    ada.delete(&format!("/api/v1/me/tokens/{id}")).await.expect_status(StatusCode::NO_CONTENT);
    bearer(&ada, Method::GET, "/api/v1/me", token).await.expect_problem(StatusCode::UNAUTHORIZED, "invalid_token");
    assert_eq!(ada.get("/api/v1/me/tokens").await.json(), json!([]));
    ada.delete(&format!("/api/v1/me/tokens/{id}")).await.expect_problem(StatusCode::NOT_FOUND, "token_not_found");
}

#[tokio::test]
async fn an_expired_or_unknown_token_is_refused() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let token = ada.post("/api/v1/me/tokens", json!({ "name": "old", "expires_in_days": 1 })).await.json()["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let record = api_tokens::Entity::find().one(app.db()).await.expect("query").expect("token");
    let mut record = record.into_active_model();
    record.expires_at = Set(Some(chrono::Utc::now() - chrono::TimeDelta::minutes(1)));
    record.update(app.db()).await.expect("expire");

    bearer(&ada, Method::GET, "/api/v1/me", &token).await.expect_problem(StatusCode::UNAUTHORIZED, "invalid_token");
    bearer(&ada, Method::GET, "/api/v1/me", "fpat_not-a-real-token")
        .await
        .expect_problem(StatusCode::UNAUTHORIZED, "invalid_token");
    let url = ada.base.join("/api/v1/me").expect("url");
    let basic = ada.send(reqwest::Client::new().get(url).header("authorization", "Basic YTpi")).await;
    basic.expect_problem(StatusCode::UNAUTHORIZED, "invalid_authorization");
}

#[tokio::test]
async fn tokens_belong_to_their_owner() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let grace = app.user("grace").await;
    let id =
        ada.post("/api/v1/me/tokens", json!({ "name": "mine" })).await.json()["id"].as_str().expect("id").to_owned();
    app.assert_unchanged(async {
        grace.delete(&format!("/api/v1/me/tokens/{id}")).await.expect_problem(StatusCode::NOT_FOUND, "token_not_found");
    })
    .await;
    assert_eq!(grace.get("/api/v1/me/tokens").await.json(), json!([]));
    assert_eq!(ada.get("/api/v1/me/tokens").await.json().as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn token_requests_are_validated() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    app.assert_unchanged(async {
        for (body, field) in [
            (json!({ "name": "" }), "name"),
            (json!({ "name": "x".repeat(101) }), "name"),
            (json!({ "name": "ok", "expires_in_days": 0 }), "expires_in_days"),
            (json!({ "name": "ok", "expires_in_days": 3651 }), "expires_in_days"),
            (json!({ "name": "ok", "expires_in_days": -1 }), "expires_in_days"),
        ] {
            let refused = ada.post("/api/v1/me/tokens", body.clone()).await;
            refused.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
            assert_eq!(refused.fields(), [field], "{body}");
        }
        ada.delete("/api/v1/me/tokens/not-a-uuid").await.expect_problem(StatusCode::NOT_FOUND, "not_found");
    })
    .await;
}

#[tokio::test]
async fn revoking_needs_the_owner_to_be_signed_in() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let id =
        ada.post("/api/v1/me/tokens", json!({ "name": "mine" })).await.json()["id"].as_str().expect("id").to_owned();
    app.client()
        .delete(&format!("/api/v1/me/tokens/{id}"))
        .await
        .expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
}
