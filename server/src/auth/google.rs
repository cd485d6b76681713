//! Google sign-in: OpenID Connect's authorization-code flow with PKCE (S256), `state` and
//! `nonce`, and the id_token verified against the issuer's published keys.
//!
//! The issuer is configuration (Google's by default), and everything else is discovered from its
//! `/.well-known/openid-configuration`, so tests run the same code against a local provider.
//! What the callback must match (state, nonce, PKCE verifier, where to go next) travels in a
//! short-lived, signed, HttpOnly cookie: the flow is bound to the browser that started it and
//! the server keeps nothing per flow. Account rules (sign in, link, create) live in
//! [`crate::accounts`]; this module only answers "who did the provider say this is".

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::http::HeaderValue;
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header,
    errors::ErrorKind,
    jwk::{JwkSet, KeyAlgorithm, PublicKeyUse},
};
use oauth2::{
    AsyncHttpClient, AuthUrl, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, ExtraTokenFields, HttpRequest, HttpResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RequestTokenError, Scope, StandardRevocableToken, StandardTokenResponse, TokenUrl,
    basic::{
        BasicErrorResponse, BasicErrorResponseType, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
        BasicTokenType,
    },
};
use serde::{Deserialize, Deserializer, Serialize, de::IgnoredAny};
use subtle::ConstantTimeEq;
use tokio::sync::{Mutex, RwLock};
use url::Url;
use uuid::Uuid;

use crate::config::{GOOGLE_ISSUER, GoogleSettings};

/// The cookie that carries a sign-in in progress from `start` to `callback`.
pub const FLOW_COOKIE: &str = "fp_google_flow";
/// The cookie is only sent to the Google routes.
const FLOW_COOKIE_PATH: &str = "/api/v1/auth/google";
/// How long a person has to finish signing in at the provider.
const FLOW_TTL: Duration = Duration::from_secs(10 * 60);
const FLOW_AUDIENCE: &str = "fleetplane-google-flow";
pub const CALLBACK_PATH: &str = "api/v1/auth/google/callback";
/// Signing algorithms accepted for id_tokens (Google signs with RS256).
const ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::PS256];
/// Discovery documents are re-read this often.
const DISCOVERY_TTL: Duration = Duration::from_secs(24 * 3600);
/// Key sets are kept for the `max-age` their response names, within these bounds.
const KEYS_TTL_DEFAULT: Duration = Duration::from_secs(3600);
const KEYS_TTL_MIN: Duration = Duration::from_secs(60);
const KEYS_TTL_MAX: Duration = Duration::from_secs(24 * 3600);
/// A `login_hint` longer than this is not passed on.
const LOGIN_HINT_MAX: usize = 320;

/// Why a Google sign-in did not succeed. Each has a stable code the sign-in page explains.
#[derive(Debug, thiserror::Error)]
pub enum GoogleError {
    #[error("the identity provider could not be reached or answered wrongly: {0}")]
    Unavailable(String),
    #[error("the sign-in's state is missing, expired or does not match this browser")]
    StateMismatch,
    #[error("the person declined at the provider")]
    Denied,
    #[error("the provider reported an error: {0}")]
    Provider(String),
    #[error("the provider refused the authorization code (already used or expired)")]
    CodeRejected,
    #[error("the id_token was not accepted: {0}")]
    TokenInvalid(#[from] IdTokenError),
    #[error("the provider has not verified the account's email address")]
    EmailUnverified,
}

impl GoogleError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "google_unavailable",
            Self::StateMismatch => "google_state_invalid",
            Self::Denied => "google_access_denied",
            Self::Provider(_) => "google_error",
            Self::CodeRejected => "google_code_rejected",
            Self::TokenInvalid(_) => "google_token_invalid",
            Self::EmailUnverified => "google_email_unverified",
        }
    }
}

