//! Sign-in with other identity providers over OpenID Connect (feature `oidc`): a provider
//! client and the two steps of a sign-in, usable from any axum app.
//!
//! * [`OidcProvider::discover`] reads the provider's discovery document (its `issuer`
//!   must be the configured one exactly) and its keys, once; an ID token signed with a
//!   key id it does not know makes it fetch the keys again, once. Its HTTP client follows
//!   no redirects.
//! * [`OidcProvider::begin`] answers the provider's authorization URL (PKCE S256, `state`,
//!   `nonce`) and the flow's state sealed for a short-lived cookie bound to the browser:
//!   nothing is kept on the server until the provider answers.
//! * [`OidcProvider::finish`] checks the callback against that cookie (the provider it
//!   was started for, `state`, the `iss` response parameter of RFC 9207 against mix-up,
//!   at most [`FLOW_LIFETIME`] old), redeems the code once, and checks the ID token
//!   (signature, issuer, audience, expiry, nonce): the answer is a
//!   [`VerifiedIdentity`], an issuer and a subject. What to do with it (a user, a link)
//!   is the application's: hand the user it resolves to the gate with
//!   [`Proof::delegated`](crate::auth::Proof).
//!
//! [`github`] is GitHub, which speaks OAuth 2 without ID tokens, through the same flow;
//! [`IdentityProvider`] is either. [`identities`] keeps who is linked to whom.

mod flow;
pub mod github;
pub mod identities;

use flow::{Flow, FlowSeal};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClaimName, CoreClaimType,
    CoreClientAuthMethod, CoreErrorResponseType, CoreGenderClaim, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreResponseMode,
    CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse, CoreSubjectIdentifierType,
    CoreTokenIntrospectionResponse,
};
use openidconnect::{
    reqwest, AdditionalProviderMetadata, AuthorizationCode, ClaimsVerificationError, ClientId,
    ClientSecret, CsrfToken, DiscoveryError, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IssuerUrl, JsonWebKeySet, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    ProviderMetadata, RedirectUrl, Scope, SignatureVerificationError, StandardErrorResponse,
    TokenResponse,
};
use serde::{Deserialize, Serialize};
use std::sync::RwLock;
use std::time::Duration;

/// How long a sign-in may take between [`OidcProvider::begin`] and
/// [`OidcProvider::finish`]: the flow cookie's lifetime.
pub const FLOW_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// How long the provider may take to answer one request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the discovery document says beyond the core fields: whether the provider sends
/// `iss` on its callback (RFC 9207).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct IssParameter {
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

impl AdditionalProviderMetadata for IssParameter {}

/// The claim beyond the standard ones latchkey reads: the tenant (`tid`) that a
/// multi-tenant issuer (Microsoft's `common`) names in each token's `iss`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct TenantClaim {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tid: Option<String>,
}

impl openidconnect::AdditionalClaims for TenantClaim {}

/// The placeholder a multi-tenant discovery document puts in its `issuer`.
const TENANT_PLACEHOLDER: &str = "{tenantid}";

/// The path segments of Microsoft's multi-tenant issuers (`…/common/v2.0`).
const MULTI_TENANT_SEGMENTS: [&str; 3] = ["common", "organizations", "consumers"];

/// For a configured issuer `…/common/v2.0` (or `organizations`, `consumers`), the
/// template its discovery document publishes: `…/{tenantid}/v2.0`.
fn tenant_template(configured: &str) -> Option<String> {
    let configured = configured.trim_end_matches('/');
    let (base, last) = configured.rsplit_once('/')?;
    let (base, segment, version) = if last == "v2.0" {
        let (base, segment) = base.rsplit_once('/')?;
        (base, segment, "/v2.0")
    } else {
        (base, last, "")
    };
    MULTI_TENANT_SEGMENTS
        .contains(&segment)
        .then(|| format!("{base}/{TENANT_PLACEHOLDER}{version}"))
}

/// The ID token's fields with [`TenantClaim`].
type IdTokenFields = openidconnect::IdTokenFields<
    TenantClaim,
    openidconnect::EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJwsSigningAlgorithm,
>;

/// The token endpoint's answer.
type Tokens =
    openidconnect::StandardTokenResponse<IdTokenFields, openidconnect::core::CoreTokenType>;

/// A provider's discovery document, with [`IssParameter`].
type Metadata = ProviderMetadata<
    IssParameter,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The client as discovery leaves it: the authorization endpoint set, the token and
/// user-info endpoints as the document says.
type Client = openidconnect::Client<
    TenantClaim,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why a provider could not be set up or a sign-in did not finish. The variants say
