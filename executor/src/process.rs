//! Jobs as local processes, for machines without a Docker engine.
//!
//! Each job gets a directory under the jobs root holding the entrypoint, the target's module,
//! its work directory, its labels and the process group id, so that a restarted worker can find
//! and stop jobs it no longer watches. The entrypoint runs with `/bin/sh`, with the same
//! environment a container would get.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt},
    process::Command,
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;

use crate::{BoxFuture, ExecError, Executor, Found, Job, LineSplitter, LogLine, Outcome, Stream, provisioner_files};

#[derive(Clone, Debug)]
pub struct ProcessSettings {
    /// Where job directories live (inside the data directory).
    pub jobs_dir: PathBuf,
    /// The Terraform binary; its directory goes first on the job's PATH.
    pub terraform: PathBuf,
    pub grace: Duration,
}

pub struct ProcessExecutor {
    settings: ProcessSettings,
}

const LABELS_FILE: &str = "labels";
const PID_FILE: &str = "pgid";

impl ProcessExecutor {
    pub fn new(settings: ProcessSettings) -> Result<Self, ExecError> {
        fs::create_dir_all(&settings.jobs_dir)
            .map_err(|e| ExecError::Unavailable(format!("creating {}: {e}", settings.jobs_dir.display())))?;
        Ok(Self { settings })
    }

    fn prepare(&self, job: &Job) -> Result<PathBuf, ExecError> {
        let dir = self.settings.jobs_dir.join(&job.name);
        let io = |e: std::io::Error| ExecError::Failed(format!("preparing {}: {e}", dir.display()));
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io)?;
        }
        for (path, contents) in provisioner_files(&job.target)? {
            let file = dir.join(path);
            if let Some(parent) = file.parent() {
                fs::create_dir_all(parent).map_err(io)?;
            }
            fs::write(&file, contents).map_err(io)?;
        }
        fs::create_dir_all(dir.join("work")).map_err(io)?;
        for (name, contents) in &job.inputs {
            fs::write(dir.join("work").join(name), contents).map_err(io)?;
        }
        let labels: String = job.labels.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        fs::write(dir.join(LABELS_FILE), labels).map_err(io)?;
        Ok(dir)
    }

    async fn run_job(
        &self,
        job: Job,
        logs: mpsc::Sender<LogLine>,
        interrupt: CancellationToken,
    ) -> Result<Outcome, ExecError> {
        let dir = self.prepare(&job)?;
        let terraform_dir = self.settings.terraform.parent().map(Path::to_path_buf).unwrap_or_default();
        let path = format!("{}:/usr/local/bin:/usr/bin:/bin", terraform_dir.display());
        let mut command = Command::new("/bin/sh");
        command
            .arg(dir.join("entrypoint.sh"))
            .current_dir(dir.join("work"))
            .env_clear()
            .env("PATH", path)
            .env("HOME", dir.join("work"))
            .env("FP_MODULE_DIR", dir.join("module"))
            .env("FP_WORK_DIR", dir.join("work"))
            .envs(job.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so signals reach the script and Terraform alike.
            .process_group(0);
        let mut child = command.spawn().map_err(|e| ExecError::Unavailable(format!("starting /bin/sh: {e}")))?;
        let pgid = child.id().ok_or_else(|| ExecError::Failed("the job exited before it started".into()))?;
        fs::write(dir.join(PID_FILE), pgid.to_string())
            .map_err(|e| ExecError::Failed(format!("recording the job: {e}")))?;

        let stdout = child.stdout.take().map(|s| forward(s, Stream::Stdout, logs.clone()));
        let stderr = child.stderr.take().map(|s| forward(s, Stream::Stderr, logs));
        let forwarding = async {
            if let Some(out) = stdout {
                out.await;
            }
        };
        let forwarding_err = async {
            if let Some(err) = stderr {
                err.await;
            }
        };
        let stopper = async {
            interrupt.cancelled().await;
            signal_group(pgid, "INT").await;
            tokio::time::sleep(self.settings.grace).await;
            signal_group(pgid, "KILL").await;
            std::future::pending::<()>().await;
        };
        let status = tokio::select! {
            (status, (), ()) = async { tokio::join!(child.wait(), forwarding, forwarding_err) } => status,
            () = stopper => unreachable!("the stopper never completes"),
        }
        .map_err(|e| ExecError::Failed(format!("waiting for the job: {e}")))?;

        let files = job
            .outputs
            .iter()
            .filter_map(|name| fs::read(dir.join("work").join(name)).ok().map(|bytes| (name.clone(), bytes)))
            .collect();
        if let Err(e) = fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove a finished job's directory");
        }
        // Killed by a signal: report it the way a shell would.
        let exit_code = status.code().map_or(137, i64::from);
        Ok(Outcome { exit_code, files })
    }
}

