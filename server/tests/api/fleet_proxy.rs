//! The fleet proxy, `/api/v1/deployments/{id}/fleet/...`: a fleet-telemetry deployment's API
//! through Fleetplane, under Fleetplane's roles, with the token Fleetplane holds for it.
//!
//! The fleet service here is the real one, started in the test process with the hash of the
//! deployment's token, as the worker gives it to the deployment's container; the deployment is
//! marked healthy at its address. The whole path through a container on the local target is
//! `deployments.rs`'s Docker test and the browser test.

use fleet_telemetry::{
    config::{BrokerChoice, Config},
    serve::Running,
};
use fleetplane::entity::deployments;
use reqwest::StatusCode;
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};
use serde_json::json;
use uuid::Uuid;

use crate::support::{Client, TestApp, eventually, ports::free_port, runs::seed_cluster};

fn fleet(id: &str, rest: &str) -> String {
    format!("/api/v1/deployments/{id}/fleet/{rest}")
}

/// A fleet-telemetry deployment of `ada`'s organization, stored but never run (no workers).
async fn deployment(app: &TestApp, ada: &Client) -> String {
    let cluster = seed_cluster(app.db(), "ada", "local", "ready").await;
    let created = ada
        .post(&format!("/api/v1/orgs/ada/clusters/{cluster}/deployments"), json!({ "service": "fleet-telemetry" }))
        .await
        .expect_status(StatusCode::CREATED)
        .json();
    created["deployment"]["id"].as_str().expect("id").to_owned()
}

/// Sets the deployment's status and address, as its runs and health checks would.
async fn mark(app: &TestApp, id: &str, status: &str, url: Option<String>) {
    let row = deployments::Entity::find_by_id(Uuid::parse_str(id).expect("uuid"))
        .one(app.db())
        .await
        .expect("read")
        .expect("deployment");
    let mut row = row.into_active_model();
    row.status = Set(status.to_owned());
    row.outputs = Set(url.map(|url| json!({ "url": url })));
    row.update(app.db()).await.expect("update");
}

/// The fleet service, as the worker would start it for revision 1 of deployment `id`: given the
/// hash of the deployment's token, and no other.
async fn start_fleet(app: &TestApp, id: &str, dir: &std::path::Path) -> Running {
    let (_, values) = fleetplane::deployments::install_values(&app.state, Uuid::parse_str(id).expect("uuid"), 1)
        .await
        .expect("values");
    let hash = values["adminTokenSha256"].as_str().expect("the chart value holds the token's hash").to_owned();
    assert_eq!(hash.len(), 64, "a SHA-256: {hash}");
    let mut config = Config::with_data_dir(dir);
    config.listen = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    config.broker = BrokerChoice::Embedded(format!("127.0.0.1:{}", free_port()).parse().expect("addr"));
    config.admin_token_sha256 = Some(hash);
    fleet_telemetry::serve::start(config).await.expect("the fleet service starts")
}

