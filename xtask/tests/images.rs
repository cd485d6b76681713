//! The images `cargo xtask images` builds, run on the test Docker engine (`DOCKER_HOST`, which
//! `cargo xtask test` starts and builds the images on before the tests run).
//!
//! - `fleetplane/fleet-telemetry`: serves and is ready on a read-only root filesystem with its
//!   data volume, as the non-root user the chart expects, and stops cleanly.
//! - `fleetplane/provisioner-helm`: its helm renders the workspace's chart; its entrypoint
//!   checks the chart and values offline, then fails with helm's own connection error when no
//!   cluster answers, printing no secret. No Kubernetes API server can run here, so the
//!   entrypoint's decisions after helm answers (a release stuck pending, the result line, the
//!   exact commands) are checked with a stand-in `helm` (`HELM`), which answers `helm history
//!   --output json` in helm's format and records the commands it is given.
//!
//! Ignored by a plain `cargo test`: they need the engine and the images.

use std::{
    fs,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

const FLEET_IMAGE: &str = "fleetplane/fleet-telemetry:latest";
const HELM_IMAGE: &str = "fleetplane/provisioner-helm:latest";
/// The user both images run as, and the chart's securityContext sets.
const NONROOT: u32 = 65532;

fn require_engine() {
    assert!(
        std::env::var_os("FLEETPLANE_TEST_DOCKER").is_some(),
        "FLEETPLANE_TEST_DOCKER is not set: run `cargo xtask test`, which starts a Docker engine and builds the images"
    );
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("running the docker CLI")
}

/// `docker args`, which must succeed; its stdout.
fn docker_ok(args: &[&str]) -> String {
    let output = docker(args);
    assert!(output.status.success(), "docker {args:?} failed:\n{}", text(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn text(output: &Output) -> String {
    format!(
        "{}\n--- stdout:\n{}\n--- stderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A name no other test (nor another run on the same engine) uses.
fn unique(what: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("fleetplane-test-{what}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

fn inspect(what: &str) -> Value {
    let output = docker_ok(&["inspect", what]);
    let mut all: Vec<Value> = serde_json::from_str(&output).expect("docker inspect prints JSON");
    assert_eq!(all.len(), 1, "{what}: {output}");
    all.remove(0)
}

/// A container, removed with its anonymous volumes on drop.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "--force", "--volumes", &self.0]);
    }
}

/// A named volume, removed on drop.
struct Volume(String);

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = docker(&["volume", "rm", "--force", &self.0]);
    }
}

/// Waits for `ready` until `deadline`, checking every 100 ms; `why` says what went wrong.
fn wait_for(what: &str, deadline: Duration, mut ready: impl FnMut() -> bool, why: impl Fn() -> String) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < deadline, "{what} within {deadline:?}: {}", why());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The status code of `GET path` on 127.0.0.1:`port`, or None when nothing answers yet.
fn http_status(port: u16, path: &str, token: Option<&str>) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split(' ').nth(1)?.parse().ok()
}

/// `Uid:` or `Gid:` of a process as the kernel has it: real, effective, saved and filesystem.
fn ids(pid: &str, field: &str) -> Vec<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("the container's process status");
    let line = status.lines().find(|line| line.starts_with(field)).expect("the ids line");
    line[field.len()..].split_whitespace().map(|id| id.parse().expect("a numeric id")).collect()
}

/// `version` in the `[package]` of the crate at `manifest`, relative to the workspace.
fn crate_version(manifest: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(manifest);
    let toml = fs::read_to_string(&path).expect("the crate's manifest");
    let line = toml.lines().find(|line| line.starts_with("version = ")).expect("a version line");
    line.trim_start_matches("version = ").trim_matches('"').to_owned()
}

#[test]
#[ignore = "needs Docker and the images: run `cargo xtask test`"]
fn the_fleet_telemetry_image_is_tagged_with_its_version_and_configured_as_the_chart_runs_it() {
    require_engine();
    let image = inspect(FLEET_IMAGE);
    let versioned = format!("fleetplane/fleet-telemetry:{}", crate_version("fleet/telemetry/Cargo.toml"));
    assert_eq!(inspect(&versioned)["Id"], image["Id"], "{versioned} is the same image as latest");

    let config = &image["Config"];
    assert_eq!(config["User"], format!("{NONROOT}:{NONROOT}"));
    assert_eq!(config["Entrypoint"], json!(["/fleet-telemetry"]));
    assert_eq!(config["Cmd"], json!(["serve"]));
    assert!(config["Volumes"].get("/var/lib/fleet-telemetry").is_some(), "the data directory is a volume: {config}");
    let env: Vec<&str> = config["Env"].as_array().expect("Env").iter().filter_map(Value::as_str).collect();
    for setting in
        ["FLEET_DATA_DIR=/var/lib/fleet-telemetry", "FLEET_LISTEN=0.0.0.0:8090", "FLEET_BROKER_LISTEN=0.0.0.0:8883"]
    {
        assert!(env.contains(&setting), "{setting} in {env:?}");
    }
}

#[test]
#[ignore = "needs Docker and the images: run `cargo xtask test`"]
fn the_fleet_telemetry_image_serves_as_its_non_root_user_on_a_read_only_root_and_stops_cleanly() {
    require_engine();
    let volume = Volume(unique("fleet-data"));
    docker_ok(&["volume", "create", &volume.0]);
    let (api, broker) = (free_port(), free_port());
    let container = Container(unique("fleet-telemetry"));
    docker_ok(&[
        "run",
        "--detach",
        "--name",
        &container.0,
        "--network",
        "host",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--volume",
        &format!("{}:/var/lib/fleet-telemetry", volume.0),
        "--env",
        &format!("FLEET_LISTEN=127.0.0.1:{api}"),
        "--env",
        &format!("FLEET_BROKER_LISTEN=127.0.0.1:{broker}"),
        FLEET_IMAGE,
    ]);
    let logs = || {
        let running = inspect(&container.0)["State"].to_string();
        let output = docker(&["logs", &container.0]);
        format!("state {running}\n{}", text(&output))
    };

    // The first start creates the fleet CA and the databases in the volume: give it time.
    for path in ["/healthz", "/readyz"] {
        wait_for(
            &format!("{path} answers 200"),
            Duration::from_secs(120),
            || http_status(api, path, None) == Some(200),
            logs,
        );
    }
    assert!(TcpStream::connect(("127.0.0.1", broker)).is_ok(), "the embedded broker listens: {}", logs());

    let pid = docker_ok(&["inspect", "--format", "{{.State.Pid}}", &container.0]).trim().to_owned();
    assert_eq!(ids(&pid, "Uid:"), [NONROOT; 4], "the service runs as {NONROOT}");
    assert_eq!(ids(&pid, "Gid:"), [NONROOT; 4]);

    // The binary's own CLI in the container opens the same data: a token it creates works.
    let token = docker_ok(&[
        "exec",
        &container.0,
        "/fleet-telemetry",
        "admin",
        "create-token",
        "--name",
        "t",
        "--scope",
        "read",
    ]);
    let token = token.trim();
    assert_eq!(http_status(api, "/api/v1/bikes", None), Some(401));
    assert_eq!(http_status(api, "/api/v1/bikes", Some(token)), Some(200), "{}", logs());

    docker_ok(&["stop", "--time", "30", &container.0]);
    let state = &inspect(&container.0)["State"];
    assert_eq!(state["ExitCode"], 0, "SIGTERM stops it cleanly: {}", logs());
}

#[test]
#[ignore = "needs Docker and the images: run `cargo xtask test`"]
fn the_helm_image_renders_the_workspace_chart_with_its_own_helm_and_has_kubectl() {
    require_engine();
    assert_eq!(inspect(HELM_IMAGE)["Config"]["User"], format!("{NONROOT}:{NONROOT}"));
    let rendered = docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--read-only",
        "--entrypoint",
        "/usr/local/bin/helm",
        HELM_IMAGE,
        "template",
        "fleet",
        "/charts/fleet-telemetry",
        "--namespace",
        "fleet",
    ]);
    assert!(rendered.contains("kind: StatefulSet"), "{rendered}");
    let image = format!("image: \"fleetplane/fleet-telemetry:{}\"", crate_version("fleet/telemetry/Cargo.toml"));
    assert!(rendered.contains(&image), "the chart deploys the image built beside it ({image}):\n{rendered}");

    let kubectl = docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/usr/local/bin/kubectl",
        HELM_IMAGE,
        "version",
        "--client",
    ]);
    assert!(kubectl.contains("Client Version: v1.31"), "{kubectl}");
}

