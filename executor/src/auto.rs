//! `auto`: provisioner containers when a Docker engine answers; without one, local processes for
//! the `local` target only.
//!
//! A cloud target's job runs Terraform with the cloud's credentials, so it never falls back to
//! the host by itself: without an engine it is [`ExecError::Unavailable`] (the run waits and is
//! tried again) with a reason that says how to allow local processes (`FLEETPLANE_EXECUTOR=process`).
//! An engine that did not answer is asked again, at most once per `reprobe`, when a job needs
//! it; once one answers, every job runs in containers.

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::{
    BoxFuture, ExecError, Executor, Found, Job, LogLine, Outcome,
    docker::{DockerExecutor, DockerSettings},
    process::ProcessExecutor,
};

/// The one target whose jobs may run as local processes without being asked to: it simulates a
/// cluster, and holds no cloud credentials.
const LOCAL_TARGET: &str = "local";

#[derive(Clone, Debug)]
pub struct AutoSettings {
    pub docker: DockerSettings,
    /// How long after an engine did not answer it is asked again.
    pub reprobe: Duration,
}

pub struct AutoExecutor {
    settings: AutoSettings,
    /// Local processes, or why they cannot run.
    process: Result<ProcessExecutor, String>,
    /// The engine, once it answered.
    engine: OnceLock<DockerExecutor>,
    probe: Mutex<Probe>,
}

/// When the engine was last asked, and what it said.
struct Probe {
    at: Option<Instant>,
    why: String,
}

impl AutoExecutor {
    /// Asks the engine at once; `process` is the fall-back for the `local` target (or why there
    /// is none).
    pub async fn new(settings: AutoSettings, process: Result<ProcessExecutor, String>) -> Self {
        let executor = Self {
            settings,
            process,
            engine: OnceLock::new(),
            probe: Mutex::new(Probe { at: None, why: String::new() }),
        };
        if let Err(why) = executor.engine().await {
            tracing::warn!(
                reason = %why,
                "no Docker engine yet: local-target runs use Terraform processes, cloud runs wait for the engine"
            );
        }
        executor
    }

    /// The engine, asked again if it did not answer and `reprobe` has passed.
    async fn engine(&self) -> Result<&DockerExecutor, String> {
        if let Some(engine) = self.engine.get() {
            return Ok(engine);
        }
        let mut probe = self.probe.lock().await;
        if let Some(engine) = self.engine.get() {
            return Ok(engine);
        }
        if probe.at.is_none_or(|at| at.elapsed() >= self.settings.reprobe) {
            probe.at = Some(Instant::now());
            match DockerExecutor::connect(self.settings.docker.clone()).await {
                Ok(engine) => {
                    if probe.why.is_empty() {
                        tracing::info!("the Docker engine answers: runs use provisioner containers");
                    } else {
                        tracing::info!("a Docker engine answers now: runs use provisioner containers");
                    }
                    return Ok(self.engine.get_or_init(|| engine));
                }
                Err(e) => probe.why = e.to_string(),
            }
        }
        Err(probe.why.clone())
    }

    fn process(&self, engine: &str) -> Result<&ProcessExecutor, ExecError> {
        self.process.as_ref().map_err(|e| {
            ExecError::Unavailable(format!("no Docker engine answers ({engine}), and local processes cannot run: {e}"))
        })
    }
}

impl Executor for AutoExecutor {
    fn kind(&self) -> &'static str {
        "auto"
    }

    fn current_kind(&self) -> &'static str {
        match (self.engine.get(), &self.process) {
            (Some(engine), _) => engine.kind(),
            (None, Ok(process)) => process.kind(),
            (None, Err(_)) => "none",
        }
    }

    fn choose<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<&'a dyn Executor, ExecError>> {
        Box::pin(async move {
            match self.engine().await {
                Ok(engine) => Ok(engine as &dyn Executor),
                Err(why) if target == LOCAL_TARGET => Ok(self.process(&why)? as &dyn Executor),
                Err(why) if target == crate::HELM_TARGET => Err(ExecError::Unavailable(format!(
                    "no Docker engine answers ({why}); a helm job holds a token for the cluster's API server, so it \
                     runs only in the helm provisioner's container"
                ))),
                Err(why) => Err(ExecError::Unavailable(format!(
                    "no Docker engine answers ({why}); a {target} job runs Terraform with cloud credentials, so it \
                     runs only in a provisioner container, unless FLEETPLANE_EXECUTOR=process allows local processes"
                ))),
            }
        })
    }

    fn run(
        &self,
        job: Job,
        logs: mpsc::Sender<LogLine>,
        interrupt: CancellationToken,
    ) -> BoxFuture<'_, Result<Outcome, ExecError>> {
        Box::pin(async move {
            let target = job.target.clone();
            self.choose(&target).await?.run(job, logs, interrupt).await
        })
    }

    /// The jobs of both: containers (when the engine answers) and job directories, their ids
    /// prefixed with where they are.
    fn list(&self) -> BoxFuture<'_, Result<Vec<Found>, ExecError>> {
        Box::pin(async move {
            let mut found = Vec::new();
            let tagged = |prefix: &str, jobs: Vec<Found>| {
                jobs.into_iter().map(move |job| Found { id: format!("{prefix}:{}", job.id), ..job }).collect::<Vec<_>>()
            };
            if let Ok(engine) = self.engine().await {
                found.extend(tagged("docker", engine.list().await?));
            }
            if let Ok(process) = &self.process {
                found.extend(tagged("process", process.list().await?));
            }
            Ok(found)
        })
    }

    fn remove(&self, id: &str) -> BoxFuture<'_, Result<(), ExecError>> {
        let id = id.to_owned();
        Box::pin(async move {
            match id.split_once(':') {
                Some(("docker", id)) => self.engine().await.map_err(ExecError::Unavailable)?.remove(id).await,
                Some(("process", id)) => {
                    self.process.as_ref().map_err(|e| ExecError::Unavailable(e.clone()))?.remove(id).await
                }
                _ => Err(ExecError::Failed(format!("`{id}` is not a job this executor listed"))),
            }
        })
    }
}
