//! Cloud accounts: credentials for AWS, Azure or GCP that an organization links to provision
//! into. They are validated, verified with the cloud, and only then stored, sealed under the
//! master keyring and bound to their row. Nothing secret ever leaves this module except to the
//! cloud it belongs to.

use std::net::IpAddr;

use axum::http::StatusCode;
use chrono::Utc;
use fleetplane_api as api;
use fleetplane_cloud::{CloudError, Credentials, Identity};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
    SqlErr,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    audit::Event,
    auth::{Admin, MinRole, OrgMember},
    crypto::{OpenError, Sealed},
    db::begin_write,
    domain::{Invalid, Role},
    entity::cloud_accounts,
    error::{AppError, FieldErrors, Result},
    state::AppState,
};

pub use fleetplane_api::{AccountStatus, Environment, Provider};

const NAME_MAX: usize = 64;

fn parse_name(name: &str) -> std::result::Result<String, Invalid> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Invalid::new("required", "Give the account a name."));
    }
    if name.chars().count() > NAME_MAX || name.chars().any(char::is_control) {
        return Err(Invalid::new("invalid", format!("Use up to {NAME_MAX} printable characters.")));
    }
    Ok(name.to_owned())
}

fn optional(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Reads the `credentials` object for `provider`, recording every problem under
/// `credentials.<field>`. Nothing is sent anywhere here.
fn parse_credentials(
    state: &AppState,
    provider: Provider,
    value: &Value,
    errors: &mut FieldErrors,
) -> Option<Credentials> {
    fn decode<T: serde::de::DeserializeOwned + Default>(value: &Value, errors: &mut FieldErrors) -> Option<T> {
        if !value.is_object() {
            errors.add("credentials", Invalid::new("required", "Provide the account's credentials."));
            return None;
        }
        match serde_json::from_value(value.clone()) {
            Ok(input) => Some(input),
            Err(e) => {
                // Every input field is a string, so serde can only complain about an unknown
                // field or a value of another type: it names them, and never echoes a string.
                errors.add("credentials", Invalid::new("invalid", e.to_string()));
                None
            }
        }
    }
    match provider {
        Provider::Aws => {
            let input: api::AwsCredentials = decode(value, errors)?;
            let key_id = input.access_key_id.trim().to_owned();
            let role_arn = optional(input.role_arn);
            let external_id = optional(input.external_id);
            let ok = [
                field(errors, "access_key_id", check_aws_key_id(&key_id)),
                field(errors, "secret_access_key", check_secret(&input.secret_access_key, "secret access key")),
                field(errors, "role_arn", role_arn.as_deref().map_or(Ok(()), check_role_arn)),
                field(errors, "external_id", external_id.as_deref().map_or(Ok(()), check_external_id)),
            ];
            ok.iter().all(|ok| *ok).then_some(Credentials::Aws(fleetplane_cloud::AwsCredentials {
                access_key_id: key_id,
                secret_access_key: input.secret_access_key,
                role_arn,
                external_id,
            }))
        }
        Provider::Azure => {
            let input: api::AzureCredentials = decode(value, errors)?;
            let subscription_id = optional(input.subscription_id);
            let ok = [
                field(errors, "tenant_id", check_uuid(&input.tenant_id, "tenant (directory) id")),
                field(errors, "client_id", check_uuid(&input.client_id, "client (application) id")),
                field(errors, "client_secret", check_secret(&input.client_secret, "client secret")),
                field(
                    errors,
                    "subscription_id",
                    subscription_id.as_deref().map_or(Ok(()), |s| check_uuid(s, "subscription id")),
                ),
            ];
            ok.iter().all(|ok| *ok).then(|| {
                Credentials::Azure(fleetplane_cloud::AzureCredentials {
                    tenant_id: input.tenant_id.trim().to_lowercase(),
                    client_id: input.client_id.trim().to_lowercase(),
                    client_secret: input.client_secret,
                    subscription_id: subscription_id.map(|s| s.to_lowercase()),
                })
            })
        }
        Provider::Gcp => {
            let input: api::GcpCredentials = decode(value, errors)?;
            if input.service_account_json.trim().is_empty() {
                field(
                    errors,
                    "service_account_json",
                    Err(Invalid::new("required", "Upload the service account's JSON key.")),
                );
                return None;
            }
            match fleetplane_cloud::ServiceAccountKey::parse(
                &input.service_account_json,
                &state.config.cloud.gcp_token_uri,
            ) {
                Ok(_) => Some(Credentials::Gcp(fleetplane_cloud::GcpCredentials {
                    service_account_json: input.service_account_json,
                })),
                Err(error) => {
                    let message = match error {
                        CloudError::Invalid { message, .. } => message,
                        other => other.to_string(),
                    };
                    field(errors, "service_account_json", Err(Invalid { code: "invalid", message }));
                    None
                }
            }
        }
    }
}

/// Records `result` under `credentials.<name>`; whether it was valid.
fn field(errors: &mut FieldErrors, name: &str, result: std::result::Result<(), Invalid>) -> bool {
    result.map_err(|invalid| errors.add(&format!("credentials.{name}"), invalid)).is_ok()
}

fn check_aws_key_id(id: &str) -> std::result::Result<(), Invalid> {
    if id.is_empty() {
        return Err(Invalid::new("required", "Enter the access key id."));
    }
    if !(16..=128).contains(&id.len()) || !id.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
        return Err(Invalid::new(
            "invalid",
            "An access key id is 16 to 128 capital letters and digits, like AKIAIOSFODNN7EXAMPLE.",
        ));
    }
    Ok(())
}

