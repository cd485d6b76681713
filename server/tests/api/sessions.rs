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
        .expect_status(StatusCode::ACCEPTED);
    let mail = app.smtp.first_to("ada@example.com").await;
    assert!(mail.link().starts_with("https://fleet.example.com/verify-email?token="), "links use the public URL");
    browser
        .post("/api/v1/auth/verify-email", json!({ "token": mail.token(), "password": PASSWORD }))
        .await
        .expect_status(StatusCode::OK);
    let signed_in = app.client().sign_in("ada@example.com", PASSWORD).await.expect_status(StatusCode::OK);
    let cookies = signed_in.set_cookies();
    assert_eq!(cookies.len(), 3, "the session, its CSRF token and the device cookie: {cookies:?}");
    assert!(cookies.iter().all(|c| c.contains("; Secure")), "{cookies:?}");
    let device = cookies.iter().find(|c| c.starts_with("fp_device=")).expect("device cookie");
    assert!(device.contains("; HttpOnly") && device.contains("SameSite=Lax"), "{device}");
}

/// A client signed in as `email` from a browser that calls itself `user_agent`.
async fn browser(app: &TestApp, email: &str, user_agent: &str) -> Client {
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let http = reqwest::Client::builder().cookie_provider(jar.clone()).user_agent(user_agent).build().expect("client");
    let client = Client::from_parts(http, jar, app.base.clone());
    client.sign_in(email, PASSWORD).await.expect_status(StatusCode::OK);
    client
}

#[tokio::test]
async fn signing_out_revokes_the_session_on_the_server() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let copied = ada.cookie("fp_session").expect("session");
    ada.post_empty("/api/v1/auth/logout").await.expect_status(StatusCode::NO_CONTENT);
    // Someone who kept the cookie cannot use it any more.
    let thief = app.client();
    thief.set_cookie("fp_session", &copied);
    thief.get("/api/v1/me").await.expect_problem(StatusCode::UNAUTHORIZED, "session_revoked");
}

#[tokio::test]
async fn settings_list_the_signed_in_browsers_and_revoke_one() {
    let app = TestApp::spawn().await;
    app.user("ada").await;
    let laptop = browser(&app, "ada@example.com", "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0").await;
    let phone = browser(&app, "ada@example.com", "Mozilla/5.0 (iPhone) Safari/604.1").await;

    let listed = laptop.get("/api/v1/me/sessions").await.expect_status(StatusCode::OK).json();
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), 3, "the test's own sign-in, the laptop and the phone: {listed:?}");
    let this = listed.iter().find(|s| s["current"] == true).expect("the current session is marked");
    assert_eq!(this["user_agent"], "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0");
    assert_eq!(this["ip"], "127.0.0.1");
    for field in ["created_at", "last_seen_at", "expires_at"] {
        assert!(this[field].is_string(), "{field}");
    }
    let phones = listed.iter().find(|s| s["user_agent"] == "Mozilla/5.0 (iPhone) Safari/604.1").expect("the phone");
    assert_eq!(phones["current"], false);
    let phone_id = phones["id"].as_str().expect("id");

    laptop.delete(&format!("/api/v1/me/sessions/{phone_id}")).await.expect_status(StatusCode::NO_CONTENT);
    phone.get("/api/v1/me").await.expect_problem(StatusCode::UNAUTHORIZED, "session_revoked");
    laptop.get("/api/v1/me").await.expect_status(StatusCode::OK);
    let listed = laptop.get("/api/v1/me/sessions").await.json();
    assert!(listed.as_array().expect("list").iter().all(|s| s["id"] != phone_id), "revoked sessions are not listed");

    // Revoked already, unknown, or someone else's: the same 404, and nothing changes.
    laptop
        .delete(&format!("/api/v1/me/sessions/{phone_id}"))
        .await
        .expect_problem(StatusCode::NOT_FOUND, "session_not_found");
    let bob = app.user("bob").await;
    let own = laptop.get("/api/v1/me/sessions").await.json()[0]["id"].as_str().expect("id").to_owned();
    bob.delete(&format!("/api/v1/me/sessions/{own}")).await.expect_problem(StatusCode::NOT_FOUND, "session_not_found");
    laptop.get("/api/v1/me").await.expect_status(StatusCode::OK);
    bob.delete("/api/v1/me/sessions/not-a-uuid").await.expect_problem(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn a_password_change_revokes_every_session_but_the_browser_that_asked_gets_a_new_one() {
    let app = TestApp::spawn().await;
    let laptop = app.user("ada").await;
    let phone = browser(&app, "ada@example.com", "phone").await;
    laptop
        .put("/api/v1/me/password", json!({ "current_password": PASSWORD, "new_password": "a new one, longer" }))
        .await
        .expect_status(StatusCode::NO_CONTENT);
    phone.get("/api/v1/me").await.expect_problem(StatusCode::UNAUTHORIZED, "session_revoked");
    let listed = laptop.get("/api/v1/me/sessions").await.expect_status(StatusCode::OK).json();
    let listed = listed.as_array().expect("list");
    assert_eq!(listed.len(), 1, "only the new session of the browser that changed it: {listed:?}");
    assert_eq!(listed[0]["current"], true);
}

#[tokio::test]
async fn a_revoked_sessions_open_streams_end_and_other_streams_go_on() {
    use crate::support::sse::Stream;
    let wait = std::time::Duration::from_secs(30);
    let app = TestApp::spawn().await;
    let laptop = app.user("ada").await;
    let phone = browser(&app, "ada@example.com", "phone").await;
    let ada_id = laptop.user_id().await;
    // On a connection of its own (written by the fan-out) and on a reused one (through hyper).
    let mut alone = Stream::open_alone(&phone, "/api/v1/events").await.expect("stream");
    phone.get("/api/v1/me").await.expect_status(StatusCode::OK);
    let mut pooled = Stream::open(&phone, "/api/v1/events", None).await.expect("stream");
    let mut laptops = Stream::open(&laptop, "/api/v1/events", None).await.expect("stream");
    let token = laptop.post("/api/v1/me/tokens", json!({ "name": "script" })).await.json();
    let mut scripts = {
        let request = app
            .client()
            .http
            .get(app.base.join("api/v1/events").expect("url"))
            .bearer_auth(token["token"].as_str().expect("token"))
            .header("accept", "text/event-stream");
        Stream::from_request(request).await.expect("stream")
    };
    app.wait_for("open streams", 4, |state| state.live.open_streams()).await;

    let sessions = laptop.get("/api/v1/me/sessions").await.json();
    let phone_id = sessions.as_array().expect("list").iter().find(|s| s["user_agent"] == "phone").expect("phone")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    laptop.delete(&format!("/api/v1/me/sessions/{phone_id}")).await.expect_status(StatusCode::NO_CONTENT);
    assert!(alone.next(wait).await.is_none(), "the fan-out's stream of the revoked session ends");
    assert!(pooled.next(wait).await.is_none(), "hyper's stream of the revoked session ends");

    // The laptop's session and the token still stream.
    app.record_events(ada_id, "note", 0..1, "").await;
    assert_eq!(laptops.next_of("note", wait).await.json()["n"], 0);
    assert_eq!(scripts.next_of("note", wait).await.json()["n"], 0);

    // Revoking the token ends its stream too.
    let token_id = token["id"].as_str().expect("id");
    laptop.delete(&format!("/api/v1/me/tokens/{token_id}")).await.expect_status(StatusCode::NO_CONTENT);
    assert!(scripts.next(wait).await.is_none(), "the revoked token's stream ends");
    app.wait_for("open streams", 1, |state| state.live.open_streams()).await;
}