/// what a person can be told; the details are for the log.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached, or answered something unreadable.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider's configuration (discovery document, issuer URL, redirect URL) is
    /// not usable.
    #[error("the provider is misconfigured: {0}")]
    Misconfigured(String),
    /// No flow cookie, or one that does not open (another server key, tampered with).
    #[error("no sign-in under way in this browser")]
    NoFlow,
    /// The flow is older than [`FLOW_LIFETIME`].
    #[error("the sign-in took too long")]
    Expired,
    /// The callback does not belong to the flow of this browser: another provider's
    /// flow, another `state`, another `iss`.
    #[error("the answer does not belong to this sign-in: {0}")]
    Mismatch(&'static str),
    /// The provider said no (`error` on the callback): the user declined, say.
    #[error("the provider refused: {0}")]
    Refused(String),
    /// The code did not redeem, or the ID token failed a check.
    #[error("the provider's answer failed a check: {0}")]
    Invalid(String),
}

/// Who the provider says signed in, after every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    /// The configured name of the provider.
    pub provider: String,
    /// The issuer (`iss`).
    pub issuer: String,
    /// The subject (`sub`).
    pub subject: String,
    /// The address the provider gave, if any.
    pub email: Option<String>,
    /// Whether the provider asserts that address verified (`email_verified`; absent is
    /// `false`).
    pub email_verified: bool,
    /// The provider's preferred user name, if any.
    pub preferred_username: Option<String>,
    /// Where to go after the sign-in, as given to [`OidcProvider::begin`].
    pub next: Option<String>,
    /// The user who asked to connect this provider to their account, as given to
    /// [`OidcProvider::begin`]; `None` for a sign-in.
    pub connect_for: Option<String>,
}

/// A sign-in begun: send the browser to `authorize_url` and set the flow cookie to
/// `flow` (HttpOnly, `SameSite=Lax` so it comes back on the provider's redirect, at most
/// [`FLOW_LIFETIME`]).
#[derive(Debug)]
pub struct Begun {
    /// The provider's authorization URL with this flow's parameters.
    pub authorize_url: String,
    /// The sealed flow state for the cookie.
    pub flow: String,
}

/// What a callback carried (`GET …/callback?code=…&state=…&iss=…`).
#[derive(Debug, Default, Deserialize)]
pub struct Callback {
    /// The authorization code.
    pub code: Option<String>,
    /// The `state` sent with the authorization request.
    pub state: Option<String>,
    /// The issuer the response comes from (RFC 9207), when the provider sends it.
    pub iss: Option<String>,
    /// The provider's refusal (`access_denied`, …).
    pub error: Option<String>,
}

/// One provider: its client, discovered once.
pub struct OidcProvider {
    name: String,
    client_id: ClientId,
    client_secret: Option<ClientSecret>,
    redirect: RedirectUrl,
    metadata: RwLock<Metadata>,
    /// For a multi-tenant issuer, its template (`…/{tenantid}/v2.0`): each token's
    /// `iss` must be it with the token's own `tid`.
    tenant_template: Option<String>,
    http: reqwest::Client,
    flows: FlowSeal,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("name", &self.name)
            .field("redirect", &self.redirect.as_str())
            .finish_non_exhaustive()
    }
}

/// What [`OidcProvider::discover`] needs (its `Debug` leaves the secret out).
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderSettings {
    /// The name the provider is configured under (in paths, cookies and the
    /// identities table).
    pub name: String,
    /// The issuer URL; its discovery document must name exactly this issuer.
    pub issuer: String,
    /// The client id registered at the provider.
    pub client_id: String,
    /// The client secret, if the client has one.
    pub client_secret: Option<String>,
    /// The callback URL registered at the provider.
    pub redirect_url: String,
}

impl std::fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("redirect_url", &self.redirect_url)
            .finish()
    }
}

