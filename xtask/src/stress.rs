//! `stress`: the tests most exposed to timing (the live streams and provisioning, by default)
//! run again and again on both databases while another process keeps every core busy, so that
//! a test which depends on the machine's speed fails here rather than one time in ten in CI.

use std::{
    process::{Child, Command, Stdio},
    thread,
    time::Instant,
};

use anyhow::{Context, Result, bail};

use crate::test::{Postgres, Suite, step};

const USAGE: &str = "stress [--rounds N] [--sqlite-only] [-- <test filters>...]";
/// The test modules run by default: the live streams and the run queue with real Terraform.
const DEFAULT_FILTERS: [&str; 2] = ["live::", "provisioning::"];

struct StressOptions {
    rounds: u32,
    postgres: bool,
    filters: Vec<String>,
}

impl StressOptions {
    fn parse(args: &[String]) -> Result<Self> {
        let mut options = Self { rounds: 20, postgres: true, filters: Vec::new() };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--rounds" => {
                    let value = args.next().context("--rounds needs a number")?;
                    options.rounds = value
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .with_context(|| format!("--rounds: `{value}` is not a number of rounds (1 or more)"))?;
                }
                "--sqlite-only" => options.postgres = false,
                "--" => options.filters.extend(args.by_ref().cloned()),
                other => bail!("stress: unexpected argument `{other}`\nusage: cargo xtask {USAGE}"),
            }
        }
        if options.filters.is_empty() {
            options.filters = DEFAULT_FILTERS.iter().map(|f| (*f).to_owned()).collect();
        }
        Ok(options)
    }
}

pub fn run(args: &[String]) -> Result<()> {
    let options = StressOptions::parse(args)?;
    let started = Instant::now();
    let suite = Suite::prepare(false)?;
    let postgres = options.postgres.then(Postgres::start).transpose()?;
    let mut databases = vec![("sqlite", None)];
    if let Some(postgres) = &postgres {
        databases.push(("postgres", Some(postgres.url())));
    }

    // Build the test binary before the load starts: the load is for the tests, not the compiler.
    let mut build = crate::test::cargo(suite.root());
    build.args(["test", "--package", "fleetplane", "--test", "api", "--no-run"]);
    step("Building the API tests", &mut build)?;

    let hog = CpuHog::start()?;
    let mut rounds = Vec::new();
    for round in 1..=options.rounds {
        for (database, url) in &databases {
            let mut command = crate::test::cargo(suite.root());
            command.args(["test", "--package", "fleetplane", "--test", "api", "--", "--include-ignored"]);
            command.args(&options.filters);
            suite.environment(&mut command, database);
            if let Some(url) = url {
                command.env("FLEETPLANE_TEST_PG_URL", url);
            }
            let title = format!("Round {round}/{} on {database} ({})", options.rounds, options.filters.join(" "));
            let round_started = Instant::now();
            step(&title, &mut command)
                .with_context(|| format!("failed in round {round} on {database}, after {:.0?}", started.elapsed()))?;
            rounds.push(round_started.elapsed());
        }
    }
    drop(hog);
    let slowest = rounds.iter().max().copied().unwrap_or_default();
    eprintln!(
        "\nStress passed: {} rounds × {} databases of `{}` with every core busy, in {:.0?} (slowest round {:.0?}).",
        options.rounds,
        databases.len(),
        options.filters.join(" "),
        started.elapsed(),
        slowest,
    );
    Ok(())
}

/// Another process spinning on every core until dropped: this program, run as `hog`.
struct CpuHog(Child);

impl CpuHog {
    fn start() -> Result<Self> {
        let exe = std::env::current_exe().context("finding xtask's own binary")?;
        let child = Command::new(exe)
            .arg("hog")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting the CPU load")?;
        eprintln!("==> Keeping every core busy (process {})", child.id());
        Ok(Self(child))
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The load itself: one spinning thread per core, until killed.
pub fn hog() -> ! {
    let cores = thread::available_parallelism().map_or(2, |n| n.get());
    for _ in 1..cores {
        thread::spawn(spin);
    }
    spin()
}

fn spin() -> ! {
    let mut x: u64 = 1;
    loop {
        // Work the optimiser cannot remove.
        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
    }
}
