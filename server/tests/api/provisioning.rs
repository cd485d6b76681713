//! Clusters and runs: validation, the queue, approval, failure, cancel, crash recovery and the
//! Terraform state backend, with the real Terraform binary and (where named) the real Docker
//! engine running the local provisioner image.
//!
//! Tests that need Terraform or Docker are ignored by a plain `cargo test`; `cargo xtask test`
//! starts a Docker engine, builds the local provisioner image and runs them.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use fleetplane::{
    config::ExecutorChoice,
    entity::{run_logs, runs},
};
use reqwest::StatusCode;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

use crate::support::{
    Client, TestApp,
    clouds::{AzureTenant, FakeAzure},
    runs::{
        concurrency_of, docker_available, job_containers, local_cluster, log_text, wait_for_run, wait_until_finished,
        with_workers,
    },
    server::ServerProcess,
};

const CLUSTERS: &str = "/api/v1/orgs/ada/clusters";

async fn create(client: &Client, body: Value) -> (String, String) {
    let created = client.post(CLUSTERS, body).await.expect_status(StatusCode::CREATED).json();
    (
        created["cluster"]["id"].as_str().expect("cluster id").to_owned(),
        created["run"]["id"].as_str().expect("run id").to_owned(),
    )
}

#[tokio::test]
async fn cluster_specs_are_validated_field_by_field_and_nothing_is_queued() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    ada.post(CLUSTERS, local_cluster("dev", json!(null))).await.expect_status(StatusCode::CREATED);
    let valid = ada.post(&format!("{CLUSTERS}?dry_run=true"), local_cluster("stage", json!(null))).await;
    assert_eq!(valid.expect_status(StatusCode::OK).json(), json!({ "name": "shop-stage" }));

    let runs_before = runs::Entity::find().count(app.db()).await.expect("count");
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        ("overlapping subnets", json!({ "public_subnets": ["10.0.0.0/20", "10.0.8.0/24"] }), vec!["public_subnets.1"]),
        ("subnet outside the VPC", json!({ "private_subnets": ["10.9.0.0/24"] }), vec!["private_subnets.0"]),
        ("bad CIDR syntax", json!({ "vpc_cidr": "10.0.0/16" }), vec!["vpc_cidr"]),
        ("host bits set", json!({ "public_subnets": ["10.0.0.1/20"] }), vec!["public_subnets.0"]),
        ("unknown region", json!({ "region": "mars-north-1" }), vec!["region"]),
        ("unsupported version", json!({ "kubernetes_version": "1.19" }), vec!["kubernetes_version"]),
        ("name too long", json!({ "name_suffix": "a-very-long-suffix-for-a-cluster-name" }), vec!["name_suffix"]),
        ("not DNS-1123", json!({ "name_prefix": "Shop_1" }), vec!["name_prefix"]),
        ("node counts min > max", json!({ "node_min": 5, "node_max": 2 }), vec!["node_min"]),
        (
            "unknown target (which also needs an account)",
            json!({ "target": "openshift" }),
            vec!["cloud_account_id", "target"],
        ),
        (
            "simulation on a real target",
            json!({ "target": "aws-eks", "region": "eu-west-1", "node_instance_type": "m6i.large", "simulate": { "fail_at": "apply" } }),
            vec!["cloud_account_id", "simulate"],
        ),
    ];
    for (what, change, fields) in cases {
        let mut body = local_cluster("prod", json!(null));
        for (key, value) in change.as_object().expect("object") {
            body[key] = value.clone();
        }
        for path in [CLUSTERS.to_owned(), format!("{CLUSTERS}?dry_run=true")] {
            let refused = ada.post(&path, body.clone()).await;
            refused.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
            assert_eq!(refused.fields(), fields, "{what}");
        }
    }
    let duplicate = ada.post(CLUSTERS, local_cluster("dev", json!(null))).await;
    duplicate.expect_problem(StatusCode::CONFLICT, "cluster_name_taken");
    assert_eq!(duplicate.fields(), ["name_suffix"]);
    assert_eq!(runs::Entity::find().count(app.db()).await.expect("count"), runs_before, "nothing was queued");
}

#[tokio::test]
async fn only_admins_create_or_destroy_and_other_organizations_see_nothing() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let mut members = HashMap::new();
    for (name, role) in [("otto", "operator"), ("vera", "viewer")] {
        let client = app.user(name).await;
        ada.add_to_org("ada", &client, role).await;
        members.insert(role, client);
    }
    let (cluster, run) = create(&ada, local_cluster("dev", json!(null))).await;
    let operator = &members["operator"];
    let viewer = &members["viewer"];

    app.assert_unchanged(async {
        for client in [operator, viewer] {
            client
                .post(CLUSTERS, local_cluster("x", json!(null)))
                .await
                .expect_problem(StatusCode::FORBIDDEN, "forbidden");
            client.delete(&format!("{CLUSTERS}/{cluster}")).await.expect_problem(StatusCode::FORBIDDEN, "forbidden");
            client.get(&format!("{CLUSTERS}/{cluster}")).await.expect_status(StatusCode::OK);
            client.get(&format!("/api/v1/runs/{run}")).await.expect_status(StatusCode::OK);
        }
        viewer
            .post(&format!("{CLUSTERS}/{cluster}/runs"), json!({ "action": "plan" }))
            .await
            .expect_problem(StatusCode::FORBIDDEN, "forbidden");
        operator
            .post(&format!("{CLUSTERS}/{cluster}/runs"), json!({ "action": "apply" }))
            .await
            .expect_problem(StatusCode::FORBIDDEN, "forbidden");
        viewer
            .post_empty(&format!("/api/v1/runs/{run}/cancel"))
            .await
            .expect_problem(StatusCode::FORBIDDEN, "forbidden");
        viewer
            .delete(&format!("{CLUSTERS}/{cluster}/state/lock"))
            .await
            .expect_problem(StatusCode::FORBIDDEN, "forbidden");
        // A destroy is the cluster's DELETE, even for an owner; the body says so on its field.
        let problem = ada
            .post(&format!("{CLUSTERS}/{cluster}/runs"), json!({ "action": "destroy" }))
            .await
            .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(problem["errors"][0]["field"], "action", "{problem}");
        assert!(
            problem["errors"][0]["message"].as_str().is_some_and(|m| m.contains("Delete the cluster")),
            "{problem}"
        );
    })
    .await;
    operator
        .post(&format!("{CLUSTERS}/{cluster}/runs"), json!({ "action": "plan" }))
        .await
        .expect_status(StatusCode::CREATED);

    let eve = app.user("eve").await;
    eve.get(&format!("/api/v1/runs/{run}")).await.expect_problem(StatusCode::NOT_FOUND, "run_not_found");
    eve.get(&format!("/api/v1/runs/{run}/logs")).await.expect_problem(StatusCode::NOT_FOUND, "run_not_found");
    eve.post_empty(&format!("/api/v1/runs/{run}/cancel")).await.expect_problem(StatusCode::NOT_FOUND, "run_not_found");
    eve.get(&format!("/api/v1/orgs/eve/clusters/{cluster}"))
        .await
        .expect_problem(StatusCode::NOT_FOUND, "cluster_not_found");
    eve.get(&format!("{CLUSTERS}/{cluster}")).await.expect_problem(StatusCode::NOT_FOUND, "org_not_found");
}

