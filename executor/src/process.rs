//! Jobs as local processes, for machines without a Docker engine.
//!
//! Each job gets a directory under the jobs root holding the entrypoint, the target's module,
//! its work directory, its labels and the process group id, so that a restarted worker can find
//! and stop jobs it no longer watches. The entrypoint runs with `/bin/sh`, with the same
//! environment a container would get.
//!
//! Every filesystem call runs on tokio's blocking pool: deleting a Terraform working directory
//! (providers included, hundreds of megabytes) takes long enough to stall every task on a
//! runtime thread, live streams and requests among them.

use std::{
    fs,
    io::Read,
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

use crate::{
    BoxFuture, ExecError, Executor, Found, Job, LineSplitter, LogLine, MAX_OUTPUT_FILE, Outcome, Stream,
    output_too_large, provisioner_files,
};

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

    /// Writes the job's directory: its provisioner's files, its inputs and its labels.
    async fn prepare(&self, job: &Job) -> Result<PathBuf, ExecError> {
        let dir = self.settings.jobs_dir.join(&job.name);
        if job.target == crate::HELM_TARGET {
            return Err(ExecError::Failed(
                "helm jobs run only in the helm provisioner's container, never as processes on this host".into(),
            ));
        }
        let files = provisioner_files(&job.target)?;
        let inputs = job.inputs.clone();
        let labels: String = job.labels.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        let written = dir.clone();
        blocking(move || {
            let dir = written;
            let io = |e: std::io::Error| ExecError::Failed(format!("preparing {}: {e}", dir.display()));
            if dir.exists() {
                fs::remove_dir_all(&dir).map_err(io)?;
            }
            for (path, contents) in files {
                let file = dir.join(path);
                if let Some(parent) = file.parent() {
                    fs::create_dir_all(parent).map_err(io)?;
                }
                fs::write(&file, contents).map_err(io)?;
            }
            fs::create_dir_all(dir.join("work")).map_err(io)?;
            for (name, contents) in &inputs {
                fs::write(dir.join("work").join(name), contents).map_err(io)?;
            }
            fs::write(dir.join(LABELS_FILE), labels).map_err(io)
        })
        .await?;
        Ok(dir)
    }

    /// Collects the job's output files and deletes its directory.
    async fn clean_up(dir: PathBuf, outputs: Vec<String>) -> Result<Vec<(String, Vec<u8>)>, ExecError> {
        blocking(move || {
            let files =
                outputs.into_iter().filter_map(|name| read_output(&dir.join("work"), name).transpose()).collect();
            if let Err(e) = fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove a finished job's directory");
            }
            files
        })
        .await
    }

    async fn run_job(
        &self,
        job: Job,
        logs: mpsc::Sender<LogLine>,
        interrupt: CancellationToken,
    ) -> Result<Outcome, ExecError> {
        let dir = self.prepare(&job).await?;
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
        tokio::fs::write(dir.join(PID_FILE), pgid.to_string())
            .await
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

        let files = Self::clean_up(dir, job.outputs).await?;
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

/// Runs `work` on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ExecError> + Send + 'static,
) -> Result<T, ExecError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| ExecError::Failed(format!("a filesystem task failed: {e}")))?
}

/// A job directory's labels and process group, if it is a job directory.
fn read_job_dir(dir: &Path) -> (Vec<(String, String)>, Option<u32>) {
    let labels = fs::read_to_string(dir.join(LABELS_FILE))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    (labels, read_pgid(dir))
}

