//! A session record as a few hundred bytes: the memory store keeps idle sessions this
//! way. Integers are LEB128 varints, the timestamps after `created_at` are offsets from
//! it, strings are length-prefixed (an optional one by its length plus one), and the
//! application's data is its JSON text, length-prefixed the same way.

use crate::session::{AuthInfo, SessionRecord, StoreError};
use crate::time::Timestamp;

/// The first byte of a login: this, or'ed with 1 if fresh and 2 if multi-factor.
const AUTH_TAG: u8 = 0x10;

/// `record` in the compact form.
pub(crate) fn encode(record: &SessionRecord) -> Result<Box<[u8]>, StoreError> {
    let mut out = Vec::with_capacity(96);
    let created = record.created_at.as_millis();
    put_uint(&mut out, record.version);
    put_int(&mut out, created);
    for later in [
        record.last_active_at,
        record.idle_expires_at,
        record.absolute_expires_at,
    ] {
        put_int(&mut out, later.as_millis().wrapping_sub(created));
    }
    match &record.auth {
        None => out.push(0),
        Some(auth) => {
            // A tag with the login's flags, then its methods by name (the memory store
            // keeps these in-process only: no other version of the form is ever read).
            out.push(AUTH_TAG | u8::from(auth.fresh) | (u8::from(auth.multi_factor) << 1));
            put_uint(&mut out, auth.methods.len() as u64);
            for method in &auth.methods {
                put_str(&mut out, method);
            }
            put_str(&mut out, &auth.user_id);
            put_int(
                &mut out,
                auth.authenticated_at.as_millis().wrapping_sub(created),
            );
            put_int(&mut out, auth.credential_version);
        }
    }
    put_optional_str(&mut out, record.client_ip.as_deref());
    put_optional_str(&mut out, record.user_agent.as_deref());
    if record.data.is_empty() {
        out.push(0);
    } else {
        let json = serde_json::to_vec(&record.data)
            .map_err(|error| StoreError::Corrupt(Box::new(error)))?;
        put_uint(&mut out, json.len() as u64 + 1);
        out.extend_from_slice(&json);
    }
    Ok(out.into_boxed_slice())
}

/// The record `bytes` hold; `Corrupt` if they are not one [`encode`] wrote.
pub(crate) fn decode(bytes: &[u8]) -> Result<SessionRecord, StoreError> {
    let mut reader = Reader(bytes);
    let version = reader.uint()?;
    let created = reader.int()?;
    let mut later =
        || -> Result<Timestamp, StoreError> { Ok(Timestamp(created.wrapping_add(reader.int()?))) };
    let (last_active_at, idle_expires_at, absolute_expires_at) = (later()?, later()?, later()?);
    let auth = match reader.byte()? {
        0 => None,
        tag if tag & !0b11 == AUTH_TAG => {
            let count = reader.uint()?;
            if count > reader.0.len() as u64 {
                return Err(corrupt(format!("{count} methods in a short record")));
            }
            let methods = (0..count)
                .map(|_| reader.str().map(str::to_owned))
                .collect::<Result<Vec<_>, _>>()?;
            Some(AuthInfo {
                methods,
                fresh: tag & 1 != 0,
                multi_factor: tag & 2 != 0,
                user_id: reader.str()?.to_owned(),
                authenticated_at: Timestamp(created.wrapping_add(reader.int()?)),
                credential_version: reader.int()?,
            })
        }
        tag => return Err(corrupt(format!("unknown auth tag {tag}"))),
    };
    let client_ip = reader.optional_str()?;
    let user_agent = reader.optional_str()?;
    let data = match reader.uint()? {
        0 => Default::default(),
        len => serde_json::from_slice(reader.bytes(len - 1)?)
            .map_err(|error| StoreError::Corrupt(Box::new(error)))?,
    };
    if !reader.0.is_empty() {
        return Err(corrupt(format!("{} bytes after the end", reader.0.len())));
    }
    Ok(SessionRecord {
        version,
        auth,
        data,
        created_at: Timestamp(created),
        last_active_at,
        idle_expires_at,
        absolute_expires_at,
        client_ip,
        user_agent,
    })
}

/// When the record in `bytes` expires, read from its first fields only.
pub(crate) fn expires_at(bytes: &[u8]) -> Result<Timestamp, StoreError> {
    let mut reader = Reader(bytes);
    reader.uint()?;
    let created = reader.int()?;
    reader.int()?;
    let idle = created.wrapping_add(reader.int()?);
    let absolute = created.wrapping_add(reader.int()?);
    Ok(Timestamp(idle.min(absolute)))
}

fn corrupt(message: String) -> StoreError {
    StoreError::Corrupt(format!("compact session record: {message}").into())
}