#[tokio::test]
async fn queued_runs_say_where_they_stand_and_why() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let (cluster, first) = create(&ada, local_cluster("dev", json!(null))).await;
    let (_, other) = create(&ada, local_cluster("qa", json!(null))).await;
    let behind = ada.post(&format!("{CLUSTERS}/{cluster}/runs"), json!({ "action": "plan" })).await.json();

    let first = ada.get(&format!("/api/v1/runs/{first}")).await.json();
    assert_eq!((first["status"].as_str(), first["position"].as_u64()), (Some("queued"), Some(1)));
    assert!(first["reason"].as_str().expect("reason").starts_with("No worker is running"), "{first}");
    let other = ada.get(&format!("/api/v1/runs/{other}")).await.json();
    assert_eq!(other["position"], 2, "FIFO across clusters");
    let behind = ada.get(&format!("/api/v1/runs/{}", behind["id"].as_str().expect("id"))).await.json();
    assert_eq!(behind["position"], Value::Null);
    assert!(behind["reason"].as_str().expect("reason").contains(first["id"].as_str().expect("id")), "{behind}");
    // The list shows each cluster's latest run, with where it stands.
    let list = ada.get(CLUSTERS).await.expect_status(StatusCode::OK).json();
    let latest: HashMap<&str, &Value> =
        list.as_array().expect("list").iter().map(|c| (c["name"].as_str().expect("name"), &c["last_run"])).collect();
    assert_eq!(
        (latest["shop-dev"]["id"].as_str(), &latest["shop-dev"]["action"]),
        (behind["id"].as_str(), &json!("plan"))
    );
    assert_eq!((latest["shop-qa"]["id"].as_str(), &latest["shop-qa"]["position"]), (other["id"].as_str(), &json!(2)));

    // Canceling a run no worker holds ends it at once; the plan behind it now waits only for the
    // queue, behind the other cluster's earlier run.
    ada.post_empty(&format!("/api/v1/runs/{}/cancel", first["id"].as_str().expect("id")))
        .await
        .expect_status(StatusCode::OK);
    let canceled = ada.get(&format!("/api/v1/runs/{}", first["id"].as_str().expect("id"))).await.json();
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(ada.get(&format!("{CLUSTERS}/{cluster}")).await.json()["status"], "failed");
    let behind = ada.get(&format!("/api/v1/runs/{}", behind["id"].as_str().expect("id"))).await.json();
    assert_eq!(behind["position"], 2);
    ada.post_empty(&format!("/api/v1/runs/{}/cancel", first["id"].as_str().expect("id")))
        .await
        .expect_problem(StatusCode::CONFLICT, "run_state");
    ada.post_empty(&format!("/api/v1/runs/{}/approve", behind["id"].as_str().expect("id")))
        .await
        .expect_problem(StatusCode::CONFLICT, "run_state");
}

#[tokio::test]
async fn a_run_whose_workers_keep_vanishing_is_retried_with_backoff_then_fails_with_the_reason() {
    use fleetplane::queue;
    use sea_orm::{ActiveModelTrait, IntoActiveModel, Set};

    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let (cluster, run) = create(&ada, local_cluster("dev", json!(null))).await;
    let id: uuid::Uuid = run.parse().expect("uuid");
    // Moves the run's clock on: the lease has expired and any backoff has passed.
    async fn age(db: &sea_orm::DatabaseConnection, run: runs::Model) {
        let past = chrono::Utc::now() - chrono::TimeDelta::hours(1);
        let mut active = run.into_active_model();
        active.lease_expires_at = Set(Some(past));
        active.not_before = Set(past);
        active.update(db).await.expect("update");
    }
    for attempt in 1..=3 {
        let claimed = queue::claim(app.db(), &format!("ghost-{attempt}"), Duration::from_secs(30))
            .await
            .expect("claim")
            .expect("the run is claimable");
        assert_eq!((claimed.run.id, claimed.run.attempts), (id, attempt));
        // A second worker finds nothing while the lease holds.
        assert!(queue::claim(app.db(), "other", Duration::from_secs(30)).await.expect("claim").is_none());
        age(app.db(), claimed.run).await;
        assert_eq!(queue::reap(app.db()).await.expect("reap"), 1);
        let stored = runs::Entity::find_by_id(id).one(app.db()).await.expect("read").expect("run");
        let reason = stored.reason.clone().unwrap_or_default();
        assert!(reason.starts_with(&format!("Worker ghost-{attempt} stopped responding")), "{reason}");
        let view = ada.get(&format!("/api/v1/runs/{run}")).await.json();
        if attempt < 3 {
            assert!(reason.ends_with(&format!("tried again ({attempt} of 3 attempts used)")), "{reason}");
            // Not before its backoff: no worker may take it yet, and the run says so.
            assert_eq!(view["status"], "queued", "{view}");
            assert!(view["reason"].as_str().expect("reason").starts_with("Retrying after a failed attempt"), "{view}");
            assert!(queue::claim(app.db(), "eager", Duration::from_secs(30)).await.expect("claim").is_none());
            assert!(stored.not_before > chrono::Utc::now(), "a backoff is set");
            age(app.db(), stored).await;
        } else {
            assert!(reason.ends_with("no attempts left (3 of 3)"), "{reason}");
            assert_eq!((view["status"].as_str(), view["reason"].as_str()), (Some("failed"), Some(reason.as_str())));
        }
    }
    assert_eq!(ada.get(&format!("{CLUSTERS}/{cluster}")).await.json()["status"], "failed");
    let log = log_text(&ada, &run).await;
    assert_eq!(log.matches("stopped responding").count(), 3, "each lost attempt is in the log: {log}");
}

