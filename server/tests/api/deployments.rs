//! Deployments: validation through the catalog, roles, ready clusters only, revisions,
//! rollback, uninstall, secrets that never come back, and (with the Docker engine) the whole
//! life cycle of fleet-telemetry on the local target, a worker killed mid-deploy included.
//!
//! Tests that need Docker and the fleet-telemetry image are ignored by a plain `cargo test`;
//! `cargo xtask test` starts a Docker engine and builds the images (`cargo xtask images`).

use std::time::{Duration, Instant};

use fleetplane::{
    config::ExecutorChoice,
    entity::{audit_events, clusters, deployment_revisions, deployments, runs},
};
use reqwest::StatusCode;
use sea_orm::{ActiveModelTrait, EntityTrait, PaginatorTrait, Set};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{
    Client, TestApp,
    runs::{docker, docker_available, log_text, wait_for_run, wait_until_finished, with_workers},
    server::ServerProcess,
};

const PASSWORD: &str = "correct horse battery staple";

/// A cluster of organization `org` on `target`, stored as a finished apply would leave it: no
/// Terraform needed.
async fn seed_cluster(app: &TestApp, org: &str, target: &str, status: &str) -> String {
    seed_cluster_in(app.db(), org, target, status).await
}

fn deployments_of(cluster: &str) -> String {
    format!("/api/v1/orgs/ada/clusters/{cluster}/deployments")
}

fn deployment(id: &str) -> String {
    format!("/api/v1/orgs/ada/deployments/{id}")
}

async fn counts(app: &TestApp) -> (u64, u64, u64) {
    (
        deployments::Entity::find().count(app.db()).await.expect("count"),
        deployment_revisions::Entity::find().count(app.db()).await.expect("count"),
        runs::Entity::find().count(app.db()).await.expect("count"),
    )
}

#[tokio::test]
async fn deployments_are_checked_field_by_field_and_a_dry_run_stores_nothing() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let local = seed_cluster(&app, "ada", "local", "ready").await;
    let before = counts(&app).await;

    /// What is asked, the body, and the `(field, code)` errors expected among the answer's.
    type Case = (&'static str, Value, Vec<(&'static str, &'static str)>);
    let cases: Vec<Case> = vec![
        ("no service", json!({}), vec![("service", "required")]),
        ("unknown service", json!({ "service": "wordpress" }), vec![("service", "unknown")]),
        ("bad version", json!({ "service": "fleet-telemetry", "version": "9.9.9" }), vec![("version", "unsupported")]),
        (
            "a value of the wrong type",
            json!({ "service": "fleet-telemetry", "values": { "replicaCount": "two" } }),
            vec![("values.replicaCount", "wrong_type")],
        ),
        (
            "an unknown value",
            json!({ "service": "fleet-telemetry", "values": { "colour": "blue" } }),
            vec![("values.colour", "unknown_field")],
        ),
        (
            "a service with no image for the local target",
            json!({ "service": "jupyterhub" }),
            vec![("service", "local_unsupported")],
        ),
        (
            "several replicas on the local target",
            json!({ "service": "fleet-telemetry", "values": {
                "replicaCount": 2,
                "clickhouse": { "url": "http://clickhouse:8123/fleet" },
                "broker": { "external": { "url": "mqtts://mosquitto:8883" } },
            } }),
            vec![("values.replicaCount", "local_single_replica")],
        ),
    ];
    for (what, body, expected) in cases {
        for path in [deployments_of(&local), format!("{}?dry_run=true", deployments_of(&local))] {
            let refused = ada.post(&path, body.clone()).await;
            let problem = refused.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
            let found: Vec<(String, String)> = problem["errors"]
                .as_array()
                .expect("errors")
                .iter()
                .map(|e| (e["field"].as_str().unwrap_or("").to_owned(), e["code"].as_str().unwrap_or("").to_owned()))
                .collect();
            for (field, code) in &expected {
                assert!(
                    found.iter().any(|(f, c)| f == field && c == code),
                    "{what}: expected {field}/{code} in {found:?}"
                );
            }
        }
    }

    let checked = ada
        .post(
            &format!("{}?dry_run=true", deployments_of(&local)),
            json!({ "service": "fleet-telemetry", "values": { "resources": { "limits": { "memory": "512Mi" } } } }),
        )
        .await
        .expect_status(StatusCode::OK)
        .json();
    assert_eq!(checked["service"], "fleet-telemetry");
    assert_eq!(checked["version"], "0.1.0");
    assert_eq!(checked["values"]["resources"]["limits"], json!({ "cpu": "1", "memory": "512Mi" }), "{checked}");
    assert_eq!(checked["values"]["replicaCount"], 1, "defaults filled in");
    assert_eq!(counts(&app).await, before, "nothing was stored or queued");
}