fn check_secret(secret: &str, what: &str) -> std::result::Result<(), Invalid> {
    if secret.is_empty() {
        return Err(Invalid::new("required", format!("Enter the {what}.")));
    }
    if secret.len() > 1024 || secret.chars().any(char::is_whitespace) {
        return Err(Invalid::new(
            "invalid",
            format!("This does not look like a {what}: no spaces, at most 1024 characters."),
        ));
    }
    Ok(())
}

fn check_role_arn(arn: &str) -> std::result::Result<(), Invalid> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && parts[5].strip_prefix("role/").is_some_and(|name| !name.is_empty());
    if ok {
        Ok(())
    } else {
        Err(Invalid::new("invalid", "A role ARN looks like arn:aws:iam::123456789012:role/deployer."))
    }
}

fn check_external_id(id: &str) -> std::result::Result<(), Invalid> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "+=,.@:/-_".contains(c);
    if (2..=1224).contains(&id.len()) && id.chars().all(allowed) {
        Ok(())
    } else {
        Err(Invalid::new("invalid", "An external id is 2 to 1224 letters, digits and +=,.@:/-_ characters."))
    }
}

fn check_uuid(value: &str, what: &str) -> std::result::Result<(), Invalid> {
    match Uuid::parse_str(value.trim()) {
        Ok(_) => Ok(()),
        Err(_) if value.trim().is_empty() => Err(Invalid::new("required", format!("Enter the {what}."))),
        Err(_) => {
            Err(Invalid::new("invalid", format!("The {what} is a UUID, like 6d5a2f7e-0a8e-4b3c-9f1d-2c4b6a8e0f13.")))
        }
    }
}

/// The masked hint and the non-secret settings shown for `credentials`.
fn describe(credentials: &Credentials) -> (String, Value) {
    fn last4(text: &str) -> String {
        let chars: Vec<char> = text.chars().collect();
        format!("…{}", chars[chars.len().saturating_sub(4)..].iter().collect::<String>())
    }
    match credentials {
        Credentials::Aws(aws) => (format!("key {}", last4(&aws.access_key_id)), json!({ "role_arn": aws.role_arn })),
        Credentials::Azure(azure) => (
            format!("client {}", last4(&azure.client_id)),
            json!({ "tenant_id": azure.tenant_id, "client_id": azure.client_id, "subscription_id": azure.subscription_id }),
        ),
        Credentials::Gcp(gcp) => {
            let key: Value = serde_json::from_str(&gcp.service_account_json).unwrap_or_default();
            let text = |name: &str| key.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
            (
                format!("key {}", last4(&text("private_key_id"))),
                json!({ "project_id": text("project_id"), "client_email": text("client_email"), "private_key_id": text("private_key_id") }),
            )
        }
    }
}

/// A client-facing error for what the cloud said.
fn cloud_error(error: CloudError) -> AppError {
    match error {
        CloudError::Invalid { field, message } => {
            AppError::invalid_field(&format!("credentials.{field}"), "invalid", message)
        }
        CloudError::Rejected { message } => {
            AppError::client(StatusCode::UNPROCESSABLE_ENTITY, "cloud_credentials_rejected", message)
        }
        CloudError::Unreachable { message } => AppError::client(StatusCode::BAD_GATEWAY, "cloud_unreachable", message),
    }
}

