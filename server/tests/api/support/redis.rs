//! A throwaway Redis server on loopback (Debian's `redis-server`, which `cargo xtask test`
//! installs), that a test can stop and start again on the same port.

use std::{
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct Redis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Self {
        let port = crate::support::ports::free_port();
        let mut redis = Self { port, dir: tempfile::tempdir().expect("tempdir"), child: None };
        redis.resume();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on its port.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let program = std::env::var_os("FLEETPLANE_TEST_REDIS_SERVER").unwrap_or_else(|| "redis-server".into());
        let child = Command::new(&program)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program:?} ({e}): run the Redis tests with `cargo xtask test`"));
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "redis-server did not listen within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server, as a crash would (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
