//! Health, readiness, metrics, the OpenAPI document, graceful shutdown and the dev outbox.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::{PASSWORD, TestApp};

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let client = app.client();
    assert_eq!(client.get("/healthz").await.expect_status(StatusCode::OK).json(), json!({ "status": "ok" }));
    assert_eq!(client.get("/readyz").await.expect_status(StatusCode::OK).json(), json!({ "status": "ready" }));
}

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let app = TestApp::spawn().await;
    app.db().clone().close().await.expect("close pool");
    app.client().get("/readyz").await.expect_problem(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable");
    app.client().get("/healthz").await.expect_status(StatusCode::OK);
}

#[tokio::test]
async fn metrics_count_requests_and_latency_by_route_and_status() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    ada.get("/api/v1/orgs/acme").await.expect_status(StatusCode::NOT_FOUND);
    ada.get("/api/v1/orgs/ada").await.expect_status(StatusCode::OK);
    let metrics = ada.get("/metrics").await.expect_status(StatusCode::OK);
    assert!(metrics.headers["content-type"].to_str().expect("ascii").starts_with("text/plain"));
    let text = metrics.text;
    for line in [
        r#"fleetplane_http_requests_total{method="GET",route="/api/v1/orgs/{org}",status="404"} 1"#,
        r#"fleetplane_http_requests_total{method="GET",route="/api/v1/orgs/{org}",status="200"} 1"#,
        r#"fleetplane_http_requests_total{method="POST",route="/api/v1/auth/signup",status="202"} 1"#,
        r#"fleetplane_http_request_duration_seconds_count{method="POST",route="/api/v1/auth/verify-email",status="200"} 1"#,
        "# TYPE fleetplane_http_request_duration_seconds histogram",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    assert!(!text.contains("route=\"/api/v1/orgs/ada\""), "raw paths would make series unbounded");
}