/// A directory for a container's inputs, readable (and, for the stand-in helm's record,
/// writable) by the images' user.
struct Inputs(tempfile::TempDir);

impl Inputs {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::os::unix::fs::chown(dir.path(), Some(NONROOT), Some(NONROOT)).expect("chown to the images' user");
        Self(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn write(&self, name: &str, content: &str, mode: u32) -> PathBuf {
        let path = self.path().join(name);
        fs::write(&path, content).expect("writing an input");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }
}

/// A kubeconfig for an API server at 127.0.0.1:`port` with a bearer token, as Fleetplane writes
/// them for a run.
fn kubeconfig(port: u16, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
  - name: fleet
    cluster:
      server: https://127.0.0.1:{port}
contexts:
  - name: fleet
    context:
      cluster: fleet
      user: run
current-context: fleet
users:
  - name: run
    user:
      token: {token}
"
    )
}

/// The entrypoint's run: its exit code, stdout, stderr and the result line's JSON.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    result: Value,
}

impl Run {
    fn steps(&self) -> Vec<&str> {
        self.stdout.lines().filter_map(|line| line.strip_prefix("FLEETPLANE_STEP ")).collect()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout:\n{}\n--- stderr:\n{}", self.code, self.stdout, self.stderr)
    }
}

/// The helm image's entrypoint with `env`, the inputs mounted at /input, no network and a
/// read-only root with a tmpfs for /work, as a run gets them.
fn run_entrypoint(inputs: &Inputs, env: &[(&str, &str)]) -> Run {
    let mount = format!("{}:/input", inputs.path().display());
    let work = format!("/work:uid={NONROOT},gid={NONROOT}");
    let mut args = vec!["run", "--rm", "--network", "none", "--read-only", "--tmpfs", &work, "--volume", &mount];
    let env: Vec<String> = env.iter().map(|(name, value)| format!("{name}={value}")).collect();
    for setting in &env {
        args.extend(["--env", setting]);
    }
    args.push(HELM_IMAGE);
    let output = docker(&args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let last = stdout.lines().last().unwrap_or_default();
    let result = last
        .strip_prefix("FLEETPLANE_RESULT ")
        .map(|json| serde_json::from_str(json).unwrap_or_else(|e| panic!("result line {json:?}: {e}")))
        .unwrap_or(Value::Null);
    let run = Run { code: output.status.code().unwrap_or(-1), stdout, stderr, result };
    assert_eq!(run.stdout.matches("FLEETPLANE_RESULT ").count(), 1, "one result line, the last: {run}");
    run
}

#[test]
#[ignore = "needs Docker and the images: run `cargo xtask test`"]
fn a_deploy_with_no_cluster_checks_the_chart_then_fails_with_helms_connection_error_and_no_secret() {
    require_engine();
    let inputs = Inputs::new();
    let token = "fleetplane-test-bearer-token-5f1c";
    let secret = "fleetplane-test-values-secret-9b2e";
    let port = free_port();
    inputs.write("kubeconfig", &kubeconfig(port, token), 0o644);
    let values = format!("logFormat: text\nextraEnv:\n  - name: FLEET_TEST_SECRET\n    value: \"{secret}\"\n");
    inputs.write("values.yaml", &values, 0o644);
    let env = [
        ("FP_ACTION", "deploy"),
        ("FP_RELEASE", "fleet"),
        ("FP_NAMESPACE", "fleet"),
        ("FP_CHART", "/charts/fleet-telemetry"),
        ("FP_VALUES", "/input/values.yaml"),
        ("KUBECONFIG", "/input/kubeconfig"),
    ];

    let run = run_entrypoint(&inputs, &env);
    assert_eq!(run.code, 4, "the documented status for an unreachable cluster: {run}");
    assert_eq!(run.steps(), ["validate", "status"], "the chart rendered before the cluster was asked: {run}");
    assert!(run.stderr.contains("Kubernetes cluster unreachable"), "{run}");
    assert!(run.stderr.contains(&format!("127.0.0.1:{port}")) && run.stderr.contains("connection refused"), "{run}");
    assert_eq!(
        run.result,
        json!({"action": "deploy", "ok": false, "status": "unknown", "revision": null, "error": "unreachable", "rollback_to": null})
    );
    for hidden in [secret, token] {
        assert!(!run.stdout.contains(hidden) && !run.stderr.contains(hidden), "{hidden} was printed: {run}");
    }

    // Values the chart refuses stop the run before the cluster is involved.
    inputs.write("values.yaml", &format!("{values}replicaCount: two\n"), 0o644);
    let run = run_entrypoint(&inputs, &env);
    assert_eq!(run.code, 3, "{run}");
    assert_eq!(run.steps(), ["validate"], "{run}");
    assert!(run.stderr.contains("replicaCount"), "helm's own error names the value: {run}");
    assert_eq!(run.result["error"], "chart");
    assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret), "{run}");
}

