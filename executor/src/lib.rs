//! Runs provisioner jobs and reports their output, exit code and result files.
//!
//! A job is one phase of a run (plan or apply), or one Helm action of a deployment run: a
//! provisioner image for a target, environment variables, files to put in the work directory
//! first and files to collect after. Two
//! executors: [`docker::DockerExecutor`] (containers through bollard, the default when an engine
//! answers) and [`process::ProcessExecutor`] (the same entrypoint and modules as local
//! processes); [`auto::AutoExecutor`] picks between them per job, never running a cloud
//! target's Terraform on the host by itself. Neither knows about runs, databases or HTTP: the
//! server's worker drives them.

pub mod auto;
pub mod docker;
pub mod process;
pub mod service;

use std::{fmt, future::Future, pin::Pin};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// Labels that mark Fleetplane's containers and say whose they are.
pub mod labels {
    /// Present on every job container.
    pub const MANAGED: &str = "dev.fleetplane.managed";
    pub const RUN: &str = "dev.fleetplane.run";
    pub const ATTEMPT: &str = "dev.fleetplane.attempt";
    pub const PHASE: &str = "dev.fleetplane.phase";
    /// The worker process that started the job.
    pub const WORKER: &str = "dev.fleetplane.worker";
}

/// The provisioner of deployments onto cloud clusters (`provisioners/helm/`): its image is
/// `<image prefix>helm:<tag>`, like a Terraform target's. Its jobs hold a token for a cluster's
/// API server, so they run only in that container, never as host processes.
pub const HELM_TARGET: &str = "helm";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line a job printed, without its line ending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub stream: Stream,
    pub text: String,
}

/// What to run.
#[derive(Clone)]
pub struct Job {
    /// Unique among jobs: the container (or job directory) name.
    pub name: String,
    /// Which provisioner: `local`, `aws-eks`, `azure-aks`, `gcp-gke` (Terraform), or
    /// [`HELM_TARGET`] (a deployment's Helm action, container only).
    pub target: String,
    /// Environment for the entrypoint; may hold secrets, so `Debug` shows the names only.
    pub env: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    /// Files (name, contents) placed in the work directory before the job starts.
    pub inputs: Vec<(String, Vec<u8>)>,
    /// Work-directory files to collect when the job ends (absent ones are skipped).
    pub outputs: Vec<String>,
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Job")
            .field("name", &self.name)
            .field("target", &self.target)
            .field("env", &env)
            .finish_non_exhaustive()
    }
}

/// How a job ended.
#[derive(Debug)]
pub struct Outcome {
    pub exit_code: i64,
    /// Collected output files (name, contents).
    pub files: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The executor cannot run jobs now (engine down, image missing): worth retrying later.
    #[error("{0}")]
    Unavailable(String),
    /// The job could not be run or watched to its end.
    #[error("{0}")]
    Failed(String),
}

/// A job found running or left over, by its labels.
#[derive(Clone, Debug)]
pub struct Found {
    pub id: String,
    pub labels: Vec<(String, String)>,
    pub running: bool,
}

impl Found {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait Executor: Send + Sync {
    /// `docker`, `process` or `auto`.
    fn kind(&self) -> &'static str;

    /// What runs jobs now: `docker` or `process` (or `none`, when an `auto` executor has
    /// neither).
    fn current_kind(&self) -> &'static str {
        self.kind()
    }

    /// The executor that runs a job for `target`: this one, or (for `auto`) the one it picks;
    /// [`ExecError::Unavailable`] when none may run it now.
    fn choose<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<&'a dyn Executor, ExecError>>;

    /// Runs `job` to its end, sending its output lines to `logs` in order. When `interrupt`
    /// fires, the job gets SIGINT (so Terraform stops cleanly and releases its lock), then is
    /// killed after the executor's grace period; it still returns its outcome.
    fn run(
        &self,
        job: Job,
        logs: mpsc::Sender<LogLine>,
        interrupt: CancellationToken,
    ) -> BoxFuture<'_, Result<Outcome, ExecError>>;

    /// Fleetplane's jobs that exist now, running or not.
    fn list(&self) -> BoxFuture<'_, Result<Vec<Found>, ExecError>>;

    /// Stops (SIGKILL) and removes a job found by [`Executor::list`].
    fn remove(&self, id: &str) -> BoxFuture<'_, Result<(), ExecError>>;
}

/// The longest line a job's log keeps, in bytes; the rest of a longer line is dropped and the
/// line says so (a job can print a multi-megabyte line, a plan's JSON say, and a log line is
/// held in memory and stored whole).
pub const MAX_LINE: usize = 16 * 1024;

/// The most a collected output file (a plan, a state, the outputs) may hold. A larger one fails
/// the job instead of taking the server's memory.
pub const MAX_OUTPUT_FILE: usize = 128 * 1024 * 1024;