/// A short, secret-free summary of an identity for the audit log.
fn identity_summary(identity: &Identity) -> String {
    match identity {
        Identity::Aws { arn, .. } => arn.clone(),
        Identity::Azure { tenant_id, subscriptions } => {
            format!("tenant {tenant_id}, {} subscription(s)", subscriptions.len())
        }
        Identity::Gcp { client_email, .. } => client_email.clone(),
    }
}

fn not_found() -> AppError {
    AppError::not_found("cloud_account_not_found", "No such cloud account in this organization.")
}

fn name_taken() -> AppError {
    let message = "This organization already has a cloud account with this name.";
    AppError::conflict("cloud_account_name_taken", message).on_field("name", message)
}

async fn name_is_taken(
    conn: &impl ConnectionTrait,
    org_id: Uuid,
    name: &str,
    except: Option<Uuid>,
) -> Result<bool, DbErr> {
    let mut query = cloud_accounts::Entity::find()
        .filter(cloud_accounts::Column::OrgId.eq(org_id))
        .filter(cloud_accounts::Column::NameKey.eq(name.to_lowercase()));
    if let Some(id) = except {
        query = query.filter(cloud_accounts::Column::Id.ne(id));
    }
    Ok(query.one(conn).await?.is_some())
}

/// Links an account: validates, verifies with the cloud, and only then stores it, sealed.
pub async fn link(
    state: &AppState,
    actor: &OrgMember<Admin>,
    request: api::LinkRequest,
    ip: IpAddr,
) -> Result<cloud_accounts::Model> {
    let mut errors = FieldErrors::new();
    let name = errors.check("name", parse_name(&request.name));
    let credentials = parse_credentials(state, request.provider, &request.credentials, &mut errors);
    errors.finish()?;
    let (Some(name), Some(credentials)) = (name, credentials) else {
        return Err(AppError::Internal(anyhow::anyhow!("validated cloud account input missing")));
    };
    if name_is_taken(&state.db, actor.org.id, &name, None).await? {
        return Err(name_taken());
    }

    let identity = match state.clouds.verify(&credentials).await {
        Ok(identity) => identity,
        Err(error) => {
            Event::new("cloud_account.link_failed", Some(ip))
                .actor(&actor.user.user)
                .org(actor.org.id)
                .target(name.clone())
                .details(json!({ "provider": request.provider, "reason": error.to_string() }))
                .record(&state.db)
                .await?;
            return Err(cloud_error(error));
        }
    };

    let id = Uuid::now_v7();
    let sealed = seal(state, id, &credentials)?;
    let (hint, settings) = describe(&credentials);
    let now = Utc::now();
    let txn = begin_write(&state.db).await?;
    let account = cloud_accounts::ActiveModel {
        id: Set(id),
        org_id: Set(actor.org.id),
        provider: Set(request.provider.as_str().to_owned()),
        name_key: Set(name.to_lowercase()),
        name: Set(name),
        environment: Set(request.environment.as_str().to_owned()),
        status: Set(AccountStatus::Verified.as_str().to_owned()),
        status_reason: Set(None),
        identity: Set(Some(serde_json::to_value(&identity).map_err(anyhow::Error::from)?)),
        settings: Set(settings),
        secret_hint: Set(hint),
        secret_key_id: Set(sealed.key_id),
        secret_ciphertext: Set(sealed.bytes),
        verified_at: Set(Some(now)),
        checked_at: Set(now),
        created_by: Set(Some(actor.user.id())),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await
    .map_err(|e| {
        if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) { name_taken() } else { e.into() }
    })?;
    Event::new("cloud_account.linked", Some(ip))
        .actor(&actor.user.user)
        .org(actor.org.id)
        .target(account.name.clone())
        .details(json!({ "provider": request.provider, "environment": request.environment, "identity": identity_summary(&identity) }))
        .record(&txn)
        .await?;
    txn.commit().await?;
    Ok(account)
}

fn seal(state: &AppState, id: Uuid, credentials: &Credentials) -> Result<Sealed> {
    let plaintext = serde_json::to_vec(credentials).map_err(anyhow::Error::from)?;
    Ok(state.keyring.seal(&plaintext, id.as_bytes())?)
}