/// A stand-in for helm (`HELM=/input/helm`): it appends each command line to `calls`, answers
/// `history` with `history.json` as `helm history --output json` prints it ("release: not
/// found" when there is none), and after an upgrade, rollback or uninstall with
/// `history-after.json` (none after an uninstall). A file `fail-<command>` makes that command
/// fail; `block-upgrade` makes the upgrade run until it gets SIGTERM.
const FAKE_HELM: &str = r#"#!/bin/busybox sh
dir=$(dirname "$0")
printf '%s\n' "$*" >>"$dir/calls"
case $1 in
history)
	file=$dir/history.json
	[ ! -e "$dir/changed" ] || file=$dir/history-after.json
	if [ ! -e "$file" ]; then
		echo 'Error: release: not found' >&2
		exit 1
	fi
	cat "$file"
	;;
upgrade | rollback | uninstall)
	: >"$dir/changed"
	if [ "$1" = upgrade ] && [ -e "$dir/block-upgrade" ]; then
		trap 'echo TERM >>"$dir/calls"; exit 1' TERM
		while :; do sleep 0.1; done
	fi
	if [ -e "$dir/fail-$1" ]; then
		echo "Error: UPGRADE FAILED: the stand-in's $1 fails" >&2
		exit 1
	fi
	echo "$1 done"
	;;
