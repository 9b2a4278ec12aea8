//! The OpenAPI 3 document of the JSON API, served at `GET /openapi.json` and kept in the
//! repository as `crates/latchkey-server/openapi.json` (a test keeps the two equal).

use axum::Json;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

/// `{"message": …}`: what a success says.
#[derive(Serialize, ToSchema)]
pub struct Message {
    /// For example `Hello, foo`.
    pub message: String,
}

/// `{"error": …, "field": …}`: what went wrong, and the field at fault when one is.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// A sentence for people.
    pub error: String,
    /// The request field at fault, if any.
    pub field: Option<String>,
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "latchkey",
        description = "Sign-up, login, a greeting for the logged-in user and logout. \
                       The session travels in the `id` cookie (`__Host-id` behind https)."
    ),
    paths(
        crate::api::signup,
        crate::api::login,
        crate::api::home,
        crate::api::logout
    ),
    components(schemas(
        Message,
        ErrorBody,
        crate::api::SignupRequest,
        crate::api::LoginRequest
    ))
)]
pub struct ApiDoc;

/// The HTML pages on the same paths (GET), documented so clients know they exist.
#[derive(OpenApi)]
#[openapi(paths(crate::pages::signup_page, crate::pages::login_page))]
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