/// Why an id_token was refused.
#[derive(Debug, thiserror::Error)]
pub enum IdTokenError {
    #[error("malformed or not verifiable: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    #[error("signed with {0:?}, which is not accepted")]
    Algorithm(Algorithm),
    #[error("no key id in its header")]
    NoKeyId,
    #[error("signed with key `{0}`, which the issuer does not publish")]
    UnknownKey(String),
    #[error("the issuer's key `{0}` is not meant for this algorithm or for signatures")]
    KeyMismatch(String),
    #[error("its signature does not verify")]
    Signature,
    #[error("it has expired")]
    Expired,
    #[error("it was issued by someone else")]
    Issuer,
    #[error("it was issued for another client")]
    Audience,
    #[error("its nonce does not match this sign-in")]
    Nonce,
    #[error("a required claim is missing: {0}")]
    MissingClaim(String),
    #[error("the callback names another issuer")]
    CallbackIssuer,
}

/// What the provider says about the person, once the id_token is verified.
#[derive(Clone, Debug, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    /// The account's stable id at the provider: identities are matched on it, never on email.
    pub sub: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "bool_or_string")]
    pub email_verified: bool,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    aud: Audience,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    // Tried in order: a list first, since anything is an `IgnoredAny`.
    Many(Vec<IgnoredAny>),
    One(IgnoredAny),
}

/// Google sends `email_verified` as a JSON boolean; some providers send `"true"`.
fn bool_or_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
    }
    Ok(match Flag::deserialize(deserializer)? {
        Flag::Bool(flag) => flag,
        Flag::Text(text) => text == "true",
    })
}

/// What an id_token must say to be accepted here.
pub struct Expected<'a> {
    pub issuers: &'a [&'a str],
    pub client_id: &'a str,
    pub nonce: &'a str,
}

/// Checks an id_token's signature against `keys` and its claims against `expected`. A key id
/// missing from `keys` is [`IdTokenError::UnknownKey`], so that the caller can refetch the keys.
pub fn verify_id_token(token: &str, keys: &JwkSet, expected: &Expected<'_>) -> Result<IdClaims, IdTokenError> {
    let header = decode_header(token)?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(IdTokenError::Algorithm(header.alg));
    }
    let kid = header.kid.ok_or(IdTokenError::NoKeyId)?;
    let jwk = keys.find(&kid).ok_or_else(|| IdTokenError::UnknownKey(kid.clone()))?;
    let wrong_algorithm = jwk.common.key_algorithm.is_some_and(|alg| key_algorithm(header.alg) != Some(alg));
    let wrong_use = jwk.common.public_key_use.as_ref().is_some_and(|usage| *usage != PublicKeyUse::Signature);
    if wrong_algorithm || wrong_use {
        return Err(IdTokenError::KeyMismatch(kid));
    }
    let key = DecodingKey::from_jwk(jwk)?;

    let mut validation = Validation::new(header.alg);
    validation.set_issuer(expected.issuers);
    validation.set_audience(&[expected.client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 60;
    let claims = decode::<IdClaims>(token, &key, &validation)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => IdTokenError::Signature,
            ErrorKind::ExpiredSignature => IdTokenError::Expired,
            ErrorKind::InvalidIssuer => IdTokenError::Issuer,
            ErrorKind::InvalidAudience => IdTokenError::Audience,
            ErrorKind::MissingRequiredClaim(claim) => IdTokenError::MissingClaim(claim.clone()),
            _ => IdTokenError::Jwt(e),
        })?
        .claims;
    // With several audiences, the token must also have been issued to us (OpenID Core 3.1.3.7).
    if let Audience::Many(audiences) = &claims.aud
        && audiences.len() > 1
        && claims.azp.as_deref() != Some(expected.client_id)
    {
        return Err(IdTokenError::Audience);
    }
    let nonce_matches =
        claims.nonce.as_deref().is_some_and(|nonce| bool::from(nonce.as_bytes().ct_eq(expected.nonce.as_bytes())));
    if !nonce_matches {
        return Err(IdTokenError::Nonce);
    }
    Ok(claims)
}

