//! Fleetplane's API contract: the bodies `/api/v1` takes and returns.
//!
//! The server (axum) serializes these and documents them in its OpenAPI document; the browser
//! UI (wasm) deserializes the same types, so a field cannot change on one side only. Each
//! type's schema states what the server enforces on it (lengths, patterns, formats, enums,
//! ranges); rules that no JSON Schema can say (a subnet inside its VPC, credentials a cloud
//! accepts) come back as `422 validation_failed` with one error per field.
//!
//! Request bodies mark their fields `#[serde(default)]` where the server reports a missing
//! field as a field error, so that one answer lists every problem at once. The schema still
//! says such fields are required.

mod account;
mod catalog;
mod cloud;
mod clusters;
mod deployments;
mod live;
mod orgs;
mod runs;

pub use account::*;
pub use catalog::*;
pub use cloud::*;
pub use clusters::*;
pub use deployments::*;
/// Error bodies: the workspace's one problem+json shape.
pub use fleetplane_common::problem::{FieldError, Problem};
pub use live::*;
pub use orgs::*;
pub use runs::*;

/// Whole numbers as JSON Schema counts them: `205.0` is the integer 205, so it is read as one.
mod whole {
    use serde::{Deserialize, Deserializer, de::Error};
    use serde_json::Number;

    /// An optional whole number that fits `T`.
    pub fn option<'de, D: Deserializer<'de>, T: TryFrom<i64>>(deserializer: D) -> Result<Option<T>, D::Error> {
        let Some(number) = Option::<Number>::deserialize(deserializer)? else { return Ok(None) };
        let whole = number.as_i64().or_else(|| {
            // Exactly representable, so the conversion loses nothing.
            number.as_f64().filter(|f| f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0).map(|f| f as i64)
        });
        let whole =
            whole.ok_or_else(|| D::Error::custom(format!("invalid value: {number}, expected a whole number")))?;
        T::try_from(whole).map(Some).map_err(|_| D::Error::custom(format!("invalid value: {whole} is out of range")))
    }

    #[cfg(test)]
    mod tests {
        #[derive(serde::Deserialize)]
        struct Days {
            #[serde(default, deserialize_with = "super::option")]
            days: Option<u32>,
        }

        fn days(json: &str) -> Result<Option<u32>, serde_json::Error> {
            serde_json::from_str::<Days>(json).map(|d| d.days)
        }

        #[test]
        fn integral_numbers_are_read_whatever_their_spelling() {
            assert_eq!(days(r#"{"days": 205}"#).ok(), Some(Some(205)));
            assert_eq!(days(r#"{"days": 205.0}"#).ok(), Some(Some(205)));
            assert_eq!(days(r#"{"days": 2.05e2}"#).ok(), Some(Some(205)));
            assert_eq!(days(r#"{"days": null}"#).ok(), Some(None));
            assert_eq!(days("{}").ok(), Some(None));
            for bad in [r#"{"days": 1.5}"#, r#"{"days": -1}"#, r#"{"days": "5"}"#, r#"{"days": 1e300}"#] {
                assert!(days(bad).is_err(), "{bad}");
            }
        }
    }
}

/// Schemas of text fields that several bodies share, so that each rule is written once. The
/// fields stay `String`s; their schemas refer to these.
pub mod text {
    use utoipa::ToSchema;

    /// An email address, as the server accepts it: one `@`, a local part of up to 64
    /// printable characters, and a domain of dot-separated labels of letters, digits and inner
    /// dashes. Surrounding spaces are trimmed. The verification mail is the real test.
    #[derive(ToSchema)]
    #[schema(
        max_length = 254,
        pattern = r"^\s*[^@\s\x00-\x1f\x7f-\x9f]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+\s*$"
    )]
    pub struct EmailAddress(pub String);

    /// A user or organization name: a letter, then 2–29 of letters, digits, `_` and `-`.
    /// Lower-cased, so unique regardless of case; surrounding spaces are trimmed.
    #[derive(ToSchema)]
    #[schema(pattern = r"^\s*[A-Za-z][A-Za-z0-9_-]{2,29}\s*$")]
    pub struct Handle(pub String);

    /// A new password: 8–256 characters, not only spaces.
    #[derive(ToSchema)]
    #[schema(min_length = 8, max_length = 256, pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$")]
    pub struct NewPassword(pub String);

    /// A secret (a key, a client secret): 1–1024 characters, no spaces.
    #[derive(ToSchema)]
    #[schema(pattern = r"^[^\s\u0000]{1,1024}$")]
    pub struct Secret(pub String);

    /// A UUID written as text, like `6d5a2f7e-0a8e-4b3c-9f1d-2c4b6a8e0f13`; surrounding spaces
    /// are trimmed.
    #[derive(ToSchema)]
    #[schema(
        pattern = r"^\s*([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}|[0-9A-Fa-f]{32})\s*$"
    )]
    pub struct UuidText(pub String);

    /// A cloud account's name: 1–64 characters, no control characters, not only spaces.
    #[derive(ToSchema)]
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub struct AccountName(pub String);
}
