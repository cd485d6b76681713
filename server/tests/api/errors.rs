//! Bad input: every refusal is problem+json with a stable code, and changes nothing.

use fleetplane::entity::email_verification_tokens;
use reqwest::{Method, StatusCode, header};
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};
use serde_json::json;

use crate::support::{PASSWORD, TestApp};

#[tokio::test]
async fn malformed_oversized_and_non_json_bodies_are_refused() {
    let app = TestApp::spawn().await;
    let browser = app.client();
    let url = "/api/v1/auth/signup";
    app.assert_unchanged(async {
        let malformed =
            browser.request(Method::POST, url).header(header::CONTENT_TYPE, "application/json").body("{\"email\":");
        browser.send(malformed).await.expect_problem(StatusCode::BAD_REQUEST, "malformed_json");

        let huge = json!({ "email": "a@example.com", "username": "ada", "password": "x".repeat(70 * 1024) });
        browser.post(url, huge).await.expect_problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

        let form = browser
            .request(Method::POST, url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("email=a");
        browser.send(form).await.expect_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
        let none = browser.request(Method::POST, url).body("{}");
        browser.send(none).await.expect_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");

        let wrong_type =
            browser.post(url, json!({ "email": ["a@example.com"], "username": "ada", "password": PASSWORD })).await;
        wrong_type.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(wrong_type.fields(), ["email"]);
    })
    .await;
}

#[tokio::test]
async fn sign_up_reports_every_missing_or_invalid_field_at_once() {
    let app = TestApp::spawn().await;
    let browser = app.client();
    app.assert_unchanged(async {
        let empty = browser.post("/api/v1/auth/signup", json!({})).await;
        empty.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(empty.fields(), ["email", "username", "password"]);
        assert_eq!(empty.json()["errors"][0]["code"], "required");

        for email in ["plainaddress", "a@b", "@example.com", "a b@example.com"] {
            let bad = browser
                .post("/api/v1/auth/signup", json!({ "email": email, "username": "ada", "password": PASSWORD }))
                .await;
            assert_eq!(bad.fields(), ["email"], "{email}");
        }
        let weak = browser
            .post("/api/v1/auth/signup", json!({ "email": "a@example.com", "username": "ada", "password": "1234567" }))
            .await;
        weak.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(
            weak.json()["errors"][0],
            json!({ "field": "password", "code": "too_short", "message": "Use at least 8 characters." })
        );
    })
    .await;
}

#[tokio::test]
async fn a_taken_username_is_a_conflict_whatever_the_address() {
    let app = TestApp::spawn().await;
    app.user("ada").await;
    let browser = app.client();
    app.assert_unchanged(async {
        // The same answer for a new address and for the address of the account that has the name:
        // it depends on the username alone.
        for email in ["new@example.com", "ADA@example.com"] {
            let name = browser
                .post("/api/v1/auth/signup", json!({ "email": email, "username": "Ada", "password": PASSWORD }))
                .await;
            name.expect_problem(StatusCode::CONFLICT, "username_taken");
            assert_eq!(name.fields(), ["username"], "{email}");
        }
    })
    .await;
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_generic_answer() {
    let app = TestApp::spawn().await;
    app.user("ada").await;
    let browser = app.client();
    let wrong = browser.sign_in("ada@example.com", "not the password").await;
    let unknown = browser.sign_in("nobody@example.com", "not the password").await;
    wrong.expect_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!((wrong.status, &wrong.text), (unknown.status, &unknown.text));
    assert!(wrong.set_cookies().is_empty() && unknown.set_cookies().is_empty());
    let missing = browser.post("/api/v1/auth/login", json!({ "email": "ada@example.com" })).await;
    assert_eq!(missing.fields(), ["password"]);
}

#[tokio::test]
async fn verification_tokens_that_are_forged_used_or_expired_are_refused() {
    let app = TestApp::spawn().await;
    let browser = app.client();
    for name in ["ada", "grace"] {
        browser
            .post(
                "/api/v1/auth/signup",
                json!({ "email": format!("{name}@example.com"), "username": name, "password": PASSWORD }),
            )
            .await
            .expect_status(StatusCode::ACCEPTED);
    }
    let ada_token = app.smtp.first_to("ada@example.com").await.token();
    let grace_token = app.smtp.first_to("grace@example.com").await.token();
    let verify = |token: &str| json!({ "token": token, "password": PASSWORD });

    browser
        .post("/api/v1/auth/verify-email", verify("forged-token"))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, "verification_token_invalid");
    let empty = browser.post("/api/v1/auth/verify-email", json!({ "token": "" })).await;
    assert_eq!(empty.fields(), ["token", "password"]);

    browser.post("/api/v1/auth/verify-email", verify(&ada_token)).await.expect_status(StatusCode::OK);
    app.client()
        .post("/api/v1/auth/verify-email", verify(&ada_token))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, "verification_token_used");

    // Age grace's link past its 24 hours.
    let record = email_verification_tokens::Entity::find()
        .all(app.db())
        .await
        .expect("tokens")
        .into_iter()
        .find(|t| t.used_at.is_none())
        .expect("grace's token");
    let mut record = record.into_active_model();
    record.expires_at = Set(chrono::Utc::now() - chrono::TimeDelta::seconds(1));
    record.update(app.db()).await.expect("expire");
    app.client()
        .post("/api/v1/auth/verify-email", verify(&grace_token))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, "verification_token_expired");
    browser.sign_in("grace@example.com", PASSWORD).await.expect_problem(StatusCode::FORBIDDEN, "email_not_verified");
}