/// The account's credentials, opened from their sealed form.
pub fn credentials(state: &AppState, account: &cloud_accounts::Model) -> Result<Credentials> {
    let sealed = Sealed { key_id: account.secret_key_id.clone(), bytes: account.secret_ciphertext.clone() };
    let plaintext = state.keyring.open(&sealed, account.id.as_bytes()).map_err(|e| {
        tracing::error!(account = %account.id, error = %e, "cannot open stored cloud credentials");
        AppError::client(
            StatusCode::INTERNAL_SERVER_ERROR,
            "secret_unavailable",
            match e {
                OpenError::UnknownKey(id) => format!(
                    "The stored credentials were sealed with master key {id}, which this server does not have. \
                     Configure it in FLEETPLANE_MASTER_KEY, or rotate the credentials."
                ),
                OpenError::Corrupt(_) => "The stored credentials do not decrypt: rotate them.".to_owned(),
            },
        )
    })?;
    serde_json::from_slice(&plaintext)
        .map_err(|_| AppError::Internal(anyhow::anyhow!("sealed credentials are not JSON")))
}

/// The organization's accounts, newest first.
pub async fn list<R: MinRole>(state: &AppState, member: &OrgMember<R>) -> Result<Vec<cloud_accounts::Model>> {
    Ok(cloud_accounts::Entity::find()
        .filter(cloud_accounts::Column::OrgId.eq(member.org.id))
        .order_by_desc(cloud_accounts::Column::Id)
        .all(&state.db)
        .await?)
}

/// One account of the member's organization; another organization's is "not found".
pub async fn get<R: MinRole>(state: &AppState, member: &OrgMember<R>, id: Uuid) -> Result<cloud_accounts::Model> {
    cloud_accounts::Entity::find_by_id(id)
        .filter(cloud_accounts::Column::OrgId.eq(member.org.id))
        .one(&state.db)
        .await?
        .ok_or_else(not_found)
}

/// Renames an account or changes its environment.
pub async fn update(
    state: &AppState,
    actor: &OrgMember<Admin>,
    id: Uuid,
    request: api::UpdateAccountRequest,
    ip: IpAddr,
) -> Result<cloud_accounts::Model> {
    let mut errors = FieldErrors::new();
    let name = request.name.as_deref().and_then(|n| errors.check("name", parse_name(n)));
    errors.finish()?;
    let account = get(state, actor, id).await?;
    if let Some(name) = &name
        && name_is_taken(&state.db, actor.org.id, name, Some(id)).await?
    {
        return Err(name_taken());
    }
    let txn = begin_write(&state.db).await?;
    let before = account.clone();
    let mut active = account.into_active_model();
    if let Some(name) = &name {
        active.name = Set(name.clone());
        active.name_key = Set(name.to_lowercase());
    }
    if let Some(environment) = request.environment {
        active.environment = Set(environment.as_str().to_owned());
    }
    active.updated_at = Set(Utc::now());
    let updated = active.update(&txn).await?;
    if updated.name != before.name {
        Event::new("cloud_account.renamed", Some(ip))
            .actor(&actor.user.user)
            .org(actor.org.id)
            .target(updated.name.clone())
            .details(json!({ "from": before.name, "to": updated.name }))
            .record(&txn)
            .await?;
    }
    if updated.environment != before.environment {
        Event::new("cloud_account.environment_changed", Some(ip))
            .actor(&actor.user.user)
            .org(actor.org.id)
            .target(updated.name.clone())
            .details(json!({ "from": before.environment, "to": updated.environment }))
            .record(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(updated)
}

/// Replaces an account's credentials with new ones, verified first; on failure nothing changes.
pub async fn rotate(
    state: &AppState,
    actor: &OrgMember<Admin>,
    id: Uuid,
    credentials: &Value,
    ip: IpAddr,
) -> Result<cloud_accounts::Model> {
    let account = get(state, actor, id).await?;
    let provider = Provider::parse(&account.provider)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("unknown provider {:?}", account.provider)))?;
    let mut errors = FieldErrors::new();
    let credentials = parse_credentials(state, provider, credentials, &mut errors);
    errors.finish()?;
    let Some(credentials) = credentials else {
        return Err(AppError::Internal(anyhow::anyhow!("validated credentials missing")));
    };
    let identity = state.clouds.verify(&credentials).await.map_err(cloud_error)?;
    let sealed = seal(state, account.id, &credentials)?;
    let (hint, settings) = describe(&credentials);
    let now = Utc::now();
    let txn = begin_write(&state.db).await?;
    let name = account.name.clone();
    let mut active = account.into_active_model();
    active.secret_key_id = Set(sealed.key_id);
    active.secret_ciphertext = Set(sealed.bytes);
    active.secret_hint = Set(hint);
    active.settings = Set(settings);
    active.identity = Set(Some(serde_json::to_value(&identity).map_err(anyhow::Error::from)?));
    active.status = Set(AccountStatus::Verified.as_str().to_owned());
    active.status_reason = Set(None);
    active.verified_at = Set(Some(now));
    active.checked_at = Set(now);
    active.updated_at = Set(now);
    let updated = active.update(&txn).await?;
    Event::new("cloud_account.rotated", Some(ip))
        .actor(&actor.user.user)
        .org(actor.org.id)
        .target(name)
        .details(json!({ "identity": identity_summary(&identity) }))
        .record(&txn)
        .await?;
    txn.commit().await?;
    Ok(updated)
}