impl OidcProvider {
    /// Reads the provider's discovery document and keys. `secret` is the server's
    /// secret key: the flow cookie is sealed under a key derived from it.
    pub async fn discover(settings: ProviderSettings, secret: &[u8]) -> Result<Self, OidcError> {
        let http = reqwest::ClientBuilder::new()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|error| OidcError::Misconfigured(error.to_string()))?;
        let issuer = IssuerUrl::new(settings.issuer.clone())
            .map_err(|error| OidcError::Misconfigured(format!("issuer URL: {error}")))?;
        let redirect = RedirectUrl::new(settings.redirect_url.clone())
            .map_err(|error| OidcError::Misconfigured(format!("redirect URL: {error}")))?;
        let template = tenant_template(&settings.issuer);
        let metadata = match Metadata::discover_async(issuer, &http).await {
            Ok(metadata) => metadata,
            // A multi-tenant issuer's document names the template, not the URL asked.
            Err(DiscoveryError::Validation(_)) if template.is_some() => {
                discover_multi_tenant(&settings.issuer, template.as_deref(), &http).await?
            }
            Err(error) => return Err(OidcError::Unavailable(error_chain(&error))),
        };
        let tenant_template = template.filter(|template| metadata.issuer().as_str() == template);
        if metadata.token_endpoint().is_none() {
            return Err(OidcError::Misconfigured(
                "the discovery document names no token endpoint".into(),
            ));
        }
        Ok(OidcProvider {
            name: settings.name,
            client_id: ClientId::new(settings.client_id),
            client_secret: settings.client_secret.map(ClientSecret::new),
            redirect,
            metadata: RwLock::new(metadata),
            tenant_template,
            http,
            flows: FlowSeal::new(secret),
        })
    }

    /// The name the provider is configured under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The issuer, as discovered.
    pub fn issuer(&self) -> String {
        self.read_metadata().issuer().to_string()
    }

    /// The callback URL.
    pub fn redirect_url(&self) -> &str {
        self.redirect.as_str()
    }

    fn read_metadata(&self) -> std::sync::RwLockReadGuard<'_, Metadata> {
        // A writer that panicked left whole metadata behind (it swaps one value).
        self.metadata
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn client(&self) -> Client {
        let metadata = self.read_metadata().clone();
        Client::from_provider_metadata(metadata, self.client_id.clone(), self.client_secret.clone())
            .set_redirect_uri(self.redirect.clone())
    }

    /// Starts a sign-in that goes on to `next` (the caller checks it is a safe path), or,
    /// with `connect_for`, the connection of this provider to that user's account (the
    /// caller checks at the end that the same user is still the one logged in).
    pub fn begin(&self, next: Option<&str>, connect_for: Option<&str>) -> Result<Begun, OidcError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = self
            .client()
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        let flow = Flow::starting(
            &self.name,
            state.secret(),
            nonce.secret(),
            verifier.secret(),
            next,
            connect_for,
        );
        self.flows.begun(url.to_string(), &flow)
    }

    /// Finishes the sign-in of the browser whose flow cookie is `flow` with the
    /// provider's `callback`.
    pub async fn finish(
        &self,
        flow: Option<&str>,
        callback: &Callback,
    ) -> Result<VerifiedIdentity, OidcError> {
        let flow = self.flows.open_checked(flow, &self.name, callback)?;
        let (issuer, sends_iss) = {
            let metadata = self.read_metadata();
            (
                metadata.issuer().to_string(),
                metadata
                    .additional_metadata()
                    .authorization_response_iss_parameter_supported,
            )
        };
        let iss_matches = |iss: &str| match &self.tenant_template {
            Some(template) => matches_template(template, iss).is_some(),
            None => iss == issuer,
        };
        match callback.iss.as_deref() {
            Some(iss) if !iss_matches(iss) => return Err(OidcError::Mismatch("iss")),
            None if sends_iss => return Err(OidcError::Mismatch("iss missing")),
            _ => {}
        }
        let code = callback.code()?;
        let client = self.client();
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|error| OidcError::Misconfigured(error.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|error| OidcError::Invalid(error_chain(&error)))?;
        let id_token = tokens
            .id_token()
            .ok_or(OidcError::Invalid("no ID token".into()))?;
        let nonce = Nonce::new(flow.nonce.clone());
        let first = id_token.claims(&self.verifier(&client), &nonce).cloned();
        let claims = match first {
            Ok(claims) => claims,
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                // The provider rotated its keys since discovery: fetch them once more.
                self.refresh_keys().await?;
                let client = self.client();
                let verifier = self.verifier(&client);
                id_token
                    .claims(&verifier, &nonce)
                    .map_err(|error| OidcError::Invalid(error.to_string()))?
                    .clone()
            }
            Err(error) => return Err(OidcError::Invalid(error.to_string())),
        };
        // A multi-tenant issuer: the token's `iss` must be the template filled with the
        // token's own tenant (the verifier left the issuer to this check).
        if let Some(template) = &self.tenant_template {
            let tenant = claims
                .additional_claims()
                .tid
                .as_deref()
                .unwrap_or_default();
            if matches_template(template, claims.issuer().as_str()) != Some(tenant)
                || tenant.is_empty()
            {
                return Err(OidcError::Invalid(
                    "the token's issuer is not its own tenant's".into(),
                ));
            }
        }
        // The access token is not used: the ID token says who signed in.
        let _ = tokens.access_token();
        Ok(VerifiedIdentity {
            provider: self.name.clone(),
            issuer: claims.issuer().to_string(),
            subject: claims.subject().to_string(),
            email: claims.email().map(|email| email.to_string()),
            email_verified: claims.email_verified().unwrap_or(false),
            preferred_username: claims.preferred_username().map(|name| name.to_string()),
            next: flow.next,
            connect_for: flow.connect_for,
        })
    }

    /// The ID token verifier: the client's (signature, audience, expiry, issuer), the
    /// issuer left to [`OidcProvider::finish`] for a multi-tenant one.
    fn verifier<'c>(
        &self,
        client: &'c Client,
    ) -> openidconnect::IdTokenVerifier<'c, CoreJsonWebKey> {
        let verifier = client.id_token_verifier();
        if self.tenant_template.is_some() {
            verifier.require_issuer_match(false)
        } else {
            verifier
        }
    }

    async fn refresh_keys(&self) -> Result<(), OidcError> {
        let jwks_uri = self.read_metadata().jwks_uri().clone();
        let keys = JsonWebKeySet::fetch_async(&jwks_uri, &self.http)
            .await
            .map_err(|error| OidcError::Unavailable(error_chain(&error)))?;
        let mut metadata = self
            .metadata
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *metadata = metadata.clone().set_jwks(keys);
        Ok(())
    }
}

