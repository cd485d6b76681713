//! `bench`: benchmarks, results written into their sections of BENCHMARKS.md.
//!
//! `auth`: the release server is started on loopback with the database under test (SQLite in a
//! temporary directory, or a throwaway PostgreSQL), and `wrk` drives `GET /api/v1/me` with a
//! session cookie at 64 connections: alone, and while 50 more clients keep signing in (each
//! sign-in is an argon2id verification). The load generator shares the machine's cores with
//! the server, as the targets assume.
//!
//! `queue`: the run queue, measured by `server/benches/queue.rs` (which says what each figure
//! includes) on both databases, with a Docker engine for the container-to-log measurement.
//!
//! `fleet`: the fleet telemetry service with ten thousand bikes over mosquitto, measured by
//! `fleet/telemetry/benches/fleet.rs` (which says how) once per store, SQLite and ClickHouse.

use std::{
    fmt::Write as _,
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};

use crate::{
    test::{DockerEngine, Postgres, ensure_packages, free_port},
    ui,
};

const EMAIL: &str = "bench@example.com";
const PASSWORD: &str = "benchmark password";
/// The queue benchmark's p99 target for `POST` → claimed, in milliseconds.
const CLAIM_P99_MS: f64 = 50.0;

struct Options {
    /// The measured seconds of each run: 20 for `auth` unless given, 60 per phase for `fleet`.
    seconds: Option<u32>,
    postgres: bool,
    auth: bool,
    queue: bool,
    claim_runs: u32,
    cycle_runs: u32,
    docker_clusters: u32,
    live: bool,
    streams: u32,
    fleet: bool,
    bikes: u32,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut options = Self {
            seconds: None,
            postgres: true,
            auth: true,
            queue: true,
            live: true,
            streams: 10_000,
            fleet: true,
            bikes: 10_000,
            claim_runs: 1000,
            cycle_runs: 2000,
            docker_clusters: 8,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut number = || -> Result<u32> {
                args.next().with_context(|| format!("{arg} needs a number"))?.parse().with_context(|| arg.clone())
            };
            match arg.as_str() {
                "--seconds" => options.seconds = Some(number()?),
                "--bikes" => options.bikes = number()?,
                "--claim-runs" => options.claim_runs = number()?,
                "--cycle-runs" => options.cycle_runs = number()?,
                "--docker-clusters" => options.docker_clusters = number()?,
                "--streams" => options.streams = number()?,
                "--sqlite-only" => options.postgres = false,
                "--only" => {
                    let only = args.next().map(String::as_str);
                    ensure!(
                        matches!(only, Some("auth" | "queue" | "live" | "fleet")),
                        "--only takes `auth`, `queue`, `live` or `fleet`"
                    );
                    options.auth = only == Some("auth");
                    options.queue = only == Some("queue");
                    options.live = only == Some("live");
                    options.fleet = only == Some("fleet");
                }
                other => bail!(
                    "bench: unexpected argument `{other}` (options: --only auth|queue|live|fleet, --sqlite-only (fleet too), \
                     --seconds N (auth: per run, default 20; fleet: per phase, default 60), --claim-runs N, \
                     --cycle-runs N, --docker-clusters N, --streams N, --bikes N (fleet, default 10000))"
                ),
            }
        }
        Ok(options)
    }
}

/// One wrk run, as wrk reported it.
struct Run {
    requests_per_sec: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    requests: u64,
    errors: u64,
}

struct Row {
    scenario: &'static str,
    database: &'static str,
    run: Run,
    /// (p99 limit in ms, minimum req/s)
    target: (f64, Option<f64>),
}

pub fn run(args: &[String]) -> Result<()> {
    let options = Options::parse(args)?;
    let root = ui::workspace_root();
    if options.auth {
        auth(&options, &root)?;
    }
    if options.queue {
        queue(&options, &root)?;
    }
    if options.live {
        live(&options, &root)?;
    }
    if options.fleet {
        fleet(&options, &root)?;
    }
    Ok(())
}

