//! Workers: take runs from the queue and carry them out with an executor.
//!
//! A worker holds each run it claims with a lease, renewed by a heartbeat that also notices a
//! cancel request. A run is planned in one job and applied in another (with the saved plan,
//! kept sealed in between, so an approval approves exactly what will be applied). The job's
//! output is stored line by line, with secrets scrubbed, before anything else sees it. Jobs
//! left behind by a worker that died are found by their labels and removed. Deployment runs are
//! carried out by `worker::deploy` (the `local` target) and `worker::helm` (cloud clusters).
//! The pool also runs the process's retention janitor ([`crate::janitor`]).

mod deploy;
mod helm;
mod logs;

pub use logs::LogHealth;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use chrono::Utc;
use fleetplane_executor::{ExecError, Executor, Job, LogLine, Stream, labels};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, Set, TransactionTrait, sea_query::Expr,
};
use serde_json::{Map, Value};
use tokio::{
    sync::{
        Semaphore,
        broadcast::{self, error::TryRecvError},
        mpsc,
    },
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    bus::Signal,
    clusters::spec::StateBackend,
    config::ExecutorChoice,
    crypto::Sealed,
    entity::{cloud_accounts, runs, workers},
    queue::{self, Beat, Claimed},
    runs::{Action, RunSpec, status},
    state::AppState,
};

/// How often a worker shows it is alive, reaps expired leases, and looks for orphaned jobs.
const PRESENCE: Duration = Duration::from_secs(5);
/// How long a worker waits for a wake-up before looking at the queue anyway.
const POLL: Duration = Duration::from_secs(2);

/// How often an `auto` executor without an engine asks for one again.
const REPROBE: Duration = Duration::from_secs(10);

/// Builds the executor the configuration asks for. `auto` runs jobs in containers when a Docker
/// engine answers (asking again later when it does not), and without one runs only `local`
/// jobs as processes: never a cloud target's Terraform on the host unasked.
pub async fn executor(state: &AppState) -> anyhow::Result<Arc<dyn Executor>> {
    use fleetplane_executor::{
        auto::{AutoExecutor, AutoSettings},
        docker::{DockerExecutor, DockerSettings},
        process::{ProcessExecutor, ProcessSettings},
    };
    let runs = &state.config.runs;
    let docker_settings = DockerSettings {
        image_prefix: runs.image_prefix.clone(),
        image_tag: runs.image_tag.clone(),
        network: runs.network.clone(),
        cpus: runs.cpus,
        memory_mb: runs.memory_mb,
        grace: Duration::from_secs(runs.grace_secs),
        host: None,
    };
    let process = || -> anyhow::Result<ProcessExecutor> {
        let terraform = which(&runs.terraform).with_context(|| {
            format!(
                "the process executor needs Terraform, and `{}` is not on PATH (FLEETPLANE_TERRAFORM)",
                runs.terraform.display()
            )
        })?;
        Ok(ProcessExecutor::new(ProcessSettings {
            jobs_dir: state.config.data_dir.join("jobs"),
            terraform,
            grace: Duration::from_secs(runs.grace_secs),
        })?)
    };
    match runs.executor {
        ExecutorChoice::Docker => Ok(Arc::new(DockerExecutor::connect(docker_settings).await?)),
        ExecutorChoice::Process => Ok(Arc::new(process()?)),
        ExecutorChoice::Auto => {
            let process = process().map_err(|e| format!("{e:#}"));
            let settings = AutoSettings { docker: docker_settings, reprobe: REPROBE };
            Ok(Arc::new(AutoExecutor::new(settings, process).await))
        }
    }
}

fn which(program: &std::path::Path) -> Option<std::path::PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_owned());
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Why a job was interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Cancel,
    Timeout,
    /// The lease was lost: another worker or the reaper has the run now.
    Lost,
    Shutdown,
}

/// How a run's work ended, before it is recorded.
enum Ended {
    Succeeded { outputs: Option<Value> },
    AwaitingApproval,
    Failed { reason: String, exit_code: Option<i64> },
    Stopped(Stop),
}

pub struct Worker {
    state: AppState,
    executor: Arc<dyn Executor>,
    id: String,
    concurrency: usize,
    /// Runs this worker is carrying out now.
    active: Mutex<HashSet<Uuid>>,
    /// Log lines of the runs it carries out now that could not be stored, for their outcome.
    lost_lines: Mutex<HashMap<Uuid, u64>>,
    /// The Docker engine that runs deployments on the `local` target, once asked for.
    services: tokio::sync::OnceCell<fleetplane_executor::service::ServiceRuntime>,
}

