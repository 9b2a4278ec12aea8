//! Users: the `AuthUser` trait auth needs of any user type, and latchkey's own `User`
//! type with its SQL `UserStore`.

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod groups;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod sql;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod tokens;

#[cfg(feature = "postgres")]
pub use sql::PostgresUserStore;
#[cfg(feature = "sqlite")]
pub use sql::SqliteUserStore;

use crate::session::BoxError;
use crate::time::Timestamp;
use async_trait::async_trait;
use std::fmt;

/// What a mailed token is for (see [`tokens`], with a database feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    /// Proving an address belongs to the user.
    VerifyEmail,
    /// Setting a new password without the old one.
    ResetPassword,
    /// Signing in by link or code.
    SignIn,
    /// Moving the account to a new address.
    ChangeEmail,
}

impl TokenPurpose {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::VerifyEmail => "verify_email",
            TokenPurpose::ResetPassword => "reset_password",
            TokenPurpose::SignIn => "sign_in",
            TokenPurpose::ChangeEmail => "change_email",
        }
    }
}

/// What the auth layer needs to know about a user. Implement it for your own user type
/// to use [`crate::auth::AuthSession`] with it.
pub trait AuthUser: Clone + Send + Sync + 'static {
    /// A stable id, unique per user.
    fn user_id(&self) -> String;
    /// Bumped whenever the user's credentials change or the account is disabled; a session
    /// that recorded an older version is ended on its next use.
    fn credential_version(&self) -> i64 {
        0
    }
    /// Whether the user may be logged in (a disabled user's sessions end).
    fn is_active(&self) -> bool {
        true
    }
    /// Whether the user's email address is proven theirs (the gate asks when the
    /// authenticator requires verified addresses).
    fn email_verified(&self) -> bool {
        true
    }
}

/// A user as latchkey's own user store keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// Database id.
    pub id: i64,
    /// Display name, as entered at sign-up after [`validate_username`]'s normalisation
    /// (NFKC; case kept). Rows stored by versions before it hold the name as typed.
    pub username: String,
    /// Email, if given.
    pub email: Option<String>,
    /// When the user proved the email is theirs (`None`: not proven).
    pub email_verified_at: Option<Timestamp>,
    /// When the account was created.
    pub created_at: Timestamp,
    /// Disabled users cannot log in and their sessions end.
    pub disabled: bool,
    /// Bumped by every password change and disable.
    pub credential_version: i64,
    /// Shared, so the user cache hands out copies without copying the hash.
    pub(crate) password_hash: std::sync::Arc<str>,
}

/// The stored "hash" of an account without a password (made by
/// [`NewUser::without_password`]): no password matches it, and it is no hash format.
pub const NO_PASSWORD: &str = "!";

impl User {
    /// The stored password hash (PHC string). Never log it.
    pub fn password_hash(&self) -> &str {
        &self.password_hash
    }

