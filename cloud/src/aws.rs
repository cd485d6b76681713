//! AWS: STS for identity and role assumption, S3 for buckets.

use std::time::Duration;

pub(crate) use aws_sdk_sts::config::Credentials as StaticCredentials;
use aws_sdk_sts::{
    config::{BehaviorVersion, Region, retry::RetryConfig, timeout::TimeoutConfig},
    error::{ProvideErrorMetadata, SdkError},
};
use aws_smithy_runtime_api::http::Response as HttpResponse;

use crate::{AwsCredentials, Bucket, CloudError, Endpoints, Identity};

/// Role sessions opened only to verify or to list: as short as STS allows.
const SESSION_SECONDS: i32 = 900;
const SESSION_NAME: &str = "fleetplane-verify";

fn timeouts(endpoints: &Endpoints) -> TimeoutConfig {
    TimeoutConfig::builder().connect_timeout(Duration::from_secs(5)).operation_timeout(endpoints.timeout).build()
}

/// One retry: enough for a dropped connection, short of hiding an outage behind a long wait.
fn retries() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(2)
}

fn sts_client(endpoints: &Endpoints, credentials: StaticCredentials) -> aws_sdk_sts::Client {
    let mut builder = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(endpoints.aws_region.clone()))
        .credentials_provider(credentials)
        .timeout_config(timeouts(endpoints))
        .retry_config(retries());
    builder.set_endpoint_url(endpoints.aws_endpoint_url.clone());
    aws_sdk_sts::Client::from_conf(builder.build())
}

fn s3_client(endpoints: &Endpoints, credentials: StaticCredentials) -> aws_sdk_s3::Client {
    let mut builder = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(endpoints.aws_region.clone()))
        .credentials_provider(credentials)
        // Emulators and proxies serve buckets as paths, not as host names.
        .force_path_style(endpoints.aws_endpoint_url.is_some())
        .timeout_config(timeouts(endpoints))
        .retry_config(retries());
    builder.set_endpoint_url(endpoints.aws_endpoint_url.clone());
    aws_sdk_s3::Client::from_conf(builder.build())
}

fn static_credentials(access_key_id: &str, secret: &str, session_token: Option<String>) -> StaticCredentials {
    StaticCredentials::new(access_key_id, secret, session_token, None, "fleetplane")
}

/// The text of the first `<tag>` in an XML error body.
fn xml_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = xml[start..].find('<')? + start;
    Some(xml[start..end].trim()).filter(|text| !text.is_empty())
}

/// Sorts an SDK failure into "AWS said no" and "AWS could not be reached".
fn classify<E>(operation: &str, error: SdkError<E, HttpResponse>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &error {
        SdkError::ServiceError(service) => {
            let err = service.err();
            // Error bodies in a shape the SDK does not parse (some AWS-compatible endpoints wrap
            // `<Error>` in `<Errors>`) still carry a `<Code>` and a `<Message>`: read them.
            let body = service.raw().body().bytes().map(String::from_utf8_lossy).unwrap_or_default();
            let code = err.code().or_else(|| xml_text(&body, "Code")).unwrap_or("Unknown");
            let message = err.message().or_else(|| xml_text(&body, "Message")).unwrap_or("no message");
            if code.starts_with("Internal") || code == "ServiceUnavailable" || code == "Throttling" {
                CloudError::unreachable(format!("AWS {operation} failed on AWS's side ({code}): {message}"))
            } else {
                CloudError::rejected(format!("AWS refused {operation} ({code}): {message}"))
            }
        }
        SdkError::TimeoutError(_) => CloudError::unreachable(format!("AWS {operation} timed out.")),
        SdkError::DispatchFailure(failure) => {
            let why = if failure.is_timeout() { "timed out" } else { "could not connect" };
            CloudError::unreachable(format!("AWS {operation}: {why}."))
        }
        SdkError::ResponseError(_) => {
            CloudError::unreachable(format!("AWS {operation}: the endpoint's answer was not an AWS response."))
        }
        _ => CloudError::unreachable(format!("AWS {operation} could not be sent.")),
    }
}

/// The credentials to act with: the access key's own, or the assumed role's session.
async fn acting_credentials(
    endpoints: &Endpoints,
    aws: &AwsCredentials,
) -> Result<(StaticCredentials, Option<String>), CloudError> {
    assume(endpoints, aws, SESSION_NAME, SESSION_SECONDS).await
}

