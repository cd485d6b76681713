//! Deployment runs on cloud clusters (`aws-eks`, `azure-aks`, `gcp-gke`): one job of the helm
//! provisioner (`fleetplane/provisioner-helm`, contract in `provisioners/helm/README.md`) per
//! attempt, run by the same executor, with the same labels, log recording and cancel as a
//! Terraform phase. Helm jobs run only in that container: the process executor refuses them and
//! the `auto` executor without an engine waits for one.
//!
//! **What the job gets.** Environment: `FP_ACTION`, `FP_RELEASE`, `FP_NAMESPACE`, `FP_TIMEOUT`,
//! `FP_CHART` (with `FP_CHART_VERSION` and `FP_CHART_REPO` for a chart repository), and the
//! paths `KUBECONFIG` and `FP_VALUES`. No secret is in the environment ([`job_input`]): the
//! kubeconfig and the values are input files, copied into the container's `/work` before it
//! starts and removed with it.
//! - The kubeconfig is written from the cluster's Terraform outputs (`cluster_name`, `endpoint`,
//!   `ca_data`, the CA bundle as base64 PEM) with a bearer token minted for this attempt from the
//!   cluster's linked cloud account ([`fleetplane_cloud::Clouds::kubernetes_token`]: EKS a
//!   presigned STS `GetCallerIdentity`, GKE a service-account access token, AKS an Entra ID
//!   token for the AKS server application). The linked key itself never reaches the job.
//! - The values are the revision's validated values, secrets put back
//!   ([`crate::deployments::install_values`]), as JSON (which helm reads as YAML).
//! - The minted token, every secret value and the account's own secrets are scrubbed from the
//!   log; the provisioner never prints the kubeconfig or the values itself.
//!
//! **Names.** The release is the deployment's release name (the catalog service's id, unique on
//! its cluster), made a DNS-1123 label of at most 53 characters; its namespace has the same
//! name, so each deployment has a namespace of its own that stays the same across revisions.
//!
//! **Chart.** From the catalog entry at the revision's pinned version: a chart repository
//! (`FP_CHART=<name>`, `FP_CHART_REPO=<url>`, `FP_CHART_VERSION`), an OCI registry
//! (`FP_CHART=oci://…/<name>`, `FP_CHART_VERSION`), or the workspace's own chart, which the image
//! carries under `/charts/<name>` (its version is the workspace's; a catalog test keeps the two
//! equal). A chart published only in a git repository (code-server's) cannot be installed by
//! helm: such a run fails at once, saying so.
//!
//! **Revisions and rollback.** Fleetplane's revisions and helm's do not line up: a failed
//! `--atomic` upgrade makes two helm revisions (the failed one and helm's own rollback), a failed
//! first install leaves none, recovering a stuck release makes one more, and helm prunes its
//! history (`--history-max`, 10 by default) while Fleetplane keeps every revision. So a rollback to
//! Fleetplane revision N is not `helm rollback <N>`: it is an `upgrade` to revision N's chart
//! version and values, which Fleetplane keeps (sealed secrets included) and has already copied
//! into the rollback's new revision. That is correct whatever helm's numbering is, works after
//! helm pruned the old revision, and installs exactly what revision N was. The helm revision a
//! run made is recorded in the run's outputs (`helm_revision`).
//!
//! **Stuck releases.** The queue runs one run per deployment at a time, so a release found
//! pending (`pending-install`, `pending-upgrade`, `pending-rollback`) when a deploy or upgrade
//! starts was left by an earlier attempt that was killed before helm finished. The job gets
//! `FP_RECOVER_PENDING=1`: the provisioner rolls the release back to its last deployed revision
//! (or uninstalls a never-deployed one) before upgrading, and the log says so. Should one still
//! be reported stuck (exit status 5), the run fails with the fix in its reason
//! (`helm rollback <release> <N> --namespace <ns>`). A run taken over from a worker that died
//! may find that worker's job still running: it is removed before this attempt's starts, so
//! that no other helm is working on the release when a pending one is rolled back.
//!
//! **Outcome.** The provisioner's `FLEETPLANE_RESULT` line and exit status ([`outcome`]): success
//! makes the deployment `healthy` (helm's `--wait` waited for its resources to be ready) or
//! `uninstalled`; every failure fails the run and the deployment with a reason saying what
//! went wrong (the API server did not answer, or refused the token; the chart or values were
//! refused; the release is stuck, with its fix; helm's own error). Health is not re-checked
//! later for cloud deployments, as it is on the local target: there is no Kubernetes API server
//! on these machines to test that against, so the status is what the last run found.

use std::time::Duration;

