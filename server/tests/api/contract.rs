//! The API against its own OpenAPI document: schemathesis (pinned by `cargo xtask test`)
//! generates valid and invalid requests for every operation the document lists, sends them to a
//! server seeded with real data, and checks each answer against what the document promises
//! (status codes, bodies, authentication, content types).
//!
//! Its whole console output goes to `$FLEETPLANE_TEST_ARTIFACTS/schemathesis-<database>.txt`;
//! the test reads the machine-readable report (NDJSON events) for its verdict.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};
use url::Url;

use crate::support::{
    Resp, TestApp, backend,
    clouds::{Moto, emulator_program},
    runs::local_cluster,
};

/// Generous: a run takes about a minute, longer on busy cores.
const SCHEMATHESIS_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Examples per operation and phase: enough to find what is wrong, few enough for the suite.
const MAX_EXAMPLES: &str = "25";
/// Operations that must get at least one answer other than 404, of 71 in the document today.
/// Some cannot here: Google sign-in and unlinking it (no Google), the dev outbox (off with
/// SMTP), forcing a state unlock (only a run holds a lock), revoking a session (signing out
/// everywhere, earlier in the run, ended them all).
const MIN_PAST_404: usize = 45;
const ORG: &str = "acme";
/// The statuses schemathesis accepts by default for a request valid by the document.
const POSITIVE_STATUSES: [&str; 8] = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"];
/// How much of a reproducing command the assertion message shows.
const CURL_LIMIT: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs schemathesis: run `cargo xtask test`"]
async fn the_api_keeps_the_contract_its_openapi_document_states() {
    let schemathesis = emulator_program("schemathesis");
    let moto = Moto::start().await;
    let app = TestApp::spawn_with(|config| {
        config.rate_limits.enabled = false;
        // No workers: runs stay where the seeding left them, so every run sees the same data.
        config.runs.workers = 0;
        config.cloud.aws_endpoint_url = Some(moto.url.clone());
        config.cloud.timeout_secs = 10;
    })
    .await;
    let seeded = seed(&app, &moto).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let config_file = dir.path().join("schemathesis.toml");
    fs::write(&config_file, seeded.config(&app.base)).expect("write schemathesis.toml");
    let report = dir.path().join("events.ndjson");
    let console = artifacts_dir().join(format!("schemathesis-{}.txt", backend()));
    let document = app.base.join("api/openapi.json").expect("url");
    run_schemathesis(&schemathesis, dir.path(), &config_file, document.as_str(), &report, &console).await;
    eprintln!("schemathesis output: {}", console.display());

    let operations = operations_of(&reqwest::get(document).await.expect("document").json().await.expect("JSON"));
    let outcome = Outcome::read(&report, &operations);
    let not_past_404: Vec<&String> = operations.iter().filter(|op| !outcome.past_404.contains(*op)).collect();
    eprintln!(
        "{} of {} operations got past a 404; these did not:\n  {}",
        outcome.past_404.len(),
        operations.len(),
        not_past_404.iter().map(|op| op.as_str()).collect::<Vec<_>>().join("\n  ")
    );

    let me = reqwest::Client::new().get(app.base.join("api/v1/me").expect("url")).bearer_auth(&seeded.token);
    let me = me.send().await.expect("request reaches the server").status();
    assert_eq!(me, StatusCode::OK, "the run revoked the token it tests with (see {})", console.display());
    assert!(
        outcome.failures.is_empty() && outcome.errors.is_empty(),
        "schemathesis found {} failures and {} errors (full output: {}):\n{}{}",
        outcome.failures.len(),
        outcome.errors.len(),
        console.display(),
        outcome
            .failures
            .iter()
            .map(|((op, code), f)| format!("{code} {op}: {}. {}\n    {}\n", f.title, f.message, f.curl))
            .collect::<String>(),
        outcome.errors.iter().map(|e| format!("error: {e}\n")).collect::<String>(),
    );
    assert!(
        outcome.past_404.len() >= MIN_PAST_404,
        "only {} operations got past a 404, {MIN_PAST_404} expected",
        outcome.past_404.len()
    );
}