#[tokio::test]
async fn only_ready_clusters_take_deployments_and_unknown_ones_are_not_found() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let body = json!({ "service": "fleet-telemetry" });
    for status in ["pending", "provisioning", "failed", "destroying", "destroyed"] {
        let cluster = seed_cluster(&app, "ada", "local", status).await;
        for path in [deployments_of(&cluster), format!("{}?dry_run=true", deployments_of(&cluster))] {
            ada.post(&path, body.clone()).await.expect_problem(StatusCode::CONFLICT, "cluster_not_ready");
        }
    }
    let missing = Uuid::now_v7();
    ada.post(&deployments_of(&missing.to_string()), body.clone())
        .await
        .expect_problem(StatusCode::NOT_FOUND, "cluster_not_found");
    ada.get(&deployment(&missing.to_string())).await.expect_problem(StatusCode::NOT_FOUND, "deployment_not_found");
    ada.patch(&deployment(&missing.to_string()), json!({}))
        .await
        .expect_problem(StatusCode::NOT_FOUND, "deployment_not_found");
    ada.delete(&deployment(&missing.to_string())).await.expect_problem(StatusCode::NOT_FOUND, "deployment_not_found");
    assert_eq!(counts(&app).await.0, 0);
}

#[tokio::test]
async fn a_cluster_with_deployments_is_not_destroyed_until_they_are_uninstalled() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let cluster = seed_cluster(&app, "ada", "local", "ready").await;
    let created = ada
        .post(&deployments_of(&cluster), json!({ "service": "fleet-telemetry" }))
        .await
        .expect_status(StatusCode::CREATED)
        .json();
    let id = created["deployment"]["id"].as_str().expect("id").to_owned();
    let destroy = format!("/api/v1/orgs/ada/clusters/{cluster}");
    let before = counts(&app).await;
    let problem = ada.delete(&destroy).await.expect_problem(StatusCode::CONFLICT, "cluster_has_deployments");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("fleet-telemetry (pending)")), "{problem}");
    assert_eq!(counts(&app).await, before, "no destroy run is queued");

    // Once it is uninstalled (as its uninstall run leaves it), the cluster can go.
    let row = deployments::Entity::find_by_id(id.parse::<Uuid>().expect("uuid")).one(app.db()).await.expect("read");
    let mut row: deployments::ActiveModel = row.expect("deployment").into();
    row.status = Set("uninstalled".into());
    row.update(app.db()).await.expect("update");
    let run = ada.delete(&destroy).await.expect_status(StatusCode::ACCEPTED).json();
    assert_eq!(run["action"], "destroy", "{run}");
}

#[tokio::test]
async fn operators_deploy_viewers_read_and_other_organizations_see_nothing() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let otto = app.user("otto").await;
    let vera = app.user("vera").await;
    let eve = app.user("eve").await;
    ada.add_to_org("ada", &otto, "operator").await;
    ada.add_to_org("ada", &vera, "viewer").await;
    let cluster = seed_cluster(&app, "ada", "local", "ready").await;
    let body = json!({ "service": "fleet-telemetry" });

    vera.post(&deployments_of(&cluster), body.clone()).await.expect_problem(StatusCode::FORBIDDEN, "forbidden");
    let created = otto.post(&deployments_of(&cluster), body.clone()).await.expect_status(StatusCode::CREATED).json();
    let id = created["deployment"]["id"].as_str().expect("id").to_owned();
    assert_eq!(created["deployment"]["created_by"], "otto");
    assert_eq!(created["run"]["action"], "deploy");

    let listed = vera.get(&deployments_of(&cluster)).await.expect_status(StatusCode::OK).json();
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1), "{listed}");
    vera.get(&deployment(&id)).await.expect_status(StatusCode::OK);
    for refused in [
        vera.patch(&deployment(&id), json!({})).await,
        vera.post(&format!("{}/rollback", deployment(&id)), json!({ "revision": 1 })).await,
        vera.delete(&deployment(&id)).await,
    ] {
        refused.expect_problem(StatusCode::FORBIDDEN, "forbidden");
    }
    // Another organization's deployment does not exist for eve.
    let theirs = format!("/api/v1/orgs/ada/deployments/{id}");
    eve.get(&theirs).await.expect_problem(StatusCode::NOT_FOUND, "org_not_found");
    let eves = seed_cluster(&app, "eve", "local", "ready").await;
    eve.get(&format!("/api/v1/orgs/eve/deployments/{id}"))
        .await
        .expect_problem(StatusCode::NOT_FOUND, "deployment_not_found");
    let listed = eve.get(&format!("/api/v1/orgs/eve/clusters/{eves}/deployments")).await.json();
    assert_eq!(listed["items"], json!([]));
}

