//! Findings of a black-box probe, each fixed: what an attacker tried, and that it no longer
//! works.

use std::time::Duration;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use fleetplane::config::{Config, HttpSettings, Limit};

use crate::support::{Client, PASSWORD, Resp, TestApp, runs::local_cluster, sse::Stream};

/// Generous: CI's machine may be busy.
const WAIT: Duration = Duration::from_secs(30);

/// A response read off a raw connection.
struct RawResponse {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl RawResponse {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.head))
    }
}

/// Sends `head` (a request head, without the blank line) and `body` on a connection of its own,
/// and reads the response that comes back, without sending anything more: a server that waits
/// for the rest of a body it was promised fails the test.
async fn send_raw(app: &TestApp, head: &str, body: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(app.state.config.listen).await.expect("connect");
    stream.write_all(format!("{head}\r\n\r\n").as_bytes()).await.expect("write head");
    stream.write_all(body).await.expect("write body");
    let read = async {
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        let end = loop {
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            let n = stream.read(&mut buffer).await.expect("read");
            assert!(n > 0, "the connection closed before a response: {}", String::from_utf8_lossy(&received));
            received.extend_from_slice(&buffer[..n]);
        };
        let head = String::from_utf8_lossy(&received[..end]).into_owned();
        let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).expect("a status line");
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = received[end + 4..].to_vec();
        while body.len() < length {
            let n = stream.read(&mut buffer).await.expect("read");
            assert!(n > 0, "the connection closed within the response's body");
            body.extend_from_slice(&buffer[..n]);
        }
        RawResponse { status, head, body }
    };
    tokio::time::timeout(WAIT, read).await.expect("an answer without the rest of the body")
}

/// ada's cluster, and the token of the run that creates it, as a worker holds it.
async fn run_token(app: &TestApp) -> (String, String) {
    let ada = app.user("ada").await;
    let created = ada.post("/api/v1/orgs/ada/clusters", local_cluster("dev", json!(null))).await;
    let cluster = created.expect_status(StatusCode::CREATED).json()["cluster"]["id"].as_str().expect("id").to_owned();
    let claimed = fleetplane::queue::claim(app.db(), "test-worker", Duration::from_secs(300))
        .await
        .expect("claim")
        .expect("a run");
    (cluster, claimed.token)
}

fn basic(token: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("run:{token}")))
}

#[tokio::test]
async fn an_anonymous_state_upload_is_answered_before_its_body_is_read() {
    let app = TestApp::spawn().await;
    let cluster = uuid::Uuid::now_v7();
    // A gigabyte declared, none of it sent; then 10 MiB, under the state limit, with a forged
    // token. Each is answered at once.
    for (length, authorization) in [(1u64 << 30, None), (10 << 20, Some(basic("fprun_forged")))] {
        let mut head = format!(
            "POST /api/v1/state/{cluster} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {length}"
        );
        if let Some(authorization) = authorization {
            head.push_str(&format!("\r\nAuthorization: {authorization}"));
        }
        let response = send_raw(&app, &head, b"{").await;
        assert_eq!(response.status, 401, "{}", response.head);
        assert_eq!(response.json()["code"], "invalid_run_token");
    }
}

