//! The HTML templates: embedded in the binary, each overridable by a file of the same
//! name in the `--templates` folder.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use latchkey::mail::Mail;
use minijinja::{Environment, Value};
use std::path::PathBuf;
use std::sync::Arc;

/// The templates shipped in the binary.
const EMBEDDED: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("index.html", include_str!("../../templates/index.html")),
    ("signup.html", include_str!("../../templates/signup.html")),
    ("login.html", include_str!("../../templates/login.html")),
    ("home.html", include_str!("../../templates/home.html")),
    (
        "sessions.html",
        include_str!("../../templates/sessions.html"),
    ),
    (
        "password.html",
        include_str!("../../templates/password.html"),
    ),
    ("error.html", include_str!("../../templates/error.html")),
    (
        "forward_forbidden.html",
        include_str!("../../templates/forward_forbidden.html"),
    ),
    ("forgot.html", include_str!("../../templates/forgot.html")),
    ("reset.html", include_str!("../../templates/reset.html")),
    ("confirm.html", include_str!("../../templates/confirm.html")),
    (
        "email_code.html",
        include_str!("../../templates/email_code.html"),
    ),
    ("account.html", include_str!("../../templates/account.html")),
    ("tokens.html", include_str!("../../templates/tokens.html")),
    (
        "second_factor.html",
        include_str!("../../templates/second_factor.html"),
    ),
    ("totp.html", include_str!("../../templates/totp.html")),
    (
        "recovery_codes.html",
        include_str!("../../templates/recovery_codes.html"),
    ),
    (
        "mail/reset_password.txt",
        include_str!("../../templates/mail/reset_password.txt"),
    ),
    (
        "mail/reset_password.html",
        include_str!("../../templates/mail/reset_password.html"),
    ),
    (
        "mail/verify_email.txt",
        include_str!("../../templates/mail/verify_email.txt"),
    ),
    (
        "mail/verify_email.html",
        include_str!("../../templates/mail/verify_email.html"),
    ),
    (
        "mail/sign_in.txt",
        include_str!("../../templates/mail/sign_in.txt"),
    ),
    (
        "mail/sign_in.html",
        include_str!("../../templates/mail/sign_in.html"),
    ),
    (
        "mail/change_email.txt",
        include_str!("../../templates/mail/change_email.txt"),
    ),
    (
        "mail/change_email.html",
        include_str!("../../templates/mail/change_email.html"),
    ),
    (
        "mail/notice.txt",
        include_str!("../../templates/mail/notice.txt"),
    ),
    (
        "mail/notice.html",
        include_str!("../../templates/mail/notice.html"),
    ),
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
        // `{{ seconds | duration }}` ("24 hours") and `{{ rfc3339 | when }}` ("6 December
        // 2026, 04:31 UTC"): times as people read them.
        env.add_filter("duration", |seconds: u64| {
            crate::web::for_people::duration(std::time::Duration::from_secs(seconds))
        });
        env.add_filter("when", |time: String| {
            crate::web::for_people::date_time(&time)
        });
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

    /// The mail to `to` made from `mail/{name}.txt` (a first line `Subject: …`, then the
    /// plain text) and `mail/{name}.html`, each rendered with `context` (the HTML one
    /// auto-escaped, the text one not).
    pub fn render_mail(
        &self,
        name: &str,
        to: &str,
        context: Value,
    ) -> Result<Mail, minijinja::Error> {
        let render = |file: String| {
            self.env
                .get_template(&file)
                .and_then(|template| template.render(&context))
        };
        let text = render(format!("mail/{name}.txt"))?;
        let html = render(format!("mail/{name}.html"))?;
        let (first, body) = text.split_once('\n').unwrap_or((text.as_str(), ""));
        let Some(subject) = first.strip_prefix("Subject:") else {
            return Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("mail/{name}.txt must begin with a line \"Subject: …\""),
            ));
        };
        Ok(Mail {
            to: to.to_string(),
            subject: subject.trim().to_string(),
            text: body.trim_start_matches('\n').to_string(),
            html: Some(html),
        })
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
