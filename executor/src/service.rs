//! Long-running service containers on the Docker engine: the `local` target's runtime for
//! deployments.
//!
//! Unlike a job, a service container outlives the run that started it. It is found again by its
//! labels ([`labels`]), so a worker that restarts mid-deploy sees what is already running, and
//! its data lives in a named volume that outlives the container (an upgrade replaces containers
//! and keeps the volume; an uninstall removes both). None of these carry
//! [`crate::labels::MANAGED`]: the worker's sweep of orphaned jobs must never touch them.

use std::{collections::HashMap, time::Duration};

use bollard::{
    Docker,
    container::LogOutput,
    models::{ContainerCreateBody, ContainerSummaryStateEnum, HostConfig, Mount, MountType, VolumeCreateRequest},
    query_parameters::{
        CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
        RemoveVolumeOptionsBuilder,
    },
};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ExecError;

/// Labels of service containers and volumes.
pub mod labels {
    pub const CLUSTER: &str = "fleetplane.cluster";
    pub const DEPLOYMENT: &str = "fleetplane.deployment";
    pub const REVISION: &str = "fleetplane.revision";
    /// The service's HTTP address (`127.0.0.1:port`), for finding it again.
    pub const LISTEN: &str = "fleetplane.listen";
    /// The embedded broker's address.
    pub const BROKER: &str = "fleetplane.broker";
}

/// A service container to start.
#[derive(Clone)]
pub struct ServiceSpec {
    pub name: String,
    pub image: String,
    /// May hold secrets: `Debug` is not derived.
    pub env: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    /// A named volume and where it is mounted.
    pub volume: Option<(String, String)>,
    /// Docker network mode (`host`: the service listens on this machine's loopback).
    pub network: String,
    pub nano_cpus: Option<i64>,
    pub memory_bytes: Option<i64>,
}

/// A service container found by its labels.
#[derive(Clone, Debug)]
pub struct ServiceContainer {
    pub id: String,
    pub labels: HashMap<String, String>,
    pub running: bool,
}

impl ServiceContainer {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

pub struct ServiceRuntime {
    docker: Docker,
}

impl ServiceRuntime {
    /// Connects to the engine at `host` (or `DOCKER_HOST`, or the default socket).
    pub async fn connect(host: Option<&str>) -> Result<Self, ExecError> {
        let docker = match host {
            Some(host) => Docker::connect_with_host(host),
            None => Docker::connect_with_defaults(),
        };
        let docker = docker
            .map_err(|e| ExecError::Unavailable(format!("no Docker engine: {e}")))?
            .negotiate_version()
            .await
            .map_err(|e| ExecError::Unavailable(format!("the Docker engine does not answer: {e}")))?;
        docker.ping().await.map_err(|e| ExecError::Unavailable(format!("the Docker engine does not answer: {e}")))?;
        Ok(Self { docker })
    }

