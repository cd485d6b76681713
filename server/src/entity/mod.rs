//! sea-orm entities, one module per table of `migrations/`.

pub mod api_tokens;
pub mod audit_events;
pub mod cloud_accounts;
pub mod clusters;
pub mod deployment_revisions;
pub mod deployments;
pub mod email_verification_tokens;
pub mod events;
pub mod invitations;
pub mod memberships;
pub mod notifications;
pub mod organizations;
pub mod outbound_emails;
pub mod password_reset_tokens;
pub mod run_logs;
pub mod runs;
pub mod sessions;
pub mod state_locks;
pub mod state_versions;
pub mod user_identities;
pub mod users;
pub mod workers;