impl Worker {
    pub fn new(state: AppState, executor: Arc<dyn Executor>, concurrency: usize) -> Arc<Self> {
        let host =
            std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "host".into());
        let id = format!("{host}-{}-{:04x}", std::process::id(), rand::random::<u16>());
        Arc::new(Self {
            state,
            executor,
            id,
            concurrency,
            active: Mutex::default(),
            lost_lines: Mutex::default(),
            services: tokio::sync::OnceCell::new(),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn lease(&self) -> Duration {
        Duration::from_secs(self.state.config.runs.lease_secs)
    }

    /// Works until `shutdown`; then interrupts its jobs, gives their runs back to the queue
    /// and waits for them to stop.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        if let Err(e) = self.register().await {
            tracing::error!(error = %e, "worker could not register; not starting");
            return;
        }
        tracing::info!(worker = %self.id, executor = self.executor.kind(), concurrency = self.concurrency, "worker started");
        let presence = tokio::spawn(self.clone().presence(shutdown.clone()));
        // One per process: a process runs one pool.
        let janitor = tokio::spawn(crate::janitor::run(self.state.clone(), shutdown.clone()));
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let mut signals = self.state.bus.subscribe();
        let mut jobs = JoinSet::new();
        loop {
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                () = shutdown.cancelled() => break,
            };
            // Forget signals that came before this look: the look sees what they announced. One
            // that comes after stays in the receiver and wakes the wait below.
            while let Ok(_) | Err(TryRecvError::Lagged(_)) = signals.try_recv() {}
            match queue::claim(&self.state.db, &self.id, self.lease()).await {
                Ok(Some(claimed)) => {
                    let worker = self.clone();
                    let stop = shutdown.child_token();
                    jobs.spawn(async move {
                        worker.execute(claimed, stop).await;
                        drop(permit);
                    });
                    continue;
                }
                Ok(None) => drop(permit),
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the run queue");
                    drop(permit);
                }
            }
            while jobs.try_join_next().is_some() {}
            tokio::select! {
                () = queued(&mut signals) => {}
                () = tokio::time::sleep(POLL) => {}
                () = shutdown.cancelled() => break,
            }
        }
        while jobs.join_next().await.is_some() {}
        presence.abort();
        if let Err(e) = janitor.await {
            tracing::warn!(error = %e, "the retention janitor failed");
        }
        let stopped = workers::Entity::update_many()
            .col_expr(workers::Column::StoppedAt, Expr::value(Some(Utc::now())))
            .filter(workers::Column::Id.eq(&self.id))
            .exec(&self.state.db)
            .await;
        if let Err(e) = stopped {
            tracing::warn!(error = %e, "could not mark the worker stopped");
        }
        tracing::info!(worker = %self.id, "worker stopped");
    }

    async fn register(&self) -> Result<(), DbErr> {
        let now = Utc::now();
        workers::ActiveModel {
            id: Set(self.id.clone()),
            host: Set(std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default()),
            executor: Set(self.executor.kind().to_owned()),
            concurrency: Set(i32::try_from(self.concurrency).unwrap_or(i32::MAX)),
            started_at: Set(now),
            last_seen_at: Set(now),
            stopped_at: Set(None),
        }
        .insert(&self.state.db)
        .await
        .map(drop)
    }

    /// Every few seconds: show this worker is alive, take back runs of dead workers, remove jobs
    /// nobody watches any more, and ask running deployments whether they are still ready.
    async fn presence(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let seen = workers::Entity::update_many()
                .col_expr(workers::Column::LastSeenAt, Expr::value(Utc::now()))
                .filter(workers::Column::Id.eq(&self.id))
                .exec(&self.state.db)
                .await;
            if let Err(e) = seen {
                tracing::warn!(error = %e, "worker heartbeat failed");
            }
            match queue::reap(&self.state.db).await {
                Ok(0) => {}
                Ok(_) => self.state.wake_workers(),
                Err(e) => tracing::warn!(error = %e, "reaping expired leases failed"),
            }
            match self.sweep().await {
                Ok(()) => drop(self.state.sweeps.inc()),
                Err(e) => tracing::warn!(error = %e, "looking for orphaned jobs failed"),
            }
            if let Err(e) = self.recheck_deployments().await {
                tracing::warn!(error = format!("{e:#}"), "re-checking the health of deployments failed");
            }
            tokio::select! {
                () = tokio::time::sleep(PRESENCE) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Removes jobs of this installation's runs that this worker is not carrying out and whose
    /// worker is gone.
    async fn sweep(&self) -> anyhow::Result<()> {
        let found = self.executor.list().await?;
        if found.is_empty() {
            return Ok(());
        }
        let live: HashSet<String> = workers::Entity::find()
            .filter(workers::Column::StoppedAt.is_null())
            .filter(workers::Column::LastSeenAt.gt(Utc::now() - crate::runs::WORKER_LIVENESS))
            .select_only()
            .column(workers::Column::Id)
            .into_tuple::<String>()
            .all(&self.state.db)
            .await?
            .into_iter()
            .collect();
        // Another Fleetplane (another database) may share the engine: its jobs are its own.
        let found_runs: Vec<Uuid> =
            found.iter().filter_map(|job| job.label(labels::RUN).and_then(|r| r.parse().ok())).collect();
        let known: HashSet<Uuid> = runs::Entity::find()
            .filter(runs::Column::Id.is_in(found_runs))
            .select_only()
            .column(runs::Column::Id)
            .into_tuple::<Uuid>()
            .all(&self.state.db)
            .await?
            .into_iter()
            .collect();
        let active = self.active.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for job in found {
            let worker = job.label(labels::WORKER).unwrap_or_default();
            let Some(run) = job.label(labels::RUN).and_then(|r| r.parse::<Uuid>().ok()).filter(|r| known.contains(r))
            else {
                continue;
            };
            let ours_and_active = worker == self.id && active.contains(&run);
            let owner_alive = worker != self.id && live.contains(worker);
            if ours_and_active || owner_alive {
                continue;
            }
            tracing::warn!(job = %job.id, worker, run = %run, "removing a job no live worker watches");
            self.executor.remove(&job.id).await?;
        }
        Ok(())
    }

    /// Carries out one claimed run (one attempt) and records how it ended.
    async fn execute(self: Arc<Self>, claimed: Claimed, shutdown: CancellationToken) {
        let run = claimed.run;
        self.active.lock().unwrap_or_else(|p| p.into_inner()).insert(run.id);
        let interrupt = CancellationToken::new();
        let stop = Arc::new(Mutex::new(None::<Stop>));
        let set_stop = |why: Stop| {
            let stop = stop.clone();
            let interrupt = interrupt.clone();
            move || {
                stop.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(why);
                interrupt.cancel();
            }
        };
        let heartbeat = tokio::spawn({
            let (db, id, worker, lease) = (self.state.db.clone(), run.id, self.id.clone(), self.lease());
            let (on_cancel, on_lost) = (set_stop(Stop::Cancel), set_stop(Stop::Lost));
            async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    match queue::heartbeat(&db, id, &worker, lease).await {
                        Ok(Beat::Held) => {}
                        Ok(Beat::CancelRequested) => on_cancel(),
                        Ok(Beat::Lost) => {
                            on_lost();
                            return;
                        }
                        Err(e) => tracing::warn!(run = %id, error = %e, "heartbeat failed; retrying"),
                    }
                }
            }
        });
        let limits = tokio::spawn({
            let (on_timeout, on_shutdown) = (set_stop(Stop::Timeout), set_stop(Stop::Shutdown));
            let timeout = Duration::from_secs(self.state.config.runs.timeout_secs);
            async move {
                tokio::select! {
                    () = tokio::time::sleep(timeout) => on_timeout(),
                    () = shutdown.cancelled() => on_shutdown(),
                }
            }
        });

        let ended = self.carry_out(&run, &claimed.token, interrupt).await;
        heartbeat.abort();
        limits.abort();
        // An interrupted job fails or stops; what matters is why it was interrupted. A job that
        // finished anyway keeps its result.
        let stopped = *stop.lock().unwrap_or_else(|p| p.into_inner());
        let ended = match stopped {
            Some(why) if !matches!(ended, Ok(Ended::Succeeded { .. } | Ended::AwaitingApproval)) => {
                Ok(Ended::Stopped(why))
            }
            _ => ended,
        };
        if let Err(e) = self.record(&run, ended).await {
            tracing::error!(run = %run.id, error = format!("{e:#}"), "could not record how a run ended");
        }
        self.active.lock().unwrap_or_else(|p| p.into_inner()).remove(&run.id);
        self.state.wake_workers();
    }

    /// Plans and, unless the run stops there, applies.
    async fn carry_out(
        &self,
        run: &runs::Model,
        token: &str,
        interrupt: CancellationToken,
    ) -> Result<Ended, ExecError> {
        let action = Action::parse(&run.action).unwrap_or(Action::Apply);
        if action.is_deployment() {
            return self.carry_out_deployment(run, interrupt).await;
        }
        let spec: RunSpec = serde_json::from_value(run.spec.clone())
            .map_err(|e| ExecError::Failed(format!("the run's stored spec is unreadable: {e}")))?;
        let environment = self.environment(run, &spec, token).await?;

        let plan_file = if run.status == status::APPLYING {
            let (Some(key_id), Some(bytes)) = (&run.plan_key_id, &run.plan_sealed) else {
                return Ok(Ended::Failed {
                    reason: "The approved plan is missing; retry the run.".into(),
                    exit_code: None,
                });
            };
            let sealed = Sealed { key_id: key_id.clone(), bytes: bytes.clone() };
            self.state
                .keyring
                .open(&sealed, run.id.as_bytes())
                .map_err(|e| ExecError::Failed(format!("the saved plan cannot be opened: {e}")))?
        } else {
            let (outcome, result) = self.job(run, &spec, "plan", &environment, vec![], &interrupt).await?;
            if interrupt.is_cancelled() {
                return Ok(Ended::Stopped(Stop::Cancel));
            }
            if outcome.exit_code != 0 {
                return Ok(Ended::Failed { reason: result.failure("plan"), exit_code: Some(outcome.exit_code) });
            }
            let Some(summary) = result.plan else {
                return Ok(Ended::Failed {
                    reason: "The provisioner did not report a plan summary.".into(),
                    exit_code: Some(outcome.exit_code),
                });
            };
            let plan = outcome.files.into_iter().find(|(name, _)| name == "plan.tfplan").map(|(_, bytes)| bytes);
            let Some(plan) = plan else {
                return Ok(Ended::Failed { reason: "The provisioner did not save a plan.".into(), exit_code: Some(0) });
            };
            if action == Action::Plan {
                self.save_plan(run, &summary, None).await.map_err(|e| ExecError::Failed(e.to_string()))?;
                return Ok(Ended::Succeeded { outputs: None });
            }
            let needs_approval = self.needs_approval(&spec).await.map_err(|e| ExecError::Failed(e.to_string()))?;
            self.save_plan(run, &summary, Some(&plan)).await.map_err(|e| ExecError::Failed(e.to_string()))?;
            if needs_approval {
                return Ok(Ended::AwaitingApproval);
            }
            plan
        };

        let (outcome, result) =
            self.job(run, &spec, "apply", &environment, vec![("plan.tfplan".into(), plan_file)], &interrupt).await?;
        if interrupt.is_cancelled() {
            return Ok(Ended::Stopped(Stop::Cancel));
        }
        if outcome.exit_code != 0 {
            return Ok(Ended::Failed { reason: result.failure("apply"), exit_code: Some(outcome.exit_code) });
        }
        Ok(Ended::Succeeded { outputs: if action == Action::Destroy { None } else { result.outputs } })
    }

    /// Whether the run's cloud account is a `prod` account, whose changes wait for approval.
    async fn needs_approval(&self, spec: &RunSpec) -> Result<bool, DbErr> {
        let Some(id) = spec.cloud_account_id else { return Ok(false) };
        let account = cloud_accounts::Entity::find_by_id(id).one(&self.state.db).await?;
        Ok(account.is_some_and(|a| a.environment == "prod"))
    }

    /// Records the plan summary and, for a plan that will be applied, the sealed plan file;
    /// moves the run on to applying (or waiting for approval, decided by the caller).
    async fn save_plan(&self, run: &runs::Model, summary: &Value, plan: Option<&[u8]>) -> anyhow::Result<()> {
        let mut update = runs::Entity::update_many()
            .col_expr(runs::Column::PlanSummary, Expr::value(Some(summary.clone())))
            .col_expr(runs::Column::UpdatedAt, Expr::value(Utc::now()));
        if let Some(plan) = plan {
            let sealed = self.state.keyring.seal(plan, run.id.as_bytes())?;
            update = update
                .col_expr(runs::Column::PlanKeyId, Expr::value(Some(sealed.key_id)))
                .col_expr(runs::Column::PlanSealed, Expr::value(Some(sealed.bytes)))
                .col_expr(runs::Column::Status, Expr::value(status::APPLYING));
        }
        let txn = self.state.db.begin().await?;
        let changed =
            update.filter(runs::Column::Id.eq(run.id)).filter(runs::Column::LeaseOwner.eq(&self.id)).exec(&txn).await?;
        let moved_on = plan.is_some() && changed.rows_affected == 1;
        if moved_on {
            crate::events::run_changed(&txn, run.id).await?;
        }
        txn.commit().await?;
        if moved_on {
            self.state.events_written();
        }
        Ok(())
    }

    /// The job's environment: the phase, the backend, Terraform variables from the spec, and
    /// short-lived cloud credentials.
    async fn environment(
        &self,
        run: &runs::Model,
        spec: &RunSpec,
        token: &str,
    ) -> Result<Vec<(String, String)>, ExecError> {
        let s = &spec.spec;
        let list = |items: &[String]| serde_json::to_string(items).unwrap_or_else(|_| "[]".into());
        let mut env: Vec<(String, String)> = vec![
            ("FP_DESTROY".into(), if run.action == Action::Destroy.as_str() { "1" } else { "0" }.into()),
            ("TF_VAR_cluster_name".into(), spec.cluster_name.clone()),
            ("TF_VAR_region".into(), s.region.clone()),
            ("TF_VAR_kubernetes_version".into(), s.kubernetes_version.clone()),
            ("TF_VAR_vpc_cidr".into(), s.vpc_cidr.clone()),
            ("TF_VAR_public_subnets".into(), list(&s.public_subnets)),
            ("TF_VAR_private_subnets".into(), list(&s.private_subnets)),
            ("TF_VAR_node_instance_type".into(), s.node_instance_type.clone()),
            ("TF_VAR_node_min".into(), s.node_min.to_string()),
            ("TF_VAR_node_max".into(), s.node_max.to_string()),
            ("TF_VAR_node_desired".into(), s.node_desired.to_string()),
        ];
        if let Some(simulate) = &spec.simulate {
            if let Some(fail_at) = &simulate.fail_at {
                env.push(("TF_VAR_fail_at".into(), fail_at.clone()));
            }
            if let Some(seconds) = simulate.step_seconds {
                env.push(("TF_VAR_step_seconds".into(), seconds.to_string()));
            }
        }
        let state_url = self.state.config.runs.state_url.as_ref().unwrap_or(&self.state.config.public_url);
        match &s.state_backend {
            StateBackend::Fleetplane => {
                let address = state_url
                    .join(&format!("api/v1/state/{}", run.cluster_id))
                    .map_err(|e| ExecError::Failed(format!("state URL: {e}")))?
                    .to_string();
                env.extend([
                    ("FP_BACKEND".into(), "http".into()),
                    ("TF_HTTP_ADDRESS".into(), address.clone()),
                    ("TF_HTTP_LOCK_ADDRESS".into(), address.clone()),
                    ("TF_HTTP_UNLOCK_ADDRESS".into(), address),
                    ("TF_HTTP_USERNAME".into(), "run".into()),
                    ("TF_HTTP_PASSWORD".into(), token.to_owned()),
                ]);
            }
            StateBackend::S3 { bucket, key }
            | StateBackend::Gcs { bucket, key }
            | StateBackend::Azurerm { bucket, key } => {
                let (backend, default_key) = match &s.state_backend {
                    StateBackend::S3 { .. } => ("s3", format!("{}/terraform.tfstate", spec.cluster_name)),
                    StateBackend::Gcs { .. } => ("gcs", spec.cluster_name.clone()),
                    _ => ("azurerm", format!("{}.tfstate", spec.cluster_name)),
                };
                let key = key.clone().unwrap_or(default_key);
                env.push(("FP_BACKEND".into(), backend.into()));
                if backend == "azurerm" {
                    env.push(("FP_BACKEND_STORAGE_ACCOUNT".into(), bucket.clone()));
                    env.push(("FP_BACKEND_CONTAINER".into(), "tfstate".into()));
                } else {
                    env.push(("FP_BACKEND_BUCKET".into(), bucket.clone()));
                    env.push(("FP_BACKEND_REGION".into(), s.region.clone()));
                }
                env.push((if backend == "gcs" { "FP_BACKEND_PREFIX" } else { "FP_BACKEND_KEY" }.into(), key));
            }
        }
        if let (true, Some(account_id)) = (spec.target != "local", spec.cloud_account_id) {
            let account = cloud_accounts::Entity::find_by_id(account_id)
                .one(&self.state.db)
                .await
                .map_err(|e| ExecError::Unavailable(format!("reading the cloud account: {e}")))?
                .ok_or_else(|| ExecError::Failed("the cluster's cloud account no longer exists".into()))?;
            let credentials = crate::cloud_accounts::credentials(&self.state, &account)
                .map_err(|e| ExecError::Failed(format!("the cloud account's credentials: {e}")))?;
            let session = format!("fleetplane-run-{}", run.id.simple());
            let cloud = self.state.clouds.job_environment(&credentials, &session).await.map_err(|e| match e {
                fleetplane_cloud::CloudError::Unreachable { message } => ExecError::Unavailable(message),
                other => ExecError::Failed(format!("the cloud refused credentials for the run: {other}")),
            })?;
            env.extend(cloud);
        }
        Ok(env)
    }

    /// Runs one phase as a job, storing its output as it comes.
    async fn job(
        &self,
        run: &runs::Model,
        spec: &RunSpec,
        phase: &str,
        environment: &[(String, String)],
        inputs: Vec<(String, Vec<u8>)>,
        interrupt: &CancellationToken,
    ) -> Result<(fleetplane_executor::Outcome, JobResult), ExecError> {
        let mut env = environment.to_vec();
        env.push(("FP_PHASE".into(), phase.into()));
        let secrets: Vec<String> = env
            .iter()
            .filter(|(key, _)| is_secret(key))
            .map(|(_, value)| value.clone())
            .filter(|value| value.len() >= 6)
            .collect();
        let job = Job {
            name: format!("fleetplane-{}-{}-{phase}", run.id.simple(), run.attempts),
            target: spec.target.clone(),
            env,
            labels: self.job_labels(run, phase),
            inputs,
            outputs: if phase == "plan" { vec!["plan.tfplan".into()] } else { vec![] },
        };
        self.run_job(run, job, phase, secrets, &[], interrupt).await
    }

    /// The labels that say whose a job is, so that a restarted worker finds it again.
    fn job_labels(&self, run: &runs::Model, phase: &str) -> Vec<(String, String)> {
        vec![
            (labels::RUN.into(), run.id.to_string()),
            (labels::ATTEMPT.into(), run.attempts.to_string()),
            (labels::PHASE.into(), phase.into()),
            (labels::WORKER.into(), self.id.clone()),
        ]
    }

    /// Runs `job` on the executor chosen for its target, its log starting with `notes`, storing
    /// its output as it comes with `secrets` replaced.
    async fn run_job(
        &self,
        run: &runs::Model,
        job: Job,
        phase: &str,
        secrets: Vec<String>,
        notes: &[String],
        interrupt: &CancellationToken,
    ) -> Result<(fleetplane_executor::Outcome, JobResult), ExecError> {
        let target = job.target.clone();
        let executor = self.executor.choose(&target).await?;
        self.executor_used(run, executor.kind()).await;
        let (sender, receiver) = mpsc::channel(1024);
        let recorder = tokio::spawn(logs::record(self.state.clone(), run.id, run.attempts, secrets, receiver));
        let sink = LogNote { sender: sender.clone() };
        sink.note(&format!("Attempt {} of {}: {phase} ({} executor)", run.attempts, run.max_attempts, executor.kind()))
            .await;
        for note in notes {
            sink.note(note).await;
        }
        let outcome = executor.run(job, sender, interrupt.clone()).await;
        drop(sink);
        let result = recorder.await.map_err(|e| ExecError::Failed(format!("log recorder: {e}")))?;
        if result.lost > 0 {
            *self.lost_lines.lock().unwrap_or_else(|p| p.into_inner()).entry(run.id).or_default() += result.lost;
        }
        Ok((outcome?, result))
    }

    /// Adds Fleetplane's `notes` to the run's log, after what is stored of it already.
    async fn notes(&self, run: &runs::Model, secrets: Vec<String>, notes: &[String]) {
        let (sender, receiver) = mpsc::channel(notes.len().max(1));
        let recorder = tokio::spawn(logs::record(self.state.clone(), run.id, run.attempts, secrets, receiver));
        let sink = LogNote { sender };
        for note in notes {
            sink.note(note).await;
        }
        drop(sink);
        match recorder.await {
            Ok(result) if result.lost > 0 => {
                *self.lost_lines.lock().unwrap_or_else(|p| p.into_inner()).entry(run.id).or_default() += result.lost;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(run = %run.id, error = %e, "the log recorder failed"),
        }
    }

    async fn executor_used(&self, run: &runs::Model, kind: &str) {
        let result = runs::Entity::update_many()
            .col_expr(runs::Column::Executor, Expr::value(Some(kind)))
            .filter(runs::Column::Id.eq(run.id))
            .exec(&self.state.db)
            .await;
        if let Err(e) = result {
            tracing::warn!(run = %run.id, error = %e, "could not record the executor");
        }
    }

    /// Records how the attempt ended: a terminal status, waiting for approval, or back to the
    /// queue. Only while this worker still holds the run.
    async fn record(&self, run: &runs::Model, ended: Result<Ended, ExecError>) -> anyhow::Result<()> {
        let lost = self.lost_lines.lock().unwrap_or_else(|p| p.into_inner()).remove(&run.id).unwrap_or(0);
        let db = &self.state.db;
        let current = runs::Entity::find_by_id(run.id).one(db).await?.context("the run disappeared")?;
        let (next, reason, exit_code, outputs) = match ended {
            Ok(Ended::Stopped(Stop::Lost)) => return Ok(()),
            Ok(Ended::Stopped(Stop::Shutdown)) => {
                queue::requeue(db, &current, Some(&self.id), "The worker shut down", false).await?;
                return Ok(());
            }
            Err(ExecError::Unavailable(message)) => {
                queue::requeue(
                    db,
                    &current,
                    Some(&self.id),
                    &format!("The provisioner could not run: {message}"),
                    true,
                )
                .await?;
                return Ok(());
            }
            Err(ExecError::Failed(message)) => {
                (status::FAILED, format!("The run could not be carried out: {message}"), None, None)
            }
            Ok(Ended::Stopped(Stop::Cancel)) => {
                let who =
                    current.reason.as_deref().unwrap_or("Canceled").split(';').next().unwrap_or("Canceled").to_owned();
                (status::CANCELED, format!("{who}; {}", stopped(run)), None, None)
            }
            Ok(Ended::Stopped(Stop::Timeout)) => (
                status::FAILED,
                format!("Timed out after {}; {}", span(self.state.config.runs.timeout_secs), stopped(run)),
                None,
                None,
            ),
            Ok(Ended::Failed { reason, exit_code }) => (status::FAILED, reason, exit_code, None),
            Ok(Ended::AwaitingApproval) => {
                (status::AWAITING_APPROVAL, "Waiting for an admin to approve the plan.".into(), None, None)
            }
            Ok(Ended::Succeeded { outputs }) => {
                let summary = current.plan_summary.as_ref().map(summary_text).unwrap_or_default();
                (status::SUCCEEDED, format!("Completed. {summary}").trim().to_owned(), Some(0), outputs)
            }
        };
        let reason = match lost {
            0 => reason,
            1 => format!("{reason} Its log is incomplete: 1 line could not be stored."),
            _ => format!("{reason} Its log is incomplete: {lost} lines could not be stored."),
        };
        let now = Utc::now();
        let terminal = status::is_terminal(next);
        let txn = db.begin().await?;
        let mut update = runs::Entity::update_many()
            .col_expr(runs::Column::Status, Expr::value(next))
            .col_expr(runs::Column::Reason, Expr::value(Some(reason.clone())))
            .col_expr(runs::Column::LeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(runs::Column::LeaseExpiresAt, Expr::value(Option::<chrono::DateTime<Utc>>::None))
            .col_expr(runs::Column::TokenHash, Expr::value(Option::<String>::None))
            .col_expr(runs::Column::UpdatedAt, Expr::value(now));
        if let Some(code) = exit_code {
            update = update.col_expr(runs::Column::ExitCode, Expr::value(Some(code)));
        }
        if outputs.is_some() {
            update = update.col_expr(runs::Column::Outputs, Expr::value(outputs));
        }
        if terminal {
            update = update
                .col_expr(runs::Column::FinishedAt, Expr::value(Some(now)))
                .col_expr(runs::Column::PlanSealed, Expr::value(Option::<Vec<u8>>::None))
                .col_expr(runs::Column::PlanKeyId, Expr::value(Option::<String>::None));
        }
        let changed =
            update.filter(runs::Column::Id.eq(run.id)).filter(runs::Column::LeaseOwner.eq(&self.id)).exec(&txn).await?;
        if changed.rows_affected == 1 {
            queue::release_locks(&txn, run.id).await?;
            queue::note(&txn, &current, &reason).await?;
            crate::events::run_changed(&txn, run.id).await?;
        }
        txn.commit().await?;
        if changed.rows_affected == 1 {
            self.state.events_written();
        }
        tracing::info!(run = %run.id, status = next, "run attempt ended");
        Ok(())
    }
}

/// What an interrupt stopped, for the run's reason.
fn stopped(run: &runs::Model) -> &'static str {
    if Action::parse(&run.action).is_some_and(Action::is_deployment) {
        "the deployment run was stopped"
    } else {
        "Terraform was stopped"
    }
}

