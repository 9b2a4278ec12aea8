//! Sign-in with GitHub: OAuth 2 (on `oauth2`) without an ID token. The identity is
//! GitHub's numeric user id (a login name can be renamed and reused); the address is
//! the one GitHub's emails API marks primary **and** verified, or another verified one,
//! with its own `verified` flag (the `email` of `/user` says nothing about
//! verification). The flow, its cookie and its checks are the OpenID Connect ones;
//! GitHub sends no `iss` and no ID token, so there is no nonce.

use super::flow::{Flow, FlowSeal};
use super::{error_chain, Begun, Callback, OidcError, ProviderSettings, VerifiedIdentity};
use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use openidconnect::reqwest;
use serde::Deserialize;

/// The issuer latchkey records for github.com identities (GitHub Enterprise Server:
/// its own base URL).
pub const GITHUB_ISSUER: &str = "https://github.com";

/// One address of the emails API (`GET /user/emails`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct GithubEmail {
    /// The address.
    pub email: String,
    /// Whether it is the account's primary address.
    #[serde(default)]
    pub primary: bool,
    /// Whether GitHub verified it.
    #[serde(default)]
    pub verified: bool,
}

/// The user API's answer (`GET /user`): what latchkey reads of it.
#[derive(Debug, Deserialize)]
struct GithubUser {
    id: u64,
    login: Option<String>,
}

/// The address a GitHub account signs in with, and whether GitHub verified it: the
/// primary address if verified, else another verified one; with none verified, the
/// primary one as unverified (which links nothing and is put on no new account).
pub fn choose_email(emails: &[GithubEmail]) -> Option<(String, bool)> {
    let verified_primary = emails.iter().find(|email| email.primary && email.verified);
    let verified = emails.iter().find(|email| email.verified);
    match verified_primary.or(verified) {
        Some(email) => Some((email.email.clone(), true)),
        None => emails
            .iter()
            .find(|email| email.primary)
            .map(|email| (email.email.clone(), false)),
    }
}

/// GitHub (or a GitHub Enterprise Server) as an identity provider.
pub struct GithubProvider {
    name: String,
    issuer: String,
    api: String,
    client: BasicClient<
        oauth2::EndpointSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointSet,
    >,
    redirect: String,
    http: reqwest::Client,
    flows: FlowSeal,
}

