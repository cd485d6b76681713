//! Cloud accounts against local stand-ins: moto (AWS), the GCS emulator with a Google token
//! endpoint that checks assertion signatures, and an Entra ID + ARM server over TLS.
//!
//! Tests that need a Python emulator are ignored by a plain `cargo test`; `cargo xtask test`
//! installs the emulators and runs them.

use std::collections::HashMap;

use fleetplane::entity::cloud_accounts;
use reqwest::StatusCode;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

use crate::support::{
    Client, TestApp,
    clouds::{AzureTenant, FakeAzure, FakeGoogleOAuth, GcsEmulator, Moto, service_account},
};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";
const SUB_PROD: &str = "8d2a3c4e-1111-4d0e-9c3b-1a2b3c4d5e6f";
const SUB_DEV: &str = "9e3b4d5f-2222-4e1f-8d4c-2b3c4d5e6f70";
const AZURE_SECRET: &str = "azure-Secret~0123456789abcdefghij";
const ORG: &str = "/api/v1/orgs/ada/cloud-accounts";

async fn fake_azure() -> FakeAzure {
    let tenant = AzureTenant {
        clients: HashMap::from([(CLIENT.to_owned(), AZURE_SECRET.to_owned())]),
        subscriptions: vec![
            (SUB_PROD.to_owned(), "Production".to_owned()),
            (SUB_DEV.to_owned(), "Development".to_owned()),
        ],
        storage_accounts: HashMap::from([
            (SUB_PROD.to_owned(), vec![("tfstateprod".to_owned(), "westeurope".to_owned())]),
            (SUB_DEV.to_owned(), vec![("tfstatedev".to_owned(), "northeurope".to_owned())]),
        ]),
    };
    FakeAzure::start(HashMap::from([(TENANT.to_owned(), tenant)])).await
}

/// A server whose clouds are the given stand-ins.
async fn app_with(
    azure: Option<&FakeAzure>,
    moto: Option<&Moto>,
    google: Option<(&FakeGoogleOAuth, &GcsEmulator)>,
) -> TestApp {
    TestApp::spawn_with(|config| {
        if let Some(azure) = azure {
            config.cloud.azure_authority_host = azure.url.clone();
            config.cloud.azure_arm_endpoint = azure.url.clone();
            config.cloud.extra_ca_file = Some(azure.ca_file.path().to_owned());
        }
        if let Some(moto) = moto {
            config.cloud.aws_endpoint_url = Some(moto.url.clone());
        }
        if let Some((oauth, gcs)) = google {
            config.cloud.gcp_token_uri = oauth.token_uri.clone();
            config.cloud.gcp_storage_endpoint = gcs.url.clone();
        }
        config.cloud.timeout_secs = 10;
    })
    .await
}

fn azure_body(name: &str, secret: &str, subscription: Option<&str>) -> Value {
    json!({
        "provider": "azure", "name": name, "environment": "prod",
        "credentials": { "tenant_id": TENANT, "client_id": CLIENT, "client_secret": secret, "subscription_id": subscription },
    })
}

fn aws_body(name: &str, key: &str, secret: &str, role_arn: Option<&str>) -> Value {
    json!({
        "provider": "aws", "name": name, "environment": "dev",
        "credentials": { "access_key_id": key, "secret_access_key": secret, "role_arn": role_arn },
    })
}

async fn stored_accounts(app: &TestApp) -> u64 {
    cloud_accounts::Entity::find().count(app.db()).await.expect("count")
}

/// Adds a user with `role` in ada's personal organization.
async fn member(app: &TestApp, owner: &Client, name: &str, role: &str) -> Client {
    let client = app.user(name).await;
    owner.add_to_org("ada", &client, role).await;
    client
}

#[tokio::test]
async fn an_azure_service_principal_is_verified_and_its_subscriptions_recorded() {
    let azure = fake_azure().await;
    let app = app_with(Some(&azure), None, None).await;
    let ada = app.user("ada").await;

    let linked =
        ada.post(ORG, azure_body("Azure prod", AZURE_SECRET, Some(SUB_PROD))).await.expect_status(StatusCode::CREATED);
    let account = linked.json();
    assert!(!linked.text.contains(AZURE_SECRET), "the secret never comes back");
    assert_eq!((account["status"].as_str(), account["environment"].as_str()), (Some("verified"), Some("prod")));
    assert_eq!(account["identity"]["tenant_id"], TENANT);
    let subscriptions: Vec<&str> = account["identity"]["subscriptions"]
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    assert_eq!(subscriptions, [SUB_PROD, SUB_DEV]);
    assert_eq!(account["settings"]["client_id"], CLIENT);
    assert_eq!(account["secret_hint"], "client …7b46");
    assert!(account["verified_at"].is_string());

    let id = account["id"].as_str().expect("id");
    let buckets = ada.get(&format!("{ORG}/{id}/buckets")).await.expect_status(StatusCode::OK).json();
    assert_eq!(buckets, json!([{ "name": "tfstateprod", "location": "westeurope", "scope": SUB_PROD }]));
    let listed = ada.get(ORG).await.expect_status(StatusCode::OK);
    assert!(!listed.text.contains(AZURE_SECRET));
    assert_eq!(listed.json()[0]["id"], account["id"]);
}