use base64::Engine;
use fleetplane_cloud::{
    CloudError,
    kube::{KubeToken, kubeconfig},
};
use fleetplane_executor::{ExecError, Executor, HELM_TARGET, Job, labels};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Ended, JobResult, Stop, Worker};
use crate::{
    catalog::{self, ChartSource},
    deployments::DeploymentRunSpec,
    entity::{cloud_accounts, clusters, runs},
    runs::Action,
};

/// How long a leftover job that another remover (the sweep) is taking away may take to go.
const LEFTOVER_GONE_WITHIN: Duration = Duration::from_secs(60);

/// Where the job's input files are, in the container's working directory.
const WORK_DIR: &str = "/work";
const KUBECONFIG_FILE: &str = "kubeconfig";
const VALUES_FILE: &str = "values.yaml";
/// Where the image keeps the workspace's charts.
const IMAGE_CHARTS: &str = "/charts";
/// The targets whose deployments are helm releases.
pub const CLOUD_TARGETS: [&str; 3] = ["aws-eks", "azure-aks", "gcp-gke"];
/// Shorter secrets are not scrubbed: replacing a word of two letters everywhere would make the
/// log unreadable and hide nothing.
const MIN_SECRET: usize = 4;

/// A release and its namespace, as DNS-1123 labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub release: String,
    pub namespace: String,
}

/// The helm names of a deployment: its release name, made a DNS-1123 label of at most 53
/// characters (what helm accepts), and a namespace of the same name.
pub fn names(release: &str) -> Names {
    let mut label: String = release
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' })
        .collect();
    label.truncate(53);
    let label = label.trim_matches('-').to_owned();
    let label = if label.is_empty() { "release".to_owned() } else { label };
    Names { release: label.clone(), namespace: label }
}

/// How to reach a cluster's API server, from its Terraform outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterAccess {
    /// The cloud's name of the cluster (EKS signs its tokens for it).
    pub name: String,
    pub endpoint: String,
    pub ca_pem: String,
}

/// Reads `cluster_name`, `endpoint` and `ca_data` (base64 of the PEM bundle) from a cluster's
/// stored outputs, or says what is missing.
pub fn cluster_access(outputs: Option<&Value>) -> Result<ClusterAccess, String> {
    let missing = |what: &str| {
        format!(
            "The cluster's outputs have no {what}: its last apply did not record how to reach its API server. \
             Apply the cluster again, then retry the run."
        )
    };
    let text = |key: &str| outputs.and_then(|o| o.get(key)).and_then(Value::as_str).filter(|v| !v.trim().is_empty());
    let name = text("cluster_name").ok_or_else(|| missing("cluster_name"))?.trim().to_owned();
    let endpoint = text("endpoint").ok_or_else(|| missing("endpoint"))?.trim().to_owned();
    if !endpoint.starts_with("https://") {
        return Err(format!("The cluster's API server endpoint `{endpoint}` is not an https:// URL."));
    }
    let ca_data = text("ca_data").ok_or_else(|| missing("ca_data"))?;
    let ca_pem = base64::engine::general_purpose::STANDARD
        .decode(ca_data.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|pem| pem.contains("-----BEGIN CERTIFICATE-----"))
        .ok_or_else(|| "The cluster's ca_data output is not a base64 PEM certificate bundle.".to_owned())?;
    Ok(ClusterAccess { name, endpoint, ca_pem })
}

/// The chart of a deployment, as the provisioner takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChartRef {
    pub chart: String,
    pub version: Option<String>,
    pub repo: Option<String>,
}

/// The chart of `service` at `version`, or why helm cannot install it.
pub fn chart_ref(service: &str, version: &str) -> Result<ChartRef, String> {
    let entry = catalog::entry(service).ok_or_else(|| format!("`{service}` is no longer in the catalog."))?;
    let chart = &entry.info.chart;
    match chart.source {
        ChartSource::Workspace { path } => {
            let dir = path.rsplit('/').next().unwrap_or(chart.name);
            Ok(ChartRef { chart: format!("{IMAGE_CHARTS}/{dir}"), version: None, repo: None })
        }
        ChartSource::Repository { url } if url.starts_with("oci://") => Ok(ChartRef {
            chart: format!("{}/{}", url.trim_end_matches('/'), chart.name),
            version: Some(version.to_owned()),
            repo: None,
        }),
        ChartSource::Repository { url } => {
            Ok(ChartRef { chart: chart.name.to_owned(), version: Some(version.to_owned()), repo: Some(url.to_owned()) })
        }
        ChartSource::Git { url, commit, .. } => Err(format!(
            "{}'s chart is published only in its git repository ({url} at {commit}); helm installs charts from \
             chart repositories and OCI registries, so the helm provisioner cannot install it.",
            entry.info.title
        )),
    }
}

/// What the provisioner is asked to do, for a run's action.
pub fn helm_action(action: Action) -> &'static str {
    match action {
        Action::Uninstall => "uninstall",
        // A rollback installs the earlier revision's version and values again (see the module's
        // documentation), as an upgrade does.
        Action::Upgrade | Action::Rollback => "upgrade",
        _ => "deploy",
    }
}

