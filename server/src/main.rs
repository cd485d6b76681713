//! The `fleetplane` command: `serve`, `migrate`, `config` and `admin`.

use std::{io::BufRead, path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use fleetplane::{
    accounts::{self, NewAccount},
    config::Config,
    error::AppError,
    orgs,
    state::AppState,
};
use fleetplane_common::http::logging::{self, LogFormat};

/// Fleetplane: a self-hosted, multi-cloud control plane.
///
/// Runs with nothing configured: SQLite and generated keys in ./data, the API and web UI on
/// http://127.0.0.1:8080, emails printed to the log. Settings come from --config and from
/// FLEETPLANE_* environment variables (see the README).
#[derive(Parser)]
#[command(name = "fleetplane", version, propagate_version = true)]
struct Cli {
    /// A TOML configuration file; environment variables override its values.
    #[arg(long, global = true, env = "FLEETPLANE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Log line format: `text` or `json`.
    #[arg(long, global = true, default_value = "text", env = "FLEETPLANE_LOG_FORMAT")]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: API, web UI, and workers for runs (FLEETPLANE_WORKERS). Applies pending
    /// migrations first.
    Serve,
    /// Run workers only, against the same database as the servers: they carry out queued runs.
    /// Concurrency from FLEETPLANE_WORKERS.
    Worker,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the effective configuration, secrets shown as [redacted].
    Config,
    /// Administrative tasks.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a verified account (for servers with sign-up closed), with its personal organization.
    CreateUser(CreateUser),
    /// Re-encrypt every stored secret under the newest master key.
    ///
    /// Configure the new key first (put it first in FLEETPLANE_MASTER_KEY, keeping the old
    /// ones after it), or let --generate add one to the data directory's master.key.
    RotateKey(RotateKey),
}

#[derive(Args)]
struct RotateKey {
    /// Generate a new key first and put it at the top of <data dir>/master.key.
    #[arg(long)]
    generate: bool,
}

#[derive(Args)]
struct CreateUser {
    #[arg(long)]
    email: String,
    #[arg(long)]
    username: String,
    /// Read the password from the first line of standard input.
    #[arg(long, required = true)]
    password_stdin: bool,
    /// Also make the user an owner of this organization, creating it if it does not exist.
    #[arg(long, value_name = "ORG")]
    org_owner: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Several TLS users (SQL, SMTP, HTTP clients) share rustls: settle its crypto provider once.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// A message for the terminal: validation problems field by field, otherwise the error chain.
fn describe(error: &anyhow::Error) -> String {
    if let Some(AppError::Client { detail, errors, .. }) = error.downcast_ref::<AppError>() {
        let mut message = detail.to_string();
        for e in errors {
            message.push_str(&format!("\n  --{}: {}", e.field.replace('_', "-"), e.message));
        }
        return message;
    }
    format!("{error:#}")
}

fn init_tracing(format: LogFormat) {
    logging::init(format, "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn");
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Worker => {
            let state = AppState::build(config).await?;
            tracing::info!("starting workers");
            fleetplane::run_workers(state, fleetplane::shutdown_signal()).await
        }
        Command::Migrate => {
            let db = fleetplane::db::connect(&config).await?;
            fleetplane::db::migrate(&db).await?;
            println!("Database is up to date.");
            Ok(())
        }
        Command::Config => {
            print!("{}", config.to_redacted_toml());
            Ok(())
        }
        Command::Admin(AdminCommand::CreateUser(args)) => create_user(config, args).await,
        Command::Admin(AdminCommand::RotateKey(args)) => rotate_key(config, args).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    tracing::info!(
        listen = %config.listen,
        database = if config.is_postgres() { "postgresql" } else { "sqlite" },
        data_dir = %config.data_dir.display(),
        public_url = %config.public_url,
        signup = ?config.signup,
        "starting Fleetplane (`fleetplane config` prints every setting)"
    );
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (FLEETPLANE_LISTEN)", config.listen))?;
    let state = AppState::build(config).await?;
    if state.mail.dev_outbox_enabled() {
        tracing::warn!("FLEETPLANE_SMTP_URL is not set: emails are written to the log and the dev outbox, not sent");
    }
    if !state.config.site_dir.join("pkg").is_dir() {
        tracing::warn!(site_dir = %state.config.site_dir.display(),
            "the web UI's browser code is not built there: pages render, but without interactivity. Run `cargo xtask build-ui`");
    }
    let url = state.config.public_url.clone();
    tracing::info!(%url, "Fleetplane is listening");
    println!("Fleetplane is running at {url}");
    fleetplane::launch(state, listener, fleetplane::shutdown_signal()).await
}

async fn create_user(config: Config, args: CreateUser) -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin().lock().read_line(&mut password).context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']);
    let account = NewAccount::parse(&args.email, &args.username, password, true)?;
    let state = AppState::build(config).await?;
    let user = accounts::create_account(&state, account, None).await?;
    println!("Created user {} <{}> (id {}).", user.username, user.email, user.id);
    if let Some(org) = args.org_owner {
        let org = orgs::ensure_owner(&state, &user, &org).await?;
        println!("{} is an owner of the organization {}.", user.username, org.name);
    }
    Ok(())
}

async fn rotate_key(config: Config, args: RotateKey) -> anyhow::Result<()> {
    if args.generate {
        if config.master_keys.is_some() {
            anyhow::bail!(
                "the master keys come from FLEETPLANE_MASTER_KEY: add the new key at its front instead of --generate"
            );
        }
        let path = config.data_dir.join(fleetplane::crypto::KEY_FILE);
        if !path.exists() {
            anyhow::bail!("{} does not exist yet: start the server once first", path.display());
        }
        let id = fleetplane::crypto::add_generated_key(&path)?;
        println!("Added master key {id} to {}.", path.display());
    }
    let state = AppState::build(config).await?;
    let report = fleetplane::cloud_accounts::reseal_all(&state).await?;
    let (deployments, deployments_current) = fleetplane::deployments::reseal_all(&state).await?;
    println!(
        "Re-encrypted {} secret(s) under master key {}; {} already used it.",
        report.resealed + deployments,
        state.keyring.primary_id(),
        report.already_current + deployments_current
    );
    Ok(())
}