/// Checks the stored credentials with the cloud now and records the outcome. A refusal marks
/// the account invalid (with the cloud's reason) and is answered like a success; an unreachable
/// cloud is recorded and answered with 502 `cloud_unreachable`.
pub async fn verify<R: MinRole>(
    state: &AppState,
    member: &OrgMember<R>,
    id: Uuid,
    ip: IpAddr,
) -> Result<cloud_accounts::Model> {
    let account = get(state, member, id).await?;
    let credentials = credentials(state, &account)?;
    let outcome = state.clouds.verify(&credentials).await;
    let now = Utc::now();
    let name = account.name.clone();
    let mut active = account.into_active_model();
    active.checked_at = Set(now);
    let (event, details, failure) = match &outcome {
        Ok(identity) => {
            active.status = Set(AccountStatus::Verified.as_str().to_owned());
            active.status_reason = Set(None);
            active.identity = Set(Some(serde_json::to_value(identity).map_err(anyhow::Error::from)?));
            active.verified_at = Set(Some(now));
            ("cloud_account.verified", json!({ "identity": identity_summary(identity) }), None)
        }
        Err(error) => {
            let unreachable = matches!(error, CloudError::Unreachable { .. });
            active.status =
                Set(if unreachable { AccountStatus::Unreachable } else { AccountStatus::Invalid }.as_str().to_owned());
            active.status_reason = Set(Some(error.to_string()));
            let failure = unreachable.then(|| cloud_error(error.clone()));
            ("cloud_account.verification_failed", json!({ "reason": error.to_string() }), failure)
        }
    };
    let txn = begin_write(&state.db).await?;
    let updated = active.update(&txn).await?;
    Event::new(event, Some(ip))
        .actor(&member.user.user)
        .org(member.org.id)
        .target(name.clone())
        .details(details)
        .record(&txn)
        .await?;
    if let Err(error) = &outcome {
        // The people who can fix it: the organization's admins and owners.
        for user_id in crate::events::members_with_role(&txn, member.org.id, Role::Admin).await? {
            let notification = crate::notifications::NewNotification {
                user_id,
                org_id: Some(member.org.id),
                kind: "cloud_account_failed",
                title: format!("Cloud account {name} failed verification"),
                body: error.to_string(),
                link: Some(format!("/orgs/{}/cloud-accounts", member.org.name)),
            };
            crate::notifications::create(&txn, notification).await?;
        }
    }
    txn.commit().await?;
    if outcome.is_err() {
        state.events_written();
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(updated),
    }
}

/// Deletes an account. Refused with 409 while a cluster that is not destroyed uses it;
/// destroyed clusters are kept, without their account. The foreign key from clusters restricts
/// the delete too, so a cluster created meanwhile gets the same refusal.
pub async fn delete(state: &AppState, actor: &OrgMember<Admin>, id: Uuid, ip: IpAddr) -> Result<()> {
    use sea_orm::{PaginatorTrait, sea_query::Expr};

    use crate::entity::clusters;

    let account = get(state, actor, id).await?;
    let in_use = || {
        AppError::conflict(
            "cloud_account_in_use",
            "Clusters still use this cloud account: delete them (and let their destroy finish) first.",
        )
    };
    let txn = begin_write(&state.db).await?;
    let live = clusters::Entity::find()
        .filter(clusters::Column::CloudAccountId.eq(account.id))
        .filter(clusters::Column::Status.ne("destroyed"))
        .count(&txn)
        .await?;
    if live > 0 {
        return Err(in_use());
    }
    clusters::Entity::update_many()
        .col_expr(clusters::Column::CloudAccountId, Expr::value(None::<Uuid>))
        .filter(clusters::Column::CloudAccountId.eq(account.id))
        .exec(&txn)
        .await?;
    cloud_accounts::Entity::delete_by_id(account.id).exec(&txn).await.map_err(|e| match e.sql_err() {
        Some(SqlErr::ForeignKeyConstraintViolation(_)) => in_use(),
        _ => e.into(),
    })?;
    Event::new("cloud_account.deleted", Some(ip))
        .actor(&actor.user.user)
        .org(actor.org.id)
        .target(account.name.clone())
        .details(json!({ "provider": account.provider }))
        .record(&txn)
        .await?;
    txn.commit().await?;
    Ok(())
}

