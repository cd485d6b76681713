//! `test`: the whole test suite, as CI runs it.
//!
//! Installs the system packages the tests need when they are missing (apt, as root or through
//! sudo), starts a throwaway PostgreSQL on loopback in a temporary directory, builds the web UI
//! for the browser test, runs the linters and then every test: once on SQLite and once on
//! PostgreSQL. Everything it started is stopped and deleted afterwards, also on failure or
//! Ctrl-C.

use std::{
    env, fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
    time::Instant,
};

use anyhow::{Context, Result, bail, ensure};

use crate::{
    kube_tools,
    ui::{self, BuildOptions},
};

/// Debian packages the suite needs: PostgreSQL's server binaries, Redis (each test that needs
/// one starts its own on loopback), Chromium with its WebDriver for the browser tests, Python
/// for the cloud emulators, a Docker engine with static busybox for the provisioner images and
/// musl-tools for the fleet-telemetry image's static binary, openssl (the fleet CA's
/// certificates are checked with it), mosquitto (the fleet's broker) and clickhouse-server (the
/// fleet's production telemetry store).
/// The Terraform binary this machine provides (nothing may download one).
const TERRAFORM: &str = "/usr/local/bin/terraform";
const PACKAGES: &[&str] = &[
    "postgresql",
    "redis-server",
    "chromium",
    "chromium-driver",
    "python3",
    "python3-venv",
    "docker.io",
    "busybox-static",
    "musl-tools",
    "openssl",
    "mosquitto",
    "clickhouse-server",
];
/// Test tools from PyPI, pinned: moto's server (AWS), a Cloud Storage emulator, and
/// schemathesis, which checks the API against its OpenAPI document.
const EMULATORS: &[&str] = &["moto[server]==5.2.5", "gcp-storage-emulator==2026.7.19", "schemathesis==4.32.5"];
/// The programs the tests run from that environment; a missing one means a broken install.
const EMULATOR_PROGRAMS: &[&str] = &["moto_server", "gcp-storage-emulator", "schemathesis"];
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const REDIS_SERVER: &str = "/usr/bin/redis-server";
/// The real browser binary; `/usr/bin/chromium` is a wrapper script that adds flags of its own.
const CHROMIUM: &str = "/usr/lib/chromium/chromium";

struct TestOptions {
    lint: bool,
    postgres: bool,
    /// Extra arguments for the test binaries (a name filter, `--nocapture`).
    test_args: Vec<String>,
}

impl TestOptions {
    fn parse(args: &[String]) -> Result<Self> {
        let mut options = Self { lint: true, postgres: true, test_args: Vec::new() };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--no-lint" => options.lint = false,
                "--sqlite-only" => options.postgres = false,
                "--" => options.test_args.extend(args.by_ref().cloned()),
                other => {
                    bail!("test: unexpected argument `{other}` (options: --no-lint, --sqlite-only, -- <test args>)")
                }
            }
        }
        Ok(options)
    }
}

pub fn run(args: &[String]) -> Result<()> {
    let options = TestOptions::parse(args)?;
    let started = Instant::now();
    let suite = Suite::prepare(options.lint)?;
    step("Tests on SQLite (unit, API, CLI, browser)", &mut suite.tests("sqlite", &options.test_args))?;
    if options.postgres {
        let postgres = Postgres::start()?;
        step(
            "Tests on PostgreSQL (unit, API, CLI, browser)",
            suite.tests("postgres", &options.test_args).env("FLEETPLANE_TEST_PG_URL", postgres.url()),
        )?;
    }
    let artifacts = suite.artifacts.clone();
    drop(suite);
    eprintln!("\nAll tests passed in {:.0?}. Screenshots are in {}.", started.elapsed(), artifacts.display());
    Ok(())
}

/// Everything the tests need but a database: the packages, the UI, the emulators, the OpenID
/// provider and helm, a Docker engine with the images. Dropping it stops the engine.
pub struct Suite {
    root: PathBuf,
    site: PathBuf,
    emulators: PathBuf,
    oidc_provider: PathBuf,
    helm: PathBuf,
    pub artifacts: PathBuf,
    docker: DockerEngine,
}

