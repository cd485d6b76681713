//! Terraform runs, their logs and the state they write: `/api/v1/runs`,
//! `/api/v1/orgs/{org}/clusters/{id}/runs` and `…/state`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// What a run does to its cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunAction {
    /// Create or update the cluster: plan, then apply.
    Apply,
    /// Tear the cluster down: plan a destroy, then apply it.
    Destroy,
    /// Plan only, to see what an apply would change.
    Plan,
    /// Install a deployment's first revision.
    Deploy,
    /// Install a deployment's new revision (new values or version).
    Upgrade,
    /// Install a new revision copied from an earlier one.
    Rollback,
    /// Remove a deployment.
    Uninstall,
}

impl RunAction {
    pub const ALL: [RunAction; 7] = [
        RunAction::Apply,
        RunAction::Destroy,
        RunAction::Plan,
        RunAction::Deploy,
        RunAction::Upgrade,
        RunAction::Rollback,
        RunAction::Uninstall,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            RunAction::Apply => "apply",
            RunAction::Destroy => "destroy",
            RunAction::Plan => "plan",
            RunAction::Deploy => "deploy",
            RunAction::Upgrade => "upgrade",
            RunAction::Rollback => "rollback",
            RunAction::Uninstall => "uninstall",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        RunAction::ALL.into_iter().find(|action| action.as_str() == value)
    }

    pub fn label(self) -> &'static str {
        match self {
            RunAction::Apply => "Apply",
            RunAction::Destroy => "Destroy",
            RunAction::Plan => "Plan",
            RunAction::Deploy => "Deploy",
            RunAction::Upgrade => "Upgrade",
            RunAction::Rollback => "Rollback",
            RunAction::Uninstall => "Uninstall",
        }
    }

    /// An action on a deployment rather than on the cluster's infrastructure.
    pub fn is_deployment(self) -> bool {
        matches!(self, RunAction::Deploy | RunAction::Upgrade | RunAction::Rollback | RunAction::Uninstall)
    }
}

/// `queued → running → (awaiting_approval →) applying → succeeded | failed | canceled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    AwaitingApproval,
    Applying,
    Succeeded,
    Failed,
    Canceled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::AwaitingApproval,
        RunStatus::Applying,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Canceled,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::AwaitingApproval => "awaiting_approval",
            RunStatus::Applying => "applying",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Canceled => "canceled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        RunStatus::ALL.into_iter().find(|status| status.as_str() == value)
    }

    pub fn label(self) -> &'static str {
        match self {
            RunStatus::Queued => "Queued",
            RunStatus::Running => "Running",
            RunStatus::AwaitingApproval => "Awaiting approval",
            RunStatus::Applying => "Applying",
            RunStatus::Succeeded => "Succeeded",
            RunStatus::Failed => "Failed",
            RunStatus::Canceled => "Canceled",
        }
    }

    /// The run is over and will not change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed | RunStatus::Canceled)
    }
}

/// Knobs of the simulated `local` target, per run (a retry runs without them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Simulate {
    /// `plan` or `apply`: the step that fails, to see how failures look.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(plan|apply)$")]
    pub fail_at: Option<String>,
    /// Seconds each simulated step takes (default 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 600)]
    #[serde(deserialize_with = "crate::whole::option")]
    pub step_seconds: Option<u32>,
}

/// What `POST …/clusters/{id}/runs` may queue. A destroy is `DELETE …/clusters/{id}`, which
/// also marks the cluster as going away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase", try_from = "RunAction")]
pub enum RequestedAction {
    Plan,
    Apply,
}

impl TryFrom<RunAction> for RequestedAction {
    type Error = &'static str;

    fn try_from(action: RunAction) -> Result<Self, Self::Error> {
        match action {
            RunAction::Plan => Ok(RequestedAction::Plan),
            RunAction::Apply => Ok(RequestedAction::Apply),
            RunAction::Destroy => Err("Delete the cluster to destroy it."),
            RunAction::Deploy | RunAction::Upgrade | RunAction::Rollback | RunAction::Uninstall => {
                Err("Deployments have their own routes: /api/v1/orgs/{org}/clusters/{id}/deployments.")
            }
        }
    }
}

impl From<RequestedAction> for RunAction {
    fn from(action: RequestedAction) -> Self {
        match action {
            RequestedAction::Plan => RunAction::Plan,
            RequestedAction::Apply => RunAction::Apply,
        }
    }
}

/// `POST /api/v1/orgs/{org}/clusters/{id}/runs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunRequest {
    /// `plan` (operators and up) or `apply` (admins and up).
    pub action: RequestedAction,
    /// Options of the simulated `local` target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulate: Option<Simulate>,
}

/// What a plan would do, as Terraform counts resources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlanSummary {
    #[serde(default)]
    pub add: u32,
    #[serde(default)]
    pub change: u32,
    #[serde(default)]
    pub destroy: u32,
}

/// One execution of Terraform against a cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Run {
    pub id: Uuid,
    /// The organization's name.
    pub org: String,
    pub cluster_id: Uuid,
    pub cluster_name: String,
    /// For `deploy`, `upgrade`, `rollback` and `uninstall`: the deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<Uuid>,
    pub action: RunAction,
    pub status: RunStatus,
    /// Why the run is where it is: why it waits, or how it ended.
    pub reason: Option<String>,
    /// Place in the queue while waiting for a worker (1 = next).
    pub position: Option<u64>,
    pub attempts: u32,
    pub max_attempts: u32,
    /// Once planned.
    pub plan_summary: Option<PlanSummary>,
    #[schema(value_type = Option<Object>)]
    pub outputs: Option<Map<String, Value>>,
    pub exit_code: Option<i64>,
    /// What ran it: `docker` or `process`.
    pub executor: Option<String>,
    pub requested_by: Option<String>,
    pub approved_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Which output of the provisioner a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
    /// Fleetplane's own lines: claimed, retried, canceled.
    System,
}

impl LogStream {
    pub const ALL: [LogStream; 3] = [LogStream::Stdout, LogStream::Stderr, LogStream::System];

    pub const fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::System => "system",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        LogStream::ALL.into_iter().find(|stream| stream.as_str() == value)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    pub seq: u64,
    pub stream: LogStream,
    pub text: String,
    pub at: DateTime<Utc>,
}

/// A page of a run's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogPage {
    pub chunks: Vec<LogLine>,
    /// Pass as `after` for the next page.
    pub next_after: u64,
    /// The run has ended and every line has been returned.
    pub complete: bool,
}

/// The most log lines one page holds.
pub const MAX_LOG_PAGE: u64 = 1000;

/// A cluster's Terraform state as Fleetplane keeps it: the versions and the current lock.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StateInfo {
    /// Newest first (at most 50).
    pub versions: Vec<StateVersion>,
    pub lock: Option<StateLock>,
}

impl StateInfo {
    /// The newest version (the highest serial).
    pub fn latest(&self) -> Option<&StateVersion> {
        self.versions.iter().max_by_key(|version| version.serial)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StateVersion {
    pub id: Uuid,
    pub serial: u64,
    pub run_id: Option<Uuid>,
    /// Bytes.
    pub size: u64,
    pub created_at: DateTime<Utc>,
}

/// Who holds a state lock, as Terraform described itself when it took it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StateLock {
    pub id: String,
    pub run_id: Option<Uuid>,
    pub operation: String,
    pub who: String,
    pub created_at: DateTime<Utc>,
}
