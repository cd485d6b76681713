//! The helm job of a deployment onto each cloud target, built and run for real up to the
//! cluster's API server: the worker starts the helm provisioner's image on the test engine with
//! a kubeconfig holding a token it minted for the run from the linked account (against the
//! clouds' stand-ins), the image's real helm renders the chart and calls the API server, and the
//! API server's refusal becomes the deployment's reason. No Kubernetes API server can run here:
//! [`FakeKubeApi`] answers helm's first calls as one does (for GKE and AKS it authenticates the
//! token with the fake cloud that issued it, then RBAC refuses the release's records; for EKS,
//! whose token moto cannot check, it refuses the token), and records what it was sent. A cloud cluster cannot become ready here either (Terraform cannot reach the clouds), so
//! each test stores one as a finished apply leaves it, with outputs pointing at the stand-in.
//!
//! Ignored by a plain `cargo test`: they need Docker, the helm image (`cargo xtask images --only
//! helm`) and the cloud emulators, which `cargo xtask test` provides.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use fleetplane::config::{Config, ExecutorChoice};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{
    Client, TestApp,
    clouds::{AzureTenant, FakeAzure, FakeGoogleOAuth, GcsEmulator, Moto, service_account},
    kube::FakeKubeApi,
    ports::free_port,
    runs::{
        docker, docker_available, job_containers, log_text, seed_cluster_with, wait_for_run, wait_until_finished,
        with_workers,
    },
};

const HELM_IMAGE: &str = "fleetplane/provisioner-helm:latest";
const AKS_SCOPE: &str = "6dae42f8-4368-4678-94ff-3960e28e3630/.default";
/// The service principal of the tests' Azure account.
const AZURE_CLIENT: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";

/// A ready cluster on `target` of ada's organization, linked to cloud account `account`, whose
/// outputs say its API server is at `endpoint` with CA `ca_data`. Returns its id and its cloud
/// name (`cluster_name`).
async fn seed_cloud_cluster(app: &TestApp, target: &str, account: &Value, endpoint: &str, ca_data: &str) -> String {
    let account = account["id"].as_str().expect("account id").parse().expect("uuid");
    let outputs = |name: &str| Some(json!({ "cluster_name": name, "endpoint": endpoint, "ca_data": ca_data }));
    seed_cluster_with(app.db(), "ada", target, "ready", Some(account), outputs).await
}

async fn link_account(ada: &Client, provider: &str, credentials: Value) -> Value {
    link_account_in(ada, provider, "dev", credentials).await
}

/// [`link_account`] with its environment (`dev`, `staging`, `prod`).
async fn link_account_in(ada: &Client, provider: &str, environment: &str, credentials: Value) -> Value {
    ada.post(
        "/api/v1/orgs/ada/cloud-accounts",
        json!({ "provider": provider, "name": "deployer", "environment": environment, "credentials": credentials }),
    )
    .await
    .expect_status(StatusCode::CREATED)
    .json()
}

/// A server whose worker runs jobs on the test engine, with `adjust` pointing it at the clouds.
async fn app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    assert!(docker_available(), "FLEETPLANE_TEST_DOCKER is not set: run `cargo xtask test`");
    TestApp::spawn_with(|config| {
        with_workers(config, ExecutorChoice::Docker, 1);
        adjust(config);
    })
    .await
}

/// How a deployment of fleet-telemetry onto `cluster` ended.
struct Ended {
    run: Value,
    deployment: Value,
    log: String,
    /// The images of the run's job containers that started, from the engine's event log.
    images: Vec<String>,
}

async fn deploy_fleet_telemetry(ada: &Client, cluster: &str) -> Ended {
    let since = SystemTime::now() - Duration::from_secs(1);
    let created = ada
        .post(&format!("/api/v1/orgs/ada/clusters/{cluster}/deployments"), json!({ "service": "fleet-telemetry" }))
        .await
        .expect_status(StatusCode::CREATED)
        .json();
    let run_id = created["run"]["id"].as_str().expect("run").to_owned();
    let run = wait_until_finished(ada, &run_id, 120).await;
    let log = log_text(ada, &run_id).await;
    let id = created["deployment"]["id"].as_str().expect("id");
    let deployment = ada.get(&format!("/api/v1/orgs/ada/deployments/{id}")).await.expect_status(StatusCode::OK).json();
    let seconds = |at: SystemTime| at.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_secs().to_string();
    let events = docker(&[
        "events",
        "--since",
        &seconds(since),
        "--until",
        &seconds(SystemTime::now() + Duration::from_secs(1)),
        "--filter",
        "type=container",
        "--filter",
        "event=start",
        "--filter",
        &format!("label=dev.fleetplane.run={run_id}"),
        "--format",
        "{{.Actor.Attributes.image}}",
    ]);
    assert!(job_containers(&[&run_id]).is_empty(), "the job's container is removed");
    Ended { run, deployment, log, images: events.lines().map(str::to_owned).collect() }
}

