//! What a run is told: [`SimConfig`], with defaults that make a sensible run against a local
//! fleet-telemetry, given a token.

use std::{fmt, str::FromStr, time::Duration};

use rand::RngExt;

use crate::{
    bad::{BadKind, BadSpec},
    offline::{MAX_BATCH, OfflineSettings},
    ride::RideSettings,
};

/// An API token. Its `Debug` does not show it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token([redacted])")
    }
}

/// Names a run: the bikes' serials are `sim-<run id>-<n>`. 1 to 16 lowercase letters and
/// digits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunId(String);

impl RunId {
    /// Six random hex digits: runs against the same fleet do not collide.
    pub fn random() -> Self {
        Self(format!("{:06x}", rand::rng().random_range(0..0x100_0000u32)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RunId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if (1..=16).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
            Ok(Self(text.to_owned()))
        } else {
            Err(format!("`{text}` is not a run id: use 1 to 16 lowercase letters and digits"))
        }
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything a run needs. `SimConfig { token, ..SimConfig::default() }` rides ten bikes
/// against a local fleet-telemetry until the shutdown future completes.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The fleet-telemetry API, e.g. `http://127.0.0.1:8090`.
    pub api: String,
    /// A token that may register bikes and issue certificates.
    pub token: Token,
    /// A token that may revoke certificates (only for [`BadKind::Revoked`]); `None`: `token`.
    pub admin_token: Option<Token>,
    /// Where bikes connect, `(host, port)`, instead of where the API says.
    pub broker: Option<(String, u16)>,
    pub bikes: usize,
    /// How long the bikes ride; `None`: until the shutdown future completes.
    pub duration: Option<Duration>,
    /// Draws every bike's rides (routes, trips, spells) from this, for the same rides again;
    /// `None`: random.
    pub seed: Option<u64>,
    /// `None`: a random one.
    pub run_id: Option<RunId>,
    pub model: String,
    pub firmware: String,
    pub ride: RideSettings,
    pub offline: OfflineSettings,
    /// Bad packets to send, by kind and count.
    pub bad: Vec<BadSpec>,
    /// After stopping, wait until the API has stored every acknowledged packet.
    pub verify: bool,
    /// How long, at shutdown, bikes may take to send what they hold and get it acknowledged.
    pub ack_timeout: Duration,
    /// How long `verify` waits for the store.
    pub verify_timeout: Duration,
    /// How long a bike may take to connect at the start.
    pub connect_timeout: Duration,
    /// A progress line this often.
    pub progress_every: Duration,
    /// The most packets in one batch (at most [`MAX_BATCH`]).
    pub batch_max: usize,
    /// The most packets a bike holds while offline; the oldest go past it.
    pub outbox_capacity: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            api: "http://127.0.0.1:8090".into(),
            token: Token::default(),
            admin_token: None,
            broker: None,
            bikes: 10,
            duration: None,
            seed: None,
            run_id: None,
            model: "Fleet Sim E1".into(),
            firmware: "1.0.0-sim".into(),
            ride: RideSettings::default(),
            offline: OfflineSettings::default(),
            bad: Vec::new(),
            verify: false,
            ack_timeout: Duration::from_secs(30),
            verify_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(30),
            progress_every: Duration::from_secs(10),
            batch_max: MAX_BATCH,
            outbox_capacity: 100_000,
        }
    }
}

impl SimConfig {
    /// Refuses what cannot make a run, saying why.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.token.is_empty() {
            anyhow::bail!("no API token: pass --token or set FLEET_TOKEN");
        }
        if !(self.api.starts_with("http://") || self.api.starts_with("https://")) {
            anyhow::bail!("the API address `{}` is not an http:// or https:// URL", self.api);
        }
        if self.bikes == 0 {
            anyhow::bail!("a run needs at least one bike");
        }
        if self.ride.sample_every.is_zero() {
            anyhow::bail!("bikes must send telemetry at a rate above 0");
        }
        if !(1..=MAX_BATCH).contains(&self.batch_max) {
            anyhow::bail!("a batch carries 1 to {MAX_BATCH} packets, not {}", self.batch_max);
        }
        Ok(())
    }

    /// The bad packets asked for, by kind, counts of repeated kinds added up.
    pub fn bad_counts(&self) -> Vec<(BadKind, u32)> {
        BadKind::ALL
            .into_iter()
            .filter_map(|kind| {
                let count: u32 = self.bad.iter().filter(|s| s.kind == kind).map(|s| s.count).sum();
                (count > 0).then_some((kind, count))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_never_printed() {
        let config = SimConfig { token: Token::new("fltk_secret"), ..SimConfig::default() };
        assert!(!format!("{config:?}").contains("fltk_secret"));
    }

    #[test]
    fn the_defaults_need_only_a_token() {
        let error = SimConfig::default().validate().expect_err("no token").to_string();
        assert!(error.contains("--token"), "{error}");
        SimConfig { token: Token::new("fltk_x"), ..SimConfig::default() }.validate().expect("valid");
    }

    #[test]
    fn run_ids_are_short_and_safe_in_a_serial() {
        assert_eq!("a1b2".parse::<RunId>().map(|r| r.to_string()), Ok("a1b2".into()));
        for bad in ["", "UPPER", "with-dash", "seventeen-chars-x"] {
            assert!(bad.parse::<RunId>().is_err(), "{bad}");
        }
        assert!(RunId::random().as_str().parse::<RunId>().is_ok());
    }

    #[test]
    fn repeated_bad_kinds_add_up() {
        let bad = ["malformed", "revoked=2", "malformed=3"].map(|s| s.parse().expect("spec")).to_vec();
        let config = SimConfig { bad, ..SimConfig::default() };
        assert_eq!(config.bad_counts(), [(BadKind::Malformed, 4), (BadKind::Revoked, 2)]);
    }
}
