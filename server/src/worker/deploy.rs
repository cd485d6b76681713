//! Deployment runs (`deploy`, `upgrade`, `rollback`, `uninstall`), claimed from the same queue
//! as Terraform runs and recorded the same way; only the work differs.
//!
//! On the `local` target the runtime is the Docker engine: a deployment is one container of the
//! service's image, on the host's network, listening on loopback ports of its own, with a named
//! volume for its data. Containers carry the cluster, deployment and revision as labels, so a
//! worker that takes over a run finds what an earlier attempt started: the revision it installs
//! already running is left running and checked, anything else is replaced. Health is the
//! service's own `/readyz`. Cloud targets get Helm releases from the helm provisioner's job
//! ([`super::helm`]).

use std::time::Duration;

use fleetplane_executor::{
    ExecError, LogLine,
    service::{self, ServiceContainer, ServiceRuntime, ServiceSpec, labels},
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Ended, LogNote, Stop, Worker, logs};
use crate::{
    deployments::DeploymentRunSpec,
    entity::runs,
    runs::{Action, status},
};

/// The image of the `fleet-telemetry` service, built by `cargo xtask images`.
pub const FLEET_TELEMETRY_IMAGE: &str = "fleetplane/fleet-telemetry:latest";

/// How long a started service has to answer ready on `/readyz`. Generous: a first start
/// creates the fleet's CA and its databases.
const HEALTH_DEADLINE: Duration = Duration::from_secs(120);
/// Between two asks of `/readyz` while waiting.
const HEALTH_INTERVAL: Duration = Duration::from_millis(250);
/// Where the service keeps its data when its image does not say.
const DEFAULT_DATA_DIR: &str = "/data";
/// Log lines of a failed container quoted in the run's log.
const TAIL: usize = 30;

/// The data volume of a deployment.
pub fn volume_name(deployment: uuid::Uuid) -> String {
    format!("fleetplane-deployment-{}", deployment.simple())
}

impl Worker {
    async fn services(&self) -> Result<&ServiceRuntime, ExecError> {
        self.services.get_or_try_init(|| ServiceRuntime::connect(None)).await
    }

    /// Carries out one attempt of a deployment run.
    pub(super) async fn carry_out_deployment(
        &self,
        run: &runs::Model,
        interrupt: CancellationToken,
    ) -> Result<Ended, ExecError> {
        let spec: DeploymentRunSpec = serde_json::from_value(run.spec.clone())
            .map_err(|e| ExecError::Failed(format!("the run's stored spec is unreadable: {e}")))?;
        let action = Action::parse(&run.action).unwrap_or(Action::Deploy);
        // Approved runs come back as `applying`; a prod account's run waits for that first.
        if run.status == status::RUNNING
            && self.needs_approval_of(spec.cloud_account_id).await.map_err(|e| ExecError::Failed(e.to_string()))?
        {
            return Ok(Ended::AwaitingApproval);
        }
        if spec.target != "local" {
            return self.carry_out_helm(run, &spec, action, &interrupt).await;
        }
        let runtime = self.services().await?;
        self.executor_used(run, "docker").await;
        let secrets = match spec.revision {
            Some(number) => crate::deployments::secret_values(&self.state, spec.deployment_id, number).await,
            None => Vec::new(),
        };
        let (sender, receiver) = mpsc::channel(1024);
        let recorder = tokio::spawn(logs::record(self.state.clone(), run.id, run.attempts, secrets, receiver));
        let log = LogNote { sender };
        log.note(&format!("Attempt {} of {}: {} (docker)", run.attempts, run.max_attempts, action.as_str())).await;
        let ended = match (action, spec.revision) {
            (Action::Uninstall, _) => uninstall(runtime, &spec, &log).await,
            (_, Some(number)) => self.install(runtime, run, &spec, number, &log, &interrupt).await,
            (_, None) => Ok(Ended::Failed { reason: "The run names no revision to install.".into(), exit_code: None }),
        };
        if let Ok(Ended::Failed { reason, .. }) = &ended {
            log.note(reason).await;
        }
        drop(log);
        let result = recorder.await.map_err(|e| ExecError::Failed(format!("log recorder: {e}")))?;
        if result.lost > 0 {
            *self.lost_lines.lock().unwrap_or_else(|p| p.into_inner()).entry(run.id).or_default() += result.lost;
        }
        ended
    }