impl Suite {
    /// Installs and starts what the tests need; with `lint`, checks formatting and clippy first.
    pub fn prepare(lint: bool) -> Result<Self> {
        let root = ui::workspace_root();
        install_cleanup_on_interrupt();
        remove_stale_runs();

        ensure_packages(PACKAGES)?;
        let site = ui::build_ui(&BuildOptions { release: false })?;
        let target_dir = ui::target_dir(&root)?;
        let emulators = ensure_emulators(&target_dir)?;
        let oidc_provider = ensure_oidc_provider(&root, &target_dir)?;
        let helm = kube_tools::ensure(&target_dir)?.helm;
        if lint {
            lint_workspace(&root)?;
        }
        let docker = DockerEngine::start()?;
        step(
            "Building the images (cargo xtask images)",
            Command::new(ui::cargo()).current_dir(&root).args(["xtask", "images"]).env("DOCKER_HOST", docker.host()),
        )?;
        let artifacts = root.join("artifacts");
        fs::create_dir_all(&artifacts).context("creating artifacts/")?;
        Ok(Self { root, site, emulators, oidc_provider, helm, artifacts, docker })
    }

    /// `cargo test` over the whole workspace on `database` (`sqlite` or `postgres`, whose
    /// server URL the caller adds), the ignored tests included, with `test_args`.
    pub fn tests(&self, database: &str, test_args: &[String]) -> Command {
        let mut command = cargo(&self.root);
        command.args(["test", "--workspace", "--", "--include-ignored"]).args(test_args);
        self.environment(&mut command, database);
        command
    }

    /// The environment variables that tell the tests where their tools are.
    pub fn environment(&self, command: &mut Command, database: &str) {
        command
            .env("FLEETPLANE_TEST_DATABASE", database)
            .env("FLEETPLANE_TEST_SITE_DIR", &self.site)
            .env("FLEETPLANE_TEST_CHROMEDRIVER", CHROMEDRIVER)
            .env("FLEETPLANE_TEST_CHROMIUM", CHROMIUM)
            .env("FLEETPLANE_TEST_ARTIFACTS", &self.artifacts)
            .env("FLEETPLANE_TEST_EMULATORS", &self.emulators)
            .env("FLEETPLANE_TEST_OIDC_PROVIDER", &self.oidc_provider)
            .env("FLEETPLANE_TEST_REDIS_SERVER", REDIS_SERVER)
            .env("HELM", &self.helm)
            .env("DOCKER_HOST", self.docker.host())
            .env("FLEETPLANE_TEST_DOCKER", "1")
            .env_remove("TF_CLI_CONFIG_FILE");
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

fn lint_workspace(root: &Path) -> Result<()> {
    step("Checking formatting", cargo(root).args(["fmt", "--all", "--", "--check"]))?;
    step(
        "Checking the Terraform modules' formatting (terraform fmt)",
        Command::new(TERRAFORM).current_dir(root).args(["fmt", "-check", "-diff", "-recursive", "terraform"]),
    )?;
    step(
        "Linting (clippy, warnings are errors)",
        cargo(root).args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]),
    )?;
    step(
        "Linting the browser half of the UI (clippy on wasm32)",
        cargo(root).args([
            "clippy",
            "--package",
            "fleetplane-web",
            "--lib",
            "--target",
            "wasm32-unknown-unknown",
            "--features",
            "hydrate",
            "--",
            "-D",
            "warnings",
        ]),
    )
}

pub fn cargo(root: &Path) -> Command {
    let mut command = Command::new(ui::cargo());
    command.current_dir(root);
    command
}

pub(crate) fn step(title: &str, command: &mut Command) -> Result<()> {
    eprintln!("\n==> {title}");
    let started = Instant::now();
    let status = command.status().with_context(|| format!("could not start {:?}", command.get_program()))?;
    ensure!(status.success(), "{title}: failed ({status})");
    eprintln!("==> {title}: passed in {:.0?}", started.elapsed());
    Ok(())
}

