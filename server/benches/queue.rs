//! Run-queue benchmarks. `cargo xtask bench` runs this against SQLite and a throwaway
//! PostgreSQL and writes the figures into BENCHMARKS.md; by hand:
//!
//! ```text
//! cargo bench -p fleetplane --bench queue -- --database postgres://… --label PostgreSQL
//! ```
//!
//! Everything is real except, in the first two measurements, the executor: the server (HTTP API,
//! database, queue, state backend) listens on loopback, and `Worker`s claim, heartbeat and record
//! runs exactly as in `fleetplane serve`. Their executor answers at once the way a provisioner
//! does (a plan summary line and a plan file, then an outputs line), so the figures are the
//! queue's and not Terraform's.
//!
//! - `claim`: `POST /api/v1/orgs/{org}/clusters/{id}/runs` (a plan) to the moment a worker hands
//!   the claimed run's job to its executor, one run at a time on idle workers. This includes
//!   the wake-up, the claim transaction and preparing the job, so it is an upper bound on the
//!   claim itself.
//! - `cycles`: runs queued on as many clusters while no worker runs; then 4 workers (4 separate
//!   `Worker`s of concurrency 1, as 4 `fleetplane worker` processes would be) claim, plan, apply
//!   and record them until the queue is empty.
//! - `first-log` (with `--docker`): the real Docker executor and the local provisioner image.
//!   For every provisioner container, from the engine's `start` event to its first line being
//!   received by the worker (`run_logs.at`) and to that line being readable in the database.
//!
//! Each result is printed as one JSON object per line on standard output.

use std::{
    net::SocketAddr,
    process::Stdio,
    str::FromStr,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail, ensure};
use fleetplane::{
    accounts::{self, NewAccount},
    config::{Config, ExecutorChoice, Secret},
    entity::{run_logs, runs},
    state::AppState,
    worker::Worker,
};
use fleetplane_executor::{BoxFuture, ExecError, Executor, Found, Job, LogLine, Outcome, Stream, labels};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const ORG: &str = "bench";
const TERMINAL: [&str; 3] = ["succeeded", "failed", "canceled"];

struct Options {
    database: String,
    label: String,
    claim_runs: usize,
    cycle_runs: usize,
    workers: usize,
    docker_clusters: usize,
}

impl Options {
    fn parse() -> Result<Self> {
        let mut options = Self {
            database: String::new(),
            label: String::new(),
            claim_runs: 1000,
            cycle_runs: 2000,
            workers: 4,
            docker_clusters: 0,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--database" => options.database = value()?,
                "--label" => options.label = value()?,
                "--claim-runs" => options.claim_runs = value()?.parse().context("--claim-runs")?,
                "--cycle-runs" => options.cycle_runs = value()?.parse().context("--cycle-runs")?,
                "--workers" => options.workers = value()?.parse().context("--workers")?,
                "--docker" => options.docker_clusters = value()?.parse().context("--docker")?,
                // `cargo bench` adds this.
                "--bench" => {}
                other => bail!(
                    "unexpected argument `{other}` (options: --database URL --label NAME [--claim-runs N] \
                     [--cycle-runs N] [--workers N] [--docker CLUSTERS])"
                ),
            }
        }
        ensure!(!options.database.is_empty(), "--database is required (sqlite://… or postgres://…)");
        if options.label.is_empty() {
            options.label = if options.database.starts_with("postgres") { "PostgreSQL" } else { "SQLite" }.into();
        }
        Ok(options)
    }
}

fn main() -> Result<()> {
    let options = Options::parse()?;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into())).init();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(options))
}

async fn run(options: Options) -> Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let server = Server::start(&options, dir.path(), ExecutorChoice::Process).await?;
        let latencies = claim_latency(&server, options.claim_runs).await?;
        print_result("claim", &options, json!({ "runs": latencies.len(), "ms": summary(&latencies) }));
        let (runs, seconds) = cycles(&server, options.cycle_runs, options.workers).await?;
        print_result(
            "cycles",
            &options,
            json!({ "runs": runs, "workers": options.workers, "seconds": seconds, "per_second": runs as f64 / seconds }),
        );
        server.stop().await;
    }
    if options.docker_clusters > 0 {
        let dir = tempfile::tempdir()?;
        let server = Server::start(&options, dir.path(), ExecutorChoice::Docker).await?;
        let (received, stored) = first_log(&server, options.docker_clusters).await?;
        print_result(
            "first-log",
            &options,
            json!({ "containers": received.len(), "received_ms": summary(&received), "stored_ms": summary(&stored) }),
        );
        server.stop().await;
    }
    Ok(())
}

