//! The `fleet-telemetry` command: `serve`, and `admin` for API tokens.

use std::{path::PathBuf, process::ExitCode};

use chrono::Utc;
use clap::{Parser, Subcommand};
use fleet_telemetry::{
    config::Config,
    registry::tokens::Scope,
    serve::{self, banner},
};
use fleetplane_common::http::{
    logging::{self, LogFormat},
    shutdown_signal,
};

/// fleet-telemetry: connected bikes publish over MQTT with their own certificates; this stores
/// every packet once and serves the fleet over HTTP.
///
/// Runs with nothing configured: SQLite and generated keys in ./data, the embedded broker on
/// 127.0.0.1:8883 (client certificates required), the API on http://127.0.0.1:8090. Settings
/// come from --config and FLEET_* environment variables (see the README).
#[derive(Parser)]
#[command(name = "fleet-telemetry", version, propagate_version = true)]
struct Cli {
    /// A TOML configuration file; environment variables override its values.
    #[arg(long, global = true, env = "FLEET_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Log line format: `text` or `json`.
    #[arg(long, global = true, default_value = "text", env = "FLEET_LOG_FORMAT")]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: registry and CA, broker (embedded unless --broker), ingest and API.
    Serve {
        /// An external broker, `mqtts://host:port` (mosquitto, EMQX), instead of the embedded one.
        #[arg(long, value_name = "URL")]
        broker: Option<String>,
    },
    /// Manage API tokens.
    #[command(subcommand)]
    Admin(Admin),
}

#[derive(Subcommand)]
enum Admin {
    /// Create an API token and print it: it is shown this once, and stored only hashed.
    CreateToken {
        /// What the token is for, e.g. `grafana` or `me`.
        #[arg(long)]
        name: String,
        /// `read` (look), `write` (also register bikes and issue certificates) or `admin` (also
        /// revoke and decommission).
        #[arg(long, default_value = "read")]
        scope: String,
    },
    /// List the API tokens (never the tokens themselves).
    Tokens,
    /// Revoke an API token by its id (see `tokens`).
    RevokeToken { id: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,rumqttd=warn");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { broker } => {
            let config = Config::load(cli.config.as_deref(), broker.as_deref())?;
            let running = serve::start(config).await?;
            let tokens = running.state.registry.tokens().await?.iter().filter(|t| t.revoked_at.is_none()).count();
            println!("{}", banner(&running, tokens));
            running.until(shutdown_signal()).await
        }
        Command::Admin(admin) => {
            let config = Config::load(cli.config.as_deref(), None)?;
            let registry = serve::registry(&config).await?;
            match admin {
                Admin::CreateToken { name, scope } => {
                    let scope = Scope::parse(&scope)
                        .ok_or_else(|| anyhow::anyhow!("--scope `{scope}` is not `read`, `write` or `admin`"))?;
                    let (token, info) = registry.create_token("cli", &name, scope, Utc::now()).await?;
                    eprintln!(
                        "Created token {} ({}, scope {}). It is shown this once:",
                        info.id,
                        info.name,
                        info.scope.as_str()
                    );
                    println!("{token}");
                }
                Admin::Tokens => {
                    for t in registry.tokens().await? {
                        let state = t.revoked_at.map_or_else(|| "active".to_owned(), |at| format!("revoked {at}"));
                        println!(
                            "{}\t{}\t{}\t{}…\t{}\t{state}",
                            t.id,
                            t.name,
                            t.scope.as_str(),
                            t.prefix,
                            t.created_at
                        );
                    }
                }
                Admin::RevokeToken { id } => {
                    let info = registry.revoke_token("cli", &id, Utc::now()).await?;
                    println!("Revoked token {} ({}).", info.id, info.name);
                }
            }
            Ok(())
        }
    }
}