fn is_secret(key: &str) -> bool {
    matches!(
        key,
        "TF_HTTP_PASSWORD"
            | "AWS_ACCESS_KEY_ID"
            | "AWS_SECRET_ACCESS_KEY"
            | "AWS_SESSION_TOKEN"
            | "ARM_CLIENT_SECRET"
            | "GOOGLE_OAUTH_ACCESS_TOKEN"
    )
}

/// `+1 ~0 -0`-style words for a plan summary.
fn summary_text(summary: &Value) -> String {
    let n = |k: &str| summary.get(k).and_then(Value::as_i64).unwrap_or(0);
    format!("Plan: {} to add, {} to change, {} to destroy.", n("add"), n("change"), n("destroy"))
}

/// Sends Fleetplane's own notes into a job's log, in order with its output.
struct LogNote {
    sender: mpsc::Sender<LogLine>,
}

/// Lines starting with this are Fleetplane's notes, not the job's output.
const NOTE: &str = "\u{1}fleetplane-note\u{1}";

impl LogNote {
    async fn note(&self, text: &str) {
        let _ = self.sender.send(LogLine { stream: Stream::Stdout, text: format!("{NOTE}{text}") }).await;
    }
}

/// What a job reported through its marker lines, and the end of its error output.
#[derive(Default)]
struct JobResult {
    plan: Option<Value>,
    outputs: Option<Value>,
    /// Terraform's first errors (at most [`MAX_ERRORS`]).
    errors: Vec<String>,
    stderr_tail: Vec<String>,
    /// The helm provisioner's `FLEETPLANE_RESULT` line (its JSON), when it printed one.
    helm_result: Option<String>,
    /// The `FLEETPLANE_STEP` names, in order.
    steps: Vec<String>,
    /// Lines that could not be stored.
    lost: u64,
}