#[tokio::test]
async fn upgrades_and_rollbacks_make_revisions_and_runs_in_the_clusters_queue() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let cluster = seed_cluster(&app, "ada", "local", "ready").await;
    let created = ada
        .post(&deployments_of(&cluster), json!({ "service": "fleet-telemetry" }))
        .await
        .expect_status(StatusCode::CREATED)
        .json();
    let id = created["deployment"]["id"].as_str().expect("id").to_owned();
    let deploy_run = created["run"]["id"].as_str().expect("run").to_owned();
    assert_eq!(created["deployment"]["status"], "pending");
    assert_eq!(created["deployment"]["release"], "fleet-telemetry");
    assert_eq!(created["run"]["deployment_id"], id.as_str());
    assert_eq!(created["run"]["status"], "queued");
    assert_eq!(created["deployment"]["revisions"][0]["revision"], 1);
    assert_eq!(created["deployment"]["revisions"][0]["run_id"], deploy_run.as_str());

    // The release is the service's: one per cluster.
    ada.post(&deployments_of(&cluster), json!({ "service": "fleet-telemetry" }))
        .await
        .expect_problem(StatusCode::CONFLICT, "deployment_exists");

    let upgraded = ada
        .patch(&deployment(&id), json!({ "values": { "resources": { "limits": { "memory": "2Gi" } } } }))
        .await
        .expect_status(StatusCode::OK)
        .json();
    assert_eq!(upgraded["run"]["action"], "upgrade");
    assert_eq!(upgraded["deployment"]["values"]["resources"]["limits"]["memory"], "2Gi");
    let revisions: Vec<i64> = upgraded["deployment"]["revisions"]
        .as_array()
        .expect("revisions")
        .iter()
        .filter_map(|r| r["revision"].as_i64())
        .collect();
    assert_eq!(revisions, [2, 1], "newest first");
    // It waits behind the deploy run: one active run per cluster.
    let reason = upgraded["run"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&deploy_run), "{reason}");

    ada.patch(&deployment(&id), json!({ "values": { "replicaCount": 0 } }))
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    ada.patch(&deployment(&id), json!({ "version": "0.0.1" }))
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");

    let rollback = format!("{}/rollback", deployment(&id));
    let missing = ada.post(&rollback, json!({ "revision": 9 })).await;
    missing.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(missing.fields(), ["revision"]);
    assert_eq!(missing.json()["errors"][0]["code"], "unknown_revision");
    let unnamed = ada.post(&rollback, json!({})).await;
    unnamed.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(unnamed.fields(), ["revision"]);

    let rolled = ada.post(&rollback, json!({ "revision": 1 })).await.expect_status(StatusCode::OK).json();
    assert_eq!(rolled["run"]["action"], "rollback");
    let newest = &rolled["deployment"]["revisions"][0];
    assert_eq!((newest["revision"].as_i64(), newest["rollback_of"].as_i64()), (Some(3), Some(1)));
    assert_eq!(newest["values"]["resources"]["limits"]["memory"], "1Gi", "revision 1's values");
    assert_eq!(rolled["deployment"]["values"]["resources"]["limits"]["memory"], "1Gi");

    let uninstall = ada.delete(&deployment(&id)).await.expect_status(StatusCode::ACCEPTED).json();
    assert_eq!(uninstall["run"]["action"], "uninstall");
    ada.delete(&deployment(&id)).await.expect_problem(StatusCode::CONFLICT, "deployment_uninstalling");

    // The cluster's own status is not the deployments': it stays ready.
    let shown = ada.get(&format!("/api/v1/orgs/ada/clusters/{cluster}")).await.expect_status(StatusCode::OK).json();
    assert_eq!(shown["status"], "ready");
    let cluster_runs = ada.get(&format!("/api/v1/orgs/ada/clusters/{cluster}/runs")).await.json();
    let actions: Vec<&str> =
        cluster_runs.as_array().expect("runs").iter().filter_map(|r| r["action"].as_str()).collect();
    assert_eq!(actions, ["uninstall", "rollback", "upgrade", "deploy"]);

    let audited: Vec<String> = audit_events::Entity::find()
        .all(app.db())
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .filter(|a| a.starts_with("deployment."))
        .collect();
    for action in
        ["deployment.created", "deployment.upgraded", "deployment.rolled_back", "deployment.uninstall_requested"]
    {
        assert!(audited.iter().any(|a| a == action), "{action} in {audited:?}");
    }
}