/// A Python virtual environment with the cloud emulators and schemathesis, next to the build
/// output so that repeated runs reuse it; reinstalled when the pinned versions change or a
/// program is missing. Returns its `bin/`.
fn ensure_emulators(target_dir: &Path) -> Result<PathBuf> {
    let venv = target_dir.join("emulators");
    let bin = venv.join("bin");
    let stamp = venv.join("requirements.txt");
    let wanted = EMULATORS.join("\n");
    let complete = EMULATOR_PROGRAMS.iter().all(|program| bin.join(program).is_file());
    if fs::read_to_string(&stamp).is_ok_and(|installed| installed == wanted) && complete {
        return Ok(bin);
    }
    if venv.exists() {
        fs::remove_dir_all(&venv).with_context(|| format!("removing the old {}", venv.display()))?;
    }
    // Debian's interpreter, which python3-venv completes; another python3 on PATH may lack venv.
    let python = if Path::new("/usr/bin/python3").is_file() { "/usr/bin/python3" } else { "python3" };
    step(
        "Creating a Python environment for the cloud emulators and schemathesis",
        Command::new(python).args(["-m", "venv"]).arg(&venv),
    )?;
    step(
        &format!("Installing {} from PyPI", EMULATORS.join(", ")),
        Command::new(bin.join("pip")).args(["install", "--quiet", "--disable-pip-version-check"]).args(EMULATORS),
    )?;
    fs::write(&stamp, wanted).context("recording the emulator versions")?;
    Ok(bin)
}

/// The local OpenID provider for the sign-in tests: npm's `oidc-provider`, pinned by the
/// lockfile in `server/tests/oidc-provider`, installed next to the build output (reinstalled when
/// the lockfile changes). Returns the path of its script.
fn ensure_oidc_provider(root: &Path, target_dir: &Path) -> Result<PathBuf> {
    if !has_command("node") || !has_command("npm") {
        ensure_packages(&["nodejs", "npm"])?;
    }
    let source = root.join("server/tests/oidc-provider");
    let dir = target_dir.join("oidc-provider");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock = fs::read(source.join("package-lock.json")).context("reading the OpenID provider's lockfile")?;
    let stamp = dir.join("installed.lock");
    let current = fs::read(&stamp).is_ok_and(|installed| installed == lock) && dir.join("node_modules").is_dir();
    for file in ["provider.mjs", "package.json", "package-lock.json"] {
        fs::copy(source.join(file), dir.join(file)).with_context(|| format!("copying {file}"))?;
    }
    if !current {
        step(
            "Installing the local OpenID provider from npm (oidc-provider, pinned)",
            Command::new("npm").current_dir(&dir).args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]),
        )?;
        fs::write(&stamp, lock).context("recording the installed lockfile")?;
    }
    Ok(dir.join("provider.mjs"))
}

