//! Security headers, the pages' Content-Security-Policy and its reports, and who may read
//! `/metrics`.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::TestApp;

/// The nonce a page's policy allows, from its `Content-Security-Policy` header.
fn policy_nonce(policy: &str) -> String {
    let start = policy.find("'nonce-").expect("a nonce in the policy") + "'nonce-".len();
    policy[start..].split('\'').next().expect("nonce").to_owned()
}

#[tokio::test]
async fn every_page_has_its_own_nonce_and_every_inline_script_carries_it() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let mut nonces = Vec::new();
    for path in ["/login", "/login", "/signup", "/no-such-page"] {
        let page = client.get(path).await;
        let policy = page.headers["content-security-policy"].to_str().expect("text").to_owned();
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert!(policy.contains("report-uri /api/v1/csp-reports"), "{policy}");
        let nonce = policy_nonce(&policy);
        assert!(nonce.len() >= 16, "a nonce of 128 bits: {nonce}");
        // Every executable inline script carries the nonce; the context is data, not code.
        let scripts: Vec<&str> = page.text.split("<script").skip(1).collect();
        assert!(!scripts.is_empty(), "{path} has scripts");
        for script in scripts {
            let tag = script.split('>').next().expect("tag");
            if tag.contains("type=\"application/json\"") {
                continue;
            }
            assert!(tag.contains(&format!("nonce=\"{nonce}\"")), "{path}: <script{tag}> lacks the nonce {nonce}");
        }
        nonces.push(nonce);
    }
    nonces.sort();
    nonces.dedup();
    assert_eq!(nonces.len(), 4, "a fresh nonce per response");
}

#[tokio::test]
async fn api_answers_and_pages_are_never_stored_and_pages_deny_powerful_features() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    // The worst case: a token's plaintext, shown once.
    let created = ada.post("/api/v1/me/tokens", json!({ "name": "ci" })).await.expect_status(StatusCode::CREATED);
    let anonymous = app.client();
    let responses = [
        ("a new token", created),
        ("/api/v1/me", ada.get("/api/v1/me").await),
        ("a problem", anonymous.get("/api/v1/me").await),
        ("the OpenAPI document", anonymous.get("/api/openapi.json").await),
        ("a page", ada.get("/login").await),
    ];
    for (what, response) in responses {
        let header = |name: &str| response.headers.get(name).map(|v| v.to_str().expect("text").to_owned());
        assert_eq!(header("cache-control").as_deref(), Some("no-store"), "{what}");
        assert_eq!(header("cross-origin-opener-policy").as_deref(), Some("same-origin"), "{what}");
        let permissions = header("permissions-policy").expect("a permissions policy");
        for feature in ["camera=()", "microphone=()", "geolocation=()"] {
            assert!(permissions.contains(feature), "{what}: {permissions}");
        }
    }
}

#[tokio::test]
async fn the_sqlite_file_is_for_its_owner_only() {
    let app = TestApp::spawn().await;
    if app.state.config.is_postgres() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let file = app.dir.path().join("fleetplane.db");
    let mode = std::fs::metadata(&file).expect("the database file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", file.display());
}

#[tokio::test]
async fn api_responses_forbid_loading_and_framing_and_say_what_they_are() {
    let app = TestApp::spawn().await;
    let client = app.client();
    for response in [client.get("/api/v1/me").await, client.get("/healthz").await, client.get("/api/nope").await] {
        let header = |name: &str| response.headers.get(name).map(|v| v.to_str().expect("text").to_owned());
        assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
        assert_eq!(header("referrer-policy").as_deref(), Some("same-origin"));
        assert_eq!(header("x-frame-options").as_deref(), Some("DENY"));
        let policy = header("content-security-policy").expect("a policy");
        assert!(policy.starts_with("default-src 'none'") && policy.contains("frame-ancestors 'none'"), "{policy}");
        assert_eq!(header("strict-transport-security"), None, "no HSTS over plain http");
    }
}

#[tokio::test]
async fn hsts_is_sent_when_users_reach_the_server_over_https() {
    let app =
        TestApp::spawn_with(|config| config.public_url = "https://fleet.example.com/".parse().expect("url")).await;
    for path in ["/healthz", "/login"] {
        let response = app.client().get(path).await;
        assert_eq!(response.headers["strict-transport-security"], "max-age=63072000", "{path}");
    }
}

#[tokio::test]
async fn csp_reports_are_counted_by_directive_and_odd_ones_change_nothing_else() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let report = json!({ "csp-report": {
        "document-uri": "http://127.0.0.1/login",
        "effective-directive": "script-src-elem",
        "blocked-uri": "inline",
    }});
    let send = |body: String| {
        let request = client
            .http
            .post(app.base.join("api/v1/csp-reports").expect("url"))
            .header("content-type", "application/csp-report")
            .body(body);
        async move { request.send().await.expect("send").status() }
    };
    assert_eq!(send(report.to_string()).await, StatusCode::NO_CONTENT);
    // A directive nobody sets is counted as `other`: the labels stay a fixed set.
    let odd = r#"{"csp-report":{"effective-directive":"x\ny"}}"#;
    assert_eq!(send(odd.to_owned()).await, StatusCode::NO_CONTENT);
    // What is not a report is refused, and not counted.
    let junk =
        ["", "not json", "[]", r#"{"csp-report":"x"}"#, r#"{"csp-report":[]}"#, r#"{"csp-report":{"blocked-uri":{}}}"#];
    for junk in junk {
        assert_eq!(send(junk.to_owned()).await, StatusCode::BAD_REQUEST, "{junk:?}");
    }
    let metrics = client.get("/metrics").await.text;
    assert!(metrics.contains("fleetplane_csp_violations_total{directive=\"script-src-elem\"} 1"), "{metrics}");
    assert!(metrics.contains("fleetplane_csp_violations_total{directive=\"other\"} 1"), "{metrics}");
    // Larger than a report can be: refused before it is read.
    assert_eq!(send("x".repeat(128 * 1024)).await, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn metrics_are_for_this_host_or_the_metrics_token() {
    const TOKEN: &str = "prometheus-0123456789abcdefghijklmnop";
    let app = TestApp::spawn_with(|config| config.metrics_token = Some(fleetplane::config::Secret::new(TOKEN))).await;
    let client = app.client();
    let metrics = |forwarded: bool, token: Option<&str>| {
        let mut request = client.http.get(app.base.join("metrics").expect("url"));
        if forwarded {
            request = request.header("x-forwarded-for", "203.0.113.7");
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.expect("send") }
    };
    assert_eq!(metrics(false, None).await.status(), StatusCode::OK, "a direct local client");
    let refused = metrics(true, None).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN, "a request a proxy on this host forwarded");
    let problem: serde_json::Value = refused.json().await.expect("problem");
    assert_eq!(problem["code"], "metrics_forbidden");
    assert_eq!(metrics(true, Some(TOKEN)).await.status(), StatusCode::OK, "with the token");
    let wrong = metrics(true, Some("prometheus-0123456789abcdefghijklmnoX")).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let problem: serde_json::Value = wrong.json().await.expect("problem");
    assert_eq!(problem["code"], "metrics_token_invalid");
}
