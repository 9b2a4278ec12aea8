//! The OpenAPI document served at /openapi.json is the one kept in the repository
//! (`crates/latchkey-server/openapi.json`). After changing the API, regenerate it with
//! `LATCHKEY_WRITE_OPENAPI=1 cargo test -p latchkey-server --test openapi`.

mod common;

use common::{bare_client, Server};
use serde_json::Value;

#[tokio::test]
async fn the_served_document_is_the_committed_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let response = bare_client()
        .get(server.url("/openapi.json"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    let served: Value = response.json().await.expect("json");
    assert!(served["openapi"]
        .as_str()
        .is_some_and(|version| version.starts_with("3.")));
    for path in ["/signup", "/login", "/home", "/logout"] {
        assert!(
            served["paths"][path].is_object(),
            "{path} is not documented"
        );
    }
    let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    if std::env::var_os("LATCHKEY_WRITE_OPENAPI").is_some() {
        let text = serde_json::to_string_pretty(&served).expect("json") + "\n";
        std::fs::write(&committed, text).expect("write openapi.json");
    }
    let kept: Value =
        serde_json::from_str(&std::fs::read_to_string(&committed).expect("openapi.json"))
            .expect("committed openapi.json is JSON");
    assert_eq!(
        served, kept,
        "openapi.json is out of date: regenerate it (see this file's header)"
    );
}