    /// Whether the account has a password (accounts made by another identity provider
    /// have none until the user sets one).
    pub fn has_password(&self) -> bool {
        !self.password_hash.starts_with(NO_PASSWORD)
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("email", &self.email)
            .field("email_verified_at", &self.email_verified_at)
            .field("disabled", &self.disabled)
            .field("credential_version", &self.credential_version)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

impl AuthUser for User {
    fn user_id(&self) -> String {
        self.id.to_string()
    }
    fn credential_version(&self) -> i64 {
        self.credential_version
    }
    fn is_active(&self) -> bool {
        !self.disabled
    }
    fn email_verified(&self) -> bool {
        self.email_verified_at.is_some()
    }
}

/// A user to create. Build it with [`NewUser::new`], which validates the fields.
#[derive(Clone)]
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
pub struct NewUser {
    username: String,
    email: Option<String>,
    pub(crate) password_hash: String,
}

impl NewUser {
    /// Validates, trims and normalises `username`, validates `email`; `password_hash` comes from
    /// [`crate::password::PasswordHasher::hash`].
    pub fn new(
        username: &str,
        email: Option<&str>,
        password_hash: String,
    ) -> Result<Self, UserStoreError> {
        let username = validate_username(username)?;
        let email = match email.map(str::trim).filter(|email| !email.is_empty()) {
            Some(email) => Some(validate_email(email)?),
            None => None,
        };
        Ok(NewUser {
            username,
            email,
            password_hash,
        })
    }

    /// Validates like [`NewUser::new`] a user without a password: one who signs in
    /// another way (another identity provider) until they set one.
    pub fn without_password(username: &str, email: Option<&str>) -> Result<Self, UserStoreError> {
        NewUser::new(username, email, NO_PASSWORD.to_string())
    }

    /// The validated username.
    pub fn username(&self) -> &str {
        &self.username
    }
}

/// Why a user operation failed.
#[derive(Debug, thiserror::Error)]
pub enum UserStoreError {
    /// Another user has this username, or one that looks like it (compared by
    /// [`login_key`] and [`username_skeleton`]).
    #[error("Username {0} is not available.")]
    UsernameTaken(String),
    /// Another user has this email (compared by [`login_key`]).
    #[error("Email {0} is already registered.")]
    EmailTaken(String),
    /// The username breaks the rules.
    #[error("invalid username: {0}")]
    InvalidUsername(&'static str),
    /// The email is not an email address.
    #[error("invalid email: {0}")]
    InvalidEmail(&'static str),
    /// No such user.
    #[error("no such user")]
    NotFound,
    /// The database failed.
    #[error("user store unavailable: {0}")]
    Unavailable(#[source] BoxError),
}

/// Longest username accepted, in characters (before and after normalisation).
pub const MAX_USERNAME_CHARS: usize = 64;

/// Whether `c` is invisible or reorders text: Unicode's Default_Ignorable_Code_Point
/// characters (zero-width spaces and joiners, soft hyphen, variation selectors, tags,
/// Hangul fillers…) and the bidirectional controls (U+061C, U+200E/F, U+202A–U+202E,
/// U+2066–U+2069). A name holding one can look like another name, or like nothing.
pub fn is_invisible_or_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// The compatibility-composed form (NFKC) of `text`: fullwidth letters become plain
/// ones, ligatures are split, accents are composed (NFD `e` + U+0301 becomes `é`).
fn compatibility_composed(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    text.nfkc().collect()
}

/// Trims, normalises and checks a username, answering the form to store and show:
/// 1–64 characters, no invisible or bidirectional control characters, then NFKC (the
/// width and compatibility mapping of RFC 8265's UsernameCasePreserved profile), then no
/// whitespace, control characters or `@` (so a login name is never mistaken for an
/// email). Case is kept for display; [`login_key`] folds it.
pub fn validate_username(username: &str) -> Result<String, UserStoreError> {
    let username = username.trim();
    if username.is_empty() {
        return Err(UserStoreError::InvalidUsername("username is required"));
    }
    let too_long = UserStoreError::InvalidUsername("username must be at most 64 characters");
    // Counted before normalising too, so no long input is normalised.
    if username.chars().count() > MAX_USERNAME_CHARS {
        return Err(too_long);
    }
    if username.chars().any(is_invisible_or_bidi_control) {
        return Err(UserStoreError::InvalidUsername(
            "username must not contain invisible or text-direction characters",
        ));
    }
    let username = compatibility_composed(username);
    if username.chars().count() > MAX_USERNAME_CHARS {
        return Err(too_long);
    }
    if username
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || is_invisible_or_bidi_control(c))
    {
        return Err(UserStoreError::InvalidUsername(
            "username must not contain spaces or control characters",
        ));
    }
    if username.contains('@') {
        return Err(UserStoreError::InvalidUsername(
            "username must not contain @",
        ));
    }
    Ok(username)
}

/// Checks an email the way the mailer will read it: a bare address (no display name, no
/// angle brackets, no quoted local part) that `lettre`'s own parser accepts, a domain
/// name with a dot (no IP literal), at most 64 characters before the `@` and 254 in all,
/// and no invisible or bidirectional control characters. Stored as typed (trimmed); its
/// [`login_key`] is what must be unique.
pub fn validate_email(email: &str) -> Result<String, UserStoreError> {
    let email = email.trim();
    if email.chars().count() > 254 {
        return Err(UserStoreError::InvalidEmail(
            "email must be at most 254 characters",
        ));
    }
    if email.chars().any(is_invisible_or_bidi_control) {
        return Err(UserStoreError::InvalidEmail(
            "email must not contain invisible or text-direction characters",
        ));
    }
    if email.contains(['<', '>', '"']) {
        return Err(UserStoreError::InvalidEmail(
            "email must be a bare address, without a name, quotes or angle brackets",
        ));
    }
    let address: lettre::Address = email
        .parse()
        .map_err(|_| UserStoreError::InvalidEmail("email must look like name@example.com"))?;
    if address.user().chars().count() > 64 {
        return Err(UserStoreError::InvalidEmail(
            "the part of an email before the @ must be at most 64 characters",
        ));
    }
    let domain = address.domain();
    let domain_name = domain.contains('.')
        && !domain.starts_with('[')
        && domain.parse::<std::net::IpAddr>().is_err();
    if !domain_name {
        return Err(UserStoreError::InvalidEmail(
            "email must look like name@example.com",
        ));
    }
    Ok(email.to_string())
}

/// The key a username or email is unique under and found by: trimmed, NFKC, lower-cased,
/// NFKC again (RFC 8265's UsernameCaseMapped profile, with Unicode's full lower-case
/// mapping), so `ＡＤＭＩＮ`, `Admin` and `admin` are one key, as are NFC and NFD `é`.
pub fn login_key(login: &str) -> String {
    // Trimmed after mapping too: NFKC turns some characters into a space and a mark.
    let key = compatibility_composed(&compatibility_composed(login.trim()).to_lowercase());
    key.trim().to_string()
}

/// The key of a name as versions before Unicode normalisation computed it (lower-case
/// only): rows stored then and not yet re-keyed are still found under it.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn legacy_login_key(login: &str) -> String {
    login.trim().to_lowercase()
}

/// The confusable skeleton (Unicode TS #39) of a username's [`login_key`]: names that
/// look alike (`admin`, Cyrillic `аdmin`, dotless `admın`, `adrnin`) have the same
/// skeleton. The user stores keep it unique, so only one of them can be registered.
pub fn username_skeleton(username: &str) -> String {
    unicode_security::skeleton(&login_key(username)).collect()
}

/// Where latchkey's own users live.
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Creates a user; [`UserStoreError::UsernameTaken`] / [`UserStoreError::EmailTaken`]
    /// when the name or email is in use.
    async fn create(&self, user: NewUser) -> Result<User, UserStoreError>;
    /// The user whose username or email has the [`login_key`] of `login` (any case,
    /// width or composition of it).
    async fn find_by_login(&self, login: &str) -> Result<Option<User>, UserStoreError>;
    /// The user with this id.
    async fn find_by_id(&self, id: i64) -> Result<Option<User>, UserStoreError>;
    /// Every user, oldest first.
    async fn list(&self) -> Result<Vec<User>, UserStoreError>;
    /// Replaces the password hash and bumps the credential version (ending sessions);
    /// returns the updated user.
    async fn set_password_hash(&self, id: i64, hash: &str) -> Result<User, UserStoreError>;
    /// Disables or re-enables the user and bumps the credential version.
    async fn set_disabled(&self, id: i64, disabled: bool) -> Result<User, UserStoreError>;
    /// Moves the credential version on (every session and waiting login of the user ends
    /// on its next use); returns the updated user.
    async fn bump_credential_version(&self, id: i64) -> Result<User, UserStoreError>;
    /// Moves the user to `email` (verified now if `verified`, unverified otherwise);
    /// [`UserStoreError::EmailTaken`] when another user has it. Sessions stay.
    async fn set_email(&self, id: i64, email: &str, verified: bool)
        -> Result<User, UserStoreError>;
    /// Marks the user's email verified, only if it is still `email` (a link sent to an
    /// address the user has since moved away from proves nothing); `None` otherwise.
    async fn mark_email_verified(
        &self,
        id: i64,
        email: &str,
    ) -> Result<Option<User>, UserStoreError>;
    /// Creates all `users` or none (one transaction in the SQL stores). On failure, the
    /// index of the user that failed and why. The default creates them one by one and
    /// is not atomic.
    async fn create_many(&self, users: Vec<NewUser>) -> Result<Vec<User>, (usize, UserStoreError)> {
        let mut created = Vec::with_capacity(users.len());
        for (index, user) in users.into_iter().enumerate() {
            created.push(self.create(user).await.map_err(|error| (index, error))?);
        }
        Ok(created)
    }
    /// Replaces the hash with a stronger hash *of the same password* (a legacy hash
    /// re-hashed after a successful login), only if the stored hash is still
    /// `old_hash`. The credential version stays: no session ends. `false` when the hash
    /// changed meanwhile. The default keeps the old hash.
    async fn upgrade_password_hash(
        &self,
        id: i64,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<bool, UserStoreError> {
        let _ = (id, old_hash, new_hash);
        Ok(false)
    }
}

/// A shared store is a store.
#[async_trait]
impl<S: UserStore + ?Sized> UserStore for std::sync::Arc<S> {
    async fn create(&self, user: NewUser) -> Result<User, UserStoreError> {
        (**self).create(user).await
    }
    async fn find_by_login(&self, login: &str) -> Result<Option<User>, UserStoreError> {
        (**self).find_by_login(login).await
    }
    async fn find_by_id(&self, id: i64) -> Result<Option<User>, UserStoreError> {
        (**self).find_by_id(id).await
    }
    async fn list(&self) -> Result<Vec<User>, UserStoreError> {
        (**self).list().await
    }
    async fn set_password_hash(&self, id: i64, hash: &str) -> Result<User, UserStoreError> {
        (**self).set_password_hash(id, hash).await
    }
    async fn set_disabled(&self, id: i64, disabled: bool) -> Result<User, UserStoreError> {
        (**self).set_disabled(id, disabled).await
    }
    async fn bump_credential_version(&self, id: i64) -> Result<User, UserStoreError> {
        (**self).bump_credential_version(id).await
    }
    async fn set_email(
        &self,
        id: i64,
        email: &str,
        verified: bool,
    ) -> Result<User, UserStoreError> {
        (**self).set_email(id, email, verified).await
    }
    async fn mark_email_verified(
        &self,
        id: i64,
        email: &str,
    ) -> Result<Option<User>, UserStoreError> {
        (**self).mark_email_verified(id, email).await
    }
    async fn upgrade_password_hash(
        &self,
        id: i64,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<bool, UserStoreError> {
        (**self).upgrade_password_hash(id, old_hash, new_hash).await
    }
    async fn create_many(&self, users: Vec<NewUser>) -> Result<Vec<User>, (usize, UserStoreError)> {
        (**self).create_many(users).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_checked() {
        assert_eq!(validate_username("  bert ").ok().as_deref(), Some("bert"));
        assert!(validate_username("").is_err());
        assert!(validate_username("a b").is_err());
        assert!(validate_username("a@b").is_err());
        assert!(validate_username("tab\there").is_err());
        assert!(validate_username(&"x".repeat(65)).is_err());
        assert!(validate_username(&"é".repeat(64)).is_ok());
    }

    #[test]
    fn names_are_normalised_and_look_alikes_share_a_skeleton() {
        // Width, compatibility and composition are mapped; case is kept for display.
        assert_eq!(
            validate_username("ａｄｍｉｎ").ok().as_deref(),
            Some("admin")
        );
        assert_eq!(validate_username("Ａdmin").ok().as_deref(), Some("Admin"));
        assert_eq!(
            validate_username("re\u{301}my").ok().as_deref(),
            Some("rémy")
        );
        assert_eq!(validate_username("ﬁona").ok().as_deref(), Some("fiona"));
        // One key whatever the case, width or composition.
        for same in ["admin", "ADMIN", "ａｄｍｉｎ", " Admin "] {
            assert_eq!(login_key(same), "admin", "{same}");
        }
        assert_eq!(login_key("re\u{301}my"), login_key("r\u{e9}my"));
        assert_eq!(login_key("Straße"), "straße");
        // Look-alikes from other scripts keep their own key but share the skeleton.
        assert_ne!(login_key("аdmin"), login_key("admin"));
        for look_alike in ["аdmin", "admın", "ADMIN", "ａｄｍｉｎ", "adrnin"] {
            assert_eq!(
                username_skeleton(look_alike),
                username_skeleton("admin"),
                "{look_alike}"
            );
        }
        assert_ne!(username_skeleton("admin"), username_skeleton("admins"));
        // Invisible and direction controls are refused, before and after mapping.
        for hidden in [
            "admin\u{200B}",
            "ad\u{200D}min",
            "\u{202E}nimda",
            "admin\u{2066}",
            "ad\u{00AD}min",
            "admin\u{FE0F}",
            "admin\u{E0041}",
        ] {
            assert!(
                matches!(
                    validate_username(hidden),
                    Err(UserStoreError::InvalidUsername(why)) if why.contains("invisible")
                ),
                "{hidden:?}"
            );
        }
        // Fullwidth @ and spaces that NFKC reveals are refused too.
        assert!(validate_username("a＠b").is_err());
        assert!(validate_username("a\u{3000}b").is_err());
        // A name that NFKC lengthens past 64 characters is refused.
        assert!(validate_username(&"\u{FDFA}".repeat(4)).is_err());
        assert!(validate_email("gro\u{200B}ver@example.com").is_err());
        assert_eq!(login_key("Ｇrover@Example.com"), "grover@example.com");
    }

    proptest::proptest! {
        /// The fuzz target's properties, over any text: keys are stable, an accepted
        /// name is already normalised and has the key and skeleton of what was typed.
        #[test]
        fn normalisation_is_stable(raw in "\\PC{0,24}|[ a-zA-Z\u{a8}\u{200b}\u{202e}\u{301}\u{ff21}-\u{ff3a}\u{430}\u{131}@]{0,12}") {
            let key = login_key(&raw);
            proptest::prop_assert_eq!(login_key(&key), key.clone());
            if let Ok(name) = validate_username(&raw) {
                proptest::prop_assert_eq!(validate_username(&name).ok(), Some(name.clone()));
                proptest::prop_assert_eq!(login_key(&name), key.clone());
                proptest::prop_assert_eq!(username_skeleton(&name), username_skeleton(&key));
                proptest::prop_assert!(!name.chars().any(|c| c.is_whitespace() || c == '@'
                    || is_invisible_or_bidi_control(c)));
            }
        }
    }

    #[test]
    fn emails_are_checked() {
        assert!(validate_email("grover@example.com").is_ok());
        assert!(validate_email("grover+tag@sub.example.co.uk").is_ok());
        assert!(validate_email("jörg@bücher.example").is_ok());
        let longest_local = format!("{}@example.com", "a".repeat(64));
        assert!(validate_email(&longest_local).is_ok());
        assert!(validate_email(&format!("a{longest_local}")).is_err());
        let label = "b".repeat(60);
        let domain = format!("{label}.{label}.{label}.example");
        let at_limit = format!("{}@{domain}", "a".repeat(254 - 1 - domain.len()));
        assert_eq!(at_limit.len(), 254);
        assert!(validate_email(&at_limit).is_ok(), "{at_limit}");
        assert!(validate_email(&format!("a{at_limit}")).is_err());
        for bad in [
            "grover",
            "@example.com",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "a@.com",
            // A display name would send the mail to the bracketed address.
            "victim<attacker@evil.example>",
            "victim <attacker@evil.example>",
            "\"victim<x\"@evil.example",
            "a@127.0.0.1",
            "a@[127.0.0.1]",
            "a@b.com,c@d.com",
            "a@b.com>",
        ] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_debug_hides_the_hash() {
        let user = User {
            id: 1,
            username: "bert".into(),
            email: None,
            email_verified_at: None,
            created_at: Timestamp(0),
            disabled: false,
            credential_version: 1,
            password_hash: "$argon2id$secret".into(),
        };
        assert!(!format!("{user:?}").contains("secret"));
    }
}