#[tokio::test]
async fn azure_refusals_are_explained_and_nothing_is_stored() {
    let azure = fake_azure().await;
    let app = app_with(Some(&azure), None, None).await;
    let ada = app.user("ada").await;

    let wrong = ada.post(ORG, azure_body("a", "not-the-secret", None)).await;
    let problem = wrong.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "cloud_credentials_rejected");
    assert!(problem["detail"].as_str().expect("detail").contains("AADSTS7000215"), "{problem}");
    assert!(!wrong.text.contains("not-the-secret"));

    let unseen = ada.post(ORG, azure_body("a", AZURE_SECRET, Some("00000000-0000-4000-8000-000000000000"))).await;
    let problem = unseen.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "cloud_credentials_rejected");
    assert!(problem["detail"].as_str().expect("detail").contains("cannot see subscription"), "{problem}");

    let mut other_tenant = azure_body("a", AZURE_SECRET, None);
    other_tenant["credentials"]["tenant_id"] = json!("11111111-2222-4333-8444-555555555555");
    let problem = ada
        .post(ORG, other_tenant)
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "cloud_credentials_rejected");
    assert!(problem["detail"].as_str().expect("detail").contains("AADSTS90002"));
    assert_eq!(stored_accounts(&app).await, 0);
}

#[tokio::test]
async fn non_uuid_azure_ids_are_refused_before_any_call() {
    let azure = fake_azure().await;
    let app = app_with(Some(&azure), None, None).await;
    let ada = app.user("ada").await;
    let mut body = azure_body("a", AZURE_SECRET, Some("prod"));
    body["credentials"]["tenant_id"] = json!("contoso.onmicrosoft.com");
    body["credentials"]["client_id"] = json!("my-app");
    let refused = ada.post(ORG, body).await;
    refused.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(refused.fields(), ["credentials.tenant_id", "credentials.client_id", "credentials.subscription_id"]);
    assert_eq!(azure.token_requests(), 0, "nothing was sent to Entra ID");
}

#[tokio::test]
async fn link_requests_are_validated_field_by_field() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    app.assert_unchanged(async {
        let cases = [
            (json!({ "name": "x", "environment": "dev", "credentials": {} }), vec!["provider"]),
            (json!({ "provider": "oracle", "name": "x", "environment": "dev", "credentials": {} }), vec!["provider"]),
            (json!({ "provider": "aws", "name": "x", "environment": "staging", "credentials": {} }), vec!["environment"]),
            (
                json!({ "provider": "aws", "name": "", "environment": "dev", "credentials": {} }),
                vec!["name", "credentials.access_key_id", "credentials.secret_access_key"],
            ),
            (json!({ "provider": "aws", "name": "x", "environment": "dev" }), vec!["credentials"]),
            (
                json!({ "provider": "aws", "name": "x", "environment": "dev", "credentials": { "access_key_id": "lower-case", "secret_access_key": "has space", "role_arn": "deployer" } }),
                vec!["credentials.access_key_id", "credentials.secret_access_key", "credentials.role_arn"],
            ),
            (
                json!({ "provider": "aws", "name": "x", "environment": "dev", "credentials": { "access_key": "AKIAIOSFODNN7EXAMPLE" } }),
                vec!["credentials"],
            ),
            (json!({ "provider": "gcp", "name": "x".repeat(65), "environment": "dev", "credentials": {} }), vec!["name", "credentials.service_account_json"]),
        ];
        for (body, fields) in cases {
            let refused = ada.post(ORG, body.clone()).await;
            refused.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
            assert_eq!(refused.fields(), fields, "{body}");
        }
    })
    .await;
    assert_eq!(stored_accounts(&app).await, 0);
}

#[tokio::test]
async fn bad_gcp_key_files_are_refused_before_any_call() {
    let oauth = FakeGoogleOAuth::start().await;
    let app = TestApp::spawn_with(|config| config.cloud.gcp_token_uri = oauth.token_uri.clone()).await;
    let ada = app.user("ada").await;
    let good = service_account("acme-prod", "fleetplane", &oauth.token_uri);
    let mut key: Value = serde_json::from_str(&good.json).expect("json");

    let without = |field: &str| {
        let mut k = key.clone();
        k.as_object_mut().expect("object").remove(field);
        k.to_string()
    };
    let (no_private_key, no_email) = (without("private_key"), without("client_email"));
    let ec_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("EC key").serialize_pem();
    key["private_key"] = json!(ec_key);
    let not_rsa = key.to_string();
    key["private_key"] = json!(good.private_key_pem);
    key["type"] = json!("authorized_user");
    let wrong_type = key.to_string();
    key["type"] = json!("service_account");
    key["token_uri"] = json!("http://169.254.169.254/latest/meta-data");
    let elsewhere = key.to_string();

    for (json_text, expected) in [
        ("{ not json".to_owned(), "not a JSON key file"),
        (no_private_key, "lacks private_key"),
        (no_email, "lacks client_email"),
        (not_rsa, "not an RSA private key"),
        (wrong_type, "`authorized_user`"),
        (elsewhere, "only accepts"),
    ] {
        let body = json!({ "provider": "gcp", "name": "gcp", "environment": "dev", "credentials": { "service_account_json": json_text } });
        let refused = ada.post(ORG, body).await;
        refused.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(refused.fields(), ["credentials.service_account_json"]);
        let message = refused.json()["errors"][0]["message"].as_str().expect("message").to_owned();
        assert!(message.contains(expected), "{expected}: {message}");
        assert!(!refused.text.contains("BEGIN PRIVATE KEY"), "key material is never echoed");
    }
    assert_eq!(oauth.issued(), 0);
    assert_eq!(stored_accounts(&app).await, 0);
}