/// What every cloud's job shows: the helm image ran the documented steps, helm called the API
/// server with one bearer token and nothing else, and the run and the deployment failed with
/// the same reason. Returns that token.
fn assert_helm_called_the_api_server(ended: &Ended, kube: &FakeKubeApi) -> String {
    let Ended { run, deployment, log, images } = ended;
    assert_eq!(images, &[HELM_IMAGE], "{log}");
    assert_eq!(run["status"], "failed", "{run}\n{log}");
    let reason = run["reason"].as_str().expect("reason");
    assert_eq!((&deployment["status"], &deployment["reason"]), (&json!("failed"), &json!(reason)));
    assert_eq!(deployment["revisions"][0]["status"], "failed");
    for expected in [
        "deploy (docker executor)",
        "Release fleet-telemetry in namespace fleet-telemetry",
        "Installing revision 1: chart /charts/fleet-telemetry",
        "Step: validate",
        "Step: status",
        r#"Result: {"action":"deploy","ok":false,"status":"unknown","revision":null,"error":"#,
    ] {
        assert!(log.contains(expected), "{expected:?} is not in the log:\n{log}");
    }
    assert!(!log.contains("Step: deploy"), "helm never got as far as installing:\n{log}");

    let requests = kube.requests();
    assert!(!requests.is_empty(), "helm never reached the API server:\n{log}");
    assert!(requests[0].method == "GET" && requests[0].path.starts_with("/version"), "{requests:?}");
    let bearer = requests[0].authorization.clone().expect("an Authorization header");
    assert!(requests.iter().all(|r| r.authorization.as_ref() == Some(&bearer)), "{requests:?}");
    let token = bearer.strip_prefix("Bearer ").expect("a bearer token").to_owned();
    assert!(token.len() > 20, "{token}");
    assert!(!log.contains(&token), "the minted token is scrubbed from the log:\n{log}");
    assert!(!reason.contains(&token));
    token
}