/// Errors a job's result keeps: the reason quotes the first few, and a job printing errors
/// without end must not take memory without end.
const MAX_ERRORS: usize = 20;

impl JobResult {
    /// Terraform's own error, for the run's reason.
    fn failure(&self, phase: &str) -> String {
        let detail = if self.errors.is_empty() {
            self.stderr_tail.last().cloned().unwrap_or_else(|| "no error output".into())
        } else {
            self.errors.iter().take(3).cloned().collect::<Vec<_>>().join(" / ")
        };
        format!("Terraform failed during {phase}: {detail}")
    }

    /// Reads one line of a job: marker lines fill in the result and are stored as Fleetplane's
    /// own notes, Terraform's errors are remembered for the run's reason, and secrets are
    /// replaced. Returns the stream and text to store.
    fn read(&mut self, line: LogLine, secrets: &[String]) -> (&'static str, String) {
        let mut text = line.text;
        for secret in secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "[redacted]");
            }
        }
        if let Some(note) = text.strip_prefix(NOTE) {
            ("system", note.to_owned())
        } else if let Some(json) = text.strip_prefix("FLEETPLANE_PLAN ") {
            self.plan = serde_json::from_str(json).ok();
            ("system", self.plan.as_ref().map(summary_text).unwrap_or_else(|| "Plan summary unreadable.".into()))
        } else if let Some(json) = text.strip_prefix("FLEETPLANE_OUTPUTS ") {
            let outputs = serde_json::from_str::<Value>(json).ok().map(|o| public_outputs(&o));
            let names =
                outputs.as_ref().and_then(Value::as_object).map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "));
            self.outputs = outputs;
            ("system", format!("Outputs recorded: {} (sensitive outputs are not kept).", names.unwrap_or_default()))
        } else if let Some(step) = text.strip_prefix("FLEETPLANE_STEP ") {
            if self.steps.len() < MAX_ERRORS {
                self.steps.push(step.trim().to_owned());
            }
            ("system", format!("Step: {step}"))
        } else if let Some(json) = text.strip_prefix("FLEETPLANE_RESULT ") {
            // Every field of it is a constant or a number (provisioners/helm/README.md): no
            // secret can be in it, and it is kept as printed.
            self.helm_result = Some(json.to_owned());
            ("system", format!("Result: {json}"))
        } else {
            let stream = if line.stream == Stream::Stderr { "stderr" } else { "stdout" };
            let plain = text.trim_start_matches(['│', '╷', '╵', ' ']).trim_end();
            if let Some(error) = plain.strip_prefix("Error: ")
                && self.errors.len() < MAX_ERRORS
            {
                self.errors.push(error.to_owned());
            }
            if line.stream == Stream::Stderr && !plain.is_empty() {
                self.stderr_tail.push(plain.to_owned());
                if self.stderr_tail.len() > 20 {
                    self.stderr_tail.remove(0);
                }
            }
            (stream, text)
        }
    }
}