/// The account's storage, to pick a Terraform state bucket.
pub async fn buckets<R: MinRole>(
    state: &AppState,
    member: &OrgMember<R>,
    id: Uuid,
) -> Result<Vec<fleetplane_cloud::Bucket>> {
    let account = get(state, member, id).await?;
    let credentials = credentials(state, &account)?;
    state.clouds.list_buckets(&credentials).await.map_err(cloud_error)
}

/// Counts from [`reseal_all`].
#[derive(Debug, Default)]
pub struct Resealed {
    pub resealed: usize,
    pub already_current: usize,
}

/// Re-seals every stored credential under the primary master key (`fleetplane admin
/// rotate-key`). Each row is updated only if it still carries the key it was read with, so a
/// concurrent rotation of the same credentials is not overwritten.
pub async fn reseal_all(state: &AppState) -> anyhow::Result<Resealed> {
    let primary = state.keyring.primary_id().to_owned();
    let mut report = Resealed::default();
    let mut failures = Vec::new();
    for account in cloud_accounts::Entity::find().all(&state.db).await? {
        if account.secret_key_id == primary {
            report.already_current += 1;
            continue;
        }
        let credentials = match credentials(state, &account) {
            Ok(credentials) => credentials,
            Err(_) => {
                failures.push(format!("{} ({}, key {})", account.id, account.name, account.secret_key_id));
                continue;
            }
        };
        let sealed = seal(state, account.id, &credentials)?;
        let result = cloud_accounts::Entity::update_many()
            .col_expr(cloud_accounts::Column::SecretKeyId, sea_orm::sea_query::Expr::value(sealed.key_id))
            .col_expr(cloud_accounts::Column::SecretCiphertext, sea_orm::sea_query::Expr::value(sealed.bytes))
            .filter(cloud_accounts::Column::Id.eq(account.id))
            .filter(cloud_accounts::Column::SecretKeyId.eq(&account.secret_key_id))
            .exec(&state.db)
            .await?;
        report.resealed += usize::try_from(result.rows_affected).unwrap_or(0);
    }
    if !failures.is_empty() {
        anyhow::bail!(
            "re-sealed {} secrets, but these cannot be opened with the configured keys: {}",
            report.resealed,
            failures.join(", ")
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_fields_are_checked() {
        assert!(check_aws_key_id("AKIAIOSFODNN7EXAMPLE").is_ok());
        assert_eq!(check_aws_key_id("").unwrap_err().code, "required");
        assert_eq!(check_aws_key_id("akia-lower").unwrap_err().code, "invalid");
        assert!(check_role_arn("arn:aws:iam::123456789012:role/deployer").is_ok());
        assert!(check_role_arn("arn:aws-us-gov:iam::123456789012:role/path/deployer").is_ok());
        for bad in ["deployer", "arn:aws:iam::12345:role/x", "arn:aws:s3:::bucket", "arn:aws:iam::123456789012:user/x"]
        {
            assert!(check_role_arn(bad).is_err(), "{bad}");
        }
        assert!(check_uuid("6d5a2f7e-0a8e-4b3c-9f1d-2c4b6a8e0f13", "x").is_ok());
        assert_eq!(check_uuid("contoso.onmicrosoft.com", "x").unwrap_err().code, "invalid");
        assert!(check_external_id("a").is_err() && check_external_id("ok-id_1").is_ok());
        assert!(check_secret("has space", "s").is_err());
    }

    #[test]
    fn hints_show_only_the_end_of_an_identifier() {
        let aws = Credentials::Aws(fleetplane_cloud::AwsCredentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "secret".into(),
            role_arn: None,
            external_id: None,
        });
        let (hint, settings) = describe(&aws);
        assert_eq!(hint, "key …MPLE");
        assert!(!settings.to_string().contains("secret"));
    }
}