#[tokio::test]
async fn secret_values_are_sealed_and_never_returned() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let cluster = seed_cluster(&app, "ada", "aws-eks", "ready").await;
    let body = json!({ "service": "code-server", "values": { "password": PASSWORD } });
    let mut answers = Vec::new();
    let checked = ada.post(&format!("{}?dry_run=true", deployments_of(&cluster)), body.clone()).await;
    answers.push(checked.expect_status(StatusCode::OK).json());
    assert_eq!(answers[0]["secrets"], json!(["/password"]));
    let created = ada.post(&deployments_of(&cluster), body).await.expect_status(StatusCode::CREATED).json();
    let id = created["deployment"]["id"].as_str().expect("id").to_owned();
    answers.push(created);
    // An upgrade that leaves the password out keeps it.
    let upgraded = ada.patch(&deployment(&id), json!({ "values": {} })).await.expect_status(StatusCode::OK).json();
    assert_eq!(upgraded["deployment"]["revisions"][0]["secrets"], json!(["/password"]), "{upgraded}");
    answers.push(upgraded);
    answers.push(ada.post(&format!("{}/rollback", deployment(&id)), json!({ "revision": 1 })).await.json());
    answers.push(ada.get(&deployment(&id)).await.json());
    answers.push(ada.get(&deployments_of(&cluster)).await.json());
    answers.push(ada.delete(&deployment(&id)).await.json());
    for answer in &answers {
        assert!(!answer.to_string().contains(PASSWORD), "a secret came back: {answer}");
    }
    let stored = deployments::Entity::find().all(app.db()).await.expect("deployments");
    let revisions = deployment_revisions::Entity::find().all(app.db()).await.expect("revisions");
    let in_clear = format!("{stored:?}{revisions:?}");
    assert!(!in_clear.contains(PASSWORD), "stored sealed, never in clear");
    assert!(stored[0].secrets_sealed.is_some() && revisions.iter().all(|r| r.secrets_sealed.is_some()));
    let run_specs: Vec<String> =
        runs::Entity::find().all(app.db()).await.expect("runs").into_iter().map(|r| r.spec.to_string()).collect();
    assert!(run_specs.iter().all(|s| !s.contains(PASSWORD)), "runs hold no secret either");
}

