//! Google sign-in against a real OpenID provider (npm's `oidc-provider`, see `support::oidc`):
//! the whole authorization-code flow with PKCE, state and nonce, the id_token checks, key
//! rotation, and the account rules (sign in, link by verified email, create, closed sign-up,
//! link and unlink from settings).
//!
//! Ignored by a plain `cargo test` (they need node and the provider); `cargo xtask test` runs them.

use fleetplane::{config::SignupMode, entity::user_identities};
use reqwest::StatusCode;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::json;

use crate::support::{
    Client, PASSWORD, TestApp,
    oidc::{self, Landing, OidcProvider, urlencode},
};

async fn app_with(provider: &OidcProvider) -> TestApp {
    TestApp::spawn_with(|config| provider.configure(config)).await
}

async fn app() -> TestApp {
    app_with(OidcProvider::shared()).await
}

/// An address no other test uses, so that provider-side settings stay per test.
fn unique_email(name: &str) -> String {
    format!("{name}-{}@example.com", uuid::Uuid::new_v4().simple())
}

async fn identities(app: &TestApp) -> u64 {
    user_identities::Entity::find().count(app.db()).await.expect("count")
}

/// Asserts the sign-in ended on the sign-in page with `code`, that the page explains it, and
/// that the browser is not signed in.
async fn assert_refused(client: &Client, landing: &Landing, code: &str) {
    assert_eq!(landing.error().as_deref(), Some(code), "landed on {}", landing.location);
    assert!(landing.location.starts_with("/login?"), "landed on {}", landing.location);
    assert!(!landing.signed_in(), "a refused sign-in sets no session");
    let page = client.get(&landing.location).await.expect_status(StatusCode::OK);
    assert!(page.text.contains(&format!("data-error=\"{code}\"")), "the sign-in page explains {code}");
    client.get("/api/v1/me").await.expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[tokio::test]
#[ignore = "needs the local OpenID provider: run `cargo xtask test`"]
async fn a_new_person_gets_an_account_and_comes_back_to_it() {
    let app = app().await;
    let email = unique_email("Grace.Hopper");
    let browser = app.client();
    let landing = oidc::sign_in(&browser, &email).await;
    assert_eq!(landing.location, "/");
    assert!(landing.signed_in());
    assert!(
        landing.set_cookies.iter().any(|c| c.starts_with("fp_google_flow=;") && c.contains("Max-Age=0")),
        "the flow cookie is cleared: {:?}",
        landing.set_cookies
    );

    let me = browser.get("/api/v1/me").await.expect_status(StatusCode::OK).json();
    assert_eq!(me["email"], email.as_str());
    assert!(me["username"].as_str().expect("username").starts_with("grace-hopper-"));
    assert_eq!(me["email_verified"], true, "Google verified the address");
    assert_eq!(me["has_password"], false);
    let username = me["username"].as_str().expect("username").to_owned();
    let orgs = browser.get("/api/v1/orgs").await.expect_status(StatusCode::OK).json();
    assert!(orgs.to_string().contains(&format!("\"name\":\"{username}\"")), "a personal organization: {orgs}");
    let linked = browser.get("/api/v1/me/identities").await.expect_status(StatusCode::OK).json();
    assert_eq!(linked[0]["provider"], "google");
    assert_eq!(linked[0]["email"], email.as_str());
    assert_eq!(app.counts().await[5], 0, "no verification email for an address Google verified");

    // Coming back, in another browser: the same account, nothing new.
    let counts = app.counts().await;
    let again = app.client();
    let landing = oidc::sign_in(&again, &email).await;
    assert!(landing.signed_in());
    let me_again = again.get("/api/v1/me").await.expect_status(StatusCode::OK).json();
    assert_eq!(me_again["id"], me["id"]);
    assert_eq!(app.counts().await, counts);
    assert_eq!(identities(&app).await, 1);

    let audit = again.get("/api/v1/me/audit?limit=50").await.json();
    let actions: Vec<&str> =
        audit["items"].as_array().expect("items").iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"auth.signup") && actions.contains(&"auth.login"), "{actions:?}");
}