#[tokio::test]
async fn the_fleet_is_read_and_changed_through_fleetplane_under_its_roles() {
    let app = TestApp::spawn_with(|config| config.live.max_streams_per_user = 2).await;
    let ada = app.user("ada").await;
    let otto = app.user("otto").await;
    let vera = app.user("vera").await;
    let eve = app.user("eve").await;
    ada.add_to_org("ada", &otto, "operator").await;
    ada.add_to_org("ada", &vera, "viewer").await;
    let id = deployment(&app, &ada).await;
    let dir = tempfile::tempdir().expect("dir");
    let running = start_fleet(&app, &id, dir.path()).await;
    mark(&app, &id, "healthy", Some(format!("http://{}", running.api))).await;

    // Viewers read.
    let page = vera.get(&fleet(&id, "bikes")).await.expect_status(StatusCode::OK).json();
    assert_eq!(page["items"], json!([]), "{page}");
    // Operators register bikes and issue certificates; viewers may not.
    let bike = json!({ "serial": "EB-0001", "model": "city", "firmware_version": "1.4.2", "display_name": "Blue" });
    vera.post(&fleet(&id, "bikes"), bike.clone()).await.expect_problem(StatusCode::FORBIDDEN, "forbidden");
    let registered = otto.post(&fleet(&id, "bikes"), bike.clone()).await.expect_status(StatusCode::CREATED).json();
    let device = registered["device_id"].as_str().expect("device id").to_owned();
    // The fleet's own errors come back as they are.
    otto.post(&fleet(&id, "bikes"), bike).await.expect_problem(StatusCode::CONFLICT, "serial_taken");
    vera.get(&fleet(&id, "bikes/no-such-bike")).await.expect_problem(StatusCode::NOT_FOUND, "bike_not_found");
    let filtered = vera.get(&fleet(&id, "bikes?model=city&online=false")).await.expect_status(StatusCode::OK).json();
    assert_eq!(filtered["items"][0]["device_id"], device.as_str(), "the query is passed on: {filtered}");
    let none = vera.get(&fleet(&id, "bikes?model=cargo")).await.expect_status(StatusCode::OK).json();
    assert_eq!(none["items"], json!([]));

    let path = format!("bikes/{device}/certificates");
    vera.post(&fleet(&id, &path), json!({})).await.expect_problem(StatusCode::FORBIDDEN, "forbidden");
    let issued = otto.post(&fleet(&id, &path), json!({})).await.expect_status(StatusCode::CREATED).json();
    assert!(issued["bundle"]["key_pem"].as_str().is_some_and(|k| k.contains("PRIVATE KEY")), "{issued}");
    let serial = issued["certificate"]["serial"].as_str().expect("serial").to_owned();
    let listed = vera.get(&fleet(&id, &path)).await.expect_status(StatusCode::OK).json();
    assert_eq!(listed["items"][0]["serial"], serial.as_str());

    // Admins revoke; operators may not.
    let revoke = fleet(&id, &format!("certificates/{serial}/revoke"));
    otto.post(&revoke, json!({ "reason": "key_compromise" })).await.expect_problem(StatusCode::FORBIDDEN, "forbidden");
    let revoked = ada.post(&revoke, json!({ "reason": "key_compromise" })).await.expect_status(StatusCode::OK).json();
    assert_eq!(revoked["revocation_reason"], "key_compromise", "{revoked}");
    ada.post(&revoke, json!({ "reason": "superseded" })).await.expect_problem(StatusCode::CONFLICT, "already_revoked");
    ada.post(&revoke, json!({ "reason": "sorry" }))
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");

    for path in ["ca.pem", "crl.pem"] {
        let pem = vera.get(&fleet(&id, path)).await.expect_status(StatusCode::OK);
        assert!(pem.text.contains("-----BEGIN"), "{path}");
    }
    let broker = vera.get(&fleet(&id, "broker")).await.expect_status(StatusCode::OK).json();
    assert!(broker["url"].as_str().is_some_and(|u| u.starts_with("mqtts://127.0.0.1:")), "{broker}");
    let history =
        vera.get(&fleet(&id, &format!("bikes/{device}/telemetry?every=1m"))).await.expect_status(StatusCode::OK).json();
    assert_eq!(history["buckets"], json!([]), "{history}");
    vera.get(&fleet(&id, &format!("bikes/{device}/telemetry?every=soon")))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, "invalid_query");
    let quarantine = vera.get(&fleet(&id, "quarantine")).await.expect_status(StatusCode::OK).json();
    assert!(quarantine["items"].is_array(), "{quarantine}");

    // The live stream is passed on as it comes: its head at once, with no end.
    let live = vera
        .request(reqwest::Method::GET, &fleet(&id, &format!("bikes/{device}/live")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("the stream opens");
    assert_eq!(live.status(), StatusCode::OK);
    assert!(
        live.headers().get("content-type").is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream")),
        "{:?}",
        live.headers()
    );
    // Live streams count against the caller's, as Fleetplane's own do; closing one frees it.
    let open = || async {
        vera.request(reqwest::Method::GET, &fleet(&id, &format!("bikes/{device}/live")))
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("asked")
    };
    let second = open().await;
    assert_eq!(second.status(), StatusCode::OK);
    let refused = open().await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.text().await.expect("body").contains("too_many_streams"));
    drop(live);
    // The proxy notices the closed connection when it next writes to it: the fleet's
    // heartbeat comes every 15 s.
    eventually("the closed stream's place freed", 90, || async { open().await.status() == StatusCode::OK }).await;
    drop(second);

    // The fleet's pages render on the server too (a link opened in a new tab, a reload).
    for page in ["fleet", &format!("fleet/bikes/{device}"), "fleet/quarantine"] {
        let shown = vera.get(&format!("/orgs/ada/deployments/{id}/{page}")).await.expect_status(StatusCode::OK);
        assert!(shown.text.to_lowercase().contains("<!doctype html>"), "{page}: {}", shown.text);
    }

    // Admins decommission.
    otto.delete(&fleet(&id, &format!("bikes/{device}"))).await.expect_problem(StatusCode::FORBIDDEN, "forbidden");
    let gone = ada.delete(&fleet(&id, &format!("bikes/{device}"))).await.expect_status(StatusCode::OK).json();
    assert!(gone["decommissioned_at"].is_string(), "{gone}");

    // Another organization's deployment does not exist for eve; nor does an unknown one.
    eve.get(&fleet(&id, "bikes")).await.expect_problem(StatusCode::NOT_FOUND, "deployment_not_found");
    ada.get(&fleet(&Uuid::now_v7().to_string(), "bikes"))
        .await
        .expect_problem(StatusCode::NOT_FOUND, "deployment_not_found");
    ada.get(&fleet("not-a-uuid", "bikes")).await.expect_problem(StatusCode::NOT_FOUND, "not_found");
    // Routes the proxy does not forward are not there: the fleet's token list, for one.
    ada.get(&fleet(&id, "tokens")).await.expect_problem(StatusCode::NOT_FOUND, "not_found");

    // The token never reaches a caller, and a caller's credentials never reach the fleet.
    let shown = ada.get(&format!("/api/v1/orgs/ada/deployments/{id}")).await.expect_status(StatusCode::OK).text;
    assert!(!shown.contains("fltk_"), "{shown}");
    running.stop().await.expect("stops");
}