/// Creates a local cluster, waits for it to be ready, checks what the run left behind, destroys
/// it and checks it is gone. Returns the two runs.
async fn create_and_destroy(app: &TestApp, ada: &Client, executor: &str) -> [String; 2] {
    let (cluster, run) = create(ada, local_cluster("dev", json!({ "step_seconds": 1 }))).await;
    let done = wait_until_finished(ada, &run, 120).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["executor"], executor);
    assert_eq!(done["plan_summary"], json!({ "add": 3, "change": 0, "destroy": 0 }));
    let outputs = &done["outputs"];
    assert!(outputs["endpoint"].as_str().is_some_and(|e| e.contains("shop-dev")), "{outputs}");
    assert!(outputs.get("admin_token").is_none(), "sensitive outputs are not kept");
    let shown = ada.get(&format!("{CLUSTERS}/{cluster}")).await.json();
    assert_eq!(shown["status"], "ready");
    assert_eq!(shown["outputs"], *outputs);

    let state = ada.get(&format!("{CLUSTERS}/{cluster}/state")).await.json();
    assert!(!state["versions"].as_array().expect("versions").is_empty(), "the state went through the http backend");
    assert_eq!(state["lock"], Value::Null, "the lock was released");
    let log = log_text(ada, &run).await;
    assert!(log.contains("Apply complete!"), "{log}");
    assert!(!log.contains("fprun_"), "the run token never reaches the log");
    assert!(!log.contains("admin-"), "sensitive outputs never reach the log");

    let destroy = ada.delete(&format!("{CLUSTERS}/{cluster}")).await.expect_status(StatusCode::ACCEPTED).json();
    assert_eq!(ada.get(&format!("{CLUSTERS}/{cluster}")).await.json()["status"], "destroying");
    let destroy = destroy["id"].as_str().expect("id").to_owned();
    let destroyed = wait_until_finished(ada, &destroy, 120).await;
    assert_eq!(destroyed["status"], "succeeded", "{destroyed}");
    assert_eq!(destroyed["plan_summary"]["destroy"], 3);
    let shown = ada.get(&format!("{CLUSTERS}/{cluster}")).await.json();
    assert_eq!((shown["status"].as_str(), &shown["outputs"]), (Some("destroyed"), &Value::Null));
    // The name is free again.
    ada.post(&format!("{CLUSTERS}?dry_run=true"), local_cluster("dev", json!(null)))
        .await
        .expect_status(StatusCode::OK);
    let _ = app;
    [run, destroy]
}

#[tokio::test]
#[ignore = "needs Terraform: run `cargo xtask test`"]
async fn the_process_executor_creates_and_destroys_a_local_cluster() {
    let app = TestApp::spawn_with(|config| with_workers(config, ExecutorChoice::Process, 1)).await;
    let ada = app.user("ada").await;
    let _ = create_and_destroy(&app, &ada, "process").await;
}

#[tokio::test]
#[ignore = "needs Docker and the local provisioner image: run `cargo xtask test`"]
async fn the_docker_executor_creates_and_destroys_a_local_cluster() {
    assert!(docker_available(), "FLEETPLANE_TEST_DOCKER is not set: run `cargo xtask test`");
    let app = TestApp::spawn_with(|config| with_workers(config, ExecutorChoice::Docker, 1)).await;
    let ada = app.user("ada").await;
    let [create, destroy] = create_and_destroy(&app, &ada, "docker").await;
    assert!(job_containers(&[&create, &destroy]).is_empty(), "no container is left behind");
}

#[tokio::test]
#[ignore = "needs Terraform: run `cargo xtask test`"]
async fn runs_against_a_prod_account_wait_for_an_admins_approval() {
    let secret = "azure-Secret~prod-approval-0123456789";
    let client_id = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";
    let tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let tenant = AzureTenant {
        clients: HashMap::from([(client_id.to_owned(), secret.to_owned())]),
        subscriptions: vec![("8d2a3c4e-1111-4d0e-9c3b-1a2b3c4d5e6f".into(), "Production".into())],
        ..AzureTenant::default()
    };
    let azure = FakeAzure::start(HashMap::from([(tenant_id.to_owned(), tenant)])).await;
    let app = TestApp::spawn_with(|config| {
        with_workers(config, ExecutorChoice::Process, 1);
        config.cloud.azure_authority_host = azure.url.clone();
        config.cloud.azure_arm_endpoint = azure.url.clone();
        config.cloud.extra_ca_file = Some(azure.ca_file.path().to_owned());
    })
    .await;
    let ada = app.user("ada").await;
    let mut clients = HashMap::new();
    for (name, role) in [("otto", "operator"), ("vera", "viewer")] {
        let client = app.user(name).await;
        ada.add_to_org("ada", &client, role).await;
        clients.insert(role, client);
    }
    let account = ada
        .post(
            "/api/v1/orgs/ada/cloud-accounts",
            json!({ "provider": "azure", "name": "prod", "environment": "prod",
                    "credentials": { "tenant_id": tenant_id, "client_id": client_id, "client_secret": secret } }),
        )
        .await
        .expect_status(StatusCode::CREATED)
        .json();
    let mut body = local_cluster("prod", json!({ "step_seconds": 1 }));
    body["cloud_account_id"] = account["id"].clone();
    let (cluster, run) = create(&ada, body).await;

    let waiting = wait_for_run(&ada, &run, 60, |r| r["status"] == "awaiting_approval").await;
    assert_eq!(waiting["plan_summary"], json!({ "add": 3, "change": 0, "destroy": 0 }));
    assert!(waiting["reason"].as_str().expect("reason").contains("approve"), "{waiting}");
    assert_eq!(ada.get(&format!("{CLUSTERS}/{cluster}")).await.json()["status"], "pending");
    for role in ["viewer", "operator"] {
        clients[role]
            .post_empty(&format!("/api/v1/runs/{run}/approve"))
            .await
            .expect_problem(StatusCode::FORBIDDEN, "forbidden");
    }
    assert_eq!(ada.get(&format!("/api/v1/runs/{run}")).await.json()["status"], "awaiting_approval");

    let approved = ada.post_empty(&format!("/api/v1/runs/{run}/approve")).await.expect_status(StatusCode::OK).json();
    assert_eq!((approved["status"].as_str(), approved["approved_by"].as_str()), (Some("applying"), Some("ada")));
    let done = wait_until_finished(&ada, &run, 60).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(ada.get(&format!("{CLUSTERS}/{cluster}")).await.json()["status"], "ready");
    let audit = ada.get("/api/v1/orgs/ada/audit?limit=100").await.json().to_string();
    assert!(audit.contains("run.approved"));

    // The account cannot go while its cluster exists; once the cluster is destroyed, it can.
    let account_path = format!("/api/v1/orgs/ada/cloud-accounts/{}", account["id"].as_str().expect("id"));
    ada.delete(&account_path).await.expect_problem(StatusCode::CONFLICT, "cloud_account_in_use");
    ada.get(&account_path).await.expect_status(StatusCode::OK);
    let destroy = ada.delete(&format!("{CLUSTERS}/{cluster}")).await.expect_status(StatusCode::ACCEPTED).json();
    let destroy = destroy["id"].as_str().expect("id");
    wait_for_run(&ada, destroy, 60, |r| r["status"] == "awaiting_approval").await;
    ada.delete(&account_path).await.expect_problem(StatusCode::CONFLICT, "cloud_account_in_use");
    ada.post_empty(&format!("/api/v1/runs/{destroy}/approve")).await.expect_status(StatusCode::OK);
    assert_eq!(wait_until_finished(&ada, destroy, 60).await["status"], "succeeded");
    ada.delete(&account_path).await.expect_status(StatusCode::NO_CONTENT);
    let kept = ada.get(&format!("{CLUSTERS}/{cluster}")).await.json();
    assert_eq!((kept["status"].as_str(), &kept["cloud_account_id"]), (Some("destroyed"), &Value::Null));
}

