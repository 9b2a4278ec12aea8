//! How server-side stores write records down: JSON text, ids as hex.

use crate::session::{BoxError, SessionId, SessionRecord, StoreError};

/// A record as JSON text.
pub(crate) fn encode_record(record: &SessionRecord) -> Result<String, StoreError> {
    serde_json::to_string(record).map_err(|error| StoreError::Corrupt(Box::new(error)))
}

/// A record from its JSON text; `Corrupt` if it does not decode.
pub(crate) fn decode_record(text: &str) -> Result<SessionRecord, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt(Box::new(error) as BoxError))
}

/// A loaded record from its stored text, if there was one.
pub(crate) fn decode_stored(
    text: Option<String>,
) -> Result<Option<std::sync::Arc<SessionRecord>>, StoreError> {
    text.map(|text| decode_record(&text).map(std::sync::Arc::new))
        .transpose()
}

/// A stored id from its hex form; `Corrupt` if it is not one.
pub(crate) fn decode_id(hex: &str) -> Result<SessionId, StoreError> {
    SessionId::from_hex(hex).ok_or_else(|| {
        StoreError::Corrupt(format!("session id {hex:?} is not 64 hex characters").into())
    })
}