#[tokio::test]
#[ignore = "needs the local OpenID provider: run `cargo xtask test`"]
async fn a_verified_email_links_to_the_existing_account_and_the_next_page_is_kept() {
    let app = app().await;
    let name = format!("ada{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let ada = app.user(&name).await;
    let email = format!("{name}@example.com");
    let ada_id = ada.get("/api/v1/me").await.json()["id"].clone();

    let browser = app.client();
    let callback = oidc::to_callback(&browser, &format!("login_hint={}&next=%2Fclusters", urlencode(&email))).await;
    let landing = oidc::land(&browser, &callback).await;
    assert_eq!(landing.location, "/clusters");
    let me = browser.get("/api/v1/me").await.expect_status(StatusCode::OK).json();
    assert_eq!(me["id"], ada_id, "linked to the account with that address");
    assert_eq!(me["has_password"], true);
    assert_eq!(identities(&app).await, 1);

    let audit = ada.get("/api/v1/me/audit?limit=50").await.json();
    let linked = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|e| e["action"] == "account.identity_linked")
        .unwrap_or_else(|| panic!("the link is audited: {audit}"));
    assert_eq!(linked["details"]["by"], "verified email");

    // The password still works; an offsite `next` is not followed.
    ada.sign_in(&email, PASSWORD).await.expect_status(StatusCode::OK);
    let other = app.client();
    let callback =
        oidc::to_callback(&other, &format!("login_hint={}&next=https%3A%2F%2Fevil.example", urlencode(&email))).await;
    assert_eq!(oidc::land(&other, &callback).await.location, "/");
}

#[tokio::test]
#[ignore = "needs the local OpenID provider: run `cargo xtask test`"]
async fn an_unconfirmed_account_with_the_same_email_is_replaced_not_taken_over() {
    let app = app().await;
    let email = unique_email("squatted");
    let squatter = app.client();
    squatter
        .post("/api/v1/auth/signup", json!({ "email": email, "username": "squatter", "password": PASSWORD }))
        .await
        .expect_status(StatusCode::ACCEPTED);
    let squatters_link = app.smtp.first_to(&email).await.token();
    let browser = app.client();
    let landing = oidc::sign_in(&browser, &email).await;
    assert!(landing.signed_in(), "Google proved the address: {}", landing.location);
    let me = browser.get("/api/v1/me").await.expect_status(StatusCode::OK).json();
    assert_eq!(me["email_verified"], true);
    assert_eq!(me["has_password"], false, "the squatter's password went with the account it was set on");
    assert_ne!(me["username"], "squatter");
    squatter.sign_in(&email, PASSWORD).await.expect_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    squatter
        .post("/api/v1/auth/verify-email", json!({ "token": squatters_link, "password": PASSWORD }))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, "verification_token_invalid");
    assert_eq!(identities(&app).await, 1);
}

#[tokio::test]
#[ignore = "needs the local OpenID provider: run `cargo xtask test`"]
async fn closed_sign_up_turns_away_new_people_but_not_known_ones() {
    let provider = OidcProvider::shared();
    let app = TestApp::spawn_with(|config| {
        provider.configure(config);
        config.signup = SignupMode::Closed;
    })
    .await;
    let counts = app.counts().await;
    let browser = app.client();
    let landing = oidc::sign_in(&browser, &unique_email("stranger")).await;
    assert_refused(&browser, &landing, "signup_closed").await;
    assert_eq!(app.counts().await, counts);

    // An account an administrator created links by its (verified) email.
    let email = unique_email("staff");
    fleetplane::accounts::create_account(
        &app.state,
        fleetplane::accounts::NewAccount::parse(&email, "staff", PASSWORD, true).expect("valid"),
        None,
    )
    .await
    .expect("created");
    let landing = oidc::sign_in(&app.client(), &email).await;
    assert!(landing.signed_in(), "landed on {}", landing.location);
}

