//! The OpenAPI 3 document of the JSON API, served at `GET /openapi.json` and kept in the
//! repository as `crates/latchkey-server/openapi.json` (a test keeps the two equal).

use crate::json::{ErrorBody, Message};
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
                       passkeys. The session travels \
                       in the `id` cookie (`__Host-id` behind https)."
    ),
    paths(
        crate::api::signup,
        crate::api::login,
        crate::api::home,
        crate::api::logout,
        crate::api::account,
        crate::api::sessions,
        crate::api::revoke_session,
        crate::api::revoke_other_sessions,
        crate::api::change_password,
        crate::mail_api::forgot_password,
        crate::mail_api::reset_password,
        crate::mail_api::sign_in_by_mail,
        crate::mail_api::sign_in_with_code,
        crate::mail_api::sign_in_with_link,
        crate::mail_api::verify_email,
        crate::mail_api::resend_verification,
        crate::mail_api::change_email,
        crate::mail_api::confirm_email_change,
        crate::factor_api::second_step,
        crate::factor_api::begin_totp,
        crate::factor_api::confirm_totp,
        crate::factor_api::remove_totp,
        crate::factor_api::regenerate_recovery_codes,
        crate::passkey_api::begin_registration,
        crate::passkey_api::finish_registration,
        crate::passkey_api::list,
        crate::passkey_api::rename,
        crate::passkey_api::delete,
        crate::passkey_api::begin_sign_in,
        crate::passkey_api::finish_sign_in,
        crate::passkey_api::begin_second_factor,
        crate::passkey_api::finish_second_factor
    ),
    components(schemas(
        Message,
        ErrorBody,
        crate::api::SignupRequest,
        crate::api::LoginRequest,
        crate::api::PasswordChange,
        crate::api::SessionList,
        crate::api::Revoked,
        crate::usecases::Account,
        crate::usecases::SessionView,
        crate::mail_api::EmailRequest,
        crate::mail_api::TokenRequest,
        crate::mail_api::ResetRequest,
        crate::mail_api::CodeRequest,
        crate::factor_api::SecondFactorRequired,
        crate::factor_api::CodeBody,
        crate::factor_api::TotpSetup,
        crate::factor_api::RecoveryCodes,
        crate::passkey_api::RegisterBody,
        crate::passkey_api::AssertionBody,
        crate::passkey_api::RenameBody,
        crate::passkey_api::PasskeyView,
        crate::passkey_api::PasskeyList
    ))
)]
pub struct ApiDoc;

/// The HTML pages on the same paths (GET), documented so clients know they exist.
#[derive(OpenApi)]
#[openapi(paths(
    crate::pages::signup_page,
    crate::pages::login_page,
    crate::pages::password_page,
    crate::mail_pages::forgot_page,
    crate::mail_pages::reset_page,
    crate::mail_pages::sign_in_link_page,
    crate::mail_pages::verify_page,
    crate::mail_pages::confirm_email_change_page
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