fn key_algorithm(algorithm: Algorithm) -> Option<KeyAlgorithm> {
    Some(match algorithm {
        Algorithm::RS256 => KeyAlgorithm::RS256,
        Algorithm::ES256 => KeyAlgorithm::ES256,
        Algorithm::PS256 => KeyAlgorithm::PS256,
        _ => return None,
    })
}

/// A sign-in in progress, as the flow cookie carries it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Flow {
    state: String,
    nonce: String,
    verifier: String,
    /// Where to go after signing in: a path on this server.
    pub next: String,
    /// Set when a signed-in user is linking Google to their account.
    pub link: Option<Uuid>,
    exp: i64,
    aud: String,
}

/// What `start` needs to know about the request.
#[derive(Debug, Default)]
pub struct StartRequest {
    pub login_hint: Option<String>,
    pub next: String,
    pub link: Option<Uuid>,
}

/// The query string the provider sends the browser back with.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// RFC 9207: the issuer, when the provider says it.
    pub iss: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
    jwks_uri: Url,
}

struct Endpoints {
    authorization: Url,
    token: Url,
    jwks: Url,
    fetched: Instant,
}

struct Keys {
    set: JwkSet,
    expires: Instant,
    /// Bumped by every fetch, so that concurrent callbacks missing the same key fetch once.
    generation: u64,
}

/// The `id_token` field of the token response.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct IdTokenField {
    id_token: String,
}

impl ExtraTokenFields for IdTokenField {}

type OidcClient = Client<
    BasicErrorResponse,
    StandardTokenResponse<IdTokenField, BasicTokenType>,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// Google sign-in for this server: present when a client id is configured.
pub struct GoogleSignIn {
    settings: GoogleSettings,
    redirect_uri: RedirectUrl,
    http: reqwest::Client,
    endpoints: RwLock<Option<Arc<Endpoints>>>,
    keys: RwLock<Option<Arc<Keys>>>,
    /// Held while fetching keys, so one fetch serves every caller that was waiting for it.
    fetching: Mutex<()>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    secure: bool,
}

