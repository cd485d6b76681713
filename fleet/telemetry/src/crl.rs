//! Publishing the CRL to the broker: after every revocation (and before the last one
//! expires) the CRL is signed again, written where the broker reads it, and the broker is told
//! to read it again. mosquitto reads its `crlfile` only at start and on SIGHUP.
//!
//! The file is replaced atomically (written beside it, then renamed), so the broker never
//! reads half a CRL.

use std::{
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::SystemTime,
};

use anyhow::{Context, bail};

use crate::{pki::Authority, registry::CrlInput};

/// How the broker is told that the CRL changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reload {
    /// It is not (the embedded broker's front reads the file again whenever it changes).
    Nothing,
    /// SIGHUP to this process.
    Pid(u32),
    /// SIGHUP to the process whose id is in this file (mosquitto's `pid_file`).
    PidFile(PathBuf),
    /// Run this program with these arguments (for a broker reloaded another way).
    Command(Vec<String>),
}

impl Reload {
    /// Reads a setting: empty for nothing, `pid:N`, `pidfile:PATH`, or a command line.
    pub fn parse(setting: &str) -> anyhow::Result<Self> {
        let setting = setting.trim();
        if setting.is_empty() {
            return Ok(Self::Nothing);
        }
        if let Some(pid) = setting.strip_prefix("pid:") {
            let pid = pid.trim().parse().ok().filter(|pid| *pid > 1);
            return pid.map(Self::Pid).context("`pid:` takes a process id above 1, e.g. pid:4242");
        }
        if let Some(path) = setting.strip_prefix("pidfile:") {
            anyhow::ensure!(!path.trim().is_empty(), "`pidfile:` takes a path, e.g. pidfile:/run/mosquitto.pid");
            return Ok(Self::PidFile(PathBuf::from(path.trim())));
        }
        Ok(Self::Command(setting.split_whitespace().map(str::to_owned).collect()))
    }
}

/// Where the CRL goes and how the broker learns of it.
#[derive(Clone, Debug)]
pub struct CrlPublisher {
    pub path: PathBuf,
    pub reload: Reload,
}

impl CrlPublisher {
    /// Signs the CRL of `input`, replaces the file with it, and tells the broker.
    pub fn publish(&self, authority: &Authority, input: &CrlInput, now: SystemTime) -> anyhow::Result<()> {
        let pem = authority.crl(&input.revoked, input.number, now)?;
        write_atomically(&self.path, pem.as_bytes())?;
        self.reload()
    }

    fn reload(&self) -> anyhow::Result<()> {
        match &self.reload {
            Reload::Nothing => Ok(()),
            Reload::Pid(pid) => hang_up(*pid),
            Reload::PidFile(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the broker's pid file {}", path.display()))?;
                let pid = text
                    .trim()
                    .parse()
                    .ok()
                    .filter(|pid| *pid > 1)
                    .with_context(|| format!("{} does not hold a process id", path.display()))?;
                hang_up(pid)
            }
            Reload::Command(argv) => {
                let (program, args) = argv.split_first().context("the reload command is empty")?;
                let output = std::process::Command::new(program)
                    .args(args)
                    .output()
                    .with_context(|| format!("running the CRL reload command `{program}`"))?;
                if !output.status.success() {
                    bail!(
                        "the CRL reload command `{}` failed ({}): {}",
                        argv.join(" "),
                        output.status,
                        String::from_utf8_lossy(&output.stderr).trim()
                    );
                }
                Ok(())
            }
        }
    }
}

fn hang_up(pid: u32) -> anyhow::Result<()> {
    let raw = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw).context("a process id out of range")?;
    rustix::process::kill_process(raw, rustix::process::Signal::HUP)
        .with_context(|| format!("telling the broker (process {pid}) to reload the CRL"))
}