fn read_pgid(dir: &Path) -> Option<u32> {
    fs::read_to_string(dir.join(PID_FILE)).ok().and_then(|p| p.trim().parse().ok())
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

    fn choose<'a>(&'a self, _target: &'a str) -> BoxFuture<'a, Result<&'a dyn Executor, ExecError>> {
        Box::pin(std::future::ready(Ok(self as &dyn Executor)))
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
        let root = self.settings.jobs_dir.clone();
        Box::pin(async move {
            let dirs = blocking(move || {
                let entries = fs::read_dir(&root)
                    .map_err(|e| ExecError::Unavailable(format!("listing {}: {e}", root.display())))?;
                let dirs = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir());
                Ok(dirs.map(|dir| (read_job_dir(&dir), dir)).collect::<Vec<_>>())
            })
            .await?;
            let mut found = Vec::new();
            for ((labels, pgid), dir) in dirs {
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
            let pgid = blocking({
                let dir = dir.clone();
                move || Ok(read_pgid(&dir))
            })
            .await?;
            if let Some(pgid) = pgid {
                signal_group(pgid, "KILL").await;
            }
            blocking(move || {
                fs::remove_dir_all(&dir).map_err(|e| ExecError::Failed(format!("removing {}: {e}", dir.display())))
            })
            .await
        })
    }
}

