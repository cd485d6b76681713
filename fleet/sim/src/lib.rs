//! `fleet-sim`: the fleet's bike simulator, and the load generator of its tests and
//! benchmarks. It owns everything a simulated bike does, end to end, against a real
//! fleet-telemetry: registering through the API, making its key and getting a certificate
//! from a CSR, connecting to the broker over mutual TLS as itself, and riding.
//!
//! The parts, from pure to wired:
//!
//! - [`ride`]: the ride model (street grid, hills, lights, power, [`battery`], trips), pure
//!   arithmetic on simulated time, over the city of [`geo`];
//! - [`recorder`]: what the bike records, in envelopes with a rising sequence;
//! - [`offline`]: spells without coverage, and the outbox sent as batches afterwards;
//! - [`bad`]: bad packets on demand;
//! - [`api`]: the fleet-telemetry calls; `link`: one bike's MQTT connection, whose `ledger`
//!   matches acknowledgements to publishes; `bike`: one bike's task;
//! - [`run()`]: a whole run, from a [`SimConfig`] (or the [`cli`]) to a [`Report`].
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use fleet_sim::{SimConfig, Token};
//!
//! let config = SimConfig { token: Token::new("fltk_..."), bikes: 3, duration: Some(Duration::from_secs(30)),
//!     verify: true, ..SimConfig::default() };
//! let report = fleet_sim::run(config, std::future::pending()).await?;
//! assert!(report.is_success(), "{:?}", report.failures());
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod bad;
pub mod battery;
mod bike;
pub mod cli;
pub mod config;
pub mod duration;
pub mod geo;
mod identity;
mod ledger;
mod link;
pub mod offline;
pub mod recorder;
pub mod report;
pub mod ride;
mod run;

pub use bad::{BadKind, BadSpec};
pub use config::{RunId, SimConfig, Token};
pub use report::{BikeReport, Report};
pub use run::{install_crypto_provider, run};