esac
"#;

/// `helm history --output json` of revisions (number, status), as helm 3 prints it.
fn history(revisions: &[(u32, &str)]) -> String {
    let entries: Vec<Value> = revisions
        .iter()
        .map(|(revision, status)| {
            json!({
                "revision": revision,
                "updated": "2026-01-05T10:00:00.000000000Z",
                "status": status,
                "chart": "fleet-telemetry-0.1.0",
                "app_version": "0.1.0",
                // What a description may say must never count as a status.
                "description": format!("Upgrade \"status\":\"deployed\", revision {revision}"),
            })
        })
        .collect();
    serde_json::to_string(&entries).expect("JSON")
}

struct FakeHelm(Inputs);

impl FakeHelm {
    fn new(before: &[(u32, &str)], after: &[(u32, &str)]) -> Self {
        let inputs = Inputs::new();
        inputs.write("helm", FAKE_HELM, 0o755);
        inputs.write("kubeconfig", &kubeconfig(free_port(), "fleetplane-test-bearer-token"), 0o644);
        inputs.write("values.yaml", "logFormat: text\n", 0o644);
        if !before.is_empty() {
            inputs.write("history.json", &history(before), 0o644);
        }
        if !after.is_empty() {
            inputs.write("history-after.json", &history(after), 0o644);
        }
        Self(inputs)
    }