/// The fleet telemetry benchmark on each store; the bench prints each store's figures as
/// markdown, and this puts them under one heading.
fn fleet(options: &Options, root: &Path) -> Result<()> {
    ensure_packages(&["mosquitto", "clickhouse-server"])?;
    let seconds = options.seconds.unwrap_or(60);
    let mut stores = Vec::new();
    // Other work on these two cores distorts every figure: the report says how loaded they were.
    let load = || {
        fs::read_to_string("/proc/loadavg")
            .map_or_else(|_| "?".into(), |l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
    };
    let mut loads = Vec::new();
    let all = ["sqlite", "clickhouse"];
    for store in if options.postgres { &all[..] } else { &all[..1] } {
        let before = load();
        eprintln!("==> Fleet telemetry on {store}: {} bikes, {seconds} s per phase", options.bikes);
        let output = Command::new(ui::cargo())
            .current_dir(root)
            .args(["bench", "--package", "fleet-telemetry", "--bench", "fleet", "--"])
            .args(["--store", store, "--bikes", &options.bikes.to_string(), "--seconds", &seconds.to_string()])
            .stderr(Stdio::inherit())
            .output()
            .context("running the fleet benchmark")?;
        // One store failing still leaves the other's figures worth writing down.
        if output.status.success() {
            stores.push(String::from_utf8(output.stdout).context("the fleet benchmark's output")?);
        } else {
            eprintln!("the fleet benchmark failed on {store}");
            stores.push(format!("### {store}\n\nThe run failed (its output says where); no figures.\n"));
        }
        loads.push(format!("{store} {before} before, {} after", load()));
    }

    let Machine { cpu, cores, memory_gib, date } = machine()?;
    let mut out = String::new();
    writeln!(out, "## Fleet telemetry\n")?;
    writeln!(
        out,
        "- Command: `cargo xtask bench --only fleet` (release build of `fleet/telemetry/benches/fleet.rs`; {} bikes, \
         {seconds} s per phase)",
        options.bikes
    )?;
    writeln!(
        out,
        "- Machine: {cpu}, {cores} cores, {memory_gib:.0} GiB RAM; mosquitto 2.0 (Debian), the `fleet-telemetry serve` \
         binary, ClickHouse 18.16 (Debian) when it is the store, and the bikes (one process, one rumqttc client and \
         TLS connection each) all on these cores, on loopback"
    )?;
    writeln!(out, "- Date: {date}")?;
    writeln!(out, "- Load average (1, 5, 15 min) around each store's run: {}\n", loads.join("; "))?;
    writeln!(
        out,
        "What is measured: the bikes are registered in-process with a generated key and certificate each, and \
         connect to mosquitto over mutual TLS (client certificates required, the CRL and the per-bike ACL in force); \
         the service is the release `fleet-telemetry serve` reading mosquitto through its shared subscription. \
         *Steady*: each bike sends one telemetry packet a second. *Publish → queryable*: for about a hundred sampled \
         bikes, from handing a packet to the bike's MQTT client to its event arriving on the bike's live stream, \
         which the service sends only after the batch holding it has committed. *Lost / duplicated*: at the end, \
         every bike's stored count (`/telemetry/count`) against the packets of the messages mosquitto acknowledged \
         to it, over all phases. *Peak*: round-robin over the connected bikes, single-packet messages (offered \
         15,000 a second: 30,000 built a backlog in mosquitto that did not drain within minutes) and then `Batch` \
         messages of 25 packets offered at 30,000 packets a second, above the target (an offline buffer, on `bikes/{{id}}/batch`); the figure \
         is `fleet_ingest_stored_total` over the measured window: the ingest acknowledges a message to the broker \
         only after its batch has committed, so what is stored is durably acknowledged. During the peaks, \
         readers send `GET /api/v1/bikes/{{id}}` and ask for one bike's day of history (86,400 packets, seeded \
         first) downsampled to 1 minute, each at the rate its row states. The load is open: a request is sent when \
         it falls due, answered or not the ones before it, so a slow answer holds up no other request. Memory is \
         each process's VmRSS; CPU is each process's CPU time over the window.\n"
    )?;
    for store in &stores {
        writeln!(out, "{}\n", store.trim_end())?;
    }
    println!("{out}");
    write_section(&root.join("BENCHMARKS.md"), "fleet", &out)?;
    eprintln!("Results written to BENCHMARKS.md");
    Ok(())
}

/// Targets for the live streams.
const STREAM_BYTES: f64 = 16.0 * 1024.0;
const BROADCAST_P99_MS: f64 = 100.0;
/// Broadcasts measured: each is one sample per stream.
const BROADCASTS: usize = 50;

fn live(options: &Options, root: &Path) -> Result<()> {
    ensure_packages(&["redis-server", "docker.io", "busybox-static"])?;
    let docker = DockerEngine::start()?;
    let status = Command::new(ui::cargo())
        .current_dir(root)
        .args(["xtask", "images", "--only", "local"])
        .env("DOCKER_HOST", docker.host())
        .status()
        .context("building the local provisioner image")?;
    ensure!(status.success(), "building the local provisioner image failed");
    eprintln!("==> Live streams: {} event streams", options.streams);
    let output = Command::new(ui::cargo())
        .current_dir(root)
        .args(["bench", "--package", "fleetplane", "--bench", "live", "--"])
        .args(["--streams", &options.streams.to_string(), "--broadcasts", &BROADCASTS.to_string()])
        .args(["--redis-server", "/usr/bin/redis-server"])
        .args(["--docker", &options.docker_clusters.to_string()])
        .env("DOCKER_HOST", docker.host())
        .stderr(Stdio::inherit())
        .output()
        .context("running the live-stream benchmark")?;
    ensure!(output.status.success(), "the live-stream benchmark failed");
    drop(docker);
    let results: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).with_context(|| format!("reading `{line}`")))
        .collect::<Result<_>>()?;

    let Machine { cpu, cores, memory_gib, date } = machine()?;
    let mut out = String::new();
    writeln!(out, "## Live streams (SSE)\n")?;
    writeln!(
        out,
        "- Command: `cargo xtask bench --only live` (release build of `server/benches/live.rs`; {} streams, {} \
         local clusters on Docker)",
        options.streams, options.docker_clusters
    )?;
    writeln!(
        out,
        "- Machine: {cpu}, {cores} cores, {memory_gib:.0} GiB RAM; the server is the `fleetplane` binary on \
         SQLite, the load generator a separate process beside it on loopback"
    )?;
    writeln!(out, "- Date: {date}\n")?;
    for result in results.iter().filter(|r| r["bench"] == "memory") {
        let bytes = result["bytes_per_stream"].as_f64().unwrap_or(f64::NAN);
        writeln!(out, "### Memory per open event stream\n")?;
        writeln!(
            out,
            "Each stream is its own idle connection, answered by the lean event-stream path of \
             `server/src/http/serve.rs` (no hyper buffers held for it) and attached to the fan-out \
             (`server/src/live/direct.rs`).\n"
        )?;
        writeln!(out, "| streams | server RSS before | after | per stream | target | met |")?;
        writeln!(out, "|---:|---:|---:|---:|---|---|")?;
        writeln!(
            out,
            "| {} | {:.1} MiB | {:.1} MiB | {:.1} KiB | ≤ 16 KiB | {} |\n",
            result["streams"],
            result["rss_before_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0,
            result["rss_after_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0,
            bytes / 1024.0,
            if bytes <= STREAM_BYTES { "yes" } else { "**no**" }
        )?;
    }
    writeln!(out, "### One event to every stream\n")?;
    writeln!(
        out,
        "The streams' user marks a notification read: one `notification_read` event that each of their \
         streams must get. From sending that request to each stream receiving the event; {BROADCASTS} \
         broadcasts, so streams × {BROADCASTS} samples. With Redis: two servers on one database and one Redis, \
         the request to the first, the streams on the second. The load generator is lean (a plain TCP \
         connection per stream that only looks for the event, one read per event), yet it shares the two cores with the server; \
         the CPU columns are each process's CPU time per broadcast. The server's fan-out writes the event to \
         every stream's socket itself (one shard task per core), so most of its CPU is the kernel sending \
         ten thousand loopback packets, including the receiving side's work. On this virtual \
         machine the same build's p99 varies by about ±15% between runs, and so does its CPU per broadcast.\n"
    )?;
    writeln!(out, "| path | streams | samples | p50 | p99 | max | server CPU | generator CPU | target | met |")?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---|---|")?;
    for result in results.iter().filter(|r| r["bench"] == "broadcast" || r["bench"] == "broadcast-redis") {
        let p99 = result["p99_ms"].as_f64().unwrap_or(f64::NAN);
        let path = if result["bench"] == "broadcast-redis" { "two servers, Redis" } else { "one server" };
        writeln!(
            out,
            "| {path} | {} | {} | {:.1} ms | {p99:.1} ms | {:.1} ms | {:.0} ms | {:.0} ms | p99 ≤ 100 ms | {} |",
            result["streams"],
            result["samples"],
            result["p50_ms"].as_f64().unwrap_or(f64::NAN),
            result["max_ms"].as_f64().unwrap_or(f64::NAN),
            result["server_cpu_ms_per_broadcast"].as_f64().unwrap_or(f64::NAN),
            result["generator_cpu_ms_per_broadcast"].as_f64().unwrap_or(f64::NAN),
            if p99 <= BROADCAST_P99_MS { "yes" } else { "**no**" }
        )?;
    }
    for result in results.iter().filter(|r| r["bench"] == "log-line") {
        let p99 = result["p99_ms"].as_f64().unwrap_or(f64::NAN);
        writeln!(out, "\n### Log line → SSE client\n")?;
        writeln!(
            out,
            "{} local clusters provisioned one after the other by the server's worker with the Docker \
             executor and the local provisioner image, each run's log followed over SSE. For every line \
             written after the stream opened: from the worker reading it off the container's output (the \
             line's `at`) to the client receiving it.\n",
            result["clusters"]
        )?;
        writeln!(out, "| lines | p50 | p99 | max | target | met |")?;
        writeln!(out, "|---:|---:|---:|---:|---|---|")?;
        writeln!(
            out,
            "| {} | {:.1} ms | {p99:.1} ms | {:.1} ms | p99 ≤ 250 ms | {} |",
            result["samples"],
            result["p50_ms"].as_f64().unwrap_or(f64::NAN),
            result["max_ms"].as_f64().unwrap_or(f64::NAN),
            if p99 <= 250.0 { "yes" } else { "**no**" }
        )?;
    }
    println!("{out}");
    write_section(&root.join("BENCHMARKS.md"), "live", &out)?;
    eprintln!("Results written to BENCHMARKS.md");
    Ok(())
}

fn auth(options: &Options, root: &Path) -> Result<()> {
    ensure_packages(&["wrk", "postgresql"])?;
    let status = Command::new(ui::cargo())
        .current_dir(root)
        .args(["build", "--release", "--package", "fleetplane"])
        .status()
        .context("running cargo build")?;
    ensure!(status.success(), "building the release server failed");
    let binary = ui::target_dir(root)?.join("release").join("fleetplane");

    let mut rows = Vec::new();
    let scratch = tempdir()?;
    {
        let dir = scratch.join("sqlite");
        let url = format!("sqlite://{}?mode=rwc", dir.join("fleetplane.db").display());
        rows.extend(measure(&binary, &dir, &url, "SQLite", options.seconds.unwrap_or(20))?);
    }
    if options.postgres {
        let postgres = Postgres::start()?;
        rows.extend(measure(
            &binary,
            &scratch.join("postgres"),
            &format!("{}/postgres", postgres.url()),
            "PostgreSQL",
            options.seconds.unwrap_or(20),
        )?);
    }
    let _ = fs::remove_dir_all(&scratch);

    let report = report(&rows, options.seconds.unwrap_or(20))?;
    println!("{report}");
    write_section(&root.join("BENCHMARKS.md"), "auth", &report)?;
    eprintln!("Results written to BENCHMARKS.md");
    Ok(())
}

fn measure(binary: &Path, dir: &Path, database_url: &str, database: &'static str, seconds: u32) -> Result<Vec<Row>> {
    fs::create_dir_all(dir)?;
    let port = free_port()?;
    let server_env = |command: &mut Command| {
        command
            .env("FLEETPLANE_DATA_DIR", dir)
            .env("DATABASE_URL", database_url)
            .env("FLEETPLANE_LISTEN", format!("127.0.0.1:{port}"))
            .env("FLEETPLANE_RATE_LIMITS", "off")
            .env("RUST_LOG", "warn");
    };

    let mut create = Command::new(binary);
    server_env(&mut create);
    let mut child = create
        .args(["admin", "create-user", "--email", EMAIL, "--username", "bench", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("starting fleetplane admin")?;
    child.stdin.take().context("stdin")?.write_all(format!("{PASSWORD}\n").as_bytes())?;
    ensure!(child.wait()?.success(), "creating the benchmark user failed");

    let mut serve = Command::new(binary);
    server_env(&mut serve);
    let mut server = Server(serve.arg("serve").stdout(Stdio::piped()).spawn().context("starting fleetplane serve")?);
    let mut banner = String::new();
    BufReader::new(server.0.stdout.take().context("stdout")?).read_line(&mut banner)?;
    ensure!(banner.contains("running at"), "the server did not start: {banner}");

    let base = format!("http://127.0.0.1:{port}");
    let cookie = sign_in(port)?;
    let me = |seconds: u32| {
        wrk(&[
            "-t2",
            "-c64",
            &format!("-d{seconds}s"),
            "--latency",
            "-H",
            &format!("Cookie: fp_session={cookie}"),
            &format!("{base}/api/v1/me"),
        ])
    };

    eprintln!("==> {database}: warming up");
    me(3)?;
    eprintln!("==> {database}: GET /api/v1/me, 64 connections, {seconds} s");
    let alone = me(seconds)?;

    eprintln!("==> {database}: the same while 50 clients keep signing in");
    let script = dir.join("login.lua");
    fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.body = '{{\"email\":\"{EMAIL}\",\"password\":\"{PASSWORD}\"}}'\n"
        ),
    )?;
    let flood = Command::new("wrk")
        .args(["-t1", "-c50", &format!("-d{}s", seconds + 8), "--timeout", "30s", "--latency", "-s"])
        .arg(&script)
        .arg(format!("{base}/api/v1/auth/login"))
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the sign-in flood")?;
    std::thread::sleep(Duration::from_secs(4));
    let during = me(seconds)?;
    let flood_output = flood.wait_with_output()?;
    let logins = parse_wrk(&String::from_utf8_lossy(&flood_output.stdout))?;
    drop(server);

    Ok(vec![
        Row { scenario: "GET /api/v1/me, 64 connections", database, run: alone, target: (5.0, Some(20_000.0)) },
        Row {
            scenario: "GET /api/v1/me, 64 connections, during the sign-in flood",
            database,
            run: during,
            target: (20.0, None),
        },
        Row {
            scenario: "POST /api/v1/auth/login, 50 clients (the flood)",
            database,
            run: logins,
            target: (f64::INFINITY, None),
        },
    ])
}

/// The run-queue benchmark on SQLite and PostgreSQL, with a Docker engine for the
/// container-to-log measurement.
fn queue(options: &Options, root: &Path) -> Result<()> {
    ensure_packages(&["postgresql", "docker.io", "busybox-static"])?;
    let docker = DockerEngine::start()?;
    let status = Command::new(ui::cargo())
        .current_dir(root)
        .args(["xtask", "images", "--only", "local"])
        .env("DOCKER_HOST", docker.host())
        .status()
        .context("building the local provisioner image")?;
    ensure!(status.success(), "building the local provisioner image failed");

    let postgres = if options.postgres { Some(Postgres::start()?) } else { None };
    let mut databases = vec![("sqlite".to_owned(), "SQLite")];
    if let Some(postgres) = &postgres {
        databases.push((format!("{}/postgres", postgres.url()), "PostgreSQL"));
    }
    let mut results = Vec::new();
    for (url, label) in &databases {
        eprintln!("==> Run queue on {label}");
        let output = Command::new(ui::cargo())
            .current_dir(root)
            .args(["bench", "--package", "fleetplane", "--bench", "queue", "--"])
            .args(["--database", url, "--label", label])
            .args(["--claim-runs", &options.claim_runs.to_string()])
            .args(["--cycle-runs", &options.cycle_runs.to_string()])
            .args(["--docker", &options.docker_clusters.to_string()])
            .env("DOCKER_HOST", docker.host())
            .stderr(Stdio::inherit())
            .output()
            .context("running the queue benchmark")?;
        ensure!(output.status.success(), "the queue benchmark failed on {label}");
        for line in String::from_utf8_lossy(&output.stdout).lines().filter(|l| l.starts_with('{')) {
            results.push(serde_json::from_str::<serde_json::Value>(line).with_context(|| format!("reading `{line}`"))?);
        }
    }
    drop(postgres);
    drop(docker);

    let report = queue_report(&results, options)?;
    println!("{report}");
    write_section(&root.join("BENCHMARKS.md"), "queue", &report)?;
    eprintln!("Results written to BENCHMARKS.md");
    Ok(())
}

fn queue_report(results: &[serde_json::Value], options: &Options) -> Result<String> {
    let Machine { cpu, cores, memory_gib, date } = machine()?;
    let ms = |value: &serde_json::Value| format!("{:.1} ms", value.as_f64().unwrap_or(f64::NAN));
    let of = |bench: &'static str| results.iter().filter(move |r| r["bench"] == bench);

    let mut out = String::new();
    writeln!(out, "## Run queue\n")?;
    writeln!(
        out,
        "- Command: `cargo xtask bench --only queue` (release build of `server/benches/queue.rs`; {} runs for the \
         claim latency, {} for the cycles, {} local clusters on Docker)",
        options.claim_runs, options.cycle_runs, options.docker_clusters
    )?;
    writeln!(out, "- Machine: {cpu}, {cores} cores, {memory_gib:.0} GiB RAM; the client runs in the same process")?;
    writeln!(out, "- Date: {date}\n")?;

    writeln!(out, "### `POST …/runs` → a worker has claimed the run\n")?;
    writeln!(
        out,
        "One plan run at a time on idle workers, measured up to the moment the worker hands the claimed \
         run's job to its executor (so it also counts preparing the job). The executor answers at once, \
         so Terraform's time is not in it.\n"
    )?;
    writeln!(out, "| database | runs | p50 | p90 | p99 | max | target | met |")?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---|---|")?;
    for result in of("claim") {
        let latency = &result["ms"];
        let met = latency["p99"].as_f64().is_some_and(|p99| p99 <= CLAIM_P99_MS);
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | p99 ≤ {CLAIM_P99_MS} ms | {} |",
            result["database"].as_str().unwrap_or("?"),
            result["runs"],
            ms(&latency["p50"]),
            ms(&latency["p90"]),
            ms(&latency["p99"]),
            ms(&latency["max"]),
            if met { "yes" } else { "**no**" }
        )?;
    }

    writeln!(out, "\n### Claim + complete cycles\n")?;
    writeln!(
        out,
        "Runs queued on as many clusters with no worker running, then drained by separate workers of \
         concurrency 1 (as separate `fleetplane worker` processes would be). Each cycle is a whole run: \
         claim with a lease, plan job, sealed plan stored, apply job, outputs and status recorded.\n"
    )?;
    writeln!(out, "| database | workers | runs | seconds | runs/s |")?;
    writeln!(out, "|---|---:|---:|---:|---:|")?;
    for result in of("cycles") {
        writeln!(
            out,
            "| {} | {} | {} | {:.1} | {:.0} |",
            result["database"].as_str().unwrap_or("?"),
            result["workers"],
            result["runs"],
            result["seconds"].as_f64().unwrap_or(f64::NAN),
            result["per_second"].as_f64().unwrap_or(f64::NAN)
        )?;
    }

    writeln!(out, "\n### Container start → first log line\n")?;
    writeln!(
        out,
        "The Docker executor and the local provisioner image, one cluster at a time (a plan and an apply \
         container each). From the engine's `start` event to the first line received by the worker, and \
         to that line being found in the database by a reader polling every millisecond (an upper bound).\n"
    )?;
    writeln!(out, "| database | containers | received p50 | received max | stored p50 | stored p99 | stored max |")?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|")?;
    for result in of("first-log") {
        let (received, stored) = (&result["received_ms"], &result["stored_ms"]);
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            result["database"].as_str().unwrap_or("?"),
            result["containers"],
            ms(&received["p50"]),
            ms(&received["max"]),
            ms(&stored["p50"]),
            ms(&stored["p99"]),
            ms(&stored["max"])
        )?;
    }
    Ok(out)
}