#[tokio::test]
async fn the_openapi_document_covers_every_endpoint() {
    let app = TestApp::spawn().await;
    let doc = app.client().get("/api/openapi.json").await.expect_status(StatusCode::OK).json();
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    let expected = [
        ("post", "/api/v1/auth/signup"),
        ("post", "/api/v1/auth/verify-email"),
        ("post", "/api/v1/auth/resend-verification"),
        ("post", "/api/v1/auth/password-reset"),
        ("post", "/api/v1/auth/password-reset/confirm"),
        ("post", "/api/v1/auth/login"),
        ("post", "/api/v1/auth/logout"),
        ("post", "/api/v1/auth/logout-all"),
        ("get", "/api/v1/auth/google/start"),
        ("get", "/api/v1/auth/google/callback"),
        ("get", "/api/v1/me"),
        ("patch", "/api/v1/me/username"),
        ("put", "/api/v1/me/password"),
        ("get", "/api/v1/me/tokens"),
        ("post", "/api/v1/me/tokens"),
        ("delete", "/api/v1/me/tokens/{id}"),
        ("get", "/api/v1/me/identities"),
        ("delete", "/api/v1/me/identities/{provider}"),
        ("get", "/api/v1/me/sessions"),
        ("delete", "/api/v1/me/sessions/{id}"),
        ("get", "/api/v1/orgs"),
        ("post", "/api/v1/orgs"),
        ("get", "/api/v1/orgs/{org}"),
        ("get", "/api/v1/orgs/{org}/members"),
        ("get", "/api/v1/orgs/{org}/invitations"),
        ("post", "/api/v1/orgs/{org}/invitations"),
        ("delete", "/api/v1/orgs/{org}/invitations/{id}"),
        ("get", "/api/v1/me/invitations"),
        ("post", "/api/v1/me/invitations/{id}/accept"),
        ("post", "/api/v1/me/invitations/{id}/decline"),
        ("get", "/api/v1/me/audit"),
        ("patch", "/api/v1/orgs/{org}/members/{user_id}"),
        ("delete", "/api/v1/orgs/{org}/members/{user_id}"),
        ("get", "/api/v1/orgs/{org}/audit"),
        ("get", "/api/v1/orgs/{org}/cloud-accounts"),
        ("post", "/api/v1/orgs/{org}/cloud-accounts"),
        ("get", "/api/v1/orgs/{org}/cloud-accounts/{id}"),
        ("patch", "/api/v1/orgs/{org}/cloud-accounts/{id}"),
        ("delete", "/api/v1/orgs/{org}/cloud-accounts/{id}"),
        ("put", "/api/v1/orgs/{org}/cloud-accounts/{id}/credentials"),
        ("post", "/api/v1/orgs/{org}/cloud-accounts/{id}/verify"),
        ("get", "/api/v1/orgs/{org}/cloud-accounts/{id}/buckets"),
        ("get", "/api/v1/cluster-options"),
        ("get", "/api/v1/system"),
        ("get", "/api/v1/orgs/{org}/clusters"),
        ("post", "/api/v1/orgs/{org}/clusters"),
        ("get", "/api/v1/orgs/{org}/clusters/{id}"),
        ("patch", "/api/v1/orgs/{org}/clusters/{id}"),
        ("delete", "/api/v1/orgs/{org}/clusters/{id}"),
        ("get", "/api/v1/orgs/{org}/clusters/{id}/runs"),
        ("post", "/api/v1/orgs/{org}/clusters/{id}/runs"),
        ("get", "/api/v1/orgs/{org}/clusters/{id}/state"),
        ("delete", "/api/v1/orgs/{org}/clusters/{id}/state/lock"),
        ("get", "/api/v1/runs/{id}"),
        ("post", "/api/v1/runs/{id}/approve"),
        ("post", "/api/v1/runs/{id}/cancel"),
        ("post", "/api/v1/runs/{id}/retry"),
        ("get", "/api/v1/runs/{id}/logs"),
        ("post", "/api/v1/orgs/{org}/clusters/{id}/deployments"),
        ("get", "/api/v1/orgs/{org}/clusters/{id}/deployments"),
        ("get", "/api/v1/orgs/{org}/deployments/{id}"),
        ("patch", "/api/v1/orgs/{org}/deployments/{id}"),
        ("delete", "/api/v1/orgs/{org}/deployments/{id}"),
        ("post", "/api/v1/orgs/{org}/deployments/{id}/rollback"),
        ("get", "/api/v1/catalog"),
        ("get", "/api/v1/catalog/{service}"),
        ("get", "/api/v1/deployments/{id}/fleet/bikes"),
        ("post", "/api/v1/deployments/{id}/fleet/bikes"),
        ("get", "/api/v1/deployments/{id}/fleet/bikes/{device_id}"),
        ("delete", "/api/v1/deployments/{id}/fleet/bikes/{device_id}"),
        ("get", "/api/v1/deployments/{id}/fleet/bikes/{device_id}/certificates"),
        ("post", "/api/v1/deployments/{id}/fleet/bikes/{device_id}/certificates"),
        ("get", "/api/v1/deployments/{id}/fleet/bikes/{device_id}/telemetry"),
        ("get", "/api/v1/deployments/{id}/fleet/bikes/{device_id}/live"),
        ("post", "/api/v1/deployments/{id}/fleet/certificates/{serial}/revoke"),
        ("get", "/api/v1/deployments/{id}/fleet/quarantine"),
        ("get", "/api/v1/deployments/{id}/fleet/ca.pem"),
        ("get", "/api/v1/deployments/{id}/fleet/crl.pem"),
        ("get", "/api/v1/deployments/{id}/fleet/broker"),
        ("get", "/api/v1/state/{cluster}"),
        ("post", "/api/v1/state/{cluster}"),
        ("get", "/api/v1/events"),
        ("get", "/api/v1/notifications"),
        ("get", "/api/v1/notifications/unread-count"),
        ("post", "/api/v1/notifications/{id}/read"),
        ("post", "/api/v1/notifications/read-all"),
        ("delete", "/api/v1/notifications/{id}"),
        ("get", "/api/v1/dev/outbox"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("post", "/api/v1/csp-reports"),
    ];
    let paths = doc["paths"].as_object().expect("paths");
    let operations: usize = paths.values().map(|item| item.as_object().expect("item").len()).sum();
    assert_eq!(operations, expected.len(), "an endpoint is undocumented or unexpected: {:?}", paths.keys());
    for (method, path) in expected {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        assert_eq!(operation["responses"]["default"]["$ref"], "#/components/responses/Problem", "{method} {path}");
        if let Some(body) = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str() {
            let name = body.rsplit('/').next().expect("schema name");
            assert!(doc["components"]["schemas"][name].is_object(), "{name} schema missing");
        }
    }
    let problem: &Value = &doc["components"]["schemas"]["Problem"]["properties"];
    for field in ["type", "title", "status", "detail", "code", "errors"] {
        assert!(problem[field].is_object(), "Problem.{field}");
    }
}

/// Every operation by its operationId, with its path-and-query parameter names.
fn operations_by_id(doc: &Value) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut operations = std::collections::BTreeMap::new();
    for item in doc["paths"].as_object().expect("paths").values() {
        for operation in item.as_object().expect("item").values() {
            let id = operation["operationId"].as_str().expect("every operation has an operationId").to_owned();
            let parameters = operation["parameters"].as_array().into_iter().flatten();
            let names = parameters.map(|p| p["name"].as_str().expect("parameter name").to_owned()).collect();
            assert!(operations.insert(id.clone(), names).is_none(), "operationId {id} is used twice");
        }
    }
    operations
}