#[tokio::test]
async fn viewers_and_operators_read_only_admins_manage() {
    let azure = fake_azure().await;
    let app = app_with(Some(&azure), None, None).await;
    let ada = app.user("ada").await;
    let viewer = member(&app, &ada, "vera", "viewer").await;
    let operator = member(&app, &ada, "otto", "operator").await;
    let id = ada.post(ORG, azure_body("azure", AZURE_SECRET, None)).await.json()["id"].as_str().expect("id").to_owned();
    let account = format!("{ORG}/{id}");

    app.assert_unchanged(async {
        for client in [&viewer, &operator] {
            client
                .post(ORG, azure_body("mine", AZURE_SECRET, None))
                .await
                .expect_problem(StatusCode::FORBIDDEN, "forbidden");
            client
                .patch(&account, json!({ "name": "renamed" }))
                .await
                .expect_problem(StatusCode::FORBIDDEN, "forbidden");
            client
                .put(&format!("{account}/credentials"), json!({ "credentials": {} }))
                .await
                .expect_problem(StatusCode::FORBIDDEN, "forbidden");
            client.delete(&account).await.expect_problem(StatusCode::FORBIDDEN, "forbidden");
            client.get(&account).await.expect_status(StatusCode::OK);
            client.get(ORG).await.expect_status(StatusCode::OK);
            client.get(&format!("{account}/buckets")).await.expect_status(StatusCode::OK);
        }
        viewer.post_empty(&format!("{account}/verify")).await.expect_problem(StatusCode::FORBIDDEN, "forbidden");
    })
    .await;
    operator.post_empty(&format!("{account}/verify")).await.expect_status(StatusCode::OK);
}

#[tokio::test]
async fn another_organizations_account_is_not_found_on_every_route() {
    let azure = fake_azure().await;
    let app = app_with(Some(&azure), None, None).await;
    let ada = app.user("ada").await;
    let eve = app.user("eve").await;
    let id = ada.post(ORG, azure_body("azure", AZURE_SECRET, None)).await.json()["id"].as_str().expect("id").to_owned();

    app.assert_unchanged(async {
        // Through ada's organization: eve is no member.
        for (method, path) in
            [("GET", format!("{ORG}/{id}")), ("GET", ORG.to_owned()), ("POST", format!("{ORG}/{id}/verify"))]
        {
            eve.send(eve.request(method.parse().expect("method"), &path))
                .await
                .expect_problem(StatusCode::NOT_FOUND, "org_not_found");
        }
        // Through eve's own organization, where she is owner: the account is not there.
        let theirs = format!("/api/v1/orgs/eve/cloud-accounts/{id}");
        eve.get(&theirs).await.expect_problem(StatusCode::NOT_FOUND, "cloud_account_not_found");
        eve.get(&format!("{theirs}/buckets")).await.expect_problem(StatusCode::NOT_FOUND, "cloud_account_not_found");
        eve.post_empty(&format!("{theirs}/verify"))
            .await
            .expect_problem(StatusCode::NOT_FOUND, "cloud_account_not_found");
        eve.patch(&theirs, json!({ "name": "mine now" }))
            .await
            .expect_problem(StatusCode::NOT_FOUND, "cloud_account_not_found");
        eve.put(&format!("{theirs}/credentials"), json!({ "credentials": {} }))
            .await
            .expect_problem(StatusCode::NOT_FOUND, "cloud_account_not_found");
        eve.delete(&theirs).await.expect_problem(StatusCode::NOT_FOUND, "cloud_account_not_found");
        assert_eq!(eve.get("/api/v1/orgs/eve/cloud-accounts").await.json(), json!([]));
    })
    .await;
    ada.get(&format!("{ORG}/{id}")).await.expect_status(StatusCode::OK);
}

