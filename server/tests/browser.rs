//! The web UI in a real browser: headless Chromium driven over WebDriver (chromedriver), against
//! the real server with the built UI and a real SMTP server.
//!
//! Needs Chromium, chromedriver and the built UI, so it is ignored by a plain `cargo test`;
//! `cargo xtask test` provides them and runs it (`--include-ignored`). Screenshots go to
//! `$FLEETPLANE_TEST_ARTIFACTS`.

#[allow(dead_code)]
#[path = "api/support/mod.rs"]
mod support;

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use hyper_util::client::legacy::connect::HttpConnector;
use sea_orm::EntityTrait;
use serde_json::json;
use support::{PASSWORD, TestApp};

/// Chromium's flags for this sandbox: no GPU, no network except loopback, no background
/// services phoning home.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
];

fn env_path(name: &str, default: &str) -> PathBuf {
    std::env::var_os(name).map_or_else(|| default.into(), PathBuf::from)
}

/// chromedriver on a free loopback port; killed on drop.
struct Driver {
    process: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Driver {
    async fn start() -> (Self, Client) {
        let chromedriver = env_path("FLEETPLANE_TEST_CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = env_path("FLEETPLANE_TEST_CHROMIUM", "/usr/lib/chromium/chromium");
        assert!(chromedriver.is_file(), "chromedriver not found at {}: run `cargo xtask test`", chromedriver.display());
        let port = support::ports::free_port();
        let process = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not listen within 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        });
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities.as_object().expect("object").clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("WebDriver session");
        (Self { process, port, _profile: profile }, client)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = self.port;
    }
}

/// The built UI, which `cargo xtask test` names.
fn site_dir() -> PathBuf {
    std::env::var_os("FLEETPLANE_TEST_SITE_DIR")
        .map(PathBuf::from)
        .expect("FLEETPLANE_TEST_SITE_DIR: run `cargo xtask test`")
}

/// The Content-Security-Policy violations the browser reported to `app` so far, as
/// `directive count` lines from `/metrics`.
fn csp_violations(app: &TestApp) -> Vec<String> {
    app.state
        .metrics
        .render()
        .lines()
        .filter_map(|line| line.strip_prefix("fleetplane_csp_violations_total{directive=\""))
        .map(|rest| rest.replacen("\"}", "", 1))
        .filter(|series| !series.ends_with(" 0"))
        .collect()
}

/// Ends a browser test: fails it if the page broke its Content-Security-Policy anywhere, then
/// closes the browser. A request from the page goes first, so that a report still on its way
/// has been sent.
async fn finish(browser: Client, app: &TestApp) {
    let _ = browser
        .execute_async(
            "const done = arguments[arguments.length - 1]; fetch('/healthz').then(() => done(), () => done());",
            vec![],
        )
        .await;
    let violations = csp_violations(app);
    assert!(violations.is_empty(), "the pages broke their Content-Security-Policy: {violations:?}");
    browser.close().await.expect("close the browser");
}

async fn find(browser: &Client, css: &str) -> Element {
    browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("`{css}` did not appear: {e}"))
}

/// Waits for the page to hydrate: before that, forms are disabled.
async fn hydrated(browser: &Client) {
    find(browser, ".app[data-hydrated]").await;
}

async fn fill(browser: &Client, form: &str, field: &str, value: &str) {
    let input = find(browser, &format!("#{form} [name={field}]")).await;
    input.clear().await.expect("clear");
    input.send_keys(value).await.expect("type");
}

async fn submit(browser: &Client, form: &str) {
    find(browser, &format!("#{form} [type=submit]")).await.click().await.expect("submit");
}