impl GoogleSignIn {
    /// `secret` signs the flow cookie (the session secret; the audience keeps the two apart).
    pub fn new(
        settings: GoogleSettings,
        public_url: &Url,
        secret: &[u8],
        secure: bool,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let redirect_uri = RedirectUrl::new(public_url.join(CALLBACK_PATH)?.to_string())?;
        // The token endpoint must answer itself: following redirects would hand the code and the
        // client secret to wherever it points.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .user_agent(concat!("fleetplane/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_audience(&[FLOW_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud"]);
        Ok(Self {
            settings,
            redirect_uri,
            http,
            endpoints: RwLock::new(None),
            keys: RwLock::new(None),
            fetching: Mutex::new(()),
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            secure,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// The provider's authorization URL for a new sign-in, and the flow cookie to set.
    pub async fn start(&self, request: StartRequest) -> Result<(Url, HeaderValue), GoogleError> {
        let endpoints = self.endpoints().await?;
        let client = self.client(&endpoints)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = CsrfToken::new_random();
        let mut authorize = client
            .authorize_url(CsrfToken::new_random)
            .add_scope(Scope::new("openid".into()))
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .add_extra_param("nonce", nonce.secret().clone())
            // Lets a person with several Google accounts pick one, instead of being signed in as
            // whichever is active.
            .add_extra_param("prompt", "select_account");
        if let Some(hint) = request.login_hint.filter(|hint| !hint.is_empty() && hint.len() <= LOGIN_HINT_MAX) {
            authorize = authorize.add_extra_param("login_hint", hint);
        }
        let (url, state) = authorize.url();
        let flow = Flow {
            state: state.into_secret(),
            nonce: nonce.into_secret(),
            verifier: verifier.into_secret(),
            next: request.next,
            link: request.link,
            exp: chrono::Utc::now().timestamp() + FLOW_TTL.as_secs() as i64,
            aud: FLOW_AUDIENCE.to_owned(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &flow, &self.encoding)
            .map_err(|e| GoogleError::Unavailable(format!("signing the flow cookie: {e}")))?;
        Ok((url, self.cookie(&token, FLOW_TTL.as_secs())))
    }

    /// The `Set-Cookie` value that removes the flow cookie.
    pub fn clear_cookie(&self) -> HeaderValue {
        self.cookie("", 0)
    }

    fn cookie(&self, value: &str, max_age: u64) -> HeaderValue {
        // Lax, not Strict: the provider sends the browser back with a cross-site navigation.
        let secure = if self.secure { "; Secure" } else { "" };
        let cookie = format!(
            "{FLOW_COOKIE}={value}; Path={FLOW_COOKIE_PATH}; SameSite=Lax; HttpOnly; Max-Age={max_age}{secure}"
        );
        HeaderValue::try_from(cookie).expect("a JWT is valid header text")
    }

    /// The flow the cookie carries, if it is ours and not expired.
    pub fn flow(&self, cookie: Option<&str>) -> Result<Flow, GoogleError> {
        let cookie = cookie.ok_or(GoogleError::StateMismatch)?;
        decode::<Flow>(cookie, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| GoogleError::StateMismatch)
    }

    /// Finishes a sign-in: checks the callback against its flow, exchanges the code (with the
    /// PKCE verifier) and verifies the id_token. Returns the verified claims.
    pub async fn finish(&self, flow: &Flow, params: CallbackParams) -> Result<IdClaims, GoogleError> {
        let state_matches =
            params.state.as_deref().is_some_and(|state| bool::from(state.as_bytes().ct_eq(flow.state.as_bytes())));
        if !state_matches {
            return Err(GoogleError::StateMismatch);
        }
        if let Some(error) = params.error {
            return Err(match error.as_str() {
                "access_denied" => GoogleError::Denied,
                _ => GoogleError::Provider(match params.error_description {
                    Some(description) => format!("{error}: {description}"),
                    None => error,
                }),
            });
        }
        if params.iss.as_deref().is_some_and(|iss| iss != self.settings.issuer) {
            return Err(IdTokenError::CallbackIssuer.into());
        }
        let code = params.code.filter(|code| !code.is_empty()).ok_or_else(|| {
            GoogleError::Provider("the provider sent the browser back without an authorization code".into())
        })?;

        let endpoints = self.endpoints().await?;
        let client = self.client(&endpoints)?;
        let http = OauthHttp(&self.http);
        let response = client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.clone()))
            .request_async(&http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(response)
                    if *response.error() == BasicErrorResponseType::InvalidGrant =>
                {
                    GoogleError::CodeRejected
                }
                RequestTokenError::ServerResponse(response) => GoogleError::Provider(response.to_string()),
                RequestTokenError::Request(e) => GoogleError::Unavailable(format!("token endpoint: {e}")),
                RequestTokenError::Parse(e, _) => GoogleError::Unavailable(format!("token endpoint answered: {e}")),
                RequestTokenError::Other(e) => GoogleError::Unavailable(format!("token endpoint: {e}")),
            })?;
        let claims = self.verify(&endpoints, &response.extra_fields().id_token, &flow.nonce).await?;
        if !claims.email_verified || claims.email.as_deref().is_none_or(str::is_empty) {
            return Err(GoogleError::EmailUnverified);
        }
        Ok(claims)
    }

    /// Verifies against the cached keys; a key id they lack makes one refetch.
    async fn verify(&self, endpoints: &Endpoints, token: &str, nonce: &str) -> Result<IdClaims, GoogleError> {
        // Google's id_tokens may name the issuer without the scheme.
        let issuers: &[&str] = if self.settings.issuer == GOOGLE_ISSUER {
            &[GOOGLE_ISSUER, "accounts.google.com"]
        } else {
            &[self.settings.issuer.as_str()]
        };
        let expected = Expected { issuers, client_id: &self.settings.client_id, nonce };
        let keys = self.keys(endpoints, None).await?;
        match verify_id_token(token, &keys.set, &expected) {
            Err(IdTokenError::UnknownKey(kid)) => {
                tracing::info!(kid, "id_token signed with a key not in the cached set; fetching the keys again");
                let keys = self.keys(endpoints, Some(keys.generation)).await?;
                Ok(verify_id_token(token, &keys.set, &expected)?)
            }
            result => Ok(result?),
        }
    }

    /// The cached key set, fetched when missing or expired, or when it is still the generation
    /// `stale` (a key was missing from it).
    async fn keys(&self, endpoints: &Endpoints, stale: Option<u64>) -> Result<Arc<Keys>, GoogleError> {
        let usable = |keys: &Option<Arc<Keys>>| {
            keys.as_ref().filter(|k| k.expires > Instant::now() && Some(k.generation) != stale).cloned()
        };
        if let Some(keys) = usable(&*self.keys.read().await) {
            return Ok(keys);
        }
        let _fetching = self.fetching.lock().await;
        // Someone else may have fetched while this caller waited.
        let generation = {
            let current = self.keys.read().await;
            if let Some(keys) = usable(&current) {
                return Ok(keys);
            }
            current.as_ref().map_or(0, |k| k.generation)
        };
        let response = self
            .http
            .get(endpoints.jwks.clone())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| GoogleError::Unavailable(format!("fetching the signing keys: {e}")))?;
        let ttl = max_age(response.headers().get(reqwest::header::CACHE_CONTROL)).unwrap_or(KEYS_TTL_DEFAULT);
        let set: JwkSet =
            response.json().await.map_err(|e| GoogleError::Unavailable(format!("reading the signing keys: {e}")))?;
        let keys = Arc::new(Keys {
            set,
            expires: Instant::now() + ttl.clamp(KEYS_TTL_MIN, KEYS_TTL_MAX),
            generation: generation + 1,
        });
        *self.keys.write().await = Some(keys.clone());
        Ok(keys)
    }