fn put_uint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Signed integers zig-zag encoded, so small negative offsets stay small.
fn put_int(out: &mut Vec<u8>, value: i64) {
    put_uint(out, ((value << 1) ^ (value >> 63)) as u64);
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_uint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// `None` is a zero length; `Some(text)` is its length plus one, then the text.
fn put_optional_str(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        None => out.push(0),
        Some(text) => {
            put_uint(out, text.len() as u64 + 1);
            out.extend_from_slice(text.as_bytes());
        }
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, StoreError> {
    std::str::from_utf8(bytes).map_err(|error| StoreError::Corrupt(Box::new(error)))
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, StoreError> {
        let (&first, rest) = self
            .0
            .split_first()
            .ok_or_else(|| corrupt("ends early".into()))?;
        self.0 = rest;
        Ok(first)
    }

    fn uint(&mut self) -> Result<u64, StoreError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(corrupt("integer longer than 64 bits".into()))
    }

    fn int(&mut self) -> Result<i64, StoreError> {
        let raw = self.uint()?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    fn bytes(&mut self, len: u64) -> Result<&[u8], StoreError> {
        let len = usize::try_from(len)
            .ok()
            .filter(|len| *len <= self.0.len())
            .ok_or_else(|| corrupt("string longer than the record".into()))?;
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(text)
    }

    fn str(&mut self) -> Result<&str, StoreError> {
        let len = self.uint()?;
        utf8(self.bytes(len)?)
    }

    fn optional_str(&mut self) -> Result<Option<String>, StoreError> {
        match self.uint()? {
            0 => Ok(None),
            len => Ok(Some(utf8(self.bytes(len - 1)?)?.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn record() -> SessionRecord {
        let now = Timestamp::now();
        let mut data = serde_json::Map::new();
        data.insert("_csrf".into(), json!("token"));
        data.insert(
            "cart".into(),
            json!([1, 2.5, {"nested": null}, -7, u64::MAX]),
        );
        SessionRecord {
            version: 300,
            auth: Some(AuthInfo {
                user_id: "42".into(),
                authenticated_at: Timestamp(now.as_millis() - 5),
                methods: vec!["remember_me".into()],
                credential_version: -3,
                fresh: false,
                multi_factor: false,
            }),
            data,
            created_at: now,
            last_active_at: now.plus(Duration::from_secs(2)),
            idle_expires_at: now.plus(Duration::from_secs(1800)),
            absolute_expires_at: now.plus(Duration::from_secs(43_200)),
            client_ip: Some("203.0.113.9".into()),
            user_agent: Some("Mozilla/5.0 ü".into()),
        }
    }

    #[test]
    fn records_round_trip() {
        let full = record();
        assert_eq!(
            decode(&encode(&full).expect("encode")).expect("decode"),
            full
        );
        assert_eq!(
            expires_at(&encode(&full).expect("encode")).expect("expiry"),
            full.expires_at()
        );
        let empty = SessionRecord {
            auth: None,
            data: Default::default(),
            client_ip: None,
            user_agent: Some(String::new()),
            created_at: Timestamp(i64::MIN),
            last_active_at: Timestamp(i64::MAX),
            ..record()
        };
        assert_eq!(
            decode(&encode(&empty).expect("encode")).expect("decode"),
            empty
        );
    }

    #[test]
    fn any_methods_and_flags_round_trip() {
        let lists: [&[&str]; 4] = [
            &[],
            &["password"],
            &["email_code", "totp"],
            &["oidc:corp", "passkey", "ü"],
        ];
        for methods in lists {
            for (fresh, multi_factor) in
                [(false, false), (true, false), (false, true), (true, true)]
            {
                let mut full = record();
                if let Some(auth) = full.auth.as_mut() {
                    auth.methods = methods.iter().map(|m| m.to_string()).collect();
                    auth.fresh = fresh;
                    auth.multi_factor = multi_factor;
                }
                let decoded = decode(&encode(&full).expect("encode")).expect("decode");
                assert_eq!(decoded, full, "{methods:?} {fresh} {multi_factor}");
            }
        }
        // A tag with no meaning is corrupt, not a guess.
        let mut bytes = encode(&record()).expect("encode").into_vec();
        let mut fresh = record();
        if let Some(auth) = fresh.auth.as_mut() {
            auth.fresh = true;
        }
        let other = encode(&fresh).expect("encode");
        let tag = bytes
            .iter()
            .zip(other.iter())
            .position(|(a, b)| a != b)
            .expect("the auth tag");
        for unknown in [0x05, 0x44, 0x0f, 0x20] {
            bytes[tag] = unknown;
            assert!(decode(&bytes).is_err(), "tag {unknown:#x}");
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = encode(&record()).expect("encode");
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "{len} bytes decoded");
        }
        assert!(decode(&[0xff; 12]).is_err(), "overlong varint");
        assert!(
            decode(&[1, 0, 0, 0, 0, 9, 0, 0, 0]).is_err(),
            "unknown auth tag"
        );
        let mut trailing = bytes.to_vec();
        trailing.push(0);
        assert!(decode(&trailing).is_err(), "bytes after the end");
    }
}