    fn touch(&self, name: &str) {
        self.0.write(name, "", 0o644);
    }

    /// The entrypoint with the stand-in, `FP_RELEASE=fleet` in namespace `fleet`, and `env`.
    fn run(&self, env: &[(&str, &str)]) -> Run {
        let base = [
            ("HELM", "/input/helm"),
            ("KUBECONFIG", "/input/kubeconfig"),
            ("FP_RELEASE", "fleet"),
            ("FP_NAMESPACE", "fleet"),
        ];
        run_entrypoint(&self.0, &[&base[..], env].concat())
    }

    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.0.path().join("calls")).unwrap_or_default().lines().map(str::to_owned).collect()
    }
}

const DEPLOY: &[(&str, &str)] =
    &[("FP_ACTION", "deploy"), ("FP_CHART", "/charts/fleet-telemetry"), ("FP_VALUES", "/input/values.yaml")];
const TEMPLATE: &str = "template fleet /charts/fleet-telemetry --namespace=fleet --values=/input/values.yaml";
const HISTORY: &str = "history fleet --namespace=fleet --max=256 --output=json";
const UPGRADE: &str = "upgrade --install fleet /charts/fleet-telemetry --namespace=fleet --create-namespace --atomic \
                       --wait --timeout=10m --hide-notes --values=/input/values.yaml";

#[test]
#[ignore = "needs Docker and the images: run `cargo xtask test`"]
fn a_release_stuck_pending_is_refused_naming_the_rollback_that_fixes_it_unless_asked_to_do_it() {
    require_engine();
    let stuck = [(1, "superseded"), (2, "deployed"), (3, "pending-upgrade")];
    let helm = FakeHelm::new(
        &stuck,
        &[(1, "superseded"), (2, "superseded"), (3, "superseded"), (4, "deployed"), (5, "deployed")],
    );
    let run = helm.run(DEPLOY);
    assert_eq!(run.code, 5, "{run}");
    assert_eq!(
        run.result,
        json!({"action": "deploy", "ok": false, "status": "pending-upgrade", "revision": 3, "error": "pending", "rollback_to": 2})
    );
    for said in [
        "stuck in pending-upgrade at revision 3",
        "another operation",
        "helm rollback fleet 2 --namespace fleet",
        "FP_RECOVER_PENDING=1",
    ] {
        assert!(run.stderr.contains(said), "{said:?} in {run}");
    }
    assert_eq!(helm.calls(), [TEMPLATE, HISTORY], "nothing was changed");

    let helm = FakeHelm::new(
        &stuck,
        &[(1, "superseded"), (2, "superseded"), (3, "superseded"), (4, "superseded"), (5, "deployed")],
    );
    let run = helm.run(&[DEPLOY, &[("FP_RECOVER_PENDING", "1")]].concat());
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.steps(), ["validate", "status", "recover", "deploy"]);
    assert_eq!(
        helm.calls(),
        [TEMPLATE, HISTORY, "rollback fleet 2 --namespace=fleet --wait --timeout=10m", UPGRADE, HISTORY]
    );
    assert_eq!(
        run.result,
        json!({"action": "deploy", "ok": true, "status": "deployed", "revision": 5, "error": null, "rollback_to": 2})
    );
}

#[test]
#[ignore = "needs Docker and the images: run `cargo xtask test`"]
fn an_install_that_never_completed_is_fixed_by_an_uninstall() {
    require_engine();
    let helm = FakeHelm::new(&[(1, "pending-install")], &[(1, "deployed")]);
    let run = helm.run(DEPLOY);
    assert_eq!(run.code, 5, "{run}");
    assert!(run.stderr.contains("helm uninstall fleet --namespace fleet"), "{run}");
    assert_eq!(run.result["rollback_to"], Value::Null);
    assert_eq!(helm.calls(), [TEMPLATE, HISTORY]);

    let run = helm.run(&[DEPLOY, &[("FP_RECOVER_PENDING", "1")]].concat());
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(
        helm.calls()[2..],
        [TEMPLATE, HISTORY, "uninstall fleet --namespace=fleet --wait --timeout=10m", UPGRADE, HISTORY]
    );
    assert_eq!(run.result["status"], "deployed");
    assert_eq!(run.result["revision"], 1);
}

