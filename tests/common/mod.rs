//! Helpers for driving the example apps like a browser.

#![allow(dead_code)]

use std::sync::Arc;

/// Serves `app` on a free port; returns `http://address`.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

/// A client with its own cookie jar that asks for HTML and does not follow redirects.
pub fn browser() -> reqwest::Client {
    browser_with_jar(Arc::new(reqwest::cookie::Jar::default()))
}

/// [`browser`] over a given jar.
pub fn browser_with_jar(jar: Arc<reqwest::cookie::Jar>) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_provider(jar)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(
            [(
                reqwest::header::ACCEPT,
                "text/html".parse().expect("header"),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .expect("client")
}

/// The value of the page's hidden `csrf_token` field.
pub fn csrf_token(html: &str) -> String {
    let marker = r#"name="csrf_token" value=""#;
    let start = html.find(marker).expect("a CSRF field in the page") + marker.len();
    html[start..].split('"').next().expect("value").to_string()
}

/// GETs `page` and returns its body.
pub async fn page(client: &reqwest::Client, url: &str) -> String {
    client
        .get(url)
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body")
}

/// GETs `form_page`, then posts `fields` and its CSRF token to `action`.
pub async fn submit(
    client: &reqwest::Client,
    form_page: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let token = csrf_token(&page(client, form_page).await);
    let mut form = vec![("csrf_token", token.as_str())];
    form.extend_from_slice(fields);
    client.post(action).form(&form).send().await.expect("post")
}

/// The `Location` header.
pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Real services for tests: skipped when unset, required under LATCHKEY_REQUIRE_SERVICES.
#[allow(unused_imports)]
pub use latchkey::store::conformance::service_url;

/// A handle in transaction-pooler mode on the PgBouncer at `LATCHKEY_TEST_PGBOUNCER`
/// (`.ci/pgbouncer.sh` starts one), the schema migrated first over the direct
/// `LATCHKEY_TEST_POSTGRES`. `None` (the test returns early) when either is unset, a
/// panic then under `LATCHKEY_REQUIRE_SERVICES`.
pub async fn pgbouncer() -> Option<latchkey::store::PgHandle> {
    use latchkey::store::{migrate_postgres, PgHandle, PgPooling};
    let bouncer = service_url("LATCHKEY_TEST_PGBOUNCER")?;
    let direct = service_url("LATCHKEY_TEST_POSTGRES")?;
    migrate_postgres(&direct)
        .await
        .expect("migrations over the direct connection");
    let handle = PgHandle::connect(&bouncer, PgPooling::Transaction)
        .await
        .expect("PgBouncer reachable");
    Some(handle)
}