#[tokio::test]
async fn rename_change_environment_rotate_and_delete_are_audited() {
    let azure = fake_azure().await;
    let app = app_with(Some(&azure), None, None).await;
    let ada = app.user("ada").await;
    let first = ada.post(ORG, azure_body("Azure", AZURE_SECRET, None)).await.json();
    ada.post(ORG, azure_body("Other", AZURE_SECRET, None)).await.expect_status(StatusCode::CREATED);
    let account = format!("{ORG}/{}", first["id"].as_str().expect("id"));

    let taken = ada.post(ORG, azure_body("azure", AZURE_SECRET, None)).await;
    taken.expect_problem(StatusCode::CONFLICT, "cloud_account_name_taken");
    assert_eq!(taken.fields(), ["name"]);
    ada.patch(&account, json!({ "name": "OTHER" }))
        .await
        .expect_problem(StatusCode::CONFLICT, "cloud_account_name_taken");
    let updated = ada
        .patch(&account, json!({ "name": "Azure main", "environment": "sandbox" }))
        .await
        .expect_status(StatusCode::OK)
        .json();
    assert_eq!((updated["name"].as_str(), updated["environment"].as_str()), (Some("Azure main"), Some("sandbox")));

    // A rotation that fails verification changes nothing.
    let refused = ada
        .put(
            &format!("{account}/credentials"),
            json!({ "credentials": { "tenant_id": TENANT, "client_id": CLIENT, "client_secret": "wrong-secret" } }),
        )
        .await;
    refused.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "cloud_credentials_rejected");
    let before = ada.get(&account).await.json();
    assert_eq!(before["status"], "verified");
    let rotated = ada
        .put(
            &format!("{account}/credentials"),
            json!({ "credentials": { "tenant_id": TENANT, "client_id": CLIENT, "client_secret": AZURE_SECRET, "subscription_id": SUB_DEV } }),
        )
        .await
        .expect_status(StatusCode::OK)
        .json();
    assert_eq!(rotated["settings"]["subscription_id"], SUB_DEV);

    ada.post_empty(&format!("{account}/verify")).await.expect_status(StatusCode::OK);
    ada.delete(&account).await.expect_status(StatusCode::NO_CONTENT);
    ada.get(&account).await.expect_problem(StatusCode::NOT_FOUND, "cloud_account_not_found");
    ada.delete(&account).await.expect_problem(StatusCode::NOT_FOUND, "cloud_account_not_found");

    let audit = ada.get("/api/v1/orgs/ada/audit?limit=100").await.json();
    let actions: Vec<&str> =
        audit["items"].as_array().expect("items").iter().map(|e| e["action"].as_str().expect("action")).collect();
    for expected in [
        "cloud_account.linked",
        "cloud_account.renamed",
        "cloud_account.environment_changed",
        "cloud_account.rotated",
        "cloud_account.verified",
        "cloud_account.deleted",
    ] {
        assert!(actions.contains(&expected), "{expected} missing from {actions:?}");
    }
    assert!(!audit.to_string().contains(AZURE_SECRET));
}

#[tokio::test]
async fn secrets_are_sealed_in_the_database_under_the_current_key() {
    let azure = fake_azure().await;
    let app = app_with(Some(&azure), None, None).await;
    let ada = app.user("ada").await;
    ada.post(ORG, azure_body("azure", AZURE_SECRET, None)).await.expect_status(StatusCode::CREATED);
    let stored = cloud_accounts::Entity::find().one(app.db()).await.expect("query").expect("row");
    assert_eq!(stored.secret_key_id, app.state.keyring.primary_id());
    assert!(!stored.secret_ciphertext.windows(AZURE_SECRET.len()).any(|w| w == AZURE_SECRET.as_bytes()));
    assert!(!format!("{stored:?}").contains(AZURE_SECRET));
    // The master key file was created owner-only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(app.dir.path().join("master.key")).expect("key file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn an_unreachable_or_silent_cloud_is_a_clear_error_not_a_hang() {
    // Nothing listens on this port: refused at once.
    let closed = crate::support::ports::free_port();
    // This one accepts and then never answers: only the timeout ends the wait.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    for port in [closed, silent_port] {
        let app = TestApp::spawn_with(|config| {
            config.cloud.aws_endpoint_url = Some(format!("http://127.0.0.1:{port}"));
            config.cloud.timeout_secs = 2;
        })
        .await;
        let ada = app.user("ada").await;
        // The server's own 2 s timeout ends the wait: far sooner than this bound, whose only
        // job is to turn a hang into a failure.
        let refused = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            ada.post(ORG, aws_body("aws", "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None)),
        )
        .await
        .unwrap_or_else(|_| panic!("linking against a cloud on port {port} hung past the server's 2 s timeout"));
        let problem = refused.expect_problem(StatusCode::BAD_GATEWAY, "cloud_unreachable");
        assert!(!refused.text.contains("wJalrXUtnFEMI"));
        assert!(problem["detail"].as_str().expect("detail").len() > 10);
        assert_eq!(stored_accounts(&app).await, 0);
    }
}