/// The API server did not accept the token: helm stopped at its first call.
fn assert_unauthorized(ended: &Ended, kube: &FakeKubeApi) {
    let reason = ended.run["reason"].as_str().expect("reason");
    assert!(reason.contains("The cluster's API server refused the token minted for this run"), "{reason}");
    // client-go's words for a 401.
    assert!(reason.contains("the server has asked for the client to provide credentials"), "{reason}");
    assert_eq!(ended.run["exit_code"], 4, "{}", ended.run);
    assert!(ended.log.contains(r#""error":"unreachable""#), "{}", ended.log);
    assert_eq!(kube.requests().len(), 1, "nothing after the refusal");
}

/// The API server accepted the token as `user`, and helm's next call, listing the release's
/// records (Secrets labelled `owner=helm`) in its namespace, was refused by RBAC.
fn assert_authenticated_then_forbidden(ended: &Ended, kube: &FakeKubeApi, user: &str) {
    let reason = ended.run["reason"].as_str().expect("reason");
    let expected = format!(
        "helm failed: query: failed to query with labels: secrets is forbidden: User \"{user}\" cannot list resource \
         \"secrets\" in API group \"\" in the namespace \"fleet-telemetry\""
    );
    assert!(reason.starts_with(&expected), "{reason}\n{}", ended.log);
    assert_eq!(ended.run["exit_code"], 1, "{}", ended.run);
    assert!(ended.log.contains(r#""error":"helm""#), "{}", ended.log);
    let requests = kube.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(
        requests[1].path.starts_with(
            "/api/v1/namespaces/fleet-telemetry/secrets?labelSelector=name%3Dfleet-telemetry%2Cowner%3Dhelm"
        ),
        "{requests:?}"
    );
}

#[tokio::test]
#[ignore = "needs Docker, the helm image and moto: run `cargo xtask test`"]
async fn an_eks_deployment_calls_the_api_server_with_a_presigned_sts_token_of_a_role_session() {
    let moto = Moto::start().await;
    let key = moto.create_user("deployer", &["sts:AssumeRole", "s3:ListAllMyBuckets"]).await;
    let role = moto.create_role("fleet-deployer", &key.arn).await;
    moto.enforce_auth().await;
    let kube = FakeKubeApi::start().await;
    let moto_url = moto.url.clone();
    let app = app_with(|config| config.cloud.aws_endpoint_url = Some(moto_url)).await;
    let ada = app.user("ada").await;
    let account = link_account(
        &ada,
        "aws",
        json!({ "access_key_id": key.access_key_id, "secret_access_key": key.secret_access_key, "role_arn": role }),
    )
    .await;
    let cluster = seed_cloud_cluster(&app, "aws-eks", &account, &kube.url, &kube.ca_data()).await;

    let ended = deploy_fleet_telemetry(&ada, &cluster).await;
    let token = assert_helm_called_the_api_server(&ended, &kube);
    // moto cannot answer a presigned GetCallerIdentity (it routes requests without an
    // Authorization header to S3), so this API server accepts no token: the token's form is
    // checked below, its signature in fleetplane-cloud's own tests.
    assert_unauthorized(&ended, &kube);
    let encoded = token.strip_prefix("k8s-aws-v1.").expect("EKS's token prefix");
    let url = String::from_utf8(URL_SAFE_NO_PAD.decode(encoded).expect("base64url")).expect("UTF-8");
    let url = url::Url::parse(&url).expect("a presigned URL");
    assert!(url.as_str().starts_with(&moto.url), "presigned for STS (moto): {url}");
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["Action"], "GetCallerIdentity");
    assert!(query["X-Amz-SignedHeaders"].split(';').any(|h| h == "x-k8s-aws-id"), "bound to the cluster: {query:?}");
    // Signed by the role's session, not the linked key.
    assert!(!query["X-Amz-Credential"].starts_with(&key.access_key_id), "{query:?}");
    assert!(query.get("X-Amz-Security-Token").is_some_and(|t| !t.is_empty()), "{query:?}");
    assert!(!token.contains(&key.secret_access_key) && !url.as_str().contains(&key.secret_access_key));
    assert!(!ended.log.contains(&key.secret_access_key), "{}", ended.log);
}

#[tokio::test]
#[ignore = "needs Docker, the helm image and the GCS emulator: run `cargo xtask test`"]
async fn a_gke_deployment_calls_the_api_server_with_the_service_accounts_access_token() {
    let oauth = FakeGoogleOAuth::start().await;
    let gcs = GcsEmulator::start().await;
    let kube = FakeKubeApi::start_with(oauth.gke_authenticator()).await;
    let app = app_with(|config| {
        config.cloud.gcp_token_uri = oauth.token_uri.clone();
        config.cloud.gcp_storage_endpoint = gcs.url.clone();
    })
    .await;
    let ada = app.user("ada").await;
    let key = service_account("fleet-project", "deployer", &oauth.token_uri);
    oauth.register(&key);
    let account = link_account(&ada, "gcp", json!({ "service_account_json": key.json })).await;
    let cluster = seed_cloud_cluster(&app, "gcp-gke", &account, &kube.url, &kube.ca_data()).await;

    let ended = deploy_fleet_telemetry(&ada, &cluster).await;
    let token = assert_helm_called_the_api_server(&ended, &kube);
    assert!(oauth.has_issued(&token), "the token Google's token endpoint issued");
    assert_authenticated_then_forbidden(&ended, &kube, &key.client_email);
    assert!(!ended.log.contains("PRIVATE KEY"), "{}", ended.log);
    let private_key_body: String = key.private_key_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!ended.log.contains(&private_key_body[..40]), "{}", ended.log);
}

/// An Azure tenant knowing one service principal, with one subscription.
async fn fake_azure(secret: &str) -> (FakeAzure, Value) {
    let tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let tenant = AzureTenant {
        clients: HashMap::from([(AZURE_CLIENT.to_owned(), secret.to_owned())]),
        subscriptions: vec![("8d2a3c4e-1111-4d0e-9c3b-1a2b3c4d5e6f".into(), "Fleet".into())],
        ..AzureTenant::default()
    };
    let azure = FakeAzure::start(HashMap::from([(tenant_id.to_owned(), tenant)])).await;
    (azure, json!({ "tenant_id": tenant_id, "client_id": AZURE_CLIENT, "client_secret": secret }))
}

fn for_azure(config: &mut Config, azure: &FakeAzure) {
    config.cloud.azure_authority_host = azure.url.clone();
    config.cloud.azure_arm_endpoint = azure.url.clone();
    config.cloud.extra_ca_file = Some(azure.ca_file.path().to_owned());
}

#[tokio::test]
#[ignore = "needs Docker and the helm image: run `cargo xtask test`"]
async fn an_aks_deployment_calls_the_api_server_with_an_entra_id_token_for_aks() {
    let secret = "azure-Secret~helm-job-0123456789";
    let (azure, credentials) = fake_azure(secret).await;
    let kube = FakeKubeApi::start_with(azure.aks_authenticator()).await;
    let app = app_with(|config| for_azure(config, &azure)).await;
    let ada = app.user("ada").await;
    let account = link_account(&ada, "azure", credentials).await;
    let cluster = seed_cloud_cluster(&app, "azure-aks", &account, &kube.url, &kube.ca_data()).await;

    let ended = deploy_fleet_telemetry(&ada, &cluster).await;
    let token = assert_helm_called_the_api_server(&ended, &kube);
    assert_eq!(azure.scope_of(&token).as_deref(), Some(AKS_SCOPE), "an Entra ID token for the AKS server app");
    assert_authenticated_then_forbidden(&ended, &kube, AZURE_CLIENT);
    assert!(!ended.log.contains(secret), "{}", ended.log);
}

#[tokio::test]
#[ignore = "needs Docker and the helm image: run `cargo xtask test`"]
async fn a_cluster_whose_api_server_does_not_answer_fails_saying_so() {
    let (azure, credentials) = fake_azure("azure-Secret~unreachable-0123456789").await;
    // A CA of a cluster that is not there.
    let ca_data = FakeKubeApi::start().await.ca_data();
    let app = app_with(|config| for_azure(config, &azure)).await;
    let ada = app.user("ada").await;
    let account = link_account(&ada, "azure", credentials).await;
    let endpoint = format!("https://127.0.0.1:{}", free_port());
    let cluster = seed_cloud_cluster(&app, "azure-aks", &account, &endpoint, &ca_data).await;

    let Ended { run, deployment, log, images } = deploy_fleet_telemetry(&ada, &cluster).await;
    assert_eq!(images, [HELM_IMAGE]);
    assert_eq!(run["status"], "failed", "{run}\n{log}");
    let reason = run["reason"].as_str().expect("reason");
    assert!(reason.starts_with("The cluster's API server did not answer: Kubernetes cluster unreachable"), "{reason}");
    assert!(reason.contains("connection refused"), "{reason}");
    assert_eq!(deployment["status"], "failed");
    assert!(log.contains(r#""error":"unreachable""#), "{log}");
}

#[tokio::test]
#[ignore = "needs Docker and the helm image: run `cargo xtask test`"]
async fn canceling_a_helm_job_stops_its_container_and_the_deployment_says_so() {
    let (azure, credentials) = fake_azure("azure-Secret~cancel-0123456789").await;
    let kube = FakeKubeApi::start_unresponsive().await;
    let app = app_with(|config| for_azure(config, &azure)).await;
    let ada = app.user("ada").await;
    let account = link_account(&ada, "azure", credentials).await;
    let cluster = seed_cloud_cluster(&app, "azure-aks", &account, &kube.url, &kube.ca_data()).await;
    let created = ada
        .post(&format!("/api/v1/orgs/ada/clusters/{cluster}/deployments"), json!({ "service": "fleet-telemetry" }))
        .await
        .expect_status(StatusCode::CREATED)
        .json();
    let run = created["run"]["id"].as_str().expect("run").to_owned();
    // Helm is waiting for the API server's answer.
    let started = std::time::Instant::now();
    while kube.requests().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "helm never called the API server");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(job_containers(&[&run]).len(), 1);

    ada.post_empty(&format!("/api/v1/runs/{run}/cancel")).await.expect_status(StatusCode::OK);
    let canceled = wait_until_finished(&ada, &run, 60).await;
    assert_eq!(canceled["status"], "canceled", "{canceled}");
    assert!(canceled["reason"].as_str().is_some_and(|r| r.contains("the deployment run was stopped")), "{canceled}");
    assert!(job_containers(&[&run]).is_empty(), "the container is gone");
    let log = log_text(&ada, &run).await;
    assert!(log.contains("fleetplane: SIGINT received: stopping helm"), "the job got SIGINT: {log}");
    let id = created["deployment"]["id"].as_str().expect("id");
    let shown = ada.get(&format!("/api/v1/orgs/ada/deployments/{id}")).await.json();
    assert_eq!(shown["status"], "failed", "a canceled first install leaves nothing deployed: {shown}");
}

#[tokio::test]
#[ignore = "needs Docker and the helm image: run `cargo xtask test`"]
async fn a_job_left_by_an_earlier_attempt_is_removed_before_helm_runs_again() {
    let (azure, credentials) = fake_azure("azure-Secret~leftover-0123456789").await;
    let kube = FakeKubeApi::start().await;
    // No workers until the leftover is in place.
    let app = app_with(|config| {
        for_azure(config, &azure);
        config.runs.workers = 0;
    })
    .await;
    let ada = app.user("ada").await;
    let account = link_account(&ada, "azure", credentials).await;
    let cluster = seed_cloud_cluster(&app, "azure-aks", &account, &kube.url, &kube.ca_data()).await;
    let created = ada
        .post(&format!("/api/v1/orgs/ada/clusters/{cluster}/deployments"), json!({ "service": "fleet-telemetry" }))
        .await
        .expect_status(StatusCode::CREATED)
        .json();
    let run = created["run"]["id"].as_str().expect("run").to_owned();
    // What a worker that died in attempt 0 leaves: its job still running, under its labels.
    let leftover = docker(&[
        "run",
        "-d",
        "--network",
        "none",
        "--label",
        "dev.fleetplane.managed=true",
        "--label",
        &format!("dev.fleetplane.run={run}"),
        "--label",
        "dev.fleetplane.attempt=0",
        "--label",
        "dev.fleetplane.worker=a-worker-that-died",
        "--entrypoint",
        "/bin/busybox",
        HELM_IMAGE,
        "sleep",
        "600",
    ]);
    let leftover = leftover.trim().to_owned();
    assert_eq!(job_containers(&[&run]).len(), 1);

    let stop = tokio_util::sync::CancellationToken::new();
    let (state, until) = (app.state.clone(), stop.clone());
    let workers =
        tokio::spawn(async move { fleetplane::run_workers(state, until.cancelled_owned()).await.expect("workers") });
    let ended = wait_until_finished(&ada, &run, 120).await;
    stop.cancel();
    workers.await.expect("workers stop");
    assert_eq!(ended["status"], "failed", "{ended}");
    let log = log_text(&ada, &run).await;
    assert!(log.contains(&format!("Removed the job of attempt 0 ({})", &leftover[..12])), "{log}");
    assert!(log.find("Removed the job of attempt 0") < log.find("Step: validate"), "before helm ran: {log}");
    assert!(job_containers(&[&run]).is_empty(), "the leftover and the new job are both gone");
}

/// Waits for run `run` to end; returns it and its log.
async fn finished(ada: &Client, answer: &Value) -> (Value, String) {
    let run = answer["run"]["id"].as_str().expect("run");
    let ended = wait_until_finished(ada, run, 120).await;
    (ended, log_text(ada, run).await)
}

#[tokio::test]
#[ignore = "needs Docker and the helm image: run `cargo xtask test`"]
async fn upgrade_rollback_and_uninstall_run_their_helm_actions_up_to_the_api_server() {
    let (azure, credentials) = fake_azure("azure-Secret~lifecycle-0123456789").await;
    let kube = FakeKubeApi::start().await;
    let app = app_with(|config| for_azure(config, &azure)).await;
    let ada = app.user("ada").await;
    let account = link_account(&ada, "azure", credentials).await;
    let cluster = seed_cloud_cluster(&app, "azure-aks", &account, &kube.url, &kube.ca_data()).await;
    let first = deploy_fleet_telemetry(&ada, &cluster).await;
    assert_helm_called_the_api_server(&first, &kube);
    let id = first.deployment["id"].as_str().expect("id").to_owned();
    let path = format!("/api/v1/orgs/ada/deployments/{id}");

    let upgraded = ada
        .patch(&path, json!({ "values": { "resources": { "limits": { "memory": "768Mi" } } } }))
        .await
        .expect_status(StatusCode::OK)
        .json();
    let (run, log) = finished(&ada, &upgraded).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["reason"].as_str().is_some_and(|r| r.contains("refused the token minted for this run")), "{run}");
    for expected in ["upgrade (docker executor)", "Installing revision 2:", "Step: validate", r#"{"action":"upgrade""#]
    {
        assert!(log.contains(expected), "{expected:?} is not in the log:\n{log}");
    }

    let rolled =
        ada.post(&format!("{path}/rollback"), json!({ "revision": 1 })).await.expect_status(StatusCode::OK).json();
    let (run, log) = finished(&ada, &rolled).await;
    assert_eq!(run["status"], "failed", "{run}");
    for expected in [
        "upgrade (docker executor)",
        "Rolling back to revision 1: upgrading the release to its chart and values, copied as revision 3",
        r#"{"action":"upgrade""#,
    ] {
        assert!(log.contains(expected), "{expected:?} is not in the log:\n{log}");
    }

    let uninstall = ada.delete(&path).await.expect_status(StatusCode::ACCEPTED).json();
    let (run, log) = finished(&ada, &uninstall).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["reason"].as_str().is_some_and(|r| r.contains("refused the token minted for this run")), "{run}");
    for expected in ["uninstall (docker executor)", "Step: status", r#"{"action":"uninstall""#] {
        assert!(log.contains(expected), "{expected:?} is not in the log:\n{log}");
    }
    assert!(!log.contains("Step: validate") && !log.contains("Installing"), "an uninstall takes no chart:\n{log}");
    let shown = ada.get(&path).await.json();
    assert_eq!(shown["status"], "failed", "an uninstall that did not happen leaves it failed, not uninstalled");
    // Each of the four jobs called the API server with a token of its own.
    let tokens: std::collections::HashSet<String> =
        kube.requests().into_iter().filter_map(|r| r.authorization).collect();
    assert_eq!(tokens.len(), 4, "a token minted per run");
}

#[tokio::test]
#[ignore = "needs Docker and the helm image: run `cargo xtask test`"]
async fn a_deployment_onto_a_prod_accounts_cluster_waits_for_an_admins_approval() {
    let (azure, credentials) = fake_azure("azure-Secret~approval-0123456789").await;
    let ca_data = FakeKubeApi::start().await.ca_data();
    let app = app_with(|config| for_azure(config, &azure)).await;
    let ada = app.user("ada").await;
    let otto = app.user("otto").await;
    ada.add_to_org("ada", &otto, "operator").await;
    let account = link_account_in(&ada, "azure", "prod", credentials).await;
    let endpoint = format!("https://127.0.0.1:{}", free_port());
    let cluster = seed_cloud_cluster(&app, "azure-aks", &account, &endpoint, &ca_data).await;

    // An operator deploys; the run waits for an admin before any job starts.
    let created = otto
        .post(&format!("/api/v1/orgs/ada/clusters/{cluster}/deployments"), json!({ "service": "fleet-telemetry" }))
        .await
        .expect_status(StatusCode::CREATED)
        .json();
    let run = created["run"]["id"].as_str().expect("run").to_owned();
    let waiting = wait_for_run(&otto, &run, 120, |r| r["status"] == "awaiting_approval").await;
    assert!(job_containers(&[run.as_str()]).is_empty(), "no job before the approval: {waiting}");
    let approve = format!("/api/v1/runs/{run}/approve");
    otto.post_empty(&approve).await.expect_problem(StatusCode::FORBIDDEN, "forbidden");

    // Approved, it runs the helm job, which reaches for the cluster.
    ada.post_empty(&approve).await.expect_status(StatusCode::OK);
    let ended = wait_until_finished(&ada, &run, 120).await;
    assert_eq!(ended["approved_by"], "ada", "{ended}");
    assert_eq!(ended["status"], "failed", "{ended}");
    let reason = ended["reason"].as_str().expect("reason");
    assert!(reason.starts_with("The cluster's API server did not answer"), "{reason}");
}