/// The access key's own credentials, or a session of the configured role.
async fn assume(
    endpoints: &Endpoints,
    aws: &AwsCredentials,
    session_name: &str,
    seconds: i32,
) -> Result<(StaticCredentials, Option<String>), CloudError> {
    let base = static_credentials(&aws.access_key_id, &aws.secret_access_key, None);
    let Some(role_arn) = &aws.role_arn else { return Ok((base, None)) };
    let assumed = sts_client(endpoints, base)
        .assume_role()
        .role_arn(role_arn)
        .role_session_name(session_name)
        .set_external_id(aws.external_id.clone())
        .duration_seconds(seconds)
        .send()
        .await
        .map_err(|e| classify("AssumeRole", e))?;
    let session =
        assumed.credentials().ok_or_else(|| CloudError::unreachable("AWS AssumeRole returned no credentials."))?;
    let arn = assumed.assumed_role_user().map(|user| user.arn().to_owned());
    Ok((
        static_credentials(
            session.access_key_id(),
            session.secret_access_key(),
            Some(session.session_token().to_owned()),
        ),
        arn,
    ))
}

pub async fn verify(endpoints: &Endpoints, aws: &AwsCredentials) -> Result<Identity, CloudError> {
    let own = sts_client(endpoints, static_credentials(&aws.access_key_id, &aws.secret_access_key, None))
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| classify("GetCallerIdentity", e))?;
    let account_id = own.account().unwrap_or_default().to_owned();
    let user_arn = own.arn().unwrap_or_default().to_owned();
    if aws.role_arn.is_none() {
        return Ok(Identity::Aws { account_id, arn: user_arn, source_arn: None });
    }
    let (session, assumed_arn) = acting_credentials(endpoints, aws).await?;
    let role = sts_client(endpoints, session)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| classify("GetCallerIdentity", e))?;
    Ok(Identity::Aws {
        account_id: role.account().map_or(account_id, str::to_owned),
        arn: role.arn().map(str::to_owned).or(assumed_arn).unwrap_or_default(),
        source_arn: Some(user_arn),
    })
}

/// Temporary credentials for a provisioning job, in the variables the AWS provider reads: a
/// session of the configured role, or else a session token for the access key.
pub async fn job_environment(
    endpoints: &Endpoints,
    aws: &AwsCredentials,
    session_name: &str,
) -> Result<Vec<(String, String)>, CloudError> {
    const JOB_SECONDS: i32 = 3600;
    let session = if aws.role_arn.is_some() {
        assume(endpoints, aws, session_name, JOB_SECONDS).await?.0
    } else {
        let output = sts_client(endpoints, static_credentials(&aws.access_key_id, &aws.secret_access_key, None))
            .get_session_token()
            .duration_seconds(JOB_SECONDS)
            .send()
            .await
            .map_err(|e| classify("GetSessionToken", e))?;
        let credentials = output
            .credentials()
            .ok_or_else(|| CloudError::unreachable("AWS GetSessionToken returned no credentials."))?;
        static_credentials(
            credentials.access_key_id(),
            credentials.secret_access_key(),
            Some(credentials.session_token().to_owned()),
        )
    };
    let mut env = vec![
        ("AWS_ACCESS_KEY_ID".to_owned(), session.access_key_id().to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), session.secret_access_key().to_owned()),
        ("AWS_REGION".to_owned(), endpoints.aws_region.clone()),
        ("AWS_DEFAULT_REGION".to_owned(), endpoints.aws_region.clone()),
    ];
    if let Some(token) = session.session_token() {
        env.push(("AWS_SESSION_TOKEN".to_owned(), token.to_owned()));
    }
    if let Some(url) = &endpoints.aws_endpoint_url {
        env.push(("AWS_ENDPOINT_URL".to_owned(), url.clone()));
    }
    Ok(env)
}

/// A token for the EKS cluster `cluster`, signed with the role's session (or the access key).
pub async fn kube_token(
    endpoints: &Endpoints,
    aws: &AwsCredentials,
    cluster: &str,
) -> Result<crate::kube::KubeToken, CloudError> {
    let (credentials, _) = assume(endpoints, aws, "fleetplane-deploy", SESSION_SECONDS).await?;
    crate::kube::eks_token(endpoints, credentials, cluster)
}

pub async fn list_buckets(endpoints: &Endpoints, aws: &AwsCredentials) -> Result<Vec<Bucket>, CloudError> {
    let (credentials, _) = acting_credentials(endpoints, aws).await?;
    let output =
        s3_client(endpoints, credentials).list_buckets().send().await.map_err(|e| classify("ListBuckets", e))?;
    let mut buckets: Vec<Bucket> = output
        .buckets()
        .iter()
        .filter_map(|bucket| {
            Some(Bucket {
                name: bucket.name()?.to_owned(),
                location: bucket.bucket_region().map(str::to_owned),
                scope: None,
            })
        })
        .collect();
    buckets.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(buckets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_code_and_message_from_error_xml() {
        let body = "<ErrorResponse><Errors><Error><Code>InvalidClientTokenId</Code>\
                    <Message>The security token included in the request is invalid.</Message></Error></Errors></ErrorResponse>";
        assert_eq!(xml_text(body, "Code"), Some("InvalidClientTokenId"));
        assert_eq!(xml_text(body, "Message"), Some("The security token included in the request is invalid."));
        assert_eq!(xml_text(body, "RequestId"), None);
        assert_eq!(xml_text("<Code></Code>", "Code"), None);
    }
}