/// The real Terraform, run through a script that notes the cloud variables (`AWS_*`, `ARM_*`,
/// `GOOGLE_*`) each job is given, with providers allowed only from an empty mirror: a cloud
/// module's `init` fails here, offline, after the worker has prepared the job's credentials.
struct NotingTerraform {
    dir: tempfile::TempDir,
}

impl NotingTerraform {
    fn new() -> Self {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().expect("tempdir");
        let mirror = dir.path().join("mirror");
        std::fs::create_dir(&mirror).expect("mirror dir");
        let cli_config = dir.path().join("offline.tfrc");
        let offline = format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path = \"{}\"\n  }}\n}}\n",
            mirror.display()
        );
        std::fs::write(&cli_config, offline).expect("write the CLI configuration");
        let script = format!(
            "#!/bin/sh\nenv | grep -E '^(AWS|ARM|GOOGLE)_' >> '{}'\nexport TF_CLI_CONFIG_FILE='{}'\n\
             exec /usr/local/bin/terraform \"$@\"\n",
            dir.path().join("noted.env").display(),
            cli_config.display()
        );
        let wrapper = dir.path().join("terraform");
        std::fs::write(&wrapper, script).expect("write the wrapper");
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Self { dir }
    }

    fn binary(&self) -> std::path::PathBuf {
        self.dir.path().join("terraform")
    }

    /// Everything noted, as it was written.
    fn noted(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("noted.env")).expect("terraform ran with cloud variables")
    }

    /// One variable as the last job saw it.
    fn var(&self, name: &str) -> String {
        let noted = self.noted();
        noted
            .lines()
            .filter_map(|line| line.split_once('='))
            .filter(|(key, _)| *key == name)
            .map(|(_, value)| value.to_owned())
            .next_back()
            .unwrap_or_else(|| panic!("no {name} in:\n{noted}"))
    }
}

/// Creates a cluster on `target` (its first region and machine type) with `account`, and waits
/// for its run to fail at `init`, offline. Returns the run.
async fn offline_run(ada: &Client, target: &str, account: &Value) -> String {
    let options = ada.get("/api/v1/cluster-options").await.expect_status(StatusCode::OK).json();
    let found = options["targets"].as_array().expect("targets").iter().find(|t| t["id"] == target).expect("target");
    let mut body = local_cluster("cloud", Value::Null);
    body["target"] = target.into();
    body["region"] = found["regions"][0].clone();
    body["node_instance_type"] = found["instance_types"][0].clone();
    body["cloud_account_id"] = account["id"].clone();
    let (_, run) = create(ada, body).await;
    let done = wait_until_finished(ada, &run, 120).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(done["reason"].as_str().is_some_and(|r| r.contains("Terraform failed during plan")), "{done}");
    run
}

#[tokio::test]
#[ignore = "needs Terraform and moto: run `cargo xtask test`"]
async fn aws_jobs_get_a_short_lived_session_never_the_linked_key() {
    use crate::support::clouds::Moto;

    let moto = Moto::start().await;
    let key = moto.create_user("deployer", &["sts:GetSessionToken", "s3:ListAllMyBuckets"]).await;
    moto.enforce_auth().await;
    let terraform = NotingTerraform::new();
    let moto_url = moto.url.clone();
    let app = TestApp::spawn_with(|config| {
        with_workers(config, ExecutorChoice::Process, 1);
        config.runs.terraform = terraform.binary();
        config.cloud.aws_endpoint_url = Some(moto_url);
    })
    .await;
    let ada = app.user("ada").await;
    let account = ada
        .post(
            "/api/v1/orgs/ada/cloud-accounts",
            json!({ "provider": "aws", "name": "dev", "environment": "dev",
                    "credentials": { "access_key_id": key.access_key_id, "secret_access_key": key.secret_access_key } }),
        )
        .await
        .expect_status(StatusCode::CREATED)
        .json();
    let run = offline_run(&ada, "aws-eks", &account).await;

    // STS's answer to GetSessionToken (moto's keys do not start with AWS's `ASIA`).
    assert_ne!(terraform.var("AWS_ACCESS_KEY_ID"), key.access_key_id, "the job got the linked key itself");
    assert_ne!(terraform.var("AWS_SECRET_ACCESS_KEY"), key.secret_access_key);
    let session_token = terraform.var("AWS_SESSION_TOKEN");
    assert!(!session_token.is_empty());
    assert_eq!(terraform.var("AWS_ENDPOINT_URL"), moto.url);
    assert!(!terraform.noted().contains(&key.secret_access_key), "the linked secret never reaches the job");
    let log = log_text(&ada, &run).await;
    assert!(!log.contains(&session_token) && !log.contains(&terraform.var("AWS_SECRET_ACCESS_KEY")), "{log}");
}

