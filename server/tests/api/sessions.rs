//! Session cookies: sign-out, sign-out everywhere, forged and expired sessions, CSRF.

use base64::{Engine, engine::general_purpose::STANDARD};
use fleetplane::auth::session::Claims;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Client, PASSWORD, TestApp};

fn session_key(app: &TestApp) -> Vec<u8> {
    let text = std::fs::read_to_string(app.dir.path().join("session.key")).expect("session key file");
    STANDARD.decode(text.trim()).expect("base64 key")
}

/// The claims of `client`'s current session (signature not checked: we made it).
fn claims_of(client: &Client) -> Claims {
    let token = client.cookie("fp_session").expect("signed in");
    let payload = token.split('.').nth(1).expect("JWT payload");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url");
    serde_json::from_slice(&json).expect("claims")
}

fn sign(claims: &Claims, key: &[u8]) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(key)).expect("encode")
}

#[tokio::test]
async fn sign_out_clears_the_cookies() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let out = ada.post_empty("/api/v1/auth/logout").await.expect_status(StatusCode::NO_CONTENT);
    assert!(out.set_cookies().iter().any(|c| c.starts_with("fp_session=;") && c.contains("Max-Age=0")));
    ada.get("/api/v1/me").await.expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    // Signing out twice, or while signed out, is fine.
    ada.post_empty("/api/v1/auth/logout").await.expect_status(StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn sign_out_everywhere_revokes_every_session_at_once() {
    let app = TestApp::spawn().await;
    let laptop = app.user("ada").await;
    let phone = app.client();
    phone.sign_in("ada@example.com", PASSWORD).await.expect_status(StatusCode::OK);
    let stolen = phone.cookie("fp_session").expect("session");

    laptop.post_empty("/api/v1/auth/logout-all").await.expect_status(StatusCode::NO_CONTENT);
    phone.get("/api/v1/me").await.expect_problem(StatusCode::UNAUTHORIZED, "session_revoked");
    let thief = app.client();
    thief.set_cookie("fp_session", &stolen);
    thief.get("/api/v1/me").await.expect_problem(StatusCode::UNAUTHORIZED, "session_revoked");

    let again = app.client();
    again.sign_in("ada@example.com", PASSWORD).await.expect_status(StatusCode::OK);
    again.get("/api/v1/me").await.expect_status(StatusCode::OK);
}

#[tokio::test]
async fn expired_tampered_and_foreign_sessions_are_refused() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let key = session_key(&app);
    let claims = claims_of(&ada);
    let now = chrono::Utc::now().timestamp();

    let expired = sign(&Claims { iat: now - 7200, exp: now - 3600, ..claims.clone() }, &key);
    let other_key = sign(&claims, &[42; 32]);
    let mut tampered = ada.cookie("fp_session").expect("session");
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    let wrong_user = sign(&Claims { sub: uuid::Uuid::now_v7(), ..claims.clone() }, &key);
    let none_alg = {
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json"));
        format!("{header}.{body}.")
    };

    for (token, code) in [
        (expired, "session_expired"),
        (other_key, "session_invalid"),
        (tampered, "session_invalid"),
        (wrong_user, "session_invalid"),
        (none_alg, "session_invalid"),
        ("garbage".to_owned(), "session_invalid"),
    ] {
        let client = app.client();
        client.set_cookie("fp_session", &token);
        client.get("/api/v1/me").await.expect_problem(StatusCode::UNAUTHORIZED, code);
    }
}

#[tokio::test]
async fn unsafe_cookie_requests_need_the_sessions_csrf_token() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let other = app.user("grace").await;
    let body = json!({ "name": "acme" });
    let url = ada.base.join("/api/v1/orgs").expect("url");

    app.assert_unchanged(async {
        // No header at all.
        let missing = ada.send(ada.http.post(url.clone()).json(&body)).await;
        missing.expect_problem(StatusCode::FORBIDDEN, "csrf_failed");
        // A token, but not this session's: another user's, or made up.
        for token in [other.cookie("fp_csrf").expect("csrf"), "made-up".to_owned()] {
            let wrong = ada.send(ada.http.post(url.clone()).header("x-csrf-token", token).json(&body)).await;
            wrong.expect_problem(StatusCode::FORBIDDEN, "csrf_failed");
        }
        // Planting a matching csrf cookie does not help: the token is bound to the session.
        ada.set_cookie("fp_csrf", "planted");
        let planted = ada.send(ada.http.post(url.clone()).header("x-csrf-token", "planted").json(&body)).await;
        planted.expect_problem(StatusCode::FORBIDDEN, "csrf_failed");
    })
    .await;

    // Reads need no token.
    ada.send(ada.http.get(url.clone())).await.expect_status(StatusCode::OK);
}

#[tokio::test]
async fn the_csrf_check_also_guards_sign_out() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let url = ada.base.join("/api/v1/auth/logout").expect("url");
    ada.send(ada.http.post(url)).await.expect_problem(StatusCode::FORBIDDEN, "csrf_failed");
    ada.get("/api/v1/me").await.expect_status(StatusCode::OK);
    ada.send(ada.request(Method::POST, "/api/v1/auth/logout")).await.expect_status(StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn cookies_are_secure_when_the_public_url_is_https() {
    let app =
        TestApp::spawn_with(|config| config.public_url = "https://fleet.example.com/".parse().expect("url")).await;
    let browser = app.client();
    browser
        .post("/api/v1/auth/signup", json!({ "email": "ada@example.com", "username": "ada", "password": PASSWORD }))
        .await
        .expect_status(StatusCode::CREATED);
    let mail = app.smtp.first_to("ada@example.com").await;
    assert!(mail.link().starts_with("https://fleet.example.com/verify-email?token="), "links use the public URL");
    browser.post("/api/v1/auth/verify-email", json!({ "token": mail.token() })).await.expect_status(StatusCode::OK);
    let signed_in = browser.sign_in("ada@example.com", PASSWORD).await.expect_status(StatusCode::OK);
    let cookies = signed_in.set_cookies();
    assert_eq!(cookies.len(), 2);
    assert!(cookies.iter().all(|c| c.contains("; Secure")), "{cookies:?}");
}
