//! `fleet-telemetry serve` as a process of its own, as an operator runs it: its data in a
//! temporary directory, its API and broker on free loopback ports, and a client for its API.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use fleetplane_common::ports::free_port;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::wait_for;

pub const BINARY: &str = env!("CARGO_BIN_EXE_fleet-telemetry");

/// A running `fleet-telemetry serve`.
pub struct Service {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub api_port: u16,
    pub broker_port: u16,
    env: Vec<(String, String)>,
    pub http: reqwest::Client,
}

impl Service {
    /// Starts it with the embedded broker, its data in `data_dir`, and `env` on top.
    pub async fn start(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut service = Self {
            child: None,
            data_dir: data_dir.to_owned(),
            api_port: free_port(),
            broker_port: free_port(),
            env,
            http: reqwest::Client::new(),
        };
        service.spawn().await;
        service
    }

    fn command(&self) -> Command {
        let mut command = Command::new(BINARY);
        command
            .env("FLEET_DATA_DIR", &self.data_dir)
            .env("FLEET_LISTEN", format!("127.0.0.1:{}", self.api_port))
            .env("FLEET_BROKER_LISTEN", format!("127.0.0.1:{}", self.broker_port))
            .env("RUST_LOG", "info,rumqttd=warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null());
        command
    }

    async fn spawn(&mut self) {
        let log =
            std::fs::File::options().create(true).append(true).open(self.data_dir.join("serve.log")).expect("log file");
        let child = self
            .command()
            .arg("serve")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("fleet-telemetry starts");
        self.child = Some(child);
        // Ready, and the broker keeps packets for the ingest: until it has subscribed once,
        // what bikes publish has no subscriber and the broker drops it.
        let (http, url) = (self.http.clone(), self.url("/readyz"));
        wait_for("fleet-telemetry to be ready with its ingest subscribed", || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let Ok(response) = http.get(&url).send().await else { return false };
                response.json::<Value>().await.is_ok_and(|health| health["ingest"] == "subscribed")
            }
        })
        .await;
    }

    /// Its process id, for reading its memory and CPU time from `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// What it logged (and printed) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("serve.log")).unwrap_or_default()
    }

    /// Kills it with SIGKILL, as a crash or the OOM killer would, and starts it again.
    pub async fn kill_and_restart(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("it exits");
        self.spawn().await;
    }

    /// Stops it with SIGTERM, as an orchestrator does, and returns how it exited.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill");
        assert!(status.success());
        let pid = child.id().to_string();
        let exited = tokio::task::spawn_blocking(move || child.wait());
        let Ok(exited) = tokio::time::timeout(STOP_DEADLINE, exited).await else {
            let _ = Command::new("kill").arg("-KILL").arg(&pid).status();
            panic!("fleet-telemetry did not stop on SIGTERM within {STOP_DEADLINE:?}");
        };
        exited.expect("the waiting thread").expect("wait")
    }

    /// `fleet-telemetry admin create-token`: the token it prints.
    pub fn create_token(&self, name: &str, scope: &str) -> String {
        let output = self
            .command()
            .args(["admin", "create-token", "--name", name, "--scope", scope])
            .output()
            .expect("admin create-token runs");
        assert!(output.status.success(), "create-token: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("UTF-8").trim().to_owned()
    }

    /// `fleet-telemetry admin <args>`: what it prints, having succeeded.
    pub fn admin(&self, args: &[&str]) -> String {
        let output = self.command().arg("admin").args(args).output().expect("admin runs");
        assert!(output.status.success(), "admin {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("UTF-8")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api_port)
    }

    /// A call with `token`, and its status and JSON body (`Value::Null` when it has none).
    pub async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status();
        let text = response.text().await.expect("a body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> Value {
        let (status, body) = self.call(Method::GET, path, token, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    pub async fn text(&self, path: &str, token: &str) -> String {
        let response = self.http.get(self.url(path)).bearer_auth(token).send().await.expect("answers");
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.text().await.expect("text")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How long the service is given to stop on SIGTERM before the test fails.
pub const STOP_DEADLINE: Duration = Duration::from_secs(60);
