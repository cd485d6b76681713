//! Validated inputs: each type can only be built through `parse`, so holding one proves it valid.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

/// Why an input was refused: a stable machine code and a sentence for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub code: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// An email address, trimmed. Deliberately simple: one `@`, a local part of up to 64
/// printable characters, and a domain of ASCII labels (an international domain is written in
/// its `xn--` form), as the API's `EmailAddress` schema states. The verification mail is the
/// real test of an address.
///
/// An address must be written in its plainest form (Unicode NFKC): `K` written with the Kelvin
/// sign, or full-width letters, would otherwise be one address to people and two to us.
/// Addresses are compared in [`Email::normalized`] form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let email = input.trim();
        let bad = || Invalid::new("invalid", "Enter a valid email address, like name@example.com.");
        if email.is_empty() {
            return Err(Invalid::new("required", "Enter your email address."));
        }
        if email.chars().count() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = email.rsplit_once('@').ok_or_else(bad)?;
        let domain_ok = domain.len() >= 3
            && domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if local.is_empty() || local.chars().count() > 64 || local.contains('@') || !domain_ok {
            return Err(bad());
        }
        let plain: String = email.nfkc().collect();
        if plain != email {
            return Err(Invalid::new(
                "not_canonical",
                format!(
                    "This address has characters with a plainer form (a Kelvin sign for K, say): write it as {plain}."
                ),
            ));
        }
        Ok(Self(email.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form used for uniqueness and look-ups.
    pub fn normalized(&self) -> String {
        // Lower-casing can leave a character with a plainer form; NFKC again settles it.
        self.0.to_lowercase().nfkc().collect()
    }
}

/// A user name or an organization name: 3–30 of `a-z 0-9 _ -`, starting with a letter.
/// Input is lower-cased first, so names are unique regardless of case.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Handle(String);

/// A user's name (a [`Handle`]).
pub type Username = Handle;
/// An organization's URL name (a [`Handle`]).
pub type OrgName = Handle;

impl Handle {
    pub const MIN: usize = 3;
    pub const MAX: usize = 30;

    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let name = input.trim().to_lowercase();
        if name.is_empty() {
            return Err(Invalid::new("required", "Choose a name."));
        }
        let len = name.chars().count();
        if !(Self::MIN..=Self::MAX).contains(&len) {
            return Err(Invalid::new("length", format!("Use {} to {} characters.", Self::MIN, Self::MAX)));
        }
        if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(Invalid::new("invalid", "Start with a letter."));
        }
        if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-') {
            return Err(Invalid::new("invalid", "Use only letters a-z, digits, `_` and `-`."));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A new password that meets the policy. Never printed.
pub struct NewPassword(String);

impl NewPassword {
    pub const MIN: usize = 8;
    /// argon2 accepts any length; a cap keeps one request from hashing megabytes.
    pub const MAX: usize = 256;

    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let len = input.chars().count();
        if len < Self::MIN {
            return Err(Invalid::new("too_short", format!("Use at least {} characters.", Self::MIN)));
        }
        if len > Self::MAX {
            return Err(Invalid::new("too_long", format!("Use at most {} characters.", Self::MAX)));
        }
        if input.trim().is_empty() {
            return Err(Invalid::new("too_weak", "A password cannot be only spaces."));
        }
        Ok(Self(input.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword([redacted])")
    }
}

/// A member's role in an organization; the API and the database spell it the same way.
pub use fleetplane_api::Role;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in ["a@b.co", "  Alice.Smith+ops@Example.COM ", "x@sub.domain.io"] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
        assert!(Email::parse(&format!("{}@example.com", "é".repeat(64))).is_ok(), "64 characters, not bytes");
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a@-b.com",
            "a b@c.com",
            "a@b..com",
            "a@b@c.com",
            "a@exämple.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Email::parse(" Alice@Example.com ").map(|e| e.normalized()).ok().as_deref(),
            Some("alice@example.com")
        );
    }

    #[test]
    fn an_address_with_a_plainer_form_is_refused_and_names_it() {
        // A Kelvin sign, full-width letters, a ligature: each reads as a plain address.
        for (written, plain) in [
            ("\u{212A}ate@example.com", "Kate@example.com"),
            ("ｋate@example.com", "kate@example.com"),
            ("ﬁona@example.com", "fiona@example.com"),
        ] {
            let refused = Email::parse(written).expect_err(written);
            assert_eq!(refused.code, "not_canonical");
            assert!(refused.message.ends_with(&format!("write it as {plain}.")), "{}", refused.message);
        }
        let accented = Email::parse("José@example.com").expect("composed accents are plain already");
        assert_eq!(accented.normalized(), "josé@example.com");
        assert_eq!(Email::parse("KATE@example.com").expect("ok").normalized(), "kate@example.com");
    }

    #[test]
    fn handles() {
        for ok in ["abc", "Alice", "ops_team-2", "a23456789012345678901234567890"] {
            assert!(Handle::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(Handle::parse("Alice").map(Handle::into_string).ok().as_deref(), Some("alice"));
        let cases = [
            ("", "required"),
            ("ab", "length"),
            ("1abc", "invalid"),
            ("ab cd", "invalid"),
            ("abc.def", "invalid"),
            ("a234567890123456789012345678901", "length"),
            ("_abc", "invalid"),
        ];
        for (bad, code) in cases {
            assert_eq!(Handle::parse(bad).map(|_| ()).unwrap_err().code, code, "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert_eq!(NewPassword::parse("short").unwrap_err().code, "too_short");
        assert_eq!(NewPassword::parse("        ").unwrap_err().code, "too_weak");
        assert_eq!(NewPassword::parse(&"x".repeat(257)).unwrap_err().code, "too_long");
        let password = NewPassword::parse("correct horse").expect("valid");
        assert!(!format!("{password:?}").contains("horse"));
    }

    #[test]
    fn roles_order_by_power() {
        assert!(Role::Owner > Role::Admin && Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
        for role in [Role::Viewer, Role::Operator, Role::Admin, Role::Owner] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
    }
}