#[tokio::test]
async fn creating_operations_link_to_the_operations_that_take_their_ids() {
    let app = TestApp::spawn().await;
    let doc = app.client().get("/api/openapi.json").await.expect_status(StatusCode::OK).json();
    let operations = operations_by_id(&doc);
    let mut linked = std::collections::BTreeMap::<String, Vec<String>>::new();
    for item in doc["paths"].as_object().expect("paths").values() {
        for operation in item.as_object().expect("item").values() {
            let from = operation["operationId"].as_str().expect("operationId");
            let Some(links) = operation["responses"]["201"]["links"].as_object() else { continue };
            for (name, link) in links {
                let target = link["operationId"].as_str().expect("a link names its operation");
                let taken = operations.get(target).unwrap_or_else(|| panic!("{from} links to unknown {target}"));
                for (parameter, expression) in link["parameters"].as_object().expect("parameters") {
                    assert!(taken.contains(parameter), "{from} → {target}: {target} takes no `{parameter}`");
                    let expression = expression.as_str().expect("runtime expression");
                    assert!(expression.starts_with("$response.body#/") || expression.starts_with("$request.path."));
                }
                linked.entry(from.to_owned()).or_default().push(name.clone());
            }
        }
    }
    // Each thing the API creates leads to where its id is used.
    for (from, to) in [
        ("create_org", "get_org"),
        ("invite", "revoke_invitation"),
        ("create_token", "revoke_token"),
        ("link_cloud_account", "get_cloud_account"),
        ("create_cluster", "get_cluster"),
        ("create_cluster", "get_run"),
        ("request_run", "cancel_run"),
        ("retry_run", "get_run"),
    ] {
        assert!(linked.get(from).is_some_and(|names| names.iter().any(|n| n == to)), "{from} does not link to {to}");
    }
}

