//! Jobs as Docker containers, through bollard.
//!
//! The container is created from `<image prefix><target>:<tag>`, its inputs are copied into
//! `/work` before it starts, its output is followed line by line, and its result files are
//! copied out after it exits; then it is removed. Labels identify the run, attempt and worker,
//! so a restarted worker can find containers it no longer watches.

use std::{collections::HashMap, io::Read, time::Duration};

use bollard::{
    Docker,
    container::LogOutput,
    models::{ContainerCreateBody, ContainerSummaryStateEnum, HostConfig},
    query_parameters::{
        CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, KillContainerOptionsBuilder,
        ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
        UploadToContainerOptionsBuilder, WaitContainerOptionsBuilder,
    },
};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    BoxFuture, ExecError, Executor, Found, Job, LineSplitter, LogLine, MAX_OUTPUT_FILE, Outcome, Stream, labels,
    output_too_large,
};

const WORK_DIR: &str = "/work";

/// How jobs' containers are made.
#[derive(Clone, Debug)]
pub struct DockerSettings {
    /// Image name before the target: `fleetplane/provisioner-` gives `fleetplane/provisioner-local`.
    pub image_prefix: String,
    pub image_tag: String,
    /// Docker network mode: `bridge` (default), `host`, `none` or a network's name.
    pub network: String,
    pub cpus: f64,
    pub memory_mb: u64,
    /// How long an interrupted job may take to stop before it is killed.
    pub grace: Duration,
    /// The engine's address (`unix:///var/run/docker.sock`, `tcp://…`); `DOCKER_HOST` or the
    /// default socket when not given.
    pub host: Option<String>,
}

pub struct DockerExecutor {
    docker: Docker,
    settings: DockerSettings,
}

impl DockerExecutor {
    /// Connects to the engine at the settings' host (or `DOCKER_HOST`, or the default socket)
    /// and checks it answers.
    pub async fn connect(settings: DockerSettings) -> Result<Self, ExecError> {
        let docker = match &settings.host {
            Some(host) => Docker::connect_with_host(host),
            None => Docker::connect_with_defaults(),
        };
        let docker = docker
            .map_err(|e| ExecError::Unavailable(format!("no Docker engine: {e}")))?
            .negotiate_version()
            .await
            .map_err(|e| ExecError::Unavailable(format!("the Docker engine does not answer: {e}")))?;
        docker.ping().await.map_err(|e| ExecError::Unavailable(format!("the Docker engine does not answer: {e}")))?;
        Ok(Self { docker, settings })
    }

    fn image(&self, target: &str) -> String {
        format!("{}{target}:{}", self.settings.image_prefix, self.settings.image_tag)
    }