/// What the seeding created, by the ids the operations' parameters take.
struct Seeded {
    token: String,
    /// A second token, for the operation that revokes one.
    scratch_token: String,
    session: String,
    bob: String,
    carol: String,
    notification_to_read: String,
    notification_to_delete: String,
    /// To `dan@example.com`, in `acme`.
    invitation_to_revoke: String,
    /// Two invitations to ada, from bob's organizations.
    invitation_to_accept: String,
    invitation_to_decline: String,
    account: String,
    scratch_account: String,
    cluster: String,
    scratch_cluster: String,
    queued_run: String,
    canceled_run: String,
}

/// Seeds, through the API: ada's personal organization and `acme`, where bob is an operator and
/// carol a viewer, and an invitation to revoke; two AWS accounts (on moto), two clusters on the
/// local target with a queued and a canceled run; two API tokens; two invitations to ada from
/// bob's organizations, and her notifications of them. No Terraform state: only a run a worker
/// holds may write one.
async fn seed(app: &TestApp, moto: &Moto) -> Seeded {
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let created = |response: Resp| response.expect_status(StatusCode::CREATED).json();
    let id = |value: &Value| value["id"].as_str().expect("id").to_owned();

    created(ada.post("/api/v1/orgs", json!({ "name": ORG, "display_name": "Acme" })).await);
    ada.add_to_org(ORG, &bob, "operator").await;
    ada.add_to_org(ORG, &carol, "viewer").await;
    let invitation_to_revoke = id(&created(
        ada.post(&format!("/api/v1/orgs/{ORG}/invitations"), json!({ "email": "dan@example.com", "role": "viewer" }))
            .await,
    ));
    let mut received = Vec::new();
    for org in ["bobs-lab", "bobs-shop"] {
        created(bob.post("/api/v1/orgs", json!({ "name": org })).await);
        let body = json!({ "email": "ada@example.com", "role": "viewer" });
        received.push(id(&created(bob.post(&format!("/api/v1/orgs/{org}/invitations"), body).await)));
    }
    let page = ada.get("/api/v1/notifications").await.expect_status(StatusCode::OK).json();
    let notifications: Vec<String> = page["items"].as_array().expect("items").iter().map(id).collect();
    // Bob and carol accepted ada's invitations; bob invited her twice.
    assert_eq!(notifications.len(), 4, "{page}");

    let key = moto.create_user("fleetplane", &["s3:ListAllMyBuckets"]).await;
    moto.create_bucket("acme-tf-state").await;
    let mut accounts = Vec::new();
    for name in ["aws-dev", "aws-scratch"] {
        let body = json!({
            "provider": "aws", "name": name, "environment": "dev",
            "credentials": { "access_key_id": key.access_key_id, "secret_access_key": key.secret_access_key },
        });
        accounts.push(id(&created(ada.post(&format!("/api/v1/orgs/{ORG}/cloud-accounts"), body).await)));
    }

    let clusters = format!("/api/v1/orgs/{ORG}/clusters");
    let mut cluster_ids = Vec::new();
    let mut first_runs = Vec::new();
    for suffix in ["main", "scratch"] {
        let body = created(ada.post(&clusters, local_cluster(suffix, json!(null))).await);
        cluster_ids.push(id(&body["cluster"]));
        first_runs.push(id(&body["run"]));
    }
    // Idle clusters: the creating runs canceled, so a cluster can be changed, destroyed, rerun.
    for run in &first_runs {
        ada.post_empty(&format!("/api/v1/runs/{run}/cancel")).await.expect_status(StatusCode::OK);
    }
    let queued_run =
        id(&created(ada.post(&format!("{clusters}/{}/runs", cluster_ids[0]), json!({ "action": "plan" })).await));

    let token = created(ada.post("/api/v1/me/tokens", json!({ "name": "contract" })).await);
    let scratch_token = created(ada.post("/api/v1/me/tokens", json!({ "name": "scratch" })).await);
    let sessions = ada.get("/api/v1/me/sessions").await.expect_status(StatusCode::OK).json();

    Seeded {
        token: token["token"].as_str().expect("token").to_owned(),
        scratch_token: id(&scratch_token),
        session: id(&sessions[0]),
        bob: bob.user_id().await.to_string(),
        carol: carol.user_id().await.to_string(),
        notification_to_read: notifications[0].clone(),
        notification_to_delete: notifications[1].clone(),
        invitation_to_revoke,
        invitation_to_accept: received[0].clone(),
        invitation_to_decline: received[1].clone(),
        account: accounts[0].clone(),
        scratch_account: accounts[1].clone(),
        cluster: cluster_ids[0].clone(),
        scratch_cluster: cluster_ids[1].clone(),
        queued_run,
        canceled_run: first_runs[0].clone(),
    }
}

