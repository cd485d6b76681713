//! Building blocks shared by the pages.

mod alert;
mod confirm;
mod data;
mod form;
mod google;
mod guard;
mod layout;
mod notifications;

pub use alert::{Alert, AlertKind};
pub use confirm::ConfirmButton;
pub use data::{
    ClusterStatusBadge, CopyButton, EmptyState, LoadError, Loading, ProviderBadge, RoleBadge, RunStatusBadge, Time,
};
pub use form::{
    ActionButton, FileField, FormBanner, FormState, Hydrated, SelectField, SelectOption, SubmitButton, TextField,
    TextListField, list_of,
};
pub use google::{GoogleButton, GoogleError, OrDivider};
pub use guard::{RequireGuest, RequireViewer};
pub use layout::{AuthCard, Card, PageHeader, TopBar, sign_out};
pub use notifications::{NotificationBell, Toast};