    /// The provider's endpoints, from its discovery document (cached for a day).
    async fn endpoints(&self) -> Result<Arc<Endpoints>, GoogleError> {
        if let Some(endpoints) =
            self.endpoints.read().await.as_ref().filter(|e| e.fetched.elapsed() < DISCOVERY_TTL).cloned()
        {
            return Ok(endpoints);
        }
        let url = format!("{}/.well-known/openid-configuration", self.settings.issuer);
        let unavailable = |e: reqwest::Error| GoogleError::Unavailable(format!("{url}: {e}"));
        let discovery: Discovery = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)?;
        // OpenID Discovery 4.3: the document must name the issuer it was fetched from.
        if discovery.issuer.trim_end_matches('/') != self.settings.issuer {
            return Err(GoogleError::Unavailable(format!(
                "{url} names the issuer `{}`, not `{}`",
                discovery.issuer, self.settings.issuer
            )));
        }
        let endpoints = Arc::new(Endpoints {
            authorization: discovery.authorization_endpoint,
            token: discovery.token_endpoint,
            jwks: discovery.jwks_uri,
            fetched: Instant::now(),
        });
        *self.endpoints.write().await = Some(endpoints.clone());
        Ok(endpoints)
    }

    fn client(&self, endpoints: &Endpoints) -> Result<OidcClient, GoogleError> {
        let invalid =
            |e: url::ParseError| GoogleError::Unavailable(format!("discovery named an invalid endpoint: {e}"));
        Ok(Client::new(ClientId::new(self.settings.client_id.clone()))
            .set_client_secret(ClientSecret::new(self.settings.client_secret.expose().to_owned()))
            .set_auth_uri(AuthUrl::new(endpoints.authorization.to_string()).map_err(invalid)?)
            .set_token_uri(TokenUrl::new(endpoints.token.to_string()).map_err(invalid)?)
            .set_redirect_uri(self.redirect_uri.clone()))
    }
}

