//! Drives the Microdot login seed's flow against `examples/microdot_login.rs`.

#[allow(dead_code)]
#[path = "../examples/microdot_login.rs"]
mod microdot_login;

mod common;

use common::{browser, browser_with_jar, submit};
use reqwest::StatusCode;

async fn log_in(
    client: &reqwest::Client,
    base: &str,
    remember: Option<&str>,
    next: &str,
) -> reqwest::Response {
    let mut form = vec![("username", "susan"), ("password", "hunter2hunter2")];
    if let Some(days) = remember {
        form.push(("remember_me", days));
    }
    submit(
        client,
        &format!("{base}/login"),
        &format!("{base}/login?next={next}"),
        &form,
    )
    .await
}

fn remember_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with("remember="))
        .map(str::to_string)
}

#[tokio::test]
async fn login_remember_fresh_and_logout() {
    let base = common::serve(microdot_login::app().await.expect("app")).await;
    let client = browser();

    // @login sends visitors to the login page with next.
    let response = client.get(format!("{base}/")).send().await.expect("index");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/login?next=%2F");

    // remember=True keeps the login for 30 days; an integer is a number of days.
    let response = log_in(&client, &base, Some("30"), "%2F").await;
    assert_eq!(response.headers()["location"], "/");
    let cookie = remember_cookie(&response).expect("remember cookie");
    assert!(cookie.contains("Max-Age=2592000"), "{cookie}");
    let other = browser();
    let response = log_in(&other, &base, Some("3"), "%2F").await;
    assert!(remember_cookie(&response)
        .expect("cookie")
        .contains("Max-Age=259200"));
    let response = log_in(&other, &base, None, "%2F").await;
    assert!(
        remember_cookie(&response).is_none(),
        "no remember-me unless asked"
    );

    let page = client
        .get(format!("{base}/"))
        .send()
        .await
        .expect("index")
        .text()
        .await
        .expect("html");
    assert!(page.contains("Hello, susan!"));
    assert_eq!(
        client
            .get(format!("{base}/fresh"))
            .send()
            .await
            .expect("fresh")
            .status(),
        StatusCode::OK
    );

    // A new browser session with only the remember-me cookie: logged in, not fresh.
    let restarted_jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let url: reqwest::Url = base.parse().expect("url");
    restarted_jar.add_cookie_str(cookie.split(';').next().expect("pair"), &url);
    let restarted = browser_with_jar(restarted_jar);
    let page = restarted
        .get(format!("{base}/"))
        .send()
        .await
        .expect("index")
        .text()
        .await
        .expect("html");
    assert!(page.contains("Hello, susan!"), "{page}");
    let response = restarted
        .get(format!("{base}/fresh"))
        .send()
        .await
        .expect("fresh");
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "@login.fresh asks to log in again"
    );
    assert_eq!(response.headers()["location"], "/login?next=%2Ffresh");

    // logout_user, then redirect('/').
    let response = client
        .post(format!("{base}/logout"))
        .send()
        .await
        .expect("logout");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/");
    assert_eq!(
        client
            .get(format!("{base}/"))
            .send()
            .await
            .expect("index")
            .status(),
        StatusCode::SEE_OTHER
    );
}