async fn wait_for_path(browser: &Client, path: &str) {
    let started = Instant::now();
    loop {
        let url = browser.current_url().await.expect("url");
        if url.path() == path {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "stayed on {url}, expected {path}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it holds (15 s at most): the UI updates after its API call returns.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    support::eventually(what, 15, check).await;
}

async fn sign_in_with_the_form(browser: &Client, base: &str, email: &str) {
    browser.goto(&format!("{base}/login")).await.expect("open sign-in");
    hydrated(browser).await;
    fill(browser, "login-form", "email", email).await;
    fill(browser, "login-form", "password", PASSWORD).await;
    submit(browser, "login-form").await;
    eventually("the signed-in menu", || async { browser.find(Locator::Css("[data-test=nav-username]")).await.is_ok() })
        .await;
}

async fn text_of(browser: &Client, css: &str) -> String {
    find(browser, css).await.text().await.expect("text")
}

async fn screenshot(browser: &Client, name: &str) {
    let dir = env_path("FLEETPLANE_TEST_ARTIFACTS", "artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    browser.execute("window.scrollTo(0, 0)", vec![]).await.expect("scroll to the top");
    let png = browser.screenshot().await.expect("screenshot");
    let path = dir.join(format!("{name}-{}.png", support::backend()));
    std::fs::write(&path, png).expect("write screenshot");
    eprintln!("screenshot: {}", path.display());
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built UI: run `cargo xtask test`"]
async fn pages_run_under_their_csp_and_a_violation_is_reported() {
    let site = site_dir();
    let app = TestApp::spawn_with(|config| config.site_dir = site).await;
    let (_driver, browser) = Driver::start().await;
    let base = app.base.as_str().trim_end_matches('/');
    browser.goto(&format!("{base}/login")).await.expect("open the sign-in page");
    // The page hydrates: its nonced scripts ran and loaded the wasm.
    hydrated(&browser).await;
    assert!(csp_violations(&app).is_empty(), "{:?}", csp_violations(&app));
    // An inline script without the nonce does not run, and is reported.
    let ran = browser
        .execute(
            "const s = document.createElement('script'); s.textContent = 'window.injected = true'; \
             document.body.appendChild(s); return window.injected === true;",
            vec![],
        )
        .await
        .expect("inject");
    assert_eq!(ran, json!(false), "an inline script without the nonce ran");
    eventually("the violation to be reported", || async {
        csp_violations(&app).iter().any(|series| series.starts_with("script-src"))
    })
    .await;
    browser.close().await.expect("close the browser");
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built UI: run `cargo xtask test`"]
async fn sign_up_verify_rename_and_sign_out_in_a_browser() {
    let site = site_dir();
    assert!(site.join("pkg/fleetplane_web_bg.wasm").is_file(), "the UI is not built in {}", site.display());
    let app = TestApp::spawn_with(|config| config.site_dir = site).await;
    let (_driver, browser) = Driver::start().await;
    let base = app.base.as_str().trim_end_matches('/');

    // Sign up; the API's field errors show next to their fields.
    browser.goto(&format!("{base}/signup")).await.expect("open sign-up");
    hydrated(&browser).await;
    fill(&browser, "signup-form", "email", "not-an-email").await;
    fill(&browser, "signup-form", "username", "ada").await;
    fill(&browser, "signup-form", "password", "short").await;
    submit(&browser, "signup-form").await;
    let email_error = text_of(&browser, "[data-test=field-error][data-field=email]").await;
    assert!(email_error.contains("valid email"), "{email_error}");
    assert!(text_of(&browser, "[data-test=field-error][data-field=password]").await.contains("8 characters"));
    assert!(browser.find(Locator::Css("[data-test=field-error][data-field=username]")).await.is_err());
    fill(&browser, "signup-form", "email", "ada@example.com").await;
    fill(&browser, "signup-form", "username", "ada").await;
    fill(&browser, "signup-form", "password", PASSWORD).await;
    submit(&browser, "signup-form").await;
    wait_for_path(&browser, "/signup/check-email").await;
    assert_eq!(text_of(&browser, "[data-test=check-email-address]").await, "ada@example.com");

    // Follow the link from the email that was delivered, and confirm with the password: that
    // verifies the address and signs in.
    let mail = app.smtp.first_to("ada@example.com").await;
    browser.goto(&mail.link()).await.expect("open the emailed link");
    hydrated(&browser).await;
    fill(&browser, "verify-form", "password", "not the password").await;
    submit(&browser, "verify-form").await;
    let refused = text_of(&browser, "[data-test=field-error][data-field=password]").await;
    assert!(refused.contains("not the password chosen"), "{refused}");
    fill(&browser, "verify-form", "password", PASSWORD).await;
    submit(&browser, "verify-form").await;
    wait_for_path(&browser, "/").await;
    eventually("the signed-in menu", || async { browser.find(Locator::Css("[data-test=nav-username]")).await.is_ok() })
        .await;
    assert_eq!(text_of(&browser, "[data-test=nav-username]").await, "ada");

    // Change the username in settings.
    browser.goto(&format!("{base}/settings")).await.expect("open settings");
    hydrated(&browser).await;
    fill(&browser, "username-form", "username", "countess").await;
    submit(&browser, "username-form").await;
    find(&browser, "[data-test=alert-success]").await;
    hydrated(&browser).await;
    assert_eq!(text_of(&browser, "[data-test=nav-username]").await, "countess");
    let me = app.client();
    me.sign_in("ada@example.com", PASSWORD).await;
    assert_eq!(me.get("/api/v1/me").await.json()["username"], "countess", "the change is stored");
    screenshot(&browser, "settings-after-rename").await;

    // The settings list both sessions, this browser's marked; revoking the other signs it out.
    browser.goto(&format!("{base}/settings")).await.expect("reload settings");
    hydrated(&browser).await;
    eventually("both sessions listed", || async {
        browser.find_all(Locator::Css("[data-test=session-row]")).await.is_ok_and(|rows| rows.len() == 2)
    })
    .await;
    let other = find(&browser, "[data-test=session-row][data-current=false]").await;
    other.find(Locator::Css("[data-test=revoke-session]")).await.expect("revoke button").click().await.expect("revoke");
    find(&browser, "[data-test=revoke-session-confirm]").await.click().await.expect("confirm");
    eventually("one session left", || async {
        browser.find_all(Locator::Css("[data-test=session-row]")).await.is_ok_and(|rows| rows.len() == 1)
    })
    .await;
    find(&browser, "[data-test=session-row][data-current=true] [data-test=current-session]").await;
    assert_eq!(me.get("/api/v1/me").await.status, 401, "the revoked session is signed out at once");
    screenshot(&browser, "settings-sessions").await;

    // Sign out from the user menu.
    find(&browser, "[data-test=nav-username]").await.click().await.expect("open the user menu");
    find(&browser, "[data-test=sign-out]").await.click().await.expect("sign out");
    wait_for_path(&browser, "/login").await;
    hydrated(&browser).await;
    let status = browser
        .execute_async(
            "const done = arguments[arguments.length - 1]; fetch('/api/v1/me').then(r => done(r.status));",
            vec![],
        )
        .await
        .expect("fetch");
    assert_eq!(status, json!(401), "the browser's session is gone");
    screenshot(&browser, "signed-out").await;

    finish(browser, &app).await;
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built UI: run `cargo xtask test`"]
async fn create_an_organization_invite_a_member_and_change_their_role_in_a_browser() {
    let site = site_dir();
    let app = TestApp::spawn_with(|config| config.site_dir = site).await;
    let ada = app.user("ada").await;
    let grace = app.user("grace").await;
    let (_driver, browser) = Driver::start().await;
    let base = app.base.as_str().trim_end_matches('/');

    sign_in_with_the_form(&browser, base, "ada@example.com").await;
    browser.goto(&format!("{base}/orgs")).await.expect("open organizations");
    hydrated(&browser).await;
    find(&browser, "[data-test=org-row][data-org=ada]").await;
    fill(&browser, "org-form", "name", "acme").await;
    fill(&browser, "org-form", "display_name", "Acme Corp").await;
    submit(&browser, "org-form").await;
    wait_for_path(&browser, "/orgs/acme").await;
    // The top bar now leads to the new organization's clusters and cloud accounts.
    eventually("the top bar to follow the organization", || async {
        text_of(&browser, "[data-test=nav-org] .nav-org-name").await == "acme"
            && nav_href(&browser, "nav-clusters").await == "/orgs/acme/clusters"
    })
    .await;
    assert_eq!(nav_href(&browser, "nav-cloud-accounts").await, "/orgs/acme/cloud-accounts");

    // The invitation is listed as sent, and nobody joined yet.
    fill(&browser, "invite-form", "email", "grace@example.com").await;
    find(&browser, "#invite-form select[name=role]").await.select_by_value("operator").await.expect("pick a role");
    submit(&browser, "invite-form").await;
    find(&browser, "[data-test=invitation-row][data-email='grace@example.com']").await;
    assert!(browser.find(Locator::Css("[data-test=member-row][data-username=grace]")).await.is_err());
    screenshot(&browser, "org-invitation-sent").await;

    // Grace accepts (in her own browser: see the invitations test); she then shows as a member.
    let received = grace.get("/api/v1/me/invitations").await.json();
    let id = received[0]["id"].as_str().expect("an invitation for grace");
    grace.post_empty(&format!("/api/v1/me/invitations/{id}/accept")).await.expect_status(reqwest::StatusCode::OK);
    browser.refresh().await.expect("reload the organization");
    hydrated(&browser).await;
    let row = "[data-test=member-row][data-username=grace]";
    find(&browser, row).await;
    let role_select = find(&browser, &format!("{row} [data-test=member-role]")).await;
    assert_eq!(role_select.prop("value").await.expect("value").as_deref(), Some("operator"));
    assert!(browser.find(Locator::Css("[data-test=invitation-row]")).await.is_err(), "accepted: no longer open");

    role_select.select_by_value("admin").await.expect("change the role");
    let members = || async { ada.get("/api/v1/orgs/acme/members").await.json() };
    eventually("grace to become an admin", || async {
        members()
            .await
            .as_array()
            .is_some_and(|list| list.iter().any(|m| m["username"] == "grace" && m["role"] == "admin"))
    })
    .await;
    screenshot(&browser, "org-members").await;

    // The last owner cannot be demoted: the UI shows why and keeps the real role.
    let own_select = find(&browser, "[data-test=member-row][data-username=ada] [data-test=member-role]").await;
    own_select.select_by_value("viewer").await.expect("try to demote");
    let error = text_of(&browser, "[data-test=alert-error]").await;
    assert!(error.contains("at least one owner"), "{error}");
    eventually("the select to show the real role again", || async {
        let select = find(&browser, "[data-test=member-row][data-username=ada] [data-test=member-role]").await;
        select.prop("value").await.ok().flatten().as_deref() == Some("owner")
    })
    .await;

    // A page outside any organization, loaded afresh, still leads back to the one last opened.
    browser.goto(&format!("{base}/settings")).await.expect("open settings");
    hydrated(&browser).await;
    assert_eq!(nav_href(&browser, "nav-clusters").await, "/orgs/acme/clusters");
    find(&browser, "[data-test=nav-clusters]").await.click().await.expect("open clusters from the top bar");
    wait_for_path(&browser, "/orgs/acme/clusters").await;
    finish(browser, &app).await;
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built UI: run `cargo xtask test`"]
async fn an_invitee_accepts_one_invitation_and_declines_another_in_a_browser() {
    let site = site_dir();
    let app = TestApp::spawn_with(|config| config.site_dir = site).await;
    let ada = app.user("ada").await;
    app.user("grace").await;
    for org in ["acme", "globex"] {
        ada.post("/api/v1/orgs", json!({ "name": org })).await.expect_status(reqwest::StatusCode::CREATED);
        ada.post(
            &format!("/api/v1/orgs/{org}/invitations"),
            json!({ "email": "grace@example.com", "role": "operator" }),
        )
        .await
        .expect_status(reqwest::StatusCode::CREATED);
    }
    let (_driver, browser) = Driver::start().await;
    let base = app.base.as_str().trim_end_matches('/');
    sign_in_with_the_form(&browser, base, "grace@example.com").await;

    // The notification leads to the invitations.
    browser.goto(&format!("{base}/invitations")).await.expect("open the invitations");
    hydrated(&browser).await;
    eventually("both invitations listed", || async {
        browser.find_all(Locator::Css("[data-test=invitation]")).await.is_ok_and(|items| items.len() == 2)
    })
    .await;
    screenshot(&browser, "invitations").await;
    find(&browser, "[data-test=invitation][data-org=globex] [data-test=decline-invitation]")
        .await
        .click()
        .await
        .expect("decline");
    find(&browser, "[data-test=alert-success]").await;
    eventually("one invitation left", || async {
        browser.find_all(Locator::Css("[data-test=invitation]")).await.is_ok_and(|items| items.len() == 1)
    })
    .await;
    find(&browser, "[data-test=invitation][data-org=acme] [data-test=accept-invitation]")
        .await
        .click()
        .await
        .expect("accept");
    wait_for_path(&browser, "/orgs/acme").await;
    hydrated(&browser).await;
    find(&browser, "[data-test=member-row][data-username=grace]").await;
    let members = ada.get("/api/v1/orgs/acme/members").await.json();
    assert!(members.as_array().expect("members").iter().any(|m| m["username"] == "grace" && m["role"] == "operator"));
    let globex = ada.get("/api/v1/orgs/globex/members").await.json();
    assert_eq!(globex.as_array().map(Vec::len), Some(1), "declined: not a member of globex");
    finish(browser, &app).await;
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the built UI: run `cargo xtask test`"]
async fn forgot_password_then_reset_it_from_the_emailed_link_in_a_browser() {
    let site = site_dir();
    let app = TestApp::spawn_with(|config| config.site_dir = site).await;
    let ada = app.user("ada").await;
    let (_driver, browser) = Driver::start().await;
    let base = app.base.as_str().trim_end_matches('/');

    browser.goto(&format!("{base}/login")).await.expect("open sign-in");
    hydrated(&browser).await;
    fill(&browser, "login-form", "email", "ada@example.com").await;
    find(&browser, "[data-test=forgot-password-link]").await.click().await.expect("forgot password");
    wait_for_path(&browser, "/forgot-password").await;
    hydrated(&browser).await;
    let typed = find(&browser, "#forgot-form [name=email]").await.prop("value").await.expect("value");
    assert_eq!(typed.as_deref(), Some("ada@example.com"), "the address typed on the sign-in page is kept");
    submit(&browser, "forgot-form").await;
    let sent = text_of(&browser, "[data-test=reset-sent]").await;
    assert!(sent.contains("If an account uses this address"), "{sent}");

    let link = app.smtp.first_with_subject("ada@example.com", "Reset your Fleetplane password").await.link();
    browser.goto(&link).await.expect("open the emailed link");
    hydrated(&browser).await;
    fill(&browser, "reset-form", "new_password", "short").await;
    submit(&browser, "reset-form").await;
    find(&browser, "[data-test=field-error][data-field=new_password]").await;
    fill(&browser, "reset-form", "new_password", "a brand new password").await;
    submit(&browser, "reset-form").await;
    wait_for_path(&browser, "/").await;
    eventually("the signed-in menu", || async { browser.find(Locator::Css("[data-test=nav-username]")).await.is_ok() })
        .await;
    assert_eq!(ada.get("/api/v1/me").await.status, 401, "every other session ended");
    app.client().sign_in("ada@example.com", "a brand new password").await.expect_status(reqwest::StatusCode::OK);

    // The link works once.
    find(&browser, "[data-test=nav-username]").await.click().await.expect("open the user menu");
    find(&browser, "[data-test=sign-out]").await.click().await.expect("sign out");
    wait_for_path(&browser, "/login").await;
    browser.goto(&link).await.expect("open the link again");
    hydrated(&browser).await;
    fill(&browser, "reset-form", "new_password", "yet another password").await;
    submit(&browser, "reset-form").await;
    find(&browser, "[data-test=reset-link-failed]").await;
    screenshot(&browser, "reset-link-used").await;
    finish(browser, &app).await;
}

/// The path a top-bar link leads to.
async fn nav_href(browser: &Client, test: &str) -> String {
    let link = find(browser, &format!("[data-test={test}]")).await;
    link.attr("href").await.expect("href").unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver, the built UI and moto: run `cargo xtask test`"]
async fn link_an_aws_account_against_moto_in_a_browser() {
    use support::clouds::Moto;

    let site = site_dir();
    let moto = Moto::start().await;
    let key = moto.create_user("platform", &["s3:ListAllMyBuckets"]).await;
    moto.create_bucket("acme-tf-state").await;
    moto.enforce_auth().await;
    let moto_url = moto.url.clone();
    let app = TestApp::spawn_with(|config| {
        config.site_dir = site;
        config.cloud.aws_endpoint_url = Some(moto_url);
    })
    .await;
    app.user("ada").await;
    let (_driver, browser) = Driver::start().await;
    let base = app.base.as_str().trim_end_matches('/');

    sign_in_with_the_form(&browser, base, "ada@example.com").await;
    browser.goto(&format!("{base}/orgs/ada")).await.expect("open the organization");
    hydrated(&browser).await;
    find(&browser, "[data-test=cloud-accounts-link]").await.click().await.expect("open cloud accounts");
    wait_for_path(&browser, "/orgs/ada/cloud-accounts").await;
    hydrated(&browser).await;

    // A wrong secret first: AWS's refusal shows, nothing is added.
    find(&browser, "#cloud-account-form select[name=provider]").await.select_by_value("aws").await.expect("provider");
    fill(&browser, "cloud-account-form", "name", "AWS platform").await;
    find(&browser, "#cloud-account-form select[name=environment]")
        .await
        .select_by_value("prod")
        .await
        .expect("environment");
    fill(&browser, "cloud-account-form", "access_key_id", &key.access_key_id).await;
    fill(&browser, "cloud-account-form", "secret_access_key", &"x".repeat(40)).await;
    submit(&browser, "cloud-account-form").await;
    let refusal = text_of(&browser, "[data-test=alert-error]").await;
    assert!(refusal.contains("SignatureDoesNotMatch"), "{refusal}");
    assert!(browser.find(Locator::Css("[data-test=cloud-account-row]")).await.is_err());

    // The right secret: verified, with the identity moto resolved.
    fill(&browser, "cloud-account-form", "secret_access_key", &key.secret_access_key).await;
    submit(&browser, "cloud-account-form").await;
    let row = "[data-test=cloud-account-row][data-name='AWS platform']";
    find(&browser, &format!("{row}[data-status=verified]")).await;
    let identity = text_of(&browser, &format!("{row} [data-test=cloud-account-identity]")).await;
    assert!(identity.contains("123456789012") && identity.contains("user/platform"), "{identity}");
    let secret_input = find(&browser, "#cloud-account-form [name=secret_access_key]").await;
    assert_eq!(secret_input.prop("value").await.expect("value").as_deref(), Some(""), "the secret is cleared");
    assert!(!browser.source().await.expect("page").contains(&key.secret_access_key));

    find(&browser, &format!("{row} [data-test=list-buckets]")).await.click().await.expect("list buckets");
    find(&browser, "[data-test=bucket][data-name=acme-tf-state]").await;
    screenshot(&browser, "cloud-account-linked").await;

    let stored = app.client();
    stored.sign_in("ada@example.com", PASSWORD).await;
    let accounts = stored.get("/api/v1/orgs/ada/cloud-accounts").await.json();
    assert_eq!(accounts[0]["status"], "verified");
    assert_eq!(accounts[0]["environment"], "prod");
    finish(browser, &app).await;
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver, the built UI and Terraform: run `cargo xtask test`"]
async fn create_watch_and_delete_a_local_cluster_in_a_browser() {
    use fleetplane::config::ExecutorChoice;
    use support::runs::with_workers;

    let site = site_dir();
    let app = TestApp::spawn_with(|config| {
        config.site_dir = site;
        with_workers(config, ExecutorChoice::Process, 1);
    })
    .await;
    app.user("ada").await;
    let (_driver, browser) = Driver::start().await;
    let base = app.base.as_str().trim_end_matches('/');

    sign_in_with_the_form(&browser, base, "ada@example.com").await;
    // The home page shows the way to a first cluster; the top bar leads to the clusters.
    browser.goto(&format!("{base}/")).await.expect("open the home page");
    hydrated(&browser).await;
    let overview = "[data-test=org-overview][data-org=ada]";
    let first_account = find(&browser, &format!("{overview} [data-test=first-cloud-account]")).await;
    assert!(first_account.attr("href").await.expect("href").is_some_and(|href| href.ends_with("#add-account")));
    find(&browser, &format!("{overview} [data-test=first-cluster]")).await;
    screenshot(&browser, "home-first-steps").await;
    find(&browser, "[data-test=nav-clusters]").await.click().await.expect("open clusters from the top bar");
    wait_for_path(&browser, "/orgs/ada/clusters").await;
    // No cloud account is linked, so the process executor's notice and the local simulation show.
    let notice = text_of(&browser, "[data-test=executor-notice]").await;
    assert!(notice.to_lowercase().contains("terraform"), "{notice}");
    assert_eq!(
        find(&browser, "#cluster-form select[name=target]").await.prop("value").await.expect("target").as_deref(),
        Some("local")
    );

    // The spec is checked as it is typed: a bad subnet is named under its field, before submit.
    fill(&browser, "cluster-form", "name_prefix", "shop").await;
    fill(&browser, "cluster-form", "name_suffix", "demo").await;
    fill(&browser, "cluster-form", "vpc_cidr", "192.168.0.0/16").await;
    let error = text_of(&browser, "#cluster-form [data-test=field-error][data-field^=public_subnets]").await;
    assert!(error.contains("192.168.0.0/16"), "{error}");
    fill(&browser, "cluster-form", "vpc_cidr", "10.0.0.0/16").await;
    eventually("the spec to be accepted", || async {
        text_of(&browser, "[data-test=cluster-check]").await.contains("Looks good")
    })
    .await;
    assert_eq!(text_of(&browser, "[data-test=cluster-name-preview]").await, "shop-demo");
    submit(&browser, "cluster-form").await;

    // The cluster page follows the run until the cluster is ready.
    eventually("the cluster page", || async {
        browser.current_url().await.is_ok_and(|url| url.path().starts_with("/orgs/ada/clusters/"))
    })
    .await;
    let ready = "[data-test=cluster-status][data-status=ready]";
    wait_long(&browser, ready, 120).await;
    let outputs = text_of(&browser, "[data-test=cluster-outputs]").await;
    assert!(outputs.contains("shop-demo"), "{outputs}");
    find(&browser, "[data-test=state-version]").await;
    find(&browser, "[data-test=state-unlocked]").await;
    screenshot(&browser, "cluster-ready").await;

    // The run's page has its plan summary and Terraform's log.
    find(&browser, "[data-test=run-row][data-status=succeeded] a").await.click().await.expect("open the run");
    eventually("the run page", || async {
        browser.current_url().await.is_ok_and(|url| url.path().starts_with("/runs/"))
    })
    .await;
    let summary = text_of(&browser, "[data-test=plan-summary]").await;
    assert!(summary.contains('3'), "{summary}");
    eventually("the log", || async {
        browser.find(Locator::Css("[data-test=run-log]")).await.is_ok()
            && text_of(&browser, "[data-test=run-log]").await.contains("Apply complete!")
    })
    .await;
    screenshot(&browser, "run-log").await;

    // The home page lists the cluster with its status and leads back to it.
    browser.goto(&format!("{base}/")).await.expect("open the home page");
    let listed = find(&browser, "[data-test=home-cluster][data-name=shop-demo][data-status=ready]").await;
    screenshot(&browser, "home-clusters").await;
    listed.find(Locator::Css("a.cluster-link")).await.expect("the cluster's link").click().await.expect("open it");
    eventually("the cluster page", || async {
        browser.current_url().await.is_ok_and(|url| url.path().starts_with("/orgs/ada/clusters/"))
    })
    .await;

    // Deleting asks for the name, then destroys.
    hydrated(&browser).await;
    find(&browser, "[data-test=delete-cluster]").await.click().await.expect("delete");
    let confirm = find(&browser, "[data-test=delete-cluster-confirm]").await;
    assert!(!confirm.is_enabled().await.expect("enabled"), "disabled until the name is typed");
    find(&browser, "[data-test=delete-cluster-input]").await.send_keys("shop-demo").await.expect("type the name");
    confirm.click().await.expect("confirm");
    wait_long(&browser, "[data-test=cluster-status][data-status=destroyed]", 120).await;
    assert!(browser.find(Locator::Css("[data-test=delete-cluster]")).await.is_err(), "nothing left to delete");

    let api = app.client();
    api.sign_in("ada@example.com", PASSWORD).await;
    let clusters = api.get("/api/v1/orgs/ada/clusters").await.json();
    assert_eq!(clusters[0]["status"], "destroyed", "{clusters}");
    finish(browser, &app).await;
}

/// Waits up to `seconds` for `css`: provisioning takes longer than a page update.
async fn wait_long(browser: &Client, css: &str, seconds: u64) {
    browser
        .wait()
        .at_most(Duration::from_secs(seconds))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("`{css}` did not appear within {seconds} s: {e}"));
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver, the built UI and the local OpenID provider: run `cargo xtask test`"]
async fn sign_in_with_google_set_a_password_and_see_a_refusal_in_a_browser() {
    let site = site_dir();
    let provider = support::oidc::OidcProvider::shared();
    let app = TestApp::spawn_with(|config| {
        config.site_dir = site;
        provider.configure(config);
    })
    .await;
    let (_driver, browser) = Driver::start().await;
    let base = app.base.as_str().trim_end_matches('/');

    // "Sign in with Google", then the provider's own sign-in page.
    browser.goto(&format!("{base}/login")).await.expect("open sign-in");
    hydrated(&browser).await;
    find(&browser, "[data-test=google-sign-in]").await.click().await.expect("sign in with Google");
    let email = find(&browser, "#op-email").await;
    email.send_keys("katherine.johnson@example.com").await.expect("type the email");
    find(&browser, "#op-submit").await.click().await.expect("continue at the provider");

    // Back at Fleetplane, signed in to a new account named after the address.
    eventually("the signed-in menu", || async { browser.find(Locator::Css("[data-test=nav-username]")).await.is_ok() })
        .await;
    assert_eq!(text_of(&browser, "[data-test=nav-username]").await, "katherine-johnson");
    wait_for_path(&browser, "/").await;

    // Settings show the linked Google account; a password must be set before unlinking it.
    browser.goto(&format!("{base}/settings")).await.expect("open settings");
    hydrated(&browser).await;
    assert_eq!(text_of(&browser, "[data-test=linked-email]").await, "katherine.johnson@example.com");
    find(&browser, "[data-test=unlink-needs-password]").await;
    assert!(browser.find(Locator::Css("#current-password")).await.is_err(), "no current password to ask for");
    fill(&browser, "password-form", "new_password", PASSWORD).await;
    submit(&browser, "password-form").await;
    find(&browser, "[data-test=alert-success]").await;
    hydrated(&browser).await;
    find(&browser, "[data-test=unlink-google]").await;
    screenshot(&browser, "settings-google-linked").await;
    let password_client = app.client();
    password_client.sign_in("katherine.johnson@example.com", PASSWORD).await.expect_status(reqwest::StatusCode::OK);

    // Sign out; someone who declines at the provider comes back to an explanation.
    find(&browser, "[data-test=nav-username]").await.click().await.expect("open the user menu");
    find(&browser, "[data-test=sign-out]").await.click().await.expect("sign out");
    wait_for_path(&browser, "/login").await;
    provider.account("declines@example.com", true, Some("access_denied")).await;
    hydrated(&browser).await;
    find(&browser, "[data-test=google-sign-in]").await.click().await.expect("sign in with Google");
    find(&browser, "#op-email").await.send_keys("declines@example.com").await.expect("type the email");
    find(&browser, "#op-submit").await.click().await.expect("continue at the provider");
    find(&browser, "[data-error=google_access_denied] [data-test=alert-error]").await;
    wait_for_path(&browser, "/login").await;
    screenshot(&browser, "google-declined").await;
    assert!(browser.find(Locator::Css("[data-test=nav-username]")).await.is_err(), "not signed in");

    finish(browser, &app).await;
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver, the built UI and Terraform: run `cargo xtask test`"]
async fn a_run_streams_live_the_badge_turns_ready_and_the_bell_counts_in_a_browser() {
    use fleetplane::config::ExecutorChoice;
    use support::runs::{local_cluster, with_workers};

    let site = site_dir();
    let app = TestApp::spawn_with(|config| {
        config.site_dir = site;
        with_workers(config, ExecutorChoice::Process, 1);
    })
    .await;
    let ada = app.user("ada").await;
    let (_driver, browser) = Driver::start().await;
    let base = app.base.as_str().trim_end_matches('/');
    sign_in_with_the_form(&browser, base, "ada@example.com").await;
    assert!(browser.find(Locator::Css("[data-test=bell-count]")).await.is_err(), "nothing unread yet");

    // A slow simulated apply: its log arrives line by line while the page is open.
    let created = ada.post("/api/v1/orgs/ada/clusters", local_cluster("live", json!({ "step_seconds": 3 }))).await;
    let created = created.json();
    let run = created["run"]["id"].as_str().expect("run").to_owned();
    browser.goto(&format!("{base}/runs/{run}")).await.expect("open the run");
    hydrated(&browser).await;
    wait_long(&browser, "[data-test=log-line]", 60).await;
    let status = ada.get(&format!("/api/v1/runs/{run}")).await.json()["status"].clone();
    assert!(
        !matches!(status.as_str(), Some("succeeded" | "failed")),
        "lines showed while the run was still going ({status})"
    );
    screenshot(&browser, "run-log-live").await;

    // The clusters list: the badge turns ready by itself, and the bell counts the run's success.
    browser.goto(&format!("{base}/orgs/ada/clusters")).await.expect("open clusters");
    hydrated(&browser).await;
    wait_long(&browser, "[data-test=cluster-row][data-status=ready]", 120).await;
    eventually("the bell to count one", || async {
        browser.find(Locator::Css("[data-test=bell-count]")).await.is_ok()
            && text_of(&browser, "[data-test=bell-count]").await == "1"
    })
    .await;
    find(&browser, "[data-test=toast]").await;
    screenshot(&browser, "bell-and-toast").await;

    // Open the bell, read the notification: the count goes away, here and in the API.
    find(&browser, "[data-test=bell] summary").await.click().await.expect("open the bell");
    let item = text_of(&browser, "[data-test=bell-item]").await;
    assert!(item.contains("succeeded"), "{item}");
    find(&browser, "[data-test=bell-mark-read]").await.click().await.expect("mark read");
    eventually("the count to go", || async { browser.find(Locator::Css("[data-test=bell-count]")).await.is_err() })
        .await;
    assert_eq!(ada.get("/api/v1/notifications/unread-count").await.json()["count"], 0);
    finish(browser, &app).await;
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver, the built UI and Terraform: run `cargo xtask test`"]
async fn a_run_log_survives_a_network_drop_in_a_browser() {
    use fleetplane::config::ExecutorChoice;
    use relay::Relay;
    use support::runs::{local_cluster, with_workers};

    // The browser reaches the server through a relay that can drop its connections.
    let relay = Relay::start().await;
    let base = format!("http://{}", relay.addr());
    let site = site_dir();
    let app = TestApp::spawn_with(|config| {
        config.site_dir = site;
        config.public_url = format!("{base}/").parse().expect("url");
        with_workers(config, ExecutorChoice::Process, 1);
    })
    .await;
    relay.forward_to(app.state.config.listen);
    let ada = app.user("ada").await;
    let (_driver, browser) = Driver::start().await;
    sign_in_with_the_form(&browser, &base, "ada@example.com").await;

    let created = ada.post("/api/v1/orgs/ada/clusters", local_cluster("drop", json!({ "step_seconds": 2 }))).await;
    let run = created.json()["run"]["id"].as_str().expect("run").to_owned();
    browser.goto(&format!("{base}/runs/{run}")).await.expect("open the run");
    hydrated(&browser).await;
    wait_long(&browser, "[data-test=log-line]", 60).await;

    // The network drops while the log is streaming.
    let shown_before = page_seqs(&browser).await.len();
    relay.cut();
    let status = ada.get(&format!("/api/v1/runs/{run}")).await.json()["status"].clone();
    assert!(!matches!(status.as_str(), Some("succeeded" | "failed")), "the run was still going ({status})");

    // The page reconnects by itself and, once the run is over, shows every stored line once,
    // in order: nothing missed across the drop, nothing twice.
    let started = Instant::now();
    loop {
        let status = ada.get(&format!("/api/v1/runs/{run}")).await.json()["status"].clone();
        if matches!(status.as_str(), Some("succeeded" | "failed" | "canceled")) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(180), "the run did not end ({status})");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let stored = stored_seqs(&ada, &run).await;
    assert!(stored.len() > shown_before, "lines came after the drop");
    eventually("the page to show the whole log", || async { page_seqs(&browser).await == stored }).await;
    screenshot(&browser, "run-log-after-drop").await;
    finish(browser, &app).await;
}

/// The sequence numbers of the log lines the page shows, in page order.
async fn page_seqs(browser: &Client) -> Vec<i64> {
    let seqs = browser
        .execute("return [...document.querySelectorAll('[data-test=log-line]')].map(line => line.dataset.seq);", vec![])
        .await
        .expect("read the page's lines");
    seqs.as_array()
        .expect("an array")
        .iter()
        .map(|seq| seq.as_str().and_then(|seq| seq.parse().ok()).expect("a numeric data-seq"))
        .collect()
}

/// The sequence numbers of the run's stored log, in order.
async fn stored_seqs(client: &support::Client, run: &str) -> Vec<i64> {
    let mut seqs = Vec::new();
    let mut after = 0;
    loop {
        let page = client.get(&format!("/api/v1/runs/{run}/logs?after={after}")).await.json();
        seqs.extend(page["chunks"].as_array().expect("chunks").iter().map(|line| line["seq"].as_i64().expect("seq")));
        after = page["next_after"].as_i64().expect("next_after");
        if page["complete"] == true {
            return seqs;
        }
    }
}

/// A TCP relay in front of the server that can cut every connection through it at once: a
/// network drop, for clients that must survive one. New connections are relayed as before.
mod relay {
    use std::{
        net::SocketAddr,
        sync::{Arc, OnceLock},
    };

    use tokio::{net::TcpListener, sync::watch};

    pub struct Relay {
        addr: SocketAddr,
        target: Arc<OnceLock<SocketAddr>>,
        cuts: watch::Sender<u64>,
        accepting: tokio::task::JoinHandle<()>,
    }

    impl Relay {
        /// Listens on a free loopback port; relays once [`Relay::forward_to`] says where to.
        pub async fn start() -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the relay");
            let addr = listener.local_addr().expect("relay address");
            let target = Arc::new(OnceLock::<SocketAddr>::new());
            let (cuts, _) = watch::channel(0);
            let accepting = tokio::spawn({
                let (target, cuts) = (target.clone(), cuts.clone());
                async move {
                    while let Ok((mut client, _)) = listener.accept().await {
                        let Some(target) = target.get().copied() else { continue };
                        let mut cut = cuts.subscribe();
                        tokio::spawn(async move {
                            let Ok(mut server) = tokio::net::TcpStream::connect(target).await else { return };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                _ = cut.changed() => {}
                            }
                        });
                    }
                }
            });
            Self { addr, target, cuts, accepting }
        }

        pub fn addr(&self) -> SocketAddr {
            self.addr
        }

        pub fn forward_to(&self, target: SocketAddr) {
            self.target.set(target).expect("the relay's target is set once");
        }

        /// Drops every connection open through the relay, both ways.
        pub fn cut(&self) {
            self.cuts.send_modify(|generation| *generation += 1);
        }
    }

    impl Drop for Relay {
        fn drop(&mut self) {
            self.accepting.abort();
        }
    }
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver, the built UI, Docker and the fleet-telemetry image: run `cargo xtask test`"]
async fn deploy_fleet_telemetry_from_the_ui_and_watch_simulated_bikes_live_in_a_browser() {
    use fleetplane::config::ExecutorChoice;
    use support::runs::{docker_available, seed_cluster, with_workers};

    assert!(docker_available(), "FLEETPLANE_TEST_DOCKER is not set: run `cargo xtask test`");
    let site = site_dir();
    let app = TestApp::spawn_with(|config| {
        config.site_dir = site;
        with_workers(config, ExecutorChoice::Docker, 1);
    })
    .await;
    app.user("ada").await;
    let cluster = seed_cluster(app.db(), "ada", "local", "ready").await;
    let (_driver, browser) = Driver::start().await;
    let base = app.base.as_str().trim_end_matches('/');
    sign_in_with_the_form(&browser, base, "ada@example.com").await;

    // Deploy fleet-telemetry from the cluster page, with the catalog's defaults.
    browser.goto(&format!("{base}/orgs/ada/clusters/{cluster}")).await.expect("open the cluster");
    hydrated(&browser).await;
    let chosen = find(&browser, "#deploy-form select[name=service]").await.prop("value").await.expect("service");
    assert_eq!(chosen.as_deref(), Some("fleet-telemetry"));
    submit(&browser, "deploy-form").await;
    find(&browser, "[data-test=queued-deployment-link]").await.click().await.expect("follow the deployment");
    eventually("the deployment page", || async {
        browser.current_url().await.is_ok_and(|url| url.path().starts_with("/orgs/ada/deployments/"))
    })
    .await;
    wait_long(&browser, "[data-test=deployment-status][data-status=healthy]", 240).await;
    let outputs = text_of(&browser, "[data-test=deployment-outputs]").await;
    assert!(outputs.contains("http://127.0.0.1:"), "{outputs}");
    screenshot(&browser, "deployment-healthy").await;
    let path = browser.current_url().await.expect("url").path().to_owned();
    let id = uuid::Uuid::parse_str(path.rsplit('/').next().expect("id")).expect("the deployment's id");

    // The fleet is empty until bikes are registered.
    find(&browser, "[data-test=open-fleet]").await.click().await.expect("open the fleet");
    wait_for_path(&browser, &format!("{path}/fleet")).await;
    wait_long(&browser, "[data-test=empty]", 30).await;

    // Five simulated bikes, registered through the fleet's API with their own certificates,
    // riding against the deployed service.
    let deployment = fleetplane::entity::deployments::Entity::find_by_id(id)
        .one(app.db())
        .await
        .expect("read")
        .expect("the deployment");
    let url = deployment.outputs.as_ref().and_then(|o| o["url"].as_str()).expect("its URL").to_owned();
    let token = fleetplane::deployments::service_token(&app.state, &deployment).expect("open").expect("a token");
    let mut config = fleet_sim::SimConfig {
        api: url,
        token: fleet_sim::Token::new(token),
        bikes: 5,
        duration: None,
        seed: Some(11),
        progress_every: Duration::from_secs(3600),
        ..fleet_sim::SimConfig::default()
    };
    config.ride.first_trip_within = Duration::from_secs(1);
    config.ride.sample_every = Duration::from_millis(500);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sim = tokio::spawn(fleet_sim::run(config, async move {
        let _ = stopped.await;
    }));

    // They come online on the fleet page (it looks again every few seconds).
    let online = || async {
        browser.find_all(Locator::Css("[data-test=bike-row][data-online=true]")).await.expect("rows").len()
    };
    support::eventually("5 bikes online (or the simulator stopped)", 180, || async {
        online().await == 5 || sim.is_finished()
    })
    .await;
    assert!(!sim.is_finished(), "the simulator stopped: {:?}", sim.await);
    screenshot(&browser, "fleet-bikes-online").await;

    // A bike's page: its latest state, its packets live, and the chart moving as they come.
    find(&browser, "[data-test=bike-row] a").await.click().await.expect("open a bike");
    wait_long(&browser, "[data-test=live-feed] li[data-kind=telemetry]", 60).await;
    let points = || async {
        find(&browser, "[data-test=bike-chart]")
            .await
            .attr("data-points")
            .await
            .expect("attr")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0)
    };
    let before = points().await;
    support::eventually("the chart moving", 60, || async { points().await > before }).await;
    let speed = text_of(&browser, "[data-test=bike-speed]").await;
    assert!(speed.ends_with("km/h"), "{speed}");
    // The certificate the simulator was issued is listed; an owner issues another.
    find(&browser, "[data-test=certificate-row]").await;
    find(&browser, "[data-test=issue-certificate]").await.click().await.expect("issue");
    let download = find(&browser, "[data-test=certificate-bundle] [data-test=download-key]").await;
    assert!(download.attr("href").await.expect("href").is_some_and(|href| href.contains("PRIVATE%20KEY")));
    screenshot(&browser, "fleet-bike-live").await;

    // The quarantine page answers too.
    find(&browser, "nav.tabs a[href$='/fleet/quarantine']").await.click().await.expect("open the quarantine");
    wait_for_path(&browser, &format!("{path}/fleet/quarantine")).await;
    wait_long(&browser, "[data-test=quarantine-table], [data-test=empty]", 30).await;

    let _ = stop.send(());
    let report = sim.await.expect("the simulator's task").expect("the simulator ran");
    assert!(report.is_success(), "{report}");
    // Uninstall, so that no container outlives the test.
    let api = app.client();
    api.sign_in("ada@example.com", PASSWORD).await;
    let uninstall = api.delete(&format!("/api/v1/orgs/ada/deployments/{id}")).await.json();
    let run = uninstall["run"]["id"].as_str().expect("run").to_owned();
    let ended = support::runs::wait_until_finished(&api, &run, 120).await;
    assert_eq!(ended["status"], "succeeded", "{ended}");
    finish(browser, &app).await;
}
