//! The session layer over real HTTP: concurrent writers on one session lose nothing, a
//! read-only request writes nothing, and the idle expiry is refreshed lazily.

use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey::store::conformance::CountingStore;
use latchkey::store::{open_sqlite, MemoryStore, SqliteStore};
use latchkey::{Session, SessionConfig, SessionError, SessionLayer, SessionStore};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

async fn set_key(session: Session, Path(key): Path<String>) -> Result<&'static str, SessionError> {
    session.insert(&key, true).await?;
    Ok("ok")
}

async fn increment(session: Session) -> Result<Json<Value>, SessionError> {
    let value = session
        .update("counter", |old| {
            json!(old.and_then(Value::as_i64).unwrap_or(0) + 1)
        })
        .await?;
    Ok(Json(value))
}

async fn read(session: Session) -> Result<Json<Value>, SessionError> {
    let record = session.record().await?;
    Ok(Json(json!(record.map(|record| record.data.clone()))))
}

fn app(store: Arc<dyn SessionStore>, config: SessionConfig) -> Router {
    Router::new()
        .route("/set/{key}", post(set_key))
        .route("/increment", post(increment))
        .route("/data", get(read))
        .layer(SessionLayer::from_arc(store, config))
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    address
}

/// Starts a session, returns its cookie header.
async fn start_session(client: &reqwest::Client, address: SocketAddr) -> String {
    let response = client
        .post(format!("http://{address}/set/init"))
        .send()
        .await
        .expect("init");
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_string();
    set_cookie.split(';').next().expect("pair").to_string()
}

/// Sends a POST to every path at the same time with the session cookie; all must be 200.
async fn post_all_at_once(
    client: &reqwest::Client,
    address: SocketAddr,
    cookie: &str,
    paths: &[String],
) {
    let requests = paths.iter().map(|path| {
        let request = client
            .post(format!("http://{address}{path}"))
            .header("cookie", cookie)
            .send();
        async move {
            let response = request.await.expect("request");
            let status = response.status();
            assert_eq!(status, 200, "{}", response.text().await.unwrap_or_default());
        }
    });
    futures::future::join_all(requests).await;
}

async fn concurrent_writers_lose_nothing(store: Arc<dyn SessionStore>) {
    let address = serve(app(store, SessionConfig::insecure_for_local_development())).await;
    let client = reqwest::Client::new();
    let cookie = start_session(&client, address).await;

    let keys: Vec<String> = (0..100).map(|n| format!("/set/key-{n}")).collect();
    post_all_at_once(&client, address, &cookie, &keys).await;
    let increments = vec!["/increment".to_string(); 100];
    post_all_at_once(&client, address, &cookie, &increments).await;

    let data: Value = client
        .get(format!("http://{address}/data"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("data")
        .json()
        .await
        .expect("json");
    for n in 0..100 {
        assert_eq!(
            data[format!("key-{n}")],
            json!(true),
            "key-{n} lost: {data}"
        );
    }
    assert_eq!(data["counter"], json!(100), "increments lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_concurrent_requests_lose_nothing() {
    concurrent_writers_lose_nothing(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_concurrent_requests_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let pool = open_sqlite(&url).await.expect("open");
    concurrent_writers_lose_nothing(Arc::new(SqliteStore::new(pool))).await;
}

#[tokio::test]
async fn read_only_requests_write_nothing_until_the_touch_interval() {
    let store = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
    let config = SessionConfig::insecure_for_local_development()
        .with_idle_timeout(Duration::from_secs(60))
        .with_touch_interval(Duration::from_secs(2));
    let address = serve(app(store.clone(), config)).await;
    let client = reqwest::Client::new();

    // An anonymous request that only reads creates nothing and sets no cookie.
    let response = client
        .get(format!("http://{address}/data"))
        .send()
        .await
        .expect("data");
    assert!(response.headers().get("set-cookie").is_none());
    assert_eq!(store.writes(), 0);

    let cookie = start_session(&client, address).await;
    assert_eq!(store.writes(), 1, "one create");
    let loads_before = store.loads();
    for _ in 0..20 {
        let response = client
            .get(format!("http://{address}/data"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("data");
        assert!(
            response.headers().get("set-cookie").is_none(),
            "no cookie churn"
        );
    }
    assert_eq!(
        store.writes(),
        1,
        "reads inside the touch interval write nothing"
    );
    assert_eq!(
        store.loads() - loads_before,
        20,
        "one store read per request"
    );

    tokio::time::sleep(Duration::from_millis(2100)).await;
    client
        .get(format!("http://{address}/data"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("data");
    assert_eq!(store.writes(), 2, "one touch once the interval passed");
    client
        .get(format!("http://{address}/data"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("data");
    assert_eq!(store.writes(), 2, "and then quiet again");
}

#[tokio::test]
async fn unknown_cookie_is_cleared_and_never_adopted() {
    let store = Arc::new(MemoryStore::new());
    let address = serve(app(
        store.clone(),
        SessionConfig::insecure_for_local_development(),
    ))
    .await;
    let planted = latchkey::SessionToken::generate().encode();
    let response = reqwest::Client::new()
        .post(format!("http://{address}/set/x"))
        .header("cookie", format!("id={planted}"))
        .send()
        .await
        .expect("set");
    let set_cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().expect("ascii").to_string())
        .collect();
    // A brand-new token is issued; the attacker-chosen one is never used.
    assert_eq!(set_cookies.len(), 1, "{set_cookies:?}");
    assert!(!set_cookies[0].contains(&planted));
    let planted_id = latchkey::SessionToken::parse(&planted).expect("token").id();
    assert!(store.load(&planted_id).await.expect("load").is_none());
}

/// The session a request through `service` created, as stored.
async fn created_record(
    service: latchkey::SessionService<Router>,
    store: &MemoryStore,
    peer: Option<SocketAddr>,
) -> latchkey::SessionRecord {
    use tower::ServiceExt;
    let mut request = axum::http::Request::post("/set/a")
        .body(axum::body::Body::empty())
        .expect("request");
    if let Some(peer) = peer {
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
    }
    let response = service.oneshot(request).await.expect("answer");
    assert_eq!(response.status(), 200);
    let cookie = response.headers()["set-cookie"].to_str().expect("ascii");
    let token = cookie
        .split(';')
        .next()
        .and_then(|pair| pair.strip_prefix("id="))
        .and_then(latchkey::SessionToken::parse)
        .expect("session token");
    let record = store.load(&token.id()).await.expect("load");
    (*record.expect("stored")).clone()
}

#[tokio::test]
async fn new_sessions_record_the_connection_peer() {
    use tower::Layer;
    let store = MemoryStore::new();
    let routes = Router::new().route("/set/{key}", post(set_key));
    let service = SessionLayer::new(
        store.clone(),
        SessionConfig::insecure_for_local_development(),
    )
    .layer(routes);
    let peer: SocketAddr = "192.0.2.7:4321".parse().expect("address");
    let record = created_record(service.clone(), &store, Some(peer)).await;
    assert_eq!(record.client_ip.as_deref(), Some("192.0.2.7"));
    // Without a ConnectInfo extension, no address is recorded.
    let record = created_record(service, &store, None).await;
    assert_eq!(record.client_ip, None);
}