#[tokio::test]
async fn the_proxy_says_why_a_fleet_cannot_be_reached() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let id = deployment(&app, &ada).await;

    // Not yet deployed.
    ada.get(&fleet(&id, "bikes")).await.expect_problem(StatusCode::CONFLICT, "fleet_not_running");
    // Healthy, but nothing answers at its address.
    mark(&app, &id, "healthy", Some(format!("http://127.0.0.1:{}", free_port()))).await;
    let problem = ada.get(&fleet(&id, "bikes")).await.expect_problem(StatusCode::BAD_GATEWAY, "fleet_unreachable");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("did not answer")), "{problem}");
    mark(&app, &id, "healthy", None).await;
    ada.get(&fleet(&id, "bikes")).await.expect_problem(StatusCode::BAD_GATEWAY, "fleet_unreachable");

    // A fleet that no longer takes Fleetplane's token: revoked in the service.
    let dir = tempfile::tempdir().expect("dir");
    let running = start_fleet(&app, &id, dir.path()).await;
    mark(&app, &id, "healthy", Some(format!("http://{}", running.api))).await;
    ada.get(&fleet(&id, "bikes")).await.expect_status(StatusCode::OK);
    let registry = &running.state.registry;
    let managed = registry.tokens().await.expect("tokens").into_iter().find(|t| t.scope.as_str() == "admin");
    registry.revoke_token("test", &managed.expect("the managed token").id, chrono::Utc::now()).await.expect("revoked");
    // The fleet remembers a good token for a few seconds.
    eventually("the revoked token refused", 60, || async {
        ada.get(&fleet(&id, "bikes")).await.status == StatusCode::BAD_GATEWAY
    })
    .await;
    let problem = ada.get(&fleet(&id, "bikes")).await.expect_problem(StatusCode::BAD_GATEWAY, "fleet_token_refused");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("revoked")), "{problem}");
    running.stop().await.expect("stops");

    // Uninstalling, and uninstalled: not running.
    mark(&app, &id, "uninstalled", None).await;
    ada.get(&fleet(&id, "bikes")).await.expect_problem(StatusCode::CONFLICT, "fleet_not_running");
}

#[tokio::test]
async fn only_fleet_telemetry_deployments_have_a_fleet_api() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let id = deployment(&app, &ada).await;
    // A deployment of a service without a fleet API, as another catalog entry would be.
    let row = deployments::Entity::find_by_id(Uuid::parse_str(&id).expect("uuid"))
        .one(app.db())
        .await
        .expect("read")
        .expect("deployment");
    let mut row = row.into_active_model();
    row.service = Set("mlflow".into());
    row.status = Set("healthy".into());
    row.service_token_key_id = Set(None);
    row.service_token_sealed = Set(None);
    row.update(app.db()).await.expect("update");
    let problem = ada.get(&fleet(&id, "bikes")).await.expect_problem(StatusCode::CONFLICT, "not_a_fleet");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("mlflow")), "{problem}");
}