/// An output file of the job, if it wrote one, up to [`MAX_OUTPUT_FILE`].
fn read_output(work: &Path, name: String) -> Result<Option<(String, Vec<u8>)>, ExecError> {
    let Ok(file) = fs::File::open(work.join(&name)) else { return Ok(None) };
    let mut bytes = Vec::new();
    file.take(MAX_OUTPUT_FILE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ExecError::Failed(format!("reading the job's {name}: {e}")))?;
    if bytes.len() > MAX_OUTPUT_FILE {
        return Err(output_too_large(&name));
    }
    Ok(Some((name, bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_LINE;

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

    /// Holds the runtime's only blocking thread until the returned sender is dropped.
    fn occupy_the_blocking_pool() -> std::sync::mpsc::Sender<()> {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        tokio::task::spawn_blocking(move || {
            let _ = wait.recv();
        });
        release
    }

    /// Whether `future` is still pending when polled once.
    async fn pending(future: std::pin::Pin<&mut impl Future>) -> bool {
        let mut future = future;
        std::future::poll_fn(|cx| std::task::Poll::Ready(future.as_mut().poll(cx).is_pending())).await
    }

    #[test]
    fn job_directories_are_written_and_deleted_on_the_blocking_pool() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let root = tempfile::tempdir().expect("jobs dir");
            let settings =
                ProcessSettings { jobs_dir: root.path().into(), terraform: "terraform".into(), grace: Duration::ZERO };
            let executor = ProcessExecutor::new(settings).expect("executor");
            let job = Job {
                name: "job".into(),
                target: "local".into(),
                env: vec![],
                labels: vec![("dev.fleetplane.run".into(), "r".into())],
                inputs: vec![("plan.tfplan".into(), b"plan".to_vec())],
                outputs: vec!["plan.tfplan".into()],
            };
            let dir = root.path().join("job");

            // While the blocking pool is busy, the runtime's thread writes nothing itself.
            let busy = occupy_the_blocking_pool();
            let mut prepare = std::pin::pin!(executor.prepare(&job));
            assert!(pending(prepare.as_mut()).await, "prepared on the runtime's thread");
            assert!(!dir.exists(), "written on the runtime's thread");
            drop(busy);
            assert_eq!(prepare.await.expect("prepared"), dir);
            assert!(dir.join(LABELS_FILE).is_file() && dir.join("work/plan.tfplan").is_file());

            let busy = occupy_the_blocking_pool();
            let mut clean_up = std::pin::pin!(ProcessExecutor::clean_up(dir.clone(), job.outputs.clone()));
            assert!(pending(clean_up.as_mut()).await, "cleaned up on the runtime's thread");
            assert!(dir.exists(), "deleted on the runtime's thread");
            drop(busy);
            assert_eq!(clean_up.await.expect("cleaned up"), vec![("plan.tfplan".to_owned(), b"plan".to_vec())]);
            assert!(!dir.exists(), "the job's directory is gone");
        });
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

    /// Runs a `local` plan job whose `terraform` is `script`, returning its outcome and log.
    async fn run_with_terraform(script: &str) -> (Result<Outcome, ExecError>, Vec<String>) {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().expect("tempdir");
        let terraform = root.path().join("bin/terraform");
        fs::create_dir_all(terraform.parent().expect("bin")).expect("bin dir");
        fs::write(&terraform, format!("#!/bin/sh\n{script}\n")).expect("fake terraform");
        fs::set_permissions(&terraform, fs::Permissions::from_mode(0o755)).expect("executable");
        let settings = ProcessSettings { jobs_dir: root.path().join("jobs"), terraform, grace: Duration::ZERO };
        let executor = ProcessExecutor::new(settings).expect("executor");
        let job = Job {
            name: "job".into(),
            target: "local".into(),
            env: vec![("FP_PHASE".into(), "plan".into()), ("FP_BACKEND".into(), "local".into())],
            labels: vec![],
            inputs: vec![],
            outputs: vec!["plan.tfplan".into()],
        };
        let (logs, mut lines) = mpsc::channel::<LogLine>(64);
        let collected = tokio::spawn(async move {
            let mut texts = Vec::new();
            while let Some(line) = lines.recv().await {
                texts.push(line.text);
            }
            texts
        });
        let outcome = executor.run(job, logs, CancellationToken::new()).await;
        (outcome, collected.await.expect("collector"))
    }

    #[tokio::test]
    async fn a_job_that_prints_a_10_mb_line_is_logged_cut_and_runs_on() {
        let (outcome, lines) =
            run_with_terraform(
            "case $1 in init) head -c 10485760 /dev/zero | tr '\\0' x; echo; echo \"after the long line\";; show) echo '{}';; esac",
        )
        .await;
        outcome.expect("the job ran to its end");
        let cut = lines.iter().find(|line| line.contains("[line cut")).expect("the long line is logged, cut");
        assert!(
            cut.ends_with(&format!(" … [line cut: 10485760 bytes, the first {MAX_LINE} kept]")),
            "{}",
            &cut[cut.len() - 80..]
        );
        assert!(lines.iter().all(|line| line.len() <= MAX_LINE + 100), "every line is within the cap");
        assert!(lines.iter().any(|line| line == "after the long line"), "output after it is logged too");
    }

    #[tokio::test]
    async fn an_output_file_over_the_cap_fails_the_job_naming_it() {
        let size = MAX_OUTPUT_FILE + 1;
        let (outcome, _) = run_with_terraform(&format!(
            "case $1 in plan) dd if=/dev/zero of=\"$FP_WORK_DIR/plan.tfplan\" bs=1 count=0 seek={size} 2>/dev/null;; \
             show) echo '{{}}';; esac"
        ))
        .await;
        let error = outcome.expect_err("an oversized plan is not collected");
        let ExecError::Failed(why) = error else { panic!("expected Failed, got {error:?}") };
        assert!(why.contains("plan.tfplan") && why.contains("128 MiB"), "{why}");
    }

    #[tokio::test]
    async fn a_helm_job_is_refused_and_never_written_to_the_host() {
        let root = tempfile::tempdir().expect("jobs dir");
        let settings =
            ProcessSettings { jobs_dir: root.path().into(), terraform: "terraform".into(), grace: Duration::ZERO };
        let executor = ProcessExecutor::new(settings).expect("executor");
        let job = Job {
            name: "helm-job".into(),
            target: crate::HELM_TARGET.into(),
            env: vec![("FP_ACTION".into(), "deploy".into())],
            labels: vec![],
            inputs: vec![("kubeconfig".into(), b"token".to_vec())],
            outputs: vec![],
        };
        let (logs, _lines) = mpsc::channel(16);
        let error = executor.run(job, logs, CancellationToken::new()).await.expect_err("refused");
        let ExecError::Failed(why) = error else { panic!("expected Failed, got {error:?}") };
        assert!(why.contains("never as processes"), "{why}");
        assert!(!root.path().join("helm-job").exists(), "nothing of it reached the host");
    }
}