#[tokio::test]
async fn the_openapi_document_states_the_constraints_the_server_enforces() {
    let app = TestApp::spawn().await;
    let doc = app.client().get("/api/openapi.json").await.expect_status(StatusCode::OK).json();
    let schemas = &doc["components"]["schemas"];
    let property = |schema: &str, field: &str| schemas[schema]["properties"][field].clone();
    assert_eq!(property("CreateOrgRequest", "name")["$ref"], "#/components/schemas/Handle");
    assert!(schemas["Handle"]["pattern"].is_string());
    assert!(schemas["EmailAddress"]["pattern"].is_string() && schemas["EmailAddress"]["maxLength"] == 254);
    assert_eq!(schemas["NewPassword"]["minLength"], 8);
    assert_eq!(property("CreateTokenRequest", "name")["maxLength"], 100);
    assert_eq!(property("SpecInput", "public_subnets")["maxItems"], 6);
    let required = |schema: &str| schemas[schema]["required"].as_array().cloned().unwrap_or_default();
    assert!(required("SignupRequest").contains(&json!("password")), "fields read with defaults are still required");
    assert_eq!(schemas["RequestedAction"]["enum"], json!(["plan", "apply"]));
    // Query parameters say where they go and how big a page may be.
    let audit = doc["paths"]["/api/v1/orgs/{org}/audit"]["get"]["parameters"].as_array().expect("parameters").clone();
    let limit = audit.iter().find(|p| p["name"] == "limit").expect("limit");
    assert_eq!(limit["in"], "query");
    assert_eq!(limit["schema"]["maximum"], 100);
    // Public operations need no credentials.
    for (method, path) in [("get", "/healthz"), ("get", "/readyz"), ("post", "/api/v1/auth/login")] {
        assert_eq!(doc["paths"][path][method]["security"], json!([{}]), "{method} {path}");
    }
}

/// A request that is inside its handler when shutdown begins still gets its answer. The client
/// asks for `100 Continue`, which the server only sends once the handler starts reading the
/// body; that is the proof the request is in flight.
#[tokio::test]
async fn shutdown_finishes_requests_in_flight() {
    let app = TestApp::spawn().await;
    let addr = app.base.socket_addrs(|| None).expect("addr")[0];
    let body = json!({ "email": "ada@example.com", "username": "ada", "password": PASSWORD }).to_string();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /api/v1/auth/signup HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).await.expect("100 Continue");
    assert!(String::from_utf8_lossy(&interim).starts_with("HTTP/1.1 100 Continue"));

    let base = app.base.clone();
    let stopped = tokio::spawn(app.stop());
    stream.write_all(body.as_bytes()).await.expect("write body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("response");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 202 Accepted"), "{response}");
    assert!(response.contains("ada@example.com"), "{response}");

    stopped.await.expect("join").expect("clean shutdown");
    assert!(reqwest::get(base.join("/healthz").expect("url")).await.is_err(), "no new connections after shutdown");
}

#[tokio::test]
async fn without_smtp_mail_goes_to_the_loopback_only_dev_outbox() {
    let app = TestApp::spawn_with(|config| {
        config.smtp_url = None;
    })
    .await;
    let browser = app.client();
    browser
        .post("/api/v1/auth/signup", json!({ "email": "ada@example.com", "username": "ada", "password": PASSWORD }))
        .await
        .expect_status(StatusCode::ACCEPTED);
    // The dispatcher writes the mail to the outbox moments after the sign-up commits.
    let started = std::time::Instant::now();
    let outbox = loop {
        let outbox = browser.get("/api/v1/dev/outbox").await.expect_status(StatusCode::OK).json();
        if outbox.as_array().is_some_and(|a| !a.is_empty()) {
            break outbox;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "the sign-up's mail never reached the outbox");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    assert_eq!(outbox[0]["to"], "ada@example.com");
    let body = outbox[0]["body"].as_str().expect("body");
    let token = body.split("token=").nth(1).expect("link").split_whitespace().next().expect("token");
    browser
        .post("/api/v1/auth/verify-email", json!({ "token": token, "password": PASSWORD }))
        .await
        .expect_status(StatusCode::OK);

    let remote = browser.request(reqwest::Method::GET, "/api/v1/dev/outbox").header("x-forwarded-for", "203.0.113.9");
    browser.send(remote).await.expect_problem(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn with_smtp_there_is_no_dev_outbox() {
    let app = TestApp::spawn().await;
    app.client().get("/api/v1/dev/outbox").await.expect_problem(StatusCode::NOT_FOUND, "not_found");
}
