//! `auto` against a real engine that is away at first and answers later: cloud jobs never fall
//! back to host processes, and the engine is asked again once `reprobe` has passed.
//!
//! The engine "comes back" through a proxy socket that starts forwarding to the real engine
//! (`DOCKER_HOST`, set by `cargo xtask test`) only when the test says so.

use std::{path::Path, time::Duration};

use fleetplane_executor::{
    ExecError, Executor,
    auto::{AutoExecutor, AutoSettings},
    docker::DockerSettings,
    process::{ProcessExecutor, ProcessSettings},
};
use tokio::net::{UnixListener, UnixStream};

fn engine_socket() -> String {
    let host = std::env::var("DOCKER_HOST").expect("DOCKER_HOST is not set: run `cargo xtask test`");
    host.strip_prefix("unix://").expect("DOCKER_HOST is a unix socket").to_owned()
}

fn settings(socket: &Path, reprobe: Duration) -> AutoSettings {
    AutoSettings {
        docker: DockerSettings {
            image_prefix: "fleetplane/provisioner-".to_owned(),
            image_tag: "latest".to_owned(),
            network: "none".to_owned(),
            cpus: 1.0,
            memory_mb: 256,
            grace: Duration::from_secs(5),
            host: Some(format!("unix://{}", socket.display())),
        },
        reprobe,
    }
}

fn process(dir: &Path) -> Result<ProcessExecutor, String> {
    ProcessExecutor::new(ProcessSettings {
        jobs_dir: dir.join("jobs"),
        terraform: "/usr/local/bin/terraform".into(),
        grace: Duration::from_secs(5),
    })
    .map_err(|e| e.to_string())
}

/// From now on, `socket` forwards every connection to the real engine.
fn bring_engine_back(socket: &Path) {
    let listener = UnixListener::bind(socket).expect("binding the proxy socket");
    let engine = engine_socket();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let engine = engine.clone();
            tokio::spawn(async move {
                if let Ok(mut upstream) = UnixStream::connect(&engine).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
}

async fn chosen(executor: &AutoExecutor, target: &str) -> Result<&'static str, ExecError> {
    executor.choose(target).await.map(|chosen| chosen.kind())
}

#[tokio::test]
#[ignore = "needs a Docker engine: run `cargo xtask test`"]
async fn without_an_engine_cloud_jobs_wait_and_local_jobs_run_as_processes_until_the_engine_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("docker.sock");
    let executor = AutoExecutor::new(settings(&socket, Duration::ZERO), process(dir.path())).await;

    let refused = chosen(&executor, "aws-eks").await.expect_err("a cloud job must not fall back to the host");
    let ExecError::Unavailable(why) = &refused else { panic!("expected Unavailable, got {refused:?}") };
    assert!(why.contains("FLEETPLANE_EXECUTOR=process"), "the reason says how to allow processes: {why}");
    assert_eq!(chosen(&executor, "local").await.expect("local falls back"), "process");
    assert_eq!(executor.current_kind(), "process");

    bring_engine_back(&socket);
    assert_eq!(chosen(&executor, "aws-eks").await.expect("the engine answers now"), "docker");
    assert_eq!(chosen(&executor, "local").await.expect("local uses the engine too"), "docker");
    assert_eq!(executor.current_kind(), "docker");
}

#[tokio::test]
#[ignore = "needs a Docker engine: run `cargo xtask test`"]
async fn the_engine_is_asked_again_only_once_reprobe_has_passed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("docker.sock");
    let executor = AutoExecutor::new(settings(&socket, Duration::from_secs(3600)), process(dir.path())).await;

    bring_engine_back(&socket);
    let refused = chosen(&executor, "gcp-gke").await.expect_err("not asked again within the hour");
    assert!(matches!(refused, ExecError::Unavailable(_)), "{refused:?}");
    assert_eq!(executor.current_kind(), "process");
}

#[tokio::test]
async fn without_an_engine_or_processes_even_local_jobs_wait_and_say_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("docker.sock");
    let executor = AutoExecutor::new(settings(&socket, Duration::ZERO), Err("no terraform binary".to_owned())).await;

    let refused = chosen(&executor, "local").await.expect_err("nothing can run it");
    let ExecError::Unavailable(why) = &refused else { panic!("expected Unavailable, got {refused:?}") };
    assert!(why.contains("no terraform binary"), "{why}");
    assert_eq!(executor.current_kind(), "none");
}
