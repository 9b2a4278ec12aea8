//! The HTML templates: embedded in the binary, each overridable by a file of the same
//! name in the `--templates` folder.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, Value};
use std::path::PathBuf;
use std::sync::Arc;

/// The templates shipped in the binary.
const EMBEDDED: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("index.html", include_str!("../templates/index.html")),
    ("signup.html", include_str!("../templates/signup.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("home.html", include_str!("../templates/home.html")),
    ("sessions.html", include_str!("../templates/sessions.html")),
    ("password.html", include_str!("../templates/password.html")),
    ("error.html", include_str!("../templates/error.html")),
];

/// Jinja templates: the embedded ones, each overridable by a file of the same name in
/// the `--templates` folder.
#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
}

impl Templates {
    /// Templates from `folder` where present, embedded ones otherwise.
    pub fn new(folder: Option<PathBuf>) -> Self {
        let mut env = Environment::new();
        env.set_loader(move |name| {
            if let Some(folder) = &folder {
                let path = folder.join(name);
                if path.is_file() {
                    return std::fs::read_to_string(&path).map(Some).map_err(|error| {
                        minijinja::Error::new(
                            minijinja::ErrorKind::TemplateNotFound,
                            format!("cannot read {}: {error}", path.display()),
                        )
                    });
                }
            }
            Ok(EMBEDDED
                .iter()
                .find(|(embedded, _)| *embedded == name)
                .map(|(_, source)| source.to_string()))
        });
        Templates { env: Arc::new(env) }
    }

    /// Renders `name` with `context` as an HTML response with `status`.
    pub fn render(&self, status: StatusCode, name: &str, context: Value) -> Response {
        let rendered = self
            .env
            .get_template(name)
            .and_then(|template| template.render(context));
        match rendered {
            Ok(html) => (status, Html(html)).into_response(),
            Err(error) => {
                tracing::error!(%error, template = name, "template failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
            }
        }
    }
}