#[tokio::test]
async fn a_state_larger_than_the_limit_is_refused_and_one_within_it_is_stored() {
    let app = TestApp::spawn_with(|config| config.runs.max_state_mb = 1).await;
    let (cluster, token) = run_token(&app).await;
    let path = format!("/api/v1/state/{cluster}");
    let head = |framing: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: {}\r\n{framing}",
            basic(&token)
        )
    };
    // Declared larger: refused before any of it is read.
    let declared = send_raw(&app, &head(&format!("Content-Length: {}", 2 << 20)), b"").await;
    assert_eq!(declared.status, 413, "{}", declared.head);
    assert_eq!(declared.json()["code"], "state_too_large");
    assert!(declared.json()["detail"].as_str().expect("detail").contains("1 MiB"));

    // Not declared (chunked): refused once it passes the limit.
    let chunk = vec![b' '; 256 * 1024];
    let mut chunked = Vec::new();
    for _ in 0..5 {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let streamed = send_raw(&app, &head("Transfer-Encoding: chunked"), &chunked).await;
    assert_eq!(streamed.status, 413, "{}", streamed.head);
    assert_eq!(streamed.json()["code"], "state_too_large");

    // Within the limit, with its run's token: stored.
    let state =
        json!({ "version": 4, "serial": 1, "lineage": "probe", "resources": [], "padding": "x".repeat(900_000) });
    let body = state.to_string();
    let stored = send_raw(&app, &head(&format!("Content-Length: {}", body.len())), body.as_bytes()).await;
    assert_eq!(stored.status, 200, "{}", stored.head);
    let versions = fleetplane::terraform_state::latest(&app.state, cluster.parse().expect("uuid")).await.expect("read");
    assert_eq!(serde_json::from_slice::<Value>(&versions.expect("a state")).expect("JSON")["lineage"], "probe");
}

/// Signs in to `email` with a wrong password from behind a proxy that says the request came
/// from `forwarded_for`.
async fn sign_in_through(client: &Client, email: &str, forwarded_for: &str) -> Resp {
    sign_in_from(client, email, "not the password", forwarded_for).await
}

async fn sign_in_from(client: &Client, email: &str, password: &str, forwarded_for: &str) -> Resp {
    let request = client
        .request(reqwest::Method::POST, "/api/v1/auth/login")
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({ "email": email, "password": password }));
    client.send(request).await
}

/// Sign-ins until the per-IP limit answers, each for another account; how many got through.
async fn attempts_until_limited(client: &Client, forwarded_for: impl Fn(usize) -> String) -> usize {
    for attempt in 0..10 {
        let response = sign_in_through(client, &format!("nobody{attempt}@example.com"), &forwarded_for(attempt)).await;
        if response.status == StatusCode::TOO_MANY_REQUESTS {
            response.expect_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
            return attempt;
        }
        response.expect_status(StatusCode::UNAUTHORIZED);
    }
    panic!("no per-IP limit after 10 attempts");
}