#[tokio::test]
#[ignore = "needs the local OpenID provider: run `cargo xtask test`"]
async fn a_callback_without_this_browsers_state_is_refused() {
    let app = app().await;
    let email = unique_email("state");
    let counts = app.counts().await;

    // Wrong state.
    let browser = app.client();
    let mut callback = oidc::to_callback(&browser, &format!("login_hint={}", urlencode(&email))).await;
    let pairs: Vec<(String, String)> = callback
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" { "forged".to_owned() } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    callback.query_pairs_mut().clear().extend_pairs(pairs);
    assert_refused(&browser, &oidc::land(&browser, &callback).await, "google_state_invalid").await;

    // No state.
    let browser = app.client();
    let mut callback = oidc::to_callback(&browser, &format!("login_hint={}", urlencode(&email))).await;
    let pairs: Vec<(String, String)> =
        callback.query_pairs().filter(|(k, _)| k != "state").map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    callback.query_pairs_mut().clear().extend_pairs(pairs);
    assert_refused(&browser, &oidc::land(&browser, &callback).await, "google_state_invalid").await;

    // The right callback URL in another browser (a link sent to a victim, say).
    let attacker = app.client();
    let callback = oidc::to_callback(&attacker, &format!("login_hint={}", urlencode(&email))).await;
    let victim = app.client();
    assert_refused(&victim, &oidc::land(&victim, &callback).await, "google_state_invalid").await;

    assert_eq!(app.counts().await, counts);
}

#[tokio::test]
#[ignore = "needs the local OpenID provider: run `cargo xtask test`"]
async fn a_code_cannot_be_used_twice() {
    let app = app().await;
    let email = unique_email("replay");
    let browser = app.client();
    let callback = oidc::to_callback(&browser, &format!("login_hint={}", urlencode(&email))).await;
    let flow = browser.cookie_at("/api/v1/auth/google/callback", "fp_google_flow").expect("flow cookie");
    assert!(oidc::land(&browser, &callback).await.signed_in());

    // Someone holding both the callback URL and the flow cookie replays them.
    let counts = app.counts().await;
    let replay = app.client();
    replay.set_cookie_at("/api/v1/auth/google", "fp_google_flow", &flow);
    assert_refused(&replay, &oidc::land(&replay, &callback).await, "google_code_rejected").await;
    assert_eq!(app.counts().await, counts);
}

#[tokio::test]
#[ignore = "needs the local OpenID provider: run `cargo xtask test`"]
async fn id_tokens_that_do_not_check_out_are_refused() {
    let provider = OidcProvider::shared();
    let app = app_with(provider).await;
    let cases = [
        ("wrong_nonce", "google_token_invalid"),
        ("no_nonce", "google_token_invalid"),
        ("wrong_aud", "google_token_invalid"),
        ("wrong_iss", "google_token_invalid"),
        ("expired", "google_token_invalid"),
        ("unknown_key", "google_token_invalid"),
        ("bad_signature", "google_token_invalid"),
        ("alg_none", "google_token_invalid"),
        ("access_denied", "google_access_denied"),
    ];
    for (scenario, code) in cases {
        let email = unique_email(scenario);
        provider.account(&email, true, Some(scenario)).await;
        let counts = app.counts().await;
        let browser = app.client();
        let landing = oidc::sign_in(&browser, &email).await;
        assert_eq!(landing.error().as_deref(), Some(code), "{scenario}: landed on {}", landing.location);
        assert_refused(&browser, &landing, code).await;
        assert_eq!(app.counts().await, counts, "{scenario}: nothing created");
    }
    assert_eq!(identities(&app).await, 0);

    let email = unique_email("unverified");
    provider.account(&email, false, None).await;
    let browser = app.client();
    assert_refused(&browser, &oidc::sign_in(&browser, &email).await, "google_email_unverified").await;
    assert_eq!(identities(&app).await, 0);
}

#[tokio::test]
#[ignore = "needs the local OpenID provider: run `cargo xtask test`"]
async fn a_rotated_key_is_picked_up_with_one_fetch_of_the_key_set() {
    let provider = OidcProvider::start();
    let app = app_with(&provider).await;
    let email = unique_email("rotation");
    assert!(oidc::sign_in(&app.client(), &email).await.signed_in());
    let fetches = provider.key_fetches().await;
    assert!(oidc::sign_in(&app.client(), &email).await.signed_in());
    assert_eq!(provider.key_fetches().await, fetches, "the key set is cached");

    provider.rotate_key().await;
    assert!(oidc::sign_in(&app.client(), &email).await.signed_in(), "a token signed with the new key is accepted");
    assert_eq!(provider.key_fetches().await, fetches + 1, "one refetch for the unknown key id");
    assert!(oidc::sign_in(&app.client(), &email).await.signed_in());
    assert_eq!(provider.key_fetches().await, fetches + 1, "and then cached again");
}

