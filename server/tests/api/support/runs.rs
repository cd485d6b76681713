//! Helpers for tests of clusters and runs.

use std::time::{Duration, Instant};

use fleetplane::config::{Config, ExecutorChoice};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::Client;

/// Workers that run jobs with `executor`, with short leases and grace periods so that failure
/// handling shows within a test's time.
pub fn with_workers(config: &mut Config, executor: ExecutorChoice, workers: usize) {
    config.runs.workers = workers;
    config.runs.executor = executor;
    config.runs.lease_secs = 6;
    config.runs.grace_secs = 10;
    // Containers reach the state backend on the host's loopback.
    config.runs.network = "host".into();
}

/// Whether the Docker tests can run here (`cargo xtask test` starts an engine and sets this).
pub fn docker_available() -> bool {
    std::env::var_os("FLEETPLANE_TEST_DOCKER").is_some()
}

/// A cluster on the local target, with simulation options.
pub fn local_cluster(suffix: &str, simulate: Value) -> Value {
    json!({
        "target": "local",
        "name_prefix": "shop",
        "name_suffix": suffix,
        "region": "local",
        "kubernetes_version": "1.33",
        "vpc_cidr": "10.0.0.0/16",
        "public_subnets": ["10.0.0.0/20", "10.0.16.0/20"],
        "private_subnets": ["10.0.64.0/19"],
        "node_instance_type": "local.small",
        "node_min": 1,
        "node_max": 3,
        "simulate": simulate,
    })
}

/// Polls the run until `done` holds for it (at most `seconds`); returns it.
pub async fn wait_for_run(client: &Client, run: &str, seconds: u64, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let current = client.get(&format!("/api/v1/runs/{run}")).await.expect_status(StatusCode::OK).json();
        if done(&current) {
            return current;
        }
        assert!(
            started.elapsed() < Duration::from_secs(seconds),
            "run {run} still {} after {seconds} s: {current}",
            current["status"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for a terminal status.
pub async fn wait_until_finished(client: &Client, run: &str, seconds: u64) -> Value {
    wait_for_run(client, run, seconds, |r| matches!(r["status"].as_str(), Some("succeeded" | "failed" | "canceled")))
        .await
}

/// The whole log of a run, one line per entry.
pub async fn log_text(client: &Client, run: &str) -> String {
    let page = client.get(&format!("/api/v1/runs/{run}/logs?limit=1000")).await.expect_status(StatusCode::OK).json();
    page["chunks"]
        .as_array()
        .map(|c| c.iter().filter_map(|l| l["text"].as_str()).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

/// `docker` with the test engine.
pub fn docker(args: &[&str]) -> String {
    let output = std::process::Command::new("docker").args(args).output().expect("docker CLI");
    assert!(output.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The job containers of `runs` on the engine now, running or not. Tests share one engine and
/// run at once, so each looks only at its own runs.
pub fn job_containers(runs: &[&str]) -> Vec<String> {
    containers("-aq", runs)
}

/// From the engine's event log since `since`: the job containers of `runs` that started, as
/// `run/phase` in order of their start, and the most that were running at once.
pub fn concurrency_of(runs: &[&str], since: std::time::SystemTime) -> (Vec<String>, usize) {
    let seconds =
        |at: std::time::SystemTime| at.duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs().to_string();
    let until = std::time::SystemTime::now() + Duration::from_secs(1);
    let log = docker(&[
        "events",
        "--since",
        &seconds(since - Duration::from_secs(1)),
        "--until",
        &seconds(until),
        "--filter",
        "type=container",
        "--filter",
        "label=dev.fleetplane.managed=true",
        "--format",
        "{{json .}}",
    ]);
    let mut changes: Vec<(i64, i32, String)> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| {
            let run = event["Actor"]["Attributes"]["dev.fleetplane.run"].as_str().unwrap_or_default();
            runs.contains(&run)
        })
        .filter_map(|event| {
            let change = match event["Action"].as_str()? {
                "start" => 1,
                "die" => -1,
                _ => return None,
            };
            let attributes = &event["Actor"]["Attributes"];
            let job = format!(
                "{}/{}",
                attributes["dev.fleetplane.run"].as_str()?,
                attributes["dev.fleetplane.phase"].as_str().unwrap_or("?")
            );
            Some((event["timeNano"].as_i64()?, change, job))
        })
        .collect();
    // An exit and a start at the same instant: the exit first.
    changes.sort_unstable();
    let starts = changes.iter().filter(|(_, change, _)| *change == 1).map(|(_, _, job)| job.clone()).collect();
    let (mut running, mut most) = (0, 0);
    for (_, change, _) in changes {
        running += change;
        most = most.max(running);
    }
    (starts, usize::try_from(most).unwrap_or(0))
}

fn containers(flags: &str, runs: &[&str]) -> Vec<String> {
    runs.iter()
        .flat_map(|run| {
            docker(&["ps", flags, "--filter", &format!("label=dev.fleetplane.run={run}")])
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A cluster of organization `org` on `target`, stored as a finished apply would leave it (no
/// Terraform needed), in any database, a server's running as a process included.
pub async fn seed_cluster(db: &sea_orm::DatabaseConnection, org: &str, target: &str, status: &str) -> String {
    seed_cluster_with(db, org, target, status, None, |_| None).await
}

/// [`seed_cluster`] linked to cloud account `account`, with the Terraform outputs `outputs`
/// makes from the cluster's name.
pub async fn seed_cluster_with(
    db: &sea_orm::DatabaseConnection,
    org: &str,
    target: &str,
    status: &str,
    account: Option<uuid::Uuid>,
    outputs: impl FnOnce(&str) -> Option<Value>,
) -> String {
    use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};

    let org = fleetplane::entity::organizations::Entity::find()
        .filter(fleetplane::entity::organizations::Column::Name.eq(org))
        .one(db)
        .await
        .expect("org")
        .expect("org exists");
    let id = uuid::Uuid::now_v7();
    let spec = fleetplane::clusters::spec::ClusterSpec {
        name_prefix: "fleet".into(),
        name_suffix: id.simple().to_string()[20..].to_owned(),
        region: if target == "local" { "local".into() } else { "eu-west-1".into() },
        kubernetes_version: "1.33".into(),
        vpc_cidr: "10.0.0.0/16".into(),
        public_subnets: vec!["10.0.0.0/20".into()],
        private_subnets: vec!["10.0.64.0/19".into()],
        node_instance_type: if target == "local" { "local.small".into() } else { "m6i.large".into() },
        node_min: 1,
        node_max: 3,
        node_desired: 1,
        state_backend: Default::default(),
    };
    let now = chrono::Utc::now();
    fleetplane::entity::clusters::ActiveModel {
        id: Set(id),
        org_id: Set(org.id),
        cloud_account_id: Set(account),
        name: Set(spec.name()),
        name_key: Set(spec.name()),
        target: Set(target.into()),
        spec: Set(serde_json::to_value(&spec).expect("spec")),
        status: Set(status.into()),
        outputs: Set(outputs(&spec.name())),
        created_by: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await
    .expect("cluster");
    id.to_string()
}