/// helm's `--timeout`: the run's own timeout less a margin, so that helm's `--atomic` rollback has
/// time to finish before the worker stops the job.
pub fn helm_timeout(run_timeout_secs: u64) -> String {
    let margin = (run_timeout_secs / 5).clamp(30, 300);
    format!("{}s", run_timeout_secs.saturating_sub(margin).max(30))
}

/// Everything one helm job is made of.
pub struct JobInput<'a> {
    pub action: &'static str,
    pub names: &'a Names,
    pub access: &'a ClusterAccess,
    pub token: &'a KubeToken,
    /// For deploy and upgrade: the chart and the values (secrets included).
    pub install: Option<(&'a ChartRef, &'a Value)>,
    pub timeout: String,
}

/// A helm job's environment and its input files (name, contents).
pub struct Prepared {
    pub env: Vec<(String, String)>,
    pub inputs: Vec<(String, Vec<u8>)>,
}

/// The job's environment and input files. Secrets (the token, secret values) are only in the
/// files, never in the environment.
pub fn job_input(input: &JobInput<'_>) -> Prepared {
    let mut env = vec![
        ("FP_ACTION".to_owned(), input.action.to_owned()),
        ("FP_RELEASE".to_owned(), input.names.release.clone()),
        ("FP_NAMESPACE".to_owned(), input.names.namespace.clone()),
        ("FP_TIMEOUT".to_owned(), input.timeout.clone()),
        ("KUBECONFIG".to_owned(), format!("{WORK_DIR}/{KUBECONFIG_FILE}")),
    ];
    let config = kubeconfig(&input.access.name, &input.access.endpoint, &input.access.ca_pem, input.token);
    let mut files = vec![(KUBECONFIG_FILE.to_owned(), config.into_bytes())];
    if let Some((chart, values)) = input.install {
        env.push(("FP_CHART".to_owned(), chart.chart.clone()));
        if let Some(version) = &chart.version {
            env.push(("FP_CHART_VERSION".to_owned(), version.clone()));
        }
        if let Some(repo) = &chart.repo {
            env.push(("FP_CHART_REPO".to_owned(), repo.clone()));
        }
        env.push(("FP_VALUES".to_owned(), format!("{WORK_DIR}/{VALUES_FILE}")));
        // A release stuck pending when a run starts was left by an earlier attempt: the queue
        // runs one run per deployment at a time, so no other helm operation can be on it.
        env.push(("FP_RECOVER_PENDING".to_owned(), "1".to_owned()));
        files.push((VALUES_FILE.to_owned(), values.to_string().into_bytes()));
    }
    Prepared { env, inputs: files }
}

/// The provisioner's `FLEETPLANE_RESULT` line.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct HelmResult {
    pub action: Option<String>,
    pub ok: bool,
    pub status: String,
    pub revision: Option<i64>,
    pub error: Option<String>,
    pub rollback_to: Option<i64>,
}

/// Reads a result line's JSON, or says why it cannot be read.
pub fn parse_result(line: Option<&str>) -> Result<HelmResult, String> {
    let line = line.ok_or_else(|| "reporting a result (no FLEETPLANE_RESULT line)".to_owned())?;
    serde_json::from_str(line.trim()).map_err(|e| format!("a readable result (its FLEETPLANE_RESULT line: {e})"))
}

/// What the job's output says went wrong: helm's first errors, else the provisioner's last
/// message.
pub fn detail(job: &JobResult) -> String {
    if !job.errors.is_empty() {
        return job.errors.iter().take(2).cloned().collect::<Vec<_>>().join(" / ");
    }
    job.stderr_tail
        .iter()
        .rev()
        .find_map(|line| line.strip_prefix("fleetplane: "))
        .or_else(|| job.stderr_tail.last().map(String::as_str))
        .unwrap_or("no error output")
        .to_owned()
}

/// Whether helm's error is the API server refusing the token rather than not answering.
fn refused_credentials(detail: &str) -> bool {
    ["Unauthorized", "provide credentials", "Forbidden", "forbidden"].iter().any(|word| detail.contains(word))
}