#[tokio::test]
#[ignore = "needs the local OpenID provider: run `cargo xtask test`"]
async fn settings_link_and_unlink_google_and_a_google_only_account_sets_a_password() {
    let app = app().await;
    let name = format!("lin{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let linus = app.user(&name).await;
    let google_email = unique_email("linus-at-google");

    // Linking from settings: any Google account, whatever its address.
    let callback = oidc::to_callback(&linus, &format!("intent=link&login_hint={}", urlencode(&google_email))).await;
    let landing = oidc::land(&linus, &callback).await;
    assert_eq!(landing.location, "/settings?linked=google");
    let linked = linus.get("/api/v1/me/identities").await.json();
    assert_eq!(linked[0]["email"], google_email.as_str());
    // Signing in with that Google account now reaches Linus.
    let browser = app.client();
    assert!(oidc::sign_in(&browser, &google_email).await.signed_in());
    assert_eq!(browser.get("/api/v1/me").await.json()["username"], name.as_str());

    // Another account cannot link the same Google account.
    let other = app.user(&format!("{name}x")).await;
    let callback = oidc::to_callback(&other, &format!("intent=link&login_hint={}", urlencode(&google_email))).await;
    let landing = oidc::land(&other, &callback).await;
    assert_eq!(landing.location, "/settings?error=google_account_in_use");
    assert_eq!(identities(&app).await, 1);

    // Linus has a password, so may unlink.
    linus.delete("/api/v1/me/identities/google").await.expect_status(StatusCode::NO_CONTENT);
    linus.delete("/api/v1/me/identities/google").await.expect_problem(StatusCode::NOT_FOUND, "identity_not_found");
    assert_eq!(identities(&app).await, 0);

    // A Google-only account must set a password before unlinking.
    let email = unique_email("only-google");
    let only = app.client();
    assert!(oidc::sign_in(&only, &email).await.signed_in());
    only.delete("/api/v1/me/identities/google").await.expect_problem(StatusCode::CONFLICT, "password_required");
    assert_eq!(identities(&app).await, 1);
    only.put("/api/v1/me/password", json!({ "current_password": "", "new_password": "a new password" }))
        .await
        .expect_status(StatusCode::NO_CONTENT);
    assert_eq!(only.get("/api/v1/me").await.json()["has_password"], true);
    only.delete("/api/v1/me/identities/google").await.expect_status(StatusCode::NO_CONTENT);
    only.sign_in(&email, "a new password").await.expect_status(StatusCode::OK);
}

#[tokio::test]
#[ignore = "needs the local OpenID provider: run `cargo xtask test`"]
async fn bad_start_requests_are_refused() {
    let app = app().await;
    let browser = app.client();
    browser
        .get("/api/v1/auth/google/start?intent=link")
        .await
        .expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    let problem = browser
        .get("/api/v1/auth/google/start?intent=merge")
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert!(problem.to_string().contains("intent"));
    // A callback with no flow at all.
    let landing =
        oidc::land(&browser, &app.base.join("api/v1/auth/google/callback?code=x&state=y").expect("url")).await;
    assert_refused(&browser, &landing, "google_state_invalid").await;
}

#[tokio::test]
#[ignore = "needs the local OpenID provider: run `cargo xtask test`"]
async fn an_unreachable_provider_is_reported_on_the_sign_in_page() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let app = TestApp::spawn_with(|config| {
        config.google = Some(fleetplane::config::GoogleSettings {
            client_id: oidc::CLIENT_ID.into(),
            client_secret: fleetplane::config::Secret::new(oidc::CLIENT_SECRET),
            issuer: format!("http://{closed}"),
        });
    })
    .await;
    let browser = app.client();
    let response =
        browser.without_redirects().get(app.base.join("api/v1/auth/google/start").expect("url")).send().await;
    let response = response.expect("start");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/login?error=google_unavailable");
}

#[tokio::test]
async fn without_a_client_id_google_sign_in_does_not_exist() {
    let app = TestApp::spawn().await;
    let browser = app.client();
    for path in ["/api/v1/auth/google/start", "/api/v1/auth/google/callback?code=x&state=y"] {
        browser.get(path).await.expect_problem(StatusCode::NOT_FOUND, "google_sign_in_disabled");
    }
    let page = browser.get("/login").await.expect_status(StatusCode::OK);
    assert!(!page.text.contains("Sign in with Google"), "no button when it is not configured");
}
