//! Flash messages: one-shot notices that survive a redirect ("You have been signed out.").

use crate::session::{Session, SessionError};
use serde::{Deserialize, Serialize};

/// Session key the pending messages are kept under.
pub const FLASH_SESSION_KEY: &str = "_flash";

/// How a message should look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlashLevel {
    /// Something worked.
    Success,
    /// Neutral information.
    Info,
    /// Something went wrong.
    Error,
}

/// One message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlashMessage {
    /// How it should look.
    pub level: FlashLevel,
    /// The text.
    pub message: String,
}

/// Queues a message for the next page this session shows.
pub async fn flash(
    session: &Session,
    level: FlashLevel,
    message: impl Into<String>,
) -> Result<(), SessionError> {
    let mut messages: Vec<FlashMessage> = session.get(FLASH_SESSION_KEY).await?.unwrap_or_default();
    messages.push(FlashMessage {
        level,
        message: message.into(),
    });
    session.insert(FLASH_SESSION_KEY, messages).await
}

/// The queued messages, removed from the session (each is shown once).
pub async fn take_flashes(session: &Session) -> Result<Vec<FlashMessage>, SessionError> {
    match session.remove(FLASH_SESSION_KEY).await? {
        Some(value) => Ok(serde_json::from_value(value).unwrap_or_default()),
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{ClientInfo, CookieChange};
    use crate::store::MemoryStore;
    use crate::{SessionConfig, SessionStore};
    use std::sync::Arc;

    #[tokio::test]
    async fn messages_survive_one_redirect_and_are_shown_once() {
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
        let config = Arc::new(SessionConfig::insecure_for_local_development());
        let first = Session::new(store.clone(), config.clone(), None, ClientInfo::default());
        flash(
            &first,
            FlashLevel::Success,
            "User account has been created.",
        )
        .await
        .expect("flash");
        flash(&first, FlashLevel::Info, "Welcome.")
            .await
            .expect("flash");
        let CookieChange::Set(token) = first.commit().await.expect("commit") else {
            panic!("a session was created for the flash");
        };

        let next = Session::new(
            store.clone(),
            config.clone(),
            Some(&token),
            ClientInfo::default(),
        );
        let shown = take_flashes(&next).await.expect("take");
        assert_eq!(
            shown,
            vec![
                FlashMessage {
                    level: FlashLevel::Success,
                    message: "User account has been created.".into()
                },
                FlashMessage {
                    level: FlashLevel::Info,
                    message: "Welcome.".into()
                },
            ]
        );
        next.commit().await.expect("commit");

        let after = Session::new(store, config, Some(&token), ClientInfo::default());
        assert!(take_flashes(&after).await.expect("take").is_empty());
    }
}