/// `max-age` of a `Cache-Control` header.
fn max_age(header: Option<&HeaderValue>) -> Option<Duration> {
    header?
        .to_str()
        .ok()?
        .split(',')
        .find_map(|directive| directive.trim().strip_prefix("max-age="))
        .and_then(|seconds| seconds.trim().parse().ok())
        .map(Duration::from_secs)
}

#[derive(Debug, thiserror::Error)]
enum TransportError {
    #[error(transparent)]
    Reqwest(#[from] reqwest::Error),
    #[error(transparent)]
    Http(#[from] oauth2::http::Error),
}

/// oauth2's requests, sent with our reqwest (oauth2's own reqwest support is an older reqwest
/// with a second TLS stack).
struct OauthHttp<'a>(&'a reqwest::Client);

impl<'c> AsyncHttpClient<'c> for OauthHttp<'_> {
    type Error = TransportError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, TransportError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = self.0.execute(request.try_into()?).await?;
            let mut builder = oauth2::http::Response::builder().status(response.status()).version(response.version());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            Ok(builder.body(response.bytes().await?.to_vec())?)
        })
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, jwk::Jwk};
    use serde_json::{Value, json};

    use super::*;

    struct Signer {
        key: EncodingKey,
        jwk: Jwk,
    }

    fn signer(kid: &str) -> Signer {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key pair");
        let key = EncodingKey::from_ec_der(&pair.serialize_der());
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).expect("jwk");
        jwk.common.key_id = Some(kid.to_owned());
        Signer { key, jwk }
    }

    fn claims() -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "iss": "https://issuer.test", "sub": "1234", "aud": "client-1", "exp": now + 600, "iat": now,
            "nonce": "n-1", "email": "ada@example.com", "email_verified": true,
        })
    }

    fn sign(signer: &Signer, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &signer.key).expect("sign")
    }

    const EXPECTED: Expected<'static> =
        Expected { issuers: &["https://issuer.test"], client_id: "client-1", nonce: "n-1" };

    fn keys(signers: &[&Signer]) -> JwkSet {
        JwkSet { keys: signers.iter().map(|s| s.jwk.clone()).collect() }
    }

    #[test]
    fn accepts_a_token_signed_by_a_published_key() {
        let signer = signer("k1");
        let claims = verify_id_token(&sign(&signer, "k1", &claims()), &keys(&[&signer]), &EXPECTED).expect("valid");
        assert_eq!(claims.sub, "1234");
        assert!(claims.email_verified);
        assert_eq!(claims.email.as_deref(), Some("ada@example.com"));
    }

    #[test]
    fn refuses_every_claim_that_does_not_match() {
        let signer = signer("k1");
        let keys = keys(&[&signer]);
        let now = chrono::Utc::now().timestamp();
        type Check = fn(&IdTokenError) -> bool;
        let cases: [(&str, Value, Check); 8] = [
            ("issuer", json!({"iss": "https://evil.test"}), |e| matches!(e, IdTokenError::Issuer)),
            ("audience", json!({"aud": "client-2"}), |e| matches!(e, IdTokenError::Audience)),
            ("expired", json!({"exp": now - 3600}), |e| matches!(e, IdTokenError::Expired)),
            ("nonce", json!({"nonce": "n-2"}), |e| matches!(e, IdTokenError::Nonce)),
            ("no nonce", json!({"nonce": null}), |e| matches!(e, IdTokenError::Nonce)),
            ("no issuer", json!({"iss": null}), |e| !matches!(e, IdTokenError::Nonce)),
            ("no audience", json!({"aud": null}), |e| !matches!(e, IdTokenError::Nonce)),
            ("another party's azp", json!({"aud": ["client-1", "client-2"], "azp": "client-2"}), |e| {
                matches!(e, IdTokenError::Audience)
            }),
        ];
        for (name, change, expected) in cases {
            let mut token_claims = claims();
            for (key, value) in change.as_object().expect("object") {
                if value.is_null() {
                    token_claims.as_object_mut().expect("object").remove(key);
                } else {
                    token_claims[key] = value.clone();
                }
            }
            let error = verify_id_token(&sign(&signer, "k1", &token_claims), &keys, &EXPECTED).expect_err(name);
            assert!(expected(&error), "{name}: {error:?}");
        }
    }

    #[test]
    fn refuses_unknown_keys_wrong_signatures_and_unsigned_tokens() {
        let published = signer("k1");
        let rogue = signer("rogue");
        let keys = keys(&[&published]);
        let unknown = verify_id_token(&sign(&rogue, "rogue", &claims()), &keys, &EXPECTED).expect_err("unknown");
        assert!(matches!(unknown, IdTokenError::UnknownKey(ref kid) if kid == "rogue"), "{unknown:?}");
        let forged = verify_id_token(&sign(&rogue, "k1", &claims()), &keys, &EXPECTED).expect_err("forged");
        assert!(matches!(forged, IdTokenError::Signature), "{forged:?}");

        use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k1"}"#),
            URL_SAFE_NO_PAD.encode(claims().to_string())
        );
        assert!(verify_id_token(&unsigned, &keys, &EXPECTED).is_err());
        let hmac = jsonwebtoken::encode(
            &Header { kid: Some("k1".into()), ..Header::new(Algorithm::HS256) },
            &claims(),
            &EncodingKey::from_secret(b"guessable"),
        )
        .expect("sign");
        assert!(matches!(verify_id_token(&hmac, &keys, &EXPECTED), Err(IdTokenError::Algorithm(Algorithm::HS256))));
    }

    #[test]
    fn email_verified_may_be_a_string() {
        let signer = signer("k1");
        let mut token_claims = claims();
        token_claims["email_verified"] = json!("false");
        let claims = verify_id_token(&sign(&signer, "k1", &token_claims), &keys(&[&signer]), &EXPECTED).expect("valid");
        assert!(!claims.email_verified);
    }

    #[test]
    fn flow_cookies_are_signed_expiring_and_path_scoped() {
        let settings = GoogleSettings {
            client_id: "client-1".into(),
            client_secret: crate::config::Secret::new("s"),
            issuer: "https://issuer.test".into(),
        };
        let public = Url::parse("https://fleet.example.com/").expect("url");
        let google = GoogleSignIn::new(settings.clone(), &public, &[7; 32], true, Duration::from_secs(5)).expect("new");
        let flow = Flow {
            state: "s".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            next: "/clusters".into(),
            link: None,
            exp: chrono::Utc::now().timestamp() + 60,
            aud: FLOW_AUDIENCE.into(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &flow, &google.encoding).expect("sign");
        assert_eq!(google.flow(Some(&token)).expect("ours").next, "/clusters");

        let other = GoogleSignIn::new(settings, &public, &[8; 32], true, Duration::from_secs(5)).expect("new");
        assert!(matches!(other.flow(Some(&token)), Err(GoogleError::StateMismatch)));
        let expired = Flow { exp: chrono::Utc::now().timestamp() - 1, ..flow };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &expired, &google.encoding).expect("sign");
        assert!(matches!(google.flow(Some(&token)), Err(GoogleError::StateMismatch)));
        assert!(matches!(google.flow(None), Err(GoogleError::StateMismatch)));

        let cookie = google.cookie("x", 600);
        let cookie = cookie.to_str().expect("ascii");
        for part in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/api/v1/auth/google", "Max-Age=600"] {
            assert!(cookie.contains(part), "{part} missing from {cookie}");
        }
        assert_eq!(google.redirect_uri.as_str(), "https://fleet.example.com/api/v1/auth/google/callback");
    }

    #[test]
    fn reads_max_age() {
        let header = HeaderValue::from_static("public, max-age=19845, must-revalidate, no-transform");
        assert_eq!(max_age(Some(&header)), Some(Duration::from_secs(19845)));
        assert_eq!(max_age(Some(&HeaderValue::from_static("no-store"))), None);
    }
}