/// The running server; stopped with SIGTERM (a graceful shutdown) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

/// Signs the benchmark user in over a raw HTTP/1.1 request; returns the session cookie.
fn sign_in(port: u16) -> Result<String> {
    let body = format!("{{\"email\":\"{EMAIL}\",\"password\":\"{PASSWORD}\"}}");
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    write!(
        stream,
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    ensure!(response.starts_with("HTTP/1.1 200"), "sign-in failed: {response}");
    response
        .lines()
        .filter_map(|line| line.strip_prefix("set-cookie: fp_session="))
        .find_map(|rest| rest.split(';').next().map(str::to_owned))
        .context("no session cookie in the sign-in response")
}

fn wrk(args: &[&str]) -> Result<Run> {
    let output = Command::new("wrk").args(args).output().context("running wrk")?;
    ensure!(output.status.success(), "wrk failed: {}", String::from_utf8_lossy(&output.stderr));
    parse_wrk(&String::from_utf8_lossy(&output.stdout))
}

fn parse_wrk(text: &str) -> Result<Run> {
    let number_after = |prefix: &str| -> Option<f64> {
        text.lines().find_map(|line| line.trim().strip_prefix(prefix)).and_then(|rest| rest.trim().parse().ok())
    };
    let percentile = |p: &str| -> Result<f64> {
        let value = text
            .lines()
            .find_map(|line| line.trim().strip_prefix(p).map(str::trim))
            .with_context(|| format!("wrk printed no {p} latency:\n{text}"))?;
        parse_duration_ms(value)
    };
    let requests = text
        .lines()
        .find(|line| line.contains(" requests in "))
        .and_then(|line| line.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("wrk printed no request count:\n{text}"))?;
    let socket_errors: u64 = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("Socket errors:"))
        .map(|rest| rest.split(',').filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    Ok(Run {
        requests_per_sec: number_after("Requests/sec:").with_context(|| format!("no Requests/sec in:\n{text}"))?,
        p50_ms: percentile("50%")?,
        p90_ms: percentile("90%")?,
        p99_ms: percentile("99%")?,
        requests,
        errors: number_after("Non-2xx or 3xx responses:").map_or(0, |n| n as u64) + socket_errors,
    })
}

fn parse_duration_ms(value: &str) -> Result<f64> {
    let split = value.find(|c: char| c.is_ascii_alphabetic()).with_context(|| format!("no unit in `{value}`"))?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().with_context(|| format!("`{value}`"))?;
    Ok(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        other => bail!("unknown unit `{other}` in `{value}`"),
    })
}