    async fn create(&self, job: &Job) -> Result<String, ExecError> {
        let image = self.image(&job.target);
        let labels: HashMap<String, String> =
            job.labels.iter().cloned().chain([(labels::MANAGED.to_owned(), "true".to_owned())]).collect();
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            env: Some(job.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(labels),
            working_dir: Some(WORK_DIR.into()),
            host_config: Some(HostConfig {
                network_mode: Some(self.settings.network.clone()),
                nano_cpus: Some((self.settings.cpus * 1e9) as i64),
                memory: Some(i64::try_from(self.settings.memory_mb * 1024 * 1024).unwrap_or(i64::MAX)),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(&job.name).build();
        match self.docker.create_container(Some(options), body).await {
            Ok(created) => Ok(created.id),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                Err(ExecError::Unavailable(format!(
                    "the provisioner image {image} is not on the Docker engine: build it (cargo xtask images)"
                )))
            }
            Err(e) => Err(ExecError::Unavailable(format!("creating the container: {e}"))),
        }
    }

    async fn upload(&self, id: &str, files: &[(String, Vec<u8>)]) -> Result<(), ExecError> {
        if files.is_empty() {
            return Ok(());
        }
        let mut archive = tar::Builder::new(Vec::new());
        for (name, contents) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(contents.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            archive
                .append_data(&mut header, name, contents.as_slice())
                .map_err(|e| ExecError::Failed(format!("packing {name}: {e}")))?;
        }
        let bytes = archive.into_inner().map_err(|e| ExecError::Failed(format!("packing inputs: {e}")))?;
        let options = UploadToContainerOptionsBuilder::new().path(WORK_DIR).build();
        self.docker
            .upload_to_container(id, Some(options), bollard::body_full(bytes.into()))
            .await
            .map_err(|e| ExecError::Failed(format!("copying inputs into the container: {e}")))
    }

    /// Copies the named files out of the stopped container; absent ones are skipped, and one
    /// over [`MAX_OUTPUT_FILE`] fails the job.
    async fn download(&self, id: &str, names: &[String]) -> Result<Vec<(String, Vec<u8>)>, ExecError> {
        let mut files = Vec::new();
        for name in names {
            let options = DownloadFromContainerOptionsBuilder::new().path(&format!("{WORK_DIR}/{name}")).build();
            let archive = self.docker.download_from_container(id, Some(options));
            let Some(bytes) = collect_capped(archive, MAX_OUTPUT_FILE + ARCHIVE_OVERHEAD, name).await? else {
                continue;
            };
            let mut archive = tar::Archive::new(bytes.as_slice());
            let Ok(mut entries) = archive.entries() else { continue };
            if let Some(Ok(entry)) = entries.next() {
                let mut contents = Vec::new();
                if entry.take(MAX_OUTPUT_FILE as u64 + 1).read_to_end(&mut contents).is_ok() {
                    if contents.len() > MAX_OUTPUT_FILE {
                        return Err(output_too_large(name));
                    }
                    files.push((name.clone(), contents));
                }
            }
        }
        Ok(files)
    }

    async fn signal(&self, id: &str, signal: &str) {
        let options = KillContainerOptionsBuilder::new().signal(signal).build();
        if let Err(e) = self.docker.kill_container(id, Some(options)).await {
            tracing::debug!(container = id, signal, error = %e, "signal not delivered (the container may have exited)");
        }
    }

    async fn run_job(
        &self,
        job: Job,
        logs: mpsc::Sender<LogLine>,
        interrupt: CancellationToken,
    ) -> Result<Outcome, ExecError> {
        let id = self.create(&job).await?;
        let result = self.run_created(&id, &job, logs, interrupt).await;
        let options = RemoveContainerOptionsBuilder::new().force(true).build();
        if let Err(e) = self.docker.remove_container(&id, Some(options)).await {
            tracing::warn!(container = %id, error = %e, "could not remove a finished job's container");
        }
        result
    }

    async fn run_created(
        &self,
        id: &str,
        job: &Job,
        logs: mpsc::Sender<LogLine>,
        interrupt: CancellationToken,
    ) -> Result<Outcome, ExecError> {
        self.upload(id, &job.inputs).await?;
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| ExecError::Failed(format!("starting the container: {e}")))?;

        let follow = self.follow_logs(id, logs);
        let wait = async {
            let options = WaitContainerOptionsBuilder::new().build();
            match self.docker.wait_container(id, Some(options)).next().await {
                Some(Ok(response)) => Ok(response.status_code),
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
                Some(Err(e)) => Err(ExecError::Failed(format!("waiting for the container: {e}"))),
                None => Err(ExecError::Failed("the engine stopped reporting on the container".into())),
            }
        };
        let stopper = async {
            interrupt.cancelled().await;
            self.signal(id, "SIGINT").await;
            tokio::time::sleep(self.settings.grace).await;
            self.signal(id, "SIGKILL").await;
            std::future::pending::<()>().await;
        };
        let (exit_code, ()) = tokio::select! {
            done = async { tokio::join!(wait, follow) } => (done.0?, done.1),
            () = stopper => unreachable!("the stopper never completes"),
        };
        let files = self.download(id, &job.outputs).await?;
        Ok(Outcome { exit_code, files })
    }

    /// Forwards the container's output until it ends.
    async fn follow_logs(&self, id: &str, logs: mpsc::Sender<LogLine>) {
        let options = LogsOptionsBuilder::new().follow(true).stdout(true).stderr(true).build();
        let mut stream = self.docker.logs(id, Some(options));
        let (mut out, mut err) = (LineSplitter::default(), LineSplitter::default());
        while let Some(item) = stream.next().await {
            let (splitter, kind, bytes) = match item {
                Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                    (&mut out, Stream::Stdout, message)
                }
                Ok(LogOutput::StdErr { message }) => (&mut err, Stream::Stderr, message),
                Ok(LogOutput::StdIn { .. }) => continue,
                Err(e) => {
                    tracing::warn!(container = id, error = %e, "log stream ended early");
                    break;
                }
            };
            for text in splitter.push(&bytes) {
                if logs.send(LogLine { stream: kind, text }).await.is_err() {
                    return;
                }
            }
        }
        for (splitter, kind) in [(&mut out, Stream::Stdout), (&mut err, Stream::Stderr)] {
            if let Some(text) = splitter.finish() {
                let _ = logs.send(LogLine { stream: kind, text }).await;
            }
        }
    }
}