impl Seeded {
    /// schemathesis' configuration: the seeded ids as parameter values, and for each operation
    /// that removes something, an object made for it. None revokes the token the run uses:
    /// signing out (here and everywhere) and changing the password end sessions, not tokens, and
    /// a username change leaves `acme` as it is.
    fn config(&self, base: &Url) -> String {
        let pin = |names: &[&str], parameter: &str, value: &str| json!({ "include-name": names, "parameters": { parameter: value } });
        // A pinned value wins over what a link supplies, also in the stateful phase. There,
        // removing what a request just created would remove the pinned object instead, gone
        // since the first time, and be reported as "created resource not found"; so these
        // removals stay out of the stateful phase (the other phases still send them).
        let removal = |name: &str, parameter: &str, value: &str| {
            let mut operation = pin(&[name], parameter, value);
            operation["phases"] = json!({ "stateful": { "enabled": false } });
            operation
        };
        // Requests whose every field is valid, but whose values together are not: credentials
        // of another cloud, a region the target lacks, a wrong current password, an unknown
        // verification token, an email address not in its canonical (NFKC) form. No JSON Schema can state these rules; the server answers them
        // with its documented 422 (400 for a token), which then counts as accepted.
        let semantic = |mut operation: Value, status: &str| {
            let mut statuses: Vec<&str> = POSITIVE_STATUSES.to_vec();
            statuses.push(status);
            operation["checks"] = json!({ "positive_data_acceptance": { "expected-statuses": statuses } });
            operation
        };
        let account = "/api/v1/orgs/{org}/cloud-accounts/{id}";
        let cluster = "/api/v1/orgs/{org}/clusters/{id}";
        let config = json!({
            "base-url": base.as_str().trim_end_matches('/'),
            "headers": { "Authorization": format!("Bearer {}", self.token) },
            // Otherwise each request also gets a made-up session cookie next to the valid
            // token, and every refusal of that is reported as accepted invalid authentication.
            "generation": { "with-security-parameters": false, "database": "none" },
            "parameters": {
                "path.org": ORG,
                "path.user_id": self.bob,
                "path.cluster": self.cluster,
                "path.provider": "google",
                "path.service": "airflow",
            },
            "operations": [
                removal("DELETE /api/v1/me/tokens/{id}", "path.id", &self.scratch_token),
                pin(&["DELETE /api/v1/me/sessions/{id}"], "path.id", &self.session),
                pin(&["POST /api/v1/notifications/{id}/read"], "path.id", &self.notification_to_read),
                pin(&["DELETE /api/v1/notifications/{id}"], "path.id", &self.notification_to_delete),
                pin(
                    &[&format!("GET {account}"), &format!("PATCH {account}"), &format!("GET {account}/buckets"), &format!("POST {account}/verify")],
                    "path.id",
                    &self.account,
                ),
                semantic(pin(&[&format!("PUT {account}/credentials")], "path.id", &self.scratch_account), "422"),
                removal(&format!("DELETE {account}"), "path.id", &self.scratch_account),
                pin(
                    &[
                        &format!("GET {cluster}"),
                        &format!("GET {cluster}/runs"),
                        &format!("GET {cluster}/state"),
                        &format!("DELETE {cluster}/state/lock"),
                    ],
                    "path.id",
                    &self.cluster,
                ),
                semantic(pin(&[&format!("PATCH {cluster}"), &format!("POST {cluster}/runs")], "path.id", &self.cluster), "422"),
                semantic(
                    json!({ "include-name": [
                        "POST /api/v1/orgs/{org}/clusters",
                        "POST /api/v1/orgs/{org}/cloud-accounts",
                        "PUT /api/v1/me/password",
                        // An address that Unicode NFKC would change (`not_canonical`).
                        "POST /api/v1/auth/signup",
                        "POST /api/v1/auth/login",
                        "POST /api/v1/auth/resend-verification",
                        "POST /api/v1/auth/password-reset",
                        "POST /api/v1/orgs/{org}/invitations",
                        // Values are checked against the chosen service's own schema, and a
                        // version and a revision against what that service and deployment have.
                        "POST /api/v1/orgs/{org}/clusters/{id}/deployments",
                        "PATCH /api/v1/orgs/{org}/deployments/{id}",
                        "POST /api/v1/orgs/{org}/deployments/{id}/rollback",
                    ] }),
                    "422",
                ),
                semantic(
                    json!({ "include-name": ["POST /api/v1/auth/verify-email", "POST /api/v1/auth/password-reset/confirm"] }),
                    "400",
                ),
                removal("DELETE /api/v1/orgs/{org}/invitations/{id}", "path.id", &self.invitation_to_revoke),
                removal("POST /api/v1/me/invitations/{id}/accept", "path.id", &self.invitation_to_accept),
                removal("POST /api/v1/me/invitations/{id}/decline", "path.id", &self.invitation_to_decline),
                removal(&format!("DELETE {cluster}"), "path.id", &self.scratch_cluster),
                pin(
                    &["GET /api/v1/runs/{id}", "GET /api/v1/runs/{id}/logs", "POST /api/v1/runs/{id}/approve", "POST /api/v1/runs/{id}/cancel"],
                    "path.id",
                    &self.queued_run,
                ),
                pin(&["POST /api/v1/runs/{id}/retry"], "path.id", &self.canceled_run),
                // Bob keeps his membership for the role changes; carol is the one removed.
                removal("DELETE /api/v1/orgs/{org}/members/{user_id}", "path.user_id", &self.carol),
            ],
        });
        toml::to_string(&config).expect("TOML")
    }
}

