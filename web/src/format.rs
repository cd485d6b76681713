//! Small pure helpers: URL encoding, timestamps and durations, redirect targets, log text.

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

/// A 64-bit FNV-1a hash, usable in `const` items (for cache-busting asset URLs).
#[cfg_attr(not(feature = "ssr"), allow(dead_code))]
pub const fn fingerprint(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// Percent-encodes `value` for use as one path segment or one query value.
pub fn encode(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(byte));
            }
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0x0f)]));
            }
        }
    }
    out
}

/// Where to go after signing in: `next` when it is a path on this site, `/` otherwise.
///
/// Only absolute paths are accepted; `//host` and `/\host` would leave the site.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && !path.chars().any(char::is_control) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// A timestamp as people read it: `2026-04-14 09:30 UTC`.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Just the date of a timestamp: `2026-04-14`.
pub fn date(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// A timestamp as the API writes it (RFC 3339, `2026-04-14T09:30:12.123456Z`), for the
/// `datetime` attribute of `<time>`.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A size in bytes for people: `512 B`, `2.3 KB`, `1.5 MB` (powers of 1024).
pub fn bytes(size: u64) -> String {
    const KB: u64 = 1024;
    const MB: u64 = 1024 * KB;
    let (amount, unit) = match size {
        0..KB => return format!("{size} B"),
        // Sizes shown here are far below where the conversion to f64 loses precision.
        KB..MB => (size as f64 / KB as f64, "KB"),
        _ => (size as f64 / MB as f64, "MB"),
    };
    let amount = format!("{amount:.1}");
    format!("{} {unit}", amount.strip_suffix(".0").unwrap_or(&amount))
}

/// How long ago `then` was, at `now`: `just now`, `5 minutes ago`, `3 days ago`, or the date
/// when it is older than a month.
pub fn relative(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    // A clock a little ahead of the server's still reads as "just now".
    let ago = (now - then).num_seconds().max(0);
    let count = |n: i64, unit: &str| if n == 1 { format!("1 {unit} ago") } else { format!("{n} {unit}s ago") };
    match ago {
        0..60 => "just now".to_owned(),
        60..3_600 => count(ago / 60, "minute"),
        3_600..86_400 => count(ago / 3_600, "hour"),
        86_400..2_592_000 => count(ago / 86_400, "day"),
        _ => date(then),
    }
}

/// A length of time for people: `45s`, `3m 12s`, `2h 05m`.
pub fn duration(seconds: i64) -> String {
    let seconds = seconds.max(0);
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3_600 => format!("{}m {:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h {:02}m", seconds / 3_600, seconds % 3_600 / 60),
    }
}

/// The time between two timestamps, for people (see [`duration`]).
pub fn elapsed(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    duration((to - from).num_seconds())
}

/// The end of an id, enough to tell runs apart: `…e4f32cd3`. Time-ordered ids (UUIDv7) made
/// close together share their start, so the end is what differs.
pub fn short_id(id: Uuid) -> String {
    const SHOWN: usize = 8;
    let id = id.hyphenated().to_string();
    format!("…{}", &id[id.len() - SHOWN..])
}

/// A piece of text that may name a run by its UUID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mention {
    Text(String),
    /// A UUID in the text.
    Id(Uuid),
}

/// Splits `text` around the UUIDs in it ("Waiting behind run 01a2…-…cd3 on the same
/// cluster"), so that they can be shown as links.
pub fn mentions(text: &str) -> Vec<Mention> {
    const UUID_LEN: usize = 36;
    let is_uuid = |candidate: &str| {
        candidate.len() == UUID_LEN
            && candidate
                .char_indices()
                .all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { c == '-' } else { c.is_ascii_hexdigit() })
    };
    let mut parts = Vec::new();
    let mut rest = text;
    let mut plain = String::new();
    while !rest.is_empty() {
        if let Some(candidate) = rest.get(..UUID_LEN)
            && is_uuid(candidate)
            && !plain.ends_with(|c: char| c.is_ascii_alphanumeric())
            && let Ok(id) = Uuid::parse_str(candidate)
        {
            if !plain.is_empty() {
                parts.push(Mention::Text(std::mem::take(&mut plain)));
            }
            parts.push(Mention::Id(id));
            rest = &rest[UUID_LEN..];
            continue;
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            plain.push(c);
        }
        rest = chars.as_str();
    }
    if !plain.is_empty() {
        parts.push(Mention::Text(plain));
    }
    parts
}

/// `text` without terminal escape sequences (colours, cursor moves), which a log may carry
/// when a tool forgets that its output is not a terminal.
pub fn strip_ansi(text: &str) -> String {
    if !text.contains('\u{1b}') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            // CSI: parameters and intermediates, then one final byte in @..~.
            Some('[') => {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // OSC (a window title, a link): up to BEL or ESC \.
            Some(']') => {
                chars.next();
                while let Some(c) = chars.next() {
                    if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
            }
            // Any other escape: intermediates (space to `/`), then one final character.
            Some(_) => {
                while chars.next_if(|c| (' '..='/').contains(c)).is_some() {}
                chars.next();
            }
            None => {}
        }
    }
    out
}

