//! Live-stream benchmarks. `cargo xtask bench --only live` runs this and writes the figures into
//! BENCHMARKS.md; by hand:
//!
//! ```text
//! cargo bench -p fleetplane --bench live -- --streams 10000 --broadcasts 50 [--redis-server /usr/bin/redis-server]
//! ```
//!
//! The server is the real `fleetplane serve` binary in its own process (so that its memory can
//! be read from `/proc`), on SQLite; this program is the load generator beside it, on loopback.
//! Its streams are plain TCP connections read by a small loop each, so that it takes as little
//! of the shared cores as it can; it reports its own CPU time and the server's per broadcast.
//!
//! - `memory`: the server's resident memory before and after `--streams` event streams
//!   (`GET /api/v1/events`, each its own connection) are open and idle, per stream.
//! - `broadcast`: one event every stream must get: the streams' user marks a notification read
//!   (one `notification_read` event on each of their streams). From sending that request to
//!   each stream receiving the event; `--broadcasts` times, so streams × broadcasts samples.
//! - `broadcast-redis` (with `--redis-server`): the same with two servers sharing the database
//!   and a Redis: the request goes to the first, the streams are on the second.
//! - `log-line` (with `--docker N` and `DOCKER_HOST`): N local clusters provisioned one after the
//!   other by the server's worker with the Docker executor and the local provisioner image,
//!   each run's log followed over SSE. For every line, from the moment the worker read it off
//!   the container's output (`at`) to the client receiving it.
//!
//! Each result is printed as one JSON object per line on standard output.

use std::{
    io::BufRead,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, Interest},
    net::TcpStream,
    sync::Semaphore,
};

const BIN: &str = env!("CARGO_BIN_EXE_fleetplane");
const PASSWORD: &str = "a long benchmark password";

struct Options {
    streams: usize,
    broadcasts: usize,
    redis_server: Option<String>,
    /// Local clusters to provision on Docker for the log-latency measurement (0: skip it).
    docker_clusters: usize,
}

impl Options {
    fn parse() -> Result<Self> {
        let mut options = Self { streams: 10_000, broadcasts: 20, redis_server: None, docker_clusters: 0 };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--streams" => options.streams = args.next().context("--streams N")?.parse()?,
                "--broadcasts" => options.broadcasts = args.next().context("--broadcasts N")?.parse()?,
                "--redis-server" => options.redis_server = Some(args.next().context("--redis-server PATH")?),
                "--docker" => options.docker_clusters = args.next().context("--docker N")?.parse()?,
                // `cargo bench` passes this to every bench target.
                "--bench" => {}
                other => bail!("unexpected argument `{other}`"),
            }
        }
        Ok(options)
    }
}

/// A child process, killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Servers' ports, outside the ephemeral range that the benchmark's 10,000 clients draw from.
fn free_port() -> Result<u16> {
    Ok(fleetplane_common::ports::free_port())
}

fn fleetplane(dir: &Path, database_url: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FLEETPLANE_DATA_DIR", dir)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn");
    command
}