#[test]
#[ignore = "needs Docker and the images: run `cargo xtask test`"]
fn a_first_install_passes_the_chart_version_repository_and_timeout_to_helm() {
    require_engine();
    let helm = FakeHelm::new(&[], &[(1, "deployed")]);
    let run = helm.run(&[
        ("FP_ACTION", "upgrade"),
        ("FP_CHART", "fleet-telemetry"),
        ("FP_CHART_VERSION", "0.1.0"),
        ("FP_CHART_REPO", "https://charts.example.com"),
        ("FP_TIMEOUT", "5m30s"),
    ]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(
        helm.calls(),
        [
            "template fleet fleet-telemetry --namespace=fleet --version=0.1.0 --repo=https://charts.example.com",
            HISTORY,
            "upgrade --install fleet fleet-telemetry --namespace=fleet --create-namespace --atomic --wait --timeout=5m30s \
             --hide-notes --version=0.1.0 --repo=https://charts.example.com",
            HISTORY,
        ]
    );
    assert_eq!(
        run.result,
        json!({"action": "upgrade", "ok": true, "status": "deployed", "revision": 1, "error": null, "rollback_to": null})
    );
}

#[test]
#[ignore = "needs Docker and the images: run `cargo xtask test`"]
fn a_failed_upgrade_exits_1_and_reports_the_release_as_helm_left_it() {
    require_engine();
    // --atomic rolled the failed revision 3 back: revision 4 is revision 2 again.
    let helm = FakeHelm::new(
        &[(1, "superseded"), (2, "deployed")],
        &[(1, "superseded"), (2, "superseded"), (3, "failed"), (4, "deployed")],
    );
    helm.touch("fail-upgrade");
    let run = helm.run(DEPLOY);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("UPGRADE FAILED"), "helm's error is in the log: {run}");
    assert_eq!(
        run.result,
        json!({"action": "deploy", "ok": false, "status": "deployed", "revision": 4, "error": "helm", "rollback_to": null})
    );
}