#[tokio::test]
async fn a_cloud_deployment_helm_cannot_carry_out_fails_at_once_saying_why() {
    let app = TestApp::spawn_with(|config| with_workers(config, ExecutorChoice::Auto, 1)).await;
    let ada = app.user("ada").await;
    let cluster = seed_cluster(&app, "ada", "aws-eks", "ready").await;
    let fails = |service: &'static str, cluster: String| {
        let ada = ada.clone();
        async move {
            let created = ada
                .post(&deployments_of(&cluster), json!({ "service": service }))
                .await
                .expect_status(StatusCode::CREATED)
                .json();
            let ended = wait_until_finished(&ada, created["run"]["id"].as_str().expect("run"), 60).await;
            assert_eq!(ended["status"], "failed", "{ended}");
            let shown = ada.get(&deployment(created["deployment"]["id"].as_str().expect("id"))).await.json();
            assert_eq!((&shown["status"], &shown["revisions"][0]["status"]), (&json!("failed"), &json!("failed")));
            ended["reason"].as_str().unwrap_or_default().to_owned()
        }
    };
    // code-server's chart is only in a git repository, which helm cannot install from.
    let reason = fails("code-server", cluster.clone()).await;
    assert!(reason.contains("published only in its git repository"), "{reason}");
    // A cluster whose apply recorded no outputs cannot be reached.
    let reason = fails("fleet-telemetry", cluster.clone()).await;
    assert!(reason.contains("outputs have no cluster_name"), "{reason}");
    // Nor one without a cloud account to mint its token with.
    let unlinked = seed_cluster(&app, "ada", "gcp-gke", "ready").await;
    let mut reachable: clusters::ActiveModel = clusters::Entity::find_by_id(unlinked.parse::<Uuid>().expect("uuid"))
        .one(app.db())
        .await
        .expect("read")
        .expect("row")
        .into();
    reachable.outputs = Set(Some(json!({
        "cluster_name": "fleet", "endpoint": "https://127.0.0.1:1",
        "ca_data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=",
    })));
    reachable.update(app.db()).await.expect("outputs");
    let reason = fails("fleet-telemetry", unlinked).await;
    assert!(reason.contains("no linked cloud account"), "{reason}");
}

/// The containers of deployment `id` on the test engine, as `(container id, revision)`.
fn containers_of(id: &str) -> Vec<(String, String)> {
    docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=fleetplane.deployment={id}"),
        "--format",
        "{{.ID}} {{.Label \"fleetplane.revision\"}}",
    ])
    .lines()
    .filter_map(|line| line.split_once(' ').map(|(c, r)| (c.to_owned(), r.to_owned())))
    .collect()
}

fn volume_exists(id: &str) -> bool {
    let volume = format!("fleetplane-deployment-{}", id.replace('-', ""));
    docker(&["volume", "ls", "-q"]).lines().any(|v| v == volume)
}