/// The machine, the load generator and the date, as the report states them.
struct Machine {
    cpu: String,
    cores: usize,
    memory_gib: f64,
    date: String,
}

fn machine() -> Result<Machine> {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory_gib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next()?.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())?;
    Ok(Machine { cpu, cores, memory_gib, date })
}

fn report(rows: &[Row], seconds: u32) -> Result<String> {
    let Machine { cpu, cores, memory_gib, date } = machine()?;
    let wrk_version = Command::new("wrk").arg("--version").output().map(|o| {
        let text = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        text.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    })?;

    let mut out = String::new();
    writeln!(out, "## Sessions under load (`GET /api/v1/me`)\n")?;
    writeln!(
        out,
        "- Command: `cargo xtask bench` (release build, rate limits off, {seconds} s per run after a 3 s warm-up)"
    )?;
    writeln!(
        out,
        "- Machine: {cpu}, {cores} cores, {memory_gib:.0} GiB RAM; load generator ({wrk_version}) on the same machine"
    )?;
    writeln!(out, "- Date: {date}\n")?;
    writeln!(out, "| scenario | database | req/s | p50 | p90 | p99 | non-2xx / errors | target | met |")?;
    writeln!(out, "|---|---|---:|---:|---:|---:|---:|---|---|")?;
    for row in rows {
        let run = &row.run;
        let (p99_limit, min_rps) = row.target;
        let (target, met) = if p99_limit.is_finite() {
            let mut target = format!("p99 ≤ {p99_limit} ms");
            let mut met = run.p99_ms <= p99_limit && run.errors == 0;
            if let Some(min) = min_rps {
                target.push_str(&format!(", ≥ {min} req/s"));
                met &= run.requests_per_sec >= min;
            }
            (target, if met { "yes" } else { "**no**" })
        } else {
            ("(load)".to_owned(), "")
        };
        writeln!(
            out,
            "| {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {} of {} | {} | {} |",
            row.scenario,
            row.database,
            run.requests_per_sec,
            run.p50_ms,
            run.p90_ms,
            run.p99_ms,
            run.errors,
            run.requests,
            target,
            met
        )?;
    }
    Ok(out)
}