fn has_command(name: &str) -> bool {
    Command::new(name).arg("--version").output().is_ok_and(|output| output.status.success())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Installs the missing `packages` with apt-get, as root directly or else through sudo.
pub fn ensure_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let apt = |args: &[&str]| {
        let mut command = if is_root() {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    let install = [&["install", "-y", "-q", "--no-install-recommends"][..], &missing].concat();
    step("Updating apt's package lists", &mut apt(&["update", "-q"]))
        .and_then(|()| step(&format!("Installing {}", missing.join(", ")), &mut apt(&install)))
        .with_context(|| format!("the tests need these packages; as root: apt-get install -y {}", missing.join(" ")))
}

/// What to stop if the run is interrupted (Ctrl-C, SIGTERM, SIGHUP): the PostgreSQL data
/// directory and its `pg_ctl`.
static RUNNING_POSTGRES: Mutex<Option<(PathBuf, PathBuf)>> = Mutex::new(None);
/// And the Docker engine: its process id and directory.
static RUNNING_DOCKER: Mutex<Option<(u32, PathBuf)>> = Mutex::new(None);

fn install_cleanup_on_interrupt() {
    let result = ctrlc::set_handler(|| {
        if let Some((pg_ctl, dir)) = RUNNING_POSTGRES.lock().ok().and_then(|mut guard| guard.take()) {
            stop_postgres(&pg_ctl, &dir);
        }
        if let Some((pid, dir)) = RUNNING_DOCKER.lock().ok().and_then(|mut guard| guard.take()) {
            stop_docker(pid, &dir);
        }
        std::process::exit(130);
    });
    if let Err(error) = result {
        eprintln!("warning: cannot clean up on Ctrl-C: {error}");
    }
}

/// A PostgreSQL server in a temporary directory, listening on 127.0.0.1 only; stopped and
/// deleted on drop.
pub struct Postgres {
    dir: PathBuf,
    pg_ctl: PathBuf,
    port: u16,
}

impl Postgres {
    pub fn start() -> Result<Self> {
        let bin = postgres_bin_dir()?;
        let dir = env::temp_dir().join(format!("fleetplane-test-pg-{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing a stale {}", dir.display()))?;
        }
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        if is_root() {
            // PostgreSQL refuses to run as root: hand the directory to its own user.
            let status = Command::new("chown").args(["postgres:postgres"]).arg(&dir).status()?;
            ensure!(status.success(), "chown postgres {} failed", dir.display());
        }
        let port = free_port()?;
        let data = dir.join("data");
        let postgres = Self { dir: dir.clone(), pg_ctl: bin.join("pg_ctl"), port };
        *RUNNING_POSTGRES.lock().map_err(|_| anyhow::anyhow!("lock poisoned"))? =
            Some((postgres.pg_ctl.clone(), dir.clone()));

        step(
            "Creating a PostgreSQL cluster",
            as_postgres(&bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", "fleetplane", "--auth=trust", "-E", "UTF8", "--no-sync"])
                .stdout(std::process::Stdio::null()),
        )?;
        let server_options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300",
            dir.display()
        );
        step(
            &format!("Starting PostgreSQL on 127.0.0.1:{port}"),
            as_postgres(&postgres.pg_ctl)
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.join("server.log"))
                .args(["-w", "-t", "60", "-o", &server_options, "start"])
                .stdout(std::process::Stdio::null()),
        )?;
        Ok(postgres)
    }

    /// The server's URL without a database name; the tests append their own.
    pub fn url(&self) -> String {
        format!("postgres://fleetplane@127.0.0.1:{}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Ok(mut running) = RUNNING_POSTGRES.lock() {
            running.take();
        }
        stop_postgres(&self.pg_ctl, &self.dir);
    }
}

fn stop_postgres(pg_ctl: &Path, dir: &Path) {
    let _ = as_postgres(pg_ctl)
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-m", "immediate", "-w", "stop"])
        .stdout(std::process::Stdio::null())
        .status();
    let _ = fs::remove_dir_all(dir);
    eprintln!("==> Stopped PostgreSQL and removed {}", dir.display());
}

/// A Docker engine with its data, state and socket in a temporary directory, without bridge
/// networking or iptables changes (containers use `host` or `none` networking); stopped and
/// deleted on drop.
pub struct DockerEngine {
    dir: PathBuf,
    dockerd: std::process::Child,
}