fn output_too_large(name: &str) -> ExecError {
    ExecError::Failed(format!(
        "the job's {name} is larger than {} MiB, the most Fleetplane collects from a job; it was not kept",
        MAX_OUTPUT_FILE / (1024 * 1024)
    ))
}

/// Splits output bytes into lines, keeping a partial line until it completes. Bytes that are not
/// UTF-8 become U+FFFD (both executors decode alike). Each byte is looked at once, and at most
/// [`MAX_LINE`] bytes of a line are held: a longer line is cut there and ends with a note of how
/// long it was.
#[derive(Default)]
struct LineSplitter {
    pending: Vec<u8>,
    /// Bytes of the current line dropped past [`MAX_LINE`].
    dropped: usize,
}

impl LineSplitter {
    fn push(&mut self, mut bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        while !bytes.is_empty() {
            let (chunk, ended) = match bytes.iter().position(|b| *b == b'\n') {
                Some(end) => (&bytes[..end], true),
                None => (bytes, false),
            };
            let room = MAX_LINE - self.pending.len();
            self.pending.extend_from_slice(&chunk[..chunk.len().min(room)]);
            self.dropped += chunk.len().saturating_sub(room);
            bytes = &bytes[(chunk.len() + usize::from(ended))..];
            if ended {
                lines.push(self.take_line());
            }
        }
        lines
    }

    fn finish(&mut self) -> Option<String> {
        (!self.pending.is_empty() || self.dropped > 0).then(|| self.take_line())
    }

    fn take_line(&mut self) -> String {
        let bytes = std::mem::take(&mut self.pending);
        let dropped = std::mem::take(&mut self.dropped);
        let mut line = String::from_utf8_lossy(&bytes).into_owned();
        if dropped == 0 {
            if line.ends_with('\r') {
                line.pop();
            }
        } else {
            line.push_str(&format!(" … [line cut: {} bytes, the first {MAX_LINE} kept]", bytes.len() + dropped));
        }
        line
    }
}

/// The entrypoint and the target's module, as (path relative to the job dir, contents).
fn provisioner_files(target: &str) -> Result<Vec<(String, &'static [u8])>, ExecError> {
    let prefix = format!("terraform/{target}/");
    let mut files: Vec<(String, &'static [u8])> = embedded::FILES
        .iter()
        .filter_map(|(path, bytes)| path.strip_prefix(&prefix).map(|rest| (format!("module/{rest}"), *bytes)))
        .collect();
    if files.is_empty() {
        return Err(ExecError::Unavailable(format!("no Terraform module for target `{target}`")));
    }
    let entrypoint = embedded::FILES
        .iter()
        .find(|(path, _)| *path == "provisioners/entrypoint.sh")
        .ok_or_else(|| ExecError::Unavailable("the provisioner entrypoint is not embedded".into()))?;
    files.push(("entrypoint.sh".into(), entrypoint.1));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_chunks() {
        let mut splitter = LineSplitter::default();
        assert_eq!(splitter.push(b"one\ntw"), vec!["one"]);
        assert_eq!(splitter.push(b"o\r\nthree\n"), vec!["two", "three"]);
        assert_eq!(splitter.push(b"tail"), Vec::<String>::new());
        assert_eq!(splitter.finish().as_deref(), Some("tail"));
        assert_eq!(splitter.finish(), None);
    }

    #[test]
    fn a_line_longer_than_the_limit_is_cut_and_says_so() {
        let mut splitter = LineSplitter::default();
        let long = vec![b'x'; 10 * 1024 * 1024];
        // Fed in pieces, as a pipe delivers it.
        let mut lines = Vec::new();
        for piece in long.chunks(64 * 1024) {
            lines.extend(splitter.push(piece));
            assert!(splitter.pending.len() <= MAX_LINE, "a long line is never held whole");
        }
        lines.extend(splitter.push(b"\nnext\n"));
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with(&"x".repeat(MAX_LINE)));
        assert!(lines[0].ends_with(&format!(" … [line cut: {} bytes, the first {MAX_LINE} kept]", long.len())));
        assert_eq!(lines[1], "next");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_replaced_not_fatal() {
        let mut splitter = LineSplitter::default();
        assert_eq!(splitter.push(b"caf\xe9\nok\n"), vec!["caf\u{fffd}", "ok"]);
    }

    #[test]
    fn job_debug_hides_values() {
        let job = Job {
            name: "j".into(),
            target: "local".into(),
            env: vec![("AWS_SECRET_ACCESS_KEY".into(), "hunter2".into())],
            labels: vec![],
            inputs: vec![],
            outputs: vec![],
        };
        let shown = format!("{job:?}");
        assert!(shown.contains("AWS_SECRET_ACCESS_KEY") && !shown.contains("hunter2"));
    }
}