/// How a helm job ended, from its exit status and result line.
pub fn outcome(names: &Names, exit_code: i64, job: &JobResult) -> Ended {
    let Names { release, namespace } = names;
    let failed = |reason: String| Ended::Failed { reason, exit_code: Some(exit_code) };
    let result = match parse_result(job.helm_result.as_deref()) {
        Ok(result) => result,
        Err(without) => {
            return failed(format!(
                "The helm job ended with exit code {exit_code} without {without}: {}.",
                detail(job)
            ));
        }
    };
    if result.ok != (exit_code == 0) {
        return failed(format!(
            "The helm job's result (ok: {}) does not agree with its exit code {exit_code}: {}.",
            result.ok,
            detail(job)
        ));
    }
    let at = match result.revision {
        Some(revision) => format!("{} at helm revision {revision}", result.status),
        None => result.status.clone(),
    };
    match exit_code {
        0 if result.action.as_deref() == Some("uninstall") => Ended::Succeeded { outputs: None },
        0 => Ended::Succeeded {
            outputs: Some(json!({
                "release": release,
                "namespace": namespace,
                "helm_revision": result.revision,
                "helm_status": result.status,
            })),
        },
        1 if result.error.as_deref() == Some("not_found") => {
            failed(format!("Release {release} is not in namespace {namespace}: {}.", detail(job)))
        }
        1 if result.status == "unknown" => failed(format!("helm failed: {}.", detail(job))),
        1 => failed(format!("helm failed: {}. The release is {at} now.", detail(job))),
        2 => failed(format!(
            "The helm job refused the environment Fleetplane gave it (a Fleetplane bug): {}.",
            detail(job)
        )),
        3 => failed(format!(
            "helm refused the chart or its values: {}. The cluster was not asked to change.",
            detail(job)
        )),
        4 if refused_credentials(&detail(job)) => failed(format!(
            "The cluster's API server refused the token minted for this run: {}. Check that the linked cloud \
             account's identity has access to the cluster.",
            detail(job)
        )),
        4 => failed(format!("The cluster's API server did not answer: {}.", detail(job))),
        5 => {
            let fix = match result.rollback_to {
                Some(revision) => format!("helm rollback {release} {revision} --namespace {namespace}"),
                None => format!("helm uninstall {release} --namespace {namespace}"),
            };
            failed(format!(
                "Release {release} is stuck in {at}: a helm operation on it never finished. The fix: `{fix}`, once \
                 no other helm operation on it is running; then retry the run."
            ))
        }
        130 | 143 => failed(format!(
            "The helm job was interrupted (exit code {exit_code}) before it finished; the release is {at}. Retry \
             the run: a release left pending is recovered first."
        )),
        _ => failed(format!("The helm job ended with exit code {exit_code}: {}.", detail(job))),
    }
}

/// Every secret of the job, for the log's scrubbing.
fn scrubbed(token: &KubeToken, values: &[String], account: &[String]) -> Vec<String> {
    std::iter::once(token.token.clone())
        .chain(values.iter().cloned())
        .chain(account.iter().cloned())
        .filter(|secret| secret.len() >= MIN_SECRET)
        .collect()
}

fn failed(reason: impl Into<String>) -> Result<Ended, ExecError> {
    Ok(Ended::Failed { reason: reason.into(), exit_code: None })
}