/// Sends what `stream` prints to `logs` line by line, split and decoded as the Docker executor
/// does ([`LineSplitter`]), and reads it to its end whatever it holds: a job whose output is
/// not read blocks once the pipe is full.
async fn forward(mut stream: impl AsyncRead + Unpin, kind: Stream, logs: mpsc::Sender<LogLine>) {
    let mut splitter = LineSplitter::default();
    let mut buffer = vec![0; 64 * 1024];
    let mut listening = true;
    loop {
        let read = match stream.read(&mut buffer).await {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(error = %e, "a job's output could not be read to its end");
                break;
            }
        };
        // Once nobody listens, the output is still read (and dropped), so the job never blocks.
        if listening {
            for text in splitter.push(&buffer[..read]) {
                if logs.send(LogLine { stream: kind, text }).await.is_err() {
                    listening = false;
                    break;
                }
            }
        }
    }
    if let Some(text) = splitter.finish().filter(|_| listening) {
        let _ = logs.send(LogLine { stream: kind, text }).await;
    }
}

/// Sends `signal` to every process of the group.
async fn signal_group(pgid: u32, signal: &str) {
    let result = Command::new("kill").arg(format!("-{signal}")).arg("--").arg(format!("-{pgid}")).status().await;
    if let Err(e) = result {
        tracing::warn!(pgid, signal, error = %e, "could not signal the job");
    }
}

/// Whether any process of the group is alive.
async fn group_alive(pgid: u32) -> bool {
    Command::new("kill")
        .arg("-0")
        .arg("--")
        .arg(format!("-{pgid}"))
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

impl Executor for ProcessExecutor {
    fn kind(&self) -> &'static str {
        "process"
    }

    fn run(
        &self,
        job: Job,
        logs: mpsc::Sender<LogLine>,
        interrupt: CancellationToken,
    ) -> BoxFuture<'_, Result<Outcome, ExecError>> {
        Box::pin(self.run_job(job, logs, interrupt))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Found>, ExecError>> {
        Box::pin(async move {
            let entries = fs::read_dir(&self.settings.jobs_dir)
                .map_err(|e| ExecError::Unavailable(format!("listing {}: {e}", self.settings.jobs_dir.display())))?;
            let mut found = Vec::new();
            for dir in entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()) {
                let labels = fs::read_to_string(dir.join(LABELS_FILE))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|line| line.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
                    .collect();
                let pgid = fs::read_to_string(dir.join(PID_FILE)).ok().and_then(|p| p.trim().parse().ok());
                let running = match pgid {
                    Some(pgid) => group_alive(pgid).await,
                    None => false,
                };
                let id = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                found.push(Found { id, labels, running });
            }
            Ok(found)
        })
    }

    fn remove(&self, id: &str) -> BoxFuture<'_, Result<(), ExecError>> {
        let dir = self.settings.jobs_dir.join(id);
        Box::pin(async move {
            if let Some(pgid) = fs::read_to_string(dir.join(PID_FILE)).ok().and_then(|p| p.trim().parse().ok()) {
                signal_group(pgid, "KILL").await;
            }
            fs::remove_dir_all(&dir).map_err(|e| ExecError::Failed(format!("removing {}: {e}", dir.display())))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_that_is_not_utf8_is_read_to_its_end() {
        let mut printed = b"before\n\xff\xfe not UTF-8\n".to_vec();
        for n in 0..2000 {
            printed.extend_from_slice(format!("line {n} of more than 64 KiB after it\n").as_bytes());
        }
        let (logs, mut lines) = mpsc::channel(4096);
        forward(printed.as_slice(), Stream::Stdout, logs).await;
        let mut texts = Vec::new();
        while let Some(line) = lines.recv().await {
            texts.push(line.text);
        }
        assert_eq!(texts.len(), 2002);
        assert_eq!(texts[1], "\u{fffd}\u{fffd} not UTF-8");
        assert_eq!(texts[2001], "line 1999 of more than 64 KiB after it");
    }

    #[tokio::test]
    async fn output_is_still_drained_once_nobody_listens() {
        let (logs, lines) = mpsc::channel(1);
        drop(lines);
        let printed = vec![b'y'; 1024 * 1024];
        let mut reader = printed.as_slice();
        forward(&mut reader, Stream::Stderr, logs).await;
        assert!(reader.is_empty(), "{} bytes left unread", reader.len());
    }
}