/// What a tar archive of one file adds to it: headers (long names and extended attributes
/// included) and padding.
const ARCHIVE_OVERHEAD: usize = 64 * 1024;

/// The chunks of `stream` joined, or `None` when it fails (the file is absent); more than `cap`
/// bytes fail the job, naming `name`, without holding more than `cap` of them.
async fn collect_capped<T: AsRef<[u8]>, E>(
    mut stream: impl futures::Stream<Item = Result<T, E>> + Unpin,
    cap: usize,
    name: &str,
) -> Result<Option<Vec<u8>>, ExecError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { return Ok(None) };
        let chunk = chunk.as_ref();
        if bytes.len() + chunk.len() > cap {
            return Err(output_too_large(name));
        }
        bytes.extend_from_slice(chunk);
    }
    Ok(Some(bytes))
}

impl Executor for DockerExecutor {
    fn kind(&self) -> &'static str {
        "docker"
    }

    fn choose<'a>(&'a self, _target: &'a str) -> BoxFuture<'a, Result<&'a dyn Executor, ExecError>> {
        Box::pin(std::future::ready(Ok(self as &dyn Executor)))
    }

    fn run(
        &self,
        job: Job,
        logs: mpsc::Sender<LogLine>,
        interrupt: CancellationToken,
    ) -> BoxFuture<'_, Result<Outcome, ExecError>> {
        Box::pin(self.run_job(job, logs, interrupt))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Found>, ExecError>> {
        Box::pin(async move {
            let filters = HashMap::from([("label", vec![format!("{}=true", labels::MANAGED)])]);
            let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
            let containers = self
                .docker
                .list_containers(Some(options))
                .await
                .map_err(|e| ExecError::Unavailable(format!("listing containers: {e}")))?;
            Ok(containers
                .into_iter()
                .filter_map(|c| {
                    Some(Found {
                        running: c.state == Some(ContainerSummaryStateEnum::RUNNING),
                        labels: c.labels.unwrap_or_default().into_iter().collect(),
                        id: c.id?,
                    })
                })
                .collect())
        })
    }

    fn remove(&self, id: &str) -> BoxFuture<'_, Result<(), ExecError>> {
        let id = id.to_owned();
        Box::pin(async move {
            let options = RemoveContainerOptionsBuilder::new().force(true).build();
            self.docker
                .remove_container(&id, Some(options))
                .await
                .map_err(|e| ExecError::Failed(format!("removing container {id}: {e}")))
        })
    }
}

#[cfg(test)]
mod tests {
    use futures::stream;

    use super::*;

    fn chunks(sizes: &[usize]) -> impl futures::Stream<Item = Result<Vec<u8>, ()>> + Unpin {
        stream::iter(sizes.iter().map(|&size| Ok(vec![b'x'; size])).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn an_archive_within_the_cap_is_collected_whole() {
        let bytes = collect_capped(chunks(&[400, 600]), 1000, "plan.tfplan").await.expect("within the cap");
        assert_eq!(bytes.map(|b| b.len()), Some(1000));
    }

    #[tokio::test]
    async fn an_archive_over_the_cap_fails_the_job_naming_the_file() {
        let error = collect_capped(chunks(&[400, 600, 1]), 1000, "terraform.tfstate").await.expect_err("over the cap");
        let ExecError::Failed(why) = error else { panic!("expected Failed, got {error:?}") };
        assert!(why.contains("terraform.tfstate") && why.contains("MiB"), "{why}");
    }

    #[tokio::test]
    async fn stops_reading_as_soon_as_the_cap_is_passed() {
        let mut read = 0;
        let endless = stream::repeat_with(|| {
            read += 1;
            Ok::<_, ()>(vec![0u8; 4096])
        });
        let result = collect_capped(endless, 10 * 4096, "outputs.json").await;
        assert!(result.is_err());
        assert_eq!(read, 11, "one chunk past the cap is read, no more");
    }

    #[tokio::test]
    async fn a_failed_download_is_an_absent_file() {
        let failing = stream::iter(vec![Ok(vec![1u8; 10]), Err("no such file")]);
        assert_eq!(collect_capped(failing, 1000, "plan.tfplan").await.expect("not a job failure"), None);
    }
}