impl std::fmt::Debug for GithubProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubProvider")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl GithubProvider {
    /// The provider at `settings.issuer` (`https://github.com`, or a GitHub Enterprise
    /// Server's base URL, whose API is under `/api/v3`). `secret` is the server's key.
    pub fn new(settings: ProviderSettings, secret: &[u8]) -> Result<Self, OidcError> {
        let issuer = settings.issuer.trim_end_matches('/').to_string();
        let api = if issuer == GITHUB_ISSUER {
            "https://api.github.com".to_string()
        } else {
            format!("{issuer}/api/v3")
        };
        let url = |path: &str| format!("{issuer}{path}");
        let misconfigured =
            |error: oauth2::url::ParseError| OidcError::Misconfigured(error.to_string());
        let mut client = BasicClient::new(ClientId::new(settings.client_id))
            .set_auth_uri(AuthUrl::new(url("/login/oauth/authorize")).map_err(misconfigured)?)
            .set_token_uri(TokenUrl::new(url("/login/oauth/access_token")).map_err(misconfigured)?)
            .set_redirect_uri(
                RedirectUrl::new(settings.redirect_url.clone()).map_err(misconfigured)?,
            );
        if let Some(secret) = settings.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret));
        }
        let http = reqwest::ClientBuilder::new()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(super::HTTP_TIMEOUT)
            .user_agent("latchkey")
            .build()
            .map_err(|error| OidcError::Misconfigured(error.to_string()))?;
        Ok(GithubProvider {
            name: settings.name,
            issuer,
            api,
            client,
            redirect: settings.redirect_url,
            http,
            flows: FlowSeal::new(secret),
        })
    }

    /// The name the provider is configured under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The issuer identities are recorded under.
    pub fn issuer(&self) -> String {
        self.issuer.clone()
    }

    /// The callback URL.
    pub fn redirect_url(&self) -> &str {
        &self.redirect
    }

    /// Starts a sign-in (as [`super::OidcProvider::begin`]): the authorization URL with
    /// `state` and PKCE S256, asking to read the profile and the addresses.
    pub fn begin(&self, next: Option<&str>, connect_for: Option<&str>) -> Result<Begun, OidcError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state) = self
            .client
            .authorize_url(CsrfToken::new_random)
            .add_scope(Scope::new("read:user".into()))
            .add_scope(Scope::new("user:email".into()))
            .set_pkce_challenge(challenge)
            .url();
        // No ID token, so no nonce.
        let flow = Flow::starting(
            &self.name,
            state.secret(),
            "",
            verifier.secret(),
            next,
            connect_for,
        );
        self.flows.begun(url.to_string(), &flow)
    }

    /// Finishes the sign-in (as [`super::OidcProvider::finish`]): the flow's checks, the
    /// code redeemed once, then the user and their addresses from the API.
    pub async fn finish(
        &self,
        flow: Option<&str>,
        callback: &Callback,
    ) -> Result<VerifiedIdentity, OidcError> {
        let flow = self.flows.open_checked(flow, &self.name, callback)?;
        let code = callback.code()?;
        let token = self
            .client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|error| OidcError::Invalid(error_chain(&error)))?;
        let bearer = token.access_token().secret().clone();
        let user: GithubUser = self.get("/user", &bearer).await?;
        let emails: Vec<GithubEmail> = self.get("/user/emails", &bearer).await?;
        let (email, email_verified) = match choose_email(&emails) {
            Some((email, verified)) => (Some(email), verified),
            None => (None, false),
        };
        Ok(VerifiedIdentity {
            provider: self.name.clone(),
            issuer: self.issuer.clone(),
            subject: user.id.to_string(),
            email,
            email_verified,
            preferred_username: user.login,
            next: flow.next,
            connect_for: flow.connect_for,
        })
    }

    /// `GET {api}{path}` with the user's token, as JSON.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        bearer: &str,
    ) -> Result<T, OidcError> {
        let response = self
            .http
            .get(format!("{}{path}", self.api))
            .bearer_auth(bearer)
            .header("accept", "application/vnd.github+json")
            .send()
            .await
            .map_err(|error| OidcError::Unavailable(error_chain(&error)))?;
        if !response.status().is_success() {
            return Err(OidcError::Invalid(format!(
                "GitHub answered {} to {path}",
                response.status()
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|error| OidcError::Unavailable(error_chain(&error)))?;
        serde_json::from_slice(&body).map_err(|error| OidcError::Invalid(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::{choose_email, GithubEmail};

    fn email(address: &str, primary: bool, verified: bool) -> GithubEmail {
        GithubEmail {
            email: address.into(),
            primary,
            verified,
        }
    }

    #[test]
    fn the_verified_primary_address_wins_and_an_unverified_one_says_so() {
        // The emails API as GitHub documents it.
        let listed: Vec<GithubEmail> = serde_json::from_str(
            r#"[{"email":"old@example.com","primary":false,"verified":true,"visibility":null},
                {"email":"me@example.com","primary":true,"verified":true,"visibility":"public"}]"#,
        )
        .expect("the documented shape");
        assert_eq!(choose_email(&listed), Some(("me@example.com".into(), true)));
        // A primary that is not verified gives way to a verified one.
        assert_eq!(
            choose_email(&[
                email("new@example.com", true, false),
                email("old@example.com", false, true)
            ]),
            Some(("old@example.com".into(), true))
        );
        // None verified: the primary, marked unverified (it links nothing).
        assert_eq!(
            choose_email(&[email("new@example.com", true, false)]),
            Some(("new@example.com".into(), false))
        );
        assert_eq!(choose_email(&[]), None);
    }
}
