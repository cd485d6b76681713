//! The bearer tokens a deployment job's kubeconfig carries, minted for each managed
//! Kubernetes flavour against the clouds' stand-ins, up to the call a cluster's API server
//! would make with them (no Kubernetes API server can run here): EKS's presigned STS request is
//! signed with a role session moto issued; GKE's and AKS's tokens are checked as issued
//! by the token endpoints, for the right audience. (moto routes a presigned GET without an
//! `Authorization` header to S3, so EKS's token is not sent to it: its signature is checked
//! against AWS's documented algorithm in `fleetplane-cloud`'s own tests.)

use std::collections::HashMap;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use fleetplane_cloud::{AwsCredentials, AzureCredentials, Clouds, Credentials, Endpoints, GcpCredentials, kube};

use crate::support::clouds::{AzureTenant, FakeAzure, FakeGoogleOAuth, Moto, service_account};

#[tokio::test]
#[ignore = "needs moto: run `cargo xtask test`"]
async fn an_eks_token_is_presigned_with_a_role_session_never_the_linked_key() {
    let moto = Moto::start().await;
    let key = moto.create_user("deployer", &["sts:AssumeRole"]).await;
    let role = moto.create_role("fleet-deployer", &key.arn).await;
    moto.enforce_auth().await;
    let clouds =
        Clouds::new(Endpoints { aws_endpoint_url: Some(moto.url.clone()), ..Endpoints::default() }).expect("clouds");
    let credentials = |secret: &str| {
        Credentials::Aws(AwsCredentials {
            access_key_id: key.access_key_id.clone(),
            secret_access_key: secret.to_owned(),
            role_arn: Some(role.clone()),
            external_id: None,
        })
    };
    let token = clouds.kubernetes_token(&credentials(&key.secret_access_key), "fleet-prod").await.expect("a token");
    assert!(token.expires_in <= std::time::Duration::from_secs(900), "EKS tokens are short");
    let url = String::from_utf8(
        URL_SAFE_NO_PAD.decode(token.token.strip_prefix("k8s-aws-v1.").expect("EKS's prefix")).expect("base64url"),
    )
    .expect("UTF-8");
    let url = url::Url::parse(&url).expect("a URL");
    assert!(url.as_str().starts_with(&moto.url), "{url}");
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["Action"], "GetCallerIdentity");
    // Signed by the role's session from STS: its own key and session token, not the user's.
    assert!(!query["X-Amz-Credential"].starts_with(&key.access_key_id), "{query:?}");
    assert!(query.get("X-Amz-Security-Token").is_some_and(|t| !t.is_empty()), "{query:?}");
    assert!(!token.token.contains(&key.secret_access_key) && !url.as_str().contains(&key.secret_access_key));

    // A key STS refuses gets no token, and the error names no secret.
    let e = clouds.kubernetes_token(&credentials("not-the-secret"), "fleet-prod").await.expect_err("refused");
    assert!(!e.to_string().contains("not-the-secret"), "{e}");
}

#[tokio::test]
async fn a_gke_token_is_the_service_accounts_access_token() {
    let oauth = FakeGoogleOAuth::start().await;
    let account = service_account("fleet-project", "deployer", &oauth.token_uri);
    oauth.register(&account);
    let clouds =
        Clouds::new(Endpoints { gcp_token_uri: oauth.token_uri.clone(), ..Endpoints::default() }).expect("clouds");
    let credentials = Credentials::Gcp(GcpCredentials { service_account_json: account.json.clone() });
    let token = clouds.kubernetes_token(&credentials, "fleet-prod").await.expect("a GKE token");
    assert!(oauth.has_issued(&token.token), "issued by Google's token endpoint");
    assert!(!token.token.contains("PRIVATE KEY"));

    // A key Google does not know gets no token, and the error names no secret.
    let unknown = service_account("fleet-project", "stranger", &oauth.token_uri);
    let e = clouds
        .kubernetes_token(&Credentials::Gcp(GcpCredentials { service_account_json: unknown.json }), "fleet-prod")
        .await
        .expect_err("refused");
    assert!(!e.to_string().contains("PRIVATE KEY"), "{e}");
}

#[tokio::test]
async fn an_aks_token_is_an_entra_id_token_for_the_aks_server_application() {
    let tenant_id = "8f1c2a54-3b7e-4d2a-9c61-2f0e4b7d9a13";
    let tenant = AzureTenant {
        clients: HashMap::from([("deployer".to_owned(), "client-secret-value".to_owned())]),
        subscriptions: Vec::new(),
        storage_accounts: HashMap::new(),
    };
    let azure = FakeAzure::start(HashMap::from([(tenant_id.to_owned(), tenant)])).await;
    let clouds = Clouds::new(Endpoints {
        azure_authority_host: azure.url.clone(),
        azure_arm_endpoint: azure.url.clone(),
        extra_ca_pem: Some(std::fs::read(azure.ca_file.path()).expect("CA")),
        ..Endpoints::default()
    })
    .expect("clouds");
    let credentials = |secret: &str| {
        Credentials::Azure(AzureCredentials {
            tenant_id: tenant_id.into(),
            client_id: "deployer".into(),
            client_secret: secret.into(),
            subscription_id: None,
        })
    };
    let token = clouds.kubernetes_token(&credentials("client-secret-value"), "fleet-prod").await.expect("an AKS token");
    assert_eq!(azure.scope_of(&token.token).as_deref(), Some(&*format!("{}/.default", kube::AKS_SERVER_APPLICATION)));
    let e = clouds.kubernetes_token(&credentials("wrong-secret"), "fleet-prod").await.expect_err("refused");
    assert!(!e.to_string().contains("wrong-secret"), "{e}");
}
