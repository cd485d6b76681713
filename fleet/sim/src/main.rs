//! `fleet-sim`: simulated bikes for a fleet-telemetry service. See `fleet-sim --help`.

use std::process::ExitCode;

use clap::Parser;
use fleet_sim::cli::Cli;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Cli::parse().into_config();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("fleet_sim=info,warn")))
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();

    let stop = CancellationToken::new();
    tokio::spawn(stop_on_signals(stop.clone()));
    match fleet_sim::run(config, stop.cancelled_owned()).await {
        Ok(report) => {
            print!("{report}");
            let failures = report.failures();
            for failure in &failures {
                eprintln!("error: {failure}");
            }
            if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The first Ctrl-C (or SIGTERM) stops the run gracefully; a second one quits at once.
async fn stop_on_signals(stop: CancellationToken) {
    signal().await;
    eprintln!("stopping: sending what the bikes hold and waiting for acknowledgements (Ctrl-C again to quit now)");
    stop.cancel();
    signal().await;
    eprintln!("quitting without waiting");
    std::process::exit(130);
}

async fn signal() {
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