fn print_result(bench: &str, options: &Options, mut result: Value) {
    result["bench"] = bench.into();
    result["database"] = options.label.clone().into();
    println!("{result}");
}

/// The server on loopback with a user and a token, and no workers of its own.
struct Server {
    state: AppState,
    base: String,
    http: reqwest::Client,
    token: String,
    stop: CancellationToken,
    serving: tokio::task::JoinHandle<Result<()>>,
}

impl Server {
    async fn start(options: &Options, dir: &std::path::Path, executor: ExecutorChoice) -> Result<Self> {
        let mut config = Config::with_data_dir(dir);
        config.database_url = Secret::new(fresh_database(&options.database, dir).await?);
        config.runs.workers = 0;
        config.runs.network = "host".into();
        config.runs.executor = executor;
        config.rate_limits.enabled = false;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        config.listen = addr;
        config.public_url = format!("http://{addr}/").parse()?;
        let state = AppState::build(config).await?;

        let account = NewAccount::parse("bench@example.com", ORG, "benchmark password", true)?;
        let user = accounts::create_account(&state, account, None).await?;
        let (_, token) = accounts::create_token(&state, &user, "bench", None, [127, 0, 0, 1].into()).await?;

        let stop = CancellationToken::new();
        let serving = tokio::spawn(fleetplane::launch(state.clone(), listener, stop.clone().cancelled_owned()));
        Ok(Self { state, base: format!("http://{addr}"), http: reqwest::Client::new(), token, stop, serving })
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let response =
            self.http.post(format!("{}{path}", self.base)).bearer_auth(&self.token).json(&body).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status.is_success(), "POST {path}: {status} {body}");
        Ok(body)
    }

    /// Creates a cluster on the local target; returns its id and its first run's.
    async fn cluster(&self, suffix: &str, simulate: Value) -> Result<(String, Uuid)> {
        let created = self
            .post(
                &format!("/api/v1/orgs/{ORG}/clusters"),
                json!({
                    "target": "local", "name_prefix": "bench", "name_suffix": suffix, "region": "local",
                    "kubernetes_version": "1.33", "vpc_cidr": "10.0.0.0/16",
                    "public_subnets": ["10.0.0.0/20"], "private_subnets": ["10.0.64.0/19"],
                    "node_instance_type": "local.small", "node_min": 1, "node_max": 1, "simulate": simulate,
                }),
            )
            .await?;
        let cluster = created["cluster"]["id"].as_str().context("cluster id")?.to_owned();
        let run = created["run"]["id"].as_str().context("run id")?.parse()?;
        Ok((cluster, run))
    }

    async fn wait_finished(&self, run: Uuid, limit: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            let found = runs::Entity::find_by_id(run).one(&self.state.db).await?.context("the run is gone")?;
            if TERMINAL.contains(&found.status.as_str()) {
                ensure!(found.status == "succeeded", "run {run} ended {}: {:?}", found.status, found.reason);
                return Ok(());
            }
            ensure!(started.elapsed() < limit, "run {run} still {} after {limit:?}", found.status);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn unfinished(&self) -> Result<u64> {
        Ok(runs::Entity::find().filter(runs::Column::Status.is_not_in(TERMINAL)).count(&self.state.db).await?)
    }

    fn workers(&self, executor: Arc<dyn Executor>, count: usize, concurrency: usize) -> CancellationToken {
        let stop = CancellationToken::new();
        for _ in 0..count {
            let worker = Worker::new(self.state.clone(), executor.clone(), concurrency);
            tokio::spawn(worker.run(stop.clone()));
        }
        stop
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.serving.await;
    }
}

