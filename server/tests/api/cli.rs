//! The `fleetplane` binary itself: help, config, admin create-user, migrate, and serve with
//! a clean exit on SIGTERM.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{
    TestApp, fresh_database_url,
    server::{fleetplane, run_with_stdin},
};

const BIN: &str = env!("CARGO_BIN_EXE_fleetplane");

#[test]
fn help_lists_the_commands() {
    let output = Command::new(BIN).arg("--help").output().expect("run");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for command in ["serve", "worker", "migrate", "config", "admin"] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
    let admin = Command::new(BIN).args(["admin", "create-user", "--help"]).output().expect("run");
    let admin = String::from_utf8_lossy(&admin.stdout);
    for flag in ["--email", "--username", "--password-stdin", "--org-owner"] {
        assert!(admin.contains(flag), "{flag} missing from:\n{admin}");
    }
}

#[test]
fn config_prints_secrets_redacted_and_bad_values_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = fleetplane(dir.path(), "postgres://fp:s3cret-db-pass@localhost/fp")
        .env("FLEETPLANE_SESSION_SECRET", "s3cret-session-0123456789abcdefghijk")
        .arg("config")
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(!printed.contains("s3cret"), "{printed}");
    assert!(printed.contains("database_url = \"[redacted]\""), "{printed}");

    let bad =
        fleetplane(dir.path(), "sqlite://x").env("FLEETPLANE_SIGNUP", "sometimes").arg("config").output().expect("run");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("FLEETPLANE_SIGNUP"));
}

#[test]
fn a_config_file_is_read_and_a_typo_in_it_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("fleetplane.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:9123\"\nsignup = \"closed\"\n[rate_limits]\nlogin_per_ip = { max = 7, window_secs = 30 }\n")
        .expect("write config");
    let output = fleetplane(dir.path(), "sqlite://x").arg("--config").arg(&file).arg("config").output().expect("run");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8_lossy(&output.stdout);
    for expected in ["listen = \"127.0.0.1:9123\"", "signup = \"closed\"", "max = 7"] {
        assert!(printed.contains(expected), "{expected} missing from:\n{printed}");
    }
    // The environment wins over the file.
    let output = fleetplane(dir.path(), "sqlite://x")
        .env("FLEETPLANE_SIGNUP", "open")
        .arg("--config")
        .arg(&file)
        .arg("config")
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&output.stdout).contains("signup = \"open\""));

    std::fs::write(&file, "lisen = \"127.0.0.1:9123\"\n").expect("write config");
    let typo = fleetplane(dir.path(), "sqlite://x").arg("--config").arg(&file).arg("config").output().expect("run");
    assert!(!typo.status.success());
    let stderr = String::from_utf8_lossy(&typo.stderr);
    assert!(stderr.contains("fleetplane.toml") && stderr.contains("lisen"), "{stderr}");
}

#[tokio::test]
async fn admin_create_user_makes_a_verified_account_and_org_owner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = fresh_database_url(dir.path()).await;
    let mut command = fleetplane(dir.path(), &database_url);
    command.args([
        "admin",
        "create-user",
        "--email",
        "root@example.com",
        "--username",
        "root",
        "--password-stdin",
        "--org-owner",
        "platform",
    ]);
    let output = run_with_stdin(command, "a long admin password\n");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("Created user root") && stdout.contains("owner of the organization platform"), "{stdout}");

    let app = TestApp::spawn_with(|config| {
        config.database_url = fleetplane::config::Secret::new(database_url.clone());
        config.data_dir = dir.path().to_owned();
    })
    .await;
    let root = app.client();
    root.sign_in("root@example.com", "a long admin password").await.expect_status(StatusCode::OK);
    let orgs = root.get("/api/v1/orgs").await.json();
    let names: Vec<(&str, &str)> = orgs
        .as_array()
        .expect("list")
        .iter()
        .map(|o| (o["name"].as_str().expect("n"), o["role"].as_str().expect("r")))
        .collect();
    assert_eq!(names, [("platform", "owner"), ("root", "owner")]);
    assert!(app.smtp.all().await.is_empty(), "an admin-made account needs no verification mail");
}

#[tokio::test]
async fn admin_create_user_explains_bad_input_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = fresh_database_url(dir.path()).await;
    let mut command = fleetplane(dir.path(), &database_url);
    command.args(["admin", "create-user", "--email", "not-an-email", "--username", "9", "--password-stdin"]);
    let output = run_with_stdin(command, "short\n");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for field in ["--email", "--username", "--password"] {
        assert!(stderr.contains(field), "{field} not explained in:\n{stderr}");
    }

    // The same email twice: the second is refused with the reason.
    let create = |name: &str| {
        let mut command = fleetplane(dir.path(), &database_url);
        command.args(["admin", "create-user", "--email", "ops@example.com", "--username", name, "--password-stdin"]);
        run_with_stdin(command, "a long admin password\n")
    };
    assert!(create("ops").status.success());
    let again = create("ops2");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let app =
        TestApp::spawn_with(|config| config.database_url = fleetplane::config::Secret::new(database_url.clone())).await;
    assert_eq!(app.counts().await[0], 1, "one user");
}

#[tokio::test]
async fn migrate_then_serve_and_stop_cleanly_on_sigterm_with_json_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = fresh_database_url(dir.path()).await;
    let migrate = fleetplane(dir.path(), &database_url).arg("migrate").output().expect("run");
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));

    let port = crate::support::ports::free_port();
    let mut server = fleetplane(dir.path(), &database_url)
        .env("FLEETPLANE_LISTEN", format!("127.0.0.1:{port}"))
        .args(["--log-format", "json", "serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let mut banner = String::new();
    BufReader::new(server.stdout.take().expect("stdout")).read_line(&mut banner).expect("banner");
    assert_eq!(banner.trim(), format!("Fleetplane is running at http://127.0.0.1:{port}/"));

    let client = reqwest::Client::new();
    let health = client.get(format!("http://127.0.0.1:{port}/healthz")).send().await.expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    let signup = client
        .post(format!("http://127.0.0.1:{port}/api/v1/auth/signup"))
        .json(&json!({ "email": "ada@example.com", "username": "ada", "password": "correct horse" }))
        .send()
        .await
        .expect("signup");
    assert_eq!(signup.status(), StatusCode::ACCEPTED);

    let kill = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().expect("kill");
    assert!(kill.success());
    let output = server.wait_with_output().expect("wait");
    assert!(output.status.success(), "exit status {:?}", output.status);
    let logs = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["fields"]["message"].as_str().is_some_and(|m| m.contains("shutting down"))),
        "{logs}"
    );
    assert!(lines.iter().all(|l| l["level"].is_string() && l["timestamp"].is_string()));
    assert!(!logs.contains("correct horse"), "passwords never reach the logs");
}