#[tokio::test]
async fn sign_in_is_rate_limited_per_account_and_per_ip() {
    let app = TestApp::spawn().await;
    app.user("ada").await;
    let limits = app.state.config.rate_limits.clone();
    // A browser that never signed in to the account (the test's own sign-in, which counts, left
    // its device cookie in another client).
    let browser = app.client();
    for _ in 1..limits.login_per_account_ip.max {
        browser.sign_in("ada@example.com", "wrong password").await.expect_status(StatusCode::UNAUTHORIZED);
    }
    let limited = browser.sign_in("ada@example.com", PASSWORD).await;
    limited.expect_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let retry: u64 = limited.headers[header::RETRY_AFTER].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=limits.login_per_account_ip.window_secs).contains(&retry));
    assert!(limited.set_cookies().is_empty(), "even the right password is refused while limited");

    // Other accounts from the same address still get in, until the per-IP limit.
    let mut tried = limits.login_per_account_ip.max;
    let mut last = browser.sign_in("other@example.com", "whatever it is").await;
    while last.status == StatusCode::UNAUTHORIZED {
        tried += 1;
        assert!(tried <= limits.login_per_ip.max + 1, "no per-IP limit after {tried} attempts");
        last = browser.sign_in(&format!("other{tried}@example.com"), "whatever it is").await;
    }
    last.expect_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

#[tokio::test]
async fn sign_up_and_resend_are_rate_limited() {
    let app = TestApp::spawn_with(|config| {
        config.rate_limits.signup_per_ip = fleetplane::config::Limit::new(2, 3600);
        config.rate_limits.resend_per_account = fleetplane::config::Limit::new(1, 3600);
    })
    .await;
    let browser = app.client();
    for name in ["ada", "grace"] {
        browser
            .post(
                "/api/v1/auth/signup",
                json!({ "email": format!("{name}@example.com"), "username": name, "password": PASSWORD }),
            )
            .await
            .expect_status(StatusCode::ACCEPTED);
    }
    app.assert_unchanged(async {
        browser
            .post(
                "/api/v1/auth/signup",
                json!({ "email": "linus@example.com", "username": "linus", "password": PASSWORD }),
            )
            .await
            .expect_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    })
    .await;
    browser
        .post("/api/v1/auth/resend-verification", json!({ "email": "ada@example.com" }))
        .await
        .expect_status(StatusCode::ACCEPTED);
    app.assert_unchanged(async {
        browser
            .post("/api/v1/auth/resend-verification", json!({ "email": "ada@example.com" }))
            .await
            .expect_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    })
    .await;
}

#[tokio::test]
async fn closed_sign_up_refuses_new_accounts() {
    let app = TestApp::spawn_with(|config| config.signup = fleetplane::config::SignupMode::Closed).await;
    app.assert_unchanged(async {
        app.client()
            .post("/api/v1/auth/signup", json!({ "email": "ada@example.com", "username": "ada", "password": PASSWORD }))
            .await
            .expect_problem(StatusCode::FORBIDDEN, "signup_closed");
    })
    .await;
}

#[tokio::test]
async fn unknown_api_routes_and_methods_are_problems_too() {
    let app = TestApp::spawn().await;
    let browser = app.client();
    browser.get("/api/v1/nothing-here").await.expect_problem(StatusCode::NOT_FOUND, "not_found");
    browser
        .send(browser.request(Method::DELETE, "/api/v1/auth/login"))
        .await
        .expect_problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    browser.get("/api/v1/me").await.expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
}
