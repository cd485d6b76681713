//! Azure: an Entra ID token through `azure_identity`'s client-secret credential, then ARM.

use std::sync::Arc;

use azure_core::{
    cloud::{CloudConfiguration, CustomConfiguration},
    credentials::{Secret, TokenCredential},
    http::{ClientOptions, RetryOptions, Transport},
};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use serde::Deserialize;

use crate::{AzureCredentials, AzureSubscription, Bucket, CloudError, Clouds, Identity, http_failure};

const SUBSCRIPTIONS_API: &str = "2022-12-01";
const STORAGE_API: &str = "2023-05-01";

/// An ARM access token for the service principal.
async fn arm_token(clouds: &Clouds, azure: &AzureCredentials) -> Result<String, CloudError> {
    let scope = format!("{}/.default", clouds.endpoints().azure_arm_endpoint.trim_end_matches('/'));
    token_for(clouds, azure, &scope).await
}

/// A token for an AKS cluster's API server (Entra ID integration): one for the AKS server
/// application, by the service principal's client credentials.
pub async fn kube_token(clouds: &Clouds, azure: &AzureCredentials) -> Result<crate::kube::KubeToken, CloudError> {
    let scope = format!("{}/.default", crate::kube::AKS_SERVER_APPLICATION);
    let token = token_for(clouds, azure, &scope).await?;
    Ok(crate::kube::KubeToken { token, expires_in: std::time::Duration::from_secs(3600) })
}

/// A token for `scope`, by the service principal's client credentials.
async fn token_for(clouds: &Clouds, azure: &AzureCredentials, scope: &str) -> Result<String, CloudError> {
    let endpoints = clouds.endpoints();
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = endpoints.azure_authority_host.clone();
    let options = ClientSecretCredentialOptions {
        client_options: ClientOptions {
            // One shared HTTP client: it carries the timeouts and any extra trusted CA.
            transport: Some(Transport::new(Arc::new(clouds.http.clone()))),
            cloud: Some(Arc::new(CloudConfiguration::from(cloud))),
            // A wrong secret will not become right on a retry, and retries would hide an
            // unreachable authority behind a long wait.
            retry: RetryOptions::none(),
            ..ClientOptions::default()
        },
    };
    let credential = ClientSecretCredential::new(
        &azure.tenant_id,
        azure.client_id.clone(),
        Secret::new(azure.client_secret.clone()),
        Some(options),
    )
    .map_err(|e| CloudError::invalid("tenant_id", e.to_string()))?;
    let token = credential.get_token(&[scope], None).await.map_err(|e| {
        use azure_core::error::ErrorKind;
        match innermost(&e).kind() {
            ErrorKind::Io => CloudError::unreachable("Azure sign-in: could not reach the authority host."),
            ErrorKind::HttpResponse { status, .. } if u16::from(*status) >= 500 => {
                CloudError::unreachable(format!("Azure sign-in failed on Azure's side (HTTP {status})."))
            }
            _ => CloudError::rejected(format!("Azure refused the credentials: {}", entra_message(&e))),
        }
    })?;
    Ok(token.token.secret().to_owned())
}

/// The credential wraps the failure that caused it (a transport error, Entra ID's answer): that
/// one says whether Azure refused or could not be reached.
fn innermost(error: &azure_core::Error) -> &azure_core::Error {
    let mut current = error;
    while let Some(cause) = std::error::Error::source(current).and_then(|s| s.downcast_ref::<azure_core::Error>()) {
        current = cause;
    }
    current
}

/// The useful part of an Entra ID error: its `AADSTS…` description, without the SDK's
/// troubleshooting links.
fn entra_message(error: &azure_core::Error) -> String {
    let full = error.to_string();
    let text = full.split("\nTo troubleshoot").next().unwrap_or(&full);
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

#[derive(Deserialize)]
struct List<T> {
    value: Vec<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionJson {
    subscription_id: String,
    display_name: Option<String>,
    state: Option<String>,
}

#[derive(Deserialize)]
struct StorageAccountJson {
    name: String,
    location: Option<String>,
}

#[derive(Deserialize)]
struct ArmError {
    error: ArmErrorBody,
}

#[derive(Deserialize)]
struct ArmErrorBody {
    code: String,
    message: String,
}

async fn arm_get<T: serde::de::DeserializeOwned>(clouds: &Clouds, token: &str, path: &str) -> Result<T, CloudError> {
    let url = format!("{}{path}", clouds.endpoints().azure_arm_endpoint.trim_end_matches('/'));
    let response = clouds
        .http
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| http_failure("Azure Resource Manager", &e))?;
    let status = response.status();
    if status.is_server_error() {
        return Err(CloudError::unreachable(format!("Azure Resource Manager failed on Azure's side (HTTP {status}).")));
    }
    if !status.is_success() {
        let detail = match response.json::<ArmError>().await {
            Ok(body) => format!("{}: {}", body.error.code, body.error.message),
            Err(_) => format!("HTTP {status}"),
        };
        return Err(CloudError::rejected(format!("Azure Resource Manager refused the request ({detail}).")));
    }
    response
        .json()
        .await
        .map_err(|_| CloudError::unreachable("Azure Resource Manager answered with something that is not ARM JSON."))
}

async fn subscriptions(clouds: &Clouds, token: &str) -> Result<Vec<AzureSubscription>, CloudError> {
    let list: List<SubscriptionJson> =
        arm_get(clouds, token, &format!("/subscriptions?api-version={SUBSCRIPTIONS_API}")).await?;
    Ok(list
        .value
        .into_iter()
        .map(|s| AzureSubscription {
            name: s.display_name.unwrap_or_else(|| s.subscription_id.clone()),
            state: s.state.unwrap_or_default(),
            id: s.subscription_id,
        })
        .collect())
}

pub async fn verify(clouds: &Clouds, azure: &AzureCredentials) -> Result<Identity, CloudError> {
    let token = arm_token(clouds, azure).await?;
    let subscriptions = subscriptions(clouds, &token).await?;
    if let Some(wanted) = &azure.subscription_id
        && !subscriptions.iter().any(|s| s.id.eq_ignore_ascii_case(wanted))
    {
        return Err(CloudError::rejected(format!(
            "The service principal cannot see subscription {wanted}; it sees {}.",
            if subscriptions.is_empty() {
                "none".to_owned()
            } else {
                subscriptions.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(", ")
            }
        )));
    }
    Ok(Identity::Azure { tenant_id: azure.tenant_id.clone(), subscriptions })
}

/// Storage accounts in the configured subscription, or in every visible one.
pub async fn list_storage_accounts(clouds: &Clouds, azure: &AzureCredentials) -> Result<Vec<Bucket>, CloudError> {
    let token = arm_token(clouds, azure).await?;
    let scopes = match &azure.subscription_id {
        Some(id) => vec![id.clone()],
        None => subscriptions(clouds, &token).await?.into_iter().map(|s| s.id).collect(),
    };
    let mut accounts = Vec::new();
    for subscription in scopes {
        let path = format!(
            "/subscriptions/{subscription}/providers/Microsoft.Storage/storageAccounts?api-version={STORAGE_API}"
        );
        let list: List<StorageAccountJson> = arm_get(clouds, &token, &path).await?;
        accounts.extend(list.value.into_iter().map(|a| Bucket {
            name: a.name,
            location: a.location,
            scope: Some(subscription.clone()),
        }));
    }
    accounts.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(accounts)
}
