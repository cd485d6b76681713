//! The `fleet-sim` command line, and how it becomes a [`SimConfig`]. Every value is checked
//! as it is parsed, so a mistake is explained before anything connects anywhere.

use std::time::Duration;

use clap::Parser;

use crate::{
    bad::BadSpec,
    config::{RunId, SimConfig, Token},
    duration::{DurationRange, parse_duration},
    geo::LatLon,
    offline::OfflineSettings,
    ride::RideSettings,
};

/// The most packets per second one bike may send while riding.
pub const MAX_RATE: f64 = 1_000.0;

/// Simulated e-bikes for a fleet-telemetry service. Each bike registers through the API,
/// gets its own certificate from a CSR, connects to the broker with mutual TLS as itself and
/// rides a street grid around a city centre: trips, hills, red lights, a draining battery,
/// spells without coverage (sent as batches afterwards), and bad packets on demand.
///
/// It stops at --duration or Ctrl-C, then waits for every packet to be acknowledged; it
/// exits non-zero if one is not (or, with --verify, is not stored).
#[derive(Debug, Parser)]
#[command(name = "fleet-sim", version)]
pub struct Cli {
    /// The fleet-telemetry API.
    #[arg(long, default_value = "http://127.0.0.1:8090", value_parser = parse_api)]
    pub api: String,

    /// An API token (fltk_...) that may register bikes and issue certificates.
    #[arg(long, env = "FLEET_TOKEN", hide_env_values = true)]
    pub token: String,

    /// A token that may revoke certificates, for --bad revoked [default: --token].
    #[arg(long, env = "FLEET_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Connect bikes to this HOST:PORT instead of where the API says the broker is.
    #[arg(long, value_parser = parse_host_port)]
    pub broker: Option<(String, u16)>,

    /// How many bikes ride.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub bikes: u32,

    /// Telemetry packets per second per bike while riding (fractions too: 0.2 is one every 5 s).
    #[arg(long, default_value_t = 1.0, value_parser = parse_rate)]
    pub rate: f64,

    /// One telemetry packet this often while parked, or `off`.
    #[arg(long, default_value = "60s", value_parser = parse_every)]
    pub heartbeat: Every,

    /// How long to ride, e.g. 60s, 5m, 1h30m [default: until Ctrl-C].
    #[arg(long, value_parser = parse_positive_duration)]
    pub duration: Option<Duration>,

    /// The city centre the bikes ride around, LAT,LON in decimal degrees.
    #[arg(long, visible_alias = "center", default_value = "52.3676,4.9041", value_parser = parse_centre)]
    pub centre: LatLon,

    /// How far from the centre bikes roam, in metres.
    #[arg(long, default_value_t = 2_500.0, value_parser = parse_radius)]
    pub radius: f64,

    /// Draw the rides (routes, trips, lights, spells) from this seed, to ride them again.
    #[arg(long)]
    pub seed: Option<u64>,

    /// Name the run: serials are sim-<run id>-<n> [default: random].
    #[arg(long)]
    pub run_id: Option<RunId>,

    /// The bikes' model.
    #[arg(long, default_value = "Fleet Sim E1")]
    pub model: String,

    /// The bikes' firmware version.
    #[arg(long, default_value = "1.0.0-sim")]
    pub firmware: String,

    /// How long a trip lasts, MIN..MAX.
    #[arg(long, default_value = "2m..10m")]
    pub trip: DurationRange,

    /// How long a bike stays parked between trips, MIN..MAX.
    #[arg(long, default_value = "15s..90s")]
    pub park: DurationRange,

    /// A bike loses coverage after this much riding on average, or `off` for never.
    #[arg(long, default_value = "60s", value_parser = parse_every)]
    pub offline_every: Every,

    /// How long a spell without coverage lasts, MIN..MAX.
    #[arg(long, default_value = "10s..60s")]
    pub offline_for: DurationRange,

    /// How often a bike raises a fault, per hour on average.
    #[arg(long, default_value_t = 1.0, value_parser = parse_per_hour)]
    pub faults_per_hour: f64,

    /// Send bad packets: KIND[=COUNT], KIND one of malformed, wrong-topic, out-of-range,
    /// revoked, device-mismatch. Repeatable. They are counted apart and never fail the run.
    #[arg(long = "bad", value_name = "KIND[=COUNT]")]
    pub bad: Vec<BadSpec>,