#[tokio::test]
#[ignore = "needs Terraform and the GCS emulator: run `cargo xtask test`"]
async fn gcp_jobs_get_an_access_token_never_the_key_file() {
    use crate::support::clouds::{FakeGoogleOAuth, GcsEmulator, service_account};

    let oauth = FakeGoogleOAuth::start().await;
    let gcs = GcsEmulator::start().await;
    let terraform = NotingTerraform::new();
    let app = TestApp::spawn_with(|config| {
        with_workers(config, ExecutorChoice::Process, 1);
        config.runs.terraform = terraform.binary();
        config.cloud.gcp_token_uri = oauth.token_uri.clone();
        config.cloud.gcp_storage_endpoint = gcs.url.clone();
    })
    .await;
    let ada = app.user("ada").await;
    let key = service_account("acme-dev", "deployer", &oauth.token_uri);
    oauth.register(&key);
    let account = ada
        .post(
            "/api/v1/orgs/ada/cloud-accounts",
            json!({ "provider": "gcp", "name": "dev", "environment": "dev",
                    "credentials": { "service_account_json": key.json } }),
        )
        .await
        .expect_status(StatusCode::CREATED)
        .json();
    let run = offline_run(&ada, "gcp-gke", &account).await;

    let token = terraform.var("GOOGLE_OAUTH_ACCESS_TOKEN");
    assert!(oauth.has_issued(&token), "the job's token came from the token endpoint");
    assert_eq!(terraform.var("GOOGLE_PROJECT"), "acme-dev");
    let noted = terraform.noted();
    assert!(!noted.contains("PRIVATE KEY") && !noted.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{noted}");
    assert!(!log_text(&ada, &run).await.contains(&token));
}

#[tokio::test]
#[ignore = "needs Terraform: run `cargo xtask test`"]
async fn azure_jobs_get_the_service_principal_in_arm_variables() {
    let secret = "azure-Secret~job-env-0123456789";
    let client_id = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";
    let tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let subscription = "8d2a3c4e-1111-4d0e-9c3b-1a2b3c4d5e6f";
    let tenant = AzureTenant {
        clients: HashMap::from([(client_id.to_owned(), secret.to_owned())]),
        subscriptions: vec![(subscription.into(), "Dev".into())],
        ..AzureTenant::default()
    };
    let azure = FakeAzure::start(HashMap::from([(tenant_id.to_owned(), tenant)])).await;
    let terraform = NotingTerraform::new();
    let app = TestApp::spawn_with(|config| {
        with_workers(config, ExecutorChoice::Process, 1);
        config.runs.terraform = terraform.binary();
        config.cloud.azure_authority_host = azure.url.clone();
        config.cloud.azure_arm_endpoint = azure.url.clone();
        config.cloud.extra_ca_file = Some(azure.ca_file.path().to_owned());
    })
    .await;
    let ada = app.user("ada").await;
    let account = ada
        .post(
            "/api/v1/orgs/ada/cloud-accounts",
            json!({ "provider": "azure", "name": "dev", "environment": "dev",
                    "credentials": { "tenant_id": tenant_id, "client_id": client_id, "client_secret": secret,
                                     "subscription_id": subscription } }),
        )
        .await
        .expect_status(StatusCode::CREATED)
        .json();
    let run = offline_run(&ada, "azure-aks", &account).await;

    assert_eq!(terraform.var("ARM_TENANT_ID"), tenant_id);
    assert_eq!(terraform.var("ARM_CLIENT_ID"), client_id);
    assert_eq!(terraform.var("ARM_CLIENT_SECRET"), secret);
    assert_eq!(terraform.var("ARM_SUBSCRIPTION_ID"), subscription);
    assert!(!log_text(&ada, &run).await.contains(secret), "the secret never reaches the log");
}

#[tokio::test]
#[ignore = "needs Terraform: run `cargo xtask test`"]
async fn a_failed_apply_reports_terraforms_error_and_a_retry_succeeds() {
    let app = TestApp::spawn_with(|config| with_workers(config, ExecutorChoice::Process, 1)).await;
    let ada = app.user("ada").await;
    let (cluster, run) = create(&ada, local_cluster("dev", json!({ "fail_at": "apply", "step_seconds": 1 }))).await;
    let failed = wait_until_finished(&ada, &run, 60).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let reason = failed["reason"].as_str().expect("reason");
    assert!(reason.starts_with("Terraform failed during apply"), "{reason}");
    assert_ne!(failed["exit_code"], 0);
    assert_eq!(failed["attempts"], 1, "a Terraform error is not retried by itself");
    let log = log_text(&ada, &run).await;
    assert!(log.contains("Error:"), "Terraform's error is in the log: {log}");
    assert_eq!(ada.get(&format!("{CLUSTERS}/{cluster}")).await.json()["status"], "failed");
    assert_eq!(ada.get(&format!("{CLUSTERS}/{cluster}/state")).await.json()["lock"], Value::Null);

    let retried = ada.post_empty(&format!("/api/v1/runs/{run}/retry")).await.expect_status(StatusCode::CREATED).json();
    let done = wait_until_finished(&ada, retried["id"].as_str().expect("id"), 60).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(ada.get(&format!("{CLUSTERS}/{cluster}")).await.json()["status"], "ready");

    // A failure at plan reports the plan's error, and nothing is applied.
    let plan = ada
        .post(&format!("{CLUSTERS}/{cluster}/runs"), json!({ "action": "apply", "simulate": { "fail_at": "plan" } }))
        .await
        .json();
    let failed = wait_until_finished(&ada, plan["id"].as_str().expect("id"), 60).await;
    assert!(failed["reason"].as_str().expect("reason").starts_with("Terraform failed during plan"), "{failed}");
    assert_eq!(failed["plan_summary"], Value::Null);
}

#[tokio::test]
#[ignore = "needs Docker and the local provisioner image: run `cargo xtask test`"]
async fn canceling_during_apply_stops_terraform_and_releases_the_lock() {
    assert!(docker_available(), "FLEETPLANE_TEST_DOCKER is not set: run `cargo xtask test`");
    let app = TestApp::spawn_with(|config| with_workers(config, ExecutorChoice::Docker, 1)).await;
    let ada = app.user("ada").await;
    let (cluster, run) = create(&ada, local_cluster("dev", json!({ "step_seconds": 30 }))).await;
    wait_for_run(&ada, &run, 60, |r| r["status"] == "applying").await;
    // Wait until Terraform holds the state lock for its apply.
    let started = Instant::now();
    while ada.get(&format!("{CLUSTERS}/{cluster}/state")).await.json()["lock"].is_null() {
        assert!(started.elapsed() < Duration::from_secs(120), "the apply never locked the state");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(job_containers(&[&run]).len(), 1);

    ada.post_empty(&format!("/api/v1/runs/{run}/cancel")).await.expect_status(StatusCode::OK);
    let canceled = wait_until_finished(&ada, &run, 60).await;
    assert_eq!(canceled["status"], "canceled", "{canceled}");
    assert!(canceled["reason"].as_str().expect("reason").starts_with("Canceled by ada"), "{canceled}");
    assert!(job_containers(&[&run]).is_empty(), "the container is gone");
    assert_eq!(
        ada.get(&format!("{CLUSTERS}/{cluster}/state")).await.json()["lock"],
        Value::Null,
        "the lock is released"
    );
    let log = log_text(&ada, &run).await;
    // One SIGINT reached Terraform, and it stopped by itself, before any kill.
    assert!(log.contains("fleetplane: SIGINT received: stopping terraform"), "the job got SIGINT: {log}");
    assert!(log.contains("Interrupt received"), "Terraform stopped gracefully: {log}");
    assert!(!log.contains("Two interrupts received"), "Terraform got a second interrupt and quit at once: {log}");
}

#[tokio::test]
#[ignore = "needs Terraform: run `cargo xtask test`"]
async fn a_run_that_outlives_its_timeout_is_stopped_and_fails_saying_so() {
    let app = TestApp::spawn_with(|config| {
        with_workers(config, ExecutorChoice::Process, 1);
        config.runs.timeout_secs = 6;
    })
    .await;
    let ada = app.user("ada").await;
    let (cluster, run) = create(&ada, local_cluster("slow", json!({ "step_seconds": 60 }))).await;
    let ended = wait_until_finished(&ada, &run, 60).await;
    assert_eq!(ended["status"], "failed", "{ended}");
    assert_eq!(ended["reason"], "Timed out after 6 seconds; Terraform was stopped", "{ended}");
    let state = ada.get(&format!("{CLUSTERS}/{cluster}/state")).await.json();
    assert_eq!(state["lock"], Value::Null, "Terraform released the lock: {state}");
    assert_eq!(ada.get(&format!("{CLUSTERS}/{cluster}")).await.json()["status"], "failed");
}

#[tokio::test]
#[ignore = "needs Docker and the local provisioner image: run `cargo xtask test`"]
async fn five_clusters_with_two_workers_never_run_more_than_two_jobs() {
    assert!(docker_available(), "FLEETPLANE_TEST_DOCKER is not set: run `cargo xtask test`");
    let app = TestApp::spawn_with(|config| with_workers(config, ExecutorChoice::Docker, 2)).await;
    let ada = app.user("ada").await;
    let since = std::time::SystemTime::now();
    let mut runs = Vec::new();
    for name in ["a1", "b2", "c3", "d4", "e5"] {
        runs.push(create(&ada, local_cluster(name, json!({ "step_seconds": 2 }))).await.1);
    }
    // Two run; the other three wait, in order, and say so.
    let mut waiting = Vec::new();
    let started = Instant::now();
    while waiting.len() != 3 {
        assert!(started.elapsed() < Duration::from_secs(120), "the workers did not take two runs");
        waiting.clear();
        for run in &runs {
            let view = ada.get(&format!("/api/v1/runs/{run}")).await.json();
            if view["status"] == "queued" {
                waiting.push(view);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let positions: Vec<u64> = waiting.iter().map(|r| r["position"].as_u64().expect("position")).collect();
    assert_eq!(positions, [1, 2, 3]);
    assert!(waiting[0]["reason"].as_str().expect("reason").starts_with("Next in line"), "{}", waiting[0]);
    assert_eq!(waiting[2]["reason"], "Waiting for a free worker (2 ahead).");

    let started = Instant::now();
    loop {
        let mut finished = 0;
        for run in &runs {
            let status = ada.get(&format!("/api/v1/runs/{run}")).await.json()["status"].clone();
            if status == "succeeded" {
                finished += 1;
            }
            assert!(status != "failed", "run {run} failed");
        }
        if finished == runs.len() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "the five runs did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The engine's own record of every start and exit of these runs' jobs says how many ran at
    // once, not a sample of it.
    let (mut starts, most) = concurrency_of(&runs.iter().map(String::as_str).collect::<Vec<_>>(), since);
    starts.sort_unstable();
    let mut expected: Vec<String> =
        runs.iter().flat_map(|run| [format!("{run}/apply"), format!("{run}/plan")]).collect();
    expected.sort_unstable();
    assert_eq!(starts, expected, "each run started one plan job and one apply job");
    assert!(most <= 2, "{most} provisioner containers ran at once");
}

#[tokio::test]
#[ignore = "needs Docker and the local provisioner image: run `cargo xtask test`"]
async fn another_installations_jobs_on_the_same_engine_are_left_alone() {
    use crate::support::runs::docker;
    assert!(docker_available(), "FLEETPLANE_TEST_DOCKER is not set: run `cargo xtask test`");
    // A job of a run this installation does not know, from a worker it has never seen.
    let run = uuid::Uuid::now_v7().to_string();
    let labels = [
        "dev.fleetplane.managed=true".to_owned(),
        format!("dev.fleetplane.run={run}"),
        "dev.fleetplane.worker=elsewhere-1-0001".to_owned(),
    ];
    let mut args = vec!["create"];
    for label in &labels {
        args.extend(["--label", label.as_str()]);
    }
    args.push("fleetplane/provisioner-local:latest");
    let container = docker(&args).trim().to_owned();

    let app = TestApp::spawn_with(|config| with_workers(config, ExecutorChoice::Docker, 1)).await;
    // The worker looks for orphaned jobs when it starts and every 5 s after: let it look twice.
    app.wait_for("orphan sweeps (at least 2)", 2, |state| state.sweeps.get().min(2) as usize).await;
    assert_eq!(job_containers(&[&run]).len(), 1, "another installation's job was removed");
    docker(&["rm", "-f", &container]);
    drop(app);
}

#[tokio::test]
#[ignore = "needs Terraform: run `cargo xtask test`"]
async fn terraforms_own_http_backend_client_locks_writes_reads_and_unlocks() {
    use base64::Engine;
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let (cluster, _) = create(&ada, local_cluster("dev", json!(null))).await;
    let claimed = fleetplane::queue::claim(app.db(), "test-worker", Duration::from_secs(300))
        .await
        .expect("claim")
        .expect("a run");
    let address = app.base.join(&format!("api/v1/state/{cluster}")).expect("url").to_string();
    let basic =
        |token: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("run:{token}")));

    let module = tempfile::tempdir().expect("module dir");
    std::fs::write(
        module.path().join("main.tf"),
        "terraform {\n  backend \"http\" {}\n}\nresource \"terraform_data\" \"pet\" {\n  input = \"v1\"\n}\n",
    )
    .expect("module");
    // Asynchronously: the server answering Terraform runs on this test's runtime.
    let terraform = |args: &[&str]| {
        tokio::process::Command::new("terraform")
            .args(args)
            .current_dir(module.path())
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_HTTP_ADDRESS", &address)
            .env("TF_HTTP_LOCK_ADDRESS", &address)
            .env("TF_HTTP_UNLOCK_ADDRESS", &address)
            .env("TF_HTTP_USERNAME", "run")
            .env("TF_HTTP_PASSWORD", &claimed.token)
            .env("CHECKPOINT_DISABLE", "1")
            .env_remove("TF_CLI_CONFIG_FILE")
            .output()
    };
    let init = terraform(&["init", "-input=false", "-no-color"]).await.expect("terraform");
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));

    // Someone else holds the lock: Terraform is refused and names the holder.
    let http = reqwest::Client::new();
    let lock = |id: &str| {
        http.request(reqwest::Method::from_bytes(b"LOCK").expect("method"), &address)
            .header("authorization", basic(&claimed.token))
            .json(&json!({ "ID": id, "Operation": "OperationTypeApply", "Who": "someone@elsewhere", "Info": "" }))
    };
    assert_eq!(lock("held-by-test").send().await.expect("lock").status(), StatusCode::OK);
    assert_eq!(
        lock("held-by-test").send().await.expect("relock").status(),
        StatusCode::OK,
        "relocking with the same ID is fine"
    );
    let second = lock("second-locker").send().await.expect("lock");
    assert_eq!(second.status(), StatusCode::LOCKED);
    assert_eq!(second.json::<Value>().await.expect("holder")["ID"], "held-by-test");
    let refused = terraform(&["apply", "-auto-approve", "-input=false", "-no-color", "-lock-timeout=0s"])
        .await
        .expect("terraform");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("Error acquiring the state lock") && stderr.contains("held-by-test"), "{stderr}");
    let state = ada.get(&format!("{CLUSTERS}/{cluster}/state")).await.json();
    assert_eq!(state["lock"]["who"], "someone@elsewhere");
    assert_eq!(state["lock"]["run_id"], claimed.run.id.to_string());

    let unlock = http
        .request(reqwest::Method::from_bytes(b"UNLOCK").expect("method"), &address)
        .header("authorization", basic(&claimed.token))
        .json(&json!({ "ID": "held-by-test" }))
        .send()
        .await
        .expect("unlock");
    assert_eq!(unlock.status(), StatusCode::OK);

    let applied = terraform(&["apply", "-auto-approve", "-input=false", "-no-color"]).await.expect("terraform");
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let pulled = terraform(&["state", "pull"]).await.expect("terraform");
    let pulled: Value = serde_json::from_slice(&pulled.stdout).expect("state JSON");
    assert_eq!(pulled["resources"][0]["type"], "terraform_data");
    let state = ada.get(&format!("{CLUSTERS}/{cluster}/state")).await.json();
    assert_eq!(state["lock"], Value::Null, "Terraform released its lock");
    assert_eq!(state["versions"][0]["serial"], pulled["serial"]);

    // Credentials: none, a made-up token, another cluster's state.
    let bare = http.get(&address).send().await.expect("get");
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
    assert!(bare.headers().contains_key("www-authenticate"));
    let forged = http.get(&address).header("authorization", basic("fprun_forged")).send().await.expect("get");
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let (other, _) = create(&ada, local_cluster("qa", json!(null))).await;
    let elsewhere = app.base.join(&format!("api/v1/state/{other}")).expect("url");
    let wrong = http.get(elsewhere).header("authorization", basic(&claimed.token)).send().await.expect("get");
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    // Writes naming a lock that is gone are refused: a Terraform whose lock was force-released
    // cannot overwrite state.
    let stale = http
        .post(format!("{address}?ID=held-by-test"))
        .header("authorization", basic(&claimed.token))
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(stale.status(), StatusCode::CONFLICT);
}

/// The server as a process, for tests that kill it: Docker runs, one worker, short leases.
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
#[ignore = "needs Docker and the local provisioner image: run `cargo xtask test`"]
async fn a_run_survives_its_server_being_killed_and_leaves_no_orphan() {
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

    let mut server = start_server(dir.path(), &database_url, port);
    let ada = client();
    ada.sign_in("ada@example.com", "a long admin password").await.expect_status(StatusCode::OK);
    let (cluster, run) = create(&ada, local_cluster("dev", json!({ "step_seconds": 8 }))).await;
    wait_for_run(&ada, &run, 60, |r| r["status"] == "applying").await;
    let orphan = job_containers(&[&run]);
    assert_eq!(orphan.len(), 1, "the apply runs in a container");

    // kill -9: no shutdown, no cleanup.
    server.child.kill().expect("kill -9");
    server.child.wait().expect("reap");
    drop(server);
    let _server = start_server(dir.path(), &database_url, port);
    let ada = client();
    ada.sign_in("ada@example.com", "a long admin password").await.expect_status(StatusCode::OK);

    let ended = wait_until_finished(&ada, &run, 120).await;
    assert!(
        ended["status"] == "succeeded" || ended["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "the run ended with an outcome and a reason: {ended}"
    );
    let log = log_text(&ada, &run).await;
    assert!(log.contains("stopped responding"), "the lost attempt is explained in the log: {log}");
    let remaining = job_containers(&[&run]);
    assert!(remaining.iter().all(|c| !orphan.contains(c)), "the orphaned container was removed");
    assert!(remaining.is_empty(), "no container outlives its run: {remaining:?}");
    let cluster = ada.get(&format!("{CLUSTERS}/{cluster}")).await.json();
    assert!(matches!(cluster["status"].as_str(), Some("ready" | "failed")), "{cluster}");
    assert_eq!(
        ada.get(&format!("{CLUSTERS}/{}/state", cluster["id"].as_str().expect("id"))).await.json()["lock"],
        Value::Null
    );
}

/// Takes the run log table away, as an outage of it would, or brings it back.
async fn run_logs_table(app: &TestApp, away: bool) {
    use sea_orm::ConnectionTrait;
    let (from, to) = if away { ("run_logs", "run_logs_away") } else { ("run_logs_away", "run_logs") };
    app.db().execute_unprepared(&format!("ALTER TABLE {from} RENAME TO {to}")).await.expect("rename the table");
}

/// Stores three lines for `run`, as an earlier attempt would have.
async fn earlier_lines(app: &TestApp, run: &str) {
    use sea_orm::Set;
    let run_id: uuid::Uuid = run.parse().expect("uuid");
    let lines = (1..=3).map(|seq| run_logs::ActiveModel {
        run_id: Set(run_id),
        seq: Set(seq),
        attempt: Set(0),
        stream: Set("stdout".into()),
        text: Set(format!("earlier line {seq}")),
        at: Set(chrono::Utc::now()),
    });
    run_logs::Entity::insert_many(lines).exec(app.db()).await.expect("earlier lines");
}

/// Starts a worker for `app` (whose own pool has none), until the returned token is cancelled.
fn start_workers(app: &TestApp) -> tokio_util::sync::CancellationToken {
    let stop = tokio_util::sync::CancellationToken::new();
    let (state, until) = (app.state.clone(), stop.clone());
    tokio::spawn(async move { fleetplane::run_workers(state, until.cancelled_owned()).await.expect("workers") });
    stop
}

/// A run's stored log lines as `(seq, stream, text)`, in order.
async fn numbered_log(ada: &Client, run: &str) -> Vec<(i64, String, String)> {
    let page = ada.get(&format!("/api/v1/runs/{run}/logs?limit=1000")).await.expect_status(StatusCode::OK).json();
    let lines = page["chunks"].as_array().expect("chunks");
    lines
        .iter()
        .map(|line| {
            let text = |key: &str| line[key].as_str().expect("text").to_owned();
            (line["seq"].as_i64().expect("seq"), text("stream"), text("text"))
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs Terraform: run `cargo xtask test`"]
async fn a_log_that_cannot_be_stored_for_a_while_is_stored_whole_after_the_earlier_lines() {
    let app = TestApp::spawn_with(|config| with_workers(config, ExecutorChoice::Process, 0)).await;
    let ada = app.user("ada").await;
    let (_, run) = create(&ada, local_cluster("dev", json!({ "step_seconds": 1 }))).await;
    earlier_lines(&app, &run).await;
    let earlier = numbered_log(&ada, &run).await;

    // The log's table is gone when the job starts: neither its position nor its lines can be
    // read or written, until it is back.
    run_logs_table(&app, true).await;
    let workers = start_workers(&app);
    let started = Instant::now();
    while ada.metric("fleetplane_run_log_write_failures_total").await < 3 {
        assert!(started.elapsed() < Duration::from_secs(120), "the worker never tried to store the job's lines");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run_logs_table(&app, false).await;
    let done = wait_until_finished(&ada, &run, 180).await;
    workers.cancel();
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(!done["reason"].as_str().expect("reason").contains("incomplete"), "{done}");

    let log = numbered_log(&ada, &run).await;
    assert_eq!(log[..earlier.len()], earlier[..], "the earlier lines are kept as they were");
    let numbers: Vec<i64> = log.iter().map(|(seq, _, _)| *seq).collect();
    let expected: Vec<i64> = (1..=i64::try_from(log.len()).expect("count")).collect();
    assert_eq!(numbers, expected, "numbered on from the earlier lines, no gap, nothing twice");
    assert!(log[earlier.len()].2.starts_with("Attempt 1 of"), "the job's first line follows: {log:?}");
    assert!(log.iter().any(|(_, _, text)| text.contains("Apply complete")), "Terraform's output is all there");
    assert_eq!(ada.metric("fleetplane_run_log_lines_lost_total").await, 0);
}

#[tokio::test]
#[ignore = "needs Terraform: run `cargo xtask test`"]
async fn log_lines_that_cannot_be_stored_are_given_up_and_the_run_says_its_log_is_incomplete() {
    let app = TestApp::spawn_with(|config| {
        with_workers(config, ExecutorChoice::Process, 0);
        config.runs.log_patience_secs = 1;
    })
    .await;
    let ada = app.user("ada").await;
    let (_, run) = create(&ada, local_cluster("dev", json!({ "step_seconds": 2 }))).await;
    earlier_lines(&app, &run).await;
    let earlier = numbered_log(&ada, &run).await;

    run_logs_table(&app, true).await;
    let workers = start_workers(&app);
    let started = Instant::now();
    while ada.metric("fleetplane_run_log_lines_lost_total").await == 0 {
        assert!(started.elapsed() < Duration::from_secs(120), "no line was given up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run_logs_table(&app, false).await;
    let done = wait_until_finished(&ada, &run, 180).await;
    workers.cancel();
    assert_eq!(done["status"], "succeeded", "the run itself is not failed for its log: {done}");
    let reason = done["reason"].as_str().expect("reason");
    let lost = ada.metric("fleetplane_run_log_lines_lost_total").await;
    let said =
        if lost == 1 { "1 line could not be stored".to_owned() } else { format!("{lost} lines could not be stored") };
    assert!(reason.ends_with(&format!("Its log is incomplete: {said}.")), "{reason}");

    let log = numbered_log(&ada, &run).await;
    assert_eq!(log[..earlier.len()], earlier[..], "the earlier lines are kept as they were");
    let numbers: Vec<i64> = log.iter().map(|(seq, _, _)| *seq).collect();
    assert!(numbers.windows(2).all(|pair| pair[0] < pair[1]), "never renumbered, nothing twice: {numbers:?}");
    assert!(log.len() > earlier.len() + 1, "the lines stored once the table was back are there: {log:?}");
    assert!(
        log.iter().any(|(_, stream, text)| stream == "system" && text.contains("this log is incomplete")),
        "the log says so itself: {log:?}"
    );
}