fn create_user(dir: &Path, database_url: &str, name: &str) -> Result<()> {
    let mut child = fleetplane(dir, database_url)
        .args(["admin", "create-user", "--email", &format!("{name}@example.com"), "--username", name])
        .arg("--password-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    std::io::Write::write_all(&mut child.stdin.take().context("stdin")?, PASSWORD.as_bytes())?;
    ensure!(child.wait()?.success(), "creating {name} failed");
    Ok(())
}

/// `fleetplane serve` on `port`, returned once it says it is running.
fn serve(dir: &Path, database_url: &str, port: u16, streams: usize, redis: Option<&str>) -> Result<Process> {
    let mut command = fleetplane(dir, database_url);
    command
        .env("FLEETPLANE_LISTEN", format!("127.0.0.1:{port}"))
        .env("FLEETPLANE_WORKERS", "0")
        .env("FLEETPLANE_RATE_LIMITS", "off")
        .env("FLEETPLANE_SSE_MAX_STREAMS_PER_USER", (streams + 10).to_string())
        .env("FLEETPLANE_SESSION_SECRET", "bench-session-secret-0123456789abcdefghij");
    if let Some(url) = redis {
        command.env("REDIS_URL", url);
    }
    let mut child = command.arg("serve").stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
    let mut banner = String::new();
    std::io::BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut banner)?;
    ensure!(banner.contains("running at"), "the server did not start: {banner}");
    Ok(Process(child))
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// CPU time (user and system) `pid` has used, in ms.
fn cpu_ms(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command (which may hold spaces), from the third: utime and stime are the
    // 14th and 15th, in clock ticks of 10 ms.
    let fields: Vec<&str> = stat.rsplit_once(')').context("stat")?.1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(ticks as f64 * 10.0)
}

/// A signed-in client of `base`.
async fn signed_in(base: &str, name: &str) -> Result<(reqwest::Client, String)> {
    let client = reqwest::Client::builder().cookie_store(true).build()?;
    let response = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "email": format!("{name}@example.com"), "password": PASSWORD }))
        .send()
        .await?;
    ensure!(response.status().is_success(), "signing in {name}: {}", response.status());
    let csrf = response
        .cookies()
        .find(|cookie| cookie.name() == "fp_csrf")
        .map(|cookie| cookie.value().to_owned())
        .context("no CSRF cookie")?;
    Ok((client, csrf))
}

async fn post(client: &reqwest::Client, csrf: &str, url: String, body: Value) -> Result<Value> {
    let response = client.post(&url).header("x-csrf-token", csrf).json(&body).send().await?;
    ensure!(response.status().is_success(), "POST {url}: {}", response.status());
    Ok(response.json().await.unwrap_or(Value::Null))
}

/// When each stream got each notification, and how many streams got each one so far.
struct Received {
    at: Vec<std::sync::Mutex<Vec<Instant>>>,
    per_round: Vec<AtomicUsize>,
}

type Arrivals = Arc<Received>;

fn arrivals(streams: usize, rounds: usize) -> Arrivals {
    Arc::new(Received {
        at: (0..streams).map(|_| std::sync::Mutex::new(Vec::with_capacity(rounds))).collect(),
        per_round: (0..rounds).map(|_| AtomicUsize::new(0)).collect(),
    })
}

