//! Configuration in layers, the same in every service: built-in defaults, under an optional TOML
//! file (unknown keys rejected, so typos are caught), under environment variables (empty ones
//! count as unset). Every problem names the setting it is about.

use std::{
    path::{Path, PathBuf},
    str::FromStr,
};

use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {source}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    /// `key` is the environment variable (or file key) whose value is not acceptable.
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

pub fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, message: message.into() }
}

/// The file's settings (`T::default()`, every key unset, without one).
pub fn read_file<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, ConfigError> {
    let Some(path) = path else { return Ok(T::default()) };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_owned(), source: Box::new(source) })
}

/// The process environment as the layers read it: a variable set to the empty string is unset.
pub fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|value| !value.is_empty())
}

/// `text`, the value of `key`, as a number.
pub fn parse_number<T: FromStr>(key: &'static str, text: &str) -> Result<T, ConfigError> {
    text.trim().parse().map_err(|_| invalid(key, format!("`{text}` is not a number")))
}

/// Each setting: from `env` if set there, then checked to be between 1 and its maximum.
pub fn between_one_and<'a>(
    settings: impl IntoIterator<Item = (&'static str, &'a mut u64, u64)>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for (key, value, max) in settings {
        if let Some(text) = env(key) {
            let number: i64 = parse_number(key, &text)?;
            *value = u64::try_from(number).unwrap_or(0);
        }
        if !(1..=max).contains(&*value) {
            return Err(invalid(key, format!("must be between 1 and {max}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct File {
        listen: Option<String>,
    }

    #[test]
    fn a_file_is_read_with_unknown_keys_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_file::<File>(None).expect("no file"), File::default());
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\n").expect("write");
        assert_eq!(read_file::<File>(Some(&path)).expect("read").listen.as_deref(), Some("127.0.0.1:1"));
        std::fs::write(&path, "lisen = 1\n").expect("write");
        let error = read_file::<File>(Some(&path)).expect_err("a typo");
        assert!(error.to_string().contains("lisen"), "{error}");
        let missing = read_file::<File>(Some(&dir.path().join("nope.toml"))).expect_err("missing");
        assert!(matches!(missing, ConfigError::Read { .. }), "{missing}");
    }

    #[test]
    fn numbers_outside_their_range_name_their_setting() {
        let env = |key: &str| (key == "N").then(|| "0".to_owned());
        let mut n = 5;
        let error = between_one_and([("N", &mut n, 10)], &env).expect_err("0 is out of range");
        assert_eq!(error.to_string(), "N: must be between 1 and 10");
        let mut m = 5;
        between_one_and([("M", &mut m, 10)], &env).expect("the default stands");
        assert_eq!(m, 5);
        let error = parse_number::<u32>("N", "ten").expect_err("not a number");
        assert_eq!(error.to_string(), "N: `ten` is not a number");
    }
}
