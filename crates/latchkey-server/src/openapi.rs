//! The OpenAPI 3 document of the JSON API, served at `GET /openapi.json` and kept in the
//! repository as `crates/latchkey-server/openapi.json` (a test keeps the two equal).

use crate::web::json::{ErrorBody, Message};
use axum::Json;
use utoipa::OpenApi;

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "latchkey",
        description = "Sign-up, login, a greeting for the logged-in user, logout, the \
                       account, its sessions, a password change, and the mail flows: password \
                       reset, email verification, sign-in by mailed link or code, email \
                       change, second factors (an authenticator app with recovery codes) and \
                       passkeys, personal access tokens. The session travels \
                       in the `id` cookie (`__Host-id` behind https), or without a cookie as \
                       `Authorization: Bearer <session_token>` (`POST /login?session=token`); \
                       scripts send a personal access token the same way (`lk_…`). A request \
                       may not carry both a cookie and a bearer token (400)."
    ),
    modifiers(&BearerScheme),
    security((), ("bearer" = [])),
    paths(
        crate::login::api::signup,
        crate::login::api::login,
        crate::login::api::home,
        crate::login::api::logout,
        crate::account::api::account,
        crate::sessions::api::sessions,
        crate::sessions::api::revoke_session,
        crate::sessions::api::revoke_other_sessions,
        crate::password::api::change_password,
        crate::mail::api::forgot_password,
        crate::mail::api::reset_password,
        crate::mail::api::sign_in_by_mail,
        crate::mail::api::sign_in_with_code,
        crate::mail::api::sign_in_with_link,
        crate::mail::api::verify_email,
        crate::mail::api::resend_verification,
        crate::mail::api::change_email,
        crate::mail::api::confirm_email_change,
        crate::factors::api::second_step,
        crate::factors::api::begin_totp,
        crate::factors::api::confirm_totp,
        crate::factors::api::remove_totp,
        crate::factors::api::regenerate_recovery_codes,
        crate::factors::passkey_api::begin_registration,
        crate::factors::passkey_api::finish_registration,
        crate::factors::passkey_api::list,
        crate::factors::passkey_api::rename,
        crate::factors::passkey_api::delete,
        crate::factors::passkey_api::begin_sign_in,
        crate::factors::passkey_api::finish_sign_in,
        crate::factors::passkey_api::begin_second_factor,
        crate::factors::passkey_api::finish_second_factor,
        crate::providers::api::list,
        crate::providers::api::disconnect,
        crate::tokens::api::tokens,
        crate::tokens::api::create_token,
        crate::tokens::api::revoke_token
    ),
    components(schemas(
        Message,
        ErrorBody,
        crate::login::api::SignupRequest,
        crate::login::api::LoginRequest,
        crate::password::api::PasswordChange,
        crate::sessions::api::SessionList,
        crate::sessions::api::Revoked,
        crate::account::flows::Account,
        crate::sessions::flows::SessionView,
        crate::mail::api::EmailRequest,
        crate::mail::api::TokenRequest,
        crate::mail::api::ResetRequest,
        crate::mail::api::CodeRequest,
        crate::factors::api::SecondFactorRequired,
        crate::factors::api::CodeBody,
        crate::factors::api::TotpSetup,
        crate::factors::api::RecoveryCodes,
        crate::factors::passkey_api::RegisterBody,
        crate::factors::passkey_api::AssertionBody,
        crate::factors::passkey_api::RenameBody,
        crate::factors::passkey_api::PasskeyView,
        crate::factors::passkey_api::PasskeyList,
        crate::providers::api::IdentityView,
        crate::providers::api::IdentityList,
        crate::tokens::api::TokenList,
        crate::tokens::api::CreateToken,
        crate::tokens::flows::TokenView,
        crate::tokens::flows::CreatedToken
    ))
)]
pub struct ApiDoc;

/// The `bearer` security scheme: a personal access token (`lk_…`) or a bearer session's
/// token, in `Authorization: Bearer`.
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("a personal access token (lk_…) or a bearer session's token")
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The HTML pages on the same paths (GET), documented so clients know they exist.
#[derive(OpenApi)]
#[openapi(paths(
    crate::login::pages::signup_page,
    crate::login::pages::login_page,
    crate::factors::pages::second_step_form,
    crate::password::pages::password_page,
    crate::mail::pages::forgot_page,
    crate::mail::pages::reset_page,
    crate::mail::pages::sign_in_link_page,
    crate::mail::pages::verify_page,
    crate::mail::pages::confirm_email_change_page
))]
struct PagesDoc;

/// The whole document: the JSON API with the pages' operations merged into its paths
/// (the derive alone keeps only one operation per path).
pub fn spec() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi().merge_from(PagesDoc::openapi())
}

/// `GET /openapi.json`
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(spec())
}