/// Runs schemathesis over the whole document with every phase, its console output into
/// `console`, its events into `report`. Killed if it outlives [`SCHEMATHESIS_TIMEOUT`].
async fn run_schemathesis(program: &Path, dir: &Path, config: &Path, document: &str, report: &Path, console: &Path) {
    fs::create_dir_all(console.parent().expect("artifacts dir")).expect("create the artifacts dir");
    let output = fs::File::create(console).expect("create the console log");
    let mut child = tokio::process::Command::new(program)
        .current_dir(dir)
        .arg("--config-file")
        .arg(config)
        .args(["--no-color", "run", document, "--phases", "examples,coverage,fuzzing,stateful"])
        // One worker: the operations run in the same order every time, so they see the same data.
        .args(["--max-examples", MAX_EXAMPLES, "--workers", "1"])
        // The same requests on every run, so that a failure reproduces: a fixed seed (which
        // schemathesis puts before deterministic mode) and deterministic generation for the rest.
        .args(["--generation-deterministic", "--seed", "20260101"])
        .args(["--report", "ndjson", "--report-ndjson-path"])
        .arg(report)
        .stdin(Stdio::null())
        .stdout(output.try_clone().expect("console log"))
        .stderr(output)
        .kill_on_drop(true)
        .spawn()
        .expect("start schemathesis");
    let status = match tokio::time::timeout(SCHEMATHESIS_TIMEOUT, child.wait()).await {
        Ok(status) => status.expect("schemathesis"),
        Err(_) => {
            let _ = child.kill().await;
            panic!("schemathesis ran longer than {SCHEMATHESIS_TIMEOUT:?}; killed (output: {})", console.display());
        }
    };
    // 0: nothing found, 1: failures found; anything else is a usage error or a crash.
    assert!(
        matches!(status.code(), Some(0 | 1)),
        "schemathesis exited with {status}:\n{}",
        fs::read_to_string(console).unwrap_or_default()
    );
}

fn artifacts_dir() -> PathBuf {
    std::env::var_os("FLEETPLANE_TEST_ARTIFACTS").map_or_else(|| "artifacts".into(), PathBuf::from)
}

/// Every operation of an OpenAPI document, as schemathesis names them: `METHOD /path`.
fn operations_of(document: &Value) -> BTreeSet<String> {
    let methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
    document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            methods.iter().filter(|m| item.get(**m).is_some()).map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .collect()
}

/// One kind of failure of one operation, with the first request that showed it.
struct Failure {
    title: String,
    /// The first line of what the check said.
    message: String,
    curl: String,
}

/// What schemathesis' event log says.
struct Outcome {
    /// By operation and check code (`ST202`), as schemathesis counts unique failures.
    failures: BTreeMap<(String, String), Failure>,
    errors: Vec<String>,
    /// The operations that got at least one answer other than 404 to a request of their own
    /// method (the coverage phase also tries methods an operation does not have).
    past_404: BTreeSet<String>,
}