    /// Asks every healthy or degraded deployment on the `local` target for `/readyz` again and
    /// records a change (healthy ⇄ degraded) with its event. A deployment a run is changing is
    /// not `healthy` or `degraded`, so it is left to its run; the conditional update leaves alone
    /// one whose run started meanwhile. Several workers may do this at once: they agree.
    pub(super) async fn recheck_deployments(&self) -> anyhow::Result<()> {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait, sea_query::Expr};

        use crate::{deployments::status as deployment_status, entity::clusters, entity::deployments};
        let watched = [deployment_status::HEALTHY, deployment_status::DEGRADED];
        let local: Vec<uuid::Uuid> = clusters::Entity::find()
            .filter(clusters::Column::Target.eq("local"))
            .all(&self.state.db)
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect();
        if local.is_empty() {
            return Ok(());
        }
        let running = deployments::Entity::find()
            .filter(deployments::Column::Status.is_in(watched))
            .filter(deployments::Column::ClusterId.is_in(local))
            .all(&self.state.db)
            .await?;
        for deployment in running {
            let Some(url) = deployment.outputs.as_ref().and_then(|o| o.get("url")).and_then(Value::as_str) else {
                continue;
            };
            let address = url.trim_start_matches("http://").to_owned();
            let ready = matches!(service::probe(&address, "/readyz", Duration::from_secs(5)).await, Ok(200));
            let (next, reason) = if ready {
                (deployment_status::HEALTHY, format!("{url}/readyz answers 200."))
            } else {
                (deployment_status::DEGRADED, format!("{url}/readyz does not answer ready."))
            };
            let now = chrono::Utc::now();
            // A steady healthy deployment is written down once a minute, not at every look.
            let stale = deployment.health_checked_at.is_none_or(|at| now - at > chrono::TimeDelta::minutes(1));
            if next == deployment.status && !(ready && stale) {
                continue;
            }
            let txn = self.state.db.begin().await?;
            let mut update = deployments::Entity::update_many()
                .col_expr(deployments::Column::Status, Expr::value(next))
                .filter(deployments::Column::Id.eq(deployment.id))
                .filter(deployments::Column::Status.is_in(watched));
            if ready {
                update = update.col_expr(deployments::Column::HealthCheckedAt, Expr::value(Some(now)));
            }
            if next != deployment.status {
                update = update
                    .col_expr(deployments::Column::Reason, Expr::value(Some(reason)))
                    .col_expr(deployments::Column::UpdatedAt, Expr::value(now));
            }
            let changed = update.exec(&txn).await?.rows_affected == 1 && next != deployment.status;
            if changed && let Some(updated) = deployments::Entity::find_by_id(deployment.id).one(&txn).await? {
                crate::events::deployment_changed(&txn, &updated).await?;
            }
            txn.commit().await?;
            if changed {
                tracing::info!(deployment = %deployment.id, status = next, "a deployment's health changed");
                self.state.events_written();
            }
        }
        Ok(())
    }

    async fn needs_approval_of(&self, account: Option<uuid::Uuid>) -> Result<bool, sea_orm::DbErr> {
        use sea_orm::EntityTrait;
        let Some(id) = account else { return Ok(false) };
        let account = crate::entity::cloud_accounts::Entity::find_by_id(id).one(&self.state.db).await?;
        Ok(account.is_some_and(|a| a.environment == "prod"))
    }

    /// Makes revision `number` the one running, then waits for it to answer ready.
    async fn install(
        &self,
        runtime: &ServiceRuntime,
        run: &runs::Model,
        spec: &DeploymentRunSpec,
        number: i32,
        log: &LogNote,
        interrupt: &CancellationToken,
    ) -> Result<Ended, ExecError> {
        if spec.service != "fleet-telemetry" {
            return Ok(Ended::Failed {
                reason: format!("{} has no image for the local target.", spec.service),
                exit_code: None,
            });
        }
        let (version, values) = crate::deployments::install_values(&self.state, spec.deployment_id, number)
            .await
            .map_err(|e| ExecError::Failed(format!("{e:#}")))?;
        let found = runtime.find(labels::DEPLOYMENT, &spec.deployment_id.to_string()).await?;
        let revision = number.to_string();
        let already = found.iter().find(|c| c.running && c.label(labels::REVISION) == Some(revision.as_str()));
        let container = match already {
            Some(container) => {
                log.note(&format!("Revision {number} is already running ({}); checking it.", short(&container.id)))
                    .await;
                container.clone()
            }
            None => {
                if !runtime.has_image(FLEET_TELEMETRY_IMAGE).await? {
                    return Ok(Ended::Failed {
                        reason: format!(
                            "The image {FLEET_TELEMETRY_IMAGE} is not on the Docker engine: build it with `cargo \
                             xtask images`, then retry the run."
                        ),
                        exit_code: None,
                    });
                }
                for old in &found {
                    log.note(&format!(
                        "Removing container {} (revision {}).",
                        short(&old.id),
                        old.label(labels::REVISION).unwrap_or("?")
                    ))
                    .await;
                    runtime.remove(&old.id).await?;
                }
                // The volume goes where the image keeps its data, so that it starts owned by the
                // image's user.
                let data_dir = runtime
                    .image_env(FLEET_TELEMETRY_IMAGE, "FLEET_DATA_DIR")
                    .await?
                    .unwrap_or_else(|| DEFAULT_DATA_DIR.to_owned());
                let service = fleet_telemetry(spec, number, &values, &data_dir).map_err(ExecError::Failed)?;
                log.note(&format!(
                    "Starting {FLEET_TELEMETRY_IMAGE} (chart {version}, revision {number}) on {}, data in volume {}.",
                    service.labels.iter().find(|(k, _)| k == labels::LISTEN).map_or("?", |(_, v)| v.as_str()),
                    volume_name(spec.deployment_id),
                ))
                .await;
                let id = runtime.start(&service).await?;
                ServiceContainer { id, labels: service.labels.into_iter().collect(), running: true }
            }
        };
        let listen = container.label(labels::LISTEN).unwrap_or_default().to_owned();
        let broker = container.label(labels::BROKER).unwrap_or_default().to_owned();
        match wait_ready(runtime, &container.id, &listen, interrupt).await? {
            Readiness::Ready => {}
            Readiness::Interrupted => {
                return Ok(Ended::Stopped(Stop::Cancel));
            }
            Readiness::Exited(code) => {
                log.note(&format!("The container exited with code {code}; its last lines:")).await;
                for line in runtime.tail(&container.id, TAIL).await {
                    log.line(line).await;
                }
                return Ok(Ended::Failed {
                    reason: format!("fleet-telemetry exited with code {code} before it was ready (its log is above)."),
                    exit_code: Some(code),
                });
            }
            Readiness::TimedOut => {
                for line in runtime.tail(&container.id, TAIL).await {
                    log.line(line).await;
                }
                return Ok(Ended::Failed {
                    reason: format!(
                        "fleet-telemetry did not answer ready on http://{listen}/readyz within {} seconds.",
                        HEALTH_DEADLINE.as_secs()
                    ),
                    exit_code: None,
                });
            }
        }
        log.note(&format!("Ready: http://{listen}/readyz answered 200.")).await;
        if let Err(e) = crate::deployments::health_checked(&self.state.db, spec.deployment_id).await {
            tracing::warn!(run = %run.id, error = %e, "could not record a deployment's health check");
        }
        Ok(Ended::Succeeded { outputs: Some(json!({ "url": format!("http://{listen}"), "broker": broker })) })
    }
}

