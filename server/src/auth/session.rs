//! Browser sessions on the wire: a signed JWT in an HttpOnly cookie, plus a CSRF token for
//! unsafe methods.
//!
//! The JWT names its stored session (`sid`, see [`crate::sessions`]), which can be revoked on
//! its own, and carries the user's session version; bumping the version in the database
//! (password change, "sign out everywhere") makes every older session fail at once. The CSRF token is
//! inside the signed JWT and also in a script-readable cookie; a cookie-authenticated unsafe
//! request must echo it in `X-CSRF-Token` (double submit, bound to the session so a planted
//! cookie cannot pass).

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::entity::users;

pub const SESSION_COOKIE: &str = "fp_session";
/// Left by a successful sign-in: this browser has signed in to this account before.
pub const DEVICE_COOKIE: &str = "fp_device";
/// How long a browser is remembered.
const DEVICE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
pub const CSRF_COOKIE: &str = "fp_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

const ISSUER: &str = "fleetplane";
const AUDIENCE: &str = "fleetplane-session";
const DEVICE_AUDIENCE: &str = "fleetplane-device";

/// What a device cookie says: this browser signed in to account `sub` while its session
/// version was `sv` (a password change or "sign out everywhere" forgets every browser).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeviceClaims {
    sub: Uuid,
    sv: i64,
    exp: i64,
    aud: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    /// The stored session this token belongs to.
    pub sid: Uuid,
    /// The user's session version when this session was issued.
    pub sv: i64,
    pub csrf: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    Expired,
    Invalid,
}

/// Signs and checks session tokens, and writes the cookies that carry them.
pub struct Sessions {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    secure: bool,
}

/// A freshly issued session: the cookies to set, and the CSRF token the client must echo.
pub struct IssuedSession {
    pub token: String,
    pub csrf: String,
    pub expires_at: i64,
}

impl Sessions {
    pub fn new(secret: &[u8], ttl: Duration, secure: bool) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
            secure,
        }
    }

    /// How long a session lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token for stored session `sid` of `user`, valid until `expires_at` (a Unix time).
    pub fn issue(&self, user: &users::Model, sid: Uuid, expires_at: i64) -> anyhow::Result<IssuedSession> {
        let now = chrono::Utc::now().timestamp();
        let exp = expires_at;
        let claims = Claims {
            sub: user.id,
            sid,
            sv: user.session_version,
            csrf: URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>()),
            iat: now,
            exp,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok(IssuedSession { token, csrf: claims.csrf, expires_at: exp })
    }

    pub fn decode(&self, token: &str) -> Result<Claims, SessionError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map(|data| data.claims).map_err(|e| {
            match e.kind() {
                ErrorKind::ExpiredSignature => SessionError::Expired,
                _ => SessionError::Invalid,
            }
        })
    }

    /// `Set-Cookie` values that install `session` in the browser.
    pub fn cookies(&self, session: &IssuedSession) -> [HeaderValue; 2] {
        let left = session.expires_at - chrono::Utc::now().timestamp();
        let max_age = u64::try_from(left).unwrap_or(0);
        [
            self.cookie(SESSION_COOKIE, &session.token, max_age, true),
            self.cookie(CSRF_COOKIE, &session.csrf, max_age, false),
        ]
    }

    /// The `Set-Cookie` value that remembers this browser for `user`.
    pub fn device_cookie(&self, user: &users::Model) -> anyhow::Result<HeaderValue> {
        let ttl = DEVICE_TTL.as_secs();
        let claims = DeviceClaims {
            sub: user.id,
            sv: user.session_version,
            exp: chrono::Utc::now().timestamp() + i64::try_from(ttl).unwrap_or(i64::MAX / 2),
            aud: DEVICE_AUDIENCE.to_owned(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok(self.cookie(DEVICE_COOKIE, &token, ttl, true))
    }

    /// Whether the request's device cookie says this browser signed in to `user` before (and
    /// since its last password change or "sign out everywhere").
    pub fn known_device(&self, headers: &HeaderMap, user: &users::Model) -> bool {
        let Some(token) = cookie(headers, DEVICE_COOKIE) else { return false };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[DEVICE_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        jsonwebtoken::decode::<DeviceClaims>(token, &self.decoding, &validation)
            .is_ok_and(|data| data.claims.sub == user.id && data.claims.sv == user.session_version)
    }

    /// `Set-Cookie` values that remove the session from the browser.
    pub fn clear_cookies(&self) -> [HeaderValue; 2] {
        [self.cookie(SESSION_COOKIE, "", 0, true), self.cookie(CSRF_COOKIE, "", 0, false)]
    }

    fn cookie(&self, name: &str, value: &str, max_age: u64, http_only: bool) -> HeaderValue {
        let mut cookie = format!("{name}={value}; Path=/; SameSite=Lax; Max-Age={max_age}");
        if http_only {
            cookie.push_str("; HttpOnly");
        }
        if self.secure {
            cookie.push_str("; Secure");
        }
        HeaderValue::try_from(cookie).expect("cookie names and base64url values are valid header text")
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// Whether the request echoes the session's CSRF token in `X-CSRF-Token` (constant time).
pub fn csrf_matches(headers: &HeaderMap, claims: &Claims) -> bool {
    headers.get(CSRF_HEADER).is_some_and(|sent| bool::from(sent.as_bytes().ct_eq(claims.csrf.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> users::Model {
        let now = chrono::Utc::now();
        users::Model {
            id: Uuid::now_v7(),
            email: "a@example.com".into(),
            email_normalized: "a@example.com".into(),
            username: "alice".into(),
            password_hash: None,
            email_verified_at: Some(now),
            session_version: 3,
            created_at: now,
            updated_at: now,
        }
    }

    fn in_an_hour() -> i64 {
        chrono::Utc::now().timestamp() + 3600
    }

    #[test]
    fn issued_sessions_decode_with_the_same_key_only() {
        let sessions = Sessions::new(&[7; 32], Duration::from_secs(3600), false);
        let sid = Uuid::now_v7();
        let issued = sessions.issue(&user(), sid, in_an_hour()).expect("issue");
        let claims = sessions.decode(&issued.token).expect("decode");
        assert_eq!((claims.sv, claims.sid), (3, sid));
        assert_eq!(claims.csrf, issued.csrf);

        let other = Sessions::new(&[8; 32], Duration::from_secs(3600), false);
        assert_eq!(other.decode(&issued.token).unwrap_err(), SessionError::Invalid);

        let mut tampered = issued.token.clone();
        tampered.insert(tampered.len() / 2, 'x');
        assert_eq!(sessions.decode(&tampered).unwrap_err(), SessionError::Invalid);
    }

    #[test]
    fn cookies_are_http_only_lax_and_secure_on_https() {
        let sessions = Sessions::new(&[7; 32], Duration::from_secs(60), true);
        let issued = sessions.issue(&user(), Uuid::now_v7(), in_an_hour()).expect("issue");
        let [session, csrf] = sessions.cookies(&issued);
        let session = session.to_str().expect("ascii");
        assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax") && session.contains("Secure"));
        assert!(!csrf.to_str().expect("ascii").contains("HttpOnly"), "the UI must read the CSRF cookie");
    }

    #[test]
    fn reads_cookies_among_several() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; fp_session=tok.en.x; fp_csrf="));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("tok.en.x"));
        assert_eq!(cookie(&headers, CSRF_COOKIE), None);
        assert_eq!(cookie(&headers, "missing"), None);
    }
}
