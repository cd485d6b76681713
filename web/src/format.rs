//! Small pure helpers: URL encoding, timestamps, redirect targets.

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

/// Renders an RFC 3339 timestamp as `2026-04-14 09:30 UTC`; other text is returned unchanged.
pub fn timestamp(rfc3339: &str) -> String {
    let bytes = rfc3339.as_bytes();
    let shaped = bytes.len() >= 16
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && (bytes[10] == b'T' || bytes[10] == b' ')
        && bytes[13] == b':';
    let (Some(day), Some(time), Some(zone)) = (rfc3339.get(..10), rfc3339.get(11..16), rfc3339.get(16..)) else {
        return rfc3339.to_owned();
    };
    if !shaped {
        return rfc3339.to_owned();
    }
    let utc = zone.ends_with('Z') || zone.ends_with("+00:00") || zone.ends_with("+0000");
    let suffix = if utc { " UTC" } else { "" };
    format!("{day} {time}{suffix}")
}

/// Just the date part of an RFC 3339 timestamp.
pub fn date(rfc3339: &str) -> String {
    match rfc3339.get(..10) {
        Some(day) if day.as_bytes().get(4) == Some(&b'-') => day.to_owned(),
        _ => rfc3339.to_owned(),
    }
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

    #[test]
    fn formats_timestamps() {
        assert_eq!(timestamp("2026-04-14T09:30:12.123456Z"), "2026-04-14 09:30 UTC");
        assert_eq!(timestamp("2026-04-14T09:30:12+02:00"), "2026-04-14 09:30");
        assert_eq!(timestamp("yesterday"), "yesterday");
        assert_eq!(date("2026-04-14T09:30:12Z"), "2026-04-14");
    }
}