impl Worker {
    /// Removes the jobs of this run's earlier attempts that are still there (their worker died,
    /// and the sweep has not removed them yet): a helm still running on the release would race
    /// this attempt's, whose recovery of a pending release counts on being the only one.
    /// Returns what it did, for the log.
    async fn earlier_attempts(&self, run: &runs::Model, executor: &dyn Executor) -> Result<Vec<String>, ExecError> {
        let (id, attempt) = (run.id.to_string(), run.attempts.to_string());
        let mut removed = Vec::new();
        for found in executor.list().await? {
            let earlier = found.label(labels::ATTEMPT).unwrap_or_default();
            if found.label(labels::RUN) != Some(id.as_str()) || earlier == attempt {
                continue;
            }
            if let Err(e) = executor.remove(&found.id).await {
                // The sweep may be removing it at the same time (the engine answers 409: removal
                // already in progress): wait for it to go. One still there must not race this one.
                let deadline = tokio::time::Instant::now() + LEFTOVER_GONE_WITHIN;
                while executor.list().await?.iter().any(|job| job.id == found.id) {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ExecError::Unavailable(format!(
                            "the job of an earlier attempt is still there: {e}"
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
            removed.push(format!(
                "Removed the job of attempt {earlier} ({}), left by a worker that stopped responding, before \
                 starting this one.",
                found.id.get(..12).unwrap_or(&found.id)
            ));
        }
        Ok(removed)
    }

    /// The revision that revision `number` of the run's deployment copies, for a rollback.
    async fn rollback_of(&self, spec: &DeploymentRunSpec, number: i32) -> Result<Option<i32>, ExecError> {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

        use crate::entity::deployment_revisions as revisions;
        let revision = revisions::Entity::find()
            .filter(revisions::Column::DeploymentId.eq(spec.deployment_id))
            .filter(revisions::Column::Revision.eq(number))
            .one(&self.state.db)
            .await
            .map_err(|e| ExecError::Unavailable(format!("reading the database: {e}")))?;
        Ok(revision.and_then(|r| r.rollback_of))
    }

    /// Carries out one attempt of a deployment run on a cloud cluster.
    pub(super) async fn carry_out_helm(
        &self,
        run: &runs::Model,
        spec: &DeploymentRunSpec,
        action: Action,
        interrupt: &CancellationToken,
    ) -> Result<Ended, ExecError> {
        use sea_orm::EntityTrait;

        if !CLOUD_TARGETS.contains(&spec.target.as_str()) {
            return failed(format!("Deployments onto {} clusters have no executor.", spec.target));
        }
        let names = names(&spec.release);
        let db_error = |e: sea_orm::DbErr| ExecError::Unavailable(format!("reading the database: {e}"));
        let install = match (action, spec.revision) {
            (Action::Uninstall, _) => None,
            (_, None) => return failed("The run names no revision to install."),
            (_, Some(number)) => {
                let (version, values) = crate::deployments::install_values(&self.state, spec.deployment_id, number)
                    .await
                    .map_err(|e| ExecError::Failed(format!("{e:#}")))?;
                let chart = match chart_ref(&spec.service, &version) {
                    Ok(chart) => chart,
                    Err(why) => return failed(why),
                };
                Some((number, chart, values))
            }
        };
        let cluster = clusters::Entity::find_by_id(spec.cluster_id)
            .one(&self.state.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| ExecError::Failed("the deployment's cluster no longer exists".into()))?;
        let access = match cluster_access(cluster.outputs.as_ref()) {
            Ok(access) => access,
            Err(why) => return failed(why),
        };
        let Some(account_id) = spec.cloud_account_id.or(cluster.cloud_account_id) else {
            return failed(
                "The cluster has no linked cloud account: Fleetplane mints the token for its API server with one.",
            );
        };
        let account = cloud_accounts::Entity::find_by_id(account_id)
            .one(&self.state.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| ExecError::Failed("the cluster's cloud account no longer exists".into()))?;
        let credentials = crate::cloud_accounts::credentials(&self.state, &account)
            .map_err(|e| ExecError::Failed(format!("the cloud account's credentials: {e}")))?;

        // The engine first: no token is minted for a job that cannot start.
        let executor = self.executor.choose(HELM_TARGET).await?;
        if executor.kind() != "docker" {
            return failed(format!(
                "Helm jobs run only in the helm provisioner's container, and this worker's executor is {}: run the \
                 worker with a Docker engine (FLEETPLANE_EXECUTOR=docker or auto).",
                executor.kind()
            ));
        }
        let leftovers = self.earlier_attempts(run, executor).await?;
        let token = match self.state.clouds.kubernetes_token(&credentials, &access.name).await {
            Ok(token) => token,
            Err(CloudError::Unreachable { message }) => {
                return Err(ExecError::Unavailable(format!("minting a token for the cluster: {message}")));
            }
            Err(e) => return failed(format!("The cloud refused a token for the cluster's API server: {e}")),
        };
        let secret_values = match spec.revision {
            Some(number) => crate::deployments::secret_values(&self.state, spec.deployment_id, number).await,
            None => Vec::new(),
        };
        let helm = helm_action(action);
        let Prepared { env, inputs } = job_input(&JobInput {
            action: helm,
            names: &names,
            access: &access,
            token: &token,
            install: install.as_ref().map(|(_, chart, values)| (chart, values)),
            timeout: helm_timeout(self.state.config.runs.timeout_secs),
        });
        let job = Job {
            name: format!("fleetplane-{}-{}-helm", run.id.simple(), run.attempts),
            target: HELM_TARGET.to_owned(),
            env,
            labels: self.job_labels(run, action.as_str()),
            inputs,
            outputs: vec![],
        };
        let mut plan = leftovers;
        plan.push(format!(
            "Release {} in namespace {} on cluster {} ({}); a token for it was minted for this run, good for {} \
             seconds at most.",
            names.release,
            names.namespace,
            access.name,
            access.endpoint,
            token.expires_in.as_secs()
        ));
        if let Some((number, chart, _)) = &install {
            let version = chart.version.as_deref().map(|v| format!(" {v}")).unwrap_or_default();
            let from = chart.repo.as_deref().map(|r| format!(" from {r}")).unwrap_or_default();
            let chart = format!("chart {}{version}{from}", chart.chart);
            plan.push(match action {
                Action::Rollback => {
                    let of = self.rollback_of(spec, *number).await?.map(|n| format!(" {n}")).unwrap_or_default();
                    format!(
                        "Rolling back to revision{of}: upgrading the release to its chart and values, copied as \
                         revision {number}: {chart}."
                    )
                }
                _ => format!("Installing revision {number}: {chart}."),
            });
        }
        let secrets = scrubbed(&token, &secret_values, &credentials.secrets());
        let (ran, result) = self.run_job(run, job, helm, secrets.clone(), &plan, interrupt).await?;
        if interrupt.is_cancelled() {
            return Ok(Ended::Stopped(Stop::Cancel));
        }
        let ended = outcome(&names, ran.exit_code, &result);
        // The run's reason goes into the log when it is recorded; what the reason does not say
        // is said here.
        if result.steps.iter().any(|step| step == "recover") {
            let recovered =
                "The release was stuck pending, left by an earlier attempt that was stopped before helm finished; it \
                 was recovered first (rolled back to its last deployed revision, or uninstalled if it never was \
                 deployed), as the lines above say, so it is not left stuck."
                    .to_owned();
            self.notes(run, secrets, &[recovered]).await;
        }
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn fleet() -> Names {
        names("fleet-telemetry")
    }

    fn access() -> ClusterAccess {
        ClusterAccess { name: "fleet-prod".into(), endpoint: "https://k8s.example:443".into(), ca_pem: CA.into() }
    }

    fn token() -> KubeToken {
        KubeToken { token: "k8s-aws-v1.minted-for-the-run".into(), expires_in: Duration::from_secs(60) }
    }

    /// A job that printed `result` as its result line and `errors` as helm's errors.
    fn job(result: Option<&str>, errors: &[&str]) -> JobResult {
        JobResult {
            helm_result: result.map(str::to_owned),
            errors: errors.iter().map(|e| (*e).to_owned()).collect(),
            ..JobResult::default()
        }
    }

    fn reason(ended: &Ended) -> &str {
        match ended {
            Ended::Failed { reason, .. } => reason,
            _ => panic!("expected a failure"),
        }
    }

    fn failure(action: &str, error: &str, status: &str, revision: &str, rollback_to: &str) -> String {
        format!(
            r#"{{"action":"{action}","ok":false,"status":"{status}","revision":{revision},"error":"{error}","rollback_to":{rollback_to}}}"#
        )
    }

    #[test]
    fn release_and_namespace_are_dns_labels_named_after_the_deployment() {
        assert_eq!(fleet(), Names { release: "fleet-telemetry".into(), namespace: "fleet-telemetry".into() });
        assert_eq!(names("My_Service.v2").release, "my-service-v2");
        let long = names(&"a".repeat(80));
        assert_eq!(long.release.len(), 53);
        assert_eq!(names("-x-").release, "x", "a label starts and ends with a letter or digit");
        assert_eq!(names("__").release, "release");
    }

    #[test]
    fn cluster_access_comes_from_the_terraform_outputs() {
        let ca_data = base64::engine::general_purpose::STANDARD.encode(CA);
        let outputs =
            json!({ "cluster_name": "fleet-prod", "endpoint": "https://k8s.example:443", "ca_data": ca_data });
        assert_eq!(cluster_access(Some(&outputs)), Ok(access()));
        let without = |key: &str| {
            let mut outputs = outputs.clone();
            outputs.as_object_mut().expect("object").remove(key);
            cluster_access(Some(&outputs)).expect_err("incomplete")
        };
        for key in ["cluster_name", "endpoint", "ca_data"] {
            assert!(without(key).contains(key), "{key}");
        }
        assert!(cluster_access(None).expect_err("no outputs").contains("Apply the cluster again"));
        let mut http = outputs.clone();
        http["endpoint"] = json!("http://k8s.example");
        assert!(cluster_access(Some(&http)).expect_err("not TLS").contains("https://"));
        let mut not_pem = outputs.clone();
        not_pem["ca_data"] = json!(base64::engine::general_purpose::STANDARD.encode("not a certificate"));
        assert!(cluster_access(Some(&not_pem)).expect_err("no PEM").contains("PEM"));
        let mut not_base64 = outputs;
        not_base64["ca_data"] = json!("%%%");
        assert!(cluster_access(Some(&not_base64)).is_err());
    }

    #[test]
    fn charts_come_from_the_catalog_at_the_pinned_version() {
        assert_eq!(
            chart_ref("fleet-telemetry", "0.1.0"),
            Ok(ChartRef { chart: "/charts/fleet-telemetry".into(), version: None, repo: None })
        );
        assert_eq!(
            chart_ref("jupyterhub", "4.4.0"),
            Ok(ChartRef {
                chart: "jupyterhub".into(),
                version: Some("4.4.0".into()),
                repo: Some("https://hub.jupyter.org/helm-chart/".into()),
            })
        );
        let git = chart_ref("code-server", "3.48.0").expect_err("git is not a chart source helm reads");
        assert!(git.contains("git repository") && git.contains("github.com/coder/code-server"), "{git}");
        assert!(chart_ref("wordpress", "1").is_err());
    }

    #[test]
    fn actions_map_to_the_provisioners_and_a_rollback_is_an_upgrade_to_the_old_revision() {
        assert_eq!(helm_action(Action::Deploy), "deploy");
        assert_eq!(helm_action(Action::Upgrade), "upgrade");
        assert_eq!(helm_action(Action::Rollback), "upgrade");
        assert_eq!(helm_action(Action::Uninstall), "uninstall");
    }

    #[test]
    fn helm_stops_before_the_run_times_out() {
        assert_eq!(helm_timeout(2 * 3600), "6900s");
        assert_eq!(helm_timeout(600), "480s");
        assert_eq!(helm_timeout(60), "30s");
        assert_eq!(helm_timeout(0), "30s");
    }

    #[test]
    fn secrets_go_in_files_never_in_the_environment() {
        let chart = chart_ref("jupyterhub", "4.4.0").expect("chart");
        let values = json!({ "hub": { "config": { "DummyAuthenticator": { "password": "shared-Secret-42" } } } });
        let Prepared { env, inputs: files } = job_input(&JobInput {
            action: "deploy",
            names: &names("jupyterhub"),
            access: &access(),
            token: &token(),
            install: Some((&chart, &values)),
            timeout: "600s".into(),
        });
        let get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        assert_eq!(get("FP_ACTION"), Some("deploy"));
        assert_eq!(get("FP_RELEASE"), Some("jupyterhub"));
        assert_eq!(get("FP_NAMESPACE"), Some("jupyterhub"));
        assert_eq!(get("FP_CHART"), Some("jupyterhub"));
        assert_eq!(get("FP_CHART_VERSION"), Some("4.4.0"));
        assert_eq!(get("FP_CHART_REPO"), Some("https://hub.jupyter.org/helm-chart/"));
        assert_eq!(get("FP_TIMEOUT"), Some("600s"));
        assert_eq!(get("FP_RECOVER_PENDING"), Some("1"));
        assert_eq!(get("KUBECONFIG"), Some("/work/kubeconfig"));
        assert_eq!(get("FP_VALUES"), Some("/work/values.yaml"));
        let environment = format!("{env:?}");
        assert!(!environment.contains("minted-for-the-run") && !environment.contains("shared-Secret-42"));
        assert!(!environment.contains("BEGIN CERTIFICATE"));

        let file = |name: &str| {
            let bytes = &files.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name}")).1;
            serde_json::from_slice::<Value>(bytes).expect("JSON, which helm reads as YAML")
        };
        let config = file("kubeconfig");
        assert_eq!(config["users"][0]["user"]["token"], "k8s-aws-v1.minted-for-the-run");
        assert_eq!(config["clusters"][0]["cluster"]["server"], "https://k8s.example:443");
        assert_eq!(file("values.yaml"), values);
    }

    #[test]
    fn an_uninstall_gets_no_chart_and_no_values() {
        let Prepared { env, inputs: files } = job_input(&JobInput {
            action: "uninstall",
            names: &fleet(),
            access: &access(),
            token: &token(),
            install: None,
            timeout: "600s".into(),
        });
        let keys: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["FP_ACTION", "FP_RELEASE", "FP_NAMESPACE", "FP_TIMEOUT", "KUBECONFIG"]);
        assert_eq!(files.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["kubeconfig"]);
    }

    #[test]
    fn the_scrubbed_secrets_are_the_token_the_values_and_the_accounts() {
        let secrets = scrubbed(&token(), &["value-secret".into(), "ab".into()], &["account-secret".into()]);
        assert_eq!(secrets, ["k8s-aws-v1.minted-for-the-run", "value-secret", "account-secret"]);
    }

    #[test]
    fn a_result_line_is_read_or_its_absence_said() {
        let line = r#"{"action":"deploy","ok":true,"status":"deployed","revision":3,"error":null,"rollback_to":null}"#;
        assert_eq!(
            parse_result(Some(line)),
            Ok(HelmResult {
                action: Some("deploy".into()),
                ok: true,
                status: "deployed".into(),
                revision: Some(3),
                error: None,
                rollback_to: None,
            })
        );
        assert!(parse_result(None).expect_err("missing").contains("no FLEETPLANE_RESULT line"));
        assert!(parse_result(Some("{\"ok\":")).expect_err("malformed").contains("readable"));
        assert!(parse_result(Some("[]")).is_err());
    }

    #[test]
    fn success_makes_the_release_the_deployments_outputs_and_an_uninstall_none() {
        let ok = r#"{"action":"deploy","ok":true,"status":"deployed","revision":4,"error":null,"rollback_to":null}"#;
        let Ended::Succeeded { outputs } = outcome(&fleet(), 0, &job(Some(ok), &[])) else { panic!("succeeded") };
        assert_eq!(
            outputs,
            Some(json!({ "release": "fleet-telemetry", "namespace": "fleet-telemetry", "helm_revision": 4,
                         "helm_status": "deployed" }))
        );
        let gone = r#"{"action":"uninstall","ok":true,"status":"uninstalled","revision":null,"error":null,"rollback_to":null}"#;
        assert!(matches!(outcome(&fleet(), 0, &job(Some(gone), &[])), Ended::Succeeded { outputs: None }));
    }

    #[test]
    fn every_exit_status_has_a_reason_that_says_what_went_wrong() {
        let names = fleet();
        let cases: Vec<(i64, String, Vec<&str>, Vec<&str>)> = vec![
            (
                1,
                failure("upgrade", "helm", "deployed", "5", "null"),
                vec!["UPGRADE FAILED: timed out waiting for the condition"],
                vec!["helm failed: UPGRADE FAILED: timed out", "deployed at helm revision 5"],
            ),
            (
                1,
                failure("deploy", "helm", "unknown", "null", "null"),
                vec!["query: failed to query with labels: secrets is forbidden"],
                vec!["helm failed: query: failed to query with labels: secrets is forbidden."],
            ),
            (1, failure("rollback", "not_found", "unknown", "null", "null"), vec![], vec!["is not in namespace"]),
            (
                2,
                failure("deploy", "contract", "unknown", "null", "null"),
                vec![],
                vec!["refused the environment", "Fleetplane bug"],
            ),
            (
                3,
                failure("deploy", "chart", "unknown", "null", "null"),
                vec!["values don't meet the specifications of the schema(s)"],
                vec!["helm refused the chart or its values: values don't meet", "not asked to change"],
            ),
            (
                4,
                failure("deploy", "unreachable", "unknown", "null", "null"),
                vec![
                    "Kubernetes cluster unreachable: Get \"https://127.0.0.1:1/version\": dial tcp: connection refused",
                ],
                vec!["The cluster's API server did not answer: Kubernetes cluster unreachable"],
            ),
            (
                4,
                failure("deploy", "unreachable", "unknown", "null", "null"),
                vec!["Kubernetes cluster unreachable: the server has asked for the client to provide credentials"],
                vec!["refused the token minted for this run: Kubernetes cluster unreachable: the server has asked"],
            ),
            (
                5,
                failure("upgrade", "pending", "pending-upgrade", "7", "6"),
                vec![],
                vec![
                    "stuck in pending-upgrade at helm revision 7",
                    "`helm rollback fleet-telemetry 6 --namespace fleet-telemetry`",
                ],
            ),
            (
                5,
                failure("deploy", "pending", "pending-install", "1", "null"),
                vec![],
                vec!["`helm uninstall fleet-telemetry --namespace fleet-telemetry`"],
            ),
            (
                130,
                failure("deploy", "interrupted", "pending-install", "1", "null"),
                vec![],
                vec!["interrupted (exit code 130)"],
            ),
            (
                143,
                failure("deploy", "interrupted", "unknown", "null", "null"),
                vec![],
                vec!["interrupted (exit code 143)"],
            ),
            (42, failure("deploy", "helm", "unknown", "null", "null"), vec!["odd"], vec!["exit code 42: odd"]),
        ];
        for (code, line, errors, expected) in cases {
            let ended = outcome(&names, code, &job(Some(&line), &errors));
            let Ended::Failed { reason, exit_code } = &ended else { panic!("exit {code}: expected a failure") };
            assert_eq!(*exit_code, Some(code));
            for part in expected {
                assert!(reason.contains(part), "exit {code}: {part:?} not in {reason:?}");
            }
        }
    }

    #[test]
    fn a_job_without_a_readable_result_fails_saying_so() {
        let killed = outcome(&fleet(), 137, &JobResult { stderr_tail: vec!["Killed".into()], ..JobResult::default() });
        assert_eq!(
            reason(&killed),
            "The helm job ended with exit code 137 without reporting a result (no FLEETPLANE_RESULT line): Killed."
        );
        let garbled = outcome(&fleet(), 0, &job(Some("{\"ok\":tru"), &[]));
        assert!(reason(&garbled).contains("without a readable result"), "{}", reason(&garbled));
        let quiet = outcome(&fleet(), 1, &job(None, &[]));
        assert!(reason(&quiet).ends_with("no error output."), "{}", reason(&quiet));
        let provisioner = JobResult {
            stderr_tail: vec!["fleetplane: helm history failed (exit status 1)".into(), "trailing".into()],
            ..JobResult::default()
        };
        assert_eq!(detail(&provisioner), "helm history failed (exit status 1)");
    }

    #[test]
    fn a_result_that_contradicts_the_exit_code_is_a_failure() {
        let ok = r#"{"action":"deploy","ok":true,"status":"deployed","revision":1,"error":null,"rollback_to":null}"#;
        assert!(reason(&outcome(&fleet(), 1, &job(Some(ok), &[]))).contains("does not agree"));
        let failed = failure("deploy", "helm", "failed", "1", "null");
        assert!(reason(&outcome(&fleet(), 0, &job(Some(&failed), &[]))).contains("does not agree"));
    }
}