/// Replaces the section `name` of BENCHMARKS.md (between `<!-- bench:name -->` and
/// `<!-- /bench:name -->`), keeping the rest of the file; a new section goes at the end.
fn write_section(path: &Path, name: &str, body: &str) -> Result<()> {
    let (start_marker, end_marker) = (format!("<!-- bench:{name} -->"), format!("<!-- /bench:{name} -->"));
    let section = format!("{start_marker}\n{}\n{end_marker}", body.trim_end());
    let existing = fs::read_to_string(path)
        .unwrap_or_else(|_| "# Benchmarks\n\nRerun any section with the command it names.\n".to_owned());
    let updated = match (existing.find(&start_marker), existing.find(&end_marker)) {
        (Some(start), Some(end)) if end > start => {
            format!("{}{section}{}", &existing[..start], &existing[end + end_marker.len()..])
        }
        _ => format!("{}\n{section}\n", existing.trim_end_matches('\n').to_owned() + "\n"),
    };
    fs::write(path, updated).with_context(|| format!("writing {}", path.display()))
}

fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("fleetplane-bench-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let text = "Running 20s test @ http://127.0.0.1:1/api/v1/me
  2 threads and 64 connections
  Latency Distribution
     50%  812.00us
     75%    1.20ms
     90%    2.50ms
     99%    1.02s
  612345 requests in 20.00s, 200.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  30617.25
Transfer/sec:     10.00MB
";
        let run = parse_wrk(text).expect("parses");
        assert_eq!(run.requests, 612_345);
        assert!((run.p50_ms - 0.812).abs() < 1e-9);
        assert!((run.p99_ms - 1020.0).abs() < 1e-9);
        assert_eq!(run.errors, 12);
        assert!((run.requests_per_sec - 30617.25).abs() < 1e-9);
    }
}