fn three_per_ip(config: &mut Config) {
    config.rate_limits.login_per_ip = Limit::new(3, 3600);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_client_is_the_rightmost_address_the_proxy_did_not_write() {
    let app = TestApp::spawn_with(|config| {
        three_per_ip(config);
        // The test's own connections come from loopback: they play the proxy.
        config.trusted_proxies = vec!["127.0.0.0/8".parse().expect("cidr"), "10.1.2.3/32".parse().expect("cidr")];
    })
    .await;
    let client = app.client();
    // The client writes whatever it likes on the left; the proxies append the real address.
    let rotating = |attempt: usize| format!("198.51.100.{attempt}, 203.0.113.5, 10.1.2.3");
    assert_eq!(attempts_until_limited(&client, rotating).await, 3, "rotating the client's own entries gains nothing");
    // Another client behind the same proxy has its own budget.
    assert_eq!(attempts_until_limited(&client, |_| "203.0.113.6".to_owned()).await, 3);
    // A forged loopback entry is the client's word: it does not make the request local.
    app.user("ada").await;
    let outbox = client.request(reqwest::Method::GET, "/api/v1/dev/outbox").header("x-forwarded-for", "127.0.0.1");
    client.send(outbox).await.expect_problem(StatusCode::NOT_FOUND, "not_found");

    // Sessions record the client's address, not what it claimed.
    let browser = app.client();
    let request = browser
        .request(reqwest::Method::POST, "/api/v1/auth/login")
        .header("x-forwarded-for", "127.0.0.1, 192.0.2.44")
        .json(&json!({ "email": "ada@example.com", "password": PASSWORD }));
    browser.send(request).await.expect_status(StatusCode::OK);
    let sessions = browser.get("/api/v1/me/sessions").await.expect_status(StatusCode::OK).json();
    let this = sessions.as_array().expect("list").iter().find(|s| s["current"] == true).cloned().expect("current");
    assert_eq!(this["ip"], "192.0.2.44");
}

#[tokio::test]
async fn without_trusted_proxies_forwarded_addresses_are_ignored() {
    let app = TestApp::spawn_with(three_per_ip).await;
    let client = app.client();
    let forged = |attempt: usize| format!("203.0.113.{attempt}");
    assert_eq!(attempts_until_limited(&client, forged).await, 3, "every attempt counts against the real peer");
}

#[tokio::test]
async fn a_forwarded_request_never_opens_the_dev_outbox() {
    // No SMTP, on loopback: the outbox is there for direct clients on this host.
    let app = TestApp::spawn_with(|config| {
        config.smtp_url = None;
        config.trusted_proxies = vec!["127.0.0.0/8".parse().expect("cidr")];
    })
    .await;
    let client = app.client();
    client.get("/api/v1/dev/outbox").await.expect_status(StatusCode::OK);
    for (name, value) in [("x-forwarded-for", "127.0.0.1"), ("forwarded", "for=127.0.0.1"), ("x-real-ip", "::1")] {
        let request = client.request(reqwest::Method::GET, "/api/v1/dev/outbox").header(name, value);
        client.send(request).await.expect_problem(StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn streams_end_when_their_user_signs_out_everywhere_or_changes_the_password() {
    let app = TestApp::spawn().await;
    let laptop = app.user("ada").await;
    let phone = app.client();
    phone.sign_in("ada@example.com", PASSWORD).await.expect_status(StatusCode::OK);
    let mut on_phone = Stream::open_alone(&phone, "/api/v1/events").await.expect("stream");
    let mut on_laptop = Stream::open(&laptop, "/api/v1/events", None).await.expect("stream");
    app.wait_for("open streams", 2, |state| state.live.open_streams()).await;
    laptop.post_empty("/api/v1/auth/logout-all").await.expect_status(StatusCode::NO_CONTENT);
    assert!(on_phone.next(WAIT).await.is_none(), "the other browser's stream ends");
    assert!(on_laptop.next(WAIT).await.is_none(), "the asking browser's stream ends");

    laptop.sign_in("ada@example.com", PASSWORD).await.expect_status(StatusCode::OK);
    phone.sign_in("ada@example.com", PASSWORD).await.expect_status(StatusCode::OK);
    let mut on_phone = Stream::open_alone(&phone, "/api/v1/events").await.expect("stream");
    let mut on_laptop = Stream::open(&laptop, "/api/v1/events", None).await.expect("stream");
    app.wait_for("open streams", 2, |state| state.live.open_streams()).await;
    laptop
        .put("/api/v1/me/password", json!({ "current_password": PASSWORD, "new_password": "a new one, longer" }))
        .await
        .expect_status(StatusCode::NO_CONTENT);
    assert!(on_phone.next(WAIT).await.is_none(), "the other browser's stream ends");
    assert!(on_laptop.next(WAIT).await.is_none(), "the old session's stream ends; the browser has a new session");
    app.wait_for("open streams", 0, |state| state.live.open_streams()).await;
    Stream::open(&laptop, "/api/v1/events", None).await.expect("the new session streams");
}

/// Reads until the server closes `stream` (an end, or a reset); what came before.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let read = async {
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return received,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    };
    tokio::time::timeout(WAIT, read).await.expect("the server closes the connection")
}

#[tokio::test]
async fn connections_that_keep_the_server_waiting_are_closed_while_others_are_served() {
    let app = TestApp::spawn_with(|config| {
        config.http = HttpSettings { header_timeout_secs: 3, body_timeout_secs: 3, idle_timeout_secs: 3 };
    })
    .await;
    let addr = app.state.config.listen;
    let connect = || async move { TcpStream::connect(addr).await.expect("connect") };
    // A thousand that say nothing.
    let mut silent = Vec::new();
    for _ in 0..1000 {
        silent.push(connect().await);
    }
    // One that stops half-way through a head.
    let mut partial = connect().await;
    partial.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.expect("write");
    // One kept alive after a request.
    let mut idle = connect().await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    // One whose body stops coming, and one whose declared 10 GB never do.
    let mut slow_body = connect().await;
    let head =
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
    slow_body.write_all(format!("{head}{{\"email\":").as_bytes()).await.expect("write");
    let mut huge_body = connect().await;
    let head = "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n";
    huge_body.write_all(head.as_bytes()).await.expect("write");

    // Meanwhile everyone else is served.
    let client = app.client();
    client.get("/readyz").await.expect_status(StatusCode::OK);
    app.user("ada").await.get("/api/v1/me").await.expect_status(StatusCode::OK);

    let closed = futures::future::join_all(silent.iter_mut().map(until_closed)).await;
    assert!(closed.iter().all(Vec::is_empty), "silent connections are closed without an answer");
    assert!(until_closed(&mut partial).await.is_empty(), "a half-sent head gets no answer");
    let answered = String::from_utf8_lossy(&until_closed(&mut idle).await).into_owned();
    assert!(answered.starts_with("HTTP/1.1 200"), "the kept-alive connection was answered, then closed: {answered}");
    let cut_off = String::from_utf8_lossy(&until_closed(&mut slow_body).await).into_owned();
    assert!(cut_off.starts_with("HTTP/1.1 408"), "{cut_off}");
    assert!(cut_off.contains("\"code\":\"body_timeout\""), "{cut_off}");
    let refused = String::from_utf8_lossy(&until_closed(&mut huge_body).await).into_owned();
    assert!(refused.starts_with("HTTP/1.1 408") || refused.starts_with("HTTP/1.1 413"), "{refused}");
    // On a new connection: the client's pooled one went idle, and the server closed it.
    app.client().get("/readyz").await.expect_status(StatusCode::OK);
}

#[tokio::test]
async fn an_address_written_with_look_alike_characters_is_refused_not_merged_or_split() {
    let app = TestApp::spawn().await;
    app.user("kate").await;
    let client = app.client();
    // `Kate@example.com` with a Kelvin sign (U+212A) for the K.
    let body = json!({ "email": "\u{212A}ate@example.com", "username": "not-kate", "password": PASSWORD });
    let refused = client.post("/api/v1/auth/signup", body).await;
    let problem = refused.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(problem["errors"][0]["field"], "email");
    assert_eq!(problem["errors"][0]["code"], "not_canonical");
    assert!(problem["errors"][0]["message"].as_str().expect("message").contains("Kate@example.com"));
    // Nothing was created, and the real Kate still signs in.
    let login = json!({ "email": "\u{212A}ate@example.com", "password": PASSWORD });
    assert_ne!(client.post("/api/v1/auth/login", login).await.status, StatusCode::OK);
    client.sign_in("KATE@example.com", PASSWORD).await.expect_status(StatusCode::OK);
}

#[tokio::test]
async fn guessing_from_elsewhere_does_not_lock_the_owner_out_of_their_own_browser() {
    let app = TestApp::spawn_with(|config| {
        config.rate_limits.login_per_ip = Limit::new(100, 3600);
        config.rate_limits.login_per_account_ip = Limit::new(3, 3600);
        config.rate_limits.login_per_account = Limit::new(4, 3600);
        // The tests' connections play the proxy, so that attackers can come from elsewhere.
        config.trusted_proxies = vec!["127.0.0.0/8".parse().expect("cidr")];
    })
    .await;
    // Ada's browser signed in once, verifying her address: it has her device cookie.
    let owner = app.user("ada").await;
    let bob = app.user("bob").await;
    let attacker = app.client();
    let guess = |from: &'static str| sign_in_through(&attacker, "ada@example.com", from);
    // From one address: the strict limit.
    for _ in 0..3 {
        guess("203.0.113.9").await.expect_status(StatusCode::UNAUTHORIZED);
    }
    guess("203.0.113.9").await.expect_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // From anywhere: the account's limit.
    guess("203.0.113.10").await.expect_status(StatusCode::UNAUTHORIZED);
    guess("203.0.113.11").await.expect_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // A browser that never signed in to Ada's account is held back, even with another
    // account's device cookie (each from an address of its own, not to spend the owner's).
    let fresh = sign_in_from(&app.client(), "ada@example.com", PASSWORD, "198.51.100.1").await;
    fresh.expect_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let with_bobs = sign_in_from(&bob, "ada@example.com", PASSWORD, "198.51.100.2").await;
    with_bobs.expect_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Ada's own browser is not.
    owner.sign_in("ada@example.com", PASSWORD).await.expect_status(StatusCode::OK);
    let remembered = owner.cookie("fp_device").expect("a device cookie");
    // A password change forgets every browser but the one that changed it.
    owner
        .put("/api/v1/me/password", json!({ "current_password": PASSWORD, "new_password": "a new one, longer" }))
        .await
        .expect_status(StatusCode::NO_CONTENT);
    let stale = app.client();
    stale.set_cookie("fp_device", &remembered);
    let new_password = "a new one, longer";
    let refused = sign_in_from(&stale, "ada@example.com", new_password, "198.51.100.3").await;
    refused.expect_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    owner.sign_in("ada@example.com", new_password).await.expect_status(StatusCode::OK);
}

#[tokio::test]
async fn a_state_whose_body_stops_coming_is_cut_off_with_408() {
    let app = TestApp::spawn_with(|config| config.http.body_timeout_secs = 2).await;
    let (cluster, token) = run_token(&app).await;
    let authorization = basic(&token);
    for method in ["POST", "LOCK"] {
        let head = format!(
            "{method} /api/v1/state/{cluster} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Authorization: {authorization}\r\nContent-Length: 1000"
        );
        let response = send_raw(&app, &head, b"{\"ID\":").await;
        assert_eq!(response.status, 408, "{method}: {}", response.head);
        assert_eq!(response.json()["code"], "body_timeout", "{method}");
    }
}

async fn sign_up(client: &Client, email: &str, username: &str, password: &str) -> Resp {
    client.post("/api/v1/auth/signup", json!({ "email": email, "username": username, "password": password })).await
}

/// The sign-up answer with the address taken out, to compare answers for two addresses.
fn without_address(response: &Resp, address: &str) -> (StatusCode, String) {
    (response.status, response.text.replace(address, "ADDRESS"))
}

#[tokio::test]
async fn signing_up_with_an_address_that_has_an_account_answers_as_for_a_new_one_and_tells_the_owner() {
    let app = TestApp::spawn().await;
    app.user("ada").await;
    let attacker = app.client();
    let users_before = app.counts().await[0];

    let taken = sign_up(&attacker, "Ada@example.com", "eve", "attacker's password").await;
    let new = sign_up(&attacker, "fresh@example.com", "fresh", "attacker's password").await;
    assert_eq!(without_address(&taken, "Ada@example.com"), without_address(&new, "fresh@example.com"));
    assert_eq!(taken.status, StatusCode::ACCEPTED);
    assert_eq!(app.counts().await[0], users_before + 1, "only the new address got an account");

    // The owner hears of it, with the way to sign in or reset; their account is as it was.
    let notice = app.smtp.nth_to("ada@example.com", 2).await;
    assert_eq!(notice.subject, "Someone tried to sign up for Fleetplane with your email");
    assert!(notice.body.contains("/login") && notice.body.contains("/forgot-password"), "{}", notice.body);
    app.client().sign_in("ada@example.com", PASSWORD).await.expect_status(StatusCode::OK);
    app.client()
        .sign_in("ada@example.com", "attacker's password")
        .await
        .expect_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
}

#[tokio::test]
async fn an_unverified_sign_up_does_not_hold_the_address_and_its_link_needs_its_password() {
    let app = TestApp::spawn().await;
    let attacker = app.client();
    sign_up(&attacker, "victim@example.com", "mallory", "attacker's password")
        .await
        .expect_status(StatusCode::ACCEPTED);
    let attackers_link = app.smtp.first_to("victim@example.com").await.token();

    // The owner follows the link the attacker's sign-up sent them: without the attacker's
    // password it activates nothing.
    let victim = app.client();
    app.assert_unchanged(async {
        let refused =
            victim.post("/api/v1/auth/verify-email", json!({ "token": attackers_link, "password": PASSWORD })).await;
        refused.expect_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
        assert_eq!(refused.fields(), ["password"]);
        assert!(refused.set_cookies().is_empty());
    })
    .await;
    attacker
        .sign_in("victim@example.com", "attacker's password")
        .await
        .expect_problem(StatusCode::FORBIDDEN, "email_not_verified");

    // The owner signs up themselves: accepted, not 409, and it replaces the attacker's account.
    sign_up(&victim, "victim@example.com", "victim", PASSWORD).await.expect_status(StatusCode::ACCEPTED);
    attacker
        .post("/api/v1/auth/verify-email", json!({ "token": attackers_link, "password": "attacker's password" }))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, "verification_token_invalid");
    let link = app.smtp.nth_to("victim@example.com", 2).await.token();
    let me = victim
        .post("/api/v1/auth/verify-email", json!({ "token": link, "password": PASSWORD }))
        .await
        .expect_status(StatusCode::OK)
        .json();
    assert_eq!((me["username"].as_str(), me["email_verified"].as_bool()), (Some("victim"), Some(true)));
    attacker
        .sign_in("victim@example.com", "attacker's password")
        .await
        .expect_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    // And the username the attacker's sign-up held is free again.
    sign_up(&app.client(), "someone@example.com", "mallory", PASSWORD).await.expect_status(StatusCode::ACCEPTED);
}

#[tokio::test]
async fn unverified_accounts_expire_a_day_after_sign_up() {
    use fleetplane::entity::{email_verification_tokens, organizations, users};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};

    let app = TestApp::spawn().await;
    app.user("ada").await;
    for name in ["stale", "fresh"] {
        sign_up(&app.client(), &format!("{name}@example.com"), name, PASSWORD)
            .await
            .expect_status(StatusCode::ACCEPTED);
    }
    // `stale` signed up 25 hours ago, and its link expired an hour ago.
    let day_ago = chrono::Utc::now() - chrono::TimeDelta::hours(25);
    let stale = users::Entity::find()
        .filter(users::Column::Username.eq("stale"))
        .one(app.db())
        .await
        .expect("q")
        .expect("stale");
    users::Entity::update_many()
        .col_expr(users::Column::CreatedAt, Expr::value(day_ago))
        .filter(users::Column::Id.eq(stale.id))
        .exec(app.db())
        .await
        .expect("age");
    email_verification_tokens::Entity::update_many()
        .col_expr(email_verification_tokens::Column::ExpiresAt, Expr::value(day_ago + chrono::TimeDelta::hours(24)))
        .filter(email_verification_tokens::Column::UserId.eq(stale.id))
        .exec(app.db())
        .await
        .expect("age");

    let deleted = fleetplane::janitor::run_once(&app.state).await.expect("pass");
    assert_eq!(deleted.unverified_accounts, 1);
    let names: Vec<String> =
        users::Entity::find().all(app.db()).await.expect("users").into_iter().map(|u| u.username).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"ada".to_owned()) && names.contains(&"fresh".to_owned()), "{names:?}");
    let orgs = organizations::Entity::find().filter(organizations::Column::Name.eq("stale")).all(app.db()).await;
    assert!(orgs.expect("orgs").is_empty(), "its personal organization went with it");
    // The address and the name are free.
    sign_up(&app.client(), "stale@example.com", "stale", PASSWORD).await.expect_status(StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_password_reset_answers_alike_and_its_link_works_once_ends_every_session_and_is_audited() {
    use fleetplane::entity::outbound_emails;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let stranger = app.client();
    let known = stranger.post("/api/v1/auth/password-reset", json!({ "email": "ADA@example.com" })).await;
    let unknown = stranger.post("/api/v1/auth/password-reset", json!({ "email": "nobody@example.com" })).await;
    assert_eq!((known.status, &known.text), (unknown.status, &unknown.text));
    assert_eq!(known.status, StatusCode::ACCEPTED);
    let to_nobody = outbound_emails::Entity::find()
        .filter(outbound_emails::Column::ToAddress.eq("nobody@example.com"))
        .count(app.db())
        .await
        .expect("count");
    assert_eq!(to_nobody, 0, "no mail for an address without an account");

    let mail = app.smtp.nth_to("ada@example.com", 2).await;
    assert_eq!(mail.subject, "Reset your Fleetplane password");
    assert!(mail.link().starts_with(&format!("{}reset-password?token=", app.base)), "{}", mail.link());
    let token = mail.token();

    app.assert_unchanged(async {
        let weak = stranger
            .post("/api/v1/auth/password-reset/confirm", json!({ "token": token, "new_password": "short" }))
            .await;
        weak.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(weak.fields(), ["new_password"]);
        stranger
            .post("/api/v1/auth/password-reset/confirm", json!({ "token": "forged", "new_password": "a new password" }))
            .await
            .expect_problem(StatusCode::BAD_REQUEST, "reset_token_invalid");
    })
    .await;
    ada.get("/api/v1/me").await.expect_status(StatusCode::OK);

    let reset = stranger
        .post("/api/v1/auth/password-reset/confirm", json!({ "token": token, "new_password": "a new password" }))
        .await
        .expect_status(StatusCode::OK);
    assert!(reset.set_cookies().join("\n").contains("fp_session="), "the browser that reset is signed in");
    stranger.get("/api/v1/me").await.expect_status(StatusCode::OK);
    ada.get("/api/v1/me").await.expect_problem(StatusCode::UNAUTHORIZED, "session_revoked");
    app.client().sign_in("ada@example.com", PASSWORD).await.expect_status(StatusCode::UNAUTHORIZED);
    app.client().sign_in("ada@example.com", "a new password").await.expect_status(StatusCode::OK);
    app.client()
        .post("/api/v1/auth/password-reset/confirm", json!({ "token": token, "new_password": "yet another one" }))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, "reset_token_used");
    let own = stranger.get("/api/v1/me/audit").await.json()["items"].clone();
    let actions: Vec<&str> = own.as_array().expect("items").iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(
        actions.contains(&"account.password_reset") && actions.contains(&"auth.password_reset_requested"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn a_reset_link_expires_after_an_hour() {
    use fleetplane::entity::password_reset_tokens;
    use sea_orm::{EntityTrait, sea_query::Expr};

    let app = TestApp::spawn().await;
    app.user("ada").await;
    app.client()
        .post("/api/v1/auth/password-reset", json!({ "email": "ada@example.com" }))
        .await
        .expect_status(StatusCode::ACCEPTED);
    let token = app.smtp.nth_to("ada@example.com", 2).await.token();
    let rows = password_reset_tokens::Entity::find().all(app.db()).await.expect("tokens");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].expires_at - rows[0].created_at, chrono::TimeDelta::hours(1));
    password_reset_tokens::Entity::update_many()
        .col_expr(
            password_reset_tokens::Column::ExpiresAt,
            Expr::value(chrono::Utc::now() - chrono::TimeDelta::seconds(1)),
        )
        .exec(app.db())
        .await
        .expect("age");
    app.assert_unchanged(async {
        app.client()
            .post("/api/v1/auth/password-reset/confirm", json!({ "token": token, "new_password": "a new password" }))
            .await
            .expect_problem(StatusCode::BAD_REQUEST, "reset_token_expired");
    })
    .await;
    app.client().sign_in("ada@example.com", PASSWORD).await.expect_status(StatusCode::OK);
}

#[tokio::test]
async fn password_reset_requests_are_rate_limited_alike_for_any_address() {
    let app = TestApp::spawn_with(|config| config.rate_limits.reset_per_address = Limit::new(1, 3600)).await;
    app.user("ada").await;
    let client = app.client();
    for address in ["ada@example.com", "nobody@example.com"] {
        let ask = || client.post("/api/v1/auth/password-reset", json!({ "email": address }));
        ask().await.expect_status(StatusCode::ACCEPTED);
        app.assert_unchanged(async {
            ask().await.expect_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
        })
        .await;
    }
    let bad = client.post("/api/v1/auth/password-reset", json!({ "email": "not an address" })).await;
    bad.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
}
