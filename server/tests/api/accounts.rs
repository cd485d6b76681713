//! Sign-up, email verification, sign-in, username and password changes.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{PASSWORD, TestApp};

#[tokio::test]
async fn sign_up_verify_by_email_then_sign_in() {
    let app = TestApp::spawn().await;
    let browser = app.client();

    let signup = browser
        .post("/api/v1/auth/signup", json!({ "email": "Ada@Example.com", "username": "Ada_L", "password": PASSWORD }))
        .await
        .expect_status(StatusCode::ACCEPTED);
    assert!(signup.json()["message"].as_str().expect("message").contains("Ada@Example.com"), "{}", signup.text);
    assert!(signup.set_cookies().is_empty(), "sign-up does not sign in");

    let mail = app.smtp.first_to("Ada@Example.com").await;
    assert_eq!(mail.subject, "Verify your email for Fleetplane");
    assert!(mail.link().starts_with(&format!("{}verify-email?token=", app.base)), "{}", mail.link());

    // The link and the password chosen at sign-up: verified, and signed in.
    let verified = browser
        .post("/api/v1/auth/verify-email", json!({ "token": mail.token(), "password": PASSWORD }))
        .await
        .expect_status(StatusCode::OK);
    let user = verified.json();
    assert_eq!(user["username"], "ada_l", "usernames are stored lower-case");
    assert_eq!(user["email"], "Ada@Example.com");
    assert_eq!(user["email_verified"], true);
    assert!(verified.set_cookies().join("\n").contains("fp_session="), "verifying signs in");

    let signed_in = app.client().sign_in("ada@EXAMPLE.com", PASSWORD).await.expect_status(StatusCode::OK);
    assert_eq!(signed_in.json()["email_verified"], true);
    let cookies = signed_in.set_cookies().join("\n");
    assert!(cookies.contains("fp_session=") && cookies.contains("HttpOnly") && cookies.contains("SameSite=Lax"));
    assert!(!cookies.contains("Secure"), "plain http public URL: no Secure flag");

    let me = browser.get("/api/v1/me").await.expect_status(StatusCode::OK).json();
    assert_eq!(me["username"], "ada_l");
}

#[tokio::test]
async fn sign_up_creates_a_personal_organization_owned_by_the_user() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let orgs = ada.get("/api/v1/orgs").await.expect_status(StatusCode::OK).json();
    assert_eq!(
        orgs,
        json!([{
            "id": orgs[0]["id"], "name": "ada", "display_name": "ada", "role": "owner", "personal": true,
            "created_at": orgs[0]["created_at"],
        }])
    );
}

#[tokio::test]
async fn personal_organization_name_steps_aside_for_an_existing_one() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    ada.post("/api/v1/orgs", json!({ "name": "grace" })).await.expect_status(StatusCode::CREATED);
    let grace = app.user("grace").await;
    let orgs = grace.get("/api/v1/orgs").await.json();
    assert_eq!(orgs[0]["name"], "grace-2");
}

#[tokio::test]
async fn an_unverified_account_cannot_sign_in_and_says_why_only_with_the_right_password() {
    let app = TestApp::spawn().await;
    let browser = app.client();
    browser
        .post("/api/v1/auth/signup", json!({ "email": "ada@example.com", "username": "ada", "password": PASSWORD }))
        .await
        .expect_status(StatusCode::ACCEPTED);
    browser.sign_in("ada@example.com", PASSWORD).await.expect_problem(StatusCode::FORBIDDEN, "email_not_verified");
    browser
        .sign_in("ada@example.com", "wrong password")
        .await
        .expect_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert!(browser.cookie("fp_session").is_none());
}