/// A fresh database: a file in `dir` for SQLite, a new database on the server for PostgreSQL.
async fn fresh_database(url: &str, dir: &std::path::Path) -> Result<String> {
    if !url.starts_with("postgres") {
        return Ok(format!("sqlite://{}?mode=rwc", dir.join("fleetplane.db").display()));
    }
    use sea_orm::{ConnectionTrait, Database};
    let name = format!("bench_{}", Uuid::now_v7().simple());
    let admin = Database::connect(url).await.context("connecting to PostgreSQL")?;
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await?;
    let (base, _) = url.rsplit_once('/').context("a PostgreSQL URL ends in /database")?;
    Ok(format!("{base}/{name}"))
}

/// Answers like a provisioner, at once, and says when each job reached it.
struct InstantExecutor {
    started: mpsc::UnboundedSender<(Uuid, Instant)>,
}

impl Executor for InstantExecutor {
    fn kind(&self) -> &'static str {
        "bench"
    }

    fn choose<'a>(&'a self, _target: &'a str) -> BoxFuture<'a, Result<&'a dyn Executor, ExecError>> {
        Box::pin(std::future::ready(Ok(self as &dyn Executor)))
    }

    fn run(
        &self,
        job: Job,
        logs: mpsc::Sender<LogLine>,
        _: CancellationToken,
    ) -> BoxFuture<'_, Result<Outcome, ExecError>> {
        let reached = Instant::now();
        let plan = job.env.iter().any(|(key, value)| key == "FP_PHASE" && value == "plan");
        // Every run starts with its plan job: that is when the run reached the executor.
        let run = job.labels.iter().find(|(key, _)| key == labels::RUN).and_then(|(_, run)| Uuid::from_str(run).ok());
        if let (true, Some(run)) = (plan, run) {
            let _ = self.started.send((run, reached));
        }
        Box::pin(async move {
            let line = |text: &str| LogLine { stream: Stream::Stdout, text: text.to_owned() };
            if plan {
                let _ = logs.send(line(r#"FLEETPLANE_PLAN {"add":3,"change":0,"destroy":0}"#)).await;
                Ok(Outcome { exit_code: 0, files: vec![("plan.tfplan".into(), b"bench plan".to_vec())] })
            } else {
                let outputs = r#"{"endpoint":{"sensitive":false,"type":"string","value":"https://bench.local"}}"#;
                let _ = logs.send(line(&format!("FLEETPLANE_OUTPUTS {outputs}"))).await;
                Ok(Outcome { exit_code: 0, files: vec![] })
            }
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Found>, ExecError>> {
        Box::pin(async { Ok(vec![]) })
    }

    fn remove(&self, _: &str) -> BoxFuture<'_, Result<(), ExecError>> {
        Box::pin(async { Ok(()) })
    }
}

/// One plan run at a time on idle workers: from just before the `POST` to the executor.
async fn claim_latency(server: &Server, count: usize) -> Result<Vec<f64>> {
    let (started, mut reached) = mpsc::unbounded_channel();
    let stop = server.workers(Arc::new(InstantExecutor { started }), 1, 4);
    let clusters = 10;
    let mut ids = Vec::new();
    for index in 0..clusters {
        let (cluster, run) = server.cluster(&format!("claim{index}"), Value::Null).await?;
        reached.recv().await.context("the workers stopped")?;
        server.wait_finished(run, Duration::from_secs(10)).await?;
        ids.push(cluster);
    }
    eprintln!("claim: {count} plan runs, one at a time, round the {clusters} clusters");
    let mut latencies = Vec::with_capacity(count);
    for index in 0..count {
        let cluster = &ids[index % clusters];
        let before = Instant::now();
        let queued =
            server.post(&format!("/api/v1/orgs/{ORG}/clusters/{cluster}/runs"), json!({ "action": "plan" })).await?;
        let run: Uuid = queued["id"].as_str().context("run id")?.parse()?;
        let (claimed, at) = tokio::time::timeout(Duration::from_secs(10), reached.recv())
            .await
            .context("no worker took the run within 10 s")?
            .context("the workers stopped")?;
        ensure!(claimed == run, "expected run {run} to be claimed, got {claimed}");
        latencies.push(at.duration_since(before).as_secs_f64() * 1000.0);
        server.wait_finished(run, Duration::from_secs(10)).await?;
    }
    stop.cancel();
    Ok(latencies)
}

/// Queues `count` runs with no worker running, then lets `workers` workers drain the queue.
async fn cycles(server: &Server, count: usize, workers: usize) -> Result<(usize, f64)> {
    eprintln!("cycles: queueing {count} runs on {count} clusters");
    for index in 0..count {
        server.cluster(&format!("cycle{index}"), Value::Null).await?;
    }
    let queued = server.unfinished().await?;
    ensure!(queued == count as u64, "{queued} runs queued, expected {count}");
    eprintln!("cycles: {workers} workers draining the queue");
    let (started, mut reached) = mpsc::unbounded_channel();
    let began = Instant::now();
    let stop = server.workers(Arc::new(InstantExecutor { started }), workers, 1);
    let drain = tokio::spawn(async move { while reached.recv().await.is_some() {} });
    while server.unfinished().await? > 0 {
        ensure!(began.elapsed() < Duration::from_secs(600), "the queue did not drain within 10 minutes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = began.elapsed().as_secs_f64();
    stop.cancel();
    drain.abort();
    let failed = runs::Entity::find().filter(runs::Column::Status.ne("succeeded")).count(&server.state.db).await?;
    ensure!(failed == 0, "{failed} runs did not succeed");
    Ok((count, seconds))
}

/// Local clusters provisioned one at a time by the Docker executor; for each container, the
/// milliseconds from its start to its first line received, and to that line stored.
async fn first_log(server: &Server, clusters: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut events = tokio::process::Command::new("docker")
        .args(["events", "--format", "{{json .}}", "--filter", "type=container", "--filter", "event=start"])
        .args(["--filter", &format!("label={}=true", labels::MANAGED)])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting `docker events` (is DOCKER_HOST set?)")?;
    let mut lines = BufReader::new(events.stdout.take().context("stdout")?).lines();

    let executor = fleetplane::worker::executor(&server.state).await?;
    let stop = server.workers(executor, 1, 1);
    let mut pending = Vec::new();
    for index in 0..clusters {
        pending.push(server.cluster(&format!("docker{index}"), json!({ "step_seconds": 0 })).await?.1);
    }
    eprintln!("first-log: {clusters} local clusters with the Docker executor, one at a time");

    let (mut received, mut stored) = (Vec::new(), Vec::new());
    // Plan and apply: two containers per cluster.
    while received.len() < clusters * 2 {
        let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .context("no provisioner container started within 120 s")??
            .context("`docker events` ended")?;
        let event: Value = serde_json::from_str(&line)?;
        let nanos = event["timeNano"].as_u64().context("timeNano")?;
        let start = UNIX_EPOCH + Duration::from_nanos(nanos);
        let run: Uuid = event["Actor"]["Attributes"][labels::RUN].as_str().context("run label")?.parse()?;
        let first = loop {
            let since = chrono::DateTime::<chrono::Utc>::from(start);
            let found = run_logs::Entity::find()
                .filter(run_logs::Column::RunId.eq(run))
                .filter(run_logs::Column::At.gte(since))
                .order_by_asc(run_logs::Column::Seq)
                .one(&server.state.db)
                .await?;
            if let Some(found) = found {
                break found;
            }
            ensure!(
                SystemTime::now().duration_since(start).unwrap_or_default() < Duration::from_secs(60),
                "no line from run {run}'s container within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let seen = SystemTime::now();
        let at: SystemTime = first.at.into();
        received.push(at.duration_since(start).unwrap_or_default().as_secs_f64() * 1000.0);
        stored.push(seen.duration_since(start).unwrap_or_default().as_secs_f64() * 1000.0);
    }
    for run in pending {
        server.wait_finished(run, Duration::from_secs(300)).await?;
    }
    stop.cancel();
    Ok((received, stored))
}

/// p50, p90, p99 and max of `samples` (milliseconds).
fn summary(samples: &[f64]) -> Value {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |p: f64| {
        if sorted.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    };
    json!({ "p50": at(50.0), "p90": at(90.0), "p99": at(99.0), "max": at(100.0) })
}