#[test]
#[ignore = "needs Docker and the images: run `cargo xtask test`"]
fn rollback_and_uninstall_run_helm_and_report_what_its_history_says_afterwards() {
    require_engine();
    let helm =
        FakeHelm::new(&[(1, "superseded"), (2, "deployed")], &[(1, "superseded"), (2, "superseded"), (3, "deployed")]);
    let run = helm.run(&[("FP_ACTION", "rollback"), ("FP_REVISION", "1")]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(helm.calls(), [HISTORY, "rollback fleet 1 --namespace=fleet --wait --timeout=10m", HISTORY]);
    assert_eq!(run.result["status"], "deployed");
    assert_eq!(run.result["revision"], 3);

    let helm = FakeHelm::new(&[(1, "deployed")], &[]);
    let run = helm.run(&[("FP_ACTION", "uninstall")]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(helm.calls(), [HISTORY, "uninstall fleet --namespace=fleet --wait --timeout=10m --ignore-not-found"]);
    assert_eq!(
        run.result,
        json!({"action": "uninstall", "ok": true, "status": "uninstalled", "revision": null, "error": null, "rollback_to": null})
    );

    // Uninstalling what is not there succeeds without asking helm to.
    let run = helm.run(&[("FP_ACTION", "uninstall")]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.result["status"], "uninstalled");
    assert_eq!(helm.calls().last().map(String::as_str), Some(HISTORY));

    let helm = FakeHelm::new(&[], &[]);
    let run = helm.run(&[("FP_ACTION", "rollback"), ("FP_REVISION", "1")]);
    assert_eq!((run.code, &run.result["error"]), (1, &json!("not_found")), "{run}");
}

#[test]
#[ignore = "needs Docker and the images: run `cargo xtask test`"]
fn an_environment_that_breaks_the_contract_is_refused_before_helm_runs() {
    require_engine();
    let helm = FakeHelm::new(&[(1, "deployed")], &[]);
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("FP_ACTION", "")], "FP_ACTION is not set"),
        (&[("FP_ACTION", "install")], "must be deploy, upgrade, rollback or uninstall"),
        (&[("FP_RELEASE", "Fleet_1")], "FP_RELEASE must be a release name"),
        (&[("FP_RELEASE", &"a".repeat(54))], "FP_RELEASE must be a release name"),
        (&[("FP_NAMESPACE", "")], "FP_NAMESPACE must be a namespace"),
        (&[("FP_TIMEOUT", "soon")], "FP_TIMEOUT must be a duration"),
        (&[("FP_RECOVER_PENDING", "yes")], "FP_RECOVER_PENDING must be 1"),
        (&[("KUBECONFIG", "")], "KUBECONFIG is not set"),
        (&[("KUBECONFIG", "/input/nothing")], "KUBECONFIG=/input/nothing is not a file"),
        (&[("FP_CHART", "")], "FP_CHART is not set"),
        (&[("FP_CHART", "--post-renderer=/bin/busybox")], "FP_CHART must not start with '-'"),
        (&[("FP_VALUES", "/input/nothing.yaml")], "FP_VALUES=/input/nothing.yaml is not a file"),
        (&[("FP_ACTION", "rollback"), ("FP_REVISION", "0")], "FP_REVISION must be the revision"),
        (&[("FP_ACTION", "rollback"), ("FP_REVISION", "2; true")], "FP_REVISION must be the revision"),
    ];
    for (changes, message) in cases {
        let run = helm.run(&[DEPLOY, changes].concat());
        assert_eq!(run.code, 2, "{changes:?}: {run}");
        assert!(run.stderr.contains(message), "{changes:?}: expected {message:?} in {run}");
        assert_eq!(run.result["error"], "contract", "{changes:?}");
        assert!(run.steps().is_empty(), "{changes:?}: {run}");
    }
    assert!(helm.calls().is_empty(), "helm never ran: {:?}", helm.calls());
}

#[test]
#[ignore = "needs Docker and the images: run `cargo xtask test`"]
fn stopping_the_container_stops_helm_with_sigterm_and_exits_143() {
    require_engine();
    let helm = FakeHelm::new(&[(1, "deployed")], &[]);
    helm.touch("block-upgrade");
    let container = Container(unique("helm"));
    let mount = format!("{}:/input", helm.0.path().display());
    let mut args = vec!["run", "--detach", "--name", &container.0, "--network", "none", "--volume", &mount];
    let env: Vec<String> = [
        ("HELM", "/input/helm"),
        ("KUBECONFIG", "/input/kubeconfig"),
        ("FP_RELEASE", "fleet"),
        ("FP_NAMESPACE", "fleet"),
    ]
    .iter()
    .chain(DEPLOY)
    .map(|(name, value)| format!("{name}={value}"))
    .collect();
    for setting in &env {
        args.extend(["--env", setting]);
    }
    args.push(HELM_IMAGE);
    docker_ok(&args);

    wait_for(
        "the upgrade starts",
        Duration::from_secs(30),
        || helm.calls().iter().any(|call| call.starts_with("upgrade ")),
        || format!("{:?}", helm.calls()),
    );
    docker_ok(&["stop", "--time", "20", &container.0]);
    assert_eq!(helm.calls().last().map(String::as_str), Some("TERM"), "helm got SIGTERM: {:?}", helm.calls());
    assert_eq!(inspect(&container.0)["State"]["ExitCode"], 143);
    let logs = docker_ok(&["logs", &container.0]);
    let result = logs.lines().last().and_then(|line| line.strip_prefix("FLEETPLANE_RESULT ")).expect("the result line");
    let result: Value = serde_json::from_str(result).expect("JSON");
    assert_eq!(result["error"], "interrupted");
}
