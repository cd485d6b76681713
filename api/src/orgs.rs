//! Organizations, their members and their audit log: `/api/v1/orgs`.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::text;

/// A member's role in an organization. Ordered by power: `Viewer < Operator < Admin < Owner`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
    Owner,
}

impl Role {
    /// Every role, highest first, as a member can be given them.
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Operator, Role::Viewer];

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// Reads a role spelled as [`Role::as_str`] spells it.
    pub fn parse(value: &str) -> Option<Self> {
        Role::ALL.into_iter().find(|role| role.as_str() == value)
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::Viewer => "Viewer",
            Role::Operator => "Operator",
            Role::Admin => "Admin",
            Role::Owner => "Owner",
        }
    }

    /// Admins and owners manage members.
    pub fn manages_members(self) -> bool {
        self >= Role::Admin
    }

    /// Admins and owners connect, change and remove cloud accounts.
    pub fn manages_cloud_accounts(self) -> bool {
        self >= Role::Admin
    }

    /// Operators and above may use a cloud account: check it, list its storage.
    pub fn uses_cloud_accounts(self) -> bool {
        self >= Role::Operator
    }

    /// Admins and owners create, apply and delete clusters, approve and retry runs, and
    /// release a cluster's state lock.
    pub fn manages_clusters(self) -> bool {
        self >= Role::Admin
    }

    /// Operators and above run plans and cancel runs.
    pub fn operates_clusters(self) -> bool {
        self >= Role::Operator
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An organization, as one of its members sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Org {
    pub id: Uuid,
    /// The URL name, as in `/api/v1/orgs/{org}`.
    pub name: String,
    pub display_name: String,
    /// The caller's role here.
    pub role: Role,
    /// Created with an account at sign-up.
    pub personal: bool,
    pub created_at: DateTime<Utc>,
}

impl Org {
    /// The name to show: the display name, or the URL name when there is none.
    pub fn title(&self) -> &str {
        match self.display_name.trim() {
            "" => &self.name,
            name => name,
        }
    }
}

/// `POST /api/v1/orgs`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct CreateOrgRequest {
    /// The URL name: 3–30 of `a-z 0-9 _ -`, starting with a letter.
    #[schema(required = true, value_type = text::Handle)]
    pub name: String,
    /// Up to 100 characters; the URL name when omitted or blank.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 100, pattern = r"^[^\u0000]*$")]
    pub display_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Member {
    pub user_id: Uuid,
    pub username: String,
    pub email: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

/// `POST /api/v1/orgs/{org}/invitations`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InviteRequest {
    /// Where the invitation goes; it need not have an account yet.
    #[schema(value_type = text::EmailAddress)]
    pub email: String,
    /// The role the invitee gets on accepting.
    pub role: Role,
}

/// An open invitation, as the organization sees it: only what the inviter wrote. Whether the
/// address has an account, or has declined, is not shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Invitation {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    /// The inviter's username.
    pub invited_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// An invitation to the caller's address: `/api/v1/me/invitations`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReceivedInvitation {
    pub id: Uuid,
    /// The organization's URL name.
    pub org: String,
    pub org_display_name: String,
    pub role: Role,
    /// The inviter's username.
    pub invited_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// `PATCH /api/v1/orgs/{org}/members/{user_id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UpdateMemberRequest {
    pub role: Role,
}

/// Something that happened in an organization, and who did it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEvent {
    pub id: Uuid,
    /// What happened, like `cluster.created` or `member.added`.
    pub action: String,
    pub actor_id: Option<Uuid>,
    pub actor_name: Option<String>,
    pub target: Option<String>,
    pub ip: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

/// One page of the audit log, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEvent>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<Uuid>,
}

/// The most items one page of a list holds (`limit`), for every paged list.
pub const MAX_PAGE_SIZE: u64 = 100;