/// Opens `count` event streams to the server on `port` with `token`; returns once all are open.
/// Each is a plain TCP connection read by a small loop that only looks for the broadcast
/// event: the load generator shares the cores with the server, so it should use little.
async fn open_streams(
    port: u16,
    token: &str,
    count: usize,
    arrivals: Arrivals,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let request: Arc<[u8]> = format!(
        "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\
         Accept: text/event-stream\r\n\r\n"
    )
    .into_bytes()
    .into();
    let connecting = Arc::new(Semaphore::new(200));
    let open = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(count);
    for index in 0..count {
        let (request, connecting, open, arrivals) =
            (request.clone(), connecting.clone(), open.clone(), arrivals.clone());
        tasks.push(tokio::spawn(async move {
            let permit = connecting.acquire_owned().await.expect("semaphore");
            let mut tcp =
                TcpStream::connect(("127.0.0.1", port)).await.unwrap_or_else(|e| panic!("stream {index}: {e}"));
            tcp.write_all(&request).await.unwrap_or_else(|e| panic!("stream {index}: {e}"));
            let mut pending = Vec::with_capacity(1024);
            let mut chunk = [0; 4096];
            let body_start = loop {
                let read = tcp.read(&mut chunk).await.unwrap_or_else(|e| panic!("stream {index}: {e}"));
                assert!(read > 0, "stream {index}: closed before its response head");
                pending.extend_from_slice(&chunk[..read]);
                if let Some(end) = find(&pending, b"\r\n\r\n") {
                    assert!(
                        pending.starts_with(b"HTTP/1.1 200 "),
                        "stream {index}: {}",
                        String::from_utf8_lossy(&pending)
                    );
                    break end + 4;
                }
            };
            pending.drain(..body_start);
            drop(permit);
            open.fetch_add(1, Ordering::SeqCst);
            // Events end with a blank line; the chunk framing between them does not matter here.
            loop {
                while let Some(end) = find(&pending, b"\n\n") {
                    if find(&pending[..end + 1], b"event: notification_read\n").is_some() {
                        let now = Instant::now();
                        let round = {
                            let mut at = arrivals.at[index].lock().expect("lock");
                            at.push(now);
                            at.len() - 1
                        };
                        if let Some(count) = arrivals.per_round.get(round) {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    pending.drain(..end + 2);
                }
                if !read_some(&tcp, &mut chunk, &mut pending).await {
                    return;
                }
            }
        }));
    }
    let started = Instant::now();
    while open.load(Ordering::SeqCst) < count {
        ensure!(started.elapsed() < Duration::from_secs(300), "streams did not open within 300 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(tasks)
}

/// Reads what `tcp` has into `pending`; false once it is closed or failed. A read shorter than
/// the buffer took all there was, so readiness is given up with it (only if nothing came since it
/// was seen, which `try_io` checks) and the next wait is for new data: without this, every event
/// cost a second read that found nothing, on the cores the server shares.
async fn read_some(tcp: &TcpStream, chunk: &mut [u8], pending: &mut Vec<u8>) -> bool {
    use std::io::Read;
    loop {
        if tcp.readable().await.is_err() {
            return false;
        }
        let mut read = None;
        let result = tcp.try_io(Interest::READABLE, || {
            let count = (&*socket2::SockRef::from(tcp)).read(chunk)?;
            read = Some(count);
            pending.extend_from_slice(&chunk[..count]);
            match count {
                0 => Ok(()),
                short if short < chunk.len() => Err(std::io::ErrorKind::WouldBlock.into()),
                _ => Ok(()),
            }
        });
        match (read, result) {
            (Some(count), _) => return count > 0,
            // Readiness was stale; it is cleared, and the wait starts again.
            (None, Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            (None, _) => return false,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Gives `bench` `times` unread notifications: `host` invites them to an organization (an
/// account with the address is notified) and revokes the invitation again.
async fn notify(host: &(reqwest::Client, String), base: &str, times: usize) -> Result<()> {
    let (client, csrf) = host;
    for _ in 0..times {
        let invitation = post(
            client,
            csrf,
            format!("{base}/api/v1/orgs/relay/invitations"),
            json!({ "email": "bench@example.com", "role": "viewer" }),
        )
        .await?;
        let id = invitation["id"].as_str().context("the invitation's id")?;
        let revoked = client
            .delete(format!("{base}/api/v1/orgs/relay/invitations/{id}"))
            .header("x-csrf-token", csrf)
            .send()
            .await?;
        ensure!(revoked.status().is_success(), "revoking the invitation: {}", revoked.status());
    }
    Ok(())
}

/// `bench` marks `broadcasts` of their notifications read, one at a time: each is one event
/// (`notification_read`) that every one of their streams must get. From sending the request to
/// each stream receiving it, in ms.
async fn broadcast(
    reader: &(reqwest::Client, String),
    base: &str,
    arrivals: &Arrivals,
    streams: usize,
    broadcasts: usize,
) -> Result<Vec<f64>> {
    let (client, csrf) = reader;
    let unread: Value =
        client.get(format!("{base}/api/v1/notifications?unread=true&limit=100")).send().await?.json().await?;
    let ids: Vec<String> = unread["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|n| n["id"].as_str().map(str::to_owned))
        .collect();
    ensure!(ids.len() >= broadcasts, "{} unread notifications, {broadcasts} needed", ids.len());
    let mut latencies = Vec::with_capacity(streams * broadcasts);
    for (round, id) in ids.iter().take(broadcasts).enumerate() {
        let sent = Instant::now();
        post(client, csrf, format!("{base}/api/v1/notifications/{id}/read"), Value::Null).await?;
        let started = Instant::now();
        loop {
            let done = arrivals.per_round[round].load(Ordering::SeqCst);
            if done == streams {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(60),
                "broadcast {round}: {done} of {streams} streams got it"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        for got in &arrivals.at {
            latencies.push(got.lock().expect("lock")[round].duration_since(sent).as_secs_f64() * 1000.0);
        }
    }
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

/// CPU used per broadcast by the server the streams are on and by this load generator.
struct Cpu {
    server_ms: f64,
    generator_ms: f64,
}

impl Cpu {
    fn measure(server: u32) -> Result<Self> {
        Ok(Self { server_ms: cpu_ms(server)?, generator_ms: cpu_ms(std::process::id())? })
    }

    fn per_broadcast(&self, server: u32, broadcasts: usize) -> Result<Self> {
        let now = Self::measure(server)?;
        Ok(Self {
            server_ms: (now.server_ms - self.server_ms) / broadcasts as f64,
            generator_ms: (now.generator_ms - self.generator_ms) / broadcasts as f64,
        })
    }
}

fn report(name: &str, streams: usize, latencies: &[f64], cpu: &Cpu) {
    println!(
        "{}",
        json!({
            "bench": name,
            "streams": streams,
            "samples": latencies.len(),
            "server_cpu_ms_per_broadcast": cpu.server_ms,
            "generator_cpu_ms_per_broadcast": cpu.generator_ms,
            "min_ms": latencies.first().copied().unwrap_or(f64::NAN),
            "p50_ms": percentile(latencies, 0.50),
            "p99_ms": percentile(latencies, 0.99),
            "max_ms": latencies.last().copied().unwrap_or(f64::NAN),
        })
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    let options = Options::parse()?;
    let dir = tempfile::tempdir()?;
    let database_url = format!("sqlite://{}?mode=rwc", dir.path().join("fleetplane.db").display());
    create_user(dir.path(), &database_url, "bench")?;
    create_user(dir.path(), &database_url, "host")?;

    let port = free_port()?;
    let server = serve(dir.path(), &database_url, port, options.streams, None)?;
    let base = format!("http://127.0.0.1:{port}");
    let (bench_client, bench_csrf) = signed_in(&base, "bench").await?;
    let token = post(&bench_client, &bench_csrf, format!("{base}/api/v1/me/tokens"), json!({ "name": "bench" }))
        .await?["token"]
        .as_str()
        .context("token")?
        .to_owned();
    let host = signed_in(&base, "host").await?;
    post(&host.0, &host.1, format!("{base}/api/v1/orgs"), json!({ "name": "relay", "display_name": "Relay" })).await?;

    let reader = (bench_client, bench_csrf);
    notify(&host, &base, 1 + 2 * options.broadcasts).await?;

    // Warm up: one stream, one broadcast, so that one-off allocations are not counted.
    let warm = arrivals(1, 1);
    let tasks = open_streams(port, &token, 1, warm.clone()).await?;
    broadcast(&reader, &base, &warm, 1, 1).await?;
    tasks.iter().for_each(tokio::task::JoinHandle::abort);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let before = rss_kib(server.0.id())?;
    let received = arrivals(options.streams, options.broadcasts);
    let tasks = open_streams(port, &token, options.streams, received.clone()).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(server.0.id())?;
    println!(
        "{}",
        json!({
            "bench": "memory",
            "streams": options.streams,
            "rss_before_kib": before,
            "rss_after_kib": after,
            "bytes_per_stream": (after.saturating_sub(before) * 1024) as f64 / options.streams as f64,
        })
    );
    let cpu = Cpu::measure(server.0.id())?;
    let latencies = broadcast(&reader, &base, &received, options.streams, options.broadcasts).await?;
    let cpu = cpu.per_broadcast(server.0.id(), options.broadcasts)?;
    report("broadcast", options.streams, &latencies, &cpu);
    tasks.iter().for_each(tokio::task::JoinHandle::abort);
    drop(server);

    if let Some(redis_server) = &options.redis_server {
        let redis_port = free_port()?;
        let _redis = Process(
            Command::new(redis_server)
                .args(["--bind", "127.0.0.1", "--port", &redis_port.to_string(), "--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .spawn()
                .context("starting redis-server")?,
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let redis_url = format!("redis://127.0.0.1:{redis_port}");
        let (port_a, port_b) = (free_port()?, free_port()?);
        let _a = serve(dir.path(), &database_url, port_a, options.streams, Some(&redis_url))?;
        let b = serve(dir.path(), &database_url, port_b, options.streams, Some(&redis_url))?;
        let base_a = format!("http://127.0.0.1:{port_a}");
        let reader = signed_in(&base_a, "bench").await?;
        let received = arrivals(options.streams, options.broadcasts);
        let tasks = open_streams(port_b, &token, options.streams, received.clone()).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cpu = Cpu::measure(b.0.id())?;
        let latencies = broadcast(&reader, &base_a, &received, options.streams, options.broadcasts).await?;
        let cpu = cpu.per_broadcast(b.0.id(), options.broadcasts)?;
        report("broadcast-redis", options.streams, &latencies, &cpu);
        tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }

    if options.docker_clusters > 0 {
        let port = free_port()?;
        let docker_host = std::env::var("DOCKER_HOST").context("--docker needs DOCKER_HOST")?;
        let mut command = fleetplane(dir.path(), &database_url);
        command
            .env("FLEETPLANE_LISTEN", format!("127.0.0.1:{port}"))
            .env("FLEETPLANE_WORKERS", "1")
            .env("FLEETPLANE_EXECUTOR", "docker")
            .env("FLEETPLANE_RUN_NETWORK", "host")
            .env("FLEETPLANE_RATE_LIMITS", "off")
            .env("DOCKER_HOST", docker_host);
        let mut child = command.arg("serve").stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
        let mut banner = String::new();
        std::io::BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut banner)?;
        ensure!(banner.contains("running at"), "the server did not start: {banner}");
        let _server = Process(child);
        let base = format!("http://127.0.0.1:{port}");
        let (client, csrf) = signed_in(&base, "bench").await?;
        let mut latencies = Vec::new();
        for n in 0..options.docker_clusters {
            let body = json!({
                "target": "local", "name_prefix": "bench", "name_suffix": format!("logs{n}"), "region": "local",
                "kubernetes_version": "1.33", "vpc_cidr": "10.0.0.0/16",
                "public_subnets": ["10.0.0.0/20", "10.0.16.0/20"], "private_subnets": ["10.0.64.0/19"],
                "node_instance_type": "local.small", "node_min": 1, "node_max": 3,
                "simulate": { "step_seconds": 1 },
            });
            let created = post(&client, &csrf, format!("{base}/api/v1/orgs/bench/clusters"), body).await?;
            let run = created["run"]["id"].as_str().context("run id")?.to_owned();
            latencies.extend(follow_log(&base, &token, &run).await?);
        }
        latencies.sort_by(f64::total_cmp);
        println!(
            "{}",
            json!({
                "bench": "log-line",
                "clusters": options.docker_clusters,
                "samples": latencies.len(),
                "p50_ms": percentile(&latencies, 0.50),
                "p99_ms": percentile(&latencies, 0.99),
                "max_ms": latencies.last().copied().unwrap_or(f64::NAN),
            })
        );
    }
    Ok(())
}

/// Follows `run`'s log to its end; for each line, ms from `at` to its arrival here.
async fn follow_log(base: &str, token: &str, run: &str) -> Result<Vec<f64>> {
    let opened = chrono::Utc::now();
    let response = reqwest::Client::new()
        .get(format!("{base}/api/v1/runs/{run}/logs"))
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .send()
        .await?;
    ensure!(response.status().is_success(), "log stream: {}", response.status());
    let mut body = response.bytes_stream();
    let mut pending = String::new();
    let mut latencies = Vec::new();
    let started = Instant::now();
    while let Some(chunk) = body.next().await {
        let arrived = chrono::Utc::now();
        pending.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            if event.contains("event: end\n") {
                ensure!(event.contains("succeeded"), "the run did not succeed: {event}");
                return Ok(latencies);
            }
            let Some(data) = event.lines().find_map(|line| line.strip_prefix("data: ")) else { continue };
            let line: Value = serde_json::from_str(data)?;
            let at: chrono::DateTime<chrono::Utc> = line["at"].as_str().context("at")?.parse()?;
            // Lines written before the stream was open are catch-up, not live delivery.
            if at >= opened {
                latencies.push((arrived - at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0);
            }
        }
        ensure!(started.elapsed() < Duration::from_secs(300), "run {run} did not end within 300 s");
    }
    bail!("the log stream of {run} ended without `end`")
}