/// Replaces `path` with `bytes`: written to a file beside it, synced, then renamed over it,
/// readable by all (the broker may run as another user; a CRL is public).
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {} for the CRL", dir.display()))?;
    file.write_all(bytes).and_then(|()| file.as_file().sync_all()).context("writing the CRL")?;
    file.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).context("making the CRL readable")?;
    file.persist(path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use fleetplane_common::secrets::{KeySettings, Keyring};

    use super::*;

    fn authority(dir: &Path) -> Authority {
        let keyring =
            Keyring::load(&KeySettings { variable: "TEST_KEYS", keys: None, file: dir.join("keys") }).expect("keys");
        Authority::create(&keyring, SystemTime::now()).expect("CA").0
    }

    #[test]
    fn settings_are_read_and_bad_ones_named() {
        assert_eq!(Reload::parse("").expect("empty"), Reload::Nothing);
        assert_eq!(Reload::parse("pid:4242").expect("pid"), Reload::Pid(4242));
        assert_eq!(Reload::parse("pidfile:/run/m.pid").expect("file"), Reload::PidFile("/run/m.pid".into()));
        assert_eq!(
            Reload::parse("systemctl reload mosquitto").expect("command"),
            Reload::Command(vec!["systemctl".into(), "reload".into(), "mosquitto".into()])
        );
        for bad in ["pid:", "pid:1", "pid:x", "pidfile: "] {
            let e = Reload::parse(bad).unwrap_err().to_string();
            assert!(e.contains("pid"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_crl_replaces_the_file_readable_by_the_broker_and_the_broker_is_hung_up_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = authority(dir.path());
        // A process that exits on SIGHUP's default action stands in for the broker.
        let mut broker = Command::new("sleep").arg("600").stdin(Stdio::null()).spawn().expect("sleep");
        let publisher = CrlPublisher { path: dir.path().join("crl.pem"), reload: Reload::Pid(broker.id()) };
        std::fs::write(&publisher.path, "old").expect("old CRL");
        publisher.publish(&ca, &CrlInput { number: 3, revoked: Vec::new() }, SystemTime::now()).expect("published");
        let written = std::fs::read_to_string(&publisher.path).expect("read");
        assert!(written.starts_with("-----BEGIN X509 CRL-----"), "{written}");
        let mode = std::fs::metadata(&publisher.path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let status = broker.wait().expect("the stand-in ends");
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(1), "ended by SIGHUP");
    }

    #[test]
    fn a_reload_that_fails_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = authority(dir.path());
        let input = CrlInput { number: 1, revoked: Vec::new() };
        let publish = |reload| {
            CrlPublisher { path: dir.path().join("crl.pem"), reload }
                .publish(&ca, &input, SystemTime::now())
                .unwrap_err()
                .to_string()
        };
        assert!(publish(Reload::Command(vec!["false".into()])).contains("reload command `false` failed"));
        assert!(publish(Reload::Command(vec!["/no/such/program".into()])).contains("running the CRL reload command"));
        assert!(publish(Reload::PidFile(dir.path().join("missing.pid"))).contains("pid file"));
        std::fs::write(dir.path().join("bad.pid"), "not a pid").expect("write");
        assert!(publish(Reload::PidFile(dir.path().join("bad.pid"))).contains("does not hold a process id"));
        // No such process: the pid of a child that has been reaped.
        let mut gone = Command::new("true").spawn().expect("true");
        let pid = gone.id();
        gone.wait().expect("reaped");
        assert!(publish(Reload::Pid(pid)).contains("reload the CRL"));
        // A CRL was still written each time: the file is right even when the broker was not told.
        assert!(std::fs::read_to_string(dir.path().join("crl.pem")).expect("crl").contains("X509 CRL"));
    }

    #[test]
    fn a_crl_cannot_be_written_where_there_is_no_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = authority(dir.path());
        let publisher = CrlPublisher { path: dir.path().join("missing").join("crl.pem"), reload: Reload::Nothing };
        let e = publisher.publish(&ca, &CrlInput { number: 1, revoked: Vec::new() }, SystemTime::now()).unwrap_err();
        assert!(format!("{e:#}").contains("for the CRL"), "{e:#}");
    }
}
