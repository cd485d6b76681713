//! One module per area of the UI; each page is a component the router mounts.

pub(crate) mod audit;
mod cloud_accounts;
mod cluster;
mod cluster_form;
mod clusters;
mod home;
mod invitations;
mod login;
mod not_found;
mod org;
mod orgs;
mod outbox;
mod password_reset;
mod run;
mod settings;
mod signup;
mod verify;

pub use audit::AuditPage;
pub use cloud_accounts::CloudAccountsPage;
pub use cluster::ClusterPage;
pub use clusters::ClustersPage;
pub use home::HomePage;
pub use invitations::InvitationsPage;
pub use login::{LoginPage, LogoutPage};
pub use not_found::NotFound;
pub use org::OrgPage;
pub use orgs::OrgsPage;
pub use outbox::OutboxPage;
pub use password_reset::{ForgotPasswordPage, ResetPasswordPage};
pub use run::RunPage;
pub use settings::SettingsPage;
pub use signup::{CheckEmailPage, SignupPage};
pub use verify::VerifyEmailPage;