    /// After stopping, wait (up to --verify-timeout) until the fleet has stored every packet
    /// acknowledged, and fail if it has not.
    #[arg(long)]
    pub verify: bool,

    /// How long to wait for the store with --verify.
    #[arg(long, default_value = "120s", value_parser = parse_positive_duration)]
    pub verify_timeout: Duration,

    /// How long bikes may take, after stopping, to send what they hold and be acknowledged.
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration)]
    pub ack_timeout: Duration,
}

/// A duration, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Every(pub Option<Duration>);

impl Cli {
    pub fn into_config(self) -> SimConfig {
        let defaults = SimConfig::default();
        let ride = RideSettings {
            centre: self.centre,
            radius_m: self.radius,
            sample_every: Duration::from_secs_f64(1.0 / self.rate),
            heartbeat_every: self.heartbeat.0,
            trip_length: self.trip,
            park_length: self.park,
            faults_per_hour: self.faults_per_hour,
            ..RideSettings::default()
        };
        SimConfig {
            api: self.api,
            token: Token::new(self.token),
            admin_token: self.admin_token.map(Token::new),
            broker: self.broker,
            bikes: self.bikes as usize,
            duration: self.duration,
            seed: self.seed,
            run_id: self.run_id,
            model: self.model,
            firmware: self.firmware,
            ride,
            offline: OfflineSettings { every: self.offline_every.0, length: self.offline_for },
            bad: self.bad,
            verify: self.verify,
            ack_timeout: self.ack_timeout,
            verify_timeout: self.verify_timeout,
            ..defaults
        }
    }
}

fn parse_api(text: &str) -> Result<String, String> {
    let rest = text.strip_prefix("http://").or_else(|| text.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() => Ok(text.trim_end_matches('/').to_owned()),
        _ => Err(format!("`{text}` is not an http:// or https:// URL, e.g. http://127.0.0.1:8090")),
    }
}

fn parse_host_port(text: &str) -> Result<(String, u16), String> {
    let invalid = || format!("`{text}` is not HOST:PORT, e.g. 127.0.0.1:8883");
    let (host, port) = text.rsplit_once(':').ok_or_else(invalid)?;
    let port: u16 = port.parse().ok().filter(|&p| p > 0).ok_or_else(invalid)?;
    if host.is_empty() {
        return Err(invalid());
    }
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port))
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text.parse().map_err(|_| format!("`{text}` is not a number of packets per second"))?;
    if !(rate.is_finite() && rate > 0.0) {
        return Err(format!("the rate must be more than 0 packets per second, not {text}"));
    }
    if rate > MAX_RATE {
        return Err(format!("the rate is at most {MAX_RATE} packets per second per bike, not {text}"));
    }
    Ok(rate)
}

fn parse_centre(text: &str) -> Result<LatLon, String> {
    text.parse().map_err(|e| format!("{e}"))
}

fn parse_radius(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(radius) if (100.0..=50_000.0).contains(&radius) => Ok(radius),
        _ => Err(format!("`{text}` is not a radius: give metres, from 100 to 50000")),
    }
}

fn parse_per_hour(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(rate),
        _ => Err(format!("`{text}` is not a rate per hour: give a number, 0 or more")),
    }
}

fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Ok(duration) if duration.is_zero() => Err("the duration must be longer than 0".into()),
        Ok(duration) => Ok(duration),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_every(text: &str) -> Result<Every, String> {
    if text == "off" {
        return Ok(Every(None));
    }
    parse_positive_duration(text).map(|d| Every(Some(d))).map_err(|e| format!("{e}, or `off`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bad::BadKind;

    fn parse(args: &[&str]) -> Result<Cli, String> {
        let argv = ["fleet-sim", "--token", "fltk_test"].iter().chain(args);
        Cli::try_parse_from(argv).map_err(|e| e.to_string())
    }

    fn refused(args: &[&str]) -> String {
        parse(args).expect_err(&format!("{args:?} is refused"))
    }

    #[test]
    fn the_defaults_make_a_run_of_ten_bikes_in_amsterdam() {
        let config = parse(&[]).expect("parses").into_config();
        assert_eq!(config.api, "http://127.0.0.1:8090");
        assert_eq!(config.token.expose(), "fltk_test");
        assert_eq!(config.bikes, 10);
        assert_eq!(config.ride.sample_every, Duration::from_secs(1));
        assert_eq!(config.ride.centre, LatLon::AMSTERDAM);
        assert_eq!(config.duration, None);
        assert_eq!(config.offline.every, Some(Duration::from_secs(60)));
        assert!(!config.verify && config.bad.is_empty());
        config.validate().expect("valid");
    }

    #[test]
    fn every_flag_reaches_the_config() {
        let config = parse(&[
            "--api=https://fleet.example/",
            "--bikes=3",
            "--rate=0.5",
            "--duration=5m",
            "--center=48.8566,2.3522",
            "--seed=42",
            "--run-id=bench1",
            "--heartbeat=off",
            "--offline-every=off",
            "--offline-for=5s..20s",
            "--trip=1m..2m",
            "--bad=malformed",
            "--bad=out-of-range=3",
            "--verify",
            "--broker=localhost:1883",
            "--admin-token=fltk_admin",
        ])
        .expect("parses")
        .into_config();
        assert_eq!(config.api, "https://fleet.example");
        assert_eq!(config.bikes, 3);
        assert_eq!(config.ride.sample_every, Duration::from_secs(2));
        assert_eq!(config.duration, Some(Duration::from_secs(300)));
        assert_eq!(config.ride.centre, LatLon { lat: 48.8566, lon: 2.3522 });
        assert_eq!(config.seed, Some(42));
        assert_eq!(config.run_id.as_ref().map(ToString::to_string), Some("bench1".into()));
        assert_eq!(config.ride.heartbeat_every, None);
        assert_eq!(config.offline.every, None);
        assert_eq!(config.offline.length.to_string(), "5s..20s");
        assert_eq!(config.ride.trip_length.max, Duration::from_secs(120));
        assert_eq!(config.bad_counts(), [(BadKind::Malformed, 1), (BadKind::OutOfRange, 3)]);
        assert!(config.verify);
        assert_eq!(config.broker, Some(("localhost".into(), 1883)));
        assert_eq!(config.admin_token.map(|t| t.expose().to_owned()), Some("fltk_admin".into()));
    }

    #[test]
    fn a_centre_off_the_globe_is_explained() {
        let error = refused(&["--centre", "200,0"]);
        assert!(error.contains("latitude 200 is not between -90 and 90"), "{error}");
        let error = refused(&["--centre", "Amsterdam"]);
        assert!(error.contains("LAT,LON in decimal degrees, e.g. 52.3676,4.9041"), "{error}");
    }

    #[test]
    fn a_rate_must_be_positive_and_sane() {
        for rate in ["0", "-1", "NaN", "inf"] {
            let error = refused(&[&format!("--rate={rate}")]);
            assert!(error.contains("must be more than 0"), "{rate}: {error}");
        }
        assert!(refused(&["--rate", "fast"]).contains("not a number"));
        assert!(refused(&["--rate", "5000"]).contains("at most"));
        let config = parse(&["--rate", "0.25"]).expect("a fraction").into_config();
        assert_eq!(config.ride.sample_every, Duration::from_secs(4));
    }

    #[test]
    fn an_unknown_bad_kind_lists_the_known_ones() {
        let error = refused(&["--bad", "nonsense"]);
        assert!(error.contains("`nonsense` is not a kind of bad packet"), "{error}");
        assert!(error.contains("malformed, wrong-topic, out-of-range, revoked, device-mismatch"), "{error}");
        assert!(refused(&["--bad", "revoked=none"]).contains("not a count"));
    }

    #[test]
    fn other_mistakes_are_explained() {
        assert!(refused(&["--duration", "5 minutes"]).contains("not a duration"));
        assert!(refused(&["--duration", "0s"]).contains("longer than 0"));
        assert!(refused(&["--bikes", "0"]).contains("0"));
        assert!(refused(&["--offline-for", "60s..10s"]).contains("ends before it starts"));
        assert!(refused(&["--offline-every", "never"]).contains("or `off`"));
        assert!(refused(&["--api", "127.0.0.1:8090"]).contains("http://"));
        assert!(refused(&["--broker", "localhost"]).contains("HOST:PORT"));
        assert!(refused(&["--run-id", "Run-1"]).contains("lowercase"));
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