/// `45 seconds`, `1 minute`, `2 hours 5 minutes`: a duration as a person would say it.
fn span(seconds: u64) -> String {
    let unit = |n: u64, name: &str| format!("{n} {name}{}", if n == 1 { "" } else { "s" });
    match seconds {
        0..120 if !seconds.is_multiple_of(60) => unit(seconds, "second"),
        _ if seconds < 3600 => unit(seconds / 60, "minute"),
        _ => match (seconds / 3600, seconds % 3600 / 60) {
            (hours, 0) => unit(hours, "hour"),
            (hours, minutes) => format!("{} {}", unit(hours, "hour"), unit(minutes, "minute")),
        },
    }
}

/// Keeps only the outputs Terraform does not mark sensitive, as `name → value`.
fn public_outputs(outputs: &Value) -> Value {
    let kept: Map<String, Value> = outputs
        .as_object()
        .map(|all| {
            all.iter()
                .filter(|(_, o)| !o.get("sensitive").and_then(Value::as_bool).unwrap_or(false))
                .filter_map(|(name, o)| Some((name.clone(), o.get("value")?.clone())))
                .collect()
        })
        .unwrap_or_default();
    Value::Object(kept)
}

/// Completes when the bus says a run may be claimable (or it fell behind, which may hide one).
async fn queued(signals: &mut broadcast::Receiver<Signal>) {
    loop {
        match signals.recv().await {
            Ok(Signal::Queue) | Err(broadcast::error::RecvError::Lagged(_)) => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn durations_read_naturally() {
        let cases = [(45, "45 seconds"), (60, "1 minute"), (90, "90 seconds"), (600, "10 minutes")];
        for (seconds, said) in cases.into_iter().chain([(3600, "1 hour"), (7500, "2 hours 5 minutes")]) {
            assert_eq!(span(seconds), said);
        }
    }

    #[test]
    fn only_public_outputs_are_kept() {
        let outputs = json!({
            "endpoint": { "sensitive": false, "type": "string", "value": "https://k8s" },
            "admin_token": { "sensitive": true, "type": "string", "value": "s3cret" },
        });
        assert_eq!(public_outputs(&outputs), json!({ "endpoint": "https://k8s" }));
    }

    #[test]
    fn a_job_printing_errors_without_end_keeps_only_the_first() {
        let mut result = JobResult::default();
        for n in 0..10_000 {
            let line = LogLine { stream: Stream::Stderr, text: format!("Error: failure number {n}") };
            result.read(line, &[]);
        }
        assert_eq!(result.errors.len(), MAX_ERRORS);
        assert_eq!(result.errors[0], "failure number 0");
        assert_eq!(result.stderr_tail.len(), 20, "the tail is bounded too");
        assert!(
            result.failure("apply").starts_with("Terraform failed during apply: failure number 0 / failure number 1")
        );
    }

    #[test]
    fn failures_quote_terraform_errors() {
        let result = JobResult {
            errors: vec!["local-exec provisioner error".into(), "exit status 1".into()],
            ..JobResult::default()
        };
        assert_eq!(
            result.failure("apply"),
            "Terraform failed during apply: local-exec provisioner error / exit status 1"
        );
        let quiet = JobResult { stderr_tail: vec!["boom".into()], ..JobResult::default() };
        assert_eq!(quiet.failure("plan"), "Terraform failed during plan: boom");
    }
}
