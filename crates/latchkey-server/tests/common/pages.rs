//! The HTML pages as a browser reads them: a page's body, and the CSRF token its form
//! carries.

use super::Server;
use reqwest::StatusCode;

/// The value of the first hidden `csrf_token` field in `html` (fails if there is none).
pub fn csrf_token(html: &str) -> String {
    let marker = r#"name="csrf_token" value=""#;
    let start = html.find(marker).expect("a CSRF field in the page") + marker.len();
    html[start..].split('"').next().expect("value").to_string()
}

/// The action of the form in `html` that posts to `path` (with its query), unescaped.
pub fn form_action(html: &str, path: &str) -> String {
    let rest = html
        .split(&format!("action=\"{path}"))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .replace("&#x2f;", "/")
        .replace("&amp;", "&");
    format!("{path}{rest}")
}

/// `GET path` as a browser asks for a page (`accept: text/html`): asserts 200 and
/// returns the HTML.
pub async fn page(client: &reqwest::Client, server: &Server, path: &str) -> String {
    let response = client
        .get(server.url(path))
        .header("accept", "text/html")
        .send()
        .await
        .expect("page");
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.text().await.expect("html")
}
