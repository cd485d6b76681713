//! Building blocks shared by the pages.

mod alert;
mod confirm;
mod data;
mod form;
mod guard;
mod layout;

pub use alert::{Alert, AlertKind};
pub use confirm::ConfirmButton;
pub use data::{EmptyState, LoadError, Loading, RoleBadge, Time};
pub use form::{FileField, FormBanner, FormState, Hydrated, SelectField, SubmitButton, TextField};
pub use guard::{RequireGuest, RequireViewer};
pub use layout::{AuthCard, Card, PageHeader, TopBar, sign_out};
