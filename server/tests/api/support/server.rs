//! The `fleetplane` binary as a server process, for tests that need a second server or kill one.

use std::{
    io::{BufRead, Write},
    process::{Command, Stdio},
};

use url::Url;

use super::Client;

const BIN: &str = env!("CARGO_BIN_EXE_fleetplane");

/// The binary, with a clean environment pointing at `dir` and `database_url`.
pub fn fleetplane(dir: &std::path::Path, database_url: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FLEETPLANE_DATA_DIR", dir)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "info");
    command
}

pub fn run_with_stdin(mut command: Command, stdin: &str) -> std::process::Output {
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("wait")
}

pub struct ServerProcess {
    pub child: std::process::Child,
    pub base: Url,
    /// Its log (stderr), printed when a test fails.
    log: std::path::PathBuf,
}

impl ServerProcess {
    /// `fleetplane serve` on `port` against `database_url`, with `env` on top of a clean
    /// environment; returns once it prints that it is running.
    pub fn start(dir: &std::path::Path, database_url: &str, port: u16, env: &[(&str, &str)]) -> Self {
        let log = dir.join(format!("server-{}.log", rand::random::<u32>()));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut command = fleetplane(dir, database_url);
        command.env("FLEETPLANE_LISTEN", format!("127.0.0.1:{port}"));
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.arg("serve").stdout(Stdio::piped()).stderr(log_file).spawn().expect("start the server");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut banner = String::new();
        stdout.read_line(&mut banner).expect("banner");
        assert!(
            banner.contains("running at"),
            "the server did not start:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        // Whatever it prints later is read, so that a full pipe never blocks it.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Self { child, base: format!("http://127.0.0.1:{port}/").parse().expect("url"), log }
    }

    /// A new client of this server, with its own cookie jar.
    pub fn client(&self) -> Client {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder().cookie_provider(jar.clone()).build().expect("client");
        Client::from_parts(http, jar, self.base.clone())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(200).collect();
            eprintln!("--- the last lines of the server's log ({}):", self.log.display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