#[tokio::test]
async fn resend_sends_a_fresh_link_and_answers_alike_for_unknown_addresses() {
    let app = TestApp::spawn().await;
    let browser = app.client();
    browser
        .post("/api/v1/auth/signup", json!({ "email": "ada@example.com", "username": "ada", "password": PASSWORD }))
        .await
        .expect_status(StatusCode::ACCEPTED);
    let first = app.smtp.first_to("ada@example.com").await;

    let known = browser.post("/api/v1/auth/resend-verification", json!({ "email": "ada@example.com" })).await;
    let unknown = browser.post("/api/v1/auth/resend-verification", json!({ "email": "nobody@example.com" })).await;
    assert_eq!((known.status, &known.text), (unknown.status, &unknown.text));
    assert_eq!(known.status, StatusCode::ACCEPTED);

    let second = app.smtp.nth_to("ada@example.com", 2).await;
    assert_ne!(first.token(), second.token());
    browser
        .post("/api/v1/auth/verify-email", json!({ "token": second.token(), "password": PASSWORD }))
        .await
        .expect_status(StatusCode::OK);
    // Verifying retires the older link.
    browser
        .post("/api/v1/auth/verify-email", json!({ "token": first.token(), "password": PASSWORD }))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, "verification_token_used");
    assert!(app.smtp.all().await.iter().all(|m| !m.to.contains(&"nobody@example.com".to_owned())));
}

#[tokio::test]
async fn resend_for_a_verified_account_sends_nothing() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    ada.post("/api/v1/auth/resend-verification", json!({ "email": "ada@example.com" }))
        .await
        .expect_status(StatusCode::ACCEPTED);
    app.user("grace").await; // a later email, so the outbox has certainly been drained
    assert_eq!(app.smtp.all().await.iter().filter(|m| m.to.contains(&"ada@example.com".to_owned())).count(), 1);
}

#[tokio::test]
async fn username_change_is_validated_unique_audited_and_reissues_the_session() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    app.user("grace").await;
    let old_session = ada.cookie("fp_session").expect("session");

    let changed =
        ada.patch("/api/v1/me/username", json!({ "username": "Countess" })).await.expect_status(StatusCode::OK);
    assert_eq!(changed.json()["username"], "countess");
    assert!(changed.set_cookies().iter().any(|c| c.starts_with("fp_session=")));
    assert_ne!(ada.cookie("fp_session").expect("session"), old_session);
    assert_eq!(ada.get("/api/v1/me").await.json()["username"], "countess");

    app.assert_unchanged(async {
        let taken = ada.patch("/api/v1/me/username", json!({ "username": "GRACE" })).await;
        taken.expect_problem(StatusCode::CONFLICT, "username_taken");
        assert_eq!(taken.fields(), ["username"]);
        for bad in ["ab", "9lives", "has space", "a".repeat(31).as_str(), ""] {
            let refused = ada.patch("/api/v1/me/username", json!({ "username": bad })).await;
            refused.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
            assert_eq!(refused.fields(), ["username"], "{bad}");
        }
    })
    .await;
    assert_eq!(ada.get("/api/v1/me").await.json()["username"], "countess");
}

#[tokio::test]
async fn password_change_requires_the_current_one_and_signs_out_other_sessions() {
    let app = TestApp::spawn().await;
    let laptop = app.user("ada").await;
    let phone = app.client();
    phone.sign_in("ada@example.com", PASSWORD).await.expect_status(StatusCode::OK);

    let wrong = laptop
        .put("/api/v1/me/password", json!({ "current_password": "not it at all", "new_password": "a new password" }))
        .await;
    wrong.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(wrong.fields(), ["current_password"]);
    let short =
        laptop.put("/api/v1/me/password", json!({ "current_password": PASSWORD, "new_password": "short" })).await;
    assert_eq!(short.fields(), ["new_password"]);
    let both = laptop
        .put("/api/v1/me/password", json!({ "current_password": "not it at all", "new_password": "short" }))
        .await;
    assert_eq!(both.fields(), ["new_password", "current_password"], "every problem at once");
    let same =
        laptop.put("/api/v1/me/password", json!({ "current_password": PASSWORD, "new_password": PASSWORD })).await;
    assert_eq!(same.json()["errors"][0]["code"], "unchanged");
    phone.get("/api/v1/me").await.expect_status(StatusCode::OK);

    laptop
        .put("/api/v1/me/password", json!({ "current_password": PASSWORD, "new_password": "a new password" }))
        .await
        .expect_status(StatusCode::NO_CONTENT);
    laptop.get("/api/v1/me").await.expect_status(StatusCode::OK);
    phone.get("/api/v1/me").await.expect_problem(StatusCode::UNAUTHORIZED, "session_revoked");

    let fresh = app.client();
    fresh.sign_in("ada@example.com", PASSWORD).await.expect_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    fresh.sign_in("ada@example.com", "a new password").await.expect_status(StatusCode::OK);
}