impl DockerEngine {
    pub fn start() -> Result<Self> {
        ensure!(is_root(), "the Docker engine needs root: run `cargo xtask test` as root");
        let dir = env::temp_dir().join(format!("fleetplane-test-docker-{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing a stale {}", dir.display()))?;
        }
        fs::create_dir_all(&dir)?;
        let log = fs::File::create(dir.join("dockerd.log"))?;
        eprintln!("\n==> Starting a Docker engine in {}", dir.display());
        let child = Command::new("dockerd")
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting dockerd (package docker.io)")?;
        let engine = Self { dir: dir.clone(), dockerd: child };
        *RUNNING_DOCKER.lock().map_err(|_| anyhow::anyhow!("lock poisoned"))? =
            Some((engine.dockerd.id(), dir.clone()));
        let started = Instant::now();
        loop {
            let answered = Command::new("docker")
                .args(["version", "--format", "{{.Server.Version}}"])
                .env("DOCKER_HOST", engine.host())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if answered {
                break;
            }
            if started.elapsed() > std::time::Duration::from_secs(60) {
                let log = fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default();
                bail!(
                    "the Docker engine did not start within 60 s:\n{}",
                    log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        eprintln!("==> Docker engine ready in {:.0?}", started.elapsed());
        Ok(engine)
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }
}

impl Drop for DockerEngine {
    fn drop(&mut self) {
        if let Ok(mut running) = RUNNING_DOCKER.lock() {
            running.take();
        }
        let _ = Command::new("kill").args(["-TERM", &self.dockerd.id().to_string()]).status();
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        while Instant::now() < deadline && matches!(self.dockerd.try_wait(), Ok(None)) {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let _ = self.dockerd.kill();
        let _ = self.dockerd.wait();
        remove_engine_dir(&self.dir);
    }
}

/// Stops an engine on Ctrl-C (it stops its containers and unmounts their layers), then deletes
/// its files.
fn stop_docker(pid: u32, dir: &Path) {
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists() {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    remove_engine_dir(dir);
}

/// Deletes a stopped engine's directory. The engine leaves its network namespace mounted in
/// it (and, when killed, its containers' layers), which `remove_dir_all` cannot delete: they are
/// unmounted first, deepest first.
fn remove_engine_dir(dir: &Path) {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut inside: Vec<&str> = mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(1))
        .filter(|point| Path::new(point).starts_with(dir))
        .collect();
    inside.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in inside {
        let _ = Command::new("umount").args(["--lazy", point]).status();
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => eprintln!("==> Stopped the Docker engine and removed {}", dir.display()),
        Err(e) => eprintln!("warning: stopped the Docker engine but could not remove {}: {e}", dir.display()),
    }
}

/// Deletes what runs that were killed outright (SIGKILL, a lost machine) left in the
/// temporary directory: a directory named for a process that no longer runs, with the
/// PostgreSQL or Docker engine still running from it stopped first.
fn remove_stale_runs() {
    let Ok(entries) = fs::read_dir(env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let dir = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let (kind, pid) = match (name.strip_prefix("fleetplane-test-pg-"), name.strip_prefix("fleetplane-test-docker-"))
        {
            (Some(pid), _) => ("pg", pid),
            (_, Some(pid)) => ("docker", pid),
            _ => continue,
        };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        eprintln!("==> Removing {}, left by a run that was killed", dir.display());
        match kind {
            "pg" => {
                if let Ok(bin) = postgres_bin_dir() {
                    stop_postgres(&bin.join("pg_ctl"), &dir);
                }
                let _ = fs::remove_dir_all(&dir);
            }
            _ => {
                let engine =
                    fs::read_to_string(dir.join("dockerd.pid")).ok().and_then(|pid| pid.trim().parse::<u32>().ok());
                match engine {
                    Some(engine) if Path::new(&format!("/proc/{engine}")).exists() => stop_docker(engine, &dir),
                    _ => remove_engine_dir(&dir),
                }
            }
        }
    }
}

/// `program`, run as the `postgres` user when we are root.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// The directory of `initdb` and `pg_ctl`: Debian keeps them under /usr/lib/postgresql/<v>/bin.
fn postgres_bin_dir() -> Result<PathBuf> {
    let newest = fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .max_by_key(|bin| bin.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()).unwrap_or(0));
    if let Some(bin) = newest {
        return Ok(bin);
    }
    let output = Command::new("pg_config").arg("--bindir").output().context("PostgreSQL's initdb was not found")?;
    Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
