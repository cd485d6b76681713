//! Durations as people type them on a command line (`90s`, `5m`, `1h30m`, `250ms`) and
//! ranges of them (`15s..90s`), from which the simulator draws how long things last.

use std::{fmt, str::FromStr, time::Duration};

use rand::{Rng, RngExt};

/// Why a text is not a duration or a range of them; the message says what would be.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidDuration(String);

/// Parses `90s`, `5m`, `1h30m`, `250ms` or `0`: numbers, each followed by `ms`, `s`, `m` or
/// `h`, added up.
pub fn parse_duration(text: &str) -> Result<Duration, InvalidDuration> {
    let invalid = || InvalidDuration(format!("`{text}` is not a duration: use e.g. 90s, 5m, 1h30m or 250ms"));
    let text_trimmed = text.trim();
    if text_trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = text_trimmed;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3_600.0,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(number * seconds_per_unit).map_err(|_| invalid())?;
    }
    Ok(total)
}

/// Shows a duration the way [`parse_duration`] reads it back, e.g. `1m30s`.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".into();
    }
    let (hours, minutes, seconds, millis) =
        (millis / 3_600_000, millis / 60_000 % 60, millis / 1_000 % 60, millis % 1_000);
    let mut text = String::new();
    for (value, unit) in [(hours, "h"), (minutes, "m"), (seconds, "s"), (millis, "ms")] {
        if value > 0 {
            text.push_str(&format!("{value}{unit}"));
        }
    }
    text
}

/// How long something lasts: anything from `min` to `max`, both included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationRange {
    pub min: Duration,
    pub max: Duration,
}

impl DurationRange {
    /// A range, if `min` is not after `max`.
    pub fn new(min: Duration, max: Duration) -> Result<Self, InvalidDuration> {
        if min > max {
            return Err(InvalidDuration(format!(
                "the range {}..{} ends before it starts",
                format_duration(min),
                format_duration(max)
            )));
        }
        Ok(Self { min, max })
    }

    /// A duration drawn evenly from the range.
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        if self.min == self.max {
            return self.min;
        }
        rng.random_range(self.min..=self.max)
    }
}

impl FromStr for DurationRange {
    type Err = InvalidDuration;

    /// `MIN..MAX` (`15s..90s`), or one duration for a range of exactly it.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once("..") {
            Some((min, max)) => Self::new(parse_duration(min)?, parse_duration(max)?),
            None => parse_duration(text).map(|d| Self { min: d, max: d }),
        }
        .map_err(|e| InvalidDuration(format!("{e} (a range is written MIN..MAX, e.g. 15s..90s)")))
    }
}

impl fmt::Display for DurationRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", format_duration(self.min), format_duration(self.max))
    }
}

#[cfg(test)]
mod tests {
    use rand::{SeedableRng, rngs::StdRng};

    use super::*;

    #[test]
    fn durations_read_as_typed() {
        let cases = [
            ("60s", 60_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("250ms", 250),
            ("1.5s", 1_500),
            ("0", 0),
            ("2m10s", 130_000),
        ];
        for (text, millis) in cases {
            assert_eq!(parse_duration(text), Ok(Duration::from_millis(millis)), "{text}");
        }
        for bad in ["", "10", "5x", "m", "s5", "-3s", "1.2.3s", "3 s"] {
            let error = parse_duration(bad).expect_err(bad).to_string();
            assert!(error.contains("not a duration"), "{bad}: {error}");
        }
    }

    #[test]
    fn durations_print_as_they_are_read() {
        for millis in [0, 250, 1_000, 61_000, 5_400_000, 3_723_004] {
            let duration = Duration::from_millis(millis);
            assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    }

    #[test]
    fn ranges_are_ordered_and_samples_fall_inside() {
        let range: DurationRange = "15s..90s".parse().expect("range");
        assert_eq!(range.to_string(), "15s..1m30s");
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..1_000 {
            let drawn = range.sample(&mut rng);
            assert!((range.min..=range.max).contains(&drawn));
        }
        assert_eq!("20s".parse::<DurationRange>().expect("one").sample(&mut rng), Duration::from_secs(20));
        let backwards = "90s..15s".parse::<DurationRange>().expect_err("backwards").to_string();
        assert!(backwards.contains("ends before it starts"), "{backwards}");
    }
}