/// A short, human name for a browser from its `User-Agent`: "Firefox on Linux", "Chrome on
/// macOS", "curl". Unknown agents come back as their first word; an empty one as "Unknown browser".
pub fn browser_name(user_agent: &str) -> String {
    let agent = user_agent.trim();
    if agent.is_empty() {
        return "Unknown browser".to_owned();
    }
    // First match wins: Edge and Opera say "Chrome", Chrome says "Safari", headless Chrome both.
    const BROWSERS: [(&[&str], &str); 7] = [
        (&["Edg/"], "Edge"),
        (&["OPR/"], "Opera"),
        (&["Firefox/"], "Firefox"),
        (&["HeadlessChrome/"], "Headless Chrome"),
        (&["Chromium/"], "Chromium"),
        (&["Chrome/", "CriOS/"], "Chrome"),
        (&["Safari/"], "Safari"),
    ];
    // iOS and Android agents also say "Mac OS X" and "Linux".
    const SYSTEMS: [(&[&str], &str); 6] = [
        (&["iPhone", "iPad"], "iOS"),
        (&["Android"], "Android"),
        (&["Windows"], "Windows"),
        (&["Mac OS X", "Macintosh"], "macOS"),
        (&["CrOS"], "ChromeOS"),
        (&["Linux", "X11"], "Linux"),
    ];
    let first = |table: &[(&[&str], &'static str)]| {
        table.iter().find(|(needles, _)| needles.iter().any(|n| agent.contains(n))).map(|(_, name)| *name)
    };
    let (browser, system) = (first(&BROWSERS), first(&SYSTEMS));
    match (browser, system) {
        (Some(browser), Some(system)) => format!("{browser} on {system}"),
        (Some(browser), None) => browser.to_owned(),
        // Scripts and tools: "curl/8.5.0" reads best as "curl".
        (None, _) => agent.split(['/', ' ']).next().unwrap_or(agent).chars().take(40).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_reserved_characters() {
        assert_eq!(encode("a b/c?d&e"), "a%20b%2Fc%3Fd%26e");
        assert_eq!(encode("team-1_x.y~"), "team-1_x.y~");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn next_must_stay_on_this_site() {
        assert_eq!(safe_next(Some("/orgs/acme?x=1")), "/orgs/acme?x=1");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn formats_sizes() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(2355), "2.3 KB");
        assert_eq!(bytes(64 * 1024), "64 KB");
        assert_eq!(bytes(3 * 1024 * 1024 / 2), "1.5 MB");
    }

    /// `2026-04-14T09:30:12Z` moved by `seconds`.
    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_776_159_012 + seconds, 0).expect("in range")
    }

    #[test]
    fn says_how_long_ago() {
        let then = at(0);
        assert_eq!(relative(then, at(-5)), "just now");
        assert_eq!(relative(then, at(59)), "just now");
        assert_eq!(relative(then, at(60)), "1 minute ago");
        assert_eq!(relative(then, at(7 * 60 + 30)), "7 minutes ago");
        assert_eq!(relative(then, at(2 * 3_600)), "2 hours ago");
        assert_eq!(relative(then, at(86_400)), "1 day ago");
        assert_eq!(relative(then, at(90 * 86_400)), "2026-04-14");
    }

    #[test]
    fn formats_durations() {
        assert_eq!(duration(-3), "0s");
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(192), "3m 12s");
        assert_eq!(duration(7_500), "2h 05m");
        assert_eq!(elapsed(at(0), at(65)), "1m 05s");
    }

    #[test]
    fn shortens_ids_to_their_distinct_end() {
        let id = Uuid::parse_str("01a20b29-8292-7196-af7e-d490e4f32cd3").expect("a uuid");
        assert_eq!(short_id(id), "…e4f32cd3");
    }

    #[test]
    fn finds_run_ids_in_reasons() {
        let id = "01a20b29-8292-7196-af7e-d490e4f32cd3";
        let uuid = Uuid::parse_str(id).expect("a uuid");
        assert_eq!(
            mentions(&format!("Waiting behind run {id} on the same cluster (running).")),
            [
                Mention::Text("Waiting behind run ".into()),
                Mention::Id(uuid),
                Mention::Text(" on the same cluster (running).".into()),
            ]
        );
        assert_eq!(mentions(id), [Mention::Id(uuid)]);
        assert_eq!(
            mentions("Waiting for a free worker (2 ahead)."),
            [Mention::Text("Waiting for a free worker (2 ahead).".into())]
        );
        assert_eq!(mentions(&format!("x{id}")), [Mention::Text(format!("x{id}"))]);
        assert_eq!(mentions("é"), [Mention::Text("é".into())]);
    }

    #[test]
    fn strips_terminal_escapes() {
        assert_eq!(strip_ansi("plain"), "plain");
        assert_eq!(
            strip_ansi("\u{1b}[1m\u{1b}[32mApply complete!\u{1b}[0m Resources: 3 added."),
            "Apply complete! Resources: 3 added."
        );
        assert_eq!(strip_ansi("\u{1b}]0;title\u{7}after"), "after");
        assert_eq!(strip_ansi("a\u{1b}(Bb\u{1b}=c"), "abc");
    }

    #[test]
    fn formats_timestamps() {
        let then = at(0) + chrono::TimeDelta::microseconds(123_456);
        assert_eq!(timestamp(then), "2026-04-14 09:30 UTC");
        assert_eq!(date(then), "2026-04-14");
        assert_eq!(rfc3339(then), "2026-04-14T09:30:12.123456Z");
        assert_eq!(rfc3339(at(0)), "2026-04-14T09:30:12Z");
    }

    #[test]
    fn writes_timestamps_as_the_api_does() {
        let then = at(0) + chrono::TimeDelta::milliseconds(5);
        assert_eq!(serde_json::to_value(then).expect("serializes"), serde_json::json!(rfc3339(then)));
    }

    #[test]
    fn browsers_are_named_by_engine_and_system() {
        let cases = [
            ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", "Firefox on Linux"),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                "Chrome on macOS",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
                "Safari on iOS",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36",
                "Headless Chrome on Linux",
            ),
            ("curl/8.5.0", "curl"),
            ("", "Unknown browser"),
            ("   ", "Unknown browser"),
        ];
        for (agent, expected) in cases {
            assert_eq!(browser_name(agent), expected, "{agent}");
        }
    }
}