    /// Whether the engine holds `image`.
    pub async fn has_image(&self, image: &str) -> Result<bool, ExecError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(e) => Err(ExecError::Unavailable(format!("asking the engine for {image}: {e}"))),
        }
    }

    /// The value the image's own environment gives `key` (where it keeps its data, say).
    pub async fn image_env(&self, image: &str, key: &str) -> Result<Option<String>, ExecError> {
        let inspected = self
            .docker
            .inspect_image(image)
            .await
            .map_err(|e| ExecError::Unavailable(format!("asking the engine for {image}: {e}")))?;
        let prefix = format!("{key}=");
        Ok(inspected
            .config
            .and_then(|config| config.env)
            .unwrap_or_default()
            .into_iter()
            .find_map(|entry| entry.strip_prefix(&prefix).map(str::to_owned)))
    }

    /// The containers labelled `key=value`, running or not.
    pub async fn find(&self, key: &str, value: &str) -> Result<Vec<ServiceContainer>, ExecError> {
        let filters = HashMap::from([("label", vec![format!("{key}={value}")])]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| ExecError::Unavailable(format!("listing containers: {e}")))?;
        Ok(containers
            .into_iter()
            .filter_map(|c| {
                Some(ServiceContainer {
                    running: c.state == Some(ContainerSummaryStateEnum::RUNNING),
                    labels: c.labels.unwrap_or_default(),
                    id: c.id?,
                })
            })
            .collect())
    }

    /// Whether container `id` is still running, and its exit code once it is not.
    pub async fn state(&self, id: &str) -> Result<(bool, Option<i64>), ExecError> {
        let inspected = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| ExecError::Failed(format!("inspecting container {id}: {e}")))?;
        let state = inspected.state.unwrap_or_default();
        Ok((state.running.unwrap_or(false), state.exit_code))
    }

    /// Creates the volume (labelled like the container) if needed, then creates and starts the
    /// container. Returns its id.
    pub async fn start(&self, spec: &ServiceSpec) -> Result<String, ExecError> {
        let labels: HashMap<String, String> = spec.labels.iter().cloned().collect();
        let mut mounts = Vec::new();
        if let Some((volume, target)) = &spec.volume {
            let request = VolumeCreateRequest {
                name: Some(volume.clone()),
                labels: Some(labels.clone()),
                ..VolumeCreateRequest::default()
            };
            // Creating a volume that exists returns it unchanged.
            self.docker
                .create_volume(request)
                .await
                .map_err(|e| ExecError::Unavailable(format!("creating volume {volume}: {e}")))?;
            mounts.push(Mount {
                target: Some(target.clone()),
                source: Some(volume.clone()),
                typ: Some(MountType::VOLUME),
                ..Mount::default()
            });
        }
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some(spec.network.clone()),
                nano_cpus: spec.nano_cpus,
                memory: spec.memory_bytes,
                mounts: Some(mounts),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(&spec.name).build();
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| ExecError::Failed(format!("creating container {}: {e}", spec.name)))?;
        self.docker
            .start_container(&created.id, None)
            .await
            .map_err(|e| ExecError::Failed(format!("starting container {}: {e}", spec.name)))?;
        Ok(created.id)
    }

    /// Stops (SIGKILL) and removes container `id`; one already gone is fine.
    pub async fn remove(&self, id: &str) -> Result<(), ExecError> {
        let options = RemoveContainerOptionsBuilder::new().force(true).build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(ExecError::Failed(format!("removing container {id}: {e}"))),
        }
    }

    /// Removes volume `name`; one already gone is fine.
    pub async fn remove_volume(&self, name: &str) -> Result<(), ExecError> {
        let options = RemoveVolumeOptionsBuilder::new().force(true).build();
        match self.docker.remove_volume(name, Some(options)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(ExecError::Failed(format!("removing volume {name}: {e}"))),
        }
    }

    /// Whether volume `name` exists.
    pub async fn has_volume(&self, name: &str) -> Result<bool, ExecError> {
        match self.docker.inspect_volume(name).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(e) => Err(ExecError::Unavailable(format!("inspecting volume {name}: {e}"))),
        }
    }

    /// The last `lines` lines the container printed, both streams.
    pub async fn tail(&self, id: &str, lines: usize) -> Vec<String> {
        let options = LogsOptionsBuilder::new().stdout(true).stderr(true).tail(&lines.to_string()).build();
        let mut stream = self.docker.logs(id, Some(options));
        let mut text = Vec::new();
        while let Some(Ok(item)) = stream.next().await {
            if let LogOutput::StdOut { message } | LogOutput::StdErr { message } | LogOutput::Console { message } = item
            {
                text.extend_from_slice(&message);
            }
        }
        String::from_utf8_lossy(&text).lines().map(str::to_owned).collect()
    }
}

/// Asks `http://{address}{path}` once (HTTP/1.0, so the answer ends with the connection) and
/// returns its status code; an error when nothing answers within `timeout`.
pub async fn probe(address: &str, path: &str, timeout: Duration) -> std::io::Result<u16> {
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\nUser-Agent: fleetplane\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 64];
        let mut read = 0;
        // The status line is all that is needed: `HTTP/1.x NNN ...`.
        while read < 12 {
            let n = stream.read(&mut head[read..]).await?;
            if n == 0 {
                break;
            }
            read += n;
        }
        let line = String::from_utf8_lossy(&head[..read]).into_owned();
        line.split_whitespace()
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not HTTP: {line:?}")))
    };
    tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time"))?
}

/// A TCP port on 127.0.0.1 that nothing listens on now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_probe_reads_the_status_code() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buffer = [0u8; 256];
            let _ = socket.read(&mut buffer).await.expect("read");
            socket.write_all(b"HTTP/1.1 503 Service Unavailable\r\n\r\n").await.expect("write");
        });
        assert_eq!(probe(&address, "/readyz", Duration::from_secs(5)).await.expect("answer"), 503);
        server.await.expect("server");
    }

    #[tokio::test]
    async fn a_probe_of_a_closed_port_is_an_error() {
        let port = free_port().expect("port");
        assert!(probe(&format!("127.0.0.1:{port}"), "/readyz", Duration::from_secs(5)).await.is_err());
    }
}