async fn wait_for_status(client: &Client, id: &str, wanted: &str, seconds: u64) -> Value {
    let started = Instant::now();
    loop {
        let shown = client.get(&deployment(id)).await.expect_status(StatusCode::OK).json();
        if shown["status"] == wanted {
            return shown;
        }
        assert!(
            started.elapsed() < Duration::from_secs(seconds),
            "still {} after {seconds} s: {shown}",
            shown["status"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `GET url/readyz` answers 200.
async fn answers_ready(url: &str) -> bool {
    reqwest::get(format!("{url}/readyz")).await.is_ok_and(|r| r.status() == StatusCode::OK)
}

#[tokio::test]
#[ignore = "needs Docker and the fleet-telemetry image: run `cargo xtask test`"]
async fn fleet_telemetry_deploys_upgrades_rolls_back_and_uninstalls_on_the_local_target() {
    assert!(docker_available(), "FLEETPLANE_TEST_DOCKER is not set: run `cargo xtask test`");
    let app = TestApp::spawn_with(|config| with_workers(config, ExecutorChoice::Docker, 1)).await;
    let ada = app.user("ada").await;
    let cluster = seed_cluster(&app, "ada", "local", "ready").await;
    let created = ada
        .post(&deployments_of(&cluster), json!({ "service": "fleet-telemetry" }))
        .await
        .expect_status(StatusCode::CREATED)
        .json();
    let id = created["deployment"]["id"].as_str().expect("id").to_owned();
    let run = created["run"]["id"].as_str().expect("run").to_owned();
    let ended = wait_until_finished(&ada, &run, 180).await;
    assert_eq!(ended["status"], "succeeded", "{ended}\n{}", log_text(&ada, &run).await);
    let shown = wait_for_status(&ada, &id, "healthy", 10).await;
    assert_eq!(shown["current_revision"], 1);
    assert!(shown["health_checked_at"].is_string());
    let url = shown["outputs"]["url"].as_str().expect("url").to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(shown["outputs"]["broker"].as_str().is_some_and(|b| b.starts_with("127.0.0.1:")), "{shown}");
    assert!(answers_ready(&url).await, "the service answers on its URL");
    let first = containers_of(&id);
    assert_eq!(first.iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>(), ["1"], "{first:?}");
    let labels = docker(&["inspect", "--format", "{{json .Config.Labels}}", &first[0].0]);
    let labels: Value = serde_json::from_str(labels.trim()).expect("labels");
    assert_eq!(labels["fleetplane.cluster"], cluster.as_str());
    assert!(volume_exists(&id));
    // What the deployment page tells a user to run for simulated bikes: a write token from the
    // service's own CLI, in its container.
    let token = docker(&[
        "exec",
        &first[0].0,
        "/fleet-telemetry",
        "admin",
        "create-token",
        "--name",
        "sim",
        "--scope",
        "write",
    ]);
    let token = token.trim();
    assert!(token.starts_with("fltk_"), "{token}");
    let bikes = reqwest::Client::new().get(format!("{url}/api/v1/bikes")).bearer_auth(token).send().await.expect("ask");
    assert_eq!(bikes.status(), StatusCode::OK);

    // Health is asked again while it runs: a stopped service is degraded, a restarted one healthy.
    docker(&["stop", &first[0].0]);
    let degraded = wait_for_status(&ada, &id, "degraded", 30).await;
    assert!(degraded["reason"].as_str().is_some_and(|r| r.contains("/readyz")), "{degraded}");
    docker(&["start", &first[0].0]);
    wait_for_status(&ada, &id, "healthy", 60).await;

    let upgraded = ada
        .patch(&deployment(&id), json!({ "values": { "resources": { "limits": { "memory": "768Mi" } } } }))
        .await
        .expect_status(StatusCode::OK)
        .json();
    let run = upgraded["run"]["id"].as_str().expect("run").to_owned();
    let ended = wait_until_finished(&ada, &run, 180).await;
    assert_eq!(ended["status"], "succeeded", "{ended}\n{}", log_text(&ada, &run).await);
    let shown = wait_for_status(&ada, &id, "healthy", 10).await;
    assert_eq!(shown["current_revision"], 2);
    let second = containers_of(&id);
    assert_eq!(second.iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>(), ["2"], "replaced: {second:?}");
    let memory = docker(&["inspect", "--format", "{{.HostConfig.Memory}}", &second[0].0]);
    assert_eq!(memory.trim(), (768 * 1024 * 1024).to_string());
    assert!(volume_exists(&id), "the data volume is kept");
    let statuses: Vec<(i64, String)> = shown["revisions"]
        .as_array()
        .expect("revisions")
        .iter()
        .map(|r| (r["revision"].as_i64().unwrap_or(0), r["status"].as_str().unwrap_or("").to_owned()))
        .collect();
    assert_eq!(statuses, [(2, "deployed".to_owned()), (1, "superseded".to_owned())]);

    let rolled = ada
        .post(&format!("{}/rollback", deployment(&id)), json!({ "revision": 1 }))
        .await
        .expect_status(StatusCode::OK);
    let run = rolled.json()["run"]["id"].as_str().expect("run").to_owned();
    let ended = wait_until_finished(&ada, &run, 180).await;
    assert_eq!(ended["status"], "succeeded", "{ended}\n{}", log_text(&ada, &run).await);
    let shown = wait_for_status(&ada, &id, "healthy", 10).await;
    assert_eq!(shown["current_revision"], 3);
    let third = containers_of(&id);
    let memory = docker(&["inspect", "--format", "{{.HostConfig.Memory}}", &third[0].0]);
    assert_eq!(memory.trim(), (1024 * 1024 * 1024).to_string(), "revision 1's limits again");

    let uninstall = ada.delete(&deployment(&id)).await.expect_status(StatusCode::ACCEPTED).json();
    let run = uninstall["run"]["id"].as_str().expect("run").to_owned();
    let ended = wait_until_finished(&ada, &run, 120).await;
    assert_eq!(ended["status"], "succeeded", "{ended}");
    let shown = wait_for_status(&ada, &id, "uninstalled", 10).await;
    assert_eq!(shown["outputs"], Value::Null);
    assert!(containers_of(&id).is_empty(), "containers are gone");
    assert!(!volume_exists(&id), "the volume is gone");
    // The release name is free again.
    ada.post(&format!("{}?dry_run=true", deployments_of(&cluster)), json!({ "service": "fleet-telemetry" }))
        .await
        .expect_status(StatusCode::OK);
}

/// The server as a process, for tests that kill it: one worker, short leases, the test engine.
fn start_server(dir: &std::path::Path, database_url: &str, port: u16) -> ServerProcess {
    let docker_host = std::env::var("DOCKER_HOST").unwrap_or_default();
    let env = [
        ("FLEETPLANE_EXECUTOR", "docker"),
        ("FLEETPLANE_WORKERS", "1"),
        ("FLEETPLANE_RUN_LEASE_SECS", "6"),
        ("FLEETPLANE_RUN_NETWORK", "host"),
        ("DOCKER_HOST", docker_host.as_str()),
    ];
    ServerProcess::start(dir, database_url, port, &env)
}

#[tokio::test]
#[ignore = "needs Docker and the fleet-telemetry image: run `cargo xtask test`"]
async fn a_deploy_whose_worker_is_killed_is_reclaimed_and_finishes_with_one_container() {
    assert!(docker_available(), "FLEETPLANE_TEST_DOCKER is not set: run `cargo xtask test`");
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = crate::support::fresh_database_url(dir.path()).await;
    let mut create_user = crate::support::server::fleetplane(dir.path(), &database_url);
    create_user.args(["admin", "create-user", "--email", "ada@example.com", "--username", "ada", "--password-stdin"]);
    assert!(crate::support::server::run_with_stdin(create_user, "a long admin password\n").status.success());
    let port = crate::support::ports::free_port();
    let base: url::Url = format!("http://127.0.0.1:{port}/").parse().expect("url");
    let client = || {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder().cookie_provider(jar.clone()).build().expect("client");
        Client::from_parts(http, jar, base.clone())
    };
    let db = sea_orm::Database::connect(&database_url).await.expect("database");
    let cluster = seed_cluster_in(&db, "ada", "local", "ready").await;

    let mut server = start_server(dir.path(), &database_url, port);
    let ada = client();
    ada.sign_in("ada@example.com", "a long admin password").await.expect_status(StatusCode::OK);
    let created = ada
        .post(&deployments_of(&cluster), json!({ "service": "fleet-telemetry" }))
        .await
        .expect_status(StatusCode::CREATED)
        .json();
    let id = created["deployment"]["id"].as_str().expect("id").to_owned();
    let run = created["run"]["id"].as_str().expect("run").to_owned();
    wait_for_run(&ada, &run, 60, |r| r["status"] == "running").await;

    // kill -9 while the run is held: no shutdown, no cleanup.
    server.child.kill().expect("kill -9");
    server.child.wait().expect("reap");
    drop(server);
    let held = runs::Entity::find_by_id(run.parse::<Uuid>().expect("uuid")).one(&db).await.expect("run").expect("row");
    assert_eq!(held.status, "running", "killed mid-deploy, before it could finish");
    let _server = start_server(dir.path(), &database_url, port);
    let ada = client();
    ada.sign_in("ada@example.com", "a long admin password").await.expect_status(StatusCode::OK);

    let ended = wait_until_finished(&ada, &run, 180).await;
    assert_eq!(ended["status"], "succeeded", "{ended}\n{}", log_text(&ada, &run).await);
    let log = log_text(&ada, &run).await;
    assert!(log.contains("stopped responding"), "the lost attempt is explained in the log: {log}");
    let shown = wait_for_status(&ada, &id, "healthy", 10).await;
    assert!(answers_ready(shown["outputs"]["url"].as_str().expect("url")).await);
    assert_eq!(containers_of(&id).len(), 1, "one container, whether the first attempt's or the second's");

    let uninstall = ada.delete(&deployment(&id)).await.expect_status(StatusCode::ACCEPTED).json();
    let ended = wait_until_finished(&ada, uninstall["run"]["id"].as_str().expect("run"), 120).await;
    assert_eq!(ended["status"], "succeeded", "{ended}");
    assert!(containers_of(&id).is_empty() && !volume_exists(&id));
}

/// [`seed_cluster`] for any database, a server's running as a process included.
pub(crate) use crate::support::runs::seed_cluster as seed_cluster_in;