#[tokio::test]
#[ignore = "needs moto: run `cargo xtask test`"]
async fn aws_keys_verify_against_sts_and_bad_ones_are_refused() {
    let moto = Moto::start().await;
    let alice = moto.create_user("alice", &["s3:ListAllMyBuckets"]).await;
    moto.create_bucket("tf-state-eu").await;
    moto.create_bucket("artifacts").await;
    moto.enforce_auth().await;
    let app = app_with(None, Some(&moto), None).await;
    let ada = app.user("ada").await;

    let linked = ada
        .post(ORG, aws_body("AWS dev", &alice.access_key_id, &alice.secret_access_key, None))
        .await
        .expect_status(StatusCode::CREATED);
    let account = linked.json();
    assert_eq!(account["identity"], json!({ "provider": "aws", "account_id": "123456789012", "arn": alice.arn }));
    let last4 = &alice.access_key_id[alice.access_key_id.len() - 4..];
    assert_eq!(account["secret_hint"], format!("key …{last4}"));
    assert!(!linked.text.contains(&alice.secret_access_key));

    let buckets = ada
        .get(&format!("{ORG}/{}/buckets", account["id"].as_str().expect("id")))
        .await
        .expect_status(StatusCode::OK)
        .json();
    let names: Vec<&str> =
        buckets.as_array().expect("list").iter().map(|b| b["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["artifacts", "tf-state-eu"]);

    app.assert_unchanged(async {
        for (key, secret, code) in [
            ("AKIAUNKNOWNKEY000000", "x".repeat(40), "InvalidClientTokenId"),
            (alice.access_key_id.as_str(), "y".repeat(40), "SignatureDoesNotMatch"),
        ] {
            let refused = ada.post(ORG, aws_body("bad", key, &secret, None)).await;
            let problem = refused.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "cloud_credentials_rejected");
            assert!(problem["detail"].as_str().expect("detail").contains(code), "{problem}");
        }
    })
    .await;
    assert_eq!(stored_accounts(&app).await, 1);
}

#[tokio::test]
#[ignore = "needs moto: run `cargo xtask test`"]
async fn aws_roles_are_assumed_when_allowed_and_refused_otherwise() {
    let moto = Moto::start().await;
    let alice = moto.create_user("alice", &["sts:AssumeRole", "s3:ListAllMyBuckets"]).await;
    let bob = moto.create_user("bob", &["s3:ListAllMyBuckets"]).await;
    let role = moto.create_role("deployer", &alice.arn).await;
    moto.enforce_auth().await;
    let app = app_with(None, Some(&moto), None).await;
    let ada = app.user("ada").await;

    let account = ada
        .post(ORG, aws_body("with role", &alice.access_key_id, &alice.secret_access_key, Some(&role)))
        .await
        .expect_status(StatusCode::CREATED)
        .json();
    let arn = account["identity"]["arn"].as_str().expect("arn");
    assert!(arn.starts_with("arn:aws:sts::123456789012:assumed-role/deployer/"), "{arn}");
    assert_eq!(account["identity"]["source_arn"], alice.arn);
    assert_eq!(account["settings"]["role_arn"], role);

    let refused = ada.post(ORG, aws_body("bob", &bob.access_key_id, &bob.secret_access_key, Some(&role))).await;
    let problem = refused.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "cloud_credentials_rejected");
    assert!(problem["detail"].as_str().expect("detail").contains("AccessDenied"), "{problem}");
    assert_eq!(stored_accounts(&app).await, 1);
}

#[tokio::test]
#[ignore = "needs moto: run `cargo xtask test`"]
async fn reverifying_a_revoked_key_marks_the_account_invalid_with_the_reason() {
    let moto = Moto::start().await;
    let alice = moto.create_user("alice", &[]).await;
    let app = app_with(None, Some(&moto), None).await;
    let ada = app.user("ada").await;
    let account = ada.post(ORG, aws_body("aws", &alice.access_key_id, &alice.secret_access_key, None)).await.json();
    let verify = format!("{ORG}/{}/verify", account["id"].as_str().expect("id"));
    let verified = ada.post_empty(&verify).await.expect_status(StatusCode::OK).json();
    assert_eq!(verified["status"], "verified");

    // The key is gone at AWS: with authentication on, moto no longer knows it.
    moto.delete_access_key("alice", &alice.access_key_id).await;
    moto.enforce_auth().await;
    let checked = ada.post_empty(&verify).await.expect_status(StatusCode::OK).json();
    assert_eq!(checked["status"], "invalid");
    assert!(checked["status_reason"].as_str().expect("reason").contains("InvalidClientTokenId"));
    assert_eq!(checked["verified_at"], verified["verified_at"], "the last success is kept");
    let audit = ada.get("/api/v1/orgs/ada/audit").await.json().to_string();
    assert!(audit.contains("cloud_account.verification_failed"));
}