/// Removes the deployment's containers and its data volume.
async fn uninstall(runtime: &ServiceRuntime, spec: &DeploymentRunSpec, log: &LogNote) -> Result<Ended, ExecError> {
    for container in runtime.find(labels::DEPLOYMENT, &spec.deployment_id.to_string()).await? {
        log.note(&format!("Removing container {}.", short(&container.id))).await;
        runtime.remove(&container.id).await?;
    }
    let volume = volume_name(spec.deployment_id);
    log.note(&format!("Removing volume {volume}.")).await;
    runtime.remove_volume(&volume).await?;
    Ok(Ended::Succeeded { outputs: None })
}

enum Readiness {
    Ready,
    Exited(i64),
    TimedOut,
    Interrupted,
}

/// Asks `/readyz` until it answers 200, the container exits, the deadline passes or the run is
/// interrupted.
async fn wait_ready(
    runtime: &ServiceRuntime,
    id: &str,
    listen: &str,
    interrupt: &CancellationToken,
) -> Result<Readiness, ExecError> {
    let deadline = tokio::time::Instant::now() + HEALTH_DEADLINE;
    loop {
        if let Ok(200) = service::probe(listen, "/readyz", Duration::from_secs(5)).await {
            return Ok(Readiness::Ready);
        }
        if let (false, code) = runtime.state(id).await? {
            return Ok(Readiness::Exited(code.unwrap_or(-1)));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(Readiness::TimedOut);
        }
        tokio::select! {
            () = interrupt.cancelled() => return Ok(Readiness::Interrupted),
            () = tokio::time::sleep(HEALTH_INTERVAL) => {}
        }
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The container of revision `number` of a fleet-telemetry deployment: values as environment
/// variables, resources as limits, two fresh loopback ports.
fn fleet_telemetry(
    spec: &DeploymentRunSpec,
    number: i32,
    values: &Value,
    data_dir: &str,
) -> Result<ServiceSpec, String> {
    let port = || service::free_port().map_err(|e| format!("finding a free port: {e}"));
    let listen = format!("127.0.0.1:{}", port()?);
    let broker = format!("127.0.0.1:{}", port()?);
    let mut env = vec![
        ("FLEET_DATA_DIR".to_owned(), data_dir.to_owned()),
        ("FLEET_LISTEN".to_owned(), listen.clone()),
        ("FLEET_BROKER_LISTEN".to_owned(), broker.clone()),
        ("FLEET_INGEST_CLIENT_ID".to_owned(), format!("fleet-ingest-{}", spec.deployment_id.simple())),
    ];
    if let Some(url) = values.pointer("/clickhouse/url").and_then(Value::as_str) {
        env.push(("FLEET_STORE".into(), url.to_owned()));
    }
    if let Some(url) = values.pointer("/broker/external/url").and_then(Value::as_str) {
        env.push(("FLEET_BROKER".into(), url.to_owned()));
    }
    // The hash of the token Fleetplane holds for the fleet API, where the chart would take it.
    let managed = crate::catalog::entry(&spec.service).and_then(|entry| entry.info.managed_token());
    if let Some(crate::catalog::OutputSource::ManagedToken { env: name, chart_value, .. }) = managed
        && let Some(hash) = values.pointer(chart_value).and_then(Value::as_str)
    {
        env.push(((*name).to_owned(), hash.to_owned()));
    }
    let limits = values.pointer("/resources/limits");
    let nano_cpus = limits.and_then(|l| l.get("cpu")).and_then(Value::as_str).and_then(nano_cpus);
    let memory_bytes = limits.and_then(|l| l.get("memory")).and_then(Value::as_str).and_then(memory_bytes);
    Ok(ServiceSpec {
        name: format!("fleetplane-{}-{}-r{number}", spec.release, spec.deployment_id.simple()),
        image: FLEET_TELEMETRY_IMAGE.to_owned(),
        env,
        labels: vec![
            (labels::CLUSTER.into(), spec.cluster_id.to_string()),
            (labels::DEPLOYMENT.into(), spec.deployment_id.to_string()),
            (labels::REVISION.into(), number.to_string()),
            (labels::LISTEN.into(), listen),
            (labels::BROKER.into(), broker),
        ],
        volume: Some((volume_name(spec.deployment_id), data_dir.to_owned())),
        network: "host".into(),
        nano_cpus,
        memory_bytes,
    })
}

/// `500m` or `2` CPUs, as Docker's nano-CPUs.
fn nano_cpus(cpu: &str) -> Option<i64> {
    match cpu.strip_suffix('m') {
        Some(milli) => milli.parse::<i64>().ok().map(|m| m * 1_000_000),
        None => cpu.parse::<f64>().ok().map(|c| (c * 1e9) as i64),
    }
}

/// `256Mi` or `2Gi`, in bytes.
fn memory_bytes(memory: &str) -> Option<i64> {
    let (number, unit) = if let Some(n) = memory.strip_suffix("Gi") {
        (n, 1024 * 1024 * 1024)
    } else {
        (memory.strip_suffix("Mi")?, 1024 * 1024)
    };
    number.parse::<i64>().ok().map(|n| n * unit)
}

impl LogNote {
    /// A line of the service's own output, as the job's output would be.
    async fn line(&self, text: String) {
        let _ = self.sender.send(LogLine { stream: fleetplane_executor::Stream::Stderr, text }).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_read_as_docker_limits() {
        assert_eq!(nano_cpus("500m"), Some(500_000_000));
        assert_eq!(nano_cpus("2"), Some(2_000_000_000));
        assert_eq!(nano_cpus("1.5"), Some(1_500_000_000));
        assert_eq!(memory_bytes("256Mi"), Some(256 * 1024 * 1024));
        assert_eq!(memory_bytes("1Gi"), Some(1024 * 1024 * 1024));
        assert_eq!(memory_bytes("1G"), None);
    }
}