/// The tenant `issuer` names in the place of `{tenantid}` in `template`, if it has the
/// template's shape (one path segment, no slash, not the placeholder itself).
fn matches_template<'i>(template: &str, issuer: &'i str) -> Option<&'i str> {
    let (before, after) = template.split_once(TENANT_PLACEHOLDER)?;
    let tenant = issuer.strip_prefix(before)?.strip_suffix(after)?;
    let plain = !tenant.is_empty() && !tenant.contains(['/', '{', '}', '?', '#']);
    plain.then_some(tenant)
}

/// Discovery for a multi-tenant issuer (`…/common/v2.0`), whose document publishes the
/// template `…/{tenantid}/v2.0` as its issuer: anything else is refused.
async fn discover_multi_tenant(
    configured: &str,
    template: Option<&str>,
    http: &reqwest::Client,
) -> Result<Metadata, OidcError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        configured.trim_end_matches('/')
    );
    let response = http
        .get(&url)
        .send()
        .await
        .map_err(|error| OidcError::Unavailable(error_chain(&error)))?;
    if !response.status().is_success() {
        return Err(OidcError::Unavailable(format!(
            "{url} answered {}",
            response.status()
        )));
    }
    let body = response
        .bytes()
        .await
        .map_err(|error| OidcError::Unavailable(error_chain(&error)))?;
    let metadata: Metadata = serde_json::from_slice(&body)
        .map_err(|error| OidcError::Misconfigured(format!("discovery document: {error}")))?;
    if Some(metadata.issuer().as_str()) != template {
        return Err(OidcError::Misconfigured(format!(
            "the discovery document names the issuer {}, neither {configured} nor its tenant template",
            metadata.issuer().as_str()
        )));
    }
    let keys = JsonWebKeySet::fetch_async(metadata.jwks_uri(), http)
        .await
        .map_err(|error| OidcError::Unavailable(error_chain(&error)))?;
    Ok(metadata.set_jwks(keys))
}

/// A configured provider, whichever protocol it speaks.
#[derive(Debug)]
pub enum IdentityProvider {
    /// An OpenID Connect provider (each kind boxed: clients are large).
    Oidc(Box<OidcProvider>),
    /// GitHub (OAuth 2 and its user API).
    Github(Box<github::GithubProvider>),
}

impl IdentityProvider {
    /// The name the provider is configured under.
    pub fn name(&self) -> &str {
        match self {
            IdentityProvider::Oidc(provider) => provider.name(),
            IdentityProvider::Github(provider) => provider.name(),
        }
    }

    /// The issuer identities are recorded under.
    pub fn issuer(&self) -> String {
        match self {
            IdentityProvider::Oidc(provider) => provider.issuer(),
            IdentityProvider::Github(provider) => provider.issuer(),
        }
    }

    /// The callback URL to register at the provider.
    pub fn redirect_url(&self) -> &str {
        match self {
            IdentityProvider::Oidc(provider) => provider.redirect_url(),
            IdentityProvider::Github(provider) => provider.redirect_url(),
        }
    }

    /// Starts a sign-in ([`OidcProvider::begin`]).
    pub fn begin(&self, next: Option<&str>, connect_for: Option<&str>) -> Result<Begun, OidcError> {
        match self {
            IdentityProvider::Oidc(provider) => provider.begin(next, connect_for),
            IdentityProvider::Github(provider) => provider.begin(next, connect_for),
        }
    }

    /// Finishes a sign-in ([`OidcProvider::finish`]).
    pub async fn finish(
        &self,
        flow: Option<&str>,
        callback: &Callback,
    ) -> Result<VerifiedIdentity, OidcError> {
        match self {
            IdentityProvider::Oidc(provider) => provider.finish(flow, callback).await,
            IdentityProvider::Github(provider) => provider.finish(flow, callback).await,
        }
    }
}

/// An error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}