#[tokio::test]
#[ignore = "needs the GCS emulator: run `cargo xtask test`"]
async fn a_gcp_service_account_is_verified_by_token_exchange_and_storage() {
    let oauth = FakeGoogleOAuth::start().await;
    let gcs = GcsEmulator::start().await;
    gcs.create_bucket("acme-prod", "acme-tf-state").await;
    let app = app_with(None, None, Some((&oauth, &gcs))).await;
    let ada = app.user("ada").await;
    let key = service_account("acme-prod", "fleetplane", &oauth.token_uri);

    let gcp = |json: &str| json!({ "provider": "gcp", "name": "gcp", "environment": "uat", "credentials": { "service_account_json": json } });
    // Not (yet) a key Google knows: the token exchange fails.
    let refused = ada.post(ORG, gcp(&key.json)).await;
    let problem = refused.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "cloud_credentials_rejected");
    assert!(problem["detail"].as_str().expect("detail").contains("invalid_grant"), "{problem}");
    assert_eq!(stored_accounts(&app).await, 0);

    oauth.register(&key);
    let account = ada.post(ORG, gcp(&key.json)).await.expect_status(StatusCode::CREATED).json();
    assert_eq!(
        account["identity"],
        json!({ "provider": "gcp", "project_id": "acme-prod", "client_email": key.client_email })
    );
    assert!(oauth.issued() >= 1, "a real token exchange happened");
    let buckets = ada
        .get(&format!("{ORG}/{}/buckets", account["id"].as_str().expect("id")))
        .await
        .expect_status(StatusCode::OK)
        .json();
    assert_eq!(buckets[0]["name"], "acme-tf-state");

    // A key signed by another private key than the registered one fails signature checks.
    let impostor = service_account("acme-prod", "fleetplane", &oauth.token_uri);
    let mut forged: Value = serde_json::from_str(&key.json).expect("json");
    forged["private_key"] = json!(impostor.private_key_pem);
    let refused = ada.post(ORG, json!({ "provider": "gcp", "name": "forged", "environment": "uat", "credentials": { "service_account_json": forged.to_string() } })).await;
    let problem = refused.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "cloud_credentials_rejected");
    assert!(problem["detail"].as_str().expect("detail").contains("Invalid JWT Signature"), "{problem}");
}

/// A server on `dir` and `database_url` (kept across restarts), with the Azure stand-in.
async fn app_on(dir: &std::path::Path, database_url: &str, azure: &FakeAzure, master_keys: Option<&str>) -> TestApp {
    TestApp::spawn_with(|config| {
        config.data_dir = dir.to_owned();
        config.database_url = fleetplane::config::Secret::new(database_url);
        config.master_keys = master_keys.map(fleetplane::config::Secret::new);
        config.cloud.azure_authority_host = azure.url.clone();
        config.cloud.azure_arm_endpoint = azure.url.clone();
        config.cloud.extra_ca_file = Some(azure.ca_file.path().to_owned());
    })
    .await
}

async fn key_id_in_db(app: &TestApp) -> String {
    cloud_accounts::Entity::find().one(app.db()).await.expect("query").expect("row").secret_key_id
}

#[tokio::test]
async fn rotate_key_reseals_every_secret_under_the_newest_master_key() {
    use base64::Engine;
    let azure = fake_azure().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = crate::support::fresh_database_url(dir.path()).await;

    // Keys from the data directory: generate a new one and re-seal.
    let app = app_on(dir.path(), &database_url, &azure, None).await;
    let ada = app.user("ada").await;
    let account = format!(
        "{ORG}/{}",
        ada.post(ORG, azure_body("azure", AZURE_SECRET, None)).await.json()["id"].as_str().expect("id")
    );
    let first_key = key_id_in_db(&app).await;
    app.stop().await.expect("stop");

    let output = crate::support::server::fleetplane(dir.path(), &database_url)
        .args(["admin", "rotate-key", "--generate"])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("Re-encrypted 1 secret(s)") && stdout.contains("0 already used it"), "{stdout}");

    let app = app_on(dir.path(), &database_url, &azure, None).await;
    let second_key = key_id_in_db(&app).await;
    assert_ne!(second_key, first_key);
    assert_eq!(second_key, app.state.keyring.primary_id());
    let ada = app.client();
    ada.sign_in("ada@example.com", crate::support::PASSWORD).await.expect_status(StatusCode::OK);
    assert_eq!(
        ada.post_empty(&format!("{account}/verify")).await.expect_status(StatusCode::OK).json()["status"],
        "verified"
    );
    app.stop().await.expect("stop");

    // Keys from the environment: the operator puts a new key first, rotates, then drops the old.
    let key_file = std::fs::read_to_string(dir.path().join("master.key")).expect("key file");
    let current = key_file.lines().next().expect("newest key").to_owned();
    let newest = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let both = format!("{newest},{current}");
    let output = crate::support::server::fleetplane(dir.path(), &database_url)
        .env("FLEETPLANE_MASTER_KEY", &both)
        .args(["admin", "rotate-key"])
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let app = app_on(dir.path(), &database_url, &azure, Some(&newest)).await;
    let ada = app.client();
    ada.sign_in("ada@example.com", crate::support::PASSWORD).await.expect_status(StatusCode::OK);
    ada.post_empty(&format!("{account}/verify")).await.expect_status(StatusCode::OK);
    app.stop().await.expect("stop");

    // Without the key that sealed them, secrets cannot be opened, and the error says which key.
    let app = app_on(dir.path(), &database_url, &azure, Some(&current)).await;
    let ada = app.client();
    ada.sign_in("ada@example.com", crate::support::PASSWORD).await.expect_status(StatusCode::OK);
    let problem = ada
        .post_empty(&format!("{account}/verify"))
        .await
        .expect_problem(StatusCode::INTERNAL_SERVER_ERROR, "secret_unavailable");
    let sealed_with = key_id_in_db(&app).await;
    assert!(problem["detail"].as_str().expect("detail").contains(&sealed_with), "{problem}");
    let refused = crate::support::server::fleetplane(dir.path(), &database_url)
        .env("FLEETPLANE_MASTER_KEY", &current)
        .args(["admin", "rotate-key"])
        .output()
        .expect("run");
    assert!(!refused.status.success(), "rotation must not skip secrets it cannot open");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot be opened"));
    let generate_with_env = crate::support::server::fleetplane(dir.path(), &database_url)
        .env("FLEETPLANE_MASTER_KEY", &newest)
        .args(["admin", "rotate-key", "--generate"])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&generate_with_env.stderr).contains("FLEETPLANE_MASTER_KEY"));
}

