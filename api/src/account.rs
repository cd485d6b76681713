//! Sign-up, sign-in and the signed-in account: `/api/v1/auth` and `/api/v1/me`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::text;

/// `POST /api/v1/auth/signup`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct SignupRequest {
    #[schema(required = true, value_type = text::EmailAddress)]
    pub email: String,
    /// 3–30 of `a-z 0-9 _ -`, starting with a letter; lower-cased, unique regardless of case.
    #[schema(required = true, value_type = text::Handle)]
    pub username: String,
    /// 8–256 characters, not only spaces.
    #[schema(required = true, value_type = text::NewPassword)]
    pub password: String,
}

/// `POST /api/v1/auth/verify-email`: the token from the verification link, and the password
/// chosen at sign-up. Both are needed: the link proves the inbox, the password the person.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct VerifyEmailRequest {
    #[schema(required = true, min_length = 1, max_length = 256, pattern = r"^[^\u0000]*$")]
    pub token: String,
    #[schema(required = true, min_length = 1, max_length = 256, pattern = r"^[^\u0000]*$")]
    pub password: String,
}

/// `POST /api/v1/auth/password-reset`: where to send a reset link.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct PasswordResetRequest {
    #[schema(required = true, value_type = text::EmailAddress)]
    pub email: String,
}

/// `POST /api/v1/auth/password-reset/confirm`: the token from the reset link and the new password.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct PasswordResetConfirm {
    #[schema(required = true, min_length = 1, max_length = 256, pattern = r"^[^\u0000]*$")]
    pub token: String,
    /// 8–256 characters, not only spaces.
    #[schema(required = true, value_type = text::NewPassword)]
    pub new_password: String,
}

/// `POST /api/v1/auth/resend-verification`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ResendRequest {
    #[schema(required = true, value_type = text::EmailAddress)]
    pub email: String,
}

/// A sentence for people, when there is nothing else to return.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub message: String,
}

/// `POST /api/v1/auth/login`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct LoginRequest {
    #[schema(required = true, value_type = text::EmailAddress)]
    pub email: String,
    #[schema(required = true, min_length = 1, max_length = 256, pattern = r"^[^\u0000]*$")]
    pub password: String,
}

/// An account as its owner sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub username: String,
    pub email_verified: bool,
    /// `false` for accounts that only sign in with Google; they may set one without a current
    /// password.
    pub has_password: bool,
    pub created_at: DateTime<Utc>,
}

/// `PATCH /api/v1/me/username`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct UsernameRequest {
    /// 3–30 of `a-z 0-9 _ -`, starting with a letter; lower-cased, unique regardless of case.
    #[schema(required = true, value_type = text::Handle)]
    pub username: String,
}

/// `PUT /api/v1/me/password`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct PasswordRequest {
    /// Empty for an account that has no password yet (it signs in with Google).
    #[schema(max_length = 256, pattern = r"^[^\u0000]*$")]
    pub current_password: String,
    /// 8–256 characters, not only spaces, different from the current one.
    #[schema(required = true, value_type = text::NewPassword)]
    pub new_password: String,
}

/// `POST /api/v1/me/tokens`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct CreateTokenRequest {
    /// 1–100 characters, to tell tokens apart.
    #[schema(required = true, min_length = 1, max_length = 100, pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$")]
    pub name: String,
    /// Days until the token stops working; omit for no expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 3650)]
    #[serde(deserialize_with = "crate::whole::option")]
    pub expires_in_days: Option<u32>,
}

/// A personal API token, without its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Token {
    pub id: Uuid,
    pub name: String,
    /// The token's first characters, to tell tokens apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A token just created: the secret is in `token`, and is never shown again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// The token itself. Shown only in this response: store it now.
    pub token: String,
    #[serde(flatten)]
    pub info: Token,
}

/// A sign-in account at another provider (Google), linked to this account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LinkedIdentity {
    /// `google`.
    pub provider: String,
    /// The provider's email for the account, when it last signed in.
    pub email: String,
    pub linked_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A signed-in browser.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Session {
    pub id: Uuid,
    /// The browser's `User-Agent` when it signed in (shortened; empty when it sent none).
    pub user_agent: String,
    /// The address it signed in from.
    pub ip: String,
    pub created_at: DateTime<Utc>,
    /// When it was last used (to the minute).
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// This is the session making the request.
    pub current: bool,
}
