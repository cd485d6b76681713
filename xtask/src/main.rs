//! Build and development automation for Fleetplane, run as `cargo xtask <command>`.
//!
//! A plain Rust program instead of shell scripts or extra installed tools: building the UI
//! needs nothing beyond the Rust toolchain and the crates in this workspace.

mod bench;
mod images;
mod kube_tools;
mod stress;
mod test;
mod ui;

use std::process::ExitCode;

const USAGE: &str = "\
Usage: cargo xtask <command> [options]

Commands:
  build-ui [--release]               Build the web UI (wasm + JS) into <target>/site/pkg
  serve [--release] [-- <args>...]   Build the UI, then run `fleetplane serve <args>` with it
  test [--sqlite-only] [--no-lint] [-- <test args>]
                                     The whole test suite, as CI runs it: installs and starts
                                     what it needs (apt, PostgreSQL, Chromium), then tears it down
  bench [--only auth|queue|live|fleet] [--sqlite-only] [--seconds N]
        [--claim-runs N] [--cycle-runs N] [--docker-clusters N] [--streams N] [--bikes N]
                                     Benchmarks (sessions under load, the run queue, live
                                     streams, the fleet's telemetry); results go into BENCHMARKS.md
  stress [--rounds N] [--sqlite-only] [-- <test filters>...]
                                     The live and provisioning tests (or the filters given),
                                     N times (default 20) on both databases with every core busy
  images [--only NAME] [--tag T]     Build the images with docker, offline: `local` (the local
                                     provisioner, tagged T, default
                                     fleetplane/provisioner-local:latest), `fleet-telemetry`
                                     (fleetplane/fleet-telemetry:latest and :<version>) and
                                     `helm` (fleetplane/provisioner-helm:latest)
  help                               Show this message
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let rest: Vec<String> = args.collect();
    let result = match command.as_deref() {
        Some("build-ui") => ui::BuildOptions::parse(&rest).and_then(|options| ui::build_ui(&options).map(drop)),
        Some("serve") => ui::ServeOptions::parse(&rest).and_then(|options| ui::serve(&options)),
        Some("test") => test::run(&rest),
        Some("bench") => bench::run(&rest),
        Some("images") => images::run(&rest),
        Some("stress") => stress::run(&rest),
        // The CPU load `stress` runs beside the tests.
        Some("hog") => stress::hog(),
        None | Some("help" | "-h" | "--help") => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(anyhow::anyhow!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