impl Outcome {
    fn read(report: &Path, operations: &BTreeSet<String>) -> Self {
        let file = fs::File::open(report).unwrap_or_else(|e| panic!("{}: {e}", report.display()));
        let mut outcome = Self { failures: BTreeMap::new(), errors: Vec::new(), past_404: BTreeSet::new() };
        let mut finished = false;
        for line in BufReader::new(file).lines() {
            let event: Value = serde_json::from_str(&line.expect("report line")).expect("an event is JSON");
            let (kind, body) = event.as_object().and_then(|o| o.iter().next()).expect("an event has one key");
            match kind.as_str() {
                "ScenarioFinished" => outcome.scenario(&body["recorder"], operations),
                "NonFatalError" | "FatalError" => outcome.errors.push(format!(
                    "{}: {}",
                    body["label"].as_str().unwrap_or("(no operation)"),
                    body["value"]["message"].as_str().unwrap_or_default().lines().next().unwrap_or_default()
                )),
                "EngineFinished" => finished = true,
                _ => {}
            }
        }
        assert!(finished, "schemathesis stopped before the end of its run: {}", report.display());
        outcome
    }

    fn scenario(&mut self, recorder: &Value, operations: &BTreeSet<String>) {
        let empty = serde_json::Map::new();
        let interactions = recorder["interactions"].as_object().unwrap_or(&empty);
        for (id, case) in recorder["cases"].as_object().unwrap_or(&empty) {
            let case = &case["value"];
            let operation = format!(
                "{} {}",
                case["method"].as_str().unwrap_or_default(),
                case["path"].as_str().unwrap_or_default()
            );
            let status = interactions.get(id).and_then(|i| i["response"]["status_code"].as_u64());
            if operations.contains(&operation) && status.is_some_and(|s| s != 404) {
                self.past_404.insert(operation);
            }
        }
        for (id, checks) in recorder["checks"].as_object().unwrap_or(&empty) {
            for check in checks.as_array().into_iter().flatten().filter(|c| c["status"] == "failure") {
                let failure = &check["failure_info"]["failure"];
                let key = (
                    failure["operation"].as_str().unwrap_or_default().to_owned(),
                    failure["code"].as_str().unwrap_or_default().to_owned(),
                );
                self.failures.entry(key).or_insert_with(|| Failure {
                    title: failure["title"].as_str().unwrap_or_default().to_owned(),
                    message: failure["message"]
                        .as_str()
                        .unwrap_or_default()
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                    curl: interactions
                        .get(id)
                        .map_or_else(|| "(no request recorded)".to_owned(), |i| curl(&i["request"])),
                });
            }
        }
    }
}

/// A recorded request as a curl command line (the token shows as schemathesis filters it), cut
/// short when a generated body is long: the full output has it whole.
fn curl(request: &Value) -> String {
    let mut command = format!("curl -X {}", request["method"].as_str().unwrap_or("GET"));
    for (name, values) in request["headers"].as_object().into_iter().flatten() {
        for value in values.as_array().into_iter().flatten() {
            command +=
                &format!(" -H {}", shell_quote(format!("{name}: {}", value.as_str().unwrap_or_default()).as_bytes()));
        }
    }
    if let Some(body) = request["body"]["$base64"].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD.decode(body).expect("base64 body");
        command += &format!(" --data-binary {}", shell_quote(&bytes));
    }
    command = command + " " + &shell_quote(request["uri"].as_str().unwrap_or_default().as_bytes());
    match command.char_indices().nth(CURL_LIMIT) {
        Some((cut, _)) => format!("{}… ({} characters)", &command[..cut], command.chars().count()),
        None => command,
    }
}

/// `'…'`, or `$'…'` with escapes when there are bytes a terminal would not show.
fn shell_quote(bytes: &[u8]) -> String {
    if bytes.iter().all(|b| (b' '..=b'~').contains(b) && *b != b'\'') {
        return format!("'{}'", String::from_utf8_lossy(bytes));
    }
    let escaped: String = bytes
        .iter()
        .map(|&b| match b {
            b'\'' => "\\'".to_owned(),
            b'\\' => "\\\\".to_owned(),
            b' '..=b'~' => char::from(b).to_string(),
            _ => format!("\\x{b:02x}"),
        })
        .collect();
    format!("$'{escaped}'")
}