/// Secrets chosen to be found if they leak anywhere.
struct Canaries(Vec<(&'static str, String)>);

impl Canaries {
    fn assert_absent(&self, place: &str, text: &str) {
        for (what, marker) in &self.0 {
            assert!(!text.contains(marker.as_str()), "the {what} leaked into {place}");
        }
    }
}

/// Every table's rows as text: what a database dump would show.
async fn dump_database(database_url: &str, data_dir: &std::path::Path) -> String {
    use sea_orm::{ConnectionTrait, Database, Statement};
    if database_url.starts_with("sqlite") {
        // The raw files: pages, free pages and the write-ahead log included.
        return ["fleetplane.db", "fleetplane.db-wal", "fleetplane.db-shm"]
            .iter()
            .filter_map(|file| std::fs::read(data_dir.join(file)).ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .collect();
    }
    let db = Database::connect(database_url).await.expect("connect");
    let backend = db.get_database_backend();
    let tables = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
        ))
        .await
        .expect("tables");
    let mut dump = String::new();
    for table in tables {
        let name: String = table.try_get("", "table_name").expect("name");
        let rows = db
            .query_all_raw(Statement::from_string(
                backend,
                format!("SELECT row_to_json(t)::text AS row FROM \"{name}\" t"),
            ))
            .await
            .expect("rows");
        for row in rows {
            dump.push_str(&row.try_get::<String>("", "row").expect("row"));
            dump.push('\n');
        }
    }
    dump
}

#[tokio::test]
#[ignore = "needs moto and the GCS emulator: run `cargo xtask test`"]
async fn secret_canaries_appear_in_no_log_response_or_database_dump() {
    use std::process::{Command, Stdio};

    let azure_secret = format!("canary-azure-{}", uuid::Uuid::new_v4().simple());
    let wrong_secret = format!("canary-wrong-{}", uuid::Uuid::new_v4().simple());
    let mut tenant = AzureTenant::default();
    tenant.clients.insert(CLIENT.to_owned(), azure_secret.clone());
    tenant.subscriptions.push((SUB_PROD.to_owned(), "Production".to_owned()));
    let azure = FakeAzure::start(HashMap::from([(TENANT.to_owned(), tenant)])).await;
    let moto = Moto::start().await;
    let aws = moto.create_user("canary", &["s3:ListAllMyBuckets"]).await;
    moto.create_bucket("canary-state").await;
    moto.enforce_auth().await;
    let oauth = FakeGoogleOAuth::start().await;
    let gcs = GcsEmulator::start().await;
    let gcp = service_account("canary-project", "canary", &oauth.token_uri);
    oauth.register(&gcp);
    let pem_body: String = gcp.private_key_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let canaries = Canaries(vec![
        ("AWS secret access key", aws.secret_access_key.clone()),
        ("Azure client secret", azure_secret.clone()),
        ("wrong Azure secret", wrong_secret.clone()),
        ("GCP private key", pem_body[100..160].to_owned()),
    ]);

    // The real binary, logging at debug level.
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = crate::support::fresh_database_url(dir.path()).await;
    let port = crate::support::ports::free_port();
    let env = |command: &mut Command| {
        command
            .env("FLEETPLANE_DATA_DIR", dir.path())
            .env("DATABASE_URL", &database_url)
            .env("FLEETPLANE_LISTEN", format!("127.0.0.1:{port}"))
            .env("FLEETPLANE_AWS_ENDPOINT_URL", &moto.url)
            .env("FLEETPLANE_AZURE_AUTHORITY_HOST", &azure.url)
            .env("FLEETPLANE_AZURE_ARM_ENDPOINT", &azure.url)
            .env("FLEETPLANE_EXTRA_CA_FILE", azure.ca_file.path())
            .env("FLEETPLANE_GCP_TOKEN_URI", &oauth.token_uri)
            .env("FLEETPLANE_GCP_STORAGE_ENDPOINT", &gcs.url)
            .env("RUST_LOG", "debug");
    };
    let mut create = crate::support::server::fleetplane(dir.path(), &database_url);
    env(&mut create);
    create.args(["admin", "create-user", "--email", "ada@example.com", "--username", "ada", "--password-stdin"]);
    assert!(crate::support::server::run_with_stdin(create, "a long admin password\n").status.success());
    let mut serve = Command::new(env!("CARGO_BIN_EXE_fleetplane"));
    env(&mut serve);
    let mut server = serve.arg("serve").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("serve");
    // Drain the logs while the server runs, so a full pipe never blocks it.
    let stderr = server.stderr.take().expect("stderr");
    let logs = std::thread::spawn(move || std::io::read_to_string(stderr).expect("read logs"));
    let mut banner = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(server.stdout.as_mut().expect("stdout")), &mut banner)
        .expect("banner");

    let base: url::Url = format!("http://127.0.0.1:{port}/").parse().expect("url");
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let http = reqwest::Client::builder().cookie_provider(jar.clone()).build().expect("client");
    let client = crate::support::Client::from_parts(http, jar, base);
    let mut responses = String::new();
    let mut keep = |resp: crate::support::Resp| {
        responses.push_str(&resp.text);
        responses.push_str(&format!("{:?}\n", resp.headers));
        resp
    };
    keep(client.sign_in("ada@example.com", "a long admin password").await.expect_status(StatusCode::OK));

    let gcp_body = json!({ "provider": "gcp", "name": "gcp", "environment": "dev", "credentials": { "service_account_json": gcp.json } });
    let mut ids = Vec::new();
    for body in [
        aws_body("aws", &aws.access_key_id, &aws.secret_access_key, None),
        azure_body("azure", &azure_secret, Some(SUB_PROD)),
        gcp_body,
    ] {
        let linked = keep(client.post(ORG, body).await.expect_status(StatusCode::CREATED));
        ids.push(linked.json()["id"].as_str().expect("id").to_owned());
    }
    // A failed link and a failed rotation, both with a secret in hand.
    keep(
        client
            .post(ORG, azure_body("wrong", &wrong_secret, None))
            .await
            .expect_status(StatusCode::UNPROCESSABLE_ENTITY),
    );
    let azure_account = format!("{ORG}/{}", ids[1]);
    keep(
        client
            .put(
                &format!("{azure_account}/credentials"),
                json!({ "credentials": { "tenant_id": TENANT, "client_id": CLIENT, "client_secret": wrong_secret } }),
            )
            .await
            .expect_status(StatusCode::UNPROCESSABLE_ENTITY),
    );
    keep(
        client
            .put(
                &format!("{azure_account}/credentials"),
                json!({ "credentials": { "tenant_id": TENANT, "client_id": CLIENT, "client_secret": azure_secret } }),
            )
            .await
            .expect_status(StatusCode::OK),
    );
    for id in &ids {
        let account = format!("{ORG}/{id}");
        keep(client.get(&account).await.expect_status(StatusCode::OK));
        keep(client.post_empty(&format!("{account}/verify")).await.expect_status(StatusCode::OK));
        keep(client.get(&format!("{account}/buckets")).await.expect_status(StatusCode::OK));
        keep(client.patch(&account, json!({ "environment": "sandbox" })).await.expect_status(StatusCode::OK));
    }
    keep(client.get(ORG).await.expect_status(StatusCode::OK));
    keep(client.get("/api/v1/orgs/ada/audit?limit=100").await.expect_status(StatusCode::OK));
    keep(client.get("/orgs/ada/cloud-accounts").await);
    keep(client.get("/api/openapi.json").await.expect_status(StatusCode::OK));
    keep(client.get("/metrics").await.expect_status(StatusCode::OK));
    // A failed verification of a stored account: the key is deleted at AWS.
    moto.delete_access_key("canary", &aws.access_key_id).await;
    let failed = keep(client.post_empty(&format!("{ORG}/{}/verify", ids[0])).await.expect_status(StatusCode::OK));
    assert_eq!(failed.json()["status"], "invalid");
    keep(client.delete(&format!("{ORG}/{}", ids[2])).await.expect_status(StatusCode::NO_CONTENT));

    let stopped = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().expect("kill");
    assert!(stopped.success());
    let output = server.wait_with_output().expect("server output");
    let logs = format!("{}{}", String::from_utf8_lossy(&output.stdout), logs.join().expect("log reader"));
    let dump = dump_database(&database_url, dir.path()).await;

    // The search must have something to search: names, ids and log lines are all there.
    assert!(responses.contains("azure") && responses.contains(&ids[0]), "responses were collected");
    assert!(logs.lines().count() > 20 && logs.contains("DEBUG"), "debug logs were collected");
    assert!(dump.contains("cloud_account.linked") || dump.contains("cloud_accounts"), "the dump has the tables");
    canaries.assert_absent("the API responses", &responses);
    canaries.assert_absent("the server's logs", &logs);
    canaries.assert_absent("the database", &dump);
}
